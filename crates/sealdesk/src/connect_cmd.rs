//! `sealdesk connect`: see and control a host — with the one-time code it shows, or a
//! paired host by name or number. A window when there is a display; `--headless` decodes
//! and writes PNG files instead, and takes scripted input (a file, or standard input) so a
//! session can be driven end to end without a person.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use sealdesk_auth::code::OneTimeCode;
use sealdesk_auth::sealed::SealedKind;
use sealdesk_auth::trust::Permissions;
use sealdesk_client::store;
use sealdesk_client::trust_store::TrustFiles;
use sealdesk_rtc::VideoCodec;
use sealdesk_viewer::dial::{self, Connected, DialConfig, DialEvent, Target};
use sealdesk_viewer::restart::{Restarter, Signaling};
use sealdesk_viewer::run::{ViewerEnd, ViewerNote, ViewerSummary};
use zeroize::{Zeroize, Zeroizing};

use crate::pair::ServerArgs;
use crate::text::safe;
use crate::view::{view, Script, ViewOptions};

/// Flags of `sealdesk connect`.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// The code the host shows (`123 456 789 · 1234 5678`), or a paired host's name or
    /// number. Leave it out to type the code at a prompt (other users' `ps` cannot see it).
    target: Vec<String>,
    #[command(flatten)]
    server: ServerArgs,
    /// No window: decode and (with --frames) write PNG files; read scripted input.
    #[arg(long)]
    headless: bool,
    /// Headless: write decoded frames here as PNG (mode 0600; they are screen content).
    #[arg(long, value_name = "DIR")]
    frames: Option<PathBuf>,
    /// Headless: write at most one frame per this many milliseconds (the newest).
    #[arg(long, default_value_t = 500, value_name = "MS")]
    frame_interval: u64,
    /// Headless: run the commands in this file (`-` or nothing: standard input). See
    /// `sealdesk_viewer::script` for the commands (move, click, type, key, clipboard, …).
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// End the session after this many seconds.
    #[arg(long, value_name = "N")]
    seconds: Option<u64>,
    /// Headless, for `sealdesk bench`: print `stamp N T` when a decoded picture shows a new
    /// frame stamp (N its counter, T the wall clock in ns).
    #[arg(long, hide = true)]
    stamps: bool,
    /// Offer only this codec (vp9 or vp8) [default: both, VP9 preferred].
    #[arg(long, value_parser = crate::host_cmd::parse_codec)]
    codec: Option<sealdesk_media::Codec>,
    /// What to ask a paired host for [default: view,input,clipboard].
    #[arg(long, value_name = "PERMS")]
    permissions: Option<String>,
    /// How this device introduces itself [default: the hostname].
    #[arg(long)]
    label: Option<String>,
    /// The local address for the direct connection [default: the one that reaches the server].
    #[arg(long, value_name = "IP")]
    local_ip: Option<std::net::IpAddr>,
    /// Seconds to wait for the host to answer.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
    /// Seconds to wait for the host's user to approve.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    approval_timeout: u64,
    /// Send everything through the signaling server's TURN relay: the other device never
    /// learns this one's address (and the relay sees only ciphertext).
    #[arg(long, conflicts_with = "no_relay")]
    relay_only: bool,
    /// Use no relay, even when there is no direct path.
    #[arg(long)]
    no_relay: bool,
    /// Record the session here, end-to-end encrypted to your own recordings key (made by
    /// `sealdesk recordings keygen`). The host is told.
    #[arg(long)]
    record: bool,
    /// Record to this recipient certificate instead of your own (it must be signed by this
    /// device or one it trusts).
    #[arg(long, value_name = "CERT", requires = "record")]
    record_to: Option<PathBuf>,
    /// Where recordings go [default: recordings/ in the data directory].
    #[arg(long, value_name = "DIR", requires = "record")]
    record_dir: Option<PathBuf>,
    /// Keep clipboard text in the recording (by default only its size).
    #[arg(long, requires = "record")]
    record_clipboard: bool,
    /// Also upload each recording segment, once it is on disk, to the signaling server's
    /// blob store for the owner (`sealdesk recordings pull` fetches them back).
    #[arg(long, requires = "record")]
    upload: bool,
    /// Serve the browser viewer on this machine instead, and print its address: the page
    /// runs the same end-to-end checks as this program (the code is typed into it).
    #[arg(long, conflicts_with_all = ["headless", "record", "target"])]
    web: bool,
    /// With --web: where to serve the page (a loopback address) [default: 127.0.0.1:8444].
    #[arg(long, value_name = "ADDR:PORT", requires = "web")]
    listen: Option<std::net::SocketAddr>,
}

