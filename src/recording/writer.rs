//! Writing an archive: [`ArchiveWriter`] (synchronous, one file) and
//! [`Recorder`] (a cheap, cloneable handle for the gateways' relay loops that
//! feeds a dedicated writer thread).
//!
//! Durability policy: each chunk is written to the file (page cache) as soon
//! as it is cut — at least once a second, at `chunk_bytes`, and at close — so
//! a killed process loses nothing already cut. `fdatasync` runs at most once
//! per `sync_interval` (default 1 s) after a chunk, and `fsync` of the file
//! and its directory at seal: a power loss loses at most about two seconds.
//! Syncing every chunk would cap bulk output at the disk's flush rate.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use tokio::sync::watch;

use super::event::{self, Event};
use super::format::{
    self, ChunkHeader, Digest, EXTENSION, FLAG_KEYFRAME, IndexEntry, Keyframe, SessionMeta,
    TrailerInfo,
};
use super::keys::ArchiveKey;

/// Tuning for a writer. `Default` is what the gateways use.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// zstd level. 3 is zstd's default; see README for the measured speed.
    pub zstd_level: i32,
    /// Cut a chunk once this many event bytes are buffered.
    pub chunk_bytes: usize,
    /// Cut a chunk when its first event is this old.
    pub flush_interval: Duration,
    /// `fdatasync` at most this often.
    pub sync_interval: Duration,
    /// Events the queue between `Recorder` and the writer thread holds.
    pub queue_events: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            zstd_level: 3,
            chunk_bytes: 1 << 20,
            flush_interval: Duration::from_secs(1),
            sync_interval: Duration::from_secs(1),
            queue_events: 256,
        }
    }
}

/// Data events larger than this are split, so a chunk stays bounded.
pub const MAX_EVENT_DATA: usize = 1 << 20;

/// The archive could not be written (fail closed: the session must end).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingFailed {
    #[error("cannot create recording {path}: {message}")]
    Create {
        path: PathBuf,
        kind: std::io::ErrorKind,
        message: String,
    },
    #[error("writing recording {path} failed: {message}")]
    Write {
        path: PathBuf,
        kind: std::io::ErrorKind,
        message: String,
    },
    #[error("session id {0:?} cannot name a recording file")]
    BadSessionId(String),
    #[error("recording header: {0}")]
    Header(String),
    #[error("the recording is already sealed")]
    Sealed,
    #[error("the recording writer stopped unexpectedly")]
    WriterGone,
}

impl RecordingFailed {
    /// The underlying I/O error kind, if any (e.g. `StorageFull`).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            RecordingFailed::Create { kind, .. } | RecordingFailed::Write { kind, .. } => {
                Some(*kind)
            }
            _ => None,
        }
    }
}

/// The state of an archive when writing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveStatus {
    /// Trailer and signature written.
    Sealed,
    /// Writing stopped early; the file reads up to its last whole chunk.
    Incomplete,
}

impl ArchiveStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveStatus::Sealed => "sealed",
            ArchiveStatus::Incomplete => "incomplete",
        }
    }
}

/// What the session row in the store records about an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    pub path: PathBuf,
    pub size: u64,
    /// Sealed: the signed final digest. Incomplete: the last chunk's digest.
    pub final_digest: Digest,
    pub status: ArchiveStatus,
    /// Time of the last event.
    pub duration: Duration,
    pub events: u64,
    pub chunks: u32,
    /// The signing key's id (sealed archives only).
    pub key_id: Option<String>,
}

/// Sealing failed; `partial` describes what is safely on disk.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct SealFailed {
    pub error: RecordingFailed,
    pub partial: Box<ArchiveSummary>,
}

/// `recordings/YYYY/MM/DD/<session-id>.skrec`. The id must be a plain file
/// name (letters, digits, `-`, `_`, `.`, not starting with `.`).
pub fn archive_path(
    root: &Path,
    date: NaiveDate,
    session_id: &str,
) -> Result<PathBuf, RecordingFailed> {
    let ok = !session_id.is_empty()
        && session_id.len() <= 128
        && !session_id.starts_with('.')
        && session_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(RecordingFailed::BadSessionId(session_id.to_owned()));
    }
    Ok(root
        .join(date.format("%Y").to_string())
        .join(date.format("%m").to_string())
        .join(date.format("%d").to_string())
        .join(format!("{session_id}.{EXTENSION}")))
}

/// Writes one archive file synchronously. Times are given by the caller and
/// must not decrease (smaller ones are raised to the previous time).
pub struct ArchiveWriter {
    file: File,
    path: PathBuf,
    /// End of the last whole record on disk.
    offset: u64,
    prev_digest: Digest,
    options: WriterOptions,
    compressor: zstd::bulk::Compressor<'static>,
    raw: Vec<u8>,
    chunk_first_us: u64,
    chunk_events: u32,
    chunk_flags: u32,
    chunk_opened: Option<Instant>,
    chunk_keyframes: Vec<u64>,
    last_us: u64,
    seq: u32,
    index: Vec<IndexEntry>,
    keyframes: Vec<Keyframe>,
    events: u64,
    last_sync: Instant,
    failed: Option<RecordingFailed>,
}

