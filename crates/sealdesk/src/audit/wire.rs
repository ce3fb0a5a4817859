//! What a relay handled, datagram by datagram (question 3): TURN's own messages, and the
//! payloads they carry between the peers — which must be DTLS 1.2 records, SRTP/SRTCP or
//! ICE's STUN checks, nothing else. The DTLS handshake's hellos travel in the clear, so the
//! negotiated version, cipher suite, extended master secret and SRTP profile can be read
//! off the wire and held against what sealdesk allows.
//!
//! Everything here parses untrusted bytes: slices are taken with `get`, nothing panics.

use std::collections::BTreeMap;

/// STUN's magic cookie (RFC 5389).
const COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// TURN Send and Data indications (RFC 8656).
const SEND_INDICATION: u16 = 0x0016;
const DATA_INDICATION: u16 = 0x0017;
/// The DATA attribute.
const ATTR_DATA: u16 = 0x0013;

/// DTLS 1.2 cipher suites sealdesk accepts: ECDHE with an AEAD.
pub(crate) const ALLOWED_SUITES: &[(u16, &str)] = &[
    (0xc02b, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    (0xc02c, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    (0xc02f, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0xc030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0xcca9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xcca8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
];

/// SRTP protection profiles sealdesk accepts (RFC 5764, RFC 7714): full-length tags.
pub(crate) const ALLOWED_SRTP: &[(u16, &str)] = &[
    (0x0001, "SRTP_AES128_CM_HMAC_SHA1_80"),
    (0x0007, "SRTP_AEAD_AES_128_GCM"),
    (0x0008, "SRTP_AEAD_AES_256_GCM"),
];

/// What the peers' payloads were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Payload {
    /// ICE connectivity checks (STUN between the peers).
    Stun,
    /// A DTLS handshake record (epoch 0 hellos are readable, later ones encrypted).
    DtlsHandshake,
    /// A DTLS ChangeCipherSpec record.
    DtlsChangeCipherSpec,
    /// A DTLS alert.
    DtlsAlert,
    /// DTLS application data (SCTP: the control channel), encrypted.
    DtlsApplicationData,
    /// SRTP (video) or SRTCP.
    Srtp,
    /// Anything else: a payload sealdesk never sends.
    Unknown,
}

impl Payload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Payload::Stun => "ICE STUN checks",
            Payload::DtlsHandshake => "DTLS handshake",
            Payload::DtlsChangeCipherSpec => "DTLS change-cipher-spec",
            Payload::DtlsAlert => "DTLS alert",
            Payload::DtlsApplicationData => "DTLS application data (SCTP)",
            Payload::Srtp => "SRTP/SRTCP",
            Payload::Unknown => "UNKNOWN",
        }
    }
}

/// The tally over all datagrams a relay handled.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// TURN control messages (allocate, refresh, permission, channel bind, and answers).
    pub(crate) turn_control: usize,
    /// Datagrams that were neither TURN nor carried a known payload.
    pub(crate) unparsed: usize,
    /// Payloads by kind: (records or packets, bytes).
    pub(crate) payloads: BTreeMap<Payload, (usize, usize)>,
    /// DTLS record-layer versions seen (other than DTLS 1.0's in ClientHello records).
    pub(crate) record_versions: BTreeMap<u16, usize>,
    /// What the hellos negotiated.
    pub(crate) hellos: Vec<Hello>,
    /// Every payload, for the canary scan.
    pub(crate) payload_bytes: usize,
}

/// One ClientHello or ServerHello, as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    /// Client (offers) or server (choice).
    pub(crate) server: bool,
    /// The hello's version field.
    pub(crate) version: u16,
    /// Offered (client) or chosen (server) cipher suites.
    pub(crate) suites: Vec<u16>,
    /// The extended master secret extension (RFC 7627) is present.
    pub(crate) ems: bool,
    /// use_srtp profiles offered or chosen.
    pub(crate) srtp: Vec<u16>,
}

impl Tally {
    /// Counts one datagram between a device and the relay.
    pub(crate) fn datagram(&mut self, d: &[u8]) {
        match d.first() {
            Some(0x00..=0x03) if d.get(4..8) == Some(&COOKIE) => self.stun(d),
            Some(0x40..=0x4f) => {
                let len = d
                    .get(2..4)
                    .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                match d.get(4..4 + len) {
                    Some(inner) => self.payload(inner),
                    None => self.unparsed += 1,
                }
            }
            _ => self.unparsed += 1,
        }
    }

