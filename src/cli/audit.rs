//! `sekisho audit`: read the audit log, one event per line (or JSON).
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::Utc;

use super::Global;
use super::user::{local_time, open};
use crate::config::parse_when;
use crate::store::{AuditFilter, AuditKind};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Events from this time: a date (2026-04-01), a time (2026-04-01 08:30 or
    /// RFC 3339), or a duration meaning that long ago (2h, 1d).
    #[arg(long)]
    pub since: Option<String>,
    /// Events before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Only events about this person.
    #[arg(long)]
    pub user: Option<String>,
    /// Only events about this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Only these kinds (repeat or separate with commas), e.g. signin_failure,deny.
    #[arg(long, value_delimiter = ',')]
    pub kind: Vec<String>,
    /// Only events of this session id.
    #[arg(long)]
    pub session: Option<uuid::Uuid>,
    /// Only the newest N events.
    #[arg(long)]
    pub limit: Option<u32>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(g: &Global, a: AuditArgs) -> anyhow::Result<ExitCode> {
    let (cfg, store) = open(g).await?;
    let now = Utc::now();
    let when = |v: &Option<String>, flag: &str| {
        v.as_deref()
            .map(|s| parse_when(s, cfg.time_zone, now))
            .transpose()
            .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
    };
    let kinds = a
        .kind
        .iter()
        .filter(|k| !k.trim().is_empty())
        .map(|k| {
            k.parse::<AuditKind>()
                .map_err(|e| anyhow::anyhow!("--kind: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let filter = AuditFilter {
        since: when(&a.since, "--since")?,
        until: when(&a.until, "--until")?,
        user: a.user,
        target: a.target,
        kinds,
        session: a.session,
        limit: a.limit,
    };
    let records = store
        .audit_query(&filter)
        .await
        .context("reading the audit log")?;
    let mut out = std::io::stdout().lock();
    for r in records {
        if a.json {
            writeln!(
                out,
                "{}",
                serde_json::to_string(&r).context("encoding an event")?
            )?;
        } else {
            // time, kind, person, target, source address, session (the ID
            // `verify`, `replay` and `export` take), then the sentence.
            let e = &r.event;
            writeln!(
                out,
                "{}  {:<16} {:<12} {:<12} {:<15} {:<36} {}",
                local_time(&cfg, r.at),
                e.kind.as_str(),
                e.user.as_deref().unwrap_or("-"),
                e.target.as_deref().unwrap_or("-"),
                e.source
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                e.session
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                e.detail
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
