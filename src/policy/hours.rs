//! Allowed hours: `"always"`, or windows like `"Mon-Fri 08:30-17:15"` and
//! `"Mon,Wed 09:00-12:00; Sat 22:00-02:00"`. A window whose end is not after
//! its start runs across midnight into the next day; the day named is the day
//! it starts. Times are wall-clock times in the configured time zone.

use std::fmt;

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MINUTES_PER_DAY: u32 = 24 * 60;

/// Parsed allowed hours; keeps the text as written for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours {
    text: String,
    /// `None` means always.
    windows: Option<Vec<Window>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// Monday = 0.
    days: [bool; 7],
    /// Minutes after the start day's midnight.
    start: u32,
    /// Minutes after the start day's midnight; may exceed a day.
    end: u32,
}

/// Where a moment stands against the allowed hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoursCheck {
    /// Inside; `Some(t)` is when the allowed period ends, `None` for "always".
    Inside(Option<DateTime<Utc>>),
    /// Outside; the next moment it opens, if within the next week.
    Outside(Option<DateTime<Utc>>),
}

impl Hours {
    pub fn always() -> Hours {
        Hours {
            text: "always".into(),
            windows: None,
        }
    }

    pub fn parse(text: &str) -> Result<Hours, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("always") {
            return Ok(Hours::always());
        }
        let mut windows = Vec::new();
        for part in t.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            windows.push(parse_window(part)?);
        }
        if windows.is_empty() {
            return Err(format!(
                "{text:?} names no hours (write e.g. \"Mon-Fri 08:30-17:15\" or \"always\")"
            ));
        }
        Ok(Hours {
            text: t.to_string(),
            windows: Some(windows),
        })
    }

    pub fn is_always(&self) -> bool {
        self.windows.is_none()
    }

    /// Checks `now` against the hours in time zone `tz`. Adjacent windows
    /// (e.g. `Mon-Sun 00:00-24:00`) join, so a session is not cut at a
    /// boundary where access simply continues.
    pub fn check(&self, tz: Tz, now: DateTime<Utc>) -> HoursCheck {
        let Some(windows) = &self.windows else {
            return HoursCheck::Inside(None);
        };
        let local = now.with_timezone(&tz).naive_local();
        let today = local.date();
        // Intervals from yesterday (a window running across midnight) to a
        // week ahead, in local wall-clock time.
        let mut intervals: Vec<(NaiveDateTime, NaiveDateTime)> = Vec::new();
        for offset in -1i64..=8 {
            let Some(day) = shift_days(today, offset) else {
                continue;
            };
            let wd = day.weekday().num_days_from_monday() as usize;
            let midnight = day.and_time(chrono::NaiveTime::MIN);
            for w in windows {
                if w.days.get(wd).copied().unwrap_or(false) {
                    let at = |m: u32| {
                        midnight.checked_add_signed(chrono::Duration::minutes(i64::from(m)))
                    };
                    if let (Some(start), Some(end)) = (at(w.start), at(w.end)) {
                        intervals.push((start, end));
                    }
                }
            }
        }
        intervals.sort();
        let Some(&(_, mut end)) = intervals.iter().find(|(s, e)| *s <= local && local < *e) else {
            let next = intervals.iter().map(|(s, _)| *s).find(|s| *s > local);
            return HoursCheck::Outside(next.map(|s| local_to_utc(tz, s)));
        };
        loop {
            let extended = intervals
                .iter()
                .filter(|(s, e)| *s <= end && *e > end)
                .map(|(_, e)| *e)
                .max();
            match extended {
                Some(e) => end = e,
                None => break,
            }
        }
        HoursCheck::Inside(Some(local_to_utc(tz, end)))
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn shift_days(day: NaiveDate, offset: i64) -> Option<NaiveDate> {
    if offset >= 0 {
        day.checked_add_days(Days::new(offset.unsigned_abs()))
    } else {
        day.checked_sub_days(Days::new(offset.unsigned_abs()))
    }
}

/// A local wall-clock time as an instant. An ambiguous time (clocks turned
/// back) is its earlier instant; a time that does not exist (clocks turned
/// forward) is the first valid minute after it.
pub fn local_to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut t = local;
    for _ in 0..=24 * 60 {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.with_timezone(&Utc);
        }
        match t.checked_add_signed(chrono::Duration::minutes(1)) {
            Some(next) => t = next,
            None => break,
        }
    }
    // No zone has a day-long gap; treat the wall clock as UTC as a last resort.
    local.and_utc()
}

fn parse_window(part: &str) -> Result<Window, String> {
    let mut it = part.split_whitespace();
    let (Some(days), Some(range), None) = (it.next(), it.next(), it.next()) else {
        return Err(format!(
            "{part:?} should be days and times, like \"Mon-Fri 08:30-17:15\""
        ));
    };
    let days = parse_days(days)?;
    let Some((start, end)) = range.split_once('-') else {
        return Err(format!("{range:?} should be a time range like 08:30-17:15"));
    };
    let start = parse_time(start, false)?;
    let end = parse_time(end, true)?;
    if start == end {
        return Err(format!(
            "{range:?} is empty (for a whole day write 00:00-24:00)"
        ));
    }
    // An end at or before the start runs past midnight into the next day.
    let end = if end <= start {
        end + MINUTES_PER_DAY
    } else {
        end
    };
    Ok(Window { days, start, end })
}

