//! Session events and their compact binary encoding inside a chunk.
//!
//! One event is `varint delta_us, u8 kind, fields…` (see
//! docs/recording-format.md). Decoding works on an in-memory chunk whose size
//! the container already bounded, and checks every length against what is
//! left, so a hostile chunk can only produce an error.

use bytes::Bytes;

/// Which output stream of a channel bytes came from. RDP uses `Stdout` for
/// server PDUs and tells streams apart by `channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One protocol-neutral thing that happened in a session.
///
/// `channel` is the SSH channel id, or for RDP a stream tag chosen by the RDP
/// gateway (e.g. 0 fast-path, the static/dynamic channel id otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bytes from the person (keystrokes; RDP input PDUs).
    Input {
        channel: u32,
        data: Bytes,
    },
    /// Bytes from the target (terminal output; RDP server PDUs).
    Output {
        channel: u32,
        stream: Stream,
        data: Bytes,
    },
    /// A pseudo-terminal was requested.
    Pty {
        channel: u32,
        term: String,
        cols: u32,
        rows: u32,
    },
    /// The terminal window changed size.
    Resize {
        channel: u32,
        cols: u32,
        rows: u32,
    },
    /// The desktop changed size (pixels).
    DesktopResize {
        width: u32,
        height: u32,
    },
    /// A command line run without a shell (`ssh host cmd`).
    Exec {
        channel: u32,
        command: Bytes,
    },
    /// A channel (session, shell, subsystem, RDP virtual channel) was opened.
    ChannelOpened {
        channel: u32,
        kind: String,
        detail: String,
    },
    /// A channel or request was refused by the bastion's rules.
    ChannelRefused {
        channel: u32,
        kind: String,
        detail: String,
    },
    ChannelClosed {
        channel: u32,
    },
    ExitStatus {
        channel: u32,
        code: u32,
    },
    ExitSignal {
        channel: u32,
        signal: String,
        core_dumped: bool,
        message: String,
    },
    /// Something the bastion did or noticed ("warning sent", "killed by admin").
    Mark {
        label: String,
        detail: String,
    },
    /// A point from which a desktop replay can start (a full-screen update
    /// follows). Recorded in the trailer's index for seeking.
    Keyframe,
}

impl Event {
    /// Bytes the event carries (for accounting and splitting).
    pub fn payload_len(&self) -> usize {
        match self {
            Event::Input { data, .. } | Event::Output { data, .. } => data.len(),
            Event::Exec { command, .. } => command.len(),
            _ => 0,
        }
    }
}

/// A decoded event with its time in microseconds since the session start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedEvent {
    pub t_us: u64,
    pub event: Event,
}

mod kind {
    pub const INPUT: u8 = 1;
    pub const OUTPUT: u8 = 2;
    pub const PTY: u8 = 3;
    pub const RESIZE: u8 = 4;
    pub const DESKTOP_RESIZE: u8 = 5;
    pub const EXEC: u8 = 6;
    pub const CHANNEL_OPENED: u8 = 7;
    pub const CHANNEL_REFUSED: u8 = 8;
    pub const CHANNEL_CLOSED: u8 = 9;
    pub const EXIT_STATUS: u8 = 10;
    pub const EXIT_SIGNAL: u8 = 11;
    pub const MARK: u8 = 12;
    pub const KEYFRAME: u8 = 13;
}

