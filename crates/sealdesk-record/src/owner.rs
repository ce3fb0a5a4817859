//! The owner's age X25519 identity: the one key that opens the owner's recordings.
//!
//! The file format is age's own (`age-keygen` writes the same): comment lines, then one
//! `AGE-SECRET-KEY-1…` line, so the owner can also open a segment's age file with the `age`
//! tool. Write it only to a file with mode 0600.

use std::fmt;
use std::str::FromStr as _;

use age::secrecy::ExposeSecret as _;
use zeroize::Zeroizing;

/// An owner key file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OwnerKeyError {
    /// No line starts with `AGE-SECRET-KEY-1`.
    #[error("not an age identity file (no line starting with AGE-SECRET-KEY-1)")]
    NoKey,
    /// The key line is not a valid age X25519 identity.
    #[error("the AGE-SECRET-KEY-1 line is not a valid age X25519 identity")]
    BadKey,
    /// The file holds more than one key (which one owns the recordings?).
    #[error("the file holds more than one age identity; keep one per file")]
    SeveralKeys,
}

/// The owner's secret age identity. Zeroized on drop (x25519-dalek's `StaticSecret`);
/// `Debug` shows only the public recipient.
pub struct OwnerKey {
    identity: age::x25519::Identity,
}

impl OwnerKey {
    /// Draws a new identity (age uses the operating system's RNG).
    pub fn generate() -> Self {
        Self {
            identity: age::x25519::Identity::generate(),
        }
    }

    /// The public recipient (`age1…`), which recorders encrypt to.
    pub fn recipient(&self) -> age::x25519::Recipient {
        self.identity.to_public()
    }

    /// The identity, for decryption.
    pub fn identity(&self) -> &age::x25519::Identity {
        &self.identity
    }

    /// The file contents: age's identity file format, `created` as an RFC 3339-ish string
    /// the caller formats.
    pub fn to_file_bytes(&self, created: &str) -> Zeroizing<Vec<u8>> {
        let secret = self.identity.to_string();
        let mut out = Zeroizing::new(Vec::with_capacity(200));
        for part in [
            "# sealdesk recording owner key (age X25519 identity). Secret: keep this file private (mode 0600).\n",
            "# Anyone holding it can read every recording made for it; losing it loses them.\n",
            "# created: ",
            created,
            "\n# public key: ",
            &self.recipient().to_string(),
            "\n",
            secret.expose_secret(),
            "\n",
        ] {
            out.extend_from_slice(part.as_bytes());
        }
        out
    }

    /// Parses an age identity file holding exactly one X25519 identity.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, OwnerKeyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| OwnerKeyError::NoKey)?;
        let mut found = None;
        for line in text.lines().map(str::trim) {
            if line.starts_with("AGE-SECRET-KEY-1") {
                if found.is_some() {
                    return Err(OwnerKeyError::SeveralKeys);
                }
                let identity =
                    age::x25519::Identity::from_str(line).map_err(|_| OwnerKeyError::BadKey)?;
                found = Some(identity);
            }
        }
        found
            .map(|identity| Self { identity })
            .ok_or(OwnerKeyError::NoKey)
    }
}

impl fmt::Debug for OwnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerKey")
            .field("recipient", &self.recipient().to_string())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_and_debug_hides_the_secret() {
        let k = OwnerKey::generate();
        let bytes = k.to_file_bytes("2026-12-02");
        let text = std::str::from_utf8(&bytes).unwrap();
        let secret_line = text.lines().find(|l| l.starts_with("AGE-SECRET")).unwrap();
        let k2 = OwnerKey::from_file_bytes(&bytes).unwrap();
        assert_eq!(k.recipient().to_string(), k2.recipient().to_string());
        let dbg = format!("{k:?}");
        assert!(
            !dbg.contains(secret_line) && !dbg.contains("AGE-SECRET"),
            "{dbg}"
        );
        assert!(dbg.contains(&k.recipient().to_string()));
    }

    #[test]
    fn bad_files_are_named() {
        assert_eq!(
            OwnerKey::from_file_bytes(b"hello").unwrap_err(),
            OwnerKeyError::NoKey
        );
        assert_eq!(
            OwnerKey::from_file_bytes(b"AGE-SECRET-KEY-1QQQ\n").unwrap_err(),
            OwnerKeyError::BadKey
        );
        let one = OwnerKey::generate().to_file_bytes("x");
        let mut two = one.to_vec();
        two.extend_from_slice(&OwnerKey::generate().to_file_bytes("y"));
        assert_eq!(
            OwnerKey::from_file_bytes(&two).unwrap_err(),
            OwnerKeyError::SeveralKeys
        );
        assert_eq!(
            OwnerKey::from_file_bytes(&[0xff, 0xfe]).unwrap_err(),
            OwnerKeyError::NoKey
        );
    }
}
