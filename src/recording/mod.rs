//! The recording archive both gateways write: one signed, chunked, zstd
//! compressed file per session (docs/recording-format.md).
//!
//! Write with [`Recorder`] (or [`ArchiveWriter`] when you own the thread),
//! read with [`Reader`], check evidence with [`verify_file`].

pub mod event;
pub mod format;
pub mod keys;
pub mod reader;
pub mod verify;
pub mod writer;

pub use event::{DecodeError, Event, Stream, TimedEvent};
pub use format::{
    DesktopSize, EXTENSION, IndexEntry, Keyframe, Protocol, RdpChannel, RdpInfo, SessionMeta,
    TerminalSize, TrailerInfo,
};
pub use keys::{
    ArchiveKey, KeyError, PublicKey, generate_signing_key, key_id, load_public_key,
    load_signing_key, public_key_path, trusted_keys,
};
pub use reader::{CheckedChunk, Chunks, DecodedEvents, Events, ReadError, Reader, Tail};
pub use verify::{Region, Report, Verdict, VerifyError, verify_file};
pub use writer::{
    ArchiveStatus, ArchiveSummary, ArchiveWriter, MAX_EVENT_DATA, MAX_EVENT_TEXT, Recorder,
    RecordingFailed, SealFailed, StreamOptions, WriterOptions, archive_path,
};
