//! A malicious signaling server for the tests (DESIGN.md §10.3): a real `sealdesk server`
//! process whose operator also controls a WebSocket proxy in front of it, rewriting what it
//! forwards to devices. Used against the native viewer (`tamper.rs`) and the browser viewer
//! (`browser.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt as _, StreamExt as _};
use sealdesk_auth::messages::{self, Message, TAG_A1, TAG_SEALED};
use sealdesk_auth::sdp::DtlsFingerprint;
use sealdesk_proto::signaling::ServerMessage;
use sealdesk_proto::{Body, SessionId};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{sealdesk, Proc};

/// What the proxy does to envelopes on their way to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tamper {
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
pub(crate) struct State {
    pub(crate) mode: Option<Tamper>,
    pub(crate) recorded: Option<Vec<u8>>,
    pub(crate) tampered: usize,
}

pub(crate) const ATTACKER: DtlsFingerprint = DtlsFingerprint([0xee; 32]);

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
pub(crate) struct EvilServer {
    pub(crate) url: String,
    pub(crate) state: Arc<Mutex<State>>,
    _server: Proc,
    _data: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

pub(crate) fn evil_server() -> EvilServer {
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
    pub(crate) fn set(&self, mode: Tamper) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    pub(crate) fn tampered(&self) -> usize {
        self.state.lock().unwrap().tampered
    }
}
