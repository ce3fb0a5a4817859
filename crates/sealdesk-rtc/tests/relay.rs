//! A session whose only path is a real TURN relay (sealdesk's embedded one, on loopback):
//! both sides relay-only, so neither learns the other's address; the relay hands packets
//! between their two allocations; DTLS, the fingerprint check, the control channel and video
//! all work through it, and the path is reported as relayed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "tests fail by panicking and read the real clock"
)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sealdesk_proto::control::ControlMessage;
use sealdesk_rtc::relay::{RelayServer, RelayState};
use sealdesk_rtc::{driver, Path, Session, SessionConfig, SessionEvent, VideoCodec};
use sealdesk_server::relay::credentials::{issue, RelaySecret};
use sealdesk_server::relay::{Relay, RelayConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::Receiver;
use zeroize::Zeroizing;

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
async fn two_relay_only_sessions_connect_through_the_relay() {
    let secret = RelaySecret::new(b"rtc-relay-test-secret".to_vec()).unwrap();
    let relay = Relay::bind(RelayConfig::new(
        "127.0.0.3:0".parse().unwrap(),
        secret.clone(),
    ))
    .await
    .unwrap();
    let relay_addr = relay.local_addr();
    let stats = relay.stats();
    tokio::spawn(relay.run(std::future::pending()));
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let server = |id: &str| {
        let c = issue(&secret, id, now_unix, 600);
        RelayServer {
            addr: relay_addr,
            username: c.username,
            password: Zeroizing::new(c.password.to_string()),
        }
    };

    let vsock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let hsock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let now = Instant::now();
    let relay_only = |kbps| SessionConfig {
        codecs: vec![VideoCodec::Vp9],
        initial_kbps: kbps,
        host_candidate: false,
    };
    let mut v = Session::with_config(now, vsock.local_addr().unwrap(), &relay_only(None)).unwrap();
    let mut h =
        Session::with_config(now, hsock.local_addr().unwrap(), &relay_only(Some(2000))).unwrap();
    v.add_relay(now, &server("viewer"));
    h.add_relay(now, &server("host"));
    let by = Instant::now() + Duration::from_secs(5);
    let vs = driver::gather(&mut v, &vsock, by).await;
    let hs = driver::gather(&mut h, &hsock, by).await;
    let (Some(RelayState::Allocated(va)), Some(RelayState::Allocated(ha))) = (vs, hs) else {
        panic!("no allocations: {vs:?} {hs:?}");
    };
    assert_eq!((va.ip(), ha.ip()), (relay_addr.ip(), relay_addr.ip()));

    v.set_peer_fingerprint(h.local_fingerprint());
    h.set_peer_fingerprint(v.local_fingerprint());
    let offer = v.create_offer().unwrap();
    // Relay-only: the SDP names the relayed address, never the socket's.
    assert!(offer.contains("typ relay"), "{offer}");
    assert!(!offer.contains("typ host"), "{offer}");
    let answer = h.accept_offer(&offer).unwrap();
    assert!(answer.contains("typ relay") && !answer.contains("typ host"));
    v.accept_answer(&answer).unwrap();

    let (vh, mut vev, vtask) = driver::spawn(v, vsock);
    let (hh, mut hev, htask) = driver::spawn(h, hsock);
    next(&mut vev, |e| matches!(e, SessionEvent::Ready { .. })).await;
    next(&mut hev, |e| matches!(e, SessionEvent::Ready { .. })).await;
    vh.send_control(ControlMessage::Clipboard {
        text: "through the relay".into(),
    })
    .await
    .unwrap();
    let got = next(&mut hev, |e| matches!(e, SessionEvent::Control(_))).await;
    assert_eq!(
        got,
        SessionEvent::Control(ControlMessage::Clipboard {
            text: "through the relay".into()
        })
    );
    let frame = vec![42u8; 30_000];
    let by = Instant::now() + Duration::from_secs(5);
    while !hh.try_send_video(VideoCodec::Vp9, 9000, frame.clone()) {
        assert!(Instant::now() < by);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = next(&mut vev, |e| matches!(e, SessionEvent::Video { .. })).await;
    assert!(matches!(got, SessionEvent::Video { data, .. } if data == frame));
    // The link reports the relayed path.
    let link = next(
        &mut vev,
        |e| matches!(e, SessionEvent::Link(l) if l.path.is_some()),
    )
    .await;
    assert!(
        matches!(link, SessionEvent::Link(l) if l.path == Some(Path::Relay)),
        "{link:?}"
    );
    assert!(stats.relayed_bytes.load(Ordering::Relaxed) > 30_000);
    assert_eq!(stats.allocations.load(Ordering::Relaxed), 2);
    vh.close().await;
    hh.close().await;
    let _ = (vtask.await, htask.await);
}
