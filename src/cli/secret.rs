//! `sekisho secret …`: target credentials, encrypted with the master key.
//! Nothing here ever prints a value back.
use std::process::ExitCode;

use anyhow::Context as _;

use super::Global;
use super::user::{local_time, open, read_secret};
use crate::auth::secrets::{SecretStore, check_secret_name};
use crate::auth::{admin_actor, admin_event};

#[derive(Debug, clap::Subcommand)]
pub enum SecretCmd {
    /// Set a secret from standard input (all of it, minus one trailing newline).
    Set { name: String },
    /// List secret names and when each was last set (never the values).
    List,
    /// Remove a secret.
    Rm { name: String },
}

pub async fn run(g: &Global, cmd: SecretCmd) -> anyhow::Result<ExitCode> {
    let (cfg, store) = open(g).await?;
    let by = admin_actor();
    match cmd {
        SecretCmd::Set { name } => {
            check_secret_name(&name)?;
            let key = super::master_key(&cfg)?;
            let value = read_secret(&format!("value of secret {name}"), true)?;
            let secrets = SecretStore::new(store.clone(), key);
            let replaced =
                crate::auth::people::set_secret(&store, &secrets, &name, value.as_bytes(), &by)
                    .await
                    .with_context(|| format!("storing secret {name}"))?;
            let verb = if replaced { "replaced" } else { "set" };
            println!("{verb} secret {name}");
        }
        SecretCmd::List => {
            for s in store.secret_names().await.context("listing secrets")? {
                println!("{}  set {}", s.name, local_time(&cfg, s.updated_at));
            }
        }
        SecretCmd::Rm { name } => {
            store
                .remove_secret(&name)
                .await
                .with_context(|| format!("removing secret {name}"))?;
            store
                .audit(
                    &admin_event(&by, "secret_rm", format!("{by} removed secret {name}"))
                        .with("secret", name.as_str()),
                )
                .await?;
            println!("removed secret {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
