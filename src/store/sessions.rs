//! Session rows: one per relayed connection, from start to end, with the
//! recording's place and final digest, and the kill requests that a separate
//! `sekisho sessions kill` process leaves for the serving process to act on.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{
    Bind, Conditions, Store, StoreError, from_micros, opt_from_micros, parse_ip, parse_uuid,
    to_micros,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    /// Being relayed now.
    Live,
    /// Closed by either side.
    Ended,
    /// Stopped by an admin.
    Killed,
    /// Reached the end of its grant (or idle timeout).
    Expired,
    /// Could not be set up (target unreachable, recording refused, …).
    Failed,
    /// Left live by a process that died; found at the next start-up.
    Abnormal,
    /// The connection to the target died under the session (target down,
    /// its server process killed, the network gone): not a normal logout.
    TargetLost,
}

impl SessionStatus {
    pub const ALL: [SessionStatus; 7] = [
        SessionStatus::Live,
        SessionStatus::Ended,
        SessionStatus::Killed,
        SessionStatus::Expired,
        SessionStatus::Failed,
        SessionStatus::Abnormal,
        SessionStatus::TargetLost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Live => "live",
            SessionStatus::Ended => "ended",
            SessionStatus::Killed => "killed",
            SessionStatus::Expired => "expired",
            SessionStatus::Failed => "failed",
            SessionStatus::Abnormal => "abnormal",
            SessionStatus::TargetLost => "target_lost",
        }
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SessionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<SessionStatus, String> {
        SessionStatus::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown session status {s:?} (live, ended, killed, expired, failed, abnormal, target_lost)"
                )
            })
    }
}

impl Serialize for SessionStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Why a session ended, as a kind: stored next to the gateway's sentence
/// (`end_reason`, English) so the console can word it in each language.
/// The snake_case names are stable (stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndKind {
    /// The person or the target closed the connection.
    Closed,
    /// An administrator stopped it (or a work request was revoked).
    Killed,
    /// The grant's hard end was reached.
    TimeLimit,
    /// No input for the configured idle time.
    IdleTimeout,
    /// The target's connection died under the session.
    TargetLost,
    /// The target could not be reached or refused the session.
    TargetFailed,
    /// The recording could not be written.
    RecordingFailed,
    /// sekisho was shutting down.
    Shutdown,
    /// The session this hop was allowed from ended.
    ParentEnded,
    /// The serving process stopped without ending it (found at start-up).
    Abnormal,
}

impl EndKind {
    pub const ALL: [EndKind; 10] = [
        EndKind::Closed,
        EndKind::Killed,
        EndKind::TimeLimit,
        EndKind::IdleTimeout,
        EndKind::TargetLost,
        EndKind::TargetFailed,
        EndKind::RecordingFailed,
        EndKind::Shutdown,
        EndKind::ParentEnded,
        EndKind::Abnormal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndKind::Closed => "closed",
            EndKind::Killed => "killed",
            EndKind::TimeLimit => "time_limit",
            EndKind::IdleTimeout => "idle_timeout",
            EndKind::TargetLost => "target_lost",
            EndKind::TargetFailed => "target_failed",
            EndKind::RecordingFailed => "recording_failed",
            EndKind::Shutdown => "shutdown",
            EndKind::ParentEnded => "parent_ended",
            EndKind::Abnormal => "abnormal",
        }
    }
}

impl fmt::Display for EndKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EndKind {
    type Err = String;
    fn from_str(s: &str) -> Result<EndKind, String> {
        EndKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown end kind {s:?}"))
    }
}

impl Serialize for EndKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a gateway knows when a session starts.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: Uuid,
    pub user: String,
    pub vendor: Option<String>,
    pub target: String,
    pub protocol: String,
    pub client: IpAddr,
    /// The session this one hops from (server-to-server RDP).
    pub parent: Option<Uuid>,
    /// Which sekisho process serves it (several may share PostgreSQL).
    pub node: String,
    pub started_at: DateTime<Utc>,
    /// When the grant ends.
    pub ends_at: Option<DateTime<Utc>>,
    pub recording_path: Option<String>,
    /// The work request (number) it was allowed under, where one was needed.
    pub work_request: Option<String>,
}

