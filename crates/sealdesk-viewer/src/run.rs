//! A running session on the viewer: the WebRTC driver, a decoder thread, the control channel.
//!
//! Video frames go to a decoder thread through a short queue; when the decoder falls behind,
//! or a frame arrives after a loss, or a frame does not decode, the viewer asks for a keyframe
//! (PLI) instead of showing garbage. Decoded pictures go to the caller's `frames` sink on
//! the decoder thread (a window, or the PNG writer). Input from the caller (the window or a
//! script) is sent only after the transport is verified ([`SessionEvent::Ready`]: DTLS up,
//! fingerprints equal to the authenticated ones). The viewer answers the host's pings and
//! pings it back to measure the round trip; if the host goes silent the caller is told, and
//! after [`ViewerLimits::give_up_after`] the session ends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use sealdesk_media::convert::I420Frame;
use sealdesk_media::decode::Decoder;
use sealdesk_media::Codec;
use sealdesk_proto::control::{self, caps, ControlMessage, EndReason, CONTROL_VERSION};
use sealdesk_rtc::driver::{self, DriverHandle};
use sealdesk_rtc::{Path, SessionError, SessionEvent, VideoCodec};
use tokio::sync::mpsc;

use sealdesk_client::recording::{InputCounts, RecordingSink, RecordingSummary};
use sealdesk_record::body::{Event as RecEvent, VideoCodec as RecCodec};

use crate::dial::Transport;
use crate::restart::Restarter;
use crate::window::{CursorImage, Picture};

/// Frames waiting for the decoder; more means it is behind (drop, ask for a keyframe).
const DECODE_QUEUE: usize = 8;
/// How often the viewer pings the host and reports statistics.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How long a lost path (ICE disconnected, or the host silent) may come back by itself
/// before the viewer restarts ICE.
pub const RESTART_GRACE: Duration = Duration::from_secs(2);
/// Between restart attempts while the path stays lost (until `give_up_after`).
pub const RESTART_EVERY: Duration = Duration::from_secs(4);

/// Timing limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewerLimits {
    /// How long DTLS and the fingerprint check may take.
    pub connect_timeout: Duration,
    /// Silence from the host after which the user is told.
    pub silent_after: Duration,
    /// Silence after which the session ends.
    pub give_up_after: Duration,
}

impl Default for ViewerLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            silent_after: Duration::from_secs(3),
            give_up_after: Duration::from_secs(20),
        }
    }
}

/// Once a second: what the session does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewerStats {
    /// Pictures decoded per second.
    pub fps: f64,
    /// Video received, kbit/s.
    pub kbps: f64,
    /// Round trip measured with control-channel pings.
    pub rtt: Option<Duration>,
    /// Direct or through a relay.
    pub path: Option<Path>,
    /// Frames that did not decode (or came after a loss) and made the viewer ask for a keyframe.
    pub keyframe_requests: u64,
}

impl std::fmt::Display for ViewerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} fps · {:.0} kbps", self.fps, self.kbps)?;
        match self.rtt {
            Some(rtt) => write!(f, " · rtt {} ms", rtt.as_millis())?,
            None => f.write_str(" · rtt ?")?,
        }
        match self.path {
            Some(p) => write!(f, " · {p}"),
            None => Ok(()),
        }
    }
}

/// What the viewer's user should know.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ViewerNote {
    /// The transport is up and verified.
    Connected {
        /// From dialing to here.
        after: Duration,
    },
    /// The first picture was decoded.
    FirstFrame {
        /// From dialing to here.
        after: Duration,
        /// Its size.
        width: u32,
        /// Its size.
        height: u32,
    },
    /// Statistics (every [`STATS_INTERVAL`]).
    Stats(ViewerStats),
    /// The host's monitors and which one is shown.
    Monitors {
        /// The layout.
        monitors: Vec<control::Monitor>,
        /// The one streamed.
        active: u8,
    },
    /// What the host allows.
    Permissions(u16),
    /// The host refused input (view-only): the running count.
    InputRefused(u32),
    /// The host records this session (`active`) or stopped; `owner` is whom it says the
    /// recording is for.
    HostRecording {
        /// Recording now.
        active: bool,
        /// For whom, in the host's words.
        owner: String,
    },
    /// Text copied on the host.
    Clipboard(String),
    /// The host's cursor changed shape.
    CursorShape(CursorImage),
    /// The host's pointer moved (pixels of the shown monitor).
    CursorAt {
        /// Column.
        x: i32,
        /// Row.
        y: i32,
    },
    /// The host went quiet.
    HostSilent,
    /// It is back.
    HostBack,
    /// The path is lost and did not come back within [`RESTART_GRACE`]: restarting ICE
    /// (a fresh relay allocation, new ICE credentials, sealed offer and answer).
    Restarting {
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// A restart attempt could not be made (why, in words); another follows.
    RestartFailed(String),
    /// The relay credential nears its end: re-allocating with a fresh one and restarting
    /// ICE onto it (relays refuse refreshes once a credential has expired).
    RenewingRelay {
        /// Seconds the current credential has left.
        expires_in: u64,
    },
    /// ICE has a path again.
    PathBack,
}

