//! Video costs on a 1920×1080 Xvfb with a desktop-like picture (a page of glyph-sized
//! rectangles): BGRX→I420 conversion, VP9 and VP8 encode for a typing-like change (one glyph per
//! frame) and a scrolling-like change (the page moves up one text line per frame), bytes per
//! frame as kbps at 30 and 60 fps, keyframe cost, decode and I420→RGBA. Encoder settings are
//! `EncoderConfig::default()` (CBR 4 Mbps); `BENCH_MIN_Q`, `BENCH_MAX_Q`, `BENCH_MAX_KEYFRAME_PCT` and
//! `BENCH_VP8_CPU_USED` override those settings. Run with
//! `cargo bench -p sealdesk-media --bench codec`.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark may stop at the first failure"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{sync, window, Xvfb};
use sealdesk_media::capture::Capturer;
use sealdesk_media::convert::I420Frame;
use sealdesk_media::decode::Decoder;
use sealdesk_media::encode::{Encoder, EncoderConfig};
use sealdesk_media::{Codec, Rect};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt as _, CreateGCAux, EventMask, Rectangle, Window};
use x11rb::rust_connection::RustConnection;

const W: u32 = 1920;
const H: u32 = 1080;
const FRAMES: usize = 150;
const LINE: i16 = 18;

fn at(samples: &[Duration], q: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort();
    let i = ((s.len() as f64 - 1.0) * q).round() as usize;
    s.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

fn report(name: &str, samples: &[Duration]) {
    println!(
        "{name:<44} p50 {:>7.3} ms   p99 {:>7.3} ms   (n = {})",
        at(samples, 0.5),
        at(samples, 0.99),
        samples.len()
    );
}

struct Painter {
    conn: RustConnection,
    win: Window,
    ink: u32,
    paper: u32,
}

impl Painter {
    fn gc(conn: &RustConnection, win: Window, rgb: u32) -> anyhow::Result<u32> {
        let gc = conn.generate_id()?;
        conn.create_gc(gc, win, &CreateGCAux::new().foreground(rgb))?
            .check()?;
        Ok(gc)
    }

    fn rects(&self, gc: u32, rects: &[Rectangle]) -> anyhow::Result<()> {
        for chunk in rects.chunks(1000) {
            self.conn.poly_fill_rectangle(self.win, gc, chunk)?;
        }
        sync(&self.conn)
    }

    /// One line of glyph-sized rectangles at window row `y`, varying with `seed`.
    fn text_line(&self, y: i16, seed: i16) -> Vec<Rectangle> {
        (0..230i16)
            .filter(|col| (seed * 7 + col * 13) % 11 != 0)
            .map(|col| Rectangle {
                x: 10 + col * 8,
                y,
                width: 4 + ((seed + col) % 4) as u16,
                height: 11,
            })
            .collect()
    }

    fn page(&self) -> anyhow::Result<()> {
        let mut letters = Vec::new();
        for line in 0..(H as i16 / LINE) {
            letters.extend(self.text_line(line * LINE + 4, line));
        }
        self.rects(self.ink, &letters)
    }

    /// The typing change of frame `i`: one glyph after the previous one.
    fn type_glyph(&self, i: usize) -> anyhow::Result<()> {
        let col = (i % 200) as i16;
        let line = 20 + (i / 200) as i16;
        self.rects(
            self.ink,
            &[Rectangle {
                x: 10 + col * 8,
                y: line * LINE + 4,
                width: 6,
                height: 11,
            }],
        )
    }

    /// The scrolling change of frame `i`: everything moves up one line, a new line appears.
    fn scroll(&self, i: usize) -> anyhow::Result<()> {
        self.conn.copy_area(
            self.win,
            self.win,
            self.ink,
            0,
            LINE,
            0,
            0,
            W as u16,
            (H as i16 - LINE) as u16,
        )?;
        let bottom = H as i16 - LINE;
        self.rects(
            self.paper,
            &[Rectangle {
                x: 0,
                y: bottom,
                width: W as u16,
                height: LINE as u16,
            }],
        )?;
        self.rects(self.ink, &self.text_line(bottom + 4, i as i16))
    }
}

struct Run {
    encode: Vec<Duration>,
    bytes: Vec<usize>,
    keyframes: usize,
    packets: Vec<Vec<u8>>,
}

fn run(
    codec: Codec,
    capturer: &mut Capturer,
    painter: &Painter,
    mut change: impl FnMut(&Painter, usize) -> anyhow::Result<()>,
) -> anyhow::Result<(Run, Duration, usize)> {
    let screen = capturer.screen();
    let mut config = EncoderConfig::default();
    if let Some(q) = std::env::var("BENCH_MIN_Q")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.min_quantizer = q;
    }
    if let Some(c) = std::env::var("BENCH_VP8_CPU_USED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        if codec == Codec::Vp8 {
            config.cpu_used = Some(c);
        }
    }
    if let Some(q) = std::env::var("BENCH_MAX_Q")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.max_quantizer = q;
    }
    if let Some(pct) = std::env::var("BENCH_MAX_KEYFRAME_PCT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.max_keyframe_pct = Some(pct);
    }
    let mut encoder = Encoder::new(codec, W, H, config)?;
    let mut i420 = I420Frame::new(W, H)?;
    {
        let frame = capturer.grab(screen)?;
        i420.fill_from_bgrx(frame.data(), frame.stride())?;
    }
    let start = Instant::now();
    let key = encoder.encode(&i420, 0, true)?;
    let key_time = start.elapsed();
    let key_bytes = key.iter().map(|f| f.data.len()).sum();
    let mut run = Run {
        encode: Vec::new(),
        bytes: Vec::new(),
        keyframes: 0,
        packets: key.into_iter().map(|f| f.data).collect(),
    };
    for i in 0..FRAMES {
        change(painter, i)?;
        {
            let frame = capturer.grab(screen)?;
            i420.fill_from_bgrx(frame.data(), frame.stride())?;
        }
        let pts = (i as i64 + 1) * 33;
        let start = Instant::now();
        let out = encoder.encode(&i420, pts, false)?;
        run.encode.push(start.elapsed());
        run.bytes.push(out.iter().map(|f| f.data.len()).sum());
        run.keyframes += out.iter().filter(|f| f.keyframe).count();
        run.packets.extend(out.into_iter().map(|f| f.data));
    }
    Ok((run, key_time, key_bytes))
}

