//! The SSH gateway end to end: the real OpenSSH client → a real `sekisho
//! serve` (the real core: store, policy, secret store, archives, audit) → a
//! real OpenSSH sshd. The deployment is built by `gateway::env()`.
//! Needs the Debian packages openssh-server, openssh-client, util-linux, and
//! root (a tmpfs for the recording that breaks, a local account for the
//! password credential).

use crate::support::{gateway, pty, sshd};

use std::time::{Duration, Instant};

use gateway::{
    FAILURE_DELAY, audit, audit_of, code, ended_session, env, live_sessions, recorded,
    recorded_input, recorded_output, session_end, ssh, text, ticket, wait_until, wrong_code,
};
use sekisho::recording::Event;

fn assert_denied_generic(out: &std::process::Output) {
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("Permission denied"), "stderr: {err}");
    assert!(
        !err.contains("sekisho:"),
        "a sign-in failure must not explain itself: {err}"
    );
}

/// Whether `user` has a sign-in event of `kind` with this method (and, for a
/// failure, this reason).
fn signin_event(kind: &str, user: &str, method: &str, reason: Option<&str>) -> bool {
    wait_until(Duration::from_secs(20), || {
        audit_of(kind, user).iter().any(|v| {
            v["data"]["method"] == method
                && reason.is_none_or(|r| v["data"]["reason"].as_str() == Some(r))
        })
    })
}

#[test]
fn password_and_code_then_exec_relays_output_and_exit_status() {
    let out = ssh("hayashi@db01")
        .remote("echo hello; echo oops >&2; exit 3")
        .output();
    assert_eq!(text(&out.stdout), "hello\n", "{out:?}");
    assert!(text(&out.stderr).contains("oops"), "{out:?}");
    assert_eq!(out.status.code(), Some(3));
    assert!(signin_event("signin_success", "hayashi", "password", None));
    assert!(signin_event("signin_success", "hayashi", "totp", None));
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
    let out = ssh("mori@db01").with_key().remote("id -un").output();
    assert_eq!(text(&out.stdout), "root\n", "{out:?}");
    assert!(out.status.success());
    assert!(signin_event("signin_success", "mori", "publickey", None));
    assert!(signin_event("signin_success", "mori", "totp", None));
}

#[test]
fn key_with_wrong_code_is_refused() {
    // Another address than key_and_code's: no sign-in window there.
    let start = Instant::now();
    let out = ssh("mori@db01")
        .from("127.0.0.2")
        .with_key()
        .code(&wrong_code("mori"))
        .remote("true")
        .output();
    assert_denied_generic(&out);
    assert!(
        start.elapsed() >= FAILURE_DELAY,
        "failures must be slowed down"
    );
    assert!(signin_event(
        "signin_failure",
        "mori",
        "totp",
        Some("wrong code")
    ));
}

#[test]
fn wrong_code_is_refused_without_saying_which_factor() {
    let start = Instant::now();
    let out = ssh("ueda@db01")
        .code(&wrong_code("ueda"))
        .remote("true")
        .output();
    assert_denied_generic(&out);
    assert!(start.elapsed() >= FAILURE_DELAY);
    assert!(signin_event("signin_success", "ueda", "password", None));
    assert!(signin_event(
        "signin_failure",
        "ueda",
        "totp",
        Some("wrong code")
    ));
}

#[test]
fn wrong_password_is_refused() {
    let start = Instant::now();
    let out = ssh("ono@db01").password("nope").remote("true").output();
    assert_denied_generic(&out);
    assert!(start.elapsed() >= FAILURE_DELAY);
    assert!(signin_event(
        "signin_failure",
        "ono",
        "password",
        Some("wrong password")
    ));
}

#[test]
fn an_unusable_login_name_is_refused_and_audited() {
    // "@x@db01": no person before the first `@`; no account can be named so.
    let start = Instant::now();
    let out = ssh("@x@db01").code("000000").remote("true").output();
    assert_denied_generic(&out);
    assert!(start.elapsed() >= FAILURE_DELAY);
    // Not a valid name: audited under a marker, never as typed.
    let marked = wait_until(Duration::from_secs(20), || {
        gateway::audit(&["--kind", "signin_failure"])
            .iter()
            .any(|v| {
                v["user"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("<invalid name, 7 bytes, #"))
                    && v["data"]["method"] == "password"
                    && v["data"]["reason"] == "unknown user"
            })
    });
    assert!(marked, "no marked sign-in failure");
    assert!(audit_of("signin_failure", "@x@db01").is_empty());
}

