//! Seeking in the browser's desktop (RDP) player: what the console does
//! for one seek, server-side, in a 1-hour office-like session.
//!
//! The archive is synthetic, written with the public archive writer at
//! explicit session times (no real session lasts an hour in a benchmark):
//! a 1920x1080 desktop; a full redraw every 30 s after a keyframe mark (as
//! the gateway's `[rdp] keyframe_interval` asks the target for); typing in
//! bursts (a keystroke's input PDU and a glyph-sized bitmap update, about
//! four a second); pointer motion (20 positions a second while the mouse
//! moves); a scrolled document pane every 20 s and a window opened every
//! 2 min. Bitmaps are uncompressed 32 bpp tiles of at most 64x64, drawn
//! from a few hundred different ones of each kind (xrdp
//! compresses its own, so real decoding costs somewhat more per byte; the
//! replay and PNG encoding this measures dominate either way).
//!
//! `cargo bench --bench desktop_seek` prints the time to build the seek
//! index (once per archive) and a markdown table: for seeks to several
//! positions, the desktop at that moment (the keyframe looked up in the
//! index, the replay from it), and the whole answer of `GET
//! /sessions/{id}/desktop/frames` a seek makes (that frame, whole, as PNG)
//! — what the player waits for before it shows the frame — and, for
//! comparison, the desktop at that
//! moment without the index (reading the archive from its start for the
//! desktop size). Median of
//! `SEKISHO_BENCH_REPEAT` [5] runs each. `SEKISHO_BENCH_MINUTES` [60] sets
//! the session length.

// A panic in a bench is a failed run; getrusage reads this thread's CPU time.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent, KeyboardFlags};
use ironrdp_pdu::input::mouse::{MousePdu, PointerFlags};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use sekisho::recording::{
    ArchiveKey, ArchiveWriter, DesktopSize, Event, Protocol, RdpInfo, Reader, SessionMeta, Stream,
    WriterOptions,
};
use sekisho::replay::desktop::frames::{FrameStream, Pace, StreamOptions};
use sekisho::replay::desktop::render::SeekIndex;
use sekisho::web::desktop::{REPLAY_FPS, frames_between};

const W: u16 = 1920;
const H: u16 = 1080;
const TILE: u16 = 64;
const S: u64 = 1_000_000;
const IO_CHANNEL: u32 = 1003;

fn meta() -> SessionMeta {
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
            width: u32::from(W),
            height: u32::from(H),
        }),
        rdp: Some(RdpInfo {
            io_channel: IO_CHANNEL as u16,
            user_channel: 1007,
            ..RdpInfo::default()
        }),
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

/// A fast-path output PDU with one uncompressed 32 bpp bitmap of `w` x `h`
/// at (`left`, `top`), BGRA rows.
fn bitmap(left: u16, top: u16, w: u16, h: u16, bgra: &[u8]) -> Vec<u8> {
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
            compression_flags: Compression::empty(),
            compressed_data_header: None,
            bitmap_data: bgra,
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

/// Writes the session; returns its length in µs.
fn write_session(path: &std::path::Path, minutes: u64) -> u64 {
    let mut rng = StdRng::seed_from_u64(12);
    let mut tiles = Tiles::default();
    let mut w = ArchiveWriter::create(path, &meta(), WriterOptions::default()).expect("create");
    let end = minutes * 60 * S;
    let desk = (0, 0, W, H);
    let mut t = 0;
    let mut caret = (200u16, 200u16);
    let mut pointer = (900u16, 500u16);
    let mut batch: Vec<(u64, Event)> = vec![(0, output(IO_CHANNEL, demand_active(W, H)))];
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
            redraw(
                &mut batch,
                &mut rng,
                &mut tiles,
                t,
                (300, 150, 1200, 760),
                [255, 255, 255],
            );
            next_scroll += 20 * S;
        } else if t >= next_window {
            redraw(
                &mut batch,
                &mut rng,
                &mut tiles,
                t,
                (500, 200, 800, 600),
                [245, 245, 250],
            );
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
            if caret.0 > 1400 {
                caret = (200, if caret.1 > 900 { 200 } else { caret.1 + 20 });
            }
        } else if !typing {
            for k in 0..2u64 {
                pointer.0 = (pointer.0 + rng.gen_range(0..40)).saturating_sub(19) % W;
                pointer.1 = (pointer.1 + rng.gen_range(0..30)).saturating_sub(14) % H;
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
            w.append(at, &ev).expect("append");
        }
    }
    w.seal(&ArchiveKey::generate()).expect("seal");
    end
}

