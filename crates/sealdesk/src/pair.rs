//! `sealdesk pair`: attended pairing with a one-time code over a real signaling server
//! (DESIGN.md §4), ending with both devices remembering each other.
//!
//! The host shows `R · S`; the viewer sends A1 to `R`; the host answers A2; the viewer
//! checks it and sends A3; the host checks that and asks its user. On "yes" the host adds
//! the viewer to its pairing registry and sends the sealed Accept; the viewer pins the
//! host's key. Every check is in `sealdesk_auth`; this module moves bytes, reads the
//! clock and the OS RNG, talks to people and writes the trust files.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};
use rand::rngs::OsRng;
use rand::RngCore as _;
use sealdesk_auth::attended::host::{AttendedHost, ExpectA3, PendingConsent};
use sealdesk_auth::attended::viewer;
use sealdesk_auth::code::{OneTimeCode, CODE_LIFETIME, MAX_ATTEMPTS};
use sealdesk_auth::messages::{self, Abort, AbortReason, Message, TAG_A2, TAG_ABORT, TAG_SEALED};
use sealdesk_auth::negotiate::Offer;
use sealdesk_auth::safety::SafetyNumber;
use sealdesk_auth::sdp::DtlsFingerprint;
use sealdesk_auth::session::PeerIdentity;
use sealdesk_auth::trust::{check_label, PairedDevice, Permissions, PinnedHost};
use sealdesk_auth::{HandshakeError, IdentityKey};
use sealdesk_client::trust_store::TrustFiles;
use sealdesk_client::{store, ClientConfig, SignalClient, SignalEvent};
use sealdesk_proto::{Body, DeviceKey, RoutingNumber, SessionId};
use sealdesk_viewer::dial::Peer;
use zeroize::{Zeroize, Zeroizing};

use crate::text::{default_label, safe, safety_lines, unix_now, utc};

/// Where `sealdesk server` listens by default.
pub(crate) const DEFAULT_SERVER: &str = "ws://127.0.0.1:8443/ws";
/// How long to wait for queued envelopes to leave before exiting.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// The label stored for a device whose own label is unusable.
const UNNAMED: &str = "unnamed device";

/// The `pair` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PairCommand {
    /// Show a one-time code and pair with the device that types it.
    Host(HostArgs),
    /// Pair with a host by typing the code it shows.
    Connect(ConnectArgs),
}

/// Which signaling server to use.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Signaling server URL.
    #[arg(long, env = "SEALDESK_SERVER", default_value = DEFAULT_SERVER, value_name = "URL")]
    pub(crate) server: String,
    /// Extra CA certificates (PEM) to trust for a wss:// server.
    #[arg(long, env = "SEALDESK_CA_FILE", value_name = "FILE")]
    pub(crate) ca_file: Option<PathBuf>,
}

/// Flags of `sealdesk pair host`.
#[derive(Debug, Args)]
pub(crate) struct HostArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// How this device introduces itself to the viewer [default: the hostname].
    #[arg(long)]
    label: Option<String>,
    /// What the new viewer may do, e.g. `view,input` [default: view,input,clipboard,files].
    #[arg(long, value_name = "PERMS")]
    permissions: Option<String>,
    /// Approve the device that proves the code without asking (for scripts and tests).
    #[arg(long)]
    yes: bool,
}

/// Flags of `sealdesk pair connect`.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// The code the host shows, e.g. `123 456 789 · 1234 5678` (quoted or not). Leave it
    /// out to type it at a prompt, where other users' `ps` cannot see it.
    code: Vec<String>,
    #[command(flatten)]
    server: ServerArgs,
    /// How this device introduces itself to the host [default: the hostname].
    #[arg(long)]
    label: Option<String>,
    /// Seconds to wait for the host to answer.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
    /// Seconds to wait for the host's user to approve.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    approval_timeout: u64,
}

