//! Synthetic desktop (RDP) sessions for the benches (included with
//! `#[path]`), written with the public archive writer at explicit session
//! times (no real session lasts an hour in a benchmark):
//!
//! - [`write_office_session`]: office-like work on a desktop of a given
//!   size: a full redraw every 30 s after a keyframe mark (as the gateway's
//!   `[rdp] keyframe_interval` asks the target for); typing in bursts (a
//!   keystroke's input PDU and a glyph-sized bitmap update, about four a
//!   second); pointer motion (20 positions a second while the mouse moves);
//!   a scrolled document pane every 20 s and a window opened every 2 min.
//!   Bitmaps are uncompressed 32 bpp tiles of at most 64x64, drawn from a
//!   few hundred different ones of each kind.
//! - [`write_redraw_session`]: continuous full-screen redraws, 40 a second,
//!   of photo-like pictures sent as a target sends them at 32 bpp: 64x64
//!   tiles of planar (RDP 6.0) bitmaps with RLE.
//!
//! Both are written as the gateway records a desktop session
//! ([`ArchiveLayout::Recorded`]: `WriterOptions::desktop()`, one zstd
//! stream with a long window from keyframe to keyframe, a chunk cut at
//! least once a second of session time as the recorder's writer thread
//! cuts one once a second); [`ArchiveLayout::FramePerChunk`] is how the
//! benches wrote them before session 7 (`WriterOptions::default()`, a zstd
//! frame per 1 MiB chunk), kept to compare with.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent, KeyboardFlags};
use ironrdp_pdu::input::mouse::{MousePdu, PointerFlags};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use sekisho::recording::{
    ArchiveKey, ArchiveWriter, DesktopSize, Event, Protocol, RdpInfo, SessionMeta, Stream,
    WriterOptions,
};

const TILE: u16 = 64;
pub const S: u64 = 1_000_000;
const IO_CHANNEL: u32 = 1003;

pub fn meta(w: u16, h: u16) -> SessionMeta {
    SessionMeta {
        session_id: "bench".into(),
        user: "tanaka".into(),
        vendor: "acme".into(),
        system: "lab".into(),
        target: "win01".into(),
        protocol: Protocol::Rdp,
        client_addr: "127.0.0.1:1".into(),
        decision: "allow".into(),
        hop_parent: None,
        started_at: chrono::Utc::now(),
        terminal: None,
        desktop: Some(DesktopSize {
            width: u32::from(w),
            height: u32::from(h),
        }),
        rdp: Some(RdpInfo {
            io_channel: IO_CHANNEL as u16,
            user_channel: 1007,
            ..RdpInfo::default()
        }),
    }
}

/// How a synthetic session's archive is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveLayout {
    /// As the gateway records an RDP session.
    Recorded,
    /// Each chunk one zstd frame (level 3), cut only when 1 MiB is full.
    FramePerChunk,
}

/// The archive writer with the recorder's chunking in session time: the
/// recorder cuts a chunk once its first event is a second old (wall time,
/// which in a live session is session time).
struct SessionWriter {
    writer: ArchiveWriter,
    layout: ArchiveLayout,
    chunk_first: Option<u64>,
}

impl SessionWriter {
    fn create(path: &std::path::Path, meta: &SessionMeta, layout: ArchiveLayout) -> Self {
        let options = match layout {
            ArchiveLayout::Recorded => WriterOptions::desktop(),
            ArchiveLayout::FramePerChunk => WriterOptions::default(),
        };
        SessionWriter {
            writer: ArchiveWriter::create(path, meta, options).expect("create"),
            layout,
            chunk_first: None,
        }
    }

    fn append(&mut self, t: u64, ev: &Event) {
        if self.layout == ArchiveLayout::Recorded {
            match self.chunk_first {
                Some(first) if t >= first + S => {
                    self.writer.flush_chunk().expect("flush");
                    self.chunk_first = Some(t);
                }
                None => self.chunk_first = Some(t),
                Some(_) => {}
            }
        }
        self.writer.append(t, ev).expect("append");
        if self.writer.chunk_opened().is_none() {
            // The writer cut a full chunk itself.
            self.chunk_first = None;
        }
    }

    fn seal(self) {
        self.writer.seal(&ArchiveKey::generate()).expect("seal");
    }
}

fn output(channel: u32, data: Vec<u8>) -> Event {
    Event::Output {
        channel,
        stream: Stream::Stdout,
        data: Bytes::from(data),
    }
}

