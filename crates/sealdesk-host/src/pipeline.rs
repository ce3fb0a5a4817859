//! Capture → convert → encode on its own thread (DESIGN.md §5), so the encoder never blocks
//! the network loop.
//!
//! Each tick (at most [`PipelineConfig::max_fps`] a second) the thread asks XDamage what
//! changed; only when something on the streamed monitor did — or a keyframe was requested —
//! does it grab the monitor with MIT-SHM, convert it to I420 and encode it. An idle desktop
//! costs two X round trips a tick and sends nothing. After the screen goes still the last
//! picture is encoded a few more times, [`REFINE_INTERVAL`] apart, so the rate controller can
//! sharpen what the first, budget-limited frame blurred (a static screen converges to full
//! quality). The cursor is polled every tick and sent as control messages when it moves or
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
use sealdesk_media::encode::{EncodeError, Encoder, EncoderConfig};
use sealdesk_media::{Codec, Monitor, Rect};
use sealdesk_proto::control::{self, ControlMessage, MAX_CURSOR_SIDE, MAX_MONITORS};

/// How many times a still picture is encoded again to sharpen it.
pub const REFINE_FRAMES: u32 = 4;
/// The time between those refinements.
pub const REFINE_INTERVAL: Duration = Duration::from_millis(100);
/// The lowest and highest bitrate the congestion controller may set, kbit/s.
pub const BITRATE_RANGE: (u32, u32) = (150, 20_000);
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
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            display: None,
            monitor: 0,
            codec: Codec::Vp9,
            max_fps: 60,
            initial_kbps: 4_000,
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

    fn open(&self, index: usize) -> Result<Stream, PipelineError> {
        let monitor = self
            .monitors
            .get(index)
            .ok_or(PipelineError::NoSuchMonitor {
                index,
                count: self.monitors.len(),
            })?;
        let rect = encode_rect(monitor)?;
        let kbps = self.controls.bitrate_kbps.load(Ordering::Relaxed);
        let mut config = EncoderConfig::default();
        config.bitrate_kbps = kbps;
        config.fps = self.config.max_fps.clamp(1, 120);
        let encoder = Encoder::new(self.config.codec, rect.width, rect.height, config)?;
        Ok(Stream {
            index,
            rect,
            encoder,
            picture: I420Frame::new(rect.width, rect.height)?,
            kbps,
        })
    }

    fn run_inner(
        &mut self,
        sink: &mut impl FnMut(PipelineOutput) -> bool,
    ) -> Result<(), PipelineError> {
        let tick = Duration::from_secs(1) / self.config.max_fps.clamp(1, 120);
        let mut stream = self.open(self.config.monitor)?;
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
        while !self.controls.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            next = next.max(now) + tick;
            if self.controls.paused.load(Ordering::Relaxed) {
                self.stats.capturing.store(false, Ordering::Relaxed);
                std::thread::sleep(PAUSED_POLL);
                (need_grab, keyframe) = (true, true);
                continue;
            }
            self.stats.capturing.store(true, Ordering::Relaxed);

            let want = usize::try_from(self.controls.monitor.load(Ordering::Relaxed)).unwrap_or(0);
            if want != stream.index && want < self.monitors.len() {
                stream = self.open(want)?;
                sink(PipelineOutput::Control(layout_message(
                    &self.monitors,
                    want,
                )));
                (need_grab, keyframe, last_cursor) = (true, true, None);
            }
            let kbps = self.controls.bitrate_kbps.load(Ordering::Relaxed);
            if kbps != stream.kbps {
                stream.encoder.set_bitrate(kbps)?;
                stream.kbps = kbps;
            }
            keyframe |= self.controls.keyframe.swap(false, Ordering::Relaxed);

            let damage = self.capturer.poll_damage()?;
            need_grab |= damage.iter().any(|r| r.intersects(&stream.rect));
            let refine_due = refine_left > 0 && last_encode.elapsed() >= REFINE_INTERVAL;
            if need_grab || keyframe || refine_due {
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
                let pts = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
                for frame in stream.encoder.encode(&stream.picture, pts, keyframe)? {
                    let len = frame.data.len() as u64;
                    let is_key = frame.keyframe;
                    let out = PipelineOutput::Frame {
                        data: frame.data,
                        keyframe: is_key,
                        time_90khz: u64::try_from(pts).unwrap_or(0).saturating_mul(90),
                    };
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
                (need_grab, keyframe) = (false, false);
            }

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
