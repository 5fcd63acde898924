//! Shared fixture for the ssh gateway tests: one sshd target, two gateways
//! (the second with a short idle timeout) over one fake core, and an OpenSSH
//! client driven with askpass.
#![allow(dead_code)]

pub mod fake_core;
pub mod postgres;
pub mod pty;
pub mod sshd;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fake_core::{FakeCore, Person, State, Target};
use sekisho::ssh::Limits;
use sshd::Sshd;

pub const PASSWORD: &str = "tanaka-pass";
pub const FAILURE_DELAY: Duration = Duration::from_millis(400);

pub struct Env {
    pub dir: PathBuf,
    pub core: Arc<FakeCore>,
    pub port: u16,
    pub idle_port: u16,
    pub sshd: Sshd,
    pub ssh_config: PathBuf,
    pub askpass: PathBuf,
    pub vendor_key: PathBuf,
    pub host_key: PathBuf,
    pub limits: Limits,
}

static ENV: OnceLock<Env> = OnceLock::new();

pub fn env() -> &'static Env {
    ENV.get_or_init(setup)
}

fn setup() -> Env {
    sshd::require_all();
    let dir = tempfile::Builder::new()
        .prefix("sekisho-ssh-test")
        .tempdir()
        .unwrap_or_else(|e| panic!("tempdir: {e}"))
        .keep();
    let target = Sshd::start(&dir);

    let vendor_key = dir.join("vendor_key");
    sshd::keygen(&vendor_key);
    let vendor_fp = sshd::fingerprint(&vendor_key.with_extension("pub"));

    let person = |password, locked, window, denied| Person {
        password,
        locked,
        window,
        denied,
    };
    let mut people = HashMap::new();
    people.insert("tanaka", person(PASSWORD, false, false, None));
    people.insert("suzuki", person("suzuki-pass", true, false, None));
    people.insert("ito", person("ito-pass", false, true, None));
    people.insert(
        "sato",
        person(
            "sato-pass",
            false,
            false,
            Some("outside allowed hours (Mon-Fri 08:30-17:15)"),
        ),
    );
    people.insert(
        "kato",
        person(
            "kato-pass",
            false,
            false,
            Some("outside the maintenance contract (ended 2026-03-31)"),
        ),
    );

    let base = Target {
        address: "127.0.0.1".into(),
        port: target.port,
        account: "root".into(),
        private_key_pem: target.client_key_pem.clone(),
        password: None,
        pin: target.host_key_fingerprint.clone(),
        lifetime: Duration::from_secs(3600),
        recording_fails: false,
        recording_breaks_after: None,
    };
    let mut targets = HashMap::new();
    targets.insert("db01", base.clone());
    targets.insert("app01", base.clone());
    targets.insert("shutdown01", base.clone());
    sshd::ensure_maint_user();
    targets.insert(
        "pw01",
        Target {
            account: sshd::MAINT_USER.into(),
            password: Some(sshd::MAINT_PASSWORD.into()),
            ..base.clone()
        },
    );
    targets.insert(
        "badcred",
        Target {
            password: Some("not-the-maint-password".into()),
            account: sshd::MAINT_USER.into(),
            ..base.clone()
        },
    );
    targets.insert(
        "down",
        Target {
            port: sshd::free_port(),
            ..base.clone()
        },
    );
    targets.insert(
        "badpin",
        Target {
            pin: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            ..base.clone()
        },
    );
    targets.insert(
        "short",
        Target {
            lifetime: Duration::from_secs(5),
            ..base.clone()
        },
    );
    targets.insert(
        "recbreak",
        Target {
            recording_breaks_after: Some(12),
            ..base.clone()
        },
    );
    targets.insert(
        "norec",
        Target {
            recording_fails: true,
            ..base.clone()
        },
    );
    let mut keys = HashMap::new();
    keys.insert(vendor_fp, "tanaka");

    let core = Arc::new(FakeCore {
        people,
        keys,
        targets,
        state: Mutex::new(State {
            window: HashSet::new(),
            ..Default::default()
        }),
    });

    let host_key_path = dir.join("sekisho_host_key");
    sshd::keygen(&host_key_path);
    let limits = Limits {
        failure_delay: FAILURE_DELAY,
        idle_timeout: Duration::ZERO,
        warn_before_end: Duration::from_secs(3),
        time_zone: chrono_tz::Asia::Tokyo,
        login_grace: sekisho::ssh::LOGIN_GRACE,
    };
    let port = start_gateway(&host_key_path, core.clone(), limits.clone());
    let gateway_limits = limits.clone();
    let idle_port = start_gateway(
        &host_key_path,
        core.clone(),
        Limits {
            idle_timeout: Duration::from_secs(2),
            ..limits
        },
    );

    let askpass = dir.join("askpass.sh");
    std::fs::write(
        &askpass,
        "#!/bin/sh\ncase \"$1\" in\n  *code*) printf '%s\\n' \"$SEKISHO_TEST_CODE\" ;;\n  *) printf '%s\\n' \"$SEKISHO_TEST_PASSWORD\" ;;\nesac\n",
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

    Env {
        dir,
        core,
        port,
        idle_port,
        sshd: target,
        ssh_config,
        askpass,
        vendor_key,
        host_key: host_key_path,
        limits: gateway_limits,
    }
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Runs a gateway on its own runtime thread for the whole test binary.
fn start_gateway(host_key: &std::path::Path, core: Arc<FakeCore>, limits: Limits) -> u16 {
    let (port, stop) = start_gateway_until(host_key, core, limits);
    // Never stopped: dropping the sender would stop it, so keep it forever.
    std::mem::forget(stop);
    port
}

/// Runs a gateway that stops when the returned sender fires (or is dropped).
pub fn start_gateway_until(
    host_key: &std::path::Path,
    core: Arc<FakeCore>,
    limits: Limits,
) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    let key = sekisho::ssh::load_host_key(host_key).unwrap_or_else(|e| panic!("{e}"));
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        rt.block_on(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).unwrap_or_else(|e| panic!("{e}"));
            let stop = async {
                let _ = stop_rx.await;
            };
            if let Err(e) = sekisho::ssh::serve(listener, key, core, limits, stop).await {
                panic!("gateway stopped: {e}");
            }
        });
    });
    (port, stop_tx)
}

