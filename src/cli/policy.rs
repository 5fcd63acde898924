//! `sekisho policy`: check the policy files, explain one decision, and list
//! who may reach a target.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;

use super::Global;
use crate::config::{Config, Network, format_duration};
use crate::policy::hours::local_to_utc;
use crate::policy::reach::ProtocolReach;
use crate::policy::{ApprovedWindow, LiveSession, Person, PolicySet, Protocol, Reach, Request};

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCmd {
    /// Check every policy file; print each error as file:line: field: message.
    Check {
        /// The policy directory (default: the one in the configuration).
        dir: Option<PathBuf>,
    },
    /// Show what sekisho would decide for one request, and why.
    Explain {
        /// The person's user name.
        #[arg(long)]
        user: String,
        /// The target's name.
        #[arg(long)]
        target: String,
        /// ssh or rdp.
        #[arg(long)]
        protocol: Protocol,
        /// The client address the request comes from.
        #[arg(long, default_value = "127.0.0.1")]
        from: IpAddr,
        /// When: RFC 3339, or "YYYY-MM-DD HH:MM" in the configured time zone
        /// (default: now).
        #[arg(long)]
        at: Option<String>,
        /// The person's vendor, then the vendors it subcontracts for,
        /// comma-separated (e.g. "acme-sub,acme"); used until the user store
        /// answers this.
        #[arg(long)]
        vendor: Option<String>,
        /// Assume a live session of the person on this target (for RDP hops);
        /// may be repeated.
        #[arg(long = "live-on")]
        live_on: Vec<String>,
    },
    /// List who may reach a target: vendor, users, protocols, hours,
    /// contract, source networks, longest session.
    WhoCan {
        /// The target's name.
        #[arg(long)]
        target: String,
    },
}

