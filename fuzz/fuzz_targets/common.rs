//! Shared fixtures: two identities and an honest attended session, built deterministically.
#![allow(dead_code)]

use std::time::Instant;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealdesk_auth::attended::host::AttendedHost;
use sealdesk_auth::attended::viewer;
use sealdesk_auth::code::{OneTimeCode, ViewerAttempts};
use sealdesk_auth::negotiate::Offer;
use sealdesk_auth::sdp::DtlsFingerprint;
use sealdesk_auth::sealed::SealedSignaling;
use sealdesk_auth::session::{Established, ExpectAccept};
use sealdesk_auth::trust::Permissions;
use sealdesk_auth::IdentityKey;

pub const CODE: &str = "123 456 789 · 8765 4321";

pub fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(7)
}

pub fn keys() -> (IdentityKey, IdentityKey) {
    (IdentityKey::from_seed(&[0x48; 32]), IdentityKey::from_seed(&[0x56; 32]))
}

pub fn fps() -> (DtlsFingerprint, DtlsFingerprint) {
    (DtlsFingerprint([0xf1; 32]), DtlsFingerprint([0xf2; 32]))
}

/// An honest attended run up to the viewer waiting for the Accept (returned last).
pub fn waiting_viewer(now: Instant) -> (ExpectAccept, Established, SealedSignaling, Vec<u8>) {
    let (hk, vk) = keys();
    let (fp_h, fp_v) = fps();
    let mut r = rng();
    let code = OneTimeCode::parse(CODE).unwrap();
    let mut host = AttendedHost::new(code.clone(), &Offer::default(), now);
    let mut tries = ViewerAttempts::new();
    let (v, a1) = viewer::start(&code, &Offer::default(), fp_v, &mut tries, now, &mut r).unwrap();
    let (h, a2) = host.handle_a1(now, &a1, &hk, "host", fp_h, &mut r).unwrap();
    let (waiting, a3) = v.handle_a2(&a2, &vk, "viewer", &mut tries, now).unwrap();
    let (est, sealed, accept) = host.handle_a3(now, h, &a3).unwrap().approve(Permissions::ALL);
    (waiting, est, sealed, accept)
}
