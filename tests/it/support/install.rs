//! The one deployment builder: a sekisho installation made the way an admin
//! makes one, with the CLI (`init`, the config and a policy file, `vendor
//! add`, `user add` with the TOTP secret it prints, `secret set`, `policy
//! check`), and `sekisho serve` processes on it. The SSH, RDP and gateway
//! deployments differ only in the config, policy, people and secrets they
//! give it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::cli::{self, ok};
use super::process::{Daemon, wait_until};

/// The vendor every test person works for.
pub const VENDOR: &str = "acme";

/// A sekisho installation in `dir`, administered with `bin`.
pub struct Install {
    pub bin: PathBuf,
    pub dir: PathBuf,
}

impl Install {
    /// `BIN init --dir DIR`; with what `init` printed.
    pub fn init(bin: &Path, dir: &Path) -> (Install, String) {
        let install = Install {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
        };
        let dir_s = dir.to_str().expect("utf-8 directory");
        let out = install.admin(&["init", "--dir", dir_s], None);
        (install, out)
    }

    /// The installation's `sekisho.toml`.
    pub fn config(&self) -> PathBuf {
        self.dir.join("sekisho.toml")
    }

    /// `sekisho ARGS` with the installation's config.
    pub fn sekisho(&self, args: &[&str], stdin: Option<&str>) -> Output {
        cli::run(&self.bin, &self.config(), args, stdin)
    }

    /// [`Install::sekisho`] that must succeed: its output.
    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> String {
        ok(self.sekisho(args, stdin))
    }

    /// Writes `sekisho.toml`.
    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.config(), toml).expect("write sekisho.toml");
    }

    /// Writes the policy of the system `lab` (`policies/lab.toml`).
    pub fn write_policy(&self, toml: &str) {
        std::fs::write(self.dir.join("policies/lab.toml"), toml).expect("write the policy");
    }

    /// `vendor add` [`VENDOR`] and `user add` each of `people` (engineers,
    /// all with `password`): their TOTP keys.
    pub fn people(&self, people: &[&str], password: &str) -> Vec<(String, Vec<u8>)> {
        self.admin(&["vendor", "add", VENDOR], None);
        people
            .iter()
            .map(|person| {
                let out = self.admin(
                    &[
                        "user",
                        "add",
                        person,
                        "--role",
                        "engineer",
                        "--vendor",
                        VENDOR,
                        "--password-stdin",
                    ],
                    Some(&format!("{password}\n")),
                );
                (person.to_string(), super::totp::key_from_user_add(&out))
            })
            .collect()
    }

    /// `secret set NAME` for each (name, value).
    pub fn secrets<N: AsRef<str>, V: AsRef<str>>(&self, secrets: &[(N, V)]) {
        for (name, value) in secrets {
            self.admin(&["secret", "set", name.as_ref()], Some(value.as_ref()));
        }
    }

    /// `policy check` passes.
    pub fn check_policy(&self) {
        let check = self.admin(&["policy", "check"], None);
        assert!(check.contains("OK"), "{check}");
    }

    /// `sekisho serve` with `config` (`SEKISHO_LOG=log_filter`, its log in
    /// `log`), once it listens on each of `ports` on 127.0.0.1. Stopped
    /// with the returned guard.
    pub fn serve(&self, config: &Path, log_filter: &str, log: &Path, ports: &[u16]) -> Daemon {
        self.serve_with_open_files(config, log_filter, log, ports, None)
    }

    /// [`Install::serve`], with the open-file limit (soft and hard) set to
    /// `open_files` when given.
    pub fn serve_with_open_files(
        &self,
        config: &Path,
        log_filter: &str,
        log: &Path,
        ports: &[u16],
        open_files: Option<u64>,
    ) -> Daemon {
        let log_file =
            std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let mut command = Command::new(&self.bin);
        command
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("SEKISHO_LOG", log_filter)
            .env_remove("SEKISHO_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        if let Some(n) = open_files {
            use std::os::unix::process::CommandExt as _;
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit in the child before exec; async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let serve = Daemon::spawn("sekisho serve", &mut command);
        let up = wait_until(Duration::from_secs(30), || {
            ports
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        assert!(
            up,
            "sekisho serve ({}) did not listen on {ports:?}: {}",
            config.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        serve
    }

    /// `sessions list --json`: the live sessions.
    pub fn live_sessions(&self) -> Vec<serde_json::Value> {
        cli::json_lines(&self.admin(&["sessions", "list", "--json"], None))
    }

    /// The id of `user`'s live session, once listed (within `limit`).
    pub fn live_session_id(&self, user: &str, limit: Duration) -> Option<String> {
        let mut id = None;
        wait_until(limit, || {
            id = self
                .live_sessions()
                .into_iter()
                .find(|v| v["user"] == user)
                .map(|v| v["id"].as_str().unwrap_or_default().to_string());
            id.is_some()
        });
        id
    }

    /// `ticket issue`: a one-time ticket of `user` for `target` over
    /// `protocol` (the first line it prints).
    pub fn ticket(&self, user: &str, target: &str, protocol: &str) -> String {
        let issued = self.admin(
            &[
                "ticket",
                "issue",
                "--user",
                user,
                "--target",
                target,
                "--protocol",
                protocol,
            ],
            None,
        );
        issued
            .lines()
            .next()
            .expect("the ticket on the first line")
            .trim()
            .to_string()
    }

    /// The archive of `session` under the installation's `recordings/`.
    pub fn archive(&self, session: &str) -> Option<PathBuf> {
        find_archive(&self.dir.join("recordings"), session)
    }
}

/// The archive of `session` (a file named after it) below `root`.
pub fn find_archive(root: &Path, session: &str) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()? {
            let p = entry.ok()?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_stem()
                .is_some_and(|s| s.to_string_lossy() == session)
            {
                return Some(p);
            }
        }
    }
    None
}
