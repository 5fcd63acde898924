//! `export --format mp4`: the frames of [`super::video`] piped as raw video
//! with their times ([`super::timed_frames`]) into an ffmpeg child that
//! encodes H.264 into a temporary file in the destination directory,
//! renamed when ffmpeg succeeds.

use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use std::sync::mpsc::SyncSender;

use super::frame_pipe::{FramePipe, HeldFrames};
use super::render::RenderError;
use super::seek::seek;
use super::timed_frames::TimedFrames;
use super::video::{Frames, Sample, VideoCanvas, VideoRange};
use crate::recording::{CheckedChunk, Chunks, DecodedEvents, Event, ReadError, Reader, TimedEvent};

/// Why an MP4 export failed; nothing is left at the destination.
#[derive(Debug, thiserror::Error)]
pub enum Mp4Error {
    #[error(
        "MP4 export needs ffmpeg, which is not on PATH: install it (Debian: \
         apt-get install ffmpeg), or export single frames with --format png --at SECONDS"
    )]
    NoFfmpeg,
    #[error("no frame to export: the session has no events from --from to --to")]
    NoFrames,
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("starting {program}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("ffmpeg failed ({status}): {stderr}")]
    Failed {
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("ffmpeg stopped reading frames")]
    StoppedReading,
    #[error("{context}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Mp4Error {
    fn io(context: String) -> impl FnOnce(std::io::Error) -> Mp4Error {
        move |source| Mp4Error::Io { context, source }
    }
}

/// x264 speed/size trade-off, chosen for screen content. A recorded
/// desktop is flat UI and text that stays put between frames, and an export
/// is evidence looked at now and then: speed counts more than file size.
/// Measured on a 141 s recorded session (two shared cores): x264 took 3.5 s
/// with `veryfast`, 2.9 s `superfast`, 1.4 s `ultrafast`; the file doubles
/// (0.4 to 0.8 MB) at the same quality. No `-tune`: the screen-content
/// tunes (`stillimage`, `animation`) adjust psycho-visual, deblocking and
/// adaptive-quantisation settings that `ultrafast` has already turned off,
/// and `zerolatency` cost the same CPU within noise on 1000 still and 300
/// moving 1024x768 frames. x264 picks its own thread count (`-threads 2`
/// measured the same).
const PRESET: &str = "ultrafast";

/// Every frame at one fixed quantiser (`-qp`) rather than x264's default
/// constant rate factor (CRF 23). With CRF x264 scales each frame's
/// quantiser by a complexity estimate made on a half-size copy of it
/// (downscaled and motion-searched for every frame, even by `ultrafast`),
/// and it gives the frames with the most new content the coarsest
/// quantiser: the frames where most of the screen changed came out at 38-40 dB PSNR
/// while the still frames around it got 50. A fixed quantiser needs no
/// estimate and keeps every frame, the busiest included, at the same
/// quality. Measured on the export benchmark's frames (session 8, x264 of
/// Debian 12's ffmpeg 5.1, two shared cores): QP 16 against CRF 23, x264's
/// CPU 0.66-0.70x on the 1920x1080 office-like session and 0.60-0.65x at
/// 1024x768, 0.94-0.97x on photo-like full-screen redraws; the file 0.68x on
/// both office-like sessions and 1.7x on the photo-like redraws; PSNR against
/// the frames sent, worst frame, 48.4 dB against 40.5 and 38.1 (office-like)
/// and 47.0 against 43.4 (redraws). QP 12 and lower cost more CPU and file
/// on photo-like content; 18 and higher fall below 46 dB.
const QP: &str = "16";

/// What the export produced, for the note on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mp4Summary {
    /// The video's length in frames at its rate.
    pub frames: u64,
    /// Frames encoded: those where the desktop changed, and the last.
    pub encoded: u64,
    pub width: u32,
    pub height: u32,
    pub decoded: u64,
    pub skipped: u64,
}

