//! sekisho against a direct connection to the same xrdp, in one run, with
//! real peers on loopback:
//!
//! - **direct**: the measuring client (`support/rdp_client.rs`, built on
//!   ironrdp-connector) to xrdp with the target account's password;
//! - **sekisho**: the same client through a real `sekisho serve` (release
//!   build) as `tanaka@xrdp1`, which signs in to xrdp with the injected
//!   credential and records every input and graphics PDU.
//!
//! `cargo bench --bench rdp` prints markdown tables: time from TCP connect
//! to the first graphics update; graphics updates, screen area and bytes per
//! second while a program in the xrdp session redraws the whole screen;
//! the bastion's CPU and memory during that; the archive size of an
//! office-like session (typing in an xterm, occasional full redraws); and
//! how fast `sekisho export --format png` (and `mp4`, when this build has
//! it) renders an archive. The redraw workloads are in [`WORKLOADS`].
//! Environment (defaults in brackets): `SEKISHO_BENCH_FIRST_FRAME_RUNS`
//! [10], `SEKISHO_BENCH_REDRAW_SECS` [15], `SEKISHO_BENCH_REPEAT` [5],
//! `SEKISHO_BENCH_OFFICE_SECS` [60], `SEKISHO_BENCH_WORKLOADS` [all; names
//! separated by commas], `SEKISHO_BENCH_BPP` [32; the colour depth the
//! client asks for]; `SEKISHO_BENCH_KEEP=DIR` keeps the
//! exported archives and `serve.log` there (the deployment is removed).
//! `SEKISHO_BENCH_BASELINE=/path/to/an/older/sekisho` adds the path
//! "sekisho (before)": that binary serving a copy of the installation (its
//! own database and recordings) on another port, measured in the same rounds.

// A panic in a test or bench is a failed run; libc calls set up test conditions.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/support/mod.rs"]
mod fixture;

#[path = "support/measure.rs"]
mod measure;

#[path = "support/rdp_client.rs"]
mod rdp_client;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fixture::rdp_deployment::*;
use fixture::rdp_peers::*;
use measure::*;
use rdp_client::{Client, Input, Snapshot, Target};

/// The sekisho user the benchmark signs in as.
const USER: &str = "tanaka";

/// A program run on the xrdp session's display that keeps the whole
/// screen changing; xorgxrdp turns the damage into bitmap updates.
struct Workload {
    name: &'static str,
    /// `sh -c` script; `$IMAGES` is a directory with `a.png` and `b.png`.
    script: &'static str,
}

/// Three kinds of full-screen redraw, from many cheap frames to few
/// expensive ones.
const WORKLOADS: [Workload; 3] = [
    // The root window alternates between two colours and `xrefresh` makes
    // every window (the xterm too) repaint: many frames, few bytes each.
    Workload {
        name: "solid colours",
        script: "while :; do xsetroot -solid '#204a87'; xrefresh; \
                 xsetroot -solid '#c4a000'; xrefresh; done",
    },
    // A full-screen xterm scrolling random text, like a log flood.
    Workload {
        name: "text flood",
        script: "exec xterm -geometry 170x59+0+0 -e sh -c 'base64 /dev/urandom'",
    },
    // Two noise images (poorly compressible) set as the root background in
    // turn: few frames, megabytes each.
    Workload {
        name: "images",
        script: "while :; do display -window root \"$IMAGES/a.png\"; \
                 display -window root \"$IMAGES/b.png\"; done",
    },
];

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Via {
    Direct,
    /// A control: a plain TCP relay (threads copying bytes, TLS end to end
    /// between client and xrdp), to tell the cost of any extra hop from
    /// sekisho's own work.
    Relay,
    Sekisho,
    /// The baseline binary (`SEKISHO_BENCH_BASELINE`), for before/after.
    Before,
}

const ALL: [Via; 3] = [Via::Direct, Via::Relay, Via::Sekisho];

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Relay => "TCP relay",
            Via::Sekisho => "sekisho",
            Via::Before => "sekisho (before)",
        }
    }

    fn is_sekisho(self) -> bool {
        matches!(self, Via::Sekisho | Via::Before)
    }
}

/// The baseline sekisho: another `serve` of the same installation.
struct Before {
    _serve: Daemon,
    /// A copy of the installation (its own database: the baseline may
    /// have another schema), with the baseline binary.
    install: fixture::install::Install,
    port: u16,
    pid: u32,
    pin: [u8; 32],
    recordings: PathBuf,
    log: PathBuf,
}

struct Bench {
    d: Deployment,
    serve_pid: u32,
    /// SHA-256 of sekisho's front certificate, as the client pins it.
    front_pin: [u8; 32],
    /// Two noise images for the "images" workload.
    images: PathBuf,
    before: Option<Before>,
    _lock: PeerLock,
}

impl Bench {
    fn target(&self, via: Via, password: Option<String>) -> Target {
        match via {
            Via::Direct => Target {
                addr: SocketAddr::new(TARGET_IP.parse().expect("ip"), self.d.xrdp.port),
                pin: self.d.xrdp.pin,
                user: TEST_USER.into(),
                password: TEST_PASSWORD.into(),
            },
            // The deployment's forwarder in front of the same xrdp.
            Via::Relay => Target {
                addr: SocketAddr::new(WRONG_PIN_IP.parse().expect("ip"), self.d.wrong_pin_port),
                pin: self.d.xrdp.pin,
                user: TEST_USER.into(),
                password: TEST_PASSWORD.into(),
            },
            Via::Sekisho => Target {
                addr: SocketAddr::new(FRONT.parse().expect("ip"), self.d.rdp_port),
                pin: self.front_pin,
                user: format!("{USER}@xrdp1"),
                // Inside the sign-in window the bare password is enough.
                password: password.unwrap_or_else(|| PASSWORD.into()),
            },
            Via::Before => {
                let before = self.before.as_ref().expect("SEKISHO_BENCH_BASELINE");
                Target {
                    addr: SocketAddr::new(FRONT.parse().expect("ip"), before.port),
                    pin: before.pin,
                    user: format!("{USER}@xrdp1"),
                    password: password.unwrap_or_else(|| PASSWORD.into()),
                }
            }
        }
    }

