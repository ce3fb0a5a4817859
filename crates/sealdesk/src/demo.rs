//! `sealdesk demo`: the whole signaling path on one machine, no configuration.
//!
//! An embedded server on loopback and two devices ("host" and "viewer") that register by
//! proving their keys and see each other's presence; then the viewer pairs with the host
//! using a one-time code (SPAKE2 with key confirmation, DESIGN.md §4) with every
//! handshake message carried by the server, both remember each other, and the viewer
//! connects again unattended (SIGMA-I with the pinned keys) and exchanges sealed
//! signaling. The session issue turns it into a real remote desktop session.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use rand::rngs::OsRng;
use rand::RngCore as _;
use sealdesk_auth::attended::{self, host::AttendedHost};
use sealdesk_auth::code::{OneTimeCode, ViewerAttempts};
use sealdesk_auth::negotiate::Offer;
use sealdesk_auth::safety::SafetyNumber;
use sealdesk_auth::sdp::DtlsFingerprint;
use sealdesk_auth::sealed::SealedKind;
use sealdesk_auth::trust::{PairedDevice, Permissions, PinnedHost};
use sealdesk_auth::{unattended, IdentityKey};
use sealdesk_client::trust_store::TrustFiles;
use sealdesk_client::{store, ClientConfig, SignalClient, SignalEvent};
use sealdesk_proto::{Body, RoutingNumber, SessionId};
use sealdesk_server::{Server, ServerConfig};

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Keep the embedded server running after the self-check (until Ctrl-C).
    #[arg(long)]
    keep_running: bool,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: Some(dir.path().join("server")),
        ..ServerConfig::default()
    };
    let server = Server::bind(config).await?;
    let url = server.url();
    let handle = server.handle();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));
    println!("1. embedded signaling server listening on {url}");

    let host_key = device("host", &dir.path().join("host"))?;
    let viewer_key = device("viewer", &dir.path().join("viewer"))?;

    let mut host = SignalClient::connect(ClientConfig::new(&url), host_key.clone()).await?;
    let mut viewer = SignalClient::connect(ClientConfig::new(&url), viewer_key.clone()).await?;
    println!(
        "3. both registered by signing the server's challenge: host is {}, viewer is {}",
        host.routing_number().grouped(),
        viewer.routing_number().grouped()
    );

    viewer.watch(vec![host.routing_number()]).await?;
    let online = wait(&mut viewer, |e| match e {
        SignalEvent::Presence { online, .. } => Some(online.clone()),
        _ => None,
    })
    .await?;
    if !online.contains(&host.routing_number()) {
        bail!("viewer does not see the host online");
    }
    println!("4. viewer sees the host online");

    let mut sid = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut sid);
    let session = SessionId(sid);
    let (host_dir, viewer_dir) = (dir.path().join("host"), dir.path().join("viewer"));
    let mut pair = Link {
        host: &mut host,
        viewer: &mut viewer,
        session,
    };
    attended(&mut pair, &host_key, &viewer_key, &host_dir, &viewer_dir).await?;
    unattended(&mut pair, &host_key, &viewer_key, &host_dir, &viewer_dir).await?;

    let host_number = host.routing_number();
    drop(host);
    let offline = wait(&mut viewer, |e| match e {
        SignalEvent::Presence { offline, .. } => Some(offline.clone()),
        _ => None,
    })
    .await?;
    if !offline.contains(&host_number) {
        bail!("viewer did not see the host go offline");
    }
    println!("8. host disconnected; viewer saw it go offline");
    let m = handle.metrics();
    println!(
        "self-check passed: {} devices registered, {} envelopes routed, paired with a one-time code, \
         reconnected unattended",
        m.registrations(),
        m.envelopes_routed()
    );
    if args.keep_running {
        println!("server still running at {url}; press Ctrl-C to stop");
        let _ = tokio::signal::ctrl_c().await;
    }
    drop(viewer);
    let _ = stop_tx.send(());
    server_task.await??;
    Ok(())
}

