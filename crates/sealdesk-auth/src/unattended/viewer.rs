//! The viewer's side of unattended access: [`start`] → [`ExpectB2`] → [`Established`].

use std::fmt;

use rand_core::CryptoRngCore;
use x25519_dalek::{EphemeralSecret, PublicKey};

use super::{schedule, th_b, th_b2, th_final, HOST_MAC, HOST_SIG, VIEWER_MAC, VIEWER_SIG};
use crate::crypto::{hmac, hmac_verify};
use crate::error::HandshakeError;
use crate::identity::{DeviceFingerprint, IdentityKey};
use crate::messages::{decode_b2, IdentityPayload, B1, B3};
use crate::negotiate::{is_best_choice, Offer};
use crate::sdp::DtlsFingerprint;
use crate::session::{
    AccessKind, Established, ExpectAccept, PeerIdentity, Role, SessionKeys, ViewerKind,
};
use crate::trust::{check_label, Permissions, PinnedHost};

/// Waiting for the host's B2.
pub struct ExpectB2 {
    e_v: EphemeralSecret,
    b1: B1,
    pinned: PinnedHost,
}

impl fmt::Debug for ExpectB2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpectB2")
            .field("routing", &self.b1.routing)
            .finish_non_exhaustive()
    }
}

/// Starts an unattended run with a host pinned earlier. Returns the state and B1.
pub fn start(
    pinned: &PinnedHost,
    offer: &Offer,
    fp_v: DtlsFingerprint,
    rng: &mut impl CryptoRngCore,
) -> (ExpectB2, Vec<u8>) {
    let e_v = EphemeralSecret::random_from_rng(&mut *rng);
    let mut n_v = [0u8; 32];
    rng.fill_bytes(&mut n_v);
    let b1 = B1 {
        offer: offer.sanitized(),
        routing: pinned.routing,
        n_v,
        e_v: PublicKey::from(&e_v).to_bytes(),
        fp_v,
    };
    let bytes = b1.encode();
    (
        ExpectB2 {
            e_v,
            b1,
            pinned: pinned.clone(),
        },
        bytes,
    )
}

impl ExpectB2 {
    /// Handles B2: the host must prove the pinned key. Returns B3 and the state that waits
    /// for the host's registry check.
    pub fn handle_b2(
        self,
        bytes: &[u8],
        identity: &IdentityKey,
        label: &str,
        requested: Permissions,
    ) -> Result<(ExpectAccept, Vec<u8>), HandshakeError> {
        self.handle_b2_as(bytes, identity, label, ViewerKind::Native, requested)
    }

    /// [`ExpectB2::handle_b2`] for a viewer that is not the native program: `kind` goes
    /// into its encrypted identity, so the host can say what kind of viewer asks.
    pub fn handle_b2_as(
        self,
        bytes: &[u8],
        identity: &IdentityKey,
        label: &str,
        kind: ViewerKind,
        requested: Permissions,
    ) -> Result<(ExpectAccept, Vec<u8>), HandshakeError> {
        check_label(label).map_err(|_| HandshakeError::UnexpectedMessage("own label invalid"))?;
        let b2 = decode_b2(bytes)?;
        if !is_best_choice(&self.b1.offer, &b2.choice) {
            return Err(HandshakeError::Downgrade);
        }
        let dh = self.e_v.diffie_hellman(&PublicKey::from(b2.e_h));
        if !dh.was_contributory() {
            return Err(HandshakeError::InvalidKeyShare);
        }
        let th_b = th_b(&self.b1, &b2.choice, &b2.n_h, &b2.e_h, &b2.fp_h);
        let ks = schedule(&th_b, dh.as_bytes());
        drop(dh);
        let suite = b2.choice.suite;
        let host = IdentityPayload::open(suite, &ks.k_h2v, &th_b, &b2.enc_h)?;
        if host.key != self.pinned.key {
            return Err(HandshakeError::HostKeyChanged {
                pinned: self.pinned.fingerprint(),
                presented: DeviceFingerprint::of(&host.key),
            });
        }
        if !host
            .key
            .verify_strict(&[HOST_SIG, &th_b].concat(), &host.sig)
            || !hmac_verify(&ks.km_h, &[HOST_MAC, host.key.as_bytes()], &host.mac)
        {
            return Err(HandshakeError::BadIdentityProof);
        }
        let th_b2 = th_b2(&th_b, &b2.enc_h);
        let me = identity.public();
        let enc_v = IdentityPayload {
            key: me,
            label: label.to_owned(),
            permissions: requested.bits(),
            sig: identity.sign(&[VIEWER_SIG, &th_b2].concat()),
            mac: hmac(&ks.km_v, &[VIEWER_MAC, me.as_bytes()]),
            kind,
        }
        .seal(suite, &ks.k_v2h, &th_b2);
        let th_final = th_final(&th_b2, &enc_v);
        let est = Established {
            role: Role::Viewer,
            kind: AccessKind::Unattended,
            version: b2.choice.version,
            suite,
            peer: PeerIdentity {
                key: host.key,
                label: host.label,
                kind: host.kind,
            },
            fp_local: self.b1.fp_v,
            fp_peer: b2.fp_h,
            permissions: requested,
            th_final,
            keys: SessionKeys::derive(&ks.prk, &th_final),
        };
        Ok((ExpectAccept::new(est), B3 { enc_v }.encode()))
    }
}
