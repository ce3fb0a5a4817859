//! Protocol version and cipher-suite negotiation (DESIGN.md §4).
//!
//! The viewer offers ordered lists; the host answers with its choice *and its own lists*.
//! Both offers and the choice go into the handshake transcript, so a server that strips
//! or reorders a list makes key confirmation fail; in addition the viewer checks that the
//! host picked the best option the two lists have in common.

use crate::wire::{DecodeError, Reader, Writer};

/// The most entries a version or suite list may have on the wire.
pub const MAX_LIST: usize = 8;

/// The handshake protocol versions this implementation speaks, best first.
pub const SUPPORTED_VERSIONS: &[u16] = &[1];

/// An AEAD suite for the handshake's encrypted identities and the sealed signaling.
/// Every suite uses SPAKE2 (Ed25519 group) or X25519, Ed25519 signatures and HKDF-SHA256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// ChaCha20-Poly1305 (RFC 8439): constant-time everywhere, including WebAssembly.
    ChaCha20Poly1305,
    /// AES-256-GCM: faster where the CPU has AES instructions.
    Aes256Gcm,
}

impl Suite {
    /// The wire identifier.
    pub const fn id(self) -> u16 {
        match self {
            Suite::ChaCha20Poly1305 => 0x0001,
            Suite::Aes256Gcm => 0x0002,
        }
    }

    /// The suite with this wire identifier, if we implement it.
    pub const fn from_id(id: u16) -> Option<Self> {
        match id {
            0x0001 => Some(Suite::ChaCha20Poly1305),
            0x0002 => Some(Suite::Aes256Gcm),
            _ => None,
        }
    }
}

/// The suites this implementation offers by default, best first.
pub const DEFAULT_SUITES: &[Suite] = &[Suite::ChaCha20Poly1305, Suite::Aes256Gcm];

/// What one side supports, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Protocol versions, best first.
    pub versions: Vec<u16>,
    /// Suite identifiers, best first.
    pub suites: Vec<u16>,
}

impl Default for Offer {
    fn default() -> Self {
        Self {
            versions: SUPPORTED_VERSIONS.to_vec(),
            suites: DEFAULT_SUITES.iter().map(|s| s.id()).collect(),
        }
    }
}

impl Offer {
    /// An offer restricted to `suites` (best first), for deployments that want one suite.
    pub fn with_suites(suites: &[Suite]) -> Self {
        Self {
            versions: SUPPORTED_VERSIONS.to_vec(),
            suites: suites.iter().map(|s| s.id()).collect(),
        }
    }

    /// Drops values we do not implement, duplicates, and anything past [`MAX_LIST`].
    pub(crate) fn sanitized(&self) -> Self {
        fn keep(list: &[u16], ok: impl Fn(u16) -> bool) -> Vec<u16> {
            let mut out: Vec<u16> = Vec::new();
            for &v in list {
                if ok(v) && !out.contains(&v) && out.len() < MAX_LIST {
                    out.push(v);
                }
            }
            out
        }
        Self {
            versions: keep(&self.versions, |v| SUPPORTED_VERSIONS.contains(&v)),
            suites: keep(&self.suites, |s| Suite::from_id(s).is_some()),
        }
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.list16(&self.versions).list16(&self.suites);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            versions: r.list16("versions", MAX_LIST)?,
            suites: r.list16("suites", MAX_LIST)?,
        })
    }

    /// The encoding hashed into transcripts.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write(&mut w);
        w.buf
    }
}

/// The host's answer: the chosen version and suite, and the host's own lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The chosen protocol version.
    pub version: u16,
    /// The chosen suite.
    pub suite: Suite,
    /// What the host supports, best first (lets the viewer detect a downgrade).
    pub host: Offer,
}

impl Choice {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.u16(self.version).u16(self.suite.id());
        self.host.write(w);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u16("version")?;
        let suite = Suite::from_id(r.u16("suite")?).ok_or(DecodeError::Invalid("suite"))?;
        let host = Offer::read(r)?;
        Ok(Self {
            version,
            suite,
            host,
        })
    }

    /// The encoding hashed into transcripts.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write(&mut w);
        w.buf
    }
}

/// No value is in both lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoCommon {
    Version,
    Suite,
}

/// The responder's choice: the first entry of the *initiator's* list that the responder
/// also supports (the initiator's preference wins, as in TLS).
pub(crate) fn choose(initiator: &Offer, responder: &Offer) -> Result<(u16, Suite), NoCommon> {
    let version = initiator
        .versions
        .iter()
        .copied()
        .find(|v| responder.versions.contains(v) && SUPPORTED_VERSIONS.contains(v))
        .ok_or(NoCommon::Version)?;
    let suite = initiator
        .suites
        .iter()
        .copied()
        .find(|s| responder.suites.contains(s))
        .and_then(Suite::from_id)
        .ok_or(NoCommon::Suite)?;
    Ok((version, suite))
}

/// The initiator's check of the responder's choice: it must be exactly what
/// [`choose`] gives on the two lists.
pub(crate) fn is_best_choice(initiator: &Offer, choice: &Choice) -> bool {
    matches!(choose(initiator, &choice.host), Ok((v, s)) if v == choice.version && s == choice.suite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initiator_preference_wins_and_unknown_values_are_skipped() {
        let v = Offer {
            versions: vec![9, 1],
            suites: vec![0x0002, 0x0001],
        };
        let h = Offer::default();
        assert_eq!(choose(&v, &h), Ok((1, Suite::Aes256Gcm)));
        let only_chacha = Offer::with_suites(&[Suite::ChaCha20Poly1305]);
        assert_eq!(choose(&v, &only_chacha), Ok((1, Suite::ChaCha20Poly1305)));
        assert_eq!(
            choose(
                &Offer {
                    versions: vec![],
                    suites: vec![1]
                },
                &h
            ),
            Err(NoCommon::Version)
        );
        assert_eq!(
            choose(
                &Offer {
                    versions: vec![1],
                    suites: vec![7]
                },
                &h
            ),
            Err(NoCommon::Suite)
        );
    }

    #[test]
    fn a_worse_choice_is_a_downgrade() {
        let v = Offer::default();
        let honest = Choice {
            version: 1,
            suite: Suite::ChaCha20Poly1305,
            host: Offer::default(),
        };
        assert!(is_best_choice(&v, &honest));
        let worse = Choice {
            suite: Suite::Aes256Gcm,
            ..honest.clone()
        };
        assert!(!is_best_choice(&v, &worse));
        // A host that only has AES may pick it.
        let aes_host = Choice {
            suite: Suite::Aes256Gcm,
            host: Offer::with_suites(&[Suite::Aes256Gcm]),
            version: 1,
        };
        assert!(is_best_choice(&v, &aes_host));
    }

    #[test]
    fn sanitized_drops_unknown_and_duplicates() {
        let o = Offer {
            versions: vec![1, 1, 5],
            suites: vec![3, 2, 2, 1],
        };
        assert_eq!(
            o.sanitized(),
            Offer {
                versions: vec![1],
                suites: vec![2, 1]
            }
        );
    }
}