fn parse_days(s: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for item in s.split(',') {
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (day_index(a)?, day_index(b)?),
            None => {
                let d = day_index(item)?;
                (d, d)
            }
        };
        // A range may wrap past Sunday: Fri-Mon is Fri, Sat, Sun, Mon.
        let mut d = a;
        loop {
            if let Some(slot) = days.get_mut(d) {
                *slot = true;
            }
            if d == b {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    Ok(days)
}

fn day_index(s: &str) -> Result<usize, String> {
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| {
            format!("{s:?} is not a day (use Mon, Tue, Wed, Thu, Fri, Sat, Sun, or a range like Mon-Fri)")
        })
}

/// Minutes after midnight; `24:00` only as an end.
fn parse_time(s: &str, is_end: bool) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a time (use HH:MM, 00:00 to 23:59, or 24:00 as an end)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && (m != 0 || !is_end)) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Asia::Tokyo;

    fn jst(s: &str) -> DateTime<Utc> {
        let n = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        local_to_utc(Tokyo, n)
    }

    #[test]
    fn parses_and_rejects() {
        assert!(Hours::parse("always").unwrap().is_always());
        assert!(Hours::parse("Mon-Fri 08:30-17:15").is_ok());
        assert!(Hours::parse("Mon,Wed 09:00-12:00; Sat 22:00-02:00").is_ok());
        assert!(Hours::parse("Fri-Mon 00:00-24:00").is_ok());
        for bad in [
            "",
            "Mon-Fri",
            "Moon 08:00-09:00",
            "Mon 8:00-09:00",
            "Mon 08:00-25:00",
            "Mon 24:00-08:00",
            "Mon 08:60-09:00",
            "Mon 09:00-09:00",
            "Mon 09:00",
            "Mon 09:00-10:00 extra",
        ] {
            assert!(Hours::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn window_edges() {
        // 2026-11-23 is a Monday.
        let h = Hours::parse("Mon-Fri 08:30-17:15").unwrap();
        let end = jst("2026-11-23 17:15:00");
        assert_eq!(
            h.check(Tokyo, jst("2026-11-23 08:30:00")),
            HoursCheck::Inside(Some(end))
        );
        assert_eq!(
            h.check(Tokyo, jst("2026-11-23 17:14:59")),
            HoursCheck::Inside(Some(end))
        );
        assert_eq!(
            h.check(Tokyo, jst("2026-11-23 17:15:00")),
            HoursCheck::Outside(Some(jst("2026-11-24 08:30:00")))
        );
        assert!(matches!(
            h.check(Tokyo, jst("2026-11-23 08:29:59")),
            HoursCheck::Outside(_)
        ));
        // Saturday: next opening is Monday.
        assert_eq!(
            h.check(Tokyo, jst("2026-11-28 10:00:00")),
            HoursCheck::Outside(Some(jst("2026-11-30 08:30:00")))
        );
    }

    #[test]
    fn across_midnight_and_joined_windows() {
        let h = Hours::parse("Sat 22:00-02:00").unwrap();
        let end = jst("2026-11-29 02:00:00");
        // 2026-11-28 is a Saturday.
        assert_eq!(
            h.check(Tokyo, jst("2026-11-28 23:00:00")),
            HoursCheck::Inside(Some(end))
        );
        assert_eq!(
            h.check(Tokyo, jst("2026-11-29 01:59:00")),
            HoursCheck::Inside(Some(end))
        );
        assert!(matches!(
            h.check(Tokyo, jst("2026-11-29 02:00:00")),
            HoursCheck::Outside(_)
        ));
        // Sunday night is not Saturday night.
        assert!(matches!(
            h.check(Tokyo, jst("2026-11-29 23:00:00")),
            HoursCheck::Outside(_)
        ));
        let joined = Hours::parse("Mon-Tue 00:00-24:00").unwrap();
        assert_eq!(
            joined.check(Tokyo, jst("2026-11-23 12:00:00")),
            HoursCheck::Inside(Some(jst("2026-11-25 00:00:00")))
        );
    }

    #[test]
    fn daylight_saving_day_is_a_wall_clock_day() {
        // Europe/Berlin skips 02:00-03:00 on 2026-03-29 (a Sunday).
        let berlin = chrono_tz::Europe::Berlin;
        let h = Hours::parse("Sun 00:00-24:00").unwrap();
        let now: DateTime<Utc> = "2026-03-29T00:30:00Z".parse().unwrap(); // 01:30 CET
        assert_eq!(
            h.check(berlin, now),
            HoursCheck::Inside(Some("2026-03-29T22:00:00Z".parse().unwrap()))
        );
        // A wall-clock time inside the gap is the first valid minute after it.
        let gap = NaiveDateTime::parse_from_str("2026-03-29 02:30", "%Y-%m-%d %H:%M").unwrap();
        assert_eq!(
            local_to_utc(berlin, gap),
            "2026-03-29T01:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}
