//! Verifying an archive as evidence: the whole hash chain, every chunk's
//! contents, the trailer's index against the chunks, and the signature.
//!
//! A file cut short (crash, copy interrupted) is `Incomplete`, with the time
//! up to which it is sound; any edited byte is `Tampered` or a signature
//! verdict, never `Intact`.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde::Serialize;

use super::event::Event;
use super::format::{self, IndexEntry, Keyframe, Next, Problem};
use super::keys::PublicKey;
use super::reader::{ChunkDecoder, ChunkEvents};

/// Which part of the file an inconsistency was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    Header,
    Chunk,
    Trailer,
}

impl Region {
    pub fn as_str(self) -> &'static str {
        match self {
            Region::Header => "header",
            Region::Chunk => "chunk",
            Region::Trailer => "trailer",
        }
    }
}

/// The answer `sekisho verify` gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Sealed, chain whole, signed by a known key.
    Intact {
        key_id: String,
        final_digest: String,
        chunks: u32,
        events: u64,
        duration_us: u64,
    },
    /// Cut short: everything up to `sound_until_us` (the last whole chunk's
    /// last event) is consistent. Not signed, so only chain-protected.
    Incomplete {
        sound_until_us: Option<u64>,
        chunks: u32,
        events: u64,
        reason: String,
    },
    /// Bytes were changed, reordered or removed.
    Tampered {
        region: Region,
        /// The chunk sequence number where the chain broke.
        chunk: Option<u32>,
        offset: u64,
        detail: String,
    },
    /// Signed with the named key, but the signature does not verify.
    BadSignature { key_id: String },
    /// Signed with a key id not among the trusted public keys.
    UnknownSignature { key_id: String },
}

impl Verdict {
    /// Exit codes of `sekisho verify`: 0 intact, 3 incomplete, 4 tampered,
    /// 5 bad or unknown signature (2 is usage or I/O error).
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Intact { .. } => 0,
            Verdict::Incomplete { .. } => 3,
            Verdict::Tampered { .. } => 4,
            Verdict::BadSignature { .. } | Verdict::UnknownSignature { .. } => 5,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Intact { .. } => "intact",
            Verdict::Incomplete { .. } => "incomplete",
            Verdict::Tampered { .. } => "tampered",
            Verdict::BadSignature { .. } => "bad_signature",
            Verdict::UnknownSignature { .. } => "unknown_signature",
        }
    }
}

/// Verification could not run (file unreadable).
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {message}")]
pub struct VerifyError {
    pub path: String,
    pub message: String,
}

/// Verdict plus what was learnt about the file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub size: u64,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// Verifies the archive at `path` against the trusted public keys.
pub fn verify_file(path: &Path, keys: &[PublicKey]) -> Result<Report, VerifyError> {
    let err = |message: String| VerifyError {
        path: path.display().to_string(),
        message,
    };
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    let size = file.metadata().map_err(|e| err(e.to_string()))?.len();
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let mut report = Report {
        path: path.display().to_string(),
        session_id: None,
        size,
        verdict: Verdict::Incomplete {
            sound_until_us: None,
            chunks: 0,
            events: 0,
            reason: String::new(),
        },
    };
    let header = match format::read_header(&mut r, size) {
        Ok(h) => h,
        Err(Problem::Truncated) => {
            report.verdict = Verdict::Incomplete {
                sound_until_us: None,
                chunks: 0,
                events: 0,
                reason: "the file ends inside the header".into(),
            };
            return Ok(report);
        }
        Err(Problem::Corrupt(detail)) => {
            report.verdict = Verdict::Tampered {
                region: Region::Header,
                chunk: None,
                offset: 0,
                detail,
            };
            return Ok(report);
        }
        Err(Problem::Io(m)) => return Err(err(m)),
    };
    report.session_id = Some(header.meta.session_id.clone());
    report.verdict = walk(&mut r, size, header.data_start, header.digest, keys).map_err(err)?;
    Ok(report)
}

