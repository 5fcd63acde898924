//! Pre-authentication limits and running out of descriptors, against real
//! `sekisho serve` processes of the SSH gateway deployment with both
//! listeners on: connections over `[limits]` are closed at once and audited
//! once a minute, a silent client is cut at `[ssh] login_grace`, guessing
//! across many names is held to `signin_attempts_per_minute` (paramiko as
//! the guesser), a process out of descriptors keeps serving, logs a
//! few lines, and takes a real OpenSSH sign-in once they free up, and the
//! web console's listener is held to the same limits (a flood at it leaves
//! the console to a person from another address).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::flood::{
    Behaviour, FirstRead, Serve, closed_within, connect_from, first_read, flood, rdp_front_answers,
};
use crate::support::gateway::{self, PASSWORD, audit, env, text};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `connection_refused` events from `source` with `reason`.
fn refusals(source: &str, reason: &str) -> Vec<serde_json::Value> {
    audit(&["--kind", "connection_refused"])
        .into_iter()
        .filter(|ev| ev["source"] == source && ev["data"]["reason"] == reason)
        .collect()
}

#[test]
fn connections_over_the_limits_are_closed_at_once_and_audited_once() {
    let serve = Serve::start(
        "limits",
        "max_startups = \"10:30:100\"\nmax_startups_per_source = 3\nsignin_attempts_per_minute = 4",
        "login_grace = \"3s\"",
        None,
    );
    let rt = runtime();
    rt.block_on(async {
        // Three from one address are let in: each gets the SSH banner.
        let mut admitted = Vec::new();
        for _ in 0..3 {
            let mut s = connect_from("127.0.0.31", serve.ssh).await.unwrap();
            match first_read(&mut s, Duration::from_secs(5)).await {
                FirstRead::Data(d) => assert!(d.starts_with(b"SSH-2.0-sekisho"), "{d:?}"),
                other => panic!("admitted connection saw {other:?}"),
            }
            admitted.push(s);
        }
        let held_since = Instant::now();
        // Five more from the same address are closed before any banner.
        for _ in 0..5 {
            let mut s = connect_from("127.0.0.31", serve.ssh).await.unwrap();
            assert_eq!(
                first_read(&mut s, Duration::from_secs(5)).await,
                FirstRead::Closed
            );
        }
        // Another address is not affected, on either listener.
        let mut other = connect_from("127.0.0.32", serve.ssh).await.unwrap();
        assert!(matches!(
            first_read(&mut other, Duration::from_secs(5)).await,
            FirstRead::Data(_)
        ));
        rdp_front_answers("127.0.0.32", serve.rdp).await.unwrap();
        // The RDP listener counts the same way: three silent ones held...
        let mut rdp_held = Vec::new();
        for _ in 0..3 {
            let mut s = connect_from("127.0.0.34", serve.rdp).await.unwrap();
            assert_eq!(
                first_read(&mut s, Duration::from_millis(300)).await,
                FirstRead::Silent
            );
            rdp_held.push(s);
        }
        // ... and a fourth closed at once.
        let mut s = connect_from("127.0.0.34", serve.rdp).await.unwrap();
        assert_eq!(
            first_read(&mut s, Duration::from_secs(5)).await,
            FirstRead::Closed
        );
        // The silent SSH clients are cut at the sign-in grace time (3 s).
        for s in &mut admitted {
            assert!(
                closed_within(s, Duration::from_secs(15)).await,
                "a silent client outlived login_grace"
            );
        }
        let held = held_since.elapsed();
        assert!(held >= Duration::from_secs(2), "cut after {held:?}");
    });
    // Eight refusals, two audit events: one per address and reason.
    let mut seen = Vec::new();
    gateway::wait_until(Duration::from_secs(30), || {
        seen = refusals("127.0.0.31", "too_many_from_source");
        !seen.is_empty() && !refusals("127.0.0.34", "too_many_from_source").is_empty()
    });
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0]["protocol"], "ssh");
    let rdp = refusals("127.0.0.34", "too_many_from_source");
    assert_eq!(rdp.len(), 1, "{rdp:#?}");
    assert_eq!(rdp[0]["protocol"], "rdp");
    // And the log says it once per address and reason too.
    assert_eq!(
        serve.log_lines("too_many_from_source"),
        2,
        "{}",
        serve.log_text()
    );
}

