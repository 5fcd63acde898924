//! Replaying a recorded RDP session into a framebuffer, for PNG, MP4 and
//! the frame stream.
//!
//! Pure: recorded server output PDUs in, RGBA pixels out, with the regions
//! each PDU drew ([`Renderer::take_damage`]). Fast-path PDUs (channel 0)
//! go through ironrdp-session's fast-path processor, which
//! decodes bitmap updates (raw, interleaved RLE, planar) with
//! ironrdp-graphics; planar bitmaps (32 bpp), most of a full-screen
//! redraw, are drawn by [`super::planar`] instead, and uncompressed 24 and
//! 32 bpp ones and interleaved RLE ones at 24 bpp (decoded by
//! ironrdp-graphics) by [`super::uncompressed`], into the renderer's own
//! framebuffer, with exactly ironrdp's pixels. Anything that cannot be
//! decoded is skipped and counted.
//!
//! A Server Demand Active with another desktop size re-creates the
//! framebuffer at that size. Where a replay starts is [`super::seek`]'s;
//! which bitmaps a sampled frame never shows, [`super::overdraw`]'s.

use ironrdp_core::WriteBuf;
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_pdu::bitmap::BitmapUpdateData;
use ironrdp_pdu::geometry::{InclusiveRectangle, Rectangle as _};
use ironrdp_session::fast_path::{Processor, ProcessorBuilder, UpdateKind};
use ironrdp_session::image::DecodedImage;

use super::bitmap_pdus::{bitmap_updates, may_leave_fragment, slow_path_bitmap, slow_path_update};
use super::overdraw;
use super::planar::{PlanarDecoder, Target};
use super::region::{Damage, Rect};
use super::uncompressed;
use crate::protocol::rdp::pdu::{MAX_SIDE, demand_active_size};
use crate::recording::{Event, RdpInfo, ReadError, SessionMeta, TimedEvent};

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
    /// The desktop, RGBA row by row (alpha undefined): what every output
    /// shows.
    fb: Vec<u8>,
    /// ironrdp's image, where it draws what this renderer leaves to it
    /// (every kind of update but the bitmaps drawn here); what it draws is copied
    /// into `fb`. It holds the desktop too, except where `stale` says.
    image: DecodedImage,
    /// Where `fb` holds pixels `image` does not (bitmaps drawn into `fb`
    /// directly): copied into `image` before ironrdp draws an update
    /// whose reach is not a whole bitmap it overwrites.
    stale: Damage,
    /// Whether ironrdp may hold the first fragments of an update: then
    /// every fast-path PDU goes to it, as a PDU can end what it holds.
    fragment_pending: bool,
    planar: PlanarDecoder,
    /// Where interleaved RLE bitmaps at 24 bpp are decoded before drawing.
    interleaved: Vec<u8>,
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

