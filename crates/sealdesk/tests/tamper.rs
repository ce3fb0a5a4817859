//! A malicious signaling server (DESIGN.md §10.3): a real `sealdesk server` process whose
//! operator also controls a proxy in front of it, rewriting what it forwards. Swapping a
//! DTLS fingerprint in the handshake (to put its own certificate in the middle later), or
//! replaying an offer from an earlier session, must end the attempt before any session
//! starts: no frame, no consent prompt answered into a session, and both sides say why.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes,
    reason = "tests fail by panicking; children are reaped in Drop"
)]

mod common;

use std::time::Duration;

use common::evil::{evil_server, EvilServer, Tamper};
use common::{sealdesk, Proc};
use sealdesk_media::xvfb::Xvfb;

fn host(server: &EvilServer, display: &str, data: &std::path::Path) -> Proc {
    let mut cmd = sealdesk(data);
    cmd.args([
        "host",
        "--server",
        &server.url,
        "--display",
        display,
        "--no-qr",
    ]);
    Proc::spawn_interactive(cmd)
}

fn viewer(server: &EvilServer, code: &str, data: &std::path::Path) -> Proc {
    let mut cmd = sealdesk(data);
    cmd.args([
        "connect",
        code,
        "--server",
        &server.url,
        "--headless",
        "--timeout",
        "5",
        "--seconds",
        "20",
    ]);
    Proc::spawn_interactive(cmd)
}

/// Nothing that only a session produces appeared on either side.
fn assert_no_session(host: &Proc, viewer: &Proc) {
    let (h, v) = (host.output(), viewer.output());
    for (said, what) in [
        (&h, "session started"),
        (&h, "session active"),
        (&v, "connected in"),
        (&v, "first frame"),
        (&v, "approved"),
    ] {
        assert!(!said.contains(what), "{what:?} appeared:\n{h}\n---\n{v}");
    }
}

#[test]
fn a_server_that_swaps_a_dtls_fingerprint_in_the_handshake_gets_no_session() {
    let server = evil_server();
    let xvfb = Xvfb::start(640, 480).unwrap();
    for mode in [Tamper::SwapViewerFingerprint, Tamper::SwapHostFingerprint] {
        server.set(mode.clone());
        let (hd, vd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut h = host(&server, xvfb.display(), hd.path());
        let code = h.wait_line("code: ");
        let before = server.tampered();
        let mut v = viewer(&server, &code, vd.path());
        assert!(!v.wait_exit(), "the viewer connected: {}", v.output());
        assert_eq!(server.tampered(), before + 1, "{mode:?} was not applied");
        // Both sides report it in the handshake's words.
        assert!(
            v.output()
                .contains("wrong code, or someone tampered with the connection"),
            "{mode:?}: {}",
            v.output()
        );
        let failed = h.wait_line("connection from ");
        assert!(
            failed.contains("someone tampered with the connection"),
            "{mode:?}: {failed}"
        );
        assert!(!h.output().contains("Allow?"), "{}", h.output());
        assert_no_session(&h, &v);
    }
}

#[test]
fn a_server_that_replays_an_earlier_offer_gets_no_session() {
    let server = evil_server();
    let xvfb = Xvfb::start(640, 480).unwrap();
    let (hd, vd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut h = host(&server, xvfb.display(), hd.path());

    // A first, honest session: the operator records the sealed offer it carried.
    server.set(Tamper::Record);
    let code = h.wait_line("code: ");
    let mut v = viewer(&server, &code, vd.path());
    h.wait_line("Allow? ");
    h.send("y");
    v.wait_line("first frame ");
    v.send("end");
    assert!(v.wait_exit(), "{}", v.output());
    h.wait_line("session ended: ");
    assert!(server.state.lock().unwrap().recorded.is_some());

    // The second session: the server swaps the new offer for the recorded one.
    server.set(Tamper::ReplayOffer);
    let code = h.wait_nth("code: ", 2, Duration::from_secs(10)).unwrap();
    let mut v = viewer(&server, &code, vd.path());
    h.wait_nth("Allow? ", 2, Duration::from_secs(20)).unwrap();
    h.send("y");
    assert!(!v.wait_exit(), "the viewer connected: {}", v.output());
    assert!(
        v.output()
            .contains("the signaling server may have dropped or altered it"),
        "{}",
        v.output()
    );
    let warning = h.wait_line("warning: tampering suspected");
    assert!(warning.contains("failed authentication"), "{warning}");
    let h_out = h.output();
    assert_eq!(
        h_out.matches("session started").count(),
        1,
        "only the honest session started: {h_out}"
    );
    assert!(!v.output().contains("connected in"), "{}", v.output());
}
