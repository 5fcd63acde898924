//! sekisho as an operator runs it: `sekisho init`, the admin commands, and a
//! real `sekisho serve` process, reached by the OpenSSH client and relaying
//! to a real OpenSSH sshd. Nothing in-process, nothing faked: the store,
//! policy, secret store and recording archive are the real ones.

use crate::support::deployment;
use crate::support::install::find_archive;
use crate::support::sshd;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use deployment::{Deployment, PASSWORD, read, wait_until};

fn env() -> &'static Deployment {
    static D: OnceLock<Deployment> = OnceLock::new();
    D.get_or_init(|| Deployment::start(Path::new(env!("CARGO_BIN_EXE_sekisho")), "sekisho-e2e"))
}

fn sekisho(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    deployment::sekisho(&env().bin, dir, args, stdin)
}

fn ok(o: Output) -> String {
    deployment::ok(o)
}

/// The current TOTP code of `user`.
fn code(user: &str) -> String {
    env().code(user)
}

/// `ssh` through the bastion as `user@target` from source address `from`.
fn ssh(login: &str, from: &str, password: &str, code: &str, remote: &[&str]) -> Command {
    env().ssh(login, from, password, code, remote)
}

/// Signs `user` in once from `from` with a code, so that later connections
/// from that address ride the sign-in window. A code is accepted once per
/// 30-s step per user, so tests sharing a user must not each send one.
fn open_window(user: &str, from: &str) {
    static OPENED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
    let key = format!("{user} {from}");
    if opened.contains(&key) {
        return;
    }
    let out = run(ssh(
        &format!("{user}@db01"),
        from,
        PASSWORD,
        &code(user),
        &["true"],
    ));
    assert!(
        out.status.success(),
        "opening the sign-in window failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    opened.push(key);
}

fn run(mut c: Command) -> Output {
    c.output().expect("run ssh")
}

fn audit(kind: &str) -> String {
    ok(sekisho(&env().dir, &["audit", "--kind", kind], None))
}

#[test]
fn password_and_code_exec_relays_exit_status_and_is_recorded() {
    open_window("tanaka", "127.0.0.11");
    let out = run(ssh(
        "tanaka@db01",
        "127.0.0.11",
        PASSWORD,
        "000000",
        &["echo through-sekisho; echo to-stderr >&2; exit 3"],
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout={stdout} stderr={stderr}"
    );
    assert!(stdout.contains("through-sekisho"), "{stdout}");
    assert!(stderr.contains("to-stderr"), "{stderr}");

    // The session row is closed and names its sealed archive.
    let e = env();
    // The bastion closes the session row just after the client has gone.
    let mut list = String::new();
    let closed = wait_until(Duration::from_secs(30), || {
        list = ok(sekisho(
            &e.dir,
            &[
                "audit",
                "--kind",
                "session_end",
                "--user",
                "tanaka",
                "--json",
            ],
            None,
        ));
        !list.trim().is_empty()
    });
    assert!(closed, "no session_end event for tanaka");
    let line = list.lines().last().expect("a session_end event");
    let v: serde_json::Value = serde_json::from_str(line).expect("json");
    let session = v["session"].as_str().expect("session id").to_string();

    // The archive verifies as intact and holds what was shown.
    let verify = sekisho(&e.dir, &["verify", &session], None);
    let vt = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert_eq!(verify.status.code(), Some(0), "{vt}");
    let archive = find_archive(&e.dir.join("recordings"), &session).expect("archive file");
    let mut reader = sekisho::recording::Reader::open(&archive).expect("open archive");
    let mut stdout_bytes = Vec::new();
    let mut stderr_bytes = Vec::new();
    let mut exec = None;
    let mut exit = None;
    for ev in reader.events() {
        match ev.expect("event").event {
            sekisho::recording::Event::Output { stream, data, .. } => match stream {
                sekisho::recording::Stream::Stdout => stdout_bytes.extend_from_slice(&data),
                sekisho::recording::Stream::Stderr => stderr_bytes.extend_from_slice(&data),
            },
            sekisho::recording::Event::Exec { command, .. } => exec = Some(command),
            sekisho::recording::Event::ExitStatus { code, .. } => exit = Some(code),
            _ => {}
        }
    }
    assert_eq!(String::from_utf8_lossy(&stdout_bytes), stdout);
    assert_eq!(String::from_utf8_lossy(&stderr_bytes).trim(), "to-stderr");
    assert!(
        exec.is_some_and(|c| String::from_utf8_lossy(&c).contains("exit 3")),
        "exec command line not recorded"
    );
    assert_eq!(exit, Some(3));

    for kind in ["signin_success", "allow", "session_start", "session_end"] {
        assert!(audit(kind).contains("tanaka"), "no {kind} event for tanaka");
    }
}

#[test]
fn sign_in_window_spares_the_second_code_from_the_same_address_only() {
    let first = run(ssh(
        "suzuki@db01",
        "127.0.0.21",
        PASSWORD,
        &code("suzuki"),
        &["true"],
    ));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // Same address, a wrong code: the window makes the code unnecessary.
    let second = run(ssh(
        "suzuki@db01",
        "127.0.0.21",
        PASSWORD,
        "000000",
        &["echo again"],
    ));
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8_lossy(&second.stdout).contains("again"));
    // Another address: the code is needed, and a wrong one fails.
    let other = run(ssh(
        "suzuki@db01",
        "127.0.0.22",
        PASSWORD,
        "000000",
        &["true"],
    ));
    assert!(
        !other.status.success(),
        "a wrong code was accepted from a new address"
    );
}

#[test]
fn wrong_password_fails_without_saying_which_factor() {
    let out = run(ssh(
        "ito@db01",
        "127.0.0.31",
        "wrong-password",
        &code("ito"),
        &["true"],
    ));
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.to_lowercase().contains("password is wrong"),
        "{stderr}"
    );
    assert!(
        audit("signin_failure").contains("ito"),
        "failure not audited"
    );
}

