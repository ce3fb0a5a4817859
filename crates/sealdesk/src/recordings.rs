//! `sealdesk recordings`: the owner's side of end-to-end encrypted recordings (DESIGN.md §7).
//!
//! - `keygen` makes the owner key (an age X25519 identity, 0600) and a recipient
//!   certificate signed by this device's identity key, for hosts to record to.
//! - `verify DIR` checks a recording's signed, hash-chained manifest (no secret key needed)
//!   and prints exactly one verdict; the exit status is 0 only for a complete recording.
//! - `export DIR -o session.webm` decrypts with the owner key and muxes the recorded VP9/VP8
//!   packets, unchanged, into WebM (libwebm's muxer); a damaged recording is exported up to
//!   its last good segment, and says so.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};
use sealdesk_auth::{DeviceFingerprint, IdentityKey};
use sealdesk_client::recording::{read_segment, segment_files};
use sealdesk_client::store;
use sealdesk_client::trust_store::TrustFiles;
use sealdesk_proto::DeviceKey;
use sealdesk_record::body::{Event, Record, VideoCodec};
use sealdesk_record::cert::{RecipientCertificate, VerifiedRecipient};
use sealdesk_record::owner::OwnerKey;
use sealdesk_record::segment::{inspect, open};
use sealdesk_record::verify::{verify, Verdict};

use crate::text::safe;

/// `sealdesk recordings …`
#[derive(Debug, Subcommand)]
pub(crate) enum RecordingsCommand {
    /// Make the key that opens your recordings and a certificate hosts record to.
    Keygen(KeygenArgs),
    /// Check a recording: complete, truncated, or where it was tampered with.
    Verify {
        /// The recording's directory.
        dir: PathBuf,
    },
    /// Decrypt a recording to a WebM video (no re-encode).
    Export(ExportArgs),
    /// Play a recording in a window, with its session events on the terminal.
    Play(PlayArgs),
    /// List the recording segments the signaling server keeps for you.
    List {
        #[command(flatten)]
        server: crate::pair::ServerArgs,
    },
    /// Download your recording segments from the signaling server and sort them into
    /// recordings (then verify each).
    Pull(PullArgs),
}

/// Flags of `sealdesk recordings pull`.
#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    #[command(flatten)]
    server: crate::pair::ServerArgs,
    /// Where the recordings go [default: recordings/pulled in the data directory].
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Delete each blob from the server once it is safely on this device.
    #[arg(long)]
    delete: bool,
}

/// Flags of `sealdesk recordings play`.
#[derive(Debug, Args)]
pub(crate) struct PlayArgs {
    /// The recording's directory.
    dir: PathBuf,
    /// The owner key [default: recordings/owner.key in the data directory].
    #[arg(long, value_name = "KEY")]
    identity: Option<PathBuf>,
    /// Playback speed (2 = twice as fast).
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    speed: f64,
}

/// Flags of `sealdesk recordings keygen`.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// A name for the owner, shown to hosts that record for you [default: this device's label].
    #[arg(long)]
    label: Option<String>,
}

/// Flags of `sealdesk recordings export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The recording's directory.
    dir: PathBuf,
    /// The WebM file to write.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// The owner key [default: recordings/owner.key in the data directory].
    #[arg(long, value_name = "KEY")]
    identity: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// What happened to a recording, for its recorder's user.
pub(crate) fn summary_words(r: &sealdesk_client::recording::RecordingSummary) -> String {
    format!(
        "recording: {} ({} segments, {:.1} MB{})",
        r.dir.display(),
        r.segments,
        r.bytes as f64 / 1e6,
        r.error
            .as_ref()
            .map(|e| format!("; stopped early: {e}"))
            .unwrap_or_default()
    )
}

/// How a recording's upload went, for its recorder's user.
pub(crate) fn upload_words(r: &sealdesk_client::recording::UploadReport) -> String {
    match &r.last_error {
        None => format!("recording uploaded: {} segments", r.uploaded),
        Some(e) => format!(
            "recording upload: {} segments uploaded, {} not ({e}); they stay on this machine",
            r.uploaded, r.failed
        ),
    }
}

