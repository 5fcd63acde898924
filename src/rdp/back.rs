//! Target-facing handshake: X.224 negotiation, TLS with the pinned
//! certificate, the MCS phase as a client (ironrdp-connector's channel
//! connection sequence) with the client's GCC blocks minus refused
//! channels, the Client Info PDU with the injected credential, and the
//! licensing exchange, up to the first PDU of the capability exchange.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use ironrdp_async::{Framed, FramedWrite as _, single_sequence_step};
use ironrdp_connector::{
    ChannelConnectionSequence, ChannelConnectionState, LicenseCache, LicenseExchangeSequence,
    LicenseExchangeState, Sequence as _,
};
use ironrdp_core::{WriteBuf, decode, encode_vec};
use ironrdp_pdu::gcc::{self, ClientGccBlocks};
use ironrdp_pdu::nego::{self, SecurityProtocol};
use ironrdp_pdu::rdp::server_license::LicenseInformation;
use ironrdp_pdu::rdp::{self, client_info::ClientInfo, headers::BasicSecurityHeaderFlags};
use ironrdp_pdu::x224::{X224, X224Data};
use ironrdp_pdu::{X224_HINT, mcs};
use ironrdp_tokio::TokioStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tracing::{debug, info};

use super::control::TargetGrant;

pub(crate) type BackFramed = Framed<TokioStream<TlsStream<TargetTcp>>>;

/// The target's TCP stream, read through a buffer: rustls reads the socket
/// at most 4 KiB at a time, and a target sends bitmaps at megabytes a
/// second — one `read` per 64 KiB instead of per 4 KiB.
pub(crate) type TargetTcp = tokio::io::BufReader<TcpStream>;
const TARGET_READ_BUFFER: usize = 64 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts exactly one certificate: the one whose DER hashes to the pin.
/// Chains, names and validity dates are irrelevant for a pinned target
/// (RDP servers mostly use self-signed certificates).
#[derive(Debug)]
pub struct PinnedCertVerifier {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// Set when a presented certificate did not match the pin, so the
    /// caller can tell a pin mismatch from other TLS failures.
    mismatch: std::sync::atomic::AtomicBool,
}

