//! One remote-desktop session on the host, once offer and answer are exchanged: the WebRTC
//! driver, the capture pipeline, the input thread and the clipboard, wired through the
//! permission [`Gate`].
//!
//! Nothing starts before the transport reports [`SessionEvent::Ready`] — DTLS connected and
//! both certificate fingerprints equal the authenticated ones (`sealdesk_rtc`). Then:
//!
//! - video: [`Pipeline`] frames go to the driver without waiting (a full queue drops the frame
//!   and makes the next a keyframe); PLIs and `RequestKeyframe` force keyframes; the
//!   congestion controller's estimates set the bitrate;
//! - input and clipboard from the viewer pass the gate first, where the session's permissions
//!   are enforced; refusals are counted and the viewer told;
//! - liveness: the host pings every [`PING_INTERVAL`]. If nothing arrives from the viewer for
//!   [`SessionLimits::pause_after`], capture pauses and every held key and button is released
//!   (a killed viewer leaves nothing running or pressed); if the viewer comes back within
//!   [`SessionLimits::give_up_after`] the session goes on with a keyframe, otherwise it ends.
//!
//! The host's user can end the session at any moment through [`SessionControl::end`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealdesk_auth::trust::Permissions;
use sealdesk_media::Codec;
use sealdesk_proto::control::{caps, ControlMessage, EndReason, CONTROL_VERSION};
use sealdesk_rtc::driver::{self, DriverHandle};
use sealdesk_rtc::relay::RelayServer;
use sealdesk_rtc::{Path, Session, SessionError, SessionEvent, VideoCodec};
use tokio::sync::{mpsc, oneshot, watch};

use sealdesk_client::recording::{InputCounts, RecordingSink, RecordingSummary};
use sealdesk_record::body::{Event as RecEvent, VideoCodec as RecCodec};

use crate::clipboard::SyncedClipboard;
use crate::gate::{Gate, Verdict};
use crate::inject::InputThread;
use crate::pipeline::{Pipeline, PipelineConfig, PipelineOutput, PipelineStats};

/// How often the host pings the viewer.
pub const PING_INTERVAL: Duration = Duration::from_millis(250);

/// Timing limits of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// How long DTLS and the fingerprint check may take.
    pub connect_timeout: Duration,
    /// Silence from the viewer after which capture pauses and input is released.
    pub pause_after: Duration,
    /// Silence after which the session ends.
    pub give_up_after: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            pause_after: Duration::from_millis(1500),
            give_up_after: Duration::from_secs(20),
        }
    }
}

/// What to stream and allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSetup {
    /// Display, first monitor, preferred codec (the viewer's offer decides what is possible),
    /// frame rate and first bitrate. `prime` is the session's business and ignored here.
    pub capture: PipelineConfig,
    /// What the viewer may do.
    pub permissions: Permissions,
    /// Timing limits.
    pub limits: SessionLimits,
}

impl Default for SessionSetup {
    fn default() -> Self {
        Self {
            capture: PipelineConfig::default(),
            permissions: Permissions::DEFAULT_PAIRED,
            limits: SessionLimits::default(),
        }
    }
}

/// Something the host's user should know about the running session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionNote {
    /// The transport is up and verified; capture started.
    Started {
        /// The codec in use.
        codec: Codec,
    },
    /// The viewer went quiet: capture paused, keys released.
    ViewerSilent,
    /// The viewer is back: capture resumed.
    ViewerBack,
    /// The viewer asked for an ICE restart (the path was lost); answering it.
    Restarting,
    /// Events refused by the permissions, so far (at most every
    /// [`crate::gate::REFUSAL_NOTICE_INTERVAL`]).
    Refused {
        /// The running count.
        count: u32,
    },
    /// Clipboard text moved (`to_viewer` or from it), without its content.
    Clipboard {
        /// Host → viewer.
        to_viewer: bool,
        /// Its size in bytes.
        bytes: usize,
    },
    /// The viewer selected another monitor.
    Monitor {
        /// Its index.
        index: u8,
    },
    /// The viewer records this session (`active`) or stopped; `owner` is whom it says the
    /// recording is for (its words, unverified).
    ViewerRecording {
        /// Recording now.
        active: bool,
        /// For whom, as the viewer says.
        owner: String,
    },
    /// This host's recording of the session stopped early (a disk error); the session goes on.
    RecordingFailed(String),
}

