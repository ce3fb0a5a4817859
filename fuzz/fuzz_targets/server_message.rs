//! Decodes arbitrary text as a server message, as a client must (the server is untrusted).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdesk_proto::{ClientMessage, ServerMessage};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(m) = ServerMessage::decode(&text) {
        // What decodes re-encodes to something that decodes to the same message.
        assert_eq!(ServerMessage::decode(&m.encode()).ok(), Some(m));
    }
    if let Ok(m) = ClientMessage::decode(&text) {
        assert_eq!(ClientMessage::decode(&m.encode()).ok(), Some(m));
    }
});
