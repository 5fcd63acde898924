//! A new operator's first hour, from the README alone, against the real
//! binary and real OpenSSH: the loopback demo (init → demo policy → pins →
//! secret → serve → `ssh` through to a local sshd), what `serve` says when
//! credentials are missing, finding a past session (`sessions history`, the
//! session column of `audit`), and audit filters by target.
//! Needs openssh-server, openssh-client, dropbear-bin and util-linux, and
//! root (sshd's privilege separation directory).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::cli::{json_lines, ok, text as both};
use crate::support::free_port;
use crate::support::process::{Daemon, wait_until};
use crate::support::sshd::{keygen, require};

const PASSWORD: &str = "first-hour-pass-4711";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `sekisho -c DIR/sekisho.toml ARGS`, stdin from `input`.
fn sekisho(dir: &Path, args: &[&str], input: Option<&str>) -> Output {
    crate::support::cli::run(
        &crate::support::cli::bin(),
        &dir.join("sekisho.toml"),
        args,
        input,
    )
}

/// The value of `key = "…"` in `sekisho target pins` output.
fn pin_line(out: &str, key: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
        .map(|v| v.trim_end_matches('"').to_string())
}

/// The demo target as README's "Try it on one machine" starts it: an sshd
/// with `policies/demo/sshd_config`, its own host key and the login key.
struct DemoTarget {
    _sshd: Daemon,
    port: u16,
    host_key_pub: PathBuf,
    login_key: PathBuf,
}

