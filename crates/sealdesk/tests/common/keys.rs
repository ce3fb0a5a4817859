//! Session keys from the insecure test-only key log (`sealdesk_rtc::keylog`), and what they
//! open in captured bytes: the positive control of the relay canary scan. If the capture is
//! this session's ciphertext, the logged keys decrypt its DTLS records into the SCTP packets
//! of the `control` data channel (typed keys, clipboard text), and its SRTP into the VP9
//! stream (the screen).

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

/// The UDP payloads in a `tcpdump -i any` capture (Linux cooked v1 or v2, IPv4).
pub(crate) fn udp_payloads(pcap: &[u8]) -> Vec<&[u8]> {
    assert_eq!(
        pcap.get(..4),
        Some(&[0xd4, 0xc3, 0xb2, 0xa1][..]),
        "not a pcap"
    );
    let link = u32::from_le_bytes(pcap[20..24].try_into().unwrap());
    let (cooked, proto_at) = match link {
        113 => (16, 14),
        276 => (20, 0),
        other => panic!("capture link type {other}"),
    };
    let mut out = Vec::new();
    let mut at = 24;
    while let Some(head) = pcap.get(at..at + 16) {
        let len = u32::from_le_bytes(head[8..12].try_into().unwrap()) as usize;
        let Some(frame) = pcap.get(at + 16..at + 16 + len) else {
            break;
        };
        at += 16 + len;
        let Some(ip) = frame.get(cooked..) else {
            continue;
        };
        if frame.get(proto_at..proto_at + 2) != Some(&[8, 0][..]) || ip.len() < 20 || ip[9] != 17 {
            continue;
        }
        let ihl = usize::from(ip[0] & 15) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        if let Some(udp) = ip.get(ihl + 8..total) {
            out.push(udp);
        }
    }
    out
}

/// What a datagram to or from a TURN relay carries for the peer: a ChannelData message's
/// data, a Send or Data indication's DATA attribute, or (the relay's peer side) itself.
fn peer_data(datagram: &[u8]) -> Option<&[u8]> {
    match *datagram.first()? {
        0x40..=0x7f => {
            let len = usize::from(u16::from_be_bytes([datagram[2], *datagram.get(3)?]));
            datagram.get(4..4 + len)
        }
        0..=3 if datagram.get(4..8) == Some(&[0x21, 0x12, 0xa4, 0x42][..]) => {
            // STUN: only indications (class bits 01) carry data.
            let kind = u16::from_be_bytes([datagram[0], datagram[1]]);
            if kind & 0x0110 != 0x0010 {
                return None;
            }
            let mut at = 20;
            while let Some(attr) = datagram.get(at..at + 4) {
                let (t, len) = (
                    u16::from_be_bytes([attr[0], attr[1]]),
                    usize::from(u16::from_be_bytes([attr[2], attr[3]])),
                );
                if t == 0x0013 {
                    return datagram.get(at + 4..at + 4 + len);
                }
                at += 4 + len.div_ceil(4) * 4;
            }
            None
        }
        _ => Some(datagram),
    }
}

/// `n` bytes of the SRTP key derivation function's output (RFC 3711 §4.3, AES-CM PRF, key
/// derivation rate 0) for `label`. A GCM master salt (12 bytes, RFC 7714) fills the start of
/// the 14-byte salt field, as libsrtp and str0m place it.
fn srtp_kdf(master_key: &[u8], master_salt: &[u8], label: u8, n: usize) -> Vec<u8> {
    use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};
    use aws_lc_rs::iv::FixedLength;
    let alg = if master_key.len() == 32 {
        &AES_256
    } else {
        &AES_128
    };
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label;
    let key = EncryptingKey::ctr(UnboundCipherKey::new(alg, master_key).unwrap()).unwrap();
    let mut stream = vec![0u8; n];
    key.less_safe_encrypt(&mut stream, EncryptionContext::Iv128(FixedLength::from(iv)))
        .unwrap();
    stream
}

/// One RTP packet's header fields, decrypted payload (padding removed) and index.
pub(crate) struct Rtp {
    pub(crate) ssrc: u32,
    pub(crate) index: u64,
    pub(crate) marker: bool,
    pub(crate) payload: Vec<u8>,
}

