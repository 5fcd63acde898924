//! The procedure end to end, against the real binary: a work request is
//! filed and approved in two steps with `sekisho request`, and only then does
//! a real OpenSSH session pass through `sekisho serve` to the test sshd;
//! outside the window, or for an engineer the request does not name, the
//! bastion refuses with the rule `no_approved_request`; revoking the request
//! ends a live session at once with the reason shown to the client.

use crate::support::deployment::{Deployment, PASSWORD, ok, read, wait_until};

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};

/// The two-step route: any approver first, then kimura.
const APPROVAL: &str =
    "\n[approval]\nrequired = true\nsteps = [[\"role:approver\"], [\"kimura\"]]\n";

fn env() -> &'static Deployment {
    static D: OnceLock<Deployment> = OnceLock::new();
    D.get_or_init(|| {
        let d = start_with_approval("sekisho-procedure");
        // Approval needs acme's contract copy and each engineer's pledge on file.
        file_documents(&d, &["tanaka", "suzuki", "sato", "kato"]);
        d
    })
}

/// A deployment whose system `lab` requires the two-step approval, with
/// the approvers yoshida (by the approver role) and kimura (an admin,
/// named for step 2).
pub fn start_with_approval(prefix: &str) -> Deployment {
    let d = Deployment::start(Path::new(env!("CARGO_BIN_EXE_sekisho")), prefix);
    for (name, role) in [("yoshida", "approver"), ("kimura", "admin")] {
        ok(d.sekisho(&["user", "add", name, "--role", role], None));
    }
    // The system now requires an approved request; serve reloads the file.
    let policy = d.dir.join("policies/lab.toml");
    let text = read(&policy).replacen(
        "zone = \"lgwan\"\n",
        &format!("zone = \"lgwan\"\n{APPROVAL}"),
        1,
    );
    std::fs::write(&policy, text).expect("write the policy");
    let reloaded = wait_until(Duration::from_secs(15), || {
        audit(&d, "policy_reload").contains("file change")
    });
    assert!(
        reloaded,
        "policy not reloaded: {}",
        read(&d.dir.join("serve.log"))
    );
    d
}

/// Puts acme's contract copy and the pledges of `engineers` on file (small
/// PDFs), in force for this year and the next.
pub fn file_documents(d: &Deployment, engineers: &[&str]) {
    let year = chrono::Datelike::year(&Utc::now());
    let (from, until) = (format!("{year}-01-01"), format!("{}-12-31", year + 1));
    let pdf = d.dir.join("scan.pdf");
    std::fs::write(&pdf, b"%PDF-1.4\n% signed and scanned\n").expect("write the scan");
    let pdf = pdf.to_str().expect("utf-8 path");
    ok(d.sekisho(
        &[
            "document",
            "add",
            "--kind",
            "contract",
            "--vendor",
            "acme",
            "--valid-from",
            &from,
            "--valid-until",
            &until,
            pdf,
        ],
        None,
    ));
    for e in engineers {
        ok(d.sekisho(
            &[
                "document",
                "add",
                "--kind",
                "pledge",
                "--user",
                e,
                "--valid-from",
                &from,
                "--valid-until",
                &until,
                pdf,
            ],
            None,
        ));
    }
}

fn sekisho(args: &[&str]) -> Output {
    env().sekisho(args, None)
}

pub fn audit(d: &Deployment, kind: &str) -> String {
    ok(d.sekisho(&["audit", "--kind", kind, "--json"], None))
}

pub fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `request new … --submit` as `requester`; the request number.
fn file_request(
    requester: &str,
    engineers: &str,
    from: &str,
    until: &str,
    purpose: &str,
) -> String {
    let out = ok(sekisho(&[
        "request",
        "new",
        "--as",
        requester,
        "--target",
        "db01",
        "--protocol",
        "ssh",
        "--engineer",
        engineers,
        "--from",
        from,
        "--until",
        until,
        "--purpose",
        purpose,
        "--work",
        "ログの確認と再起動",
        "--submit",
    ]));
    let number = out.lines().next().unwrap_or_default().trim().to_string();
    assert!(number.starts_with("R-"), "{out}");
    assert!(out.contains("state:      submitted"), "{out}");
    number
}

