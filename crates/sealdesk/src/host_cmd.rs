//! `sealdesk host`: share this X display. Shows a one-time code (and its QR code), asks
//! the user before anyone gets in, says while a session is active, and ends it on request.
//!
//! The agent ([`sealdesk_host::agent`]) does the work; this module is the terminal around
//! it: it prints what the agent reports and reads the user's answers and commands from
//! standard input (`n` new code, `e` end the session, `q` quit; `y`/`v`/`n` at a prompt).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use clap::Args;
use sealdesk_auth::session::{AccessKind, ViewerKind};
use sealdesk_auth::trust::Permissions;
use sealdesk_client::store;
use sealdesk_client::trust_store::TrustFiles;
use sealdesk_host::agent::{
    self, ConsentRequest, HostCommand, HostConfig, HostEvent, HostRecording,
};
use sealdesk_host::pipeline::PipelineConfig;
use sealdesk_host::session::{SessionNote, SessionSetup};
use sealdesk_media::Codec;
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;

use crate::pair::ServerArgs;
use crate::text::safe;

/// Flags of `sealdesk host`.
#[derive(Debug, Args)]
pub(crate) struct HostArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// The X display to share [default: $DISPLAY].
    #[arg(long, value_name = "DISPLAY")]
    pub(crate) display: Option<String>,
    /// The monitor to show first (0 = the first RandR monitor; the viewer may switch).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) monitor: usize,
    /// Video codec: vp9 (default, best on screen content) or vp8 (used anyway when the viewer
    /// cannot decode VP9).
    #[arg(long, default_value = "vp9", value_parser = parse_codec)]
    pub(crate) codec: Codec,
    /// Most frames per second (only changed frames are sent).
    #[arg(long, default_value_t = 60, value_name = "FPS")]
    pub(crate) fps: u32,
    /// How this machine introduces itself [default: the hostname].
    #[arg(long)]
    pub(crate) label: Option<String>,
    /// What a viewer with the code may do once you say yes [default: view,input,clipboard].
    #[arg(long, value_name = "PERMS")]
    pub(crate) permissions: Option<String>,
    /// Let paired viewers that have the `unattended` permission in without asking.
    #[arg(long)]
    pub(crate) auto_accept_paired: bool,
    /// Refuse browser viewers whose page the signaling server served (`sealdesk server
    /// --web-viewer`): code from the server runs them, so the server could read the session.
    /// The page your own sealdesk serves (`sealdesk connect --web`) is still let in.
    #[arg(long)]
    pub(crate) deny_server_served_viewers: bool,
    /// The local address for the direct connection [default: the one that reaches the server].
    #[arg(long, value_name = "IP")]
    pub(crate) local_ip: Option<IpAddr>,
    /// Print no QR code (just the code).
    #[arg(long)]
    pub(crate) no_qr: bool,
    /// Send everything through the signaling server's TURN relay: the other device never
    /// learns this one's address (and the relay sees only ciphertext).
    #[arg(long, conflicts_with = "no_relay")]
    pub(crate) relay_only: bool,
    /// Use no relay, even when there is no direct path.
    #[arg(long)]
    pub(crate) no_relay: bool,
    /// Record every session, end-to-end encrypted to the owner of this recipient certificate
    /// (made by `sealdesk recordings keygen`; accepted only if signed by this device or a
    /// device paired with it). Viewers are told.
    #[arg(long, value_name = "CERT")]
    pub(crate) record_to: Option<std::path::PathBuf>,
    /// Where recordings go [default: recordings/ in the data directory].
    #[arg(long, value_name = "DIR", requires = "record_to")]
    pub(crate) record_dir: Option<std::path::PathBuf>,
    /// Keep clipboard text in recordings (by default only its size is recorded).
    #[arg(long, requires = "record_to")]
    pub(crate) record_clipboard: bool,
    /// Also upload each recording segment, once it is on disk, to the signaling server's
    /// blob store for the owner (who fetches them with `sealdesk recordings pull`).
    #[arg(long, requires = "record_to")]
    pub(crate) upload: bool,
}

