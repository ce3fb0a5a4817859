//! Session keys from the insecure test-only key log (`sealdesk_rtc::keylog`), and what they
//! open in captured bytes: the positive control of the relay canary scan. If the capture is
//! this session's ciphertext, the logged keys decrypt its DTLS records into the SCTP packets
//! of the `control` data channel, and the typed keys and clipboard text are right there.

use std::collections::BTreeMap;
use std::path::Path;

use aws_lc_rs::aead::{self, LessSafeKey, UnboundKey};
use sealdesk_proto::control::ControlMessage;

/// DTLS 1.2 cipher suites dimpl offers (IANA numbers).
const AES128_GCM: u16 = 0xC02B;
const AES256_GCM: u16 = 0xC02C;
const CHACHA20: u16 = 0xCCA9;

/// One DTLS record-protection key: a direction of one session.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RecordKey {
    suite: u16,
    key: Vec<u8>,
    iv: Vec<u8>,
}

/// Everything the key logs of a session's two ends hold.
#[derive(Default)]
pub(crate) struct KeyLog {
    pub(crate) records: Vec<RecordKey>,
    /// Exported SRTP keying material (client key, server key, client salt, server salt).
    pub(crate) srtp: Vec<Vec<u8>>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(' ')
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("key log line without {name}: {line}"))
}

impl KeyLog {
    /// Reads and merges key logs (each direction's key appears at both ends: once).
    pub(crate) fn read(paths: &[impl AsRef<Path>]) -> Self {
        let mut log = Self::default();
        for path in paths {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("no key log at {}: {e}", path.display()));
            for line in text.lines() {
                if line.starts_with("dtls12 ") {
                    let key = RecordKey {
                        suite: u16::from_str_radix(field(line, "suite"), 16).unwrap(),
                        key: unhex(field(line, "key")),
                        iv: unhex(field(line, "iv")),
                    };
                    if !log.records.contains(&key) {
                        log.records.push(key);
                    }
                } else if line.starts_with("srtp ") {
                    let m = unhex(field(line, "material"));
                    if !log.srtp.contains(&m) {
                        log.srtp.push(m);
                    }
                } else {
                    panic!("unknown key log line: {line}");
                }
            }
        }
        log
    }

    /// Every secret byte string the log holds — each record key and IV, each SRTP keying
    /// material and its four parts — for the scan that none crossed the wire.
    pub(crate) fn secrets(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for r in &self.records {
            out.push(r.key.clone());
        }
        for m in &self.srtp {
            out.push(m.clone());
            // Two keys then two salts; the length says which profile.
            let (k, salt) = match m.len() {
                60 => (16, 14), // AES128_CM_HMAC_SHA1_80
                56 => (16, 12), // AEAD_AES_128_GCM
                88 => (32, 12), // AEAD_AES_256_GCM
                n => panic!("SRTP keying material of {n} bytes"),
            };
            let (keys, salts) = m.split_at(2 * k);
            out.extend(keys.chunks(k).chain(salts.chunks(salt)).map(<[u8]>::to_vec));
        }
        out.retain(|s| s.len() >= 12);
        out
    }

    /// Every DTLS 1.2 application-data record in `capture` that one of the keys opens,
    /// decrypted, as (key index, epoch and sequence, plaintext). Records are found by
    /// their header wherever they sit (in a ChannelData message, a Send indication or a
    /// plain datagram); the AEAD tag makes a false match impossible.
    pub(crate) fn open_records(&self, capture: &[u8]) -> Vec<(usize, u64, Vec<u8>)> {
        let keys: Vec<(usize, &RecordKey, LessSafeKey)> = self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let alg = match r.suite {
                    AES128_GCM => &aead::AES_128_GCM,
                    AES256_GCM => &aead::AES_256_GCM,
                    CHACHA20 => &aead::CHACHA20_POLY1305,
                    other => panic!("key log names suite {other:04x}"),
                };
                (
                    i,
                    r,
                    LessSafeKey::new(UnboundKey::new(alg, &r.key).unwrap()),
                )
            })
            .collect();
        let mut out = Vec::new();
        for at in 0..capture.len().saturating_sub(13) {
            if capture[at..at + 3] != [23, 0xfe, 0xfd] {
                continue;
            }
            let seq: [u8; 8] = capture[at + 3..at + 11].try_into().unwrap();
            let len = usize::from(u16::from_be_bytes([capture[at + 11], capture[at + 12]]));
            let Some(fragment) = capture.get(at + 13..at + 13 + len) else {
                continue;
            };
            for (i, r, key) in &keys {
                let (nonce, sealed) = if r.suite == CHACHA20 {
                    let mut n: [u8; 12] = r.iv.as_slice().try_into().unwrap();
                    for (a, b) in n[4..].iter_mut().zip(seq) {
                        *a ^= b;
                    }
                    (n, fragment)
                } else {
                    let Some((explicit, sealed)) = fragment.split_at_checked(8) else {
                        continue;
                    };
                    let mut n = [0u8; 12];
                    n[..4].copy_from_slice(&r.iv);
                    n[4..].copy_from_slice(explicit);
                    (n, sealed)
                };
                let Some(plain_len) = sealed.len().checked_sub(16) else {
                    continue;
                };
                let mut aad = seq.to_vec();
                aad.extend_from_slice(&[23, 0xfe, 0xfd]);
                aad.extend_from_slice(&u16::try_from(plain_len).unwrap().to_be_bytes());
                let mut buf = sealed.to_vec();
                let opened = key.open_in_place(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(aad.as_slice()),
                    &mut buf,
                );
                if let Ok(plain) = opened {
                    out.push((*i, u64::from_be_bytes(seq), plain.to_vec()));
                    break;
                }
            }
        }
        out
    }

    /// The `control` messages in the decrypted records: each SCTP DATA chunk that holds a
    /// whole message, once (the capture sees each datagram on both legs through the relay,
    /// and retransmissions), in TSN order per direction.
    pub(crate) fn control_messages(&self, capture: &[u8]) -> Vec<ControlMessage> {
        let mut chunks: BTreeMap<(usize, u32), Vec<u8>> = BTreeMap::new();
        for (key, _, sctp) in self.open_records(capture) {
            // SCTP common header (12 bytes), then chunks padded to 4 bytes.
            let mut at = 12;
            while let Some(head) = sctp.get(at..at + 4) {
                let (kind, flags) = (head[0], head[1]);
                let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
                let Some(chunk) = sctp.get(at..at + len).filter(|_| len >= 4) else {
                    break;
                };
                // DATA with B and E set: an unfragmented user message.
                if kind == 0 && flags & 3 == 3 && len > 16 {
                    let tsn = u32::from_be_bytes(chunk[4..8].try_into().unwrap());
                    chunks.insert((key, tsn), chunk[16..].to_vec());
                }
                at += len.div_ceil(4) * 4;
            }
        }
        chunks
            .into_values()
            .filter_map(|m| ControlMessage::decode(&m).ok())
            .collect()
    }
}