/// Why the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViewerEnd {
    /// The user here ended it.
    UserEnded,
    /// The host ended it, in its words.
    HostEnded(String),
    /// The host stopped answering.
    HostGone,
    /// The transport failed (a fingerprint mismatch is tampering).
    Transport(SessionError),
    /// DTLS did not come up in time.
    ConnectTimeout,
    /// The decoder could not be created.
    Decoder(String),
}

impl std::fmt::Display for ViewerEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ViewerEnd::UserEnded => f.write_str("ended here"),
            ViewerEnd::HostEnded(why) if why.is_empty() => f.write_str("the host ended it"),
            ViewerEnd::HostEnded(why) => write!(f, "the host ended it: {why}"),
            ViewerEnd::HostGone => f.write_str("the host stopped answering"),
            ViewerEnd::Transport(e) => write!(f, "{e}"),
            ViewerEnd::ConnectTimeout => f.write_str(
                "the direct connection did not come up in time (no network path between the two devices?)",
            ),
            ViewerEnd::Decoder(e) => write!(f, "{e}"),
        }
    }
}

/// What the session did.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewerSummary {
    /// Why it ended.
    pub end: ViewerEnd,
    /// Dialing to the verified transport.
    pub connect_time: Option<Duration>,
    /// Dialing to the first decoded picture.
    pub first_frame: Option<Duration>,
    /// Pictures decoded.
    pub frames: u64,
    /// Video bytes received.
    pub video_bytes: u64,
    /// From the first picture to the end.
    pub video_time: Duration,
    /// Keyframes asked for.
    pub keyframe_requests: u64,
    /// Control messages that did not decode.
    pub malformed: u64,
    /// Input events the host refused.
    pub refused: u32,
    /// The path, when known.
    pub path: Option<Path>,
    /// What this viewer recorded, if it recorded.
    pub recording: Option<RecordingSummary>,
}

/// This viewer records the session (DESIGN.md §7).
#[derive(Debug, Clone)]
pub struct ViewerRecording {
    /// The running recording.
    pub sink: Arc<RecordingSink>,
    /// The owner, in words for the host ("label (fingerprint)").
    pub owner: String,
    /// Keep clipboard text in the recording (else only its size).
    pub keep_clipboard: bool,
}

impl ViewerSummary {
    /// Average pictures per second over the video time.
    pub fn fps(&self) -> f64 {
        per_second(self.frames as f64, self.video_time)
    }

    /// Average video kbit/s over the video time.
    pub fn kbps(&self) -> f64 {
        per_second(self.video_bytes as f64 * 8.0 / 1000.0, self.video_time)
    }
}

fn per_second(n: f64, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        n / over.as_secs_f64()
    }
}

#[derive(Debug, Default)]
struct DecodeCounters {
    decoded: AtomicU64,
    /// The first picture's size, `width << 32 | height`; 0 until there is one.
    first_size: AtomicU64,
    need_keyframe: AtomicBool,
    failed: AtomicU64,
}

struct Packet {
    codec: VideoCodec,
    contiguous: bool,
    data: Vec<u8>,
}

