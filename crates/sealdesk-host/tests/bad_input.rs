//! A viewer that sends garbage on the control channel (STYLE.md §7): every message that does
//! not decode is counted and dropped, messages that decode but make no sense (a monitor the
//! host does not have, a keysym no key types) are refused where they would be injected, and
//! the session goes on — it still answers pings and still sends video. Real Xvfb, real UDP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "tests fail by panicking and read the real clock"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng as _, SeedableRng as _};
use sealdesk_auth::trust::Permissions;
use sealdesk_host::session::{self, SessionControl, SessionEnd, SessionSetup};
use sealdesk_media::xvfb::Xvfb;
use sealdesk_proto::control::ControlMessage;
use sealdesk_rtc::driver;
use sealdesk_rtc::{Session, SessionConfig, SessionEvent, VideoCodec};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::Receiver;

async fn next(
    rx: &mut Receiver<SessionEvent>,
    want: impl Fn(&SessionEvent) -> bool,
) -> SessionEvent {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let e = rx.recv().await.expect("the session ended");
            if want(&e) {
                return e;
            }
        }
    })
    .await
    .expect("timed out")
}

/// Corrupt, truncated, extended and nonsensical control messages.
fn garbage() -> Vec<Vec<u8>> {
    let valid = [
        ControlMessage::Key {
            keysym: 0x61,
            down: true,
        },
        ControlMessage::PointerMove {
            monitor: 0,
            x: 5,
            y: 5,
        },
        ControlMessage::Clipboard {
            text: "hello".into(),
        },
        ControlMessage::Ping {
            id: 1,
            sent_micros: 2,
        },
    ];
    let mut out = Vec::new();
    for m in &valid {
        let b = m.encode().unwrap();
        for cut in 1..b.len() {
            out.push(b[..cut].to_vec());
        }
        let mut longer = b.clone();
        longer.extend_from_slice(&[0, 1, 2]);
        out.push(longer);
    }
    out.extend([
        vec![0x7e],                                     // unknown type
        vec![0x11, 7, 1],                               // no such button
        vec![0x13, 0, 0, 0, 0x61, 9],                   // bool that is neither 0 nor 1
        vec![0x20, 1, 0, 0, 0, 2, 0xc3, 0x28],          // clipboard that is not UTF-8
        vec![0x20, 1, 0xff, 0xff, 0xff, 0xff],          // clipboard claiming 4 GiB
        vec![0x30, 200],                                // 200 monitors
        vec![0x37, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], // a 65535² cursor
    ]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..400 {
        let len = rng.gen_range(1..300);
        out.push((0..len).map(|_| rng.gen()).collect());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_control_messages_are_dropped_and_the_session_goes_on() {
    let xvfb = Xvfb::start(320, 240).unwrap();
    let vsock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let hsock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let now = Instant::now();
    let mut v = Session::new(now, vsock.local_addr().unwrap()).unwrap();
    let host_config = SessionConfig {
        codecs: vec![VideoCodec::Vp9, VideoCodec::Vp8],
        initial_kbps: Some(1000),
        ..SessionConfig::default()
    };
    let mut h = Session::with_config(now, hsock.local_addr().unwrap(), &host_config).unwrap();
    // The handshake is tested elsewhere; here the fingerprints are simply exchanged.
    v.set_peer_fingerprint(h.local_fingerprint());
    h.set_peer_fingerprint(v.local_fingerprint());
    let answer = h.accept_offer(&v.create_offer().unwrap()).unwrap();
    v.accept_answer(&answer).unwrap();

    let (control, end) = SessionControl::new();
    let notes = Arc::new(Mutex::new(Vec::new()));
    let n = notes.clone();
    let mut setup = SessionSetup {
        permissions: Permissions::DEFAULT_PAIRED,
        ..SessionSetup::default()
    };
    setup.capture.display = Some(xvfb.display().to_owned());
    let host = tokio::spawn(session::run(
        h,
        driver::Link::new(hsock),
        setup,
        None,
        None,
        end,
        move |note| n.lock().unwrap().push(note),
    ));
    let (viewer, mut events, task) = driver::spawn(v, driver::Link::new(vsock));
    next(&mut events, |e| matches!(e, SessionEvent::Ready { .. })).await;
    next(&mut events, |e| matches!(e, SessionEvent::Video { .. })).await;

    let junk = garbage();
    let undecodable = junk
        .iter()
        .filter(|b| ControlMessage::decode(b).is_err())
        .count() as u64;
    assert!(undecodable > 400, "the garbage is mostly undecodable");
    for b in &junk {
        viewer.send_control_bytes(b.clone()).await.unwrap();
    }
    // Well-formed nonsense: refused where it would be injected, not fatal.
    for m in [
        ControlMessage::PointerMove {
            monitor: 200,
            x: 1,
            y: 1,
        },
        ControlMessage::Key {
            keysym: 0x00ff_ffff,
            down: true,
        },
        ControlMessage::MonitorLayout {
            monitors: vec![],
            active: 0,
        },
        ControlMessage::SelectMonitor { index: 9 },
    ] {
        viewer.send_control(m).await.unwrap();
    }
    // Still alive: it answers a ping (sent after all the garbage, on an ordered channel) …
    viewer
        .send_control(ControlMessage::Ping {
            id: 4242,
            sent_micros: 1,
        })
        .await
        .unwrap();
    next(&mut events, |e| {
        matches!(
            e,
            SessionEvent::Control(ControlMessage::Pong { id: 4242, .. })
        )
    })
    .await;
    // … and still streams: a keyframe request gets a frame.
    viewer.request_keyframe().await.unwrap();
    next(&mut events, |e| matches!(e, SessionEvent::Video { .. })).await;

    control.end();
    let summary = host.await.unwrap();
    assert_eq!(summary.end, SessionEnd::HostEnded);
    assert_eq!(
        summary.malformed, undecodable,
        "every undecodable message counted, none more"
    );
    assert!(summary.frames >= 2, "{summary:?}");
    viewer.close().await;
    let _ = task.await;
}
