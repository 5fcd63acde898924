//! `sekisho ticket issue`: a one-time ticket for a client that cannot prompt
//! for a code. The ticket is printed once and looked up by its hash; an RDP
//! ticket is also kept sealed with the master key until used (for NLA).
use std::process::ExitCode;

use anyhow::Context as _;

use super::Global;
use super::user::{local_time, open};
use crate::auth::admin_actor;
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
            // A ticket for a target or protocol the policies do not offer
            // could never be used; say so now rather than at sign-in.
            let policies =
                crate::policy::PolicySet::load_dir(&cfg.paths.policies, &cfg.networks, None)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "the policies have errors (run `sekisho policy check`):\n{e}"
                        )
                    })?;
            let key = crate::auth::secrets::load_master_key(&cfg.paths.master_key())
                .context("loading the master key (written by `sekisho init`)")?;
            let t = crate::auth::people::issue_ticket(
                &store,
                &key,
                &policies,
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
