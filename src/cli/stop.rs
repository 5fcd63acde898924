//! `sekisho stop system S|vendor V|all --reason …`, `stop lift ID`, `stop
//! list`: the emergency stop (緊急停止). What a stop does, and how every
//! node enforces it, is in `session::stop`; this is its command line.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;

use super::Global;
use crate::auth::admin_actor;
use crate::policy::{PolicySet, StopScope};
use crate::session::stop::{self, Actor};
use crate::store::StopRecord;

#[derive(Debug, clap::Subcommand)]
pub enum StopCmd {
    /// End every live session to a system's targets and refuse new ones.
    System {
        /// The system's name (`[system] name` in its policy file).
        name: String,
        /// Shown to every person whose session is ended or refused, and audited.
        #[arg(long)]
        reason: String,
    },
    /// End every live session of a vendor's people (and of its
    /// subcontractors') and refuse new ones.
    Vendor {
        name: String,
        /// Shown to every person whose session is ended or refused, and audited.
        #[arg(long)]
        reason: String,
    },
    /// End every live session and refuse new ones, whoever and wherever.
    All {
        /// Shown to every person whose session is ended or refused, and audited.
        #[arg(long)]
        reason: String,
    },
    /// Lift a stop: new sessions in its scope are decided as before.
    Lift {
        /// The stop's number (from `stop list`).
        id: i64,
        /// Why it is lifted (kept in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The stops in force (with --all, lifted ones too, newest first).
    List {
        #[arg(long)]
        all: bool,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(g: &Global, cmd: StopCmd) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(g)?;
    let store = super::open_store(&cfg).await?;
    let name = admin_actor();
    let actor = Actor {
        name: &name,
        via: "cli",
    };
    let (scope, reason) = match cmd {
        StopCmd::System { name, reason } => (StopScope::System(name), reason),
        StopCmd::Vendor { name, reason } => (StopScope::Vendor(name), reason),
        StopCmd::All { reason } => (StopScope::All, reason),
        StopCmd::Lift { id, reason } => {
            let s = stop::lift(&store, id, &reason, actor)
                .await
                .with_context(|| format!("lifting emergency stop {id}"))?;
            println!(
                "lifted emergency stop {} of {}; new sessions in its scope are allowed again",
                s.id,
                s.scope()?
            );
            let left = store.stops_in_force().await?;
            if !left.is_empty() {
                println!("still in force: {}", describe_all(&left)?);
            }
            return Ok(ExitCode::SUCCESS);
        }
        StopCmd::List { all, json } => {
            let stops = if all {
                store.recent_stops(1000).await?
            } else {
                store.stops_in_force().await?
            };
            let mut out = std::io::stdout().lock();
            if json {
                for s in &stops {
                    writeln!(out, "{}", serde_json::to_string(s)?)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            if stops.is_empty() {
                writeln!(
                    out,
                    "{}",
                    if all {
                        "no emergency stops"
                    } else {
                        "no emergency stop in force"
                    }
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            let at = |t| super::user::local_time(&cfg, t);
            let header = ["ID", "SCOPE", "REASON", "BY", "SINCE", "LIFTED"].map(String::from);
            let rows: Vec<[String; 6]> = stops
                .iter()
                .map(|s| {
                    [
                        s.id.to_string(),
                        s.scope().map(|sc| sc.to_string()).unwrap_or_default(),
                        s.reason.clone(),
                        s.stopped_by.clone(),
                        at(s.stopped_at),
                        match (&s.lifted_at, &s.lifted_by) {
                            (Some(t), Some(by)) => format!("{} by {by}", at(*t)),
                            (Some(t), None) => at(*t),
                            _ => "in force".into(),
                        },
                    ]
                })
                .collect();
            super::table::write(&mut out, &header, &rows)?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    // A system stop is checked against the policies as they are on disk.
    let policies = PolicySet::load_dir(&cfg.paths.policies, &cfg.networks, None).map_err(|e| {
        anyhow::anyhow!(
            "the policies in {} have errors (run `sekisho policy check`):\n{e}",
            cfg.paths.policies.display()
        )
    })?;
    let s = stop::put_in_force(&store, &policies, scope.clone(), &reason, actor)
        .await
        .context("putting the emergency stop in force")?;
    println!(
        "emergency stop {} in force for {scope}: new sessions are refused until `sekisho stop lift {}`",
        s.id, s.id
    );
    // Every serving node sweeps its sessions each second; wait to confirm.
    let mut wait = crate::session::ConfirmEnd::start();
    let left = loop {
        let left = stop::live_in_scope(&store, &policies, &scope).await?;
        if left.is_empty() || !wait.next_look().await {
            break left;
        }
    };
    if left.is_empty() {
        println!("no live session in scope");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} live session(s) in scope have not ended yet (is their `sekisho serve` running?):",
        left.len()
    );
    for s in &left {
        println!("  {}  {}  {}  {}", s.id, s.user, s.target, s.node);
    }
    Ok(ExitCode::from(1))
}

fn describe_all(stops: &[StopRecord]) -> anyhow::Result<String> {
    Ok(stops
        .iter()
        .map(|s| Ok(format!("{} ({})", s.id, s.scope()?)))
        .collect::<anyhow::Result<Vec<_>>>()?
        .join(", "))
}
