//! The back side: a russh client from sekisho to the target, with the
//! credential from the grant and the target's host key checked against the
//! pin in policy. The vendor never sees the credential.

use std::sync::Arc;
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};

use super::control::{Credential, Grant};

/// How long connecting and signing in to a target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the target could not be used. The `Display` text is shown to the
/// person, so it names the target's side of the problem, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum BackError {
    #[error("cannot reach {target} ({address}:{port}): {source}")]
    Connect {
        target: String,
        address: String,
        port: u16,
        source: std::io::Error,
    },
    #[error(
        "the host key of {target} does not match the one pinned in policy \
         (pinned {expected}, presented {presented}); refusing to connect"
    )]
    HostKeyMismatch {
        target: String,
        expected: String,
        presented: String,
    },
    #[error("{target} presented a certificate instead of a pinned host key; refusing to connect")]
    HostCertificate { target: String },
    #[error("{target} refused sekisho's credential for account {account}")]
    CredentialRejected { target: String, account: String },
    #[error("the stored credential for {target} is not a usable private key")]
    BadKey { target: String },
    #[error("{target} did not answer within {0:?}", CONNECT_TIMEOUT)]
    Timeout { target: String },
    #[error("SSH error talking to the target: {0}")]
    Ssh(#[from] russh::Error),
}

/// OpenSSH's `SHA256:…` fingerprint (unpadded base64 of the SHA-256 of the
/// key blob), as `ssh-keygen -lf` prints it and as policies pin it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The russh client handler: only checks the host key against the pin.
pub(crate) struct BackHandler {
    target: String,
    expected: String,
}

impl client::Handler for BackHandler {
    type Error = BackError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return Err(BackError::HostCertificate {
                    target: self.target.clone(),
                });
            }
        };
        let presented = fingerprint(key);
        if presented == self.expected {
            Ok(true)
        } else {
            Err(BackError::HostKeyMismatch {
                target: self.target.clone(),
                expected: self.expected.clone(),
                presented,
            })
        }
    }
}

pub(crate) type BackHandle = client::Handle<BackHandler>;

pub(crate) fn client_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        // sekisho ends idle sessions itself; a silent long command is not idle.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(60)),
        nodelay: true,
        ..Default::default()
    })
}

/// Connects to the grant's target, checks its host key, signs in.
pub(crate) async fn connect(
    grant: &Grant,
    config: Arc<client::Config>,
) -> Result<BackHandle, BackError> {
    let target = grant.target.clone();
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(grant, config)).await {
        Ok(r) => r,
        Err(_) => Err(BackError::Timeout { target }),
    }
}

async fn connect_inner(
    grant: &Grant,
    config: Arc<client::Config>,
) -> Result<BackHandle, BackError> {
    let stream = tokio::net::TcpStream::connect((grant.address.as_str(), grant.port))
        .await
        .map_err(|source| BackError::Connect {
            target: grant.target.clone(),
            address: grant.address.clone(),
            port: grant.port,
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let handler = BackHandler {
        target: grant.target.clone(),
        expected: grant.host_key_fingerprint.trim().to_string(),
    };
    let mut handle = client::connect_stream(config, stream, handler).await?;
    let result = match &grant.credential {
        Credential::Password(password) => {
            handle
                .authenticate_password(grant.account.clone(), password.as_str())
                .await?
        }
        Credential::PrivateKey(pem) => {
            let key = russh::keys::decode_secret_key(pem, None).map_err(|_| BackError::BadKey {
                target: grant.target.clone(),
            })?;
            let hash = handle.best_supported_rsa_hash().await?.flatten();
            handle
                .authenticate_publickey(
                    grant.account.clone(),
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                )
                .await?
        }
    };
    if !result.success() {
        return Err(BackError::CredentialRejected {
            target: grant.target.clone(),
            account: grant.account.clone(),
        });
    }
    Ok(handle)
}
