//! The stats line: 8×8 bitmap text on a darkened box in the bottom-left corner.

use font8x8::{UnicodeFonts, BASIC_FONTS, LATIN_FONTS};

/// Text colour (softbuffer 0RGB).
const TEXT: u32 = 0x00f0_f0f0;
/// Glyph cell size in font pixels.
const CELL: u32 = 8;
/// Space between the box and the text, and between the box and the window edge, in font
/// pixels.
const PAD: u32 = 3;
const MARGIN: u32 = 4;
/// Characters drawn at most (the line is cut to the window width anyway).
pub(crate) const MAX_CHARS: usize = 160;

/// The 8×8 glyph for `c`: rows top to bottom, bit 0 the leftmost pixel.
fn glyph(c: char) -> [u8; 8] {
    let c = match c {
        // Dashes and the like that the font lacks.
        '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
        '\u{2026}' => '.',
        c => c,
    };
    BASIC_FONTS
        .get(c)
        .or_else(|| LATIN_FONTS.get(c))
        .or_else(|| BASIC_FONTS.get('?'))
        .unwrap_or([0; 8])
}

/// Draws `text` in the bottom-left corner of the `width × height` 0RGB buffer, each font
/// pixel `scale × scale` window pixels; clipped to the buffer, nothing drawn for empty text.
pub(crate) fn draw(buf: &mut [u32], width: u32, height: u32, text: &str, scale: u32) {
    let scale = scale.clamp(1, 8);
    let Some(len) = u64::from(width).checked_mul(u64::from(height)) else {
        return;
    };
    if text.is_empty() || usize::try_from(len).ok() != Some(buf.len()) {
        return;
    }
    let unit = |n: u32| n.saturating_mul(scale);
    let chars: Vec<char> = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_CHARS)
        .collect();
    // As many characters as fit beside the margins and padding.
    let room = width.saturating_sub(unit(2 * MARGIN + 2 * PAD)) / unit(CELL);
    let shown = chars.len().min(usize::try_from(room).unwrap_or(0));
    if shown == 0 {
        return;
    }
    let shown_u32 = u32::try_from(shown).unwrap_or(0);
    let box_w = unit(shown_u32 * CELL + 2 * PAD);
    let box_h = unit(CELL + 2 * PAD);
    let x0 = unit(MARGIN);
    let y0 = height.saturating_sub(box_h.saturating_add(unit(MARGIN)));
    let w = usize::try_from(width).unwrap_or(0);
    // Darken the box to a quarter: legible on any picture, and the picture still shows.
    for y in y0..y0.saturating_add(box_h).min(height) {
        for x in x0..x0.saturating_add(box_w).min(width) {
            if let Some(p) = pixel(buf, w, x, y) {
                *p = (*p >> 2) & 0x003f_3f3f;
            }
        }
    }
    let tx = x0 + unit(PAD);
    let ty = y0 + unit(PAD);
    for (i, &c) in chars.iter().take(shown).enumerate() {
        let cx = tx + unit(CELL) * u32::try_from(i).unwrap_or(0);
        for (row, bits) in (0u32..).zip(glyph(c)) {
            for col in 0..CELL {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let x = cx + unit(col) + dx;
                        let y = ty + unit(row) + dy;
                        if x < width && y < height {
                            if let Some(p) = pixel(buf, w, x, y) {
                                *p = TEXT;
                            }
                        }
                    }
                }
            }
        }
    }
}

fn pixel(buf: &mut [u32], width: usize, x: u32, y: u32) -> Option<&mut u32> {
    let i = usize::try_from(y)
        .ok()?
        .checked_mul(width)?
        .checked_add(usize::try_from(x).ok()?)?;
    buf.get_mut(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_exist_for_the_stats_line() {
        for c in "60 fps · 180 kbps · rtt 2 ms · direct — ü".chars() {
            assert!(c == ' ' || glyph(c) != [0; 8], "{c:?}");
        }
        assert_eq!(glyph('\u{4e00}'), glyph('?'));
    }

    #[test]
    fn text_lands_bottom_left_and_is_clipped() {
        let (w, h) = (200u32, 50u32);
        let mut buf = vec![0x0080_8080u32; (w * h) as usize];
        draw(&mut buf, w, h, "fps", 1);
        // Top rows untouched; the box darkened the bottom-left; some text is lit.
        assert!(buf[..(w * 20) as usize].iter().all(|&p| p == 0x0080_8080));
        let bottom = &buf[(w * (h - 10)) as usize..];
        assert!(bottom.contains(&TEXT));
        assert!(bottom.contains(&0x0020_2020));
        // The right part of the bottom rows is untouched (short text).
        assert_eq!(buf[(w * h - 1) as usize], 0x0080_8080);
        // Tiny, empty and mismatched buffers do not panic.
        for (w, h) in [(1, 1), (3, 100), (100, 3), (0, 0)] {
            let mut buf = vec![0u32; (w * h) as usize];
            draw(&mut buf, w, h, "60 fps · 180 kbps", 4);
        }
        draw(&mut [0u32; 10], 100, 100, "x", 1);
        let long = "x".repeat(10_000);
        let mut buf = vec![0u32; (w * h) as usize];
        draw(&mut buf, w, h, &long, 2);
    }
}
