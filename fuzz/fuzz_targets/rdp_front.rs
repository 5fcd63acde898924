//! The RDP front before sign-in, fed whole client byte streams: X.224
//! negotiation, then (TLS left out) CredSSP when NLA is selected, the MCS
//! phase, channel joins and the Client Info PDU. The first byte chooses
//! whether NLA is offered and whether the client waits for the X.224
//! confirm; the rest is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho::fuzzing::{FrontStart, rdp_front_handshake};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let start = if mode & 4 != 0 {
        FrontStart::Mcs
    } else {
        FrontStart::X224 {
            offer_nla: mode & 1 != 0,
            pipelined: mode & 2 != 0,
        }
    };
    if let Ok(outcome) = rdp_front_handshake(start, stream) {
        // The split the gateway signs in with never yields an empty part.
        if let Some((person, target)) = &outcome.person_and_target {
            assert!(!person.is_empty() && !target.is_empty());
        }
        assert!(outcome.channels.len() <= 31, "more than 31 static channels");
        // The Client Info PDU comes only after the client waited for the
        // X.224 confirm: bytes sent before it are refused.
        if let FrontStart::X224 { pipelined, .. } = start {
            let request_len = stream
                .get(2..4)
                .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])));
            assert!(
                !pipelined || request_len == Some(stream.len()),
                "bytes sent before the X.224 confirm were accepted"
            );
        }
    }
});
