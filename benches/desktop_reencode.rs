//! Would another representation of a desktop recording's bitmaps make the
//! archive smaller? (Issue 16 point 4, the text flood.) An offline
//! experiment on archives the RDP benchmark kept
//! (`SEKISHO_BENCH_KEEP=DIR cargo bench --bench rdp`):
//!
//!     SEKISHO_BENCH_ARCHIVES=DIR/text-flood.skrec,DIR/images.skrec,DIR/office-like.skrec \
//!       cargo bench --locked --bench desktop_reencode
//!
//! For each archive, its events are written again with the desktop writer
//! (`WriterOptions::desktop()`: one zstd stream, level 1, 8 MiB window,
//! long-distance matcher) in these representations of the target's
//! compressed 32 bpp bitmaps (xrdp's planar, RDP 6.0):
//!
//! - **as recorded**: unchanged (what sekisho stores);
//! - **uncompressed 24 / 32 bpp**: each bitmap decoded (ironrdp-graphics,
//!   as the replayer does) and stored as an uncompressed fast-path bitmap
//!   update (rows bottom-up, BGR / BGRX); replayed side by side with the
//!   original, the framebuffers must be identical at every 25th event;
//! - **cell columns** (a size estimate, no decoder exists): each decoded
//!   bitmap cut into columns as wide as a terminal character cell (6 px
//!   for the benchmark's xterm); a column seen before, pixel for pixel, is
//!   stored as a 2-byte index into a table of at most 65 535 columns, a new
//!   one as a marker and its pixels; a bitmap is stored so only when that
//!   is shorter than its planar bytes (its columns join the table either
//!   way), and photo-like bitmaps (planar larger than half of raw) are not
//!   decoded at all. The table starts again at each keyframe (a replay
//!   may start there).
//!
//! It also counts how many rows of each drawn bitmap were already on the
//! screen just before (anywhere, as a whole row of the same span): what
//! screen-to-screen copies (ScrBlt) could save at most.
//!
//! CPU is this thread's (`/proc/thread-self/schedstat`), as a share of one
//! core over the session's length.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use ironrdp_core::{ReadCursor, decode};
use ironrdp_graphics::rdp6::BitmapStreamDecoder;
use ironrdp_pdu::bitmap::{BitmapData, BitmapUpdateData, Compression};
use ironrdp_pdu::geometry::InclusiveRectangle;
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};
use ironrdp_pdu::slow_path;
use sekisho::recording::writer::{ArchiveWriter, WriterOptions};
use sekisho::recording::{ArchiveKey, Event, Reader, SessionMeta, Stream, TimedEvent};
use sekisho::replay::desktop::render::Renderer;

/// Width of a character cell of the benchmark's xterm (170 columns in
/// 1020 pixels).
const CELL: usize = 6;
/// Channel the cell-column estimate stores its bitmaps under (no reader
/// decodes it; only its size counts).
const CELL_CHANNEL: u32 = 0xffff_fff0;
const TABLE_MAX: usize = 0xffff;

/// CPU time of this thread.
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns: u64 = s
        .split_whitespace()
        .next()
        .expect("field")
        .parse()
        .expect("ns");
    Duration::from_nanos(ns)
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Repr {
    AsRecorded,
    Raw24,
    Raw32,
    CellColumns,
}

impl Repr {
    fn label(self) -> &'static str {
        match self {
            Repr::AsRecorded => "as recorded (planar)",
            Repr::Raw24 => "uncompressed 24 bpp",
            Repr::Raw32 => "uncompressed 32 bpp",
            Repr::CellColumns => "cell columns (estimate)",
        }
    }
}

