//! Video hot paths with criterion, on synthesized, deterministic pictures (no X server):
//!
//! * `convert`: BGRX→I420 ([`I420Frame::fill_from_bgrx`], what the host runs on every captured
//!   frame), I420→BGRA ([`I420Frame::to_bgra`], the viewer's window) and I420→RGBA
//!   ([`I420Frame::to_rgba`], the headless viewer's PNGs) at 1280×720, 1920×1080 and
//!   2560×1440, on a page of text.
//! * `encode`: one VP9 or VP8 frame at 1920×1080 per scenario, with the host's settings
//!   (`sealdesk-host` `pipeline.rs`: `EncoderConfig::default()` at the pipeline's first
//!   4 Mbit/s target, 60 fps, keyframes capped at 900 % of a frame's budget, an active map of
//!   the 16×16 blocks the frame's damage touches, and VP9 at speed 9 instead of 8 when more
//!   than a quarter of the blocks changed). The scenes are those of `sealdesk bench session`:
//!   *typing* draws one character per frame on a page of text, *scrolling* moves the page up
//!   one 14-pixel line per frame and writes a new line at the bottom, *video* moves
//!   full-screen colour bands (full-height stripes 40 px wide in 8 colours, as the session
//!   bench draws them) 8 px per frame. Each stream starts as the host's does: a keyframe, then
//!   up to 20 whole-picture refinements 100 ms apart that sharpen it; the scene starts 1 s
//!   later. (Without the refinements' spacing, VP9's rate control spends ~6 kB a frame
//!   sharpening the page while the user types.) Only the encoder
//!   calls are timed (not drawing the scene or converting it); the mean frame size of the
//!   timed frames goes to stderr. The encoder is warmed up with 60 frames first, so these are
//!   steady-state frames.
//! * `keyframe`: a forced keyframe of the 1080p text page (what a PLI or a new viewer costs).
//! * `decode`: libvpx decode (and the copy out of libvpx's buffer) of 120 frames of each
//!   scenario, in order, cycled; the keyframe and refinements that start each cycle are not
//!   timed.
//!
//! The text is drawn with font8x8's bitmaps in 7×14 cells, about as dense as the X core font
//! (6×13 in 14-pixel lines) the session bench draws, but not the same pixels: frame sizes are
//! close to, not equal to, a session's.
//!
//! `BENCH_MIN_Q`, `BENCH_MAX_Q`, `BENCH_MAX_KEYFRAME_PCT` and `BENCH_VP8_CPU_USED` override
//! those settings for tuning experiments.
//!
//! `cargo bench -p sealdesk-media --bench codec` (add `-- --quick` for a smoke run; a filter
//! such as `-- encode/vp9` runs a subset).

#![allow(
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark stops at the first setup error; criterion's macros generate items"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use font8x8::{UnicodeFonts, BASIC_FONTS};
use sealdesk_media::convert::I420Frame;
use sealdesk_media::decode::Decoder;
use sealdesk_media::encode::{EncodedFrame, Encoder, EncoderConfig, BLOCK};
use sealdesk_media::Codec;

/// Short runs: the whole set of sealdesk benches should take minutes, not an hour.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

/// A text line's height and a character cell's width: the session bench's X core font has
/// 6×13 glyphs in 14-pixel lines; font8x8's glyphs use 7 of their 8 columns.
const LINE: usize = 14;
const CHAR: usize = 7;
const WORDS: &[u8] =
    b"the quick brown fox jumps over the lazy dog while the remote desktop stays end to end encrypted ";
const INK: [u8; 4] = [0x20, 0x20, 0x20, 0xff];
const PAPER: [u8; 4] = [0xff, 0xff, 0xff, 0xff];
/// The typed characters' colour (BGRA of 0x0030a0).
const TYPED: [u8; 4] = [0xa0, 0x30, 0x00, 0xff];

/// `sealdesk-host` `pipeline.rs`: `KEYFRAME_CAP_PCT`, `VP9_SPEED`, `VP9_FAST_SPEED`,
/// `LARGE_CHANGE_DIVISOR`; `PipelineConfig::default()`: `max_fps`, `initial_kbps`.
const KEYFRAME_CAP_PCT: u32 = 900;
const VP9_SPEED: i32 = 8;
const VP9_FAST_SPEED: i32 = 9;
const LARGE_CHANGE_DIVISOR: usize = 4;
const FPS: u32 = 60;
const KBPS: u32 = 4_000;
/// `pipeline.rs` `REFINE_FRAMES`, `REFINE_DONE_BYTES`: after a keyframe (capped, so blurry
/// at first) the host encodes the still picture again, whole, until it is sharp.
const REFINE_FRAMES: usize = 20;
const REFINE_DONE_BYTES: usize = 1500;
/// `pipeline.rs` `REFINE_INTERVAL`: the time between refinements, milliseconds.
const REFINE_INTERVAL_MS: f64 = 100.0;
/// The still time between the stream's start and the scene, milliseconds.
const SETTLE_MS: f64 = 1000.0;