/// The program `name` on `path` (a PATH value), if there is one.
fn find_on_path(name: &str, path: Option<OsString>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(&path?)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// ffmpeg on PATH, or an error that says what to install.
pub fn find_ffmpeg() -> Result<PathBuf, Mp4Error> {
    find_on_path("ffmpeg", std::env::var_os("PATH")).ok_or(Mp4Error::NoFfmpeg)
}

/// The ffmpeg command line: yuv420p frames with their times on standard
/// input ([`super::timed_frames`], already converted, BT.601 limited range,
/// and tagged so), H.264 out, each frame kept at its own time
/// (`-fps_mode passthrough`: MP4 would otherwise be made constant-rate by
/// repeating frames, the very work left out by not sending them).
fn ffmpeg_args(out: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "matroska",
        "-i",
        "-",
        "-c:v",
        "libx264",
        "-preset",
        PRESET,
        "-qp",
        QP,
        "-fps_mode",
        "passthrough",
        "-pix_fmt",
        "yuv420p",
        "-color_range",
        "tv",
        "-colorspace",
        "smpte170m",
        "-color_primaries",
        "smpte170m",
        "-color_trc",
        "smpte170m",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        "-y",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(out.as_os_str().to_owned());
    args
}

/// A running ffmpeg whose standard error is collected on a thread (so a
/// chatty ffmpeg never blocks on a full pipe).
struct Encoder {
    child: Child,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Keep at most this much of ffmpeg's standard error for the message.
const STDERR_KEEP: usize = 8 * 1024;

impl Encoder {
    fn spawn(program: &Path, args: &[OsString]) -> Result<Encoder, Mp4Error> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Mp4Error::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        let stderr = child.stderr.take().map(|mut err| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = err.read_to_end(&mut buf);
                let text = String::from_utf8_lossy(&buf);
                let tail = text.len().saturating_sub(STDERR_KEEP);
                let tail = (tail..text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(text.len());
                text[tail..].trim().to_string()
            })
        });
        Ok(Encoder { child, stderr })
    }

    /// Where frames go; closing it ends ffmpeg's input.
    fn take_input(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Close the input and wait; an error carries ffmpeg's standard error.
    fn finish(mut self) -> Result<(), Mp4Error> {
        drop(self.child.stdin.take());
        let status = self
            .child
            .wait()
            .map_err(Mp4Error::io("waiting for ffmpeg".into()))?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if !status.success() {
            return Err(Mp4Error::Failed { status, stderr });
        }
        Ok(())
    }

    /// Stop ffmpeg after a failure on our side.
    fn abort(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples on their way from the replay to the converting thread: a few,
/// so neither waits on the other's every frame, and memory stays bounded
/// (a full-frame change holds one desktop of pixels).
const SAMPLES_IN_FLIGHT: usize = 4;

/// What the converting thread did.
struct Written {
    /// Sampled instants: the video's length in frames at its rate.
    instants: u64,
    /// Frames handed to the encoder.
    encoded: u64,
}

/// The converting thread: draws each sample's changes, converts them to
/// YUV and writes the frame to ffmpeg with its time (from the range's
/// start). Returns `None` when ffmpeg stopped reading.
///
/// An instant where nothing changed is not sent: the previous frame stays
/// on screen until the next one's time. The last instant is always sent,
/// so that the video lasts as long as the session part it shows.
///
/// The frames go out of `held`'s buffers, which may be lent to the pipe
/// ([`FramePipe`]) while the canvas draws the next ones: the caller keeps
/// `held` until the encoder has exited.
fn write_frames(
    mut canvas: VideoCanvas,
    held: &mut HeldFrames,
    input: impl std::io::Write,
    fps: u32,
    from_us: u64,
    samples: std::sync::mpsc::Receiver<Sample>,
) -> Option<Written> {
    let mut out = TimedFrames::start(input, canvas.width(), canvas.height(), fps).ok()?;
    let mut written = Written {
        instants: 0,
        encoded: 0,
    };
    let mut unsent = None;
    for sample in samples {
        written.instants += 1;
        let t = sample.t_us.saturating_sub(from_us);
        match &sample.update {
            Some(update) => held.changed(&canvas.apply(update)),
            None => {
                unsent = Some(t);
                continue;
            }
        }
        unsent = None;
        out.frame(t, held.take(canvas.yuv())).ok()?;
        written.encoded += 1;
    }
    if let Some(t) = unsent {
        out.frame(t, held.take(canvas.yuv())).ok()?;
        written.encoded += 1;
    }
    Some(written)
}

/// Events on their way from the reading thread to the replay, in batches
/// of about this many bytes of PDUs (or [`BATCH_EVENTS`] events), so that
/// neither thread wakes the other for each small input event.
const BATCH_BYTES: usize = 256 * 1024;
const BATCH_EVENTS: usize = 256;
/// Batches in flight: enough that reading runs ahead over a chunk's worth
/// of events, while memory stays a few MB.
const BATCHES_IN_FLIGHT: usize = 8;

type EventBatch = Vec<Result<TimedEvent, ReadError>>;

/// Checked chunks on their way from the reading thread to the
/// decompressing one: a few, so reading runs ahead while memory stays
/// bounded (a chunk's payload is at most 5 MiB, most are under 1 MiB).
const CHUNKS_IN_FLIGHT: usize = 4;

/// The reading thread: reads the archive's chunks and checks each against
/// the hash chain, handing them on still compressed. Stops after an error
/// (passed on) or when the decompressing thread stops taking them.
fn read_chunks(chunks: Chunks<'_>, to_decompress: SyncSender<Result<CheckedChunk, ReadError>>) {
    for chunk in chunks {
        let failed = chunk.is_err();
        if to_decompress.send(chunk).is_err() || failed {
            return;
        }
    }
}

/// The decompressing thread: decodes the events and hands them on in
/// batches. Stops after an error (passed on) or when the replay stops
/// taking them.
fn decode_events(
    events: impl Iterator<Item = Result<TimedEvent, ReadError>>,
    to_replay: SyncSender<EventBatch>,
) {
    let mut batch = Vec::with_capacity(BATCH_EVENTS);
    let mut bytes = 0;
    for ev in events {
        let failed = ev.is_err();
        if let Ok(TimedEvent {
            event: Event::Output { data, .. } | Event::Input { data, .. },
            ..
        }) = &ev
        {
            bytes += data.len();
        }
        batch.push(ev);
        if failed || bytes >= BATCH_BYTES || batch.len() >= BATCH_EVENTS {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_EVENTS));
            if to_replay.send(full).is_err() || failed {
                return;
            }
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        let _ = to_replay.send(batch);
    }
}

/// The events of `chunks` from `from_us` on, in order, given to `replay`
/// while two threads of their own produce them: one reads the file and
/// checks the hash chain, the other decompresses and decodes. A damaged
/// chunk ends the events with its error, as reading in one thread does;
/// when `replay` returns early, both threads stop.
fn with_events_read_ahead<R>(
    chunks: Chunks<'_>,
    from_us: u64,
    replay: impl FnOnce(&mut dyn Iterator<Item = Result<TimedEvent, ReadError>>) -> R,
) -> Result<R, Mp4Error> {
    std::thread::scope(|scope| {
        let (to_decompress, checked) = std::sync::mpsc::sync_channel(CHUNKS_IN_FLIGHT);
        let (to_replay, batches) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT);
        std::thread::Builder::new()
            .name("mp4-read".into())
            .spawn_scoped(scope, move || read_chunks(chunks, to_decompress))
            .map_err(Mp4Error::io("starting a thread".into()))?;
        std::thread::Builder::new()
            .name("mp4-decompress".into())
            .spawn_scoped(scope, move || {
                decode_events(DecodedEvents::new(checked.into_iter(), from_us), to_replay)
            })
            .map_err(Mp4Error::io("starting a thread".into()))?;
        // Dropped on return, which stops both threads.
        let mut events = batches.into_iter().flatten();
        Ok(replay(&mut events))
    })
}

