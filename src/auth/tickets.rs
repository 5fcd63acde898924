//! One-time tickets, for clients that cannot prompt for a code (an RDP
//! client sends one password and nothing more). A ticket is 160 random bits,
//! printed once, looked up by its SHA-256, single use, short-lived, and
//! bound to one person, one target and one protocol.
//!
//! An RDP ticket is also kept sealed with the secret-store master key
//! (XChaCha20-Poly1305, its hash bound as associated data) for its short
//! life: NLA (CredSSP/NTLM) makes the bastion prove it knows the secret, so
//! it must read the ticket back. The sealed text is dropped when the ticket
//! is used, and the row when it expires. SSH tickets are never sealed.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::AuthError;
use super::secrets::MasterKey;
use crate::store::{AuditEvent, AuditKind, SecretRow, Store};

/// Every ticket starts with this, so a gateway can tell a ticket typed into
/// a password field from a password.
pub const PREFIX: &str = "skt_";
const BASE32: base32::Alphabet = base32::Alphabet::Rfc4648 { padding: false };
const RANDOM_BYTES: usize = 20;

/// A ticket just issued: the text is shown once and then forgotten.
#[derive(Debug)]
pub struct IssuedTicket {
    pub text: Zeroizing<String>,
    pub user: String,
    pub target: String,
    pub protocol: String,
    pub expires_at: DateTime<Utc>,
}

/// A new random ticket text.
pub fn generate() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; RANDOM_BYTES]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    Zeroizing::new(format!(
        "{PREFIX}{}",
        base32::encode(BASE32, bytes.as_ref()).to_lowercase()
    ))
}

/// The stored form: hex SHA-256 of the text as typed (trimmed).
pub fn hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.trim().as_bytes()))
}

