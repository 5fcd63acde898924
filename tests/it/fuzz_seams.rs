//! The seams the fuzz targets (`fuzz/`) drive sekisho through are the real
//! code paths: an ironrdp client signs in through the in-memory RDP front
//! (TLS left out; with TLS and with NLA), and archives written by the real
//! writer verify intact.
//!
//! With `SEKISHO_FUZZ_SEEDS=DIR` set, the client byte streams and archives
//! are also written under DIR as seed inputs for the fuzz targets
//! (`fuzz/make-seeds` does this).
//!
//! `cargo test --test it fuzz_seams::`

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use chrono::TimeZone as _;
use ironrdp_async::{connect_begin, connect_finalize, mark_as_upgraded};
use ironrdp_connector::{BitmapConfig, ClientConnector, Credentials, DesktopSize};
use ironrdp_pdu::gcc;
use ironrdp_pdu::rdp::capability_sets::BitmapCodecs;
use ironrdp_tokio::TokioStream;
use sekisho::fuzzing::{
    ArchiveWriter, Event, FrontOutcome, NLA_TICKET, PUBLIC_KEY, RdpInfo, SessionMeta, Verdict,
    WriterOptions, encode_events, fuzz_archive_key, rdp_front_accept, verify_file,
};
use sekisho::recording::event::Stream;
use sekisho::recording::format::{Protocol, TerminalSize};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// Where seeds go, when asked for.
fn seed_dir(target: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("SEKISHO_FUZZ_SEEDS")?).join(target);
    std::fs::create_dir_all(&dir).expect("seed directory");
    Some(dir)
}