/// A changed rectangle, in pixels.
#[derive(Clone, Copy)]
struct Dirty {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

/// A BGRX picture (stride `4 * width`, as a full-screen MIT-SHM capture) and the synthetic
/// font it is drawn with.
struct Screen {
    width: usize,
    height: usize,
    bgrx: Vec<u8>,
    /// font8x8's bitmap of each byte (a row per byte, bit 0 the leftmost pixel).
    font: Vec<[u8; 8]>,
    /// Typing: the next character and where it goes.
    typed: usize,
    column: usize,
    row: usize,
    /// Scrolling: the next line of text.
    line: usize,
    /// Video: the step.
    step: usize,
}

impl Screen {
    /// A page of dense text.
    fn text_page(width: usize, height: usize) -> Self {
        let font = (0u8..=255)
            .map(|c| BASIC_FONTS.get(char::from(c)).unwrap_or([0; 8]))
            .collect();
        let mut screen = Self {
            width,
            height,
            bgrx: PAPER.repeat(width * height),
            font,
            typed: 0,
            column: 0,
            row: 0,
            line: 0,
            step: 0,
        };
        for row in 0..height / LINE {
            screen.text_line(row * LINE);
        }
        screen
    }

    fn stride(&self) -> usize {
        self.width * 4
    }

    /// One character cell at pixel (`x`, `y`): the background, then the glyph.
    fn glyph(&mut self, x: usize, y: usize, c: u8, ink: [u8; 4]) {
        let stride = self.stride();
        for dy in 0..LINE.min(self.height.saturating_sub(y)) {
            for dx in 0..CHAR.min(self.width.saturating_sub(x)) {
                // The 8×8 glyph sits 3 pixels below the top of the 14-pixel line.
                let on = (3..11).contains(&dy) && self.font[usize::from(c)][dy - 3] >> dx & 1 == 1;
                let at = (y + dy) * stride + (x + dx) * 4;
                self.bgrx[at..at + 4].copy_from_slice(if on { &ink } else { &PAPER });
            }
        }
    }

    /// The next line of the page's text at pixel row `y`.
    fn text_line(&mut self, y: usize) {
        let start = self.line * 7 % WORDS.len();
        self.line += 1;
        for col in 0..self.width / CHAR {
            let c = WORDS[(start + col) % WORDS.len()];
            self.glyph(col * CHAR, y, c, INK);
        }
    }

    /// Typing: one character at the cursor of a text area in the middle of the screen.
    fn type_char(&mut self) -> Vec<Dirty> {
        let c = WORDS[self.typed % WORDS.len()];
        self.typed += 1;
        let (x, y) = (20 + self.column * CHAR, self.height / 2 + self.row * LINE);
        self.glyph(x, y, c, TYPED);
        self.column += 1;
        if self.column >= 80 {
            (self.column, self.row) = (0, self.row % 8 + 1);
        }
        vec![Dirty {
            x,
            y,
            w: CHAR,
            h: LINE,
        }]
    }

    /// Scrolling: the page moves up a line; a new line appears at the bottom.
    fn scroll(&mut self) -> Vec<Dirty> {
        let stride = self.stride();
        self.bgrx.copy_within(LINE * stride.., 0);
        let bottom = (self.height - LINE) / LINE * LINE;
        self.bgrx[bottom * stride..].fill(0xff);
        self.text_line(bottom);
        vec![self.whole()]
    }

    /// Video: full-screen vertical colour bands moving 8 px a frame.
    fn video(&mut self) -> Vec<Dirty> {
        const BAND: usize = 40;
        let shift = (self.step * 8) % (BAND * 8);
        self.step += 1;
        let row: Vec<u8> = (0..self.width)
            .flat_map(|x| {
                let i = ((x + shift) / BAND) % 8;
                let c = ((i as u32) * 0x1f_2b_11) ^ 0x40_80_c0;
                [c as u8, (c >> 8) as u8, (c >> 16) as u8, 0xff]
            })
            .collect();
        for line in self.bgrx.chunks_exact_mut(row.len()) {
            line.copy_from_slice(&row);
        }
        vec![self.whole()]
    }

    fn whole(&self) -> Dirty {
        Dirty {
            x: 0,
            y: 0,
            w: self.width,
            h: self.height,
        }
    }

