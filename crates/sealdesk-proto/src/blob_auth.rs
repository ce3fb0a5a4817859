//! Authentication of blob-store requests, and blob ids (DESIGN.md §7).
//!
//! The signaling server keeps encrypted recording segments as opaque blobs over plain HTTP
//! on its listener (`POST /blobs?owner=<key>`, `GET /blobs`, `GET|DELETE /blobs/<id>`).
//! Every request carries
//!
//! ```text
//! Authorization: Sealdesk <key>.<ts>.<nonce>.<sig>
//! ```
//!
//! with `key` the device's 32-byte Ed25519 key, `nonce` 16 random bytes and `sig` the
//! 64-byte signature, each base64url without padding, and `ts` unix seconds in decimal.
//! The signature covers [`signing_bytes`]:
//!
//! ```text
//! "sealdesk/v1 blob-request" ‖ LP(origin) ‖ LP(method) ‖ LP(path-and-query as sent)
//!                            ‖ LP(ts as u64 BE) ‖ LP(nonce) ‖ LP(SHA-256(body))   LP(x) = u32 BE length ‖ x
//! ```
//!
//! `origin` is the server the device addressed (`host[:port]`, as normalised for
//! registration by [`crate::signaling::normalize_origin`]): a malicious server cannot
//! replay a device's request to another server that knows its own name (its configured
//! public origin), as for registration.
//!
//! A server accepts a request only if the key is a registered device, the signature
//! verifies, `ts` is within [`MAX_CLOCK_SKEW_SECS`] of its clock
//! ([`BlobAuth::check_fresh`]), and it has not seen `(key, nonce)` in the last
//! [`REPLAY_WINDOW_SECS`]. This module is the sans-IO part: it reads no clock and draws no
//! randomness; the caller passes `now` and the nonce.
//!
//! ```
//! use sealdesk_proto::blob_auth::{BlobAuth, BodyDigest, RequestNonce, Signed};
//! use sealdesk_proto::{DeviceKey, SignatureBytes};
//! use ed25519_dalek::Signer as _;
//!
//! let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
//! let key = DeviceKey::from_verifying_key(&sk.verifying_key());
//! let body = b"an age file";
//! // The device: the clock and the nonce come from the shell.
//! let request = Signed {
//!     origin: "sealdesk.example:8443",
//!     method: "POST",
//!     path_and_query: "/blobs?owner=abc",
//!     body: &BodyDigest::of(body),
//! };
//! let auth = BlobAuth::sign(key, 1_700_000_000, RequestNonce([1; 16]), request, |m| {
//!     SignatureBytes(sk.sign(m).to_bytes())
//! });
//! let header = auth.to_header();
//! // The server: parse, check the clock, check the signature over what arrived.
//! let got = BlobAuth::parse_header(&header)?;
//! got.check_fresh(1_700_000_030)?;
//! got.verify(request)?;
//! let other = BodyDigest::of(b"other");
//! assert!(got.verify(Signed { body: &other, ..request }).is_err());
//! assert!(got.verify(Signed { origin: "evil.example", ..request }).is_err());
//! # Ok::<(), sealdesk_proto::blob_auth::BlobAuthError>(())
//! ```

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use sha2::Digest as _;

use crate::types::{DeviceKey, SignatureBytes};

/// The domain-separation label of a blob-request signature.
pub const BLOB_REQUEST_LABEL: &[u8] = b"sealdesk/v1 blob-request";

/// The `Authorization` scheme name.
pub const SCHEME: &str = "Sealdesk";

/// How far a request's timestamp may be from the server's clock, either way.
pub const MAX_CLOCK_SKEW_SECS: u64 = 120;

/// How long a server remembers a `(key, nonce)` pair. It must exceed the whole span in
/// which a timestamp passes [`BlobAuth::check_fresh`] (twice the skew), so a request can
/// never be replayed while its timestamp is still accepted.
pub const REPLAY_WINDOW_SECS: u64 = 300;

const _: () = assert!(REPLAY_WINDOW_SECS > 2 * MAX_CLOCK_SKEW_SECS);

/// The longest `Authorization` value accepted (a well-formed one is about 185 bytes).
pub const MAX_HEADER_BYTES: usize = 256;

