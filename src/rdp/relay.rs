//! After both handshakes: forward PDUs both ways with MCS ids rewritten,
//! drop what travels on refused channels, refuse dynamic channels that are
//! not on the allow-list, strip server redirection and auto-reconnect
//! material, and tap every input and graphics PDU for the recording.
//!
//! The pure part (which PDUs are input, withheld or DVC creates, the MCS
//! id map, the DVC gate, the share state) is in `relay/pdu.rs`; this file
//! is the I/O: the two pumps, keyframe requests and the recorder tap.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use ironrdp_async::Framed;
use ironrdp_core::{decode, encode_vec};
use ironrdp_pdu::geometry::InclusiveRectangle;
use ironrdp_pdu::mcs;
use ironrdp_pdu::rdp::client_info::CompressionType;
use ironrdp_pdu::rdp::headers::{
    CompressionFlags, ShareControlHeader, ShareControlPdu, ShareDataHeader, ShareDataPdu,
    StreamPriority,
};
use ironrdp_pdu::rdp::refresh_rectangle::RefreshRectanglePdu;
use ironrdp_pdu::rdp::session_info::{
    InfoData, InfoType, LogonExFlags, LogonInfoExtended, SaveSessionInfoPdu, ServerAutoReconnect,
};
use ironrdp_pdu::x224::X224;
use ironrdp_tokio::TokioStream;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadHalf, WriteHalf};
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use super::RdpError;
use super::control::{ChannelKind, Direction, RdpControl, RdpEvent, RdpRecorder};
use super::{rules, steer};

mod pdu;

use crate::protocol::rdp::pdu::is_slow_path_input;
pub(crate) use pdu::{
    ChannelMap, DvcCreate, DvcGate, ShareState, dvc_refusal, is_font_map, is_withheld_server_pdu,
    parse_dvc_create,
};

type Reader<S> = Framed<TokioStream<ReadHalf<S>>>;
type Writer<S> = Arc<Mutex<WriteHalf<S>>>;

pub(crate) struct Relay<C: RdpControl> {
    pub control: Arc<C>,
    pub session_id: uuid::Uuid,
    pub map: ChannelMap,
    pub recorder: Arc<Mutex<C::Recorder>>,
    /// The active share, followed from the target's PDUs.
    pub share: std::sync::Mutex<ShareState>,
    pub dvc_gate: std::sync::Mutex<DvcGate>,
    /// When the client last sent input (fast-path input PDUs), for the idle limit.
    pub last_input: std::sync::Mutex<tokio::time::Instant>,
    /// sekisho's auto-reconnect cookie, sent to the client once after the
    /// target's Font Map (the end of the connection finalization).
    pub reconnect_cookie: std::sync::Mutex<Option<ServerAutoReconnect>>,
}

impl<C: RdpControl> Relay<C> {
    async fn record(&self, event: RdpEvent) -> Result<(), RdpError> {
        self.recorder
            .lock()
            .await
            .record(event)
            .await
            .map_err(|r| RdpError::Recording(r.reason))
    }