/// This host records the session (DESIGN.md §7): where, for whom, and what to keep.
#[derive(Debug, Clone)]
pub struct SessionRecording {
    /// The running recording.
    pub sink: Arc<RecordingSink>,
    /// The owner, in words for the viewer ("label (fingerprint)").
    pub owner: String,
    /// Keep clipboard text in the recording (else only its size).
    pub keep_clipboard: bool,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// The host's user ended it.
    HostEnded,
    /// The viewer ended it (its words).
    ViewerEnded(String),
    /// The viewer went silent for too long.
    ViewerGone,
    /// The transport failed (including a fingerprint mismatch: tampering).
    Transport(SessionError),
    /// DTLS did not connect in time.
    ConnectTimeout,
    /// Capture or encoding failed.
    Capture(String),
    /// The viewer offered no codec this host can send.
    NoCommonCodec,
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::HostEnded => f.write_str("ended on this machine"),
            SessionEnd::ViewerEnded(why) if why.is_empty() => f.write_str("the viewer ended it"),
            SessionEnd::ViewerEnded(why) => write!(f, "the viewer ended it: {why}"),
            SessionEnd::ViewerGone => f.write_str("the viewer stopped answering"),
            SessionEnd::Transport(e) => write!(f, "{e}"),
            SessionEnd::ConnectTimeout => f.write_str(
                "the direct connection did not come up in time (no network path between the two devices?)",
            ),
            SessionEnd::Capture(e) => write!(f, "{e}"),
            SessionEnd::NoCommonCodec => {
                f.write_str("the viewer accepts neither VP9 nor VP8 video")
            }
        }
    }
}

/// What a session did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// Why it ended.
    pub end: SessionEnd,
    /// From start to end.
    pub duration: Duration,
    /// From start to the verified transport, if it got there.
    pub connect_time: Option<Duration>,
    /// Video frames sent.
    pub frames: u64,
    /// Of which keyframes.
    pub keyframes: u64,
    /// Encoded video bytes sent.
    pub video_bytes: u64,
    /// Input events injected.
    pub injected: u64,
    /// Events refused by the permissions.
    pub refused: u32,
    /// Control messages that did not decode.
    pub malformed: u64,
    /// The path, when known.
    pub path: Option<Path>,
    /// What this host recorded, if it recorded.
    pub recording: Option<RecordingSummary>,
}

/// An ICE restart offer from the viewer (opened and checked) and where its answer goes.
type RestartRequest = (
    String,
    Option<RelayServer>,
    oneshot::Sender<Result<String, SessionError>>,
);

/// The host's handle on a running session: its user ends it; the signaling side hands it
/// the viewer's ICE restart offers.
#[derive(Debug, Clone)]
pub struct SessionControl {
    end: watch::Sender<Option<Ender>>,
    restarts: mpsc::Sender<RestartRequest>,
}

/// What a running session listens to ([`SessionControl::new`]).
#[derive(Debug)]
pub struct SessionInbox {
    end: watch::Receiver<Option<Ender>>,
    restarts: mpsc::Receiver<RestartRequest>,
}

/// Who ended a session through its [`SessionControl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ender {
    Host,
    Viewer,
}

impl SessionControl {
    /// A control, and what the session watches.
    pub fn new() -> (Self, SessionInbox) {
        let (end, end_rx) = watch::channel(None);
        let (restarts, restarts_rx) = mpsc::channel(2);
        (
            Self { end, restarts },
            SessionInbox {
                end: end_rx,
                restarts: restarts_rx,
            },
        )
    }

