//! `sekisho policy check | explain | who-can`, run as the built binary on
//! the example policies and on broken copies of them.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

const NETWORKS: &str = r#"
[[network]]
name = "acme-office"
cidrs = ["203.0.113.0/24"]

[[network]]
name = "acme-sub-office"
cidrs = ["198.51.100.0/24"]

[[network]]
name = "lg-closed-vpn"
cidrs = ["10.99.0.0/16"]
closed = true
"#;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A deployment directory made by `sekisho init`, with sekisho.toml holding
/// the example networks, a copy of the example policies in `policies/`, and
/// every credential they name stored in the secret store.
fn deployment() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    Command::cargo_bin("sekisho")
        .unwrap()
        .env_remove("SEKISHO_CONFIG")
        .arg("init")
        .arg("--dir")
        .arg(dir.path())
        .assert()
        .success();
    std::fs::write(dir.path().join("sekisho.toml"), NETWORKS).unwrap();
    let pol = dir.path().join("policies");
    // The realistic examples (policies/*.toml), not the loopback demo in
    // policies/demo/.
    for entry in std::fs::read_dir(examples()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&p, pol.join(p.file_name().unwrap())).unwrap();
        }
    }
    for name in credential_names(&pol) {
        sekisho(dir.path())
            .args(["secret", "set", &name])
            .write_stdin("example-secret\n")
            .assert()
            .success();
    }
    dir
}

