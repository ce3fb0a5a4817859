//! The viewer's entry points fed arbitrary bytes: A2 after a real A1, B2 after a real B1,
//! and the host's answer after an honest handshake.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use sealdesk_auth::attended::viewer;
use sealdesk_auth::code::{OneTimeCode, ViewerAttempts};
use sealdesk_auth::negotiate::Offer;
use sealdesk_auth::trust::{Permissions, PinnedHost};
use sealdesk_proto::RoutingNumber;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let (hk, vk) = common::keys();
    let (_, fp_v) = common::fps();
    let mut r = common::rng();
    let mut tries = ViewerAttempts::new();
    let code = OneTimeCode::parse(common::CODE).unwrap();
    let (v, _a1) = viewer::start(&code, &Offer::default(), fp_v, &mut tries, now, &mut r).unwrap();
    let _ = v.handle_a2(data, &vk, "viewer", &mut tries, now);

    let pin = PinnedHost { routing: RoutingNumber::new(123_456_789).unwrap(), key: hk.public(), label: "host".into(), added_at: 0 };
    let (v, _b1) = sealdesk_auth::unattended::viewer::start(&pin, &Offer::default(), fp_v, &mut r);
    let _ = v.handle_b2(data, &vk, "viewer", Permissions::VIEW);

    let (waiting, _, _, _) = common::waiting_viewer(now);
    let _ = waiting.handle(data);
});