/// The relay choice the two flags make.
pub(crate) fn relay_use(relay_only: bool, no_relay: bool) -> sealdesk_rtc::relay::RelayUse {
    use sealdesk_rtc::relay::RelayUse;
    match (relay_only, no_relay) {
        (true, _) => RelayUse::Only,
        (_, true) => RelayUse::Off,
        _ => RelayUse::Fallback,
    }
}

pub(crate) fn parse_codec(s: &str) -> Result<Codec, String> {
    match s.to_ascii_lowercase().as_str() {
        "vp9" => Ok(Codec::Vp9),
        "vp8" => Ok(Codec::Vp8),
        other => Err(format!("unknown codec {other:?}: choose vp9 or vp8")),
    }
}

/// What an attended viewer may do unless `--permissions` says otherwise.
pub(crate) const ATTENDED_DEFAULT: Permissions = Permissions::VIEW
    .union(Permissions::INPUT)
    .union(Permissions::CLIPBOARD);

/// Runs `sealdesk host`.
pub(crate) async fn run(args: HostArgs, data_dir: Option<&Path>) -> anyhow::Result<()> {
    let dir = store::resolve_data_dir(data_dir)?;
    let (identity, _) = store::load_or_create_identity(&dir)?;
    // A damaged registry is reported now, not when a paired viewer knocks.
    TrustFiles::new(&dir).registry()?;
    let label = crate::pair::own_label(args.label)?;
    let attended_permissions = match &args.permissions {
        Some(p) => Permissions::parse(p).map_err(|e| anyhow!("--permissions: {e}"))?,
        None => ATTENDED_DEFAULT,
    };
    // Fail now, in words, if the display cannot be captured.
    sealdesk_media::capture::Capturer::connect(args.display.as_deref())
        .context("cannot capture the display (use --display, or run on an X11 desktop)")?;
    let local_ip = match args.local_ip {
        Some(ip) => ip,
        None => sealdesk_client::signal::local_ip_towards(&args.server.server).await?,
    };
    let identity = Arc::new(identity);
    // Refused now, before anyone connects, unless a trusted key signed it.
    let recording = match &args.record_to {
        Some(cert) => {
            let recipient = crate::recordings::load_recipient(cert, &dir, &identity)?;
            let rec_dir = args
                .record_dir
                .clone()
                .unwrap_or_else(|| crate::recordings::default_recordings_dir(&dir));
            println!(
                "recording every session to {} for {} ({}), end-to-end encrypted: only that owner's key opens them",
                rec_dir.display(),
                safe(recipient.label()),
                sealdesk_auth::DeviceFingerprint::of(recipient.owner()).short()
            );
            let upload = if args.upload {
                Some(crate::recordings::blob_client(
                    &args.server,
                    identity.clone(),
                )?)
            } else {
                None
            };
            Some(HostRecording {
                recipient,
                dir: rec_dir,
                keep_clipboard: args.record_clipboard,
                upload,
            })
        }
        None => None,
    };
    let client = crate::pair::signal(&args.server, identity.clone()).await?;
    println!(
        "sharing display {} as host {} ({:?}) through {}",
        args.display
            .clone()
            .or_else(|| std::env::var("DISPLAY").ok())
            .unwrap_or_default(),
        client.routing_number().grouped(),
        safe(&label),
        args.server.server
    );
    let config = HostConfig {
        label,
        data_dir: dir,
        setup: SessionSetup {
            capture: PipelineConfig {
                display: args.display,
                monitor: args.monitor,
                codec: args.codec,
                max_fps: args.fps,
                ..PipelineConfig::default()
            },
            ..SessionSetup::default()
        },
        attended_permissions,
        auto_accept_paired: args.auto_accept_paired,
        deny_server_served: args.deny_server_served_viewers,
        local_ip,
        relay: relay_use(args.relay_only, args.no_relay),
        recording,
    };
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (ev_tx, ev_rx) = mpsc::channel(64);
    let agent = tokio::spawn(agent::serve(config, identity, client, cmd_rx, ev_tx));
    let ui = Terminal {
        qr: !args.no_qr,
        commands: cmd_tx,
    };
    ui.run(ev_rx).await;
    agent.await.context("the host agent crashed")??;
    Ok(())
}

