//! Integration tests of the recording archive: round trip, seek, tamper
//! evidence (every byte), truncation, fail-closed on real I/O errors, and
//! crash safety with a real SIGKILL.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::process::wait_until;

use bytes::Bytes;
use chrono::{TimeZone as _, Utc};
use sekisho::recording::{
    ArchiveKey, ArchiveStatus, ArchiveWriter, Event, Protocol, Reader, Recorder, RecordingFailed,
    Region, SessionMeta, Stream, TerminalSize, TimedEvent, Verdict, WriterOptions, format,
    verify_file,
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
        decision: "allow: acme/fa contract 2026-04-01..2027-03-31".into(),
        hop_parent: None,
        started_at: Utc.with_ymd_and_hms(2026, 11, 22, 1, 2, 3).unwrap(),
        terminal: Some(TerminalSize {
            cols: 80,
            rows: 24,
            term: Some("xterm-256color".into()),
        }),
        desktop: None,
        rdp: None,
    }
}

fn key(seed: u8) -> ArchiveKey {
    ArchiveKey::new(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
}

fn output(s: &str) -> Event {
    Event::Output {
        channel: 0,
        stream: Stream::Stdout,
        data: Bytes::copy_from_slice(s.as_bytes()),
    }
}

/// Events for chunk `c`: times c*1s + i*10ms; chunk 2 holds a keyframe.
fn chunk_events(c: u64) -> Vec<TimedEvent> {
    let mut v = Vec::new();
    for i in 0..3u64 {
        let t_us = c * 1_000_000 + i * 10_000;
        let event = match i {
            0 => Event::Input {
                channel: 0,
                data: Bytes::from(format!("cmd{c}\r")),
            },
            1 if c == 2 => Event::Keyframe,
            _ => output(&format!("out {c}.{i}\r\n")),
        };
        v.push(TimedEvent { t_us, event });
    }
    v
}

/// Writes `chunks` chunks (one flush each) and seals with `key` unless None.
fn write_archive(dir: &Path, chunks: u64, key: Option<&ArchiveKey>) -> (PathBuf, Vec<TimedEvent>) {
    let path = dir.join("s.skrec");
    let mut w = ArchiveWriter::create(&path, &meta("s"), WriterOptions::default()).unwrap();
    let mut all = Vec::new();
    for c in 0..chunks {
        for e in chunk_events(c) {
            w.append(e.t_us, &e.event).unwrap();
            all.push(e);
        }
        w.flush_chunk().unwrap();
    }
    match key {
        Some(k) => {
            let s = w.seal(k).unwrap();
            assert_eq!(s.status, ArchiveStatus::Sealed);
            assert_eq!(s.size, std::fs::metadata(&path).unwrap().len());
        }
        None => {
            w.abandon();
        }
    }
    (path, all)
}

fn read_all(path: &Path) -> (Vec<TimedEvent>, bool) {
    let mut r = Reader::open(path).unwrap();
    let mut it = r.events();
    let events: Vec<TimedEvent> = it.by_ref().map(|e| e.unwrap()).collect();
    let truncated = it.truncated();
    (events, truncated)
}

/// (start offset, end offset, t_last) of each chunk in a sealed file.
fn chunk_bounds(path: &Path) -> Vec<(u64, u64, u64)> {
    let mut r = Reader::open(path).unwrap();
    let index = r.index().unwrap().to_vec();
    let trailer_at = {
        let bytes = std::fs::read(path).unwrap();
        let n = bytes.len();
        u64::from_le_bytes(bytes[n - 16..n - 8].try_into().unwrap())
    };
    index
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let end = index.get(i + 1).map_or(trailer_at, |n| n.offset);
            (e.offset, end, e.t_last_us)
        })
        .collect()
}

