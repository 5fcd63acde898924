//! Writing an archive: [`ArchiveWriter`] (synchronous, one file, in
//! `archive`) and [`Recorder`] (a cheap, cloneable handle for the gateways'
//! relay loops that feeds a dedicated writer thread, in `recorder`); the
//! bounds on one event are in `limits`. This file holds what both share:
//! options, failure kinds, the summary of a written archive, and its path.

mod archive;
mod limits;
mod recorder;

pub use archive::ArchiveWriter;
pub use limits::{MAX_EVENT_DATA, MAX_EVENT_TEXT};
pub use recorder::Recorder;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;

use crate::recording::format::{Digest, EXTENSION};

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
    /// `None`: every chunk is one whole zstd frame (terminal sessions).
    /// `Some`: chunks continue one zstd stream with a long window, so a
    /// chunk finds repeats in the chunks before it (desktop sessions,
    /// whose screens repeat from second to second).
    pub stream: Option<StreamOptions>,
}

/// How desktop chunks share one compression stream (see
/// docs/recording-format.md, `FLAG_CONTINUES`). A new stream starts at the
/// first chunk, at every chunk holding a keyframe (a replay starts there),
/// and once a stream holds `max_stream_bytes` of events (what a reader
/// starting mid-stream must decompress first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// zstd window, 2^n bytes: how far back repeats are found. The writer
    /// and every reader hold this much of the stream in memory.
    pub window_log: u32,
    pub max_stream_bytes: u64,
}

impl WriterOptions {
    /// What desktop (RDP) sessions are written with: a 8 MiB window with
    /// zstd's long-distance matcher finds a full-screen picture shown again
    /// two or three frames later (see the README's RDP benchmark). Level 1:
    /// on xrdp's bitmaps it stores as small as level 3 with that matcher
    /// and takes about half the CPU on a screen of new text (every cycle
    /// the writer spends is taken from the target and the client on a
    /// small bastion).
    pub fn desktop() -> Self {
        WriterOptions {
            zstd_level: 1,
            stream: Some(StreamOptions {
                window_log: 23,
                max_stream_bytes: 64 << 20,
            }),
            ..WriterOptions::default()
        }
    }
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            zstd_level: 3,
            chunk_bytes: 1 << 20,
            flush_interval: Duration::from_secs(1),
            sync_interval: Duration::from_secs(1),
            queue_events: 256,
            stream: None,
        }
    }
}

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
    /// What the person at the client is told: why, in a few words, without
    /// the server's paths or system error text (those go to the log and the
    /// `recording_failed` audit event).
    pub fn for_person(&self) -> &'static str {
        use std::io::ErrorKind;
        match self {
            RecordingFailed::Create {
                kind: ErrorKind::StorageFull | ErrorKind::QuotaExceeded,
                ..
            }
            | RecordingFailed::Write {
                kind: ErrorKind::StorageFull | ErrorKind::QuotaExceeded,
                ..
            } => "the recording storage is full",
            RecordingFailed::Create { .. } | RecordingFailed::Header(_) => {
                "the recording cannot be created"
            }
            RecordingFailed::BadSessionId(_) => "the session id cannot name a recording",
            RecordingFailed::Write { .. } => "the recording cannot be written",
            RecordingFailed::Sealed => "the recording is already sealed",
            RecordingFailed::WriterGone => "the recording writer stopped unexpectedly",
        }
    }

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
