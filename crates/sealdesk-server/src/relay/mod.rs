//! The embedded TURN relay (RFC 8656 over UDP; DESIGN.md §6).
//!
//! When host and viewer have no direct path, their DTLS/SRTP packets go through a relay. It
//! forwards ciphertext it cannot open; what it must not become is an open proxy, or a way to
//! spend someone else's bandwidth. So:
//!
//! - only holders of a time-limited credential the signaling server issued get an allocation
//!   ([`credentials`]: TURN REST, at most an hour), at most [`RelayConfig::quota_per_user`] each;
//! - no permission, channel or datagram to a non-public address, in any IPv4-in-IPv6 form, or
//!   to the relay's own addresses ([`policy`]) — checked on the requests and again on every
//!   datagram about to leave a relayed socket; two clients of the same relay reach each other
//!   inside the relay, never through its host's other services;
//! - each allocation may move [`RelayConfig::bytes_per_sec`] each way.
//!
//! The TURN protocol itself is [`turn_server_proto`] (sans-IO); [`filter`] is the gatekeeper in
//! front of it; this module is the thin socket shell: one task owns the state machine, reader
//! tasks feed it datagrams through a bounded queue.

pub mod credentials;
pub mod filter;
pub mod policy;
/// TURN over TCP framing (shared with the TURN client in `sealdesk-rtc`).
pub use sealdesk_proto::turn_tcp as tcp;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use turn_server_proto::api::{
    SocketAllocateError, Transmit, TurnServerApi as _, TurnServerPollRet,
};
use turn_server_proto::server::TurnServer;
use turn_types::{AddressFamily, TransportType};

use self::credentials::RelaySecret;
use self::filter::{Gatekeeper, Refusal, Verdict};
use self::policy::PeerPolicy;

/// The realm relay credentials are for.
pub const REALM: &str = "sealdesk";
/// Datagrams waiting for the relay task; more are dropped (UDP may drop anyway).
const QUEUE: usize = 4096;
/// The largest datagram read.
const MAX_DATAGRAM: usize = 2048;

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where clients reach it (UDP).
    pub listen: SocketAddr,
    /// The address relayed sockets bind to (default: the listen address; required when that
    /// is unspecified, e.g. `0.0.0.0`).
    pub relay_ip: Option<IpAddr>,
    /// The secret credentials are checked against (shared with the signaling server).
    pub secret: RelaySecret,
    /// Allocations one credential may hold at once.
    pub quota_per_user: usize,
    /// Allocations the relay holds at most.
    pub max_allocations: usize,
    /// Bytes per second one allocation may relay each way (a second's worth may burst).
    pub bytes_per_sec: u64,
    /// Peers let through although they are not public — for tests in private network
    /// namespaces only; empty in every release configuration.
    pub allow_peers_for_tests: Vec<IpAddr>,
    /// Also accept TURN over TCP on the listen address and port (for networks that block
    /// UDP; the relayed leg stays UDP).
    pub tcp: bool,
    /// TCP connections held at most.
    pub max_tcp_connections: usize,
}

impl RelayConfig {
    /// A relay on `listen` with `secret` and the default limits: 4 allocations per
    /// credential, 1000 in all, 5 MB/s (40 Mbit/s) each way per allocation.
    pub fn new(listen: SocketAddr, secret: RelaySecret) -> Self {
        Self {
            listen,
            relay_ip: None,
            secret,
            quota_per_user: 4,
            max_allocations: 1000,
            bytes_per_sec: 5_000_000,
            allow_peers_for_tests: Vec::new(),
            tcp: true,
            max_tcp_connections: 1000,
        }
    }
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The listen address could not be bound.
    #[error("cannot listen for TURN on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The listen address is unspecified and no relay address was given.
    #[error("the relay listens on {0}: also give the address relayed sockets use (relay_ip)")]
    NoRelayIp(SocketAddr),
}

/// What the relay did, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Allocations now.
    pub allocations: AtomicU64,
    /// Allocations made in all.
    pub allocations_total: AtomicU64,
    /// Requests refused for their credentials (malformed, expired, anonymous).
    pub refused_credentials: AtomicU64,
    /// Allocations refused at the quota.
    pub refused_quota: AtomicU64,
    /// Permissions, channels and Send indications refused for their peer.
    pub refused_peers: AtomicU64,
    /// Datagrams not sent because their destination is denied (the backstop).
    pub refused_egress: AtomicU64,
    /// Datagrams dropped by the bandwidth limit.
    pub over_limit: AtomicU64,
    /// Bytes relayed to peers and back.
    pub relayed_bytes: AtomicU64,
}

