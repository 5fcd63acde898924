//! What the RDP gateway needs from the rest of sekisho, as one trait with
//! plain types, so that `rdp/` depends on no other module's internals: the
//! **control** side of the gateway (the gateway itself is the data side).
//! The real one is [`RdpServices`](super::services::RdpServices), over the
//! auth, policy, store, session and recording modules; tests implement it
//! in memory.
//!
//! Names: the SSH gateway has the same trait as `ssh::control::SshControl`,
//! implemented by `ssh::services::SshServices`; both adapters sit on
//! `session::Services`. "core" is not used as a name (it shadows the
//! standard library's `core`), nor is "bastion" (that is the product).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

/// How the client protected its sign-in on the front side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontSecurity {
    /// TLS: the password field carries password + 6-digit code, or a ticket.
    Tls,
    /// CredSSP: the password field carries a one-time ticket.
    Nla,
}

/// A sign-in attempt as the client sent it, the target already split off.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// The sekisho user name (without the target part).
    pub user: String,
    /// The target named in the user name; a one-time ticket is bound to it.
    pub target: String,
    /// Password followed by a TOTP code, a bare password (inside the sign-in
    /// window), or a one-time ticket; the authenticator tells them apart.
    pub secret: String,
    pub source: IpAddr,
    pub security: FrontSecurity,
}

/// Who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub user: String,
}

/// A refusal with the reason that goes to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    /// The policy rule that refused (`hours`, `no_access`...), for the
    /// headline of the refusal screen; `None` for a failed sign-in.
    pub rule: Option<&'static str>,
}

impl Refusal {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            rule: None,
        }
    }

    pub fn by_rule(rule: &'static str, reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            rule: Some(rule),
        }
    }

    /// A person who named no target has none to choose from.
    pub fn no_reachable_target() -> Self {
        Self::by_rule(NO_REACHABLE_TARGET_RULE, NO_REACHABLE_TARGET)
    }
}

/// The rule a refusal carries when a person who named no target has none
/// to choose from (not a `policy::Rule`: no single target was decided).
pub const NO_REACHABLE_TARGET_RULE: &str = "no_reachable_target";

/// The reason audited (and shown) with [`NO_REACHABLE_TARGET_RULE`].
const NO_REACHABLE_TARGET: &str =
    "no target you may reach over RDP now from this address (name one as person@target to see why)";

/// A target offered to a person who signed in without naming one (the
/// drawn choice screen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedTarget {
    pub name: String,
    pub system: String,
    /// When the access that allows it ends, in the bastion's time zone
    /// (`2026-12-05 17:15`).
    pub until: String,
}

/// Everything needed to reach the target, decided by policy.
#[derive(Clone)]
pub struct TargetGrant {
    /// The session's id, chosen by the core when it decides, so the audit
    /// log's allow event and the recording carry the same id.
    pub session_id: uuid::Uuid,
    /// Policy name of the target.
    pub target: String,
    pub address: SocketAddr,
    /// Account and injected credential; never shown to the client.
    pub account: String,
    pub domain: Option<String>,
    pub password: String,
    /// SHA-256 of the DER of the target's TLS leaf certificate.
    pub cert_sha256: [u8; 32],
    /// The session this one hops from, when it is a server-to-server hop.
    pub parent_session: Option<uuid::Uuid>,
}

impl std::fmt::Debug for TargetGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credential is deliberately left out of logs.
        f.debug_struct("TargetGrant")
            .field("target", &self.target)
            .field("address", &self.address)
            .field("account", &self.account)
            .field("parent_session", &self.parent_session)
            .finish_non_exhaustive()
    }
}

/// Metadata the recording header needs to decode the session later.
#[derive(Debug, Clone)]
pub struct SessionStart {
    pub session_id: uuid::Uuid,
    pub person: Person,
    pub target: String,
    pub source: IpAddr,
    pub parent_session: Option<uuid::Uuid>,
    /// The session whose dropped connection this one resumes (sekisho's
    /// auto-reconnect cookie).
    pub resumes: Option<uuid::Uuid>,
    pub desktop_width: u16,
    pub desktop_height: u16,
    /// Keyboard layout (e.g. 0x411 Japanese) and type (7 = Japanese) from the
    /// client's core data, so keystrokes can be rendered as text.
    pub keyboard_layout: u32,
    pub keyboard_type: u32,
    pub keyboard_subtype: u32,
    /// MCS I/O and user channel ids as the client sees them.
    pub io_channel: u16,
    pub user_channel: u16,
    /// Static channels forwarded, with the ids the client sees.
    pub channels: Vec<(String, u16)>,
}

/// Which way a PDU went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

/// One recorded event. PDUs are kept whole (as on the wire, after the
/// gateway's rewriting) so a replayer can decode them with ironrdp.
#[derive(Debug, Clone)]
pub enum RdpEvent {
    /// A fast-path PDU: client input or server graphics/pointer update.
    FastPath { direction: Direction, pdu: Bytes },
    /// A slow-path X.224/MCS PDU on the I/O or user channel (slow-path
    /// input, Demand Active with the share id and codecs, bitmap updates).
    SlowPath {
        direction: Direction,
        channel: u16,
        pdu: Bytes,
    },
    /// The target activated a share (its Demand Active follows as a
    /// SlowPath event, with the capability sets the replayer decodes with).
    ShareActivated { share_id: u32 },
    /// The gateway asked the target to redraw the whole desktop (Refresh
    /// Rect); the updates that follow form a keyframe a replayer can seek to.
    Keyframe { width: u16, height: u16 },
    /// A channel that was refused (static or dynamic).
    ChannelRefused { name: String, reason: String },
    /// This session resumes an earlier one whose client connection was
    /// lost (sekisho's auto-reconnect cookie).
    Resumed { from: uuid::Uuid },
}

