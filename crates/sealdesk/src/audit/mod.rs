//! `sealdesk audit`: the five questions every end-to-end encrypted remote desktop should
//! answer, checked live against a real deployment (DESIGN.md §10, SECURITY.md).
//!
//! The audit runs real sessions between a host on its own Xvfb display and a headless
//! viewer, in this process, through the given signaling server (default: an embedded one)
//! and its relay. It stands on each device's signaling connection — seeing every message as
//! the server sends and receives it, after TLS — and in front of each relay, seeing every
//! datagram. From there it also plays the malicious server. Each question gets PASS or FAIL
//! with the evidence behind it; `--json` gives the same for programs (schema
//! `sealdesk-audit/1`, documented in SECURITY.md). Any FAIL makes the exit status non-zero.

mod desk;
mod observe;
mod run;
mod scan;
mod wire;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use rand::RngCore as _;
use sealdesk_auth::messages::{self, Message};
use sealdesk_proto::signaling::{ClientMessage, ServerMessage};
use sealdesk_record::cert::RecipientCertificate;
use sealdesk_record::owner::OwnerKey;
use sealdesk_rtc::relay::RelayUse;
use serde_json::{json, Value};

use observe::{Attack, Dir};
use run::{Canaries, Device, Outcome, Rig, RunSpec};
use scan::{Haystack, Needle, NeedleKind};

/// The report's schema: its fields only ever grow.
pub(crate) const SCHEMA: &str = "sealdesk-audit/1";

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// The signaling server to audit (`ws://` or `wss://…/ws`). Default: an embedded one
    /// on loopback, with its embedded relay.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Extra CA certificates (PEM) to trust for a `wss://` server.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Every session goes through the relay (question 3 always runs one that does).
    #[arg(long)]
    relay_only: bool,
    /// Embedded server only: issue credentials for this relay instead of running its own,
    /// e.g. coturn at `turn:127.0.0.1:3478?transport=udp`.
    #[arg(long, value_name = "URL", requires = "relay_secret")]
    relay_url: Option<String>,
    /// The secret shared with `--relay-url` (coturn's `static-auth-secret`).
    #[arg(long, value_name = "SECRET", env = "SEALDESK_AUDIT_RELAY_SECRET")]
    relay_secret: Option<String>,
    /// Print the report as JSON (for programs) instead of text.
    #[arg(long)]
    json: bool,
}

/// How a run uses the relay. Sessions: always with `--relay-only`, else as a real
/// deployment would (direct when it can, the relay when it must). The attacks: not at all —
/// they end before any transport is used, and each attempt would hold a relay allocation
/// against the credential's quota (the host does not give it back early yet).
fn relay_use(relay_only: bool, session: bool) -> RelayUse {
    match (relay_only, session) {
        (true, true) => RelayUse::Only,
        (false, true) => RelayUse::Fallback,
        (_, false) => RelayUse::Off,
    }
}

/// One question's answer.
struct Section {
    id: &'static str,
    question: &'static str,
    pass: bool,
    summary: String,
    evidence: Vec<String>,
    details: Value,
}

impl Section {
    fn to_json(&self, number: usize) -> Value {
        json!({
            "id": self.id,
            "number": number,
            "question": self.question,
            "pass": self.pass,
            "summary": self.summary,
            "evidence": self.evidence,
            "details": self.details,
        })
    }
}

fn step(what: &str) {
    eprintln!("audit: {what}");
}