/// A bound, not yet running relay.
#[derive(Debug)]
pub struct Relay {
    socket: Arc<UdpSocket>,
    tcp: Option<TcpListener>,
    local: SocketAddr,
    relay_ip: IpAddr,
    config: RelayConfig,
    stats: Arc<RelayStats>,
}

struct Datagram {
    local: SocketAddr,
    from: SocketAddr,
    data: Vec<u8>,
    /// From a TCP client (one whole frame).
    tcp: bool,
}

/// What reaches the relay task.
enum Input {
    Datagram(Datagram),
    /// A TCP client connected: frames for it go to this writer.
    TcpOpen(SocketAddr, mpsc::Sender<Vec<u8>>),
    /// A TCP client's connection ended.
    TcpClosed(SocketAddr),
}

/// Frames waiting to be written to one TCP client; more and it is too slow (closed).
const TCP_WRITE_QUEUE: usize = 256;

/// A byte bucket: `rate` bytes a second, at most a second's worth saved up.
#[derive(Debug)]
struct Bucket {
    rate: u64,
    tokens: u64,
    at: std::time::Instant,
}

impl Bucket {
    fn new(rate: u64, now: std::time::Instant) -> Self {
        Self {
            rate,
            tokens: rate,
            at: now,
        }
    }

    fn take(&mut self, n: usize, now: std::time::Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at);
        let refill = (elapsed.as_micros() as u64).saturating_mul(self.rate) / 1_000_000;
        if refill > 0 {
            self.tokens = self.tokens.saturating_add(refill).min(self.rate);
            self.at = now;
        }
        let n = n as u64;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// One allocation's relayed socket.
struct Allocation {
    socket: Arc<UdpSocket>,
    reader: JoinHandle<()>,
    client: SocketAddr,
    user: Option<String>,
    out: Bucket,
    inbound: Bucket,
    /// Allocated by a TCP client (answered by the TCP state machine).
    tcp: bool,
}

impl Relay {
    /// Binds the listen socket.
    pub async fn bind(config: RelayConfig) -> Result<Self, RelayError> {
        let relay_ip = match config.relay_ip {
            Some(ip) => ip,
            None if config.listen.ip().is_unspecified() => {
                return Err(RelayError::NoRelayIp(config.listen))
            }
            None => config.listen.ip(),
        };
        // UDP and TCP on the same port. With port 0 the kernel picks the UDP port, and that
        // port may be taken on TCP: then pick again.
        let attempts = if config.listen.port() == 0 { 8 } else { 1 };
        let mut tries = 0;
        let (socket, local, tcp) = loop {
            tries += 1;
            let socket =
                UdpSocket::bind(config.listen)
                    .await
                    .map_err(|source| RelayError::Bind {
                        addr: config.listen,
                        source,
                    })?;
            let local = socket.local_addr().map_err(|source| RelayError::Bind {
                addr: config.listen,
                source,
            })?;
            if !config.tcp {
                break (socket, local, None);
            }
            match TcpListener::bind(local).await {
                Ok(l) => break (socket, local, Some(l)),
                Err(source) if tries >= attempts => {
                    return Err(RelayError::Bind {
                        addr: local,
                        source,
                    })
                }
                Err(_) => continue,
            }
        };
        Ok(Self {
            socket: Arc::new(socket),
            tcp,
            local,
            relay_ip,
            config,
            stats: Arc::new(RelayStats::default()),
        })
    }

    /// The address clients reach (with the port actually bound).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether it also takes TURN over TCP on [`Relay::local_addr`].
    pub fn serves_tcp(&self) -> bool {
        self.tcp.is_some()
    }

    /// The counters (live while it runs).
    pub fn stats(&self) -> Arc<RelayStats> {
        self.stats.clone()
    }

