//! The handshake messages on the wire (DESIGN.md §4).
//!
//! Each message is one envelope body: a tag byte, then fixed-order fields. Lists have a
//! `u8` count, byte strings a `u16` length; everything is bounded and [`decode`]d from a
//! borrowed slice into a `Result`. Tags: `0x01..0x03` attended (A1–A3), `0x11..0x13`
//! unattended (B1–B3), `0x20` sealed signaling.

use sealdesk_proto::{DeviceKey, RoutingNumber, SignatureBytes};

use crate::negotiate::{Choice, Offer};
use crate::sdp::DtlsFingerprint;
use crate::session::ViewerKind;
use crate::wire::{DecodeError, Reader, Writer};

/// Tag of A1.
pub const TAG_A1: u8 = 0x01;
/// Tag of A2.
pub const TAG_A2: u8 = 0x02;
/// Tag of A3.
pub const TAG_A3: u8 = 0x03;
/// Tag of B1.
pub const TAG_B1: u8 = 0x11;
/// Tag of B2.
pub const TAG_B2: u8 = 0x12;
/// Tag of B3.
pub const TAG_B3: u8 = 0x13;
/// Tag of a sealed signaling message.
pub const TAG_SEALED: u8 = 0x20;
/// Tag of an (unauthenticated, advisory) abort.
pub const TAG_ABORT: u8 = 0x7f;

/// Length of a SPAKE2 message (side byte + Ed25519 point).
pub const SPAKE2_MSG_LEN: usize = 33;
/// Most bytes of an encrypted identity.
pub const MAX_ENCRYPTED_ID: usize = 512;

/// A1: the viewer starts an attended handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct A1 {
    /// The viewer's versions and suites, best first.
    pub offer: Offer,
    /// The host's routing number, as typed in the code.
    pub routing: RoutingNumber,
    /// The viewer's nonce.
    pub n_v: [u8; 32],
    /// SPAKE2 message `X`.
    pub x: [u8; SPAKE2_MSG_LEN],
    /// The viewer's DTLS certificate fingerprint for this session.
    pub fp_v: DtlsFingerprint,
}

/// A2: the host answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct A2 {
    /// The host's choice and lists.
    pub choice: Choice,
    /// The host's nonce.
    pub n_h: [u8; 32],
    /// SPAKE2 message `Y`.
    pub y: [u8; SPAKE2_MSG_LEN],
    /// The host's DTLS certificate fingerprint.
    pub fp_h: DtlsFingerprint,
    /// The host's identity, encrypted under `k_h2v`.
    pub id_h: Vec<u8>,
    /// `HMAC(kc_h, "…conf h" ‖ TH1 ‖ H(id_h))`.
    pub conf_h: [u8; 32],
}

/// A3: the viewer proves the code and its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct A3 {
    /// The viewer's identity, encrypted under `k_v2h`.
    pub id_v: Vec<u8>,
    /// `HMAC(kc_v, "…conf v" ‖ TH1 ‖ conf_h ‖ H(id_v))`.
    pub conf_v: [u8; 32],
}

/// B1: the viewer starts an unattended handshake with a paired host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct B1 {
    /// The viewer's versions and suites.
    pub offer: Offer,
    /// The host's routing number.
    pub routing: RoutingNumber,
    /// The viewer's nonce.
    pub n_v: [u8; 32],
    /// The viewer's X25519 ephemeral.
    pub e_v: [u8; 32],
    /// The viewer's DTLS fingerprint.
    pub fp_v: DtlsFingerprint,
}

/// B2: the host answers with its encrypted, signed identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct B2 {
    /// The host's choice and lists.
    pub choice: Choice,
    /// The host's nonce.
    pub n_h: [u8; 32],
    /// The host's X25519 ephemeral.
    pub e_h: [u8; 32],
    /// The host's DTLS fingerprint.
    pub fp_h: DtlsFingerprint,
    /// `AEAD(k_hs_h2v, {IK_h, label, Sig, MAC})`.
    pub enc_h: Vec<u8>,
}

/// B3: the viewer's encrypted, signed identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct B3 {
    /// `AEAD(k_hs_v2h, {IK_v, label, requested permissions, Sig, MAC})`.
    pub enc_v: Vec<u8>,
}

/// A sealed signaling message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedWire {
    /// The message type (in the clear, authenticated as AAD).
    pub kind: u8,
    /// Strictly increasing per direction.
    pub seq: u64,
    /// AEAD ciphertext and tag.
    pub ct: Vec<u8>,
}

