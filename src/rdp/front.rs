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
use ironrdp_pdu::rdp::capability_sets::{CapabilitySet, DemandActive, ServerDemandActive};
use ironrdp_pdu::rdp::finalization_messages::{ControlAction, ControlPdu, FontPdu, SynchronizePdu};
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
use crate::config::NlaOffer;

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
    /// The client is licensed and active in sekisho's own share (the
    /// drawn sign-in screen): the target's share follows a Deactivate All.
    pub screen_active: bool,
}

/// Run the X.224 negotiation with ironrdp-acceptor. TLS is always offered,
/// NLA as `[rdp] nla` says (see [`offers_nla`]); a client asking for
/// standard RDP security (RC4) only gets an RDP negotiation failure
/// (SSL_REQUIRED_BY_SERVER) rather than a reset.
/// Returns the stream, the protocols the client requested and the one selected.
pub(crate) async fn negotiate<S: ClientStream, C: RdpControl>(
    stream: S,
    nla: NlaOffer,
    control: &C,
    source: IpAddr,
) -> Result<(S, SecurityProtocol, SecurityProtocol, Option<String>), RdpError> {
    let mut framed = Framed::<TokioStream<S>>::new(stream);

    let request_pdu = framed
        .read_by_hint(&X224_HINT)
        .await
        .map_err(|e| RdpError::io("reading X.224 connection request", e))?;
    let request = decode::<X224<nego::ConnectionRequest>>(&request_pdu)
        .map_err(|e| RdpError::protocol("X.224 connection request", e))?
        .0;
    debug!(protocol = ?request.protocol, "client connection request");
    let offer_nla = offers_nla(nla, &request, control, source).await;

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

    let mut buf = WriteBuf::new();
    acceptor
        .step(&request_pdu, None, &mut buf)
        .map_err(|e| RdpError::protocol("X.224 connection request", e))?;
    buf.clear();
    let confirm = acceptor.step_no_input(&mut buf);
    // A client that insists on NLA (mstsc or FreeRDP with /sec:nla)
    // without a live ticket is told so by the negotiation failure; the
    // audit log says it too, under the name it gave, before the client
    // hears it (so the record is there when the client gives up).
    if confirm.is_err()
        && !offer_nla
        && request
            .protocol
            .intersects(SecurityProtocol::HYBRID | SecurityProtocol::HYBRID_EX)
        && let Some(nego::NegoRequestData::Cookie(nego::Cookie(name))) = &request.nego_data
    {
        control
            .nla_refused(
                name.trim(),
                source,
                "the client asked for NLA only, and there is no live one-time RDP ticket for this name",
            )
            .await;
    }
    // The acceptor writes the negotiation failure into the buffer before it
    // reports the mismatch, so send whatever it wrote either way.
    if buf.filled_len() > 0 {
        framed
            .write_all(buf.filled())
            .await
            .map_err(|e| RdpError::io("writing X.224 connection confirm", e))?;
    }
    if let Err(e) = confirm {
        return Err(RdpError::NoCommonSecurity(format!(
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
    let cookie = match request.nego_data {
        Some(nego::NegoRequestData::Cookie(nego::Cookie(name))) => Some(name.trim().to_owned()),
        _ => None,
    };
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
    Ok((stream, request.protocol, selected, cookie))
}

/// Whether to offer NLA to this client. With `tickets`, only when the
/// routing cookie of its connection request (`Cookie: mstshash=NAME`, which
/// FreeRDP and mstsc fill with the user name) names a person@target holding a
/// live one-time RDP ticket: a client offered NLA without one could only
/// fail at CredSSP with a bare logon failure, while offered TLS alone it
/// falls back and sends password + code in its Client Info PDU. What this
/// tells a prober (whether a name has a live ticket right now) is far less
/// than the ticket itself, which is still proved over CredSSP.
async fn offers_nla<C: RdpControl>(
    nla: NlaOffer,
    request: &nego::ConnectionRequest,
    control: &C,
    source: IpAddr,
) -> bool {
    match nla {
        NlaOffer::Always => true,
        NlaOffer::Never => false,
        NlaOffer::Tickets => {
            let Some(nego::NegoRequestData::Cookie(nego::Cookie(name))) = &request.nego_data else {
                return false;
            };
            let Some((person, target)) = split_target(name.trim(), None) else {
                return false;
            };
            let has_ticket = control.nla_secret(&person, &target, source).await.is_some();
            debug!(user = %crate::auth::login_for_records(name), has_ticket, "NLA offered only with a live ticket");
            has_ticket
        }
    }
}

/// Accept one client up to its Client Info PDU.
pub(crate) async fn accept<C: RdpControl>(
    tcp: TcpStream,
    tls: &FrontTls,
    nla: NlaOffer,
    control: &C,
    source: IpAddr,
    admission: &Gate,
) -> Result<FrontSession, RdpError> {
    let (tcp, requested_protocol, selected, cookie) = negotiate(tcp, nla, control, source).await?;
    let tls_stream = match tokio_rustls::TlsAcceptor::from(tls.config.clone())
        .accept(tcp)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            // FreeRDP with /sec:nla asks for TLS or NLA but hangs up when
            // given TLS: without a live ticket it was not offered NLA.
            if selected == SecurityProtocol::SSL
                && requested_protocol
                    .intersects(SecurityProtocol::HYBRID | SecurityProtocol::HYBRID_EX)
                && let Some(name) = &cookie
            {
                control
                    .nla_refused(
                        name,
                        source,
                        "the client wanted NLA only and hung up when offered TLS; there is no live one-time RDP ticket for this name",
                    )
                    .await;
            }
            return Err(RdpError::io("TLS handshake with client", e));
        }
    };
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
        screen_active: false,
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

/// The sekisho user of a user name that names no target (`tanaka`, no
/// domain): a sign-in that chooses its target after (the drawn choice).
pub fn person_only(username: &str, domain: Option<&str>) -> Option<String> {
    let no_domain = domain.map(str::trim).is_none_or(str::is_empty);
    let username = username.trim();
    (no_domain && !username.is_empty() && !username.contains(['@', '\\']))
        .then(|| username.to_owned())
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

/// The share id of sekisho's own screens (the target's share replaces it
/// when a session follows).
const SCREEN_SHARE_ID: u32 = 0x0001_03EA;

/// The capability sets of sekisho's own screens: the client's desktop size,
/// 32 bits per pixel, no drawing orders (bitmaps only), fast-path output.
fn screen_capabilities(width: u16, height: u16) -> Vec<CapabilitySet> {
    use ironrdp_pdu::rdp::capability_sets::{
        Bitmap, BitmapDrawingFlags, General, GeneralExtraFlags, Input, InputFlags,
        MajorPlatformType, MinorPlatformType, Order, OrderFlags, OrderSupportExFlags, Pointer,
        VirtualChannel, VirtualChannelFlags,
    };
    vec![
        CapabilitySet::General(General {
            major_platform_type: MajorPlatformType::UNSPECIFIED,
            minor_platform_type: MinorPlatformType::UNSPECIFIED,
            protocol_version: ironrdp_pdu::rdp::capability_sets::PROTOCOL_VER,
            extra_flags: GeneralExtraFlags::FASTPATH_OUTPUT_SUPPORTED
                | GeneralExtraFlags::NO_BITMAP_COMPRESSION_HDR
                | GeneralExtraFlags::LONG_CREDENTIALS_SUPPORTED,
            refresh_rect_support: true,
            suppress_output_support: true,
        }),
        CapabilitySet::Bitmap(Bitmap {
            pref_bits_per_pix: 32,
            desktop_width: width,
            desktop_height: height,
            desktop_resize_flag: false,
            drawing_flags: BitmapDrawingFlags::ALLOW_SKIP_ALPHA,
        }),
        CapabilitySet::Order(Order::new(
            OrderFlags::NEGOTIATE_ORDER_SUPPORT | OrderFlags::ZERO_BOUNDS_DELTAS_SUPPORT,
            OrderSupportExFlags::empty(),
            480 * 480,
            0,
        )),
        CapabilitySet::Pointer(Pointer {
            color_pointer_cache_size: 25,
            pointer_cache_size: 25,
        }),
        CapabilitySet::Input(Input {
            input_flags: InputFlags::SCANCODES
                | InputFlags::MOUSEX
                | InputFlags::UNICODE
                | InputFlags::FASTPATH_INPUT_2,
            keyboard_layout: 0,
            keyboard_type: None,
            keyboard_subtype: 0,
            keyboard_function_key: 0,
            keyboard_ime_filename: String::new(),
        }),
        CapabilitySet::VirtualChannel(VirtualChannel {
            flags: VirtualChannelFlags::NO_COMPRESSION,
            chunk_size: None,
        }),
    ]
}

/// Activate the client with sekisho's own share and paint `canvas` into
/// it: "valid client" licensing, Demand Active, the client's Confirm
/// Active, the finalization exchange (ironrdp-acceptor's), then the bitmap
/// updates. Nothing here reaches a target or a recording.
pub(crate) async fn show_screen(
    framed: &mut FrontFramed,
    canvas: &super::screen::Canvas,
) -> Result<(), RdpError> {
    let license: LicensePdu = LicensingErrorMessage::new_valid_client()
        .map_err(|e| RdpError::protocol("encoding license PDU", e))?
        .into();
    send_indication(framed, &license).await?;
    let demand = ShareControlHeader {
        share_id: SCREEN_SHARE_ID,
        pdu_source: FRONT_IO_CHANNEL,
        share_control_pdu: ShareControlPdu::ServerDemandActive(ServerDemandActive {
            pdu: DemandActive {
                source_descriptor: "RDP".into(),
                capability_sets: screen_capabilities(canvas.width, canvas.height),
            },
        }),
    };
    send_indication(framed, &demand).await?;
    // The client's Confirm Active (anything else before it is dropped).
    loop {
        let (action, pdu) = framed
            .read_pdu()
            .await
            .map_err(|e| RdpError::io("reading Confirm Active", e))?;
        if !matches!(action, ironrdp_pdu::Action::X224) {
            continue;
        }
        let Ok(X224(request)) = decode::<X224<mcs::SendDataRequest<'_>>>(&pdu) else {
            continue;
        };
        if let Ok(header) = decode::<ShareControlHeader>(request.user_data.as_ref())
            && matches!(
                header.share_control_pdu,
                ShareControlPdu::ClientConfirmActive(_)
            )
        {
            break;
        }
    }
    // Finalization. FreeRDP sends Synchronize, Control (cooperate,
    // request) and Font List at once; rdesktop waits for the server's
    // Synchronize, Cooperate and Granted Control before its Font List. So
    // the server's three go out on the client's Request Control, the Font
    // Map on its Font List.
    let mut granted = false;
    loop {
        let (action, pdu) = framed
            .read_pdu()
            .await
            .map_err(|e| RdpError::io("reading the client's finalization", e))?;
        if !matches!(action, ironrdp_pdu::Action::X224) {
            continue;
        }
        let Ok(X224(request)) = decode::<X224<mcs::SendDataRequest<'_>>>(&pdu) else {
            continue;
        };
        let Ok(ShareControlHeader {
            share_control_pdu: ShareControlPdu::Data(data),
            ..
        }) = decode::<ShareControlHeader>(request.user_data.as_ref())
        else {
            continue;
        };
        match data.share_data_pdu {
            ShareDataPdu::Control(ControlPdu {
                action: ControlAction::RequestControl,
                ..
            }) if !granted => {
                granted = true;
                for pdu in [
                    ShareDataPdu::Synchronize(SynchronizePdu {
                        target_user_id: FRONT_USER_CHANNEL,
                    }),
                    ShareDataPdu::Control(ControlPdu {
                        action: ControlAction::Cooperate,
                        grant_id: 0,
                        control_id: 0,
                    }),
                    ShareDataPdu::Control(ControlPdu {
                        action: ControlAction::GrantedControl,
                        grant_id: FRONT_USER_CHANNEL,
                        control_id: u32::from(ironrdp_pdu::rdp::capability_sets::SERVER_CHANNEL_ID),
                    }),
                ] {
                    send_indication(framed, &screen_data(pdu)).await?;
                }
            }
            ShareDataPdu::FontList(_) => {
                send_indication(
                    framed,
                    &screen_data(ShareDataPdu::FontMap(FontPdu::default())),
                )
                .await?;
                break;
            }
            _ => {}
        }
    }
    paint(framed, canvas, None).await
}

/// A share data PDU of sekisho's screen share.
fn screen_data(pdu: ShareDataPdu) -> ShareControlHeader {
    ShareControlHeader {
        share_id: SCREEN_SHARE_ID,
        pdu_source: FRONT_IO_CHANNEL,
        share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
            share_data_pdu: pdu,
            stream_priority: StreamPriority::Undefined,
            compression_flags: CompressionFlags::empty(),
            compression_type: ironrdp_pdu::rdp::client_info::CompressionType::K8,
        }),
    }
}

