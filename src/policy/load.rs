//! Loading and checking `policies/*.toml`. Every problem found is reported
//! with file, line and field; a set with any error is not loaded at all, so a
//! half-understood policy never grants anything.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use serde::Deserialize;
use toml::Spanned;

use super::hours::Hours;
use super::model::{
    Access, Contract, Endpoint, Hop, Pin, PolicySet, Protocol, System, Target, TargetKind, Zone,
    file_name,
};
use crate::config::{Network, canonical_ip, parse_duration};

/// The longest `max_session` a policy may give: a session should last no
/// longer than the work needs.
pub const MAX_SESSION_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted path of the field, e.g. `target[1].ssh.host_key`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All problems found; `Display` gives one line per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

// ---- file format -------------------------------------------------------

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    system: Option<S<RawSystem>>,
    #[serde(default, rename = "target")]
    targets: Vec<S<RawTarget>>,
    #[serde(default, rename = "hop")]
    hops: Vec<S<RawHop>>,
    #[serde(default, rename = "access")]
    access: Vec<S<RawAccess>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    name: Option<S<String>>,
    zone: Option<S<String>>,
    title: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Option<S<String>>,
    address: Option<S<String>>,
    kind: Option<S<String>>,
    ssh: Option<S<RawEndpoint>>,
    rdp: Option<S<RawEndpoint>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    port: Option<S<i64>>,
    account: Option<S<String>>,
    credential: Option<S<String>>,
    host_key: Option<S<String>>,
    cert_sha256: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHop {
    from: Option<S<String>>,
    to: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    vendor: Option<S<String>>,
    users: Option<S<Vec<S<String>>>>,
    targets: Option<S<Vec<S<String>>>>,
    contract: Option<S<RawContract>>,
    hours: Option<S<String>>,
    max_session: Option<S<String>>,
    protocols: Option<S<Vec<S<String>>>>,
    sources: Option<S<Vec<S<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContract {
    from: Option<S<toml::Value>>,
    until: Option<S<toml::Value>>,
}

// ---- loading -------------------------------------------------------------

impl PolicySet {
    /// Loads every `*.toml` in `dir` (in name order). `known_credentials`
    /// `None` skips checking credential names.
    pub fn load_dir(
        dir: &Path,
        networks: &[Network],
        known_credentials: Option<&BTreeSet<String>>,
    ) -> Result<PolicySet, PolicyErrors> {
        PolicySet::load_dir_with(dir, Some(networks), known_credentials)
    }

    /// As `load_dir`; `networks` `None` means the networks are not known
    /// (no `sekisho.toml`), so network names in `sources` are not checked.
    pub fn load_dir_with(
        dir: &Path,
        networks: Option<&[Network]>,
        known_credentials: Option<&BTreeSet<String>>,
    ) -> Result<PolicySet, PolicyErrors> {
        let dir_error = |message: String| {
            PolicyErrors(vec![PolicyError {
                file: dir.to_path_buf(),
                line: None,
                field: String::new(),
                message,
            }])
        };
        let entries = std::fs::read_dir(dir)
            .map_err(|e| dir_error(format!("cannot read the policy directory: {e}")))?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| dir_error(format!("cannot read the policy directory: {e}")))?;
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "toml") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            match std::fs::read_to_string(&path) {
                Ok(text) => files.push((path, text)),
                Err(e) => errors.push(PolicyError {
                    file: path,
                    line: None,
                    field: String::new(),
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        match PolicySet::parse_files(&files, networks, known_credentials) {
            Ok(set) if errors.is_empty() => Ok(set),
            Ok(_) => Err(PolicyErrors(errors)),
            Err(PolicyErrors(more)) => {
                errors.extend(more);
                Err(PolicyErrors(errors))
            }
        }
    }

    /// Parses and checks policy texts as if read from the given paths.
    pub fn parse_files(
        files: &[(PathBuf, String)],
        networks: Option<&[Network]>,
        known_credentials: Option<&BTreeSet<String>>,
    ) -> Result<PolicySet, PolicyErrors> {
        let mut errors = Vec::new();
        let mut parsed = Vec::new();
        for (path, text) in files {
            let mut sink = Sink {
                file: path,
                text,
                errors: &mut errors,
            };
            if let Some(p) = parse_file(&mut sink, networks, known_credentials) {
                parsed.push(p);
            }
        }
        let set = cross_check(parsed, &mut errors);
        // Read in file order, top to bottom.
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(PolicyErrors(errors))
        }
    }
}

/// Collects errors for one file, turning byte spans into lines.
struct Sink<'a> {
    file: &'a Path,
    text: &'a str,
    errors: &'a mut Vec<PolicyError>,
}

