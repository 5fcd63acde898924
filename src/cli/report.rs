//! `sekisho report work NUMBER`: the work report draft (作業報告) of a work
//! request, computed from the sessions, archives and audit log.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::Global;
use super::user::open;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum WorkFormat {
    /// UTF-8 with a byte-order mark and CRLF line ends (opens in Excel).
    Csv,
}

#[derive(Debug, clap::Subcommand)]
pub enum ReportCmd {
    /// The work report draft of a request: its sessions, the commands and
    /// lines typed, refused operations, kills and archive digests.
    Work {
        /// The request number (e.g. R-2026-0001).
        number: String,
        /// A revision other than the latest.
        #[arg(long)]
        revision: Option<u32>,
        #[arg(long, value_enum, default_value = "csv")]
        format: WorkFormat,
        /// Write to FILE instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
}

pub async fn run(g: &Global, cmd: ReportCmd) -> anyhow::Result<ExitCode> {
    let (cfg, store) = open(g).await?;
    match cmd {
        ReportCmd::Work {
            number,
            revision,
            format: WorkFormat::Csv,
            output,
        } => {
            let request = store.require_work_request(&number, revision).await?;
            let report = crate::report::work::draft(&store, &request)
                .await
                .context("drafting the work report")?;
            let mut bytes = Vec::new();
            crate::report::work::write_csv(&report, cfg.time_zone, &mut bytes)?;
            match output {
                // Written whole, then renamed: no half-written report.
                Some(path) => {
                    let tmp = path.with_extension("partial");
                    std::fs::write(&tmp, &bytes)
                        .with_context(|| format!("writing {}", tmp.display()))?;
                    std::fs::rename(&tmp, &path)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                None => std::io::stdout()
                    .write_all(&bytes)
                    .context("writing the report")?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
