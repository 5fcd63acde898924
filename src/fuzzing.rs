//! Entry points for the fuzz targets in `fuzz/` (see README, "Fuzzing").
//! Not an API: hidden from the docs and free to change.
//!
//! Every fuzz target reaches sekisho through this module only, so when a
//! module moves, this file is the one to fix. The wrappers are thin: each
//! calls the code the gateways and the offline tools run, with no logic of
//! its own beyond building the in-memory stream and the stand-in control side that
//! the RDP front needs.

use std::net::{IpAddr, Ipv4Addr};

pub use crate::config::{Config, format_duration, parse_duration};
pub use crate::policy::hours::Hours;
pub use crate::policy::model::PolicySet;
pub use crate::protocol::rdp::pdu::{is_slow_path_input, share_transition};
pub use crate::rdp::front::split_target;
pub use crate::rdp::steer::steer_confirm_active;
pub use crate::recording::event::{Event, TimedEvent};
pub use crate::recording::format::{RdpInfo, SessionMeta};
pub use crate::recording::keys::{ArchiveKey, PublicKey};
pub use crate::recording::reader::{ReadError, Reader};
pub use crate::recording::verify::{Verdict, verify_file};
pub use crate::recording::writer::{ArchiveWriter, WriterOptions};
pub use crate::replay::desktop::keystrokes::keystroke_log;
pub use crate::ssh::front::split_user;
pub use crate::ssh::rules::{env_allowed, file_transfer_in_exec};

use crate::admission::{AdmissionLimits, Gate, Startups};
use crate::rdp::back::ConnectFailure;
use crate::rdp::control::{
    ChannelKind, KillSignal, Person, RdpControl, RdpEvent, RdpRecorder, Refusal, SessionClose,
    SessionStart, SignIn, TargetGrant,
};
use crate::rdp::relay;
use ironrdp_pdu::nego;

// ---- RDP: NLA and the front handshake --------------------------------------

/// User and domain of an NTLM AUTHENTICATE message (the NLA front's parser).
pub fn ntlm_authenticate_user(token: &[u8]) -> Option<(String, Option<String>)> {
    crate::rdp::nla::ntlm_authenticate_user(token)
}

/// The person whose one-time ticket [`FuzzControl`] knows (target `fuzz-target`).
pub const NLA_PERSON: &str = "fuzzer";
/// That ticket.
pub const NLA_TICKET: &str = "fuzz-ticket";
/// What the front hands the CredSSP server as the TLS public key (a
/// client must bind its CredSSP exchange to this key).
pub const PUBLIC_KEY: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x01];

/// Where the RDP front handshake starts.
#[derive(Debug, Clone, Copy)]
pub enum FrontStart {
    /// At the X.224 Connection Request (plain TCP). `pipelined`: the client
    /// sends everything at once instead of waiting for the confirm.
    X224 { offer_nla: bool, pipelined: bool },
    /// Inside the security layer with NLA selected: CredSSP, then MCS.
    CredSsp,
    /// Inside the security layer with TLS selected: MCS Connect Initial.
    Mcs,
}

/// What the front made of a client, as far as the gateway gets before it
/// asks the control side to authenticate.
#[derive(Debug)]
pub struct FrontOutcome {
    /// The user name (from CredSSP or the Client Info PDU).
    pub username: String,
    pub domain: Option<String>,
    /// `person@target` split as the RDP session does (`rdp::front::split_target`).
    pub person_and_target: Option<(String, String)>,
    pub channels: Vec<String>,
}

/// Runs the RDP front handshake (`rdp::front`) on `client_bytes` as the
/// whole byte stream the client sends, with the TLS layer left out (the
/// bytes after the X.224 request are what would be inside TLS). What the
/// front writes back is discarded. Errors are the gateway's own.
pub fn rdp_front_handshake(start: FrontStart, client_bytes: &[u8]) -> Result<FrontOutcome, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let secured = match start {
            FrontStart::X224 {
                offer_nla,
                pipelined,
            } => {
                // A client that waits for the confirm sends the request
                // alone; TPKT's length (bytes 2..4) says where it ends.
                let request_len = if pipelined {
                    client_bytes.len()
                } else {
                    client_bytes.get(2..4).map_or(client_bytes.len(), |l| {
                        usize::from(u16::from_be_bytes([l[0], l[1]]))
                    })
                };
                let stream = ClientBytes::new(client_bytes, request_len);
                return rdp_front_accept(stream, offer_nla).await;
            }
            FrontStart::CredSsp => nego::SecurityProtocol::HYBRID,
            FrontStart::Mcs => nego::SecurityProtocol::SSL,
        };
        let mut framed = ironrdp_async::Framed::new(ClientBytes::new(client_bytes, usize::MAX));
        accept_after_upgrade(&mut framed, secured, secured).await
    })
}

