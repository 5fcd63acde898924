//! Reading an archive: events in order, seeking by time through the index,
//! and files cut short by a crash (read up to the last whole chunk).
//!
//! The reader checks the hash chain of the chunks it reads in sequence but
//! not the signature; `verify` is the integrity check for evidence.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use bytes::Bytes;

use super::event::{Decoder, TimedEvent};
use super::format::{self, ChunkHeader, Digest, IndexEntry, Next, Problem, SessionMeta};

/// Errors reading an archive.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    IoText(String),
    #[error("the recording header is cut short")]
    HeaderTruncated,
    #[error("damaged recording: {0}")]
    Corrupt(String),
}

fn from_problem(p: Problem) -> ReadError {
    match p {
        Problem::Truncated => ReadError::HeaderTruncated,
        Problem::Corrupt(s) => ReadError::Corrupt(s),
        Problem::Io(s) => ReadError::IoText(s),
    }
}

/// An open archive.
#[derive(Debug)]
pub struct Reader {
    path: std::path::PathBuf,
    file: BufReader<File>,
    file_len: u64,
    meta: SessionMeta,
    header_digest: Digest,
    data_start: u64,
    index: Option<Vec<IndexEntry>>,
    /// Keyframe times from a sealed file's trailer.
    trailer_keyframes: Option<Vec<u64>>,
    sealed: Option<bool>,
}

/// The largest zstd window a chunk stream may use, 2^n bytes.
const MAX_WINDOW_LOG: u32 = 24;

/// Decompresses chunk payloads. A chunk without [`format::FLAG_CONTINUES`]
/// starts afresh (a whole zstd frame, or the start of one that later chunks
/// continue); a continuing chunk decodes only right after its predecessor
/// was decoded by the same decoder, through the same stream.
pub(crate) struct ChunkDecoder {
    dctx: zstd::zstd_safe::DCtx<'static>,
    /// The seq a continuing chunk may have next; None: no stream open.
    next_seq: Option<u32>,
}

impl std::fmt::Debug for ChunkDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkDecoder")
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl ChunkDecoder {
    pub(crate) fn new() -> Self {
        let mut dctx = zstd::zstd_safe::DCtx::create();
        // A damaged or hostile archive cannot make a reader allocate more
        // than a 16 MiB window (writers use 8 MiB).
        let _ = dctx.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(MAX_WINDOW_LOG));
        ChunkDecoder {
            dctx,
            next_seq: None,
        }
    }

    /// The payload's events, exactly `raw_len` bytes.
    pub(crate) fn decode(&mut self, header: &ChunkHeader, payload: &[u8]) -> Result<Bytes, String> {
        use zstd::zstd_safe::{InBuffer, OutBuffer, ResetDirective, get_error_name};
        let raw_len = header.raw_len as usize;
        let continues = header.flags & format::FLAG_CONTINUES != 0;
        if continues {
            if self.next_seq != Some(header.seq) {
                self.next_seq = None;
                return Err(format!(
                    "chunk {} continues a compression stream whose earlier chunks were not read",
                    header.seq
                ));
            }
        } else {
            self.next_seq = None;
            // A whole frame of known size (every chunk of a writer that does
            // not continue streams): one call, no stream state.
            if let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(payload)
                && n == raw_len as u64
            {
                let raw =
                    zstd::bulk::decompress(payload, raw_len).map_err(|e| format!("zstd: {e}"))?;
                if raw.len() != raw_len {
                    return Err("decompressed size differs from the header".into());
                }
                return Ok(Bytes::from(raw));
            }
            self.dctx
                .reset(ResetDirective::SessionOnly)
                .map_err(|c| format!("zstd: {}", get_error_name(c)))?;
        }
        // One byte more than the header allows, to notice a payload that
        // holds more.
        let mut raw: Vec<u8> = Vec::with_capacity(raw_len + 1);
        let mut input = InBuffer::around(payload);
        loop {
            let before = (input.pos(), raw.len());
            let (hint, produced) = {
                let mut out = OutBuffer::around_pos(&mut raw, before.1);
                let hint = self
                    .dctx
                    .decompress_stream(&mut out, &mut input)
                    .map_err(|c| format!("zstd: {}", get_error_name(c)))?;
                (hint, out.pos())
            };
            if produced > raw_len {
                return Err("decompressed size differs from the header".into());
            }
            if input.pos() == payload.len() && (produced < raw.capacity() || hint == 0) {
                break;
            }
            if hint == 0 && input.pos() < payload.len() {
                return Err("data after the end of the zstd frame".into());
            }
            if (input.pos(), produced) == before {
                return Err("zstd: the payload ends inside a block".into());
            }
        }
        if raw.len() != raw_len {
            return Err("decompressed size differs from the header".into());
        }
        self.next_seq = header.seq.checked_add(1);
        Ok(Bytes::from(raw))
    }
}

