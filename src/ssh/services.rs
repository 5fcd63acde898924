//! The real [`SshControl`]: sign-in through `auth`, decisions through `policy`,
//! archives through `recording`, sessions and audit through `store`, all via
//! the protocol-independent [`Services`]. This is the SSH adapter onto
//! `session::Services`; `rdp::services::RdpServices` is its RDP twin.

use std::net::IpAddr;
use std::sync::{Arc, MutexGuard};

use uuid::Uuid;
use zeroize::Zeroizing;

use super::control::{
    AccessRequest, Credential, Decision, EndStatus, ExitStatus, FirstFactor, Grant, KillSignal,
    LiveSession, OfferedKey, ReachableTarget, RecordingFailed, RefusedKind, SessionEnd,
    SessionEvent, SessionRecorder, SignIn, SshControl,
};
use crate::policy::{Pin, Protocol};
use crate::recording::{Event, Recorder, Stream};
use crate::session::{Pending, PendingSessions, Services, StopCause, TargetFailure};
use crate::store::{EndKind, SessionStatus};

/// How long a session may take to end by the gateway's own shutdown before
/// the bastion's shutdown stops it through the kill signal.
const SHUTDOWN_FALLBACK: std::time::Duration = std::time::Duration::from_secs(2);

/// [`SshControl`] over a running [`Services`].
pub struct SshServices {
    services: Arc<Services>,
    pending: PendingSessions,
}

impl SshServices {
    pub fn new(services: Arc<Services>) -> SshServices {
        SshServices {
            services,
            pending: PendingSessions::default(),
        }
    }

    fn pending(&self) -> MutexGuard<'_, std::collections::HashMap<Uuid, Pending>> {
        self.pending.lock()
    }
}

/// The archive of one SSH session.
pub struct SshRecording {
    recorder: Recorder,
}

impl SessionRecorder for SshRecording {
    async fn record(&self, event: SessionEvent) -> Result<(), RecordingFailed> {
        self.recorder
            .record_async(archive_event(event))
            .await
            .map_err(|e| RecordingFailed(e.for_person().to_string()))
    }

    async fn failed(&self) -> RecordingFailed {
        let mut watch = self.recorder.failure_watch();
        loop {
            if let Some(failure) = watch.borrow_and_update().clone() {
                return RecordingFailed(failure.for_person().to_string());
            }
            if watch.changed().await.is_err() {
                // The writer is gone without a recorded failure: treat as one.
                return RecordingFailed("the recording writer stopped".into());
            }
        }
    }

    /// Flushes what is queued; the archive is sealed by `session_ended`,
    /// which also records the summary in the session row.
    async fn finish(&self) -> Result<(), RecordingFailed> {
        self.recorder
            .flush_async()
            .await
            .map_err(|e| RecordingFailed(e.for_person().to_string()))
    }
}

fn archive_event(event: SessionEvent) -> Event {
    match event {
        SessionEvent::Input { channel, data } => Event::Input { channel, data },
        SessionEvent::Output {
            channel,
            stderr,
            data,
        } => Event::Output {
            channel,
            stream: if stderr {
                Stream::Stderr
            } else {
                Stream::Stdout
            },
            data,
        },
        SessionEvent::Pty {
            channel,
            term,
            cols,
            rows,
        } => Event::Pty {
            channel,
            term,
            cols,
            rows,
        },
        SessionEvent::Resize {
            channel,
            cols,
            rows,
        } => Event::Resize {
            channel,
            cols,
            rows,
        },
        SessionEvent::Shell { channel } => Event::ChannelOpened {
            channel,
            kind: "shell".into(),
            detail: String::new(),
        },
        SessionEvent::Exec { channel, command } => Event::Exec {
            channel,
            command: command.into_bytes().into(),
        },
        SessionEvent::Exit { channel, status } => match status {
            ExitStatus::Code(code) => Event::ExitStatus { channel, code },
            ExitStatus::Signal { name, core_dumped } => Event::ExitSignal {
                channel,
                signal: name,
                core_dumped,
                message: String::new(),
            },
        },
        SessionEvent::ChannelOpened { kind, detail } => Event::ChannelOpened {
            channel: 0,
            kind,
            detail,
        },
        SessionEvent::ChannelRefused { kind, detail } => Event::ChannelRefused {
            channel: 0,
            kind: kind.as_str().into(),
            detail,
        },
        SessionEvent::Mark { text } => Event::Mark {
            label: "sekisho".into(),
            detail: text,
        },
    }
}

