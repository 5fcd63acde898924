use super::*;
use chrono::NaiveDate;

use crate::config::parse_cidr;
use crate::policy::model::{Protocol, Zone};

const BASE: &str = r#"[system]
name = "fa"
zone = "lgwan"

[[target]]
name = "fa-db01"
address = "10.20.0.11"
kind = "physical"
ssh = { account = "maint", credential = "db-maint", host_key = "SHA256:zwxFZkDJRdBjQcMdVAtmpgnwJu8v91OmlxCHrsDj4L8" }
rdp = { account = "Administrator", credential = "db-admin", cert_sha256 = "74:D2:19:31:1D:39:C5:E5:6C:6E:D2:75:20:53:E3:CB:A6:3C:DC:17:15:2B:B9:DF:01:F5:E8:20:32:8F:45:07" }

[[target]]
name = "fa-app01"
address = "10.20.0.12"
kind = "virtual"
ssh = { port = 2222, account = "maint", credential = "app-maint", host_key = "SHA256:/DCXtfUNRs8vzgTkxrG1mRlTVayWLzRyxJvJZ4Y/Azc" }

[[hop]]
from = "fa-app01"
to = "fa-db01"

[[access]]
vendor = "acme"
users = ["tanaka", "suzuki"]
contract = { from = "2026-04-01", until = "2027-03-31" }
hours = "Mon-Fri 08:30-17:15"
max_session = "2h"
protocols = ["ssh", "rdp"]
sources = ["acme-office"]
"#;

fn networks() -> Vec<Network> {
    vec![
        Network {
            name: "acme-office".into(),
            cidrs: vec![parse_cidr("203.0.113.0/24").unwrap()],
            closed: false,
        },
        Network {
            name: "lg-closed-vpn".into(),
            cidrs: vec![parse_cidr("10.99.0.0/16").unwrap()],
            closed: true,
        },
    ]
}

fn load(
    files: &[(&str, &str)],
    creds: Option<&BTreeSet<String>>,
) -> Result<PolicySet, PolicyErrors> {
    let files: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(n, t)| (PathBuf::from(format!("/p/{n}")), t.to_string()))
        .collect();
    let nets = networks();
    PolicySet::parse_files(&files, Some(&nets), creds)
}

/// Loads BASE with one replacement and expects exactly one error.
fn one_error(from: &str, to: &str) -> PolicyError {
    assert!(BASE.contains(from), "fixture lacks {from:?}");
    let text = BASE.replacen(from, to, 1);
    let errs = load(&[("fa.toml", &text)], None).unwrap_err().0;
    assert_eq!(errs.len(), 1, "expected one error, got: {errs:?}");
    errs.into_iter().next().unwrap()
}

fn assert_err(e: &PolicyError, line: usize, field: &str, words: &str) {
    assert_eq!(e.file, PathBuf::from("/p/fa.toml"), "{e}");
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.field, field, "{e}");
    assert!(e.message.contains(words), "{e}");
}

#[test]
fn base_loads() {
    let creds: BTreeSet<String> = ["db-maint", "db-admin", "app-maint"]
        .map(String::from)
        .into();
    let set = load(&[("fa.toml", BASE)], Some(&creds)).unwrap();
    let db = set.target("fa-db01").unwrap();
    assert_eq!(db.ssh.as_ref().unwrap().port, 22);
    assert_eq!(db.rdp.as_ref().unwrap().port, 3389);
    assert_eq!(
        set.target("fa-app01").unwrap().ssh.as_ref().unwrap().port,
        2222
    );
    assert_eq!(
        set.target_by_address("::ffff:10.20.0.12".parse().unwrap())
            .unwrap()
            .name,
        "fa-app01"
    );
    assert!(set.hop_allowed("fa-app01", "fa-db01"));
    assert!(!set.hop_allowed("fa-db01", "fa-app01"));
    let a = set.access().next().unwrap();
    assert_eq!(a.max_session, Duration::from_secs(7200));
    assert_eq!(a.protocols, vec![Protocol::Ssh, Protocol::Rdp]);
}