fn start_demo_target(dir: &Path) -> DemoTarget {
    let sshd = require("/usr/sbin/sshd", "openssh-server");
    std::fs::create_dir_all("/run/sshd").unwrap_or_else(|e| panic!("/run/sshd: {e}"));
    let t = dir.join("target");
    std::fs::create_dir_all(&t).unwrap_or_else(|e| panic!("{e}"));
    keygen(&t.join("host_key"));
    keygen(&t.join("login_key"));
    let port = free_port();
    // The README's config, on a free port instead of 2200 (`Port` adds
    // ports, so it cannot be overridden with -o).
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/demo/sshd_config");
    let conf_text = std::fs::read_to_string(shipped).unwrap_or_else(|e| panic!("{e}"));
    assert!(conf_text.contains("\nPort 2200\n"), "{conf_text}");
    let conf = t.join("sshd_config");
    std::fs::write(
        &conf,
        conf_text.replace("\nPort 2200\n", &format!("\nPort {port}\n")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(sshd);
    cmd.args(["-D", "-e", "-f"])
        .arg(&conf)
        .arg("-o")
        .arg(format!("HostKey={}", t.join("host_key").display()))
        .arg("-o")
        .arg(format!(
            "AuthorizedKeysFile={}",
            t.join("login_key.pub").display()
        ))
        .arg("-o")
        .arg(format!("PidFile={}", t.join("sshd.pid").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let sshd = Daemon::spawn("demo sshd", &mut cmd);
    let up = wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "the demo sshd did not listen on {port}");
    DemoTarget {
        _sshd: sshd,
        port,
        host_key_pub: t.join("host_key.pub"),
        login_key: t.join("login_key"),
    }
}

/// `init`, then the bastion's listeners moved to free ports (RDP off).
fn init(dir: &Path) -> u16 {
    ok(sekisho(
        dir,
        &["init", "--dir", dir.to_str().unwrap_or("")],
        None,
    ));
    let port = free_port();
    let cfg = dir.join("sekisho.toml");
    let text = std::fs::read_to_string(&cfg).unwrap_or_else(|e| panic!("{e}"));
    // The console's default port too: two tests here serve at once.
    let text = text
        .replace("127.0.0.1:2222", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{}", free_port()))
        .replacen("[rdp]\nenabled = true", "[rdp]\nenabled = false", 1);
    assert!(text.contains("enabled = false"), "{text}");
    std::fs::write(&cfg, text).unwrap_or_else(|e| panic!("{e}"));
    port
}

/// The demo policy as README's commands fill it in.
fn install_demo_policy(dir: &Path, target: &DemoTarget, host_key: &str) {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/demo/demo.toml");
    let text = std::fs::read_to_string(demo).unwrap_or_else(|e| panic!("{e}"));
    let account = text_of(Command::new("id").arg("-un"));
    let text = text
        .replace("@ACCOUNT@", account.trim())
        .replace("@HOST_KEY@", host_key)
        .replace("port = 2200", &format!("port = {}", target.port));
    std::fs::write(dir.join("policies/demo.toml"), text).unwrap_or_else(|e| panic!("{e}"));
}

fn text_of(c: &mut Command) -> String {
    text(&c.output().unwrap_or_else(|e| panic!("{c:?}: {e}")).stdout)
}

fn spawn_serve(dir: &Path, port: u16) -> Daemon {
    let log = dir.join("serve.log");
    let mut cmd = Command::new(crate::support::cli::bin());
    cmd.arg("-c")
        .arg(dir.join("sekisho.toml"))
        .arg("serve")
        .env_remove("SEKISHO_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}")));
    let serve = Daemon::spawn("sekisho serve", &mut cmd);
    let up = wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        up,
        "serve did not listen: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    serve
}

/// The OpenSSH client through the bastion, password and code by askpass.
fn ssh(dir: &Path, port: u16, login: &str, code: &str, remote: Option<&str>) -> Output {
    let askpass = dir.join("askpass.sh");
    std::fs::write(
        &askpass,
        "#!/bin/sh\ncase \"$1\" in\n  *ode*) printf '%s\\n' \"$DEMO_CODE\" ;;\n  *) printf '%s\\n' \"$DEMO_PASSWORD\" ;;\nesac\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut c = Command::new("setsid");
    c.arg("-w")
        .arg("ssh")
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-p",
        ])
        .arg(port.to_string())
        .arg(format!("{login}@127.0.0.1"))
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DEMO_PASSWORD", PASSWORD)
        .env("DEMO_CODE", code)
        .stdin(Stdio::null());
    if let Some(r) = remote {
        c.arg(r);
    }
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("ssh: {e}"));
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

/// Dropbear's client on a terminal (it reads answers from /dev/tty):
/// password, then the code; returns what the terminal showed.
fn dbclient(port: u16, login: &str, code: &str) -> String {
    let dbclient = require("dbclient", "dropbear-bin");
    let mut c = Command::new("setsid");
    c.arg("-c")
        .arg(dbclient)
        // -y -y: no host key check and nothing written to known_hosts.
        .args(["-y", "-y", "-p", &port.to_string(), "-l", login])
        .arg("127.0.0.1")
        .arg("echo via-dropbear");
    let mut term = crate::support::pty::spawn(c, 100, 30);
    let shows = |t: &crate::support::pty::PtyChild, what: &str| {
        wait_until(Duration::from_secs(15), || t.text().contains(what))
    };
    if shows(&term, "Password:") {
        term.write(format!("{PASSWORD}\n").as_bytes());
        if shows(&term, "code:") {
            term.write(format!("{code}\n").as_bytes());
        }
        shows(&term, "via-dropbear");
    }
    let _ = wait_until(Duration::from_secs(10), || {
        matches!(term.child.try_wait(), Ok(Some(_)))
    });
    let _ = term.child.kill();
    let _ = term.child.wait();
    term.text()
}

fn totp_now(secret_base32: &str) -> String {
    let key = sekisho::auth::totp::decode_secret(secret_base32)
        .unwrap_or_else(|| panic!("not a TOTP secret: {secret_base32}"));
    let step = sekisho::auth::totp::step_at(chrono::Utc::now().timestamp());
    sekisho::auth::totp::code_for_step(&key, step, 6).unwrap_or_default()
}

#[test]
fn the_loopback_demo_reaches_its_target_and_the_session_is_found_again() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let port = init(dir);

    // The target and its pins, read by sekisho and checked as the README
    // says (ssh-keygen -lf on the target's public host key).
    let target = start_demo_target(dir);
    let pins = ok(sekisho(
        dir,
        &[
            "target",
            "pins",
            &format!("127.0.0.1:{}", target.port),
            "--only",
            "ssh",
        ],
        None,
    ));
    let host_key = pin_line(&pins, "host_key").unwrap_or_else(|| panic!("no pin: {pins}"));
    assert_eq!(
        host_key,
        crate::support::sshd::fingerprint(&target.host_key_pub)
    );
    assert!(pins.contains("ssh-ed25519"), "{pins}");
    // and as README's other way prints it.
    let scanned = text_of(Command::new("sh").arg("-c").arg(format!(
        "ssh-keyscan -t ed25519 -p {} 127.0.0.1 2>/dev/null | ssh-keygen -lf -",
        target.port
    )));
    assert!(scanned.contains(&host_key), "{scanned} vs {host_key}");
    install_demo_policy(dir, &target, &host_key);

    // People.
    ok(sekisho(dir, &["vendor", "add", "acme"], None));
    let added = ok(sekisho(
        dir,
        &[
            "user",
            "add",
            "tanaka",
            "--role",
            "engineer",
            "--vendor",
            "acme",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    ));
    let secret = added
        .lines()
        .find_map(|l| l.strip_prefix("TOTP secret: "))
        .unwrap_or_else(|| panic!("no TOTP secret: {added}"))
        .trim()
        .to_string();

    // Without the credential, serve refuses and says exactly what to store.
    let refused = sekisho(dir, &["serve"], None);
    assert!(!refused.status.success());
    let said = both(&refused);
    let cfg = dir.join("sekisho.toml");
    let command = format!("sekisho -c {} secret set demo-login-key", cfg.display());
    assert!(said.contains(&command), "{said}");

    // The credential, then serve, then policy explain says ALLOW.
    let key = std::fs::read_to_string(&target.login_key).unwrap_or_else(|e| panic!("{e}"));
    ok(sekisho(
        dir,
        &["secret", "set", "demo-login-key"],
        Some(&key),
    ));
    ok(sekisho(dir, &["policy", "check"], None));
    let explain = ok(sekisho(
        dir,
        &[
            "policy",
            "explain",
            "--user",
            "tanaka",
            "--target",
            "demo-ssh",
            "--protocol",
            "ssh",
            "--from",
            "127.0.0.1",
        ],
        None,
    ));
    assert!(explain.starts_with("ALLOW"), "{explain}");
    let _serve = spawn_serve(dir, port);

    // Dropbear first (its own sign-in, password then code): the prompts
    // are each on a line of their own, without a heading glued to them.
    let dropbear = dbclient(port, "tanaka@demo-ssh", &totp_now(&secret));
    assert!(
        dropbear.contains("via-dropbear"),
        "dbclient did not reach the target:\n{dropbear}"
    );
    assert!(!dropbear.contains("sekisho"), "{dropbear}");
    for line in dropbear.lines() {
        assert!(
            !(line.contains("Password") && line.contains("code")),
            "prompts run together: {line:?}\n{dropbear}"
        );
    }

    // OpenSSH (inside the sign-in window Dropbear opened: password only).
    let out = ssh(
        dir,
        port,
        "tanaka@demo-ssh",
        &totp_now(&secret),
        Some("echo through-the-demo"),
    );
    assert_eq!(text(&out.stdout), "through-the-demo\n", "{out:?}");
    assert!(out.status.success(), "{out:?}");
    // No heading line from the keyboard-interactive request.
    assert!(
        !text(&out.stderr).lines().any(|l| l.trim() == "sekisho"),
        "{out:?}"
    );

    // A command without a target: said plainly, exit 1, no question.
    let out = ssh(dir, port, "tanaka", "", Some("uptime"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("a command needs a target"), "{err}");
    assert!(err.contains("tanaka@demo-ssh@"), "{err}");
    assert!(
        !err.contains("(number or name") && !err.contains("Name one"),
        "{err}"
    );
    // No command and no terminal (ssh -T, or input from a pipe): the menu
    // cannot be answered, and it says so.
    let out = ssh(dir, port, "tanaka", "", None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("the target menu needs a terminal"), "{err}");

    // The past session: history finds it by every filter, and the human
    // audit lines of the session carry its ID.
    let mut ended = Vec::new();
    wait_until(Duration::from_secs(30), || {
        ended = json_lines(&ok(sekisho(
            dir,
            &["sessions", "history", "--state", "ended", "--json"],
            None,
        )));
        !ended.is_empty()
    });
    wait_until(Duration::from_secs(30), || {
        ended = json_lines(&ok(sekisho(
            dir,
            &["sessions", "history", "--state", "ended", "--json"],
            None,
        )));
        ended.len() == 2
    });
    assert_eq!(ended.len(), 2, "{ended:?}");
    // The OpenSSH session, the newer one.
    let id = ended[1]["id"].as_str().unwrap_or_default().to_string();
    for filter in [
        &["--user", "tanaka"][..],
        &["--vendor", "acme"],
        &["--target", "demo-ssh"],
        &["--protocol", "ssh"],
        &["--since", "1h"],
        &["--until", "2099-01-01"],
        &["--state", "ended"],
    ] {
        let mut args = vec!["sessions", "history", "--json"];
        args.extend_from_slice(filter);
        let found = json_lines(&ok(sekisho(dir, &args, None)));
        assert!(
            found.iter().any(|s| s["id"] == id.as_str()),
            "{filter:?}: {found:?}"
        );
    }
    for filter in [
        &["--user", "suzuki"][..],
        &["--vendor", "other"],
        &["--target", "fa-db01"],
        &["--protocol", "rdp"],
        &["--since", "2099-01-01"],
        &["--until", "1h"],
        &["--state", "killed"],
    ] {
        let mut args = vec!["sessions", "history", "--json"];
        args.extend_from_slice(filter);
        let found = json_lines(&ok(sekisho(dir, &args, None)));
        assert!(found.is_empty(), "{filter:?}: {found:?}");
    }
    let table = ok(sekisho(dir, &["sessions", "history"], None));
    let header = table.lines().next().unwrap_or_default();
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("no row for {id}: {table}"));
    for (col, value) in [
        ("TARGET", "demo-ssh"),
        ("STATE", "ended"),
        ("VENDOR", "acme"),
    ] {
        assert_eq!(
            header.find(col),
            row.find(value),
            "{col} column misaligned:\n{table}"
        );
    }
    let bad = sekisho(dir, &["sessions", "history", "--since", "yesterday"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(both(&bad).contains("--since"), "{}", both(&bad));

    let lines = ok(sekisho(dir, &["audit", "--session", &id], None));
    let kinds: Vec<&str> = lines
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert!(kinds.contains(&"allow"), "{lines}");
    assert!(kinds.contains(&"session_start"), "{lines}");
    assert!(kinds.contains(&"session_end"), "{lines}");
    for line in lines.lines() {
        assert!(
            line.contains(&id),
            "a session's audit line without its ID: {line}"
        );
    }
    // One time zone in the whole audit output (sign-ins, lock-outs and
    // tickets name lengths, not UTC clock times).
    let all = ok(sekisho(dir, &["audit"], None));
    assert!(all.contains("JST") && !all.contains("UTC"), "{all}");
    // serve's log, written to a file: no colour codes, no Rust debug
    // syntax in its fields (a sign-in without a target included).
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    assert!(log.contains("SSH sign-in succeeded"), "{log}");
    assert!(!log.contains('\x1b'), "colour in a log file:\n{log}");
    assert!(
        !log.contains("Some(") && !log.contains("=None"),
        "debug syntax in the log:\n{log}"
    );
    // and the replay tools take that ID.
    let verified = sekisho(dir, &["verify", &id], None);
    assert_eq!(verified.status.code(), Some(0), "{}", both(&verified));

    // Something refused inside a session is found by the session's target
    // and carries its protocol and ID, like every other event of it.
    let blocked = ssh(
        dir,
        port,
        "tanaka@demo-ssh",
        &totp_now(&secret),
        Some("scp -f /etc/hostname"),
    );
    assert!(!blocked.status.success(), "{blocked:?}");
    let mut events = Vec::new();
    wait_until(Duration::from_secs(30), || {
        events = json_lines(&ok(sekisho(
            dir,
            &[
                "audit",
                "--target",
                "demo-ssh",
                "--kind",
                "channel_blocked",
                "--json",
            ],
            None,
        )));
        !events.is_empty()
    });
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["target"], "demo-ssh");
    assert_eq!(events[0]["protocol"], "ssh");
    assert!(events[0]["session"].is_string(), "{events:?}");
}

#[test]
fn target_pins_reads_an_rdp_certificate_as_openssl_sees_it() {
    // sekisho's own RDP listener is a real RDP server (X.224, then TLS)
    // whose certificate file is at hand to compare with.
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let ssh_port = init(dir);
    let rdp_port = free_port();
    let cfg = dir.join("sekisho.toml");
    let text = std::fs::read_to_string(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let text = text
        .replacen("[rdp]\nenabled = false", "[rdp]\nenabled = true", 1)
        .replace("127.0.0.1:3389", &format!("127.0.0.1:{rdp_port}"));
    std::fs::write(&cfg, text).unwrap_or_else(|e| panic!("{e}"));
    let _serve = spawn_serve(dir, ssh_port);
    assert!(wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", rdp_port)).is_ok()
    }));

    let out = sekisho(
        dir,
        &[
            "target",
            "pins",
            "127.0.0.1",
            "--rdp-port",
            &rdp_port.to_string(),
            "--only",
            "rdp",
        ],
        None,
    );
    let said = ok(out);
    let pin = pin_line(&said, "cert_sha256").unwrap_or_else(|| panic!("no pin: {said}"));
    let openssl = require("openssl", "openssl");
    let fp = text_of(
        Command::new(openssl)
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(dir.join("keys/rdp_tls_cert.pem")),
    );
    let want = fp.trim().rsplit('=').next().unwrap_or_default().to_string();
    assert_eq!(pin, want, "{said}\n{fp}");

    // A port where nothing answers: said, and exit 1.
    let closed = free_port();
    let out = sekisho(
        dir,
        &[
            "target",
            "pins",
            &format!("127.0.0.1:{closed}"),
            "--only",
            "ssh",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(both(&out).contains("no host key read"), "{}", both(&out));
}

/// A dropped RDP connection resumed with sekisho's auto-reconnect cookie is
/// a second session whose `session_start` names the first in `resumes`
/// (README "Connecting over RDP"): `sessions history` shows the link, in
/// the table (a RESUMES column) and in JSON. The two sessions are written to
/// the store as `serve` writes them; the resumption itself is tested with
/// FreeRDP and xrdp in rdp_signin.
#[test]
fn history_shows_which_session_a_resumed_rdp_session_continues() {
    use sekisho::store::{AuditEvent, AuditKind, NewSession, Store};
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    init(dir);
    let list = |args: &[&str]| ok(sekisho(dir, args, None));
    let first = uuid::Uuid::now_v7();
    let second = uuid::Uuid::now_v7();
    let ssh = uuid::Uuid::now_v7();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let url = format!("sqlite://{}", dir.join("sekisho.db").display());
        let store = Store::open(&url, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let now = chrono::Utc::now();
        for (id, protocol, resumes) in [
            (ssh, "ssh", None),
            (first, "rdp", None),
            (second, "rdp", Some(first)),
        ] {
            store
                .start_session(&NewSession {
                    id,
                    user: "kato".into(),
                    vendor: Some("acme".into()),
                    target: "xrdp1".into(),
                    protocol: protocol.into(),
                    client: "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}")),
                    parent: None,
                    node: "a".into(),
                    started_at: now,
                    ends_at: None,
                    recording_path: None,
                    work_request: None,
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let mut start = AuditEvent::new(AuditKind::SessionStart, "kato started a session")
                .session(id)
                .user("kato")
                .target("xrdp1")
                .protocol(protocol);
            if let Some(r) = resumes {
                start = start.with("resumes", r.to_string());
            }
            store.audit(&start).await.unwrap_or_else(|e| panic!("{e}"));
        }
    });
    // A listing without a resumed session has no RESUMES column.
    let only_ssh = list(&["sessions", "history", "--protocol", "ssh"]);
    assert!(!only_ssh.contains("RESUMES"), "{only_ssh}");

    let json = json_lines(&list(&["sessions", "history", "--json"]));
    let resumes = |id: uuid::Uuid| {
        json.iter()
            .find(|s| s["id"] == id.to_string().as_str())
            .map(|s| s["resumes"].clone())
            .unwrap_or_else(|| panic!("{id} not listed: {json:?}"))
    };
    assert_eq!(resumes(second), first.to_string().as_str());
    assert!(resumes(first).is_null());
    assert!(resumes(ssh).is_null());

    let table = list(&["sessions", "history"]);
    let header = table.lines().next().unwrap_or_default();
    assert!(header.trim_end().ends_with("RESUMES"), "{table}");
    let row = |id: uuid::Uuid| {
        table
            .lines()
            .find(|l| l.starts_with(&id.to_string()))
            .unwrap_or_else(|| panic!("no row for {id}: {table}"))
            .to_string()
    };
    assert_eq!(
        header.find("RESUMES"),
        row(second).find(&first.to_string()),
        "RESUMES misaligned:\n{table}"
    );
    assert!(row(first).trim_end().ends_with('-'), "{table}");
}
