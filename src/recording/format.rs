//! The container format, version 1: file header, chunks, trailer, footer.
//! docs/recording-format.md is the normative description; this file follows
//! it field by field. All integers are little-endian.

use std::io::{Read, Seek, SeekFrom};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// File magic, first 8 bytes.
pub const MAGIC: [u8; 8] = *b"SKSHREC\n";
/// Footer magic, last 8 bytes of a sealed file.
pub const END_MAGIC: [u8; 8] = *b"SKSHEND\n";
pub const VERSION: u16 = 1;
/// File extension of archives.
pub const EXTENSION: &str = "skrec";

/// Fixed prefix: magic, version, reserved, header length, check.
pub const PREFIX_LEN: usize = 24;
pub const CHUNK_TAG: [u8; 4] = *b"CHNK";
/// Chunk header: tag … comp_len (44 bytes) + digest (32) + check (8).
pub const CHUNK_HEADER_LEN: usize = 84;
const CHUNK_FIELDS_LEN: usize = 44;
pub const TRAILER_TAG: [u8; 4] = *b"TRLR";
/// Trailer header: tag, json length, check.
pub const TRAILER_HEADER_LEN: usize = 16;
pub const FOOTER_LEN: usize = 16;
pub const SIGNATURE_LEN: usize = 64;

/// Limits a reader enforces before allocating (a hostile length field must
/// never make it allocate more).
pub const MAX_HEADER_JSON: u32 = 1 << 20;
pub const MAX_CHUNK_RAW: u32 = 4 << 20;
pub const MAX_CHUNK_COMPRESSED: u32 = 5 << 20;
pub const MAX_TRAILER_JSON: u32 = 64 << 20;

/// Domain separation for the digests and the signature.
const HEADER_DOMAIN: &[u8] = b"sekisho-recording-v1 header";
const SIGNATURE_DOMAIN: &[u8] = b"sekisho-recording-v1 signature";

pub type Digest = [u8; 32];

/// Which protocol a session used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Ssh,
    Rdp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Ssh => "ssh",
            Protocol::Rdp => "rdp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    pub cols: u32,
    pub rows: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesktopSize {
    pub width: u32,
    pub height: u32,
}

/// The session metadata in the file header (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionMeta {
    pub session_id: String,
    pub user: String,
    pub vendor: String,
    pub system: String,
    pub target: String,
    pub protocol: Protocol,
    pub client_addr: String,
    /// Summary of the policy decision that allowed the session.
    pub decision: String,
    /// For an RDP hop: the session this one was opened from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hop_parent: Option<String>,
    /// Wall-clock start; event times are microseconds after this.
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<TerminalSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desktop: Option<DesktopSize>,
    /// The RDP part of the header, stored under the key `protocol_info`;
    /// `None` for SSH (which has no protocol part) and for an RDP header
    /// without one. Read leniently (see [`RdpInfo`]): a field this version
    /// does not know is ignored, and the archive still verifies, since its
    /// digests cover the bytes on disk.
    #[serde(
        default,
        rename = "protocol_info",
        deserialize_with = "rdp_part",
        skip_serializing_if = "Option::is_none"
    )]
    pub rdp: Option<RdpInfo>,
}

/// `protocol_info` as stored: absent or null is no RDP part; anything else
/// reads as an [`RdpInfo`], a value of the wrong shape as its defaults.
fn rdp_part<'de, D>(d: D) -> Result<Option<RdpInfo>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => None,
        value => Some(RdpInfo::deserialize(value).unwrap_or_default()),
    })
}

/// The RDP part of the header ([`SessionMeta::rdp`]): what a
/// replayer needs that the events do not say. The field names are the JSON
/// keys on disk. Every field has a default and a value of the wrong type
/// reads as absent, so archives written before a field existed (or with a
/// damaged value) still replay with what they have.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdpInfo {
    /// The channel number fast-path PDUs are recorded under
    /// ([`FASTPATH_CHANNEL`](crate::protocol::rdp::FASTPATH_CHANNEL)).
    #[serde(default, deserialize_with = "lenient")]
    pub fastpath_channel: u32,
    /// MCS I/O channel id as the client saw it (slow-path PDUs travel on it).
    #[serde(default, deserialize_with = "lenient")]
    pub io_channel: u16,
    /// MCS user channel id as the client saw it.
    #[serde(default, deserialize_with = "lenient")]
    pub user_channel: u16,
    /// The share id, when known at the start (this version does not write
    /// it: the share is activated after the recording opens, and its id is
    /// in the `share_activated` marks). A replayer uses 0 without it.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub share_id: Option<u32>,
    /// Static virtual channels forwarded, with the ids the client saw.
    #[serde(default, deserialize_with = "lenient")]
    pub channels: Vec<RdpChannel>,
    /// Client Core Data `keyboardLayout` (0x409 US, 0x411 Japanese, …);
    /// `None` when not recorded.
    #[serde(default, deserialize_with = "lenient")]
    pub keyboard_layout: Option<u32>,
    /// Client Core Data `keyboardType` (7 = Japanese).
    #[serde(default, deserialize_with = "lenient")]
    pub keyboard_type: u32,
    /// Client Core Data `keyboardSubType` (2 = Japanese 106/109 keys).
    #[serde(default, deserialize_with = "lenient")]
    pub keyboard_subtype: u32,
}