#[test]
fn unknown_keys_name_line_and_field() {
    let e = one_error("kind = \"virtual\"", "kind = \"virtual\"\nbogus = 1");
    assert_err(&e, 16, "target[1].bogus", "unknown field");
    let e = one_error("ssh = { port = 2222,", "ssh = { prot = 2222,");
    assert_err(&e, 16, "target[1].ssh.prot", "unknown field");
    let e = one_error("[[hop]]", "colour = \"red\"\n[[hop]]");
    assert_err(&e, 18, "target[1].colour", "unknown field");
    let e = one_error("[system]\n", "[system]\nowner = \"x\"\n");
    assert_err(&e, 2, "system.owner", "unknown field");
}

#[test]
fn syntax_and_type_errors_have_lines() {
    let e = one_error("max_session = \"2h\"", "max_session = 2h");
    assert_eq!(e.line, Some(27), "{e}");
    assert_eq!(e.field, "access[0].max_session", "{e}");
    let e = one_error("[\"tanaka\", \"suzuki\"]", "[\"tanaka\", 7]");
    assert_eq!(
        (e.line, e.field.as_str()),
        (Some(24), "access[0].users"),
        "{e}"
    );
    let e = one_error("port = 2222", "port = \"2222\"");
    assert_eq!(e.line, Some(16), "{e}");
    assert_eq!(e.field, "target[1].ssh.port", "{e}");
}

#[test]
fn unknown_credential() {
    let creds: BTreeSet<String> = ["db-maint", "db-admin"].map(String::from).into();
    let errs = load(&[("fa.toml", BASE)], Some(&creds)).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_err(
        &errs[0],
        16,
        "target[1].ssh.credential",
        "unknown credential \"app-maint\"",
    );
}

#[test]
fn pins_are_required_and_checked() {
    let e = one_error(
        ", host_key = \"SHA256:/DCXtfUNRs8vzgTkxrG1mRlTVayWLzRyxJvJZ4Y/Azc\"",
        "",
    );
    assert_err(&e, 16, "target[1].ssh.host_key", "cannot be reached");
    let e = one_error("SHA256:/DCX", "MD5:/DCX");
    assert_err(
        &e,
        16,
        "target[1].ssh.host_key",
        "not an SSH host key fingerprint",
    );
    let text = BASE.replacen("cert_sha256 = \"74:D2", "host_key = \"74:D2", 1);
    let errs = load(&[("fa.toml", &text)], None).unwrap_err().0;
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_err(
        &errs[0],
        10,
        "target[0].rdp.host_key",
        "pinned with cert_sha256",
    );
    assert_err(&errs[1], 10, "target[0].rdp.cert_sha256", "missing");
    let e = one_error("\"74:D2:", "\"D2:");
    assert_err(&e, 10, "target[0].rdp.cert_sha256", "32 bytes");
}

#[test]
fn target_fields() {
    let e = one_error("address = \"10.20.0.12\"", "address = \"fa-app01.local\"");
    assert_err(&e, 14, "target[1].address", "not an IP address");
    let e = one_error("kind = \"virtual\"", "kind = \"vm\"");
    assert_err(&e, 15, "target[1].kind", "physical or virtual");
    let e = one_error("kind = \"virtual\"\n", "");
    assert_err(&e, 12, "target[1].kind", "missing");
    let text = BASE.replacen("name = \"fa-app01\"", "name = \"fa app01\"", 1);
    let errs = load(&[("fa.toml", &text)], None).unwrap_err().0;
    assert_err(&errs[0], 13, "target[1].name", "not a name");
    let e = one_error("port = 2222", "port = 70000");
    assert_err(&e, 16, "target[1].ssh.port", "not a port");
    let e = one_error("zone = \"lgwan\"", "zone = \"dmz\"");
    assert_err(&e, 3, "system.zone", "not a zone");
}