/// A blob-store client for the server `server` names, signing as this device.
pub(crate) fn blob_client(
    server: &crate::pair::ServerArgs,
    identity: std::sync::Arc<IdentityKey>,
) -> anyhow::Result<sealdesk_client::blobs::BlobClient> {
    let mut config = sealdesk_client::ClientConfig::new(&server.server);
    config.extra_ca_pem.clone_from(&server.ca_file);
    sealdesk_client::blobs::BlobClient::new(&config, identity)
        .map_err(|e| anyhow!("cannot use the server's blob store: {e}"))
}

/// Where `keygen` puts the owner key.
pub(crate) fn owner_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("recordings").join("owner.key")
}

/// Where `keygen` puts the certificate.
pub(crate) fn owner_cert_path(data_dir: &Path) -> PathBuf {
    data_dir.join("recordings").join("owner.cert")
}

/// Where recordings made on this device go, by default.
pub(crate) fn default_recordings_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("recordings")
}

pub(crate) async fn run(cmd: RecordingsCommand, data_dir: Option<&Path>) -> anyhow::Result<()> {
    let dir = store::resolve_data_dir(data_dir)?;
    match cmd {
        RecordingsCommand::Keygen(args) => keygen(&dir, args),
        RecordingsCommand::Verify { dir: rec } => {
            let report = check(&dir, &rec)?;
            println!("{}", report.verdict);
            if let Some(who) = &report.recorder {
                println!("recorded by {who}");
            }
            if report.verdict.is_complete() {
                Ok(())
            } else {
                // The verdict is printed; the status says "not complete" to scripts.
                std::process::exit(1)
            }
        }
        RecordingsCommand::Export(args) => export(&dir, args),
        RecordingsCommand::Play(args) => {
            tokio::task::spawn_blocking(move || play(&dir, args)).await?
        }
        RecordingsCommand::List { server } => list(&dir, &server).await,
        RecordingsCommand::Pull(args) => pull(&dir, args).await,
    }
}

fn utc(unix: u64) -> String {
    let name = sealdesk_client::recording::dir_name(
        unix.saturating_mul(1000),
        &sealdesk_record::RecordingId([0; 16]),
    );
    // "YYYYmmdd-HHMMSS-…" → "YYYY-mm-dd HH:MM:SS UTC"
    let b = name.as_bytes();
    let part = |r: std::ops::Range<usize>| std::str::from_utf8(&b[r]).unwrap_or("?");
    format!(
        "{}-{}-{} {}:{}:{} UTC",
        part(0..4),
        part(4..6),
        part(6..8),
        part(9..11),
        part(11..13),
        part(13..15)
    )
}

fn device_words(key: &DeviceKey, trusted: &[(DeviceKey, String)]) -> String {
    let fpr = DeviceFingerprint::of(key).short();
    match trusted.iter().find(|(k, _)| k == key) {
        Some((_, label)) => format!("{} ({fpr})", safe(label)),
        None => format!("an unknown device ({fpr})"),
    }
}

async fn list(data_dir: &Path, server: &crate::pair::ServerArgs) -> anyhow::Result<()> {
    let (identity, _) = store::load_or_create_identity(data_dir)?;
    let trusted = trusted_devices(data_dir, &identity)?;
    let client = blob_client(server, std::sync::Arc::new(identity))?;
    let blobs = client
        .list()
        .await
        .map_err(|e| anyhow!("cannot list: {e}"))?;
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    println!(
        "{} blobs ({:.1} MB) kept for this device by {}",
        blobs.len(),
        total as f64 / 1e6,
        server.server
    );
    for b in &blobs {
        println!(
            "  {}  {:>9} bytes  {}  from {}",
            b.id,
            b.size,
            utc(b.created_at),
            device_words(&b.uploader, &trusted)
        );
    }
    if !blobs.is_empty() {
        println!("`sealdesk recordings pull` fetches them and sorts them into recordings (the server cannot tell which is which)");
    }
    Ok(())
}

