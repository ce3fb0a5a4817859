//! Two WebRTC sessions bound to an attended handshake: offer and answer travel only as
//! sealed signaling; the control channel opens only after DTLS presented the authenticated
//! certificates. Deterministic in-memory network first (STYLE.md §9), then real UDP sockets.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "tests assert by panicking and drive time from a real Instant"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use sealdesk_auth::attended::{host::AttendedHost, viewer};
use sealdesk_auth::code::{OneTimeCode, ViewerAttempts};
use sealdesk_auth::negotiate::Offer;
use sealdesk_auth::sdp::{DtlsFingerprint, SdpError};
use sealdesk_auth::sealed::{SealError, SealedKind, SealedSignaling};
use sealdesk_auth::trust::Permissions;
use sealdesk_auth::IdentityKey;
use sealdesk_proto::control::ControlMessage;
use sealdesk_proto::RoutingNumber;
use sealdesk_rtc::{Session, SessionError, SessionEvent};

const V_ADDR: &str = "127.0.0.1:40001";
const H_ADDR: &str = "127.0.0.1:40002";

/// Runs an attended handshake in memory with these DTLS fingerprints; returns the viewer's
/// and host's sealed channels.
fn handshake(fp_v: DtlsFingerprint, fp_h: DtlsFingerprint) -> (SealedSignaling, SealedSignaling) {
    let now = Instant::now();
    let (hk, vk) = (
        IdentityKey::generate(&mut OsRng),
        IdentityKey::generate(&mut OsRng),
    );
    let routing = RoutingNumber::new(123_456_789).unwrap();
    let mut host = AttendedHost::new(
        OneTimeCode::draw(routing, &mut OsRng),
        &Offer::default(),
        now,
    );
    let code = OneTimeCode::parse(&host.code().display()).unwrap();
    let mut tries = ViewerAttempts::new();
    let (v, a1) =
        viewer::start(&code, &Offer::default(), fp_v, &mut tries, now, &mut OsRng).unwrap();
    let (h, a2) = host
        .handle_a1(now, &a1, &hk, "host", fp_h, &mut OsRng)
        .unwrap();
    let (waiting, a3) = v.handle_a2(&a2, &vk, "viewer", &mut tries, now).unwrap();
    let (_est, host_sealed, accept) = host
        .handle_a3(now, h, &a3)
        .unwrap()
        .approve(Permissions::ALL);
    let Ok(Ok((_v_est, viewer_sealed))) = waiting.handle(&accept) else {
        panic!("accept")
    };
    (viewer_sealed, host_sealed)
}

/// Runs the handshake with the sessions' real fingerprints, then offer and answer through
/// the sealed channels, and applies them: the path every honest session takes.
fn connect_sealed(v: &mut Session, h: &mut Session) {
    connect_sealed_keep(v, h);
}

/// [`connect_sealed`], keeping the sealed channels (for renegotiation) and the first offer.
fn connect_sealed_keep(
    v: &mut Session,
    h: &mut Session,
) -> (SealedSignaling, SealedSignaling, String) {
    let (mut vs, mut hs) = handshake(v.local_fingerprint(), h.local_fingerprint());
    v.set_peer_fingerprint(*vs.fp_peer());
    h.set_peer_fingerprint(*hs.fp_peer());
    let first = v.create_offer().unwrap();
    let offer = vs.seal(SealedKind::Offer, first.as_bytes()).unwrap();
    let body = hs.open(&offer).unwrap().body;
    let answer = h.accept_offer(std::str::from_utf8(&body).unwrap()).unwrap();
    let answer = hs.seal(SealedKind::Answer, answer.as_bytes()).unwrap();
    let body = vs.open(&answer).unwrap().body;
    v.accept_answer(std::str::from_utf8(&body).unwrap())
        .unwrap();
    (vs, hs, first)
}

/// An SDP's `a=ice-ufrag`.
fn ufrag(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .unwrap_or_default()
        .to_owned()
}

/// Moves packets between the two sessions until both are quiet or `until` returns true.
fn drive(
    v: &mut Session,
    h: &mut Session,
    until: impl FnMut(&[SessionEvent], &[SessionEvent]) -> bool,
) -> (Vec<SessionEvent>, Vec<SessionEvent>) {
    drive_with(v, h, true, until)
}

