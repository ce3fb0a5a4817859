//! Device identity keys (DESIGN.md §3).
//!
//! Each device owns a long-term Ed25519 identity key `IK`. The secret half lives in
//! [`IdentityKey`], which zeroizes on drop and never prints its bytes; the public half
//! is a [`DeviceKey`]; `device_fpr = SHA-256("sealdesk/v1 device-fpr" ‖ IK_pub)` is a
//! [`DeviceFingerprint`].
//!
//! This module only converts keys to and from bytes. Storing them (a 0600 file in
//! the data directory) is the job of a shell crate.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use rand_core::CryptoRngCore;
use sealdesk_proto::{DeviceKey, SignatureBytes};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The label hashed before the public key in a device fingerprint.
pub const DEVICE_FPR_LABEL: &[u8] = b"sealdesk/v1 device-fpr";

const FILE_HEADER: &str = "sealdesk identity key v1 (Ed25519)";
const FILE_WARNING: &str =
    "# Secret. Keep this file private (mode 0600); anyone holding it can act as this device.";
const SEED_PREFIX: &str = "seed: ";

/// A key file's contents could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The first line is not the sealdesk identity key header.
    #[error("not a sealdesk identity key file (first line should be {FILE_HEADER:?})")]
    NotAKeyFile,
    /// There is no `seed:` line, or it is not base64 of 32 bytes.
    #[error("identity key file has no valid `seed:` line (base64 of 32 bytes)")]
    BadSeed,
}

/// A device's secret identity key. Zeroized on drop; `Debug` shows only the fingerprint.
pub struct IdentityKey {
    // ed25519-dalek's SigningKey zeroizes itself on drop (the `zeroize` feature).
    signing: ed25519_dalek::SigningKey,
}

impl IdentityKey {
    /// Draws a new identity key from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut seed[..]);
        Self::from_seed(&seed)
    }

    /// The key with this 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }

    /// The public half.
    pub fn public(&self) -> DeviceKey {
        DeviceKey::from_verifying_key(&self.signing.verifying_key())
    }

    /// This device's fingerprint.
    pub fn fingerprint(&self) -> DeviceFingerprint {
        DeviceFingerprint::of(&self.public())
    }

    /// Signs `message` (callers prepend a domain-separation label).
    pub fn sign(&self, message: &[u8]) -> SignatureBytes {
        SignatureBytes(self.signing.sign(message).to_bytes())
    }

    /// The key file contents (text). Write them only to a file with mode 0600.
    pub fn to_file_bytes(&self) -> Zeroizing<Vec<u8>> {
        let seed = Zeroizing::new(self.signing.to_bytes());
        let encoded = Zeroizing::new(B64.encode(&seed[..]));
        let mut out = Zeroizing::new(Vec::with_capacity(160));
        for part in [
            FILE_HEADER,
            "\n",
            FILE_WARNING,
            "\n",
            SEED_PREFIX,
            encoded.as_str(),
            "\n",
        ] {
            out.extend_from_slice(part.as_bytes());
        }
        out
    }

    /// Parses key file contents written by [`IdentityKey::to_file_bytes`].
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, KeyFileError> {
        let text = std::str::from_utf8(bytes).map_err(|_| KeyFileError::NotAKeyFile)?;
        let mut lines = text.lines();
        if lines.next().map(str::trim_end) != Some(FILE_HEADER) {
            return Err(KeyFileError::NotAKeyFile);
        }
        let seed_b64 = lines
            .map(str::trim)
            .find_map(|l| l.strip_prefix(SEED_PREFIX))
            .ok_or(KeyFileError::BadSeed)?;
        if seed_b64.len() != 44 {
            return Err(KeyFileError::BadSeed);
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        let decoded = Zeroizing::new(B64.decode(seed_b64).map_err(|_| KeyFileError::BadSeed)?);
        if decoded.len() != 32 {
            return Err(KeyFileError::BadSeed);
        }
        seed.copy_from_slice(&decoded);
        Ok(Self::from_seed(&seed))
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKey")
            .field("fingerprint", &self.fingerprint().short())
            .finish_non_exhaustive()
    }
}

/// `device_fpr = SHA-256("sealdesk/v1 device-fpr" ‖ IK_pub)` (DESIGN.md §3). Public.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceFingerprint(pub [u8; 32]);

impl DeviceFingerprint {
    /// The fingerprint of a device key.
    pub fn of(key: &DeviceKey) -> Self {
        let mut h = Sha256::new();
        h.update(DEVICE_FPR_LABEL);
        h.update(key.as_bytes());
        Self(h.finalize().into())
    }

    /// The first 8 bytes as 4 groups of 4 hex digits, for labels and logs.
    pub fn short(&self) -> String {
        self.grouped_hex(8)
    }

    /// All 32 bytes as 16 groups of 4 hex digits.
    pub fn grouped_hex(&self, bytes: usize) -> String {
        let mut s = String::new();
        for (i, pair) in self.0.chunks(2).take(bytes.div_ceil(2)).enumerate() {
            if i > 0 {
                s.push(' ');
            }
            for b in pair {
                s.push_str(&format!("{b:02x}"));
            }
        }
        s
    }
}

impl fmt::Display for DeviceFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.grouped_hex(32))
    }
}

impl fmt::Debug for DeviceFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceFingerprint({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn file_round_trip_and_errors() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let k = IdentityKey::generate(&mut rng);
        let bytes = k.to_file_bytes();
        let k2 = IdentityKey::from_file_bytes(&bytes).unwrap();
        assert_eq!(k.public(), k2.public());
        assert_eq!(
            IdentityKey::from_file_bytes(b"hello").unwrap_err(),
            KeyFileError::NotAKeyFile
        );
        let no_seed = format!("{FILE_HEADER}\nseed: AAAA\n");
        assert_eq!(
            IdentityKey::from_file_bytes(no_seed.as_bytes()).unwrap_err(),
            KeyFileError::BadSeed
        );
        assert_eq!(
            IdentityKey::from_file_bytes(&[0xff, 0xfe]).unwrap_err(),
            KeyFileError::NotAKeyFile
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = IdentityKey::from_seed(&[0x41; 32]);
        let dbg = format!("{k:?}");
        assert!(dbg.starts_with("IdentityKey { fingerprint: "), "{dbg}");
        let seed_b64 = B64.encode([0x41u8; 32]);
        assert!(!dbg.contains(&seed_b64) && !dbg.contains("4141"), "{dbg}");
    }

    #[test]
    fn fingerprint_is_labelled_sha256_of_the_public_key() {
        let k = IdentityKey::from_seed(&[1; 32]);
        let mut h = Sha256::new();
        h.update(b"sealdesk/v1 device-fpr");
        h.update(k.public().as_bytes());
        let want: [u8; 32] = h.finalize().into();
        assert_eq!(k.fingerprint().0, want);
        assert_eq!(k.fingerprint().to_string().len(), 16 * 4 + 15);
        assert_eq!(k.fingerprint().short().len(), 4 * 4 + 3);
    }

    #[test]
    fn signatures_verify_with_the_public_key() {
        let k = IdentityKey::from_seed(&[2; 32]);
        let sig = k.sign(b"msg");
        assert!(k.public().verify_strict(b"msg", &sig));
        assert!(!k.public().verify_strict(b"msh", &sig));
    }
}