impl PinnedCertVerifier {
    pub fn new(pin: [u8; 32]) -> Self {
        Self {
            pin,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            mismatch: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether a certificate was refused for not matching the pin.
    pub fn mismatched(&self) -> bool {
        self.mismatch.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// SHA-256 of a certificate's DER: the form of a pin in policy.
pub fn cert_sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = cert_sha256(end_entity.as_ref());
        // Not secret, so a plain comparison is fine.
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            self.mismatch
                .store(true, std::sync::atomic::Ordering::Relaxed);
            Err(rustls::Error::General(format!(
                "target certificate sha256 {} does not match the pinned {}",
                hex::encode(got),
                hex::encode(self.pin)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Accepts any certificate, so that [`read_certificate`] can show it to an
/// operator for pinning. Never used for a session.
#[derive(Debug)]
struct AnyCertificate(PinnedCertVerifier);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The TLS certificate (DER) an RDP target presents, read the way a session
/// connects (the same TCP, X.224 and TLS steps), for an operator to check
/// and pin with [`cert_sha256`]. Nothing is signed in.
pub async fn read_certificate(address: std::net::SocketAddr) -> Result<Vec<u8>, BackError> {
    let tcp = open_tcp(address).await?;
    let (tcp, _) = negotiate_security(tcp, None).await?;
    let verifier = Arc::new(AnyCertificate(PinnedCertVerifier::new([0; 32])));
    let tls = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_rustls::TlsConnector::from(Arc::new(tls_client_config(verifier)?))
            .connect(ServerName::IpAddress(address.ip().into()), tcp),
    )
    .await
    .map_err(|_| {
        BackError::target(
            BackPhase::Tls,
            BackFailure::Timeout,
            format!("TLS to {address} timed out"),
        )
    })?
    .map_err(|e| {
        BackError::target(
            BackPhase::Tls,
            BackFailure::Handshake,
            format!("TLS to {address}: {e}"),
        )
    })?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| {
            BackError::target(
                BackPhase::Tls,
                BackFailure::Malformed,
                format!("{address} sent no certificate"),
            )
        })
}

/// The target side once the capability exchange is about to start.
pub(crate) struct BackSession {
    pub framed: BackFramed,
    pub io_channel: u16,
    pub user_channel: u16,
    /// Ids the target gave to the forwarded static channels, in order.
    pub channel_ids: Vec<u16>,
    /// The first PDU after licensing (normally Demand Active), to forward.
    pub first_pdu: bytes::BytesMut,
}

/// What the back side needs from the front.
pub(crate) struct BackRequest<'a> {
    pub grant: &'a TargetGrant,
    pub client_gcc: &'a ClientGccBlocks,
    /// The static channels to request, already filtered.
    pub channels: Vec<gcc::ChannelDef>,
    pub client_info: &'a ClientInfo,
}

/// The phases of connecting to an RDP target, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackPhase {
    /// TCP connect.
    Tcp,
    /// X.224 connection request and confirm (security protocol).
    Negotiation,
    /// TLS, with the leaf certificate checked against the pin.
    Tls,
    /// CredSSP (NLA) with the injected credential.
    CredSsp,
    /// MCS Connect Initial / Response (GCC blocks, channel ids).
    Mcs,
    /// Erect domain, attach user, channel joins.
    ChannelJoin,
    /// The Client Info PDU with the injected account.
    ClientInfo,
    /// The licensing exchange, up to the first PDU relayed.
    Licensing,
}

/// What went wrong in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackFailure {
    /// The phase did not finish in time.
    Timeout,
    /// The target's address could not be reached.
    Unreachable,
    /// Reading from or writing to the target failed.
    Io,
    /// The target sent something malformed or unexpected.
    Malformed,
    /// The target refused what sekisho asked for.
    Refused,
    /// The target's certificate does not match the pin in policy.
    CertificatePin,
    /// The TLS handshake failed for another reason.
    Handshake,
    /// CredSSP failed (the injected credential, or NTLM itself).
    Credential,
    /// sekisho's own set-up for the phase failed.
    Setup,
}

impl BackPhase {
    /// The name in logs and in the audit log's `failure.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackPhase::Tcp => "tcp",
            BackPhase::Negotiation => "negotiation",
            BackPhase::Tls => "tls",
            BackPhase::CredSsp => "credssp",
            BackPhase::Mcs => "mcs",
            BackPhase::ChannelJoin => "channel_join",
            BackPhase::ClientInfo => "client_info",
            BackPhase::Licensing => "licensing",
        }
    }
}

impl BackFailure {
    /// The name in logs and in the audit log's `failure.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackFailure::Timeout => "timeout",
            BackFailure::Unreachable => "unreachable",
            BackFailure::Io => "io",
            BackFailure::Malformed => "malformed",
            BackFailure::Refused => "refused",
            BackFailure::CertificatePin => "certificate_pin",
            BackFailure::Handshake => "handshake",
            BackFailure::Credential => "credential",
            BackFailure::Setup => "setup",
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

/// Why the target could not be used: the phase and the kind, for callers to
/// match, and the text for the audit log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BackError {
    pub phase: BackPhase,
    pub kind: BackFailure,
    message: String,
}

impl BackError {
    /// The phase and the kind together.
    pub fn failure(&self) -> ConnectFailure {
        ConnectFailure {
            phase: self.phase,
            kind: self.kind,
        }
    }

    fn new(phase: BackPhase, kind: BackFailure, message: String) -> Self {
        BackError {
            phase,
            kind,
            message,
        }
    }

    fn target(phase: BackPhase, kind: BackFailure, message: impl std::fmt::Display) -> Self {
        Self::new(phase, kind, format!("target: {message}"))
    }