/// How a session ended, and what became of its recording.
#[derive(Debug, Clone)]
pub struct SessionEnd {
    pub status: SessionStatus,
    /// Why, as a kind (`None`: not known, the console shows `reason`).
    pub kind: Option<EndKind>,
    /// Why, in the gateway's words (English).
    pub reason: String,
    pub ended_at: DateTime<Utc>,
    pub recording_size: Option<u64>,
    /// Hex of the recording's final chained digest.
    pub recording_digest: Option<String>,
    /// e.g. "sealed", "incomplete", "failed".
    pub recording_status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRecord {
    pub id: Uuid,
    pub user: String,
    pub vendor: Option<String>,
    pub target: String,
    pub protocol: String,
    pub client: IpAddr,
    pub parent: Option<Uuid>,
    pub node: String,
    pub started_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status: SessionStatus,
    pub end_reason: Option<String>,
    /// Why it ended, as a kind (rows from before migration 0005: `None`).
    pub end_kind: Option<EndKind>,
    pub recording_path: Option<String>,
    pub recording_size: Option<u64>,
    pub recording_digest: Option<String>,
    pub recording_status: Option<String>,
    pub kill_requested_at: Option<DateTime<Utc>>,
    pub kill_reason: Option<String>,
    pub killed_by: Option<String>,
    pub work_request: Option<String>,
}

/// A request, left by another process, to stop a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillRequest {
    pub id: Uuid,
    pub requested_at: DateTime<Utc>,
    pub by: String,
    pub reason: String,
}

/// Which sessions `sessions` returns; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Started at or after.
    pub since: Option<DateTime<Utc>>,
    /// Started before.
    pub until: Option<DateTime<Utc>>,
    pub user: Option<String>,
    pub vendor: Option<String>,
    pub target: Option<String>,
    /// `ssh` or `rdp`.
    pub protocol: Option<String>,
    pub status: Option<SessionStatus>,
    pub node: Option<String>,
    /// Only the hops opened from this session.
    pub parent: Option<Uuid>,
    /// Only these targets (e.g. the targets of one system); an empty list
    /// matches nothing.
    pub targets: Option<Vec<String>>,
    /// Newest first instead of oldest first (the console's order).
    pub newest_first: bool,
    /// The newest `limit` sessions, after skipping the `offset` newest
    /// (paging); returned oldest first unless `newest_first`.
    pub limit: Option<u32>,
    pub offset: u32,
}

const COLUMNS: &str = "id, user_name, vendor, target, protocol, client_addr, parent, node, started_at, ends_at,
    ended_at, status, end_reason, recording_path, recording_size, recording_digest, recording_status,
    kill_requested_at, kill_reason, killed_by, work_request, end_kind";