#[test]
fn locked_user_is_refused_even_with_the_right_password() {
    // [auth] max_failures = 3: three wrong passwords lock suzuki.
    for _ in 0..3 {
        let out = ssh("suzuki@db01").password("nope").remote("true").output();
        assert_denied_generic(&out);
    }
    assert!(
        !audit_of("lockout", "suzuki").is_empty(),
        "no lockout event"
    );
    let out = ssh("suzuki@db01").remote("echo should-not-run").output();
    assert_denied_generic(&out);
    assert!(out.stdout.is_empty());
    assert!(signin_event(
        "signin_failure",
        "suzuki",
        "password",
        Some("user is locked after repeated failures")
    ));
}

#[test]
fn ticket_alone_signs_in_once() {
    let t = ticket("kimura", "db01");
    let out = ssh("kimura@db01")
        .password(&t)
        .code("not-asked")
        .remote("echo via-ticket")
        .output();
    assert_eq!(text(&out.stdout), "via-ticket\n", "{out:?}");
    let again = ssh("kimura@db01")
        .password(&t)
        .code("not-asked")
        .remote("echo via-ticket")
        .output();
    assert_denied_generic(&again);
    assert!(signin_event("signin_success", "kimura", "ticket", None));
    assert!(signin_event(
        "signin_failure",
        "kimura",
        "ticket",
        Some("ticket already used")
    ));
}

#[test]
fn ticket_for_another_target_is_refused() {
    let t = ticket("kudo", "app01");
    let out = ssh("kudo@db01")
        .password(&t)
        .code("not-asked")
        .remote("true")
        .output();
    assert_denied_generic(&out);
    assert!(signin_event(
        "signin_failure",
        "kudo",
        "ticket",
        Some("ticket issued for another target")
    ));
}

#[test]
fn sign_in_window_skips_the_code() {
    let first = ssh("ito@db01")
        .from("127.0.0.4")
        .remote("echo one")
        .output();
    assert_eq!(text(&first.stdout), "one\n", "{first:?}");
    let second = ssh("ito@db01")
        .from("127.0.0.4")
        .code(&wrong_code("ito"))
        .remote("echo two")
        .output();
    assert_eq!(text(&second.stdout), "two\n", "{second:?}");
    assert!(signin_event("signin_success", "ito", "window", None));
    // From another address the code is asked again.
    let other = ssh("ito@db01")
        .from("127.0.0.5")
        .code(&wrong_code("ito"))
        .remote("echo three")
        .output();
    assert_denied_generic(&other);
}

#[test]
fn outside_hours_is_denied_with_the_reason() {
    let out = ssh("sato@db01").remote("true").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("sekisho: access denied: outside allowed hours ("),
        "{err}"
    );
    let denied = audit_of("deny", "sato");
    assert!(
        denied
            .iter()
            .any(|v| v["target"] == "db01" && v["data"]["rule"] == "hours"),
        "{denied:?}"
    );
}

#[test]
fn outside_the_contract_is_denied_with_the_reason() {
    let out = ssh("kato@db01").remote("true").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("access denied: the maintenance contract of vendor acme"),
        "{err}"
    );
    assert!(err.contains("ended on"), "{err}");
    assert!(
        audit_of("deny", "kato")
            .iter()
            .any(|v| v["data"]["rule"] == "contract")
    );
}

#[test]
fn unknown_target_is_denied() {
    let out = ssh("tanaka@nosuch").remote("true").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("no target named \"nosuch\""),
        "{out:?}"
    );
    assert!(
        audit(&["--kind", "deny", "--target", "nosuch"])
            .iter()
            .any(|v| v["user"] == "tanaka" && v["data"]["rule"] == "unknown_target")
    );
}

#[test]
fn host_key_not_matching_the_pin_is_refused() {
    let out = ssh("tanaka@badpin").remote("echo should-not-run").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stdout).is_empty());
    let err = text(&out.stderr);
    assert!(
        err.contains("does not match the one pinned in policy"),
        "{err}"
    );
    assert!(err.contains(&env().sshd.host_key_fingerprint), "{err}");
    let ends = audit(&["--kind", "session_end", "--target", "badpin"]);
    assert!(
        ends.iter().all(|v| v["data"]["status"] == "failed") && !ends.is_empty(),
        "{ends:?}"
    );
    // The audit log names the phase and the kind, not only the text.
    assert!(
        ends.iter().all(|v| v["data"]["failure"]
            == serde_json::json!({ "phase": "host_key", "kind": "host_key_mismatch" })),
        "{ends:?}"
    );
}

#[test]
fn no_recording_no_session() {
    let out = ssh("tanaka@db01")
        .port(env().norec_port)
        .remote("echo should-not-run")
        .output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stdout).is_empty());
    let err = text(&out.stderr);
    assert!(
        err.contains("the session cannot be recorded, so it is not opened (recording failed: the recording cannot be created)"),
        "{out:?}"
    );
    // The person is not shown the server's paths or system errors.
    let dir = env().dir.display().to_string();
    assert!(
        !err.contains(&dir) && !err.contains("Not a directory"),
        "{err}"
    );
    assert!(
        !audit_of("recording_failed", "tanaka").is_empty(),
        "no recording_failed event"
    );
}

