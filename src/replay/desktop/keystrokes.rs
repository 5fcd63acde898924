//! The keystroke log of an RDP session: what the person typed, one entry per
//! line entered (Enter), in the format of the SSH keystroke log.
//!
//! The recorded client input PDUs are decoded ([`crate::protocol::rdp::input`])
//! and fed to a keyboard of the layout the archive header records
//! ([`crate::protocol::rdp::keyboard`]); this module puts what was typed into
//! lines and writes them. A Japanese session shows the keys as pressed
//! (romaji) and the IME keys by name, and the log header says so.
//!
//! Decoding is tolerant: a recorded input PDU that cannot be decoded is
//! skipped and counted, never a panic and never the end of the export.

use std::io::Write;

use crate::protocol::rdp::input::{DecodedPdu, Input, decode_fast_path, decode_slow_path};
use crate::protocol::rdp::keyboard::{Keyboard, KeyboardLayout, Typed};
use crate::recording::{Event, RdpInfo, ReadError, SessionMeta, TimedEvent};
use crate::replay::ExportError;
use crate::replay::keylog::{LineEnd, write_log_entry, write_log_header};

/// The keyboard layout recorded in the archive header.
pub fn layout_of(info: &RdpInfo) -> KeyboardLayout {
    KeyboardLayout::from_ids(
        info.keyboard_layout,
        info.keyboard_type,
        info.keyboard_subtype,
    )
}

/// Part of a line: a character the person typed, or a key shown by name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Char(char),
    Named(String),
}

/// One line as entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedLine {
    /// First keystroke of the line, µs.
    pub t_start_us: u64,
    /// Enter (or end of session), µs.
    pub t_end_us: u64,
    pub text: String,
    /// `Enter` or `Unfinished`.
    pub ended_by: LineEnd,
    /// Mouse button presses since the previous line.
    pub clicks: u32,
}

/// The line being typed.
#[derive(Default)]
struct LineBuffer {
    pieces: Vec<Piece>,
    /// Pieces before this index are out of Backspace's reach as far as the
    /// log can tell (a click may have moved the cursor).
    fixed: usize,
    t_start: Option<u64>,
    clicks: u32,
}

impl LineBuffer {
    fn apply(&mut self, t: u64, typed: Typed) -> Option<TypedLine> {
        if matches!(typed, Typed::Enter) {
            return Some(self.take(t, LineEnd::Enter));
        }
        self.t_start.get_or_insert(t);
        match typed {
            Typed::Char(c) => self.pieces.push(Piece::Char(c)),
            Typed::Named(s) => self.pieces.push(Piece::Named(s)),
            // Erase at the end of the line, where the cursor is known to be;
            // anywhere else, show the key.
            Typed::Backspace => {
                if self.pieces.len() > self.fixed
                    && matches!(self.pieces.last(), Some(Piece::Char(_)))
                {
                    self.pieces.pop();
                } else {
                    self.pieces.push(Piece::Named("<BS>".into()));
                }
            }
            Typed::Enter => {}
        }
        None
    }

    fn click(&mut self) {
        self.clicks = self.clicks.saturating_add(1);
        self.fixed = self.pieces.len();
    }

    fn take(&mut self, t: u64, ended_by: LineEnd) -> TypedLine {
        let mut text = String::new();
        for p in self.pieces.drain(..) {
            match p {
                Piece::Char(c) => text.push(c),
                Piece::Named(s) => text.push_str(&s),
            }
        }
        self.fixed = 0;
        TypedLine {
            t_start_us: self.t_start.take().unwrap_or(t),
            t_end_us: t,
            text,
            ended_by,
            clicks: std::mem::take(&mut self.clicks),
        }
    }
}

/// How the decoding of the recorded input went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InputStats {
    /// Client input PDUs decoded (fast-path, and slow-path Input PDUs).
    pub decoded: u64,
    /// Input PDUs, or their tails, that could not be decoded.
    pub skipped: u64,
}

/// The keystroke log of one RDP recording.
#[derive(Debug, Clone)]
pub struct KeystrokeLog {
    pub layout: KeyboardLayout,
    pub lines: Vec<TypedLine>,
    pub stats: InputStats,
}

