//! [`Authenticator`]: the sign-in checks the gateways call (password, public
//! key, TOTP, ticket, sign-in window), each audited, with lockout after
//! repeated failures. See the module doc of [`crate::auth`] for the rules.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::password_checks::verify_blocking;
use super::secrets::MasterKey;
use super::{AuthError, AuthFailure, UserRecord, keys, tickets, totp};
use crate::config::{AuthLimits, canonical_ip};
use crate::store::{AuditEvent, AuditKind, Store, StoreError};

type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The sign-in checks the gateways call. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    limits: AuthLimits,
    clock: Clock,
    /// Opens the TOTP secrets, which are sealed at rest.
    totp_key: MasterKey,
    /// Where the sign-in comes through when it is not a gateway (`web`):
    /// recorded as the protocol of every sign-in event.
    channel: Option<&'static str>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Attempted names end up in the audit log: keep them short and printable.
fn shown_name(name: &str) -> String {
    super::name_for_records(name).into_owned()
}

impl Authenticator {
    pub fn new(store: Store, limits: AuthLimits, totp_key: MasterKey) -> Authenticator {
        Authenticator {
            store,
            limits,
            clock: Arc::new(Utc::now),
            totp_key,
            channel: None,
        }
    }

    /// The same checks, audited as sign-ins through `channel` (e.g. `web`).
    pub fn via(&self, channel: &'static str) -> Authenticator {
        Authenticator {
            channel: Some(channel),
            ..self.clone()
        }
    }

    /// Marks an event with the channel of this authenticator, if any.
    fn tag(&self, event: AuditEvent) -> AuditEvent {
        match self.channel {
            Some(c) => event.protocol(c).with("via", c),
            None => event,
        }
    }

    /// Seals TOTP secrets an earlier version stored in plain text; returns
    /// how many. Safe to run while others sign in: a row is only replaced if
    /// it still holds the plain text that was read.
    pub async fn seal_plain_totp_secrets(&self) -> Result<usize, AuthError> {
        let mut sealed = 0;
        for (name, stored) in self.store.totp_secrets().await? {
            if totp::is_sealed(&stored) {
                continue;
            }
            let new = totp::seal_secret(&self.totp_key, &name, &stored)?;
            if self.store.replace_totp_secret(&name, &stored, &new).await? {
                sealed += 1;
            }
        }
        Ok(sealed)
    }

    /// Replaces the clock (tests of windows, lockouts and expiry).
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn limits(&self) -> &AuthLimits {
        &self.limits
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// A person with their vendor chain, enabled flag and lockout, to build a
    /// policy `Person` from.
    pub async fn user(&self, name: &str) -> Result<Option<UserRecord>, AuthError> {
        Ok(self.store.user(name).await?)
    }

    /// A user that may sign in now, or the reason they may not.
    async fn usable(&self, name: &str) -> Result<Result<UserRecord, &'static str>, StoreError> {
        let now = self.now();
        Ok(match self.store.user(name).await? {
            None => Err("unknown user"),
            Some(u) if !u.enabled => Err("user is disabled"),
            Some(u) if u.locked_at(now) => Err("user is locked after repeated failures"),
            Some(u) => Ok(u),
        })
    }

    async fn fail(
        &self,
        name: &str,
        method: &str,
        reason: &str,
        source: IpAddr,
        counts: bool,
        extra: Option<(&str, &str)>,
    ) -> AuthFailure {
        let mut event = AuditEvent::new(
            AuditKind::SigninFailure,
            format!(
                "{method} sign-in of {} from {} refused: {reason}",
                shown_name(name),
                canonical_ip(source)
            ),
        )
        .user(shown_name(name))
        .source(source)
        .with("method", method)
        .with("reason", reason);
        if let Some((k, v)) = extra {
            event = event.with(k, v);
        }
        let event = self.tag(event);
        if let Err(e) = self.store.audit(&event).await {
            return e.into();
        }
        if counts {
            let lock_until = if self.limits.lockout.is_zero() {
                None
            } else {
                chrono::Duration::from_std(self.limits.lockout)
                    .ok()
                    .map(|d| self.now() + d)
            };
            match self
                .store
                .record_signin_failure(name, self.limits.max_failures, lock_until)
                .await
            {
                Ok(Some(until)) => {
                    let until_text = if lock_until.is_none() {
                        "until an admin enables the account".to_string()
                    } else {
                        // A length, not a clock time: the audit line's
                        // own time is in the site's zone (data has the end).
                        format!(
                            "for {}",
                            crate::config::format_duration(self.limits.lockout)
                        )
                    };
                    let lock = AuditEvent::new(
                        AuditKind::Lockout,
                        format!(
                            "{} locked after {} failed sign-ins in a row, {until_text}",
                            shown_name(name),
                            self.limits.max_failures
                        ),
                    )
                    .user(shown_name(name))
                    .source(source)
                    .with("locked_until", until.to_rfc3339());
                    if let Err(e) = self.store.audit(&self.tag(lock)).await {
                        return e.into();
                    }
                }
                Ok(None) => {}
                Err(e) => return e.into(),
            }
        }
        AuthFailure::Failed
    }