/// Decodes a chunk's events lazily (memory stays bounded by the chunk),
/// checking the count and time range against the chunk header at the end.
#[derive(Debug)]
pub(crate) struct ChunkEvents {
    header: ChunkHeader,
    decoder: Decoder,
    t: u64,
    seen: u32,
    finished: bool,
}

impl ChunkEvents {
    pub(crate) fn new(header: ChunkHeader, raw: Bytes) -> Self {
        ChunkEvents {
            t: header.t_first_us,
            header,
            decoder: Decoder::new(raw),
            seen: 0,
            finished: false,
        }
    }

    fn step(&mut self) -> Result<Option<TimedEvent>, String> {
        if self.decoder.is_empty() {
            if self.seen == 0 {
                return Err("empty chunk".into());
            }
            if self.seen != self.header.events {
                return Err("event count differs from the header".into());
            }
            if self.t != self.header.t_last_us {
                return Err("last event time differs from the header".into());
            }
            return Ok(None);
        }
        let (delta, event) = self.decoder.next_event().map_err(|e| e.to_string())?;
        if self.seen == 0 && delta != 0 {
            return Err("first event time differs from the header".into());
        }
        if self.seen == self.header.events {
            return Err("more events than the header says".into());
        }
        self.t = self.t.checked_add(delta).ok_or("event time overflows")?;
        self.seen += 1;
        Ok(Some(TimedEvent {
            t_us: self.t,
            event,
        }))
    }
}

impl Iterator for ChunkEvents {
    type Item = Result<TimedEvent, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, ReadError> {
        let io = |source| ReadError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut file = BufReader::with_capacity(256 * 1024, file);
        let h = format::read_header(&mut file, file_len).map_err(from_problem)?;
        Ok(Reader {
            path: path.to_path_buf(),
            file,
            file_len,
            meta: h.meta,
            header_digest: h.digest,
            data_start: h.data_start,
            index: None,
            trailer_keyframes: None,
            sealed: None,
        })
    }

    pub fn meta(&self) -> &SessionMeta {
        &self.meta
    }

    /// The archive's file, as it was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The chunk index: from the trailer of a sealed file, else by scanning
    /// chunk headers (a crashed session). Cached.
    pub fn index(&mut self) -> Result<&[IndexEntry], ReadError> {
        if self.index.is_none() {
            let built = self.build_index()?;
            self.index = Some(built);
        }
        Ok(self.index.as_deref().unwrap_or(&[]))
    }

    /// True when the file has a trailer (it was sealed); not a signature check.
    pub fn is_sealed(&mut self) -> Result<bool, ReadError> {
        self.index()?;
        Ok(self.sealed.unwrap_or(false))
    }

    fn build_index(&mut self) -> Result<Vec<IndexEntry>, ReadError> {
        // Fast path: the footer points at the trailer, whose index we trust
        // only if it is well formed and its first entry is our first chunk.
        if let Some(off) = format::trailer_offset_from_footer(&mut self.file, self.file_len) {
            // The final digest cannot be checked without the chain; read the
            // trailer with a placeholder and accept only its structure.
            if let Some(entries) = self.trailer_index_at(off) {
                self.sealed = Some(true);
                return Ok(entries);
            }
        }
        let mut entries = Vec::new();
        let mut offset = self.data_start;
        let mut prev = self.header_digest;
        loop {
            match format::read_next(&mut self.file, offset, self.file_len, &prev) {
                Ok(Next::Chunk { header, payload }) => {
                    entries.push(IndexEntry {
                        seq: header.seq,
                        offset,
                        t_first_us: header.t_first_us,
                        t_last_us: header.t_last_us,
                        events: header.events,
                        keyframe: header.flags & format::FLAG_KEYFRAME != 0,
                        continues: header.flags & format::FLAG_CONTINUES != 0,
                    });
                    offset += (format::CHUNK_HEADER_LEN + payload.len()) as u64;
                    prev = header.digest;
                }
                Ok(Next::Trailer(_)) => {
                    self.sealed = Some(true);
                    break;
                }
                Ok(Next::End) | Err(Problem::Truncated) => {
                    self.sealed = Some(false);
                    break;
                }
                Err(p) => return Err(from_problem(p)),
            }
        }
        Ok(entries)
    }