/// The bitmaps of a recorded output PDU (slow-path Share Data Update or
/// fast-path), if it is made of whole bitmap updates only.
fn bitmaps_of<'a>(
    channel: u32,
    data: &'a [u8],
    keep: &'a mut Vec<u8>,
) -> Option<Vec<BitmapData<'a>>> {
    if channel == sekisho::protocol::rdp::FASTPATH_CHANNEL {
        use ironrdp_pdu::fast_path::{
            FastPathHeader, FastPathUpdate, FastPathUpdatePdu, Fragmentation, UpdateCode,
        };
        let mut src = ReadCursor::new(data);
        ironrdp_core::decode_cursor::<FastPathHeader>(&mut src).ok()?;
        let mut all = Vec::new();
        while !src.is_empty() {
            let pdu = ironrdp_core::decode_cursor::<FastPathUpdatePdu<'_>>(&mut src).ok()?;
            if pdu.fragmentation != Fragmentation::Single
                || pdu.update_code != UpdateCode::Bitmap
                || pdu.compression_flags.is_some_and(|f| !f.is_empty())
            {
                return None;
            }
            let Ok(FastPathUpdate::Bitmap(update)) =
                FastPathUpdate::decode_with_code(pdu.data, UpdateCode::Bitmap)
            else {
                return None;
            };
            all.extend(update.rectangles);
        }
        return Some(all);
    }
    let header = decode::<ShareControlHeader>(data).ok()?;
    let ShareControlPdu::Data(sd) = header.share_control_pdu else {
        return None;
    };
    let ShareDataPdu::Update(update) = sd.share_data_pdu else {
        return None;
    };
    *keep = update;
    let mut src = ReadCursor::new(keep);
    match slow_path::read_graphics_update_type(&mut src) {
        Ok(slow_path::GraphicsUpdateType::Bitmap) => slow_path::decode_slow_path_bitmap(&mut src)
            .ok()
            .map(|u| u.rectangles),
        _ => None,
    }
}

fn is_planar(b: &BitmapData<'_>) -> bool {
    b.bits_per_pixel == 32
        && b.compression_flags
            .contains(Compression::BITMAP_COMPRESSION)
}

/// One uncompressed bitmap (rows bottom-up) as fast-path PDUs, split by
/// rows so that each stays under the fast-path length limit.
fn uncompressed_pdus(b: &BitmapData<'_>, bpp: u16, data: &[u8], out: &mut Vec<Bytes>) {
    let row = (usize::from(b.width) * usize::from(bpp / 8) + 3) & !3;
    let max_rows = (30_000 / row).max(1);
    let h = usize::from(b.height);
    let mut done = 0; // lines from the top already emitted
    while done < h {
        let n = (h - done).min(max_rows);
        let top = b.rectangle.top + done as u16;
        let update = BitmapUpdateData {
            rectangles: vec![BitmapData {
                rectangle: InclusiveRectangle {
                    left: b.rectangle.left,
                    top,
                    right: b.rectangle.right,
                    bottom: top + n as u16 - 1,
                },
                width: b.width,
                height: n as u16,
                bits_per_pixel: bpp,
                compression_flags: Compression::empty(),
                compressed_data_header: None,
                // Top-down lines done..done+n are rows h-done-n..h-done.
                bitmap_data: &data[(h - done - n) * row..(h - done) * row],
            }],
        };
        let body = ironrdp_core::encode_vec(&update).expect("encode");
        let mut pdu = Vec::with_capacity(body.len() + 6);
        let total = body.len() + 6;
        assert!(total < 0x8000, "fast-path PDU too long");
        pdu.extend_from_slice(&[0x00, 0x80 | (total >> 8) as u8, total as u8, 0x01]);
        pdu.extend_from_slice(&(body.len() as u16).to_le_bytes());
        pdu.extend_from_slice(&body);
        out.push(Bytes::from(pdu));
        done += n;
    }
}

/// The table of cell columns seen so far.
#[derive(Default)]
struct Columns {
    table: HashMap<Vec<u8>, u16>,
}