impl Store {
    pub async fn start_session(&self, s: &NewSession) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id, user_name, vendor, target, protocol, client_addr, parent, node,
                                   started_at, ends_at, status, recording_path, work_request)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'live', $11, $12)",
        )
        .bind(s.id.to_string())
        .bind(s.user.as_str())
        .bind(s.vendor.as_deref())
        .bind(s.target.as_str())
        .bind(s.protocol.as_str())
        .bind(crate::config::canonical_ip(s.client).to_string())
        .bind(s.parent.map(|p| p.to_string()))
        .bind(s.node.as_str())
        .bind(to_micros(s.started_at))
        .bind(s.ends_at.map(to_micros))
        .bind(s.recording_path.as_deref())
        .bind(s.work_request.as_deref())
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::SessionExists(s.id),
            _ => e.into(),
        })?;
        Ok(())
    }

    /// Sets where the recording is written (when it is known after start).
    pub async fn set_session_recording(&self, id: Uuid, path: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE sessions SET recording_path = $1 WHERE id = $2")
            .bind(path)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSession(id));
        }
        Ok(())
    }

    /// Closes a live session. Errors if it does not exist or already ended,
    /// so a session cannot be ended twice with different outcomes.
    pub async fn end_session(&self, id: Uuid, end: &SessionEnd) -> Result<(), StoreError> {
        let size = end
            .recording_size
            .map(|s| i64::try_from(s).unwrap_or(i64::MAX));
        let done = sqlx::query(
            "UPDATE sessions SET status = $1, end_reason = $2, ended_at = $3, recording_size = $4,
                    recording_digest = $5, recording_status = $6, end_kind = $7
             WHERE id = $8 AND status = 'live'",
        )
        .bind(end.status.as_str())
        .bind(end.reason.as_str())
        .bind(to_micros(end.ended_at))
        .bind(size)
        .bind(end.recording_digest.as_deref())
        .bind(end.recording_status.as_deref())
        .bind(end.kind.map(EndKind::as_str))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(match self.session(id).await? {
                Some(_) => StoreError::SessionNotLive(id),
                None => StoreError::NoSession(id),
            });
        }
        Ok(())
    }

    pub async fn session(&self, id: Uuid) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sessions WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| session_from_row(&r)).transpose()
    }

    /// Live sessions of every node, oldest first.
    pub async fn live_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        self.sessions(&SessionFilter {
            status: Some(SessionStatus::Live),
            ..SessionFilter::default()
        })
        .await
    }

    /// Sessions matching the filter, oldest first (or newest first), one
    /// page of them when the filter has a limit.
    pub async fn sessions(&self, f: &SessionFilter) -> Result<Vec<SessionRecord>, StoreError> {
        let c = session_conditions(f);
        let order = if f.newest_first { "DESC" } else { "ASC" };
        let sql = match f.limit {
            // The newest `n` after the `offset` newest, then in the order
            // asked for. Numbers of our own, not user text: safe to inline.
            Some(n) => format!(
                "SELECT * FROM (SELECT {COLUMNS} FROM sessions{} ORDER BY started_at DESC, id DESC
                 LIMIT {n} OFFSET {}) AS newest ORDER BY started_at {order}, id {order}",
                c.where_clause(),
                f.offset
            ),
            None => format!(
                "SELECT {COLUMNS} FROM sessions{} ORDER BY started_at {order}, id {order}",
                c.where_clause()
            ),
        };
        let rows = c.bind_all(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter().map(session_from_row).collect()
    }

    /// How many sessions match the filter (ignoring its paging).
    pub async fn count_sessions(&self, f: &SessionFilter) -> Result<u64, StoreError> {
        let c = session_conditions(f);
        let sql = format!("SELECT COUNT(*) AS n FROM sessions{}", c.where_clause());
        let row = c.bind_all(sqlx::query(&sql)).fetch_one(&self.pool).await?;
        let n: i64 = row.try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// At start-up: sessions this node left `live` when its process died are
    /// marked `abnormal`. Other nodes' sessions are left alone. Returns the
    /// ids marked, so `serve` can audit each.
    pub async fn mark_abandoned_live_sessions(&self, node: &str) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(
            "UPDATE sessions SET status = 'abnormal', ended_at = $1, end_kind = 'abnormal',
                    end_reason = 'the serving process stopped without ending the session'
             WHERE status = 'live' AND node = $2 RETURNING id",
        )
        .bind(to_micros(Utc::now()))
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| parse_uuid(&r.try_get::<String, _>("id")?))
            .collect()
    }

    /// Asks the serving process to stop a live session (it polls
    /// `pending_kills`). The first request's reason and author are kept.
    pub async fn request_kill(&self, id: Uuid, by: &str, reason: &str) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET kill_requested_at = $1, killed_by = $2, kill_reason = $3
             WHERE id = $4 AND status = 'live' AND kill_requested_at IS NULL",
        )
        .bind(to_micros(Utc::now()))
        .bind(by)
        .bind(reason)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return match self.session(id).await? {
                None => Err(StoreError::NoSession(id)),
                Some(s) if s.status != SessionStatus::Live => Err(StoreError::SessionNotLive(id)),
                Some(_) => Ok(()), // already requested: asking again is harmless
            };
        }
        Ok(())
    }

    /// An administrator's emergency stop, from the CLI or the console: the
    /// session must be live; the request is kept for its serving process
    /// (which polls `pending_kills`) and audited as `kill_requested`.
    pub async fn ask_to_stop(
        &self,
        id: Uuid,
        by: &str,
        reason: &str,
    ) -> Result<SessionRecord, StoreError> {
        let session = self.session(id).await?.ok_or(StoreError::NoSession(id))?;
        if session.status != SessionStatus::Live {
            return Err(StoreError::SessionNotLive(id));
        }
        self.request_kill(id, by, reason).await?;
        self.audit(
            &super::AuditEvent::new(
                super::AuditKind::KillRequested,
                format!("{by} asked to stop session {id}: {reason}"),
            )
            .session(id)
            .user(&session.user)
            .target(&session.target)
            .protocol(&session.protocol),
        )
        .await?;
        Ok(session)
    }

    /// Live sessions of `node` that someone asked to stop.
    pub async fn pending_kills(&self, node: &str) -> Result<Vec<KillRequest>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kill_requested_at, killed_by, kill_reason FROM sessions
             WHERE status = 'live' AND node = $1 AND kill_requested_at IS NOT NULL
             ORDER BY kill_requested_at",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KillRequest {
                    id: parse_uuid(&r.try_get::<String, _>("id")?)?,
                    requested_at: from_micros(r.try_get("kill_requested_at")?)?,
                    by: r
                        .try_get::<Option<String>, _>("killed_by")?
                        .unwrap_or_default(),
                    reason: r
                        .try_get::<Option<String>, _>("kill_reason")?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }
}