#[test]
fn round_trip_every_event_kind_and_intact() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let path = dir.path().join("rt.skrec");
    let events = vec![
        Event::Pty {
            channel: 0,
            term: "xterm".into(),
            cols: 80,
            rows: 24,
        },
        Event::ChannelOpened {
            channel: 0,
            kind: "session".into(),
            detail: "shell".into(),
        },
        Event::Input {
            channel: 0,
            data: Bytes::from_static(b"ls\r"),
        },
        Event::Output {
            channel: 0,
            stream: Stream::Stderr,
            data: Bytes::from_static(b"oops\r\n"),
        },
        Event::Resize {
            channel: 0,
            cols: 120,
            rows: 40,
        },
        Event::Exec {
            channel: 1,
            command: Bytes::from_static(b"uname -a"),
        },
        Event::ChannelRefused {
            channel: 2,
            kind: "direct-tcpip".into(),
            detail: "forwarding refused".into(),
        },
        Event::ExitStatus {
            channel: 1,
            code: 0,
        },
        Event::ExitSignal {
            channel: 0,
            signal: "TERM".into(),
            core_dumped: false,
            message: String::new(),
        },
        Event::ChannelClosed { channel: 0 },
        Event::DesktopResize {
            width: 1024,
            height: 768,
        },
        Event::Keyframe,
        Event::Mark {
            label: "killed by admin".into(),
            detail: "suzuki".into(),
        },
    ];
    let mut w = ArchiveWriter::create(&path, &meta("rt"), WriterOptions::default()).unwrap();
    for (i, e) in events.iter().enumerate() {
        w.append(i as u64 * 500_000, e).unwrap();
        if i % 4 == 3 {
            w.flush_chunk().unwrap();
        }
    }
    let summary = w.seal(&k).unwrap();
    assert_eq!(summary.events, events.len() as u64);
    assert_eq!(summary.chunks, 4);
    assert_eq!(summary.duration, Duration::from_millis(500 * 12));
    assert_eq!(summary.key_id.as_deref(), Some(k.id()));

    let mut r = Reader::open(&path).unwrap();
    assert_eq!(r.meta(), &meta("rt"));
    assert!(r.is_sealed().unwrap());
    assert_eq!(r.keyframes().unwrap(), vec![11 * 500_000]);
    let got: Vec<TimedEvent> = r.events().map(|e| e.unwrap()).collect();
    let want: Vec<TimedEvent> = events
        .iter()
        .enumerate()
        .map(|(i, e)| TimedEvent {
            t_us: i as u64 * 500_000,
            event: e.clone(),
        })
        .collect();
    assert_eq!(got, want);

    let report = verify_file(&path, &[k.public()]).unwrap();
    assert_eq!(report.session_id.as_deref(), Some("rt"));
    match report.verdict {
        Verdict::Intact {
            final_digest,
            events: n,
            ..
        } => {
            assert_eq!(final_digest, hex::encode(summary.final_digest));
            assert_eq!(n, 13);
        }
        other => panic!("expected intact, got {other:?}"),
    }
}

#[test]
fn oversized_output_is_split_but_kept_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.skrec");
    let big: Vec<u8> = (0..(3 * sekisho::recording::MAX_EVENT_DATA + 5))
        .map(|i| (i % 251) as u8)
        .collect();
    let mut w = ArchiveWriter::create(&path, &meta("big"), WriterOptions::default()).unwrap();
    w.append(
        7,
        &Event::Output {
            channel: 3,
            stream: Stream::Stdout,
            data: Bytes::from(big.clone()),
        },
    )
    .unwrap();
    w.seal(&key(1)).unwrap();
    let (events, _) = read_all(&path);
    assert_eq!(events.len(), 4);
    let mut joined = Vec::new();
    for e in events {
        assert_eq!(e.t_us, 7);
        match e.event {
            Event::Output {
                channel: 3, data, ..
            } => joined.extend_from_slice(&data),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(joined, big);
    assert!(matches!(
        verify_file(&path, &[key(1).public()]).unwrap().verdict,
        Verdict::Intact { .. }
    ));
}

#[test]
fn recorder_thread_round_trip_and_sealed_handles_fail() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(2);
    let opts = WriterOptions {
        chunk_bytes: 4096,
        ..WriterOptions::default()
    };
    let rec = Recorder::open(dir.path(), &meta("thr-1"), k.clone(), opts).unwrap();
    assert!(rec.path().ends_with("2026/11/22/thr-1.skrec"));
    let other = rec.clone();
    let t = std::thread::spawn(move || {
        for i in 0..500 {
            other
                .record(output(&format!("line {i} {}\r\n", "x".repeat(40))))
                .unwrap();
        }
        other
    });
    for i in 0..100 {
        rec.record(Event::Input {
            channel: 0,
            data: Bytes::from(format!("k{i}")),
        })
        .unwrap();
    }
    let other = t.join().unwrap();
    rec.flush().unwrap();
    assert!(rec.has_failed().is_none());
    let path = rec.path().to_owned();
    let summary = rec.seal().unwrap();
    assert_eq!(summary.events, 600);
    assert!(
        summary.chunks > 3,
        "chunk_bytes=4096 must cut several chunks"
    );
    // A clone still held by a relay learns the recording has ended.
    assert_eq!(other.record(output("late")), Err(RecordingFailed::Sealed));

    let (events, truncated) = read_all(&path);
    assert!(!truncated);
    assert_eq!(events.len(), 600);
    assert!(events.windows(2).all(|w| w[0].t_us <= w[1].t_us));
    let outputs: Vec<&Event> = events
        .iter()
        .map(|e| &e.event)
        .filter(|e| matches!(e, Event::Output { .. }))
        .collect();
    assert_eq!(
        outputs.first(),
        Some(&&output(&format!("line 0 {}\r\n", "x".repeat(40))))
    );
    assert!(matches!(
        verify_file(&path, &[k.public()]).unwrap().verdict,
        Verdict::Intact { .. }
    ));
}

