//! Replaying a recorded RDP session into a framebuffer, for PNG export.
//!
//! Pure: recorded server output PDUs in, RGBA pixels out. Fast-path PDUs
//! (channel 0) go through ironrdp-session's fast-path processor, which
//! decodes bitmap updates (raw, interleaved RLE, planar) with
//! ironrdp-graphics. Anything it cannot decode is skipped and counted.

use ironrdp_core::{ReadCursor, WriteBuf, decode};
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};
use ironrdp_pdu::slow_path;
use ironrdp_session::fast_path::{Processor, ProcessorBuilder};
use ironrdp_session::image::DecodedImage;

use crate::recording::{Event, SessionMeta, TimedEvent};

/// Largest desktop side the renderer accepts (guards hostile headers).
const MAX_SIDE: u32 = 8192;

/// What the replay did, for the person exporting.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RenderStats {
    pub decoded: u64,
    pub skipped: u64,
}

pub struct Renderer {
    image: DecodedImage,
    processor: Processor,
    out: WriteBuf,
    pub stats: RenderStats,
}

fn channel_id(meta: &SessionMeta, key: &str) -> u16 {
    meta.protocol_info
        .get(key)
        .and_then(|v| v.as_u64())
        .and_then(|v| u16::try_from(v).ok())
        .unwrap_or(0)
}

impl Renderer {
    pub fn new(meta: &SessionMeta) -> anyhow::Result<Renderer> {
        let Some(d) = meta.desktop.as_ref() else {
            anyhow::bail!("this recording has no desktop size (not an RDP recording?)");
        };
        if d.width == 0 || d.height == 0 || d.width > MAX_SIDE || d.height > MAX_SIDE {
            anyhow::bail!("implausible desktop size {}x{}", d.width, d.height);
        }
        let (w, h) = (d.width as u16, d.height as u16);
        let processor = ProcessorBuilder {
            io_channel_id: channel_id(meta, "io_channel"),
            user_channel_id: channel_id(meta, "user_channel"),
            share_id: meta
                .protocol_info
                .get("share_id")
                .and_then(|v| v.as_u64())
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0),
            enable_server_pointer: false,
            pointer_software_rendering: false,
        }
        .build();
        Ok(Renderer {
            image: DecodedImage::new(PixelFormat::RgbA32, w, h),
            processor,
            out: WriteBuf::new(),
            stats: RenderStats::default(),
        })
    }

    pub fn width(&self) -> u32 {
        u32::from(self.image.width())
    }

    pub fn height(&self) -> u32 {
        u32::from(self.image.height())
    }

    /// Apply one recorded event (only server output matters).
    pub fn apply(&mut self, ev: &Event) {
        let Event::Output { channel, data, .. } = ev else {
            return;
        };
        if *channel != 0 {
            self.apply_slow_path(data);
            return;
        }
        self.out.clear();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.processor
                .process(&mut self.image, data, &mut self.out, &mut None)
        }));
        match r {
            Ok(Ok(_)) => self.stats.decoded += 1,
            _ => self.stats.skipped += 1,
        }
    }

    /// A slow-path PDU (MCS user data: Share Control header onward). Only
    /// graphics updates matter; other share PDUs are passed over.
    fn apply_slow_path(&mut self, data: &[u8]) {
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
                        .map(|_| ())
                        .map_err(|_| ())
                }
                Ok(_) => Ok(()),
                Err(_) => Err(()),
            }
        }));
        match r {
            Ok(Ok(())) => self.stats.decoded += 1,
            _ => self.stats.skipped += 1,
        }
    }

    /// RGBA pixels, row by row, opaque.
    pub fn rgba(&self) -> Vec<u8> {
        let mut px = self.image.data().to_vec();
        for p in px.chunks_exact_mut(4) {
            p[3] = 0xff;
        }
        px
    }
}

/// Replay `events` up to and including time `at_us`.
pub fn render_at(
    meta: &SessionMeta,
    events: impl Iterator<Item = Result<TimedEvent, crate::recording::ReadError>>,
    at_us: u64,
) -> anyhow::Result<Renderer> {
    let mut r = Renderer::new(meta)?;
    for ev in events {
        let ev = ev?;
        if ev.t_us > at_us {
            break;
        }
        r.apply(&ev.event);
    }
    Ok(r)
}

/// Encode RGBA pixels as PNG.
pub fn write_png(w: u32, h: u32, rgba: &[u8], out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let mut enc = png::Encoder::new(out, w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header()?;
    wr.write_image_data(rgba)?;
    wr.finish()?;
    Ok(())
}
