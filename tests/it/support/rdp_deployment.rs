//! The real deployment the RDP integration tests run through: `sekisho
//! init`, the admin CLI, a policy, the secret store and a `sekisho serve`
//! child process in front of xrdp. Shared by the RDP suites and the RDP
//! benchmark.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::cli;
pub use super::cli::{bin, json_lines, ok, text};
use super::install::Install;
pub use super::install::find_archive;
use super::rdp_peers::*;
use super::totp;

pub const PASSWORD: &str = "rdp-e2e-password";
pub const USERS: [&str; 5] = ["tanaka", "suzuki", "sato", "ito", "kato"];
/// Where sekisho listens; the client connects from 127.0.0.1.
pub const FRONT: &str = "127.0.0.1";
/// Where xrdp listens. Not the client's address: RDP coming from a
/// target's address is a server-to-server hop under the RDP rule.
pub const TARGET_IP: &str = "127.0.0.2";

/// The address of the virtual target `vm1`: the same xrdp through a
/// forwarder (on its own port, `Deployment::virtual_port`).
pub const VIRTUAL_IP: &str = "127.0.0.4";

/// Where the target `xrdp-wrong-pin` answers: xrdp through a forwarder,
/// declared with a certificate pin that does not match.
pub const WRONG_PIN_IP: &str = "127.0.0.6";

/// Relay every connection to `listen_ip` on to `to`, for the life of the
/// test process (threads, plain copies both ways). Returns the port it
/// listens on, chosen by the system: a port probed free on 127.0.0.1 may
/// still be held on `listen_ip` by a forwarder an earlier test left behind.
pub fn forward_tcp(listen_ip: &str, to: (&'static str, u16)) -> u16 {
    forward_tcp_from(listen_ip, to, None)
}

/// [`forward_tcp`] whose connections to `to` leave from the address `from`
/// (port chosen by the system): a client that cannot choose its source
/// address, such as xfreerdp3, then reaches `to` as if it were `from`.
pub fn forward_tcp_from(
    listen_ip: &str,
    to: (&'static str, u16),
    from: Option<&'static str>,
) -> u16 {
    let (listener, port) = forwarder_listener(listen_ip);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(a) = conn else { continue };
            let Ok(b) = connect_from(from, to) else {
                continue;
            };
            let (mut a2, mut b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
            let (mut a, mut b) = (a, b);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut a2, &mut b2);
                let _ = b2.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut b, &mut a);
                let _ = a.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}

/// A forwarder whose n-th connection goes to `routes[n]` (the last route
/// for any after), leaving from the route's source address: a client that
/// reconnects after a drop then reaches another node, or arrives from
/// another address. Unlike [`forward_tcp_from`], an error on one side is
/// not passed on to the other as a clean close: killing one socket (`ss -K`)
/// leaves the other to be killed, or to fail, on its own, as a network
/// drop would.
pub fn forward_tcp_routes(
    listen_ip: &str,
    routes: Vec<((&'static str, u16), Option<&'static str>)>,
) -> u16 {
    let (listener, port) = forwarder_listener(listen_ip);
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(a) = conn else { continue };
            let (to, from) = routes[n.min(routes.len() - 1)];
            let Ok(b) = connect_from(from, to) else {
                continue;
            };
            let (mut a2, mut b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
            let (mut a, mut b) = (a, b);
            std::thread::spawn(move || {
                if std::io::copy(&mut a2, &mut b2).is_ok() {
                    let _ = b2.shutdown(std::net::Shutdown::Write);
                }
            });
            std::thread::spawn(move || {
                if std::io::copy(&mut b, &mut a).is_ok() {
                    let _ = a.shutdown(std::net::Shutdown::Write);
                }
            });
        }
    });
    port
}

/// A listener on `ip` at a port the system chose, and that port.
fn forwarder_listener(ip: &str) -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind forwarder");
    let port = listener.local_addr().expect("forwarder's address").port();
    (listener, port)
}

