//! Rectangles of the desktop, and the region a replay changed since a
//! frame was last taken ([`Damage`]).

use ironrdp_pdu::geometry::InclusiveRectangle;

/// A rectangle of the desktop, in pixels (exclusive right and bottom).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    /// An inclusive rectangle the caller has checked is well formed (its
    /// right edge not left of its left, its bottom not above its top): a
    /// bitmap's destination once the decoder accepted it. Not a `From`,
    /// which would offer the unchecked conversion to everyone.
    pub(super) fn of_checked(r: &InclusiveRectangle) -> Rect {
        Rect {
            x: u32::from(r.left),
            y: u32::from(r.top),
            width: u32::from(r.right - r.left) + 1,
            height: u32::from(r.bottom - r.top) + 1,
        }
    }

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

    pub(super) fn area(self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    fn right(self) -> u32 {
        self.x + self.width
    }

    fn bottom(self) -> u32 {
        self.y + self.height
    }

    /// Whether every pixel of `o` is in `self`.
    pub(super) fn contains(self, o: Rect) -> bool {
        self.x <= o.x && self.y <= o.y && o.right() <= self.right() && o.bottom() <= self.bottom()
    }

    /// What is left of `self` outside `cut`: up to four rectangles.
    pub(super) fn minus(self, cut: Rect, out: &mut Vec<Rect>) {
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