/// Why a side ended a handshake run. Sent in the clear before any key is confirmed, so
/// anyone on the path can forge one: it only ends a run early (which dropping messages does
/// too) and is shown to people as what "the other device says", never as proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbortReason {
    /// Key confirmation failed on the sender's side.
    ConfirmationFailed,
    /// The code has expired.
    CodeExpired,
    /// The code was already used.
    CodeUsed,
    /// The code was tried 3 times.
    CodeExhausted,
    /// Another run with the code is in flight.
    Busy,
    /// The message named another host.
    WrongHost,
    /// No version or suite in common.
    NoCommonProtocol,
    /// A message could not be parsed.
    Malformed,
    /// Anything else, including reasons this version does not know.
    Other,
}

impl AbortReason {
    /// The wire byte.
    pub const fn byte(self) -> u8 {
        match self {
            AbortReason::Other => 0,
            AbortReason::ConfirmationFailed => 1,
            AbortReason::CodeExpired => 2,
            AbortReason::CodeUsed => 3,
            AbortReason::CodeExhausted => 4,
            AbortReason::Busy => 5,
            AbortReason::WrongHost => 6,
            AbortReason::NoCommonProtocol => 7,
            AbortReason::Malformed => 8,
        }
    }

    /// The reason for a wire byte (unknown bytes are [`AbortReason::Other`]).
    pub const fn from_byte(b: u8) -> Self {
        match b {
            1 => AbortReason::ConfirmationFailed,
            2 => AbortReason::CodeExpired,
            3 => AbortReason::CodeUsed,
            4 => AbortReason::CodeExhausted,
            5 => AbortReason::Busy,
            6 => AbortReason::WrongHost,
            7 => AbortReason::NoCommonProtocol,
            8 => AbortReason::Malformed,
            _ => AbortReason::Other,
        }
    }

    /// In words.
    pub const fn text(self) -> &'static str {
        match self {
            AbortReason::ConfirmationFailed => {
                "wrong code, or someone tampered with the connection"
            }
            AbortReason::CodeExpired => "this code has expired; ask for a new one",
            AbortReason::CodeUsed => "this code was already used; ask for a new one",
            AbortReason::CodeExhausted => {
                "this code was tried 3 times and is now locked; ask for a new one"
            }
            AbortReason::Busy => {
                "another connection attempt with this code is in progress; try again in a minute"
            }
            AbortReason::WrongHost => "the code is for another host",
            AbortReason::NoCommonProtocol => {
                "no protocol version or cipher suite in common; update sealdesk"
            }
            AbortReason::Malformed => "a handshake message was malformed",
            AbortReason::Other => "no reason given",
        }
    }
}

/// An abort: `0x7f ‖ reason:u8`. The byte is kept as sent so the encoding is canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort {
    /// The reason byte as sent.
    pub reason_byte: u8,
}

impl Abort {
    /// An abort for `reason`.
    pub const fn new(reason: AbortReason) -> Self {
        Self {
            reason_byte: reason.byte(),
        }
    }

    /// The reason.
    pub const fn reason(self) -> AbortReason {
        AbortReason::from_byte(self.reason_byte)
    }

    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        vec![TAG_ABORT, self.reason_byte]
    }
}

/// Any message of the auth protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// Attended 1.
    A1(A1),
    /// Attended 2.
    A2(A2),
    /// Attended 3.
    A3(A3),
    /// Unattended 1.
    B1(B1),
    /// Unattended 2.
    B2(B2),
    /// Unattended 3.
    B3(B3),
    /// Sealed signaling.
    Sealed(SealedWire),
    /// An advisory abort.
    Abort(Abort),
}

/// The largest sealed ciphertext (fits an envelope body with room to spare).
pub const MAX_SEALED_CT: usize = 40 * 1024;

fn routing(r: &mut Reader<'_>) -> Result<RoutingNumber, DecodeError> {
    RoutingNumber::new(u64::from(r.u32("routing number")?))
        .map_err(|_| DecodeError::Invalid("routing number"))
}

fn fp(r: &mut Reader<'_>, field: &'static str) -> Result<DtlsFingerprint, DecodeError> {
    Ok(DtlsFingerprint(r.array(field)?))
}

impl A1 {
    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(TAG_A1);
        self.offer.write(&mut w);
        w.u32(self.routing.get())
            .raw(&self.n_v)
            .raw(&self.x)
            .raw(&self.fp_v.0);
        w.buf
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            offer: Offer::read(r)?,
            routing: routing(r)?,
            n_v: r.array("n_v")?,
            x: r.array("X")?,
            fp_v: fp(r, "fp_v")?,
        })
    }
}