/// A TCP connection to `to`, bound to the address `from` first if given.
fn connect_from(from: Option<&str>, to: (&str, u16)) -> std::io::Result<std::net::TcpStream> {
    let Some(from) = from else {
        return std::net::TcpStream::connect(to);
    };
    let bad =
        |e: std::net::AddrParseError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let local = std::net::SocketAddr::new(from.parse().map_err(bad)?, 0);
    let remote = std::net::SocketAddr::new(to.0.parse().map_err(bad)?, to.1);
    // std cannot bind before connecting; tokio's TcpSocket can.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(local)?;
        socket.connect(remote).await?.into_std()
    })?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// `sekisho --config DIR/sekisho.toml ARGS` on the deployment in `dir`.
pub fn sekisho(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    cli::run(&bin(), &dir.join("sekisho.toml"), args, stdin)
}

/// A deployment made with `sekisho init`, xrdp as the physical target
/// `xrdp1` (and, for the RDP rule, the same server declared as the virtual
/// target `vm1` on another loopback address), and a running `sekisho serve`. Everything stops on drop.
pub struct Deployment {
    pub dir: PathBuf,
    pub rdp_port: u16,
    /// sekisho's SSH listener on 127.0.0.1, when `Options::ssh` asked for it.
    pub ssh_port: Option<u16>,
    /// The web console on 127.0.0.1, when `Options::web` asked for it.
    pub web_port: Option<u16>,
    totp: Vec<(String, Vec<u8>)>,
    _serve: Daemon,
    pub xrdp: Xrdp,
    /// Where the same xrdp answers on `WRONG_PIN_IP` through a plain TCP
    /// forwarder (the target `xrdp-wrong-pin`; the RDP benchmark's TCP
    /// relay).
    pub wrong_pin_port: u16,
    _tmp: tempfile::TempDir,
}

/// What differs between the deployments of the tests.
#[derive(Default)]
pub struct Options {
    /// `[sessions] idle_timeout`; "0" (off) when empty.
    pub idle_timeout: &'static str,
    /// `[paths] recordings`; the deployment's own `recordings/` when `None`.
    pub recordings: Option<PathBuf>,
    /// More policy text (targets), appended before the access grant.
    pub extra_targets: String,
    /// More secrets for the store: (name, value).
    pub secrets: Vec<(String, String)>,
    /// Serve SSH too (on `Deployment::ssh_port`), and let the access grant
    /// cover SSH as well as RDP: for hops from a terminal session.
    pub ssh: bool,
    /// `[auth] signin_window`; "0" (off) when empty.
    pub signin_window: &'static str,
    /// `[rdp] keyframe_interval`; "1s" when empty.
    pub keyframe_interval: &'static str,
    /// Serve the web console too (on `Deployment::web_port`).
    pub web: bool,
}