    /// Ends the session now.
    pub fn end(&self) {
        let _ = self.end.send(Some(Ender::Host));
    }

    /// The viewer said goodbye over the sealed signaling channel (it gave up on a lost
    /// path, or ended while the transport was down): the session ends as the viewer's doing.
    pub fn viewer_said_bye(&self) {
        let _ = self.end.send(Some(Ender::Viewer));
    }

    /// Hands the session the viewer's ICE restart offer (opened and checked by the sealed
    /// channel); the answer — made once the relay, if any, is allocated anew — arrives on
    /// the returned receiver. `None` if the session has ended or already has restarts queued.
    /// `fresh` is a current relay credential to allocate with (the session's own may have
    /// expired).
    pub fn restart(
        &self,
        offer: String,
        fresh: Option<RelayServer>,
    ) -> Option<oneshot::Receiver<Result<String, SessionError>>> {
        let (tx, rx) = oneshot::channel();
        self.restarts.try_send((offer, fresh, tx)).ok().map(|()| rx)
    }
}

/// Runs a session over `socket` until it ends. `rtc` has the viewer's offer applied and its
/// answer sent; `clipboard` is the host's X clipboard (used only with the `clipboard`
/// permission). `notes` hears what the host's user should see.
pub async fn run(
    rtc: Session,
    link: driver::Link,
    setup: SessionSetup,
    clipboard: Option<SyncedClipboard>,
    recording: Option<SessionRecording>,
    mut inbox: SessionInbox,
    mut notes: impl FnMut(SessionNote),
) -> SessionSummary {
    let started = Instant::now();
    let answered = rtc.answered_codecs().to_vec();
    let (handle, mut events, task) = driver::spawn(rtc, link);
    let mut run = Running {
        setup,
        handle,
        started,
        gate: None,
        pipeline: None,
        outbox: Arc::new(Mutex::new(Outbox::default())),
        input: None,
        clipboard,
        connect_time: None,
        last_heard: Instant::now(),
        silent: false,
        malformed: 0,
        path: None,
        ping_id: 0,
        recording,
        input_counts: InputCounts::default(),
        recording_failed: false,
    };
    // The answer already says which codecs the viewer takes: prime the encoder now.
    if let Some(codec) = pick_codec(&answered, run.setup.capture.codec) {
        if let Err(e) = run.start_pipeline(codec) {
            tracing::debug!(error = %e, "could not prime the pipeline; it starts when connected");
        }
    }
    let end_reason = run.drive(&mut events, &mut inbox, &mut notes).await;
    run.finish(end_reason, task).await
}

/// Pipeline output held until the transport is verified.
#[derive(Debug, Default)]
struct Outbox {
    live: bool,
    held: Vec<PipelineOutput>,
}

/// Records a frame of the pipeline's output.
fn record_output(recording: Option<&SessionRecording>, video: VideoCodec, out: &PipelineOutput) {
    if let (Some(r), PipelineOutput::Frame { data, keyframe, .. }) = (recording, out) {
        let codec = match video {
            VideoCodec::Vp8 => RecCodec::Vp8,
            VideoCodec::Vp9 => RecCodec::Vp9,
        };
        r.sink.video(codec, *keyframe, data);
    }
}

/// Hands one pipeline output to the driver; `false` if a frame could not be queued.
fn send_output(handle: &DriverHandle, video: VideoCodec, out: PipelineOutput) -> bool {
    match out {
        PipelineOutput::Frame {
            data, time_90khz, ..
        } => handle.try_send_video(video, time_90khz, data),
        PipelineOutput::Control(msg) => {
            // Cursor updates are superseded by the next one; a layout is resent on change.
            handle.try_send_control(msg);
            true
        }
    }
}

