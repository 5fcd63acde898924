//! Client-facing handshake: X.224 negotiation (TLS only; standard RDP
//! security refused) through ironrdp-acceptor, the TLS upgrade, and the MCS
//! phase played as a server up to the Client Info PDU, which carries the
//! sign-in. The gateway answers the MCS phase itself because the target is
//! named in the user name, which only arrives in the Client Info PDU.

use std::borrow::Cow;

use ironrdp_acceptor::{Acceptor, ChannelConnectionSequence, DesktopSize};
use ironrdp_async::{Framed, FramedWrite as _, single_sequence_step};
use ironrdp_connector::Sequence as _;
use ironrdp_core::{WriteBuf, decode, encode_vec};
use ironrdp_pdu::gcc::{self, ClientGccBlocks};
use ironrdp_pdu::nego::{self, SecurityProtocol};
use ironrdp_pdu::rdp::headers::{
    CompressionFlags, ShareControlHeader, ShareControlPdu, ShareDataHeader, ShareDataPdu,
    StreamPriority,
};
use ironrdp_pdu::rdp::server_error_info::{
    ErrorInfo, ProtocolIndependentCode, ServerSetErrorInfoPdu,
};
use ironrdp_pdu::rdp::server_license::{LicensePdu, LicensingErrorMessage};
use ironrdp_pdu::rdp::{self, client_info::ClientInfo};
use ironrdp_pdu::x224::{X224, X224Data};
use ironrdp_pdu::{X224_HINT, mcs};
use ironrdp_tokio::TokioStream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};

use std::net::IpAddr;

use super::control::RdpControl;
use super::rules::{self, ChannelVerdict};
use super::{FrontTls, RdpError, nla};
use crate::admission::Gate;

/// MCS ids the gateway hands to the client. They mirror what Windows and
/// xrdp assign, but the relay never relies on that: it maps every id.
pub(crate) const FRONT_USER_CHANNEL: u16 = 1002;
pub(crate) const FRONT_IO_CHANNEL: u16 = 1003;

pub(crate) type FrontFramed = Framed<TokioStream<TlsStream<TcpStream>>>;

/// A byte stream from the client: the TCP connection, the TLS session on
/// it, or an in-memory stream (the fuzz targets drive the handshake without
/// TLS through `crate::fuzzing`).
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<S: AsyncRead + AsyncWrite + Send + Sync + Unpin> ClientStream for S {}

/// A static channel as the client requested it.
#[derive(Debug, Clone)]
pub(crate) struct FrontChannel {
    pub def: gcc::ChannelDef,
    pub name: String,
    /// The id the client was given.
    pub front_id: u16,
    pub verdict: ChannelVerdict,
}

/// The client side after the Client Info PDU.
pub(crate) struct FrontSession {
    pub framed: FrontFramed,
    /// Set when the client signed in with CredSSP.
    pub nla: Option<super::nla::NlaIdentity>,
    /// The client's GCC blocks, as sent (the back side filters them).
    pub gcc: ClientGccBlocks,
    pub channels: Vec<FrontChannel>,
    pub client_info: ClientInfo,
}

