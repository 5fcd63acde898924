//! Checking one `[[access]]` entry: vendor, users, targets, contract,
//! hours, session limit, protocols and source networks (deny by default).

use super::MAX_SESSION_LIMIT;
use super::file::{name_list, parse_date, required, valid_name};
use super::location::Sink;
use super::schema::{RawAccess, S};
use crate::config::{Network, parse_duration};
use crate::policy::hours::Hours;
use crate::policy::model::{Access, Contract, Protocol, Zone};

pub(super) fn parse_access(
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