/// Encode the frames of `reader` in `range` into `dest` with `ffmpeg`.
/// Nothing is left at `dest` (or beside it) when anything fails.
///
/// Four threads share the work, as two cores are there to share it
/// (ffmpeg runs besides, in a process of its own): one reads the archive
/// and checks the hash chain, one decompresses it, this one replays the
/// events, and a fourth converts each sampled instant's changes to YUV and
/// writes the frame to ffmpeg. On full-screen redraws reading and
/// decompressing in one thread was the longest of the three threads before
/// (about 40 % of all the CPU, SHA-256 a fifth of it, zstd a third).
pub fn export_mp4(
    reader: &mut Reader,
    range: VideoRange,
    ffmpeg: &Path,
    dest: &Path,
) -> Result<Mp4Summary, Mp4Error> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".sekisho-export-")
        .suffix(".mp4")
        .tempfile_in(dir)
        .map_err(Mp4Error::io(format!(
            "creating a file in {}",
            dir.display()
        )))?;
    let (renderer, start) = seek(reader, range.from_us)?;
    let chunks = reader.chunks_from(start).map_err(RenderError::from)?;
    let summary = with_events_read_ahead(chunks, start, |events| {
        let mut frames = Frames::from_events(renderer, events, range);
        encode(&mut frames, range, ffmpeg, tmp.path())
    })??;
    tmp.persist(dest)
        .map_err(|e| Mp4Error::io(format!("writing {}", dest.display()))(e.error))?;
    Ok(summary)
}

