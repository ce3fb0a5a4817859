//! Segment files, their signed manifest entries, and the sans-IO [`Recorder`] that makes them.
//!
//! ```text
//! segment file = "sdrec01\n" ‖ entry[ENTRY_LEN] ‖ age file[age_len]
//! entry        = version u8 (1) ‖ flags u8 (bit 0: final) ‖ recording_id[16] ‖ seq u32
//!                ‖ start_us u64 ‖ end_us u64 ‖ started_unix_ms u64
//!                ‖ age_len u64 ‖ age_hash[32] ‖ prev[32] ‖ recorder[32] ‖ recipient_fpr[32]
//!                ‖ signature[64]
//! signature    = Ed25519 by `recorder` over "sealdesk/v1 recording-segment" ‖ entry without the signature
//! age_hash     = SHA-256 of the age file
//! link(entry)  = H("sealdesk/v1 recording-link" ‖ LP(entry))         (all of it, signature included)
//! prev         = link(previous entry), or H("sealdesk/v1 recording-start" ‖ LP(recording_id)) for seq 0
//! ```
//!
//! The entries, in order, are the recording's manifest: each is signed and chains the one
//! before, and the last says it is final. Everything is big-endian. The age file is standard
//! (X25519 recipient), so `tail -c +259 000000.sdseg | age -d -i owner.key` opens it too.

use std::io::Write as _;
use std::sync::Arc;

use sealdesk_auth::IdentityKey;
use sealdesk_proto::{DeviceKey, SignatureBytes};
use sha2::{Digest, Sha256};

use crate::body::{self, Record, Timed};
use crate::cert::VerifiedRecipient;
use crate::{labelled_hash, RecordingId};

/// The first bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"sdrec01\n";
/// Bytes in an entry, signature included.
pub const ENTRY_LEN: usize = 1 + 1 + 16 + 4 + 8 + 8 + 8 + 8 + 32 + 32 + 32 + 32 + 64;
/// Where the age file starts in a segment file.
pub const AGE_OFFSET: usize = MAGIC.len() + ENTRY_LEN;
/// The largest segment file accepted anywhere (reading, uploading).
pub const MAX_SEGMENT_FILE: usize = 40 << 20;
const SIGN_LABEL: &[u8] = b"sealdesk/v1 recording-segment";
const LINK_LABEL: &[u8] = b"sealdesk/v1 recording-link";
const START_LABEL: &[u8] = b"sealdesk/v1 recording-start";
const FLAG_FINAL: u8 = 1;

/// When a segment is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentPolicy {
    /// After this much recorded time (µs) since the segment's first record.
    pub max_duration_us: u64,
    /// Or once the plaintext reaches this many bytes.
    pub max_bytes: usize,
}

impl Default for SegmentPolicy {
    fn default() -> Self {
        Self {
            max_duration_us: 2_000_000,
            max_bytes: 1 << 20,
        }
    }
}

/// A signed manifest entry, as parsed (see the module docs for the layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The last segment of a finished recording.
    pub is_final: bool,
    /// Which recording.
    pub recording_id: RecordingId,
    /// Position, from 0.
    pub seq: u32,
    /// First and last record times in the segment (µs from the recording's start).
    pub start_us: u64,
    /// See `start_us`.
    pub end_us: u64,
    /// Wall-clock start of the recording (Unix milliseconds), as the recorder saw it.
    pub started_unix_ms: u64,
    /// Size of the age file.
    pub age_len: u64,
    /// SHA-256 of the age file.
    pub age_hash: [u8; 32],
    /// Link of the previous entry.
    pub prev: [u8; 32],
    /// Who recorded and signed.
    pub recorder: DeviceKey,
    /// Fingerprint of the recipient certificate it was encrypted to.
    pub recipient_fpr: [u8; 32],
    /// Ed25519 over the rest.
    pub signature: SignatureBytes,
}

