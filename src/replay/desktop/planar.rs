//! RDP 6.0 planar bitmaps ([MS-RDPEGDI] 2.2.2.5.1, what a target sends for
//! a 32 bpp desktop), decoded straight into the replay's framebuffer.
//!
//! ironrdp-graphics decodes a planar bitmap into an RGB24 buffer (a
//! division per pixel to find its chroma), which ironrdp-session then
//! copies pixel by pixel into its image; on full-screen redraws that was
//! most of the replay's own work. Here the planes are decompressed once and
//! converted row by row into the framebuffer.
//!
//! It draws exactly what ironrdp draws (the unit tests compare the two
//! pixel for pixel on every kind of stream): the same planes, the same
//! colour conversion (YCoCg with its colour loss level, chroma subsampling,
//! R and B swapped without alpha), bottom-up rows. A stream ironrdp would
//! refuse, or one this decoder does not take (see [`PlanarError`]), is
//! refused before a pixel is drawn, so the caller can hand it to ironrdp
//! unchanged.

/// Why a stream was not drawn (nothing of it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlanarError {
    #[error("empty bitmap or no header")]
    Empty,
    #[error("colour planes shorter than the bitmap needs")]
    Short,
    #[error("invalid run-length segment")]
    Rle,
    #[error("destination outside the framebuffer")]
    Destination,
}

/// The largest run a segment decodes to: 2 with 15 raw bytes counted as
/// run (`32 + 15`).
const MAX_SEGMENT: usize = 47;

/// Reusable plane buffers (one decoder per replay).
#[derive(Debug, Default)]
pub struct PlanarDecoder {
    planes: Vec<u8>,
}

/// Where the decoded bitmap goes: `fb` holds RGBA pixels, `stride` bytes a
/// row; the bitmap's first `width` columns land with their top left at
/// (`x`, `y`).
pub struct Target<'a> {
    pub fb: &'a mut [u8],
    pub stride: usize,
    pub x: usize,
    pub y: usize,
    pub width: usize,
}

/// The stream's format byte.
#[derive(Debug, Clone, Copy)]
struct Header {
    /// Colour loss level; 0: ARGB planes, else AYCoCg.
    cll: u8,
    subsampled: bool,
    rle: bool,
    alpha: bool,
}

impl Header {
    fn parse(b: u8) -> Header {
        let cll = b & 0x07;
        Header {
            cll,
            // ARGB planes are never subsampled (ironrdp ignores the bit).
            subsampled: cll != 0 && b & 0x08 != 0,
            rle: b & 0x10 != 0,
            alpha: b & 0x20 == 0,
        }
    }
}

impl PlanarDecoder {
    /// Decode the `bm_w` x `bm_h` planar stream `data` and draw its rows
    /// (bottom-up in the stream) into `to`, `to.width` columns of each.
    pub fn draw(
        &mut self,
        data: &[u8],
        bm_w: usize,
        bm_h: usize,
        to: Target<'_>,
    ) -> Result<(), PlanarError> {
        let (&first, rest) = data.split_first().ok_or(PlanarError::Empty)?;
        if bm_w == 0 || bm_h == 0 || to.width == 0 || to.width > bm_w {
            return Err(PlanarError::Empty);
        }
        let head = Header::parse(first);
        let body = if head.rle {
            rest
        } else {
            // A padding byte ends an uncompressed stream.
            rest.split_last().ok_or(PlanarError::Empty)?.1
        };
        let full = bm_w.checked_mul(bm_h).ok_or(PlanarError::Short)?;
        full.checked_mul(4).ok_or(PlanarError::Short)?;
        let (cw, ch) = if head.subsampled {
            (bm_w.div_ceil(2), bm_h.div_ceil(2))
        } else {
            (bm_w, bm_h)
        };
        let chroma = cw * ch;
        // The destination is checked before anything is decoded.
        let last_row_end = (to.y + bm_h - 1)
            .checked_mul(to.stride)
            .and_then(|v| v.checked_add((to.x + to.width) * 4))
            .ok_or(PlanarError::Destination)?;
        if last_row_end > to.fb.len() || (to.x + to.width) * 4 > to.stride {
            return Err(PlanarError::Destination);
        }
        let planes: &[u8] = if head.rle {
            let min = |w: usize, h: usize| h.saturating_mul(w.div_ceil(MAX_SEGMENT));
            let needed = min(bm_w, bm_h) * (1 + usize::from(head.alpha)) + min(cw, ch) * 2;
            if body.len() < needed {
                return Err(PlanarError::Short);
            }
            self.planes.resize(full + 2 * chroma, 0);
            let (luma, chromas) = self.planes.split_at_mut(full);
            let (p1, p2) = chromas.split_at_mut(chroma);
            let mut at = 0;
            if head.alpha {
                // Decoded (it must be valid) and dropped: the desktop is opaque.
                at += rle_plane(body, luma, bm_w, bm_h)?;
            }
            at += rle_plane(&body[at..], luma, bm_w, bm_h)?;
            at += rle_plane(&body[at..], p1, cw, ch)?;
            rle_plane(&body[at..], p2, cw, ch)?;
            &self.planes
        } else {
            let skip = if head.alpha { full } else { 0 };
            if body.len() < skip + full + 2 * chroma {
                return Err(PlanarError::Short);
            }
            &body[skip..]
        };
        let (p0, rest) = planes.split_at(full);
        let (p1, rest) = rest.split_at(chroma);
        let p2 = &rest[..chroma];
        for row in 0..bm_h {
            // Bottom-up: the stream's last row is the top one.
            let src = bm_h - 1 - row;
            let at = (to.y + row) * to.stride + to.x * 4;
            let dst = &mut to.fb[at..at + to.width * 4];
            let y_row = &p0[src * bm_w..][..to.width];
            if head.cll == 0 {
                // R, G and B planes, all full size.
                let g = &p1[src * bm_w..][..to.width];
                let b = &p2[src * bm_w..][..to.width];
                argb_row(dst, y_row, g, b);
            } else {
                let shift = usize::from(head.subsampled);
                let c_row = (src >> shift) * cw;
                let co = &p1[c_row..c_row + cw];
                let cg = &p2[c_row..c_row + cw];
                ycocg_row(dst, y_row, co, cg, head, shift);
            }
        }
        Ok(())
    }
}

