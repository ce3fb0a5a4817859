//! Decodes arbitrary bytes as a control-channel message, as both the host (input from the
//! viewer) and the viewer (layout, clipboard from the host) must. What decodes re-encodes
//! within the limits to a message that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdesk_proto::control::ControlMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ControlMessage::decode(data) {
        let again = m.encode().expect("a decoded message is within the limits");
        assert_eq!(ControlMessage::decode(&again), Ok(m));
    }
});
