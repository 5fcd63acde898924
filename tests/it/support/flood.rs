//! Floods and limits against a real `sekisho serve` of the SSH gateway
//! deployment (`gateway::env()`), both listeners on: a serve process with
//! `[limits]` of the test's choosing, raw connections from a chosen
//! 127.0.0.x address, its memory from /proc. Loopback only.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use super::cli::bin;
use super::gateway::{env, write_config};
use super::install::Install;
use super::process::Daemon;
use super::sshd::free_port;

/// A serve process of the gateway deployment with both listeners.
pub struct Serve {
    pub daemon: Daemon,
    pub ssh: u16,
    pub rdp: u16,
    /// The web console's port, when it is on ([`Serve::start_with_console`]).
    pub web: Option<u16>,
    pub log: PathBuf,
}

impl Serve {
    /// `limits`: the body of `[limits]`; `ssh_extra`: more lines for
    /// `[ssh]`; `open_files`: the process's RLIMIT_NOFILE (soft and hard).
    pub fn start(name: &str, limits: &str, ssh_extra: &str, open_files: Option<u64>) -> Serve {
        Serve::start_inner(name, limits, ssh_extra, open_files, None)
    }

    /// Like [`Serve::start`], with the web console on too (init's
    /// certificate, a free port); `web_extra`: more lines for `[web]`.
    pub fn start_with_console(name: &str, limits: &str, web_extra: &str) -> Serve {
        Serve::start_inner(name, limits, "", None, Some(web_extra))
    }

    fn start_inner(
        name: &str,
        limits: &str,
        ssh_extra: &str,
        open_files: Option<u64>,
        console: Option<&str>,
    ) -> Serve {
        let e = env();
        let ssh = free_port();
        let rdp = free_port();
        let config = write_config(&e.dir, &format!("sekisho-{name}.toml"), ssh, "0", None);
        let text = std::fs::read_to_string(&config).unwrap();
        let fixture_limits = "[limits]\nmax_startups = \"1000\"\nmax_startups_per_source = 0\nsignin_attempts_per_minute = 0\n";
        assert!(text.contains(fixture_limits), "{text}");
        let text = text
            .replace(fixture_limits, &format!("[limits]\n{limits}\n"))
            .replace(
                "[rdp]\nenabled = false\n",
                &format!("[rdp]\nlisten = \"127.0.0.1:{rdp}\"\n"),
            )
            .replace(
                &format!("listen = \"127.0.0.1:{ssh}\"\n"),
                &format!("listen = \"127.0.0.1:{ssh}\"\n{ssh_extra}\n"),
            );
        let web = console.map(|_| free_port());
        let text = match (web, console) {
            (Some(port), Some(extra)) => {
                format!("{text}\n[web]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n{extra}\n")
            }
            _ => text,
        };
        std::fs::write(&config, text).unwrap();
        let install = Install {
            bin: bin(),
            dir: e.dir.clone(),
        };
        let log = config.with_extension("log");
        let daemon = install.serve_with_open_files(
            &config,
            "info,russh=warn,sqlx=warn",
            &log,
            &[[ssh, rdp].as_slice(), web.as_slice()].concat(),
            open_files,
        );
        Serve {
            daemon,
            ssh,
            rdp,
            web,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of the log containing `what`.
    pub fn log_lines(&self, what: &str) -> usize {
        self.log_text().lines().filter(|l| l.contains(what)).count()
    }

    /// Resident memory of the serve process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.daemon.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Descriptors the serve process holds.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.daemon.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// A TCP connection from `source` (a 127.0.0.x address) to 127.0.0.1:`port`.
pub async fn connect_from(source: &str, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse::<IpAddr>().unwrap(), 0))?;
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

/// What a connection saw first: bytes, or the server closing it.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstRead {
    Data(Vec<u8>),
    Closed,
    Silent,
}

/// Reads what the server sends within `wait`.
pub async fn first_read(stream: &mut TcpStream, wait: Duration) -> FirstRead {
    let mut buf = vec![0u8; 256];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => FirstRead::Closed,
        Ok(Ok(n)) => {
            buf.truncate(n);
            FirstRead::Data(buf)
        }
        Err(_) => FirstRead::Silent,
    }
}

/// Waits until the server closes `stream` (reading and dropping what it
/// sends); whether it did within `wait`.
pub async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// An X.224 Connection Request asking for TLS (what every RDP client sends
/// first).
pub const X224_REQUEST_TLS: [u8; 19] = [
    0x03, 0x00, 0x00, 0x13, 0x0e, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x01,
    0x00, 0x00, 0x00,
];

