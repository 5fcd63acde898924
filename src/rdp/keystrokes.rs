//! The keystroke log of an RDP session: what the person typed, one entry per
//! line entered (Enter), in the format of the SSH keystroke log.
//!
//! RDP keyboard input is key positions (scancodes), not characters; which
//! character a key types depends on the keyboard layout the client announced,
//! which the archive header keeps (`keyboard_layout`, `keyboard_type`,
//! `keyboard_subtype`). Known: US 101/102 (0x409) and Japanese 106/109
//! (0x411, keyboard type 7, subtype 2); a Japanese layout on a 101/102-key
//! keyboard types what the US positions do. Any other layout is read as US
//! and the log header says so. Kana/kanji conversion by an IME happens on the
//! target, so a Japanese session shows the keys as pressed (romaji) and the
//! IME keys by name. Unicode input events carry their character directly.
//!
//! Decoding is tolerant: a recorded input PDU that cannot be decoded is
//! skipped and counted, never a panic and never the end of the export.

use std::io::Write;

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

use crate::recording::export::ExportError;
use crate::recording::export::keystrokes::{LineEnd, write_log_entry, write_log_header};
use crate::recording::{Event, ReadError, SessionMeta, TimedEvent};

/// Which characters the keys type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Positions {
    Us,
    Japanese106,
}

/// The keyboard the client announced, as the log reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyboardLayout {
    positions: Positions,
    japanese: bool,
    description: String,
}

const LANG_US: u32 = 0x0409;
const LANG_JAPANESE: u32 = 0x0411;
/// keyboardType 7: Japanese keyboard (MS-RDPBCGR 2.2.1.3.2).
const TYPE_JAPANESE: u32 = 7;
/// keyboardSubType of a Japanese 106/109-key keyboard (0 is a 101/102-key
/// keyboard with the Japanese layout).
const SUBTYPE_JAPANESE_106: u32 = 2;

