//! The frame stream a web player draws a recorded desktop from: what changed
//! on the desktop (rectangles of RGBA pixels) at sampled or event times, with
//! a full frame (a keyframe a player can start from) at the start, after
//! every resize and at least once every keyframe interval.
//!
//! Seeking is opening a stream at another time: [`FrameStream::new`] starts
//! the replay at the keyframe the archive's index names for `from_us`
//! ([`super::seek::seek`]), not at the session start, and the first frame
//! is a full one showing the desktop at `from_us` — the same pixels
//! [`super::seek::render_at`] gives.
//!
//! The pointer: recorded client input carries where the person moved and
//! clicked the mouse; the stream keeps those positions
//! ([`FrameStream::take_pointer_moves`]) for a player to draw over the
//! desktop (the desktop pixels themselves never contain the pointer).
//!
//! Pure over the archive reader: no I/O besides reading it; encoding the
//! regions for the wire is the web console's (`web::desktop`).

use crate::protocol::rdp::input::{decode_fast_path, decode_slow_path};
use crate::recording::{Event, Events, Reader, TimedEvent};

use super::region::{Damage, Rect};
use super::render::{Batch, RenderError, Renderer};
use super::seek::{SeekIndex, seek, seek_indexed};

/// When frames are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Every 1/fps of session time (a frame only when something changed or
    /// a keyframe is due).
    Sampled { fps: u32 },
    /// After every recorded event that changed the desktop.
    Events,
}

/// What to stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    pub pace: Pace,
    /// A full frame at least this often (session time, µs); zero: only the
    /// first one and those after resizes.
    pub keyframe_interval_us: u64,
    /// The first frame (full) shows the desktop at this time, µs.
    pub from_us: u64,
    /// No frame after this (µs); the session's last event also ends it.
    pub to_us: u64,
}

/// Pixels of one rectangle of the desktop: RGBA, row by row, opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub rect: Rect,
    pub rgba: Vec<u8>,
}

/// One frame of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameUpdate {
    /// Session time, µs.
    pub t_us: u64,
    /// The desktop size (a new size always comes with a full frame).
    pub width: u32,
    pub height: u32,
    /// A keyframe: one region covering the whole desktop.
    pub full: bool,
    pub regions: Vec<Region>,
}

impl FrameUpdate {
    /// Draw this frame onto `canvas`, a `width` x `height` RGBA buffer of
    /// the previous frames (a full frame resets it to its own size).
    pub fn apply_to(&self, canvas: &mut Vec<u8>, width: &mut u32, height: &mut u32) {
        if self.full {
            *width = self.width;
            *height = self.height;
            canvas.clear();
            canvas.resize(self.width as usize * self.height as usize * 4, 0);
        }
        let stride = *width as usize * 4;
        for region in &self.regions {
            let Rect { x, y, width: w, .. } = region.rect;
            let row_len = w as usize * 4;
            for (dy, row) in region.rgba.chunks_exact(row_len.max(1)).enumerate() {
                let at = (y as usize + dy) * stride + x as usize * 4;
                if let Some(dst) = canvas.get_mut(at..at + row_len) {
                    dst.copy_from_slice(row);
                }
            }
        }
    }
}

/// Where the person put the pointer, at a time (desktop pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointerMove {
    pub t_us: u64,
    pub x: u16,
    pub y: u16,
}

/// The last absolute pointer position in a recorded client input PDU.
pub fn pointer_of(event: &Event, fastpath_channel: u32) -> Option<(u16, u16)> {
    let Event::Input { channel, data } = event else {
        return None;
    };
    // A panic in a third-party decoder on a hostile PDU is no position.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if *channel == fastpath_channel {
            decode_fast_path(data)
        } else {
            decode_slow_path(data)
        }
    }))
    .ok()?
    .pointer
}

