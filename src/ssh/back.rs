//! The back side: a russh client from sekisho to the target, with the
//! credential from the grant and the target's host key checked against the
//! pin in policy. The vendor never sees the credential.
//!
//! Connecting runs in three phases ([`BackPhase`]): connect, host key (key
//! exchange and the pin check), sign-in. A failure is a [`BackError`] whose
//! variant a caller can match and whose [`BackError::phase`] and
//! [`BackError::kind`] say where and how it failed (the session end's audit
//! event carries both); its text is what the person is shown.

use std::sync::Arc;
use std::time::Duration;

use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{Preferred, client};

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
    /// The SSH handshake (key exchange) failed.
    #[error("SSH error talking to the target: {0}")]
    Ssh(#[from] russh::Error),
    /// The SSH connection failed while signing in.
    #[error("SSH error talking to the target: {0}")]
    SignIn(russh::Error),
}

/// The phases of connecting to a target, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackPhase {
    /// TCP connect (and the whole connection, for a timeout).
    Connect,
    /// Key exchange and the host key check against the pin.
    HostKey,
    /// Signing in with the injected credential.
    SignIn,
}

impl BackPhase {
    /// The name in logs and in the audit log's `failure.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackPhase::Connect => "connect",
            BackPhase::HostKey => "host_key",
            BackPhase::SignIn => "sign_in",
        }
    }
}

/// What went wrong, whatever the phase: one kind per [`BackError`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackFailure {
    /// The target's address could not be reached.
    Unreachable,
    /// The target did not answer in time.
    Timeout,
    /// The target's host key is not the one pinned in policy.
    HostKeyMismatch,
    /// The target presented a certificate instead of a pinned host key.
    HostCertificate,
    /// The target refused the injected credential.
    CredentialRejected,
    /// The stored credential is not a usable private key.
    BadKey,
    /// The SSH protocol itself failed (key exchange, a broken connection).
    Protocol,
}

impl BackFailure {
    /// The name in logs and in the audit log's `failure.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackFailure::Unreachable => "unreachable",
            BackFailure::Timeout => "timeout",
            BackFailure::HostKeyMismatch => "host_key_mismatch",
            BackFailure::HostCertificate => "host_certificate",
            BackFailure::CredentialRejected => "credential_rejected",
            BackFailure::BadKey => "bad_key",
            BackFailure::Protocol => "protocol",
        }
    }
}

/// Where and how a connection failed, without its text: what the session
/// end keeps for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectFailure {
    pub phase: BackPhase,
    pub kind: BackFailure,
}

impl BackError {
    /// The phase the connection failed in.
    pub fn phase(&self) -> BackPhase {
        match self {
            BackError::Connect { .. } | BackError::Timeout { .. } => BackPhase::Connect,
            BackError::HostKeyMismatch { .. }
            | BackError::HostCertificate { .. }
            | BackError::Ssh(_) => BackPhase::HostKey,
            BackError::CredentialRejected { .. }
            | BackError::BadKey { .. }
            | BackError::SignIn(_) => BackPhase::SignIn,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> BackFailure {
        match self {
            BackError::Connect { .. } => BackFailure::Unreachable,
            BackError::Timeout { .. } => BackFailure::Timeout,
            BackError::HostKeyMismatch { .. } => BackFailure::HostKeyMismatch,
            BackError::HostCertificate { .. } => BackFailure::HostCertificate,
            BackError::CredentialRejected { .. } => BackFailure::CredentialRejected,
            BackError::BadKey { .. } => BackFailure::BadKey,
            BackError::Ssh(_) | BackError::SignIn(_) => BackFailure::Protocol,
        }
    }

    /// The phase and the kind together.
    pub fn failure(&self) -> ConnectFailure {
        ConnectFailure {
            phase: self.phase(),
            kind: self.kind(),
        }
    }
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
    /// Why the connection ended, once it has: before sekisho ends a
    /// session, an ended connection means the target was lost.
    lost: tokio::sync::watch::Sender<Option<String>>,
}

/// Says why the target connection ended (`None` while it is up; the sender
/// is dropped with the connection too).
pub(crate) type TargetLost = tokio::sync::watch::Receiver<Option<String>>;

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

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let why = match &reason {
            client::DisconnectReason::ReceivedDisconnect(info) if info.message.is_empty() => {
                "the target closed the connection".to_string()
            }
            client::DisconnectReason::ReceivedDisconnect(info) => {
                format!("the target closed the connection: {}", info.message)
            }
            client::DisconnectReason::Error(e) => e.to_string(),
        };
        self.lost.send_replace(Some(why));
        match reason {
            client::DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            client::DisconnectReason::Error(e) => Err(e),
        }
    }
}

pub(crate) type BackHandle = client::Handle<BackHandler>;