impl Deployment {
    pub fn start() -> Deployment {
        Deployment::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Deployment {
        let idle = if opts.idle_timeout.is_empty() {
            "0"
        } else {
            opts.idle_timeout
        };
        let keyframes = if opts.keyframe_interval.is_empty() {
            "1s"
        } else {
            opts.keyframe_interval
        };
        let window = if opts.signin_window.is_empty() {
            "0"
        } else {
            opts.signin_window
        };
        let paths = match &opts.recordings {
            Some(p) => format!("[paths]\nrecordings = \"{}\"\n", p.display()),
            None => String::new(),
        };
        let extra = &opts.extra_targets;
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
        let (install, _) = Install::init(&bin(), &tmp.path().join("bastion"));
        let xrdp = Xrdp::start_at(tmp.path(), TARGET_IP);
        // The pin an admin would take after checking the certificate.
        let pin = probe_cert_sha256_at(TARGET_IP, xrdp.port);
        assert_eq!(pin, xrdp.pin, "the probe saw another certificate");
        let pin_hex: String = pin.iter().map(|b| format!("{b:02X}")).collect();

        // The same xrdp under two more addresses: the virtual target, and
        // one declared with a wrong pin.
        let virtual_port = forward_tcp(VIRTUAL_IP, (TARGET_IP, xrdp.port));
        let wrong_pin_port = forward_tcp(WRONG_PIN_IP, (TARGET_IP, xrdp.port));
        let rdp_port = free_port();
        let ssh_port = opts.ssh.then(free_port);
        let web_port = opts.web.then(free_port);
        let web = match web_port {
            Some(port) => format!("[web]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"),
            None => String::new(),
        };
        let ssh = match ssh_port {
            Some(port) => format!("listen = \"{FRONT}:{port}\""),
            None => "enabled = false".to_string(),
        };
        let protocols = if opts.ssh {
            r#"["ssh", "rdp"]"#
        } else {
            r#"["rdp"]"#
        };
        install.write_config(&format!(
            r#"{paths}{web}
[ssh]
{ssh}
[rdp]
listen = "{FRONT}:{rdp_port}"
keyframe_interval = "{keyframes}"
[auth]
failure_delay = "100ms"
signin_window = "{window}"
[sessions]
idle_timeout = "{idle}"
warn_before_end = "1m"
# The tests sign everyone in from loopback, many at once: the limits
# would take the whole suite for one flooding guesser.
[limits]
max_startups = "1000"
max_startups_per_source = 0
signin_attempts_per_minute = 0
[[network]]
name = "lab"
cidrs = ["127.0.0.0/8"]
"#
        ));
        install.write_policy(&format!(
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
address = "{VIRTUAL_IP}"
kind = "virtual"
rdp = {{ port = {virtual_port}, account = "{account}", credential = "xrdp1-pw", cert_sha256 = "{pin_hex}" }}

[[target]]
name = "down1"
address = "127.0.0.5"
kind = "physical"
rdp = {{ port = {port}, account = "{account}", credential = "xrdp1-pw", cert_sha256 = "{pin_hex}" }}

[[target]]
name = "xrdp-wrong-pin"
address = "{WRONG_PIN_IP}"
kind = "physical"
rdp = {{ port = {wrong_pin_port}, account = "{account}", credential = "xrdp1-pw", cert_sha256 = "{wrong_pin}" }}
{extra}
[[access]]
vendor = "acme"
users = ["tanaka", "suzuki", "sato", "ito", "kato"]
contract = {{ from = "2026-01-01", until = "2099-12-31" }}
hours = "always"
max_session = "2h"
protocols = {protocols}
sources = ["lab"]
"#,
                port = xrdp.port,
                account = TEST_USER,
                wrong_pin = "07".repeat(32),
        ));

        let totp = install.people(&USERS, PASSWORD);
        install.secrets(&[("xrdp1-pw", TEST_PASSWORD)]);
        install.secrets(&opts.secrets);
        install.check_policy();
        let ports: Vec<u16> = std::iter::once(rdp_port)
            .chain(ssh_port)
            .chain(web_port)
            .collect();
        let serve = install.serve(
            &install.config(),
            "sekisho=debug",
            &install.dir.join("serve.log"),
            &ports,
        );
        Deployment {
            dir: install.dir,
            rdp_port,
            ssh_port,
            web_port,
            totp,
            _serve: serve,
            xrdp,
            wrong_pin_port,
            _tmp: tmp,
        }
    }

    /// A second `sekisho serve` (node B) on the same directory, so the same
    /// database, keys, policies and recordings, listening for RDP on its
    /// own port (returned). Its node name differs from node A's (the
    /// name comes from the SSH listen port, set apart here).
    pub fn start_second_node(&self) -> (u16, Daemon) {
        let port = free_port();
        let config = std::fs::read_to_string(self.install().config()).expect("node A's config");
        let a_listen = format!("listen = \"{FRONT}:{}\"", self.rdp_port);
        assert!(config.contains(&a_listen), "{config}");
        let mut b = config.replace(&a_listen, &format!("listen = \"{FRONT}:{port}\""));
        assert!(b.contains("[ssh]\nenabled = false"), "{config}");
        b = b.replace(
            "[ssh]\nenabled = false",
            &format!(
                "[ssh]\nenabled = false\nlisten = \"{FRONT}:{}\"",
                free_port()
            ),
        );
        // The web console stays on node A only (one port each).
        b = b.replace("[web]\nenabled = true", "[web]\nenabled = false");
        let path = self.dir.join("sekisho-b.toml");
        std::fs::write(&path, b).expect("node B's config");
        let install = self.install();
        let serve = install.serve(
            &path,
            "sekisho=debug",
            &self.dir.join("serve-b.log"),
            &[port],
        );
        (port, serve)
    }

    /// Node B's log ([`Deployment::start_second_node`]).
    pub fn serve_b_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve-b.log")).unwrap_or_default()
    }