pub(crate) async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    // In a test build, log this process's DTLS/SRTP keys so the search covers them too
    // (a release build cannot: the feature does not exist there — question 5 says which).
    let keylog = dir.path().join("insecure-keylog.txt");
    let keylog_active = sealdesk_rtc::insecure_keylog_to(&keylog);

    let xvfb = sealdesk_media::xvfb::Xvfb::start(1280, 720).map_err(|e| {
        anyhow!("{e}\nThe audit shares a virtual X display, so it needs Xvfb (scripts/demo installs it on Debian).")
    })?;
    let canaries = Canaries {
        screen: canary("screen"),
        typed: canary("typed"),
        to_host: canary("clipboard-to-host"),
        to_viewer: canary("clipboard-to-viewer"),
    };
    let desk = desk::Desk::start(xvfb.display(), &canaries.screen)?;

    // The deployment: the given server, or an embedded one.
    let server_dir = dir.path().join("server");
    let (url, embedded) = match &args.server {
        Some(url) => {
            if args.relay_url.is_some() {
                bail!("--relay-url configures the embedded server; a given --server has its own relays");
            }
            (url.clone(), None)
        }
        None => {
            let mut config = sealdesk_server::ServerConfig {
                listen: "127.0.0.1:0".parse()?,
                data_dir: Some(server_dir.clone()),
                ..sealdesk_server::ServerConfig::default()
            };
            if let Some(relay) = &args.relay_url {
                config.relay.enabled = false;
                config.relay.urls = vec![relay.clone()];
                config.relay.secret.clone_from(&args.relay_secret);
            }
            let server = sealdesk_server::Server::bind(config)
                .await
                .context("cannot start the embedded signaling server")?;
            let url = server.url();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(server.run(async move {
                let _ = stop_rx.await;
            }));
            (url, Some((stop_tx, task)))
        }
    };
    step(&format!(
        "auditing {url}{}",
        if embedded.is_some() {
            " (embedded)"
        } else {
            ""
        }
    ));
    let local_ip = sealdesk_client::signal::local_ip_towards(&url).await?;
    let rig = Rig::new(
        url.clone(),
        args.ca_file.clone(),
        xvfb.display().to_owned(),
        local_ip,
        Device::create(dir.path().join("host"))?,
        Device::create(dir.path().join("viewer"))?,
        Device::create(dir.path().join("attacker"))?,
        desk,
    );

    // The recording owner: the host's own user, with a key only they hold.
    let owner = OwnerKey::generate();
    let cert_path = rig.host.dir.join("audit-owner.cert");
    let cert = RecipientCertificate::issue(
        &rig.host.key,
        &owner.recipient(),
        "audit owner",
        crate::text::unix_now(),
    );
    sealdesk_client::store::write_new_private_file(&cert_path, cert.to_text().as_bytes())?;
    let recipient = crate::recordings::load_recipient(&cert_path, &rig.host.dir, &rig.host.key)?;
    let mut blob_config = sealdesk_client::ClientConfig::new(&url);
    blob_config.extra_ca_pem.clone_from(&args.ca_file);
    let blobs = sealdesk_client::blobs::BlobClient::new(&blob_config, rig.host.key.clone())
        .map_err(|e| anyhow!("cannot use the server's blob store: {e}"))?;
    let recording = sealdesk_host::agent::HostRecording {
        recipient,
        dir: dir.path().join("recordings"),
        keep_clipboard: true,
        upload: Some(blobs.clone()),
    };

    step("session 1: a full session (screen, typing, clipboard both ways, a recording)");
    let main = rig
        .run(RunSpec {
            relay: relay_use(args.relay_only, true),
            attack: Attack::None,
            recording: Some(recording),
            canaries: Some(canaries.clone()),
            wrong_guesses: 0,
        })
        .await?;
    let main_messages = rig.signaling.since(0);
    let relay_from = rig.relays.len();
    let relayed = if args.relay_only {
        None
    } else {
        step("session 2: the same through the relay only");
        Some(
            rig.run(RunSpec {
                relay: RelayUse::Only,
                attack: Attack::None,
                recording: None,
                canaries: Some(canaries.clone()),
                wrong_guesses: 0,
            })
            .await?,
        )
    };
    let relay_datagrams = rig
        .relays
        .since(if args.relay_only { 0 } else { relay_from });

    let mut attacks = Vec::new();
    for attack in [
        Attack::SwapViewerFingerprint,
        Attack::SwapHostFingerprint,
        Attack::Downgrade,
        Attack::ReplayOffer,
    ] {
        step(&format!("attack: {}", attack.name()));
        let before = rig.signaling.tampered();
        let had_offer = rig.signaling.has_offer();
        let out = rig
            .run(RunSpec {
                relay: relay_use(args.relay_only, false),
                attack,
                recording: None,
                canaries: None,
                wrong_guesses: 0,
            })
            .await?;
        let applied = rig.signaling.tampered() - before;
        attacks.push((
            attack.name(),
            applied,
            had_offer || attack != Attack::ReplayOffer,
            out,
        ));
    }
    step("attack: code guessing (three wrong guesses, then the right code)");
    let guessing = rig
        .run(RunSpec {
            relay: relay_use(args.relay_only, false),
            attack: Attack::None,
            recording: None,
            canaries: None,
            wrong_guesses: 3,
        })
        .await?;

    step("fetching what the server stores");
    let stored = fetch_blobs(&blobs).await;
    // Everything is done: stop the embedded server so its files are complete.
    let embedded_server = embedded.is_some();
    if let Some((stop, task)) = embedded {
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }

    // What must never be seen.
    let mut needles = vec![
        Needle::text("screen-text canary", NeedleKind::Canary, &canaries.screen),
        Needle::text("typed canary", NeedleKind::Canary, &canaries.typed),
        Needle::text(
            "clipboard canary (viewer → host)",
            NeedleKind::Canary,
            &canaries.to_host,
        ),
        Needle::text(
            "clipboard canary (host → viewer)",
            NeedleKind::Canary,
            &canaries.to_viewer,
        ),
    ];
    let mut secrets = Vec::new();
    for (name, device) in [("host", &rig.host), ("viewer", &rig.viewer)] {
        if let Some(seed) = identity_seed(&device.key) {
            secrets.push(Needle::bytes(
                format!("{name} identity secret key"),
                NeedleKind::Secret,
                &seed,
            ));
        }
    }
    if let Some(line) = owner_secret(&owner) {
        secrets.push(Needle::text(
            "recording owner key",
            NeedleKind::Secret,
            &line,
        ));
    }
    let runs: Vec<&Outcome> = std::iter::once(&main)
        .chain(relayed.as_ref())
        .chain(attacks.iter().map(|a| &a.3))
        .chain(std::iter::once(&guessing))
        .collect();
    for (i, r) in runs.iter().enumerate() {
        if let Some(s) = &r.code_secret {
            secrets.push(Needle::text(
                format!("one-time code secret (run {})", i + 1),
                NeedleKind::Secret,
                s,
            ));
        }
        for (name, k) in &r.keys {
            secrets.push(Needle::bytes(
                format!("{name} (run {})", i + 1),
                NeedleKind::Secret,
                k,
            ));
        }
    }
    let dtls_keys = if keylog_active {
        keylog_secrets(&keylog)
    } else {
        Vec::new()
    };
    let dtls_key_count = dtls_keys.len();
    secrets.extend(dtls_keys);
    needles.extend(secrets);

    // Where the audit looked.
    let all_messages = rig.signaling.since(0);
    let mut signaling_hay = Haystack::new("signaling messages");
    let mut bodies_hay = Haystack::new("envelope bodies (decoded)");
    for (_, text) in &all_messages {
        signaling_hay.push(text.as_bytes());
        if let Some(body) = envelope_body(text) {
            bodies_hay.push(&body);
        }
    }
    let mut relay_hay = Haystack::new("relay datagrams");
    for d in rig.relays.since(0) {
        relay_hay.push(&d.bytes);
    }
    let mut blob_hay = Haystack::new("blobs the server stores");
    for (_, bytes) in stored.as_ref().map_or(&[][..], Vec::as_slice) {
        blob_hay.push(bytes);
    }
    let mut hay = vec![signaling_hay, bodies_hay, relay_hay, blob_hay];
    if embedded_server {
        // A server elsewhere keeps its files to itself; this one's are here to read.
        let mut files_hay = Haystack::new("files in the server's data directory");
        read_tree(&server_dir, &mut files_hay);
        hay.push(files_hay);
    }
    step("searching everything observed");
    let hits = scan::search(&needles, &hay);

    let sections = vec![
        q1(
            &main,
            relayed.as_ref(),
            &needles,
            &hay,
            &hits,
            dtls_key_count,
            keylog_active,
        ),
        q2(&main_messages, &hits, &attacks, &guessing),
        q3(
            relayed.as_ref().unwrap_or(&main),
            &relay_datagrams,
            &hits,
            &rig.relays,
        ),
        q4(
            &stored,
            &owner,
            &canaries,
            &hits,
            &cert,
            &rig,
            main.uploaded.as_ref(),
        ),
        q5(),
    ];
    let passed = sections.iter().all(|s| s.pass);
    if args.json {
        let report = json!({
            "schema": SCHEMA,
            "sealdesk": env!("CARGO_PKG_VERSION"),
            "server": url,
            "embedded_server": embedded_server,
            "relay_only": args.relay_only,
            "passed": passed,
            "sections": sections.iter().enumerate().map(|(i, s)| s.to_json(i + 1)).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&url, embedded_server, &sections);
    }
    drop(xvfb);
    if !passed {
        let failed: Vec<String> = sections
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.pass)
            .map(|(i, s)| format!("{} ({})", i + 1, s.id))
            .collect();
        bail!("the audit failed: {}", failed.join(", "));
    }
    Ok(())
}

