//! TOTP (RFC 6238): HMAC-SHA-1, 6 digits, 30-second steps, accepting the
//! step before and after the current one for clock drift. Replay refusal
//! (a code once used is refused) is done with the store, which remembers the
//! last accepted step per person.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::secrets::{self, MasterKey, SecretError};
use crate::store::SecretRow;

pub const DIGITS: u32 = 6;
pub const PERIOD_SECS: i64 = 30;
/// Steps accepted either side of the current one.
pub const SKEW_STEPS: i64 = 1;

const BASE32: base32::Alphabet = base32::Alphabet::Rfc4648 { padding: false };

/// A fresh 160-bit secret (the size RFC 4226 recommends), base32 without padding.
pub fn generate_secret() -> String {
    let mut key = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut key);
    base32::encode(BASE32, &key)
}

/// Decodes a base32 secret (case and spaces ignored, padding optional).
pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let cleaned: String = secret
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    base32::decode(BASE32, &cleaned).filter(|k| !k.is_empty())
}

/// How a sealed secret starts in the store; anything else is a secret
/// stored in plain text by an earlier version (see [`is_sealed`]).
const SEALED_PREFIX: &str = "sealed-v1:";

/// The secret-store name a person's TOTP secret is sealed under: the
/// ciphertext is bound to the person, so rows cannot be swapped.
fn sealed_name(user: &str) -> String {
    format!("totp:{user}")
}

/// Seals a base32 secret for the store under the master key.
pub fn seal_secret(
    key: &MasterKey,
    user: &str,
    secret_base32: &str,
) -> Result<String, SecretError> {
    let row = secrets::seal(key, &sealed_name(user), secret_base32.as_bytes())?;
    let mut raw = row.nonce;
    raw.extend_from_slice(&row.ciphertext);
    Ok(format!("{SEALED_PREFIX}{}", BASE64.encode(raw)))
}

/// Whether a stored secret is sealed (false: plain text from before sealing).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// The base32 secret from its stored form. A plain-text secret written by an
/// earlier version is returned as it is (`serve` seals those at start).
pub fn open_secret(
    key: &MasterKey,
    user: &str,
    stored: &str,
) -> Result<Zeroizing<String>, SecretError> {
    let Some(encoded) = stored.strip_prefix(SEALED_PREFIX) else {
        return Ok(Zeroizing::new(stored.to_owned()));
    };
    let name = sealed_name(user);
    let raw = BASE64
        .decode(encoded)
        .map_err(|_| SecretError::Undecryptable(name.clone()))?;
    if raw.len() < secrets::NONCE_LEN {
        return Err(SecretError::Undecryptable(name));
    }
    let (nonce, ciphertext) = raw.split_at(secrets::NONCE_LEN);
    let row = SecretRow {
        nonce: nonce.to_vec(),
        ciphertext: ciphertext.to_vec(),
    };
    let plain = secrets::open(key, &name, &row)?;
    String::from_utf8(plain.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| SecretError::Undecryptable(name))
}

/// The URI authenticator apps read from a QR code.
pub fn otpauth_uri(user: &str, secret_base32: &str) -> String {
    format!(
        "otpauth://totp/sekisho:{}?secret={secret_base32}&issuer=sekisho&digits={DIGITS}&period={PERIOD_SECS}&algorithm=SHA1",
        percent_encode(user)
    )
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The time-step containing unix time `unix_secs`.
pub fn step_at(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(PERIOD_SECS)
}

/// The code for one time-step (RFC 4226 dynamic truncation), `digits` long.
pub fn code_for_step(key: &[u8], step: i64, digits: u32) -> Option<String> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).ok()?;
    mac.update(&step.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash.last()? & 0x0f);
    let bytes: [u8; 4] = hash.get(offset..offset + 4)?.try_into().ok()?;
    let binary = u32::from_be_bytes(bytes) & 0x7fff_ffff;
    let modulus = 10u32.checked_pow(digits)?;
    Some(format!(
        "{:0width$}",
        binary % modulus,
        width = digits as usize
    ))
}

/// If `code` is valid at `unix_secs` (±1 step), the step it belongs to.
/// The caller must still refuse a step already used.
pub fn verify(secret_base32: &str, code: &str, unix_secs: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let key = decode_secret(secret_base32)?;
    let now = step_at(unix_secs);
    let mut found = None;
    // Check every candidate step, so timing does not reveal which matched.
    for step in (now - SKEW_STEPS)..=(now + SKEW_STEPS) {
        if let Some(expected) = code_for_step(&key, step, DIGITS)
            && bool::from(expected.as_bytes().ct_eq(code.as_bytes()))
            && found.is_none()
        {
            found = Some(step);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B, SHA-1 seed "12345678901234567890"; the 8-digit
    // values there end in these 6 digits.
    const SEED: &[u8] = b"12345678901234567890";
    const VECTORS: [(i64, &str, &str); 6] = [
        (59, "94287082", "287082"),
        (1111111109, "07081804", "081804"),
        (1111111111, "14050471", "050471"),
        (1234567890, "89005924", "005924"),
        (2000000000, "69279037", "279037"),
        (20000000000, "65353130", "353130"),
    ];

    #[test]
    fn rfc6238_vectors() {
        for (t, eight, six) in VECTORS {
            assert_eq!(code_for_step(SEED, step_at(t), 8).unwrap(), eight, "t={t}");
            assert_eq!(code_for_step(SEED, step_at(t), 6).unwrap(), six, "t={t}");
            let secret = base32::encode(BASE32, SEED);
            assert_eq!(verify(&secret, six, t), Some(step_at(t)));
        }
    }

    #[test]
    fn one_step_either_side_and_no_more() {
        let secret = base32::encode(BASE32, SEED);
        let t = 1234567890;
        let code = code_for_step(SEED, step_at(t), 6).unwrap();
        assert_eq!(verify(&secret, &code, t + 30), Some(step_at(t)));
        assert_eq!(verify(&secret, &code, t - 30), Some(step_at(t)));
        assert_eq!(verify(&secret, &code, t + 60), None);
        assert_eq!(verify(&secret, &code, t - 60), None);
    }

    #[test]
    fn malformed_codes_fail() {
        let secret = generate_secret();
        assert_eq!(verify(&secret, "", 0), None);
        assert_eq!(verify(&secret, "12345", 0), None);
        assert_eq!(verify(&secret, "1234567", 0), None);
        assert_eq!(verify(&secret, "12a456", 0), None);
        assert_eq!(verify("not base32!", "123456", 0), None);
    }

    #[test]
    fn secrets_and_uri() {
        let s = generate_secret();
        assert_eq!(s.len(), 32);
        assert_eq!(decode_secret(&s).unwrap().len(), 20);
        assert_eq!(decode_secret(&s.to_lowercase()), decode_secret(&s));
        let uri = otpauth_uri("tanaka", &s);
        assert_eq!(
            uri,
            format!(
                "otpauth://totp/sekisho:tanaka?secret={s}&issuer=sekisho&digits=6&period=30&algorithm=SHA1"
            )
        );
    }
}