    /// The paths measured: direct, TCP relay, sekisho, and the baseline.
    fn paths(&self) -> Vec<Via> {
        let mut v = ALL.to_vec();
        if self.before.is_some() {
            v.push(Via::Before);
        }
        v
    }

    /// The `sekisho serve` process that a path goes through (sekisho's for
    /// the others: it idles then).
    fn serve_pid_of(&self, via: Via) -> u32 {
        match (via, &self.before) {
            (Via::Before, Some(before)) => before.pid,
            _ => self.serve_pid,
        }
    }

    fn serve_log_of(&self, via: Via) -> String {
        match (via, &self.before) {
            (Via::Before, Some(before)) => std::fs::read_to_string(&before.log).unwrap_or_default(),
            _ => self.d.serve_log(),
        }
    }

    fn recordings_of(&self, via: Via) -> PathBuf {
        match (via, &self.before) {
            (Via::Before, Some(before)) => before.recordings.clone(),
            _ => self.d.dir.join("recordings"),
        }
    }

    /// Opens the sign-in window for USER from 127.0.0.1: one connection
    /// with password and code (a code is accepted once per 30 s step).
    fn open_window(&self, via: Via) {
        for attempt in 0..3 {
            let pw = format!("{PASSWORD}{}", self.d.code(USER));
            let s = Session::open(self, via, Some(pw));
            match s {
                Ok(_) => return,
                Err(e) => {
                    eprintln!("sign-in attempt {attempt} failed ({e}); waiting for the next code");
                    std::thread::sleep(Duration::from_secs(31));
                }
            }
        }
        panic!("cannot sign in to sekisho: {}", self.d.serve_log());
    }

    /// The installation (binary and directory) a path's sekisho uses.
    fn install_of(&self, via: Via) -> fixture::install::Install {
        match (via, &self.before) {
            (Via::Before, Some(before)) => fixture::install::Install {
                bin: before.install.bin.clone(),
                dir: before.install.dir.clone(),
            },
            _ => self.d.install(),
        }
    }

    /// Ids of the live sessions of USER on a path's sekisho.
    fn live_sessions(&self, via: Via) -> Vec<String> {
        self.install_of(via)
            .live_sessions()
            .into_iter()
            .filter(|v| v["user"] == USER)
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect()
    }
}

/// A connected client with the target's desktop up; ends the target
/// session on drop, so the next one starts from scratch.
struct Session {
    client: Client,
    /// `DISPLAY` and `XAUTHORITY` of the xrdp session.
    x_env: Vec<(String, String)>,
    /// The sekisho session id (through sekisho only).
    id: Option<String>,
}

impl Session {
    fn open(b: &Bench, via: Via, password: Option<String>) -> Result<Session, String> {
        let before = if via.is_sekisho() {
            b.live_sessions(via)
        } else {
            Vec::new()
        };
        let client = Client::start(b.target(via, password));
        if !client.wait_first_graphics(Duration::from_secs(60)) {
            let e = client
                .stats
                .error()
                .unwrap_or_else(|| "no graphics within 60 s".into());
            drop(client);
            end_test_user_sessions();
            return Err(e);
        }
        let mut xterm = None;
        let up = wait_until(Duration::from_secs(30), || {
            xterm = session_xterm();
            xterm.is_some()
        });
        if !up {
            drop(client);
            end_test_user_sessions();
            return Err("the target session's xterm did not start".into());
        }
        let x_env = x_env_of(xterm.expect("xterm pid"));
        let id = if via.is_sekisho() {
            b.live_sessions(via)
                .into_iter()
                .find(|id| !before.contains(id))
        } else {
            None
        };
        Ok(Session { client, x_env, id })
    }