fn print_report(url: &str, embedded: bool, sections: &[Section]) {
    println!();
    println!(
        "sealdesk audit of {url}{} — sealdesk {}",
        if embedded { " (embedded server)" } else { "" },
        env!("CARGO_PKG_VERSION")
    );
    for (i, s) in sections.iter().enumerate() {
        println!();
        println!(
            "[{}] {}. {}",
            if s.pass { "PASS" } else { "FAIL" },
            i + 1,
            s.question
        );
        println!("       {}", s.summary);
        for e in &s.evidence {
            println!("       - {e}");
        }
    }
    let passed = sections.iter().filter(|s| s.pass).count();
    println!();
    println!(
        "result: {} ({passed} of {} questions pass)",
        if passed == sections.len() {
            "PASS"
        } else {
            "FAIL"
        },
        sections.len()
    );
}

/// A string nothing contains by chance.
fn canary(what: &str) -> String {
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let tag: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("sealdeskcanary{what}{tag}").replace('-', "")
}

/// The 32-byte seed of an identity key (it is the secret).
fn identity_seed(key: &sealdesk_auth::IdentityKey) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    use base64::Engine as _;
    let file = key.to_file_bytes();
    let text = std::str::from_utf8(&file).ok()?;
    let line = text.lines().last()?;
    let b64 = line.rsplit(' ').next()?;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .map(zeroize::Zeroizing::new)
}

