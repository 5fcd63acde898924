//! Client input PDUs: fast-path input (MS-RDPBCGR 2.2.8.1.2) and slow-path
//! Input Event PDUs (2.2.8.1.1.3), decoded into the key, unicode, toggle and
//! click events a keystroke log needs, and where the pointer went (for the
//! pointer a replay draws; wheel turns are dropped).
//!
//! Pure and tolerant: a PDU that cannot be decoded is reported as damaged,
//! with the events before the damage kept; never a panic from this code.

use ironrdp_core::{Decode as _, ReadCursor, decode};
use ironrdp_pdu::input::InputEvent;
use ironrdp_pdu::input::fast_path::{FastPathInputEvent, KeyboardFlags, SynchronizeFlags};
use ironrdp_pdu::input::mouse::PointerFlags;
use ironrdp_pdu::input::mouse_rel::PointerRelFlags;
use ironrdp_pdu::input::mouse_x::PointerXFlags;
use ironrdp_pdu::input::scan_code;
use ironrdp_pdu::input::sync::SyncToggleFlags;
use ironrdp_pdu::input::unicode;
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};

/// One decoded client input event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Key {
        code: u8,
        extended: bool,
        /// The E1 prefix (only Pause/Break sends it).
        extended1: bool,
        release: bool,
    },
    Unicode {
        unit: u16,
        release: bool,
    },
    /// Toggle key state as the client sees it.
    Sync {
        caps: bool,
        num: bool,
    },
    /// A mouse button pressed.
    Click,
}

/// What a recorded client PDU held: its input events, and whether part of
/// it could not be decoded.
#[derive(Debug, Default)]
pub struct DecodedPdu {
    pub inputs: Vec<Input>,
    /// An input PDU (even if damaged), not some other share PDU.
    pub is_input: bool,
    /// Part of the PDU could not be decoded.
    pub damaged: bool,
    /// The last absolute pointer position in the PDU (desktop pixels), if
    /// it moved or clicked the pointer; relative motion is not followed.
    pub pointer: Option<(u16, u16)>,
}

/// A fast-path input PDU (MS-RDPBCGR 2.2.8.1.2), header included. The
/// header is read here, not by ironrdp, so that a length too short for the
/// header itself is an error and not an arithmetic overflow; the events are
/// ironrdp's. Events before a damaged one are kept.
pub fn decode_fast_path(pdu: &[u8]) -> DecodedPdu {
    let mut d = DecodedPdu {
        is_input: true,
        ..DecodedPdu::default()
    };
    let Some(&header) = pdu.first() else {
        d.damaged = true;
        return d;
    };
    // action 0 (fast-path), no encryption or checksum (TLS carries the
    // session, so the gateway never sees RDP encryption).
    if header & 0x03 != 0 || header & 0xC0 != 0 {
        d.damaged = true;
        return d;
    }
    let (length, mut pos) = match pdu.get(1) {
        Some(&l1) if l1 & 0x80 != 0 => match pdu.get(2) {
            Some(&l2) => ((usize::from(l1 & 0x7F) << 8) | usize::from(l2), 3),
            None => {
                d.damaged = true;
                return d;
            }
        },
        Some(&l1) => (usize::from(l1), 2),
        None => {
            d.damaged = true;
            return d;
        }
    };
    let mut count = usize::from((header >> 2) & 0x0F);
    if count == 0 {
        match pdu.get(pos) {
            Some(&n) => count = usize::from(n),
            None => {
                d.damaged = true;
                return d;
            }
        }
        pos += 1;
    }
    if length != pdu.len() || pos > length {
        d.damaged = true;
    }
    let body = pdu.get(pos..length.min(pdu.len())).unwrap_or_default();
    let mut src = ReadCursor::new(body);
    for _ in 0..count {
        match FastPathInputEvent::decode(&mut src) {
            Ok(event) => {
                match &event {
                    FastPathInputEvent::MouseEvent(m) => {
                        d.pointer = Some((m.x_position, m.y_position));
                    }
                    FastPathInputEvent::MouseEventEx(m) => {
                        d.pointer = Some((m.x_position, m.y_position));
                    }
                    _ => {}
                }
                if let Some(input) = fast_path_input(event) {
                    d.inputs.push(input);
                }
            }
            Err(_) => {
                d.damaged = true;
                break;
            }
        }
    }
    if !src.is_empty() {
        d.damaged = true;
    }
    d
}

