//! One session as the audit runs it: a host agent on the audit's display and a headless
//! viewer, in this process, both talking to the signaling server through the audit's taps.
//! The audit plays the host's user (it says yes) and the viewer's (it types, copies).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use sealdesk_auth::code::{OneTimeCode, ViewerAttempts};
use sealdesk_auth::IdentityKey;
use sealdesk_client::signal::Tap;
use sealdesk_client::{ClientConfig, SignalClient};
use sealdesk_host::agent::{self, HostCommand, HostConfig, HostEvent, HostRecording};
use sealdesk_host::pipeline::PipelineConfig;
use sealdesk_host::session::{SessionNote, SessionSetup, SessionSummary};
use sealdesk_proto::control::ControlMessage;
use sealdesk_rtc::VideoCodec;
use sealdesk_viewer::dial::{self, DialConfig, Target};
use sealdesk_viewer::run::{ViewerLimits, ViewerNote};
use sealdesk_viewer::script::{self, Command};
use tokio::sync::mpsc;

use super::observe::{Attack, DeviceTap, RelayTaps, Signaling};

/// The fixed parts of every run: where the server is, the observation points, the display
/// and the devices.
pub(crate) struct Rig {
    pub(crate) url: String,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) signaling: Arc<Signaling>,
    pub(crate) relays: Arc<RelayTaps>,
    pub(crate) display: String,
    pub(crate) local_ip: IpAddr,
    pub(crate) host: Device,
    pub(crate) viewer: Device,
    /// The malicious server's own device (it guesses codes with it).
    pub(crate) attacker: Device,
    /// The desktop on the display (it records what is typed).
    pub(crate) desk: super::desk::Desk,
    next_tap: AtomicUsize,
}

/// A device: its key and data directory.
pub(crate) struct Device {
    pub(crate) key: Arc<IdentityKey>,
    pub(crate) dir: PathBuf,
}

impl Device {
    pub(crate) fn create(dir: PathBuf) -> anyhow::Result<Self> {
        let (key, _) = sealdesk_client::store::load_or_create_identity(&dir)?;
        Ok(Self {
            key: Arc::new(key),
            dir,
        })
    }
}

/// The canaries a run sends across.
#[derive(Debug, Clone)]
pub(crate) struct Canaries {
    pub(crate) screen: String,
    pub(crate) typed: String,
    pub(crate) to_host: String,
    pub(crate) to_viewer: String,
}

/// What a run does.
pub(crate) struct RunSpec {
    /// Whether the devices use the relay: only, as a fallback, or not at all.
    pub(crate) relay: sealdesk_rtc::relay::RelayUse,
    pub(crate) attack: Attack,
    pub(crate) recording: Option<HostRecording>,
    /// Type and copy these (a full session); `None`: only try to connect.
    pub(crate) canaries: Option<Canaries>,
    /// Wrong codes a guessing server tries before the right one.
    pub(crate) wrong_guesses: u8,
}

/// What happened.
#[derive(Default)]
pub(crate) struct Outcome {
    /// What the host reported: failures, tampering, a burned code.
    pub(crate) host_said: Vec<String>,
    /// The viewer's errors (one per dial).
    pub(crate) viewer_said: Vec<String>,
    /// The host began capturing (fingerprints verified, application data flowing).
    pub(crate) session_started: bool,
    /// The viewer's transport came up.
    pub(crate) connected: bool,
    pub(crate) frames: u64,
    pub(crate) host_summary: Option<SessionSummary>,
    pub(crate) path: Option<String>,
    /// The session keys the handshake derived (viewer's view), for the key search.
    pub(crate) keys: Vec<(String, Vec<u8>)>,
    /// The code's secret digits (for the key search).
    pub(crate) code_secret: Option<String>,
    pub(crate) typed_arrived: bool,
    pub(crate) clipboard_to_host_arrived: bool,
    pub(crate) clipboard_to_viewer_arrived: bool,
    pub(crate) uploaded: Option<sealdesk_client::recording::UploadReport>,
    pub(crate) first_frame: Option<Duration>,
}

