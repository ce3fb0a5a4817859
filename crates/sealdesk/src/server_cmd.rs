//! `sealdesk server`: configuration layering (defaults < TOML file < environment <
//! flags) and start-up messages.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use sealdesk_server::{Server, ServerConfig};

/// Flags of `sealdesk server`. Each also reads a `SEALDESK_*` environment variable.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Address to listen on [default: 127.0.0.1:8443].
    #[arg(long, env = "SEALDESK_LISTEN", value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,

    /// TOML configuration file (see `deploy/server.example.toml`).
    #[arg(long, env = "SEALDESK_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// PEM certificate chain: serve wss:// (needs --tls-key).
    #[arg(long, env = "SEALDESK_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "SEALDESK_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// The name devices use to reach this server, `host[:port]` as in their URL. Needed
    /// only behind a proxy that rewrites the Host header: registration signatures cover it.
    #[arg(long, env = "SEALDESK_PUBLIC_ORIGIN", value_name = "HOST[:PORT]")]
    public_origin: Option<String>,

    /// Maximum open connections.
    #[arg(long, env = "SEALDESK_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,

    /// Do not serve /metrics.
    #[arg(long, env = "SEALDESK_NO_METRICS")]
    no_metrics: bool,

    /// Run no TURN relay (devices then need a direct path, or the relays in the config's
    /// `relay.urls`).
    #[arg(long, env = "SEALDESK_NO_RELAY")]
    no_relay: bool,

    /// Where the embedded TURN relay listens (UDP) [default: the listen IP, port 3478].
    #[arg(long, env = "SEALDESK_RELAY_LISTEN", value_name = "ADDR:PORT")]
    relay_listen: Option<SocketAddr>,

    /// Also serve the browser viewer at `/`. Convenient, but the page is then code from this
    /// server, which could betray its users: hosts are told ("browser (served by the
    /// server)") and may refuse such viewers (`sealdesk host --deny-server-served-viewers`).
    #[arg(long, env = "SEALDESK_WEB_VIEWER")]
    web_viewer: bool,
}

impl ServerArgs {
    /// Defaults, then the file, then environment and flags (clap merged those two).
    fn into_config(self, data_dir: Option<PathBuf>) -> anyhow::Result<ServerConfig> {
        let mut config = match &self.config {
            Some(path) => ServerConfig::from_file(path)?,
            None => ServerConfig::default(),
        };
        if let Some(l) = self.listen {
            config.listen = l;
        }
        if self.tls_cert.is_some() {
            config.tls_cert = self.tls_cert;
        }
        if self.tls_key.is_some() {
            config.tls_key = self.tls_key;
        }
        if self.public_origin.is_some() {
            config.public_origin = self.public_origin;
        }
        if let Some(n) = self.max_connections {
            config.limits.max_connections = n;
        }
        if self.no_metrics {
            config.metrics = false;
        }
        if self.no_relay {
            config.relay.enabled = false;
        }
        if self.relay_listen.is_some() {
            config.relay.listen = self.relay_listen;
        }
        if data_dir.is_some() || config.data_dir.is_none() {
            config.data_dir = Some(sealdesk_client::store::resolve_data_dir(
                data_dir.as_deref(),
            )?);
        }
        Ok(config)
    }
}

pub(crate) async fn run(args: ServerArgs, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let web_viewer = args.web_viewer;
    let config = args.into_config(data_dir)?;
    let fds = crate::raise_fd_limit();
    let listen = config.listen;
    let data = config.data_dir.clone().unwrap_or_default();
    let mut server = Server::bind(config)
        .await
        .context("sealdesk server cannot start")?;
    if web_viewer {
        let page = crate::web::Page {
            server: None,
            served_by_server: true,
        };
        server = server.with_routes(crate::web::routes(&page)?);
    }
    if server.is_tls() {
        println!("sealdesk server: TLS enabled (wss://)");
    } else if listen.ip().is_loopback() {
        println!("sealdesk server: plain WebSocket (no TLS) on loopback");
    } else {
        println!(
            "sealdesk server: WARNING plain WebSocket (no TLS) on a non-loopback address; \
             use --tls-cert/--tls-key or put a TLS terminator in front"
        );
    }
    println!(
        "sealdesk server: data in {}, open-file limit {fds}",
        data.display()
    );
    match server.relay_addr() {
        Some(a) => {
            println!("sealdesk server: TURN relay on udp {a}");
            if server.relay_serves_tcp() {
                println!("sealdesk server: TURN relay also on tcp {a} (for UDP-blocked networks)");
            }
        }
        None => println!("sealdesk server: no embedded TURN relay"),
    }
    if web_viewer {
        let scheme = if server.is_tls() { "https" } else { "http" };
        println!(
            "sealdesk server: browser viewer at {scheme}://{}/ (served by this server: hosts \
             are told; bundle sha256:{})",
            server.local_addr(),
            crate::web::bundle_hash()
        );
    }
    // Machine-readable: tests and the bench read this line.
    println!("listening on {}", server.url());
    let shutdown = async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    server.run(shutdown).await?;
    println!("sealdesk server: stopped");
    Ok(())
}
