//! The browser viewer's state machine against the real host side of the handshake, through
//! a signaling server simulated in memory (STYLE.md §9): simulated time, no sockets, no
//! browser. Headless Chromium runs the same machine for real in `crates/sealdesk/tests/browser.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::SeedableRng as _;
use sealdesk_auth::attended::host::{AttendedHost, ExpectA3, PendingConsent};
use sealdesk_auth::code::{Elapsed, OneTimeCode};
use sealdesk_auth::messages::{self, Message, TAG_A1, TAG_A3};
use sealdesk_auth::negotiate::Offer;
use sealdesk_auth::sdp::DtlsFingerprint;
use sealdesk_auth::sealed::{SealedKind, SealedSignaling};
use sealdesk_auth::session::ViewerKind;
use sealdesk_auth::trust::Permissions;
use sealdesk_auth::IdentityKey;
use sealdesk_proto::control::ControlMessage;
use sealdesk_proto::signaling::ServerMessage;
use sealdesk_proto::{Body, ClientMessage, Nonce, RoutingNumber, SessionId};
use sealdesk_web::api::{Config, ErrorKind, Input, Output, ServedBy};
use sealdesk_web::WebViewer;

const FP_V: DtlsFingerprint = DtlsFingerprint([0xab; 32]);
const FP_H: DtlsFingerprint = DtlsFingerprint([0xcd; 32]);
const ATTACKER: DtlsFingerprint = DtlsFingerprint([0xee; 32]);
const VIEWER_NUMBER: u64 = 111_111_111;

#[allow(
    clippy::disallowed_methods,
    reason = "the host side is native and takes an Instant; any one will do"
)]
fn t0() -> Instant {
    Instant::now()
}

fn sdp(fp: &DtlsFingerprint, setup: &str) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=fingerprint:sha-256 {fp}\r\na=setup:{setup}\r\n\
         m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=fingerprint:sha-256 {fp}\r\na=setup:{setup}\r\n",
        fp = fp.to_sdp()
    )
}

/// What the simulated server and host do to the viewer's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Honest,
    /// Puts the attacker's fingerprint in A1 on its way to the host.
    SwapViewerFingerprint,
    /// Puts the attacker's fingerprint in A2 on its way to the viewer.
    SwapHostFingerprint,
}

/// The host's side: the real auth state machines.
enum HostState {
    AwaitA1,
    AwaitA3(ExpectA3),
    /// The host's user has not answered yet.
    Consent(PendingConsent),
    Sealed(SealedSignaling),
    Done,
}

struct World {
    viewer: WebViewer,
    now: Elapsed,
    host: AttendedHost,
    host_state: HostState,
    host_key: IdentityKey,
    host_routing: RoutingNumber,
    server: Server,
    outputs: Vec<Output>,
    /// Envelope bodies the host received, in order.
    to_host: Vec<Vec<u8>>,
    session: Option<SessionId>,
    rng: rand::rngs::StdRng,
    /// What the host's user would answer.
    approve: bool,
    /// The host's user takes their time: [`World::answer_consent`] answers.
    hold_consent: bool,
    /// The viewer kind the host saw.
    seen_kind: Option<ViewerKind>,
}

fn config() -> Config {
    Config {
        identity_seed: B64.encode([1u8; 32]),
        random_seed: B64.encode([2u8; 32]),
        label: "browser test".into(),
        fingerprint: FP_V.to_sdp(),
        origin: "sealdesk.test".into(),
        served_by: ServedBy::Server,
        pins: vec![],
        timeout_secs: None,
    }
}

