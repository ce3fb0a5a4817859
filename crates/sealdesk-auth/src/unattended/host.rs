//! The host's side of unattended access: [`handle_b1`] → [`ExpectB3`] → [`Established`].

use std::fmt;

use rand_core::CryptoRngCore;
use sealdesk_proto::RoutingNumber;
use x25519_dalek::{EphemeralSecret, PublicKey};

use super::{schedule, th_b, th_b2, th_final, HsKeys, HOST_MAC, HOST_SIG, VIEWER_MAC, VIEWER_SIG};
use crate::crypto::{hmac, hmac_verify};
use crate::error::HandshakeError;
use crate::identity::{DeviceFingerprint, IdentityKey};
use crate::messages::{decode_b1, decode_b3, IdentityPayload, B2};
use crate::negotiate::{choose, Choice, Offer};
use crate::sdp::DtlsFingerprint;
use crate::sealed::{SealedKind, SealedSignaling};
use crate::session::{AccessKind, Established, PeerIdentity, Role, SessionKeys, ViewerKind};
use crate::trust::{PairingRegistry, Permissions};

/// The host refused B3. When the viewer was authenticated but is not allowed in, `notice`
/// is a sealed bye saying why, to send back; otherwise there is nothing to send.
#[derive(Debug)]
pub struct Rejected {
    /// Why.
    pub error: HandshakeError,
    /// A sealed bye for the viewer, if it proved its identity.
    pub notice: Option<Vec<u8>>,
}

impl From<HandshakeError> for Rejected {
    fn from(error: HandshakeError) -> Self {
        Self {
            error,
            notice: None,
        }
    }
}

/// Waiting for the viewer's B3.
pub struct ExpectB3 {
    ks: HsKeys,
    th_b2: [u8; 32],
    choice: Choice,
    fp_v: DtlsFingerprint,
    fp_h: DtlsFingerprint,
}

impl fmt::Debug for ExpectB3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpectB3").finish_non_exhaustive()
    }
}

/// This host, as the unattended handshake needs it.
#[derive(Debug, Clone, Copy)]
pub struct HostInfo<'a> {
    /// Our routing number (B1 must name it).
    pub routing: RoutingNumber,
    /// Our identity key.
    pub identity: &'a IdentityKey,
    /// Our label.
    pub label: &'a str,
    /// Our versions and suites.
    pub offer: &'a Offer,
}

/// Handles B1 and returns the state and B2.
pub fn handle_b1(
    host: HostInfo<'_>,
    bytes: &[u8],
    fp_h: DtlsFingerprint,
    rng: &mut impl CryptoRngCore,
) -> Result<(ExpectB3, Vec<u8>), HandshakeError> {
    let b1 = decode_b1(bytes)?;
    if b1.routing != host.routing {
        return Err(HandshakeError::WrongHost {
            expected: host.routing,
            got: b1.routing,
        });
    }
    let offer = host.offer.sanitized();
    let (version, suite) = choose(&b1.offer, &offer)?;
    let choice = Choice {
        version,
        suite,
        host: offer,
    };
    let e_h = EphemeralSecret::random_from_rng(&mut *rng);
    let e_h_pub = PublicKey::from(&e_h).to_bytes();
    let dh = e_h.diffie_hellman(&PublicKey::from(b1.e_v));
    if !dh.was_contributory() {
        return Err(HandshakeError::InvalidKeyShare);
    }
    let mut n_h = [0u8; 32];
    rng.fill_bytes(&mut n_h);
    let th_b = th_b(&b1, &choice, &n_h, &e_h_pub, &fp_h);
    let ks = schedule(&th_b, dh.as_bytes());
    drop(dh);
    let me = host.identity.public();
    let enc_h = IdentityPayload {
        key: me,
        label: host.label.to_owned(),
        permissions: 0,
        sig: host.identity.sign(&[HOST_SIG, &th_b].concat()),
        mac: hmac(&ks.km_h, &[HOST_MAC, me.as_bytes()]),
        kind: ViewerKind::Native,
    }
    .seal(suite, &ks.k_h2v, &th_b);
    let th_b2 = th_b2(&th_b, &enc_h);
    let b2 = B2 {
        choice: choice.clone(),
        n_h,
        e_h: e_h_pub,
        fp_h,
        enc_h,
    };
    Ok((
        ExpectB3 {
            ks,
            th_b2,
            choice,
            fp_v: b1.fp_v,
            fp_h,
        },
        b2.encode(),
    ))
}

impl ExpectB3 {
    /// Handles B3: the viewer must be paired, not revoked, and allowed `unattended` plus
    /// everything it requests. Returns the session, its sealed channel and the sealed
    /// Accept to send.
    pub fn handle_b3(
        self,
        bytes: &[u8],
        registry: &PairingRegistry,
    ) -> Result<(Established, SealedSignaling, Vec<u8>), Rejected> {
        let b3 = decode_b3(bytes).map_err(HandshakeError::from)?;
        let suite = self.choice.suite;
        let viewer = IdentityPayload::open(suite, &self.ks.k_v2h, &self.th_b2, &b3.enc_v)?;
        if !viewer
            .key
            .verify_strict(&[VIEWER_SIG, &self.th_b2].concat(), &viewer.sig)
            || !hmac_verify(
                &self.ks.km_v,
                &[VIEWER_MAC, viewer.key.as_bytes()],
                &viewer.mac,
            )
        {
            return Err(HandshakeError::BadIdentityProof.into());
        }
        let th_final = th_final(&self.th_b2, &b3.enc_v);
        let requested = Permissions::from_bits_truncate(viewer.permissions);
        let entry = registry.get(&viewer.key);
        let mut est = Established {
            role: Role::Host,
            kind: AccessKind::Unattended,
            version: self.choice.version,
            suite,
            // The label shown is the one the host user gave at pairing, not the one sent now.
            peer: PeerIdentity {
                key: viewer.key,
                label: entry.map_or(viewer.label, |e| e.label.clone()),
                kind: viewer.kind,
            },
            fp_local: self.fp_h,
            fp_peer: self.fp_v,
            permissions: Permissions::NONE,
            th_final,
            keys: SessionKeys::derive(&self.ks.prk, &th_final),
        };
        let mut sealed = est.sealed();
        if let Err(error) = check_registry(entry, &viewer.key, requested) {
            let notice = sealed
                .seal(SealedKind::Bye, error.to_string().as_bytes())
                .ok();
            return Err(Rejected { error, notice });
        }
        est.permissions = requested;
        let accept = sealed
            .seal(SealedKind::Accept, &requested.bits().to_be_bytes())
            .map_err(|_| HandshakeError::UnexpectedMessage("cannot seal accept"))?;
        Ok((est, sealed, accept))
    }
}

fn check_registry(
    entry: Option<&crate::trust::PairedDevice>,
    key: &sealdesk_proto::DeviceKey,
    requested: Permissions,
) -> Result<(), HandshakeError> {
    let fpr = DeviceFingerprint::of(key);
    let entry = entry.ok_or(HandshakeError::UnknownDevice(fpr))?;
    if entry.revoked {
        return Err(HandshakeError::Revoked(fpr));
    }
    let needed = requested.union(Permissions::UNATTENDED);
    if !entry.permissions.contains(needed) {
        return Err(HandshakeError::NotPermitted {
            device: fpr,
            missing: needed.minus(entry.permissions),
        });
    }
    Ok(())
}