fn session_status(status: EndStatus) -> SessionStatus {
    match status {
        EndStatus::Completed | EndStatus::Shutdown => SessionStatus::Ended,
        EndStatus::Killed => SessionStatus::Killed,
        EndStatus::TimeLimit | EndStatus::IdleTimeout => SessionStatus::Expired,
        EndStatus::RecordingFailed | EndStatus::TargetFailed => SessionStatus::Failed,
        EndStatus::TargetLost => SessionStatus::TargetLost,
    }
}

fn end_kind(status: EndStatus) -> EndKind {
    match status {
        EndStatus::Completed => EndKind::Closed,
        EndStatus::Shutdown => EndKind::Shutdown,
        EndStatus::Killed => EndKind::Killed,
        EndStatus::TimeLimit => EndKind::TimeLimit,
        EndStatus::IdleTimeout => EndKind::IdleTimeout,
        EndStatus::RecordingFailed => EndKind::RecordingFailed,
        EndStatus::TargetFailed => EndKind::TargetFailed,
        EndStatus::TargetLost => EndKind::TargetLost,
    }
}

/// A stored credential is a private key when it looks like one (PEM or
/// OpenSSH armour); anything else is a password.
fn credential(bytes: &[u8]) -> Result<Credential, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| "the stored credential is not text".to_string())?;
    if text.trim_start().starts_with("-----BEGIN ") {
        Ok(Credential::PrivateKey(Zeroizing::new(text.to_string())))
    } else {
        Ok(Credential::Password(Zeroizing::new(text.to_string())))
    }
}

impl SshControl for SshServices {
    type Recorder = SshRecording;

    async fn check_password(&self, attempt: &SignIn, secret: &str) -> FirstFactor {
        let auth = &self.services.auth;
        if crate::auth::tickets::looks_like_ticket(secret) {
            // A ticket is bound to one target. When the user name names none
            // (`ssh tanaka@bastion`), the ticket's own target is the one;
            // `redeem_ticket` still checks person, use, expiry and protocol.
            let target = match &attempt.target {
                Some(t) => t.clone(),
                None => auth
                    .store()
                    .ticket(&crate::auth::tickets::hash(secret))
                    .await
                    .ok()
                    .flatten()
                    .filter(|t| t.user == attempt.person)
                    .map(|t| t.target)
                    .unwrap_or_default(),
            };
            return match auth
                .redeem_ticket(
                    &attempt.person,
                    secret,
                    &target,
                    Protocol::Ssh,
                    attempt.source,
                )
                .await
            {
                Ok(()) => FirstFactor::Ticket { target },
                Err(_) => FirstFactor::Rejected,
            };
        }
        match auth
            .check_password(&attempt.person, secret, attempt.source)
            .await
        {
            Ok(()) => FirstFactor::Accepted {
                needs_code: !auth.window_open(&attempt.person, attempt.source).await,
            },
            Err(_) => FirstFactor::Rejected,
        }
    }

    async fn key_is_registered(&self, person: &str, key: &OfferedKey) -> bool {
        self.services
            .store
            .has_key(person, &key.fingerprint)
            .await
            .unwrap_or(false)
    }

    async fn check_public_key(&self, attempt: &SignIn, key: &OfferedKey) -> FirstFactor {
        let Ok(public) = russh::keys::PublicKey::from_openssh(&key.openssh) else {
            return FirstFactor::Rejected;
        };
        let auth = &self.services.auth;
        match auth
            .check_public_key(&attempt.person, &public, attempt.source)
            .await
        {
            Ok(()) => FirstFactor::Accepted {
                needs_code: !auth.window_open(&attempt.person, attempt.source).await,
            },
            Err(_) => FirstFactor::Rejected,
        }
    }

    async fn check_code(&self, attempt: &SignIn, code: &str) -> bool {
        self.services
            .auth
            .check_totp(&attempt.person, code, attempt.source)
            .await
            .is_ok()
    }

    async fn sign_in_abandoned(&self, attempt: &SignIn) {
        if let Err(e) = self
            .services
            .auth
            .abandoned(&attempt.person, "ssh", attempt.source)
            .await
        {
            tracing::error!(error = %e, "auditing an abandoned sign-in failed");
        }
    }

    async fn reachable_targets(&self, person: &str, source: IpAddr) -> Vec<ReachableTarget> {
        self.services
            .reachable(person, Protocol::Ssh, source)
            .await
            .into_iter()
            .map(|(target, until)| ReachableTarget {
                name: target.name,
                system: target.system,
                protocol: Protocol::Ssh.as_str().into(),
                until,
            })
            .collect()
    }

