//! Video round trips against a real Xvfb and the real libvpx: capture → I420 → VP9/VP8 →
//! decode → BGRA, compared with PSNR; keyframe control; garbage into the decoder.

mod common;

use anyhow::Context as _;
use common::{sync, window, Xvfb};
use sealdesk_media::capture::Capturer;
use sealdesk_media::convert::I420Frame;
use sealdesk_media::decode::{DecodeError, Decoder};
use sealdesk_media::encode::{EncodeError, EncodedFrame, Encoder, EncoderConfig};
use sealdesk_media::{Codec, Rect};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt as _, CreateGCAux, EventMask, Rectangle, Window};
use x11rb::rust_connection::RustConnection;

const W: u32 = 1280;
const H: u32 = 720;

/// Fill many rectangles of one colour in a single request.
fn fill_many(
    conn: &RustConnection,
    win: Window,
    rgb: u32,
    rects: &[Rectangle],
) -> anyhow::Result<()> {
    let gc = conn.generate_id()?;
    conn.create_gc(gc, win, &CreateGCAux::new().foreground(rgb))?
        .check()?;
    for chunk in rects.chunks(1000) {
        conn.poly_fill_rectangle(win, gc, chunk)?.check()?;
    }
    conn.free_gc(gc)?.check()?;
    sync(conn)
}

/// A desktop-like picture: a grey window with coloured panels and rows of glyph-sized dark
/// "letters" on a white page, a black root around it.
fn draw_desktop(conn: &RustConnection, root: Window) -> anyhow::Result<Window> {
    let win = window(
        conn,
        root,
        Rect::new(40, 30, 1200, 660),
        0xc0_c0c0,
        EventMask::NO_EVENT,
    )?;
    let rect = |x: i16, y: i16, w: u16, h: u16| Rectangle {
        x,
        y,
        width: w,
        height: h,
    };
    fill_many(conn, win, 0x20_4080, &[rect(0, 0, 1200, 40)])?;
    fill_many(conn, win, 0xff_ffff, &[rect(20, 60, 900, 580)])?;
    fill_many(conn, win, 0xd0_3020, &[rect(940, 60, 240, 120)])?;
    fill_many(conn, win, 0x30_a040, &[rect(940, 200, 240, 120)])?;
    let mut letters = Vec::new();
    for line in 0..30i16 {
        for col in 0..100i16 {
            // Pseudo-random word lengths: some gaps.
            if (line * 7 + col * 13) % 11 == 0 {
                continue;
            }
            let w = 4 + ((line + col) % 4) as u16;
            letters.push(rect(30 + col * 8, 70 + line * 18, w, 11));
        }
    }
    fill_many(conn, win, 0x20_2020, &letters)?;
    Ok(win)
}

/// PSNR in dB over the R, G and B bytes of two 4-byte-per-pixel images of equal layout.
fn psnr_rgb(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut sse = 0u64;
    let mut n = 0u64;
    for (pa, pb) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for c in 0..3 {
            let d = u64::from(pa[c].abs_diff(pb[c]));
            sse += d * d;
            n += 1;
        }
    }
    if sse == 0 {
        return f64::INFINITY;
    }
    let mse = sse as f64 / n as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

fn one(frames: Vec<EncodedFrame>) -> anyhow::Result<EncodedFrame> {
    anyhow::ensure!(
        frames.len() == 1,
        "no lag, no frame dropping: one frame out, got {}",
        frames.len()
    );
    frames.into_iter().next().context("one frame")
}

fn decode_to_bgra(decoder: &mut Decoder, packet: &[u8]) -> anyhow::Result<Vec<u8>> {
    let picture = decoder.decode(packet)?.context("a picture")?;
    assert_eq!((picture.width(), picture.height()), (W, H));
    let mut bgra = vec![0; (W * H * 4) as usize];
    picture.to_bgra(&mut bgra, (W * 4) as usize)?;
    Ok(bgra)
}

