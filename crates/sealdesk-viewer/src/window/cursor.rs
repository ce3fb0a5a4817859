//! The remote cursor shape, checked and scaled for the local pointer.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::CursorImage;

/// Largest accepted remote cursor, per side (the protocol's own limit is 128); larger images
/// show the default arrow.
pub const MAX_CURSOR_SIDE: u32 = 1024;

/// Largest cursor shown, per side, after scaling.
pub const MAX_CURSOR_SHOWN: u32 = 256;

/// The cursor follows the picture's scale within these bounds, so it stays usable when a big
/// remote screen is shown small.
const MIN_SCALE: f64 = 0.5;
const MAX_SCALE: f64 = 2.0;

/// Scales closer than this to the one already applied keep the current cursor (resizing the
/// window must not re-create it for every pixel).
const SCALE_STEP: f64 = 0.05;

/// A cursor ready for winit: straight RGBA at its final size.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Prepared {
    pub(crate) width: u16,
    pub(crate) height: u16,
    pub(crate) hot_x: u16,
    pub(crate) hot_y: u16,
    pub(crate) rgba: Vec<u8>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// True if the image can be shown: 1..=[`MAX_CURSOR_SIDE`] a side, 4 bytes per pixel.
pub(crate) fn acceptable(image: &CursorImage) -> bool {
    (1..=MAX_CURSOR_SIDE).contains(&image.width)
        && (1..=MAX_CURSOR_SIDE).contains(&image.height)
        && u64::from(image.width) * u64::from(image.height) * 4 == image.rgba.len() as u64
}

/// The scale the cursor gets for a picture shown at `picture_scale`.
pub(crate) fn cursor_scale(image: &CursorImage, picture_scale: f64) -> f64 {
    let s = if picture_scale.is_finite() && picture_scale > 0.0 {
        picture_scale.clamp(MIN_SCALE, MAX_SCALE)
    } else {
        1.0
    };
    let side = f64::from(image.width.max(image.height).max(1));
    s.min(f64::from(MAX_CURSOR_SHOWN) / side)
}

/// True if a cursor made at scale `applied` should be remade for `wanted`.
pub(crate) fn needs_update(applied: f64, wanted: f64) -> bool {
    (applied - wanted).abs() > SCALE_STEP
}

/// The image at `scale` (alpha-correct filtering), hotspot moved along and clamped inside;
/// `None` if the image is not [`acceptable`].
pub(crate) fn prepare(resizer: &mut Resizer, image: &CursorImage, scale: f64) -> Option<Prepared> {
    if !acceptable(image) {
        return None;
    }
    let size = |v: u32| -> u32 {
        let scaled = (f64::from(v) * scale).round();
        // Bounded by MAX_CURSOR_SIDE × MAX_SCALE; `as` saturates.
        (scaled as u32).clamp(1, MAX_CURSOR_SHOWN)
    };
    let (width, height) = if (scale - 1.0).abs() <= SCALE_STEP
        && image.width <= MAX_CURSOR_SHOWN
        && image.height <= MAX_CURSOR_SHOWN
    {
        (image.width, image.height)
    } else {
        (size(image.width), size(image.height))
    };
    let rgba = if (width, height) == (image.width, image.height) {
        image.rgba.clone()
    } else {
        let src = ImageRef::new(image.width, image.height, &image.rgba, PixelType::U8x4).ok()?;
        let mut dst = Image::new(width, height, PixelType::U8x4);
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom))
            .use_alpha(true);
        resizer.resize(&src, &mut dst, &options).ok()?;
        dst.into_vec()
    };
    let hot = |h: u32, from: u32, to: u32| -> u16 {
        let h = u64::from(h.min(from - 1)) * u64::from(to) / u64::from(from);
        u16::try_from(h.min(u64::from(to - 1))).unwrap_or(0)
    };
    Some(Prepared {
        width: u16::try_from(width).ok()?,
        height: u16::try_from(height).ok()?,
        hot_x: hot(image.hot_x, image.width, width),
        hot_y: hot(image.hot_y, image.height, height),
        rgba: for_platform(rgba),
    })
}

