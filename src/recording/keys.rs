//! The bastion's archive signing key (Ed25519, PKCS#8 PEM) and the public
//! keys auditors verify with. The key id names a key inside each archive so a
//! verifier can tell "signed by a key we do not know" from "forged".

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// Errors creating or reading key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path} already exists; refusing to overwrite a signing key")]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an Ed25519 {what} key in PEM: {message}")]
    Parse {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("no archive public key found next to {}", .private.display())]
    NoPublicKey { private: PathBuf },
}

/// The private key a recorder seals archives with, and its id.
#[derive(Clone)]
pub struct ArchiveKey {
    signing: SigningKey,
    id: String,
}

impl std::fmt::Debug for ArchiveKey {
    // Never print the secret half.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveKey").field("id", &self.id).finish()
    }
}

impl ArchiveKey {
    pub fn new(signing: SigningKey) -> Self {
        let id = key_id(&signing.verifying_key());
        ArchiveKey { signing, id }
    }
    /// A fresh random key (tests, benchmarks).
    pub fn generate() -> Self {
        Self::new(SigningKey::generate(&mut rand::rngs::OsRng))
    }
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn public(&self) -> PublicKey {
        PublicKey::new(self.signing.verifying_key())
    }
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

/// A public key a verifier trusts, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    verifying: VerifyingKey,
    id: String,
}

impl PublicKey {
    pub fn new(verifying: VerifyingKey) -> Self {
        let id = key_id(&verifying);
        PublicKey { verifying, id }
    }
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }
    pub fn to_pem(&self) -> Result<String, String> {
        self.verifying
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| e.to_string())
    }
}

/// The key id: the first 16 hex digits of SHA-256 over the 32 public key bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut id = hex::encode(digest);
    id.truncate(16);
    id
}

/// Where the public half of a private key file lives: same name, `.pub`.
pub fn public_key_path(private: &Path) -> PathBuf {
    private.with_extension("pub")
}

/// Creates a new signing key at `path` (mode 0600, never overwriting) and its
/// public key next to it (`.pub`, mode 0644) for auditors.
pub fn generate_signing_key(path: &Path) -> Result<ArchiveKey, KeyError> {
    let key = ArchiveKey::generate();
    let pem = key
        .signing
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Parse {
            path: path.to_owned(),
            what: "private",
            message: e.to_string(),
        })?;
    let public_pem = key.public().to_pem().map_err(|message| KeyError::Parse {
        path: path.to_owned(),
        what: "public",
        message,
    })?;
    let pub_path = public_key_path(path);
    if pub_path.exists() {
        return Err(KeyError::Exists { path: pub_path });
    }
    write_new(path, pem.as_bytes(), 0o600)?;
    write_new(&pub_path, public_pem.as_bytes(), 0o644)?;
    Ok(key)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_owned(),
                }
            } else {
                KeyError::Write {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Write {
            path: path.to_owned(),
            source,
        })
}

/// Reads a text key file, refusing absurd sizes (a key file is < 1 KiB).
fn read_small(path: &Path) -> Result<String, KeyError> {
    let meta = fs::metadata(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    if meta.len() > 64 * 1024 {
        return Err(KeyError::Parse {
            path: path.to_owned(),
            what: "PEM",
            message: "file too large".into(),
        });
    }
    fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Loads the private signing key (PKCS#8 PEM).
pub fn load_signing_key(path: &Path) -> Result<ArchiveKey, KeyError> {
    let text = read_small(path)?;
    let signing = SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Parse {
        path: path.to_owned(),
        what: "private",
        message: e.to_string(),
    })?;
    Ok(ArchiveKey::new(signing))
}

/// Loads a public key: SPKI PEM (`-----BEGIN PUBLIC KEY-----`), or, for
/// convenience, a private PKCS#8 PEM whose public half is taken.
pub fn load_public_key(path: &Path) -> Result<PublicKey, KeyError> {
    let text = read_small(path)?;
    if let Ok(v) = VerifyingKey::from_public_key_pem(&text) {
        return Ok(PublicKey::new(v));
    }
    match SigningKey::from_pkcs8_pem(&text) {
        Ok(s) => Ok(PublicKey::new(s.verifying_key())),
        Err(e) => Err(KeyError::Parse {
            path: path.to_owned(),
            what: "public",
            message: e.to_string(),
        }),
    }
}

/// The keys an archive signed by this deployment may carry: the public key
/// next to the signing key `private`, plus any other `archive_signing*.pub`
/// in that directory (keys retired by rotation); the signing key's own public
/// half if no `.pub` is there.
pub fn trusted_keys(private: &Path) -> Result<Vec<PublicKey>, KeyError> {
    let mut keys = Vec::new();
    if let Some(dir) = private.parent()
        && let Ok(entries) = fs::read_dir(dir)
    {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("archive_signing") && name.ends_with(".pub") {
                keys.push(load_public_key(&entry.path())?);
            }
        }
    }
    if keys.is_empty() && private.exists() {
        keys.push(load_signing_key(private)?.public());
    }
    if keys.is_empty() {
        return Err(KeyError::NoPublicKey {
            private: private.to_path_buf(),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn generate_writes_private_and_public_and_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive_signing_ed25519.pem");
        let key = generate_signing_key(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = load_signing_key(&path).unwrap();
        assert_eq!(loaded.id(), key.id());
        assert_eq!(key.id().len(), 16);
        let public = load_public_key(&dir.path().join("archive_signing_ed25519.pub")).unwrap();
        assert_eq!(public, key.public());
        assert!(matches!(
            generate_signing_key(&path),
            Err(KeyError::Exists { .. })
        ));
        // The refused call left the original key in place.
        assert_eq!(load_signing_key(&path).unwrap().id(), key.id());
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            load_signing_key(&path),
            Err(KeyError::Parse { .. })
        ));
        assert!(matches!(
            load_public_key(&path),
            Err(KeyError::Parse { .. })
        ));
    }
}