    /// The installation behind the deployment, for its session helpers.
    pub fn install(&self) -> Install {
        Install {
            bin: bin(),
            dir: self.dir.clone(),
        }
    }

    /// The pid of the `sekisho serve` process.
    pub fn serve_pid(&self) -> u32 {
        self._serve.child.id()
    }

    pub fn serve_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    pub fn tmp(&self) -> &Path {
        self._tmp.path()
    }

    /// The current TOTP code of `user`.
    pub fn code(&self, user: &str) -> String {
        self.code_ahead(user, 0)
    }

    /// The TOTP code of `user` for `steps` 30-s steps from now (see
    /// [`totp::code_ahead`]).
    pub fn code_ahead(&self, user: &str, steps: i64) -> String {
        let key = &self
            .totp
            .iter()
            .find(|(u, _)| u == user)
            .expect("known user")
            .1;
        totp::code_ahead(key, steps)
    }

    /// Audit events of `kind` for `user`, as JSON.
    pub fn audit(&self, kind: &str, user: &str) -> Vec<serde_json::Value> {
        json_lines(&ok(sekisho(
            &self.dir,
            &["audit", "--kind", kind, "--user", user, "--json"],
            None,
        )))
    }

    /// Audit events of `kind` for everyone, as JSON.
    pub fn audit_kind(&self, kind: &str) -> Vec<serde_json::Value> {
        audit_kind(&self.dir, kind)
    }

    pub fn audit_session(&self, session: &str) -> Vec<serde_json::Value> {
        json_lines(&ok(sekisho(
            &self.dir,
            &["audit", "--session", session, "--json"],
            None,
        )))
    }

    /// Waits (30 s each) until the session `client` opened runs its desktop
    /// on the target (the test account's xterm) and its window is mapped
    /// (keys typed before are lost); fails with `what` and the client's,
    /// sekisho's and xrdp's logs otherwise.
    pub fn assert_desktop_up(&self, client: &Client, what: &str) {
        let up = wait_until(Duration::from_secs(30), session_user_running)
            && wait_until(Duration::from_secs(30), session_terminal_shown);
        assert!(
            up,
            "{what}.\nclient log:\n{}\nserve log:\n{}\nxrdp log:\n{}",
            client.log(),
            self.serve_log(),
            self.xrdp.log_text()
        );
    }

