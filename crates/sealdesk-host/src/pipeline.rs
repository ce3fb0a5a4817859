//! Capture → convert → encode on its own thread (DESIGN.md §5), so the encoder never blocks
//! the network loop.
//!
//! Each tick (at most [`PipelineConfig::max_fps`] a second) the thread asks XDamage what
//! changed; only when something on the streamed monitor did — or a keyframe was requested —
//! does it grab the monitor with MIT-SHM, convert it to I420 and encode it, telling libvpx
//! which 16×16 blocks changed (an active map: the rest is repeated at no cost). An idle
//! desktop costs two X round trips a tick and sends one near-empty frame (every block
//! repeated, a few dozen bytes) each [`HEARTBEAT`]: a browser's decoder that hears nothing for
//! 3 s asks for a keyframe, which on a screen of text is hundreds of kilobytes — every 3 s,
//! for nothing. After the screen goes still the
//! blocks that changed are encoded again, [`REFINE_INTERVAL`] apart, until a refinement comes
//! out small, so the rate controller sharpens what the first, budget-limited frame blurred (a
//! static screen converges to full quality). Keyframes are capped ([`KEYFRAME_CAP_PCT`]) so
//! the first picture arrives quickly, and sharpened the same way. The cursor is polled every tick and sent as control messages when it moves or
//! changes shape; it is not drawn into the video, so the viewer shows it with no added delay.
//!
//! The thread owns the X connection and the encoder; the rest of the host talks to it through
//! [`Pipeline`]'s methods (keyframe requests, bitrate from the congestion controller, monitor
//! choice, pause), which only set atomics.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sealdesk_media::capture::{CaptureError, Capturer, CursorShape};
use sealdesk_media::convert::{ConvertError, I420Frame};
use sealdesk_media::encode::{EncodeError, Encoder, EncoderConfig, BLOCK};
use sealdesk_media::{Codec, Monitor, Rect};
use sealdesk_proto::control::{self, ControlMessage, MAX_CURSOR_SIDE, MAX_MONITORS};

/// The most times a still picture is encoded again to sharpen it; refinement stops earlier
/// once a refinement comes out smaller than [`REFINE_DONE_BYTES`] (nothing left to improve).
pub const REFINE_FRAMES: u32 = 20;
/// A refinement this small means the picture is as sharp as the quantizer range allows.
pub const REFINE_DONE_BYTES: usize = 1500;
/// Keyframes are capped at this percentage of the average frame's budget: at 4 Mbit/s and
/// 60 fps about 75 kB, which crosses a 4 Mbit/s path in ~150 ms instead of the ~0.8 s an
/// uncapped 1080p keyframe of text (~400 kB) takes behind the pacer. The refinements that
/// follow sharpen it.
pub const KEYFRAME_CAP_PCT: u32 = 900;
/// The time between those refinements.
pub const REFINE_INTERVAL: Duration = Duration::from_millis(100);
/// The longest a stream stays without a frame: a still screen sends an empty one this often.
/// Chromium's receiver requests a keyframe after 3 s without a frame (measured: 4 keyframes
/// in 12 s of an idle 1080p screen, 3.4 Mbit/s for a text page); once a second keeps it quiet.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// The lowest and highest bitrate the congestion controller may set, kbit/s.
pub const BITRATE_RANGE: (u32, u32) = (150, 20_000);
/// VP9's speed (`cpu-used`) for small changes, and for large ones: measured with
/// `sealdesk bench session` at 1080p, speed 9 scrolls at 38 fps where 8 manages 22, while
/// typing costs the same bits at either.
const VP9_SPEED: i32 = 8;
const VP9_FAST_SPEED: i32 = 9;
/// A frame whose changed blocks are more than 1/this of the picture is a large change.
const LARGE_CHANGE_DIVISOR: usize = 4;
/// How often an idle pipeline asks XDamage whether anything changed (a cheap query; the
/// frame rate still caps how often frames are encoded).
const DAMAGE_POLL: Duration = Duration::from_millis(4);
/// How long a paused pipeline sleeps between looks at its controls.
const PAUSED_POLL: Duration = Duration::from_millis(20);