    async fn refuse_channel(
        &self,
        kind: ChannelKind,
        name: &str,
        reason: &str,
    ) -> Result<(), RdpError> {
        info!(session = %self.session_id, channel = name, ?kind, reason, "channel refused");
        self.control
            .channel_refused(self.session_id, kind, name, reason)
            .await;
        self.record(RdpEvent::ChannelRefused {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
        .await
    }

    /// Judge a drdynvc chunk from the target. A Create Request for a channel
    /// that is not allowed is answered with a failed Create Response by the
    /// gateway; it, and any PDU of a channel that was not opened, reports
    /// `true`: the chunk must not reach the client.
    async fn refuse_dvc<B>(
        &self,
        back_channel: u16,
        chunk: &[u8],
        back_to: &Writer<B>,
    ) -> Result<bool, RdpError>
    where
        B: AsyncWrite + AsyncRead + Send + Sync + Unpin,
    {
        let Some(create) = parse_dvc_create(chunk) else {
            let pass = self
                .dvc_gate
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pass_from_target(chunk);
            if !pass {
                debug!("target drdynvc PDU for a channel not opened; dropped");
            }
            return Ok(!pass);
        };
        let rules::ChannelVerdict::Refused { reason } = rules::dynamic_channel(&create.name) else {
            info!(session = %self.session_id, channel = %create.name, "dynamic channel allowed");
            let mut gate = self.dvc_gate.lock().unwrap_or_else(|p| p.into_inner());
            gate.allow(create.channel_id);
            // The Create Request itself passes and starts a new message.
            gate.pass_from_target(chunk);
            return Ok(false);
        };
        self.refuse_channel(ChannelKind::Dynamic, &create.name, reason)
            .await?;
        let refusal = mcs::SendDataRequest {
            initiator_id: self.map.back_user,
            channel_id: back_channel,
            user_data: Cow::Owned(dvc_refusal(&create)),
        };
        let bytes = encode_vec(&X224(refusal))
            .map_err(|e| RdpError::protocol("encoding DVC refusal", e))?;
        write(back_to, &bytes).await?;
        Ok(true)
    }

    /// Ask the target to redraw the whole desktop, so that the recording
    /// gets a keyframe. Skipped while no share is active.
    pub(crate) async fn request_keyframe<B>(&self, back_to: &Writer<B>) -> Result<(), RdpError>
    where
        B: AsyncWrite + AsyncRead + Send + Sync + Unpin,
    {
        let share = *self.share.lock().unwrap_or_else(|p| p.into_inner());
        let Some(share_id) = share.share_id else {
            return Ok(());
        };
        let (width, height) = share.desktop;
        let refresh = ShareControlHeader {
            share_id,
            pdu_source: self.map.back_user,
            share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
                share_data_pdu: ShareDataPdu::RefreshRectangle(RefreshRectanglePdu {
                    areas_to_refresh: vec![InclusiveRectangle {
                        left: 0,
                        top: 0,
                        right: width.saturating_sub(1),
                        bottom: height.saturating_sub(1),
                    }],
                }),
                stream_priority: StreamPriority::Low,
                compression_flags: CompressionFlags::empty(),
                compression_type: CompressionType::K8,
            }),
        };
        let user_data =
            encode_vec(&refresh).map_err(|e| RdpError::protocol("encoding Refresh Rect", e))?;
        let Some(back_io) = self.map.client_to_target(self.map.front_io) else {
            return Ok(());
        };
        let send = mcs::SendDataRequest {
            initiator_id: self.map.back_user,
            channel_id: back_io,
            user_data: Cow::Owned(user_data),
        };
        let bytes =
            encode_vec(&X224(send)).map_err(|e| RdpError::protocol("encoding Refresh Rect", e))?;
        // Recorded before it is sent: the redraw follows the marker.
        self.record(RdpEvent::Keyframe { width, height }).await?;
        write(back_to, &bytes).await
    }

