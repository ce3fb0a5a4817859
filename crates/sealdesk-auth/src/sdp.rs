//! DTLS fingerprints and the SDP checks of sealed signaling (DESIGN.md §4).
//!
//! Before an SDP is applied, it must carry exactly one fingerprint — every
//! `a=fingerprint` line `sha-256` and equal to the authenticated one — and an `a=setup`
//! that complements ours. Because the expected fingerprint is fixed by the handshake,
//! a fingerprint change on renegotiation fails the same check.

use std::fmt;

use crate::crypto::ct_eq;

/// SHA-256 of a DTLS certificate (fresh per session). Public.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DtlsFingerprint(pub [u8; 32]);

impl DtlsFingerprint {
    /// The SDP form: `AB:CD:…` (upper-case hex, colon separated).
    pub fn to_sdp(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|b| format!("{b:02X}")).collect();
        parts.join(":")
    }

    /// Parses the SDP form (either case).
    pub fn from_sdp(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        let mut n = 0usize;
        for part in text.trim().split(':') {
            if part.len() != 2 || n >= 32 {
                return None;
            }
            out[n] = u8::from_str_radix(part, 16).ok()?;
            n += 1;
        }
        (n == 32).then_some(Self(out))
    }
}

impl fmt::Debug for DtlsFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DtlsFingerprint({})", crate::wire::Hex(&self.0[..8]))
    }
}

/// `a=setup` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// `actpass` (offers only).
    ActPass,
    /// `active`: this side starts DTLS.
    Active,
    /// `passive`: this side waits.
    Passive,
}

/// Whether an SDP is an offer or an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    /// An offer.
    Offer,
    /// An answer.
    Answer,
}

/// Why an SDP was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// No `a=fingerprint` line.
    #[error("the SDP has no DTLS fingerprint")]
    NoFingerprint,
    /// A fingerprint with another hash function.
    #[error("the SDP has a fingerprint that is not sha-256")]
    NotSha256,
    /// A fingerprint that could not be read.
    #[error("the SDP has a malformed fingerprint line")]
    BadFingerprint,
    /// The fingerprint is not the one authenticated in the handshake.
    #[error("the SDP's DTLS fingerprint is not the one authenticated in the handshake — someone tampered with the connection")]
    FingerprintMismatch,
    /// No usable `a=setup` line, or lines that disagree.
    #[error("the SDP has a missing or inconsistent a=setup")]
    BadSetup,
    /// The setup role does not complement ours.
    #[error("the SDP's a=setup does not complement ours")]
    SetupNotComplementary,
}

/// The setup role an SDP carries (all `a=setup` lines must agree).
pub fn setup_of(sdp: &str) -> Result<Setup, SdpError> {
    let mut found: Option<Setup> = None;
    for line in sdp.lines() {
        let Some(v) = line.trim_end_matches('\r').strip_prefix("a=setup:") else {
            continue;
        };
        let s = match v.trim() {
            "actpass" => Setup::ActPass,
            "active" => Setup::Active,
            "passive" => Setup::Passive,
            _ => return Err(SdpError::BadSetup),
        };
        if found.is_some_and(|f| f != s) {
            return Err(SdpError::BadSetup);
        }
        found = Some(s);
    }
    found.ok_or(SdpError::BadSetup)
}

/// Checks that every `a=fingerprint` line is `sha-256 <expected>` and there is at least one.
pub fn check_fingerprint(sdp: &str, expected: &DtlsFingerprint) -> Result<(), SdpError> {
    let mut seen = false;
    for line in sdp.lines() {
        let Some(v) = line.trim_end_matches('\r').strip_prefix("a=fingerprint:") else {
            continue;
        };
        let mut parts = v.split_whitespace();
        let (Some(hash), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SdpError::BadFingerprint);
        };
        if !hash.eq_ignore_ascii_case("sha-256") {
            return Err(SdpError::NotSha256);
        }
        let fp = DtlsFingerprint::from_sdp(value).ok_or(SdpError::BadFingerprint)?;
        if !ct_eq(&fp.0, &expected.0) {
            return Err(SdpError::FingerprintMismatch);
        }
        seen = true;
    }
    if seen {
        Ok(())
    } else {
        Err(SdpError::NoFingerprint)
    }
}

/// Checks an answer's setup against the offer's: `actpass` in the offer allows `active` or
/// `passive`; otherwise the answer must be the opposite. Answers never say `actpass`.
pub fn check_setup_answer(offer: Setup, answer: Setup) -> Result<(), SdpError> {
    match (offer, answer) {
        (_, Setup::ActPass) => Err(SdpError::SetupNotComplementary),
        (Setup::ActPass, _) => Ok(()),
        (o, a) if o != a => Ok(()),
        _ => Err(SdpError::SetupNotComplementary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(fp: &DtlsFingerprint, setup: &str) -> String {
        format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=fingerprint:sha-256 {}\r\na=setup:{setup}\r\n",
            fp.to_sdp()
        )
    }

    #[test]
    fn fingerprint_checks() {
        let fp = DtlsFingerprint([0xab; 32]);
        assert_eq!(DtlsFingerprint::from_sdp(&fp.to_sdp()), Some(fp));
        assert_eq!(check_fingerprint(&sdp(&fp, "actpass"), &fp), Ok(()));
        assert_eq!(
            check_fingerprint(&sdp(&DtlsFingerprint([1; 32]), "actpass"), &fp),
            Err(SdpError::FingerprintMismatch)
        );
        let two = format!(
            "{}a=fingerprint:sha-256 {}\r\n",
            sdp(&fp, "actpass"),
            DtlsFingerprint([1; 32]).to_sdp()
        );
        assert_eq!(
            check_fingerprint(&two, &fp),
            Err(SdpError::FingerprintMismatch)
        );
        let sha1 = sdp(&fp, "actpass").replace("sha-256", "sha-1");
        assert_eq!(check_fingerprint(&sha1, &fp), Err(SdpError::NotSha256));
        assert_eq!(
            check_fingerprint("v=0\r\n", &fp),
            Err(SdpError::NoFingerprint)
        );
        assert_eq!(DtlsFingerprint::from_sdp("AB:CD"), None);
        assert_eq!(
            DtlsFingerprint::from_sdp(&format!("{}:00", fp.to_sdp())),
            None
        );
    }

    #[test]
    fn setup_checks() {
        let fp = DtlsFingerprint([0; 32]);
        assert_eq!(setup_of(&sdp(&fp, "actpass")), Ok(Setup::ActPass));
        assert_eq!(setup_of("v=0\r\n"), Err(SdpError::BadSetup));
        let mixed = format!("{}a=setup:active\r\n", sdp(&fp, "passive"));
        assert_eq!(setup_of(&mixed), Err(SdpError::BadSetup));
        assert_eq!(check_setup_answer(Setup::ActPass, Setup::Active), Ok(()));
        assert_eq!(check_setup_answer(Setup::Active, Setup::Passive), Ok(()));
        assert!(check_setup_answer(Setup::Active, Setup::Active).is_err());
        assert!(check_setup_answer(Setup::ActPass, Setup::ActPass).is_err());
    }
}
