//! Desktop (RDP) export speed: `sekisho export ID --format mp4` of whole
//! sessions and `--format png --at S` in a 1-hour one, by this build's
//! binary and, side by side in the same run, by a baseline binary
//! (`SEKISHO_BENCH_BASELINE`, e.g. a release build of main before a
//! change).
//!
//! The archives are synthetic (`support/desktop_session.rs`), written as
//! the gateway records a desktop session (one zstd stream with a long
//! window, a chunk at least every second); the redraws also as the bench
//! wrote them before session 7 (a zstd frame per 1 MiB chunk): an
//! office-like session on 1024x768 (the size of the RDP benchmark's xrdp
//! desktop) and on 1920x1080, continuous full-screen redraws of
//! photo-like pictures (40 a second, planar tiles as a target sends them),
//! and a 1-hour office-like session on 1920x1080 for the PNG seeks.
//!
//! Each export is a real `sekisho export` process (with its ffmpeg); the
//! table gives wall time, × real time (session length over wall time) and
//! CPU time (user + system of the export and its ffmpeg, from
//! `getrusage(RUSAGE_CHILDREN)`), medians of `SEKISHO_BENCH_REPEAT` [3]
//! runs with the two binaries taking turns. On a shared machine CPU time
//! is the steadier measure; the load is printed. The two binaries' outputs
//! are compared: the same frames make byte-identical MP4s (x264 is
//! deterministic) and PNGs; MP4s that differ (other encoder input, e.g.
//! unchanged instants left out) are compared by length and by PSNR of one
//! against the other at 10 frames a second.
//!
//! Knobs: `SEKISHO_BENCH_OFFICE_MINUTES` [5], `SEKISHO_BENCH_REDRAW_SECS`
//! [20], `SEKISHO_BENCH_HOUR_MINUTES` [60]; `SEKISHO_BENCH_KEEP` keeps the
//! archives (for `perf record` of an export afterwards).

#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/desktop_session.rs"]
mod desktop_session;
#[path = "support/measure.rs"]
mod measure;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use desktop_session::{ArchiveLayout, S, write_office_session, write_redraw_session};
use measure::{env_num, loadavg, median};

/// User + system time of the waited-for children so far (the export and,
/// through it, ffmpeg).
fn children_cpu() -> Duration {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, u.as_mut_ptr());
        u.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// One export by `bin`: wall and CPU seconds, and the file it wrote.
