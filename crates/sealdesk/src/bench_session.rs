//! `sealdesk bench session`: a whole session on real parts, measured.
//!
//! For each screen size (720p, 1080p and 1440p by default): an Xvfb display with a page of
//! text drawn by this process, an embedded signaling server, and `sealdesk host` and
//! `sealdesk connect --headless` as child processes on loopback. It reports the time from
//! `connect` starting to dial until its first decoded frame, then runs scenarios — *idle*,
//! *typing* (one character drawn every 1/60 s, like very fast typing), *scrolling* (the page
//! moves up one line every 1/60 s), *video* (full-screen motion every 1/60 s).
//!
//! Each change also paints a frame stamp ([`crate::stamp`]) and notes when the X server
//! had drawn it; the viewer (`--stamps`) prints when a decoded picture first shows each
//! stamp, on the same wall clock. The difference is glass-to-glass latency: capture,
//! convert, encode, DTLS/SRTP, the network stack, decode, convert — everything but the
//! display's scan-out. Then the *floor*: the same changes through the host's own capture
//! pipeline in this process, decoded on the spot — no network, no DTLS/SRTP, no second
//! process, nothing else running — so latency can be read as a ratio to what this machine,
//! with this pipeline, cannot beat. Then the *peer*: x11vnc on the same display with the same
//! page, read by a VNC client that reads the same stamps ([`crate::bench_peer`]), so that
//! latency and bytes can be read as a ratio to a remote desktop Linux users already run.
//!
//! Per scenario: latency p50/p95/p99, the floor, stamps seen of painted, the viewer's
//! decoded fps and video bitrate (its stats lines), host and viewer CPU (`/proc`); per size
//! the processes' peak RSS. Figures, not pass/fail: `--quick` fails only when no stamp
//! gets through.

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
use x11rb::protocol::xproto::{
    ChangeGCAux, ConnectionExt as _, CreateGCAux, EventMask, Gcontext, Rectangle, Window,
};
use x11rb::rust_connection::RustConnection;

use crate::bench::proc_cpu_time;
use crate::xwin::Canvas;

#[derive(Debug, Clone, Args)]
pub(crate) struct SessionArgs {
    /// Screen sizes to run, each with a fresh display, server, host and viewer.
    /// [default: 1280x720,1920x1080,2560x1440; with --quick: 1280x720]
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    sizes: Vec<(u16, u16)>,
    #[arg(skip)]
    width: u16,
    #[arg(skip)]
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
    /// Also draw the latency CDFs of every size and scenario (and their floors) to this SVG.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
    /// Leave out the peer (x11vnc read by a VNC client on the same display; left out
    /// anyway when x11vnc is not installed).
    #[arg(long)]
    no_peer: bool,
    /// A smoke test (CI): 3 s per scenario. Fails only when the pipeline is broken (no
    /// frames, no readable stamps), never on a timing.
    #[arg(long)]
    quick: bool,
}

/// Peak resident memory of a process (`VmHWM`), bytes.
fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    crate::bench::proc_status_bytes(pid, "VmHWM")
}

/// The `q`-quantile of sorted values.
/// `a / b`, when both are known and `b` is not zero.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

pub(crate) fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).copied()
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
pub(crate) struct Child {
    pub(crate) child: tokio::process::Child,
    pub(crate) pid: u32,
    pub(crate) lines: mpsc::UnboundedReceiver<String>,
}

impl Child {
    pub(crate) fn spawn(args: &[&str], data: &Path) -> anyhow::Result<Self> {
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
    pub(crate) async fn wait(&mut self, prefix: &str, within: Duration) -> anyhow::Result<String> {
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

    pub(crate) async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.child.stdin.as_mut().context("no stdin")?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }
}

/// One scenario's figures.
#[derive(Debug, Clone)]
struct Figures {
    fps: f64,
    kbps: f64,
    host_cpu: f64,
    viewer_cpu: f64,
    /// Glass-to-glass latencies of the stamps the viewer saw, sorted (ms).
    latency_ms: Vec<f64>,
    /// The same in one process with no network (see [`floor`]), ms, sorted.
    floor_ms: Vec<f64>,
    /// Stamps painted while measuring, and how many of them the viewer decoded.
    stamps_painted: usize,
    stamps_seen: usize,
    /// Recording bytes per minute (with --record).
    recorded_per_min: Option<f64>,
    /// The same scenario through the peer (x11vnc), when it ran.
    peer: Option<PeerFigures>,
}

/// One scenario through x11vnc and a VNC client (see [`crate::bench_peer`]).
#[derive(Debug, Clone)]
struct PeerFigures {
    /// Glass-to-glass latencies of the stamps the client saw, sorted (ms).
    latency_ms: Vec<f64>,
    kbps: f64,
    server_cpu: f64,
    stamps_painted: usize,
    stamps_seen: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    Idle,
    Typing,
    Scrolling,
    Video,
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Typing => "typing",
            Scenario::Scrolling => "scrolling",
            Scenario::Video => "video",
        }
    }
}

