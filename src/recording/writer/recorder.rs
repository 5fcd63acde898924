//! [`Recorder`]: the cheap, cloneable handle the gateways' relay loops record
//! through, and the dedicated writer thread behind it (bounded queue,
//! backpressure, fail closed).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot, watch};

use crate::recording::event::Event;
use crate::recording::format::SessionMeta;
use crate::recording::keys::ArchiveKey;

use super::{
    ArchiveStatus, ArchiveSummary, ArchiveWriter, RecordingFailed, SealFailed, WriterOptions,
    archive_path,
};

enum Msg {
    Event(u64, Event),
    Flush(oneshot::Sender<Result<(), RecordingFailed>>),
    Seal(oneshot::Sender<Result<ArchiveSummary, SealFailed>>),
}

struct Shared {
    start: Instant,
    path: PathBuf,
    /// Fast check for `record`; the watch carries the error itself.
    failed: AtomicBool,
    state: watch::Sender<Option<RecordingFailed>>,
    /// What was on disk when the writer failed.
    partial: Mutex<Option<ArchiveSummary>>,
    /// Woken when the writer takes a message off a queue someone waits on
    /// ([`Recorder::send_async`]), fails or stops.
    room: Notify,
    /// How many `send_async` calls wait for `room`: the writer wakes them
    /// only then, not for every message.
    waiting: AtomicUsize,
}

impl Shared {
    /// Wake the senders waiting for room (if any).
    fn wake_senders(&self) {
        // Pairs with the fence in `send_async`: either the writer sees the
        // sender waiting, or the sender sees the room.
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.room.notify_waiters();
        }
    }
}