    fn io(phase: BackPhase, context: &str, e: std::io::Error) -> Self {
        Self::new(phase, BackFailure::Io, format!("{context}: {e}"))
    }

    fn malformed(phase: BackPhase, context: &str, e: impl std::fmt::Display) -> Self {
        Self::new(
            phase,
            BackFailure::Malformed,
            format!("malformed or unexpected {context}: {e}"),
        )
    }
}

/// TCP to the target, within [`CONNECT_TIMEOUT`].
async fn open_tcp(address: std::net::SocketAddr) -> Result<TcpStream, BackError> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| {
            BackError::target(
                BackPhase::Tcp,
                BackFailure::Timeout,
                format!("connecting to {address} timed out"),
            )
        })?
        .map_err(|e| {
            BackError::target(
                BackPhase::Tcp,
                BackFailure::Unreachable,
                format!("connecting to {address}: {e}"),
            )
        })?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// X.224: TLS, or TLS + CredSSP (NLA) when the target insists on it.
/// HYBRID_EX is not offered: its Early User Authorization Result PDU
/// would be one more message to relay for no gain.
async fn negotiate_security(
    tcp: TcpStream,
    nego_data: Option<nego::NegoRequestData>,
) -> Result<(TcpStream, SecurityProtocol), BackError> {
    let mut framed = Framed::<TokioStream<TcpStream>>::new(tcp);
    let request = nego::ConnectionRequest {
        nego_data,
        flags: nego::RequestFlags::empty(),
        protocol: SecurityProtocol::SSL | SecurityProtocol::HYBRID,
        correlation_info: None,
    };
    let request_pdu = encode_vec(&X224(request))
        .map_err(|e| BackError::malformed(BackPhase::Negotiation, "X.224 request", e))?;
    framed
        .write_all(&request_pdu)
        .await
        .map_err(|e| BackError::io(BackPhase::Negotiation, "writing X.224 request to target", e))?;
    let confirm_pdu = framed.read_by_hint(&X224_HINT).await.map_err(|e| {
        BackError::io(
            BackPhase::Negotiation,
            "reading X.224 confirm from target",
            e,
        )
    })?;
    let confirm = decode::<X224<nego::ConnectionConfirm>>(&confirm_pdu)
        .map_err(|e| BackError::malformed(BackPhase::Negotiation, "X.224 confirm from target", e))?
        .0;
    let selected = match confirm {
        nego::ConnectionConfirm::Response { protocol, .. }
            if protocol == SecurityProtocol::SSL || protocol == SecurityProtocol::HYBRID =>
        {
            protocol
        }
        nego::ConnectionConfirm::Response { protocol, .. } => {
            return Err(BackError::target(
                BackPhase::Negotiation,
                BackFailure::Refused,
                format!("target selected unsupported security {protocol:?}"),
            ));
        }
        nego::ConnectionConfirm::Failure { code } => {
            return Err(BackError::target(
                BackPhase::Negotiation,
                BackFailure::Refused,
                format!("target refused negotiation: {code:?}"),
            ));
        }
    };
    Ok((framed.into_inner_no_leftover(), selected))
}

/// The TLS client configuration towards targets, with `verifier` deciding
/// which certificate is accepted.
fn tls_client_config(
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<rustls::ClientConfig, BackError> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| {
        BackError::new(
            BackPhase::Tls,
            BackFailure::Setup,
            format!("TLS configuration: {e}"),
        )
    })?
    .dangerous()
    .with_custom_certificate_verifier(verifier)
    .with_no_client_auth())
}

