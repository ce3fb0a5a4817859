//! The embedded TURN relay against a real TURN client (turn-client-proto) over real UDP
//! sockets on loopback: credentials, quotas, the peer-address deny matrix (with a canary that
//! must hear nothing), relaying both ways, and two clients of one relay meeting inside it.
//!
//! The relay listens on 127.0.0.3 (its own address); the test's "public" peer is an echo
//! server on 127.0.0.2, let through with the test-only allow list; 127.0.0.1 is a canary.
//! The same credential, deny-matrix and relaying tests run against coturn with the shipped
//! `deploy/coturn/turnserver.conf` (Debian's coturn, which `scripts/test` installs).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "tests fail by panicking and read the real clock"
)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sealdesk_server::relay::credentials::{issue, RelaySecret};
use sealdesk_server::relay::{Relay, RelayConfig, RelayStats};
use tokio::net::UdpSocket;
use turn_client_proto::api::{TurnClientApi as _, TurnConfig, TurnEvent, TurnPollRet, TurnRecvRet};
use turn_client_proto::udp::TurnClientUdp;
use turn_types::stun::TransportType;
use turn_types::{AddressFamily, TurnCredentials};

const SECRET: &[u8] = b"relay-test-secret-0123456789";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn secret() -> RelaySecret {
    RelaySecret::new(SECRET.to_vec()).unwrap()
}

/// A credential as the signaling server issues it; `ttl` may be negative (already expired).
fn credential(id: &str, ttl: i64) -> (String, String) {
    let now = unix_now();
    if ttl < 0 {
        let user = format!("{}:{id}", now - ttl.unsigned_abs());
        let pass = secret().password(&user).to_string();
        return (user, pass);
    }
    let c = issue(&secret(), id, now, ttl as u64);
    (c.username, c.password.to_string())
}

struct Lab {
    relay: SocketAddr,
    /// The embedded relay's counters; coturn's are not read.
    stats: Option<Arc<RelayStats>>,
    echo: SocketAddr,
    canary: SocketAddr,
    canary_hits: Arc<AtomicUsize>,
    _backend: Backend,
}

/// What keeps a lab's relay running; dropping it stops the relay.
enum Backend {
    Embedded {
        _stop: tokio::sync::oneshot::Sender<()>,
    },
    Coturn {
        _process: Coturn,
    },
}

