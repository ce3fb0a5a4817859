//! `sealdesk demo`: the whole signaling path on one machine, no configuration.
//!
//! Today this is the foundation's self-check: an embedded server on loopback and two
//! devices ("host" and "viewer") that register by proving their keys, see each other's
//! presence, and exchange envelopes. The session issue turns it into a real remote
//! desktop session.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use rand::RngCore as _;
use sealdesk_auth::IdentityKey;
use sealdesk_client::{store, ClientConfig, SignalClient, SignalEvent};
use sealdesk_proto::{Body, SessionId};
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

    let mut host = SignalClient::connect(ClientConfig::new(&url), host_key).await?;
    let mut viewer = SignalClient::connect(ClientConfig::new(&url), viewer_key).await?;
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
    let ping = b"opaque sealed bytes (the session issue seals them end to end)".to_vec();
    viewer
        .send(host.routing_number(), session, Body::new(ping.clone())?)
        .await?;
    let (from, got) = wait(&mut host, |e| match e {
        SignalEvent::Envelope { from, body, .. } => Some((*from, body.clone())),
        _ => None,
    })
    .await?;
    if from != viewer.routing_number() || got.as_bytes() != ping {
        bail!("host received the wrong envelope");
    }
    host.send(from, session, Body::new(b"reply".to_vec())?)
        .await?;
    wait(&mut viewer, |e| match e {
        SignalEvent::Envelope { body, .. } if body.as_bytes() == b"reply" => Some(()),
        _ => None,
    })
    .await?;
    println!("5. envelopes delivered both ways; the server forwarded them without reading them");

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
    println!("6. host disconnected; viewer saw it go offline");
    let m = handle.metrics();
    println!(
        "self-check passed: {} devices registered, {} envelopes routed",
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