/// Connects to the target in the phases of [`BackPhase`], one function
/// each, in order; each failure names its phase.
pub(crate) async fn connect(req: BackRequest<'_>) -> Result<BackSession, BackError> {
    let grant = req.grant;
    let tcp = open_tcp(grant.address).await?;
    let (tcp, selected) = negotiate_security(
        tcp,
        Some(nego::NegoRequestData::cookie(grant.account.clone())),
    )
    .await?;
    info!(security = ?selected, "target security selected");
    let (mut framed, server_public_key) = open_pinned_tls(tcp, grant).await?;
    if selected == SecurityProtocol::HYBRID {
        sign_in_credssp(&mut framed, grant, selected, server_public_key).await?;
    }
    let (io_channel, channel_ids) = connect_mcs(&mut framed, &req, selected).await?;
    let user_channel = join_channels(&mut framed, io_channel, &channel_ids).await?;
    send_client_info(&mut framed, &req, io_channel, user_channel).await?;
    let first_pdu = license(&mut framed, grant, io_channel).await?;
    Ok(BackSession {
        framed,
        io_channel,
        user_channel,
        channel_ids,
        first_pdu,
    })
}

/// TLS with the leaf certificate checked against the pin; the framed
/// stream and the certificate's public key (what CredSSP binds to).
async fn open_pinned_tls(
    tcp: TcpStream,
    grant: &TargetGrant,
) -> Result<(BackFramed, Vec<u8>), BackError> {
    let verifier = Arc::new(PinnedCertVerifier::new(grant.cert_sha256));
    let tls_config = tls_client_config(verifier.clone())?;
    let server_name = ServerName::IpAddress(grant.address.ip().into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config))
        .connect(
            server_name,
            TargetTcp::with_capacity(TARGET_READ_BUFFER, tcp),
        )
        .await
        .map_err(|e| {
            // The pin check is ours: a mismatch is its own kind.
            let kind = if verifier.mismatched() {
                BackFailure::CertificatePin
            } else {
                BackFailure::Handshake
            };
            BackError::target(BackPhase::Tls, kind, format!("TLS to target: {e}"))
        })?;
    let server_public_key = {
        let (_, conn) = tls.get_ref();
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or_else(|| {
                BackError::target(
                    BackPhase::Tls,
                    BackFailure::Malformed,
                    "target sent no certificate",
                )
            })?;
        subject_public_key(leaf.as_ref())
            .ok_or_else(|| {
                BackError::target(
                    BackPhase::Tls,
                    BackFailure::Malformed,
                    "target certificate has no readable public key",
                )
            })?
            .to_vec()
    };
    Ok((BackFramed::new(tls), server_public_key))
}

/// CredSSP (NLA) with the injected credential (NTLM; no Kerberos).
async fn sign_in_credssp(
    framed: &mut BackFramed,
    grant: &TargetGrant,
    selected: SecurityProtocol,
    server_public_key: Vec<u8>,
) -> Result<(), BackError> {
    let credentials = ironrdp_connector::Credentials::UsernamePassword {
        username: grant.account.clone(),
        password: grant.password.clone(),
    };
    let (sequence, ts_request) = ironrdp_connector::credssp::CredsspSequence::init(
        credentials,
        grant.domain.as_deref(),
        selected,
        ironrdp_connector::ServerName::new(grant.address.ip().to_string()),
        server_public_key,
        None,
    )
    .map_err(|e| {
        BackError::target(
            BackPhase::CredSsp,
            BackFailure::Credential,
            format!("CredSSP: {e}"),
        )
    })?;
    let mut buf = WriteBuf::new();
    ironrdp_async::perform_credssp(framed, &mut NoNetwork, &mut buf, sequence, ts_request)
        .await
        .map_err(|e| {
            BackError::target(
                BackPhase::CredSsp,
                BackFailure::Credential,
                format!("CredSSP: {e}"),
            )
        })?;
    info!("target CredSSP done");
    Ok(())
}

