//! [`Recorder`]: the cheap, cloneable handle the gateways' relay loops record
//! through, and the small pool of writer threads behind every recording
//! (a bounded queue per recording, backpressure, fail closed).
//!
//! Why a pool and not a thread per session: a bastion holding 1 000 idle
//! sessions had 1 000 writer threads, each with its own stack, its own
//! share of malloc's arenas and a futex wake-up for every event; the memory
//! they touched stayed scattered after the sessions closed. A few threads
//! (four per core, at least eight: a writer also waits on the disk in
//! `write` and `fdatasync`) serve every recording instead:
//!
//! - **Order**: a recording is served by at most one writer at a time (it is
//!   *scheduled* from the first queued message until a writer finds its
//!   queue empty), so events reach the file in the order `record` queued
//!   them, and `flush`/`seal` after everything queued before them.
//! - **Fairness**: a writer serves at most [`BATCH`] messages of one
//!   recording, then puts it at the back of the ready list, so one busy
//!   session cannot hold a writer while others wait.
//! - **Bounded queue and backpressure**: each recording's queue holds at most
//!   `queue_events` events, exactly as the per-session channel did; `record`
//!   blocks, `try_record` hands the event back, `record_async` waits.
//! - **Chunk age** (a SIGKILL loses under a second, docs/recording-format.md):
//!   when a chunk is open after a writer's turn, the pool keeps a timer for
//!   the moment its first event is `flush_interval` old and schedules the
//!   recording then; a writer also cuts an old chunk before appending.
//! - **Seal** runs in the caller's thread (the gateways call it from
//!   tokio's blocking pool): a writer hands the `ArchiveWriter` over once
//!   everything queued before is written, so the seal's `fsync`s do not hold
//!   a pool thread.
//! - **Handles**: when the last `Recorder` is dropped without `seal`, the
//!   recording is abandoned (flushed, left unsealed) after what was queued.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::recording::event::Event;
use crate::recording::format::SessionMeta;
use crate::recording::keys::ArchiveKey;

use super::{
    ArchiveStatus, ArchiveSummary, ArchiveWriter, RecordingFailed, SealFailed, WriterOptions,
    archive_path,
};

/// Messages a writer serves of one recording before turning to the next.
const BATCH: usize = 64;

enum Msg {
    Event(u64, Event),
    Flush(mpsc::Sender<Result<(), RecordingFailed>>),
    /// Hands the writer to the sealing caller: sealing syncs file and
    /// directory, which would hold a pool thread for milliseconds while
    /// other recordings wait (1 000 sessions closing at once).
    Seal(mpsc::Sender<(ArchiveWriter, ArchiveKey)>),
    /// Every handle was dropped without `seal`.
    Abandon,
}

/// Locks, ignoring poison: every critical section here leaves its data
/// consistent, and a writer that panicked has already failed its recording.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What handles and writers share about one recording's queue.
struct Queue {
    msgs: VecDeque<Msg>,
    /// `Event` messages in `msgs` (the bounded part).
    events: usize,
    /// In the ready list or being served by a writer.
    scheduled: bool,
    /// Sealed, failed or abandoned: nothing more is written.
    closed: bool,
    handles: usize,
    /// The chunk-age timer the pool holds for this recording.
    timer_at: Option<Instant>,
}

struct Shared {
    start: Instant,
    path: PathBuf,
    capacity: usize,
    flush_interval: Duration,
    /// Fast check for `record`; the watch carries the error itself.
    failed: AtomicBool,
    state: watch::Sender<Option<RecordingFailed>>,
    /// What was on disk when the writer failed.
    partial: Mutex<Option<ArchiveSummary>>,
    queue: Mutex<Queue>,
    /// Signalled when the queue has room again or the recording closed.
    room: Condvar,
    /// The same, for `record_async` (waits without a thread).
    room_async: tokio::sync::Notify,
    /// Locked only by the writer serving the recording (uncontended).
    writer: Mutex<Option<(ArchiveWriter, ArchiveKey)>>,
}

/// A cheap, cloneable handle to a session's archive, written by the shared
/// writer pool.
///
/// `record` timestamps the event (monotonic µs since `open`) and queues it.
/// The queue is bounded (`queue_events`): under a burst faster than the
/// writer, `record` blocks its caller until there is room — backpressure to
/// the relay and through TCP to the peer, never dropped events and never
/// unbounded memory. At the measured writer speed a full queue drains in
/// milliseconds; `record_async` waits without blocking an executor thread.
/// Once the writer has failed, `record` returns the error immediately;
/// `failed()` lets a relay `select!` on that.
pub struct Recorder {
    shared: Arc<Shared>,
}

