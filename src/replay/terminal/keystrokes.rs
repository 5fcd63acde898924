//! The keystroke log of a terminal session: what the person typed, one entry per line entered, with
//! times. Line editing is replayed the way a shell's line editor would do it:
//! backspace, ^U, ^W, ^A/^E, arrow keys, Home/End/Delete. Keys whose effect
//! depends on the shell's state (history, completion) are shown as `<UP>`,
//! `<DOWN>`, `<TAB>`; the output shows what they produced.

use std::collections::BTreeMap;
use std::io::Write;

use crate::recording::{Event, ReadError, SessionMeta, TimedEvent};
use crate::replay::ExportError;
use crate::replay::keylog::{LineEnd, write_log_entry, write_log_header};

/// One line as entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedLine {
    pub channel: u32,
    /// First keystroke of the line, µs.
    pub t_start_us: u64,
    /// Enter (or ^C / end of session), µs.
    pub t_end_us: u64,
    pub text: String,
    pub ended_by: LineEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// ESC seen, sequence kind not yet known.
    Start,
    Csi,
    Ss3,
}

/// Line editor state of one channel.
#[derive(Debug)]
struct LineEditor {
    line: Vec<char>,
    cursor: usize,
    t_start: Option<u64>,
    esc: Esc,
    csi_params: String,
    utf8: Vec<u8>,
}

impl LineEditor {
    fn new() -> Self {
        LineEditor {
            line: Vec::new(),
            cursor: 0,
            t_start: None,
            esc: Esc::None,
            csi_params: String::new(),
            utf8: Vec::new(),
        }
    }

    fn insert_str(&mut self, s: &str) {
        for c in s.chars() {
            self.line.insert(self.cursor, c);
            self.cursor += 1;
        }
    }

    fn take(&mut self, channel: u32, t: u64, ended_by: LineEnd) -> TypedLine {
        let text: String = self.line.drain(..).collect();
        self.cursor = 0;
        TypedLine {
            channel,
            t_start_us: self.t_start.take().unwrap_or(t),
            t_end_us: t,
            text,
            ended_by,
        }
    }

    fn delete_word_before(&mut self) {
        let mut i = self.cursor;
        while i > 0 && self.line.get(i - 1).is_some_and(|c| c.is_whitespace()) {
            i -= 1;
        }
        while i > 0 && self.line.get(i - 1).is_some_and(|c| !c.is_whitespace()) {
            i -= 1;
        }
        self.line.drain(i..self.cursor);
        self.cursor = i;
    }

    fn csi(&mut self, final_byte: u8) {
        let params = std::mem::take(&mut self.csi_params);
        match (final_byte, params.as_str()) {
            (b'A', _) => self.insert_str("<UP>"),
            (b'B', _) => self.insert_str("<DOWN>"),
            (b'C', _) => self.cursor = (self.cursor + 1).min(self.line.len()),
            (b'D', _) => self.cursor = self.cursor.saturating_sub(1),
            (b'H', _) | (b'~', "1") | (b'~', "7") => self.cursor = 0,
            (b'F', _) | (b'~', "4") | (b'~', "8") => self.cursor = self.line.len(),
            (b'~', "3") if self.cursor < self.line.len() => {
                self.line.remove(self.cursor);
            }
            // Bracketed paste markers and anything else: no effect on the text.
            _ => {}
        }
    }

