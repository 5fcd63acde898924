//! The command line: one file per command group. `main.rs` only parses and
//! dispatches here. Errors leave as `anyhow` with context for the person.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_FILE};

pub mod audit;
pub mod cert;
pub mod document;
pub mod export;
pub mod init;
pub mod policy;
pub mod replay;
pub mod report;
pub mod request;
pub mod secret;
pub mod serve;
pub mod sessions;
pub mod stop;
pub mod table;
pub mod target;
pub mod ticket;
pub mod token;
pub mod user;
pub mod verify;

#[derive(Debug, Parser)]
#[command(
    name = "sekisho",
    version,
    about = "Session-recording bastion for remote maintenance"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct Global {
    /// The configuration file (written by `sekisho init`).
    #[arg(long, short = 'c', global = true, env = "SEKISHO_CONFIG", default_value = DEFAULT_FILE)]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create config, keys, database and the first admin in a directory.
    Init(init::InitArgs),
    /// Run the SSH and RDP listeners.
    Serve(serve::ServeArgs),
    /// The RDP certificate: renew the generated one, show its pin.
    #[command(subcommand)]
    Cert(cert::CertCmd),
    /// Manage people: engineers, auditors, admins, approvers.
    #[command(subcommand)]
    User(user::UserCmd),
    /// Manage vendor organisations.
    #[command(subcommand)]
    Vendor(user::VendorCmd),
    /// Issue one-time tickets for clients that cannot prompt for a code.
    #[command(subcommand)]
    Ticket(ticket::TicketCmd),
    /// Store target credentials, encrypted with the master key.
    #[command(subcommand)]
    Secret(secret::SecretCmd),
    /// Check, explain and query per-system policies.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Read a target's identities (SSH host key, RDP certificate) to pin in policy.
    #[command(subcommand)]
    Target(target::TargetCmd),
    /// Work requests (作業申請): file, approve, reject, withdraw, revoke.
    #[command(subcommand)]
    Request(request::RequestCmd),
    /// Reports from what sekisho recorded: work reports (作業報告) and
    /// monthly usage reports (月次利用報告), as CSV or PDF.
    #[command(subcommand)]
    Report(report::ReportCmd),
    /// Documents on file: contract copies and engineers' pledges (誓約書).
    #[command(subcommand)]
    Document(document::DocumentCmd),
    /// Read the audit log.
    Audit(audit::AuditArgs),
    /// List and stop live sessions.
    #[command(subcommand)]
    Sessions(sessions::SessionsCmd),
    /// Emergency stop (緊急停止): end every live session of a system, a
    /// vendor or everything, and refuse new ones until lifted.
    #[command(subcommand)]
    Stop(stop::StopCmd),
    /// Play a recorded terminal session.
    Replay(replay::ReplayArgs),
    /// Export a recording (asciicast, keystrokes, png, mp4).
    Export(export::ExportArgs),
    /// Verify a recording's hash chain and signature.
    Verify(verify::VerifyArgs),
}

impl Command {
    /// Commands that write to sockets or to child processes' pipes keep
    /// SIGPIPE ignored and handle the error themselves (`serve` must not die
    /// with a client; `export` reports ffmpeg's failure and cleans up).
    pub fn handles_broken_pipes(&self) -> bool {
        matches!(self, Command::Serve(_) | Command::Export(_))
    }
}

/// Whether an error comes from writing to a reader that went away.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => init::run(g, a).await,
        Command::Serve(a) => serve::run(g, a).await,
        Command::Cert(a) => cert::run(g, a).await,
        Command::User(a) => user::run_user(g, a).await,
        Command::Vendor(a) => user::run_vendor(g, a).await,
        Command::Ticket(a) => ticket::run(g, a).await,
        Command::Secret(a) => secret::run(g, a).await,
        Command::Policy(a) => policy::run(g, a).await,
        Command::Target(a) => target::run(g, a).await,
        Command::Request(a) => request::run(g, a).await,
        Command::Report(a) => report::run(g, a).await,
        Command::Document(a) => document::run(g, a).await,
        Command::Audit(a) => audit::run(g, a).await,
        Command::Sessions(a) => sessions::run(g, a).await,
        Command::Stop(a) => stop::run(g, a).await,
        Command::Replay(a) => replay::run(g, a).await,
        Command::Export(a) => export::run(g, a).await,
        Command::Verify(a) => verify::run(g, a).await,
    }
}

/// Loads the configuration named by `--config`, with a hint when it is missing.
pub fn load_config(g: &Global) -> anyhow::Result<Config> {
    if !g.config.exists() {
        anyhow::bail!(
            "no configuration at {} (run `sekisho init` first, or pass --config FILE)",
            g.config.display()
        );
    }
    Config::load(&g.config).with_context(|| format!("loading {}", g.config.display()))
}

/// Opens the configuration's existing database (with its password from
/// `[database] password_file` or the environment). Only `init` creates one.
pub async fn open_store(cfg: &Config) -> anyhow::Result<crate::store::Store> {
    let password = cfg.database_password()?;
    crate::store::Store::open(&cfg.database_url, password.as_deref().map(String::as_str))
        .await
        .with_context(|| {
            format!(
                "opening the database {}",
                crate::store::redact_url(&cfg.database_url)
            )
        })
}

/// The secret-store master key named by the configuration (it also seals
/// TOTP secrets and RDP tickets).
pub fn master_key(cfg: &Config) -> anyhow::Result<crate::auth::secrets::MasterKey> {
    let path = cfg.paths.master_key();
    crate::auth::secrets::load_master_key(&path).with_context(|| {
        format!(
            "loading the secret-store master key {} (written by `sekisho init`)",
            path.display()
        )
    })
}

/// Reads one line from standard input (a password or secret), without its
/// line ending. Empty input is an error: an empty password is never meant.
pub fn read_secret_line() -> anyhow::Result<zeroize::Zeroizing<String>> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .context("reading standard input")?;
    let trimmed = line.trim_end_matches(['\r', '\n']);
    if trimmed.is_empty() {
        anyhow::bail!("standard input was empty");
    }
    Ok(zeroize::Zeroizing::new(trimmed.to_string()))
}

/// The archive of a session: a file path as given, or the session id looked
/// up under the configured recordings directory.
pub fn archive_path(g: &Global, session: &str) -> anyhow::Result<PathBuf> {
    let as_file = std::path::Path::new(session);
    if as_file.is_file() {
        return Ok(as_file.to_path_buf());
    }
    let cfg = load_config(g)?;
    verify::find_session(&cfg.paths.recordings, session)
}