impl World {
    fn new(server: Server) -> (Self, String) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let host_routing = RoutingNumber::new(222_333_444).unwrap();
        let code = OneTimeCode::draw(host_routing, &mut rng);
        let typed = code.display().to_string();
        let host = AttendedHost::new(code, &Offer::default(), t0());
        let viewer = WebViewer::new(config(), Elapsed::default()).unwrap();
        let mut w = Self {
            viewer,
            now: Elapsed::default(),
            host,
            host_state: HostState::AwaitA1,
            host_key: IdentityKey::generate(&mut rng),
            host_routing,
            server,
            outputs: Vec::new(),
            to_host: Vec::new(),
            session: None,
            rng,
            approve: true,
            hold_consent: false,
            seen_kind: None,
        };
        w.input(Input::ServerOpen);
        let challenge = ServerMessage::Challenge {
            versions: vec![1],
            nonce: Nonce([3; 32]),
        };
        w.input(Input::Server {
            text: challenge.encode(),
        });
        (w, typed)
    }

    fn input(&mut self, input: Input) {
        self.now = Elapsed(self.now.0 + Duration::from_millis(5));
        self.viewer.handle_input(self.now, input);
        self.pump();
    }

    /// Moves everything the viewer said through the server (and the host) until quiet.
    fn pump(&mut self) {
        while let Some(out) = self.viewer.poll_output() {
            if let Output::Send { text } = &out {
                self.server_receives(text);
            }
            self.outputs.push(out);
        }
    }

    fn send_viewer(&mut self, msg: ServerMessage) {
        self.viewer
            .handle_input(self.now, Input::Server { text: msg.encode() });
    }

    fn envelope_to_viewer(&mut self, body: Vec<u8>) {
        let msg = ServerMessage::Envelope {
            from: self.host_routing,
            session: self.session.unwrap(),
            body: Body::new(body).unwrap(),
        };
        self.send_viewer(msg);
    }

    fn server_receives(&mut self, text: &str) {
        match ClientMessage::decode(text).unwrap() {
            ClientMessage::Register { .. } => self.send_viewer(ServerMessage::Registered {
                routing_number: RoutingNumber::new(VIEWER_NUMBER).unwrap(),
            }),
            ClientMessage::Relay {} => self.send_viewer(ServerMessage::Relay {
                urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
                username: "1:abc".into(),
                password: "secret".into(),
                expires_at: 2,
            }),
            ClientMessage::Send {
                to, session, body, ..
            } => {
                assert_eq!(to, self.host_routing);
                self.session = Some(session);
                let mut bytes = body.into_bytes();
                if self.server == Server::SwapViewerFingerprint && bytes.first() == Some(&TAG_A1) {
                    if let Ok(Message::A1(mut a1)) = messages::decode(&bytes) {
                        a1.fp_v = ATTACKER;
                        bytes = a1.encode();
                    }
                }
                self.to_host.push(bytes.clone());
                self.host_receives(&bytes);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn host_receives(&mut self, bytes: &[u8]) {
        let state = std::mem::replace(&mut self.host_state, HostState::Done);
        self.host_state = match (state, bytes.first().copied()) {
            (HostState::AwaitA1, Some(TAG_A1)) => {
                match self.host.handle_a1(
                    t0(),
                    bytes,
                    &self.host_key,
                    "office pc",
                    FP_H,
                    &mut self.rng,
                ) {
                    Ok((st, a2)) => {
                        let a2 = if self.server == Server::SwapHostFingerprint {
                            match messages::decode(&a2) {
                                Ok(Message::A2(mut m)) => {
                                    m.fp_h = ATTACKER;
                                    m.encode()
                                }
                                _ => a2,
                            }
                        } else {
                            a2
                        };
                        self.envelope_to_viewer(a2);
                        HostState::AwaitA3(st)
                    }
                    Err(e) => {
                        self.envelope_to_viewer(e.abort_message());
                        HostState::AwaitA1
                    }
                }
            }
            (HostState::AwaitA3(st), Some(TAG_A3)) => match self.host.handle_a3(t0(), st, bytes) {
                Ok(pending) if self.hold_consent => {
                    self.seen_kind = Some(pending.peer().kind);
                    HostState::Consent(pending)
                }
                Ok(pending) => {
                    self.seen_kind = Some(pending.peer().kind);
                    if self.approve {
                        let (_, sealed, accept) = pending.approve(Permissions::DEFAULT_PAIRED);
                        self.envelope_to_viewer(accept);
                        HostState::Sealed(sealed)
                    } else {
                        let bye = pending.decline();
                        self.envelope_to_viewer(bye);
                        HostState::Done
                    }
                }
                Err(_) => HostState::AwaitA1,
            },
            (HostState::AwaitA3(st), Some(messages::TAG_ABORT)) => {
                self.host.abandon(st);
                HostState::AwaitA1
            }
            (HostState::Sealed(mut sealed), Some(messages::TAG_SEALED)) => {
                let m = sealed.open(bytes).unwrap();
                if m.kind == SealedKind::Offer {
                    let answer = sealed
                        .seal(SealedKind::Answer, sdp(&FP_H, "active").as_bytes())
                        .unwrap();
                    self.envelope_to_viewer(answer);
                }
                HostState::Sealed(sealed)
            }
            (s, _) => s,
        };
    }

    /// The host's user says yes now.
    fn answer_consent(&mut self) {
        let HostState::Consent(pending) = std::mem::replace(&mut self.host_state, HostState::Done)
        else {
            panic!("no consent pending")
        };
        let (_, sealed, accept) = pending.approve(Permissions::DEFAULT_PAIRED);
        self.host_state = HostState::Sealed(sealed);
        self.envelope_to_viewer(accept);
        self.pump();
    }

    fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    fn controls(outputs: &[Output]) -> Vec<ControlMessage> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Control { data } => {
                    Some(ControlMessage::decode(&B64.decode(data).unwrap()).unwrap())
                }
                _ => None,
            })
            .collect()
    }
}

