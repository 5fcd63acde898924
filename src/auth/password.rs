//! Passwords: argon2id, stored as a PHC string (`$argon2id$v=19$…`), which
//! carries its own salt and parameters so they can be raised later without
//! invalidating existing hashes.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::{Rng, RngCore};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is empty")]
    Empty,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane): the
/// OWASP-recommended minimum, about 20–50 ms per check on a server.
fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Hashes a password into a PHC string with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    let mut salt_bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt_bytes);
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| PasswordError::Hash(e.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Checks a password against a stored PHC string. A malformed hash verifies
/// as false (and is logged), never as true.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let parsed = match PasswordHash::new(phc) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("a stored password hash is unreadable: {e}");
            return false;
        }
    };
    hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Costs what a real check costs, for unknown users, so the time taken does
/// not reveal whether a name exists.
pub fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| {
        hash_password(&generate_password()).unwrap_or_else(|_| String::from("$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
    });
    let _ = verify_password(password, phc);
}

/// A random password for `user add` without `--password-stdin`: 20 characters
/// from an alphabet without look-alikes (about 115 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20)
        .map(|_| {
            let i = rng.gen_range(0..ALPHABET.len());
            char::from(ALPHABET.get(i).copied().unwrap_or(b'x'))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        // Salted: the same password hashes differently each time.
        assert_ne!(h, hash_password("correct horse").unwrap());
        assert!(!verify_password("x", "not a phc string"));
        assert!(matches!(hash_password(""), Err(PasswordError::Empty)));
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let a = generate_password();
        assert_eq!(a.len(), 20);
        assert_ne!(a, generate_password());
        assert!(!a.contains(['0', 'O', 'l', '1', 'I']));
    }
}
