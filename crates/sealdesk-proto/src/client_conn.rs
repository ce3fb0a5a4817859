//! The device's side of one signaling connection, as a state machine that does no I/O.
//!
//! The server is untrusted: every message from it is decoded into a `Result`, and a
//! message at the wrong time is a protocol violation that ends the connection.

use std::collections::VecDeque;

use crate::limits::SUPPORTED_VERSIONS;
use crate::signaling::{
    registration_signing_bytes, ClientMessage, DecodeError, ErrorCode, ServerMessage,
};
use crate::types::{Body, DeviceKey, RoutingNumber, SessionId, SignatureBytes};

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server acknowledged the registration (durably).
    Registered(RoutingNumber),
    /// An envelope arrived.
    Envelope {
        /// The authenticated sender.
        from: RoutingNumber,
        /// The session.
        session: SessionId,
        /// The opaque body.
        body: Body,
    },
    /// Presence of watched numbers changed (or the full picture after a watch).
    Presence {
        /// Now online.
        online: Vec<RoutingNumber>,
        /// Now offline.
        offline: Vec<RoutingNumber>,
    },
    /// A TURN relay credential the server issued (see [`ServerMessage::Relay`]).
    Relay {
        /// `turn:` URLs.
        urls: Vec<String>,
        /// TURN username.
        username: String,
        /// TURN password.
        password: String,
        /// Unix seconds after which it stops working.
        expires_at: u64,
    },
    /// A request failed.
    Error {
        /// The `send` it is about.
        id: Option<u64>,
        /// What failed.
        code: ErrorCode,
        /// Explanation from the server (untrusted text: display, don't interpret).
        message: String,
    },
}

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutput {
    /// Send this message to the server.
    Send(ClientMessage),
    /// Tell the application.
    Event(ClientEvent),
}

