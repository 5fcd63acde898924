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
//! [1024], `SEKISHO_BENCH_UPLOAD_MIB` [512], `SEKISHO_BENCH_TEXT_MIB` [256:
//! a log-like text file `cat` without a pty], `SEKISHO_BENCH_REPEAT` [3],
//! `SEKISHO_BENCH_ECHO_SAMPLES` [1000], `SEKISHO_BENCH_SETUP_RUNS` [10],
//! `SEKISHO_BENCH_SESSIONS` [200], `SEKISHO_BENCH_IDLE_SECS` [10],
//! `SEKISHO_BENCH_JUMP_SESSIONS` [= SESSIONS; 0 skips the jump host's many
//! sessions], `SEKISHO_BENCH_DIRECT_SESSIONS` [0: the same many sessions
//! straight to the target, for what the clients and shells alone take],
//! `SEKISHO_BENCH_PARTS` [sessions,bulk,echo,setup], `SEKISHO_BENCH_KEEP=DIR` [keeps
//! the memory maps of the many-sessions part], `SEKISHO_BENCH_PERF=DIR` [a
//! system-wide `perf record -a -g` of each echo burst, `DIR/burst-<path>.data`],
//! `SEKISHO_BENCH_SESSION_SHELL` [the many sessions' remote command instead
//! of the login shell, e.g. `bash --norc --noprofile -i`],
//! `SEKISHO_BENCH_CIPHERS` [unset: OpenSSH's own order; e.g.
//! `aes256-gcm@openssh.com`: the ciphers every path's client asks for, on
//! every leg].
//!
//! `SEKISHO_BENCH_BIN=/path/to/sekisho` measures that binary instead of
//! this checkout's release build.
//!
//! `SEKISHO_BENCH_BASELINE=/path/to/an/older/sekisho` adds a fourth path,
//! **baseline**: a second deployment (own target sshd) running that binary,
//! measured in the same run as the current one, for before/after tables
//! that machine load hits alike.

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
    /// `SEKISHO_BENCH_BASELINE`: an older sekisho, for before/after.
    Baseline,
    Sekisho,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Jump => "ssh -J",
            Via::Baseline => "baseline",
            Via::Sekisho => "sekisho",
        }
    }

    fn is_sekisho(self) -> bool {
        matches!(self, Via::Baseline | Via::Sekisho)
    }
}

struct Bench {
    d: Deployment,
    /// The baseline sekisho's deployment, if `SEKISHO_BENCH_BASELINE` is set.
    baseline: Option<Deployment>,
    /// Client config with `Host direct` and `Host viajump` (ProxyJump).
    client_config: PathBuf,
    /// The jump host's sshd, for its memory and CPU.
    jump_sshd_pid: u32,
    _jump: sshd::Sshd,
}

impl Bench {
    /// The paths this run measures.
    fn paths(&self) -> Vec<Via> {
        let mut v = vec![Via::Direct, Via::Jump];
        if self.baseline.is_some() {
            v.push(Via::Baseline);
        }
        v.push(Via::Sekisho);
        v
    }

    /// The sekisho deployment of `via` (Sekisho or Baseline).
    fn deployment(&self, via: Via) -> &Deployment {
        match (via, &self.baseline) {
            (Via::Baseline, Some(d)) => d,
            _ => &self.d,
        }
    }

    /// `setsid -w ssh [opts] HOST [remote]` along `via`; stdin is null.
    fn ssh(&self, via: Via, opts: &[&str], remote: &[&str]) -> Command {
        match via {
            Via::Sekisho | Via::Baseline => {
                let d = self.deployment(via);
                let ciphers = bench_ciphers().map(|c| format!("Ciphers={c}"));
                let mut opts = opts.to_vec();
                if let Some(c) = &ciphers {
                    opts.splice(0..0, ["-o", c.as_str()]);
                }
                d.ssh_with(
                    &opts,
                    &format!("{USER}@db01"),
                    SOURCE,
                    PASSWORD,
                    &d.code(USER),
                    remote,
                )
            }
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

    /// Makes sure the sign-in window for USER from SOURCE is open on every
    /// sekisho (the first connection types the code; a code is accepted once
    /// per 30 s step).
    fn open_window(&self) {
        self.open_window_of(Via::Sekisho);
        if self.baseline.is_some() {
            self.open_window_of(Via::Baseline);
        }
    }

    fn open_window_of(&self, via: Via) {
        for attempt in 0..3 {
            let out = self
                .ssh(via, &[], &["true"])
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
            "cannot sign in to {}: {}",
            via.name(),
            deployment::read(&self.deployment(via).dir.join("serve.log"))
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
    // SEKISHO_BENCH_BIN: the sekisho to measure, instead of this checkout's
    // release build (e.g. a release binary built elsewhere, with the bench
    // harness itself built quicker, `cargo build --bench ssh`).
    let bin = match std::env::var_os("SEKISHO_BENCH_BIN") {
        Some(b) => PathBuf::from(b),
        None => {
            let bin = PathBuf::from(env!("CARGO_BIN_EXE_sekisho"));
            let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/sekisho");
            assert!(
                bin.components().any(|c| c.as_os_str() == "release"),
                "the bench must run the release binary, not {}: use `cargo bench --bench ssh`",
                bin.display()
            );
            if bin.exists() { bin } else { release }
        }
    };
    let d = Deployment::start(&bin, "sekisho-bench");
    let baseline = std::env::var_os("SEKISHO_BENCH_BASELINE")
        .map(|b| Deployment::start(Path::new(&b), "sekisho-bench-baseline"));
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
             LogLevel ERROR\n  BatchMode yes\n  IdentitiesOnly yes\n  ConnectTimeout 10\n{ciphers}",
            ciphers = bench_ciphers()
                .map(|c| format!("  Ciphers {c}\n"))
                .unwrap_or_default(),
            tport = d.target.port,
            tkey = d.dir.join("target_client_key").display(),
            jport = jump.port,
            jkey = jump_dir.join("target_client_key").display(),
        ),
    )
    .expect("client config");
    Bench {
        d,
        baseline,
        client_config,
        jump_sshd_pid,
        _jump: jump,
    }
}

/// `SEKISHO_BENCH_CIPHERS`: the ciphers the OpenSSH client asks for (its
/// `Ciphers`), on every path and leg; unset, its default order.
fn bench_ciphers() -> Option<String> {
    std::env::var("SEKISHO_BENCH_CIPHERS")
        .ok()
        .filter(|c| !c.is_empty())
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
/// `data_starts` is called at the first byte.
fn download(b: &Bench, via: Via, mib: usize, data_starts: &mut dyn FnMut()) -> f64 {
    receive(
        b,
        via,
        &format!("head -c {mib}M /dev/zero"),
        mib << 20,
        data_starts,
    )
}

/// `ssh host 'cat FILE'` of the text file [`write_text_file`] made: text
/// output without a pty (a large log), which the recorder compresses far
/// less easily than zeros.
fn text_output(b: &Bench, via: Via, file: &Path, data_starts: &mut dyn FnMut()) -> f64 {
    let bytes = std::fs::metadata(file).expect("text file").len() as usize;
    receive(
        b,
        via,
        &format!("cat {}", file.display()),
        bytes,
        data_starts,
    )
}

/// Writes about `mib` MiB of log-like text lines to `path` (on this
/// machine, which is also the target's).
fn write_text_file(path: &Path, mib: usize) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).expect("text file"));
    let mut n: u64 = 0;
    let mut written = 0usize;
    while written < mib << 20 {
        let line = format!(
            "2026-12-05T10:{:02}:{:02}.{:06} db01 app[{}]: request {} for /api/v1/items/{} \
             served in {} ms status={} bytes={}\n",
            (n / 60_000) % 60,
            (n / 1000) % 60,
            (n * 7919) % 1_000_000,
            1000 + n % 97,
            n,
            (n * 31) % 100_003,
            n % 251,
            if n.is_multiple_of(17) { 404 } else { 200 },
            (n * 131) % 65_536,
        );
        w.write_all(line.as_bytes()).expect("write text file");
        written += line.len();
        n += 1;
    }
    w.flush().expect("flush text file");
}

