//! The audit log: append-only events. There is no update or delete here,
//! and both schemas refuse UPDATE and DELETE on the table with a trigger, so
//! even a hand-written statement cannot rewrite history.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{Bind, Conditions, Store, StoreError, from_micros, parse_ip, parse_uuid, to_micros};

/// What happened. The snake_case names are stable: they are stored, printed,
/// and accepted by `sekisho audit --kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditKind {
    SigninSuccess,
    SigninFailure,
    /// An account was locked after repeated failures.
    Lockout,
    Allow,
    Deny,
    SessionStart,
    SessionEnd,
    ChannelBlocked,
    AdminChange,
    PolicyReload,
    PolicyReloadRefused,
    RecordingFailed,
    SessionKilled,
    SessionAbnormal,
    KillRequested,
    /// A connection or sign-in attempt refused before authentication by a
    /// pre-authentication limit (`[limits]`); reported at most once a
    /// minute per address and reason, with the count of the others.
    ConnectionRefused,
    /// Someone watched a live session from the web console.
    SessionWatched,
    /// A work request (or a new revision) was written as a draft.
    RequestFiled,
    RequestSubmitted,
    /// One step of a two-step route approved; the next is awaited.
    RequestStepApproved,
    /// The last (or an emergency's only) step approved: the window opens.
    RequestApproved,
    RequestRejected,
    RequestWithdrawn,
    /// The first session under an approved request started.
    RequestActivated,
    RequestClosed,
    RequestExpired,
    /// An approver revoked a request; its live sessions are stopped.
    RequestRevoked,
    /// An admin put an emergency stop in force (system, vendor or all).
    EmergencyStop,
    /// An admin lifted an emergency stop.
    EmergencyStopLifted,
    /// The engineer wrote (or rewrote) the result of a work report.
    ReportWritten,
    /// An approver signed a work report off (検収).
    ReportSignedOff,
    /// A contract copy or pledge was put on file.
    DocumentAdded,
    /// Someone read a document on file (shown or exported).
    DocumentRead,
    /// An engineer obtained their own one-time ticket under an approved request.
    RequestTicketIssued,
    /// A recording left the bastion from the console (the signed archive,
    /// an MP4): who took which session's recording, in which form.
    RecordingExported,
}

impl AuditKind {
    pub const ALL: [AuditKind; 35] = [
        AuditKind::SigninSuccess,
        AuditKind::SigninFailure,
        AuditKind::Lockout,
        AuditKind::Allow,
        AuditKind::Deny,
        AuditKind::SessionStart,
        AuditKind::SessionEnd,
        AuditKind::ChannelBlocked,
        AuditKind::AdminChange,
        AuditKind::PolicyReload,
        AuditKind::PolicyReloadRefused,
        AuditKind::RecordingFailed,
        AuditKind::SessionKilled,
        AuditKind::SessionAbnormal,
        AuditKind::KillRequested,
        AuditKind::ConnectionRefused,
        AuditKind::SessionWatched,
        AuditKind::RequestFiled,
        AuditKind::RequestSubmitted,
        AuditKind::RequestStepApproved,
        AuditKind::RequestApproved,
        AuditKind::RequestRejected,
        AuditKind::RequestWithdrawn,
        AuditKind::RequestActivated,
        AuditKind::RequestClosed,
        AuditKind::RequestExpired,
        AuditKind::RequestRevoked,
        AuditKind::EmergencyStop,
        AuditKind::EmergencyStopLifted,
        AuditKind::ReportWritten,
        AuditKind::ReportSignedOff,
        AuditKind::DocumentAdded,
        AuditKind::DocumentRead,
        AuditKind::RequestTicketIssued,
        AuditKind::RecordingExported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::SigninSuccess => "signin_success",
            AuditKind::SigninFailure => "signin_failure",
            AuditKind::Lockout => "lockout",
            AuditKind::Allow => "allow",
            AuditKind::Deny => "deny",
            AuditKind::SessionStart => "session_start",
            AuditKind::SessionEnd => "session_end",
            AuditKind::ChannelBlocked => "channel_blocked",
            AuditKind::AdminChange => "admin_change",
            AuditKind::PolicyReload => "policy_reload",
            AuditKind::PolicyReloadRefused => "policy_reload_refused",
            AuditKind::RecordingFailed => "recording_failed",
            AuditKind::SessionKilled => "session_killed",
            AuditKind::SessionAbnormal => "session_abnormal",
            AuditKind::KillRequested => "kill_requested",
            AuditKind::ConnectionRefused => "connection_refused",
            AuditKind::SessionWatched => "session_watched",
            AuditKind::RequestFiled => "request_filed",
            AuditKind::RequestSubmitted => "request_submitted",
            AuditKind::RequestStepApproved => "request_step_approved",
            AuditKind::RequestApproved => "request_approved",
            AuditKind::RequestRejected => "request_rejected",
            AuditKind::RequestWithdrawn => "request_withdrawn",
            AuditKind::RequestActivated => "request_activated",
            AuditKind::RequestClosed => "request_closed",
            AuditKind::RequestExpired => "request_expired",
            AuditKind::RequestRevoked => "request_revoked",
            AuditKind::EmergencyStop => "emergency_stop",
            AuditKind::EmergencyStopLifted => "emergency_stop_lifted",
            AuditKind::ReportWritten => "report_written",
            AuditKind::ReportSignedOff => "report_signed_off",
            AuditKind::DocumentAdded => "document_added",
            AuditKind::DocumentRead => "document_read",
            AuditKind::RequestTicketIssued => "request_ticket_issued",
            AuditKind::RecordingExported => "recording_exported",
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditKind {
    type Err = String;
    fn from_str(s: &str) -> Result<AuditKind, String> {
        let s = s.trim().replace('-', "_");
        AuditKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown audit kind {s:?} (one of: {})", names.join(", "))
            })
    }
}

