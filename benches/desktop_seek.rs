//! Seeking in the browser's desktop (RDP) player: what the console does
//! for one seek, server-side, in a 1-hour office-like session.
//!
//! The archive is synthetic: the office-like session of
//! `support/desktop_session.rs` on a 1920x1080 desktop. Its bitmaps are
//! uncompressed (xrdp compresses its own, so real decoding costs somewhat
//! more per byte; the replay and PNG encoding this measures dominate
//! either way).
//!
//! `cargo bench --bench desktop_seek` prints the time to build the seek
//! index (once per archive) and a markdown table: for seeks to several
//! positions, the desktop at that moment (the keyframe looked up in the
//! index, the replay from it), and the whole answer of `GET
//! /sessions/{id}/desktop/frames` a seek makes (that frame, whole, as PNG)
//! — what the player waits for before it shows the frame — and, for
//! comparison, the desktop at that
//! moment without the index (reading the archive from its start for the
//! desktop size). Median of
//! `SEKISHO_BENCH_REPEAT` [5] runs each. `SEKISHO_BENCH_MINUTES` [60] sets
//! the session length.

// A panic in a bench is a failed run; getrusage reads this thread's CPU time.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sekisho::recording::Reader;
use sekisho::replay::desktop::frames::{FrameStream, Pace, StreamOptions};
use sekisho::replay::desktop::seek::SeekIndex;
use sekisho::web::desktop::{REPLAY_FPS, frames_between};

#[path = "support/desktop_session.rs"]
mod desktop_session;

use desktop_session::{ArchiveLayout, S, write_office_session};

const W: u16 = 1920;
const H: u16 = 1080;

/// CPU time of this thread: what a step costs on a core of its own (the
/// machine the numbers come from may be busy with other work).
fn thread_cpu() -> Duration {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, u.as_mut_ptr());
        u.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let minutes: u64 = std::env::var("SEKISHO_BENCH_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let repeat: usize = std::env::var("SEKISHO_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("office.skrec");
    let made = Instant::now();
    let end = write_office_session(&path, minutes, (W, H), ArchiveLayout::Recorded);
    let size = std::fs::metadata(&path).expect("archive").len();
    let mut reader = Reader::open(&path).expect("open");
    let keyframes = reader.keyframes().expect("keyframes").len();
    eprintln!(
        "{minutes}-min office-like session written in {:.1} s: {:.1} MB, {keyframes} keyframes",
        made.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );
    let (t0, c0) = (Instant::now(), thread_cpu());
    let index = SeekIndex::build(&mut Reader::open(&path).expect("open")).expect("index");
    let (index_time, index_cpu) = (t0.elapsed(), thread_cpu() - c0);
    println!(
        "Seek in a {minutes}-min office-like RDP session (1920x1080, archive {:.0} MB, {keyframes} keyframes), median of {repeat}.\n\
         The seek index (keyframes and desktop sizes, one pass over the archive when the player first opens it, then kept): {} ms ({} ms CPU).\n",
        size as f64 / 1e6,
        ms(index_time),
        ms(index_cpu)
    );
    println!(
        "| seek to | desktop at that moment (ms) | the seek's answer: that frame as PNG (ms) | the answer's CPU time (ms) | answer size (KB) | desktop at that moment without the index (ms) |"
    );
    println!("|---|---|---|---|---|---|");
    let positions = [
        5 * S,
        end / 8,
        end / 4,
        end / 2 - S,
        end * 3 / 4 + 17 * S,
        end.saturating_sub(S),
    ];
    for at in positions {
        let secs = at / S;
        let label = format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        let (mut first, mut answer, mut unindexed) = (Vec::new(), Vec::new(), Vec::new());
        let mut answer_cpu = Vec::new();
        let mut bytes = 0;
        let options = StreamOptions {
            pace: Pace::Sampled { fps: REPLAY_FPS },
            keyframe_interval_us: 0,
            from_us: at,
            to_us: at,
        };
        for _ in 0..repeat {
            let t0 = Instant::now();
            let mut r = Reader::open(&path).expect("open");
            let mut stream = FrameStream::with_index(&mut r, options, &index).expect("stream");
            let frame = stream.next_frame().expect("frame").expect("a first frame");
            assert!(frame.full);
            first.push(t0.elapsed());

            let (t0, c0) = (Instant::now(), thread_cpu());
            let mut r = Reader::open(&path).expect("open");
            let body = frames_between(&mut r, &index, at, at).expect("frames");
            answer.push(t0.elapsed());
            answer_cpu.push(thread_cpu() - c0);
            bytes = body.len();

            let t0 = Instant::now();
            let mut r = Reader::open(&path).expect("open");
            let mut stream = FrameStream::new(&mut r, options).expect("stream");
            let frame = stream.next_frame().expect("frame").expect("a first frame");
            assert!(frame.full);
            unindexed.push(t0.elapsed());
        }
        println!(
            "| {label} | {} | {} | {} | {:.0} | {} |",
            ms(median(first)),
            ms(median(answer)),
            ms(median(answer_cpu)),
            bytes as f64 / 1024.0,
            ms(median(unindexed)),
        );
    }
}