impl Columns {
    /// `rgb` (rows bottom-up, `w` x `h`) as columns, or `None` when that is
    /// not shorter than `planar` bytes. Either way the bitmap's new columns
    /// join the table (a decoder cuts a bitmap stored as planar the same
    /// way, so both sides keep the same table).
    fn encode(&mut self, rgb: &[u8], w: usize, h: usize, planar: usize) -> Option<Vec<u8>> {
        // Where the bitmap goes and its size, as in a bitmap update.
        let mut out = vec![0; 16];
        for x in (0..w).step_by(CELL) {
            let cw = CELL.min(w - x);
            let mut col = Vec::with_capacity(cw * h * 3);
            for y in 0..h {
                col.extend_from_slice(&rgb[(y * w + x) * 3..(y * w + x + cw) * 3]);
            }
            if let Some(&i) = self.table.get(&col) {
                out.extend_from_slice(&i.to_le_bytes());
            } else {
                out.extend_from_slice(&u16::MAX.to_le_bytes());
                out.extend_from_slice(&col);
                if self.table.len() < TABLE_MAX {
                    let i = self.table.len() as u16;
                    self.table.insert(col, i);
                }
            }
        }
        (out.len() < planar).then_some(out)
    }
}

#[derive(Default)]
struct Cost {
    /// Decoding planar bitmaps.
    decode: Duration,
    /// Decoding and building the new representation.
    total: Duration,
    bitmap_bytes: u64,
}

/// The events in representation `r`, one list per original event.
fn represent(events: &[TimedEvent], r: Repr, cost: &mut Cost) -> Vec<Vec<TimedEvent>> {
    let mut dec = BitmapStreamDecoder::default();
    let (mut rgb, mut conv, mut keep) = (Vec::new(), Vec::new(), Vec::new());
    let mut columns = Columns::default();
    let mut out = Vec::with_capacity(events.len());
    for te in events {
        if te.event == Event::Keyframe {
            // A replay may start here: the table starts again.
            columns = Columns::default();
        }
        let Event::Output { channel, data, .. } = &te.event else {
            out.push(vec![te.clone()]);
            continue;
        };
        let t0 = thread_cpu();
        let bitmaps = bitmaps_of(*channel, data, &mut keep);
        let Some(bitmaps) = bitmaps.filter(|b| r != Repr::AsRecorded && b.iter().all(is_planar))
        else {
            if let Some(b) = bitmaps_of(*channel, data, &mut keep) {
                cost.bitmap_bytes += b.iter().map(|b| b.bitmap_data.len() as u64).sum::<u64>();
            }
            out.push(vec![te.clone()]);
            continue;
        };
        let mut pdus = Vec::new();
        for b in &bitmaps {
            let (w, h) = (usize::from(b.width), usize::from(b.height));
            if r == Repr::CellColumns && b.bitmap_data.len() * 2 > w * h * 4 {
                // Photo-like: not decoded, stored as received.
                pdus.push(None);
                continue;
            }
            rgb.clear();
            let d0 = thread_cpu();
            let decoded = dec.decode_bitmap_stream_to_rgb24(b.bitmap_data, &mut rgb, w, h);
            cost.decode += thread_cpu() - d0;
            decoded.expect("a recorded planar bitmap decodes");
            // rgb: RGB rows bottom-up.
            conv.clear();
            match r {
                Repr::Raw24 => {
                    let row = (w * 3 + 3) & !3;
                    for line in rgb.chunks_exact(w * 3) {
                        let start = conv.len();
                        conv.extend(line.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]));
                        conv.resize(start + row, 0);
                    }
                    let mut v = Vec::new();
                    uncompressed_pdus(b, 24, &conv, &mut v);
                    pdus.extend(v.into_iter().map(Some));
                }
                Repr::Raw32 => {
                    conv.extend(rgb.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0], 0xff]));
                    let mut v = Vec::new();
                    uncompressed_pdus(b, 32, &conv, &mut v);
                    pdus.extend(v.into_iter().map(Some));
                }
                Repr::CellColumns => {
                    pdus.push(
                        columns
                            .encode(&rgb, w, h, b.bitmap_data.len())
                            .map(Bytes::from),
                    );
                }
                Repr::AsRecorded => unreachable!(),
            }
        }
        cost.total += thread_cpu() - t0;
        let mut list = Vec::new();
        for (i, p) in pdus.into_iter().enumerate() {
            let (channel, data) = match p {
                Some(p) if r == Repr::CellColumns => (CELL_CHANNEL, p),
                Some(p) => (sekisho::protocol::rdp::FASTPATH_CHANNEL, p),
                // The estimate stores what it did not re-encode as the
                // bitmap's own bytes (plus a header's worth).
                None => {
                    let b = &bitmaps[i.min(bitmaps.len() - 1)];
                    (CELL_CHANNEL, Bytes::copy_from_slice(b.bitmap_data))
                }
            };
            cost.bitmap_bytes += data.len() as u64;
            list.push(TimedEvent {
                t_us: te.t_us,
                event: Event::Output {
                    channel,
                    stream: Stream::Stdout,
                    data,
                },
            });
        }
        out.push(list);
    }
    out
}

