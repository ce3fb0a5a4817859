//! `sealdesk bench browser`: the browser viewer measured — Debian's headless Chromium under
//! Playwright (`web/tests/driver.mjs`, so this runs from a checkout with `web/node_modules`;
//! `scripts/test` or `npm ci` in `web/` installs it) against `sealdesk host` on Xvfb, through
//! an embedded signaling server, on loopback.
//!
//! Per screen size: connect → first picture presented by the `<video>` element, measured by
//! the page itself from its Connect handling (the host's consent is answered the moment it is
//! asked, as in `bench session`), over several connects; then the typing, scrolling and video
//! scenarios of `bench session` ([`crate::bench_session::Page`]) at 60 changes a second, with
//! the frames the video element presented per second and the page's own bitrate figure,
//! and the host's CPU. Glass-to-glass latency is `bench session`'s (native viewer) figure:
//! the page has no frame-stamp reader.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use sealdesk_media::xvfb::Xvfb;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::bench::proc_cpu_time;
use crate::bench_session::{
    parse_size, progress, quantile, Child, EmbeddedServer, Page, Scenario, SETTLE,
};

/// Flags of `sealdesk bench browser`.
#[derive(Debug, Clone, Args)]
pub(crate) struct BrowserArgs {
    /// Screen sizes to run [default: 1920x1080].
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    sizes: Vec<(u16, u16)>,
    /// Seconds per scenario (the first second is not counted).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Connects to time (each a fresh page in the same browser profile).
    #[arg(long, default_value_t = 5)]
    connects: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The checkout's `web/` directory (the driver and its node_modules live there).
fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

/// Headless Chromium under Playwright, one JSON command per line.
struct Driver {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Driver {
    fn start() -> anyhow::Result<Self> {
        let web = web_dir();
        if !web.join("node_modules/playwright-core").exists() {
            bail!(
                "{} has no node_modules/playwright-core: run `npm ci` there (or scripts/test), \
                 and install Debian's chromium",
                web.display()
            );
        }
        let mut child = tokio::process::Command::new("node")
            .arg("tests/driver.mjs")
            .current_dir(&web)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start node (the browser driver)")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        Ok(Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    async fn cmd(&mut self, cmd: Value) -> anyhow::Result<Value> {
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let line = tokio::time::timeout(Duration::from_secs(120), self.lines.next_line())
            .await
            .context("the browser driver did not answer")??
            .context("the browser driver exited")?;
        let answer: Value = serde_json::from_str(&line)?;
        if answer["ok"] != json!(true) {
            bail!("browser: {} failed: {}", cmd["cmd"], answer["error"]);
        }
        Ok(answer)
    }
}

/// One scenario's figures.
struct Figures {
    scenario: Scenario,
    fps: f64,
    kbps: Option<f64>,
    host_cpu: f64,
}

/// Parses the page's stats line `12 fps · 180 kbps · rtt 2 ms · direct` for its kbps.
fn stats_kbps(line: &str) -> Option<f64> {
    line.split(" · ")
        .nth(1)?
        .strip_suffix(" kbps")?
        .trim()
        .parse()
        .ok()
}

pub(crate) async fn run(mut args: BrowserArgs) -> anyhow::Result<()> {
    if args.sizes.is_empty() {
        args.sizes = vec![(1920, 1080)];
    }
    let mut all = Vec::new();
    for &(w, h) in &args.sizes {
        all.push(run_size(&args, w, h).await?);
    }
    if args.json {
        #[allow(clippy::print_stdout, reason = "the bench's output")]
        {
            println!("{}", Value::Array(all));
        }
    }
    Ok(())
}

async fn run_size(args: &BrowserArgs, width: u16, height: u16) -> anyhow::Result<Value> {
    let connects = args.connects.max(1);
    let bar = progress(
        connects as u64 + 4,
        format!("bench browser {width}x{height}"),
    )?;
    bar.set_message("connecting");
    let dir = tempfile::tempdir()?;
    let xvfb = Xvfb::start(u32::from(width), u32::from(height))?;
    let mut page = Page::open(xvfb.display())?;
    let server = EmbeddedServer::start(&dir.path().join("server")).await?;
    let url = server.url.clone();
    // The page, served by this process as `connect --web` would.
    let routes = crate::web::routes(&crate::web::Page {
        server: Some(url.clone()),
        served_by_server: false,
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let page_url = format!("http://{}/", listener.local_addr()?);
    let web_task = tokio::spawn(async move { axum::serve(listener, routes).await });

    let host_args = [
        "host",
        "--server",
        &url,
        "--display",
        xvfb.display(),
        "--no-qr",
    ];
    let mut host = Child::spawn(&host_args, &dir.path().join("host"))?;
    let mut browser = Driver::start()?;

    let mut first_ms = Vec::new();
    let mut timeline = Value::Null;
    for i in 0..connects {
        let code = host.wait("code: ", Duration::from_secs(30)).await?;
        browser
            .cmd(json!({"cmd": "open", "url": page_url, "keep": i > 0}))
            .await?;
        browser.cmd(json!({"cmd": "connect", "code": code})).await?;
        // Answered the moment it is asked: a person's time is theirs, not the system's.
        host.wait("Allow? ", Duration::from_secs(30)).await?;
        host.send("y").await?;
        let state = browser
            .cmd(json!({"cmd": "wait", "states": ["live", "error"]}))
            .await?;
        if state["state"] != json!("live") {
            bail!("the browser did not connect: {}", state["error"]);
        }
        let ff = browser.cmd(json!({"cmd": "first_frame"})).await?;
        first_ms.push(ff["from_dial_ms"].as_f64().context("first frame time")?);
        timeline = browser.cmd(json!({"cmd": "timeline"})).await?["steps"].clone();
        bar.inc(1);
        if i + 1 < connects {
            browser.cmd(json!({"cmd": "end"})).await?;
            host.wait("session ended: ", Duration::from_secs(30))
                .await?;
        }
    }
    let mut sorted = first_ms.clone();
    sorted.sort_by(f64::total_cmp);

    tokio::time::sleep(SETTLE).await;
    let mut results = Vec::new();
    for scenario in [
        Scenario::Idle,
        Scenario::Typing,
        Scenario::Scrolling,
        Scenario::Video,
    ] {
        bar.set_message(scenario.name());
        let end = Instant::now() + Duration::from_secs(args.seconds.max(2));
        let warmup = Instant::now() + Duration::from_secs(1);
        let mut start = None;
        let mut kbps = Vec::new();
        let mut last_sample = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_micros(16_667));
        while Instant::now() < end {
            tick.tick().await;
            page.step(scenario)?;
            if start.is_none() && Instant::now() >= warmup {
                let p = browser.cmd(json!({"cmd": "presented"})).await?;
                start = Some((p, Instant::now(), proc_cpu_time(host.pid)?));
            }
            if start.is_some() && last_sample.elapsed() >= Duration::from_secs(1) {
                last_sample = Instant::now();
                let p = browser.cmd(json!({"cmd": "presented"})).await?;
                kbps.extend(p["stats"].as_str().and_then(stats_kbps));
            }
        }
        let (p0, t0, c0) = start.context("scenario too short")?;
        let p1 = browser.cmd(json!({"cmd": "presented"})).await?;
        let page_secs =
            (p1["at"].as_f64().unwrap_or(0.0) - p0["at"].as_f64().unwrap_or(0.0)) / 1000.0;
        let frames = p1["frames"].as_f64().unwrap_or(0.0) - p0["frames"].as_f64().unwrap_or(0.0);
        let host_cpu =
            (proc_cpu_time(host.pid)? - c0).as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0;
        bar.inc(1);
        results.push(Figures {
            scenario,
            fps: if page_secs > 0.0 {
                frames / page_secs
            } else {
                0.0
            },
            kbps: (!kbps.is_empty()).then(|| kbps.iter().sum::<f64>() / kbps.len() as f64),
            host_cpu,
        });
    }
    bar.finish_and_clear();
    let _ = browser.cmd(json!({"cmd": "end"})).await;
    let _ = browser.cmd(json!({"cmd": "quit"})).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), browser.child.wait()).await;
    let _ = host.send("q").await;
    let _ = tokio::time::timeout(Duration::from_secs(5), host.child.wait()).await;
    server.stop().await;
    web_task.abort();

