//! `sekisho policy`.
use std::process::ExitCode;

use super::Global;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCmd {}

pub async fn run(_g: &Global, _a: PolicyCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