/// MCS Connect Initial / Response: the I/O channel id and the ids of the
/// forwarded static channels, in the order requested.
async fn connect_mcs(
    framed: &mut BackFramed,
    req: &BackRequest<'_>,
    selected: SecurityProtocol,
) -> Result<(u16, Vec<u16>), BackError> {
    // MCS Connect Initial: the client's own blocks, so the target sees the
    // client's desktop size, colour depth and keyboard, with the refused
    // channels removed and everything we cannot relay switched off.
    let mut blocks = req.client_gcc.clone();
    blocks.core.optional_data.server_selected_protocol = Some(selected);
    if let Some(flags) = blocks.core.optional_data.early_capability_flags.as_mut() {
        // Join every channel explicitly (the relay keeps the id maps), and
        // no graphics pipeline until the recorder decodes it.
        flags.remove(gcc::ClientEarlyCapabilityFlags::SUPPORT_SKIP_CHANNELJOIN);
        flags.remove(gcc::ClientEarlyCapabilityFlags::SUPPORT_DYN_VC_GFX_PROTOCOL);
        // No network auto-detection: its connect-time PDUs would arrive
        // during the gateway's own handshake, with nobody to answer them.
        flags.remove(gcc::ClientEarlyCapabilityFlags::SUPPORT_NET_CHAR_AUTODETECT);
    }
    if super::steer::at_most_24_bpp(&mut blocks.core.optional_data) {
        debug!("asking the target for 24 bpp instead of 32");
    }
    if blocks.core.optional_data.connection_type == Some(gcc::ConnectionType::Autodetect) {
        blocks.core.optional_data.connection_type = Some(gcc::ConnectionType::Lan);
    }
    blocks.network = Some(gcc::ClientNetworkData {
        channels: req.channels.clone(),
    });
    // No server redirection, no message channel, no UDP side transport.
    blocks.cluster = None;
    blocks.message_channel = None;
    blocks.multi_transport_channel = None;

    let initial = mcs::ConnectInitial::with_gcc_blocks(blocks)
        .map_err(|e| BackError::malformed(BackPhase::Mcs, "building MCS Connect Initial", e))?;
    let initial_data = encode_vec(&initial)
        .map_err(|e| BackError::malformed(BackPhase::Mcs, "encoding MCS Connect Initial", e))?;
    let initial_pdu = encode_vec(&X224(X224Data {
        data: Cow::Owned(initial_data),
    }))
    .map_err(|e| BackError::malformed(BackPhase::Mcs, "encoding MCS Connect Initial", e))?;
    framed
        .write_all(&initial_pdu)
        .await
        .map_err(|e| BackError::io(BackPhase::Mcs, "writing MCS Connect Initial", e))?;

    let pdu = framed
        .read_by_hint(&X224_HINT)
        .await
        .map_err(|e| BackError::io(BackPhase::Mcs, "reading MCS Connect Response", e))?;
    let data = decode::<X224<X224Data<'_>>>(&pdu)
        .map_err(|e| BackError::malformed(BackPhase::Mcs, "MCS Connect Response", e))?
        .0;
    let response = decode::<mcs::ConnectResponse>(data.data.as_ref())
        .map_err(|e| BackError::malformed(BackPhase::Mcs, "MCS Connect Response", e))?;
    let server_blocks = response.conference_create_response.gcc_blocks();
    let io_channel = server_blocks.network.io_channel;
    let channel_ids = server_blocks.network.channel_ids.clone();
    if channel_ids.len() != req.channels.len() {
        return Err(BackError::malformed(
            BackPhase::Mcs,
            "MCS Connect Response",
            format!(
                "target returned {} channel ids for {} channels",
                channel_ids.len(),
                req.channels.len()
            ),
        ));
    }
    debug!(io_channel, ?channel_ids, "target channel ids");
    Ok((io_channel, channel_ids))
}

/// Erect domain, attach user and channel joins: the user channel id.
async fn join_channels(
    framed: &mut BackFramed,
    io_channel: u16,
    channel_ids: &[u16],
) -> Result<u16, BackError> {
    let mut joins = ChannelConnectionSequence::new(io_channel, channel_ids.to_vec());
    let mut buf = WriteBuf::new();
    loop {
        if let ChannelConnectionState::AllJoined { user_channel_id } = joins.state {
            return Ok(user_channel_id);
        }
        single_sequence_step(framed, &mut joins, &mut buf)
            .await
            .map_err(|e| {
                BackError::malformed(BackPhase::ChannelJoin, "target channel connection", e)
            })?;
    }
}

