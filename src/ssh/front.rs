//! The front side: the russh server handler for one client connection.
//!
//! Sign-in is in `sign_in.rs` (a registered key or a password, then a
//! one-time code; or a one-time ticket). After sign-in, the first session
//! channel asks the policy. A denial is written to the person's stderr with
//! its reason and the channel exits 1. Channel requests are classified by
//! `rules`; refused ones go through the one handler in `refusals.rs`
//! (audited, recorded, explained on stderr) and never reach the target.
//! Without a target in the user name, `menu.rs` shows what may be reached.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use russh::server::{
    Auth, ChannelOpenHandle, Handler, Msg, PublicKeyOffer, Response, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure, ChannelWriteHalf, Pty, Sig};

use super::Shared;
use super::control::{AccessRequest, EndStatus, RefusedKind, SessionEvent, SshControl};
use super::relay::{Input, InputSender, input_queue, pump_input, pump_output, window_len};
use super::rules;
use super::session::{self, Live};
use crate::admission::Pending;

mod menu;
mod refusals;
mod sign_in;

use refusals::{Answer, Refusal};

pub use sign_in::split_user;
use sign_in::{AuthStage, SignedIn};

/// How long a request forwarded to the target may wait for its answer.
const BACK_REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// Errors that end a front connection.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
}

/// The connection's session, decided at the first session channel.
enum Slot<R> {
    Undecided,
    NoTarget,
    /// Denied by policy, or the target could not be used: the reason.
    Refused(String),
    Active(Arc<Live<R>>),
}

enum ChanState {
    /// Requests go to the target one by one until shell or exec.
    Setup(Option<Channel<russh::client::Msg>>),
    /// The menu of targets is shown; the person types a choice.
    Menu(String),
    Running(InputSender),
    Done,
}

struct FrontChannel {
    writer: Option<ChannelWriteHalf<Msg>>,
    state: ChanState,
    pty: Option<PtyRequest>,
}

#[derive(Clone)]
struct PtyRequest {
    term: String,
    cols: u32,
    rows: u32,
    px: u32,
    py: u32,
    modes: Vec<(Pty, u32)>,
}

/// One client connection.
pub(crate) struct Connection<C: SshControl> {
    shared: Arc<Shared<C>>,
    /// Read by the accept loop to enforce the sign-in grace time.
    signed_in_flag: Arc<AtomicBool>,
    source: IpAddr,
    auth: AuthStage,
    signed_in: Option<SignedIn>,
    slot: Slot<C::Recorder>,
    channels: HashMap<ChannelId, FrontChannel>,
    /// Refusals that happened before any channel could show them.
    pending_notices: Vec<String>,
    /// The connection's unauthenticated slot, given back at sign-in.
    admission: Pending,
}

impl<C: SshControl> Drop for Connection<C> {
    fn drop(&mut self) {
        if let Slot::Active(live) = &self.slot {
            live.end(EndStatus::Completed, "the connection was closed".into());
        }
        // A first factor was accepted but the code never came: say so in
        // the audit log, or the attempt would end there half-way.
        if let AuthStage::NeedCode(attempt) | AuthStage::AskedCode(attempt) = &self.auth
            && self.signed_in.is_none()
            // Not when the runtime itself is going away.
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let control = self.shared.control.clone();
            let attempt = attempt.clone();
            runtime.spawn(async move { control.sign_in_abandoned(&attempt).await });
        }
    }
}

impl<C: SshControl> Connection<C> {
    pub(crate) fn new(
        shared: Arc<Shared<C>>,
        source: IpAddr,
        signed_in_flag: Arc<AtomicBool>,
        admission: Pending,
    ) -> Self {
        Connection {
            shared,
            signed_in_flag,
            admission,
            source: crate::config::canonical_ip(source),
            auth: AuthStage::Start,
            signed_in: None,
            slot: Slot::Undecided,
            channels: HashMap::new(),
            pending_notices: Vec::new(),
        }
    }

    fn person(&self) -> String {
        self.signed_in
            .as_ref()
            .map(|s| s.person.clone())
            .unwrap_or_default()
    }

    fn live(&self) -> Option<Arc<Live<C::Recorder>>> {
        match &self.slot {
            Slot::Active(l) => Some(l.clone()),
            _ => None,
        }
    }