/// Replays the recorded client input into the lines the person entered.
pub fn keystroke_log(
    info: &RdpInfo,
    events: impl IntoIterator<Item = Result<TimedEvent, ReadError>>,
) -> Result<KeystrokeLog, ReadError> {
    let layout = layout_of(info);
    let mut keyboard = Keyboard::new(&layout);
    let mut line = LineBuffer::default();
    let mut lines = Vec::new();
    let mut stats = InputStats::default();
    let mut typed = Vec::new();
    let mut last_t = 0;
    for item in events {
        let TimedEvent { t_us, event } = item?;
        last_t = t_us;
        let Event::Input { channel, data } = event else {
            continue;
        };
        let fast_path = channel == info.fastpath_channel;
        // The decoders are pure; a panic in a third-party decoder on a
        // hostile PDU is one more skipped PDU.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if fast_path {
                decode_fast_path(&data)
            } else {
                decode_slow_path(&data)
            }
        }))
        .unwrap_or_else(|_| DecodedPdu {
            is_input: true,
            damaged: true,
            ..DecodedPdu::default()
        });
        if decoded.damaged {
            stats.skipped += 1;
        } else if decoded.is_input {
            stats.decoded += 1;
        }
        for input in decoded.inputs {
            match input {
                Input::Key {
                    code,
                    extended,
                    extended1,
                    release,
                } => typed.extend(keyboard.key(code, extended, extended1, release)),
                Input::Unicode { unit, release } => keyboard.unicode(unit, release, &mut typed),
                Input::Sync { caps, num } => keyboard.sync(caps, num),
                Input::Click => line.click(),
            }
            for t in typed.drain(..) {
                lines.extend(line.apply(t_us, t));
            }
        }
    }
    if !line.pieces.is_empty() {
        lines.push(line.take(last_t, LineEnd::Unfinished));
    }
    Ok(KeystrokeLog {
        layout,
        lines,
        stats,
    })
}