impl std::fmt::Debug for ArchiveWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

fn create_error(path: &Path, e: &std::io::Error) -> RecordingFailed {
    RecordingFailed::Create {
        path: path.to_owned(),
        kind: e.kind(),
        message: e.to_string(),
    }
}

impl ArchiveWriter {
    /// Creates the file (never overwriting; parent directories 0750, file
    /// 0640) and writes the header durably.
    pub fn create(
        path: &Path,
        meta: &SessionMeta,
        options: WriterOptions,
    ) -> Result<Self, RecordingFailed> {
        let json = serde_json::to_vec(meta).map_err(|e| RecordingFailed::Header(e.to_string()))?;
        if json.len() > format::MAX_HEADER_JSON as usize {
            return Err(RecordingFailed::Header("metadata larger than 1 MiB".into()));
        }
        let compressor = zstd::bulk::Compressor::new(options.zstd_level).map_err(|e| {
            RecordingFailed::Header(format!("zstd level {}: {e}", options.zstd_level))
        })?;
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(|e| create_error(path, &e))?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(path)
            .map_err(|e| create_error(path, &e))?;
        let (bytes, digest) = format::encode_header(&json);
        let written = file.write_all(&bytes).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Leave no half header behind: nothing of this session exists yet.
            drop(file);
            let _ = fs::remove_file(path);
            return Err(create_error(path, &e));
        }
        if let Some(dir) = path.parent() {
            // Make the new directory entry itself durable.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        let raw_capacity = options
            .chunk_bytes
            .saturating_add(64 * 1024)
            .min(format::MAX_CHUNK_RAW as usize);
        Ok(ArchiveWriter {
            file,
            path: path.to_owned(),
            offset: bytes.len() as u64,
            prev_digest: digest,
            options,
            compressor,
            raw: Vec::with_capacity(raw_capacity),
            chunk_first_us: 0,
            chunk_events: 0,
            chunk_flags: 0,
            chunk_opened: None,
            chunk_keyframes: Vec::new(),
            last_us: 0,
            seq: 0,
            index: Vec::new(),
            keyframes: Vec::new(),
            events: 0,
            last_sync: Instant::now(),
            failed: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When the oldest unflushed event arrived (for time-based flushing).
    pub fn chunk_opened(&self) -> Option<Instant> {
        self.chunk_opened
    }

    fn check(&self) -> Result<(), RecordingFailed> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Appends an event at `t_us`; cuts a chunk when the buffer is full.
    /// Data over `MAX_EVENT_DATA` is split into consecutive events with the
    /// same time, so no chunk exceeds the format's bound.
    pub fn append(&mut self, t_us: u64, event: &Event) -> Result<(), RecordingFailed> {
        self.check()?;
        match event {
            Event::Input { channel, data } if data.len() > MAX_EVENT_DATA => {
                for data in pieces(data) {
                    self.append_one(
                        t_us,
                        &Event::Input {
                            channel: *channel,
                            data,
                        },
                    )?;
                }
                Ok(())
            }
            Event::Output {
                channel,
                stream,
                data,
            } if data.len() > MAX_EVENT_DATA => {
                for data in pieces(data) {
                    let (channel, stream) = (*channel, *stream);
                    self.append_one(
                        t_us,
                        &Event::Output {
                            channel,
                            stream,
                            data,
                        },
                    )?;
                }
                Ok(())
            }
            // Exec commands are capped instead: nobody types 1 MiB.
            Event::Exec { channel, command } if command.len() > MAX_EVENT_DATA => {
                let command = command.slice(..MAX_EVENT_DATA);
                self.append_one(
                    t_us,
                    &Event::Exec {
                        channel: *channel,
                        command,
                    },
                )
            }
            _ => self.append_one(t_us, event),
        }
    }

    fn append_one(&mut self, t_us: u64, event: &Event) -> Result<(), RecordingFailed> {
        // Texts come from the bastion, but a chunk must stay within the
        // format's bound whatever they hold.
        if let Some(clamped) = clamp_texts(event) {
            return self.append_one(t_us, &clamped);
        }
        let t = t_us.max(self.last_us);
        if self.chunk_events == 0 {
            self.chunk_first_us = t;
            self.chunk_opened = Some(Instant::now());
        } else if self.raw.len() + event.payload_len() + 64 > format::MAX_CHUNK_RAW as usize {
            self.flush_chunk()?;
            return self.append_one(t_us, event);
        }
        let delta = if self.chunk_events == 0 {
            0
        } else {
            t - self.last_us
        };
        event::encode(&mut self.raw, delta, event);
        self.last_us = t;
        self.chunk_events += 1;
        if matches!(event, Event::Keyframe) {
            self.chunk_flags |= FLAG_KEYFRAME;
            self.chunk_keyframes.push(t);
        }
        if self.raw.len() >= self.options.chunk_bytes {
            self.flush_chunk()?;
        }
        Ok(())
    }

    fn fail(&mut self, e: &std::io::Error) -> RecordingFailed {
        // Cut off a partly written record so the file still ends on a whole
        // chunk; if even that fails a reader stops at the last whole chunk.
        let _ = self.file.set_len(self.offset);
        let err = RecordingFailed::Write {
            path: self.path.clone(),
            kind: e.kind(),
            message: e.to_string(),
        };
        tracing::error!(path = %self.path.display(), error = %e, "recording write failed");
        self.failed = Some(err.clone());
        err
    }

    /// Compresses and writes the buffered events as one chunk (no-op when empty).
    pub fn flush_chunk(&mut self) -> Result<(), RecordingFailed> {
        self.check()?;
        if self.chunk_events == 0 {
            return Ok(());
        }
        let payload = match self.compressor.compress(&self.raw) {
            Ok(p) => p,
            Err(e) => return Err(self.fail(&e)),
        };
        let mut header = ChunkHeader {
            seq: self.seq,
            t_first_us: self.chunk_first_us,
            t_last_us: self.last_us,
            events: self.chunk_events,
            flags: self.chunk_flags,
            raw_len: self.raw.len() as u32,
            comp_len: payload.len() as u32,
            digest: [0; 32],
        };
        header.digest = header.compute_digest(&self.prev_digest, &payload);
        let written = self
            .file
            .write_all(&header.encode())
            .and_then(|()| self.file.write_all(&payload));
        if let Err(e) = written {
            return Err(self.fail(&e));
        }
        self.index.push(IndexEntry {
            seq: self.seq,
            offset: self.offset,
            t_first_us: header.t_first_us,
            t_last_us: header.t_last_us,
            events: header.events,
            keyframe: header.flags & FLAG_KEYFRAME != 0,
        });
        for t_us in self.chunk_keyframes.drain(..) {
            self.keyframes.push(Keyframe {
                t_us,
                seq: self.seq,
            });
        }
        self.offset += (format::CHUNK_HEADER_LEN + payload.len()) as u64;
        self.prev_digest = header.digest;
        self.events += u64::from(self.chunk_events);
        self.seq += 1;
        self.raw.clear();
        self.chunk_events = 0;
        self.chunk_flags = 0;
        self.chunk_opened = None;
        if self.last_sync.elapsed() >= self.options.sync_interval {
            if let Err(e) = self.file.sync_data() {
                return Err(self.fail(&e));
            }
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// What is safely on disk now.
    pub fn summary(&self) -> ArchiveSummary {
        ArchiveSummary {
            path: self.path.clone(),
            size: self.offset,
            final_digest: self.prev_digest,
            status: ArchiveStatus::Incomplete,
            duration: Duration::from_micros(self.index.last().map_or(0, |c| c.t_last_us)),
            events: self.events,
            chunks: self.seq,
            key_id: None,
        }
    }

    /// Flushes, writes the signed trailer and syncs file and directory.
    pub fn seal(mut self, key: &ArchiveKey) -> Result<ArchiveSummary, SealFailed> {
        if let Err(error) = self.flush_chunk() {
            return Err(SealFailed {
                error,
                partial: Box::new(self.summary()),
            });
        }
        let duration_us = self.index.last().map_or(0, |c| c.t_last_us);
        let info = TrailerInfo {
            chunks: self.seq,
            events: self.events,
            duration_us,
            sealed_at: Utc::now(),
            key_id: key.id().to_owned(),
            index: std::mem::take(&mut self.index),
            keyframes: std::mem::take(&mut self.keyframes),
        };
        let json = match serde_json::to_vec(&info) {
            Ok(j) => j,
            Err(e) => {
                return Err(SealFailed {
                    error: RecordingFailed::Header(e.to_string()),
                    partial: Box::new(self.summary()),
                });
            }
        };
        let (bytes, final_digest) =
            format::encode_trailer(&json, &self.prev_digest, self.offset, key.signing_key());
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_all());
        if let Err(e) = written {
            let error = self.fail(&e);
            return Err(SealFailed {
                error,
                partial: Box::new(self.summary()),
            });
        }
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(ArchiveSummary {
            path: self.path.clone(),
            size: self.offset + bytes.len() as u64,
            final_digest,
            status: ArchiveStatus::Sealed,
            duration: Duration::from_micros(duration_us),
            events: self.events,
            chunks: self.seq,
            key_id: Some(key.id().to_owned()),
        })
    }

    /// Flushes what is buffered and syncs, leaving the file unsealed (it then
    /// verifies as incomplete). For a session that ends abnormally.
    pub fn abandon(mut self) -> ArchiveSummary {
        let _ = self.flush_chunk();
        let _ = self.file.sync_data();
        self.summary()
    }
}

fn pieces(data: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    (0..data.len())
        .step_by(MAX_EVENT_DATA)
        .map(move |start| data.slice(start..(start + MAX_EVENT_DATA).min(data.len())))
}

/// Longest text field kept in an event (longer ones are cut).
pub const MAX_EVENT_TEXT: usize = 64 * 1024;

fn clamp(s: &str) -> String {
    let mut end = MAX_EVENT_TEXT.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

/// A copy of `event` with over-long texts cut, or None if none is too long.
fn clamp_texts(event: &Event) -> Option<Event> {
    let long = |s: &String| s.len() > MAX_EVENT_TEXT;
    match event {
        Event::Pty {
            channel,
            term,
            cols,
            rows,
        } if long(term) => Some(Event::Pty {
            channel: *channel,
            term: clamp(term),
            cols: *cols,
            rows: *rows,
        }),
        Event::ChannelOpened {
            channel,
            kind,
            detail,
        } if long(kind) || long(detail) => Some(Event::ChannelOpened {
            channel: *channel,
            kind: clamp(kind),
            detail: clamp(detail),
        }),
        Event::ChannelRefused {
            channel,
            kind,
            detail,
        } if long(kind) || long(detail) => Some(Event::ChannelRefused {
            channel: *channel,
            kind: clamp(kind),
            detail: clamp(detail),
        }),
        Event::ExitSignal {
            channel,
            signal,
            core_dumped,
            message,
        } if long(signal) || long(message) => Some(Event::ExitSignal {
            channel: *channel,
            signal: clamp(signal),
            core_dumped: *core_dumped,
            message: clamp(message),
        }),
        Event::Mark { label, detail } if long(label) || long(detail) => Some(Event::Mark {
            label: clamp(label),
            detail: clamp(detail),
        }),
        _ => None,
    }
}

enum Msg {
    Event(u64, Event),
    Flush(mpsc::Sender<Result<(), RecordingFailed>>),
    Seal(mpsc::Sender<Result<ArchiveSummary, SealFailed>>),
}

struct Shared {
    start: Instant,
    path: PathBuf,
    /// Fast check for `record`; the watch carries the error itself.
    failed: AtomicBool,
    state: watch::Sender<Option<RecordingFailed>>,
    /// What was on disk when the writer failed.
    partial: Mutex<Option<ArchiveSummary>>,
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

    /// Timestamps and queues an event if the queue has room; hands the event
    /// back (`Ok(Some)`) when it is full, for the caller to wait its own way.
    pub fn try_record(&self, event: Event) -> Result<Option<Event>, RecordingFailed> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(self.current_failure());
        }
        match self.tx.try_send(Msg::Event(self.now_us(), event)) {
            Ok(()) => Ok(None),
            Err(mpsc::TrySendError::Full(Msg::Event(_, event))) => Ok(Some(event)),
            Err(_) => Err(self.current_failure()),
        }
    }

    /// Like `record`, but waits for queue room without blocking the async
    /// executor's thread (polls every millisecond while the queue is full).
    /// The event keeps the time it was offered at.
    pub async fn record_async(&self, event: Event) -> Result<(), RecordingFailed> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(self.current_failure());
        }
        let mut msg = Msg::Event(self.now_us(), event);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(mpsc::TrySendError::Full(m)) => {
                    if self.shared.failed.load(Ordering::Acquire) {
                        return Err(self.current_failure());
                    }
                    msg = m;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(mpsc::TrySendError::Disconnected(_)) => return Err(self.current_failure()),
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
        self.tx
            .send(Msg::Flush(reply))
            .map_err(|_| self.current_failure())?;
        rx.recv().unwrap_or_else(|_| Err(self.current_failure()))
    }

    /// Flushes, writes the signed trailer and stops the writer (blocking).
    /// Other clones' later `record` calls fail with `Sealed`.
    pub fn seal(self) -> Result<ArchiveSummary, SealFailed> {
        let (reply, rx) = mpsc::channel();
        let sent = self.tx.send(Msg::Seal(reply)).is_ok();
        if sent && let Ok(r) = rx.recv() {
            return r;
        }
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
        Err(SealFailed {
            error: self.current_failure(),
            partial,
        })
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
    loop {
        let wait = match w.chunk_opened() {
            Some(opened) => flush_interval.saturating_sub(opened.elapsed()),
            None => Duration::from_secs(3600),
        };
        let result = match rx.recv_timeout(wait) {
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
