//! The RDP gateway: a stock RDP client connects to sekisho, signs in with
//! `person@target` (or `target\person`) and password + one-time code (TLS)
//! or a one-time ticket (NLA), and is relayed to the target with a
//! credential it never sees.
//!
//! # How the two handshakes are bridged
//!
//! Over TLS the target is named in the user name, which arrives only in the
//! Client Info PDU, after the MCS phase. So the gateway cannot splice the
//! client's connection sequence onto the target's; it terminates both and
//! joins them at the capability exchange:
//!
//! 1. **Front** ([`front`]): ironrdp-acceptor runs the X.224 negotiation,
//!    offering TLS and NLA (a client asking for standard RDP security gets an
//!    RDP negotiation failure, SSL_REQUIRED_BY_SERVER). After the TLS
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
//! 2. **Sign-in and policy** through [`control::RdpControl`]. A refusal reaches the
//!    client as "valid client" licensing, a Set Error Info PDU (FreeRDP shows
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
//!    with a `relay::ChannelMap`. Server Redirection and Save Session Info
//!    (auto-reconnect cookies) never reach the client. Every so often the
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
pub mod keystrokes;
mod nla;
pub mod relay;
pub mod render;
pub mod rules;
pub mod services;
pub mod steer;
pub mod video;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use ironrdp_async::Framed;
use ironrdp_core::encode_vec;
use ironrdp_pdu::mcs;
use ironrdp_pdu::rdp::headers::{
    CompressionFlags, ShareControlHeader, ShareControlPdu, ShareDataHeader, ShareDataPdu,
    StreamPriority,
};
use ironrdp_pdu::rdp::server_error_info::{
    ErrorInfo, ProtocolIndependentCode, ServerSetErrorInfoPdu,
};
use ironrdp_pdu::rdp::server_license::{LicensePdu, LicensingErrorMessage};
use ironrdp_pdu::x224::X224;
use ironrdp_tokio::TokioStream;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tracing::{Instrument as _, info, info_span, warn};

use self::control::{
    ChannelKind, FrontSecurity, RdpControl, RdpRecorder as _, SessionStart, SignIn,
};
use self::front::{FRONT_IO_CHANNEL, FRONT_USER_CHANNEL};
use self::relay::{ChannelMap, Relay};
use self::rules::ChannelVerdict;

/// How long a client may take from TCP connect to its Client Info PDU
/// (mstsc's credential prompt comes before the connection, so this is short).
const FRONT_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Little-endian u16 at `at`, `None` past the end (wire parsing without
/// indexing).
pub(crate) fn le_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_le_bytes(pair))
}

/// Little-endian u32 at `at`, `None` past the end.
pub(crate) fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let quad: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(quad))
}

/// Tunables of the gateway (from `sekisho.toml`); the SSH gateway's are
/// `ssh::GatewayOptions`.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// How often the target is asked to redraw the whole desktop, so that
    /// a replayer can seek (a keyframe). Zero turns keyframes off.
    pub keyframe_interval: std::time::Duration,
    /// Offer NLA (CredSSP with a one-time ticket) besides TLS.
    pub offer_nla: bool,
    /// A session without client input for this long is ended
    /// (`[sessions] idle_timeout`); zero turns it off.
    pub idle_timeout: std::time::Duration,
}

