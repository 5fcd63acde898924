//! Replaying a recorded RDP session into a framebuffer, for PNG, MP4 and
//! the frame stream.
//!
//! Pure: recorded server output PDUs in, RGBA pixels out, with the regions
//! each PDU drew ([`Renderer::take_damage`]). Fast-path PDUs (channel 0)
//! go through ironrdp-session's fast-path processor, which
//! decodes bitmap updates (raw, interleaved RLE, planar) with
//! ironrdp-graphics. Anything it cannot decode is skipped and counted.
//!
//! Seeking starts at a keyframe (see [`replay_start`]) instead of the
//! session start; a Server Demand Active with another desktop size
//! re-creates the framebuffer at that size.

use ironrdp_core::{ReadCursor, WriteBuf, decode};
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};
use ironrdp_pdu::slow_path;
use ironrdp_session::fast_path::{Processor, ProcessorBuilder, UpdateKind};
use ironrdp_session::image::DecodedImage;

use super::frames::pointer_of;
use crate::protocol::rdp::pdu::{MAX_SIDE, demand_active_size};
use crate::recording::{Event, RdpInfo, ReadError, Reader, SessionMeta, TimedEvent};

/// Why a recording cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("this recording has no desktop size (not an RDP recording?)")]
    NoDesktop,
    #[error("implausible desktop size {width}x{height}")]
    ImplausibleSize { width: u32, height: u32 },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("encoding PNG: {0}")]
    Png(#[from] png::EncodingError),
    #[error("writing PNG: {0}")]
    Io(#[from] std::io::Error),
}

/// What the replay did, for the person exporting.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RenderStats {
    pub decoded: u64,
    pub skipped: u64,
    /// Bitmap updates not decoded because later ones of the same interval
    /// drew over all of them ([`Renderer::apply_interval`]).
    pub overdrawn: u64,
}

pub struct Renderer {
    image: DecodedImage,
    processor: Processor,
    out: WriteBuf,
    pub stats: RenderStats,
    /// Bumped whenever the framebuffer may have changed, so a video can
    /// reuse the previous frame through idle stretches.
    changes: u64,
    /// The channel fast-path PDUs are recorded under.
    fastpath_channel: u32,
    /// What changed since [`Renderer::take_damage`] last looked.
    damage: Damage,
}

/// A rectangle of the desktop, in pixels (exclusive right and bottom).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    /// The smallest rectangle holding both.
    pub fn union(self, o: Rect) -> Rect {
        let (x, y) = (self.x.min(o.x), self.y.min(o.y));
        let right = (self.x + self.width).max(o.x + o.width);
        let bottom = (self.y + self.height).max(o.y + o.height);
        Rect {
            x,
            y,
            width: right - x,
            height: bottom - y,
        }
    }

    /// Whether the two share a pixel or touch edge to edge.
    fn touches(self, o: Rect) -> bool {
        self.x <= o.x + o.width
            && o.x <= self.x + self.width
            && self.y <= o.y + o.height
            && o.y <= self.y + self.height
    }

    fn area(self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    fn right(self) -> u32 {
        self.x + self.width
    }

    fn bottom(self) -> u32 {
        self.y + self.height
    }

    /// Whether every pixel of `o` is in `self`.
    fn contains(self, o: Rect) -> bool {
        self.x <= o.x && self.y <= o.y && o.right() <= self.right() && o.bottom() <= self.bottom()
    }

    /// What is left of `self` outside `cut`: up to four rectangles.
    fn minus(self, cut: Rect, out: &mut Vec<Rect>) {
        let (l, t) = (self.x.max(cut.x), self.y.max(cut.y));
        let (r, b) = (
            self.right().min(cut.right()),
            self.bottom().min(cut.bottom()),
        );
        if l >= r || t >= b {
            out.push(self);
            return;
        }
        let mut piece = |x: u32, y: u32, right: u32, bottom: u32| {
            if x < right && y < bottom {
                out.push(Rect {
                    x,
                    y,
                    width: right - x,
                    height: bottom - y,
                });
            }
        };
        // Above and below the cut across the whole width, then its sides.
        piece(self.x, self.y, self.right(), t);
        piece(self.x, b, self.right(), self.bottom());
        piece(self.x, t, l, b);
        piece(r, t, self.right(), b);
    }
}

/// The rectangles later updates of an interval draw, to tell whether an
/// earlier one is wholly drawn over.
#[derive(Default)]
struct Cover {
    /// The same tiles are redrawn again and again: most checks are an
    /// exact match.
    exact: std::collections::HashSet<Rect>,
    all: Vec<Rect>,
}