/// A static virtual channel of an RDP session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdpChannel {
    pub name: String,
    pub id: u16,
}

/// A header field of the wrong type reads as its default (as the untyped
/// getters this replaces did), instead of making the whole header unreadable.
fn lenient<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let value = serde_json::Value::deserialize(d)?;
    Ok(T::deserialize(value).unwrap_or_default())
}

/// What the trailer's JSON holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrailerInfo {
    pub chunks: u32,
    pub events: u64,
    /// Time of the last event, µs.
    pub duration_us: u64,
    pub sealed_at: DateTime<Utc>,
    pub key_id: String,
    pub index: Vec<IndexEntry>,
    /// Times (µs) of keyframe events with the chunk holding each.
    pub keyframes: Vec<Keyframe>,
}

/// One chunk as the trailer indexes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub seq: u32,
    pub offset: u64,
    pub t_first_us: u64,
    pub t_last_us: u64,
    pub events: u32,
    pub keyframe: bool,
    /// The chunk continues its predecessor's compression stream
    /// ([`FLAG_CONTINUES`]); absent in archives without such chunks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continues: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyframe {
    pub t_us: u64,
    pub seq: u32,
}

fn check8(bytes: &[u8]) -> [u8; 8] {
    let d = Sha256::digest(bytes);
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Encodes the file header: prefix, JSON, header digest. Returns (bytes, digest).
pub fn encode_header(json: &[u8]) -> (Vec<u8>, Digest) {
    let mut out = Vec::with_capacity(PREFIX_LEN + json.len() + 32);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    let c = check8(&out);
    out.extend_from_slice(&c);
    out.extend_from_slice(json);
    let d = header_digest(&out);
    out.extend_from_slice(&d);
    (out, d)
}

fn header_digest(prefix_and_json: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(HEADER_DOMAIN);
    h.update(prefix_and_json);
    h.finalize().into()
}

/// Fixed fields of a chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub seq: u32,
    pub t_first_us: u64,
    pub t_last_us: u64,
    pub events: u32,
    pub flags: u32,
    pub raw_len: u32,
    pub comp_len: u32,
    pub digest: Digest,
}

pub const FLAG_KEYFRAME: u32 = 1;
/// The payload continues the zstd frame of the chunk before it (see
/// docs/recording-format.md): it decodes only after every chunk since the
/// last chunk without this flag, in order, through one decompression
/// stream. Never set on the first chunk or on a keyframe chunk, so a
/// desktop replay can still start at any keyframe.
pub const FLAG_CONTINUES: u32 = 2;

impl ChunkHeader {
    fn fields(&self) -> [u8; CHUNK_FIELDS_LEN] {
        let mut b = [0u8; CHUNK_FIELDS_LEN];
        b[0..4].copy_from_slice(&CHUNK_TAG);
        b[4..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.t_first_us.to_le_bytes());
        b[16..24].copy_from_slice(&self.t_last_us.to_le_bytes());
        b[24..28].copy_from_slice(&self.events.to_le_bytes());
        b[28..32].copy_from_slice(&self.flags.to_le_bytes());
        b[32..36].copy_from_slice(&self.raw_len.to_le_bytes());
        b[36..40].copy_from_slice(&self.comp_len.to_le_bytes());
        // 40..44 reserved, zero.
        b
    }

    /// The chained digest of a chunk: SHA-256(prev ‖ fields ‖ payload).
    pub fn compute_digest(&self, prev: &Digest, payload: &[u8]) -> Digest {
        let mut h = Sha256::new();
        h.update(prev);
        h.update(self.fields());
        h.update(payload);
        h.finalize().into()
    }

