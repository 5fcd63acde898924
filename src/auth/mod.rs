//! Identities and sign-in: argon2id passwords, TOTP second factor with
//! replay refusal, registered SSH keys, one-time tickets, lockout after
//! repeated failures, and the sign-in window.
//!
//! `Authenticator` is the protocol-neutral facade the SSH and RDP gateways
//! call. Every attempt is audited inside it, with the real reason kept in the
//! audit record; the error returned is the same vague "sign-in failed"
//! whatever went wrong, so a caller cannot leak which factor failed or
//! whether the name exists. The gateways add `Config.auth.failure_delay`
//! after a failure before answering (this module does not sleep).
//!
//! Lockout: every failed password, code or ticket counts; `max_failures` in a
//! row lock the person for `lockout` (0 = until an admin runs `user enable`).
//! The count is reset only by a *complete* sign-in (an accepted code, a
//! ticket, or use of an open window), not by a right password alone, so
//! someone holding the password cannot guess codes without limit. Unknown
//! public keys are audited but not counted: SSH clients offer every key they
//! hold, one after the other.
//!
//! Sign-in window: an accepted code opens a window for that person and source
//! address lasting `signin_window` (0 = off); inside it, further connections
//! need only the first factor (`window_open` says so), like a VPN that stays
//! up once its code was entered.
//!
//! Files: `signin` the `Authenticator`, `admin` creating and changing
//! people, `password_checks` running argon2id off the async workers; the
//! factors themselves in [`password`], [`totp`], [`keys`], [`tickets`], and
//! sealed secrets in [`secrets`].

use crate::store::StoreError;

mod admin;
pub mod api_tokens;
pub mod keys;
pub mod password;
mod password_checks;
pub mod people;
pub mod secrets;
mod signin;
pub mod tickets;
pub mod totp;

pub use crate::store::{Role, UserRecord};
pub use admin::{
    NewUser, admin_actor, admin_event, create_user, create_user_by, reset_totp, set_password,
};
pub use signin::Authenticator;

/// Errors of administration (creating users, issuing tickets, …).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Password(#[from] password::PasswordError),
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
}

/// A refused sign-in. Deliberately says nothing about which factor failed;
/// the reason is in the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    #[error("sign-in failed")]
    Failed,
    /// The store could not be reached; sign-in is refused (fail closed).
    #[error("sign-in is unavailable (internal error)")]
    Unavailable(#[source] StoreError),
}

impl From<StoreError> for AuthFailure {
    fn from(e: StoreError) -> Self {
        tracing::error!("sign-in refused: the store failed: {e}");
        AuthFailure::Unavailable(e)
    }
}

/// Names of people and vendors: lower-case letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit, at most 64 characters. They appear in
/// SSH user names (`tanaka@fa-db01`), file paths and reports.
pub fn check_name(kind: &str, name: &str) -> Result<(), AuthError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AuthError::Invalid(format!(
            "{name:?} is not a valid {kind} name (lower-case letters, digits, . _ -; starting with a letter or digit; at most 64)"
        )))
    }
}

/// How a name someone typed at sign-in appears in the audit log and the
/// logs. A valid name ([`check_name`]) is itself. Anything else, often a
/// password typed into the user-name field, is replaced by a marker with its
/// length and a fingerprint, e.g. `<invalid name, 23 bytes, #4f1c09a2>`.
/// The fingerprint is an HMAC-SHA256 under a key drawn when the process
/// starts: the same text gets the same marker while `serve` runs (repeated
/// attempts can be told apart), but a marker cannot be checked against
/// guesses, as a plain hash of a password could.
pub fn name_for_records(name: &str) -> std::borrow::Cow<'_, str> {
    if check_name("user", name).is_ok() {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Owned(invalid_name_marker(name))
    }
}

/// A sign-in name as typed, `person` or `person@target` (SSH) or
/// `person@target` / `target\person` (RDP), for the audit log and the logs:
/// itself when the person is a valid name and the rest could be a target
/// name, else one marker for the whole text (see [`name_for_records`]).
pub fn login_for_records(login: &str) -> std::borrow::Cow<'_, str> {
    let target_like = |t: &str| {
        (1..=128).contains(&t.len())
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    let (person, target) = match (login.split_once('@'), login.split_once('\\')) {
        (Some((p, t)), None) => (p, Some(t)),
        (None, Some((t, p))) => (p, Some(t)),
        _ => (login, None),
    };
    if check_name("user", person).is_ok() && target.is_none_or(target_like) {
        std::borrow::Cow::Borrowed(login)
    } else {
        std::borrow::Cow::Owned(invalid_name_marker(login))
    }
}

fn invalid_name_marker(text: &str) -> String {
    use hmac::{Hmac, Mac as _};
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| {
        use rand::RngCore as _;
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        k
    });
    let fingerprint = match Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(text.as_bytes());
            hex::encode(mac.finalize().into_bytes().get(..4).unwrap_or_default())
        }
        Err(_) => String::from("?"),
    };
    format!("<invalid name, {} bytes, #{fingerprint}>", text.len())
}

#[cfg(test)]
mod tests;
