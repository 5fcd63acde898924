//! `sekisho user`.
use std::process::ExitCode;

use super::Global;

#[derive(Debug, clap::Subcommand)]
pub enum UserCmd {}

#[derive(Debug, clap::Subcommand)]
pub enum VendorCmd {}

pub async fn run_user(_g: &Global, _a: UserCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}

pub async fn run_vendor(_g: &Global, _a: VendorCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