#[test]
fn duplicate_target_across_files() {
    let other = "[system]\nname = \"tax\"\nzone = \"lgwan\"\n\n[[target]]\nname = \"fa-db01\"\naddress = \"10.21.0.1\"\nkind = \"physical\"\nssh = { account = \"a\", credential = \"c\", host_key = \"SHA256:zwxFZkDJRdBjQcMdVAtmpgnwJu8v91OmlxCHrsDj4L8\" }\n";
    let errs = load(&[("fa.toml", BASE), ("tax.toml", other)], None)
        .unwrap_err()
        .0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    assert_eq!(e.file, PathBuf::from("/p/tax.toml"));
    assert_eq!(e.line, Some(6));
    assert_eq!(e.field, "target[0].name");
    assert!(
        e.message
            .contains("duplicate target \"fa-db01\": already defined at fa.toml:6"),
        "{e}"
    );
}

#[test]
fn overlapping_names_and_addresses() {
    let e = one_error("address = \"10.20.0.12\"", "address = \"10.20.0.11\"");
    assert_err(
        &e,
        14,
        "target[1].address",
        "already used by target \"fa-db01\"",
    );
    let text = BASE.replacen("name = \"fa-app01\"", "name = \"fa\"", 1);
    let errs = load(&[("fa.toml", &text)], None).unwrap_err().0;
    // Renaming the target also leaves the hop naming an unknown target.
    assert!(
        errs.iter().any(|e| e.line == Some(13)
            && e.field == "target[1].name"
            && e.message.contains("name of a system")),
        "{errs:?}"
    );
    let other = "[system]\nname = \"fa\"\nzone = \"internet\"\n";
    let errs = load(&[("fa.toml", BASE), ("fa2.toml", other)], None)
        .unwrap_err()
        .0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].file, PathBuf::from("/p/fa2.toml"));
    assert_eq!(
        (errs[0].line, errs[0].field.as_str()),
        (Some(2), "system.name")
    );
    assert!(
        errs[0].message.contains("already defined at fa.toml:2"),
        "{}",
        errs[0]
    );
}

#[test]
fn hops() {
    let e = one_error("to = \"fa-db01\"", "to = \"fa-db09\"");
    assert_err(&e, 20, "hop[0].to", "hop to unknown target \"fa-db09\"");
    let e = one_error("from = \"fa-app01\"", "from = \"nowhere\"");
    assert_err(&e, 19, "hop[0].from", "hop from unknown target");
    let e = one_error(
        "from = \"fa-app01\"\nto = \"fa-db01\"",
        "from = \"fa-db01\"\nto = \"fa-app01\"",
    );
    assert_err(&e, 20, "hop[0].to", "no rdp endpoint");
    let e = one_error(
        "from = \"fa-app01\"\nto = \"fa-db01\"",
        "from = \"fa-app01\"",
    );
    assert_err(&e, 18, "hop[0].to", "missing");
    let dup = BASE.replacen(
        "[[access]]",
        "[[hop]]\nfrom = \"fa-app01\"\nto = \"fa-db01\"\n\n[[access]]",
        1,
    );
    let errs = load(&[("fa.toml", &dup)], None).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_err(&errs[0], 23, "hop[1]", "duplicate hop");
}

#[test]
fn hop_into_mynumber_from_other_zone() {
    let juki = r#"[system]
name = "juki"
zone = "mynumber"

[[target]]
name = "juki-db01"
address = "10.30.0.21"
kind = "physical"
rdp = { account = "a", credential = "c", cert_sha256 = "1200e10fa65b72171301b90276849297bc3096001376d129ee659ec0e91dfae6" }

[[hop]]
from = "fa-app01"
to = "juki-db01"
"#;
    let errs = load(&[("fa.toml", BASE), ("juki.toml", juki)], None)
        .unwrap_err()
        .0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].file, PathBuf::from("/p/juki.toml"));
    assert_eq!(
        (errs[0].line, errs[0].field.as_str()),
        (Some(12), "hop[0].from")
    );
    assert!(errs[0].message.contains("My Number"), "{}", errs[0]);
}

