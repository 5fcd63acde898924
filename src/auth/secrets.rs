//! The secret store for target credentials: each value is encrypted with
//! XChaCha20-Poly1305 under the 32-byte master key (a file written by
//! `init`), with a fresh random nonce per value and the secret's name as
//! associated data, so a value moved to another name fails to decrypt.
//! Nothing here prints a value; only the gateways call `get`.

use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::store::{SecretName, SecretRow, Store, StoreError};

pub(crate) const NONCE_LEN: usize = 24;
const AAD_PREFIX: &[u8] = b"sekisho secret v1\0";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "master key {path} already exists; refusing to overwrite it (every stored secret depends on it)"
    )]
    KeyExists { path: String },
    #[error("cannot write master key {path}: {error}")]
    KeyWrite { path: String, error: std::io::Error },
    #[error("cannot read master key {path}: {error}")]
    KeyRead { path: String, error: std::io::Error },
    #[error("master key {path} is not 64 hex digits (32 bytes)")]
    KeyMalformed { path: String },
    #[error("{0}")]
    InvalidName(String),
    #[error("the secret is empty")]
    Empty,
    #[error("secret {0} cannot be decrypted: wrong master key, or the stored value was altered")]
    Undecryptable(String),
    #[error("cannot encrypt secret {0}")]
    Encrypt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The 32-byte key every secret is encrypted with; wiped from memory on drop
/// (every clone too).
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// A key from raw bytes (tests; normal use loads the file).
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(Zeroizing::new(bytes))
    }
}

/// Writes a new random master key (hex, mode 0600). Refuses to overwrite an
/// existing file: losing the old key would lose every secret.
pub fn generate_master_key(path: &Path) -> Result<(), SecretError> {
    let shown = path.display().to_string();
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    let text = Zeroizing::new(format!("{}\n", hex::encode(key.as_ref())));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            SecretError::KeyExists {
                path: shown.clone(),
            }
        } else {
            SecretError::KeyWrite {
                path: shown.clone(),
                error,
            }
        }
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| SecretError::KeyWrite { path: shown, error })
}

/// Reads the master key file written by `generate_master_key`.
pub fn load_master_key(path: &Path) -> Result<MasterKey, SecretError> {
    let shown = path.display().to_string();
    let text =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|error| SecretError::KeyRead {
                path: shown.clone(),
                error,
            })?,
        );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!("master key {shown} is readable by other accounts; chmod 600 it");
        }
    }
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), key.as_mut())
        .map_err(|_| SecretError::KeyMalformed { path: shown })?;
    Ok(MasterKey(key))
}

/// Names are what policies refer to: letters, digits, `.`, `_`, `-`, `@`, `/`.
pub fn check_secret_name(name: &str) -> Result<(), SecretError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SecretError::InvalidName(format!(
            "{name:?} is not a secret name (1–128 of letters, digits, . _ - @ /)"
        )))
    }
}

fn aad(name: &str) -> Vec<u8> {
    let mut a = AAD_PREFIX.to_vec();
    a.extend_from_slice(name.as_bytes());
    a
}

/// Encrypts `value` for storage under `name`.
pub fn seal(key: &MasterKey, name: &str, value: &[u8]) -> Result<SecretRow, SecretError> {
    let cipher = XChaCha20Poly1305::new(key.0.as_ref().into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: value,
                aad: &aad(name),
            },
        )
        .map_err(|_| SecretError::Encrypt(name.into()))?;
    Ok(SecretRow {
        nonce: nonce.to_vec(),
        ciphertext,
    })
}

/// Decrypts a stored row that belongs to `name`.
pub fn open(
    key: &MasterKey,
    name: &str,
    row: &SecretRow,
) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    if row.nonce.len() != NONCE_LEN {
        return Err(SecretError::Undecryptable(name.into()));
    }
    let cipher = XChaCha20Poly1305::new(key.0.as_ref().into());
    cipher
        .decrypt(
            XNonce::from_slice(&row.nonce),
            Payload {
                msg: &row.ciphertext,
                aad: &aad(name),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SecretError::Undecryptable(name.into()))
}

/// Target credentials, encrypted at rest.
#[derive(Debug)]
pub struct SecretStore {
    store: Store,
    key: MasterKey,
}

impl SecretStore {
    pub fn new(store: Store, key: MasterKey) -> SecretStore {
        SecretStore { store, key }
    }

    /// The master key, for other values sealed with it (RDP tickets).
    pub fn master_key(&self) -> &MasterKey {
        &self.key
    }

    /// Sets (or replaces) a secret.
    pub async fn set(&self, name: &str, value: &[u8]) -> Result<(), SecretError> {
        check_secret_name(name)?;
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        let row = seal(&self.key, name, value)?;
        self.store.put_secret(name, &row).await?;
        Ok(())
    }

    /// The plaintext of a secret, or `None` if there is no such name.
    pub async fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, SecretError> {
        match self.store.secret_row(name).await? {
            Some(row) => open(&self.key, name, &row).map(Some),
            None => Ok(None),
        }
    }

    /// Names and last-set times, for `secret list` and `policy check`.
    pub async fn names(&self) -> Result<Vec<SecretName>, SecretError> {
        Ok(self.store.secret_names().await?)
    }

    pub async fn remove(&self, name: &str) -> Result<(), SecretError> {
        Ok(self.store.remove_secret(name).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> MasterKey {
        MasterKey::from_bytes([b; 32])
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let k = key(7);
        let a = seal(&k, "fa-db01-maint", b"s3cret").unwrap();
        let b = seal(&k, "fa-db01-maint", b"s3cret").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert!(!a.ciphertext.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(open(&k, "fa-db01-maint", &a).unwrap().as_slice(), b"s3cret");
    }

    #[test]
    fn tamper_wrong_name_and_wrong_key_fail() {
        let k = key(7);
        let row = seal(&k, "fa-db01-maint", b"s3cret").unwrap();
        let mut bad = row.clone();
        if let Some(b) = bad.ciphertext.first_mut() {
            *b ^= 1;
        }
        assert!(matches!(
            open(&k, "fa-db01-maint", &bad),
            Err(SecretError::Undecryptable(_))
        ));
        assert!(
            open(&k, "fa-db01-admin", &row).is_err(),
            "moved to another name"
        );
        assert!(open(&key(8), "fa-db01-maint", &row).is_err(), "another key");
        let short = SecretRow {
            nonce: vec![0; 3],
            ciphertext: row.ciphertext.clone(),
        };
        assert!(open(&k, "fa-db01-maint", &short).is_err());
    }

    #[test]
    fn master_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret_master.key");
        generate_master_key(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            generate_master_key(&path),
            Err(SecretError::KeyExists { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before, "not overwritten");
        let k = load_master_key(&path).unwrap();
        let row = seal(&k, "x", b"v").unwrap();
        assert_eq!(
            open(&load_master_key(&path).unwrap(), "x", &row)
                .unwrap()
                .as_slice(),
            b"v"
        );
        std::fs::write(&path, "abcd\n").unwrap();
        assert!(matches!(
            load_master_key(&path),
            Err(SecretError::KeyMalformed { .. })
        ));
    }

    #[test]
    fn names() {
        assert!(check_secret_name("fa-db01-maint").is_ok());
        assert!(check_secret_name("").is_err());
        assert!(check_secret_name("a b").is_err());
        assert!(check_secret_name("x;drop").is_err());
    }
}