/// The Client Info PDU with the injected credential.
async fn send_client_info(
    framed: &mut BackFramed,
    req: &BackRequest<'_>,
    io_channel: u16,
    user_channel: u16,
) -> Result<(), BackError> {
    let grant = req.grant;
    // Client Info with the injected credential; auto-reconnect cookies from
    // the client are not passed on (the target never issued them to it).
    let mut info = req.client_info.clone();
    info.credentials = rdp::client_info::Credentials {
        username: grant.account.clone(),
        password: grant.password.clone(),
        domain: grant.domain.clone(),
    };
    info.password_cookie = None;
    info.flags |= rdp::client_info::ClientInfoFlags::AUTOLOGON;
    // No bulk compression: the recording must decode every PDU on its own.
    info.flags
        .remove(rdp::client_info::ClientInfoFlags::COMPRESSION);
    info.extra_info.optional_data = without_auto_reconnect(&info.extra_info.optional_data);
    let info_pdu = rdp::ClientInfoPdu {
        security_header: rdp::headers::BasicSecurityHeader {
            flags: BasicSecurityHeaderFlags::INFO_PKT,
        },
        client_info: info,
    };
    let user_data = encode_vec(&info_pdu)
        .map_err(|e| BackError::malformed(BackPhase::ClientInfo, "encoding Client Info", e))?;
    let send = mcs::SendDataRequest {
        initiator_id: user_channel,
        channel_id: io_channel,
        user_data: Cow::Owned(user_data),
    };
    let send_pdu = encode_vec(&X224(send))
        .map_err(|e| BackError::malformed(BackPhase::ClientInfo, "encoding Client Info", e))?;
    framed
        .write_all(&send_pdu)
        .await
        .map_err(|e| BackError::io(BackPhase::ClientInfo, "writing Client Info", e))?;
    Ok(())
}

/// The licensing exchange; returns the first PDU after it (normally
/// Demand Active), to forward.
async fn license(
    framed: &mut BackFramed,
    grant: &TargetGrant,
    io_channel: u16,
) -> Result<bytes::BytesMut, BackError> {
    let mut buf = WriteBuf::new();
    // Licensing with ironrdp-connector's client sequence: either the
    // target says "valid client" at once (xrdp with a cached license) or a
    // full exchange runs. Licenses are not cached: the gateway is not the
    // client machine the license would belong to.
    let mut licensing = LicenseExchangeSequence::new(
        io_channel,
        grant.account.clone(),
        grant.domain.clone(),
        [0; 4],
        Arc::new(NoLicenseCache),
    );
    // The licensing PDUs are fed to the sequence one by one, so that a PDU
    // that is not about licensing (a target that skips it) ends the phase
    // instead of failing it.
    let first_pdu = loop {
        let (action, pdu) = framed
            .read_pdu()
            .await
            .map_err(|e| BackError::io(BackPhase::Licensing, "reading licensing PDU", e))?;
        if action == ironrdp_pdu::Action::X224 && is_autodetect_pdu(&pdu) {
            // Some servers (FreeRDP) probe anyway; the probe is optional.
            debug!("target auto-detect request ignored");
            continue;
        }
        if action != ironrdp_pdu::Action::X224 || !is_license_pdu(&pdu) {
            if !matches!(licensing.state, LicenseExchangeState::NewLicenseRequest) {
                return Err(BackError::target(
                    BackPhase::Licensing,
                    BackFailure::Malformed,
                    "licensing exchange cut short",
                ));
            }
            debug!(pdu = %hex::encode(pdu.get(..pdu.len().min(48)).unwrap_or_default()), "target skipped licensing");
            break pdu;
        }
        buf.clear();
        let written = licensing.step(&pdu, None, &mut buf).map_err(|e| {
            BackError::target(
                BackPhase::Licensing,
                BackFailure::Refused,
                format!(
                    "licensing: {e} (PDU starts {})",
                    hex::encode(pdu.get(..pdu.len().min(32)).unwrap_or_default())
                ),
            )
        })?;
        if let Some(n) = written.size() {
            framed
                .write_all(buf.filled().get(..n).unwrap_or_default())
                .await
                .map_err(|e| BackError::io(BackPhase::Licensing, "writing licensing PDU", e))?;
        }
        if matches!(licensing.state, LicenseExchangeState::LicenseExchanged) {
            info!("target licensing done");
            let (_, pdu) = framed.read_pdu().await.map_err(|e| {
                BackError::io(
                    BackPhase::Licensing,
                    "reading the first PDU after licensing",
                    e,
                )
            })?;
            break pdu;
        }
    };
    Ok(first_pdu)
}

