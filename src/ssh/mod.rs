//! The SSH gateway: a russh server in front (what the vendor's OpenSSH
//! client talks to), a russh client behind (to the target, with injected
//! credentials and a pinned host key), and per-channel relays with the
//! recorder tap in between. Everything that is a decision or a record is
//! asked of an [`SshControl`](control::SshControl).
//!
//! The session's steps from decision to close are in `session.rs` (the RDP
//! twin is `rdp::session`); entry points [`serve`] and [`serve_config`],
//! tunables [`GatewayOptions`], the control trait [`SshControl`].

pub mod back;
pub(crate) mod ciphers;
mod connection_threads;
pub mod control;
pub mod front;
mod relay;
pub mod rules;
pub mod services;
mod session;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::{MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use self::control::SshControl;
use crate::admission::{Acceptor, Gate, Pending};

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

/// The limits the gateway enforces itself (from `sekisho.toml`); the RDP
/// gateway's are `rdp::GatewayOptions`.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Added to every failed sign-in attempt.
    pub failure_delay: Duration,
    /// A session with no input for this long ends; zero disables.
    pub idle_timeout: Duration,
    /// The person is warned this long before the grant's end.
    pub warn_before_end: Duration,
    /// For times shown to the person.
    pub time_zone: chrono_tz::Tz,
    /// How long a client may take from connecting to signing in
    /// (`[ssh] login_grace`).
    pub login_grace: Duration,
    /// The pre-authentication limits, shared with the RDP listener.
    pub admission: Gate,
    /// The ciphers offered to clients (`[ssh] ciphers`); the client's
    /// order picks among them.
    pub ciphers: Vec<russh::cipher::Name>,
}