/// winit's X11 backend hands the bytes to Xcursor as they are, and Xcursor (XRender) takes
/// premultiplied alpha: premultiply there, or soft edges come out too bright.
#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
fn for_platform(mut rgba: Vec<u8>) -> Vec<u8> {
    for p in rgba.chunks_exact_mut(4) {
        if let [r, g, b, a] = p {
            let mul = |c: u8| -> u8 {
                let v = (u16::from(c) * u16::from(*a) + 127) / 255;
                u8::try_from(v).unwrap_or(u8::MAX)
            };
            (*r, *g, *b) = (mul(*r), mul(*g), mul(*b));
        }
    }
    rgba
}

#[cfg(not(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
)))]
fn for_platform(rgba: Vec<u8>) -> Vec<u8> {
    rgba
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, hot: (u32, u32), px: [u8; 4]) -> CursorImage {
        CursorImage {
            width: w,
            height: h,
            hot_x: hot.0,
            hot_y: hot.1,
            rgba: px.repeat((w * h) as usize),
        }
    }

    #[test]
    fn checks_and_hotspot() {
        let mut rs = Resizer::new();
        let ok = image(16, 16, (3, 4), [255, 255, 255, 255]);
        let p = prepare(&mut rs, &ok, 1.0).unwrap();
        assert_eq!((p.width, p.height, p.hot_x, p.hot_y), (16, 16, 3, 4));
        // Half size: hotspot halves.
        let p = prepare(&mut rs, &ok, 0.5).unwrap();
        assert_eq!((p.width, p.height, p.hot_x, p.hot_y), (8, 8, 1, 2));
        // A hotspot outside is clamped in.
        let far = image(16, 16, (1000, u32::MAX), [0, 0, 0, 255]);
        let p = prepare(&mut rs, &far, 2.0).unwrap();
        assert_eq!((p.width, p.height, p.hot_x, p.hot_y), (32, 32, 30, 30));
        assert!(p.hot_x < p.width && p.hot_y < p.height);
        // Malformed, empty and oversized images are refused.
        let mut short = ok.clone();
        short.rgba.pop();
        assert!(prepare(&mut rs, &short, 1.0).is_none());
        assert!(prepare(&mut rs, &image(0, 16, (0, 0), [0; 4]), 1.0).is_none());
        let huge = CursorImage {
            width: MAX_CURSOR_SIDE + 1,
            height: 1,
            hot_x: 0,
            hot_y: 0,
            rgba: vec![0; (MAX_CURSOR_SIDE as usize + 1) * 4],
        };
        assert!(prepare(&mut rs, &huge, 1.0).is_none());
        let absurd = CursorImage {
            width: u32::MAX,
            height: u32::MAX,
            hot_x: 0,
            hot_y: 0,
            rgba: vec![],
        };
        assert!(prepare(&mut rs, &absurd, 1.0).is_none());
    }

    #[test]
    fn large_cursors_are_shrunk_to_the_limit() {
        let mut rs = Resizer::new();
        let big = image(MAX_CURSOR_SIDE, 10, (5, 5), [10, 20, 30, 255]);
        let s = cursor_scale(&big, 1.0);
        let p = prepare(&mut rs, &big, s).unwrap();
        assert_eq!(u32::from(p.width), MAX_CURSOR_SHOWN);
        assert!(p.height >= 1);
        assert_eq!(
            p.rgba.len(),
            usize::from(p.width) * usize::from(p.height) * 4
        );
        assert_eq!(cursor_scale(&big, f64::NAN), 0.25);
        let small = image(32, 32, (0, 0), [0; 4]);
        assert_eq!(cursor_scale(&small, 0.1), 0.5);
        assert_eq!(cursor_scale(&small, 10.0), 2.0);
        assert!(!needs_update(1.0, 1.04));
        assert!(needs_update(1.0, 0.9));
    }

    #[cfg(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    ))]
    #[test]
    fn x11_gets_premultiplied_alpha() {
        let mut rs = Resizer::new();
        let half = image(2, 2, (0, 0), [255, 128, 0, 128]);
        let p = prepare(&mut rs, &half, 1.0).unwrap();
        assert_eq!(&p.rgba[..4], &[128, 64, 0, 128]);
    }
}
