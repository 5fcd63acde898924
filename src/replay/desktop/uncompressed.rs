//! Uncompressed 24 and 32 bpp bitmaps ([MS-RDPBCGR] 2.2.9.1.1.3.1.2.2,
//! what a target sends when no compression was agreed, or for a region
//! compression would not shrink), drawn straight into the replay's
//! framebuffer; and the pixels of interleaved RLE bitmaps at 24 bpp once
//! ironrdp-graphics has decoded them ([`draw_packed_24`]).
//!
//! ironrdp-session copies these pixel by pixel through its colour
//! conversion; on an office-like 1920x1080 replay that was 6 % of the MP4
//! export's CPU. Here each row is converted in one pass.
//!
//! It draws exactly what ironrdp draws (the renderer's mixed-PDU test
//! compares the two pixel for pixel, rows short and with bytes to spare
//! included): rows bottom-up, each padded to 4 bytes; B, G, R and for
//! 32 bpp an unused byte; drawn opaque. A bitmap ironrdp would refuse, or
//! another depth, is refused before a pixel is drawn, so the caller can
//! hand it to ironrdp unchanged.

use super::planar::Target;

/// Why a bitmap was not drawn (nothing of it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UncompressedError {
    #[error("not 24 or 32 bits per pixel")]
    Depth,
    #[error("data length does not fit the bitmap's size")]
    Length,
    #[error("destination outside the framebuffer or wider than the bitmap")]
    Destination,
}

/// Draw the `bm_w` x `bm_h` bitmap `data` of `bpp` bits per pixel into
/// `to`, `to.width` columns of each row.
pub fn draw(
    data: &[u8],
    bpp: u16,
    bm_w: usize,
    bm_h: usize,
    to: Target<'_>,
) -> Result<(), UncompressedError> {
    let depth = match bpp {
        24 => 3,
        32 => 4,
        _ => return Err(UncompressedError::Depth),
    };
    let row_len = bm_w * depth;
    let padded = (row_len + 3) & !3;
    // ironrdp keeps the first `bm_h` padded rows when rows are padded, and
    // otherwise wants exactly `bm_h` rows.
    let enough = if padded == row_len {
        Some(data.len()) == row_len.checked_mul(bm_h)
    } else {
        padded
            .checked_mul(bm_h)
            .is_some_and(|need| data.len() >= need)
    };
    if !enough || padded == 0 {
        return Err(UncompressedError::Length);
    }
    draw_rows(data, depth, padded, bm_w, bm_h, to)
}

/// Draw `data` as `bm_h` bottom-up rows of `bm_w` BGR pixels with no
/// padding: what ironrdp-graphics' interleaved RLE decoder writes at
/// 24 bpp, and what ironrdp then draws just as [`draw`] does.
pub fn draw_packed_24(
    data: &[u8],
    bm_w: usize,
    bm_h: usize,
    to: Target<'_>,
) -> Result<(), UncompressedError> {
    let row_len = bm_w * 3;
    if row_len == 0 || Some(data.len()) != row_len.checked_mul(bm_h) {
        return Err(UncompressedError::Length);
    }
    draw_rows(data, 3, row_len, bm_w, bm_h, to)
}

