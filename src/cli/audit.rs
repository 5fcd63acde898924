//! `sekisho audit`.
use std::process::ExitCode;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {}

pub async fn run(_g: &Global, _a: AuditArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