fn error_of(outputs: &[Output]) -> Option<(ErrorKind, String, Option<u8>)> {
    outputs.iter().find_map(|o| match o {
        Output::Error {
            kind,
            text,
            attempts_left,
        } => Some((*kind, text.clone(), *attempts_left)),
        _ => None,
    })
}

#[test]
fn a_code_leads_to_a_verified_session_and_input_only_after_it() {
    let (mut w, code) = World::new(Server::Honest);
    let out = w.take();
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Registered { routing } if routing == "111 111 111")));

    w.input(Input::Dial {
        code,
        relay_only: false,
    });
    let out = w.take();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::HostProved { label, .. } if label == "office pc")),
        "{out:?}"
    );
    // The host saw a browser served by the server, inside the authenticated identity.
    assert_eq!(w.seen_kind, Some(ViewerKind::ServerServedBrowser));
    let Some(Output::CreateOffer {
        ice_servers,
        relay_only,
    }) = out.iter().find(|o| matches!(o, Output::CreateOffer { .. }))
    else {
        panic!("no offer asked for: {out:?}")
    };
    assert_eq!(ice_servers.len(), 1);
    assert_eq!(ice_servers[0].username, "1:abc");
    assert!(!relay_only);
    // It is asked for as the handshake starts, before the host has said who it is.
    let asked = out
        .iter()
        .position(|o| matches!(o, Output::CreateOffer { .. }))
        .unwrap();
    let proved = out
        .iter()
        .position(|o| matches!(o, Output::HostProved { .. }))
        .unwrap();
    assert!(asked < proved, "{out:?}");

    // Input before the certificates are checked goes nowhere.
    w.input(Input::Key {
        code: "KeyA".into(),
        key: None,
        down: true,
    });
    assert!(World::controls(&w.take()).is_empty());

    w.input(Input::Offer {
        sdp: sdp(&FP_V, "actpass"),
    });
    let out = w.take();
    let Some(Output::Answer { sdp: answer }) =
        out.iter().find(|o| matches!(o, Output::Answer { .. }))
    else {
        panic!("no answer: {out:?}")
    };
    assert!(answer.contains(&FP_H.to_sdp()));

    w.input(Input::Dtls {
        local: FP_V.to_sdp(),
        remote: FP_H.to_sdp(),
        algorithm: "sha-256".into(),
    });
    let out = w.take();
    assert!(
        out.iter().any(|o| matches!(o, Output::Verified { .. })),
        "{out:?}"
    );
    assert_eq!(
        World::controls(&out),
        vec![ControlMessage::Hello {
            version: 1,
            capabilities: 7
        }]
    );

    w.input(Input::Key {
        code: "ShiftLeft".into(),
        key: None,
        down: true,
    });
    w.input(Input::Key {
        code: "KeyA".into(),
        key: None,
        down: true,
    });
    w.input(Input::Pointer { x: 10.4, y: 21.6 });
    w.input(Input::Pointer { x: 10.9, y: 21.0 }); // the same pixel: not sent again
    w.input(Input::Button {
        button: 2,
        down: true,
    });
    w.input(Input::Wheel { dx: 0.0, dy: 100.0 });
    w.input(Input::ReleaseAll);
    let sent = World::controls(&w.take());
    assert_eq!(
        sent,
        vec![
            ControlMessage::Key {
                keysym: 0xffe1,
                down: true
            },
            ControlMessage::Key {
                keysym: 0x61,
                down: true
            },
            ControlMessage::PointerMove {
                monitor: 0,
                x: 10,
                y: 21
            },
            ControlMessage::PointerButton {
                button: 3,
                down: true
            },
            ControlMessage::Wheel { dx: 0, dy: 120 },
            ControlMessage::Key {
                keysym: 0x61,
                down: false
            },
            ControlMessage::Key {
                keysym: 0xffe1,
                down: false
            },
            ControlMessage::PointerButton {
                button: 3,
                down: false
            },
            ControlMessage::ReleaseAll,
        ]
    );

    // The host's clipboard and pings come through; a ping is answered.
    for msg in [
        ControlMessage::Clipboard {
            text: "from the host".into(),
        },
        ControlMessage::Ping {
            id: 4,
            sent_micros: 77,
        },
    ] {
        w.input(Input::Control {
            data: B64.encode(msg.encode().unwrap()),
        });
    }
    let out = w.take();
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Clipboard { text } if text == "from the host")));
    assert_eq!(
        World::controls(&out),
        vec![ControlMessage::Pong {
            id: 4,
            sent_micros: 77
        }]
    );
    // Garbage on the channel is dropped.
    w.input(Input::Control {
        data: B64.encode([0xff, 1, 2]),
    });
    assert!(w.take().is_empty());

    w.input(Input::End);
    let out = w.take();
    assert!(out.iter().any(|o| matches!(o, Output::Ended { .. })));
    assert!(World::controls(&out).contains(&ControlMessage::ReleaseAll));
    // The sealed bye reached the host.
    let last = w.to_host.last().unwrap();
    assert_eq!(last.first(), Some(&messages::TAG_SEALED));
}

