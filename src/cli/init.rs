//! `sekisho init`.
use std::process::ExitCode;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct InitArgs {}

pub async fn run(_g: &Global, _a: InitArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