async fn pull(data_dir: &Path, args: PullArgs) -> anyhow::Result<()> {
    use std::collections::BTreeMap;
    let (identity, _) = store::load_or_create_identity(data_dir)?;
    let trusted = trusted_devices(data_dir, &identity)?;
    let client = blob_client(&args.server, std::sync::Arc::new(identity))?;
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| default_recordings_dir(data_dir).join("pulled"));
    store::ensure_private_dir(&out)?;
    let blobs = client
        .list()
        .await
        .map_err(|e| anyhow!("cannot list: {e}"))?;
    let bar = indicatif::ProgressBar::new(blobs.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("pulling [{bar:30}] {pos}/{len} blobs {elapsed}")
            .map_err(|e| anyhow!("progress bar: {e}"))?
            .progress_chars("=> "),
    );
    let mut recordings: BTreeMap<PathBuf, u32> = BTreeMap::new();
    let (mut written, mut same, mut strange) = (0u32, 0u32, 0u32);
    for b in &blobs {
        let bytes = client
            .download(&b.id)
            .await
            .map_err(|e| anyhow!("cannot download {}: {e}", b.id))?;
        // Sorted by what the recorder signed; anything else is kept aside, never trusted.
        let inspected = inspect(&bytes);
        let target = match &inspected.entry {
            Ok(e) if inspected.signature_ok => {
                let dir = out.join(sealdesk_client::recording::dir_name(
                    e.started_unix_ms,
                    &e.recording_id,
                ));
                store::ensure_private_dir(&dir)?;
                *recordings.entry(dir.clone()).or_default() += 1;
                let name = dir.join(sealdesk_record::segment::file_name(e.seq));
                match std::fs::read(&name) {
                    Ok(existing) if existing == bytes => {
                        same += 1;
                        None
                    }
                    // A second, different segment claiming the same place: kept beside it,
                    // so verify names it.
                    Ok(_) => Some(dir.join(format!("{:06}-{}.sdseg", e.seq, b.id))),
                    Err(_) => Some(name),
                }
            }
            _ => {
                strange += 1;
                let dir = out.join("unrecognized");
                store::ensure_private_dir(&dir)?;
                Some(dir.join(format!("{}.blob", b.id)))
            }
        };
        if let Some(path) = target {
            let (dir, name) = (
                path.parent().unwrap_or(&out).to_path_buf(),
                path.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("blob")
                    .to_owned(),
            );
            sealdesk_client::store::write_durably(&dir, &name, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written += 1;
        }
        if args.delete {
            client
                .delete(&b.id)
                .await
                .map_err(|e| anyhow!("cannot delete {} from the server: {e}", b.id))?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "pulled {} blobs into {}: {written} written, {same} already here{}",
        blobs.len(),
        out.display(),
        if strange > 0 {
            format!(", {strange} not recording segments (kept in unrecognized/, not trusted)")
        } else {
            String::new()
        }
    );
    for dir in recordings.keys() {
        let report = check(data_dir, dir)?;
        println!("  {}: {}", dir.display(), report.verdict);
        if let Some(who) = report.recorder {
            println!("    recorded by {who}");
        } else if let Some(Ok(e)) = report
            .files
            .first()
            .map(|f| read_segment(f).map(|b| inspect(&b)))
        {
            if let Ok(entry) = e.entry {
                println!(
                    "    recorded by {}",
                    device_words(&entry.recorder, &trusted)
                );
            }
        }
    }
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn keygen(data_dir: &Path, args: KeygenArgs) -> anyhow::Result<()> {
    let (identity, _) = store::load_or_create_identity(data_dir)?;
    let key_path = owner_key_path(data_dir);
    let cert_path = owner_cert_path(data_dir);
    if key_path.exists() {
        bail!(
            "{} already exists: it opens the recordings made for it, so it is never replaced \
             (move it away first if you really want a new one)",
            key_path.display()
        );
    }
    let label = crate::pair::own_label(args.label)?;
    if let Some(parent) = key_path.parent() {
        store::ensure_private_dir(parent)?;
    }
    let key = OwnerKey::generate();
    let created = unix_now();
    store::write_new_private_file(&key_path, &key.to_file_bytes(&created.to_string()))?;
    let cert = RecipientCertificate::issue(&identity, &key.recipient(), &label, created);
    let _ = std::fs::remove_file(&cert_path);
    store::write_new_private_file(&cert_path, cert.to_text().as_bytes())?;
    println!(
        "owner key:   {} (secret; back it up — without it your recordings cannot be opened)",
        key_path.display()
    );
    println!(
        "certificate: {} (public: give it to hosts that record for you)",
        cert_path.display()
    );
    println!("recipient:   {}", key.recipient());
    println!(
        "signed by this device, {} ({})",
        safe(cert.label()),
        identity.fingerprint().short()
    );
    println!(
        "hosts accept it only if they trust this device: record with `sealdesk host --record-to {}`",
        cert_path.display()
    );
    Ok(())
}

/// The keys this device trusts as recorders and as certificate owners: itself, the viewers
/// it paired (hosting) and the hosts it pinned (viewing), with their labels.
pub(crate) fn trusted_devices(
    data_dir: &Path,
    identity: &IdentityKey,
) -> anyhow::Result<Vec<(DeviceKey, String)>> {
    let files = TrustFiles::new(data_dir);
    let mut keys = vec![(identity.public(), "this device".to_owned())];
    for d in files.registry()?.devices() {
        if !d.revoked {
            keys.push((d.key, d.label.clone()));
        }
    }
    for h in files.pinned()?.hosts() {
        keys.push((h.key, h.label.clone()));
    }
    Ok(keys)
}

/// Loads a recipient certificate and accepts it only from a trusted key.
pub(crate) fn load_recipient(
    path: &Path,
    data_dir: &Path,
    identity: &IdentityKey,
) -> anyhow::Result<VerifiedRecipient> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the recipient certificate {}", path.display()))?;
    let cert = RecipientCertificate::parse(&bytes)
        .with_context(|| format!("{} cannot be used", path.display()))?;
    let trusted = trusted_devices(data_dir, identity)?;
    cert.verify(|k| trusted.iter().any(|(t, _)| t == k))
        .with_context(|| format!("{} cannot be used", path.display()))
}

/// A started recording (the viewer's).
pub(crate) struct Started {
    pub(crate) sink: std::sync::Arc<sealdesk_client::recording::RecordingSink>,
    pub(crate) owner: String,
    pub(crate) keep_clipboard: bool,
}

/// Starts recording a session with `peer` into a new directory under `dir`.
pub(crate) fn start_recording(
    dir: &Path,
    identity: std::sync::Arc<IdentityKey>,
    recipient: VerifiedRecipient,
    peer: &sealdesk_auth::session::PeerIdentity,
    by_host: bool,
    keep_clipboard: bool,
    durable: Option<sealdesk_client::recording::DurableSender>,
) -> anyhow::Result<Started> {
    let (sink, owner) =
        sealdesk_client::recording::start_session(dir, identity, recipient, peer, by_host, durable)
            .with_context(|| format!("cannot start recording into {}", dir.display()))?;
    Ok(Started {
        sink: std::sync::Arc::new(sink),
        owner,
        keep_clipboard,
    })
}

struct Report {
    verdict: Verdict,
    files: Vec<PathBuf>,
    recorder: Option<String>,
}

fn check(data_dir: &Path, rec: &Path) -> anyhow::Result<Report> {
    let (identity, _) = store::load_or_create_identity(data_dir)?;
    let trusted = trusted_devices(data_dir, &identity)?;
    let files = segment_files(rec)
        .with_context(|| format!("cannot read the recording directory {}", rec.display()))?;
    let mut inspected = Vec::with_capacity(files.len());
    for f in &files {
        let bytes = read_segment(f).with_context(|| format!("cannot read {}", f.display()))?;
        inspected.push(inspect(&bytes));
    }
    let verdict = verify(&inspected, |k| trusted.iter().any(|(t, _)| t == k));
    let recorder = inspected
        .first()
        .and_then(|i| i.entry.as_ref().ok())
        .and_then(|e| {
            trusted
                .iter()
                .find(|(k, _)| *k == e.recorder)
                .map(|(k, label)| format!("{} ({})", safe(label), DeviceFingerprint::of(k).short()))
        });
    Ok(Report {
        verdict,
        files,
        recorder,
    })
}

fn load_owner(data_dir: &Path, explicit: Option<&Path>) -> anyhow::Result<(OwnerKey, PathBuf)> {
    let key_path = explicit.map_or_else(|| owner_key_path(data_dir), Path::to_path_buf);
    let key_bytes = zeroize::Zeroizing::new(
        std::fs::read(&key_path)
            .with_context(|| format!("cannot read the owner key {}", key_path.display()))?,
    );
    let owner = OwnerKey::from_file_bytes(&key_bytes)
        .with_context(|| format!("{} cannot be used", key_path.display()))?;
    Ok((owner, key_path))
}

fn play(data_dir: &Path, args: PlayArgs) -> anyhow::Result<()> {
    use sealdesk_viewer::window::{self, FromWindow, Picture, ToWindow, WindowConfig};
    if !(args.speed > 0.0 && args.speed <= 64.0) {
        bail!("--speed must be between 0 and 64");
    }
    let (owner, key_path) = load_owner(data_dir, args.identity.as_deref())?;
    let report = check(data_dir, &args.dir)?;
    let good = report.verdict.good_segments() as usize;
    println!("{}", report.verdict);
    if good == 0 {
        bail!("nothing to play");
    }
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = closed.clone();
    let handle = window::open(
        WindowConfig {
            title: format!("sealdesk — recording {}", args.dir.display()),
        },
        move |ev| {
            if matches!(ev, FromWindow::Closed) {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        },
    )
    .map_err(|e| anyhow!("cannot open the player window: {e}"))?;
    let mut decoder: Option<(VideoCodec, sealdesk_media::decode::Decoder)> = None;
    let started = Instant::now();
    let mut first_us = None;
    let mut frames = 0u64;
    let mut bgra = Vec::new();
    'segments: for (n, path) in report.files[..good].iter().enumerate() {
        let bytes = read_segment(path)?;
        let (_, records) = open(&bytes, owner.identity()).with_context(|| {
            format!("cannot open {} with {}", path.display(), key_path.display())
        })?;
        for timed in records {
            if closed.load(std::sync::atomic::Ordering::Relaxed) {
                break 'segments;
            }
            let t0 = *first_us.get_or_insert(timed.t_us);
            let due = std::time::Duration::from_secs_f64(
                timed.t_us.saturating_sub(t0) as f64 / 1e6 / args.speed,
            );
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            let at = timed.t_us.saturating_sub(t0) as f64 / 1e6;
            match timed.record {
                Record::Video { codec, data, .. } => {
                    if decoder.as_ref().is_none_or(|(c, _)| *c != codec) {
                        let media = match codec {
                            VideoCodec::Vp8 => sealdesk_media::Codec::Vp8,
                            VideoCodec::Vp9 => sealdesk_media::Codec::Vp9,
                        };
                        let d = sealdesk_media::decode::Decoder::new(media)
                            .map_err(|e| anyhow!("cannot start the decoder: {e}"))?;
                        decoder = Some((codec, d));
                    }
                    let Some((_, d)) = decoder.as_mut() else {
                        continue;
                    };
                    if let Ok(Some(frame)) = d.decode(&data) {
                        let (w, h) = (frame.width(), frame.height());
                        bgra.resize(w as usize * h as usize * 4, 0);
                        if frame.to_bgra(&mut bgra, w as usize * 4).is_ok() {
                            frames += 1;
                            let _ = handle.send(ToWindow::Frame(Picture {
                                width: w,
                                height: h,
                                bgra: bgra.clone(),
                            }));
                            let _ = handle.send(ToWindow::Stats(format!(
                                "recording · {at:.1} s · segment {n}/{} · frame {frames}",
                                good - 1
                            )));
                        }
                    }
                }
                Record::Event(e) => println!("{at:8.1} s  {}", describe(&e)),
            }
        }
    }
    let _ = handle.send(ToWindow::Close);
    let _ = handle.join();
    println!("played {frames} frames from {good} segments");
    if !report.verdict.is_complete() {
        println!("the recording is not complete: played up to its last good segment");
    }
    Ok(())
}

/// A session event in words (clipboard content is shown only as its size).
fn describe(e: &Event) -> String {
    match e {
        Event::Started {
            by_host,
            peer_fingerprint,
            peer_label,
        } => format!(
            "recording started by the {} — the other side: {} ({})",
            if *by_host { "host" } else { "viewer" },
            safe(peer_label),
            DeviceFingerprint(*peer_fingerprint).short()
        ),
        Event::Input {
            keys,
            buttons,
            motions,
            wheel,
        } => format!("input: {keys} keys, {buttons} clicks, {motions} moves, {wheel} wheel steps"),
        Event::Clipboard {
            to_viewer,
            bytes,
            content,
        } => format!(
            "clipboard: {bytes} bytes {}{}",
            if *to_viewer {
                "host → viewer"
            } else {
                "viewer → host"
            },
            if content.is_some() {
                " (text kept in the recording)"
            } else {
                ""
            }
        ),
        Event::Monitor { index } => format!("monitor {index} selected"),
        Event::FramesLost { count } => format!("the recorder dropped {count} frames"),
        Event::Ended { reason } => format!("session ended: {}", safe(reason)),
        _ => "an event this version does not know".to_owned(),
    }
}

fn export(data_dir: &Path, args: ExportArgs) -> anyhow::Result<()> {
    let (owner, key_path) = load_owner(data_dir, args.identity.as_deref())?;
    let report = check(data_dir, &args.dir)?;
    let good = report.verdict.good_segments() as usize;
    if good == 0 {
        bail!("nothing to export: {}", report.verdict);
    }
    let started = Instant::now();
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(good as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} segments {elapsed} ({eta} left)",
        )
        .map_err(|e| anyhow!("progress bar: {e}"))?
        .progress_chars("=> "),
    );
    bar.set_prefix("exporting");
    let mut muxer: Option<Muxer> = None;
    let mut stats = ExportStats::default();
    for path in &report.files[..good] {
        let bytes = read_segment(path)?;
        let (_, records) = open(&bytes, owner.identity()).with_context(|| {
            format!("cannot open {} with {}", path.display(), key_path.display())
        })?;
        for timed in records {
            stats.end_us = stats.end_us.max(timed.t_us);
            match timed.record {
                Record::Video {
                    codec,
                    keyframe,
                    data,
                } => {
                    let m = match &mut muxer {
                        Some(m) => m,
                        None if keyframe => muxer.insert(Muxer::start(&args.output, codec, &data)?),
                        // Video begins at the first keyframe.
                        None => continue,
                    };
                    if m.codec != codec {
                        stats.codec_changed = true;
                        break;
                    }
                    m.frame(&data, timed.t_us, keyframe)?;
                    stats.frames += 1;
                    stats.bytes += data.len() as u64;
                }
                Record::Event(Event::FramesLost { count }) => stats.lost += u64::from(count),
                Record::Event(_) => stats.events += 1,
            }
        }
        bar.inc(1);
        if stats.codec_changed {
            break;
        }
    }
    bar.finish_and_clear();
    let Some(m) = muxer else {
        bail!("the recording holds no video (no keyframe in its {good} good segments)");
    };
    let seconds = m.finish(stats.end_us)?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "wrote {}: {} frames, {:.1} s of video, from {good} segments in {:.2} s ({:.0}× real time)",
        args.output.display(),
        stats.frames,
        seconds,
        took,
        seconds / took.max(1e-6)
    );
    if stats.lost > 0 {
        println!(
            "note: the recorder could not keep up and dropped {} frames (video resumed at the next keyframe)",
            stats.lost
        );
    }
    if stats.codec_changed {
        println!("note: the codec changed mid-recording; exported up to the change");
    }
    if !report.verdict.is_complete() {
        println!(
            "the recording is not complete — {}; exported up to its last good segment ({})",
            report.verdict,
            good - 1
        );
    }
    Ok(())
}

