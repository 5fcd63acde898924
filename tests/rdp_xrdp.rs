//! End to end: xfreerdp3 → sekisho → xrdp on loopback.

#[path = "support/rdp_fake_core.rs"]
mod rdp_fake_core;
#[path = "support/rdp_peers.rs"]
mod rdp_peers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rdp_fake_core::FakeCore;
use rdp_peers::*;
use sekisho::rdp::core::{ChannelKind, Direction, RdpEvent, TargetGrant};

struct Gateway {
    port: u16,
    core: Arc<FakeCore>,
    _rt: tokio::runtime::Runtime,
}

fn start_gateway(dir: &std::path::Path, core: FakeCore) -> Gateway {
    start_gateway_with(dir, core, Duration::ZERO)
}

fn start_gateway_with(dir: &std::path::Path, core: FakeCore, idle_timeout: Duration) -> Gateway {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("sekisho=debug")),
        )
        .with_test_writer()
        .try_init();
    let (cert, key, _) = self_signed(dir, "sekisho");
    let tls = sekisho::rdp::tls_server_config(&cert, &key).expect("front TLS config");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let core = Arc::new(core);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind gateway");
    let port = listener.local_addr().expect("addr").port();
    let options = sekisho::rdp::GatewayOptions {
        keyframe_interval: Duration::from_secs(1),
        offer_nla: true,
        idle_timeout,
    };
    rt.spawn(sekisho::rdp::serve_with(
        listener,
        tls,
        core.clone(),
        options,
    ));
    Gateway {
        port,
        core,
        _rt: rt,
    }
}

fn grant(xrdp: &Xrdp) -> TargetGrant {
    TargetGrant {
        session_id: uuid::Uuid::now_v7(),
        target: "xrdp1".into(),
        address: SocketAddr::from(([127, 0, 0, 1], xrdp.port)),
        account: TEST_USER.into(),
        domain: None,
        password: TEST_PASSWORD.into(),
        cert_sha256: xrdp.pin,
        parent_session: None,
    }
}

fn fake_core(xrdp: &Xrdp) -> FakeCore {
    let mut core = FakeCore::new();
    core.users.insert("tester".into(), "pw-123456".into());
    core.tickets
        .insert("tester".into(), "TICKET-8841-2207".into());
    core.targets.insert("xrdp1".into(), Ok(grant(xrdp)));
    let mut wrong_pin = grant(xrdp);
    wrong_pin.cert_sha256 = [7; 32];
    core.targets.insert("xrdp-wrong-pin".into(), Ok(wrong_pin));
    core.targets
        .insert("vm1".into(), Err("use the terminal connection".into()));
    core
}