#[test]
fn access_fields() {
    let e = one_error("until = \"2027-03-31\"", "until = \"2026-03-31\"");
    assert_err(
        &e,
        25,
        "access[0].contract.until",
        "ends (2026-03-31) before it starts (2026-04-01)",
    );
    let e = one_error("until = \"2027-03-31\"", "until = \"2027-02-30\"");
    assert_err(&e, 25, "access[0].contract.until", "not a date");
    let e = one_error("\"Mon-Fri 08:30-17:15\"", "\"Mon-Fri 08:30-17:75\"");
    assert_err(&e, 26, "access[0].hours", "not a time");
    let e = one_error("\"Mon-Fri 08:30-17:15\"", "\"Weekdays 08:30-17:15\"");
    assert_err(&e, 26, "access[0].hours", "not a day");
    let e = one_error("max_session = \"2h\"", "max_session = \"0\"");
    assert_err(&e, 27, "access[0].max_session", "longer than 0");
    let e = one_error("max_session = \"2h\"", "max_session = \"8d\"");
    assert_err(&e, 27, "access[0].max_session", "limit");
    let e = one_error("[\"ssh\", \"rdp\"]", "[\"ssh\", \"vnc\"]");
    assert_err(&e, 28, "access[0].protocols[1]", "not a protocol");
    let e = one_error("[\"tanaka\", \"suzuki\"]", "[\"tanaka\", \"tanaka\"]");
    assert_err(&e, 24, "access[0].users[1]", "listed twice");
    let e = one_error("users = [\"tanaka\", \"suzuki\"]\n", "");
    assert_err(&e, 22, "access[0].users", "missing");
    let e = one_error("vendor = \"acme\"\n", "");
    assert_err(&e, 22, "access[0].vendor", "missing");
}

#[test]
fn sources_deny_by_default() {
    let e = one_error("sources = [\"acme-office\"]\n", "");
    assert_err(&e, 22, "access[0].sources", "missing");
    let e = one_error("sources = [\"acme-office\"]", "sources = []");
    assert_err(&e, 29, "access[0].sources", "is empty");
    let e = one_error(
        "sources = [\"acme-office\"]",
        "sources = [\"acme-offfice\"]",
    );
    assert_err(
        &e,
        29,
        "access[0].sources[0]",
        "unknown network \"acme-offfice\"",
    );
    // Without networks, names are not checked.
    let text = BASE.replacen("\"acme-office\"", "\"anything\"", 1);
    let files = vec![(PathBuf::from("/p/fa.toml"), text)];
    assert!(PolicySet::parse_files(&files, None, None).is_ok());
}

#[test]
fn mynumber_sources_must_be_closed() {
    let text = BASE.replacen("zone = \"lgwan\"", "zone = \"mynumber\"", 1);
    let errs = load(&[("fa.toml", &text)], None).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_err(&errs[0], 29, "access[0].sources[0]", "not closed");
    let ok = text.replacen("\"acme-office\"", "\"lg-closed-vpn\"", 1);
    assert!(load(&[("fa.toml", &ok)], None).is_ok());
}

#[test]
fn access_targets_must_exist_in_system() {
    let text = BASE.replacen(
        "vendor = \"acme\"",
        "vendor = \"acme\"\ntargets = [\"fa-app01\", \"fa-app09\"]",
        1,
    );
    let errs = load(&[("fa.toml", &text)], None).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_err(
        &errs[0],
        24,
        "access[0].targets[1]",
        "unknown target \"fa-app09\"",
    );
}