/// The client's extended info minus its auto-reconnect cookie: sekisho
/// never lets a client resume a target session by itself.
fn without_auto_reconnect(
    o: &rdp::client_info::ExtendedClientOptionalInfo,
) -> rdp::client_info::ExtendedClientOptionalInfo {
    let b = rdp::client_info::ExtendedClientOptionalInfo::builder();
    let Some(tz) = o.timezone() else {
        return b.build();
    };
    let b = b.timezone(tz.clone());
    let Some(session_id) = o.session_id() else {
        return b.build();
    };
    let b = b.session_id(session_id);
    let Some(flags) = o.performance_flags() else {
        return b.build();
    };
    b.performance_flags(flags).build()
}

/// Whether an X.224 PDU from the target is a Send Data Indication whose
/// basic security header flags it as licensing.
fn is_license_pdu(pdu: &[u8]) -> bool {
    security_flags(pdu)
        .is_some_and(|flags| flags & BasicSecurityHeaderFlags::LICENSE_PKT.bits() != 0)
}

/// SEC_AUTODETECT_REQ (MS-RDPBCGR 2.2.8.1.1.2.1).
fn is_autodetect_pdu(pdu: &[u8]) -> bool {
    const SEC_AUTODETECT_REQ: u16 = 0x1000;
    security_flags(pdu).is_some_and(|flags| flags & SEC_AUTODETECT_REQ != 0)
}

fn security_flags(pdu: &[u8]) -> Option<u16> {
    let X224(indication) = decode::<X224<mcs::SendDataIndication<'_>>>(pdu).ok()?;
    super::le_u16(&indication.user_data, 0)
}

/// CredSSP reaches no KDC: NTLM only.
struct NoNetwork;

impl ironrdp_async::NetworkClient for NoNetwork {
    async fn send(
        &mut self,
        _request: &ironrdp_connector::sspi::generator::NetworkRequest,
    ) -> ironrdp_connector::ConnectorResult<Vec<u8>> {
        Err(ironrdp_connector::general_err!(
            "sekisho does not contact a KDC for target sign-in"
        ))
    }
}

/// A DER element: (tag, contents, rest), or `None` when malformed.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest.get(n..)?)
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

