//! End to end with NLA on the target side: xfreerdp3 → a real `sekisho
//! serve` → the FreeRDP shadow server (`/sec:nla`, SAM file account) as a
//! physical target with its certificate pinned and its password in the
//! secret store. sekisho signs in to the target with CredSSP using the
//! injected credential.

use crate::support::rdp_deployment;
use crate::support::rdp_peers;

use std::time::Duration;

use rdp_deployment::*;
use rdp_peers::*;

/// Where the policy says the shadow server is (it listens on 127.0.0.1,
/// the client's own address, which would make RDP from the client a hop).
const SHADOW_IP: &str = "127.0.0.7";

#[test]
fn typed_text_reaches_the_nla_shadow_server_through_sekisho() {
    let _lock = prepare();
    let dir = tempfile::Builder::new()
        .prefix("sekisho-rdp-shadow")
        .tempdir()
        .expect("tempdir");
    let desktop = Xvfb::start();
    let _term = xterm_on(&desktop.display);
    let shadow = Shadow::start(dir.path(), &desktop.display);
    let pin = probe_cert_sha256(shadow.port);
    let pin_hex: String = pin.iter().map(|b| format!("{b:02X}")).collect();
    let shadow_port = forward_tcp(SHADOW_IP, ("127.0.0.1", shadow.port));
    let d = Deployment::start_with(Options {
        extra_targets: format!(
            r#"
[[target]]
name = "shadow1"
address = "{SHADOW_IP}"
kind = "physical"
rdp = {{ port = {port}, account = "{SHADOW_USER}", credential = "shadow1-pw", cert_sha256 = "{pin_hex}" }}
"#,
            port = shadow_port
        ),
        secrets: vec![("shadow1-pw".into(), SHADOW_PASSWORD.into())],
        ..Options::default()
    });
    let client_x = Xvfb::start();
    let code = d.code("tanaka");
    let client = d.client(
        &client_x.display,
        "tanaka@shadow1",
        &format!("{PASSWORD}{code}"),
        &["/sec:tls", "+clipboard"],
    );
    let id = d
        .install()
        .live_session_id("tanaka", Duration::from_secs(30))
        .unwrap_or_default();
    let live = !id.is_empty();
    assert!(
        live,
        "no session with the shadow server.\nclient:\n{}\nshadow:\n{}\nserve log:\n{}",
        client.log(),
        shadow.log_text(),
        d.serve_log()
    );
    std::thread::sleep(Duration::from_secs(3));
    let marker = dir.path().join("typed-shadow.txt");
    type_into_client(
        &client_x.display,
        &format!("echo through-sekisho > {}", marker.display()),
    );
    let typed = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&marker).is_ok_and(|s| s.trim() == "through-sekisho")
    });
    assert!(
        typed,
        "typed text did not arrive.\nclient:\n{}\nshadow:\n{}\nserve log:\n{}",
        client.log(),
        shadow.log_text(),
        d.serve_log()
    );
    drop(client);

    let ended = wait_until(Duration::from_secs(15), || {
        !d.audit("session_end", "tanaka").is_empty()
    });
    assert!(ended, "no session_end.\nserve log:\n{}", d.serve_log());
    let events = d.audit_session(&id);
    let allow = events
        .iter()
        .find(|e| e["kind"] == "allow")
        .expect("an allow for the session");
    assert_eq!(allow["target"], "shadow1", "{allow}");
    assert!(
        events.iter().any(|e| e["kind"] == "channel_blocked"
            && e["detail"].as_str().is_some_and(|d| d.contains("cliprdr"))),
        "cliprdr not refused: {events:?}"
    );
    let verify = sekisho(&d.dir, &["verify", &id], None);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let archive = find_archive(&d.dir.join("recordings"), &id).expect("archive file");
    let mut reader = sekisho::recording::Reader::open(&archive).expect("open archive");
    let output = reader
        .events()
        .map_while(|e| e.ok())
        .filter(|e| matches!(e.event, sekisho::recording::Event::Output { .. }))
        .count();
    assert!(output > 0, "no graphics from the shadow server recorded");
    drop(d);
}