/// A slow-path Server Demand Active announcing the desktop size.
fn demand_active(w: u16, h: u16) -> Vec<u8> {
    use ironrdp_pdu::rdp::capability_sets::{
        Bitmap, BitmapDrawingFlags, CapabilitySet, DemandActive, ServerDemandActive,
    };
    use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu};
    let header = ShareControlHeader {
        share_id: 0x1_03ea,
        pdu_source: 1002,
        share_control_pdu: ShareControlPdu::ServerDemandActive(ServerDemandActive {
            pdu: DemandActive {
                source_descriptor: "RDP".into(),
                capability_sets: vec![CapabilitySet::Bitmap(Bitmap {
                    pref_bits_per_pix: 32,
                    desktop_width: w,
                    desktop_height: h,
                    desktop_resize_flag: true,
                    drawing_flags: BitmapDrawingFlags::empty(),
                })],
            },
        }),
    };
    ironrdp_core::encode_vec(&header).expect("encode")
}

/// A fast-path output PDU with one 32 bpp bitmap of `w` x `h` at (`left`,
/// `top`): `data` uncompressed BGRA rows, or a planar stream when
/// `planar`.
fn bitmap_pdu(left: u16, top: u16, w: u16, h: u16, data: &[u8], planar: bool) -> Vec<u8> {
    use ironrdp_pdu::bitmap::{BitmapData, BitmapUpdateData, Compression};
    use ironrdp_pdu::geometry::InclusiveRectangle;
    let update = BitmapUpdateData {
        rectangles: vec![BitmapData {
            rectangle: InclusiveRectangle {
                left,
                top,
                right: left + w - 1,
                bottom: top + h - 1,
            },
            width: w,
            height: h,
            bits_per_pixel: 32,
            compression_flags: if planar {
                // RDP 6.0 streams carry no compressed data header.
                Compression::BITMAP_COMPRESSION | Compression::NO_BITMAP_COMPRESSION_HDR
            } else {
                Compression::empty()
            },
            compressed_data_header: None,
            bitmap_data: data,
        }],
    };
    let body = ironrdp_core::encode_vec(&update).expect("encode");
    let mut upd = vec![0x01]; // bitmap, single fragment, no compression
    upd.extend_from_slice(&u16::try_from(body.len()).expect("small").to_le_bytes());
    upd.extend_from_slice(&body);
    let total = upd.len() + 3;
    let mut pdu = vec![0x00, 0x80 | ((total >> 8) as u8), total as u8];
    pdu.extend_from_slice(&upd);
    pdu
}

/// An uncompressed bitmap update.
fn bitmap(left: u16, top: u16, w: u16, h: u16, bgra: &[u8]) -> Vec<u8> {
    bitmap_pdu(left, top, w, h, bgra, false)
}

fn input(events: Vec<FastPathInputEvent>) -> Event {
    let pdu =
        ironrdp_core::encode_vec(&FastPathInput::new(events).expect("events")).expect("encode");
    Event::Input {
        channel: 0,
        data: Bytes::from(pdu),
    }
}

/// Office-like pixels: a light page with lines of dark "text".
fn page(rng: &mut StdRng, w: u16, h: u16, background: [u8; 3], text_row: u16) -> Vec<u8> {
    let mut px = Vec::with_capacity(usize::from(w) * usize::from(h) * 4);
    for y in 0..h {
        let texty = (y + text_row) % 18 < 11;
        for _ in 0..w {
            let ink = texty && rng.gen_ratio(1, 4);
            let [r, g, b] = if ink { [30, 30, 40] } else { background };
            px.extend_from_slice(&[b, g, r, 0]);
        }
    }
    px
}

/// Tiles of page pixels, made once: [`VARIANTS`] different ones of each
/// background and size, picked at random (generating every tile anew made
/// writing the hour slower than measuring it).
#[derive(Default)]
struct Tiles {
    made: std::collections::HashMap<([u8; 3], u16, u16, u32), Vec<u8>>,
}

/// Different tiles of each kind: 256 x 16 KiB, more than zstd's window
/// sees at once, so the archive compresses about as real pages do.
const VARIANTS: u32 = 256;

impl Tiles {
    fn get(&mut self, rng: &mut StdRng, background: [u8; 3], w: u16, h: u16) -> &[u8] {
        let v = rng.gen_range(0..VARIANTS);
        let key = (background, w, h, v);
        self.made
            .entry(key)
            .or_insert_with(|| page(rng, w, h, background, 0))
    }
}