#[test]
fn recorder_cuts_a_chunk_every_second_without_more_events() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriterOptions {
        flush_interval: Duration::from_millis(100),
        ..WriterOptions::default()
    };
    let rec = Recorder::open(dir.path(), &meta("tick"), key(1), opts).unwrap();
    rec.record(output("hello\r\n")).unwrap();
    // No flush call, no seal: the timer alone must write the chunk (every
    // 100 ms; the writer thread may wait longer for a core on a loaded
    // machine, so look until it has, rather than once after a fixed time).
    let mut read = (Vec::new(), false);
    let written = wait_until(Duration::from_secs(10), || {
        read = read_all(rec.path());
        !read.0.is_empty()
    });
    let (events, truncated) = read;
    assert!(written, "no chunk written without a flush call");
    assert!(truncated);
    assert_eq!(events.len(), 1);
    drop(rec);
}

/// Forty recordings at once, each fed by its own thread through a tiny
/// queue so that they interleave and wait for room:
/// every archive holds exactly its own events in the order they were
/// recorded, and a recording dropped among them still ends incomplete.
#[test]
fn many_recordings_at_once_each_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(4);
    let opts = WriterOptions {
        queue_events: 2,
        chunk_bytes: 4096,
        ..WriterOptions::default()
    };
    let feeders: Vec<_> = (0..40u32)
        .map(|r| {
            let rec = Recorder::open(
                dir.path(),
                &meta(&format!("pool-{r}")),
                k.clone(),
                opts.clone(),
            )
            .unwrap();
            std::thread::spawn(move || {
                for i in 0..300u32 {
                    let mut data = r.to_be_bytes().to_vec();
                    data.extend_from_slice(&i.to_be_bytes());
                    data.extend_from_slice("x".repeat(100).as_bytes());
                    rec.record(Event::Output {
                        channel: 0,
                        stream: Stream::Stdout,
                        data: Bytes::from(data),
                    })
                    .unwrap();
                }
                let path = rec.path().to_owned();
                if r == 7 {
                    drop(rec);
                    (path, None)
                } else {
                    (path, Some(rec.seal().unwrap()))
                }
            })
        })
        .collect();
    for (r, f) in feeders.into_iter().enumerate() {
        let (path, sealed) = f.join().unwrap();
        if let Some(summary) = sealed {
            assert_eq!(summary.events, 300, "recording {r}");
            assert!(matches!(
                verify_file(&path, &[k.public()]).unwrap().verdict,
                Verdict::Intact { .. }
            ));
        } else {
            // Abandoned: the writer flushes it asynchronously.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while read_all(&path).0.len() < 300 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "dropped {r} never flushed"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(matches!(
                verify_file(&path, &[k.public()]).unwrap().verdict,
                Verdict::Incomplete { .. }
            ));
        }
        let (events, _) = read_all(&path);
        let seen: Vec<(u32, u32)> = events
            .iter()
            .filter_map(|e| match &e.event {
                Event::Output { data, .. } => Some((
                    u32::from_be_bytes(data[..4].try_into().unwrap()),
                    u32::from_be_bytes(data[4..8].try_into().unwrap()),
                )),
                _ => None,
            })
            .collect();
        let want: Vec<(u32, u32)> = (0..300).map(|i| (r as u32, i)).collect();
        assert_eq!(seen, want, "recording {r}");
    }
}

#[test]
fn dropped_recorder_leaves_an_incomplete_archive() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(dir.path(), &meta("drop"), key(1), WriterOptions::default()).unwrap();
    let path = rec.path().to_owned();
    rec.record(output("a")).unwrap();
    drop(rec);
    // The writer thread finishes asynchronously (on a loaded machine, when
    // it gets a core).
    let flushed = wait_until(Duration::from_secs(10), || {
        let v = verify_file(&path, &[key(1).public()]).unwrap().verdict;
        matches!(v, Verdict::Incomplete { chunks: 1, .. })
    });
    assert!(flushed, "drop must flush the buffered chunk");
}

#[test]
fn seek_through_index_sealed_and_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let (path, all) = write_archive(dir.path(), 6, Some(&key(1)));
    for sealed in [true, false] {
        if !sealed {
            // Cut the trailer off: seeking must work by scanning chunks.
            let bounds = chunk_bounds(&path);
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(bounds.last().unwrap().1).unwrap();
        }
        let mut r = Reader::open(&path).unwrap();
        assert_eq!(r.is_sealed().unwrap(), sealed);
        assert_eq!(r.index().unwrap().len(), 6);
        assert_eq!(r.keyframes().unwrap(), vec![2_010_000]);
        for t in [
            0, 5, 10_000, 999_999, 1_000_000, 2_015_000, 3_020_000, 5_020_000, 5_020_001, 9_000_000,
        ] {
            let got: Vec<TimedEvent> = r.events_from(t).unwrap().map(|e| e.unwrap()).collect();
            let want: Vec<TimedEvent> = all.iter().filter(|e| e.t_us >= t).cloned().collect();
            assert_eq!(got, want, "seek to {t} (sealed {sealed})");
        }
    }
}