struct Terminal {
    qr: bool,
    commands: mpsc::Sender<HostCommand>,
}

impl Terminal {
    async fn run(self, mut events: mpsc::Receiver<HostEvent>) {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut stdin_open = true;
        let mut pending: Option<ConsentRequest> = None;
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    None => return,
                    Some(HostEvent::Consent(req)) => {
                        prompt(&req);
                        pending = Some(req);
                    }
                    Some(ev) => self.show(ev),
                },
                line = lines.next_line(), if stdin_open => {
                    let line = match line {
                        Ok(Some(l)) => l,
                        // End of input: no more answers or commands (the host keeps serving;
                        // Ctrl-C stops it).
                        _ => {
                            stdin_open = false;
                            if let Some(req) = pending.take() {
                                println!("no answer (end of input): declined");
                                req.answer(None);
                            }
                            continue;
                        }
                    };
                    let word = line.trim().to_ascii_lowercase();
                    if let Some(req) = pending.take() {
                        answer(req, &word);
                        continue;
                    }
                    let cmd = match word.as_str() {
                        "n" | "new" => HostCommand::NewCode,
                        "e" | "end" => HostCommand::EndSession,
                        "q" | "quit" => HostCommand::Quit,
                        "" => continue,
                        _ => {
                            println!("commands: n = new code, e = end the session, q = quit");
                            continue;
                        }
                    };
                    let _ = self.commands.send(cmd).await;
                }
                _ = tokio::signal::ctrl_c() => {
                    println!("stopping…");
                    let _ = self.commands.send(HostCommand::Quit).await;
                    stdin_open = false;
                }
            }
        }
    }

    fn show(&self, ev: HostEvent) {
        match ev {
            HostEvent::Code { code, expires_in } => {
                // Machine-readable: tests read this line. The code is secret: it goes to the
                // terminal of the person sharing the screen, never to the log.
                println!("code: {}", code.as_str());
                if self.qr {
                    if let Ok(q) = crate::qr::code(code.as_str()) {
                        println!("{}", crate::qr::terminal(&q));
                    }
                }
                println!(
                    "Read it to the person who will connect (`sealdesk connect CODE`); it works \
                     once, for {} minutes. Commands: n = new code, e = end session, q = quit.",
                    expires_in.as_secs().div_ceil(60)
                );
            }
            HostEvent::CodeLocked(e) => println!("{e}; type n for a new code"),
            HostEvent::Trying { from } => {
                println!("the device at {} is trying the code…", from.grouped());
            }
            HostEvent::Failed { from, error } => {
                println!("connection from {} failed: {error}", from.grouped());
            }
            HostEvent::Tampering { from, error } => {
                println!(
                    "warning: tampering suspected on the way from {}: {error}",
                    from.grouped()
                );
            }
            HostEvent::SessionStarted {
                peer,
                kind,
                permissions,
            } => {
                println!(
                    "session started with {:?} ({}, {}): it may {permissions}. \
                     Type e and Enter to end it at once.",
                    safe(&peer.label),
                    peer.fingerprint().short(),
                    kind_words(kind)
                );
            }
            HostEvent::Session(note) => match note {
                SessionNote::Started { codec } => println!(
                    "● session active: this screen is being shared ({codec}, fingerprints verified)"
                ),
                SessionNote::ViewerSilent => println!(
                    "the viewer stopped answering: capture paused, all keys and buttons released"
                ),
                SessionNote::ViewerBack => println!("the viewer is back: capture resumed"),
                SessionNote::Restarting => {
                    println!("the viewer lost the path: answering its ICE restart")
                }
                SessionNote::Refused { count } => {
                    println!("refused input from a view-only viewer ({count} events so far)");
                }
                SessionNote::Clipboard { to_viewer, bytes } => println!(
                    "clipboard: {bytes} bytes {}",
                    if to_viewer {
                        "sent to the viewer"
                    } else {
                        "received from the viewer"
                    }
                ),
                SessionNote::Monitor { index } => {
                    println!("the viewer switched to monitor {index}")
                }
                SessionNote::ViewerRecording {
                    active: true,
                    owner,
                } => println!(
                    "● the viewer is recording this session (for {:?}, as it says)",
                    safe(&owner)
                ),
                SessionNote::ViewerRecording { active: false, .. } => {
                    println!("the viewer stopped recording")
                }
                SessionNote::RecordingFailed(e) => {
                    println!("warning: recording stopped ({e}); the session goes on unrecorded")
                }
                _ => {}
            },
            HostEvent::SessionEnded(s) => {
                println!(
                    "session ended: {} ({:.1} s, {} frames, {} keyframes, {:.1} MB of video, {} input events, {} refused)",
                    s.end,
                    s.duration.as_secs_f64(),
                    s.frames,
                    s.keyframes,
                    s.video_bytes as f64 / 1e6,
                    s.injected,
                    s.refused
                );
                if let Some(r) = &s.recording {
                    println!("{}", crate::recordings::summary_words(r));
                }
            }
            HostEvent::SignalingLost(why) => {
                println!("lost the signaling server ({why}); reconnecting…");
            }
            HostEvent::RecordingUploaded(r) => {
                println!("{}", crate::recordings::upload_words(&r))
            }
            HostEvent::Recording { dir, owner } => println!(
                "● recording this session to {} for {} (the viewer is told)",
                dir.display(),
                safe(&owner)
            ),
            HostEvent::RelayOverTcp => println!(
                "relay: UDP to it is blocked from here, so sessions relay over TCP (tried first \
                 for the next {} minutes)",
                sealdesk_host::agent::TCP_FIRST_FOR.as_secs() / 60
            ),
            _ => {}
        }
    }
}