#[test]
fn several_errors_are_all_reported() {
    let text = BASE
        .replacen("kind = \"virtual\"", "kind = \"vm\"", 1)
        .replacen("max_session = \"2h\"", "max_session = \"2 hours\"", 1);
    let errs = load(&[("fa.toml", &text)], None).unwrap_err();
    assert_eq!(errs.0.len(), 2, "{errs}");
    let shown = errs.to_string();
    assert!(shown.contains("/p/fa.toml:15: target[1].kind: "), "{shown}");
    assert!(
        shown.contains("/p/fa.toml:27: access[0].max_session: "),
        "{shown}"
    );
}

#[test]
fn missing_system() {
    let errs = load(&[("x.toml", "[[hop]]\nfrom = \"a\"\nto = \"b\"\n")], None)
        .unwrap_err()
        .0;
    assert_eq!(errs[0].field, "system");
    assert_eq!(errs[0].line, Some(1));
}

#[test]
fn contract_dates_may_be_toml_dates() {
    let text = BASE.replacen(
        "from = \"2026-04-01\", until = \"2027-03-31\"",
        "from = 2026-04-01, until = 2027-03-31",
        1,
    );
    let set = load(&[("fa.toml", &text)], None).unwrap();
    let a = set.access().next().unwrap();
    assert_eq!(
        a.contract.until,
        NaiveDate::from_ymd_opt(2027, 3, 31).unwrap()
    );
}

#[test]
fn example_policies_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let nets = vec![
        Network {
            name: "acme-office".into(),
            cidrs: vec![parse_cidr("203.0.113.0/24").unwrap()],
            closed: false,
        },
        Network {
            name: "acme-sub-office".into(),
            cidrs: vec![parse_cidr("198.51.100.0/24").unwrap()],
            closed: false,
        },
        Network {
            name: "lg-closed-vpn".into(),
            cidrs: vec![parse_cidr("10.99.0.0/16").unwrap()],
            closed: true,
        },
    ];
    let set = PolicySet::load_dir(&dir, &nets, None).unwrap();
    assert_eq!(set.systems().count(), 2);
    assert_eq!(set.target("juki-db01").unwrap().zone, Zone::MyNumber);
}

/// A system of `n` physical targets, a hop from each even target to the
/// next, and one access entry naming every target.
fn many_targets(n: usize) -> String {
    let mut text = String::from("[system]\nname = \"big\"\nzone = \"lgwan\"\n\n");
    for i in 0..n {
        text.push_str(&format!(
            "[[target]]\nname = \"big-{i}\"\naddress = \"10.{}.{}.{}\"\nkind = \"physical\"\n\
             rdp = {{ account = \"a\", credential = \"c\", cert_sha256 = \"{}\" }}\n\n",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255,
            "ab".repeat(32),
        ));
    }
    for i in (0..n.saturating_sub(1)).step_by(2) {
        text.push_str(&format!(
            "[[hop]]\nfrom = \"big-{i}\"\nto = \"big-{}\"\n\n",
            i + 1
        ));
    }
    let names: Vec<String> = (0..n).map(|i| format!("\"big-{i}\"")).collect();
    text.push_str(&format!(
        "[[access]]\nvendor = \"acme\"\nusers = [\"tanaka\"]\ntargets = [{}]\n\
         contract = {{ from = \"2026-04-01\", until = \"2027-03-31\" }}\nhours = \"always\"\n\
         max_session = \"2h\"\nprotocols = [\"rdp\"]\nsources = [\"acme-office\"]\n",
        names.join(", ")
    ));
    text
}