/// Length in characters of a base64url (no padding) device key.
pub const KEY_CHARS: usize = 43;
const NONCE_CHARS: usize = 22;
const SIGNATURE_CHARS: usize = 86;
const MAX_TS_DIGITS: usize = 20;

/// The 16 random bytes that make a signed request unique.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestNonce(pub [u8; 16]);

impl fmt::Debug for RequestNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestNonce({})", B64URL.encode(self.0))
    }
}

/// The SHA-256 of a request body.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BodyDigest(pub [u8; 32]);

impl BodyDigest {
    /// The digest of a whole body.
    pub fn of(body: &[u8]) -> Self {
        Self(sha2::Sha256::digest(body).into())
    }
}

impl fmt::Debug for BodyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BodyDigest({})", hex(&self.0))
    }
}

/// Computes a [`BodyDigest`] over a body that arrives in pieces.
#[derive(Clone, Default)]
pub struct BodyHasher(sha2::Sha256);

impl BodyHasher {
    /// A hasher that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next piece of the body.
    pub fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    /// The digest of everything fed.
    pub fn finish(self) -> BodyDigest {
        BodyDigest(self.0.finalize().into())
    }
}

impl fmt::Debug for BodyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BodyHasher")
    }
}

/// What is wrong with an `Authorization` header that cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedHeader {
    /// Longer than [`MAX_HEADER_BYTES`].
    #[error("longer than {MAX_HEADER_BYTES} bytes")]
    TooLong,
    /// Not `Sealdesk ` followed by the credentials.
    #[error("expected the scheme \"Sealdesk\" then a space")]
    Scheme,
    /// Not four fields separated by dots.
    #[error("expected four dot-separated fields <key>.<ts>.<nonce>.<sig>")]
    Fields,
    /// The key is not base64url of 32 bytes.
    #[error("key is not base64url (no padding) of 32 bytes")]
    KeyEncoding,
    /// The key is 32 bytes but not a usable Ed25519 public key.
    #[error("key is not a valid Ed25519 public key")]
    KeyPoint,
    /// The timestamp is not decimal unix seconds.
    #[error("timestamp is not unix seconds in decimal")]
    Timestamp,
    /// The nonce is not base64url of 16 bytes.
    #[error("nonce is not base64url (no padding) of 16 bytes")]
    Nonce,
    /// The signature is not base64url of 64 bytes.
    #[error("signature is not base64url (no padding) of 64 bytes")]
    Signature,
}

/// A blob request that is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobAuthError {
    /// Malformed input: the header cannot be parsed.
    #[error(
        "malformed Authorization header: {0} (expected \"Sealdesk <key>.<ts>.<nonce>.<sig>\")"
    )]
    Malformed(#[from] MalformedHeader),
    /// The timestamp is too far from the verifier's clock.
    #[error(
        "request timestamp is {secs} s {} the server's clock (at most {MAX_CLOCK_SKEW_SECS} s is allowed): check this device's clock",
        if *.ahead { "ahead of" } else { "behind" }
    )]
    ClockSkew {
        /// Whether the request's clock is ahead of the verifier's.
        ahead: bool,
        /// By how many seconds.
        secs: u64,
    },
    /// The signature does not cover this request by this key.
    #[error("request signature does not verify: it must cover the method, the path and query as sent, the timestamp, the nonce and the body's SHA-256, signed by the key in the header")]
    BadSignature,
}

/// The credentials of one blob request, as carried in its `Authorization` header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BlobAuth {
    /// The requesting device.
    pub key: DeviceKey,
    /// When the request was made, unix seconds by the device's clock.
    pub timestamp: u64,
    /// Makes the request unique.
    pub nonce: RequestNonce,
    /// `Sig(key, signing_bytes(..))`.
    pub signature: SignatureBytes,
}

impl fmt::Debug for BlobAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobAuth")
            .field("key", &self.key)
            .field("timestamp", &self.timestamp)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// The exact bytes a device signs for a blob request (see the module documentation).