    fn i420(&self) -> I420Frame {
        I420Frame::from_bgrx(
            &self.bgrx,
            self.stride(),
            self.width as u32,
            self.height as u32,
        )
        .expect("convert")
    }
}

/// The host pipeline's use of the encoder: active map from damage, VP9 speed by change size.
struct HostEncoder {
    encoder: Encoder,
    codec: Codec,
    cols: usize,
    map: Vec<u8>,
    speed: i32,
    /// The next frame's presentation time, milliseconds.
    pts: f64,
}

impl HostEncoder {
    fn new(codec: Codec, width: u32, height: u32) -> Self {
        let mut config = EncoderConfig::default();
        config.bitrate_kbps = KBPS;
        config.fps = FPS;
        config.max_keyframe_pct = Some(KEYFRAME_CAP_PCT);
        // Tuning experiments: override a setting from the environment.
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        if let Some(q) = env("BENCH_MIN_Q") {
            config.min_quantizer = q;
        }
        if let Some(q) = env("BENCH_MAX_Q") {
            config.max_quantizer = q;
        }
        if let Some(pct) = env("BENCH_MAX_KEYFRAME_PCT") {
            config.max_keyframe_pct = Some(pct);
        }
        if codec == Codec::Vp8 {
            if let Some(speed) = std::env::var("BENCH_VP8_CPU_USED")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                config.cpu_used = Some(speed);
            }
        }
        let encoder = Encoder::new(codec, width, height, config).expect("encoder");
        let (cols, rows) = encoder.block_grid();
        Self {
            encoder,
            codec,
            cols: cols as usize,
            map: vec![0; (cols * rows) as usize],
            speed: VP9_SPEED,
            pts: 0.0,
        }
    }

    /// The start of a stream, as the host sends it: a keyframe of `picture`, then the
    /// refinements that sharpen it. Returns their packets.
    fn start(&mut self, picture: &I420Frame) -> Vec<Vec<u8>> {
        let mut packets: Vec<Vec<u8>> = self
            .encode(picture, true)
            .into_iter()
            .map(|f| f.data)
            .collect();
        for _ in 0..REFINE_FRAMES {
            self.pts += REFINE_INTERVAL_MS;
            self.map.fill(1);
            let out = self.encode(picture, false);
            let bytes: usize = out.iter().map(|f| f.data.len()).sum();
            packets.extend(out.into_iter().map(|f| f.data));
            if bytes < REFINE_DONE_BYTES {
                break;
            }
        }
        // The scene starts a while later (the session bench lets the picture settle).
        self.pts += SETTLE_MS;
        packets
    }

    fn mark(&mut self, dirty: &[Dirty]) {
        let block = BLOCK as usize;
        let rows = self.map.len() / self.cols;
        for d in dirty {
            for by in d.y / block..(d.y + d.h).div_ceil(block).min(rows) {
                for bx in d.x / block..(d.x + d.w).div_ceil(block).min(self.cols) {
                    self.map[by * self.cols + bx] = 1;
                }
            }
        }
    }

    /// Encodes `picture`, coding the blocks marked since the last frame, as the host does.
    fn encode(&mut self, picture: &I420Frame, keyframe: bool) -> Vec<EncodedFrame> {
        if self.codec == Codec::Vp9 {
            let active = if keyframe {
                usize::MAX
            } else {
                self.map.iter().filter(|b| **b != 0).count()
            };
            let speed = if active > self.map.len() / LARGE_CHANGE_DIVISOR {
                VP9_FAST_SPEED
            } else {
                VP9_SPEED
            };
            if speed != self.speed {
                self.encoder.set_cpu_used(speed).expect("speed");
                self.speed = speed;
            }
        }
        self.encoder
            .set_active_map((!keyframe).then_some(self.map.as_slice()))
            .expect("active map");
        let out = self
            .encoder
            .encode(picture, self.pts as i64, keyframe)
            .expect("encode");
        self.pts += 1000.0 / f64::from(FPS);
        self.map.fill(0);
        out
    }
}

type Scene = fn(&mut Screen) -> Vec<Dirty>;
const SCENARIOS: [(&str, Scene); 3] = [
    ("typing", Screen::type_char),
    ("scrolling", Screen::scroll),
    ("video", Screen::video),
];
const CODECS: [(&str, Codec); 2] = [("vp9", Codec::Vp9), ("vp8", Codec::Vp8)];
const W: usize = 1920;
const H: usize = 1080;
/// Frames encoded before measuring, so rate control and reference frames are in steady state.
const WARM_UP_FRAMES: usize = 60;

/// A new scene with an encoder that has sent its keyframe, the refinements and
/// `WARM_UP_FRAMES` frames of the scene.
fn warmed_up(codec: Codec, scene: Scene) -> (Screen, HostEncoder, I420Frame) {
    let mut screen = Screen::text_page(W, H);
    let mut picture = screen.i420();
    let mut enc = HostEncoder::new(codec, W as u32, H as u32);
    enc.start(&picture);
    for _ in 0..WARM_UP_FRAMES {
        let dirty = scene(&mut screen);
        enc.mark(&dirty);
        picture
            .fill_from_bgrx(&screen.bgrx, screen.stride())
            .expect("convert");
        enc.encode(&picture, false);
    }
    (screen, enc, picture)
}

