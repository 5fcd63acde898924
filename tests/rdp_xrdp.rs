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
    rt.spawn(sekisho::rdp::serve(listener, tls, core.clone()));
    Gateway {
        port,
        core,
        _rt: rt,
    }
}

fn grant(xrdp: &Xrdp) -> TargetGrant {
    TargetGrant {
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

    // What the target got: no clipboard, no drive redirection.
    let xrdp_log = xrdp.log_text();
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
    println!("xrdp log:\n{xrdp_log}");
}

fn client_log_text(p: &std::path::Path) -> String {
    client_log(p)
}