pub async fn run(g: &Global, cmd: PolicyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCmd::Check { dir } => check(g, dir).await,
        PolicyCmd::Explain {
            user,
            target,
            protocol,
            from,
            at,
            vendor,
            live_on,
        } => {
            let cfg = super::load_config(g)?;
            let set = load_policies(&cfg)?;
            let now = match at {
                Some(at) => parse_time("--at", &at, cfg.time_zone)?,
                None => Utc::now(),
            };
            let (person, mut live, approved) =
                lookup_person(&cfg, &user, vendor.as_deref(), now).await?;
            // The stops in force refuse as they would for a real session.
            let stops = super::open_store(&cfg)
                .await?
                .active_stops()
                .await
                .context("reading emergency stops")?;
            live.extend(live_on.into_iter().map(|t| LiveSession {
                id: uuid::Uuid::new_v4(),
                target: t,
                protocol: Protocol::Ssh,
            }));
            let req = Request {
                person: &person,
                target: &target,
                protocol,
                source: from,
                live_sessions: &live,
                approved: &approved,
                stops: &stops,
            };
            Ok(explain(&req, &set, &cfg.networks, cfg.time_zone, now))
        }
        PolicyCmd::WhoCan { target } => {
            let cfg = super::load_config(g)?;
            let set = load_policies(&cfg)?;
            who_can(&set, &cfg.networks, cfg.time_zone, &target)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Names of the credentials in the secret store, for `check` to verify
/// that every `credential = "..."` exists. `None` skips that check.
async fn known_credentials(cfg: &Config) -> anyhow::Result<Option<BTreeSet<String>>> {
    let store = super::open_store(cfg).await?;
    let names = crate::session::credential_names(&store)
        .await
        .context("listing credential names")?;
    Ok(Some(names))
}

/// The person as the user store knows them, with their live sessions (for
/// the hop rule) and approved work requests. `--vendor` instead describes a
/// hypothetical person who is not in the store yet, with neither.
async fn lookup_person(
    cfg: &Config,
    name: &str,
    vendor_flag: Option<&str>,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<(Person, Vec<LiveSession>, Vec<ApprovedWindow>)> {
    if let Some(chain) = vendor_flag {
        let vendor_chain: Vec<String> = chain
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let person = Person {
            name: name.to_string(),
            vendor_chain,
            enabled: true,
            locked: false,
        };
        return Ok((person, Vec::new(), Vec::new()));
    }
    let store = super::open_store(cfg).await?;
    crate::session::requester(&store, name, now)
        .await
        .context("reading the user, their live sessions and approved work requests")?
        .map(|r| (r.person, r.live, r.approved))
        .with_context(|| {
            format!(
                "no user {name:?} (add one with `sekisho user add`, or pass --vendor VENDOR[,PARENT...] to try a person not yet registered)"
            )
        })
}

/// The policy set as `explain` and `who-can` see it. Credential names are
/// not checked here (a decision does not depend on them; `check` and
/// `serve` do check them).
fn load_policies(cfg: &Config) -> anyhow::Result<PolicySet> {
    PolicySet::load_dir(&cfg.paths.policies, &cfg.networks, None).map_err(|e| {
        anyhow::anyhow!(
            "the policies in {} have errors (run `sekisho policy check`):\n{e}",
            cfg.paths.policies.display()
        )
    })
}

async fn check(g: &Global, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    // Without a configuration, a directory can still be checked, except
    // for the network names and credential names it refers to.
    let cfg = if g.config.exists() || dir.is_none() {
        Some(super::load_config(g)?)
    } else {
        None
    };
    let dir = match (dir, &cfg) {
        (Some(d), _) => d,
        (None, Some(c)) => c.paths.policies.clone(),
        (None, None) => bail!("no policy directory given"),
    };
    let creds = match &cfg {
        Some(c) => known_credentials(c).await?,
        None => None,
    };
    let networks = cfg.as_ref().map(|c| c.networks.as_slice());
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let result = PolicySet::load_dir_with(&dir, networks, creds.as_ref());
    if cfg.is_none() {
        println!(
            "note: no configuration at {}: network names in `sources` (and the closed-network rule for My Number systems) were not checked",
            g.config.display()
        );
    }
    if creds.is_none() {
        println!("note: credential names were not checked against the secret store");
    }
    match result {
        Ok(set) => {
            let systems = set.systems().count();
            let targets = set.targets().count();
            let access = set.access().count();
            let hops = set.hops().count();
            if systems == 0 {
                println!(
                    "{}: no policy files (*.toml): nothing is reachable",
                    dir.display()
                );
            } else {
                println!(
                    "{systems} {}, {targets} {}, {hops} {}, {access} access {}: OK",
                    plural(systems, "system", "systems"),
                    plural(targets, "target", "targets"),
                    plural(hops, "hop", "hops"),
                    plural(access, "entry", "entries"),
                );
            }
            // Valid, but worth knowing (the console's policy page lists the same).
            let tz = cfg.as_ref().map_or(chrono_tz::UTC, |c| c.time_zone);
            let today = Utc::now().with_timezone(&tz).date_naive();
            for w in crate::policy::warnings(&set, creds.as_ref(), today) {
                println!("warning: {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors.0 {
                println!("{e}");
            }
            let n = errors.0.len();
            println!("{n} {}", plural(n, "error", "errors"));
            Ok(ExitCode::from(1))
        }
    }
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// RFC 3339, or a wall-clock time in the configured zone.
/// A time given on the command line (`flag` names it in the error).
pub(crate) fn parse_time(flag: &str, s: &str, tz: Tz) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s.trim(), fmt) {
            return Ok(local_to_utc(tz, n));
        }
    }
    bail!("{flag} {s:?}: use RFC 3339 (2026-11-24T10:00:00+09:00) or \"YYYY-MM-DD HH:MM\" in {tz}")
}

fn explain(
    req: &Request,
    set: &PolicySet,
    networks: &[Network],
    tz: Tz,
    now: DateTime<Utc>,
) -> ExitCode {
    let explained = crate::policy::explain(req, set, networks, tz, now);
    for (i, line) in explained.lines.iter().enumerate() {
        if i == 0 {
            println!("{line}");
        } else {
            println!("  {line}");
        }
    }
    if explained.allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn who_can(set: &PolicySet, networks: &[Network], tz: Tz, name: &str) -> anyhow::Result<()> {
    let reach = Reach::of(set, networks, name)
        .with_context(|| format!("there is no target named {name:?}"))?;
    let target = reach.target;
    let offers: Vec<String> = reach
        .offers
        .iter()
        .map(|(p, port)| format!("{p}:{port}"))
        .collect();
    println!(
        "{} — system {}{} ({} zone), {} server at {}, offers {}",
        target.name,
        target.system,
        reach.title.map(|t| format!(" {t}")).unwrap_or_default(),
        target.zone,
        target.kind,
        target.address,
        offers.join(" ")
    );
    for entry in &reach.entries {
        let a = entry.access;
        let protocols: Vec<String> = entry
            .protocols
            .iter()
            .map(|p| match p {
                ProtocolReach::Direct(p) => p.to_string(),
                ProtocolReach::RdpHopOnly => {
                    format!("rdp (only as a hop from {})", reach.hops_in.join(", "))
                }
            })
            .collect();
        let sources: Vec<String> = entry.sources.iter().map(|s| s.describe()).collect();
        println!();
        println!(
            "{} access[{}]: vendor {} (and its subcontractors' engineers named below)",
            crate::policy::model::file_name(&a.file),
            a.index,
            a.vendor
        );
        println!("  users:       {}", a.users.join(", "));
        println!(
            "  protocols:   {}",
            if protocols.is_empty() {
                "none this target offers".to_string()
            } else {
                protocols.join(", ")
            }
        );
        println!("  hours:       {} ({tz})", a.hours);
        println!(
            "  contract:    {} to {} (inclusive)",
            a.contract.from, a.contract.until
        );
        println!("  sources:     {}", sources.join(", "));
        println!("  max session: {}", format_duration(a.max_session));
    }
    if reach.entries.is_empty() {
        println!();
        println!(
            "no access entry covers {}: nobody may reach it",
            target.name
        );
    }
    if !reach.hops_in.is_empty() {
        println!();
        println!(
            "RDP hops into {}: from {} (for a person with a live session there)",
            target.name,
            reach.hops_in.join(", ")
        );
    }
    Ok(())
}
