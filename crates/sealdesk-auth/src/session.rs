//! What a finished handshake yields: who the peer is, both DTLS fingerprints, and keys.

use std::fmt;

use sealdesk_proto::DeviceKey;

use crate::crypto::{Prk, Secret32};
use crate::identity::DeviceFingerprint;
use crate::negotiate::Suite;
use crate::sdp::DtlsFingerprint;
use crate::sealed::SealedSignaling;
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

/// The authenticated peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Its identity key, learned inside the authenticated exchange.
    pub key: DeviceKey,
    /// The label it gave (not verified by anyone: display it as "calls itself").
    pub label: String,
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
