//! The protocol-independent life of a session: decide → open the recording →
//! register → (the gateway relays) → seal, store and audit the end.
//!
//! Each step writes its own audit event, so a gateway cannot forget one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{LiveEntry, LiveGuard, Services};
use crate::policy::{Decision, Protocol, Request};
use crate::recording::{ArchiveSummary, Recorder, RecordingFailed, SessionMeta};
use crate::store::{
    AuditEvent, AuditKind, EndKind, NewSession, SessionEnd, SessionStatus, UserRecord,
};

/// A session the policy allowed, with the credential to inject.
pub struct Authorized {
    pub id: Uuid,
    pub user: UserRecord,
    pub grant: crate::policy::Grant,
    pub source: IpAddr,
    /// The target credential from the secret store. Never logged or shown.
    pub credential: Zeroizing<Vec<u8>>,
    pub decided_at: DateTime<Utc>,
    /// The session whose dropped connection this one resumes (RDP
    /// auto-reconnect), named by its `session_start` audit event.
    pub resumes: Option<Uuid>,
}

impl std::fmt::Debug for Authorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorized")
            .field("id", &self.id)
            .field("user", &self.user.name)
            .field("target", &self.grant.target.name)
            .finish_non_exhaustive()
    }
}

impl Authorized {
    /// What every audit event of this session names besides its id.
    pub fn tag(&self) -> SessionTag {
        SessionTag {
            id: self.id,
            target: self.grant.target.name.clone(),
            protocol: self.grant.protocol,
        }
    }
}

/// The session an audit event belongs to: its id, target and protocol, so
/// `audit --target` and `audit --session` find the same events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTag {
    pub id: Uuid,
    pub target: String,
    pub protocol: Protocol,
}

/// A session between its decision and its end, as a gateway's core keeps it:
/// what is needed to seal its archive and close its row, whatever happens.
pub struct Pending {
    pub authorized: Authorized,
    pub recorder: Option<Recorder>,
    /// Present once the session is registered as live.
    pub guard: Option<LiveGuard>,
}

impl Pending {
    pub fn new(authorized: Authorized) -> Pending {
        Pending {
            authorized,
            recorder: None,
            guard: None,
        }
    }
}

/// One gateway's sessions between decision and end, by session id.
#[derive(Default)]
pub struct PendingSessions(Mutex<HashMap<Uuid, Pending>>);

impl PendingSessions {
    /// Never held across an await.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Pending>> {
        // A poisoned map is still a consistent map of independent entries.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where connecting to the target failed and how: the gateway's named
/// phase and failure kind (snake_case, e.g. `tls` / `certificate_pin`), so
/// the audit log and tests match on a kind, not on the reason's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TargetFailure {
    pub phase: &'static str,
    pub kind: &'static str,
}

impl From<TargetFailure> for serde_json::Value {
    fn from(f: TargetFailure) -> serde_json::Value {
        serde_json::json!({ "phase": f.phase, "kind": f.kind })
    }
}

/// Why a session was refused; `reason` is written for the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: &'static str,
    pub reason: String,
}

impl Services {
    /// Decides whether `user` may reach `target` over `protocol` from
    /// `source` now; audits the decision either way. On allow, fetches the
    /// target credential (a missing one is a refusal: nothing to inject).
    pub async fn authorize(
        &self,
        user: &str,
        target: &str,
        protocol: Protocol,
        source: IpAddr,
    ) -> Result<Authorized, Refusal> {
        let now = Utc::now();
        let source = crate::config::canonical_ip(source);
        let base = AuditEvent::new(AuditKind::Deny, "")
            .user(user)
            .target(target)
            .source(source)
            .protocol(protocol.as_str());
        let refuse = |rule: &'static str, reason: String| async move {
            let mut ev = base.clone().with("rule", rule);
            ev.detail = reason.clone();
            self.audit(ev).await;
            Refusal { rule, reason }
        };