    /// Feeds one byte; returns a finished line, if any.
    fn feed(&mut self, channel: u32, t: u64, b: u8) -> Option<TypedLine> {
        match self.esc {
            Esc::Start => {
                self.esc = match b {
                    b'[' => Esc::Csi,
                    b'O' => Esc::Ss3,
                    _ => Esc::None,
                };
                return None;
            }
            Esc::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.esc = Esc::None;
                    self.csi(b);
                } else if self.csi_params.len() < 16 {
                    self.csi_params.push(char::from(b));
                }
                return None;
            }
            Esc::Ss3 => {
                self.esc = Esc::None;
                self.csi(b);
                return None;
            }
            Esc::None => {}
        }
        if self.t_start.is_none() && !matches!(b, b'\r' | b'\n') {
            self.t_start = Some(t);
        }
        match b {
            b'\r' | b'\n' => {
                // "\r\n" from some clients: one Enter.
                if b == b'\n' && self.t_start.is_none() && self.line.is_empty() {
                    return None;
                }
                return Some(self.take(channel, t, LineEnd::Enter));
            }
            0x1b => self.esc = Esc::Start,
            0x7f | 0x08 => {
                if self.cursor > 0 {
                    self.cursor -= 1;
                    self.line.remove(self.cursor);
                }
            }
            0x15 => {
                self.line.drain(..self.cursor);
                self.cursor = 0;
            }
            0x17 => self.delete_word_before(),
            0x01 => self.cursor = 0,
            0x05 => self.cursor = self.line.len(),
            0x02 => self.cursor = self.cursor.saturating_sub(1),
            0x06 => self.cursor = (self.cursor + 1).min(self.line.len()),
            0x0b => self.line.truncate(self.cursor),
            0x03 => return Some(self.take(channel, t, LineEnd::Interrupt)),
            0x04 => {
                if self.line.is_empty() {
                    return Some(self.take(channel, t, LineEnd::Eof));
                }
                if self.cursor < self.line.len() {
                    self.line.remove(self.cursor);
                }
            }
            b'\t' => self.insert_str("<TAB>"),
            0x00..=0x1f => self.insert_str(&format!("<^{}>", char::from(b + 0x40))),
            _ => {
                self.utf8.push(b);
                match std::str::from_utf8(&self.utf8) {
                    Ok(s) => {
                        let s = s.to_owned();
                        self.insert_str(&s);
                        self.utf8.clear();
                    }
                    Err(e) if e.error_len().is_none() && self.utf8.len() < 4 => {}
                    Err(_) => {
                        self.insert_str("\u{fffd}");
                        self.utf8.clear();
                    }
                }
            }
        }
        None
    }
}

/// Replays the Input events into the lines the person entered.
pub fn typed_lines(
    events: impl IntoIterator<Item = Result<TimedEvent, ReadError>>,
) -> Result<Vec<TypedLine>, ReadError> {
    let mut editors: BTreeMap<u32, LineEditor> = BTreeMap::new();
    let mut lines = Vec::new();
    let mut last_t = 0;
    for item in events {
        let TimedEvent { t_us, event } = item?;
        last_t = t_us;
        if let Event::Exec { channel, command } = &event {
            lines.push(TypedLine {
                channel: *channel,
                t_start_us: t_us,
                t_end_us: t_us,
                text: String::from_utf8_lossy(command).into_owned(),
                ended_by: LineEnd::Exec,
            });
        }
        if let Event::Input { channel, data } = event {
            let ed = editors.entry(channel).or_insert_with(LineEditor::new);
            for &b in data.iter() {
                if let Some(line) = ed.feed(channel, t_us, b) {
                    lines.push(line);
                }
            }
        }
    }
    for (channel, mut ed) in editors {
        if !ed.line.is_empty() {
            lines.push(ed.take(channel, last_t, LineEnd::Unfinished));
        }
    }
    lines.sort_by_key(|l| (l.t_end_us, l.channel));
    Ok(lines)
}