    /// Give the client sekisho's auto-reconnect cookie (once). Not
    /// recorded: it is a credential, and not the target's.
    async fn send_reconnect_cookie<F>(&self, to: &Writer<F>) -> Result<(), RdpError>
    where
        F: AsyncWrite + AsyncRead + Send + Sync + Unpin,
    {
        let cookie = self
            .reconnect_cookie
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let share_id = self
            .share
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .share_id;
        let (Some(cookie), Some(share_id)) = (cookie, share_id) else {
            return Ok(());
        };
        let pdu = ShareControlHeader {
            share_id,
            pdu_source: self.map.front_user,
            share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
                share_data_pdu: ShareDataPdu::SaveSessionInfo(SaveSessionInfoPdu {
                    info_type: InfoType::LogonExtended,
                    info_data: InfoData::LogonExtended(LogonInfoExtended {
                        present_fields_flags: LogonExFlags::AUTO_RECONNECT_COOKIE,
                        auto_reconnect: Some(cookie),
                        errors_info: None,
                    }),
                }),
                stream_priority: StreamPriority::Undefined,
                compression_flags: CompressionFlags::empty(),
                compression_type: CompressionType::K8,
            }),
        };
        let bytes = super::front::indication_bytes(&pdu)?;
        debug!(session = %self.session_id, "auto-reconnect cookie sent to the client");
        write(to, &bytes).await
    }

    /// Client → target.
    pub(crate) async fn client_to_target<F, B>(
        &self,
        mut from: Reader<F>,
        to: Writer<B>,
    ) -> Result<(), RdpError>
    where
        F: AsyncRead + AsyncWrite + Send + Sync + Unpin,
        B: AsyncRead + AsyncWrite + Send + Sync + Unpin,
    {
        let mut warned: std::collections::HashSet<u16> = Default::default();
        loop {
            let (action, pdu) = match from.read_pdu().await {
                Ok(read) => read,
                // The client closed its connection: a normal end.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(RdpError::ClientLost(e.to_string())),
            };
            let pdu = pdu.freeze();
            match action {
                ironrdp_pdu::Action::FastPath => {
                    *self.last_input.lock().unwrap_or_else(|p| p.into_inner()) =
                        tokio::time::Instant::now();
                    // Fast-path input carries no channel id: keyboard,
                    // unicode and mouse events, recorded whole.
                    self.record(RdpEvent::FastPath {
                        direction: Direction::ClientToServer,
                        pdu: pdu.clone(),
                    })
                    .await?;
                    write(&to, &pdu).await?;
                }
                ironrdp_pdu::Action::X224 => {
                    let msg = decode::<X224<mcs::McsMessage<'_>>>(&pdu)
                        .map_err(|e| RdpError::protocol("MCS PDU from client", e))?
                        .0;
                    match msg {
                        mcs::McsMessage::SendDataRequest(req) => {
                            let Some(back_channel) = self.map.client_to_target(req.channel_id)
                            else {
                                if let Some(name) = self.map.refused.get(&req.channel_id) {
                                    if warned.insert(req.channel_id) {
                                        debug!(channel = %name, "dropping data on refused channel");
                                    }
                                } else if warned.insert(req.channel_id) {
                                    warn!(
                                        channel_id = req.channel_id,
                                        "client sent on an unknown channel; dropped"
                                    );
                                }
                                continue;
                            };
                            if Some(back_channel) == self.map.back_drdynvc
                                && !self
                                    .dvc_gate
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .pass_from_client(&req.user_data)
                            {
                                debug!("client drdynvc PDU for a channel not opened; dropped");
                                continue;
                            }
                            let mut user_data = req.user_data;
                            if self.map.back_recorded.contains(&back_channel) {
                                if is_slow_path_input(&user_data) {
                                    *self.last_input.lock().unwrap_or_else(|p| p.into_inner()) =
                                        tokio::time::Instant::now();
                                }
                                // The target sees the steered capabilities;
                                // so does the recording.
                                if let Some(steered) = steer::steer_confirm_active(&user_data)
                                    .map_err(|m| RdpError::Protocol {
                                        context: "client Confirm Active",
                                        message: m,
                                    })?
                                {
                                    debug!("client capabilities steered to decodable graphics");
                                    user_data = Cow::Owned(steered);
                                }
                                self.record(RdpEvent::SlowPath {
                                    direction: Direction::ClientToServer,
                                    channel: req.channel_id,
                                    pdu: Bytes::copy_from_slice(user_data.as_ref()),
                                })
                                .await?;
                            }
                            let out = mcs::SendDataRequest {
                                initiator_id: self.map.back_user,
                                channel_id: back_channel,
                                user_data,
                            };
                            let bytes = encode_vec(&X224(out))
                                .map_err(|e| RdpError::protocol("re-encoding client PDU", e))?;
                            write(&to, &bytes).await?;
                        }
                        mcs::McsMessage::DisconnectProviderUltimatum(_) => {
                            write(&to, &pdu).await?;
                            return Ok(());
                        }
                        other => {
                            // Joins and attaches after the handshake are not expected.
                            warn!(pdu = ?mcs_name(&other), "unexpected MCS PDU from client; dropped");
                        }
                    }
                }
            }
        }
    }

    /// Target → client.
    pub(crate) async fn target_to_client<F, B>(
        &self,
        mut from: Reader<B>,
        to: Writer<F>,
        back_to: Writer<B>,
    ) -> Result<(), RdpError>
    where
        F: AsyncRead + AsyncWrite + Send + Sync + Unpin,
        B: AsyncRead + AsyncWrite + Send + Sync + Unpin,
    {
        loop {
            let (action, pdu) = match from.read_pdu().await {
                Ok(read) => read,
                // A target that ends a session says so (Disconnect Provider
                // Ultimatum, handled below); a connection that just stops
                // or fails is lost.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(RdpError::TargetLost(
                        "it closed without ending the session".into(),
                    ));
                }
                Err(e) => return Err(RdpError::TargetLost(e.to_string())),
            };
            self.forward_from_target(action, pdu.freeze(), &to, &back_to)
                .await?;
        }
    }

    /// Forward one target PDU (also used for the first PDU the back
    /// handshake already read).
    pub(crate) async fn forward_from_target<F, B>(
        &self,
        action: ironrdp_pdu::Action,
        pdu: Bytes,
        to: &Writer<F>,
        back_to: &Writer<B>,
    ) -> Result<(), RdpError>
    where
        F: AsyncWrite + AsyncRead + Send + Sync + Unpin,
        B: AsyncWrite + AsyncRead + Send + Sync + Unpin,
    {
        match action {
            ironrdp_pdu::Action::FastPath => {
                self.record(RdpEvent::FastPath {
                    direction: Direction::ServerToClient,
                    pdu: pdu.clone(),
                })
                .await?;
                write(to, &pdu).await
            }
            ironrdp_pdu::Action::X224 => {
                let msg = decode::<X224<mcs::McsMessage<'_>>>(&pdu)
                    .map_err(|e| RdpError::protocol("MCS PDU from target", e))?
                    .0;
                match msg {
                    mcs::McsMessage::SendDataIndication(ind) => {
                        let Some(front_channel) = self.map.target_to_client(ind.channel_id) else {
                            warn!(
                                channel_id = ind.channel_id,
                                "target sent on an unknown channel; dropped"
                            );
                            return Ok(());
                        };
                        if self.map.back_recorded.contains(&ind.channel_id) {
                            let transition = self
                                .share
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .observe(&ind.user_data);
                            if let Some(share) = transition {
                                match share {
                                    Some(id) => debug!(share_id = id, "share active"),
                                    None => debug!("share deactivated"),
                                }
                                if let Some(share_id) = share {
                                    self.record(RdpEvent::ShareActivated { share_id }).await?;
                                }
                            }
                            if let Some(what) = is_withheld_server_pdu(&ind.user_data) {
                                info!(session = %self.session_id, what, "withheld from client");
                                return Ok(());
                            }
                            self.record(RdpEvent::SlowPath {
                                direction: Direction::ServerToClient,
                                channel: front_channel,
                                // No copy: bitmap updates are megabytes a second.
                                pdu: shared_part(&pdu, ind.user_data.as_ref()),
                            })
                            .await?;
                        }
                        if Some(ind.channel_id) == self.map.back_drdynvc
                            && self
                                .refuse_dvc(ind.channel_id, &ind.user_data, back_to)
                                .await?
                        {
                            return Ok(());
                        }
                        let finalized =
                            ind.channel_id == self.map.back_io && is_font_map(&ind.user_data);
                        let initiator = if ind.initiator_id == self.map.back_user {
                            self.map.front_user
                        } else {
                            ind.initiator_id
                        };
                        let out = mcs::SendDataIndication {
                            initiator_id: initiator,
                            channel_id: front_channel,
                            user_data: ind.user_data,
                        };
                        let bytes = encode_vec(&X224(out))
                            .map_err(|e| RdpError::protocol("re-encoding target PDU", e))?;
                        write(to, &bytes).await?;
                        if finalized {
                            self.send_reconnect_cookie(to).await?;
                        }
                        Ok(())
                    }
                    mcs::McsMessage::DisconnectProviderUltimatum(_) => {
                        write(to, &pdu).await?;
                        Err(RdpError::TargetClosed)
                    }
                    other => {
                        warn!(pdu = ?mcs_name(&other), "unexpected MCS PDU from target; dropped");
                        Ok(())
                    }
                }
            }
        }
    }
}

