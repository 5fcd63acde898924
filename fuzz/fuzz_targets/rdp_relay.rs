//! The RDP relay's own decoders of PDUs after sign-in: DVC Create Requests
//! and the refusal built from them, the drdynvc gate, the share state
//! (Demand Active / Deactivate All), slow-path input and withheld server
//! PDUs, and the Confirm Active steering. The input is a series of chunks,
//! each a 2-byte little-endian length and its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho::fuzzing::{
    DvcGate, dvc_refusal, is_slow_path_input, is_withheld_server_pdu, parse_dvc_create,
    share_observe, share_transition, steer_confirm_active,
};

fuzz_target!(|data: &[u8]| {
    let mut gate = DvcGate::default();
    let mut rest = data;
    let mut from_client = false;
    while let Some(len) = rest.get(..2) {
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        let chunk = rest.get(2..2 + len).unwrap_or(&rest[2..]);
        rest = rest.get(2 + len..).unwrap_or_default();
        from_client = !from_client;

        if let Some((cb_id, channel_id, name)) = parse_dvc_create(chunk) {
            assert!(cb_id < 3);
            // The refusal names the same channel, in the same id size.
            let refusal = dvc_refusal(cb_id, channel_id, name);
            let (r_cb, r_id, _) = parse_dvc_create(&refusal).expect("refusal is a Create PDU");
            assert_eq!((r_cb, r_id), (cb_id, channel_id));
            gate.allow(channel_id);
        }
        if from_client {
            let _ = gate.pass_from_client(chunk);
            let _ = is_slow_path_input(chunk);
            if let Ok(Some(steered)) = steer_confirm_active(chunk) {
                // Steering is idempotent: a steered Confirm Active needs no more.
                let again = steer_confirm_active(&steered).expect("steered PDU decodes");
                assert!(
                    again.is_none_or(|a| a == steered),
                    "steering not idempotent"
                );
            }
        } else {
            let _ = gate.pass_from_target(chunk);
            let _ = is_withheld_server_pdu(chunk);
            let (observed, _) = share_observe(1024, 768, chunk);
            assert_eq!(observed, share_transition(chunk));
        }
    }
});
