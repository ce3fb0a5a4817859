//! The signaling server over real sockets with a real SQLite file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes,
    reason = "tests fail by panicking; children are reaped in Drop"
)]

mod common;

use std::time::Duration;

use common::*;
use sealdesk_auth::IdentityKey;
use sealdesk_client::{ClientConfig, SignalClient, SignalError, SignalEvent};
use sealdesk_proto::signaling::registration_signing_bytes;
use sealdesk_proto::{
    Body, ClientMessage, ErrorCode, Nonce, RoutingNumber, ServerMessage, SessionId,
};
use tokio_tungstenite::tungstenite::Message;

fn body(b: &[u8]) -> Body {
    Body::new(b.to_vec()).unwrap()
}

#[tokio::test]
async fn two_devices_see_each_other_and_exchange_envelopes_a_third_cannot_read() {
    let server = TestServer::start(limits()).await;
    let (mut a, _) = server.client().await;
    let (mut b, _) = server.client().await;
    let (mut c, _) = server.client().await;
    let (na, nb, nc) = (a.routing_number(), b.routing_number(), c.routing_number());
    assert!(na != nb && nb != nc && na != nc);
    for c in [&mut a, &mut b, &mut c] {
        assert!(matches!(
            c.next_event().await,
            Some(SignalEvent::Registered(_))
        ));
    }

    a.watch(vec![nb]).await.unwrap();
    b.watch(vec![na]).await.unwrap();
    let online = |e: &SignalEvent| match e {
        SignalEvent::Presence { online, .. } => Some(online.clone()),
        _ => None,
    };
    assert_eq!(wait_for(&mut a, online).await, vec![nb]);
    assert_eq!(wait_for(&mut b, online).await, vec![na]);

    let s = SessionId([9; 16]);
    a.send(nb, s, body(b"a to b")).await.unwrap();
    let got = wait_for(&mut b, |e| match e {
        SignalEvent::Envelope {
            from,
            session,
            body,
        } => Some((*from, *session, body.clone())),
        _ => None,
    })
    .await;
    assert_eq!(got, (na, s, body(b"a to b")));
    b.send(na, s, body(b"b to a")).await.unwrap();
    let got = wait_for(&mut a, |e| match e {
        SignalEvent::Envelope { from, body, .. } => Some((*from, body.clone())),
        _ => None,
    })
    .await;
    assert_eq!(got, (nb, body(b"b to a")));

    // Several sessions at once between the same pair stay apart.
    a.send(nb, SessionId([1; 16]), body(b"s1")).await.unwrap();
    a.send(nb, SessionId([2; 16]), body(b"s2")).await.unwrap();
    for want in [SessionId([1; 16]), SessionId([2; 16])] {
        let s = wait_for(&mut b, |e| match e {
            SignalEvent::Envelope { session, .. } => Some(*session),
            _ => None,
        })
        .await;
        assert_eq!(s, want);
    }

    // The third device received nothing; what it sends is labelled with its own number.
    assert_quiet(&mut c, Duration::from_millis(300)).await;
    c.send(nb, s, body(b"from c")).await.unwrap();
    let from = wait_for(&mut b, |e| match e {
        SignalEvent::Envelope { from, .. } => Some(*from),
        _ => None,
    })
    .await;
    assert_eq!(from, nc);
    assert_quiet(&mut a, Duration::from_millis(200)).await;

    // Presence follows disconnection.
    drop(b);
    let offline = wait_for(&mut a, |e| match e {
        SignalEvent::Presence { offline, .. } => Some(offline.clone()),
        _ => None,
    })
    .await;
    assert_eq!(offline, vec![nb]);
    assert_eq!(server.handle.metrics().envelopes_routed(), 5);
}