/// Past this many leftover pieces a rectangle counts as not covered (it
/// is then decoded, which is always right).
const MAX_COVER_PIECES: usize = 64;

impl Cover {
    fn add(&mut self, r: Rect) {
        if self.exact.insert(r) {
            self.all.push(r);
        }
    }

    fn clear(&mut self) {
        self.exact.clear();
        self.all.clear();
    }

    fn covers(&self, r: Rect) -> bool {
        if self.exact.contains(&r) || self.all.iter().any(|c| c.contains(r)) {
            return true;
        }
        let (mut rest, mut next) = (vec![r], Vec::new());
        for c in &self.all {
            next.clear();
            for piece in &rest {
                piece.minus(*c, &mut next);
            }
            std::mem::swap(&mut rest, &mut next);
            if rest.is_empty() {
                return true;
            }
            if rest.len() > MAX_COVER_PIECES {
                return false;
            }
        }
        false
    }
}

/// What a fast-path PDU draws, read from its headers without decoding a
/// bitmap: `Some` only for a PDU made of whole (unfragmented, not
/// bulk-compressed) bitmap updates, with the rectangles the decoder draws
/// (those inside a `width` x `height` desktop whose declared bitmap size
/// matches, as ironrdp-session checks before drawing).
fn bitmap_rects(data: &[u8], width: u16, height: u16) -> Option<(Vec<Rect>, bool)> {
    use ironrdp_pdu::fast_path::{
        FastPathHeader, FastPathUpdate, FastPathUpdatePdu, Fragmentation, UpdateCode,
    };
    let mut src = ReadCursor::new(data);
    decode_cursor_any::<FastPathHeader>(&mut src)?;
    let (mut rects, mut all_drawn) = (Vec::new(), true);
    while !src.is_empty() {
        let pdu = decode_cursor_any::<FastPathUpdatePdu<'_>>(&mut src)?;
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
        for b in &update.rectangles {
            let r = &b.rectangle;
            let drawn = r.left <= r.right
                && r.top <= r.bottom
                && r.right < width
                && r.bottom < height
                && b.width > r.right - r.left
                && b.height == r.bottom - r.top + 1
                && decodable_depth(b);
            if !drawn {
                all_drawn = false;
                continue;
            }
            rects.push(Rect {
                x: u32::from(r.left),
                y: u32::from(r.top),
                width: u32::from(r.right - r.left) + 1,
                height: u32::from(r.bottom - r.top) + 1,
            });
        }
    }
    Some((rects, all_drawn))
}

/// Whether the decoder draws a bitmap of this depth and, uncompressed,
/// this many bytes (it ignores others); compressed data is checked only
/// when decoded.
fn decodable_depth(b: &ironrdp_pdu::bitmap::BitmapData<'_>) -> bool {
    use ironrdp_pdu::bitmap::Compression;
    let bytes = match b.bits_per_pixel {
        8 => 1,
        15 | 16 => 2,
        24 => 3,
        32 => 4,
        _ => return false,
    };
    if b.compression_flags
        .contains(Compression::BITMAP_COMPRESSION)
    {
        return true;
    }
    let row = usize::from(b.width) * bytes;
    let padded = (row + 3) & !3;
    let rows = usize::from(b.height);
    if padded == row {
        b.bitmap_data.len() == row * rows
    } else {
        b.bitmap_data.len() / padded >= rows
    }
}

/// [`ironrdp_core::decode_cursor`] with the error dropped.
fn decode_cursor_any<'a, T: ironrdp_core::Decode<'a>>(src: &mut ReadCursor<'a>) -> Option<T> {
    ironrdp_core::decode_cursor::<T>(src).ok()
}

/// What changed on the desktop since the last look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    None,
    /// These rectangles (inside the desktop, not overlapping each other).
    Rects(Vec<Rect>),
    /// Everything (a new desktop, or a change the decoder did not locate).
    Full,
}

/// Past this many separate rectangles the damage is kept as their union.
const MAX_DAMAGE_RECTS: usize = 32;