/// The frame at `t_us` showing what `damage` covers of `renderer`'s
/// desktop: whole when `full`, when the decoder could not say what changed,
/// or when most of the desktop changed; `None` when nothing did.
pub fn frame_of(renderer: &Renderer, damage: Damage, full: bool, t_us: u64) -> Option<FrameUpdate> {
    let (w, h) = (renderer.width(), renderer.height());
    // Past half the desktop a full frame costs about the same.
    let full =
        full || damage == Damage::Full || damage.area(w, h) * 2 > u64::from(w) * u64::from(h);
    let rects = match damage {
        _ if full => vec![Rect {
            x: 0,
            y: 0,
            width: w,
            height: h,
        }],
        Damage::Rects(rects) => rects,
        Damage::None | Damage::Full => return None,
    };
    let regions = rects
        .into_iter()
        .map(|rect| Region {
            rgba: pixels_of(renderer, rect),
            rect,
        })
        .collect();
    Some(FrameUpdate {
        t_us,
        width: w,
        height: h,
        full,
        regions,
    })
}

/// RGBA of `rect` (inside the desktop), opaque.
fn pixels_of(renderer: &Renderer, rect: Rect) -> Vec<u8> {
    let stride = renderer.width() as usize * 4;
    let px = renderer.pixels();
    let row_len = rect.width as usize * 4;
    let mut out = Vec::with_capacity(row_len * rect.height as usize);
    for y in rect.y..rect.y + rect.height {
        let at = y as usize * stride + rect.x as usize * 4;
        if let Some(row) = px.get(at..at + row_len) {
            out.extend_from_slice(row);
        }
    }
    for p in out.chunks_exact_mut(4) {
        p[3] = 0xff;
    }
    out
}

/// The frames of a recording from `from_us` on; see the module doc.
pub struct FrameStream<'r> {
    renderer: Renderer,
    events: Events<'r>,
    pending: Option<TimedEvent>,
    exhausted: bool,
    last_t: u64,
    options: StreamOptions,
    /// Index of the next sample (sampled pace); 0 is the first frame.
    sample: u64,
    /// When the last full frame was sent; `None` before the first.
    last_full: Option<u64>,
    size: (u32, u32),
    done: bool,
    fastpath_channel: u32,
    pointer: Option<(u16, u16)>,
    pointer_moves: Vec<PointerMove>,
}

