//! Keystroke decoding of recorded RDP input (the keystroke log export): the
//! input is a keyboard choice byte, then recorded client PDUs, each a
//! 2-byte little-endian length (top bit: slow path) and its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho::fuzzing::{Event, RDP_FASTPATH_CHANNEL, RdpInfo, TimedEvent, keystroke_log};

/// The RDP part of a recording's header: US, Japanese 106/109, or a
/// Japanese layout on a US keyboard type.
fn info(layout: u8) -> RdpInfo {
    let (layout, kind, subtype) = match layout % 3 {
        0 => (0x409, 4, 0),
        1 => (0x411, 7, 2),
        _ => (0x411, 4, 0),
    };
    RdpInfo {
        fastpath_channel: RDP_FASTPATH_CHANNEL,
        io_channel: 1003,
        keyboard_layout: Some(layout),
        keyboard_type: kind,
        keyboard_subtype: subtype,
        ..RdpInfo::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&layout, mut rest)) = data.split_first() else {
        return;
    };
    let mut events = Vec::new();
    let mut t_us = 0;
    while let Some(len) = rest.get(..2) {
        let raw = u16::from_le_bytes([len[0], len[1]]);
        let len = usize::from(raw & 0x7fff);
        let pdu = rest.get(2..2 + len).unwrap_or(&rest[2..]).to_vec();
        rest = rest.get(2 + len..).unwrap_or_default();
        let channel = if raw & 0x8000 != 0 {
            1003
        } else {
            RDP_FASTPATH_CHANNEL
        };
        t_us += 1000;
        events.push(Ok(TimedEvent {
            t_us,
            event: Event::Input {
                channel,
                data: pdu.into(),
            },
        }));
    }
    let n = events.len() as u64;
    let log = keystroke_log(&info(layout), events).expect("in-memory events");
    assert!(log.stats.decoded + log.stats.skipped <= n);
    for line in &log.lines {
        assert!(line.t_start_us <= line.t_end_us);
    }
});