// ---- channels refused -------------------------------------------------

/// A `channel_blocked` event of tanaka with this channel kind and detail.
fn refused_in_audit(kind: &str, detail_part: &str) -> bool {
    wait_until(Duration::from_secs(20), || {
        audit_of("channel_blocked", "tanaka").iter().any(|v| {
            v["data"]["channel"] == kind
                && v["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(detail_part))
        })
    })
}

/// An `scp` that uses `ssh -F` with askpass (inside tanaka's window).
fn scp(args: &[&str]) -> std::process::Output {
    let e = env();
    let mut c = std::process::Command::new("setsid");
    c.arg("-w")
        .arg("scp")
        .arg("-F")
        .arg(&e.ssh_config)
        .arg("-P")
        .arg(e.port.to_string())
        .arg("-o")
        .arg("PreferredAuthentications=password,keyboard-interactive")
        .arg("-o")
        .arg("BindAddress=127.0.0.1")
        .args(args)
        .env("SSH_ASKPASS", &e.askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("SEKISHO_TEST_PASSWORD", gateway::PASSWORD)
        .env("SEKISHO_TEST_CODE", code("tanaka"))
        .stdin(std::process::Stdio::null());
    sshd::run(&mut c)
}

#[test]
fn scp_download_is_refused_in_both_protocols() {
    let dest = env().dir.join("scp-copy");
    // Default scp speaks sftp; -O speaks the legacy scp protocol (exec scp -f).
    for legacy in [false, true] {
        let _ = std::fs::remove_file(&dest);
        let mut args = vec![];
        if legacy {
            args.push("-O");
        }
        let dest_s = dest.display().to_string();
        args.extend(["tanaka@db01@127.0.0.1:/etc/hostname", dest_s.as_str()]);
        let out = scp(&args);
        assert!(!out.status.success(), "legacy={legacy} {out:?}");
        assert!(!dest.exists(), "legacy={legacy}: a file was copied");
        let err = text(&out.stderr);
        assert!(err.contains("not allowed"), "legacy={legacy}: {err}");
    }
    assert!(refused_in_audit("file-transfer-exec", "scp -f"));
    assert!(refused_in_audit("subsystem", "sftp"));
}

#[test]
fn scp_upload_is_refused() {
    let src = env().dir.join("scp-upload-src");
    std::fs::write(&src, "secret").unwrap_or_else(|e| panic!("{e}"));
    let remote_dest = env().dir.join("scp-upload-dest");
    let src_s = src.display().to_string();
    let dst = format!("tanaka@db01@127.0.0.1:{}", remote_dest.display());
    let out = scp(&["-O", src_s.as_str(), dst.as_str()]);
    assert!(!out.status.success(), "{out:?}");
    assert!(!remote_dest.exists(), "the upload reached the target");
    assert!(refused_in_audit("file-transfer-exec", "scp -t"));
}

#[test]
fn sftp_is_refused() {
    let e = env();
    let mut c = std::process::Command::new("setsid");
    c.arg("-w")
        .arg("sftp")
        .arg("-F")
        .arg(&e.ssh_config)
        .arg("-P")
        .arg(e.port.to_string())
        .arg("-o")
        .arg("PreferredAuthentications=password,keyboard-interactive")
        .arg("-o")
        .arg("BindAddress=127.0.0.1")
        .arg("tanaka@db01@127.0.0.1")
        .env("SSH_ASKPASS", &e.askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("SEKISHO_TEST_PASSWORD", gateway::PASSWORD)
        .env("SEKISHO_TEST_CODE", gateway::code("tanaka"))
        .stdin(std::process::Stdio::null());
    let out = sshd::run(&mut c);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        text(&out.stderr).contains("sftp subsystem (file transfer) is not allowed"),
        "{out:?}"
    );
}

#[test]
fn file_transfer_exec_lines_are_refused() {
    for cmd in [
        "scp -f /etc/hostname",
        "/usr/lib/openssh/sftp-server",
        "rsync --server --sender -vlogDtpre.iLsfxC . /etc/hostname",
        "env X=1 sh -c 'scp -f /etc/hostname'",
    ] {
        let out = ssh("tanaka@db01").remote(cmd).output();
        assert_eq!(out.status.code(), Some(1), "{cmd}: {out:?}");
        assert!(out.stdout.is_empty(), "{cmd}: {out:?}");
        assert!(
            text(&out.stderr).contains("file transfer"),
            "{cmd}: {out:?}"
        );
    }
}

#[test]
fn stdio_forward_is_refused() {
    let port = env().sshd.port.to_string();
    let out = ssh("tanaka@db01")
        .arg("-W")
        .arg(&format!("127.0.0.1:{port}"))
        .output();
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(!text(&out.stdout).contains("SSH-2.0"), "{out:?}");
    // OpenSSH prints no reason for a failed -W; the audit has it.
    assert!(text(&out.stderr).contains("forwarding failed"), "{out:?}");
    assert!(refused_in_audit(
        "local-forward",
        &format!("127.0.0.1:{port}")
    ));
}

/// Starts `ssh -N` with a forwarding option; returns the child.
fn forwarding_client(option: &str, spec: &str) -> std::process::Child {
    ssh("tanaka@db01")
        .arg("-o")
        .arg("LogLevel=INFO")
        .arg("-N")
        .arg(option)
        .arg(spec)
        .spawn()
}

fn read_some(stream: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    let mut buf = vec![0u8; 256];
    match stream.read(&mut buf) {
        Ok(n) => buf.truncate(n),
        Err(_) => buf.clear(),
    }
    buf
}

#[test]
fn local_and_dynamic_forwarding_are_refused() {
    use std::io::Write;
    let target = env().sshd.port;
    let local = sshd::free_port();
    let mut child = forwarding_client("-L", &format!("{local}:127.0.0.1:{target}"));
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", local)).is_ok()
    }));
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", local)).unwrap_or_else(|e| panic!("{e}"));
    let got = read_some(&mut s);
    assert!(
        !text(&got).contains("SSH-2.0"),
        "the forward reached the target: {got:?}"
    );
    let _ = child.kill();
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text(&out.stderr)
            .contains("administratively prohibited: sekisho: port forwarding is not allowed"),
        "{out:?}"
    );
    assert!(refused_in_audit(
        "local-forward",
        &format!("127.0.0.1:{target}")
    ));

    let socks = sshd::free_port();
    let mut child = forwarding_client("-D", &format!("127.0.0.1:{socks}"));
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", socks)).is_ok()
    }));
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", socks)).unwrap_or_else(|e| panic!("{e}"));
    let [hi, lo] = target.to_be_bytes();
    let _ = s.write_all(&[5, 1, 0]);
    let hello = read_some(&mut s);
    assert_eq!(hello, vec![5, 0], "SOCKS greeting");
    let _ = s.write_all(&[5, 1, 0, 1, 127, 0, 0, 1, hi, lo]);
    let reply = read_some(&mut s);
    assert!(
        reply.get(1).is_none_or(|code| *code != 0),
        "SOCKS connect succeeded: {reply:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn remote_forwarding_is_refused() {
    let out = ssh("tanaka@db01")
        .arg("-o")
        .arg("ExitOnForwardFailure=yes")
        .arg("-R")
        .arg("0:127.0.0.1:9")
        .remote("echo should-not-run")
        .output();
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(text(&out.stderr).contains("forwarding failed"), "{out:?}");
    assert!(refused_in_audit("remote-forward", "tcpip-forward"));
}

