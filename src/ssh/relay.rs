//! The per-channel pumps between the person's channel (front) and the
//! target's channel (back), with the recorder tap.
//!
//! Output (target → person) is the heavy direction: the `Bytes` russh hands
//! us are recorded and forwarded without copying, and the write waits for the
//! person's window, so a slow client slows the target down instead of
//! filling memory. Input (person → target) goes through a bounded queue so
//! the front connection's event loop is never blocked by the target's window
//! for long. No lock is held across an await.

use std::sync::Arc;

use bytes::Bytes;
use russh::{ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::sync::mpsc;

use super::core::{ExitStatus, SessionEvent, SessionRecorder};
use super::live::Live;

/// What the person's side sends toward the target, in order.
#[derive(Debug)]
pub(crate) enum Input {
    Data(Bytes),
    Eof,
    WindowChange {
        cols: u32,
        rows: u32,
        px: u32,
        py: u32,
    },
    Signal(Sig),
    Close,
}

/// Input packets queued toward the target before the front loop waits.
pub(crate) const INPUT_QUEUE: usize = 256;

/// Sends the person's input to the target until the channel closes.
pub(crate) async fn pump_input(
    mut rx: mpsc::Receiver<Input>,
    back: ChannelWriteHalf<russh::client::Msg>,
) {
    while let Some(msg) = rx.recv().await {
        let r = match msg {
            Input::Data(data) => back.data_bytes(data).await,
            Input::Eof => back.eof().await,
            Input::WindowChange { cols, rows, px, py } => {
                back.window_change(cols, rows, px, py).await
            }
            Input::Signal(sig) => back.signal(sig).await,
            Input::Close => {
                let _ = back.close().await;
                break;
            }
        };
        if r.is_err() {
            break;
        }
    }
}

/// Relays the target's output, EOF, exit status and close to the person,
/// recording each byte on the way. Ends the session if recording fails.
pub(crate) async fn pump_output<R: SessionRecorder>(
    front_id: ChannelId,
    mut back: ChannelReadHalf,
    front: ChannelWriteHalf<russh::server::Msg>,
    front_handle: russh::server::Handle,
    live: Arc<Live<R>>,
) {
    let channel = u32::from(front_id);
    // On a recording failure the supervisor tells the person and closes.
    let mut recorded = true;
    while let Some(msg) = back.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                // Record before showing: what was not recorded is not shown.
                if !live.record(SessionEvent::Output {
                    channel,
                    stderr: false,
                    data: data.clone(),
                }) {
                    recorded = false;
                    break;
                }
                if front.data_bytes(data).await.is_err() {
                    break;
                }
            }
            ChannelMsg::ExtendedData { data, ext } => {
                if !live.record(SessionEvent::Output {
                    channel,
                    stderr: ext == 1,
                    data: data.clone(),
                }) {
                    recorded = false;
                    break;
                }
                if front.extended_data_bytes(ext, data).await.is_err() {
                    break;
                }
            }
            ChannelMsg::Eof => {
                let _ = front.eof().await;
            }
            ChannelMsg::ExitStatus { exit_status } => {
                let status = ExitStatus::Code(exit_status);
                live.set_exit(status.clone());
                live.record(SessionEvent::Exit { channel, status });
                let _ = front.exit_status(exit_status).await;
            }
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            } => {
                let status = ExitStatus::Signal {
                    name: signal_name_of(&signal_name),
                    core_dumped,
                };
                live.set_exit(status.clone());
                live.record(SessionEvent::Exit { channel, status });
                let _ = front_handle
                    .exit_signal_request(
                        front_id,
                        signal_name,
                        core_dumped,
                        error_message,
                        lang_tag,
                    )
                    .await;
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    if recorded {
        let _ = front.close().await;
    }
}

/// The signal's name without `SIG`, as SSH sends it.
pub(crate) fn signal_name_of(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT".into(),
        Sig::ALRM => "ALRM".into(),
        Sig::FPE => "FPE".into(),
        Sig::HUP => "HUP".into(),
        Sig::ILL => "ILL".into(),
        Sig::INT => "INT".into(),
        Sig::KILL => "KILL".into(),
        Sig::PIPE => "PIPE".into(),
        Sig::QUIT => "QUIT".into(),
        Sig::SEGV => "SEGV".into(),
        Sig::TERM => "TERM".into(),
        Sig::USR1 => "USR1".into(),
        Sig::Custom(name) => name.clone(),
    }
}