fn main() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(W, H)?;
    let (conn, root) = xvfb.client()?;
    let win = window(
        &conn,
        root,
        Rect::new(0, 0, W, H),
        0xff_ffff,
        EventMask::NO_EVENT,
    )?;
    let ink = Painter::gc(&conn, win, 0x20_2020)?;
    let paper = Painter::gc(&conn, win, 0xff_ffff)?;
    let painter = Painter {
        conn,
        win,
        ink,
        paper,
    };
    painter.page()?;
    let mut capturer = Capturer::connect(Some(&xvfb.display))?;
    let screen = capturer.screen();
    println!(
        "Xvfb {screen:?}, {} cores, {FRAMES} frames per scenario, CBR 4000 kbps target",
        std::thread::available_parallelism()?
    );

    let mut i420 = I420Frame::new(W, H)?;
    let mut convert = Vec::new();
    for _ in 0..100 {
        let frame = capturer.grab(screen)?;
        let start = Instant::now();
        i420.fill_from_bgrx(frame.data(), frame.stride())?;
        convert.push(start.elapsed());
    }
    report("BGRX->I420 1920x1080 (yuv crate)", &convert);
    let mut rgba = vec![0; (W * H * 4) as usize];
    let mut back = Vec::new();
    for _ in 0..100 {
        let start = Instant::now();
        i420.to_rgba(&mut rgba, (W * 4) as usize)?;
        back.push(start.elapsed());
    }
    report("I420->RGBA 1920x1080 (yuv crate)", &back);

    for codec in [Codec::Vp9, Codec::Vp8] {
        for (scenario, change) in [
            (
                "typing",
                Painter::type_glyph as fn(&Painter, usize) -> anyhow::Result<()>,
            ),
            ("scrolling", Painter::scroll),
        ] {
            // Fresh page for each scenario.
            painter.rects(
                painter.paper,
                &[Rectangle {
                    x: 0,
                    y: 0,
                    width: W as u16,
                    height: H as u16,
                }],
            )?;
            painter.page()?;
            let (run, key_time, key_bytes) = run(codec, &mut capturer, &painter, change)?;
            println!(
                "{codec} keyframe ({scenario} page): {:.1} ms, {key_bytes} bytes",
                key_time.as_secs_f64() * 1e3
            );
            report(&format!("{codec} encode, {scenario}"), &run.encode);
            let mean = run.bytes.iter().sum::<usize>() as f64 / run.bytes.len() as f64;
            let max = run.bytes.iter().max().copied().unwrap_or(0);
            let tail = &run.bytes[run.bytes.len() - 60..];
            let steady = tail.iter().sum::<usize>() as f64 / tail.len() as f64;
            let big: Vec<(usize, usize)> = run
                .bytes
                .iter()
                .copied()
                .enumerate()
                .filter(|&(_, b)| b > 30_000)
                .take(8)
                .collect();
            println!(
                "{:<44} last 60 frames mean {steady:>8.0} B/frame = {:>6.0} kbps at 30 fps; \
                 unrequested keyframes {}; first frames > 30 kB (index, bytes): {big:?}",
                format!("{codec} steady state, {scenario}"),
                steady * 8.0 * 30.0 / 1000.0,
                run.keyframes,
            );
            println!(
                "{:<44} mean {mean:>8.0} B/frame (max {max}) = {:>6.0} kbps at 30 fps, {:>6.0} kbps at 60 fps",
                format!("{codec} size, {scenario}"),
                mean * 8.0 * 30.0 / 1000.0,
                mean * 8.0 * 60.0 / 1000.0,
            );
            let mut decoder = Decoder::new(codec)?;
            let mut decode = Vec::new();
            for packet in &run.packets {
                let start = Instant::now();
                let picture = decoder.decode(packet)?;
                decode.push(start.elapsed());
                assert!(picture.is_some());
            }
            report(&format!("{codec} decode (+copy out), {scenario}"), &decode);
        }
    }
    painter.conn.flush()?;
    Ok(())
}