/// CPU time of this thread: what a step costs on a core of its own (the
/// machine the numbers come from may be busy with other work).
fn thread_cpu() -> Duration {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, u.as_mut_ptr());
        u.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let minutes: u64 = std::env::var("SEKISHO_BENCH_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let repeat: usize = std::env::var("SEKISHO_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("office.skrec");
    let made = Instant::now();
    let end = write_session(&path, minutes);
    let size = std::fs::metadata(&path).expect("archive").len();
    let mut reader = Reader::open(&path).expect("open");
    let keyframes = reader.keyframes().expect("keyframes").len();
    eprintln!(
        "{minutes}-min office-like session written in {:.1} s: {:.1} MB, {keyframes} keyframes",
        made.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );
    let (t0, c0) = (Instant::now(), thread_cpu());
    let index = SeekIndex::build(&mut Reader::open(&path).expect("open")).expect("index");
    let (index_time, index_cpu) = (t0.elapsed(), thread_cpu() - c0);
    println!(
        "Seek in a {minutes}-min office-like RDP session (1920x1080, archive {:.0} MB, {keyframes} keyframes), median of {repeat}.\n\
         The seek index (keyframes and desktop sizes, one pass over the archive when the player first opens it, then kept): {} ms ({} ms CPU).\n",
        size as f64 / 1e6,
        ms(index_time),
        ms(index_cpu)
    );
    println!(
        "| seek to | desktop at that moment (ms) | the seek's answer: that frame as PNG (ms) | the answer's CPU time (ms) | answer size (KB) | desktop at that moment without the index (ms) |"
    );
    println!("|---|---|---|---|---|---|");
    let positions = [
        5 * S,
        end / 8,
        end / 4,
        end / 2 - S,
        end * 3 / 4 + 17 * S,
        end.saturating_sub(S),
    ];
    for at in positions {
        let secs = at / S;
        let label = format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        let (mut first, mut answer, mut unindexed) = (Vec::new(), Vec::new(), Vec::new());
        let mut answer_cpu = Vec::new();
        let mut bytes = 0;
        let options = StreamOptions {
            pace: Pace::Sampled { fps: REPLAY_FPS },
            keyframe_interval_us: 0,
            from_us: at,
            to_us: at,
        };
        for _ in 0..repeat {
            let t0 = Instant::now();
            let mut r = Reader::open(&path).expect("open");
            let mut stream = FrameStream::with_index(&mut r, options, &index).expect("stream");
            let frame = stream.next_frame().expect("frame").expect("a first frame");
            assert!(frame.full);
            first.push(t0.elapsed());

            let (t0, c0) = (Instant::now(), thread_cpu());
            let mut r = Reader::open(&path).expect("open");
            let body = frames_between(&mut r, &index, at, at).expect("frames");
            answer.push(t0.elapsed());
            answer_cpu.push(thread_cpu() - c0);
            bytes = body.len();

            let t0 = Instant::now();
            let mut r = Reader::open(&path).expect("open");
            let mut stream = FrameStream::new(&mut r, options).expect("stream");
            let frame = stream.next_frame().expect("frame").expect("a first frame");
            assert!(frame.full);
            unindexed.push(t0.elapsed());
        }
        println!(
            "| {label} | {} | {} | {} | {:.0} | {} |",
            ms(median(first)),
            ms(median(answer)),
            ms(median(answer_cpu)),
            bytes as f64 / 1024.0,
            ms(median(unindexed)),
        );
    }
}