#[test]
fn contract_ended_is_refused_with_the_reason() {
    let out = run(ssh(
        "kato@db01",
        "127.0.0.41",
        PASSWORD,
        &code("kato"),
        &["true"],
    ));
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("contract"), "reason not shown: {stderr}");
    assert!(audit("deny").contains("kato"), "deny not audited");
}

#[test]
fn sftp_is_refused_and_audited() {
    // tanaka's window from 127.0.0.11 may not be open yet; use a new address
    // and a code only if the window is not open (ito's code is unused here).
    let e = env();
    let mut c = Command::new("setsid");
    c.arg("-w")
        .arg("sftp")
        .arg("-F")
        .arg(&e.ssh_config)
        .arg("-P")
        .arg(e.ssh_port.to_string())
        .arg("-o")
        .arg("BindAddress=127.0.0.51")
        .arg("sato@db01@127.0.0.1")
        .env("SSH_ASKPASS", &e.askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("E2E_PASSWORD", PASSWORD)
        .env("E2E_CODE", code("sato"))
        .stdin(Stdio::null());
    let out = run(c);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "sftp went through: {stderr}");
    let blocked = audit("channel_blocked");
    assert!(
        blocked.contains("sato") && blocked.contains("subsystem"),
        "refusal not audited: {blocked}\nsftp said: {stderr}"
    );
}

#[test]
fn admin_kill_ends_a_live_session_within_a_second() {
    let e = env();
    let mut child: Child = ssh(
        "ito@db01",
        "127.0.0.61",
        PASSWORD,
        &code("ito"),
        &["sleep 60"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn ssh");
    // Wait until the session is live.
    let id = e
        .install()
        .live_session_id("ito", Duration::from_secs(15))
        .unwrap_or_default();
    let live = !id.is_empty();
    assert!(
        live,
        "session never became live: {}",
        read(&e.dir.join("serve.log"))
    );
    let kill = sekisho(
        &e.dir,
        &["sessions", "kill", &id, "--reason", "emergency stop test"],
        None,
    );
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stdout)
    );
    // The command returns once serve has ended the session (it waits for
    // the row to close); the client is let go before that. Timed from
    // there, not from the command's start (a debug CLI starts slowly on a
    // loaded machine); generous, and far below the remote `sleep 60`.
    let requested = Instant::now();
    let ended = wait_until(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(ended, "ssh still running after kill");
    assert!(
        requested.elapsed() < Duration::from_secs(10),
        "kill took {:?}",
        requested.elapsed()
    );
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("emergency stop test"),
        "reason not shown: {stderr}"
    );
}

