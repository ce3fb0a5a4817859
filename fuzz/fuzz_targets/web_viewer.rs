//! The browser viewer's state machine (`sealdesk_web`) through its WebAssembly interface:
//! after a valid configuration, every line of the input is fed as one message from the page —
//! and, wrapped, as a text frame from the signaling server and as bytes on the control
//! channel. Whatever arrives, the machine answers in `Result`s and outputs, never a panic, and
//! every output it makes is JSON the page can parse.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sealdesk_web::ffi::Shell;

const CONFIG: &str = r#"{"identity_seed":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=","random_seed":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=","label":"fuzz","fingerprint":"AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB","origin":"127.0.0.1:8443","served_by":"local"}"#;

fn feed(shell: &mut Shell, now: &mut f64, text: &str) {
    *now += 50.0;
    shell.input_buffer(text.len()).copy_from_slice(text.as_bytes());
    let _ = shell.input(*now);
    loop {
        let n = shell.poll();
        if n == 0 {
            break;
        }
        let out: serde_json::Value =
            serde_json::from_slice(&shell.output()[..n]).expect("outputs are JSON");
        assert!(out["type"].is_string(), "{out}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut shell = Shell::new();
    shell.input_buffer(CONFIG.len()).copy_from_slice(CONFIG.as_bytes());
    assert!(shell.create(0.0).is_ok());
    let mut now = 0.0;
    feed(&mut shell, &mut now, r#"{"type":"server_open"}"#);
    for line in data.split(|b| *b == b'\n') {
        let text = String::from_utf8_lossy(line);
        feed(&mut shell, &mut now, &text);
        let server = serde_json::json!({"type": "server", "text": text}).to_string();
        feed(&mut shell, &mut now, &server);
        let b64 = base64::engine::general_purpose::STANDARD.encode(line);
        let control = serde_json::json!({"type": "control", "data": b64}).to_string();
        feed(&mut shell, &mut now, &control);
    }
});