impl<'r> FrameStream<'r> {
    /// A stream whose first frame shows the desktop at `options.from_us`,
    /// replayed from the keyframe before it.
    pub fn new(
        reader: &'r mut Reader,
        options: StreamOptions,
    ) -> Result<FrameStream<'r>, RenderError> {
        FrameStream::start(reader, options, None)
    }

    /// [`FrameStream::new`] seeking with the recording's [`SeekIndex`].
    pub fn with_index(
        reader: &'r mut Reader,
        options: StreamOptions,
        index: &SeekIndex,
    ) -> Result<FrameStream<'r>, RenderError> {
        FrameStream::start(reader, options, Some(index))
    }

    fn start(
        reader: &'r mut Reader,
        options: StreamOptions,
        index: Option<&SeekIndex>,
    ) -> Result<FrameStream<'r>, RenderError> {
        let (renderer, start, pointer) = match index {
            Some(index) => {
                let (renderer, start) = seek_indexed(reader, index, options.from_us)?;
                (renderer, start, index.pointer_at(start))
            }
            None => {
                let (renderer, start) = seek(reader, options.from_us)?;
                (renderer, start, None)
            }
        };
        let size = (renderer.width(), renderer.height());
        let fastpath_channel = reader.meta().rdp.as_ref().map_or(0, |i| i.fastpath_channel);
        let events = reader.events_from(start)?;
        Ok(FrameStream {
            renderer,
            events,
            pending: None,
            exhausted: false,
            last_t: 0,
            options,
            sample: 0,
            last_full: None,
            size,
            done: false,
            fastpath_channel,
            pointer,
            pointer_moves: Vec::new(),
        })
    }

    /// The replay so far (decoded and skipped PDUs).
    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// Where the pointer went since the last call, up to the last frame
    /// returned (the first call: its position at `from_us`, if known).
    pub fn take_pointer_moves(&mut self) -> Vec<PointerMove> {
        std::mem::take(&mut self.pointer_moves)
    }

    /// The next recorded event, if there is one.
    fn next_event(&mut self) -> Result<Option<TimedEvent>, RenderError> {
        if let Some(ev) = self.pending.take() {
            return Ok(Some(ev));
        }
        if self.exhausted {
            return Ok(None);
        }
        match self.events.next() {
            Some(ev) => Ok(Some(ev?)),
            None => {
                self.exhausted = true;
                Ok(None)
            }
        }
    }

    /// Apply every event up to and including `t` (in a [`Batch`]: only
    /// the desktop at `t` is shown).
    fn replay_until(&mut self, t: u64) -> Result<(), RenderError> {
        let mut batch = Batch::default();
        loop {
            let ev = match self.next_event() {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    batch.apply(&mut self.renderer);
                    return Err(e);
                }
            };
            if ev.t_us > t {
                self.pending = Some(ev);
                break;
            }
            self.last_t = ev.t_us;
            if let Some(p) = pointer_of(&ev.event, self.fastpath_channel) {
                if self.pointer != Some(p) {
                    self.pointer_moves.push(PointerMove {
                        t_us: ev.t_us,
                        x: p.0,
                        y: p.1,
                    });
                }
                self.pointer = Some(p);
            }
            batch.push(&mut self.renderer, ev);
        }
        batch.apply(&mut self.renderer);
        Ok(())
    }

    /// The frame at `t` with what changed since the last one; `None` when
    /// nothing changed and no keyframe is due (`keyframes`: whether one
    /// can be).
    fn frame_at(&mut self, t: u64, keyframes: bool) -> Option<FrameUpdate> {
        let size = (self.renderer.width(), self.renderer.height());
        let damage = self.renderer.take_damage();
        let keyframe_due = match self.last_full {
            None => true,
            Some(last) => {
                keyframes
                    && self.options.keyframe_interval_us > 0
                    && t.saturating_sub(last) >= self.options.keyframe_interval_us
            }
        };
        let frame = frame_of(&self.renderer, damage, keyframe_due || size != self.size, t);
        self.size = size;
        if frame.as_ref().is_some_and(|f| f.full) {
            self.last_full = Some(t);
        }
        frame
    }

    /// The next frame, or `None` after the last one.
    pub fn next_frame(&mut self) -> Result<Option<FrameUpdate>, RenderError> {
        if self.done {
            return Ok(None);
        }
        let from = self.options.from_us;
        if self.last_full.is_none() {
            // The first frame: the desktop at `from`, whole, and the
            // pointer where it was then.
            self.replay_until(from)?;
            self.pointer_moves.clear();
            if let Some((x, y)) = self.pointer {
                self.pointer_moves.push(PointerMove { t_us: from, x, y });
            }
            self.sample = 1;
            if from > self.options.to_us || (self.exhausted && from > self.last_t) {
                self.done = true;
                return Ok(None);
            }
            return Ok(self.frame_at(from, true));
        }
        loop {
            let t = match self.options.pace {
                Pace::Sampled { fps } => {
                    let offset = u128::from(self.sample) * 1_000_000 / u128::from(fps.max(1));
                    self.sample += 1;
                    from.saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
                }
                Pace::Events => match self.next_event()? {
                    Some(ev) => {
                        let t = ev.t_us;
                        self.pending = Some(ev);
                        t
                    }
                    None => {
                        self.done = true;
                        return Ok(None);
                    }
                },
            };
            if t > self.options.to_us {
                self.done = true;
                return Ok(None);
            }
            self.replay_until(t)?;
            if self.exhausted && t > self.last_t {
                // Past the last event: what it changed, if not shown yet.
                self.done = true;
                return Ok(self.frame_at(t, false));
            }
            if let Some(frame) = self.frame_at(t, true) {
                return Ok(Some(frame));
            }
        }
    }
}

