//! Rectangles and monitors in root-window coordinates.

/// An axis-aligned rectangle in root-window (screen) pixels; `x`/`y` is the top-left corner.
///
/// Edges are computed in `i64`, so no combination of fields overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rect {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Rect {
    /// A rectangle from its top-left corner and size.
    pub const fn new(x: i32, y: i32, width: u32, height: u32) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    /// True if the rectangle covers no pixel.
    pub const fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    /// One past the right edge.
    pub const fn right(&self) -> i64 {
        self.x as i64 + self.width as i64
    }

    /// One past the bottom edge.
    pub const fn bottom(&self) -> i64 {
        self.y as i64 + self.height as i64
    }

    /// True if the pixel at (`px`, `py`) lies inside.
    pub fn contains_point(&self, px: i64, py: i64) -> bool {
        px >= i64::from(self.x)
            && px < self.right()
            && py >= i64::from(self.y)
            && py < self.bottom()
    }

    /// True if `other` lies entirely inside `self` (an empty `other` is contained anywhere).
    pub fn contains(&self, other: &Rect) -> bool {
        other.is_empty()
            || (other.x >= self.x
                && other.y >= self.y
                && other.right() <= self.right()
                && other.bottom() <= self.bottom())
    }

    /// The overlap of two rectangles, or `None` if they share no pixel.
    pub fn intersection(&self, other: &Rect) -> Option<Rect> {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = self.right().min(other.right());
        let y1 = self.bottom().min(other.bottom());
        let width = u32::try_from(x1 - i64::from(x0)).ok()?;
        let height = u32::try_from(y1 - i64::from(y0)).ok()?;
        let r = Rect::new(x0, y0, width, height);
        (!r.is_empty()).then_some(r)
    }

    /// True if the two rectangles share at least one pixel.
    pub fn intersects(&self, other: &Rect) -> bool {
        self.intersection(other).is_some()
    }

    /// The rectangle moved so that `origin` becomes (0, 0), e.g. a damage rectangle made
    /// relative to the monitor it falls on.
    pub fn relative_to(&self, origin: &Rect) -> Rect {
        Rect::new(
            self.x.saturating_sub(origin.x),
            self.y.saturating_sub(origin.y),
            self.width,
            self.height,
        )
    }
}

/// One monitor: a region of the X screen, as RandR 1.5 reports it (`RRGetMonitors`).
///
/// When the server has no RandR 1.5 or reports no monitor, the whole root window is a single
/// monitor named `"root"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    /// RandR monitor name (e.g. `"DP-1"`, `"screen"` on Xvfb), or `"root"` for the fallback.
    pub name: String,
    /// True for the primary monitor.
    pub primary: bool,
    /// Where the monitor is, in root-window pixels, clipped to the root window.
    pub rect: Rect,
}

#[cfg(test)]
mod tests {
    use super::Rect;

    #[test]
    fn intersection_and_containment() {
        let a = Rect::new(0, 0, 100, 50);
        let b = Rect::new(90, 40, 20, 20);
        assert_eq!(a.intersection(&b), Some(Rect::new(90, 40, 10, 10)));
        assert!(a.intersects(&b));
        assert!(!a.contains(&b));
        assert!(a.contains(&Rect::new(10, 10, 90, 40)));
        // Touching edges share no pixel.
        assert_eq!(a.intersection(&Rect::new(100, 0, 10, 10)), None);
        assert_eq!(a.intersection(&Rect::new(0, 0, 0, 10)), None);
        // Extreme values do not overflow.
        let far = Rect::new(i32::MAX, i32::MAX, u32::MAX, u32::MAX);
        assert_eq!(a.intersection(&far), None);
        assert!(far.contains_point(i64::from(i32::MAX), i64::from(i32::MAX)));
        assert_eq!(
            Rect::new(700, 10, 5, 5).relative_to(&Rect::new(640, 0, 640, 720)),
            Rect::new(60, 10, 5, 5)
        );
    }
}