fn convert(c: &mut Criterion) {
    let mut group = c.benchmark_group("convert");
    for (w, h) in [(1280usize, 720usize), (1920, 1080), (2560, 1440)] {
        let size = format!("{w}x{h}");
        let screen = Screen::text_page(w, h);
        let mut picture = screen.i420();
        group.bench_function(BenchmarkId::new("bgrx_to_i420", &size), |b| {
            b.iter(|| {
                picture
                    .fill_from_bgrx(black_box(&screen.bgrx), screen.stride())
                    .expect("convert")
            });
        });
        let mut out = vec![0u8; w * h * 4];
        group.bench_function(BenchmarkId::new("i420_to_bgra", &size), |b| {
            b.iter(|| {
                black_box(&picture)
                    .to_bgra(&mut out, w * 4)
                    .expect("convert")
            });
        });
        group.bench_function(BenchmarkId::new("i420_to_rgba", &size), |b| {
            b.iter(|| {
                black_box(&picture)
                    .to_rgba(&mut out, w * 4)
                    .expect("convert")
            });
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.sampling_mode(SamplingMode::Flat);
    for (codec_name, codec) in CODECS {
        for (scenario, scene) in SCENARIOS {
            let (mut screen, mut enc, mut picture) = warmed_up(codec, scene);
            let (mut frames, mut bytes, mut keyframes) = (0u64, 0u64, 0u64);
            let id = BenchmarkId::new(codec_name, format!("{scenario}/1920x1080"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let dirty = scene(&mut screen);
                        enc.mark(&dirty);
                        picture
                            .fill_from_bgrx(&screen.bgrx, screen.stride())
                            .expect("convert");
                        let start = Instant::now();
                        let out = enc.encode(&picture, false);
                        spent += start.elapsed();
                        frames += 1;
                        bytes += out.iter().map(|f| f.data.len() as u64).sum::<u64>();
                        keyframes += out.iter().filter(|f| f.keyframe).count() as u64;
                    }
                    spent
                });
            });
            let mean = bytes as f64 / frames.max(1) as f64;
            if frames == 0 {
                continue; // filtered out
            }
            eprintln!(
                "encode/{codec_name}/{scenario}: {frames} frames, mean {mean:.0} B/frame = {:.0} kbps at {FPS} fps, unrequested keyframes {keyframes}",
                mean * 8.0 * f64::from(FPS) / 1000.0
            );
        }
    }
    group.finish();
}

fn keyframe(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyframe");
    group.sampling_mode(SamplingMode::Flat);
    for (codec_name, codec) in CODECS {
        let screen = Screen::text_page(W, H);
        let picture = screen.i420();
        let mut enc = HostEncoder::new(codec, W as u32, H as u32);
        let mut bytes = 0;
        group.bench_function(BenchmarkId::new(codec_name, "text_page/1920x1080"), |b| {
            b.iter(|| {
                let out = enc.encode(black_box(&picture), true);
                bytes = out.iter().map(|f| f.data.len()).sum::<usize>();
            });
        });
        if bytes > 0 {
            eprintln!("keyframe/{codec_name}: {bytes} bytes");
        }
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.sampling_mode(SamplingMode::Flat);
    for (codec_name, codec) in CODECS {
        for (scenario, scene) in SCENARIOS {
            // A keyframe, its refinements and the 120 frames of the scene after them, as the
            // host sends them.
            let mut screen = Screen::text_page(W, H);
            let mut picture = screen.i420();
            let mut enc = HostEncoder::new(codec, W as u32, H as u32);
            let mut packets = enc.start(&picture);
            let first = packets.len();
            for _ in 0..120 {
                let dirty = scene(&mut screen);
                enc.mark(&dirty);
                picture
                    .fill_from_bgrx(&screen.bgrx, screen.stride())
                    .expect("convert");
                packets.extend(enc.encode(&picture, false).into_iter().map(|f| f.data));
            }
            let mut decoder = Decoder::new(codec).expect("decoder");
            let mut next = packets.len();
            let id = BenchmarkId::new(codec_name, format!("{scenario}/1920x1080"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        if next == packets.len() {
                            // A new cycle: a fresh decoder takes the keyframe and refinements.
                            decoder = Decoder::new(codec).expect("decoder");
                            for p in &packets[..first] {
                                decoder.decode(p).expect("keyframe and refinements");
                            }
                            next = first;
                        }
                        let start = Instant::now();
                        let picture = decoder.decode(&packets[next]).expect("decode");
                        spent += start.elapsed();
                        assert!(picture.is_some(), "every frame is shown");
                        next += 1;
                    }
                    spent
                });
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = convert, encode, keyframe, decode
}
criterion_main!(benches);
