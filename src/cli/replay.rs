//! `sekisho replay ID|FILE`: plays a recorded terminal session in this
//! terminal with its real timing (optionally faster, long pauses shortened).

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;

use super::Global;
use crate::recording::Reader;
use crate::replay::terminal::playback::{Pacing, Step, step};

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A session id (looked up under the recordings directory) or an archive file.
    pub session: String,
    /// Playback speed factor (2 = twice as fast).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Pauses longer than this many seconds are shortened to it (0 = keep all pauses).
    #[arg(long, default_value_t = 2.0)]
    pub max_idle: f64,
    /// Start this many seconds into the session.
    #[arg(long, default_value_t = 0.0)]
    pub from: f64,
    /// Play only this channel (a connection may carry several).
    #[arg(long)]
    pub channel: Option<u32>,
}

pub async fn run(g: &Global, a: ReplayArgs) -> anyhow::Result<ExitCode> {
    if !(a.speed.is_finite() && a.speed > 0.0) {
        anyhow::bail!("--speed must be a positive number");
    }
    if !(a.max_idle.is_finite() && a.max_idle >= 0.0 && a.from.is_finite() && a.from >= 0.0) {
        anyhow::bail!("--max-idle and --from must be zero or positive numbers of seconds");
    }
    let path = super::archive_path(g, &a.session)?;
    tokio::task::spawn_blocking(move || play(&path, &a))
        .await
        .context("replay task")?
}

fn play(path: &std::path::Path, a: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut reader = Reader::open(path).with_context(|| format!("opening {}", path.display()))?;
    let meta = reader.meta().clone();
    eprintln!(
        "sekisho replay: {} on {} from {}, started {} ({}x)",
        meta.user,
        meta.target,
        meta.client_addr,
        meta.started_at.to_rfc3339(),
        a.speed
    );
    if let Some(t) = &meta.terminal {
        eprintln!("terminal size {}x{}", t.cols, t.rows);
    }
    let from_us = (a.from * 1e6) as u64;
    let max_idle_us = (a.max_idle * 1e6) as u64;
    let events = reader
        .events_from(from_us)
        .with_context(|| format!("seeking in {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    let mut pacing = Pacing::new(a.speed, max_idle_us);
    for item in events {
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                out.flush().ok();
                eprintln!("\r\nsekisho replay: the recording ends early: {e}");
                return Ok(ExitCode::from(3));
            }
        };
        if item.t_us < from_us {
            continue;
        }
        let data = match step(&item.event, a.channel) {
            Step::Output(data) => data,
            Step::Resize { cols, rows } => {
                out.flush().ok();
                eprintln!("\r\n[terminal resized to {cols}x{rows}]");
                continue;
            }
            Step::Skip => continue,
        };
        if let Some(wait) = pacing.wait_before(item.t_us) {
            out.flush().context("writing to the terminal")?;
            std::thread::sleep(wait);
        }
        out.write_all(data).context("writing to the terminal")?;
    }
    out.flush().context("writing to the terminal")?;
    eprintln!("\r\n[end of recording]");
    Ok(ExitCode::SUCCESS)
}
