//! asciicast v2 (<https://docs.asciinema.org/manual/asciicast/v2/>): a JSON
//! header line, then one `[time, code, data]` line per event: `"o"` output,
//! `"i"` input, `"r"` resize (`"COLSxROWS"`), `"m"` marker.

use std::io::Write;

use serde_json::json;

use crate::recording::{Event, ReadError, SessionMeta, TimedEvent};
use crate::replay::ExportError;

/// Carries an incomplete UTF-8 sequence over to the next event of the same
/// stream, so multibyte characters split across reads are not mangled.
#[derive(Default)]
struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    fn push(&mut self, data: &[u8]) -> String {
        self.pending.extend_from_slice(data);
        let valid_to = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An incomplete sequence at the very end: keep it for later.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let rest = self.pending.split_off(valid_to);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        text
    }
}

fn seconds(t_us: u64) -> f64 {
    t_us as f64 / 1e6
}

/// The asciicast header line of a session: the size from the archive
/// header, else from `first` if it is a pty request, else 80×24. A size of
/// zero (what `ssh -tt` without a local terminal asks for) is no size: a
/// player would draw nothing.
pub fn cast_header(meta: &SessionMeta, first: Option<&TimedEvent>) -> serde_json::Value {
    let (mut cols, mut rows) = meta
        .terminal
        .as_ref()
        .filter(|t| t.cols > 0 && t.rows > 0)
        .map_or((80, 24), |t| (t.cols, t.rows));
    let term = meta.terminal.as_ref().and_then(|t| t.term.clone());
    if meta.terminal.is_none()
        && let Some(TimedEvent {
            event: Event::Pty {
                cols: c, rows: r, ..
            },
            ..
        }) = first
        && *c > 0
        && *r > 0
    {
        (cols, rows) = (*c, *r);
    }
    let mut header = json!({
        "version": 2,
        "width": cols,
        "height": rows,
        "timestamp": meta.started_at.timestamp(),
        "title": format!("{}@{} ({}, {})", meta.user, meta.target, meta.vendor, meta.session_id),
    });
    if let Some(term) = term {
        header["env"] = json!({ "TERM": term });
    }
    header
}

/// Turns events into asciicast event lines one at a time, carrying split
/// UTF-8 sequences over (the export and the live watch share it).
#[derive(Default)]
pub struct CastLines {
    channel: Option<u32>,
    output: Utf8Carry,
    input: Utf8Carry,
}

impl CastLines {
    /// `channel`: only this channel's data (None: all channels).
    pub fn new(channel: Option<u32>) -> CastLines {
        CastLines {
            channel,
            ..CastLines::default()
        }
    }

    /// The line of one event, if it makes one.
    pub fn line(&mut self, e: TimedEvent) -> Option<serde_json::Value> {
        let TimedEvent { t_us, event } = e;
        let t = seconds(t_us);
        let channel = self.channel;
        let wanted = |c: u32| channel.is_none_or(|w| w == c);
        match event {
            Event::Output {
                channel: c, data, ..
            } if wanted(c) => {
                let text = self.output.push(&data);
                (!text.is_empty()).then(|| json!([t, "o", text]))
            }
            Event::Input { channel: c, data } if wanted(c) => {
                let text = self.input.push(&data);
                (!text.is_empty()).then(|| json!([t, "i", text]))
            }
            Event::Resize {
                channel: c,
                cols,
                rows,
            }
            | Event::Pty {
                channel: c,
                cols,
                rows,
                ..
            } if wanted(c) && cols > 0 && rows > 0 => {
                Some(json!([t, "r", format!("{cols}x{rows}")]))
            }
            Event::Mark { label, detail } => Some(json!([
                t,
                "m",
                if detail.is_empty() {
                    label
                } else {
                    format!("{label}: {detail}")
                }
            ])),
            Event::ChannelRefused { kind, detail, .. } => {
                Some(json!([t, "m", format!("refused {kind}: {detail}")]))
            }
            _ => None,
        }
    }
}