    pub fn encode(&self) -> [u8; CHUNK_HEADER_LEN] {
        let mut b = [0u8; CHUNK_HEADER_LEN];
        b[..CHUNK_FIELDS_LEN].copy_from_slice(&self.fields());
        b[44..76].copy_from_slice(&self.digest);
        let c = check8(&b[..76]);
        b[76..84].copy_from_slice(&c);
        b
    }

    /// Parses a chunk header whose tag was already matched. Checks the
    /// header check and the size limits.
    fn parse(b: &[u8; CHUNK_HEADER_LEN]) -> Result<Self, &'static str> {
        if check8(&b[..76]) != b[76..84] {
            return Err("chunk header check mismatch");
        }
        if b[40..44] != [0, 0, 0, 0] {
            return Err("reserved chunk header bytes are not zero");
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&b[44..76]);
        let h = ChunkHeader {
            seq: le_u32(b, 4),
            t_first_us: le_u64(b, 8),
            t_last_us: le_u64(b, 16),
            events: le_u32(b, 24),
            flags: le_u32(b, 28),
            raw_len: le_u32(b, 32),
            comp_len: le_u32(b, 36),
            digest,
        };
        if h.raw_len > MAX_CHUNK_RAW || h.comp_len > MAX_CHUNK_COMPRESSED {
            return Err("chunk larger than the format allows");
        }
        if h.t_last_us < h.t_first_us {
            return Err("chunk time range runs backwards");
        }
        if h.flags & !(FLAG_KEYFRAME | FLAG_CONTINUES) != 0 {
            return Err("unknown chunk flags");
        }
        if h.flags & FLAG_CONTINUES != 0 && (h.seq == 0 || h.flags & FLAG_KEYFRAME != 0) {
            return Err("a first or keyframe chunk continues a compression stream");
        }
        Ok(h)
    }
}

/// Encodes the trailer (header, JSON, final digest, signature) and footer.
pub fn encode_trailer(
    json: &[u8],
    last_digest: &Digest,
    trailer_offset: u64,
    key: &ed25519_dalek::SigningKey,
) -> (Vec<u8>, Digest) {
    use ed25519_dalek::Signer as _;
    let mut out = Vec::with_capacity(TRAILER_HEADER_LEN + json.len() + 32 + 64 + FOOTER_LEN);
    out.extend_from_slice(&TRAILER_TAG);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    let c = check8(&out);
    out.extend_from_slice(&c);
    out.extend_from_slice(json);
    let final_digest = trailer_digest(last_digest, &out);
    out.extend_from_slice(&final_digest);
    let sig = key.sign(&signed_message(&final_digest));
    out.extend_from_slice(&sig.to_bytes());
    out.extend_from_slice(&trailer_offset.to_le_bytes());
    out.extend_from_slice(&END_MAGIC);
    (out, final_digest)
}

fn trailer_digest(last: &Digest, header_and_json: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(last);
    h.update(header_and_json);
    h.finalize().into()
}

/// The bytes the Ed25519 signature is made over.
pub fn signed_message(final_digest: &Digest) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_DOMAIN.len() + 32);
    m.extend_from_slice(SIGNATURE_DOMAIN);
    m.extend_from_slice(final_digest);
    m
}

/// Why reading stopped short of a well-formed structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The file ends inside this structure: a crash or a cut, not an edit.
    Truncated,
    /// The bytes present are inconsistent: an edit (or a foreign file).
    Corrupt(String),
    /// The file could not be read at all.
    Io(String),
}

fn io_problem(e: std::io::Error) -> Problem {
    Problem::Io(e.to_string())
}

/// Reads exactly `buf.len()` bytes at the current position, given that
/// `left` bytes remain in the file; fewer remaining means truncation.
fn read_exact_or_truncated<R: Read>(r: &mut R, buf: &mut [u8], left: u64) -> Result<(), Problem> {
    if (buf.len() as u64) > left {
        return Err(Problem::Truncated);
    }
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Problem::Truncated
        } else {
            io_problem(e)
        }
    })
}

/// A parsed file header.
#[derive(Debug, Clone)]
pub struct ParsedHeader {
    pub meta: SessionMeta,
    pub digest: Digest,
    /// Offset of the first chunk.
    pub data_start: u64,
}

