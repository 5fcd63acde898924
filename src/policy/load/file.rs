//! Checking one policy file: the system, its targets and hops, and (via
//! `endpoint` and `access`) endpoints and access entries.
//! Names across files are checked later, in `cross`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;

use chrono::NaiveDate;

use super::access::parse_access;
use super::approval::parse_approval;
use super::endpoint::parse_endpoint;
use super::location::{Sink, field_at};
use super::schema::{RawFile, S};
use crate::config::{Network, canonical_ip};
use crate::policy::model::{Access, Hop, Protocol, System, Target, TargetKind, Zone};

/// Names people type (`tanaka@fa-db01`): letters, digits, `-`, `_`, `.`.
pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(super) struct ParsedFile {
    pub(super) file: PathBuf,
    pub(super) system: Option<(System, usize)>,
    /// Target with the lines of its name and address.
    pub(super) targets: Vec<(Target, usize, usize)>,
    /// Hop with the lines of `from` and `to`.
    pub(super) hops: Vec<(Hop, usize, usize)>,
    /// Every target name written, valid or not, so that a broken target
    /// does not also show up as "unknown" wherever it is named.
    pub(super) declared: BTreeSet<String>,
    /// Access entry with the line of each name in `targets`.
    pub(super) access: Vec<(Access, Vec<usize>)>,
}

pub(super) fn required<'a, T>(
    sink: &mut Sink,
    v: &'a Option<S<T>>,
    table: &Range<usize>,
    field: &str,
    hint: &str,
) -> Option<&'a S<T>> {
    if v.is_none() {
        sink.err(Some(table.clone()), field, format!("missing; {hint}"));
    }
    v.as_ref()
}