#[test]
fn an_offer_made_during_the_handshake_is_sent_only_once_the_host_accepts() {
    let (mut w, code) = World::new(Server::Honest);
    w.hold_consent = true;
    w.input(Input::Dial {
        code,
        relay_only: false,
    });
    w.take();
    // The page's offer is ready while the host's user still decides: nothing is sent.
    let sent = w.to_host.len();
    w.input(Input::Offer {
        sdp: sdp(&FP_V, "actpass"),
    });
    assert_eq!(w.to_host.len(), sent);
    // The user says yes: the sealed offer goes at once, and the answer comes back.
    w.answer_consent();
    let out = w.take();
    assert!(
        out.iter().any(|o| matches!(o, Output::Answer { .. })),
        "{out:?}"
    );
    assert_eq!(w.to_host.last().unwrap()[0], messages::TAG_SEALED);
}

#[test]
fn other_dtls_certificates_after_connecting_end_the_attempt() {
    let (mut w, code) = World::new(Server::Honest);
    w.input(Input::Dial {
        code,
        relay_only: false,
    });
    w.input(Input::Offer {
        sdp: sdp(&FP_V, "actpass"),
    });
    w.take();
    w.input(Input::Dtls {
        local: FP_V.to_sdp(),
        remote: ATTACKER.to_sdp(),
        algorithm: "sha-256".into(),
    });
    let out = w.take();
    let (kind, text, _) = error_of(&out).expect("an error");
    assert_eq!(kind, ErrorKind::Tampering);
    assert!(text.contains("someone tampered"), "{text}");
    assert!(!out.iter().any(|o| matches!(o, Output::Verified { .. })));
    // Nothing can be sent on the control channel now.
    w.input(Input::Key {
        code: "KeyA".into(),
        key: None,
        down: true,
    });
    assert!(World::controls(&w.take()).is_empty());
}

