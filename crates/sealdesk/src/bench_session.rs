//! `sealdesk bench session`: a whole session on real parts, measured.
//!
//! An Xvfb display (1920×1080 by default) with a page of text drawn by this process, an
//! embedded signaling server, `sealdesk host` and `sealdesk connect --headless` as child
//! processes on loopback. It reports the time from `connect` starting to dial until its first
//! decoded frame, then runs scenarios — *idle*, *typing* (one character drawn every 1/60 s,
//! like very fast typing), *scrolling* (the page moves up one line every 1/60 s) — and for
//! each reports the viewer's decoded fps and video bitrate (from its once-a-second stats
//! lines) and the host process's CPU use (from `/proc`). Figures, not pass/fail.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use sealdesk_media::xvfb::Xvfb;
use sealdesk_server::{Server, ServerConfig};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{ChangeGCAux, ConnectionExt as _, EventMask, Gcontext, Window};
use x11rb::rust_connection::RustConnection;

use crate::bench::proc_cpu_time;
use crate::xwin::Canvas;

#[derive(Debug, Args)]
pub(crate) struct SessionArgs {
    /// Screen width.
    #[arg(long, default_value_t = 1920)]
    width: u16,
    /// Screen height.
    #[arg(long, default_value_t = 1080)]
    height: u16,
    /// Seconds per scenario (the first second is not counted).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Video codec the host prefers (vp9 or vp8).
    #[arg(long, default_value = "vp9")]
    codec: String,
    /// Host and viewer offer only relayed candidates: everything goes through the server's
    /// embedded TURN relay (on loopback, so this measures the relay's own cost: allocation
    /// before the offer, and forwarding).
    #[arg(long)]
    relay_only: bool,
    /// Host and viewer offer only their own addresses (no relay allocation before the offer).
    #[arg(long, conflicts_with = "relay_only")]
    no_relay: bool,
    /// The host records the session (end-to-end encrypted, to a key made for the bench):
    /// adds the recording's bytes per minute per scenario, and the export speed afterwards.
    /// Run with and without to see the recording's CPU cost.
    #[arg(long)]
    record: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Bytes in the files under `dir` (all recordings' segments so far).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// A child `sealdesk` process with its stdout lines on a channel.
struct Child {
    child: tokio::process::Child,
    pid: u32,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Child {
    fn spawn(args: &[&str], data: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the sealdesk executable")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("--data-dir")
            .arg(data)
            .args(args)
            // The children's logs go to stderr; SEALDESK_BENCH_LOG picks their level.
            .env(
                "SEALDESK_LOG",
                std::env::var("SEALDESK_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start sealdesk")?;
        let pid = child.id().context("exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, pid, lines })
    }

    /// The rest of the next line starting with `prefix`, within `within`.
    async fn wait(&mut self, prefix: &str, within: Duration) -> anyhow::Result<String> {
        let found = tokio::time::timeout(within, async {
            while let Some(line) = self.lines.recv().await {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return Some(rest.to_owned());
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(rest)) => Ok(rest),
            _ => bail!("no {prefix:?} line from sealdesk within {within:?}"),
        }
    }

    async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.child.stdin.as_mut().context("no stdin")?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }
}

/// One scenario's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    fps: f64,
    kbps: f64,
    host_cpu: f64,
    /// Recording bytes per minute (with --record).
    recorded_per_min: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Idle,
    Typing,
    Scrolling,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Typing => "typing",
            Scenario::Scrolling => "scrolling",
        }
    }
}

/// A page of text on the display, and what the scenarios do to it.
struct Page {
    conn: RustConnection,
    window: Window,
    gc: Gcontext,
    width: u16,
    height: u16,
    line: u16,
    column: u16,
    row: u16,
    n: u64,
}

/// Time for the first picture's refinements to finish before anything is measured.
const SETTLE: Duration = Duration::from_secs(3);
const LINE: u16 = 14;
const CHAR: u16 = 6;
const WORDS: &[u8] = b"the quick brown fox jumps over the lazy dog while the remote desktop stays end to end encrypted ";

impl Page {
    fn open(display: &str) -> anyhow::Result<Self> {
        let Canvas {
            conn,
            window,
            gc,
            width,
            height,
        } = Canvas::open(display, 0xf8_f8_f8, 0x20_20_20, EventMask::NO_EVENT)?;
        let mut page = Self {
            conn,
            window,
            gc,
            width,
            height,
            line: 0,
            column: 0,
            row: 1,
            n: 0,
        };
        for row in 1..height / LINE {
            page.text_line(row)?;
        }
        page.conn.flush()?;
        Ok(page)
    }

    fn text_line(&mut self, row: u16) -> anyhow::Result<()> {
        let cols = usize::from(self.width / CHAR).min(250);
        let start = usize::from(self.line) * 7 % WORDS.len();
        let text: Vec<u8> = WORDS
            .iter()
            .cycle()
            .skip(start)
            .take(cols)
            .copied()
            .collect();
        self.line = self.line.wrapping_add(1);
        self.conn.image_text8(
            self.window,
            self.gc,
            0,
            i16::try_from(row * LINE).unwrap_or(i16::MAX),
            &text,
        )?;
        Ok(())
    }

    /// One step of a scenario (called every 1/60 s).
    fn step(&mut self, scenario: Scenario) -> anyhow::Result<()> {
        match scenario {
            Scenario::Idle => return Ok(()),
            Scenario::Typing => {
                // A character at the cursor of a small text area, like someone typing.
                let c = WORDS[(self.n as usize) % WORDS.len()];
                self.n += 1;
                let x = i16::try_from(20 + self.column * CHAR).unwrap_or(0);
                let y = i16::try_from(self.height / 2 + self.row * LINE).unwrap_or(0);
                self.conn
                    .change_gc(self.gc, &ChangeGCAux::new().foreground(0x00_30_a0))?;
                self.conn.image_text8(self.window, self.gc, x, y, &[c])?;
                self.conn
                    .change_gc(self.gc, &ChangeGCAux::new().foreground(0x20_20_20))?;
                self.column += 1;
                if self.column >= 80 {
                    (self.column, self.row) = (0, self.row % 8 + 1);
                }
            }
            Scenario::Scrolling => {
                // The page moves up one line; a new line appears at the bottom.
                self.conn.copy_area(
                    self.window,
                    self.window,
                    self.gc,
                    0,
                    i16::try_from(LINE).unwrap_or(0),
                    0,
                    0,
                    self.width,
                    self.height - LINE,
                )?;
                let bottom = self.height / LINE - 1;
                self.conn.clear_area(
                    false,
                    self.window,
                    0,
                    i16::try_from((bottom - 1) * LINE).unwrap_or(0),
                    self.width,
                    LINE * 2,
                )?;
                self.text_line(bottom)?;
            }
        }
        self.conn.flush()?;
        Ok(())
    }
}

/// Parses `stats: 60 fps · 180 kbps · rtt 2 ms · direct`.
fn parse_stats(line: &str) -> Option<(f64, f64)> {
    let mut parts = line.split(" · ");
    let fps = parts.next()?.strip_suffix(" fps")?.trim().parse().ok()?;
    let kbps = parts.next()?.strip_suffix(" kbps")?.trim().parse().ok()?;
    Some((fps, kbps))
}

pub(crate) async fn run(args: SessionArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let xvfb = Xvfb::start(u32::from(args.width), u32::from(args.height))?;
    let mut page = Page::open(xvfb.display())?;
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: Some(dir.path().join("server")),
        ..ServerConfig::default()
    })
    .await?;
    let url = server.url();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));

    // By default both also gather a relayed candidate (as every session does) and ICE picks
    // the direct path; --relay-only leaves only the relayed one.
    let path_flag: &[&str] = if args.relay_only {
        &["--relay-only"]
    } else if args.no_relay {
        &["--no-relay"]
    } else {
        &[]
    };
    let mut host_args = vec![
        "host",
        "--server",
        &url,
        "--display",
        xvfb.display(),
        "--no-qr",
        "--codec",
        &args.codec,
    ];
    host_args.extend_from_slice(path_flag);
    let host_dir = dir.path().join("host");
    let recs = dir.path().join("recordings");
    let (cert, recs_arg) = (
        host_dir.join("recordings").join("owner.cert"),
        recs.to_string_lossy().into_owned(),
    );
    let cert_arg = cert.to_string_lossy().into_owned();
    if args.record {
        let mut keygen = Child::spawn(&["recordings", "keygen", "--label", "bench"], &host_dir)?;
        let status = keygen.child.wait().await?;
        if !status.success() {
            bail!("recordings keygen failed");
        }
        host_args.extend_from_slice(&["--record-to", &cert_arg, "--record-dir", &recs_arg]);
    }
    let mut host = Child::spawn(&host_args, &host_dir)?;
    let code = host.wait("code: ", Duration::from_secs(30)).await?;
    let mut viewer_args = vec!["connect", &code, "--server", &url, "--headless"];
    viewer_args.extend_from_slice(path_flag);
    let mut viewer = Child::spawn(&viewer_args, &dir.path().join("viewer"))?;
    // The bench answers the consent prompt the moment it appears (a person takes longer;
    // that time is theirs, not the system's).
    host.wait("Allow? ", Duration::from_secs(30)).await?;
    host.send("y").await?;
    let connected = viewer
        .wait("connected in ", Duration::from_secs(30))
        .await?;
    let connected_ms: f64 = connected
        .split(" ms")
        .next()
        .and_then(|s| s.trim().parse().ok())
        .context("cannot read the connect time")?;
    let first = viewer.wait("first frame ", Duration::from_secs(30)).await?;
    // "1920x1080 after 123 ms": measured by the viewer from the start of dialing.
    let first_ms: f64 = first
        .split(" after ")
        .nth(1)
        .and_then(|s| s.trim_end_matches(" ms").parse().ok())
        .context("cannot read the first-frame time")?;

    // The path the viewer reports must be the one asked for.
    let want = if args.relay_only { "relay" } else { "direct" };
    let path = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = viewer.wait("stats: ", Duration::from_secs(10)).await?;
            if let Some(p) = ["relay", "direct"]
                .into_iter()
                .find(|p| line.ends_with(&format!("· {p}")))
            {
                return anyhow::Ok(p);
            }
        }
    })
    .await
    .context("the viewer reported no path")??;
    if path != want {
        bail!("the session went {path}, not {want}");
    }
    // Let the first keyframe's refinements finish, so "idle" is the idle screen.
    tokio::time::sleep(SETTLE).await;
    let mut results = Vec::new();
    for scenario in [Scenario::Idle, Scenario::Typing, Scenario::Scrolling] {
        // Settle, then measure.
        let end = Instant::now() + Duration::from_secs(args.seconds);
        let warmup = Instant::now() + Duration::from_secs(1);
        let mut samples = Vec::new();
        let mut cpu0 = None;
        let mut rec0 = 0;
        let mut tick = tokio::time::interval(Duration::from_micros(16_667));
        while Instant::now() < end {
            tick.tick().await;
            page.step(scenario)?;
            if cpu0.is_none() && Instant::now() >= warmup {
                cpu0 = Some((Instant::now(), proc_cpu_time(host.pid)?));
                rec0 = tree_bytes(&recs);
                while viewer.lines.try_recv().is_ok() {}
            }
            while let Ok(line) = viewer.lines.try_recv() {
                if cpu0.is_some() {
                    if let Some(s) = line.strip_prefix("stats: ").and_then(parse_stats) {
                        samples.push(s);
                    }
                }
            }
        }
        let (t0, c0) = cpu0.context("scenario too short")?;
        let host_cpu =
            (proc_cpu_time(host.pid)? - c0).as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0;
        let recorded_per_min = args.record.then(|| {
            (tree_bytes(&recs).saturating_sub(rec0)) as f64 / t0.elapsed().as_secs_f64() * 60.0
        });
        let n = samples.len().max(1) as f64;
        let fps = samples.iter().map(|s| s.0).sum::<f64>() / n;
        let kbps = samples.iter().map(|s| s.1).sum::<f64>() / n;
        results.push((
            scenario,
            Figures {
                fps,
                kbps,
                host_cpu,
                recorded_per_min,
            },
        ));
    }
    viewer.send("end").await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), viewer.child.wait()).await;
    let _ = host.send("q").await;
    let _ = tokio::time::timeout(Duration::from_secs(5), host.child.wait()).await;
    let _ = stop_tx.send(());
    let _ = server_task.await;
    // The export's own report: "wrote F: N frames, S s of video, from K segments in T s (X× real time)".
    let mut export = None;
    if args.record {
        let rec = std::fs::read_dir(&recs)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .next()
            .context("the host made no recording")?;
        let out = dir.path().join("bench.webm");
        let (rec_s, out_s) = (
            rec.to_string_lossy().into_owned(),
            out.to_string_lossy().into_owned(),
        );
        let mut child = Child::spawn(
            &["recordings", "export", "--quiet", &rec_s, "-o", &out_s],
            &host_dir,
        )?;
        let line = child.wait("wrote ", Duration::from_secs(300)).await?;
        let _ = child.child.wait().await;
        let number_before = |marker: &str| -> Option<f64> {
            let head = line.split(marker).next()?;
            head.rsplit([' ', '(']).next()?.parse().ok()
        };
        let (video_s, took_s) = (
            number_before(" s of video").context("cannot read the export's length")?,
            line.rsplit(" in ")
                .next()
                .and_then(|t| t.split(" s").next())
                .and_then(|t| t.parse::<f64>().ok())
                .context("cannot read the export's time")?,
        );
        export = Some((
            video_s,
            took_s,
            std::fs::metadata(&out).map_or(0, |m| m.len()),
        ));
    }

    if args.json {
        let scenarios: Vec<serde_json::Value> = results
            .iter()
            .map(|(s, f)| {
                serde_json::json!({"scenario": s.name(), "fps": f.fps, "kbps": f.kbps, "host_cpu_percent": f.host_cpu, "recording_bytes_per_min": f.recorded_per_min})
            })
            .collect();
        let out = serde_json::json!({
            "width": args.width, "height": args.height, "codec": args.codec,
            "path": if args.relay_only { "relay" } else { "direct" },
            "first_frame_ms": first_ms, "transport_verified_ms": connected_ms,
            "scenarios": scenarios,
            "record": args.record,
            "export": export.map(|(v, t, b)| serde_json::json!({"video_seconds": v, "seconds": t, "webm_bytes": b})),
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "sealdesk bench session ({}x{} Xvfb, {}, {}, loopback, host and viewer as separate processes, {} cores)",
        args.width,
        args.height,
        args.codec,
        if args.relay_only {
            "through the embedded TURN relay"
        } else {
            "direct"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  connect -> transport verified  {connected_ms:7.0} ms  (handshake, consent answered at once, ICE, DTLS, fingerprints)"
    );
    println!("  connect -> first decoded frame {first_ms:7.0} ms");
    for (s, f) in &results {
        println!(
            "  {:<10} {:6.1} fps  {:8.0} kbps  host CPU {:5.1} % of one core",
            s.name(),
            f.fps,
            f.kbps,
            f.host_cpu
        );
        if let Some(b) = f.recorded_per_min {
            println!("  {:<10} recording {:8.0} kB per minute", "", b / 1e3);
        }
    }
    if let Some((video, took, bytes)) = export {
        println!(
            "  export to WebM: {video:.1} s of session in {took:.2} s ({:.0}× real time), {:.1} MB",
            video / took.max(1e-6),
            bytes as f64 / 1e6
        );
    }
    Ok(())
}