#[test]
fn exports_show_what_was_typed_and_what_was_shown() {
    open_window("tanaka", "127.0.0.11");
    let out = run(ssh(
        "tanaka@db01",
        "127.0.0.11",
        PASSWORD,
        "000000",
        &["echo exported-output"],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = env();
    // The newest archive of tanaka's that shows this output.
    let mut found = None;
    let ok_found = wait_until(Duration::from_secs(30), || {
        let list = ok(sekisho(
            &e.dir,
            &[
                "audit",
                "--kind",
                "session_end",
                "--user",
                "tanaka",
                "--json",
            ],
            None,
        ));
        for line in list.lines().rev() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            let id = v["session"].as_str().unwrap_or_default().to_string();
            let keys = sekisho(&e.dir, &["export", &id, "--format", "keystrokes"], None);
            if String::from_utf8_lossy(&keys.stdout).contains("echo exported-output") {
                found = Some((id, String::from_utf8_lossy(&keys.stdout).into_owned()));
                return true;
            }
        }
        false
    });
    assert!(ok_found, "no keystroke export shows the command line");
    let (id, keys) = found.expect("found");
    assert!(keys.contains("[exec]"), "{keys}");
    assert!(keys.contains("user tanaka"), "{keys}");

    let cast = e.dir.join(format!("{id}.cast"));
    ok(sekisho(
        &e.dir,
        &[
            "export",
            &id,
            "--format",
            "asciicast",
            "-o",
            cast.to_str().unwrap(),
        ],
        None,
    ));
    let text = std::fs::read_to_string(&cast).expect("cast written");
    let header: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("header")).expect("header json");
    assert_eq!(header["version"], 2);
    assert!(text.contains("exported-output"), "{text}");
    let play = Command::new(sshd::require("asciinema", "asciinema"))
        .arg("play")
        .arg(&cast)
        .stdin(Stdio::null())
        .output()
        .expect("asciinema");
    assert!(
        play.status.success(),
        "asciinema refused the cast: {}",
        String::from_utf8_lossy(&play.stderr)
    );
    assert!(String::from_utf8_lossy(&play.stdout).contains("exported-output"));

    // PNG is for desktop recordings: a clear refusal, nothing written.
    let png = e.dir.join("frame.png");
    let refused = sekisho(
        &e.dir,
        &[
            "export",
            &id,
            "--format",
            "png",
            "-o",
            png.to_str().unwrap(),
        ],
        None,
    );
    assert!(!refused.status.success());
    assert!(!png.exists(), "a refused export left a file");
}

#[test]
fn replay_keeps_the_timing_scaled_and_shortens_long_pauses() {
    open_window("tanaka", "127.0.0.11");
    let out = run(ssh(
        "tanaka@db01",
        "127.0.0.11",
        PASSWORD,
        "000000",
        &["echo first-line; sleep 2; echo second-line"],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = env();
    let mut id = String::new();
    let found = wait_until(Duration::from_secs(30), || {
        let list = ok(sekisho(
            &e.dir,
            &[
                "audit",
                "--kind",
                "session_end",
                "--user",
                "tanaka",
                "--json",
            ],
            None,
        ));
        list.lines().rev().any(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            let candidate = v["session"].as_str().unwrap_or_default().to_string();
            let keys = sekisho(
                &e.dir,
                &["export", &candidate, "--format", "keystrokes"],
                None,
            );
            let hit = String::from_utf8_lossy(&keys.stdout).contains("second-line");
            if hit {
                id = candidate;
            }
            hit
        })
    });
    assert!(found, "session not found");

    // The pause as replay plays it: the time between the two lines reaching
    // its standard output (it flushes before each wait), so neither the
    // start of the process nor the reading of the archive counts, however
    // slow they are on a loaded machine.
    let paced = |args: &[&str]| {
        use std::io::BufRead as _;
        let mut all = vec!["replay", id.as_str()];
        all.extend_from_slice(args);
        let mut child = Command::new(&e.bin)
            .arg("--config")
            .arg(e.dir.join("sekisho.toml"))
            .args(&all)
            .env_remove("SEKISHO_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sekisho replay");
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(child.stdout.take().expect("stdout")).lines() {
            lines.push((Instant::now(), line.expect("replay output")));
        }
        let status = child.wait().expect("sekisho replay");
        assert!(status.success(), "replay {args:?}: {status}");
        let shown: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(shown, ["first-line", "second-line"], "replay {args:?}");
        lines[1].0 - lines[0].0
    };
    // Real timing: the 2 s pause is kept.
    let real = paced(&["--max-idle", "0"]);
    assert!(
        real >= Duration::from_millis(1800),
        "pause not kept: {real:?}"
    );
    // Four times faster: a quarter of it (under half, on a loaded machine).
    let fast = paced(&["--max-idle", "0", "--speed", "4"]);
    assert!(
        fast >= Duration::from_millis(400) && fast < real / 2,
        "{fast:?} at 4x, {real:?} at 1x"
    );
    // Idle skipping: the pause is cut to 0.2 s.
    let skipped = paced(&["--max-idle", "0.2"]);
    assert!(
        skipped >= Duration::from_millis(150) && skipped < real / 2,
        "pause not shortened: {skipped:?} (at 1x {real:?})"
    );
}