#[test]
fn a_fingerprint_swapped_by_the_server_fails_key_confirmation() {
    for server in [Server::SwapViewerFingerprint, Server::SwapHostFingerprint] {
        let (mut w, code) = World::new(server);
        w.input(Input::Dial {
            code,
            relay_only: false,
        });
        let out = w.take();
        let (kind, text, left) = error_of(&out).expect("an error");
        assert_eq!(kind, ErrorKind::WrongCode, "{server:?}");
        assert!(text.contains("someone tampered"), "{text}");
        assert_eq!(left, Some(2));
        assert!(!out.iter().any(|o| matches!(o, Output::HostProved { .. })));
        // The host got A1 and the viewer's abort, nothing sealed.
        assert!(
            w.to_host
                .iter()
                .all(|m| m.first() != Some(&messages::TAG_SEALED)),
            "{server:?}"
        );
    }
}

#[test]
fn a_wrong_code_three_times_burns_it() {
    let (mut w, code) = World::new(Server::Honest);
    // The same number, other secret digits.
    let wrong = format!("{}0000 0000", &code[..code.len() - 9]);
    assert_ne!(wrong, code);
    for left in [2u8, 1, 0] {
        w.input(Input::Dial {
            code: wrong.clone(),
            relay_only: false,
        });
        let (kind, text, attempts_left) = error_of(&w.take()).expect("an error");
        assert_eq!(attempts_left, Some(left));
        if left == 0 {
            assert_eq!(kind, ErrorKind::CodeBurned);
            assert!(text.contains("burned"), "{text}");
        } else {
            assert_eq!(kind, ErrorKind::WrongCode);
        }
    }
    // A fourth try is refused here, before anything is sent to the host.
    let sent_before = w.to_host.len();
    w.input(Input::Dial {
        code: code.clone(),
        relay_only: false,
    });
    let (kind, _, _) = error_of(&w.take()).expect("an error");
    assert_eq!(kind, ErrorKind::CodeBurned);
    assert_eq!(w.to_host.len(), sent_before);
}

#[test]
fn a_declined_request_and_a_typo_say_so() {
    let (mut w, code) = World::new(Server::Honest);
    w.input(Input::Dial {
        code: "12 34".into(),
        relay_only: false,
    });
    assert_eq!(error_of(&w.take()).unwrap().0, ErrorKind::BadCode);
    w.approve = false;
    w.input(Input::Dial {
        code,
        relay_only: false,
    });
    let (kind, text, _) = error_of(&w.take()).expect("an error");
    assert_eq!(kind, ErrorKind::Refused);
    assert!(text.contains("declined"), "{text}");
}

#[test]
fn a_server_that_breaks_the_protocol_is_left_and_the_attempt_fails() {
    let (mut w, code) = World::new(Server::Honest);
    w.host_state = HostState::Done;
    w.input(Input::Dial {
        code,
        relay_only: false,
    });
    w.take();
    w.input(Input::Server {
        text: r#"{"type":"challenge","versions":[1],"nonce":"AAAA"}"#.into(),
    });
    let out = w.take();
    assert!(
        out.iter().any(|o| matches!(o, Output::Reconnect { .. })),
        "{out:?}"
    );
    assert_eq!(error_of(&out).map(|e| e.0), Some(ErrorKind::Signaling));
    // Nothing more from the dead connection is taken.
    w.input(Input::Server {
        text: ServerMessage::Registered {
            routing_number: RoutingNumber::new(VIEWER_NUMBER).unwrap(),
        }
        .encode(),
    });
    assert!(w.take().is_empty());
}

#[test]
fn the_host_not_answering_times_out() {
    let (mut w, code) = World::new(Server::Honest);
    w.host_state = HostState::Done; // the host ignores everything
    w.input(Input::Dial {
        code,
        relay_only: false,
    });
    w.take();
    for _ in 0..130 {
        w.now = Elapsed(w.now.0 + Duration::from_millis(250));
        w.viewer.handle_input(
            w.now,
            Input::Tick {
                fps: 0.0,
                kbps: 0.0,
                relayed: None,
            },
        );
        w.pump();
    }
    let (kind, text, _) = error_of(&w.take()).expect("an error");
    assert_eq!(kind, ErrorKind::Timeout);
    assert!(text.contains("no answer"), "{text}");
}