fn write_seed(target: &str, name: &str, bytes: &[u8]) {
    if let Some(dir) = seed_dir(target) {
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
}

/// The server end of the connection, keeping a copy of what the client sent.
struct Tee {
    inner: DuplexStream,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Tee {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = buf.filled()[before..].to_vec();
        self.seen.lock().unwrap().extend_from_slice(&new);
        poll
    }
}

impl AsyncWrite for Tee {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct NoNetwork;

impl ironrdp_async::NetworkClient for NoNetwork {
    async fn send(
        &mut self,
        _: &ironrdp_connector::sspi::generator::NetworkRequest,
    ) -> ironrdp_connector::ConnectorResult<Vec<u8>> {
        Err(ironrdp_connector::general_err!("no KDC"))
    }
}

fn client_config(user: &str, password: &str, nla: bool) -> ironrdp_connector::Config {
    ironrdp_connector::Config {
        desktop_size: DesktopSize {
            width: 1280,
            height: 800,
        },
        monitor_layout: None,
        desktop_scale_factor: 0,
        desktop_physical_size: None,
        desktop_orientation: None,
        device_scale_factor: None,
        monitor_extended_layout: None,
        relative_mouse_input: false,
        enable_tls: true,
        enable_credssp: nla,
        enable_standard_rdp_security: false,
        credentials: Credentials::UsernamePassword {
            username: user.to_owned(),
            password: password.to_owned(),
        },
        domain: None,
        client_build: 0,
        client_name: "fuzz-seed".into(),
        keyboard_type: gcc::KeyboardType::IBM_ENHANCED,
        keyboard_subtype: 0,
        keyboard_layout: 0x0411,
        keyboard_functional_keys_count: 12,
        connection_type: gcc::ConnectionType::Lan,
        ime_file_name: String::new(),
        bitmap: Some(BitmapConfig {
            lossy_compression: false,
            color_depth: 32,
            codecs: BitmapCodecs(Vec::new()),
        }),
        dig_product_id: String::new(),
        client_dir: String::new(),
        alternate_shell: String::new(),
        work_dir: String::new(),
        remote_application_mode: false,
        rail_support_level: ironrdp_pdu::rdp::capability_sets::RailSupportLevel::empty(),
        platform: ironrdp_pdu::rdp::capability_sets::MajorPlatformType::UNIX,
        hardware_id: None,
        request_data: None,
        autologon: true,
        enable_audio_playback: false,
        enable_audio_capture: false,
        performance_flags: Default::default(),
        license_cache: None,
        timezone_info: Default::default(),
        compression_type: None,
        enable_server_pointer: false,
        pointer_software_rendering: false,
        multitransport_flags: None,
        support_dyn_vc_gfx_protocol: false,
    }
}

/// An ironrdp client against the in-memory front; the front's outcome and
/// the bytes the client sent.
async fn client_against_front(
    user: &str,
    password: &str,
    nla: bool,
) -> (Result<FrontOutcome, String>, Vec<u8>) {
    let (client_end, server_end) = tokio::io::duplex(1 << 16);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(rdp_front_accept(
        Tee {
            inner: server_end,
            seen: seen.clone(),
        },
        nla,
    ));
    let config = client_config(user, password, nla);
    let client = async move {
        let mut framed = ironrdp_async::Framed::<TokioStream<DuplexStream>>::new(client_end);
        let mut connector = ClientConnector::new(config, "127.0.0.1:50000".parse().unwrap());
        let upgrade = connect_begin(&mut framed, &mut connector).await?;
        // No TLS: the front's seam skips it too.
        let upgraded = mark_as_upgraded(upgrade, &mut connector);
        connect_finalize(
            upgraded,
            connector,
            &mut framed,
            &mut NoNetwork,
            ironrdp_connector::ServerName::new("sekisho"),
            PUBLIC_KEY.to_vec(),
            None,
        )
        .await
    };
    // The front stops after the Client Info PDU; the client then waits for
    // licensing that never comes, or fails when the front hangs up.
    let mut server = server;
    let outcome = tokio::select! {
        biased;
        out = &mut server => out,
        // The client gave up (its end is closed now): the front's answer follows.
        _ = client => server.await,
    }
    .expect("front task");
    let bytes = seen.lock().unwrap().clone();
    (outcome, bytes)
}

/// The bytes after the X.224 Connection Request (what TLS would carry).
fn after_x224(bytes: &[u8]) -> &[u8] {
    let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    &bytes[len..]
}

#[tokio::test]
async fn a_client_signs_in_over_tls_through_the_fuzzed_front() {
    let (outcome, bytes) = client_against_front("tanaka@fa-db01", "secret123456", false).await;
    let outcome = outcome.expect("front accepts the client");
    assert_eq!(outcome.username, "tanaka@fa-db01");
    assert_eq!(
        outcome.person_and_target,
        Some(("tanaka".into(), "fa-db01".into()))
    );
    write_seed("rdp_front", "ironrdp_tls", &[&[0u8][..], &bytes].concat());
    write_seed(
        "rdp_front",
        "ironrdp_mcs",
        &[&[4u8][..], after_x224(&bytes)].concat(),
    );
}

#[tokio::test]
async fn a_client_with_the_ticket_passes_nla_through_the_fuzzed_front() {
    let (outcome, bytes) = client_against_front("fuzzer@fuzz-target", NLA_TICKET, true).await;
    let outcome = outcome.expect("front accepts the ticket");
    assert_eq!(outcome.username, "fuzzer@fuzz-target");
    assert_eq!(
        outcome.person_and_target,
        Some(("fuzzer".into(), "fuzz-target".into()))
    );
    write_seed("rdp_front", "ironrdp_nla", &[&[1u8][..], &bytes].concat());
    write_seed("rdp_nla", "ironrdp_credssp", after_x224(&bytes));
}

#[tokio::test]
async fn a_wrong_ticket_is_refused_by_the_fuzzed_front() {
    let (outcome, bytes) = client_against_front("fuzzer@fuzz-target", "wrong-ticket", true).await;
    let err = outcome.expect_err("a wrong ticket must not pass NLA");
    assert!(err.contains("NLA sign-in failed"), "{err}");
    write_seed("rdp_nla", "ironrdp_credssp_wrong", after_x224(&bytes));
}

fn meta(protocol: Protocol) -> SessionMeta {
    SessionMeta {
        session_id: "0193c0de-0000-7000-8000-000000000001".into(),
        user: "tanaka".into(),
        vendor: "acme".into(),
        system: "fa".into(),
        target: "fa-db01".into(),
        protocol,
        client_addr: "127.0.0.1:50022".into(),
        decision: "allow: acme/fa".into(),
        hop_parent: None,
        started_at: chrono::Utc.with_ymd_and_hms(2026, 11, 22, 1, 2, 3).unwrap(),
        terminal: (protocol == Protocol::Ssh).then(|| TerminalSize {
            cols: 80,
            rows: 24,
            term: Some("xterm-256color".into()),
        }),
        desktop: None,
        rdp: (protocol == Protocol::Rdp).then(|| RdpInfo {
            keyboard_layout: Some(0x411),
            keyboard_type: 7,
            keyboard_subtype: 2,
            fastpath_channel: 0,
            io_channel: 1003,
            ..RdpInfo::default()
        }),
    }
}

fn ssh_events() -> Vec<(u64, Event)> {
    vec![
        (
            0,
            Event::Pty {
                channel: 0,
                term: "xterm".into(),
                cols: 80,
                rows: 24,
            },
        ),
        (
            1500,
            Event::Input {
                channel: 0,
                data: b"ls -l\r".to_vec().into(),
            },
        ),
        (
            2000,
            Event::Output {
                channel: 0,
                stream: Stream::Stdout,
                data: "合計 0\r\n".as_bytes().to_vec().into(),
            },
        ),
        (
            10,
            Event::Resize {
                channel: 0,
                cols: 120,
                rows: 40,
            },
        ),
        (
            5,
            Event::Exec {
                channel: 1,
                command: b"uptime".to_vec().into(),
            },
        ),
        (
            7,
            Event::ChannelRefused {
                channel: 2,
                kind: "subsystem".into(),
                detail: "sftp".into(),
            },
        ),
        (
            9,
            Event::ExitSignal {
                channel: 1,
                signal: "TERM".into(),
                core_dumped: false,
                message: "bye".into(),
            },
        ),
        (
            1,
            Event::ExitStatus {
                channel: 0,
                code: 0,
            },
        ),
        (1, Event::ChannelClosed { channel: 0 }),
        (
            3,
            Event::Mark {
                label: "warning".into(),
                detail: "5 minutes left".into(),
            },
        ),
    ]
}

fn rdp_events() -> Vec<(u64, Event)> {
    vec![
        (
            0,
            Event::DesktopResize {
                width: 1024,
                height: 768,
            },
        ),
        (
            0,
            Event::ChannelOpened {
                channel: 1004,
                kind: "static".into(),
                detail: "cliprdr".into(),
            },
        ),
        (100, Event::Keyframe),
        (
            40,
            Event::Input {
                channel: 0,
                data: vec![0x08, 0x06, 0x00, 0x23, 0x01, 0x23].into(),
            },
        ),
        (
            40,
            Event::Output {
                channel: 1003,
                stream: Stream::Stdout,
                data: vec![0x0e, 0x00, 0x17, 0x00, 0xea, 0x03].into(),
            },
        ),
    ]
}

#[test]
fn sample_archives_verify_intact() {
    let dir = tempfile::tempdir().unwrap();
    for (name, protocol, events) in [
        ("ssh.skrec", Protocol::Ssh, ssh_events()),
        ("rdp.skrec", Protocol::Rdp, rdp_events()),
    ] {
        let path = dir.path().join(name);
        let options = WriterOptions {
            chunk_bytes: 64, // several chunks, so the chain and index matter
            ..WriterOptions::default()
        };
        let mut writer = ArchiveWriter::create(&path, &meta(protocol), options).unwrap();
        let mut t = 0;
        for (delta, event) in &events {
            t += delta;
            writer.append(t, event).unwrap();
        }
        writer.seal(&fuzz_archive_key()).unwrap();
        let report = verify_file(&path, &[fuzz_archive_key().public()]).unwrap();
        assert!(
            matches!(report.verdict, Verdict::Intact { events, .. } if events == 10 || events == 5),
            "{:?}",
            report.verdict
        );
        write_seed("archive", name, &std::fs::read(&path).unwrap());
        let events_name = name.replace(".skrec", ".events");
        write_seed("archive_events", &events_name, &encode_events(&events));
    }
}
