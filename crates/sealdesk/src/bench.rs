//! `sealdesk bench`: measurements that print figures (never timed tests).
//!
//! `bench signaling` starts a real `sealdesk server` process on loopback, holds N idle
//! registered devices and reads the server's resident memory from `/proc`, then
//! measures envelope round trips (device A → server → device B → server → A) at a
//! steady rate while those devices stay connected.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use futures_util::StreamExt as _;
use sealdesk_auth::IdentityKey;
use sealdesk_client::signal::connect_raw;
use sealdesk_client::{ClientConfig, SignalClient, SignalEvent};
use sealdesk_proto::{Body, SessionId};
use tokio::io::{AsyncBufReadExt as _, BufReader};

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Signaling server: memory per idle device and envelope round-trip latency.
    Signaling(SignalingArgs),
    /// A whole session on Xvfb: first-frame time, fps, bitrate and host CPU per scenario.
    Session(crate::bench_session::SessionArgs),
    /// TURN forwarding rate of the embedded relay and of coturn, side by side.
    Relay(crate::bench_relay::RelayArgs),
    /// The browser viewer in headless Chromium: first-picture time, presented fps and
    /// bitrate per scenario (needs a checkout with web/node_modules and Debian's chromium).
    Browser(crate::bench_browser::BrowserArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SignalingArgs {
    /// Idle registered devices to hold (each needs a file descriptor in this process
    /// and in the server: keep below the open-file limit).
    #[arg(long, default_value_t = 19_000)]
    idle: usize,
    /// Envelopes per second sent by the measuring device (each is echoed back).
    #[arg(long, default_value_t = 10_000)]
    rate: u32,
    /// Seconds of round-trip measurement (after 1 s of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Envelope body size in bytes.
    #[arg(long, default_value_t = 256)]
    body: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Signaling(args) => signaling(args).await,
        BenchCommand::Session(args) => crate::bench_session::run(args).await,
        BenchCommand::Relay(args) => crate::bench_relay::run(args).await,
        BenchCommand::Browser(args) => crate::bench_browser::run(args).await,
    }
}

/// A `sealdesk server` child process.
pub(crate) struct ServerProcess {
    child: tokio::process::Child,
    pub(crate) pid: u32,
    url: String,
    /// The embedded TURN relay's address, if it runs one.
    pub(crate) relay: Option<std::net::SocketAddr>,
}

impl ServerProcess {
    pub(crate) async fn start(dir: &Path, config_toml: &str) -> anyhow::Result<Self> {
        let config = dir.join("server.toml");
        std::fs::write(&config, config_toml)?;
        let exe = std::env::current_exe().context("cannot find the sealdesk executable")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("server")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("SEALDESK_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start sealdesk server")?;
        let pid = child.id().context("server exited at once")?;
        let stdout = child.stdout.take().context("no server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut relay = None;
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("sealdesk server: TURN relay on udp ") {
                    relay = addr.parse().ok();
                }
                if let Some(url) = line.strip_prefix("listening on ") {
                    return Ok(url.to_owned());
                }
            }
            bail!("server exited before listening")
        })
        .await
        .context("server did not start within 30 s")??;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            pid,
            url,
            relay,
        })
    }

    fn rss_bytes(&self) -> anyhow::Result<u64> {
        proc_status_bytes(self.pid, "VmRSS")
    }

    /// User + system CPU time consumed so far.
    fn cpu_time(&self) -> anyhow::Result<Duration> {
        proc_cpu_time(self.pid)
    }
}

/// A size field (`VmRSS`, `VmHWM`, …) of `/proc/PID/status`, in bytes.
pub(crate) fn proc_status_bytes(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(kb * 1024)
}

/// User + system CPU time process `pid` has consumed so far (all its threads).
pub(crate) fn proc_cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11usize, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // Linux reports in USER_HZ, which is 100 on every supported architecture.
    Ok(Duration::from_millis(ticks * 10))
}

struct Report {
    idle: usize,
    connect_secs: f64,
    rss_base: u64,
    rss_idle: u64,
    rate: u32,
    seconds: u64,
    sent: u64,
    received: u64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
    server_cpu_pct: f64,
}

impl Report {
    fn per_conn(&self) -> f64 {
        (self.rss_idle.saturating_sub(self.rss_base)) as f64 / self.idle.max(1) as f64
    }