/// A `send_async` call counted as waiting while it lives (also when the
/// future is dropped mid-wait).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A cheap, cloneable handle to a session's archive writer thread.
///
/// `record` timestamps the event (monotonic µs since `open`) and queues it.
/// The queue is bounded (`queue_events`): under a burst faster than the
/// writer, `record` blocks its caller until there is room — backpressure to
/// the relay and through TCP to the peer, never dropped events and never
/// unbounded memory. At the measured writer speed a full queue drains in
/// milliseconds; `record_async` waits without blocking an executor thread. Once the writer has failed, `record` returns the error
/// immediately; `failed()` lets a relay `select!` on that.
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
    tx: SyncSender<Msg>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Creates `root/YYYY/MM/DD/<id>.skrec` (date of `meta.started_at`, UTC)
    /// and starts its writer thread.
    pub fn open(
        root: &Path,
        meta: &SessionMeta,
        key: ArchiveKey,
        options: WriterOptions,
    ) -> Result<Recorder, RecordingFailed> {
        let path = archive_path(root, meta.started_at.date_naive(), &meta.session_id)?;
        Self::create(&path, meta, key, options)
    }

    /// Like `open`, at an explicit path. Errors here (permissions, disk full)
    /// mean the session must not start.
    pub fn create(
        path: &Path,
        meta: &SessionMeta,
        key: ArchiveKey,
        options: WriterOptions,
    ) -> Result<Recorder, RecordingFailed> {
        let queue = options.queue_events.max(1);
        let flush_interval = options.flush_interval;
        let writer = ArchiveWriter::create(path, meta, options)?;
        let (tx, rx) = mpsc::sync_channel(queue);
        let (state, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            start: Instant::now(),
            path: path.to_owned(),
            failed: AtomicBool::new(false),
            state,
            partial: Mutex::new(None),
            room: Notify::new(),
            waiting: AtomicUsize::new(0),
        });
        let thread_shared = Arc::clone(&shared);
        let name = format!("rec-{}", meta.session_id);
        let spawned = std::thread::Builder::new()
            .name(name.chars().take(15).collect())
            .spawn(move || writer_thread(writer, rx, &thread_shared, &key, flush_interval));
        if let Err(e) = spawned {
            return Err(RecordingFailed::Write {
                path: path.to_owned(),
                kind: e.kind(),
                message: format!("cannot start writer thread: {e}"),
            });
        }
        Ok(Recorder { shared, tx })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Microseconds since the session start (the time `record` stamps).
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.shared.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn current_failure(&self) -> RecordingFailed {
        self.shared
            .state
            .borrow()
            .clone()
            .unwrap_or(RecordingFailed::WriterGone)
    }

    /// Timestamps and queues an event. Blocks only while the queue is full.
    pub fn record(&self, event: Event) -> Result<(), RecordingFailed> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(self.current_failure());
        }
        let t = self.now_us();
        self.tx
            .send(Msg::Event(t, event))
            .map_err(|_| self.current_failure())
    }

    /// Like `record`, but waits for queue room without blocking the async
    /// executor's thread (woken by the writer when it takes a message).
    /// The event keeps the time it was offered at.
    pub async fn record_async(&self, event: Event) -> Result<(), RecordingFailed> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(self.current_failure());
        }
        self.send_async(Msg::Event(self.now_us(), event)).await
    }

    /// Has the writer failed?
    pub fn has_failed(&self) -> Option<RecordingFailed> {
        self.shared.state.borrow().clone()
    }

    /// Resolves when the writer fails (never, if it does not), or with
    /// `Sealed` once another handle has sealed the archive.
    pub async fn failed(&self) -> RecordingFailed {
        let mut rx = self.shared.state.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(RecordingFailed::WriterGone),
            // Unreachable while `self` holds the sender; be safe anyway.
            Err(_) => std::future::pending().await,
        }
    }

    /// A `watch` receiver that turns `Some` when the writer fails.
    pub fn failure_watch(&self) -> watch::Receiver<Option<RecordingFailed>> {
        self.shared.state.subscribe()
    }

    /// Cuts a chunk now and waits until it is written (blocking).
    pub fn flush(&self) -> Result<(), RecordingFailed> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Flush(reply))
            .map_err(|_| self.current_failure())?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(self.current_failure()))
    }

    /// Like `flush`, waiting for the writer without holding a thread.
    pub async fn flush_async(&self) -> Result<(), RecordingFailed> {
        let (reply, rx) = oneshot::channel();
        self.send_async(Msg::Flush(reply)).await?;
        rx.await.unwrap_or_else(|_| Err(self.current_failure()))
    }

    /// Queues a message, waiting for room without blocking the runtime's
    /// thread; a writer that failed meanwhile (and so stops draining the
    /// queue) ends the wait.
    ///
    /// The wait is a wake-up from the writer when it takes a message, not a
    /// poll: a session whose writer is behind (a slow disk) costs nothing
    /// while it waits, where a poll every millisecond cost a thousand
    /// wake-ups a second per waiting session.
    async fn send_async(&self, mut msg: Msg) -> Result<(), RecordingFailed> {
        let mut waiting = None;
        loop {
            let Some(full) = self.try_queue(msg)? else {
                return Ok(());
            };
            let room = self.shared.room.notified();
            tokio::pin!(room);
            // Registered before looking again, so that a message the writer
            // takes in between still wakes this wait.
            room.as_mut().enable();
            if waiting.is_none() {
                self.shared.waiting.fetch_add(1, Ordering::SeqCst);
                waiting = Some(Waiting(&self.shared.waiting));
            }
            fence(Ordering::SeqCst);
            let Some(full) = self.try_queue(full)? else {
                return Ok(());
            };
            msg = full;
            room.await;
        }
    }

    /// Queues `msg` if there is room: `None` when queued, the message back
    /// when the queue is full, the failure when the writer failed or is gone.
    fn try_queue(&self, msg: Msg) -> Result<Option<Msg>, RecordingFailed> {
        match self.tx.try_send(msg) {
            Ok(()) => Ok(None),
            Err(mpsc::TrySendError::Disconnected(_)) => Err(self.current_failure()),
            Err(mpsc::TrySendError::Full(m)) => {
                if self.shared.failed.load(Ordering::Acquire) {
                    Err(self.current_failure())
                } else {
                    Ok(Some(m))
                }
            }
        }
    }

    /// Flushes, writes the signed trailer and stops the writer (blocking).
    /// Other clones' later `record` calls fail with `Sealed`.
    pub fn seal(self) -> Result<ArchiveSummary, SealFailed> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Seal(reply)).is_ok()
            && let Ok(r) = rx.blocking_recv()
        {
            return r;
        }
        Err(self.seal_failed())
    }

    /// Like `seal`, waiting for the writer without holding a thread: a
    /// blocking-pool thread per ending session would stay alive (and
    /// resident) for tokio's keep-alive after a wave of sessions closes.
    pub async fn seal_async(self) -> Result<ArchiveSummary, SealFailed> {
        let (reply, rx) = oneshot::channel();
        if self.send_async(Msg::Seal(reply)).await.is_err() {
            return Err(self.seal_failed());
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(self.seal_failed()),
        }
    }

    /// What `seal` reports when the writer is gone without answering.
    fn seal_failed(&self) -> SealFailed {
        let partial = self
            .shared
            .partial
            .lock()
            .ok()
            .and_then(|p| p.clone())
            .map(Box::new)
            .unwrap_or_else(|| {
                Box::new(ArchiveSummary {
                    path: self.shared.path.clone(),
                    size: 0,
                    final_digest: [0; 32],
                    status: ArchiveStatus::Incomplete,
                    duration: Duration::ZERO,
                    events: 0,
                    chunks: 0,
                    key_id: None,
                })
            });
        SealFailed {
            error: self.current_failure(),
            partial,
        }
    }
}