#[test]
fn agent_forwarding_is_refused() {
    let e = env();
    let sock = e.dir.join("agent.sock");
    let _ = std::fs::remove_file(&sock);
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("ssh-agent (openssh-client): {e}"));
    assert!(wait_until(Duration::from_secs(20), || sock.exists()));
    let out = ssh("tanaka@db01")
        .arg("-A")
        .env("SSH_AUTH_SOCK", &sock.display().to_string())
        .remote("echo \"[${SSH_AUTH_SOCK:-none}]\"")
        .output();
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(text(&out.stdout), "[none]\n", "{out:?}");
    assert!(
        text(&out.stderr).contains("agent forwarding is not allowed"),
        "{out:?}"
    );
    assert!(refused_in_audit("agent-forward", ""));
}

#[test]
fn x11_forwarding_is_refused() {
    let xauthority = env().dir.join("Xauthority").display().to_string();
    // -Y always sends x11-req (with fake cookie data when there is no X
    // server); -X may give up before asking when xauth is installed, so for
    // -X only the outcome (no DISPLAY on the target) is asserted.
    for flag in ["-Y", "-X"] {
        let out = ssh("tanaka@db01")
            .arg(flag)
            .env("DISPLAY", "127.0.0.1:93")
            .env("XAUTHORITY", &xauthority)
            .remote("echo \"[${DISPLAY:-none}]\"")
            .output();
        assert_eq!(text(&out.stdout), "[none]\n", "{flag}: {out:?}");
        if flag == "-Y" {
            assert!(
                text(&out.stderr).contains("X11 forwarding is not allowed"),
                "{out:?}"
            );
        }
    }
    assert!(refused_in_audit("x11-forward", ""));
}

#[test]
fn environment_is_filtered_by_the_allow_list() {
    let out = ssh("tanaka@db01")
        .arg("-o")
        .arg("SendEnv=LANG SEKISHO_TEST_SECRET")
        .env("LANG", "C.UTF-8")
        .env("SEKISHO_TEST_SECRET", "leak")
        .remote("echo \"[$LANG][${SEKISHO_TEST_SECRET:-unset}]\"")
        .output();
    assert_eq!(text(&out.stdout), "[C.UTF-8][unset]\n", "{out:?}");
}

