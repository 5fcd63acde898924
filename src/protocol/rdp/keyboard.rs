//! RDP keyboards: which character a key position types on the layout the
//! client announced, and the keyboard state (modifiers, lock keys, keys held)
//! that turns key events into what the person typed.
//!
//! RDP keyboard input is key positions (scancodes), not characters; which
//! character a key types depends on the keyboard layout the client announced
//! (Client Core Data: `keyboardLayout`, `keyboardType`, `keyboardSubType`).
//! Known: US 101/102 (0x409) and Japanese 106/109 (0x411, keyboard type 7,
//! subtype 2); a Japanese layout on a 101/102-key keyboard types what the US
//! positions do. Any other layout is read as US and the description says so.
//! Kana/kanji conversion by an IME happens on the target, so a Japanese
//! session gives the keys as pressed (romaji) and the IME keys by name.
//! Unicode input events carry their character directly.
//!
//! Pure: no I/O, no archive; the keystroke log (`replay::desktop`) drives it.

/// Which characters the keys type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Positions {
    Us,
    Japanese106,
}

/// The keyboard the client announced, as the log reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyboardLayout {
    pub(crate) positions: Positions,
    /// A Japanese layout: kana/kanji conversion happens on the target.
    pub japanese: bool,
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

pub(crate) fn letter(code: u8) -> Option<char> {
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
pub enum Typed {
    Char(char),
    /// A key shown by name, brackets included: `<Tab>`, `<Ctrl+C>`.
    Named(String),
    Enter,
    Backspace,
}

/// Keyboard state: modifiers held, lock keys, keys held (to tell auto-repeat
/// from a new press).
pub struct Keyboard {
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
    /// A keyboard of `layout` with nothing held and the lock keys off.
    pub fn new(layout: &KeyboardLayout) -> Keyboard {
        Keyboard {
            positions: layout.positions,
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

    /// The client synchronized its toggle keys.
    pub fn sync(&mut self, caps: bool, num: bool) {
        self.caps = caps;
        self.num = num;
        // Clients synchronize when they get the focus back and then press
        // again whatever is held; keys released meanwhile never came.
        self.modifiers = [false; 8];
        self.held.fill(false);
        self.win_alone = false;
        self.pause_pending = false;
    }

    /// A key pressed or released; what it typed, if anything.
    pub fn key(
        &mut self,
        code: u8,
        extended: bool,
        extended1: bool,
        release: bool,
    ) -> Option<Typed> {
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
    pub fn unicode(&mut self, unit: u16, release: bool, out: &mut Vec<Typed>) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
