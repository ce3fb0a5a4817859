//! The blob store's `Authorization` header parser, on arbitrary text: it never panics, and
//! what parses prints back to a header that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdesk_proto::blob_auth::BlobAuth;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(auth) = BlobAuth::parse_header(text) {
        let again = BlobAuth::parse_header(&auth.to_header()).expect("a printed header parses");
        assert_eq!(again.to_header(), auth.to_header());
    }
});