/// A channel refusal kind for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Static,
    Dynamic,
}

/// Writes one session's recording. A failed `record` ends the session
/// (fail closed).
pub trait RdpRecorder: Send + 'static {
    fn record(&mut self, event: RdpEvent) -> impl Future<Output = Result<(), Refusal>> + Send;
    fn finish(self) -> impl Future<Output = Result<(), Refusal>> + Send;
}

/// Kill signal for a live session: resolves with the reason when an
/// administrator (or a time limit) ends it.
pub struct KillSignal(pub tokio::sync::watch::Receiver<Option<String>>);

impl KillSignal {
    /// Wait until a kill is requested; pending forever if the sender is gone
    /// without killing.
    pub async fn killed(&mut self) -> String {
        loop {
            if let Some(reason) = self.0.borrow().clone() {
                return reason;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The gateway's view of sekisho.
pub trait RdpControl: Send + Sync + 'static {
    type Recorder: RdpRecorder;

    /// Check the sign-in; a refusal is audited by the implementation.
    fn authenticate(
        &self,
        sign_in: &SignIn,
    ) -> impl Future<Output = Result<Person, Refusal>> + Send;

    /// The secret an NLA (CredSSP) client must prove for `user` going to
    /// `target`: the person's live one-time ticket, or `None`. This only
    /// looks up; `authenticate` is still called with the proved secret
    /// (and consumes the ticket and audits).
    fn nla_secret(
        &self,
        user: &str,
        target: &str,
        source: IpAddr,
    ) -> impl Future<Output = Option<String>> + Send;

    /// Audit a failed NLA sign-in (the secret never reaches the gateway in
    /// clear, so `authenticate` cannot be called for it).
    fn nla_refused(
        &self,
        user: &str,
        source: IpAddr,
        reason: &str,
    ) -> impl Future<Output = ()> + Send;

    /// Whether a TLS sign-in lacks its one-time code: a bare password (no
    /// six digits at the end, not a ticket) while no sign-in window is open
    /// for this person and address. Checks no factor and audits nothing, so
    /// the gateway can ask for the code without the attempt counting twice
    /// or telling anything about the password.
    fn code_missing(&self, sign_in: &SignIn) -> impl Future<Output = bool> + Send;

    /// The targets a signed-in person who named none may reach over RDP
    /// now, from this address (the RDP rule applied: a virtual server only
    /// as a hop). An empty offer ends the connection and is audited as a
    /// denial here.
    fn offer_targets(
        &self,
        person: &Person,
        source: IpAddr,
    ) -> impl Future<Output = Vec<OfferedTarget>> + Send;

    /// Apply the RDP rule (physical target, or an allowed hop) and resolve
    /// the target's address, account, credential and certificate pin.
    fn authorize(
        &self,
        person: &Person,
        target: &str,
        source: IpAddr,
    ) -> impl Future<Output = Result<TargetGrant, Refusal>> + Send;

    /// Open the recording; no recording, no session.
    fn open_recording(
        &self,
        start: &SessionStart,
    ) -> impl Future<Output = Result<Self::Recorder, Refusal>> + Send;

    /// Audit a refused channel.
    fn channel_refused(
        &self,
        session_id: uuid::Uuid,
        kind: ChannelKind,
        name: &str,
        reason: &str,
    ) -> impl Future<Output = ()> + Send;

    /// An auto-reconnect cookie for the client of this running session, or
    /// `None` when reconnection is off (`[rdp] reconnect_grace = 0`).
    fn issue_reconnect(
        &self,
        start: &SessionStart,
    ) -> impl Future<Output = Option<ironrdp_pdu::rdp::session_info::ServerAutoReconnect>> + Send;

    /// Redeem the auto-reconnect answer in a Client Info PDU: the person and
    /// target it resumes, or `None` when the cookie is stale (the client
    /// also sent its password, which is checked next). A cookie copied to
    /// another address is a refusal of the connection: its password is not
    /// checked, so the code it replays counts toward no lockout. Audits
    /// resumptions and refusals.
    fn resume(
        &self,
        answer: &ironrdp_pdu::rdp::client_info::ClientAutoReconnect,
        source: IpAddr,
    ) -> impl Future<Output = Result<Option<super::reconnect::Resumption>, Refusal>> + Send;

    /// Register the live session; the returned signal fires on kill.
    fn register_live(&self, start: &SessionStart) -> impl Future<Output = KillSignal> + Send;

    /// The session ended (normally or not); `reason` says why, and
    /// `failure` where and how the target connection failed, if it did.
    fn session_closed(
        &self,
        session_id: uuid::Uuid,
        how: SessionClose,
        reason: &str,
        failure: Option<super::back::ConnectFailure>,
    ) -> impl Future<Output = ()> + Send;
}

/// How the gateway saw a session end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionClose {
    /// Either side ended it, or sekisho did (kill, time, idle, failure).
    Closed,
    /// The target's connection died under the live session (no Disconnect
    /// Provider Ultimatum, a reset, an I/O error): not a normal logout.
    TargetLost,
    /// The client's connection failed under the live session (a reset, a
    /// network drop): the client may come back with its reconnect cookie.
    ClientLost,
}
