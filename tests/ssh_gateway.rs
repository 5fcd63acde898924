//! The SSH gateway end to end: the real OpenSSH client → sekisho → a real
//! OpenSSH sshd, with the in-memory core of `support::fake_core`.
//! Needs the Debian packages openssh-server, openssh-client, util-linux.

mod support;

use std::time::{Duration, Instant};

use sekisho::ssh::core::{EndStatus, SessionEvent};
use support::{FAILURE_DELAY, env, fake_core, ssh, text, wait_for};

fn assert_denied_generic(out: &std::process::Output) {
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("Permission denied"), "stderr: {err}");
    assert!(
        !err.contains("sekisho:"),
        "a sign-in failure must not explain itself: {err}"
    );
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
    assert!(
        audit.iter().any(|l| l == "signin tanaka password ok"),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|l| l == "signin tanaka code ok"),
        "{audit:?}"
    );
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
    assert!(
        audit.iter().any(|l| l == "signin tanaka publickey ok"),
        "{audit:?}"
    );
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
    assert!(
        start.elapsed() >= FAILURE_DELAY,
        "failures must be slowed down"
    );
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
    assert!(
        env()
            .core
            .audit_lines()
            .iter()
            .any(|l| l == "signin tanaka code fail")
    );
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
    let first = ssh("ito@db01")
        .password("ito-pass")
        .remote("echo one")
        .output();
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
    let out = ssh("sato@db01")
        .password("sato-pass")
        .remote("true")
        .output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("sekisho: access denied: outside allowed hours (Mon-Fri 08:30-17:15)"),
        "{err}"
    );
    assert!(
        env()
            .core
            .audit_lines()
            .iter()
            .any(|l| l.starts_with("denied sato db01"))
    );
}

#[test]
fn outside_the_contract_is_denied_with_the_reason() {
    let out = ssh("kato@db01")
        .password("kato-pass")
        .remote("true")
        .output();
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
    assert!(
        text(&out.stderr).contains("no target named \"nosuch\""),
        "{out:?}"
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
}

#[test]
fn no_recording_no_session() {
    let out = ssh("tanaka@norec").remote("echo should-not-run").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stdout).is_empty());
    assert!(text(&out.stderr).contains("cannot be recorded"), "{out:?}");
}

// ---- channels refused -------------------------------------------------

fn refused_in_audit(kind: &str, detail_part: &str) -> bool {
    env()
        .core
        .audit_lines()
        .iter()
        .any(|l| l.starts_with(&format!("refused tanaka {kind}")) && l.contains(detail_part))
}