impl A2 {
    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(TAG_A2);
        self.choice.write(&mut w);
        w.raw(&self.n_h)
            .raw(&self.y)
            .raw(&self.fp_h.0)
            .bytes16(&self.id_h)
            .raw(&self.conf_h);
        w.buf
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            choice: Choice::read(r)?,
            n_h: r.array("n_h")?,
            y: r.array("Y")?,
            fp_h: fp(r, "fp_h")?,
            id_h: r.bytes16("id_h", MAX_ENCRYPTED_ID)?.to_vec(),
            conf_h: r.array("conf_h")?,
        })
    }
}

impl A3 {
    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(TAG_A3).bytes16(&self.id_v).raw(&self.conf_v);
        w.buf
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id_v: r.bytes16("id_v", MAX_ENCRYPTED_ID)?.to_vec(),
            conf_v: r.array("conf_v")?,
        })
    }
}

impl B1 {
    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(TAG_B1);
        self.offer.write(&mut w);
        w.u32(self.routing.get())
            .raw(&self.n_v)
            .raw(&self.e_v)
            .raw(&self.fp_v.0);
        w.buf
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            offer: Offer::read(r)?,
            routing: routing(r)?,
            n_v: r.array("n_v")?,
            e_v: r.array("e_v")?,
            fp_v: fp(r, "fp_v")?,
        })
    }
}

impl B2 {
    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(TAG_B2);
        self.choice.write(&mut w);
        w.raw(&self.n_h)
            .raw(&self.e_h)
            .raw(&self.fp_h.0)
            .bytes16(&self.enc_h);
        w.buf
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            choice: Choice::read(r)?,
            n_h: r.array("n_h")?,
            e_h: r.array("e_h")?,
            fp_h: fp(r, "fp_h")?,
            enc_h: r.bytes16("enc_h", MAX_ENCRYPTED_ID)?.to_vec(),
        })
    }
}

impl B3 {
    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(TAG_B3).bytes16(&self.enc_v);
        w.buf
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            enc_v: r.bytes16("enc_v", MAX_ENCRYPTED_ID)?.to_vec(),
        })
    }
}

impl SealedWire {
    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(TAG_SEALED)
            .u8(self.kind)
            .u64(self.seq)
            .bytes16(&self.ct);
        w.buf
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            kind: r.u8("kind")?,
            seq: r.u64("seq")?,
            ct: r.bytes16("ciphertext", MAX_SEALED_CT)?.to_vec(),
        })
    }
}

impl Message {
    /// Encodes any message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::A1(m) => m.encode(),
            Message::A2(m) => m.encode(),
            Message::A3(m) => m.encode(),
            Message::B1(m) => m.encode(),
            Message::B2(m) => m.encode(),
            Message::B3(m) => m.encode(),
            Message::Sealed(m) => m.encode(),
            Message::Abort(m) => m.encode(),
        }
    }
}

/// Decodes any auth message. Never panics; every failure names the field.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader::new(bytes);
    let tag = r.u8("type")?;
    let msg = match tag {
        TAG_A1 => Message::A1(A1::read(&mut r)?),
        TAG_A2 => Message::A2(A2::read(&mut r)?),
        TAG_A3 => Message::A3(A3::read(&mut r)?),
        TAG_B1 => Message::B1(B1::read(&mut r)?),
        TAG_B2 => Message::B2(B2::read(&mut r)?),
        TAG_B3 => Message::B3(B3::read(&mut r)?),
        TAG_SEALED => Message::Sealed(SealedWire::read(&mut r)?),
        TAG_ABORT => Message::Abort(Abort {
            reason_byte: r.u8("reason")?,
        }),
        got => {
            return Err(DecodeError::UnexpectedTag {
                got,
                expected: "an auth message",
            })
        }
    };
    r.finish()?;
    Ok(msg)
}

/// Decodes a message that must have one particular tag.
pub(crate) fn decode_expect<T>(
    bytes: &[u8],
    tag: u8,
    expected: &'static str,
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut r = Reader::new(bytes);
    r.tag(tag, expected)?;
    let v = read(&mut r)?;
    r.finish()?;
    Ok(v)
}

pub(crate) fn decode_a1(b: &[u8]) -> Result<A1, DecodeError> {
    decode_expect(b, TAG_A1, "A1", A1::read)
}
pub(crate) fn decode_a2(b: &[u8]) -> Result<A2, DecodeError> {
    decode_expect(b, TAG_A2, "A2", A2::read)
}
pub(crate) fn decode_a3(b: &[u8]) -> Result<A3, DecodeError> {
    decode_expect(b, TAG_A3, "A3", A3::read)
}
pub(crate) fn decode_b1(b: &[u8]) -> Result<B1, DecodeError> {
    decode_expect(b, TAG_B1, "B1", B1::read)
}
pub(crate) fn decode_b2(b: &[u8]) -> Result<B2, DecodeError> {
    decode_expect(b, TAG_B2, "B2", B2::read)
}
pub(crate) fn decode_b3(b: &[u8]) -> Result<B3, DecodeError> {
    decode_expect(b, TAG_B3, "B3", B3::read)
}
pub(crate) fn decode_abort(b: &[u8]) -> Result<Abort, DecodeError> {
    decode_expect(b, TAG_ABORT, "an abort", |r| {
        Ok(Abort {
            reason_byte: r.u8("reason")?,
        })
    })
}
pub(crate) fn decode_sealed(b: &[u8]) -> Result<SealedWire, DecodeError> {
    decode_expect(
        b,
        TAG_SEALED,
        "a sealed signaling message",
        SealedWire::read,
    )
}

