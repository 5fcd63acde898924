//! Faults a real deployment meets: a database that is busy or unavailable
//! just when a session ends. A real `sekisho serve` with its SQLite store,
//! the OpenSSH client and sshd target; the database is locked by another
//! process (the `sqlite3` command holding `BEGIN EXCLUSIVE`), as an
//! administrator's long transaction or a backup tool would.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::support::deployment::{self, Deployment, PASSWORD, read, wait_until};
use crate::support::process::Daemon;
use crate::support::sshd;

fn env() -> &'static Deployment {
    static D: OnceLock<Deployment> = OnceLock::new();
    D.get_or_init(|| Deployment::start(Path::new(env!("CARGO_BIN_EXE_sekisho")), "sekisho-faults"))
}

/// The tests here share one deployment, and one of them locks its database
/// for many seconds: a sign-in of another test meanwhile would wait out
/// SQLite's busy timeout and lose its audit event or session row. The
/// locking test holds this exclusively, the others shared.
static DATABASE: RwLock<()> = RwLock::new(());

fn database_shared() -> RwLockReadGuard<'static, ()> {
    DATABASE.read().unwrap_or_else(PoisonError::into_inner)
}

fn database_exclusive() -> RwLockWriteGuard<'static, ()> {
    DATABASE.write().unwrap_or_else(PoisonError::into_inner)
}

/// Another process holding SQLite's write lock until dropped or released.
struct WriteLock {
    holder: Daemon,
}

