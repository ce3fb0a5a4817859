//! The sealdesk signaling server (`sealdesk server`).
//!
//! A `[shell]` crate: it owns the sockets, the clock, the OS RNG and the database
//! file, and drives the sans-IO protocol state machine of [`sealdesk_proto::server_conn`]
//! for each WebSocket connection. It introduces devices to each other and forwards
//! their sealed envelopes; it never parses or stores an envelope body. On the same
//! listener it keeps encrypted recording segments as opaque blobs for their owners
//! (`/blobs`, see [`sealdesk_proto::blob_auth`] and DESIGN.md §7).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sealdesk_server::{Server, ServerConfig};
//! let mut config = ServerConfig::default();
//! config.listen = "127.0.0.1:0".parse()?;
//! config.data_dir = Some("/tmp/sealdesk-example".into());
//! let server = Server::bind(config).await?;
//! println!("listening on {}", server.url());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use sealdesk_proto::rate::TokenBucket;
use sealdesk_proto::CloseReason;

mod blobs;
pub mod config;
mod hub;
mod metrics;
pub mod registry;
pub mod relay;
mod ws;

pub use blobs::BlobStoreError;
pub use config::{ConfigError, Limits, RelaySettings, ServerConfig};
pub use metrics::Metrics;
pub use registry::{Registry, RegistryError};