/// Runs the session until it ends. `frames` gets every decoded picture (on the decoder
/// thread); `input` carries what the user does (pointer, keys, clipboard, monitor choice,
/// `End`); `notes` hears the rest.
pub async fn run(
    transport: Transport,
    frames: impl FnMut(Picture) + Send + 'static,
    mut input: mpsc::Receiver<ControlMessage>,
    limits: ViewerLimits,
    mut notes: impl FnMut(ViewerNote),
) -> ViewerSummary {
    let started = transport.started;
    let restarter = transport.restarter;
    let relay_expires = transport.relay_expires_at;
    let recording = transport.recording;
    let (handle, mut events, task) = driver::spawn(transport.rtc, transport.link);
    let counters = Arc::new(DecodeCounters::default());
    let (decode_tx, decode_rx) = sync_channel::<Packet>(DECODE_QUEUE);
    let decoder = {
        let c = counters.clone();
        std::thread::Builder::new()
            .name("sealdesk-decode".into())
            .spawn(move || decode_loop(decode_rx, frames, &c))
    };
    let mut v = Viewer {
        handle,
        started,
        limits,
        counters,
        decode_tx: Some(decode_tx),
        ready: false,
        connect_time: None,
        first_frame: None,
        first_frame_at: None,
        video_bytes: 0,
        last_bytes: 0,
        last_decoded: 0,
        keyframe_requests: 0,
        malformed: 0,
        refused: 0,
        rtt: None,
        path: None,
        last_heard: Instant::now(),
        silent: false,
        ping_id: 0,
        pings: Vec::new(),
        restarter,
        lost_since: None,
        next_restart: None,
        restart_task: None,
        restarts: 0,
        relay_expires,
        relay_life: relay_expires.map_or(0, |e| e.saturating_sub(unix_now())),
        next_renew: None,
        recording,
        record_wait_key: true,
        input_counts: InputCounts::default(),
    };
    let end = match decoder {
        Err(e) => ViewerEnd::Decoder(format!("cannot start the decoder thread: {e}")),
        Ok(_) => v.drive(&mut events, &mut input, &mut notes).await,
    };
    v.finish(end, task).await
}

struct Viewer {
    handle: DriverHandle,
    started: Instant,
    limits: ViewerLimits,
    counters: Arc<DecodeCounters>,
    decode_tx: Option<SyncSender<Packet>>,
    ready: bool,
    connect_time: Option<Duration>,
    first_frame: Option<Duration>,
    first_frame_at: Option<Instant>,
    video_bytes: u64,
    last_bytes: u64,
    last_decoded: u64,
    keyframe_requests: u64,
    malformed: u64,
    refused: u32,
    rtt: Option<Duration>,
    path: Option<Path>,
    last_heard: Instant,
    silent: bool,
    ping_id: u32,
    /// Pings in flight: id and when sent (the host echoes them).
    pings: Vec<(u32, Instant)>,
    /// How to ask the host for an ICE restart (none: the path cannot be renegotiated).
    restarter: Option<Restarter>,
    /// Since when the path is lost (ICE disconnected or the host silent).
    lost_since: Option<Instant>,
    /// When the next restart attempt is due.
    next_restart: Option<Instant>,
    /// The attempt in flight; it returns the new credential's expiry, if it got one.
    restart_task: Option<tokio::task::JoinHandle<Result<Option<u64>, String>>>,
    /// Attempts made in this session.
    restarts: u32,
    /// When the relay credential in use expires (Unix seconds).
    relay_expires: Option<u64>,
    /// How long it lived when it came, seconds.
    relay_life: u64,
    /// No renewal attempt before this (after one failed).
    next_renew: Option<Instant>,
    recording: Option<ViewerRecording>,
    /// The recording takes video from the next keyframe (at the start, after a loss).
    record_wait_key: bool,
    /// Input sent since the last recorded count.
    input_counts: InputCounts,
}

