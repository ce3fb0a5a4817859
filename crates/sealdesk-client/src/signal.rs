//! The async signaling client that hosts and viewers use.
//!
//! [`SignalClient::connect`] opens a WebSocket (`ws://` or `wss://`), registers the
//! device by signing the server's challenge, and returns once the registration is
//! acknowledged. A background task then keeps the connection: it pings every 30 s,
//! delivers envelopes and presence as [`SignalEvent`]s, and after a drop reconnects
//! with jittered exponential backoff, re-registering and re-sending the watch set.
//! Close reasons that retrying cannot fix (bad signature, unsupported version,
//! replaced by another connection of the same device) end the client instead.
//!
//! The server is untrusted: everything it sends is decoded into `Result`s by
//! [`sealdesk_proto::client_conn::ClientConn`], and messages are size-limited.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use sealdesk_auth::IdentityKey;
use sealdesk_proto::client_conn::{ClientConn, ClientError, ClientEvent, ClientOutput};
use sealdesk_proto::limits::MAX_MESSAGE_BYTES;
use sealdesk_proto::{Body, ClientMessage, CloseReason, ErrorCode, RoutingNumber, SessionId};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::backoff::Backoff;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How to reach the signaling server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `ws://host:port/ws` or `wss://host:port/ws`.
    pub url: String,
    /// A PEM file of extra CA certificates to trust for `wss://` (e.g. a self-signed
    /// server); the system's roots are always trusted too.
    pub extra_ca_pem: Option<PathBuf>,
    /// Local address to connect from (tests and benchmarks on loopback).
    pub local_ip: Option<IpAddr>,
    /// How often to ping the server.
    pub ping_interval: Duration,
    /// Time allowed for connecting and registering.
    pub connect_timeout: Duration,
    /// Reconnect after a drop.
    pub reconnect: bool,
    /// Delays between reconnection attempts.
    pub backoff: Backoff,
    /// Sees every message exchanged with the server and may replace what arrives
    /// (`sealdesk audit` observes the server's view, and plays a malicious server, with it).
    pub tap: Option<Tap>,
}

/// Every text message on the signaling connection, as the server sends and receives it
/// (after TLS, before any parsing). Runs inline on the connection's task: keep it quick.
pub trait SignalTap: Send + Sync + 'static {
    /// A message this device sent.
    fn sent(&self, text: &str);
    /// A message from the server; `Some` replaces it before this device parses it.
    fn received(&self, text: &str) -> Option<String>;
}

/// A shared [`SignalTap`].
#[derive(Clone)]
pub struct Tap(pub Arc<dyn SignalTap>);

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap(..)")
    }
}

/// Sends one message, showing it to the tap first.
async fn send_msg(
    ws: &mut Ws,
    tap: Option<&Tap>,
    msg: &ClientMessage,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let text = msg.encode();
    if let Some(tap) = tap {
        tap.0.sent(&text);
    }
    ws.send(Message::text(text)).await
}

/// Feeds one received text message to the state machine, through the tap.
fn receive_text(
    proto: &mut ClientConn,
    tap: Option<&Tap>,
    text: &str,
    identity: &IdentityKey,
) -> Result<(), ClientError> {
    match tap.and_then(|tap| tap.0.received(text)) {
        Some(replaced) => proto.handle_text(&replaced, |b| identity.sign(b)),
        None => proto.handle_text(text, |b| identity.sign(b)),
    }
}

impl ClientConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            extra_ca_pem: None,
            local_ip: None,
            ping_interval: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            reconnect: true,
            backoff: Backoff::default(),
            tap: None,
        }
    }
}

/// Something that happened on the signaling connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalEvent {
    /// (Re-)registered with this routing number.
    Registered(RoutingNumber),
    /// An envelope arrived.
    Envelope {
        /// The authenticated sender.
        from: RoutingNumber,
        /// The session.
        session: SessionId,
        /// The opaque body.
        body: Body,
    },
    /// Presence of watched numbers.
    Presence {
        /// Now online.
        online: Vec<RoutingNumber>,
        /// Now offline.
        offline: Vec<RoutingNumber>,
    },
    /// A TURN relay credential the server issued.
    Relay(RelayCredential),
    /// A send failed.
    Error {
        /// The id returned by [`SignalClient::send`].
        id: Option<u64>,
        /// Why.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The connection dropped; `retry_in` says when the next attempt is (`None`: the
    /// client has stopped for good).
    Disconnected {
        /// What happened.
        reason: String,
        /// When the client tries again.
        retry_in: Option<Duration>,
    },
}