impl Sink<'_> {
    fn line_of(&self, span: &Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    fn err(&mut self, span: Option<Range<usize>>, field: impl Into<String>, message: String) {
        let line = span.map(|s| self.line_of(&s));
        self.errors.push(PolicyError {
            file: self.file.to_path_buf(),
            line,
            field: field.into(),
            message,
        });
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()
        .get(..end)
        .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
        + 1
}

/// A best guess at the dotted field a parser error points to: the table
/// header above it, then the keys on its line.
fn field_at(text: &str, span: &Range<usize>) -> String {
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or("");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let mut header = String::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in before.get(..line_start).unwrap_or("").lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("[[") {
            let name = rest.split("]]").next().unwrap_or("").trim().to_string();
            let n = counts.entry(name.clone()).or_insert(0);
            header = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(rest) = t.strip_prefix('[') {
            header = rest.split(']').next().unwrap_or("").trim().to_string();
        }
    }
    let mut parts: Vec<String> = Vec::new();
    if !header.is_empty() {
        parts.push(header);
    }
    let prefix = before.get(line_start..).unwrap_or("");
    let segments: Vec<&str> = prefix.split('=').collect();
    for seg in segments.iter().take(segments.len().saturating_sub(1)) {
        let key = seg.rsplit(['{', ',']).next().unwrap_or("").trim();
        if is_bare_key(key) {
            parts.push(key.to_string());
        }
    }
    let at = text.get(span.clone()).unwrap_or("").trim();
    // The span is a key (e.g. an unknown field) when `=` follows it.
    let is_key = text
        .get(span.end..)
        .is_some_and(|rest| rest.trim_start().starts_with('='));
    if is_bare_key(at) && is_key {
        parts.push(at.to_string());
    }
    parts.join(".")
}

fn is_bare_key(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Names people type (`tanaka@fa-db01`): letters, digits, `-`, `_`, `.`.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

struct ParsedFile {
    file: PathBuf,
    system: Option<(System, usize)>,
    /// Target with the lines of its name and address.
    targets: Vec<(Target, usize, usize)>,
    /// Hop with the lines of `from` and `to`.
    hops: Vec<(Hop, usize, usize)>,
    /// Every target name written, valid or not, so that a broken target
    /// does not also show up as "unknown" wherever it is named.
    declared: BTreeSet<String>,
    /// Access entry with the line of each name in `targets`.
    access: Vec<(Access, Vec<usize>)>,
}

fn required<'a, T>(
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

fn parse_file(
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
    out.system = Some((
        System {
            name: system_name.clone(),
            title: sys.title.clone(),
            zone,
            file: sink.file.to_path_buf(),
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

fn parse_endpoint(
    sink: &mut Sink,
    e: &S<RawEndpoint>,
    protocol: Protocol,
    prefix: &str,
    known_credentials: Option<&BTreeSet<String>>,
) -> Option<Endpoint> {
    let span = e.span();
    let e = e.get_ref();
    let f = |x: &str| format!("{prefix}.{x}");
    let mut ok = true;
    let port = match &e.port {
        None => match protocol {
            Protocol::Ssh => 22,
            Protocol::Rdp => 3389,
        },
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(port) if port > 0 => port,
            _ => {
                sink.err(
                    Some(p.span()),
                    f("port"),
                    format!("{} is not a port (1 to 65535)", p.get_ref()),
                );
                ok = false;
                0
            }
        },
    };
    let account = required(
        sink,
        &e.account,
        &span,
        &f("account"),
        "the account sekisho signs in as on the target",
    )
    .and_then(|a| {
        if a.get_ref().trim().is_empty() {
            sink.err(Some(a.span()), f("account"), "is empty".into());
            None
        } else {
            Some(a.get_ref().clone())
        }
    });
    let credential = required(
        sink,
        &e.credential,
        &span,
        &f("credential"),
        "the name of the credential in the secret store",
    )
    .and_then(|c| {
        let name = c.get_ref();
        if name.trim().is_empty() {
            sink.err(Some(c.span()), f("credential"), "is empty".into());
            return None;
        }
        if let Some(known) = known_credentials
            && !known.contains(name)
        {
            sink.err(
                Some(c.span()),
                f("credential"),
                format!(
                    "unknown credential {name:?}: store it first with `sekisho secret set {name}`"
                ),
            );
            return None;
        }
        Some(name.clone())
    });
    let (pin_field, wrong_field, pin_value, wrong_value) = match protocol {
        Protocol::Ssh => ("host_key", "cert_sha256", &e.host_key, &e.cert_sha256),
        Protocol::Rdp => ("cert_sha256", "host_key", &e.cert_sha256, &e.host_key),
    };
    if let Some(w) = wrong_value {
        sink.err(
            Some(w.span()),
            f(wrong_field),
            format!("{protocol} targets are pinned with {pin_field}, not {wrong_field}"),
        );
        ok = false;
    }
    let pin = match pin_value {
        None => {
            let hint = match protocol {
                Protocol::Ssh => {
                    "pin the target's host key, e.g. host_key = \"SHA256:...\" (ssh-keygen -lf); a target without a pinned key cannot be reached"
                }
                Protocol::Rdp => {
                    "pin the target's TLS certificate, e.g. cert_sha256 = \"AA:BB:...\" (SHA-256 of the certificate); a target without a pinned certificate cannot be reached"
                }
            };
            sink.err(Some(span.clone()), f(pin_field), format!("missing; {hint}"));
            None
        }
        Some(v) => {
            let parsed = match protocol {
                Protocol::Ssh => Pin::parse_ssh_host_key(v.get_ref()),
                Protocol::Rdp => Pin::parse_cert_sha256(v.get_ref()),
            };
            match parsed {
                Ok(pin) => Some(pin),
                Err(m) => {
                    sink.err(Some(v.span()), f(pin_field), m);
                    None
                }
            }
        }
    };
    match (ok, account, credential, pin) {
        (true, Some(account), Some(credential), Some(pin)) => Some(Endpoint {
            port,
            account,
            credential,
            pin,
        }),
        _ => None,
    }
}

/// A list of names: present, not empty, no repeats, each accepted by `check`.
fn name_list<'a>(
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

fn parse_date(sink: &mut Sink, v: &S<toml::Value>, field: &str) -> Option<NaiveDate> {
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

fn parse_access(
    sink: &mut Sink,
    i: usize,
    a: &S<RawAccess>,
    system: &str,
    zone: Zone,
    networks: Option<&[Network]>,
) -> Option<(Access, Vec<usize>)> {
    let span = a.span();
    let a = a.get_ref();
    let f = |x: &str| format!("access[{i}].{x}");
    let mut ok = true;

    let vendor = required(
        sink,
        &a.vendor,
        &span,
        &f("vendor"),
        "the vendor organisation whose engineers this entry admits",
    )
    .and_then(|v| {
        if valid_name(v.get_ref()) {
            Some(v.get_ref().clone())
        } else {
            sink.err(
                Some(v.span()),
                f("vendor"),
                format!(
                    "{:?} is not a vendor name (use letters, digits, '-', '_', '.')",
                    v.get_ref()
                ),
            );
            None
        }
    });

    let users = required(
        sink,
        &a.users,
        &span,
        &f("users"),
        "name the engineers who signed the pledge (deny by default)",
    )
    .and_then(|l| name_list(sink, l, &f("users"), "user"))
    .map(|l| l.iter().map(|u| u.get_ref().clone()).collect::<Vec<_>>());

    let mut target_lines = Vec::new();
    let targets = match &a.targets {
        None => None,
        Some(l) => match name_list(sink, l, &f("targets"), "target") {
            Some(names) => {
                target_lines = names.iter().map(|n| sink.line_of(&n.span())).collect();
                Some(
                    names
                        .iter()
                        .map(|n| n.get_ref().clone())
                        .collect::<Vec<_>>(),
                )
            }
            None => {
                ok = false;
                None
            }
        },
    };

    let contract = required(sink, &a.contract, &span, &f("contract"), "the maintenance contract's period, e.g. contract = { from = \"2026-04-01\", until = \"2027-03-31\" }")
        .and_then(|c| {
            let cspan = c.span();
            let c = c.get_ref();
            let from = required(sink, &c.from, &cspan, &f("contract.from"), "the contract's first day (YYYY-MM-DD)")
                .and_then(|v| parse_date(sink, v, &f("contract.from")));
            let until_v = required(sink, &c.until, &cspan, &f("contract.until"), "the contract's last day (YYYY-MM-DD)");
            let until = until_v.and_then(|v| parse_date(sink, v, &f("contract.until")));
            let (from, until) = (from?, until?);
            if until < from {
                sink.err(
                    until_v.map(|v| v.span()),
                    f("contract.until"),
                    format!("the contract ends ({until}) before it starts ({from})"),
                );
                return None;
            }
            Some(Contract { from, until })
        });

    let hours = required(
        sink,
        &a.hours,
        &span,
        &f("hours"),
        "e.g. hours = \"Mon-Fri 08:30-17:15\" or \"always\"",
    )
    .and_then(|h| match Hours::parse(h.get_ref()) {
        Ok(h) => Some(h),
        Err(m) => {
            sink.err(Some(h.span()), f("hours"), m);
            None
        }
    });

    let max_session = required(
        sink,
        &a.max_session,
        &span,
        &f("max_session"),
        "the longest one session may last, e.g. \"2h\"",
    )
    .and_then(|m| match parse_duration(m.get_ref()) {
        Ok(d) if d.is_zero() => {
            sink.err(
                Some(m.span()),
                f("max_session"),
                "must be longer than 0".into(),
            );
            None
        }
        Ok(d) if d > MAX_SESSION_LIMIT => {
            sink.err(
                Some(m.span()),
                f("max_session"),
                format!("{} is longer than the limit of 7d", m.get_ref()),
            );
            None
        }
        Ok(d) => Some(d),
        Err(msg) => {
            sink.err(Some(m.span()), f("max_session"), msg);
            None
        }
    });

    let protocols = required(
        sink,
        &a.protocols,
        &span,
        &f("protocols"),
        "e.g. protocols = [\"ssh\"]",
    )
    .and_then(|l| name_list(sink, l, &f("protocols"), "protocol"))
    .and_then(|l| {
        let mut out = Vec::new();
        for (j, p) in l.iter().enumerate() {
            match p.get_ref().parse::<Protocol>() {
                Ok(p) => out.push(p),
                Err(m) => {
                    sink.err(Some(p.span()), format!("{}[{j}]", f("protocols")), m);
                    return None;
                }
            }
        }
        Some(out)
    });

    let sources = required(sink, &a.sources, &span, &f("sources"), "name the networks (from sekisho.toml) this vendor connects from (deny by default)")
        .and_then(|l| name_list(sink, l, &f("sources"), "network"))
        .and_then(|l| {
            let mut good = true;
            for (j, n) in l.iter().enumerate() {
                let field = format!("{}[{j}]", f("sources"));
                let Some(networks) = networks else { continue };
                match networks.iter().find(|net| net.name == *n.get_ref()) {
                    None => {
                        let known: Vec<&str> = networks.iter().map(|n| n.name.as_str()).collect();
                        sink.err(Some(n.span()), field, format!(
                            "unknown network {:?} (networks in sekisho.toml: {})",
                            n.get_ref(),
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ));
                        good = false;
                    }
                    Some(net) if zone == Zone::MyNumber && !net.closed => {
                        sink.err(Some(n.span()), field, format!(
                            "network {:?} is not closed; a My Number system is reachable only from closed networks (closed = true in sekisho.toml)",
                            n.get_ref()
                        ));
                        good = false;
                    }
                    Some(_) => {}
                }
            }
            good.then(|| l.iter().map(|n| n.get_ref().clone()).collect::<Vec<_>>())
        });

    match (
        ok,
        vendor,
        users,
        contract,
        hours,
        max_session,
        protocols,
        sources,
    ) {
        (
            true,
            Some(vendor),
            Some(users),
            Some(contract),
            Some(hours),
            Some(max_session),
            Some(protocols),
            Some(sources),
        ) => Some((
            Access {
                system: system.to_string(),
                file: sink.file.to_path_buf(),
                index: i,
                vendor,
                users,
                targets,
                contract,
                hours,
                max_session,
                protocols,
                sources,
            },
            target_lines,
        )),
        _ => None,
    }
}

/// Checks across files: unique names and addresses, hops and access
/// entries naming known targets.
fn cross_check(parsed: Vec<ParsedFile>, errors: &mut Vec<PolicyError>) -> PolicySet {
    let mut set = PolicySet::default();
    let mut err = |file: &Path, line: usize, field: String, message: String| {
        errors.push(PolicyError {
            file: file.to_path_buf(),
            line: Some(line),
            field,
            message,
        });
    };
    // Where each name was first defined, for "already defined at" messages.
    let mut system_at: HashMap<String, (PathBuf, usize)> = HashMap::new();
    let mut target_at: HashMap<String, (PathBuf, usize)> = HashMap::new();
    let mut address_at: HashMap<IpAddr, (String, PathBuf, usize)> = HashMap::new();
    let at = |p: &Path, l: usize| format!("{}:{l}", file_name(p));

    for pf in &parsed {
        let Some((system, line)) = &pf.system else {
            continue;
        };
        if let Some((f, l)) = system_at.get(&system.name) {
            err(
                &pf.file,
                *line,
                "system.name".into(),
                format!(
                    "system {:?} is already defined at {}",
                    system.name,
                    at(f, *l)
                ),
            );
        } else if let Some((f, l)) = target_at.get(&system.name) {
            err(
                &pf.file,
                *line,
                "system.name".into(),
                format!(
                    "{:?} is already the name of a target at {}",
                    system.name,
                    at(f, *l)
                ),
            );
        } else {
            system_at.insert(system.name.clone(), (pf.file.clone(), *line));
        }
        set.systems.push(system.clone());
        for (i, (t, name_line, address_line)) in pf.targets.iter().enumerate() {
            let mut unique = true;
            if let Some((f, l)) = target_at.get(&t.name) {
                err(
                    &pf.file,
                    *name_line,
                    format!("target[{i}].name"),
                    format!(
                        "duplicate target {:?}: already defined at {} (target names are unique across all systems)",
                        t.name,
                        at(f, *l)
                    ),
                );
                unique = false;
            }
            if let Some((other, f, l)) = address_at.get(&t.address) {
                err(
                    &pf.file,
                    *address_line,
                    format!("target[{i}].address"),
                    format!(
                        "address {} is already used by target {other:?} at {}",
                        t.address,
                        at(f, *l)
                    ),
                );
                unique = false;
            }
            if unique {
                target_at.insert(t.name.clone(), (pf.file.clone(), *name_line));
                address_at.insert(t.address, (t.name.clone(), pf.file.clone(), *address_line));
                set.targets.push(t.clone());
            }
        }
    }
    // A target named like a system (in any file) makes `policy explain` and
    // menus ambiguous.
    for pf in &parsed {
        for (i, (t, name_line, _)) in pf.targets.iter().enumerate() {
            if let Some((f, l)) = system_at.get(&t.name) {
                err(
                    &pf.file,
                    *name_line,
                    format!("target[{i}].name"),
                    format!(
                        "{:?} is already the name of a system at {}",
                        t.name,
                        at(f, *l)
                    ),
                );
            }
        }
    }

    let declared: BTreeSet<String> = parsed
        .iter()
        .flat_map(|p| p.declared.iter().cloned())
        .collect();
    for pf in &parsed {
        let Some((system, _)) = &pf.system else {
            continue;
        };
        for (i, (hop, from_line, to_line)) in pf.hops.iter().enumerate() {
            let from = set.target(&hop.from).cloned();
            let to = set.target(&hop.to).cloned();
            let mut good = true;
            if from.is_none() && !declared.contains(&hop.from) {
                err(
                    &pf.file,
                    *from_line,
                    format!("hop[{i}].from"),
                    format!("hop from unknown target {:?}", hop.from),
                );
            }
            if from.is_none() {
                good = false;
            }
            match &to {
                None => {
                    if !declared.contains(&hop.to) {
                        err(
                            &pf.file,
                            *to_line,
                            format!("hop[{i}].to"),
                            format!("hop to unknown target {:?}", hop.to),
                        );
                    }
                    good = false;
                }
                Some(t) if t.system != system.name => {
                    err(
                        &pf.file,
                        *to_line,
                        format!("hop[{i}].to"),
                        format!(
                            "hop to {:?}, a target of system {:?}: hops belong in the policy of the system they lead into",
                            hop.to, t.system
                        ),
                    );
                    good = false;
                }
                Some(t) if t.rdp.is_none() => {
                    err(
                        &pf.file,
                        *to_line,
                        format!("hop[{i}].to"),
                        format!("hop to {:?}, which has no rdp endpoint", hop.to),
                    );
                    good = false;
                }
                Some(_) => {}
            }
            if let (Some(f), Some(t)) = (&from, &to) {
                if f.name == t.name {
                    err(
                        &pf.file,
                        *to_line,
                        format!("hop[{i}].to"),
                        "a hop from a target to itself".into(),
                    );
                    good = false;
                } else if t.zone == Zone::MyNumber && f.zone != Zone::MyNumber {
                    err(
                        &pf.file,
                        *from_line,
                        format!("hop[{i}].from"),
                        format!(
                            "hop into the My Number zone from {:?} ({} zone): a My Number system is reachable only from closed networks",
                            f.name, f.zone
                        ),
                    );
                    good = false;
                }
            }
            if good && set.hop_allowed(&hop.from, &hop.to) {
                err(
                    &pf.file,
                    *from_line,
                    format!("hop[{i}]"),
                    format!("duplicate hop from {:?} to {:?}", hop.from, hop.to),
                );
                good = false;
            }
            if good {
                set.hops.push(hop.clone());
            }
        }
        for (access, lines) in &pf.access {
            let mut good = true;
            if let Some(names) = &access.targets {
                for (j, name) in names.iter().enumerate() {
                    let line = lines.get(j).copied().unwrap_or(1);
                    let field = format!("access[{}].targets[{j}]", access.index);
                    match set.target(name) {
                        None => {
                            if !declared.contains(name) {
                                err(&pf.file, line, field, format!("unknown target {name:?}"));
                            }
                            good = false;
                        }
                        Some(t) if t.system != system.name => {
                            err(
                                &pf.file,
                                line,
                                field,
                                format!(
                                    "target {name:?} belongs to system {:?}, not {:?}",
                                    t.system, system.name
                                ),
                            );
                            good = false;
                        }
                        Some(_) => {}
                    }
                }
            }
            if good {
                set.access.push(access.clone());
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_cidr;

    const BASE: &str = r#"[system]
name = "fa"
zone = "lgwan"

[[target]]
name = "fa-db01"
address = "10.20.0.11"
kind = "physical"
ssh = { account = "maint", credential = "db-maint", host_key = "SHA256:zwxFZkDJRdBjQcMdVAtmpgnwJu8v91OmlxCHrsDj4L8" }
rdp = { account = "Administrator", credential = "db-admin", cert_sha256 = "74:D2:19:31:1D:39:C5:E5:6C:6E:D2:75:20:53:E3:CB:A6:3C:DC:17:15:2B:B9:DF:01:F5:E8:20:32:8F:45:07" }

[[target]]
name = "fa-app01"
address = "10.20.0.12"
kind = "virtual"
ssh = { port = 2222, account = "maint", credential = "app-maint", host_key = "SHA256:/DCXtfUNRs8vzgTkxrG1mRlTVayWLzRyxJvJZ4Y/Azc" }

[[hop]]
from = "fa-app01"
to = "fa-db01"

[[access]]
vendor = "acme"
users = ["tanaka", "suzuki"]
contract = { from = "2026-04-01", until = "2027-03-31" }
hours = "Mon-Fri 08:30-17:15"
max_session = "2h"
protocols = ["ssh", "rdp"]
sources = ["acme-office"]
"#;

    fn networks() -> Vec<Network> {
        vec![
            Network {
                name: "acme-office".into(),
                cidrs: vec![parse_cidr("203.0.113.0/24").unwrap()],
                closed: false,
            },
            Network {
                name: "lg-closed-vpn".into(),
                cidrs: vec![parse_cidr("10.99.0.0/16").unwrap()],
                closed: true,
            },
        ]
    }

    fn load(
        files: &[(&str, &str)],
        creds: Option<&BTreeSet<String>>,
    ) -> Result<PolicySet, PolicyErrors> {
        let files: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(n, t)| (PathBuf::from(format!("/p/{n}")), t.to_string()))
            .collect();
        let nets = networks();
        PolicySet::parse_files(&files, Some(&nets), creds)
    }

    /// Loads BASE with one replacement and expects exactly one error.
    fn one_error(from: &str, to: &str) -> PolicyError {
        assert!(BASE.contains(from), "fixture lacks {from:?}");
        let text = BASE.replacen(from, to, 1);
        let errs = load(&[("fa.toml", &text)], None).unwrap_err().0;
        assert_eq!(errs.len(), 1, "expected one error, got: {errs:?}");
        errs.into_iter().next().unwrap()
    }

    fn assert_err(e: &PolicyError, line: usize, field: &str, words: &str) {
        assert_eq!(e.file, PathBuf::from("/p/fa.toml"), "{e}");
        assert_eq!(e.line, Some(line), "{e}");
        assert_eq!(e.field, field, "{e}");
        assert!(e.message.contains(words), "{e}");
    }

    #[test]
    fn base_loads() {
        let creds: BTreeSet<String> = ["db-maint", "db-admin", "app-maint"]
            .map(String::from)
            .into();
        let set = load(&[("fa.toml", BASE)], Some(&creds)).unwrap();
        let db = set.target("fa-db01").unwrap();
        assert_eq!(db.ssh.as_ref().unwrap().port, 22);
        assert_eq!(db.rdp.as_ref().unwrap().port, 3389);
        assert_eq!(
            set.target("fa-app01").unwrap().ssh.as_ref().unwrap().port,
            2222
        );
        assert_eq!(
            set.target_by_address("::ffff:10.20.0.12".parse().unwrap())
                .unwrap()
                .name,
            "fa-app01"
        );
        assert!(set.hop_allowed("fa-app01", "fa-db01"));
        assert!(!set.hop_allowed("fa-db01", "fa-app01"));
        let a = set.access().next().unwrap();
        assert_eq!(a.max_session, Duration::from_secs(7200));
        assert_eq!(a.protocols, vec![Protocol::Ssh, Protocol::Rdp]);
    }

    #[test]
    fn unknown_keys_name_line_and_field() {
        let e = one_error("kind = \"virtual\"", "kind = \"virtual\"\nbogus = 1");
        assert_err(&e, 16, "target[1].bogus", "unknown field");
        let e = one_error("ssh = { port = 2222,", "ssh = { prot = 2222,");
        assert_err(&e, 16, "target[1].ssh.prot", "unknown field");
        let e = one_error("[[hop]]", "colour = \"red\"\n[[hop]]");
        assert_err(&e, 18, "target[1].colour", "unknown field");
        let e = one_error("[system]\n", "[system]\nowner = \"x\"\n");
        assert_err(&e, 2, "system.owner", "unknown field");
    }

    #[test]
    fn syntax_and_type_errors_have_lines() {
        let e = one_error("max_session = \"2h\"", "max_session = 2h");
        assert_eq!(e.line, Some(27), "{e}");
        assert_eq!(e.field, "access[0].max_session", "{e}");
        let e = one_error("[\"tanaka\", \"suzuki\"]", "[\"tanaka\", 7]");
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(24), "access[0].users"),
            "{e}"
        );
        let e = one_error("port = 2222", "port = \"2222\"");
        assert_eq!(e.line, Some(16), "{e}");
        assert_eq!(e.field, "target[1].ssh.port", "{e}");
    }

    #[test]
    fn unknown_credential() {
        let creds: BTreeSet<String> = ["db-maint", "db-admin"].map(String::from).into();
        let errs = load(&[("fa.toml", BASE)], Some(&creds)).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_err(
            &errs[0],
            16,
            "target[1].ssh.credential",
            "unknown credential \"app-maint\"",
        );
    }

    #[test]
    fn pins_are_required_and_checked() {
        let e = one_error(
            ", host_key = \"SHA256:/DCXtfUNRs8vzgTkxrG1mRlTVayWLzRyxJvJZ4Y/Azc\"",
            "",
        );
        assert_err(&e, 16, "target[1].ssh.host_key", "cannot be reached");
        let e = one_error("SHA256:/DCX", "MD5:/DCX");
        assert_err(
            &e,
            16,
            "target[1].ssh.host_key",
            "not an SSH host key fingerprint",
        );
        let text = BASE.replacen("cert_sha256 = \"74:D2", "host_key = \"74:D2", 1);
        let errs = load(&[("fa.toml", &text)], None).unwrap_err().0;
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_err(
            &errs[0],
            10,
            "target[0].rdp.host_key",
            "pinned with cert_sha256",
        );
        assert_err(&errs[1], 10, "target[0].rdp.cert_sha256", "missing");
        let e = one_error("\"74:D2:", "\"D2:");
        assert_err(&e, 10, "target[0].rdp.cert_sha256", "32 bytes");
    }

    #[test]
    fn target_fields() {
        let e = one_error("address = \"10.20.0.12\"", "address = \"fa-app01.local\"");
        assert_err(&e, 14, "target[1].address", "not an IP address");
        let e = one_error("kind = \"virtual\"", "kind = \"vm\"");
        assert_err(&e, 15, "target[1].kind", "physical or virtual");
        let e = one_error("kind = \"virtual\"\n", "");
        assert_err(&e, 12, "target[1].kind", "missing");
        let text = BASE.replacen("name = \"fa-app01\"", "name = \"fa app01\"", 1);
        let errs = load(&[("fa.toml", &text)], None).unwrap_err().0;
        assert_err(&errs[0], 13, "target[1].name", "not a name");
        let e = one_error("port = 2222", "port = 70000");
        assert_err(&e, 16, "target[1].ssh.port", "not a port");
        let e = one_error("zone = \"lgwan\"", "zone = \"dmz\"");
        assert_err(&e, 3, "system.zone", "not a zone");
    }

    #[test]
    fn duplicate_target_across_files() {
        let other = "[system]\nname = \"tax\"\nzone = \"lgwan\"\n\n[[target]]\nname = \"fa-db01\"\naddress = \"10.21.0.1\"\nkind = \"physical\"\nssh = { account = \"a\", credential = \"c\", host_key = \"SHA256:zwxFZkDJRdBjQcMdVAtmpgnwJu8v91OmlxCHrsDj4L8\" }\n";
        let errs = load(&[("fa.toml", BASE), ("tax.toml", other)], None)
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        let e = &errs[0];
        assert_eq!(e.file, PathBuf::from("/p/tax.toml"));
        assert_eq!(e.line, Some(6));
        assert_eq!(e.field, "target[0].name");
        assert!(
            e.message
                .contains("duplicate target \"fa-db01\": already defined at fa.toml:6"),
            "{e}"
        );
    }

    #[test]
    fn overlapping_names_and_addresses() {
        let e = one_error("address = \"10.20.0.12\"", "address = \"10.20.0.11\"");
        assert_err(
            &e,
            14,
            "target[1].address",
            "already used by target \"fa-db01\"",
        );
        let text = BASE.replacen("name = \"fa-app01\"", "name = \"fa\"", 1);
        let errs = load(&[("fa.toml", &text)], None).unwrap_err().0;
        // Renaming the target also leaves the hop naming an unknown target.
        assert!(
            errs.iter().any(|e| e.line == Some(13)
                && e.field == "target[1].name"
                && e.message.contains("name of a system")),
            "{errs:?}"
        );
        let other = "[system]\nname = \"fa\"\nzone = \"internet\"\n";
        let errs = load(&[("fa.toml", BASE), ("fa2.toml", other)], None)
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].file, PathBuf::from("/p/fa2.toml"));
        assert_eq!(
            (errs[0].line, errs[0].field.as_str()),
            (Some(2), "system.name")
        );
        assert!(
            errs[0].message.contains("already defined at fa.toml:2"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn hops() {
        let e = one_error("to = \"fa-db01\"", "to = \"fa-db09\"");
        assert_err(&e, 20, "hop[0].to", "hop to unknown target \"fa-db09\"");
        let e = one_error("from = \"fa-app01\"", "from = \"nowhere\"");
        assert_err(&e, 19, "hop[0].from", "hop from unknown target");
        let e = one_error(
            "from = \"fa-app01\"\nto = \"fa-db01\"",
            "from = \"fa-db01\"\nto = \"fa-app01\"",
        );
        assert_err(&e, 20, "hop[0].to", "no rdp endpoint");
        let e = one_error(
            "from = \"fa-app01\"\nto = \"fa-db01\"",
            "from = \"fa-app01\"",
        );
        assert_err(&e, 18, "hop[0].to", "missing");
        let dup = BASE.replacen(
            "[[access]]",
            "[[hop]]\nfrom = \"fa-app01\"\nto = \"fa-db01\"\n\n[[access]]",
            1,
        );
        let errs = load(&[("fa.toml", &dup)], None).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_err(&errs[0], 23, "hop[1]", "duplicate hop");
    }

    #[test]
    fn hop_into_mynumber_from_other_zone() {
        let juki = r#"[system]
name = "juki"
zone = "mynumber"

[[target]]
name = "juki-db01"
address = "10.30.0.21"
kind = "physical"
rdp = { account = "a", credential = "c", cert_sha256 = "1200e10fa65b72171301b90276849297bc3096001376d129ee659ec0e91dfae6" }

[[hop]]
from = "fa-app01"
to = "juki-db01"
"#;
        let errs = load(&[("fa.toml", BASE), ("juki.toml", juki)], None)
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].file, PathBuf::from("/p/juki.toml"));
        assert_eq!(
            (errs[0].line, errs[0].field.as_str()),
            (Some(12), "hop[0].from")
        );
        assert!(errs[0].message.contains("My Number"), "{}", errs[0]);
    }

    #[test]
    fn access_fields() {
        let e = one_error("until = \"2027-03-31\"", "until = \"2026-03-31\"");
        assert_err(
            &e,
            25,
            "access[0].contract.until",
            "ends (2026-03-31) before it starts (2026-04-01)",
        );
        let e = one_error("until = \"2027-03-31\"", "until = \"2027-02-30\"");
        assert_err(&e, 25, "access[0].contract.until", "not a date");
        let e = one_error("\"Mon-Fri 08:30-17:15\"", "\"Mon-Fri 08:30-17:75\"");
        assert_err(&e, 26, "access[0].hours", "not a time");
        let e = one_error("\"Mon-Fri 08:30-17:15\"", "\"Weekdays 08:30-17:15\"");
        assert_err(&e, 26, "access[0].hours", "not a day");
        let e = one_error("max_session = \"2h\"", "max_session = \"0\"");
        assert_err(&e, 27, "access[0].max_session", "longer than 0");
        let e = one_error("max_session = \"2h\"", "max_session = \"8d\"");
        assert_err(&e, 27, "access[0].max_session", "limit");
        let e = one_error("[\"ssh\", \"rdp\"]", "[\"ssh\", \"vnc\"]");
        assert_err(&e, 28, "access[0].protocols[1]", "not a protocol");
        let e = one_error("[\"tanaka\", \"suzuki\"]", "[\"tanaka\", \"tanaka\"]");
        assert_err(&e, 24, "access[0].users[1]", "listed twice");
        let e = one_error("users = [\"tanaka\", \"suzuki\"]\n", "");
        assert_err(&e, 22, "access[0].users", "missing");
        let e = one_error("vendor = \"acme\"\n", "");
        assert_err(&e, 22, "access[0].vendor", "missing");
    }

    #[test]
    fn sources_deny_by_default() {
        let e = one_error("sources = [\"acme-office\"]\n", "");
        assert_err(&e, 22, "access[0].sources", "missing");
        let e = one_error("sources = [\"acme-office\"]", "sources = []");
        assert_err(&e, 29, "access[0].sources", "is empty");
        let e = one_error(
            "sources = [\"acme-office\"]",
            "sources = [\"acme-offfice\"]",
        );
        assert_err(
            &e,
            29,
            "access[0].sources[0]",
            "unknown network \"acme-offfice\"",
        );
        // Without networks, names are not checked.
        let text = BASE.replacen("\"acme-office\"", "\"anything\"", 1);
        let files = vec![(PathBuf::from("/p/fa.toml"), text)];
        assert!(PolicySet::parse_files(&files, None, None).is_ok());
    }

    #[test]
    fn mynumber_sources_must_be_closed() {
        let text = BASE.replacen("zone = \"lgwan\"", "zone = \"mynumber\"", 1);
        let errs = load(&[("fa.toml", &text)], None).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_err(&errs[0], 29, "access[0].sources[0]", "not closed");
        let ok = text.replacen("\"acme-office\"", "\"lg-closed-vpn\"", 1);
        assert!(load(&[("fa.toml", &ok)], None).is_ok());
    }

    #[test]
    fn access_targets_must_exist_in_system() {
        let text = BASE.replacen(
            "vendor = \"acme\"",
            "vendor = \"acme\"\ntargets = [\"fa-app01\", \"fa-app09\"]",
            1,
        );
        let errs = load(&[("fa.toml", &text)], None).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_err(
            &errs[0],
            24,
            "access[0].targets[1]",
            "unknown target \"fa-app09\"",
        );
    }

    #[test]
    fn several_errors_are_all_reported() {
        let text = BASE
            .replacen("kind = \"virtual\"", "kind = \"vm\"", 1)
            .replacen("max_session = \"2h\"", "max_session = \"2 hours\"", 1);
        let errs = load(&[("fa.toml", &text)], None).unwrap_err();
        assert_eq!(errs.0.len(), 2, "{errs}");
        let shown = errs.to_string();
        assert!(shown.contains("/p/fa.toml:15: target[1].kind: "), "{shown}");
        assert!(
            shown.contains("/p/fa.toml:27: access[0].max_session: "),
            "{shown}"
        );
    }

    #[test]
    fn missing_system() {
        let errs = load(&[("x.toml", "[[hop]]\nfrom = \"a\"\nto = \"b\"\n")], None)
            .unwrap_err()
            .0;
        assert_eq!(errs[0].field, "system");
        assert_eq!(errs[0].line, Some(1));
    }

    #[test]
    fn contract_dates_may_be_toml_dates() {
        let text = BASE.replacen(
            "from = \"2026-04-01\", until = \"2027-03-31\"",
            "from = 2026-04-01, until = 2027-03-31",
            1,
        );
        let set = load(&[("fa.toml", &text)], None).unwrap();
        let a = set.access().next().unwrap();
        assert_eq!(
            a.contract.until,
            NaiveDate::from_ymd_opt(2027, 3, 31).unwrap()
        );
    }

    #[test]
    fn example_policies_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let nets = vec![
            Network {
                name: "acme-office".into(),
                cidrs: vec![parse_cidr("203.0.113.0/24").unwrap()],
                closed: false,
            },
            Network {
                name: "acme-sub-office".into(),
                cidrs: vec![parse_cidr("198.51.100.0/24").unwrap()],
                closed: false,
            },
            Network {
                name: "lg-closed-vpn".into(),
                cidrs: vec![parse_cidr("10.99.0.0/16").unwrap()],
                closed: true,
            },
        ];
        let set = PolicySet::load_dir(&dir, &nets, None).unwrap();
        assert_eq!(set.systems().count(), 2);
        assert_eq!(set.target("juki-db01").unwrap().zone, Zone::MyNumber);
    }
}