impl Clone for Recorder {
    fn clone(&self) -> Self {
        lock(&self.shared.queue).handles += 1;
        Recorder {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let mut q = lock(&self.shared.queue);
        q.handles = q.handles.saturating_sub(1);
        if q.handles == 0 && !q.closed {
            q.msgs.push_back(Msg::Abandon);
            let run = !std::mem::replace(&mut q.scheduled, true);
            drop(q);
            if run {
                pool().ready(Arc::clone(&self.shared));
            }
        }
    }
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
    /// for the writer pool.
    pub fn open(
        root: &Path,
        meta: &SessionMeta,
        key: ArchiveKey,
        options: WriterOptions,
    ) -> Result<Recorder, RecordingFailed> {
        let path = archive_path(root, meta.started_at.date_naive(), &meta.session_id)?;
        Self::create(&path, meta, key, options)
    }

    /// Like `open`, at an explicit path. Errors here (permissions, disk full,
    /// no writer thread could start) mean the session must not start.
    pub fn create(
        path: &Path,
        meta: &SessionMeta,
        key: ArchiveKey,
        options: WriterOptions,
    ) -> Result<Recorder, RecordingFailed> {
        let capacity = options.queue_events.max(1);
        let flush_interval = options.flush_interval;
        start_pool().map_err(|e| RecordingFailed::Write {
            path: path.to_owned(),
            kind: e.kind(),
            message: format!("cannot start writer thread: {e}"),
        })?;
        let writer = ArchiveWriter::create(path, meta, options)?;
        let (state, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            start: Instant::now(),
            path: path.to_owned(),
            capacity,
            flush_interval,
            failed: AtomicBool::new(false),
            state,
            partial: Mutex::new(None),
            queue: Mutex::new(Queue {
                msgs: VecDeque::new(),
                events: 0,
                scheduled: false,
                closed: false,
                handles: 1,
                timer_at: None,
            }),
            room: Condvar::new(),
            room_async: tokio::sync::Notify::new(),
            writer: Mutex::new(Some((writer, key))),
        });
        Ok(Recorder { shared })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Microseconds since the session start (the time `record` stamps).
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.shared.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn current_failure(&self) -> RecordingFailed {
        self.shared.current_failure()
    }

    /// Queues `msg` in `q` and schedules the recording if no writer has it.
    fn enqueue(&self, mut q: MutexGuard<'_, Queue>, msg: Msg) {
        if matches!(msg, Msg::Event(..)) {
            q.events += 1;
        }
        q.msgs.push_back(msg);
        let run = !std::mem::replace(&mut q.scheduled, true);
        drop(q);
        if run {
            pool().ready(Arc::clone(&self.shared));
        }
    }

    /// Timestamps and queues an event. Blocks only while the queue is full.
    pub fn record(&self, event: Event) -> Result<(), RecordingFailed> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(self.current_failure());
        }
        let t = self.now_us();
        let mut q = lock(&self.shared.queue);
        loop {
            if q.closed {
                return Err(self.current_failure());
            }
            if q.events < self.shared.capacity {
                self.enqueue(q, Msg::Event(t, event));
                return Ok(());
            }
            q = self
                .shared
                .room
                .wait(q)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Timestamps and queues an event if the queue has room; hands the event
    /// back (`Ok(Some)`) when it is full, for the caller to wait its own way.
    pub fn try_record(&self, event: Event) -> Result<Option<Event>, RecordingFailed> {
        self.try_queue(self.now_us(), event)
    }

    fn try_queue(&self, t: u64, event: Event) -> Result<Option<Event>, RecordingFailed> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(self.current_failure());
        }
        let q = lock(&self.shared.queue);
        if q.closed {
            return Err(self.current_failure());
        }
        if q.events >= self.shared.capacity {
            return Ok(Some(event));
        }
        self.enqueue(q, Msg::Event(t, event));
        Ok(None)
    }

    /// Like `record`, but waits for queue room without blocking the async
    /// executor's thread (woken when a writer takes an event from a full
    /// queue, or the recording closes). The event keeps the time it was
    /// offered at.
    pub async fn record_async(&self, event: Event) -> Result<(), RecordingFailed> {
        let t = self.now_us();
        let mut event = event;
        loop {
            // Registered before looking, so room made in between wakes it.
            let mut room = std::pin::pin!(self.shared.room_async.notified());
            room.as_mut().enable();
            match self.try_queue(t, event)? {
                None => return Ok(()),
                Some(e) => {
                    event = e;
                    room.await;
                }
            }
        }
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
        let (reply, rx) = mpsc::channel();
        let q = lock(&self.shared.queue);
        if q.closed {
            return Err(self.current_failure());
        }
        self.enqueue(q, Msg::Flush(reply));
        rx.recv().unwrap_or_else(|_| Err(self.current_failure()))
    }

    /// Flushes, writes the signed trailer and stops the writer (blocking).
    /// Other clones' later `record` calls fail with `Sealed`.
    pub fn seal(self) -> Result<ArchiveSummary, SealFailed> {
        let (reply, rx) = mpsc::channel();
        let q = lock(&self.shared.queue);
        let sent = !q.closed;
        if sent {
            self.enqueue(q, Msg::Seal(reply));
        } else {
            drop(q);
        }
        if sent && let Ok((w, key)) = rx.recv() {
            let r = w.seal(&key);
            match &r {
                Ok(_) => {
                    self.shared
                        .state
                        .send_replace(Some(RecordingFailed::Sealed));
                }
                Err(f) => {
                    *lock(&self.shared.partial) = Some((*f.partial).clone());
                    self.shared.state.send_replace(Some(f.error.clone()));
                }
            }
            return r;
        }
        let partial = lock(&self.shared.partial)
            .clone()
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
        Err(SealFailed {
            error: self.current_failure(),
            partial,
        })
    }
}

