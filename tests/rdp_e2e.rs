//! RDP through sekisho as an operator runs it: `sekisho init`, the admin
//! commands, a real `sekisho serve` process, xfreerdp3 as the client and
//! xrdp as a physical target. The store, policy, secret store, sign-in and
//! recording archive are the real ones; nothing is faked.

#[path = "support/rdp_peers.rs"]
mod rdp_peers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdp_peers::*;

const PASSWORD: &str = "rdp-e2e-password";
const USERS: [&str; 5] = ["tanaka", "suzuki", "sato", "ito", "kato"];
/// Where sekisho listens; the client connects from 127.0.0.1.
const FRONT: &str = "127.0.0.1";
/// Where xrdp listens. Not the client's address: RDP coming from a
/// target's address is a server-to-server hop under the RDP rule.
const TARGET_IP: &str = "127.0.0.2";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sekisho"))
}

fn sekisho(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(dir.join("sekisho.toml"))
        .args(args)
        .env_remove("SEKISHO_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sekisho");
    if let Some(mut i) = child.stdin.take()
        && let Some(s) = stdin
    {
        i.write_all(s.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("wait sekisho")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    let t = text(&o);
    assert!(o.status.success(), "command failed: {t}");
    t
}

/// A deployment made with `sekisho init`, xrdp as the physical target
/// `xrdp1` (and, for the RDP rule, the same server declared as the virtual
/// target `vm1` on another loopback address), and a running `sekisho serve`. Everything stops on drop.
struct Deployment {
    dir: PathBuf,
    rdp_port: u16,
    totp: Vec<(String, Vec<u8>)>,
    _serve: Daemon,
    _xrdp: Xrdp,
    _tmp: tempfile::TempDir,
}

impl Deployment {
    fn start() -> Deployment {
        let tmp = tempfile::Builder::new()
            .prefix("sekisho-rdp-e2e")
            .tempdir()
            .expect("tempdir");
        // The target writes marker files here as its own user.
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        let dir = tmp.path().join("bastion");
        ok(sekisho(
            &dir,
            &["init", "--dir", dir.to_str().expect("utf8")],
            None,
        ));
        let xrdp = Xrdp::start_at(tmp.path(), TARGET_IP);
        // The pin an admin would take after checking the certificate.
        let pin = probe_cert_sha256_at(TARGET_IP, xrdp.port);
        assert_eq!(pin, xrdp.pin, "the probe saw another certificate");
        let pin_hex: String = pin.iter().map(|b| format!("{b:02X}")).collect();

        let rdp_port = free_port();
        std::fs::write(
            dir.join("sekisho.toml"),
            format!(
                r#"
[ssh]
enabled = false
[rdp]
listen = "{FRONT}:{rdp_port}"
keyframe_interval = "1s"
[auth]
failure_delay = "100ms"
signin_window = "0"
[sessions]
idle_timeout = "0"
warn_before_end = "1m"
[[network]]
name = "lab"
cidrs = ["127.0.0.0/8"]
"#
            ),
        )
        .expect("config");
        std::fs::write(
            dir.join("policies/lab.toml"),
            format!(
                r#"
[system]
name = "lab"
zone = "lgwan"

[[target]]
name = "xrdp1"
address = "{TARGET_IP}"
kind = "physical"
rdp = {{ port = {port}, account = "{account}", credential = "xrdp1-pw", cert_sha256 = "{pin_hex}" }}

[[target]]
name = "vm1"
address = "127.0.0.4"
kind = "virtual"
rdp = {{ port = {port}, account = "{account}", credential = "xrdp1-pw", cert_sha256 = "{pin_hex}" }}

[[target]]
name = "down1"
address = "127.0.0.5"
kind = "physical"
rdp = {{ port = {port}, account = "{account}", credential = "xrdp1-pw", cert_sha256 = "{pin_hex}" }}

[[access]]
vendor = "acme"
users = ["tanaka", "suzuki", "sato", "ito", "kato"]
contract = {{ from = "2026-01-01", until = "2099-12-31" }}
hours = "always"
max_session = "2h"
protocols = ["rdp"]
sources = ["lab"]
"#,
                port = xrdp.port,
                account = TEST_USER,
            ),
        )
        .expect("policy");

        ok(sekisho(&dir, &["vendor", "add", "acme"], None));
        let mut totp = Vec::new();
        for user in USERS {
            let out = ok(sekisho(
                &dir,
                &[
                    "user",
                    "add",
                    user,
                    "--role",
                    "engineer",
                    "--vendor",
                    "acme",
                    "--password-stdin",
                ],
                Some(&format!("{PASSWORD}\n")),
            ));
            let secret = out
                .lines()
                .find_map(|l| l.strip_prefix("TOTP secret: "))
                .expect("TOTP secret printed")
                .trim()
                .to_string();
            let key = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, &secret)
                .expect("base32 secret");
            totp.push((user.to_string(), key));
        }
        ok(sekisho(
            &dir,
            &["secret", "set", "xrdp1-pw"],
            Some(TEST_PASSWORD),
        ));
        let check = ok(sekisho(&dir, &["policy", "check"], None));
        assert!(check.contains("OK"), "{check}");

        let log = std::fs::File::create(dir.join("serve.log")).expect("serve log");
        let serve = Daemon::spawn(
            "sekisho serve",
            Command::new(bin())
                .arg("--config")
                .arg(dir.join("sekisho.toml"))
                .arg("serve")
                .env("SEKISHO_LOG", "sekisho=debug")
                .env_remove("SEKISHO_CONFIG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        );
        let up = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect((FRONT, rdp_port)).is_ok()
        });
        let d = Deployment {
            dir,
            rdp_port,
            totp,
            _serve: serve,
            _xrdp: xrdp,
            _tmp: tmp,
        };
        assert!(up, "sekisho serve did not listen: {}", d.serve_log());
        d
    }

    fn serve_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    fn tmp(&self) -> &Path {
        self._tmp.path()
    }

    /// The current TOTP code of `user`.
    fn code(&self, user: &str) -> String {
        let key = &self
            .totp
            .iter()
            .find(|(u, _)| u == user)
            .expect("known user")
            .1;
        let step = chrono::Utc::now().timestamp() / 30;
        sekisho::auth::totp::code_for_step(key, step, 6).expect("code")
    }

    /// Audit events of `kind` for `user`, as JSON.
    fn audit(&self, kind: &str, user: &str) -> Vec<serde_json::Value> {
        let out = ok(sekisho(
            &self.dir,
            &["audit", "--kind", kind, "--user", user, "--json"],
            None,
        ));
        out.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn audit_session(&self, session: &str) -> Vec<serde_json::Value> {
        let out = ok(sekisho(
            &self.dir,
            &["audit", "--session", session, "--json"],
            None,
        ));
        out.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// xfreerdp3 on `display` through sekisho as `login`.
    fn client(&self, display: &str, login: &str, password: &str, extra: &[&str]) -> Client {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self
            .tmp()
            .join(format!("client-{n}-{}.log", login.replace('@', "_")));
        let log_file = std::fs::File::create(&log).expect("client log");
        let err_file = log_file.try_clone().expect("clone log");
        let daemon = Daemon::spawn(
            "xfreerdp3",
            Command::new("xfreerdp3")
                .env("DISPLAY", display)
                .env("WLOG_LEVEL", "INFO")
                .arg(format!("/v:{FRONT}:{}", self.rdp_port))
                .arg(format!("/u:{login}"))
                .arg(format!("/p:{password}"))
                .args(["/cert:ignore", "/size:1024x768", "-grab-keyboard"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(err_file),
        );
        Client { daemon, log }
    }
}

struct Client {
    daemon: Daemon,
    log: PathBuf,
}

impl Client {
    fn log(&self) -> String {
        client_log(&self.log)
    }

    /// Wait for the client to exit by itself; `None` if still connected.
    fn exit_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.daemon.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }
}

fn session_user_running() -> bool {
    Command::new("pgrep")
        .args(["-u", TEST_USER, "xterm"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn find_archive(root: &Path, session: &str) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()? {
            let p = entry.ok()?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_stem()
                .is_some_and(|s| s.to_string_lossy() == session)
            {
                return Some(p);
            }
        }
    }
    None
}

/// Peers, lock and a clean test account, in that order.
fn prepare() -> PeerLock {
    require_rdp_peers();
    let lock = lock_peers();
    ensure_test_user();
    end_test_user_sessions();
    lock
}

#[test]
fn password_and_code_reach_xrdp_and_the_session_is_audited_and_recorded() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let share = d.tmp().join("share");
    std::fs::create_dir(&share).expect("share dir");
    let drive = format!("/drive:share,{}", share.display());

    let code = d.code("tanaka");
    let mut client = d.client(
        &x.display,
        "tanaka@xrdp1",
        &format!("{PASSWORD}{code}"),
        &["/sec:tls", "+clipboard", &drive],
    );
    let up = wait_until(Duration::from_secs(30), session_user_running);
    assert!(
        up,
        "no session of {TEST_USER} on the target.\nclient log:\n{}\nserve log:\n{}",
        client.log(),
        d.serve_log()
    );
    std::thread::sleep(Duration::from_secs(3));
    let marker = d.tmp().join("typed.txt");
    type_into_client(&x.display, &format!("id -un > {}", marker.display()));
    let typed = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&marker).is_ok_and(|s| s.trim() == TEST_USER)
    });
    assert!(
        typed,
        "typed command did not run on the target.\nclient log:\n{}\nserve log:\n{}",
        client.log(),
        d.serve_log()
    );
    // Long enough for a few keyframes (one a second).
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        client.exit_within(Duration::ZERO).is_none(),
        "client gone early"
    );
    drop(client);
    end_test_user_sessions();

    // The audit trail of the session.
    let start = d.audit("session_start", "tanaka");
    assert_eq!(start.len(), 1, "{start:?}");
    let session = start[0]["session"]
        .as_str()
        .expect("session id")
        .to_string();
    assert_eq!(start[0]["protocol"], "rdp");
    let ended = wait_until(Duration::from_secs(10), || {
        !d.audit("session_end", "tanaka").is_empty()
    });
    assert!(ended, "no session_end.\nserve log:\n{}", d.serve_log());
    let events = d.audit_session(&session);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["allow", "session_start", "session_end"] {
        assert!(
            kinds.contains(&kind),
            "no {kind} for the session: {kinds:?}"
        );
    }
    let blocked: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == "channel_blocked")
        .map(|e| e["detail"].as_str().unwrap_or_default().to_string())
        .collect();
    for channel in ["cliprdr", "rdpdr", "rdpsnd"] {
        assert!(
            blocked.iter().any(|b| b.contains(channel)),
            "{channel} not audited as blocked: {blocked:?}"
        );
    }
    let signins = d.audit("signin_success", "tanaka");
    let methods: Vec<&str> = signins
        .iter()
        .filter_map(|e| e["data"]["method"].as_str())
        .collect();
    assert!(
        methods.contains(&"password") && methods.contains(&"totp"),
        "sign-in methods: {methods:?}"
    );
    let end = events
        .iter()
        .find(|e| e["kind"] == "session_end")
        .expect("session_end");
    assert_eq!(end["data"]["status"], "ended", "{end}");

    // The archive: intact, with what a replayer needs.
    let verify = sekisho(&d.dir, &["verify", &session], None);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let archive = find_archive(&d.dir.join("recordings"), &session).expect("archive file");
    let mut reader = sekisho::recording::Reader::open(&archive).expect("open archive");
    let meta = reader.meta().clone();
    assert_eq!(meta.user, "tanaka");
    assert_eq!(meta.target, "xrdp1");
    let desktop = meta.desktop.expect("desktop size in the header");
    assert_eq!((desktop.width, desktop.height), (1024, 768));
    let info = &meta.protocol_info;
    assert!(info["io_channel"].as_u64().is_some(), "{info}");
    assert!(info["user_channel"].as_u64().is_some(), "{info}");
    let channels: Vec<&str> = info["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(channels, vec!["drdynvc"], "{info}");
    let (mut input, mut output, mut keyframes, mut refused, mut share) = (0, 0, 0, 0, 0);
    for ev in reader.events() {
        match ev.expect("event").event {
            sekisho::recording::Event::Input { .. } => input += 1,
            sekisho::recording::Event::Output { .. } => output += 1,
            sekisho::recording::Event::Keyframe => keyframes += 1,
            sekisho::recording::Event::ChannelRefused { .. } => refused += 1,
            sekisho::recording::Event::Mark { label, .. } if label == "share_activated" => {
                share += 1
            }
            _ => {}
        }
    }
    assert!(input > 20, "only {input} input events");
    assert!(output > 0, "no output events");
    assert!(keyframes >= 1, "no keyframe");
    assert!(refused >= 3, "{refused} channel refusals recorded");
    assert!(share >= 1, "no share activation recorded");
    assert!(
        !reader.keyframes().expect("index").is_empty(),
        "no keyframe in the index"
    );
}

