//! Remote-desktop sessions as people run them: a real signaling server, `sealdesk host` on a
//! real Xvfb display, `sealdesk connect --headless` decoding real video, real XTest input and
//! a real X client on the host's display that sees what arrives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes,
    reason = "tests fail by panicking; children are reaped in Drop"
)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::desk::{connect, connect_with, psnr, screen_rgb, settled_frame, Desk, H, W, WAIT};
use common::{sealdesk, server, Proc};
use sealdesk_media::capture::Capturer;
use sealdesk_media::clipboard::Clipboard;
use sealdesk_media::xvfb::Xvfb;
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::ConnectionExt as _;
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_viewer_sees_the_screen_and_its_input_and_clipboard_reach_the_host() {
    let server = server();
    let xvfb = Xvfb::start(u32::from(W), u32::from(H)).unwrap();
    let desk = Desk::open(xvfb.display());
    let mut s = connect(&server, xvfb.display(), "y");
    assert!(
        s.host.output().contains("session active"),
        "{}",
        s.host.output()
    );

    // The decoded picture matches the screen.
    let png = settled_frame(&mut s.viewer);
    let (w, h, decoded) = sealdesk_viewer::headless::read_png_rgb(&png).unwrap();
    let (sw, sh, truth) = screen_rgb(xvfb.display());
    assert_eq!((w, h), (sw, sh));
    let db = psnr(&decoded, &truth);
    eprintln!("decoded frame vs screen: PSNR {db:.1} dB");
    assert!(db >= 35.0, "PSNR {db:.1} dB < 35 dB");
    assert_eq!(mode(&png), 0o600, "frames are screen content");

    // A click and typing arrive at the X client on the host's display.
    s.viewer.send("click 123 77");
    // "é" has no key on the host's (US) layout: the host borrows a spare keycode for it.
    s.viewer.send("type Hi, thére!");
    let evs = desk.wait_events(WAIT, |e| {
        e.iter()
            .filter(|e| matches!(e, Event::KeyRelease(_)))
            .count()
            >= 14
    });
    let press = evs.iter().find_map(|e| match e {
        Event::ButtonPress(b) => Some((b.detail, b.event_x, b.event_y)),
        _ => None,
    });
    assert_eq!(press, Some((1, 123, 77)), "{evs:?}");
    assert!(evs
        .iter()
        .any(|e| matches!(e, Event::ButtonRelease(b) if b.detail == 1)));
    assert_eq!(desk.typed(), "Hi, thére!");

    // Clipboard, viewer → host: an X client on the host's display pastes it.
    let host_clip = Clipboard::connect(Some(xvfb.display()), 1 << 20).unwrap();
    s.viewer.send("clipboard from the viewer: ünïcode ✓");
    s.host.wait_line("clipboard: ");
    let pasted = host_clip.get_text(Duration::from_secs(5)).unwrap();
    assert_eq!(pasted.as_deref(), Some("from the viewer: ünïcode ✓"));

    // Clipboard, host → viewer: a program on the host copies; the viewer receives it.
    host_clip.set_text("copied on the host".into()).unwrap();
    s.viewer.wait_line("clipboard from the host: ");
    let file = s.frames.join("clipboard.txt");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "copied on the host"
    );
    assert_eq!(mode(&file), 0o600, "clipboard text is a secret");

    // The viewer ends the session; both sides say so and exit cleanly.
    s.viewer.send("end");
    assert!(s.viewer.wait_exit(), "{}", s.viewer.output());
    assert!(s.viewer.output().contains("session ended: ended here"));
    s.host.wait_line("session ended: the viewer ended it");
}

#[test]
fn a_view_only_session_shows_the_screen_but_refuses_and_counts_input() {
    let server = server();
    let xvfb = Xvfb::start(u32::from(W), u32::from(H)).unwrap();
    let desk = Desk::open(xvfb.display());
    let mut s = connect(&server, xvfb.display(), "v");
    s.viewer.wait_line("the host allows: view");
    s.viewer.send("click 10 10");
    s.viewer.send("type abc");
    s.viewer.send("clipboard not allowed");
    let refused = s.host.wait_line("refused input from a view-only viewer");
    assert!(refused.contains("events so far"), "{refused}");
    let said = s
        .viewer
        .wait_line("input refused by the host (view only): ");
    assert!(said.trim_end_matches(" events").parse::<u32>().unwrap() >= 1);
    // Give anything that slipped through time to arrive: nothing may.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(desk.input_events(), 0, "view-only input reached the host");
    assert!(
        !s.host.output().contains("clipboard: "),
        "{}",
        s.host.output()
    );
    s.viewer.send("end");
    assert!(s.viewer.wait_exit(), "{}", s.viewer.output());
    let ended = s.host.wait_line("session ended: ");
    // A click (move, press, release), 6 key events and a clipboard text, all refused.
    assert!(ended.contains("0 input events, 10 refused"), "{ended}");
}