/// How a flood went.
#[derive(Debug, Default, Clone)]
pub struct FloodOutcome {
    pub attempted: u64,
    /// The connect itself failed (backlog full and the like).
    pub not_connected: u64,
    /// Closed by the server before sending anything (refused by a limit).
    pub refused: u64,
    /// Still open and answered (the server took it in).
    pub taken_in: u64,
    pub elapsed: Duration,
}

/// What each flood connection does once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Says nothing.
    Silent,
    /// SSH: sends its version and stalls in the key exchange.
    StalledKex,
    /// RDP: sends the X.224 request and stalls in the TLS handshake.
    StalledTls,
}

/// `count` connections from `source` to `port`, at most `at_once` open at
/// a time; each is held for `hold` (or until the server closes it).
pub async fn flood(
    source: &'static str,
    port: u16,
    count: u64,
    at_once: usize,
    behaviour: Behaviour,
    hold: Duration,
) -> FloodOutcome {
    let started = Instant::now();
    let not_connected = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let taken_in = Arc::new(AtomicU64::new(0));
    let slots = Arc::new(tokio::sync::Semaphore::new(at_once));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let (not_connected, refused, taken_in) =
            (not_connected.clone(), refused.clone(), taken_in.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let Ok(mut stream) = connect_from(source, port).await else {
                not_connected.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let hello: &[u8] = match behaviour {
                Behaviour::Silent => b"",
                Behaviour::StalledKex => b"SSH-2.0-flood_1.0\r\n",
                Behaviour::StalledTls => &X224_REQUEST_TLS,
            };
            if !hello.is_empty() && stream.write_all(hello).await.is_err() {
                refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let wait = Duration::from_millis(200);
            match first_read(&mut stream, wait).await {
                FirstRead::Closed => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                FirstRead::Data(_) | FirstRead::Silent => {
                    taken_in.fetch_add(1, Ordering::Relaxed);
                    let _ = closed_within(&mut stream, hold).await;
                }
            }
        });
        // Reap finished ones so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    FloodOutcome {
        attempted: count,
        not_connected: not_connected.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        taken_in: taken_in.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

/// The X.224 negotiation and a TLS handshake with the RDP front from
/// `source`: whether both completed (the front is serving).
pub async fn rdp_front_answers(source: &str, port: u16) -> Result<(), String> {
    let mut stream = connect_from(source, port)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(&X224_REQUEST_TLS)
        .await
        .map_err(|e| format!("X.224 request: {e}"))?;
    let mut confirm = [0u8; 19];
    stream
        .read_exact(&mut confirm)
        .await
        .map_err(|e| format!("X.224 confirm: {e}"))?;
    // TPKT version 3, X.224 Connection Confirm, RDP_NEG_RSP selecting TLS.
    if confirm[0] != 3 || confirm[5] != 0xd0 || confirm[11] != 2 || confirm[15] != 1 {
        return Err(format!("not a TLS connection confirm: {confirm:02x?}"));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCertificate))
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("sekisho").map_err(|e| e.to_string())?;
    connector
        .connect(name, stream)
        .await
        .map(|_| ())
        .map_err(|e| format!("TLS handshake: {e}"))
}

/// The test checks that the front completes a handshake, not who it is.
#[derive(Debug)]
struct AnyCertificate;

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The sizes of one flood run.
#[derive(Debug, Clone, Copy)]
pub struct FloodPlan {
    /// Silent connections per listener.
    pub silent: u64,
    /// Stalled handshakes per listener.
    pub stalled: u64,
    /// Flood connections open at once.
    pub at_once: usize,
}

/// One row of the flood table.
#[derive(Debug, Clone)]
pub struct FloodRow {
    pub front: &'static str,
    pub what: String,
    pub outcome: FloodOutcome,
    /// How long the real user's sign-in (and command) took during it.
    pub real_user: Result<Duration, String>,
}

/// What a whole run measured.
#[derive(Debug, Clone)]
pub struct FloodReport {
    pub rows: Vec<FloodRow>,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    pub rss_after_kib: u64,
    pub files_before: usize,
    pub files_after: usize,
    pub serve_alive: bool,
    pub refusal_log_lines: usize,
}

/// A real user's sign-in through the gateway from `source`, with a fresh
/// one-time ticket of `person` for db01: how long it took, or why it failed.
pub fn real_ssh_user(serve: &Serve, person: &str, source: &str) -> Result<Duration, String> {
    let ticket = super::gateway::ticket(person, "db01");
    let started = Instant::now();
    let out = super::gateway::ssh(&format!("{person}@db01"))
        .port(serve.ssh)
        .from(source)
        .password(&ticket)
        .remote("echo real-user-works")
        .output();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stdout.trim() == "real-user-works" {
        Ok(took)
    } else {
        Err(format!(
            "after {took:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Floods each front of `serve` from one address while a real user signs
/// in from another: per front, silent connections, then stalled handshakes.
/// `person` signs in with tickets (SSH) during each flood; during the RDP
/// floods the RDP front must also complete X.224 + TLS for another address.
pub fn measure_floods(serve: &mut Serve, plan: FloodPlan, person: &str) -> FloodReport {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Warm up: one sign-in, so pools and caches count in "before".
    let _ = real_ssh_user(serve, person, "127.0.0.51");
    std::thread::sleep(Duration::from_secs(1));
    let rss_before_kib = serve.rss_kib();
    let files_before = serve.open_files();
    let peak = Arc::new(AtomicU64::new(rss_before_kib));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        let status = format!("/proc/{}/status", serve.daemon.pid());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Ok(text) = std::fs::read_to_string(&status)
                    && let Some(kib) = text
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut rows = Vec::new();
    let runs: [(&'static str, u16, &'static str, Behaviour, u64, &str); 4] = [
        (
            "ssh",
            serve.ssh,
            "127.0.0.50",
            Behaviour::Silent,
            plan.silent,
            "silent connections",
        ),
        (
            "ssh",
            serve.ssh,
            "127.0.0.50",
            Behaviour::StalledKex,
            plan.stalled,
            "stalled key exchanges",
        ),
        (
            "rdp",
            serve.rdp,
            "127.0.0.53",
            Behaviour::Silent,
            plan.silent,
            "silent connections",
        ),
        (
            "rdp",
            serve.rdp,
            "127.0.0.53",
            Behaviour::StalledTls,
            plan.stalled,
            "stalled TLS handshakes",
        ),
    ];
    for (front, port, source, behaviour, count, what) in runs {
        let flood = rt.spawn(flood(
            source,
            port,
            count,
            plan.at_once,
            behaviour,
            Duration::from_secs(2),
        ));
        // The real user comes once the flood is under way.
        std::thread::sleep(Duration::from_millis(300));
        let mut real_user = real_ssh_user(serve, person, "127.0.0.51");
        if front == "rdp"
            && let Err(e) = rt.block_on(rdp_front_answers("127.0.0.52", serve.rdp))
        {
            real_user = Err(format!("RDP front from 127.0.0.52: {e}"));
        }
        let outcome = rt.block_on(flood).unwrap();
        rows.push(FloodRow {
            front,
            what: format!("{count} {what}"),
            outcome,
            real_user,
        });
    }
    // Let the server close what the floods left (they hung up) and settle.
    let settled = Instant::now();
    while serve.open_files() > files_before + 4 && settled.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    FloodReport {
        rows,
        rss_before_kib,
        rss_peak_kib: peak.load(Ordering::Relaxed),
        rss_after_kib: serve.rss_kib(),
        files_before,
        files_after: serve.open_files(),
        serve_alive: serve.daemon.running(),
        refusal_log_lines: serve.log_lines("too_many_"),
    }
}

/// The report as markdown tables.
pub fn flood_table(report: &FloodReport) -> String {
    let mut t = String::from(
        "| front | flood from one address | refused at once | taken in | connect failed | flood time | real user (other address) |\n\
         |---|---|---:|---:|---:|---:|---|\n",
    );
    for r in &report.rows {
        let user = match &r.real_user {
            Ok(d) => format!("signed in, {:.2} s", d.as_secs_f64()),
            Err(e) => format!("FAILED: {e}"),
        };
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} s | {} |\n",
            r.front,
            r.what,
            r.outcome.refused,
            r.outcome.taken_in,
            r.outcome.not_connected,
            r.outcome.elapsed.as_secs_f64(),
            user
        ));
    }
    t.push_str(&format!(
        "\n| serve | before | peak | after |\n|---|---:|---:|---:|\n\
         | VmRSS | {:.1} MiB | {:.1} MiB | {:.1} MiB |\n\
         | open descriptors | {} | | {} |\n\
         | alive | yes | | {} |\n\
         | refusal log lines | | | {} |\n",
        report.rss_before_kib as f64 / 1024.0,
        report.rss_peak_kib as f64 / 1024.0,
        report.rss_after_kib as f64 / 1024.0,
        report.files_before,
        report.files_after,
        if report.serve_alive { "yes" } else { "NO" },
        report.refusal_log_lines,
    ));
    t
}