/// `path_and_query` is the request target exactly as sent, e.g. `/blobs?owner=…`.
pub fn signing_bytes(
    origin: &str,
    method: &str,
    path_and_query: &str,
    timestamp: u64,
    nonce: &RequestNonce,
    body: &BodyDigest,
) -> Vec<u8> {
    let ts = timestamp.to_be_bytes();
    let parts: [&[u8]; 6] = [
        origin.as_bytes(),
        method.as_bytes(),
        path_and_query.as_bytes(),
        &ts,
        &nonce.0,
        &body.0,
    ];
    let len = BLOB_REQUEST_LABEL.len() + parts.iter().map(|p| 4 + p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(BLOB_REQUEST_LABEL);
    for part in parts {
        // Method and target come from an HTTP request line, far below 4 GiB; saturate
        // rather than wrap if a caller passes something absurd (it then cannot verify).
        let n = u32::try_from(part.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// What a signature covers of a request, besides time and nonce.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// The server addressed (`host[:port]`, normalised).
    pub origin: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// The request target as sent.
    pub path_and_query: &'a str,
    /// The body's digest.
    pub body: &'a BodyDigest,
}

impl BlobAuth {
    /// Signs a request. `sign` is the device's Ed25519 signing function.
    pub fn sign(
        key: DeviceKey,
        timestamp: u64,
        nonce: RequestNonce,
        request: Signed<'_>,
        sign: impl FnOnce(&[u8]) -> SignatureBytes,
    ) -> Self {
        let signature = sign(&signing_bytes(
            request.origin,
            request.method,
            request.path_and_query,
            timestamp,
            &nonce,
            request.body,
        ));
        Self {
            key,
            timestamp,
            nonce,
            signature,
        }
    }

    /// The `Authorization` header value: `Sealdesk <key>.<ts>.<nonce>.<sig>`.
    pub fn to_header(&self) -> String {
        format!(
            "{SCHEME} {}.{}.{}.{}",
            B64URL.encode(self.key.as_bytes()),
            self.timestamp,
            B64URL.encode(self.nonce.0),
            B64URL.encode(self.signature.0),
        )
    }

    /// Parses an `Authorization` header value. Never panics, whatever the input.
    pub fn parse_header(value: &str) -> Result<Self, BlobAuthError> {
        if value.len() > MAX_HEADER_BYTES {
            return Err(MalformedHeader::TooLong.into());
        }
        let rest = value
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(MalformedHeader::Scheme)?;
        let mut fields = rest.split('.');
        let (Some(key), Some(ts), Some(nonce), Some(sig), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(MalformedHeader::Fields.into());
        };
        let key = decode_key(key)?;
        if ts.is_empty() || ts.len() > MAX_TS_DIGITS || !ts.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MalformedHeader::Timestamp.into());
        }
        let timestamp = ts.parse().map_err(|_| MalformedHeader::Timestamp)?;
        let nonce = decode_fixed::<16>(nonce, NONCE_CHARS).ok_or(MalformedHeader::Nonce)?;
        let sig = decode_fixed::<64>(sig, SIGNATURE_CHARS).ok_or(MalformedHeader::Signature)?;
        Ok(Self {
            key,
            timestamp,
            nonce: RequestNonce(nonce),
            signature: SignatureBytes(sig),
        })
    }

    /// Checks the timestamp is within [`MAX_CLOCK_SKEW_SECS`] of `now_unix_secs`.
    pub fn check_fresh(&self, now_unix_secs: u64) -> Result<(), BlobAuthError> {
        let (ahead, secs) = if self.timestamp >= now_unix_secs {
            (true, self.timestamp - now_unix_secs)
        } else {
            (false, now_unix_secs - self.timestamp)
        };
        if secs > MAX_CLOCK_SKEW_SECS {
            return Err(BlobAuthError::ClockSkew { ahead, secs });
        }
        Ok(())
    }

    /// Checks the signature covers this request (strict Ed25519 verification).
    pub fn verify(&self, request: Signed<'_>) -> Result<(), BlobAuthError> {
        let msg = signing_bytes(
            request.origin,
            request.method,
            request.path_and_query,
            self.timestamp,
            &self.nonce,
            request.body,
        );
        if self.key.verify_strict(&msg, &self.signature) {
            Ok(())
        } else {
            Err(BlobAuthError::BadSignature)
        }
    }
}

/// A device key as base64url without padding (43 characters), as in the `owner` query
/// parameter and blob listings.
pub fn encode_key(key: &DeviceKey) -> String {
    B64URL.encode(key.as_bytes())
}

/// Parses a device key from base64url without padding; it must be a valid Ed25519 point.
pub fn decode_key(s: &str) -> Result<DeviceKey, MalformedHeader> {
    let bytes = decode_fixed::<32>(s, KEY_CHARS).ok_or(MalformedHeader::KeyEncoding)?;
    DeviceKey::try_from_bytes(bytes).map_err(|_| MalformedHeader::KeyPoint)
}

/// Decodes canonical base64url (no padding) of exactly `N` bytes, checking the length first.
fn decode_fixed<const N: usize>(s: &str, chars: usize) -> Option<[u8; N]> {
    if s.len() != chars {
        return None;
    }
    B64URL.decode(s).ok()?.try_into().ok()
}

/// A blob's id: 16 random bytes the server chose, written as 32 lowercase hex digits.
///
/// Ids are the only thing a blob's file name is made from, so [`BlobId::parse`] accepts
/// exactly one spelling of each id and nothing else.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 16]);

/// A string that is not a blob id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("blob id must be exactly 32 lowercase hex digits (0-9, a-f)")]
pub struct InvalidBlobId;

impl BlobId {
    /// Parses exactly 32 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Self, InvalidBlobId> {
        let b = s.as_bytes();
        if b.len() != 32 {
            return Err(InvalidBlobId);
        }
        let mut out = [0u8; 16];
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            let [hi, lo] = pair else {
                return Err(InvalidBlobId);
            };
            *o = (lower_hex(*hi).ok_or(InvalidBlobId)? << 4)
                | lower_hex(*lo).ok_or(InvalidBlobId)?;
        }
        Ok(Self(out))
    }

    /// The 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl std::str::FromStr for BlobId {
    type Err = InvalidBlobId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.to_hex())
    }
}