/// Reads the file header from offset 0.
pub fn read_header<R: Read + Seek>(r: &mut R, file_len: u64) -> Result<ParsedHeader, Problem> {
    r.seek(SeekFrom::Start(0)).map_err(io_problem)?;
    let mut prefix = [0u8; PREFIX_LEN];
    // A prefix cut short is truncation only if what is there is a prefix of
    // what a writer would have written; otherwise it is not our file.
    if file_len < PREFIX_LEN as u64 {
        let mut got = vec![0u8; file_len as usize];
        r.read_exact(&mut got).map_err(io_problem)?;
        let n = got.len().min(MAGIC.len());
        if got[..n] != MAGIC[..n] {
            return Err(Problem::Corrupt(
                "not a sekisho recording (bad magic)".into(),
            ));
        }
        return Err(Problem::Truncated);
    }
    read_exact_or_truncated(r, &mut prefix, file_len)?;
    if prefix[..8] != MAGIC {
        return Err(Problem::Corrupt(
            "not a sekisho recording (bad magic)".into(),
        ));
    }
    if check8(&prefix[..16]) != prefix[16..24] {
        return Err(Problem::Corrupt("file header check mismatch".into()));
    }
    let version = le_u16(&prefix, 8);
    if version != VERSION {
        return Err(Problem::Corrupt(format!(
            "unsupported format version {version}"
        )));
    }
    let json_len = le_u32(&prefix, 12);
    if json_len > MAX_HEADER_JSON {
        return Err(Problem::Corrupt(
            "header larger than the format allows".into(),
        ));
    }
    let left = file_len - PREFIX_LEN as u64;
    let mut json = vec![0u8; (json_len as usize).min(left as usize)];
    read_exact_or_truncated(r, &mut json, left)?;
    if json.len() < json_len as usize {
        return Err(Problem::Truncated);
    }
    let mut stored = [0u8; 32];
    read_exact_or_truncated(r, &mut stored, left - u64::from(json_len))?;
    let mut both = Vec::with_capacity(PREFIX_LEN + json.len());
    both.extend_from_slice(&prefix);
    both.extend_from_slice(&json);
    let digest = header_digest(&both);
    if digest != stored {
        return Err(Problem::Corrupt("header digest mismatch".into()));
    }
    let meta: SessionMeta =
        serde_json::from_slice(&json).map_err(|e| Problem::Corrupt(format!("header JSON: {e}")))?;
    Ok(ParsedHeader {
        meta,
        digest,
        data_start: (PREFIX_LEN + json.len() + 32) as u64,
    })
}

/// A parsed trailer with its footer.
#[derive(Debug, Clone)]
pub struct ParsedTrailer {
    pub info: TrailerInfo,
    pub offset: u64,
    pub final_digest: Digest,
    pub signature: [u8; SIGNATURE_LEN],
    /// Whether the 16-byte footer is present (a cut may remove only it).
    pub footer_present: bool,
}

/// What follows a chunk boundary.
#[derive(Debug)]
pub enum Next {
    Chunk {
        header: ChunkHeader,
        payload: Vec<u8>,
    },
    Trailer(Box<ParsedTrailer>),
    /// The file ends exactly here.
    End,
}

/// Reads the record at `offset` (a chunk boundary). `prev` is the chained
/// digest so far (needed to check the trailer's final digest).
pub fn read_next<R: Read + Seek>(
    r: &mut R,
    offset: u64,
    file_len: u64,
    prev: &Digest,
) -> Result<Next, Problem> {
    if offset == file_len {
        return Ok(Next::End);
    }
    r.seek(SeekFrom::Start(offset)).map_err(io_problem)?;
    let left = file_len.saturating_sub(offset);
    let mut tag = [0u8; 4];
    if left < 4 {
        let mut got = vec![0u8; left as usize];
        r.read_exact(&mut got).map_err(io_problem)?;
        // A partial tag is a cut if it starts like a tag a writer writes.
        if CHUNK_TAG.starts_with(&got) || TRAILER_TAG.starts_with(&got) {
            return Err(Problem::Truncated);
        }
        return Err(Problem::Corrupt("unknown record tag".into()));
    }
    read_exact_or_truncated(r, &mut tag, left)?;
    if tag == CHUNK_TAG {
        let mut b = [0u8; CHUNK_HEADER_LEN];
        b[..4].copy_from_slice(&tag);
        read_exact_or_truncated(r, &mut b[4..], left - 4)?;
        let header = ChunkHeader::parse(&b).map_err(|e| Problem::Corrupt(e.into()))?;
        let left = left - CHUNK_HEADER_LEN as u64;
        if u64::from(header.comp_len) > left {
            return Err(Problem::Truncated);
        }
        let mut payload = vec![0u8; header.comp_len as usize];
        read_exact_or_truncated(r, &mut payload, left)?;
        Ok(Next::Chunk { header, payload })
    } else if tag == TRAILER_TAG {
        read_trailer(r, offset, left, prev).map(|t| Next::Trailer(Box::new(t)))
    } else {
        Err(Problem::Corrupt("unknown record tag".into()))
    }
}

