//! A host that sends garbage (STYLE.md §7): corrupt control messages are counted and
//! dropped, video frames that do not decode make the viewer ask for a keyframe instead of
//! showing garbage, and the session goes on until the host ends it. Real UDP, real libvpx.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "tests fail by panicking and read the real clock"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng as _, SeedableRng as _};
use sealdesk_proto::control::{ControlMessage, EndReason};
use sealdesk_rtc::{driver, Session, SessionConfig, SessionEvent, VideoCodec};
use sealdesk_viewer::dial::Transport;
use sealdesk_viewer::run::{self, ViewerEnd, ViewerLimits};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_host_is_dropped_and_bad_frames_ask_for_a_keyframe() {
    let vsock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let hsock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let now = Instant::now();
    let mut v = Session::new(now, vsock.local_addr().unwrap()).unwrap();
    let config = SessionConfig {
        codecs: vec![VideoCodec::Vp9],
        initial_kbps: Some(1000),
        ..SessionConfig::default()
    };
    let mut h = Session::with_config(now, hsock.local_addr().unwrap(), &config).unwrap();
    // The handshake is tested elsewhere; here the fingerprints are simply exchanged.
    v.set_peer_fingerprint(h.local_fingerprint());
    h.set_peer_fingerprint(v.local_fingerprint());
    let answer = h.accept_offer(&v.create_offer().unwrap()).unwrap();
    v.accept_answer(&answer).unwrap();

    let decoded = Arc::new(AtomicU64::new(0));
    let d = decoded.clone();
    let (_input_tx, input_rx) = tokio::sync::mpsc::channel(8);
    let transport = Transport {
        rtc: v,
        link: sealdesk_rtc::driver::Link::new(vsock),
        started: now,
        restarter: None,
        relay_expires_at: None,
        recording: None,
    };
    let viewer = tokio::spawn(run::run(
        transport,
        move |_| {
            d.fetch_add(1, Ordering::Relaxed);
        },
        input_rx,
        ViewerLimits::default(),
        |_| {},
    ));
    let (host, mut events, task) = driver::spawn(h, driver::Link::new(hsock));
    next(&mut events, |e| matches!(e, SessionEvent::Ready { .. })).await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut undecodable = 0u64;
    for _ in 0..300 {
        let len = rng.gen_range(1..200);
        let b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        undecodable += u64::from(ControlMessage::decode(&b).is_err());
        host.send_control_bytes(b).await.unwrap();
    }
    // Frames of random bytes: the decoder refuses them, and the viewer asks for a keyframe.
    for i in 0..20u64 {
        let len = rng.gen_range(10..3000);
        let frame: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        // The driver refuses video while its queue is full (it never blocks): wait for room.
        let by = Instant::now() + Duration::from_secs(10);
        while !host.try_send_video(VideoCodec::Vp9, 3000 * (i + 1), frame.clone()) {
            assert!(Instant::now() < by, "the driver never took the frame");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    next(&mut events, |e| {
        matches!(e, SessionEvent::KeyframeRequested)
    })
    .await;
    // Still alive: it answers a ping sent after all of that.
    host.send_control(ControlMessage::Ping {
        id: 99,
        sent_micros: 1,
    })
    .await
    .unwrap();
    next(&mut events, |e| {
        matches!(
            e,
            SessionEvent::Control(ControlMessage::Pong { id: 99, .. })
        )
    })
    .await;
    host.send_control(ControlMessage::End {
        reason: EndReason::HostStopped,
        text: "test over".into(),
    })
    .await
    .unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(10), viewer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.end, ViewerEnd::HostEnded("test over".into()));
    assert_eq!(summary.malformed, undecodable);
    assert!(summary.keyframe_requests >= 1, "{summary:?}");
    assert_eq!(
        decoded.load(Ordering::Relaxed),
        0,
        "garbage was shown as a picture"
    );
    host.close().await;
    let _ = task.await;
}