/// The server sent something we cannot accept; the connection must end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Bytes we could not parse.
    #[error("server sent an undecodable message: {0}")]
    Decode(#[from] DecodeError),
    /// A valid message at the wrong time.
    #[error("server violated the protocol: {0}")]
    Protocol(&'static str),
    /// The server speaks none of our versions.
    #[error("server speaks protocol versions {0:?}; this client speaks {SUPPORTED_VERSIONS:?}")]
    NoCommonVersion(Vec<u16>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitChallenge,
    AwaitRegistered,
    Registered(RoutingNumber),
}

/// One connection's protocol state on the device.
#[derive(Debug)]
pub struct ClientConn {
    device_key: DeviceKey,
    origin: String,
    state: State,
    out: VecDeque<ClientOutput>,
}

impl ClientConn {
    /// A new connection for the device with this identity key, to the server it addressed
    /// as `origin` (the `Host` of its WebSocket request; see
    /// [`crate::signaling::normalize_origin`]).
    pub fn new(device_key: DeviceKey, origin: String) -> Self {
        Self {
            device_key,
            origin,
            state: State::AwaitChallenge,
            out: VecDeque::new(),
        }
    }

    /// The next thing to do. Call after every `handle_*` until it returns `None`.
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.out.pop_front()
    }

    /// The routing number once registered.
    pub fn routing_number(&self) -> Option<RoutingNumber> {
        match self.state {
            State::Registered(n) => Some(n),
            _ => None,
        }
    }

    /// A text frame arrived from the server. `sign` signs the registration bytes with
    /// the device's identity key; it is called once, on the challenge.
    pub fn handle_text(
        &mut self,
        text: &str,
        sign: impl FnOnce(&[u8]) -> SignatureBytes,
    ) -> Result<(), ClientError> {
        let msg = ServerMessage::decode(text)?;
        match (self.state, msg) {
            (State::AwaitChallenge, ServerMessage::Challenge { versions, nonce }) => {
                let Some(version) = SUPPORTED_VERSIONS
                    .iter()
                    .copied()
                    .find(|v| versions.contains(v))
                else {
                    return Err(ClientError::NoCommonVersion(versions));
                };
                let signature = sign(&registration_signing_bytes(
                    &self.origin,
                    &nonce,
                    &self.device_key,
                ));
                self.out
                    .push_back(ClientOutput::Send(ClientMessage::Register {
                        version,
                        device_key: self.device_key,
                        signature,
                    }));
                self.state = State::AwaitRegistered;
            }
            (State::AwaitRegistered, ServerMessage::Registered { routing_number }) => {
                self.state = State::Registered(routing_number);
                self.out
                    .push_back(ClientOutput::Event(ClientEvent::Registered(routing_number)));
            }
            (
                State::Registered(_),
                ServerMessage::Envelope {
                    from,
                    session,
                    body,
                },
            ) => {
                self.out
                    .push_back(ClientOutput::Event(ClientEvent::Envelope {
                        from,
                        session,
                        body,
                    }));
            }
            (State::Registered(_), ServerMessage::Presence { online, offline }) => {
                self.out
                    .push_back(ClientOutput::Event(ClientEvent::Presence {
                        online,
                        offline,
                    }));
            }
            (
                State::Registered(_),
                ServerMessage::Relay {
                    urls,
                    username,
                    password,
                    expires_at,
                },
            ) => {
                self.out.push_back(ClientOutput::Event(ClientEvent::Relay {
                    urls,
                    username,
                    password,
                    expires_at,
                }));
            }
            (State::Registered(_), ServerMessage::Error { id, code, message }) => {
                self.out.push_back(ClientOutput::Event(ClientEvent::Error {
                    id,
                    code,
                    message,
                }));
            }
            (State::AwaitChallenge, _) => {
                return Err(ClientError::Protocol("expected a challenge first"))
            }
            (State::AwaitRegistered, _) => {
                return Err(ClientError::Protocol(
                    "expected the registration acknowledgement",
                ))
            }
            (State::Registered(_), _) => {
                return Err(ClientError::Protocol("challenge or registration repeated"))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server_conn::{ConnLimits, ServerConn, ServerOutput};
    use crate::types::Nonce;
    use ed25519_dalek::Signer;

    #[allow(
        clippy::disallowed_methods,
        reason = "a test needs one real instant to offset from"
    )]
    fn t0() -> std::time::Instant {
        std::time::Instant::now()
    }

    /// Drives a client against a server state machine in memory.
    #[test]
    fn client_registers_against_server_state_machine() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let pk = DeviceKey::try_from_bytes(sk.verifying_key().to_bytes()).unwrap();
        let now = t0();
        let mut server = ServerConn::new(
            now,
            Nonce([8; 32]),
            "sealdesk.test".into(),
            ConnLimits::default(),
        );
        let mut client = ClientConn::new(pk, "sealdesk.test".into());
        let number = RoutingNumber::new(555_444_333).unwrap();
        let mut events = vec![];
        for _ in 0..4 {
            while let Some(o) = server.poll_output() {
                match o {
                    ServerOutput::Send(m) => client
                        .handle_text(&m.encode(), |b| SignatureBytes(sk.sign(b).to_bytes()))
                        .unwrap(),
                    ServerOutput::Register(k) => {
                        assert_eq!(k, pk);
                        server.handle_registered(now, number);
                    }
                    other => panic!("{other:?}"),
                }
            }
            while let Some(o) = client.poll_output() {
                match o {
                    ClientOutput::Send(m) => server.handle_text(now, &m.encode()),
                    ClientOutput::Event(e) => events.push(e),
                }
            }
        }
        assert_eq!(events, vec![ClientEvent::Registered(number)]);
        assert_eq!(client.routing_number(), Some(number));
    }

    /// A malicious server that relays another server's challenge gets a signature bound to
    /// its own name, which the other server refuses.
    #[test]
    fn a_signature_for_one_origin_does_not_register_at_another() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let pk = DeviceKey::try_from_bytes(sk.verifying_key().to_bytes()).unwrap();
        let now = t0();
        for (device_addressed, control) in [("relay.evil:443", false), ("sealdesk.test", true)] {
            let mut server = ServerConn::new(
                now,
                Nonce([8; 32]),
                "sealdesk.test".into(),
                ConnLimits::default(),
            );
            let mut client = ClientConn::new(pk, device_addressed.into());
            let Some(ServerOutput::Send(challenge)) = server.poll_output() else {
                panic!()
            };
            client
                .handle_text(&challenge.encode(), |b| {
                    SignatureBytes(sk.sign(b).to_bytes())
                })
                .unwrap();
            let Some(ClientOutput::Send(register)) = client.poll_output() else {
                panic!()
            };
            server.handle_text(now, &register.encode());
            match server.poll_output() {
                Some(ServerOutput::Register(k)) => {
                    assert!(control, "registered {k:?} across origins")
                }
                Some(ServerOutput::Close(reason, text)) => {
                    assert!(!control, "{text}");
                    assert_eq!(reason, crate::signaling::CloseReason::AuthFailed);
                    assert!(text.contains("server sealdesk.test"), "{text}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn server_misbehaviour_is_an_error_not_a_panic() {
        let pk = DeviceKey::try_from_bytes(
            ed25519_dalek::SigningKey::from_bytes(&[4; 32])
                .verifying_key()
                .to_bytes(),
        )
        .unwrap();
        let mut c = ClientConn::new(pk, "sealdesk.test".into());
        let reg = ServerMessage::Registered {
            routing_number: RoutingNumber::new(123_456_789).unwrap(),
        }
        .encode();
        assert!(matches!(
            c.handle_text(&reg, |_| SignatureBytes([0; 64])),
            Err(ClientError::Protocol(_))
        ));
        let ch = ServerMessage::Challenge {
            versions: vec![77],
            nonce: Nonce([0; 32]),
        }
        .encode();
        assert_eq!(
            c.handle_text(&ch, |_| SignatureBytes([0; 64])),
            Err(ClientError::NoCommonVersion(vec![77]))
        );
        assert!(matches!(
            c.handle_text("not json", |_| SignatureBytes([0; 64])),
            Err(ClientError::Decode(_))
        ));
    }
}