// ---- shells, volume, recording ----------------------------------------

#[test]
fn interactive_shell_on_a_terminal_relays_size_and_resizes() {
    let mut term = pty::spawn(ssh("endo@db01").arg("-t").command(), 100, 30);
    assert!(
        wait_until(Duration::from_secs(30), || term.text().contains("root@")),
        "{}",
        term.text()
    );
    term.write(b"echo size-marker; stty size\n");
    assert!(
        wait_until(Duration::from_secs(15), || term.text().contains("30 100")),
        "{}",
        term.text()
    );
    term.resize(120, 40);
    // The window change travels client → sekisho → target on its own: the
    // shell waits until its terminal has the new size (a `stty size` after
    // a fixed pause could run first on a loaded machine), then says so with
    // a marker its echoed command line does not contain.
    term.write(
        b"until [ \"$(stty size)\" = \"40 120\" ]; do sleep 0.1; done; echo resized-$((3*4))\n",
    );
    assert!(
        wait_until(Duration::from_secs(30), || term
            .text()
            .contains("resized-12")),
        "{}",
        term.text()
    );
    term.write(b"exit 6\n");
    assert!(wait_until(Duration::from_secs(15), || matches!(
        term.child.try_wait(),
        Ok(Some(_))
    )));
    assert_eq!(term.child.wait().ok().and_then(|s| s.code()), Some(6));
    let id = ended_session("endo");
    assert!(text(&recorded_input(&id)).contains("size-marker"));
    let events = recorded(&id);
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Pty {
                cols: 100,
                rows: 30,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Resize {
                cols: 120,
                rows: 40,
                ..
            }
        )),
        "{events:?}"
    );
}

#[test]
fn interactive_shell_through_a_pty_is_recorded_byte_for_byte() {
    let out = ssh("fujita@db01")
        .arg("-tt")
        .output_with_input(b"echo pty-marker-$((6*7))\nstty size\nexit 5\n");
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let shown = text(&out.stdout);
    assert!(shown.contains("pty-marker-42"), "{shown}");
    let id = ended_session("fujita");
    assert!(text(&recorded_input(&id)).contains("pty-marker-"));
    let events = recorded(&id);
    assert!(
        events.iter().any(|e| matches!(e, Event::Pty { .. })),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ChannelOpened { kind, .. } if kind == "shell"))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ExitStatus { code: 5, .. }))
    );
    // Replaying the recorded output gives exactly what the person saw.
    assert_eq!(recorded_output(&id, false), out.stdout);
    assert_eq!(session_end(&id)["data"]["status"], "ended");
    // The archive is sealed and verifies.
    let verify = gateway::sekisho(&["verify", &id]);
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");
}

#[test]
fn exec_recording_keeps_command_stdout_and_stderr_apart() {
    let out = ssh("goto@db01")
        .remote("cat; echo rec-out-$((1+1)); echo rec-err >&2; exit 4")
        .output_with_input(b"typed-rec-input\n");
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let id = ended_session("goto");
    assert_eq!(text(&recorded_input(&id)), "typed-rec-input\n");
    let events = recorded(&id);
    assert!(
        events.iter().any(
            |e| matches!(e, Event::Exec { command, .. } if text(command).contains("rec-out-"))
        )
    );
    assert_eq!(recorded_output(&id, false), out.stdout);
    assert_eq!(text(&recorded_output(&id, true)), "rec-err\n");
    assert_eq!(text(&out.stdout), "typed-rec-input\nrec-out-2\n");
}

#[test]
fn hundred_megabytes_arrive_byte_identical() {
    use sha2::{Digest, Sha256};
    let sent = env().dir.join("sent-100mb.bin");
    let out = ssh("tanaka@db01")
        .remote(&format!(
            "head -c 100000000 /dev/urandom | tee {} ; echo big-transfer-done >&2",
            sent.display()
        ))
        .output();
    assert!(
        out.status.success(),
        "status {:?} stderr {}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 100_000_000);
    let sent_bytes = std::fs::read(&sent).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Sha256::digest(&out.stdout), Sha256::digest(&sent_bytes));
    let _ = std::fs::remove_file(&sent);
}

// ---- time limits and control -------------------------------------------