impl Entry {
    fn unsigned_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(ENTRY_LEN);
        b.push(1);
        b.push(if self.is_final { FLAG_FINAL } else { 0 });
        b.extend_from_slice(&self.recording_id.0);
        b.extend_from_slice(&self.seq.to_be_bytes());
        for n in [
            self.start_us,
            self.end_us,
            self.started_unix_ms,
            self.age_len,
        ] {
            b.extend_from_slice(&n.to_be_bytes());
        }
        b.extend_from_slice(&self.age_hash);
        b.extend_from_slice(&self.prev);
        b.extend_from_slice(self.recorder.as_bytes());
        b.extend_from_slice(&self.recipient_fpr);
        b
    }

    fn signed_message(&self) -> Vec<u8> {
        let mut m = SIGN_LABEL.to_vec();
        m.extend_from_slice(&self.unsigned_bytes());
        m
    }

    /// The entry's bytes, signature included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.unsigned_bytes();
        b.extend_from_slice(&self.signature.0);
        b
    }

    /// Parses exactly [`ENTRY_LEN`] bytes (does not check the signature).
    pub fn parse(bytes: &[u8]) -> Result<Self, &'static str> {
        if bytes.len() != ENTRY_LEN {
            return Err("entry has the wrong length");
        }
        let arr = |at: usize| -> [u8; 32] {
            let mut a = [0u8; 32];
            a.copy_from_slice(&bytes[at..at + 32]);
            a
        };
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(a)
        };
        if bytes[0] != 1 {
            return Err("unknown entry version");
        }
        if bytes[1] & !FLAG_FINAL != 0 {
            return Err("unknown entry flags");
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[2..18]);
        let mut seq = [0u8; 4];
        seq.copy_from_slice(&bytes[18..22]);
        let recorder =
            DeviceKey::try_from_bytes(arr(118)).map_err(|_| "recorder key is invalid")?;
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&bytes[182..246]);
        Ok(Self {
            is_final: bytes[1] & FLAG_FINAL != 0,
            recording_id: RecordingId(id),
            seq: u32::from_be_bytes(seq),
            start_us: u64_at(22),
            end_us: u64_at(30),
            started_unix_ms: u64_at(38),
            age_len: u64_at(46),
            age_hash: arr(54),
            prev: arr(86),
            recorder,
            recipient_fpr: arr(150),
            signature: SignatureBytes(sig),
        })
    }

    /// Whether the signature verifies under the entry's recorder key.
    pub fn signature_ok(&self) -> bool {
        self.recorder
            .verify_strict(&self.signed_message(), &self.signature)
    }

    /// `link(entry)`, which the next entry's `prev` must equal.
    pub fn link(&self) -> [u8; 32] {
        labelled_hash(LINK_LABEL, &[&self.to_bytes()])
    }
}

/// `prev` of segment 0.
pub fn start_link(id: RecordingId) -> [u8; 32] {
    labelled_hash(START_LABEL, &[&id.0])
}

/// The conventional file name of segment `seq`.
pub fn file_name(seq: u32) -> String {
    format!("{seq:06}.sdseg")
}

/// A finished segment, ready to be written (and fsynced) or uploaded.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Its entry.
    pub entry: Entry,
    /// The whole file: magic, entry, age file.
    pub bytes: Vec<u8>,
}

impl Segment {
    /// The conventional file name.
    pub fn file_name(&self) -> String {
        file_name(self.entry.seq)
    }
}

/// Encrypting a segment failed (age refused the recipient, which a verified one never is).
#[derive(Debug, thiserror::Error)]
#[error("cannot encrypt the recording segment: {0}")]
pub struct EncryptError(String);

