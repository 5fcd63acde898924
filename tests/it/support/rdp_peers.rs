//! Real RDP peers for the integration tests: xrdp (+ xorgxrdp) as the
//! target, Xvfb and xfreerdp3 as the client. Everything listens on
//! 127.0.0.1 only. Daemons are started in their own process group and
//! stopped by that group id.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use super::free_port;
pub use super::process::{Daemon, wait_until};
use std::time::{Duration, Instant};

/// The dedicated local account the target sessions run as.
pub const TEST_USER: &str = "sekisho-rdpt";
pub const TEST_PASSWORD: &str = "Target-pw-71";

/// Fail (not skip) when a tool is missing, naming the Debian package.
pub fn require_tool(bin: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
        || Path::new(bin).is_file();
    assert!(
        found,
        "`{bin}` not found: install the Debian package `{package}` \
         (xrdp and freerdp3-* come from bookworm-backports)"
    );
}

pub fn require_rdp_peers() {
    require_tool("xrdp", "xrdp (bookworm-backports)");
    require_tool("xrdp-sesman", "xrdp (bookworm-backports)");
    require_tool("/usr/lib/xorg/modules/libxorgxrdp.so", "xorgxrdp");
    require_tool("xfreerdp3", "freerdp3-x11 (bookworm-backports)");
    require_tool("Xvfb", "xvfb");
    require_tool("xdotool", "xdotool");
    require_tool("xterm", "xterm");
    require_tool("xauth", "xauth");
}

/// Serialise tests that use xrdp-sesman, X displays and the test account.
pub struct PeerLock(fs::File);

pub fn lock_peers() -> PeerLock {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/sekisho-rdp-peers.lock")
        .expect("open lock file");
    use std::os::fd::AsRawFd as _;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock failed");
    PeerLock(file)
}

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Create the test account (idempotent) with an xterm desktop.
pub fn ensure_test_user() -> PathBuf {
    let exists = run(Command::new("id").arg(TEST_USER)).status.success();
    if !exists {
        let out = run(Command::new("useradd").args(["-m", "-s", "/bin/sh", TEST_USER]));
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .expect("chpasswd");
    {
        use std::io::Write as _;
        let stdin = chpasswd.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{TEST_USER}:{TEST_PASSWORD}").expect("write chpasswd");
    }
    assert!(chpasswd.wait().expect("chpasswd").success());
    let home = PathBuf::from(format!("/home/{TEST_USER}"));
    let startwm = home.join("startwm.sh");
    fs::write(
        &startwm,
        "#!/bin/sh\nexec xterm -geometry 100x30+0+0 -title sekisho-target-term\n",
    )
    .expect("write startwm.sh");
    fs::set_permissions(&startwm, fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = run(Command::new("chown")
        .arg(format!("{TEST_USER}:{TEST_USER}"))
        .arg(&startwm));
    assert!(out.status.success());
    home
}

/// End whatever the test account still runs (its xrdp session) and wait
/// until nothing can start one any more: TERM first, so its X server removes
/// its lock, then KILL what is left.
///
/// The account's processes alone are not enough. A session xrdp is still
/// setting up when its client goes away has none yet: xrdp's connection
/// process asks xrdp-sesman over TCP, sesman authenticates and forks a
/// session process (root), which forks the X server and the desktop and
/// only then takes the account's identity. Such a session's xterm would
/// appear after this returned, where the next check of the test ("did a
/// refused client reach the target?") sees it. So this ends, in the order a
/// session is made, xrdp's connection processes, requests still open at
/// sesman, sesman's session processes and the account's processes, and
/// returns when a pass finds none of them (each stage only hands over to a
/// later one, so a pass in that order misses nothing).
pub fn end_test_user_sessions() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut signal = libc::SIGTERM;
    loop {
        let left = session_setup_left();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the test account's xrdp session did not end: {left:?}"
        );
        for what in &left {
            if let SessionPart::Process(pid) = what {
                // SAFETY: signalling a process of the test's xrdp session.
                unsafe {
                    libc::kill(*pid, signal);
                }
            }
        }
        let gone = wait_until(Duration::from_secs(5), || {
            let now = session_setup_left();
            !now.iter().any(|p| left.contains(p))
        });
        if !gone {
            signal = libc::SIGKILL;
        }
    }
    clean_stale_displays();
}