/// Runs `sealdesk connect`.
pub(crate) async fn run(mut args: ConnectArgs, data_dir: Option<&Path>) -> anyhow::Result<()> {
    if args.web {
        let listen = match args.listen {
            Some(l) => l,
            None => crate::web::DEFAULT_LISTEN
                .parse()
                .context("the default --listen address")?,
        };
        return crate::web::serve_local(listen, &args.server.server).await;
    }
    let dir = store::resolve_data_dir(data_dir)?;
    let (identity, _) = store::load_or_create_identity(&dir)?;
    let files = TrustFiles::new(&dir);
    let pins = files.pinned()?;
    let typed = Zeroizing::new(if args.target.is_empty() {
        crate::pair::prompt_code().await?
    } else {
        args.target.join(" ")
    });
    args.target.iter_mut().for_each(Zeroize::zeroize);
    let target = match OneTimeCode::parse(&typed) {
        Ok(code) => Target::Code(code),
        Err(code_error) => match pins.find(&typed) {
            Ok(pin) => Target::Paired(pin.clone()),
            Err(_) => bail!(
                "{typed:?} is neither a code ({code_error}) nor a paired host \
                 (`sealdesk devices list` shows those)",
                typed = typed.as_str()
            ),
        },
    };
    drop(typed);
    let routing = target.routing();
    let codecs = match args.codec {
        None => vec![VideoCodec::Vp9, VideoCodec::Vp8],
        Some(sealdesk_media::Codec::Vp8) => vec![VideoCodec::Vp8],
        Some(_) => vec![VideoCodec::Vp9],
    };
    let permissions = match &args.permissions {
        Some(p) => Permissions::parse(p).map_err(|e| anyhow!("--permissions: {e}"))?,
        None => crate::host_cmd::ATTENDED_DEFAULT,
    };
    let local_ip = match args.local_ip {
        Some(ip) => ip,
        None => sealdesk_client::signal::local_ip_towards(&args.server.server).await?,
    };
    let config = DialConfig {
        label: crate::pair::own_label(args.label.clone())?,
        codecs,
        permissions,
        local_ip,
        answer_timeout: Duration::from_secs(args.timeout),
        approval_timeout: Duration::from_secs(args.approval_timeout),
        pinned_key: pins.get(routing).map(|p| p.key),
        relay: crate::host_cmd::relay_use(args.relay_only, args.no_relay),
    };
    // A recording key that cannot be used stops us before anything is dialed.
    let recipient = if args.record {
        let cert = args
            .record_to
            .clone()
            .unwrap_or_else(|| crate::recordings::owner_cert_path(&dir));
        if !cert.exists() && args.record_to.is_none() {
            bail!(
                "--record needs your recordings key: run `sealdesk recordings keygen` first \
                 (or name a certificate with --record-to)"
            );
        }
        Some(crate::recordings::load_recipient(&cert, &dir, &identity)?)
    } else {
        None
    };
    let identity = Arc::new(identity);
    let mut client = crate::pair::signal(&args.server, identity.clone()).await?;
    let mut attempts = files.attempts(Instant::now(), SystemTime::now())?;
    let dialed = dial::dial(
        &mut client,
        &identity,
        target,
        &config,
        &mut attempts,
        print_progress,
    )
    .await;
    if let Err(e) = files.save_attempts(&attempts, Instant::now(), SystemTime::now()) {
        eprintln!("warning: the attempt count could not be recorded: {e}");
    }
    let connected = dialed?;
    let options = ViewOptions {
        window: !args.headless,
        title: format!("sealdesk — {}", safe(&connected.established.peer.label)),
        frames: args.frames.clone(),
        frame_interval: Duration::from_millis(args.frame_interval),
        script: match &args.script {
            _ if !args.headless => Script::Nothing,
            Some(p) if p.as_os_str() != "-" => Script::File(p.clone()),
            _ => Script::Stdin,
        },
        seconds: args.seconds,
        stamps: args.stamps && args.headless,
    };
    let headless = args.headless;
    let connected_peer = connected.established.peer.clone();
    let Connected {
        host,
        sealed,
        mut transport,
        ..
    } = connected;
    // The signaling connection stays up for the session: ICE restarts travel over it.
    let (restarter, signaling) = Restarter::spawn(Signaling {
        client,
        sealed,
        host,
    });
    transport.restarter = Some(restarter);
    let mut uploader = None;
    if let Some(recipient) = recipient {
        let rec_dir = args
            .record_dir
            .clone()
            .unwrap_or_else(|| crate::recordings::default_recordings_dir(&dir));
        let durable = if args.upload {
            let client = crate::recordings::blob_client(&args.server, identity.clone())?;
            let (tx, task) = sealdesk_client::recording::spawn_uploader(client, *recipient.owner());
            uploader = Some(task);
            Some(tx)
        } else {
            None
        };
        let r = crate::recordings::start_recording(
            &rec_dir,
            identity.clone(),
            recipient,
            &connected_peer,
            false,
            args.record_clipboard,
            durable,
        )?;
        println!(
            "● recording this session to {} for {} (the host is told)",
            r.sink.dir().display(),
            safe(&r.owner)
        );
        transport.recording = Some(sealdesk_viewer::run::ViewerRecording {
            sink: r.sink,
            owner: r.owner,
            keep_clipboard: r.keep_clipboard,
        });
    }
    let summary = view(transport, &options, move |note| print_note(note, headless)).await;
    // The recording is finished with the session; its last uploads may still be going.
    if let Some(task) = uploader {
        match tokio::time::timeout(Duration::from_secs(120), task).await {
            Ok(Ok(r)) => println!("{}", crate::recordings::upload_words(&r)),
            _ => println!("recording upload did not finish; the segments stay on this machine"),
        }
    }
    // Every restarter is gone with the session: the signaling comes back.
    let Signaling {
        client,
        mut sealed,
        host,
    } = signaling.await.context("the signaling task failed")?;
    // Tell the host through the signaling server too (best effort: the control channel
    // already said so when it could).
    if let Ok(bytes) = sealed.seal(SealedKind::Bye, b"session ended") {
        let _ = host.send(&client, bytes).await;
    }
    client.close(Duration::from_secs(2)).await;
    report(&summary?)
}