/// A chunk's event bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed event at byte {offset} of the chunk: {what}")]
pub struct DecodeError {
    pub offset: usize,
    pub what: &'static str,
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends one encoded event to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, delta_us: u64, event: &Event) {
    put_varint(out, delta_us);
    match event {
        Event::Input { channel, data } => {
            out.push(kind::INPUT);
            put_varint(out, u64::from(*channel));
            put_bytes(out, data);
        }
        Event::Output {
            channel,
            stream,
            data,
        } => {
            out.push(kind::OUTPUT);
            put_varint(out, u64::from(*channel));
            out.push(match stream {
                Stream::Stdout => 0,
                Stream::Stderr => 1,
            });
            put_bytes(out, data);
        }
        Event::Pty {
            channel,
            term,
            cols,
            rows,
        } => {
            out.push(kind::PTY);
            put_varint(out, u64::from(*channel));
            put_bytes(out, term.as_bytes());
            put_varint(out, u64::from(*cols));
            put_varint(out, u64::from(*rows));
        }
        Event::Resize {
            channel,
            cols,
            rows,
        } => {
            out.push(kind::RESIZE);
            put_varint(out, u64::from(*channel));
            put_varint(out, u64::from(*cols));
            put_varint(out, u64::from(*rows));
        }
        Event::DesktopResize { width, height } => {
            out.push(kind::DESKTOP_RESIZE);
            put_varint(out, u64::from(*width));
            put_varint(out, u64::from(*height));
        }
        Event::Exec { channel, command } => {
            out.push(kind::EXEC);
            put_varint(out, u64::from(*channel));
            put_bytes(out, command);
        }
        Event::ChannelOpened {
            channel,
            kind: k,
            detail,
        } => {
            out.push(kind::CHANNEL_OPENED);
            put_varint(out, u64::from(*channel));
            put_bytes(out, k.as_bytes());
            put_bytes(out, detail.as_bytes());
        }
        Event::ChannelRefused {
            channel,
            kind: k,
            detail,
        } => {
            out.push(kind::CHANNEL_REFUSED);
            put_varint(out, u64::from(*channel));
            put_bytes(out, k.as_bytes());
            put_bytes(out, detail.as_bytes());
        }
        Event::ChannelClosed { channel } => {
            out.push(kind::CHANNEL_CLOSED);
            put_varint(out, u64::from(*channel));
        }
        Event::ExitStatus { channel, code } => {
            out.push(kind::EXIT_STATUS);
            put_varint(out, u64::from(*channel));
            put_varint(out, u64::from(*code));
        }
        Event::ExitSignal {
            channel,
            signal,
            core_dumped,
            message,
        } => {
            out.push(kind::EXIT_SIGNAL);
            put_varint(out, u64::from(*channel));
            put_bytes(out, signal.as_bytes());
            out.push(u8::from(*core_dumped));
            put_bytes(out, message.as_bytes());
        }
        Event::Mark { label, detail } => {
            out.push(kind::MARK);
            put_bytes(out, label.as_bytes());
            put_bytes(out, detail.as_bytes());
        }
        Event::Keyframe => out.push(kind::KEYFRAME),
    }
}

/// A cursor over a decompressed chunk. Data fields are zero-copy slices.
#[derive(Debug)]
pub(crate) struct Decoder {
    buf: Bytes,
    pos: usize,
}

