//! A real deployment with the web console on: `sekisho serve` with `[web]`
//! on a free loopback port, the engineers of [`Deployment`] plus auditors
//! and admins, and one recorded SSH session (by `suzuki`, typing Japanese)
//! made through sekisho with the OpenSSH client to a real sshd.
//!
//! A code is accepted once per person per 30-s step, so each test signs in
//! as people of its own (listed at [`AUDITORS`] and [`ADMINS`]).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::deployment::{self, Deployment, PASSWORD, ok};
use super::process::wait_until;
use super::totp;

/// Auditors the fixture creates (one per test that signs in as one).
pub const AUDITORS: [&str; 4] = ["kansa", "kansa2", "kansa3", "kansa4"];
/// Admins the fixture creates.
pub const ADMINS: [&str; 3] = ["kanri", "kanri2", "kanri3"];
/// What `suzuki` types in the recorded session.
pub const TYPED: &str = "echo 日本語テスト-sekisho";
/// `[web] idle_timeout` of the fixture.
pub const IDLE: Duration = Duration::from_secs(20);

pub struct ConsoleEnv {
    pub d: Deployment,
    pub web_port: u16,
    /// TOTP keys of the auditors and admins.
    totp: HashMap<String, Vec<u8>>,
    /// The recorded session of `suzuki`.
    pub session: String,
}

impl ConsoleEnv {
    pub fn start(prefix: &str) -> ConsoleEnv {
        let web_port = super::free_port();
        let d = Deployment::start_with(
            &super::cli::bin(),
            prefix,
            &format!(
                "[web]\nenabled = true\nlisten = \"127.0.0.1:{web_port}\"\nidle_timeout = \"{}s\"\n",
                IDLE.as_secs()
            ),
        );
        let up = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", web_port)).is_ok()
        });
        assert!(
            up,
            "the console did not listen: {}",
            deployment::read(&d.dir.join("serve.log"))
        );
        let mut keys = HashMap::new();
        for (users, role) in [(&AUDITORS[..], "auditor"), (&ADMINS[..], "admin")] {
            for user in users {
                let out = ok(d.sekisho(
                    &["user", "add", user, "--role", role, "--password-stdin"],
                    Some(&format!("{PASSWORD}\n")),
                ));
                keys.insert(user.to_string(), totp::key_from_user_add(&out));
            }
        }
        // One recorded session, typing Japanese.
        let out = d
            .ssh(
                "suzuki@db01",
                "127.0.0.1",
                PASSWORD,
                &d.code("suzuki"),
                &[TYPED],
            )
            .output()
            .expect("run ssh");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("日本語テスト-sekisho"),
            "ssh through sekisho: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut session = String::new();
        assert!(wait_until(Duration::from_secs(30), || {
            let events = ok(d.sekisho(
                &[
                    "audit",
                    "--json",
                    "--kind",
                    "session_end",
                    "--user",
                    "suzuki",
                ],
                None,
            ));
            session = events
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find_map(|v| v["session"].as_str().map(str::to_string))
                .unwrap_or_default();
            !session.is_empty()
        }));
        ConsoleEnv {
            d,
            web_port,
            totp: keys,
            session,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.web_port)
    }

    /// The certificate `init` made, which the console serves.
    pub fn cert_pem(&self) -> Vec<u8> {
        std::fs::read(self.d.dir.join("keys/rdp_tls_cert.pem")).expect("init's certificate")
    }

    /// The code of `user` for the current 30-s step, plus `ahead` steps
    /// (a code one step ahead is accepted: clocks drift).
    pub fn code_ahead(&self, user: &str, ahead: i64) -> String {
        match self.totp.get(user) {
            Some(key) => totp::code_ahead(key, ahead),
            None => self.d.code_ahead(user, ahead),
        }
    }

    pub fn code(&self, user: &str) -> String {
        self.code_ahead(user, 0)
    }

    pub fn dir(&self) -> &Path {
        &self.d.dir
    }

    /// The archive of the recorded session.
    pub fn archive(&self) -> PathBuf {
        find(&self.d.dir.join("recordings"), &self.session).expect("the session's archive")
    }
}

fn find(dir: &Path, id: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        if p.is_dir() {
            if let Some(f) = find(&p, id) {
                return Some(f);
            }
        } else if p.file_stem().is_some_and(|s| s == id) {
            return Some(p);
        }
    }
    None
}