fn fast_path_input(event: FastPathInputEvent) -> Option<Input> {
    Some(match event {
        FastPathInputEvent::KeyboardEvent(flags, code) => Input::Key {
            code,
            extended: flags.contains(KeyboardFlags::EXTENDED),
            extended1: flags.contains(KeyboardFlags::EXTENDED1),
            release: flags.contains(KeyboardFlags::RELEASE),
        },
        FastPathInputEvent::UnicodeKeyboardEvent(flags, unit) => Input::Unicode {
            unit,
            release: flags.contains(KeyboardFlags::RELEASE),
        },
        FastPathInputEvent::SyncEvent(flags) => Input::Sync {
            caps: flags.contains(SynchronizeFlags::CAPS_LOCK),
            num: flags.contains(SynchronizeFlags::NUM_LOCK),
        },
        FastPathInputEvent::MouseEvent(m) if mouse_click(m.flags) => Input::Click,
        FastPathInputEvent::MouseEventEx(m)
            if m.flags.contains(PointerXFlags::DOWN)
                && m.flags
                    .intersects(PointerXFlags::BUTTON1 | PointerXFlags::BUTTON2) =>
        {
            Input::Click
        }
        FastPathInputEvent::MouseEventRel(m) if mouse_rel_click(m.flags) => Input::Click,
        _ => return None,
    })
}

/// A button press (not motion, not a wheel turn).
fn mouse_click(flags: PointerFlags) -> bool {
    flags.contains(PointerFlags::DOWN)
        && flags.intersects(
            PointerFlags::LEFT_BUTTON
                | PointerFlags::RIGHT_BUTTON
                | PointerFlags::MIDDLE_BUTTON_OR_WHEEL,
        )
        && !flags.intersects(PointerFlags::VERTICAL_WHEEL | PointerFlags::HORIZONTAL_WHEEL)
}

fn mouse_rel_click(flags: PointerRelFlags) -> bool {
    flags.contains(PointerRelFlags::DOWN)
        && flags.intersects(
            PointerRelFlags::BUTTON1
                | PointerRelFlags::BUTTON2
                | PointerRelFlags::BUTTON3
                | PointerRelFlags::XBUTTON1
                | PointerRelFlags::XBUTTON2,
        )
}

/// A slow-path PDU from the I/O or user channel (Share Control header
/// onward). Only Input Event PDUs matter; other share PDUs are not input.
pub fn decode_slow_path(pdu: &[u8]) -> DecodedPdu {
    let looks_like_input = super::pdu::is_slow_path_input(pdu);
    let events = match decode::<ShareControlHeader>(pdu) {
        Ok(ShareControlHeader {
            share_control_pdu: ShareControlPdu::Data(data),
            ..
        }) => match data.share_data_pdu {
            ShareDataPdu::Input(input) => input.0,
            _ => return DecodedPdu::default(),
        },
        Ok(_) => return DecodedPdu::default(),
        Err(_) => {
            return DecodedPdu {
                is_input: looks_like_input,
                damaged: looks_like_input,
                ..DecodedPdu::default()
            };
        }
    };
    let pointer = events.iter().rev().find_map(|e| match e {
        InputEvent::Mouse(m) => Some((m.x_position, m.y_position)),
        InputEvent::MouseX(m) => Some((m.x_position, m.y_position)),
        _ => None,
    });
    let inputs = events
        .into_iter()
        .filter_map(|e| match e {
            InputEvent::ScanCode(k) => Some(Input::Key {
                // The scancode is the low byte; anything above is not a key.
                code: u8::try_from(k.key_code).ok()?,
                extended: k.flags.contains(scan_code::KeyboardFlags::EXTENDED),
                extended1: k.flags.contains(scan_code::KeyboardFlags::EXTENDED_1),
                release: k.flags.contains(scan_code::KeyboardFlags::RELEASE),
            }),
            InputEvent::Unicode(u) => Some(Input::Unicode {
                unit: u.unicode_code,
                release: u.flags.contains(unicode::KeyboardFlags::RELEASE),
            }),
            InputEvent::Sync(s) => Some(Input::Sync {
                caps: s.flags.contains(SyncToggleFlags::CAPS_LOCK),
                num: s.flags.contains(SyncToggleFlags::NUM_LOCK),
            }),
            InputEvent::Mouse(m) if mouse_click(m.flags) => Some(Input::Click),
            InputEvent::MouseX(m)
                if m.flags.contains(PointerXFlags::DOWN)
                    && m.flags
                        .intersects(PointerXFlags::BUTTON1 | PointerXFlags::BUTTON2) =>
            {
                Some(Input::Click)
            }
            InputEvent::MouseRel(m) if mouse_rel_click(m.flags) => Some(Input::Click),
            _ => None,
        })
        .collect();
    DecodedPdu {
        inputs,
        is_input: true,
        damaged: false,
        pointer,
    }
}