/// Runs a `pair` subcommand.
pub(crate) async fn run(cmd: PairCommand, data_dir: Option<&Path>) -> anyhow::Result<()> {
    match cmd {
        PairCommand::Host(args) => host(args, data_dir).await,
        PairCommand::Connect(args) => connect(args, data_dir).await,
    }
}

/// Pairing sets up no WebRTC session, so there is no DTLS certificate whose fingerprint
/// the handshake could bind. Each side binds a fresh random value in its place: the
/// transcript keeps its shape and binds nothing a later session could be confused with
/// (a session runs its own handshake with its real fingerprints).
fn no_dtls_yet() -> DtlsFingerprint {
    let mut fp = [0u8; 32];
    OsRng.fill_bytes(&mut fp);
    DtlsFingerprint(fp)
}

pub(crate) fn own_label(label: Option<String>) -> anyhow::Result<String> {
    let label = label.unwrap_or_else(default_label);
    check_label(&label).map_err(|e| anyhow!("--label: {e}"))?;
    Ok(label)
}

/// What to store for a label another device chose (already free of control characters).
fn stored_label(peer: &PeerIdentity) -> String {
    if check_label(&peer.label).is_ok() {
        peer.label.clone()
    } else {
        UNNAMED.to_owned()
    }
}

pub(crate) async fn signal(
    server: &ServerArgs,
    identity: Arc<IdentityKey>,
) -> anyhow::Result<SignalClient> {
    let mut config = ClientConfig::new(&server.server);
    config.extra_ca_pem.clone_from(&server.ca_file);
    SignalClient::connect(config, identity).await.map_err(|e| {
        anyhow!("{e} (is `sealdesk server` running there? choose another with --server or SEALDESK_SERVER)")
    })
}

async fn send(
    client: &SignalClient,
    to: RoutingNumber,
    session: SessionId,
    bytes: Vec<u8>,
) -> anyhow::Result<()> {
    client
        .send(to, session, Body::new(bytes)?)
        .await
        .context("cannot send to the signaling server")?;
    Ok(())
}

fn print_peer(peer: &PeerIdentity, me: &DeviceKey) {
    println!("  it calls itself: {:?}", safe(&peer.label));
    println!("  fingerprint:     {}", peer.fingerprint());
    println!("  safety number:");
    println!(
        "{}",
        safety_lines(&SafetyNumber::of(me, &peer.key), "      ")
    );
}

// ---------------------------------------------------------------------------------------
// Host