/// A TURN relay credential (TURN REST scheme), valid until `expires_at`.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayCredential {
    /// `turn:host:port?transport=udp` URLs.
    pub urls: Vec<String>,
    /// The TURN username.
    pub username: String,
    /// The TURN password.
    pub password: zeroize::Zeroizing<String>,
    /// Unix seconds.
    pub expires_at: u64,
}

impl std::fmt::Debug for RelayCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayCredential")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The signaling connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// The URL is not a `ws://` or `wss://` URL with a host.
    #[error("invalid signaling URL {0:?}: expected ws://host:port/ws or wss://host:port/ws")]
    Url(String),
    /// TCP, TLS or WebSocket connection failed.
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The extra CA file could not be used.
    #[error("cannot load CA certificates from {path}: {message}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Connecting and registering took too long.
    #[error("no registration within {0:?}")]
    Timeout(Duration),
    /// The server closed the connection.
    #[error("server closed the connection: {code} {reason}")]
    Closed {
        /// The WebSocket close code.
        code: u16,
        /// The server's reason.
        reason: String,
    },
    /// The connection dropped without a close frame.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The server broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ClientError),
    /// Not connected right now (reconnecting) or stopped.
    #[error("not connected to the signaling server")]
    NotConnected,
}

impl SignalError {
    /// Whether reconnecting could help.
    fn retryable(&self) -> bool {
        match self {
            Self::Closed { code, .. } => {
                CloseReason::from_code(*code).is_none_or(CloseReason::should_reconnect)
            }
            Self::Url(_) | Self::Ca { .. } | Self::Protocol(ClientError::NoCommonVersion(_)) => {
                false
            }
            _ => true,
        }
    }
}

#[derive(Debug)]
enum Command {
    Send {
        id: u64,
        to: RoutingNumber,
        session: SessionId,
        body: Body,
    },
    Watch(Vec<RoutingNumber>),
    Relay,
    /// Close the connection cleanly after everything queued before, then stop.
    Close(oneshot::Sender<()>),
}

/// How long a clean close waits for the server to answer our close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// A registered signaling connection that reconnects by itself. Dropping it
/// disconnects.
#[derive(Debug)]
pub struct SignalClient {
    cmds: mpsc::Sender<Command>,
    events: mpsc::Receiver<SignalEvent>,
    state: watch::Receiver<Option<RoutingNumber>>,
    number: RoutingNumber,
    next_id: std::sync::atomic::AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SignalClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SignalClient {
    /// Connects, registers `identity`, and returns once the server has durably
    /// acknowledged the registration. Fails if the first attempt fails.
    pub async fn connect(
        config: ClientConfig,
        identity: Arc<IdentityKey>,
    ) -> Result<Self, SignalError> {
        let tls = tls_config(&config)?;
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let (ev_tx, ev_rx) = mpsc::channel(1024);
        let (state_tx, state_rx) = watch::channel(None);
        let (first_tx, first_rx) = oneshot::channel();
        let task = tokio::spawn(
            Task {
                config,
                tls,
                identity,
                cmds: cmd_rx,
                events: ev_tx,
                state: state_tx,
                first: Some(first_tx),
                watching: Vec::new(),
                closed: false,
            }
            .run(),
        );
        let number = match first_rx.await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(SignalError::NotConnected),
        };
        Ok(Self {
            cmds: cmd_tx,
            events: ev_rx,
            state: state_rx,
            number,
            next_id: std::sync::atomic::AtomicU64::new(1),
            task,
        })
    }

    /// This device's routing number.
    pub fn routing_number(&self) -> RoutingNumber {
        self.number
    }

    /// Whether the connection is up and registered right now.
    pub fn is_connected(&self) -> bool {
        self.state.borrow().is_some()
    }

    /// The next event; `None` once the client has stopped for good.
    pub async fn next_event(&mut self) -> Option<SignalEvent> {
        self.events.recv().await
    }

    /// Sends an envelope; returns its id (echoed in a [`SignalEvent::Error`] if it
    /// cannot be delivered). Fails at once while disconnected.
    pub async fn send(
        &self,
        to: RoutingNumber,
        session: SessionId,
        body: Body,
    ) -> Result<u64, SignalError> {
        if !self.is_connected() {
            return Err(SignalError::NotConnected);
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.cmds
            .send(Command::Send {
                id,
                to,
                session,
                body,
            })
            .await
            .map_err(|_| SignalError::NotConnected)?;
        Ok(id)
    }

    /// Sends everything queued by [`SignalClient::send`], closes the WebSocket cleanly and
    /// stops the client. Waits at most `timeout`. Use it before exiting right after a send:
    /// dropping the client instead may cut the connection before queued envelopes are out.
    pub async fn close(self, timeout: Duration) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.cmds.send(Command::Close(done_tx)).await.is_ok() {
            // Err: the task stopped (or dropped the command while reconnecting): nothing to wait for.
            let _ = tokio::time::timeout(timeout, done_rx).await;
        }
    }