/// A part of an xrdp session of the test account that still exists.
#[derive(Debug, PartialEq)]
enum SessionPart {
    /// A process: xrdp's connection process, sesman's session process (and
    /// its children before they exec) or a process of the account.
    Process(i32),
    /// A connection to sesman's port not yet closed by sesman: a request
    /// that may still start a session.
    SesmanRequest(String),
}

/// What of a test-account xrdp session still exists, in the order a
/// session is set up.
fn session_setup_left() -> Vec<SessionPart> {
    let procs = processes();
    let comm_of = |pid: i32| {
        procs
            .iter()
            .find(|p| p.pid == pid)
            .map(|p| p.comm.as_str())
            .unwrap_or_default()
    };
    let mut left = Vec::new();
    // xrdp's per-connection processes (children of the xrdp daemon).
    left.extend(
        procs
            .iter()
            .filter(|p| p.comm == "xrdp" && comm_of(p.ppid) == "xrdp")
            .map(|p| SessionPart::Process(p.pid)),
    );
    left.extend(
        sesman_requests()
            .into_iter()
            .map(SessionPart::SesmanRequest),
    );
    // sesman's session processes: forks of the daemon (and theirs), or
    // orphans of a daemon a killed test left behind.
    left.extend(
        procs
            .iter()
            .filter(|p| {
                p.comm == "xrdp-sesman" && (comm_of(p.ppid) == "xrdp-sesman" || p.ppid == 1)
            })
            .map(|p| SessionPart::Process(p.pid)),
    );
    let uid = test_user_uid();
    left.extend(
        procs
            .iter()
            .filter(|p| Some(p.uid) == uid)
            .map(|p| SessionPart::Process(p.pid)),
    );
    left
}

struct Proc {
    pid: i32,
    ppid: i32,
    uid: u32,
    comm: String,
}

/// The processes of the machine, from /proc (one that exits while being
/// read is left out).
fn processes() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_owned();
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some(Proc {
                pid,
                ppid,
                uid,
                comm,
            })
        })
        .collect()
}

fn test_user_uid() -> Option<u32> {
    let out = run(Command::new("id").args(["-u", TEST_USER]));
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// xrdp-sesman's port (`ListenPort`; see [`Xrdp::start_at`]).
const SESMAN_PORT: u16 = 3350;

/// TCP connections to or from sesman's port that are neither the listener
/// nor fully closed, as "local remote" addresses from /proc/net/tcp{,6}.
fn sesman_requests() -> Vec<String> {
    const LISTEN: &str = "0A";
    const TIME_WAIT: &str = "06";
    let port = format!("{SESMAN_PORT:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let on_port = |a: &str| a.rsplit_once(':').is_some_and(|(_, p)| p == port);
            f.len() > 3 && (on_port(f[1]) || on_port(f[2])) && f[3] != LISTEN && f[3] != TIME_WAIT
        })
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            format!("{} {}", f[1], f[2])
        })
        .collect()
}

/// Where xrdp's channel server (chansrv: clipboard, drives, printers) of the
/// test account logs, one `xrdp-chansrv.DISPLAY.log` per display.
fn chansrv_log_dir() -> PathBuf {
    PathBuf::from(format!("/home/{TEST_USER}/.local/share/xrdp"))
}

