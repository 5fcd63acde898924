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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{DesktopSize, Protocol, Stream};
    use bytes::Bytes;
    use ironrdp_pdu::bitmap::{BitmapData, BitmapUpdateData, Compression};
    use ironrdp_pdu::geometry::InclusiveRectangle;

    fn meta() -> SessionMeta {
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
            protocol_info: serde_json::json!({"io_channel": 1003, "user_channel": 1007}),
        }
    }

    fn output(channel: u32, data: Vec<u8>) -> Event {
        Event::Output {
            channel,
            stream: Stream::Stdout,
            data: Bytes::from(data),
        }
    }

    /// A fast-path output PDU holding one uncompressed 32 bpp bitmap update.
    fn fast_path_bitmap(left: u16, top: u16, bgra: &[u8]) -> Vec<u8> {
        let w = u16::try_from(bgra.len() / 4).expect("small");
        let update = BitmapUpdateData {
            rectangles: vec![BitmapData {
                rectangle: InclusiveRectangle {
                    left,
                    top,
                    right: left + w - 1,
                    bottom: top,
                },
                width: w,
                height: 1,
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
                skipped: 0
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
}
