//! The SSH gateway: a russh server in front (what the vendor's OpenSSH
//! client talks to), a russh client behind (to the target, with injected
//! credentials and a pinned host key), and per-channel relays with the
//! recorder tap in between. Everything that is a decision or a record is
//! asked of an [`SshCore`](core::SshCore).
//!
//! Entry point: [`serve`].

pub mod back;
pub mod core;
pub mod front;
mod live;
mod relay;
pub mod rules;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::server::Server as _;
use russh::{MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use self::core::SshCore;

/// Errors starting or running the SSH listener.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot read the SSH host key {path}: {message} (run `sekisho init` to create it)")]
    HostKey { path: String, message: String },
    #[error("cannot listen for SSH on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the SSH listener failed: {0}")]
    Listener(#[from] std::io::Error),
}

/// The limits the gateway enforces itself (from `sekisho.toml`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Added to every failed sign-in attempt.
    pub failure_delay: Duration,
    /// A session with no input for this long ends; zero disables.
    pub idle_timeout: Duration,
    /// The person is warned this long before the grant's end.
    pub warn_before_end: Duration,
    /// For times shown to the person.
    pub time_zone: chrono_tz::Tz,
}

impl Limits {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Limits {
            failure_delay: config.auth.failure_delay,
            idle_timeout: config.sessions.idle_timeout,
            warn_before_end: config.sessions.warn_before_end,
            time_zone: config.time_zone,
        }
    }
}

/// Reads the OpenSSH private host key written by `sekisho init`.
pub fn load_host_key(path: &Path) -> Result<PrivateKey, SshError> {
    russh::keys::load_secret_key(path, None).map_err(|e| SshError::HostKey {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// What every connection shares.
pub(crate) struct Shared<C> {
    pub core: Arc<C>,
    pub limits: Arc<Limits>,
    pub back_config: Arc<russh::client::Config>,
    pub shutdown: watch::Receiver<bool>,
}

struct Acceptor<C> {
    shared: Arc<Shared<C>>,
}

impl<C: SshCore> russh::server::Server for Acceptor<C> {
    type Handler = front::Connection<C>;

    fn new_client(&mut self, peer: Option<std::net::SocketAddr>) -> Self::Handler {
        let source = peer
            .map(|p| p.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        tracing::debug!(%source, "ssh connection");
        front::Connection::new(self.shared.clone(), source)
    }

    fn handle_session_error(&mut self, error: front::FrontError) {
        tracing::debug!(%error, "ssh connection ended with an error");
    }
}

/// The russh server configuration sekisho uses.
fn server_config(host_key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-sekisho".into()),
        methods: MethodSet::from(
            &[
                MethodKind::PublicKey,
                MethodKind::Password,
                MethodKind::KeyboardInteractive,
            ][..],
        ),
        // sekisho applies `failure_delay` itself, and only to real failures
        // (not to the partial success that asks for the code).
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        max_auth_attempts: 6,
        // Idle sessions are ended by the session supervisor, with a message.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(60)),
        nodelay: true,
        ..Default::default()
    }
}

/// Runs the SSH gateway on `listener` until `shutdown` resolves; then stops
/// accepting and ends live sessions with a message.
pub async fn serve<C: SshCore>(
    listener: TcpListener,
    host_key: PrivateKey,
    core: Arc<C>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SshError> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        core,
        limits: Arc::new(limits),
        back_config: back::client_config(),
        shutdown: shutdown_rx,
    });
    let mut acceptor = Acceptor { shared };
    let config = Arc::new(server_config(host_key));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "ssh gateway listening");
    }
    let running = acceptor.run_on_socket(config, &listener);
    let handle = running.handle();
    tokio::select! {
        r = running => r?,
        () = shutdown => {
            let _ = shutdown_tx.send(true);
            // Let supervisors tell people why before the server cuts them.
            tokio::time::sleep(Duration::from_millis(500)).await;
            handle.shutdown("sekisho is shutting down".into());
        }
    }
    Ok(())
}

/// Binds `[ssh] listen` from `sekisho.toml`, loads the host key made by
/// `sekisho init` (`paths.ssh_host_key()`), and serves until `shutdown`.
pub async fn serve_with_config<C: SshCore>(
    config: &crate::config::Config,
    core: Arc<C>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SshError> {
    let host_key = load_host_key(&config.paths.ssh_host_key())?;
    let addr = config.ssh.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| SshError::Bind { addr, source })?;
    serve(
        listener,
        host_key,
        core,
        Limits::from_config(config),
        shutdown,
    )
    .await
}
