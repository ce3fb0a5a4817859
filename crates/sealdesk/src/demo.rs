//! `sealdesk demo`: a real remote-desktop session on one machine, no configuration.
//!
//! An embedded signaling server on loopback; an Xvfb display with a small animated desktop
//! on it ([`crate::scene`]); a host sharing that display; a viewer — a window when this
//! machine has a display, otherwise headless — that connects with the host's one-time code
//! (SPAKE2 with key confirmation, the DTLS fingerprints bound in the handshake), sees the
//! screen, types and clicks into it; then the figures: time to first frame, frames, fps,
//! bitrate, path. Exit status 0 only if frames were decoded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use sealdesk_auth::code::{OneTimeCode, ViewerAttempts};
use sealdesk_auth::IdentityKey;
use sealdesk_client::{store, ClientConfig, SignalClient};
use sealdesk_host::agent::{self, HostCommand, HostConfig, HostEvent};
use sealdesk_host::pipeline::PipelineConfig;
use sealdesk_host::session::{SessionNote, SessionSetup};
use sealdesk_media::xvfb::Xvfb;
use sealdesk_rtc::VideoCodec;
use sealdesk_server::{Server, ServerConfig};
use sealdesk_viewer::dial::{self, DialConfig, DialEvent, Target};
use sealdesk_viewer::run::ViewerNote;
use tokio::sync::mpsc;

use crate::view::{view, Script, ViewOptions};

