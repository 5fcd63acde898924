//! Shared fixture for the ssh gateway tests: a real deployment (`sekisho
//! init`, a vendor, people with their own TOTP secrets, target credentials in
//! the secret store, a policy pinning the target's host key) served by real
//! `sekisho serve` processes over one database, in front of one real sshd
//! that stands for several targets (one address each). The OpenSSH client
//! is driven with askpass. Assertions go through the CLI (`sekisho audit
//! --json`, `sessions list --json`, `sessions kill`) and the archive reader.
//!
//! Serve processes (all share the database, policies, keys):
//! - `port`: the normal one (`warn_before_end = 3s`, no idle timeout);
//! - `idle_port`: `idle_timeout = 2s`;
//! - `norec_port`: its recordings directory cannot be created;
//! - `recbreak_port`: its recordings live on a 1 MiB tmpfs.
//!
//! People and source addresses are planned so tests can run in parallel: a
//! code is accepted once per person per 30-s step, a sign-in window is per
//! person and source address, and three failures in a row lock a person.
//! `tanaka` signs in once with a code from 127.0.0.1 at setup; every other
//! test as tanaka from 127.0.0.1 needs the password only (the window). Each
//! test that needs a code or a failure has a person of its own.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use super::cli::{bin, ok};
use super::install::Install;
use super::process::Daemon;
pub use super::process::wait_until;
use super::sshd::{self, Sshd};
use super::{cli, totp};

/// Every person's password.
pub const PASSWORD: &str = "gateway-pass-4711";
/// Every client run through the gateway is stopped after this long.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// `[auth] failure_delay` of the deployment.
pub const FAILURE_DELAY: Duration = Duration::from_millis(400);

/// People covered by the main access entry (2 h sessions, always).
/// - tanaka: most tests, from 127.0.0.1 inside the sign-in window;
/// - hayashi: password + code; mori: registered key (+ code);
/// - ueda, ono: a wrong code, a wrong password; suzuki: locked out;
/// - kimura, kudo: tickets; ito: the sign-in window; kubo: keyboard-interactive;
/// - endo, fujita, goto, honda: one recorded session each; iwata: the
///   recording that breaks;
/// - noda, abe: paramiko signing in, and giving up at the code; ogawa:
///   signing in with tickets during floods.
pub const MAIN_USERS: &[&str] = &[
    "tanaka", "hayashi", "mori", "ueda", "ono", "suzuki", "kimura", "kudo", "ito", "kubo", "endo",
    "fujita", "goto", "honda", "iwata", "noda", "abe", "ogawa",
];
/// Access only at hours that exclude now.
pub const HOURS_USER: &str = "sato";
/// Access under a contract that has ended.
pub const CONTRACT_USER: &str = "kato";
/// Access with `max_session = "6s"`.
pub const SHORT_USER: &str = "sasaki";

/// Targets: one sshd, one address each (addresses are unique in a policy).
pub const DB01: &str = "127.0.0.1";
pub const APP01: &str = "127.0.0.2";
pub const BADPIN: &str = "127.0.0.3";
pub const PW01: &str = "127.0.0.4";
pub const BADCRED: &str = "127.0.0.5";
/// Nothing listens here.
pub const DOWN: &str = "127.0.0.6";

pub struct Env {
    pub dir: PathBuf,
    /// The normal `sekisho serve`.
    pub port: u16,
    /// `sekisho serve` with `idle_timeout = 2s`.
    pub idle_port: u16,
    /// `sekisho serve` whose recordings directory cannot be created.
    pub norec_port: u16,
    /// `sekisho serve` whose recordings are on a 1 MiB tmpfs.
    pub recbreak_port: u16,
    pub recordings: PathBuf,
    pub recbreak_recordings: PathBuf,
    pub sshd: Sshd,
    pub ssh_config: PathBuf,
    pub askpass: PathBuf,
    /// A terminal key registered for `mori`.
    pub vendor_key: PathBuf,
    /// Decoded TOTP keys by person.
    totp: HashMap<String, Vec<u8>>,
}

static ENV: OnceLock<Env> = OnceLock::new();

pub fn env() -> &'static Env {
    ENV.get_or_init(setup)
}

/// Runs `sekisho --config CONFIG ARGS` with `stdin` piped in.
pub fn sekisho_with(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    cli::run(&bin(), config, args, stdin)
}

/// `sekisho ARGS` on the deployment.
pub fn sekisho(args: &[&str]) -> Output {
    sekisho_with(&env().dir.join("sekisho.toml"), args, None)
}