/// The writer's end of the queue: however the writer thread ends (a
/// return, a panic), the queue closes and the senders waiting for room
/// look again, to find it closed.
struct Closing<'a> {
    rx: Option<mpsc::Receiver<Msg>>,
    shared: &'a Shared,
}

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.shared.room.notify_waiters();
    }
}

fn writer_thread(
    mut w: ArchiveWriter,
    rx: mpsc::Receiver<Msg>,
    shared: &Shared,
    key: &ArchiveKey,
    flush_interval: Duration,
) {
    let report = |w: &ArchiveWriter, e: RecordingFailed| {
        if let Ok(mut p) = shared.partial.lock() {
            *p = Some(w.summary());
        }
        shared.failed.store(true, Ordering::Release);
        shared.state.send_replace(Some(e));
    };
    let closing = Closing {
        rx: Some(rx),
        shared,
    };
    let Some(rx) = closing.rx.as_ref() else {
        return;
    };
    loop {
        let wait = match w.chunk_opened() {
            Some(opened) => flush_interval.saturating_sub(opened.elapsed()),
            None => Duration::from_secs(3600),
        };
        let msg = rx.recv_timeout(wait);
        if msg.is_ok() {
            // A place in the queue came free.
            shared.wake_senders();
        }
        let result = match msg {
            Ok(Msg::Event(t, e)) => w.append(t, &e),
            Ok(Msg::Flush(reply)) => {
                let r = w.flush_chunk();
                // Publish the failure before answering, so the caller's
                // next `record` already refuses.
                if let Err(e) = &r {
                    report(&w, e.clone());
                }
                let _ = reply.send(r.clone());
                if r.is_err() {
                    return;
                }
                Ok(())
            }
            Ok(Msg::Seal(reply)) => {
                // Mark first so racing clones fail with `Sealed`.
                shared.failed.store(true, Ordering::Release);
                let r = w.seal(key);
                match &r {
                    Ok(_) => {
                        shared.state.send_replace(Some(RecordingFailed::Sealed));
                    }
                    Err(f) => {
                        if let Ok(mut p) = shared.partial.lock() {
                            *p = Some((*f.partial).clone());
                        }
                        shared.state.send_replace(Some(f.error.clone()));
                    }
                }
                let _ = reply.send(r);
                return;
            }
            Err(RecvTimeoutError::Timeout) => w.flush_chunk(),
            Err(RecvTimeoutError::Disconnected) => {
                // Every handle dropped without seal: keep what we have; the
                // file verifies as incomplete (session ended abnormally).
                let s = w.abandon();
                tracing::warn!(path = %s.path.display(), "recording dropped without seal");
                return;
            }
        };
        if let Err(e) = result {
            report(&w, e);
            return;
        }
    }
}
