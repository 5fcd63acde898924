//! The NLA front: the NTLM AUTHENTICATE parser on its own, then the whole
//! CredSSP exchange the front runs as server (TsRequests as the client
//! sends them inside TLS), then MCS up to the Client Info PDU.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho::fuzzing::{FrontStart, ntlm_authenticate_user, rdp_front_handshake};

fuzz_target!(|data: &[u8]| {
    if let Some((user, domain)) = ntlm_authenticate_user(data) {
        assert!(!user.is_empty(), "an empty user name was accepted");
        assert_ne!(domain.as_deref(), Some(""), "an empty domain was kept");
    }
    // Nobody but the holder of the ticket can finish CredSSP: the fuzzer
    // cannot answer the server's random challenge, so the front must never
    // get past NLA here.
    if let Ok(outcome) = rdp_front_handshake(FrontStart::CredSsp, data) {
        panic!("NLA passed without the ticket: {outcome:?}");
    }
});
