//! The SSH listener of a real `sekisho serve`: address from `sekisho.toml`,
//! host key made by `sekisho init`, a clean stop on SIGTERM, and a clear
//! error when the host key is missing.

use crate::support::{gateway, sshd};

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gateway::{ok, sekisho_with, text};

/// `sekisho init` in `dir`, then a config listening for SSH on `port`.
fn deployment(dir: &Path, port: u16) -> std::path::PathBuf {
    let config = dir.join("sekisho.toml");
    ok(sekisho_with(
        &config,
        &["init", "--dir", &dir.display().to_string()],
        None,
    ));
    std::fs::write(
        &config,
        format!("[ssh]\nlisten = \"127.0.0.1:{port}\"\n[rdp]\nenabled = false\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    config
}

#[test]
fn listens_where_the_config_says_with_the_init_host_key() {
    sshd::require("ssh-keyscan", "openssh-client");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let port = sshd::free_port();
    let config = deployment(dir.path(), port);
    let mut serve = gateway::spawn_serve(&config, port);

    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
    let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    let banner = text(buf.get(..n).unwrap_or(&[]));
    assert!(banner.starts_with("SSH-2.0-sekisho"), "{banner:?}");
    drop(s);

    // The key it presents is the one `sekisho init` wrote.
    let scan = Command::new("ssh-keyscan")
        // -T: its 5 s default is short for a debug build's key exchange
        // on a loaded machine.
        .args([
            "-T",
            "30",
            "-t",
            "ed25519",
            "-p",
            &port.to_string(),
            "127.0.0.1",
        ])
        .output()
        .unwrap_or_else(|e| panic!("ssh-keyscan: {e}"));
    let scanned = dir.path().join("scanned.pub");
    let line = text(&scan.stdout)
        .lines()
        .find(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    std::fs::write(&scanned, format!("{line}\n")).unwrap_or_else(|e| panic!("{e}"));
    let presented = sshd::fingerprint(&scanned);
    let written = sshd::fingerprint(&dir.path().join("keys/ssh_host_ed25519_key"));
    assert_eq!(presented, written);

    let status = gateway::terminate(&mut serve.child, Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn a_missing_host_key_says_to_run_init() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let port = sshd::free_port();
    let config = deployment(dir.path(), port);
    std::fs::remove_file(dir.path().join("keys/ssh_host_ed25519_key"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(gateway::bin())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env_remove("SEKISHO_CONFIG")
        .output()
        .unwrap_or_else(|e| panic!("sekisho serve: {e}"));
    assert!(!out.status.success(), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("ssh_host_ed25519_key") && err.contains("sekisho init"),
        "{err}"
    );
}
