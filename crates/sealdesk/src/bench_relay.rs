//! `sealdesk bench relay`: how fast the relays forward, side by side in one run.
//!
//! For each relay — the embedded one (a `sealdesk server` child process) and coturn
//! (Debian's `turnserver` with the shipped `deploy/coturn/turnserver.conf`) — a TURN client
//! on loopback allocates with an issued REST credential, binds a channel to a plain UDP
//! peer on 127.0.0.2 (let through by each relay's test-only allowance) and sends
//! ChannelData frames as fast as it can (or at `--rate`) for `--seconds`. The peer counts
//! what arrives. The relay process's CPU time comes from `/proc`, so the figures are
//! per core of relay work: delivered packets (and payload Mbit/s) per CPU-second.
//!
//! The per-allocation bandwidth limit (5 MB/s in both relays' defaults) is lifted for the
//! run: the bench measures forwarding, not the quota. Figures, not pass/fail.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Args;
use sealdesk_server::relay::credentials::{issue, RelaySecret};
use tokio::net::UdpSocket;
use turn_client_proto::api::{TurnClientApi as _, TurnConfig, TurnEvent, TurnPollRet, TurnRecvRet};
use turn_client_proto::udp::TurnClientUdp;
use turn_types::stun::TransportType;
use turn_types::{AddressFamily, TurnCredentials};

use crate::bench::{proc_cpu_time, ServerProcess};

/// The shipped coturn configuration, the one the tests check.
const COTURN_CONF: &str = include_str!("../../../deploy/coturn/turnserver.conf");
/// The peer's address: not public, so each relay is told to let it through (test-only).
const PEER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// The shared secret of this run (both relays check credentials against it).
const SECRET: &str = "bench-relay-secret-not-for-production";

#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// Seconds of sending per relay.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Payload bytes per packet (1200 is a typical video RTP packet).
    #[arg(long, default_value_t = 1200)]
    payload: usize,
    /// Packets per second offered; 0 sends as fast as the client can.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Skip coturn even when `turnserver` is installed.
    #[arg(long)]
    no_coturn: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// One relay's figures.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    sent: u64,
    delivered: u64,
    bytes: u64,
    seconds: f64,
    relay_cpu: f64,
}

impl Row {
    fn per_core(&self, x: f64) -> f64 {
        if self.relay_cpu > 0.0 {
            x / self.relay_cpu
        } else {
            0.0
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "relay": self.name,
            "offered_pps": self.sent as f64 / self.seconds,
            "delivered_pps": self.delivered as f64 / self.seconds,
            "delivered_mbit_s": self.bytes as f64 * 8.0 / self.seconds / 1e6,
            "loss_percent": self.loss(),
            "relay_cpu_percent": self.relay_cpu / self.seconds * 100.0,
            "pps_per_core": self.per_core(self.delivered as f64),
            "mbit_s_per_core": self.per_core(self.bytes as f64 * 8.0 / 1e6),
        })
    }

    fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        (1.0 - self.delivered as f64 / self.sent as f64) * 100.0
    }
}

/// A relay under test: its address and the process whose CPU is counted.
struct Target {
    name: String,
    addr: SocketAddr,
    pid: u32,
    _keep: Box<dyn Send>,
}

struct Turnserver(std::process::Child);

impl Drop for Turnserver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn embedded(dir: &std::path::Path, payload: usize) -> anyhow::Result<Target> {
    let port = free_udp_port()?;
    // A limit well above what loopback can carry, so only forwarding is measured.
    let config = format!(
        "listen = \"127.0.0.1:0\"\n[relay]\nlisten = \"127.0.0.1:{port}\"\nsecret = \"{SECRET}\"\n\
         bytes_per_sec = {}\nallow_peers_for_tests = [\"{PEER_IP}\"]\n",
        (payload as u64 + 64) * 10_000_000
    );
    let server = ServerProcess::start(dir, &config).await?;
    let addr = server
        .relay
        .context("the server did not say where its relay listens")?;
    Ok(Target {
        name: "embedded".into(),
        addr,
        pid: server.pid,
        _keep: Box::new(server),
    })
}