/// 10 000 targets with hops and an access entry naming all of them load
/// (this took minutes while each line lookup rescanned the file and each
/// name lookup scanned every target), and a line found at the very end of
/// such a file is still right.
#[test]
fn ten_thousand_targets_load() {
    let n = 10_000;
    let text = many_targets(n);
    let set = load(&[("big.toml", &text)], None).unwrap();
    assert_eq!(set.targets().count(), n);
    assert_eq!(set.hops().count(), n / 2);
    assert_eq!(
        set.access().next().unwrap().targets.as_ref().unwrap().len(),
        n
    );
    assert!(set.hop_allowed("big-9998", "big-9999"));

    let duplicate = format!(
        "{text}\n[[target]]\nname = \"big-9999\"\naddress = \"10.200.0.1\"\nkind = \"physical\"\n\
         rdp = {{ account = \"a\", credential = \"c\", cert_sha256 = \"{}\" }}\n",
        "ab".repeat(32)
    );
    let errs = load(&[("big.toml", &duplicate)], None).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    let name_line = duplicate.lines().count() - 3;
    assert_eq!(errs[0].line, Some(name_line), "{}", errs[0]);
    assert_eq!(errs[0].field, format!("target[{n}].name"));
    assert!(errs[0].message.contains("duplicate target"), "{}", errs[0]);
}

/// A `*.toml` that cannot be read is an error with its path (and the line
/// and column of the first bad byte), never skipped; editor lock files
/// (`.#name.toml`, dangling links) are not policies.
#[test]
fn unreadable_policy_files_are_errors() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fa.toml"), BASE).unwrap();
    symlink("nowhere.toml", dir.path().join("dangling.toml")).unwrap();
    symlink("loop-b.toml", dir.path().join("loop-a.toml")).unwrap();
    symlink("loop-a.toml", dir.path().join("loop-b.toml")).unwrap();
    std::fs::create_dir(dir.path().join("dir.toml")).unwrap();
    std::fs::write(
        dir.path().join("latin1.toml"),
        b"[system]\nname = \"x\"\ntitle = \"caf\xe9\"\n",
    )
    .unwrap();
    symlink("tanaka@host.1234", dir.path().join(".#fa.toml")).unwrap();

    let errs = PolicySet::load_dir(dir.path(), &networks(), None)
        .unwrap_err()
        .0;
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(errs.len(), 5, "{shown:#?}");
    let find = |name: &str| {
        errs.iter()
            .find(|e| e.file == dir.path().join(name))
            .unwrap_or_else(|| panic!("no error for {name}: {shown:#?}"))
    };
    assert!(
        find("dangling.toml").message.contains("No such file"),
        "{shown:#?}"
    );
    assert!(
        find("loop-a.toml").message.contains("symbolic links"),
        "{shown:#?}"
    );
    assert!(find("loop-b.toml").message.contains("symbolic links"));
    assert!(find("dir.toml").message.contains("not a regular file"));
    let latin1 = find("latin1.toml");
    assert_eq!(latin1.line, Some(3));
    assert!(
        latin1.message.contains("not UTF-8") && latin1.message.contains("column 13"),
        "{latin1}"
    );
}

/// BASE with an `[approval]` table after `[system]` (lines 4 onward).
fn with_approval(table: &str) -> String {
    BASE.replacen(
        "zone = \"lgwan\"\n",
        &format!("zone = \"lgwan\"\n{table}"),
        1,
    )
}

#[test]
fn approval_routes_load() {
    let text = with_approval(
        "\n[approval]\nrequired = true\nsteps = [[\"role:approver\"], [\"kimura\", \"sato\"]]\n",
    );
    let set = load(&[("fa.toml", &text)], None).unwrap();
    let sys = set.system("fa").unwrap();
    assert!(sys.requires_approval());
    let route = sys.route();
    assert_eq!(route.steps.len(), 2);
    assert!(route.steps[0].approver_role && route.steps[0].people.is_empty());
    assert!(route.steps[0].admits("anyone", true));
    assert!(!route.steps[0].admits("anyone", false));
    assert_eq!(route.steps[1].people, vec!["kimura", "sato"]);
    assert!(route.steps[1].admits("sato", false));
    assert!(!route.steps[1].admits("tanaka", true));
    // `required` defaults to true once [approval] is written.
    let text = with_approval("\n[approval]\nsteps = [[\"kimura\"]]\n");
    let set = load(&[("fa.toml", &text)], None).unwrap();
    assert!(set.system("fa").unwrap().requires_approval());
    // Not required: requests may be filed, sessions do not need one.
    let text = with_approval("\n[approval]\nrequired = false\nsteps = [[\"kimura\"]]\n");
    let set = load(&[("fa.toml", &text)], None).unwrap();
    assert!(!set.system("fa").unwrap().requires_approval());
    // No [approval]: not required, one step for any approver.
    let set = load(&[("fa.toml", BASE)], None).unwrap();
    let sys = set.system("fa").unwrap();
    assert!(!sys.requires_approval());
    assert_eq!(sys.route(), crate::policy::ApprovalRoute::default_route());
}