impl WriteLock {
    fn take(db: &Path) -> WriteLock {
        let sqlite3 = sshd::require("sqlite3", "sqlite3");
        let mut holder = Daemon::spawn(
            "sqlite3",
            Command::new(sqlite3)
                .arg(db)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let stdin = holder.child.stdin.as_mut().unwrap();
        stdin
            .write_all(b".timeout 20000\nBEGIN EXCLUSIVE;\nSELECT 'locked';\n")
            .unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        BufReader::new(holder.child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked", "sqlite3 did not take the lock");
        WriteLock { holder }
    }

    fn release(mut self) {
        let mut stdin = self.holder.child.stdin.take().unwrap();
        stdin.write_all(b"COMMIT;\n.quit\n").unwrap();
        drop(stdin);
        let status = self.holder.child.wait().unwrap();
        assert!(status.success(), "sqlite3: {status:?}");
    }
}

/// `sqlite3 DB SQL`, its output.
fn query(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().unwrap();
    assert!(out.status.success(), "{sql}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn session_end_events(session: &str) -> Vec<serde_json::Value> {
    let out = deployment::ok(env().sekisho(
        &[
            "audit",
            "--kind",
            "session_end",
            "--session",
            session,
            "--json",
        ],
        None,
    ));
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A session that ends while another process holds the database's write
/// lock: the client is let go at once (its end does not wait for the
/// database), the end is retried, and once the lock is released the row is
/// closed and the `session_end` event written, with the time the session
/// ended.
#[test]
fn session_end_survives_a_locked_database() {
    let _database = database_exclusive();
    let e = env();
    let db: PathBuf = e.dir.join("sekisho.db");
    let flag = e.dir.join("end-the-session");
    let remote = format!(
        "echo started; while [ ! -e {} ]; do sleep 0.1; done; echo finished",
        flag.display()
    );
    let mut client = e
        .ssh(
            "tanaka@db01",
            "127.0.0.21",
            PASSWORD,
            &e.code("tanaka"),
            &[&remote],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let session = e
        .install()
        .live_session_id("tanaka", Duration::from_secs(30))
        .expect("tanaka's session is live");

    let lock = WriteLock::take(&db);
    std::fs::write(&flag, "").unwrap();
    // The client finishes while the database is still locked.
    let exited = wait_until(Duration::from_secs(30), || {
        matches!(client.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "the client was kept waiting for the database");
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("finished"));

    // Nothing could be written yet: the row is live, no end event, and
    // serve says it keeps trying.
    let log = e.dir.join("serve.log");
    let retried = wait_until(Duration::from_secs(30), || {
        read(&log).contains("session ends still cannot be written")
    });
    assert!(retried, "no retry in the log:\n{}", read(&log));
    assert_eq!(
        query(
            &db,
            &format!("SELECT status FROM sessions WHERE id = '{session}'")
        ),
        "live"
    );
    assert!(session_end_events(&session).is_empty());
    let released_at = chrono::Utc::now();
    lock.release();

    let written = wait_until(Duration::from_secs(60), || {
        !session_end_events(&session).is_empty()
    });
    assert!(
        written,
        "no session_end event after the lock was released:\n{}",
        read(&log)
    );
    let events = session_end_events(&session);
    assert_eq!(events.len(), 1, "{events:?}");
    let at: chrono::DateTime<chrono::Utc> = events[0]["at"].as_str().unwrap().parse().unwrap();
    assert!(
        at < released_at,
        "the event carries the end time: {at} vs {released_at}"
    );
    assert_eq!(events[0]["data"]["status"], "ended", "{events:?}");
    let row = query(
        &db,
        &format!("SELECT status, recording_status FROM sessions WHERE id = '{session}'"),
    );
    assert_eq!(row, "ended|sealed");
    assert!(
        read(&log).contains("the session's end is written"),
        "{}",
        read(&log)
    );
}

/// A password typed into the user-name field (here with a target, as an
/// `ssh` command line would carry it) is neither in the audit log nor in
/// serve's log; a marker with its length stands in its place.
#[test]
fn a_password_typed_as_the_user_name_is_not_recorded() {
    let _database = database_shared();
    let e = env();
    // The OpenSSH client refuses shell metacharacters in user names; a
    // password with capitals is no valid name either.
    let typed = "Tr0ub4dor3-Horse.9";
    let out = e
        .ssh(
            &format!("{typed}@db01"),
            "127.0.0.22",
            PASSWORD,
            "000000",
            &["true"],
        )
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("invalid characters"),
        "{out:?}"
    );
    let events = deployment::ok(e.sekisho(&["audit", "--kind", "signin_failure", "--json"], None));
    let ours: Vec<&str> = events
        .lines()
        .filter(|l| l.contains("127.0.0.22"))
        .collect();
    assert!(
        !ours.is_empty(),
        "no sign-in failure from 127.0.0.22:\n{events}"
    );
    for line in &ours {
        assert!(!line.contains("Horse"), "{line}");
        assert!(line.contains("<invalid name, 18 bytes, #"), "{line}");
    }
    let log = read(&e.dir.join("serve.log"));
    assert!(log.contains("<invalid name, 23 bytes, #"), "{log}");
    assert!(!log.contains("Horse"), "{log}");
}

/// The pids from `pid` up to (not including) `ancestor`, via /proc.
fn chain_below(pid: i32, ancestor: i32) -> Vec<i32> {
    let mut chain = Vec::new();
    let mut at = pid;
    while at > 1 && at != ancestor {
        chain.push(at);
        let stat = std::fs::read_to_string(format!("/proc/{at}/stat")).unwrap_or_default();
        // The parent is the 2nd field after the `(comm)`.
        at = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
    }
    assert_eq!(at, ancestor, "{pid} is not below {ancestor}");
    chain
}

/// The pid of the process whose command line is exactly `args`.
fn pid_of(args: &[&str]) -> Option<i32> {
    let wanted: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        (std::fs::read(format!("/proc/{pid}/cmdline")).ok()? == wanted).then_some(pid)
    })
}

/// The target's server process for a session is killed mid-session: the
/// person is told the connection to the target was lost, the client's
/// command fails (exit status 255, as for OpenSSH's own connection errors),
/// and the session ends as `target_lost`, not as a normal logout.
#[test]
fn a_lost_target_ends_the_session_and_says_so() {
    let _database = database_shared();
    let e = env();
    let mut client = e
        .ssh(
            "suzuki@db01",
            "127.0.0.23",
            PASSWORD,
            &e.code("suzuki"),
            &["echo started; exec sleep 6017"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let session = e
        .install()
        .live_session_id("suzuki", Duration::from_secs(30))
        .expect("suzuki's session is live");
    let mut sleep = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            sleep = pid_of(&["sleep", "6017"]);
            sleep.is_some()
        }),
        "the remote command did not start"
    );
    let listener: i32 = read(&e.dir.join("sshd.pid")).trim().parse().unwrap();
    // The per-connection sshd processes between the listener and the
    // command (the listener and other sessions are left alone), from the
    // top: killed first, the command would be reported as killed by a
    // signal over a connection that still works.
    let mut chain = chain_below(sleep.unwrap(), listener);
    chain.reverse();
    for pid in chain {
        // SAFETY: SIGKILL to processes of the test's own sshd.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }

    let exited = wait_until(Duration::from_secs(30), || {
        matches!(client.try_wait(), Ok(Some(_)))
    });
    assert!(
        exited,
        "the client was left in a session without its target"
    );
    let out = client.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(
        stderr.contains("sekisho: session ended: the connection to db01 was lost"),
        "{stderr}"
    );

    // Each look runs the CLI against the database: on a loaded machine a
    // few take seconds.
    let ended = wait_until(Duration::from_secs(30), || {
        !session_end_events(&session).is_empty()
    });
    assert!(ended, "no session_end event");
    let end = &session_end_events(&session)[0];
    assert_eq!(end["data"]["status"], "target_lost", "{end}");
    assert!(
        end["detail"]
            .as_str()
            .unwrap()
            .contains("the connection to db01 was lost"),
        "{end}"
    );
    let row = query(
        &e.dir.join("sekisho.db"),
        &format!("SELECT status FROM sessions WHERE id = '{session}'"),
    );
    assert_eq!(row, "target_lost");
}