/// Writes the events with the desktop writer: archive size and CPU.
fn write(dir: &Path, meta: &SessionMeta, groups: &[Vec<TimedEvent>]) -> (u64, Duration) {
    let path = dir.join("variant.skrec");
    let _ = std::fs::remove_file(&path);
    let t0 = thread_cpu();
    let mut w = ArchiveWriter::create(&path, meta, WriterOptions::desktop()).expect("create");
    for te in groups.iter().flatten() {
        w.append(te.t_us, &te.event).expect("append");
    }
    let s = w.seal(&ArchiveKey::generate()).expect("seal");
    let cpu = thread_cpu() - t0;
    std::fs::remove_file(&path).expect("remove");
    (s.size, cpu)
}

/// Replays both side by side: (framebuffers compared, of them identical).
fn same_screens(meta: &SessionMeta, a: &[Vec<TimedEvent>], b: &[Vec<TimedEvent>]) -> (u32, u32) {
    let mut ra = Renderer::new(meta).expect("renderer");
    let mut rb = Renderer::new(meta).expect("renderer");
    let (mut checks, mut same) = (0, 0);
    for (i, (ga, gb)) in a.iter().zip(b).enumerate() {
        ga.iter().for_each(|te| ra.apply(&te.event));
        gb.iter().for_each(|te| rb.apply(&te.event));
        if i % 25 == 0 || i + 1 == a.len() {
            checks += 1;
            same += u32::from(ra.pixels() == rb.pixels());
        }
    }
    (checks, same)
}

/// Rows drawn, rows of one colour, and rows not of one colour that were
/// already on the screen just before.
fn rows_already_shown(meta: &SessionMeta, events: &[TimedEvent]) -> (u64, u64, u64) {
    let mut r = Renderer::new(meta).expect("renderer");
    let w = r.width() as usize;
    let (mut rows, mut plain, mut seen) = (0, 0, 0);
    let mut keep = Vec::new();
    let hash = |row: &[u8]| {
        let mut s = DefaultHasher::new();
        row.hash(&mut s);
        s.finish()
    };
    for te in events {
        let rects: Vec<(usize, usize, usize, usize)> = match &te.event {
            Event::Output { channel, data, .. } => bitmaps_of(*channel, data, &mut keep)
                .unwrap_or_default()
                .iter()
                .map(|b| {
                    let c = &b.rectangle;
                    let (l, t) = (usize::from(c.left), usize::from(c.top));
                    (l, usize::from(c.right) + 1, t, usize::from(c.bottom) + 1)
                })
                .collect(),
            _ => Vec::new(),
        };
        if rects.is_empty() {
            r.apply(&te.event);
            continue;
        }
        let before = r.pixels().to_vec();
        let height = before.len() / (w * 4);
        let mut shown: HashMap<(usize, usize), HashSet<u64>> = HashMap::new();
        r.apply(&te.event);
        let after = r.pixels();
        for (l, right, t, b) in rects {
            if right > w {
                continue;
            }
            let set = shown.entry((l, right)).or_insert_with(|| {
                (0..height)
                    .map(|y| hash(&before[(y * w + l) * 4..(y * w + right) * 4]))
                    .collect()
            });
            for y in t..b.min(height) {
                let row = &after[(y * w + l) * 4..(y * w + right) * 4];
                rows += 1;
                if row.chunks_exact(4).all(|p| p == &row[..4]) {
                    plain += 1;
                } else if set.contains(&hash(row)) {
                    seen += 1;
                }
            }
        }
    }
    (rows, plain, seen)
}