/// What to capture and how to encode it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// The X display (`None`: `$DISPLAY`).
    pub display: Option<String>,
    /// Index of the monitor to stream, in the X server's RandR order.
    pub monitor: usize,
    /// The codec (the one both sides negotiated).
    pub codec: Codec,
    /// The most frames a second (typing at 60 fps costs little: only damaged frames are encoded).
    pub max_fps: u32,
    /// The first bitrate target, kbit/s, until the congestion controller says otherwise.
    pub initial_kbps: u32,
    /// Encode the first keyframe at once, then hold everything until [`Pipeline::release`]:
    /// the encoder's start-up and the first frame happen while the transport connects.
    pub prime: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            display: None,
            monitor: 0,
            codec: Codec::Vp9,
            max_fps: 60,
            initial_kbps: 4_000,
            prime: false,
        }
    }
}

/// Why the pipeline could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// Capture failed (X connection, MIT-SHM, …).
    #[error("screen capture failed: {0}")]
    Capture(#[from] CaptureError),
    /// The encoder failed.
    #[error("video encoder failed: {0}")]
    Encode(#[from] EncodeError),
    /// Colour conversion failed.
    #[error("colour conversion failed: {0}")]
    Convert(#[from] ConvertError),
    /// The monitor asked for does not exist.
    #[error(
        "there is no monitor {index} (this display has {count}; monitors are numbered from 0)"
    )]
    NoSuchMonitor {
        /// The index asked for.
        index: usize,
        /// How many there are.
        count: usize,
    },
    /// A monitor too small to encode (under 2×2 pixels).
    #[error("monitor {0:?} is too small to stream")]
    TooSmall(Rect),
    /// The capture thread could not be started.
    #[error("cannot start the capture thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The capture thread panicked (a bug).
    #[error("the capture thread crashed")]
    Crashed,
}

/// What the pipeline produces.
#[derive(Debug)]
pub enum PipelineOutput {
    /// An encoded frame to send on the video track.
    Frame {
        /// The bitstream of one frame.
        data: Vec<u8>,
        /// Whether it is a keyframe.
        keyframe: bool,
        /// RTP time, 90 kHz, from the pipeline's start.
        time_90khz: u64,
    },
    /// A control message for the viewer (cursor, cursor shape, monitor layout).
    Control(ControlMessage),
}

/// Counters the pipeline keeps (read them any time).
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Frames encoded and handed on.
    pub frames: AtomicU64,
    /// Of which keyframes.
    pub keyframes: AtomicU64,
    /// Encoded bytes handed on.
    pub bytes: AtomicU64,
    /// Frames the sink refused (queue full): a keyframe follows.
    pub dropped: AtomicU64,
    /// Grabs from the X server.
    pub grabs: AtomicU64,
    /// True while the thread is capturing (not paused, not stopped).
    pub capturing: AtomicBool,
}

#[derive(Debug)]
struct Controls {
    stop: AtomicBool,
    paused: AtomicBool,
    held: AtomicBool,
    keyframe: AtomicBool,
    bitrate_kbps: AtomicU32,
    monitor: AtomicU32,
}

/// A running capture thread. Dropping it stops the thread (and waits for it).
#[derive(Debug)]
pub struct Pipeline {
    controls: Arc<Controls>,
    stats: Arc<PipelineStats>,
    thread: Option<JoinHandle<Result<(), PipelineError>>>,
}