#[test]
fn every_flipped_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let (path, _) = write_archive(dir.path(), 4, Some(&k));
    let original = std::fs::read(&path).unwrap();
    let n = original.len();
    let bounds = chunk_bounds(&path);
    let header_end = bounds[0].0 as usize;
    let trailer_at = bounds.last().unwrap().1 as usize;
    let sig_start = n - 16 - 64;
    let flipped = dir.path().join("flipped.skrec");
    for i in 0..n {
        for mask in [0x01u8, 0x80] {
            let mut bytes = original.clone();
            bytes[i] ^= mask;
            std::fs::write(&flipped, &bytes).unwrap();
            let v = verify_file(&flipped, &[k.public()]).unwrap().verdict;
            match &v {
                Verdict::BadSignature { .. } => {
                    assert!((sig_start..n - 16).contains(&i), "byte {i}: {v:?}");
                }
                Verdict::Tampered { region, chunk, .. } => {
                    if i < header_end {
                        assert_eq!(*region, Region::Header, "byte {i}");
                    } else if i < trailer_at {
                        let c = bounds
                            .iter()
                            .position(|b| (b.0 as usize..b.1 as usize).contains(&i))
                            .unwrap();
                        assert_eq!(
                            (*region, *chunk),
                            (Region::Chunk, Some(c as u32)),
                            "byte {i}"
                        );
                    } else {
                        // A flipped trailer tag looks like an unknown record
                        // where chunk 4 would be; everything else is trailer.
                        assert!(
                            *region == Region::Trailer || i < trailer_at + 4,
                            "byte {i}: {v:?}"
                        );
                    }
                }
                other => panic!("byte {i} ^ {mask:#x}: {other:?}"),
            }
            // The reader never panics on it either.
            if let Ok(mut r) = Reader::open(&flipped) {
                let _ = r.events().count();
                let _ = r.events_from(2_000_000).map(|e| e.count());
            }
        }
    }
}

#[test]
fn truncation_is_incomplete_never_tampered() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let (path, all) = write_archive(dir.path(), 4, Some(&k));
    let original = std::fs::read(&path).unwrap();
    let bounds = chunk_bounds(&path);
    let cut = dir.path().join("cut.skrec");
    for len in 0..original.len() {
        std::fs::write(&cut, &original[..len]).unwrap();
        let v = verify_file(&cut, &[k.public()]).unwrap().verdict;
        let whole: Vec<&(u64, u64, u64)> = bounds.iter().filter(|b| b.1 as usize <= len).collect();
        let expect_until = whole.last().map(|b| b.2);
        match v {
            Verdict::Incomplete {
                sound_until_us,
                chunks,
                ..
            } => {
                assert_eq!(sound_until_us, expect_until, "cut at {len}");
                assert_eq!(chunks as usize, whole.len(), "cut at {len}");
            }
            other => panic!("cut at {len}: {other:?}"),
        }
        if let Ok(mut r) = Reader::open(&cut) {
            let mut it = r.events();
            let got: Vec<TimedEvent> = it.by_ref().map(|e| e.unwrap()).collect();
            assert!(it.truncated(), "cut at {len}");
            assert_eq!(got.len(), whole.len() * 3, "cut at {len}");
            assert_eq!(got[..], all[..got.len()]);
        }
    }
}

fn splice(original: &[u8], bounds: &[(u64, u64, u64)], order: &[usize]) -> Vec<u8> {
    let first = bounds[0].0 as usize;
    let trailer_at = bounds.last().unwrap().1 as usize;
    let mut out = original[..first].to_vec();
    for &c in order {
        out.extend_from_slice(&original[bounds[c].0 as usize..bounds[c].1 as usize]);
    }
    out.extend_from_slice(&original[trailer_at..]);
    out
}

#[test]
fn reordered_dropped_or_duplicated_chunks_are_tampered() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let (path, _) = write_archive(dir.path(), 4, Some(&k));
    let original = std::fs::read(&path).unwrap();
    let bounds = chunk_bounds(&path);
    let spliced = dir.path().join("spliced.skrec");
    let cases: &[(&[usize], Region)] = &[
        (&[1, 0, 2, 3], Region::Chunk),
        (&[0, 2, 1, 3], Region::Chunk),
        (&[0, 1, 3], Region::Chunk),
        (&[1, 2, 3], Region::Chunk),
        (&[0, 1, 1, 2, 3], Region::Chunk),
        // Dropping the last chunk but keeping the trailer breaks the trailer's link.
        (&[0, 1, 2], Region::Trailer),
    ];
    for (order, region) in cases {
        std::fs::write(&spliced, splice(&original, &bounds, order)).unwrap();
        match verify_file(&spliced, &[k.public()]).unwrap().verdict {
            Verdict::Tampered { region: r, .. } => assert_eq!(r, *region, "{order:?}"),
            other => panic!("{order:?}: {other:?}"),
        }
    }
    // The same splices without a trailer are still tampered (not incomplete).
    for (order, _) in &cases[..5] {
        let mut bytes = splice(&original, &bounds, order);
        let keep = bytes.len() - (original.len() - bounds.last().unwrap().1 as usize);
        bytes.truncate(keep);
        std::fs::write(&spliced, bytes).unwrap();
        let v = verify_file(&spliced, &[k.public()]).unwrap().verdict;
        assert!(matches!(v, Verdict::Tampered { .. }), "{order:?}: {v:?}");
    }
}

