//! Playing a terminal recording back in a terminal with its own timing:
//! which events show, and how long to wait before each (optionally faster,
//! long pauses shortened). The terminal itself (writing, sleeping) is the
//! caller's (`sekisho replay`).

use std::time::Duration;

use crate::recording::Event;

/// What one recorded event means for playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// Bytes to write to the terminal.
    Output(&'a [u8]),
    /// The person's terminal changed size (shown as a note).
    Resize { cols: u32, rows: u32 },
    /// Not shown (input, other channels, marks, …).
    Skip,
}

/// What `event` shows when only `channel` is played (`None`: all).
pub fn step(event: &Event, channel: Option<u32>) -> Step<'_> {
    match event {
        Event::Output {
            channel: c, data, ..
        } if channel.is_none_or(|want| want == *c) => Step::Output(data),
        Event::Resize { cols, rows, .. } => Step::Resize {
            cols: *cols,
            rows: *rows,
        },
        _ => Step::Skip,
    }
}

/// The waits between outputs: the recorded gap, cut to `max_idle` (zero
/// keeps every pause), divided by `speed`.
#[derive(Debug, Clone)]
pub struct Pacing {
    speed: f64,
    max_idle_us: u64,
    last_us: Option<u64>,
}

/// Waits shorter than this are not worth a sleep.
const MIN_WAIT: Duration = Duration::from_millis(1);

impl Pacing {
    /// `speed` is positive (2 = twice as fast).
    pub fn new(speed: f64, max_idle_us: u64) -> Pacing {
        Pacing {
            speed,
            max_idle_us,
            last_us: None,
        }
    }

    /// How long to wait before the output recorded at `t_us`, if long
    /// enough to sleep; the first output comes at once.
    pub fn wait_before(&mut self, t_us: u64) -> Option<Duration> {
        let prev = self.last_us.replace(t_us)?;
        let mut gap = t_us.saturating_sub(prev);
        if self.max_idle_us > 0 {
            gap = gap.min(self.max_idle_us);
        }
        let wait = Duration::from_micros((gap as f64 / self.speed) as u64);
        (wait >= MIN_WAIT).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::Stream;
    use bytes::Bytes;

    #[test]
    fn waits_follow_the_recording_scaled_and_capped() {
        let mut p = Pacing::new(2.0, 3_000_000);
        assert_eq!(p.wait_before(1_000_000), None);
        assert_eq!(p.wait_before(2_000_000), Some(Duration::from_millis(500)));
        // A 10 s pause is cut to 3 s, then halved.
        assert_eq!(p.wait_before(12_000_000), Some(Duration::from_millis(1500)));
        // Under a millisecond: no sleep.
        assert_eq!(p.wait_before(12_001_000), None);
        let mut keep_all = Pacing::new(1.0, 0);
        keep_all.wait_before(0);
        assert_eq!(
            keep_all.wait_before(60_000_000),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn only_output_of_the_chosen_channel_and_resizes_show() {
        let out = |channel| Event::Output {
            channel,
            stream: Stream::Stdout,
            data: Bytes::from_static(b"ls\r\n"),
        };
        assert_eq!(step(&out(0), None), Step::Output(b"ls\r\n"));
        assert_eq!(step(&out(1), Some(1)), Step::Output(b"ls\r\n"));
        assert_eq!(step(&out(1), Some(0)), Step::Skip);
        let resize = Event::Resize {
            channel: 3,
            cols: 120,
            rows: 40,
        };
        assert_eq!(
            step(&resize, Some(0)),
            Step::Resize {
                cols: 120,
                rows: 40
            }
        );
        let input = Event::Input {
            channel: 0,
            data: Bytes::from_static(b"x"),
        };
        assert_eq!(step(&input, None), Step::Skip);
    }
}
