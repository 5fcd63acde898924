//! Frames of a recorded desktop at a fixed rate, for video export.
//!
//! Pure: a [`Renderer`] replays the recording and [`Frames`] samples its
//! framebuffer once every 1/fps of session time into a canvas of constant
//! size, which an encoder (ffmpeg, at the CLI edge) turns into a video.
//!
//! The canvas keeps the size of the first frame, rounded up to even sides
//! (yuv420p needs them; the extra column/row is black). When the desktop is
//! later resized, each frame is scaled nearest-neighbour to the largest size
//! with the same aspect ratio that fits the first frame's size, centred on
//! black (letterbox).
//!
//! Frames leave as planar YUV 4:2:0 (ffmpeg's `yuv420p`, BT.601 limited
//! range), converted here once per change, so the encoder neither converts
//! nor reads more than 1.5 bytes a pixel; an instant where nothing changed
//! is marked as such ([`Sample::update`] `None`), and the MP4 export does
//! not send it at all.

use crate::recording::{Events, ReadError, Reader, TimedEvent};

use super::frames::{FrameUpdate, frame_of};
use super::render::{RenderError, Renderer};
use super::seek::seek;

/// Rounds a side up to even.
pub fn even(side: u32) -> u32 {
    side + (side & 1)
}

/// Where a `src_w` x `src_h` frame lands inside a `box_w` x `box_h` area:
/// `(x, y, w, h)`, the largest same-aspect fit, centred.
pub fn letterbox(src_w: u32, src_h: u32, box_w: u32, box_h: u32) -> (u32, u32, u32, u32) {
    let (sw, sh, bw, bh) = (
        u64::from(src_w.max(1)),
        u64::from(src_h.max(1)),
        u64::from(box_w),
        u64::from(box_h),
    );
    // Scale by bw/sw unless that makes it too tall; then by bh/sh.
    let (w, h) = if bw * sh <= bh * sw {
        (bw, (sh * bw / sw).max(1))
    } else {
        ((sw * bh / sh).max(1), bh)
    };
    let (w, h) = (w.min(bw) as u32, h.min(bh) as u32);
    ((box_w - w) / 2, (box_h - h) / 2, w, h)
}

/// RGB (4 bytes a pixel, the fourth ignored) to YUV 4:2:0, BT.601 limited
/// range: a `width` x `height` luma plane, then U and V planes of half the
/// width and height, each chroma sample from the mean of a 2x2 block.
/// `width` and `height` are even.
pub fn rgb_to_yuv420(width: usize, height: usize, rgb: &[u8], yuv: &mut [u8]) {
    rgb_to_yuv420_rect(width, height, rgb, yuv, (0, 0, width, height));
}