/// `ssh user@db01 CMD` from `from` (each test its own address, so sign-in
/// windows do not mix).
fn ssh(user: &str, from: &str, cmd: &str) -> Output {
    env()
        .ssh(
            &format!("{user}@db01"),
            from,
            PASSWORD,
            &env().code(user),
            &[cmd],
        )
        .output()
        .expect("run ssh")
}

fn denied_for_no_request(out: &Output, user: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{user} got through: {stderr}");
    assert!(
        stderr.contains("requires an approved work request"),
        "reason not shown to {user}: {stderr}"
    );
    let denials = audit(env(), "deny");
    assert!(
        denials
            .lines()
            .any(|l| l.contains("no_approved_request")
                && l.contains(&format!("\"user\":\"{user}\""))),
        "no audited no_approved_request denial for {user}: {denials}"
    );
}

#[test]
fn two_step_approval_opens_the_window_and_revoking_ends_the_session() {
    let e = env();
    let now = Utc::now();
    // Without any request: refused.
    let out = ssh("tanaka", "127.0.0.71", "echo nothing");
    denied_for_no_request(&out, "tanaka");

    // tanaka files for himself and suzuki; the window began a minute ago.
    let number = file_request(
        "tanaka",
        "tanaka,suzuki",
        &rfc3339(now - chrono::Duration::minutes(1)),
        &rfc3339(now + chrono::Duration::minutes(30)),
        "障害調査",
    );

    // Submitted is not approved: still refused.
    let out = ssh("tanaka", "127.0.0.71", "echo nothing");
    denied_for_no_request(&out, "tanaka");

    // The requester cannot approve; kimura is step 2 only; yoshida approves step 1.
    let own = sekisho(&["request", "approve", &number, "--as", "tanaka"]);
    assert!(!own.status.success());
    let early = sekisho(&["request", "approve", &number, "--as", "kimura"]);
    assert!(!early.status.success());
    assert!(
        crate::support::cli::text(&early).contains("step 1"),
        "{}",
        crate::support::cli::text(&early)
    );
    let step1 = ok(sekisho(&[
        "request",
        "approve",
        &number,
        "--as",
        "yoshida",
        "--comment",
        "課内確認済",
    ]));
    assert!(step1.contains("step 1 of 2 approved"), "{step1}");
    // yoshida cannot approve the second step too.
    assert!(
        !sekisho(&["request", "approve", &number, "--as", "yoshida"])
            .status
            .success()
    );
    let out = ssh("tanaka", "127.0.0.71", "echo nothing");
    denied_for_no_request(&out, "tanaka");
    let step2 = ok(sekisho(&["request", "approve", &number, "--as", "kimura"]));
    assert!(step2.contains("approved"), "{step2}");
    assert!(step2.contains("only the rest"), "approved late: {step2}");

    // Inside the window, a real session passes, under the request.
    let out = ssh("tanaka", "127.0.0.71", "echo inside-the-window");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("inside-the-window"));
    let allows = audit(e, "allow");
    assert!(
        allows
            .lines()
            .any(|l| l.contains("\"user\":\"tanaka\"") && l.contains(&number)),
        "the allow names no request: {allows}"
    );
    let shown = ok(sekisho(&["request", "show", &number]));
    assert!(shown.contains("state:      active"), "{shown}");
    assert!(shown.contains("approved by yoshida"), "{shown}");
    assert!(shown.contains("approved by kimura"), "{shown}");

    // ito is not named in the request: refused.
    let out = ssh("ito", "127.0.0.72", "echo nothing");
    denied_for_no_request(&out, "ito");

    // suzuki works; an approver revokes; the session ends with the reason.
    let mut child = env()
        .ssh(
            "suzuki@db01",
            "127.0.0.73",
            PASSWORD,
            &env().code("suzuki"),
            &["sleep 60"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    let id = e
        .install()
        .live_session_id("suzuki", Duration::from_secs(15))
        .unwrap_or_default();
    assert!(
        !id.is_empty(),
        "no live session: {}",
        read(&e.dir.join("serve.log"))
    );
    let revoke = ok(sekisho(&[
        "request",
        "revoke",
        &number,
        "--as",
        "yoshida",
        "--reason",
        "作業中止の指示",
    ]));
    assert!(revoke.contains(&format!("session {id} ended")), "{revoke}");
    let ended = wait_until(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(ended, "ssh still running after the revocation");
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("work request {number} was revoked"))
            && stderr.contains("作業中止の指示"),
        "reason not shown: {stderr}"
    );
    let revoked = audit(e, "request_revoked");
    assert!(
        revoked.contains(&number) && revoked.contains("yoshida"),
        "{revoked}"
    );
    // And the door is shut again.
    let out = ssh("tanaka", "127.0.0.71", "echo nothing");
    denied_for_no_request(&out, "tanaka");

    // The work report draft lists both sessions, the command run, the kill
    // and each archive's digest, as CSV for Excel (UTF-8 with BOM).
    let csv = e.dir.join("report.csv");
    ok(sekisho(&[
        "report",
        "work",
        &number,
        "--format",
        "csv",
        "-o",
        csv.to_str().expect("utf-8 path"),
    ]));
    let bytes = std::fs::read(&csv).expect("the report");
    assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "no BOM");
    let text = String::from_utf8(bytes[3..].to_vec()).expect("UTF-8");
    assert!(
        text.contains("作業報告") && text.contains(&format!("作業申請番号,{number}")),
        "{text}"
    );
    assert!(text.contains("目的,障害調査"), "{text}");
    assert!(
        text.contains(",コマンド,echo inside-the-window\r\n"),
        "{text}"
    );
    let killed = text
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("suzuki's session missing: {text}"));
    assert!(
        killed.contains(",suzuki,db01,ssh,") && killed.contains(",killed,"),
        "{killed}"
    );
    assert!(
        killed.contains("was revoked") && killed.contains(",yoshida,"),
        "{killed}"
    );
    let tanaka = text
        .lines()
        .find(|l| l.contains(",tanaka,db01,ssh,"))
        .unwrap_or_else(|| panic!("tanaka's session missing: {text}"));
    assert!(
        tanaka
            .split(',')
            .any(|c| c.len() == 64 && c.chars().all(|x| x.is_ascii_hexdigit())),
        "no archive digest: {tanaka}"
    );
}