#[test]
fn foreign_key_is_unknown_and_a_forged_key_id_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let ours = key(1);
    let theirs = key(9);
    // An archive signed by another key: chain fine, signer unknown.
    let (path, _) = write_archive(dir.path(), 3, Some(&theirs));
    let v = verify_file(&path, &[ours.public()]).unwrap().verdict;
    assert_eq!(
        v,
        Verdict::UnknownSignature {
            key_id: theirs.id().to_owned()
        }
    );
    // Re-signed by a forger who claims our key id.
    let d2 = tempfile::tempdir().unwrap();
    let path2 = d2.path().join("forged.skrec");
    let mut w = ArchiveWriter::create(&path2, &meta("s"), WriterOptions::default()).unwrap();
    for c in 0..3 {
        for e in chunk_events(c) {
            w.append(e.t_us, &e.event).unwrap();
        }
        w.flush_chunk().unwrap();
    }
    let index = {
        let s = w.summary();
        drop(w);
        let mut r = Reader::open(&path2).unwrap();
        (r.index().unwrap().to_vec(), s)
    };
    let (entries, summary) = index;
    let info = format::TrailerInfo {
        chunks: 3,
        events: 9,
        duration_us: entries.last().unwrap().t_last_us,
        sealed_at: Utc::now(),
        key_id: ours.id().to_owned(),
        index: entries,
        keyframes: vec![format::Keyframe {
            t_us: 2_010_000,
            seq: 2,
        }],
    };
    let json = serde_json::to_vec(&info).unwrap();
    let forger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let (trailer, _) = format::encode_trailer(&json, &summary.final_digest, summary.size, &forger);
    let mut bytes = std::fs::read(&path2).unwrap();
    bytes.extend_from_slice(&trailer);
    std::fs::write(&path2, &bytes).unwrap();
    let v = verify_file(&path2, &[ours.public()]).unwrap().verdict;
    assert_eq!(
        v,
        Verdict::BadSignature {
            key_id: ours.id().to_owned()
        }
    );
    // Signed properly with our key the same construction is intact: the
    // test above fails for the signature alone.
    let ours_signing = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let (trailer, _) =
        format::encode_trailer(&json, &summary.final_digest, summary.size, &ours_signing);
    bytes.truncate(summary.size as usize);
    bytes.extend_from_slice(&trailer);
    std::fs::write(&path2, &bytes).unwrap();
    assert!(matches!(
        verify_file(&path2, &[ours.public()]).unwrap().verdict,
        Verdict::Intact { .. }
    ));
}

#[test]
fn garbage_and_empty_files_never_verify_intact() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g");
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(
        verify_file(&p, &[]).unwrap().verdict,
        Verdict::Incomplete {
            sound_until_us: None,
            ..
        }
    ));
    std::fs::write(&p, b"GIF89a not a recording at all").unwrap();
    assert!(matches!(
        verify_file(&p, &[]).unwrap().verdict,
        Verdict::Tampered {
            region: Region::Header,
            ..
        }
    ));
    // A header claiming a 4 GiB JSON must not make anyone allocate it.
    let mut hostile = format::MAGIC.to_vec();
    hostile.extend_from_slice(&1u16.to_le_bytes());
    hostile.extend_from_slice(&0u16.to_le_bytes());
    hostile.extend_from_slice(&u32::MAX.to_le_bytes());
    hostile.extend_from_slice(&[0; 8]);
    std::fs::write(&p, &hostile).unwrap();
    assert!(matches!(
        verify_file(&p, &[]).unwrap().verdict,
        Verdict::Tampered { .. }
    ));
    assert!(Reader::open(&p).is_err());
}

// ---- real I/O failures and crashes, using child processes ----

const CHILD_ENV: &str = "SEKISHO_REC_TEST_CHILD";

/// Re-executes this test binary running only `child_entry` (named by its
/// module path without the crate's name, as the test harness names it).
fn child(role: &str, dir: &Path) -> Command {
    let entry = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::child_entry"),
        None => "child_entry".to_owned(),
    };
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", &entry, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .env("SEKISHO_REC_TEST_DIR", dir);
    c
}

/// Random (incompressible) terminal output of `n` bytes.
fn noise(n: usize) -> Event {
    use rand::RngCore as _;
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    Event::Output {
        channel: 0,
        stream: Stream::Stdout,
        data: Bytes::from(b),
    }
}

/// Writes until the recorder fails; returns (error, events recorded before
/// the failure that were confirmed flushed).
fn fill_until_failure(rec: &Recorder) -> (RecordingFailed, u64) {
    let mut flushed = 0u64;
    for i in 0..10_000u64 {
        if let Err(e) = rec.record(noise(16 * 1024)) {
            return (e, flushed);
        }
        if let Err(e) = rec.flush() {
            return (e, flushed);
        }
        flushed = i + 1;
    }
    panic!("the writer never failed");
}