impl Damage {
    /// Count `r` (inside the desktop) as changed.
    pub fn add(&mut self, r: Rect) {
        match self {
            Damage::Full => {}
            Damage::None => *self = Damage::Rects(vec![r]),
            Damage::Rects(rects) => {
                // Merge with whatever it touches, until nothing does.
                let mut r = r;
                while let Some(i) = rects.iter().position(|o| o.touches(r)) {
                    r = r.union(rects.swap_remove(i));
                }
                rects.push(r);
                if rects.len() > MAX_DAMAGE_RECTS
                    && let Some(all) = rects.iter().copied().reduce(Rect::union)
                {
                    *rects = vec![all];
                }
            }
        }
    }

    /// Pixels covered (a full desktop of `w` x `h` for [`Damage::Full`]).
    pub fn area(&self, w: u32, h: u32) -> u64 {
        match self {
            Damage::None => 0,
            Damage::Rects(rects) => rects.iter().map(|r| r.area()).sum(),
            Damage::Full => u64::from(w) * u64::from(h),
        }
    }
}

/// The desktop size in the header, checked.
fn header_size(meta: &SessionMeta) -> Result<(u16, u16), RenderError> {
    let Some(d) = meta.desktop.as_ref() else {
        return Err(RenderError::NoDesktop);
    };
    if d.width == 0 || d.height == 0 || d.width > MAX_SIDE || d.height > MAX_SIDE {
        return Err(RenderError::ImplausibleSize {
            width: d.width,
            height: d.height,
        });
    }
    Ok((d.width as u16, d.height as u16))
}

impl Renderer {
    /// A black desktop of the size in the recording's header.
    pub fn new(meta: &SessionMeta) -> Result<Renderer, RenderError> {
        let (w, h) = header_size(meta)?;
        let info = meta.rdp.clone().unwrap_or_default();
        Ok(Renderer::with_size(&info, w, h))
    }

    /// A black desktop of `width` x `height` (a size already checked).
    fn with_size(info: &RdpInfo, width: u16, height: u16) -> Renderer {
        let processor = ProcessorBuilder {
            io_channel_id: info.io_channel,
            user_channel_id: info.user_channel,
            share_id: info.share_id.unwrap_or(0),
            enable_server_pointer: false,
            pointer_software_rendering: false,
        }
        .build();
        Renderer {
            image: DecodedImage::new(PixelFormat::RgbA32, width, height),
            processor,
            out: WriteBuf::new(),
            stats: RenderStats::default(),
            changes: 0,
            fastpath_channel: info.fastpath_channel,
            damage: Damage::None,
        }
    }

    pub fn width(&self) -> u32 {
        u32::from(self.image.width())
    }

    pub fn height(&self) -> u32 {
        u32::from(self.image.height())
    }

