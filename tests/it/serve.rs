//! `sekisho serve` as a process: policy reload on file change and SIGHUP
//! (a broken set is refused and the old one stays), JSON logs, and a clean
//! stop on SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sekisho"))
}

fn sekisho(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--config")
        .arg(dir.join("sekisho.toml"))
        .args(args)
        .env_remove("SEKISHO_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run sekisho")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

const POLICY: &str = r#"
[system]
name = "lab"
zone = "lgwan"

[[target]]
name = "web01"
address = "127.0.0.1"
kind = "virtual"
ssh = { port = 22, account = "maint", credential = "web01-maint", host_key = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }

[[access]]
vendor = "acme"
users = ["tanaka"]
contract = { from = "2026-01-01", until = "2099-12-31" }
hours = "always"
max_session = "1h"
protocols = ["ssh"]
sources = ["lab"]
"#;

fn audit_kinds(dir: &Path) -> Vec<String> {
    let out = sekisho(dir, &["audit", "--json"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["kind"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn reloads_policies_refuses_a_broken_set_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let init = sekisho(d, &["init", "--dir", d.to_str().unwrap()]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let port = free_port();
    std::fs::write(
        d.join("sekisho.toml"),
        format!(
            "[ssh]\nlisten = \"127.0.0.1:{port}\"\n[rdp]\nenabled = false\n[log]\nformat = \"json\"\n\
             [[network]]\nname = \"lab\"\ncidrs = [\"127.0.0.0/8\"]\n"
        ),
    )
    .unwrap();
    let secret = Command::new(bin())
        .arg("--config")
        .arg(d.join("sekisho.toml"))
        .args(["secret", "set", "web01-maint"])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().expect("stdin").write_all(b"pw\n")?;
            c.wait()
        })
        .expect("secret set");
    assert!(secret.success());
    std::fs::write(d.join("policies/lab.toml"), POLICY).unwrap();

    let log_path = d.join("serve.log");
    let mut serve = Command::new(bin())
        .arg("--config")
        .arg(d.join("sekisho.toml"))
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("serve");
    let up = wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        up,
        "serve did not start: {}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );

    // A broken edit is refused, audited, and the old set stays in force.
    std::fs::write(
        d.join("policies/lab.toml"),
        POLICY.replace("hours = \"always\"", "hours = \"Mon-Fri 25:00-26:00\""),
    )
    .unwrap();
    let refused = wait_until(Duration::from_secs(30), || {
        audit_kinds(d).iter().any(|k| k == "policy_reload_refused")
    });
    assert!(refused, "broken policy not refused: {:?}", audit_kinds(d));
    let audit =
        String::from_utf8_lossy(&sekisho(d, &["audit", "--kind", "policy_reload_refused"]).stdout)
            .into_owned();
    assert!(
        audit.contains("lab.toml"),
        "the refusal names no file: {audit}"
    );

    // A good edit is taken up; so is a SIGHUP.
    std::fs::write(
        d.join("policies/lab.toml"),
        POLICY.replace("max_session = \"1h\"", "max_session = \"2h\""),
    )
    .unwrap();
    let reloaded = wait_until(Duration::from_secs(30), || {
        audit_kinds(d).iter().any(|k| k == "policy_reload")
    });
    assert!(reloaded, "good policy not reloaded: {:?}", audit_kinds(d));
    let before = audit_kinds(d)
        .iter()
        .filter(|k| *k == "policy_reload")
        .count();
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(serve.id() as i32, libc::SIGHUP) };
    let hup = wait_until(Duration::from_secs(30), || {
        audit_kinds(d)
            .iter()
            .filter(|k| *k == "policy_reload")
            .count()
            > before
    });
    assert!(hup, "SIGHUP did not reload");

    // SIGTERM: a clean stop with exit status 0.
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let mut status = None;
    let stopped = wait_until(Duration::from_secs(30), || {
        status = serve.try_wait().ok().flatten();
        status.is_some()
    });
    if !stopped {
        let _ = serve.kill();
    }
    assert!(stopped, "serve did not stop on SIGTERM");
    assert_eq!(status.and_then(|s| s.code()), Some(0));

    // Logs were JSON, one object per line.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log output");
    for l in &lines {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_ok(),
            "not JSON: {l}"
        );
    }
    assert!(
        log.contains("policy reload refused"),
        "refusal not logged: {log}"
    );
}

#[test]
fn serve_refuses_to_start_without_a_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = sekisho(dir.path(), &["serve"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sekisho init"), "{err}");
}