fn device(name: &str, dir: &std::path::Path) -> anyhow::Result<Arc<IdentityKey>> {
    let (key, _) = store::load_or_create_identity(dir)?;
    println!(
        "2. {name} identity key created (mode 0600): fingerprint {}",
        key.fingerprint().short()
    );
    Ok(Arc::new(key))
}

/// Waits up to 5 s for an event `pick` accepts.
async fn wait<T>(
    client: &mut SignalClient,
    mut pick: impl FnMut(&SignalEvent) -> Option<T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = client.next_event().await {
            if let Some(t) = pick(&e) {
                return Ok(t);
            }
        }
        bail!("signaling client stopped")
    })
    .await
    .context("timed out waiting for the server")?
}

/// The two demo devices and the session id their envelopes carry.
struct Link<'a> {
    host: &'a mut SignalClient,
    viewer: &'a mut SignalClient,
    session: SessionId,
}

impl Link<'_> {
    async fn send_to_host(&mut self, bytes: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        let to = self.host.routing_number();
        self.viewer
            .send(to, self.session, Body::new(bytes)?)
            .await?;
        next_body(self.host, self.viewer.routing_number(), self.session).await
    }

    async fn send_to_viewer(&mut self, bytes: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        let to = self.viewer.routing_number();
        self.host.send(to, self.session, Body::new(bytes)?).await?;
        next_body(self.viewer, self.host.routing_number(), self.session).await
    }
}

/// The next envelope from `from` in `session`, as the server delivered it.
async fn next_body(
    client: &mut SignalClient,
    from: RoutingNumber,
    session: SessionId,
) -> anyhow::Result<Vec<u8>> {
    wait(client, |e| match e {
        SignalEvent::Envelope {
            from: f,
            session: s,
            body,
        } if *f == from && *s == session => Some(body.as_bytes().to_vec()),
        _ => None,
    })
    .await
}

/// A fresh stand-in for a DTLS certificate fingerprint (the session issue binds the real one).
fn dtls_fingerprint() -> DtlsFingerprint {
    let mut fp = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut fp);
    DtlsFingerprint(fp)
}

async fn attended(
    link: &mut Link<'_>,
    host_key: &IdentityKey,
    viewer_key: &IdentityKey,
    host_dir: &Path,
    viewer_dir: &Path,
) -> anyhow::Result<()> {
    let now = Instant::now();
    let code = OneTimeCode::draw(link.host.routing_number(), &mut OsRng);
    let mut host = AttendedHost::new(code, &Offer::default(), now);
    // What the host's user reads out; the viewer's user types it.
    let typed = OneTimeCode::parse(&host.code().display())?;
    println!(
        "5. host shows a one-time code {} · •••• •••• (8 secret digits never leave the two devices)",
        typed.routing.grouped()
    );
    let mut tries = ViewerAttempts::new();
    let (fp_h, fp_v) = (dtls_fingerprint(), dtls_fingerprint());
    let (viewer, a1) =
        attended::viewer::start(&typed, &Offer::default(), fp_v, &mut tries, now, &mut OsRng)?;
    let a1 = link.send_to_host(a1).await?;
    let (run, a2) = host.handle_a1(now, &a1, host_key, "demo host", fp_h, &mut OsRng)?;
    let a2 = link.send_to_viewer(a2).await?;
    let (waiting, a3) = viewer.handle_a2(&a2, viewer_key, "demo viewer", &mut tries, now)?;
    let a3 = link.send_to_host(a3).await?;
    let pending = host.handle_a3(now, run, &a3)?;
    // The host's user sees who is asking and agrees (the demo agrees for them).
    let asking = pending.peer().clone();
    let (host_session, _host_sealed, accept) = pending.approve(Permissions::ALL);
    let accept = link.send_to_viewer(accept).await?;
    let Ok((viewer_session, _viewer_sealed)) = waiting.handle(&accept)? else {
        bail!("the host's answer did not open");
    };
    if viewer_session.th_final != host_session.th_final || asking.key != viewer_key.public() {
        bail!("the two sides disagree after the attended handshake");
    }
    let number = SafetyNumber::of(&host_key.public(), &viewer_key.public());
    println!(
        "   paired through the server: both sides confirmed the code and each other's identity key"
    );
    println!(
        "   safety number (same on both devices): {}",
        number.grouped().replace('\n', " ")
    );

    // "Remember this device": both sides store the key learned inside the handshake.
    let added_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    TrustFiles::new(host_dir).update_registry(|reg| {
        reg.pair(PairedDevice {
            key: asking.key,
            label: "demo viewer".into(),
            permissions: Permissions::ALL,
            added_at,
            revoked: false,
        })
        .map_err(|e| anyhow::anyhow!(e))
    })?;
    TrustFiles::new(viewer_dir).update_pinned(|pins| {
        pins.pin(PinnedHost {
            routing: link.host.routing_number(),
            key: viewer_session.peer.key,
            label: "demo host".into(),
            added_at,
        })
        .map_err(|e| anyhow::anyhow!(e))
    })?;
    println!("   both remembered each other (pairing registry and pinned host, mode 0600)");
    Ok(())
}