    /// Changes so far; equal counts mean the same pixels.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Apply one recorded event (only server output matters).
    pub fn apply(&mut self, ev: &Event) {
        let Event::Output { channel, data, .. } = ev else {
            return;
        };
        if *channel != self.fastpath_channel {
            self.apply_slow_path(data);
            return;
        }
        self.out.clear();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.processor
                .process(&mut self.image, data, &mut self.out, &mut None)
        }));
        match r {
            Ok(Ok(updates)) => {
                self.stats.decoded += 1;
                self.changes += 1;
                self.note_updates(&updates);
            }
            _ => {
                self.stats.skipped += 1;
                // A PDU that failed half-way may have drawn part of itself.
                self.damage = Damage::Full;
            }
        }
    }

    /// Records the regions the decoder says it drew.
    fn note_updates(&mut self, updates: &[UpdateKind]) {
        let (w, h) = (self.width(), self.height());
        for u in updates {
            if let UpdateKind::Region(r) = u {
                // Inclusive edges, clipped to the desktop.
                let (left, top) = (u32::from(r.left), u32::from(r.top));
                let right = (u32::from(r.right) + 1).min(w);
                let bottom = (u32::from(r.bottom) + 1).min(h);
                if left < right && top < bottom {
                    self.damage.add(Rect {
                        x: left,
                        y: top,
                        width: right - left,
                        height: bottom - top,
                    });
                }
            }
        }
    }

    /// What changed since the last call, and forget it.
    pub fn take_damage(&mut self) -> Damage {
        std::mem::replace(&mut self.damage, Damage::None)
    }

    /// A slow-path PDU (MCS user data: Share Control header onward). Only
    /// graphics updates and a new desktop size matter; other share PDUs are
    /// passed over.
    fn apply_slow_path(&mut self, data: &[u8]) {
        if let Some((w, h)) = demand_active_size(data) {
            if (w, h) != (self.image.width(), self.image.height()) {
                // The server resized the desktop (deactivation-reactivation);
                // it repaints everything after this.
                self.image = DecodedImage::new(PixelFormat::RgbA32, w, h);
                self.changes += 1;
                self.damage = Damage::Full;
            }
            return;
        }
        let Ok(header) = decode::<ShareControlHeader>(data) else {
            // Virtual channel traffic and the like: not drawing.
            return;
        };
        let ShareControlPdu::Data(sd) = header.share_control_pdu else {
            return;
        };
        let ShareDataPdu::Update(update) = sd.share_data_pdu else {
            return;
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut src = ReadCursor::new(&update);
            match slow_path::read_graphics_update_type(&mut src) {
                Ok(slow_path::GraphicsUpdateType::Bitmap) => {
                    let bitmap = slow_path::decode_slow_path_bitmap(&mut src).map_err(|_| ())?;
                    self.processor
                        .process_bitmap_update(&mut self.image, bitmap)
                        .map_err(|_| ())
                }
                Ok(_) => Ok(Vec::new()),
                Err(_) => Err(()),
            }
        }));
        match r {
            Ok(Ok(updates)) => {
                self.stats.decoded += 1;
                self.changes += 1;
                self.note_updates(&updates);
            }
            _ => {
                self.stats.skipped += 1;
                self.damage = Damage::Full;
            }
        }
    }

    /// The framebuffer as stored: RGBA row by row, alpha undefined.
    pub fn pixels(&self) -> &[u8] {
        self.image.data()
    }

    /// RGBA pixels, row by row, opaque.
    pub fn rgba(&self) -> Vec<u8> {
        let mut px = self.image.data().to_vec();
        for p in px.chunks_exact_mut(4) {
            p[3] = 0xff;
        }
        px
    }

    /// Apply the events of one interval between two sampled instants, in
    /// order, leaving the framebuffer exactly as [`Renderer::apply`] of
    /// each would, but without decoding a bitmap update that later updates
    /// of the same interval wholly draw over: at 40 full-screen redraws a
    /// second sampled at 10 frames a second, three in four are never seen.
    ///
    /// Only PDUs made of whole bitmap updates are passed over, and only
    /// for bitmap updates after them that draw every pixel of theirs (a
    /// rectangle the decoder would refuse covers nothing). Anything else
    /// on the desktop's channels in between (a resize, a fragmented
    /// update) stops the look-back there. A later bitmap that is well
    /// formed in its headers but fails to decode (a damaged archive) is
    /// the one case where the full decode would show the earlier update
    /// through it; a recorded session never holds one.
    pub fn apply_interval(&mut self, events: &[TimedEvent]) {
        // The desktop size each event meets (a resize may come between).
        let mut size = (self.image.width(), self.image.height());
        let sizes: Vec<(u16, u16)> = events
            .iter()
            .map(|ev| {
                if let Event::Output { channel, data, .. } = &ev.event
                    && *channel != self.fastpath_channel
                    && let Some(s) = demand_active_size(data)
                {
                    size = s;
                }
                size
            })
            .collect();
        let mut skip = vec![false; events.len()];
        let mut cover = Cover::default();
        for (i, ev) in events.iter().enumerate().rev() {
            let Event::Output { channel, data, .. } = &ev.event else {
                continue;
            };
            if *channel != self.fastpath_channel {
                // Slow-path output may resize or draw: nothing before it
                // counts as covered by what comes after.
                cover.clear();
                continue;
            }
            let (w, h) = sizes[i];
            let Some((rects, all_drawn)) = bitmap_rects(data, w, h) else {
                cover.clear();
                continue;
            };
            if all_drawn && !rects.is_empty() && rects.iter().all(|r| cover.covers(*r)) {
                skip[i] = true;
                continue;
            }
            for r in rects {
                cover.add(r);
            }
        }
        for (ev, skip) in events.iter().zip(skip) {
            if skip {
                self.stats.overdrawn += 1;
            } else {
                self.apply(&ev.event);
            }
        }
    }

    /// Apply `events` up to and including time `at_us`.
    pub fn replay_until(
        &mut self,
        events: impl Iterator<Item = Result<TimedEvent, ReadError>>,
        at_us: u64,
    ) -> Result<(), RenderError> {
        for ev in events {
            let ev = ev?;
            if ev.t_us > at_us {
                break;
            }
            self.apply(&ev.event);
        }
        Ok(())
    }
}