    fn trailer_index_at(&mut self, off: u64) -> Option<Vec<IndexEntry>> {
        use std::io::{Read as _, Seek as _, SeekFrom};
        self.file.seek(SeekFrom::Start(off)).ok()?;
        let mut h = [0u8; format::TRAILER_HEADER_LEN];
        self.file.read_exact(&mut h).ok()?;
        if h[..4] != format::TRAILER_TAG {
            return None;
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&h[4..8]);
        let len = u64::from(u32::from_le_bytes(len));
        if len > u64::from(format::MAX_TRAILER_JSON) || off + 16 + len > self.file_len {
            return None;
        }
        let mut json = vec![0u8; len as usize];
        self.file.read_exact(&mut json).ok()?;
        let info: format::TrailerInfo = serde_json::from_slice(&json).ok()?;
        let first_ok = info
            .index
            .first()
            .is_none_or(|e| e.offset == self.data_start);
        let ordered = info
            .index
            .windows(2)
            .all(|w| w[0].offset < w[1].offset && w[0].t_last_us <= w[1].t_first_us);
        if !(first_ok && ordered) {
            return None;
        }
        self.trailer_keyframes = Some(info.keyframes.iter().map(|k| k.t_us).collect());
        Some(info.index)
    }

    /// Times (µs) of keyframes (desktop sessions): from the trailer of a
    /// sealed file, else from the chunks flagged as holding one.
    pub fn keyframes(&mut self) -> Result<Vec<u64>, ReadError> {
        self.index()?;
        if let Some(k) = &self.trailer_keyframes {
            return Ok(k.clone());
        }
        let flagged: Vec<IndexEntry> = self
            .index()?
            .iter()
            .filter(|e| e.keyframe)
            .copied()
            .collect();
        let mut out = Vec::new();
        for entry in flagged {
            self.keyframes_in_chunk_at(entry.offset, &mut out)?;
        }
        Ok(out)
    }

    fn keyframes_in_chunk_at(&mut self, offset: u64, out: &mut Vec<u64>) -> Result<(), ReadError> {
        match format::read_next(&mut self.file, offset, self.file_len, &[0; 32]) {
            Ok(Next::Chunk { header, payload }) => {
                // A keyframe chunk never continues a stream: it decodes alone.
                let raw = ChunkDecoder::new()
                    .decode(&header, &payload)
                    .map_err(ReadError::Corrupt)?;
                for ev in ChunkEvents::new(header, raw) {
                    let ev = ev.map_err(ReadError::Corrupt)?;
                    if matches!(ev.event, super::Event::Keyframe) {
                        out.push(ev.t_us);
                    }
                }
                Ok(())
            }
            Ok(_) => Err(ReadError::Corrupt("index points at no chunk".into())),
            Err(p) => Err(from_problem(p)),
        }
    }

