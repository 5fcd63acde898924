//! The RDP gateway: a stock RDP client connects to sekisho, signs in with
//! `person@target` (or `target\person`) and password + one-time code (TLS)
//! or a one-time ticket (NLA), and is relayed to the target with a
//! credential it never sees.
//!
//! The session's steps from sign-in to close are in `session.rs` (the SSH
//! twin is `ssh::session`); entry points [`serve`] and [`serve_config`],
//! tunables [`GatewayOptions`], the control trait `control::RdpControl`.
//!
//! # How the two handshakes are bridged
//!
//! Over TLS the target is named in the user name, which arrives only in the
//! Client Info PDU, after the MCS phase. So the gateway cannot splice the
//! client's connection sequence onto the target's; it terminates both and
//! joins them at the capability exchange:
//!
//! 1. **Front** ([`front`]): ironrdp-acceptor runs the X.224 negotiation,
//!    offering TLS, and NLA when `[rdp] nla` says (by default only to a
//!    client whose routing cookie names someone with a live ticket); a
//!    client asking for standard RDP security gets an RDP negotiation
//!    failure, SSL_REQUIRED_BY_SERVER. After the TLS
//!    upgrade, an NLA client runs CredSSP with the gateway as server
//!    (`nla.rs`): the NTLM AUTHENTICATE message names the user, the core
//!    supplies that person's one-time ticket, sspi verifies the proof. The
//!    gateway then answers the MCS Connect Initial itself: I/O channel 1003,
//!    static channels 1004.. in the client's order (refused ones included,
//!    so the client's view stays well formed), user channel 1002 (below the
//!    static range, so ids never collide), no message channel, no
//!    multitransport. The acceptor's channel connection sequence handles
//!    erect-domain, attach-user and joins; then the Client Info PDU yields
//!    the user name and secret (TLS) or just the client's settings (NLA).
//! 2. **Sign-in and policy** through [`control::RdpControl`]. A client
//!    without usable credentials gets sekisho's drawn sign-in screen
//!    ([`screen`]): the gateway activates it in a share of its own, paints
//!    bitmap updates and reads the keyboard; the target's share later
//!    replaces it after a Deactivate All. A client answering sekisho's
//!    auto-reconnect cookie ([`reconnect`]) resumes without a sign-in. A
//!    refusal is drawn on the screen for a few seconds, then reaches the
//!    client as a Set Error Info PDU (FreeRDP shows
//!    ERRINFO_SERVER_DENIED_CONNECTION / _INSUFFICIENT_PRIVILEGES) and an MCS
//!    disconnect, so the client reports it and does not retry.
//! 3. **Back** ([`back`]): X.224 (TLS or NLA) and TLS to the target, whose
//!    leaf certificate must hash to the pin in the grant; CredSSP with the
//!    injected credential through ironrdp-connector when the target wants
//!    NLA. The MCS Connect Initial carries the *client's* GCC blocks
//!    (desktop size, colour depth, keyboard layout) with refused static
//!    channels removed; cluster (redirection), message-channel and
//!    multitransport blocks removed; skip-channel-join, graphics-pipeline and
//!    network-autodetect flags cleared. The connector's channel connection
//!    sequence joins every channel; the Client Info PDU is the client's, with
//!    the injected account and password, without auto-reconnect cookie and
//!    without bulk compression. Licensing runs with the connector's license
//!    exchange; the target's next PDU (Demand Active) is the first relayed.
//! 4. **Relay** ([`relay`]): the client receives "valid client" from the
//!    gateway, then everything from Demand Active on is the target's own:
//!    capability sets and the share id go through, so client and target
//!    agree on them without the gateway rewriting share control headers.
//!    The one exception is the client's Confirm Active, steered
//!    ([`steer`]) to announce no drawing orders, bitmap codecs or surface
//!    commands, so every update the target sends is a bitmap the recorder
//!    can decode. Fast-path PDUs carry no channel ids and pass unchanged.
//!    Slow-path MCS Send Data PDUs get channel id and initiator rewritten
//!    with a `relay::ChannelMap`. Server Redirection and the target's Save
//!    Session Info (its auto-reconnect cookies) never reach the client;
//!    after the target's Font Map the gateway sends its own cookie. Every so often the
//!    gateway sends the target a Refresh Rect for the whole desktop and
//!    records a keyframe marker before the redraw.
//!
//! # Channel ids when channels are filtered
//!
//! Client static channel *i* has front id `1004 + i`. Only allowed channels
//! are requested from the target, which numbers them its own way (usually
//! 1004.. over the shorter list). The map links front and back ids of the
//! I/O channel, the user channel and each forwarded static channel; a front
//! id of a refused channel has no back id, and anything the client sends on
//! it is dropped. Data from the target on an id not in the map is dropped.
//! Inside `drdynvc`, DVC Create Requests for channels not on the dynamic
//! allow-list are answered with a failed Create Response by the gateway and
//! never reach the client, and a `relay::DvcGate` lets through only PDUs
//! of channels that were let open (both directions).

