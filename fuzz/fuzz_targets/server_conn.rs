//! Feeds arbitrary frames to the server's per-connection state machine, before and
//! after registration. A panic is a bug, never bad input.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sealdesk_proto::server_conn::{ConnLimits, ServerConn, ServerOutput};
use sealdesk_proto::{Nonce, RoutingNumber};

fuzz_target!(|data: &[u8]| {
    #[allow(clippy::disallowed_methods, reason = "fuzz harness needs one base instant")]
    let t0 = Instant::now();
    let mut conn = ServerConn::new(t0, Nonce([1; 32]), "sealdesk.test".into(), ConnLimits::default());
    // Frames separated by 0xff; a leading 0x00 on a frame means "registered first".
    for (i, frame) in data.split(|b| *b == 0xff).enumerate() {
        let now = t0 + Duration::from_millis(i as u64 * 7);
        if frame.first() == Some(&0) {
            if let Ok(n) = RoutingNumber::new(123_456_789) {
                conn.handle_registered(now, n);
            }
        }
        conn.handle_text(now, &String::from_utf8_lossy(frame));
        while let Some(out) = conn.poll_output() {
            if let ServerOutput::Register(_) = out {
                if let Ok(n) = RoutingNumber::new(987_654_321) {
                    conn.handle_registered(now, n);
                }
            }
        }
        conn.handle_timeout(now);
    }
});