fn session_user_running() -> bool {
    std::process::Command::new("pgrep")
        .args(["-u", TEST_USER, "xterm"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn typed_text_reaches_xrdp_through_sekisho_and_clipboard_and_drive_do_not() {
    require_rdp_peers();
    let _lock = lock_peers();
    ensure_test_user();
    end_test_user_sessions();
    let dir = tempfile::tempdir().expect("tempdir");
    let share = dir.path().join("share");
    std::fs::create_dir(&share).expect("share dir");
    std::fs::write(share.join("secret.txt"), "must not cross").expect("write share file");

    let xrdp = Xrdp::start(dir.path());
    let x = Xvfb::start();
    let gw = start_gateway(dir.path(), fake_core(&xrdp));

    let client_log = dir.path().join("client.log");
    let drive = format!("/drive:share,{}", share.display());
    let client = xfreerdp(
        &x.display,
        gw.port,
        "tester@xrdp1",
        "pw-123456",
        &["/sec:tls", "+clipboard", &drive],
        &client_log,
    );

    let up = wait_until(Duration::from_secs(30), session_user_running);
    assert!(
        up,
        "no session of {TEST_USER} on the target.\nclient log:\n{}\nxrdp log:\n{}\nsesman log:\n{}",
        client_log_text(&client_log),
        xrdp.log_text(),
        xrdp.sesman_log_text()
    );
    // Give xterm a moment to map and take focus.
    std::thread::sleep(Duration::from_secs(3));

    let marker = dir.path().join("typed.txt");
    let _ = std::fs::remove_file(&marker);
    // The target writes as its own user; the temp dir must let it.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    type_into_client(&x.display, &format!("id -un > {}", marker.display()));
    let typed = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&marker).is_ok_and(|s| s.trim() == TEST_USER)
    });
    assert!(
        typed,
        "typed command did not run on the target.\nclient log:\n{}",
        client_log_text(&client_log)
    );

    // What the target got: only drdynvc; no clipboard, drive or sound.
    let xrdp_log = xrdp.log_text();
    assert!(
        xrdp_log.contains("Adding channel: name drdynvc"),
        "xrdp log:\n{xrdp_log}"
    );
    for refused in ["cliprdr", "rdpdr", "rdpsnd"] {
        assert!(
            !xrdp_log.contains(&format!("Adding channel: name {refused}")),
            "{refused} reached the target"
        );
    }
    drop(client);
    end_test_user_sessions();

    let journal = gw.core.journal();
    assert_eq!(journal.sign_ins, vec![("tester".to_owned(), true)]);
    let refused: Vec<&str> = journal
        .refused_channels
        .iter()
        .filter(|(k, _, _)| *k == ChannelKind::Static)
        .map(|(_, n, _)| n.as_str())
        .collect();
    assert!(
        refused.contains(&"cliprdr"),
        "cliprdr not refused: {refused:?}"
    );
    assert!(refused.contains(&"rdpdr"), "rdpdr not refused: {refused:?}");
    let started = journal.started.first().expect("a session started");
    assert_eq!(
        started
            .channels
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        vec!["drdynvc"]
    );
    let input = journal
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                RdpEvent::FastPath {
                    direction: Direction::ClientToServer,
                    ..
                }
            )
        })
        .count();
    assert!(
        input > 20,
        "only {input} client fast-path input PDUs recorded"
    );
    let output = journal
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                RdpEvent::FastPath {
                    direction: Direction::ServerToClient,
                    ..
                } | RdpEvent::SlowPath {
                    direction: Direction::ServerToClient,
                    ..
                }
            )
        })
        .count();
    assert!(output > 0, "no server graphics recorded");

    // Steering: the target drew with bitmaps only (no orders, no surface
    // commands) and nothing was bulk-compressed.
    let mut updates = 0;
    for event in &journal.events {
        if let RdpEvent::FastPath {
            direction: Direction::ServerToClient,
            pdu,
        } = event
        {
            for (code, compressed) in fast_path_updates(pdu) {
                updates += 1;
                assert_ne!(code, 0x0, "drawing orders reached the recording");
                assert_ne!(code, 0x4, "surface commands reached the recording");
                assert!(!compressed, "bulk-compressed update");
            }
        }
    }
    for event in &journal.events {
        if let RdpEvent::SlowPath {
            direction: Direction::ServerToClient,
            pdu,
            ..
        } = event
            && let Some((update, compressed)) = slow_path_update(pdu)
        {
            updates += 1;
            assert_ne!(update, 0x0000, "drawing orders reached the recording");
            assert!(!compressed, "bulk-compressed update");
        }
    }
    assert!(updates > 0, "no updates parsed");

    // The share id a replayer needs is recorded before the Demand Active.
    assert!(
        journal
            .events
            .iter()
            .any(|e| matches!(e, RdpEvent::ShareActivated { share_id } if *share_id != 0)),
        "no share activation recorded"
    );

    // Keyframes: requested every second, each followed by bitmap updates.
    let keyframes: Vec<usize> = journal
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            matches!(
                e,
                RdpEvent::Keyframe {
                    width: 1024,
                    height: 768
                }
            )
        })
        .map(|(i, _)| i)
        .collect();
    assert!(keyframes.len() >= 2, "keyframes: {keyframes:?}");
    let first = keyframes[0];
    let redrawn = journal.events[first..].iter().any(|e| match e {
        RdpEvent::FastPath {
            direction: Direction::ServerToClient,
            pdu,
        } => fast_path_updates(pdu).iter().any(|(code, _)| *code == 0x1),
        RdpEvent::SlowPath {
            direction: Direction::ServerToClient,
            pdu,
            ..
        } => slow_path_update(pdu).is_some_and(|(update, _)| update == 0x0001),
        _ => false,
    });
    let summary: Vec<String> = journal.events[first..]
        .iter()
        .map(|e| match e {
            RdpEvent::FastPath { direction, pdu } => {
                format!("fp {direction:?} {:?}", fast_path_updates(pdu))
            }
            RdpEvent::SlowPath {
                direction,
                channel,
                pdu,
            } => {
                format!("sp {direction:?} ch{channel} {}", pdu.len())
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert!(
        redrawn,
        "no bitmap update after a keyframe request: {summary:#?}"
    );
}

/// (updateType, bulk-compressed) of a slow-path Update PDU (share data
/// pduType2 = PDUTYPE2_UPDATE), MS-RDPBCGR 2.2.9.1.1.3.
fn slow_path_update(pdu: &[u8]) -> Option<(u16, bool)> {
    let pdu_type = u16::from_le_bytes([*pdu.get(2)?, *pdu.get(3)?]) & 0x0f;
    if pdu_type != 0x7 || *pdu.get(14)? != 0x02 {
        return None;
    }
    let compressed = pdu.get(15)? & 0x20 != 0;
    Some((
        u16::from_le_bytes([*pdu.get(18)?, *pdu.get(19)?]),
        compressed,
    ))
}

/// (updateCode, bulk-compressed) of each update in a fast-path output PDU
/// (MS-RDPBCGR 2.2.9.1.2), as a test-side cross-check.
fn fast_path_updates(pdu: &[u8]) -> Vec<(u8, bool)> {
    let mut out = Vec::new();
    let Some(&len1) = pdu.get(1) else { return out };
    let mut pos = if len1 & 0x80 != 0 { 3 } else { 2 };
    while let Some(&header) = pdu.get(pos) {
        let code = header & 0x0f;
        let compressed = (header >> 6) & 0x03 == 0x02;
        pos += 1;
        if compressed {
            pos += 1;
        }
        let Some(size) = pdu
            .get(pos..pos + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        else {
            break;
        };
        out.push((code, compressed));
        pos += 2 + size;
    }
    out
}

/// Wait for the client to exit by itself; `None` if it is still connected.
fn client_exit(client: &mut Daemon, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = client.child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn direct_connection_gets_clipboard_and_drive_and_refusals_never_reach_the_target() {
    require_rdp_peers();
    let _lock = lock_peers();
    ensure_test_user();
    end_test_user_sessions();
    let dir = tempfile::tempdir().expect("tempdir");
    let share = dir.path().join("share");
    std::fs::create_dir(&share).expect("share dir");
    let xrdp = Xrdp::start(dir.path());
    let x = Xvfb::start();
    let gw = start_gateway(dir.path(), fake_core(&xrdp));
    let drive = format!("/drive:share,{}", share.display());

    // Control: without sekisho the target does get clipboard and drive.
    let log = dir.path().join("direct.log");
    let direct = xfreerdp(
        &x.display,
        xrdp.port,
        TEST_USER,
        TEST_PASSWORD,
        &["/sec:tls", "+clipboard", &drive],
        &log,
    );
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "direct session did not start:\n{}",
        client_log(&log)
    );
    let direct_log = xrdp.log_text();
    assert!(
        direct_log.contains("Adding channel: name cliprdr"),
        "xrdp log:\n{direct_log}"
    );
    assert!(
        direct_log.contains("Adding channel: name rdpdr"),
        "xrdp log:\n{direct_log}"
    );
    drop(direct);
    end_test_user_sessions();
    let seen_before = xrdp.log_text().matches("Client supplied username").count();

    // Wrong password, a virtual target, a target whose certificate does not
    // match the pin: each refused, none signs in on the target.
    for (user, password, what, signs_in) in [
        ("tester@xrdp1", "wrong-pw", "wrong password", false),
        ("tester@vm1", "pw-123456", "virtual target", true),
        (
            "tester@xrdp-wrong-pin",
            "pw-123456",
            "certificate pin",
            true,
        ),
        (
            "xrdp1\\tester",
            "wrong-pw",
            "wrong password (domain form)",
            false,
        ),
    ] {
        let before = gw.core.journal().sign_ins.len();
        let log = dir.path().join("refused.log");
        let mut client = xfreerdp(&x.display, gw.port, user, password, &["/sec:tls"], &log);
        let status = client_exit(&mut client, Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| !s.success()),
            "{what}: client not refused ({status:?}):\n{}",
            client_log(&log)
        );
        let journal = gw.core.journal();
        let attempts = &journal.sign_ins[before..];
        // A refused client must not come back by itself.
        assert_eq!(
            attempts.len(),
            1,
            "{what}: {attempts:?}\n{}",
            client_log(&log)
        );
        assert_eq!(attempts[0], ("tester".to_owned(), signs_in), "{what}");
        assert!(
            client_log(&log).contains("ERRINFO_SERVER_"),
            "{what}: the client did not show an RDP error:\n{}",
            client_log(&log)
        );
    }
    assert!(!session_user_running(), "a refused client got a session");
    assert_eq!(
        xrdp.log_text().matches("Client supplied username").count(),
        seen_before,
        "a refused client signed in on the target"
    );
    let journal = gw.core.journal();
    assert!(journal.authorizations.iter().any(|(_, t, r)| {
        t == "vm1"
            && r.as_ref()
                .err()
                .is_some_and(|e| e == "use the terminal connection")
    }));
    assert!(
        journal
            .closed
            .iter()
            .any(|(_, reason)| reason.contains("does not match the pinned")),
        "pin mismatch not reported: {:?}",
        journal.closed
    );
}

#[test]
fn killing_the_session_disconnects_the_client() {
    require_rdp_peers();
    let _lock = lock_peers();
    ensure_test_user();
    end_test_user_sessions();
    let dir = tempfile::tempdir().expect("tempdir");
    let xrdp = Xrdp::start(dir.path());
    let x = Xvfb::start();
    let gw = start_gateway(dir.path(), fake_core(&xrdp));
    let log = dir.path().join("client.log");
    // A Japanese 106/109 keyboard: the recording must know the layout.
    let mut client = xfreerdp(
        &x.display,
        gw.port,
        "tester@xrdp1",
        "pw-123456",
        &["/sec:tls", "/kbd:layout:0x411,type:7"],
        &log,
    );
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "session did not start:\n{}",
        client_log(&log)
    );
    {
        let journal = gw.core.journal();
        let start = journal.started.first().expect("session started");
        assert_eq!(start.keyboard_layout, 0x411, "keyboard layout not recorded");
        assert_eq!(start.keyboard_type, 7, "keyboard type not recorded");
    }
    assert!(
        client_exit(&mut client, Duration::from_secs(1)).is_none(),
        "client left early"
    );
    gw.core.kill.send_replace(Some("stopped by admin".into()));
    let status = client_exit(&mut client, Duration::from_secs(15));
    assert!(status.is_some(), "client still connected after kill");
    end_test_user_sessions();
    let journal = gw.core.journal();
    assert!(
        journal
            .closed
            .iter()
            .any(|(_, r)| r.contains("stopped by admin")),
        "{:?}",
        journal.closed
    );
    assert_eq!(journal.finished, 1, "recording not sealed");
}

fn client_log_text(p: &std::path::Path) -> String {
    client_log(p)
}

#[test]
fn a_failing_recording_ends_the_session() {
    require_rdp_peers();
    let _lock = lock_peers();
    ensure_test_user();
    end_test_user_sessions();
    let dir = tempfile::tempdir().expect("tempdir");
    let xrdp = Xrdp::start(dir.path());
    let x = Xvfb::start();
    let mut core = fake_core(&xrdp);
    // Fails while the connection is being finalized (after the channel
    // refusals and the first capability PDUs were recorded).
    core.fail_recording_after = Some(10);
    let gw = start_gateway(dir.path(), core);
    let log = dir.path().join("client.log");
    let mut client = xfreerdp(
        &x.display,
        gw.port,
        "tester@xrdp1",
        "pw-123456",
        &["/sec:tls"],
        &log,
    );
    let status = client_exit(&mut client, Duration::from_secs(30));
    end_test_user_sessions();
    assert!(
        status.is_some(),
        "client still connected with a broken recording"
    );
    let journal = gw.core.journal();
    assert_eq!(
        journal.events.len(),
        10,
        "events recorded beyond the failure"
    );
    assert!(
        journal
            .closed
            .iter()
            .any(|(_, r)| r.contains("recording failed: disk full")),
        "{:?}",
        journal.closed
    );
}

#[test]
fn nla_with_a_ticket_reaches_xrdp_and_a_wrong_ticket_does_not() {
    require_rdp_peers();
    let _lock = lock_peers();
    ensure_test_user();
    end_test_user_sessions();
    let dir = tempfile::tempdir().expect("tempdir");
    let xrdp = Xrdp::start(dir.path());
    let x = Xvfb::start();
    let gw = start_gateway(dir.path(), fake_core(&xrdp));

    // Wrong ticket: CredSSP fails, nothing reaches the target.
    let log = dir.path().join("bad.log");
    let mut client = xfreerdp(
        &x.display,
        gw.port,
        "tester@xrdp1",
        "TICKET-0000-0000",
        &["/sec:nla"],
        &log,
    );
    let status = client_exit(&mut client, Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "wrong ticket accepted:\n{}",
        client_log(&log)
    );
    assert!(
        !xrdp.log_text().contains("Client supplied username"),
        "target reached"
    );
    {
        let journal = gw.core.journal();
        assert!(journal.sign_ins.is_empty(), "{:?}", journal.sign_ins);
        assert!(
            journal
                .nla_refusals
                .iter()
                .any(|r| r.starts_with("tester@xrdp1: NLA sign-in failed")),
            "NLA refusal not audited: {:?}",
            journal.nla_refusals
        );
    }

    // The right ticket: mstsc-style NLA sign-in, session on the target.
    let log = dir.path().join("good.log");
    let client = xfreerdp(
        &x.display,
        gw.port,
        "tester@xrdp1",
        "TICKET-8841-2207",
        &["/sec:nla"],
        &log,
    );
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "NLA session did not start:\n{}",
        client_log(&log)
    );
    drop(client);
    end_test_user_sessions();
    let journal = gw.core.journal();
    assert_eq!(journal.sign_ins, vec![("tester".to_owned(), true)]);
    assert_eq!(
        journal.sign_in_security,
        vec![sekisho::rdp::core::FrontSecurity::Nla]
    );
    assert!(
        journal
            .nla_lookups
            .contains(&("tester".to_owned(), "xrdp1".to_owned()))
    );
}

#[test]
fn an_idle_session_is_ended() {
    require_rdp_peers();
    let _lock = lock_peers();
    ensure_test_user();
    end_test_user_sessions();
    let dir = tempfile::tempdir().expect("tempdir");
    let xrdp = Xrdp::start(dir.path());
    let x = Xvfb::start();
    let gw = start_gateway_with(dir.path(), fake_core(&xrdp), Duration::from_secs(4));
    let log = dir.path().join("client.log");
    let mut client = xfreerdp(
        &x.display,
        gw.port,
        "tester@xrdp1",
        "pw-123456",
        &["/sec:tls"],
        &log,
    );
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "session did not start:\n{}",
        client_log(&log)
    );
    let status = client_exit(&mut client, Duration::from_secs(20));
    end_test_user_sessions();
    assert!(status.is_some(), "idle client still connected");
    assert!(
        client_log(&log).contains("ERRINFO_IDLE_TIMEOUT"),
        "{}",
        client_log(&log)
    );
    let journal = gw.core.journal();
    assert!(
        journal.closed.iter().any(|(_, r)| r.contains("idle for")),
        "{:?}",
        journal.closed
    );
}
