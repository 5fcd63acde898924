//! [`ArchiveWriter`]: writes one archive file synchronously, chunk by chunk,
//! then seals it with the trailer and signature.
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
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::recording::event::{self, Event};
use crate::recording::format::{
    self, ChunkHeader, Digest, FLAG_CONTINUES, FLAG_KEYFRAME, IndexEntry, Keyframe, SessionMeta,
    TrailerInfo,
};
use crate::recording::keys::ArchiveKey;

use super::limits::{MAX_EVENT_DATA, clamp_texts, pieces};
use super::{
    ArchiveStatus, ArchiveSummary, RecordingFailed, SealFailed, StreamOptions, WriterOptions,
};

/// Turns a chunk's events into its payload.
enum ChunkCompressor {
    /// Every chunk one whole zstd frame.
    Frames(zstd::bulk::Compressor<'static>),
    /// Chunks continue one zstd stream (flushed at each chunk's end) until
    /// a keyframe or the stream's byte bound starts the next.
    Stream {
        cctx: zstd::zstd_safe::CCtx<'static>,
        level: i32,
        options: StreamOptions,
        /// Raw bytes in the current stream; 0: none open.
        stream_bytes: u64,
    },
}

/// A zstd context for one stream of desktop chunks.
fn stream_context(
    level: i32,
    options: StreamOptions,
) -> Result<zstd::zstd_safe::CCtx<'static>, std::io::Error> {
    use zstd::zstd_safe::CParameter;
    let mut cctx = zstd::zstd_safe::CCtx::create();
    for p in [
        CParameter::CompressionLevel(level),
        CParameter::WindowLog(options.window_log),
        CParameter::EnableLongDistanceMatching(true),
    ] {
        cctx.set_parameter(p).map_err(zstd_error)?;
    }
    Ok(cctx)
}

fn zstd_error(code: usize) -> std::io::Error {
    std::io::Error::other(format!("zstd: {}", zstd::zstd_safe::get_error_name(code)))
}

impl ChunkCompressor {
    fn new(level: i32, stream: Option<StreamOptions>) -> Result<Self, std::io::Error> {
        let Some(options) = stream else {
            return zstd::bulk::Compressor::new(level).map(ChunkCompressor::Frames);
        };
        Ok(ChunkCompressor::Stream {
            cctx: stream_context(level, options)?,
            level,
            options,
            stream_bytes: 0,
        })
    }

    /// Compresses `raw` into `out`; true when the payload continues the
    /// previous chunk's stream. `fresh`: it must not (a keyframe chunk).
    fn compress(
        &mut self,
        raw: &[u8],
        fresh: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool, std::io::Error> {
        use zstd::zstd_safe::{InBuffer, OutBuffer, zstd_sys::ZSTD_EndDirective};
        out.clear();
        match self {
            ChunkCompressor::Frames(c) => {
                out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
                c.compress_to_buffer(raw, out)?;
                Ok(false)
            }
            ChunkCompressor::Stream {
                cctx,
                level,
                options,
                stream_bytes,
            } => {
                let len = raw.len() as u64;
                let continues = !fresh
                    && *stream_bytes > 0
                    && stream_bytes.saturating_add(len) <= options.max_stream_bytes;
                if !continues {
                    // A new context rather than a reset: its window and
                    // tables are allocated as data comes, so a quiet
                    // session does not keep a busy stretch's 8 MiB.
                    *cctx = stream_context(*level, *options)?;
                    *stream_bytes = 0;
                }
                out.reserve(zstd::zstd_safe::compress_bound(raw.len()) + 64);
                let mut input = InBuffer::around(raw);
                loop {
                    let pos = out.len();
                    let remaining = cctx
                        .compress_stream2(
                            &mut OutBuffer::around_pos(out, pos),
                            &mut input,
                            ZSTD_EndDirective::ZSTD_e_flush,
                        )
                        .map_err(zstd_error)?;
                    if remaining == 0 && input.pos() == raw.len() {
                        break;
                    }
                    out.reserve(remaining.max(64 * 1024));
                }
                *stream_bytes += len;
                Ok(continues)
            }
        }
    }
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
    compressor: ChunkCompressor,
    raw: Vec<u8>,
    /// The last chunk's payload; its buffer is reused.
    payload: Vec<u8>,
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
        let compressor = ChunkCompressor::new(options.zstd_level, options.stream).map_err(|e| {
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
            payload: Vec::new(),
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
        let fresh = self.chunk_flags & FLAG_KEYFRAME != 0;
        let mut payload = std::mem::take(&mut self.payload);
        let continues = match self.compressor.compress(&self.raw, fresh, &mut payload) {
            Ok(c) => c,
            Err(e) => return Err(self.fail(&e)),
        };
        let flags = if continues {
            self.chunk_flags | FLAG_CONTINUES
        } else {
            self.chunk_flags
        };
        let mut header = ChunkHeader {
            seq: self.seq,
            t_first_us: self.chunk_first_us,
            t_last_us: self.last_us,
            events: self.chunk_events,
            flags,
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
            continues,
        });
        for t_us in self.chunk_keyframes.drain(..) {
            self.keyframes.push(Keyframe {
                t_us,
                seq: self.seq,
            });
        }
        self.offset += (format::CHUNK_HEADER_LEN + payload.len()) as u64;
        self.payload = payload;
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
