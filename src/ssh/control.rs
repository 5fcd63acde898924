//! What the SSH gateway needs from the rest of sekisho, and nothing more:
//! the **control** side of the gateway (the gateway itself is the data side).
//!
//! The gateway (front, back, relay) only speaks SSH. Everything that is a
//! decision or a record — who the person is, whether they may reach this
//! target now, which credential to inject, where the recording goes, whether
//! an admin wants the session stopped — is asked of an [`SshControl`]. The real
//! one is [`SshServices`](super::services::SshServices), over `auth`, `policy`,
//! `store`, `recording` and `session`; the integration tests drive it through
//! real `sekisho serve` processes. The types here are plain on purpose, so
//! neither side has to import the other's internals.
//!
//! Names: the RDP gateway has the same trait as `rdp::control::RdpControl`,
//! implemented by `rdp::services::RdpServices`; both adapters sit on
//! `session::Services`, the protocol-independent part (store, sign-in,
//! policies, live registry, archive key). "core" is not used as a name (it
//! shadows the standard library's `core`), nor is "bastion" (that is the
//! product).

use std::future::Future;
use std::net::IpAddr;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;
use zeroize::Zeroizing;

/// One sign-in attempt, as the gateway knows it when it asks the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    /// The person part of the SSH user name (`tanaka` in `tanaka@fa-db01`).
    pub person: String,
    /// The target part, if the person named one.
    pub target: Option<String>,
    /// The client's address (canonical: IPv4-mapped IPv6 is IPv4).
    pub source: IpAddr,
}

/// A public key the client proved it holds (its signature was verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedKey {
    /// OpenSSH `SHA256:…` fingerprint, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The key in `authorized_keys` form (`ssh-ed25519 AAAA…`), no comment.
    pub openssh: String,
}

/// The outcome of a first factor (password, ticket or key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstFactor {
    /// The first factor is right. `needs_code` is false inside the sign-in
    /// window (a code was accepted recently for this person and address).
    Accepted { needs_code: bool },
    /// The secret was a one-time ticket, now spent. A ticket is complete
    /// sign-in on its own and is bound to one target (and to ssh).
    Ticket { target: String },
    /// Wrong, unknown, locked, disabled: the person is never told which.
    Rejected,
}

/// A target this person may reach now, for the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachableTarget {
    pub name: String,
    pub system: String,
    pub protocol: String,
    /// When the access that allows it ends (contract, hours, whichever first).
    pub until: DateTime<Utc>,
}

/// What the gateway asks the policy to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub person: String,
    pub target: String,
    pub source: IpAddr,
    /// The person signed in with a one-time ticket.
    pub by_ticket: bool,
}

/// A credential for the target, injected by the gateway, never shown.
/// Zeroized when dropped.
pub enum Credential {
    Password(Zeroizing<String>),
    /// An OpenSSH private key (PEM text, unencrypted).
    PrivateKey(Zeroizing<String>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Password(_) => f.write_str("Password(***)"),
            Credential::PrivateKey(_) => f.write_str("PrivateKey(***)"),
        }
    }
}

/// A granted session: where to connect, as whom, and until when.
#[derive(Debug)]
pub struct Grant {
    pub session_id: Uuid,
    pub target: String,
    pub system: String,
    /// Host name or address of the target.
    pub address: String,
    pub port: u16,
    pub account: String,
    pub credential: Credential,
    /// The target's host key as pinned in policy: OpenSSH `SHA256:…`.
    pub host_key_fingerprint: String,
    /// The hard end of the session (grant end, contract end, max_session).
    pub ends_at: DateTime<Utc>,
}

/// The policy's answer.
#[derive(Debug)]
pub enum Decision {
    Allowed(Grant),
    /// Shown to the person as is: write it for them, in plain words.
    Denied {
        reason: String,
    },
}

/// Why the gateway could not record; the session ends (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("recording failed: {0}")]
pub struct RecordingFailed(pub String);

