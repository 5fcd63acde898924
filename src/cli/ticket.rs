//! `sekisho ticket`.
use std::process::ExitCode;

use super::Global;

#[derive(Debug, clap::Subcommand)]
pub enum TicketCmd {}

pub async fn run(_g: &Global, _a: TicketCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