#[test]
fn a_client_with_no_cipher_in_common_is_audited_once_a_minute_with_both_offers() {
    // `[ssh] ciphers` leaves AES-GCM only; a client that will take only
    // chacha20-poly1305 cannot start a handshake. Its person is told by
    // their client; the operator finds it in the audit log, once a minute
    // per address however often it retries.
    let serve = Serve::start(
        "nocipher",
        "",
        "ciphers = [\"aes128-gcm@openssh.com\"]",
        None,
    );
    for _ in 0..3 {
        let out = gateway::ssh("tanaka@db01")
            .port(serve.ssh)
            .from("127.0.0.91")
            .arg("-c")
            .arg("chacha20-poly1305@openssh.com")
            .remote("true")
            .output();
        assert_eq!(out.status.code(), Some(255), "{out:?}");
    }
    let mut seen = Vec::new();
    gateway::wait_until(Duration::from_secs(30), || {
        seen = refusals("127.0.0.91", "no_common_algorithm");
        !seen.is_empty()
    });
    // The later two are held back until a minute has passed.
    std::thread::sleep(Duration::from_secs(1));
    let seen = refusals("127.0.0.91", "no_common_algorithm");
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0]["protocol"], "ssh");
    let detail = seen[0]["data"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("aes128-gcm@openssh.com")
            && detail.contains("chacha20-poly1305@openssh.com"),
        "{seen:#?}"
    );
    assert_eq!(
        serve.log_lines("no_common_algorithm"),
        1,
        "{}",
        serve.log_text()
    );
    // A client that takes AES-GCM (OpenSSH's default list has it) signs in
    // and works as ever (tanaka's sign-in window is on 127.0.0.1).
    let out = gateway::ssh("tanaka@db01")
        .port(serve.ssh)
        .remote("echo in")
        .output();
    assert_eq!(text(&out.stdout), "in\n", "{out:?}");
}

/// paramiko guessing: one password per connection, a new name each time.
const GUESSER: &str = r#"
import socket, sys
import paramiko

port, source, count = sys.argv[1:]
for i in range(int(count)):
    sock = socket.create_connection(("127.0.0.1", int(port)), timeout=20,
                                    source_address=(source, 0))
    t = paramiko.Transport(sock)
    t.start_client(timeout=20)
    try:
        t.auth_password("guess%d@db01" % i, "password%d" % i)
        print("accepted?!", flush=True)
    except paramiko.AuthenticationException:
        print("refused", flush=True)
    t.close()
"#;

#[test]
fn guessing_across_names_is_held_to_the_attempts_per_minute() {
    let serve = Serve::start(
        "attempts",
        "max_startups_per_source = 3\nsignin_attempts_per_minute = 4",
        "",
        None,
    );
    let script = env().dir.join("paramiko_guesser.py");
    std::fs::write(&script, GUESSER).unwrap();
    let source = "127.0.0.33";
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg("120")
        .arg("/usr/bin/python3")
        .arg(&script)
        .arg(serve.ssh.to_string())
        .arg(source)
        .arg("10")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(stdout.matches("refused").count(), 10, "{stdout}");
    // Four passwords were checked (and audited as failures); the rest were
    // refused unchecked, reported once. The budget refills one attempt per
    // 15 s: a loaded machine that takes longer for the ten connections
    // has one more checked per 15 s they took, never more.
    let refilled = usize::try_from(took.as_secs() / 15).unwrap();
    let checked: Vec<_> = audit(&["--kind", "signin_failure"])
        .into_iter()
        .filter(|ev| ev["source"] == source)
        .collect();
    assert!(
        (4..=4 + refilled).contains(&checked.len()),
        "{} checked in {took:?}: {checked:#?}",
        checked.len()
    );
    let mut refused = Vec::new();
    gateway::wait_until(Duration::from_secs(30), || {
        refused = refusals(source, "too_many_attempts");
        !refused.is_empty()
    });
    assert_eq!(refused.len(), 1, "{refused:#?}");
    // Another address still signs in (tanaka, inside the sign-in window).
    let ok = gateway::ssh("tanaka@db01")
        .port(serve.ssh)
        .remote("echo still-open")
        .output();
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stdout).trim(), "still-open");
}