impl GatewayOptions {
    /// The options of `[ssh]`, `[auth]` and `[sessions]`, with a gate of
    /// its own that only logs refusals; `sekisho serve` replaces it with the
    /// process's shared, auditing one.
    pub fn from_config(config: &crate::config::Config) -> Self {
        GatewayOptions {
            failure_delay: config.auth.failure_delay,
            idle_timeout: config.sessions.idle_timeout,
            warn_before_end: config.sessions.warn_before_end,
            time_zone: config.time_zone,
            login_grace: config.ssh.login_grace,
            admission: Gate::logging_only(config.admission.clone()),
            ciphers: config.ssh.ciphers.clone(),
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
    pub control: Arc<C>,
    pub options: Arc<GatewayOptions>,
    pub back_config: Arc<russh::client::Config>,
    pub shutdown: watch::Receiver<bool>,
}

/// The russh server configuration sekisho uses.
fn server_config(host_key: PrivateKey, ciphers: &[russh::cipher::Name]) -> russh::server::Config {
    russh::server::Config {
        preferred: russh::Preferred {
            cipher: ciphers.to_vec().into(),
            ..russh::Preferred::DEFAULT
        },
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
        // The input pump gives the person's window back as the target takes
        // the data, so a fast client cannot fill the bastion (relay.rs).
        window_size: relay::FRONT_WINDOW,
        manual_window_adjust: true,
        ..Default::default()
    }
}

/// Runs the SSH gateway on `listener` until `shutdown` resolves; then stops
/// accepting and ends every connection, telling people in a session why.
pub async fn serve<C: SshControl>(
    listener: TcpListener,
    host_key: PrivateKey,
    control: Arc<C>,
    options: GatewayOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SshError> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        control,
        options: Arc::new(options),
        back_config: back::client_config(),
        shutdown: shutdown_rx,
    });
    let config = Arc::new(server_config(host_key, &shared.options.ciphers));
    let mut acceptor = Acceptor::new(listener, "ssh");
    if let Ok(addr) = acceptor.local_addr() {
        tracing::info!(listen = %addr, "SSH gateway listening");
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            (stream, peer) = acceptor.accept() => {
                // Over a pre-authentication limit: closed at once, before
                // any key exchange (the gate logs and audits it).
                if let Ok(admitted) = shared.options.admission.connect(peer.ip(), "ssh") {
                    // Taken off this runtime's reactor here; the connection
                    // registers it with its own thread's (connection_threads.rs).
                    match stream.into_std() {
                        Ok(stream) => connection_threads::spawn_connection(connection(
                            shared.clone(),
                            config.clone(),
                            stream,
                            peer,
                            admitted,
                        )),
                        Err(error) => {
                            tracing::debug!(source = %peer.ip(), %error, "cannot set up ssh connection");
                        }
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("SSH gateway shutting down");
    let _ = shutdown_tx.send(true);
    // Let supervisors tell people why before connections are cut.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// One client connection: the russh session, the sign-in grace time, and
/// the shutdown signal.
async fn connection<C: SshControl>(
    shared: Arc<Shared<C>>,
    config: Arc<russh::server::Config>,
    stream: std::net::TcpStream,
    peer: std::net::SocketAddr,
    admitted: Pending,
) {
    let _ = stream.set_nodelay(true);
    // A second descriptor of the socket, to cut a connection that russh
    // would keep waiting on (a stalled handshake ignores a disconnect).
    let (stream, cutter) = match split_off_cutter(stream) {
        Ok(pair) => pair,
        Err(error) => {
            // Out of descriptors: the accept loop logs that, once per
            // interval; a line per connection would flood the log.
            tracing::debug!(source = %peer.ip(), %error, "cannot set up ssh connection");
            return;
        }
    };
    let signed_in = Arc::new(AtomicBool::new(false));
    let mut shutdown = shared.shutdown.clone();
    let deadline = tokio::time::Instant::now() + shared.options.login_grace;
    let gate = shared.options.admission.clone();
    let handler = front::Connection::new(shared, peer.ip(), signed_in.clone(), admitted);
    tracing::debug!(source = %peer.ip(), "ssh connection");
    let session = match tokio::time::timeout_at(
        deadline,
        russh::server::run_stream(config, stream, handler),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(error)) => {
            tracing::debug!(source = %peer.ip(), %error, "ssh handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(source = %peer.ip(), "no SSH handshake within the sign-in grace time");
            let _ = cutter.shutdown(std::net::Shutdown::Both);
            return;
        }
    };
    let handle = session.handle();
    tokio::pin!(session);
    let grace = tokio::time::sleep_until(deadline);
    tokio::pin!(grace);
    let mut grace_over = false;
    let reason = loop {
        tokio::select! {
            result = &mut session => {
                match result {
                    // No cipher (or key exchange, MAC) in common, e.g. under
                    // `[ssh] ciphers`: the client says so to its person; the
                    // operator asked about it finds it in the log and the
                    // audit log, with both offers (the gate's rate limit).
                    Err(front::FrontError::Ssh(error @ russh::Error::NoCommonAlgo { .. })) => {
                        gate.no_common_algorithm(peer.ip(), "ssh", &error.to_string());
                    }
                    Err(error) => {
                        tracing::debug!(source = %peer.ip(), %error, "ssh connection ended with an error");
                    }
                    Ok(()) => {}
                }
                return;
            }
            () = &mut grace, if !grace_over => {
                grace_over = true;
                if !signed_in.load(Ordering::Relaxed) {
                    break "sign-in took too long";
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break "sekisho is shutting down";
                }
            }
        }
    };
    if reason != "sekisho is shutting down" || !signed_in.load(Ordering::Relaxed) {
        tracing::info!(source = %peer.ip(), reason, "closing ssh connection");
    } else {
        // A live session's supervisor tells the person first.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, reason.into(), "en".into())
        .await;
    if tokio::time::timeout(Duration::from_secs(2), &mut session)
        .await
        .is_err()
    {
        let _ = cutter.shutdown(std::net::Shutdown::Both);
        let _ = tokio::time::timeout(Duration::from_secs(5), session).await;
    }
}

/// The connection's socket on this thread's reactor, and a second
/// descriptor of it.
fn split_off_cutter(
    stream: std::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, std::net::TcpStream)> {
    let cutter = stream.try_clone()?;
    Ok((tokio::net::TcpStream::from_std(stream)?, cutter))
}

/// Binds `[ssh] listen` from `sekisho.toml`, loads the host key made by
/// `sekisho init` (`paths.ssh_host_key()`), and serves until `shutdown`.
pub async fn serve_config<C: SshControl>(
    config: &crate::config::Config,
    control: Arc<C>,
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
        control,
        GatewayOptions::from_config(config),
        shutdown,
    )
    .await
}