/// Writes `events` as asciicast v2. `channel`: only this channel's data
/// (None: all channels). Events are read until the end or the first error.
pub fn write_asciicast<W: Write>(
    meta: &SessionMeta,
    events: impl IntoIterator<Item = Result<TimedEvent, ReadError>>,
    channel: Option<u32>,
    mut out: W,
) -> Result<(), ExportError> {
    let mut events = events.into_iter().peekable();
    let first = match events.peek() {
        Some(Ok(e)) => Some(e),
        _ => None,
    };
    writeln!(out, "{}", cast_header(meta, first))?;
    let mut lines = CastLines::new(channel);
    for item in events {
        if let Some(line) = lines.line(item?) {
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{Protocol, Stream, TerminalSize};
    use bytes::Bytes;
    use chrono::{TimeZone as _, Utc};

    fn meta() -> SessionMeta {
        SessionMeta {
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
            terminal: Some(TerminalSize {
                cols: 100,
                rows: 30,
                term: Some("xterm".into()),
            }),
            desktop: None,
            rdp: None,
        }
    }

    fn out(channel: u32, b: &[u8]) -> Event {
        Event::Output {
            channel,
            stream: Stream::Stdout,
            data: Bytes::copy_from_slice(b),
        }
    }

    #[test]
    fn header_events_and_split_utf8() {
        let ja = "日本".as_bytes();
        let events = vec![
            TimedEvent {
                t_us: 0,
                event: out(0, b"$ "),
            },
            TimedEvent {
                t_us: 1_500_000,
                event: Event::Input {
                    channel: 0,
                    data: Bytes::from_static(b"l"),
                },
            },
            // "日本" split inside the second character.
            TimedEvent {
                t_us: 2_000_000,
                event: out(0, &ja[..4]),
            },
            TimedEvent {
                t_us: 2_000_100,
                event: out(0, &ja[4..]),
            },
            TimedEvent {
                t_us: 2_500_000,
                event: out(5, b"other channel"),
            },
            TimedEvent {
                t_us: 3_000_000,
                event: Event::Resize {
                    channel: 0,
                    cols: 120,
                    rows: 40,
                },
            },
            TimedEvent {
                t_us: 4_000_000,
                event: Event::Mark {
                    label: "killed by admin".into(),
                    detail: String::new(),
                },
            },
        ];
        let mut buf = Vec::new();
        write_asciicast(&meta(), events.into_iter().map(Ok), Some(0), &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["width"], 100);
        assert_eq!(lines[0]["height"], 30);
        assert_eq!(lines[0]["timestamp"], 1_795_305_600i64);
        assert_eq!(lines[1], json!([0.0, "o", "$ "]));
        assert_eq!(lines[2], json!([1.5, "i", "l"]));
        assert_eq!(lines[3], json!([2.0, "o", "日"]));
        assert_eq!(lines[4], json!([2.0001, "o", "本"]));
        assert_eq!(lines[5], json!([3.0, "r", "120x40"]));
        assert_eq!(lines[6], json!([4.0, "m", "killed by admin"]));
        assert_eq!(lines.len(), 7, "channel 5 was filtered out");
    }

    #[test]
    fn a_zero_terminal_size_is_no_size() {
        let mut m = meta();
        m.terminal = Some(TerminalSize {
            cols: 0,
            rows: 0,
            term: None,
        });
        let events = vec![
            TimedEvent {
                t_us: 0,
                event: Event::Pty {
                    channel: 0,
                    cols: 0,
                    rows: 0,
                    term: "xterm".into(),
                },
            },
            TimedEvent {
                t_us: 10,
                event: out(0, b"$ "),
            },
        ];
        let mut buf = Vec::new();
        write_asciicast(&m, events.into_iter().map(Ok), None, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            (lines[0]["width"].clone(), lines[0]["height"].clone()),
            (json!(80), json!(24))
        );
        assert_eq!(lines.len(), 2, "no resize to 0x0: {text}");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let events = vec![TimedEvent {
            t_us: 0,
            event: out(0, b"a\xffb"),
        }];
        let mut buf = Vec::new();
        write_asciicast(&meta(), events.into_iter().map(Ok), None, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last, json!([0.0, "o", "a\u{fffd}b"]));
    }
}