    /// Types `id -un > TMP/marker` into the client window on `display` and
    /// waits (20 s) until the target has run it as the test account; fails
    /// with `what` and the logs otherwise.
    pub fn assert_typed_command_runs(
        &self,
        client: &Client,
        display: &str,
        marker: &str,
        what: &str,
    ) {
        let marker = self.tmp().join(marker);
        type_into_client(display, &format!("id -un > {}", marker.display()));
        let typed = wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&marker).is_ok_and(|s| s.trim() == TEST_USER)
        });
        assert!(
            typed,
            "{what}.\nclient log:\n{}\nserve log:\n{}",
            client.log(),
            self.serve_log()
        );
    }

    /// xfreerdp3 on `display` through sekisho as `login`.
    pub fn client(&self, display: &str, login: &str, password: &str, extra: &[&str]) -> Client {
        self.client_via(self.rdp_port, display, login, password, extra)
    }

    /// [`Deployment::client`] connecting to `FRONT:port` instead of
    /// sekisho's listener (a forwarder in front of it).
    pub fn client_via(
        &self,
        port: u16,
        display: &str,
        login: &str,
        password: &str,
        extra: &[&str],
    ) -> Client {
        self.client_with(FREERDP3, port, display, login, password, extra)
    }

    /// [`Deployment::client_via`] with another FreeRDP client.
    pub fn client_with(
        &self,
        freerdp: FreeRdp,
        port: u16,
        display: &str,
        login: &str,
        password: &str,
        extra: &[&str],
    ) -> Client {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self
            .tmp()
            .join(format!("client-{n}-{}.log", login.replace('@', "_")));
        let log_file = std::fs::File::create(&log).expect("client log");
        let err_file = log_file.try_clone().expect("clone log");
        let daemon = Daemon::spawn(
            freerdp.program,
            Command::new(freerdp.program)
                .env("DISPLAY", display)
                .env("WLOG_LEVEL", "INFO")
                .arg(format!("/v:{FRONT}:{port}"))
                .arg(format!("/u:{login}"))
                .arg(format!("/p:{password}"))
                .args([freerdp.ignore_cert, "/size:1024x768", "-grab-keyboard"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(err_file),
        );
        Client { daemon, log }
    }
}

/// Audit events of `kind` in the deployment at `dir`, as JSON.
fn audit_kind(dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    json_lines(&ok(sekisho(
        dir,
        &["audit", "--kind", kind, "--json"],
        None,
    )))
}

/// `sekisho init` and a `sekisho serve` with only its RDP listener: no
/// policy, no people, no peers, for what the front door does by itself.
/// Needs no peer lock. Stops on drop.
pub struct Front {
    pub dir: PathBuf,
    pub rdp_port: u16,
    /// SHA-256 of the certificate `init` made for the RDP listener.
    pub cert_sha256: [u8; 32],
    _serve: Daemon,
    _tmp: tempfile::TempDir,
}

impl Front {
    pub fn start() -> Front {
        let tmp = tempfile::Builder::new()
            .prefix("sekisho-rdp-front")
            .tempdir()
            .expect("tempdir");
        let (install, init) = Install::init(&bin(), &tmp.path().join("bastion"));
        let hex: String = init
            .lines()
            .find_map(|l| l.trim().strip_prefix("RDP certificate SHA-256:"))
            .expect("init prints the RDP certificate's SHA-256")
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect();
        let cert_sha256 = hex::decode(&hex)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .expect("a SHA-256");
        let rdp_port = free_port();
        install.write_config(&format!(
            "[ssh]\nenabled = false\n[rdp]\nlisten = \"{FRONT}:{rdp_port}\"\n\
             [auth]\nfailure_delay = \"100ms\"\n"
        ));
        let serve = install.serve(
            &install.config(),
            "sekisho=debug",
            &install.dir.join("serve.log"),
            &[rdp_port],
        );
        Front {
            dir: install.dir,
            rdp_port,
            cert_sha256,
            _serve: serve,
            _tmp: tmp,
        }
    }

    pub fn serve_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// Audit events of `kind`, as JSON.
    pub fn audit_kind(&self, kind: &str) -> Vec<serde_json::Value> {
        audit_kind(&self.dir, kind)
    }
}

pub struct Client {
    pub daemon: Daemon,
    pub log: PathBuf,
}

impl Client {
    pub fn log(&self) -> String {
        client_log(&self.log)
    }

    /// Wait for the client to exit by itself; `None` if still connected.
    pub fn exit_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
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

pub fn session_user_running() -> bool {
    Command::new("pgrep")
        .args(["-u", TEST_USER, "xterm"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Peers, lock and a clean test account, in that order.
pub fn prepare() -> PeerLock {
    require_rdp_peers();
    let lock = lock_peers();
    ensure_test_user();
    end_test_user_sessions();
    lock
}
