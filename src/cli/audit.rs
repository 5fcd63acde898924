//! `sekisho audit`: read the audit log, one event per line (or JSON).
use std::io::Write as _;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::Global;
use super::user::{local_time, open};
use crate::config::parse_duration;
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

/// Reads a point in time the way people type one; local forms are in the
/// configured time zone.
pub(crate) fn parse_when(s: &str, tz: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    let local = |n: NaiveDateTime| {
        tz.from_local_datetime(&n)
            .earliest()
            .map(|d| d.with_timezone(&Utc))
            .ok_or_else(|| format!("{t:?} does not exist in time zone {tz}"))
    };
    for fmt in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return local(n);
        }
    }
    if let Ok(d) = NaiveDate::from_str(t) {
        return local(d.and_time(chrono::NaiveTime::MIN));
    }
    if let Ok(ago) = parse_duration(t) {
        let ago = chrono::Duration::from_std(ago).map_err(|_| format!("{t:?} is too long ago"))?;
        return now
            .checked_sub_signed(ago)
            .ok_or_else(|| format!("{t:?} is too long ago"));
    }
    Err(format!(
        "{t:?} is not a time: use a date (2026-04-01), a time (2026-04-01 08:30, or RFC 3339), or a duration (2h)"
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let tz: Tz = chrono_tz::Asia::Tokyo;
        let now = Utc.with_ymd_and_hms(2026, 4, 2, 0, 0, 0).single().unwrap();
        let day = parse_when("2026-04-01", tz, now).unwrap();
        assert_eq!(
            day,
            Utc.with_ymd_and_hms(2026, 3, 31, 15, 0, 0)
                .single()
                .unwrap()
        );
        let t = parse_when("2026-04-01 08:30", tz, now).unwrap();
        assert_eq!(
            t,
            Utc.with_ymd_and_hms(2026, 3, 31, 23, 30, 0)
                .single()
                .unwrap()
        );
        let r = parse_when("2026-04-01T08:30:00+09:00", tz, now).unwrap();
        assert_eq!(r, t);
        assert_eq!(
            parse_when("2h", tz, now).unwrap(),
            now - chrono::Duration::hours(2)
        );
        assert!(parse_when("yesterday", tz, now).is_err());
    }
}
