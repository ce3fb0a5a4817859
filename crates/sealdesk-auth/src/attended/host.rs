//! The host's side of attended access: one [`AttendedHost`] per code shown on screen.
//!
//! It enforces the code's limits (3 runs counted at A1, one in flight, 10 minutes, single
//! use) and walks each run through [`ExpectA3`] → [`PendingConsent`] → [`Established`].

use std::fmt;
use std::time::Instant;

use rand_core::CryptoRngCore;
use spake2::{Identity, Password};
use zeroize::Zeroizing;

use super::{
    conf_h, conf_v_parts, host_sig_msg, schedule, th1, th_final, viewer_sig_msg, HsKeys, Spake,
};
use crate::code::{CodeLimits, CodeRefusal, OneTimeCode};
use crate::crypto::{h, hmac_verify};
use crate::error::{spake_error, HandshakeError};
use crate::identity::IdentityKey;
use crate::messages::{decode_a1, decode_a3, IdentityPayload, A2, SPAKE2_MSG_LEN};
use crate::negotiate::{choose, Choice, Offer};
use crate::sdp::DtlsFingerprint;
use crate::sealed::{SealedKind, SealedSignaling};
use crate::session::{AccessKind, Established, PeerIdentity, Role, SessionKeys, ViewerKind};
use crate::trust::{check_label, Permissions};

/// A code on the host's screen and the runs made against it.
pub struct AttendedHost {
    code: OneTimeCode,
    offer: Offer,
    limits: CodeLimits,
    run: u64,
}

impl fmt::Debug for AttendedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttendedHost")
            .field("routing", &self.code.routing)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Waiting for the viewer's A3.
pub struct ExpectA3 {
    run: u64,
    ks: HsKeys,
    th1: [u8; 32],
    conf_h: [u8; 32],
    id_h: Vec<u8>,
    choice: Choice,
    fp_v: DtlsFingerprint,
    fp_h: DtlsFingerprint,
}

impl fmt::Debug for ExpectA3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpectA3")
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

/// The viewer proved the code and its identity; the host user must now decide.
#[derive(Debug)]
pub struct PendingConsent {
    est: Established,
}

impl AttendedHost {
    /// A host showing `code` (drawn with [`OneTimeCode::draw`]) from `now`.
    pub fn new(code: OneTimeCode, offer: &Offer, now: Instant) -> Self {
        Self {
            code,
            offer: offer.sanitized(),
            limits: CodeLimits::new(now),
            run: 0,
        }
    }

    /// The code to show.
    pub fn code(&self) -> &OneTimeCode {
        &self.code
    }

    /// When the code stops working.
    pub fn expires_at(&self) -> Instant {
        self.limits.expires_at()
    }

    /// Runs this code still allows.
    pub fn attempts_left(&self) -> u8 {
        self.limits.attempts_left()
    }

    /// When to call again even if nothing arrives: the in-flight run's deadline, else expiry.
    pub fn poll_timeout(&self) -> Instant {
        self.limits
            .in_flight_deadline()
            .unwrap_or_else(|| self.limits.expires_at())
    }

    /// Whether the code can no longer be used (expired, spent or exhausted).
    pub fn is_finished(&self, now: Instant) -> bool {
        self.limits.is_used()
            || self.limits.is_expired(now)
            || self.limits.attempts_left() == 0 && self.limits.in_flight_deadline().is_none()
    }