    /// Writes pending notices to a channel that can now show them.
    fn flush_notices(&mut self, channel: ChannelId, session: &mut Session) {
        for n in std::mem::take(&mut self.pending_notices) {
            let _ = session.extended_data(channel, 1, Bytes::from(n));
        }
    }

    /// Tells the person on any open channel, or keeps it for the first one.
    fn notice(&mut self, text: String, session: &mut Session) {
        let line = format!("sekisho: {text}\r\n");
        match self.channels.keys().next().copied() {
            Some(id) => {
                let _ = session.extended_data(id, 1, Bytes::from(line));
            }
            None => self.pending_notices.push(line),
        }
    }

    /// Answers a request with success, then writes `message` to stderr and
    /// ends the channel with exit status 1.
    fn end_channel_with(&mut self, channel: ChannelId, message: &str, session: &mut Session) {
        let _ = session.channel_success(channel);
        let _ = session.extended_data(channel, 1, Bytes::from(format!("sekisho: {message}\r\n")));
        let _ = session.exit_status_request(channel, 1);
        let _ = session.eof(channel);
        let _ = session.close(channel);
        if let Some(c) = self.channels.get_mut(&channel) {
            c.state = ChanState::Done;
        }
    }

    /// Opens the session for the first session channel (`session::open`).
    async fn decide(&mut self, front: russh::server::Handle) {
        let Some(signed) = self.signed_in.clone() else {
            self.slot = Slot::Refused("not signed in".into());
            return;
        };
        let Some(target) = signed.target.clone() else {
            self.slot = Slot::NoTarget;
            return;
        };
        let request = AccessRequest {
            person: signed.person.clone(),
            target,
            source: self.source,
            by_ticket: signed.by_ticket,
        };
        self.slot = match session::open(&self.shared, request, front).await {
            Ok(live) => Slot::Active(live),
            Err(reason) => Slot::Refused(reason),
        };
    }

    /// Opens the target-side channel for a front channel.
    async fn open_back_channel(&self) -> Result<Channel<russh::client::Msg>, String> {
        let Some(live) = self.live() else {
            return Err("no session".into());
        };
        match tokio::time::timeout(BACK_REPLY_TIMEOUT, live.back.channel_open_session()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(format!("the target refused a session channel: {e}")),
            Err(_) => Err("the target did not open a session channel in time".into()),
        }
    }

    /// Starts relaying a channel whose shell or exec the target accepted.
    fn start_relay(
        &mut self,
        id: ChannelId,
        back: Channel<russh::client::Msg>,
        session: &mut Session,
    ) {
        let Some(live) = self.live() else { return };
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        let Some(writer) = ch.writer.take() else {
            return;
        };
        let (back_read, back_write) = back.split();
        let (tx, rx) = input_queue();
        tokio::spawn(pump_input(
            rx,
            back_write,
            id,
            session.handle(),
            live.clone(),
        ));
        tokio::spawn(pump_output(id, back_read, writer, session.handle(), live));
        ch.state = ChanState::Running(tx);
    }

    /// Runs shell or exec on the target, or explains why not.
    async fn start(
        &mut self,
        id: ChannelId,
        exec: Option<&[u8]>,
        session: &mut Session,
    ) -> Result<(), FrontError> {
        self.flush_notices(id, session);
        let state = match self.channels.get_mut(&id) {
            Some(c) => std::mem::replace(&mut c.state, ChanState::Done),
            None => return Ok(()),
        };
        match state {
            ChanState::Setup(Some(mut back)) => {
                let channel = u32::from(id);
                let event = match exec {
                    Some(cmd) => SessionEvent::Exec {
                        channel,
                        command: String::from_utf8_lossy(cmd).into_owned(),
                    },
                    None => SessionEvent::Shell { channel },
                };
                // Fail closed: what cannot be recorded does not start.
                let recorded = match self.live() {
                    Some(live) => live.record(event).await,
                    None => false,
                };
                if !recorded {
                    session.channel_failure(id)?;
                    return Ok(());
                }
                let sent = match exec {
                    Some(cmd) => back.exec(true, cmd.to_vec()).await,
                    None => back.request_shell(true).await,
                };
                if sent.is_ok() && wait_reply(&mut back).await {
                    session.channel_success(id)?;
                    self.start_relay(id, back, session);
                } else {
                    session.channel_failure(id)?;
                }
            }
            ChanState::Setup(None) => match &self.slot {
                Slot::Refused(reason) => {
                    let reason = reason.clone();
                    self.end_channel_with(id, &reason, session);
                }
                Slot::NoTarget => {
                    let has_pty = self.channels.get(&id).is_some_and(|c| c.pty.is_some());
                    if exec.is_none() && has_pty {
                        session.channel_success(id)?;
                        let menu = self.menu_text().await;
                        let _ = session.data(id, Bytes::from(menu));
                        if let Some(c) = self.channels.get_mut(&id) {
                            c.state = ChanState::Menu(String::new());
                        }
                    } else {
                        let text = self.no_target_text(exec.is_some()).await;
                        let _ = session.channel_success(id);
                        let _ = session.extended_data(id, 1, Bytes::from(text));
                        let _ = session.exit_status_request(id, 1);
                        let _ = session.eof(id);
                        let _ = session.close(id);
                    }
                }
                _ => {
                    session.channel_failure(id)?;
                }
            },
            other => {
                // A second shell/exec on a running channel is a protocol error.
                if let Some(c) = self.channels.get_mut(&id) {
                    c.state = other;
                }
                session.channel_failure(id)?;
            }
        }
        Ok(())
    }
}

