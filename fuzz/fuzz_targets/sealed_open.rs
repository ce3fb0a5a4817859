//! Opens arbitrary bytes as a sealed signaling message in an established session; then the
//! genuine next message must still open (nothing a forger sends spends a sequence number).
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use sealdesk_auth::sealed::SealedKind;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (waiting, _host_est, mut host_sealed, accept) = common::waiting_viewer(Instant::now());
    let Ok(Ok((_viewer_est, mut viewer_sealed))) = waiting.handle(&accept) else {
        panic!("the honest accept must open");
    };
    let genuine = host_sealed.seal(SealedKind::Candidate, b"candidate:1 1 udp 1 192.0.2.1 9 typ host").unwrap();
    let _ = viewer_sealed.open(data);
    if data != genuine.as_slice() {
        assert!(viewer_sealed.open(&genuine).is_ok(), "a forged message disturbed the channel");
    }
});