impl Iterator for FrameStream<'_> {
    type Item = Result<FrameUpdate, RenderError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::Event;
    use crate::replay::desktop::render::tests::{archive, demand_active, fast_path_bitmap, output};
    use crate::replay::desktop::seek::render_at;

    const S: u64 = 1_000_000;

    /// A whole 8x4 desktop of one colour, as a target redraws it after a
    /// keyframe request: one row per PDU, 1 µs apart from `t`.
    fn redraw(t: u64, rgb: [u8; 3]) -> Vec<(u64, Event)> {
        let row = [rgb[2], rgb[1], rgb[0], 0].repeat(8);
        (0..4)
            .map(|y| (t + y, output(0, fast_path_bitmap(0, y as u16, &row))))
            .collect()
    }

    fn dot(t: u64, x: u16, y: u16, rgb: [u8; 3]) -> (u64, Event) {
        (
            t,
            output(0, fast_path_bitmap(x, y, &[rgb[2], rgb[1], rgb[0], 0])),
        )
    }

    /// A session with keyframes every second, each followed by a redraw, and
    /// single pixels drawn in between; the desktop grows at 2.5 s.
    fn session(dir: &std::path::Path) -> std::path::PathBuf {
        let mut events = vec![(0, output(1003, demand_active(8, 4)))];
        events.extend(redraw(1, [10, 10, 10]));
        events.push(dot(S / 2, 3, 1, [200, 0, 0]));
        events.push(dot(S / 2 + 10, 4, 1, [0, 200, 0]));
        events.push((S, Event::Keyframe));
        events.extend(redraw(S + 100, [20, 20, 20]));
        events.push(dot(S + S / 2, 7, 3, [0, 0, 200]));
        events.push((2 * S, Event::Keyframe));
        events.extend(redraw(2 * S + 100, [30, 30, 30]));
        events.push((2 * S + S / 2, output(1003, demand_active(12, 4))));
        events.push(dot(2 * S + S / 2 + 1, 11, 0, [1, 2, 3]));
        events.push((3 * S, Event::Keyframe));
        events.extend(redraw(3 * S + 100, [40, 40, 40]));
        events.push(dot(3 * S + S / 2, 0, 0, [9, 9, 9]));
        archive(dir, &events)
    }

    fn options(pace: Pace, from_us: u64) -> StreamOptions {
        StreamOptions {
            pace,
            keyframe_interval_us: 0,
            from_us,
            to_us: u64::MAX,
        }
    }

    /// Every frame of the stream, drawn in order onto a player's canvas,
    /// shows what `render_at` gives for its time.
    fn check_against_render_at(path: &std::path::Path, opts: StreamOptions) -> Vec<FrameUpdate> {
        let mut reader = crate::recording::Reader::open(path).expect("open");
        let frames: Vec<FrameUpdate> = FrameStream::new(&mut reader, opts)
            .expect("stream")
            .collect::<Result<_, _>>()
            .expect("frames");
        // Seeking with the recording's index gives the same frames.
        let index = SeekIndex::build(&mut crate::recording::Reader::open(path).expect("open"))
            .expect("index");
        let mut reader = crate::recording::Reader::open(path).expect("open");
        let indexed: Vec<FrameUpdate> = FrameStream::with_index(&mut reader, opts, &index)
            .expect("stream")
            .collect::<Result<_, _>>()
            .expect("frames");
        assert!(indexed == frames, "seeking with the index differs");
        let mut check = crate::recording::Reader::open(path).expect("open");
        let (mut canvas, mut w, mut h) = (Vec::new(), 0, 0);
        for f in &frames {
            f.apply_to(&mut canvas, &mut w, &mut h);
            let r = render_at(&mut check, f.t_us).expect("render");
            assert_eq!((w, h), (r.width(), r.height()), "at {}", f.t_us);
            assert!(canvas == r.rgba(), "pixels differ at {} µs", f.t_us);
        }
        frames
    }

    #[test]
    fn event_frames_carry_only_what_changed_and_match_render_at() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = session(dir.path());
        let frames = check_against_render_at(&path, options(Pace::Events, 0));
        // The first frame is whole; a single pixel is a 1x1 region.
        assert!(frames[0].full);
        let red = frames
            .iter()
            .find(|f| f.t_us == S / 2)
            .expect("a frame at 0.5 s");
        assert!(!red.full);
        assert_eq!(
            red.regions,
            vec![Region {
                rect: Rect {
                    x: 3,
                    y: 1,
                    width: 1,
                    height: 1
                },
                rgba: vec![200, 0, 0, 255],
            }]
        );
        // The resize comes as a full frame of the new size.
        let resized = frames
            .iter()
            .find(|f| f.t_us == 2 * S + S / 2)
            .expect("a frame at the resize");
        assert!(resized.full);
        assert_eq!((resized.width, resized.height), (12, 4));
        // Keyframe marks and redraws of a row or less are not full frames.
        assert_eq!(frames.iter().filter(|f| f.full).count(), 2);
        assert_eq!(frames.last().map(|f| f.t_us), Some(3 * S + S / 2));
    }

    #[test]
    fn sampled_frames_match_render_at_and_keyframes_come_on_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A dot every half second, from 0.1 s to 3.1 s.
        let dots: Vec<(u64, Event)> = (0..7u16)
            .map(|k| dot(S / 10 + u64::from(k) * S / 2, k, 1, [100, 100, 100]))
            .collect();
        let path = archive(dir.path(), &dots);
        let mut opts = options(Pace::Sampled { fps: 4 }, 0);
        opts.keyframe_interval_us = S;
        let frames = check_against_render_at(&path, opts);
        let times: Vec<u64> = frames.iter().map(|f| f.t_us).collect();
        // No frame where nothing changed (0.5 s, 1.5 s, …) unless a
        // keyframe is due; none after the last event.
        assert_eq!(
            times,
            [
                0,
                S / 4,
                3 * S / 4,
                S,
                5 * S / 4,
                7 * S / 4,
                2 * S,
                9 * S / 4,
                11 * S / 4,
                3 * S,
                13 * S / 4
            ]
        );
        let full: Vec<u64> = frames.iter().filter(|f| f.full).map(|f| f.t_us).collect();
        assert_eq!(full, [0, S, 2 * S, 3 * S]);
        assert!(
            frames
                .iter()
                .filter(|f| !f.full)
                .all(|f| f.regions.len() == 1 && f.regions[0].rgba == [100, 100, 100, 255])
        );
    }

    #[test]
    fn a_stream_opened_later_starts_at_the_keyframe_and_shows_that_moment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = session(dir.path());
        let frames = check_against_render_at(&path, options(Pace::Events, 3 * S + S / 4));
        let first = &frames[0];
        assert!(first.full);
        assert_eq!(first.t_us, 3 * S + S / 4);
        assert_eq!((first.width, first.height), (12, 4));
        // Then only the dot of 3.5 s.
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].regions.len(), 1);
        // Past the end: nothing; to before from: nothing.
        let mut reader = crate::recording::Reader::open(&path).expect("open");
        let mut late =
            FrameStream::new(&mut reader, options(Pace::Events, 10 * S)).expect("stream");
        assert!(late.next_frame().expect("frame").is_none());
        let mut opts = options(Pace::Sampled { fps: 10 }, 2 * S);
        opts.to_us = S;
        let mut none = FrameStream::new(&mut reader, opts).expect("stream");
        assert!(none.next_frame().expect("frame").is_none());
    }

    #[test]
    fn damage_merges_touching_rectangles() {
        let mut d = Damage::None;
        let r = |x, y, width, height| Rect {
            x,
            y,
            width,
            height,
        };
        d.add(r(0, 0, 2, 2));
        d.add(r(2, 0, 2, 2));
        d.add(r(10, 10, 1, 1));
        assert_eq!(d, Damage::Rects(vec![r(0, 0, 4, 2), r(10, 10, 1, 1)]));
        assert_eq!(d.area(100, 100), 9);
    }
}