/// Whether `s` has the shape of a ticket (prefix and length), without
/// touching the store.
pub fn looks_like_ticket(s: &str) -> bool {
    let s = s.trim();
    s.len() == PREFIX.len() + 32
        && s.starts_with(PREFIX)
        && s.bytes()
            .skip(PREFIX.len())
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

/// Protocols a ticket can be bound to.
pub fn check_protocol(protocol: &str) -> Result<(), AuthError> {
    match protocol {
        "ssh" | "rdp" => Ok(()),
        other => Err(AuthError::Invalid(format!(
            "unknown protocol {other:?} (use ssh or rdp)"
        ))),
    }
}

/// The secret-store name a ticket's sealed text is bound to.
fn sealed_name(hash_hex: &str) -> String {
    format!("ticket/{hash_hex}")
}

/// Seals a ticket's text for storage next to its hash.
pub fn seal(key: &MasterKey, hash_hex: &str, text: &str) -> Result<SecretRow, AuthError> {
    super::secrets::seal(key, &sealed_name(hash_hex), text.as_bytes())
        .map_err(|e| AuthError::Invalid(format!("sealing the ticket: {e}")))
}

/// Opens a sealed ticket text; `None` if it does not belong to `hash_hex`
/// (or was sealed with another key, or is not the ticket of that hash).
pub fn open(key: &MasterKey, hash_hex: &str, row: &SecretRow) -> Option<Zeroizing<String>> {
    let plain = super::secrets::open(key, &sealed_name(hash_hex), row).ok()?;
    let text = Zeroizing::new(String::from_utf8(plain.to_vec()).ok()?);
    (hash(&text) == hash_hex).then_some(text)
}

/// The text of `user`'s newest unused, unexpired RDP ticket for `target`,
/// for an NLA sign-in to verify against. Redeeming it is still needed.
pub async fn readable_rdp_ticket(
    store: &Store,
    key: &MasterKey,
    user: &str,
    target: &str,
) -> Result<Option<Zeroizing<String>>, AuthError> {
    let Some((hash_hex, row)) = store
        .live_sealed_ticket(user, target, "rdp", Utc::now())
        .await?
    else {
        return Ok(None);
    };
    Ok(open(key, &hash_hex, &row))
}

/// Issues a ticket for `user` to reach `target` over `protocol`, valid for
/// `lifetime` from now, and audits it (without the ticket text). An RDP
/// ticket is also stored sealed with `key`, for NLA sign-in.
pub async fn issue(
    store: &Store,
    key: &MasterKey,
    lifetime: std::time::Duration,
    user: &str,
    target: &str,
    protocol: &str,
    issued_by: &str,
) -> Result<IssuedTicket, AuthError> {
    check_protocol(protocol)?;
    if target.trim().is_empty() {
        return Err(AuthError::Invalid("a ticket needs a target".into()));
    }
    if lifetime.is_zero() {
        return Err(AuthError::Invalid(
            "tickets are turned off (auth.ticket_lifetime is 0)".into(),
        ));
    }
    let Some(u) = store.user(user).await? else {
        return Err(AuthError::Store(crate::store::StoreError::NoUser(
            user.into(),
        )));
    };
    if !u.enabled {
        return Err(AuthError::Invalid(format!("user {user} is disabled")));
    }
    let now = Utc::now();
    // The detail names no clock time: the audit line's own time (in the
    // site's zone) plus this is when it expires.
    let valid_for = crate::config::format_duration(lifetime);
    let lifetime = chrono::Duration::from_std(lifetime)
        .map_err(|_| AuthError::Invalid("auth.ticket_lifetime is too long".into()))?;
    let expires_at = now + lifetime;
    let text = generate();
    let hash_hex = hash(&text);
    let sealed = match protocol {
        "rdp" => Some(seal(key, &hash_hex, &text)?),
        _ => None,
    };
    store
        .add_ticket(
            &hash_hex,
            user,
            target,
            protocol,
            issued_by,
            now,
            expires_at,
            sealed.as_ref(),
        )
        .await?;
    store
        .audit(
            &AuditEvent::new(
                AuditKind::AdminChange,
                format!(
                    "{issued_by} issued a one-time ticket for {user} to {target} over {protocol}, valid for {valid_for}"
                ),
            )
            .user(user)
            .target(target)
            .protocol(protocol)
            .with("by", issued_by)
            .with("action", "ticket_issue")
            .with("expires_at", expires_at.to_rfc3339()),
        )
        .await?;
    Ok(IssuedTicket {
        text,
        user: user.into(),
        target: target.into(),
        protocol: protocol.into(),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_random_shaped_and_hashed() {
        let a = generate();
        let b = generate();
        assert_ne!(*a, *b);
        assert!(looks_like_ticket(&a), "{}", *a);
        assert!(!looks_like_ticket("skt_short"));
        assert!(!looks_like_ticket("hunter2"));
        assert_eq!(hash(&a).len(), 64);
        assert_eq!(hash(&a), hash(&format!(" {}\n", *a)));
        assert_ne!(hash(&a), hash(&b));
        assert!(check_protocol("ssh").is_ok());
        assert!(check_protocol("telnet").is_err());
    }

    #[test]
    fn sealed_tickets_open_only_under_their_own_hash_and_key() {
        let key = MasterKey::from_bytes([3; 32]);
        let a = generate();
        let b = generate();
        let row = seal(&key, &hash(&a), &a).expect("seal");
        assert_eq!(
            open(&key, &hash(&a), &row).as_deref().map(String::as_str),
            Some(a.as_str())
        );
        assert!(
            open(&key, &hash(&b), &row).is_none(),
            "moved to another ticket"
        );
        assert!(open(&MasterKey::from_bytes([4; 32]), &hash(&a), &row).is_none());
        let mut edited = row.clone();
        edited.ciphertext[0] ^= 1;
        assert!(open(&key, &hash(&a), &edited).is_none());
        // Sealed under b's hash but holding a's text: refused too.
        let swapped = seal(&key, &hash(&b), &a).expect("seal");
        assert!(open(&key, &hash(&b), &swapped).is_none());
    }
}