/// What kind of thing the gateway refused on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedKind {
    /// `subsystem` request (sftp and any other).
    Subsystem,
    /// `exec` of a file-transfer command (scp, sftp-server, rsync --server…).
    FileTransferExec,
    /// `direct-tcpip` channel (`ssh -L`, `ssh -D`).
    LocalForward,
    /// `tcpip-forward` global request (`ssh -R`).
    RemoteForward,
    /// Unix-socket forwarding, either way.
    StreamLocalForward,
    /// `auth-agent-req@openssh.com` (`ssh -A`).
    AgentForward,
    /// `x11-req` (`ssh -X`, `ssh -Y`).
    X11Forward,
    /// Any other channel type or request the gateway does not relay.
    Other,
}

impl RefusedKind {
    /// A short stable name for audit rows and recordings.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusedKind::Subsystem => "subsystem",
            RefusedKind::FileTransferExec => "file-transfer-exec",
            RefusedKind::LocalForward => "local-forward",
            RefusedKind::RemoteForward => "remote-forward",
            RefusedKind::StreamLocalForward => "streamlocal-forward",
            RefusedKind::AgentForward => "agent-forward",
            RefusedKind::X11Forward => "x11-forward",
            RefusedKind::Other => "other",
        }
    }
}

/// One event of a terminal session, in the order it happened. `channel` is
/// the front channel number (a connection may carry several sessions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Bytes the person typed (or piped in).
    Input {
        channel: u32,
        data: Bytes,
    },
    /// Bytes the target sent back; `stderr` for extended data type 1.
    Output {
        channel: u32,
        stderr: bool,
        data: Bytes,
    },
    /// A pseudo-terminal was requested with this size.
    Pty {
        channel: u32,
        term: String,
        cols: u32,
        rows: u32,
    },
    /// The terminal was resized.
    Resize {
        channel: u32,
        cols: u32,
        rows: u32,
    },
    /// An interactive shell was started.
    Shell {
        channel: u32,
    },
    /// A command line was executed (`ssh host 'cmd'`).
    Exec {
        channel: u32,
        command: String,
    },
    /// The remote command ended.
    Exit {
        channel: u32,
        status: ExitStatus,
    },
    ChannelOpened {
        kind: String,
        detail: String,
    },
    ChannelRefused {
        kind: RefusedKind,
        detail: String,
    },
    /// A note from sekisho itself (warnings, end reasons).
    Mark {
        text: String,
    },
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    Code(u32),
    /// Killed by a signal (name without `SIG`, e.g. `TERM`).
    Signal {
        name: String,
        core_dumped: bool,
    },
}

/// The recording of one session. An error ends the session at once — no
/// recording, no session.
pub trait SessionRecorder: Send + Sync + 'static {
    /// Hands the event to the writer; when the writer is behind, waits for
    /// room in its queue without holding the thread (bulk output is held
    /// back instead of piling up, and the other connections on the same
    /// connection thread go on).
    fn record(
        &self,
        event: SessionEvent,
    ) -> impl Future<Output = Result<(), RecordingFailed>> + Send;
    /// Resolves when the archive can no longer be written (disk full, I/O
    /// error found by the writer task after `record` returned Ok).
    fn failed(&self) -> impl Future<Output = RecordingFailed> + Send;
    /// Seals the archive (flush, trailer, signature).
    fn finish(&self) -> impl Future<Output = Result<(), RecordingFailed>> + Send;
}

/// A live session as registered with the core (for `sekisho sessions list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub session_id: Uuid,
    pub person: String,
    pub target: String,
    pub source: IpAddr,
    pub started_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// Fires when an admin stops the session; the value is the reason shown to
/// the person. A dropped sender means "nobody will ever kill it".
pub type KillSignal = tokio::sync::oneshot::Receiver<String>;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndStatus {
    /// The remote side or the person closed it normally.
    Completed,
    /// An administrator stopped it.
    Killed,
    /// The grant's end was reached.
    TimeLimit,
    /// No input for the configured idle timeout.
    IdleTimeout,
    /// The recording could not be written.
    RecordingFailed,
    /// The target could not be reached, refused the credential, or its host
    /// key did not match the pin.
    TargetFailed,
    /// sekisho is shutting down.
    Shutdown,
    /// The connection to the target died under a live session.
    TargetLost,
}

