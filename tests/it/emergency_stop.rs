//! Emergency stop (緊急停止) end to end, against real peers: two `sekisho
//! serve` processes sharing one database in front of a real sshd, real
//! OpenSSH clients of two vendors, and (with the RDP peers) a real FreeRDP
//! session through xrdp. A stop of one vendor ends that vendor's live
//! sessions on both nodes with the reason shown, refuses new ones (an audit
//! denial with the rule `emergency_stop`) while the other vendor keeps
//! working, and lifting it restores access.

use std::process::{Child, Output, Stdio};
use std::time::Duration;

use crate::support::cli::{bin, json_lines, ok, text};
use crate::support::deployment::SshClient;
use crate::support::install::Install;
use crate::support::process::{Daemon, wait_until};
use crate::support::{free_port, sshd, totp};

const PASSWORD: &str = "stop-e2e-password-1";

/// Two serve processes (nodes) on one SQLite database, one sshd target
/// `db01` (system `lab`), vendors `acme` (tanaka, suzuki) and `beta`
/// (yamada).
struct Site {
    install: Install,
    /// SSH clients of node A and node B.
    a: SshClient,
    b: SshClient,
    keys: Vec<(String, Vec<u8>)>,
    _serves: Vec<Daemon>,
    _sshd: sshd::Sshd,
    _tmp: tempfile::TempDir,
}

fn config(port: u16) -> String {
    format!(
        r#"
[ssh]
listen = "127.0.0.1:{port}"
[rdp]
enabled = false
[auth]
failure_delay = "100ms"
signin_window = "10m"
[sessions]
idle_timeout = "0"
warn_before_end = "1m"
[limits]
max_startups = "1000"
max_startups_per_source = 0
signin_attempts_per_minute = 0
[[network]]
name = "lab"
cidrs = ["127.0.0.0/8"]
"#
    )
}

impl Site {
    fn start() -> Site {
        sshd::require_all();
        let tmp = tempfile::Builder::new()
            .prefix("sekisho-stop-e2e")
            .tempdir()
            .expect("tempdir");
        let (install, _) = Install::init(&bin(), tmp.path());
        let dir = install.dir.clone();
        let target = sshd::Sshd::start(&dir);
        let (port_a, port_b) = (free_port(), free_port());
        install.write_config(&config(port_a));
        // Node B: the same directory, so the same database, keys and policies.
        let config_b = dir.join("sekisho-b.toml");
        std::fs::write(&config_b, config(port_b)).expect("write node B's config");
        install.write_policy(&format!(
            r#"
[system]
name = "lab"
zone = "lgwan"

[[target]]
name = "db01"
address = "127.0.0.1"
kind = "virtual"
ssh = {{ port = {port}, account = "root", credential = "db01-root", host_key = "{fp}" }}

[[access]]
vendor = "acme"
users = ["tanaka", "suzuki"]
contract = {{ from = "2026-01-01", until = "2099-12-31" }}
hours = "always"
max_session = "2h"
protocols = ["ssh"]
sources = ["lab"]

[[access]]
vendor = "beta"
users = ["yamada"]
contract = {{ from = "2026-01-01", until = "2099-12-31" }}
hours = "always"
max_session = "2h"
protocols = ["ssh"]
sources = ["lab"]
"#,
            port = target.port,
            fp = target.host_key_fingerprint
        ));
        install.admin(&["vendor", "add", "acme"], None);
        install.admin(&["vendor", "add", "beta"], None);
        let keys = [("tanaka", "acme"), ("suzuki", "acme"), ("yamada", "beta")]
            .iter()
            .map(|(person, vendor)| {
                let out = install.admin(
                    &[
                        "user",
                        "add",
                        person,
                        "--role",
                        "engineer",
                        "--vendor",
                        vendor,
                        "--password-stdin",
                    ],
                    Some(&format!("{PASSWORD}\n")),
                );
                (person.to_string(), totp::key_from_user_add(&out))
            })
            .collect();
        install.secrets(&[("db01-root", &target.client_key_pem)]);
        install.check_policy();
        let serve_a = install.serve(
            &install.config(),
            "info",
            &dir.join("serve-a.log"),
            &[port_a],
        );
        let serve_b = install.serve(&config_b, "info", &dir.join("serve-b.log"), &[port_b]);
        let a = SshClient::setup(&dir, port_a);
        let b_dir = dir.join("client-b");
        std::fs::create_dir_all(&b_dir).expect("client-b");
        let b = SshClient::setup(&b_dir, port_b);
        Site {
            install,
            a,
            b,
            keys,
            _serves: vec![serve_a, serve_b],
            _sshd: target,
            _tmp: tmp,
        }
    }