#[test]
fn wrong_code_virtual_target_and_unreachable_target_are_refused_and_audited() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();

    // A wrong code: refused before anything reaches the target.
    let good = d.code("suzuki");
    let wrong: String = good
        .chars()
        .map(|c| {
            let n = c.to_digit(10).expect("digit");
            char::from_digit((n + 5) % 10, 10).expect("digit")
        })
        .collect();
    let mut client = d.client(
        &x.display,
        "suzuki@xrdp1",
        &format!("{PASSWORD}{wrong}"),
        &["/sec:tls"],
    );
    let status = client.exit_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "client not refused ({status:?}):\n{}",
        client.log()
    );
    assert!(!session_user_running(), "a session reached the target");
    let failures = d.audit("signin_failure", "suzuki");
    assert!(!failures.is_empty(), "no signin_failure for suzuki");
    assert!(
        d.audit("allow", "suzuki").is_empty(),
        "a refused sign-in was allowed"
    );
    drop(client);

    // The RDP rule: a virtual server is maintained over SSH, never RDP.
    let code = d.code("sato");
    let mut client = d.client(
        &x.display,
        "sato@vm1",
        &format!("{PASSWORD}{code}"),
        &["/sec:tls"],
    );
    let status = client.exit_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "client not refused ({status:?}):\n{}",
        client.log()
    );
    assert!(!session_user_running(), "a session reached the target");
    let deny = d.audit("deny", "sato");
    assert!(
        deny.iter().any(|e| e["data"]["rule"] == "rdp_virtual"),
        "no rdp_virtual deny: {deny:?}"
    );
    assert!(d.audit("session_start", "sato").is_empty());

    // A physical target that does not answer: refused, and the session's
    // row and archive say it failed.
    let code = d.code("tanaka");
    let mut client = d.client(
        &x.display,
        "tanaka@down1",
        &format!("{PASSWORD}{code}"),
        &["/sec:tls"],
    );
    let status = client.exit_within(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| !s.success()),
        "client not refused ({status:?}):\n{}",
        client.log()
    );
    let mut end = Vec::new();
    let ended = wait_until(Duration::from_secs(10), || {
        end = d.audit("session_end", "tanaka");
        !end.is_empty()
    });
    assert!(ended, "no session_end.\nserve log:\n{}", d.serve_log());
    assert_eq!(end[0]["data"]["status"], "failed", "{end:?}");
    let id = end[0]["session"].as_str().expect("session id");
    let verify = sekisho(&d.dir, &["verify", id], None);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