/// Capture a known picture, encode it as a keyframe, decode, compare; then a small change.
fn round_trip(codec: Codec) -> anyhow::Result<()> {
    let xvfb = Xvfb::start(W, H)?;
    let (conn, root) = xvfb.client()?;
    let win = draw_desktop(&conn, root)?;
    let mut capturer = Capturer::connect(Some(&xvfb.display))?;
    let screen = capturer.screen();

    let (captured, i420) = {
        let frame = capturer.grab(screen)?;
        (frame.data().to_vec(), I420Frame::from_capture(&frame)?)
    };

    let mut encoder = Encoder::new(codec, W, H, EncoderConfig::default())?;
    let mut decoder = Decoder::new(codec)?;
    let key = one(encoder.encode(&i420, 0, true)?)?;
    assert!(key.keyframe);
    assert_eq!(key.pts, 0);
    let decoded = decode_to_bgra(&mut decoder, &key.data)?;
    let psnr = psnr_rgb(&captured, &decoded);

    // Conversion alone, for reference.
    let mut converted = vec![0; captured.len()];
    i420.to_bgra(&mut converted, (W * 4) as usize)?;
    let psnr_convert = psnr_rgb(&captured, &converted);

    // A "typed character": one glyph-sized change.
    common::fill(&conn, win, 0x00_0000, Rect::new(500, 300, 7, 11))?;
    let (captured2, i420_2) = {
        let frame = capturer.grab(screen)?;
        (frame.data().to_vec(), I420Frame::from_capture(&frame)?)
    };
    let delta = one(encoder.encode(&i420_2, 33, false)?)?;
    assert!(!delta.keyframe);
    let decoded2 = decode_to_bgra(&mut decoder, &delta.data)?;
    let psnr2 = psnr_rgb(&captured2, &decoded2);

    eprintln!(
        "{codec} {W}x{H}: keyframe {} bytes, PSNR {psnr:.2} dB (conversion alone {psnr_convert:.2} dB); \
         small change {} bytes, PSNR {psnr2:.2} dB",
        key.data.len(),
        delta.data.len()
    );
    assert!(psnr >= 35.0, "{codec} keyframe PSNR {psnr:.2} dB < 35");
    assert!(psnr2 >= 35.0, "{codec} delta PSNR {psnr2:.2} dB < 35");
    assert!(
        delta.data.len() * 20 < key.data.len(),
        "{codec}: small change {} bytes is not far smaller than the keyframe {} bytes",
        delta.data.len(),
        key.data.len()
    );
    conn.flush()?;
    Ok(())
}

#[test]
fn vp9_capture_encode_decode_round_trip_is_at_least_35_db() -> anyhow::Result<()> {
    round_trip(Codec::Vp9)
}

#[test]
fn vp8_capture_encode_decode_round_trip_is_at_least_35_db() -> anyhow::Result<()> {
    round_trip(Codec::Vp8)
}

/// A synthetic 320×240 frame whose content depends on `seed`.
fn synthetic(seed: u32) -> anyhow::Result<I420Frame> {
    let (w, h) = (320u32, 240u32);
    let mut bgrx = vec![0u8; (w * h * 4) as usize];
    for (i, px) in bgrx.chunks_exact_mut(4).enumerate() {
        let (x, y) = (i as u32 % w, i as u32 / w);
        let on = (x / 8 + y / 16 + seed).is_multiple_of(3) || (x > seed * 4 && x < seed * 4 + 10);
        let v = if on { 30 } else { 230 };
        px.copy_from_slice(&[v, v, v, 0]);
    }
    Ok(I420Frame::from_bgrx(&bgrx, (w * 4) as usize, w, h)?)
}