impl Pipeline {
    /// Connects to the display, checks the monitor, and starts the thread. `sink` gets every
    /// output on the capture thread and returns `false` when it could not take a frame (the
    /// next frame is then a keyframe, so the viewer recovers).
    pub fn start(
        config: PipelineConfig,
        sink: impl FnMut(PipelineOutput) -> bool + Send + 'static,
    ) -> Result<Self, PipelineError> {
        let mut capturer = Capturer::connect(config.display.as_deref())?;
        let monitors = capturer.monitors()?;
        if config.monitor >= monitors.len() {
            return Err(PipelineError::NoSuchMonitor {
                index: config.monitor,
                count: monitors.len(),
            });
        }
        let controls = Arc::new(Controls {
            stop: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            held: AtomicBool::new(config.prime),
            keyframe: AtomicBool::new(false),
            bitrate_kbps: AtomicU32::new(clamp_kbps(config.initial_kbps)),

            monitor: AtomicU32::new(u32::try_from(config.monitor).unwrap_or(0)),
        });
        let stats = Arc::new(PipelineStats::default());
        let worker = Worker {
            capturer,
            monitors,
            config,
            controls: controls.clone(),
            stats: stats.clone(),
            started: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("sealdesk-capture".into())
            .spawn(move || worker.run(sink))
            .map_err(PipelineError::Thread)?;
        Ok(Self {
            controls,
            stats,
            thread: Some(thread),
        })
    }

    /// Encode the next frame as a keyframe (a PLI, a decoder that lost track).
    pub fn request_keyframe(&self) {
        self.controls.keyframe.store(true, Ordering::Relaxed);
    }

    /// The congestion controller's estimate, kbit/s (clamped to [`BITRATE_RANGE`]).
    pub fn set_bitrate(&self, kbps: u32) {
        self.controls
            .bitrate_kbps
            .store(clamp_kbps(kbps), Ordering::Relaxed);
    }

    /// Stream monitor `index` instead (ignored if there is no such monitor).
    pub fn select_monitor(&self, index: u8) {
        self.controls
            .monitor
            .store(u32::from(index), Ordering::Relaxed);
    }

    /// Let a primed pipeline run (see [`PipelineConfig::prime`]).
    pub fn release(&self) {
        self.controls.held.store(false, Ordering::Relaxed);
    }

    /// Stop capturing for now (`true`), or go on (`false`, starting with a keyframe).
    pub fn pause(&self, paused: bool) {
        self.controls.paused.store(paused, Ordering::Relaxed);
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<PipelineStats> {
        &self.stats
    }

    /// Whether the thread is still running (it stops on an X or encoder failure).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the thread and returns how it ended.
    pub fn stop(mut self) -> Result<(), PipelineError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), PipelineError> {
        self.controls.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| PipelineError::Crashed)?,
            None => Ok(()),
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "capture stopped with an error");
        }
    }
}

fn clamp_kbps(kbps: u32) -> u32 {
    kbps.clamp(BITRATE_RANGE.0, BITRATE_RANGE.1)
}

/// The even-sized part of a monitor the encoder takes (odd sizes lose their last column/row).
fn encode_rect(monitor: &Monitor) -> Result<Rect, PipelineError> {
    let r = monitor.rect;
    let rect = Rect::new(r.x, r.y, r.width & !1, r.height & !1);
    if rect.width < 2 || rect.height < 2 {
        return Err(PipelineError::TooSmall(r));
    }
    Ok(rect)
}

/// The layout message for the viewer.
pub fn layout_message(monitors: &[Monitor], active: usize) -> ControlMessage {
    let monitors: Vec<control::Monitor> = monitors
        .iter()
        .take(MAX_MONITORS)
        .map(|m| control::Monitor {
            x: m.rect.x,
            y: m.rect.y,
            width: u16::try_from(m.rect.width).unwrap_or(u16::MAX),
            height: u16::try_from(m.rect.height).unwrap_or(u16::MAX),
            primary: m.primary,
        })
        .collect();
    let active = u8::try_from(active.min(monitors.len().saturating_sub(1))).unwrap_or(0);
    ControlMessage::MonitorLayout { monitors, active }
}

