//! `sekisho verify`: exit codes, text and `--json`, lookup by session id.

use std::path::Path;

use assert_cmd::Command;
use bytes::Bytes;
use chrono::Utc;
use sekisho::recording::{
    ArchiveKey, ArchiveWriter, Event, Protocol, Recorder, SessionMeta, Stream, WriterOptions,
    generate_signing_key,
};

fn meta(id: &str) -> SessionMeta {
    SessionMeta {
        session_id: id.into(),
        user: "tanaka".into(),
        vendor: "acme".into(),
        system: "fa".into(),
        target: "fa-db01".into(),
        protocol: Protocol::Ssh,
        client_addr: "127.0.0.1:50022".into(),
        decision: "allow".into(),
        hop_parent: None,
        started_at: Utc::now(),
        terminal: None,
        desktop: None,
        rdp: None,
    }
}

/// Two chunks of output; sealed with `key` or left incomplete.
fn archive(path: &Path, key: Option<&ArchiveKey>) {
    let mut w = ArchiveWriter::create(path, &meta("s"), WriterOptions::default()).unwrap();
    for i in 0..2u64 {
        w.append(
            i * 1_000_000,
            &Event::Output {
                channel: 0,
                stream: Stream::Stdout,
                data: Bytes::from(format!("hello {i}\r\n")),
            },
        )
        .unwrap();
        w.flush_chunk().unwrap();
    }
    match key {
        Some(k) => {
            w.seal(k).unwrap();
        }
        None => {
            w.abandon();
        }
    }
}

fn verify(args: &[&str]) -> (i32, String) {
    let out = Command::cargo_bin("sekisho")
        .unwrap()
        .env_remove("SEKISHO_CONFIG")
        .arg("verify")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn exit_codes_and_json_for_each_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key_path = d.join("archive_signing_ed25519.pem");
    let ours = generate_signing_key(&key_path).unwrap();
    let public = d.join("archive_signing_ed25519.pub");
    let public = public.to_str().unwrap();

    let intact = d.join("intact.skrec");
    archive(&intact, Some(&ours));
    let incomplete = d.join("incomplete.skrec");
    archive(&incomplete, None);
    let tampered = d.join("tampered.skrec");
    archive(&tampered, Some(&ours));
    let mut bytes = std::fs::read(&tampered).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&tampered, bytes).unwrap();
    let foreign = d.join("foreign.skrec");
    archive(&foreign, Some(&ArchiveKey::generate()));

    let cases = [
        (&intact, 0, "intact"),
        (&incomplete, 3, "incomplete"),
        (&tampered, 4, "tampered"),
        (&foreign, 5, "unknown_signature"),
    ];
    for (path, code, verdict) in cases {
        let p = path.to_str().unwrap();
        let (c, text) = verify(&["--public-key", public, p]);
        assert_eq!(c, code, "{p}: {text}");
        let (c, json) = verify(&["--json", "--public-key", public, p]);
        assert_eq!(c, code);
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(v["verdict"], verdict, "{json}");
        assert_eq!(v["path"], p);
    }
    let (_, text) = verify(&["--public-key", public, incomplete.to_str().unwrap()]);
    assert!(text.contains("incomplete: sound up to 1.000000s"), "{text}");
    let (_, json) = verify(&["--json", "--public-key", public, intact.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["key_id"], ours.id());
    assert_eq!(v["events"], 2);

    // A missing file without a config is a usage error.
    let (c, _) = verify(&["--public-key", public, "/nonexistent/x.skrec"]);
    assert_eq!(c, 2);
}

#[test]
fn session_id_is_found_under_the_configured_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("keys")).unwrap();
    let cfg = d.join("sekisho.toml");
    std::fs::write(
        &cfg,
        "[paths]\nrecordings = \"recordings\"\nkeys = \"keys\"\n",
    )
    .unwrap();
    let key = generate_signing_key(&d.join("keys/archive_signing_ed25519.pem")).unwrap();
    let rec = Recorder::open(
        &d.join("recordings"),
        &meta("0193-abc"),
        key,
        WriterOptions::default(),
    )
    .unwrap();
    rec.record(Event::Mark {
        label: "start".into(),
        detail: String::new(),
    })
    .unwrap();
    rec.seal().unwrap();
    let out = Command::cargo_bin("sekisho")
        .unwrap()
        .args(["-c", cfg.to_str().unwrap(), "verify", "--json", "0193-abc"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["verdict"], "intact");
    assert_eq!(v["session_id"], "0193-abc");
    let out = Command::cargo_bin("sekisho")
        .unwrap()
        .args(["-c", cfg.to_str().unwrap(), "verify", "no-such-session"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn verify_away_from_the_bastion_points_to_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = generate_signing_key(&d.join("archive_signing_ed25519.pem")).unwrap();
    let file = d.join("copy.skrec");
    archive(&file, Some(&key));
    let out = Command::cargo_bin("sekisho")
        .unwrap()
        .env_remove("SEKISHO_CONFIG")
        .args(["-c", d.join("no-sekisho.toml").to_str().unwrap()])
        .args(["verify", file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--public-key"), "{err}");
    assert!(!err.contains("sekisho init"), "{err}");
}

#[test]
fn export_and_verify_end_quietly_when_their_reader_goes_away() {
    use std::os::unix::process::ExitStatusExt as _;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = generate_signing_key(&d.join("archive_signing_ed25519.pem")).unwrap();
    let public = d.join("archive_signing_ed25519.pub");
    let file = d.join("s.skrec");
    archive(&file, Some(&key));
    let file = file.to_str().unwrap();
    let public = public.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["export", file, "--format", "asciicast"],
        &["export", file, "--format", "keystrokes"],
        &["verify", file, "--public-key", public],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("sekisho"))
            .env_remove("SEKISHO_CONFIG")
            .args(*args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
        assert!(
            out.status.signal() == Some(libc::SIGPIPE) || out.status.code() == Some(141),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}