/// The RDP front handshake over any stream, the TLS upgrade left out:
/// X.224 negotiation, then (on the same stream) CredSSP if NLA was
/// selected, MCS and the Client Info PDU.
pub async fn rdp_front_accept<S>(stream: S, offer_nla: bool) -> Result<FrontOutcome, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin,
{
    let nla = if offer_nla {
        crate::config::NlaOffer::Always
    } else {
        crate::config::NlaOffer::Never
    };
    let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (stream, requested, selected, _cookie) =
        crate::rdp::front::negotiate(stream, nla, &FuzzControl, source)
            .await
            .map_err(|e| e.to_string())?;
    let mut framed = ironrdp_async::Framed::new(stream);
    accept_after_upgrade(&mut framed, requested, selected).await
}

async fn accept_after_upgrade<S>(
    framed: &mut ironrdp_async::Framed<ironrdp_tokio::TokioStream<S>>,
    requested: nego::SecurityProtocol,
    selected: nego::SecurityProtocol,
) -> Result<FrontOutcome, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin,
{
    let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // No limits: every input is one client, and none may be refused for
    // being one of many.
    let admission = Gate::logging_only(AdmissionLimits {
        max_startups: Startups {
            soft: u32::MAX,
            drop_percent: 100,
            hard: u32::MAX,
        },
        max_startups_per_source: 0,
        signin_attempts_per_minute: 0,
    });
    let secured = crate::rdp::front::accept_secured(
        framed,
        requested,
        selected,
        PUBLIC_KEY.to_vec(),
        &FuzzControl,
        source,
        &admission,
    )
    .await
    .map_err(|e| e.to_string())?;
    let (username, domain) = match secured.nla {
        Some(id) => (id.username, id.domain),
        None => {
            let creds = &secured.client_info.credentials;
            (creds.username.clone(), creds.domain.clone())
        }
    };
    Ok(FrontOutcome {
        person_and_target: split_target(&username, domain.as_deref()),
        username,
        domain,
        channels: secured.channels.into_iter().map(|c| c.name).collect(),
    })
}

/// The client side of an in-memory connection. Reads come from `data`;
/// the bytes past `gate` only once the front has written something (a
/// client waits for the X.224 confirm before it goes on). Writes vanish.
struct ClientBytes {
    data: Vec<u8>,
    at: usize,
    gate: usize,
}

impl ClientBytes {
    fn new(data: &[u8], gate: usize) -> Self {
        ClientBytes {
            data: data.to_vec(),
            at: 0,
            gate,
        }
    }
}

