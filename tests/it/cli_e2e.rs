//! The administrator's first hour, end to end through the real binary:
//! init → vendor add → user add → secret set → policy check → policy explain,
//! with assertions on output and exit codes.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

struct Bastion {
    dir: tempfile::TempDir,
}

impl Bastion {
    fn new() -> Bastion {
        Bastion {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn config(&self) -> PathBuf {
        self.path().join("sekisho.toml")
    }
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::cargo_bin("sekisho").expect("binary");
        cmd.arg("--config").arg(self.config()).args(args);
        cmd.env_remove("SEKISHO_CONFIG");
        if let Some(s) = stdin {
            cmd.write_stdin(s);
        }
        cmd.output().expect("run sekisho")
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output) -> String {
    let t = text(o);
    assert!(
        o.status.success(),
        "expected success, got {:?}:\n{t}",
        o.status
    );
    t
}

/// The repository's example policies, copied into the bastion directory.
fn copy_examples(to: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for entry in std::fs::read_dir(src).expect("policies dir") {
        let entry = entry.expect("entry");
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&p, to.join(entry.file_name())).expect("copy policy");
        }
    }
}

#[test]
fn init_is_idempotent_and_keys_are_private() {
    let b = Bastion::new();
    let first = ok(&b.run(&["init", "--dir", b.path().to_str().unwrap()], None));
    assert!(first.contains("created  configuration"), "{first}");
    assert!(first.contains("TOTP secret:"), "{first}");
    assert!(first.contains("otpauth://totp/"), "{first}");
    for key in [
        "keys/ssh_host_ed25519_key",
        "keys/rdp_tls_key.pem",
        "keys/archive_signing_ed25519.pem",
        "keys/secret_master.key",
    ] {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(b.path().join(key)).expect(key);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{key}");
    }
    let host_key_before = std::fs::read(b.path().join("keys/ssh_host_ed25519_key")).unwrap();

    let second = ok(&b.run(&["init", "--dir", b.path().to_str().unwrap()], None));
    assert!(second.contains("exists   configuration"), "{second}");
    assert!(
        second.contains("SSH host key") && second.contains("(kept)"),
        "{second}"
    );
    assert!(second.contains("administrator already exists"), "{second}");
    assert!(
        !second.contains("TOTP secret:"),
        "a second init must not create a user: {second}"
    );
    let host_key_after = std::fs::read(b.path().join("keys/ssh_host_ed25519_key")).unwrap();
    assert_eq!(
        host_key_before, host_key_after,
        "init overwrote the host key"
    );
}