    fn stun(&mut self, d: &[u8]) {
        let kind = u16::from_be_bytes([d[0], d[1]]);
        if kind != SEND_INDICATION && kind != DATA_INDICATION {
            self.turn_control += 1;
            return;
        }
        match stun_attribute(d, ATTR_DATA) {
            Some(inner) => self.payload(inner),
            None => self.unparsed += 1,
        }
    }

    /// One payload the peers exchanged through the relay (RFC 7983's demultiplexing).
    fn payload(&mut self, p: &[u8]) {
        self.payload_bytes += p.len();
        match p.first() {
            Some(0..=3) => self.count(Payload::Stun, p.len()),
            Some(20..=63) => self.dtls(p),
            Some(128..=191) => self.count(Payload::Srtp, p.len()),
            _ => self.count(Payload::Unknown, p.len()),
        }
    }

    fn count(&mut self, kind: Payload, bytes: usize) {
        let e = self.payloads.entry(kind).or_default();
        e.0 += 1;
        e.1 += bytes;
    }

    /// DTLS records, several to a datagram.
    fn dtls(&mut self, mut p: &[u8]) {
        while !p.is_empty() {
            let Some(header) = p.get(..13) else {
                self.count(Payload::Unknown, p.len());
                return;
            };
            let version = u16::from_be_bytes([header[1], header[2]]);
            let epoch = u16::from_be_bytes([header[3], header[4]]);
            let len = usize::from(u16::from_be_bytes([header[11], header[12]]));
            let Some(body) = p.get(13..13 + len) else {
                self.count(Payload::Unknown, p.len());
                return;
            };
            let kind = match header[0] {
                20 => Payload::DtlsChangeCipherSpec,
                21 => Payload::DtlsAlert,
                22 => Payload::DtlsHandshake,
                23 => Payload::DtlsApplicationData,
                _ => Payload::Unknown,
            };
            self.count(kind, 13 + len);
            *self.record_versions.entry(version).or_default() += 1;
            if kind == Payload::DtlsHandshake && epoch == 0 {
                self.handshake(body);
            }
            p = &p[13 + len..];
        }
    }

    /// Epoch-0 handshake messages: the hellos.
    fn handshake(&mut self, mut b: &[u8]) {
        while let Some(h) = b.get(..12) {
            let msg_type = h[0];
            let frag_offset = u32::from_be_bytes([0, h[6], h[7], h[8]]);
            let frag_len = u32::from_be_bytes([0, h[9], h[10], h[11]]) as usize;
            let Some(body) = b.get(12..12 + frag_len) else {
                return;
            };
            if frag_offset == 0 {
                let hello = match msg_type {
                    1 => parse_hello(body, false),
                    2 => parse_hello(body, true),
                    _ => None,
                };
                if let Some(hello) = hello {
                    if !self.hellos.contains(&hello) {
                        self.hellos.push(hello);
                    }
                }
            }
            b = &b[12 + frag_len..];
        }
    }
}

/// The value of the first STUN attribute of `kind`.
fn stun_attribute(d: &[u8], kind: u16) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*d.get(2)?, *d.get(3)?]));
    let mut attrs = d.get(20..20 + len)?;
    while let Some(h) = attrs.get(..4) {
        let t = u16::from_be_bytes([h[0], h[1]]);
        let l = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let value = attrs.get(4..4 + l)?;
        if t == kind {
            return Some(value);
        }
        attrs = attrs.get(4 + l.next_multiple_of(4)..).unwrap_or(&[]);
    }
    None
}

/// A ClientHello (`server == false`) or ServerHello body (RFC 6347 §4.2.2, RFC 5246 §7.4.1).
fn parse_hello(b: &[u8], server: bool) -> Option<Hello> {
    let version = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
    let mut at = 2 + 32;
    let sid = usize::from(*b.get(at)?);
    at += 1 + sid;
    if !server {
        let cookie = usize::from(*b.get(at)?);
        at += 1 + cookie;
    }
    let suites = if server {
        let s = u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]);
        at += 2;
        vec![s]
    } else {
        let n = usize::from(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]));
        let list = b.get(at + 2..at + 2 + n)?;
        at += 2 + n;
        list.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect()
    };
    if server {
        at += 1;
    } else {
        let n = usize::from(*b.get(at)?);
        at += 1 + n;
    }
    let mut hello = Hello {
        server,
        version,
        suites,
        ems: false,
        srtp: Vec::new(),
    };
    let Some(ext_len) = b.get(at..at + 2) else {
        return Some(hello);
    };
    let ext_len = usize::from(u16::from_be_bytes([ext_len[0], ext_len[1]]));
    let mut ext = b.get(at + 2..at + 2 + ext_len)?;
    while let Some(h) = ext.get(..4) {
        let t = u16::from_be_bytes([h[0], h[1]]);
        let l = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let value = ext.get(4..4 + l)?;
        match t {
            0x0017 => hello.ems = true,
            0x000e => {
                let n = usize::from(u16::from_be_bytes([*value.first()?, *value.get(1)?]));
                hello.srtp = value
                    .get(2..2 + n)?
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
            }
            _ => {}
        }
        ext = &ext[4 + l..];
    }
    Some(hello)
}