impl Viewer {
    async fn drive(
        &mut self,
        events: &mut mpsc::Receiver<SessionEvent>,
        input: &mut mpsc::Receiver<ControlMessage>,
        notes: &mut impl FnMut(ViewerNote),
    ) -> ViewerEnd {
        let connect_by = tokio::time::Instant::from_std(self.started + self.limits.connect_timeout);
        let mut tick = tokio::time::interval(STATS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A short clock for noticing the first frame and a decoder that needs a keyframe.
        let mut fast = tokio::time::interval(Duration::from_millis(10));
        let mut last_stats = Instant::now();
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else {
                        return ViewerEnd::Transport(SessionError::State("the session task ended"));
                    };
                    if let Some(end) = self.on_event(ev, notes).await {
                        return end;
                    }
                }
                msg = input.recv(), if self.ready => match msg {
                    None => return ViewerEnd::UserEnded,
                    Some(ControlMessage::End { .. }) => return ViewerEnd::UserEnded,
                    Some(msg) => {
                        self.record_input(&msg);
                        if self.handle.send_control(msg).await.is_err() {
                            return ViewerEnd::Transport(SessionError::State("the session task ended"));
                        }
                    }
                },
                () = tokio::time::sleep_until(connect_by), if !self.ready => {
                    return ViewerEnd::ConnectTimeout;
                }
                _ = fast.tick(), if self.ready => {
                    self.check_decoder(notes).await;
                    self.check_restart(notes);
                }
                _ = tick.tick(), if self.ready => {
                    let elapsed = last_stats.elapsed();
                    last_stats = Instant::now();
                    if let Some(end) = self.on_tick(elapsed, notes).await {
                        return end;
                    }
                }
            }
        }
    }

    async fn check_decoder(&mut self, notes: &mut impl FnMut(ViewerNote)) {
        if self.counters.need_keyframe.swap(false, Ordering::Relaxed) {
            self.ask_keyframe().await;
        }
        let size = self.counters.first_size.load(Ordering::Relaxed);
        if self.first_frame.is_none() && size != 0 {
            let after = self.started.elapsed();
            self.first_frame = Some(after);
            self.first_frame_at = Some(Instant::now());
            let (width, height) = ((size >> 32) as u32, size as u32);
            notes(ViewerNote::FirstFrame {
                after,
                width,
                height,
            });
        }
    }

    /// The path was lost (ICE disconnected, or the host went silent).
    fn path_lost(&mut self) {
        if self.lost_since.is_none() {
            let now = Instant::now();
            self.lost_since = Some(now);
            self.next_restart = Some(now + RESTART_GRACE);
        }
    }

    /// Starts a restart attempt when one is due, and notes how the last one went.
    fn check_restart(&mut self, notes: &mut impl FnMut(ViewerNote)) {
        if let Some(t) = self.restart_task.as_ref() {
            if !t.is_finished() {
                return;
            }
            if let Some(t) = self.restart_task.take() {
                // A finished task's result is ready: this does not wait.
                match t.now_or_never() {
                    Some(Ok(Ok(Some(expires)))) => {
                        self.relay_expires = Some(expires);
                        self.relay_life = expires.saturating_sub(unix_now());
                    }
                    Some(Ok(Err(e))) => notes(ViewerNote::RestartFailed(e)),
                    _ => {}
                }
            }
        }
        let Some(restarter) = self.restarter.as_ref() else {
            return;
        };
        let now = Instant::now();
        let lost_due = self.lost_since.is_some() && self.next_restart.is_some_and(|due| now >= due);
        // Through the relay, the allocation lives only as long as its credential: renew it
        // before then (a margin of a quarter of its life, at most two minutes).
        let margin = 120.min(self.relay_life / 4);
        let left = self.relay_expires.map(|e| e.saturating_sub(unix_now()));
        let renew_due = self.path == Some(Path::Relay)
            && left.is_some_and(|l| l <= margin)
            && self.next_renew.is_none_or(|t| now >= t);
        if !lost_due && !renew_due {
            return;
        }
        if lost_due {
            self.restarts += 1;
            self.next_restart = Some(now + RESTART_EVERY);
            notes(ViewerNote::Restarting {
                attempt: self.restarts,
            });
        } else {
            self.next_renew = Some(now + RESTART_EVERY);
            notes(ViewerNote::RenewingRelay {
                expires_in: left.unwrap_or(0),
            });
        }
        let handle = self.handle.clone();
        let restarter = restarter.clone();
        self.restart_task = Some(tokio::spawn(async move {
            // A fresh credential when the server gives one (the old one may have expired).
            let fresh = restarter.fresh_relay().await;
            let expires = fresh.as_ref().map(|(_, e)| *e);
            let offer = handle
                .restart_offer(fresh.map(|(r, _)| r))
                .await
                .map_err(|e| format!("no restart offer: {e}"))?;
            let answer = restarter.ask(offer).await?;
            handle
                .apply_answer(answer)
                .await
                .map_err(|e| format!("the host's restart answer did not apply: {e}"))?;
            Ok(expires)
        }));
    }

    /// The path is back (ICE reconnected or the host heard again).
    fn path_back(&mut self, notes: &mut impl FnMut(ViewerNote)) -> bool {
        if self.lost_since.take().is_some() {
            self.next_restart = None;
            notes(ViewerNote::PathBack);
            return true;
        }
        false
    }

    async fn ask_keyframe(&mut self) {
        self.keyframe_requests += 1;
        let _ = self.handle.request_keyframe().await;
    }

    async fn on_event(
        &mut self,
        ev: SessionEvent,
        notes: &mut impl FnMut(ViewerNote),
    ) -> Option<ViewerEnd> {
        match ev {
            SessionEvent::Ready { .. } => {
                self.ready = true;
                self.last_heard = Instant::now();
                let after = self.started.elapsed();
                self.connect_time = Some(after);
                notes(ViewerNote::Connected { after });
                let _ = self
                    .handle
                    .send_control(ControlMessage::Hello {
                        version: CONTROL_VERSION,
                        capabilities: caps::INPUT | caps::CLIPBOARD_TEXT | caps::MONITORS,
                    })
                    .await;
                if let Some(r) = &self.recording {
                    let _ = self
                        .handle
                        .send_control(ControlMessage::Recording {
                            active: true,
                            owner: r.owner.clone(),
                        })
                        .await;
                }
            }
            SessionEvent::Video {
                codec,
                contiguous,
                data,
                ..
            } => {
                self.heard(notes);
                if self.video_bytes == 0 {
                    tracing::debug!(
                        after_ms = self.started.elapsed().as_millis() as u64,
                        bytes = data.len(),
                        "first video frame received"
                    );
                }
                self.video_bytes += data.len() as u64;
                self.record_video(codec, contiguous, &data);
                let Some(tx) = &self.decode_tx else {
                    return None;
                };
                let packet = Packet {
                    codec,
                    contiguous,
                    data,
                };
                match tx.try_send(packet) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        // The decoder is behind: what follows cannot decode without a keyframe.
                        self.counters.need_keyframe.store(true, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        return Some(ViewerEnd::Decoder("the decoder stopped".into()))
                    }
                }
            }
            SessionEvent::Control(msg) => {
                self.heard(notes);
                return self.on_control(msg, notes).await;
            }
            SessionEvent::Malformed(e) => {
                self.malformed += 1;
                tracing::debug!(error = %e, "dropped a control message that did not decode");
            }
            SessionEvent::Link(stats) if stats.path.is_some() => self.path = stats.path,
            SessionEvent::Disconnected => self.path_lost(),
            SessionEvent::Reconnected => {
                // Frames were lost with the path: start again from a keyframe.
                let was_lost = self.path_back(notes);
                if was_lost {
                    self.ask_keyframe().await;
                }
            }
            SessionEvent::Closed(err) => {
                return Some(match err {
                    Some(e) => ViewerEnd::Transport(e),
                    None => ViewerEnd::HostEnded(String::new()),
                })
            }
            _ => {}
        }
        None
    }

    fn heard(&mut self, notes: &mut impl FnMut(ViewerNote)) {
        self.last_heard = Instant::now();
        if self.silent {
            self.silent = false;
            notes(ViewerNote::HostBack);
            self.path_back(notes);
        }
    }

    async fn on_control(
        &mut self,
        msg: ControlMessage,
        notes: &mut impl FnMut(ViewerNote),
    ) -> Option<ViewerEnd> {
        match msg {
            ControlMessage::Ping { id, sent_micros } => {
                let _ = self
                    .handle
                    .try_send_control(ControlMessage::Pong { id, sent_micros });
            }
            ControlMessage::Pong { id, .. } => {
                if let Some(i) = self.pings.iter().position(|(p, _)| *p == id) {
                    let (_, sent) = self.pings.swap_remove(i);
                    self.rtt = Some(sent.elapsed());
                }
            }
            ControlMessage::MonitorLayout { monitors, active } => {
                notes(ViewerNote::Monitors { monitors, active });
            }
            ControlMessage::Permissions { bits } => notes(ViewerNote::Permissions(bits)),
            ControlMessage::Recording { active, owner } => {
                notes(ViewerNote::HostRecording { active, owner });
            }
            ControlMessage::InputRefused { count } => {
                self.refused = count;
                notes(ViewerNote::InputRefused(count));
            }
            ControlMessage::Clipboard { text } => {
                if let Some(r) = &self.recording {
                    r.sink.event(RecEvent::Clipboard {
                        to_viewer: true,
                        bytes: u32::try_from(text.len()).unwrap_or(u32::MAX),
                        content: r.keep_clipboard.then(|| text.clone()),
                    });
                }
                notes(ViewerNote::Clipboard(text));
            }
            ControlMessage::Cursor { x, y } => notes(ViewerNote::CursorAt { x, y }),
            ControlMessage::CursorShape {
                width,
                height,
                hot_x,
                hot_y,
                rgba,
            } => notes(ViewerNote::CursorShape(CursorImage {
                width: u32::from(width),
                height: u32::from(height),
                hot_x: u32::from(hot_x),
                hot_y: u32::from(hot_y),
                rgba,
            })),
            ControlMessage::End { text, .. } => return Some(ViewerEnd::HostEnded(text)),
            _ => {}
        }
        None
    }

    async fn on_tick(
        &mut self,
        elapsed: Duration,
        notes: &mut impl FnMut(ViewerNote),
    ) -> Option<ViewerEnd> {
        let quiet = self.last_heard.elapsed();
        if quiet >= self.limits.give_up_after {
            return Some(ViewerEnd::HostGone);
        }
        if quiet >= self.limits.silent_after && !self.silent {
            self.silent = true;
            notes(ViewerNote::HostSilent);
            self.path_lost();
        }
        self.ping_id = self.ping_id.wrapping_add(1);
        let now = Instant::now();
        self.pings
            .retain(|(_, t)| now.duration_since(*t) < Duration::from_secs(10));
        self.pings.push((self.ping_id, now));
        let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = self.handle.try_send_control(ControlMessage::Ping {
            id: self.ping_id,
            sent_micros: micros,
        });
        self.flush_input_counts();
        let decoded = self.counters.decoded.load(Ordering::Relaxed);
        let stats = ViewerStats {
            fps: per_second((decoded - self.last_decoded) as f64, elapsed),
            kbps: per_second(
                (self.video_bytes - self.last_bytes) as f64 * 8.0 / 1000.0,
                elapsed,
            ),
            rtt: self.rtt,
            path: self.path,
            keyframe_requests: self.keyframe_requests,
        };
        (self.last_decoded, self.last_bytes) = (decoded, self.video_bytes);
        let _ = self.handle.try_send_control(ControlMessage::Stats {
            fps_x10: u16::try_from((stats.fps * 10.0) as u64).unwrap_or(u16::MAX),
            kbps: u32::try_from(stats.kbps as u64).unwrap_or(u32::MAX),
            rtt_ms: self
                .rtt
                .map_or(0, |r| u16::try_from(r.as_millis()).unwrap_or(u16::MAX)),
            loss_permille: 0,
        });
        notes(ViewerNote::Stats(stats));
        None
    }

    /// Records a received frame: from a keyframe on, and again from the next keyframe after
    /// a loss (what is recorded always decodes).
    fn record_video(&mut self, codec: VideoCodec, contiguous: bool, data: &[u8]) {
        let Some(r) = &self.recording else {
            return;
        };
        if !contiguous {
            self.record_wait_key = true;
        }
        let key = is_keyframe(codec_of(codec), data);
        if self.record_wait_key && !key {
            return;
        }
        self.record_wait_key = false;
        let codec = match codec {
            VideoCodec::Vp8 => RecCodec::Vp8,
            VideoCodec::Vp9 => RecCodec::Vp9,
        };
        r.sink.video(codec, key, data);
    }

    fn record_input(&mut self, msg: &ControlMessage) {
        let Some(r) = &self.recording else {
            return;
        };
        match msg {
            ControlMessage::Clipboard { text } => {
                r.sink.event(RecEvent::Clipboard {
                    to_viewer: false,
                    bytes: u32::try_from(text.len()).unwrap_or(u32::MAX),
                    content: r.keep_clipboard.then(|| text.clone()),
                });
            }
            ControlMessage::SelectMonitor { index } => {
                r.sink.event(RecEvent::Monitor { index: *index });
            }
            m => self.input_counts.count(m),
        }
    }

    fn flush_input_counts(&mut self) {
        if let (Some(r), Some(e)) = (&self.recording, self.input_counts.take()) {
            r.sink.event(e);
        }
    }

    async fn finish(mut self, end: ViewerEnd, task: tokio::task::JoinHandle<()>) -> ViewerSummary {
        if matches!(end, ViewerEnd::UserEnded) {
            let _ = self.handle.send_control(ControlMessage::ReleaseAll).await;
            if self
                .handle
                .send_control(ControlMessage::End {
                    reason: EndReason::UserEnded,
                    text: "the viewer ended the session".into(),
                })
                .await
                .is_ok()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.decode_tx = None; // the decoder thread ends
        let recording = match self.recording.take() {
            Some(r) => r.sink.end(&mut self.input_counts, end.to_string()).await,
            None => None,
        };
        self.handle.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        ViewerSummary {
            end,
            connect_time: self.connect_time,
            first_frame: self.first_frame,
            frames: self.counters.decoded.load(Ordering::Relaxed),
            video_bytes: self.video_bytes,
            video_time: self.first_frame_at.map_or(Duration::ZERO, |t| t.elapsed()),
            keyframe_requests: self.keyframe_requests,
            malformed: self.malformed,
            refused: self.refused,
            path: self.path,
            recording,
        }
    }
}