async fn host(args: HostArgs, data_dir: Option<&Path>) -> anyhow::Result<()> {
    let dir = store::resolve_data_dir(data_dir)?;
    let (identity, _) = store::load_or_create_identity(&dir)?;
    let files = TrustFiles::new(&dir);
    // A damaged or unsafe registry is reported before a code is shown, not after.
    files.registry()?;
    let label = own_label(args.label)?;
    let permissions = match &args.permissions {
        Some(p) => Permissions::parse(p).map_err(|e| anyhow!("--permissions: {e}"))?,
        None => Permissions::DEFAULT_PAIRED,
    };
    let identity = Arc::new(identity);
    let mut client = signal(&args.server, identity.clone()).await?;
    let code = OneTimeCode::draw(client.routing_number(), &mut OsRng);
    let mut host = AttendedHost::new(code, &Offer::default(), Instant::now());
    // Machine-readable: tests read this line. The code is secret; it goes only to the
    // terminal of the person who asked for it, never to the log.
    println!("code: {}", host.code().display().as_str());
    println!(
        "Type it on the other device with `sealdesk pair connect`. It expires in {} minutes \
         (at {} UTC), lets one device pair and may be tried {MAX_ATTEMPTS} times.",
        CODE_LIFETIME.as_secs() / 60,
        utc(unix_now() + CODE_LIFETIME.as_secs())
    );
    println!("waiting for the other device…");

    let ctx = HostCtx {
        identity: &identity,
        label: &label,
    };
    let (pending, viewer, session) = wait_for_viewer(&mut client, &mut host, &ctx).await?;
    let peer = pending.peer().clone();
    println!("a device proved it knows the code.");
    print_peer(&peer, &identity.public());
    println!("  it may:          {permissions}");
    if !ask(args.yes).await? {
        send(&client, viewer, session, pending.decline()).await?;
        client.close(CLOSE_TIMEOUT).await;
        bail!(
            "declined: {:?} was not paired and nothing was stored",
            safe(&peer.label)
        );
    }
    let previous = files.update_registry(|reg| {
        let previous = reg.get(&peer.key).map(|d| d.revoked);
        reg.pair(PairedDevice {
            key: peer.key,
            label: stored_label(&peer),
            permissions,
            added_at: unix_now(),
            revoked: false,
        })?;
        Ok::<_, anyhow::Error>(previous)
    });
    let previous = match previous {
        Ok(p) => p,
        Err(e) => {
            // Nothing stored, so the viewer must not believe it is paired.
            send(&client, viewer, session, pending.decline()).await?;
            client.close(CLOSE_TIMEOUT).await;
            return Err(e.context("the pairing could not be stored, so the device was turned away"));
        }
    };
    let (_session, _sealed, accept) = pending.approve(permissions);
    if accept.is_empty() {
        bail!("could not seal the answer to the other device");
    }
    send(&client, viewer, session, accept).await?;
    client.close(CLOSE_TIMEOUT).await;
    match previous {
        Some(true) => println!(
            "re-activated the revoked pairing with {:?}",
            safe(&peer.label)
        ),
        Some(false) => println!("updated the pairing with {:?}", safe(&peer.label)),
        None => println!("paired with {:?}", safe(&peer.label)),
    }
    println!(
        "It may connect with: {permissions}. `sealdesk devices list` shows all paired devices."
    );
    Ok(())
}

/// Asks the host user (or not, with `--yes`). End of input counts as no.
async fn ask(yes: bool) -> anyhow::Result<bool> {
    if yes {
        println!("Allow and remember this device? [y/N] yes (--yes)");
        return Ok(true);
    }
    print!("Allow and remember this device? [y/N] ");
    std::io::stdout()
        .flush()
        .context("cannot write to the terminal")?;
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .context("cannot read the answer")?
    .context("cannot read the answer")?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

struct HostCtx<'a> {
    identity: &'a IdentityKey,
    label: &'a str,
}

/// The run in flight: who started it, in which session, and its state.
struct InFlight {
    from: RoutingNumber,
    session: SessionId,
    state: ExpectA3,
}