/// The subjectPublicKey bits of an X.509 certificate (what CredSSP binds
/// to): Certificate → tbsCertificate → subjectPublicKeyInfo → BIT STRING,
/// without its unused-bits byte.
pub fn subject_public_key(cert_der: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    let (tag, cert, _) = der_next(cert_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = der_next(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // Optional [0] version, then serial, signature, issuer, validity, subject.
    let (tag, _, after) = der_next(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..5 {
        let (_, _, after) = der_next(rest)?;
        rest = after;
    }
    let (tag, spki, _) = der_next(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, after_alg) = der_next(spki)?;
    let (tag, bits, _) = der_next(after_alg)?;
    if tag != 0x03 {
        return None;
    }
    bits.get(1..)
}

/// Licenses are never stored or presented.
#[derive(Debug)]
struct NoLicenseCache;

impl LicenseCache for NoLicenseCache {
    fn get_license(
        &self,
        _: LicenseInformation,
    ) -> ironrdp_connector::ConnectorResult<Option<Vec<u8>>> {
        Ok(None)
    }
    fn store_license(&self, _: LicenseInformation) -> ironrdp_connector::ConnectorResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier_for(der: &[u8]) -> PinnedCertVerifier {
        PinnedCertVerifier::new(cert_sha256(der))
    }

    #[test]
    fn subject_public_key_is_found_in_real_certificates() {
        // An rcgen certificate: its key pair knows its own public key.
        let Ok(ck) = rcgen::generate_simple_self_signed(vec!["a".into()]) else {
            panic!("rcgen failed")
        };
        use rcgen::PublicKeyData as _;
        let expected = ck.signing_key.der_bytes();
        assert_eq!(subject_public_key(ck.cert.der()), Some(expected));
        // Truncations and garbage never panic and never yield a key.
        let der = ck.cert.der().to_vec();
        for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            assert_eq!(subject_public_key(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(
            subject_public_key(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
    }

    #[test]
    fn pin_accepts_exactly_the_pinned_certificate() {
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).map(|c| c.cert.der().to_vec());
        let b = rcgen::generate_simple_self_signed(vec!["b".into()]).map(|c| c.cert.der().to_vec());
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("rcgen failed");
        };
        let v = verifier_for(&a);
        let name = ServerName::try_from("127.0.0.1").map(|n| n.to_owned());
        let Ok(name) = name else {
            panic!("server name")
        };
        let ok = v.verify_server_cert(
            &CertificateDer::from(a.clone()),
            &[],
            &name,
            &[],
            UnixTime::now(),
        );
        assert!(ok.is_ok());
        let bad = v.verify_server_cert(&CertificateDer::from(b), &[], &name, &[], UnixTime::now());
        let Err(e) = bad else {
            panic!("other certificate accepted")
        };
        assert!(e.to_string().contains("does not match the pinned"), "{e}");
    }

    #[test]
    fn a_failure_names_its_phase_and_kind_in_snake_case() {
        let e = BackError::target(BackPhase::Tls, BackFailure::CertificatePin, "TLS to target");
        let f = e.failure();
        assert_eq!(
            (f.phase, f.kind),
            (BackPhase::Tls, BackFailure::CertificatePin)
        );
        assert_eq!(
            (f.phase.as_str(), f.kind.as_str()),
            ("tls", "certificate_pin")
        );
        assert_eq!(
            e.to_string(),
            "target: TLS to target",
            "the text is unchanged"
        );
        assert_eq!(BackPhase::ChannelJoin.as_str(), "channel_join");
        assert_eq!(BackPhase::ClientInfo.as_str(), "client_info");
        assert_eq!(BackPhase::CredSsp.as_str(), "credssp");
    }

    #[test]
    fn a_pin_mismatch_is_told_apart_from_other_tls_failures() {
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).map(|c| c.cert.der().to_vec());
        let b = rcgen::generate_simple_self_signed(vec!["b".into()]).map(|c| c.cert.der().to_vec());
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("rcgen failed");
        };
        let Ok(name) = ServerName::try_from("127.0.0.1").map(|n| n.to_owned()) else {
            panic!("server name")
        };
        let v = verifier_for(&a);
        let ok = v.verify_server_cert(&CertificateDer::from(a), &[], &name, &[], UnixTime::now());
        assert!(ok.is_ok());
        assert!(!v.mismatched(), "the pinned certificate is no mismatch");
        let bad = v.verify_server_cert(&CertificateDer::from(b), &[], &name, &[], UnixTime::now());
        assert!(bad.is_err());
        assert!(v.mismatched(), "another certificate is a mismatch");
    }
}