    /// Handles A1. Spends one of the code's attempts before any cryptography.
    #[allow(
        clippy::too_many_arguments,
        reason = "identity, label and fingerprint are separate inputs by design"
    )]
    pub fn handle_a1(
        &mut self,
        now: Instant,
        bytes: &[u8],
        identity: &IdentityKey,
        label: &str,
        fp_h: DtlsFingerprint,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(ExpectA3, Vec<u8>), HandshakeError> {
        check_label(label).map_err(|_| HandshakeError::UnexpectedMessage("own label invalid"))?;
        let a1 = decode_a1(bytes)?;
        if a1.routing != self.code.routing {
            return Err(HandshakeError::WrongHost {
                expected: self.code.routing,
                got: a1.routing,
            });
        }
        self.limits.begin(now).map_err(|r| match r {
            CodeRefusal::Expired => HandshakeError::CodeExpired,
            CodeRefusal::Used => HandshakeError::CodeUsed,
            CodeRefusal::Exhausted => HandshakeError::CodeExhausted,
            CodeRefusal::Busy => HandshakeError::Busy,
        })?;
        self.run += 1;
        match self.respond(&a1, identity, label, fp_h, rng) {
            Ok((state, out)) => Ok((state, out)),
            Err(e) => {
                self.limits.end(false);
                Err(e)
            }
        }
    }

    fn respond(
        &self,
        a1: &crate::messages::A1,
        identity: &IdentityKey,
        label: &str,
        fp_h: DtlsFingerprint,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(ExpectA3, Vec<u8>), HandshakeError> {
        let (version, suite) = choose(&a1.offer, &self.offer)?;
        let choice = Choice {
            version,
            suite,
            host: self.offer.clone(),
        };
        let pw = self.code.password();
        let (spake, y) = Spake::start_b_with_rng(
            &Password::new(&pw[..]),
            &Identity::new(super::SPAKE_ID_VIEWER),
            &Identity::new(super::SPAKE_ID_HOST),
            &mut *rng,
        );
        let y: [u8; SPAKE2_MSG_LEN] = y
            .try_into()
            .map_err(|_| HandshakeError::UnexpectedMessage("SPAKE2 message length"))?;
        let key = Zeroizing::new(spake.finish(&a1.x).map_err(|e| spake_error(e, "X"))?);
        let mut n_h = [0u8; 32];
        rng.fill_bytes(&mut n_h);
        let th1 = th1(a1, &choice, &n_h, &y, &fp_h);
        let ks = schedule(&th1, &key);
        let sig = identity.sign(&host_sig_msg(&th1));
        let id_h = IdentityPayload {
            key: identity.public(),
            label: label.to_owned(),
            permissions: 0,
            sig,
            mac: [0; 32],
            kind: ViewerKind::Native,
        }
        .seal(suite, &ks.k_h2v, &th1);
        let conf_h = conf_h(&ks.kc_h, &th1, &id_h);
        let a2 = A2 {
            choice: choice.clone(),
            n_h,
            y,
            fp_h,
            id_h: id_h.clone(),
            conf_h,
        };
        let state = ExpectA3 {
            run: self.run,
            ks,
            th1,
            conf_h,
            id_h,
            choice,
            fp_v: a1.fp_v,
            fp_h,
        };
        Ok((state, a2.encode()))
    }

    /// Handles A3 for the run `state` belongs to. On success the code is spent and the
    /// host user must be asked ([`PendingConsent`]).
    pub fn handle_a3(
        &mut self,
        now: Instant,
        state: ExpectA3,
        bytes: &[u8],
    ) -> Result<PendingConsent, HandshakeError> {
        if state.run != self.run || self.limits.in_flight_deadline().is_none_or(|d| now >= d) {
            return Err(HandshakeError::UnexpectedMessage(
                "A3 for a run that is no longer in flight",
            ));
        }
        let result = Self::verify_a3(state, bytes);
        self.limits.end(result.is_ok());
        result.map_err(|e| match e {
            HandshakeError::WrongCodeOrTampered { .. } => HandshakeError::WrongCodeOrTampered {
                attempts_left: self.limits.attempts_left(),
            },
            e => e,
        })
    }

    fn verify_a3(s: ExpectA3, bytes: &[u8]) -> Result<PendingConsent, HandshakeError> {
        let a3 = decode_a3(bytes)?;
        if !hmac_verify(
            &s.ks.kc_v,
            &conf_v_parts(&s.th1, &s.conf_h, &h(&a3.id_v)),
            &a3.conf_v,
        ) {
            return Err(HandshakeError::WrongCodeOrTampered { attempts_left: 0 });
        }
        let suite = s.choice.suite;
        let viewer = IdentityPayload::open(suite, &s.ks.k_v2h, &s.th1, &a3.id_v)?;
        if !viewer
            .key
            .verify_strict(&viewer_sig_msg(&s.th1, &s.conf_h), &viewer.sig)
        {
            return Err(HandshakeError::BadIdentityProof);
        }
        let th_final = th_final(&s.th1, &s.conf_h, &a3.conf_v, &s.id_h, &a3.id_v);
        Ok(PendingConsent {
            est: Established {
                role: Role::Host,
                kind: AccessKind::Attended,
                version: s.choice.version,
                suite,
                peer: PeerIdentity {
                    key: viewer.key,
                    label: viewer.label,
                    kind: viewer.kind,
                },
                fp_local: s.fp_h,
                fp_peer: s.fp_v,
                permissions: Permissions::NONE,
                th_final,
                keys: SessionKeys::derive(&s.ks.prk, &th_final),
            },
        })
    }

    /// The deadline of the run in flight, if one is.
    pub fn in_flight_deadline(&self) -> Option<Instant> {
        self.limits.in_flight_deadline()
    }

    /// Checks whether `bytes` are an abort from the viewer of the run `state` belongs to
    /// (its key confirmation failed, or it gave up). If so the run ends at once (the attempt
    /// was spent at A1), `state` is spent, and the result says what happened; `None` leaves
    /// the run as it was.
    pub fn handle_abort(&mut self, state: &ExpectA3, bytes: &[u8]) -> Option<HandshakeError> {
        let abort = crate::messages::decode_abort(bytes).ok()?;
        if state.run == self.run {
            self.limits.end(false);
        }
        Some(match abort.reason() {
            crate::messages::AbortReason::ConfirmationFailed => {
                HandshakeError::WrongCodeOrTampered {
                    attempts_left: self.limits.attempts_left(),
                }
            }
            other => HandshakeError::PeerAborted(other),
        })
    }

    /// The run `state` belongs to ended without an A3 (the viewer left or timed out).
    pub fn abandon(&mut self, state: ExpectA3) {
        if state.run == self.run {
            self.limits.end(false);
        }
    }
}

impl PendingConsent {
    /// Who is asking: show the label ("calls itself …") and the fingerprint to the host user.
    pub fn peer(&self) -> &PeerIdentity {
        &self.est.peer
    }

    /// The host user allowed the session with `permissions`. Returns the session and the
    /// sealed signaling channel, whose first message (already sealed) tells the viewer.
    pub fn approve(self, permissions: Permissions) -> (Established, SealedSignaling, Vec<u8>) {
        let mut est = self.est;
        est.permissions = permissions;
        let mut sealed = est.sealed();
        let accept = sealed.seal(SealedKind::Accept, &permissions.bits().to_be_bytes());
        (est, sealed, accept.unwrap_or_default())
    }

    /// The host refuses by policy and says why (sealed, so the viewer knows the words are
    /// the host's; at most [`crate::sealed::MAX_SEALED_BODY`] bytes are kept).
    pub fn refuse(self, reason: &str) -> Vec<u8> {
        let mut sealed = self.est.sealed();
        let mut end = reason.len().min(crate::sealed::MAX_SEALED_BODY);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        sealed
            .seal(SealedKind::Bye, &reason.as_bytes()[..end])
            .unwrap_or_default()
    }

    /// The host user refused. Returns the sealed message that tells the viewer so.
    pub fn decline(self) -> Vec<u8> {
        let mut sealed = self.est.sealed();
        sealed
            .seal(SealedKind::Bye, crate::sealed::BYE_DECLINED)
            .unwrap_or_default()
    }
}
