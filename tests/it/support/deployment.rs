//! A real sekisho deployment for end-to-end tests and benchmarks:
//! `sekisho init`, the admin CLI (vendor, users, secret, policy), a real
//! OpenSSH sshd target, a real `sekisho serve` process, and the OpenSSH
//! client signing in with password + TOTP through `SSH_ASKPASS`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub use super::cli::ok;
use super::install::Install;
use super::process::Daemon;
pub use super::process::wait_until;
use super::{cli, sshd, totp};

/// Every user's password.
pub const PASSWORD: &str = "e2e-password-123";

/// The users the deployment creates (vendor `acme`). All but `kato` may
/// reach `db01`; `kato`'s contract has ended.
pub const USERS: [&str; 5] = ["tanaka", "suzuki", "ito", "kato", "sato"];

pub struct Deployment {
    /// The `sekisho` binary this deployment runs.
    pub bin: PathBuf,
    pub dir: PathBuf,
    /// sekisho's SSH listener on 127.0.0.1.
    pub ssh_port: u16,
    /// OpenSSH client config for connections to sekisho.
    pub ssh_config: PathBuf,
    pub askpass: PathBuf,
    /// TOTP keys by user.
    totp: Vec<(String, Vec<u8>)>,
    /// The pid of `sekisho serve`.
    pub serve_pid: u32,
    /// The target sshd (`db01`): its port, pinned host key, and the key
    /// sekisho injects (authorized for root).
    pub target: sshd::Sshd,
    _serve: Daemon,
    /// Removed last, after serve and the target are stopped.
    _tmp: tempfile::TempDir,
}

/// Runs `BIN --config DIR/sekisho.toml ARGS` with `stdin`.
pub fn sekisho(bin: &Path, dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    cli::run(bin, &dir.join("sekisho.toml"), args, stdin)
}

pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

impl Deployment {
    /// Initialises a deployment in a new temporary directory named
    /// `prefix…` and starts `bin serve` on a free 127.0.0.1 port.
    pub fn start(bin: &Path, prefix: &str) -> Deployment {
        Deployment::start_with(bin, prefix, "")
    }

    /// Like [`Deployment::start`], with `extra` appended to `sekisho.toml`
    /// (e.g. a `[web]` section).
    pub fn start_with(bin: &Path, prefix: &str, extra: &str) -> Deployment {
        sshd::require_all();
        assert!(
            bin.exists(),
            "{} is missing: build it with `cargo build --release --locked`",
            bin.display()
        );
        let bin = bin.to_path_buf();
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("tempdir");
        let (install, _) = Install::init(&bin, tmp.path());
        let dir = install.dir.clone();

        let target = sshd::Sshd::start(&dir);
        let ssh_port = sshd::free_port();
        install.write_config(&format!(
            r#"
[ssh]
listen = "127.0.0.1:{ssh_port}"
[rdp]
enabled = false
[auth]
failure_delay = "100ms"
signin_window = "10m"
[sessions]
idle_timeout = "0"
warn_before_end = "1m"
# The tests sign everyone in from loopback, many at once: the limits
# would take the whole suite for one flooding guesser.
[limits]
max_startups = "1000"
max_startups_per_source = 0
signin_attempts_per_minute = 0
[[network]]
name = "lab"
cidrs = ["127.0.0.0/8"]
{extra}
"#
        ));
        install.write_policy(&format!(
            r#"
[system]
name = "lab"
zone = "lgwan"

[[target]]
name = "db01"
address = "127.0.0.1"
kind = "virtual"
ssh = {{ port = {port}, account = "root", credential = "db01-root", host_key = "{fp}" }}

[[access]]
vendor = "acme"
users = ["tanaka", "suzuki", "ito", "sato"]
contract = {{ from = "2026-01-01", until = "2099-12-31" }}
hours = "always"
max_session = "2h"
protocols = ["ssh"]
sources = ["lab"]

[[access]]
vendor = "acme"
users = ["kato"]
contract = {{ from = "2025-04-01", until = "2026-03-31" }}
hours = "always"
max_session = "2h"
protocols = ["ssh"]
sources = ["lab"]
"#,
            port = target.port,
            fp = target.host_key_fingerprint
        ));

        let totp = install.people(&USERS, PASSWORD);
        install.secrets(&[("db01-root", &target.client_key_pem)]);
        install.check_policy();
        let serve = install.serve(
            &install.config(),
            "info",
            &dir.join("serve.log"),
            &[ssh_port],
        );
        let serve_pid = serve.child.id();

        let client = SshClient::setup(&dir, ssh_port);

        Deployment {
            bin,
            dir,
            ssh_port,
            ssh_config: client.ssh_config,
            askpass: client.askpass,
            totp,
            serve_pid,
            target,
            _serve: serve,
            _tmp: tmp,
        }
    }