#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(std::env::var("SEKISHO_REC_TEST_DIR").unwrap());
    match role.as_str() {
        "fsize" => {
            // SAFETY: plain libc calls in a single-purpose child process.
            unsafe {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit {
                    rlim_cur: 200 * 1024,
                    rlim_max: 200 * 1024,
                };
                assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
            }
            let rec =
                Recorder::open(&dir, &meta("fsize"), key(1), WriterOptions::default()).unwrap();
            let (err, flushed) = fill_until_failure(&rec);
            // Once failed, record refuses at once.
            assert!(rec.record(output("x")).is_err());
            println!("@@ {} {flushed} {:?}", rec.path().display(), err.io_kind());
        }
        "nobody" => {
            // SAFETY: drop root in this child so permissions apply.
            unsafe {
                assert_eq!(libc::setgid(65534), 0);
                assert_eq!(libc::setuid(65534), 0);
            }
            let r = Recorder::open(&dir, &meta("perm"), key(1), WriterOptions::default());
            println!("@@ {:?}", r.err().and_then(|e| e.io_kind()));
        }
        "crash" => {
            let opts = WriterOptions {
                flush_interval: Duration::from_millis(50),
                ..WriterOptions::default()
            };
            let rec = Recorder::open(&dir, &meta("crash"), key(1), opts).unwrap();
            println!("@@ {}", rec.path().display());
            let mut i = 0u64;
            loop {
                for _ in 0..20 {
                    rec.record(output(&format!("line {i}\r\n"))).unwrap();
                    i += 1;
                }
                rec.flush().unwrap();
                println!("@@ flushed {i}");
                // Unflushed events in flight when the kill comes.
                rec.record(output(&format!("line {i}\r\n"))).unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

fn child_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.find("@@ ").map(|i| l[i + 3..].to_owned()))
        .collect()
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

fn assert_reads_back_noise(path: &Path, at_least: u64) {
    let (events, truncated) = read_all(path);
    assert!(truncated);
    assert!(
        events.len() as u64 >= at_least,
        "{} < {at_least}",
        events.len()
    );
    assert!(events.iter().all(|e| e.event.payload_len() == 16 * 1024));
    match verify_file(path, &[key(1).public()]).unwrap().verdict {
        Verdict::Incomplete {
            chunks, events: n, ..
        } => {
            assert!(chunks > 0);
            assert_eq!(n, events.len() as u64);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn disk_full_on_a_real_small_filesystem_fails_closed() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let Some(fs) = Tmpfs::mount("256k") else {
        panic!("cannot mount a tmpfs although root");
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let rec = Recorder::open(fs.0.path(), &meta("full"), key(1), WriterOptions::default()).unwrap();
    let watcher = rec.clone();
    let (err, flushed) = fill_until_failure(&rec);
    assert_eq!(
        err.io_kind(),
        Some(std::io::ErrorKind::StorageFull),
        "{err}"
    );
    assert!(flushed >= 3, "some chunks fit before the disk filled");
    // A relay selecting on failed() learns it without recording.
    let learnt =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), watcher.failed()).await });
    assert_eq!(learnt.unwrap(), err);
    assert_eq!(rec.record(output("after")), Err(err.clone()));
    let path = rec.path().to_owned();
    let failed = rec.seal().unwrap_err();
    assert_eq!(failed.partial.status, ArchiveStatus::Incomplete);
    assert_eq!(failed.partial.size, std::fs::metadata(&path).unwrap().len());
    assert_reads_back_noise(&path, flushed);
    drop(fs);
}

#[test]
fn file_size_limit_fails_closed_in_a_child() {
    let dir = tempfile::tempdir().unwrap();
    let out = child("fsize", dir.path()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = child_lines(&out);
    let parts: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(parts[2], "Some(FileTooLarge)");
    let flushed: u64 = parts[1].parse().unwrap();
    assert!(flushed >= 3);
    let path = PathBuf::from(parts[0]);
    assert!(std::fs::metadata(&path).unwrap().len() <= 200 * 1024);
    assert_reads_back_noise(&path, flushed);
}

#[test]
fn permission_denied_is_reported_at_open() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("recordings");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    if unsafe { libc::geteuid() } == 0 {
        // Root ignores modes: try as nobody in a child.
        let out = child("nobody", &root).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(child_lines(&out), vec!["Some(PermissionDenied)".to_owned()]);
    } else {
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o555)).unwrap();
        let e = Recorder::open(&root, &meta("perm"), key(1), WriterOptions::default()).unwrap_err();
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::PermissionDenied));
    }
    assert!(
        std::fs::read_dir(&root).unwrap().next().is_none(),
        "nothing was created"
    );
}

