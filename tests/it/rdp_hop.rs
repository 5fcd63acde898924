//! The RDP rule's server-to-server hop, end to end: a person with a live
//! SSH session on the virtual server `app1` (a real sshd on its own loopback
//! address) may open RDP from `app1`'s address to the virtual server `vm1`
//! (xrdp) because the policy has `[[hop]] from = "app1" to = "vm1"`; the
//! hop's session names its parent. Without that live session, for another
//! person, from another address or to a target without a hop entry, RDP is
//! refused and the refusal is audited with its rule.
//!
//! xfreerdp3 cannot choose its source address, so it reaches sekisho
//! through a forwarder whose connections leave from `app1`'s address, as
//! an RDP client running on `app1` would.

use crate::support::deployment;
use crate::support::rdp_deployment;
use crate::support::rdp_peers;
use crate::support::sshd;

use std::process::{Child, Stdio};
use std::time::Duration;

use rdp_deployment::*;
use rdp_peers::*;

/// `app1`'s address: its sshd listens here, and hops leave from here.
const APP1_IP: &str = "127.0.0.3";

/// A deployment with `app1` (virtual, SSH only, a real sshd) and a hop from
/// it to `vm1` (virtual, xrdp through a forwarder), and the forwarder's port
/// that brings xfreerdp3 to sekisho from `app1`'s address. The sshd stays
/// up until the test process exits.
fn hop_deployment(sshd_dir: &std::path::Path) -> (Deployment, u16) {
    sshd::require_all();
    let app1 = sshd::Sshd::start_on(sshd_dir, &[APP1_IP]);
    let d = Deployment::start_with(Options {
        ssh: true,
        extra_targets: format!(
            r#"
[[target]]
name = "app1"
address = "{APP1_IP}"
kind = "virtual"
ssh = {{ port = {port}, account = "root", credential = "app1-root", host_key = "{fp}" }}

[[hop]]
from = "app1"
to = "vm1"
"#,
            port = app1.port,
            fp = app1.host_key_fingerprint
        ),
        secrets: vec![("app1-root".into(), app1.client_key_pem.clone())],
        ..Options::default()
    });
    // vm1 is the same xrdp, answering on its own address (the deployment
    // forwards it).
    let from_app1 = forward_tcp_from(FRONT, (FRONT, d.rdp_port), Some(APP1_IP));
    (d, from_app1)
}

/// A one-time RDP ticket for `user` on `target`.
fn ticket(d: &Deployment, user: &str, target: &str) -> String {
    d.install().ticket(user, target, "rdp")
}

/// The live session of `user` on `target`, once listed.
fn live_session(d: &Deployment, user: &str, target: &str) -> Option<serde_json::Value> {
    let mut found = None;
    wait_until(Duration::from_secs(20), || {
        found = d
            .install()
            .live_sessions()
            .into_iter()
            .find(|s| s["user"] == user && s["target"] == target);
        found.is_some()
    });
    found
}

/// Runs `client` (already started) to its refusal and returns the one
/// `deny` it caused for `person`, which must carry `rule`. Nothing reaches
/// the target and no session starts.
fn refused(
    d: &Deployment,
    mut client: Client,
    person: &str,
    denies_before: usize,
    rule: &str,
) -> serde_json::Value {
    let status = client.exit_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "{person} ({rule}): client not refused ({status:?}):\n{}\nserve log:\n{}",
        client.log(),
        d.serve_log()
    );
    assert!(
        client.log().contains("ERRINFO_SERVER_"),
        "{person} ({rule}): the client did not show an RDP error:\n{}",
        client.log()
    );
    // Let a client that would come back by itself do so.
    std::thread::sleep(Duration::from_secs(1));
    let deny = d.audit("deny", person);
    assert_eq!(
        deny.len(),
        denies_before + 1,
        "{person} ({rule}): one refusal expected: {deny:?}"
    );
    let last = deny
        .into_iter()
        .max_by_key(|e| e["id"].as_i64().unwrap_or_default())
        .expect("a deny");
    assert_eq!(last["data"]["rule"], rule, "{last}");
    assert_eq!(last["protocol"], "rdp", "{last}");
    last
}

