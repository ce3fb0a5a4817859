//! What a finished handshake yields: who the peer is, both DTLS fingerprints, and keys.

use std::fmt;

use sealdesk_proto::DeviceKey;

use crate::crypto::{Prk, Secret32};
use crate::error::HandshakeError;
use crate::identity::DeviceFingerprint;
use crate::negotiate::Suite;
use crate::sdp::DtlsFingerprint;
use crate::sealed::{SealError, SealedKind, SealedSignaling, BYE_DECLINED};
use crate::trust::Permissions;

/// Which end of the session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The machine being controlled.
    Host,
    /// The controlling side.
    Viewer,
}

/// How the peer was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    /// With a one-time code and the host user's consent.
    Attended,
    /// With pinned keys of paired devices.
    Unattended,
}

/// What program a viewer says it is. It travels inside the viewer's encrypted identity, so
/// neither the server nor the network can change it; but it is the viewer's own word: a
/// page the signaling server served is code the server wrote, and could say anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ViewerKind {
    /// The native `sealdesk` program (and every host: hosts are native).
    #[default]
    Native,
    /// The browser viewer, served by the viewer's own `sealdesk` on its machine
    /// (`sealdesk connect --web`): the same trust as the native viewer.
    Browser,
    /// The browser viewer, served by the signaling server (`sealdesk server --web-viewer`):
    /// code from the server runs the session, so the server could read it (DESIGN.md §8).
    ServerServedBrowser,
}

impl ViewerKind {
    /// Its byte in an identity payload (`None`: the byte is left out, as native viewers and
    /// hosts always did).
    pub(crate) fn byte(self) -> Option<u8> {
        match self {
            ViewerKind::Native => None,
            ViewerKind::Browser => Some(1),
            ViewerKind::ServerServedBrowser => Some(2),
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(ViewerKind::Browser),
            2 => Some(ViewerKind::ServerServedBrowser),
            _ => None,
        }
    }

    /// How to show it to the host's user.
    pub fn describe(self) -> &'static str {
        match self {
            ViewerKind::Native => "sealdesk viewer",
            ViewerKind::Browser => "browser (served by its own sealdesk)",
            ViewerKind::ServerServedBrowser => "browser (served by the server)",
        }
    }
}

/// The authenticated peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Its identity key, learned inside the authenticated exchange.
    pub key: DeviceKey,
    /// The label it gave (not verified by anyone: display it as "calls itself").
    pub label: String,
    /// What program it says it is (a host is always [`ViewerKind::Native`]).
    pub kind: ViewerKind,
}

impl PeerIdentity {
    /// Its fingerprint.
    pub fn fingerprint(&self) -> DeviceFingerprint {
        DeviceFingerprint::of(&self.key)
    }
}

/// The session keys derived from `TH_final`. Zeroized on drop; `Debug` hides them.
pub struct SessionKeys {
    /// Seals signaling from host to viewer.
    pub sig_h2v: Secret32,
    /// Seals signaling from viewer to host.
    pub sig_v2h: Secret32,
    /// Application channel key, host to viewer.
    pub chan_h2v: Secret32,
    /// Application channel key, viewer to host.
    pub chan_v2h: Secret32,
}

impl SessionKeys {
    pub(crate) fn derive(prk: &Prk, th_final: &[u8; 32]) -> Self {
        Self {
            sig_h2v: prk.expand("sealdesk/v1 k_sig_h2v", th_final),
            sig_v2h: prk.expand("sealdesk/v1 k_sig_v2h", th_final),
            chan_h2v: prk.expand("sealdesk/v1 k_chan_h2v", th_final),
            chan_v2h: prk.expand("sealdesk/v1 k_chan_v2h", th_final),
        }
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

/// A completed, mutually authenticated handshake.
#[derive(Debug)]
pub struct Established {
    /// This side's role.
    pub role: Role,
    /// Attended or unattended.
    pub kind: AccessKind,
    /// The negotiated protocol version.
    pub version: u16,
    /// The negotiated suite.
    pub suite: Suite,
    /// The peer.
    pub peer: PeerIdentity,
    /// This side's DTLS fingerprint, as authenticated.
    pub fp_local: DtlsFingerprint,
    /// The peer's DTLS fingerprint, as authenticated. DTLS must present exactly this.
    pub fp_peer: DtlsFingerprint,
    /// Permissions: requested by the viewer (unattended) or granted at consent (attended).
    pub permissions: Permissions,
    /// `TH_final`: binds everything above. Public (it is a hash of public values and MACs).
    pub th_final: [u8; 32],
    /// The derived keys.
    pub keys: SessionKeys,
}

impl Established {
    /// The sealed signaling channel for this session.
    pub fn sealed(&self) -> SealedSignaling {
        SealedSignaling::new(self)
    }
}

/// The viewer finished its part; the host has not yet said yes (its user's consent, or its
/// registry check). Nothing may be sent to the host's screen or input before
/// [`ExpectAccept::handle`] returns the session.
#[derive(Debug)]
pub struct ExpectAccept {
    est: Established,
    sealed: SealedSignaling,
}

impl ExpectAccept {
    pub(crate) fn new(est: Established) -> Self {
        let sealed = est.sealed();
        Self { est, sealed }
    }

    /// The host, as authenticated (the viewer may show it while waiting).
    pub fn peer(&self) -> &PeerIdentity {
        &self.est.peer
    }

    /// Handles a sealed message from the host. `Ok(None)`: not the answer yet, or a forged
    /// or replayed message (dropped, keep waiting). `Ok(Some(..))`: the host accepted with
    /// the permissions in `Established::permissions`. `Err`: the host refused.
    pub fn handle(
        mut self,
        bytes: &[u8],
    ) -> Result<Result<(Established, SealedSignaling), Self>, HandshakeError> {
        match self.sealed.open(bytes) {
            Ok(m) if m.kind == SealedKind::Accept => {
                let bits = match m.body.as_slice() {
                    [a, b] => u16::from_be_bytes([*a, *b]),
                    _ => return Err(HandshakeError::UnexpectedMessage("malformed accept")),
                };
                let granted = Permissions::from_bits_truncate(bits);
                self.est.permissions = match self.est.kind {
                    // Unattended: the host grants exactly what was requested, or refuses.
                    AccessKind::Unattended if granted != self.est.permissions => {
                        return Err(HandshakeError::UnexpectedMessage(
                            "accept with other permissions than requested",
                        ))
                    }
                    _ => granted,
                };
                Ok(Ok((self.est, self.sealed)))
            }
            Ok(m) if m.kind == SealedKind::Bye => {
                if m.body == BYE_DECLINED {
                    Err(HandshakeError::Declined)
                } else {
                    Err(HandshakeError::RefusedByHost(crate::error::sanitize(
                        &m.body,
                    )))
                }
            }
            Ok(_) => Err(HandshakeError::UnexpectedMessage(
                "signaling before the host accepted",
            )),
            Err(SealError::Forged | SealError::Replay { .. } | SealError::Malformed(_)) => {
                Ok(Err(self))
            }
            Err(_) => Err(HandshakeError::UnexpectedMessage(
                "invalid answer from the host",
            )),
        }
    }
}