pub mod back;
pub mod control;
pub mod front;
pub(crate) mod nla;
pub mod reconnect;
pub mod relay;
pub mod rules;
pub mod screen;
pub mod services;
mod session;
pub mod steer;

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tracing::{Instrument as _, info, info_span, warn};

use self::control::RdpControl;
use crate::admission::{Acceptor, AdmissionLimits, Gate};

pub(crate) use crate::protocol::rdp::le_u16;

/// Tunables of the gateway (from `sekisho.toml`); the SSH gateway's are
/// `ssh::GatewayOptions`.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// How often the target is asked to redraw the whole desktop, so that
    /// a replayer can seek (a keyframe). Zero turns keyframes off.
    pub keyframe_interval: std::time::Duration,
    /// When NLA (CredSSP with a one-time ticket) is offered besides TLS.
    pub nla: crate::config::NlaOffer,
    /// How long after a dropped connection sekisho's auto-reconnect cookie
    /// resumes the session; zero issues no cookies.
    pub reconnect_grace: std::time::Duration,
    /// The font of sekisho's own screens; without one, a refusal is the
    /// error code only.
    pub screen_font: Option<Arc<screen::ScreenFont>>,
    /// How long a refusal screen shows before the disconnect; zero: none.
    pub refusal_screen: std::time::Duration,
    /// A session without client input for this long is ended
    /// (`[sessions] idle_timeout`); zero turns it off.
    pub idle_timeout: std::time::Duration,
    /// How long a client may take from connecting to its sign-in
    /// (`[rdp] login_grace`; mstsc asks for the password before it
    /// connects, so this is short).
    pub login_grace: std::time::Duration,
    /// The pre-authentication limits, shared with the SSH listener.
    pub admission: Gate,
}

impl GatewayOptions {
    /// The options `sekisho serve` runs with: `[sessions] idle_timeout`,
    /// `[rdp] keyframe_interval`, `nla`, `reconnect_grace`.
    pub fn from_config(config: &crate::config::Config) -> Self {
        GatewayOptions {
            keyframe_interval: config.rdp.keyframe_interval,
            nla: config.rdp.nla,
            reconnect_grace: config.rdp.reconnect_grace,
            screen_font: if config.rdp.refusal_screen.is_zero() {
                None
            } else {
                match screen::ScreenFont::load(&config.rdp.screen_font) {
                    Ok(f) => Some(Arc::new(f)),
                    Err(e) => {
                        warn!(error = %e, "no screen font: refusals show the error code only");
                        None
                    }
                }
            },
            refusal_screen: config.rdp.refusal_screen,
            idle_timeout: config.sessions.idle_timeout,
            login_grace: config.rdp.login_grace,
            admission: Gate::logging_only(config.admission.clone()),
        }
    }
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            keyframe_interval: std::time::Duration::from_secs(30),
            nla: crate::config::NlaOffer::Tickets,
            reconnect_grace: std::time::Duration::from_secs(120),
            screen_font: None,
            refusal_screen: std::time::Duration::ZERO,
            idle_timeout: std::time::Duration::ZERO,
            login_grace: std::time::Duration::from_secs(30),
            admission: Gate::logging_only(AdmissionLimits::default()),
        }
    }
}