fn run(bin: &Path, archive: &Path, args: &[&str], out: &Path) -> (f64, f64, Vec<u8>) {
    let _ = std::fs::remove_file(out);
    let (t0, c0) = (Instant::now(), children_cpu());
    let o = Command::new(bin)
        .arg("export")
        .arg(archive)
        .args(args)
        .arg("-o")
        .arg(out)
        .env_remove("SEKISHO_CONFIG")
        .output()
        .expect("run sekisho export");
    let (wall, cpu) = (t0.elapsed(), children_cpu() - c0);
    assert!(
        o.status.success(),
        "{} export {}: {}",
        bin.display(),
        archive.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let bytes = std::fs::read(out).expect("export output");
    (wall.as_secs_f64(), cpu.as_secs_f64(), bytes)
}

/// Two MP4s of the same session that are not byte-identical (an encoder
/// given other frames, or frames at other times): their lengths (ffprobe)
/// and the PSNR of one against the other, both sampled at 10 frames a
/// second (ffmpeg's `fps` and `psnr` filters).
fn compare_videos(a: &Path, b: &Path) -> String {
    let duration = |p: &Path| {
        let o = Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format=duration", "-of"])
            .arg("default=nw=1:nk=1")
            .arg(p)
            .output()
            .expect("ffprobe");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(a)
        .arg("-i")
        .arg(b)
        .args([
            "-lavfi",
            "[0:v]fps=10[a];[1:v]fps=10[b];[a][b]psnr",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg psnr");
    let err = String::from_utf8_lossy(&o.stderr);
    let psnr = err
        .split("average:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("?");
    let (da, db) = (duration(a), duration(b));
    let length = if da == db {
        format!("same length ({da} s)")
    } else {
        format!("length {da} s vs {db} s")
    };
    format!("{length}, PSNR {psnr} dB")
}

struct Case {
    archive: String,
    archive_path: PathBuf,
    session_s: f64,
    format: &'static str,
    args: Vec<String>,
    /// The length of session time the export covers (× real time).
    covered_s: f64,
}

impl Case {
    /// The whole session `end` µs long at `path` as MP4.
    fn mp4(name: &str, path: PathBuf, end: u64) -> Case {
        Case {
            archive: name.into(),
            archive_path: path,
            session_s: end as f64 / 1e6,
            format: "mp4",
            args: vec!["--format".into(), "mp4".into()],
            covered_s: end as f64 / 1e6,
        }
    }
}

fn main() {
    let repeat = env_num("SEKISHO_BENCH_REPEAT", 3).max(1);
    let office_min = env_num("SEKISHO_BENCH_OFFICE_MINUTES", 5) as u64;
    let redraw_s = env_num("SEKISHO_BENCH_REDRAW_SECS", 20) as u64;
    let hour_min = env_num("SEKISHO_BENCH_HOUR_MINUTES", 60) as u64;
    let current = PathBuf::from(env!("CARGO_BIN_EXE_sekisho"));
    let baseline = std::env::var_os("SEKISHO_BENCH_BASELINE").map(PathBuf::from);
    let dir = tempfile::tempdir().expect("tempdir");
    let load_before = loadavg();

    let made = Instant::now();
    let mut cases = Vec::new();
    for (name, size) in [
        ("office-like 1024x768", (1024, 768)),
        ("office-like 1920x1080", (1920, 1080)),
    ] {
        let path = dir.path().join(format!("office-{}.skrec", size.0));
        let end = write_office_session(&path, office_min, size, ArchiveLayout::Recorded);
        cases.push(Case::mp4(name, path, end));
    }
    for (name, file, layout) in [
        (
            "full-screen redraws 40/s, 1024x768",
            "redraw.skrec",
            ArchiveLayout::Recorded,
        ),
        (
            "the same, a zstd frame per 1 MiB chunk (as before session 7)",
            "redraw-frames.skrec",
            ArchiveLayout::FramePerChunk,
        ),
    ] {
        let path = dir.path().join(file);
        let end = write_redraw_session(&path, redraw_s, (1024, 768), layout);
        cases.push(Case::mp4(name, path, end));
    }
    let path = dir.path().join("hour.skrec");
    let end = write_office_session(&path, hour_min, (1920, 1080), ArchiveLayout::Recorded);
    for at in [end / 2 + 17 * S, end - S] {
        let secs = at / S;
        cases.push(Case {
            archive: "office-like 1920x1080".into(),
            archive_path: path.clone(),
            session_s: end as f64 / 1e6,
            format: "png",
            args: vec![
                "--format".into(),
                "png".into(),
                "--at".into(),
                secs.to_string(),
            ],
            covered_s: 0.0,
        });
    }
    eprintln!("archives written in {:.1} s", made.elapsed().as_secs_f64());

    let time = |s: f64| {
        let s = s as u64;
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    };
    println!(
        "Desktop export, median of {repeat} (load before: {load_before}); wall s / × real time / CPU s (export + ffmpeg)\n"
    );
    println!(
        "| archive | size | session | export | baseline wall | baseline × | baseline CPU | this wall | this × | this CPU | wall ratio | CPU ratio | same output |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for case in &cases {
        let size = std::fs::metadata(&case.archive_path)
            .expect("archive")
            .len();
        let out = dir.path().join(format!("out.{}", case.format));
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let (mut bw, mut bc, mut cw, mut cc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut same: Option<String> = None;
        for _ in 0..repeat {
            let mine = run(&current, &case.archive_path, &args, &out);
            cw.push(mine.0);
            cc.push(mine.1);
            if let Some(b) = &baseline {
                let mine_path = dir.path().join(format!("mine.{}", case.format));
                std::fs::write(&mine_path, &mine.2).expect("keep output");
                let theirs = run(b, &case.archive_path, &args, &out);
                bw.push(theirs.0);
                bc.push(theirs.1);
                if same.is_none() {
                    same = Some(if theirs.2 == mine.2 {
                        "yes".into()
                    } else if case.format == "mp4" {
                        compare_videos(&mine_path, &out)
                    } else {
                        "NO".into()
                    });
                }
            }
        }
        let what = match case.format {
            "png" => format!(
                "png --at {}",
                time(args.last().and_then(|a| a.parse().ok()).unwrap_or(0.0))
            ),
            f => f.to_string(),
        };
        let x = |wall: f64| {
            if case.covered_s > 0.0 {
                let x = case.covered_s / wall;
                if x < 10.0 {
                    format!("{x:.1}×")
                } else {
                    format!("{x:.0}×")
                }
            } else {
                "–".into()
            }
        };
        let (cw, cc) = (median(cw), median(cc));
        let (bcol, ratio) = if bw.is_empty() {
            ("| – | – | –".to_string(), "| – | –".to_string())
        } else {
            let (bw, bc) = (median(bw), median(bc));
            (
                format!("| {bw:.2} | {} | {bc:.2}", x(bw)),
                format!("| {:.2} | {:.2}", cw / bw, cc / bc),
            )
        };
        println!(
            "| {} | {:.1} MB | {} | {what} {bcol} | {cw:.2} | {} | {cc:.2} {ratio} | {} |",
            case.archive,
            size as f64 / 1e6,
            time(case.session_s),
            x(cw),
            same.as_deref().unwrap_or("–")
        );
    }
    println!("\nload after: {}", loadavg());
    if std::env::var_os("SEKISHO_BENCH_KEEP").is_some() {
        // For profiling an export by hand afterwards.
        eprintln!("archives kept in {}", dir.keep().display());
    }
}