/// [`drive`] on a network that delivers every packet (`deliver`) or none.
fn drive_with(
    v: &mut Session,
    h: &mut Session,
    deliver: bool,
    mut until: impl FnMut(&[SessionEvent], &[SessionEvent]) -> bool,
) -> (Vec<SessionEvent>, Vec<SessionEvent>) {
    let (va, ha): (SocketAddr, SocketAddr) = (V_ADDR.parse().unwrap(), H_ADDR.parse().unwrap());
    let mut now = Instant::now();
    let (mut ve, mut he) = (Vec::new(), Vec::new());
    for _ in 0..20_000 {
        let mut moved = false;
        while let Some(t) = v.poll_transmit() {
            moved = deliver;
            if deliver {
                h.handle_receive(now, va, t.destination, &t.contents);
            }
        }
        while let Some(t) = h.poll_transmit() {
            moved = deliver;
            if deliver {
                v.handle_receive(now, ha, t.destination, &t.contents);
            }
        }
        while let Some(e) = v.poll_event() {
            ve.push(e);
        }
        while let Some(e) = h.poll_event() {
            he.push(e);
        }
        if until(&ve, &he) {
            break;
        }
        if !moved {
            now = now.max(v.poll_timeout().min(h.poll_timeout())) + Duration::from_millis(1);
            v.handle_timeout(now);
            h.handle_timeout(now);
        }
    }
    (ve, he)
}

fn ready(e: &[SessionEvent]) -> bool {
    e.iter().any(|e| matches!(e, SessionEvent::Ready { .. }))
}

fn sessions() -> (Session, Session) {
    let now = Instant::now();
    (
        Session::new(now, V_ADDR.parse().unwrap()).unwrap(),
        Session::new(now, H_ADDR.parse().unwrap()).unwrap(),
    )
}

#[test]
fn sealed_offer_and_answer_then_control_messages_both_ways() {
    let (mut v, mut h) = sessions();
    connect_sealed(&mut v, &mut h);

    // Nothing may be sent before the fingerprints are verified.
    assert!(matches!(
        v.send_control(&ControlMessage::ReleaseAll),
        Err(SessionError::State(_))
    ));
    assert_eq!(
        h.answered_codecs(),
        [sealdesk_rtc::VideoCodec::Vp9, sealdesk_rtc::VideoCodec::Vp8]
    );
    let (ve, he) = drive(&mut v, &mut h, |a, b| ready(a) && ready(b));
    assert!(ready(&ve) && ready(&he), "viewer {ve:?} host {he:?}");
    // The host may send what its answer accepted; the receive-only viewer sends nothing.
    assert!(he.contains(&SessionEvent::Ready {
        send_codecs: vec![sealdesk_rtc::VideoCodec::Vp9, sealdesk_rtc::VideoCodec::Vp8]
    }));
    assert!(
        ve.contains(&SessionEvent::Ready {
            send_codecs: vec![]
        }),
        "{ve:?}"
    );

    let key = ControlMessage::Key {
        keysym: 0x61,
        down: true,
    };
    v.send_control(&key).unwrap();
    let layout = ControlMessage::Permissions { bits: 15 };
    h.send_control(&layout).unwrap();
    let (ve, he) = drive(&mut v, &mut h, |a, b| {
        a.contains(&SessionEvent::Control(layout.clone()))
            && b.contains(&SessionEvent::Control(key.clone()))
    });
    assert!(he.contains(&SessionEvent::Control(key)), "{he:?}");
    assert!(ve.contains(&SessionEvent::Control(layout)), "{ve:?}");

    // Video: the host sends an encoded frame; the viewer gets it whole, with its codec.
    assert_eq!(h.video_codec(), Some(sealdesk_rtc::VideoCodec::Vp9));
    let frame: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    h.send_video(
        Instant::now(),
        sealdesk_rtc::VideoCodec::Vp9,
        90_000,
        &frame,
    )
    .unwrap();
    let (ve, _) = drive(&mut v, &mut h, |a, _| {
        a.iter().any(|e| matches!(e, SessionEvent::Video { .. }))
    });
    let got = ve.iter().find_map(|e| match e {
        SessionEvent::Video { codec, data, .. } => Some((*codec, data.clone())),
        _ => None,
    });
    assert_eq!(got, Some((sealdesk_rtc::VideoCodec::Vp9, frame)), "{ve:?}");
    // A keyframe request reaches the host.
    v.request_keyframe().unwrap();
    let (_, he) = drive(&mut v, &mut h, |_, b| {
        b.contains(&SessionEvent::KeyframeRequested)
    });
    assert!(he.contains(&SessionEvent::KeyframeRequested), "{he:?}");

    // A corrupted control message is reported and dropped; the channel keeps working.
    v.send_control_bytes(&[0x13, 0, 0]).unwrap();
    v.send_control(&ControlMessage::ReleaseAll).unwrap();
    let (_, he) = drive(&mut v, &mut h, |_, b| {
        b.contains(&SessionEvent::Control(ControlMessage::ReleaseAll))
    });
    assert!(
        he.iter().any(|e| matches!(e, SessionEvent::Malformed(_))),
        "{he:?}"
    );
    assert!(
        he.contains(&SessionEvent::Control(ControlMessage::ReleaseAll)),
        "{he:?}"
    );
}

