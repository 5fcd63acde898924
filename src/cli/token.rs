//! `sekisho user token …`: API tokens for scripts that call the console's
//! `/api/v1` with `Authorization: Bearer TOKEN` (see
//! [`crate::auth::api_tokens`]). Issuing and revoking are audited.

use anyhow::Context as _;
use chrono::Utc;

use super::user::local_time;
use crate::auth::api_tokens;
use crate::config::Config;
use crate::store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Issue a token for a person; prints it once (only its hash is kept).
    Issue {
        name: String,
        /// What the token is for (shown in `list`).
        #[arg(long, default_value = "")]
        label: String,
        /// Valid for this long (e.g. 90d, 12h); `0` for until revoked.
        #[arg(long, default_value = "90d", value_parser = crate::config::parse_duration)]
        expires: std::time::Duration,
    },
    /// Revoke a token by its id (the 12 characters after `sekisho_`).
    Revoke { id: String },
    /// List tokens (of one person): id, label, issued, expiry, last use.
    List { name: Option<String> },
}

pub async fn run(cfg: &Config, store: &Store, by: &str, cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Issue {
            name,
            label,
            expires,
        } => {
            let until = if expires.is_zero() {
                None
            } else {
                let d = chrono::Duration::from_std(expires).context("--expires is too long")?;
                Some(Utc::now() + d)
            };
            let issued = api_tokens::issue(store, &name, &label, by, until)
                .await
                .with_context(|| format!("issuing an API token for {name}"))?;
            println!(
                "API token {} for {name} (shown once; keep it like a password):",
                issued.record.id
            );
            println!("{}", issued.token.as_str());
            match until {
                Some(t) => println!("valid until {}", local_time(cfg, t)),
                None => println!("valid until revoked"),
            }
        }
        TokenCmd::Revoke { id } => {
            let t = api_tokens::revoke(store, &id, by)
                .await
                .with_context(|| format!("revoking API token {id}"))?;
            println!("revoked API token {} of {}", t.id, t.user);
        }
        TokenCmd::List { name } => {
            let tokens = api_tokens::list(store, name.as_deref())
                .await
                .context("listing API tokens")?;
            let now = Utc::now();
            let header = [
                "ID",
                "USER",
                "LABEL",
                "ISSUED",
                "EXPIRES",
                "STATE",
                "LAST USED",
            ]
            .map(String::from);
            let rows: Vec<[String; 7]> = tokens
                .into_iter()
                .map(|t| {
                    let state = match (t.revoked_at, t.expires_at) {
                        (Some(r), _) => format!("revoked {}", local_time(cfg, r)),
                        (None, Some(e)) if e <= now => "expired".to_string(),
                        _ => "valid".to_string(),
                    };
                    [
                        t.id,
                        t.user,
                        if t.label.is_empty() {
                            "-".into()
                        } else {
                            t.label
                        },
                        format!("{} by {}", local_time(cfg, t.issued_at), t.issued_by),
                        t.expires_at
                            .map(|e| local_time(cfg, e))
                            .unwrap_or_else(|| "never".into()),
                        state,
                        t.last_used_at
                            .map(|u| local_time(cfg, u))
                            .unwrap_or_else(|| "never".into()),
                    ]
                })
                .collect();
            super::table::write(&mut std::io::stdout().lock(), &header, &rows)?;
        }
    }
    Ok(())
}
