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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{sealdesk, Proc};
use futures_util::{SinkExt as _, StreamExt as _};
use sealdesk_auth::messages::{self, Message, TAG_A1, TAG_SEALED};
use sealdesk_auth::sdp::DtlsFingerprint;
use sealdesk_media::xvfb::Xvfb;
use sealdesk_proto::signaling::ServerMessage;
use sealdesk_proto::{Body, SessionId};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// What the proxy does to envelopes on their way to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tamper {
    /// Forward faithfully; remember the first sealed message each host receives (the offer).
    Record,
    /// Put the attacker's fingerprint in place of the viewer's in A1.
    SwapViewerFingerprint,
    /// Put the attacker's fingerprint in place of the host's in A2.
    SwapHostFingerprint,
    /// Replace the first sealed message a host receives with the one recorded earlier.
    ReplayOffer,
}

#[derive(Default)]
struct State {
    mode: Option<Tamper>,
    recorded: Option<Vec<u8>>,
    tampered: usize,
}

const ATTACKER: DtlsFingerprint = DtlsFingerprint([0xee; 32]);

/// Rewrites one server → device frame. `offers` follows, per session, whether this
/// connection got an A1 (it is the host there) and then its first sealed message (the offer).
fn rewrite(
    text: &str,
    state: &Mutex<State>,
    offers: &mut HashMap<SessionId, bool>,
) -> Option<String> {
    let ServerMessage::Envelope {
        from,
        session,
        body,
    } = ServerMessage::decode(text).ok()?
    else {
        return None;
    };
    let bytes = body.as_bytes();
    let mut st = state.lock().unwrap();
    let mode = st.mode.clone()?;
    let new = match (mode, bytes.first().copied()) {
        (Tamper::SwapViewerFingerprint, Some(TAG_A1)) => match messages::decode(bytes) {
            Ok(Message::A1(mut a1)) => {
                a1.fp_v = ATTACKER;
                a1.encode()
            }
            _ => return None,
        },
        (Tamper::SwapHostFingerprint, Some(messages::TAG_A2)) => match messages::decode(bytes) {
            Ok(Message::A2(mut a2)) => {
                a2.fp_h = ATTACKER;
                a2.encode()
            }
            _ => return None,
        },
        (_, Some(TAG_A1)) => {
            offers.insert(session, false);
            return None;
        }
        (Tamper::Record, Some(TAG_SEALED)) if offers.get(&session) == Some(&false) => {
            offers.insert(session, true);
            st.recorded.get_or_insert_with(|| bytes.to_vec());
            return None;
        }
        (Tamper::ReplayOffer, Some(TAG_SEALED)) if offers.get(&session) == Some(&false) => {
            offers.insert(session, true);
            st.recorded.clone()?
        }
        _ => return None,
    };
    st.tampered += 1;
    Some(
        ServerMessage::Envelope {
            from,
            session,
            body: Body::new(new).ok()?,
        }
        .encode(),
    )
}

/// A `sealdesk server` process behind the operator's proxy.
struct EvilServer {
    url: String,
    state: Arc<Mutex<State>>,
    _server: Proc,
    _data: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

fn evil_server() -> EvilServer {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let proxy = listener.local_addr().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = sealdesk(data.path());
    // Devices address the proxy, so registration signatures cover its name.
    cmd.args(["server", "--listen", "127.0.0.1:0", "--public-origin"])
        .arg(proxy.to_string());
    let mut server = Proc::spawn(cmd);
    let upstream = server.wait_line("listening on ");
    let state = Arc::new(Mutex::new(State::default()));
    let st = state.clone();
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (upstream, st) = (upstream.clone(), st.clone());
            tokio::spawn(async move {
                let Ok(down) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let Ok((up, _)) = tokio_tungstenite::connect_async(upstream.as_str()).await else {
                    return;
                };
                let (mut down_tx, mut down_rx) = down.split();
                let (mut up_tx, mut up_rx) = up.split();
                let to_server = async {
                    while let Some(Ok(m)) = down_rx.next().await {
                        if up_tx.send(m).await.is_err() {
                            break;
                        }
                    }
                };
                let to_device = async {
                    let mut offers = HashMap::new();
                    while let Some(Ok(m)) = up_rx.next().await {
                        let m = match &m {
                            WsMessage::Text(t) => match rewrite(t.as_str(), &st, &mut offers) {
                                Some(new) => WsMessage::Text(new.into()),
                                None => m,
                            },
                            _ => m,
                        };
                        if down_tx.send(m).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::select! {
                    () = to_server => {}
                    () = to_device => {}
                }
            });
        }
    });
    EvilServer {
        url: format!("ws://{proxy}/ws"),
        state,
        _server: server,
        _data: data,
        _runtime: runtime,
    }
}

impl EvilServer {
    fn set(&self, mode: Tamper) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    fn tampered(&self) -> usize {
        self.state.lock().unwrap().tampered
    }
}

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
