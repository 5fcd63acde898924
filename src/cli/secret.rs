//! `sekisho secret`.
use std::process::ExitCode;

use super::Global;

#[derive(Debug, clap::Subcommand)]
pub enum SecretCmd {}

pub async fn run(_g: &Global, _a: SecretCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
