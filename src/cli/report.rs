//! `sekisho report …`: the work report (作業報告) of a work request — drafted
//! from the sessions, archives and audit log, completed by the engineer,
//! signed off by an approver — and the monthly usage report (月次利用報告),
//! as CSV for Excel or PDF.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::Utc;

use super::Global;
use super::request::{As, acting, policies};
use super::user::{local_time, open};
use crate::procedure;
use crate::report::monthly::{self, Month, Query};
use crate::report::{CsvEncoding, ReportFont};
use crate::store::WorkResult;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// CSV for Excel (see --encoding), CRLF line ends.
    Csv,
    /// PDF set in the `[reports] font` of sekisho.toml.
    Pdf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum, Default)]
pub enum Encoding {
    /// UTF-8 with a byte-order mark (Excel opens it as is).
    #[default]
    Utf8,
    /// Shift_JIS (CP932) for older tools; fails on characters it cannot hold.
    Cp932,
}

impl From<Encoding> for CsvEncoding {
    fn from(e: Encoding) -> CsvEncoding {
        match e {
            Encoding::Utf8 => CsvEncoding::Utf8Bom,
            Encoding::Cp932 => CsvEncoding::Cp932,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ReportCmd {
    /// The work report of a request: its fields, result and sign-off, its
    /// sessions, the commands and lines typed, refused operations, kills,
    /// archive digests and the documents on file.
    Work {
        /// The request number (e.g. R-2026-0001).
        number: String,
        /// A revision other than the one the work ran under (or the latest).
        #[arg(long)]
        revision: Option<u32>,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        #[arg(long, value_enum, default_value = "utf8")]
        encoding: Encoding,
        /// Write to FILE instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// The engineer's part of the work report, once the work is over: the
    /// result (完了 / 未完了 / 中止), a summary and the follow-ups. May be
    /// rewritten until it is signed off.
    Complete {
        number: String,
        #[command(flatten)]
        who: As,
        /// completed (完了), incomplete (未完了) or aborted (中止).
        #[arg(long, value_parser = parse_result)]
        result: WorkResult,
        /// 作業概要: what was done.
        #[arg(long)]
        summary: String,
        /// 今後の対応: what is left to do.
        #[arg(long, default_value = "")]
        follow_ups: String,
    },
    /// Sign the work report off (検収): an approver of the system; final.
    SignOff {
        number: String,
        #[command(flatten)]
        who: As,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// The monthly usage report per vendor and system.
    Monthly {
        /// The month, YYYY-MM (in the configured time zone).
        #[arg(long)]
        month: Month,
        #[arg(long)]
        vendor: Option<String>,
        #[arg(long)]
        system: Option<String>,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        #[arg(long, value_enum, default_value = "utf8")]
        encoding: Encoding,
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
}

fn parse_result(s: &str) -> Result<WorkResult, String> {
    s.parse()
}

pub async fn run(g: &Global, cmd: ReportCmd) -> anyhow::Result<ExitCode> {
    let (cfg, store) = open(g).await?;
    let now = Utc::now();
    procedure::expire_due(&store, now)
        .await
        .context("expiring work requests whose window ended")?;
    match cmd {
        ReportCmd::Work {
            number,
            revision,
            format,
            encoding,
            output,
        } => {
            let request = match revision {
                Some(r) => store.require_work_request(&number, Some(r)).await?,
                None => match procedure::report::worked_revision(&store, &number).await {
                    Ok(r) => r,
                    Err(procedure::ProcedureError::Refused(_)) => {
                        store.require_work_request(&number, None).await?
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            let report = crate::report::work::draft(&store, &request)
                .await
                .context("drafting the work report")?;
            let bytes = match format {
                Format::Csv => {
                    crate::report::work::csv(&report, cfg.time_zone).encode(encoding.into())?
                }
                Format::Pdf => {
                    let font = ReportFont::load(&cfg.reports.font)?;
                    crate::report::work::pdf(&report, cfg.time_zone, &font)?
                }
            };
            emit(output.as_deref(), &bytes)?;
        }
        ReportCmd::Complete {
            number,
            who,
            result,
            summary,
            follow_ups,
        } => {
            let acting = acting(&store, &who).await?;
            let r = procedure::report::complete(
                &store,
                &acting,
                &number,
                procedure::report::Completion {
                    result,
                    summary,
                    follow_ups,
                },
                now,
            )
            .await?;
            println!(
                "work report of {} rev {}: {} ({}), waiting for sign-off",
                r.number,
                r.revision,
                r.result.label(),
                r.result
            );
        }
        ReportCmd::SignOff {
            number,
            who,
            comment,
        } => {
            let policies = policies(&cfg)?;
            let acting = acting(&store, &who).await?;
            let r = procedure::report::sign_off(&store, &policies, &acting, &number, &comment, now)
                .await?;
            println!(
                "work report of {} rev {} signed off (検収) by {} at {}",
                r.number,
                r.revision,
                acting.user.name,
                r.signed_off_at
                    .map(|t| local_time(&cfg, t))
                    .unwrap_or_default()
            );
        }
        ReportCmd::Monthly {
            month,
            vendor,
            system,
            format,
            encoding,
            output,
        } => {
            let policies = policies(&cfg)?;
            // The font is checked before anything is computed.
            let font = match format {
                Format::Pdf => Some(ReportFont::load(&cfg.reports.font)?),
                Format::Csv => None,
            };
            let report = monthly::compute(
                &store,
                &policies,
                cfg.time_zone,
                &cfg.reports.normal_hours,
                Query {
                    month,
                    vendor,
                    system,
                },
            )
            .await?;
            let bytes = match font {
                Some(font) => monthly::pdf(&report, cfg.time_zone, &font)?,
                None => monthly::csv(&report, cfg.time_zone).encode(encoding.into())?,
            };
            emit(output.as_deref(), &bytes)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the whole file, or nothing: to a temporary file beside it, then
/// renamed over it. Without a path, to standard output.
pub fn emit(path: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match path {
        Some(path) => write_whole(path, bytes),
        None => std::io::stdout()
            .write_all(bytes)
            .context("writing the report"),
    }
}

/// `bytes` into `path` atomically (temporary file in the same directory,
/// then rename); an error leaves `path` as it was.
pub fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