/// An OpenSSH client invocation through the gateway.
pub struct Ssh {
    user: String,
    port: u16,
    program: &'static str,
    password: String,
    code: String,
    args: Vec<String>,
    remote: Vec<String>,
    envs: Vec<(String, String)>,
}

/// `ssh -p PORT USER@127.0.0.1`, signing in with password + code by default.
pub fn ssh(user: &str) -> Ssh {
    let e = env();
    Ssh {
        user: user.to_string(),
        port: e.port,
        program: "ssh",
        password: PASSWORD.into(),
        code: fake_core::totp_now(),
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
        self.code = c.into();
        self
    }
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// Sign in with the registered key instead of the password.
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

    pub fn command(&self) -> Command {
        let e = env();
        let mut c = Command::new("setsid");
        c.arg("-w")
            .arg(self.program)
            .arg("-F")
            .arg(&e.ssh_config)
            .arg("-p")
            .arg(self.port.to_string())
            .args(&self.args)
            .arg(format!("{}@127.0.0.1", self.user))
            .args(&self.remote)
            .env("SSH_ASKPASS", &e.askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("SEKISHO_TEST_PASSWORD", &self.password)
            .env("SEKISHO_TEST_CODE", &self.code)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("DISPLAY")
            .stdin(Stdio::null());
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        c
    }

    pub fn output(&self) -> Output {
        let mut c = self.command();
        sshd::run(&mut c)
    }

    /// Runs with `input` on stdin.
    pub fn output_with_input(&self, input: &[u8]) -> Output {
        use std::io::Write;
        let mut c = self.command();
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

/// Waits until `f` is true, up to `limit`.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