fn read_trailer<R: Read>(
    r: &mut R,
    offset: u64,
    left: u64,
    prev: &Digest,
) -> Result<ParsedTrailer, Problem> {
    let mut b = [0u8; TRAILER_HEADER_LEN];
    b[..4].copy_from_slice(&TRAILER_TAG);
    read_exact_or_truncated(r, &mut b[4..], left - 4)?;
    if check8(&b[..8]) != b[8..16] {
        return Err(Problem::Corrupt("trailer header check mismatch".into()));
    }
    let json_len = le_u32(&b, 4);
    if json_len > MAX_TRAILER_JSON {
        return Err(Problem::Corrupt(
            "trailer larger than the format allows".into(),
        ));
    }
    let mut left = left - TRAILER_HEADER_LEN as u64;
    if u64::from(json_len) > left {
        return Err(Problem::Truncated);
    }
    let mut json = vec![0u8; json_len as usize];
    read_exact_or_truncated(r, &mut json, left)?;
    left -= u64::from(json_len);
    let mut stored = [0u8; 32];
    read_exact_or_truncated(r, &mut stored, left)?;
    left -= 32;
    let mut covered = Vec::with_capacity(TRAILER_HEADER_LEN + json.len());
    covered.extend_from_slice(&b);
    covered.extend_from_slice(&json);
    let final_digest = trailer_digest(prev, &covered);
    if final_digest != stored {
        return Err(Problem::Corrupt("trailer digest mismatch".into()));
    }
    let info: TrailerInfo = serde_json::from_slice(&json)
        .map_err(|e| Problem::Corrupt(format!("trailer JSON: {e}")))?;
    let mut signature = [0u8; SIGNATURE_LEN];
    read_exact_or_truncated(r, &mut signature, left)?;
    left -= SIGNATURE_LEN as u64;
    let footer_present = if left == 0 {
        false
    } else {
        let mut f = [0u8; FOOTER_LEN];
        match read_exact_or_truncated(r, &mut f, left) {
            // A partly cut footer: everything signed is present.
            Err(Problem::Truncated) => false,
            Err(e) => return Err(e),
            Ok(()) => {
                if left > FOOTER_LEN as u64 {
                    return Err(Problem::Corrupt("bytes after the footer".into()));
                }
                if le_u64(&f, 0) != offset || f[8..16] != END_MAGIC {
                    return Err(Problem::Corrupt("footer does not match the trailer".into()));
                }
                true
            }
        }
    };
    Ok(ParsedTrailer {
        info,
        offset,
        final_digest,
        signature,
        footer_present,
    })
}

/// Locates a sealed file's trailer through its footer, without reading the
/// chunks (for seeking). `None` when there is no well-formed footer.
pub fn trailer_offset_from_footer<R: Read + Seek>(r: &mut R, file_len: u64) -> Option<u64> {
    if file_len < (PREFIX_LEN + FOOTER_LEN) as u64 {
        return None;
    }
    r.seek(SeekFrom::Start(file_len - FOOTER_LEN as u64)).ok()?;
    let mut f = [0u8; FOOTER_LEN];
    r.read_exact(&mut f).ok()?;
    if f[8..16] != END_MAGIC {
        return None;
    }
    let off = le_u64(&f, 0);
    (off < file_len).then_some(off)
}