    /// All events from the start.
    pub fn events(&mut self) -> Events<'_> {
        let offset = self.data_start;
        let prev = Some(self.header_digest);
        DecodedEvents::new(
            Chunks {
                reader: self,
                offset,
                prev,
                done: false,
                truncated: false,
            },
            0,
        )
    }

    /// Events at or after `t_us`, starting at the chunk the index says holds
    /// that time (the chain is checked from there on).
    pub fn events_from(&mut self, t_us: u64) -> Result<Events<'_>, ReadError> {
        Ok(DecodedEvents::new(self.chunks_from(t_us)?, t_us))
    }

    /// The checked chunks [`Reader::events_from`] decodes for `t_us`, for a
    /// caller that decodes them ([`DecodedEvents`]) on another thread.
    pub fn chunks_from(&mut self, t_us: u64) -> Result<Chunks<'_>, ReadError> {
        let data_start = self.data_start;
        let index = self.index()?;
        // The last chunk that starts at or before t (or the first chunk).
        let pos = index.partition_point(|e| e.t_first_us <= t_us);
        let at = match pos
            .checked_sub(1)
            .and_then(|i| index.get(i).map(|e| (i, e)))
        {
            // A chunk ending before t whose successor starts after t: begin
            // at the successor; begin at this chunk otherwise.
            Some((_, e)) if e.t_last_us < t_us => (pos < index.len()).then_some(pos),
            Some((i, _)) => Some(i),
            None => (!index.is_empty()).then_some(0),
        };
        let start = match at {
            // A chunk that continues a compression stream is read from the
            // chunk that began the stream (its events before t are skipped).
            Some(mut i) => {
                while i > 0 && index.get(i).is_some_and(|e| e.continues) {
                    i -= 1;
                }
                index.get(i).map_or(data_start, |e| e.offset)
            }
            None if index.is_empty() => data_start,
            None => u64::MAX,
        };
        let (offset, prev, done) = if start == u64::MAX {
            (data_start, None, true)
        } else if start == data_start {
            (start, Some(self.header_digest), false)
        } else {
            (start, None, false)
        };
        Ok(Chunks {
            reader: self,
            offset,
            prev,
            done,
            truncated: false,
        })
    }
}

/// Follows an archive while the recorder writes it: [`Tail::poll`] gives
/// the events of the chunks completed since the last poll. The chunk being
/// written is read once it is whole (the recorder completes one at least
/// every flush interval); the hash chain is checked from the first chunk
/// read on, as [`Reader::events_from`] does.
#[derive(Debug)]
pub struct Tail {
    reader: Reader,
    offset: u64,
    prev: Option<Digest>,
    from_us: u64,
    sealed: bool,
    decoder: ChunkDecoder,
}

impl Reader {
    /// Follow this archive from the chunk holding `t_us` on.
    pub fn tail_from(mut self, t_us: u64) -> Result<Tail, ReadError> {
        let (mut offset, mut prev, done) = {
            let chunks = self.chunks_from(t_us)?;
            (chunks.offset, chunks.prev, chunks.done)
        };
        if done {
            // Past the chunks there are so far: read them all (their events
            // are before `t_us`, so skipped) and wait for the next ones.
            offset = self.data_start;
            prev = Some(self.header_digest);
        }
        Ok(Tail {
            offset,
            prev,
            from_us: t_us,
            sealed: false,
            decoder: ChunkDecoder::new(),
            reader: self,
        })
    }
}

impl Tail {
    /// Follow the archive at `path` from its first chunk.
    pub fn open(path: &Path) -> Result<Tail, ReadError> {
        Reader::open(path)?.tail_from(0)
    }

    pub fn meta(&self) -> &SessionMeta {
        self.reader.meta()
    }

    /// Bytes of the file read so far (the header and the whole chunks).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The trailer was reached: the recording is complete.
    pub fn sealed(&self) -> bool {
        self.sealed
    }

