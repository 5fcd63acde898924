//! The per-channel pumps between the person's channel (front) and the
//! target's channel (back), with the recorder tap.
//!
//! Both directions honour the SSH windows of both legs, so neither a slow
//! person nor a slow target can make the bastion buffer more than about one
//! window per channel and direction:
//!
//! - Output (target → person): the `Bytes` russh hands us are recorded and
//!   forwarded without copying, and the write waits for the person's window,
//!   so a slow client slows the target down instead of filling memory: at
//!   most [`OUTPUT_QUEUE_PACKETS`] packets wait for the pump.
//!   When the recording writer is behind, the pump waits for room in its
//!   queue (without holding a runtime thread) before forwarding more.
//! - Input (person → target): the front connection runs with
//!   `manual_window_adjust`: russh does not reopen the person's window when
//!   data arrives; [`pump_input`] gives the bytes back (in steps of
//!   [`RELEASE_STEP`]) only once the target's channel has taken them, which
//!   waits for the target's window. A client that keeps to its window can
//!   therefore have at most [`FRONT_WINDOW`] bytes queued here.
//!
//! The queue itself never makes the front connection's event loop wait for
//! the target (up to [`INPUT_BUDGET`], which only a client ignoring its
//! window reaches): russh runs both directions of a connection in one loop,
//! so if that loop waited for the target to take input while the output pump
//! waited for the person's window (which only that loop can reopen), a
//! full-duplex stream (`cat` of a large file) would stall forever. No lock
//! is held across an await.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use russh::{ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::sync::{Notify, mpsc};

use super::control::{EndStatus, ExitStatus, SessionEvent, SessionRecorder};
use super::session::Live;

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

/// The window each person's channel starts with (russh's default), and so
/// the most input a client keeping to the protocol can have queued here.
pub(crate) const FRONT_WINDOW: u32 = 2 << 20;

/// Input bytes handed to the target before the person's window is reopened
/// by that much: a quarter window keeps a bulk upload streaming without a
/// window adjustment for every packet (or keystroke).
pub(crate) const RELEASE_STEP: u32 = FRONT_WINDOW / 4;

/// Input bytes queued toward the target before the front loop waits for the
/// target to take some. Twice the window: reached only by a client that
/// sends beyond its window, which then stalls only its own connection.
pub(crate) const INPUT_BUDGET: usize = 2 * FRONT_WINDOW as usize;

/// Packets of the target's output queued between the back connection and
/// the output pump. russh's client reopens the target's window as packets
/// arrive, so it is this queue that holds the target back once the person
/// reads slower than the target writes: when it is full the back
/// connection stops reading its socket and TCP pushes back. Packets are at
/// most the 32 KiB the back channel announces, so at most 512 KiB wait here
/// (russh's default of 100 packets let 3.2 MiB wait).
pub(crate) const OUTPUT_QUEUE_PACKETS: usize = 16;

/// `data`'s length as SSH window bytes (packets are far below 4 GiB).
pub(crate) fn window_len(data: &[u8]) -> u32 {
    u32::try_from(data.len()).unwrap_or(u32::MAX)
}

/// What the input queue's two ends share.
#[derive(Default)]
struct Budget {
    /// Data bytes queued and not yet handed to the target.
    queued: AtomicUsize,
    /// The pump has stopped; nothing will be taken any more.
    closed: AtomicBool,
    drained: Notify,
}

/// The front side of a channel's input queue.
pub(crate) struct InputSender {
    tx: mpsc::UnboundedSender<Input>,
    budget: Arc<Budget>,
}

/// The pump side of a channel's input queue.
pub(crate) struct InputReceiver {
    rx: mpsc::UnboundedReceiver<Input>,
    budget: Arc<Budget>,
}

/// A new input queue for one channel.
pub(crate) fn input_queue() -> (InputSender, InputReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Budget::default());
    (
        InputSender {
            tx,
            budget: budget.clone(),
        },
        InputReceiver { rx, budget },
    )
}

impl InputSender {
    /// Queues `msg` in order. Waits only while more than [`INPUT_BUDGET`]
    /// bytes are queued; Err when the pump has stopped.
    pub(crate) async fn send(&self, msg: Input) -> Result<(), ()> {
        if let Input::Data(data) = &msg {
            loop {
                let drained = self.budget.drained.notified();
                if self.budget.closed.load(Ordering::Acquire)
                    || self.budget.queued.load(Ordering::Acquire) <= INPUT_BUDGET
                {
                    break;
                }
                drained.await;
            }
            self.budget.queued.fetch_add(data.len(), Ordering::AcqRel);
        }
        self.tx.send(msg).map_err(|_| ())
    }
}

impl Drop for InputReceiver {
    fn drop(&mut self) {
        self.budget.closed.store(true, Ordering::Release);
        self.budget.drained.notify_waiters();
    }
}

