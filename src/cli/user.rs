//! `sekisho user …` and `sekisho vendor …`: people, their registered keys,
//! and vendor organisations. Every change is written to the audit log as an
//! `admin_change` naming the OS account that ran the command.

use std::io::{BufRead, IsTerminal, Read};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::Global;
use crate::auth::{self, Role, admin_actor};
use crate::config::Config;
use crate::store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum UserCmd {
    /// Add a person; prints their TOTP secret (and password, if generated) once.
    Add {
        name: String,
        /// engineer, auditor, admin or approver.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The vendor organisation (required for engineers).
        #[arg(long)]
        vendor: Option<String>,
        /// Read the password from standard input (one line) instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List people: role, vendor, state, keys, last sign-in (never a secret).
    List,
    /// Refuse all sign-ins of a person (and close their sign-in windows).
    Disable { name: String },
    /// Allow a person to sign in again; also clears a lockout.
    Enable { name: String },
    /// Set a new password (generated and printed once, or read from stdin).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give a person a new TOTP secret (for a lost phone); prints it once.
    TotpReset { name: String },
    /// Registered SSH public keys (a vendor's registered terminals).
    #[command(subcommand)]
    Key(KeyCmd),
    /// API tokens for scripts calling the console's /api/v1.
    #[command(subcommand)]
    Token(super::token::TokenCmd),
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyCmd {
    /// Register an OpenSSH public key from FILE (`-` for standard input).
    Add { name: String, file: String },
    /// Remove a registered key by its SHA256: fingerprint.
    Rm { name: String, fingerprint: String },
    /// List a person's registered keys.
    List { name: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum VendorCmd {
    /// Add a vendor organisation, optionally as a subcontractor of another.
    Add {
        org: String,
        #[arg(long, value_name = "ORG")]
        subcontractor_of: Option<String>,
    },
    /// List vendors and whom they subcontract for.
    List,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

/// Loads the configuration and opens its database.
pub(crate) async fn open(g: &Global) -> anyhow::Result<(Config, Store)> {
    let cfg = super::load_config(g)?;
    let store = super::open_store(&cfg).await?;
    Ok((cfg, store))
}

/// A time as people at this site read it.
pub(crate) fn local_time(cfg: &Config, t: DateTime<Utc>) -> String {
    t.with_timezone(&cfg.time_zone)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// Reads one line from standard input, without its line ending.
pub(crate) fn read_stdin_line(what: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from standard input"))?;
    let trimmed = zeroize::Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_string());
    if trimmed.is_empty() {
        anyhow::bail!("no {what} on standard input");
    }
    Ok(trimmed)
}

pub async fn run_user(g: &Global, cmd: UserCmd) -> anyhow::Result<ExitCode> {
    let (cfg, store) = open(g).await?;
    let by = admin_actor();
    match cmd {
        UserCmd::Add {
            name,
            role,
            vendor,
            password_stdin,
        } => {
            let given = if password_stdin {
                Some(read_secret("password", false)?)
            } else {
                None
            };
            let nu = auth::create_user(
                &store,
                &super::master_key(&cfg)?,
                &name,
                role,
                vendor.as_deref(),
                given.as_deref().map(String::as_str),
            )
            .await
            .with_context(|| format!("adding user {name}"))?;
            let vendor_text = vendor.map(|v| format!(", vendor {v}")).unwrap_or_default();
            println!("added user {name} ({role}{vendor_text})");
            if let Some(pw) = &nu.password {
                println!("password: {}", pw.as_str());
            }
            println!("TOTP secret: {}", nu.totp_secret_base32);
            println!("otpauth URI: {}", nu.otpauth_uri);
            println!("Hand these to {name} over a trusted channel; they are not shown again.");
        }
        UserCmd::List => {
            let users = store.users().await.context("listing users")?;
            let now = Utc::now();
            let header = [
                "NAME",
                "ROLE",
                "VENDOR",
                "ENABLED",
                "LOCKED",
                "KEYS",
                "LAST SIGN-IN",
            ]
            .map(String::from);
            let rows: Vec<[String; 7]> = users
                .into_iter()
                .map(|u| {
                    let locked = match u.locked_until {
                        Some(t) if t > now => {
                            if t.timestamp_micros()
                                >= crate::store::users::LOCKED_INDEFINITELY_MICROS
                            {
                                "until enabled".to_string()
                            } else {
                                format!("until {}", local_time(&cfg, t))
                            }
                        }
                        _ => "no".to_string(),
                    };
                    [
                        u.name,
                        u.role.to_string(),
                        u.vendor.unwrap_or_else(|| "-".into()),
                        if u.enabled { "yes" } else { "no" }.to_string(),
                        locked,
                        u.keys.to_string(),
                        u.last_signin_at
                            .map(|t| local_time(&cfg, t))
                            .unwrap_or_else(|| "never".into()),
                    ]
                })
                .collect();
            super::table::write(&mut std::io::stdout().lock(), &header, &rows)?;
        }
        UserCmd::Disable { name } => {
            auth::people::disable_user(&store, &name, &by)
                .await
                .with_context(|| format!("disabling {name}"))?;
            println!("disabled user {name}");
        }
        UserCmd::Enable { name } => {
            auth::people::enable_user(&store, &name, &by)
                .await
                .with_context(|| format!("enabling {name}"))?;
            println!("enabled user {name}");
        }
        UserCmd::Passwd {
            name,
            password_stdin,
        } => {
            if store.user(&name).await?.is_none() {
                anyhow::bail!("no user {name}");
            }
            let (pw, generated) = if password_stdin {
                (read_secret("password", false)?, false)
            } else {
                (
                    zeroize::Zeroizing::new(auth::password::generate_password()),
                    true,
                )
            };
            auth::set_password(&store, &name, &pw, &by)
                .await
                .with_context(|| format!("setting the password of {name}"))?;
            println!("set a new password for {name}");
            if generated {
                println!("password: {}", pw.as_str());
            }
        }
        UserCmd::TotpReset { name } => {
            let (secret, uri) = auth::reset_totp(&store, &super::master_key(&cfg)?, &name, &by)
                .await
                .with_context(|| format!("resetting the TOTP secret of {name}"))?;
            println!("new TOTP secret for {name}");
            println!("TOTP secret: {secret}");
            println!("otpauth URI: {uri}");
            println!("Codes from the old secret no longer work.");
        }
        UserCmd::Token(cmd) => super::token::run(&cfg, &store, &by, cmd).await?,
        UserCmd::Key(KeyCmd::Add { name, file }) => {
            let text = if file == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading the public key from standard input")?;
                s
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
            };
            let k = auth::people::register_key(&store, &name, &text, &by)
                .await
                .with_context(|| format!("registering a key for {name}"))?;
            println!("registered key {} {} for {name}", k.fingerprint, k.comment);
        }
        UserCmd::Key(KeyCmd::Rm { name, fingerprint }) => {
            auth::people::remove_key(&store, &name, &fingerprint, &by)
                .await
                .with_context(|| format!("removing a key of {name}"))?;
            println!("removed key {fingerprint} of {name}");
        }
        UserCmd::Key(KeyCmd::List { name }) => {
            if store.user(&name).await?.is_none() {
                anyhow::bail!("no user {name}");
            }
            for k in store.keys(&name).await? {
                println!(
                    "{}  {}  added {}",
                    k.fingerprint,
                    k.comment,
                    local_time(&cfg, k.added_at)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_vendor(g: &Global, cmd: VendorCmd) -> anyhow::Result<ExitCode> {
    let (_cfg, store) = open(g).await?;
    match cmd {
        VendorCmd::Add {
            org,
            subcontractor_of,
        } => {
            auth::people::add_vendor(&store, &org, subcontractor_of.as_deref(), &admin_actor())
                .await
                .with_context(|| format!("adding vendor {org}"))?;
            let under = subcontractor_of
                .as_deref()
                .map(|p| format!(" as a subcontractor of {p}"))
                .unwrap_or_default();
            println!("added vendor {org}{under}");
        }
        VendorCmd::List => {
            for v in store.vendors().await? {
                match v.parent {
                    Some(p) => println!("{}  (subcontractor of {p})", v.name),
                    None => println!("{}", v.name),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Turns terminal echo off while alive, so a secret typed at a prompt is
/// not shown; restores the previous settings on drop.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    #[allow(unsafe_code)] // FFI to libc; see SAFETY below.
    fn new() -> EchoOff {
        // SAFETY: termios is plain data; tcgetattr/tcsetattr only read and
        // write the struct we pass for file descriptor 0.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return EchoOff(None);
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return EchoOff(None);
            }
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    #[allow(unsafe_code)] // FFI to libc; see SAFETY below.
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: restores settings read by tcgetattr above.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, t);
            }
        }
    }
}

/// Reads a secret: from a terminal, one line with echo off after a prompt;
/// otherwise one line (`all` = false) or all of standard input minus one
/// trailing newline (`all` = true).
pub(crate) fn read_secret(what: &str, all: bool) -> anyhow::Result<zeroize::Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        eprint!("{what} (not shown): ");
        let line = {
            let _quiet = EchoOff::new();
            read_stdin_line(what)
        };
        eprintln!();
        return line;
    }
    if !all {
        return read_stdin_line(what);
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut text)
        .with_context(|| format!("reading the {what} from standard input"))?;
    let mut value = zeroize::Zeroizing::new(text.as_str().to_string());
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        anyhow::bail!("no {what} on standard input");
    }
    Ok(value)
}
