//! Raw video frames with their times, as the encoder (ffmpeg) reads them:
//! a minimal Matroska stream of uncompressed `I420` (yuv420p) frames, each
//! in a cluster of its own stamped with its time.
//!
//! Why a container and not bare `rawvideo`: bare frames carry no time, so
//! every sampled instant had to be sent, and x264 paid ~2 ms a frame for
//! the many instants of an office session where nothing on the desktop
//! changed. With times, an unchanged instant is simply not sent; the MP4
//! gets variable frame durations (its sample table carries them) and the
//! same length.
//!
//! Only what ffmpeg's Matroska reader needs is written: the EBML header,
//! a Segment of unknown size (it is streamed), Info with a 1 µs timestamp
//! unit, one video track (`V_UNCOMPRESSED`, colour space `I420`, a default
//! duration of one frame, which the last frame keeps), then one Cluster per
//! frame with a single SimpleBlock.

use std::io::Write;

const EBML: u32 = 0x1A45_DFA3;
const EBML_VERSION: u32 = 0x4286;
const EBML_READ_VERSION: u32 = 0x42F7;
const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
const DOC_TYPE: u32 = 0x4282;
const DOC_TYPE_VERSION: u32 = 0x4287;
const DOC_TYPE_READ_VERSION: u32 = 0x4285;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const MUXING_APP: u32 = 0x4D80;
const WRITING_APP: u32 = 0x5741;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_UID: u32 = 0x73C5;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const DEFAULT_DURATION: u32 = 0x23_E383;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const COLOUR_SPACE: u32 = 0x2E_B524;
const CLUSTER: u32 = 0x1F43_B675;
const TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;

/// A data size of "unknown" (all ones in an 8-byte size): the Segment is
/// streamed and never closed.
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// An element ID (its bytes as the specification writes them).
fn id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    out.extend_from_slice(&bytes[skip..]);
}

/// A data size, always in 8 bytes (valid EBML, and one rule for all).
fn size(out: &mut Vec<u8>, n: u64) {
    let mut b = n.to_be_bytes();
    b[0] = 0x01;
    out.extend_from_slice(&b);
}