#[tokio::test]
async fn the_same_key_gets_the_same_number_on_every_connection() {
    let server = TestServer::start(limits()).await;
    let key = IdentityKey::generate(&mut rand::rngs::OsRng);
    let (ws1, n1) = sealdesk_client::signal::connect_raw(&server.config(), &key)
        .await
        .unwrap();
    drop(ws1);
    let (_ws2, n2) = sealdesk_client::signal::connect_raw(&server.config(), &key)
        .await
        .unwrap();
    assert_eq!(n1, n2);
}

/// Reads the challenge and returns its nonce.
async fn challenge(ws: &mut Raw) -> Nonce {
    match ServerMessage::decode(&next_text(ws).await).unwrap() {
        ServerMessage::Challenge { nonce, versions } => {
            assert_eq!(versions, vec![1]);
            nonce
        }
        other => panic!("{other:?}"),
    }
}

fn register(
    origin: &str,
    key: &IdentityKey,
    claimed: &IdentityKey,
    nonce: &Nonce,
    version: u16,
) -> String {
    let pk = claimed.public();
    ClientMessage::Register {
        version,
        device_key: pk,
        signature: key.sign(&registration_signing_bytes(origin, nonce, &pk)),
    }
    .encode()
}

#[tokio::test]
async fn a_key_not_held_or_a_replayed_signature_is_refused() {
    let server = TestServer::start(limits()).await;
    let victim = IdentityKey::generate(&mut rand::rngs::OsRng);
    let attacker = IdentityKey::generate(&mut rand::rngs::OsRng);

    // Claiming the victim's key with the attacker's signature.
    let mut ws = server.raw().await;
    let nonce = challenge(&mut ws).await;
    send_text(
        &mut ws,
        register(&server.origin(), &attacker, &victim, &nonce, 1),
    )
    .await;
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 4002, "{reason}");
    assert!(reason.contains("signature"), "{reason}");

    // The victim registers; the attacker records the message and replays it.
    let mut ws = server.raw().await;
    let nonce = challenge(&mut ws).await;
    let recorded = register(&server.origin(), &victim, &victim, &nonce, 1);
    send_text(&mut ws, recorded.clone()).await;
    assert!(next_text(&mut ws).await.contains("registered"));
    let mut replay = server.raw().await;
    let _fresh_nonce = challenge(&mut replay).await;
    send_text(&mut replay, recorded).await;
    assert_eq!(close_of(&mut replay).await.0, 4002);
    assert_eq!(server.handle.metrics().rejections("auth_failed"), 2);
    assert_eq!(server.handle.metrics().registrations(), 1);
}