/// Why an RDP connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum RdpError {
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
    #[error("malformed or unexpected {context}: {message}")]
    Protocol {
        context: &'static str,
        message: String,
    },
    #[error("refused: {0}")]
    Refused(String),
    /// The client offered no security protocol sekisho accepts (standard
    /// RDP security only): audited through the admission gate.
    #[error("refused: {0}")]
    NoCommonSecurity(String),
    #[error("target: {0}")]
    Target(String),
    #[error("target closed the session")]
    TargetClosed,
    /// The target's connection died without the target ending the session.
    #[error("the connection to the target was lost ({0})")]
    TargetLost(String),
    /// The client's connection failed (not a close) under a live session.
    #[error("the connection to the client was lost ({0})")]
    ClientLost(String),
    #[error("recording failed: {0}")]
    Recording(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// Connecting to the target failed in one of its phases.
    #[error(transparent)]
    Back(#[from] back::BackError),
}

impl RdpError {
    pub(crate) fn io(context: &'static str, source: std::io::Error) -> Self {
        Self::Io { context, source }
    }
    pub(crate) fn protocol(context: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Protocol {
            context,
            message: e.to_string(),
        }
    }
}

/// The front TLS configuration and the public key CredSSP binds to.
#[derive(Clone)]
pub struct FrontTls {
    pub config: Arc<rustls::ServerConfig>,
    /// subjectPublicKey of the certificate (MS-CSSP public key binding).
    pub public_key: Vec<u8>,
}

/// The front TLS configuration from the certificate and key `init` made.
pub fn tls_server_config(cert: &Path, key: &Path) -> Result<FrontTls, RdpError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| RdpError::Tls(format!("{}: {e}", cert.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RdpError::Tls(format!("{}: {e}", cert.display())))?;
    let public_key = certs
        .first()
        .and_then(|c| back::subject_public_key(c.as_ref()))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| RdpError::Tls(format!("{}: no readable certificate", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| RdpError::Tls(format!("{}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| RdpError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| RdpError::Tls(e.to_string()))?;
    Ok(FrontTls {
        config: Arc::new(config),
        public_key,
    })
}

/// Bind the listener from `sekisho.toml` (`[rdp] listen`) with the TLS
/// certificate `init` made, and serve until the listener fails.
pub async fn serve_config<C: RdpControl>(
    config: &crate::config::Config,
    control: Arc<C>,
) -> anyhow::Result<()> {
    let tls = tls_server_config(&config.rdp.cert, &config.rdp.key)?;
    let listener = TcpListener::bind(config.rdp.listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding RDP listener {}: {e}", config.rdp.listen))?;
    serve(listener, tls, control, GatewayOptions::from_config(config)).await?;
    Ok(())
}

/// Accept RDP clients on `listener` for ever; each connection runs in its
/// own task. Failing accepts (out of descriptors) are waited out.
pub async fn serve<C: RdpControl>(
    listener: TcpListener,
    tls: FrontTls,
    control: Arc<C>,
    options: GatewayOptions,
) -> std::io::Result<()> {
    let mut acceptor = Acceptor::new(listener, "rdp");
    match acceptor.local_addr() {
        Ok(addr) => info!(listen = %addr, "RDP gateway listening"),
        Err(e) => info!(error = %e, "RDP gateway listening (address unknown)"),
    }
    loop {
        let (tcp, peer) = acceptor.accept().await;
        // Over a pre-authentication limit: closed at once, before TLS (the
        // gate logs and audits it).
        let Ok(admitted) = options.admission.connect(peer.ip(), "rdp") else {
            continue;
        };
        let tls = tls.clone();
        let control = control.clone();
        let options = options.clone();
        let gate = options.admission.clone();
        let span = info_span!("rdp", client = %peer);
        tokio::spawn(
            async move {
                match session::run(tcp, peer, tls, control, options, admitted).await {
                    Ok(()) => info!("connection closed"),
                    // Logged and audited by the gate, once a minute per
                    // address (a scanner's every probe would flood both).
                    Err(RdpError::NoCommonSecurity(detail)) => {
                        gate.no_common_algorithm(peer.ip(), "rdp", &detail);
                    }
                    Err(e) => warn!(error = %e, "connection ended"),
                }
            }
            .instrument(span),
        );
    }
}
