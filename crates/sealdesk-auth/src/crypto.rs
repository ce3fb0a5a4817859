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

/// Encrypts with the suite's AEAD under nonce `0⁴ ‖ counter`.
pub(crate) fn seal(suite: Suite, key: &Secret32, counter: u64, aad: &[u8], msg: &[u8]) -> Vec<u8> {
    seal_with_nonce(suite, key, &nonce(counter), aad, msg)
}

/// Decrypts with the suite's AEAD under nonce `0⁴ ‖ counter`; `None` if the tag does not verify.
pub(crate) fn open(
    suite: Suite,
    key: &Secret32,
    counter: u64,
    aad: &[u8],
    ct: &[u8],
) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    open_with_nonce(suite, key, &nonce(counter), aad, ct)
}

fn seal_with_nonce(suite: Suite, key: &Secret32, n: &[u8; 12], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let payload = Payload { msg, aad };
    let out = match suite {
        Suite::ChaCha20Poly1305 => {
            ChaCha20Poly1305::new(key.expose().into()).encrypt(n.into(), payload)
        }
        Suite::Aes256Gcm => Aes256Gcm::new(key.expose().into()).encrypt(n.into(), payload),
    };
    // Encryption fails only for messages over 2^32 blocks; ours are bounded to 64 KiB.
    out.unwrap_or_default()
}

fn open_with_nonce(
    suite: Suite,
    key: &Secret32,
    n: &[u8; 12],
    aad: &[u8],
    ct: &[u8],
) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let payload = Payload { msg: ct, aad };
    let out = match suite {
        Suite::ChaCha20Poly1305 => {
            ChaCha20Poly1305::new(key.expose().into()).decrypt(n.into(), payload)
        }
        Suite::Aes256Gcm => Aes256Gcm::new(key.expose().into()).decrypt(n.into(), payload),
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

    /// Wycheproof through this module's own wrappers (tests/published_vectors.rs checks the
    /// crates directly; this checks that our calls into them are the right ones).
    #[test]
    fn wycheproof_through_our_wrappers() {
        use wycheproof::TestResult;
        let arr32 = |b: &[u8]| -> Option<[u8; 32]> { b.try_into().ok() };
        let mut ran = 0;
        for (suite, name) in [
            (
                Suite::ChaCha20Poly1305,
                wycheproof::aead::TestName::ChaCha20Poly1305,
            ),
            (Suite::Aes256Gcm, wycheproof::aead::TestName::AesGcm),
        ] {
            let set = wycheproof::aead::TestSet::load(name).unwrap();
            for g in set
                .test_groups
                .iter()
                .filter(|g| g.nonce_size == 96 && g.key_size == 256)
            {
                for t in &g.tests {
                    let key = Secret32::new(arr32(&t.key).unwrap());
                    let n: [u8; 12] = t.nonce.as_slice().try_into().unwrap();
                    let ct = [t.ct.as_slice(), t.tag.as_slice()].concat();
                    let got = open_with_nonce(suite, &key, &n, &t.aad, &ct);
                    match t.result {
                        TestResult::Valid => {
                            assert_eq!(
                                got.as_deref().map(Vec::as_slice),
                                Some(t.pt.as_slice()),
                                "{}",
                                t.tc_id
                            );
                            assert_eq!(seal_with_nonce(suite, &key, &n, &t.aad, &t.pt), ct);
                        }
                        TestResult::Invalid => assert!(got.is_none(), "{}", t.tc_id),
                        TestResult::Acceptable => {}
                    }
                    ran += 1;
                }
            }
        }
        let aead_ran = ran;
        let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256).unwrap();
        for g in &set.test_groups {
            for t in g
                .tests
                .iter()
                .filter(|t| t.result == TestResult::Valid && t.size == 32 && !t.salt.is_empty())
            {
                // Prk::extract takes a 32-byte salt (a transcript hash); use those vectors.
                let Some(salt) = arr32(&t.salt) else { continue };
                let prk = Prk::extract(&salt, &t.ikm);
                assert_eq!(
                    prk.expand("", &t.info).expose().as_slice(),
                    t.okm.as_slice(),
                    "{}",
                    t.tc_id
                );
                ran += 1;
            }
        }
        let hkdf_ran = ran - aead_ran;
        let set = wycheproof::mac::TestSet::load(wycheproof::mac::TestName::HmacSha256).unwrap();
        for g in set
            .test_groups
            .iter()
            .filter(|g| g.key_size == 256 && g.tag_size == 256)
        {
            for t in &g.tests {
                let key = Secret32::new(arr32(&t.key).unwrap());
                let ok = hmac_verify(&key, &[&t.msg], &t.tag);
                assert_eq!(ok, t.result == TestResult::Valid, "{}", t.tc_id);
                if t.result == TestResult::Valid {
                    assert_eq!(hmac(&key, &[&t.msg]).as_slice(), t.tag.as_slice());
                }
                ran += 1;
            }
        }
        let mac_ran = ran - aead_ran - hkdf_ran;
        eprintln!("wycheproof via wrappers: aead {aead_ran}, hkdf {hkdf_ran}, hmac {mac_ran}");
        assert!(
            aead_ran > 300 && hkdf_ran > 3 && mac_ran > 30,
            "{aead_ran} {hkdf_ran} {mac_ran}"
        );
    }

    #[test]
    fn secret_debug_hides_bytes() {
        assert_eq!(format!("{:?}", Secret32::new([0xab; 32])), "Secret32(..)");
    }
}