    fn code(&self, person: &str) -> String {
        let key = &self
            .keys
            .iter()
            .find(|(p, _)| p == person)
            .expect("a known person")
            .1;
        totp::code_ahead(key, 0)
    }

    /// A session of `person` on db01 through `node` running `remote`,
    /// left running; its output piped.
    fn spawn(&self, node: &SshClient, person: &str, remote: &str) -> Child {
        node.command(
            &[],
            &format!("{person}@db01"),
            "127.0.0.1",
            PASSWORD,
            &self.code(person),
            &[remote],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh")
    }

    /// A session of `person` on db01 through `node` running `remote`, to its end.
    fn run(&self, node: &SshClient, person: &str, remote: &str) -> Output {
        node.command(
            &[],
            &format!("{person}@db01"),
            "127.0.0.1",
            PASSWORD,
            &self.code(person),
            &[remote],
        )
        .output()
        .expect("run ssh")
    }

    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.install.dir.join(f)).unwrap_or_default();
        format!(
            "node A:\n{}\nnode B:\n{}",
            read("serve-a.log"),
            read("serve-b.log")
        )
    }

    fn audit(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut all = vec!["audit", "--json"];
        all.extend_from_slice(args);
        json_lines(&self.install.admin(&all, None))
    }

    fn live_of(&self, person: &str) -> Vec<serde_json::Value> {
        self.install
            .live_sessions()
            .into_iter()
            .filter(|s| s["user"] == person)
            .collect()
    }
}

/// Waits (10 s) for `child` to exit; its output, or None if it still runs.
fn exits(child: &mut Child) -> Option<(std::process::ExitStatus, String)> {
    let exited = wait_until(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        return None;
    }
    let status = child.wait().ok()?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut err);
    }
    Some((status, err))
}

#[test]
fn a_vendor_stop_ends_its_sessions_on_both_nodes_refuses_new_ones_and_lifts() {
    let site = Site::start();
    // Each person's first sign-in takes a code and opens their sign-in
    // window (shared by both nodes through the database).
    let mut tanaka = site.spawn(&site.a, "tanaka", "echo up; sleep 120");
    let mut suzuki = site.spawn(&site.b, "suzuki", "echo up; sleep 120");
    let mut yamada = site.spawn(&site.b, "yamada", "echo up; sleep 120");
    let all_live = wait_until(Duration::from_secs(20), || {
        site.install.live_sessions().len() == 3
    });
    assert!(all_live, "three live sessions expected:\n{}", site.logs());
    let nodes: std::collections::BTreeSet<String> = site
        .install
        .live_sessions()
        .iter()
        .filter_map(|s| s["node"].as_str().map(str::to_string))
        .collect();
    assert_eq!(nodes.len(), 2, "sessions on both nodes: {nodes:?}");
    let tanaka_id = site.live_of("tanaka")[0]["id"]
        .as_str()
        .expect("id")
        .to_string();

    let stop = site.install.sekisho(
        &[
            "stop",
            "vendor",
            "acme",
            "--reason",
            "不正アクセスの疑い suspected intrusion",
        ],
        None,
    );
    let stop_text = text(&stop);
    assert!(stop.status.success(), "{stop_text}\n{}", site.logs());
    assert!(
        stop_text.contains("emergency stop 1 in force for vendor acme"),
        "{stop_text}"
    );
    // The command waits until every node has ended the sessions in scope.
    assert!(
        stop_text.contains("no live session in scope"),
        "{stop_text}"
    );

    // Both acme sessions, one per node, end and their people are told why.
    for (who, child) in [("tanaka", &mut tanaka), ("suzuki", &mut suzuki)] {
        let (_, err) = exits(child)
            .unwrap_or_else(|| panic!("{who}'s session outlived the stop:\n{}", site.logs()));
        assert!(
            err.contains("emergency stop 1 of vendor acme is in force")
                && err.contains("不正アクセスの疑い suspected intrusion"),
            "{who} was not shown the stop: {err}"
        );
    }
    let end = site.audit(&["--kind", "session_end", "--session", &tanaka_id]);
    assert_eq!(end[0]["data"]["status"], "killed", "{end:?}");
    assert!(
        end[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("emergency stop 1")),
        "{end:?}"
    );
    // beta keeps working: its live session runs on, and a new one opens on
    // the node where acme's ended.
    assert!(
        matches!(yamada.try_wait(), Ok(None)),
        "beta's session was ended by acme's stop"
    );
    let beta = site.run(&site.a, "yamada", "echo beta-works");
    assert_eq!(
        String::from_utf8_lossy(&beta.stdout),
        "beta-works\n",
        "{}",
        text(&beta)
    );

    // New acme sessions are refused on both nodes, naming the stop.
    for (node, who) in [(&site.a, "tanaka"), (&site.b, "suzuki")] {
        let out = site.run(node, who, "echo should-not-run");
        let t = text(&out);
        assert!(!out.status.success(), "{who} got in during the stop: {t}");
        assert!(!t.contains("should-not-run"), "{t}");
        assert!(
            t.contains("emergency stop 1 of vendor acme is in force")
                && t.contains("suspected intrusion"),
            "{who} was not told of the stop: {t}"
        );
        let denied = site.audit(&["--kind", "deny", "--user", who]);
        assert!(
            denied.iter().any(|e| e["data"]["rule"] == "emergency_stop"),
            "no emergency_stop denial for {who}: {denied:?}"
        );
    }
    // `policy explain` says the same as the gateway.
    let explain = site.install.sekisho(
        &[
            "policy",
            "explain",
            "--user",
            "tanaka",
            "--target",
            "db01",
            "--protocol",
            "ssh",
            "--from",
            "127.0.0.1",
        ],
        None,
    );
    assert!(
        text(&explain).contains("emergency_stop"),
        "{}",
        text(&explain)
    );

    let listed = json_lines(&site.install.admin(&["stop", "list", "--json"], None));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["scope"], "vendor");
    assert_eq!(listed[0]["subject"], "acme");

    // A second lift of the same stop is refused; the first restores access.
    let lifted = site
        .install
        .admin(&["stop", "lift", "1", "--reason", "resolved"], None);
    assert!(lifted.contains("lifted emergency stop 1"), "{lifted}");
    let again = site.install.sekisho(&["stop", "lift", "1"], None);
    assert!(!again.status.success());
    assert!(text(&again).contains("already lifted"), "{}", text(&again));
    let back = site.run(&site.b, "tanaka", "echo back");
    assert_eq!(
        String::from_utf8_lossy(&back.stdout),
        "back\n",
        "{}",
        text(&back)
    );
    assert!(
        site.install
            .admin(&["stop", "list"], None)
            .contains("no emergency stop in force")
    );

    // Both are audit events naming who did them.
    let stops = site.audit(&["--kind", "emergency_stop"]);
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0]["data"]["scope"], "vendor");
    assert_eq!(stops[0]["data"]["subject"], "acme");
    assert_eq!(stops[0]["data"]["via"], "cli");
    let lifts = site.audit(&["--kind", "emergency_stop_lifted"]);
    assert_eq!(lifts.len(), 1, "{lifts:?}");
    assert!(
        lifts[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("resolved")),
        "{lifts:?}"
    );
    let _ = yamada.kill();
    let _ = yamada.wait();
}