        let record = match self.store.user(user).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(refuse("unknown_user", format!("unknown person {user}")).await),
            Err(e) => {
                tracing::error!(error = %e, "authorize: store unavailable");
                return Err(refuse(
                    "internal",
                    "sekisho cannot decide right now (internal error); try again later".into(),
                )
                .await);
            }
        };
        let person = super::person_of(&record, now);
        let live = match super::live_sessions_of(&self.store, user).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "authorize: store unavailable");
                return Err(refuse(
                    "internal",
                    "sekisho cannot decide right now (internal error); try again later".into(),
                )
                .await);
            }
        };
        let approved = match super::approved_windows_of(&self.store, user, now).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "authorize: store unavailable");
                return Err(refuse(
                    "internal",
                    "sekisho cannot decide right now (internal error); try again later".into(),
                )
                .await);
            }
        };
        let stops = match self.store.active_stops().await {
            Ok(s) => s,
            Err(e) => {
                // Not knowing whether a stop is in force, refuse.
                tracing::error!(error = %e, "authorize: cannot read emergency stops");
                return Err(refuse(
                    "internal",
                    "sekisho cannot decide right now (internal error); try again later".into(),
                )
                .await);
            }
        };
        let policies = self.policies();
        let request = Request {
            person: &person,
            target,
            protocol,
            source,
            live_sessions: &live,
            approved: &approved,
            stops: &stops,
        };
        let grant = match crate::policy::decide(
            &request,
            &policies,
            &self.config.networks,
            self.config.time_zone,
            now,
        ) {
            Decision::Allow(g) => g,
            Decision::Deny(d) => return Err(refuse(d.rule.as_str(), d.reason).await),
        };
        let credential = match self.secrets.get(&grant.endpoint.credential).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(refuse(
                    "credential_missing",
                    format!("the credential for {target} is not available; ask the administrator"),
                )
                .await);
            }
            Err(e) => {
                tracing::error!(error = %e, credential = %grant.endpoint.credential, "reading a target credential failed");
                return Err(refuse(
                    "credential_missing",
                    format!("the credential for {target} cannot be read; ask the administrator"),
                )
                .await);
            }
        };
        let id = Uuid::now_v7();
        let tz = self.config.time_zone;
        let detail = format!(
            "{user} may use {} on {target} until {} ({})",
            protocol.as_str(),
            grant.ends_at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
            grant.ends_because.describe()
        );
        let mut ev = AuditEvent::new(AuditKind::Allow, detail)
            .user(user)
            .target(target)
            .source(source)
            .protocol(protocol.as_str())
            .session(id)
            .with("access", grant.access.to_string())
            .with("ends_at", grant.ends_at.to_rfc3339())
            .with("ends_because", grant.ends_because.as_str());
        if let Some(parent) = grant.hop_parent {
            ev = ev.with("hop_parent", parent.to_string());
        }
        if let Some(r) = &grant.request {
            ev = ev
                .with("request", r.number.as_str())
                .with("revision", r.revision)
                .with("emergency", r.emergency);
            ev.detail.push_str(&format!(" under {r}"));
        }
        self.audit(ev).await;
        Ok(Authorized {
            id,
            user: record,
            grant,
            source,
            credential,
            decided_at: now,
            resumes: None,
        })
    }

    /// The targets `user` may reach over `protocol` now from `source`, each
    /// with the end of its grant: what a gateway offers a person who named
    /// no target (the SSH menu, the RDP choice screen). The same inputs as
    /// [`authorize`](Self::authorize), through `policy::reachable`; nothing
    /// is audited (choosing one goes through `authorize`). Empty when the
    /// store cannot be read: nothing is offered that cannot be decided.
    pub async fn reachable(
        &self,
        user: &str,
        protocol: Protocol,
        source: IpAddr,
    ) -> Vec<(crate::policy::Target, DateTime<Utc>)> {
        let now = Utc::now();
        let Ok(Some(record)) = self.store.user(user).await else {
            return Vec::new();
        };
        let (Ok(live), Ok(approved), Ok(stops)) = (
            super::live_sessions_of(&self.store, user).await,
            super::approved_windows_of(&self.store, user, now).await,
            self.store.active_stops().await,
        ) else {
            tracing::error!("listing reachable targets: store unavailable");
            return Vec::new();
        };
        let policies = self.policies();
        crate::policy::reachable(
            &super::person_of(&record, now),
            &policies,
            &self.config.networks,
            self.config.time_zone,
            crate::config::canonical_ip(source),
            &live,
            &approved,
            &stops,
            now,
        )
        .into_iter()
        .filter(|(_, p, _)| *p == protocol)
        .map(|(target, _, until)| (target, until))
        .collect()
    }

    /// Opens the archive for an authorized session. Without a recording there
    /// is no session: an error here is audited and the gateway refuses.
    pub fn open_recording(
        &self,
        a: &Authorized,
        terminal: Option<crate::recording::TerminalSize>,
        desktop: Option<crate::recording::DesktopSize>,
        rdp: Option<crate::recording::RdpInfo>,
    ) -> Result<Recorder, RecordingFailed> {
        let meta = SessionMeta {
            session_id: a.id.to_string(),
            user: a.user.name.clone(),
            vendor: a.user.vendor.clone().unwrap_or_default(),
            system: a.grant.target.system.clone(),
            target: a.grant.target.name.clone(),
            protocol: match a.grant.protocol {
                Protocol::Ssh => crate::recording::Protocol::Ssh,
                Protocol::Rdp => crate::recording::Protocol::Rdp,
            },
            client_addr: a.source.to_string(),
            decision: format!(
                "allowed by {} until {}",
                a.grant.access,
                a.grant.ends_at.to_rfc3339()
            ),
            hop_parent: a.grant.hop_parent.map(|p| p.to_string()),
            started_at: a.decided_at,
            terminal,
            desktop,
            rdp,
        };
        let options = match a.grant.protocol {
            Protocol::Ssh => ssh_writer_options(),
            Protocol::Rdp => crate::recording::WriterOptions::desktop(),
        };
        Recorder::open(
            &self.config.paths.recordings,
            &meta,
            (*self.signing_key).clone(),
            options,
        )
    }

    /// Audits that a recording could not be opened or written.
    pub async fn recording_failed(&self, a: &Authorized, error: &RecordingFailed) {
        tracing::error!(session = %a.id, user = %a.user.name, target = %a.grant.target.name, error = %error, "recording failed; the session is refused or ended");
        self.audit(
            AuditEvent::new(
                AuditKind::RecordingFailed,
                format!("recording failed, session refused or ended: {error}"),
            )
            .session(a.id)
            .user(&a.user.name)
            .target(&a.grant.target.name)
            .protocol(a.grant.protocol.as_str())
            .source(a.source),
        )
        .await;
    }

    /// Writes the session row, registers it as live here and audits the
    /// start. The guard ends the registration when dropped.
    pub async fn session_started(
        &self,
        a: &Authorized,
        recording: &Recorder,
    ) -> Result<LiveGuard, crate::store::StoreError> {
        let started_at = Utc::now();
        self.store
            .start_session(&NewSession {
                id: a.id,
                user: a.user.name.clone(),
                vendor: a.user.vendor.clone(),
                target: a.grant.target.name.clone(),
                protocol: a.grant.protocol.as_str().to_string(),
                client: a.source,
                parent: a.grant.hop_parent,
                node: self.node.clone(),
                started_at,
                ends_at: Some(a.grant.ends_at),
                recording_path: Some(recording.path().display().to_string()),
                work_request: a.grant.request.as_ref().map(|r| r.number.clone()),
            })
            .await
            .inspect_err(|e| {
                // The archive says why it has no session row.
                let _ = recording.record(crate::recording::Event::Mark {
                    label: "refused".into(),
                    detail: format!(
                        "sekisho refused this session: its start could not be written to the database ({e})"
                    ),
                });
            })?;
        self.ends.row_written(a.id);
        // The first session under an approved request makes it active.
        if let Some(r) = &a.grant.request
            && let Err(e) =
                crate::procedure::activate(&self.store, &r.number, r.revision, started_at).await
        {
            tracing::warn!(request = %r.number, error = %e, "marking the work request active failed");
        }
        let guard = self.registry.register(LiveEntry {
            id: a.id,
            user: a.user.name.clone(),
            target: a.grant.target.name.clone(),
            system: a.grant.target.system.clone(),
            vendor_chain: a.user.vendor_chain.clone(),
            protocol: a.grant.protocol,
            source: a.source,
            started_at,
            ends_at: a.grant.ends_at,
            parent: a.grant.hop_parent,
        });
        // A revocation between the decision and the row above would miss
        // this session (it stops the sessions it finds): look again now that
        // the row exists, and stop at once if the request no longer holds.
        if let Some(r) = &a.grant.request {
            match self.store.work_request(&r.number, Some(r.revision)).await {
                Ok(Some(now)) if now.state.opens_window() => {}
                Ok(Some(now)) => {
                    let why = if now.state_reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", now.state_reason)
                    };
                    self.registry.stop(
                        a.id,
                        super::StopCause::Killed {
                            by: now.state_by.clone(),
                            reason: format!("work request {} was {}{why}", r.number, now.state),
                        },
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(request = %r.number, error = %e, "re-reading the work request failed")
                }
            }
        }
        tracing::info!(session = %a.id, user = %a.user.name, target = %a.grant.target.name, protocol = a.grant.protocol.as_str(), "session started");
        let mut started = AuditEvent::new(
            AuditKind::SessionStart,
            format!(
                // "an SSH session", "an RDP session"
                "{} started an {} session on {}",
                a.user.name,
                a.grant.protocol.label(),
                a.grant.target.name
            ),
        )
        .session(a.id)
        .user(&a.user.name)
        .target(&a.grant.target.name)
        .source(a.source)
        .protocol(a.grant.protocol.as_str())
        .with("recording", recording.path().display().to_string());
        if let Some(resumed) = a.resumes {
            started = started.with(crate::store::audit::RESUMES, resumed.to_string());
        }
        self.audit(started).await;
        Ok(guard)
    }

    /// Seals the recording, closes the session row and audits the end;
    /// `kind` is why as a kind (the console words it), `reason` the
    /// gateway's sentence; `failure` says where and how the target
    /// connection failed, if it did.
    pub async fn session_ended(
        &self,
        a: &Authorized,
        recording: Recorder,
        status: SessionStatus,
        kind: EndKind,
        reason: &str,
        failure: Option<TargetFailure>,
    ) {
        // No recording, no session: whatever ended it, a session whose
        // archive failed ended as failed (for every gateway, here once).
        let (status, kind) = if recording.has_failed().is_some() {
            (SessionStatus::Failed, EndKind::RecordingFailed)
        } else {
            (status, kind)
        };
        // A writer that panicked drops its reply: that arrives as a failed
        // seal with what was on disk.
        let summary: Option<ArchiveSummary> = match recording.seal_async().await {
            Ok(s) => Some(s),
            Err(failed) => {
                self.recording_failed(a, &failed.error).await;
                Some(*failed.partial)
            }
        };
        let ended_at = Utc::now();
        let end = SessionEnd {
            status,
            kind: Some(kind),
            reason: reason.to_string(),
            ended_at,
            recording_size: summary.as_ref().map(|s| s.size),
            recording_digest: summary.as_ref().map(|s| hex::encode(s.final_digest)),
            recording_status: summary.as_ref().map(|s| s.status.as_str().to_string()),
        };
        tracing::info!(session = %a.id, user = %a.user.name, target = %a.grant.target.name, status = status.as_str(), reason, "session ended");
        let has_row = self.ends.take_row(a.id);
        let detail = if has_row {
            format!(
                "session of {} on {} ended ({}): {reason}",
                a.user.name,
                a.grant.target.name,
                status.as_str()
            )
        } else {
            format!(
                "session of {} on {} refused: its start could not be written to the database; its recording says so ({reason})",
                a.user.name, a.grant.target.name,
            )
        };
        let mut event = AuditEvent::new(AuditKind::SessionEnd, detail)
            .session(a.id)
            .user(&a.user.name)
            .target(&a.grant.target.name)
            .source(a.source)
            .protocol(a.grant.protocol.as_str())
            .with("status", status.as_str())
            .with("end", kind.as_str());
        if let (false, Some(s)) = (has_row, &summary) {
            event = event.with("recording", s.path.display().to_string());
        }
        if let Some(failure) = failure {
            event = event.with("failure", failure);
        }
        // Retried until the database takes it; the gateway does not wait.
        self.ends
            .write(super::ends::UnwrittenEnd {
                id: a.id,
                row: has_row.then_some(end),
                event,
                at: ended_at,
            })
            .await;
    }

    /// Audits something a gateway blocked (a channel, a forwarding request).
    pub async fn channel_blocked(
        &self,
        user: &str,
        source: IpAddr,
        session: Option<SessionTag>,
        kind: &str,
        detail: &str,
    ) {
        let mut ev = AuditEvent::new(
            AuditKind::ChannelBlocked,
            format!("blocked {kind}: {detail}"),
        )
        .user(user)
        .source(source)
        .with("channel", kind);
        if let Some(s) = session {
            ev = ev
                .session(s.id)
                .target(s.target)
                .protocol(s.protocol.as_str());
        }
        self.audit(ev).await;
    }

    /// Writes an audit event; a store failure is logged loudly, since the
    /// event would otherwise be lost.
    pub async fn audit(&self, event: AuditEvent) {
        if let Err(e) = self.store.audit(&event).await {
            tracing::error!(error = %e, kind = event.kind.as_str(), detail = %event.detail, "writing an audit event failed");
        }
    }
}

/// How an SSH session's archive is written. Terminal output is text that
/// zstd's fastest regular level compresses about as well as its default
/// (measured on log lines: level 1 8.6×, level 3 7.5×) at 1.7× the speed,
/// and the writer is what a bulk `cat` through the bastion waits on. Its
/// queue holds at most 64 events (a bulk packet is at most 32 KiB: 2 MiB
/// waiting for the writer instead of 8 MiB).
fn ssh_writer_options() -> crate::recording::WriterOptions {
    crate::recording::WriterOptions {
        zstd_level: 1,
        queue_events: 64,
        ..crate::recording::WriterOptions::default()
    }
}