#[test]
fn running_out_of_descriptors_does_not_stop_serve() {
    // Room for the process and a few dozen connections only.
    let serve = Serve::start(
        "nofile",
        "max_startups = \"100000\"\nmax_startups_per_source = 0",
        "login_grace = \"20s\"",
        Some(128),
    );
    let said = serve
        .log_text()
        .lines()
        .any(|l| l.contains("open-file limit allows about 12 ") && l.contains("128"));
    assert!(
        said,
        "serve did not report its open-file limit:\n{}",
        serve.log_text()
    );
    let mut serve = serve;
    let rt = runtime();
    let flood_started = Instant::now();
    let mut held = rt.block_on(async {
        let mut held = Vec::new();
        // 80 each: more than 128 descriptors hold (an SSH connection takes
        // two), fewer than the accept queue takes without delaying connects.
        for _ in 0..80 {
            held.push(connect_from("127.0.0.41", serve.ssh).await.unwrap());
            held.push(connect_from("127.0.0.41", serve.rdp).await.unwrap());
        }
        held
    });
    eprintln!("160 connections held after {:?}", flood_started.elapsed());
    // Both listeners hit EMFILE and wait it out. Which one meets the limit
    // first depends on how serve's two accept loops are scheduled: on a
    // loaded machine one may take every free descriptor while the other has
    // already accepted all its connections (and descriptors come and go as
    // pre-sign-in connections time out). So a listener that has not failed
    // yet gets one connection more every half second until it has: with
    // the descriptors taken, its next accept fails.
    let failed_on = |protocol: &str| {
        serve.log_text().lines().any(|l| {
            l.contains("cannot accept connections")
                && l.contains(&format!("protocol=\"{protocol}\""))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(failed_on("ssh") && failed_on("rdp")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        for (protocol, port) in [("ssh", serve.ssh), ("rdp", serve.rdp)] {
            if !failed_on(protocol) {
                held.push(rt.block_on(connect_from("127.0.0.41", port)).unwrap());
            }
        }
    }
    let exhausted = failed_on("ssh") && failed_on("rdp");
    let fds = serve.open_files();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        exhausted,
        "no accept failure logged ({fds} descriptors open):\n{}",
        serve.log_text()
    );
    assert!(serve.daemon.running(), "serve ended:\n{}", serve.log_text());
    // A few lines, not ten a second per listener: per listener at most one
    // a LOG_INTERVAL (10 s), also while accepting flickers between working
    // and failing as connections close.
    let lines = serve.log_lines("cannot accept connections");
    let out_of_files = flood_started.elapsed();
    let bound = 2 * (out_of_files.as_secs() / 10 + 1);
    eprintln!("{lines} accept-failure lines in {out_of_files:?} out of descriptors");
    assert!(
        lines as u64 <= bound,
        "{lines} lines in {out_of_files:?}:\n{}",
        serve.log_text()
    );

    drop(held);
    // A real sign-in and a command through the gateway, and the RDP front
    // answering, once descriptors are free again.
    let mut ok = None;
    gateway::wait_until(Duration::from_secs(30), || {
        let out = gateway::ssh("tanaka@db01")
            .port(serve.ssh)
            .remote("echo recovered")
            .output();
        let success = out.status.success();
        ok = Some(out);
        success
    });
    let out = ok.unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        serve.log_text()
    );
    assert_eq!(text(&out.stdout).trim(), "recovered");
    rt.block_on(rdp_front_answers("127.0.0.42", serve.rdp))
        .unwrap();
    assert!(serve.daemon.running());
    assert!(
        serve.log_lines("accepting connections again") >= 1,
        "{}",
        serve.log_text()
    );
}

/// The console's HTTPS listener is a front door before sign-in like the
/// gateways (`web::serve` asks the same gate): 10 000 silent connections
/// from one address are held to `max_startups_per_source` (the rest closed
/// at once, audited once), while a person from another loopback address
/// signs in to the console over HTTPS and reads the API; `serve` stays up.
#[test]
fn a_flood_at_the_console_leaves_it_to_a_person_from_another_address() {
    let mut serve = Serve::start_with_console(
        "webflood",
        "max_startups = \"10:30:100\"\nmax_startups_per_source = 5\nsignin_attempts_per_minute = 30",
        "",
    );
    let web = serve.web.expect("the console is on");
    let flooding = std::thread::spawn(move || {
        runtime().block_on(flood(
            "127.0.0.61",
            web,
            10_000,
            200,
            Behaviour::Silent,
            Duration::from_secs(15),
        ))
    });
    // The flood is under way (and holds its five slots) before the person comes.
    std::thread::sleep(Duration::from_millis(500));
    let cert = std::fs::read(env().dir.join("keys/rdp_tls_cert.pem")).unwrap();
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .tls_built_in_root_certs(false)
        .cookie_store(true)
        .local_address("127.0.0.62".parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    let r = client
        .post(format!("https://127.0.0.1:{web}/api/v1/login"))
        .json(&serde_json::json!({
            "user": "noda", "password": PASSWORD, "code": gateway::code("noda")
        }))
        .send()
        .unwrap_or_else(|e| panic!("sign-in during the flood: {e}\n{}", serve.log_text()));
    assert_eq!(r.status(), reqwest::StatusCode::OK, "{}", serve.log_text());
    let sessions = client
        .get(format!("https://127.0.0.1:{web}/api/v1/sessions"))
        .send()
        .expect("the API after sign-in");
    assert_eq!(sessions.status(), reqwest::StatusCode::OK);
    let took = started.elapsed();
    let outcome = flooding.join().unwrap();
    eprintln!("console flood: {outcome:?}; the person signed in and read in {took:?}");
    assert!(
        outcome.taken_in <= outcome.attempted / 10,
        "the flood was let in: {outcome:?}"
    );
    assert!(outcome.refused > 0, "{outcome:?}");
    assert!(serve.daemon.running(), "serve ended:\n{}", serve.log_text());
    let mut seen = Vec::new();
    gateway::wait_until(Duration::from_secs(30), || {
        seen = refusals("127.0.0.61", "too_many_from_source");
        !seen.is_empty()
    });
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0]["protocol"], "web");
    assert!(refusals("127.0.0.62", "too_many_from_source").is_empty());
}