/// The plaintext of an encrypted identity (inside A2/A3/B2/B3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdentityPayload {
    pub(crate) key: DeviceKey,
    pub(crate) label: String,
    /// Requested permissions (B3 only; 0 elsewhere).
    pub(crate) permissions: u16,
    pub(crate) sig: SignatureBytes,
    /// MAC over the identity (B2/B3 only; zeros elsewhere).
    pub(crate) mac: [u8; 32],
    /// What program the viewer is: one optional byte after the MAC, left out for
    /// [`ViewerKind::Native`] (so a native identity is byte for byte what it always was).
    pub(crate) kind: ViewerKind,
}

impl IdentityPayload {
    /// Encrypts this identity under `key` (nonce counter 0: each handshake key seals
    /// exactly one identity) with `aad`.
    pub(crate) fn seal(
        &self,
        suite: crate::negotiate::Suite,
        key: &crate::crypto::Secret32,
        aad: &[u8],
    ) -> Vec<u8> {
        let plain = zeroize::Zeroizing::new(self.encode());
        crate::crypto::seal(suite, key, 0, aad, &plain)
    }

    /// Decrypts and parses an identity sealed by [`IdentityPayload::seal`]. Any failure is
    /// [`crate::HandshakeError::BadIdentityProof`]: the bytes were confirmed by then, so
    /// only a broken or malicious peer gets here.
    pub(crate) fn open(
        suite: crate::negotiate::Suite,
        key: &crate::crypto::Secret32,
        aad: &[u8],
        ct: &[u8],
    ) -> Result<Self, crate::HandshakeError> {
        let plain = crate::crypto::open(suite, key, 0, aad, ct)
            .ok_or(crate::HandshakeError::BadIdentityProof)?;
        Self::decode(&plain).map_err(|_| crate::HandshakeError::BadIdentityProof)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(self.key.as_bytes())
            .short_str(&self.label)
            .u16(self.permissions)
            .raw(&self.sig.0)
            .raw(&self.mac);
        if let Some(b) = self.kind.byte() {
            w.u8(b);
        }
        w.buf
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let key = DeviceKey::try_from_bytes(r.array("identity key")?)
            .map_err(|_| DecodeError::Invalid("identity key"))?;
        let v = Self {
            key,
            label: r.short_str("label", crate::MAX_LABEL_BYTES)?,
            permissions: r.u16("permissions")?,
            sig: SignatureBytes(r.array("signature")?),
            mac: r.array("mac")?,
            kind: match r.remaining() {
                0 => ViewerKind::Native,
                _ => ViewerKind::from_byte(r.u8("viewer kind")?)
                    .ok_or(DecodeError::Invalid("viewer kind"))?,
            },
        };
        r.finish()?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(kind: ViewerKind) -> IdentityPayload {
        IdentityPayload {
            key: crate::IdentityKey::from_seed(&[7; 32]).public(),
            label: "alice".into(),
            permissions: 3,
            sig: SignatureBytes([9; 64]),
            mac: [5; 32],
            kind,
        }
    }

    #[test]
    fn viewer_kind_is_an_optional_trailing_byte() {
        let native = payload(ViewerKind::Native).encode();
        // The native form is what it always was: key, label, permissions, signature, MAC.
        assert_eq!(native.len(), 32 + 1 + 5 + 2 + 64 + 32);
        for kind in [
            ViewerKind::Native,
            ViewerKind::Browser,
            ViewerKind::ServerServedBrowser,
        ] {
            let bytes = payload(kind).encode();
            assert_eq!(IdentityPayload::decode(&bytes).unwrap().kind, kind);
        }
        let mut unknown = native.clone();
        unknown.push(9);
        assert_eq!(
            IdentityPayload::decode(&unknown).err(),
            Some(DecodeError::Invalid("viewer kind"))
        );
        let mut two = payload(ViewerKind::Browser).encode();
        two.push(1);
        assert!(matches!(
            IdentityPayload::decode(&two),
            Err(DecodeError::TrailingBytes(1))
        ));
    }
}