impl KeyboardLayout {
    /// The layout recorded in the archive header.
    pub fn from_meta(meta: &SessionMeta) -> KeyboardLayout {
        let get = |key: &str| {
            meta.protocol_info
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        KeyboardLayout::from_ids(
            get("keyboard_layout"),
            get("keyboard_type").unwrap_or(0),
            get("keyboard_subtype").unwrap_or(0),
        )
    }

    /// From the Client Core Data fields; `layout` is `None` when not recorded.
    pub fn from_ids(layout: Option<u32>, keyboard_type: u32, subtype: u32) -> KeyboardLayout {
        let Some(layout) = layout else {
            return KeyboardLayout {
                positions: Positions::Us,
                japanese: false,
                description: "not recorded; read as US 101/102".into(),
            };
        };
        // The low word is the language; IME layouts such as 0xE0010411
        // carry it too.
        let (positions, description) = match (layout & 0xFFFF, keyboard_type, subtype) {
            (LANG_US, _, _) => (Positions::Us, format!("US 101/102 ({layout:#x})")),
            (LANG_JAPANESE, TYPE_JAPANESE, SUBTYPE_JAPANESE_106) => (
                Positions::Japanese106,
                format!("Japanese 106/109 ({layout:#x})"),
            ),
            (LANG_JAPANESE, TYPE_JAPANESE, s) if s != 0 => (
                Positions::Japanese106,
                format!("Japanese 106/109 ({layout:#x}; keyboard subtype {s} read as 106/109)"),
            ),
            (LANG_JAPANESE, t, s) => (
                Positions::Us,
                format!(
                    "Japanese on a 101/102-key keyboard ({layout:#x}, type {t}, subtype {s}): US key positions"
                ),
            ),
            (_, t, s) => (
                Positions::Us,
                format!("unknown layout {layout:#x} (type {t}, subtype {s}); read as US 101/102"),
            ),
        };
        KeyboardLayout {
            positions,
            japanese: layout & 0xFFFF == LANG_JAPANESE,
            description,
        }
    }

    /// What the log header says about the keyboard.
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// A key modifier, left and right apart (releasing one Shift leaves the
/// other held).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modifier {
    ShiftL,
    ShiftR,
    CtrlL,
    CtrlR,
    AltL,
    /// Right Alt: AltGr on layouts that have one; on US and Japanese it is Alt.
    AltR,
    WinL,
    WinR,
}

/// What a key position is, on a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// A letter (lower case); Shift and CapsLock choose the case.
    Letter(char),
    /// A character key: unshifted, shifted (`None`: nothing with Shift).
    Char(char, Option<char>),
    /// A numeric keypad key: its digit with NumLock on, its name without.
    Numpad(char, &'static str),
    Named(&'static str),
    Enter,
    Backspace,
    Modifier(Modifier),
    CapsLock,
    NumLock,
    /// The fake Shift presses keyboards send around some extended keys.
    Ignored,
    Unknown,
}

fn letter(code: u8) -> Option<char> {
    let (row, first) = match code {
        0x10..=0x19 => ("qwertyuiop", 0x10),
        0x1E..=0x26 => ("asdfghjkl", 0x1E),
        0x2C..=0x32 => ("zxcvbnm", 0x2C),
        _ => return None,
    };
    row.chars().nth(usize::from(code - first))
}

/// Character keys of the US 101/102 layout.
fn us_char(code: u8) -> Option<(char, char)> {
    Some(match code {
        0x29 => ('`', '~'),
        0x02 => ('1', '!'),
        0x03 => ('2', '@'),
        0x04 => ('3', '#'),
        0x05 => ('4', '$'),
        0x06 => ('5', '%'),
        0x07 => ('6', '^'),
        0x08 => ('7', '&'),
        0x09 => ('8', '*'),
        0x0A => ('9', '('),
        0x0B => ('0', ')'),
        0x0C => ('-', '_'),
        0x0D => ('=', '+'),
        0x1A => ('[', '{'),
        0x1B => (']', '}'),
        0x2B => ('\\', '|'),
        0x27 => (';', ':'),
        0x28 => ('\'', '"'),
        0x33 => (',', '<'),
        0x34 => ('.', '>'),
        0x35 => ('/', '?'),
        // The extra key of 102-key keyboards.
        0x56 => ('\\', '|'),
        _ => return None,
    })
}

/// Character keys of the Japanese 106/109 layout (JIS positions).
fn japanese_char(code: u8) -> Option<(char, Option<char>)> {
    Some(match code {
        0x02 => ('1', Some('!')),
        0x03 => ('2', Some('"')),
        0x04 => ('3', Some('#')),
        0x05 => ('4', Some('$')),
        0x06 => ('5', Some('%')),
        0x07 => ('6', Some('&')),
        0x08 => ('7', Some('\'')),
        0x09 => ('8', Some('(')),
        0x0A => ('9', Some(')')),
        // Shift+0 types nothing on a JIS keyboard (を in kana mode).
        0x0B => ('0', None),
        0x0C => ('-', Some('=')),
        0x0D => ('^', Some('~')),
        0x7D => ('¥', Some('|')),
        0x1A => ('@', Some('`')),
        0x1B => ('[', Some('{')),
        0x27 => (';', Some('+')),
        0x28 => (':', Some('*')),
        0x2B => (']', Some('}')),
        0x33 => (',', Some('<')),
        0x34 => ('.', Some('>')),
        0x35 => ('/', Some('?')),
        // The ろ key.
        0x73 => ('\\', Some('_')),
        _ => return None,
    })
}

/// What scancode `code` (with the E0 prefix when `extended`) is on `positions`.
fn classify(positions: Positions, code: u8, extended: bool) -> Key {
    if extended {
        return match code {
            0x1C => Key::Enter,
            0x1D => Key::Modifier(Modifier::CtrlR),
            0x2A | 0x36 => Key::Ignored,
            0x35 => Key::Char('/', Some('/')),
            0x37 => Key::Named("PrtSc"),
            0x38 => Key::Modifier(Modifier::AltR),
            0x46 => Key::Named("Break"),
            0x47 => Key::Named("Home"),
            0x48 => Key::Named("Up"),
            0x49 => Key::Named("PgUp"),
            0x4B => Key::Named("Left"),
            0x4D => Key::Named("Right"),
            0x4F => Key::Named("End"),
            0x50 => Key::Named("Down"),
            0x51 => Key::Named("PgDn"),
            0x52 => Key::Named("Ins"),
            0x53 => Key::Named("Del"),
            0x5B => Key::Modifier(Modifier::WinL),
            0x5C => Key::Modifier(Modifier::WinR),
            0x5D => Key::Named("Menu"),
            _ => Key::Unknown,
        };
    }
    if let Some(c) = letter(code) {
        return Key::Letter(c);
    }
    match positions {
        Positions::Us => {
            if let Some((base, shifted)) = us_char(code) {
                return Key::Char(base, Some(shifted));
            }
        }
        Positions::Japanese106 => {
            if let Some((base, shifted)) = japanese_char(code) {
                return Key::Char(base, shifted);
            }
            if code == 0x29 {
                return Key::Named("半角/全角");
            }
        }
    }
    match code {
        0x01 => Key::Named("Esc"),
        0x0E => Key::Backspace,
        0x0F => Key::Named("Tab"),
        0x1C => Key::Enter,
        0x1D => Key::Modifier(Modifier::CtrlL),
        0x2A => Key::Modifier(Modifier::ShiftL),
        0x36 => Key::Modifier(Modifier::ShiftR),
        0x38 => Key::Modifier(Modifier::AltL),
        0x39 => Key::Char(' ', Some(' ')),
        0x3A => Key::CapsLock,
        0x3B => Key::Named("F1"),
        0x3C => Key::Named("F2"),
        0x3D => Key::Named("F3"),
        0x3E => Key::Named("F4"),
        0x3F => Key::Named("F5"),
        0x40 => Key::Named("F6"),
        0x41 => Key::Named("F7"),
        0x42 => Key::Named("F8"),
        0x43 => Key::Named("F9"),
        0x44 => Key::Named("F10"),
        0x57 => Key::Named("F11"),
        0x58 => Key::Named("F12"),
        0x45 => Key::NumLock,
        0x46 => Key::Named("ScrollLock"),
        0x37 => Key::Char('*', Some('*')),
        0x4A => Key::Char('-', Some('-')),
        0x4E => Key::Char('+', Some('+')),
        0x47 => Key::Numpad('7', "Home"),
        0x48 => Key::Numpad('8', "Up"),
        0x49 => Key::Numpad('9', "PgUp"),
        0x4B => Key::Numpad('4', "Left"),
        0x4C => Key::Numpad('5', "Clear"),
        0x4D => Key::Numpad('6', "Right"),
        0x4F => Key::Numpad('1', "End"),
        0x50 => Key::Numpad('2', "Down"),
        0x51 => Key::Numpad('3', "PgDn"),
        0x52 => Key::Numpad('0', "Ins"),
        0x53 => Key::Numpad('.', "Del"),
        // The keys around the space bar of a Japanese keyboard; no other
        // layout gives these positions a meaning, so they are named on all.
        0x70 => Key::Named("かな"),
        0x79 => Key::Named("変換"),
        0x7B => Key::Named("無変換"),
        _ => Key::Unknown,
    }
}

/// What one input event typed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Typed {
    Char(char),
    /// A key shown by name, brackets included: `<Tab>`, `<Ctrl+C>`.
    Named(String),
    Enter,
    Backspace,
}

/// One decoded client input event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
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

/// Keyboard state: modifiers held, lock keys, keys held (to tell auto-repeat
/// from a new press).
struct Keyboard {
    positions: Positions,
    /// Indexed by `Modifier as usize`.
    modifiers: [bool; 8],
    /// Indexed by `code + 256 * extended`.
    held: Vec<bool>,
    caps: bool,
    num: bool,
    /// Win went down and no other key since: its release opens the Start menu.
    win_alone: bool,
    /// Pause sends E1 1D then 45; the 45 is not NumLock.
    pause_pending: bool,
    high_surrogate: Option<u16>,
}

impl Keyboard {
    fn new(positions: Positions) -> Keyboard {
        Keyboard {
            positions,
            modifiers: [false; 8],
            held: vec![false; 512],
            caps: false,
            num: false,
            win_alone: false,
            pause_pending: false,
            high_surrogate: None,
        }
    }

