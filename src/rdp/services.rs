//! The real [`RdpControl`]: sign-in through `auth`, the RDP rule through
//! `policy::decide`, archives through `recording`, sessions and audit through
//! `store`, all via the protocol-independent [`Services`]. This is the RDP
//! adapter onto `session::Services`; `ssh::services::SshServices` is its SSH
//! twin.
//!
//! Sign-in over TLS: the password field carries the password followed by the
//! 6-digit code, or a one-time ticket. Inside the sign-in window (opened by
//! a code accepted from the same address, e.g. an SSH sign-in) the password
//! is enough, bare or followed by any code (a reconnecting client replays
//! the used one). Over NLA only a ticket is accepted, because
//! CredSSP hands the bastion no second field for a code.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, MutexGuard};

use chrono::Utc;
use uuid::Uuid;

use super::control::{
    ChannelKind, Direction, FrontSecurity, KillSignal, OfferedTarget, Person, RdpControl, RdpEvent,
    RdpRecorder, Refusal, SessionClose, SessionStart, SignIn, TargetGrant,
};
use super::reconnect::{self, CookieRefusal, Resumption};
use crate::policy::{Pin, Protocol};
use crate::protocol::rdp::FASTPATH_CHANNEL;
use crate::recording::{DesktopSize, Event, RdpChannel, RdpInfo, Recorder, Stream};
use crate::session::{Pending, PendingSessions, Services, StopCause, TargetFailure};
use crate::store::{EndKind, SessionStatus};

/// The message a refused sign-in gets; which factor failed is in the audit
/// log only.
const SIGN_IN_FAILED: &str = "sign-in failed";

/// [`RdpControl`] over a running [`Services`].
pub struct RdpServices {
    services: Arc<Services>,
    pending: PendingSessions,
}

impl RdpServices {
    pub fn new(services: Arc<Services>) -> RdpServices {
        RdpServices {
            services,
            pending: PendingSessions::default(),
        }
    }

    fn pending(&self) -> MutexGuard<'_, std::collections::HashMap<Uuid, Pending>> {
        self.pending.lock()
    }

    /// Whether a sign-in window is open for this person at this address.
    async fn in_sign_in_window(&self, user: &str, source: IpAddr) -> bool {
        !self.services.config.auth.signin_window.is_zero()
            && matches!(
                self.services
                    .store
                    .signin_window(user, source, Utc::now())
                    .await,
                Ok(Some(_))
            )
    }

    /// Password followed by a code, or (inside the sign-in window) the bare
    /// password.
    async fn password_sign_in(&self, user: &str, secret: &str, source: IpAddr) -> bool {
        let auth = &self.services.auth;
        let window = self.in_sign_in_window(user, source).await;
        let split = split_code(secret);
        if window {
            // Either reading may be the right one; only one is audited, and
            // only a secret that is neither counts as a failure.
            let mut candidates = vec![secret];
            if let Some((password, _)) = split {
                candidates.push(password);
            }
            // Inside the window the password is all that is checked, whether
            // a code follows it or not: a client that reconnects after a
            // drop (FreeRDP `+auto-reconnect`, mstsc) sends the same
            // password + code again, and that used code must not count as a
            // failure toward lockout. The window stands in for the code
            // (`window_open` audits the sign-in by window).
            return match auth.check_password_among(user, &candidates, source).await {
                Ok(_) => auth.window_open(user, source).await,
                Err(_) => false,
            };
        }
        let Some((password, code)) = split else {
            // Not "password + code" and no window: still a sign-in attempt,
            // counted and audited like any other failure.
            let _ = auth.check_password(user, secret, source).await;
            self.services
                .audit(
                    crate::store::AuditEvent::new(
                        crate::store::AuditKind::SigninFailure,
                        "RDP sign-in without a one-time code outside the sign-in window",
                    )
                    .user(crate::auth::name_for_records(user))
                    .source(source)
                    .protocol("rdp")
                    .with("method", "password"),
                )
                .await;
            return false;
        };
        auth.check_password(user, password, source).await.is_ok()
            && auth.check_totp(user, code, source).await.is_ok()
    }
}

/// `password123456` → (`password`, `123456`): the last six characters when
/// they are digits and something comes before them.
fn split_code(secret: &str) -> Option<(&str, &str)> {
    let cut = secret.len().checked_sub(6)?;
    if cut == 0 || !secret.is_char_boundary(cut) {
        return None;
    }
    let (password, code) = secret.split_at(cut);
    code.bytes()
        .all(|b| b.is_ascii_digit())
        .then_some((password, code))
}