#[test]
fn approval_route_errors_name_line_and_field() {
    let check = |table: &str, line: usize, field: &str, words: &str| {
        let text = with_approval(table);
        let errs = load(&[("fa.toml", &text)], None).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_err(&errs[0], line, field, words);
    };
    check(
        "\n[approval]\nrequired = true\n",
        5,
        "approval.steps",
        "missing",
    );
    check(
        "\n[approval]\nsteps = []\n",
        6,
        "approval.steps",
        "one or two steps",
    );
    check(
        "\n[approval]\nsteps = [[\"a\"], [\"b\"], [\"c\"]]\n",
        6,
        "approval.steps",
        "has 3 steps",
    );
    check(
        "\n[approval]\nsteps = [[]]\n",
        6,
        "approval.steps[0]",
        "is empty",
    );
    check(
        "\n[approval]\nsteps = [[\"kimura\", \"kimura\"]]\n",
        6,
        "approval.steps[0][1]",
        "listed twice",
    );
    check(
        "\n[approval]\nsteps = [[\"group:somebody\"]]\n",
        6,
        "approval.steps[0][0]",
        "neither a user name",
    );
    check(
        "\n[approval]\nsteps = [[\"kimura\"]]\nrequired = \"yes\"\n",
        7,
        "approval.required",
        "",
    );
    check(
        "\n[approval]\nsteps = [[\"kimura\"]]\nwho = 1\n",
        7,
        "approval.who",
        "unknown field",
    );
}

/// An edit is checked against the whole directory with the new text in
/// place of the file (or as a new file), before anything is written: the
/// other files' errors and cross-file rules count, the file's own old
/// problems do not.
#[test]
fn a_replacement_text_is_checked_with_the_rest_of_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let fa = dir.path().join("fa.toml");
    std::fs::write(&fa, "this is not toml =").unwrap();
    let other = BASE
        .replace("name = \"fa\"", "name = \"jk\"")
        .replace("fa-db01", "jk-db01")
        .replace("fa-app01", "jk-app01")
        .replace("10.20.0.1", "10.30.0.1");
    std::fs::write(dir.path().join("jk.toml"), &other).unwrap();
    let nets = networks();
    // The broken file on disk is replaced by a valid text: the set loads.
    let set = PolicySet::load_dir_replacing(dir.path(), &nets, None, &fa, BASE).unwrap();
    assert_eq!(set.systems().count(), 2);
    // Cross-file rules apply: a target name the other file already uses.
    let clash = BASE.replace("fa-app01", "jk-app01");
    let errs = PolicySet::load_dir_replacing(dir.path(), &nets, None, &fa, &clash)
        .unwrap_err()
        .0;
    assert!(
        errs.iter().any(|e| e.message.contains("jk-app01")),
        "{errs:#?}"
    );
    // Errors point at lines of the new text.
    let bad = BASE.replace("max_session = \"2h\"", "max_session = \"2 hours\"");
    let errs = PolicySet::load_dir_replacing(dir.path(), &nets, None, &fa, &bad)
        .unwrap_err()
        .0;
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].file, fa);
    assert_eq!(errs[0].field, "access[0].max_session");
    assert_eq!(
        errs[0].line,
        Some(bad.lines().position(|l| l.contains("2 hours")).unwrap() + 1)
    );
    // Nothing was written.
    assert_eq!(std::fs::read_to_string(&fa).unwrap(), "this is not toml =");
}
