//! What people and peers type or paste: one-time codes, permission lists, SDPs (fingerprint
//! and setup checks), key files. Errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdesk_auth::code::OneTimeCode;
use sealdesk_auth::sdp::{check_fingerprint, setup_of, DtlsFingerprint};
use sealdesk_auth::trust::Permissions;
use sealdesk_auth::IdentityKey;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(code) = OneTimeCode::parse(&text) {
        // What parses re-displays to something that parses to the same code.
        let again = OneTimeCode::parse(&code.display()).unwrap();
        assert_eq!(again.routing, code.routing);
        assert_eq!(again.secret.value(), code.secret.value());
    }
    if let Ok(p) = Permissions::parse(&text) {
        assert_eq!(Permissions::parse(&p.to_string()).ok(), Some(p));
    }
    let _ = check_fingerprint(&text, &DtlsFingerprint([0xab; 32]));
    let _ = setup_of(&text);
    if let Some(fp) = DtlsFingerprint::from_sdp(&text) {
        assert_eq!(DtlsFingerprint::from_sdp(&fp.to_sdp()), Some(fp));
    }
    let _ = IdentityKey::from_file_bytes(data);
});