/// Run the X.224 negotiation with ironrdp-acceptor. Only TLS is offered:
/// a client asking for standard RDP security (RC4) gets an RDP negotiation
/// failure (SSL_REQUIRED_BY_SERVER) rather than a reset.
/// Returns the stream, the protocols the client requested and the one selected.
pub(crate) async fn negotiate<S: ClientStream>(
    stream: S,
    offer_nla: bool,
) -> Result<(S, SecurityProtocol, SecurityProtocol), RdpError> {
    // Desktop size and capabilities are unused: the acceptor is dropped at
    // the security upgrade, before it would send any of them.
    let offered = if offer_nla {
        SecurityProtocol::SSL | SecurityProtocol::HYBRID
    } else {
        SecurityProtocol::SSL
    };
    let mut acceptor = Acceptor::new(
        offered,
        DesktopSize {
            width: 1024,
            height: 768,
        },
        Vec::new(),
        None,
    );
    let mut framed = Framed::<TokioStream<S>>::new(stream);

    let request_pdu = framed
        .read_by_hint(&X224_HINT)
        .await
        .map_err(|e| RdpError::io("reading X.224 connection request", e))?;
    let request = decode::<X224<nego::ConnectionRequest>>(&request_pdu)
        .map_err(|e| RdpError::protocol("X.224 connection request", e))?
        .0;
    debug!(protocol = ?request.protocol, "client connection request");

    let mut buf = WriteBuf::new();
    acceptor
        .step(&request_pdu, None, &mut buf)
        .map_err(|e| RdpError::protocol("X.224 connection request", e))?;
    buf.clear();
    let confirm = acceptor.step_no_input(&mut buf);
    // The acceptor writes the negotiation failure into the buffer before it
    // reports the mismatch, so send whatever it wrote either way.
    if buf.filled_len() > 0 {
        framed
            .write_all(buf.filled())
            .await
            .map_err(|e| RdpError::io("writing X.224 connection confirm", e))?;
    }
    if let Err(e) = confirm {
        return Err(RdpError::Refused(format!(
            "client offered no TLS (requested {:?}): {e}",
            request.protocol
        )));
    }
    if acceptor.reached_security_upgrade().is_none() {
        return Err(RdpError::Protocol {
            context: "X.224 negotiation",
            message: "acceptor did not reach the security upgrade".into(),
        });
    }
    // What the acceptor chose is in the confirm it wrote.
    let selected = match decode::<X224<nego::ConnectionConfirm>>(buf.filled()) {
        Ok(X224(nego::ConnectionConfirm::Response { protocol, .. })) => protocol,
        _ => {
            return Err(RdpError::Protocol {
                context: "X.224 negotiation",
                message: "acceptor wrote no connection confirm".into(),
            });
        }
    };
    debug!(selected = ?selected, "front security selected");
    // The client must wait for the confirm before it starts TLS: bytes read
    // past the request would be lost to the TLS handshake (and tripped
    // `into_inner_no_leftover`'s debug assertion, found by fuzzing).
    let (stream, leftover) = framed.into_inner();
    if !leftover.is_empty() {
        return Err(RdpError::Protocol {
            context: "X.224 negotiation",
            message: format!(
                "client sent {} byte(s) before the connection confirm",
                leftover.len()
            ),
        });
    }
    Ok((stream, request.protocol, selected))
}

/// Accept one client up to its Client Info PDU.
pub(crate) async fn accept<C: RdpControl>(
    tcp: TcpStream,
    tls: &FrontTls,
    offer_nla: bool,
    control: &C,
    source: IpAddr,
    admission: &Gate,
) -> Result<FrontSession, RdpError> {
    let (tcp, requested_protocol, selected) = negotiate(tcp, offer_nla).await?;
    let tls_stream = tokio_rustls::TlsAcceptor::from(tls.config.clone())
        .accept(tcp)
        .await
        .map_err(|e| RdpError::io("TLS handshake with client", e))?;
    let mut framed = FrontFramed::new(tls_stream);
    let secured = accept_secured(
        &mut framed,
        requested_protocol,
        selected,
        tls.public_key.clone(),
        control,
        source,
        admission,
    )
    .await?;
    Ok(FrontSession {
        framed,
        nla: secured.nla,
        gcc: secured.gcc,
        channels: secured.channels,
        client_info: secured.client_info,
    })
}

/// What the client sent after the security upgrade, up to its Client Info PDU.
pub(crate) struct SecuredHandshake {
    pub nla: Option<super::nla::NlaIdentity>,
    pub gcc: ClientGccBlocks,
    pub channels: Vec<FrontChannel>,
    pub client_info: ClientInfo,
}