/// XFixes' premultiplied ARGB cursor as the control channel's straight-alpha RGBA, cropped
/// around the hotspot to [`MAX_CURSOR_SIDE`].
pub fn cursor_message(shape: &CursorShape) -> Option<ControlMessage> {
    let side = u32::from(MAX_CURSOR_SIDE);
    let crop = |len: u32, hot: u32| -> (u32, u32) {
        if len <= side {
            (0, len)
        } else {
            (hot.saturating_sub(side / 2).min(len - side), side)
        }
    };
    let (x0, w) = crop(shape.width, shape.hot_x);
    let (y0, h) = crop(shape.height, shape.hot_y);
    let mut rgba = Vec::with_capacity(usize::try_from(w * h * 4).ok()?);
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            let i = usize::try_from(y * shape.width + x).ok()?;
            let [a, r, g, b] = shape.argb.get(i)?.to_be_bytes();
            let un = |c: u8| -> u8 {
                if a == 0 {
                    0
                } else {
                    u8::try_from((u32::from(c) * 255 / u32::from(a)).min(255)).unwrap_or(255)
                }
            };
            rgba.extend_from_slice(&[un(r), un(g), un(b), a]);
        }
    }
    let msg = ControlMessage::CursorShape {
        width: u16::try_from(w).ok()?,
        height: u16::try_from(h).ok()?,
        hot_x: u16::try_from(shape.hot_x.saturating_sub(x0).min(w.saturating_sub(1))).ok()?,
        hot_y: u16::try_from(shape.hot_y.saturating_sub(y0).min(h.saturating_sub(1))).ok()?,
        rgba,
    };
    // An empty (0×0) cursor cannot be sent; the viewer keeps its last one.
    msg.encode().is_ok().then_some(msg)
}

struct Worker {
    capturer: Capturer,
    monitors: Vec<Monitor>,
    config: PipelineConfig,
    controls: Arc<Controls>,
    stats: Arc<PipelineStats>,
    started: Instant,
}

/// The streamed monitor and what encodes it.
struct Stream {
    index: usize,
    rect: Rect,
    encoder: Encoder,
    picture: I420Frame,
    kbps: u32,
    blocks: Blocks,
    speed: i32,
}

/// Which 16×16 blocks of the streamed picture the encoder should code: those XDamage says
/// changed since the last frame, and — for the refinements of a still picture — those that
/// changed since the picture was last sharp.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Blocks {
    cols: u32,
    rows: u32,
    changed: Vec<u8>,
    unsharp: Vec<u8>,
}

impl Blocks {
    fn new((cols, rows): (u32, u32)) -> Self {
        let n = (cols * rows) as usize;
        Self {
            cols,
            rows,
            changed: vec![0; n],
            unsharp: vec![0; n],
        }
    }

    /// Marks the blocks `damage` (screen pixels) covers in `area` (the streamed rectangle);
    /// true if any.
    fn mark(&mut self, damage: &[Rect], area: &Rect) -> bool {
        let mut any = false;
        for r in damage.iter().filter_map(|d| d.intersection(area)) {
            let r = r.relative_to(area);
            let (Ok(x), Ok(y)) = (u32::try_from(r.x), u32::try_from(r.y)) else {
                continue;
            };
            let x1 = (x + r.width).div_ceil(BLOCK).min(self.cols);
            let y1 = (y + r.height).div_ceil(BLOCK).min(self.rows);
            for by in y / BLOCK..y1 {
                for bx in x / BLOCK..x1 {
                    let i = (by * self.cols + bx) as usize;
                    if let (Some(c), Some(u)) = (self.changed.get_mut(i), self.unsharp.get_mut(i)) {
                        (*c, *u) = (1, 1);
                        any = true;
                    }
                }
            }
        }
        any
    }
}

impl Worker {
    fn run(mut self, mut sink: impl FnMut(PipelineOutput) -> bool) -> Result<(), PipelineError> {
        let result = self.run_inner(&mut sink);
        self.stats.capturing.store(false, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::warn!(error = %e, "capture stopped");
        }
        result
    }