/// The codec to send: the host's preference if the viewer offered it, else the other.
fn pick_codec(offered: &[VideoCodec], prefer: Codec) -> Option<(Codec, VideoCodec)> {
    let want = match prefer {
        Codec::Vp9 => [VideoCodec::Vp9, VideoCodec::Vp8],
        _ => [VideoCodec::Vp8, VideoCodec::Vp9],
    };
    want.into_iter()
        .find(|c| offered.contains(c))
        .map(|c| match c {
            VideoCodec::Vp9 => (Codec::Vp9, c),
            VideoCodec::Vp8 => (Codec::Vp8, c),
        })
}

struct Running {
    setup: SessionSetup,
    handle: DriverHandle,
    started: Instant,
    gate: Option<Gate>,
    /// The pipeline and the codec it encodes.
    pipeline: Option<(Pipeline, (Codec, VideoCodec))>,
    /// What the pipeline produced before the transport was verified.
    outbox: Arc<Mutex<Outbox>>,
    input: Option<InputThread>,
    clipboard: Option<SyncedClipboard>,
    connect_time: Option<Duration>,
    last_heard: Instant,
    silent: bool,
    malformed: u64,
    path: Option<Path>,
    ping_id: u32,
    recording: Option<SessionRecording>,
    /// Input injected since the last recorded count.
    input_counts: InputCounts,
    recording_failed: bool,
}