#[test]
fn admin_kill_disconnects_the_client_and_the_session_ends_killed() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let code = d.code("ito");
    let mut client = d.client(
        &x.display,
        "ito@xrdp1",
        &format!("{PASSWORD}{code}"),
        &["/sec:tls"],
    );
    let mut id = String::new();
    let live = wait_until(Duration::from_secs(30), || {
        let out = ok(sekisho(&d.dir, &["sessions", "list", "--json"], None));
        match out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["user"] == "ito")
        {
            Some(v) => {
                id = v["id"].as_str().unwrap_or_default().to_string();
                true
            }
            None => false,
        }
    });
    assert!(
        live,
        "session never became live.\nclient log:\n{}\nserve log:\n{}",
        client.log(),
        d.serve_log()
    );
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "no session on the target:\n{}",
        client.log()
    );
    let kill = sekisho(
        &d.dir,
        &["sessions", "kill", &id, "--reason", "emergency stop test"],
        None,
    );
    let kill_text = text(&kill);
    assert!(kill.status.success(), "{kill_text}");
    assert!(kill_text.contains("killed"), "{kill_text}");
    let exited = client.exit_within(Duration::from_secs(10));
    assert!(
        exited.is_some(),
        "client still connected after kill:\n{}",
        client.log()
    );
    let end = d.audit("session_end", "ito");
    assert!(
        end.iter()
            .any(|e| e["session"] == id.as_str() && e["data"]["status"] == "killed"),
        "session_end: {end:?}"
    );
    let verify = sekisho(&d.dir, &["verify", &id], None);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    drop(client);
    end_test_user_sessions();
}

