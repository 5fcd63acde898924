//! The SSH listener from `sekisho.toml`: address and host key from the config.

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sekisho::config::Config;
use support::fake_core::{FakeCore, State};

fn empty_core() -> Arc<FakeCore> {
    Arc::new(FakeCore {
        people: HashMap::new(),
        keys: HashMap::new(),
        targets: HashMap::new(),
        state: Mutex::new(State::default()),
    })
}

#[tokio::test]
async fn listens_where_the_config_says_with_the_init_host_key() {
    support::sshd::require("ssh-keygen", "openssh-client");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let port = support::sshd::free_port();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap_or_else(|e| panic!("{e}"));
    support::sshd::keygen(&dir.path().join("keys/ssh_host_ed25519_key"));
    let file = dir.path().join("sekisho.toml");
    std::fs::write(&file, format!("[ssh]\nlisten = \"127.0.0.1:{port}\"\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let config = Config::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        sekisho::ssh::serve_with_config(&config, empty_core(), async {
            let _ = stop_rx.await;
        })
        .await
    });
    let banner = tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).unwrap_or(0);
                return String::from_utf8_lossy(buf.get(..n).unwrap_or(&[])).into_owned();
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        String::new()
    })
    .await
    .unwrap_or_default();
    assert!(banner.starts_with("SSH-2.0-sekisho"), "{banner:?}");
    let _ = stop_tx.send(());
    let result = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
}

#[tokio::test]
async fn a_missing_host_key_says_to_run_init() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("sekisho.toml");
    std::fs::write(&file, "[ssh]\nlisten = \"127.0.0.1:0\"\n").unwrap_or_else(|e| panic!("{e}"));
    let config = Config::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let err = sekisho::ssh::serve_with_config(&config, empty_core(), std::future::pending())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("ssh_host_ed25519_key") && err.contains("sekisho init"),
        "{err}"
    );
}