    /// Asks for a TURN relay credential; it arrives as [`SignalEvent::Relay`] (or an error
    /// `no_relay` when the server has none).
    pub async fn request_relay(&self) -> Result<(), SignalError> {
        self.cmds
            .send(Command::Relay)
            .await
            .map_err(|_| SignalError::NotConnected)
    }

    /// Follows the presence of `numbers` (replacing any earlier set; kept across reconnects).
    pub async fn watch(&self, numbers: Vec<RoutingNumber>) -> Result<(), SignalError> {
        self.cmds
            .send(Command::Watch(numbers))
            .await
            .map_err(|_| SignalError::NotConnected)
    }
}

struct Task {
    config: ClientConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    identity: Arc<IdentityKey>,
    cmds: mpsc::Receiver<Command>,
    events: mpsc::Sender<SignalEvent>,
    state: watch::Sender<Option<RoutingNumber>>,
    first: Option<oneshot::Sender<Result<RoutingNumber, SignalError>>>,
    watching: Vec<RoutingNumber>,
    /// The application asked to close: do not reconnect.
    closed: bool,
}

impl Task {
    async fn run(mut self) {
        let mut backoff = self.config.backoff.clone();
        loop {
            let err = self.session(&mut backoff).await;
            let _ = self.state.send(None);
            if self.closed {
                return;
            }
            if let Some(first) = self.first.take() {
                let _ = first.send(Err(err));
                return;
            }
            if self.events.is_closed() {
                // The application dropped the client: stop quietly.
                return;
            }
            let retry = self.config.reconnect && err.retryable();
            let retry_in = retry.then(|| backoff.next_delay(&mut rand::rngs::OsRng));
            tracing::info!(error = %err, ?retry_in, "signaling connection lost");
            let ev = SignalEvent::Disconnected {
                reason: err.to_string(),
                retry_in,
            };
            if self.events.send(ev).await.is_err() {
                return;
            }
            let Some(delay) = retry_in else { return };
            tokio::time::sleep(delay).await;
            // Commands queued while disconnected are stale; drop them.
            while self.cmds.try_recv().is_ok() {}
        }
    }

