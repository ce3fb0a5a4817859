//! sealdesk's end-to-end encrypted session recordings (DESIGN.md §7).
//!
//! A recording is made at an endpoint and is readable only by its *owner*: the holder of an
//! age X25519 identity ([`owner::OwnerKey`]). The owner publishes the matching recipient in a
//! [`cert::RecipientCertificate`] signed by their device identity key, so a server that
//! hands a recorder a recipient cannot substitute its own: the recorder accepts the
//! certificate only from a key it already trusts.
//!
//! A recording is a sequence of *segment files* ([`segment`]), each closed after ~2 s or
//! 1 MiB of content. A segment file is a fixed-size signed manifest entry followed by a
//! complete, standard age file (`age -d` opens it) holding the [`body`]: encoded video
//! packets exactly as sent (no re-encode), their timing, and session events. The entries form
//! the recording's manifest: each is signed by the recorder's identity key and chains the
//! hash of the previous one, so [`verify`] can tell — without any secret key — whether the
//! recording is complete, truncated, has a gap, a reordered or duplicated segment, or a forged
//! or corrupted one, and where.
//!
//! This crate does no I/O and reads no clock: times and the recording id are arguments and
//! finished segments are returned as bytes for a shell to write (and fsync) or upload. One
//! exception to the `[core]` rules of DESIGN.md §9: age draws each segment's file key from the
//! operating system's RNG inside [`age::Encryptor`], so this crate is native-only (the browser
//! viewer does not record).

pub mod body;
pub mod cert;
pub mod owner;
pub mod segment;
pub mod verify;

use sha2::{Digest, Sha256};

/// `H(label ‖ LP(f1) ‖ LP(f2) …)` with u32 big-endian lengths (DESIGN.md §3 notation).
pub(crate) fn labelled_hash(label: &[u8], fields: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    for f in fields {
        // Every field is bounded far below 4 GiB by the formats' limits.
        let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
        h.update(len.to_be_bytes());
        h.update(f);
    }
    h.finalize().into()
}

/// A recording's random 128-bit id (drawn by the shell).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordingId(pub [u8; 16]);

impl RecordingId {
    /// Lowercase hex, 32 digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for RecordingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordingId({})", self.to_hex())
    }
}

impl std::fmt::Display for RecordingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}
