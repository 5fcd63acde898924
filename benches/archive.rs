//! Writer throughput and compression ratio through the public `Recorder`
//! API, on realistic terminal output and a desktop-like binary stream.
//!
//! `cargo bench --bench archive` prints a markdown table. Each workload runs
//! in a child process so its peak RSS (VmHWM) is its own. Environment:
//! `SEKISHO_BENCH_MB` (input per workload, default 128),
//! `SEKISHO_BENCH_LEVELS` (zstd levels, default "1,3").

// A panic in a test or bench is a failed run; libc calls set up test conditions.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use sekisho::recording::{
    ArchiveKey, Event, Protocol, Recorder, SessionMeta, Stream, WriterOptions,
};

const WORKLOADS: [&str; 4] = [
    "compiler-log",
    "ls-lR-usr",
    "fullscreen-redraw",
    "desktop-bitmaps",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--workload") {
        let name = args.get(i + 1).map(String::as_str).unwrap_or("");
        let level: i32 = args.get(i + 2).and_then(|l| l.parse().ok()).unwrap_or(3);
        run_one(name, level);
        return;
    }
    let levels: Vec<i32> = std::env::var("SEKISHO_BENCH_LEVELS")
        .unwrap_or_else(|_| "1,3".into())
        .split(',')
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    println!(
        "| workload | zstd level | MB in | MB out | ratio | MB/s (wall) | MB/s per writer-thread CPU-s | peak RSS (MiB) | RSS growth (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let exe = std::env::current_exe().expect("bench executable path");
    for level in levels {
        for w in WORKLOADS {
            let out = Command::new(&exe)
                .args(["--workload", w, &level.to_string()])
                .output()
                .expect("run workload child");
            let text = String::from_utf8_lossy(&out.stdout);
            match text.lines().find(|l| l.starts_with('|')) {
                Some(row) => println!("{row}"),
                None => eprintln!("{w}: failed: {}", String::from_utf8_lossy(&out.stderr)),
            }
        }
    }
}

fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds of the process (`RUSAGE_SELF`) or calling thread (`RUSAGE_THREAD`).
fn cpu_seconds(who: i32) -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass.
    let u = unsafe {
        libc::getrusage(who, u.as_mut_ptr());
        u.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn run_one(name: &str, level: i32) {
    let total_mb: usize = std::env::var("SEKISHO_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let corpus = match name {
        "compiler-log" => compiler_log(16 << 20),
        "ls-lR-usr" => ls_lr_usr(),
        "fullscreen-redraw" => redraw(16 << 20),
        "desktop-bitmaps" => desktop(16 << 20),
        other => panic!("unknown workload {other}"),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = SessionMeta {
        session_id: "bench".into(),
        user: "bench".into(),
        vendor: "bench".into(),
        system: "bench".into(),
        target: "bench".into(),
        protocol: if name == "desktop-bitmaps" {
            Protocol::Rdp
        } else {
            Protocol::Ssh
        },
        client_addr: "127.0.0.1:1".into(),
        decision: "bench".into(),
        hop_parent: None,
        started_at: Utc::now(),
        terminal: None,
        desktop: None,
        rdp: None,
    };
    let options = WriterOptions {
        zstd_level: level,
        ..WriterOptions::default()
    };
    let total = total_mb << 20;
    let mut rng = StdRng::seed_from_u64(7);
    let rss_before = vm_kib("VmRSS:");
    let cpu0 = cpu_seconds(libc::RUSAGE_SELF);
    let main0 = cpu_seconds(libc::RUSAGE_THREAD);
    let start = Instant::now();
    let rec = Recorder::create(
        &dir.path().join("bench.skrec"),
        &meta,
        ArchiveKey::generate(),
        options,
    )
    .expect("create");
    let mut fed = 0usize;
    let mut at = 0usize;
    while fed < total {
        // Reads of realistic sizes: 4–32 KiB (RDP PDUs are similar).
        let n = rng.gen_range(4096..=32768).min(corpus.len() - at);
        let data = Bytes::copy_from_slice(&corpus[at..at + n]);
        at = if at + n >= corpus.len() { 0 } else { at + n };
        fed += n;
        rec.record(Event::Output {
            channel: 0,
            stream: Stream::Stdout,
            data,
        })
        .expect("record");
        if rng.gen_ratio(1, 64) {
            rec.record(Event::Input {
                channel: 0,
                data: Bytes::from_static(b"j"),
            })
            .expect("record");
        }
    }
    let summary = rec.seal().expect("seal");
    let wall = start.elapsed().max(Duration::from_micros(1)).as_secs_f64();
    // The writer thread's CPU: the process's minus this (feeding) thread's.
    let main_cpu = cpu_seconds(libc::RUSAGE_THREAD) - main0;
    let cpu = (cpu_seconds(libc::RUSAGE_SELF) - cpu0 - main_cpu).max(1e-6);
    let mb_in = fed as f64 / 1e6;
    let mb_out = summary.size as f64 / 1e6;
    println!(
        "| {name} | {level} | {mb_in:.1} | {mb_out:.2} | {:.1}× | {:.0} | {:.0} | {:.1} | {:.1} |",
        mb_in / mb_out,
        mb_in / wall,
        mb_in / cpu,
        vm_kib("VmHWM:") as f64 / 1024.0,
        vm_kib("VmHWM:").saturating_sub(rss_before) as f64 / 1024.0,
    );
}

const CRATES: [&str; 12] = [
    "serde", "tokio", "hyper", "regex", "syn", "quote", "rustls", "ring", "sqlx", "clap", "chrono",
    "zstd-sys",
];
const WORDS: [&str; 16] = [
    "record", "session", "buffer", "parse", "config", "policy", "channel", "frame", "decode",
    "encode", "index", "writer", "reader", "state", "handle", "token",
];

/// rustc/cargo and gcc/make style output with varying names and numbers.
fn compiler_log(size: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(1);
    let mut s = String::with_capacity(size + 4096);
    while s.len() < size {
        let w = |r: &mut StdRng| WORDS[r.gen_range(0..WORDS.len())];
        match rng.gen_range(0..10) {
            0..=2 => {
                let c = CRATES[rng.gen_range(0..CRATES.len())];
                s += &format!(
                    "   Compiling {c} v{}.{}.{}\n",
                    rng.gen_range(0..3),
                    rng.gen_range(0..40),
                    rng.gen_range(0..30)
                );
            }
            3..=5 => {
                let (a, b, line, col) = (
                    w(&mut rng),
                    w(&mut rng),
                    rng.gen_range(1..2000),
                    rng.gen_range(1..80),
                );
                s += &format!(
                    "warning: unused variable: `{a}_{b}`\n  --> src/{a}/{b}.rs:{line}:{col}\n   |\n{line:>4} |     let {a}_{b} = {b}::new(&{a}, {line});\n   |         ^^^^^^^^ help: if this is intentional, prefix it with an underscore: `_{a}_{b}`\n   |\n   = note: `#[warn(unused_variables)]` on by default\n\n"
                );
            }
            6..=8 => {
                let (a, n) = (w(&mut rng), rng.gen_range(0..500));
                s += &format!(
                    "gcc -O2 -g -Wall -Wextra -fPIC -I../include -I/usr/include/libxml2 -DHAVE_CONFIG_H -c src/{a}_{n}.c -o obj/{a}_{n}.o\n"
                );
                if rng.gen_ratio(1, 3) {
                    s += &format!(
                        "src/{a}_{n}.c: In function '{a}_{}':\nsrc/{a}_{n}.c:{}:{}: warning: comparison of integer expressions of different signedness: 'int' and 'size_t' {{aka 'long unsigned int'}} [-Wsign-compare]\n",
                        w(&mut rng),
                        rng.gen_range(1..3000),
                        rng.gen_range(1..60)
                    );
                }
            }
            _ => {
                s += &format!(
                    "make[{}]: Entering directory '/home/build/src/{}'\n",
                    rng.gen_range(1..4),
                    w(&mut rng)
                );
            }
        }
    }
    s.into_bytes()
}

/// Real `ls -lR /usr` output, captured now (capped at 32 MiB).
fn ls_lr_usr() -> Vec<u8> {
    let out = Command::new("ls")
        .args(["-lR", "/usr"])
        .output()
        .expect("run ls -lR /usr");
    let mut v = out.stdout;
    v.truncate(32 << 20);
    if v.len() < 64 * 1024 {
        panic!("ls -lR /usr gave too little output");
    }
    v
}

/// A `top`-like full-screen program redrawing every second: the whole
/// screen is rewritten each time, but only some fields change between frames.
fn redraw(size: usize) -> Vec<u8> {
    struct Proc {
        pid: u32,
        user: &'static str,
        virt: u32,
        res: u32,
        shr: u32,
        cpu: f32,
        time_cs: u32,
        cmd: &'static str,
    }
    let mut rng = StdRng::seed_from_u64(3);
    let cmds = [
        "postgres",
        "java",
        "sshd",
        "systemd",
        "rsyslogd",
        "cron",
        "nginx",
        "node",
        "python3",
        "kworker/0:1",
    ];
    let mut procs: Vec<Proc> = (0..40u32)
        .map(|i| Proc {
            pid: 1000 + i * 37,
            user: if i % 3 == 0 { "postgres" } else { "root" },
            virt: rng.gen_range(10_000..4_000_000),
            res: rng.gen_range(1_000..900_000),
            shr: rng.gen_range(1_000..90_000),
            cpu: 0.0,
            time_cs: rng.gen_range(0..1_000_000),
            cmd: cmds[(i as usize) % cmds.len()],
        })
        .collect();
    let mut s = String::with_capacity(size + 8192);
    let mut tick = 0u32;
    let mut load = [0.52f32, 0.61, 0.70];
    while s.len() < size {
        tick += 1;
        for l in &mut load {
            *l = (*l + rng.gen_range(-0.05..0.05)).max(0.0);
        }
        for p in &mut procs {
            // A few processes are busy; the rest stay idle and unchanged.
            p.cpu = if rng.gen_ratio(1, 6) {
                rng.gen_range(0.3..45.0)
            } else {
                0.0
            };
            p.time_cs += (p.cpu * 1.0) as u32;
            if rng.gen_ratio(1, 10) {
                p.res = p.res.saturating_add(rng.gen_range(0..64));
            }
        }
        procs.sort_by(|a, b| b.cpu.total_cmp(&a.cpu).then(a.pid.cmp(&b.pid)));
        s += "\x1b[H\x1b[?25l";
        s += &format!(
            "top - 10:{:02}:{:02} up 12 days,  3:04,  2 users,  load average: {:.2}, {:.2}, {:.2}\x1b[K\r\n",
            (tick / 60) % 60,
            tick % 60,
            load[0],
            load[1],
            load[2]
        );
        let running = procs.iter().filter(|p| p.cpu > 0.0).count();
        s += &format!(
            "Tasks: 213 total, {running:3} running, {:3} sleeping,   0 stopped,   0 zombie\x1b[K\r\n",
            213 - running
        );
        let us: f32 = procs.iter().map(|p| p.cpu).sum::<f32>() / 4.0;
        s += &format!(
            "%Cpu(s): {us:4.1} us,  1.2 sy,  0.0 ni, {:4.1} id,  0.1 wa,  0.0 hi,  0.1 si,  0.0 st\x1b[K\r\n",
            (98.6 - us).max(0.0)
        );
        s += "MiB Mem :  15928.4 total,   2104.7 free,   6021.3 used,   7802.4 buff/cache\x1b[K\r\n\x1b[K\r\n";
        s += "\x1b[7m    PID USER      PR  NI    VIRT    RES    SHR S  %CPU  %MEM     TIME+ COMMAND          \x1b[m\x1b[K\r\n";
        for (row, p) in procs.iter().enumerate() {
            s += &format!(
                "\x1b[{};1H{:7} {:<9} 20   0 {:7} {:6} {:6} {} {:5.1} {:5.1} {:>3}:{:02}.{:02} {:<16}\x1b[K",
                row + 8,
                p.pid,
                p.user,
                p.virt,
                p.res,
                p.shr,
                if p.cpu > 0.0 { 'R' } else { 'S' },
                p.cpu,
                p.res as f32 / 159_284.0,
                p.time_cs / 6000,
                (p.time_cs / 100) % 60,
                p.time_cs % 100,
                p.cmd
            );
        }
    }
    s.into_bytes()
}

/// Bitmap-update-like PDUs: 64×64 32-bpp tiles of flat areas, gradients and
/// text-like strokes, with a little noise (anti-aliasing, photos).
fn desktop(size: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(4);
    let mut v = Vec::with_capacity(size + 20_000);
    while v.len() < size {
        // A small PDU header: type, length, destination rectangle.
        v.extend_from_slice(&[0x04, 0x00]);
        v.extend_from_slice(&(64u16 * 64 * 4 + 8).to_le_bytes());
        for c in [rng.gen_range(0..1920u16), rng.gen_range(0..1080u16), 64, 64] {
            v.extend_from_slice(&c.to_le_bytes());
        }
        let kind = rng.gen_range(0..10);
        let base = [rng.r#gen::<u8>(), rng.r#gen::<u8>(), rng.r#gen::<u8>()];
        for y in 0..64u32 {
            for x in 0..64u32 {
                let mut px = match kind {
                    0..=4 => base,
                    5..=7 => [
                        base[0].wrapping_add((x * 2) as u8),
                        base[1].wrapping_add((y * 2) as u8),
                        base[2],
                    ],
                    _ => {
                        if (x / 2 + y / 3) % 5 == 0 && (y % 12) < 9 {
                            [0, 0, 0]
                        } else {
                            [255, 255, 255]
                        }
                    }
                };
                if rng.gen_ratio(1, 20) {
                    px[rng.gen_range(0..3)] ^= rng.r#gen::<u8>() & 0x0f;
                }
                v.extend_from_slice(&[px[2], px[1], px[0], 0xff]);
            }
        }
    }
    v
}
