//! A bastion killed with SIGKILL mid-session: the archive verifies as
//! incomplete and reads up to the last flush, and the next `sekisho serve`
//! marks the session as ended abnormally (with an audit event).

use crate::support::deployment;
use crate::support::process::Daemon;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use deployment::{Deployment, PASSWORD, ok, read, wait_until};

#[test]
fn sigkill_mid_session_leaves_an_incomplete_archive_and_an_abnormal_session() {
    let bin = Path::new(env!("CARGO_BIN_EXE_sekisho"));
    let d = Deployment::start(bin, "sekisho-crash");
    let mut client = d
        .ssh(
            "ito@db01",
            "127.0.0.71",
            PASSWORD,
            &d.code("ito"),
            &["echo before-the-crash; sleep 60"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh");

    let id = d
        .install()
        .live_session_id("ito", Duration::from_secs(15))
        .unwrap_or_default();
    let live = !id.is_empty();
    assert!(live, "no live session: {}", read(&d.dir.join("serve.log")));
    // The writer flushes about once a second: wait until the archive on
    // disk holds the command and its output (read back as the checks below
    // read it), however long the target and the writer take on a loaded
    // machine.
    let flushed = wait_until(Duration::from_secs(60), || {
        let keys = d.sekisho(&["export", &id, "--format", "keystrokes"], None);
        let cast = d.sekisho(&["export", &id, "--format", "asciicast"], None);
        String::from_utf8_lossy(&keys.stdout).contains("echo before-the-crash")
            && String::from_utf8_lossy(&cast.stdout).contains("before-the-crash")
    });
    assert!(
        flushed,
        "the output never reached the archive: {}",
        read(&d.dir.join("serve.log"))
    );

    // SAFETY: kill(2) on the serve process this test started.
    unsafe { libc::kill(d.serve_pid as i32, libc::SIGKILL) };
    let _ = wait_until(Duration::from_secs(10), || {
        matches!(client.try_wait(), Ok(Some(_)))
    });
    let _ = client.kill();
    let _ = client.wait();

    // The archive is cut short: incomplete, never tampered, and readable.
    let verify = d.sekisho(&["verify", &id, "--json"], None);
    let report = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert_eq!(verify.status.code(), Some(3), "not incomplete: {report}");
    let keys = ok(d.sekisho(&["export", &id, "--format", "keystrokes"], None));
    assert!(keys.contains("echo before-the-crash"), "{keys}");
    let cast = ok(d.sekisho(&["export", &id, "--format", "asciicast"], None));
    assert!(
        cast.contains("before-the-crash"),
        "output before the crash lost: {cast}"
    );

    // The next start marks the session abnormal and audits it.
    let _serve = Daemon::spawn(
        "sekisho serve",
        Command::new(bin)
            .arg("--config")
            .arg(d.dir.join("sekisho.toml"))
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.dir.join("serve2.log")).expect("log")),
    );
    let port = d.ssh_port;
    assert!(
        wait_until(Duration::from_secs(20), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "serve did not restart: {}",
        read(&d.dir.join("serve2.log"))
    );
    let still_live = ok(d.sekisho(&["sessions", "list", "--json"], None));
    assert!(
        !still_live.contains(&id),
        "the crashed session is still listed live"
    );
    let audit = ok(d.sekisho(&["audit", "--kind", "session_abnormal", "--json"], None));
    assert!(audit.contains(&id), "no session_abnormal event: {audit}");
}