fn lower_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer as _;
    use proptest::prelude::*;

    fn signer(seed: u8) -> (ed25519_dalek::SigningKey, DeviceKey) {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let key = DeviceKey::from_verifying_key(&sk.verifying_key());
        (sk, key)
    }

    fn signed(seed: u8, method: &str, target: &str, ts: u64, body: &[u8]) -> BlobAuth {
        let (sk, key) = signer(seed);
        BlobAuth::sign(
            key,
            ts,
            RequestNonce([9; 16]),
            Signed {
                origin: "o.example",
                method,
                path_and_query: target,
                body: &BodyDigest::of(body),
            },
            |m| SignatureBytes(sk.sign(m).to_bytes()),
        )
    }

    #[test]
    fn signing_bytes_are_the_documented_layout() {
        let nonce = RequestNonce([0xaa; 16]);
        let body = BodyDigest::of(b"");
        let got = signing_bytes(
            "o.example",
            "GET",
            "/blobs",
            0x0102_0304_0506_0708,
            &nonce,
            &body,
        );
        let mut want = b"sealdesk/v1 blob-request".to_vec();
        want.extend_from_slice(&[0, 0, 0, 9]);
        want.extend_from_slice(b"o.example");
        want.extend_from_slice(&[0, 0, 0, 3]);
        want.extend_from_slice(b"GET");
        want.extend_from_slice(&[0, 0, 0, 6]);
        want.extend_from_slice(b"/blobs");
        want.extend_from_slice(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        want.extend_from_slice(&[0, 0, 0, 16]);
        want.extend_from_slice(&[0xaa; 16]);
        want.extend_from_slice(&[0, 0, 0, 32]);
        // SHA-256 of the empty string.
        want.extend_from_slice(&[
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
            0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
            0x78, 0x52, 0xb8, 0x55,
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn a_request_signed_for_one_server_does_not_verify_at_another() {
        let auth = signed(1, "GET", "/blobs", 5, b"");
        let body = BodyDigest::of(b"");
        assert!(auth
            .verify(Signed {
                origin: "o.example",
                method: "GET",
                path_and_query: "/blobs",
                body: &body
            })
            .is_ok());
        assert_eq!(
            auth.verify(Signed {
                origin: "other.example",
                method: "GET",
                path_and_query: "/blobs",
                body: &body
            }),
            Err(BlobAuthError::BadSignature)
        );
    }

    #[test]
    fn header_round_trips_and_verifies() {
        let auth = signed(1, "POST", "/blobs?owner=x", 1_700_000_000, b"body");
        let header = auth.to_header();
        assert!(header.starts_with("Sealdesk "));
        assert!(header.len() <= MAX_HEADER_BYTES);
        let back = BlobAuth::parse_header(&header).unwrap();
        assert_eq!(back, auth);
        back.verify(Signed {
            origin: "o.example",
            method: "POST",
            path_and_query: "/blobs?owner=x",
            body: &BodyDigest::of(b"body"),
        })
        .unwrap();
    }

    #[test]
    fn every_signed_field_is_bound() {
        let auth = signed(1, "POST", "/blobs?owner=x", 1_700_000_000, b"body");
        let body = BodyDigest::of(b"body");
        let bad = Err(BlobAuthError::BadSignature);
        assert_eq!(
            auth.verify(Signed {
                origin: "o.example",
                method: "GET",
                path_and_query: "/blobs?owner=x",
                body: &body
            }),
            bad
        );
        assert_eq!(
            auth.verify(Signed {
                origin: "o.example",
                method: "POST",
                path_and_query: "/blobs?owner=y",
                body: &body
            }),
            bad
        );
        assert_eq!(
            auth.verify(Signed {
                origin: "o.example",
                method: "POST",
                path_and_query: "/blobs?owner=x",
                body: &BodyDigest::of(b"bodz")
            }),
            bad
        );
        let mut t = auth;
        t.timestamp += 1;
        assert_eq!(
            t.verify(Signed {
                origin: "o.example",
                method: "POST",
                path_and_query: "/blobs?owner=x",
                body: &body
            }),
            bad
        );
        let mut n = auth;
        n.nonce.0[0] ^= 1;
        assert_eq!(
            n.verify(Signed {
                origin: "o.example",
                method: "POST",
                path_and_query: "/blobs?owner=x",
                body: &body
            }),
            bad
        );
        let mut k = auth;
        k.key = signer(2).1;
        assert_eq!(
            k.verify(Signed {
                origin: "o.example",
                method: "POST",
                path_and_query: "/blobs?owner=x",
                body: &body
            }),
            bad
        );
    }

    #[test]
    fn hasher_in_pieces_equals_whole() {
        let mut h = BodyHasher::new();
        h.update(b"an age ");
        h.update(b"");
        h.update(b"file");
        assert_eq!(h.finish(), BodyDigest::of(b"an age file"));
    }

    #[test]
    fn freshness_is_symmetric_and_names_the_direction() {
        let auth = signed(1, "GET", "/blobs", 1000, b"");
        auth.check_fresh(1000).unwrap();
        auth.check_fresh(1120).unwrap();
        auth.check_fresh(880).unwrap();
        assert_eq!(
            auth.check_fresh(1121),
            Err(BlobAuthError::ClockSkew {
                ahead: false,
                secs: 121
            })
        );
        let e = auth.check_fresh(879).unwrap_err();
        assert_eq!(
            e,
            BlobAuthError::ClockSkew {
                ahead: true,
                secs: 121
            }
        );
        assert!(e.to_string().contains("121 s ahead of"), "{e}");
        let far = signed(1, "GET", "/blobs", u64::MAX, b"");
        assert!(far.check_fresh(0).is_err());
        assert!(signed(1, "GET", "/blobs", 0, b"")
            .check_fresh(u64::MAX)
            .is_err());
    }

    #[test]
    fn malformed_headers_name_what_is_wrong() {
        let good = signed(1, "GET", "/blobs", 1000, b"").to_header();
        let parts: Vec<&str> = good["Sealdesk ".len()..].split('.').collect();
        let with = |i: usize, v: &str| {
            let mut p = parts.clone();
            p[i] = v;
            format!("Sealdesk {}", p.join("."))
        };
        let m = |s: &str| BlobAuth::parse_header(s).unwrap_err();
        use MalformedHeader as M;
        let cases: Vec<(String, MalformedHeader)> = vec![
            ("Bearer abc".into(), M::Scheme),
            (good.replacen("Sealdesk ", "sealdesk ", 1), M::Scheme),
            (good.replacen("Sealdesk ", "Sealdesk", 1), M::Scheme),
            ("Sealdesk a.b.c".into(), M::Fields),
            (format!("{good}.x"), M::Fields),
            (with(0, "AAAA"), M::KeyEncoding),
            (with(0, &"A".repeat(43)), M::KeyPoint), // all-zero: small order
            (with(1, ""), M::Timestamp),
            (with(1, "-5"), M::Timestamp),
            (with(1, "+5"), M::Timestamp),
            (with(1, "99999999999999999999"), M::Timestamp),
            (with(2, "AAAA"), M::Nonce),
            (with(3, &parts[3][..85]), M::Signature),
            (
                format!("{good}{}", "A".repeat(MAX_HEADER_BYTES)),
                M::TooLong,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(m(&input), BlobAuthError::Malformed(want), "{input}");
        }
        // Standard (not URL-safe) alphabet and padding are refused.
        let std_nonce = format!("{}+/", &parts[2][..20]);
        assert_eq!(m(&with(2, &std_nonce)), M::Nonce.into());
        assert_eq!(m(&with(2, &format!("{}==", parts[2]))), M::Nonce.into());
    }

    #[test]
    fn blob_ids_have_one_spelling() {
        let id = BlobId([0xab; 16]);
        assert_eq!(id.to_hex(), "ab".repeat(16));
        assert_eq!(BlobId::parse(&id.to_hex()), Ok(id));
        assert_eq!(id.to_string().parse::<BlobId>(), Ok(id));
        for bad in [
            "AB".repeat(16),
            "ab".repeat(15),
            "ab".repeat(17),
            format!("{}g", "a".repeat(31)),
            "../x".into(),
            "../../etc/passwd".into(),
            format!("{}/", "a".repeat(31)),
            String::new(),
            "é".repeat(16),
        ] {
            assert_eq!(BlobId::parse(&bad), Err(InvalidBlobId), "{bad}");
        }
    }

    #[test]
    fn keys_round_trip_in_base64url() {
        let (_, key) = signer(3);
        let s = encode_key(&key);
        assert_eq!(s.len(), KEY_CHARS);
        assert_eq!(decode_key(&s), Ok(key));
        assert_eq!(decode_key(&s[1..]), Err(MalformedHeader::KeyEncoding));
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_panic(s in ".{0,300}") {
            let _ = BlobAuth::parse_header(&s);
            let _ = BlobId::parse(&s);
            let _ = decode_key(&s);
        }

        #[test]
        fn near_miss_headers_never_panic(
            key in "[A-Za-z0-9_=+/-]{0,50}",
            ts in "[0-9+-]{0,25}",
            nonce in "[A-Za-z0-9_=+/-]{0,30}",
            sig in "[A-Za-z0-9_=+/-]{0,90}",
            sep in "[. ]",
        ) {
            let h = format!("Sealdesk {key}{sep}{ts}.{nonce}.{sig}");
            if let Ok(a) = BlobAuth::parse_header(&h) {
                prop_assert_eq!(BlobAuth::parse_header(&a.to_header()), Ok(a));
            }
        }

        #[test]
        fn signed_headers_round_trip(seed in 1u8.., ts in any::<u64>(), nonce in any::<[u8; 16]>()) {
            let (sk, key) = signer(seed);
            let a = BlobAuth::sign(key, ts, RequestNonce(nonce), Signed { origin: "o.example", method: "DELETE", path_and_query: "/blobs/x", body: &BodyDigest::of(b"") }, |m| SignatureBytes(sk.sign(m).to_bytes()));
            let back = BlobAuth::parse_header(&a.to_header()).unwrap();
            prop_assert_eq!(back, a);
            let ok = back
                .verify(Signed { origin: "o.example", method: "DELETE", path_and_query: "/blobs/x", body: &BodyDigest::of(b"") })
                .is_ok();
            prop_assert!(ok);
        }
    }
}
