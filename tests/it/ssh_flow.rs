//! Flow control through a real `sekisho serve` between the OpenSSH client
//! and a real OpenSSH sshd: a client that sends faster than the target
//! reads is held back by SSH windows on both legs instead of filling the
//! bastion's memory, and nothing is lost or stuck on the way.

use crate::support::deployment::{Deployment, PASSWORD};

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The most a client may push while the target reads nothing: the person's
/// window at the bastion (2 MiB), the target's window (2 MiB), the
/// loopback socket buffers of both legs and the client's own buffers. The
/// bastion used to take up to 64 MiB more.
const STALLED_MAX: usize = 32 << 20;
/// What the test sends in all: well above the old 64 MiB input budget.
const TOTAL: usize = 96 << 20;

#[test]
fn a_client_faster_than_the_target_is_held_by_the_windows_and_loses_nothing() {
    let d = Deployment::start(Path::new(env!("CARGO_BIN_EXE_sekisho")), "sekisho-flow");
    let go = d.dir.join("target-may-read");
    // The target reads nothing until `go` exists, then counts every byte.
    let remote = format!(
        "echo started; while [ ! -e {go} ]; do sleep 0.05; done; wc -c",
        go = go.display()
    );
    let mut child = d
        .ssh(
            "tanaka@db01",
            "127.0.0.1",
            PASSWORD,
            &d.code("tanaka"),
            &[&remote],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut started = Vec::new();
    let mut byte = [0u8; 1];
    while !started.ends_with(b"started\n") {
        let n = stdout.read(&mut byte).expect("read ssh");
        assert!(
            n == 1,
            "the session did not start: {}",
            String::from_utf8_lossy(&started)
        );
        started.push(byte[0]);
    }

    let mut stdin = child.stdin.take().expect("stdin");
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    let writer = std::thread::spawn(move || {
        let buf = vec![b'x'; 64 * 1024];
        while counter.load(Ordering::Relaxed) < TOTAL {
            if stdin.write_all(&buf).is_err() {
                return;
            }
            counter.fetch_add(buf.len(), Ordering::Relaxed);
        }
    });

    // Wait until the client is held back: no byte taken for a second (or
    // everything taken, which the assertion below reports).
    let limit = Instant::now() + Duration::from_secs(120);
    let mut last = usize::MAX;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = written.load(Ordering::Relaxed);
        if now == last || now >= TOTAL || Instant::now() > limit {
            break;
        }
        last = now;
    }
    let stalled = written.load(Ordering::Relaxed);
    assert!(
        stalled <= STALLED_MAX,
        "the bastion took {} MiB from a client while the target read nothing",
        stalled >> 20
    );

    // Once the target reads, everything arrives and the session ends.
    std::fs::write(&go, b"").expect("go file");
    writer.join().expect("writer thread");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("read ssh");
    let out = child.wait_with_output().expect("wait ssh");
    assert!(
        out.status.success(),
        "ssh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rest.trim(), TOTAL.to_string(), "bytes the target counted");
}
