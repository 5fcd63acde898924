//! Real OpenSSH peers for the gateway tests: an sshd target on 127.0.0.1
//! with its own config and host key, and helpers to run the OpenSSH client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::process::Daemon;

/// Fails (does not skip) when a tool is missing, naming the Debian package.
pub fn require(tool: &str, package: &str) -> PathBuf {
    let candidates = [
        PathBuf::from(tool),
        Path::new("/usr/bin").join(tool),
        Path::new("/usr/sbin").join(tool),
        Path::new("/bin").join(tool),
    ];
    for c in candidates {
        if c.is_absolute() && c.exists() {
            return c;
        }
    }
    panic!(
        "{tool} is missing: install the Debian package `{package}` (apt-get install -y {package})"
    );
}

/// Checks every tool the ssh suite uses.
pub fn require_all() {
    require("/usr/sbin/sshd", "openssh-server");
    require("ssh", "openssh-client");
    require("scp", "openssh-client");
    require("sftp", "openssh-client");
    require("ssh-keygen", "openssh-client");
    require("ssh-agent", "openssh-client");
    require("setsid", "util-linux");
}

pub use super::free_port;

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `ssh-keygen -t ed25519` into `path`; returns the public key line.
pub fn keygen(path: &Path) -> String {
    let _ = std::fs::remove_file(path);
    let out = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path));
    assert!(out.status.success(), "ssh-keygen failed: {out:?}");
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap_or_else(|e| panic!("no public key: {e}"))
}

/// `ssh-keygen -lf` fingerprint (`SHA256:…`) of a public key file.
pub fn fingerprint(pub_path: &Path) -> String {
    let out = run(Command::new("ssh-keygen").arg("-lf").arg(pub_path));
    assert!(out.status.success(), "ssh-keygen -l failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// An OpenSSH server acting as a maintenance target.
pub struct Sshd {
    pub port: u16,
    /// Its host key's `SHA256:` fingerprint (the pin).
    pub host_key_fingerprint: String,
    /// The private key sekisho injects (authorized for root).
    pub client_key_pem: String,
}

impl Sshd {
    /// Starts sshd in `dir` on 127.0.0.1 and waits until it answers.
    pub fn start(dir: &Path) -> Sshd {
        Sshd::start_on(dir, &["127.0.0.1"])
    }

    /// Starts sshd in `dir`, listening on one port at every address given
    /// (the first is where readiness is checked), and waits until it answers.
    /// Several addresses let one sshd stand for several policy targets.
    pub fn start_on(dir: &Path, addresses: &[&str]) -> Sshd {
        let sshd = require("/usr/sbin/sshd", "openssh-server");
        std::fs::create_dir_all("/run/sshd").unwrap_or_else(|e| panic!("/run/sshd: {e}"));
        let host_key = dir.join("target_host_key");
        keygen(&host_key);
        let client_key = dir.join("target_client_key");
        let client_pub = keygen(&client_key);
        let authorized = dir.join("target_authorized_keys");
        std::fs::write(&authorized, client_pub).unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        let listen: String = addresses
            .iter()
            .map(|a| format!("ListenAddress {a}\n"))
            .collect();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\n{listen}HostKey {hk}\nPidFile {dir}/sshd.pid\n\
                 UsePAM no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nAuthorizedKeysFile {ak}\nStrictModes no\n\
                 Subsystem sftp internal-sftp\nAllowTcpForwarding yes\nAllowAgentForwarding yes\n\
                 X11Forwarding yes\nAcceptEnv LANG LC_* SEKISHO_TEST_*\nLogLevel ERROR\n\
                 MaxSessions 20\nMaxStartups 50\n",
                hk = host_key.display(),
                dir = dir.display(),
                ak = authorized.display(),
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // Kept until the test binary exits: tests that follow share it.
        Daemon::spawn(
            "sshd",
            Command::new(sshd)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        )
        .keep_until_exit();
        for _ in 0..100 {
            let first = addresses.first().copied().unwrap_or("127.0.0.1");
            if std::net::TcpStream::connect((first, port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Sshd {
            port,
            host_key_fingerprint: fingerprint(&host_key.with_extension("pub")),
            client_key_pem: std::fs::read_to_string(&client_key).unwrap_or_else(|e| panic!("{e}")),
        }
    }
}

/// The local account sekisho signs in to with a password.
pub const MAINT_USER: &str = "sekisho-maint";
pub const MAINT_PASSWORD: &str = "Maint-Pass-4711";

/// Creates (idempotently) the password account on this machine.
pub fn ensure_maint_user() {
    let exists = run(Command::new("id").arg(MAINT_USER)).status.success();
    if !exists {
        let useradd = require("/usr/sbin/useradd", "passwd");
        let out = run(Command::new(useradd).args(["-m", "-s", "/bin/sh", MAINT_USER]));
        assert!(
            out.status.success(),
            "useradd failed (run the tests as root): {out:?}"
        );
    }
    let chpasswd = require("/usr/sbin/chpasswd", "passwd");
    let mut child = Command::new(chpasswd)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("chpasswd: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = writeln!(stdin, "{MAINT_USER}:{MAINT_PASSWORD}");
    }
    let status = child.wait().unwrap_or_else(|e| panic!("chpasswd: {e}"));
    assert!(status.success(), "chpasswd failed (run the tests as root)");
}