#[test]
fn administrator_first_hour() {
    let b = Bastion::new();
    ok(&b.run(&["init", "--dir", b.path().to_str().unwrap()], None));
    copy_examples(&b.path().join("policies"));

    // Vendors, one a subcontractor of the other.
    ok(&b.run(&["vendor", "add", "acme"], None));
    ok(&b.run(
        &["vendor", "add", "acme-sub", "--subcontractor-of", "acme"],
        None,
    ));
    let unknown_parent = b.run(
        &["vendor", "add", "x", "--subcontractor-of", "nobody"],
        None,
    );
    assert!(!unknown_parent.status.success());
    assert!(
        text(&unknown_parent).contains("nobody"),
        "{}",
        text(&unknown_parent)
    );

    // Engineers.
    let added = ok(&b.run(
        &[
            "user",
            "add",
            "tanaka",
            "--role",
            "engineer",
            "--vendor",
            "acme",
            "--password-stdin",
        ],
        Some("correct horse battery staple\n"),
    ));
    assert!(added.contains("otpauth://totp/"), "{added}");
    assert!(
        !added.contains("correct horse"),
        "the password was echoed: {added}"
    );
    let dup = b.run(
        &[
            "user", "add", "tanaka", "--role", "engineer", "--vendor", "acme",
        ],
        None,
    );
    assert!(!dup.status.success(), "duplicate user accepted");
    assert!(text(&dup).contains("tanaka"), "{}", text(&dup));
    let no_vendor = b.run(&["user", "add", "sato", "--role", "engineer"], None);
    assert!(
        !no_vendor.status.success(),
        "engineer without a vendor accepted"
    );

    let list = ok(&b.run(&["user", "list"], None));
    assert!(list.contains("tanaka") && list.contains("acme"), "{list}");

    // Credentials for every target the examples name.
    let names = credential_names(&b.path().join("policies"));
    assert!(!names.is_empty());
    // Before the secrets exist, the check names the unknown credential.
    let missing = b.run(&["policy", "check"], None);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(text(&missing).contains(&names[0]), "{}", text(&missing));

    for n in &names {
        ok(&b.run(&["secret", "set", n], Some("s3cret-value-of-the-target\n")));
    }
    let secrets = ok(&b.run(&["secret", "list"], None));
    assert!(secrets.contains(&names[0]), "{secrets}");
    assert!(
        !secrets.contains("s3cret-value"),
        "a secret was printed: {secrets}"
    );
    let db = std::fs::read(b.path().join("sekisho.db")).unwrap();
    assert!(
        !db.windows(12).any(|w| w == b"s3cret-value"),
        "a secret is stored in plain text"
    );
    // Nor is the one-time-code secret printed by `user add`.
    let totp_secret = added
        .lines()
        .find_map(|l| l.strip_prefix("TOTP secret: "))
        .expect("TOTP secret line")
        .trim()
        .as_bytes();
    assert!(totp_secret.len() >= 32, "{added}");
    assert!(
        !db.windows(totp_secret.len()).any(|w| w == totp_secret),
        "the TOTP secret is stored in plain text"
    );

    // Policy check passes now.
    let check = ok(&b.run(&["policy", "check"], None));
    assert!(check.contains("OK"), "{check}");

    // Explain: tanaka over SSH from the vendor office, on a weekday morning.
    let allow = b.run(
        &[
            "policy",
            "explain",
            "--user",
            "tanaka",
            "--target",
            "fa-db01",
            "--protocol",
            "ssh",
            "--from",
            "127.0.0.1",
            "--at",
            "2026-11-24 10:00",
        ],
        None,
    );
    assert_eq!(allow.status.code(), Some(0), "{}", text(&allow));
    assert!(text(&allow).starts_with("ALLOW"), "{}", text(&allow));

    // On a Sunday the same request is outside the allowed hours.
    let deny = b.run(
        &[
            "policy",
            "explain",
            "--user",
            "tanaka",
            "--target",
            "fa-db01",
            "--protocol",
            "ssh",
            "--from",
            "127.0.0.1",
            "--at",
            "2026-11-22 10:00",
        ],
        None,
    );
    assert_eq!(deny.status.code(), Some(1), "{}", text(&deny));
    assert!(text(&deny).contains("DENY"), "{}", text(&deny));
    assert!(text(&deny).contains("hours"), "{}", text(&deny));

    // A disabled user is refused whatever the policy says.
    ok(&b.run(&["user", "disable", "tanaka"], None));
    let disabled = b.run(
        &[
            "policy",
            "explain",
            "--user",
            "tanaka",
            "--target",
            "fa-db01",
            "--protocol",
            "ssh",
            "--from",
            "127.0.0.1",
            "--at",
            "2026-11-24 10:00",
        ],
        None,
    );
    assert_eq!(disabled.status.code(), Some(1), "{}", text(&disabled));
    assert!(text(&disabled).contains("disabled"), "{}", text(&disabled));

    // Every admin change above is in the audit log.
    let audit = ok(&b.run(&["audit", "--kind", "admin_change"], None));
    for needle in ["acme-sub", "tanaka", &names[0]] {
        assert!(audit.contains(needle), "audit lacks {needle}:\n{audit}");
    }
}

/// Credential names used by the policies (the `credential = "..."` values).
fn credential_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for part in text.split("credential").skip(1) {
            let part = part.trim_start().trim_start_matches('=').trim_start();
            if let Some(rest) = part.strip_prefix('"')
                && let Some(end) = rest.find('"')
            {
                let n = rest[..end].to_string();
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
    }
    names.sort();
    names
}