/// An `scp` that uses `ssh -F` with askpass (password + code).
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
        .args(args)
        .env("SSH_ASKPASS", &e.askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("SEKISHO_TEST_PASSWORD", support::PASSWORD)
        .env("SEKISHO_TEST_CODE", fake_core::totp_now())
        .stdin(std::process::Stdio::null());
    support::sshd::run(&mut c)
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
        .arg("tanaka@db01@127.0.0.1")
        .env("SSH_ASKPASS", &e.askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("SEKISHO_TEST_PASSWORD", support::PASSWORD)
        .env("SEKISHO_TEST_CODE", fake_core::totp_now())
        .stdin(std::process::Stdio::null());
    let out = support::sshd::run(&mut c);
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
    let local = support::sshd::free_port();
    let mut child = forwarding_client("-L", &format!("{local}:127.0.0.1:{target}"));
    assert!(wait_for(Duration::from_secs(10), || {
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

    let socks = support::sshd::free_port();
    let mut child = forwarding_client("-D", &format!("127.0.0.1:{socks}"));
    assert!(wait_for(Duration::from_secs(10), || {
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
    assert!(wait_for(Duration::from_secs(5), || sock.exists()));
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

/// The session whose recorded input contains `needle`.
fn session_with_input(needle: &str) -> Option<uuid::Uuid> {
    let state = env().core.state.lock().ok()?;
    state.recordings.iter().find_map(|(id, rec)| {
        let rec = rec.lock().ok()?;
        let typed: Vec<u8> = rec
            .events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Input { data, .. } => Some(data.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        text(&typed).contains(needle).then_some(*id)
    })
}

fn recorded_output(id: uuid::Uuid, want_stderr: bool) -> Vec<u8> {
    env()
        .core
        .events(id)
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Output { stderr, data, .. } if *stderr == want_stderr => {
                Some(data.to_vec())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn interactive_shell_on_a_terminal_relays_size_and_resizes() {
    let mut term = support::pty::spawn(ssh("tanaka@db01").arg("-t").command(), 100, 30);
    assert!(
        wait_for(Duration::from_secs(10), || term.text().contains("root@")),
        "{}",
        term.text()
    );
    term.write(b"echo size-marker; stty size\n");
    assert!(
        wait_for(Duration::from_secs(5), || term.text().contains("30 100")),
        "{}",
        term.text()
    );
    term.resize(120, 40);
    std::thread::sleep(Duration::from_millis(300));
    term.write(b"stty size\n");
    assert!(
        wait_for(Duration::from_secs(5), || term.text().contains("40 120")),
        "{}",
        term.text()
    );
    term.write(b"exit 6\n");
    assert!(wait_for(Duration::from_secs(5), || matches!(
        term.child.try_wait(),
        Ok(Some(_))
    )));
    assert_eq!(term.child.wait().ok().and_then(|s| s.code()), Some(6));
    let id = session_with_input("size-marker").unwrap_or_else(|| panic!("no recording"));
    let events = env().core.events(id);
    assert!(
        events.iter().any(|e| matches!(
            e,
            SessionEvent::Pty {
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
            SessionEvent::Resize {
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
    let out = ssh("tanaka@db01")
        .arg("-tt")
        .output_with_input(b"echo pty-marker-$((6*7))\nstty size\nexit 5\n");
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let shown = text(&out.stdout);
    assert!(shown.contains("pty-marker-42"), "{shown}");
    let id = session_with_input("pty-marker-").unwrap_or_else(|| panic!("no recording"));
    assert!(wait_for(Duration::from_secs(5), || env().core.finished(id)));
    let events = env().core.events(id);
    assert!(
        events.iter().any(|e| matches!(e, SessionEvent::Pty { .. })),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::Shell { .. }))
    );
    assert!(events.iter().any(|e| matches!(
        e,
        SessionEvent::Exit {
            status: sekisho::ssh::core::ExitStatus::Code(5),
            ..
        }
    )));
    // Replaying the recorded output gives exactly what the person saw.
    assert_eq!(recorded_output(id, false), out.stdout);
    let end = env().core.ended(id).unwrap_or_else(|| panic!("no end"));
    assert_eq!(end.status, EndStatus::Completed);
}

#[test]
fn exec_recording_keeps_command_stdout_and_stderr_apart() {
    let out = ssh("tanaka@db01")
        .remote("cat; echo rec-out-$((1+1)); echo rec-err >&2; exit 4")
        .output_with_input(b"typed-rec-input\n");
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let id = session_with_input("typed-rec-input").unwrap_or_else(|| panic!("no recording"));
    assert!(wait_for(Duration::from_secs(5), || env().core.finished(id)));
    let events = env().core.events(id);
    assert!(
        events.iter().any(
            |e| matches!(e, SessionEvent::Exec { command, .. } if command.contains("rec-out-"))
        )
    );
    assert_eq!(recorded_output(id, false), out.stdout);
    assert_eq!(text(&recorded_output(id, true)), "rec-err\n");
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
    let core = &env().core;
    let mut ids = Vec::new();
    assert!(wait_for(Duration::from_secs(10), || {
        ids = core.live_sessions("tanaka", "app01");
        !ids.is_empty()
    }));
    std::thread::sleep(Duration::from_millis(300));
    let id = ids[0];
    let killed_at = Instant::now();
    assert!(core.kill(id, "maintenance stopped by the duty officer"));
    let exited = wait_for(Duration::from_secs(2), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    let elapsed = killed_at.elapsed();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        exited && elapsed < Duration::from_millis(1500),
        "took {elapsed:?}"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("sekisho: session ended: stopped by an administrator: maintenance stopped by the duty officer"),
        "{err}"
    );
    assert!(wait_for(Duration::from_secs(3), || core
        .ended(id)
        .is_some()));
    assert_eq!(core.ended(id).map(|e| e.status), Some(EndStatus::Killed));
}

#[test]
fn the_grant_end_warns_then_ends_the_session() {
    let start = Instant::now();
    let out = ssh("tanaka@short").remote("sleep 30").output();
    let elapsed = start.elapsed();
    let err = text(&out.stderr);
    assert!(elapsed < Duration::from_secs(12), "took {elapsed:?}");
    assert!(err.contains("sekisho: this session ends at"), "{err}");
    assert!(
        err.contains("sekisho: session ended: the granted time ended"),
        "{err}"
    );
}

#[test]
fn idle_sessions_end() {
    let start = Instant::now();
    let out = ssh("tanaka@db01")
        .port(env().idle_port)
        .remote("sleep 30")
        .output();
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(
        text(&out.stderr).contains("sekisho: session ended: no input for 2s"),
        "{out:?}"
    );
}

// ---- target menu ---------------------------------------------------------

#[test]
fn without_a_target_the_menu_connects_to_the_chosen_one() {
    let mut term = support::pty::spawn(ssh("tanaka").arg("-t").command(), 100, 30);
    let shows = |term: &support::pty::PtyChild, what: &str| {
        wait_for(Duration::from_secs(15), || term.text().contains(what))
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
    let exited = wait_for(Duration::from_secs(10), || {
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
    assert!(err.contains("db01") && err.contains("Name one"), "{err}");
}

#[test]
fn exit_signal_is_relayed_and_recorded() {
    let out = ssh("tanaka@db01")
        .remote("echo sig-marker; kill -TERM $$")
        .output_with_input(b"sig-input-marker\n");
    // OpenSSH exits 255 when the remote command died of a signal.
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let id = session_with_input("sig-input-marker").unwrap_or_else(|| panic!("no recording"));
    assert!(wait_for(Duration::from_secs(5), || env().core.finished(id)));
    let events = env().core.events(id);
    assert!(
        events.iter().any(|e| matches!(e,
            SessionEvent::Exit { status: sekisho::ssh::core::ExitStatus::Signal { name, .. }, .. } if name == "TERM")),
        "{events:?}"
    );
}

#[test]
fn a_recording_that_breaks_ends_the_session() {
    let out = ssh("tanaka@recbreak")
        .remote("for i in $(seq 1 100); do echo line$i; sleep 0.05; done")
        .output();
    let shown = text(&out.stdout);
    assert!(
        !shown.contains("line100"),
        "the session went on unrecorded: {shown}"
    );
    assert!(
        text(&out.stderr).contains("session ended: recording failed: no space left"),
        "{out:?}"
    );
}

#[test]
fn keyboard_interactive_alone_asks_password_then_code() {
    let wrong = ssh("tanaka@db01")
        .arg("-o")
        .arg("PreferredAuthentications=keyboard-interactive")
        .code(&fake_core::wrong_code())
        .remote("echo kbd-only")
        .output();
    assert_denied_generic(&wrong);
    let out = ssh("tanaka@db01")
        .arg("-o")
        .arg("PreferredAuthentications=keyboard-interactive")
        .remote("echo kbd-only")
        .output();
    assert_eq!(text(&out.stdout), "kbd-only\n", "{out:?}");
}

#[test]
fn ticket_as_a_keyboard_interactive_answer() {
    env().core.add_ticket("tkt-KBD-0042", "tanaka", "db01");
    let out = ssh("tanaka@db01")
        .arg("-o")
        .arg("PreferredAuthentications=keyboard-interactive")
        .password("tkt-KBD-0042")
        .code("not-asked")
        .remote("echo kbd-ticket")
        .output();
    assert_eq!(text(&out.stdout), "kbd-ticket\n", "{out:?}");
}

#[test]
fn a_ticket_names_the_target_when_the_user_name_does_not() {
    env().core.add_ticket("tkt-NOTARGET-7", "tanaka", "db01");
    let out = ssh("tanaka")
        .password("tkt-NOTARGET-7")
        .code("not-asked")
        .remote("echo ticket-target")
        .output();
    assert_eq!(text(&out.stdout), "ticket-target\n", "{out:?}");
}

#[test]
fn shutdown_ends_live_sessions_with_a_message_and_stops_listening() {
    let e = env();
    let (port, stop) = support::start_gateway_until(&e.host_key, e.core.clone(), e.limits.clone());
    let mut child = ssh("tanaka@shutdown01")
        .port(port)
        .remote("echo up; sleep 30")
        .spawn();
    assert!(wait_for(Duration::from_secs(10), || !e
        .core
        .live_sessions("tanaka", "shutdown01")
        .is_empty()));
    std::thread::sleep(Duration::from_millis(300));
    let _ = stop.send(());
    let exited = wait_for(Duration::from_secs(3), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    let _ = child.kill();
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(exited, "the session outlived the shutdown");
    assert!(
        text(&out.stderr).contains("sekisho: session ended: sekisho is shutting down"),
        "{out:?}"
    );
    assert!(wait_for(Duration::from_secs(3), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    }));
}

#[test]
fn a_client_that_does_not_sign_in_is_cut_after_the_grace_time() {
    use std::io::{Read, Write};
    let e = env();
    let limits = sekisho::ssh::Limits {
        login_grace: Duration::from_secs(2),
        ..e.limits.clone()
    };
    let (port, _stop) = support::start_gateway_until(&e.host_key, e.core.clone(), limits);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
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
    assert!(text(&all).starts_with("SSH-2.0-sekisho"));
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(8),
        "closed after {elapsed:?}"
    );
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
}

#[test]
fn an_unreachable_target_is_explained() {
    let out = ssh("tanaka@down").remote("true").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("cannot reach down (127.0.0.1:"),
        "{out:?}"
    );
    let ended = env().core.audit_lines();
    assert!(
        ended
            .iter()
            .any(|l| l.starts_with("session-ended") && l.contains("target-failed")),
        "{ended:?}"
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