#[derive(Default)]
struct HostLog {
    said: Vec<String>,
    started: bool,
    summary: Option<SessionSummary>,
    uploaded: Option<sealdesk_client::recording::UploadReport>,
    codes: Vec<zeroize::Zeroizing<String>>,
}

impl Rig {
    #[allow(clippy::too_many_arguments, reason = "the rig's parts, built once")]
    pub(crate) fn new(
        url: String,
        ca_file: Option<PathBuf>,
        display: String,
        local_ip: IpAddr,
        host: Device,
        viewer: Device,
        attacker: Device,
        desk: super::desk::Desk,
    ) -> Self {
        Self {
            url,
            ca_file,
            signaling: Arc::new(Signaling::default()),
            relays: Arc::new(RelayTaps::default()),
            display,
            local_ip,
            host,
            viewer,
            attacker,
            desk,
            next_tap: AtomicUsize::new(0),
        }
    }

    /// A client configuration whose connection the audit observes.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(&self.url);
        c.extra_ca_pem.clone_from(&self.ca_file);
        c.tap = Some(Tap(Arc::new(DeviceTap {
            device: self.next_tap.fetch_add(1, Ordering::Relaxed),
            signaling: self.signaling.clone(),
            relays: self.relays.clone(),
        })));
        c
    }

    async fn connect(&self, device: &Device) -> anyhow::Result<SignalClient> {
        SignalClient::connect(self.client_config(), device.key.clone())
            .await
            .map_err(|e| anyhow!("cannot reach the signaling server {}: {e}", self.url))
    }

    /// Runs one session (or attempt) as `spec` says.
    pub(crate) async fn run(&self, spec: RunSpec) -> anyhow::Result<Outcome> {
        self.signaling.set_attack(spec.attack);
        let relay = spec.relay;
        let host_client = self.connect(&self.host).await?;
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        let (ev_tx, mut ev_rx) = mpsc::channel(64);
        let host_config = HostConfig {
            label: "audit host".into(),
            data_dir: self.host.dir.clone(),
            setup: SessionSetup {
                capture: PipelineConfig {
                    display: Some(self.display.clone()),
                    ..PipelineConfig::default()
                },
                ..SessionSetup::default()
            },
            attended_permissions: crate::host_cmd::ATTENDED_DEFAULT,
            auto_accept_paired: false,
            deny_server_served: false,
            local_ip: self.local_ip,
            relay,
            recording: spec.recording,
        };
        let host_task = tokio::spawn(agent::serve(
            host_config,
            self.host.key.clone(),
            host_client,
            cmd_rx,
            ev_tx,
        ));
        let log = Arc::new(Mutex::new(HostLog::default()));
        let ui = {
            let log = log.clone();
            tokio::spawn(async move {
                while let Some(ev) = ev_rx.recv().await {
                    let mut l = log.lock().unwrap_or_else(PoisonError::into_inner);
                    match ev {
                        HostEvent::Code { code, .. } => l.codes.push(code),
                        HostEvent::Consent(req) => {
                            let p = req.permissions;
                            req.answer(Some(p));
                        }
                        HostEvent::Session(SessionNote::Started { .. }) => l.started = true,
                        HostEvent::Failed { error, .. } => l.said.push(error),
                        HostEvent::Tampering { error, .. } => {
                            l.said.push(format!("tampering suspected: {error}"));
                        }
                        HostEvent::CodeLocked(e) => l.said.push(format!("code burned: {e}")),
                        HostEvent::SessionEnded(s) => l.summary = Some(s),
                        HostEvent::RecordingUploaded(r) => l.uploaded = Some(r),
                        HostEvent::Session(SessionNote::RecordingFailed(e)) => {
                            l.said.push(format!("recording failed: {e}"));
                        }
                        _ => {}
                    }
                }
            })
        };
        let code = wait_for(Duration::from_secs(10), || {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .codes
                .first()
                .cloned()
        })
        .await
        .context("the host showed no code")?;
        let mut out = Outcome::default();
        let typed = OneTimeCode::parse(&code).context("the host's code does not parse")?;
        out.code_secret = Some(code.rsplit('·').next().unwrap_or("").replace(' ', ""));

        let result = self
            .dial_and_view(&spec.canaries, spec.wrong_guesses, typed, relay, &mut out)
            .await;
        let _ = cmd_tx.send(HostCommand::EndSession).await;
        // A recording is uploaded after its session ends: give it time.
        let started = log.lock().unwrap_or_else(PoisonError::into_inner).started;
        if spec.canaries.is_some() && started {
            let _ = wait_for(Duration::from_secs(20), || {
                let l = log.lock().unwrap_or_else(PoisonError::into_inner);
                (l.summary.is_some() && (l.uploaded.is_some() || !spec_records(&l))).then_some(())
            })
            .await;
        }
        let _ = cmd_tx.send(HostCommand::Quit).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), host_task).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), ui).await;
        let mut l = log.lock().unwrap_or_else(PoisonError::into_inner);
        out.host_said = std::mem::take(&mut l.said);
        out.session_started |= l.started;
        out.host_summary = l.summary.take();
        // A short session may end before the viewer's stats name the path; the host's do.
        if out.path.is_none() {
            out.path = out
                .host_summary
                .as_ref()
                .and_then(|s| s.path)
                .map(|p| p.to_string());
        }
        out.uploaded = l.uploaded.take();
        result?;
        Ok(out)
    }

    async fn dial_and_view(
        &self,
        canaries: &Option<Canaries>,
        wrong_guesses: u8,
        code: OneTimeCode,
        relay: sealdesk_rtc::relay::RelayUse,
        out: &mut Outcome,
    ) -> anyhow::Result<()> {
        let dial_config = DialConfig {
            label: "audit viewer".into(),
            codecs: vec![VideoCodec::Vp9, VideoCodec::Vp8],
            permissions: crate::host_cmd::ATTENDED_DEFAULT,
            local_ip: self.local_ip,
            answer_timeout: Duration::from_secs(10),
            approval_timeout: Duration::from_secs(10),
            pinned_key: None,
            relay,
        };
        // A guessing server: its own device, a wrong secret each time.
        if wrong_guesses > 0 {
            let mut attacker = self.connect(&self.attacker).await?;
            let right = code.secret.value();
            let mut attempts = ViewerAttempts::new();
            for i in 0..wrong_guesses {
                let guess = (right + 1 + u32::from(i)) % 100_000_000;
                let text = format!("{} · {guess:08}", code.routing.grouped());
                let wrong = OneTimeCode::parse(&text).context("a guessed code")?;
                match dial::dial(
                    &mut attacker,
                    &self.attacker.key,
                    Target::Code(wrong),
                    &dial_config,
                    &mut attempts,
                    |_| {},
                )
                .await
                {
                    Ok(_) => out.connected = true,
                    Err(e) => out.viewer_said.push(format!("guess {}: {e}", i + 1)),
                }
                // The host's answer to the guess reaches its log after the viewer's.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            attacker.close(Duration::from_secs(1)).await;
        }
        let mut viewer = self.connect(&self.viewer).await?;
        let mut attempts = ViewerAttempts::new();
        let connected = dial::dial(
            &mut viewer,
            &self.viewer.key,
            Target::Code(code),
            &dial_config,
            &mut attempts,
            |_| {},
        )
        .await;
        let connected = match connected {
            Ok(c) => c,
            Err(e) => {
                out.viewer_said.push(e.to_string());
                viewer.close(Duration::from_secs(1)).await;
                return Ok(());
            }
        };
        let keys = &connected.established.keys;
        for (name, k) in [
            ("sealed signaling key host→viewer", &keys.sig_h2v),
            ("sealed signaling key viewer→host", &keys.sig_v2h),
            ("channel key host→viewer", &keys.chan_h2v),
            ("channel key viewer→host", &keys.chan_v2h),
        ] {
            out.keys.push((name.to_owned(), k.expose().to_vec()));
        }
        let (input_tx, input_rx) = mpsc::channel::<ControlMessage>(256);
        let notes = Arc::new(Mutex::new(ViewerState::default()));
        let frames = Arc::new(AtomicUsize::new(0));
        let view = {
            let (notes, frames) = (notes.clone(), frames.clone());
            tokio::spawn(sealdesk_viewer::run::run(
                connected.transport,
                move |_picture| {
                    frames.fetch_add(1, Ordering::Relaxed);
                },
                input_rx,
                ViewerLimits::default(),
                move |note| {
                    let mut n = notes.lock().unwrap_or_else(PoisonError::into_inner);
                    match note {
                        ViewerNote::Connected { .. } => n.connected = true,
                        ViewerNote::FirstFrame { after, .. } => n.first_frame = Some(after),
                        ViewerNote::Clipboard(text) => n.clipboard.push(text),
                        ViewerNote::Stats(st) if st.path.is_some() => n.path = st.path,
                        _ => {}
                    }
                },
            ))
        };
        let first = wait_for(Duration::from_secs(15), || {
            (frames.load(Ordering::Relaxed) > 0).then_some(())
        })
        .await;
        if first.is_ok() {
            if let Some(c) = canaries {
                self.exchange(c, &input_tx, &notes, out).await?;
            } else {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        let _ = input_tx
            .send(ControlMessage::End {
                reason: sealdesk_proto::control::EndReason::UserEnded,
                text: String::new(),
            })
            .await;
        let summary = tokio::time::timeout(Duration::from_secs(10), view)
            .await
            .map_err(|_| anyhow!("the viewer did not end"))?
            .map_err(|e| anyhow!("the viewer crashed: {e}"))?;
        {
            let n = notes.lock().unwrap_or_else(PoisonError::into_inner);
            out.connected = n.connected;
            out.first_frame = n.first_frame.or(summary.first_frame);
            out.frames = summary.frames;
            out.path = summary.path.or(n.path).map(|p| p.to_string());
        }
        viewer.close(Duration::from_secs(1)).await;
        Ok(())
    }

    /// Types the typed canary, copies one canary each way, and checks each arrived.
    async fn exchange(
        &self,
        c: &Canaries,
        input: &mpsc::Sender<ControlMessage>,
        notes: &Arc<Mutex<ViewerState>>,
        out: &mut Outcome,
    ) -> anyhow::Result<()> {
        let clipboard = sealdesk_media::clipboard::Clipboard::connect(Some(&self.display), 1 << 16)
            .map_err(|e| anyhow!("cannot use the host display's clipboard: {e}"))?;
        for line in [
            "click 100 100".to_owned(),
            format!("type {}", c.typed),
            format!("clipboard {}", c.to_host),
        ] {
            if let Ok(Some(Command::Send(msgs))) = script::parse_line(&line, 0) {
                for m in msgs {
                    input
                        .send(m)
                        .await
                        .map_err(|_| anyhow!("the viewer stopped"))?;
                }
            }
        }
        out.typed_arrived = wait_for(Duration::from_secs(10), || {
            self.desk.typed().contains(&c.typed).then_some(())
        })
        .await
        .is_ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let got = clipboard
                .get_text(Duration::from_millis(500))
                .ok()
                .flatten();
            if got.as_deref() == Some(c.to_host.as_str()) {
                out.clipboard_to_host_arrived = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        clipboard
            .set_text(c.to_viewer.clone())
            .map_err(|e| anyhow!("cannot set the host display's clipboard: {e}"))?;
        out.clipboard_to_viewer_arrived = wait_for(Duration::from_secs(10), || {
            notes
                .lock()
                .ok()
                .map(|n| n.clipboard.iter().any(|t| t == &c.to_viewer))
                .filter(|ok| *ok)
        })
        .await
        .is_ok();
        // Until the stats name the path (once a second), which also lets the recording
        // see a few more frames.
        let _ = wait_for(Duration::from_secs(3), || {
            notes.lock().ok().and_then(|n| n.path).map(|_| ())
        })
        .await;
        Ok(())
    }
}

fn spec_records(l: &HostLog) -> bool {
    l.summary.as_ref().is_some_and(|s| s.recording.is_some())
}

#[derive(Default)]
struct ViewerState {
    connected: bool,
    first_frame: Option<Duration>,
    clipboard: Vec<String>,
    path: Option<sealdesk_rtc::Path>,
}

/// Polls `f` until it gives a value or `within` passes.
pub(crate) async fn wait_for<T>(
    within: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {} s", within.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