/// Serves the code until a viewer completes A1–A3. Failed runs are reported in the
/// handshake's words and the host keeps waiting until the code expires or is used up.
async fn wait_for_viewer(
    client: &mut SignalClient,
    host: &mut AttendedHost,
    ctx: &HostCtx<'_>,
) -> anyhow::Result<(PendingConsent, RoutingNumber, SessionId)> {
    let mut run: Option<InFlight> = None;
    loop {
        let now = Instant::now();
        if run.is_some() && now >= host.poll_timeout() {
            if let Some(r) = run.take() {
                host.abandon(r.state);
                println!(
                    "the device at {} stopped answering; {} left",
                    r.from.grouped(),
                    attempts_text(host.attempts_left())
                );
            }
        }
        if host.is_finished(now) {
            let e = if now >= host.expires_at() {
                HandshakeError::CodeExpired
            } else {
                HandshakeError::CodeExhausted
            };
            bail!(e);
        }
        let deadline = tokio::time::Instant::from_std(host.poll_timeout());
        let event = match tokio::time::timeout_at(deadline, client.next_event()).await {
            Err(_) => continue,
            Ok(None) => bail!("the connection to the signaling server ended"),
            Ok(Some(event)) => event,
        };
        let (from, session, body) = match event {
            SignalEvent::Envelope {
                from,
                session,
                body,
            } => (from, session, body),
            other => {
                server_event(other)?;
                continue;
            }
        };
        let now = Instant::now();
        match messages::decode(body.as_bytes()) {
            Ok(Message::A1(_)) => {
                let a1 = host.handle_a1(
                    now,
                    body.as_bytes(),
                    ctx.identity,
                    ctx.label,
                    no_dtls_yet(),
                    &mut OsRng,
                );
                match a1 {
                    Ok((state, a2)) => {
                        if let Err(e) = send(client, from, session, a2).await {
                            host.abandon(state);
                            println!("could not answer {}: {e:#}", from.grouped());
                            continue;
                        }
                        println!("the device at {} is trying the code…", from.grouped());
                        run = Some(InFlight {
                            from,
                            session,
                            state,
                        });
                    }
                    Err(e) => {
                        println!("refused an attempt from {}: {e}", from.grouped());
                        // Say why, so the other side need not wait for its timeout.
                        let _ = send(client, from, session, e.abort_message()).await;
                    }
                }
            }
            Ok(Message::A3(_)) => match run.take() {
                Some(r) if r.from == from && r.session == session => {
                    match host.handle_a3(now, r.state, body.as_bytes()) {
                        Ok(pending) => return Ok((pending, from, session)),
                        Err(e) => println!("{e}"),
                    }
                }
                other => {
                    tracing::debug!(from = %from, "A3 for no run in flight; ignored");
                    run = other;
                }
            },
            Ok(Message::Abort(_)) => match run.take() {
                Some(r) if r.from == from && r.session == session => {
                    match host.handle_abort(&r.state, body.as_bytes()) {
                        // Its own line, in the handshake's words (as for a failed A3).
                        Some(said) => println!("{said}"),
                        None => run = Some(r),
                    }
                }
                other => run = other,
            },
            // Anything else (another kind of message, or bytes that do not parse) is not
            // for this code: ignore it, as anyone can send us envelopes.
            _ => tracing::debug!(from = %from, "ignored an envelope that is not A1 or A3"),
        }
    }
}

fn attempts_text(n: u8) -> String {
    match n {
        1 => "1 attempt".to_owned(),
        n => format!("{n} attempts"),
    }
}