/// The desktop size in the header, checked.
pub(super) fn header_size(meta: &SessionMeta) -> Result<(u16, u16), RenderError> {
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
    pub(super) fn with_size(info: &RdpInfo, width: u16, height: u16) -> Renderer {
        let processor = ProcessorBuilder {
            io_channel_id: info.io_channel,
            user_channel_id: info.user_channel,
            share_id: info.share_id.unwrap_or(0),
            enable_server_pointer: false,
            pointer_software_rendering: false,
        }
        .build();
        Renderer {
            fb: vec![0; usize::from(width) * usize::from(height) * 4],
            image: DecodedImage::new(PixelFormat::RgbA32, width, height),
            stale: Damage::None,
            fragment_pending: false,
            planar: PlanarDecoder::default(),
            interleaved: Vec::new(),
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
    ///
    /// A fast-path PDU made of whole bitmap updates is drawn update by
    /// update: planar bitmaps by [`PlanarDecoder`] straight into the
    /// framebuffer, the others by ironrdp (then copied); anything else goes
    /// to ironrdp whole. Either way the pixels, the regions noted and the
    /// counts are what ironrdp alone gives (see the tests).
    pub fn apply(&mut self, ev: &Event) {
        let Event::Output { channel, data, .. } = ev else {
            return;
        };
        if *channel != self.fastpath_channel {
            self.apply_slow_path(data);
            return;
        }
        self.out.clear();
        let mut ironrdp_area = None;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if !self.fragment_pending
                && let Some(updates) = bitmap_updates(data)
            {
                return self.draw_bitmaps(updates, &mut ironrdp_area);
            }
            self.sync_stale();
            ironrdp_area = Some(Damage::Full);
            let r = self
                .processor
                .process(&mut self.image, data, &mut self.out, &mut None)
                .map_err(|_| ());
            self.fragment_pending = r.is_err() || may_leave_fragment(data);
            if let Ok(updates) = &r {
                for r in updates {
                    if let UpdateKind::Region(r) = r {
                        self.copy_from_image(r);
                    }
                }
                ironrdp_area = None;
            }
            r
        }));
        match r {
            Ok(Ok(updates)) => {
                self.stats.decoded += 1;
                self.changes += 1;
                self.note_updates(&updates);
            }
            _ => {
                if r.is_err() {
                    self.fragment_pending = true;
                    // Whatever was drawn where before the panic, the
                    // framebuffer is what shows: ironrdp gets all of it
                    // before it draws again.
                    self.stale = Damage::Full;
                }
                self.stats.skipped += 1;
                // A PDU that failed half-way may have drawn part of itself.
                match ironrdp_area {
                    Some(Damage::Full) => self.copy_all_from_image(),
                    Some(Damage::Rects(rects)) => {
                        for r in rects {
                            self.copy_rect_from_image(r);
                        }
                    }
                    _ => {}
                }
                self.damage = Damage::Full;
            }
        }
    }

    /// Draw whole bitmap updates as ironrdp's `process_bitmap_update`
    /// does (a rectangle it would not draw is passed over; an error ends
    /// the PDU), one region per update. `ironrdp_area` says where ironrdp
    /// was drawing, should it fail half-way.
    fn draw_bitmaps(
        &mut self,
        updates: Vec<BitmapUpdateData<'_>>,
        ironrdp_area: &mut Option<Damage>,
    ) -> Result<Vec<UpdateKind>, ()> {
        use ironrdp_pdu::bitmap::Compression;
        let (w, h) = (self.image.width(), self.image.height());
        let mut kinds = Vec::with_capacity(updates.len());
        for update in updates {
            let mut region: Option<InclusiveRectangle> = None;
            for b in update.rectangles {
                let r = b.rectangle.clone();
                // ironrdp-session's check of the declared destination.
                let fits = r.left <= r.right
                    && r.top <= r.bottom
                    && r.right < w
                    && r.bottom < h
                    && b.width >= r.width()
                    && r.height() == b.height;
                if !fits {
                    continue;
                }
                let compressed = b
                    .compression_flags
                    .contains(Compression::BITMAP_COMPRESSION);
                let here = self.draw_here(&b, compressed);
                let drawn = if here {
                    Some(r)
                } else {
                    *ironrdp_area = Some(Damage::Rects(vec![Rect::of_checked(&r)]));
                    let kinds = self
                        .processor
                        .process_bitmap_update(
                            &mut self.image,
                            BitmapUpdateData {
                                rectangles: vec![b],
                            },
                        )
                        .map_err(|_| ())?;
                    *ironrdp_area = None;
                    let drawn = kinds.into_iter().find_map(|k| match k {
                        UpdateKind::Region(r) => Some(r),
                        _ => None,
                    });
                    if let Some(d) = &drawn {
                        self.copy_from_image(d);
                    }
                    drawn
                };
                if let Some(d) = drawn {
                    region = Some(match region {
                        Some(u) => u.union(&d),
                        None => d,
                    });
                }
            }
            kinds.push(region.map_or(UpdateKind::None, UpdateKind::Region));
        }
        Ok(kinds)
    }

    /// A planar (`compressed`) or uncompressed bitmap drawn into the
    /// framebuffer by [`PlanarDecoder`] or [`uncompressed::draw`]; `false`
    /// (nothing drawn) when they leave it to ironrdp.
    fn draw_here(&mut self, b: &ironrdp_pdu::bitmap::BitmapData<'_>, compressed: bool) -> bool {
        let r = &b.rectangle;
        let target = Target {
            fb: &mut self.fb,
            stride: usize::from(self.image.width()) * 4,
            x: usize::from(r.left),
            y: usize::from(r.top),
            width: usize::from(r.width()),
        };
        let (data, w, h) = (b.bitmap_data, usize::from(b.width), usize::from(b.height));
        let drawn = match (compressed, b.bits_per_pixel) {
            (true, 32) => self.planar.draw(data, w, h, target).is_ok(),
            // ironrdp's decoder, drawn here: ironrdp's own drawing of its
            // output, a pixel at a time, took 55 % of a text export.
            (true, 24) => {
                ironrdp_graphics::rle::decompress_24_bpp(data, &mut self.interleaved, w, h).is_ok()
                    && uncompressed::draw_packed_24(&self.interleaved, w, h, target).is_ok()
            }
            (true, _) => false,
            (false, bpp) => uncompressed::draw(data, bpp, w, h, target).is_ok(),
        };
        if drawn {
            self.stale.add(Rect::of_checked(r));
        }
        drawn
    }

    /// Bring ironrdp's image up to date where only the framebuffer was
    /// drawn on: the stale rectangles as uncompressed 24 bpp bitmaps
    /// (bottom-up BGR rows padded to 4 bytes), which it copies as they are.
    fn sync_stale(&mut self) {
        let rects = match std::mem::replace(&mut self.stale, Damage::None) {
            Damage::None => return,
            Damage::Rects(rects) => rects,
            Damage::Full => vec![Rect {
                x: 0,
                y: 0,
                width: self.width(),
                height: self.height(),
            }],
        };
        let stride = self.width() as usize * 4;
        let mut data = Vec::new();
        for r in rects {
            let (w, h) = (r.width as usize, r.height as usize);
            let row = (w * 3 + 3) & !3;
            data.clear();
            data.resize(row * h, 0);
            for (k, out) in data.chunks_exact_mut(row).enumerate() {
                let y = r.y as usize + h - 1 - k;
                let src = &self.fb[y * stride + r.x as usize * 4..][..w * 4];
                for (o, p) in out.chunks_exact_mut(3).zip(src.chunks_exact(4)) {
                    o.copy_from_slice(&[p[2], p[1], p[0]]);
                }
            }
            let (Ok(x), Ok(y), Ok(bw), Ok(bh)) = (
                u16::try_from(r.x),
                u16::try_from(r.y),
                u16::try_from(r.width),
                u16::try_from(r.height),
            ) else {
                continue;
            };
            let update = BitmapUpdateData {
                rectangles: vec![ironrdp_pdu::bitmap::BitmapData {
                    rectangle: InclusiveRectangle {
                        left: x,
                        top: y,
                        right: x + bw - 1,
                        bottom: y + bh - 1,
                    },
                    width: bw,
                    height: bh,
                    bits_per_pixel: 24,
                    compression_flags: ironrdp_pdu::bitmap::Compression::empty(),
                    compressed_data_header: None,
                    bitmap_data: &data,
                }],
            };
            let _ = self
                .processor
                .process_bitmap_update(&mut self.image, update);
        }
    }

    /// Copy what ironrdp drew in `r` (inclusive, clipped to the desktop)
    /// into the framebuffer.
    fn copy_from_image(&mut self, r: &InclusiveRectangle) {
        let (w, h) = (self.width(), self.height());
        let (left, top) = (u32::from(r.left), u32::from(r.top));
        let right = (u32::from(r.right) + 1).min(w);
        let bottom = (u32::from(r.bottom) + 1).min(h);
        if left < right && top < bottom {
            self.copy_rect_from_image(Rect {
                x: left,
                y: top,
                width: right - left,
                height: bottom - top,
            });
        }
    }

    fn copy_rect_from_image(&mut self, r: Rect) {
        let stride = self.width() as usize * 4;
        let (from, len) = (r.x as usize * 4, r.width as usize * 4);
        let image = self.image.data();
        for y in r.y as usize..(r.y + r.height) as usize {
            let at = y * stride + from;
            if let (Some(dst), Some(src)) = (self.fb.get_mut(at..at + len), image.get(at..at + len))
            {
                dst.copy_from_slice(src);
            }
        }
    }

    fn copy_all_from_image(&mut self) {
        self.fb.copy_from_slice(self.image.data());
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
                self.fb = vec![0; usize::from(w) * usize::from(h) * 4];
                self.stale = Damage::None;
                self.changes += 1;
                self.damage = Damage::Full;
            }
            return;
        }
        let Some(update) = slow_path_update(data) else {
            return;
        };
        let mut ironrdp_area = None;
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match slow_path_bitmap(&update)? {
                    Some(bitmap) => self.draw_bitmaps(vec![bitmap], &mut ironrdp_area),
                    None => Ok(Vec::new()),
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
                if let Some(Damage::Rects(rects)) = ironrdp_area {
                    for r in rects {
                        self.copy_rect_from_image(r);
                    }
                }
                self.damage = Damage::Full;
            }
        }
    }

    /// The framebuffer as stored: RGBA row by row, alpha undefined.
    pub fn pixels(&self) -> &[u8] {
        &self.fb
    }

    /// RGBA pixels, row by row, opaque.
    pub fn rgba(&self) -> Vec<u8> {
        let mut px = self.fb.clone();
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
    /// Only PDUs made of whole bitmap updates are passed over, fast-path
    /// ones or slow-path Update PDUs (xrdp sends every bitmap slow-path),
    /// and only for bitmap updates after them that draw every pixel of
    /// theirs (a rectangle the decoder would refuse covers nothing).
    /// Anything else in between (a resize, a fragmented update, any other
    /// slow-path PDU) stops the look-back there. A later bitmap that is well
    /// formed in its headers but fails to decode (a damaged archive) is
    /// the one case where the full decode would show the earlier update
    /// through it; a recorded session never holds one.
    pub fn apply_interval(&mut self, events: &[TimedEvent]) {
        let size = (self.image.width(), self.image.height());
        let skip = overdraw::overdrawn(events, size, self.fastpath_channel);
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
        let mut batch = Batch::default();
        for ev in events {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    batch.apply(self);
                    return Err(e.into());
                }
            };
            if ev.t_us > at_us {
                break;
            }
            batch.push(self, ev);
        }
        batch.apply(self);
        Ok(())
    }
}