impl Running {
    async fn drive(
        &mut self,
        events: &mut mpsc::Receiver<SessionEvent>,
        inbox: &mut SessionInbox,
        notes: &mut impl FnMut(SessionNote),
    ) -> SessionEnd {
        let connect_by =
            tokio::time::Instant::from_std(self.started + self.setup.limits.connect_timeout);
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut clip_rx = self
            .clipboard
            .as_mut()
            .and_then(SyncedClipboard::take_changes);
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else {
                        return SessionEnd::Transport(SessionError::State("the session task ended"));
                    };
                    if let Some(done) = self.on_event(ev, notes).await {
                        return done;
                    }
                }
                changed = inbox.end.changed() => {
                    let ender = *inbox.end.borrow();
                    match (changed, ender) {
                        (_, Some(Ender::Viewer)) => {
                            return SessionEnd::ViewerEnded(String::new())
                        }
                        (Err(_), _) | (_, Some(Ender::Host)) => return SessionEnd::HostEnded,
                        (Ok(()), None) => {}
                    }
                }
                Some((offer, fresh, reply)) = inbox.restarts.recv() => {
                    // Answered by the driver once the relay is allocated anew; the session
                    // goes on meanwhile (capture stays paused while the viewer is silent).
                    notes(SessionNote::Restarting);
                    let handle = self.handle.clone();
                    tokio::spawn(async move {
                        let _ = reply.send(handle.answer_restart(offer, fresh).await);
                    });
                }
                text = async {
                    match clip_rx.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match text {
                        Some(text) => self.clipboard_to_viewer(text, notes).await,
                        None => clip_rx = None,
                    }
                }
                () = tokio::time::sleep_until(connect_by), if self.gate.is_none() => {
                    return SessionEnd::ConnectTimeout;
                }
                _ = ping.tick(), if self.gate.is_some() => {
                    if let Some(done) = self.on_tick(notes).await {
                        return done;
                    }
                }
            }
        }
    }

    /// Handles one transport event; `Some` ends the session.
    async fn on_event(
        &mut self,
        ev: SessionEvent,
        notes: &mut impl FnMut(SessionNote),
    ) -> Option<SessionEnd> {
        match ev {
            SessionEvent::Ready { send_codecs } => {
                let Some(codec) = pick_codec(&send_codecs, self.setup.capture.codec) else {
                    return Some(SessionEnd::NoCommonCodec);
                };
                self.connect_time = Some(self.started.elapsed());
                tracing::debug!(
                    after_ms = self.started.elapsed().as_millis() as u64,
                    "transport ready"
                );
                self.last_heard = Instant::now();
                if let Err(e) = self.go_live(codec).await {
                    return Some(SessionEnd::Capture(e));
                }
                tracing::debug!(
                    after_ms = self.started.elapsed().as_millis() as u64,
                    "media started"
                );
                notes(SessionNote::Started { codec: codec.0 });
            }
            SessionEvent::Control(msg) => {
                self.heard(notes);
                return self.on_control(msg, notes).await;
            }
            SessionEvent::Malformed(e) => {
                self.heard(notes);
                self.malformed += 1;
                tracing::debug!(error = %e, "dropped a control message that did not decode");
            }
            SessionEvent::KeyframeRequested => {
                if let Some((p, _)) = &self.pipeline {
                    p.request_keyframe();
                }
            }
            SessionEvent::Bitrate(kbps) => {
                if let Some((p, _)) = &self.pipeline {
                    p.set_bitrate(kbps);
                }
            }
            SessionEvent::Link(stats) if stats.path.is_some() => self.path = stats.path,
            SessionEvent::Closed(err) => {
                return Some(match err {
                    Some(e) => SessionEnd::Transport(e),
                    None => SessionEnd::ViewerEnded(String::new()),
                })
            }
            _ => {}
        }
        if let Some((p, _)) = &self.pipeline {
            if !p.is_running() {
                return Some(SessionEnd::Capture(
                    "screen capture stopped (see the log for why)".into(),
                ));
            }
        }
        None
    }

    /// Starts capture and encoding — primed: the first keyframe is encoded at once and held,
    /// with everything else, until [`Running::go_live`]. Nothing leaves before the transport
    /// is verified; the encoder's start-up and the first keyframe overlap ICE and DTLS.
    fn start_pipeline(&mut self, codec: (Codec, VideoCodec)) -> Result<(), String> {
        let config = PipelineConfig {
            codec: codec.0,
            prime: true,
            ..self.setup.capture.clone()
        };
        let handle = self.handle.clone();
        let video = codec.1;
        let gate = self.outbox.clone();
        let recording = self.recording.clone();
        let pipeline = Pipeline::start(config, move |out| {
            let mut outbox = match gate.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if !outbox.live {
                outbox.held.push(out);
                return true;
            }
            drop(outbox);
            record_output(recording.as_ref(), video, &out);
            send_output(&handle, video, out)
        })
        .map_err(|e| e.to_string())?;
        self.pipeline = Some((pipeline, codec));
        Ok(())
    }

    /// The transport is verified: say hello, send what the pipeline held, let it run.
    async fn go_live(&mut self, codec: (Codec, VideoCodec)) -> Result<(), String> {
        let permissions = self.setup.permissions;
        let mut capabilities = caps::MONITORS;
        if permissions.contains(Permissions::INPUT) {
            capabilities |= caps::INPUT;
            let input = InputThread::start(self.setup.capture.display.as_deref())
                .map_err(|e| e.to_string())?;
            self.input = Some(input);
        }
        if permissions.contains(Permissions::CLIPBOARD) && self.clipboard.is_some() {
            capabilities |= caps::CLIPBOARD_TEXT;
        }
        let _ = self
            .handle
            .send_control(ControlMessage::Hello {
                version: CONTROL_VERSION,
                capabilities,
            })
            .await;
        let _ = self
            .handle
            .send_control(ControlMessage::Permissions {
                bits: permissions.bits(),
            })
            .await;
        // Primed for another codec than the one the viewer can take (or not at all): start over.
        if self.pipeline.as_ref().is_some_and(|(_, c)| *c != codec) {
            self.pipeline = None;
        }
        if self.pipeline.is_none() {
            self.start_pipeline(codec)?;
        }
        let held = {
            let mut outbox = match self.outbox.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            outbox.live = true;
            std::mem::take(&mut outbox.held)
        };
        if let Some(r) = &self.recording {
            let _ = self
                .handle
                .send_control(ControlMessage::Recording {
                    active: true,
                    owner: r.owner.clone(),
                })
                .await;
        }
        for out in held {
            record_output(self.recording.as_ref(), codec.1, &out);
            send_output(&self.handle, codec.1, out);
        }
        if let Some((p, _)) = &self.pipeline {
            p.release();
        }
        self.gate = Some(Gate::new(permissions));
        Ok(())
    }

    fn heard(&mut self, notes: &mut impl FnMut(SessionNote)) {
        self.last_heard = Instant::now();
        if self.silent {
            self.silent = false;
            if let Some((p, _)) = &self.pipeline {
                p.pause(false);
            }
            notes(SessionNote::ViewerBack);
        }
    }

    async fn on_control(
        &mut self,
        msg: ControlMessage,
        notes: &mut impl FnMut(SessionNote),
    ) -> Option<SessionEnd> {
        // Being told the viewer records needs no permission, and must not be missed even
        // when it arrives before this side's transport check finished.
        if let ControlMessage::Recording { active, owner } = msg {
            notes(SessionNote::ViewerRecording { active, owner });
            return None;
        }
        let gate = self.gate.as_mut()?;
        match gate.check(Instant::now(), &msg) {
            Verdict::Ignore => return None,
            Verdict::Refuse { notice } => {
                // At most every REFUSAL_NOTICE_INTERVAL: to the viewer, and to the host's user.
                if let Some(n) = notice {
                    let _ = self.handle.try_send_control(n);
                    notes(SessionNote::Refused {
                        count: gate.refused(),
                    });
                }
                return None;
            }
            Verdict::Allow => {}
        }
        match msg {
            m if m.is_input() => {
                if self.recording.is_some() {
                    self.input_counts.count(&m);
                }
                if let Some(input) = &self.input {
                    input.send(m);
                }
            }
            ControlMessage::ReleaseAll => {
                if let Some(input) = &self.input {
                    input.release_all();
                }
            }
            ControlMessage::Clipboard { text } => {
                let bytes = text.len();
                if let Some(c) = &self.clipboard {
                    let content = self
                        .recording
                        .as_ref()
                        .filter(|r| r.keep_clipboard)
                        .map(|_| text.clone());
                    match c.set(text).await {
                        Ok(()) => {
                            self.record(RecEvent::Clipboard {
                                to_viewer: false,
                                bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
                                content,
                            });
                            notes(SessionNote::Clipboard {
                                to_viewer: false,
                                bytes,
                            });
                        }
                        Err(e) => tracing::warn!(error = %e, "could not set the clipboard"),
                    }
                }
            }
            ControlMessage::SelectMonitor { index } => {
                if let Some((p, _)) = &self.pipeline {
                    p.select_monitor(index);
                    self.record(RecEvent::Monitor { index });
                    notes(SessionNote::Monitor { index });
                }
            }
            ControlMessage::RequestKeyframe => {
                if let Some((p, _)) = &self.pipeline {
                    p.request_keyframe();
                }
            }
            ControlMessage::Ping { id, sent_micros } => {
                let _ = self
                    .handle
                    .try_send_control(ControlMessage::Pong { id, sent_micros });
            }
            ControlMessage::End { reason, text } => {
                let words = if text.is_empty() {
                    format!("{reason:?}")
                } else {
                    text
                };
                return Some(SessionEnd::ViewerEnded(words));
            }
            _ => {}
        }
        None
    }

    async fn clipboard_to_viewer(&mut self, text: String, notes: &mut impl FnMut(SessionNote)) {
        if !self.setup.permissions.contains(Permissions::CLIPBOARD) || self.gate.is_none() {
            return;
        }
        let bytes = text.len();
        let content = self
            .recording
            .as_ref()
            .filter(|r| r.keep_clipboard)
            .map(|_| text.clone());
        if self
            .handle
            .send_control(ControlMessage::Clipboard { text })
            .await
            .is_ok()
        {
            self.record(RecEvent::Clipboard {
                to_viewer: true,
                bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
                content,
            });
            notes(SessionNote::Clipboard {
                to_viewer: true,
                bytes,
            });
        }
    }

    async fn on_tick(&mut self, notes: &mut impl FnMut(SessionNote)) -> Option<SessionEnd> {
        self.ping_id = self.ping_id.wrapping_add(1);
        let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = self.handle.try_send_control(ControlMessage::Ping {
            id: self.ping_id,
            sent_micros: micros,
        });
        self.flush_input_counts();
        if let Some(r) = &self.recording {
            if r.sink.wants_keyframe() {
                if let Some((p, _)) = &self.pipeline {
                    p.request_keyframe();
                }
            }
            if let (Some(e), false) = (r.sink.failed(), self.recording_failed) {
                self.recording_failed = true;
                notes(SessionNote::RecordingFailed(e));
            }
        }
        let quiet = self.last_heard.elapsed();
        if quiet >= self.setup.limits.give_up_after {
            return Some(SessionEnd::ViewerGone);
        }
        if quiet >= self.setup.limits.pause_after && !self.silent {
            self.silent = true;
            if let Some((p, _)) = &self.pipeline {
                p.pause(true);
            }
            if let Some(input) = &self.input {
                input.release_all();
            }
            notes(SessionNote::ViewerSilent);
        }
        None
    }

    fn record(&self, event: RecEvent) {
        if let Some(r) = &self.recording {
            r.sink.event(event);
        }
    }

    fn flush_input_counts(&mut self) {
        if let Some(e) = self.input_counts.take() {
            self.record(e);
        }
    }

    async fn finish(
        mut self,
        end: SessionEnd,
        task: tokio::task::JoinHandle<()>,
    ) -> SessionSummary {
        let pipeline_stats: Option<Arc<PipelineStats>> =
            self.pipeline.as_ref().map(|(p, _)| p.stats().clone());
        // Stop capturing and release input first: these are what the host user cares about.
        if let Some((p, _)) = self.pipeline.take() {
            let stop = tokio::task::spawn_blocking(move || p.stop());
            if let Ok(Err(e)) = stop.await {
                tracing::warn!(error = %e, "capture ended with an error");
            }
        }
        let injected = self
            .input
            .as_ref()
            .map_or(0, |i| i.stats().injected.load(Ordering::Relaxed));
        if let Some(input) = self.input.take() {
            let _ = tokio::task::spawn_blocking(move || input.stop()).await;
        }
        drop(self.clipboard.take());
        // The final segment is written once capture has stopped: nothing is recorded after it.
        let recording = match self.recording.take() {
            Some(r) => r.sink.end(&mut self.input_counts, end.to_string()).await,
            None => None,
        };
        // Tell the viewer why, when it can still hear it.
        let (reason, text) = match &end {
            SessionEnd::HostEnded => (
                EndReason::HostStopped,
                "the host ended the session".to_owned(),
            ),
            SessionEnd::ViewerEnded(_) | SessionEnd::ViewerGone => {
                (EndReason::Other, String::new())
            }
            other => (EndReason::ProtocolError, other.to_string()),
        };
        if !matches!(
            end,
            SessionEnd::ViewerEnded(_) | SessionEnd::ViewerGone | SessionEnd::Transport(_)
        ) && self
            .handle
            .send_control(ControlMessage::End { reason, text })
            .await
            .is_ok()
        {
            // Give the message a moment to leave before the transport closes.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.handle.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        let get = |f: fn(&PipelineStats) -> u64| pipeline_stats.as_deref().map_or(0, f);
        SessionSummary {
            end,
            duration: self.started.elapsed(),
            connect_time: self.connect_time,
            frames: get(|s| s.frames.load(Ordering::Relaxed)),
            keyframes: get(|s| s.keyframes.load(Ordering::Relaxed)),
            video_bytes: get(|s| s.bytes.load(Ordering::Relaxed)),
            injected,
            refused: self.gate.as_ref().map_or(0, Gate::refused),
            malformed: self.malformed,
            path: self.path,
            recording,
        }
    }
}