#[test]
fn a_viewer_killed_with_sigkill_stops_capture_and_releases_held_keys_within_2_s() {
    let server = server();
    let xvfb = Xvfb::start(u32::from(W), u32::from(H)).unwrap();
    let desk = Desk::open(xvfb.display());
    let mut s = connect(&server, xvfb.display(), "y");
    s.viewer.send("keydown a");
    s.viewer.send("down left");
    desk.wait_events(WAIT, |e| {
        e.iter().any(|e| matches!(e, Event::KeyPress(_)))
            && e.iter().any(|e| matches!(e, Event::ButtonPress(_)))
    });
    s.viewer.child.kill().unwrap(); // SIGKILL: no goodbye of any kind
    let killed = Instant::now();
    let evs = desk.wait_events(Duration::from_secs(5), |e| {
        e.iter().any(|e| matches!(e, Event::KeyRelease(_)))
            && e.iter().any(|e| matches!(e, Event::ButtonRelease(_)))
    });
    let released = killed.elapsed();
    assert!(
        evs.iter().any(|e| matches!(e, Event::KeyRelease(_)))
            && evs.iter().any(|e| matches!(e, Event::ButtonRelease(_))),
        "held key and button not released: {evs:?}\n{}",
        s.host.output()
    );
    assert!(
        released <= Duration::from_secs(2),
        "released after {released:?}"
    );
    s.host
        .wait_line("the viewer stopped answering: capture paused");
    assert!(
        killed.elapsed() <= Duration::from_secs(3),
        "{}",
        s.host.output()
    );
}

#[test]
fn a_viewer_without_vp9_gets_vp8() {
    let server = server();
    let xvfb = Xvfb::start(u32::from(W), u32::from(H)).unwrap();
    let _desk = Desk::open(xvfb.display());
    let mut s = connect_with(&server, xvfb.display(), "y", &[], &["--codec", "vp8"]);
    s.host.wait_line("● session active");
    assert!(
        s.host
            .output()
            .contains("session active: this screen is being shared (VP8,"),
        "{}",
        s.host.output()
    );
    let png = settled_frame(&mut s.viewer);
    let (_, _, decoded) = sealdesk_viewer::headless::read_png_rgb(&png).unwrap();
    let (_, _, truth) = screen_rgb(xvfb.display());
    let db = psnr(&decoded, &truth);
    eprintln!("VP8: decoded frame vs screen: PSNR {db:.1} dB");
    assert!(db >= 30.0, "PSNR {db:.1} dB");
    // The host's user ends the session at once; the viewer is told why and exits cleanly.
    s.host.send("e");
    s.host.wait_line("session ended: ended on this machine");
    assert!(s.viewer.wait_exit(), "{}", s.viewer.output());
    assert!(
        s.viewer
            .output()
            .contains("session ended: the host ended it: the host ended the session"),
        "{}",
        s.viewer.output()
    );
}