#[derive(Debug, Default)]
struct ExportStats {
    frames: u64,
    bytes: u64,
    events: u64,
    lost: u64,
    codec_changed: bool,
    /// The last record's time: the video lasts until then (an idle screen sends only a near-empty frame a second).
    end_us: u64,
}

/// A frame's WebM time, in nanoseconds from the first frame. WebM keeps milliseconds:
/// frames recorded within one (a burst after a stall) are spread a millisecond apart, or
/// they would share a timestamp that players and ffmpeg reject as non-increasing.
fn webm_time_ns(first_us: u64, last_ns: Option<u64>, t_us: u64) -> u64 {
    let ns = t_us.saturating_sub(first_us).saturating_mul(1000);
    match last_ns {
        Some(last) => ns.max(last.saturating_add(1_000_000)),
        None => ns,
    }
}

/// libwebm's muxer (through the `webm` crate): the recorded packets go in unchanged.
struct Muxer {
    codec: VideoCodec,
    segment: webm::mux::Segment<std::io::BufWriter<std::fs::File>>,
    track: webm::mux::VideoTrack,
    first_us: u64,
    last_ns: Option<u64>,
}

impl Muxer {
    fn start(path: &Path, codec: VideoCodec, keyframe: &[u8]) -> anyhow::Result<Self> {
        use webm::mux::{SegmentBuilder, SegmentMode, VideoCodecId, Writer};
        // The track header wants the size: decode the first keyframe.
        let media_codec = match codec {
            VideoCodec::Vp8 => sealdesk_media::Codec::Vp8,
            VideoCodec::Vp9 => sealdesk_media::Codec::Vp9,
        };
        let mut decoder = sealdesk_media::decode::Decoder::new(media_codec)
            .map_err(|e| anyhow!("cannot start the decoder: {e}"))?;
        let frame = decoder
            .decode(keyframe)
            .map_err(|e| anyhow!("the first keyframe does not decode: {e}"))?
            .ok_or_else(|| anyhow!("the first keyframe does not decode to a picture"))?;
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let writer = Writer::new(std::io::BufWriter::new(file));
        let builder = SegmentBuilder::new(writer)
            .and_then(|b| b.set_mode(SegmentMode::File))
            .and_then(|b| b.set_writing_app("sealdesk recordings export"))
            .map_err(|e| anyhow!("cannot start the WebM muxer: {e:?}"))?;
        let id = match codec {
            VideoCodec::Vp8 => VideoCodecId::VP8,
            VideoCodec::Vp9 => VideoCodecId::VP9,
        };
        let (builder, track) = builder
            .add_video_track(frame.width(), frame.height(), id, None)
            .map_err(|e| anyhow!("cannot add the video track: {e:?}"))?;
        Ok(Self {
            codec,
            segment: builder.build(),
            track,
            first_us: u64::MAX,
            last_ns: None,
        })
    }