#[test]
fn a_lost_path_comes_back_after_a_sealed_ice_restart() {
    let (mut v, mut h) = sessions();
    let (mut vs, mut hs, first) = connect_sealed_keep(&mut v, &mut h);
    let (ve, he) = drive(&mut v, &mut h, |a, b| ready(a) && ready(b));
    assert!(ready(&ve) && ready(&he), "viewer {ve:?} host {he:?}");
    // No restart before the session is up and verified.
    let (mut v2, _) = sessions();
    assert!(matches!(v2.restart_offer(), Err(SessionError::State(_))));

    // The network stops delivering: ICE on the viewer reports the path lost, once.
    let (ve, _) = drive_with(&mut v, &mut h, false, |a, _| {
        a.contains(&SessionEvent::Disconnected)
    });
    assert_eq!(
        ve.iter()
            .filter(|e| **e == SessionEvent::Disconnected)
            .count(),
        1,
        "{ve:?}"
    );
    assert!(v.is_path_lost());

    // The network is back, and the viewer restarts ICE through the sealed channel: new
    // ICE credentials, the same certificates (the sealed channel checks them again).
    let offer = v.restart_offer().unwrap();
    assert_ne!(ufrag(&offer), ufrag(&first));
    let sealed = vs.seal(SealedKind::Offer, offer.as_bytes()).unwrap();
    let body = hs.open(&sealed).unwrap().body;
    let answer = h.accept_offer(std::str::from_utf8(&body).unwrap()).unwrap();
    let sealed = hs.seal(SealedKind::Answer, answer.as_bytes()).unwrap();
    let body = vs.open(&sealed).unwrap().body;
    v.accept_answer(std::str::from_utf8(&body).unwrap())
        .unwrap();
    let (ve, _) = drive(&mut v, &mut h, |a, _| {
        a.contains(&SessionEvent::Reconnected)
    });
    assert!(ve.contains(&SessionEvent::Reconnected), "{ve:?}");
    assert!(!v.is_path_lost());

    // The same DTLS association carries data again, both ways.
    let key = ControlMessage::Key {
        keysym: 0x62,
        down: true,
    };
    v.send_control(&key).unwrap();
    let note = ControlMessage::Permissions { bits: 3 };
    h.send_control(&note).unwrap();
    let (ve, he) = drive(&mut v, &mut h, |a, b| {
        a.contains(&SessionEvent::Control(note.clone()))
            && b.contains(&SessionEvent::Control(key.clone()))
    });
    assert!(he.contains(&SessionEvent::Control(key)), "{he:?}");
    assert!(ve.contains(&SessionEvent::Control(note)), "{ve:?}");
    assert!(
        !ve.iter().any(|e| matches!(e, SessionEvent::Closed(_))),
        "{ve:?}"
    );
}

