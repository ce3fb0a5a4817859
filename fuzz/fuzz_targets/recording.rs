//! Everything a recording reader parses from files it did not write: segment files (entry
//! and framing) and their manifest verdict, decrypted bodies, recipient certificates and
//! owner key files. None may panic; a verdict's good prefix is never longer than the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdesk_record::body;
use sealdesk_record::cert::RecipientCertificate;
use sealdesk_record::owner::OwnerKey;
use sealdesk_record::segment::{inspect, Entry, ENTRY_LEN};
use sealdesk_record::verify::verify;
use sealdesk_record::RecordingId;

fuzz_target!(|data: &[u8]| {
    // Split the input into up to four "files" on 0xfe bytes.
    let files: Vec<&[u8]> = data.split(|b| *b == 0xfe).take(4).collect();
    let inspected: Vec<_> = files.iter().map(|f| inspect(f)).collect();
    let verdict = verify(&inspected, |_| true);
    assert!(verdict.good_segments() as usize <= files.len());
    if data.len() >= ENTRY_LEN {
        if let Ok(e) = Entry::parse(&data[..ENTRY_LEN]) {
            assert_eq!(e.to_bytes(), &data[..ENTRY_LEN]);
        }
    }
    let _ = body::decode(data, RecordingId([0; 16]), 0);
    let _ = RecipientCertificate::parse(data);
    let _ = OwnerKey::from_file_bytes(data);
});
