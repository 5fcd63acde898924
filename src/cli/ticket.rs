//! `sekisho ticket issue`: a one-time ticket for a client that cannot prompt
//! for a code. The ticket is printed once and stored only as a hash.
use std::process::ExitCode;

use anyhow::Context as _;

use super::Global;
use super::user::{local_time, open};
use crate::auth::{admin_actor, tickets};
use crate::config::format_duration;

#[derive(Debug, clap::Subcommand)]
pub enum TicketCmd {
    /// Issue a single-use ticket bound to a person, a target and a protocol.
    Issue {
        #[arg(long)]
        user: String,
        #[arg(long)]
        target: String,
        /// ssh or rdp.
        #[arg(long)]
        protocol: String,
    },
}

pub async fn run(g: &Global, cmd: TicketCmd) -> anyhow::Result<ExitCode> {
    let (cfg, store) = open(g).await?;
    match cmd {
        TicketCmd::Issue {
            user,
            target,
            protocol,
        } => {
            let t = tickets::issue(
                &store,
                cfg.auth.ticket_lifetime,
                &user,
                &target,
                &protocol,
                &admin_actor(),
            )
            .await
            .with_context(|| format!("issuing a ticket for {user}"))?;
            // The ticket alone on the first line, for scripts.
            println!("{}", t.text.as_str());
            println!(
                "single use, for {user} to {target} over {protocol}, valid {} (until {})",
                format_duration(cfg.auth.ticket_lifetime),
                local_time(&cfg, t.expires_at)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
