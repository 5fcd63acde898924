//! The SSH gateway end to end: the real OpenSSH client → sekisho → a real
//! OpenSSH sshd, with the in-memory core of `support::fake_core`.
//! Needs the Debian packages openssh-server, openssh-client, util-linux.

mod support;

use std::time::{Duration, Instant};

use sekisho::ssh::core::{EndStatus, SessionEvent};
use support::{env, fake_core, ssh, text, wait_for, FAILURE_DELAY};

fn assert_denied_generic(out: &std::process::Output) {
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("Permission denied"), "stderr: {err}");
    assert!(!err.contains("sekisho:"), "a sign-in failure must not explain itself: {err}");
}

#[test]
fn password_and_code_then_exec_relays_output_and_exit_status() {
    let out = ssh("tanaka@db01")
        .remote("echo hello; echo oops >&2; exit 3")
        .output();
    assert_eq!(text(&out.stdout), "hello\n", "{out:?}");
    assert!(text(&out.stderr).contains("oops"), "{out:?}");
    assert_eq!(out.status.code(), Some(3));
    let audit = env().core.audit_lines();
    assert!(audit.iter().any(|l| l == "signin tanaka password ok"), "{audit:?}");
    assert!(audit.iter().any(|l| l == "signin tanaka code ok"), "{audit:?}");
}

#[test]
fn exec_exit_codes_are_relayed() {
    for code in [0, 1, 42] {
        let out = ssh("tanaka@db01").remote(&format!("exit {code}")).output();
        assert_eq!(out.status.code(), Some(code), "{out:?}");
    }
}

#[test]
fn key_and_code() {
    let out = ssh("tanaka@db01").with_key().remote("id -un").output();
    assert_eq!(text(&out.stdout), "root\n", "{out:?}");
    assert!(out.status.success());
    let audit = env().core.audit_lines();
    assert!(audit.iter().any(|l| l == "signin tanaka publickey ok"), "{audit:?}");
}

#[test]
fn key_with_wrong_code_is_refused() {
    let start = Instant::now();
    let out = ssh("tanaka@db01")
        .with_key()
        .code(&fake_core::wrong_code())
        .remote("true")
        .output();
    assert_denied_generic(&out);
    assert!(start.elapsed() >= FAILURE_DELAY, "failures must be slowed down");
}

#[test]
fn wrong_code_is_refused_without_saying_which_factor() {
    let start = Instant::now();
    let out = ssh("tanaka@db01")
        .code(&fake_core::wrong_code())
        .remote("true")
        .output();
    assert_denied_generic(&out);
    assert!(start.elapsed() >= FAILURE_DELAY);
    assert!(env().core.audit_lines().iter().any(|l| l == "signin tanaka code fail"));
}

#[test]
fn wrong_password_is_refused() {
    let start = Instant::now();
    let out = ssh("tanaka@db01").password("nope").remote("true").output();
    assert_denied_generic(&out);
    assert!(start.elapsed() >= FAILURE_DELAY);
}

#[test]
fn locked_user_is_refused_even_with_the_right_password() {
    let out = ssh("suzuki@db01")
        .password("suzuki-pass")
        .remote("true")
        .output();
    assert_denied_generic(&out);
}

#[test]
fn ticket_alone_signs_in_once() {
    env().core.add_ticket("tkt-7Q2M-XK4P", "tanaka", "db01");
    let out = ssh("tanaka@db01")
        .password("tkt-7Q2M-XK4P")
        .code("not-asked")
        .remote("echo via-ticket")
        .output();
    assert_eq!(text(&out.stdout), "via-ticket\n", "{out:?}");
    let again = ssh("tanaka@db01")
        .password("tkt-7Q2M-XK4P")
        .code("not-asked")
        .remote("echo via-ticket")
        .output();
    assert_denied_generic(&again);
}

#[test]
fn ticket_for_another_target_is_refused() {
    env().core.add_ticket("tkt-OTHER-1", "tanaka", "app01");
    let out = ssh("tanaka@db01")
        .password("tkt-OTHER-1")
        .code("not-asked")
        .remote("true")
        .output();
    assert_denied_generic(&out);
}

#[test]
fn sign_in_window_skips_the_code() {
    let first = ssh("ito@db01").password("ito-pass").remote("echo one").output();
    assert_eq!(text(&first.stdout), "one\n", "{first:?}");
    let second = ssh("ito@db01")
        .password("ito-pass")
        .code(&fake_core::wrong_code())
        .remote("echo two")
        .output();
    assert_eq!(text(&second.stdout), "two\n", "{second:?}");
}

#[test]
fn outside_hours_is_denied_with_the_reason() {
    let out = ssh("sato@db01").password("sato-pass").remote("true").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("sekisho: access denied: outside allowed hours (Mon-Fri 08:30-17:15)"),
        "{err}"
    );
    assert!(env().core.audit_lines().iter().any(|l| l.starts_with("denied sato db01")));
}

#[test]
fn outside_the_contract_is_denied_with_the_reason() {
    let out = ssh("kato@db01").password("kato-pass").remote("true").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("access denied: outside the maintenance contract"),
        "{out:?}"
    );
}

#[test]
fn unknown_target_is_denied() {
    let out = ssh("tanaka@nosuch").remote("true").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("no target named \"nosuch\""), "{out:?}");
}

#[test]
fn host_key_not_matching_the_pin_is_refused() {
    let out = ssh("tanaka@badpin").remote("echo should-not-run").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stdout).is_empty());
    let err = text(&out.stderr);
    assert!(err.contains("does not match the one pinned in policy"), "{err}");
    assert!(err.contains(&env().sshd.host_key_fingerprint), "{err}");
}

#[test]
fn no_recording_no_session() {
    let out = ssh("tanaka@norec").remote("echo should-not-run").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stdout).is_empty());
    assert!(text(&out.stderr).contains("cannot be recorded"), "{out:?}");
}