#[test]
fn nla_sign_in_with_a_one_time_ticket_reaches_xrdp_once() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let issued = ok(sekisho(
        &d.dir,
        &[
            "ticket",
            "issue",
            "--user",
            "kato",
            "--target",
            "xrdp1",
            "--protocol",
            "rdp",
        ],
        None,
    ));
    let ticket = issued
        .lines()
        .next()
        .expect("the ticket on the first line")
        .trim()
        .to_string();

    // mstsc-style: NLA (CredSSP/NTLM) with the ticket as the password.
    let client = d.client(&x.display, "kato@xrdp1", &ticket, &["/sec:nla"]);
    let up = wait_until(Duration::from_secs(30), session_user_running);
    assert!(
        up,
        "NLA session did not reach the target.\nclient log:\n{}\nserve log:\n{}",
        client.log(),
        d.serve_log()
    );
    drop(client);
    end_test_user_sessions();
    let signins = d.audit("signin_success", "kato");
    assert!(
        signins.iter().any(|e| e["data"]["method"] == "ticket"),
        "{signins:?}"
    );
    assert_eq!(d.audit("session_start", "kato").len(), 1);

    // The same ticket again: refused, nothing reaches the target.
    let mut again = d.client(&x.display, "kato@xrdp1", &ticket, &["/sec:nla"]);
    let status = again.exit_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "a spent ticket was accepted ({status:?}):\n{}",
        again.log()
    );
    assert!(!session_user_running(), "a session reached the target");
    assert_eq!(d.audit("session_start", "kato").len(), 1);
    assert!(
        !d.audit("signin_failure", "kato").is_empty(),
        "the refused NLA sign-in is not audited"
    );

    // A password with a code is no NLA secret: refused and audited.
    let code = d.code("kato");
    let mut pw = d.client(
        &x.display,
        "kato@xrdp1",
        &format!("{PASSWORD}{code}"),
        &["/sec:nla"],
    );
    let status = pw.exit_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "NLA with a password was accepted ({status:?}):\n{}",
        pw.log()
    );
    assert!(!session_user_running(), "a session reached the target");
}

