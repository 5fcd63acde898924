//! The event decoder of a (decompressed) archive chunk; whatever decodes
//! must encode back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho::fuzzing::{decode_events, encode_events};

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = decode_events(data) {
        let encoded = encode_events(&events);
        assert_eq!(
            decode_events(&encoded).as_ref(),
            Ok(&events),
            "re-encoded events decode differently"
        );
    }
});