    async fn authorize(&self, request: &AccessRequest) -> Decision {
        let a = match self
            .services
            .authorize(
                &request.person,
                &request.target,
                Protocol::Ssh,
                request.source,
            )
            .await
        {
            Ok(a) => a,
            Err(refusal) => {
                return Decision::Denied {
                    reason: refusal.reason,
                };
            }
        };
        let Pin::SshHostKey(pin) = &a.grant.endpoint.pin else {
            return Decision::Denied {
                reason: format!("no SSH host key is pinned for {}", request.target),
            };
        };
        let credential = match credential(&a.credential) {
            Ok(c) => c,
            Err(why) => {
                tracing::error!(target = %request.target, %why, "unusable target credential");
                return Decision::Denied {
                    reason: format!(
                        "the credential for {} is unusable; ask the administrator",
                        request.target
                    ),
                };
            }
        };
        let grant = Grant {
            session_id: a.id,
            target: a.grant.target.name.clone(),
            system: a.grant.target.system.clone(),
            address: a.grant.target.address.to_string(),
            port: a.grant.endpoint.port,
            account: a.grant.endpoint.account.clone(),
            credential,
            host_key_fingerprint: pin.clone(),
            ends_at: a.grant.ends_at,
        };
        self.pending().insert(a.id, Pending::new(a));
        Decision::Allowed(grant)
    }

    async fn open_recording(
        &self,
        grant: &Grant,
        _request: &AccessRequest,
    ) -> Result<SshRecording, RecordingFailed> {
        let opened = {
            let mut pending = self.pending();
            let Some(p) = pending.get_mut(&grant.session_id) else {
                return Err(RecordingFailed("the session was not authorized".into()));
            };
            match self
                .services
                .open_recording(&p.authorized, None, None, None)
            {
                Ok(r) => {
                    p.recorder = Some(r.clone());
                    Ok(r)
                }
                Err(e) => Err(e),
            }
        };
        match opened {
            Ok(recorder) => Ok(SshRecording { recorder }),
            Err(e) => {
                let removed = self.pending().remove(&grant.session_id);
                if let Some(p) = removed {
                    self.services.recording_failed(&p.authorized, &e).await;
                }
                Err(RecordingFailed(e.for_person().to_string()))
            }
        }
    }

    async fn session_started(&self, live: &LiveSession) -> KillSignal {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let id = live.session_id;
        let Some(mut p) = self.pending().remove(&id) else {
            let _ = tx.send("the session was not authorized".into());
            return rx;
        };
        let Some(recorder) = p.recorder.clone() else {
            let _ = tx.send("the session has no recording".into());
            self.pending().insert(id, p);
            return rx;
        };
        match self
            .services
            .session_started(&p.authorized, &recorder)
            .await
        {
            Ok(guard) => {
                let mut stop = guard.stop.clone();
                p.guard = Some(guard);
                self.pending().insert(id, p);
                tokio::spawn(async move {
                    let cause = match stop.wait_for(Option::is_some).await {
                        Ok(cause) => cause.clone(),
                        Err(_) => return,
                    };
                    if cause == Some(StopCause::Shutdown) {
                        // The SSH gateway stops with the bastion and ends each
                        // session itself ("sekisho is shutting down", status
                        // shutdown). Firing the kill signal at once would race
                        // it and could end the session as "stopped by an
                        // administrator"; it is only a fallback here.
                        tokio::time::sleep(SHUTDOWN_FALLBACK).await;
                    }
                    let reason = cause.map(|c| c.to_string()).unwrap_or_default();
                    let _ = tx.send(reason);
                });
            }
            Err(e) => {
                // No session row, no session: fail closed.
                tracing::error!(session = %id, error = %e, "cannot record the session start");
                let _ = tx.send(
                    "sekisho cannot record this session now (its database is unavailable); try again later"
                        .into(),
                );
                self.pending().insert(id, p);
            }
        }
        rx
    }

    async fn channel_refused(
        &self,
        person: &str,
        source: IpAddr,
        session_id: Option<Uuid>,
        kind: RefusedKind,
        detail: &str,
    ) {
        let session = session_id.and_then(|id| self.pending().get(&id).map(|p| p.authorized.tag()));
        self.services
            .channel_blocked(person, source, session, kind.as_str(), detail)
            .await;
    }

    async fn session_ended(&self, session_id: Uuid, end: &SessionEnd) {
        let Some(p) = self.pending().remove(&session_id) else {
            tracing::warn!(session = %session_id, "end of a session that is not known");
            return;
        };
        let Some(recorder) = p.recorder else {
            tracing::error!(session = %session_id, "a session ended without its recording");
            return;
        };
        self.services
            .session_ended(
                &p.authorized,
                recorder,
                session_status(end.status),
                end_kind(end.status),
                &end.reason,
                end.failure.map(|f| TargetFailure {
                    phase: f.phase.as_str(),
                    kind: f.kind.as_str(),
                }),
            )
            .await;
        drop(p.guard);
    }
}
