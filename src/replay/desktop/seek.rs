//! Where a replay that should show the desktop at a given time starts,
//! and a renderer of the right size for it: seeking from a keyframe
//! instead of the session start ([`replay_start`], [`seek`], and with a
//! [`SeekIndex`] for a player that seeks again and again), and the desktop
//! at a time ([`render_at`]).

use super::frames::pointer_of;
use super::render::{RenderError, Renderer, header_size};
use crate::protocol::rdp::pdu::demand_active_size;
use crate::recording::{Event, ReadError, Reader};

/// Where a replay that should show the desktop at `at_us` starts: the
/// second-to-last keyframe at or before `at_us`, or the session start (0).
///
/// A keyframe marks the moment the gateway asked the target to redraw the
/// whole desktop; the redraw arrives some time later. Starting one keyframe
/// earlier leaves a whole keyframe interval for it to arrive. `keyframes`
/// is in time order.
pub fn replay_start(keyframes: &[u64], at_us: u64) -> u64 {
    let upto = keyframes.partition_point(|&k| k <= at_us);
    upto.checked_sub(2)
        .and_then(|i| keyframes.get(i))
        .copied()
        .unwrap_or(0)
}

/// A renderer ready to replay from the keyframe for `at_us`, and the time
/// its events start (pass it to [`Reader::events_from`]).
///
/// The desktop size at that point comes from the last Demand Active before
/// it: the archive is read up to there, but only slow-path PDU headers are
/// looked at (no bitmap is decoded). Reading is most of a seek late in a
/// long session (decompressing the chunks), so two threads share it, each
/// reading half of the chunks.
pub fn seek(reader: &mut Reader, at_us: u64) -> Result<(Renderer, u64), RenderError> {
    let mut size = header_size(reader.meta())?;
    let info = reader.meta().rdp.clone().unwrap_or_default();
    let start = replay_start(&reader.keyframes()?, at_us);
    if start > 0 {
        let before: Vec<u64> = reader
            .index()?
            .iter()
            .map(|e| e.t_first_us)
            .take_while(|&t| t < start)
            .collect();
        let half = before.get(before.len() / 2).copied().unwrap_or(0);
        let channel = info.fastpath_channel;
        let found = if half > 0 {
            let mut other = Reader::open(reader.path())?;
            std::thread::scope(|scope| {
                let later = scope.spawn(|| last_size(&mut other, channel, half, start));
                // Up to and including `half`: the later half starts at the
                // chunk beginning then, and an earlier chunk may end then.
                let earlier = last_size(reader, channel, 0, half + 1);
                let later = later.join().unwrap_or_else(|_| {
                    Err(ReadError::IoText("reading the archive".into()).into())
                });
                Ok::<_, RenderError>(later?.or(earlier?))
            })?
        } else {
            last_size(reader, channel, 0, start)?
        };
        if let Some(s) = found {
            size = s;
        }
    }
    Ok((Renderer::with_size(&info, size.0, size.1), start))
}

/// The desktop size the last Demand Active from `from_us` to before
/// `to_us` set, if any.
fn last_size(
    reader: &mut Reader,
    fastpath_channel: u32,
    from_us: u64,
    to_us: u64,
) -> Result<Option<(u16, u16)>, RenderError> {
    let mut size = None;
    for ev in reader.events_from(from_us)? {
        let ev = ev?;
        if ev.t_us >= to_us {
            break;
        }
        if let Event::Output { channel, data, .. } = &ev.event
            && *channel != fastpath_channel
            && let Some(s) = demand_active_size(data)
        {
            size = Some(s);
        }
    }
    Ok(size)
}

/// What seeking needs from a whole recording, gathered in one pass over
/// it: the keyframe times and when the desktop changed size. [`seek`]
/// finds the size at a keyframe by reading the archive from its start up to
/// there, which in an hour-long session is most of the archive; a player
/// that seeks again and again keeps this instead (a sealed archive never
/// changes) and seeks with [`seek_indexed`], reading only from the keyframe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeekIndex {
    keyframes: Vec<u64>,
    /// Where the pointer was at each keyframe (by the keyframe's place in
    /// `keyframes`): a replay starting there has read no pointer move yet,
    /// and the person may not have moved it for minutes.
    pointers: Vec<Option<(u16, u16)>>,
    /// (time, width, height) of each Demand Active with a valid size.
    sizes: Vec<(u64, u16, u16)>,
}

impl SeekIndex {
    pub fn build(reader: &mut Reader) -> Result<SeekIndex, RenderError> {
        let info = reader.meta().rdp.clone().unwrap_or_default();
        let mut index = SeekIndex::default();
        let mut pointer = None;
        for ev in reader.events() {
            let ev = ev?;
            match &ev.event {
                Event::Keyframe => {
                    index.keyframes.push(ev.t_us);
                    index.pointers.push(pointer);
                }
                Event::Output { channel, data, .. } if *channel != info.fastpath_channel => {
                    if let Some((w, h)) = demand_active_size(data) {
                        index.sizes.push((ev.t_us, w, h));
                    }
                }
                other => {
                    if let Some(p) = pointer_of(other, info.fastpath_channel) {
                        pointer = Some(p);
                    }
                }
            }
        }
        Ok(index)
    }

    /// Keyframe times, in order.
    pub fn keyframes(&self) -> &[u64] {
        &self.keyframes
    }

