//! Decodes arbitrary bytes as an auth message (A1–A3, B1–B3, sealed), as every endpoint
//! must: the signaling server is untrusted. What decodes has exactly one encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdesk_auth::messages::decode;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode(data) {
        assert_eq!(m.encode(), data, "the encoding is canonical");
    }
});
