//! Unattended access between paired devices: SIGMA-I (DESIGN.md §4).
//!
//! ```text
//! V -> H  B1 = {versions, suites, R, n_v, e_v, fp_v}
//! H       DH = X25519(e_h, e_v) (must be contributory)
//!         TH_B = H("sealdesk/v1 unattended th" ‖ LP: viewer offer, host choice+lists, R, n_v, n_h, e_v, e_h, fp_v, fp_h)
//!         PRK = HKDF-Extract(salt = TH_B, DH); k_h2v, k_v2h, km_h, km_v = Expand(PRK, label)
//! H -> V  B2 = {choice, n_h, e_h, fp_h, enc_h = AEAD(k_h2v, 0, aad = TH_B,
//!               {IK_h, label, Sig(IK_h, "…host-sig" ‖ TH_B), HMAC(km_h, "…host-mac" ‖ IK_h)})}
//! V       IK_h must equal the pinned key; verify Sig and MAC
//!         TH_B2 = H("sealdesk/v1 unattended th2" ‖ LP: TH_B, H(enc_h))
//! V -> H  B3 = {enc_v = AEAD(k_v2h, 0, aad = TH_B2,
//!               {IK_v, label, requested permissions, Sig(IK_v, "…viewer-sig" ‖ TH_B2), HMAC(km_v, "…viewer-mac" ‖ IK_v)})}
//! H       IK_v must be in the pairing registry, not revoked, with `unattended` and every
//!         requested permission; verify Sig and MAC
//! both    TH_final = H("sealdesk/v1 unattended final" ‖ LP: TH_B2, H(enc_v)); session keys as attended
//! ```
//!
//! Each side signs a transcript that holds both ephemerals and both DTLS fingerprints, and
//! MACs its own identity under a key only the DH holders have: the SIGMA-I pattern, with the
//! viewer's identity hidden from active attackers and the host's from passive ones.

pub mod host;
pub mod viewer;

use crate::crypto::{h, Prk, Secret32, Transcript};
use crate::messages::B1;
use crate::negotiate::Choice;
use crate::sdp::DtlsFingerprint;

pub(crate) fn th_b(
    b1: &B1,
    choice: &Choice,
    n_h: &[u8; 32],
    e_h: &[u8; 32],
    fp_h: &DtlsFingerprint,
) -> [u8; 32] {
    Transcript::new(b"sealdesk/v1 unattended th")
        .lp(&b1.offer.encode())
        .lp(&choice.encode())
        .lp(&b1.routing.get().to_be_bytes())
        .lp(&b1.n_v)
        .lp(n_h)
        .lp(&b1.e_v)
        .lp(e_h)
        .lp(&b1.fp_v.0)
        .lp(&fp_h.0)
        .finish()
}

pub(crate) fn th_b2(th_b: &[u8; 32], enc_h: &[u8]) -> [u8; 32] {
    Transcript::new(b"sealdesk/v1 unattended th2")
        .lp(th_b)
        .lp(&h(enc_h))
        .finish()
}

pub(crate) fn th_final(th_b2: &[u8; 32], enc_v: &[u8]) -> [u8; 32] {
    Transcript::new(b"sealdesk/v1 unattended final")
        .lp(th_b2)
        .lp(&h(enc_v))
        .finish()
}

pub(crate) struct HsKeys {
    pub(crate) prk: Prk,
    pub(crate) k_h2v: Secret32,
    pub(crate) k_v2h: Secret32,
    pub(crate) km_h: Secret32,
    pub(crate) km_v: Secret32,
}

pub(crate) fn schedule(th_b: &[u8; 32], dh: &[u8; 32]) -> HsKeys {
    let prk = Prk::extract(th_b, dh);
    HsKeys {
        k_h2v: prk.expand("sealdesk/v1 unattended k_h2v", &[]),
        k_v2h: prk.expand("sealdesk/v1 unattended k_v2h", &[]),
        km_h: prk.expand("sealdesk/v1 unattended km_h", &[]),
        km_v: prk.expand("sealdesk/v1 unattended km_v", &[]),
        prk,
    }
}

pub(crate) const HOST_SIG: &[u8] = b"sealdesk/v1 unattended host-sig";
pub(crate) const VIEWER_SIG: &[u8] = b"sealdesk/v1 unattended viewer-sig";
pub(crate) const HOST_MAC: &[u8] = b"sealdesk/v1 unattended host-mac";
pub(crate) const VIEWER_MAC: &[u8] = b"sealdesk/v1 unattended viewer-mac";
