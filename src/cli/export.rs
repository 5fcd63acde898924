//! `sekisho export`.
use std::process::ExitCode;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {}

pub async fn run(_g: &Global, _a: ExportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