impl Shared {
    fn current_failure(&self) -> RecordingFailed {
        self.state
            .borrow()
            .clone()
            .unwrap_or(RecordingFailed::WriterGone)
    }

    /// Nothing more is written: wakes blocked `record` calls, which then
    /// return the failure (or `Sealed`).
    fn close(&self) {
        let mut q = lock(&self.queue);
        q.closed = true;
        q.msgs.clear();
        q.events = 0;
        drop(q);
        self.room.notify_all();
        self.room_async.notify_waiters();
    }

    fn report(&self, w: &ArchiveWriter, e: RecordingFailed) {
        *lock(&self.partial) = Some(w.summary());
        self.failed.store(true, Ordering::Release);
        self.state.send_replace(Some(e));
    }

    /// One writer's turn: up to `BATCH` queued messages, in order. Returns
    /// whether the recording is still scheduled (more is queued), and the
    /// chunk-age timer to set, if any.
    fn serve(&self) -> (bool, Option<Instant>) {
        let mut slot = lock(&self.writer);
        for _ in 0..BATCH {
            let msg = {
                let mut q = lock(&self.queue);
                match q.msgs.pop_front() {
                    Some(m) => {
                        if matches!(m, Msg::Event(..)) {
                            // Room again: wake the blocked `record`s.
                            if q.events == self.capacity {
                                self.room.notify_all();
                                self.room_async.notify_waiters();
                            }
                            q.events -= 1;
                        }
                        m
                    }
                    None => {
                        q.scheduled = false;
                        drop(q);
                        let alive = self.cut_if_old(&mut slot);
                        return (false, self.timer(&slot, alive));
                    }
                }
            };
            if !self.cut_if_old(&mut slot) {
                return (false, None);
            }
            self.handle(&mut slot, msg);
        }
        (true, None)
    }

    /// Cuts the open chunk if its first event is `flush_interval` old.
    /// `false` if that failed (the recording is closed).
    fn cut_if_old(&self, slot: &mut Option<(ArchiveWriter, ArchiveKey)>) -> bool {
        let Some((w, _)) = slot.as_mut() else {
            return true;
        };
        if w.chunk_opened()
            .is_some_and(|o| o.elapsed() >= self.flush_interval)
            && let Err(e) = w.flush_chunk()
        {
            self.report(w, e);
            *slot = None;
            self.close();
            return false;
        }
        true
    }

    /// When the open chunk must be cut, unless a timer for it is set already.
    fn timer(&self, slot: &Option<(ArchiveWriter, ArchiveKey)>, alive: bool) -> Option<Instant> {
        let at = slot.as_ref()?.0.chunk_opened()? + self.flush_interval;
        let mut q = lock(&self.queue);
        if !alive || q.closed || q.timer_at == Some(at) {
            return None;
        }
        q.timer_at = Some(at);
        Some(at)
    }

    fn handle(&self, slot: &mut Option<(ArchiveWriter, ArchiveKey)>, msg: Msg) {
        let Some((w, _)) = slot.as_mut() else {
            // Closed: a `Flush` reply dropped here tells its caller so.
            return;
        };
        let result = match msg {
            Msg::Event(t, e) => w.append(t, &e),
            Msg::Flush(reply) => {
                let r = w.flush_chunk();
                // Publish the failure before answering, so the caller's
                // next `record` already refuses.
                if let Err(e) = &r {
                    self.report(w, e.clone());
                    *slot = None;
                    self.close();
                }
                let _ = reply.send(r);
                return;
            }
            Msg::Seal(reply) => {
                // Mark first so racing clones fail with `Sealed`.
                self.failed.store(true, Ordering::Release);
                if let Some(writer) = slot.take() {
                    self.close();
                    // The caller seals; if it is gone, the writer drops
                    // here and the file stays incomplete.
                    let _ = reply.send(writer);
                }
                return;
            }
            Msg::Abandon => {
                // Every handle dropped without seal: keep what we have; the
                // file verifies as incomplete (session ended abnormally).
                if let Some((w, _)) = slot.take() {
                    let s = w.abandon();
                    tracing::warn!(path = %s.path.display(), "recording dropped without seal");
                }
                self.close();
                return;
            }
        };
        if let Err(e) = result {
            self.report(w, e);
            *slot = None;
            self.close();
        }
    }

