//! QR codes of safety numbers: for the terminal, as PNG and as SVG.

use std::path::Path;

use anyhow::Context as _;
use qrcode::render::{svg, unicode};
use qrcode::{Color, QrCode};

/// Modules of light margin around the code (the QR specification asks for 4).
const QUIET_ZONE: usize = 4;
/// Pixels per module in the PNG.
const PNG_SCALE: usize = 8;

/// The QR code of `text`.
pub(crate) fn code(text: &str) -> anyhow::Result<QrCode> {
    QrCode::new(text.as_bytes()).context("cannot make a QR code of the safety number")
}

/// The code as half-height Unicode blocks for a dark terminal: light modules are drawn
/// (in the terminal's light foreground colour) and dark ones left as the dark background,
/// so scanners see dark-on-light as usual. The quiet zone is included.
pub(crate) fn terminal(code: &QrCode) -> String {
    code.render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build()
}

/// The code as an 8-bit greyscale PNG, black on white, 8 pixels a module, quiet zone 4.
pub(crate) fn png_bytes(code: &QrCode) -> anyhow::Result<Vec<u8>> {
    let width = code.width();
    let colors = code.to_colors();
    let side = (width + 2 * QUIET_ZONE) * PNG_SCALE;
    let mut pixels = vec![0xffu8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i % width + QUIET_ZONE, i / width + QUIET_ZONE);
        for y in my * PNG_SCALE..(my + 1) * PNG_SCALE {
            let row = y * side;
            pixels[row + mx * PNG_SCALE..row + (mx + 1) * PNG_SCALE].fill(0);
        }
    }
    let side_u32 = u32::try_from(side).context("QR code too large")?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side_u32, side_u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().context("cannot encode PNG")?;
    writer
        .write_image_data(&pixels)
        .context("cannot encode PNG")?;
    writer.finish().context("cannot encode PNG")?;
    Ok(out)
}

/// The code as an SVG document, black on white, with the quiet zone.
pub(crate) fn svg_text(code: &QrCode) -> String {
    code.render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .quiet_zone(true)
        .build()
}

/// Writes `bytes` to `path` (created or replaced, mode 0644: a safety number is public).
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn png_has_the_quiet_zone_and_the_modules() {
        let c = code("SEALDESK-SN1:123").unwrap();
        let bytes = png_bytes(&c).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let side = (c.width() + 8) * 8;
        assert_eq!(info.width as usize, side);
        // The corner is quiet zone (white); the finder pattern's corner is black.
        assert_eq!(buf[0], 0xff);
        assert_eq!(buf[32 * side + 32], 0);
    }

    /// The PNG scans: a QR decoder reads back exactly the safety-number text.
    #[test]
    fn png_decodes_to_the_safety_number_text() {
        let a = sealdesk_auth::IdentityKey::from_seed(&[1; 32]).public();
        let b = sealdesk_auth::IdentityKey::from_seed(&[2; 32]).public();
        let text = sealdesk_auth::safety::SafetyNumber::of(&a, &b).qr_text();
        let bytes = png_bytes(&code(&text).unwrap()).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        let (_meta, content) = grids[0].decode().unwrap();
        assert_eq!(content, text);
        assert_eq!(content.len(), "SEALDESK-SN1:".len() + 60);
    }

    #[test]
    fn terminal_rendering_has_half_as_many_lines_as_modules() {
        let c = code("SEALDESK-SN1:123").unwrap();
        let t = terminal(&c);
        assert_eq!(t.lines().count(), (c.width() + 8).div_ceil(2));
        assert!(svg_text(&c).contains("<svg"));
    }
}