/// `ssh host REMOTE`, which prints `bytes` bytes: MiB/s from the first
/// byte to EOF. `data_starts` is called at the first byte.
fn receive(b: &Bench, via: Via, remote: &str, bytes: usize, data_starts: &mut dyn FnMut()) -> f64 {
    let mut child = b
        .ssh(via, &[], &[remote])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    let _w = Watchdog::new(
        child.id(),
        Duration::from_secs(300),
        format!("{remote} via {}", via.name()),
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
        if start.is_none() {
            data_starts();
            start = Some(Instant::now());
        }
        total += n;
    }
    let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let o = child.wait_with_output().expect("wait ssh");
    assert!(
        o.status.success() && total == bytes,
        "{remote} via {} got {total} of {bytes} bytes, {}: {}",
        via.name(),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    (bytes as f64 / f64::from(1 << 20)) / secs
}

/// `ssh host 'cat >/dev/null'` fed N MiB: MiB/s from the first byte
/// written (once the remote command has started) to the remote EOF.
/// `data_starts` is called before the first byte is written.
fn upload(b: &Bench, via: Via, mib: usize, data_starts: &mut dyn FnMut()) -> f64 {
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
    data_starts();
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
    let paths = b.paths();
    let mut sessions: Vec<EchoSession> = paths.iter().map(|v| EchoSession::open(b, *v)).collect();
    let mut res: BTreeMap<Via, Vec<f64>> = BTreeMap::new();
    for i in 0..samples {
        let c = b'a' + (i % 26) as u8;
        for k in 0..sessions.len() {
            let s = &mut sessions[(i + k) % paths.len()];
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
    out: Arc<(Mutex<Output>, Condvar)>,
}

/// What a session printed, and when each read ended.
#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    /// (length of `bytes` after a read, when that read returned)
    reads: Vec<(usize, Instant)>,
}

impl Interactive {
    fn spawn(b: &Bench, via: Via) -> Interactive {
        // `SEKISHO_BENCH_SESSION_SHELL`: the command each session runs
        // instead of the account's login shell (e.g. `bash --norc -i`, to
        // leave out what the target account's rc files run at every prompt).
        let shell = std::env::var("SEKISHO_BENCH_SESSION_SHELL").unwrap_or_default();
        let remote: Vec<&str> = shell.split_whitespace().collect();
        let mut child = b
            .ssh(via, &["-tt"], &remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ssh");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        let out = Arc::new((Mutex::new(Output::default()), Condvar::new()));
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
                        g.bytes.extend_from_slice(b"\0EOF");
                        cv.notify_all();
                        return;
                    }
                    g.bytes.extend_from_slice(&buf[..n]);
                    let end = g.bytes.len();
                    g.reads.push((end, Instant::now()));
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
            let text = String::from_utf8_lossy(&g.bytes);
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
        String::from_utf8_lossy(&self.out.0.lock().expect("lock").bytes).into_owned()
    }

    /// When the read that brought the (first) marker `tag N+1` ended.
    fn marker_seen_at(&self, tag: char, n: usize) -> Option<Instant> {
        let want = format!("{tag}{}", n + 1);
        let g = self.out.0.lock().expect("lock");
        let end = g
            .bytes
            .windows(want.len())
            .position(|w| w == want.as_bytes())?
            + want.len();
        g.reads.iter().find(|(len, _)| *len >= end).map(|(_, t)| *t)
    }
}

struct Many {
    sessions: usize,
    cold: Usage,
    before: Usage,
    after: Usage,
    closed: Usage,
    /// Again 12 s after the close: what stays once idle runtime threads
    /// (kept 10 s by tokio) have gone.
    settled: Usage,
    open_secs: f64,
    idle_secs: f64,
    idle_ticks: u64,
    burst_secs: f64,
    burst_ticks: u64,
    /// During the burst: the target sshd with its sessions and shells, the
    /// benchmark's `ssh` clients, and every process on the machine.
    burst_target_ticks: u64,
    burst_client_ticks: u64,
    burst_machine_ticks: u64,
    /// Context switches of the bastion's threads during the burst.
    burst_switches: u64,
    /// When each session's answer arrived, ms after the burst started, sorted.
    burst_answers_ms: Vec<f64>,
    /// (ns on a CPU, ns runnable waiting for a CPU) of the bastion's threads
    /// during the burst: all but the recording writers, and the writers.
    burst_sched_relay: (u64, u64),
    burst_sched_writers: (u64, u64),
}

/// `SEKISHO_BENCH_PERF=DIR`: a system-wide `perf record -a -g` of the echo
/// burst alone, `DIR/burst-<path>.data` (then e.g. `perf report -i FILE
/// --sort comm,dso --pid PID`). perf starts with its events disabled and
/// is switched on and off through its control FIFOs, each answered with an
/// ack, so the profile holds the burst and nothing before or after it.
struct BurstProfile {
    perf: Child,
    ctl: std::fs::File,
    ack: std::fs::File,
}

impl BurstProfile {
    fn start(via: Via) -> Option<BurstProfile> {
        let dir = PathBuf::from(std::env::var_os("SEKISHO_BENCH_PERF")?);
        std::fs::create_dir_all(&dir).expect("SEKISHO_BENCH_PERF dir");
        let name = via.name().replace(' ', "");
        let (ctl, ack) = (
            dir.join(format!("burst-{name}.ctl")),
            dir.join(format!("burst-{name}.ack")),
        );
        for fifo in [&ctl, &ack] {
            let _ = std::fs::remove_file(fifo);
            let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        }
        let data = dir.join(format!("burst-{name}.data"));
        let perf = Command::new("perf")
            .args(["record", "-a", "-g", "-F", "1999", "-D", "-1", "--control"])
            .arg(format!("fifo:{},{}", ctl.display(), ack.display()))
            .arg("-o")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("perf record (SEKISHO_BENCH_PERF)");
        // Opening the FIFOs waits for perf to open its ends.
        let ctl = std::fs::OpenOptions::new()
            .write(true)
            .open(&ctl)
            .expect("perf ctl");
        let ack = std::fs::File::open(&ack).expect("perf ack");
        eprintln!(
            "profiling the burst via {} into {}",
            via.name(),
            data.display()
        );
        let mut p = BurstProfile { perf, ctl, ack };
        p.command("enable");
        Some(p)
    }

    fn command(&mut self, what: &str) {
        writeln!(self.ctl, "{what}").expect("perf ctl");
        let mut ack = [0u8; 5];
        self.ack.read_exact(&mut ack).expect("perf ack");
    }

    fn stop(mut self) {
        self.command("disable");
        kill(self.perf.id(), libc::SIGINT);
        let _ = self.perf.wait();
    }
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

/// Where the memory maps go: `SEKISHO_BENCH_KEEP=DIR` keeps them after the
/// run; otherwise the deployment directory (removed at the end).
fn smaps_dir(b: &Bench) -> PathBuf {
    match std::env::var_os("SEKISHO_BENCH_KEEP") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let _ = std::fs::create_dir_all(&dir);
            dir
        }
        None => b.d.dir.clone(),
    }
}

/// Measures the process tree of `server_pid` (the bastion) with `n`
/// interactive sessions along `via`: memory before and after opening them,
/// CPU while they idle and during a burst where every session echoes a
/// line. `before` is taken after a warm-up batch of OPEN_BATCH concurrent
/// sessions has been opened and closed (so the sign-in high-water mark,
/// e.g. concurrent argon2 buffers, is in the baseline); `cold` is before it.
fn many_sessions(
    b: &Bench,
    via: Via,
    server_pid: u32,
    target_pid: u32,
    n: usize,
    idle: Duration,
) -> Many {
    if via.is_sekisho() {
        b.open_window_of(via);
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
    let smaps = smaps_dir(b).join(format!(
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

    let clients: Vec<u32> = all.iter().map(|s| s.child.id()).collect();
    let (target0, clients0, machine0) = (
        trees_ticks(&[target_pid]),
        trees_ticks(&clients),
        machine_busy_ticks(),
    );
    let profile = BurstProfile::start(via);
    let switches0 = context_switches(server_pid);
    let sched0 = sched_times(server_pid);
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
    let machine1 = machine_busy_ticks();
    if let Some(p) = profile {
        p.stop();
    }
    let mut burst_answers_ms: Vec<f64> = all
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.marker_seen_at('B', 5000 + i))
        .map(|t| t.saturating_duration_since(t_burst).as_secs_f64() * 1e3)
        .collect();
    burst_answers_ms.sort_by(f64::total_cmp);
    let burst_switches = switches_between(&switches0, &context_switches(server_pid));
    let sched1 = sched_times(server_pid);
    // Recording writer threads are named `rec-<session id>`.
    let writer = |comm: &str| comm.starts_with("rec-");
    let burst_sched_relay = sched_between(&sched0, &sched1, |c| !writer(c));
    let burst_sched_writers = sched_between(&sched0, &sched1, writer);
    let burst_end = usage(server_pid);
    let (target1, clients1) = (trees_ticks(&[target_pid]), trees_ticks(&clients));

    close_sessions(all);
    std::thread::sleep(Duration::from_secs(3));
    let closed = usage(server_pid);
    let smaps = smaps_dir(b).join(format!(
        "smaps-{}-{n}-sessions-closed.txt",
        via.name().replace(' ', "")
    ));
    if std::fs::copy(format!("/proc/{server_pid}/smaps"), &smaps).is_ok() {
        eprintln!("memory map after {n} sessions closed: {}", smaps.display());
    }
    std::thread::sleep(Duration::from_secs(9));
    let settled = usage(server_pid);
    Many {
        sessions: n,
        cold,
        before,
        after,
        closed,
        settled,
        open_secs,
        idle_secs,
        idle_ticks: idle_end.cpu_ticks.saturating_sub(after.cpu_ticks),
        burst_secs,
        burst_ticks: burst_end.cpu_ticks.saturating_sub(idle_end.cpu_ticks),
        burst_target_ticks: target1.saturating_sub(target0),
        burst_client_ticks: clients1.saturating_sub(clients0),
        burst_machine_ticks: machine1.saturating_sub(machine0),
        burst_switches,
        burst_answers_ms,
        burst_sched_relay,
        burst_sched_writers,
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

/// What the bulk transfers measured along one path.
#[derive(Default)]
struct Bulk {
    /// MiB/s per run.
    mib_s: Vec<f64>,
    /// CPU ticks of the relaying process tree over all runs, from the
    /// connection to the end (sign-in and set-up included).
    cpu_ticks: u64,
    /// The same from the first data byte on: what moving the data costs,
    /// without the sign-in (sekisho hashes a password with argon2id where
    /// the jump sshd checks a key) and the set-up of both legs.
    moving_ticks: u64,
    /// Peak RSS of the relaying process while the data moved, per run
    /// (sekisho only), KiB.
    peak_kib: Vec<u64>,
    /// Peak RSS from the connection to the first data byte (sign-in with
    /// argon2id, the target connection, the recording), per run, KiB.
    signin_peak_kib: Vec<u64>,
    /// CPU ticks by thread name over all runs (sekisho only).
    threads: BTreeMap<String, u64>,
    /// Wall time of all runs, s.
    wall: f64,
}

/// Which CPU ticks of a path's bulk transfers a table counts.
type CpuCount = fn(&Bulk) -> u64;

/// The two ways the bulk tables count the relaying hop's CPU.
const CPU_MEASURES: [(&str, CpuCount); 2] = [
    (
        "from the connection to the end (sign-in and set-up of both legs included)",
        |b| b.cpu_ticks,
    ),
    (
        "while the data moves (from the first byte: no sign-in, no set-up)",
        |b| b.moving_ticks,
    ),
];

/// One download or upload along `via`, measured into `into`. `run` calls
/// its argument when the data starts to move.
fn measure_transfer(
    b: &Bench,
    via: Via,
    into: &mut Bulk,
    run: impl FnOnce(&mut dyn FnMut()) -> f64,
) {
    let root = bastion_of(b, via);
    let peak = via
        .is_sekisho()
        .then(|| root.filter(|p| reset_peak_rss(*p)))
        .flatten();
    let sampler = root.map(ThreadSampler::start);
    let w = Instant::now();
    let mut signin_peak = None;
    let mut mark = None;
    let mut data_starts = || {
        mark = root.map(thread_ticks);
        if let Some(pid) = peak {
            signin_peak = Some(peak_rss_kib(pid));
            reset_peak_rss(pid);
        }
    };
    into.mib_s.push(run(&mut data_starts));
    into.wall += w.elapsed().as_secs_f64();
    let (used, moving) = match (sampler, mark) {
        (Some(sampler), Some(mark)) => sampler.stop_since(&mark),
        (Some(sampler), None) => (sampler.stop(), 0),
        (None, _) => Default::default(),
    };
    into.cpu_ticks += used.values().sum::<u64>();
    into.moving_ticks += moving;
    if let Some(pid) = peak {
        into.peak_kib.push(peak_rss_kib(pid));
        into.signin_peak_kib.extend(signin_peak);
    }
    if via.is_sekisho() {
        add(&mut into.threads, &used);
    }
}

fn main() {
    let down_mib = env_num("SEKISHO_BENCH_DOWNLOAD_MIB", 1024);
    let up_mib = env_num("SEKISHO_BENCH_UPLOAD_MIB", 512);
    let text_mib = env_num("SEKISHO_BENCH_TEXT_MIB", 256);
    let repeat = env_num("SEKISHO_BENCH_REPEAT", 3).max(1);
    let samples = env_num("SEKISHO_BENCH_ECHO_SAMPLES", 1000).max(10);
    let setup_runs = env_num("SEKISHO_BENCH_SETUP_RUNS", 10).max(1);
    let n_sessions = env_num("SEKISHO_BENCH_SESSIONS", 200).max(1);
    let jump_sessions = env_num("SEKISHO_BENCH_JUMP_SESSIONS", n_sessions);
    let direct_sessions = env_num("SEKISHO_BENCH_DIRECT_SESSIONS", 0);
    let idle = Duration::from_secs(env_num("SEKISHO_BENCH_IDLE_SECS", 10) as u64);
    let parts =
        std::env::var("SEKISHO_BENCH_PARTS").unwrap_or_else(|_| "sessions,bulk,echo,setup".into());
    let part = |p: &str| parts.split(',').any(|x| x.trim() == p);
    let tps = ticks_per_sec();

    let load_start = loadavg();
    let b = setup();
    let paths = b.paths();
    let sekishos: Vec<Via> = paths.iter().copied().filter(|v| v.is_sekisho()).collect();
    for via in &sekishos {
        let d = b.deployment(*via);
        eprintln!(
            "{}: {} (pid {}, dir {}) on 127.0.0.1:{}, target sshd on :{}",
            via.name(),
            d.bin.display(),
            d.serve_pid,
            d.dir.display(),
            d.ssh_port,
            d.target.port,
        );
    }
    eprintln!("jump sshd pid {}", b.jump_sshd_pid);
    b.open_window();
    for via in &paths {
        // Warm up each path (and prove it works).
        setup_times(&b, *via, 1);
    }

    // Many sessions first, on a bastion that has served only the warm-up,
    // so "before" is not inflated by buffers left from bulk transfers.
    let mut many: BTreeMap<Via, Many> = BTreeMap::new();
    if part("sessions") {
        for via in &sekishos {
            eprintln!("{n_sessions} interactive sessions via {} ...", via.name());
            let pid = bastion_of(&b, *via).expect("a sekisho has a pid");
            let target = pid_listening_on(b.deployment(*via).target.port).expect("target sshd");
            many.insert(*via, many_sessions(&b, *via, pid, target, n_sessions, idle));
        }
        if direct_sessions > 0 {
            // The same clients and shells without any hop: what the
            // machine takes to answer the burst with no bastion at all.
            eprintln!("{direct_sessions} interactive sessions direct ...");
            let target = pid_listening_on(b.d.target.port).expect("target sshd");
            many.insert(
                Via::Direct,
                many_sessions(&b, Via::Direct, target, target, direct_sessions, idle),
            );
        }
        if jump_sessions > 0 {
            eprintln!("{jump_sessions} interactive sessions via ssh -J ...");
            many.insert(
                Via::Jump,
                many_sessions(
                    &b,
                    Via::Jump,
                    b.jump_sshd_pid,
                    pid_listening_on(b.d.target.port).expect("target sshd"),
                    jump_sessions,
                    idle,
                ),
            );
        }
    }

    let mut down: BTreeMap<Via, Bulk> = BTreeMap::new();
    let mut up: BTreeMap<Via, Bulk> = BTreeMap::new();
    let mut text: BTreeMap<Via, Bulk> = BTreeMap::new();
    let text_file = b.d.dir.join("text-output.txt");
    if part("bulk") {
        write_text_file(&text_file, text_mib);
        b.open_window();
        for r in 0..repeat {
            // Interleave the paths so drift on the shared machine hits all alike.
            for via in &paths {
                let via = *via;
                eprintln!("download {down_mib} MiB via {} (run {})", via.name(), r + 1);
                measure_transfer(&b, via, down.entry(via).or_default(), |f| {
                    download(&b, via, down_mib, f)
                });
                eprintln!("upload {up_mib} MiB via {} (run {})", via.name(), r + 1);
                measure_transfer(&b, via, up.entry(via).or_default(), |f| {
                    upload(&b, via, up_mib, f)
                });
                eprintln!("text output via {} (run {})", via.name(), r + 1);
                measure_transfer(&b, via, text.entry(via).or_default(), |f| {
                    text_output(&b, via, &text_file, f)
                });
            }
        }
    }

    let mut echo = BTreeMap::new();
    if part("echo") {
        b.open_window();
        eprintln!("echo latency, all paths in turn ({samples} samples each)");
        echo = echo_latency_all(&b, samples);
    }
    let mut setup_ms = BTreeMap::new();
    let mut ciphers = BTreeMap::new();
    b.open_window();
    for via in &paths {
        if part("setup") {
            eprintln!("set-up time via {} ({setup_runs} runs)", via.name());
            setup_ms.insert(*via, setup_times(&b, *via, setup_runs));
        }
        ciphers.insert(*via, negotiated(&b, *via));
    }

    // ------------------------------------------------------------ report
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    println!("## sekisho SSH benchmark ({date})\n");
    println!(
        "Load average (1 min) of the machine at start / end: {load_start} / {}.\n",
        loadavg()
    );
    println!(
        "Loopback, {} CPUs. OpenSSH client key exchange / cipher: {}.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        paths
            .iter()
            .map(|v| format!("{} {}", v.name(), ciphers[v]))
            .collect::<Vec<_>>()
            .join("; "),
    );
    for via in &sekishos {
        println!("{}: `{}`.\n", via.name(), b.deployment(*via).bin.display());
    }
    let has_base = b.baseline.is_some();
    let header = |first: &str, cols: &[Via], extra: &[&str]| {
        let names: Vec<&str> = cols.iter().map(|v| v.name()).collect();
        println!(
            "| {first} | {} | {} |",
            names.join(" | "),
            extra.join(" | ")
        );
        println!(
            "|---|{}{}",
            "---:|".repeat(cols.len()),
            extra.iter().map(|_| "---:|").collect::<String>()
        );
    };

    if part("bulk") {
        println!("### Bulk throughput (MiB/s, median of {repeat}; higher is better)\n");
        let mut extra = vec!["sekisho / ssh -J"];
        if has_base {
            extra.push("baseline / ssh -J");
        }
        extra.push("runs (sekisho)");
        if has_base {
            extra.push("runs (baseline)");
        }
        header("transfer", &paths, &extra);
        let med = |m: &BTreeMap<Via, Bulk>, v: Via| median(m[&v].mib_s.clone());
        let runs = |m: &BTreeMap<Via, Bulk>, v: Via| {
            m[&v]
                .mib_s
                .iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (name, m) in [
            (format!("download `head -c {down_mib}M /dev/zero`"), &down),
            (format!("upload {up_mib} MiB into `cat >/dev/null`"), &up),
            (
                format!("text output, `cat` of a {text_mib} MiB log file (no pty)"),
                &text,
            ),
        ] {
            let mut cells: Vec<String> =
                paths.iter().map(|v| format!("{:.0}", med(m, *v))).collect();
            cells.push(ratio(med(m, Via::Sekisho), med(m, Via::Jump)));
            if has_base {
                cells.push(ratio(med(m, Via::Baseline), med(m, Via::Jump)));
            }
            cells.push(runs(m, Via::Sekisho));
            if has_base {
                cells.push(runs(m, Via::Baseline));
            }
            println!("| {name} | {} |", cells.join(" | "));
        }

        println!(
            "\n### Peak RSS of the bastion process (MiB, VmHWM reset through /proc/PID/clear_refs; lower is better)\n"
        );
        header("phase", &sekishos, &["runs (sekisho)"]);
        let mib_list = |v: &[u64]| {
            v.iter()
                .map(|k| format!("{:.1}", *k as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (name, m) in [("download", &down), ("upload", &up), ("text output", &text)] {
            for (phase, f) in [
                (
                    "connection to first byte (sign-in, target, recording)",
                    (|b: &Bulk| b.signin_peak_kib.clone()) as fn(&Bulk) -> Vec<u64>,
                ),
                ("**while the data moves**", |b: &Bulk| b.peak_kib.clone()),
            ] {
                let max = |v: Via| f(&m[&v]).into_iter().max().unwrap_or(0) as f64 / 1024.0;
                let cells: Vec<String> =
                    sekishos.iter().map(|v| format!("{:.1}", max(*v))).collect();
                println!(
                    "| {name}: {phase} (max of {repeat}) | {} | {} |",
                    cells.join(" | "),
                    mib_list(&f(&m[&Via::Sekisho]))
                );
            }
        }

        println!("\n### Where sekisho's CPU went during the bulk transfers (all runs)\n");
        let mut cols = Vec::new();
        for v in &sekishos {
            cols.push(format!("{}: download CPU s (% of wall)", v.name()));
            cols.push(format!("{}: upload CPU s (% of wall)", v.name()));
            cols.push(format!("{}: text CPU s (% of wall)", v.name()));
        }
        println!("| thread | {} |", cols.join(" | "));
        println!("|---|{}", "---:|".repeat(cols.len()));
        let names: std::collections::BTreeSet<String> = sekishos
            .iter()
            .flat_map(|v| {
                down[v]
                    .threads
                    .keys()
                    .chain(up[v].threads.keys())
                    .chain(text[v].threads.keys())
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        for n in names {
            let mut cells = Vec::new();
            let mut total = 0.0;
            for v in &sekishos {
                for m in [&down, &up, &text] {
                    let t = *m[v].threads.get(&n).unwrap_or(&0) as f64 / tps;
                    total += t;
                    cells.push(format!("{t:.1} ({:.0} %)", t / m[v].wall * 100.0));
                }
            }
            if total >= 0.05 {
                println!("| {n} | {} |", cells.join(" | "));
            }
        }

        let gib_down = (repeat * down_mib) as f64 / 1024.0;
        let gib_up = (repeat * up_mib) as f64 / 1024.0;
        let text_bytes = std::fs::metadata(&text_file).map_or(0, |m| m.len());
        let gib_text = repeat as f64 * text_bytes as f64 / f64::from(1 << 30);
        let relays: Vec<Via> = paths
            .iter()
            .copied()
            .filter(|v| *v != Via::Direct)
            .collect();
        let mut extra = vec!["sekisho / ssh -J"];
        if has_base {
            extra.push("baseline / ssh -J");
            extra.push("sekisho / baseline");
        }
        for (when, ticks) in CPU_MEASURES {
            println!(
                "\n### CPU of the relaying hop per GiB moved, {when} (CPU s/GiB; lower is better)\n"
            );
            header("transfer", &relays, &extra);
            for (name, m, gib) in [
                ("download", &down, gib_down),
                ("upload", &up, gib_up),
                ("text output", &text, gib_text),
            ] {
                let per = |v: Via| ticks(&m[&v]) as f64 / tps / gib;
                let mut cells: Vec<String> =
                    relays.iter().map(|v| format!("{:.2}", per(*v))).collect();
                cells.push(ratio(per(Via::Sekisho), per(Via::Jump)));
                if has_base {
                    cells.push(ratio(per(Via::Baseline), per(Via::Jump)));
                    cells.push(ratio(per(Via::Sekisho), per(Via::Baseline)));
                }
                println!("| {name} | {} |", cells.join(" | "));
            }
        }
    }

    if part("echo") {
        println!(
            "\n### Keystroke echo latency (µs, {samples} one-byte round trips per path, pty + `cat` in raw mode, paths sampled in turn)\n"
        );
        let mut extra = vec!["sekisho / ssh -J", "added by sekisho (− direct)"];
        if has_base {
            extra.push("added by baseline (− direct)");
        }
        extra.push("added by ssh -J (− direct)");
        header("percentile", &paths, &extra);
        for p in [50.0, 99.0] {
            let at = |v: Via| percentile(&echo[&v], p);
            let d = at(Via::Direct);
            let mut cells: Vec<String> = paths.iter().map(|v| format!("{:.0}", at(*v))).collect();
            cells.push(ratio(at(Via::Sekisho), at(Via::Jump)));
            cells.push(format!("{:.0}", at(Via::Sekisho) - d));
            if has_base {
                cells.push(format!("{:.0}", at(Via::Baseline) - d));
            }
            cells.push(format!("{:.0}", at(Via::Jump) - d));
            println!("| p{p:.0} | {} |", cells.join(" | "));
        }
    }

    if part("setup") {
        println!("\n### Connection set-up, `ssh host true` (ms, {setup_runs} runs)\n");
        header("", &paths, &["sekisho / ssh -J"]);
        for (label, p) in [("median", 50.0), ("max", 100.0)] {
            let at = |v: Via| percentile(&setup_ms[&v], p);
            let cells: Vec<String> = paths.iter().map(|v| format!("{:.0}", at(*v))).collect();
            println!(
                "| {label} | {} | {} |",
                cells.join(" | "),
                ratio(at(Via::Sekisho), at(Via::Jump))
            );
        }
        println!(
            "\nAuth: direct and ssh -J sign in with an ed25519 key (twice for -J); sekisho \
             with a password (argon2id) inside the sign-in window (no code typed), then \
             connects to the target with its injected ed25519 key and opens a recording."
        );
    }

    if part("sessions") {
        let first = many.values().next().expect("sessions measured");
        let shell = std::env::var("SEKISHO_BENCH_SESSION_SHELL")
            .map(|c| format!("`{c}`"))
            .unwrap_or_else(|_| "login shell".into());
        println!(
            "\n### Many concurrent interactive sessions (`ssh -tt`, {shell}), idle {:.0} s then every session echoes a line\n",
            first.idle_secs
        );
        let cols: Vec<Via> = [Via::Direct, Via::Jump, Via::Baseline, Via::Sekisho]
            .into_iter()
            .filter(|v| many.contains_key(v))
            .collect();
        let colname = |v: Via| match v {
            Via::Direct => "direct: target sshd (all its processes)",
            Via::Jump => "ssh -J: jump sshd (all its processes)",
            Via::Baseline => "baseline serve",
            _ => "sekisho serve",
        };
        let mut extra = Vec::new();
        if many.contains_key(&Via::Direct) {
            extra.push("sekisho / direct");
        }
        if many.contains_key(&Via::Jump) {
            extra.push("sekisho / ssh -J");
        }
        if many.contains_key(&Via::Baseline) {
            extra.push("sekisho / baseline");
        }
        println!(
            "| | {} | {} |",
            cols.iter()
                .map(|v| colname(*v))
                .collect::<Vec<_>>()
                .join(" | "),
            extra.join(" | ")
        );
        println!(
            "|---|{}{}",
            "---:|".repeat(cols.len()),
            "---:|".repeat(extra.len())
        );
        let row = |label: &str, f: &dyn Fn(&Many) -> f64, unit: &str, prec: usize| {
            let mut cells: Vec<String> = cols
                .iter()
                .map(|v| format!("{:.prec$} {unit}", f(&many[v])))
                .collect();
            let s = f(&many[&Via::Sekisho]);
            for other in [Via::Direct, Via::Jump, Via::Baseline] {
                if let Some(m) = many.get(&other) {
                    cells.push(ratio(s, f(m)));
                }
            }
            println!("| {label} | {} |", cells.join(" | "));
        };
        let mib = |k: u64| k as f64 / 1024.0;
        row("sessions", &|m| m.sessions as f64, "", 0);
        row(
            "RSS cold (after one sign-in)",
            &|m| mib(m.cold.rss_kib),
            "MiB",
            1,
        );
        row(
            &format!("RSS before (after a warm-up batch of {OPEN_BATCH} sessions, closed)"),
            &|m| mib(m.before.rss_kib),
            "MiB",
            1,
        );
        row("RSS with the sessions", &|m| mib(m.after.rss_kib), "MiB", 1);
        let per = |m: &Many, f: fn(&Usage) -> u64| {
            (f(&m.after) as f64 - f(&m.before) as f64) / m.sessions as f64
        };
        row(
            "**RSS per session** (with − before) / n",
            &|m| per(m, |u| u.rss_kib),
            "KiB",
            0,
        );
        row(
            "RSS per session counted from cold (with − cold) / n",
            &|m| (m.after.rss_kib as f64 - m.cold.rss_kib as f64) / m.sessions as f64,
            "KiB",
            0,
        );
        row(
            "PSS per session (shared pages split)",
            &|m| per(m, |u| u.pss_kib),
            "KiB",
            0,
        );
        row(
            "RSS after all closed (3 s later)",
            &|m| mib(m.closed.rss_kib),
            "MiB",
            1,
        );
        row(
            "**RSS after all closed / before**",
            &|m| m.closed.rss_kib as f64 / m.before.rss_kib.max(1) as f64,
            "×",
            2,
        );
        row(
            "context switches of the bastion (target sshd: all its processes) during the burst",
            &|m| m.burst_switches as f64,
            "",
            0,
        );
        row(
            "RSS after all closed, 12 s later / before",
            &|m| m.settled.rss_kib as f64 / m.before.rss_kib.max(1) as f64,
            "×",
            2,
        );
        println!(
            "| threads before / 3 s after all closed / 12 s after | {} | |",
            cols.iter()
                .map(|v| {
                    let m = &many[v];
                    format!(
                        "{} / {} / {}",
                        m.before.threads, m.closed.threads, m.settled.threads
                    )
                })
                .collect::<Vec<_>>()
                .join(" | ")
        );
        println!(
            "| processes / threads with sessions | {} | |",
            cols.iter()
                .map(|v| format!("{} / {}", many[v].after.processes, many[v].after.threads))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        row(
            &format!("CPU idle ({:.0} s), % of one core", first.idle_secs),
            &|m| m.idle_ticks as f64 / tps / m.idle_secs * 100.0,
            "%",
            2,
        );
        row(
            "CPU during the echo burst, ms",
            &|m| m.burst_ticks as f64 / tps * 1e3,
            "ms",
            0,
        );
        row(
            "CPU during the burst: target sshd, its sessions and shells, ms",
            &|m| m.burst_target_ticks as f64 / tps * 1e3,
            "ms",
            0,
        );
        row(
            "CPU during the burst: the benchmark's `ssh` clients, ms",
            &|m| m.burst_client_ticks as f64 / tps * 1e3,
            "ms",
            0,
        );
        row(
            "CPU during the burst: the whole machine (/proc/stat), ms",
            &|m| m.burst_machine_ticks as f64 / tps * 1e3,
            "ms",
            0,
        );
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
        row(
            &format!("machine busy during the burst, % of its {cores:.0} cores"),
            &|m| m.burst_machine_ticks as f64 / tps / m.burst_secs / cores * 100.0,
            "%",
            0,
        );
        row(
            "burst: bastion threads but the recording writers, on a CPU, ms",
            &|m| m.burst_sched_relay.0 as f64 / 1e6,
            "ms",
            0,
        );
        row(
            "burst: … waiting for a CPU (runnable), ms",
            &|m| m.burst_sched_relay.1 as f64 / 1e6,
            "ms",
            0,
        );
        row(
            "burst: recording writer threads on a CPU, ms",
            &|m| m.burst_sched_writers.0 as f64 / 1e6,
            "ms",
            0,
        );
        row(
            "burst: recording writer threads waiting for a CPU, ms",
            &|m| m.burst_sched_writers.1 as f64 / 1e6,
            "ms",
            0,
        );
        for p in [50.0, 90.0, 99.0] {
            row(
                &format!("echo burst: p{p:.0} of the sessions answered, ms"),
                &|m| {
                    if m.burst_answers_ms.is_empty() {
                        0.0
                    } else {
                        percentile(&m.burst_answers_ms, p)
                    }
                },
                "ms",
                0,
            );
        }
        row(
            "**echo burst wall time** (all sessions answered)",
            &|m| m.burst_secs * 1e3,
            "ms",
            0,
        );
        row("time to open all sessions", &|m| m.open_secs, "s", 1);
    }

    // ------------------------------------------------------------ targets
    println!("\n### Targets (issue 16)\n");
    println!("| target | measured | |");
    println!("|---|---|---|");
    if part("bulk") {
        let med = |m: &BTreeMap<Via, Bulk>, v: Via| median(m[&v].mib_s.clone());
        let (rd, ru, rt) = (
            med(&down, Via::Sekisho) / med(&down, Via::Jump),
            med(&up, Via::Sekisho) / med(&up, Via::Jump),
            med(&text, Via::Sekisho) / med(&text, Via::Jump),
        );
        println!(
            "| throughput ≥ 1.2× ssh -J, recording on | download {rd:.2}×, upload {ru:.2}×, text output {rt:.2}× | {} |",
            yes(rd >= 1.2 && ru >= 1.2 && rt >= 1.2)
        );
        for (when, ticks) in CPU_MEASURES {
            let per = |m: &BTreeMap<Via, Bulk>, v: Via| ticks(&m[&v]) as f64;
            let (cd, cu, ct) = (
                per(&down, Via::Sekisho) / per(&down, Via::Jump).max(1.0),
                per(&up, Via::Sekisho) / per(&up, Via::Jump).max(1.0),
                per(&text, Via::Sekisho) / per(&text, Via::Jump).max(1.0),
            );
            println!(
                "| CPU per GiB ≤ 1.5× the jump sshd's, {when} | download {cd:.2}×, upload {cu:.2}×, text output {ct:.2}× | {} |",
                yes(cd <= 1.5 && cu <= 1.5 && ct <= 1.5)
            );
        }
        let peak = |m: &BTreeMap<Via, Bulk>| {
            m[&Via::Sekisho].peak_kib.iter().copied().max().unwrap_or(0) as f64 / 1024.0
        };
        println!(
            "| peak RSS < 32 MiB while {down_mib}/{up_mib}/{text_mib} MiB move | download {:.1} MiB, upload {:.1} MiB, text output {:.1} MiB | {} |",
            peak(&down),
            peak(&up),
            peak(&text),
            yes(peak(&down) < 32.0 && peak(&up) < 32.0 && peak(&text) < 32.0)
        );
    }
    if part("echo") {
        let added_p99 =
            percentile(&echo[&Via::Sekisho], 99.0) - percentile(&echo[&Via::Direct], 99.0);
        println!(
            "| added echo latency p99 < 1 ms | {added_p99:.0} µs | {} |",
            yes(added_p99 < 1000.0)
        );
    }
    if let Some(m) = many.get(&Via::Sekisho) {
        let per_session_mib =
            (m.after.rss_kib as f64 - m.before.rss_kib as f64) / m.sessions as f64 / 1024.0;
        println!(
            "| < 1.5 MiB bastion memory per idle session ({} sessions) | {per_session_mib:.2} MiB | {} |",
            m.sessions,
            yes(per_session_mib < 1.5)
        );
        println!(
            "| echo burst of all {} sessions answered within 1 s | {:.0} ms | {} |",
            m.sessions,
            m.burst_secs * 1e3,
            yes(m.burst_secs < 1.0)
        );
        if let Some(d) = many.get(&Via::Direct) {
            println!(
                "| echo burst: time sekisho adds to the same {} sessions connected directly | {:.0} ms − {:.0} ms = {:+.0} ms | {} |",
                m.sessions,
                m.burst_secs * 1e3,
                d.burst_secs * 1e3,
                (m.burst_secs - d.burst_secs) * 1e3,
                yes(m.burst_secs - d.burst_secs < 1.0)
            );
        }
        let back = m.closed.rss_kib as f64 / m.before.rss_kib.max(1) as f64;
        println!(
            "| RSS after the sessions close within 25 % of before | {:.1} → {:.1} MiB ({:+.0} %) | {} |",
            m.before.rss_kib as f64 / 1024.0,
            m.closed.rss_kib as f64 / 1024.0,
            (back - 1.0) * 100.0,
            yes(back <= 1.25)
        );
    }
}

/// The process that relays along `via`: sekisho serve, the jump host's sshd
/// (with its per-connection children), or none for a direct connection.
fn bastion_of(b: &Bench, via: Via) -> Option<u32> {
    match via {
        Via::Direct => None,
        Via::Jump => Some(b.jump_sshd_pid),
        Via::Sekisho | Via::Baseline => Some(b.deployment(via).serve_pid),
    }
}

fn add(acc: &mut BTreeMap<String, u64>, used: &BTreeMap<String, u64>) {
    for (k, v) in used {
        *acc.entry(k.clone()).or_insert(0) += v;
    }
}