impl tokio::io::AsyncRead for ClientBytes {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let end = self.gate.min(self.data.len());
        let rest = self.data.get(self.at..end).unwrap_or_default();
        let n = rest.len().min(buf.remaining());
        buf.put_slice(rest.get(..n).unwrap_or_default());
        self.at += n;
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for ClientBytes {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.gate = usize::MAX;
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The front handshake asks the control side only for an NLA ticket (and to
/// audit a failed one); everything after sign-in is refused.
pub(crate) struct FuzzControl;

pub(crate) struct NoRecorder;

impl RdpRecorder for NoRecorder {
    async fn record(&mut self, _: RdpEvent) -> Result<(), Refusal> {
        Err(Refusal::new("fuzzing"))
    }
    async fn finish(self) -> Result<(), Refusal> {
        Ok(())
    }
}

impl RdpControl for FuzzControl {
    type Recorder = NoRecorder;

    async fn authenticate(&self, _: &SignIn) -> Result<Person, Refusal> {
        Err(Refusal::new("fuzzing"))
    }
    async fn nla_secret(&self, user: &str, target: &str, _: IpAddr) -> Option<String> {
        (user == NLA_PERSON && target == "fuzz-target").then(|| NLA_TICKET.to_owned())
    }
    async fn nla_refused(&self, _: &str, _: IpAddr, _: &str) {}
    async fn authorize(&self, _: &Person, _: &str, _: IpAddr) -> Result<TargetGrant, Refusal> {
        Err(Refusal::new("fuzzing"))
    }
    async fn open_recording(&self, _: &SessionStart) -> Result<NoRecorder, Refusal> {
        Err(Refusal::new("fuzzing"))
    }
    async fn channel_refused(&self, _: uuid::Uuid, _: ChannelKind, _: &str, _: &str) {}
    async fn register_live(&self, _: &SessionStart) -> KillSignal {
        KillSignal(tokio::sync::watch::channel(None).1)
    }
    async fn session_closed(
        &self,
        _: uuid::Uuid,
        _: SessionClose,
        _: &str,
        _: Option<ConnectFailure>,
    ) {
    }
    async fn issue_reconnect(
        &self,
        _: &SessionStart,
    ) -> Option<ironrdp_pdu::rdp::session_info::ServerAutoReconnect> {
        None
    }
    async fn resume(
        &self,
        _: &ironrdp_pdu::rdp::client_info::ClientAutoReconnect,
        _: IpAddr,
    ) -> Result<Option<crate::rdp::reconnect::Resumption>, Refusal> {
        Ok(None)
    }
    async fn code_missing(&self, _: &SignIn) -> bool {
        false
    }
    async fn offer_targets(
        &self,
        _: &Person,
        _: IpAddr,
    ) -> Vec<crate::rdp::control::OfferedTarget> {
        Vec::new()
    }
}

// ---- RDP: relay decoders --------------------------------------------------

/// A DVC Create Request in a drdynvc chunk: (cbId, channel id, name).
pub fn parse_dvc_create(chunk: &[u8]) -> Option<(u8, u32, String)> {
    relay::parse_dvc_create(chunk).map(|c| (c.cb_id, c.channel_id, c.name))
}

/// The refusal the gateway answers a Create Request with.
pub fn dvc_refusal(cb_id: u8, channel_id: u32, name: String) -> Vec<u8> {
    relay::dvc_refusal(&relay::DvcCreate {
        cb_id,
        channel_id,
        name,
    })
}

/// The relay's drdynvc gate.
#[derive(Default)]
pub struct DvcGate(relay::DvcGate);

impl DvcGate {
    pub fn allow(&mut self, channel_id: u32) {
        self.0.allow(channel_id);
    }
    pub fn pass_from_client(&mut self, chunk: &[u8]) -> bool {
        self.0.pass_from_client(chunk)
    }
    pub fn pass_from_target(&mut self, chunk: &[u8]) -> bool {
        self.0.pass_from_target(chunk)
    }
}

/// Share id / desktop size the relay follows from the target's PDUs:
/// the transition and the desktop size after it.
pub fn share_observe(
    width: u16,
    height: u16,
    user_data: &[u8],
) -> (Option<Option<u32>>, (u16, u16)) {
    let mut state = relay::ShareState::new(width, height);
    let transition = state.observe(user_data);
    (transition, state.desktop)
}

pub fn is_withheld_server_pdu(user_data: &[u8]) -> Option<&'static str> {
    relay::is_withheld_server_pdu(user_data)
}

/// The channel tag of fast-path input in RDP recordings.
pub const RDP_FASTPATH_CHANNEL: u32 = crate::protocol::rdp::FASTPATH_CHANNEL;

// ---- recordings -----------------------------------------------------------

/// Decodes a decompressed chunk payload into (time delta, event).
pub fn decode_events(raw: &[u8]) -> Result<Vec<(u64, Event)>, String> {
    let mut decoder = crate::recording::event::Decoder::new(bytes::Bytes::copy_from_slice(raw));
    let mut out = Vec::new();
    while !decoder.is_empty() {
        out.push(decoder.next_event().map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Encodes events as the writer does.
pub fn encode_events(events: &[(u64, Event)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (delta, event) in events {
        crate::recording::event::encode(&mut out, *delta, event);
    }
    out
}

/// The archive key the fuzz targets seal and verify with (fixed, so that
/// the committed seed archives verify).
pub fn fuzz_archive_key() -> ArchiveKey {
    ArchiveKey::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32]))
}