#[test]
fn a_server_that_swaps_the_fingerprint_gets_nothing_applied() {
    let (mut v, mut h) = sessions();
    // The server substituted its own certificate's fingerprint for the host's in the
    // handshake: the handshake itself fails then (tests in sealdesk-auth); here the swap is
    // in the SDP: the host's real answer does not match what the viewer authenticated.
    let evil = DtlsFingerprint([0xee; 32]);
    let (mut vs, mut hs) = handshake(v.local_fingerprint(), evil);
    v.set_peer_fingerprint(*vs.fp_peer());
    h.set_peer_fingerprint(*hs.fp_peer());
    let offer = vs
        .seal(SealedKind::Offer, v.create_offer().unwrap().as_bytes())
        .unwrap();
    let opened = hs.open(&offer).unwrap();
    let answer = h
        .accept_offer(std::str::from_utf8(&opened.body).unwrap())
        .unwrap();
    // The host's own sealed channel refuses to send an SDP with a fingerprint other than the
    // authenticated one …
    assert_eq!(
        hs.seal(SealedKind::Answer, answer.as_bytes()),
        Err(SealError::Sdp(SdpError::FingerprintMismatch))
    );
    // … and the viewer never gets an answer, so it never connects.
    let (ve, he) = drive(&mut v, &mut h, |a, b| ready(a) || ready(b));
    assert!(!ready(&ve) && !ready(&he));
}

#[test]
fn dtls_with_another_certificate_ends_the_session_before_any_data() {
    // Defence in depth: even if an SDP check were bypassed, the certificate DTLS presents
    // must be the authenticated one. The viewer expects a fingerprint the host does not have.
    let (mut v, mut h) = sessions();
    let offer = {
        v.set_peer_fingerprint(DtlsFingerprint([0x77; 32]));
        v.create_offer().unwrap()
    };
    h.set_peer_fingerprint(v.local_fingerprint());
    let answer = h.accept_offer(&offer).unwrap();
    v.accept_answer(&answer).unwrap();
    let (ve, _) = drive(&mut v, &mut h, |a, _| {
        a.iter().any(|e| matches!(e, SessionEvent::Closed(_)))
    });
    assert!(
        ve.iter().any(|e| matches!(
            e,
            SessionEvent::Closed(Some(SessionError::FingerprintMismatch { .. }))
        )),
        "{ve:?}"
    );
    assert!(!ready(&ve), "{ve:?}");
    assert!(matches!(
        v.send_control(&ControlMessage::ReleaseAll),
        Err(SessionError::State(_))
    ));
}

/// The next event `want` accepts, within 10 s.
async fn wait(
    rx: &mut tokio::sync::mpsc::Receiver<SessionEvent>,
    want: fn(&SessionEvent) -> bool,
) -> Result<SessionEvent, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = rx.recv().await {
            if want(&e) {
                return e;
            }
        }
        panic!("session ended");
    })
    .await
}

/// The same over real UDP sockets on loopback, each side driven by its own task.
#[tokio::test]
async fn over_real_udp_sockets_with_the_driver() {
    use tokio::net::UdpSocket;
    let vsock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let hsock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let now = Instant::now();
    let mut v = Session::new(now, vsock.local_addr().unwrap()).unwrap();
    let mut h = Session::new(now, hsock.local_addr().unwrap()).unwrap();
    connect_sealed(&mut v, &mut h);

    let (vh, mut vev, vtask) =
        sealdesk_rtc::driver::spawn(v, sealdesk_rtc::driver::Link::new(vsock));
    let (hh, mut hev, htask) =
        sealdesk_rtc::driver::spawn(h, sealdesk_rtc::driver::Link::new(hsock));
    wait(&mut vev, |e| matches!(e, SessionEvent::Ready { .. }))
        .await
        .unwrap();
    wait(&mut hev, |e| matches!(e, SessionEvent::Ready { .. }))
        .await
        .unwrap();

    let msg = ControlMessage::Clipboard {
        text: "hello from the viewer".into(),
    };
    vh.send_control(msg.clone()).await.unwrap();
    let got = wait(&mut hev, |e| matches!(e, SessionEvent::Control(_)))
        .await
        .unwrap();
    assert_eq!(got, SessionEvent::Control(msg));

    let frame = vec![7u8; 20_000];
    assert!(hh.try_send_video(sealdesk_rtc::VideoCodec::Vp9, 3000, frame.clone()));
    let got = wait(&mut vev, |e| matches!(e, SessionEvent::Video { .. }))
        .await
        .unwrap();
    assert!(matches!(got, SessionEvent::Video { data, .. } if data == frame));

    // Closing one side ends its task; the other notices its channel gone when it closes too.
    vh.close().await;
    wait(&mut vev, |e| matches!(e, SessionEvent::Closed(_)))
        .await
        .unwrap();
    vtask.await.unwrap();
    hh.close().await;
    htask.await.unwrap();
}
