//! `sekisho verify`.
use std::process::ExitCode;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {}

pub async fn run(_g: &Global, _a: VerifyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