fn print_progress(ev: DialEvent) {
    match ev {
        DialEvent::Asking(r) => println!("asking host {}…", r.grouped()),
        DialEvent::HostProved(peer) => println!(
            "host proved it: {:?} (fingerprint {})",
            safe(&peer.label),
            peer.fingerprint().short()
        ),
        DialEvent::WaitingForApproval => println!("waiting for the host's user to approve…"),
        DialEvent::Accepted(p) => println!("approved: it allows {p}"),
        DialEvent::RelayOverTcp => {
            println!("relay: UDP to it is blocked from here, so this session relays over TCP")
        }
        _ => {}
    }
}

/// Prints the end of a session; fails when it did not end normally.
fn report(s: &ViewerSummary) -> anyhow::Result<()> {
    println!(
        "session ended: {} ({} frames, {:.1} fps, {:.0} kbps{})",
        s.end,
        s.frames,
        s.fps(),
        s.kbps(),
        s.first_frame
            .map(|t| format!(", first frame after {} ms", t.as_millis()))
            .unwrap_or_default()
    );
    if let Some(r) = &s.recording {
        println!("{}", crate::recordings::summary_words(r));
    }
    match &s.end {
        ViewerEnd::UserEnded | ViewerEnd::HostEnded(_) => Ok(()),
        other => bail!("the session failed: {other}"),
    }
}

/// Prints what the viewer's user should know.
fn print_note(note: &ViewerNote, headless: bool) {
    match note {
        ViewerNote::Connected { after } => println!(
            "connected in {} ms: DTLS certificate fingerprints match the handshake",
            after.as_millis()
        ),
        ViewerNote::FirstFrame {
            after,
            width,
            height,
        } => println!(
            "first frame {width}x{height} after {} ms",
            after.as_millis()
        ),
        ViewerNote::Stats(s) if headless => println!("stats: {s}"),
        ViewerNote::Monitors { monitors, active } if monitors.len() > 1 => {
            println!("the host has {} monitors; showing {active}", monitors.len());
        }
        ViewerNote::Permissions(bits) => println!(
            "the host allows: {}",
            Permissions::from_bits_truncate(*bits)
        ),
        ViewerNote::HostRecording {
            active: true,
            owner,
        } => println!(
            "● the host is recording this session (end-to-end encrypted, for {:?})",
            crate::text::safe(owner)
        ),
        ViewerNote::HostRecording { active: false, .. } => {
            println!("the host stopped recording this session")
        }
        ViewerNote::InputRefused(n) => {
            println!("input refused by the host (view only): {n} events");
        }
        ViewerNote::HostSilent => println!("the host stopped answering…"),
        ViewerNote::HostBack => println!("the host is back"),
        ViewerNote::Restarting { attempt } => {
            println!("path lost: restarting ICE (attempt {attempt})")
        }
        ViewerNote::RestartFailed(why) => println!("ICE restart failed: {why}"),
        ViewerNote::RenewingRelay { expires_in } => {
            println!("relay credential expires in {expires_in} s: re-allocating with a fresh one")
        }
        ViewerNote::PathBack => println!("path back"),
        _ => {}
    }
}
