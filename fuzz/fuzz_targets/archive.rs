//! Whole archive files through the reader (header, index, keyframes,
//! events, seeking) and `verify`; their verdicts must agree.
#![no_main]

use std::io::Write as _;

use libfuzzer_sys::fuzz_target;
use sekisho::fuzzing::{Reader, Verdict, fuzz_archive_key, verify_file};

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write");
    let path = file.path();

    let verdict = verify_file(path, &[fuzz_archive_key().public()])
        .expect("verify reads the file")
        .verdict;

    let Ok(mut reader) = Reader::open(path) else {
        assert!(
            !matches!(verdict, Verdict::Intact { .. }),
            "verify passed a file the reader cannot open"
        );
        return;
    };
    let _ = reader.meta();
    let _ = reader.is_sealed();
    let _ = reader.keyframes();
    let mut events = reader.events();
    let mut read = 0u64;
    let mut last_t = 0;
    let mut failed = false;
    for e in events.by_ref() {
        match e {
            Ok(e) => {
                assert!(e.t_us >= last_t, "event times go backwards");
                last_t = e.t_us;
                read += 1;
            }
            Err(_) => failed = true,
        }
    }
    let truncated = events.truncated();
    if let Verdict::Intact { events: n, .. } = verdict {
        assert!(!failed, "verify passed a file whose events do not read");
        assert!(!truncated, "verify passed a truncated file");
        assert_eq!(read, n, "verify and the reader count different events");
    }
    if let Ok(from) = reader.events_from(last_t / 2) {
        for e in from.take(10_000) {
            let _ = e;
        }
    }
});
