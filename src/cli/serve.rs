//! `sekisho serve`.
use std::process::ExitCode;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

pub async fn run(_g: &Global, _a: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