/// The console's sign-in spends the same per-address budget as the
/// gateways' (`signin_attempts_per_minute`): six console sign-ins with
/// unknown names from one address have two checked and four refused
/// unchecked (the same answer, reported once, protocol `web`); an SSH
/// guess from that address is then refused unchecked too, and so is a
/// right password (nothing more is checked or audited as a failure).
/// Two a minute: the budget refills one attempt per 30 s, more than a
/// loaded machine takes for the whole sequence (at four a minute, 15 s).
#[test]
fn console_sign_ins_count_against_the_same_attempts_per_minute() {
    let serve = Serve::start_with_console(
        "webattempts",
        "max_startups_per_source = 3\nsignin_attempts_per_minute = 2",
        "",
    );
    let web = serve.web.expect("the console is on");
    let cert = std::fs::read(env().dir.join("keys/rdp_tls_cert.pem")).unwrap();
    let source = "127.0.0.36";
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .tls_built_in_root_certs(false)
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let login = |user: &str, password: &str| {
        client
            .post(format!("https://127.0.0.1:{web}/api/v1/login"))
            .json(&serde_json::json!({
                "user": user, "password": password, "code": gateway::code("noda")
            }))
            .send()
            .unwrap_or_else(|e| panic!("console sign-in: {e}\n{}", serve.log_text()))
            .status()
    };
    let failures = || {
        audit(&["--kind", "signin_failure"])
            .into_iter()
            .filter(|ev| ev["source"] == source)
            .count()
    };
    for i in 0..6 {
        let status = login(&format!("webguess{i}"), &format!("password{i}"));
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "guess {i}");
    }
    assert_eq!(failures(), 2, "two sign-ins checked");
    let mut refused = Vec::new();
    gateway::wait_until(Duration::from_secs(30), || {
        refused = refusals(source, "too_many_attempts");
        !refused.is_empty()
    });
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["protocol"], "web");

    // The same address over SSH: no budget left, nothing checked.
    let script = env().dir.join("paramiko_guesser_web.py");
    std::fs::write(&script, GUESSER).unwrap();
    let out = Command::new("timeout")
        .arg("120")
        .arg("/usr/bin/python3")
        .arg(&script)
        .arg(serve.ssh.to_string())
        .arg(source)
        .arg("1")
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout).trim(), "refused", "{}", text(&out.stderr));
    // A right password from the spent address: refused, not checked.
    assert_eq!(login("noda", PASSWORD), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(failures(), 2, "a sign-in over the budget was checked");
}

