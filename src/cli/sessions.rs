//! `sekisho sessions`.
use std::process::ExitCode;

use super::Global;

#[derive(Debug, clap::Subcommand)]
pub enum SessionsCmd {}

pub async fn run(_g: &Global, _a: SessionsCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