impl GatewayOptions {
    /// The options `sekisho serve` runs with: `[sessions] idle_timeout`,
    /// `[rdp] keyframe_interval`, NLA offered (sign-in with a ticket).
    pub fn from_config(config: &crate::config::Config) -> Self {
        GatewayOptions {
            keyframe_interval: config.rdp.keyframe_interval,
            offer_nla: services::NLA_SIGN_IN,
            idle_timeout: config.sessions.idle_timeout,
        }
    }
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            keyframe_interval: std::time::Duration::from_secs(30),
            offer_nla: true,
            idle_timeout: std::time::Duration::ZERO,
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
    #[error("target: {0}")]
    Target(String),
    #[error("target closed the session")]
    TargetClosed,
    #[error("recording failed: {0}")]
    Recording(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
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
    let tls = tls_server_config(&config.paths.tls_cert(), &config.paths.tls_key())?;
    let listener = TcpListener::bind(config.rdp.listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding RDP listener {}: {e}", config.rdp.listen))?;
    serve(listener, tls, control, GatewayOptions::from_config(config)).await?;
    Ok(())
}

/// Accept RDP clients on `listener` until it fails; each connection runs in
/// its own task.
pub async fn serve<C: RdpControl>(
    listener: TcpListener,
    tls: FrontTls,
    control: Arc<C>,
    options: GatewayOptions,
) -> std::io::Result<()> {
    info!(listen = ?listener.local_addr().ok(), "RDP gateway listening");
    loop {
        let (tcp, peer) = listener.accept().await?;
        let tls = tls.clone();
        let control = control.clone();
        let options = options.clone();
        let span = info_span!("rdp", client = %peer);
        tokio::spawn(
            async move {
                match handle(tcp, peer, tls, control, options).await {
                    Ok(()) => info!("connection closed"),
                    Err(e) => warn!(error = %e, "connection ended"),
                }
            }
            .instrument(span),
        );
    }
}

/// One client connection, start to end.
pub async fn handle<C: RdpControl>(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: FrontTls,
    control: Arc<C>,
    options: GatewayOptions,
) -> Result<(), RdpError> {
    let _ = tcp.set_nodelay(true);
    let source = crate::config::canonical_ip(peer.ip());
    // A client that stalls before signing in must not hold a task forever.
    let accept = front::accept(tcp, &tls, options.offer_nla, control.as_ref(), source);
    let mut front = tokio::time::timeout(FRONT_HANDSHAKE_TIMEOUT, accept)
        .await
        .map_err(|_| RdpError::Refused("client handshake timed out".into()))??;

    // NLA: the name and the secret are the ones proved over CredSSP (the
    // Client Info PDU then usually carries no password).
    let (username, domain, secret, security) = match front.nla.take() {
        Some(id) => (id.username, id.domain, id.secret, FrontSecurity::Nla),
        None => {
            let creds = &front.client_info.credentials;
            (
                creds.username.clone(),
                creds.domain.clone(),
                creds.password.clone(),
                FrontSecurity::Tls,
            )
        }
    };
    let Some((user, target)) = front::split_target(&username, domain.as_deref()) else {
        let reason = "user name must name the target as person@target or target\\person";
        refuse_client(
            &mut front.framed,
            ProtocolIndependentCode::ServerDeniedConnection,
        )
        .await;
        return Err(RdpError::Refused(reason.into()));
    };
    let sign_in = SignIn {
        user,
        target: target.clone(),
        secret,
        source,
        security,
    };
    // The bastion secret is not kept beyond this point.
    front.client_info.credentials.password.clear();
    let person = match control.authenticate(&sign_in).await {
        Ok(p) => p,
        Err(refusal) => {
            refuse_client(
                &mut front.framed,
                ProtocolIndependentCode::ServerDeniedConnection,
            )
            .await;
            return Err(RdpError::Refused(refusal.reason));
        }
    };
    drop(sign_in);
    let grant = match control.authorize(&person, &target, source).await {
        Ok(g) => g,
        Err(refusal) => {
            refuse_client(
                &mut front.framed,
                ProtocolIndependentCode::ServerInsufficientPrivileges,
            )
            .await;
            return Err(RdpError::Refused(refusal.reason));
        }
    };
    info!(person = %person.user, target = %grant.target, address = %grant.address, "RDP session authorized");

    let session_id = grant.session_id;
    let forwarded: Vec<_> = front
        .channels
        .iter()
        .filter(|c| c.verdict.is_allowed())
        .collect();
    let start = SessionStart {
        session_id,
        person: person.clone(),
        target: grant.target.clone(),
        source,
        parent_session: grant.parent_session,
        desktop_width: front.gcc.core.desktop_width,
        desktop_height: front.gcc.core.desktop_height,
        keyboard_layout: front.gcc.core.keyboard_layout,
        keyboard_type: keyboard_type_code(front.gcc.core.keyboard_type),
        keyboard_subtype: front.gcc.core.keyboard_subtype,
        io_channel: FRONT_IO_CHANNEL,
        user_channel: FRONT_USER_CHANNEL,
        channels: forwarded
            .iter()
            .map(|c| (c.name.clone(), c.front_id))
            .collect(),
    };
    let recorder = match control.open_recording(&start).await {
        Ok(r) => r,
        Err(refusal) => {
            refuse_client(
                &mut front.framed,
                ProtocolIndependentCode::ServerDeniedConnection,
            )
            .await;
            return Err(RdpError::Recording(refusal.reason));
        }
    };
    let recorder = Arc::new(Mutex::new(recorder));
    for refused in front.channels.iter().filter(|c| !c.verdict.is_allowed()) {
        let ChannelVerdict::Refused { reason } = &refused.verdict else {
            continue;
        };
        info!(channel = %refused.name, reason, "static channel refused");
        control
            .channel_refused(session_id, ChannelKind::Static, &refused.name, reason)
            .await;
        let event = control::RdpEvent::ChannelRefused {
            name: refused.name.clone(),
            reason: (*reason).to_owned(),
        };
        if let Err(r) = recorder.lock().await.record(event).await {
            refuse_client(
                &mut front.framed,
                ProtocolIndependentCode::ServerDeniedConnection,
            )
            .await;
            return Err(RdpError::Recording(r.reason));
        }
    }

    let result = run_session(
        &control,
        session_id,
        &start,
        front,
        &grant,
        recorder.clone(),
        &options,
    )
    .await;
    let reason = match &result {
        Ok(()) => "closed".to_owned(),
        Err(e) => e.to_string(),
    };
    // Recording is sealed whatever happened.
    match Arc::try_unwrap(recorder).map(Mutex::into_inner) {
        Ok(recorder) => {
            if let Err(r) = recorder.finish().await {
                warn!(reason = %r.reason, "sealing the recording failed");
            }
        }
        // The relay tasks hold no clone once run_session returned.
        Err(_) => warn!("recording still shared at close; not sealed"),
    }
    control.session_closed(session_id, &reason).await;
    result
}

async fn run_session<C: RdpControl>(
    control: &Arc<C>,
    session_id: uuid::Uuid,
    start: &SessionStart,
    mut front: front::FrontSession,
    grant: &control::TargetGrant,
    recorder: Arc<Mutex<C::Recorder>>,
    options: &GatewayOptions,
) -> Result<(), RdpError> {
    let forwarded: Vec<front::FrontChannel> = front
        .channels
        .iter()
        .filter(|c| c.verdict.is_allowed())
        .cloned()
        .collect();
    let back = match back::connect(back::BackRequest {
        grant,
        client_gcc: &front.gcc,
        channels: forwarded.iter().map(|c| c.def.clone()).collect(),
        client_info: &front.client_info,
    })
    .await
    {
        Ok(b) => b,
        Err(e) => {
            refuse_client(
                &mut front.framed,
                ProtocolIndependentCode::ServerDeniedConnection,
            )
            .await;
            return Err(e);
        }
    };

    let mut map = ChannelMap::new(
        FRONT_USER_CHANNEL,
        back.user_channel,
        FRONT_IO_CHANNEL,
        back.io_channel,
    );
    for (channel, back_id) in forwarded.iter().zip(back.channel_ids.iter()) {
        map.link_named(&channel.name, channel.front_id, *back_id);
    }
    for channel in front.channels.iter().filter(|c| !c.verdict.is_allowed()) {
        map.refuse(channel.front_id, &channel.name);
    }

    // Licensing towards the client: the gateway says "valid client".
    let license: LicensePdu = LicensingErrorMessage::new_valid_client()
        .map_err(|e| RdpError::protocol("encoding license PDU", e))?
        .into();
    send_indication(&mut front.framed, &license).await?;

    let mut kill = control.register_live(start).await;
    let relay = Arc::new(Relay {
        control: control.clone(),
        session_id,
        map,
        recorder,
        share: std::sync::Mutex::new(relay::ShareState::new(
            start.desktop_width,
            start.desktop_height,
        )),
        dvc_gate: std::sync::Mutex::new(relay::DvcGate::default()),
        last_input: std::sync::Mutex::new(tokio::time::Instant::now()),
    });

    let (front_stream, front_left) = front.framed.into_inner();
    let (back_stream, back_left) = back.framed.into_inner();
    let (front_read, front_write) = tokio::io::split(front_stream);
    let (back_read, back_write) = tokio::io::split(back_stream);
    let front_reader = Framed::<TokioStream<_>>::new_with_leftover(front_read, front_left);
    let back_reader = Framed::<TokioStream<_>>::new_with_leftover(back_read, back_left);
    let front_write = Arc::new(Mutex::new(front_write));
    let back_write = Arc::new(Mutex::new(back_write));

    let first_action = ironrdp_pdu::find_size(&back.first_pdu)
        .ok()
        .flatten()
        .map(|info| info.action)
        .unwrap_or(ironrdp_pdu::Action::X224);
    relay
        .forward_from_target(
            first_action,
            back.first_pdu.freeze(),
            &front_write,
            &back_write,
        )
        .await?;

    let up = relay.client_to_target(front_reader, back_write.clone());
    let down = relay.target_to_client(back_reader, front_write.clone(), back_write.clone());
    let keyframes = async {
        if options.keyframe_interval.is_zero() {
            return std::future::pending().await;
        }
        let mut tick = tokio::time::interval(options.keyframe_interval);
        tick.tick().await; // the first tick is immediate; the session has just drawn itself
        loop {
            tick.tick().await;
            relay.request_keyframe(&back_write).await?;
        }
    };
    let idle = async {
        if options.idle_timeout.is_zero() {
            return std::future::pending().await;
        }
        loop {
            let last = *relay.last_input.lock().unwrap_or_else(|p| p.into_inner());
            let deadline = last + options.idle_timeout;
            if tokio::time::Instant::now() >= deadline {
                return options.idle_timeout;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    let result = tokio::select! {
        r = up => r,
        r = down => r,
        r = keyframes => r,
        limit = idle => {
            info!(?limit, "session idle");
            if let Ok(bytes) = refusal_pdus(ProtocolIndependentCode::IdleTimeout, true) {
                let _ = front_write.lock().await.write_all(&bytes).await;
            }
            Err(RdpError::Refused(format!("idle for {limit:?}")))
        }
        reason = kill.killed() => {
            info!(%reason, "session killed");
            if let Ok(bytes) = refusal_pdus(ProtocolIndependentCode::RpcInitiatedDisconnect, true) {
                let _ = front_write.lock().await.write_all(&bytes).await;
            }
            Err(RdpError::Refused(format!("killed: {reason}")))
        }
    };
    // Close both sides; errors here change nothing.
    let _ = front_write.lock().await.shutdown().await;
    let _ = back_write.lock().await.shutdown().await;
    match result {
        Err(RdpError::TargetClosed) => Ok(()),
        other => other,
    }
}

fn keyboard_type_code(t: ironrdp_pdu::gcc::KeyboardType) -> u32 {
    t.0
}

fn indication_bytes<T: ironrdp_core::Encode>(pdu: &T) -> Result<Vec<u8>, RdpError> {
    let user_data = encode_vec(pdu).map_err(|e| RdpError::protocol("encoding PDU to client", e))?;
    let ind = mcs::SendDataIndication {
        initiator_id: FRONT_USER_CHANNEL,
        channel_id: FRONT_IO_CHANNEL,
        user_data: Cow::Owned(user_data),
    };
    encode_vec(&X224(ind)).map_err(|e| RdpError::protocol("encoding PDU to client", e))
}

async fn send_indication<T: ironrdp_core::Encode>(
    framed: &mut front::FrontFramed,
    pdu: &T,
) -> Result<(), RdpError> {
    use ironrdp_async::FramedWrite as _;
    let bytes = indication_bytes(pdu)?;
    framed
        .write_all(&bytes)
        .await
        .map_err(|e| RdpError::io("writing to client", e))
}

/// What the client is told when it is turned away or its session ends:
/// "valid client" licensing when the client still waits for it (every
/// refusal comes after its Client Info PDU), then Set Error Info with a
/// code clients show, then an MCS disconnect. FreeRDP reports the code and
/// does not retry.
fn refusal_pdus(code: ProtocolIndependentCode, licensed: bool) -> Result<Vec<u8>, RdpError> {
    let mut out = Vec::new();
    if !licensed {
        let license: LicensePdu = LicensingErrorMessage::new_valid_client()
            .map_err(|e| RdpError::protocol("encoding license PDU", e))?
            .into();
        out.extend(indication_bytes(&license)?);
    }
    let info = ShareControlHeader {
        share_id: 0,
        pdu_source: FRONT_USER_CHANNEL,
        share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
            share_data_pdu: ShareDataPdu::ServerSetErrorInfo(ServerSetErrorInfoPdu(
                ErrorInfo::ProtocolIndependentCode(code),
            )),
            stream_priority: StreamPriority::Undefined,
            compression_flags: CompressionFlags::empty(),
            compression_type: ironrdp_pdu::rdp::client_info::CompressionType::K8,
        }),
    };
    out.extend(indication_bytes(&info)?);
    let ultimatum =
        mcs::DisconnectProviderUltimatum::from_reason(mcs::DisconnectReason::ProviderInitiated);
    out.extend(
        encode_vec(&X224(ultimatum)).map_err(|e| RdpError::protocol("encoding disconnect", e))?,
    );
    Ok(out)
}

/// Tell a client that has not been licensed yet that it is refused. Best
/// effort: the connection is closing anyway.
async fn refuse_client(framed: &mut front::FrontFramed, code: ProtocolIndependentCode) {
    use ironrdp_async::FramedWrite as _;
    match refusal_pdus(code, false) {
        Ok(bytes) => {
            if let Err(e) = framed.write_all(&bytes).await {
                warn!(error = %e, "could not send the refusal to the client");
            }
        }
        Err(e) => warn!(error = %e, "could not encode the refusal"),
    }
}