/// Makes segments from timed records (sans-IO: times are arguments, bytes are returned).
pub struct Recorder {
    id: RecordingId,
    started_unix_ms: u64,
    identity: Arc<IdentityKey>,
    recipient: VerifiedRecipient,
    policy: SegmentPolicy,
    seq: u32,
    prev: [u8; 32],
    body: Vec<u8>,
    first_us: Option<u64>,
    last_us: u64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("id", &self.id)
            .field("seq", &self.seq)
            .field("buffered", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recording `id` (random, from the shell) starting at `started_unix_ms`, signed by
    /// `identity`, encrypted to a recipient whose certificate verified.
    pub fn new(
        id: RecordingId,
        started_unix_ms: u64,
        identity: Arc<IdentityKey>,
        recipient: VerifiedRecipient,
        policy: SegmentPolicy,
    ) -> Self {
        Self {
            id,
            started_unix_ms,
            identity,
            recipient,
            policy,
            seq: 0,
            prev: start_link(id),
            body: body::header(id, 0),
            first_us: None,
            last_us: 0,
        }
    }

    /// The recording's id.
    pub fn id(&self) -> RecordingId {
        self.id
    }

    /// Segments finished so far.
    pub fn finished_segments(&self) -> u32 {
        self.seq
    }

    /// Adds a record at `t_us` (µs since the recording started; never goes backwards — an
    /// earlier time is taken as the last one). Returns a segment when this one filled up.
    pub fn push(&mut self, t_us: u64, record: Record) -> Result<Option<Segment>, EncryptError> {
        let t_us = t_us.max(self.last_us);
        self.last_us = t_us;
        self.first_us.get_or_insert(t_us);
        body::encode(&mut self.body, &Timed { t_us, record });
        if self.body.len() >= self.policy.max_bytes {
            return self.close(false).map(Some);
        }
        Ok(None)
    }

    /// Closes the open segment if it has held records for the policy's duration by `now_us`.
    pub fn poll(&mut self, now_us: u64) -> Result<Option<Segment>, EncryptError> {
        match self.first_us {
            Some(first) if now_us.saturating_sub(first) >= self.policy.max_duration_us => {
                self.close(false).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Finishes the recording: the last segment (possibly without records), marked final.
    pub fn finish(mut self) -> Result<Segment, EncryptError> {
        self.close(true)
    }

    fn close(&mut self, is_final: bool) -> Result<Segment, EncryptError> {
        let plain = std::mem::take(&mut self.body);
        let age_file = encrypt(&plain, &self.recipient)?;
        drop(plain);
        let mut entry = Entry {
            is_final,
            recording_id: self.id,
            seq: self.seq,
            start_us: self.first_us.unwrap_or(self.last_us),
            end_us: self.last_us,
            started_unix_ms: self.started_unix_ms,
            age_len: age_file.len() as u64,
            age_hash: Sha256::digest(&age_file).into(),
            prev: self.prev,
            recorder: self.identity.public(),
            recipient_fpr: self.recipient.fingerprint(),
            signature: SignatureBytes([0; 64]),
        };
        entry.signature = self.identity.sign(&entry.signed_message());
        let mut bytes = Vec::with_capacity(AGE_OFFSET + age_file.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&entry.to_bytes());
        bytes.extend_from_slice(&age_file);
        self.prev = entry.link();
        self.seq += 1;
        self.body = body::header(self.id, self.seq);
        self.first_us = None;
        Ok(Segment { entry, bytes })
    }
}

fn encrypt(plain: &[u8], to: &VerifiedRecipient) -> Result<Vec<u8>, EncryptError> {
    let recipient: &dyn age::Recipient = to.recipient();
    let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient))
        .map_err(|e| EncryptError(e.to_string()))?;
    let mut out = Vec::with_capacity(plain.len() + plain.len() / 3000 * 16 + 256);
    let mut w = encryptor
        .wrap_output(&mut out)
        .map_err(|e| EncryptError(e.to_string()))?;
    w.write_all(plain)
        .map_err(|e| EncryptError(e.to_string()))?;
    w.finish().map_err(|e| EncryptError(e.to_string()))?;
    Ok(out)
}

/// What a segment file is, as far as can be told without the owner's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// The parsed entry, or why the file is not a segment.
    pub entry: Result<Entry, &'static str>,
    /// The signature verifies under the entry's recorder key.
    pub signature_ok: bool,
    /// The age file has the length and hash the entry signs.
    pub age_ok: bool,
}

/// Inspects one segment file (no secret key needed).
pub fn inspect(file: &[u8]) -> Inspected {
    let fail = |why| Inspected {
        entry: Err(why),
        signature_ok: false,
        age_ok: false,
    };
    if file.len() > MAX_SEGMENT_FILE {
        return fail("larger than any segment");
    }
    if file.len() < AGE_OFFSET || &file[..MAGIC.len()] != MAGIC {
        return fail("not a sealdesk recording segment (bad magic)");
    }
    let entry = match Entry::parse(&file[MAGIC.len()..AGE_OFFSET]) {
        Ok(e) => e,
        Err(why) => return fail(why),
    };
    let age = &file[AGE_OFFSET..];
    let hash: [u8; 32] = Sha256::digest(age).into();
    Inspected {
        signature_ok: entry.signature_ok(),
        age_ok: age.len() as u64 == entry.age_len && hash == entry.age_hash,
        entry: Ok(entry),
    }
}

/// Opening a segment with the owner's key failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Not a segment, or its age file does not match its entry.
    #[error("not an intact segment: {0}")]
    NotIntact(&'static str),
    /// age could not decrypt it (not for this key, or damaged).
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    /// The plaintext is larger than any segment's.
    #[error("the decrypted segment is larger than {} bytes", body::MAX_BODY)]
    TooLarge,
    /// The plaintext does not parse or does not belong where its entry says.
    #[error(transparent)]
    Body(#[from] body::BodyError),
}

/// Decrypts and parses one segment file with the owner's identity.
pub fn open(
    file: &[u8],
    identity: &age::x25519::Identity,
) -> Result<(Entry, Vec<Timed>), OpenError> {
    use std::io::Read as _;
    let inspected = inspect(file);
    let entry = inspected.entry.map_err(OpenError::NotIntact)?;
    if !inspected.age_ok {
        return Err(OpenError::NotIntact(
            "the age file does not have the hash its entry signs",
        ));
    }
    let decryptor = age::Decryptor::new_buffered(&file[AGE_OFFSET..])
        .map_err(|e| OpenError::Decrypt(e.to_string()))?;
    let identity: &dyn age::Identity = identity;
    let reader = decryptor
        .decrypt(std::iter::once(identity))
        .map_err(|e| OpenError::Decrypt(e.to_string()))?;
    let mut plain = Vec::new();
    reader
        .take(body::MAX_BODY as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| OpenError::Decrypt(e.to_string()))?;
    if plain.len() > body::MAX_BODY {
        return Err(OpenError::TooLarge);
    }
    let records = body::decode(&plain, entry.recording_id, entry.seq)?;
    Ok((entry, records))
}