/// A console connection with no traffic for `[web] connection_idle` is
/// closed by the server (it holds a descriptor whether or not anyone is
/// signed in); one that keeps asking stays open past that time.
#[test]
fn an_idle_console_connection_is_closed() {
    use rustls::pki_types::pem::PemObject as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let serve = Serve::start_with_console(
        "webidle",
        "max_startups_per_source = 5",
        "connection_idle = \"3s\"",
    );
    let web = serve.web.expect("the console is on");
    let cert = std::fs::read(env().dir.join("keys/rdp_tls_cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&cert) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let request = format!("GET /signin HTTP/1.1\r\nHost: 127.0.0.1:{web}\r\n\r\n");
    runtime().block_on(async move {
        let open = || async {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", web))
                .await
                .unwrap();
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .unwrap()
        };
        // Reads one whole answer (the sign-in page is sent with a length).
        async fn answer<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
            let mut got = Vec::new();
            let mut buf = [0u8; 16384];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed before the answer");
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .expect("content-length");
                    if got.len() >= head_end + 4 + length {
                        return text;
                    }
                }
            }
        }
        let mut idle = open().await;
        idle.write_all(request.as_bytes()).await.unwrap();
        assert!(answer(&mut idle).await.starts_with("HTTP/1.1 200"));
        // A second in, the idle one is still open (nothing to read yet).
        // Looked at before the busy one exists, so that its requests, slow
        // on a loaded machine, do not push this look past the 3 s.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(Duration::from_millis(300), idle.read(&mut buf)).await;
        assert!(early.is_err(), "closed within a second: {early:?}");
        let mut busy = open().await;
        busy.write_all(request.as_bytes()).await.unwrap();
        assert!(answer(&mut busy).await.starts_with("HTTP/1.1 200"));
        // The busy one asks every second for 6 s: still open.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            busy.write_all(request.as_bytes()).await.unwrap();
            assert!(answer(&mut busy).await.starts_with("HTTP/1.1 200"));
        }
        // The idle one was closed (3 s), well before the busy one ended.
        let read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the idle connection is still open: {read:?}"
        );
    });
}