    /// The events of the chunks written since the last poll, in order.
    pub fn poll(&mut self) -> Result<Vec<TimedEvent>, ReadError> {
        let mut out = Vec::new();
        if self.sealed {
            return Ok(out);
        }
        let r = &mut self.reader;
        r.file_len = r
            .file
            .get_ref()
            .metadata()
            .map_err(|e| ReadError::IoText(e.to_string()))?
            .len();
        loop {
            let prev = self.prev.unwrap_or([0; 32]);
            match format::read_next(&mut r.file, self.offset, r.file_len, &prev) {
                Ok(Next::Chunk { header, payload }) => {
                    if let Some(p) = &self.prev
                        && header.compute_digest(p, &payload) != header.digest
                    {
                        return Err(ReadError::Corrupt(format!(
                            "chunk {} digest mismatch",
                            header.seq
                        )));
                    }
                    self.prev = Some(header.digest);
                    self.offset += (format::CHUNK_HEADER_LEN + payload.len()) as u64;
                    let raw = self
                        .decoder
                        .decode(&header, &payload)
                        .map_err(ReadError::Corrupt)?;
                    for ev in ChunkEvents::new(header, raw) {
                        let ev = ev.map_err(ReadError::Corrupt)?;
                        if ev.t_us >= self.from_us {
                            out.push(ev);
                        }
                    }
                }
                Ok(Next::Trailer(_)) => {
                    self.sealed = true;
                    return Ok(out);
                }
                // The chunk or trailer being written is not whole yet.
                Ok(Next::End) | Err(Problem::Truncated) => return Ok(out),
                Err(Problem::Corrupt(s))
                    if self.prev.is_none() && s.starts_with("trailer digest") =>
                {
                    self.sealed = true;
                    return Ok(out);
                }
                Err(p) => return Err(from_problem(p)),
            }
        }
    }
}

/// A chunk as read from the file, its place in the hash chain checked,
/// still compressed: what [`Chunks`] gives and [`DecodedEvents`] decodes.
#[derive(Debug)]
pub struct CheckedChunk {
    header: ChunkHeader,
    payload: Vec<u8>,
}

/// The chunks of an archive in order, each checked against the hash chain
/// (from the header, or from the first chunk read when started mid-file).
/// Ends at the trailer, or at the last whole chunk of a file cut short
/// (then `truncated()` is true); after an error, nothing more.
#[derive(Debug)]
pub struct Chunks<'a> {
    reader: &'a mut Reader,
    offset: u64,
    /// Digest to chain from; None when started mid-file (first chunk trusted).
    prev: Option<Digest>,
    done: bool,
    truncated: bool,
}

impl Chunks<'_> {
    /// Did the file end inside a chunk or before a trailer?
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    fn next_chunk(&mut self) -> Result<Option<CheckedChunk>, ReadError> {
        let prev = self.prev.unwrap_or([0; 32]);
        let r = &mut *self.reader;
        match format::read_next(&mut r.file, self.offset, r.file_len, &prev) {
            Ok(Next::Chunk { header, payload }) => {
                if let Some(p) = &self.prev
                    && header.compute_digest(p, &payload) != header.digest
                {
                    return Err(ReadError::Corrupt(format!(
                        "chunk {} digest mismatch",
                        header.seq
                    )));
                }
                self.prev = Some(header.digest);
                self.offset += (format::CHUNK_HEADER_LEN + payload.len()) as u64;
                Ok(Some(CheckedChunk { header, payload }))
            }
            Ok(Next::Trailer(t)) => {
                self.truncated = !t.footer_present;
                Ok(None)
            }
            Ok(Next::End) => {
                self.truncated = true;
                Ok(None)
            }
            // A trailer whose digest does not match a mid-file start is fine.
            Err(Problem::Corrupt(s)) if self.prev.is_none() && s.starts_with("trailer digest") => {
                Ok(None)
            }
            Err(Problem::Truncated) => {
                self.truncated = true;
                Ok(None)
            }
            Err(p) => Err(from_problem(p)),
        }
    }
}

impl Iterator for Chunks<'_> {
    type Item = Result<CheckedChunk, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_chunk();
        if !matches!(next, Ok(Some(_))) {
            self.done = true;
        }
        next.transpose()
    }
}

/// The events of checked chunks, in order: each chunk decompressed (a zstd
/// stream may run on over several chunks) and its events checked against
/// its header. Events before `from_us` are passed over. Ends after the
/// first error, its own or one of `chunks`.
///
/// Separate from [`Chunks`] so that reading (the file, the hash chain) and
/// decompressing can run on two threads, in order, with a channel between.
#[derive(Debug)]
pub struct DecodedEvents<I> {
    chunks: I,
    current: Option<ChunkEvents>,
    decoder: ChunkDecoder,
    from_us: u64,
    done: bool,
}

impl<I> DecodedEvents<I> {
    pub fn new(chunks: I, from_us: u64) -> Self {
        DecodedEvents {
            chunks,
            current: None,
            decoder: ChunkDecoder::new(),
            from_us,
            done: false,
        }
    }
}

