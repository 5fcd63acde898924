//! `sekisho sessions list|kill`: live sessions as the store knows them (all
//! nodes), and the administrator's emergency stop.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use uuid::Uuid;

use super::Global;
use crate::store::{AuditEvent, AuditKind, SessionStatus, Store};

#[derive(Debug, clap::Subcommand)]
pub enum SessionsCmd {
    /// List live sessions.
    List {
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// End a live session now, telling the person why.
    Kill {
        /// The session id (from `sessions list`).
        id: Uuid,
        /// The reason shown to the person and kept in the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

pub async fn run(g: &Global, cmd: SessionsCmd) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(g)?;
    let store = Store::connect(&cfg.database_url)
        .await
        .with_context(|| format!("opening the database {}", cfg.database_url))?;
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
                println!(
                    "{:<36}  {:<10}  {:<14}  {:<4}  {:<15}  {:<16}  {:<16}",
                    "ID", "USER", "TARGET", "PROTO", "FROM", "STARTED", "ENDS"
                );
                let tz = cfg.time_zone;
                for s in &live {
                    println!(
                        "{:<36}  {:<10}  {:<14}  {:<4}  {:<15}  {:<16}  {:<16}",
                        s.id,
                        s.user,
                        s.target,
                        s.protocol,
                        s.client,
                        s.started_at.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
                        s.ends_at
                            .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_default(),
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SessionsCmd::Kill { id, reason } => {
            let by = crate::auth::admin_actor();
            let Some(session) = store.session(id).await.context("reading the session")? else {
                anyhow::bail!("no session {id}");
            };
            if session.status != SessionStatus::Live {
                anyhow::bail!(
                    "session {id} is not live (status: {})",
                    session.status.as_str()
                );
            }
            store
                .request_kill(id, &by, &reason)
                .await
                .context("recording the kill request")?;
            store
                .audit(
                    &AuditEvent::new(
                        AuditKind::KillRequested,
                        format!("{by} asked to stop session {id}: {reason}"),
                    )
                    .session(id)
                    .user(&session.user)
                    .target(&session.target)
                    .protocol(&session.protocol),
                )
                .await
                .context("writing the audit event")?;
            // The serving process polls several times a second; wait to confirm.
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(100)).await;
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