    fn devices_per_gb(&self) -> f64 {
        // Whole server RSS counted, baseline included.
        self.idle as f64 / (self.rss_idle as f64 / (1u64 << 30) as f64)
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "idle_devices": self.idle,
            "connect_seconds": self.connect_secs,
            "registrations_per_second": self.idle as f64 / self.connect_secs,
            "server_rss_baseline_bytes": self.rss_base,
            "server_rss_idle_bytes": self.rss_idle,
            "rss_bytes_per_idle_device": self.per_conn(),
            "idle_devices_per_gb_rss": self.devices_per_gb(),
            "envelope_rate_per_second": self.rate,
            "seconds": self.seconds,
            "envelopes_sent": self.sent,
            "round_trips_received": self.received,
            "round_trip_us": {"p50": self.p50_us, "p90": self.p90_us, "p99": self.p99_us, "max": self.max_us},
            "server_cpu_percent_of_one_core": self.server_cpu_pct,
        })
    }

    fn print_table(&self) {
        println!("sealdesk bench signaling (loopback, one server process)");
        println!("  idle registered devices        {:>12}", self.idle);
        println!(
            "  time to connect + register     {:>12.2} s ({:.0}/s)",
            self.connect_secs,
            self.idle as f64 / self.connect_secs
        );
        println!(
            "  server RSS before              {:>12.1} MiB",
            self.rss_base as f64 / 1048576.0
        );
        println!(
            "  server RSS with idle devices   {:>12.1} MiB",
            self.rss_idle as f64 / 1048576.0
        );
        println!(
            "  RSS per idle device            {:>12.0} bytes",
            self.per_conn()
        );
        println!(
            "  idle devices per GiB of RSS    {:>12.0}   (goal >= 100000)",
            self.devices_per_gb()
        );
        println!(
            "  envelope rate                  {:>12} /s for {} s",
            self.rate, self.seconds
        );
        println!(
            "  round trips measured           {:>12} of {} sent",
            self.received, self.sent
        );
        println!(
            "  round trip p50                 {:>12.3} ms",
            self.p50_us as f64 / 1000.0
        );
        println!(
            "  round trip p90                 {:>12.3} ms",
            self.p90_us as f64 / 1000.0
        );
        println!(
            "  round trip p99                 {:>12.3} ms   (goal < 5)",
            self.p99_us as f64 / 1000.0
        );
        println!(
            "  round trip max                 {:>12.3} ms",
            self.max_us as f64 / 1000.0
        );
        println!(
            "  server CPU during round trips  {:>12.0} % of one core",
            self.server_cpu_pct
        );
    }
}