fn main() {
    let Some(list) = std::env::var_os("SEKISHO_BENCH_ARCHIVES") else {
        println!(
            "desktop_reencode: set SEKISHO_BENCH_ARCHIVES to archives kept by \
             `SEKISHO_BENCH_KEEP=DIR cargo bench --bench rdp` (comma-separated)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "| archive | representation | bitmap bytes | archive | vs as recorded | writer CPU | decoding CPU | decoding + re-encoding CPU | screens identical |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|");
    let mut shown = Vec::new();
    for path in list.to_string_lossy().split(',') {
        let path = Path::new(path);
        let mut reader = Reader::open(path).expect("open archive");
        let meta = reader.meta().clone();
        let events: Vec<TimedEvent> = reader.events().map(|e| e.expect("event")).collect();
        let secs = events.last().map_or(1.0, |e| e.t_us as f64 / 1e6);
        let name = path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let share = |d: Duration| format!("{:.1} %", 100.0 * d.as_secs_f64() / secs);
        let mut recorded: Option<(Vec<Vec<TimedEvent>>, u64)> = None;
        for r in [
            Repr::AsRecorded,
            Repr::Raw24,
            Repr::Raw32,
            Repr::CellColumns,
        ] {
            let mut cost = Cost::default();
            let groups = represent(&events, r, &mut cost);
            let (size, writer) = write(dir.path(), &meta, &groups);
            let (identical, vs) = match &recorded {
                None => ("(the original)".to_string(), "1.00×".to_string()),
                Some((orig, orig_size)) => {
                    let ratio = *orig_size as f64 / size as f64;
                    let vs = if ratio >= 1.0 {
                        format!("{ratio:.2}× smaller")
                    } else {
                        format!("{:.2}× larger", 1.0 / ratio)
                    };
                    if r == Repr::CellColumns {
                        ("(no decoder: size only)".to_string(), vs)
                    } else {
                        let (checks, same) = same_screens(&meta, orig, &groups);
                        (format!("{same} of {checks}"), vs)
                    }
                }
            };
            println!(
                "| {name} ({secs:.1} s) | {} | {:.1} MB | {:.2} MB ({:.1} MB/min) | {vs} | {} | {} | {} | {identical} |",
                r.label(),
                cost.bitmap_bytes as f64 / 1e6,
                size as f64 / 1e6,
                size as f64 / 1e6 / (secs / 60.0),
                share(writer),
                share(cost.decode),
                share(cost.total),
            );
            if r == Repr::AsRecorded {
                recorded = Some((groups, size));
            }
        }
        shown.push((name, rows_already_shown(&meta, &events)));
    }
    println!();
    println!(
        "| archive | bitmap rows drawn | of one colour | others already on the screen just before (what ScrBlt could copy) |"
    );
    println!("|---|---:|---:|---:|");
    for (name, (rows, plain, seen)) in shown {
        println!(
            "| {name} | {rows} | {:.0} % | {seen} ({:.1} % of the rows not of one colour) |",
            100.0 * plain as f64 / rows.max(1) as f64,
            100.0 * seen as f64 / (rows - plain).max(1) as f64
        );
    }
    println!(
        "\nCPU: this thread's, as a share of one core over the session's length \
         (writer: the desktop writer on the events as represented; decoding: \
         planar bitmaps with ironrdp-graphics)."
    );
}
