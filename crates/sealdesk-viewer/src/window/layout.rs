//! Where the picture goes in the window (fit, aspect kept, centred) and the way back from a
//! window position to a picture pixel.

/// A `src_width × src_height` picture placed at (`x`, `y`) in the window, drawn
/// `width × height` pixels large. Every size is at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fit {
    pub(crate) x: u32,
    pub(crate) y: u32,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) src_width: u32,
    pub(crate) src_height: u32,
}

impl Fit {
    /// The largest placement of a `src_width × src_height` picture inside a
    /// `win_width × win_height` window with the aspect ratio kept (rounded to whole pixels),
    /// centred; `None` when either has no pixels.
    pub(crate) fn new(
        src_width: u32,
        src_height: u32,
        win_width: u32,
        win_height: u32,
    ) -> Option<Fit> {
        if src_width == 0 || src_height == 0 || win_width == 0 || win_height == 0 {
            return None;
        }
        let (sw, sh, ww, wh) = (
            u64::from(src_width),
            u64::from(src_height),
            u64::from(win_width),
            u64::from(win_height),
        );
        // Compare sw/sh with ww/wh without division; u32 × u32 fits u64.
        let (width, height) = if sw * wh <= ww * sh {
            // Height-limited: bars left and right.
            (div_round(sw * wh, sh).clamp(1, ww), wh)
        } else {
            // Width-limited: bars top and bottom.
            (ww, div_round(sh * ww, sw).clamp(1, wh))
        };
        // Both are at most the window's u32 sizes.
        let width = u32::try_from(width).unwrap_or(win_width);
        let height = u32::try_from(height).unwrap_or(win_height);
        Some(Fit {
            x: (win_width - width) / 2,
            y: (win_height - height) / 2,
            width,
            height,
            src_width,
            src_height,
        })
    }

    /// Drawn size over picture size (the same on both axes up to rounding).
    pub(crate) fn scale(&self) -> f64 {
        let sx = f64::from(self.width) / f64::from(self.src_width);
        let sy = f64::from(self.height) / f64::from(self.src_height);
        sx.min(sy)
    }

    /// True when the picture is drawn pixel for pixel.
    pub(crate) fn is_identity(&self) -> bool {
        self.width == self.src_width && self.height == self.src_height
    }

    /// The picture pixel shown at window position (`wx`, `wy`) (physical pixels from the
    /// window's top-left corner, as winit reports them); positions over the bars or outside
    /// the window clamp to the nearest edge pixel. Non-finite input clamps to the top-left.
    pub(crate) fn picture_at(&self, wx: f64, wy: f64) -> (u32, u32) {
        (
            axis(wx, self.x, self.width, self.src_width),
            axis(wy, self.y, self.height, self.src_height),
        )
    }

    /// The window pixel that shows the centre of picture pixel (`px`, `py`) (the inverse of
    /// [`Fit::picture_at`], for tests and the cursor).
    #[cfg(test)]
    pub(crate) fn window_at(&self, px: u32, py: u32) -> (f64, f64) {
        let x = f64::from(self.x)
            + (f64::from(px) + 0.5) * f64::from(self.width) / f64::from(self.src_width);
        let y = f64::from(self.y)
            + (f64::from(py) + 0.5) * f64::from(self.height) / f64::from(self.src_height);
        (x.floor(), y.floor())
    }
}

/// `a / b` rounded to nearest; `b > 0`.
fn div_round(a: u64, b: u64) -> u64 {
    (a + b / 2) / b
}

/// One axis of [`Fit::picture_at`].
fn axis(w: f64, offset: u32, drawn: u32, src: u32) -> u32 {
    let w = if w.is_finite() { w } else { 0.0 };
    // The centre of the window pixel under the pointer, relative to the picture's edge.
    let rel = w.floor() + 0.5 - f64::from(offset);
    let p = (rel * f64::from(src) / f64::from(drawn)).floor();
    let max = f64::from(src.saturating_sub(1));
    // `as` saturates and the value is already in 0..=max.
    p.clamp(0.0, max) as u32
}

#[cfg(test)]
mod tests {
    use super::Fit;

    #[test]
    fn letterbox_and_pillarbox() {
        // 16:9 into 16:10: bars top and bottom.
        let f = Fit::new(640, 360, 960, 600).unwrap();
        assert_eq!((f.x, f.y, f.width, f.height), (0, 30, 960, 540));
        assert!((f.scale() - 1.5).abs() < 1e-9);
        // 4:3 into 16:10: bars left and right.
        let f = Fit::new(400, 300, 960, 600).unwrap();
        assert_eq!((f.x, f.y, f.width, f.height), (80, 0, 800, 600));
        // Same aspect: no bars; same size: identity.
        let f = Fit::new(1920, 1080, 1280, 720).unwrap();
        assert_eq!((f.x, f.y, f.width, f.height), (0, 0, 1280, 720));
        assert!(Fit::new(1280, 720, 1280, 720).unwrap().is_identity());
    }

    #[test]
    fn degenerate_sizes_never_panic() {
        assert_eq!(Fit::new(0, 10, 100, 100), None);
        assert_eq!(Fit::new(10, 10, 0, 100), None);
        for &(sw, sh, ww, wh) in &[
            (1, u32::MAX, 1, 1),
            (u32::MAX, 1, 1, 1),
            (u32::MAX, u32::MAX, u32::MAX, 1),
            (1, 1, u32::MAX, u32::MAX),
            (3, 1, 2, 2),
            (100_000, 1, 800, 600),
        ] {
            let f = Fit::new(sw, sh, ww, wh).unwrap();
            assert!(f.width >= 1 && f.height >= 1);
            assert!(f.width <= ww && f.height <= wh);
            assert!(u64::from(f.x) + u64::from(f.width) <= u64::from(ww));
            assert!(u64::from(f.y) + u64::from(f.height) <= u64::from(wh));
            let (px, py) = f.picture_at(f64::NAN, f64::INFINITY);
            assert!(px < sw && py < sh);
            let (px, py) = f.picture_at(1e300, -1e300);
            assert!(px < sw && py < sh);
        }
    }

    #[test]
    fn pointer_positions_map_back_to_picture_pixels() {
        let f = Fit::new(640, 360, 960, 600).unwrap();
        // Bars clamp to the edge.
        assert_eq!(f.picture_at(10.0, 5.0), (7, 0));
        assert_eq!(f.picture_at(959.0, 599.0), (639, 359));
        assert_eq!(f.picture_at(-50.0, 2000.0), (0, 359));
        // Every picture pixel's centre comes back to it.
        for py in (0..360).step_by(7) {
            for px in (0..640).step_by(13) {
                let (wx, wy) = f.window_at(px, py);
                assert_eq!(f.picture_at(wx, wy), (px, py));
            }
        }
        // Downscaled: 1920×1080 shown at 1280×720.
        let f = Fit::new(1920, 1080, 1280, 720).unwrap();
        assert_eq!(f.picture_at(0.0, 0.0), (0, 0));
        assert_eq!(f.picture_at(640.0, 360.0), (960, 540));
        assert_eq!(f.picture_at(1279.0, 719.0), (1919, 1079));
    }
}