/// The `credential = "..."` names the policies in `dir` use.
fn credential_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for part in text.split("credential = \"").skip(1) {
            if let Some(end) = part.find('"') {
                names.push(part[..end].to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

fn sekisho(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("sekisho").unwrap();
    cmd.current_dir(dir)
        .env_remove("SEKISHO_CONFIG")
        .arg("--config")
        .arg(dir.join("sekisho.toml"));
    cmd
}

/// Replaces text in a policy file; returns the 1-based line where the
/// replacement now is.
fn edit(dir: &Path, file: &str, from: &str, to: &str) -> usize {
    let path = dir.join("policies").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text
        .find(from)
        .unwrap_or_else(|| panic!("{file} lacks {from:?}"));
    let new = text.replacen(from, to, 1);
    std::fs::write(&path, new).unwrap();
    text[..at].matches('\n').count() + 1
}

/// Runs `policy check`, expects exit 1 and an error line naming
/// `file:line: field:` containing `words`.
fn check_fails(dir: &Path, file: &str, line: usize, field: &str, words: &str) {
    let prefix = format!("{file}:{line}: {field}: ");
    sekisho(dir)
        .args(["policy", "check"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(prefix.clone()))
        .stdout(predicate::function(|out: &str| {
            out.lines()
                .any(|l| l.contains(&prefix) && l.contains(words))
        }));
}

#[test]
fn examples_pass_check() {
    let dir = deployment();
    sekisho(dir.path())
        .args(["policy", "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "2 systems, 5 targets, 2 hops, 3 access entries: OK",
        ));
}

#[test]
fn check_without_config_notes_unchecked_networks() {
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = Command::cargo_bin("sekisho").unwrap();
    cmd.current_dir(empty.path())
        .env_remove("SEKISHO_CONFIG")
        .args(["policy", "check"])
        .arg(examples())
        .assert()
        .success()
        .stdout(predicate::str::contains("network names in `sources`"))
        .stdout(predicate::str::contains(": OK"));
    // Without a directory either, there is nothing to check.
    let mut cmd = Command::cargo_bin("sekisho").unwrap();
    cmd.current_dir(empty.path())
        .env_remove("SEKISHO_CONFIG")
        .args(["policy", "check"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no configuration"));
}

#[test]
fn unknown_key() {
    let dir = deployment();
    let line = edit(
        dir.path(),
        "fa.toml",
        "kind = \"virtual\"",
        "kind = \"virtual\"\nram = \"8G\"",
    ) + 1;
    check_fails(
        dir.path(),
        "fa.toml",
        line,
        "target[1].ram",
        "unknown field",
    );
}

#[test]
fn duplicate_target() {
    let dir = deployment();
    let line = edit(
        dir.path(),
        "juki.toml",
        "name = \"juki-ap01\"",
        "name = \"fa-app01\"",
    );
    check_fails(
        dir.path(),
        "juki.toml",
        line,
        "target[1].name",
        "duplicate target \"fa-app01\"",
    );
}

#[test]
fn hop_to_unknown_target() {
    let dir = deployment();
    let line = edit(
        dir.path(),
        "fa.toml",
        "to = \"fa-db01\"",
        "to = \"fa-db02\"",
    );
    check_fails(
        dir.path(),
        "fa.toml",
        line,
        "hop[0].to",
        "hop to unknown target \"fa-db02\"",
    );
}

#[test]
fn contract_ending_before_it_starts() {
    let dir = deployment();
    let line = edit(
        dir.path(),
        "juki.toml",
        "until = \"2027-03-31\"",
        "until = \"2026-03-31\"",
    );
    check_fails(
        dir.path(),
        "juki.toml",
        line,
        "access[0].contract.until",
        "before it starts",
    );
}

#[test]
fn overlapping_system_names() {
    let dir = deployment();
    let line = edit(dir.path(), "juki.toml", "name = \"juki\"", "name = \"fa\"");
    check_fails(
        dir.path(),
        "juki.toml",
        line,
        "system.name",
        "already defined at fa.toml",
    );
}

#[test]
fn bad_hours() {
    let dir = deployment();
    let line = edit(
        dir.path(),
        "fa.toml",
        "hours = \"Mon-Fri 08:30-17:15\"",
        "hours = \"Mon-Fri 8:30-17:15\"",
    );
    check_fails(dir.path(), "fa.toml", line, "access[0].hours", "not a time");
}

#[test]
fn missing_pin() {
    let dir = deployment();
    let line = edit(
        dir.path(),
        "juki.toml",
        ", host_key = \"SHA256:LS6wRGFJaMtDYw4bFafiyoXqzXPu+9b4aFvLco4WUzc\"",
        "",
    );
    check_fails(
        dir.path(),
        "juki.toml",
        line,
        "target[1].ssh.host_key",
        "cannot be reached",
    );
}

#[test]
fn unknown_network_and_mynumber_from_open_network() {
    let dir = deployment();
    let line = edit(
        dir.path(),
        "fa.toml",
        "sources = [\"acme-office\"]",
        "sources = [\"acme-ofice\"]",
    );
    check_fails(
        dir.path(),
        "fa.toml",
        line,
        "access[0].sources[0]",
        "unknown network \"acme-ofice\"",
    );
    let dir = deployment();
    let line = edit(
        dir.path(),
        "juki.toml",
        "sources = [\"lg-closed-vpn\"]",
        "sources = [\"acme-office\"]",
    );
    check_fails(
        dir.path(),
        "juki.toml",
        line,
        "access[0].sources[0]",
        "not closed",
    );
}

#[test]
fn several_errors_in_several_files() {
    let dir = deployment();
    edit(dir.path(), "fa.toml", "kind = \"virtual\"", "kind = \"vm\"");
    edit(
        dir.path(),
        "juki.toml",
        "max_session = \"1h30m\"",
        "max_session = \"90\"",
    );
    sekisho(dir.path())
        .args(["policy", "check"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("target[1].kind"))
        .stdout(predicate::str::contains("access[0].max_session"))
        .stdout(predicate::str::contains("2 errors"));
}

fn explain(dir: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    sekisho(dir).args(["policy", "explain"]).args(args).assert()
}

#[test]
fn explain_allow_and_deny() {
    let dir = deployment();
    let d = dir.path();
    let base = [
        "--user", "tanaka", "--vendor", "acme", "--target", "fa-db01",
    ];
    explain(d, &[&base[..], &["--protocol", "ssh", "--from", "203.0.113.5", "--at", "2026-11-24 16:00"]].concat())
        .code(0)
        .stdout(predicate::str::contains(
            "ALLOW ssh tanaka → fa-db01 (10.20.0.11:22 as maint) until 2026-11-24 17:15 JST (end of allowed hours); access: fa.toml access[0] vendor acme",
        ));
    explain(
        d,
        &[
            &base[..],
            &[
                "--protocol",
                "ssh",
                "--from",
                "203.0.113.5",
                "--at",
                "2026-11-24T18:00:00+09:00",
            ],
        ]
        .concat(),
    )
    .code(1)
    .stdout(predicate::str::contains(
        "DENY: outside allowed hours (Mon-Fri 08:30-17:15 Asia/Tokyo)",
    ))
    .stdout(predicate::str::contains("[rule: hours]"));
    explain(
        d,
        &[
            &base[..],
            &["--protocol", "ssh", "--at", "2026-11-24 10:00"],
        ]
        .concat(),
    )
    .code(1)
    .stdout(predicate::str::contains("[rule: source]"));
}

#[test]
fn explain_rdp_rule_and_hop() {
    let dir = deployment();
    let d = dir.path();
    let who = [
        "--user",
        "tanaka",
        "--vendor",
        "acme",
        "--protocol",
        "rdp",
        "--at",
        "2026-11-24 10:00",
    ];
    explain(
        d,
        &[&who[..], &["--target", "fa-app01", "--from", "203.0.113.5"]].concat(),
    )
    .code(1)
    .stdout(predicate::str::contains(
        "use the terminal (SSH) connection",
    ))
    .stdout(predicate::str::contains("[rule: rdp_virtual]"));
    explain(
        d,
        &[&who[..], &["--target", "fa-db01", "--from", "10.20.0.12"]].concat(),
    )
    .code(1)
    .stdout(predicate::str::contains("[rule: hop_no_parent]"));
    explain(
        d,
        &[
            &who[..],
            &[
                "--target",
                "fa-db01",
                "--from",
                "10.20.0.12",
                "--live-on",
                "fa-app01",
            ],
        ]
        .concat(),
    )
    .code(0)
    .stdout(predicate::str::contains("ALLOW rdp tanaka → fa-db01"))
    .stdout(predicate::str::contains(
        "hop from your live session on fa-app01",
    ));
}

#[test]
fn explain_subcontractor_and_mynumber() {
    let dir = deployment();
    let d = dir.path();
    explain(
        d,
        &[
            "--user",
            "sato",
            "--vendor",
            "acme-sub,acme",
            "--target",
            "fa-app01",
            "--protocol",
            "ssh",
            "--from",
            "198.51.100.7",
            "--at",
            "2026-11-28 23:00",
        ],
    )
    .code(0)
    .stdout(predicate::str::contains("ALLOW ssh sato → fa-app01"))
    .stdout(predicate::str::contains("fa.toml access[1]"));
    explain(
        d,
        &[
            "--user",
            "sato",
            "--vendor",
            "acme-sub,acme",
            "--target",
            "fa-db01",
            "--protocol",
            "ssh",
            "--from",
            "198.51.100.7",
            "--at",
            "2026-11-24 10:00",
        ],
    )
    .code(1)
    .stdout(predicate::str::contains("[rule: no_access]"));
    explain(
        d,
        &[
            "--user",
            "yamada",
            "--vendor",
            "kitaden",
            "--target",
            "juki-db01",
            "--protocol",
            "ssh",
            "--from",
            "203.0.113.5",
            "--at",
            "2026-11-24 10:00",
        ],
    )
    .code(1)
    .stdout(predicate::str::contains("[rule: mynumber_closed]"));
    explain(
        d,
        &[
            "--user",
            "yamada",
            "--vendor",
            "kitaden",
            "--target",
            "juki-db01",
            "--protocol",
            "ssh",
            "--from",
            "10.99.3.4",
            "--at",
            "2026-11-24 10:00",
        ],
    )
    .code(0)
    .stdout(predicate::str::contains(
        "until 2026-11-24 11:30 JST (longest session allowed)",
    ));
}

#[test]
fn explain_needs_a_vendor_and_a_valid_time() {
    let dir = deployment();
    explain(
        dir.path(),
        &[
            "--user",
            "tanaka",
            "--target",
            "fa-db01",
            "--protocol",
            "ssh",
        ],
    )
    .code(2)
    .stderr(predicate::str::contains("--vendor"));
    explain(
        dir.path(),
        &[
            "--user",
            "tanaka",
            "--vendor",
            "acme",
            "--target",
            "fa-db01",
            "--protocol",
            "ssh",
            "--at",
            "tomorrow",
        ],
    )
    .code(2)
    .stderr(predicate::str::contains("--at \"tomorrow\""));
    explain(
        dir.path(),
        &[
            "--user",
            "tanaka",
            "--vendor",
            "acme",
            "--target",
            "fa-db01",
            "--protocol",
            "telnet",
        ],
    )
    .code(2)
    .stderr(predicate::str::contains("not a protocol"));
}

#[test]
fn who_can_lists_access_entries() {
    let dir = deployment();
    sekisho(dir.path())
        .args(["policy", "who-can", "--target", "fa-db01"])
        .assert()
        .success()
        .stdout(predicate::str::contains("fa.toml access[0]: vendor acme"))
        .stdout(predicate::str::contains("users:       tanaka, suzuki"))
        .stdout(predicate::str::contains("protocols:   ssh, rdp"))
        .stdout(predicate::str::contains(
            "hours:       Mon-Fri 08:30-17:15 (Asia/Tokyo)",
        ))
        .stdout(predicate::str::contains(
            "contract:    2026-04-01 to 2027-03-31",
        ))
        .stdout(predicate::str::contains(
            "sources:     acme-office (203.0.113.0/24)",
        ))
        .stdout(predicate::str::contains("max session: 2h"))
        .stdout(predicate::str::contains(
            "RDP hops into fa-db01: from fa-app01",
        ))
        // sato's entry is limited to the application servers.
        .stdout(predicate::str::contains("sato").not());
    sekisho(dir.path())
        .args(["policy", "who-can", "--target", "fa-app02"])
        .assert()
        .success()
        .stdout(predicate::str::contains("users:       sato"));
    sekisho(dir.path())
        .args(["policy", "who-can", "--target", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no target named \"nope\""));
}

#[test]
fn explain_refuses_broken_policies() {
    let dir = deployment();
    edit(
        dir.path(),
        "fa.toml",
        "hours = \"Mon-Fri 08:30-17:15\"",
        "hours = \"sometimes\"",
    );
    explain(
        dir.path(),
        &[
            "--user",
            "tanaka",
            "--vendor",
            "acme",
            "--target",
            "fa-db01",
            "--protocol",
            "ssh",
        ],
    )
    .code(2)
    .stderr(predicate::str::contains("run `sekisho policy check`"))
    .stderr(predicate::str::contains("access[0].hours"));
}

/// A policy file that cannot be read (a dangling link, a link loop, text
/// that is not UTF-8) fails the check with its path and why, instead of
/// being left out.
#[test]
fn unreadable_policy_files_fail_check() {
    use std::os::unix::fs::symlink;
    let dir = deployment();
    let pol = dir.path().join("policies");
    symlink("gone.toml", pol.join("dangling.toml")).unwrap();
    symlink("loop-b.toml", pol.join("loop-a.toml")).unwrap();
    symlink("loop-a.toml", pol.join("loop-b.toml")).unwrap();
    std::fs::write(
        pol.join("sjis.toml"),
        b"[system]\nname = \"x\"\n# \x8d\xe0\x96\xb1\nzone = \"lgwan\"\n",
    )
    .unwrap();
    let out = sekisho(dir.path())
        .args(["policy", "check"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&pol.join(name).display().to_string()))
            .unwrap_or_else(|| panic!("no line for {name}:\n{out}"))
            .to_string()
    };
    assert!(
        line("dangling.toml")
            .ends_with("dangling.toml: cannot read: No such file or directory (os error 2)"),
        "{out}"
    );
    assert!(
        line("loop-a.toml").contains("cannot read: Too many levels of symbolic links"),
        "{out}"
    );
    assert!(
        line("loop-b.toml").contains("Too many levels of symbolic links"),
        "{out}"
    );
    assert!(
        line("sjis.toml").contains("sjis.toml:3: not UTF-8 text: invalid byte at column 3"),
        "{out}"
    );
}

/// A valid set can still need attention: `check` passes and lists a
/// contract ending within 30 days and a target no access entry covers (the
/// console's policy page lists the same).
#[test]
fn check_warns_of_contracts_ending_soon_and_targets_nobody_may_reach() {
    let dir = deployment();
    let soon = (chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .date_naive()
        + chrono::Days::new(5))
    .to_string();
    edit(
        dir.path(),
        "fa.toml",
        "until = \"2027-03-31\" }\nhours = \"Mon-Fri 08:30-17:15\"",
        &format!(
            "until = \"{soon}\" }}\ntargets = [\"fa-app01\"]\nhours = \"Mon-Fri 08:30-17:15\""
        ),
    );
    sekisho(dir.path())
        .args(["policy", "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains(": OK"))
        .stdout(predicate::str::contains(format!(
            "warning: fa.toml access[0]: the contract of vendor acme ends {soon} ("
        )))
        .stdout(predicate::str::contains(
            "warning: target fa-db01: no access entry covers it: nobody may reach it",
        ));
}