/// Send the bitmap updates of `canvas` (only the tiles meeting `area`, if
/// given) to an active client.
pub(crate) async fn paint(
    framed: &mut FrontFramed,
    canvas: &super::screen::Canvas,
    area: Option<(u16, u16, u16, u16)>,
) -> Result<(), RdpError> {
    let updates = match area {
        Some(a) => canvas.fast_path_updates_in(a),
        None => canvas.fast_path_updates(),
    }
    .map_err(|e| RdpError::protocol("encoding the screen", e))?;
    for update in updates {
        framed
            .write_all(&update)
            .await
            .map_err(|e| RdpError::io("writing the screen", e))?;
    }
    Ok(())
}

/// Tell the client it is refused: with "valid client" licensing first
/// unless it is already active in sekisho's screen.
pub(crate) async fn refuse_front(front: &mut FrontSession, code: ProtocolIndependentCode) {
    use ironrdp_async::FramedWrite as _;
    match refusal_pdus(
        ErrorInfo::ProtocolIndependentCode(code),
        front.screen_active,
    ) {
        Ok(bytes) => {
            if let Err(e) = front.framed.write_all(&bytes).await {
                warn!(error = %e, "could not send the refusal to the client");
            }
        }
        Err(e) => warn!(error = %e, "could not encode the refusal"),
    }
}