/// The window viewer, on a display of its own: the host's picture appears in it.
#[test]
fn the_window_viewer_shows_the_hosts_screen_on_its_own_display() {
    let server = server();
    let host_x = Xvfb::start(u32::from(W), u32::from(H)).unwrap();
    let viewer_x = Xvfb::start(1280, 800).unwrap();
    let _desk = Desk::open(host_x.display());
    let (hd, vd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut cmd = sealdesk(hd.path());
    cmd.args([
        "host",
        "--server",
        &server.url,
        "--display",
        host_x.display(),
        "--no-qr",
    ]);
    let mut host = Proc::spawn_interactive(cmd);
    let code = host.wait_line("code: ");
    let mut cmd = sealdesk(vd.path());
    cmd.args(["connect", &code, "--server", &server.url])
        .env("DISPLAY", viewer_x.display());
    let mut viewer = Proc::spawn_interactive(cmd);
    host.wait_line("Allow? ");
    host.send("y");
    viewer.wait_line("first frame ");
    // The picture's red panel (220, 40, 40) shows up, scaled, on the viewer's display.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, _, rgb) = screen_rgb(viewer_x.display());
        let red = rgb
            .chunks_exact(3)
            .filter(|p| p[0] > 200 && p[1] < 70 && p[2] < 70)
            .count();
        if red > 5000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{red} red pixels: {}",
            viewer.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    host.send("e");
    assert!(viewer.wait_exit(), "{}", viewer.output());
}

/// Two RandR monitors on one X screen: the host streams the one asked for, the viewer
/// switches, and pointer coordinates are the shown monitor's.
#[test]
fn the_host_streams_the_chosen_monitor_and_the_viewer_can_switch() {
    use x11rb::protocol::randr::{self, ConnectionExt as _};
    let server = server();
    let xvfb = Xvfb::start(1280, 720).unwrap();
    {
        let (conn, screen) = RustConnection::connect(Some(xvfb.display())).unwrap();
        let root = conn.setup().roots[screen].root;
        conn.randr_query_version(1, 5).unwrap().reply().unwrap();
        for (name, x, width) in [("LEFT", 0, 800), ("RIGHT", 800, 480)] {
            let atom = conn
                .intern_atom(false, name.as_bytes())
                .unwrap()
                .reply()
                .unwrap()
                .atom;
            conn.randr_set_monitor(
                root,
                randr::MonitorInfo {
                    name: atom,
                    primary: x == 0,
                    automatic: false,
                    x,
                    y: 0,
                    width,
                    height: 720,
                    width_in_millimeters: 0,
                    height_in_millimeters: 0,
                    outputs: vec![],
                },
            )
            .unwrap()
            .check()
            .unwrap();
        }
    }
    let monitors = Capturer::connect(Some(xvfb.display()))
        .unwrap()
        .monitors()
        .unwrap();
    let index = |name: &str| monitors.iter().position(|m| m.name == name).unwrap();
    let (left, right) = (index("LEFT"), index("RIGHT"));
    let desk = Desk::open_sized(xvfb.display(), 1280, 720);
    let mut s = connect_with(
        &server,
        xvfb.display(),
        "y",
        &["--monitor", &right.to_string()],
        &[],
    );
    let first = s.viewer.output();
    assert!(first.contains("first frame 480x720"), "{first}");
    assert!(
        first.contains(&format!(
            "the host has {} monitors; showing {right}",
            monitors.len()
        )),
        "{first}"
    );
    // A click in the shown monitor's pixels lands there on the X screen.
    s.viewer.send("click 10 20");
    let evs = desk.wait_events(WAIT, |e| {
        e.iter().any(|e| matches!(e, Event::ButtonPress(_)))
    });
    let at = evs.iter().find_map(|e| match e {
        Event::ButtonPress(b) => Some((b.root_x, b.root_y)),
        _ => None,
    });
    assert_eq!(at, Some((810, 20)));
    // Switch: the frames become the other monitor's size.
    s.viewer.send(&format!("monitor {left}"));
    s.host
        .wait_line(&format!("the viewer switched to monitor {left}"));
    let deadline = Instant::now() + WAIT;
    while !s.viewer.output().contains(" 800x720 ") {
        assert!(Instant::now() < deadline, "{}", s.viewer.output());
        std::thread::sleep(Duration::from_millis(20));
    }
    s.viewer.send("end");
    assert!(s.viewer.wait_exit(), "{}", s.viewer.output());
}

#[test]
fn a_paired_viewer_connects_by_name_and_a_revoked_one_is_refused() {
    let server = server();
    let xvfb = Xvfb::start(u32::from(W), u32::from(H)).unwrap();
    let _desk = Desk::open(xvfb.display());
    let (hd, vd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Pair once, allowing unattended access.
    let mut cmd = sealdesk(hd.path());
    cmd.args([
        "pair",
        "host",
        "--server",
        &server.url,
        "--label",
        "office pc",
        "--yes",
        "--permissions",
        "view,input,clipboard,unattended",
    ]);
    let mut pair_host = Proc::spawn(cmd);
    let code = pair_host.wait_line("code: ");
    let out = sealdesk(vd.path())
        .args([
            "pair",
            "connect",
            &code,
            "--server",
            &server.url,
            "--label",
            "alice laptop",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(pair_host.wait_exit(), "{}", pair_host.output());

    // The host lets paired devices in without asking; the viewer names the host.
    let mut cmd = sealdesk(hd.path());
    cmd.args([
        "host",
        "--server",
        &server.url,
        "--display",
        xvfb.display(),
        "--no-qr",
        "--auto-accept-paired",
    ]);
    let mut host = Proc::spawn_interactive(cmd);
    host.wait_line("code: ");
    let frames = vd.path().join("frames");
    let mut cmd = sealdesk(vd.path());
    cmd.args([
        "connect",
        "office pc",
        "--server",
        &server.url,
        "--headless",
    ])
    .arg("--frames")
    .arg(&frames);
    let mut viewer = Proc::spawn_interactive(cmd);
    viewer.wait_line("first frame ");
    let started = host.wait_line("session started with ");
    assert!(
        started.contains("\"alice laptop\"") && started.contains("paired device"),
        "{started}"
    );
    assert!(!host.output().contains("Allow?"), "{}", host.output());
    viewer.send("end");
    assert!(viewer.wait_exit(), "{}", viewer.output());
    host.wait_line("session ended: ");

    // Revoked on the host (while it runs): the next attempt is refused by the registry.
    let out = sealdesk(hd.path())
        .args(["devices", "revoke", "alice laptop"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = sealdesk(vd.path());
    cmd.args([
        "connect",
        "office pc",
        "--server",
        &server.url,
        "--headless",
        "--timeout",
        "10",
    ]);
    let mut viewer = Proc::spawn_interactive(cmd);
    assert!(!viewer.wait_exit(), "{}", viewer.output());
    assert!(
        viewer.output().to_lowercase().contains("revoked"),
        "{}",
        viewer.output()
    );
    let failed = host.wait_line("connection from ");
    assert!(failed.contains("revoked"), "{failed}");
    assert_eq!(host.output().matches("session started").count(), 1);
}