#[test]
fn kill_ends_the_session_within_a_second_and_says_why() {
    let mut child = ssh("tanaka@app01").remote("echo started; sleep 30").spawn();
    let mut id = String::new();
    assert!(wait_until(Duration::from_secs(30), || {
        match live_sessions()
            .iter()
            .find(|v| v["user"] == "tanaka" && v["target"] == "app01")
        {
            Some(v) => {
                id = v["id"].as_str().unwrap_or_default().to_string();
                true
            }
            None => false,
        }
    }));
    std::thread::sleep(Duration::from_millis(300));
    let kill = gateway::sekisho(&[
        "sessions",
        "kill",
        &id,
        "--reason",
        "maintenance stopped by the duty officer",
    ]);
    // The command returns once serve has ended the session (it waits for
    // the row to close); the client is let go before that. Timed from
    // there, not from the command's start (a debug CLI starts slowly on a
    // loaded machine); generous, and far below the remote `sleep 30`.
    let requested = Instant::now();
    let exited = wait_until(Duration::from_secs(20), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    let elapsed = requested.elapsed();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(kill.status.success(), "{kill:?}");
    assert!(
        exited && elapsed < Duration::from_secs(10),
        "took {elapsed:?}"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("sekisho: session ended: stopped by an administrator: maintenance stopped by the duty officer"),
        "{err}"
    );
    assert_eq!(session_end(&id)["data"]["status"], "killed");
    assert!(
        !audit(&["--kind", "kill_requested", "--session", &id]).is_empty(),
        "no kill_requested event"
    );
}

#[test]
fn the_grant_end_warns_then_ends_the_session() {
    // sasaki's access: max_session = "6s"; [sessions] warn_before_end = "3s".
    let start = Instant::now();
    let out = ssh("sasaki@db01").remote("sleep 30").output();
    let elapsed = start.elapsed();
    let err = text(&out.stderr);
    // Sign-in included, on a loaded machine; the remote `sleep 30` would
    // run on without the grant's end.
    assert!(elapsed < Duration::from_secs(25), "took {elapsed:?}");
    assert!(err.contains("sekisho: this session ends at"), "{err}");
    assert!(
        err.contains("sekisho: session ended: the granted time ended"),
        "{err}"
    );
    let id = ended_session("sasaki");
    assert_eq!(session_end(&id)["data"]["status"], "expired");
}

#[test]
fn idle_sessions_end() {
    let start = Instant::now();
    let out = ssh("tanaka@db01")
        .port(env().idle_port)
        .remote("sleep 30")
        .output();
    let elapsed = start.elapsed();
    // Sign-in included, on a loaded machine; the remote `sleep 30` would
    // run on without the idle timeout.
    assert!(elapsed < Duration::from_secs(25), "took {elapsed:?}");
    assert!(
        text(&out.stderr).contains("sekisho: session ended: no input for 2s"),
        "{out:?}"
    );
}

// ---- target menu ---------------------------------------------------------

#[test]
fn without_a_target_the_menu_connects_to_the_chosen_one() {
    let mut term = pty::spawn(ssh("tanaka").arg("-t").command(), 100, 30);
    let shows = |term: &pty::PtyChild, what: &str| {
        wait_until(Duration::from_secs(15), || term.text().contains(what))
    };
    assert!(shows(&term, "Choose a target"), "{}", term.text());
    let menu = term.text();
    assert!(menu.contains("targets you may reach now"), "{menu}");
    assert!(
        menu.contains("db01") && menu.contains("app01") && menu.contains("ssh until"),
        "{menu}"
    );
    term.write(b"nosuch\r");
    assert!(shows(&term, "no target \"nosuch\""), "{}", term.text());
    term.write(b"db01\r");
    assert!(shows(&term, "root@"), "{}", term.text());
    term.write(b"echo menu-$((40+2))\r");
    assert!(shows(&term, "menu-42"), "{}", term.text());
    term.write(b"exit 7\r");
    let exited = wait_until(Duration::from_secs(30), || {
        matches!(term.child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = term.child.kill();
    }
    assert_eq!(
        term.child.wait().ok().and_then(|s| s.code()),
        Some(7),
        "{}",
        term.text()
    );
}

#[test]
fn without_a_target_and_without_a_terminal_the_targets_are_listed() {
    let out = ssh("tanaka").remote("true").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("a command needs a target") && err.contains("db01"),
        "{err}"
    );
    assert!(
        !err.contains("(number or name"),
        "no question to answer: {err}"
    );
}

#[test]
fn exit_signal_is_relayed_and_recorded() {
    let out = ssh("honda@db01")
        .remote("echo sig-marker; kill -TERM $$")
        .output_with_input(b"sig-input-marker\n");
    // OpenSSH exits 255 when the remote command died of a signal.
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let id = ended_session("honda");
    let events = recorded(&id);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ExitSignal { signal, .. } if signal == "TERM")),
        "{events:?}"
    );
}