/// Registers a raw connection and returns it with its number.
async fn raw_registered(server: &TestServer) -> (Raw, RoutingNumber) {
    let key = IdentityKey::generate(&mut rand::rngs::OsRng);
    let mut ws = server.raw().await;
    let nonce = challenge(&mut ws).await;
    send_text(&mut ws, register(&server.origin(), &key, &key, &nonce, 1)).await;
    match ServerMessage::decode(&next_text(&mut ws).await).unwrap() {
        ServerMessage::Registered { routing_number } => (ws, routing_number),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_input_gets_its_specific_error_and_others_are_still_served() {
    let server = TestServer::start(limits()).await;
    let (mut a, _) = server.client().await;
    let (mut b, _) = server.client().await;

    // Malformed JSON.
    let (mut ws, _) = raw_registered(&server).await;
    send_text(&mut ws, "{\"type\":").await;
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 4000);
    assert!(reason.starts_with("malformed message"), "{reason}");

    // A well-formed JSON value that is not a message.
    let (mut ws, _) = raw_registered(&server).await;
    send_text(
        &mut ws,
        r#"{"type":"send","id":1,"to":5,"session":"00","body":""}"#,
    )
    .await;
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 4000);
    assert!(reason.contains("routing number 5"), "{reason}");

    // Binary frame.
    let (mut ws, _) = raw_registered(&server).await;
    futures_util::SinkExt::send(&mut ws, Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 1003);
    assert!(reason.contains("JSON text"), "{reason}");

    // Oversized message.
    let (mut ws, _) = raw_registered(&server).await;
    send_text(&mut ws, "x".repeat(70 * 1024)).await;
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 1009);
    assert!(reason.contains("65536"), "{reason}");

    // Unknown protocol version.
    let key = IdentityKey::generate(&mut rand::rngs::OsRng);
    let mut ws = server.raw().await;
    let nonce = challenge(&mut ws).await;
    send_text(&mut ws, register(&server.origin(), &key, &key, &nonce, 2)).await;
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 4001);
    assert!(reason.contains("version 2"), "{reason}");

    // Out of order: sending before registering.
    let mut ws = server.raw().await;
    challenge(&mut ws).await;
    send_text(&mut ws, r#"{"type":"watch","numbers":[]}"#).await;
    assert_eq!(close_of(&mut ws).await.0, 4003);

    // Envelope to an offline number (registered, disconnected) and to an unknown one:
    // non-fatal errors naming the number; the connection stays open.
    let (ws_gone, gone) = raw_registered(&server).await;
    drop(ws_gone);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let id = a.send(gone, SessionId([0; 16]), body(b"x")).await.unwrap();
    let (eid, code, msg) = wait_for(&mut a, |e| match e {
        SignalEvent::Error { id, code, message } => Some((*id, *code, message.clone())),
        _ => None,
    })
    .await;
    assert_eq!((eid, code), (Some(id), ErrorCode::PeerOffline));
    assert!(msg.contains(&gone.to_string()), "{msg}");
    let unknown = (100_000_000..)
        .map(|n| RoutingNumber::new(n).unwrap())
        .find(|n| *n != gone && *n != a.routing_number() && *n != b.routing_number())
        .unwrap();
    let id = a
        .send(unknown, SessionId([0; 16]), body(b"x"))
        .await
        .unwrap();
    let (eid, code) = wait_for(&mut a, |e| match e {
        SignalEvent::Error { id, code, .. } => Some((*id, *code)),
        _ => None,
    })
    .await;
    assert_eq!((eid, code), (Some(id), ErrorCode::UnknownNumber));

    // Everyone else is still served.
    a.send(b.routing_number(), SessionId([3; 16]), body(b"still here"))
        .await
        .unwrap();
    let got = wait_for(&mut b, |e| match e {
        SignalEvent::Envelope { body, .. } => Some(body.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, body(b"still here"));
    let m = server.handle.metrics();
    for (reason, n) in [
        ("malformed", 2),
        ("binary_frame", 1),
        ("too_large", 1),
        ("unsupported_version", 1),
        ("out_of_order", 1),
        ("peer_offline", 1),
        ("unknown_number", 1),
    ] {
        assert_eq!(m.rejections(reason), n, "{reason}");
    }
}

#[tokio::test]
async fn unregistered_connections_are_closed_after_the_timeout() {
    let server = TestServer::start(sealdesk_server::Limits {
        registration_timeout_secs: 1,
        ..limits()
    })
    .await;
    let mut ws = server.raw().await;
    challenge(&mut ws).await;
    let started = std::time::Instant::now();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 4005, "{reason}");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_reader_that_never_reads_is_disconnected_when_its_queue_fills() {
    let server = TestServer::start(sealdesk_server::Limits {
        outbound_queue_bytes: 128 * 1024,
        envelopes_per_sec: 100_000,
        envelope_burst: 100_000,
        ..limits()
    })
    .await;
    let (mut sender, _) = server.client().await;
    let (_slow, slow_number) = raw_registered(&server).await;
    let big = vec![0x5a; 40 * 1024];
    // The kernel buffers a few MiB on loopback before the server's queue fills.
    let mut refused = None;
    for i in 0..5_000 {
        sender
            .send(
                slow_number,
                SessionId([1; 16]),
                Body::new(big.clone()).unwrap(),
            )
            .await
            .unwrap();
        if i % 16 == 0 {
            tokio::task::yield_now().await;
        }
        while let Ok(Some(e)) = tokio::time::timeout(Duration::ZERO, sender.next_event()).await {
            if let SignalEvent::Error { code, .. } = e {
                refused = Some(code);
            }
        }
        if refused.is_some() {
            break;
        }
    }
    let code = refused.expect("the slow reader was never disconnected");
    assert!(
        matches!(code, ErrorCode::PeerBusy | ErrorCode::PeerOffline),
        "{code:?}"
    );
    assert_eq!(server.handle.metrics().rejections("slow_consumer"), 1);
    // The sender itself was not affected.
    assert!(sender.is_connected());
}

#[tokio::test]
async fn a_newer_connection_of_the_same_device_replaces_the_older() {
    let server = TestServer::start(limits()).await;
    let key = std::sync::Arc::new(IdentityKey::generate(&mut rand::rngs::OsRng));
    let mut first = SignalClient::connect(server.config(), key.clone())
        .await
        .unwrap();
    let second = SignalClient::connect(server.config(), key).await.unwrap();
    assert_eq!(first.routing_number(), second.routing_number());
    let (reason, retry) = wait_for(&mut first, |e| match e {
        SignalEvent::Disconnected { reason, retry_in } => Some((reason.clone(), *retry_in)),
        _ => None,
    })
    .await;
    assert!(reason.contains("4006"), "{reason}");
    assert_eq!(retry, None, "a replaced client must not fight back");
    assert!(second.is_connected());
}

#[tokio::test]
async fn clients_reconnect_with_backoff_and_keep_their_number_and_watches() {
    let server = TestServer::start(limits()).await;
    let addr = server.addr;
    let mut cfg = server.config();
    cfg.backoff =
        sealdesk_client::Backoff::new(Duration::from_millis(50), Duration::from_millis(400));
    let key = std::sync::Arc::new(IdentityKey::generate(&mut rand::rngs::OsRng));
    let mut c = SignalClient::connect(cfg, key).await.unwrap();
    let number = c.routing_number();
    let (other, _) = server.client().await;
    let other_number = other.routing_number();
    drop(other);
    c.watch(vec![other_number]).await.unwrap();
    wait_for(&mut c, |e| {
        matches!(e, SignalEvent::Presence { .. }).then_some(())
    })
    .await;

    let dir = server.stop().await;
    let retry = wait_for(&mut c, |e| match e {
        SignalEvent::Disconnected { retry_in, .. } => Some(*retry_in),
        _ => None,
    })
    .await;
    assert!(retry.is_some());
    assert!(matches!(
        c.send(other_number, SessionId([0; 16]), body(b"x")).await,
        Err(SignalError::NotConnected)
    ));
    // Same port, same database: the client comes back with the same number and
    // its watch set is re-sent.
    let server = TestServer::start_in(dir, addr, limits()).await;
    let again = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(SignalEvent::Registered(n)) = c.next_event().await {
                return n;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(again, number);
    let offline = wait_for(&mut c, |e| match e {
        SignalEvent::Presence { offline, .. } => Some(offline.clone()),
        _ => None,
    })
    .await;
    assert_eq!(offline, vec![other_number]);
    drop(server);
}

#[tokio::test]
async fn per_ip_rate_and_connection_limits_refuse_before_upgrading() {
    let server = TestServer::start(sealdesk_server::Limits {
        per_ip_connections_per_sec: 1,
        per_ip_burst: 3,
        ..limits()
    })
    .await;
    let mut held = vec![];
    for _ in 0..3 {
        held.push(server.raw().await);
    }
    let err = tokio_tungstenite::connect_async(server.url.as_str())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
    assert_eq!(server.handle.metrics().rejections("rate_limited_ip"), 1);

    let server = TestServer::start(sealdesk_server::Limits {
        max_connections: 2,
        ..limits()
    })
    .await;
    let _a = server.raw().await;
    let b = server.raw().await;
    let err = tokio_tungstenite::connect_async(server.url.as_str())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    // A slot frees when a connection ends.
    drop(b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _c = server.raw().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn healthz_and_prometheus_metrics() {
    let server = TestServer::start(limits()).await;
    let (_a, _) = server.client().await;
    let health = http_get(server.addr, "/healthz").await;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    let m = http_get(server.addr, "/metrics").await;
    for needle in [
        "text/plain; version=0.0.4",
        "sealdesk_connections 1",
        "sealdesk_devices_online 1",
        "sealdesk_registrations_total 1",
        "sealdesk_envelopes_routed_total 0",
        "sealdesk_rejections_total{reason=\"malformed\"} 0",
    ] {
        assert!(m.contains(needle), "missing {needle}:\n{m}");
    }
}

#[tokio::test]
async fn tls_when_given_a_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let config = sealdesk_server::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().join("data")),
        tls_cert: Some(cert_path.clone()),
        tls_key: Some(key_path),
        ..Default::default()
    };
    let server = sealdesk_server::Server::bind(config).await.unwrap();
    assert!(server.is_tls());
    let url = format!("wss://localhost:{}/ws", server.local_addr().port());
    tokio::spawn(server.run(std::future::pending()));

    let key = std::sync::Arc::new(IdentityKey::generate(&mut rand::rngs::OsRng));
    // Without trusting the self-signed certificate, the connection is refused.
    let err = SignalClient::connect(ClientConfig::new(url.clone()), key.clone())
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let mut cfg = ClientConfig::new(url);
    cfg.extra_ca_pem = Some(cert_path);
    let c = SignalClient::connect(cfg, key).await.unwrap();
    assert!(c.is_connected());
}

#[test]
fn the_shipped_example_config_is_valid_and_matches_the_defaults() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/server.example.toml"
    );
    let c = sealdesk_server::ServerConfig::from_file(std::path::Path::new(path)).unwrap();
    c.validate().unwrap();
    let d = sealdesk_server::ServerConfig::default();
    assert_eq!(c.listen, d.listen);
    assert_eq!(format!("{:?}", c.limits), format!("{:?}", d.limits));
}