    fn is_down(&self, m: Modifier) -> bool {
        self.modifiers[m as usize]
    }

    fn shift(&self) -> bool {
        self.is_down(Modifier::ShiftL) || self.is_down(Modifier::ShiftR)
    }
    fn ctrl(&self) -> bool {
        self.is_down(Modifier::CtrlL) || self.is_down(Modifier::CtrlR)
    }
    fn alt(&self) -> bool {
        self.is_down(Modifier::AltL) || self.is_down(Modifier::AltR)
    }
    fn win(&self) -> bool {
        self.is_down(Modifier::WinL) || self.is_down(Modifier::WinR)
    }

    /// Whether a command modifier (not Shift) is held: the key is then a
    /// shortcut, shown by name.
    fn command(&self) -> bool {
        self.ctrl() || self.alt() || self.win()
    }

    /// `<Ctrl+Alt+Win+Shift+NAME>` with the modifiers held.
    fn named(&self, name: &str) -> Typed {
        let mut s = String::from("<");
        for (held, label) in [
            (self.ctrl(), "Ctrl+"),
            (self.alt(), "Alt+"),
            (self.win(), "Win+"),
            (self.shift(), "Shift+"),
        ] {
            if held {
                s.push_str(label);
            }
        }
        s.push_str(name);
        s.push('>');
        Typed::Named(s)
    }

