//! The primitives the handshakes call, behind small typed wrappers.
//!
//! `H` = SHA-256, `LP(x)` = u32 big-endian length ‖ x (DESIGN.md §3). Secrets are
//! [`Secret32`]s: zeroized on drop, compared in constant time, never printed.

use std::fmt;

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::negotiate::Suite;

/// A 32-byte secret (key, PRK, confirmation key). Zeroized on drop; `Debug` hides it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret32([u8; 32]);

impl Secret32 {
    /// Wraps bytes (the caller's copy should be zeroized too).
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes, for passing to a primitive.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret32(..)")
    }
}

/// Constant-time equality of two byte strings (lengths are public).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// `H(x)`.
pub(crate) fn h(x: &[u8]) -> [u8; 32] {
    Sha256::digest(x).into()
}

/// Builds `H(label ‖ LP(f1) ‖ LP(f2) ‖ …)`.
pub(crate) struct Transcript(Sha256);

impl Transcript {
    pub(crate) fn new(label: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(label);
        Self(h)
    }

    pub(crate) fn lp(mut self, field: &[u8]) -> Self {
        // Fields are bounded by message limits far below 4 GiB.
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        self.0.update(len.to_be_bytes());
        self.0.update(field);
        self
    }

    pub(crate) fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// `HKDF-Extract(salt, ikm)`: the PRK, kept as a zeroizing secret between expansions.
pub(crate) struct Prk(Secret32);

impl Prk {
    pub(crate) fn extract(salt: &[u8; 32], ikm: &[u8]) -> Self {
        let (mut prk, _) = Hkdf::<Sha256>::extract(Some(salt), ikm);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&prk);
        prk.as_mut_slice().zeroize();
        let s = Self(Secret32::new(bytes));
        bytes.zeroize();
        s
    }

    /// `HKDF-Expand(PRK, label ‖ context, 32)`.
    pub(crate) fn expand(&self, label: &str, context: &[u8]) -> Secret32 {
        let mut out = [0u8; 32];
        // A 32-byte PRK is valid, and 32 bytes of output is far below the 8160-byte limit.
        if let Ok(hk) = Hkdf::<Sha256>::from_prk(self.0.expose()) {
            let _ = hk.expand_multi_info(&[label.as_bytes(), context], &mut out);
        }
        let s = Secret32::new(out);
        out.zeroize();
        s
    }
}

/// `HMAC-SHA256(key, parts…)`.
pub(crate) fn hmac(key: &Secret32, parts: &[&[u8]]) -> [u8; 32] {
    let mut m = mac(key);
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Checks `tag == HMAC-SHA256(key, parts…)` in constant time.
pub(crate) fn hmac_verify(key: &Secret32, parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut m = mac(key);
    for p in parts {
        m.update(p);
    }
    m.verify_slice(tag).is_ok()
}

fn mac(key: &Secret32) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    match <Hmac<Sha256> as hmac::Mac>::new_from_slice(key.expose()) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    }
}

#[cold]
fn unreachable_hmac() -> Hmac<Sha256> {
    // `new_from_slice` only fails for fixed-size-key MACs; HMAC has none. Fall back to
    // an all-zero key rather than panicking (it would only make verification fail).
    <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default())
}

/// The authentication tag length of every suite.
pub const AEAD_TAG_LEN: usize = 16;

/// A 96-bit AEAD nonce made of 4 zero bytes and a 64-bit big-endian counter.
pub(crate) fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}

/// Encrypts with the suite's AEAD.
pub(crate) fn seal(suite: Suite, key: &Secret32, counter: u64, aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let n = nonce(counter);
    let payload = Payload { msg, aad };
    let out = match suite {
        Suite::ChaCha20Poly1305 => {
            ChaCha20Poly1305::new(key.expose().into()).encrypt((&n).into(), payload)
        }
        Suite::Aes256Gcm => Aes256Gcm::new(key.expose().into()).encrypt((&n).into(), payload),
    };
    // Encryption fails only for messages over 2^32 blocks; ours are bounded to 64 KiB.
    out.unwrap_or_default()
}

/// Decrypts with the suite's AEAD; `None` if the tag does not verify.
pub(crate) fn open(
    suite: Suite,
    key: &Secret32,
    counter: u64,
    aad: &[u8],
    ct: &[u8],
) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let n = nonce(counter);
    let payload = Payload { msg: ct, aad };
    let out = match suite {
        Suite::ChaCha20Poly1305 => {
            ChaCha20Poly1305::new(key.expose().into()).decrypt((&n).into(), payload)
        }
        Suite::Aes256Gcm => Aes256Gcm::new(key.expose().into()).decrypt((&n).into(), payload),
    };
    out.ok().map(zeroize::Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_is_length_prefixed() {
        // "ab" ‖ "c" and "a" ‖ "bc" must differ.
        let a = Transcript::new(b"L").lp(b"ab").lp(b"c").finish();
        let b = Transcript::new(b"L").lp(b"a").lp(b"bc").finish();
        assert_ne!(a, b);
        let mut manual = Vec::from(&b"L"[..]);
        manual.extend_from_slice(&[0, 0, 0, 2, b'a', b'b', 0, 0, 0, 1, b'c']);
        assert_eq!(a, h(&manual));
    }

    #[test]
    fn aead_round_trip_and_tamper() {
        for suite in [Suite::ChaCha20Poly1305, Suite::Aes256Gcm] {
            let k = Secret32::new([7; 32]);
            let ct = seal(suite, &k, 5, b"aad", b"hello");
            assert_eq!(ct.len(), 5 + AEAD_TAG_LEN);
            assert_eq!(
                open(suite, &k, 5, b"aad", &ct).unwrap().as_slice(),
                b"hello"
            );
            assert!(open(suite, &k, 6, b"aad", &ct).is_none());
            assert!(open(suite, &k, 5, b"aae", &ct).is_none());
            let mut bad = ct.clone();
            bad[0] ^= 1;
            assert!(open(suite, &k, 5, b"aad", &bad).is_none());
        }
    }

    #[test]
    fn secret_debug_hides_bytes() {
        assert_eq!(format!("{:?}", Secret32::new([0xab; 32])), "Secret32(..)");
    }
}