    /// An encoder for monitor `index` at `kbps`.
    fn open(&self, index: usize, kbps: u32) -> Result<Stream, PipelineError> {
        let monitor = self
            .monitors
            .get(index)
            .ok_or(PipelineError::NoSuchMonitor {
                index,
                count: self.monitors.len(),
            })?;
        let rect = encode_rect(monitor)?;
        let mut config = EncoderConfig::default();
        config.bitrate_kbps = kbps;
        config.fps = self.config.max_fps.clamp(1, 120);
        config.max_keyframe_pct = Some(KEYFRAME_CAP_PCT);
        let encoder = Encoder::new(self.config.codec, rect.width, rect.height, config)?;
        Ok(Stream {
            index,
            rect,
            blocks: Blocks::new(encoder.block_grid()),
            encoder,
            picture: I420Frame::new(rect.width, rect.height)?,
            kbps,
            speed: VP9_SPEED,
        })
    }

    fn run_inner(
        &mut self,
        sink: &mut impl FnMut(PipelineOutput) -> bool,
    ) -> Result<(), PipelineError> {
        let tick = Duration::from_secs(1) / self.config.max_fps.clamp(1, 120);
        tracing::debug!(
            after_ms = self.started.elapsed().as_millis() as u64,
            "capture thread started"
        );
        let mut stream = self.open(self.config.monitor, clamp_kbps(self.config.initial_kbps))?;
        tracing::debug!(
            after_ms = self.started.elapsed().as_millis() as u64,
            "encoder ready"
        );
        sink(PipelineOutput::Control(layout_message(
            &self.monitors,
            stream.index,
        )));
        // The first poll reports the whole screen damaged; a new stream starts with a keyframe.
        let mut need_grab = true;
        let mut keyframe = true;
        let mut refine_left = 0u32;
        let mut last_encode = Instant::now();
        let mut last_cursor: Option<(i32, i32)> = None;
        let mut next = Instant::now();
        let mut last_cursor_poll = Instant::now();
        while !self.controls.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            // Look for damage again soon; after a frame, not before the frame rate allows.
            // (A change then waits 0–POLL for capture, not 0–tick: 2 ms on average instead
            // of 8 at 60 fps — bench session measures it.)
            let iteration = Instant::now();
            next = iteration + DAMAGE_POLL.min(tick);
            if self.controls.held.load(Ordering::Relaxed)
                && self.stats.frames.load(Ordering::Relaxed) > 0
            {
                // Primed: the first keyframe is out; XDamage keeps what changes meanwhile.
                std::thread::sleep(PAUSED_POLL.min(tick));
                continue;
            }
            if self.controls.paused.load(Ordering::Relaxed) {
                self.stats.capturing.store(false, Ordering::Relaxed);
                std::thread::sleep(PAUSED_POLL);
                (need_grab, keyframe) = (true, true);
                continue;
            }
            self.stats.capturing.store(true, Ordering::Relaxed);

            let want = usize::try_from(self.controls.monitor.load(Ordering::Relaxed)).unwrap_or(0);
            if want != stream.index && want < self.monitors.len() {
                stream = self.open(want, self.controls.bitrate_kbps.load(Ordering::Relaxed))?;
                sink(PipelineOutput::Control(layout_message(
                    &self.monitors,
                    want,
                )));
                (need_grab, keyframe, last_cursor) = (true, true, None);
            }
            let kbps = self.controls.bitrate_kbps.load(Ordering::Relaxed);
            // The first keyframe is sized at the initial target (a larger budget would make
            // it larger, and slower to arrive); the estimate applies from the next frame.
            if kbps != stream.kbps && self.stats.frames.load(Ordering::Relaxed) > 0 {
                stream.encoder.set_bitrate(kbps)?;
                stream.kbps = kbps;
            }
            keyframe |= self.controls.keyframe.swap(false, Ordering::Relaxed);

            let damage = self.capturer.poll_damage()?;
            need_grab |= stream.blocks.mark(&damage, &stream.rect);
            let refine_due = refine_left > 0 && last_encode.elapsed() >= REFINE_INTERVAL;
            let heartbeat = !(need_grab || keyframe || refine_due)
                && last_encode.elapsed() >= HEARTBEAT
                && self.stats.frames.load(Ordering::Relaxed) > 0;
            if need_grab || keyframe || refine_due || heartbeat {
                // Code only what changed (XDamage knows; libvpx need not search): the changed
                // blocks, or for a refinement everything not yet sharp; a keyframe codes all.
                let map = if keyframe {
                    stream.blocks.unsharp.fill(1);
                    None
                } else if need_grab || heartbeat {
                    // (for a heartbeat nothing changed: every block is repeated)
                    Some(stream.blocks.changed.as_slice())
                } else {
                    Some(stream.blocks.unsharp.as_slice())
                };
                // Large changes (scrolling, video) at VP9's fastest speed, to keep the frame
                // rate; small ones (typing) at the default speed's better quality.
                if self.config.codec == Codec::Vp9 {
                    let active = map.map_or(usize::MAX, |m| m.iter().filter(|b| **b != 0).count());
                    let speed = if active > stream.blocks.changed.len() / LARGE_CHANGE_DIVISOR {
                        VP9_FAST_SPEED
                    } else {
                        VP9_SPEED
                    };
                    if speed != stream.speed {
                        stream.encoder.set_cpu_used(speed)?;
                        stream.speed = speed;
                    }
                }
                stream.encoder.set_active_map(map)?;
                if need_grab {
                    let frame = self.capturer.grab(stream.rect)?;
                    stream
                        .picture
                        .fill_from_bgrx(frame.data(), frame.stride())?;
                    self.stats.grabs.fetch_add(1, Ordering::Relaxed);
                    refine_left = REFINE_FRAMES;
                } else if refine_due {
                    refine_left -= 1;
                }
                if keyframe {
                    // A keyframe spends its budget on the whole picture: sharpen it after.
                    refine_left = REFINE_FRAMES;
                }
                let pts = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
                let mut encoded_bytes = 0;
                for frame in stream.encoder.encode(&stream.picture, pts, keyframe)? {
                    encoded_bytes += frame.data.len();
                    let len = frame.data.len() as u64;
                    let is_key = frame.keyframe;
                    let out = PipelineOutput::Frame {
                        data: frame.data,
                        keyframe: is_key,
                        time_90khz: u64::try_from(pts).unwrap_or(0).saturating_mul(90),
                    };
                    if self.stats.frames.load(Ordering::Relaxed) == 0 {
                        tracing::debug!(
                            bytes = len,
                            after_ms = self.started.elapsed().as_millis() as u64,
                            keyframe = is_key,
                            "first frame encoded"
                        );
                    }
                    if sink(out) {
                        self.stats.frames.fetch_add(1, Ordering::Relaxed);
                        self.stats.bytes.fetch_add(len, Ordering::Relaxed);
                        if is_key {
                            self.stats.keyframes.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        // The viewer will miss this frame: make the next one decodable alone.
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        self.controls.keyframe.store(true, Ordering::Relaxed);
                    }
                }
                last_encode = Instant::now();
                next = iteration + tick;
                stream.blocks.changed.fill(0);
                let refinement = refine_due && !need_grab && !keyframe;
                if refinement && encoded_bytes < REFINE_DONE_BYTES {
                    refine_left = 0; // nothing left to sharpen
                }
                if refinement && refine_left == 0 {
                    stream.blocks.unsharp.fill(0); // the last refinement: all sharp now
                }
                (need_grab, keyframe) = (false, false);
            }

            // The pointer at the frame rate (a round trip to the X server each time).
            if last_cursor_poll.elapsed() < tick {
                continue;
            }
            last_cursor_poll = Instant::now();
            let cursor = self.capturer.poll_cursor()?;
            if let Some(shape) = &cursor.shape {
                if let Some(msg) = cursor_message(shape) {
                    sink(PipelineOutput::Control(msg));
                }
            }
            let at = (cursor.x - stream.rect.x, cursor.y - stream.rect.y);
            if last_cursor != Some(at) {
                last_cursor = Some(at);
                sink(PipelineOutput::Control(ControlMessage::Cursor {
                    x: at.0,
                    y: at.1,
                }));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_images_become_straight_alpha_and_are_cropped_around_the_hotspot() {
        // 2×1: opaque red, half-transparent premultiplied white (0x80 each).
        let shape = CursorShape {
            serial: 1,
            width: 2,
            height: 1,
            hot_x: 1,
            hot_y: 0,
            argb: vec![0xffff_0000, 0x8080_8080],
        };
        let Some(ControlMessage::CursorShape {
            width,
            height,
            hot_x,
            hot_y,
            rgba,
        }) = cursor_message(&shape)
        else {
            panic!("no message")
        };
        assert_eq!((width, height, hot_x, hot_y), (2, 1, 1, 0));
        assert_eq!(rgba, vec![255, 0, 0, 255, 255, 255, 255, 0x80]);

        let side = u32::from(MAX_CURSOR_SIDE);
        let big = CursorShape {
            serial: 2,
            width: 300,
            height: 200,
            hot_x: 290,
            hot_y: 10,
            argb: vec![0xff00_00ff; 300 * 200],
        };
        let Some(ControlMessage::CursorShape {
            width,
            height,
            hot_x,
            hot_y,
            ..
        }) = cursor_message(&big)
        else {
            panic!("no message")
        };
        assert_eq!((u32::from(width), u32::from(height)), (side, side));
        // The hotspot keeps its place in the image: 290 - (300 - 128) and 10 - 0.
        assert_eq!((hot_x, hot_y), (290 - (300 - 128), 10));
        let empty = CursorShape {
            serial: 3,
            width: 0,
            height: 0,
            hot_x: 0,
            hot_y: 0,
            argb: vec![],
        };
        assert!(cursor_message(&empty).is_none());
    }

    #[test]
    fn damage_marks_the_blocks_it_touches_inside_the_streamed_monitor() {
        // A 1920×1080 monitor at x = 1280 of a two-monitor screen: 120 × 68 blocks.
        let area = Rect::new(1280, 0, 1920, 1080);
        let mut b = Blocks::new((120, 68));
        assert!(
            !b.mark(&[Rect::new(0, 0, 1280, 1080)], &area),
            "the other monitor"
        );
        // A glyph at (1280 + 20, 30), 8×16: blocks (1, 1) and (1, 2)… x 20..28 → col 1,
        // y 30..46 → rows 1 and 2.
        assert!(b.mark(&[Rect::new(1300, 30, 8, 16)], &area));
        let marked: Vec<usize> = (0..b.changed.len())
            .filter(|&i| b.changed[i] == 1)
            .collect();
        assert_eq!(marked, vec![121, 241]);
        assert_eq!(b.unsharp, b.changed);
        // The bottom-right corner, partly off the monitor, stays in the grid.
        assert!(b.mark(&[Rect::new(3190, 1070, 100, 100)], &area));
        assert_eq!(b.changed[68 * 120 - 1], 1);
    }

    #[test]
    fn layouts_name_the_streamed_monitor_and_odd_monitors_are_cropped_even() {
        let m = |x, w, h, primary| Monitor {
            name: "m".into(),
            primary,
            rect: Rect::new(x, 0, w, h),
        };
        let ms = [m(0, 1921, 1081, true), m(1921, 1280, 720, false)];
        assert_eq!(
            encode_rect(&ms[0]).unwrap(),
            Rect::new(0, 0, 1920, 1080),
            "odd sizes lose a column and a row"
        );
        assert!(encode_rect(&m(0, 1, 100, false)).is_err());
        let ControlMessage::MonitorLayout { monitors, active } = layout_message(&ms, 1) else {
            panic!()
        };
        assert_eq!(active, 1);
        assert_eq!(monitors.len(), 2);
        assert_eq!((monitors[1].x, monitors[1].width), (1921, 1280));
        assert!(layout_message(&ms, 1).encode().is_ok());
    }
}
