//! sekisho against OpenSSH's own jump host and a direct connection, in one
//! run, with real peers on 127.0.0.1:
//!
//! - **direct**: `ssh` to an OpenSSH sshd target;
//! - **ssh -J**: the same target through a second OpenSSH sshd acting as jump
//!   host (`ProxyJump` in the `-F` config file);
//! - **sekisho**: the same target through a real `sekisho serve` (release
//!   build), recording every byte as it always does.
//!
//! `cargo bench --bench ssh` prints markdown tables: bulk download and
//! upload throughput, keystroke echo latency, connection set-up time, and
//! the memory and CPU of the bastion with many concurrent interactive
//! sessions. Environment (defaults in brackets): `SEKISHO_BENCH_DOWNLOAD_MIB`
//! [1024], `SEKISHO_BENCH_UPLOAD_MIB` [512], `SEKISHO_BENCH_REPEAT` [3],
//! `SEKISHO_BENCH_ECHO_SAMPLES` [1000], `SEKISHO_BENCH_SETUP_RUNS` [10],
//! `SEKISHO_BENCH_SESSIONS` [200], `SEKISHO_BENCH_IDLE_SECS` [10].

// A panic in a test or bench is a failed run; libc calls set up test conditions.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/support/mod.rs"]
mod fixture;

#[path = "support/measure.rs"]
mod measure;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fixture::deployment::{self, Deployment, PASSWORD};
use fixture::sshd;
use measure::*;

/// The sekisho user the benchmark signs in as, and from where.
const USER: &str = "tanaka";
const SOURCE: &str = "127.0.0.1";
/// Connections opened at once when starting many sessions (below the
/// target's and the jump host's `MaxStartups 50`).
const OPEN_BATCH: usize = 20;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Via {
    Direct,
    Jump,
    Sekisho,
}

const ALL: [Via; 3] = [Via::Direct, Via::Jump, Via::Sekisho];

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Jump => "ssh -J",
            Via::Sekisho => "sekisho",
        }
    }
}

struct Bench {
    d: Deployment,
    /// Client config with `Host direct` and `Host viajump` (ProxyJump).
    client_config: PathBuf,
    /// The jump host's sshd, for its memory and CPU.
    jump_sshd_pid: u32,
    _jump: sshd::Sshd,
}

impl Bench {
    /// `setsid -w ssh [opts] HOST [remote]` along `via`; stdin is null.
    fn ssh(&self, via: Via, opts: &[&str], remote: &[&str]) -> Command {
        match via {
            Via::Sekisho => self.d.ssh_with(
                opts,
                &format!("{USER}@db01"),
                SOURCE,
                PASSWORD,
                &self.d.code(USER),
                remote,
            ),
            Via::Direct | Via::Jump => {
                let mut c = Command::new("setsid");
                c.arg("-w")
                    .arg("ssh")
                    .arg("-F")
                    .arg(&self.client_config)
                    .args(opts)
                    .arg(if via == Via::Direct {
                        "direct"
                    } else {
                        "viajump"
                    })
                    .args(remote)
                    .env_remove("SSH_AUTH_SOCK")
                    .env_remove("DISPLAY")
                    .stdin(Stdio::null());
                c
            }
        }
    }