impl Serialize for AuditKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The `session_start` data field naming the session a resumed one
/// continues ([`AuditEvent::resumes`]).
pub const RESUMES: &str = "resumes";

/// One event to append. `detail` is a sentence for a person; `data` holds
/// the machine-readable particulars (method, reason, …). Never a secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    pub kind: AuditKind,
    pub user: Option<String>,
    pub target: Option<String>,
    pub session: Option<Uuid>,
    pub source: Option<IpAddr>,
    pub protocol: Option<String>,
    pub detail: String,
    pub data: serde_json::Value,
}

impl AuditEvent {
    /// The session a `session_start` says it resumes (an RDP session
    /// resumed after a dropped connection names the one it continues).
    pub fn resumes(&self) -> Option<Uuid> {
        self.data.get(RESUMES)?.as_str()?.parse().ok()
    }

    /// `AuditEvent::new(AuditKind::Deny, "outside contract hours").user("tanaka").target("fa-db01")`
    pub fn new(kind: AuditKind, detail: impl Into<String>) -> AuditEvent {
        AuditEvent {
            kind,
            user: None,
            target: None,
            session: None,
            source: None,
            protocol: None,
            detail: detail.into(),
            data: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn session(mut self, id: Uuid) -> Self {
        self.session = Some(id);
        self
    }

    pub fn source(mut self, addr: IpAddr) -> Self {
        self.source = Some(crate::config::canonical_ip(addr));
        self
    }

    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Adds one field to `data` (an object).
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        if !self.data.is_object() {
            self.data = serde_json::Value::Object(serde_json::Map::new());
        }
        if let serde_json::Value::Object(m) = &mut self.data {
            m.insert(key.to_string(), value.into());
        }
        self
    }
}

/// A stored event with its sequence number and time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// Which events `audit_query` returns; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub user: Option<String>,
    pub target: Option<String>,
    pub kinds: Vec<AuditKind>,
    pub session: Option<Uuid>,
    /// The newest `limit` events (still returned oldest first).
    pub limit: Option<u32>,
}

impl Store {
    /// Appends one event.
    pub async fn audit(&self, e: &AuditEvent) -> Result<(), StoreError> {
        self.audit_at(e, Utc::now()).await
    }