/// The replay of `frames` and, on a thread of its own, the conversion to
/// ffmpeg at `out`.
fn encode(
    frames: &mut Frames<impl Iterator<Item = Result<TimedEvent, ReadError>>>,
    range: VideoRange,
    ffmpeg: &Path,
    out: &Path,
) -> Result<Mp4Summary, Mp4Error> {
    let Some(first) = frames.next_sample()? else {
        return Err(Mp4Error::NoFrames);
    };
    let Some((w, h)) = first.update.as_ref().map(|u| (u.width, u.height)) else {
        return Err(Mp4Error::NoFrames);
    };
    let canvas = VideoCanvas::new(w, h);
    let (width, height) = (canvas.width(), canvas.height());
    let mut encoder = Encoder::spawn(ffmpeg, &ffmpeg_args(out))?;
    let Some(input) = encoder.take_input() else {
        encoder.abort();
        return Err(Mp4Error::StoppedReading);
    };
    let input = FramePipe::new(input, width as usize * height as usize * 3 / 2);
    // The buffers frames are lent to ffmpeg from: dropped only after every
    // path below has waited for ffmpeg to exit (`abort`, `finish`), so no
    // freed memory can be reused while the pipe still refers to it.
    let mut held = HeldFrames::new(width, height);
    let held = &mut held;
    let (to_writer, samples) = std::sync::mpsc::sync_channel(SAMPLES_IN_FLIGHT);
    let (replayed, written) = std::thread::scope(|scope| {
        let writer = std::thread::Builder::new()
            .name("mp4-convert".into())
            .spawn_scoped(scope, move || {
                write_frames(canvas, held, input, range.fps, range.from_us, samples)
            });
        let writer = match writer {
            Ok(w) => w,
            Err(e) => return (Err(Mp4Error::io("starting a thread".into())(e)), None),
        };
        let mut sample = Some(first);
        let replayed = loop {
            let Some(s) = sample.take() else {
                break Ok(());
            };
            // A closed channel: the writer stopped, ffmpeg says why.
            if to_writer.send(s).is_err() {
                break Ok(());
            }
            match frames.next_sample() {
                Ok(next) => sample = next,
                Err(e) => break Err(Mp4Error::from(e)),
            }
        };
        drop(to_writer);
        (replayed, writer.join().ok().flatten())
    });
    if let Err(e) = replayed {
        encoder.abort();
        return Err(e);
    }
    encoder.finish()?;
    let Some(written) = written else {
        return Err(Mp4Error::StoppedReading);
    };
    let stats = frames.renderer().stats;
    Ok(Mp4Summary {
        frames: written.instants,
        encoded: written.encoded,
        width,
        height,
        decoded: stats.decoded,
        skipped: stats.skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn ffmpeg_is_looked_up_on_the_given_path_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prog = dir.path().join("ffmpeg");
        std::fs::write(&prog, "#!/bin/sh\n").expect("write");
        let path = std::env::join_paths([dir.path()]).expect("path");
        // Not executable: not a program.
        assert_eq!(find_on_path("ffmpeg", Some(path.clone())), None);
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(find_on_path("ffmpeg", Some(path)), Some(prog));
        assert_eq!(find_on_path("ffmpeg", None), None);
    }

    #[test]
    fn the_command_line_reads_timed_frames_and_names_the_output() {
        let args = ffmpeg_args(Path::new("/x/out.mp4"));
        let s: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let after = |flag: &str| {
            s.iter()
                .position(|a| a == flag)
                .map(|i| s[i + 1].as_str())
                .expect(flag)
        };
        assert_eq!(after("-f"), "matroska");
        assert_eq!(after("-i"), "-");
        assert_eq!(after("-fps_mode"), "passthrough");
        assert_eq!(after("-c:v"), "libx264");
        assert_eq!(after("-preset"), "ultrafast");
        // A fixed quantiser, not CRF: every frame at one quality.
        assert_eq!(after("-qp"), QP);
        assert!(!s.iter().any(|a| a == "-crf"));
        assert_eq!(s.last().map(String::as_str), Some("/x/out.mp4"));
        assert!(s.windows(2).any(|w| w == ["-pix_fmt", "yuv420p"]));
    }

    #[test]
    fn only_changed_instants_and_the_last_go_to_the_encoder_with_their_times() {
        use crate::replay::desktop::frames::{FrameUpdate, Region};
        use crate::replay::desktop::region::Rect;
        let s = 1_000_000;
        let update = |t_us: u64, full: bool, grey: u8| FrameUpdate {
            t_us,
            width: 2,
            height: 2,
            full,
            regions: vec![Region {
                rect: Rect {
                    x: 0,
                    y: 0,
                    width: 2,
                    height: 2,
                },
                rgba: [grey, grey, grey, 0].repeat(4),
            }],
        };
        // From 5 s on at 10 fps: changes at 5.0 and 5.2 s, nothing after
        // until the last instant, 5.5 s.
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        for (k, u) in [
            Some(update(5 * s, true, 0)),
            None,
            Some(update(5 * s + s / 5, false, 255)),
            None,
            None,
            None,
        ]
        .into_iter()
        .enumerate()
        {
            let t_us = 5 * s + k as u64 * s / 10;
            tx.send(Sample { t_us, update: u }).expect("send");
        }
        drop(tx);
        let mut out = Vec::new();
        let mut held = HeldFrames::new(2, 2);
        let w = write_frames(VideoCanvas::new(2, 2), &mut held, &mut out, 10, 5 * s, rx)
            .expect("written");
        assert_eq!((w.instants, w.encoded), (6, 3));
        // Each frame is a cluster: its ID, its size, the time element
        // (0xE7, 8-byte size, the value), then the block with the pixels.
        let cluster = [0x1F, 0x43, 0xB6, 0x75];
        let mut frames = Vec::new();
        let mut at = 0;
        while let Some(i) = out[at..].windows(4).position(|w| w == cluster) {
            let c = &out[at + i..];
            let n = usize::from(c[20]);
            let t = c[21..21 + n]
                .iter()
                .fold(0u64, |v, &b| v << 8 | u64::from(b));
            // The frame's luma: its last 6 bytes are Y Y Y Y U V.
            let len = usize::try_from(u64::from_be_bytes([
                0, c[5], c[6], c[7], c[8], c[9], c[10], c[11],
            ]))
            .expect("size");
            frames.push((t, c[12 + len - 6]));
            at += i + 12 + len;
        }
        // Times from the range's start; the last shows the frame of 5.2 s.
        assert_eq!(frames, [(0, 16), (s / 5, 235), (s / 2, 235)]);
    }

    /// A desktop archive of `n` bitmap updates a tenth of a second apart,
    /// one chunk each, the given chunk's payload damaged (or none).
    fn desktop_archive(dir: &Path, n: u64, damage: Option<usize>) -> PathBuf {
        use crate::recording::format::{CHUNK_HEADER_LEN, CHUNK_TAG};
        use crate::replay::desktop::render::tests::{archive, fast_path_bitmap, output};
        let events: Vec<(u64, Event)> = (0..n)
            .map(|k| {
                let grey = (k * 7 % 256) as u8;
                let x = (k % 8) as u16;
                (
                    k * 100_000,
                    output(0, fast_path_bitmap(x, 1, &[grey, grey, grey, 0])),
                )
            })
            .collect();
        let path = archive(dir, &events);
        if let Some(chunk) = damage {
            let mut bytes = std::fs::read(&path).expect("read");
            let at = bytes
                .windows(4)
                .enumerate()
                .filter(|(_, w)| *w == CHUNK_TAG)
                .nth(chunk)
                .map(|(i, _)| i)
                .expect("that chunk");
            bytes[at + CHUNK_HEADER_LEN + 2] ^= 0x40;
            std::fs::write(&path, bytes).expect("write");
        }
        path
    }

    fn read_in_one_thread(path: &Path, from_us: u64) -> Vec<Result<TimedEvent, String>> {
        let mut reader = Reader::open(path).expect("open");
        let events = reader.events_from(from_us).expect("events");
        events.map(|e| e.map_err(|e| e.to_string())).collect()
    }

    fn read_ahead(path: &Path, from_us: u64) -> Vec<Result<TimedEvent, String>> {
        let mut reader = Reader::open(path).expect("open");
        let chunks = reader.chunks_from(from_us).expect("chunks");
        with_events_read_ahead(chunks, from_us, |events| {
            events.map(|e| e.map_err(|e| e.to_string())).collect()
        })
        .expect("threads")
    }

    #[test]
    fn events_read_ahead_on_two_threads_are_the_events_read_in_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        // More chunks than are let in flight, so both channels fill up.
        let n = (CHUNKS_IN_FLIGHT * BATCHES_IN_FLIGHT * 4) as u64;
        let path = desktop_archive(dir.path(), n, None);
        for from_us in [0, 1_234_567, n * 100_000] {
            let one = read_in_one_thread(&path, from_us);
            let two = read_ahead(&path, from_us);
            assert!(one.iter().all(Result::is_ok));
            assert_eq!(two, one, "from {from_us} µs");
        }
        assert_eq!(read_ahead(&path, 0).len() as u64, n);
    }

    #[test]
    fn a_damaged_chunk_ends_the_events_read_ahead_with_its_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = desktop_archive(dir.path(), 100, Some(60));
        let one = read_in_one_thread(&path, 0);
        let two = read_ahead(&path, 0);
        assert_eq!(two, one);
        // The events before the damaged chunk, then its error, then nothing.
        assert_eq!(two.len(), 61);
        assert!(two[..60].iter().all(Result::is_ok));
        let err = two[60].as_ref().expect_err("the damage");
        assert!(err.contains("chunk 60 digest mismatch"), "{err}");
    }

    #[test]
    fn a_replay_that_stops_early_stops_the_reading_threads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = desktop_archive(dir.path(), 200, None);
        let mut reader = Reader::open(&path).expect("open");
        let chunks = reader.chunks_from(0).expect("chunks");
        // Returns (the scope joins both threads) though 199 events are left.
        let first = with_events_read_ahead(chunks, 0, |events| events.next())
            .expect("threads")
            .expect("an event")
            .expect("read");
        assert_eq!(first.t_us, 0);
    }

    /// An executable ffmpeg stand-in in `dir` running `script`.
    fn fake_ffmpeg(dir: &Path, script: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let prog = dir.join("ffmpeg");
        std::fs::write(&prog, format!("#!/bin/sh\n{script}\n")).expect("write");
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        prog
    }

    #[test]
    fn a_damaged_archive_stops_the_export_and_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = tempfile::tempdir().expect("tempdir");
        // Takes every frame and succeeds: only the archive can fail here.
        let ffmpeg = fake_ffmpeg(bin.path(), "cat > /dev/null");
        let range = VideoRange {
            fps: 10,
            from_us: 0,
            to_us: u64::MAX,
        };
        let out = tempfile::tempdir().expect("tempdir");
        let dest = out.path().join("session.mp4");
        let sound = desktop_archive(dir.path(), 100, None);
        let mut reader = Reader::open(&sound).expect("open");
        let done = export_mp4(&mut reader, range, &ffmpeg, &dest).expect("export");
        assert_eq!(done.frames, 100);
        assert!(dest.exists());
        std::fs::remove_file(&dest).expect("remove");

        let other = tempfile::tempdir().expect("tempdir");
        let damaged = desktop_archive(other.path(), 100, Some(60));
        let mut reader = Reader::open(&damaged).expect("open");
        let err = export_mp4(&mut reader, range, &ffmpeg, &dest).expect_err("damaged");
        assert!(
            matches!(&err, Mp4Error::Render(RenderError::Read(ReadError::Corrupt(m))) if m.contains("chunk 60 digest mismatch")),
            "{err:?}"
        );
        let left: Vec<_> = std::fs::read_dir(out.path()).expect("dir").collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[test]
    fn a_failing_encoder_reports_its_standard_error() {
        // Stands in for an ffmpeg that refuses its input.
        let dir = tempfile::tempdir().expect("tempdir");
        let prog = dir.path().join("ffmpeg");
        std::fs::write(
            &prog,
            "#!/bin/sh\necho 'Unknown encoder libx264' >&2\nexit 1\n",
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut enc = Encoder::spawn(&prog, &[]).expect("spawn");
        // Writing may or may not fail depending on when the script exits.
        let mut input = enc.take_input().expect("stdin");
        for _ in 0..64 {
            if input.write_all(&[0; 65536]).is_err() {
                break;
            }
        }
        drop(input);
        let err = enc.finish().expect_err("a failure").to_string();
        assert!(err.contains("Unknown encoder libx264"), "{err}");
        assert!(err.contains("ffmpeg failed"), "{err}");
    }
}
