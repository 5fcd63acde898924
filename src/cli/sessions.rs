//! `sekisho sessions list|history|kill`: live sessions as the store knows
//! them (all nodes), past sessions to find one to verify, replay or export,
//! and the administrator's emergency stop.

use std::collections::HashMap;
use std::process::ExitCode;

use std::io::Write as _;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Global;
use crate::config::Config;
use crate::store::{AuditFilter, AuditKind, SessionFilter, SessionRecord, SessionStatus, Store};

#[derive(Debug, clap::Subcommand)]
pub enum SessionsCmd {
    /// List live sessions.
    List {
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// List past and live sessions (newest last), to find one to verify,
    /// replay or export.
    History(HistoryArgs),
    /// End a live session now, telling the person why.
    Kill {
        /// The session id (from `sessions list`).
        id: Uuid,
        /// The reason shown to the person and kept in the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Only sessions of this person.
    #[arg(long, visible_alias = "person")]
    pub user: Option<String>,
    /// Only sessions of this vendor's people.
    #[arg(long)]
    pub vendor: Option<String>,
    /// Only sessions on this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Only sessions over this protocol.
    #[arg(long, value_parser = ["ssh", "rdp"])]
    pub protocol: Option<String>,
    /// Sessions started at or after this time (same forms as `audit --since`:
    /// 2026-04-01, "2026-04-01 08:30", RFC 3339, or a duration such as 2h).
    #[arg(long)]
    pub since: Option<String>,
    /// Sessions started before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Only sessions in this state: live, ended, killed, expired, failed, abnormal, target_lost.
    #[arg(long)]
    pub state: Option<SessionStatus>,
    /// Only the newest N sessions.
    #[arg(long)]
    pub limit: Option<u32>,
    /// Print one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(g: &Global, cmd: SessionsCmd) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(g)?;
    let store = super::open_store(&cfg).await?;
    match cmd {
        SessionsCmd::List { json } => {
            let live = store
                .live_sessions()
                .await
                .context("listing live sessions")?;
            if json {
                for s in &live {
                    println!("{}", serde_json::to_string(s)?);
                }
            } else if live.is_empty() {
                println!("no live sessions");
            } else {
                let tz = cfg.time_zone;
                let at =
                    |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
                let header =
                    ["ID", "USER", "TARGET", "PROTO", "FROM", "STARTED", "ENDS"].map(String::from);
                let rows: Vec<[String; 7]> = live
                    .iter()
                    .map(|s| {
                        [
                            s.id.to_string(),
                            s.user.clone(),
                            s.target.clone(),
                            s.protocol.clone(),
                            s.client.to_string(),
                            at(s.started_at),
                            s.ends_at.map(at).unwrap_or_default(),
                        ]
                    })
                    .collect();
                let mut out = std::io::stdout().lock();
                super::table::write(&mut out, &header, &rows)?;
                writeln!(out, "(times in {tz})")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        SessionsCmd::History(a) => history(&cfg, &store, a).await,
        SessionsCmd::Kill { id, reason } => {
            let by = crate::auth::admin_actor();
            match store.ask_to_stop(id, &by, &reason).await {
                Ok(_) => {}
                Err(crate::store::StoreError::SessionNotLive(_)) => {
                    let status = store
                        .session(id)
                        .await?
                        .map(|s| s.status.as_str())
                        .unwrap_or("gone");
                    anyhow::bail!("session {id} is not live (status: {status})");
                }
                Err(e) => return Err(anyhow::Error::new(e).context("recording the kill request")),
            }
            // The serving process polls several times a second; wait to confirm.
            let mut wait = crate::session::ConfirmEnd::start();
            while wait.next_look().await {
                if let Some(s) = store.session(id).await?
                    && s.status != SessionStatus::Live
                {
                    println!("session {id} ended ({})", s.status.as_str());
                    return Ok(ExitCode::SUCCESS);
                }
            }
            println!(
                "kill of session {id} requested; it has not ended yet (is its `sekisho serve` running?)"
            );
            Ok(ExitCode::from(1))
        }
    }
}

async fn history(cfg: &Config, store: &Store, a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let when = |v: &Option<String>, flag: &str| {
        v.as_deref()
            .map(|s| crate::config::parse_when(s, cfg.time_zone, now))
            .transpose()
            .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
    };
    let filter = SessionFilter {
        since: when(&a.since, "--since")?,
        until: when(&a.until, "--until")?,
        user: a.user,
        vendor: a.vendor,
        target: a.target,
        protocol: a.protocol,
        status: a.state,
        node: None,
        limit: a.limit,
        ..SessionFilter::default()
    };
    let sessions = store.sessions(&filter).await.context("listing sessions")?;
    let resumes = resumptions(store, &sessions).await?;
    let mut out = std::io::stdout().lock();
    if a.json {
        for s in &sessions {
            let line = HistoryLine {
                session: s,
                resumes: resumes.get(&s.id).copied(),
            };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if sessions.is_empty() {
        writeln!(out, "no sessions match")?;
        return Ok(ExitCode::SUCCESS);
    }
    let tz = cfg.time_zone;
    let at = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
    let rows: Vec<[String; 9]> = sessions
        .iter()
        .map(|s| {
            [
                s.id.to_string(),
                s.user.clone(),
                s.vendor.clone().unwrap_or_else(|| "-".into()),
                s.target.clone(),
                s.protocol.clone(),
                s.client.to_string(),
                at(s.started_at),
                s.ended_at.map(at).unwrap_or_else(|| "-".into()),
                s.status.as_str().to_string(),
            ]
        })
        .collect();
    let header = [
        "ID", "USER", "VENDOR", "TARGET", "PROTO", "FROM", "STARTED", "ENDED", "STATE",
    ]
    .map(String::from);
    if resumes.is_empty() {
        super::table::write(&mut out, &header, &rows)?;
    } else {
        // Only a listing with a resumed RDP session needs the column.
        let rows: Vec<[String; 10]> = rows
            .into_iter()
            .zip(&sessions)
            .map(|([a, b, c, d, e, f, g, h, i], s)| {
                let r = resumes
                    .get(&s.id)
                    .map_or_else(|| "-".into(), Uuid::to_string);
                [a, b, c, d, e, f, g, h, i, r]
            })
            .collect();
        let [a, b, c, d, e, f, g, h, i] = header;
        let header = [a, b, c, d, e, f, g, h, i, "RESUMES".into()];
        super::table::write(&mut out, &header, &rows)?;
    }
    writeln!(out, "(times in {tz})")?;
    Ok(ExitCode::SUCCESS)
}

/// A line of `sessions history --json`: the stored session and the one it
/// resumes, if any.
#[derive(serde::Serialize)]
struct HistoryLine<'a> {
    #[serde(flatten)]
    session: &'a SessionRecord,
    resumes: Option<Uuid>,
}

/// Which of `sessions` resume another (RDP, after a dropped connection,
/// rdp::reconnect), from their `session_start` audit events, which name it
/// in `resumes`; the sessions table does not keep it.
async fn resumptions(
    store: &Store,
    sessions: &[SessionRecord],
) -> anyhow::Result<HashMap<Uuid, Uuid>> {
    let rdp: HashMap<Uuid, DateTime<Utc>> = sessions
        .iter()
        .filter(|s| s.protocol == "rdp")
        .map(|s| (s.id, s.started_at))
        .collect();
    let (Some(first), Some(last)) = (rdp.values().min(), rdp.values().max()) else {
        return Ok(HashMap::new());
    };
    // The start is audited just after the row is written.
    let starts = store
        .audit_query(&AuditFilter {
            since: Some(*first - chrono::Duration::minutes(1)),
            until: Some(*last + chrono::Duration::minutes(5)),
            kinds: vec![AuditKind::SessionStart],
            ..AuditFilter::default()
        })
        .await
        .context("reading the sessions' starts from the audit log")?;
    Ok(starts
        .iter()
        .filter_map(|e| {
            let id = e.event.session.filter(|id| rdp.contains_key(id))?;
            let resumed = e.event.resumes()?;
            Some((id, resumed))
        })
        .collect())
}