    fn sync(&mut self, caps: bool, num: bool) {
        self.caps = caps;
        self.num = num;
        // Clients synchronize when they get the focus back and then press
        // again whatever is held; keys released meanwhile never came.
        self.modifiers = [false; 8];
        self.held.fill(false);
        self.win_alone = false;
        self.pause_pending = false;
    }

    fn key(&mut self, code: u8, extended: bool, extended1: bool, release: bool) -> Option<Typed> {
        if extended1 {
            if code == 0x1D && !release {
                self.pause_pending = true;
                self.win_alone = false;
                return Some(self.named("Pause"));
            }
            return None;
        }
        if code == 0x45 && !extended && self.pause_pending {
            if release {
                self.pause_pending = false;
            }
            return None;
        }
        let slot = usize::from(code) + if extended { 256 } else { 0 };
        let repeat = !release && self.held.get(slot).copied().unwrap_or(false);
        if let Some(h) = self.held.get_mut(slot) {
            *h = !release;
        }
        let key = classify(self.positions, code, extended);
        if let Key::Modifier(m) = key {
            let is_win = matches!(m, Modifier::WinL | Modifier::WinR);
            self.modifiers[m as usize] = !release;
            if release {
                if is_win && self.win_alone {
                    self.win_alone = false;
                    return Some(Typed::Named("<Win>".into()));
                }
            } else if !repeat {
                self.win_alone = is_win;
            }
            return None;
        }
        if release || key == Key::Ignored {
            return None;
        }
        self.win_alone = false;
        match key {
            Key::Letter(c) if !self.command() => Some(Typed::Char(if self.shift() != self.caps {
                c.to_ascii_uppercase()
            } else {
                c
            })),
            Key::Letter(c) => Some(self.named(&c.to_ascii_uppercase().to_string())),
            Key::Char(' ', _) if self.command() => Some(self.named("Space")),
            Key::Char(base, _) if self.command() => Some(self.named(&base.to_string())),
            Key::Char(base, shifted) => match (self.shift(), shifted) {
                (false, _) => Some(Typed::Char(base)),
                (true, Some(s)) => Some(Typed::Char(s)),
                (true, None) => Some(self.named(&base.to_string())),
            },
            Key::Numpad(digit, _) if self.num && !self.command() => Some(Typed::Char(digit)),
            Key::Numpad(digit, _) if self.num => Some(self.named(&digit.to_string())),
            Key::Numpad(_, name) | Key::Named(name) => Some(self.named(name)),
            Key::Enter if self.command() => Some(self.named("Enter")),
            Key::Enter => Some(Typed::Enter),
            Key::Backspace if self.command() => Some(self.named("BS")),
            Key::Backspace => Some(Typed::Backspace),
            Key::CapsLock => match self.positions {
                Positions::Us => {
                    if !repeat {
                        self.caps = !self.caps;
                    }
                    None
                }
                // On a JIS keyboard the key is 英数; Shift+英数 is CapsLock.
                Positions::Japanese106 if self.shift() => {
                    if !repeat {
                        self.caps = !self.caps;
                    }
                    None
                }
                Positions::Japanese106 => Some(self.named("英数")),
            },
            Key::NumLock => {
                if !repeat {
                    self.num = !self.num;
                }
                None
            }
            Key::Unknown => Some(self.named(&if extended {
                format!("sc E0 {code:02X}")
            } else {
                format!("sc {code:02X}")
            })),
            Key::Modifier(_) | Key::Ignored => None,
        }
    }