/// One row of ARGB planes: R, G and B as they are.
fn argb_row(dst: &mut [u8], r: &[u8], g: &[u8], b: &[u8]) {
    for (((px, &r), &g), &b) in dst.chunks_exact_mut(4).zip(r).zip(g).zip(b) {
        px.copy_from_slice(&[r, g, b, 0xff]);
    }
}

/// One row of AYCoCg planes to RGB, as ironrdp converts them: Co and Cg
/// shifted left by the colour loss level less one (in 8 bits, then
/// signed), R = Y - Cg + Co, G = Y + Cg, B = Y - Cg - Co, clamped; without
/// alpha R and B trade places.
fn ycocg_row(dst: &mut [u8], y: &[u8], co: &[u8], cg: &[u8], head: Header, shift: usize) {
    let cshift = u32::from(head.cll - 1);
    let clamp = |v: i16| v.clamp(0, 255) as u8;
    for (col, (px, &y)) in dst.chunks_exact_mut(4).zip(y).enumerate() {
        let c = col >> shift;
        let co = i16::from((co[c] << cshift) as i8);
        let cg = i16::from((cg[c] << cshift) as i8);
        let y = i16::from(y);
        let t = y - cg;
        let (r, g, b) = (clamp(t + co), clamp(y + cg), clamp(t - co));
        if head.alpha {
            px.copy_from_slice(&[r, g, b, 0xff]);
        } else {
            px.copy_from_slice(&[b, g, r, 0xff]);
        }
    }
}

/// Decompress one run-length plane of `w` x `h` into `out` (at least
/// `w * h` bytes); returns the bytes of `src` it took.
fn rle_plane(src: &[u8], out: &mut [u8], w: usize, h: usize) -> Result<usize, PlanarError> {
    let mut at = 0;
    for row in 0..h {
        let (done, line) = out[..(row + 1) * w].split_at_mut(row * w);
        at += rle_line(&src[at..], line)?;
        if row > 0 {
            let above = &done[(row - 1) * w..];
            // Each value is a delta from the one above: even d is d/2,
            // odd d is 255 - (d-1)/2, that is, d/2 with every bit flipped.
            for (v, &a) in line.iter_mut().zip(above) {
                let d = *v;
                *v = a.wrapping_add((d >> 1) ^ 0u8.wrapping_sub(d & 1));
            }
        }
    }
    Ok(at)
}