impl KeyLog {
    /// Every SRTP packet in `capture` that the logged keying material opens (AEAD-AES-GCM
    /// profiles, RFC 7714), once each, in (SSRC, index) order.
    pub(crate) fn open_srtp(&self, capture: &[u8]) -> Vec<Rtp> {
        // Both directions of every logged session: (session key, session salt).
        let mut sessions = Vec::new();
        for m in &self.srtp {
            let k = match m.len() {
                56 => 16,
                88 => 32,
                n => panic!("SRTP keying material of {n} bytes: not an AEAD-GCM profile"),
            };
            let alg = if k == 32 {
                &aead::AES_256_GCM
            } else {
                &aead::AES_128_GCM
            };
            let (keys, salts) = m.split_at(2 * k);
            for (key, salt) in keys.chunks(k).zip(salts.chunks(12)) {
                let session_key = srtp_kdf(key, salt, 0, k);
                let session_salt = srtp_kdf(key, salt, 2, 12);
                let key = LessSafeKey::new(UnboundKey::new(alg, &session_key).unwrap());
                sessions.push((key, session_salt));
            }
        }
        let mut out: BTreeMap<(u32, u64), Rtp> = BTreeMap::new();
        for datagram in udp_payloads(capture) {
            let Some(p) = peer_data(datagram) else {
                continue;
            };
            // RTP version 2 and not RTCP (payload types 72–79 with the marker bit folded).
            if p.len() < 12 + 16 || p[0] >> 6 != 2 || (72..=79).contains(&(p[1] & 0x7f)) {
                continue;
            }
            let mut header = 12 + usize::from(p[0] & 15) * 4;
            if p[0] & 0x10 != 0 {
                let Some(ext) = p.get(header + 2..header + 4) else {
                    continue;
                };
                header += 4 + usize::from(u16::from_be_bytes([ext[0], ext[1]])) * 4;
            }
            if p.len() < header + 16 {
                continue;
            }
            let seq = u16::from_be_bytes([p[2], p[3]]);
            let ssrc = u32::from_be_bytes(p[8..12].try_into().unwrap());
            'keys: for (key, salt) in &sessions {
                for roc in 0..2u32 {
                    let mut iv = [0u8; 12];
                    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
                    iv[6..10].copy_from_slice(&roc.to_be_bytes());
                    iv[10..].copy_from_slice(&seq.to_be_bytes());
                    for (a, b) in iv.iter_mut().zip(salt) {
                        *a ^= b;
                    }
                    let mut buf = p[header..].to_vec();
                    let Ok(plain) = key.open_in_place(
                        aead::Nonce::assume_unique_for_key(iv),
                        aead::Aad::from(&p[..header]),
                        &mut buf,
                    ) else {
                        continue;
                    };
                    let mut payload = plain.to_vec();
                    if p[0] & 0x20 != 0 {
                        let pad = usize::from(payload.last().copied().unwrap_or(0));
                        payload.truncate(payload.len().saturating_sub(pad));
                    }
                    let index = u64::from(roc) << 16 | u64::from(seq);
                    out.insert(
                        (ssrc, index),
                        Rtp {
                            ssrc,
                            index,
                            marker: p[1] & 0x80 != 0,
                            payload,
                        },
                    );
                    break 'keys;
                }
            }
        }
        out.into_values().collect()
    }
}

/// Reassembles VP9 frames from RTP payloads (RFC 9628 payload descriptor) of one SSRC in
/// index order; frames with a missing packet are dropped.
pub(crate) fn vp9_frames(packets: &[&Rtp]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut current: Option<(u64, Vec<u8>)> = None;
    for rtp in packets {
        let d = &rtp.payload;
        let Some(&flags) = d.first() else { continue };
        let (i_, p_, l_, f_, b_, e_, v_) = (
            flags & 0x80 != 0,
            flags & 0x40 != 0,
            flags & 0x20 != 0,
            flags & 0x10 != 0,
            flags & 0x08 != 0,
            flags & 0x04 != 0,
            flags & 0x02 != 0,
        );
        let mut at = 1;
        if i_ {
            at += if d.get(at).is_some_and(|b| b & 0x80 != 0) {
                2
            } else {
                1
            };
        }
        if l_ {
            at += if f_ { 1 } else { 2 };
        }
        if f_ && p_ {
            for _ in 0..3 {
                let more = d.get(at).is_some_and(|b| b & 1 != 0);
                at += 1;
                if !more {
                    break;
                }
            }
        }
        if v_ {
            let Some(&ss) = d.get(at) else { continue };
            at += 1;
            let layers = usize::from(ss >> 5) + 1;
            if ss & 0x10 != 0 {
                at += 4 * layers;
            }
            if ss & 0x08 != 0 {
                let Some(&groups) = d.get(at) else { continue };
                at += 1;
                for _ in 0..groups {
                    let Some(&g) = d.get(at) else { break };
                    at += 1 + usize::from((g >> 2) & 3);
                }
            }
        }
        let Some(data) = d.get(at..) else { continue };
        if b_ {
            current = Some((rtp.index, Vec::new()));
        }
        match &mut current {
            Some((last, frame)) if b_ || *last + 1 == rtp.index => {
                *last = rtp.index;
                frame.extend_from_slice(data);
            }
            _ => {
                current = None;
                continue;
            }
        }
        if e_ || rtp.marker {
            if let Some((_, frame)) = current.take() {
                frames.push(frame);
            }
        }
    }
    frames
}
