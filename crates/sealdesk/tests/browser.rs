//! The browser viewer (DESIGN.md §8) in Debian's real headless Chromium, driven by
//! Playwright (`web/tests/driver.mjs`), against a real host on Xvfb through a real signaling
//! server: what reaches the host's X clients, what the page shows, and that a tampering
//! server gets no frame rendered. Screenshots of the connect screen, a live session and the
//! errors are saved in `target/tmp/browser-screenshots/` for review.
//!
//! Needs `node` with `web/node_modules` (playwright-core) and `/usr/bin/chromium`:
//! `scripts/test` installs them. Missing tools fail these tests; they never skip.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::zombie_processes,
    reason = "tests fail by panicking and print their figures; children are reaped in Drop"
)]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use common::desk::{psnr, screen_rgb, Desk, H, W};
use common::evil::{evil_server, Tamper};
use common::{sealdesk, server, Proc};
use sealdesk_media::clipboard::Clipboard;
use sealdesk_media::xvfb::Xvfb;
use serde_json::{json, Value};
use x11rb::protocol::Event;

const WEB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web");

/// Where the screenshots go.
fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium under Playwright: one JSON command per line, one answer per line.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    answers: mpsc::Receiver<String>,
}

impl Browser {
    fn start() -> Self {
        let driver = Path::new(WEB).join("tests/driver.mjs");
        assert!(
            Path::new(WEB).join("node_modules/playwright-core").exists(),
            "web/node_modules has no playwright-core: run scripts/test (it runs `npm ci` in web/)"
        );
        let mut child = Command::new("node")
            .arg(&driver)
            .current_dir(WEB)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node (scripts/test installs it)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            answers,
        }
    }

    /// Runs a command and returns its answer (which may say `ok: false`).
    fn try_cmd(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let line = self
            .answers
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("the browser driver did not answer {cmd}: {e}"));
        serde_json::from_str(&line).unwrap()
    }

    /// Runs a command that must succeed.
    fn cmd(&mut self, cmd: Value) -> Value {
        let answer = self.try_cmd(cmd.clone());
        if answer["ok"] != json!(true) {
            let log = self.try_cmd(json!({"cmd": "log"}));
            panic!("{cmd} failed: {}\npage log: {log}", answer["error"]);
        }
        answer
    }

    fn open(&mut self, url: &str) -> Value {
        self.cmd(json!({"cmd": "open", "url": url}))
    }

    fn wait(&mut self, states: &[&str]) -> Value {
        self.cmd(json!({"cmd": "wait", "states": states}))
    }

    fn screenshot(&mut self, name: &str) {
        let path = shots().join(name);
        self.cmd(json!({"cmd": "screenshot", "path": path}));
    }

    /// What the video element shows, as RGB, once its picture has settled on the host's
    /// screen (a VP9 stream refines a picture over a few frames).
    fn settled_frame(&mut self, want: &[u8]) -> (f64, Vec<u8>) {
        let mut best = (0.0, Vec::new());
        for _ in 0..40 {
            let f = self.cmd(json!({"cmd": "frame"}));
            if f["width"] == json!(W) && f["height"] == json!(H) {
                let rgba = base64::engine::general_purpose::STANDARD
                    .decode(f["rgba"].as_str().unwrap())
                    .unwrap();
                let rgb: Vec<u8> = rgba
                    .chunks_exact(4)
                    .flat_map(|p| [p[0], p[1], p[2]])
                    .collect();
                let q = psnr(&rgb, want);
                if q > best.0 {
                    best = (q, rgb);
                }
                if q >= 35.0 {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        best
    }

    /// The page log (console messages, page errors, failed and third-party requests).
    fn log(&mut self) -> Vec<String> {
        let log = self.cmd(json!({"cmd": "log"}));
        log["log"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "quit"}));
        let _ = self.stdin.flush();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sealdesk connect --web` on a free loopback port: the page's URL.
fn serve_page(server_url: &str, data: &Path) -> (Proc, String) {
    let mut cmd = sealdesk(data);
    cmd.args([
        "connect",
        "--web",
        "--listen",
        "127.0.0.1:0",
        "--server",
        server_url,
    ]);
    let mut web = Proc::spawn(cmd);
    let rest = web.wait_line("browser viewer: open ");
    let url = rest.split_whitespace().next().unwrap().to_owned();
    (web, url)
}

fn host(server_url: &str, display: &str, data: &Path, extra: &[&str]) -> Proc {
    let mut cmd = sealdesk(data);
    cmd.args([
        "host",
        "--server",
        server_url,
        "--display",
        display,
        "--no-qr",
        "--label",
        "test host",
    ])
    .args(extra);
    Proc::spawn_interactive(cmd)
}

/// The keycodes a window saw pressed and not released since.
fn held(events: &[Event]) -> Vec<u8> {
    let mut down = Vec::new();
    for e in events {
        match e {
            Event::KeyPress(k) if !down.contains(&k.detail) => down.push(k.detail),
            Event::KeyRelease(k) => down.retain(|d| *d != k.detail),
            _ => {}
        }
    }
    down
}

#[test]
fn a_browser_connects_with_a_code_sees_the_screen_and_controls_it() {
    let server = server();
    let xvfb = Xvfb::start(u32::from(W), u32::from(H)).unwrap();
    let desk = Desk::open(xvfb.display());
    let (hd, wd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut h = host(&server.url, xvfb.display(), hd.path(), &[]);
    let code = h.wait_line("code: ");
    let (_web, url) = serve_page(&server.url, wd.path());

    let mut b = Browser::start();
    let opened = b.open(&url);
    assert_eq!(opened["fingerprint"].as_str().unwrap().len(), 79);
    b.screenshot("connect.png");
    let page = b.cmd(json!({"cmd": "state"}));
    assert_eq!(page["served_by_server_banner"], json!(false));

    b.cmd(json!({"cmd": "connect", "code": code}));
    h.wait_line("Allow? ");
    let prompt = h.output();
    assert!(
        prompt.contains("viewer: browser (served by its own sealdesk)"),
        "{prompt}"
    );
    // Nothing is shown while the host's user has not answered.
    let before = b.cmd(json!({"cmd": "video"}));
    assert_eq!(before["attached"], json!(false));
    h.send("y");
    let page = b.wait(&["live", "error"]);
    assert_eq!(page["state"], json!("live"), "{page}\n{}", h.output());
    let first = b.cmd(json!({"cmd": "first_frame"}));
    println!(
        "browser: connect click → first frame presented: {:.0} ms (includes the host's user \
         answering the prompt)",
        first["ms"].as_f64().unwrap()
    );
    h.wait_line("● session active");
    assert!(h.output().contains("VP9"), "{}", h.output());
    let timeline = b.cmd(json!({"cmd": "timeline"}));
    println!("browser: timeline {}", timeline["steps"]);

    // The picture is the host's screen.
    let (_, _, want) = screen_rgb(xvfb.display());
    let (quality, _) = b.settled_frame(&want);
    println!("browser: decoded frame vs the host's screen: PSNR {quality:.1} dB");
    assert!(quality >= 30.0, "PSNR {quality:.1} dB");
    b.screenshot("live.png");

    // A click and typed text arrive at an X client on the host.
    b.cmd(json!({"cmd": "click", "x": 123, "y": 77}));
    let keys = [
        "Shift+KeyH",
        "KeyI",
        "Comma",
        "Space",
        "KeyT",
        "KeyH",
        "KeyE",
        "KeyR",
        "KeyE",
    ];
    b.cmd(json!({"cmd": "press", "keys": keys}));
    let evs = desk.wait_events(Duration::from_secs(10), |e| {
        e.iter()
            .filter(|e| matches!(e, Event::KeyRelease(_)))
            .count()
            >= 10
    });
    let press = evs.iter().find_map(|e| match e {
        Event::ButtonPress(p) => Some((p.detail, p.event_x, p.event_y)),
        _ => None,
    });
    assert_eq!(press, Some((1, 123, 77)), "{evs:?}");
    assert!(evs
        .iter()
        .any(|e| matches!(e, Event::ButtonRelease(r) if r.detail == 1)));
    assert_eq!(desk.typed(), "Hi, there");

    // Clipboard, browser → host: copied on this computer, sent, pasted by an X client there.
    let host_clip = Clipboard::connect(Some(xvfb.display()), 1 << 20).unwrap();
    b.cmd(json!({"cmd": "clipboard_send", "text": "from the browser: ünïcode ✓"}));
    h.wait_line("clipboard: ");
    let pasted = host_clip.get_text(Duration::from_secs(5)).unwrap();
    assert_eq!(pasted.as_deref(), Some("from the browser: ünïcode ✓"));

    // Clipboard, host → browser: a program on the host copies; this computer has it.
    host_clip.set_text("copied on the host".into()).unwrap();
    let got = b.cmd(json!({"cmd": "clipboard_wait", "text": "copied on the host"}));
    assert_eq!(got["text"], json!("copied on the host"));

    // Stats are shown, with the path.
    let page = b.cmd(json!({"cmd": "state"}));
    let stats = page["stats"].as_str().unwrap();
    assert!(
        stats.contains("fps") && stats.contains("kbps") && stats.contains("direct"),
        "{stats}"
    );

    // A key held when the window loses focus is released on the host.
    b.cmd(json!({"cmd": "key_down", "key": "Shift"}));
    desk.wait_events(Duration::from_secs(5), |e| !held(e).is_empty());
    b.cmd(json!({"cmd": "blur"}));
    let evs = desk.wait_events(Duration::from_secs(5), |e| held(e).is_empty());
    assert!(held(&evs).is_empty(), "still held after blur: {evs:?}");
    b.cmd(json!({"cmd": "key_up", "key": "Shift"}));

    // A key held when the page goes away is released too, and the session ends.
    b.cmd(json!({"cmd": "click", "x": 5, "y": 5}));
    b.cmd(json!({"cmd": "key_down", "key": "Control"}));
    desk.wait_events(Duration::from_secs(5), |e| !held(e).is_empty());
    b.cmd(json!({"cmd": "close"}));
    let evs = desk.wait_events(Duration::from_secs(5), |e| held(e).is_empty());
    assert!(held(&evs).is_empty(), "still held after close: {evs:?}");
    h.wait_line("session ended: ");

    // No request left this origin.
    let log = b.log();
    assert!(
        !log.iter().any(|l| l.starts_with("third-party request")),
        "{log:?}"
    );
}

#[test]
fn a_tampering_server_gets_no_frame_rendered_in_the_browser() {
    let server = evil_server();
    let xvfb = Xvfb::start(640, 480).unwrap();
    let wd = tempfile::tempdir().unwrap();
    let (_web, url) = serve_page(&server.url, wd.path());
    let mut b = Browser::start();

    // A fingerprint swapped in the handshake: key confirmation fails; the page says so.
    for (mode, shot) in [
        (Tamper::SwapViewerFingerprint, "error-fingerprint-a1.png"),
        (Tamper::SwapHostFingerprint, "error-fingerprint-a2.png"),
    ] {
        server.set(mode.clone());
        let hd = tempfile::tempdir().unwrap();
        let mut h = host(&server.url, xvfb.display(), hd.path(), &[]);
        let code = h.wait_line("code: ");
        b.open(&url);
        let before = server.tampered();
        b.cmd(json!({"cmd": "connect", "code": code}));
        let page = b.wait(&["error", "live"]);
        assert_eq!(page["state"], json!("error"), "{mode:?}: {page}");
        assert_eq!(server.tampered(), before + 1, "{mode:?} was not applied");
        let text = page["error"].as_str().unwrap();
        assert!(text.contains("someone tampered"), "{mode:?}: {text}");
        let failed = h.wait_line("connection from ");
        assert!(failed.contains("someone tampered"), "{mode:?}: {failed}");
        assert!(!h.output().contains("Allow?"), "{}", h.output());
        let video = b.cmd(json!({"cmd": "video"}));
        assert_eq!(video["attached"], json!(false), "{video}");
        assert_eq!(video["frames"], json!(0), "{video}");
        b.screenshot(shot);
    }

    // An offer recorded in an honest session, replayed into the next one.
    let hd = tempfile::tempdir().unwrap();
    let mut h = host(&server.url, xvfb.display(), hd.path(), &[]);
    server.set(Tamper::Record);
    let code = h.wait_line("code: ");
    b.open(&url);
    b.cmd(json!({"cmd": "connect", "code": code}));
    h.wait_line("Allow? ");
    h.send("y");
    assert_eq!(b.wait(&["live", "error"])["state"], json!("live"));
    b.cmd(json!({"cmd": "end"}));
    h.wait_line("session ended: ");
    assert!(server.state.lock().unwrap().recorded.is_some());

    server.set(Tamper::ReplayOffer);
    let code = h.wait_nth("code: ", 2, Duration::from_secs(10)).unwrap();
    // A short answer timeout (a test knob of the page), so the dropped offer ends it soon.
    b.open(&format!("{url}?timeout=5"));
    b.cmd(json!({"cmd": "connect", "code": code}));
    h.wait_nth("Allow? ", 2, Duration::from_secs(20)).unwrap();
    h.send("y");
    let page = b.wait(&["error", "live"]);
    assert_eq!(page["state"], json!("error"), "{page}");
    let text = page["error"].as_str().unwrap();
    assert!(
        text.contains("the signaling server may have dropped or altered it"),
        "{text}"
    );
    let warning = h.wait_line("warning: tampering suspected");
    assert!(warning.contains("failed authentication"), "{warning}");
    assert_eq!(h.output().matches("session started").count(), 1);
    let video = b.cmd(json!({"cmd": "video"}));
    assert_eq!(video["attached"], json!(false), "{video}");
    b.screenshot("error-replayed-offer.png");
}

#[test]
fn a_wrong_code_three_times_says_the_attempts_left_then_that_it_is_burned() {
    let server = server();
    let xvfb = Xvfb::start(640, 480).unwrap();
    let (hd, wd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut h = host(&server.url, xvfb.display(), hd.path(), &[]);
    let code = h.wait_line("code: ");
    let (_web, url) = serve_page(&server.url, wd.path());
    // The host's number with other secret digits.
    let digits: String = code.chars().filter(char::is_ascii_digit).collect();
    let wrong_secret = if &digits[9..] == "00000000" {
        "1111 1111"
    } else {
        "0000 0000"
    };
    let wrong = format!("{} · {wrong_secret}", &code[..11]);
    let mut b = Browser::start();
    b.open(&url);
    for (left, words) in [(2, "2 attempts left"), (1, "1 attempt left"), (0, "burned")] {
        b.cmd(json!({"cmd": "connect", "code": wrong}));
        let page = b.wait(&["error", "live"]);
        let text = page["error"].as_str().unwrap();
        assert!(text.contains(words), "{left} left: {text}");
        let kind = if left == 0 {
            "code_burned"
        } else {
            "wrong_code"
        };
        assert_eq!(page["error_kind"], json!(kind), "{page}");
    }
    b.screenshot("error-code-burned.png");
    // The right code now: refused here, before anything reaches the host.
    let tries = h.count("the device at ");
    b.cmd(json!({"cmd": "connect", "code": code}));
    let page = b.wait(&["error", "live"]);
    assert_eq!(page["error_kind"], json!("code_burned"), "{page}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(h.count("the device at "), tries, "{}", h.output());
    // And the host burned it too.
    assert!(h.output().contains("no attempts left"), "{}", h.output());
}

#[test]
fn the_browser_connects_through_the_relay_only_with_vp8() {
    // The embedded relay refuses loopback peers unless a test lets one through: the host
    // sits on 127.0.0.2 and only that address is allowed.
    let sd = tempfile::tempdir().unwrap();
    let config = sd.path().join("server.toml");
    std::fs::write(
        &config,
        "[relay]\nallow_peers_for_tests = [\"127.0.0.2\"]\n",
    )
    .unwrap();
    let mut cmd = sealdesk(sd.path());
    cmd.args(["server", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config);
    let mut server = Proc::spawn(cmd);
    let server_url = server.wait_line("listening on ");
    let xvfb = Xvfb::start(u32::from(W), u32::from(H)).unwrap();
    let _desk = Desk::open(xvfb.display());
    let (hd, wd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut h = host(
        &server_url,
        xvfb.display(),
        hd.path(),
        &["--local-ip", "127.0.0.2"],
    );
    let code = h.wait_line("code: ");
    let (_web, url) = serve_page(&server_url, wd.path());
    let mut b = Browser::start();
    // A browser that offers only VP8 (as one without VP9 would).
    b.open(&format!("{url}?codecs=vp8"));
    b.cmd(json!({"cmd": "connect", "code": code, "relay_only": true}));
    h.wait_line("Allow? ");
    h.send("y");
    let page = b.wait(&["live", "error"]);
    assert_eq!(page["state"], json!("live"), "{page}\n{}", h.output());
    h.wait_line("● session active");
    assert!(h.output().contains("VP8"), "{}", h.output());
    let (_, _, want) = screen_rgb(xvfb.display());
    let (quality, _) = b.settled_frame(&want);
    println!("browser over the relay, VP8: PSNR {quality:.1} dB");
    assert!(quality >= 30.0, "PSNR {quality:.1} dB");
    // The page says the path is the relay.
    let mut stats = String::new();
    for _ in 0..20 {
        stats = b.cmd(json!({"cmd": "state"}))["stats"]
            .as_str()
            .unwrap()
            .to_owned();
        if stats.contains("relay") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(stats.contains("relay"), "{stats}");
    b.screenshot("live-relay.png");
    b.cmd(json!({"cmd": "end"}));
    h.wait_line("session ended: ");
}

#[test]
fn a_page_served_by_the_server_is_labelled_and_a_host_may_refuse_it() {
    let sd = tempfile::tempdir().unwrap();
    let mut cmd = sealdesk(sd.path());
    cmd.args(["server", "--listen", "127.0.0.1:0", "--web-viewer"]);
    let mut server = Proc::spawn(cmd);
    let server_url = server.wait_line("listening on ");
    let page_url = server_url.replace("ws://", "http://").replace("/ws", "/");
    let xvfb = Xvfb::start(640, 480).unwrap();
    let mut b = Browser::start();

    // A host that lets it in after telling its user what it is.
    let hd = tempfile::tempdir().unwrap();
    let mut h = host(&server_url, xvfb.display(), hd.path(), &[]);
    let code = h.wait_line("code: ");
    b.open(&page_url);
    let page = b.cmd(json!({"cmd": "state"}));
    assert_eq!(page["served_by_server_banner"], json!(true), "{page}");
    b.cmd(json!({"cmd": "connect", "code": code}));
    h.wait_line("Allow? ");
    assert!(
        h.output()
            .contains("viewer: browser (served by the server)"),
        "{}",
        h.output()
    );
    h.send("y");
    assert_eq!(b.wait(&["live", "error"])["state"], json!("live"));
    b.screenshot("live-server-served.png");
    b.cmd(json!({"cmd": "end"}));
    h.wait_line("session ended: ");
    drop(h);

    // A host that refuses such viewers: the page says why, and its user is never asked.
    let hd = tempfile::tempdir().unwrap();
    let mut h = host(
        &server_url,
        xvfb.display(),
        hd.path(),
        &["--deny-server-served-viewers"],
    );
    let code = h.wait_line("code: ");
    b.open(&page_url);
    b.cmd(json!({"cmd": "connect", "code": code}));
    let page = b.wait(&["error", "live"]);
    assert_eq!(page["state"], json!("error"), "{page}");
    let text = page["error"].as_str().unwrap();
    assert!(
        text.contains("does not let in browser viewers served by the signaling server"),
        "{text}"
    );
    let failed = h.wait_line("connection from ");
    assert!(failed.contains("--deny-server-served-viewers"), "{failed}");
    assert!(!h.output().contains("Allow?"), "{}", h.output());
    b.screenshot("error-server-served-refused.png");
}

#[test]
fn a_browser_pairs_with_a_host_and_then_connects_unattended() {
    let server = server();
    let xvfb = Xvfb::start(u32::from(W), u32::from(H)).unwrap();
    let _desk = Desk::open(xvfb.display());
    let (hd, wd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut cmd = sealdesk(hd.path());
    cmd.args([
        "pair",
        "host",
        "--server",
        &server.url,
        "--label",
        "test host",
        "--permissions",
        "view,input,clipboard,unattended",
        "--yes",
    ]);
    let mut pairing = Proc::spawn(cmd);
    let code = pairing.wait_line("code: ");
    let (_web, url) = serve_page(&server.url, wd.path());
    let mut b = Browser::start();
    b.open(&url);
    b.cmd(json!({"cmd": "pair", "code": code}));
    let page = b.wait(&["idle", "error"]);
    let status = page["status"].as_str().unwrap();
    assert!(status.contains("Paired with \"test host\""), "{page}");
    assert!(pairing.wait_exit(), "{}", pairing.output());
    assert!(
        pairing.output().contains("paired with"),
        "{}",
        pairing.output()
    );

    // The host runs with the same data directory: the browser is in its registry now, and
    // gets in without a code (and, with --auto-accept-paired, without a prompt).
    let mut h = host(
        &server.url,
        xvfb.display(),
        hd.path(),
        &["--auto-accept-paired"],
    );
    h.wait_line("code: ");
    // A new page in the same browser lists the paired host (kept in IndexedDB).
    b.cmd(json!({"cmd": "open", "url": url, "keep": true}));
    b.cmd(json!({"cmd": "dial_paired"}));
    let page = b.wait(&["live", "error"]);
    assert_eq!(page["state"], json!("live"), "{page}\n{}", h.output());
    h.wait_line("● session active");
    assert!(!h.output().contains("Allow?"), "{}", h.output());
    let (_, _, want) = screen_rgb(xvfb.display());
    let (quality, _) = b.settled_frame(&want);
    assert!(quality >= 30.0, "PSNR {quality:.1} dB");
    b.screenshot("live-paired.png");
    b.cmd(json!({"cmd": "end"}));
    h.wait_line("session ended: ");
}