#[test]
fn a_recording_that_breaks_ends_the_session() {
    // This serve process records onto a 1 MiB tmpfs; about 6 MB of hardly
    // compressible output fills it within a second or two.
    let out = ssh("iwata@db01")
        .port(env().recbreak_port)
        .remote(
            "for i in $(seq 1 50); do head -c 96000 /dev/urandom | base64 -w 0; echo; sleep 0.1; done; echo recbreak-done",
        )
        .output();
    let shown = text(&out.stdout);
    assert!(
        !shown.contains("recbreak-done"),
        "the session went on unrecorded ({} bytes shown)",
        shown.len()
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("sekisho: session ended: recording failed: the recording storage is full"),
        "{err}"
    );
    let dir = env().recbreak_recordings.display().to_string();
    assert!(!err.contains(&dir) && !err.contains("space"), "{err}");
    assert!(
        wait_until(Duration::from_secs(20), || !audit_of(
            "recording_failed",
            "iwata"
        )
        .is_empty()),
        "no recording_failed event"
    );
    let id = ended_session("iwata");
    assert_eq!(session_end(&id)["data"]["status"], "failed");
}

#[test]
fn keyboard_interactive_alone_asks_password_then_code() {
    let wrong = ssh("kubo@db01")
        .arg("-o")
        .arg("PreferredAuthentications=keyboard-interactive")
        .code(&wrong_code("kubo"))
        .remote("echo kbd-only")
        .output();
    assert_denied_generic(&wrong);
    let out = ssh("kubo@db01")
        .arg("-o")
        .arg("PreferredAuthentications=keyboard-interactive")
        .remote("echo kbd-only")
        .output();
    assert_eq!(text(&out.stdout), "kbd-only\n", "{out:?}");
}

#[test]
fn ticket_as_a_keyboard_interactive_answer() {
    let t = ticket("kimura", "app01");
    let out = ssh("kimura@app01")
        .arg("-o")
        .arg("PreferredAuthentications=keyboard-interactive")
        .password(&t)
        .code("not-asked")
        .remote("echo kbd-ticket")
        .output();
    assert_eq!(text(&out.stdout), "kbd-ticket\n", "{out:?}");
}

#[test]
fn a_ticket_names_the_target_when_the_user_name_does_not() {
    let t = ticket("kudo", "db01");
    let out = ssh("kudo")
        .password(&t)
        .code("not-asked")
        .remote("echo ticket-target")
        .output();
    assert_eq!(text(&out.stdout), "ticket-target\n", "{out:?}");
}

#[test]
fn shutdown_ends_live_sessions_with_a_message_and_stops_listening() {
    // A serve process of its own on the same deployment, stopped with SIGTERM.
    let e = env();
    let port = sshd::free_port();
    let config = gateway::write_config(&e.dir, "sekisho-shutdown.toml", port, "0", None);
    let mut serve = gateway::spawn_serve(&config, port);
    let mut child = ssh("tanaka@db01")
        .port(port)
        .remote("echo up; sleep 30")
        .spawn();
    let node = format!(":{port}");
    assert!(wait_until(Duration::from_secs(30), || live_sessions()
        .iter()
        .any(|v| v["node"]
            .as_str()
            .is_some_and(|n| n.ends_with(&node)))));
    std::thread::sleep(Duration::from_millis(300));
    let status = gateway::terminate(&mut serve.child, Duration::from_secs(10));
    let exited = wait_until(Duration::from_secs(15), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    let _ = child.kill();
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(exited, "the session outlived the shutdown");
    assert!(
        status.is_some_and(|s| s.success()),
        "serve did not stop cleanly: {status:?}"
    );
    assert!(
        text(&out.stderr).contains("sekisho: session ended: sekisho is shutting down"),
        "{out:?}"
    );
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    }));
}

/// A gateway run in-process over the real core of the shared deployment
/// (`SshServices` on a `Services` of it) on a free loopback port, with
/// options `sekisho serve` would read from the file changed by `adjust`.
struct InProcessGateway {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: std::thread::JoinHandle<Result<(), sekisho::ssh::SshError>>,
}

impl InProcessGateway {
    fn start(adjust: impl FnOnce(&mut sekisho::ssh::GatewayOptions) + Send + 'static) -> Self {
        let e = env();
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut config = sekisho::config::Config::load(&e.dir.join("sekisho.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        config.ssh.listen = addr;
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("runtime: {e}"));
            rt.block_on(async move {
                let key = sekisho::ssh::load_host_key(&config.paths.ssh_host_key())
                    .unwrap_or_else(|e| panic!("{e}"));
                let mut options = sekisho::ssh::GatewayOptions::from_config(&config);
                adjust(&mut options);
                let services = sekisho::session::Services::start(config)
                    .await
                    .unwrap_or_else(|e| panic!("services: {e:#}"));
                let control = std::sync::Arc::new(sekisho::ssh::services::SshServices::new(
                    std::sync::Arc::new(services),
                ));
                let listener =
                    tokio::net::TcpListener::from_std(listener).unwrap_or_else(|e| panic!("{e}"));
                sekisho::ssh::serve(listener, key, control, options, async {
                    let _ = stop_rx.await;
                })
                .await
            })
        });
        InProcessGateway { addr, stop, server }
    }

    /// Stops it; whether it stopped cleanly.
    fn stop(self) -> std::thread::Result<Result<(), sekisho::ssh::SshError>> {
        let _ = self.stop.send(());
        self.server.join()
    }
}

