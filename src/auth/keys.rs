//! Registered SSH public keys: a vendor's registered terminals. Keys are
//! kept as their OpenSSH line and matched by `SHA256:` fingerprint.

use russh::keys::{HashAlg, PublicKey};

use super::AuthError;
use crate::store::{KeyRecord, Store};

/// A public key read from text, ready to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub fingerprint: String,
    pub openssh: String,
    pub comment: String,
}

/// The `SHA256:…` fingerprint, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Reads one OpenSSH public key (`ssh-ed25519 AAAA… comment`) from text,
/// such as the contents of an `id_ed25519.pub` file.
pub fn parse_public_key(text: &str) -> Result<ParsedKey, AuthError> {
    if text.contains("PRIVATE KEY") {
        return Err(AuthError::Invalid(
            "that is a private key; register the public key (the .pub file) instead".into(),
        ));
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let line = match lines.as_slice() {
        [one] => *one,
        [] => {
            return Err(AuthError::Invalid(
                "no public key found in the input".into(),
            ));
        }
        _ => {
            return Err(AuthError::Invalid(
                "the input holds more than one key; register one key at a time".into(),
            ));
        }
    };
    let key = PublicKey::from_openssh(line).map_err(|e| {
        AuthError::Invalid(format!(
            "not an OpenSSH public key (like \"ssh-ed25519 AAAA… name\"): {e}"
        ))
    })?;
    let openssh = key
        .to_openssh()
        .map_err(|e| AuthError::Invalid(format!("cannot encode the key: {e}")))?;
    Ok(ParsedKey {
        fingerprint: fingerprint(&key),
        openssh,
        comment: String::from_utf8_lossy(key.comment().as_bytes()).into_owned(),
    })
}

/// Registers a key for `user` and returns what was stored.
pub async fn add_key(store: &Store, user: &str, text: &str) -> Result<KeyRecord, AuthError> {
    let parsed = parse_public_key(text)?;
    store
        .add_key(user, &parsed.fingerprint, &parsed.openssh, &parsed.comment)
        .await?;
    let keys = store.keys(user).await?;
    keys.into_iter()
        .find(|k| k.fingerprint == parsed.fingerprint)
        .ok_or_else(|| AuthError::Invalid("the key vanished right after it was added".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICDFvN+9T1TvdjXp//H6lY7XqGEjCmiykhfP/MF4ElS3 tanaka@acme-pc01";

    #[test]
    fn parses_and_fingerprints() {
        let k = parse_public_key(&format!("# my laptop\n{KEY}\n")).unwrap();
        // As `ssh-keygen -lf` prints it for this key.
        assert_eq!(
            k.fingerprint,
            "SHA256:5plwq2PLBTa5sQbssueIvpF9otIHPAhavXbaJVwRm5Q"
        );
        assert_eq!(k.comment, "tanaka@acme-pc01");
        assert!(k.openssh.starts_with("ssh-ed25519 AAAA"));
        let again = parse_public_key(&k.openssh).unwrap();
        assert_eq!(again.fingerprint, k.fingerprint);
    }

    #[test]
    fn refuses_junk_private_and_many() {
        assert!(parse_public_key("").is_err());
        assert!(parse_public_key("ssh-ed25519 notbase64").is_err());
        let e = parse_public_key("-----BEGIN OPENSSH PRIVATE KEY-----\nxx").unwrap_err();
        assert!(e.to_string().contains("private key"), "{e}");
        assert!(parse_public_key(&format!("{KEY}\n{KEY}")).is_err());
    }
}