/// Writes the keystroke log of an RDP recording: the header of every
/// keystroke log, the keyboard layout, then per line
/// `wall-clock  +seconds  kbd  text  [N clicks]  [unfinished]`.
pub fn write_keystroke_log<W: Write>(
    meta: &SessionMeta,
    info: &RdpInfo,
    events: impl IntoIterator<Item = Result<TimedEvent, ReadError>>,
    mut out: W,
) -> Result<InputStats, ExportError> {
    let log = keystroke_log(info, events)?;
    write_log_header(meta, &mut out)?;
    writeln!(out, "# keyboard: {}", log.layout.description())?;
    if log.layout.japanese {
        writeln!(
            out,
            "# keys as pressed: kana/kanji conversion by the IME happens on the target and is not shown"
        )?;
    }
    if log.stats.skipped > 0 {
        writeln!(
            out,
            "# {} client input PDU(s) could not be decoded and were skipped",
            log.stats.skipped
        )?;
    }
    for l in &log.lines {
        let mut suffix = match l.clicks {
            0 => String::new(),
            1 => "  [1 click]".to_owned(),
            n => format!("  [{n} clicks]"),
        };
        if l.ended_by == LineEnd::Unfinished {
            suffix.push_str("  [unfinished]");
        }
        write_log_entry(meta, l.t_end_us, "kbd", &l.text, &suffix, &mut out)?;
    }
    out.flush()?;
    Ok(log.stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rdp::keyboard::letter;
    use crate::recording::Protocol;
    use bytes::Bytes;
    use ironrdp_core::encode_vec;
    use ironrdp_pdu::input::InputEvent;
    use ironrdp_pdu::input::fast_path::FastPathInput;
    use ironrdp_pdu::input::fast_path::{FastPathInputEvent, KeyboardFlags, SynchronizeFlags};
    use ironrdp_pdu::input::mouse::MousePdu;
    use ironrdp_pdu::input::mouse::PointerFlags;
    use ironrdp_pdu::input::scan_code;
    use ironrdp_pdu::input::sync::SyncToggleFlags;
    use ironrdp_pdu::input::unicode;
    use ironrdp_pdu::input::{InputEventPdu, ScanCodePdu, SyncPdu, UnicodePdu};
    use ironrdp_pdu::rdp::headers::{CompressionFlags, ShareDataHeader, StreamPriority};
    use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};

    const IO_CHANNEL: u32 = 1003;

    fn meta(layout: Option<(u32, u32, u32)>) -> SessionMeta {
        let mut info = RdpInfo {
            fastpath_channel: 0,
            io_channel: IO_CHANNEL as u16,
            user_channel: 1002,
            ..RdpInfo::default()
        };
        if let Some((layout, kb_type, subtype)) = layout {
            info.keyboard_layout = Some(layout);
            info.keyboard_type = kb_type;
            info.keyboard_subtype = subtype;
        }
        SessionMeta {
            session_id: "s1".into(),
            user: "tanaka".into(),
            vendor: "acme".into(),
            system: "fa".into(),
            target: "win01".into(),
            protocol: Protocol::Rdp,
            client_addr: "127.0.0.1:1".into(),
            decision: "allow".into(),
            hop_parent: None,
            started_at: chrono::DateTime::UNIX_EPOCH,
            terminal: None,
            desktop: None,
            rdp: Some(info),
        }
    }

    fn rdp_of(meta: &SessionMeta) -> RdpInfo {
        meta.rdp.clone().unwrap_or_default()
    }

    const US: Option<(u32, u32, u32)> = Some((0x409, 4, 0));
    const JP: Option<(u32, u32, u32)> = Some((0x411, 7, 2));

    /// Key events of one keystroke, in the fast-path encoding.
    fn key(code: u8, extended: bool, release: bool) -> FastPathInputEvent {
        let mut flags = KeyboardFlags::empty();
        flags.set(KeyboardFlags::EXTENDED, extended);
        flags.set(KeyboardFlags::RELEASE, release);
        FastPathInputEvent::KeyboardEvent(flags, code)
    }
    fn down(code: u8) -> FastPathInputEvent {
        key(code, false, false)
    }
    fn up(code: u8) -> FastPathInputEvent {
        key(code, false, true)
    }
    fn tap(code: u8) -> Vec<FastPathInputEvent> {
        vec![down(code), up(code)]
    }
    fn tap_ext(code: u8) -> Vec<FastPathInputEvent> {
        vec![key(code, true, false), key(code, true, true)]
    }
    /// `code` with modifier `modifier` held.
    fn with(modifier: u8, code: u8) -> Vec<FastPathInputEvent> {
        vec![down(modifier), down(code), up(code), up(modifier)]
    }
    fn shifted(code: u8) -> Vec<FastPathInputEvent> {
        with(SHIFT, code)
    }

    const SHIFT: u8 = 0x2A;
    const RSHIFT: u8 = 0x36;
    const CTRL: u8 = 0x1D;
    const ALT: u8 = 0x38;
    const ENTER: u8 = 0x1C;
    const BS: u8 = 0x0E;
    const CAPS: u8 = 0x3A;

    /// Taps of lower-case letters, digits and spaces (positions common to
    /// US and Japanese keyboards).
    fn typing(text: &str) -> Vec<FastPathInputEvent> {
        text.chars()
            .flat_map(|c| {
                let code = match c {
                    ' ' => 0x39,
                    '1'..='9' => 0x02 + (c as u8 - b'1'),
                    '0' => 0x0B,
                    _ => (0..=0xFF)
                        .find(|&s| letter(s) == Some(c))
                        .expect("a letter"),
                };
                tap(code)
            })
            .collect()
    }

    /// One fast-path input PDU holding `events`.
    fn fast_path(events: Vec<FastPathInputEvent>) -> Vec<u8> {
        encode_vec(&FastPathInput::new(events).expect("1..=255 events")).expect("encode")
    }

    /// One slow-path Input Event PDU (Share Control header onward).
    fn slow_path(events: Vec<InputEvent>) -> Vec<u8> {
        let pdu = ShareControlHeader {
            share_id: 0x1_03EA,
            pdu_source: 1002,
            share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
                share_data_pdu: ShareDataPdu::Input(InputEventPdu(events)),
                stream_priority: StreamPriority::Medium,
                compression_flags: CompressionFlags::empty(),
                compression_type: ironrdp_pdu::rdp::client_info::CompressionType::K8,
            }),
        };
        encode_vec(&pdu).expect("encode")
    }

    fn slow_key(code: u16, release: bool) -> InputEvent {
        let mut flags = scan_code::KeyboardFlags::empty();
        flags.set(scan_code::KeyboardFlags::RELEASE, release);
        InputEvent::ScanCode(ScanCodePdu {
            flags,
            key_code: code,
        })
    }

    /// Recorded client PDUs: (channel, bytes), 1 ms apart.
    fn log_of(layout: Option<(u32, u32, u32)>, pdus: Vec<(u32, Vec<u8>)>) -> KeystrokeLog {
        let events = pdus.into_iter().enumerate().map(|(i, (channel, data))| {
            Ok(TimedEvent {
                t_us: i as u64 * 1000,
                event: Event::Input {
                    channel,
                    data: Bytes::from(data),
                },
            })
        });
        keystroke_log(&rdp_of(&meta(layout)), events).expect("log")
    }

    /// The lines typed with `events`, one fast-path PDU per event (as
    /// clients send them).
    fn lines(layout: Option<(u32, u32, u32)>, events: Vec<FastPathInputEvent>) -> Vec<String> {
        let log = log_of(
            layout,
            events
                .into_iter()
                .map(|e| (0, fast_path(vec![e])))
                .collect(),
        );
        assert_eq!(log.stats.skipped, 0);
        log.lines.into_iter().map(|l| l.text).collect()
    }

    fn seq(parts: &[Vec<FastPathInputEvent>]) -> Vec<FastPathInputEvent> {
        parts.concat()
    }

    #[test]
    fn us_text_with_shift_and_capslock() {
        let events = seq(&[
            typing("ls "),
            shifted(0x0C), // _
            typing("la "),
            shifted(0x28), // "
            tap(0x28),     // '
            shifted(0x03), // @
            shifted(0x07), // ^
            shifted(0x1A), // {
            tap(0x2B),     // \
            tap(0x29),     // `
            shifted(0x27), // :
            tap(ENTER),
            shifted(0x23), // H
            typing("i"),
            tap(CAPS),
            typing("abc"),
            shifted(0x1E), // a: Shift under CapsLock
            tap(CAPS),
            typing("d"),
            tap(ENTER),
        ]);
        assert_eq!(lines(US, events), ["ls _la \"'@^{\\`:", "HiABCad"]);
    }

    #[test]
    fn right_shift_and_overlapping_shifts() {
        let events = seq(&[
            vec![down(SHIFT), down(RSHIFT), up(SHIFT)],
            typing("a"),
            vec![up(RSHIFT)],
            typing("a"),
            tap(ENTER),
        ]);
        assert_eq!(lines(US, events), ["Aa"]);
    }

    #[test]
    fn sync_sets_capslock_and_numlock() {
        let sync = |flags| FastPathInputEvent::SyncEvent(flags);
        let events = seq(&[
            vec![sync(
                SynchronizeFlags::CAPS_LOCK | SynchronizeFlags::NUM_LOCK,
            )],
            typing("x"),
            tap(0x4F), // numpad 1
            vec![sync(SynchronizeFlags::empty())],
            typing("x"),
            tap(0x4F), // End
            tap(ENTER),
        ]);
        assert_eq!(lines(US, events), ["X1x<End>"]);
    }

    /// The same positions, pressed on a US and on a Japanese keyboard.
    #[test]
    fn japanese_punctuation_differs_from_us_on_the_same_keys() {
        let events = seq(&[
            shifted(0x03),
            shifted(0x07),
            shifted(0x08),
            shifted(0x09),
            shifted(0x0A),
            tap(0x0C),
            shifted(0x0C),
            tap(0x0D),
            shifted(0x0D),
            tap(0x1A),
            shifted(0x1A),
            tap(0x1B),
            shifted(0x1B),
            tap(0x27),
            shifted(0x27),
            tap(0x28),
            shifted(0x28),
            tap(0x2B),
            shifted(0x2B),
            tap(0x33),
            shifted(0x33),
            tap(0x34),
            shifted(0x34),
            tap(0x35),
            shifted(0x35),
            tap(ENTER),
        ]);
        assert_eq!(lines(JP, events.clone()), ["\"&'()-=^~@`[{;+:*]},<.>/?"]);
        assert_eq!(lines(US, events), ["@^&*(-_=+[{]};:'\"\\|,<.>/?"]);
        // Keys only a JIS keyboard has: ろ and ¥.
        let jis = seq(&[
            tap(0x73),
            shifted(0x73),
            tap(0x7D),
            shifted(0x7D),
            tap(ENTER),
        ]);
        assert_eq!(lines(JP, jis.clone()), ["\\_¥|"]);
        assert_eq!(lines(US, jis), ["<sc 73><Shift+sc 73><sc 7D><Shift+sc 7D>"]);
        // Shift+0 types nothing on a JIS keyboard; the key is named.
        assert_eq!(
            lines(JP, seq(&[shifted(0x0B), typing("0"), tap(ENTER)])),
            ["<Shift+0>0"]
        );
        // Letters and digits are where they are on US.
        assert_eq!(
            lines(JP, seq(&[typing("echo 0411"), tap(ENTER)])),
            ["echo 0411"]
        );
    }

    #[test]
    fn japanese_keys_are_named_and_eisu_is_capslock_only_with_shift() {
        let events = seq(&[
            tap(0x29),
            tap(0x79),
            tap(0x7B),
            tap(0x70),
            tap(CAPS),
            typing("a"),
            shifted(CAPS),
            typing("a"),
            shifted(CAPS),
            typing("a"),
            tap(ENTER),
        ]);
        assert_eq!(
            lines(JP, events.clone()),
            ["<半角/全角><変換><無変換><かな><英数>aAa"]
        );
        // On US the same positions: ` and a CapsLock that toggles alone
        // (on, off with Shift, on again).
        assert_eq!(lines(US, events), ["`<変換><無変換><かな>AaA"]);
    }

    #[test]
    fn shortcuts_are_named_with_their_modifiers() {
        let win = |e| key(0x5B, true, e);
        let events = seq(&[
            with(CTRL, 0x2E),                                  // Ctrl+C
            with(ALT, 0x0F),                                   // Alt+Tab
            vec![win(false), down(0x13), up(0x13), win(true)], // Win+R
            vec![win(false), win(true)],                       // Win alone
            vec![down(CTRL), down(ALT)],
            tap_ext(0x53), // Ctrl+Alt+Del
            vec![up(ALT), down(SHIFT)],
            tap(0x01), // Ctrl+Shift+Esc
            vec![up(SHIFT), up(CTRL)],
            vec![key(0x1D, true, false)], // right Ctrl
            tap(0x2E),
            tap(0x39),  // Ctrl+Space
            tap(0x02),  // Ctrl+1
            tap(ENTER), // Ctrl+Enter: no new line
            vec![key(0x1D, true, true)],
            vec![key(0x38, true, false)], // right Alt is Alt on US
            tap(0x3E),
            vec![key(0x38, true, true)],
            shifted(0x0F), // Shift+Tab
            tap(ENTER),
        ]);
        assert_eq!(
            lines(US, events),
            [
                "<Ctrl+C><Alt+Tab><Win+R><Win><Ctrl+Alt+Del><Ctrl+Shift+Esc>\
                 <Ctrl+C><Ctrl+Space><Ctrl+1><Ctrl+Enter><Alt+F4><Shift+Tab>"
            ]
        );
    }

    #[test]
    fn special_keys_are_named() {
        let events = seq(&[
            tap(0x0F),
            tap(0x01),
            tap(0x3F),
            tap(0x58),
            tap_ext(0x48),
            tap_ext(0x50),
            tap_ext(0x4B),
            tap_ext(0x4D),
            tap_ext(0x47),
            tap_ext(0x4F),
            tap_ext(0x49),
            tap_ext(0x51),
            tap_ext(0x52),
            tap_ext(0x53),
            tap_ext(0x37),
            tap_ext(0x5D),
            tap_ext(0x35), // numpad /
            tap(0x37),     // numpad *
            tap(0x4A),
            tap(0x4E),
            tap_ext(0x20), // a media key
            tap(ENTER),
        ]);
        assert_eq!(
            lines(US, events),
            [
                "<Tab><Esc><F5><F12><Up><Down><Left><Right><Home><End><PgUp><PgDn><Ins><Del><PrtSc><Menu>/*-+<sc E0 20>"
            ]
        );
    }

    #[test]
    fn numpad_follows_numlock_and_pause_is_not_numlock() {
        let pause = vec![
            FastPathInputEvent::KeyboardEvent(KeyboardFlags::EXTENDED1, 0x1D),
            down(0x45),
            FastPathInputEvent::KeyboardEvent(
                KeyboardFlags::EXTENDED1 | KeyboardFlags::RELEASE,
                0x1D,
            ),
            up(0x45),
        ];
        let events = seq(&[
            tap(0x47),
            tap(0x45), // NumLock on
            tap(0x47),
            tap(0x53),
            tap(ENTER),
            pause,
            tap(0x48),                                           // still NumLock on: 8
            vec![key(0x1C, true, false), key(0x1C, true, true)], // numpad Enter
        ]);
        assert_eq!(lines(US, events), ["<Home>7.", "<Pause>8"]);
    }

    #[test]
    fn auto_repeat_types_again_but_does_not_toggle_again() {
        let events = seq(&[
            vec![down(0x1E), down(0x1E), down(0x1E), up(0x1E)],
            vec![down(CAPS), down(CAPS), down(CAPS), up(CAPS)],
            typing("b"),
            vec![down(BS), down(BS), up(BS)],
            typing("c"),
            tap(ENTER),
        ]);
        // aaa, CapsLock on once, B, two Backspaces (press and repeat), C.
        assert_eq!(lines(US, events), ["aaC"]);
    }

    #[test]
    fn backspace_edits_at_the_end_and_is_shown_elsewhere() {
        let events = seq(&[
            typing("lss"),
            tap(BS),
            typing(" "),
            shifted(0x0C),
            tap(ENTER),
            tap(BS), // nothing to erase
            typing("x"),
            tap(ENTER),
            typing("ab"),
            tap_ext(0x4B), // cursor moved: the log cannot tell what BS erases
            tap(BS),
            typing("c"),
            tap(BS), // erases the c just typed
            tap(ENTER),
        ]);
        assert_eq!(lines(US, events), ["ls _", "<BS>x", "ab<Left><BS>"]);
    }

    #[test]
    fn enter_splits_lines_with_times_and_the_rest_is_unfinished() {
        let mut pdus: Vec<(u32, Vec<u8>)> = Vec::new();
        for e in seq(&[typing("ls"), tap(ENTER), tap(ENTER), typing("pwd")]) {
            pdus.push((0, fast_path(vec![e])));
        }
        let log = log_of(US, pdus);
        let got: Vec<(&str, u64, u64, LineEnd)> = log
            .lines
            .iter()
            .map(|l| (l.text.as_str(), l.t_start_us, l.t_end_us, l.ended_by))
            .collect();
        assert_eq!(
            got,
            [
                ("ls", 0, 4000, LineEnd::Enter),
                ("", 6000, 6000, LineEnd::Enter),
                ("pwd", 8000, 13_000, LineEnd::Unfinished),
            ]
        );
        assert_eq!(log.stats.decoded, 14);
    }

    #[test]
    fn unicode_events_give_their_characters() {
        let u = |unit: u16, release: bool| {
            FastPathInputEvent::UnicodeKeyboardEvent(
                if release {
                    KeyboardFlags::RELEASE
                } else {
                    KeyboardFlags::empty()
                },
                unit,
            )
        };
        let mut events = Vec::new();
        for unit in "ログ 😀".encode_utf16() {
            events.push(u(unit, false));
            events.push(u(unit, true));
        }
        // A lone high surrogate, then a tab and Backspace by unicode.
        events.extend([u(0xD83D, false), u(u16::from(b'x'), false)]);
        events.extend([u(u16::from(b'y'), false), u(0x08, false), u(0x09, false)]);
        events.push(u(u16::from(b'\r'), false));
        assert_eq!(lines(JP, events), ["ログ 😀\u{fffd}x<Tab>"]);
    }

    #[test]
    fn slow_path_input_is_read_like_fast_path() {
        let sync = InputEvent::Sync(SyncPdu {
            flags: SyncToggleFlags::CAPS_LOCK,
        });
        let click = InputEvent::Mouse(MousePdu {
            flags: PointerFlags::DOWN | PointerFlags::LEFT_BUTTON,
            number_of_wheel_rotation_units: 0,
            x_position: 10,
            y_position: 10,
        });
        let unicode = InputEvent::Unicode(UnicodePdu {
            flags: unicode::KeyboardFlags::empty(),
            unicode_code: u16::from(b'!'),
        });
        let pdus = vec![
            (
                IO_CHANNEL,
                slow_path(vec![sync, slow_key(0x1E, false), slow_key(0x1E, true)]),
            ),
            // Fast-path and slow-path mixed, as some clients do.
            (0, fast_path(typing("b"))),
            (
                IO_CHANNEL,
                slow_path(vec![click, unicode, slow_key(0x03, false)]),
            ),
            (
                IO_CHANNEL,
                slow_path(vec![slow_key(0x1C, false), slow_key(0x1C, true)]),
            ),
        ];
        let log = log_of(JP, pdus);
        assert_eq!(
            log.stats,
            InputStats {
                decoded: 4,
                skipped: 0
            }
        );
        assert_eq!(log.lines.len(), 1);
        assert_eq!(log.lines[0].text, "AB!2");
        assert_eq!(log.lines[0].clicks, 1);
    }

    #[test]
    fn other_slow_path_pdus_are_not_input() {
        let mut not_input = slow_path(vec![slow_key(0x1E, false)]);
        not_input[14] = 0x1F; // pduType2 Synchronize
        let log = log_of(
            US,
            vec![(IO_CHANNEL, not_input), (IO_CHANNEL, b"\x05\x00".to_vec())],
        );
        assert_eq!(log.stats, InputStats::default());
        assert!(log.lines.is_empty());
    }

    #[test]
    fn mouse_clicks_are_counted_and_motion_is_not() {
        let mouse = |flags| {
            FastPathInputEvent::MouseEvent(MousePdu {
                flags,
                number_of_wheel_rotation_units: 0,
                x_position: 1,
                y_position: 2,
            })
        };
        let events = seq(&[
            vec![
                mouse(PointerFlags::MOVE),
                mouse(PointerFlags::DOWN | PointerFlags::LEFT_BUTTON),
                mouse(PointerFlags::LEFT_BUTTON),
                mouse(PointerFlags::VERTICAL_WHEEL | PointerFlags::DOWN),
            ],
            typing("ok"),
            vec![mouse(PointerFlags::DOWN | PointerFlags::RIGHT_BUTTON)],
            tap(BS), // after a click the cursor may be anywhere
            tap(ENTER),
            vec![mouse(PointerFlags::MOVE)],
            typing("x"),
            tap(ENTER),
        ]);
        let log = log_of(
            US,
            events
                .into_iter()
                .map(|e| (0, fast_path(vec![e])))
                .collect(),
        );
        let got: Vec<(&str, u32)> = log
            .lines
            .iter()
            .map(|l| (l.text.as_str(), l.clicks))
            .collect();
        assert_eq!(got, [("ok<BS>", 2), ("x", 0)]);
    }

    #[test]
    fn several_events_in_one_fast_path_pdu() {
        let pdu = fast_path(seq(&[shifted(0x23), typing("ello"), tap(ENTER)]));
        let log = log_of(US, vec![(0, pdu)]);
        assert_eq!(log.lines[0].text, "Hello");
        assert_eq!(
            log.stats,
            InputStats {
                decoded: 1,
                skipped: 0
            }
        );
        // More than 15 events: the count is in a byte of its own.
        let many = fast_path(seq(&[typing("abcdefghij"), tap(ENTER)]));
        assert_eq!(many[0] & 0x3C, 0);
        let log = log_of(US, vec![(0, many)]);
        assert_eq!(log.lines[0].text, "abcdefghij");
    }

    #[test]
    fn hostile_pdus_are_skipped_never_a_panic() {
        let good_fast = fast_path(seq(&[typing("ab"), tap(ENTER)]));
        let good_slow = slow_path(vec![slow_key(0x1E, false), slow_key(0x1E, true)]);
        let mut bad: Vec<(u32, Vec<u8>)> = vec![
            (0, vec![]),
            (0, vec![0x00]),
            // A length shorter than the header itself.
            (0, vec![0x04, 0x00]),
            (0, vec![0x04, 0x80]),
            (0, vec![0x00, 0x02]),
            // Encrypted: not readable here.
            (0, vec![0x84, 0x04, 0x00, 0x1E]),
            // An unknown event type.
            (0, vec![0x04, 0x04, 0xE0, 0x1E]),
            (0, vec![0xff; 64]),
            (IO_CHANNEL, vec![0xff; 64]),
        ];
        for cut in 0..good_fast.len() {
            bad.push((0, good_fast[..cut].to_vec()));
        }
        for cut in 15..good_slow.len() {
            bad.push((IO_CHANNEL, good_slow[..cut].to_vec()));
        }
        let mut seed = 0x9E37_79B9_u32;
        for _ in 0..300 {
            for (channel, good) in [(0, &good_fast), (IO_CHANNEL, &good_slow)] {
                let mut p = good.clone();
                for b in p.iter_mut() {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    if seed.is_multiple_of(4) {
                        *b = (seed >> 16) as u8;
                    }
                }
                bad.push((channel, p));
            }
        }
        let n_bad = bad.len();
        // Whatever the garbage did to the line, a clean line after it reads.
        bad.push((0, fast_path(tap(ENTER))));
        bad.push((
            0,
            fast_path(vec![FastPathInputEvent::SyncEvent(
                SynchronizeFlags::empty(),
            )]),
        ));
        bad.push((0, good_fast.clone()));
        let log = log_of(US, bad);
        assert!(log.stats.skipped >= 20, "{:?}", log.stats);
        assert!(log.stats.skipped + log.stats.decoded <= n_bad as u64 + 3);
        assert_eq!(log.lines.last().map(|l| l.text.as_str()), Some("ab"));
    }

    #[test]
    fn the_layout_is_the_one_in_the_header() {
        assert_eq!(
            layout_of(&rdp_of(&meta(JP))).description(),
            "Japanese 106/109 (0x411)"
        );
    }

    #[test]
    fn log_format_matches_the_ssh_log() {
        let events = [
            (1_000_000, fast_path(seq(&[typing("dir"), tap(ENTER)]))),
            (2_500_000, fast_path(seq(&[shifted(0x03), tap(ENTER)]))),
            (3_000_000, vec![0x04, 0x00]),
            (4_000_000, fast_path(typing("exit"))),
        ]
        .into_iter()
        .map(|(t_us, data)| {
            Ok(TimedEvent {
                t_us,
                event: Event::Input {
                    channel: 0,
                    data: Bytes::from(data),
                },
            })
        });
        let mut buf = Vec::new();
        let stats =
            write_keystroke_log(&meta(JP), &rdp_of(&meta(JP)), events, &mut buf).expect("log");
        assert_eq!(
            stats,
            InputStats {
                decoded: 3,
                skipped: 1
            }
        );
        let text = String::from_utf8(buf).expect("utf8");
        assert_eq!(
            text,
            "# session s1 user tanaka vendor acme target win01 (rdp) from 127.0.0.1:1 started 1970-01-01T00:00:00+00:00\n\
             # keyboard: Japanese 106/109 (0x411)\n\
             # keys as pressed: kana/kanji conversion by the IME happens on the target and is not shown\n\
             # 1 client input PDU(s) could not be decoded and were skipped\n\
             1970-01-01T00:00:01.000Z  +1.000s  kbd  dir\n\
             1970-01-01T00:00:02.500Z  +2.500s  kbd  \\\"\n\
             1970-01-01T00:00:04.000Z  +4.000s  kbd  exit  [unfinished]\n"
        );
        let mut buf = Vec::new();
        write_keystroke_log(
            &meta(Some((0x407, 4, 0))),
            &rdp_of(&meta(Some((0x407, 4, 0)))),
            std::iter::empty(),
            &mut buf,
        )
        .expect("log");
        let text = String::from_utf8(buf).expect("utf8");
        assert!(
            text.contains(
                "# keyboard: unknown layout 0x407 (type 4, subtype 0); read as US 101/102\n"
            ),
            "{text}"
        );
    }
}