#[test]
fn export_png_renders_the_recorded_desktop() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let code = d.code("suzuki");
    let mut client = d.client(
        &x.display,
        "suzuki@xrdp1",
        &format!("{PASSWORD}{code}"),
        &["/sec:tls"],
    );
    let up = wait_until(Duration::from_secs(30), session_user_running);
    assert!(
        up,
        "no session on the target.\nclient log:\n{}\nserve log:\n{}",
        client.log(),
        d.serve_log()
    );
    std::thread::sleep(Duration::from_secs(3));
    let marker = d.tmp().join("png.txt");
    type_into_client(
        &x.display,
        &format!("echo SEKISHO PNG EXPORT 0123456789 > {}", marker.display()),
    );
    let typed = wait_until(Duration::from_secs(20), || marker.exists());
    assert!(
        typed,
        "typed command did not run.\nclient log:\n{}",
        client.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    // What the person saw: the client's own screen, just before leaving.
    let shot = d.tmp().join("client.png");
    let import = Command::new("import")
        .env("DISPLAY", &x.display)
        .args(["-window", "root"])
        .arg(format!("png32:{}", shot.display()))
        .output()
        .expect("import (ImageMagick)");
    assert!(import.status.success(), "import: {}", text(&import));
    assert!(
        client.exit_within(Duration::ZERO).is_none(),
        "client gone early"
    );
    drop(client);
    end_test_user_sessions();
    let start = d.audit("session_start", "suzuki");
    let session = start[0]["session"]
        .as_str()
        .expect("session id")
        .to_string();
    let ended = wait_until(Duration::from_secs(10), || {
        !d.audit("session_end", "suzuki").is_empty()
    });
    assert!(ended, "no session_end.\nserve log:\n{}", d.serve_log());

    let png_path = d.tmp().join("frame.png");
    let out = sekisho(
        &d.dir,
        &[
            "export",
            &session,
            "--format",
            "png",
            "--at",
            "100000",
            "-o",
            png_path.to_str().expect("utf8"),
        ],
        None,
    );
    assert!(out.status.success(), "export failed: {}", text(&out));
    let decoder = png::Decoder::new(std::fs::File::open(&png_path).expect("png file"));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png data");
    assert_eq!((info.width, info.height), (1024, 768));
    let px = &buf[..info.buffer_size()];
    let colours: std::collections::HashSet<&[u8]> = px.chunks_exact(4).collect();
    assert!(
        colours.len() >= 2,
        "the rendered desktop has only {} colours: {}",
        colours.len(),
        text(&out)
    );
    // Both colours of the terminal (text on its background, the root
    // window around it) cover a real part of the screen.
    let mut counts: std::collections::HashMap<&[u8], usize> = Default::default();
    for p in px.chunks_exact(4) {
        *counts.entry(p).or_default() += 1;
    }
    let big = counts.values().filter(|&&n| n > 1024 * 768 / 50).count();
    assert!(big >= 2, "one colour covers the desktop: {counts:?}");

    // The rendered frame matches the client's screenshot pixel for pixel
    // (within a small tolerance for a cursor or a late update).
    let decoder = png::Decoder::new(std::fs::File::open(&shot).expect("screenshot"));
    let mut sreader = decoder.read_info().expect("screenshot header");
    let mut sbuf = vec![0; sreader.output_buffer_size()];
    let sinfo = sreader.next_frame(&mut sbuf).expect("screenshot data");
    // The client's window sits at the top left of its (larger) X screen.
    assert!(sinfo.width >= 1024 && sinfo.height >= 768, "{sinfo:?}");
    assert_eq!(sinfo.color_type, png::ColorType::Rgba, "{sinfo:?}");
    let sstride = sinfo.line_size;
    let differ = (0..768usize)
        .flat_map(|y| (0..1024usize).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let a = &px[(y * 1024 + x) * 4..][..3];
            let b = &sbuf[y * sstride + x * 4..][..3];
            a.iter().zip(b).any(|(p, q)| p.abs_diff(*q) > 8)
        })
        .count();
    assert!(
        differ < 1024 * 768 / 200,
        "{differ} pixels differ between the export and the client's screen"
    );

    // Mp4 is still refused with a message.
    let mp4 = sekisho(&d.dir, &["export", &session, "--format", "mp4"], None);
    assert!(!mp4.status.success());
}