    /// The installation behind the deployment, for its session helpers.
    pub fn install(&self) -> Install {
        Install {
            bin: self.bin.clone(),
            dir: self.dir.clone(),
        }
    }

    /// Runs an admin command against this deployment.
    pub fn sekisho(&self, args: &[&str], stdin: Option<&str>) -> Output {
        sekisho(&self.bin, &self.dir, args, stdin)
    }

    /// The current TOTP code of `user`.
    pub fn code(&self, user: &str) -> String {
        self.code_ahead(user, 0)
    }

    /// The TOTP code of `user` `steps` 30-s steps from now.
    pub fn code_ahead(&self, user: &str, steps: i64) -> String {
        let key = &self
            .totp
            .iter()
            .find(|(u, _)| u == user)
            .expect("known user")
            .1;
        totp::code_ahead(key, steps)
    }

    /// `ssh` (under `setsid -w`, answering prompts through askpass) to
    /// sekisho as `login` (`person@target`) from source address `from`.
    pub fn ssh(
        &self,
        login: &str,
        from: &str,
        password: &str,
        code: &str,
        remote: &[&str],
    ) -> Command {
        self.ssh_with(&[], login, from, password, code, remote)
    }

    /// Like [`Deployment::ssh`], with client options `opts` (such as `-tt`)
    /// before the destination.
    pub fn ssh_with(
        &self,
        opts: &[&str],
        login: &str,
        from: &str,
        password: &str,
        code: &str,
        remote: &[&str],
    ) -> Command {
        SshClient {
            port: self.ssh_port,
            ssh_config: self.ssh_config.clone(),
            askpass: self.askpass.clone(),
        }
        .command(opts, login, from, password, code, remote)
    }
}

/// The OpenSSH client's side of a deployment: a config file and an askpass
/// script that answers the password and code prompts, for sekisho's SSH
/// listener on 127.0.0.1:`port`.
pub struct SshClient {
    pub port: u16,
    pub ssh_config: PathBuf,
    pub askpass: PathBuf,
}

impl SshClient {
    /// Writes the client config and askpass script into `dir`.
    pub fn setup(dir: &Path, port: u16) -> SshClient {
        let askpass = dir.join("askpass.sh");
        std::fs::write(
            &askpass,
            "#!/bin/sh\ncase \"$1\" in\n  *ode*) printf '%s\\n' \"$E2E_CODE\" ;;\n  *) printf '%s\\n' \"$E2E_PASSWORD\" ;;\nesac\n",
        )
        .expect("askpass");
        chmod(&askpass, 0o755);
        let ssh_config = dir.join("ssh_config");
        std::fs::write(
            &ssh_config,
            "Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  \
             PubkeyAuthentication no\n  PreferredAuthentications password,keyboard-interactive\n  \
             NumberOfPasswordPrompts 1\n  ConnectTimeout 10\n",
        )
        .expect("ssh_config");
        SshClient {
            port,
            ssh_config,
            askpass,
        }
    }

    /// `ssh` (under `setsid -w`, answering prompts through askpass) to
    /// sekisho as `login` (`person@target`) from source address `from`,
    /// with client options `opts` before the destination.
    pub fn command(
        &self,
        opts: &[&str],
        login: &str,
        from: &str,
        password: &str,
        code: &str,
        remote: &[&str],
    ) -> Command {
        let mut c = Command::new("setsid");
        c.arg("-w")
            .arg("ssh")
            .arg("-F")
            .arg(&self.ssh_config)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-b")
            .arg(from)
            .args(opts)
            .arg(format!("{login}@127.0.0.1"))
            .args(remote)
            .env("SSH_ASKPASS", &self.askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("E2E_PASSWORD", password)
            .env("E2E_CODE", code)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("DISPLAY")
            .stdin(Stdio::null());
        c
    }
}