/// Iterator over an archive's events: [`Chunks`] decoded in this thread.
pub type Events<'a> = DecodedEvents<Chunks<'a>>;

impl Events<'_> {
    /// Did the file end inside a chunk or before a trailer?
    pub fn truncated(&self) -> bool {
        self.chunks.truncated()
    }
}

impl<I: Iterator<Item = Result<CheckedChunk, ReadError>>> Iterator for DecodedEvents<I> {
    type Item = Result<TimedEvent, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(chunk) = &mut self.current {
                match chunk.next() {
                    Some(Ok(e)) if e.t_us < self.from_us => continue,
                    Some(Ok(e)) => return Some(Ok(e)),
                    Some(Err(e)) => {
                        self.done = true;
                        self.current = None;
                        return Some(Err(ReadError::Corrupt(e)));
                    }
                    None => self.current = None,
                }
            }
            if self.done {
                return None;
            }
            match self.chunks.next() {
                Some(Ok(CheckedChunk { header, payload })) => {
                    match self.decoder.decode(&header, &payload) {
                        Ok(raw) => self.current = Some(ChunkEvents::new(header, raw)),
                        Err(e) => {
                            self.done = true;
                            return Some(Err(ReadError::Corrupt(e)));
                        }
                    }
                }
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{ArchiveKey, ArchiveWriter, Event, Protocol, Stream, WriterOptions};

    fn meta() -> SessionMeta {
        SessionMeta {
            session_id: "s1".into(),
            user: "tanaka".into(),
            vendor: "acme".into(),
            system: "fa".into(),
            target: "pc1".into(),
            protocol: Protocol::Rdp,
            client_addr: "127.0.0.1:1".into(),
            decision: "allow".into(),
            hop_parent: None,
            started_at: chrono::DateTime::UNIX_EPOCH,
            terminal: None,
            desktop: None,
            rdp: None,
        }
    }

    fn out(text: &'static str) -> Event {
        Event::Output {
            channel: 0,
            stream: Stream::Stdout,
            data: Bytes::from_static(text.as_bytes()),
        }
    }

    fn times(events: &[TimedEvent]) -> Vec<u64> {
        events.iter().map(|e| e.t_us).collect()
    }

    #[test]
    fn a_tail_reads_each_chunk_once_as_it_is_completed_until_the_seal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("live.skrec");
        let mut w =
            ArchiveWriter::create(&path, &meta(), WriterOptions::default()).expect("create");
        w.append(10, &out("a")).expect("append");
        w.append(20, &out("b")).expect("append");
        w.flush_chunk().expect("flush");
        w.append(30, &out("c")).expect("append");
        w.flush_chunk().expect("flush");
        // Followed from 25: the first chunk's events before 25 are skipped.
        let mut tail = Reader::open(&path)
            .expect("open")
            .tail_from(25)
            .expect("tail");
        assert_eq!(times(&tail.poll().expect("poll")), [30]);
        assert!(tail.poll().expect("poll").is_empty());
        // A chunk still being written is not read.
        w.append(40, &out("d")).expect("append");
        assert!(tail.poll().expect("poll").is_empty());
        w.flush_chunk().expect("flush");
        w.append(50, &out("e")).expect("append");
        w.flush_chunk().expect("flush");
        assert_eq!(times(&tail.poll().expect("poll")), [40, 50]);
        assert!(!tail.sealed());
        w.seal(&ArchiveKey::generate()).expect("seal");
        assert!(tail.poll().expect("poll").is_empty());
        assert!(tail.sealed());

        // Followed from past the last chunk: only what comes after.
        let mut late = Reader::open(&path)
            .expect("open")
            .tail_from(1_000)
            .expect("tail");
        assert!(late.poll().expect("poll").is_empty());
        assert!(late.sealed());
    }