async fn coturn(dir: &std::path::Path) -> anyhow::Result<Target> {
    let conf = dir.join("turnserver.conf");
    std::fs::write(&conf, COTURN_CONF)?;
    let log = dir.join("turn.log");
    let port = free_udp_port()?;
    let child = std::process::Command::new("turnserver")
        .arg("-c")
        .arg(&conf)
        .args([
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            // Unlimited per allocation: forwarding, not the quota, is measured.
            "--max-bps=0",
            "--allow-loopback-peers",
        ])
        .arg(format!("--allowed-peer-ip={PEER_IP}"))
        .arg(format!("--listening-port={port}"))
        .arg(format!("--static-auth-secret={SECRET}"))
        .arg(format!("--pidfile={}", dir.join("pid").display()))
        .arg(format!("--log-file={}", log.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start turnserver (apt-get install coturn)")?;
    let pid = child.id();
    let mut process = Turnserver(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Total General servers") {
            break;
        }
        if let Some(status) = process.0.try_wait()? {
            bail!("turnserver exited ({status}); its log: {text}");
        }
        if Instant::now() > deadline {
            bail!("turnserver did not start within 10 s; its log: {text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Target {
        name: "coturn".into(),
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        pid,
        _keep: Box::new(process),
    })
}

fn free_udp_port() -> anyhow::Result<u16> {
    Ok(StdUdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A TURN client allocation with a channel bound to `peer`; returns its socket and one
/// ChannelData frame carrying `payload` bytes to the peer.
async fn channel_to(
    relay: SocketAddr,
    peer: SocketAddr,
    payload: usize,
) -> anyhow::Result<(StdUdpSocket, Vec<u8>)> {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let secret = RelaySecret::new(SECRET.as_bytes().to_vec()).context("secret too short")?;
    let credential = issue(&secret, "bench", now_unix, 600);
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let local = socket.local_addr()?;
    let mut cfg = TurnConfig::new(TurnCredentials::new(
        &credential.username,
        &credential.password,
    ));
    cfg.set_address_family(AddressFamily::IPV4);
    cfg.set_anonymous_username(turn_client_proto::stun::auth::Feature::Disabled);
    let mut turn = TurnClientUdp::allocate(local, relay, cfg);
    let base = Instant::now();
    let now = |b: Instant| turn_types::Instant::from_nanos(b.elapsed().as_nanos() as i64);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 2048];
    let mut asked = false;
    loop {
        while let Some(t) = turn.poll_transmit(now(base)) {
            socket.send_to(t.data.as_ref(), t.to).await?;
        }
        while let Some(event) = turn.poll_event() {
            match event {
                TurnEvent::AllocationCreated(..) if !asked => {
                    turn.bind_channel(TransportType::Udp, peer, now(base))
                        .map_err(|e| anyhow::anyhow!("cannot bind a channel: {e:?}"))?;
                    asked = true;
                }
                TurnEvent::ChannelCreated(..) => {
                    let body = vec![0x5a; payload];
                    let frame = turn
                        .send_to(TransportType::Udp, peer, &body, now(base))
                        .map_err(|e| anyhow::anyhow!("cannot frame data: {e:?}"))?
                        .context("no frame for the channel")?
                        .build();
                    let socket = socket.into_std()?;
                    socket.set_nonblocking(false)?;
                    socket.connect(relay)?;
                    return Ok((socket, frame.data));
                }
                TurnEvent::AllocationCreateFailed(_)
                | TurnEvent::ChannelCreateFailed(..)
                | TurnEvent::PermissionCreateFailed(..) => {
                    bail!("the relay refused the bench client: {event:?}")
                }
                _ => {}
            }
        }
        // Events are queued by transmits above; loop again before waiting.
        let wake = match turn.poll(now(base)) {
            TurnPollRet::WaitUntil(t) => base + Duration::from_nanos(t.as_nanos().max(0) as u64),
            TurnPollRet::Closed => bail!("the relay closed the allocation"),
            _ => Instant::now() + Duration::from_millis(10),
        };
        if Instant::now() > deadline {
            bail!("no allocation and channel from the relay at {relay} within 5 s");
        }
        let wake = wake.min(deadline);
        let got = tokio::select! {
            r = socket.recv_from(&mut buf) => Some(r?),
            () = tokio::time::sleep_until(wake.into()) => None,
        };
        if let Some((n, from)) = got {
            let t = turn_client_proto::stun::agent::Transmit::new(
                &buf[..n],
                TransportType::Udp,
                from,
                local,
            );
            if let TurnRecvRet::Ignored(_) = turn.recv(t, now(base)) {}
        }
    }
}

async fn measure(target: &Target, args: &RelayArgs) -> anyhow::Result<Row> {
    let peer = StdUdpSocket::bind((PEER_IP, 0))?;
    peer.set_read_timeout(Some(Duration::from_millis(100)))?;
    let (client, frame) = channel_to(target.addr, peer.local_addr()?, args.payload).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let counter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let (mut packets, mut bytes) = (0u64, 0u64);
            let mut quiet_since = None;
            loop {
                match peer.recv(&mut buf) {
                    Ok(n) => {
                        packets += 1;
                        bytes += n as u64;
                        quiet_since = None;
                    }
                    Err(_) if stop.load(Ordering::Relaxed) => {
                        // The sender is done: whatever is still in flight gets 300 ms.
                        let since = *quiet_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_millis(300) {
                            return (packets, bytes);
                        }
                    }
                    Err(_) => {}
                }
            }
        })
    };
    let seconds = Duration::from_secs(args.seconds.max(1));
    let rate = args.rate;
    let cpu0 = proc_cpu_time(target.pid)?;
    let started = Instant::now();
    let sender = std::thread::spawn(move || {
        let end = Instant::now() + seconds;
        let t0 = Instant::now();
        let mut sent = 0u64;
        while Instant::now() < end {
            if rate > 0 {
                let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
                if sent >= due {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
            }
            // A refused send (a full buffer, ICMP from a previous run) is not counted.
            for _ in 0..32 {
                if client.send(&frame).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    });
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))?;
    let elapsed = started.elapsed().as_secs_f64();
    // Relay CPU is read once the in-flight packets have been forwarded.
    stop.store(true, Ordering::Relaxed);
    let (delivered, bytes) = counter
        .join()
        .map_err(|_| anyhow::anyhow!("counter panicked"))?;
    let relay_cpu = (proc_cpu_time(target.pid)? - cpu0).as_secs_f64();
    Ok(Row {
        name: target.name.clone(),
        sent,
        delivered,
        bytes,
        seconds: elapsed,
        relay_cpu,
    })
}

pub(crate) async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let embedded_dir = dir.path().join("embedded");
    std::fs::create_dir_all(&embedded_dir)?;
    let target = embedded(&embedded_dir, args.payload).await?;
    rows.push(measure(&target, &args).await?);
    drop(target);
    if args.no_coturn {
        notes.push("coturn skipped (--no-coturn)".to_owned());
    } else {
        let coturn_dir = dir.path().join("coturn");
        std::fs::create_dir_all(&coturn_dir)?;
        match coturn(&coturn_dir).await {
            Ok(target) => rows.push(measure(&target, &args).await?),
            Err(e) => notes.push(format!("coturn not measured: {e:#}")),
        }
    }

    if args.json {
        let out = serde_json::json!({
            "payload_bytes": args.payload,
            "seconds": args.seconds,
            "rate": args.rate,
            "relays": rows.iter().map(Row::json).collect::<Vec<_>>(),
            "notes": notes,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "sealdesk bench relay (loopback, one allocation, client -> relay -> peer over a channel, \
         {}-byte payloads, {} s, offered {}, {} cores)",
        args.payload,
        args.seconds,
        if args.rate == 0 {
            "flat out".to_owned()
        } else {
            format!("{} pps", args.rate)
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  {:<9} {:>11} {:>13} {:>7} {:>10} {:>10} {:>9} {:>15}",
        "relay",
        "offered pps",
        "delivered pps",
        "loss",
        "Mbit/s",
        "relay CPU",
        "pps/core",
        "Mbit/s per core"
    );
    for r in &rows {
        let j = r.json();
        let f = |k: &str| j[k].as_f64().unwrap_or(0.0);
        println!(
            "  {:<9} {:>11.0} {:>13.0} {:>6.1}% {:>10.1} {:>9.0}% {:>9.0} {:>15.0}",
            r.name,
            f("offered_pps"),
            f("delivered_pps"),
            f("loss_percent"),
            f("delivered_mbit_s"),
            f("relay_cpu_percent"),
            f("pps_per_core"),
            f("mbit_s_per_core"),
        );
    }
    for n in notes {
        println!("  {n}");
    }
    Ok(())
}