/// The server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The registry could not be opened.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The blob store could not be opened.
    #[error(transparent)]
    Blobs(#[from] BlobStoreError),
    /// No data directory was configured.
    #[error("no data directory configured (set --data-dir or SEALDESK_DATA_DIR)")]
    NoDataDir,
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("cannot load TLS certificate {cert} / key {key}: {source}")]
    Tls {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
    /// The relay could not start.
    #[error(transparent)]
    Relay(#[from] relay::RelayError),
    /// The relay's secret file could not be read or created.
    #[error("relay secret {path}: {source}")]
    RelaySecret {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The relay secret kept in the data directory (32 random bytes, mode 0600, created on first
/// start): credentials issued before a restart still allocate after it, so a session whose
/// relay restarted can allocate again and go on (DESIGN.md §6).
fn load_or_create_relay_secret(
    path: &std::path::Path,
) -> Result<relay::credentials::RelaySecret, ServerError> {
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    let fail = |source| ServerError::RelaySecret {
        path: path.to_owned(),
        source,
    };
    match std::fs::File::open(path) {
        Ok(file) => {
            let mut bytes = zeroize::Zeroizing::new(Vec::new());
            file.take(4096).read_to_end(&mut bytes).map_err(fail)?;
            relay::credentials::RelaySecret::new(std::mem::take(&mut *bytes)).ok_or_else(|| {
                fail(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "shorter than 16 bytes (delete it to have a new one made)",
                ))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = zeroize::Zeroizing::new(vec![0u8; 32]);
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(fail)?;
            file.write_all(&bytes).map_err(fail)?;
            file.sync_all().map_err(fail)?;
            relay::credentials::RelaySecret::new(std::mem::take(&mut *bytes)).ok_or_else(|| {
                fail(std::io::Error::other(
                    "a new secret of 32 bytes was refused",
                ))
            })
        }
        Err(e) => Err(fail(e)),
    }
}

/// What the server issues relay credentials for.
pub(crate) struct RelayIssuer {
    pub(crate) secret: relay::credentials::RelaySecret,
    pub(crate) urls: Vec<String>,
    pub(crate) ttl_secs: u64,
}

impl RelayIssuer {
    /// A credential for the device with routing number `number`.
    pub(crate) fn issue(
        &self,
        number: sealdesk_proto::RoutingNumber,
    ) -> sealdesk_proto::ServerMessage {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let c =
            relay::credentials::issue(&self.secret, &number.get().to_string(), now, self.ttl_secs);
        sealdesk_proto::ServerMessage::Relay {
            urls: self.urls.clone(),
            username: c.username,
            password: c.password.to_string(),
            expires_at: c.expires_at,
        }
    }
}

/// The `turn:` URL of a relay listening at `addr`.
pub fn turn_url(addr: SocketAddr) -> String {
    format!("turn:{addr}?transport=udp")
}

/// Per-IP new-connection rate limiter (token buckets, pruned when full).
struct IpLimiter {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl IpLimiter {
    const PRUNE_AT: usize = 65_536;

    fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let Ok(mut map) = self.buckets.lock() else {
            return false;
        };
        if map.len() >= Self::PRUNE_AT {
            // Full buckets carry no information; forgetting them changes nothing.
            map.retain(|_, b| !b.is_full(now));
        }
        if map.len() >= Self::PRUNE_AT {
            // Still full of active addresses: refuse new ones rather than grow.
            return map.get_mut(&ip).is_some_and(|b| b.try_take(now));
        }
        map.entry(ip)
            .or_insert_with(|| TokenBucket::new(now, self.rate, self.burst))
            .try_take(now)
    }
}

/// State shared by every connection.
pub(crate) struct AppState {
    config: ServerConfig,
    registry: Registry,
    hub: hub::Hub,
    metrics: Metrics,
    ip_limiter: IpLimiter,
    open: AtomicUsize,
    next_conn_id: AtomicU64,
    shutdown: tokio::sync::watch::Sender<bool>,
    relay: Option<RelayIssuer>,
    blobs: blobs::BlobService,
}

/// A bound, not yet running server.
pub struct Server {
    state: Arc<AppState>,
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    relay: Option<relay::Relay>,
    relay_stats: Option<Arc<relay::RelayStats>>,
    extra: Option<Router>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A handle that can read a running server's metrics and stop it.
#[derive(Clone)]
pub struct ServerHandle {
    state: Arc<AppState>,
}

impl ServerHandle {
    /// The server's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// Devices connected and registered now.
    pub fn devices_online(&self) -> usize {
        self.state.hub.online_count()
    }

    /// Asks the server to close every connection and stop.
    pub fn shutdown(&self) {
        let _ = self.state.shutdown.send(true);
    }
}

impl Server {
    /// Validates the configuration, opens the registry and binds the listen address.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        config.validate()?;
        let data_dir = config.data_dir.clone().ok_or(ServerError::NoDataDir)?;
        let registry = Registry::open(&data_dir.join("server").join("registry.sqlite3"))?;
        let blobs = blobs::BlobService::open(&data_dir.join("server"), &config.limits)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .map_err(|source| ServerError::Tls {
                        cert: cert.clone(),
                        key: key.clone(),
                        source,
                    })?,
            ),
            _ => None,
        };
        let addr = config.listen;
        let bind_err = |source| ServerError::Bind { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let limits = config.limits;
        let settings = &config.relay;
        let secret = match &settings.secret {
            Some(s) => relay::credentials::RelaySecret::new(s.as_bytes().to_vec())
                .ok_or_else(|| ConfigError::Invalid("relay.secret is too short".into()))?,
            None => load_or_create_relay_secret(&data_dir.join("server").join("relay.secret"))?,
        };
        let embedded = if settings.enabled {
            let mut rc =
                relay::RelayConfig::new(settings.listen_addr(config.listen), secret.clone());
            rc.relay_ip = settings.relay_ip;
            rc.quota_per_user = settings.quota_per_user;
            rc.max_allocations = settings.max_allocations;
            rc.bytes_per_sec = settings.bytes_per_sec;
            rc.allow_peers_for_tests = settings.allow_peers_for_tests.clone();
            rc.tcp = settings.tcp;
            Some(relay::Relay::bind(rc).await?)
        } else {
            None
        };
        let mut urls = settings.urls.clone();
        if let (Some(r), true) = (&embedded, urls.is_empty()) {
            urls.push(turn_url(r.local_addr()));
            if r.serves_tcp() {
                urls.push(format!("turn:{}?transport=tcp", r.local_addr()));
            }
        }
        let issuer = (!urls.is_empty()).then(|| RelayIssuer {
            secret,
            urls,
            ttl_secs: settings.ttl_secs,
        });
        let state = Arc::new(AppState {
            ip_limiter: IpLimiter {
                rate: limits.per_ip_connections_per_sec,
                burst: limits.per_ip_burst,
                buckets: Mutex::new(HashMap::new()),
            },
            config,
            registry,
            hub: hub::Hub::default(),
            metrics: Metrics::default(),
            open: AtomicUsize::new(0),
            next_conn_id: AtomicU64::new(1),
            shutdown,
            relay: issuer,
            blobs,
        });
        let relay_stats = embedded.as_ref().map(relay::Relay::stats);
        Ok(Self {
            state,
            listener,
            local_addr,
            tls,
            relay: embedded,
            relay_stats,
            extra: None,
        })
    }

    /// Serves these routes too (the binary adds the browser viewer's page this way). They
    /// must not use the server's own paths (`/ws`, `/healthz`, `/metrics`, `/blobs`).
    pub fn with_routes(mut self, routes: Router) -> Self {
        self.extra = Some(routes);
        self
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The WebSocket URL devices connect to.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.local_addr)
    }

    /// Where the embedded relay listens, if it runs.
    pub fn relay_addr(&self) -> Option<SocketAddr> {
        self.relay.as_ref().map(relay::Relay::local_addr)
    }

    /// Whether the embedded relay also takes TURN over TCP (on the same address and port).
    pub fn relay_serves_tcp(&self) -> bool {
        self.relay.as_ref().is_some_and(relay::Relay::serves_tcp)
    }

    /// The embedded relay's counters, if it runs.
    pub fn relay_stats(&self) -> Option<Arc<relay::RelayStats>> {
        self.relay_stats.clone()
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A handle for metrics and shutdown.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            state: self.state.clone(),
        }
    }

    /// Serves until `shutdown` completes or [`ServerHandle::shutdown`] is called;
    /// then closes every connection with code 1001.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let state = self.state.clone();
        let mut app = Router::new()
            .route("/ws", get(ws::handler))
            .route("/healthz", get(healthz))
            .merge(blobs::routes());
        if state.config.metrics {
            app = app.route("/metrics", get(metrics_handler));
        }
        let mut app = app.with_state(state.clone());
        if let Some(extra) = self.extra {
            app = app.merge(extra);
        }
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let handle = axum_server::Handle::new();
        let mut stop = state.shutdown.subscribe();
        let waiter = {
            let handle = handle.clone();
            let state = state.clone();
            async move {
                tokio::select! {
                    () = shutdown => {}
                    _ = stop.changed() => {}
                }
                let _ = state.shutdown.send(true);
                state.hub.kill_all(CloseReason::GoingAway);
                handle.graceful_shutdown(Some(Duration::from_secs(2)));
            }
        };
        let waiter = tokio::spawn(waiter);
        let relay_task = self.relay.map(|r| {
            let mut stop = state.shutdown.subscribe();
            tokio::spawn(r.run(async move {
                let _ = stop.wait_for(|s| *s).await;
            }))
        });
        let result = match self.tls {
            Some(tls) => {
                axum_server::from_tcp_rustls(self.listener, tls)?
                    .handle(handle)
                    .first_request_timeout(Duration::from_secs(10))
                    .serve(app)
                    .await
            }
            None => {
                axum_server::from_tcp(self.listener)?
                    .handle(handle)
                    .first_request_timeout(Duration::from_secs(10))
                    .serve(app)
                    .await
            }
        };
        waiter.abort();
        let _ = state.shutdown.send(true);
        if let Some(t) = relay_task {
            let _ = t.await;
        }
        result.map_err(ServerError::Io)
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let body = state
        .metrics
        .render(state.hub.online_count(), state.registry.len());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
}