/// A malicious server that relays our challenge gets a signature for its own name; this
/// server refuses it. Behind a proxy, `public_origin` names what devices sign.
#[tokio::test]
async fn registration_is_bound_to_the_server_the_device_addressed() {
    let server = TestServer::start(limits()).await;
    let key = IdentityKey::generate(&mut rand::rngs::OsRng);
    let mut ws = server.raw().await;
    let nonce = challenge(&mut ws).await;
    send_text(
        &mut ws,
        register("relay.evil.example:443", &key, &key, &nonce, 1),
    )
    .await;
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 4002, "{reason}");
    assert!(
        reason.contains(&format!("server {}", server.origin())),
        "{reason}"
    );
    // Positive control: the same device, signing for this server, is registered.
    let mut ws = server.raw().await;
    let nonce = challenge(&mut ws).await;
    send_text(&mut ws, register(&server.origin(), &key, &key, &nonce, 1)).await;
    assert!(next_text(&mut ws).await.contains("registered"));

    // With a public origin configured, that name is what counts, not the Host header.
    let dir = tempfile::tempdir().unwrap();
    let config = sealdesk_server::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().to_owned()),
        public_origin: Some("Sealdesk.Example.com".into()),
        limits: limits(),
        ..sealdesk_server::ServerConfig::default()
    };
    let proxied = TestServer::start_with(dir, config).await;
    let mut ws = proxied.raw().await;
    let nonce = challenge(&mut ws).await;
    send_text(&mut ws, register(&proxied.origin(), &key, &key, &nonce, 1)).await;
    assert_eq!(close_of(&mut ws).await.0, 4002);
    let mut ws = proxied.raw().await;
    let nonce = challenge(&mut ws).await;
    send_text(
        &mut ws,
        register("sealdesk.example.com", &key, &key, &nonce, 1),
    )
    .await;
    assert!(next_text(&mut ws).await.contains("registered"));
}