fn codec_of(v: VideoCodec) -> Codec {
    match v {
        VideoCodec::Vp9 => Codec::Vp9,
        VideoCodec::Vp8 => Codec::Vp8,
    }
}

/// The decoder thread: decodes, converts to BGRA, hands pictures on. Any frame it cannot use
/// makes it drop frames until a keyframe decodes.
fn decode_loop(rx: Receiver<Packet>, mut frames: impl FnMut(Picture), c: &DecodeCounters) {
    let mut decoder: Option<Decoder> = None;
    let mut waiting_for_keyframe = false;
    while let Ok(p) = rx.recv() {
        let codec = codec_of(p.codec);
        if decoder.as_ref().is_none_or(|d| d.codec() != codec) {
            match Decoder::new(codec) {
                Ok(d) => decoder = Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create a decoder");
                    return;
                }
            }
        }
        let Some(d) = decoder.as_mut() else { return };
        if !p.contiguous {
            waiting_for_keyframe = true;
            c.need_keyframe.store(true, Ordering::Relaxed);
        }
        let is_key = is_keyframe(codec, &p.data);
        if waiting_for_keyframe && !is_key {
            continue;
        }
        match d.decode(&p.data) {
            Ok(Some(picture)) => {
                waiting_for_keyframe = false;
                if let Some(pic) = to_picture(&picture) {
                    c.decoded.fetch_add(1, Ordering::Relaxed);
                    let size = u64::from(pic.width) << 32 | u64::from(pic.height);
                    let _ = c.first_size.compare_exchange(
                        0,
                        size,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    frames(pic);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "a frame did not decode; asking for a keyframe");
                c.failed.fetch_add(1, Ordering::Relaxed);
                waiting_for_keyframe = true;
                c.need_keyframe.store(true, Ordering::Relaxed);
            }
        }
    }
}