#[test]
fn a_stop_refuses_a_typo_and_needs_a_reason() {
    let site = Site::start();
    let none = site
        .install
        .sekisho(&["stop", "vendor", "acmee", "--reason", "x"], None);
    assert!(!none.status.success());
    assert!(
        text(&none).contains("no vendor \"acmee\""),
        "{}",
        text(&none)
    );
    let none = site
        .install
        .sekisho(&["stop", "system", "labb", "--reason", "x"], None);
    assert!(!none.status.success());
    assert!(
        text(&none).contains("no system \"labb\""),
        "{}",
        text(&none)
    );
    let empty = site
        .install
        .sekisho(&["stop", "all", "--reason", "  "], None);
    assert!(!empty.status.success());
    assert!(
        text(&empty).contains("reason is required"),
        "{}",
        text(&empty)
    );
    // Nothing half-written: no stop, no event.
    assert!(
        site.install
            .admin(&["stop", "list", "--all"], None)
            .contains("no emergency stops")
    );
    assert!(site.audit(&["--kind", "emergency_stop"]).is_empty());
    // A system stop covers beta too.
    ok(site
        .install
        .sekisho(&["stop", "system", "lab", "--reason", "patching"], None));
    let out = site.run(&site.a, "yamada", "echo no");
    assert!(
        text(&out).contains("emergency stop 1 of system lab is in force: patching"),
        "{}",
        text(&out)
    );
}