#[test]
fn sigkill_mid_session_leaves_an_incomplete_archive_up_to_the_last_flush() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = child("crash", dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = proc.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut path = None;
    let mut flushed = 0u64;
    let mut flushes = 0;
    while flushes < 8 {
        let line = lines.next().unwrap().unwrap();
        let Some(at) = line.find("@@ ") else { continue };
        let rest = &line[at + 3..];
        if let Some(n) = rest.strip_prefix("flushed ") {
            flushed = n.parse().unwrap();
            flushes += 1;
        } else {
            path = Some(PathBuf::from(rest));
        }
    }
    // SAFETY: killing our own child by pid.
    unsafe { libc::kill(proc.id() as i32, libc::SIGKILL) };
    let status = proc.wait().unwrap();
    assert!(!status.success());
    let path = path.unwrap();
    let (events, truncated) = read_all(&path);
    assert!(truncated);
    assert!(
        events.len() as u64 >= flushed,
        "{} < {flushed}",
        events.len()
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.event, output(&format!("line {i}\r\n")));
    }
    match verify_file(&path, &[key(1).public()]).unwrap().verdict {
        Verdict::Incomplete {
            sound_until_us: Some(t),
            events: n,
            ..
        } => {
            assert_eq!(n, events.len() as u64);
            assert_eq!(t, events.last().unwrap().t_us);
        }
        other => panic!("{other:?}"),
    }
}

/// Builds header ‖ one chunk whose digest and check are valid for `raw`.
fn forged_chunk_file(raw: &[u8], events: u32, comp_len_override: Option<u32>) -> Vec<u8> {
    let json = serde_json::to_vec(&meta("forged")).unwrap();
    let (mut bytes, d0) = format::encode_header(&json);
    let payload = zstd::bulk::compress(raw, 3).unwrap();
    let mut h = format::ChunkHeader {
        seq: 0,
        t_first_us: 0,
        t_last_us: 0,
        events,
        flags: 0,
        raw_len: raw.len() as u32,
        comp_len: comp_len_override.unwrap_or(payload.len() as u32),
        digest: [0; 32],
    };
    h.digest = h.compute_digest(&d0, &payload);
    bytes.extend_from_slice(&h.encode());
    bytes.extend_from_slice(&payload);
    bytes
}