/// The archive of one RDP session.
pub struct RdpRecording {
    recorder: Recorder,
}

impl RdpRecorder for RdpRecording {
    async fn record(&mut self, event: RdpEvent) -> Result<(), Refusal> {
        self.recorder.record(archive_event(event)).map_err(|e| {
            Refusal::new(format!(
                "the session cannot be recorded: {}",
                e.for_person()
            ))
        })
    }

    /// Flushes; the archive is sealed by `session_closed`, which also writes
    /// the summary into the session row.
    async fn finish(self) -> Result<(), Refusal> {
        self.recorder
            .flush_async()
            .await
            .map_err(|e| Refusal::new(e.for_person()))
    }
}

fn archive_event(event: RdpEvent) -> Event {
    match event {
        RdpEvent::FastPath { direction, pdu } => pdu_event(direction, FASTPATH_CHANNEL, pdu),
        RdpEvent::SlowPath {
            direction,
            channel,
            pdu,
        } => pdu_event(direction, u32::from(channel), pdu),
        RdpEvent::ShareActivated { share_id } => Event::Mark {
            label: "share_activated".into(),
            detail: share_id.to_string(),
        },
        // The index of the sealed archive lists keyframes for seeking; the
        // desktop size is in the header (and in the Demand Active that follows).
        RdpEvent::Keyframe { .. } => Event::Keyframe,
        RdpEvent::ChannelRefused { name, reason } => Event::ChannelRefused {
            channel: 0,
            kind: name,
            detail: reason,
        },
        RdpEvent::Resumed { from } => Event::Mark {
            label: "resumed".into(),
            detail: from.to_string(),
        },
    }
}

fn pdu_event(direction: Direction, channel: u32, data: bytes::Bytes) -> Event {
    match direction {
        Direction::ClientToServer => Event::Input { channel, data },
        Direction::ServerToClient => Event::Output {
            channel,
            stream: Stream::Stdout,
            data,
        },
    }
}

impl RdpControl for RdpServices {
    type Recorder = RdpRecording;

    async fn authenticate(&self, sign_in: &SignIn) -> Result<Person, Refusal> {
        let auth = &self.services.auth;
        let source = crate::config::canonical_ip(sign_in.source);
        let ok = if crate::auth::tickets::looks_like_ticket(&sign_in.secret) {
            auth.redeem_ticket(
                &sign_in.user,
                &sign_in.secret,
                &sign_in.target,
                Protocol::Rdp,
                source,
            )
            .await
            .is_ok()
        } else if sign_in.security == FrontSecurity::Nla {
            // A password alone would skip the second factor.
            self.services
                .channel_blocked(
                    &sign_in.user,
                    source,
                    None,
                    "nla-password",
                    "NLA sign-in without a one-time ticket refused (use a ticket, or TLS with password+code)",
                )
                .await;
            false
        } else {
            self.password_sign_in(&sign_in.user, &sign_in.secret, source)
                .await
        };
        if ok {
            Ok(Person {
                user: sign_in.user.clone(),
            })
        } else {
            tokio::time::sleep(self.services.config.auth.failure_delay).await;
            Err(Refusal::new(SIGN_IN_FAILED))
        }
    }

    async fn code_missing(&self, sign_in: &SignIn) -> bool {
        if sign_in.security != FrontSecurity::Tls
            || crate::auth::tickets::looks_like_ticket(&sign_in.secret)
            || split_code(&sign_in.secret).is_some()
        {
            return false;
        }
        !self
            .in_sign_in_window(&sign_in.user, crate::config::canonical_ip(sign_in.source))
            .await
    }

    async fn offer_targets(&self, person: &Person, source: IpAddr) -> Vec<OfferedTarget> {
        let source = crate::config::canonical_ip(source);
        let tz = self.services.config.time_zone;
        let offered: Vec<OfferedTarget> = self
            .services
            .reachable(&person.user, Protocol::Rdp, source)
            .await
            .into_iter()
            .map(|(target, until)| OfferedTarget {
                name: target.name,
                system: target.system,
                until: until
                    .with_timezone(&tz)
                    .format("%Y-%m-%d %H:%M")
                    .to_string(),
            })
            .collect();
        if offered.is_empty() {
            let refusal = Refusal::no_reachable_target();
            self.services
                .audit(
                    crate::store::AuditEvent::new(crate::store::AuditKind::Deny, refusal.reason)
                        .user(&person.user)
                        .source(source)
                        .protocol("rdp")
                        .with("rule", super::control::NO_REACHABLE_TARGET_RULE),
                )
                .await;
        }
        offered
    }

