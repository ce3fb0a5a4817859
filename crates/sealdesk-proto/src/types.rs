//! Identifiers and byte strings that appear on the wire.
//!
//! Every type here validates on construction and on deserialisation, so a value
//! that exists is a value that is well-formed. Binary values travel as standard
//! base64 (with padding) inside JSON strings; session ids travel as lowercase hex.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::MAX_BODY_BYTES;

/// A value on the wire that is not well-formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidValue {
    /// Not a routing number (9 digits, first digit not zero).
    #[error("routing number {0} is not 9 digits with a non-zero first digit")]
    RoutingNumber(u64),
    /// Not valid base64, or the wrong length once decoded.
    #[error("{what}: expected {expected}")]
    Bytes {
        /// The field that was wrong.
        what: &'static str,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// Not a public key: the 32 bytes are not a valid Ed25519 point.
    #[error("device key is not a valid Ed25519 public key")]
    DeviceKey,
}

/// The short number a server assigns to a device key so others can address it.
///
/// Nine decimal digits, the first non-zero (100 000 000 ..= 999 999 999). A routing
/// number is not secret and is not trust: it only says where to send envelopes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoutingNumber(u32);

impl RoutingNumber {
    /// The smallest routing number.
    pub const MIN: u32 = 100_000_000;
    /// The largest routing number.
    pub const MAX: u32 = 999_999_999;

    /// Validates a routing number.
    pub fn new(value: u64) -> Result<Self, InvalidValue> {
        match u32::try_from(value) {
            Ok(v) if (Self::MIN..=Self::MAX).contains(&v) => Ok(Self(v)),
            _ => Err(InvalidValue::RoutingNumber(value)),
        }
    }

    /// Maps any `u32` onto the routing-number range without bias worth caring about
    /// for collision avoidance (callers retry on collision). Used with a random `u32`.
    pub fn from_random(r: u32) -> Self {
        let span = Self::MAX - Self::MIN + 1;
        Self(Self::MIN + r % span)
    }

    /// The number as an integer.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Grouped for reading aloud: `123 456 789`.
    pub fn grouped(self) -> String {
        let s = self.0.to_string();
        format!("{} {} {}", &s[0..3], &s[3..6], &s[6..9])
    }

    /// Parses user input: digits with optional spaces or dashes between groups.
    pub fn parse_human(s: &str) -> Result<Self, InvalidValue> {
        let digits: String = s.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if digits.len() != 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidValue::Bytes {
                what: "routing number",
                expected: "9 digits, e.g. 123 456 789",
            });
        }
        let value: u64 = digits.parse().map_err(|_| InvalidValue::Bytes {
            what: "routing number",
            expected: "9 digits, e.g. 123 456 789",
        })?;
        Self::new(value)
    }
}

impl fmt::Display for RoutingNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for RoutingNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoutingNumber({})", self.0)
    }
}

impl Serialize for RoutingNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for RoutingNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        Self::new(v).map_err(de::Error::custom)
    }
}

/// Decodes standard base64 of exactly `N` bytes, refusing long input before decoding.
fn decode_fixed<const N: usize>(
    s: &str,
    what: &'static str,
    expected: &'static str,
) -> Result<[u8; N], InvalidValue> {
    let err = InvalidValue::Bytes { what, expected };
    if s.len() != N.div_ceil(3) * 4 {
        return Err(err);
    }
    let v = B64.decode(s).map_err(|_| err.clone())?;
    v.try_into().map_err(|_| err)
}

/// Implements base64 serde for a fixed-size byte newtype.
macro_rules! b64_fixed_serde {
    ($ty:ident, $n:expr, $what:expr, $expected:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&B64.encode(self.0))
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                let bytes = decode_fixed::<$n>(&s, $what, $expected).map_err(de::Error::custom)?;
                $ty::try_from_bytes(bytes).map_err(de::Error::custom)
            }
        }
    };
}

/// A device's Ed25519 identity public key (`IK_pub`, DESIGN.md §3), as 32 bytes.
///
/// Only valid curve points are constructible.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceKey([u8; 32]);

impl DeviceKey {
    /// Validates 32 bytes as an Ed25519 public key. Points of small order (which no
    /// honest key generator produces and under which signatures prove nothing) are refused.
    pub fn try_from_bytes(bytes: [u8; 32]) -> Result<Self, InvalidValue> {
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| InvalidValue::DeviceKey)?;
        if key.is_weak() {
            return Err(InvalidValue::DeviceKey);
        }
        Ok(Self(bytes))
    }

    /// The key of a parsed Ed25519 verifying key (always a valid point).
    pub fn from_verifying_key(key: &ed25519_dalek::VerifyingKey) -> Self {
        Self(key.to_bytes())
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Verifies an Ed25519 signature with the strict rules (no malleable or
    /// small-order edge cases).
    pub fn verify_strict(&self, message: &[u8], signature: &SignatureBytes) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig).is_ok()
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKey({})", B64.encode(self.0))
    }
}

b64_fixed_serde!(
    DeviceKey,
    32,
    "device_key",
    "base64 of a 32-byte Ed25519 public key"
);

/// An Ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 64]);

impl SignatureBytes {
    fn try_from_bytes(bytes: [u8; 64]) -> Result<Self, InvalidValue> {
        Ok(Self(bytes))
    }
}

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureBytes({})", B64.encode(self.0))
    }
}

b64_fixed_serde!(
    SignatureBytes,
    64,
    "signature",
    "base64 of a 64-byte Ed25519 signature"
);