#[test]
fn consistent_chain_over_malformed_events_is_still_tampered() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("forged.skrec");
    // Unknown event kind 200.
    std::fs::write(&p, forged_chunk_file(&[0, 200], 1, None)).unwrap();
    match verify_file(&p, &[]).unwrap().verdict {
        Verdict::Tampered {
            chunk: Some(0),
            detail,
            ..
        } => assert!(detail.contains("unknown event kind"), "{detail}"),
        other => panic!("{other:?}"),
    }
    // Header says 2 events, payload holds 1 (a Mark with empty strings).
    std::fs::write(&p, forged_chunk_file(&[0, 12, 0, 0], 2, None)).unwrap();
    assert!(matches!(
        verify_file(&p, &[]).unwrap().verdict,
        Verdict::Tampered { chunk: Some(0), .. }
    ));
    // The same with the right count is sound (incomplete: no trailer).
    std::fs::write(&p, forged_chunk_file(&[0, 12, 0, 0], 1, None)).unwrap();
    assert!(matches!(
        verify_file(&p, &[]).unwrap().verdict,
        Verdict::Incomplete {
            sound_until_us: Some(0),
            ..
        }
    ));
    // A self-consistent header with an absurd length is refused before any
    // allocation, and called tampered, not a cut.
    std::fs::write(&p, forged_chunk_file(&[0, 12, 0, 0], 1, Some(u32::MAX))).unwrap();
    match verify_file(&p, &[]).unwrap().verdict {
        Verdict::Tampered { detail, .. } => {
            assert!(detail.contains("larger than the format allows"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert!(Reader::open(&p).unwrap().events().any(|e| e.is_err()));
}

#[test]
fn random_bytes_after_a_valid_header_never_panic_or_verify_intact() {
    use rand::{Rng as _, SeedableRng as _};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("noise.skrec");
    let json = serde_json::to_vec(&meta("noise")).unwrap();
    let (header, _) = format::encode_header(&json);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for round in 0..300 {
        let mut bytes = header.clone();
        let n = rng.gen_range(0..400);
        // Half the rounds start with a plausible tag.
        if round % 2 == 0 {
            bytes.extend_from_slice(if round % 4 == 0 { b"CHNK" } else { b"TRLR" });
        }
        bytes.extend((0..n).map(|_| rng.r#gen::<u8>()));
        std::fs::write(&p, &bytes).unwrap();
        let v = verify_file(&p, &[key(1).public()]).unwrap().verdict;
        assert!(!matches!(v, Verdict::Intact { .. }), "round {round}");
        let mut r = Reader::open(&p).unwrap();
        let _ = r.events().count();
        let _ = r.index().map(|i| i.len());
    }
}

#[test]
fn over_long_texts_are_cut_and_the_archive_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.skrec");
    let mut w = ArchiveWriter::create(&path, &meta("long"), WriterOptions::default()).unwrap();
    let huge = "警".repeat(3 << 20); // 9 MiB of 3-byte characters
    w.append(
        0,
        &Event::Mark {
            label: "note".into(),
            detail: huge,
        },
    )
    .unwrap();
    w.seal(&key(1)).unwrap();
    let (events, _) = read_all(&path);
    match &events[0].event {
        Event::Mark { label, detail } => {
            assert_eq!(label, "note");
            assert!(detail.len() <= sekisho::recording::MAX_EVENT_TEXT && detail.len() > 60_000);
            assert!(detail.chars().all(|c| c == '警'));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        verify_file(&path, &[key(1).public()]).unwrap().verdict,
        Verdict::Intact { .. }
    ));
}

#[test]
fn record_async_waits_for_room_without_losing_events() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriterOptions {
        queue_events: 2,
        ..WriterOptions::default()
    };
    let rec = Recorder::open(dir.path(), &meta("async"), key(1), opts).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        for i in 0..2000 {
            rec.record_async(output(&format!("{i}\n"))).await.unwrap();
        }
    });
    let path = rec.path().to_owned();
    assert_eq!(rec.seal().unwrap().events, 2000);
    let (events, _) = read_all(&path);
    assert_eq!(events.len(), 2000);
    assert_eq!(events[1999].event, output("1999\n"));
}

/// A `record_async` waiting for room in a full queue is woken by the writer
/// when it takes a message, not polled: while the writer compresses one
/// large chunk (zstd level 19, a while), the waiting call is polled a
/// handful of times. A poll every millisecond, as before, made it hundreds.
#[test]
fn record_async_is_woken_by_the_writer_not_polled() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriterOptions {
        queue_events: 1,
        zstd_level: 19,
        ..WriterOptions::default()
    };
    let rec = Recorder::open(dir.path(), &meta("wake"), key(1), opts).unwrap();
    // Two chunks' worth of log-like text (compressible, so level 19 works).
    let text: String = (0..40_000)
        .map(|i| {
            format!(
                "{i:06} request /api/items/{} served in {} ms\n",
                i * 31 % 997,
                i % 251
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let polls = rt.block_on(async {
        rec.record_async(output(&text)).await.unwrap();
        // Queued behind the large event: the queue is full from here on
        // until the writer is done with it.
        rec.record_async(output("a\n")).await.unwrap();
        let waiting = rec.record_async(output("b\n"));
        tokio::pin!(waiting);
        let mut polls = 0u32;
        std::future::poll_fn(|cx| {
            polls += 1;
            waiting.as_mut().poll(cx)
        })
        .await
        .unwrap();
        polls
    });
    assert!(polls >= 2, "the queue was never full ({polls} poll)");
    assert!(polls <= 10, "polled {polls} times while waiting");
    let path = rec.path().to_owned();
    let sealed = rec.seal().unwrap().events;
    let (events, _) = read_all(&path);
    // The large output is kept whole in pieces; the two small ones follow.
    assert_eq!(events.len() as u64, sealed);
    assert_eq!(events[events.len() - 2].event, output("a\n"));
    assert_eq!(events[events.len() - 1].event, output("b\n"));
}

/// A `record_async` waiting for room when the writer fails (the disk is
/// full) is woken with the failure, not left waiting: the writer takes a
/// large event and fails writing its first chunk to a 64 KiB filesystem
/// while one event is queued behind it and the call waits for room.
#[test]
fn record_async_waiting_when_the_writer_fails_gets_the_failure() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let Some(fs) = Tmpfs::mount("64k") else {
        panic!("cannot mount a tmpfs although root");
    };
    let opts = WriterOptions {
        queue_events: 1,
        zstd_level: 19,
        ..WriterOptions::default()
    };
    let rec = Recorder::open(fs.0.path(), &meta("full-wait"), key(1), opts).unwrap();
    // Two chunks of text that compresses to far more than 64 KiB.
    let text: String = (0..80_000)
        .map(|i| {
            format!(
                "{i:06} {:016x}\n",
                (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (result, polls) = rt.block_on(async {
        rec.record_async(output(&text)).await.unwrap();
        rec.record_async(output("a\n")).await.unwrap();
        let waiting = rec.record_async(output("b\n"));
        tokio::pin!(waiting);
        let mut polls = 0u32;
        let result = tokio::time::timeout(
            Duration::from_secs(30),
            std::future::poll_fn(|cx| {
                polls += 1;
                waiting.as_mut().poll(cx)
            }),
        )
        .await
        .expect("still waiting 30 s after the writer failed");
        (result, polls)
    });
    let err = result.expect_err("queued although the writer failed");
    assert_eq!(
        err.io_kind(),
        Some(std::io::ErrorKind::StorageFull),
        "{err}"
    );
    assert!(polls >= 2, "the queue was never full ({polls} poll)");
    assert!(polls <= 10, "polled {polls} times while waiting");
    // Every later call fails at once with the same failure.
    let again = rt.block_on(rec.record_async(output("c\n")));
    assert_eq!(again, Err(err));
    let failed = rec.seal().unwrap_err();
    assert_eq!(failed.partial.status, ArchiveStatus::Incomplete);
    drop(fs);
}
