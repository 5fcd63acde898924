//! `sekisho export ID|FILE --format F`: a recording in a format auditors
//! already open. Written to a temporary file and renamed, so a failed export
//! leaves nothing half-written.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::Global;
use crate::recording::Reader;
use crate::recording::export::{asciicast, keystrokes};

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
                    let stats =
                        crate::rdp::keystrokes::write_keystroke_log(&meta, reader.events(), out)?;
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
                let at_us = match a.at {
                    None => u64::MAX,
                    Some(s) if s.is_finite() && s >= 0.0 => (s * 1e6) as u64,
                    Some(s) => anyhow::bail!("--at {s}: give seconds from the session start"),
                };
                let r = crate::rdp::render::render_at(&meta, reader.events(), at_us)?;
                if r.stats.skipped > 0 {
                    eprintln!(
                        "note: {} server PDUs could not be decoded and were skipped ({} decoded)",
                        r.stats.skipped, r.stats.decoded
                    );
                }
                crate::rdp::render::write_png(r.width(), r.height(), &r.rgba(), out)?;
            }
            Format::Mp4 => anyhow::bail!(
                "MP4 export is not available yet; export a frame with --format png --at SECONDS"
            ),
        }
        Ok(())
    };
    if meta.protocol != crate::recording::Protocol::Ssh && matches!(a.format, Format::Asciicast) {
        anyhow::bail!(
            "asciicast is for terminal (SSH) recordings; this one is {}",
            meta.protocol.as_str()
        );
    }
    match &a.output {
        None => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            write(&mut out, &mut reader)?;
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
                write(&mut out, &mut reader)?;
                out.flush()
                    .with_context(|| format!("writing {}", dest.display()))?;
            }
            tmp.persist(dest)
                .with_context(|| format!("writing {}", dest.display()))?;
        }
    }
    if !reader.is_sealed().unwrap_or(false) {
        eprintln!(
            "note: {} is cut short (incomplete); the export ends where the sound part ends",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
