//! The frame stamp `sealdesk bench` measures glass-to-glass latency with: a row of black
//! and white cells in the screen's top-left corner that carries a counter. The bench paints
//! it (and notes when) each time it changes the screen; the viewer reads it from each
//! decoded picture (and notes when). Cells are large (16 px) so that lossy video keeps them
//! readable, and a CRC rejects a stamp half-updated or smeared by the codec.
//!
//! Layout, left to right: a black cell, a white cell (the framing), then 32 data cells, most
//! significant first: a 24-bit counter and a CRC-8 of it.

/// Cell size in pixels.
pub(crate) const CELL: u16 = 16;
/// Cells in a stamp.
pub(crate) const CELLS: u16 = 2 + 32;
/// The largest counter a stamp carries.
pub(crate) const MAX: u32 = (1 << 24) - 1;

/// CRC-8 (polynomial 0x07) of the counter's three bytes.
fn crc8(counter: u32) -> u8 {
    let mut crc = 0u8;
    for byte in &counter.to_be_bytes()[1..] {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Which cells are white for `counter` (`counter` is taken modulo 2²⁴).
pub(crate) fn cells(counter: u32) -> [bool; CELLS as usize] {
    let counter = counter & MAX;
    let word = (counter << 8) | u32::from(crc8(counter));
    let mut out = [false; CELLS as usize];
    out[1] = true;
    for (i, cell) in out[2..].iter_mut().enumerate() {
        *cell = (word >> (31 - i)) & 1 == 1;
    }
    out
}

/// Reads the stamp from a BGRA picture `width` pixels wide, if one is there and intact.
pub(crate) fn read(bgra: &[u8], width: u32) -> Option<u32> {
    let width = usize::try_from(width).ok()?;
    let cell = usize::from(CELL);
    if width < usize::from(CELLS) * cell {
        return None;
    }
    let mut word = 0u32;
    for i in 0..usize::from(CELLS) {
        // The mean luma of the cell's middle 4×4 pixels, away from its smeared edges.
        let mut sum = 0u32;
        for dy in 6..10 {
            for dx in 6..10 {
                let at = (dy * width + i * cell + dx) * 4;
                let px = bgra.get(at..at + 3)?;
                let (b, g, r) = (u32::from(px[0]), u32::from(px[1]), u32::from(px[2]));
                sum += (r * 299 + g * 587 + b * 114) / 1000;
            }
        }
        let white = sum / 16 > 128;
        match i {
            0 if white => return None,
            1 if !white => return None,
            0 | 1 => {}
            _ => word = (word << 1) | u32::from(white),
        }
    }
    let counter = word >> 8;
    (crc8(counter) == (word & 0xff) as u8).then_some(counter)
}

/// The wall clock in nanoseconds: the same clock in every process on this machine, so the
/// bench and the viewer it starts can compare their times (a clock step during a run would
/// show as one absurd sample; the percentiles shrug it off).
pub(crate) fn clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The line the viewer prints when a decoded picture first shows stamp `n` at `t_ns`.
pub(crate) fn line(n: u32, t_ns: u64) -> String {
    format!("stamp {n} {t_ns}")
}

/// Reads a [`line()`] back: the stamp and its time.
pub(crate) fn parse_line(line: &str) -> Option<(u32, u64)> {
    let (n, t) = line.strip_prefix("stamp ")?.split_once(' ')?;
    Some((n.parse().ok()?, t.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_line_reads_back_and_other_lines_do_not() {
        assert_eq!(
            parse_line(&line(42, 1_700_000_000_123)),
            Some((42, 1_700_000_000_123))
        );
        assert_eq!(parse_line("stats: 60 fps"), None);
        assert_eq!(parse_line("stamp x 1"), None);
    }

    fn picture(counter: u32, width: usize, noise: u8) -> Vec<u8> {
        let mut px = vec![200u8; width * 20 * 4];
        let c = cells(counter);
        for y in 0..usize::from(CELL) {
            for (i, white) in c.iter().enumerate() {
                for x in 0..usize::from(CELL) {
                    let at = (y * width + i * usize::from(CELL) + x) * 4;
                    // Codec-like error: a little off white and black, worse at the edges.
                    let edge = x == 0 || x == 15;
                    let v = match (white, edge) {
                        (true, false) => 255 - noise,
                        (false, false) => noise,
                        (_, true) => 128,
                    };
                    px[at..at + 4].copy_from_slice(&[v, v, v, 255]);
                }
            }
        }
        px
    }

    #[test]
    fn a_stamp_reads_back_through_codec_like_noise() {
        for counter in [0, 1, 2, 0x5a5a5a, 1_000_000, MAX] {
            assert_eq!(read(&picture(counter, 640, 60), 640), Some(counter));
        }
    }

    #[test]
    fn no_stamp_a_damaged_one_or_a_narrow_picture_reads_as_none() {
        let width = 640;
        assert_eq!(read(&vec![255u8; width * 20 * 4], 640), None);
        assert_eq!(read(&vec![0u8; width * 20 * 4], 640), None);
        let mut px = picture(12345, width, 0);
        // Flip one data cell's middle: the CRC no longer matches.
        for y in 6..10 {
            for x in 6..10 {
                let at = (y * width + 10 * 16 + x) * 4;
                px[at] ^= 0xff;
                px[at + 1] ^= 0xff;
                px[at + 2] ^= 0xff;
            }
        }
        assert_eq!(read(&px, 640), None);
        assert_eq!(read(&picture(1, 640, 0)[..100], 640), None);
        assert_eq!(read(&picture(1, 500, 0), 500), None);
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = clock_ns();
        let b = clock_ns();
        assert!(b >= a && a > 0);
    }
}
