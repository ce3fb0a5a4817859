//! Feeds arbitrary bytes to the VP9 and VP8 decoders, as the viewer does with frames from
//! the network: an error or a picture, never a crash (libvpx is C: ASan watches it here).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdesk_media::decode::Decoder;
use sealdesk_media::Codec;

fuzz_target!(|data: &[u8]| {
    for codec in [Codec::Vp9, Codec::Vp8] {
        if let Ok(mut d) = Decoder::new(codec) {
            let _ = d.decode(data);
            // A second packet after the first exercises inter-frame state.
            let _ = d.decode(data);
        }
    }
});
