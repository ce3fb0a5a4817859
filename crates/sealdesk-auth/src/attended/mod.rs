//! Attended access with a one-time code (DESIGN.md §4).
//!
//! ```text
//! V -> H  A1 = {versions, suites, R, n_v, X = SPAKE2.start_a(pw = "sealdesk/v1 code|" R "|" S), fp_v}
//! H       TH1 = H("sealdesk/v1 attended th1" ‖ LP: viewer offer, host choice+lists, R, n_v, n_h, X, Y, fp_v, fp_h)
//!         PRK = HKDF-Extract(salt = TH1, SPAKE2 key); k_h2v, k_v2h, kc_h, kc_v = Expand(PRK, label)
//!         id_h = AEAD(k_h2v, nonce 0, aad = TH1, {IK_h, label, Sig(IK_h, "sealdesk/v1 attended host-id" ‖ TH1)})
//! H -> V  A2 = {choice, n_h, Y, fp_h, id_h, conf_h = HMAC(kc_h, "sealdesk/v1 attended conf h" ‖ TH1 ‖ H(id_h))}
//! V       choice is the best common one; verify conf_h; then the signature
//! V -> H  A3 = {id_v = AEAD(k_v2h, nonce 0, aad = TH1, {IK_v, label, Sig(IK_v, "…viewer-id" ‖ TH1 ‖ conf_h)}),
//!               conf_v = HMAC(kc_v, "sealdesk/v1 attended conf v" ‖ TH1 ‖ conf_h ‖ H(id_v))}
//! H       verify; then the host user consents (or not)
//! both    TH_final = H("sealdesk/v1 attended final" ‖ LP: TH1, conf_h, conf_v, H(id_h), H(id_v))
//!         k_sig_*, k_chan_* = Expand(PRK, label ‖ TH_final)
//! ```
//!
//! [`viewer`] and [`host`] hold the two sides as typed states.

pub mod host;
pub mod viewer;

use spake2::{Ed25519Group, Spake2};

use crate::crypto::{h, hmac, Prk, Secret32, Transcript};
use crate::messages::A1;
use crate::negotiate::Choice;
use crate::sdp::DtlsFingerprint;

/// SPAKE2 identity of side A (the viewer).
pub(crate) const SPAKE_ID_VIEWER: &[u8] = b"sealdesk/v1 viewer";
/// SPAKE2 identity of side B (the host).
pub(crate) const SPAKE_ID_HOST: &[u8] = b"sealdesk/v1 host";

pub(crate) type Spake = Spake2<Ed25519Group>;

/// `TH1`.
pub(crate) fn th1(
    a1: &A1,
    choice: &Choice,
    n_h: &[u8; 32],
    y: &[u8],
    fp_h: &DtlsFingerprint,
) -> [u8; 32] {
    Transcript::new(b"sealdesk/v1 attended th1")
        .lp(&a1.offer.encode())
        .lp(&choice.encode())
        .lp(&a1.routing.get().to_be_bytes())
        .lp(&a1.n_v)
        .lp(n_h)
        .lp(&a1.x)
        .lp(y)
        .lp(&a1.fp_v.0)
        .lp(&fp_h.0)
        .finish()
}

/// The handshake keys from the SPAKE2 key.
pub(crate) struct HsKeys {
    pub(crate) prk: Prk,
    pub(crate) k_h2v: Secret32,
    pub(crate) k_v2h: Secret32,
    pub(crate) kc_h: Secret32,
    pub(crate) kc_v: Secret32,
}

pub(crate) fn schedule(th1: &[u8; 32], spake_key: &[u8]) -> HsKeys {
    let prk = Prk::extract(th1, spake_key);
    HsKeys {
        k_h2v: prk.expand("sealdesk/v1 attended k_h2v", &[]),
        k_v2h: prk.expand("sealdesk/v1 attended k_v2h", &[]),
        kc_h: prk.expand("sealdesk/v1 attended kc_h", &[]),
        kc_v: prk.expand("sealdesk/v1 attended kc_v", &[]),
        prk,
    }
}

pub(crate) const HOST_SIG_LABEL: &[u8] = b"sealdesk/v1 attended host-id";
pub(crate) const VIEWER_SIG_LABEL: &[u8] = b"sealdesk/v1 attended viewer-id";
const CONF_H_LABEL: &[u8] = b"sealdesk/v1 attended conf h";
const CONF_V_LABEL: &[u8] = b"sealdesk/v1 attended conf v";

pub(crate) fn host_sig_msg(th1: &[u8; 32]) -> Vec<u8> {
    [HOST_SIG_LABEL, th1].concat()
}

pub(crate) fn viewer_sig_msg(th1: &[u8; 32], conf_h: &[u8; 32]) -> Vec<u8> {
    [VIEWER_SIG_LABEL, th1, conf_h].concat()
}

pub(crate) fn conf_h_parts<'a>(th1: &'a [u8; 32], id_h_hash: &'a [u8; 32]) -> [&'a [u8]; 3] {
    [CONF_H_LABEL, th1, id_h_hash]
}

pub(crate) fn conf_v_parts<'a>(
    th1: &'a [u8; 32],
    conf_h: &'a [u8; 32],
    id_v_hash: &'a [u8; 32],
) -> [&'a [u8]; 4] {
    [CONF_V_LABEL, th1, conf_h, id_v_hash]
}

pub(crate) fn conf_h(kc_h: &Secret32, th1: &[u8; 32], id_h: &[u8]) -> [u8; 32] {
    hmac(kc_h, &conf_h_parts(th1, &h(id_h)))
}

pub(crate) fn th_final(
    th1: &[u8; 32],
    conf_h: &[u8; 32],
    conf_v: &[u8; 32],
    id_h: &[u8],
    id_v: &[u8],
) -> [u8; 32] {
    Transcript::new(b"sealdesk/v1 attended final")
        .lp(th1)
        .lp(conf_h)
        .lp(conf_v)
        .lp(&h(id_h))
        .lp(&h(id_v))
        .finish()
}