/// Records the person's input and sends it to the target until the channel
/// closes, giving the person's window back as the target takes it. The
/// input is recorded here rather than where russh hands it over, so that a
/// recording writer that is behind holds this pump (and through the window
/// the person) instead of the connection's event loop.
pub(crate) async fn pump_input<R: SessionRecorder>(
    mut rx: InputReceiver,
    back: ChannelWriteHalf<russh::client::Msg>,
    front_id: ChannelId,
    front: russh::server::Handle,
    live: Arc<Live<R>>,
) {
    let channel = u32::from(front_id);
    // Taken by the target, not yet given back to the person. Below
    // RELEASE_STEP only while the person still has window left: a client
    // waiting on a closed window has sent FRONT_WINDOW bytes, which are all
    // either queued (and coming) or counted here.
    let mut taken: u32 = 0;
    while let Some(msg) = rx.rx.recv().await {
        let r = match msg {
            Input::Data(data) => {
                let len = data.len();
                // Record before sending: what was not recorded does not
                // reach the target (the session ends).
                if !live
                    .record(SessionEvent::Input {
                        channel,
                        data: data.clone(),
                    })
                    .await
                {
                    break;
                }
                let r = back.data_bytes(data).await;
                rx.budget.queued.fetch_sub(len, Ordering::AcqRel);
                rx.budget.drained.notify_waiters();
                taken = taken.saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
                if r.is_ok() && taken >= RELEASE_STEP {
                    let _ = front.release_window(front_id, taken);
                    taken = 0;
                }
                r
            }
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
    // On a recording failure, or when the target connection is lost, the
    // supervisor tells the person and closes.
    let mut recorded = true;
    // Set when this loop stops on its own; the target's stream ending by
    // itself, without a close, means its connection is gone.
    let mut stopped = false;
    while let Some(msg) = back.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                // Record before showing: what was not recorded is not shown.
                if !live
                    .record(SessionEvent::Output {
                        channel,
                        stderr: false,
                        data: data.clone(),
                    })
                    .await
                {
                    recorded = false;
                    stopped = true;
                    break;
                }
                if front.data_bytes(data).await.is_err() {
                    stopped = true;
                    break;
                }
            }
            ChannelMsg::ExtendedData { data, ext } => {
                if !live
                    .record(SessionEvent::Output {
                        channel,
                        stderr: ext == 1,
                        data: data.clone(),
                    })
                    .await
                {
                    recorded = false;
                    stopped = true;
                    break;
                }
                if front.extended_data_bytes(ext, data).await.is_err() {
                    stopped = true;
                    break;
                }
            }
            ChannelMsg::Eof => {
                let _ = front.eof().await;
            }
            ChannelMsg::ExitStatus { exit_status } => {
                let status = ExitStatus::Code(exit_status);
                live.set_exit(status.clone());
                live.record(SessionEvent::Exit { channel, status }).await;
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
                live.record(SessionEvent::Exit { channel, status }).await;
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
            ChannelMsg::Close => {
                stopped = true;
                break;
            }
            _ => {}
        }
    }
    if !stopped {
        // The target's connection died under the channel: leave the channel
        // open for the supervisor to say so and give an exit status.
        live.end(
            EndStatus::TargetLost,
            format!("the connection to {} was lost", live.target),
        );
        return;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn byte() -> Input {
        Input::Data(Bytes::from_static(b"x"))
    }

    #[tokio::test]
    async fn input_waits_only_above_the_budget_and_never_once_the_pump_stopped() {
        let (tx, rx) = input_queue();
        // Far more packets than a bounded queue would take: none waits, so
        // the front loop stays free to read window adjustments.
        for _ in 0..10_000 {
            let sent = tokio::time::timeout(Duration::from_secs(1), tx.send(byte())).await;
            assert!(matches!(sent, Ok(Ok(()))));
        }
        assert_eq!(rx.budget.queued.load(Ordering::Acquire), 10_000);
        // Above the budget the sender waits for the pump...
        rx.budget.queued.store(INPUT_BUDGET + 1, Ordering::Release);
        let waited = tokio::time::timeout(Duration::from_millis(100), tx.send(byte())).await;
        assert!(waited.is_err(), "sent above the budget");
        // ...and is released when the pump drains below it.
        let budget = rx.budget.clone();
        let drain = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            budget.queued.store(0, Ordering::Release);
            budget.drained.notify_waiters();
        });
        let sent = tokio::time::timeout(Duration::from_secs(2), tx.send(byte())).await;
        assert!(matches!(sent, Ok(Ok(()))));
        let _ = drain.await;
        // A stopped pump never leaves the sender waiting.
        rx.budget.queued.store(INPUT_BUDGET + 1, Ordering::Release);
        drop(rx);
        let sent = tokio::time::timeout(Duration::from_secs(1), tx.send(byte())).await;
        assert!(matches!(sent, Ok(Err(()))));
    }
}