    /// Relays until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let (tx, mut rx) = mpsc::channel::<Input>(QUEUE);
        let listen_reader = spawn_reader(self.socket.clone(), self.local, tx.clone());
        let tcp_acceptor = self
            .tcp
            .map(|l| spawn_acceptor(l, self.local, self.config.max_tcp_connections, tx.clone()));
        let server_tcp = tcp_acceptor.as_ref().map(|_| {
            let mut s = TurnServer::new(TransportType::Tcp, self.local, REALM.to_owned());
            s.set_nonce_expiry_duration(Duration::from_secs(600));
            s
        });
        let mut own = vec![self.local.ip(), self.relay_ip];
        own.dedup();
        let policy = PeerPolicy {
            own,
            allow_for_tests: self.config.allow_peers_for_tests.clone(),
        };
        let mut server = TurnServer::new(TransportType::Udp, self.local, REALM.to_owned());
        server.set_nonce_expiry_duration(Duration::from_secs(600));
        let mut shell = Shell {
            base: std::time::Instant::now(),
            server,
            server_tcp,
            tcp_clients: HashMap::new(),
            gate: Gatekeeper::new(
                self.config.secret.clone(),
                REALM,
                policy,
                self.config.quota_per_user,
            ),
            listen: self.socket,
            local: self.local,
            relay_ip: self.relay_ip,
            config: self.config,
            stats: self.stats,
            allocations: HashMap::new(),
            tx,
        };
        tokio::pin!(shutdown);
        // The state machines are polled after what can change their timers or queue output
        // (STUN requests, timeouts); relayed data is answered by `recv` itself, so the hot
        // path — ChannelData and peer datagrams — skips the poll.
        let mut wake = std::time::Instant::now();
        let mut need_drive = true;
        loop {
            if need_drive || std::time::Instant::now() >= wake {
                wake = shell.drive().await;
                need_drive = false;
            }
            tokio::select! {
                () = &mut shutdown => break,
                d = rx.recv() => match d {
                    Some(Input::Datagram(d)) => need_drive = shell.input(d).await,
                    Some(Input::TcpOpen(client, writer)) => {
                        shell.tcp_clients.insert(client, writer);
                    }
                    Some(Input::TcpClosed(client)) => shell.tcp_closed(client),
                    None => break,
                },
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            }
        }
        listen_reader.abort();
        if let Some(a) = tcp_acceptor {
            a.abort();
        }
        for (_, a) in shell.allocations.drain() {
            a.reader.abort();
        }
    }
}

/// Accepts TCP clients; each gets a reader (framing, bounded) and a writer task.
fn spawn_acceptor(
    listener: TcpListener,
    local: SocketAddr,
    max: usize,
    tx: mpsc::Sender<Input>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let open = Arc::new(AtomicU64::new(0));
        loop {
            let Ok((stream, client)) = listener.accept().await else {
                continue;
            };
            if open.load(Ordering::Relaxed) >= max as u64 {
                continue; // dropped: closes it
            }
            let _ = stream.set_nodelay(true);
            open.fetch_add(1, Ordering::Relaxed);
            let (mut read, mut write) = stream.into_split();
            let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(TCP_WRITE_QUEUE);
            if tx.send(Input::TcpOpen(client, wtx)).await.is_err() {
                return;
            }
            let tx = tx.clone();
            let open = open.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let writer = tokio::spawn(async move {
                    while let Some(frame) = wrx.recv().await {
                        if write.write_all(&frame).await.is_err() {
                            break;
                        }
                    }
                });
                let mut framer = tcp::Framer::new();
                let mut buf = vec![0u8; tcp::MAX_FRAME];
                'read: loop {
                    let n = match read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    framer.push(buf.get(..n).unwrap_or_default());
                    loop {
                        match framer.next_frame() {
                            Ok(Some(data)) => {
                                let d = Datagram {
                                    local,
                                    from: client,
                                    data,
                                    tcp: true,
                                };
                                // Waiting here slows the client down (TCP backpressure).
                                if tx.send(Input::Datagram(d)).await.is_err() {
                                    break 'read;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::debug!(%client, error = %e, "relay: closing a TCP client");
                                break 'read;
                            }
                        }
                    }
                }
                writer.abort();
                open.fetch_sub(1, Ordering::Relaxed);
                let _ = tx.send(Input::TcpClosed(client)).await;
            });
        }
    })
}

fn spawn_reader(
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    tx: mpsc::Sender<Input>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, from)) => {
                    let data = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                    let d = Datagram {
                        local,
                        from,
                        data,
                        tcp: false,
                    };
                    match tx.try_send(Input::Datagram(d)) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                // ICMP errors surface here on some systems; keep reading.
                Err(e) => tracing::trace!(error = %e, "relay socket receive error"),
            }
        }
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Shell {
    base: std::time::Instant,
    server: TurnServer,
    /// The state machine of TCP clients (same address and port, `TransportType::Tcp`).
    server_tcp: Option<TurnServer>,
    /// Writers of connected TCP clients.
    tcp_clients: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    gate: Gatekeeper,
    listen: Arc<UdpSocket>,
    local: SocketAddr,
    relay_ip: IpAddr,
    config: RelayConfig,
    stats: Arc<RelayStats>,
    allocations: HashMap<SocketAddr, Allocation>,
    tx: mpsc::Sender<Input>,
}

