//! The server's side of one signaling connection, as a state machine that does no I/O.
//!
//! The shell feeds it what arrived ([`ServerConn::handle_text`], [`ServerConn::handle_binary`],
//! [`ServerConn::handle_activity`]), the results of work it asked for
//! ([`ServerConn::handle_registered`], [`ServerConn::handle_route_failed`]) and time
//! ([`ServerConn::handle_timeout`]); after each call it drains [`ServerConn::poll_output`]
//! and sleeps until [`ServerConn::poll_timeout`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::limits::{MAX_CLOSE_REASON, PROTOCOL_VERSION, SUPPORTED_VERSIONS};
use crate::rate::TokenBucket;
use crate::signaling::{
    registration_signing_bytes, truncate, ClientMessage, CloseReason, ErrorCode, ServerMessage,
};
use crate::types::{Body, DeviceKey, Nonce, RoutingNumber, SessionId};

/// Per-connection limits the server enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// How long a connection may stay unregistered.
    pub registration_timeout: Duration,
    /// How long a registered connection may stay silent (clients ping more often).
    pub idle_timeout: Duration,
    /// Envelopes per second a connection may send on average.
    pub envelopes_per_sec: u32,
    /// Envelopes a connection may send in a burst.
    pub envelope_burst: u32,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            registration_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            envelopes_per_sec: 200,
            envelope_burst: 400,
        }
    }
}

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOutput {
    /// Send this message to the device.
    Send(ServerMessage),
    /// The device (this routing number) asks for a relay credential: answer with
    /// [`ServerMessage::Relay`] or an error `no_relay`.
    Relay(RoutingNumber),
    /// The device proved it holds this key: look up or durably assign its routing
    /// number, then call [`ServerConn::handle_registered`].
    Register(DeviceKey),
    /// Forward an envelope. If it cannot be delivered, call [`ServerConn::handle_route_failed`].
    Route {
        /// The sender's request id.
        id: u64,
        /// The sender (authenticated by registration).
        from: RoutingNumber,
        /// The destination.
        to: RoutingNumber,
        /// The session.
        session: SessionId,
        /// The opaque body.
        body: Body,
    },
    /// Replace this connection's presence subscriptions with these numbers and
    /// send their current presence.
    Watch(Vec<RoutingNumber>),
    /// Close the connection with this reason and text, then drop it.
    Close(CloseReason, String),
}

#[derive(Debug)]
enum State {
    AwaitRegister { nonce: Nonce, deadline: Instant },
    Registering,
    Registered { number: RoutingNumber },
    Closed,
}

/// One connection's protocol state on the server.
#[derive(Debug)]
pub struct ServerConn {
    state: State,
    limits: ConnLimits,
    last_activity: Instant,
    envelopes: TokenBucket,
    out: VecDeque<ServerOutput>,
    origin: String,
}

impl ServerConn {
    /// A new connection at `now`, challenged with `nonce` (fresh random bytes). `origin`
    /// is this server as the device addressed it (the request's `Host`, or the configured
    /// public origin; see [`crate::signaling::normalize_origin`]): registration signatures
    /// must cover it. The first output is the challenge.
    pub fn new(now: Instant, nonce: Nonce, origin: String, limits: ConnLimits) -> Self {
        let mut out = VecDeque::new();
        out.push_back(ServerOutput::Send(ServerMessage::Challenge {
            versions: SUPPORTED_VERSIONS.to_vec(),
            nonce,
        }));
        Self {
            origin,
            state: State::AwaitRegister {
                nonce,
                deadline: now + limits.registration_timeout,
            },
            limits,
            last_activity: now,
            envelopes: TokenBucket::new(now, limits.envelopes_per_sec, limits.envelope_burst),
            out,
        }
    }

    /// The next thing to do. Call after every `handle_*` until it returns `None`.
    pub fn poll_output(&mut self) -> Option<ServerOutput> {
        self.out.pop_front()
    }

