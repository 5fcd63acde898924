//! A client that asks for the `ssh-userauth` service again before each
//! method: Python's paramiko (Debian's python3-paramiko) does. After the
//! password is accepted with partial success, it asks for the service once
//! more before answering the one-time code; sekisho (its patched russh,
//! vendor/russh) must answer, as OpenSSH does, or the client hangs until
//! its timeout. A client that gives up at the code is audited.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::gateway::{self, PASSWORD, audit_of, env, text};

/// paramiko's `Transport`: password, then keyboard-interactive with the
/// code (each preceded by a service request), then one command.
const CLIENT: &str = r#"
import socket, sys
import paramiko

port, source, login, password, code, mode = sys.argv[1:]
sock = socket.create_connection(("127.0.0.1", int(port)), timeout=20,
                                source_address=(source, 0))
t = paramiko.Transport(sock)
t.start_client(timeout=20)
# The password: partial success, the code is still needed.
allowed = t.auth_password(login, password)
print("after password:", ",".join(allowed), flush=True)
if mode == "give-up":
    t.close()
    sys.exit(0)
# paramiko sends SERVICE_REQUEST ssh-userauth again here.
t.auth_timeout = 20
left = t.auth_interactive(login, lambda title, instr, prompts: [code for _ in prompts])
print("signed in:", t.is_authenticated(), "left:", left, flush=True)
ch = t.open_session(timeout=20)
ch.exec_command("echo paramiko-through-sekisho")
out = ch.makefile("rb").read().decode()
print("output:", out.strip(), "exit:", ch.recv_exit_status(), flush=True)
t.close()
"#;

fn python() -> PathBuf {
    // Debian's python3-paramiko lives with Debian's python3 (.ci/install-peers).
    let python = PathBuf::from("/usr/bin/python3");
    let ok = Command::new(&python)
        .args(["-c", "import paramiko"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3-paramiko is missing: run .ci/install-peers (apt-get install python3-paramiko)"
    );
    python
}

fn paramiko(source: &str, person: &str, code: &str, mode: &str) -> std::process::Output {
    let e = env();
    let script = e.dir.join("paramiko_client.py");
    std::fs::write(&script, CLIENT).unwrap();
    Command::new("timeout")
        .arg("60")
        .arg(python())
        .arg(&script)
        .arg(e.port.to_string())
        .arg(source)
        .arg(format!("{person}@db01"))
        .arg(PASSWORD)
        .arg(code)
        .arg(mode)
        .output()
        .unwrap()
}

#[test]
fn paramiko_is_asked_for_the_code_and_signs_in() {
    let person = "noda";
    let started = std::time::Instant::now();
    let out = paramiko("127.0.0.1", person, &gateway::code(person), "sign-in");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "paramiko failed after {:?}:\n{stdout}\n{}\n{}",
        started.elapsed(),
        text(&out.stderr),
        std::fs::read_to_string(env().dir.join("sekisho.log")).unwrap_or_default()
    );
    assert!(
        stdout.contains("after password: keyboard-interactive"),
        "{stdout}"
    );
    assert!(stdout.contains("signed in: True left: []"), "{stdout}");
    assert!(
        stdout.contains("output: paramiko-through-sekisho exit: 0"),
        "{stdout}"
    );
    // The code was checked and accepted (not skipped by a window).
    let accepted = audit_of("signin_success", person);
    assert!(
        accepted
            .iter()
            .any(|ev| ev["data"]["method"] == "totp" && ev["source"] == "127.0.0.1"),
        "{accepted:#?}"
    );
}

#[test]
fn giving_up_at_the_code_is_audited() {
    let person = "abe";
    let out = paramiko("127.0.0.1", person, "000000", "give-up");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("after password: keyboard-interactive"),
        "{stdout}"
    );
    let mut abandoned = Vec::new();
    let seen = gateway::wait_until(Duration::from_secs(30), || {
        abandoned = audit_of("signin_failure", person)
            .into_iter()
            .filter(|ev| ev["data"]["reason"] == "abandoned at the one-time code")
            .collect();
        !abandoned.is_empty()
    });
    assert!(seen, "no abandoned sign-in audited for {person}");
    assert_eq!(abandoned.len(), 1, "{abandoned:#?}");
    assert_eq!(abandoned[0]["source"], "127.0.0.1");
    assert_eq!(abandoned[0]["protocol"], "ssh");
    // Giving up is not a wrong code: the account is not a step nearer lockout.
    let wrong: Vec<_> = audit_of("signin_failure", person)
        .into_iter()
        .filter(|ev| ev["data"]["reason"] == "wrong code")
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}
