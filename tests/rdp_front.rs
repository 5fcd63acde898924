//! The front door without any peer: what a client that does not offer TLS,
//! or sends garbage, gets back.

#[path = "support/rdp_fake_core.rs"]
mod rdp_fake_core;

use std::sync::Arc;
use std::time::Duration;

use ironrdp_core::{decode, encode_vec};
use ironrdp_pdu::nego::{self, FailureCode, SecurityProtocol};
use ironrdp_pdu::x224::X224;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn gateway() -> (u16, tempfile::TempDir) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    let tls = sekisho::rdp::tls_server_config(&cert, &key).expect("tls config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(sekisho::rdp::serve(
        listener,
        tls,
        Arc::new(rdp_fake_core::FakeCore::new()),
    ));
    (port, dir)
}

async fn negotiate(port: u16, protocol: SecurityProtocol) -> nego::ConnectionConfirm {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = nego::ConnectionRequest {
        nego_data: Some(nego::NegoRequestData::cookie("tester".into())),
        flags: nego::RequestFlags::empty(),
        protocol,
        correlation_info: None,
    };
    tcp.write_all(&encode_vec(&X224(request)).expect("encode"))
        .await
        .expect("write");
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("no answer")
        .expect("read");
    decode::<X224<nego::ConnectionConfirm>>(&buf[..n])
        .expect("a connection confirm")
        .0
}

#[tokio::test]
async fn standard_rdp_security_is_refused_with_a_negotiation_failure() {
    let (port, _dir) = gateway().await;
    match negotiate(port, SecurityProtocol::empty()).await {
        nego::ConnectionConfirm::Failure { code } => {
            assert_eq!(code, FailureCode::SSL_REQUIRED_BY_SERVER)
        }
        other => panic!("standard security accepted: {other:?}"),
    }
}

#[tokio::test]
async fn nla_is_preferred_and_tls_accepted() {
    let (port, _dir) = gateway().await;
    let all = SecurityProtocol::SSL | SecurityProtocol::HYBRID | SecurityProtocol::HYBRID_EX;
    match negotiate(port, all).await {
        nego::ConnectionConfirm::Response { protocol, .. } => {
            assert_eq!(protocol, SecurityProtocol::HYBRID)
        }
        other => panic!("NLA not selected: {other:?}"),
    }
    match negotiate(port, SecurityProtocol::SSL).await {
        nego::ConnectionConfirm::Response { protocol, .. } => {
            assert_eq!(protocol, SecurityProtocol::SSL)
        }
        other => panic!("TLS not selected: {other:?}"),
    }
}

#[tokio::test]
async fn garbage_closes_the_connection_and_the_gateway_keeps_serving() {
    let (port, _dir) = gateway().await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // A TPKT header announcing 16 bytes followed by nonsense.
    tcp.write_all(&[3, 0, 0, 16, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0])
        .await
        .expect("write");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("connection left open")
        .unwrap_or(0);
    assert_eq!(n, 0, "garbage got an answer");
    // The listener survived.
    match negotiate(port, SecurityProtocol::SSL).await {
        nego::ConnectionConfirm::Response { protocol, .. } => {
            assert_eq!(protocol, SecurityProtocol::SSL)
        }
        other => panic!("{other:?}"),
    }
}