/// The rows of `depth` bytes a pixel, `stride` bytes apart, bottom-up.
fn draw_rows(
    data: &[u8],
    depth: usize,
    stride: usize,
    bm_w: usize,
    bm_h: usize,
    to: Target<'_>,
) -> Result<(), UncompressedError> {
    // The destination is checked before anything is drawn.
    let end = (to.y + bm_h)
        .checked_mul(to.stride)
        .ok_or(UncompressedError::Destination)?;
    if to.width > bm_w || end > to.fb.len() || (to.x + to.width) * 4 > to.stride {
        return Err(UncompressedError::Destination);
    }
    for (k, src) in data.chunks(stride).take(bm_h).enumerate() {
        let at = (to.y + bm_h - 1 - k) * to.stride + to.x * 4;
        let (Some(dst), Some(src)) = (
            to.fb.get_mut(at..at + to.width * 4),
            src.get(..to.width * depth),
        ) else {
            continue;
        };
        if depth == 4 {
            for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
                d.copy_from_slice(&[s[2], s[1], s[0], 0xff]);
            }
        } else {
            for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(3)) {
                d.copy_from_slice(&[s[2], s[1], s[0], 0xff]);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4x4 RGBA framebuffer of zeros.
    fn fb() -> Vec<u8> {
        vec![0; 4 * 4 * 4]
    }

    fn target(fb: &mut [u8], x: usize, y: usize, width: usize) -> Target<'_> {
        Target {
            fb,
            stride: 16,
            x,
            y,
            width,
        }
    }

    #[test]
    fn rows_land_bottom_up_as_opaque_rgb() {
        // 2x2 at 24 bpp: rows of 6 bytes padded to 8, the bottom row first.
        let data = [
            1, 2, 3, 4, 5, 6, 0, 0, // bottom row: BGR (1,2,3), (4,5,6)
            7, 8, 9, 10, 11, 12, 0, 0, // top row
        ];
        let mut fb = fb();
        draw(&data, 24, 2, 2, target(&mut fb, 1, 1, 2)).unwrap();
        let px = |x: usize, y: usize| &fb[y * 16 + x * 4..][..4];
        assert_eq!(px(1, 1), [9, 8, 7, 0xff]);
        assert_eq!(px(2, 1), [12, 11, 10, 0xff]);
        assert_eq!(px(1, 2), [3, 2, 1, 0xff]);
        assert_eq!(px(2, 2), [6, 5, 4, 0xff]);
        assert_eq!(px(0, 0), [0; 4]);
        assert_eq!(px(3, 3), [0; 4]);
    }

    #[test]
    fn packed_rows_land_bottom_up_and_need_the_exact_length() {
        // 2x2 at 24 bpp, rows of 6 bytes with no padding.
        let data = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        let mut fb = fb();
        draw_packed_24(&data, 2, 2, target(&mut fb, 1, 1, 2)).unwrap();
        let px = |x: usize, y: usize| &fb[y * 16 + x * 4..][..4];
        assert_eq!(px(1, 1), [9, 8, 7, 0xff]);
        assert_eq!(px(2, 1), [12, 11, 10, 0xff]);
        assert_eq!(px(1, 2), [3, 2, 1, 0xff]);
        assert_eq!(px(2, 2), [6, 5, 4, 0xff]);
        for short_or_long in [&data[..11], &[0; 13][..], &[0; 16][..]] {
            let mut fb = vec![7; 64];
            assert_eq!(
                draw_packed_24(short_or_long, 2, 2, target(&mut fb, 0, 0, 2)),
                Err(UncompressedError::Length)
            );
            assert!(fb.iter().all(|&b| b == 7));
        }
    }

    #[test]
    fn the_unused_byte_of_32_bpp_is_not_alpha() {
        let data = [1, 2, 3, 0, 4, 5, 6, 0x80];
        let mut fb = fb();
        draw(&data, 32, 2, 1, target(&mut fb, 0, 0, 1)).unwrap();
        assert_eq!(&fb[..8], [3, 2, 1, 0xff, 0, 0, 0, 0], "one column asked");
    }

    #[test]
    fn refusals_draw_nothing() {
        // (data, bpp, bitmap width and height, destination x and width, why)
        type Case = (
            &'static [u8],
            u16,
            usize,
            usize,
            usize,
            usize,
            UncompressedError,
        );
        let cases: [Case; 6] = [
            (&[0; 8], 16, 2, 1, 0, 2, UncompressedError::Depth),
            (&[0; 7], 32, 2, 1, 0, 2, UncompressedError::Length),
            (&[0; 9], 32, 2, 1, 0, 2, UncompressedError::Length),
            (&[0; 7], 24, 2, 1, 0, 2, UncompressedError::Length),
            (&[0; 8], 32, 2, 1, 3, 2, UncompressedError::Destination),
            (&[0; 8], 32, 2, 1, 0, 3, UncompressedError::Destination),
        ];
        for (data, bpp, w, h, x, width, why) in cases {
            let mut fb = vec![7; 64];
            assert_eq!(
                draw(data, bpp, w, h, target(&mut fb, x, 0, width)),
                Err(why)
            );
            assert!(fb.iter().all(|&b| b == 7), "{why:?} drew");
        }
        // A bitmap reaching below the framebuffer.
        let mut fb = vec![7; 64];
        let r = draw(&[0; 32], 32, 2, 4, target(&mut fb, 0, 1, 2));
        assert_eq!(r, Err(UncompressedError::Destination));
        assert!(fb.iter().all(|&b| b == 7));
    }
}