/// A rectangle redrawn as tiles, one PDU each, 1 ms apart from `t`.
fn redraw(
    out: &mut Vec<(u64, Event)>,
    rng: &mut StdRng,
    tiles: &mut Tiles,
    t: u64,
    (x0, y0, w, h): (u16, u16, u16, u16),
    background: [u8; 3],
) {
    let mut k = 0;
    for ty in (y0..y0 + h).step_by(usize::from(TILE)) {
        for tx in (x0..x0 + w).step_by(usize::from(TILE)) {
            let (tw, th) = (TILE.min(x0 + w - tx), TILE.min(y0 + h - ty));
            let px = tiles.get(rng, background, tw, th);
            out.push((t + k * 1000, output(0, bitmap(tx, ty, tw, th, px))));
            k += 1;
        }
    }
}

/// Writes the office-like session on a `w` x `h` desktop (its layout
/// first drawn for 1920x1080, scaled); returns its length in µs.
pub fn write_office_session(
    path: &std::path::Path,
    minutes: u64,
    (w, h): (u16, u16),
    layout: ArchiveLayout,
) -> u64 {
    // A place on the 1920x1080 layout, on this desktop.
    let sx = |x: u16| (u32::from(x) * u32::from(w) / 1920) as u16;
    let sy = |y: u16| (u32::from(y) * u32::from(h) / 1080) as u16;
    let mut rng = StdRng::seed_from_u64(12);
    let mut tiles = Tiles::default();
    let mut writer = SessionWriter::create(path, &meta(w, h), layout);
    let end = minutes * 60 * S;
    let desk = (0, 0, w, h);
    let pane = (sx(300), sy(150), sx(1200), sy(760));
    let window = (sx(500), sy(200), sx(800), sy(600));
    let mut t = 0;
    let mut caret = (sx(200), sy(200));
    let mut pointer = (sx(900), sy(500));
    let mut batch: Vec<(u64, Event)> = vec![(0, output(IO_CHANNEL, demand_active(w, h)))];
    redraw(
        &mut batch,
        &mut rng,
        &mut tiles,
        1000,
        desk,
        [236, 236, 236],
    );
    let mut next_keyframe = 30 * S;
    let mut next_scroll = 20 * S;
    let mut next_window = 120 * S;
    while t < end {
        // A tenth of a second at a time.
        t += S / 10;
        if t >= next_keyframe {
            batch.push((t, Event::Keyframe));
            redraw(
                &mut batch,
                &mut rng,
                &mut tiles,
                t + 50_000,
                desk,
                [236, 236, 236],
            );
            next_keyframe += 30 * S;
        } else if t >= next_scroll {
            redraw(&mut batch, &mut rng, &mut tiles, t, pane, [255, 255, 255]);
            next_scroll += 20 * S;
        } else if t >= next_window {
            redraw(&mut batch, &mut rng, &mut tiles, t, window, [245, 245, 250]);
            next_window += 120 * S;
        }
        // Typing three minutes in five; the mouse moves the rest.
        let typing = (t / S / 60) % 5 < 3;
        if typing && rng.gen_ratio(2, 5) {
            let code = rng.gen_range(0x10..0x32);
            batch.push((
                t,
                input(vec![
                    FastPathInputEvent::KeyboardEvent(KeyboardFlags::empty(), code),
                    FastPathInputEvent::KeyboardEvent(KeyboardFlags::RELEASE, code),
                ]),
            ));
            let glyph = page(&mut rng, 10, 18, [255, 255, 255], 0);
            batch.push((
                t + 20_000,
                output(0, bitmap(caret.0, caret.1, 10, 18, &glyph)),
            ));
            caret.0 += 10;
            if caret.0 > sx(1400) {
                caret = (
                    sx(200),
                    if caret.1 > sy(900) {
                        sy(200)
                    } else {
                        caret.1 + 20
                    },
                );
            }
        } else if !typing {
            for k in 0..2u64 {
                pointer.0 = (pointer.0 + rng.gen_range(0..40)).saturating_sub(19) % w;
                pointer.1 = (pointer.1 + rng.gen_range(0..30)).saturating_sub(14) % h;
                batch.push((
                    t + k * 50_000,
                    input(vec![FastPathInputEvent::MouseEvent(MousePdu {
                        flags: PointerFlags::MOVE,
                        number_of_wheel_rotation_units: 0,
                        x_position: pointer.0,
                        y_position: pointer.1,
                    })]),
                ));
            }
        }
        batch.sort_by_key(|(t, _)| *t);
        for (at, ev) in batch.drain(..) {
            writer.append(at, &ev);
        }
    }
    writer.seal();
    end
}