    /// The person's newest unused, unexpired RDP ticket for the target,
    /// read back from its sealed copy (NTLM needs the secret itself).
    /// `authenticate` then redeems it, so it works once.
    async fn nla_secret(&self, user: &str, target: &str, _source: IpAddr) -> Option<String> {
        match crate::auth::tickets::readable_rdp_ticket(
            &self.services.store,
            self.services.secrets.master_key(),
            user,
            target,
        )
        .await
        {
            Ok(t) => t.map(|t| t.as_str().to_owned()),
            Err(e) => {
                tracing::error!(user = %crate::auth::name_for_records(user), target, error = %e, "reading a one-time ticket for NLA failed");
                None
            }
        }
    }

    /// Audited under the person's name, with the target they named (the
    /// client sends `person@target`), so `audit --user` finds it.
    async fn nla_refused(&self, user: &str, source: IpAddr, reason: &str) {
        let mut event = crate::store::AuditEvent::new(
            crate::store::AuditKind::SigninFailure,
            format!(
                "RDP NLA sign-in of {} refused: {reason}",
                crate::auth::login_for_records(user)
            ),
        )
        .source(crate::config::canonical_ip(source))
        .protocol("rdp")
        .with("method", "nla");
        event = match super::front::split_target(user, None) {
            Some((person, target)) if crate::auth::login_for_records(user) == user => {
                event.user(person).target(target)
            }
            _ => event.user(crate::auth::login_for_records(user)),
        };
        self.services.audit(event).await;
    }

    async fn authorize(
        &self,
        person: &Person,
        target: &str,
        source: IpAddr,
    ) -> Result<TargetGrant, Refusal> {
        let a = self
            .services
            .authorize(&person.user, target, Protocol::Rdp, source)
            .await
            .map_err(|r| Refusal::by_rule(r.rule, r.reason))?;
        let Pin::CertSha256(pin) = a.grant.endpoint.pin else {
            return Err(Refusal::new(format!(
                "no RDP certificate is pinned for {target}"
            )));
        };
        let password = String::from_utf8(a.credential.to_vec()).map_err(|_| {
            Refusal::new(format!(
                "the credential for {target} is unusable; ask the administrator"
            ))
        })?;
        let grant = TargetGrant {
            session_id: a.id,
            target: a.grant.target.name.clone(),
            address: SocketAddr::new(a.grant.target.address, a.grant.endpoint.port),
            account: a.grant.endpoint.account.clone(),
            domain: None,
            password,
            cert_sha256: pin,
            parent_session: a.grant.hop_parent,
        };
        self.pending().insert(a.id, Pending::new(a));
        Ok(grant)
    }

    async fn open_recording(&self, start: &SessionStart) -> Result<RdpRecording, Refusal> {
        let info = RdpInfo {
            fastpath_channel: FASTPATH_CHANNEL,
            io_channel: start.io_channel,
            user_channel: start.user_channel,
            share_id: None,
            channels: start
                .channels
                .iter()
                .map(|(name, id)| RdpChannel {
                    name: name.clone(),
                    id: *id,
                })
                .collect(),
            keyboard_layout: Some(start.keyboard_layout),
            keyboard_type: start.keyboard_type,
            keyboard_subtype: start.keyboard_subtype,
        };
        let desktop = DesktopSize {
            width: u32::from(start.desktop_width),
            height: u32::from(start.desktop_height),
        };
        let opened = {
            let mut pending = self.pending();
            let Some(p) = pending.get_mut(&start.session_id) else {
                return Err(Refusal::new("the session was not authorized"));
            };
            let r = self
                .services
                .open_recording(&p.authorized, None, Some(desktop), Some(info));
            if let Ok(r) = &r {
                p.recorder = Some(r.clone());
            }
            r
        };
        match opened {
            Ok(recorder) => Ok(RdpRecording { recorder }),
            Err(e) => {
                let removed = self.pending().remove(&start.session_id);
                if let Some(p) = removed {
                    self.services.recording_failed(&p.authorized, &e).await;
                }
                Err(Refusal::new(format!(
                    "the session cannot be recorded, so it is not opened ({})",
                    e.for_person()
                )))
            }
        }
    }

    async fn channel_refused(&self, session_id: Uuid, kind: ChannelKind, name: &str, reason: &str) {
        let (user, source, session) = {
            let pending = self.pending();
            match pending.get(&session_id) {
                Some(p) => (
                    p.authorized.user.name.clone(),
                    p.authorized.source,
                    p.authorized.tag(),
                ),
                None => return,
            }
        };
        let kind = match kind {
            ChannelKind::Static => "rdp-static-channel",
            ChannelKind::Dynamic => "rdp-dynamic-channel",
        };
        self.services
            .channel_blocked(
                &user,
                source,
                Some(session),
                kind,
                &format!("{name}: {reason}"),
            )
            .await;
    }