/// `sekisho audit --json ARGS`, one value per event, oldest first.
pub fn audit(args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    cli::json_lines(&ok(sekisho(&all)))
}

/// Events of `kind` about `user`.
pub fn audit_of(kind: &str, user: &str) -> Vec<serde_json::Value> {
    audit(&["--kind", kind, "--user", user])
}

/// `sekisho sessions list --json`.
pub fn live_sessions() -> Vec<serde_json::Value> {
    cli::json_lines(&ok(sekisho(&["sessions", "list", "--json"])))
}

/// `sekisho ticket issue`: the ticket (first line).
pub fn ticket(user: &str, target: &str) -> String {
    Install {
        bin: bin(),
        dir: env().dir.clone(),
    }
    .ticket(user, target, "ssh")
}

/// The session id of `user`'s newest ended session; waits for the end (the
/// row is closed just after the client has gone).
pub fn ended_session(user: &str) -> String {
    let mut id = None;
    wait_until(Duration::from_secs(30), || {
        id = audit_of("session_end", user)
            .last()
            .and_then(|v| v["session"].as_str().map(str::to_string));
        id.is_some()
    });
    id.unwrap_or_else(|| panic!("no session_end event for {user}"))
}

/// The `session_end` event of a session (waits for it).
pub fn session_end(session: &str) -> serde_json::Value {
    let mut end = None;
    wait_until(Duration::from_secs(30), || {
        end = audit(&["--kind", "session_end", "--session", session])
            .into_iter()
            .next();
        end.is_some()
    });
    end.unwrap_or_else(|| panic!("session {session} has not ended"))
}

/// The archive `<id>.skrec` under the deployment's recordings.
pub fn archive_of(session: &str) -> PathBuf {
    let e = env();
    let name = format!("{session}.skrec");
    [&e.recordings, &e.recbreak_recordings]
        .into_iter()
        .find_map(|root| find_file(root, &name))
        .unwrap_or_else(|| panic!("no archive {name}"))
}

fn find_file(root: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n.to_string_lossy() == name) {
                return Some(p);
            }
        }
    }
    None
}

/// Every event recorded for a session, read back from its archive.
pub fn recorded(session: &str) -> Vec<sekisho::recording::Event> {
    let path = archive_of(session);
    let mut reader = sekisho::recording::Reader::open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    reader
        .events()
        .map(|ev| {
            ev.unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
                .event
        })
        .collect()
}