/// A photo-like picture, BGRA rows: smooth shapes of colour with grain, so
/// that neither planar RLE nor H.264 finds it easy.
fn photo(rng: &mut StdRng, w: u16, h: u16) -> Vec<u8> {
    let (fx, fy, phase) = (
        rng.gen_range(2.0..7.0f32),
        rng.gen_range(2.0..7.0f32),
        rng.gen_range(0.0..6.3f32),
    );
    let mut px = Vec::with_capacity(usize::from(w) * usize::from(h) * 4);
    for y in 0..h {
        for x in 0..w {
            let (u, v) = (f32::from(x) / f32::from(w), f32::from(y) / f32::from(h));
            let a = (u * fx + phase).sin() * (v * fy - phase).cos();
            let grain = rng.gen_range(-6i32..=6);
            let c =
                |base: f32, k: f32| (base + k * a * 90.0 + grain as f32).clamp(0.0, 255.0) as u8;
            px.extend_from_slice(&[c(110.0, 1.0), c(130.0, -0.7), c(150.0, 0.5), 0]);
        }
    }
    px
}

/// `pic` (`w` x `h` BGRA) as fast-path PDUs of planar 64x64 tiles, as a
/// target sends a full-screen picture at 32 bpp.
fn planar_tiles(pic: &[u8], w: u16, h: u16) -> Vec<Bytes> {
    use ironrdp_graphics::rdp6::{BgrAChannels, BitmapStreamEncoder};
    let mut out = Vec::new();
    let mut buf = vec![0u8; usize::from(TILE) * usize::from(TILE) * 4 * 2 + 64];
    for ty in (0..h).step_by(usize::from(TILE)) {
        for tx in (0..w).step_by(usize::from(TILE)) {
            let (tw, th) = (TILE.min(w - tx), TILE.min(h - ty));
            // Planar streams are bottom-up.
            let mut tile = Vec::with_capacity(usize::from(tw) * usize::from(th) * 4);
            for y in (ty..ty + th).rev() {
                let at = (usize::from(y) * usize::from(w) + usize::from(tx)) * 4;
                tile.extend_from_slice(&pic[at..at + usize::from(tw) * 4]);
            }
            let n = BitmapStreamEncoder::new(usize::from(tw), usize::from(th))
                .encode_bitmap::<BgrAChannels>(&tile, &mut buf, true)
                .expect("planar");
            out.push(Bytes::from(bitmap_pdu(tx, ty, tw, th, &buf[..n], true)));
        }
    }
    out
}

/// Pictures the redraw session cycles through: 7, so that sampling at 10
/// frames a second (every fourth redraw) still meets each in turn.
const PHOTOS: usize = 7;

/// Writes `seconds` of continuous full-screen redraws at 40 a second on a
/// `w` x `h` desktop, each redraw a photo-like picture other than the one
/// before, sent as planar tiles within 10 ms; returns its length in µs.
pub fn write_redraw_session(
    path: &std::path::Path,
    seconds: u64,
    (w, h): (u16, u16),
    layout: ArchiveLayout,
) -> u64 {
    let mut rng = StdRng::seed_from_u64(40);
    let photos: Vec<Vec<Bytes>> = (0..PHOTOS)
        .map(|_| planar_tiles(&photo(&mut rng, w, h), w, h))
        .collect();
    let mut writer = SessionWriter::create(path, &meta(w, h), layout);
    writer.append(0, &output(IO_CHANNEL, demand_active(w, h)));
    let end = seconds * S;
    let mut frame = 0usize;
    let mut t = 1000;
    while t < end {
        if frame.is_multiple_of(120) {
            // A keyframe mark every 3 s (a redraw is on its way anyway).
            writer.append(t, &Event::Keyframe);
        }
        let tiles = &photos[frame % PHOTOS];
        for (k, tile) in tiles.iter().enumerate() {
            let at = t + (k as u64 * 10_000) / tiles.len() as u64;
            let ev = Event::Output {
                channel: 0,
                stream: Stream::Stdout,
                data: tile.clone(),
            };
            writer.append(at, &ev);
        }
        frame += 1;
        t += S / 40;
    }
    writer.seal();
    end
}
