//! Running argon2id off the async workers, at most a few checks at once, so
//! a burst of sign-in attempts cannot take the bastion's CPU or memory.

use super::{AuthError, password};

/// Each argon2id check takes 19 MiB and tens of milliseconds: at most this
/// many run at once, so a burst of sign-in attempts (anyone who can reach the
/// port can make one) cannot take the bastion's memory.
const CONCURRENT_PASSWORD_CHECKS: usize = 4;

static PASSWORD_CHECKS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(CONCURRENT_PASSWORD_CHECKS);

/// argon2 takes tens of milliseconds of CPU: keep it off the async workers.
pub(super) async fn hash_blocking(password: &str) -> Result<String, AuthError> {
    let p = zeroize::Zeroizing::new(password.to_string());
    let _permit = PASSWORD_CHECKS
        .acquire()
        .await
        .map_err(|e| AuthError::Invalid(format!("password hashing stopped: {e}")))?;
    tokio::task::spawn_blocking(move || password::hash_password(&p))
        .await
        .map_err(|e| AuthError::Invalid(format!("password hashing stopped: {e}")))?
        .map_err(AuthError::from)
}

pub(super) async fn verify_blocking(password: &str, phc: Option<String>) -> bool {
    let p = zeroize::Zeroizing::new(password.to_string());
    let Ok(_permit) = PASSWORD_CHECKS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || match phc {
        Some(h) => password::verify_password(&p, &h),
        None => {
            password::verify_dummy(&p);
            false
        }
    })
    .await
    .unwrap_or(false)
}