fn element(out: &mut Vec<u8>, el: u32, payload: &[u8]) {
    id(out, el);
    size(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn uint(out: &mut Vec<u8>, el: u32, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    element(out, el, &bytes[skip..]);
}

/// Writes the stream: [`TimedFrames::start`], then [`TimedFrames::frame`]
/// for each frame in time order.
pub struct TimedFrames<W: Write> {
    out: W,
    frame_len: usize,
    head: Vec<u8>,
}

impl<W: Write> TimedFrames<W> {
    /// The stream header for `width` x `height` (even) frames, nominally
    /// `fps` a second (the duration the last frame is shown).
    pub fn start(mut out: W, width: u32, height: u32, fps: u32) -> std::io::Result<Self> {
        let mut buf = Vec::new();
        let mut header = Vec::new();
        uint(&mut header, EBML_VERSION, 1);
        uint(&mut header, EBML_READ_VERSION, 1);
        uint(&mut header, EBML_MAX_ID_LENGTH, 4);
        uint(&mut header, EBML_MAX_SIZE_LENGTH, 8);
        element(&mut header, DOC_TYPE, b"matroska");
        uint(&mut header, DOC_TYPE_VERSION, 4);
        uint(&mut header, DOC_TYPE_READ_VERSION, 2);
        element(&mut buf, EBML, &header);

        id(&mut buf, SEGMENT);
        buf.extend_from_slice(&UNKNOWN_SIZE);

        let mut info = Vec::new();
        // Timestamps in µs, the unit of session time.
        uint(&mut info, TIMESTAMP_SCALE, 1000);
        element(&mut info, MUXING_APP, b"sekisho");
        element(&mut info, WRITING_APP, b"sekisho");
        element(&mut buf, INFO, &info);

        let mut video = Vec::new();
        uint(&mut video, PIXEL_WIDTH, u64::from(width));
        uint(&mut video, PIXEL_HEIGHT, u64::from(height));
        element(&mut video, COLOUR_SPACE, b"I420");
        let mut track = Vec::new();
        uint(&mut track, TRACK_NUMBER, 1);
        uint(&mut track, TRACK_UID, 1);
        uint(&mut track, TRACK_TYPE, 1);
        element(&mut track, CODEC_ID, b"V_UNCOMPRESSED");
        uint(
            &mut track,
            DEFAULT_DURATION,
            1_000_000_000 / u64::from(fps.max(1)),
        );
        element(&mut track, VIDEO, &video);
        let mut tracks = Vec::new();
        element(&mut tracks, TRACK_ENTRY, &track);
        element(&mut buf, TRACKS, &tracks);

        out.write_all(&buf)?;
        Ok(TimedFrames {
            out,
            frame_len: width as usize * height as usize * 3 / 2,
            head: Vec::with_capacity(64),
        })
    }

    /// The stream written so far (for the tests).
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    /// One frame (`yuv420p` planes, width x height x 1.5 bytes) shown from
    /// `t_us` µs on. The pixels are written straight from `yuv`, not copied.
    pub fn frame(&mut self, t_us: u64, yuv: &[u8]) -> std::io::Result<()> {
        if yuv.len() != self.frame_len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "a frame of {} bytes where {} were expected",
                    yuv.len(),
                    self.frame_len
                ),
            ));
        }
        // SimpleBlock: track 1 (as a 1-byte vint), time 0 relative to the
        // cluster, flags: a keyframe (every raw frame stands alone).
        const BLOCK_HEAD: [u8; 4] = [0x81, 0, 0, 0x80];
        let block_len = (BLOCK_HEAD.len() + yuv.len()) as u64;
        let mut stamp = Vec::with_capacity(16);
        uint(&mut stamp, TIMESTAMP, t_us);
        let h = &mut self.head;
        h.clear();
        id(h, CLUSTER);
        // Timestamp element + SimpleBlock's ID (1) and size (8) + block.
        size(h, stamp.len() as u64 + 1 + 8 + block_len);
        h.extend_from_slice(&stamp);
        id(h, SIMPLE_BLOCK);
        size(h, block_len);
        h.extend_from_slice(&BLOCK_HEAD);
        self.out.write_all(h)?;
        self.out.write_all(yuv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ids_are_ebml() {
        let mut v = Vec::new();
        id(&mut v, CLUSTER);
        id(&mut v, TIMESTAMP);
        assert_eq!(v, [0x1F, 0x43, 0xB6, 0x75, 0xE7]);
        v.clear();
        size(&mut v, 300);
        assert_eq!(v, [0x01, 0, 0, 0, 0, 0, 0x01, 0x2C]);
        v.clear();
        uint(&mut v, TRACK_NUMBER, 0);
        assert_eq!(v, [0xD7, 1, 0, 0, 0, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn each_frame_is_a_cluster_with_its_time_and_the_pixels_as_given() {
        let mut out = TimedFrames::start(Vec::new(), 2, 2, 10).expect("start");
        let header_len = out.out.len();
        out.frame(1_500_000, &[1, 2, 3, 4, 5, 6]).expect("frame");
        assert!(out.frame(0, &[0; 5]).is_err(), "a short frame is refused");
        let bytes = out.out;
        let header = &bytes[..header_len];
        let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        assert!(header.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]));
        assert!(find(header, b"V_UNCOMPRESSED"));
        assert!(find(header, b"I420"));
        let cluster = &bytes[header_len..];
        assert!(cluster.starts_with(&[0x1F, 0x43, 0xB6, 0x75]));
        // The cluster's size covers exactly what follows it.
        let len = u64::from_be_bytes([
            0,
            cluster[5],
            cluster[6],
            cluster[7],
            cluster[8],
            cluster[9],
            cluster[10],
            cluster[11],
        ]);
        assert_eq!(len as usize, cluster.len() - 12);
        // The time, 1 500 000 µs in three bytes.
        assert_eq!(&cluster[12..21], &[0xE7, 1, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(&cluster[21..24], &[0x16, 0xE3, 0x60]);
        assert!(cluster.ends_with(&[0x81, 0, 0, 0x80, 1, 2, 3, 4, 5, 6]));
    }
}