    /// Where the pointer was when a replay starting at `start` (a keyframe
    /// time from [`seek_indexed`]) begins; `None` at the recording's start
    /// or before the pointer was ever moved.
    pub fn pointer_at(&self, start: u64) -> Option<(u16, u16)> {
        let i = self.keyframes.iter().position(|&k| k == start)?;
        self.pointers.get(i).copied().flatten()
    }
}

/// [`seek`] with the keyframes and sizes of `index` (of this recording):
/// nothing is read before the keyframe.
pub fn seek_indexed(
    reader: &mut Reader,
    index: &SeekIndex,
    at_us: u64,
) -> Result<(Renderer, u64), RenderError> {
    let mut size = header_size(reader.meta())?;
    let info = reader.meta().rdp.clone().unwrap_or_default();
    let start = replay_start(&index.keyframes, at_us);
    if start > 0
        && let Some(&(_, w, h)) = index.sizes.iter().rev().find(|(t, _, _)| *t < start)
    {
        size = (w, h);
    }
    Ok((Renderer::with_size(&info, size.0, size.1), start))
}

/// The desktop at `at_us` (`u64::MAX`: the end), replayed from the keyframe
/// [`replay_start`] picks.
pub fn render_at(reader: &mut Reader, at_us: u64) -> Result<Renderer, RenderError> {
    let (mut r, start) = seek(reader, at_us)?;
    r.replay_until(reader.events_from(start)?, at_us)?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::desktop::render::tests::{archive, demand_active, fast_path_bitmap, output};

    /// Red, green, blue as one BGRA pixel.
    fn bgra(r: u8, g: u8, b: u8) -> [u8; 4] {
        [b, g, r, 0]
    }

    #[test]
    fn render_at_starts_at_a_keyframe_with_the_size_of_that_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = 1_000_000;
        let path = archive(
            dir.path(),
            &[
                (0, output(1003, demand_active(10, 6))),
                // Only a replay from the start sees this pixel.
                (s / 2, output(0, fast_path_bitmap(0, 0, &bgra(9, 9, 9)))),
                (s, Event::Keyframe),
                (2 * s, Event::Keyframe),
                (2 * s + 1, output(0, fast_path_bitmap(9, 5, &bgra(1, 2, 3)))),
                (3 * s, Event::Keyframe),
                (3 * s + 1, output(0, fast_path_bitmap(1, 1, &bgra(4, 5, 6)))),
            ],
        );
        let mut reader = Reader::open(&path).expect("open");
        let px = |r: &Renderer, x: usize, y: usize| {
            let w = r.width() as usize;
            r.rgba()[(y * w + x) * 4..][..3].to_vec()
        };
        // Before the second keyframe: from the start.
        let r = render_at(&mut reader, 2 * s - 1).expect("render");
        assert_eq!((r.width(), r.height()), (10, 6));
        assert_eq!(px(&r, 0, 0), [9, 9, 9]);
        // At 3.5 s the replay starts at the keyframe of 2 s: the pixel of
        // 0.5 s is not drawn, the desktop has the size set at 0.
        let r = render_at(&mut reader, 3 * s + s / 2).expect("render");
        assert_eq!((r.width(), r.height()), (10, 6));
        assert_eq!(px(&r, 0, 0), [0, 0, 0]);
        assert_eq!(px(&r, 9, 5), [1, 2, 3]);
        assert_eq!(px(&r, 1, 1), [4, 5, 6]);
        // Events after --at are not applied.
        let r = render_at(&mut reader, 3 * s).expect("render");
        assert_eq!(px(&r, 1, 1), [0, 0, 0]);
        assert_eq!(px(&r, 9, 5), [1, 2, 3]);
    }

    #[test]
    fn replay_starts_one_keyframe_before_the_last_one_in_time() {
        let k = [10, 20, 30, 40];
        // No keyframe, or only one, before the time: from the start.
        assert_eq!(replay_start(&[], 100), 0);
        assert_eq!(replay_start(&k, 5), 0);
        assert_eq!(replay_start(&k, 10), 0);
        assert_eq!(replay_start(&k, 19), 0);
        // The second-to-last at or before the time.
        assert_eq!(replay_start(&k, 20), 10);
        assert_eq!(replay_start(&k, 29), 10);
        assert_eq!(replay_start(&k, 35), 20);
        assert_eq!(replay_start(&k, 40), 30);
        assert_eq!(replay_start(&k, u64::MAX), 30);
    }

    #[test]
    fn a_seek_finds_the_size_set_anywhere_before_its_keyframe() {
        let s = 1_000_000;
        for resize_at in [s / 2, s + 1, 2 * s, 3 * s - 1, 4 * s - 1] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut events = vec![(0, output(1003, demand_active(10, 6)))];
            for k in 1..=6 {
                events.push((k * s, Event::Keyframe));
            }
            events.push((resize_at, output(1003, demand_active(12, 4))));
            events.sort_by_key(|(t, _)| *t);
            let path = archive(dir.path(), &events);
            let mut reader = Reader::open(&path).expect("open");
            // Replayed from the keyframe of 4 s.
            let (r, start) = seek(&mut reader, 5 * s + s / 2).expect("seek");
            assert_eq!(start, 4 * s);
            assert_eq!((r.width(), r.height()), (12, 4), "resized at {resize_at}");
            let (r, _) = seek(&mut reader, s).expect("seek");
            assert_eq!(
                (r.width(), r.height()),
                (8, 4),
                "from the start: the header's"
            );
        }
    }
}