/// The SSH client holding `person`'s terminal session on `app1` open.
fn ssh_session_on_app1(d: &Deployment, person: &str, code: &str) -> Child {
    let client = deployment::SshClient::setup(d.tmp(), d.ssh_port.expect("SSH listener"));
    let log = std::fs::File::create(d.tmp().join(format!("ssh-{person}.log"))).expect("ssh log");
    client
        .command(
            &[],
            &format!("{person}@app1"),
            FRONT,
            PASSWORD,
            code,
            &["sleep", "300"],
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start ssh")
}

#[test]
fn an_rdp_hop_from_a_live_ssh_session_reaches_a_virtual_target_and_names_its_parent() {
    let _lock = prepare();
    let sshd_dir = tempfile::tempdir().expect("tempdir");
    let (d, from_app1) = hop_deployment(sshd_dir.path());
    let x = Xvfb::start();

    // No live session on app1 yet: RDP from app1's address is no hop.
    let client = d.client_via(
        from_app1,
        &x.display,
        "tanaka@vm1",
        &ticket(&d, "tanaka", "vm1"),
        &["/sec:tls"],
    );
    let deny = refused(&d, client, "tanaka", 0, "hop_no_parent");
    assert_eq!(deny["source"], APP1_IP, "{deny}");
    assert_eq!(deny["target"], "vm1", "{deny}");
    assert!(
        deny["detail"]
            .as_str()
            .is_some_and(|r| r.contains("no live session of yours on app1")),
        "{deny}"
    );

    // The terminal session on app1, through sekisho, kept open.
    let mut ssh = ssh_session_on_app1(&d, "tanaka", &d.code("tanaka"));
    let parent = live_session(&d, "tanaka", "app1").unwrap_or_else(|| {
        panic!(
            "no live SSH session on app1.\nssh log:\n{}\nserve log:\n{}",
            std::fs::read_to_string(d.tmp().join("ssh-tanaka.log")).unwrap_or_default(),
            d.serve_log()
        )
    });
    assert_eq!(parent["protocol"], "ssh", "{parent}");
    let parent_id = parent["id"].as_str().expect("session id").to_string();

    // The hop: RDP from app1's address to vm1, signed in with password
    // and the next code (the SSH sign-in used this step's).
    let hop_client = d.client_via(
        from_app1,
        &x.display,
        "tanaka@vm1",
        &format!("{PASSWORD}{}", d.code_ahead("tanaka", 1)),
        &["/sec:tls"],
    );
    d.assert_desktop_up(&hop_client, "the hop did not reach xrdp");
    std::thread::sleep(Duration::from_secs(3));
    d.assert_typed_command_runs(
        &hop_client,
        &x.display,
        "hopped.txt",
        "typed command did not run on vm1",
    );

    // The session row names the SSH session as its parent.
    let hop = live_session(&d, "tanaka", "vm1").expect("the hop listed as live");
    assert_eq!(hop["protocol"], "rdp", "{hop}");
    assert_eq!(hop["parent"], parent_id.as_str(), "{hop}");
    assert_eq!(hop["client"], APP1_IP, "{hop}");
    let hop_id = hop["id"].as_str().expect("session id").to_string();
    // So does the decision.
    let allow = d.audit_session(&hop_id);
    let allow = allow
        .iter()
        .find(|e| e["kind"] == "allow")
        .expect("allow event of the hop");
    assert_eq!(allow["data"]["hop_parent"], parent_id.as_str(), "{allow}");
    assert_eq!(allow["source"], APP1_IP, "{allow}");

    // While tanaka's session on app1 is live: suzuki cannot hop on it.
    let client = d.client_via(
        from_app1,
        &x.display,
        "suzuki@vm1",
        &format!("{PASSWORD}{}", d.code("suzuki")),
        &["/sec:tls"],
    );
    refused(&d, client, "suzuki", 0, "hop_no_parent");
    // tanaka from an address that is no target: vm1 is virtual.
    let client = d.client(
        &x.display,
        "tanaka@vm1",
        &ticket(&d, "tanaka", "vm1"),
        &["/sec:tls"],
    );
    let deny = refused(&d, client, "tanaka", 1, "rdp_virtual");
    assert_eq!(deny["source"], FRONT, "{deny}");
    let reason = deny["detail"].as_str().unwrap_or_default();
    assert!(
        reason.contains("use the terminal (SSH) connection")
            && reason.contains("hop from a session on app1"),
        "{deny}"
    );
    // tanaka from app1 to a target no hop leads to (physical or not).
    let client = d.client_via(
        from_app1,
        &x.display,
        "tanaka@xrdp1",
        &ticket(&d, "tanaka", "xrdp1"),
        &["/sec:tls"],
    );
    let deny = refused(&d, client, "tanaka", 2, "hop_not_allowed");
    assert_eq!(deny["target"], "xrdp1", "{deny}");

    // The hop ends; its recording names the parent too.
    drop(hop_client);
    end_test_user_sessions();
    let ended = |id: &str| {
        wait_until(Duration::from_secs(15), || {
            d.audit_session(id)
                .iter()
                .any(|e| e["kind"] == "session_end")
        })
    };
    assert!(
        ended(&hop_id),
        "no session_end of the hop:\n{}",
        d.serve_log()
    );
    let verify = sekisho(&d.dir, &["verify", &hop_id], None);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let archive = find_archive(&d.dir.join("recordings"), &hop_id).expect("archive of the hop");
    let mut reader = sekisho::recording::Reader::open(&archive).expect("open archive");
    let meta = reader.meta().clone();
    assert_eq!(meta.hop_parent.as_deref(), Some(parent_id.as_str()));
    assert_eq!(meta.client_addr, APP1_IP);
    assert_eq!(meta.target, "vm1");
    let (mut input, mut output) = (0, 0);
    for event in reader.events() {
        match event.expect("event").event {
            sekisho::recording::Event::Input { .. } => input += 1,
            sekisho::recording::Event::Output { .. } => output += 1,
            _ => {}
        }
    }
    assert!(input > 20, "only {input} input events recorded");
    assert!(output > 0, "no graphics recorded");

    // A hop lives no longer than its parent: a second hop is ended, with
    // the reason, when the terminal session on app1 ends.
    let mut second = d.client_via(
        from_app1,
        &x.display,
        "tanaka@vm1",
        &ticket(&d, "tanaka", "vm1"),
        &["/sec:tls"],
    );
    let second_id = {
        let mut id = None;
        wait_until(Duration::from_secs(30), || {
            id =
                live_session(&d, "tanaka", "vm1").and_then(|s| s["id"].as_str().map(str::to_owned));
            id.is_some()
        });
        id.unwrap_or_else(|| {
            panic!(
                "the second hop is not live.\nclient log:\n{}\nserve log:\n{}",
                second.log(),
                d.serve_log()
            )
        })
    };
    assert_ne!(second_id, hop_id);
    // Its desktop up before the parent ends: a session xrdp is still
    // setting up when its client goes away can come up after
    // end_test_user_sessions below (slowly, on a loaded machine), where the
    // last check would take it for the refused hop's.
    d.assert_desktop_up(&second, "the second hop did not reach xrdp");

    // The terminal session ends: there is nothing left to hop from.
    let _ = ssh.kill();
    let _ = ssh.wait();
    assert!(
        ended(&parent_id),
        "no session_end of the SSH session:\n{}",
        d.serve_log()
    );
    assert!(
        second.exit_within(Duration::from_secs(15)).is_some(),
        "the hop outlived its parent.\nserve log:\n{}",
        d.serve_log()
    );
    assert!(ended(&second_id), "no session_end of the second hop");
    let end = d
        .audit_session(&second_id)
        .into_iter()
        .find(|e| e["kind"] == "session_end")
        .expect("session_end of the second hop");
    assert!(
        end["detail"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("comes from ({parent_id}) has ended"))),
        "{end}"
    );
    end_test_user_sessions();
    let client = d.client_via(
        from_app1,
        &x.display,
        "tanaka@vm1",
        &ticket(&d, "tanaka", "vm1"),
        &["/sec:tls"],
    );
    refused(&d, client, "tanaka", 3, "hop_no_parent");
    assert!(!session_user_running(), "a refused hop reached vm1");
}