/// One scanline of segments: a control byte (low nibble: run length,
/// high nibble: raw bytes, runs of 1 and 2 meaning 16 and 32 plus the high
/// nibble and no raw bytes), raw bytes, then the run repeating the last
/// raw byte of the line so far (0 at its start).
fn rle_line(src: &[u8], line: &mut [u8]) -> Result<usize, PlanarError> {
    let (mut at, mut col, mut last) = (0, 0, 0u8);
    while col < line.len() {
        let control = *src.get(at).ok_or(PlanarError::Rle)?;
        at += 1;
        if control == 0 {
            return Err(PlanarError::Rle);
        }
        let (low, high) = (usize::from(control & 0x0f), usize::from(control >> 4));
        let (run, raw) = match low {
            1 => (16 + high, 0),
            2 => (32 + high, 0),
            n => (n, high),
        };
        let raw_bytes = src.get(at..at + raw).ok_or(PlanarError::Rle)?;
        at += raw;
        if col + raw + run > line.len() {
            return Err(PlanarError::Rle);
        }
        // Segments are short (at most 15 raw bytes, a run of at most 47):
        // where the line and the source have room, whole 16- and 48-byte
        // blocks are written instead of exact lengths (one vector store, no
        // call to memcpy or memset); what they write past the segment is
        // written again by the segments after it, which fill the line.
        match (
            line.get_mut(col..col + 16),
            src.get(at - raw..at - raw + 16),
        ) {
            (Some(dst), Some(block)) => dst.copy_from_slice(block),
            _ => line[col..col + raw].copy_from_slice(raw_bytes),
        }
        if let Some(&b) = raw_bytes.last() {
            last = b;
        }
        col += raw;
        match line.get_mut(col..col + MAX_SEGMENT + 1) {
            Some(dst) => dst.copy_from_slice(&[last; MAX_SEGMENT + 1]),
            None => line[col..col + run].fill(last),
        }
        col += run;
    }
    Ok(at)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ironrdp_graphics::image_processing::PixelFormat;
    use ironrdp_graphics::rdp6::BitmapStreamEncoder;
    use ironrdp_pdu::bitmap::{BitmapData, BitmapUpdateData, Compression};
    use ironrdp_pdu::geometry::InclusiveRectangle;
    use ironrdp_session::fast_path::ProcessorBuilder;
    use ironrdp_session::image::DecodedImage;
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

    /// A plane with runs, smooth stretches and noise, so the run-length
    /// coding takes every kind of segment.
    fn plane(rng: &mut StdRng, w: usize, h: usize) -> Vec<u8> {
        let mut p = Vec::with_capacity(w * h);
        for y in 0..h {
            let kind = rng.gen_range(0..4);
            let base: u8 = rng.r#gen();
            for x in 0..w {
                p.push(match kind {
                    0 => base,
                    1 => base.wrapping_add((x + y) as u8),
                    2 => rng.r#gen(),
                    _ if x % 20 < 11 => base,
                    _ => rng.r#gen(),
                });
            }
        }
        p
    }

    /// `p` (`w` x `h`) run-length coded as a target codes it.
    fn rle(p: &[u8], w: usize, h: usize) -> Vec<u8> {
        let mut buf = vec![0; w * h * 8 + 256];
        let it = || p.iter().copied();
        let n = BitmapStreamEncoder::new(w, h)
            .encode_channels_stream((it(), it(), it()), &mut buf, true)
            .expect("encode");
        // Header, then three copies of the plane: keep the first.
        let mut scratch = vec![0; w * h];
        let len = rle_plane(&buf[1..n], &mut scratch, w, h).expect("own plane");
        assert_eq!(scratch, p, "the plane decodes back");
        buf[1..1 + len].to_vec()
    }

    /// A stream with this format byte over random planes.
    pub(crate) fn stream(rng: &mut StdRng, format: u8, w: usize, h: usize) -> Vec<u8> {
        let head = Header::parse(format);
        let (cw, ch) = if head.subsampled {
            (w.div_ceil(2), h.div_ceil(2))
        } else {
            (w, h)
        };
        let mut planes = Vec::new();
        if head.alpha {
            planes.push((plane(rng, w, h), w, h));
        }
        planes.push((plane(rng, w, h), w, h));
        planes.push((plane(rng, cw, ch), cw, ch));
        planes.push((plane(rng, cw, ch), cw, ch));
        let mut out = vec![format];
        for (p, pw, ph) in planes {
            if head.rle {
                out.extend_from_slice(&rle(&p, pw, ph));
            } else {
                out.extend_from_slice(&p);
            }
        }
        if !head.rle {
            out.push(0);
        }
        out
    }

    const W: u16 = 150;
    const H: u16 = 90;

    /// ironrdp's drawing of a `bm_w` x `bm_h` planar bitmap at (`x`, `y`),
    /// `rect_w` columns wide, onto a `W` x `H` black desktop.
    fn ironrdp(data: &[u8], bm_w: u16, bm_h: u16, x: u16, y: u16, rect_w: u16) -> Vec<u8> {
        let mut image = DecodedImage::new(PixelFormat::RgbA32, W, H);
        let mut processor = ProcessorBuilder {
            io_channel_id: 1003,
            user_channel_id: 1007,
            share_id: 0,
            enable_server_pointer: false,
            pointer_software_rendering: false,
        }
        .build();
        let update = BitmapUpdateData {
            rectangles: vec![BitmapData {
                rectangle: InclusiveRectangle {
                    left: x,
                    top: y,
                    right: x + rect_w - 1,
                    bottom: y + bm_h - 1,
                },
                width: bm_w,
                height: bm_h,
                bits_per_pixel: 32,
                compression_flags: Compression::BITMAP_COMPRESSION
                    | Compression::NO_BITMAP_COMPRESSION_HDR,
                compressed_data_header: None,
                bitmap_data: data,
            }],
        };
        processor
            .process_bitmap_update(&mut image, update)
            .expect("process");
        image.data().to_vec()
    }

    fn ours(
        data: &[u8],
        bm_w: u16,
        bm_h: u16,
        x: u16,
        y: u16,
        rect_w: u16,
    ) -> Result<Vec<u8>, PlanarError> {
        let mut fb = vec![0; usize::from(W) * usize::from(H) * 4];
        let r = PlanarDecoder::default().draw(
            data,
            usize::from(bm_w),
            usize::from(bm_h),
            Target {
                fb: &mut fb,
                stride: usize::from(W) * 4,
                x: usize::from(x),
                y: usize::from(y),
                width: usize::from(rect_w),
            },
        );
        match r {
            Ok(()) => Ok(fb),
            Err(e) => {
                assert!(fb.iter().all(|&b| b == 0), "nothing drawn on {e}");
                Err(e)
            }
        }
    }

    /// Every format byte the header can hold: colour loss levels 0 to 7,
    /// subsampled or not, run-length coded or raw, with alpha or without.
    fn formats() -> impl Iterator<Item = u8> {
        0..0x40u8
    }

    #[test]
    fn every_kind_of_stream_draws_what_ironrdp_draws() {
        let mut rng = StdRng::seed_from_u64(6);
        let sizes = [
            (1, 1),
            (2, 3),
            (3, 5),
            (64, 64),
            (17, 33),
            (47, 2),
            (48, 3),
            (95, 7),
            (150, 1),
        ];
        let mut drawn = 0;
        for format in formats() {
            for &(w, h) in &sizes {
                let data = stream(&mut rng, format, usize::from(w), usize::from(h));
                let (x, y) = (rng.gen_range(0..=W - w), rng.gen_range(0..=H - h));
                // Sometimes fewer columns drawn than the bitmap has.
                let rect_w = if rng.gen_ratio(1, 3) {
                    rng.gen_range(1..=w)
                } else {
                    w
                };
                let theirs = ironrdp(&data, w, h, x, y, rect_w);
                let mine = ours(&data, w, h, x, y, rect_w)
                    .unwrap_or_else(|e| panic!("format {format:#x} {w}x{h}: {e}"));
                assert!(
                    mine == theirs,
                    "format {format:#x} {w}x{h} at {x},{y} ({rect_w} wide): pixels differ"
                );
                assert!(theirs.iter().any(|&b| b != 0));
                drawn += 1;
            }
        }
        assert_eq!(drawn, 64 * sizes.len());
    }

    #[test]
    fn damaged_streams_draw_nothing_or_what_ironrdp_draws() {
        let mut rng = StdRng::seed_from_u64(7);
        let (mut refused, mut same) = (0, 0);
        for round in 0..3000 {
            let format = rng.gen_range(0..0x40u8);
            let (w, h) = (rng.gen_range(1..40u16), rng.gen_range(1..40u16));
            let mut data = stream(&mut rng, format, usize::from(w), usize::from(h));
            match round % 3 {
                0 => data.truncate(rng.gen_range(0..data.len())),
                1 => {
                    for _ in 0..rng.gen_range(1..4) {
                        let i = rng.gen_range(0..data.len());
                        data[i] = rng.r#gen();
                    }
                }
                _ => data.extend((0..rng.gen_range(1..9)).map(|_| rng.r#gen::<u8>())),
            }
            match ours(&data, w, h, 0, 0, w) {
                Ok(mine) => {
                    assert!(
                        mine == ironrdp(&data, w, h, 0, 0, w),
                        "round {round}: pixels differ"
                    );
                    same += 1;
                }
                Err(_) => refused += 1,
            }
        }
        // Both outcomes were met (the checks above ran).
        assert!(
            refused > 100 && same > 100,
            "refused {refused}, drawn {same}"
        );
    }
}
