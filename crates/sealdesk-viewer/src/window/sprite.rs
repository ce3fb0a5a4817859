//! The host's pointer drawn into the picture, for when it is not where the local pointer is —
//! someone at the host moved it, or the local pointer is outside the window. (Where the two
//! agree, the local pointer already shows the host's cursor shape, with no delay.)

use super::layout::Fit;
use super::CursorImage;

/// How far (picture pixels) the host's pointer may be from the local one and still count as
/// the same (the host reports where the injected move landed; rounding differs by a pixel).
pub(crate) const SAME_PLACE: u32 = 3;

/// Whether the sprite should be drawn: the host's pointer at `remote` (picture pixels), the
/// local one last sent at `local` (or outside the window).
pub(crate) fn visible(remote: (i32, i32), local: Option<(u16, u16)>) -> bool {
    match local {
        None => true,
        Some((lx, ly)) => {
            let dx = (i64::from(remote.0) - i64::from(lx)).unsigned_abs();
            let dy = (i64::from(remote.1) - i64::from(ly)).unsigned_abs();
            dx > u64::from(SAME_PLACE) || dy > u64::from(SAME_PLACE)
        }
    }
}

/// Draws `image` (straight-alpha RGBA) onto the `width × height` 0RGB buffer with its hotspot
/// on picture pixel `at`, scaled with the picture (nearest neighbour), clipped to the picture.
pub(crate) fn draw(buf: &mut [u32], width: u32, fit: &Fit, image: &CursorImage, at: (i32, i32)) {
    let (iw, ih) = (image.width, image.height);
    let pixels = u64::from(iw) * u64::from(ih);
    if iw == 0 || ih == 0 || image.rgba.len() as u64 != pixels * 4 {
        return;
    }
    let scale = fit.scale();
    if !scale.is_finite() || scale <= 0.0 {
        return;
    }
    // The sprite's top-left corner: its hotspot pixel covers picture pixel `at`.
    let x0 = f64::from(fit.x) + (f64::from(at.0) - f64::from(image.hot_x.min(iw - 1))) * scale;
    let y0 = f64::from(fit.y) + (f64::from(at.1) - f64::from(image.hot_y.min(ih - 1))) * scale;
    let sw = (f64::from(iw) * scale).ceil().min(4096.0) as i64;
    let sh = (f64::from(ih) * scale).ceil().min(4096.0) as i64;
    let (clip_x0, clip_y0) = (i64::from(fit.x), i64::from(fit.y));
    let (clip_x1, clip_y1) = (
        clip_x0 + i64::from(fit.width),
        clip_y0 + i64::from(fit.height),
    );
    for sy in 0..sh {
        let wy = y0.floor() as i64 + sy;
        if wy < clip_y0 || wy >= clip_y1 {
            continue;
        }
        let iy = ((sy as f64 / scale) as u32).min(ih - 1);
        for sx in 0..sw {
            let wx = x0.floor() as i64 + sx;
            if wx < clip_x0 || wx >= clip_x1 {
                continue;
            }
            let ix = ((sx as f64 / scale) as u32).min(iw - 1);
            let src = ((iy * iw + ix) * 4) as usize;
            let Some(&[r, g, b, a]) = image.rgba.get(src..src + 4) else {
                continue;
            };
            if a == 0 {
                continue;
            }
            let Some(dst) = usize::try_from(wy * i64::from(width) + wx)
                .ok()
                .and_then(|i| buf.get_mut(i))
            else {
                continue;
            };
            let blend = |s: u8, d: u32| -> u32 {
                (u32::from(s) * u32::from(a) + d * (255 - u32::from(a))) / 255
            };
            let (dr, dg, db) = ((*dst >> 16) & 0xff, (*dst >> 8) & 0xff, *dst & 0xff);
            *dst = (blend(r, dr) << 16) | (blend(g, dg) << 8) | blend(b, db);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sprite_lands_on_its_hotspot_scaled_and_clipped() {
        // A 4×2 picture drawn 2× at (10, 0) in a 30×4 window.
        let fit = Fit::new(4, 2, 30, 4).unwrap();
        assert_eq!((fit.x, fit.width, fit.height), (11, 8, 4));
        let mut buf = vec![0u32; 30 * 4];
        let red = CursorImage {
            width: 1,
            height: 1,
            hot_x: 0,
            hot_y: 0,
            rgba: vec![255, 0, 0, 255],
        };
        draw(&mut buf, 30, &fit, &red, (1, 1));
        // Picture pixel (1, 1) is window pixels x 13..15, y 2..4.
        let lit: Vec<usize> = (0..buf.len()).filter(|&i| buf[i] != 0).collect();
        assert_eq!(
            lit,
            vec![2 * 30 + 13, 2 * 30 + 14, 3 * 30 + 13, 3 * 30 + 14]
        );
        assert_eq!(fit.x + 2, 13);
        assert_eq!(buf[2 * 30 + 13], 0x00ff_0000);
        // Off the picture: clipped, nothing drawn; odd images: nothing, no panic.
        let mut buf = vec![0u32; 30 * 4];
        draw(&mut buf, 30, &fit, &red, (-5, 9));
        let bad = CursorImage {
            width: 3,
            height: 3,
            hot_x: 9,
            hot_y: 9,
            rgba: vec![1; 5],
        };
        draw(&mut buf, 30, &fit, &bad, (0, 0));
        assert!(buf.iter().all(|p| *p == 0));
        // Half-transparent white over black is mid grey.
        let grey = CursorImage {
            rgba: vec![255, 255, 255, 128],
            ..red
        };
        draw(&mut buf, 30, &fit, &grey, (0, 0));
        assert_eq!(buf[11], 0x0080_8080);
    }

    #[test]
    fn shown_only_away_from_the_local_pointer() {
        assert!(visible((10, 10), None));
        assert!(!visible((10, 10), Some((12, 8))));
        assert!(visible((10, 10), Some((14, 10))));
        assert!(!visible((-3, 10), Some((0, 10))));
        assert!(visible((i32::MIN, 0), Some((0, 0))));
    }
}