    /// A UTF-16 code unit typed directly (pairs come as two events).
    fn unicode(&mut self, unit: u16, release: bool, out: &mut Vec<Typed>) {
        if release {
            return;
        }
        if (0xD800..0xDC00).contains(&unit) {
            if self.high_surrogate.replace(unit).is_some() {
                out.push(Typed::Char(char::REPLACEMENT_CHARACTER));
            }
            return;
        }
        if (0xDC00..0xE000).contains(&unit) {
            let c = self
                .high_surrogate
                .take()
                .and_then(|high| {
                    let v =
                        0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                    char::from_u32(v)
                })
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            out.push(Typed::Char(c));
            return;
        }
        if self.high_surrogate.take().is_some() {
            out.push(Typed::Char(char::REPLACEMENT_CHARACTER));
        }
        let c = char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER);
        out.push(match c {
            '\r' | '\n' => Typed::Enter,
            '\u{8}' => Typed::Backspace,
            '\t' => Typed::Named("<Tab>".into()),
            '\u{1b}' => Typed::Named("<Esc>".into()),
            c if c.is_control() => Typed::Named(format!("<U+{unit:04X}>")),
            c => Typed::Char(c),
        });
    }
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

/// What a recorded client PDU held: its input events, and whether part of
/// it could not be decoded.
#[derive(Debug, Default)]
struct DecodedPdu {
    inputs: Vec<Input>,
    is_input: bool,
    damaged: bool,
}

/// A fast-path input PDU (MS-RDPBCGR 2.2.8.1.2), header included. The
/// header is read here, not by ironrdp, so that a length too short for the
/// header itself is an error and not an arithmetic overflow; the events are
/// ironrdp's. Events before a damaged one are kept.
fn decode_fast_path(pdu: &[u8]) -> DecodedPdu {
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
fn decode_slow_path(pdu: &[u8]) -> DecodedPdu {
    let looks_like_input = super::relay::is_slow_path_input(pdu);
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
    }
}

/// Replays the recorded client input into the lines the person entered.
pub fn keystroke_log(
    meta: &SessionMeta,
    events: impl IntoIterator<Item = Result<TimedEvent, ReadError>>,
) -> Result<KeystrokeLog, ReadError> {
    let layout = KeyboardLayout::from_meta(meta);
    let fastpath_channel = meta
        .protocol_info
        .get("fastpath_channel")
        .and_then(serde_json::Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(super::services::FASTPATH_CHANNEL);
    let mut keyboard = Keyboard::new(layout.positions);
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
        let fast_path = channel == fastpath_channel;
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
    events: impl IntoIterator<Item = Result<TimedEvent, ReadError>>,
    mut out: W,
) -> Result<InputStats, ExportError> {
    let log = keystroke_log(meta, events)?;
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
    use crate::recording::Protocol;
    use bytes::Bytes;
    use ironrdp_core::encode_vec;
    use ironrdp_pdu::input::fast_path::FastPathInput;
    use ironrdp_pdu::input::mouse::MousePdu;
    use ironrdp_pdu::input::{InputEventPdu, ScanCodePdu, SyncPdu, UnicodePdu};
    use ironrdp_pdu::rdp::headers::{CompressionFlags, ShareDataHeader, StreamPriority};

    const IO_CHANNEL: u32 = 1003;

    fn meta(layout: Option<(u32, u32, u32)>) -> SessionMeta {
        let mut info = serde_json::json!({
            "fastpath_channel": 0,
            "io_channel": IO_CHANNEL,
            "user_channel": 1002,
        });
        if let Some((layout, kb_type, subtype)) = layout {
            info["keyboard_layout"] = layout.into();
            info["keyboard_type"] = kb_type.into();
            info["keyboard_subtype"] = subtype.into();
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
            protocol_info: info,
        }
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
        keystroke_log(&meta(layout), events).expect("log")
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
    fn layouts_are_described_and_unknown_ones_read_as_us() {
        let d = |layout, t, s| KeyboardLayout::from_ids(layout, t, s);
        assert_eq!(d(Some(0x409), 4, 0).description(), "US 101/102 (0x409)");
        assert_eq!(
            d(Some(0x411), 7, 2).description(),
            "Japanese 106/109 (0x411)"
        );
        assert_eq!(d(Some(0x411), 7, 2).positions, Positions::Japanese106);
        let ime = d(Some(0xE001_0411), 7, 2);
        assert_eq!(ime.positions, Positions::Japanese106);
        assert!(ime.japanese);
        let jp101 = d(Some(0x411), 7, 0);
        assert_eq!(jp101.positions, Positions::Us);
        assert!(jp101.description().contains("101/102-key"), "{jp101:?}");
        let de = d(Some(0x407), 4, 0);
        assert_eq!(de.positions, Positions::Us);
        assert_eq!(
            de.description(),
            "unknown layout 0x407 (type 4, subtype 0); read as US 101/102"
        );
        assert_eq!(
            d(None, 0, 0).description(),
            "not recorded; read as US 101/102"
        );
        assert_eq!(
            KeyboardLayout::from_meta(&meta(JP)).description(),
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
        let stats = write_keystroke_log(&meta(JP), events, &mut buf).expect("log");
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
        write_keystroke_log(&meta(Some((0x407, 4, 0))), std::iter::empty(), &mut buf).expect("log");
        let text = String::from_utf8(buf).expect("utf8");
        assert!(
            text.contains(
                "# keyboard: unknown layout 0x407 (type 4, subtype 0); read as US 101/102\n"
            ),
            "{text}"
        );
    }
}