async fn signaling(args: SignalingArgs) -> anyhow::Result<()> {
    let fds = crate::raise_fd_limit();
    if (fds as usize) < args.idle + 100 {
        bail!(
            "open-file limit {fds} is too low for {} connections",
            args.idle
        );
    }
    let dir = tempfile::tempdir()?;
    let config = format!(
        "listen = \"127.0.0.1:0\"\n[limits]\nmax_connections = {}\nper_ip_connections_per_sec = 1000000\n\
         per_ip_burst = 1000000\nenvelopes_per_sec = {}\nenvelope_burst = {}\nidle_timeout_secs = 3600\n\
         registration_timeout_secs = 120\n",
        args.idle + 100,
        args.rate.saturating_mul(2).max(1),
        args.rate.saturating_mul(2).max(1),
    );
    let server = ServerProcess::start(dir.path(), &config).await?;
    let mut cfg = ClientConfig::new(server.url.clone());
    cfg.connect_timeout = Duration::from_secs(120);

    // Baseline: the server with one device connected (runtime threads warmed up).
    let warm = connect_raw(&cfg, &IdentityKey::generate(&mut rand::rngs::OsRng)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_base = server.rss_bytes()?;

    eprintln!("connecting {} idle devices ...", args.idle);
    let started = Instant::now();
    // Spread connections over many loopback source addresses, 1000 each, fresh per run:
    // binding a source address reserves its port outright, and TIME_WAIT sockets of
    // earlier runs still hold theirs.
    let octet = (std::process::id() % 200) as u8 + 20;
    let sockets: Vec<_> = futures_util::stream::iter(0..args.idle)
        .map(|i| {
            let mut cfg = cfg.clone();
            let third = ((i / 1000) % 250) as u8;
            cfg.local_ip = Some(std::net::IpAddr::from([127, octet, third, 1]));
            async move {
                let key = IdentityKey::generate(&mut rand::rngs::OsRng);
                connect_raw(&cfg, &key).await
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = server.rss_bytes()?;
    eprintln!(
        "measuring round trips at {}/s for {} s ...",
        args.rate, args.seconds
    );

    let (rtts, sent, cpu_pct) = round_trips(&server, &cfg, &args).await?;
    let pick = |q: f64| rtts.value_at_quantile(q);
    let report = Report {
        idle: sockets.len(),
        connect_secs,
        rss_base,
        rss_idle,
        rate: args.rate,
        seconds: args.seconds,
        sent,
        received: rtts.len(),
        p50_us: pick(0.5),
        p90_us: pick(0.9),
        p99_us: pick(0.99),
        max_us: rtts.max(),
        server_cpu_pct: cpu_pct,
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        report.print_table();
    }
    drop(sockets);
    drop(warm);
    let mut child = server.child;
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok(())
}

/// Device A sends at a steady rate to device B, which echoes each envelope back.
/// Returns the histogram of round trips (µs), the number sent in the measured
/// window, and the server's CPU use during it.
async fn round_trips(
    server: &ServerProcess,
    cfg: &ClientConfig,
    args: &SignalingArgs,
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, u64, f64)> {
    let a_key = Arc::new(IdentityKey::generate(&mut rand::rngs::OsRng));
    let b_key = Arc::new(IdentityKey::generate(&mut rand::rngs::OsRng));
    let mut a = SignalClient::connect(cfg.clone(), a_key).await?;
    let mut b = SignalClient::connect(cfg.clone(), b_key).await?;
    let b_number = b.routing_number();
    let echo = tokio::spawn(async move {
        while let Some(ev) = b.next_event().await {
            if let SignalEvent::Envelope {
                from,
                session,
                body,
            } = ev
            {
                if b.send(from, session, body).await.is_err() {
                    break;
                }
            }
        }
    });
    let session = SessionId([7; 16]);
    let warmup = Duration::from_secs(1);
    let measure = Duration::from_secs(args.seconds);
    let total = ((warmup + measure).as_secs_f64() * f64::from(args.rate)) as u64;
    let mut sent_at: Vec<Option<Instant>> = Vec::with_capacity(total as usize);
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq: u64 = 0;
    let mut measured_sent = 0u64;
    let mut cpu_start = None;
    let first_measured = (warmup.as_secs_f64() * f64::from(args.rate)) as u64;
    let drain_until = start + warmup + measure + Duration::from_secs(2);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                if now >= drain_until {
                    break;
                }
                let due = ((now - start).as_secs_f64() * f64::from(args.rate)) as u64;
                while seq < due.min(total) {
                    if seq == first_measured {
                        cpu_start = Some((Instant::now(), server.cpu_time()?));
                    }
                    let mut body = vec![0u8; args.body.max(8)];
                    body[..8].copy_from_slice(&seq.to_be_bytes());
                    sent_at.push(Some(Instant::now()));
                    a.send(b_number, session, Body::new(body)?).await?;
                    if seq >= first_measured {
                        measured_sent += 1;
                    }
                    seq += 1;
                }
            }
            ev = a.next_event() => {
                let now = Instant::now();
                match ev {
                    Some(SignalEvent::Envelope { from, body, .. }) if from == b_number => {
                        let Some(idx) = body.as_bytes().get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes) else { continue };
                        if let Some(slot) = sent_at.get_mut(idx as usize) {
                            if let Some(t) = slot.take() {
                                if idx >= first_measured {
                                    hist.record((now - t).as_micros() as u64)?;
                                }
                            }
                        }
                        if seq >= total && hist.len() >= measured_sent {
                            break;
                        }
                    }
                    Some(SignalEvent::Error { code, message, .. }) => bail!("envelope refused: {code:?} {message}"),
                    Some(SignalEvent::Disconnected { reason, .. }) => bail!("measuring device disconnected: {reason}"),
                    Some(_) => {}
                    None => bail!("measuring device stopped"),
                }
            }
        }
    }
    let cpu_pct = match cpu_start {
        Some((t0, c0)) => {
            let wall = t0.elapsed().as_secs_f64();
            let cpu = server.cpu_time()?.saturating_sub(c0).as_secs_f64();
            100.0 * cpu / wall.max(1e-9)
        }
        None => 0.0,
    };
    echo.abort();
    Ok((hist, measured_sent, cpu_pct))
}
