//! End to end with NLA on the target side: xfreerdp3 → sekisho → FreeRDP
//! shadow server (`/sec:nla`, SAM file account). sekisho signs in to the
//! target with CredSSP using the injected credential.

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

#[test]
fn typed_text_reaches_the_nla_shadow_server_through_sekisho() {
    require_rdp_peers();
    let _lock = lock_peers();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("sekisho=debug")),
        )
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");

    let desktop = Xvfb::start();
    let _term = xterm_on(&desktop.display);
    let shadow = Shadow::start(dir.path(), &desktop.display);
    let pin = probe_cert_sha256(shadow.port);
    let client_x = Xvfb::start();

    let mut core = FakeCore::new();
    core.users.insert("tester".into(), "pw-123456".into());
    core.targets.insert(
        "shadow1".into(),
        Ok(TargetGrant {
            session_id: uuid::Uuid::now_v7(),
            target: "shadow1".into(),
            address: SocketAddr::from(([127, 0, 0, 1], shadow.port)),
            account: SHADOW_USER.into(),
            domain: None,
            password: SHADOW_PASSWORD.into(),
            cert_sha256: pin,
            parent_session: None,
        }),
    );
    let (cert, key, _) = self_signed(dir.path(), "sekisho");
    let tls = sekisho::rdp::tls_server_config(&cert, &key).expect("tls");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let core = Arc::new(core);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    rt.spawn(sekisho::rdp::serve(listener, tls, core.clone()));

    let log = dir.path().join("client.log");
    let client = xfreerdp(
        &client_x.display,
        port,
        "tester@shadow1",
        "pw-123456",
        &["/sec:tls", "+clipboard"],
        &log,
    );
    let connected = wait_until(Duration::from_secs(30), || {
        core.journal().events.iter().any(|e| {
            matches!(
                e,
                RdpEvent::FastPath {
                    direction: Direction::ServerToClient,
                    ..
                }
            )
        })
    });
    assert!(
        connected,
        "no graphics from the shadow server.\nclient:\n{}\nshadow:\n{}",
        client_log(&log),
        shadow.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
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
        "typed text did not arrive.\nclient:\n{}\nshadow:\n{}",
        client_log(&log),
        shadow.log_text()
    );
    drop(client);
    let journal = core.journal();
    assert!(
        journal
            .refused_channels
            .iter()
            .any(|(k, n, _)| *k == ChannelKind::Static && n == "cliprdr"),
        "{:?}",
        journal.refused_channels
    );
}