    fn frame(&mut self, data: &[u8], t_us: u64, keyframe: bool) -> anyhow::Result<()> {
        if self.first_us == u64::MAX {
            self.first_us = t_us;
        }
        let ns = webm_time_ns(self.first_us, self.last_ns, t_us);
        self.last_ns = Some(ns);
        self.segment
            .add_frame(self.track, data, ns, keyframe)
            .map_err(|e| anyhow!("the WebM muxer refused a frame: {e:?}"))
    }

    /// Finishes the file, the last picture lasting until `end_us` (the recording's last
    /// record); returns the duration in seconds.
    fn finish(self, end_us: u64) -> anyhow::Result<f64> {
        let last_ms = self.last_ns.unwrap_or(0) / 1_000_000;
        // At least one 60 fps frame after the last picture.
        let end_ms = (end_us.saturating_sub(self.first_us) / 1000).max(last_ms + 16);
        self.segment
            .finalize(Some(end_ms))
            .map_err(|_| anyhow!("the WebM muxer could not finish the file"))?;
        Ok(end_ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webm_times_increase_by_at_least_a_millisecond() {
        assert_eq!(webm_time_ns(1000, None, 1000), 0);
        // 16.667 ms later: kept as recorded.
        assert_eq!(webm_time_ns(1000, Some(0), 17_667), 16_667_000);
        // The same microsecond, or 300 µs later: a millisecond after the last.
        assert_eq!(webm_time_ns(1000, Some(16_667_000), 17_667), 17_667_000);
        assert_eq!(webm_time_ns(1000, Some(17_667_000), 17_967), 18_667_000);
        let mut last = None;
        for t in [5, 5, 5, 6, 900, 900, 2000] {
            let ns = webm_time_ns(5, last, t);
            if let Some(l) = last {
                assert!(ns / 1_000_000 > l / 1_000_000, "{ns} after {l}");
            }
            last = Some(ns);
        }
    }
}