    /// Kept in the database (`store::reconnect_cookies`), so any node
    /// sharing it can resume the session. No cookie when it cannot be kept:
    /// the client then signs in again after a drop.
    async fn issue_reconnect(
        &self,
        start: &SessionStart,
    ) -> Option<ironrdp_pdu::rdp::session_info::ServerAutoReconnect> {
        if self.services.config.rdp.reconnect_grace.is_zero() {
            return None;
        }
        let source = crate::config::canonical_ip(start.source);
        // A logon id already taken (by any node) is drawn again.
        for _ in 0..4 {
            let (cookie, kept) = reconnect::issue(
                reconnect::draw_logon_id(),
                start.session_id,
                &start.person.user,
                &start.target,
                source,
                Utc::now(),
            );
            match self.services.store.add_reconnect_cookie(&kept).await {
                Ok(true) => return Some(cookie),
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(session = %start.session_id, error = %e, "keeping the auto-reconnect cookie failed; none is sent");
                    return None;
                }
            }
        }
        tracing::error!(session = %start.session_id, "no free auto-reconnect logon id; no cookie is sent");
        None
    }

    async fn resume(
        &self,
        answer: &ironrdp_pdu::rdp::client_info::ClientAutoReconnect,
        source: IpAddr,
    ) -> Result<Option<Resumption>, Refusal> {
        let source = crate::config::canonical_ip(source);
        let now = Utc::now();
        let presented = reconnect::verifier_sha256(&answer.security_verifier);
        let spent = match self
            .services
            .store
            .spend_reconnect_cookie(answer.logon_id, &presented, now)
            .await
        {
            Ok(Some(spent)) => spent,
            // Spent, purged or guessed: not an attack in itself; the
            // password that came with it is checked next.
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::error!(error = %e, "reading auto-reconnect cookies failed");
                return Ok(None);
            }
        };
        match reconnect::decide(&spent, source, now) {
            Ok(r) => {
                // The person must still be allowed to sign in at all.
                let usable = matches!(
                    self.services.auth.user(&r.user).await,
                    Ok(Some(u)) if u.enabled && !u.locked_at(Utc::now())
                );
                if !usable {
                    return Ok(None);
                }
                self.services
                    .audit(
                        crate::store::AuditEvent::new(
                            crate::store::AuditKind::SigninSuccess,
                            format!(
                                "{} from {source}: auto-reconnect cookie of session {} accepted (the connection had dropped)",
                                r.user, r.session_id
                            ),
                        )
                        .user(r.user.as_str())
                        .target(r.target.as_str())
                        .source(source)
                        .protocol("rdp")
                        .with("method", "auto-reconnect")
                        .with(crate::store::audit::RESUMES, r.session_id.to_string()),
                    )
                    .await;
                Ok(Some(r))
            }
            // A stale cookie (the grace passed, the session ended) is not an
            // attack: the password that came with it is checked next.
            Err(CookieRefusal::Unknown | CookieRefusal::Expired) => Ok(None),
            Err(why @ CookieRefusal::OtherAddress) => {
                let c = &spent.cookie;
                self.services
                    .audit(
                        crate::store::AuditEvent::new(
                            crate::store::AuditKind::SigninFailure,
                            format!(
                                "RDP from {source}: {} ({}, session {}); the cookie is spent",
                                why.describe(),
                                c.source,
                                c.session_id
                            ),
                        )
                        .user(c.user.as_str())
                        .target(c.target.as_str())
                        .source(source)
                        .protocol("rdp")
                        .with("method", "auto-reconnect")
                        .with("reason", why.as_str())
                        .with("issued_to", c.source.to_string())
                        .with("cookie_of", c.session_id.to_string()),
                    )
                    .await;
                Err(Refusal::new(
                    "automatic reconnection from another network address is not allowed; connect again and sign in",
                ))
            }
        }
    }

    async fn register_live(&self, start: &SessionStart) -> KillSignal {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let id = start.session_id;
        let taken = self.pending().remove(&id);
        let Some(mut p) = taken else {
            let _ = tx.send(Some("the session was not authorized".into()));
            return KillSignal(rx);
        };
        let Some(recorder) = p.recorder.clone() else {
            let _ = tx.send(Some("the session has no recording".into()));
            self.pending().insert(id, p);
            return KillSignal(rx);
        };
        p.authorized.resumes = start.resumes;
        match self
            .services
            .session_started(&p.authorized, &recorder)
            .await
        {
            Ok(guard) => {
                let mut stop = guard.stop.clone();
                let ends_at = p.authorized.grant.ends_at;
                p.guard = Some(guard);
                self.pending().insert(id, p);
                tokio::spawn(async move {
                    let left = (ends_at - Utc::now()).to_std().unwrap_or_default();
                    let reason = tokio::select! {
                        cause = stop.wait_for(Option::is_some) => match cause.as_deref() {
                            Ok(Some(c @ StopCause::Killed { .. })) => format!("stopped by an administrator: {c}"),
                            Ok(Some(StopCause::Shutdown)) => "sekisho is shutting down".to_string(),
                            Ok(Some(c @ StopCause::ParentEnded { .. })) => c.to_string(),
                            Ok(None) | Err(_) => return,
                        },
                        _ = tokio::time::sleep(left) => "the allowed time for this session has ended".to_string(),
                    };
                    let _ = tx.send(Some(reason));
                });
            }
            Err(e) => {
                tracing::error!(session = %id, error = %e, "cannot record the session start");
                let _ = tx.send(Some(
                    "sekisho cannot record this session (internal error)".into(),
                ));
                self.pending().insert(id, p);
            }
        }
        KillSignal(rx)
    }

    async fn session_closed(
        &self,
        session_id: Uuid,
        how: SessionClose,
        reason: &str,
        failure: Option<super::back::ConnectFailure>,
    ) {
        let failure = failure.map(|f| TargetFailure {
            phase: f.phase.as_str(),
            kind: f.kind.as_str(),
        });
        let now = Utc::now();
        let usable_until = reconnect::usable_until_after_end(
            how == SessionClose::ClientLost,
            self.services.config.rdp.reconnect_grace,
            now,
        );
        if let Err(e) = self
            .services
            .store
            .reconnect_session_ended(session_id, usable_until, now)
            .await
        {
            tracing::error!(session = %session_id, error = %e, "updating the auto-reconnect cookie at the session's end failed");
        }
        let taken = self.pending().remove(&session_id);
        let Some(p) = taken else {
            tracing::warn!(session = %session_id, "end of an RDP session that is not known");
            return;
        };
        let Some(recorder) = p.recorder else {
            tracing::error!(session = %session_id, "an RDP session ended without its recording");
            return;
        };
        if p.guard.is_none() {
            // The target was never reached (unreachable, certificate not the
            // pinned one, refused): the session still gets its row, ended as
            // failed, as an SSH session that cannot reach its target does.
            match self
                .services
                .session_started(&p.authorized, &recorder)
                .await
            {
                Ok(guard) => drop(guard),
                Err(e) => {
                    tracing::error!(session = %session_id, error = %e, "cannot record the session start");
                }
            }
            self.services
                .session_ended(
                    &p.authorized,
                    recorder,
                    SessionStatus::Failed,
                    EndKind::TargetFailed,
                    reason,
                    failure,
                )
                .await;
            return;
        }
        let stop = p.guard.as_ref().and_then(|g| g.stop.borrow().clone());
        let (status, kind) = match stop {
            Some(StopCause::Killed { .. }) => (SessionStatus::Killed, EndKind::Killed),
            Some(StopCause::Shutdown) => (SessionStatus::Ended, EndKind::Shutdown),
            Some(StopCause::ParentEnded { .. }) => (SessionStatus::Ended, EndKind::ParentEnded),
            None if how == SessionClose::TargetLost => {
                (SessionStatus::TargetLost, EndKind::TargetLost)
            }
            None if Utc::now() >= p.authorized.grant.ends_at => {
                (SessionStatus::Expired, EndKind::TimeLimit)
            }
            None => (SessionStatus::Ended, EndKind::Closed),
        };
        self.services
            .session_ended(&p.authorized, recorder, status, kind, reason, failure)
            .await;
        drop(p.guard);
    }
}

#[cfg(test)]
mod tests {
    use super::split_code;

    #[test]
    fn code_is_split_off_the_end() {
        assert_eq!(split_code("secret123456"), Some(("secret", "123456")));
        assert_eq!(split_code("123456"), None, "a code alone has no password");
        assert_eq!(split_code("secret12345a"), None);
        assert_eq!(split_code("short"), None);
        assert_eq!(
            split_code("パスワード123456"),
            Some(("パスワード", "123456"))
        );
        assert_eq!(split_code("pw1234567"), Some(("pw1", "234567")));
    }
}