#[test]
fn keyframes_only_first_and_on_request() -> anyhow::Result<()> {
    for codec in [Codec::Vp9, Codec::Vp8] {
        let mut encoder = Encoder::new(codec, 320, 240, EncoderConfig::default())?;
        let mut decoder = Decoder::new(codec)?;
        let mut keyframes = Vec::new();
        for i in 0..40u32 {
            let force = i == 20;
            let frame = one(encoder.encode(&synthetic(i % 7)?, i64::from(i) * 33, force)?)?;
            assert_eq!(frame.pts, i64::from(i) * 33);
            if frame.keyframe {
                keyframes.push(i);
            }
            assert!(decoder.decode(&frame.data)?.is_some());
        }
        assert_eq!(keyframes, [0, 20], "{codec}");
        // A fresh decoder can start at the forced keyframe.
        let key = one(encoder.encode(&synthetic(3)?, 40 * 33, true)?)?;
        assert!(key.keyframe);
        let mut late = Decoder::new(codec)?;
        let picture = late.decode(&key.data)?.expect("picture");
        assert_eq!((picture.width(), picture.height()), (320, 240));
    }
    Ok(())
}

#[test]
fn bitrate_changes_at_runtime() -> anyhow::Result<()> {
    let mut encoder = Encoder::new(Codec::Vp9, 320, 240, EncoderConfig::default())?;
    one(encoder.encode(&synthetic(0)?, 0, false)?)?;
    encoder.set_bitrate(300)?;
    assert_eq!(encoder.bitrate(), 300);
    let frame = one(encoder.encode(&synthetic(1)?, 33, false)?)?;
    assert!(!frame.keyframe, "a bitrate change must not cost a keyframe");
    assert!(matches!(
        encoder.set_bitrate(0),
        Err(EncodeError::InvalidConfig(_))
    ));
    assert_eq!(encoder.bitrate(), 300);
    Ok(())
}

#[test]
fn resolution_change_recreates_the_encoder_with_a_keyframe() -> anyhow::Result<()> {
    for codec in [Codec::Vp9, Codec::Vp8] {
        let mut encoder = Encoder::new(codec, 64, 64, EncoderConfig::default())?;
        let mut decoder = Decoder::new(codec)?;
        let first = one(encoder.encode(&I420Frame::new(64, 64)?, 0, false)?)?;
        assert!(first.keyframe);
        decoder.decode(&first.data)?;
        let second = one(encoder.encode(&synthetic(1)?, 33, false)?)?;
        assert!(second.keyframe, "{codec}: new size starts with a keyframe");
        assert_eq!(encoder.dimensions(), (320, 240));
        let picture = decoder.decode(&second.data)?.expect("picture");
        assert_eq!((picture.width(), picture.height()), (320, 240));
    }
    Ok(())
}

#[test]
fn encoder_refuses_odd_and_zero_dimensions() {
    for (w, h) in [
        (0, 240),
        (320, 0),
        (321, 240),
        (320, 241),
        (1, 1),
        (16_384, 64),
    ] {
        for codec in [Codec::Vp9, Codec::Vp8] {
            let err = Encoder::new(codec, w, h, EncoderConfig::default()).unwrap_err();
            assert!(
                matches!(err, EncodeError::InvalidDimensions { width, height } if (width, height) == (w, h)),
                "{w}x{h}: {err}"
            );
            assert!(err.to_string().contains("even"), "{err}");
        }
    }
    // An odd frame handed to an existing encoder is refused the same way.
    let mut encoder = Encoder::new(Codec::Vp9, 64, 64, EncoderConfig::default()).unwrap();
    let odd = I420Frame::new(63, 64).unwrap();
    assert!(matches!(
        encoder.encode(&odd, 0, false),
        Err(EncodeError::InvalidDimensions { .. })
    ));
    // ...and the encoder still works at its old size.
    assert_eq!(encoder.dimensions(), (64, 64));
    assert!(encoder
        .encode(&I420Frame::new(64, 64).unwrap(), 0, false)
        .is_ok());
}