    /// One connection, from TCP connect to its end. Returns why it ended.
    async fn session(&mut self, backoff: &mut Backoff) -> SignalError {
        let timeout = self.config.connect_timeout;
        let (mut ws, mut proto) =
            match tokio::time::timeout(timeout, self.open_and_register()).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return e,
                Err(_) => return SignalError::Timeout(timeout),
            };
        backoff.reset();
        if !self.watching.is_empty() {
            let msg = ClientMessage::Watch {
                numbers: self.watching.clone(),
            };
            if let Err(e) = send_msg(&mut ws, self.config.tap.as_ref(), &msg).await {
                return SignalError::Lost(e.to_string());
            }
        }
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                frame = ws.next() => {
                    if let Err(e) = self.handle_frame(&mut ws, &mut proto, frame).await {
                        return e;
                    }
                }
                cmd = self.cmds.recv() => {
                    let msg = match cmd {
                        None => return SignalError::NotConnected,
                        Some(Command::Send { id, to, session, body }) => ClientMessage::Send { id, to, session, body },
                        Some(Command::Watch(numbers)) => {
                            self.watching = numbers.clone();
                            ClientMessage::Watch { numbers }
                        }
                        Some(Command::Relay) => ClientMessage::Relay {},
                        Some(Command::Close(done)) => {
                            self.closed = true;
                            close_cleanly(&mut ws).await;
                            let _ = done.send(());
                            return SignalError::NotConnected;
                        }
                    };
                    if let Err(e) = send_msg(&mut ws, self.config.tap.as_ref(), &msg).await {
                        return SignalError::Lost(e.to_string());
                    }
                }
                _ = ping.tick() => {
                    if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                        return SignalError::Lost(e.to_string());
                    }
                }
            }
        }
    }

    async fn open_and_register(&mut self) -> Result<(Ws, ClientConn), SignalError> {
        let (ws, origin) = open(&self.config, self.tls.clone()).await?;
        let (ws, proto) = register(ws, &self.identity, origin, self.config.tap.as_ref()).await?;
        if let Some(n) = proto.routing_number() {
            let _ = self.state.send(Some(n));
            if let Some(first) = self.first.take() {
                let _ = first.send(Ok(n));
            }
            if self.events.send(SignalEvent::Registered(n)).await.is_err() {
                return Err(SignalError::NotConnected);
            }
        }
        Ok((ws, proto))
    }

    /// Feeds one frame to the state machine and carries out what it asks.
    async fn handle_frame(
        &mut self,
        ws: &mut Ws,
        proto: &mut ClientConn,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), SignalError> {
        match frame {
            None => return Err(SignalError::Lost("connection closed".into())),
            Some(Err(e)) => return Err(SignalError::Lost(e.to_string())),
            Some(Ok(Message::Text(t))) => {
                receive_text(proto, self.config.tap.as_ref(), t.as_str(), &self.identity)?;
            }
            Some(Ok(Message::Close(frame))) => return Err(closed(frame)),
            Some(Ok(Message::Binary(_))) => {
                return Err(SignalError::Protocol(ClientError::Protocol(
                    "binary frame from server",
                )))
            }
            Some(Ok(_)) => {}
        }
        while let Some(out) = proto.poll_output() {
            match out {
                ClientOutput::Send(msg) => send_msg(ws, self.config.tap.as_ref(), &msg)
                    .await
                    .map_err(|e| SignalError::Lost(e.to_string()))?,
                ClientOutput::Event(ev) => {
                    let ev = match ev {
                        ClientEvent::Registered(n) => SignalEvent::Registered(n),
                        ClientEvent::Envelope {
                            from,
                            session,
                            body,
                        } => SignalEvent::Envelope {
                            from,
                            session,
                            body,
                        },
                        ClientEvent::Presence { online, offline } => {
                            SignalEvent::Presence { online, offline }
                        }
                        ClientEvent::Relay {
                            urls,
                            username,
                            password,
                            expires_at,
                        } => SignalEvent::Relay(RelayCredential {
                            urls,
                            username,
                            password: zeroize::Zeroizing::new(password),
                            expires_at,
                        }),
                        ClientEvent::Error { id, code, message } => {
                            SignalEvent::Error { id, code, message }
                        }
                        _ => continue,
                    };
                    // Blocks when the application stops reading: backpressure reaches
                    // the server, which disconnects us rather than buffer without bound.
                    self.events
                        .send(ev)
                        .await
                        .map_err(|_| SignalError::NotConnected)?;
                }
            }
        }
        Ok(())
    }
}

/// Sends a close frame (after everything written before it) and waits briefly for the
/// server's answer, so the server reads all our frames before the TCP connection ends.
async fn close_cleanly(ws: &mut Ws) {
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        if ws.close(None).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// The WebSocket limits a client enforces on an untrusted server.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(2 * MAX_MESSAGE_BYTES)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

fn tls_config(config: &ClientConfig) -> Result<Option<Arc<rustls::ClientConfig>>, SignalError> {
    if !config.url.starts_with("wss://") {
        return Ok(None);
    }
    let roots =
        trusted_roots(config).map_err(|(path, message)| SignalError::Ca { path, message })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SignalError::Connect {
            url: config.url.clone(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(tls)))
}

/// The system's root certificates and the config's extra CA file: what the signaling client
/// and the blob client trust. An unusable CA file is (its path, what is wrong).
pub(crate) fn trusted_roots(
    config: &ClientConfig,
) -> Result<rustls::RootCertStore, (std::path::PathBuf, String)> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &config.extra_ca_pem {
        let ca_err = |message: String| (path.clone(), message);
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_err("no certificates in file".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
        }
    }
    Ok(roots)
}

/// The addresses a `ws://` or `wss://` URL names.
async fn resolve(
    url: &str,
    uri: &tokio_tungstenite::tungstenite::http::Uri,
) -> Result<Vec<SocketAddr>, SignalError> {
    let secure = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => return Err(SignalError::Url(url.to_owned())),
    };
    let host = uri
        .host()
        .ok_or_else(|| SignalError::Url(url.to_owned()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| SignalError::Connect {
            url: url.to_owned(),
            message: e.to_string(),
        })?
        .collect();
    Ok(addrs)
}

