//! `sekisho init [--dir DIR]`: everything a bastion needs before its first
//! `serve` — config, keys, database, first admin. Idempotent: whatever already
//! exists is kept and reported, never overwritten.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::Global;
use crate::config::{Config, DEFAULT_FILE};

const CONFIG_TEMPLATE: &str = include_str!("sekisho.toml.in");

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Directory to set up (created if missing). Defaults to the directory of --config.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Name of the first administrator.
    #[arg(long, default_value = "admin")]
    pub admin: String,
    /// Read the first administrator's password from standard input instead of generating one.
    #[arg(long)]
    pub password_stdin: bool,
}

pub async fn run(g: &Global, a: InitArgs) -> anyhow::Result<ExitCode> {
    let (dir, config_file) = match &a.dir {
        Some(d) => (d.clone(), d.join(DEFAULT_FILE)),
        None => {
            let parent = g
                .config
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            (parent.to_path_buf(), g.config.clone())
        }
    };
    // The mode is explicit so that no umask (even 000) leaves the directory
    // writable by group or others: whoever can write here could swap the
    // configuration or the policies.
    make_dir(&dir, 0o755)?;

    let mut report = Report::default();
    if write_new(&config_file, CONFIG_TEMPLATE.as_bytes(), 0o644)? {
        report.created(&config_file, "configuration");
    } else {
        report.kept(&config_file, "configuration");
    }
    let cfg =
        Config::load(&config_file).with_context(|| format!("reading {}", config_file.display()))?;

    make_dir(&cfg.paths.keys, 0o700)?;
    make_dir(&cfg.paths.recordings, 0o750)?;
    make_dir(&cfg.paths.policies, 0o755)?;

    // SSH host key.
    let host_key = cfg.paths.ssh_host_key();
    if host_key.exists() {
        report.kept(&host_key, "SSH host key");
    } else {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
        let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
        let key = russh::keys::PrivateKey::from(pair);
        let pem = key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .context("encoding the SSH host key")?;
        write_new(&host_key, pem.as_bytes(), 0o600)?;
        report.created(&host_key, "SSH host key");
        report.note(format!(
            "SSH host key fingerprint: {}",
            key.public_key().fingerprint(russh::keys::HashAlg::Sha256)
        ));
    }

    // TLS certificate and key of the RDP front.
    let (cert_path, key_path) = (cfg.rdp.cert.clone(), cfg.rdp.key.clone());
    if cert_path.exists() || key_path.exists() {
        report.kept(&cert_path, "RDP TLS certificate");
        if let Ok(pin) = super::cert::pin_of(&cert_path) {
            report.note(format!("RDP certificate SHA-256: {pin}"));
        }
    } else {
        let made = super::cert::generate(&cfg)?;
        write_new(&key_path, made.key_pem.as_bytes(), 0o600)?;
        if let Err(e) = write_new(&cert_path, made.cert_pem.as_bytes(), 0o600) {
            let _ = std::fs::remove_file(&key_path);
            return Err(e);
        }
        report.created(&cert_path, "RDP TLS certificate");
        report.note(format!(
            "{}, CN={}, valid {} days (renew: `sekisho cert renew`)",
            cfg.rdp.cert_key.as_str(),
            cfg.rdp.host_name,
            super::cert::VALIDITY_DAYS
        ));
        report.note(format!("RDP certificate SHA-256: {}", made.pin));
        report.note("(the pin users compare when their client asks about the certificate)".into());
    }

    // Archive-signing key.
    let signing = cfg.paths.archive_signing_key();
    if signing.exists() {
        report.kept(&signing, "archive signing key");
    } else {
        crate::recording::generate_signing_key(&signing)
            .with_context(|| format!("writing {}", signing.display()))?;
        report.created(&signing, "archive signing key");
    }

    // Secret-store master key.
    let master = cfg.paths.master_key();
    if master.exists() {
        report.kept(&master, "secret-store master key");
    } else {
        crate::auth::secrets::generate_master_key(&master)
            .with_context(|| format!("writing {}", master.display()))?;
        report.created(&master, "secret-store master key");
    }

    // Database and migrations.
    let password = cfg.database_password()?;
    let store =
        crate::store::Store::create(&cfg.database_url, password.as_deref().map(String::as_str))
            .await
            .with_context(|| {
                format!(
                    "opening the database {}",
                    crate::store::redact_url(&cfg.database_url)
                )
            })?;
    report.note(format!(
        "database ready: {}",
        crate::store::redact_url(&cfg.database_url)
    ));

    // First administrator.
    let existing_admins = store
        .users()
        .await
        .context("listing users")?
        .into_iter()
        .filter(|u| u.role == crate::auth::Role::Admin)
        .map(|u| u.name)
        .collect::<Vec<_>>();
    let mut new_admin = None;
    if !existing_admins.is_empty() {
        report.note(format!(
            "administrator already exists ({}); none created",
            existing_admins.join(", ")
        ));
    } else {
        let password = if a.password_stdin {
            Some(super::read_secret_line().context("reading the password")?)
        } else {
            None
        };
        // create_user audits the creation itself.
        let key = super::master_key(&cfg)?;
        let created = crate::auth::create_user(
            &store,
            &key,
            &a.admin,
            crate::auth::Role::Admin,
            None,
            password.as_deref().map(|p| p.as_str()),
        )
        .await
        .with_context(|| format!("creating administrator {}", a.admin))?;
        new_admin = Some(created);
    }

    report.print();
    if let Some(created) = new_admin {
        println!();
        println!("Administrator: {}", a.admin);
        if let Some(pw) = &created.password {
            println!("  password:    {}", pw.as_str());
        }
        println!("  TOTP secret: {}", created.totp_secret_base32);
        println!("  TOTP URI:    {}", created.otpauth_uri);
        println!("Store these now; they are not shown again.");
    }
    println!();
    println!(
        "Next: put policies in {} and run `sekisho serve --config {}`",
        cfg.paths.policies.display(),
        config_file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` with `mode` only if it does not exist. Returns false when it
/// already existed (and leaves it untouched).
fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<bool> {
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    };
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(e) = written {
        // Leave nothing half-written behind.
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(true)
}

fn make_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

#[derive(Default)]
struct Report {
    lines: Vec<String>,
}

impl Report {
    fn created(&mut self, path: &Path, what: &str) {
        self.lines
            .push(format!("created  {what}: {}", path.display()));
    }
    fn kept(&mut self, path: &Path, what: &str) {
        self.lines
            .push(format!("exists   {what}: {} (kept)", path.display()));
    }
    fn note(&mut self, line: String) {
        self.lines.push(format!("         {line}"));
    }
    fn print(&self) {
        for l in &self.lines {
            println!("{l}");
        }
    }
}
