//! `sekisho replay`.
use std::process::ExitCode;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {}

pub async fn run(_g: &Global, _a: ReplayArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