#[test]
fn a_client_that_does_not_sign_in_is_cut_after_the_grace_time() {
    // The sign-in grace time (2 min in `sekisho serve`) is not configurable,
    // so this gateway runs in-process with a short one.
    use std::io::{Read, Write};
    let g = InProcessGateway::start(|o| o.login_grace = Duration::from_secs(2));
    let mut s = std::net::TcpStream::connect(g.addr).unwrap_or_else(|e| panic!("{e}"));
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2 slowpoke\r\n");
    let start = Instant::now();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(buf.get(..n).unwrap_or(&[]));
    }
    let elapsed = start.elapsed();
    let stopped = g.stop();
    assert!(text(&all).starts_with("SSH-2.0-sekisho"));
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(8),
        "closed after {elapsed:?}"
    );
    assert!(matches!(stopped, Ok(Ok(()))), "{stopped:?}");
}

#[test]
fn the_front_offers_only_the_ciphers_configured() {
    // `[ssh] ciphers = ["aes128-gcm@openssh.com"]`: OpenSSH, which asks for
    // chacha20-poly1305 first, takes AES-GCM and the session relays; a
    // client that will take only chacha20-poly1305 is told there is no
    // cipher in common.
    let g = InProcessGateway::start(|o| o.ciphers = vec![russh::cipher::AES_128_GCM]);
    let out = ssh("tanaka@db01")
        .port(g.addr.port())
        .arg("-v")
        .remote("echo relayed over AES-GCM")
        .output();
    let err = text(&out.stderr);
    assert_eq!(text(&out.stdout), "relayed over AES-GCM\n", "{err}");
    assert!(
        err.contains("kex: server->client cipher: aes128-gcm@openssh.com"),
        "{err}"
    );
    let out = ssh("tanaka@db01")
        .port(g.addr.port())
        // OpenSSH says why at INFO; the tests' client config logs errors only.
        .arg("-o")
        .arg("LogLevel=INFO")
        .arg("-c")
        .arg("chacha20-poly1305@openssh.com")
        .remote("true")
        .output();
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(
        text(&out.stderr).contains("no matching cipher found"),
        "{out:?}"
    );
    assert!(matches!(g.stop(), Ok(Ok(()))));
}

// ---- back side -------------------------------------------------------------

#[test]
fn password_credential_is_injected() {
    let out = ssh("tanaka@pw01").remote("id -un").output();
    assert_eq!(text(&out.stdout), "sekisho-maint\n", "{out:?}");
}

#[test]
fn a_credential_the_target_refuses_is_explained() {
    let out = ssh("tanaka@badcred").remote("true").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("refused sekisho's credential for account sekisho-maint"),
        "{err}"
    );
    assert!(
        !err.contains("not-the-maint-password"),
        "the credential leaked: {err}"
    );
    let ends = audit(&["--kind", "session_end", "--target", "badcred"]);
    assert!(
        !ends.is_empty()
            && ends.iter().all(|v| v["data"]["failure"]
                == serde_json::json!({ "phase": "sign_in", "kind": "credential_rejected" })),
        "{ends:?}"
    );
}

#[test]
fn an_unreachable_target_is_explained() {
    let out = ssh("tanaka@down").remote("true").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains(&format!("cannot reach down ({}:", gateway::DOWN)),
        "{out:?}"
    );
    let ends = audit(&["--kind", "session_end", "--target", "down"]);
    assert!(
        !ends.is_empty() && ends.iter().all(|v| v["data"]["status"] == "failed"),
        "{ends:?}"
    );
    assert!(
        ends.iter().all(|v| v["data"]["failure"]
            == serde_json::json!({ "phase": "connect", "kind": "unreachable" })),
        "{ends:?}"
    );
}

#[test]
fn full_duplex_cat_of_twenty_megabytes_does_not_stall() {
    use sha2::{Digest, Sha256};
    let mut input = Vec::with_capacity(20_000_000);
    let mut x: u32 = 0x2545_f491;
    while input.len() < 20_000_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        input.extend_from_slice(&x.to_le_bytes());
    }
    let start = Instant::now();
    let out = ssh("tanaka@db01").remote("cat").output_with_input(&input);
    assert!(
        out.status.success(),
        "{:?} {}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(out.stdout.len(), input.len());
    assert_eq!(Sha256::digest(&out.stdout), Sha256::digest(&input));
    assert!(start.elapsed() < Duration::from_secs(60));
}
