//! Signaling messages (protocol version 1), their JSON encoding, and the
//! WebSocket close codes and error codes the server uses.
//!
//! See the crate documentation for the conversation these messages make up.

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_ERROR_TEXT, MAX_MESSAGE_BYTES, MAX_WATCH};
use crate::types::{Body, DeviceKey, Nonce, RoutingNumber, SessionId, SignatureBytes};

/// The domain-separation label of the registration signature.
pub const REGISTER_LABEL: &[u8] = b"sealdesk/v1 signaling-register";

/// The exact bytes a device signs to register:
/// `REGISTER_LABEL ‖ LP(origin) ‖ LP(nonce) ‖ LP(device_key)` with `LP(x)` = u32 big-endian
/// length ‖ x.
///
/// The nonce is fresh per connection, so a signature is good for one connection only.
/// `origin` is the server's `host[:port]` as the device addressed it (the HTTP `Host` of
/// the WebSocket request, lower-case), so a signature made for one server cannot be relayed
/// by it to register the device at another. Use [`normalize_origin`] on both sides.
pub fn registration_signing_bytes(origin: &str, nonce: &Nonce, device_key: &DeviceKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(REGISTER_LABEL.len() + 12 + origin.len() + 64);
    out.extend_from_slice(REGISTER_LABEL);
    for part in [origin.as_bytes(), &nonce.0[..], &device_key.as_bytes()[..]] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// The most bytes an origin may have (a DNS name is at most 253, plus `:port`).
pub const MAX_ORIGIN: usize = 260;

/// The canonical form of a server origin: trimmed, ASCII lower-case. `None` if it is empty,
/// too long, or holds anything but the characters of a host name, IP literal and port.
pub fn normalize_origin(raw: &str) -> Option<String> {
    let o = raw.trim().to_ascii_lowercase();
    let ok = !o.is_empty()
        && o.len() <= MAX_ORIGIN
        && o.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    ok.then_some(o)
}

/// The most relay URLs a [`ServerMessage::Relay`] lists.
pub const MAX_RELAY_URLS: usize = 8;
/// The longest relay URL, username or password.
pub const MAX_RELAY_FIELD: usize = 256;

/// A message from a device to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ClientMessage {
    /// Proves possession of `device_key` by signing the connection's challenge.
    /// Must be the first message, and is sent once.
    Register {
        /// The protocol version the device speaks (one of the server's `versions`).
        version: u16,
        /// The device's Ed25519 identity public key.
        device_key: DeviceKey,
        /// `Sig(IK, registration_signing_bytes(origin, nonce, device_key))`.
        signature: SignatureBytes,
    },
    /// Asks the server to forward `body` to the device registered as `to`.
    Send {
        /// Chosen by the sender; echoed in an [`ServerMessage::Error`] if delivery fails.
        id: u64,
        /// The destination.
        to: RoutingNumber,
        /// Which session between the two devices this belongs to.
        session: SessionId,
        /// Opaque (sealed) bytes.
        body: Body,
    },
    /// Replaces the set of routing numbers whose presence this connection follows.
    /// The server answers with the current presence and then reports changes.
    Watch {
        /// At most [`MAX_WATCH`] numbers; an empty list stops watching.
        numbers: Vec<RoutingNumber>,
    },
    /// Asks for a time-limited credential for the server's TURN relay(s). The server
    /// answers [`ServerMessage::Relay`], or an error `no_relay`.
    Relay {},
}

/// A message from the server to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ServerMessage {
    /// Sent first on every connection.
    Challenge {
        /// Versions the server speaks, best first.
        versions: Vec<u16>,
        /// Fresh random bytes to sign.
        nonce: Nonce,
    },
    /// Registration succeeded and is durable.
    Registered {
        /// The stable routing number of this device key.
        routing_number: RoutingNumber,
    },
    /// An envelope another device sent to this one.
    Envelope {
        /// The sender's routing number, as the server authenticated it.
        from: RoutingNumber,
        /// The session it belongs to.
        session: SessionId,
        /// Opaque (sealed) bytes, exactly as sent.
        body: Body,
    },
    /// Presence of watched numbers: the full picture after `watch`, then changes.
    Presence {
        /// Numbers now online.
        online: Vec<RoutingNumber>,
        /// Numbers now offline.
        offline: Vec<RoutingNumber>,
    },
    /// A TURN relay credential (TURN REST scheme: username `expiry:id`) for this device.
    Relay {
        /// Where the relays are: `turn:host:port?transport=udp` (or `tcp`) URLs.
        urls: Vec<String>,
        /// The TURN username.
        username: String,
        /// The TURN password (a credential for the relay only; it opens no session).
        password: String,
        /// Unix seconds after which the relay refuses it.
        expires_at: u64,
    },
    /// A request failed; the connection stays open.
    Error {
        /// The `id` of the `send` this is about, if any.
        id: Option<u64>,
        /// What went wrong, for programs.
        code: ErrorCode,
        /// What went wrong, for people.
        message: String,
    },
}

