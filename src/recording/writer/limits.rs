//! Bounds on one event: long data is split into pieces and over-long texts
//! are cut, so a chunk stays bounded whatever a peer sends.

use bytes::Bytes;

use crate::recording::event::Event;

/// Data events larger than this are split, so a chunk stays bounded.
pub const MAX_EVENT_DATA: usize = 1 << 20;

pub(super) fn pieces(data: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    (0..data.len())
        .step_by(MAX_EVENT_DATA)
        .map(move |start| data.slice(start..(start + MAX_EVENT_DATA).min(data.len())))
}

/// Longest text field kept in an event (longer ones are cut).
pub const MAX_EVENT_TEXT: usize = 64 * 1024;

fn clamp(s: &str) -> String {
    let mut end = MAX_EVENT_TEXT.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

/// A copy of `event` with over-long texts cut, or None if none is too long.
pub(super) fn clamp_texts(event: &Event) -> Option<Event> {
    let long = |s: &String| s.len() > MAX_EVENT_TEXT;
    match event {
        Event::Pty {
            channel,
            term,
            cols,
            rows,
        } if long(term) => Some(Event::Pty {
            channel: *channel,
            term: clamp(term),
            cols: *cols,
            rows: *rows,
        }),
        Event::ChannelOpened {
            channel,
            kind,
            detail,
        } if long(kind) || long(detail) => Some(Event::ChannelOpened {
            channel: *channel,
            kind: clamp(kind),
            detail: clamp(detail),
        }),
        Event::ChannelRefused {
            channel,
            kind,
            detail,
        } if long(kind) || long(detail) => Some(Event::ChannelRefused {
            channel: *channel,
            kind: clamp(kind),
            detail: clamp(detail),
        }),
        Event::ExitSignal {
            channel,
            signal,
            core_dumped,
            message,
        } if long(signal) || long(message) => Some(Event::ExitSignal {
            channel: *channel,
            signal: clamp(signal),
            core_dumped: *core_dumped,
            message: clamp(message),
        }),
        Event::Mark { label, detail } if long(label) || long(detail) => Some(Event::Mark {
            label: clamp(label),
            detail: clamp(detail),
        }),
        _ => None,
    }
}