/// Reports a signaling event that is not an envelope; fails if the client stopped for good.
fn server_event(event: SignalEvent) -> anyhow::Result<()> {
    match event {
        SignalEvent::Disconnected {
            reason,
            retry_in: None,
        } => bail!("lost the signaling server: {reason}"),
        SignalEvent::Disconnected {
            reason,
            retry_in: Some(d),
        } => println!(
            "lost the signaling server ({reason}); reconnecting in {:.1} s",
            d.as_secs_f32()
        ),
        SignalEvent::Error { code, message, .. } => println!(
            "the signaling server could not deliver a message ({}): {message}",
            code.as_str()
        ),
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Viewer

async fn connect(mut args: ConnectArgs, data_dir: Option<&Path>) -> anyhow::Result<()> {
    let typed = Zeroizing::new(if args.code.is_empty() {
        prompt_code().await?
    } else {
        args.code.join(" ")
    });
    args.code.iter_mut().for_each(Zeroize::zeroize);
    let code = OneTimeCode::parse(&typed).map_err(|e| anyhow!(e))?;
    drop(typed);
    let routing = code.routing;
    let dir = store::resolve_data_dir(data_dir)?;
    let (identity, _) = store::load_or_create_identity(&dir)?;
    let files = TrustFiles::new(&dir);
    files.pinned()?;
    let label = own_label(args.label)?;
    let mut attempts = files.attempts(Instant::now(), SystemTime::now())?;
    let (expect_a2, a1) = viewer::start(
        &code,
        &Offer::default(),
        no_dtls_yet(),
        &mut attempts,
        Instant::now(),
        &mut OsRng,
    )?;
    drop(code);
    let identity = Arc::new(identity);
    let mut client = signal(&args.server, identity.clone()).await?;
    if client.routing_number() == routing {
        bail!("this is this device's own code; type it on the other device");
    }
    let peer = Peer::new(routing);
    send(&client, routing, peer.session, a1).await?;
    println!("asking host {}…", routing.grouped());

    let answer_by = Instant::now() + Duration::from_secs(args.timeout);
    let Some(a2) = peer
        .next(&mut client, &[TAG_A2, TAG_ABORT], answer_by)
        .await?
    else {
        bail!(
            "no answer from host {} within {} s: check the code, and that `sealdesk pair host` \
             is still running there and uses the same server",
            routing.grouped(),
            args.timeout
        );
    };
    // The host may refuse outright (code expired, busy, …): that is no failed run.
    if let Some(said) = expect_a2.check_abort(&a2) {
        client.close(CLOSE_TIMEOUT).await;
        bail!(said);
    }
    let result = expect_a2.handle_a2(&a2, &identity, &label, &mut attempts, Instant::now());
    let saved = files.save_attempts(&attempts, Instant::now(), SystemTime::now());
    let (waiting, a3) = match result {
        Ok(v) => v,
        Err(e) => {
            // Tell the host, so it ends this run now instead of holding the code busy
            // until the run times out. Best effort: our own error is what the user sees.
            let _ = send(&client, routing, peer.session, e.abort_message()).await;
            client.close(CLOSE_TIMEOUT).await;
            if let Err(s) = saved {
                eprintln!("warning: this failure could not be recorded: {s}");
            }
            bail!(e);
        }
    };
    saved?;
    let host_id = waiting.peer().clone();
    let pin = PinnedHost {
        routing,
        key: host_id.key,
        label: stored_label(&host_id),
        added_at: unix_now(),
    };
    // Refuse a different key for a pinned number before the host is asked anything.
    if let Err(e) = files.pinned()?.pin(pin.clone()) {
        let abort = Abort::new(AbortReason::Other).encode();
        let _ = send(&client, routing, peer.session, abort).await;
        client.close(CLOSE_TIMEOUT).await;
        bail!(e);
    }
    send(&client, routing, peer.session, a3).await?;
    println!("host {} proved it knows the code.", routing.grouped());
    print_peer(&host_id, &identity.public());
    println!(
        "waiting up to {} s for its user to approve…",
        args.approval_timeout
    );

    let approve_by = Instant::now() + Duration::from_secs(args.approval_timeout);
    let mut waiting = waiting;
    let (session, _sealed) = loop {
        let Some(bytes) = peer.next(&mut client, &[TAG_SEALED], approve_by).await? else {
            bail!(
                "host {} did not answer within {} s; nothing was stored",
                routing.grouped(),
                args.approval_timeout
            );
        };
        match waiting.handle(&bytes) {
            Ok(Ok(done)) => break done,
            Ok(Err(still)) => waiting = still,
            Err(e) => {
                client.close(CLOSE_TIMEOUT).await;
                bail!(e);
            }
        }
    };
    client.close(CLOSE_TIMEOUT).await;
    files.update_pinned(|pins| pins.pin(pin).map_err(|e| anyhow!(e)))?;
    println!(
        "paired with {:?} (host {}); it allows: {}",
        safe(&host_id.label),
        routing.grouped(),
        session.permissions
    );
    println!(
        "Compare the safety number above with the one the host shows; \
         `sealdesk devices verify {}` shows it again with a QR code.",
        routing.get()
    );
    Ok(())
}

pub(crate) async fn prompt_code() -> anyhow::Result<String> {
    print!("code shown on the host: ");
    std::io::stdout()
        .flush()
        .context("cannot write to the terminal")?;
    let mut line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .context("cannot read the code")?
    .context("cannot read the code")?;
    let typed = line.trim().to_owned();
    line.zeroize();
    Ok(typed)
}
