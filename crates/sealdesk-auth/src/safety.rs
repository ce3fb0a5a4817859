//! Safety numbers: 60 digits two people compare out of band (DESIGN.md §3).
//!
//! Signal's numeric-fingerprint construction: for each party,
//! `h₀ = SHA-512(0x0000 ‖ key ‖ stable_id ‖ key)`, `hᵢ = SHA-512(hᵢ₋₁ ‖ key)` for 5200 hashes
//! in all; the first 30 bytes of the result, read as six 5-byte big-endian numbers mod 100000,
//! give 30 digits. The two halves are sorted and joined, so both devices show the same 60
//! digits. [`numeric_half`] is the general construction (checked against Signal's published
//! vectors); [`SafetyNumber::of`] is sealdesk's use of it: the key is the 32-byte Ed25519
//! identity key and the stable identifier is [`STABLE_ID`].

use std::fmt;

use sealdesk_proto::DeviceKey;
use sha2::{Digest, Sha512};

/// Signal's iteration count.
pub const ITERATIONS: u32 = 5200;
/// The stable identifier sealdesk hashes with every key (devices have no phone number).
pub const STABLE_ID: &[u8] = b"sealdesk/v1 safety-number";
/// The prefix of the QR code's text.
pub const QR_PREFIX: &str = "SEALDESK-SN1:";

/// One party's 30 digits: Signal's construction over `key` and `stable_id`.
pub fn numeric_half(key: &[u8], stable_id: &[u8], iterations: u32) -> String {
    let mut h = Sha512::new();
    h.update([0u8, 0u8]);
    h.update(key);
    h.update(stable_id);
    h.update(key);
    let mut buf = h.finalize();
    for _ in 1..iterations {
        let mut h = Sha512::new();
        h.update(buf);
        h.update(key);
        buf = h.finalize();
    }
    let mut out = String::with_capacity(30);
    for chunk in buf[..30].chunks(5) {
        let v = chunk.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
        out.push_str(&format!("{:05}", v % 100_000));
    }
    out
}

/// Joins two halves the way both sides agree on: the smaller string first.
pub fn combine(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}{b}")
    } else {
        format!("{b}{a}")
    }
}

/// The safety number of two sealdesk devices.
#[derive(Clone, PartialEq, Eq)]
pub struct SafetyNumber(String);

impl SafetyNumber {
    /// The number for this pair of identity keys (order does not matter).
    pub fn of(a: &DeviceKey, b: &DeviceKey) -> Self {
        Self(combine(
            &numeric_half(a.as_bytes(), STABLE_ID, ITERATIONS),
            &numeric_half(b.as_bytes(), STABLE_ID, ITERATIONS),
        ))
    }

    /// The 60 digits.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// Twelve groups of five digits in three lines, as people read them aloud.
    pub fn grouped(&self) -> String {
        let groups: Vec<&str> = (0..12)
            .filter_map(|i| self.0.get(i * 5..i * 5 + 5))
            .collect();
        groups
            .chunks(4)
            .map(|l| l.join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The text a QR code carries: `SEALDESK-SN1:` and the 60 digits (QR alphanumeric mode).
    pub fn qr_text(&self) -> String {
        format!("{QR_PREFIX}{}", self.0)
    }
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityKey;

    // libsignal rust/protocol/src/fingerprint.rs test constants.
    const ALICE_IDENTITY: &str =
        "0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868";
    const BOB_IDENTITY: &str = "05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b";
    const DISPLAYABLE: &str = "300354477692869396892869876765458257569162576843440918079131";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn matches_signals_published_vector() {
        let alice = numeric_half(&unhex(ALICE_IDENTITY), b"+14152222222", ITERATIONS);
        let bob = numeric_half(&unhex(BOB_IDENTITY), b"+14153333333", ITERATIONS);
        assert_eq!(alice, "300354477692869396892869876765");
        assert_eq!(combine(&alice, &bob), DISPLAYABLE);
        assert_eq!(combine(&bob, &alice), DISPLAYABLE);
        // A positive control: one iteration fewer gives a different number.
        assert_ne!(
            numeric_half(&unhex(ALICE_IDENTITY), b"+14152222222", ITERATIONS - 1),
            alice
        );
    }

    #[test]
    fn both_sides_see_the_same_number() {
        let a = IdentityKey::from_seed(&[1; 32]).public();
        let b = IdentityKey::from_seed(&[2; 32]).public();
        let c = IdentityKey::from_seed(&[3; 32]).public();
        let n = SafetyNumber::of(&a, &b);
        assert_eq!(n, SafetyNumber::of(&b, &a));
        assert_ne!(n, SafetyNumber::of(&a, &c));
        assert_eq!(n.digits().len(), 60);
        assert!(n.digits().bytes().all(|d| d.is_ascii_digit()));
        assert_eq!(n.grouped().lines().count(), 3);
        assert!(n.qr_text().starts_with("SEALDESK-SN1:"));
    }
}