/// The handshake inside TLS: CredSSP when NLA was selected, the MCS phase,
/// the Client Info PDU. Generic over the stream so that the fuzz targets can
/// drive it without TLS.
pub(crate) async fn accept_secured<S: ClientStream, C: RdpControl>(
    framed: &mut Framed<TokioStream<S>>,
    requested_protocol: SecurityProtocol,
    selected: SecurityProtocol,
    public_key: Vec<u8>,
    control: &C,
    source: IpAddr,
    admission: &Gate,
) -> Result<SecuredHandshake, RdpError> {
    let nla = if selected.intersects(SecurityProtocol::HYBRID | SecurityProtocol::HYBRID_EX) {
        // A failed proof is audited inside; I/O errors are not sign-ins.
        Some(nla::accept(framed, control, source, admission, public_key).await?)
    } else {
        None
    };

    // MCS Connect Initial with the client's GCC blocks.
    let pdu = framed
        .read_by_hint(&X224_HINT)
        .await
        .map_err(|e| RdpError::io("reading MCS Connect Initial", e))?;
    let data = decode::<X224<X224Data<'_>>>(&pdu)
        .map_err(|e| RdpError::protocol("MCS Connect Initial", e))?
        .0;
    let initial = decode::<mcs::ConnectInitial>(data.data.as_ref())
        .map_err(|e| RdpError::protocol("MCS Connect Initial", e))?;
    let gcc = initial.conference_create_request.into_gcc_blocks();

    let requested_channels = gcc
        .network
        .as_ref()
        .map(|n| n.channels.clone())
        .unwrap_or_default();
    let mut channels = Vec::with_capacity(requested_channels.len());
    for (i, def) in requested_channels.into_iter().enumerate() {
        let offset = u16::try_from(i)
            .ok()
            .filter(|i| *i < 31) // MS-RDPBCGR: at most 31 static channels
            .ok_or_else(|| RdpError::Protocol {
                context: "client network data",
                message: "too many static channels".into(),
            })?;
        let name = def
            .name
            .as_str()
            .unwrap_or("")
            .trim_end_matches('\0')
            .to_owned();
        let verdict = rules::static_channel(&name);
        channels.push(FrontChannel {
            def,
            name,
            front_id: FRONT_IO_CHANNEL + 1 + offset,
            verdict,
        });
    }
    info!(
        channels = ?channels.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        "client requested static channels"
    );

    // Every channel gets an id, refused ones too, so the client's view stays
    // well formed; the relay drops whatever is sent on a refused one. No
    // message channel and no multitransport are offered.
    let front_ids: Vec<u16> = channels.iter().map(|c| c.front_id).collect();
    let server_blocks = gcc::ServerGccBlocks {
        core: gcc::ServerCoreData {
            version: gcc::RdpVersion::V5_PLUS,
            optional_data: gcc::ServerCoreOptionalData {
                client_requested_protocols: Some(requested_protocol),
                early_capability_flags: None,
            },
        },
        security: gcc::ServerSecurityData::no_security(),
        network: gcc::ServerNetworkData {
            channel_ids: front_ids.clone(),
            io_channel: FRONT_IO_CHANNEL,
        },
        message_channel: None,
        multi_transport_channel: None,
    };
    let response = mcs::ConnectResponse {
        conference_create_response: gcc::ConferenceCreateResponse::new(
            FRONT_USER_CHANNEL,
            server_blocks,
        )
        .map_err(|e| RdpError::protocol("building MCS Connect Response", e))?,
        called_connect_id: 1,
        domain_parameters: mcs::DomainParameters::target(),
    };
    let response_data = encode_vec(&response)
        .map_err(|e| RdpError::protocol("encoding MCS Connect Response", e))?;
    let response_pdu = encode_vec(&X224(X224Data {
        data: Cow::Owned(response_data),
    }))
    .map_err(|e| RdpError::protocol("encoding MCS Connect Response", e))?;
    framed
        .write_all(&response_pdu)
        .await
        .map_err(|e| RdpError::io("writing MCS Connect Response", e))?;

    // Erect domain, attach user, channel joins: the acceptor's sequence.
    let mut joins = ChannelConnectionSequence::new(FRONT_USER_CHANNEL, FRONT_IO_CHANNEL, front_ids);
    let mut buf = WriteBuf::new();
    while !joins.is_done() {
        single_sequence_step(framed, &mut joins, &mut buf)
            .await
            .map_err(|e| RdpError::protocol("client channel connection", e))?;
    }

    // Client Info PDU (TLS: no RDP encryption; the security header only
    // flags it as an info packet).
    let pdu = framed
        .read_by_hint(&X224_HINT)
        .await
        .map_err(|e| RdpError::io("reading Client Info PDU", e))?;
    let request = decode::<X224<mcs::SendDataRequest<'_>>>(&pdu)
        .map_err(|e| RdpError::protocol("Client Info PDU", e))?
        .0;
    let info = decode::<rdp::ClientInfoPdu>(request.user_data.as_ref())
        .map_err(|e| RdpError::protocol("Client Info PDU", e))?;

    Ok(SecuredHandshake {
        nla,
        gcc,
        channels,
        client_info: info.client_info,
    })
}

/// The target and the sekisho user, from the user name the client typed:
/// `person@target` or `target\person` (the latter arrives split, with the
/// target in the domain field).
pub fn split_target(username: &str, domain: Option<&str>) -> Option<(String, String)> {
    let domain = domain.map(str::trim).filter(|d| !d.is_empty());
    if let Some(target) = domain {
        if username.contains('@') || username.is_empty() {
            return None;
        }
        return Some((username.to_owned(), target.to_owned()));
    }
    if let Some((target, person)) = username.split_once('\\') {
        if !target.is_empty()
            && !person.is_empty()
            && !person.contains('\\')
            && !person.contains('@')
        {
            return Some((person.to_owned(), target.to_owned()));
        }
        return None;
    }
    let (person, target) = username.rsplit_once('@')?;
    if person.is_empty() || target.is_empty() || person.contains('@') {
        return None;
    }
    Some((person.to_owned(), target.to_owned()))
}