/// The host key a target presents to sekisho, for an operator to check and
/// pin: its `SHA256:…` fingerprint and its algorithm (e.g. `ssh-ed25519`).
/// It is read with the client configuration sessions use, so the key is the
/// one sekisho will later be shown (a server with several keys presents the
/// one the client prefers). The connection ends right after the key.
pub async fn read_host_key(address: &str, port: u16) -> Result<(String, String), BackError> {
    let target = format!("{address}:{port}");
    let read = async {
        let stream = tokio::net::TcpStream::connect((address, port))
            .await
            .map_err(|source| BackError::Connect {
                target: target.clone(),
                address: address.to_string(),
                port,
                source,
            })?;
        let seen = Arc::new(std::sync::Mutex::new(None));
        let reader = KeyReader {
            target: target.clone(),
            seen: seen.clone(),
        };
        // Refusing the key ends the connection: the error is expected.
        let ended = client::connect_stream(client_config(), stream, reader).await;
        let key = seen.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (key, ended) {
            (Some(k), _) => Ok(k),
            (None, Err(e)) => Err(e),
            (None, Ok(_)) => Err(BackError::Ssh(russh::Error::UnknownKey)),
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, read).await {
        Ok(r) => r,
        Err(_) => Err(BackError::Timeout { target }),
    }
}

/// A client handler that notes the host key and goes no further.
struct KeyReader {
    target: String,
    seen: Arc<std::sync::Mutex<Option<(String, String)>>>,
}

impl client::Handler for KeyReader {
    type Error = BackError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                *self.seen.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((fingerprint(key), key.algorithm().to_string()));
                Ok(false)
            }
            PublicKeyOrCertificate::Certificate(_) => Err(BackError::HostCertificate {
                target: self.target.clone(),
            }),
        }
    }
}

pub(crate) fn client_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        // sekisho ends idle sessions itself; a silent long command is not idle.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(60)),
        nodelay: true,
        // Bounds the target's output held here (relay.rs).
        channel_buffer_size: super::relay::OUTPUT_QUEUE_PACKETS,
        preferred: Preferred {
            cipher: super::ciphers::back(),
            ..Preferred::DEFAULT
        },
        ..Default::default()
    })
}

/// Connects to the grant's target, checks its host key, signs in. The
/// receiver says when and why the connection ends.
pub(crate) async fn connect(
    grant: &Grant,
    config: Arc<client::Config>,
) -> Result<(BackHandle, TargetLost), BackError> {
    let target = grant.target.clone();
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(grant, config)).await {
        Ok(r) => r,
        Err(_) => Err(BackError::Timeout { target }),
    }
}

async fn connect_inner(
    grant: &Grant,
    config: Arc<client::Config>,
) -> Result<(BackHandle, TargetLost), BackError> {
    let stream = tokio::net::TcpStream::connect((grant.address.as_str(), grant.port))
        .await
        .map_err(|source| BackError::Connect {
            target: grant.target.clone(),
            address: grant.address.clone(),
            port: grant.port,
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let (lost, lost_rx) = tokio::sync::watch::channel(None);
    let handler = BackHandler {
        target: grant.target.clone(),
        expected: grant.host_key_fingerprint.trim().to_string(),
        lost,
    };
    // Phase host key: the handler checks the pin during key exchange.
    let mut handle = client::connect_stream(config, stream, handler).await?;
    // Phase sign-in.
    let result = match &grant.credential {
        Credential::Password(password) => handle
            .authenticate_password(grant.account.clone(), password.as_str())
            .await
            .map_err(BackError::SignIn)?,
        Credential::PrivateKey(pem) => {
            let key = russh::keys::decode_secret_key(pem, None).map_err(|_| BackError::BadKey {
                target: grant.target.clone(),
            })?;
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .map_err(BackError::SignIn)?
                .flatten();
            handle
                .authenticate_publickey(
                    grant.account.clone(),
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                )
                .await
                .map_err(BackError::SignIn)?
        }
    };
    if !result.success() {
        return Err(BackError::CredentialRejected {
            target: grant.target.clone(),
            account: grant.account.clone(),
        });
    }
    Ok((handle, lost_rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_names_its_phase() {
        let target = || "db01".to_string();
        let cases = [
            (BackError::Timeout { target: target() }, BackPhase::Connect),
            (
                BackError::HostKeyMismatch {
                    target: target(),
                    expected: "SHA256:a".into(),
                    presented: "SHA256:b".into(),
                },
                BackPhase::HostKey,
            ),
            (
                BackError::HostCertificate { target: target() },
                BackPhase::HostKey,
            ),
            (
                BackError::CredentialRejected {
                    target: target(),
                    account: "root".into(),
                },
                BackPhase::SignIn,
            ),
            (BackError::BadKey { target: target() }, BackPhase::SignIn),
        ];
        for (error, phase) in cases {
            assert_eq!(error.phase(), phase, "{error}");
        }
    }

    #[test]
    fn each_failure_has_a_kind_and_a_pin_mismatch_is_its_own() {
        let mismatch = BackError::HostKeyMismatch {
            target: "db01".into(),
            expected: "SHA256:a".into(),
            presented: "SHA256:b".into(),
        };
        assert_eq!(
            mismatch.failure(),
            ConnectFailure {
                phase: BackPhase::HostKey,
                kind: BackFailure::HostKeyMismatch
            }
        );
        let unreachable = BackError::Connect {
            target: "down".into(),
            address: "127.0.0.1".into(),
            port: 1,
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(unreachable.kind(), BackFailure::Unreachable);
        assert_eq!(unreachable.phase(), BackPhase::Connect);
    }

    /// The audit log's names are the variants' names in snake_case.
    #[test]
    fn names_are_the_variants_in_snake_case() {
        fn snake(debug: String) -> String {
            let mut out = String::new();
            for (i, c) in debug.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            }
            out
        }
        for p in [BackPhase::Connect, BackPhase::HostKey, BackPhase::SignIn] {
            assert_eq!(p.as_str(), snake(format!("{p:?}")));
        }
        for k in [
            BackFailure::Unreachable,
            BackFailure::Timeout,
            BackFailure::HostKeyMismatch,
            BackFailure::HostCertificate,
            BackFailure::CredentialRejected,
            BackFailure::BadKey,
            BackFailure::Protocol,
        ] {
            assert_eq!(k.as_str(), snake(format!("{k:?}")));
        }
    }
}