/// The owner key's secret line (`AGE-SECRET-KEY-1…`).
fn owner_secret(owner: &OwnerKey) -> Option<zeroize::Zeroizing<String>> {
    let file = owner.to_file_bytes("0");
    let text = std::str::from_utf8(&file).ok()?;
    text.lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .map(|l| zeroize::Zeroizing::new(l.to_owned()))
}

/// The DTLS record keys and SRTP keying material from the insecure key log (test builds).
fn keylog_secrets(path: &Path) -> Vec<Needle> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let unhex = |s: &str| -> Option<Vec<u8>> {
        (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect()
    };
    let mut out = Vec::new();
    for line in text.lines() {
        for field in line.split_whitespace() {
            let Some((name, value)) = field.split_once('=') else {
                continue;
            };
            if !matches!(name, "key" | "material") {
                continue;
            }
            if let Some(bytes) = unhex(value) {
                let kind = if name == "key" {
                    "DTLS record key"
                } else {
                    "SRTP keying material"
                };
                if !out.iter().any(|(_, b)| *b == bytes) {
                    out.push((kind, bytes));
                }
            }
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, (kind, bytes))| {
            Needle::bytes(format!("{kind} #{}", i + 1), NeedleKind::Secret, &bytes)
        })
        .collect()
}

/// The opaque body of an envelope message, either way.
fn envelope_body(text: &str) -> Option<Vec<u8>> {
    if let Ok(ServerMessage::Envelope { body, .. }) = ServerMessage::decode(text) {
        return Some(body.as_bytes().to_vec());
    }
    if let Ok(ClientMessage::Send { body, .. }) = ClientMessage::decode(text) {
        return Some(body.as_bytes().to_vec());
    }
    None
}

/// Every file under `dir` (the server's database, its blob files, its relay secret…).
fn read_tree(dir: &Path, hay: &mut Haystack) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            read_tree(&path, hay);
        } else if let Ok(bytes) = std::fs::read(&path) {
            hay.push(&bytes);
        }
    }
}

/// The owner's blobs on the server, downloaded.
async fn fetch_blobs(
    blobs: &sealdesk_client::blobs::BlobClient,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let list = blobs.list().await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for info in list {
        let bytes = blobs.download(&info.id).await.map_err(|e| e.to_string())?;
        out.push((info.id.to_string(), bytes));
    }
    Ok(out)
}

fn hit_lines(hits: &[scan::Hit], needles_of: impl Fn(&scan::Hit) -> bool) -> Vec<String> {
    hits.iter()
        .filter(|h| needles_of(h))
        .map(|h| format!("FOUND {} in {} ({}, {}×)", h.what, h.place, h.form, h.count))
        .collect()
}

fn q1(
    main: &Outcome,
    relayed: Option<&Outcome>,
    needles: &[Needle],
    hay: &[Haystack],
    hits: &[scan::Hit],
    dtls_keys: usize,
    keylog: bool,
) -> Section {
    let mut evidence = Vec::new();
    let crossed = [main].into_iter().chain(relayed).all(|o| {
        o.session_started
            && o.frames > 0
            && o.typed_arrived
            && o.clipboard_to_host_arrived
            && o.clipboard_to_viewer_arrived
    });
    for (i, o) in [main].into_iter().chain(relayed).enumerate() {
        evidence.push(format!(
            "session {} ({}): {} frames decoded; typed canary {} at the host's X client; \
             clipboard canary {} the host's CLIPBOARD and {} the viewer",
            i + 1,
            o.path.as_deref().unwrap_or("no path"),
            o.frames,
            if o.typed_arrived {
                "arrived"
            } else {
                "DID NOT arrive"
            },
            if o.clipboard_to_host_arrived {
                "reached"
            } else {
                "DID NOT reach"
            },
            if o.clipboard_to_viewer_arrived {
                "reached"
            } else {
                "DID NOT reach"
            },
        ));
    }
    let canaries = needles
        .iter()
        .filter(|n| n.kind == NeedleKind::Canary)
        .count();
    let secrets = needles
        .iter()
        .filter(|n| n.kind == NeedleKind::Secret)
        .count();
    let forms: usize = needles.iter().map(Needle::form_count).sum();
    evidence.push(format!(
        "searched for {canaries} canaries and {secrets} secrets (the one-time codes' secret \
         digits, both identity keys, the recording owner key, the handshake's session keys{}) \
         in {forms} forms (raw, hex, base64 and base64url at each alignment, UTF-16)",
        if keylog {
            format!(", and {dtls_keys} DTLS/SRTP keys from this test build's key log")
        } else {
            "; DTLS/SRTP keys are not observable in a build without the test-only key log"
                .to_owned()
        }
    ));
    for h in hay {
        let found = hits.iter().filter(|x| x.place == h.place).count();
        evidence.push(format!(
            "{}: {} items, {} bytes: {} found",
            h.place,
            h.items,
            h.bytes.len(),
            found
        ));
    }
    let found = hit_lines(hits, |_| true);
    let pass = crossed && found.is_empty();
    evidence.extend(found.iter().cloned());
    let summary = if !crossed {
        "the canaries did not all cross the session, so not finding them proves nothing".into()
    } else if found.is_empty() {
        "no canary and no secret appears in anything the server or the relay saw or stored".into()
    } else {
        format!(
            "{} canaries or secrets were seen by the server or relay",
            found.len()
        )
    };
    Section {
        id: "vendor-cannot-decrypt",
        question: "Can the vendor decrypt a session, even if it wants to?",
        pass,
        summary,
        evidence,
        details: json!({
            "canaries_crossed": crossed,
            "canaries": canaries,
            "secrets": secrets,
            "dtls_srtp_keys": dtls_keys,
            "observed": hay.iter().map(|h| json!({"place": h.place, "items": h.items, "bytes": h.bytes.len()})).collect::<Vec<_>>(),
            "found": hits.iter().map(|h| json!({"what": h.what, "place": h.place, "form": h.form, "count": h.count})).collect::<Vec<_>>(),
        }),
    }
}