    /// Pseudo-random bytes (xorshift), incompressible on their own.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// A desktop-like archive: two 1.5 MiB "screens" shown in turn, 1 MiB
    /// chunks, a keyframe before the 9th screen. Returns the events written.
    fn write_screens(path: &Path, options: WriterOptions) -> (Vec<TimedEvent>, ArchiveKey) {
        let screens = [noise(1, 3 << 19), noise(2, 3 << 19)];
        let mut w = ArchiveWriter::create(path, &meta(), options).expect("create");
        let mut written = Vec::new();
        for i in 0..16u64 {
            if i == 8 {
                w.append(i * 100_000, &Event::Keyframe).expect("keyframe");
                written.push(TimedEvent {
                    t_us: i * 100_000,
                    event: Event::Keyframe,
                });
            }
            let screen = screens.get((i % 2) as usize).expect("screen");
            // Each screen arrives as 48 KiB updates, as bitmap PDUs do.
            for (j, piece) in screen.chunks(48 << 10).enumerate() {
                let t = i * 100_000 + j as u64;
                let event = Event::Output {
                    channel: 0,
                    stream: Stream::Stdout,
                    data: Bytes::copy_from_slice(piece),
                };
                w.append(t, &event).expect("append");
                written.push(TimedEvent { t_us: t, event });
            }
        }
        let key = ArchiveKey::generate();
        w.seal(&key).expect("seal");
        (written, key)
    }

    #[test]
    fn desktop_chunks_continue_one_stream_and_find_screens_shown_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let frames = dir.path().join("frames.skrec");
        let stream = dir.path().join("stream.skrec");
        let (written, _) = write_screens(&frames, WriterOptions::default());
        let (again, key) = write_screens(&stream, WriterOptions::desktop());
        assert_eq!(written, again);
        let size = |p: &Path| std::fs::metadata(p).expect("size").len();
        // 24 MiB of events: independent 1 MiB frames cannot see the repeats,
        // the stream stores each screen about once per keyframe interval.
        assert!(size(&frames) > 20 << 20, "{}", size(&frames));
        assert!(size(&stream) < 8 << 20, "{}", size(&stream));

        let mut r = Reader::open(&stream).expect("open");
        let index = r.index().expect("index").to_vec();
        assert!(!index[0].continues);
        let keyframe_chunk = index.iter().find(|e| e.keyframe).expect("keyframe chunk");
        assert!(
            !keyframe_chunk.continues,
            "a keyframe chunk starts a stream"
        );
        assert!(index.iter().filter(|e| e.continues).count() >= index.len() - 3);
        let all: Vec<TimedEvent> = r.events().collect::<Result<_, _>>().expect("events");
        assert_eq!(all, written);

        // Seeking into the middle of a stream reads from the stream's start.
        for t in [250_000, 799_999, 800_000, 1_234_567] {
            let from: Vec<TimedEvent> = r
                .events_from(t)
                .expect("seek")
                .collect::<Result<_, _>>()
                .expect("events");
            let expected: Vec<TimedEvent> =
                written.iter().filter(|e| e.t_us >= t).cloned().collect();
            assert_eq!(from, expected, "from {t}");
        }
        assert_eq!(r.keyframes().expect("keyframes"), [800_000]);
        let mut tail = Reader::open(&stream)
            .expect("open")
            .tail_from(450_000)
            .expect("tail");
        let tailed = tail.poll().expect("poll");
        assert_eq!(tailed.first().map(|e| e.t_us), Some(500_000));
        assert_eq!(
            tailed.len(),
            written.iter().filter(|e| e.t_us >= 450_000).count()
        );

        let report =
            crate::recording::verify::verify_file(&stream, &[key.public()]).expect("verify");
        assert!(
            matches!(
                report.verdict,
                crate::recording::verify::Verdict::Intact { .. }
            ),
            "{:?}",
            report.verdict
        );
    }

    #[test]
    fn a_continuing_chunk_does_not_decode_without_its_predecessor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stream.skrec");
        write_screens(&path, WriterOptions::desktop());
        let mut r = Reader::open(&path).expect("open");
        let index = r.index().expect("index").to_vec();
        let second = index.get(1).expect("two chunks");
        assert!(second.continues);
        let Ok(Next::Chunk { header, payload }) =
            format::read_next(&mut r.file, second.offset, r.file_len, &[0; 32])
        else {
            panic!("no chunk at the index offset")
        };
        let err = ChunkDecoder::new().decode(&header, &payload);
        assert!(err.is_err(), "decoded alone: {:?}", err.map(|b| b.len()));
    }
}