    let out = json!({
        "width": width, "height": height,
        "viewer": "Debian chromium, headless, under Playwright",
        "connects": first_ms.len(),
        "first_frame_ms": {
            "p50": quantile(&sorted, 0.5), "min": sorted.first(), "max": sorted.last(),
            "all": first_ms,
        },
        "last_timeline": timeline,
        "scenarios": results.iter().map(|f| json!({
            "scenario": f.scenario.name(), "presented_fps": f.fps, "kbps": f.kbps,
            "host_cpu_percent": f.host_cpu,
        })).collect::<Vec<_>>(),
    });
    if !args.json {
        #[allow(clippy::print_stdout, reason = "the bench's output")]
        {
            println!(
                "sealdesk bench browser ({width}x{height} Xvfb, headless Chromium under Playwright, \
                 loopback, {} cores)",
                std::thread::available_parallelism().map_or(0, |n| n.get())
            );
            println!(
                "  Connect -> first picture presented: p50 {:.0} ms (min {:.0}, max {:.0}, {} connects)",
                quantile(&sorted, 0.5).unwrap_or(f64::NAN),
                sorted.first().copied().unwrap_or(f64::NAN),
                sorted.last().copied().unwrap_or(f64::NAN),
                sorted.len()
            );
            println!("  last connect's steps: {timeline}");
            println!(
                "  {:<10} {:>14} {:>8} {:>9}",
                "scenario", "presented fps", "kbps", "host CPU"
            );
            for f in &results {
                println!(
                    "  {:<10} {:>14.1} {:>8} {:>8.1}%",
                    f.scenario.name(),
                    f.fps,
                    f.kbps.map_or_else(|| "-".into(), |k| format!("{k:.0}")),
                    f.host_cpu
                );
            }
        }
    }
    Ok(out)
}