/// The server's registration challenge: 32 fresh random bytes per connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Nonce(pub [u8; 32]);

impl Nonce {
    fn try_from_bytes(bytes: [u8; 32]) -> Result<Self, InvalidValue> {
        Ok(Self(bytes))
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", B64.encode(self.0))
    }
}

b64_fixed_serde!(Nonce, 32, "nonce", "base64 of 32 bytes");

/// Identifies one session between two devices, so several can run at once.
/// Chosen at random (16 bytes) by the device that starts the session; lowercase hex on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// Lowercase hex, 32 characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Parses 32 lowercase or uppercase hex characters.
    pub fn from_hex(s: &str) -> Result<Self, InvalidValue> {
        let err = InvalidValue::Bytes {
            what: "session",
            expected: "32 hex characters (16 bytes)",
        };
        let b = s.as_bytes();
        if b.len() != 32 {
            return Err(err);
        }
        let mut out = [0u8; 16];
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            let hi = hex_val(pair[0]).ok_or(err.clone())?;
            let lo = hex_val(pair[1]).ok_or(err.clone())?;
            *o = (hi << 4) | lo;
        }
        Ok(Self(out))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.to_hex())
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&s).map_err(de::Error::custom)
    }
}

/// The opaque body of an envelope: sealed bytes the server forwards and never reads.
/// At most [`MAX_BODY_BYTES`] once decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Body(Vec<u8>);

impl Body {
    /// Wraps bytes, refusing more than [`MAX_BODY_BYTES`].
    pub fn new(bytes: Vec<u8>) -> Result<Self, InvalidValue> {
        if bytes.len() > MAX_BODY_BYTES {
            return Err(InvalidValue::Bytes {
                what: "body",
                expected: "at most 45 KiB (46 080 bytes) once decoded",
            });
        }
        Ok(Self(bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Takes the bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print contents: bodies are sealed, but logs should not carry them either.
        write!(f, "Body({} bytes)", self.0.len())
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let too_long = InvalidValue::Bytes {
            what: "body",
            expected: "at most 45 KiB (46 080 bytes) once decoded",
        };
        if s.len() > MAX_BODY_BYTES.div_ceil(3) * 4 {
            return Err(de::Error::custom(too_long));
        }
        let bytes = B64.decode(s.as_bytes()).map_err(|_| {
            de::Error::custom(InvalidValue::Bytes {
                what: "body",
                expected: "standard base64",
            })
        })?;
        Body::new(bytes).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_order_keys_are_refused() {
        // The identity point (canonical and non-canonical encodings) and a point of order 8.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut noncanonical = [0xffu8; 32];
        noncanonical[0] = 0xec;
        noncanonical[31] = 0x7f;
        let order8 = [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0x7a,
        ];
        for k in [identity, noncanonical, order8] {
            assert_eq!(
                DeviceKey::try_from_bytes(k),
                Err(InvalidValue::DeviceKey),
                "{k:02x?}"
            );
        }
        // Positive control: a real key passes.
        let real = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        assert!(DeviceKey::try_from_bytes(real.to_bytes()).is_ok());
    }

    #[test]
    fn routing_number_range() {
        assert!(RoutingNumber::new(99_999_999).is_err());
        assert!(RoutingNumber::new(1_000_000_000).is_err());
        assert!(RoutingNumber::new(u64::MAX).is_err());
        assert_eq!(RoutingNumber::new(123_456_789).unwrap().get(), 123_456_789);
        assert_eq!(RoutingNumber::from_random(0).get(), RoutingNumber::MIN);
        assert!(RoutingNumber::from_random(u32::MAX).get() <= RoutingNumber::MAX);
        let n = RoutingNumber::new(123_456_789).unwrap();
        assert_eq!(n.grouped(), "123 456 789");
        assert_eq!(RoutingNumber::parse_human("123 456-789").unwrap(), n);
        assert!(RoutingNumber::parse_human("12345678").is_err());
        assert!(RoutingNumber::parse_human("023456789").is_err());
        assert!(RoutingNumber::parse_human("1234567٨9").is_err());
    }

    #[test]
    fn session_id_hex_round_trip() {
        let id = SessionId([0xab; 16]);
        assert_eq!(SessionId::from_hex(&id.to_hex()).unwrap(), id);
        assert!(SessionId::from_hex("zz").is_err());
        assert!(SessionId::from_hex(&"g".repeat(32)).is_err());
        assert!(SessionId::from_hex(&"é".repeat(16)).is_err());
    }

    #[test]
    fn device_key_rejects_non_points_and_wrong_lengths() {
        // y = 2 is not on the curve.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert_eq!(
            DeviceKey::try_from_bytes(bad).unwrap_err(),
            InvalidValue::DeviceKey
        );
        let short = serde_json::from_str::<DeviceKey>("\"AAAA\"");
        assert!(short.unwrap_err().to_string().contains("32-byte"));
    }

    #[test]
    fn body_limit_is_enforced_before_decoding() {
        assert!(Body::new(vec![0; MAX_BODY_BYTES]).is_ok());
        assert!(Body::new(vec![0; MAX_BODY_BYTES + 1]).is_err());
        let long = format!("\"{}\"", "A".repeat(MAX_BODY_BYTES.div_ceil(3) * 4 + 4));
        assert!(serde_json::from_str::<Body>(&long).is_err());
        assert_eq!(
            format!("{:?}", Body::new(b"secret".to_vec()).unwrap()),
            "Body(6 bytes)"
        );
    }
}