    /// Makes sure the sign-in window for USER from SOURCE is open (the first
    /// connection types the code; a code is accepted once per 30 s step).
    fn open_window(&self) {
        for attempt in 0..3 {
            let out = self
                .ssh(Via::Sekisho, &[], &["true"])
                .stdout(Stdio::null())
                .output()
                .expect("run ssh");
            if out.status.success() {
                return;
            }
            eprintln!(
                "sign-in attempt {attempt} failed ({}); waiting for the next code",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            std::thread::sleep(Duration::from_secs(31));
        }
        panic!(
            "cannot sign in to sekisho: {}",
            deployment::read(&self.d.dir.join("serve.log"))
        );
    }
}

/// Kills a process if it outlives its time limit (every run is bounded).
struct Watchdog {
    done: Arc<AtomicBool>,
}

impl Watchdog {
    fn new(pid: u32, limit: Duration, what: String) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                if start.elapsed() > limit {
                    eprintln!("{what}: still running after {limit:?}; killing it");
                    kill(pid, libc::SIGKILL);
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Watchdog { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

fn kill(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) on a pid this process started.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

// ---------------------------------------------------------------- peers

fn setup() -> Bench {
    raise_fd_limit();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_sekisho"));
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/sekisho");
    assert!(
        bin.components().any(|c| c.as_os_str() == "release"),
        "the bench must run the release binary, not {}: use `cargo bench --bench ssh`",
        bin.display()
    );
    let bin = if bin.exists() { bin } else { release };
    let d = Deployment::start(&bin, "sekisho-bench");
    let jump_dir = d.dir.join("jump");
    std::fs::create_dir_all(&jump_dir).expect("jump dir");
    let jump = sshd::Sshd::start(&jump_dir);
    let jump_sshd_pid = pid_listening_on(jump.port).expect("jump sshd pid");
    let client_config = d.dir.join("bench_ssh_config");
    std::fs::write(
        &client_config,
        format!(
            "Host direct viajump\n  HostName 127.0.0.1\n  Port {tport}\n  User root\n  \
             IdentityFile {tkey}\n\
             Host viajump\n  ProxyJump jumphost\n\
             Host jumphost\n  HostName 127.0.0.1\n  Port {jport}\n  User root\n  \
             IdentityFile {jkey}\n\
             Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  \
             LogLevel ERROR\n  BatchMode yes\n  IdentitiesOnly yes\n  ConnectTimeout 10\n",
            tport = d.target.port,
            tkey = d.dir.join("target_client_key").display(),
            jport = jump.port,
            jkey = jump_dir.join("target_client_key").display(),
        ),
    )
    .expect("client config");
    Bench {
        d,
        client_config,
        jump_sshd_pid,
        _jump: jump,
    }
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The pid of the process listening on 127.0.0.1:`port` (via /proc/net/tcp
/// inodes and /proc/*/fd).
fn pid_listening_on(port: u16) -> Option<u32> {
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let want = format!("0100007F:{port:04X}");
    let inode = tcp.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A"))
            .then(|| f.get(9).map(|s| s.to_string()))
            .flatten()
    })?;
    let needle = format!("socket:[{inode}]");
    for p in std::fs::read_dir("/proc").ok()? {
        let p = p.ok()?;
        let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == needle) {
                return Some(pid);
            }
        }
    }
    None
}

// ---------------------------------------------------------------- throughput

/// `ssh host 'head -c N /dev/zero'`: MiB/s from the first byte to EOF.
fn download(b: &Bench, via: Via, mib: usize) -> f64 {
    let mut child = b
        .ssh(via, &[], &[&format!("head -c {mib}M /dev/zero")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    let _w = Watchdog::new(
        child.id(),
        Duration::from_secs(300),
        format!("download via {}", via.name()),
    );
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    let mut start = None;
    loop {
        let n = out.read(&mut buf).expect("read ssh stdout");
        if n == 0 {
            break;
        }
        start.get_or_insert_with(Instant::now);
        total += n;
    }
    let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let o = child.wait_with_output().expect("wait ssh");
    assert!(
        o.status.success() && total == mib << 20,
        "download via {} got {total} bytes, {}: {}",
        via.name(),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    mib as f64 / secs
}

/// `ssh host 'cat >/dev/null'` fed N MiB: MiB/s from the first byte
/// written (once the remote command has started) to the remote EOF.
fn upload(b: &Bench, via: Via, mib: usize) -> f64 {
    let mut child = b
        .ssh(via, &[], &["echo started; cat >/dev/null; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    let _w = Watchdog::new(
        child.id(),
        Duration::from_secs(300),
        format!("upload via {}", via.name()),
    );
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = child.stdout.take().expect("stdout");
    let mut line = Vec::new();
    read_until(&mut out, &mut line, b"started\n");
    let start = Instant::now();
    let buf = vec![0u8; 256 * 1024];
    let mut left = mib << 20;
    while left > 0 {
        let n = left.min(buf.len());
        stdin.write_all(&buf[..n]).expect("write ssh stdin");
        left -= n;
    }
    drop(stdin);
    read_until(&mut out, &mut line, b"done\n");
    let secs = start.elapsed().as_secs_f64();
    let o = child.wait_with_output().expect("wait ssh");
    assert!(
        o.status.success(),
        "upload via {}: {}: {}",
        via.name(),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    mib as f64 / secs
}

/// Reads until `buf` ends with `pat` (panics at EOF).
fn read_until(r: &mut impl std::io::Read, buf: &mut Vec<u8>, pat: &[u8]) {
    let mut byte = [0u8; 1];
    while !buf.ends_with(pat) {
        let n = r.read(&mut byte).expect("read");
        assert!(
            n > 0,
            "EOF before {:?}; got {:?}",
            String::from_utf8_lossy(pat),
            String::from_utf8_lossy(buf)
        );
        buf.push(byte[0]);
    }
}

// ---------------------------------------------------------------- echo

/// A pty session running `cat` in raw mode: each byte written comes back.
struct EchoSession {
    via: Via,
    child: Child,
    stdin: ChildStdin,
    out: std::process::ChildStdout,
    _watchdog: Watchdog,
}

impl EchoSession {
    fn open(b: &Bench, via: Via) -> EchoSession {
        let mut child = b
            .ssh(via, &["-tt"], &["stty raw -echo; echo READY; exec cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ssh");
        let watchdog = Watchdog::new(
            child.id(),
            Duration::from_secs(300),
            format!("echo via {}", via.name()),
        );
        let stdin = child.stdin.take().expect("stdin");
        let mut out = child.stdout.take().expect("stdout");
        let mut seen = Vec::new();
        read_until(&mut out, &mut seen, b"READY");
        // The rest of the line (`\r\n` or `\n`).
        std::thread::sleep(Duration::from_millis(200));
        drain_nonblocking(&out);
        EchoSession {
            via,
            child,
            stdin,
            out,
            _watchdog: watchdog,
        }
    }

    /// µs from writing one byte to reading it back.
    fn sample(&mut self, c: u8) -> f64 {
        let mut byte = [0u8; 1];
        let t = Instant::now();
        self.stdin.write_all(&[c]).expect("write");
        self.stdin.flush().expect("flush");
        let n = self.out.read(&mut byte).expect("read echo");
        let us = t.elapsed().as_secs_f64() * 1e6;
        assert!(
            n == 1 && byte[0] == c,
            "echo via {}: wrong byte",
            self.via.name()
        );
        us
    }
}

/// Keystroke echo latency along every path, `samples` one-byte round trips
/// each. The paths are sampled in turn (rotating the order every round,
/// 2 ms between rounds) so load from elsewhere on the machine hits all
/// alike. Sorted µs per path.
fn echo_latency_all(b: &Bench, samples: usize) -> BTreeMap<Via, Vec<f64>> {
    let mut sessions: Vec<EchoSession> = ALL.iter().map(|v| EchoSession::open(b, *v)).collect();
    let mut res: BTreeMap<Via, Vec<f64>> = BTreeMap::new();
    for i in 0..samples {
        let c = b'a' + (i % 26) as u8;
        for k in 0..sessions.len() {
            let s = &mut sessions[(i + k) % ALL.len()];
            let us = s.sample(c);
            res.entry(s.via).or_default().push(us);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for mut s in sessions {
        kill(s.child.id(), libc::SIGTERM);
        let _ = s.child.wait();
    }
    for v in res.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    res
}

fn drain_nonblocking(out: &std::process::ChildStdout) {
    use std::os::fd::AsRawFd as _;
    let fd = out.as_raw_fd();
    let mut buf = [0u8; 4096];
    // SAFETY: fcntl and read on a pipe fd we own, into a buffer we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        while libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) > 0 {}
        libc::fcntl(fd, libc::F_SETFL, flags);
    }
}

// ---------------------------------------------------------------- set-up

/// `ssh host true`, wall time in ms, sorted.
fn setup_times(b: &Bench, via: Via, runs: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let child = b
            .ssh(via, &[], &["true"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ssh");
        let _w = Watchdog::new(child.id(), Duration::from_secs(30), "set-up".into());
        let o = child.wait_with_output().expect("wait");
        v.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(
            o.status.success(),
            "set-up via {}: {}",
            via.name(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    v.sort_by(f64::total_cmp);
    v
}

/// The key exchange and cipher OpenSSH negotiated on each of the client's
/// connections (two for -J).
fn negotiated(b: &Bench, via: Via) -> String {
    let o = b
        .ssh(via, &["-v"], &["true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("ssh -v");
    let err = String::from_utf8_lossy(&o.stderr);
    err.lines()
        .filter_map(|l| {
            l.split("kex: algorithm: ")
                .nth(1)
                .or_else(|| l.split("kex: server->client cipher: ").nth(1))
        })
        .map(|l| l.split_whitespace().next().unwrap_or("?").to_string())
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|c| c.join(" / "))
        .collect::<Vec<_>>()
        .join(" + ")
}

// ---------------------------------------------------------------- many sessions

/// An interactive `ssh -tt` (login shell) with a reader thread collecting
/// everything it prints.
struct Interactive {
    child: Child,
    stdin: ChildStdin,
    out: Arc<(Mutex<Vec<u8>>, Condvar)>,
}

impl Interactive {
    fn spawn(b: &Bench, via: Via) -> Interactive {
        let mut child = b
            .ssh(via, &["-tt"], &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ssh");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        let out = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let o = out.clone();
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    let n = stdout.read(&mut buf).unwrap_or(0);
                    let (m, cv) = &*o;
                    let mut g = m.lock().expect("lock");
                    if n == 0 {
                        g.extend_from_slice(b"\0EOF");
                        cv.notify_all();
                        return;
                    }
                    g.extend_from_slice(&buf[..n]);
                    cv.notify_all();
                }
            })
            .expect("reader thread");
        Interactive { child, stdin, out }
    }

    /// Types `echo X$((N+1))`: the shell prints `X<N+1>`, which the echo of
    /// the typed line does not contain.
    fn send_marker(&mut self, tag: char, n: usize) {
        let line = format!("echo {tag}$(({n}+1))\n");
        self.stdin.write_all(line.as_bytes()).expect("type");
        self.stdin.flush().expect("flush");
    }

    fn wait_marker(&self, tag: char, n: usize, deadline: Instant) -> bool {
        let want = format!("{tag}{}", n + 1);
        let (m, cv) = &*self.out;
        let mut g = m.lock().expect("lock");
        loop {
            let text = String::from_utf8_lossy(&g);
            if text.contains(&want) {
                return true;
            }
            if text.contains("\0EOF") {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = cv.wait_timeout(g, left).expect("wait").0;
        }
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.0.lock().expect("lock")).into_owned()
    }
}

struct Many {
    sessions: usize,
    cold: Usage,
    before: Usage,
    after: Usage,
    closed: Usage,
    open_secs: f64,
    idle_secs: f64,
    idle_ticks: u64,
    burst_secs: f64,
    burst_ticks: u64,
}

/// Opens `n` more interactive sessions along `via` into `all`, OPEN_BATCH
/// at a time, each proven live by a marker its shell prints.
fn open_sessions(b: &Bench, via: Via, n: usize, all: &mut Vec<Interactive>) {
    let target = all.len() + n;
    let open_limit = Instant::now() + Duration::from_secs(600);
    while all.len() < target {
        assert!(
            Instant::now() < open_limit,
            "opening sessions took too long"
        );
        let first = all.len();
        for _ in first..(first + OPEN_BATCH).min(target) {
            all.push(Interactive::spawn(b, via));
        }
        for (i, s) in all.iter_mut().enumerate().skip(first) {
            s.send_marker('R', 1000 + i);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for (i, s) in all.iter().enumerate().skip(first) {
            assert!(
                s.wait_marker('R', 1000 + i, deadline),
                "session {i} via {} did not start: {}",
                via.name(),
                s.output()
            );
        }
    }
}

/// Types `exit` in every session and waits (bounded) for the clients to end.
fn close_sessions(all: Vec<Interactive>) {
    let mut all = all;
    for s in all.iter_mut() {
        let _ = s.stdin.write_all(b"exit\n");
        let _ = s.stdin.flush();
    }
    let close_limit = Instant::now() + Duration::from_secs(60);
    for mut s in all {
        loop {
            match s.child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > close_limit => {
                    kill(s.child.id(), libc::SIGKILL);
                    let _ = s.child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// Measures the process tree of `server_pid` (the bastion) with `n`
/// interactive sessions along `via`: memory before and after opening them,
/// CPU while they idle and during a burst where every session echoes a
/// line. `before` is taken after a warm-up batch of OPEN_BATCH concurrent
/// sessions has been opened and closed (so the sign-in high-water mark,
/// e.g. concurrent argon2 buffers, is in the baseline); `cold` is before it.
fn many_sessions(b: &Bench, via: Via, server_pid: u32, n: usize, idle: Duration) -> Many {
    if via == Via::Sekisho {
        b.open_window();
    }
    std::thread::sleep(Duration::from_secs(2));
    let cold = usage(server_pid);
    let mut warm = Vec::new();
    open_sessions(b, via, OPEN_BATCH.min(n), &mut warm);
    close_sessions(warm);
    std::thread::sleep(Duration::from_secs(3));
    let before = usage(server_pid);

    let t_open = Instant::now();
    let mut all: Vec<Interactive> = Vec::with_capacity(n);
    open_sessions(b, via, n, &mut all);
    let open_secs = t_open.elapsed().as_secs_f64();
    // Let the sessions settle (first chunks flushed, handshakes freed).
    std::thread::sleep(Duration::from_secs(2));
    let after = usage(server_pid);
    // For a closer look at where the memory is (kept in the deployment dir).
    let smaps = b.d.dir.join(format!(
        "smaps-{}-{n}-sessions.txt",
        via.name().replace(' ', "")
    ));
    if std::fs::copy(format!("/proc/{server_pid}/smaps"), &smaps).is_ok() {
        eprintln!("memory map with {n} sessions: {}", smaps.display());
    }
    let t_idle = Instant::now();
    std::thread::sleep(idle);
    let idle_end = usage(server_pid);
    let idle_secs = t_idle.elapsed().as_secs_f64();

    let t_burst = Instant::now();
    for (i, s) in all.iter_mut().enumerate() {
        s.send_marker('B', 5000 + i);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, s) in all.iter().enumerate() {
        assert!(
            s.wait_marker('B', 5000 + i, deadline),
            "session {i} via {} did not echo: {}",
            via.name(),
            s.output()
        );
    }
    let burst_secs = t_burst.elapsed().as_secs_f64();
    let burst_end = usage(server_pid);

    close_sessions(all);
    std::thread::sleep(Duration::from_secs(3));
    let closed = usage(server_pid);
    Many {
        sessions: n,
        cold,
        before,
        after,
        closed,
        open_secs,
        idle_secs,
        idle_ticks: idle_end.cpu_ticks.saturating_sub(after.cpu_ticks),
        burst_secs,
        burst_ticks: burst_end.cpu_ticks.saturating_sub(idle_end.cpu_ticks),
    }
}

// ---------------------------------------------------------------- main

fn ratio(s: f64, j: f64) -> String {
    if j > 0.0 {
        format!("{:.2}", s / j)
    } else {
        "–".into()
    }
}

fn yes(b: bool) -> &'static str {
    if b { "**met**" } else { "**not met**" }
}

fn main() {
    let down_mib = env_num("SEKISHO_BENCH_DOWNLOAD_MIB", 1024);
    let up_mib = env_num("SEKISHO_BENCH_UPLOAD_MIB", 512);
    let repeat = env_num("SEKISHO_BENCH_REPEAT", 3).max(1);
    let samples = env_num("SEKISHO_BENCH_ECHO_SAMPLES", 1000).max(10);
    let setup_runs = env_num("SEKISHO_BENCH_SETUP_RUNS", 10).max(1);
    let n_sessions = env_num("SEKISHO_BENCH_SESSIONS", 200).max(1);
    let idle = Duration::from_secs(env_num("SEKISHO_BENCH_IDLE_SECS", 10) as u64);
    let tps = ticks_per_sec();

    let load_start = loadavg();
    let b = setup();
    let serve = b.d.serve_pid;
    eprintln!(
        "sekisho {} (pid {serve}, dir {}) on 127.0.0.1:{}, target sshd on :{}, jump sshd pid {}",
        b.d.bin.display(),
        b.d.dir.display(),
        b.d.ssh_port,
        b.d.target.port,
        b.jump_sshd_pid
    );
    b.open_window();
    for via in ALL {
        // Warm up each path (and prove it works).
        setup_times(&b, via, 1);
    }

    // Many sessions first, on a bastion that has served only the warm-up,
    // so "before" is not inflated by buffers left from bulk transfers.
    eprintln!("{n_sessions} interactive sessions via sekisho ...");
    let many_s = many_sessions(&b, Via::Sekisho, serve, n_sessions, idle);
    eprintln!("{n_sessions} interactive sessions via ssh -J ...");
    let many_j = many_sessions(&b, Via::Jump, b.jump_sshd_pid, n_sessions, idle);

    let mut down: BTreeMap<Via, Vec<f64>> = BTreeMap::new();
    let mut up: BTreeMap<Via, Vec<f64>> = BTreeMap::new();
    let mut threads_down = BTreeMap::new();
    let mut threads_up = BTreeMap::new();
    let mut relay_cpu_down: BTreeMap<Via, u64> = BTreeMap::new();
    let mut relay_cpu_up: BTreeMap<Via, u64> = BTreeMap::new();
    let mut wall_down = 0.0;
    let mut wall_up = 0.0;
    b.open_window();
    for r in 0..repeat {
        // Interleave the paths so drift on the shared machine hits all alike.
        for via in ALL {
            eprintln!("download {down_mib} MiB via {} (run {})", via.name(), r + 1);
            let root = bastion_of(&b, via);
            let sampler = root.map(ThreadSampler::start);
            let w = Instant::now();
            down.entry(via)
                .or_default()
                .push(download(&b, via, down_mib));
            let used = sampler.map(ThreadSampler::stop).unwrap_or_default();
            *relay_cpu_down.entry(via).or_insert(0) += used.values().sum::<u64>();
            if via == Via::Sekisho {
                wall_down += w.elapsed().as_secs_f64();
                add(&mut threads_down, &used);
            }
            eprintln!("upload {up_mib} MiB via {} (run {})", via.name(), r + 1);
            let sampler = root.map(ThreadSampler::start);
            let w = Instant::now();
            up.entry(via).or_default().push(upload(&b, via, up_mib));
            let used = sampler.map(ThreadSampler::stop).unwrap_or_default();
            *relay_cpu_up.entry(via).or_insert(0) += used.values().sum::<u64>();
            if via == Via::Sekisho {
                wall_up += w.elapsed().as_secs_f64();
                add(&mut threads_up, &used);
            }
        }
    }

    b.open_window();
    eprintln!("echo latency, all paths in turn ({samples} samples each)");
    let echo = echo_latency_all(&b, samples);
    let mut setup_ms = BTreeMap::new();
    let mut ciphers = BTreeMap::new();
    b.open_window();
    for via in ALL {
        eprintln!("set-up time via {} ({setup_runs} runs)", via.name());
        setup_ms.insert(via, setup_times(&b, via, setup_runs));
        ciphers.insert(via, negotiated(&b, via));
    }

    // ------------------------------------------------------------ report
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    println!("## sekisho SSH benchmark ({date})\n");
    println!(
        "Load average (1 min) of the machine at start / end: {load_start} / {}.\n",
        loadavg()
    );
    println!(
        "Loopback, {} CPUs. OpenSSH client key exchange / cipher: direct {}; ssh -J {}; sekisho {}.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        ciphers[&Via::Direct],
        ciphers[&Via::Jump],
        ciphers[&Via::Sekisho],
    );

    println!("### Bulk throughput (MiB/s, median of {repeat}; higher is better)\n");
    println!("| transfer | direct | ssh -J | sekisho | sekisho / ssh -J | runs (sekisho) |");
    println!("|---|---:|---:|---:|---:|---|");
    let med = |m: &BTreeMap<Via, Vec<f64>>, v: Via| median(m[&v].clone());
    for (name, m) in [
        (format!("download `head -c {down_mib}M /dev/zero`"), &down),
        (format!("upload {up_mib} MiB into `cat >/dev/null`"), &up),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {} | {} |",
            med(m, Via::Direct),
            med(m, Via::Jump),
            med(m, Via::Sekisho),
            ratio(med(m, Via::Sekisho), med(m, Via::Jump)),
            m[&Via::Sekisho]
                .iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    println!(
        "\n### Keystroke echo latency (µs, {samples} one-byte round trips per path, pty + `cat` in raw mode, paths sampled in turn)\n"
    );
    println!(
        "| percentile | direct | ssh -J | sekisho | sekisho / ssh -J | added by sekisho (− direct) | added by ssh -J (− direct) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for p in [50.0, 99.0] {
        let d = percentile(&echo[&Via::Direct], p);
        let j = percentile(&echo[&Via::Jump], p);
        let s = percentile(&echo[&Via::Sekisho], p);
        println!(
            "| p{p:.0} | {d:.0} | {j:.0} | {s:.0} | {} | {:.0} | {:.0} |",
            ratio(s, j),
            s - d,
            j - d
        );
    }

    println!("\n### Connection set-up, `ssh host true` (ms, {setup_runs} runs)\n");
    println!("| | direct | ssh -J | sekisho | sekisho / ssh -J |");
    println!("|---|---:|---:|---:|---:|");
    for (label, p) in [("median", 50.0), ("max", 100.0)] {
        let d = percentile(&setup_ms[&Via::Direct], p);
        let j = percentile(&setup_ms[&Via::Jump], p);
        let s = percentile(&setup_ms[&Via::Sekisho], p);
        println!("| {label} | {d:.0} | {j:.0} | {s:.0} | {} |", ratio(s, j));
    }
    println!(
        "\nAuth: direct and ssh -J sign in with an ed25519 key (twice for -J); sekisho \
         with a password (argon2id) inside the sign-in window (no code typed), then \
         connects to the target with its injected ed25519 key and opens a recording."
    );

    println!(
        "\n### {n_sessions} concurrent interactive sessions (`ssh -tt`, login shell), idle {:.0} s then every session echoes a line\n",
        many_s.idle_secs
    );
    println!("| | ssh -J: jump sshd (all its processes) | sekisho serve | sekisho / ssh -J |");
    println!("|---|---:|---:|---:|");
    let mib = |k: u64| k as f64 / 1024.0;
    let row = |label: &str, j: f64, s: f64, unit: &str, prec: usize| {
        println!(
            "| {label} | {j:.prec$} {unit} | {s:.prec$} {unit} | {} |",
            ratio(s, j)
        );
    };
    row(
        "RSS cold (after one sign-in)",
        mib(many_j.cold.rss_kib),
        mib(many_s.cold.rss_kib),
        "MiB",
        1,
    );
    row(
        &format!("RSS before (after a warm-up batch of {OPEN_BATCH} sessions, closed)"),
        mib(many_j.before.rss_kib),
        mib(many_s.before.rss_kib),
        "MiB",
        1,
    );
    row(
        &format!("RSS with {n_sessions} sessions"),
        mib(many_j.after.rss_kib),
        mib(many_s.after.rss_kib),
        "MiB",
        1,
    );
    let per = |m: &Many, f: fn(&Usage) -> u64| {
        (f(&m.after) as f64 - f(&m.before) as f64) / m.sessions as f64
    };
    row(
        "**RSS per session** (after − before) / n",
        per(&many_j, |u| u.rss_kib),
        per(&many_s, |u| u.rss_kib),
        "KiB",
        0,
    );
    row(
        "RSS per session counted from cold (after − cold) / n",
        (many_j.after.rss_kib as f64 - many_j.cold.rss_kib as f64) / many_j.sessions as f64,
        (many_s.after.rss_kib as f64 - many_s.cold.rss_kib as f64) / many_s.sessions as f64,
        "KiB",
        0,
    );
    row(
        "PSS per session (shared pages split)",
        per(&many_j, |u| u.pss_kib),
        per(&many_s, |u| u.pss_kib),
        "KiB",
        0,
    );
    row(
        "RSS after all closed",
        mib(many_j.closed.rss_kib),
        mib(many_s.closed.rss_kib),
        "MiB",
        1,
    );
    println!(
        "| processes / threads with sessions | {} / {} | {} / {} | |",
        many_j.after.processes, many_j.after.threads, many_s.after.processes, many_s.after.threads
    );
    let cpu_pct = |t: u64, secs: f64| t as f64 / tps / secs * 100.0;
    row(
        &format!("CPU idle ({:.0} s), % of one core", many_s.idle_secs),
        cpu_pct(many_j.idle_ticks, many_j.idle_secs),
        cpu_pct(many_s.idle_ticks, many_s.idle_secs),
        "%",
        2,
    );
    row(
        "CPU during the echo burst, ms",
        many_j.burst_ticks as f64 / tps * 1e3,
        many_s.burst_ticks as f64 / tps * 1e3,
        "ms",
        0,
    );
    row(
        "echo burst wall time (all sessions answered)",
        many_j.burst_secs * 1e3,
        many_s.burst_secs * 1e3,
        "ms",
        0,
    );
    row(
        "time to open all sessions",
        many_j.open_secs,
        many_s.open_secs,
        "s",
        1,
    );

    println!("\n### Where sekisho's CPU went during the bulk transfers (all runs)\n");
    println!("| thread | download: CPU s (% of wall) | upload: CPU s (% of wall) |");
    println!("|---|---:|---:|");
    let names: std::collections::BTreeSet<&String> =
        threads_down.keys().chain(threads_up.keys()).collect();
    for n in names {
        let d = *threads_down.get(n).unwrap_or(&0) as f64 / tps;
        let u = *threads_up.get(n).unwrap_or(&0) as f64 / tps;
        if d + u < 0.05 {
            continue;
        }
        println!(
            "| {n} | {d:.1} ({:.0} %) | {u:.1} ({:.0} %) |",
            d / wall_down * 100.0,
            u / wall_up * 100.0
        );
    }

    let gib_down = (repeat * down_mib) as f64 / 1024.0;
    let gib_up = (repeat * up_mib) as f64 / 1024.0;
    let per_gib = |m: &BTreeMap<Via, u64>, v: Via, gib: f64| {
        m.get(&v).copied().unwrap_or(0) as f64 / tps / gib
    };
    println!("\n### CPU of the relaying hop per GiB moved (CPU s/GiB; lower is better)\n");
    println!("| transfer | ssh -J: jump sshd | sekisho serve | sekisho / ssh -J |");
    println!("|---|---:|---:|---:|");
    for (name, m, gib) in [
        ("download", &relay_cpu_down, gib_down),
        ("upload", &relay_cpu_up, gib_up),
    ] {
        let j = per_gib(m, Via::Jump, gib);
        let s = per_gib(m, Via::Sekisho, gib);
        println!("| {name} | {j:.2} | {s:.2} | {} |", ratio(s, j));
    }

    // ------------------------------------------------------------ targets
    let tput_ok = med(&down, Via::Sekisho) >= med(&down, Via::Jump)
        && med(&up, Via::Sekisho) >= med(&up, Via::Jump);
    let added_p99 = percentile(&echo[&Via::Sekisho], 99.0) - percentile(&echo[&Via::Direct], 99.0);
    let per_session_mib = per(&many_s, |u| u.rss_kib) / 1024.0;
    println!("\n### Targets\n");
    println!("| target | measured | |");
    println!("|---|---|---|");
    println!(
        "| throughput ≥ ssh -J, recording on | download {:.2}×, upload {:.2}× | {} |",
        med(&down, Via::Sekisho) / med(&down, Via::Jump),
        med(&up, Via::Sekisho) / med(&up, Via::Jump),
        yes(tput_ok)
    );
    println!(
        "| added echo latency p99 < 1 ms | {:.0} µs | {} |",
        added_p99,
        yes(added_p99 < 1000.0)
    );
    println!(
        "| < 2 MiB bastion memory per idle session | {:.2} MiB | {} |",
        per_session_mib,
        yes(per_session_mib < 2.0)
    );
}

/// The process that relays along `via`: sekisho serve, the jump host's sshd
/// (with its per-connection children), or none for a direct connection.
fn bastion_of(b: &Bench, via: Via) -> Option<u32> {
    match via {
        Via::Direct => None,
        Via::Jump => Some(b.jump_sshd_pid),
        Via::Sekisho => Some(b.d.serve_pid),
    }
}

fn add(acc: &mut BTreeMap<String, u64>, used: &BTreeMap<String, u64>) {
    for (k, v) in used {
        *acc.entry(k.clone()).or_insert(0) += v;
    }
}