/// Verifies an Ed25519 signature over the final digest.
pub fn signature_valid(
    key: &ed25519_dalek::VerifyingKey,
    final_digest: &Digest,
    signature: &[u8; SIGNATURE_LEN],
) -> bool {
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    key.verify_strict(&signed_message(final_digest), &sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header of an RDP archive as the first gateway wrote it, before
    /// the RDP part had a type: written literally, so a change of the type
    /// that no longer reads it fails here.
    const OLD_RDP_HEADER: &str = r#"{
        "session_id": "0193a0c2-7f4e-7000-8000-000000000001",
        "user": "tanaka", "vendor": "acme", "system": "fa", "target": "win01",
        "protocol": "rdp", "client_addr": "127.0.0.1:50000",
        "decision": "allow", "started_at": "2026-11-22T01:02:03Z",
        "desktop": {"width": 1024, "height": 768},
        "protocol_info": {
            "channels": [{"id": 1004, "name": "drdynvc"}],
            "fastpath_channel": 0,
            "io_channel": 1003,
            "keyboard_layout": 1041,
            "keyboard_subtype": 2,
            "keyboard_type": 7,
            "user_channel": 1002
        }
    }"#;

    fn old_info() -> RdpInfo {
        RdpInfo {
            fastpath_channel: 0,
            io_channel: 1003,
            user_channel: 1002,
            share_id: None,
            channels: vec![RdpChannel {
                name: "drdynvc".into(),
                id: 1004,
            }],
            keyboard_layout: Some(0x411),
            keyboard_type: 7,
            keyboard_subtype: 2,
        }
    }

    /// The header of an SSH archive: no protocol part.
    const OLD_SSH_HEADER: &str = r#"{
        "session_id": "0193a0c2-7f4e-7000-8000-000000000002",
        "user": "tanaka", "vendor": "acme", "system": "fa", "target": "db01",
        "protocol": "ssh", "client_addr": "127.0.0.1:50001",
        "decision": "allow", "started_at": "2026-11-22T01:02:03Z",
        "terminal": {"cols": 80, "rows": 24, "term": "xterm"}
    }"#;

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).expect("JSON")
    }

    #[test]
    fn an_old_rdp_header_reads_into_the_typed_part() {
        let meta: SessionMeta = serde_json::from_str(OLD_RDP_HEADER).expect("old header");
        assert_eq!(meta.rdp, Some(old_info()));
        // Written back, the header has the old shape, key for key.
        assert_eq!(
            serde_json::to_value(&meta).expect("header JSON"),
            json(OLD_RDP_HEADER)
        );
    }

    #[test]
    fn an_ssh_header_has_no_protocol_part_and_writes_back_unchanged() {
        let meta: SessionMeta = serde_json::from_str(OLD_SSH_HEADER).expect("ssh header");
        assert_eq!(meta.rdp, None);
        assert_eq!(
            serde_json::to_value(&meta).expect("header JSON"),
            json(OLD_SSH_HEADER)
        );
        // A null protocol part (as some writers may put it) is none too.
        let mut with_null = json(OLD_SSH_HEADER);
        with_null["protocol_info"] = serde_json::Value::Null;
        let meta: SessionMeta = serde_json::from_value(with_null).expect("null part");
        assert_eq!(meta.rdp, None);
    }

    #[test]
    fn missing_or_mistyped_fields_read_as_their_defaults() {
        let mut header = json(OLD_RDP_HEADER);
        header["protocol_info"] = serde_json::json!({
            "io_channel": "1003",
            "user_channel": 70000,
            "share_id": 66538,
            "keyboard_layout": null,
            "channels": "drdynvc",
            "codecs": ["a field of a later version"],
        });
        let meta: SessionMeta = serde_json::from_value(header.clone()).expect("header");
        assert_eq!(
            meta.rdp,
            Some(RdpInfo {
                share_id: Some(66538),
                ..RdpInfo::default()
            })
        );
        // A protocol part of the wrong shape reads as the defaults.
        header["protocol_info"] = serde_json::json!("garbage");
        let meta: SessionMeta = serde_json::from_value(header.clone()).expect("header");
        assert_eq!(meta.rdp, Some(RdpInfo::default()));
        // No RDP part at all (a header from before it).
        if let Some(o) = header.as_object_mut() {
            o.remove("protocol_info");
        }
        let meta: SessionMeta = serde_json::from_value(header).expect("header");
        assert_eq!(meta.rdp.unwrap_or_default(), RdpInfo::default());
    }

    #[test]
    fn an_archive_with_an_old_header_opens_with_its_rdp_part_typed() {
        use crate::recording::{ArchiveKey, ArchiveWriter, Reader, WriterOptions};
        let meta: SessionMeta = serde_json::from_str(OLD_RDP_HEADER).expect("old header");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.skrec");
        let w = ArchiveWriter::create(&path, &meta, WriterOptions::default()).expect("create");
        w.seal(&ArchiveKey::generate()).expect("seal");
        let reader = Reader::open(&path).expect("open");
        assert_eq!(reader.meta().rdp, Some(old_info()));
        assert_eq!(reader.meta(), &meta);
    }
}