/// Leave sekisho's screen share so that the target's Demand Active starts
/// a new one (MS-RDPBCGR 1.3.1.3, deactivation-reactivation).
pub(crate) async fn deactivate_screen(framed: &mut FrontFramed) -> Result<(), RdpError> {
    let pdu = ShareControlHeader {
        share_id: SCREEN_SHARE_ID,
        pdu_source: FRONT_IO_CHANNEL,
        share_control_pdu: ShareControlPdu::ServerDeactivateAll(
            ironrdp_pdu::rdp::headers::ServerDeactivateAll,
        ),
    };
    send_indication(framed, &pdu).await
}

/// Show a refusal screen for `hold` (the client's input is read and
/// dropped meanwhile), then the error code and the disconnect. Falls back
/// to the error code alone when the screen cannot be shown.
pub(crate) async fn refuse_with_screen(
    front: &mut FrontSession,
    code: ProtocolIndependentCode,
    screen: Option<(&super::screen::ScreenFont, super::screen::RefusalText)>,
    hold: std::time::Duration,
) {
    use ironrdp_async::FramedWrite as _;
    let Some((font, text)) = screen.filter(|_| !hold.is_zero()) else {
        refuse_front(front, code).await;
        return;
    };
    let (width, height) = (front.gcc.core.desktop_width, front.gcc.core.desktop_height);
    let canvas = super::screen::refusal_screen(font, width, height, &text);
    let framed = &mut front.framed;
    let shown = if front.screen_active {
        paint(framed, &canvas, None).await
    } else {
        show_screen(framed, &canvas).await
    };
    if let Err(e) = shown {
        warn!(error = %e, "could not show the refusal screen");
        refuse_front(front, code).await;
        return;
    }
    front.screen_active = true;
    let framed = &mut front.framed;
    info!(reason = %text.detail, "refusal screen shown");
    let _ = tokio::time::timeout(hold, async { while framed.read_pdu().await.is_ok() {} }).await;
    match refusal_pdus(ErrorInfo::ProtocolIndependentCode(code), true) {
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
    use super::{RdpError, negotiate, person_only, split_target};
    use crate::config::NlaOffer;
    use crate::fuzzing::FuzzControl;
    use std::net::{IpAddr, Ipv4Addr};

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
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
        let (_, requested, selected, cookie) =
            negotiate(server, NlaOffer::Always, &FuzzControl, LOCAL)
                .await
                .expect("negotiated");
        assert_eq!(cookie.as_deref(), Some("tanaka"));
        assert!(requested.contains(SecurityProtocol::HYBRID));
        assert_eq!(selected, SecurityProtocol::HYBRID);
    }

    #[tokio::test]
    async fn a_client_without_tls_is_told_so_and_named_for_the_audit() {
        let (mut client, server) = tokio::io::duplex(4096);
        let request = encode_vec(&X224(nego::ConnectionRequest {
            nego_data: None,
            flags: nego::RequestFlags::empty(),
            protocol: SecurityProtocol::empty(),
            correlation_info: None,
        }))
        .unwrap();
        client.write_all(&request).await.unwrap();
        match negotiate(server, NlaOffer::Always, &FuzzControl, LOCAL).await {
            Err(RdpError::NoCommonSecurity(detail)) => {
                assert!(detail.contains("no TLS"), "{detail}")
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("standard RDP security accepted"),
        }
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
        match negotiate(server, NlaOffer::Always, &FuzzControl, LOCAL).await {
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
    fn a_bare_person_names_no_target_and_anything_else_is_not_bare() {
        assert_eq!(person_only("tanaka", None), Some("tanaka".into()));
        assert_eq!(person_only("tanaka", Some(" ")), Some("tanaka".into()));
        for (user, domain) in [
            ("", None),
            ("tanaka@fa", None),
            ("fa\\tanaka", None),
            ("tanaka", Some("fa")),
            ("@", None),
        ] {
            assert_eq!(person_only(user, domain), None, "{user:?} {domain:?}");
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