    async fn succeed(
        &self,
        name: &str,
        method: &str,
        source: IpAddr,
        complete: bool,
        event: Option<AuditEvent>,
    ) -> Result<(), AuthFailure> {
        let event = event.unwrap_or_else(|| {
            AuditEvent::new(
                AuditKind::SigninSuccess,
                format!("{name} from {}: {method} accepted", canonical_ip(source)),
            )
        });
        self.store
            .audit(&self.tag(event.user(name).source(source).with("method", method)))
            .await?;
        if complete {
            self.store.record_signin_success(name, self.now()).await?;
        }
        Ok(())
    }

    /// First factor: the password. Costs one argon2 verification whether or
    /// not the user exists.
    pub async fn check_password(
        &self,
        user: &str,
        password: &str,
        source: IpAddr,
    ) -> Result<(), AuthFailure> {
        self.check_password_among(user, &[password], source)
            .await
            .map(|_| ())
    }

    /// The password, when the secret typed can be read more than one way
    /// (over RDP inside the sign-in window: the bare password, or the
    /// password followed by a code). Returns which candidate was the
    /// password; audits one success or one failure, whichever it is.
    pub async fn check_password_among(
        &self,
        user: &str,
        candidates: &[&str],
        source: IpAddr,
    ) -> Result<usize, AuthFailure> {
        let state = self.usable(user).await?;
        let hash = match &state {
            Ok(u) => Some(u.password_hash.clone()),
            Err(_) => None,
        };
        let mut right = None;
        for (i, candidate) in candidates.iter().enumerate() {
            if verify_blocking(candidate, hash.clone()).await {
                right = Some(i);
                break;
            }
        }
        match (state, right) {
            (Err(reason), _) => Err(self
                .fail(user, "password", reason, source, false, None)
                .await),
            (Ok(_), None) => Err(self
                .fail(user, "password", "wrong password", source, true, None)
                .await),
            (Ok(u), Some(i)) => self
                .succeed(&u.name, "password", source, false, None)
                .await
                .map(|()| i),
        }
    }

    /// First factor for SSH: a registered terminal's public key. The gateway
    /// calls this after the client proved it holds the private key (or for
    /// the key offer itself; an unknown key is audited but not counted).
    pub async fn check_public_key(
        &self,
        user: &str,
        key: &russh::keys::PublicKey,
        source: IpAddr,
    ) -> Result<(), AuthFailure> {
        let fp = keys::fingerprint(key);
        let state = self.usable(user).await?;
        match state {
            Err(reason) => Err(self
                .fail(
                    user,
                    "publickey",
                    reason,
                    source,
                    false,
                    Some(("fingerprint", &fp)),
                )
                .await),
            Ok(u) => {
                if self.store.has_key(&u.name, &fp).await? {
                    let e = AuditEvent::new(
                        AuditKind::SigninSuccess,
                        format!(
                            "{} from {}: registered key {fp} accepted",
                            u.name,
                            canonical_ip(source)
                        ),
                    )
                    .with("fingerprint", fp.as_str());
                    self.succeed(&u.name, "publickey", source, false, Some(e))
                        .await
                } else {
                    Err(self
                        .fail(
                            user,
                            "publickey",
                            "key not registered",
                            source,
                            false,
                            Some(("fingerprint", &fp)),
                        )
                        .await)
                }
            }
        }
    }

    /// Whether a sign-in window is open for this person and address, so the
    /// second factor may be skipped. Call it once the first factor passed and
    /// only when about to skip the code: a `true` is audited as a sign-in
    /// completed by the window. Any error counts as closed.
    pub async fn window_open(&self, user: &str, source: IpAddr) -> bool {
        if self.limits.signin_window.is_zero() {
            return false;
        }
        let source = canonical_ip(source);
        let until = match self.usable(user).await {
            Ok(Ok(u)) => match self.store.signin_window(&u.name, source, self.now()).await {
                Ok(Some(until)) => until,
                Ok(None) => return false,
                Err(e) => {
                    tracing::error!("cannot read the sign-in window of {user}: {e}");
                    return false;
                }
            },
            Ok(Err(_)) => return false,
            Err(e) => {
                tracing::error!("cannot read user {}: {e}", shown_name(user));
                return false;
            }
        };
        let e = AuditEvent::new(
            AuditKind::SigninSuccess,
            format!(
                "{user} from {source}: code not asked, inside the sign-in window (open for another {})",
                // Whole seconds: this is for people, not a setting to read back.
                crate::config::format_duration(std::time::Duration::from_secs(
                    (until - self.now()).to_std().unwrap_or_default().as_secs()
                ))
            ),
        )
        .with("window_until", until.to_rfc3339());
        self.succeed(user, "window", source, true, Some(e))
            .await
            .is_ok()
    }