impl EndStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EndStatus::Completed => "completed",
            EndStatus::Killed => "killed",
            EndStatus::TimeLimit => "time-limit",
            EndStatus::IdleTimeout => "idle-timeout",
            EndStatus::RecordingFailed => "recording-failed",
            EndStatus::TargetFailed => "target-failed",
            EndStatus::Shutdown => "shutdown",
            EndStatus::TargetLost => "target-lost",
        }
    }
}

/// The session's end, for the session row and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    pub status: EndStatus,
    pub reason: String,
    /// The last exit status relayed, if any.
    pub exit: Option<ExitStatus>,
    /// Where and how the target connection failed, for a target failure.
    pub failure: Option<super::back::ConnectFailure>,
}

/// Everything the SSH gateway needs from the rest of sekisho.
///
/// The core applies lockout and audits every sign-in attempt itself; the
/// gateway adds the failure delay and never tells the person which factor
/// was wrong. The core audits denials in `authorize`.
pub trait SshControl: Send + Sync + 'static {
    type Recorder: SessionRecorder;

    /// The secret sent as a password (password method or the first
    /// keyboard-interactive answer): the person's password, or a one-time
    /// ticket bound to `attempt.target` and ssh.
    fn check_password(
        &self,
        attempt: &SignIn,
        secret: &str,
    ) -> impl Future<Output = FirstFactor> + Send;

    /// Whether this key is registered for the person, without counting a
    /// failure (OpenSSH offers every key it has before signing with one).
    fn key_is_registered(
        &self,
        person: &str,
        key: &OfferedKey,
    ) -> impl Future<Output = bool> + Send;

    /// A public key the client proved it holds.
    fn check_public_key(
        &self,
        attempt: &SignIn,
        key: &OfferedKey,
    ) -> impl Future<Output = FirstFactor> + Send;

    /// The 6-digit one-time code (RFC 6238), after an accepted first factor.
    /// On success the core opens the sign-in window for person and source.
    fn check_code(&self, attempt: &SignIn, code: &str) -> impl Future<Output = bool> + Send;

    /// The connection closed after `attempt`'s first factor was accepted,
    /// before a right code: audited as a sign-in that was given up.
    fn sign_in_abandoned(&self, attempt: &SignIn) -> impl Future<Output = ()> + Send;

    /// Targets this person may reach by ssh now, from this address.
    fn reachable_targets(
        &self,
        person: &str,
        source: IpAddr,
    ) -> impl Future<Output = Vec<ReachableTarget>> + Send;

    /// The policy decision for protocol ssh. The core audits it.
    fn authorize(&self, request: &AccessRequest) -> impl Future<Output = Decision> + Send;

    /// Opens the archive for a granted session. Called before the target is
    /// contacted: without a recording there is no session.
    fn open_recording(
        &self,
        grant: &Grant,
        request: &AccessRequest,
    ) -> impl Future<Output = Result<Self::Recorder, RecordingFailed>> + Send;

    /// Registers the live session; the returned signal fires on `sessions kill`.
    fn session_started(&self, live: &LiveSession) -> impl Future<Output = KillSignal> + Send;

    /// Audits something the gateway refused (forwarding, file transfer).
    /// `session_id` is None when no session was granted yet on the connection.
    fn channel_refused(
        &self,
        person: &str,
        source: IpAddr,
        session_id: Option<Uuid>,
        kind: RefusedKind,
        detail: &str,
    ) -> impl Future<Output = ()> + Send;

    /// The session is over (always called once after `session_started`).
    fn session_ended(&self, session_id: Uuid, end: &SessionEnd) -> impl Future<Output = ()> + Send;
}
