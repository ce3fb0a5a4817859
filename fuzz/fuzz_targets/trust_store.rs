//! Parses arbitrary text as the trust-store files (a damaged or hostile file in the data
//! directory must give an error, never a panic); what parses round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdesk_auth::trust::{PairingRegistry, PinnedHosts};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(reg) = PairingRegistry::from_json(&text) {
        assert_eq!(PairingRegistry::from_json(&reg.to_json()).ok(), Some(reg));
    }
    if let Ok(pins) = PinnedHosts::from_json(&text) {
        assert_eq!(PinnedHosts::from_json(&pins.to_json()).ok(), Some(pins));
    }
});