    /// Appends one event with an explicit time (tests, imports). An event
    /// that names a stored session but not its target or protocol gets them
    /// from the session row, so `audit --target` finds every event of a
    /// session whichever part of sekisho wrote it.
    pub async fn audit_at(&self, e: &AuditEvent, at: DateTime<Utc>) -> Result<(), StoreError> {
        let filled;
        let e = match e.session {
            Some(id) if e.target.is_none() || e.protocol.is_none() => match self.session(id).await?
            {
                Some(s) => {
                    let mut with = e.clone();
                    with.target.get_or_insert(s.target);
                    with.protocol.get_or_insert(s.protocol);
                    filled = with;
                    &filled
                }
                None => e,
            },
            _ => e,
        };
        sqlx::query(
            "INSERT INTO audit (at, kind, user_name, target, session, source, protocol, detail, data)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(to_micros(at))
        .bind(e.kind.as_str())
        .bind(e.user.as_deref())
        .bind(e.target.as_deref())
        .bind(e.session.map(|s| s.to_string()))
        .bind(e.source.map(|s| s.to_string()))
        .bind(e.protocol.as_deref())
        .bind(e.detail.as_str())
        .bind(e.data.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Events matching the filter, oldest first.
    pub async fn audit_query(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut c = Conditions::default();
        if let Some(t) = f.since {
            c.push("at >=", Bind::Int(to_micros(t)));
        }
        if let Some(t) = f.until {
            c.push("at <", Bind::Int(to_micros(t)));
        }
        if let Some(u) = &f.user {
            c.push("user_name =", Bind::Text(u.clone()));
        }
        if let Some(t) = &f.target {
            c.push("target =", Bind::Text(t.clone()));
        }
        if let Some(s) = f.session {
            c.push("session =", Bind::Text(s.to_string()));
        }
        if !f.kinds.is_empty() {
            // Kind names are our own constants, never user text: safe to inline.
            let list: Vec<String> = f
                .kinds
                .iter()
                .map(|k| format!("'{}'", k.as_str()))
                .collect();
            c.push_raw(&format!("kind IN ({})", list.join(", ")));
        }
        let mut sql = format!(
            "SELECT id, at, kind, user_name, target, session, source, protocol, detail, data FROM audit{}",
            c.where_clause()
        );
        match f.limit {
            Some(n) => {
                sql = format!(
                    "SELECT * FROM ({sql} ORDER BY id DESC LIMIT {n}) AS newest ORDER BY id"
                )
            }
            None => sql.push_str(" ORDER BY id"),
        }
        let rows = c.bind_all(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }
}

fn audit_from_row(r: &sqlx::any::AnyRow) -> Result<AuditRecord, StoreError> {
    let kind: String = r.try_get("kind")?;
    let session: Option<String> = r.try_get("session")?;
    let source: Option<String> = r.try_get("source")?;
    let data: String = r.try_get("data")?;
    Ok(AuditRecord {
        id: r.try_get("id")?,
        at: from_micros(r.try_get("at")?)?,
        event: AuditEvent {
            kind: kind.parse().map_err(|_| StoreError::Corrupt {
                what: "audit kind",
                value: kind.clone(),
            })?,
            user: r.try_get("user_name")?,
            target: r.try_get("target")?,
            session: session.as_deref().map(parse_uuid).transpose()?,
            source: source.as_deref().map(parse_ip).transpose()?,
            protocol: r.try_get("protocol")?,
            detail: r.try_get("detail")?,
            data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_are_snake_case() {
        for k in AuditKind::ALL {
            assert_eq!(k.as_str().parse::<AuditKind>().unwrap(), k);
            assert!(
                k.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
            );
        }
        assert_eq!(
            "signin-failure".parse::<AuditKind>().unwrap(),
            AuditKind::SigninFailure
        );
        let err = "nope".parse::<AuditKind>().unwrap_err();
        assert!(err.contains("signin_success"), "{err}");
    }

    #[test]
    fn builder_fills_fields() {
        let e = AuditEvent::new(AuditKind::Deny, "outside hours")
            .user("tanaka")
            .source("::ffff:10.0.0.1".parse().unwrap())
            .with("reason", "hours");
        assert_eq!(e.user.as_deref(), Some("tanaka"));
        assert_eq!(e.source, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(e.data["reason"], "hours");
    }
}