fn kind_words(kind: AccessKind) -> &'static str {
    match kind {
        AccessKind::Attended => "with the code",
        AccessKind::Unattended => "paired device",
    }
}

/// What a viewer says it is, for the host's user (its own word, carried inside the
/// authenticated handshake).
fn viewer_words(kind: ViewerKind) -> &'static str {
    match kind {
        ViewerKind::ServerServedBrowser => {
            "browser (served by the server) — the signaling server wrote the code that runs \
             it, so the server could read this session; `--deny-server-served-viewers` refuses these"
        }
        other => other.describe(),
    }
}

fn prompt(req: &ConsentRequest) {
    println!(
        "{:?} wants to {} ({}).",
        safe(&req.peer.label),
        if req.permissions.contains(Permissions::INPUT) {
            "see and control this screen"
        } else {
            "see this screen"
        },
        kind_words(req.kind)
    );
    println!("  device fingerprint: {}", req.peer.fingerprint());
    println!("  viewer: {}", viewer_words(req.peer.kind));
    println!("  it would be allowed: {}", req.permissions);
    match req.kind {
        AccessKind::Attended => {
            println!(
                "Allow? [y = yes / v = view only / N = no] (within {} s)",
                agent::CONSENT_TIMEOUT.as_secs()
            );
        }
        AccessKind::Unattended => println!(
            "Allow? [y = yes / N = no] (within {} s)",
            agent::CONSENT_TIMEOUT.as_secs()
        ),
    }
}

fn answer(req: ConsentRequest, word: &str) {
    let decision = match (word, req.kind) {
        ("y" | "yes", _) => Some(req.permissions),
        ("v" | "view", AccessKind::Attended) => Some(Permissions::VIEW),
        _ => None,
    };
    match decision {
        Some(p) => println!("allowed: {p}"),
        None => println!("declined"),
    }
    req.answer(decision);
}
