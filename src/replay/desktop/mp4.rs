//! `export --format mp4`: the frames of [`super::video`] piped as raw video into
//! an ffmpeg child that encodes H.264 into a temporary file in the
//! destination directory, renamed when ffmpeg succeeds.

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use super::render::RenderError;
use super::video::{Frames, Sample, VideoCanvas, VideoRange};
use crate::recording::Reader;

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

/// x264 speed/size trade-off. Measured on a 141 s recorded session (two
/// shared cores): x264 took 3.5 s with `veryfast`, 2.9 s `superfast`, 1.4 s
/// `ultrafast`; the file doubles (0.4 to 0.8 MB) at the same quality (CRF).
const PRESET: &str = "ultrafast";

/// What the export produced, for the note on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mp4Summary {
    pub frames: u64,
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

/// The ffmpeg command line: raw yuv420p frames on standard input (already
/// converted, BT.601 limited range, and tagged so), H.264 out.
fn ffmpeg_args(width: u32, height: u32, fps: u32, out: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p",
        "-s",
        &format!("{width}x{height}"),
        "-r",
        &fps.to_string(),
        "-i",
        "-",
        "-c:v",
        "libx264",
        "-preset",
        PRESET,
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

/// The converting thread: draws each sample's changes, converts them to
/// YUV and writes the frame to ffmpeg. Returns the frames written, or
/// `None` when ffmpeg stopped reading.
fn write_frames(
    mut canvas: VideoCanvas,
    mut input: ChildStdin,
    samples: std::sync::mpsc::Receiver<Sample>,
) -> Option<u64> {
    let mut count = 0;
    for sample in samples {
        if let Some(update) = &sample.update {
            canvas.apply(update);
        }
        // Unchanged frames are written again as they are: converting is
        // what costs, and nothing changed.
        input.write_all(canvas.yuv()).ok()?;
        count += 1;
    }
    Some(count)
}

/// Encode the frames of `reader` in `range` into `dest` with `ffmpeg`.
/// Nothing is left at `dest` (or beside it) when anything fails.
///
/// Two threads share the work, as two cores are there to share it (ffmpeg
/// runs besides, in a process of its own): this one reads the archive and
/// replays it, and hands each sampled instant's changes to another that
/// converts them to YUV and writes the frame to ffmpeg.
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
    let mut frames = Frames::new(reader, range)?;
    let Some(first) = frames.next_sample()? else {
        return Err(Mp4Error::NoFrames);
    };
    let Some((w, h)) = first.update.as_ref().map(|u| (u.width, u.height)) else {
        return Err(Mp4Error::NoFrames);
    };
    let canvas = VideoCanvas::new(w, h);
    let (width, height) = (canvas.width(), canvas.height());
    let mut encoder = Encoder::spawn(ffmpeg, &ffmpeg_args(width, height, range.fps, tmp.path()))?;
    let Some(input) = encoder.take_input() else {
        encoder.abort();
        return Err(Mp4Error::StoppedReading);
    };
    let (to_writer, samples) = std::sync::mpsc::sync_channel(SAMPLES_IN_FLIGHT);
    let (replayed, written) = std::thread::scope(|scope| {
        let writer = std::thread::Builder::new()
            .name("mp4-convert".into())
            .spawn_scoped(scope, move || write_frames(canvas, input, samples));
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
    let Some(count) = written else {
        return Err(Mp4Error::StoppedReading);
    };
    tmp.persist(dest)
        .map_err(|e| Mp4Error::io(format!("writing {}", dest.display()))(e.error))?;
    let stats = frames.renderer().stats;
    Ok(Mp4Summary {
        frames: count,
        width,
        height,
        decoded: stats.decoded,
        skipped: stats.skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_command_line_names_size_rate_and_output() {
        let args = ffmpeg_args(1024, 768, 10, Path::new("/x/out.mp4"));
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
        assert_eq!(after("-s"), "1024x768");
        assert_eq!(after("-r"), "10");
        assert_eq!(after("-c:v"), "libx264");
        assert_eq!(s.last().map(String::as_str), Some("/x/out.mp4"));
        assert!(s.windows(2).any(|w| w == ["-pix_fmt", "yuv420p"]));
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
