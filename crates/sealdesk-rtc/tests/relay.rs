//! A session whose only path is a real TURN relay (sealdesk's embedded one, on loopback):
//! both sides relay-only, so neither learns the other's address; the relay hands packets
//! between their two allocations; DTLS, the fingerprint check, the control channel and video
//! all work through it, and the path is reported as relayed. Where UDP to the relay goes
//! nowhere, the same session relays over TCP.

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
use sealdesk_rtc::driver::Link;
use sealdesk_rtc::relay::RelayUse;
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
    relayed_session(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_udp_to_the_relay_goes_nowhere_the_viewer_relays_over_tcp() {
    relayed_session(Some(false)).await;
}

/// Told that UDP was blocked last time, the viewer goes to TCP without trying UDP first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn told_that_udp_was_blocked_the_viewer_tries_tcp_first() {
    relayed_session(Some(true)).await;
}

/// Host and viewer relay-only through the embedded relay. With `viewer_udp_blocked` the
/// viewer's credential names a UDP address that swallows everything (as a firewall would)
/// and the relay's TCP address, and the viewer finds its way over TCP — trying UDP first
/// unless `Some(true)` (TCP first).
async fn relayed_session(viewer_udp_blocked: Option<bool>) {
    let secret = RelaySecret::new(b"rtc-relay-test-secret".to_vec()).unwrap();
    let relay = Relay::bind(RelayConfig::new(
        "127.0.0.3:0".parse().unwrap(),
        secret.clone(),
    ))
    .await
    .unwrap();
    let relay_addr = relay.local_addr();
    assert!(relay.serves_tcp());
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
            tcp: false,
            tcp_fallback: Some(relay_addr),
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
    let (mut vlink, mut hlink) = (Link::new(vsock), Link::new(hsock));
    h.add_relay(now, &server("host"));
    let by = Instant::now() + Duration::from_secs(5);
    let hs = driver::gather(&mut h, &mut hlink, by).await;
    let _black_hole;
    let vs = if let Some(tcp_first) = viewer_udp_blocked {
        let hole = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let urls = [
            format!("turn:{}?transport=udp", hole.local_addr().unwrap()),
            format!("turn:{relay_addr}?transport=tcp"),
        ];
        let c = issue(&secret, "viewer", now_unix, 600);
        let credential = (&urls[..], c.username.as_str(), c.password.as_str());
        let relayed = driver::relay_candidate(
            &mut v,
            &mut vlink,
            RelayUse::Only,
            Some(credential),
            tcp_first,
        )
        .await
        .unwrap();
        assert!(
            vlink.relay_over_tcp(),
            "the viewer did not fall back to TCP"
        );
        // UDP was tried (its Allocate reached the black hole) only when not told otherwise.
        let mut b = [0u8; 1500];
        assert_eq!(hole.try_recv_from(&mut b).is_ok(), !tcp_first);
        _black_hole = hole;
        relayed.map(RelayState::Allocated)
    } else {
        v.add_relay(now, &server("viewer"));
        driver::gather(&mut v, &mut vlink, by).await
    };
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

    let (vh, mut vev, vtask) = driver::spawn(v, vlink);
    let (hh, mut hev, htask) = driver::spawn(h, hlink);
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

/// A session that had to reach its relay over TCP stays on TCP when it renews its
/// allocation with a fresh credential (which names the UDP address first).
#[test]
fn a_renewal_keeps_a_relay_reached_over_tcp_on_tcp() {
    let now = Instant::now();
    let mut s = Session::new(now, "127.0.0.1:5000".parse().unwrap()).unwrap();
    let relay = |user: &str| RelayServer {
        addr: "127.0.0.3:3478".parse().unwrap(),
        tcp: false,
        tcp_fallback: Some("127.0.0.3:3479".parse().unwrap()),
        username: user.into(),
        password: Zeroizing::new("pw".into()),
    };
    s.add_relay(now, &relay("old").over_tcp().unwrap());
    assert!(s.renew_relay(now, Some(relay("fresh"))));
    let r = s.relay_server().unwrap();
    assert_eq!((r.username.as_str(), r.tcp), ("fresh", true));
    assert_eq!(r.addr, "127.0.0.3:3479".parse().unwrap());

    // And one that used UDP stays on UDP.
    let mut s = Session::new(now, "127.0.0.1:5001".parse().unwrap()).unwrap();
    s.add_relay(now, &relay("old"));
    assert!(s.renew_relay(now, Some(relay("fresh"))));
    assert!(!s.relay_server().unwrap().tcp);
}