#[test]
fn an_approved_window_that_has_not_started_is_refused() {
    let now = Utc::now();
    let number = file_request(
        "sato",
        "sato",
        &rfc3339(now + chrono::Duration::hours(2)),
        &rfc3339(now + chrono::Duration::hours(3)),
        "定期保守",
    );
    ok(sekisho(&["request", "approve", &number, "--as", "yoshida"]));
    ok(sekisho(&["request", "approve", &number, "--as", "kimura"]));
    let out = ssh("sato", "127.0.0.74", "echo too-early");
    denied_for_no_request(&out, "sato");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("opens at"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `policy explain` says which request and why it does not allow.
    let explain = sekisho(&[
        "policy",
        "explain",
        "--user",
        "sato",
        "--target",
        "db01",
        "--protocol",
        "ssh",
    ]);
    let text = crate::support::cli::text(&explain);
    assert!(!explain.status.success(), "{text}");
    assert!(
        text.contains("no_approved_request") && text.contains(&number),
        "{text}"
    );
    // The requester withdraws it; it is listed as withdrawn.
    ok(sekisho(&[
        "request", "withdraw", &number, "--as", "sato", "--reason", "延期",
    ]));
    let list = ok(sekisho(&["request", "list", "--state", "withdrawn"]));
    assert!(list.contains(&number), "{list}");
}

#[test]
fn an_emergency_opens_with_one_step_and_is_marked() {
    let now = Utc::now();
    let out = ok(sekisho(&[
        "request",
        "new",
        "--as",
        "kato",
        "--target",
        "db01",
        "--protocol",
        "ssh",
        "--engineer",
        "kato",
        "--from",
        &rfc3339(now),
        "--until",
        &rfc3339(now + chrono::Duration::minutes(20)),
        "--purpose",
        "緊急障害対応",
        "--work",
        "サービス再起動",
        "--emergency",
        "--submit",
    ]));
    let number = out.lines().next().unwrap_or_default().trim().to_string();
    assert!(out.contains("EMERGENCY"), "{out}");
    let approved = ok(sekisho(&["request", "approve", &number, "--as", "kimura"]));
    assert!(approved.contains("approved (EMERGENCY)"), "{approved}");
    let events = audit(env(), "request_approved");
    assert!(
        events
            .lines()
            .any(|l| l.contains(&number) && l.contains("\"emergency\":true")),
        "{events}"
    );
}