    /// A writer panicked while serving this recording: fail it closed.
    fn panicked(&self) {
        let mut slot = lock(&self.writer);
        if let Some((w, _)) = slot.as_ref() {
            *lock(&self.partial) = Some(w.summary());
        }
        *slot = None;
        drop(slot);
        self.failed.store(true, Ordering::Release);
        self.state.send_replace(Some(RecordingFailed::WriterGone));
        self.close();
    }
}

/// A chunk-age deadline of one recording.
struct Timer {
    at: Instant,
    recording: Arc<Shared>,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

#[derive(Default)]
struct PoolState {
    ready: VecDeque<Arc<Shared>>,
    timers: BinaryHeap<Reverse<Timer>>,
}

/// The writer threads every recording of the process shares.
struct Pool {
    state: Mutex<PoolState>,
    wake: Condvar,
}

static POOL: OnceLock<Pool> = OnceLock::new();
static STARTED: OnceLock<Result<(), std::io::ErrorKind>> = OnceLock::new();

/// Writer threads: four per core, at least eight, at most 32. Compressing
/// needs one per core; the others keep cores busy while some wait in
/// `fdatasync` (a few ms each here, once a second per active recording).
fn pool_size() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    (cores * 4).clamp(8, 32)
}

fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool {
        state: Mutex::new(PoolState::default()),
        wake: Condvar::new(),
    })
}

/// Starts the writer threads once; an error only if none could start.
fn start_pool() -> Result<(), std::io::Error> {
    let started = STARTED.get_or_init(|| {
        let pool = pool();
        let mut spawned = 0;
        let mut last = None;
        for i in 0..pool_size() {
            match std::thread::Builder::new()
                .name(format!("rec-writer-{i}"))
                .spawn(move || pool_writer(pool))
            {
                Ok(_) => spawned += 1,
                Err(e) => last = Some(e.kind()),
            }
        }
        match last {
            Some(kind) if spawned == 0 => Err(kind),
            _ => Ok(()),
        }
    });
    (*started).map_err(std::io::Error::from)
}

impl Pool {
    fn ready(&self, recording: Arc<Shared>) {
        lock(&self.state).ready.push_back(recording);
        self.wake.notify_one();
    }

    fn set_timer(&self, at: Instant, recording: Arc<Shared>) {
        let mut st = lock(&self.state);
        let earliest = st.timers.peek().is_none_or(|Reverse(t)| at < t.at);
        st.timers.push(Reverse(Timer { at, recording }));
        drop(st);
        if earliest {
            // A sleeping writer may be waiting for a later deadline.
            self.wake.notify_one();
        }
    }
}

fn pool_writer(pool: &'static Pool) {
    let mut st = lock(&pool.state);
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        while st.timers.peek().is_some_and(|Reverse(t)| t.at <= now) {
            if let Some(Reverse(t)) = st.timers.pop() {
                due.push(t);
            }
        }
        if !due.is_empty() {
            drop(st);
            for t in due {
                let mut q = lock(&t.recording.queue);
                if q.timer_at == Some(t.at) {
                    q.timer_at = None;
                }
                let run = !q.closed && !std::mem::replace(&mut q.scheduled, true);
                drop(q);
                if run {
                    pool.ready(t.recording);
                }
            }
            st = lock(&pool.state);
            continue;
        }
        if let Some(recording) = st.ready.pop_front() {
            drop(st);
            let served =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| recording.serve()));
            match served {
                Ok((more, timer)) => {
                    if let Some(at) = timer {
                        pool.set_timer(at, Arc::clone(&recording));
                    }
                    if more {
                        pool.ready(recording);
                    }
                }
                Err(_) => {
                    tracing::error!(path = %recording.path.display(), "recording writer panicked");
                    recording.panicked();
                }
            }
            st = lock(&pool.state);
            continue;
        }
        let wait = st
            .timers
            .peek()
            .map_or(Duration::from_secs(3600), |Reverse(t)| {
                t.at.saturating_duration_since(now)
            });
        st = pool
            .wake
            .wait_timeout(st, wait)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
}
