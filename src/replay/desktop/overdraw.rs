//! Which bitmap updates of an interval later ones draw over, read from
//! the PDUs' headers alone: those need not be decoded when only the
//! desktop at the interval's end is shown (a sampled frame, a PNG at a
//! time, a seek). See [`super::render::Renderer::apply_interval`].

use ironrdp_pdu::bitmap::BitmapUpdateData;

use super::bitmap_pdus::{bitmap_updates, slow_path_bitmap, slow_path_update};
use super::region::Rect;
use crate::protocol::rdp::pdu::demand_active_size;
use crate::recording::{Event, TimedEvent};

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

/// For each of `events`, whether bitmap updates after it in `events` draw
/// every pixel it draws, so that skipping it leaves the same desktop at the
/// end. `size` is the desktop's size before the first event; fast-path
/// output is recorded on `fastpath_channel`.
pub(super) fn overdrawn(
    events: &[TimedEvent],
    size: (u16, u16),
    fastpath_channel: u32,
) -> Vec<bool> {
    // The desktop size each event meets (a resize may come between).
    let mut size = size;
    let sizes: Vec<(u16, u16)> = events
        .iter()
        .map(|ev| {
            if let Event::Output { channel, data, .. } = &ev.event
                && *channel != fastpath_channel
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
        let (w, h) = sizes[i];
        let rects = if *channel == fastpath_channel {
            bitmap_rects(data, w, h)
        } else {
            slow_path_bitmap_rects(data, w, h)
        };
        // Anything else may resize or draw: nothing before it counts
        // as covered by what comes after.
        let Some((rects, all_drawn)) = rects else {
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
    skip
}

/// What a fast-path PDU draws, read from its headers without decoding a
/// bitmap: `Some` only for a PDU made of whole (unfragmented, not
/// bulk-compressed) bitmap updates, with the rectangles the decoder draws
/// (those inside a `width` x `height` desktop whose declared bitmap size
/// matches, as ironrdp-session checks before drawing).
fn bitmap_rects(data: &[u8], width: u16, height: u16) -> Option<(Vec<Rect>, bool)> {
    Some(rects_drawn(&bitmap_updates(data)?, width, height))
}

/// [`bitmap_rects`] of a slow-path PDU (channels other than fast-path
/// output): its rectangles if it is a bitmap update, as
/// [`super::render::Renderer::apply`] would draw it; `None` for any other PDU, a desktop
/// resize included.
fn slow_path_bitmap_rects(data: &[u8], width: u16, height: u16) -> Option<(Vec<Rect>, bool)> {
    if demand_active_size(data).is_some() {
        return None;
    }
    let update = slow_path_update(data)?;
    // Decoded as `apply` decodes it, where a panic is a PDU not drawn.
    let bitmap = std::panic::catch_unwind(|| slow_path_bitmap(&update))
        .ok()?
        .ok()??;
    Some(rects_drawn(&[bitmap], width, height))
}

/// The rectangles of `updates` the renderer draws on a `width` x `height`
/// desktop, and whether it draws all of them.
fn rects_drawn(updates: &[BitmapUpdateData<'_>], width: u16, height: u16) -> (Vec<Rect>, bool) {
    let (mut rects, mut all_drawn) = (Vec::new(), true);
    for update in updates {
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
            rects.push(Rect::of_checked(r));
        }
    }
    (rects, all_drawn)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rectangle_is_covered_only_when_later_ones_cover_all_of_it() {
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
    }
}