    /// Second factor: a 6-digit code. A code (time-step) once accepted is
    /// refused afterwards. Success opens the sign-in window.
    pub async fn check_totp(
        &self,
        user: &str,
        code: &str,
        source: IpAddr,
    ) -> Result<(), AuthFailure> {
        let source = canonical_ip(source);
        let u = match self.usable(user).await? {
            Ok(u) => u,
            Err(reason) => {
                return Err(self.fail(user, "totp", reason, source, false, None).await);
            }
        };
        let now = self.now();
        let secret = match totp::open_secret(&self.totp_key, &u.name, &u.totp_secret) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(user, "the one-time-code secret cannot be opened: {e}");
                return Err(self
                    .fail(
                        user,
                        "totp",
                        "code secret cannot be opened (wrong master key?)",
                        source,
                        false,
                        None,
                    )
                    .await);
            }
        };
        let Some(step) = totp::verify(&secret, code, now.timestamp()) else {
            return Err(self
                .fail(user, "totp", "wrong code", source, true, None)
                .await);
        };
        if !self.store.accept_totp_step(&u.name, step).await? {
            return Err(self
                .fail(user, "totp", "code already used", source, true, None)
                .await);
        }
        let mut e = AuditEvent::new(
            AuditKind::SigninSuccess,
            format!("{user} from {source}: code accepted"),
        );
        if let Ok(len) = chrono::Duration::from_std(self.limits.signin_window)
            && !len.is_zero()
        {
            let until = now + len;
            self.store
                .open_signin_window(&u.name, source, now, until)
                .await?;
            e = AuditEvent::new(
                AuditKind::SigninSuccess,
                format!(
                    "{user} from {source}: code accepted; sign-in window open for {}",
                    crate::config::format_duration(self.limits.signin_window)
                ),
            )
            .with("window_until", until.to_rfc3339());
        }
        self.succeed(&u.name, "totp", source, true, Some(e)).await
    }

    /// The connection closed after the first factor was accepted and before
    /// a right code: audited as a failure ("abandoned at the one-time
    /// code"), not counted toward lockout (wrong codes were counted already).
    pub async fn abandoned(
        &self,
        user: &str,
        protocol: &str,
        source: IpAddr,
    ) -> Result<(), StoreError> {
        let source = canonical_ip(source);
        let event = AuditEvent::new(
            AuditKind::SigninFailure,
            format!(
                "{} from {source}: sign-in abandoned at the one-time code (first factor accepted, no right code before the connection closed)",
                shown_name(user)
            ),
        )
        .user(shown_name(user))
        .source(source)
        .protocol(protocol)
        .with("method", "totp")
        .with("reason", "abandoned at the one-time code");
        self.store.audit(&event).await
    }

    /// A one-time ticket, for clients that cannot prompt for a code: valid
    /// only for the person, target and protocol it was issued for, once,
    /// before it expires. A complete sign-in on its own.
    pub async fn redeem_ticket(
        &self,
        user: &str,
        ticket: &str,
        target: &str,
        protocol: crate::policy::Protocol,
        source: IpAddr,
    ) -> Result<(), AuthFailure> {
        let protocol = protocol.as_str();
        let source = canonical_ip(source);
        let u = match self.usable(user).await? {
            Ok(u) => u,
            Err(reason) => {
                return Err(self.fail(user, "ticket", reason, source, false, None).await);
            }
        };
        let hash = tickets::hash(ticket);
        let now = self.now();
        let reason = match self.store.ticket(&hash).await? {
            None => Some("unknown ticket"),
            Some(t) if t.user != u.name => Some("ticket issued to someone else"),
            Some(t) if t.used_at.is_some() => Some("ticket already used"),
            Some(t) if t.expires_at <= now => Some("ticket expired"),
            Some(t) if t.target != target => Some("ticket issued for another target"),
            Some(t) if t.protocol != protocol => Some("ticket issued for another protocol"),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            return Err(self
                .fail(
                    user,
                    "ticket",
                    reason,
                    source,
                    true,
                    Some(("target", target)),
                )
                .await);
        }
        if !self.store.use_ticket(&hash, now).await? {
            return Err(self
                .fail(user, "ticket", "ticket already used", source, true, None)
                .await);
        }
        let e = AuditEvent::new(
            AuditKind::SigninSuccess,
            format!("{user} from {source}: one-time ticket for {target} over {protocol} accepted"),
        )
        .target(target)
        .protocol(protocol);
        self.succeed(&u.name, "ticket", source, true, Some(e)).await
    }
}
