//! The host's handshake entry points fed arbitrary bytes: A1 then A3 (attended), B1 then B3
//! (unattended). The first byte picks where to split the input into two messages.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use sealdesk_auth::attended::host::AttendedHost;
use sealdesk_auth::code::OneTimeCode;
use sealdesk_auth::negotiate::Offer;
use sealdesk_auth::trust::PairingRegistry;
use sealdesk_auth::unattended::host::{handle_b1, HostInfo};
use sealdesk_proto::RoutingNumber;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let cut = usize::from(split).min(rest.len());
    let (first, second) = rest.split_at(cut);
    let now = Instant::now();
    let (hk, _) = common::keys();
    let (fp_h, _) = common::fps();
    let mut r = common::rng();

    let mut host = AttendedHost::new(OneTimeCode::parse(common::CODE).unwrap(), &Offer::default(), now);
    if let Ok((state, _a2)) = host.handle_a1(now, first, &hk, "host", fp_h, &mut r) {
        let _ = host.handle_a3(now, state, second);
    }

    let offer = Offer::default();
    let info = HostInfo { routing: RoutingNumber::new(123_456_789).unwrap(), identity: &hk, label: "host", offer: &offer };
    if let Ok((state, _b2)) = handle_b1(info, first, fp_h, &mut r) {
        let _ = state.handle_b3(second, &PairingRegistry::new());
    }
});