/// Why a request failed without ending the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The destination is registered but not connected.
    PeerOffline,
    /// No device has this routing number.
    UnknownNumber,
    /// The destination could not keep up and its envelope was dropped.
    PeerBusy,
    /// This connection sent envelopes faster than the server allows; this one was dropped.
    RateLimited,
    /// This server runs no TURN relay.
    NoRelay,
}

impl ErrorCode {
    /// Stable name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PeerOffline => "peer_offline",
            Self::UnknownNumber => "unknown_number",
            Self::PeerBusy => "peer_busy",
            Self::RateLimited => "rate_limited",
            Self::NoRelay => "no_relay",
        }
    }
}

/// Why the server closed a connection: the WebSocket close code and its meaning.
///
/// Codes 4000–4099 are sealdesk's; the others are RFC 6455's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// 1000: normal closure.
    Normal,
    /// 1001: the server is shutting down.
    GoingAway,
    /// 1003: a binary frame; protocol v1 is JSON text only.
    BinaryFrame,
    /// 1009: a message larger than the limit.
    TooLarge,
    /// 1011: the server failed (storage error); nothing the client did.
    ServerError,
    /// 4000: a message that is not valid JSON or not a valid message.
    Malformed,
    /// 4001: the requested protocol version is not spoken here.
    UnsupportedVersion,
    /// 4002: the registration signature did not verify.
    AuthFailed,
    /// 4003: a valid message at the wrong time (e.g. `send` before `register`).
    OutOfOrder,
    /// 4004: this connection did not read its messages fast enough.
    SlowConsumer,
    /// 4005: no registration within the allowed time.
    RegistrationTimeout,
    /// 4006: the same device registered on a newer connection.
    Replaced,
    /// 4007: nothing received for too long.
    IdleTimeout,
}

impl CloseReason {
    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::BinaryFrame => 1003,
            Self::TooLarge => 1009,
            Self::ServerError => 1011,
            Self::Malformed => 4000,
            Self::UnsupportedVersion => 4001,
            Self::AuthFailed => 4002,
            Self::OutOfOrder => 4003,
            Self::SlowConsumer => 4004,
            Self::RegistrationTimeout => 4005,
            Self::Replaced => 4006,
            Self::IdleTimeout => 4007,
        }
    }

    /// The reason for a close code, if it is one of ours.
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1000 => Self::Normal,
            1001 => Self::GoingAway,
            1003 => Self::BinaryFrame,
            1009 => Self::TooLarge,
            1011 => Self::ServerError,
            4000 => Self::Malformed,
            4001 => Self::UnsupportedVersion,
            4002 => Self::AuthFailed,
            4003 => Self::OutOfOrder,
            4004 => Self::SlowConsumer,
            4005 => Self::RegistrationTimeout,
            4006 => Self::Replaced,
            4007 => Self::IdleTimeout,
            _ => return None,
        })
    }

    /// Short stable name, used in metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::GoingAway => "going_away",
            Self::BinaryFrame => "binary_frame",
            Self::TooLarge => "too_large",
            Self::ServerError => "server_error",
            Self::Malformed => "malformed",
            Self::UnsupportedVersion => "unsupported_version",
            Self::AuthFailed => "auth_failed",
            Self::OutOfOrder => "out_of_order",
            Self::SlowConsumer => "slow_consumer",
            Self::RegistrationTimeout => "registration_timeout",
            Self::Replaced => "replaced",
            Self::IdleTimeout => "idle_timeout",
        }
    }

    /// Whether a client should reconnect after this close (with backoff).
    pub fn should_reconnect(self) -> bool {
        !matches!(
            self,
            Self::UnsupportedVersion | Self::AuthFailed | Self::Replaced
        )
    }
}

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Longer than [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not JSON, or not one of the messages, or a field out of range.
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl DecodeError {
    /// The close reason a server uses for this error.
    pub fn close_reason(&self) -> CloseReason {
        match self {
            Self::TooLarge(_) => CloseReason::TooLarge,
            Self::Malformed(_) => CloseReason::Malformed,
        }
    }
}

fn decode<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, DecodeError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge(text.len()));
    }
    serde_json::from_str(text)
        .map_err(|e| DecodeError::Malformed(truncate(e.to_string(), MAX_ERROR_TEXT)))
}

