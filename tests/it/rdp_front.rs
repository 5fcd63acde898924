//! The front door of a real `sekisho serve` (made by `sekisho init`, no
//! policy, no peers): what a client that does not offer TLS, or sends
//! garbage, gets back.

use crate::support::rdp_deployment;
use crate::support::rdp_peers;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use ironrdp_core::{decode, encode_vec};
use ironrdp_pdu::nego::{self, FailureCode, SecurityProtocol};
use ironrdp_pdu::x224::X224;
use rdp_deployment::{FRONT, Front};

fn connect(port: u16) -> std::net::TcpStream {
    let tcp = std::net::TcpStream::connect((FRONT, port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    tcp
}

/// Sends an X.224 Connection Request offering `protocol`; the answer.
fn negotiate(port: u16, protocol: SecurityProtocol) -> nego::ConnectionConfirm {
    let mut tcp = connect(port);
    let request = nego::ConnectionRequest {
        nego_data: Some(nego::NegoRequestData::cookie("tester".into())),
        flags: nego::RequestFlags::empty(),
        protocol,
        correlation_info: None,
    };
    tcp.write_all(&encode_vec(&X224(request)).expect("encode"))
        .expect("write");
    let mut buf = vec![0u8; 64];
    let n = tcp.read(&mut buf).expect("an answer within 5 s");
    decode::<X224<nego::ConnectionConfirm>>(&buf[..n])
        .expect("a connection confirm")
        .0
}

#[test]
fn standard_rdp_security_is_refused_with_a_negotiation_failure_and_audited_once() {
    let front = Front::start();
    for _ in 0..3 {
        match negotiate(front.rdp_port, SecurityProtocol::empty()) {
            nego::ConnectionConfirm::Failure { code } => {
                assert_eq!(code, FailureCode::SSL_REQUIRED_BY_SERVER)
            }
            other => panic!("standard security accepted: {other:?}"),
        }
    }
    // Audited as a refusal with what the client asked for, once a minute
    // per address however often it tries.
    for _ in 0..100 {
        if !front.audit_kind("connection_refused").is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let seen = front.audit_kind("connection_refused");
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0]["protocol"], "rdp");
    assert_eq!(seen[0]["data"]["reason"], "no_common_algorithm");
    assert!(
        seen[0]["data"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no TLS")),
        "{seen:#?}"
    );
}

/// `[rdp] nla = "tickets"` (the default): a client whose routing cookie
/// names no person@target with a live ticket is offered TLS even when it
/// asks for NLA first, so it falls back to password + code instead of
/// failing at CredSSP.
#[test]
fn nla_is_offered_only_with_a_ticket_and_tls_always() {
    let front = Front::start();
    let all = SecurityProtocol::SSL | SecurityProtocol::HYBRID | SecurityProtocol::HYBRID_EX;
    match negotiate(front.rdp_port, all) {
        nego::ConnectionConfirm::Response { protocol, .. } => {
            assert_eq!(protocol, SecurityProtocol::SSL)
        }
        other => panic!("TLS not selected: {other:?}"),
    }
    match negotiate(front.rdp_port, SecurityProtocol::SSL) {
        nego::ConnectionConfirm::Response { protocol, .. } => {
            assert_eq!(protocol, SecurityProtocol::SSL)
        }
        other => panic!("TLS not selected: {other:?}"),
    }
}

#[test]
fn garbage_closes_the_connection_and_the_gateway_keeps_serving() {
    let front = Front::start();
    let mut tcp = connect(front.rdp_port);
    // A TPKT header announcing 16 bytes followed by nonsense.
    tcp.write_all(&[3, 0, 0, 16, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0])
        .expect("write");
    let mut buf = [0u8; 16];
    let n = match tcp.read(&mut buf) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        Err(e) => panic!("connection left open: {e}"),
    };
    assert_eq!(n, 0, "garbage got an answer");
    // The listener survived: a proper client negotiates TLS and completes
    // the handshake with the certificate `init` made.
    match negotiate(front.rdp_port, SecurityProtocol::SSL) {
        nego::ConnectionConfirm::Response { protocol, .. } => {
            assert_eq!(protocol, SecurityProtocol::SSL)
        }
        other => panic!("{other:?}"),
    }
    let seen = rdp_peers::probe_cert_sha256_at(FRONT, front.rdp_port);
    assert_eq!(
        seen,
        front.cert_sha256,
        "another certificate after the garbage.\nserve log:\n{}",
        front.serve_log()
    );
}