/// Remove the test account's channel server logs, so that what they hold
/// afterwards comes from the sessions that follow (call with the peer lock).
pub fn clear_chansrv_logs() {
    let Ok(entries) = fs::read_dir(chansrv_log_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("xrdp-chansrv.")
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Everything the test account's channel servers have logged, e.g.
/// "Detected remote drive 'share'" or "Detected remote printer 'P' (not
/// supported)" when a client announces devices over `rdpdr`.
pub fn chansrv_log_text() -> String {
    let Ok(entries) = fs::read_dir(chansrv_log_dir()) else {
        return String::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("xrdp-chansrv."))
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .collect()
}

/// Self-signed certificate + key (PEM) and the DER's SHA-256.
pub fn self_signed(dir: &Path, stem: &str) -> (PathBuf, PathBuf, [u8; 32]) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("rcgen");
    let cert = dir.join(format!("{stem}-cert.pem"));
    let key = dir.join(format!("{stem}-key.pem"));
    fs::write(&cert, ck.cert.pem()).expect("write cert");
    fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    let pin = sekisho::rdp::back::cert_sha256(ck.cert.der());
    (cert, key, pin)
}

/// xrdp + xrdp-sesman with their own configuration on a free port.
pub struct Xrdp {
    pub port: u16,
    pub log: PathBuf,
    pub sesman_log: PathBuf,
    pub pin: [u8; 32],
    _sesman: Daemon,
    _xrdp: Daemon,
}

impl Xrdp {
    pub fn start(dir: &Path) -> Xrdp {
        Xrdp::start_at(dir, "127.0.0.1")
    }

    /// xrdp listening on another loopback address (`ip`, e.g. 127.0.0.2),
    /// so that a client on 127.0.0.1 does not come from the target's address.
    pub fn start_at(dir: &Path, ip: &str) -> Xrdp {
        let out = run(Command::new("sh").arg("/usr/share/xrdp/socksetup"));
        assert!(
            out.status.success(),
            "socksetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A stale pid file (from a killed run) stops sesman from starting.
        let _ = fs::remove_file("/run/xrdp/xrdp-sesman.pid");
        let _ = fs::remove_file("/run/xrdp/xrdp.pid");
        let (cert, key, pin) = self_signed(dir, "xrdp");
        let port = free_port();
        // xrdp always looks for sesman at the port in /etc/xrdp/sesman.ini
        // (3350); the peer lock keeps this to one test at a time.
        let sesman_port = SESMAN_PORT;
        let log = dir.join("xrdp.log");
        let sesman_log = dir.join("xrdp-sesman.log");

        let ini = fs::read_to_string("/etc/xrdp/xrdp.ini").expect("read xrdp.ini");
        // Keep only the Xorg session type, so autologon lands there.
        let ini = match ini.find("\n[Xvnc]") {
            Some(i) => ini[..i].to_owned(),
            None => ini,
        };
        let ini = set_keys(
            &ini,
            &[
                ("port", &format!("tcp://{ip}:{port}")),
                ("security_layer", "tls"),
                ("certificate", cert.to_str().expect("utf8")),
                ("key_file", key.to_str().expect("utf8")),
                ("LogFile", log.to_str().expect("utf8")),
                ("LogLevel", "DEBUG"),
                ("EnableSyslog", "false"),
            ],
        );
        let xrdp_ini = dir.join("xrdp.ini");
        fs::write(&xrdp_ini, ini).expect("write xrdp.ini");

        let ses = fs::read_to_string("/etc/xrdp/sesman.ini").expect("read sesman.ini");
        let ses = set_keys(
            &ses,
            &[
                ("ListenPort", &sesman_port.to_string()),
                ("LogFile", sesman_log.to_str().expect("utf8")),
                ("LogLevel", "DEBUG"),
                ("EnableSyslog", "false"),
                ("X11DisplayOffset", "60"),
                ("KillDisconnected", "true"),
            ],
        );
        let ses = ses.replace("param=xrdp/xorg.conf", "param=/etc/X11/xrdp/xorg.conf");
        let sesman_ini = dir.join("sesman.ini");
        fs::write(&sesman_ini, ses).expect("write sesman.ini");

        let sesman = Daemon::spawn(
            "xrdp-sesman",
            Command::new("xrdp-sesman")
                .arg("-n")
                .arg("-c")
                .arg(&sesman_ini)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let xrdp = Daemon::spawn(
            "xrdp",
            Command::new("xrdp")
                .arg("-n")
                .arg("-c")
                .arg(&xrdp_ini)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        for (what, host, p) in [
            ("xrdp", ip, port),
            ("xrdp-sesman", "127.0.0.1", sesman_port),
        ] {
            // sesman (built with IPv6) binds "127.0.0.1" as [::1].
            let up = wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect((host, p)).is_ok()
                    || std::net::TcpStream::connect(("::1", p)).is_ok()
            });
            assert!(
                up,
                "{what} is not listening on {p}.\nxrdp log:\n{}\nsesman log:\n{}",
                fs::read_to_string(&log).unwrap_or_default(),
                fs::read_to_string(&sesman_log).unwrap_or_default()
            );
        }
        Xrdp {
            port,
            log,
            sesman_log,
            pin,
            _sesman: sesman,
            _xrdp: xrdp,
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn sesman_log_text(&self) -> String {
        fs::read_to_string(&self.sesman_log).unwrap_or_default()
    }
}

/// Replace the first `key=value` line of each key (the [Globals] or
/// [Logging] one, which come first in the stock files).
fn set_keys(ini: &str, keys: &[(&str, &str)]) -> String {
    let mut done = vec![false; keys.len()];
    ini.lines()
        .map(|line| {
            for (i, (k, v)) in keys.iter().enumerate() {
                if !done[i] && line.starts_with(&format!("{k}=")) {
                    done[i] = true;
                    return format!("{k}={v}");
                }
            }
            line.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listening on 127.0.0.1:{port} after {timeout:?}");
}

/// Xvfb on a free display number.
pub struct Xvfb {
    pub display: String,
    _daemon: Daemon,
}

/// Whether X display `n` is free: no lock file, or a lock left by a
/// process that is gone (Xvfb then takes the display over).
fn display_free(n: u32) -> bool {
    match fs::read_to_string(format!("/tmp/.X{n}-lock")) {
        Err(_) => true,
        Ok(pid) => pid
            .trim()
            .parse::<u32>()
            .map(|pid| !Path::new(&format!("/proc/{pid}")).exists())
            .unwrap_or(false),
    }
}

/// Remove X lock files and sockets of displays whose server is gone (a
/// killed session leaves them, and xrdp-sesman then skips those numbers).
pub fn clean_stale_displays() {
    for n in 60..130 {
        if Path::new(&format!("/tmp/.X{n}-lock")).exists() && display_free(n) {
            let _ = fs::remove_file(format!("/tmp/.X{n}-lock"));
            let _ = fs::remove_file(format!("/tmp/.X11-unix/X{n}"));
        }
    }
}

impl Xvfb {
    pub fn start() -> Xvfb {
        clean_stale_displays();
        let n = (100..130)
            .find(|n| display_free(*n) && !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists())
            .expect("a free X display");
        let display = format!(":{n}");
        let daemon = Daemon::spawn(
            "Xvfb",
            Command::new("Xvfb")
                .args([
                    display.as_str(),
                    "-screen",
                    "0",
                    "1280x800x24",
                    "-nolisten",
                    "tcp",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let sock = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(sock.exists(), "Xvfb did not start on {display}");
        Xvfb {
            display,
            _daemon: daemon,
        }
    }
}

/// A FreeRDP X11 client: its program, and how it is told to accept any
/// certificate (the options differ between major versions).
#[derive(Debug, Clone, Copy)]
pub struct FreeRdp {
    pub program: &'static str,
    pub ignore_cert: &'static str,
}

pub const FREERDP3: FreeRdp = FreeRdp {
    program: "xfreerdp3",
    ignore_cert: "/cert:ignore",
};

/// FreeRDP 2 (Debian `freerdp2-x11`): its clipboard works both ways with
/// xrdp, where FreeRDP 3.10 pastes only one character server to client.
pub const FREERDP2: FreeRdp = FreeRdp {
    program: "xfreerdp",
    ignore_cert: "/cert-ignore",
};

/// The X display (`:N`) of the test account's xrdp session, from its Xorg
/// command line.
pub fn session_display() -> Option<String> {
    let out = run(Command::new("pgrep").args(["-a", "-u", TEST_USER, "Xorg"]));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.len() > 1 && w.starts_with(':') && w[1..].bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
}

/// Whether the test account's terminal (its desktop, `startwm.sh`) is
/// mapped on the screen of its xrdp session. The xterm process runs a while
/// before its window is up; keys typed before then are lost.
pub fn session_terminal_shown() -> bool {
    let Some(display) = session_display() else {
        return false;
    };
    Command::new("runuser")
        .args(["-u", TEST_USER, "--", "timeout", "5", "xdotool", "search"])
        .args(["--onlyvisible", "--name", "sekisho-target-term"])
        .env("DISPLAY", &display)
        .env("XAUTHORITY", format!("/home/{TEST_USER}/.Xauthority"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
}

/// `xclip` on `display` (given up after 5 s: a selection owner may never
/// answer): as root (a client display) or as the test account with its X
/// authority (the xrdp session).
fn xclip(display: &str, as_test_user: bool) -> Command {
    let mut cmd = if as_test_user {
        let mut c = Command::new("runuser");
        c.args(["-u", TEST_USER, "--", "timeout", "5", "xclip"])
            .env("XAUTHORITY", format!("/home/{TEST_USER}/.Xauthority"));
        c
    } else {
        let mut c = Command::new("timeout");
        c.args(["5", "xclip"]);
        c
    };
    cmd.env("DISPLAY", display)
        .args(["-selection", "clipboard"]);
    cmd
}

/// Put `text` on the CLIPBOARD of `display` (xclip keeps owning it in the
/// background until another client takes the selection or X goes away).
pub fn clipboard_set(display: &str, as_test_user: bool, text: &str) {
    use std::io::Write as _;
    let mut child = xclip(display, as_test_user)
        .arg("-i")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("xclip");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to xclip");
    assert!(child.wait().expect("xclip").success(), "xclip -i failed");
}

/// The CLIPBOARD text of `display` ("" when nobody offers text).
pub fn clipboard_get(display: &str, as_test_user: bool) -> String {
    let out = xclip(display, as_test_user)
        .arg("-o")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("xclip -o");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// xfreerdp3 connecting to 127.0.0.1:port as `user`/`password`.
pub fn xfreerdp(
    display: &str,
    port: u16,
    user: &str,
    password: &str,
    extra: &[&str],
    log: &Path,
) -> Daemon {
    let log_file = fs::File::create(log).expect("client log");
    let err_file = log_file.try_clone().expect("clone log");
    let mut cmd = Command::new("xfreerdp3");
    cmd.env("DISPLAY", display)
        .env("WLOG_LEVEL", "INFO")
        .arg(format!("/v:127.0.0.1:{port}"))
        .arg(format!("/u:{user}"))
        .arg(format!("/p:{password}"))
        .args(["/cert:ignore", "/size:1024x768", "-grab-keyboard"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file);
    Daemon::spawn("xfreerdp3", &mut cmd)
}

/// Type a line into the FreeRDP window on `display`.
pub fn type_into_client(display: &str, text: &str) {
    let search = run(Command::new("xdotool")
        .env("DISPLAY", display)
        .args(["search", "--name", "FreeRDP"]));
    let window = String::from_utf8_lossy(&search.stdout)
        .lines()
        .next()
        .map(str::to_owned)
        .expect("FreeRDP window on the client display");
    let _ = run(Command::new("xdotool").env("DISPLAY", display).args([
        "windowactivate",
        "--sync",
        &window,
    ]));
    let _ = run(Command::new("xdotool").env("DISPLAY", display).args([
        "mousemove",
        "--sync",
        "300",
        "300",
    ]));
    let _ = run(Command::new("xdotool").env("DISPLAY", display).args([
        "windowfocus",
        "--sync",
        &window,
    ]));
    let out = run(Command::new("xdotool")
        .env("DISPLAY", display)
        .args(["type", "--delay", "40", text]));
    assert!(out.status.success(), "xdotool type failed");
    let out = run(Command::new("xdotool")
        .env("DISPLAY", display)
        .args(["key", "Return"]));
    assert!(out.status.success(), "xdotool key failed");
}

pub fn client_log(log: &Path) -> String {
    fs::read_to_string(log).unwrap_or_default()
}

/// First self-check of a test: the helper itself found its tools.
pub fn _used() -> (&'static str, &'static str) {
    (TEST_USER, TEST_PASSWORD)
}

/// SHA-256 of the certificate a TLS-or-NLA RDP server presents (the test
/// pins what it sees, as an admin would after checking it out of band).
pub fn probe_cert_sha256(port: u16) -> [u8; 32] {
    probe_cert_sha256_at("127.0.0.1", port)
}

/// [`probe_cert_sha256`] of a server on another loopback address.
pub fn probe_cert_sha256_at(ip: &str, port: u16) -> [u8; 32] {
    use std::io::{Read as _, Write as _};
    use std::sync::{Arc, Mutex};

    #[derive(Debug)]
    struct Capture(Mutex<Option<[u8; 32]>>, Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for Capture {
        fn verify_server_cert(
            &self,
            end_entity: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            *self.0.lock().expect("lock") =
                Some(sekisho::rdp::back::cert_sha256(end_entity.as_ref()));
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.1.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.1.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.1.signature_verification_algorithms.supported_schemes()
        }
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(Capture(Mutex::new(None), provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let mut tcp = std::net::TcpStream::connect((ip, port)).expect("connect for probe");
    // X.224 Connection Request asking for TLS or NLA.
    let request = ironrdp_core::encode_vec(&ironrdp_pdu::x224::X224(
        ironrdp_pdu::nego::ConnectionRequest {
            nego_data: None,
            flags: ironrdp_pdu::nego::RequestFlags::empty(),
            protocol: ironrdp_pdu::nego::SecurityProtocol::SSL
                | ironrdp_pdu::nego::SecurityProtocol::HYBRID,
            correlation_info: None,
        },
    ))
    .expect("encode");
    tcp.write_all(&request).expect("write");
    let mut confirm = [0u8; 19];
    tcp.read_exact(&mut confirm).expect("read confirm");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("tls");
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).expect("TLS handshake for probe");
    }
    capture.0.lock().expect("lock").expect("a certificate")
}

/// The FreeRDP 3 shadow server sharing an X display, NLA only, with one
/// account in its own SAM file.
pub struct Shadow {
    pub port: u16,
    pub log: PathBuf,
    _daemon: Daemon,
}

pub const SHADOW_USER: &str = "shadowop";
pub const SHADOW_PASSWORD: &str = "Shadow-pw-52";

impl Shadow {
    pub fn start(dir: &Path, display: &str) -> Shadow {
        require_tool(
            "freerdp-shadow-cli3",
            "freerdp3-shadow-x11 (bookworm-backports)",
        );
        require_tool("winpr-hash", "winpr-utils");
        let sam = dir.join("shadow.sam");
        let out = run(Command::new("winpr-hash").args([
            "-u",
            SHADOW_USER,
            "-p",
            SHADOW_PASSWORD,
            "-f",
            "sam",
        ]));
        assert!(out.status.success(), "winpr-hash failed");
        fs::write(&sam, &out.stdout).expect("write sam");
        let port = free_port();
        let log = dir.join("shadow.log");
        let log_file = fs::File::create(&log).expect("shadow log");
        let err_file = log_file.try_clone().expect("clone");
        let daemon = Daemon::spawn(
            "freerdp-shadow-cli3",
            Command::new("freerdp-shadow-cli3")
                .env("DISPLAY", display)
                .env("HOME", dir)
                .arg("/bind-address:127.0.0.1")
                .arg(format!("/port:{port}"))
                .arg("/sec:nla")
                .arg(format!("/sam-file:{}", sam.display()))
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(err_file),
        );
        let up = wait_until(Duration::from_secs(15), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up,
            "shadow server not listening:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        Shadow {
            port,
            log,
            _daemon: daemon,
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An xterm (a root shell) on `display`, for typing into a shared desktop.
pub fn xterm_on(display: &str) -> Daemon {
    Daemon::spawn(
        "xterm",
        Command::new("xterm")
            .env("DISPLAY", display)
            .args(["-geometry", "120x40+0+0", "-title", "shadow-term"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}