/// xorshift64*: deterministic garbage without an RNG dependency.
struct Garbage(u64);
impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A panic or crash here is a bug in sealdesk (or libvpx), never bad input.
#[test]
fn decoder_survives_corrupted_truncated_and_random_packets() -> anyhow::Result<()> {
    let mut rng = Garbage(0x5eed_1234_abcd_0001);
    for codec in [Codec::Vp9, Codec::Vp8] {
        let mut encoder = Encoder::new(codec, 320, 240, EncoderConfig::default())?;
        let key = one(encoder.encode(&synthetic(0)?, 0, true)?)?;
        let delta = one(encoder.encode(&synthetic(1)?, 33, false)?)?;
        let mut decoder = Decoder::new(codec)?;

        assert!(matches!(decoder.decode(&[]), Err(DecodeError::Empty)));

        // Pure random packets: always an error (libvpx checks sync codes / frame markers).
        let mut random_errors = 0;
        for i in 0..300 {
            let packet = rng.bytes(1 + (i * 7) % 2000);
            match decoder.decode(&packet) {
                Err(DecodeError::Malformed { .. } | DecodeError::Unsupported { .. }) => {
                    random_errors += 1;
                }
                Err(e) => panic!("{codec}: unexpected error kind {e}"),
                Ok(_) => {}
            }
        }
        // Truncated keyframes: every prefix.
        let mut truncated_errors = 0;
        let step = (key.data.len() / 60).max(1);
        for len in (1..key.data.len()).step_by(step) {
            let mut fresh = Decoder::new(codec)?;
            if fresh.decode(&key.data[..len]).is_err() {
                truncated_errors += 1;
            }
        }
        // Bit flips and overwritten runs in keyframes and delta frames.
        let mut corrupted_errors = 0;
        for i in 0..300 {
            let mut packet = if i % 2 == 0 {
                key.data.clone()
            } else {
                delta.data.clone()
            };
            let flips = 1 + rng.next() as usize % 8;
            for _ in 0..flips {
                let at = rng.next() as usize % packet.len();
                packet[at] ^= 1 << (rng.next() % 8);
            }
            if i % 5 == 0 {
                let at = rng.next() as usize % packet.len();
                let end = (at + 16).min(packet.len());
                packet[at..end].fill(0xff);
            }
            if decoder.decode(&packet).is_err() {
                corrupted_errors += 1;
            }
        }
        // The other codec's keyframe.
        let other = match codec {
            Codec::Vp9 => Codec::Vp8,
            _ => Codec::Vp9,
        };
        let mut foreign_encoder = Encoder::new(other, 320, 240, EncoderConfig::default())?;
        let foreign = one(foreign_encoder.encode(&synthetic(0)?, 0, true)?)?;
        let foreign_result = decoder.decode(&foreign.data);

        eprintln!(
            "{codec}: random packets rejected {random_errors}/300, truncated keyframes rejected \
             {truncated_errors}/{}, corrupted packets rejected {corrupted_errors}/300, \
             {other} keyframe: {:?}",
            (1..key.data.len()).step_by(step).count(),
            foreign_result.as_ref().map(Option::is_some)
        );
        assert!(
            random_errors >= 290,
            "{codec}: random packets must be refused"
        );
        assert!(truncated_errors > 0);
        assert!(
            foreign_result.is_err(),
            "{codec} decoder took a {other} frame"
        );

        // After all that, a keyframe resynchronises the decoder.
        let picture = decoder.decode(&key.data)?.expect("picture");
        assert_eq!((picture.width(), picture.height()), (320, 240));
        assert!(decoder.decode(&delta.data)?.is_some());
    }
    Ok(())
}

#[test]
fn decoder_refuses_keyframes_above_its_pixel_limit() -> anyhow::Result<()> {
    for codec in [Codec::Vp9, Codec::Vp8] {
        let mut encoder = Encoder::new(codec, 320, 240, EncoderConfig::default())?;
        let key = one(encoder.encode(&synthetic(0)?, 0, true)?)?;
        let mut decoder = Decoder::new(codec)?;
        decoder.set_max_pixels(320 * 239);
        assert!(matches!(
            decoder.decode(&key.data),
            Err(DecodeError::Unsupported { .. })
        ));
        decoder.set_max_pixels(320 * 240);
        assert!(decoder.decode(&key.data)?.is_some());
    }
    Ok(())
}
