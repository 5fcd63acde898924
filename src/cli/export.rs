//! `sekisho export ID|FILE --format F`: a recording in a format auditors
//! already open. Written to a temporary file and renamed, so a failed export
//! leaves nothing half-written.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::Global;
use crate::recording::Reader;
use crate::replay::desktop::keystrokes as desktop_keystrokes;
use crate::replay::desktop::{mp4, png, seek, video};
use crate::replay::terminal::{asciicast, keystrokes};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// asciicast v2 with input events and resizes (`asciinema play`).
    Asciicast,
    /// What was typed, with times; one line per command line entered.
    Keystrokes,
    /// A desktop frame as PNG (RDP recordings).
    Png,
    /// A desktop recording as MP4 through ffmpeg (RDP recordings).
    Mp4,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A session id (looked up under the recordings directory) or an archive file.
    pub session: String,
    #[arg(long, value_enum)]
    pub format: Format,
    /// Where to write (default: standard output).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Only this channel of a terminal session (default: all).
    #[arg(long)]
    pub channel: Option<u32>,
    /// PNG: the moment to render, in seconds from the session start (default: the end).
    #[arg(long)]
    pub at: Option<f64>,
    /// MP4: frames per second of session time.
    #[arg(long, default_value_t = 10)]
    pub fps: u32,
    /// MP4: start at this many seconds from the session start (default: the start).
    #[arg(long)]
    pub from: Option<f64>,
    /// MP4: end at this many seconds from the session start (default: the end).
    #[arg(long)]
    pub to: Option<f64>,
}

/// Seconds from the session start given on the command line, in µs.
fn seconds_us(flag: &str, s: Option<f64>, default: u64) -> anyhow::Result<u64> {
    match s {
        None => Ok(default),
        Some(s) if s.is_finite() && s >= 0.0 => Ok((s * 1e6) as u64),
        Some(s) => anyhow::bail!("{flag} {s}: give seconds from the session start"),
    }
}

pub async fn run(g: &Global, a: ExportArgs) -> anyhow::Result<ExitCode> {
    let path = super::archive_path(g, &a.session)?;
    tokio::task::spawn_blocking(move || export(&path, &a))
        .await
        .context("export task")?
}

fn export(path: &Path, a: &ExportArgs) -> anyhow::Result<ExitCode> {
    let mut reader = Reader::open(path).with_context(|| format!("opening {}", path.display()))?;
    let meta = reader.meta().clone();
    let write = |out: &mut dyn std::io::Write, reader: &mut Reader| -> anyhow::Result<()> {
        match a.format {
            Format::Asciicast => {
                asciicast::write_asciicast(&meta, reader.events(), a.channel, out)?
            }
            Format::Keystrokes => match meta.protocol {
                crate::recording::Protocol::Ssh => {
                    keystrokes::write_keystroke_log(&meta, reader.events(), out)?
                }
                crate::recording::Protocol::Rdp => {
                    let info = meta.rdp.clone().unwrap_or_default();
                    let stats = desktop_keystrokes::write_keystroke_log(
                        &meta,
                        &info,
                        reader.events(),
                        out,
                    )?;
                    if stats.skipped > 0 {
                        eprintln!(
                            "note: {} client input PDU(s) could not be decoded and were skipped ({} decoded)",
                            stats.skipped, stats.decoded
                        );
                    }
                }
            },
            Format::Png => {
                if meta.protocol != crate::recording::Protocol::Rdp {
                    anyhow::bail!(
                        "PNG export renders desktop (RDP) recordings; this one is {}",
                        meta.protocol.as_str()
                    );
                }
                let at_us = seconds_us("--at", a.at, u64::MAX)?;
                // Starts at a keyframe shortly before --at, not at the start.
                let r = seek::render_at(reader, at_us)?;
                if r.stats.skipped > 0 {
                    eprintln!(
                        "note: {} server PDUs could not be decoded and were skipped ({} decoded)",
                        r.stats.skipped, r.stats.decoded
                    );
                }
                png::write_png(r.width(), r.height(), &r.rgba(), out)?;
            }
            // ffmpeg writes MP4 to a file of its own (export_mp4).
            Format::Mp4 => anyhow::bail!("MP4 is not written through this writer"),
        }
        Ok(())
    };
    if meta.protocol != crate::recording::Protocol::Ssh && matches!(a.format, Format::Asciicast) {
        anyhow::bail!(
            "asciicast is for terminal (SSH) recordings; this one is {}",
            meta.protocol.as_str()
        );
    }
    if a.format == Format::Mp4 {
        export_mp4(path, &mut reader, a)?;
    } else {
        write_output(a, &mut reader, write)?;
    }
    if !reader.is_sealed().unwrap_or(false) {
        eprintln!(
            "note: {} is cut short (incomplete); the export ends where the sound part ends",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `write` into standard output or a temporary file renamed to `-o`.
fn write_output(
    a: &ExportArgs,
    reader: &mut Reader,
    write: impl Fn(&mut dyn std::io::Write, &mut Reader) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match &a.output {
        None => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            write(&mut out, reader)?;
            out.flush().context("writing to standard output")?;
        }
        Some(dest) => {
            let dir = dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            {
                let mut out = std::io::BufWriter::new(tmp.as_file_mut());
                write(&mut out, reader)?;
                out.flush()
                    .with_context(|| format!("writing {}", dest.display()))?;
            }
            tmp.persist(dest)
                .with_context(|| format!("writing {}", dest.display()))?;
        }
    }
    Ok(())
}

fn export_mp4(path: &Path, reader: &mut Reader, a: &ExportArgs) -> anyhow::Result<()> {
    let meta = reader.meta();
    if meta.protocol != crate::recording::Protocol::Rdp {
        anyhow::bail!(
            "MP4 export renders desktop (RDP) recordings; this one is {}",
            meta.protocol.as_str()
        );
    }
    let Some(dest) = &a.output else {
        anyhow::bail!("MP4 export needs a file to write (-o FILE.mp4): MP4 cannot be streamed");
    };
    if !(1..=60).contains(&a.fps) {
        anyhow::bail!("--fps {}: give 1 to 60 frames per second", a.fps);
    }
    let range = video::VideoRange {
        fps: a.fps,
        from_us: seconds_us("--from", a.from, 0)?,
        to_us: seconds_us("--to", a.to, u64::MAX)?,
    };
    if range.to_us < range.from_us {
        anyhow::bail!("--to is before --from");
    }
    let ffmpeg = mp4::find_ffmpeg()?;
    let started = std::time::Instant::now();
    let done = mp4::export_mp4(reader, range, &ffmpeg, dest)
        .with_context(|| format!("exporting {} as MP4", path.display()))?;
    if done.skipped > 0 {
        eprintln!(
            "note: {} server PDUs could not be decoded and were skipped ({} decoded)",
            done.skipped, done.decoded
        );
    }
    eprintln!(
        "{}: {} frames of {}x{} at {} fps ({} encoded, the others unchanged) in {:.1}s",
        dest.display(),
        done.frames,
        done.width,
        done.height,
        a.fps,
        done.encoded,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