/// Where a replay that should show the desktop at `at_us` starts: the
/// second-to-last keyframe at or before `at_us`, or the session start (0).
///
/// A keyframe marks the moment the gateway asked the target to redraw the
/// whole desktop; the redraw arrives some time later. Starting one keyframe
/// earlier leaves a whole keyframe interval for it to arrive. `keyframes`
/// is in time order.
pub fn replay_start(keyframes: &[u64], at_us: u64) -> u64 {
    let upto = keyframes.partition_point(|&k| k <= at_us);
    upto.checked_sub(2)
        .and_then(|i| keyframes.get(i))
        .copied()
        .unwrap_or(0)
}

/// A renderer ready to replay from the keyframe for `at_us`, and the time
/// its events start (pass it to [`Reader::events_from`]).
///
/// The desktop size at that point comes from the last Demand Active before
/// it: the archive is read up to there, but only slow-path PDU headers are
/// looked at (no bitmap is decoded). Reading is most of a seek late in a
/// long session (decompressing the chunks), so two threads share it, each
/// reading half of the chunks.
pub fn seek(reader: &mut Reader, at_us: u64) -> Result<(Renderer, u64), RenderError> {
    let mut size = header_size(reader.meta())?;
    let info = reader.meta().rdp.clone().unwrap_or_default();
    let start = replay_start(&reader.keyframes()?, at_us);
    if start > 0 {
        let before: Vec<u64> = reader
            .index()?
            .iter()
            .map(|e| e.t_first_us)
            .take_while(|&t| t < start)
            .collect();
        let half = before.get(before.len() / 2).copied().unwrap_or(0);
        let channel = info.fastpath_channel;
        let found = if half > 0 {
            let mut other = Reader::open(reader.path())?;
            std::thread::scope(|scope| {
                let later = scope.spawn(|| last_size(&mut other, channel, half, start));
                // Up to and including `half`: the later half starts at the
                // chunk beginning then, and an earlier chunk may end then.
                let earlier = last_size(reader, channel, 0, half + 1);
                let later = later.join().unwrap_or_else(|_| {
                    Err(ReadError::IoText("reading the archive".into()).into())
                });
                Ok::<_, RenderError>(later?.or(earlier?))
            })?
        } else {
            last_size(reader, channel, 0, start)?
        };
        if let Some(s) = found {
            size = s;
        }
    }
    Ok((Renderer::with_size(&info, size.0, size.1), start))
}

/// The desktop size the last Demand Active from `from_us` to before
/// `to_us` set, if any.
fn last_size(
    reader: &mut Reader,
    fastpath_channel: u32,
    from_us: u64,
    to_us: u64,
) -> Result<Option<(u16, u16)>, RenderError> {
    let mut size = None;
    for ev in reader.events_from(from_us)? {
        let ev = ev?;
        if ev.t_us >= to_us {
            break;
        }
        if let Event::Output { channel, data, .. } = &ev.event
            && *channel != fastpath_channel
            && let Some(s) = demand_active_size(data)
        {
            size = Some(s);
        }
    }
    Ok(size)
}

/// What seeking needs from a whole recording, gathered in one pass over
/// it: the keyframe times and when the desktop changed size. [`seek`]
/// finds the size at a keyframe by reading the archive from its start up to
/// there, which in an hour-long session is most of the archive; a player
/// that seeks again and again keeps this instead (a sealed archive never
/// changes) and seeks with [`seek_indexed`], reading only from the keyframe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeekIndex {
    keyframes: Vec<u64>,
    /// Where the pointer was at each keyframe (by the keyframe's place in
    /// `keyframes`): a replay starting there has read no pointer move yet,
    /// and the person may not have moved it for minutes.
    pointers: Vec<Option<(u16, u16)>>,
    /// (time, width, height) of each Demand Active with a valid size.
    sizes: Vec<(u64, u16, u16)>,
}

impl SeekIndex {
    pub fn build(reader: &mut Reader) -> Result<SeekIndex, RenderError> {
        let info = reader.meta().rdp.clone().unwrap_or_default();
        let mut index = SeekIndex::default();
        let mut pointer = None;
        for ev in reader.events() {
            let ev = ev?;
            match &ev.event {
                Event::Keyframe => {
                    index.keyframes.push(ev.t_us);
                    index.pointers.push(pointer);
                }
                Event::Output { channel, data, .. } if *channel != info.fastpath_channel => {
                    if let Some((w, h)) = demand_active_size(data) {
                        index.sizes.push((ev.t_us, w, h));
                    }
                }
                other => {
                    if let Some(p) = pointer_of(other, info.fastpath_channel) {
                        pointer = Some(p);
                    }
                }
            }
        }
        Ok(index)
    }