/// The RDP side: a live FreeRDP session of an acme engineer through xrdp is
/// ended by a stop of acme, and a new one is refused with the rule
/// `emergency_stop` until the stop is lifted.
#[test]
fn a_vendor_stop_ends_a_live_rdp_session_and_refuses_new_ones() {
    use crate::support::rdp_deployment::{
        Deployment, PASSWORD as RDP_PASSWORD, prepare, session_user_running,
    };
    use crate::support::rdp_peers::{Xvfb, end_test_user_sessions};
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let mut client = d.client(
        &x.display,
        "ito@xrdp1",
        &format!("{RDP_PASSWORD}{}", d.code("ito")),
        &["/sec:tls"],
    );
    let id = d
        .install()
        .live_session_id("ito", Duration::from_secs(30))
        .unwrap_or_default();
    assert!(
        !id.is_empty(),
        "the RDP session never became live:\n{}\n{}",
        client.log(),
        d.serve_log()
    );
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "no desktop on the target:\n{}",
        client.log()
    );
    let stop = d.install().sekisho(
        &["stop", "vendor", "acme", "--reason", "RDP incident drill"],
        None,
    );
    assert!(stop.status.success(), "{}\n{}", text(&stop), d.serve_log());
    assert!(
        client.exit_within(Duration::from_secs(10)).is_some(),
        "the RDP client is still connected after the stop:\n{}",
        client.log()
    );
    let end = d.audit_session(&id);
    let ended = end
        .iter()
        .find(|e| e["kind"] == "session_end")
        .unwrap_or_else(|| panic!("no session_end: {end:?}"));
    assert_eq!(ended["data"]["status"], "killed", "{ended}");
    assert!(
        ended["detail"]
            .as_str()
            .is_some_and(|t| t.contains("emergency stop 1 of vendor acme")
                && t.contains("RDP incident drill")),
        "{ended}"
    );
    drop(client);
    end_test_user_sessions();

    // A new RDP session of acme is refused, naming the stop.
    let refused = d.client(
        &x.display,
        "sato@xrdp1",
        &format!("{RDP_PASSWORD}{}", d.code("sato")),
        &["/sec:tls"],
    );
    let denied = wait_until(Duration::from_secs(30), || {
        d.audit("deny", "sato")
            .iter()
            .any(|e| e["data"]["rule"] == "emergency_stop")
    });
    assert!(
        denied,
        "no emergency_stop denial for the new RDP session:\n{}\n{}",
        refused.log(),
        d.serve_log()
    );
    assert!(d.install().live_sessions().is_empty());
    drop(refused);

    ok(d.install().sekisho(&["stop", "lift", "1"], None));
    let mut again = d.client(
        &x.display,
        "sato@xrdp1",
        &format!("{RDP_PASSWORD}{}", d.code_ahead("sato", 1)),
        &["/sec:tls"],
    );
    let back = d
        .install()
        .live_session_id("sato", Duration::from_secs(30))
        .is_some();
    assert!(
        back,
        "RDP not restored after the lift:\n{}\n{}",
        again.log(),
        d.serve_log()
    );
    let _ = again.daemon.child.kill();
    drop(again);
    end_test_user_sessions();
}

/// The stops table in both databases (migration 0006 for SQLite and
/// PostgreSQL): in force until lifted, lifted once, never deleted.
#[tokio::test]
async fn stops_are_kept_the_same_way_in_sqlite_and_postgresql() {
    use sekisho::policy::StopScope;
    use sekisho::store::{Store, StoreError};
    let pg = crate::support::postgres::Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let urls = [
        format!("sqlite://{}", dir.path().join("s.db").display()),
        pg.create_database("sekisho_stops"),
    ];
    for url in urls {
        let store = Store::connect(&url).await.expect("connect");
        let now = chrono::Utc::now();
        let a = store
            .add_stop(&StopScope::Vendor("acme".into()), "incident", "kanri", now)
            .await
            .expect("add");
        let b = store
            .add_stop(&StopScope::All, "全停止", "kanri", now)
            .await
            .expect("add");
        assert!(b.id > a.id, "{url}");
        let active = store.active_stops().await.expect("active");
        assert_eq!(active.len(), 2, "{url}");
        assert_eq!(active[0].scope, StopScope::Vendor("acme".into()));
        assert_eq!(active[1].reason, "全停止");
        let lifted = store
            .lift_stop(a.id, "kanri2", "resolved", now)
            .await
            .expect("lift");
        assert_eq!(lifted.lifted_by.as_deref(), Some("kanri2"));
        assert!(!lifted.in_force());
        assert!(matches!(
            store.lift_stop(a.id, "kanri3", "", now).await,
            Err(StoreError::StopLifted(_))
        ));
        assert!(matches!(
            store.lift_stop(999, "kanri3", "", now).await,
            Err(StoreError::NoStop(999))
        ));
        let active = store.active_stops().await.expect("active");
        assert_eq!(active.len(), 1, "{url}");
        assert_eq!(active[0].scope, StopScope::All);
        let recent = store.recent_stops(10).await.expect("recent");
        assert_eq!(recent.len(), 2, "kept after the lift: {url}");
        assert_eq!(recent[0].id, b.id, "newest first");
        assert_eq!(
            store
                .stop(a.id)
                .await
                .expect("read")
                .and_then(|s| s.lift_reason),
            Some("resolved".into())
        );
        store.close().await;
    }
}