    /// A shell command run on the session's display (root, with its
    /// X authority), stopped with its process group on drop.
    fn run_on_display(&self, name: &str, script: &str, log: &Path) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("workload log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script])
            .envs(self.x_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        Daemon::spawn(name, &mut cmd)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.client.stop();
        end_test_user_sessions();
    }
}

/// The pid of the xterm the target session runs (startwm.sh).
fn session_xterm() -> Option<u32> {
    let out = Command::new("pgrep")
        .args(["-u", TEST_USER, "-x", "xterm"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
}

/// `DISPLAY` and `XAUTHORITY` of a process; X clients default to
/// `$HOME/.Xauthority` when the variable is unset, as in xrdp sessions.
fn x_env_of(pid: u32) -> Vec<(String, String)> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let vars: BTreeMap<String, String> = env
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect();
    let mut x = Vec::new();
    if let Some(d) = vars.get("DISPLAY") {
        x.push(("DISPLAY".to_string(), d.clone()));
    }
    let auth = vars
        .get("XAUTHORITY")
        .cloned()
        .or_else(|| vars.get("HOME").map(|h| format!("{h}/.Xauthority")));
    if let Some(a) = auth {
        x.push(("XAUTHORITY".to_string(), a));
    }
    x
}

// ---------------------------------------------------------------- set-up

fn setup() -> Bench {
    let bin = bin();
    assert!(
        bin.components().any(|c| c.as_os_str() == "release"),
        "the bench must run the release binary, not {}: use `cargo bench --bench rdp`",
        bin.display()
    );
    for (tool, package) in [
        ("xsetroot", "x11-xserver-utils"),
        ("xrefresh", "x11-xserver-utils"),
        ("display", "imagemagick"),
        ("convert", "imagemagick"),
    ] {
        require_tool(tool, package);
    }
    let lock = prepare();
    let d = Deployment::start_with(Options {
        signin_window: "8h",
        // The default, so that archives and frame counts are not inflated
        // by the tests' one-second keyframes.
        keyframe_interval: "30s",
        ..Options::default()
    });
    let front_pin = probe_cert_sha256_at(FRONT, d.rdp_port);
    let serve_pid = d.serve_pid();
    let before = std::env::var_os("SEKISHO_BENCH_BASELINE").map(|bin| start_before(&d, &bin));
    // Blurred noise: 1024×768, about 4 MB as PNG, poorly compressible.
    let images = d.tmp().join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let a = images.join("a.png");
    let made = Command::new("convert")
        .args([
            "-size", "1024x768", "-depth", "8", "xc:", "+noise", "Random",
        ])
        .args(["-blur", "0x1"])
        .arg(&a)
        .status()
        .expect("convert");
    assert!(made.success(), "convert failed");
    let made = Command::new("convert")
        .arg(&a)
        .arg("-flop")
        .arg(images.join("b.png"))
        .status()
        .expect("convert");
    assert!(made.success(), "convert failed");
    // The session user's X clients read them too.
    std::fs::set_permissions(&images, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    Bench {
        d,
        serve_pid,
        front_pin,
        images,
        before,
        _lock: lock,
    }
}

/// `serve` of the baseline binary on a copy of the installation (users,
/// keys, policy; its own database and recordings) on another RDP port.
fn start_before(d: &Deployment, bin: &std::ffi::OsStr) -> Before {
    let dir = d.dir.with_file_name("bastion-before");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&d.dir)
        .arg(&dir)
        .status()
        .expect("cp");
    assert!(copied.success(), "copying the installation failed");
    let _ = std::fs::remove_dir_all(dir.join("recordings"));
    let config_path = dir.join("sekisho.toml");
    let config = std::fs::read_to_string(&config_path).expect("config");
    let port = free_port();
    let listen = format!("listen = \"{FRONT}:{}\"", d.rdp_port);
    assert!(config.contains(&listen), "no RDP listen line in the config");
    std::fs::write(
        &config_path,
        config.replace(&listen, &format!("listen = \"{FRONT}:{port}\"")),
    )
    .expect("write the baseline config");
    let log = dir.join("serve.log");
    let install = fixture::install::Install {
        bin: PathBuf::from(bin),
        dir: dir.clone(),
    };
    let serve = install.serve(&config_path, "sekisho=debug", &log, &[port]);
    let pid = serve.child.id();
    Before {
        _serve: serve,
        install,
        port,
        pid,
        pin: probe_cert_sha256_at(FRONT, port),
        recordings: dir.join("recordings"),
        log,
    }
}

// ---------------------------------------------------------------- measurements

/// ms from TCP connect to the first graphics update (and to the end of
/// the connection sequence), one fresh target session per run.
fn first_frame(b: &Bench, via: Via) -> (f64, f64) {
    let s = Session::open(b, via, None)
        .unwrap_or_else(|e| panic!("{} session: {e}\n{}", via.name(), b.d.serve_log()));
    let first = s.client.first_graphics().expect("first graphics");
    let connected = s.client.connected().expect("connected");
    (first.as_secs_f64() * 1e3, connected.as_secs_f64() * 1e3)
}

/// A row of the redraw table: label, value of a run, decimals.
type Metric = (&'static str, fn(&Rate) -> f64, usize);

#[derive(Debug, Clone, Copy)]
struct Rate {
    secs: f64,
    updates: f64,
    screens: f64,
    mbytes: f64,
}

fn rate(a: &Snapshot, z: &Snapshot) -> Rate {
    let secs = z.at.duration_since(a.at).as_secs_f64();
    let screen = f64::from(rdp_client::WIDTH) * f64::from(rdp_client::HEIGHT);
    Rate {
        secs,
        updates: (z.updates - a.updates) as f64 / secs,
        screens: (z.area - a.area) as f64 / screen / secs,
        mbytes: (z.bytes - a.bytes) as f64 / 1e6 / secs,
    }
}

struct Redraw {
    rate: Rate,
    /// Share of the bitmap area that came compressed; bitmap bytes over
    /// what the same pixels take uncompressed; bits per pixel.
    compressed: f64,
    bitmap_vs_raw: f64,
    bpp: u64,
    /// sekisho serve over the window (through sekisho only).
    cpu_ticks: u64,
    threads: BTreeMap<String, u64>,
    /// CPU ticks over the window: the peers of the pipeline by role, and
    /// the whole machine.
    cpu: BTreeMap<&'static str, u64>,
    rss_before_kib: u64,
    rss_during_kib: u64,
    /// The archive and the session length (through sekisho only).
    archive: Option<(PathBuf, u64)>,
}

/// The redraw workload for `secs` after a 2 s warm-up.
fn redraw(b: &Bench, via: Via, workload: &Workload, secs: u64) -> Redraw {
    let serve_pid = b.serve_pid_of(via);
    let rss_before_kib = usage(serve_pid).rss_kib;
    let s = Session::open(b, via, None)
        .unwrap_or_else(|e| panic!("{} session: {e}\n{}", via.name(), b.serve_log_of(via)));
    let log = b.d.tmp().join("workload.log");
    let script = format!("IMAGES='{}'; {}", b.images.display(), workload.script);
    let load = s.run_on_display(workload.name, &script, &log);
    std::thread::sleep(Duration::from_secs(2));
    let sampler = ThreadSampler::start(serve_pid);
    let u0 = usage(serve_pid);
    let roles = pipeline(serve_pid, load.child.id());
    let c0 = pipeline_cpu(&roles);
    let a = s.client.stats.snapshot();
    std::thread::sleep(Duration::from_secs(secs));
    let z = s.client.stats.snapshot();
    let c1 = pipeline_cpu(&roles);
    let u1 = usage(serve_pid);
    let threads = sampler.stop();
    drop(load);
    assert!(
        z.area > a.area,
        "the {} workload drew nothing via {}: {}",
        workload.name,
        via.name(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        s.client.alive(),
        "{} client died: {:?}",
        via.name(),
        s.client.stats.error()
    );
    let id = s.id.clone();
    drop(s);
    let archive = id.map(|id| sealed_archive(b, via, &id));
    Redraw {
        rate: rate(&a, &z),
        compressed: (z.compressed_area - a.compressed_area) as f64
            / (z.area - a.area).max(1) as f64,
        bitmap_vs_raw: (z.bitmap_bytes - a.bitmap_bytes) as f64
            / (z.bitmap_raw_bytes - a.bitmap_raw_bytes).max(1) as f64,
        bpp: z.bpp,
        cpu_ticks: u1.cpu_ticks.saturating_sub(u0.cpu_ticks),
        threads,
        cpu: c1
            .iter()
            .map(|(k, v)| (*k, v.saturating_sub(*c0.get(k).unwrap_or(&0))))
            .collect(),
        rss_before_kib,
        rss_during_kib: u1.rss_kib,
        archive,
    }
}

/// The processes of the redraw pipeline, by role.
const ROLES: [&str; 5] = [
    "workload (shell loop and its commands)",
    "Xorg (xorgxrdp)",
    "xrdp",
    "sekisho serve",
    "measuring client (this bench)",
];

/// (role, pid, with reaped children) for every process of the pipeline.
fn pipeline(serve_pid: u32, workload_pid: u32) -> Vec<(&'static str, u32, bool)> {
    let pgrep = |args: &[&str]| -> Vec<u32> {
        Command::new("pgrep")
            .args(args)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut p = vec![(ROLES[0], workload_pid, true)];
    p.extend(
        pgrep(&["-u", TEST_USER, "-x", "Xorg"])
            .into_iter()
            .map(|x| (ROLES[1], x, false)),
    );
    p.extend(
        pgrep(&["-x", "xrdp"])
            .into_iter()
            .map(|x| (ROLES[2], x, false)),
    );
    p.push((ROLES[3], serve_pid, false));
    p.push((ROLES[4], std::process::id(), false));
    p
}

fn pipeline_cpu(roles: &[(&'static str, u32, bool)]) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    for (role, pid, children) in roles {
        *m.entry(*role).or_insert(0) += cpu_ticks_of(*pid, *children);
    }
    m.insert("whole machine", machine_busy_ticks());
    m
}

/// The archive of a finished session once it is sealed, and its size.
fn sealed_archive(b: &Bench, via: Via, id: &str) -> (PathBuf, u64) {
    let install = b.install_of(via);
    let ended = wait_until(Duration::from_secs(20), || {
        !json_lines(&install.admin(&["audit", "--session", id, "--json"], None))
            .iter()
            .all(|e| e["kind"] != "session_end")
    });
    assert!(ended, "no session_end for {id}:\n{}", b.serve_log_of(via));
    let path = find_archive(&b.recordings_of(via), id).expect("archive file");
    let mut sealed = false;
    wait_until(Duration::from_secs(10), || {
        sealed = sekisho::recording::Reader::open(&path)
            .ok()
            .and_then(|mut r| r.is_sealed().ok())
            .unwrap_or(false);
        sealed
    });
    assert!(sealed, "archive {} not sealed", path.display());
    let size = std::fs::metadata(&path).expect("archive").len();
    (path, size)
}

/// Seconds from the first to the last recorded event.
fn recorded_secs(path: &Path) -> f64 {
    let mut r = sekisho::recording::Reader::open(path).expect("open archive");
    let mut last = 0;
    for ev in r.events() {
        last = ev.expect("event").t_us;
    }
    last as f64 / 1e6
}

struct Office {
    secs: f64,
    wire_bytes: u64,
    updates: u64,
    archive: PathBuf,
    archive_bytes: u64,
    typed_chars: usize,
    redraws: usize,
}

/// Commands an engineer types during maintenance, with their output.
const OFFICE_LINES: [&str; 8] = [
    "uptime",
    "df -h",
    "ls -l /etc | head -30",
    "cat /etc/os-release",
    "ps aux | head -20",
    "free -m",
    "ls /usr/bin | head -40",
    "date",
];

/// Typing at about 5 characters a second into the target's xterm, a few
/// mouse moves, `clear` now and then, and a full-screen repaint
/// (`xrefresh`) every 15 s, for `secs` seconds (through sekisho).
fn office(b: &Bench, via: Via, secs: u64) -> Office {
    let s = Session::open(b, via, None)
        .unwrap_or_else(|e| panic!("{} session: {e}\n{}", via.name(), b.serve_log_of(via)));
    std::thread::sleep(Duration::from_secs(1));
    let a = s.client.stats.snapshot();
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let (mut typed, mut redraws, mut line) = (0, 0, 0);
    let mut next_redraw = start + Duration::from_secs(15);
    s.client.send(Input::MouseMove(300, 200));
    // Proof that the typing reaches the target's shell.
    let marker = b.d.tmp().join("office-typed");
    s.client
        .send(Input::Text(format!("echo typed > {}\n", marker.display())));
    'work: while Instant::now() < end {
        let text = if line % 5 == 4 {
            "clear".to_string()
        } else {
            OFFICE_LINES[line % OFFICE_LINES.len()].to_string()
        };
        line += 1;
        for c in text.chars().chain(std::iter::once('\n')) {
            if Instant::now() >= end {
                break 'work;
            }
            s.client.send(Input::Text(c.to_string()));
            typed += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        s.client.send(Input::MouseMove(
            280 + (line as u16 % 5) * 10,
            200 + (line as u16 % 3) * 10,
        ));
        if Instant::now() >= next_redraw {
            let log = b.d.tmp().join("workload.log");
            let _ = s.run_on_display("xrefresh", "xrefresh", &log).child.wait();
            redraws += 1;
            next_redraw += Duration::from_secs(15);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let z = s.client.stats.snapshot();
    assert!(
        s.client.alive(),
        "office client died: {:?}",
        s.client.stats.error()
    );
    assert!(
        std::fs::read_to_string(&marker).is_ok_and(|t| t.trim() == "typed"),
        "what the client typed did not reach the target's shell"
    );
    let id = s.id.clone().expect("sekisho session id");
    drop(s);
    let (archive, archive_bytes) = sealed_archive(b, via, &id);
    Office {
        secs: z.at.duration_since(a.at).as_secs_f64(),
        wire_bytes: z.bytes - a.bytes,
        updates: z.updates - a.updates,
        archive,
        archive_bytes,
        typed_chars: typed,
        redraws,
    }
}

/// Wall seconds of `sekisho export ID --format F -o FILE`, or the error.
fn export(b: &Bench, archive: &Path, format: &str) -> Result<f64, String> {
    let out_file = b.d.tmp().join(format!("export.{format}"));
    let _ = std::fs::remove_file(&out_file);
    let t = Instant::now();
    let out = sekisho(
        &b.d.dir,
        &[
            "export",
            archive.to_str().expect("utf8"),
            "--format",
            format,
            "-o",
            out_file.to_str().expect("utf8"),
        ],
        None,
    );
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(text(&out).trim().to_string());
    }
    let size = std::fs::metadata(&out_file).map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        return Err("empty output".into());
    }
    Ok(secs)
}

// ---------------------------------------------------------------- main

fn ratio(s: f64, d: f64) -> String {
    if d > 0.0 {
        format!("{:.2}", s / d)
    } else {
        "–".into()
    }
}

fn yes(b: bool) -> &'static str {
    if b { "**met**" } else { "**not met**" }
}

fn main() {
    let first_runs = env_num("SEKISHO_BENCH_FIRST_FRAME_RUNS", 10).max(1);
    let redraw_secs = env_num("SEKISHO_BENCH_REDRAW_SECS", 15).max(1) as u64;
    let repeat = env_num("SEKISHO_BENCH_REPEAT", 5).max(1);
    let office_secs = env_num("SEKISHO_BENCH_OFFICE_SECS", 60).max(5) as u64;
    let tps = ticks_per_sec();
    // A subset of the redraw workloads by name, for a closer look.
    let only = std::env::var("SEKISHO_BENCH_WORKLOADS").unwrap_or_default();
    let workloads: Vec<&Workload> = WORKLOADS
        .iter()
        .filter(|w| only.is_empty() || only.split(',').any(|n| n.trim() == w.name))
        .collect();
    assert!(
        !workloads.is_empty(),
        "no workload named in SEKISHO_BENCH_WORKLOADS={only}"
    );

    let load_start = loadavg();
    let b = setup();
    eprintln!(
        "sekisho {} (pid {}, dir {}) on {FRONT}:{}, xrdp on {TARGET_IP}:{}",
        bin().display(),
        b.serve_pid,
        b.d.dir.display(),
        b.d.rdp_port,
        b.d.xrdp.port,
    );
    b.open_window(Via::Sekisho);
    if b.before.is_some() && Session::open(&b, Via::Before, None).is_err() {
        b.open_window(Via::Before);
    }
    let paths = b.paths();
    // Warm up every path (and prove they work).
    for via in paths.iter().copied() {
        drop(
            Session::open(&b, via, None)
                .unwrap_or_else(|e| panic!("{} warm-up: {e}\n{}", via.name(), b.serve_log_of(via))),
        );
    }

    let mut first: BTreeMap<Via, Vec<f64>> = BTreeMap::new();
    let mut connected: BTreeMap<Via, Vec<f64>> = BTreeMap::new();
    for r in 0..first_runs {
        // Interleave the paths so drift on the shared machine hits both.
        for via in paths.iter().copied() {
            eprintln!("first frame via {} (run {})", via.name(), r + 1);
            let (f, c) = first_frame(&b, via);
            first.entry(via).or_default().push(f);
            connected.entry(via).or_default().push(c);
        }
    }

    // (workload index, via) -> runs
    let mut redraws: BTreeMap<(usize, Via), Vec<Redraw>> = BTreeMap::new();
    for r in 0..repeat {
        for (w, workload) in workloads.iter().enumerate() {
            for via in paths.iter().copied() {
                eprintln!(
                    "{} via {} for {redraw_secs} s (run {})",
                    workload.name,
                    via.name(),
                    r + 1
                );
                redraws
                    .entry((w, via))
                    .or_default()
                    .push(redraw(&b, via, workload, redraw_secs));
            }
        }
    }

    eprintln!("office-like session via sekisho for {office_secs} s");
    let off = office(&b, Via::Sekisho, office_secs);
    let off_before = b.before.as_ref().map(|_| {
        eprintln!("office-like session via sekisho (before) for {office_secs} s");
        office(&b, Via::Before, office_secs)
    });

    eprintln!("export speed");
    let mut exports = Vec::new();
    let mut to_export = vec![("office-like".to_string(), off.archive.clone())];
    for (w, workload) in workloads.iter().enumerate() {
        if let Some((path, _)) = redraws[&(w, Via::Sekisho)]
            .iter()
            .find_map(|r| r.archive.clone())
        {
            to_export.push((workload.name.to_string(), path));
        }
    }
    let keep = std::env::var_os("SEKISHO_BENCH_KEEP").map(PathBuf::from);
    if let Some(dir) = &keep {
        std::fs::create_dir_all(dir).expect("SEKISHO_BENCH_KEEP dir");
        let _ = std::fs::copy(b.d.dir.join("serve.log"), dir.join("serve.log"));
    }
    for (label, path) in to_export {
        if let Some(dir) = &keep {
            let name = format!("{}.skrec", label.replace(' ', "-"));
            std::fs::copy(&path, dir.join(name)).expect("keep archive");
        }
        let secs = recorded_secs(&path);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        for format in ["png", "mp4"] {
            exports.push((label.clone(), size, secs, format, export(&b, &path, format)));
        }
    }

    // ------------------------------------------------------------ report
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    println!("## sekisho RDP benchmark ({date})\n");
    println!(
        "Load average (1 min) of the machine at start / end: {load_start} / {}.\n",
        loadavg()
    );
    let depth = rdp_client::color_depth();
    println!(
        "Loopback, {} CPUs, xrdp {} with xorgxrdp, desktop {}×{}, the client asking for \
         {depth} bpp. Every path negotiates plain bitmap updates (no orders, codecs or \
         bulk compression), which is what sekisho steers every target to.{}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        xrdp_version(),
        rdp_client::WIDTH,
        rdp_client::HEIGHT,
        if depth == 32 {
            " Where a client asks for 32 bpp, sekisho asks the target for 24 (the same \
             colours), so xrdp sends the sekisho path interleaved RLE bitmaps and the \
             direct and TCP relay paths planar ones; `SEKISHO_BENCH_BPP=24` makes every \
             path the same."
        } else {
            ""
        },
    );

    println!(
        "### Time to first frame (ms, TCP connect → first graphics update, {first_runs} runs, fresh xrdp session each)\n"
    );
    let has_before = b.before.is_some();
    println!(
        "| | direct | TCP relay | sekisho | sekisho / direct | added by sekisho |{}",
        if has_before {
            " sekisho (before) |"
        } else {
            ""
        }
    );
    println!(
        "|---|---:|---:|---:|---:|---:|{}",
        if has_before { "---:|" } else { "" }
    );
    for (label, m, p) in [
        ("first graphics update, median", &first, 50.0),
        ("first graphics update, max", &first, 100.0),
        ("connection sequence done, median", &connected, 50.0),
    ] {
        let pick = |v: Via| {
            let mut x = m[&v].clone();
            x.sort_by(f64::total_cmp);
            if p == 50.0 {
                median(x)
            } else {
                percentile(&x, p)
            }
        };
        let (d, r, s) = (pick(Via::Direct), pick(Via::Relay), pick(Via::Sekisho));
        let before = if has_before {
            format!(" {:.0} |", pick(Via::Before))
        } else {
            String::new()
        };
        println!(
            "| {label} | {d:.0} | {r:.0} | {s:.0} | {} | {:.0} |{before}",
            ratio(s, d),
            s - d
        );
    }
    println!(
        "\nsekisho signs in inside the sign-in window (password, argon2id; the code \
         was typed once), connects to xrdp with the injected credential and opens \
         the recording; xrdp starts a new Xorg session for every connection in both \
         paths."
    );

    let med_rate = |w: usize, v: Via, f: fn(&Rate) -> f64| {
        median(redraws[&(w, v)].iter().map(|r| f(&r.rate)).collect())
    };
    println!(
        "\n### Full-screen redraw ({redraw_secs} s per run, median of {repeat}, paths and workloads in turn; higher is better)\n"
    );
    println!(
        "| workload | | direct | TCP relay | sekisho | sekisho / direct | sekisho / TCP relay | runs (direct) | runs (sekisho) |{}",
        if has_before {
            " sekisho (before) | before / direct | runs (before) |"
        } else {
            ""
        }
    );
    println!(
        "|---|---|---:|---:|---:|---:|---:|---|---|{}",
        if has_before { "---:|---:|---|" } else { "" }
    );
    let rows: [Metric; 3] = [
        ("**frames/s**", |r| r.screens, 1),
        ("update PDUs/s", |r| r.updates, 0),
        ("MB/s", |r| r.mbytes, 2),
    ];
    for (w, workload) in workloads.iter().enumerate() {
        for (label, f, prec) in rows {
            let (d, r, s) = (
                med_rate(w, Via::Direct, f),
                med_rate(w, Via::Relay, f),
                med_rate(w, Via::Sekisho, f),
            );
            let runs = |v: Via| {
                redraws[&(w, v)]
                    .iter()
                    .map(|r| format!("{:.prec$}", f(&r.rate)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let before = if has_before {
                let x = med_rate(w, Via::Before, f);
                format!(" {x:.prec$} | {} | {} |", ratio(x, d), runs(Via::Before))
            } else {
                String::new()
            };
            println!(
                "| {} | {label} | {d:.prec$} | {r:.prec$} | {s:.prec$} | {} | {} | {} | {} |{before}",
                workload.name,
                ratio(s, d),
                ratio(s, r),
                runs(Via::Direct),
                runs(Via::Sekisho),
            );
        }
    }
    for (w, workload) in workloads.iter().enumerate() {
        let pairs: Vec<String> = redraws[&(w, Via::Direct)]
            .iter()
            .zip(&redraws[&(w, Via::Sekisho)])
            .map(|(d, s)| ratio(s.rate.screens, d.rate.screens))
            .collect();
        println!(
            "\n{}: frames/s sekisho / direct round by round (the runs of a round are back to back): {}.",
            workload.name,
            pairs.join(", ")
        );
        if has_before {
            let pairs: Vec<String> = redraws[&(w, Via::Direct)]
                .iter()
                .zip(&redraws[&(w, Via::Before)])
                .map(|(d, s)| ratio(s.rate.screens, d.rate.screens))
                .collect();
            println!(
                "{}: frames/s sekisho (before) / direct round by round: {}.",
                workload.name,
                pairs.join(", ")
            );
        }
    }
    println!(
        "\nframes/s counts full-screen equivalents: the area of the bitmap \
         rectangles received per second divided by the desktop area. MB/s is the \
         RDP payload from the server. Workloads (on the session's display):"
    );
    for workload in &workloads {
        println!(
            "{}: `{}`",
            workload.name,
            workload
                .script
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
    }

    println!("\n### The bastion during the redraw (one session, median of {repeat})\n");
    println!(
        "| workload | sekisho | CPU, % of one core | CPU per MB relayed | of it: recording writer | writer, % of one core | RSS with the session | RSS added by the session | archive per minute | bitmaps: compressed area, bytes / raw, bpp |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let sekisho_paths: Vec<Via> = paths.iter().copied().filter(|v| v.is_sekisho()).collect();
    for (w, workload) in workloads.iter().enumerate() {
        for via in sekisho_paths.iter().copied() {
            let sk = &redraws[&(w, via)];
            let m = |f: &dyn Fn(&Redraw) -> f64| median(sk.iter().map(f).collect());
            let cpu = m(&|r| r.cpu_ticks as f64 / tps / r.rate.secs * 100.0);
            let per_mb = m(&|r| r.cpu_ticks as f64 / tps / (r.rate.mbytes * r.rate.secs) * 1e3);
            let rec = m(&|r| {
                let rec: u64 = r
                    .threads
                    .iter()
                    .filter(|(k, _)| k.starts_with("rec-"))
                    .map(|(_, v)| *v)
                    .sum();
                rec as f64 / r.cpu_ticks.max(1) as f64 * 100.0
            });
            let rec_core = m(&|r| {
                let rec: u64 = r
                    .threads
                    .iter()
                    .filter(|(k, _)| k.starts_with("rec-"))
                    .map(|(_, v)| *v)
                    .sum();
                rec as f64 / tps / r.rate.secs * 100.0
            });
            let compressed = m(&|r| r.compressed * 100.0);
            let vs_raw = m(&|r| r.bitmap_vs_raw);
            let bpp = sk.last().map_or(0, |r| r.bpp);
            let rss = m(&|r| r.rss_during_kib as f64) / 1024.0;
            let added = m(&|r| r.rss_during_kib as f64 - r.rss_before_kib as f64) / 1024.0;
            let archive = m(&|r| {
                r.archive
                    .as_ref()
                    .map_or(0.0, |a| a.1 as f64 / 1e6 / (r.rate.secs + 2.0) * 60.0)
            });
            println!(
                "| {} | {} | {cpu:.1} % | {per_mb:.1} ms | {rec:.0} % | {rec_core:.1} % | {rss:.1} MiB | {added:.1} MiB | {archive:.1} MB/min | {compressed:.0} %, {vs_raw:.2}, {bpp} |",
                workload.name,
                if via == Via::Before {
                    "before"
                } else {
                    "**after**"
                },
            );
        }
    }
    println!(
        "\nCPU is utime+stime of the `sekisho serve` process over the window \
         (/proc/PID/stat); the recording writer share is its `rec-*` thread. \
         RSS added: with the session minus before it was opened. Archive per \
         minute: the sealed archive of the run over the workload time (the run's \
         window plus its 2 s warm-up; sign-in and desktop start add a little)."
    );

    println!(
        "\n### Where the machine's CPU went during the redraw (% of one core, mean over all runs; {} cores)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print!("| process |");
    for workload in &workloads {
        print!(" {}: direct | {0}: sekisho |", workload.name);
    }
    println!();
    println!("|---|{}", "---:|".repeat(2 * workloads.len()));
    let share = |w: usize, v: Via, role: &str| {
        let rs = &redraws[&(w, v)];
        let wall: f64 = rs.iter().map(|r| r.rate.secs).sum();
        let t: u64 = rs.iter().map(|r| *r.cpu.get(role).unwrap_or(&0)).sum();
        t as f64 / tps / wall * 100.0
    };
    for role in ROLES.iter().chain(["whole machine"].iter()) {
        print!("| {role} |");
        for w in 0..workloads.len() {
            for via in [Via::Direct, Via::Sekisho] {
                print!(" {:.0} % |", share(w, via, role));
            }
        }
        println!();
    }

    println!("\n### Archive size\n");
    println!(
        "| workload | session | on the wire (server → client) | archive | archive per minute |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (label, o) in
        std::iter::once(("sekisho", &off)).chain(off_before.iter().map(|o| ("sekisho (before)", o)))
    {
        println!(
            "| office-like via {label}: {} characters typed at ~5/s into the xterm, `clear` every 5th line, {} full-screen repaints | {:.0} s | {:.1} MB ({} updates) | {:.2} MB | **{:.2} MB/min** |",
            o.typed_chars,
            o.redraws,
            o.secs,
            o.wire_bytes as f64 / 1e6,
            o.updates,
            o.archive_bytes as f64 / 1e6,
            o.archive_bytes as f64 / 1e6 / (o.secs / 60.0),
        );
    }
    println!(
        "\nThe office session was measured for its full length ({:.0} s), not scaled; \
         the archive holds the whole session (sign-in to disconnect), input and graphics.",
        off.secs
    );

    println!("\n### Export speed (`sekisho export ID --format F -o FILE`, the whole session)\n");
    println!("| archive | size | session | format | wall | × real time |");
    println!("|---|---:|---:|---|---:|---:|");
    let mut speed: BTreeMap<&str, f64> = BTreeMap::new();
    for (label, size, secs, format, result) in &exports {
        match result {
            Ok(wall) => {
                let x = secs / wall;
                let slowest = speed.entry(*format).or_insert(f64::INFINITY);
                *slowest = slowest.min(x);
                println!(
                    "| {label} | {:.2} MB | {secs:.0} s | {format} | {wall:.2} s | {x:.0}× |",
                    *size as f64 / 1e6
                );
            }
            Err(e) => println!(
                "| {label} | {:.2} MB | {secs:.0} s | {format} | not available: {} | |",
                *size as f64 / 1e6,
                e.lines().last().unwrap_or_default().replace('|', "/")
            ),
        }
    }

    // ------------------------------------------------------------ targets
    println!("\n### Targets\n");
    println!("| target | measured | |");
    println!("|---|---|---|");
    let fps: Vec<(&str, f64)> = workloads
        .iter()
        .enumerate()
        .map(|(w, workload)| {
            (
                workload.name,
                med_rate(w, Via::Sekisho, |r| r.screens) / med_rate(w, Via::Direct, |r| r.screens),
            )
        })
        .collect();
    println!(
        "| < 5 % loss of frame throughput against direct | {} | {} |",
        fps.iter()
            .map(|(n, f)| format!("{n} {:+.1} % ({f:.2}×)", (f - 1.0) * 100.0))
            .collect::<Vec<_>>()
            .join("; "),
        yes(fps.iter().all(|(_, f)| *f > 0.95))
    );
    if has_before {
        let per_min = |w: usize, via: Via| {
            median(
                redraws[&(w, via)]
                    .iter()
                    .map(|r| {
                        r.archive
                            .as_ref()
                            .map_or(0.0, |a| a.1 as f64 / 1e6 / (r.rate.secs + 2.0) * 60.0)
                    })
                    .collect(),
            )
        };
        let smaller: Vec<(&str, f64)> = workloads
            .iter()
            .enumerate()
            .filter(|(_, wl)| wl.name != "solid colours")
            .map(|(w, wl)| {
                (
                    wl.name,
                    per_min(w, Via::Before) / per_min(w, Via::Sekisho).max(1e-9),
                )
            })
            .collect();
        println!(
            "| archive per minute ≥ 4× smaller than before (text flood, images) | {} | {} |",
            smaller
                .iter()
                .map(|(n, x)| format!("{n} {x:.1}× smaller"))
                .collect::<Vec<_>>()
                .join("; "),
            yes(smaller.iter().all(|(_, x)| *x >= 4.0))
        );
        if let Some(ob) = &off_before {
            let (a, o) = (
                off.archive_bytes as f64 / off.secs,
                ob.archive_bytes as f64 / ob.secs,
            );
            println!(
                "| office-like archive no larger than before | {:.2} vs {:.2} MB/min | {} |",
                a * 60.0 / 1e6,
                o * 60.0 / 1e6,
                yes(a <= o * 1.05)
            );
        }
        let writer = |w: usize, via: Via| {
            median(
                redraws[&(w, via)]
                    .iter()
                    .map(|r| {
                        let rec: u64 = r
                            .threads
                            .iter()
                            .filter(|(k, _)| k.starts_with("rec-"))
                            .map(|(_, v)| *v)
                            .sum();
                        rec as f64 / tps / r.rate.secs
                    })
                    .collect(),
            )
        };
        if let Some(w) = workloads.iter().position(|wl| wl.name == "images") {
            let (after, before) = (writer(w, Via::Sekisho), writer(w, Via::Before));
            println!(
                "| recording writer's CPU during images halved | {:.1} → {:.1} % of a core ({:.2}×) | {} |",
                before * 100.0,
                after * 100.0,
                after / before.max(1e-9),
                yes(after <= before / 2.0)
            );
        }
    }
    for (format, what) in [("png", "PNG at the end"), ("mp4", "MP4")] {
        match speed.get(format) {
            Some(x) => println!(
                "| export ≥ 20× real time ({what}) | {x:.0}× (slowest archive) | {} |",
                yes(*x >= 20.0)
            ),
            None => println!("| export ≥ 20× real time ({what}) | not available in this build | |"),
        }
    }
}

fn xrdp_version() -> String {
    Command::new("xrdp")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("xrdp ").map(|v| v.trim().to_string()))
        })
        .unwrap_or_else(|| "?".into())
}