impl Shell {
    fn now(&self) -> turn_types::Instant {
        let nanos = self.base.elapsed().as_nanos();
        turn_types::Instant::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    fn to_std(&self, t: turn_types::Instant) -> std::time::Instant {
        let nanos = u64::try_from(t.as_nanos().max(0)).unwrap_or(0);
        self.base + Duration::from_nanos(nanos)
    }

    fn count(&self, refusal: Option<Refusal>) {
        let counter = match refusal {
            Some(Refusal::Credentials) => &self.stats.refused_credentials,
            Some(Refusal::Quota) => &self.stats.refused_quota,
            Some(Refusal::Peer) => &self.stats.refused_peers,
            None => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs the state machines until they only wait; returns when to wake.
    async fn drive(&mut self) -> std::time::Instant {
        let udp = self.drive_one(false).await;
        let tcp = self.drive_one(true).await;
        let wake = match (udp, tcp) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => std::time::Instant::now() + Duration::from_secs(1),
        };
        // Never sleep long: the state machines' timers are coarse.
        wake.min(std::time::Instant::now() + Duration::from_secs(1))
    }

    fn pick(&mut self, tcp: bool) -> Option<&mut TurnServer> {
        if tcp {
            self.server_tcp.as_mut()
        } else {
            Some(&mut self.server)
        }
    }

    /// Runs the UDP or the TCP state machine until it only waits (`None`: no TCP).
    async fn drive_one(&mut self, tcp: bool) -> Option<std::time::Instant> {
        loop {
            let now = self.now();
            match self.pick(tcp)?.poll(now) {
                TurnServerPollRet::WaitUntil(t) => {
                    loop {
                        let now = self.now();
                        let Some(out) = self.pick(tcp)?.poll_transmit(now) else {
                            break;
                        };
                        self.send_out(out).await;
                    }
                    return Some(self.to_std(t));
                }
                TurnServerPollRet::AllocateSocket {
                    transport,
                    listen_addr,
                    client_addr,
                    allocation_transport,
                    family,
                } => {
                    let result = self
                        .allocate(client_addr, allocation_transport, family, tcp)
                        .await;
                    let now = self.now();
                    self.pick(tcp)?.allocated_socket(
                        transport,
                        listen_addr,
                        client_addr,
                        allocation_transport,
                        family,
                        result,
                        now,
                    );
                }
                TurnServerPollRet::SocketClose { listen_addr, .. } => {
                    self.close_allocation(listen_addr);
                }
                // TCP allocations (RFC 6062) are refused at allocation time.
                other => tracing::debug!(event = ?other, "relay: ignored"),
            }
        }
    }

    fn close_allocation(&mut self, relayed: SocketAddr) {
        if let Some(a) = self.allocations.remove(&relayed) {
            a.reader.abort();
            if let Some(u) = &a.user {
                self.gate.released(u);
            }
            self.gate.forget_client(a.client);
            self.stats.allocations.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A TCP client went away: its allocations end with its connection (RFC 8656 §3.1).
    fn tcp_closed(&mut self, client: SocketAddr) {
        self.tcp_clients.remove(&client);
        let gone: Vec<SocketAddr> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.tcp && a.client == client)
            .map(|(addr, _)| *addr)
            .collect();
        for addr in gone {
            self.close_allocation(addr);
        }
    }

    /// Writes a frame to a TCP client (ChannelData padded, as TCP requires); a client whose
    /// queue is full is too slow and loses the frame, like a UDP client would.
    fn write_tcp(&self, client: SocketAddr, mut frame: Vec<u8>) {
        tcp::pad_channel_data(&mut frame);
        if let Some(w) = self.tcp_clients.get(&client) {
            let _ = w.try_send(frame);
        }
    }

    async fn allocate(
        &mut self,
        client: SocketAddr,
        transport: TransportType,
        family: AddressFamily,
        tcp: bool,
    ) -> Result<SocketAddr, SocketAllocateError> {
        if transport != TransportType::Udp {
            return Err(SocketAllocateError::InsufficientCapacity);
        }
        let wants_v4 = family == AddressFamily::IPV4;
        if wants_v4 != self.relay_ip.is_ipv4() {
            return Err(SocketAllocateError::AddressFamilyNotSupported);
        }
        if self.allocations.len() >= self.config.max_allocations {
            return Err(SocketAllocateError::InsufficientCapacity);
        }
        let socket = UdpSocket::bind(SocketAddr::new(self.relay_ip, 0))
            .await
            .map_err(|_| SocketAllocateError::InsufficientCapacity)?;
        let addr = socket
            .local_addr()
            .map_err(|_| SocketAllocateError::InsufficientCapacity)?;
        let socket = Arc::new(socket);
        let reader = spawn_reader(socket.clone(), addr, self.tx.clone());
        let now = std::time::Instant::now();
        let user = self.gate.allocated(client);
        self.allocations.insert(
            addr,
            Allocation {
                socket,
                reader,
                client,
                user,
                out: Bucket::new(self.config.bytes_per_sec, now),
                inbound: Bucket::new(self.config.bytes_per_sec, now),
                tcp,
            },
        );
        self.stats.allocations.fetch_add(1, Ordering::Relaxed);
        self.stats.allocations_total.fetch_add(1, Ordering::Relaxed);
        Ok(addr)
    }

    /// Handles one input; returns whether the state machines must be polled now.
    async fn input(&mut self, d: Datagram) -> bool {
        let mut tcp = d.tcp;
        // A STUN message from a client (not ChannelData) may start timers or allocations.
        let stun = d.local == self.local && d.data.first().is_some_and(|b| *b < 4);
        if d.local == self.local {
            match self.gate.check(d.from, &d.data, unix_now()) {
                Verdict::Pass { new_user } => {
                    if let Some((name, password)) = new_user {
                        // Both state machines: a credential may allocate over either.
                        if let Some(t) = self.server_tcp.as_mut() {
                            t.add_user(name.clone(), password.to_string());
                        }
                        self.server.add_user(name, password.to_string());
                    }
                }
                Verdict::Reply(bytes) => {
                    let why = self.gate.take_refusal();
                    self.count(why);
                    if d.tcp {
                        self.write_tcp(d.from, bytes);
                    } else {
                        let _ = self.listen.send_to(&bytes, d.from).await;
                    }
                    return false;
                }
                Verdict::Drop => {
                    let why = self.gate.take_refusal();
                    self.count(why);
                    return false;
                }
            }
        } else {
            // From a peer, into a relayed socket.
            let now = std::time::Instant::now();
            let Some(a) = self.allocations.get_mut(&d.local) else {
                return false;
            };
            if !a.inbound.take(d.data.len(), now) {
                self.stats.over_limit.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            tcp = a.tcp;
        }
        let answered = self.deliver(d.data, d.from, d.local, tcp).await;
        stun || !answered
    }

    /// Hands bytes that arrived at `to` from `from` to the state machine (`tcp`: the one of
    /// TCP clients) and sends its answer; returns whether there was one.
    async fn deliver(
        &mut self,
        data: Vec<u8>,
        from: SocketAddr,
        to: SocketAddr,
        tcp: bool,
    ) -> bool {
        let now = self.now();
        // A client's frame arrives on its transport; a peer's datagram at a relayed address
        // goes to the state machine that owns the allocation.
        let transport = if tcp && to == self.local {
            TransportType::Tcp
        } else {
            TransportType::Udp
        };
        let Some(server) = self.pick(tcp) else {
            return true;
        };
        let out = server
            .recv(Transmit::new(&data[..], transport, from, to), now)
            .map(|t| t.build());
        match out {
            Some(t) => {
                self.send_out(t).await;
                true
            }
            None => false,
        }
    }

    async fn send_out(&mut self, t: Transmit<Vec<u8>>) {
        if t.from == self.local {
            if t.transport == TransportType::Tcp {
                self.write_tcp(t.to, t.data);
            } else {
                let _ = self.listen.send_to(&t.data, t.to).await;
            }
            return;
        }
        // From a relayed socket towards a peer: the backstop check, then the limit.
        let now = std::time::Instant::now();
        let policy = self.gate.policy();
        let to_own = policy.is_own(t.to.ip());
        if !to_own && policy.denies(t.to.ip()) {
            self.stats.refused_egress.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(a) = self.allocations.get_mut(&t.from) else {
            return;
        };
        if !a.out.take(t.data.len(), now) {
            self.stats.over_limit.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.stats
            .relayed_bytes
            .fetch_add(t.data.len() as u64, Ordering::Relaxed);
        if to_own {
            // Another allocation of this relay: hand it over inside, never to the host's
            // other services.
            let dest = policy::canonical(t.to.ip());
            let target = SocketAddr::new(dest, t.to.port());
            if let Some(tcp) = self.allocations.get(&target).map(|a| a.tcp) {
                let _ = Box::pin(self.deliver(t.data, t.from, target, tcp)).await;
            } else {
                self.stats.refused_egress.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let socket = a.socket.clone();
        let _ = socket.send_to(&t.data, t.to).await;
    }
}