/// A suite or profile's name, or its number.
pub(crate) fn name_of(table: &[(u16, &'static str)], id: u16) -> String {
    table.iter().find(|(i, _)| *i == id).map_or_else(
        || format!("0x{id:04x} (not allowed)"),
        |(_, n)| (*n).to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, epoch: u16, body: &[u8]) -> Vec<u8> {
        let mut r = vec![kind, 0xfe, 0xfd];
        r.extend_from_slice(&epoch.to_be_bytes());
        r.extend_from_slice(&[0; 6]);
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    fn server_hello(suite: u16, ems: bool, srtp: u16) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&suite.to_be_bytes());
        body.push(0);
        let mut ext = Vec::new();
        if ems {
            ext.extend_from_slice(&[0x00, 0x17, 0, 0]);
        }
        ext.extend_from_slice(&[0x00, 0x0e, 0, 5, 0, 2]);
        ext.extend_from_slice(&srtp.to_be_bytes());
        ext.push(0);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![2];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&[0, 0, 0, 0, 0]);
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        record(22, 0, &hs)
    }

    fn channel_data(inner: &[u8]) -> Vec<u8> {
        let mut d = vec![0x40, 0x00];
        d.extend_from_slice(&(inner.len() as u16).to_be_bytes());
        d.extend_from_slice(inner);
        d
    }

    #[test]
    fn a_server_hello_in_channel_data_is_read_off_the_wire() {
        let mut t = Tally::default();
        let mut dgram = server_hello(0xc02b, true, 0x0007);
        dgram.extend_from_slice(&record(23, 1, &[9; 40]));
        t.datagram(&channel_data(&dgram));
        t.datagram(&channel_data(&[0x80, 0x60, 0, 1, 0, 0, 0, 0]));
        assert_eq!(t.unparsed, 0);
        assert_eq!(t.payloads[&Payload::Srtp].0, 1);
        assert_eq!(t.payloads[&Payload::DtlsApplicationData].0, 1);
        assert_eq!(
            t.hellos,
            [Hello {
                server: true,
                version: 0xfefd,
                suites: vec![0xc02b],
                ems: true,
                srtp: vec![0x0007],
            }]
        );
    }

    #[test]
    fn garbage_and_truncation_are_counted_not_trusted() {
        let mut t = Tally::default();
        t.datagram(b"hello world");
        t.datagram(&channel_data(b"plain text payload"));
        let mut cut = channel_data(&server_hello(0xc02b, true, 7));
        cut.truncate(30);
        t.datagram(&cut);
        t.datagram(&[]);
        assert_eq!(t.unparsed, 3);
        assert_eq!(t.payloads[&Payload::Unknown].0, 1);
        assert!(t.hellos.is_empty());
    }

    #[test]
    fn a_send_indication_carries_its_data_attribute() {
        let inner = [0x80u8, 0x60, 0, 2, 1, 2, 3, 4];
        let mut d = vec![0x00, 0x16, 0, 12];
        d.extend_from_slice(&COOKIE);
        d.extend_from_slice(&[1; 12]);
        d.extend_from_slice(&[0x00, 0x13, 0, 8]);
        d.extend_from_slice(&inner);
        let mut t = Tally::default();
        t.datagram(&d);
        assert_eq!(t.payloads[&Payload::Srtp], (1, 8));
        // An allocate request is TURN's own business.
        let mut alloc = vec![0x00, 0x03, 0, 0];
        alloc.extend_from_slice(&COOKIE);
        alloc.extend_from_slice(&[2; 12]);
        t.datagram(&alloc);
        assert_eq!(t.turn_control, 1);
    }
}