/// The local address this machine sends from to reach the signaling server at `url`: the
/// one its WebRTC host candidate should use (a loopback server gives a loopback address).
/// Nothing is sent: a connected UDP socket only asks the routing table.
pub async fn local_ip_towards(url: &str) -> Result<IpAddr, SignalError> {
    let request = url
        .into_client_request()
        .map_err(|_| SignalError::Url(url.to_owned()))?;
    let addrs = resolve(url, request.uri()).await?;
    let mut last = String::from("no addresses");
    for addr in addrs {
        let any: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let probe = std::net::UdpSocket::bind(any).and_then(|s| {
            s.connect(addr)?;
            s.local_addr()
        });
        match probe {
            Ok(local) => return Ok(local.ip()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(SignalError::Connect {
        url: url.to_owned(),
        message: format!("no route to the server ({last})"),
    })
}

/// Opens the TCP (and TLS) connection and performs the WebSocket handshake.
/// Opens the WebSocket. Also returns the origin the registration signature must cover: the
/// `Host` this request sends, which is what the server sees.
async fn open(
    config: &ClientConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<(Ws, String), SignalError> {
    let url = &config.url;
    let request = url
        .as_str()
        .into_client_request()
        .map_err(|_| SignalError::Url(url.clone()))?;
    let origin = request
        .headers()
        .get("Host")
        .and_then(|h| h.to_str().ok())
        .and_then(sealdesk_proto::signaling::normalize_origin)
        .ok_or_else(|| SignalError::Url(url.clone()))?;
    let addrs = resolve(url, request.uri()).await?;
    let connect_err = |message: String| SignalError::Connect {
        url: url.clone(),
        message,
    };
    let mut last = String::from("no addresses");
    let mut stream = None;
    for addr in addrs {
        match connect_tcp(addr, config.local_ip).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    let stream = stream.ok_or_else(|| connect_err(last))?;
    let connector = match tls {
        Some(tls) => Connector::Rustls(tls),
        None => Connector::Plain,
    };
    let (ws, _response) = tokio_tungstenite::client_async_tls_with_config(
        request,
        stream,
        Some(ws_config()),
        Some(connector),
    )
    .await
    .map_err(|e| connect_err(e.to_string()))?;
    Ok((ws, origin))
}

/// A TCP connection to `addr` (from `local_ip` if given), without Nagle's delay: the
/// signaling and the blob clients' transport.
pub(crate) async fn connect_tcp(
    addr: SocketAddr,
    local_ip: Option<IpAddr>,
) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local_ip {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A raw, registered WebSocket, for tools that drive the protocol themselves
/// (benchmarks holding many idle devices, tests that send malformed input).
pub type RawSocket = Ws;

/// Connects and registers once, without a background task or reconnection.
pub async fn connect_raw(
    config: &ClientConfig,
    identity: &IdentityKey,
) -> Result<(RawSocket, RoutingNumber), SignalError> {
    let tls = tls_config(config)?;
    let (ws, proto) = tokio::time::timeout(config.connect_timeout, async {
        let (ws, origin) = open(config, tls).await?;
        register(ws, identity, origin, config.tap.as_ref()).await
    })
    .await
    .map_err(|_| SignalError::Timeout(config.connect_timeout))??;
    let n = proto.routing_number().ok_or(SignalError::NotConnected)?;
    Ok((ws, n))
}

/// Runs the registration exchange on a fresh socket. On success the state machine
/// is registered and has queued the `Registered` event.
async fn register(
    mut ws: Ws,
    identity: &IdentityKey,
    origin: String,
    tap: Option<&Tap>,
) -> Result<(Ws, ClientConn), SignalError> {
    let mut proto = ClientConn::new(identity.public(), origin);
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => receive_text(&mut proto, tap, t.as_str(), identity)?,
            Some(Ok(Message::Close(f))) => return Err(closed(f)),
            Some(Ok(Message::Binary(_))) => {
                return Err(ClientError::Protocol("binary frame from server").into())
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(SignalError::Lost(e.to_string())),
            None => return Err(SignalError::Lost("connection closed".into())),
        }
        while let Some(out) = proto.poll_output() {
            match out {
                ClientOutput::Send(msg) => send_msg(&mut ws, tap, &msg)
                    .await
                    .map_err(|e| SignalError::Lost(e.to_string()))?,
                ClientOutput::Event(ClientEvent::Registered(_)) => return Ok((ws, proto)),
                ClientOutput::Event(_) => {}
            }
        }
    }
}

fn closed(frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> SignalError {
    match frame {
        Some(f) => SignalError::Closed {
            code: f.code.into(),
            reason: f.reason.as_str().to_owned(),
        },
        None => SignalError::Closed {
            code: 1005,
            reason: String::new(),
        },
    }
}