/// Waits for the target's answer to the last request on this channel.
async fn wait_reply(back: &mut Channel<russh::client::Msg>) -> bool {
    let wait = async {
        loop {
            match back.wait().await {
                Some(ChannelMsg::Success) => return true,
                Some(ChannelMsg::Failure) | None => return false,
                Some(_) => {}
            }
        }
    };
    tokio::time::timeout(BACK_REPLY_TIMEOUT, wait)
        .await
        .unwrap_or(false)
}

impl<C: SshControl> Handler for Connection<C> {
    type Error = FrontError;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.password_sign_in(user, password).await
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        self.key_offered(user, offer).await
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.key_sign_in(user, key).await
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        self.keyboard_interactive_sign_in(user, submethods, response)
            .await
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.signed_in.is_none() {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        if matches!(self.slot, Slot::Undecided) {
            self.decide(session.handle()).await;
        }
        let id = channel.id();
        // The read half is dropped: requests and data arrive through the
        // handler callbacks, and russh's copies to a dropped reader are free.
        let (_read, writer) = channel.split();
        let back = match &self.slot {
            Slot::Active(live) => {
                live.add_channel(id);
                live.record(SessionEvent::ChannelOpened {
                    kind: "session".into(),
                    detail: format!("channel {}", u32::from(id)),
                })
                .await;
                match self.open_back_channel().await {
                    Ok(b) => Some(b),
                    Err(e) => {
                        reply
                            .reject(ChannelOpenFailure::Other {
                                code: 2,
                                reason: format!("sekisho: {e}"),
                            })
                            .await;
                        return Ok(());
                    }
                }
            }
            _ => None,
        };
        self.channels.insert(
            id,
            FrontChannel {
                writer: Some(writer),
                state: ChanState::Setup(back),
                pty: None,
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let detail = format!("x11 channel from {originator_address}:{originator_port}");
        let refusal = Refusal::new(RefusedKind::X11Forward, detail);
        self.refuse(refusal, Answer::ChannelOpen(reply), session)
            .await
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let detail = format!("direct-tcpip to {host_to_connect}:{port_to_connect}");
        let refusal = Refusal::new(RefusedKind::LocalForward, detail);
        self.refuse(refusal, Answer::ChannelOpen(reply), session)
            .await
    }

    async fn channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let detail = format!("forwarded-tcpip {host_to_connect}:{port_to_connect}");
        let refusal = Refusal::new(RefusedKind::RemoteForward, detail);
        self.refuse(refusal, Answer::ChannelOpen(reply), session)
            .await
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let detail = format!("direct-streamlocal to {socket_path}");
        let refusal = Refusal::new(RefusedKind::StreamLocalForward, detail);
        self.refuse(refusal, Answer::ChannelOpen(reply), session)
            .await
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let detail = format!("tcpip-forward {address}:{port}");
        let refusal = Refusal::new(RefusedKind::RemoteForward, detail);
        self.refuse(refusal, Answer::Global, session).await?;
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let detail = format!("streamlocal-forward {socket_path}");
        let refusal = Refusal::new(RefusedKind::StreamLocalForward, detail);
        self.refuse(refusal, Answer::Global, session).await?;
        Ok(false)
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let refusal = Refusal::new(RefusedKind::AgentForward, "auth-agent-req@openssh.com");
        self.refuse(refusal, Answer::OnChannel(channel), session)
            .await?;
        // russh answers `false` with a channel failure.
        Ok(false)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let detail = format!("x11-req {x11_auth_protocol} screen {x11_screen_number}");
        let refusal = Refusal::new(RefusedKind::X11Forward, detail);
        self.refuse(refusal, Answer::OnChannel(channel), session)
            .await?;
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.flush_notices(channel, session);
        let live = self.live();
        let Some(ch) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        let request = PtyRequest {
            term: term.to_string(),
            cols: col_width,
            rows: row_height,
            px: pix_width,
            py: pix_height,
            modes: modes.to_vec(),
        };
        ch.pty = Some(request);
        match &mut ch.state {
            ChanState::Setup(Some(back)) => {
                if let Some(live) = live {
                    live.record(SessionEvent::Pty {
                        channel: u32::from(channel),
                        term: term.to_string(),
                        cols: col_width,
                        rows: row_height,
                    })
                    .await;
                }
                let ok = back
                    .request_pty(
                        true, term, col_width, row_height, pix_width, pix_height, modes,
                    )
                    .await
                    .is_ok()
                    && wait_reply(back).await;
                if ok {
                    session.channel_success(channel)?;
                } else {
                    session.channel_failure(channel)?;
                }
            }
            ChanState::Setup(None) => session.channel_success(channel)?,
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allowed = rules::env_allowed(variable_name);
        match self.channels.get_mut(&channel).map(|c| &mut c.state) {
            Some(ChanState::Setup(Some(back))) if allowed => {
                let _ = back.set_env(false, variable_name, variable_value).await;
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, None, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        if let Some(program) = rules::file_transfer_in_exec(&command) {
            let refusal =
                Refusal::new(RefusedKind::FileTransferExec, command.clone()).naming(program);
            return self
                .refuse(refusal, Answer::EndChannel(channel), session)
                .await;
        }
        self.start(channel, Some(data), session).await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let refusal = Refusal::new(RefusedKind::Subsystem, name).naming(name);
        self.refuse(refusal, Answer::EndChannel(channel), session)
            .await
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(live) = self.live() {
            live.record(SessionEvent::Resize {
                channel: u32::from(channel),
                cols: col_width,
                rows: row_height,
            })
            .await;
        }
        match self.channels.get_mut(&channel).map(|c| &mut c.state) {
            Some(ChanState::Running(tx)) => {
                let _ = tx
                    .send(Input::WindowChange {
                        cols: col_width,
                        rows: row_height,
                        px: pix_width,
                        py: pix_height,
                    })
                    .await;
            }
            Some(ChanState::Setup(Some(back))) => {
                let _ = back
                    .window_change(col_width, row_height, pix_width, pix_height)
                    .await;
            }
            _ => {}
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(ChanState::Running(tx)) = self.channels.get(&channel).map(|c| &c.state) {
            let _ = tx.send(Input::Signal(signal)).await;
        }
        Ok(())
    }

    // russh gives the person's window back only as the input pump hands
    // data to the target (`manual_window_adjust`); input that goes nowhere
    // else is given back here.
    async fn data_bytes(
        &mut self,
        channel: ChannelId,
        data: Bytes,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let live = self.live();
        match self.channels.get(&channel).map(|c| &c.state) {
            Some(ChanState::Running(tx)) => {
                let Some(live) = live else { return Ok(()) };
                live.touch_input();
                // Recorded by the input pump, before it reaches the target.
                let _ = tx.send(Input::Data(data)).await;
            }
            Some(ChanState::Menu(_)) => {
                session.release_window(channel, window_len(&data))?;
                self.menu_input(channel, &data, session).await?;
            }
            _ => session.release_window(channel, window_len(&data))?,
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(ChanState::Running(tx)) = self.channels.get(&channel).map(|c| &c.state) {
            let _ = tx.send(Input::Eof).await;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(FrontChannel {
            state: ChanState::Running(tx),
            ..
        }) = self.channels.remove(&channel)
        {
            let _ = tx.send(Input::Close).await;
        }
        if let Some(live) = self.live() {
            live.remove_channel(channel);
        }
        Ok(())
    }
}