/// Runs `sekisho --config CONFIG ARGS` with standard output a pipe whose
/// reader has already gone (as after `| head -1` has read its line).
fn into_closed_pipe(b: &Bastion, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    std::process::Command::new(assert_cmd::cargo::cargo_bin("sekisho"))
        .arg("--config")
        .arg(b.config())
        .args(args)
        .env_remove("SEKISHO_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run sekisho")
}

#[test]
fn no_command_panics_when_its_reader_goes_away() {
    use std::os::unix::process::ExitStatusExt as _;
    let b = Bastion::new();
    ok(&b.run(&["init", "--dir", b.path().to_str().unwrap()], None));
    copy_examples(&b.path().join("policies"));
    ok(&b.run(&["vendor", "add", "acme"], None));
    ok(&b.run(
        &[
            "user", "add", "tanaka", "--role", "engineer", "--vendor", "acme",
        ],
        None,
    ));
    let commands: &[&[&str]] = &[
        &[
            "ticket",
            "issue",
            "--user",
            "tanaka",
            "--target",
            "fa-db01",
            "--protocol",
            "ssh",
        ],
        &["user", "list"],
        &["vendor", "list"],
        &["audit"],
        &["audit", "--json"],
        &["sessions", "list"],
        &["sessions", "history"],
        &["policy", "check"],
        &["policy", "who-can", "--target", "fa-db01"],
        &["secret", "list"],
    ];
    for args in commands {
        let out = into_closed_pipe(&b, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
        // Ended by SIGPIPE, as `cat` would be, or quietly by itself.
        assert!(
            out.status.signal() == Some(libc::SIGPIPE) || out.status.code().is_some(),
            "{args:?}: {:?}",
            out.status
        );
    }
    // The ticket was issued although nobody read it.
    let audit = ok(&b.run(&["audit", "--kind", "admin_change"], None));
    assert!(
        audit.contains("issued a one-time ticket for tanaka"),
        "{audit}"
    );
}

#[test]
fn user_list_columns_line_up() {
    let b = Bastion::new();
    ok(&b.run(&["init", "--dir", b.path().to_str().unwrap()], None));
    ok(&b.run(&["vendor", "add", "a-vendor-with-a-long-name"], None));
    for name in ["ab", "an-engineer-with-a-long-name"] {
        ok(&b.run(
            &[
                "user",
                "add",
                name,
                "--role",
                "engineer",
                "--vendor",
                "a-vendor-with-a-long-name",
            ],
            None,
        ));
    }
    let list = ok(&b.run(&["user", "list"], None));
    let lines: Vec<&str> = list.lines().collect();
    let header = lines[0];
    for col in [
        "ROLE",
        "VENDOR",
        "ENABLED",
        "LOCKED",
        "KEYS",
        "LAST SIGN-IN",
    ] {
        let at = header.find(col).unwrap_or_else(|| panic!("{col}: {list}"));
        for row in &lines[1..] {
            let before = &row[..at];
            assert!(
                before.ends_with("  ") && !row[at..].starts_with(' '),
                "{col} does not line up:\n{list}"
            );
        }
    }
}

#[test]
fn audit_lines_say_which_time_zone_and_tickets_no_other() {
    let b = Bastion::new();
    ok(&b.run(&["init", "--dir", b.path().to_str().unwrap()], None));
    copy_examples(&b.path().join("policies"));
    ok(&b.run(&["vendor", "add", "acme"], None));
    ok(&b.run(
        &[
            "user", "add", "tanaka", "--role", "engineer", "--vendor", "acme",
        ],
        None,
    ));
    ok(&b.run(
        &[
            "ticket",
            "issue",
            "--user",
            "tanaka",
            "--target",
            "fa-db01",
            "--protocol",
            "ssh",
        ],
        None,
    ));
    let audit = ok(&b.run(&["audit"], None));
    assert!(audit.contains("JST"), "{audit}");
    assert!(
        !audit.contains("UTC"),
        "two time zones in one output:\n{audit}"
    );
}

/// Every command but `init` opens the database without creating it: with
/// the SQLite file gone, `user list` says so and leaves no new file behind.
#[test]
fn missing_database_is_not_recreated() {
    let b = Bastion::new();
    ok(&b.run(&["init", "--dir", b.path().to_str().unwrap()], None));
    let db = b.path().join("sekisho.db");
    for f in ["sekisho.db", "sekisho.db-wal", "sekisho.db-shm"] {
        let _ = std::fs::remove_file(b.path().join(f));
    }
    for args in [
        &["user", "list"][..],
        &["sessions", "list"],
        &["audit"],
        &["secret", "list"],
        &["policy", "check"],
    ] {
        let out = b.run(args, None);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {t}");
        assert!(
            t.contains(&format!(
                "no database at {}: run `sekisho init`",
                db.display()
            )),
            "{args:?}: {t}"
        );
        assert!(!db.exists(), "{args:?} created {}", db.display());
    }
}

/// A file that is not a database, or one with damaged pages, is reported
/// as such by the first command, with SQLite's words, instead of a pool
/// timeout after 30 s.
#[test]
fn damaged_database_is_reported() {
    let b = Bastion::new();
    ok(&b.run(&["init", "--dir", b.path().to_str().unwrap()], None));
    let db = b.path().join("sekisho.db");
    for f in ["sekisho.db-wal", "sekisho.db-shm"] {
        let _ = std::fs::remove_file(b.path().join(f));
    }
    std::fs::write(&db, "this is not a database, it is a note\n".repeat(200)).unwrap();
    let out = b.run(&["user", "list"], None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains(&format!(
            "the database {} is damaged or not a sekisho database (file is not a database)",
            db.display()
        )),
        "{t}"
    );
    assert!(!t.contains("timed out"), "{t}");

    // A real database whose pages after the first were overwritten.
    let b = Bastion::new();
    ok(&b.run(&["init", "--dir", b.path().to_str().unwrap()], None));
    let checkpoint = std::process::Command::new("sqlite3")
        .arg(b.path().join("sekisho.db"))
        .arg("PRAGMA wal_checkpoint(TRUNCATE);")
        .output()
        .expect("the sqlite3 command (Debian package sqlite3)");
    assert!(checkpoint.status.success(), "{checkpoint:?}");
    let mut bytes = std::fs::read(b.path().join("sekisho.db")).unwrap();
    assert!(bytes.len() > 8 * 4096, "{} bytes", bytes.len());
    // Every page after the first (the schema): whatever tables the
    // migrations put where, the ones `user list` reads are damaged.
    for (i, byte) in bytes[4096..].iter_mut().enumerate() {
        *byte = (i * 7919 % 251) as u8;
    }
    std::fs::write(b.path().join("sekisho.db"), bytes).unwrap();
    let out = b.run(&["user", "list"], None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("database disk image is malformed"), "{t}");
}

/// `init` under umask 000 leaves nothing writable by group or others: not
/// the directory it creates (nor its missing parents), not a file or
/// directory inside; keys and the database stay private to their owner.
#[test]
fn init_ignores_a_permissive_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv").join("sekisho");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sekisho"));
    cmd.env_remove("SEKISHO_CONFIG")
        .arg("init")
        .arg("--dir")
        .arg(&dir);
    // SAFETY: umask in the child before exec; async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    ok(&out);
    let mut seen = 0;
    let mut check = |p: &Path| {
        let mode = std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o022, 0, "{} is {mode:o}", p.display());
        seen += 1;
    };
    check(&tmp.path().join("srv"));
    let mut stack = vec![dir.clone()];
    while let Some(p) = stack.pop() {
        check(&p);
        if p.is_dir() {
            for entry in std::fs::read_dir(&p).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    assert!(seen > 8, "only {seen} paths");
    for private in ["keys", "keys/ssh_host_ed25519_key", "sekisho.db"] {
        let mode = std::fs::metadata(dir.join(private))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode & 0o077, 0, "{private} is {mode:o}");
    }
}