/// What each handshake message carries, for the transcript listing.
fn describe(m: &Message) -> (&'static str, String) {
    match m {
        Message::A1(a) => (
            "A1",
            format!(
                "offer (versions {:?}, suites {:?}), routing number, 32-byte nonce, SPAKE2 \
                 public message X, the viewer's DTLS fingerprint {}",
                a.offer.versions,
                a.offer.suites,
                a.fp_v.to_sdp().get(..17).unwrap_or("")
            ),
        ),
        Message::A2(a) => (
            "A2",
            format!(
                "choice, 32-byte nonce, SPAKE2 public message Y, the host's DTLS fingerprint, \
                 its identity encrypted under the SPAKE2 key ({} bytes), key confirmation MAC",
                a.id_h.len()
            ),
        ),
        Message::A3(a) => (
            "A3",
            format!(
                "the viewer's identity encrypted ({} bytes), key confirmation MAC",
                a.id_v.len()
            ),
        ),
        Message::Sealed(s) => (
            "sealed",
            format!(
                "kind {}, sequence number, ciphertext ({} bytes)",
                s.kind,
                s.ct.len()
            ),
        ),
        Message::Abort(_) => ("abort", "a reason code".into()),
        _ => ("other", "an unattended handshake message".into()),
    }
}

fn q2(
    messages: &[(Dir, String)],
    hits: &[scan::Hit],
    attacks: &[(&'static str, usize, bool, Outcome)],
    guessing: &Outcome,
) -> Section {
    let mut evidence = Vec::new();
    let mut kinds: std::collections::BTreeMap<&'static str, (usize, String)> =
        std::collections::BTreeMap::new();
    let mut undecodable = 0usize;
    let mut sdp_in_clear = 0usize;
    let sdp = |b: &[u8]| {
        [
            &b"a=fingerprint"[..],
            b"a=ice-pwd",
            b"m=video",
            b"a=candidate",
        ]
        .iter()
        .any(|m| memchr::memmem::find(b, m).is_some())
    };
    for (dir, text) in messages {
        if sdp(text.as_bytes()) || envelope_body(text).is_some_and(|b| sdp(&b)) {
            sdp_in_clear += 1;
        }
        // Each envelope is counted once, where the sender handed it to the server.
        if *dir != Dir::ToServer {
            continue;
        }
        let Some(body) = envelope_body(text) else {
            continue;
        };
        match messages::decode(&body) {
            Ok(m) => {
                let (k, what) = describe(&m);
                let e = kinds.entry(k).or_insert((0, what));
                e.0 += 1;
            }
            Err(_) => undecodable += 1,
        }
    }
    evidence.push(format!(
        "the handshake as the server relayed it (session 1): {}",
        if kinds.is_empty() {
            "NOTHING (no envelope seen)".to_owned()
        } else {
            kinds
                .iter()
                .map(|(k, (n, _))| format!("{n}× {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    for (k, (_, what)) in &kinds {
        evidence.push(format!("{k}: {what}"));
    }
    evidence.push(format!(
        "envelopes that are not a handshake message: {undecodable}; signaling messages with \
         SDP or ICE credentials in the clear: {sdp_in_clear}"
    ));
    let leaked_secret = hits
        .iter()
        .any(|h| h.place.starts_with("signaling") || h.place.starts_with("envelope"));
    let mut attacks_ok = true;
    let mut details = Vec::new();
    for (name, applied, possible, out) in attacks {
        let stopped = !out.connected && !out.session_started && out.frames == 0;
        let ok = *applied > 0 && *possible && stopped;
        attacks_ok &= ok;
        evidence.push(format!(
            "attack: {name}: {} ({} message{} rewritten); host said: {}; viewer said: {}",
            if ok {
                "the session ended before any application byte flowed"
            } else if *applied == 0 {
                "NOT APPLIED (nothing to rewrite)"
            } else {
                "A SESSION STARTED"
            },
            applied,
            if *applied == 1 { "" } else { "s" },
            said(&out.host_said),
            said(&out.viewer_said),
        ));
        details.push(json!({
            "attack": name, "rewritten": applied, "stopped": stopped, "pass": ok,
            "host": out.host_said, "viewer": out.viewer_said,
        }));
    }
    let burned = guessing
        .host_said
        .iter()
        .any(|s| s.starts_with("code burned"));
    let guesses_failed = guessing
        .viewer_said
        .iter()
        .filter(|s| s.starts_with("guess "))
        .count();
    let guess_ok =
        burned && guesses_failed == 3 && !guessing.connected && !guessing.session_started;
    evidence.push(format!(
        "attack: code guessing: {}; host said: {}; viewer said: {}",
        if guess_ok {
            "3 wrong guesses failed, the code was burned, and the right code no longer opened a session"
        } else {
            "THE CODE SURVIVED GUESSING, OR A SESSION STARTED"
        },
        said(&guessing.host_said),
        said(&guessing.viewer_said),
    ));
    details.push(json!({
        "attack": "code guessing", "stopped": guess_ok, "pass": guess_ok,
        "host": guessing.host_said, "viewer": guessing.viewer_said,
    }));
    let pass = !kinds.is_empty()
        && undecodable == 0
        && sdp_in_clear == 0
        && !leaked_secret
        && attacks_ok
        && guess_ok;
    Section {
        id: "keys-between-endpoints",
        question: "Are session keys derived between the endpoints, or issued by the vendor?",
        pass,
        summary: if pass {
            "the server relays only public handshake values; every attack it can make ended the \
             session before any application byte flowed"
                .into()
        } else {
            "the server saw more than public values, or an attack was not stopped".into()
        },
        evidence,
        details: json!({
            "transcript": kinds.iter().map(|(k, (n, _))| json!({"message": k, "count": n})).collect::<Vec<_>>(),
            "undecodable": undecodable,
            "sdp_in_clear": sdp_in_clear,
            "attacks": details,
        }),
    }
}

fn said(v: &[String]) -> String {
    if v.is_empty() {
        "nothing".into()
    } else {
        v.iter()
            .map(|s| format!("\"{}\"", crate::text::safe(s)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn q3(
    relayed: &Outcome,
    datagrams: &[observe::Datagram],
    hits: &[scan::Hit],
    taps: &observe::RelayTaps,
) -> Section {
    let mut t = wire::Tally::default();
    for d in datagrams {
        t.datagram(&d.bytes);
    }
    let mut evidence = Vec::new();
    let relays = taps.relays();
    evidence.push(format!(
        "the forced-relay session ran over {} (path {}), {} frames decoded",
        if relays.is_empty() {
            "NO OBSERVED RELAY".to_owned()
        } else {
            relays
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
        relayed.path.as_deref().unwrap_or("none"),
        relayed.frames
    ));
    let to_relay = datagrams.iter().filter(|d| d.to_relay).count();
    evidence.push(format!(
        "{} datagrams ({} to the relay, {} from it): {} TURN control, {} unparsable",
        datagrams.len(),
        to_relay,
        datagrams.len() - to_relay,
        t.turn_control,
        t.unparsed
    ));
    for (kind, (n, bytes)) in &t.payloads {
        evidence.push(format!("payload {}: {n} ({bytes} bytes)", kind.name()));
    }
    let unobserved = taps.unobserved();
    if !unobserved.is_empty() {
        evidence.push(format!(
            "relay URLs left out because the audit cannot observe them: {}",
            unobserved.join(", ")
        ));
    }
    let mut hello_ok = true;
    let servers: Vec<&wire::Hello> = t.hellos.iter().filter(|h| h.server).collect();
    for h in &servers {
        let suite = h.suites.first().copied().unwrap_or(0);
        let srtp = h.srtp.first().copied().unwrap_or(0);
        let ok = h.version == 0xfefd
            && wire::ALLOWED_SUITES.iter().any(|(s, _)| *s == suite)
            && h.ems
            && wire::ALLOWED_SRTP.iter().any(|(s, _)| *s == srtp);
        hello_ok &= ok;
        evidence.push(format!(
            "DTLS ServerHello: version {}, {}, extended master secret {}, SRTP {}{}",
            if h.version == 0xfefd {
                "DTLS 1.2".to_owned()
            } else {
                format!("0x{:04x} (NOT DTLS 1.2)", h.version)
            },
            wire::name_of(wire::ALLOWED_SUITES, suite),
            if h.ems { "yes" } else { "NO" },
            wire::name_of(wire::ALLOWED_SRTP, srtp),
            if ok { "" } else { " — WEAKER THAN ALLOWED" }
        ));
    }
    let clients = t.hellos.iter().filter(|h| !h.server).count();
    evidence.push(format!("DTLS ClientHellos seen: {clients}"));
    let canary_hits = hit_lines(hits, |h| h.place == "relay datagrams");
    evidence.extend(canary_hits.iter().cloned());
    let count = |k| t.payloads.get(&k).map_or(0, |v| v.0);
    let unknown = count(wire::Payload::Unknown);
    let pass = !datagrams.is_empty()
        && relayed.path.as_deref().is_some_and(|p| p.contains("relay"))
        && relayed.frames > 0
        && t.unparsed == 0
        && unknown == 0
        && count(wire::Payload::Srtp) > 0
        && count(wire::Payload::DtlsApplicationData) > 0
        && !servers.is_empty()
        && hello_ok
        && canary_hits.is_empty();
    Section {
        id: "relay-fallback",
        question: "What happens on relay fallback?",
        pass,
        summary: if pass {
            "through the relay, the session is the same DTLS 1.2 and SRTP it is directly: the \
             relay handled only TURN control and ciphertext, and nothing weaker was negotiated"
                .into()
        } else {
            "the relayed session was not observed, or the relay saw something other than DTLS/SRTP, or a weaker mode".into()
        },
        evidence,
        details: json!({
            "path": relayed.path,
            "datagrams": datagrams.len(),
            "turn_control": t.turn_control,
            "unparsed": t.unparsed,
            "payloads": t.payloads.iter().map(|(k, (n, b))| json!({"kind": k.name(), "count": n, "bytes": b})).collect::<Vec<_>>(),
            "server_hellos": servers.iter().map(|h| json!({
                "version": format!("0x{:04x}", h.version),
                "suite": h.suites.first().map(|s| format!("0x{s:04x}")),
                "extended_master_secret": h.ems,
                "srtp": h.srtp.first().map(|s| format!("0x{s:04x}")),
            })).collect::<Vec<_>>(),
            "unobserved_relays": unobserved,
        }),
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one question, many pieces of evidence"
)]
fn q4(
    stored: &Result<Vec<(String, Vec<u8>)>, String>,
    owner: &OwnerKey,
    canaries: &Canaries,
    hits: &[scan::Hit],
    cert: &RecipientCertificate,
    rig: &Rig,
    uploaded: Option<&sealdesk_client::recording::UploadReport>,
) -> Section {
    let mut evidence = Vec::new();
    let blobs = match stored {
        Ok(b) => b.as_slice(),
        Err(e) => {
            evidence.push(format!("cannot list or download the owner's blobs: {e}"));
            &[][..]
        }
    };
    evidence.push(format!(
        "the host recorded session 1 to the owner's certified recipient and uploaded {}; \
         the server stores {} blobs for the owner ({} bytes)",
        uploaded.map_or_else(
            || "NOTHING".to_owned(),
            |u| format!("{} segments ({} failed)", u.uploaded, u.failed)
        ),
        blobs.len(),
        blobs.iter().map(|(_, b)| b.len()).sum::<usize>()
    ));
    let stranger = OwnerKey::generate();
    let (mut opened, mut stranger_opened, mut canary_inside) = (0usize, 0usize, false);
    for (_, bytes) in blobs {
        if let Ok((_, records)) = sealdesk_record::segment::open(bytes, owner.identity()) {
            opened += 1;
            canary_inside |= records.iter().any(|r| {
                matches!(&r.record, sealdesk_record::body::Record::Event(
                    sealdesk_record::body::Event::Clipboard { content: Some(c), .. }) if c == &canaries.to_host)
            });
        }
        if sealdesk_record::segment::open(bytes, stranger.identity()).is_ok() {
            stranger_opened += 1;
        }
    }
    evidence.push(format!(
        "the owner's key opens {opened} of {} blobs{}; another age key opens {stranger_opened}",
        blobs.len(),
        if canary_inside {
            ", and inside is the clipboard canary the stored bytes never show"
        } else {
            " (the clipboard canary was NOT found inside)"
        }
    ));
    let canary_hits = hit_lines(hits, |h| {
        (h.place.starts_with("blobs") || h.place.starts_with("files"))
            && !h.what.contains("key")
            && !h.what.contains("secret")
    });
    evidence.push(format!(
        "canaries in the stored blobs and the server's files: {}",
        canary_hits.len()
    ));
    evidence.extend(canary_hits.iter().cloned());
    // A substituted recipient: the attacker's key in the owner's certificate, and a
    // certificate the attacker signed itself. The host's own check must refuse both.
    let attacker_key = OwnerKey::generate();
    let swapped = cert
        .to_text()
        .replace(cert.recipient(), &attacker_key.recipient().to_string());
    let forged = RecipientCertificate::issue(
        &rig.attacker.key,
        &attacker_key.recipient(),
        "audit owner",
        crate::text::unix_now(),
    )
    .to_text();
    let mut refused = 0;
    for (name, text) in [
        ("recipient swapped in the owner's certificate", swapped),
        ("certificate signed by another device", forged),
    ] {
        let path = rig.host.dir.join(format!("substituted-{refused}.cert"));
        let result = std::fs::write(&path, text)
            .map_err(anyhow::Error::from)
            .and_then(|()| crate::recordings::load_recipient(&path, &rig.host.dir, &rig.host.key));
        match result {
            Err(e) => {
                refused += 1;
                evidence.push(format!("substituted recipient ({name}): refused: {:#}", e));
            }
            Ok(_) => evidence.push(format!("substituted recipient ({name}): ACCEPTED")),
        }
    }
    let pass = !blobs.is_empty()
        && opened == blobs.len()
        && stranger_opened == 0
        && canary_inside
        && canary_hits.is_empty()
        && refused == 2;
    Section {
        id: "recording-keys",
        question: "Who holds the recording keys?",
        pass,
        summary: if pass {
            "the owner alone: the server stores only ciphertext it cannot open, and a substituted \
             recipient is refused"
                .into()
        } else {
            "the recording could be read without the owner's key, was not stored, or a substituted recipient was accepted".into()
        },
        evidence,
        details: json!({
            "blobs": blobs.len(),
            "opened_by_owner": opened,
            "opened_by_other_key": stranger_opened,
            "canary_inside": canary_inside,
            "canaries_in_storage": canary_hits.len(),
            "substitutions_refused": refused,
        }),
    }
}

fn q5() -> Section {
    use sha2::Digest as _;
    let insecure = crate::insecure_features();
    let exe = std::env::current_exe().ok();
    let exe_hash = exe.as_ref().and_then(|p| std::fs::read(p).ok()).map(|b| {
        sha2::Sha256::digest(&b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    });
    let commit = env!("SEALDESK_BUILD_COMMIT");
    let profile = if cfg!(debug_assertions) {
        "debug (debug assertions on)"
    } else {
        "release"
    };
    let mut evidence = vec![
        format!(
            "sealdesk {}, source commit {commit}",
            env!("CARGO_PKG_VERSION")
        ),
        format!(
            "built {profile}, opt-level {}, for {}, by {}",
            env!("SEALDESK_BUILD_OPT_LEVEL"),
            env!("SEALDESK_BUILD_TARGET"),
            env!("SEALDESK_BUILD_RUSTC")
        ),
        format!(
            "this executable: {} (SHA-256 {})",
            exe.as_ref()
                .map_or_else(|| "unknown".into(), |p| p.display().to_string()),
            exe_hash.as_deref().unwrap_or("unreadable")
        ),
        format!(
            "browser-viewer bundle: sha256:{} (web/: the page's sources and the WebAssembly \
             scripts/build-web makes from crates/sealdesk-web; CI rebuilds it and compares)",
            crate::web::bundle_hash()
        ),
        format!(
            "insecure test-only features compiled in: {}",
            if insecure.is_empty() {
                "none".to_owned()
            } else {
                format!(
                    "{} — THIS IS A TEST BUILD; never use it for real sessions",
                    insecure.join(", ")
                )
            }
        ),
        format!(
            "reproduce: git clone <the sealdesk repository> && git checkout {commit} && \
             cargo build --release --locked -p sealdesk (Rust as above; scripts/debian-deps.sh \
             installs the system libraries); the source is open, so every claim here can be read \
             in it and in the tests that enforce it (SECURITY.md)"
        ),
    ];
    if commit == "unknown" {
        evidence.push("the source commit is unknown: built outside a git checkout".into());
    }
    Section {
        id: "auditable-build",
        question: "Is the implementation auditable?",
        pass: insecure.is_empty(),
        summary: if insecure.is_empty() {
            "open source at a named commit, built without any test-only feature".into()
        } else {
            "a test-only feature that weakens security is compiled into this build".into()
        },
        evidence,
        details: json!({
            "version": env!("CARGO_PKG_VERSION"),
            "commit": commit,
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            "opt_level": env!("SEALDESK_BUILD_OPT_LEVEL"),
            "target": env!("SEALDESK_BUILD_TARGET"),
            "rustc": env!("SEALDESK_BUILD_RUSTC"),
            "executable_sha256": exe_hash,
            "browser_bundle_sha256": crate::web::bundle_hash(),
            "insecure_features": insecure,
        }),
    }
}