/// The peers of a lab: an echo server on 127.0.0.2 (private, so reachable only through the
/// test's allow list) and a canary on 127.0.0.1 counting every datagram it hears.
async fn peers() -> (SocketAddr, SocketAddr, Arc<AtomicUsize>) {
    let echo = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let mut b = vec![0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut b).await {
            let mut r = b"echo:".to_vec();
            r.extend_from_slice(&b[..n]);
            let _ = echo.send_to(&r, from).await;
        }
    });
    let canary = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let canary_addr = canary.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    {
        let hits = hits.clone();
        tokio::spawn(async move {
            let mut b = [0u8; 2048];
            while canary.recv_from(&mut b).await.is_ok() {
                hits.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    (echo_addr, canary_addr, hits)
}

/// The embedded relay on `listen`.
async fn start_lab(listen: &str, quota: usize) -> Lab {
    let (echo, canary, canary_hits) = peers().await;
    let mut config = RelayConfig::new(listen.parse().unwrap(), secret());
    config.quota_per_user = quota;
    config.allow_peers_for_tests = vec!["127.0.0.2".parse().unwrap()];
    let relay = Relay::bind(config).await.unwrap();
    let addr = relay.local_addr();
    let stats = relay.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(relay.run(async move {
        let _ = stopped.await;
    }));
    Lab {
        relay: addr,
        stats: Some(stats),
        echo,
        canary,
        canary_hits,
        _backend: Backend::Embedded { _stop: stop },
    }
}

/// coturn (Debian's `turnserver`) running the shipped `deploy/coturn/turnserver.conf`,
/// with only what a deployment sets itself given on the command line: addresses, ports,
/// the shared secret, and — test-only — the echo peer let through and loopback peers not
/// refused by coturn's own default, so that the shipped deny list alone must refuse them.
struct Coturn {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody in this test binary uses: for coturn, which cannot be told to pick one.
fn free_port(ip: IpAddr) -> u16 {
    std::net::UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_coturn(ip: &str, quota: usize) -> Lab {
    let (echo, canary, canary_hits) = peers().await;
    let ip: IpAddr = ip.parse().unwrap();
    let port = free_port(ip);
    // Relayed ports: a block of 50 per lab, apart from the kernel's ephemeral range.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let block = (std::process::id() as usize % 100) * 20 + NEXT.fetch_add(1, Ordering::Relaxed);
    let min_port = 20_000 + (block % 200) * 50;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("turn.log");
    let conf = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/coturn/turnserver.conf"
    );
    let child = std::process::Command::new("turnserver")
        .args(["-c", conf])
        .arg(format!("--listening-ip={ip}"))
        .arg(format!("--relay-ip={ip}"))
        .arg(format!("--listening-port={port}"))
        .arg(format!("--min-port={min_port}"))
        .arg(format!("--max-port={}", min_port + 49))
        .arg(format!(
            "--static-auth-secret={}",
            std::str::from_utf8(SECRET).unwrap()
        ))
        .arg(format!("--user-quota={quota}"))
        .args(["--allow-loopback-peers", "--allowed-peer-ip=127.0.0.2"])
        .arg(format!("--pidfile={}", dir.path().join("pid").display()))
        .arg(format!("--log-file={}", log.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start turnserver ({e}): apt-get install coturn (scripts/test does)")
        });
    let mut coturn = Coturn { child, _dir: dir };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Total General servers") {
            break;
        }
        if let Some(status) = coturn.child.try_wait().unwrap() {
            panic!("turnserver exited ({status}): {text}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "turnserver not up: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Lab {
        relay: SocketAddr::new(ip, port),
        stats: None,
        echo,
        canary,
        canary_hits,
        _backend: Backend::Coturn { _process: coturn },
    }
}

/// A TURN client on its own UDP socket.
struct Client {
    turn: TurnClientUdp,
    socket: UdpSocket,
    base: std::time::Instant,
    events: Vec<TurnEvent>,
    data: Vec<(SocketAddr, Vec<u8>)>,
    closed: bool,
}

impl Client {
    async fn new(local: &str, relay: SocketAddr, (user, pass): (String, String)) -> Self {
        let socket = UdpSocket::bind(local).await.unwrap();
        let mut cfg = TurnConfig::new(TurnCredentials::new(&user, &pass));
        cfg.set_address_family(if relay.is_ipv4() {
            AddressFamily::IPV4
        } else {
            AddressFamily::IPV6
        });
        // The relay refuses anonymous (USERHASH) requests: their expiry cannot be read.
        cfg.set_anonymous_username(turn_client_proto::stun::auth::Feature::Disabled);
        cfg.set_request_retransmits(
            Duration::from_millis(250),
            Duration::from_secs(1),
            3,
            Duration::from_secs(1),
        );
        let turn = TurnClientUdp::allocate(socket.local_addr().unwrap(), relay, cfg);
        Self {
            turn,
            socket,
            base: std::time::Instant::now(),
            events: Vec::new(),
            data: Vec::new(),
            closed: false,
        }
    }

    fn now(&self) -> turn_types::Instant {
        turn_types::Instant::from_nanos(self.base.elapsed().as_nanos() as i64)
    }

    async fn flush(&mut self) -> std::time::Instant {
        while let Some(t) = self.turn.poll_transmit(self.now()) {
            self.socket.send_to(t.data.as_ref(), t.to).await.unwrap();
        }
        while let Some(e) = self.turn.poll_event() {
            self.events.push(e);
        }
        match self.turn.poll(self.now()) {
            TurnPollRet::WaitUntil(t) => {
                self.base + Duration::from_nanos(t.as_nanos().max(0) as u64)
            }
            TurnPollRet::Closed => {
                self.closed = true;
                std::time::Instant::now() + Duration::from_secs(3600)
            }
            _ => std::time::Instant::now() + Duration::from_millis(20),
        }
    }

    /// Runs until `done` or `limit`; returns whether `done` held.
    async fn run(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let end = std::time::Instant::now() + limit;
        let mut buf = vec![0u8; 4096];
        loop {
            let wake = self.flush().await.min(end);
            if done(self) {
                return true;
            }
            if std::time::Instant::now() >= end {
                return false;
            }
            let got = tokio::select! {
                r = self.socket.recv_from(&mut buf) => r.ok(),
                () = tokio::time::sleep_until(wake.into()) => None,
            };
            if let Some((n, from)) = got {
                let local = self.socket.local_addr().unwrap();
                let t = turn_client_proto::stun::agent::Transmit::new(
                    &buf[..n],
                    TransportType::Udp,
                    from,
                    local,
                );
                let now = self.now();
                if let TurnRecvRet::PeerData(d) = self.turn.recv(t, now) {
                    self.data.push((d.peer, d.data().to_vec()));
                }
                while let Some(d) = self.turn.poll_recv(self.now()) {
                    self.data.push((d.peer, d.data().to_vec()));
                }
            }
        }
    }

    fn relayed(&self) -> Option<SocketAddr> {
        self.events.iter().find_map(|e| match e {
            TurnEvent::AllocationCreated(_, a) => Some(*a),
            _ => None,
        })
    }

    async fn allocate(&mut self) -> SocketAddr {
        assert!(
            self.run(Duration::from_secs(5), |c| c.relayed().is_some())
                .await,
            "no allocation: {:?}",
            self.events
        );
        self.relayed().unwrap()
    }

    /// Asks for a permission to `ip`; true if granted, false if refused.
    async fn permit(&mut self, ip: IpAddr) -> bool {
        if self
            .turn
            .create_permission(TransportType::Udp, ip, self.now())
            .is_err()
        {
            return false;
        }
        let decided = |c: &Self| {
            c.events.iter().any(|e| {
                matches!(e, TurnEvent::PermissionCreated(_, x) | TurnEvent::PermissionCreateFailed(_, x) if *x == ip)
            })
        };
        assert!(
            self.run(Duration::from_secs(5), decided).await,
            "no answer for {ip}"
        );
        self.events
            .iter()
            .any(|e| matches!(e, TurnEvent::PermissionCreated(_, x) if *x == ip))
    }

    async fn send(&mut self, to: SocketAddr, data: &[u8]) {
        let now = self.now();
        if let Ok(Some(t)) = self.turn.send_to(TransportType::Udp, to, data, now) {
            let t = t.build();
            self.socket.send_to(&t.data, t.to).await.unwrap();
        }
    }
}

#[tokio::test]
async fn an_issued_credential_relays_both_ways_and_a_channel_works_too() {
    relays_both_ways(start_lab("127.0.0.3:0", 4).await).await;
}

#[tokio::test]
async fn coturn_with_the_shipped_config_relays_an_issued_credential_both_ways() {
    relays_both_ways(start_coturn("127.0.0.3", 4).await).await;
}

async fn relays_both_ways(lab: Lab) {
    let mut c = Client::new("127.0.0.1:0", lab.relay, credential("123456789", 600)).await;
    let relayed = c.allocate().await;
    assert_eq!(relayed.ip(), lab.relay.ip());
    assert!(c.permit(lab.echo.ip()).await);
    c.send(lab.echo, b"via a send indication").await;
    assert!(c.run(Duration::from_secs(5), |c| !c.data.is_empty()).await);
    assert_eq!(
        c.data[0],
        (lab.echo, b"echo:via a send indication".to_vec())
    );
    // The echo server saw the relayed address, not the client's.
    c.turn
        .bind_channel(TransportType::Udp, lab.echo, c.now())
        .unwrap();
    assert!(
        c.run(Duration::from_secs(5), |c| c
            .events
            .iter()
            .any(|e| matches!(e, TurnEvent::ChannelCreated(..))))
            .await
    );
    c.send(lab.echo, b"via a channel").await;
    assert!(c.run(Duration::from_secs(5), |c| c.data.len() >= 2).await);
    assert_eq!(c.data[1].1, b"echo:via a channel");
    if let Some(stats) = &lab.stats {
        assert_eq!(stats.allocations.load(Ordering::Relaxed), 1);
        assert!(stats.relayed_bytes.load(Ordering::Relaxed) > 0);
    }
}

#[tokio::test]
async fn every_denied_peer_form_is_refused_and_the_canary_hears_nothing() {
    let labs = (
        start_lab("127.0.0.3:0", 4).await,
        start_lab("[::1]:0", 4).await,
    );
    deny_matrix(labs).await;
}

#[tokio::test]
async fn coturn_with_the_shipped_config_refuses_every_denied_peer_form_too() {
    let labs = (
        start_coturn("127.0.0.3", 4).await,
        start_coturn("::1", 4).await,
    );
    deny_matrix(labs).await;
}

async fn deny_matrix((lab, lab6): (Lab, Lab)) {
    let v4 = [
        "127.0.0.1",
        "127.255.255.254",
        "0.0.0.0",
        "10.0.0.1",
        "100.64.0.1",
        "169.254.169.254",
        "172.16.0.1",
        "192.0.0.1",
        "192.0.2.1",
        "192.168.1.1",
        "198.18.0.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
    ];
    let mut c = Client::new("127.0.0.1:0", lab.relay, credential("v4", 600)).await;
    c.allocate().await;
    for form in v4 {
        assert!(!c.permit(form.parse().unwrap()).await, "{form} granted");
    }
    // A channel to a denied peer is refused too.
    c.turn
        .bind_channel(TransportType::Udp, lab.canary, c.now())
        .unwrap();
    assert!(
        c.run(Duration::from_secs(5), |c| c
            .events
            .iter()
            .any(|e| matches!(e, TurnEvent::ChannelCreateFailed(..))))
            .await,
        "{:?}",
        c.events
    );
    if let Some(stats) = &lab.stats {
        let refused = stats.refused_peers.load(Ordering::Relaxed);
        assert!(refused > v4.len() as u64, "refusals counted");
    }

    // An IPv6 relay: every IPv4-in-IPv6 form of a denied address, and native IPv6 ones.
    let v6 = [
        "::ffff:127.0.0.1",
        "::ffff:0.0.0.0",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:192.168.1.1",
        "::ffff:0:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::7f00:1",
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00::1",
        "fec0::1",
        "ff02::1",
        "2001::1",
        "2001:db8::1",
        "100::1",
    ];
    let mut c6 = Client::new("[::1]:0", lab6.relay, credential("v6", 600)).await;
    c6.allocate().await;
    for form in v6 {
        assert!(!c6.permit(form.parse().unwrap()).await, "{form} granted");
    }
    // Nothing reached the canaries, whatever the clients tried.
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", lab.canary.port())
        .parse()
        .unwrap();
    c6.send(mapped, b"canary").await;
    c.send(lab.canary, b"canary").await;
    c.run(Duration::from_millis(300), |_| false).await;
    c6.run(Duration::from_millis(300), |_| false).await;
    assert_eq!(lab.canary_hits.load(Ordering::Relaxed), 0);
    assert_eq!(lab6.canary_hits.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn expired_tampered_and_borrowed_credentials_get_no_allocation_and_quotas_hold() {
    credentials_and_quota(start_lab("127.0.0.3:0", 1).await).await;
}

#[tokio::test]
async fn coturn_with_the_shipped_config_refuses_bad_credentials_and_holds_quotas_too() {
    credentials_and_quota(start_coturn("127.0.0.3", 1).await).await;
}

async fn credentials_and_quota(lab: Lab) {
    let (user, _) = credential("tampered", 600);
    let (_, other_password) = credential("someone-else", 600);
    let (stranger, _) = credential("stranger", 600);
    for creds in [
        credential("expired", -5),
        (user, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
        (stranger, other_password),
        ("not-a-rest-name".into(), "x".into()),
    ] {
        let shown = creds.0.clone();
        let mut c = Client::new("127.0.0.1:0", lab.relay, creds).await;
        let got = c
            .run(Duration::from_secs(4), |c| {
                c.relayed().is_some() || c.closed
            })
            .await;
        assert!(c.relayed().is_none(), "{shown} got an allocation");
        assert!(got, "{shown}: the client neither allocated nor gave up");
    }
    if let Some(stats) = &lab.stats {
        assert_eq!(stats.allocations_total.load(Ordering::Relaxed), 0);
        assert!(stats.refused_credentials.load(Ordering::Relaxed) >= 2);
    }

    // Quota 1: a second allocation under the same credential (another socket) is refused.
    let creds = credential("quota", 600);
    let mut first = Client::new("127.0.0.1:0", lab.relay, creds.clone()).await;
    first.allocate().await;
    let mut second = Client::new("127.0.0.1:0", lab.relay, creds).await;
    assert!(
        second
            .run(Duration::from_secs(5), |c| c
                .events
                .iter()
                .any(|e| matches!(e, TurnEvent::AllocationCreateFailed(_))))
            .await,
        "{:?}",
        second.events
    );
    assert!(second.relayed().is_none());
    if let Some(stats) = &lab.stats {
        assert_eq!(stats.refused_quota.load(Ordering::Relaxed), 1);
    }
    // Another credential is not affected.
    let mut other = Client::new("127.0.0.1:0", lab.relay, credential("other", 600)).await;
    other.allocate().await;
}

#[tokio::test]
async fn two_clients_of_one_relay_meet_inside_it_but_its_host_stays_out_of_reach() {
    let lab = start_lab("127.0.0.3:0", 4).await;
    let mut a = Client::new("127.0.0.1:0", lab.relay, credential("host", 600)).await;
    let mut b = Client::new("127.0.0.1:0", lab.relay, credential("viewer", 600)).await;
    let (ra, rb) = (a.allocate().await, b.allocate().await);
    // Both relayed addresses are the relay's own: permitted, because they are allocations.
    assert!(a.permit(rb.ip()).await);
    assert!(b.permit(ra.ip()).await);
    a.send(rb, b"hello through the relay").await;
    assert!(b.run(Duration::from_secs(5), |c| !c.data.is_empty()).await);
    assert_eq!(b.data[0], (ra, b"hello through the relay".to_vec()));
    b.send(ra, b"and back").await;
    assert!(a.run(Duration::from_secs(5), |c| !c.data.is_empty()).await);
    assert_eq!(a.data[0], (rb, b"and back".to_vec()));
    // Any other port on the relay's address (here a service listening next to it) is not.
    let service = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let service_addr = service.local_addr().unwrap();
    let stats = lab.stats.as_ref().unwrap();
    let refused_before = stats.refused_egress.load(Ordering::Relaxed);
    a.send(service_addr, b"let me in").await;
    a.run(Duration::from_millis(300), |_| false).await;
    let mut buf = [0u8; 64];
    let heard = tokio::time::timeout(Duration::from_millis(200), service.recv_from(&mut buf)).await;
    assert!(heard.is_err(), "the relay's host service got a datagram");
    assert!(stats.refused_egress.load(Ordering::Relaxed) > refused_before);
}

/// The signaling server issues credentials to registered devices; they work on its relay.
#[tokio::test]
async fn a_registered_device_gets_a_credential_that_its_servers_relay_accepts() {
    use sealdesk_server::{Server, ServerConfig};
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().to_owned()),
        ..ServerConfig::default()
    };
    config.relay.listen = Some("127.0.0.3:0".parse().unwrap());
    let server = Server::bind(config).await.unwrap();
    let relay = server.relay_addr().unwrap();
    let url = server.url();
    tokio::spawn(server.run(std::future::pending()));
    let (device, credential) = registered_credential(&url).await;
    assert_eq!(
        credential.urls,
        vec![
            format!("turn:{relay}?transport=udp"),
            format!("turn:{relay}?transport=tcp")
        ]
    );
    let number = device.routing_number().get().to_string();
    assert!(credential.username.ends_with(&format!(":{number}")));
    let ttl = credential.expires_at - unix_now();
    assert!((3590..=3600).contains(&ttl), "{ttl}");
    let mut c = Client::new(
        "127.0.0.1:0",
        relay,
        (credential.username.clone(), credential.password.to_string()),
    )
    .await;
    c.allocate().await;
}

#[tokio::test]
async fn a_server_without_a_relay_says_so() {
    use sealdesk_client::{ClientConfig, SignalClient, SignalEvent};
    use sealdesk_proto::ErrorCode;
    use sealdesk_server::{Server, ServerConfig};
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().to_owned()),
        ..ServerConfig::default()
    };
    config.relay.enabled = false;
    let server = Server::bind(config).await.unwrap();
    assert!(server.relay_addr().is_none());
    let url = server.url();
    tokio::spawn(server.run(std::future::pending()));
    let key = std::sync::Arc::new(sealdesk_auth::IdentityKey::generate(&mut rand::rngs::OsRng));
    let mut device = SignalClient::connect(ClientConfig::new(&url), key)
        .await
        .unwrap();
    device.request_relay().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match device.next_event().await {
                Some(SignalEvent::Error { code, .. }) => return code,
                Some(SignalEvent::Relay(_)) => panic!("a credential from a server without relay"),
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(got, ErrorCode::NoRelay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_issued_before_a_restart_still_allocates_after_it() {
    use sealdesk_server::{Server, ServerConfig};
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: Some(dir.path().to_owned()),
            ..ServerConfig::default()
        };
        c.relay.listen = Some("127.0.0.3:0".parse().unwrap());
        c
    };
    let server = Server::bind(config()).await.unwrap();
    let url = server.url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let (device, credential) = registered_credential(&url).await;
    device.close(Duration::from_secs(1)).await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();

    // The secret is kept in the data directory, readable by the server's user only.
    let file = dir.path().join("server").join("relay.secret");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read(&file).unwrap().len(), 32);

    // A new server process on the same data: the old credential allocates on its relay.
    let server = Server::bind(config()).await.unwrap();
    let relay = server.relay_addr().unwrap();
    tokio::spawn(server.run(std::future::pending()));
    let mut c = Client::new(
        "127.0.0.1:0",
        relay,
        (credential.username.clone(), credential.password.to_string()),
    )
    .await;
    c.allocate().await;

    // A secret file too short to be one is refused with its name, not replaced.
    std::fs::write(&file, b"short").unwrap();
    let err = Server::bind(config()).await.unwrap_err().to_string();
    assert!(
        err.contains("relay.secret") && err.contains("shorter than 16 bytes"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"short");
}

/// A TURN client over TCP (for networks that block UDP): the same sans-IO client on a TCP
/// stream. turn-client-proto frames ChannelData without the padding TCP requires (RFC 8656
/// §12.5), so this shell pads what it writes and reads through the relay's own framer,
/// which drops padding — as a compliant client (a browser) does.
struct TcpClient {
    turn: turn_client_proto::tcp::TurnClientTcp,
    stream: tokio::net::TcpStream,
    local: SocketAddr,
    relay: SocketAddr,
    base: std::time::Instant,
    events: Vec<TurnEvent>,
    data: Vec<(SocketAddr, Vec<u8>)>,
    framer: sealdesk_server::relay::tcp::Framer,
}

impl TcpClient {
    async fn new(relay: SocketAddr, (user, pass): (String, String)) -> Self {
        let stream = tokio::net::TcpStream::connect(relay).await.unwrap();
        let local = stream.local_addr().unwrap();
        let mut cfg = TurnConfig::new(TurnCredentials::new(&user, &pass));
        cfg.set_address_family(AddressFamily::IPV4);
        cfg.set_anonymous_username(turn_client_proto::stun::auth::Feature::Disabled);
        Self {
            turn: turn_client_proto::tcp::TurnClientTcp::allocate(local, relay, cfg),
            stream,
            local,
            relay,
            base: std::time::Instant::now(),
            events: Vec::new(),
            data: Vec::new(),
            framer: sealdesk_server::relay::tcp::Framer::new(),
        }
    }

    fn now(&self) -> turn_types::Instant {
        turn_types::Instant::from_nanos(self.base.elapsed().as_nanos() as i64)
    }

    async fn write(&mut self, mut frame: Vec<u8>) {
        use tokio::io::AsyncWriteExt as _;
        sealdesk_server::relay::tcp::pad_channel_data(&mut frame);
        self.stream.write_all(&frame).await.unwrap();
    }

    async fn run(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> bool {
        use tokio::io::AsyncReadExt as _;
        let end = std::time::Instant::now() + limit;
        let mut buf = vec![0u8; 4096];
        loop {
            while let Some(t) = self.turn.poll_transmit(self.now()) {
                let frame = t.data.as_ref().to_vec();
                self.write(frame).await;
            }
            while let Some(e) = self.turn.poll_event() {
                self.events.push(e);
            }
            let wake = match self.turn.poll(self.now()) {
                TurnPollRet::WaitUntil(t) => {
                    self.base + Duration::from_nanos(t.as_nanos().max(0) as u64)
                }
                _ => std::time::Instant::now() + Duration::from_millis(20),
            }
            .min(end);
            if done(self) {
                return true;
            }
            if std::time::Instant::now() >= end {
                return false;
            }
            let n = tokio::select! {
                r = self.stream.read(&mut buf) => r.unwrap(),
                () = tokio::time::sleep_until(wake.into()) => continue,
            };
            assert!(n > 0, "the relay closed the connection");
            self.framer.push(&buf[..n]);
            while let Some(frame) = self.framer.next_frame().unwrap() {
                let t = turn_client_proto::stun::agent::Transmit::new(
                    &frame[..],
                    TransportType::Tcp,
                    self.relay,
                    self.local,
                );
                let now = self.now();
                if let TurnRecvRet::PeerData(d) = self.turn.recv(t, now) {
                    self.data.push((d.peer, d.data().to_vec()));
                }
                while let Some(d) = self.turn.poll_recv(self.now()) {
                    self.data.push((d.peer, d.data().to_vec()));
                }
            }
        }
    }

    async fn send(&mut self, to: SocketAddr, data: &[u8]) {
        let now = self.now();
        if let Ok(Some(t)) = self.turn.send_to(TransportType::Udp, to, data, now) {
            let t = t.build();
            self.write(t.data).await;
        }
    }
}

#[tokio::test]
async fn over_tcp_an_issued_credential_allocates_and_relays_both_ways_with_padded_channels() {
    tcp_both_ways(start_lab("127.0.0.3:0", 4).await).await;
}

#[tokio::test]
async fn coturn_with_the_shipped_config_relays_over_tcp_too() {
    tcp_both_ways(start_coturn("127.0.0.3", 4).await).await;
}

async fn tcp_both_ways(lab: Lab) {
    let mut c = TcpClient::new(lab.relay, credential("123456789", 600)).await;
    let allocated = |c: &TcpClient| {
        c.events
            .iter()
            .any(|e| matches!(e, TurnEvent::AllocationCreated(..)))
    };
    assert!(
        c.run(Duration::from_secs(5), allocated).await,
        "{:?}",
        c.events
    );
    let now = c.now();
    c.turn
        .create_permission(TransportType::Udp, lab.echo.ip(), now)
        .unwrap();
    let permitted = |c: &TcpClient| {
        c.events
            .iter()
            .any(|e| matches!(e, TurnEvent::PermissionCreated(..)))
    };
    assert!(
        c.run(Duration::from_secs(5), permitted).await,
        "{:?}",
        c.events
    );
    c.send(lab.echo, b"over tcp").await;
    assert!(c.run(Duration::from_secs(5), |c| !c.data.is_empty()).await);
    assert_eq!(c.data[0], (lab.echo, b"echo:over tcp".to_vec()));
    let now = c.now();
    c.turn
        .bind_channel(TransportType::Udp, lab.echo, now)
        .unwrap();
    let bound = |c: &TcpClient| {
        c.events
            .iter()
            .any(|e| matches!(e, TurnEvent::ChannelCreated(..)))
    };
    assert!(c.run(Duration::from_secs(5), bound).await, "{:?}", c.events);
    // 13 and 18 bytes: both ways the ChannelData needs padding on the stream.
    c.send(lab.echo, b"via a channel").await;
    assert!(c.run(Duration::from_secs(5), |c| c.data.len() >= 2).await);
    assert_eq!(c.data[1].1, b"echo:via a channel");
    c.send(lab.echo, b"and again").await;
    assert!(c.run(Duration::from_secs(5), |c| c.data.len() >= 3).await);
    assert_eq!(c.data[2].1, b"echo:and again");
    let Some(stats) = lab.stats.as_ref() else {
        return;
    };
    assert_eq!(stats.allocations.load(Ordering::Relaxed), 1);

    // The allocation ends with the connection.
    drop(c);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stats.allocations.load(Ordering::Relaxed) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the allocation outlived its connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_tcp_stream_that_is_not_turn_is_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let lab = start_lab("127.0.0.3:0", 4).await;
    let mut s = tokio::net::TcpStream::connect(lab.relay).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: relay\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("the relay kept a non-TURN stream open")
        .unwrap_or(0);
    assert_eq!(n, 0, "the relay answered a non-TURN stream");
}

/// A new device registered with the server at `url`, and the relay credential it was issued.
async fn registered_credential(
    url: &str,
) -> (
    sealdesk_client::SignalClient,
    sealdesk_client::RelayCredential,
) {
    use sealdesk_client::{ClientConfig, SignalClient, SignalEvent};
    let key = std::sync::Arc::new(sealdesk_auth::IdentityKey::generate(&mut rand::rngs::OsRng));
    let mut device = SignalClient::connect(ClientConfig::new(url), key)
        .await
        .unwrap();
    device.request_relay().await.unwrap();
    let credential = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(SignalEvent::Relay(c)) = device.next_event().await {
                return c;
            }
        }
    })
    .await
    .unwrap();
    (device, credential)
}