/// Recorded output of a session, stdout or stderr.
pub fn recorded_output(session: &str, stderr: bool) -> Vec<u8> {
    use sekisho::recording::{Event, Stream};
    recorded(session)
        .into_iter()
        .filter_map(|e| match e {
            Event::Output { stream, data, .. } if (stream == Stream::Stderr) == stderr => {
                Some(data.to_vec())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

/// Recorded input (keystrokes, piped stdin) of a session.
pub fn recorded_input(session: &str) -> Vec<u8> {
    recorded(session)
        .into_iter()
        .filter_map(|e| match e {
            sekisho::recording::Event::Input { data, .. } => Some(data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The current TOTP code of `person` ("000000" for someone unknown).
pub fn code(person: &str) -> String {
    code_at(person, totp::step_now())
}

fn code_at(person: &str, step: i64) -> String {
    env()
        .totp
        .get(person)
        .map(|key| totp::code_at(key, step))
        .unwrap_or_else(|| "000000".into())
}

/// A code that is certainly wrong for `person` now (not valid in ±1 step).
pub fn wrong_code(person: &str) -> String {
    let step = totp::step_now();
    let valid: Vec<String> = (step - 2..=step + 2).map(|s| code_at(person, s)).collect();
    (0..1000u32)
        .map(|n| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
        .find(|c| !valid.contains(c))
        .unwrap_or_else(|| "000000".into())
}

// ---- processes ------------------------------------------------------------

/// The tmpfs to unmount at exit.
static MOUNTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn cleanup() {
    if let Ok(mounts) = MOUNTS.lock() {
        for m in mounts.iter() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(m)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn register_cleanup() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: registering a plain extern "C" fn with atexit(3).
        unsafe {
            libc::atexit(cleanup);
        }
    });
}

/// Writes a `sekisho.toml`-like config for one serve process of the
/// deployment in `dir` (relative paths resolve against `dir`, so every
/// process shares the database, policies and keys).
pub fn write_config(
    dir: &Path,
    file: &str,
    port: u16,
    idle: &str,
    recordings: Option<&Path>,
) -> PathBuf {
    let paths = recordings
        .map(|r| format!("[paths]\nrecordings = \"{}\"\n", r.display()))
        .unwrap_or_default();
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            r#"{paths}
[ssh]
listen = "127.0.0.1:{port}"
[rdp]
enabled = false
[auth]
failure_delay = "{delay}ms"
signin_window = "10m"
max_failures = 3
lockout = "15m"
[sessions]
idle_timeout = "{idle}"
warn_before_end = "3s"
# The tests sign everyone in from loopback, many at once: the limits
# would take the whole suite for one flooding guesser.
[limits]
max_startups = "1000"
max_startups_per_source = 0
signin_attempts_per_minute = 0
[[network]]
name = "lab"
cidrs = ["127.0.0.0/8"]
"#,
            delay = FAILURE_DELAY.as_millis()
        ),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// Starts `sekisho serve --config CONFIG` (log next to the config) and
/// waits until it listens on `port`.
pub fn spawn_serve(config: &Path, port: u16) -> Daemon {
    let install = Install {
        bin: bin(),
        dir: config
            .parent()
            .expect("config in a directory")
            .to_path_buf(),
    };
    install.serve(
        config,
        "info,russh=warn,sqlx=warn",
        &config.with_extension("log"),
        &[port],
    )
}

/// A serve process kept until the test binary exits.
fn keep_serve(config: &Path, port: u16) {
    spawn_serve(config, port).keep_until_exit();
}

/// Sends SIGTERM to a child and waits up to `limit` for it to exit.
pub fn terminate(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on the pid of a child we started and still own.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

// ---- setup ----------------------------------------------------------------

fn setup() -> Env {
    sshd::require_all();
    sshd::require("mount", "mount");
    let dir = tempfile::Builder::new()
        .prefix("sekisho-ssh-test")
        .tempdir()
        .unwrap_or_else(|e| panic!("tempdir: {e}"))
        .keep();
    let (install, _) = Install::init(&bin(), &dir);
    let main_config = install.config();

    let target = Sshd::start_on(&dir, &[DB01, APP01, BADPIN, PW01, BADCRED]);
    sshd::ensure_maint_user();
    let vendor_key = dir.join("vendor_key");
    sshd::keygen(&vendor_key);
    let vendor_pub = vendor_key.with_extension("pub");

    let port = sshd::free_port();
    let idle_port = sshd::free_port();
    let norec_port = sshd::free_port();
    let recbreak_port = sshd::free_port();
    write_config(&dir, "sekisho.toml", port, "0", None);
    write_config(&dir, "sekisho-idle.toml", idle_port, "2s", None);
    // A regular file where the recordings directory should be.
    let not_a_dir = dir.join("norec-not-a-directory");
    std::fs::write(&not_a_dir, "").unwrap_or_else(|e| panic!("{e}"));
    write_config(
        &dir,
        "sekisho-norec.toml",
        norec_port,
        "0",
        Some(&not_a_dir.join("recordings")),
    );
    let recbreak_recordings = dir.join("recbreak-recordings");
    std::fs::create_dir_all(&recbreak_recordings).unwrap_or_else(|e| panic!("{e}"));
    write_config(
        &dir,
        "sekisho-recbreak.toml",
        recbreak_port,
        "0",
        Some(&recbreak_recordings),
    );

    // The policy: one system, one target per sshd address.
    let wrong_pin = sshd::fingerprint(&vendor_pub);
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .date_naive();
    // A weekday three days away: its hours never include now.
    let off_day = {
        use chrono::Datelike as _;
        let n = (today + chrono::Duration::days(3))
            .weekday()
            .num_days_from_monday();
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
            .get(usize::try_from(n).unwrap_or(0))
            .copied()
            .unwrap_or("Mon")
    };
    let ended = today - chrono::Duration::days(10);
    let began = ended - chrono::Duration::days(365);
    let users = MAIN_USERS
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sshd_port = target.port;
    let pin = &target.host_key_fingerprint;
    let access = |users: &str, contract: &str, hours: &str, max: &str| {
        format!(
            "[[access]]\nvendor = \"acme\"\nusers = [{users}]\ncontract = {{ {contract} }}\n\
             hours = \"{hours}\"\nmax_session = \"{max}\"\nprotocols = [\"ssh\"]\nsources = [\"lab\"]\n\n"
        )
    };
    let always = "from = \"2020-01-01\", until = \"2099-12-31\"";
    let mut policy = String::from("[system]\nname = \"lab\"\nzone = \"lgwan\"\n\n");
    for (name, address, account, credential, pin) in [
        ("db01", DB01, "root", "root-key", pin.as_str()),
        ("app01", APP01, "root", "root-key", pin.as_str()),
        ("badpin", BADPIN, "root", "root-key", wrong_pin.as_str()),
        (
            "pw01",
            PW01,
            sshd::MAINT_USER,
            "maint-password",
            pin.as_str(),
        ),
        (
            "badcred",
            BADCRED,
            sshd::MAINT_USER,
            "maint-wrong-password",
            pin.as_str(),
        ),
        ("down", DOWN, "root", "root-key", pin.as_str()),
    ] {
        policy.push_str(&format!(
            "[[target]]\nname = \"{name}\"\naddress = \"{address}\"\nkind = \"virtual\"\n\
             ssh = {{ port = {sshd_port}, account = \"{account}\", credential = \"{credential}\", host_key = \"{pin}\" }}\n\n"
        ));
    }
    policy.push_str(&access(&users, always, "always", "2h"));
    policy.push_str(&access(
        &format!("{HOURS_USER:?}"),
        always,
        &format!("{off_day} 00:00-01:00"),
        "2h",
    ));
    policy.push_str(&access(
        &format!("{CONTRACT_USER:?}"),
        &format!("from = \"{began}\", until = \"{ended}\""),
        "always",
        "2h",
    ));
    policy.push_str(&access(&format!("{SHORT_USER:?}"), always, "always", "6s"));
    std::fs::write(dir.join("policies/lab.toml"), policy).unwrap_or_else(|e| panic!("{e}"));

    let everyone: Vec<&str> = MAIN_USERS
        .iter()
        .chain([HOURS_USER, CONTRACT_USER, SHORT_USER].iter())
        .copied()
        .collect();
    let totp: HashMap<String, Vec<u8>> = install.people(&everyone, PASSWORD).into_iter().collect();
    let admin = |args: &[&str], stdin: Option<&str>| install.admin(args, stdin);
    admin(
        &[
            "user",
            "key",
            "add",
            "mori",
            &vendor_pub.display().to_string(),
        ],
        None,
    );
    install.secrets(&[
        ("root-key", target.client_key_pem.as_str()),
        ("maint-password", sshd::MAINT_PASSWORD),
        ("maint-wrong-password", "not-the-maint-password"),
    ]);
    install.check_policy();

    // The recordings of one serve process on a disk that fills up.
    register_cleanup();
    let mount = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "sekisho-test"])
        .arg(&recbreak_recordings)
        .output()
        .unwrap_or_else(|e| panic!("mount: {e}"));
    assert!(
        mount.status.success(),
        "mount -t tmpfs (the tests run as root): {}",
        text(&mount.stderr)
    );
    if let Ok(mut m) = MOUNTS.lock() {
        m.push(recbreak_recordings.clone());
    }

    keep_serve(&main_config, port);
    keep_serve(&dir.join("sekisho-idle.toml"), idle_port);
    keep_serve(&dir.join("sekisho-norec.toml"), norec_port);
    keep_serve(&dir.join("sekisho-recbreak.toml"), recbreak_port);

    let askpass = dir.join("askpass.sh");
    std::fs::write(
        &askpass,
        "#!/bin/sh\ncase \"$1\" in\n  *ode*) printf '%s\\n' \"$SEKISHO_TEST_CODE\" ;;\n  *) printf '%s\\n' \"$SEKISHO_TEST_PASSWORD\" ;;\nesac\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    set_mode(&askpass, 0o755);
    let ssh_config = dir.join("ssh_config");
    std::fs::write(
        &ssh_config,
        "Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  \
         IdentitiesOnly yes\n  PubkeyAuthentication no\n  ControlMaster no\n  \
         NumberOfPasswordPrompts 1\n  ConnectTimeout 10\n  ForwardAgent no\n  ForwardX11 no\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let env = Env {
        recordings: dir.join("recordings"),
        recbreak_recordings,
        dir,
        port,
        idle_port,
        norec_port,
        recbreak_port,
        sshd: target,
        ssh_config,
        askpass,
        vendor_key,
        totp,
    };
    open_window(&env);
    env
}

/// tanaka signs in once with a code from 127.0.0.1: the sign-in window
/// spares the code for the rest of the run.
fn open_window(e: &Env) {
    let person = "tanaka";
    let code = e
        .totp
        .get(person)
        .map(|k| totp::code_ahead(k, 0))
        .unwrap_or_default();
    let out = Command::new("setsid")
        .arg("-w")
        .arg("ssh")
        .arg("-F")
        .arg(&e.ssh_config)
        .arg("-p")
        .arg(e.port.to_string())
        .arg("-b")
        .arg("127.0.0.1")
        .arg("-o")
        .arg("PreferredAuthentications=password,keyboard-interactive")
        .arg(format!("{person}@db01@127.0.0.1"))
        .arg("true")
        .env("SSH_ASKPASS", &e.askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("SEKISHO_TEST_PASSWORD", PASSWORD)
        .env("SEKISHO_TEST_CODE", code)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("ssh: {err}"));
    assert!(
        out.status.success(),
        "tanaka's first sign-in failed: {out:?}\n{}",
        std::fs::read_to_string(e.dir.join("sekisho.log")).unwrap_or_default()
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

// ---- the OpenSSH client ---------------------------------------------------

/// An OpenSSH client invocation through the gateway.
pub struct Ssh {
    login: String,
    port: u16,
    password: String,
    code: Option<String>,
    from: String,
    args: Vec<String>,
    remote: Vec<String>,
    envs: Vec<(String, String)>,
}

/// `ssh -p PORT -b 127.0.0.1 LOGIN@127.0.0.1`, signing in with the password
/// and, when asked, the person's current code.
pub fn ssh(login: &str) -> Ssh {
    let e = env();
    Ssh {
        login: login.to_string(),
        port: e.port,
        password: PASSWORD.into(),
        code: None,
        from: "127.0.0.1".into(),
        args: vec![
            "-o".into(),
            "PreferredAuthentications=password,keyboard-interactive".into(),
        ],
        remote: Vec::new(),
        envs: Vec::new(),
    }
}

impl Ssh {
    pub fn password(mut self, p: &str) -> Self {
        self.password = p.into();
        self
    }
    pub fn code(mut self, c: &str) -> Self {
        self.code = Some(c.into());
        self
    }
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// The client's source address (`ssh -b`).
    pub fn from(mut self, addr: &str) -> Self {
        self.from = addr.into();
        self
    }
    /// Sign in with the registered key (mori's) instead of the password.
    pub fn with_key(mut self) -> Self {
        let key = env().vendor_key.display().to_string();
        self.args = vec![
            "-o".into(),
            "PubkeyAuthentication=yes".into(),
            "-o".into(),
            "PreferredAuthentications=publickey,keyboard-interactive".into(),
            "-i".into(),
            key,
        ];
        self.password = "not-the-password".into();
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }
    pub fn remote(mut self, cmd: &str) -> Self {
        self.remote.push(cmd.into());
        self
    }

    fn person(&self) -> &str {
        self.login.split('@').next().unwrap_or_default()
    }

    /// `setsid -w ssh …` (the child is ssh itself, so `kill` stops it).
    pub fn command(&self) -> Command {
        self.build(false)
    }

    /// With `timed`, ssh runs under `timeout`: a stalled session fails its
    /// test instead of hanging the suite (for `output*`, which wait).
    fn build(&self, timed: bool) -> Command {
        let e = env();
        let code = self.code.clone().unwrap_or_else(|| code(self.person()));
        let mut c = Command::new("setsid");
        c.arg("-w");
        if timed {
            c.arg("timeout").arg(CLIENT_TIMEOUT.as_secs().to_string());
        }
        c.arg("ssh")
            .arg("-F")
            .arg(&e.ssh_config)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-b")
            .arg(&self.from)
            .args(&self.args)
            .arg(format!("{}@127.0.0.1", self.login))
            .args(&self.remote)
            .env("SSH_ASKPASS", &e.askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("SEKISHO_TEST_PASSWORD", &self.password)
            .env("SEKISHO_TEST_CODE", code)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("DISPLAY")
            .stdin(Stdio::null());
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        c
    }

    pub fn output(&self) -> Output {
        let mut c = self.build(true);
        sshd::run(&mut c)
    }

    /// Runs with `input` on stdin.
    pub fn output_with_input(&self, input: &[u8]) -> Output {
        use std::io::Write;
        let mut c = self.build(true);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap_or_else(|e| panic!("spawn ssh: {e}"));
        // Written from another thread, so a full stdout pipe cannot stall it.
        let writer = child.stdin.take().map(|mut stdin| {
            let input = input.to_vec();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            })
        });
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wait ssh: {e}"));
        if let Some(w) = writer {
            let _ = w.join();
        }
        out
    }

    pub fn spawn(&self) -> Child {
        let mut c = self.command();
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().unwrap_or_else(|e| panic!("spawn ssh: {e}"))
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