/// [`rgb_to_yuv420`] of the part `(x0, y0, x1, y1)` (exclusive ends, all
/// even, inside the frame); the rest of `yuv` is left as it is.
fn rgb_to_yuv420_rect(
    width: usize,
    height: usize,
    rgb: &[u8],
    yuv: &mut [u8],
    (x0, y0, x1, y1): (usize, usize, usize, usize),
) {
    let (cw, ch) = (width / 2, height / 2);
    let (y_plane, chroma) = yuv.split_at_mut(width * height);
    let (u_plane, v_plane) = chroma.split_at_mut(cw * ch);
    let luma = |r: i32, g: i32, b: i32| (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8;
    // Plain index loops: iterator adapters are many times slower in the
    // unoptimised builds the tests run.
    for cy in y0 / 2..y1 / 2 {
        let top = &rgb[2 * cy * width * 4..][..width * 4];
        let bottom = &rgb[(2 * cy + 1) * width * 4..][..width * 4];
        let (y_top, y_bottom) = y_plane[2 * cy * width..][..2 * width].split_at_mut(width);
        let u_row = &mut u_plane[cy * cw..][..cw];
        let v_row = &mut v_plane[cy * cw..][..cw];
        for cx in x0 / 2..x1 / 2 {
            let i = cx * 8;
            let (r0, g0, b0) = (top[i] as i32, top[i + 1] as i32, top[i + 2] as i32);
            let (r1, g1, b1) = (top[i + 4] as i32, top[i + 5] as i32, top[i + 6] as i32);
            let (r2, g2, b2) = (bottom[i] as i32, bottom[i + 1] as i32, bottom[i + 2] as i32);
            let (r3, g3, b3) = (
                bottom[i + 4] as i32,
                bottom[i + 5] as i32,
                bottom[i + 6] as i32,
            );
            y_top[2 * cx] = luma(r0, g0, b0);
            y_top[2 * cx + 1] = luma(r1, g1, b1);
            y_bottom[2 * cx] = luma(r2, g2, b2);
            y_bottom[2 * cx + 1] = luma(r3, g3, b3);
            let (r, g, b) = (
                (r0 + r1 + r2 + r3 + 2) >> 2,
                (g0 + g1 + g2 + g3 + 2) >> 2,
                (b0 + b1 + b2 + b3 + 2) >> 2,
            );
            u_row[cx] = (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128) as u8;
            v_row[cx] = (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128) as u8;
        }
    }
}

/// A constant-size frame the encoder receives.
#[derive(Debug)]
pub struct Canvas {
    width: u32,
    height: u32,
    /// The first frame's size: the area later frames are fitted into.
    content_w: u32,
    content_h: u32,
    /// RGB, 4 bytes a pixel.
    buf: Vec<u8>,
    /// `buf` as YUV 4:2:0.
    yuv: Vec<u8>,
}

impl Canvas {
    /// A black canvas for frames of `content_w` x `content_h`.
    pub fn new(content_w: u32, content_h: u32) -> Canvas {
        let (width, height) = (even(content_w), even(content_h));
        Canvas {
            width,
            height,
            content_w,
            content_h,
            buf: vec![0; width as usize * height as usize * 4],
            yuv: vec![0; width as usize * height as usize * 3 / 2],
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The canvas as RGB, 4 bytes a pixel.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The canvas as YUV 4:2:0 (after [`Canvas::convert`]).
    pub fn yuv(&self) -> &[u8] {
        &self.yuv
    }

    /// Bring [`Canvas::yuv`] up to date with what was drawn.
    pub fn convert(&mut self) {
        rgb_to_yuv420(
            self.width as usize,
            self.height as usize,
            &self.buf,
            &mut self.yuv,
        );
    }

    /// [`Canvas::convert`] of the part `x0..x1` x `y0..y1` (even ends).
    fn convert_rect(&mut self, x0: u32, y0: u32, x1: u32, y1: u32) {
        if x0 < x1 && y0 < y1 {
            rgb_to_yuv420_rect(
                self.width as usize,
                self.height as usize,
                &self.buf,
                &mut self.yuv,
                (x0 as usize, y0 as usize, x1 as usize, y1 as usize),
            );
        }
    }

    /// Draw a `w` x `h` RGBA frame (4 bytes a pixel, row by row).
    pub fn draw(&mut self, w: u32, h: u32, px: &[u8]) {
        let stride = self.width as usize * 4;
        let (w_us, h_us) = (w as usize, h as usize);
        if px.len() < w_us * h_us * 4 {
            return;
        }
        if (w, h) == (self.content_w, self.content_h) {
            // The usual case: row copies; the padding stays black.
            for (y, row) in px.chunks_exact(w_us * 4).take(h_us).enumerate() {
                self.buf[y * stride..][..w_us * 4].copy_from_slice(row);
            }
            return;
        }
        self.buf.fill(0);
        let (ox, oy, dw, dh) = letterbox(w, h, self.content_w, self.content_h);
        let (ox, oy, dw, dh) = (ox as usize, oy as usize, dw as usize, dh as usize);
        let src_x: Vec<usize> = (0..dw).map(|x| x * w_us / dw * 4).collect();
        for y in 0..dh {
            let src_row = &px[(y * h_us / dh) * w_us * 4..][..w_us * 4];
            let dst_row = &mut self.buf[(oy + y) * stride + ox * 4..][..dw * 4];
            for (d, &sx) in dst_row.chunks_exact_mut(4).zip(&src_x) {
                d.copy_from_slice(&src_row[sx..sx + 4]);
            }
        }
    }
}

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoRange {
    pub fps: u32,
    /// First frame, µs from the session start.
    pub from_us: u64,
    /// No frame after this (µs); the session's last event also ends it.
    pub to_us: u64,
}

/// Time of frame `k` (no drift: computed from `k`, not summed).
pub fn frame_time(range: &VideoRange, k: u64) -> u64 {
    let offset = u128::from(k) * 1_000_000 / u128::from(range.fps.max(1));
    range
        .from_us
        .saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
}

/// One sampled instant: what changed on the desktop since the previous
/// one (`None`: nothing; the first is always a full frame).
#[derive(Debug)]
pub struct Sample {
    /// Session time, µs.
    pub t_us: u64,
    pub update: Option<FrameUpdate>,
}

/// The frames of a recording from `range.from_us` on, each the framebuffer
/// as it stands at its time (events at that very µs included, as for PNG
/// `--at`). Frames end at `range.to_us` or the last event, whichever is
/// first.
///
/// The events between two sampled instants are replayed together
/// ([`Renderer::apply_interval`]), so a bitmap update drawn over before
/// the next instant is not decoded.
pub struct Frames<E> {
    renderer: Renderer,
    events: E,
    pending: Option<TimedEvent>,
    exhausted: bool,
    last_t: u64,
    range: VideoRange,
    next: u64,
    interval: Vec<TimedEvent>,
    size: Option<(u32, u32)>,
}

impl<'r> Frames<Events<'r>> {
    /// Starts at the keyframe that [`super::seek::replay_start`] picks for
    /// `range.from_us`, not at the session start.
    pub fn new(reader: &'r mut Reader, range: VideoRange) -> Result<Self, RenderError> {
        let (renderer, start) = seek(reader, range.from_us)?;
        let events = reader.events_from(start)?;
        Ok(Frames::from_events(renderer, events, range))
    }
}

impl<E: Iterator<Item = Result<TimedEvent, ReadError>>> Frames<E> {
    /// Frames of `events` replayed onto `renderer`, both as [`seek`] and
    /// [`Reader::events_from`] give them (the events may be read elsewhere,
    /// e.g. on a thread of their own).
    pub fn from_events(renderer: Renderer, events: E, range: VideoRange) -> Self {
        Frames {
            renderer,
            events,
            pending: None,
            exhausted: false,
            last_t: 0,
            range,
            next: 0,
            interval: Vec::new(),
            size: None,
        }
    }

    /// The replay so far (decoded and skipped PDUs).
    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// The next sampled instant, or `None` after the last one.
    pub fn next_sample(&mut self) -> Result<Option<Sample>, RenderError> {
        let t = frame_time(&self.range, self.next);
        if t > self.range.to_us {
            return Ok(None);
        }
        self.interval.clear();
        loop {
            let ev = match self.pending.take() {
                Some(ev) => ev,
                None if self.exhausted => break,
                None => match self.events.next() {
                    Some(ev) => ev?,
                    None => {
                        self.exhausted = true;
                        break;
                    }
                },
            };
            if ev.t_us > t {
                self.pending = Some(ev);
                break;
            }
            self.last_t = ev.t_us;
            self.interval.push(ev);
        }
        self.renderer.apply_interval(&self.interval);
        if self.exhausted && t > self.last_t {
            return Ok(None);
        }
        self.next += 1;
        let size = (self.renderer.width(), self.renderer.height());
        let damage = self.renderer.take_damage();
        let update = frame_of(&self.renderer, damage, self.size != Some(size), t);
        self.size = Some(size);
        Ok(Some(Sample { t_us: t, update }))
    }
}

/// A [`Canvas`] kept up to date from [`Sample`]s, converting to YUV only
/// what changed: typing changes a few glyphs a frame, and converting the
/// whole desktop for them cost more than the encoder's work on the frame.
#[derive(Debug)]
pub struct VideoCanvas {
    canvas: Canvas,
    /// The desktop while its size differs from the canvas's (scaled).
    desk: Vec<u8>,
    desk_w: u32,
    desk_h: u32,
}

impl VideoCanvas {
    /// A canvas for a desktop first of `width` x `height`.
    pub fn new(width: u32, height: u32) -> VideoCanvas {
        VideoCanvas {
            canvas: Canvas::new(width, height),
            desk: Vec::new(),
            desk_w: 0,
            desk_h: 0,
        }
    }

    pub fn width(&self) -> u32 {
        self.canvas.width
    }

    pub fn height(&self) -> u32 {
        self.canvas.height
    }

    /// The frame as YUV 4:2:0 planes (`yuv420p`).
    pub fn yuv(&self) -> &[u8] {
        self.canvas.yuv()
    }

    /// Draw what changed; returns where the YUV frame changed.
    pub fn apply(&mut self, update: &FrameUpdate) -> Changed {
        let c = &mut self.canvas;
        if (update.width, update.height) != (c.content_w, c.content_h) {
            update.apply_to(&mut self.desk, &mut self.desk_w, &mut self.desk_h);
            c.draw(self.desk_w, self.desk_h, &self.desk);
            c.convert();
            return Changed::All;
        }
        let mut blocks = Vec::with_capacity(update.regions.len());
        // The desktop lies 1:1 at the canvas's top left.
        let stride = c.width as usize * 4;
        for region in &update.regions {
            let r = region.rect;
            let row_len = r.width as usize * 4;
            for (dy, row) in region.rgba.chunks_exact(row_len.max(1)).enumerate() {
                let at = (r.y as usize + dy) * stride + r.x as usize * 4;
                if let Some(dst) = c.buf.get_mut(at..at + row_len) {
                    dst.copy_from_slice(row);
                }
            }
            // Whole 2x2 blocks: chroma comes from all four pixels.
            let (x0, y0) = (r.x & !1, r.y & !1);
            let (x1, y1) = (even(r.x + r.width), even(r.y + r.height));
            let (x1, y1) = (x1.min(c.width), y1.min(c.height));
            c.convert_rect(x0, y0, x1, y1);
            if x0 < x1 && y0 < y1 {
                blocks.push(Blocks { x0, y0, x1, y1 });
            }
        }
        Changed::Blocks(blocks)
    }
}

/// Where a [`VideoCanvas`]'s YUV frame changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    All,
    Blocks(Vec<Blocks>),
}

/// Whole 2x2 blocks `x0..x1` x `y0..y1` of a frame (even edges, on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocks {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_round_up_to_even() {
        assert_eq!(even(1024), 1024);
        assert_eq!(even(1023), 1024);
        assert_eq!(even(1), 2);
    }

    #[test]
    fn letterbox_keeps_the_aspect_ratio_and_centres() {
        assert_eq!(letterbox(1024, 768, 1024, 768), (0, 0, 1024, 768));
        // Wider: bars top and bottom.
        assert_eq!(letterbox(1920, 1080, 1024, 768), (0, 96, 1024, 576));
        // Taller: bars left and right.
        assert_eq!(letterbox(768, 1024, 1024, 768), (224, 0, 576, 768));
        // Smaller: scaled up.
        assert_eq!(letterbox(512, 384, 1024, 768), (0, 0, 1024, 768));
        // Degenerate sizes still give a pixel, inside the box.
        assert_eq!(letterbox(1, 8000, 10, 10), (4, 0, 1, 10));
    }

    #[test]
    fn frame_times_do_not_drift() {
        let r = VideoRange {
            fps: 3,
            from_us: 5_000_000,
            to_us: u64::MAX,
        };
        assert_eq!(frame_time(&r, 0), 5_000_000);
        assert_eq!(frame_time(&r, 1), 5_333_333);
        assert_eq!(frame_time(&r, 3), 6_000_000);
        assert_eq!(frame_time(&r, 3000), 1_005_000_000);
    }

    #[test]
    fn colours_convert_like_bt601_limited_range() {
        // 2x2 of one colour: one chroma sample.
        let cases: [([u8; 3], [u8; 3]); 5] = [
            ([0, 0, 0], [16, 128, 128]),
            ([255, 255, 255], [235, 128, 128]),
            ([255, 0, 0], [82, 90, 240]),
            ([0, 255, 0], [144, 54, 34]),
            ([0, 0, 255], [41, 240, 110]),
        ];
        for (rgb, want) in cases {
            let px = [rgb[0], rgb[1], rgb[2], 0].repeat(4);
            let mut yuv = [0u8; 6];
            rgb_to_yuv420(2, 2, &px, &mut yuv);
            assert_eq!(
                yuv,
                [want[0], want[0], want[0], want[0], want[1], want[2]],
                "{rgb:?}"
            );
        }
        // Luma per pixel, chroma from the 2x2 mean; planes in order.
        let mut px = vec![0u8; 4 * 2 * 4];
        px[4..8].copy_from_slice(&[255, 255, 255, 0]);
        let mut yuv = vec![0u8; 4 * 2 * 3 / 2];
        rgb_to_yuv420(4, 2, &px, &mut yuv);
        assert_eq!(&yuv[..8], &[16, 235, 16, 16, 16, 16, 16, 16]);
        assert_eq!(&yuv[8..], &[128, 128, 128, 128]);
    }

    fn solid(w: u32, h: u32, rgba: [u8; 4]) -> Vec<u8> {
        rgba.repeat(w as usize * h as usize)
    }

    fn pixel(c: &Canvas, x: u32, y: u32) -> [u8; 4] {
        let i = ((y * c.width() + x) * 4) as usize;
        c.bytes()[i..i + 4].try_into().expect("4 bytes")
    }

    #[test]
    fn an_odd_desktop_is_padded_with_black() {
        let mut c = Canvas::new(5, 3);
        assert_eq!((c.width(), c.height()), (6, 4));
        c.draw(5, 3, &solid(5, 3, [9, 8, 7, 0]));
        assert_eq!(pixel(&c, 4, 2), [9, 8, 7, 0]);
        assert_eq!(pixel(&c, 5, 0), [0, 0, 0, 0]);
        assert_eq!(pixel(&c, 0, 3), [0, 0, 0, 0]);
    }

    #[test]
    fn a_resized_desktop_is_scaled_into_the_first_size() {
        let mut c = Canvas::new(8, 4);
        // Twice as wide: half height, centred (rows 1 and 2).
        let mut px = solid(16, 4, [200, 0, 0, 0]);
        // The right half of the source is green: it lands on the right half.
        for y in 0..4 {
            for x in 8..16 {
                px[(y * 16 + x) * 4..][..4].copy_from_slice(&[0, 200, 0, 0]);
            }
        }
        c.draw(16, 4, &px);
        assert_eq!(pixel(&c, 0, 0), [0, 0, 0, 0]);
        assert_eq!(pixel(&c, 7, 3), [0, 0, 0, 0]);
        assert_eq!(pixel(&c, 0, 1), [200, 0, 0, 0]);
        assert_eq!(pixel(&c, 3, 2), [200, 0, 0, 0]);
        assert_eq!(pixel(&c, 4, 1), [0, 200, 0, 0]);
        assert_eq!(pixel(&c, 7, 2), [0, 200, 0, 0]);
        // Back to the first size: drawn 1:1 again.
        c.draw(8, 4, &solid(8, 4, [1, 2, 3, 0]));
        assert_eq!(pixel(&c, 0, 0), [1, 2, 3, 0]);
        // A short buffer is ignored, not a panic.
        c.draw(8, 4, &[0; 7]);
        assert_eq!(pixel(&c, 0, 0), [1, 2, 3, 0]);
    }

    /// A frame as the encoder receives it.
    pub(crate) struct Frame {
        pub(crate) width: u32,
        pub(crate) height: u32,
        pub(crate) data: Vec<u8>,
        pub(crate) t_us: u64,
    }

    /// Every frame of `frames`, drawn as the MP4 export draws them.
    pub(crate) fn all_frames(frames: &mut Frames<Events<'_>>) -> Vec<Frame> {
        let mut canvas: Option<VideoCanvas> = None;
        let mut out = Vec::new();
        while let Some(s) = frames.next_sample().expect("sample") {
            if let Some(u) = &s.update {
                canvas
                    .get_or_insert_with(|| VideoCanvas::new(u.width, u.height))
                    .apply(u);
            }
            let c = canvas.as_ref().expect("a full first frame");
            out.push(Frame {
                width: c.width(),
                height: c.height(),
                data: c.yuv().to_vec(),
                t_us: s.t_us,
            });
        }
        out
    }

    /// Y of pixel (x, y) and the U, V of its 2x2 block in a yuv420p frame.
    fn yuv_at(f: &Frame, x: u32, y: u32) -> [u8; 3] {
        let (w, h) = (f.width as usize, f.height as usize);
        let (x, y) = (x as usize, y as usize);
        let c = (y / 2) * (w / 2) + x / 2;
        [
            f.data[y * w + x],
            f.data[w * h + c],
            f.data[w * h + w * h / 4 + c],
        ]
    }

    #[test]
    fn frames_sample_the_desktop_at_each_tick_and_keep_their_size() {
        use crate::recording::Event;
        use crate::replay::desktop::render::tests::{
            archive, demand_active, fast_path_bitmap, output,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let s = 1_000_000;
        let white = [255u8, 255, 255, 0].repeat(8);
        let path = archive(
            dir.path(),
            &[
                (0, Event::Keyframe),
                (s / 10, output(0, fast_path_bitmap(0, 0, &white))),
                (s, Event::Keyframe),
                // Exactly at a frame's time: in that frame.
                (3 * s / 2, output(0, fast_path_bitmap(0, 3, &white))),
                // The desktop doubles its width: later frames are letterboxed.
                (5 * s / 2 + 1, output(1003, demand_active(16, 4))),
                (
                    5 * s / 2 + 2,
                    output(0, fast_path_bitmap(0, 0, &[255, 255, 255, 0].repeat(16))),
                ),
                (3 * s + s / 5, Event::Keyframe),
            ],
        );
        let mut reader = Reader::open(&path).expect("open");
        let range = VideoRange {
            fps: 2,
            from_us: 0,
            to_us: u64::MAX,
        };
        let mut frames = Frames::new(&mut reader, range).expect("frames");
        let mut seen = Vec::new();
        for f in all_frames(&mut frames) {
            assert_eq!((f.width, f.height), (8, 4));
            assert_eq!(f.data.len(), 8 * 4 * 3 / 2);
            seen.push((
                f.t_us,
                yuv_at(&f, 0, 0)[0],
                yuv_at(&f, 0, 3)[0],
                yuv_at(&f, 0, 1)[0],
            ));
        }
        // Frames every 0.5 s up to the last event (3.2 s).
        let times: Vec<u64> = seen.iter().map(|f| f.0).collect();
        assert_eq!(times, [0, s / 2, s, 3 * s / 2, 2 * s, 5 * s / 2, 3 * s]);
        // Top row white from 0.1 s, bottom row from 1.5 s on.
        assert_eq!((seen[0].1, seen[0].2), (16, 16));
        assert_eq!((seen[1].1, seen[1].2), (235, 16));
        assert_eq!((seen[2].1, seen[2].2), (235, 16));
        assert_eq!((seen[3].1, seen[3].2), (235, 235));
        // After the resize: 16x4 fitted into 8x4 is 8x2 at rows 1 and 2,
        // black bars on rows 0 and 3; the top row of the new desktop is
        // white and lands on row 1.
        assert_eq!((seen[6].1, seen[6].2, seen[6].3), (16, 16, 235));
        assert_eq!(frames.renderer().stats.skipped, 0);
    }

    #[test]
    fn frames_start_at_from_and_stop_at_to() {
        use crate::recording::Event;
        use crate::replay::desktop::render::tests::{archive, fast_path_bitmap, output};
        let dir = tempfile::tempdir().expect("tempdir");
        let s = 1_000_000;
        let mut events = vec![(0, output(0, fast_path_bitmap(0, 0, &[255; 4])))];
        for k in 1..=10 {
            events.push((k * s, Event::Keyframe));
        }
        let path = archive(dir.path(), &events);
        let mut reader = Reader::open(&path).expect("open");
        let range = VideoRange {
            fps: 10,
            from_us: 4 * s,
            to_us: 6 * s,
        };
        let mut frames = Frames::new(&mut reader, range).expect("frames");
        let mut times = Vec::new();
        for f in all_frames(&mut frames) {
            times.push(f.t_us);
            // Seeked to the keyframe of 3 s: the pixel drawn at 0 is gone.
            assert_eq!(yuv_at(&f, 0, 0)[0], 16);
        }
        assert_eq!(times.len(), 21);
        assert_eq!(times.first(), Some(&(4 * s)));
        assert_eq!(times.last(), Some(&(6 * s)));
        // Past the end of the session: no frame.
        let range = VideoRange {
            fps: 10,
            from_us: 11 * s,
            to_us: u64::MAX,
        };
        let mut frames = Frames::new(&mut reader, range).expect("frames");
        assert!(frames.next_sample().expect("frame").is_none());
    }

    /// A PDU of 32 bpp bitmaps: each `(x, y, w, h, bgra)` filled with one
    /// colour, uncompressed or planar; fast-path output (channel 0) or, when
    /// `slow`, a slow-path Update PDU for the I/O channel (1003).
    fn bitmaps_pdu(
        rects: &[(u16, u16, u16, u16, [u8; 4])],
        planar: bool,
        slow: bool,
    ) -> (u32, Vec<u8>) {
        use ironrdp_graphics::rdp6::{BgrAChannels, BitmapStreamEncoder};
        use ironrdp_pdu::bitmap::{BitmapData, BitmapUpdateData, Compression};
        use ironrdp_pdu::geometry::InclusiveRectangle;
        let data: Vec<Vec<u8>> = rects
            .iter()
            .map(|&(_, _, w, h, c)| {
                let px = c.repeat(usize::from(w) * usize::from(h));
                if !planar {
                    return px;
                }
                let mut buf = vec![0; px.len() * 2 + 64];
                let n = BitmapStreamEncoder::new(usize::from(w), usize::from(h))
                    .encode_bitmap::<BgrAChannels>(&px, &mut buf, true)
                    .expect("planar");
                buf.truncate(n);
                buf
            })
            .collect();
        let update = BitmapUpdateData {
            rectangles: rects
                .iter()
                .zip(&data)
                .map(|(&(x, y, w, h, _), d)| BitmapData {
                    rectangle: InclusiveRectangle {
                        left: x,
                        top: y,
                        right: x + w - 1,
                        bottom: y + h - 1,
                    },
                    width: w,
                    height: h,
                    bits_per_pixel: 32,
                    compression_flags: if planar {
                        Compression::BITMAP_COMPRESSION | Compression::NO_BITMAP_COMPRESSION_HDR
                    } else {
                        Compression::empty()
                    },
                    compressed_data_header: None,
                    bitmap_data: d,
                })
                .collect(),
        };
        let body = ironrdp_core::encode_vec(&update).expect("encode");
        use crate::protocol::rdp::testing::{fast_path_update, slow_path_update};
        if slow {
            (1003, slow_path_update(&body))
        } else {
            (0, fast_path_update(&body))
        }
    }

    /// A seeded mix: full-screen redraws (as tiles, as one rectangle,
    /// planar or not), rectangles that several later ones cover only
    /// together, small ones, a rectangle the decoder refuses, damaged
    /// PDUs, and the desktop resized and back; as fast-path or slow-path
    /// output (xrdp sends its bitmaps slow-path).
    fn overdrawn_mix() -> Vec<(u64, crate::recording::Event)> {
        use crate::replay::desktop::render::tests::{demand_active, output};
        let mut seed = 0x5eed_u32;
        let mut rnd = |n: u32| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 8) % n
        };
        let mut events = vec![(0, output(1003, demand_active(16, 8)))];
        let mut t = 1;
        for k in 0..600u32 {
            t += u64::from(rnd(12_000));
            let c = [rnd(256) as u8, rnd(256) as u8, rnd(256) as u8, 0];
            let planar = rnd(3) == 0;
            let slow = rnd(2) == 0;
            let (channel, pdu) = match rnd(12) {
                0..=2 => bitmaps_pdu(&[(0, 0, 16, 8, c)], planar, slow),
                3 => bitmaps_pdu(
                    &[
                        (0, 0, 8, 8, c),
                        (8, 0, 8, 4, [c[1], c[2], c[0], 0]),
                        (8, 4, 8, 4, [c[2], c[0], c[1], 0]),
                    ],
                    planar,
                    slow,
                ),
                4 | 5 => {
                    // Two halves, in separate PDUs.
                    let (channel, top) = bitmaps_pdu(&[(0, 0, 16, 4, c)], planar, slow);
                    events.push((t, output(channel, top)));
                    t += 1;
                    bitmaps_pdu(&[(0, 4, 16, 4, [c[2], c[1], c[0], 0])], planar, !slow)
                }
                6..=8 => {
                    let (x, y) = (rnd(14) as u16, rnd(7) as u16);
                    let (w, h) = (
                        1 + rnd(16 - u32::from(x)) as u16,
                        1 + rnd(8 - u32::from(y)) as u16,
                    );
                    bitmaps_pdu(&[(x, y, w, h, c)], planar, slow)
                }
                // Partly outside the desktop: refused, so it covers nothing.
                9 => bitmaps_pdu(&[(10, 2, 8, 2, c)], false, slow),
                10 => {
                    let (channel, mut p) = bitmaps_pdu(&[(2, 2, 4, 4, c)], planar, slow);
                    let cut = p.len() - 1 - rnd(6) as usize;
                    p.truncate(cut);
                    (channel, p)
                }
                _ => match k % 40 {
                    13 => {
                        events.push((t, output(1003, demand_active(12, 6))));
                        t += 1;
                        bitmaps_pdu(&[(0, 0, 12, 6, c)], planar, slow)
                    }
                    29 => {
                        events.push((t, output(1003, demand_active(16, 8))));
                        t += 1;
                        bitmaps_pdu(&[(0, 0, 16, 8, c)], planar, slow)
                    }
                    _ => bitmaps_pdu(&[(1, 1, 3, 3, c)], planar, slow),
                },
            };
            events.push((t, output(channel, pdu)));
        }
        events
    }

    #[test]
    fn frames_with_overdrawn_updates_passed_over_equal_the_full_decode() {
        use crate::replay::desktop::render::tests::{archive, meta};
        let dir = tempfile::tempdir().expect("tempdir");
        let events = overdrawn_mix();
        let path = archive(dir.path(), &events);
        let range = VideoRange {
            fps: 10,
            from_us: 0,
            to_us: u64::MAX,
        };
        let mut reader = Reader::open(&path).expect("open");
        let mut frames = Frames::new(&mut reader, range).expect("frames");
        let fast = all_frames(&mut frames);
        let stats = frames.renderer().stats;
        assert!(stats.overdrawn > 100, "{stats:?}");
        assert!(stats.decoded > 100, "{stats:?}");

        // The straightforward way: every event decoded, every frame
        // converted whole.
        let mut full = Renderer::new(&meta()).expect("renderer");
        let mut pending = events.iter().peekable();
        let mut canvas: Option<Canvas> = None;
        assert!(fast.len() > 20, "{} frames", fast.len());
        for (k, f) in fast.iter().enumerate() {
            assert_eq!(f.t_us, frame_time(&range, k as u64));
            while let Some((_, ev)) = pending.next_if(|(t, _)| *t <= f.t_us) {
                full.apply(ev);
            }
            let (w, h) = (full.width(), full.height());
            let c = canvas.get_or_insert_with(|| Canvas::new(w, h));
            c.draw(w, h, full.pixels());
            c.convert();
            assert_eq!((f.width, f.height), (c.width(), c.height()));
            assert!(f.data == c.yuv(), "frame {k} at {} µs differs", f.t_us);
        }
        // Every PDU was decoded, refused or passed over.
        for (_, ev) in pending {
            full.apply(ev);
        }
        assert_eq!(
            stats.decoded + stats.skipped + stats.overdrawn,
            full.stats.decoded + full.stats.skipped
        );
    }

    #[test]
    fn the_desktop_at_a_time_passes_over_what_is_drawn_over_and_equals_the_full_decode() {
        use crate::replay::desktop::render::tests::{archive, meta};
        use crate::replay::desktop::seek::render_at;
        let dir = tempfile::tempdir().expect("tempdir");
        let events = overdrawn_mix();
        let path = archive(dir.path(), &events);
        let end = events.last().map_or(0, |(t, _)| *t);
        for at in [end / 3, end / 2, end, u64::MAX] {
            let mut reader = Reader::open(&path).expect("open");
            let fast = render_at(&mut reader, at).expect("render");
            let mut full = Renderer::new(&meta()).expect("renderer");
            for (_, ev) in events.iter().take_while(|(t, _)| *t <= at) {
                full.apply(ev);
            }
            assert_eq!((fast.width(), fast.height()), (full.width(), full.height()));
            assert!(
                fast.pixels() == full.pixels(),
                "the desktop at {at} µs differs"
            );
            assert!(fast.stats.overdrawn > 10, "{:?}", fast.stats);
        }
    }
}
