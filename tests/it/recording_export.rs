//! Exports from a real archive: asciicast v2 accepted by `asciinema play`,
//! and the keystroke log.

use std::process::{Command, Stdio};

use bytes::Bytes;
use chrono::Utc;
use sekisho::recording::{
    ArchiveKey, ArchiveWriter, Event, Protocol, Reader, SessionMeta, Stream, TerminalSize,
    WriterOptions,
};
use sekisho::replay::terminal::asciicast::write_asciicast;
use sekisho::replay::terminal::keystrokes::write_keystroke_log;

fn session(dir: &std::path::Path) -> std::path::PathBuf {
    let meta = SessionMeta {
        session_id: "exp".into(),
        user: "suzuki".into(),
        vendor: "acme".into(),
        system: "fa".into(),
        target: "fa-app01".into(),
        protocol: Protocol::Ssh,
        client_addr: "127.0.0.1:40000".into(),
        decision: "allow".into(),
        hop_parent: None,
        started_at: Utc::now(),
        terminal: Some(TerminalSize {
            cols: 80,
            rows: 24,
            term: Some("xterm-256color".into()),
        }),
        desktop: None,
        rdp: None,
    };
    let path = dir.join("exp.skrec");
    let mut w = ArchiveWriter::create(&path, &meta, WriterOptions::default()).unwrap();
    let out = |s: &str| Event::Output {
        channel: 0,
        stream: Stream::Stdout,
        data: Bytes::copy_from_slice(s.as_bytes()),
    };
    let inp = |s: &[u8]| Event::Input {
        channel: 0,
        data: Bytes::copy_from_slice(s),
    };
    let script: Vec<(u64, Event)> = vec![
        (0, out("maint@fa-app01:~$ ")),
        (400_000, inp(b"d")),
        (410_000, out("d")),
        (600_000, inp(b"f\x7f")),
        (610_000, out("f\x08 \x08")),
        (800_000, inp(b"f -h\r")),
        (
            810_000,
            out(
                "f -h\r\nFilesystem  Size  Used Avail Use% Mounted on\r\n/dev/sda1    50G   21G   27G  44% /\r\n",
            ),
        ),
        (900_000, out("maint@fa-app01:~$ ")),
        (
            1_200_000,
            Event::Resize {
                channel: 0,
                cols: 132,
                rows: 43,
            },
        ),
        (1_500_000, inp(b"exit\r")),
        (1_510_000, out("logout\r\n")),
    ];
    for (t, e) in &script {
        w.append(*t, e).unwrap();
    }
    w.seal(&ArchiveKey::generate()).unwrap();
    path
}

#[test]
fn asciicast_export_plays_in_asciinema() {
    let dir = tempfile::tempdir().unwrap();
    let path = session(dir.path());
    let mut r = Reader::open(&path).unwrap();
    let meta = r.meta().clone();
    let cast = dir.path().join("exp.cast");
    let file = std::fs::File::create(&cast).unwrap();
    write_asciicast(&meta, r.events(), None, std::io::BufWriter::new(file)).unwrap();
    let text = std::fs::read_to_string(&cast).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["width"], 80);
    assert_eq!(lines.iter().filter(|l| l[1] == "i").count(), 4);
    assert!(lines.iter().any(|l| l[1] == "r" && l[2] == "132x43"));
    if Command::new("asciinema").arg("--version").output().is_err() {
        eprintln!("skipped: asciinema is not installed (apt install asciinema)");
        return;
    }
    let played = Command::new("asciinema")
        .args(["play", "-s", "20"])
        .arg(&cast)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        played.status.success(),
        "{}",
        String::from_utf8_lossy(&played.stderr)
    );
    assert!(String::from_utf8_lossy(&played.stdout).contains("Filesystem"));
}

#[test]
fn keystroke_log_from_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let path = session(dir.path());
    let mut r = Reader::open(&path).unwrap();
    let meta = r.meta().clone();
    let mut buf = Vec::new();
    write_keystroke_log(&meta, r.events(), &mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let typed: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.rsplit("  ").next().unwrap())
        .collect();
    assert_eq!(typed, ["df -h", "exit"], "{text}");
    assert!(
        text.lines().nth(1).unwrap().contains("+0.800s  ch0"),
        "{text}"
    );
}