/// The demo desktop's size.
const SCREEN: (u32, u32) = (1280, 720);
/// What the demo viewer does on the host's screen.
const SCRIPT: &str = "\
wait-frame
wait 500ms
click 640 400
wait 300ms
type hello from the viewer
wait 300ms
click 320 500
wait 300ms
";

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// No window, even when this machine has a display: decode (and with --frames, save).
    #[arg(long)]
    headless: bool,
    /// End after this many seconds [default: 10 headless; with a window, when it is closed].
    #[arg(long, value_name = "N")]
    seconds: Option<u64>,
    /// Save decoded frames here as PNG (headless).
    #[arg(long, value_name = "DIR")]
    frames: Option<PathBuf>,
    /// Host and viewer send everything through the embedded TURN relay.
    #[arg(long)]
    relay_only: bool,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let xvfb = match Xvfb::start(SCREEN.0, SCREEN.1) {
        Ok(x) => x,
        Err(e) => bail!(
            "{e}\nThe demo shares a virtual X display, so it needs Xvfb \
             (scripts/demo installs it on Debian)."
        ),
    };
    let _scene = crate::scene::Scene::start(xvfb.display())?;
    println!(
        "1. virtual display {} ({}x{}) with a small animated desktop on it",
        xvfb.display(),
        SCREEN.0,
        SCREEN.1
    );

    let config = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: Some(dir.path().join("server")),
        ..ServerConfig::default()
    };
    let server = Server::bind(config).await?;
    let url = server.url();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));
    println!("2. embedded signaling server listening on {url}");

    let host_key = device("host", &dir.path().join("host"))?;
    let viewer_key = device("viewer", &dir.path().join("viewer"))?;
    let host_client = SignalClient::connect(ClientConfig::new(&url), host_key.clone()).await?;
    let mut viewer_client =
        SignalClient::connect(ClientConfig::new(&url), viewer_key.clone()).await?;
    let local_ip = sealdesk_client::signal::local_ip_towards(&url).await?;

    let (cmd_tx, cmd_rx) = mpsc::channel(4);
    let (ev_tx, mut ev_rx) = mpsc::channel(64);
    let host_config = HostConfig {
        label: "demo host".into(),
        data_dir: dir.path().join("host"),
        setup: SessionSetup {
            capture: PipelineConfig {
                display: Some(xvfb.display().to_owned()),
                ..PipelineConfig::default()
            },
            ..SessionSetup::default()
        },
        attended_permissions: crate::host_cmd::ATTENDED_DEFAULT,
        auto_accept_paired: false,
        deny_server_served: false,
        local_ip,
        relay: crate::host_cmd::relay_use(args.relay_only, false),
        recording: None,
    };
    let host_task = tokio::spawn(agent::serve(
        host_config,
        host_key,
        host_client,
        cmd_rx,
        ev_tx,
    ));
    let code = loop {
        match ev_rx.recv().await {
            Some(HostEvent::Code { code, .. }) => break code,
            Some(_) => {}
            None => bail!("the host stopped before showing a code"),
        }
    };
    let typed = OneTimeCode::parse(&code)?;
    println!(
        "3. host {} shares the display; it shows a one-time code {} · •••• •••• \
         (8 secret digits that never leave the two devices)",
        typed.routing.grouped(),
        typed.routing.grouped()
    );
    drop(code);
    // The demo plays the host's user: it approves the viewer, and reports the session.
    let host_ui = tokio::spawn(async move {
        let mut summary = None;
        while let Some(ev) = ev_rx.recv().await {
            match ev {
                HostEvent::Consent(req) => {
                    println!(
                        "5. the host's user is asked about {:?} (fingerprint {}) and says yes",
                        req.peer.label,
                        req.peer.fingerprint().short()
                    );
                    let p = req.permissions;
                    req.answer(Some(p));
                }
                HostEvent::Session(SessionNote::Started { codec }) => {
                    println!("   host: fingerprints verified, capturing and encoding {codec}");
                }
                HostEvent::SessionEnded(s) => summary = Some(s),
                HostEvent::Failed { error, .. } => println!("   host: {error}"),
                _ => {}
            }
        }
        summary
    });

    let windowed = !args.headless && std::env::var_os("DISPLAY").is_some();
    let dial_config = DialConfig {
        label: "demo viewer".into(),
        codecs: vec![VideoCodec::Vp9, VideoCodec::Vp8],
        permissions: crate::host_cmd::ATTENDED_DEFAULT,
        local_ip,
        answer_timeout: Duration::from_secs(10),
        approval_timeout: Duration::from_secs(10),
        pinned_key: None,
        relay: crate::host_cmd::relay_use(args.relay_only, false),
    };
    let mut attempts = ViewerAttempts::new();
    let connected = dial::dial(
        &mut viewer_client,
        &viewer_key,
        Target::Code(typed),
        &dial_config,
        &mut attempts,
        |ev| {
            if let DialEvent::HostProved(peer) = ev {
                println!(
                    "4. the viewer typed the code; the host proved it knows it: {:?} (fingerprint {})",
                    peer.label,
                    peer.fingerprint().short()
                );
            }
        },
    )
    .await?;
    let options = ViewOptions {
        window: windowed,
        title: "sealdesk demo — the host's virtual screen".into(),
        frames: args.frames.clone(),
        frame_interval: Duration::from_secs(1),
        script: if windowed {
            Script::Nothing
        } else {
            Script::Text(SCRIPT)
        },
        seconds: args.seconds.or((!windowed).then_some(10)),
        stamps: false,
    };
    if windowed {
        println!("   a window shows the host's screen; close it to end the demo");
    } else {
        println!(
            "   headless viewer (no display here{}); its script clicks and types \"hello from \
             the viewer\" on the host's screen",
            if args.frames.is_none() {
                "; add --frames DIR to save what it decodes"
            } else {
                ""
            }
        );
    }
    let started = Instant::now();
    let summary = view(connected.transport, &options, move |note| match note {
        ViewerNote::Connected { after } => println!(
            "6. connected in {} ms; DTLS presented exactly the certificates the \
             handshake authenticated",
            after.as_millis()
        ),
        ViewerNote::FirstFrame {
            after,
            width,
            height,
        } => println!(
            "   first frame {width}x{height} decoded {} ms after dialing began",
            after.as_millis()
        ),
        ViewerNote::Stats(s) if started.elapsed() > Duration::from_secs(1) => println!("   {s}"),
        _ => {}
    })
    .await?;
    let _ = cmd_tx.send(HostCommand::Quit).await;
    host_task.await.context("the host crashed")??;
    let host_summary = host_ui.await.ok().flatten();
    drop(viewer_client);
    let _ = stop_tx.send(());
    server_task.await??;

    println!("7. session over: {}", summary.end);
    println!(
        "   viewer: {} frames decoded, {:.1} fps, {:.0} kbps of video, first frame {} ms after \
         connecting began, path {}",
        summary.frames,
        summary.fps(),
        summary.kbps(),
        summary.first_frame.map_or(0, |t| t.as_millis()),
        summary
            .path
            .map_or_else(|| "unknown".into(), |p| p.to_string())
    );
    if let Some(h) = host_summary {
        println!(
            "   host: {} frames sent ({} keyframes), {} input events injected; {}",
            h.frames, h.keyframes, h.injected, h.end
        );
    }
    if summary.frames == 0 {
        bail!("no frames were decoded");
    }
    println!("demo passed: a real session, end to end encrypted, through an embedded server");
    Ok(())
}

fn device(name: &str, dir: &std::path::Path) -> anyhow::Result<Arc<IdentityKey>> {
    let (key, _) = store::load_or_create_identity(dir)?;
    println!(
        "   {name} identity key created (mode 0600): fingerprint {}",
        key.fingerprint().short()
    );
    Ok(Arc::new(key))
}
