//! Checks across all policy files: unique system and target names and
//! addresses, hops and access entries naming known targets of their system.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::PolicyError;
use super::file::ParsedFile;
use crate::policy::model::{PolicySet, Zone, file_name};

/// Checks across files: unique names and addresses, hops and access
/// entries naming known targets.
pub(super) fn cross_check(parsed: Vec<ParsedFile>, errors: &mut Vec<PolicyError>) -> PolicySet {
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

    // Lookups by name, so that checking hops and access entries stays linear
    // in the number of targets.
    let target_index: HashMap<String, usize> = set
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let mut hops_seen: HashSet<(String, String)> = HashSet::new();
    let declared: BTreeSet<String> = parsed
        .iter()
        .flat_map(|p| p.declared.iter().cloned())
        .collect();
    for pf in &parsed {
        let Some((system, _)) = &pf.system else {
            continue;
        };
        for (i, (hop, from_line, to_line)) in pf.hops.iter().enumerate() {
            let target = |name: &str| target_index.get(name).and_then(|&i| set.targets.get(i));
            let from = target(&hop.from).cloned();
            let to = target(&hop.to).cloned();
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
            if good && !hops_seen.insert((hop.from.clone(), hop.to.clone())) {
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
                    match target_index.get(name).and_then(|&i| set.targets.get(i)) {
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