fn mcs_name(msg: &mcs::McsMessage<'_>) -> &'static str {
    match msg {
        mcs::McsMessage::ErectDomainRequest(_) => "ErectDomainRequest",
        mcs::McsMessage::AttachUserRequest(_) => "AttachUserRequest",
        mcs::McsMessage::AttachUserConfirm(_) => "AttachUserConfirm",
        mcs::McsMessage::ChannelJoinRequest(_) => "ChannelJoinRequest",
        mcs::McsMessage::ChannelJoinConfirm(_) => "ChannelJoinConfirm",
        mcs::McsMessage::SendDataRequest(_) => "SendDataRequest",
        mcs::McsMessage::SendDataIndication(_) => "SendDataIndication",
        mcs::McsMessage::DisconnectProviderUltimatum(_) => "DisconnectProviderUltimatum",
    }
}

async fn write<S: AsyncWrite + Unpin>(
    to: &Mutex<WriteHalf<S>>,
    bytes: &[u8],
) -> Result<(), RdpError> {
    let mut w = to.lock().await;
    w.write_all(bytes)
        .await
        .map_err(|e| RdpError::io("forwarding", e))?;
    w.flush().await.map_err(|e| RdpError::io("forwarding", e))
}

/// `part` as a view into `whole` when it lies inside it (decoding borrowed
/// it from there), else a copy.
fn shared_part(whole: &Bytes, part: &[u8]) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if start <= whole.len() && end <= whole.len() => whole.slice(start..end),
        _ => Bytes::copy_from_slice(part),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    #[test]
    fn a_part_of_a_pdu_is_shared_not_copied_and_a_foreign_slice_is_copied() {
        let whole = Bytes::from(vec![1u8, 2, 3, 4, 5, 6]);
        let part = super::shared_part(&whole, &whole[2..5]);
        assert_eq!(&part[..], &[3, 4, 5]);
        assert_eq!(part.as_ptr(), whole[2..].as_ptr(), "copied");
        let other = vec![3u8, 4, 5];
        let copied = super::shared_part(&whole, &other);
        assert_eq!(&copied[..], &[3, 4, 5]);
        assert_ne!(copied.as_ptr(), other.as_ptr());
        assert!(super::shared_part(&whole, &whole[6..]).is_empty());
    }
}