async fn unattended(
    link: &mut Link<'_>,
    host_key: &IdentityKey,
    viewer_key: &IdentityKey,
    host_dir: &Path,
    viewer_dir: &Path,
) -> anyhow::Result<()> {
    let pins = TrustFiles::new(viewer_dir).pinned()?;
    let pin = pins
        .get(link.host.routing_number())
        .context("the viewer has no pin for the host")?
        .clone();
    let registry = TrustFiles::new(host_dir).registry()?;
    let (fp_h, fp_v) = (dtls_fingerprint(), dtls_fingerprint());
    let offer = Offer::default();
    let (viewer, b1) = unattended::viewer::start(&pin, &offer, fp_v, &mut OsRng);
    let b1 = link.send_to_host(b1).await?;
    let info = unattended::host::HostInfo {
        routing: link.host.routing_number(),
        identity: host_key,
        label: "demo host",
        offer: &offer,
    };
    let (run, b2) = unattended::host::handle_b1(info, &b1, fp_h, &mut OsRng)?;
    let b2 = link.send_to_viewer(b2).await?;
    let want = Permissions::VIEW.union(Permissions::INPUT);
    let (waiting, b3) = viewer.handle_b2(&b2, viewer_key, "demo viewer", want)?;
    let b3 = link.send_to_host(b3).await?;
    let (host_session, mut host_sealed, accept) = run
        .handle_b3(&b3, &registry)
        .map_err(|r| anyhow::anyhow!(r.error))?;
    let accept = link.send_to_viewer(accept).await?;
    let Ok((viewer_session, mut viewer_sealed)) = waiting.handle(&accept)? else {
        bail!("the host's answer did not open");
    };
    if viewer_session.th_final != host_session.th_final {
        bail!("the two sides disagree after the unattended handshake");
    }
    println!(
        "6. viewer reconnected unattended: host checked its pairing registry, viewer its pinned key; granted {}",
        viewer_session.permissions
    );

    // Sealed signaling: an SDP offer and answer carrying the authenticated fingerprints.
    let sdp = |fp: &DtlsFingerprint, setup: &str| {
        format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
             a=fingerprint:sha-256 {}\r\na=setup:{setup}\r\n",
            fp.to_sdp()
        )
    };
    let offer = viewer_sealed.seal(SealedKind::Offer, sdp(&fp_v, "actpass").as_bytes())?;
    let offer = link.send_to_host(offer).await?;
    host_sealed.open(&offer)?;
    let answer = host_sealed.seal(SealedKind::Answer, sdp(&fp_h, "active").as_bytes())?;
    let answer = link.send_to_viewer(answer).await?;
    viewer_sealed.open(&answer)?;
    println!(
        "7. SDP offer and answer sealed end to end; each carried exactly the DTLS fingerprint the handshake authenticated"
    );
    Ok(())
}