fn to_picture(frame: &I420Frame) -> Option<Picture> {
    let (width, height) = (frame.width(), frame.height());
    let stride = usize::try_from(width).ok()? * 4;
    let mut bgra = vec![0u8; stride * usize::try_from(height).ok()?];
    frame.to_bgra(&mut bgra, stride).ok()?;
    Some(Picture {
        width,
        height,
        bgra,
    })
}

/// Whether a frame is a keyframe, from its first bytes (VP8: bit 0 of byte 0 is 0; VP9: the
/// uncompressed header's frame type). Malformed input is "not a keyframe".
pub fn is_keyframe(codec: Codec, data: &[u8]) -> bool {
    match (codec, data.first()) {
        (Codec::Vp8, Some(b)) => b & 1 == 0,
        (Codec::Vp9, Some(&b)) => {
            // frame_marker(2) profile_low(1) profile_high(1) [reserved(1) if profile 3]
            // show_existing_frame(1) frame_type(1)
            if b >> 6 != 0b10 {
                return false;
            }
            let profile = ((b >> 5) & 1) | (((b >> 4) & 1) << 1);
            let mut bit = 3i32; // next bit index, from the MSB (7) down
            if profile == 3 {
                bit -= 1;
            }
            if (b >> bit) & 1 == 1 {
                return false; // show_existing_frame
            }
            bit -= 1;
            (b >> bit) & 1 == 0
        }
        _ => false,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