fn session_conditions(f: &SessionFilter) -> Conditions {
    let mut c = Conditions::default();
    if let Some(t) = f.since {
        c.push("started_at >=", Bind::Int(to_micros(t)));
    }
    if let Some(t) = f.until {
        c.push("started_at <", Bind::Int(to_micros(t)));
    }
    if let Some(v) = &f.user {
        c.push("user_name =", Bind::Text(v.clone()));
    }
    if let Some(v) = &f.vendor {
        c.push("vendor =", Bind::Text(v.clone()));
    }
    if let Some(v) = &f.target {
        c.push("target =", Bind::Text(v.clone()));
    }
    if let Some(v) = f.status {
        c.push("status =", Bind::Text(v.as_str().into()));
    }
    if let Some(v) = &f.node {
        c.push("node =", Bind::Text(v.clone()));
    }
    if let Some(v) = &f.protocol {
        c.push("protocol =", Bind::Text(v.clone()));
    }
    if let Some(v) = f.parent {
        c.push("parent =", Bind::Text(v.to_string()));
    }
    if let Some(targets) = &f.targets {
        if targets.is_empty() {
            c.push_raw("1 = 0");
        } else {
            let mut placeholders = Vec::new();
            for t in targets {
                placeholders.push(c.placeholder(Bind::Text(t.clone())));
            }
            c.push_raw(&format!("target IN ({})", placeholders.join(", ")));
        }
    }
    c
}

fn session_from_row(r: &sqlx::any::AnyRow) -> Result<SessionRecord, StoreError> {
    let status: String = r.try_get("status")?;
    let parent: Option<String> = r.try_get("parent")?;
    let size: Option<i64> = r.try_get("recording_size")?;
    let end_kind: Option<String> = r.try_get("end_kind")?;
    Ok(SessionRecord {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        user: r.try_get("user_name")?,
        vendor: r.try_get("vendor")?,
        target: r.try_get("target")?,
        protocol: r.try_get("protocol")?,
        client: parse_ip(&r.try_get::<String, _>("client_addr")?)?,
        parent: parent.as_deref().map(parse_uuid).transpose()?,
        node: r.try_get("node")?,
        started_at: from_micros(r.try_get("started_at")?)?,
        ends_at: opt_from_micros(r.try_get("ends_at")?)?,
        ended_at: opt_from_micros(r.try_get("ended_at")?)?,
        status: status.parse().map_err(|_| StoreError::Corrupt {
            what: "session status",
            value: status.clone(),
        })?,
        end_reason: r.try_get("end_reason")?,
        end_kind: end_kind
            .map(|k| {
                k.parse().map_err(|_| StoreError::Corrupt {
                    what: "session end kind",
                    value: k.clone(),
                })
            })
            .transpose()?,
        recording_path: r.try_get("recording_path")?,
        recording_size: size.map(|s| u64::try_from(s).unwrap_or(0)),
        recording_digest: r.try_get("recording_digest")?,
        recording_status: r.try_get("recording_status")?,
        kill_requested_at: opt_from_micros(r.try_get("kill_requested_at")?)?,
        kill_reason: r.try_get("kill_reason")?,
        killed_by: r.try_get("killed_by")?,
        work_request: r.try_get("work_request")?,
    })
}