// ---- telling the client -------------------------------------------------

pub(crate) fn indication_bytes<T: ironrdp_core::Encode>(pdu: &T) -> Result<Vec<u8>, RdpError> {
    let user_data = encode_vec(pdu).map_err(|e| RdpError::protocol("encoding PDU to client", e))?;
    let ind = mcs::SendDataIndication {
        initiator_id: FRONT_USER_CHANNEL,
        channel_id: FRONT_IO_CHANNEL,
        user_data: Cow::Owned(user_data),
    };
    encode_vec(&X224(ind)).map_err(|e| RdpError::protocol("encoding PDU to client", e))
}

pub(crate) async fn send_indication<T: ironrdp_core::Encode>(
    framed: &mut FrontFramed,
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
pub(crate) fn refusal_pdus(code: ErrorInfo, licensed: bool) -> Result<Vec<u8>, RdpError> {
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
            share_data_pdu: ShareDataPdu::ServerSetErrorInfo(ServerSetErrorInfoPdu(code)),
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
pub(crate) async fn refuse_client(framed: &mut FrontFramed, code: ProtocolIndependentCode) {
    use ironrdp_async::FramedWrite as _;
    match refusal_pdus(ErrorInfo::ProtocolIndependentCode(code), false) {
        Ok(bytes) => {
            if let Err(e) = framed.write_all(&bytes).await {
                warn!(error = %e, "could not send the refusal to the client");
            }
        }
        Err(e) => warn!(error = %e, "could not encode the refusal"),
    }
}

#[cfg(test)]
mod tests {
    use super::{RdpError, negotiate, split_target};
    use ironrdp_core::encode_vec;
    use ironrdp_pdu::nego::{self, SecurityProtocol};
    use ironrdp_pdu::x224::X224;
    use tokio::io::AsyncWriteExt as _;

    fn connection_request() -> Vec<u8> {
        encode_vec(&X224(nego::ConnectionRequest {
            nego_data: Some(nego::NegoRequestData::cookie("tanaka".into())),
            flags: nego::RequestFlags::empty(),
            protocol: SecurityProtocol::SSL | SecurityProtocol::HYBRID,
            correlation_info: None,
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_client_that_waits_for_the_confirm_is_negotiated() {
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(&connection_request()).await.unwrap();
        let (_, requested, selected) = negotiate(server, true).await.expect("negotiated");
        assert!(requested.contains(SecurityProtocol::HYBRID));
        assert_eq!(selected, SecurityProtocol::HYBRID);
    }

    // Bytes sent before the confirm tripped ironrdp's "unexpected leftover"
    // debug assertion (a panic in debug builds, silently dropped bytes in
    // release); the rdp_front fuzz target's pipelined mode sends them.
    #[tokio::test]
    async fn bytes_sent_before_the_confirm_are_refused() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut bytes = connection_request();
        bytes.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x05]); // a TLS record header
        client.write_all(&bytes).await.unwrap();
        match negotiate(server, true).await {
            Err(RdpError::Protocol { message, .. }) => {
                assert!(
                    message.contains("before the connection confirm"),
                    "{message}"
                )
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("bytes before the confirm accepted"),
        }
    }

    #[test]
    fn target_from_user_at_target() {
        assert_eq!(
            split_target("tanaka@fa-db01", None),
            Some(("tanaka".into(), "fa-db01".into()))
        );
    }

    #[test]
    fn target_from_domain_field_or_backslash() {
        assert_eq!(
            split_target("tanaka", Some("fa-db01")),
            Some(("tanaka".into(), "fa-db01".into()))
        );
        assert_eq!(
            split_target("fa-db01\\tanaka", None),
            Some(("tanaka".into(), "fa-db01".into()))
        );
    }

    #[test]
    fn malformed_names_are_rejected() {
        for (user, domain) in [
            ("tanaka", None),
            ("@fa-db01", None),
            ("tanaka@", None),
            ("a@b@c", None),
            ("\\tanaka", None),
            ("fa\\", None),
            ("x\\y\\z", None),
            ("", Some("fa-db01")),
            ("a@b", Some("fa-db01")),
        ] {
            assert_eq!(split_target(user, domain), None, "{user:?} {domain:?}");
        }
        // An empty domain field is the same as none.
        assert_eq!(
            split_target("tanaka@fa", Some(" ")),
            Some(("tanaka".into(), "fa".into()))
        );
    }
}