impl Decoder {
    pub(crate) fn new(buf: Bytes) -> Self {
        Decoder { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError {
            offset: self.pos,
            what,
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(self.err("cut short"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                // The tenth byte may carry only the top bit of a u64.
                if shift == 63 && b > 1 {
                    return Err(self.err("varint overflows 64 bits"));
                }
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| self.err("value exceeds 32 bits"))
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.varint()?;
        let left = self.buf.len().saturating_sub(self.pos);
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= left)
            .ok_or(self.err("length runs past the chunk"))?;
        let out = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(out)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("text is not UTF-8"))
    }

    /// Decodes the next event: (delta_us, event).
    pub(crate) fn next_event(&mut self) -> Result<(u64, Event), DecodeError> {
        let delta = self.varint()?;
        let k = self.u8()?;
        let event = match k {
            kind::INPUT => Event::Input {
                channel: self.u32()?,
                data: self.bytes()?,
            },
            kind::OUTPUT => {
                let channel = self.u32()?;
                let stream = match self.u8()? {
                    0 => Stream::Stdout,
                    1 => Stream::Stderr,
                    _ => return Err(self.err("unknown output stream")),
                };
                Event::Output {
                    channel,
                    stream,
                    data: self.bytes()?,
                }
            }
            kind::PTY => Event::Pty {
                channel: self.u32()?,
                term: self.string()?,
                cols: self.u32()?,
                rows: self.u32()?,
            },
            kind::RESIZE => Event::Resize {
                channel: self.u32()?,
                cols: self.u32()?,
                rows: self.u32()?,
            },
            kind::DESKTOP_RESIZE => Event::DesktopResize {
                width: self.u32()?,
                height: self.u32()?,
            },
            kind::EXEC => Event::Exec {
                channel: self.u32()?,
                command: self.bytes()?,
            },
            kind::CHANNEL_OPENED => Event::ChannelOpened {
                channel: self.u32()?,
                kind: self.string()?,
                detail: self.string()?,
            },
            kind::CHANNEL_REFUSED => Event::ChannelRefused {
                channel: self.u32()?,
                kind: self.string()?,
                detail: self.string()?,
            },
            kind::CHANNEL_CLOSED => Event::ChannelClosed {
                channel: self.u32()?,
            },
            kind::EXIT_STATUS => Event::ExitStatus {
                channel: self.u32()?,
                code: self.u32()?,
            },
            kind::EXIT_SIGNAL => {
                let channel = self.u32()?;
                let signal = self.string()?;
                let core_dumped = match self.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(self.err("core_dumped is not 0 or 1")),
                };
                Event::ExitSignal {
                    channel,
                    signal,
                    core_dumped,
                    message: self.string()?,
                }
            }
            kind::MARK => Event::Mark {
                label: self.string()?,
                detail: self.string()?,
            },
            kind::KEYFRAME => Event::Keyframe,
            _ => return Err(self.err("unknown event kind")),
        };
        Ok((delta, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn every_kind() -> Vec<Event> {
        vec![
            Event::Input {
                channel: 0,
                data: Bytes::from_static(b"ls -l\r"),
            },
            Event::Output {
                channel: 7,
                stream: Stream::Stderr,
                data: Bytes::from_static(b"\x1b[31merror\x1b[0m\r\n"),
            },
            Event::Pty {
                channel: 1,
                term: "xterm-256color".into(),
                cols: 80,
                rows: 24,
            },
            Event::Resize {
                channel: 1,
                cols: 200,
                rows: 60,
            },
            Event::DesktopResize {
                width: 1920,
                height: 1080,
            },
            Event::Exec {
                channel: 2,
                command: Bytes::from_static(b"uname -a"),
            },
            Event::ChannelOpened {
                channel: 3,
                kind: "session".into(),
                detail: "shell".into(),
            },
            Event::ChannelRefused {
                channel: 4,
                kind: "direct-tcpip".into(),
                detail: "port forwarding is not allowed".into(),
            },
            Event::ChannelClosed { channel: 3 },
            Event::ExitStatus {
                channel: 3,
                code: u32::MAX,
            },
            Event::ExitSignal {
                channel: 3,
                signal: "KILL".into(),
                core_dumped: true,
                message: "killed".into(),
            },
            Event::Mark {
                label: "warning sent".into(),
                detail: "5 minutes left 残り".into(),
            },
            Event::Keyframe,
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        let events = every_kind();
        let mut buf = Vec::new();
        for (i, e) in events.iter().enumerate() {
            encode(&mut buf, (i as u64) << 40, e);
        }
        let mut d = Decoder::new(Bytes::from(buf));
        for (i, e) in events.iter().enumerate() {
            let (delta, got) = d.next_event().unwrap();
            assert_eq!(delta, (i as u64) << 40);
            assert_eq!(&got, e);
        }
        assert!(d.is_empty());
    }

    #[test]
    fn every_prefix_of_an_event_is_an_error_not_a_panic() {
        for e in every_kind() {
            let mut buf = Vec::new();
            encode(&mut buf, 300, &e);
            for cut in 0..buf.len() {
                let mut d = Decoder::new(Bytes::copy_from_slice(&buf[..cut]));
                assert!(d.next_event().is_err(), "{e:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn huge_length_field_is_rejected() {
        let mut buf = Vec::new();
        put_varint(&mut buf, 0);
        buf.push(kind::INPUT);
        put_varint(&mut buf, 0);
        put_varint(&mut buf, u64::MAX);
        let mut d = Decoder::new(Bytes::from(buf));
        assert_eq!(
            d.next_event().unwrap_err().what,
            "length runs past the chunk"
        );
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let mut d = Decoder::new(Bytes::from(vec![0xff; 11]));
        assert!(d.next_event().is_err());
        let mut d = Decoder::new(Bytes::from(vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ]));
        assert_eq!(d.next_event().unwrap_err().what, "varint overflows 64 bits");
    }

    #[test]
    fn unknown_kind_is_rejected() {
        let mut d = Decoder::new(Bytes::from(vec![0, 200]));
        assert_eq!(d.next_event().unwrap_err().what, "unknown event kind");
    }
}