/// Cuts text to at most `max` bytes on a character boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl ClientMessage {
    /// Decodes and validates a client message.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let msg: Self = decode(text)?;
        if let Self::Watch { numbers } = &msg {
            if numbers.len() > MAX_WATCH {
                return Err(DecodeError::Malformed(format!(
                    "watch lists {} numbers; the limit is {MAX_WATCH}",
                    numbers.len()
                )));
            }
        }
        Ok(msg)
    }

    /// Encodes as JSON text.
    pub fn encode(&self) -> String {
        // Serialising these types cannot fail: no maps with non-string keys, no
        // custom serialisers that error.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A short name for the message kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Register { .. } => "register",
            Self::Send { .. } => "send",
            Self::Watch { .. } => "watch",
            Self::Relay {} => "relay",
        }
    }
}

impl ServerMessage {
    /// Decodes and validates a server message (a client must treat the server as untrusted).
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let msg: Self = decode(text)?;
        match &msg {
            Self::Presence { online, offline } if online.len() + offline.len() > MAX_WATCH => Err(
                DecodeError::Malformed("presence lists too many numbers".into()),
            ),
            Self::Error { message, .. } if message.len() > MAX_ERROR_TEXT => {
                Err(DecodeError::Malformed("error message too long".into()))
            }
            Self::Challenge { versions, .. } if versions.len() > 16 => Err(DecodeError::Malformed(
                "challenge lists too many versions".into(),
            )),
            Self::Relay {
                urls,
                username,
                password,
                ..
            } if urls.len() > MAX_RELAY_URLS
                || urls.iter().any(|u| u.len() > MAX_RELAY_FIELD)
                || username.len() > MAX_RELAY_FIELD
                || password.len() > MAX_RELAY_FIELD =>
            {
                Err(DecodeError::Malformed(
                    "relay credential too long or too many relays".into(),
                ))
            }
            _ => Ok(msg),
        }
    }

    /// Encodes as JSON text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_credentials_round_trip_and_oversized_ones_are_refused() {
        let m = ServerMessage::Relay {
            urls: vec!["turn:203.0.113.1:3478?transport=udp".into()],
            username: "1700000600:123456789".into(),
            password: "4oCqSZt2zUGkg95PxJTJuzkcGZ0=".into(),
            expires_at: 1_700_000_600,
        };
        assert_eq!(ServerMessage::decode(&m.encode()).unwrap(), m);
        assert_eq!(
            ClientMessage::decode(r#"{"type":"relay"}"#).unwrap(),
            ClientMessage::Relay {}
        );
        assert!(ClientMessage::decode(r#"{"type":"relay","x":1}"#).is_err());
        let many = ServerMessage::Relay {
            urls: vec!["turn:x".into(); MAX_RELAY_URLS + 1],
            username: "u".into(),
            password: "p".into(),
            expires_at: 0,
        };
        assert!(ServerMessage::decode(&many.encode()).is_err());
        let long = ServerMessage::Relay {
            urls: vec![],
            username: "u".repeat(MAX_RELAY_FIELD + 1),
            password: "p".into(),
            expires_at: 0,
        };
        assert!(ServerMessage::decode(&long.encode()).is_err());
    }
    use crate::limits::MAX_BODY_BYTES;

    fn key() -> DeviceKey {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        DeviceKey::try_from_bytes(sk.verifying_key().to_bytes()).unwrap()
    }

    #[test]
    fn round_trip_every_message() {
        let n = RoutingNumber::new(123_456_789).unwrap();
        let msgs = vec![
            ClientMessage::Register {
                version: 1,
                device_key: key(),
                signature: SignatureBytes([9; 64]),
            },
            ClientMessage::Send {
                id: 42,
                to: n,
                session: SessionId([1; 16]),
                body: Body::new(b"sealed".to_vec()).unwrap(),
            },
            ClientMessage::Watch { numbers: vec![n] },
        ];
        for m in msgs {
            assert_eq!(ClientMessage::decode(&m.encode()).unwrap(), m);
        }
        let msgs = vec![
            ServerMessage::Challenge {
                versions: vec![1],
                nonce: Nonce([3; 32]),
            },
            ServerMessage::Registered { routing_number: n },
            ServerMessage::Envelope {
                from: n,
                session: SessionId([2; 16]),
                body: Body::new(vec![0; 10]).unwrap(),
            },
            ServerMessage::Presence {
                online: vec![n],
                offline: vec![],
            },
            ServerMessage::Error {
                id: Some(3),
                code: ErrorCode::PeerOffline,
                message: "x".into(),
            },
        ];
        for m in msgs {
            assert_eq!(ServerMessage::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn the_largest_envelope_fits_in_one_message() {
        let m = ServerMessage::Envelope {
            from: RoutingNumber::new(999_999_999).unwrap(),
            session: SessionId([0xff; 16]),
            body: Body::new(vec![0xff; MAX_BODY_BYTES]).unwrap(),
        };
        assert!(m.encode().len() <= MAX_MESSAGE_BYTES);
    }

    #[test]
    fn malformed_messages_are_named() {
        let cases = [
            ("", "EOF"),
            ("{", "EOF"),
            ("[]", "type"),
            ("null", "invalid type"),
            (r#"{"type":"fly"}"#, "unknown variant"),
            (r#"{"type":"watch"}"#, "missing field"),
            (r#"{"type":"watch","numbers":[1]}"#, "routing number 1"),
            (r#"{"type":"watch","numbers":[],"x":1}"#, "unknown field"),
            (
                r#"{"type":"send","id":1,"to":123456789,"session":"00","body":""}"#,
                "session",
            ),
            (
                r#"{"type":"send","id":-1,"to":123456789,"session":"00000000000000000000000000000000","body":""}"#,
                "invalid value",
            ),
            (
                r#"{"type":"send","id":1,"to":123456789,"session":"00000000000000000000000000000000","body":"!!!!"}"#,
                "base64",
            ),
        ];
        for (text, needle) in cases {
            let err = ClientMessage::decode(text).unwrap_err();
            assert!(
                err.to_string().contains(needle),
                "{text:?}: {err} should mention {needle:?}"
            );
        }
        let many: Vec<u32> = (0..=MAX_WATCH as u32).map(|i| 100_000_000 + i).collect();
        let text = format!(r#"{{"type":"watch","numbers":{many:?}}}"#);
        assert!(ClientMessage::decode(&text)
            .unwrap_err()
            .to_string()
            .contains("limit is 256"));
        let huge = " ".repeat(MAX_MESSAGE_BYTES + 1);
        assert_eq!(
            ClientMessage::decode(&huge).unwrap_err(),
            DecodeError::TooLarge(MAX_MESSAGE_BYTES + 1)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let valid = ClientMessage::Send {
            id: 1,
            to: RoutingNumber::new(123_456_789).unwrap(),
            session: SessionId([1; 16]),
            body: Body::new(b"abc".to_vec()).unwrap(),
        }
        .encode();
        for _ in 0..20_000 {
            let mut bytes = valid.clone().into_bytes();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..bytes.len());
                bytes[i] = rng.gen();
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = ClientMessage::decode(&text);
            let _ = ServerMessage::decode(&text);
        }
    }

    #[test]
    fn close_codes_round_trip() {
        for code in (1000..1012).chain(4000..4010) {
            if let Some(r) = CloseReason::from_code(code) {
                assert_eq!(r.code(), code);
            }
        }
    }

    #[test]
    fn signing_bytes_are_length_prefixed() {
        let b = registration_signing_bytes("a.example:8443", &Nonce([1; 32]), &key());
        let l = REGISTER_LABEL.len();
        assert_eq!(b.len(), l + 4 + 14 + 72);
        assert_eq!(&b[l..l + 4], &[0, 0, 0, 14]);
        assert_eq!(&b[l + 4..l + 18], b"a.example:8443");
        assert_eq!(&b[l + 18..l + 22], &[0, 0, 0, 32]);
        assert_ne!(
            b,
            registration_signing_bytes("b.example:8443", &Nonce([1; 32]), &key())
        );
    }

    #[test]
    fn origins_are_normalized() {
        assert_eq!(
            normalize_origin(" Relay.Example:443 ").as_deref(),
            Some("relay.example:443")
        );
        assert_eq!(
            normalize_origin("[::1]:8443").as_deref(),
            Some("[::1]:8443")
        );
        assert_eq!(normalize_origin(""), None);
        assert_eq!(normalize_origin("a b"), None);
        assert_eq!(normalize_origin("a/b"), None);
        assert_eq!(normalize_origin(&"a".repeat(MAX_ORIGIN + 1)), None);
    }
}