fn walk<R: std::io::Read + std::io::Seek>(
    r: &mut R,
    size: u64,
    data_start: u64,
    header_digest: format::Digest,
    keys: &[PublicKey],
) -> Result<Verdict, String> {
    let mut offset = data_start;
    let mut prev = header_digest;
    let mut seq: u32 = 0;
    let mut events: u64 = 0;
    let mut last_t: Option<u64> = None;
    let mut index: Vec<IndexEntry> = Vec::new();
    let mut keyframes: Vec<Keyframe> = Vec::new();
    let mut decoder = ChunkDecoder::new();
    let tampered = |region, chunk, offset, detail: String| Verdict::Tampered {
        region,
        chunk,
        offset,
        detail,
    };
    loop {
        match format::read_next(r, offset, size, &prev) {
            Ok(Next::Chunk { header, payload }) => {
                if header.seq != seq {
                    return Ok(tampered(
                        Region::Chunk,
                        Some(seq),
                        offset,
                        format!("chunk {} found where chunk {seq} belongs", header.seq),
                    ));
                }
                if header.compute_digest(&prev, &payload) != header.digest {
                    return Ok(tampered(
                        Region::Chunk,
                        Some(seq),
                        offset,
                        "digest does not match (content changed or chain broken)".into(),
                    ));
                }
                if last_t.is_some_and(|t| header.t_first_us < t) {
                    return Ok(tampered(
                        Region::Chunk,
                        Some(seq),
                        offset,
                        "time runs backwards".into(),
                    ));
                }
                let raw = match decoder.decode(&header, &payload) {
                    Ok(raw) => raw,
                    Err(detail) => return Ok(tampered(Region::Chunk, Some(seq), offset, detail)),
                };
                let mut has_keyframe = false;
                for e in ChunkEvents::new(header, raw) {
                    match e {
                        Ok(e) if matches!(e.event, Event::Keyframe) => {
                            keyframes.push(Keyframe { t_us: e.t_us, seq });
                            has_keyframe = true;
                        }
                        Ok(_) => {}
                        Err(detail) => {
                            return Ok(tampered(Region::Chunk, Some(seq), offset, detail));
                        }
                    }
                }
                if has_keyframe != (header.flags & format::FLAG_KEYFRAME != 0) {
                    return Ok(tampered(
                        Region::Chunk,
                        Some(seq),
                        offset,
                        "keyframe flag does not match the events".into(),
                    ));
                }
                index.push(IndexEntry {
                    seq,
                    offset,
                    t_first_us: header.t_first_us,
                    t_last_us: header.t_last_us,
                    events: header.events,
                    keyframe: header.flags & format::FLAG_KEYFRAME != 0,
                    continues: header.flags & format::FLAG_CONTINUES != 0,
                });
                offset += (format::CHUNK_HEADER_LEN + payload.len()) as u64;
                prev = header.digest;
                seq += 1;
                events += u64::from(header.events);
                last_t = Some(header.t_last_us);
            }
            Ok(Next::Trailer(t)) => {
                let info = &t.info;
                if info.chunks != seq
                    || info.events != events
                    || info.duration_us != last_t.unwrap_or(0)
                    || info.index != index
                    || info.keyframes != keyframes
                {
                    return Ok(tampered(
                        Region::Trailer,
                        None,
                        offset,
                        "the trailer's index does not match the chunks".into(),
                    ));
                }
                if !t.footer_present {
                    return Ok(Verdict::Incomplete {
                        sound_until_us: last_t,
                        chunks: seq,
                        events,
                        reason: "the file ends inside the footer".into(),
                    });
                }
                let Some(key) = keys.iter().find(|k| k.id() == info.key_id) else {
                    return Ok(Verdict::UnknownSignature {
                        key_id: info.key_id.clone(),
                    });
                };
                if !format::signature_valid(key.verifying_key(), &t.final_digest, &t.signature) {
                    return Ok(Verdict::BadSignature {
                        key_id: info.key_id.clone(),
                    });
                }
                return Ok(Verdict::Intact {
                    key_id: info.key_id.clone(),
                    final_digest: hex::encode(t.final_digest),
                    chunks: seq,
                    events,
                    duration_us: last_t.unwrap_or(0),
                });
            }
            Ok(Next::End) => {
                return Ok(Verdict::Incomplete {
                    sound_until_us: last_t,
                    chunks: seq,
                    events,
                    reason: match seq {
                        0 => "no trailer: the file ends after the header".into(),
                        n => format!("no trailer: the file ends after chunk {}", n - 1),
                    },
                });
            }
            Err(Problem::Truncated) => {
                return Ok(Verdict::Incomplete {
                    sound_until_us: last_t,
                    chunks: seq,
                    events,
                    reason: format!("the file ends inside the record at offset {offset}"),
                });
            }
            Err(Problem::Corrupt(detail)) => {
                let region = if detail.starts_with("trailer")
                    || detail.starts_with("footer")
                    || detail.starts_with("bytes after")
                {
                    Region::Trailer
                } else {
                    Region::Chunk
                };
                let chunk = (region == Region::Chunk).then_some(seq);
                return Ok(tampered(region, chunk, offset, detail));
            }
            Err(Problem::Io(m)) => return Err(m),
        }
    }
}