    /// Keyframe times, in order.
    pub fn keyframes(&self) -> &[u64] {
        &self.keyframes
    }

    /// Where the pointer was when a replay starting at `start` (a keyframe
    /// time from [`seek_indexed`]) begins; `None` at the recording's start
    /// or before the pointer was ever moved.
    pub fn pointer_at(&self, start: u64) -> Option<(u16, u16)> {
        let i = self.keyframes.iter().position(|&k| k == start)?;
        self.pointers.get(i).copied().flatten()
    }
}

/// [`seek`] with the keyframes and sizes of `index` (of this recording):
/// nothing is read before the keyframe.
pub fn seek_indexed(
    reader: &mut Reader,
    index: &SeekIndex,
    at_us: u64,
) -> Result<(Renderer, u64), RenderError> {
    let mut size = header_size(reader.meta())?;
    let info = reader.meta().rdp.clone().unwrap_or_default();
    let start = replay_start(&index.keyframes, at_us);
    if start > 0
        && let Some(&(_, w, h)) = index.sizes.iter().rev().find(|(t, _, _)| *t < start)
    {
        size = (w, h);
    }
    Ok((Renderer::with_size(&info, size.0, size.1), start))
}

/// The desktop at `at_us` (`u64::MAX`: the end), replayed from the keyframe
/// [`replay_start`] picks.
pub fn render_at(reader: &mut Reader, at_us: u64) -> Result<Renderer, RenderError> {
    let (mut r, start) = seek(reader, at_us)?;
    r.replay_until(reader.events_from(start)?, at_us)?;
    Ok(r)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    pub(crate) use crate::protocol::rdp::testing::{demand_active, fast_path_bitmap};
    use crate::recording::{DesktopSize, Protocol, Stream};
    use bytes::Bytes;

    pub(crate) fn meta() -> SessionMeta {
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
            desktop: Some(DesktopSize {
                width: 8,
                height: 4,
            }),
            rdp: Some(RdpInfo {
                io_channel: 1003,
                user_channel: 1007,
                ..RdpInfo::default()
            }),
        }
    }

    pub(crate) fn output(channel: u32, data: Vec<u8>) -> Event {
        Event::Output {
            channel,
            stream: Stream::Stdout,
            data: Bytes::from(data),
        }
    }

    #[test]
    fn a_fast_path_bitmap_update_lands_in_the_framebuffer() {
        let mut r = Renderer::new(&meta()).expect("renderer");
        r.apply(&output(
            0,
            fast_path_bitmap(2, 1, &[10, 20, 30, 0, 40, 50, 60, 0]),
        ));
        assert_eq!(
            r.stats,
            RenderStats {
                decoded: 1,
                skipped: 0,
                overdrawn: 0
            }
        );
        let px = r.rgba();
        let at = |x: usize, y: usize| px[(y * 8 + x) * 4..][..4].to_vec();
        assert_eq!(at(2, 1), vec![30, 20, 10, 255]);
        assert_eq!(at(3, 1), vec![60, 50, 40, 255]);
        assert_eq!(at(0, 0), vec![0, 0, 0, 255]);
    }

    #[test]
    fn hostile_pdus_are_skipped_never_a_panic() {
        let mut r = Renderer::new(&meta()).expect("renderer");
        let good = fast_path_bitmap(0, 0, &[1, 2, 3, 0]);
        let mut bad = vec![
            vec![],
            vec![0x00],
            vec![0x00, 0x80, 0x05, 0x01, 0xff],
            vec![0xff; 64],
        ];
        for cut in 0..good.len() {
            bad.push(good[..cut].to_vec());
        }
        // A rectangle far outside the desktop.
        bad.push(fast_path_bitmap(60000, 60000, &[1, 2, 3, 0]));
        let mut seed = 0x1234_5678_u32;
        for _ in 0..200 {
            let mut p = good.clone();
            for b in p.iter_mut() {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if seed.is_multiple_of(5) {
                    *b = (seed >> 16) as u8;
                }
            }
            bad.push(p);
        }
        for p in &bad {
            r.apply(&output(0, p.clone()));
            r.apply(&output(1003, p.clone()));
        }
        assert!(r.stats.skipped > 0);
        assert_eq!(r.rgba().len(), 8 * 4 * 4);
    }

    #[test]
    fn implausible_desktop_sizes_are_refused() {
        let mut m = meta();
        m.desktop = Some(DesktopSize {
            width: 0,
            height: 4,
        });
        assert!(Renderer::new(&m).is_err());
        m.desktop = Some(DesktopSize {
            width: 100_000,
            height: 4,
        });
        assert!(Renderer::new(&m).is_err());
        m.desktop = None;
        assert!(Renderer::new(&m).is_err());
    }

    /// A sealed archive of `events`, one chunk each (so seeking skips chunks).
    pub(crate) fn archive(dir: &std::path::Path, events: &[(u64, Event)]) -> std::path::PathBuf {
        use crate::recording::{ArchiveKey, ArchiveWriter, WriterOptions};
        let path = dir.join("desk.skrec");
        let mut w =
            ArchiveWriter::create(&path, &meta(), WriterOptions::default()).expect("create");
        for (t, e) in events {
            w.append(*t, e).expect("append");
            w.flush_chunk().expect("flush");
        }
        w.seal(&ArchiveKey::generate()).expect("seal");
        path
    }

    /// Red, green, blue as one BGRA pixel.
    fn bgra(r: u8, g: u8, b: u8) -> [u8; 4] {
        [b, g, r, 0]
    }

    #[test]
    fn render_at_starts_at_a_keyframe_with_the_size_of_that_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = 1_000_000;
        let path = archive(
            dir.path(),
            &[
                (0, output(1003, demand_active(10, 6))),
                // Only a replay from the start sees this pixel.
                (s / 2, output(0, fast_path_bitmap(0, 0, &bgra(9, 9, 9)))),
                (s, Event::Keyframe),
                (2 * s, Event::Keyframe),
                (2 * s + 1, output(0, fast_path_bitmap(9, 5, &bgra(1, 2, 3)))),
                (3 * s, Event::Keyframe),
                (3 * s + 1, output(0, fast_path_bitmap(1, 1, &bgra(4, 5, 6)))),
            ],
        );
        let mut reader = Reader::open(&path).expect("open");
        let px = |r: &Renderer, x: usize, y: usize| {
            let w = r.width() as usize;
            r.rgba()[(y * w + x) * 4..][..3].to_vec()
        };
        // Before the second keyframe: from the start.
        let r = render_at(&mut reader, 2 * s - 1).expect("render");
        assert_eq!((r.width(), r.height()), (10, 6));
        assert_eq!(px(&r, 0, 0), [9, 9, 9]);
        // At 3.5 s the replay starts at the keyframe of 2 s: the pixel of
        // 0.5 s is not drawn, the desktop has the size set at 0.
        let r = render_at(&mut reader, 3 * s + s / 2).expect("render");
        assert_eq!((r.width(), r.height()), (10, 6));
        assert_eq!(px(&r, 0, 0), [0, 0, 0]);
        assert_eq!(px(&r, 9, 5), [1, 2, 3]);
        assert_eq!(px(&r, 1, 1), [4, 5, 6]);
        // Events after --at are not applied.
        let r = render_at(&mut reader, 3 * s).expect("render");
        assert_eq!(px(&r, 1, 1), [0, 0, 0]);
        assert_eq!(px(&r, 9, 5), [1, 2, 3]);
    }

    #[test]
    fn a_demand_active_with_another_size_resizes_the_desktop() {
        let mut r = Renderer::new(&meta()).expect("renderer");
        r.apply(&output(0, fast_path_bitmap(0, 0, &[1, 2, 3, 0])));
        let before = r.changes();
        // The same size: nothing happens.
        r.apply(&output(1003, demand_active(8, 4)));
        assert_eq!((r.width(), r.height(), r.changes()), (8, 4, before));
        r.apply(&output(1003, demand_active(12, 6)));
        assert_eq!((r.width(), r.height()), (12, 6));
        assert!(r.changes() > before);
        // A fresh black desktop, drawn on at the new size.
        assert_eq!(r.rgba().len(), 12 * 6 * 4);
        r.apply(&output(0, fast_path_bitmap(10, 5, &[10, 20, 30, 0])));
        let px = r.rgba();
        assert_eq!(&px[(5 * 12 + 10) * 4..][..4], &[30, 20, 10, 255]);
        assert_eq!(&px[..4], &[0, 0, 0, 255]);
        // Too large is clamped; zero is ignored.
        r.apply(&output(1003, demand_active(9000, 2)));
        assert_eq!((r.width(), r.height()), (MAX_SIDE, 2));
        r.apply(&output(1003, demand_active(0, 600)));
        assert_eq!((r.width(), r.height()), (MAX_SIDE, 2));
        // A cut-short Demand Active is no resize.
        let cut = demand_active(100, 100);
        r.apply(&output(1003, cut[..cut.len() - 10].to_vec()));
        assert_eq!((r.width(), r.height()), (MAX_SIDE, 2));
    }

    #[test]
    fn replay_starts_one_keyframe_before_the_last_one_in_time() {
        let k = [10, 20, 30, 40];
        // No keyframe, or only one, before the time: from the start.
        assert_eq!(replay_start(&[], 100), 0);
        assert_eq!(replay_start(&k, 5), 0);
        assert_eq!(replay_start(&k, 10), 0);
        assert_eq!(replay_start(&k, 19), 0);
        // The second-to-last at or before the time.
        assert_eq!(replay_start(&k, 20), 10);
        assert_eq!(replay_start(&k, 29), 10);
        assert_eq!(replay_start(&k, 35), 20);
        assert_eq!(replay_start(&k, 40), 30);
        assert_eq!(replay_start(&k, u64::MAX), 30);
    }

    #[test]
    fn an_update_counts_as_drawn_over_only_when_later_ones_cover_all_of_it() {
        let r = |x, y, width, height| Rect {
            x,
            y,
            width,
            height,
        };
        let mut cover = Cover::default();
        cover.add(r(0, 0, 8, 2));
        assert!(cover.covers(r(0, 0, 8, 2)));
        assert!(cover.covers(r(2, 1, 3, 1)));
        assert!(!cover.covers(r(0, 0, 8, 3)));
        // Only together.
        cover.add(r(0, 2, 5, 2));
        cover.add(r(4, 2, 4, 2));
        assert!(cover.covers(r(0, 0, 8, 4)));
        assert!(!cover.covers(r(0, 0, 9, 4)));
        cover.clear();
        assert!(!cover.covers(r(0, 0, 1, 1)));

        // Through the renderer: a row drawn over by a later row in the same
        // interval is not decoded; one drawn over only in part is.
        let mut rd = Renderer::new(&meta()).expect("renderer");
        let row = |c: u8| fast_path_bitmap(0, 0, &[c, c, c, 0].repeat(8));
        let part = fast_path_bitmap(0, 0, &[7, 7, 7, 0].repeat(4));
        let ev = |t, e| TimedEvent { t_us: t, event: e };
        rd.apply_interval(&[
            ev(1, output(0, row(1))),
            ev(2, output(0, part.clone())),
            ev(3, output(0, row(2))),
            ev(4, output(0, part)),
        ]);
        assert_eq!(
            rd.stats,
            RenderStats {
                decoded: 2,
                skipped: 0,
                overdrawn: 2
            }
        );
        assert_eq!(&rd.rgba()[..4], &[7, 7, 7, 255]);
        assert_eq!(&rd.rgba()[28..32], &[2, 2, 2, 255]);
        // A resize in between: nothing before it is passed over.
        let mut rd = Renderer::new(&meta()).expect("renderer");
        rd.apply_interval(&[
            ev(1, output(0, row(1))),
            ev(2, output(1003, demand_active(8, 4))),
            ev(3, output(0, row(2))),
        ]);
        assert_eq!(rd.stats.overdrawn, 0);
    }

    #[test]
    fn a_seek_finds_the_size_set_anywhere_before_its_keyframe() {
        let s = 1_000_000;
        for resize_at in [s / 2, s + 1, 2 * s, 3 * s - 1, 4 * s - 1] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut events = vec![(0, output(1003, demand_active(10, 6)))];
            for k in 1..=6 {
                events.push((k * s, Event::Keyframe));
            }
            events.push((resize_at, output(1003, demand_active(12, 4))));
            events.sort_by_key(|(t, _)| *t);
            let path = archive(dir.path(), &events);
            let mut reader = Reader::open(&path).expect("open");
            // Replayed from the keyframe of 4 s.
            let (r, start) = seek(&mut reader, 5 * s + s / 2).expect("seek");
            assert_eq!(start, 4 * s);
            assert_eq!((r.width(), r.height()), (12, 4), "resized at {resize_at}");
            let (r, _) = seek(&mut reader, s).expect("seek");
            assert_eq!(
                (r.width(), r.height()),
                (8, 4),
                "from the start: the header's"
            );
        }
    }
}
