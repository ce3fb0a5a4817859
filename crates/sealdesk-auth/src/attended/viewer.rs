//! The viewer's side of attended access: [`start`] → [`ExpectA2`] → [`Established`].

use std::fmt;

use rand_core::CryptoRngCore;
use spake2::{Identity, Password};
use zeroize::Zeroizing;

use super::{
    conf_h_parts, conf_v_parts, host_sig_msg, schedule, th1, th_final, viewer_sig_msg, Spake,
};
use crate::code::{Moment, OneTimeCode, ViewerAttempts};
use crate::crypto::{h, hmac, hmac_verify};
use crate::error::{spake_error, HandshakeError};
use crate::identity::IdentityKey;
use crate::messages::{decode_a2, IdentityPayload, A1, A3, SPAKE2_MSG_LEN};
use crate::negotiate::{is_best_choice, Offer};
use crate::sdp::DtlsFingerprint;
use crate::session::{
    AccessKind, Established, ExpectAccept, PeerIdentity, Role, SessionKeys, ViewerKind,
};
use crate::trust::{check_label, Permissions};

/// Waiting for the host's A2.
pub struct ExpectA2 {
    spake: Spake,
    a1: A1,
}

impl fmt::Debug for ExpectA2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpectA2")
            .field("routing", &self.a1.routing)
            .finish_non_exhaustive()
    }
}

/// Starts a run with a code the user typed. Returns the state and A1 to send to the host.
///
/// Refused with [`HandshakeError::ViewerLockedOut`] after 3 failed runs against this host
/// number in the last 10 minutes.
pub fn start<T: Moment>(
    code: &OneTimeCode,
    offer: &Offer,
    fp_v: DtlsFingerprint,
    attempts: &mut ViewerAttempts<T>,
    now: T,
    rng: &mut impl CryptoRngCore,
) -> Result<(ExpectA2, Vec<u8>), HandshakeError> {
    if !attempts.allowed(code.routing, now) {
        return Err(HandshakeError::ViewerLockedOut(code.routing));
    }
    let pw = code.password();
    let (spake, x) = Spake::start_a_with_rng(
        &Password::new(&pw[..]),
        &Identity::new(super::SPAKE_ID_VIEWER),
        &Identity::new(super::SPAKE_ID_HOST),
        &mut *rng,
    );
    let x: [u8; SPAKE2_MSG_LEN] = x
        .try_into()
        .map_err(|_| HandshakeError::UnexpectedMessage("SPAKE2 message length"))?;
    let mut n_v = [0u8; 32];
    rng.fill_bytes(&mut n_v);
    let a1 = A1 {
        offer: offer.sanitized(),
        routing: code.routing,
        n_v,
        x,
        fp_v,
    };
    let bytes = a1.encode();
    Ok((ExpectA2 { spake, a1 }, bytes))
}

impl ExpectA2 {
    /// Whether the host answered A1 with an abort (code expired, busy, …), and what it
    /// said. This does not count as a failed run: no code was tested.
    pub fn check_abort(&self, bytes: &[u8]) -> Option<HandshakeError> {
        crate::messages::decode_abort(bytes)
            .ok()
            .map(|a| HandshakeError::PeerAborted(a.reason()))
    }

    /// Handles A2: checks the host's choice, key confirmation and identity, then returns A3
    /// to send and the state that waits for the host user's answer. A failed confirmation
    /// counts against the host number.
    pub fn handle_a2<T: Moment>(
        self,
        bytes: &[u8],
        identity: &IdentityKey,
        label: &str,
        attempts: &mut ViewerAttempts<T>,
        now: T,
    ) -> Result<(ExpectAccept, Vec<u8>), HandshakeError> {
        self.handle_a2_as(bytes, identity, label, ViewerKind::Native, attempts, now)
    }

    /// [`ExpectA2::handle_a2`] for a viewer that is not the native program: `kind` goes
    /// into its encrypted identity, so the host can say what kind of viewer asks.
    pub fn handle_a2_as<T: Moment>(
        self,
        bytes: &[u8],
        identity: &IdentityKey,
        label: &str,
        kind: ViewerKind,
        attempts: &mut ViewerAttempts<T>,
        now: T,
    ) -> Result<(ExpectAccept, Vec<u8>), HandshakeError> {
        check_label(label).map_err(|_| HandshakeError::UnexpectedMessage("own label invalid"))?;
        let a2 = decode_a2(bytes)?;
        if !is_best_choice(&self.a1.offer, &a2.choice) {
            return Err(HandshakeError::Downgrade);
        }
        let routing = self.a1.routing;
        let key = Zeroizing::new(self.spake.finish(&a2.y).map_err(|e| spake_error(e, "Y"))?);
        let th1 = th1(&self.a1, &a2.choice, &a2.n_h, &a2.y, &a2.fp_h);
        let ks = schedule(&th1, &key);
        if !hmac_verify(&ks.kc_h, &conf_h_parts(&th1, &h(&a2.id_h)), &a2.conf_h) {
            let left = attempts.record_failure(routing, now);
            return Err(HandshakeError::WrongCodeOrTampered {
                attempts_left: left,
            });
        }
        let suite = a2.choice.suite;
        let host = IdentityPayload::open(suite, &ks.k_h2v, &th1, &a2.id_h)?;
        if !host.key.verify_strict(&host_sig_msg(&th1), &host.sig) {
            return Err(HandshakeError::BadIdentityProof);
        }
        attempts.record_success(routing);

        let sig = identity.sign(&viewer_sig_msg(&th1, &a2.conf_h));
        let id_v = IdentityPayload {
            key: identity.public(),
            label: label.to_owned(),
            permissions: 0,
            sig,
            mac: [0; 32],
            kind,
        }
        .seal(suite, &ks.k_v2h, &th1);
        let conf_v = hmac(&ks.kc_v, &conf_v_parts(&th1, &a2.conf_h, &h(&id_v)));
        let th_final = th_final(&th1, &a2.conf_h, &conf_v, &a2.id_h, &id_v);
        let est = Established {
            role: Role::Viewer,
            kind: AccessKind::Attended,
            version: a2.choice.version,
            suite,
            peer: PeerIdentity {
                key: host.key,
                label: host.label,
                kind: host.kind,
            },
            fp_local: self.a1.fp_v,
            fp_peer: a2.fp_h,
            permissions: Permissions::NONE,
            th_final,
            keys: SessionKeys::derive(&ks.prk, &th_final),
        };
        Ok((ExpectAccept::new(est), A3 { id_v, conf_v }.encode()))
    }
}