/// A page of text on the display, and what the scenarios do to it.
pub(crate) struct Page {
    conn: RustConnection,
    window: Window,
    gc: Gcontext,
    /// The frame stamp's colours.
    black: Gcontext,
    white: Gcontext,
    counter: u32,
    /// Each stamp painted: its counter, and when the X server had drawn it (wall ns).
    painted: Vec<(u32, u64)>,
    width: u16,
    height: u16,
    line: u16,
    column: u16,
    row: u16,
    n: u64,
}

/// Time for the first picture's refinements to finish before anything is measured.
pub(crate) const SETTLE: Duration = Duration::from_secs(3);
const LINE: u16 = 14;
const CHAR: u16 = 6;
const WORDS: &[u8] = b"the quick brown fox jumps over the lazy dog while the remote desktop stays end to end encrypted ";

impl Page {
    pub(crate) fn open(display: &str) -> anyhow::Result<Self> {
        let Canvas {
            conn,
            window,
            gc,
            width,
            height,
        } = Canvas::open(display, 0xf8_f8_f8, 0x20_20_20, EventMask::NO_EVENT)?;
        let (black, white) = (conn.generate_id()?, conn.generate_id()?);
        conn.create_gc(black, window, &CreateGCAux::new().foreground(0))?;
        conn.create_gc(white, window, &CreateGCAux::new().foreground(0x00ff_ffff))?;
        let mut page = Self {
            conn,
            window,
            gc,
            black,
            white,
            counter: 0,
            painted: Vec::new(),
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

    /// Paints the next frame stamp ([`crate::stamp`]) and notes when the X server has
    /// drawn it (after a round trip to it).
    fn stamp(&mut self) -> anyhow::Result<()> {
        self.counter = (self.counter + 1) & crate::stamp::MAX;
        let cell = crate::stamp::CELL;
        let (mut white, mut black) = (Vec::new(), Vec::new());
        for (i, w) in crate::stamp::cells(self.counter).into_iter().enumerate() {
            let r = Rectangle {
                x: i16::try_from(i as u16 * cell).unwrap_or(0),
                y: 0,
                width: cell,
                height: cell,
            };
            if w {
                white.push(r);
            } else {
                black.push(r);
            }
        }
        self.conn
            .poly_fill_rectangle(self.window, self.white, &white)?;
        self.conn
            .poly_fill_rectangle(self.window, self.black, &black)?;
        self.conn.get_input_focus()?.reply()?;
        self.painted.push((self.counter, crate::stamp::clock_ns()));
        Ok(())
    }

    /// One step of a scenario (called every 1/60 s).
    pub(crate) fn step(&mut self, scenario: Scenario) -> anyhow::Result<()> {
        match scenario {
            Scenario::Idle => return Ok(()),
            Scenario::Video => {
                // Full-screen motion: diagonal bands of colour that move 8 px a step.
                let band = 40u16;
                let shift = (self.n * 8) % u64::from(band * 8);
                self.n += 1;
                for i in 0..(self.width / band + 9) {
                    let x = i16::try_from(i32::from(i * band) - i32::try_from(shift).unwrap_or(0))
                        .unwrap_or(0);
                    let c = (u32::from(i % 8) * 0x1f_2b_11) ^ 0x40_80_c0;
                    self.conn
                        .change_gc(self.gc, &ChangeGCAux::new().foreground(c & 0x00ff_ffff))?;
                    self.conn.poly_fill_rectangle(
                        self.window,
                        self.gc,
                        &[Rectangle {
                            x,
                            y: 0,
                            width: band,
                            height: self.height,
                        }],
                    )?;
                }
                self.conn
                    .change_gc(self.gc, &ChangeGCAux::new().foreground(0x20_20_20))?;
            }
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
        self.stamp()?;
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

pub(crate) fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT"))?;
    let (w, h) = (
        w.parse::<u16>().map_err(|e| format!("width {w:?}: {e}"))?,
        h.parse::<u16>().map_err(|e| format!("height {h:?}: {e}"))?,
    );
    if !(320..=7680).contains(&w) || !(200..=4320).contains(&h) {
        return Err(format!("{w}x{h} is not a screen size this bench runs"));
    }
    Ok((w, h))
}

pub(crate) async fn run(args: SessionArgs) -> anyhow::Result<()> {
    let sizes = match (&args.sizes[..], args.quick) {
        ([], false) => vec![(1280, 720), (1920, 1080), (2560, 1440)],
        ([], true) => vec![(1280, 720)],
        (given, _) => given.to_vec(),
    };
    let mut curves = Vec::new();
    for (i, (width, height)) in sizes.into_iter().enumerate() {
        if i > 0 && !args.json {
            println!();
        }
        let mut one = args.clone();
        (one.width, one.height) = (width, height);
        curves.extend(run_size(one).await?);
    }
    if let Some(path) = &args.plot {
        plot_cdf(path, &curves)?;
        if !args.json {
            println!("\nlatency CDFs drawn to {}", path.display());
        }
    }
    Ok(())
}

/// The floor for `scenario`: the same changes and stamps, paced the same, through the
/// host's own capture pipeline (damage, active map, the encoder as the host sets it up) and
/// decoded and converted back to pixels on the spot — one process, no network, no DTLS/SRTP,
/// no viewer process, nothing else running. Glass-to-glass latencies per stamp (ms), sorted.
async fn floor(
    page: &mut Page,
    display: &str,
    codec: &str,
    scenario: Scenario,
    seconds: u64,
) -> anyhow::Result<Vec<f64>> {
    use sealdesk_host::pipeline::{Pipeline, PipelineConfig, PipelineOutput};
    use sealdesk_media::decode::Decoder;
    let codec = crate::host_cmd::parse_codec(codec).map_err(anyhow::Error::msg)?;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let mut decoder = Decoder::new(codec)?;
    let mut rgba = Vec::new();
    let sink = {
        let seen = seen.clone();
        move |out: PipelineOutput| {
            let PipelineOutput::Frame { data, .. } = out else {
                return true;
            };
            if let Ok(Some(picture)) = decoder.decode(&data) {
                let (w, h) = (picture.width(), picture.height());
                rgba.resize(w as usize * h as usize * 4, 0);
                if picture.to_rgba(&mut rgba, w as usize * 4).is_ok() {
                    // Black and white cells read the same in RGBA as in BGRA.
                    if let Some(n) = crate::stamp::read(&rgba, w) {
                        if let Ok(mut s) = seen.lock() {
                            s.entry(n).or_insert_with(crate::stamp::clock_ns);
                        }
                    }
                }
            }
            true
        }
    };
    let pipeline = Pipeline::start(
        PipelineConfig {
            display: Some(display.to_owned()),
            codec,
            ..PipelineConfig::default()
        },
        sink,
    )?;
    pipeline.release();
    let warmup = Instant::now() + Duration::from_secs(1);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut from = None;
    let mut tick = tokio::time::interval(Duration::from_micros(16_667));
    while Instant::now() < end {
        tick.tick().await;
        page.step(scenario)?;
        if from.is_none() && Instant::now() >= warmup {
            from = Some(page.painted.len());
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    pipeline.stop()?;
    let seen = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("the floor's sink crashed"))?;
    let mut out: Vec<f64> = page
        .painted
        .get(from.unwrap_or(usize::MAX)..)
        .unwrap_or(&[])
        .iter()
        .filter_map(|(n, tp)| seen.get(n).map(|td| td.saturating_sub(*tp) as f64 / 1e6))
        .collect();
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// `scenario` through the peer: the same changes and stamps, paced the same, read by the
/// VNC client from x11vnc's updates.
async fn peer(
    page: &mut Page,
    x11vnc: &crate::bench_peer::X11vnc,
    client: &crate::bench_peer::Client,
    scenario: Scenario,
    seconds: u64,
) -> anyhow::Result<PeerFigures> {
    use std::sync::atomic::Ordering;
    let warmup = Instant::now() + Duration::from_secs(1);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut from = None;
    let mut tick = tokio::time::interval(Duration::from_micros(16_667));
    while Instant::now() < end {
        tick.tick().await;
        page.step(scenario)?;
        if from.is_none() && Instant::now() >= warmup {
            from = Some((
                page.painted.len(),
                Instant::now(),
                client.bytes.load(Ordering::Relaxed),
                proc_cpu_time(x11vnc.pid())?,
            ));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (from, t0, bytes0, cpu0) = from.context("scenario too short")?;
    let elapsed = t0.elapsed().as_secs_f64();
    let kbps = (client.bytes.load(Ordering::Relaxed) - bytes0) as f64 * 8.0 / 1e3 / elapsed;
    let server_cpu = (proc_cpu_time(x11vnc.pid())? - cpu0).as_secs_f64() / elapsed * 100.0;
    let seen = client
        .seen
        .lock()
        .map_err(|_| anyhow::anyhow!("the VNC client crashed"))?;
    let painted = page.painted.get(from..).unwrap_or(&[]);
    let mut latency_ms: Vec<f64> = painted
        .iter()
        .filter_map(|(n, tp)| seen.get(n).map(|td| td.saturating_sub(*tp) as f64 / 1e6))
        .collect();
    latency_ms.sort_by(f64::total_cmp);
    Ok(PeerFigures {
        stamps_painted: painted.len(),
        stamps_seen: latency_ms.len(),
        latency_ms,
        kbps,
        server_cpu,
    })
}

/// Draws each curve's empirical CDF (latency in ms against the share of stamps) to an SVG.
fn plot_cdf(path: &Path, curves: &[(String, bool, Vec<f64>)]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let max = curves
        .iter()
        .filter_map(|(_, _, v)| v.last().copied())
        .fold(10.0f64, f64::max)
        .min(500.0)
        * 1.05;
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "sealdesk glass-to-glass latency (dashed: floor)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max, 0.0..1.0)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("ms from the X server drawing a change to the viewer decoding it")
        .y_desc("share of frames")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let sessions = curves.iter().filter(|c| !c.1).count().max(1);
    let mut k = 0;
    for (label, floor, values) in curves {
        if values.is_empty() {
            continue;
        }
        let colour = Palette99::pick(k % sessions).to_rgba();
        if !floor {
            k += 1;
        }
        let n = values.len() as f64;
        let points = values
            .iter()
            .enumerate()
            .map(|(i, v)| (*v, (i + 1) as f64 / n));
        let style = colour.stroke_width(if *floor { 1 } else { 2 });
        if *floor {
            chart
                .draw_series(DashedLineSeries::new(points, 4, 3, style))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        } else {
            chart
                .draw_series(LineSeries::new(points, style))
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// One screen size: its own display, server, host and viewer. Returns the latency curves
/// (label, whether it is the floor, sorted ms) of its scenarios.
/// A signaling server in this process, on a free loopback port, until [`EmbeddedServer::stop`].
pub(crate) struct EmbeddedServer {
    /// Its WebSocket URL.
    pub(crate) url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), sealdesk_server::ServerError>>,
}

impl EmbeddedServer {
    pub(crate) async fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let server = Server::bind(ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            data_dir: Some(data_dir.to_owned()),
            ..ServerConfig::default()
        })
        .await?;
        let url = server.url();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Ok(Self { url, stop, task })
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// A progress bar on standard error (hidden when it is not a terminal) for one size's `steps`.
pub(crate) fn progress(steps: u64, what: String) -> anyhow::Result<indicatif::ProgressBar> {
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:24}] {pos}/{len} {msg} {elapsed}")
            .context("progress bar")?
            .progress_chars("=> "),
    );
    bar.set_prefix(what);
    bar.enable_steady_tick(Duration::from_millis(200));
    Ok(bar)
}

async fn run_size(args: SessionArgs) -> anyhow::Result<Vec<(String, bool, Vec<f64>)>> {
    let peer_steps = if !args.no_peer && crate::bench_peer::X11vnc::available() {
        4
    } else {
        0
    };
    let bar = progress(
        1 + 4 + 3 + peer_steps,
        format!("bench session {}x{}", args.width, args.height),
    )?;
    bar.set_message("connecting");
    let dir = tempfile::tempdir()?;
    let xvfb = Xvfb::start(u32::from(args.width), u32::from(args.height))?;
    let mut page = Page::open(xvfb.display())?;
    let server = EmbeddedServer::start(&dir.path().join("server")).await?;
    let url = server.url.clone();

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
    let mut viewer_args = vec!["connect", &code, "--server", &url, "--headless", "--stamps"];
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
    bar.inc(1);
    tokio::time::sleep(SETTLE).await;
    let mut results = Vec::new();
    let seconds = if args.quick { 3 } else { args.seconds };
    for scenario in [
        Scenario::Idle,
        Scenario::Typing,
        Scenario::Scrolling,
        Scenario::Video,
    ] {
        bar.set_message(scenario.name());
        // Settle, then measure.
        let end = Instant::now() + Duration::from_secs(seconds);
        let warmup = Instant::now() + Duration::from_secs(1);
        let mut samples = Vec::new();
        let mut cpu0 = None;
        let mut rec0 = 0;
        let mut painted_from = 0;
        let mut seen = std::collections::HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_micros(16_667));
        while Instant::now() < end {
            tick.tick().await;
            page.step(scenario)?;
            if cpu0.is_none() && Instant::now() >= warmup {
                cpu0 = Some((
                    Instant::now(),
                    proc_cpu_time(host.pid)?,
                    proc_cpu_time(viewer.pid)?,
                ));
                rec0 = tree_bytes(&recs);
                painted_from = page.painted.len();
                while viewer.lines.try_recv().is_ok() {}
            }
            while let Ok(line) = viewer.lines.try_recv() {
                if cpu0.is_some() {
                    if let Some(s) = line.strip_prefix("stats: ").and_then(parse_stats) {
                        samples.push(s);
                    }
                    if let Some((n, t)) = crate::stamp::parse_line(&line) {
                        seen.entry(n).or_insert(t);
                    }
                }
            }
        }
        // The last frames' stamps are still on their way.
        let drain = Instant::now() + Duration::from_millis(300);
        while Instant::now() < drain {
            tokio::time::sleep(Duration::from_millis(20)).await;
            while let Ok(line) = viewer.lines.try_recv() {
                if let Some((n, t)) = crate::stamp::parse_line(&line) {
                    seen.entry(n).or_insert(t);
                }
            }
        }
        let (t0, c0, v0) = cpu0.context("scenario too short")?;
        let elapsed = t0.elapsed().as_secs_f64();
        let host_cpu = (proc_cpu_time(host.pid)? - c0).as_secs_f64() / elapsed * 100.0;
        let viewer_cpu = (proc_cpu_time(viewer.pid)? - v0).as_secs_f64() / elapsed * 100.0;
        let painted = page.painted.get(painted_from..).unwrap_or(&[]);
        let mut latency_ms: Vec<f64> = painted
            .iter()
            .filter_map(|(n, tp)| seen.get(n).map(|td| td.saturating_sub(*tp) as f64 / 1e6))
            .collect();
        latency_ms.sort_by(f64::total_cmp);
        let (stamps_painted, stamps_seen) = (painted.len(), latency_ms.len());
        let recorded_per_min = args.record.then(|| {
            (tree_bytes(&recs).saturating_sub(rec0)) as f64 / t0.elapsed().as_secs_f64() * 60.0
        });
        let n = samples.len().max(1) as f64;
        let fps = samples.iter().map(|s| s.0).sum::<f64>() / n;
        let kbps = samples.iter().map(|s| s.1).sum::<f64>() / n;
        bar.inc(1);
        results.push((
            scenario,
            Figures {
                fps,
                kbps,
                host_cpu,
                viewer_cpu,
                latency_ms,
                floor_ms: Vec::new(),
                stamps_painted,
                stamps_seen,
                recorded_per_min,
                peer: None,
            },
        ));
    }
    let (host_rss, viewer_rss) = (peak_rss(host.pid)?, peak_rss(viewer.pid)?);
    for (s, f) in &results {
        // The pipeline is broken if frames change and no stamp gets through (idle paints none).
        if *s != Scenario::Idle && f.stamps_seen == 0 {
            bail!(
                "{}: the viewer read none of the {} frame stamps painted: the pipeline is broken",
                s.name(),
                f.stamps_painted
            );
        }
    }
    viewer.send("end").await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), viewer.child.wait()).await;
    let _ = host.send("q").await;
    let _ = tokio::time::timeout(Duration::from_secs(5), host.child.wait()).await;
    server.stop().await;
    // The floor, with the session gone: nothing else competes for the cores.
    for (s, f) in &mut results {
        if *s != Scenario::Idle {
            bar.set_message(format!("floor, {}", s.name()));
            f.floor_ms = floor(&mut page, xvfb.display(), &args.codec, *s, seconds.min(5)).await?;
            bar.inc(1);
        }
    }
    // The peer, on the same display with the same page.
    if !args.no_peer && crate::bench_peer::X11vnc::available() {
        let x11vnc = crate::bench_peer::X11vnc::start(xvfb.display()).await?;
        let client = crate::bench_peer::Client::connect(x11vnc.port());
        // The first full update, before anything is measured.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for (s, f) in &mut results {
            bar.set_message(format!("x11vnc, {}", s.name()));
            f.peer = Some(peer(&mut page, &x11vnc, &client, *s, seconds).await?);
            bar.inc(1);
        }
        let jpeg = client.jpeg_rects.load(std::sync::atomic::Ordering::Relaxed);
        client.stop()?;
        if jpeg > 0 {
            bail!("x11vnc sent {jpeg} JPEG rectangles, whose stamps the peer's client cannot read");
        }
        for (s, f) in &results {
            if let Some(p) = f.peer.as_ref().filter(|p| p.stamps_seen == 0) {
                if *s != Scenario::Idle {
                    bail!(
                        "{}: the VNC client read none of the {} frame stamps painted: the peer's harness is broken",
                        s.name(),
                        p.stamps_painted
                    );
                }
            }
        }
    }
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

    bar.finish_and_clear();
    if args.json {
        let scenarios: Vec<serde_json::Value> = results
            .iter()
            .map(|(s, f)| {
                serde_json::json!({
                    "scenario": s.name(), "fps": f.fps, "kbps": f.kbps,
                    "host_cpu_percent": f.host_cpu, "viewer_cpu_percent": f.viewer_cpu,
                    "stamps_painted": f.stamps_painted, "stamps_seen": f.stamps_seen,
                    "latency_ms": {
                        "p50": quantile(&f.latency_ms, 0.5),
                        "p95": quantile(&f.latency_ms, 0.95),
                        "p99": quantile(&f.latency_ms, 0.99),
                    },
                    "floor_ms": {
                        "p50": quantile(&f.floor_ms, 0.5),
                        "p95": quantile(&f.floor_ms, 0.95),
                        "p99": quantile(&f.floor_ms, 0.99),
                    },
                    "recording_bytes_per_min": f.recorded_per_min,
                    "peer": f.peer.as_ref().map(|p| serde_json::json!({
                        "name": "x11vnc",
                        "kbps": p.kbps,
                        "server_cpu_percent": p.server_cpu,
                        "stamps_painted": p.stamps_painted, "stamps_seen": p.stamps_seen,
                        "latency_ms": {
                            "p50": quantile(&p.latency_ms, 0.5),
                            "p95": quantile(&p.latency_ms, 0.95),
                            "p99": quantile(&p.latency_ms, 0.99),
                        },
                        "latency_ratio_p50": ratio(quantile(&f.latency_ms, 0.5), quantile(&p.latency_ms, 0.5)),
                        "bytes_ratio": ratio(Some(f.kbps), Some(p.kbps)),
                    })),
                })
            })
            .collect();
        let out = serde_json::json!({
            "width": args.width, "height": args.height, "codec": args.codec,
            "path": if args.relay_only { "relay" } else { "direct" },
            "first_frame_ms": first_ms, "transport_verified_ms": connected_ms,
            "host_peak_rss_bytes": host_rss, "viewer_peak_rss_bytes": viewer_rss,
            "scenarios": scenarios,
            "record": args.record,
            "export": export.map(|(v, t, b)| serde_json::json!({"video_seconds": v, "seconds": t, "webm_bytes": b})),
        });
        println!("{out}");
        return Ok(curves_of(&args, results));
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
    println!(
        "  peak RSS: host {:.0} MiB, viewer {:.0} MiB",
        host_rss as f64 / 1048576.0,
        viewer_rss as f64 / 1048576.0
    );
    println!(
        "  {:<10} {:>6} {:>8}  {:>21}  {:>13}  {:>9}  {:>8} {:>8}",
        "scenario", "fps", "kbps", "glass-to-glass ms", "floor ms", "stamps", "host CPU", "viewer"
    );
    println!(
        "  {:<10} {:>6} {:>8}  {:>7}{:>7}{:>7}  {:>6}{:>7}  {:>9}  {:>8} {:>8}",
        "", "", "", "p50", "p95", "p99", "p50", "ratio", "seen", "% core", "% core"
    );
    for (s, f) in &results {
        let q =
            |x| quantile(&f.latency_ms, x).map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        let floor = quantile(&f.floor_ms, 0.5);
        let ratio = match (quantile(&f.latency_ms, 0.5), floor) {
            (Some(l), Some(fl)) if fl > 0.0 => format!("{:.1}×", l / fl),
            _ => "-".into(),
        };
        println!(
            "  {:<10} {:6.1} {:8.0}  {:>7}{:>7}{:>7}  {:>6}{:>7}  {:>4}/{:<4}  {:8.1} {:8.1}",
            s.name(),
            f.fps,
            f.kbps,
            q(0.5),
            q(0.95),
            q(0.99),
            floor.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
            ratio,
            f.stamps_seen,
            f.stamps_painted,
            f.host_cpu,
            f.viewer_cpu
        );
        if let Some(b) = f.recorded_per_min {
            println!("  {:<10} recording {:8.0} kB per minute", "", b / 1e3);
        }
    }
    if results.iter().any(|(_, f)| f.peer.is_some()) {
        println!(
            "  the peer: x11vnc (its defaults) on the same display, read by a VNC client (Tight, ZRLE, CopyRect, Raw)"
        );
        println!(
            "  {:<10} {:>21}  {:>8}  {:>9}  {:>8}  {:>17}",
            "scenario", "glass-to-glass ms", "kbps", "stamps", "x11vnc", "sealdesk / peer"
        );
        println!(
            "  {:<10} {:>7}{:>7}{:>7}  {:>8}  {:>9}  {:>8}  {:>8} {:>8}",
            "", "p50", "p95", "p99", "", "seen", "% core", "latency", "bytes"
        );
        for (s, f) in &results {
            let Some(p) = &f.peer else { continue };
            let q = |x| {
                quantile(&p.latency_ms, x).map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
            };
            let r = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}×"));
            println!(
                "  {:<10} {:>7}{:>7}{:>7}  {:8.0}  {:>4}/{:<4}  {:8.1}  {:>8} {:>8}",
                s.name(),
                q(0.5),
                q(0.95),
                q(0.99),
                p.kbps,
                p.stamps_seen,
                p.stamps_painted,
                p.server_cpu,
                r(ratio(
                    quantile(&f.latency_ms, 0.5),
                    quantile(&p.latency_ms, 0.5)
                )),
                r(ratio(Some(f.kbps), Some(p.kbps))),
            );
        }
    } else if !args.no_peer {
        println!("  the peer was left out: x11vnc is not installed (apt-get install x11vnc)");
    }
    if let Some((video, took, bytes)) = export {
        println!(
            "  export to WebM: {video:.1} s of session in {took:.2} s ({:.0}× real time), {:.1} MB",
            video / took.max(1e-6),
            bytes as f64 / 1e6
        );
    }
    Ok(curves_of(&args, results))
}

/// The latency curves of one size's scenarios, for the plot.
fn curves_of(
    args: &SessionArgs,
    results: Vec<(Scenario, Figures)>,
) -> Vec<(String, bool, Vec<f64>)> {
    let mut out = Vec::new();
    for (s, f) in results {
        if f.latency_ms.is_empty() {
            continue;
        }
        let label = format!("{}p {}", args.height, s.name());
        out.push((label.clone(), false, f.latency_ms));
        out.push((format!("{label} floor"), true, f.floor_ms));
        if let Some(p) = f.peer.filter(|p| !p.latency_ms.is_empty()) {
            out.push((format!("{label} x11vnc"), true, p.latency_ms));
        }
    }
    out
}