/// Writes a plain-text keystroke log: a header, then per line
/// `wall-clock  +seconds  chN  text  [^C|^D|unfinished]`.
pub fn write_keystroke_log<W: Write>(
    meta: &SessionMeta,
    events: impl IntoIterator<Item = Result<TimedEvent, ReadError>>,
    mut out: W,
) -> Result<(), ExportError> {
    let lines = typed_lines(events)?;
    write_log_header(meta, &mut out)?;
    for l in lines {
        let suffix = match l.ended_by {
            LineEnd::Enter => "",
            LineEnd::Interrupt => "  [^C]",
            LineEnd::Eof => "  [^D]",
            LineEnd::Unfinished => "  [unfinished]",
            LineEnd::Exec => "  [exec]",
        };
        write_log_entry(
            meta,
            l.t_end_us,
            &format!("ch{}", l.channel),
            &l.text,
            suffix,
            &mut out,
        )?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn typed(chunks: &[&[u8]]) -> Vec<TypedLine> {
        let events = chunks.iter().enumerate().map(|(i, c)| {
            Ok(TimedEvent {
                t_us: i as u64 * 1000,
                event: Event::Input {
                    channel: 0,
                    data: Bytes::copy_from_slice(c),
                },
            })
        });
        typed_lines(events).unwrap()
    }

    fn texts(chunks: &[&[u8]]) -> Vec<String> {
        typed(chunks).into_iter().map(|l| l.text).collect()
    }

    #[test]
    fn plain_lines_with_times() {
        let l = typed(&[b"l", b"s", b"\r", b"pwd\r"]);
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0].text.as_str(), l[0].t_start_us, l[0].t_end_us),
            ("ls", 0, 2000)
        );
        assert_eq!((l[1].text.as_str(), l[1].t_start_us), ("pwd", 3000));
        assert_eq!(l[1].ended_by, LineEnd::Enter);
    }

    #[test]
    fn backspace_kill_line_and_kill_word() {
        assert_eq!(texts(&[b"lss\x7f -l\r"]), ["ls -l"]);
        assert_eq!(texts(&[b"rm -rf /\x15echo ok\r"]), ["echo ok"]);
        assert_eq!(texts(&[b"cat /etc/shadow\x17passwd\r"]), ["cat passwd"]);
        assert_eq!(texts(&[b"a b  \x17\x17c\r"]), ["c"]);
        assert_eq!(texts(&[b"\x7f\x7fx\r"]), ["x"]);
    }

    #[test]
    fn arrows_home_end_and_delete_edit_in_the_middle() {
        assert_eq!(
            texts(&[b"echo wrld", b"\x1b[D\x1b[D\x1b[D", b"o", b"\r"]),
            ["echo world"]
        );
        assert_eq!(texts(&[b"bc\x1b[Ha\x1b[Fd\r"]), ["abcd"]);
        assert_eq!(texts(&[b"abc\x01\x1b[3~\r"]), ["bc"]);
        assert_eq!(texts(&[b"ab\x1bOD\x1bODx\r"]), ["xab"]);
        // An escape sequence split across two reads.
        assert_eq!(texts(&[b"ab\x1b", b"[D", b"X\r"]), ["aXb"]);
    }

    #[test]
    fn history_tab_interrupt_eof_and_unfinished() {
        let l = typed(&[
            b"\x1b[A\r",
            b"sys\tstatus\r",
            b"sleep 100\x03",
            b"\x04",
            b"exit",
        ]);
        let got: Vec<(&str, LineEnd)> = l.iter().map(|l| (l.text.as_str(), l.ended_by)).collect();
        assert_eq!(
            got,
            [
                ("<UP>", LineEnd::Enter),
                ("sys<TAB>status", LineEnd::Enter),
                ("sleep 100", LineEnd::Interrupt),
                ("", LineEnd::Eof),
                ("exit", LineEnd::Unfinished),
            ]
        );
    }

    #[test]
    fn utf8_split_across_reads_and_crlf() {
        let ja = "ログ".as_bytes();
        assert_eq!(
            texts(&[&ja[..2], &ja[2..], b"\r\n", b"x\r\n"]),
            ["ログ", "x"]
        );
    }

    #[test]
    fn log_format() {
        use crate::recording::{Protocol, SessionMeta};
        use chrono::{TimeZone as _, Utc};
        let meta = SessionMeta {
            session_id: "s1".into(),
            user: "tanaka".into(),
            vendor: "acme".into(),
            system: "fa".into(),
            target: "fa-db01".into(),
            protocol: Protocol::Ssh,
            client_addr: "127.0.0.1:1".into(),
            decision: "allow".into(),
            hop_parent: None,
            started_at: Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap(),
            terminal: None,
            desktop: None,
            rdp: None,
        };
        let events = vec![Ok(TimedEvent {
            t_us: 1_234_000,
            event: Event::Input {
                channel: 0,
                data: Bytes::from_static(b"uptime\r"),
            },
        })];
        let mut buf = Vec::new();
        write_keystroke_log(&meta, events, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("# session s1 user tanaka"), "{text}");
        assert!(
            text.contains("2026-11-22T00:00:01.234Z  +1.234s  ch0  uptime\n"),
            "{text}"
        );
    }
}