    /// When [`ServerConn::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::AwaitRegister { deadline, .. } => Some(deadline),
            State::Registering => None,
            State::Registered { .. } => Some(self.last_activity + self.limits.idle_timeout),
            State::Closed => None,
        }
    }

    /// The routing number once registered.
    pub fn routing_number(&self) -> Option<RoutingNumber> {
        match self.state {
            State::Registered { number } => Some(number),
            _ => None,
        }
    }

    /// Whether the connection has been told to close.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Time has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::AwaitRegister { deadline, .. } if now >= deadline => self.close(
                CloseReason::RegistrationTimeout,
                format!(
                    "no valid registration within {} s",
                    self.limits.registration_timeout.as_secs()
                ),
            ),
            State::Registered { .. } if now >= self.last_activity + self.limits.idle_timeout => {
                self.close(
                    CloseReason::IdleTimeout,
                    format!(
                        "nothing received for {} s",
                        self.limits.idle_timeout.as_secs()
                    ),
                )
            }
            _ => {}
        }
    }

    /// A ping, pong or other sign of life arrived.
    pub fn handle_activity(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// A binary frame arrived (protocol v1 is text only).
    pub fn handle_binary(&mut self, _now: Instant, len: usize) {
        self.close(
            CloseReason::BinaryFrame,
            format!(
                "binary frame of {len} bytes: protocol v{PROTOCOL_VERSION} uses JSON text frames"
            ),
        );
    }

    /// A message larger than the limit arrived (detected by the WebSocket layer).
    pub fn handle_oversized(&mut self, _now: Instant, limit: usize) {
        self.close(
            CloseReason::TooLarge,
            format!("message exceeds the {limit}-byte limit"),
        );
    }

    /// A text frame arrived.
    pub fn handle_text(&mut self, now: Instant, text: &str) {
        if self.is_closed() {
            return;
        }
        self.last_activity = now;
        let msg = match ClientMessage::decode(text) {
            Ok(m) => m,
            Err(e) => return self.close(e.close_reason(), e.to_string()),
        };
        match (&self.state, msg) {
            (
                State::AwaitRegister { nonce, .. },
                ClientMessage::Register {
                    version,
                    device_key,
                    signature,
                },
            ) => {
                if !SUPPORTED_VERSIONS.contains(&version) {
                    return self.close(
                        CloseReason::UnsupportedVersion,
                        format!(
                            "unsupported protocol version {version}; this server speaks {SUPPORTED_VERSIONS:?}"
                        ),
                    );
                }
                let signed = registration_signing_bytes(&self.origin, nonce, &device_key);
                if !device_key.verify_strict(&signed, &signature) {
                    let text = format!(
                        "registration signature does not verify for this device key, this connection's \
                         challenge and server {} (a device that addressed another name, e.g. through a \
                         proxy, must use that name; operators set `public_origin`)",
                        self.origin
                    );
                    return self.close(CloseReason::AuthFailed, text);
                }
                self.state = State::Registering;
                self.out.push_back(ServerOutput::Register(device_key));
            }
            (
                State::Registered { number },
                ClientMessage::Send {
                    id,
                    to,
                    session,
                    body,
                },
            ) => {
                let from = *number;
                if !self.envelopes.try_take(now) {
                    self.out.push_back(ServerOutput::Send(ServerMessage::Error {
                        id: Some(id),
                        code: ErrorCode::RateLimited,
                        message: format!(
                            "more than {} envelopes per second; envelope dropped",
                            self.limits.envelopes_per_sec
                        ),
                    }));
                    return;
                }
                self.out.push_back(ServerOutput::Route {
                    id,
                    from,
                    to,
                    session,
                    body,
                });
            }
            (State::Registered { .. }, ClientMessage::Watch { numbers }) => {
                let mut numbers = numbers;
                numbers.sort_unstable();
                numbers.dedup();
                self.out.push_back(ServerOutput::Watch(numbers));
            }
            (State::Registered { number }, ClientMessage::Relay {}) => {
                let number = *number;
                // Counted with envelopes: a credential is as cheap to ask for as a message.
                if !self.envelopes.try_take(now) {
                    self.out.push_back(ServerOutput::Send(ServerMessage::Error {
                        id: None,
                        code: ErrorCode::RateLimited,
                        message: "too many requests; relay credential not issued".into(),
                    }));
                    return;
                }
                self.out.push_back(ServerOutput::Relay(number));
            }
            (State::Registered { .. }, ClientMessage::Register { .. }) => self.close(
                CloseReason::OutOfOrder,
                "register sent twice on one connection".into(),
            ),
            (State::Registering, m) => self.close(
                CloseReason::OutOfOrder,
                format!("{} sent before registration was acknowledged", m.kind()),
            ),
            (State::AwaitRegister { .. }, m) => self.close(
                CloseReason::OutOfOrder,
                format!("{} sent before register; register first", m.kind()),
            ),
            (State::Closed, _) => {}
        }
    }

    /// The shell durably assigned (or found) `number` for the key from [`ServerOutput::Register`].
    pub fn handle_registered(&mut self, now: Instant, number: RoutingNumber) {
        if matches!(self.state, State::Registering) {
            self.state = State::Registered { number };
            self.last_activity = now;
            self.out
                .push_back(ServerOutput::Send(ServerMessage::Registered {
                    routing_number: number,
                }));
        }
    }

    /// The shell has no relay for a [`ServerOutput::Relay`] request.
    pub fn handle_no_relay(&mut self) {
        if self.is_closed() {
            return;
        }
        self.out.push_back(ServerOutput::Send(ServerMessage::Error {
            id: None,
            code: ErrorCode::NoRelay,
            message: "this server runs no TURN relay".into(),
        }));
    }

    /// The shell could not deliver envelope `id` to `to`.
    pub fn handle_route_failed(&mut self, id: u64, to: RoutingNumber, code: ErrorCode) {
        if self.is_closed() {
            return;
        }
        let message = match code {
            ErrorCode::PeerOffline => format!("routing number {to} is not online"),
            ErrorCode::UnknownNumber => format!("no device has routing number {to}"),
            ErrorCode::PeerBusy => {
                format!("routing number {to} is not reading its messages; envelope dropped")
            }
            ErrorCode::RateLimited => "rate limited".to_string(),
            ErrorCode::NoRelay => "this server runs no relay".to_string(),
        };
        self.out.push_back(ServerOutput::Send(ServerMessage::Error {
            id: Some(id),
            code,
            message,
        }));
    }

    /// Ends the connection for a reason decided outside the protocol (shutdown,
    /// replaced by a newer connection, slow consumer, storage failure).
    pub fn close(&mut self, reason: CloseReason, text: String) {
        if self.is_closed() {
            return;
        }
        self.state = State::Closed;
        self.out.push_back(ServerOutput::Close(
            reason,
            truncate(text, MAX_CLOSE_REASON),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::ClientMessage;
    use crate::types::SignatureBytes;
    use ed25519_dalek::Signer;

    #[allow(
        clippy::disallowed_methods,
        reason = "a test needs one real instant to offset from"
    )]
    fn t0() -> Instant {
        Instant::now()
    }

    fn device(seed: u8) -> (ed25519_dalek::SigningKey, DeviceKey) {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let pk = DeviceKey::try_from_bytes(sk.verifying_key().to_bytes()).unwrap();
        (sk, pk)
    }

    fn register_msg(
        sk: &ed25519_dalek::SigningKey,
        pk: DeviceKey,
        nonce: Nonce,
        version: u16,
    ) -> String {
        let sig = sk.sign(&registration_signing_bytes("sealdesk.test", &nonce, &pk));
        ClientMessage::Register {
            version,
            device_key: pk,
            signature: SignatureBytes(sig.to_bytes()),
        }
        .encode()
    }

    fn drain(c: &mut ServerConn) -> Vec<ServerOutput> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn registered(now: Instant, limits: ConnLimits) -> ServerConn {
        let nonce = Nonce([5; 32]);
        let mut c = ServerConn::new(now, nonce, "sealdesk.test".into(), limits);
        let (sk, pk) = device(1);
        c.handle_text(now, &register_msg(&sk, pk, nonce, 1));
        let out = drain(&mut c);
        assert!(matches!(out.last(), Some(ServerOutput::Register(k)) if *k == pk));
        c.handle_registered(now, RoutingNumber::new(111_222_333).unwrap());
        drain(&mut c);
        c
    }

    fn closed_with(c: &mut ServerConn) -> Option<(CloseReason, String)> {
        drain(c).into_iter().find_map(|o| match o {
            ServerOutput::Close(r, t) => Some((r, t)),
            _ => None,
        })
    }

    #[test]
    fn challenge_then_register() {
        let now = t0();
        let c = registered(now, ConnLimits::default());
        assert_eq!(c.routing_number().unwrap().get(), 111_222_333);
        assert_eq!(
            c.poll_timeout(),
            Some(now + ConnLimits::default().idle_timeout)
        );
    }

    #[test]
    fn signature_for_another_key_or_nonce_is_refused() {
        let now = t0();
        let nonce = Nonce([5; 32]);
        let (sk1, _) = device(1);
        let (_, pk2) = device(2);
        // Signed by key 1, claiming key 2.
        let mut c = ServerConn::new(now, nonce, "sealdesk.test".into(), ConnLimits::default());
        c.handle_text(now, &register_msg(&sk1, pk2, nonce, 1));
        assert_eq!(closed_with(&mut c).unwrap().0, CloseReason::AuthFailed);
        // A valid signature over another connection's nonce (a replay).
        let (sk, pk) = device(3);
        let mut c = ServerConn::new(
            now,
            Nonce([6; 32]),
            "sealdesk.test".into(),
            ConnLimits::default(),
        );
        c.handle_text(now, &register_msg(&sk, pk, nonce, 1));
        assert_eq!(closed_with(&mut c).unwrap().0, CloseReason::AuthFailed);
    }

    #[test]
    fn unknown_version_and_out_of_order() {
        let now = t0();
        let nonce = Nonce([5; 32]);
        let (sk, pk) = device(1);
        let mut c = ServerConn::new(now, nonce, "sealdesk.test".into(), ConnLimits::default());
        c.handle_text(now, &register_msg(&sk, pk, nonce, 9));
        let (r, t) = closed_with(&mut c).unwrap();
        assert_eq!(r, CloseReason::UnsupportedVersion);
        assert!(t.contains("version 9"), "{t}");

        let mut c = ServerConn::new(now, nonce, "sealdesk.test".into(), ConnLimits::default());
        c.handle_text(now, r#"{"type":"watch","numbers":[]}"#);
        let (r, t) = closed_with(&mut c).unwrap();
        assert_eq!(r, CloseReason::OutOfOrder);
        assert!(t.contains("register first"), "{t}");

        let mut c = registered(now, ConnLimits::default());
        c.handle_text(now, &register_msg(&sk, pk, nonce, 1));
        assert_eq!(closed_with(&mut c).unwrap().0, CloseReason::OutOfOrder);
        // Nothing more comes out of a closed connection.
        c.handle_text(now, r#"{"type":"watch","numbers":[]}"#);
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn timeouts() {
        let now = t0();
        let limits = ConnLimits::default();
        let mut c = ServerConn::new(now, Nonce([0; 32]), "sealdesk.test".into(), limits);
        drain(&mut c);
        c.handle_timeout(now + Duration::from_secs(9));
        assert!(drain(&mut c).is_empty());
        c.handle_timeout(now + limits.registration_timeout);
        assert_eq!(
            closed_with(&mut c).unwrap().0,
            CloseReason::RegistrationTimeout
        );

        let mut c = registered(now, limits);
        c.handle_activity(now + Duration::from_secs(100));
        c.handle_timeout(now + limits.idle_timeout);
        assert!(drain(&mut c).is_empty());
        c.handle_timeout(now + Duration::from_secs(100) + limits.idle_timeout);
        assert_eq!(closed_with(&mut c).unwrap().0, CloseReason::IdleTimeout);
    }

    #[test]
    fn envelopes_are_routed_from_the_authenticated_number_and_rate_limited() {
        let now = t0();
        let limits = ConnLimits {
            envelopes_per_sec: 1,
            envelope_burst: 2,
            ..ConnLimits::default()
        };
        let mut c = registered(now, limits);
        let send = ClientMessage::Send {
            id: 7,
            to: RoutingNumber::new(999_000_111).unwrap(),
            session: SessionId([4; 16]),
            body: Body::new(b"x".to_vec()).unwrap(),
        }
        .encode();
        for _ in 0..2 {
            c.handle_text(now, &send);
            match drain(&mut c).as_slice() {
                [ServerOutput::Route { from, id: 7, .. }] => assert_eq!(from.get(), 111_222_333),
                other => panic!("{other:?}"),
            }
        }
        c.handle_text(now, &send);
        match drain(&mut c).as_slice() {
            [ServerOutput::Send(ServerMessage::Error {
                code: ErrorCode::RateLimited,
                id: Some(7),
                ..
            })] => {}
            other => panic!("{other:?}"),
        }
        c.handle_route_failed(
            7,
            RoutingNumber::new(999_000_111).unwrap(),
            ErrorCode::PeerOffline,
        );
        match drain(&mut c).as_slice() {
            [ServerOutput::Send(ServerMessage::Error { message, .. })] => {
                assert!(message.contains("999000111 is not online"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_binary_and_oversized_close_with_their_codes() {
        let now = t0();
        for (input, reason) in [
            (Some("{nope"), CloseReason::Malformed),
            (None, CloseReason::BinaryFrame),
        ] {
            let mut c = registered(now, ConnLimits::default());
            match input {
                Some(t) => c.handle_text(now, t),
                None => c.handle_binary(now, 3),
            }
            assert_eq!(closed_with(&mut c).unwrap().0, reason);
        }
        // Close reasons fit in a control frame, even for long parser errors.
        let mut c = registered(now, ConnLimits::default());
        c.handle_text(now, &format!("{{\"type\":\"{}é\"}}", "a".repeat(300)));
        let (r, t) = closed_with(&mut c).unwrap();
        assert_eq!(r, CloseReason::Malformed);
        assert!(t.len() <= 123 && t.starts_with("malformed message"), "{t}");

        let mut c = registered(now, ConnLimits::default());
        c.handle_oversized(now, 65536);
        let (r, t) = closed_with(&mut c).unwrap();
        assert_eq!((r, r.code()), (CloseReason::TooLarge, 1009));
        assert!(t.contains("65536"));
    }
}