pub(super) fn parse_file(
    sink: &mut Sink,
    networks: Option<&[Network]>,
    known_credentials: Option<&BTreeSet<String>>,
) -> Option<ParsedFile> {
    let raw: RawFile = match toml::from_str(sink.text) {
        Ok(r) => r,
        Err(e) => {
            let field = e
                .span()
                .map(|s| field_at(sink.text, &s))
                .unwrap_or_default();
            sink.err(e.span(), field, e.message().trim().to_string());
            return None;
        }
    };
    let whole = 0..0;
    let mut out = ParsedFile {
        file: sink.file.to_path_buf(),
        system: None,
        targets: Vec::new(),
        hops: Vec::new(),
        access: Vec::new(),
        declared: raw
            .targets
            .iter()
            .filter_map(|t| t.get_ref().name.as_ref().map(|n| n.get_ref().clone()))
            .collect(),
    };

    // [system]
    let Some(sys) = &raw.system else {
        sink.err(
            Some(whole),
            "system",
            "missing [system] table with name and zone".into(),
        );
        return None;
    };
    let sys_span = sys.span();
    let sys = sys.get_ref();
    let name = required(
        sink,
        &sys.name,
        &sys_span,
        "system.name",
        "name the system, e.g. name = \"fa\"",
    )
    .and_then(|n| {
        if valid_name(n.get_ref()) {
            Some((n.get_ref().clone(), sink.line_of(&n.span())))
        } else {
            sink.err(
                Some(n.span()),
                "system.name",
                format!(
                    "{:?} is not a name (use letters, digits, '-', '_', '.')",
                    n.get_ref()
                ),
            );
            None
        }
    });
    let zone = required(
        sink,
        &sys.zone,
        &sys_span,
        "system.zone",
        "one of internet, lgwan, mynumber",
    )
    .and_then(|z| match z.get_ref().parse::<Zone>() {
        Ok(zone) => Some(zone),
        Err(m) => {
            sink.err(Some(z.span()), "system.zone", m);
            None
        }
    });
    let (Some((system_name, system_line)), Some(zone)) = (name, zone) else {
        // Without a system name and zone nothing else can be judged.
        return None;
    };
    let approval = match &raw.approval {
        None => None,
        Some(a) => Some(parse_approval(sink, a)?),
    };
    out.system = Some((
        System {
            name: system_name.clone(),
            title: sys.title.clone(),
            zone,
            file: sink.file.to_path_buf(),
            approval,
        },
        system_line,
    ));

    // [[target]]
    for (i, t) in raw.targets.iter().enumerate() {
        let span = t.span();
        let t = t.get_ref();
        let f = |x: &str| format!("target[{i}].{x}");
        let name = required(
            sink,
            &t.name,
            &span,
            &f("name"),
            "how people name this server",
        )
        .and_then(|n| {
            if valid_name(n.get_ref()) {
                Some((n.get_ref().clone(), sink.line_of(&n.span())))
            } else {
                sink.err(
                    Some(n.span()),
                    f("name"),
                    format!(
                        "{:?} is not a name (use letters, digits, '-', '_', '.')",
                        n.get_ref()
                    ),
                );
                None
            }
        });
        let address = required(
            sink,
            &t.address,
            &span,
            &f("address"),
            "the server's IP address",
        )
        .and_then(|a| match a.get_ref().trim().parse::<IpAddr>() {
            Ok(ip) => Some((canonical_ip(ip), sink.line_of(&a.span()))),
            Err(_) => {
                sink.err(
                    Some(a.span()),
                    f("address"),
                    format!("{:?} is not an IP address", a.get_ref()),
                );
                None
            }
        });
        let kind = required(
            sink,
            &t.kind,
            &span,
            &f("kind"),
            "physical or virtual (RDP is allowed only to physical servers)",
        )
        .and_then(|k| match k.get_ref().parse::<TargetKind>() {
            Ok(k) => Some(k),
            Err(m) => {
                sink.err(Some(k.span()), f("kind"), m);
                None
            }
        });
        if t.ssh.is_none() && t.rdp.is_none() {
            sink.err(
                Some(span.clone()),
                f("ssh"),
                "the target offers neither ssh nor rdp; add ssh = { ... } or rdp = { ... }".into(),
            );
        }
        let ssh = t.ssh.as_ref().and_then(|e| {
            parse_endpoint(
                sink,
                e,
                Protocol::Ssh,
                &format!("target[{i}].ssh"),
                known_credentials,
            )
        });
        let rdp = t.rdp.as_ref().and_then(|e| {
            parse_endpoint(
                sink,
                e,
                Protocol::Rdp,
                &format!("target[{i}].rdp"),
                known_credentials,
            )
        });
        let ssh_ok = t.ssh.is_none() || ssh.is_some();
        let rdp_ok = t.rdp.is_none() || rdp.is_some();
        if let (Some((name, name_line)), Some((address, address_line)), Some(kind), true, true) =
            (name, address, kind, ssh_ok, rdp_ok)
        {
            out.targets.push((
                Target {
                    name,
                    system: system_name.clone(),
                    zone,
                    address,
                    kind,
                    ssh,
                    rdp,
                },
                name_line,
                address_line,
            ));
        }
    }

    // [[hop]]
    for (i, h) in raw.hops.iter().enumerate() {
        let span = h.span();
        let h = h.get_ref();
        let from = required(
            sink,
            &h.from,
            &span,
            &format!("hop[{i}].from"),
            "the target the person is already working on",
        );
        let to = required(
            sink,
            &h.to,
            &span,
            &format!("hop[{i}].to"),
            "the target reached over RDP",
        );
        if let (Some(from), Some(to)) = (from, to) {
            out.hops.push((
                Hop {
                    from: from.get_ref().clone(),
                    to: to.get_ref().clone(),
                    file: sink.file.to_path_buf(),
                },
                sink.line_of(&from.span()),
                sink.line_of(&to.span()),
            ));
        }
    }

    // [[access]]
    for (i, a) in raw.access.iter().enumerate() {
        if let Some(parsed) = parse_access(sink, i, a, &system_name, zone, networks) {
            out.access.push(parsed);
        }
    }
    Some(out)
}

/// A list of names: present, not empty, no repeats, each accepted by `check`.
pub(super) fn name_list<'a>(
    sink: &mut Sink,
    list: &'a S<Vec<S<String>>>,
    field: &str,
    what: &str,
) -> Option<Vec<&'a S<String>>> {
    if list.get_ref().is_empty() {
        sink.err(
            Some(list.span()),
            field,
            format!("is empty; name at least one {what} (deny by default)"),
        );
        return None;
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (j, n) in list.get_ref().iter().enumerate() {
        if !seen.insert(n.get_ref().as_str()) {
            sink.err(
                Some(n.span()),
                format!("{field}[{j}]"),
                format!("{:?} is listed twice", n.get_ref()),
            );
            return None;
        }
        out.push(n);
    }
    Some(out)
}

pub(super) fn parse_date(sink: &mut Sink, v: &S<toml::Value>, field: &str) -> Option<NaiveDate> {
    let text = match v.get_ref() {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) if d.time.is_none() && d.offset.is_none() => d.to_string(),
        other => other.to_string(),
    };
    match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            sink.err(
                Some(v.span()),
                field,
                format!("{text} is not a date (use YYYY-MM-DD)"),
            );
            None
        }
    }
}