/// Events on their way to [`Renderer::apply_interval`] where only the
/// desktop after them counts (a seek, a PNG at a time): bitmaps a later
/// one of the batch draws over are never decoded — on a screen of
/// scrolling text most of them. A batch is applied once it holds
/// [`Batch::MAX_BYTES`] of events, so memory stays bounded.
#[derive(Default)]
pub(crate) struct Batch {
    events: Vec<TimedEvent>,
    bytes: usize,
}

impl Batch {
    const MAX_BYTES: usize = 16 << 20;

    pub(crate) fn push(&mut self, renderer: &mut Renderer, ev: TimedEvent) {
        if let Event::Output { data, .. } = &ev.event {
            self.bytes += data.len();
        }
        self.events.push(ev);
        if self.bytes >= Self::MAX_BYTES {
            self.apply(renderer);
        }
    }

    /// Apply what is gathered (and start again empty).
    pub(crate) fn apply(&mut self, renderer: &mut Renderer) {
        renderer.apply_interval(&self.events);
        self.events.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    pub(crate) use crate::protocol::rdp::testing::{
        demand_active, fast_path_bitmap, slow_path_bitmap,
    };
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

    /// A fast-path PDU of these updates: (update header byte, body).
    fn fast_path(updates: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (head, data) in updates {
            body.push(*head);
            body.extend_from_slice(&u16::try_from(data.len()).expect("small").to_le_bytes());
            body.extend_from_slice(data);
        }
        let total = body.len() + 3;
        let mut pdu = vec![0x00, 0x80 | (total >> 8) as u8, total as u8];
        pdu.extend_from_slice(&body);
        pdu
    }

    /// One bitmap of an update: x, y, rectangle width, bitmap width,
    /// height, bpp, compressed, data.
    type Bitmap = (u16, u16, u16, u16, u16, u16, bool, Vec<u8>);

    /// A bitmap update's body.
    fn bitmap_body(rects: &[Bitmap]) -> Vec<u8> {
        use ironrdp_pdu::bitmap::{BitmapData, Compression};
        let update = BitmapUpdateData {
            rectangles: rects
                .iter()
                .map(|(x, y, rw, bw, h, bpp, compressed, data)| BitmapData {
                    rectangle: InclusiveRectangle {
                        left: *x,
                        top: *y,
                        right: x + rw - 1,
                        bottom: y + h - 1,
                    },
                    width: *bw,
                    height: *h,
                    bits_per_pixel: *bpp,
                    compression_flags: if *compressed {
                        Compression::BITMAP_COMPRESSION | Compression::NO_BITMAP_COMPRESSION_HDR
                    } else {
                        Compression::empty()
                    },
                    compressed_data_header: None,
                    bitmap_data: data,
                })
                .collect(),
        };
        ironrdp_core::encode_vec(&update).expect("encode")
    }

    /// ironrdp alone, as the renderer used it before it drew planar
    /// bitmaps itself: every fast-path PDU through its processor.
    struct IronrdpAlone {
        image: DecodedImage,
        processor: Processor,
        damage: Damage,
        decoded: u64,
        skipped: u64,
    }

    impl IronrdpAlone {
        fn new(w: u16, h: u16) -> Self {
            IronrdpAlone {
                image: DecodedImage::new(PixelFormat::RgbA32, w, h),
                processor: ProcessorBuilder {
                    io_channel_id: 1003,
                    user_channel_id: 1007,
                    share_id: 0,
                    enable_server_pointer: false,
                    pointer_software_rendering: false,
                }
                .build(),
                damage: Damage::None,
                decoded: 0,
                skipped: 0,
            }
        }

        fn apply(&mut self, channel: u32, data: &[u8]) {
            if channel != 0 {
                if let Some((w, h)) = demand_active_size(data)
                    && (w, h) != (self.image.width(), self.image.height())
                {
                    self.image = DecodedImage::new(PixelFormat::RgbA32, w, h);
                    self.damage = Damage::Full;
                }
                return;
            }
            let (w, h) = (
                u32::from(self.image.width()),
                u32::from(self.image.height()),
            );
            let mut out = WriteBuf::new();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.processor
                    .process(&mut self.image, data, &mut out, &mut None)
            }));
            match r {
                Ok(Ok(updates)) => {
                    self.decoded += 1;
                    for u in updates {
                        if let UpdateKind::Region(r) = u {
                            let right = (u32::from(r.right) + 1).min(w);
                            let bottom = (u32::from(r.bottom) + 1).min(h);
                            let (x, y) = (u32::from(r.left), u32::from(r.top));
                            if x < right && y < bottom {
                                self.damage.add(Rect {
                                    x,
                                    y,
                                    width: right - x,
                                    height: bottom - y,
                                });
                            }
                        }
                    }
                }
                _ => {
                    self.skipped += 1;
                    self.damage = Damage::Full;
                }
            }
        }

        fn rgba(&self) -> Vec<u8> {
            let mut px = self.image.data().to_vec();
            for p in px.chunks_exact_mut(4) {
                p[3] = 0xff;
            }
            px
        }
    }

    /// An interleaved RLE stream ([MS-RDPBCGR] 2.2.9.1.1.3.1.2.4) of
    /// `w` x `h` pixels at 24 bpp: colour images, colour runs, background
    /// and foreground runs, white and black pixels.
    fn interleaved_stream(rng: &mut rand::rngs::StdRng, w: usize, h: usize) -> Vec<u8> {
        use rand::Rng as _;
        let mut out = Vec::new();
        let mut left = w * h;
        while left > 0 {
            let mut n = rng.gen_range(1..=31usize).min(left);
            let len = n as u8; // at most 31
            match rng.gen_range(0..5) {
                0 => {
                    out.push(0x80 | len);
                    out.extend((0..n * 3).map(|_| rng.r#gen::<u8>()));
                }
                1 => {
                    out.push(0x60 | len);
                    out.extend((0..3).map(|_| rng.r#gen::<u8>()));
                }
                2 => out.push(len),
                3 => out.push(0x20 | len),
                _ => {
                    out.push(if rng.r#gen() { 0xfd } else { 0xfe });
                    n = 1;
                }
            }
            left -= n;
        }
        out
    }

    #[test]
    fn planar_bitmaps_drawn_here_and_the_rest_by_ironrdp_equal_ironrdp_alone() {
        use crate::replay::desktop::planar::tests::stream;
        use rand::rngs::StdRng;
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = StdRng::seed_from_u64(16);
        let (mut w, mut h) = (48u16, 32u16);
        let mut mine = Renderer::new(&SessionMeta {
            desktop: Some(DesktopSize {
                width: u32::from(w),
                height: u32::from(h),
            }),
            ..meta()
        })
        .expect("renderer");
        let mut alone = IronrdpAlone::new(w, h);
        let mut kinds = [0u32; 10];
        for step in 0..3000 {
            // A bitmap somewhere on the desktop (sometimes partly outside).
            let bitmap = |rng: &mut StdRng, w: u16, h: u16, kinds: &mut [u32; 10]| -> Bitmap {
                let (bw, bh) = (rng.gen_range(1..=20u16), rng.gen_range(1..=20u16));
                let (x, y) = (rng.gen_range(0..w), rng.gen_range(0..h));
                let rw = if rng.gen_ratio(1, 4) {
                    rng.gen_range(1..=bw)
                } else {
                    bw
                };
                let kind = rng.gen_range(0..5);
                let (bpp, compressed, data) = match kind {
                    // Interleaved RLE at 24 bpp, now and then damaged.
                    4 => {
                        let mut d = interleaved_stream(rng, usize::from(bw), usize::from(bh));
                        if rng.gen_ratio(1, 8) {
                            let i = rng.gen_range(0..d.len());
                            d[i] = rng.r#gen();
                        }
                        (24, true, d)
                    }
                    // Planar: any format byte, now and then damaged.
                    0 | 1 => {
                        let format = rng.gen_range(0..0x40);
                        let mut d = stream(rng, format, usize::from(bw), usize::from(bh));
                        if rng.gen_ratio(1, 8) {
                            let i = rng.gen_range(0..d.len());
                            d[i] = rng.r#gen();
                        }
                        (32, true, d)
                    }
                    2 => (
                        32,
                        false,
                        (0..usize::from(bw) * usize::from(bh) * 4)
                            .map(|_| rng.r#gen())
                            .collect(),
                    ),
                    _ => {
                        let row = (usize::from(bw) * 3 + 3) & !3;
                        (
                            24,
                            false,
                            (0..row * usize::from(bh)).map(|_| rng.r#gen()).collect(),
                        )
                    }
                };
                let mut data = data;
                if !compressed && rng.gen_ratio(1, 8) {
                    // A raw bitmap of the wrong length: a row short, or
                    // longer than its rows (which ironrdp takes for padded
                    // 24 bpp rows and refuses otherwise).
                    let n = rng.gen_range(1..=data.len());
                    if rng.gen_ratio(1, 2) {
                        data.truncate(data.len() - n);
                    } else {
                        data.extend((0..n).map(|_| rng.r#gen::<u8>()));
                    }
                    kinds[6] += 1;
                }
                // (4 and 5 count fragments and damaged PDUs below.)
                kinds[if kind == 4 { 7 } else { kind }] += 1;
                (x, y, rw, bw, bh, bpp, compressed, data)
            };
            let (channel, pdu) = match rng.gen_range(0..20) {
                0 => {
                    // A resize now and then.
                    (w, h) = if w == 48 { (40, 36) } else { (48, 32) };
                    (1003, demand_active(w, h))
                }
                1 | 2 => {
                    // An update in two fragments, or a fragment left alone.
                    let body = bitmap_body(&[
                        bitmap(&mut rng, w, h, &mut kinds),
                        bitmap(&mut rng, w, h, &mut kinds),
                    ]);
                    let cut = rng.gen_range(1..body.len());
                    let first = fast_path(&[(0x21, body[..cut].to_vec())]);
                    mine.apply(&output(0, first.clone()));
                    alone.apply(0, &first);
                    kinds[4] += 1;
                    if rng.gen_ratio(1, 4) {
                        (
                            0,
                            fast_path(&[(
                                0x01,
                                bitmap_body(&[bitmap(&mut rng, w, h, &mut kinds)]),
                            )]),
                        )
                    } else {
                        (0, fast_path(&[(0x11, body[cut..].to_vec())]))
                    }
                }
                3 => {
                    // Damaged PDU.
                    let mut p =
                        fast_path(&[(0x01, bitmap_body(&[bitmap(&mut rng, w, h, &mut kinds)]))]);
                    p.truncate(rng.gen_range(0..p.len()));
                    kinds[5] += 1;
                    (0, p)
                }
                _ => {
                    // Whole updates, each of one to three bitmaps.
                    let n = rng.gen_range(1..=2);
                    let updates: Vec<(u8, Vec<u8>)> = (0..n)
                        .map(|_| {
                            let k = rng.gen_range(1..=3);
                            let rects: Vec<_> =
                                (0..k).map(|_| bitmap(&mut rng, w, h, &mut kinds)).collect();
                            (0x01, bitmap_body(&rects))
                        })
                        .collect();
                    (0, fast_path(&updates))
                }
            };
            mine.apply(&output(channel, pdu.clone()));
            alone.apply(channel, &pdu);
            assert!(mine.rgba() == alone.rgba(), "step {step}: pixels differ");
            assert_eq!(
                mine.take_damage(),
                std::mem::replace(&mut alone.damage, Damage::None),
                "step {step}"
            );
            assert_eq!(
                (mine.stats.decoded, mine.stats.skipped),
                (alone.decoded, alone.skipped),
                "step {step}"
            );
        }
        // Every kind was met, planar, interleaved and raw ones drawn here.
        assert!(kinds.iter().take(8).all(|&k| k > 50), "{kinds:?}");
        assert!(mine.stats.decoded > 2000, "{:?}", mine.stats);
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
    fn an_update_counts_as_drawn_over_only_when_later_ones_cover_all_of_it() {
        // A row drawn over by a later row in the same
        // interval is not decoded; one drawn over only in part is. As
        // fast-path output and as slow-path Update PDUs (what xrdp sends).
        let ev = |t, e| TimedEvent { t_us: t, event: e };
        type BitmapPdu = fn(u16, u16, &[u8]) -> Vec<u8>;
        let kinds: [(u32, BitmapPdu); 2] = [(0, fast_path_bitmap), (1003, slow_path_bitmap)];
        for (channel, pdu) in kinds {
            let mut rd = Renderer::new(&meta()).expect("renderer");
            let row = |c: u8| output(channel, pdu(0, 0, &[c, c, c, 0].repeat(8)));
            let part = output(channel, pdu(0, 0, &[7, 7, 7, 0].repeat(4)));
            rd.apply_interval(&[
                ev(1, row(1)),
                ev(2, part.clone()),
                ev(3, row(2)),
                ev(4, part),
            ]);
            let overdrawn = RenderStats {
                decoded: 2,
                skipped: 0,
                overdrawn: 2,
            };
            assert_eq!(rd.stats, overdrawn, "channel {channel}");
            assert_eq!(&rd.rgba()[..4], &[7, 7, 7, 255]);
            assert_eq!(&rd.rgba()[28..32], &[2, 2, 2, 255]);
        }
        // A resize in between: nothing before it is passed over.
        let mut rd = Renderer::new(&meta()).expect("renderer");
        let row = |c: u8| fast_path_bitmap(0, 0, &[c, c, c, 0].repeat(8));
        rd.apply_interval(&[
            ev(1, output(0, row(1))),
            ev(2, output(1003, demand_active(8, 4))),
            ev(3, output(0, row(2))),
        ]);
        assert_eq!(rd.stats.overdrawn, 0);
    }
}
