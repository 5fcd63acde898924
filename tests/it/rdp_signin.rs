//! RDP sign-in as stock clients meet it (issue 15): the certificate `init`
//! makes, default security (no `/sec:`), the drawn sign-in and refusal
//! screens, rdesktop, and reconnection after a network drop with sekisho's
//! auto-reconnect cookie. Real `sekisho serve`, xfreerdp3, xfreerdp (2),
//! rdesktop and xrdp.

use crate::support::install::Install;
use crate::support::process::{Daemon, wait_until};
use crate::support::rdp_deployment;
use crate::support::rdp_peers;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdp_deployment::*;
use rdp_peers::*;

fn openssl_text(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl x509 failed on {}",
        cert.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn openssl_sha256(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    // "sha256 Fingerprint=AA:BB:..."
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .rsplit('=')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

/// The "RDP certificate SHA-256: …" line of `init` or `cert show`.
fn printed_pin(out: &str) -> String {
    out.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("RDP certificate SHA-256:")
                .or_else(|| l.trim().strip_prefix("pin (SHA-256):"))
                .or_else(|| l.trim().strip_prefix("pin (SHA-256) to tell users:"))
        })
        .map(|p| p.trim().to_ascii_uppercase())
        .unwrap_or_else(|| panic!("no pin printed:\n{out}"))
}

/// Days between openssl's "Not Before" and "Not After" dates.
fn validity_days(text: &str) -> i64 {
    let date = |label: &str| {
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} in:\n{text}"));
        let s = line.trim().trim_start_matches(':').trim();
        chrono::NaiveDateTime::parse_from_str(s.trim_end_matches(" GMT"), "%b %e %H:%M:%S %Y")
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
    };
    (date("Not After") - date("Not Before")).num_days()
}

#[test]
fn init_makes_an_rsa_3072_certificate_for_the_host_name_valid_a_year_and_renews_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("bastion");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // The admin names the bastion before `init` (init keeps this file).
    std::fs::write(
        dir.join("sekisho.toml"),
        "[rdp]\nhost_name = \"bastion.example.lg.jp\"\n",
    )
    .expect("config");
    let (install, out) = Install::init(&bin(), &dir);
    let cert = dir.join("keys/rdp_tls_cert.pem");
    let text = openssl_text(&cert);
    assert!(text.contains("Public-Key: (3072 bit)"), "{text}");
    assert!(text.contains("rsaEncryption"), "{text}");
    assert!(
        text.contains("Subject: CN = bastion.example.lg.jp")
            || text.contains("Subject: CN=bastion.example.lg.jp"),
        "{text}"
    );
    assert!(text.contains("DNS:bastion.example.lg.jp"), "{text}");
    assert!(!text.contains("rcgen"), "{text}");
    let days = validity_days(&text);
    assert!((360..=370).contains(&days), "valid {days} days:\n{text}");
    // The pin users are told is the certificate's SHA-256.
    let pin = printed_pin(&out);
    assert_eq!(pin, openssl_sha256(&cert), "{out}");
    assert_eq!(printed_pin(&install.admin(&["cert", "show"], None)), pin);

    // Renewal: a new key and certificate, same subject, a new pin.
    let renewed = install.admin(&["cert", "renew"], None);
    let new_pin = printed_pin(&renewed);
    assert_ne!(new_pin, pin);
    assert_eq!(new_pin, openssl_sha256(&cert));
    let text = openssl_text(&cert);
    assert!(text.contains("Public-Key: (3072 bit)"), "{text}");
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("keys/rdp_tls_key.pem"))
            .expect("key")
            .permissions(),
    );
    assert_eq!(key_mode & 0o077, 0, "key readable by others: {key_mode:o}");

    // ECDSA by configuration.
    let config = std::fs::read_to_string(install.config()).expect("config");
    std::fs::write(
        install.config(),
        config.replace("[rdp]\n", "[rdp]\ncert_key = \"ecdsa-p256\"\n"),
    )
    .expect("config");
    install.admin(&["cert", "renew"], None);
    let text = openssl_text(&cert);
    assert!(text.contains("prime256v1"), "{text}");

    // A certificate from the municipality's CA is not sekisho's to renew.
    let own = tmp.path().join("ca-issued.pem");
    std::fs::copy(&cert, &own).expect("copy");
    std::fs::copy(
        dir.join("keys/rdp_tls_key.pem"),
        tmp.path().join("ca-issued.key"),
    )
    .expect("copy");
    let config = std::fs::read_to_string(install.config()).expect("config");
    std::fs::write(
        install.config(),
        config.replace(
            "[rdp]\n",
            &format!(
                "[rdp]\ncert = \"{}\"\nkey = \"{}\"\n",
                own.display(),
                tmp.path().join("ca-issued.key").display()
            ),
        ),
    )
    .expect("config");
    let refused = install.sekisho(&["cert", "renew"], None);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("renew it with the CA"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        printed_pin(&install.admin(&["cert", "show"], None)),
        openssl_sha256(&own)
    );
}

/// A client started with exactly these arguments (no certificate or
/// security options added), its output in a log file.
fn spawn_client(
    d: &Deployment,
    display: &str,
    program: &str,
    args: &[String],
    stdin: Option<&str>,
) -> Client {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = d.tmp().join(format!("signin-client-{n}.log"));
    let log_file = std::fs::File::create(&log).expect("client log");
    let err_file = log_file.try_clone().expect("clone log");
    let mut cmd = Command::new(program);
    cmd.env("DISPLAY", display)
        .env("WLOG_LEVEL", "INFO")
        .args(args)
        .stdout(log_file)
        .stderr(err_file);
    let daemon = match stdin {
        None => Daemon::spawn(program, cmd.stdin(Stdio::null())),
        Some(text) => {
            // Answers a question on stdin (rdesktop asks whether to trust
            // the certificate), then keeps stdin open.
            let mut daemon = Daemon::spawn(program, cmd.stdin(Stdio::piped()));
            if let Some(mut pipe) = daemon.child.stdin.take() {
                let text = text.to_owned();
                std::thread::spawn(move || {
                    use std::io::Write as _;
                    let _ = pipe.write_all(text.as_bytes());
                    std::thread::sleep(Duration::from_secs(120));
                    drop(pipe);
                });
            }
            daemon
        }
    };
    Client { daemon, log }
}

fn xdotool(display: &str, args: &[&str]) -> String {
    let out = Command::new("xdotool")
        .env("DISPLAY", display)
        .args(args)
        .output()
        .expect("xdotool");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Types `text` (`\t` is Tab, `\n` is Return) into the window whose name
/// contains `window`.
fn type_into(display: &str, window: &str, text: &str) {
    let id = xdotool(display, &["search", "--name", window])
        .lines()
        .next()
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no window {window:?} on {display}"));
    xdotool(display, &["windowactivate", "--sync", &id]);
    xdotool(display, &["mousemove", "--sync", "300", "300"]);
    xdotool(display, &["windowfocus", "--sync", &id]);
    // Tab and Return as keys: `xdotool type` sends them through a
    // remapped keycode the clients do not know.
    let mut chunk = String::new();
    for c in text.chars() {
        let key = match c {
            '\t' => "Tab",
            '\n' => "Return",
            _ => {
                chunk.push(c);
                continue;
            }
        };
        if !chunk.is_empty() {
            xdotool(display, &["type", "--delay", "60", &chunk]);
            chunk.clear();
        }
        xdotool(display, &["key", key]);
    }
    if !chunk.is_empty() {
        xdotool(display, &["type", "--delay", "60", &chunk]);
    }
}

fn serve_log_has(d: &Deployment, what: &str, times: usize) -> bool {
    wait_until(Duration::from_secs(30), || {
        d.serve_log().matches(what).count() >= times
    })
}

/// FreeRDP 3 with its default security (no `/sec:`) and password + code is
/// offered TLS (it has no ticket) and signs in; the certificate pin that
/// `init` printed is the one FreeRDP checks.
#[test]
fn freerdp3_default_security_with_password_and_code_and_the_pin_reaches_xrdp() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let pin = openssl_sha256(&d.dir.join("keys/rdp_tls_cert.pem"))
        .replace(':', "")
        .to_ascii_lowercase();
    let client = spawn_client(
        &d,
        &x.display,
        "xfreerdp3",
        &[
            format!("/v:{FRONT}:{}", d.rdp_port),
            "/u:tanaka@xrdp1".into(),
            format!("/p:{PASSWORD}{}", d.code("tanaka")),
            format!("/cert:fingerprint:sha256:{pin}"),
            "/size:1024x768".into(),
        ],
        None,
    );
    d.assert_desktop_up(
        &client,
        "default security with password+code did not reach xrdp",
    );
    assert!(
        d.serve_log().contains("selected=SecurityProtocol(SSL)") || !client.log().contains("NLA"),
        "NLA was used:\n{}",
        client.log()
    );
    drop(client);
    end_test_user_sessions();
    assert!(d.audit("signin_failure", "tanaka").is_empty());

    // FreeRDP 2, default security, the same way.
    let client = spawn_client(
        &d,
        &x.display,
        "xfreerdp",
        &[
            format!("/v:{FRONT}:{}", d.rdp_port),
            "/u:tanaka@xrdp1".into(),
            format!("/p:{PASSWORD}{}", d.code_ahead("tanaka", 1)),
            "/cert-ignore".into(),
            "/size:1024x768".into(),
        ],
        None,
    );
    d.assert_desktop_up(&client, "FreeRDP 2 default security did not reach xrdp");
    drop(client);
    end_test_user_sessions();
    assert!(d.audit("signin_failure", "tanaka").is_empty());
}

/// A client with no password gets the drawn sign-in screen; ID, password
/// and code typed there (masked) sign in, and the same connection reaches
/// the target. Nothing typed is in the serve log.
#[test]
fn the_drawn_sign_in_screen_signs_in_and_connects_the_target_in_the_same_connection() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let client = spawn_client(
        &d,
        &x.display,
        "xfreerdp3",
        &[
            format!("/v:{FRONT}:{}", d.rdp_port),
            "/u:".into(),
            "/p:".into(),
            "/cert:ignore".into(),
            "/size:1024x768".into(),
            "-grab-keyboard".into(),
        ],
        None,
    );
    assert!(
        serve_log_has(&d, "drawn sign-in screen shown", 1),
        "no sign-in screen:\n{}\n{}",
        client.log(),
        d.serve_log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let code = d.code("suzuki");
    type_into(
        &x.display,
        "FreeRDP",
        &format!("suzuki@xrdp1\t{PASSWORD}\t{code}\n"),
    );
    d.assert_desktop_up(&client, "the drawn sign-in did not reach xrdp");
    let log = d.serve_log();
    assert!(!log.contains(PASSWORD), "the password is in the serve log");
    assert!(!log.contains(&code), "the code is in the serve log");
    let methods: Vec<String> = d
        .audit("signin_success", "suzuki")
        .iter()
        .filter_map(|e| e["data"]["method"].as_str().map(str::to_owned))
        .collect();
    assert!(methods.iter().any(|m| m == "totp"), "{methods:?}");
    drop(client);
    end_test_user_sessions();
}

/// rdesktop in its default mode (it asks on stdin whether to trust the
/// RSA certificate) reaches the drawn screen and signs in there.
#[test]
fn rdesktop_default_mode_reaches_the_drawn_screen_and_signs_in() {
    require_tool("rdesktop", "rdesktop");
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let mut client = spawn_client(
        &d,
        &x.display,
        "rdesktop",
        &[
            "-u".into(),
            "ito@xrdp1".into(),
            "-g".into(),
            "1024x768".into(),
            format!("{FRONT}:{}", d.rdp_port),
        ],
        Some("yes\n"),
    );
    assert!(
        serve_log_has(&d, "drawn sign-in screen shown", 1),
        "rdesktop did not reach the screen:\n{}\n{}",
        client.log(),
        d.serve_log()
    );
    assert!(
        client.daemon.running(),
        "rdesktop exited:\n{}",
        client.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    // The ID came from -u: the focus is on the password.
    type_into(
        &x.display,
        "rdesktop",
        &format!("{PASSWORD}\t{}\n", d.code("ito")),
    );
    d.assert_desktop_up(
        &client,
        "rdesktop did not reach xrdp through the drawn screen",
    );
    assert!(
        client.daemon.running(),
        "rdesktop exited:\n{}",
        client.log()
    );
    drop(client);
    end_test_user_sessions();
}

/// The refusal screen as the client shows it: the window captured while
/// the screen is up equals the screen sekisho draws for that reason.
#[test]
fn a_refused_connection_shows_its_reason_on_the_screen_before_the_disconnect() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    // RDP to a virtual target is refused by policy (rule rdp_virtual).
    let mut client = spawn_client(
        &d,
        &x.display,
        "xfreerdp3",
        &[
            format!("/v:{FRONT}:{}", d.rdp_port),
            "/u:sato@vm1".into(),
            format!("/p:{PASSWORD}{}", d.code("sato")),
            "/cert:ignore".into(),
            "/size:1024x768".into(),
        ],
        None,
    );
    assert!(
        serve_log_has(&d, "refusal screen shown", 1),
        "no refusal screen:\n{}\n{}",
        client.log(),
        d.serve_log()
    );
    let deny = d.audit("deny", "sato");
    let detail = deny
        .iter()
        .find(|e| e["data"]["rule"] == "rdp_virtual")
        .and_then(|e| e["detail"].as_str())
        .unwrap_or_else(|| panic!("no rdp_virtual denial: {deny:?}"))
        .to_owned();
    let font =
        sekisho::rdp::screen::ScreenFont::load(Path::new(sekisho::config::DEFAULT_SCREEN_FONT))
            .expect("font");
    let expected = sekisho::rdp::screen::refusal_screen(
        &font,
        1024,
        768,
        &sekisho::rdp::screen::refusal_text(Some("rdp_virtual"), &detail),
    );
    let other = sekisho::rdp::screen::refusal_screen(
        &font,
        1024,
        768,
        &sekisho::rdp::screen::refusal_text(None, "sign-in failed"),
    );
    let matching = |canvas: &sekisho::rdp::screen::Canvas, pixels: &[u8]| {
        let mut same = 0usize;
        let mut differs_from_background = 0usize;
        for y in 0..768u16 {
            for x in 0..1024u16 {
                let at = (usize::from(y) * 1024 + usize::from(x)) * 3;
                let sekisho::rdp::screen::Rgb(r, g, b) = canvas.pixel(x, y);
                if canvas.pixel(x, y) != sekisho::rdp::screen::BACKGROUND
                    && canvas.pixel(x, y) != sekisho::rdp::screen::PANEL
                {
                    differs_from_background += 1;
                    if pixels[at..at + 3] == [r, g, b] {
                        same += 1;
                    }
                }
            }
        }
        (same, differs_from_background)
    };
    // The window as the client shows it, captured until the client has
    // drawn the whole screen (it may take a while on a loaded machine; the
    // screen stays up for 5 s): the last capture is what is judged.
    let shot = d.tmp().join("refusal.rgb");
    let window = xdotool(&x.display, &["search", "--name", "FreeRDP"])
        .lines()
        .next()
        .map(str::to_owned)
        .expect("FreeRDP window");
    let capture = || {
        let out = Command::new("import")
            .env("DISPLAY", &x.display)
            .args(["-window", &window, "-depth", "8"])
            .arg(format!("rgb:{}", shot.display()))
            .output()
            .expect("import");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pixels = std::fs::read(&shot).expect("screenshot");
        assert_eq!(pixels.len(), 1024 * 768 * 3, "window is not 1024x768");
        pixels
    };
    let mut pixels = capture();
    let drawn_by = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < drawn_by {
        let (same, inked) = matching(&expected, &pixels);
        if same * 100 >= inked * 95 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        pixels = capture();
    }
    let _ = Command::new("import")
        .env("DISPLAY", &x.display)
        .args(["-window", &window])
        .arg(d.tmp().join("refusal.png"))
        .output();
    // Text and bars: nearly every inked pixel is where it was drawn.
    let (same, inked) = matching(&expected, &pixels);
    assert!(
        same * 100 >= inked * 95,
        "the client shows another screen: {same} of {inked} inked pixels match (see {})",
        d.tmp().join("refusal.png").display()
    );
    let (same_other, inked_other) = matching(&other, &pixels);
    assert!(
        same_other * 100 < inked_other * 80,
        "the sign-in failure screen matches as well: the reason is not what is shown"
    );

    // Then the error code and the disconnect.
    let status = client.exit_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "{status:?}:\n{}",
        client.log()
    );
    assert!(
        client
            .log()
            .contains("ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES"),
        "{}",
        client.log()
    );
    assert!(!session_user_running(), "the target was reached");
}

/// `+auto-reconnect`: the connection is killed under a running session
/// (`ss -K`), FreeRDP reconnects with sekisho's cookie and is back on the
/// target without a code; no failure is audited. The two sessions are
/// linked: the second names the first.
#[test]
fn a_dropped_connection_resumes_with_the_auto_reconnect_cookie_without_a_failure() {
    let _lock = prepare();
    let d = Deployment::start_with(Options {
        signin_window: "10m",
        ..Options::default()
    });
    let x = Xvfb::start();
    let client = spawn_client(
        &d,
        &x.display,
        "xfreerdp3",
        &[
            format!("/v:{FRONT}:{}", d.rdp_port),
            "/u:kato@xrdp1".into(),
            format!("/p:{PASSWORD}{}", d.code("kato")),
            "/cert:ignore".into(),
            "/size:1024x768".into(),
            "+auto-reconnect".into(),
            "/auto-reconnect-max-retries:5".into(),
            "-grab-keyboard".into(),
        ],
        None,
    );
    d.assert_desktop_up(&client, "the first connection did not reach xrdp");
    assert!(
        serve_log_has(&d, "auto-reconnect cookie sent", 1),
        "no cookie sent:\n{}",
        d.serve_log()
    );
    let first = d
        .install()
        .live_session_id("kato", Duration::from_secs(10))
        .expect("live session");
    // The cookie having been sent does not mean the client has read it: a
    // command typed and run on the target after it, and a pause, show the
    // client is past the cookie in its input stream (TCP keeps the order)
    // before the connection is cut. Without this the drop could come
    // first on a loaded machine and the client would have no cookie.
    d.assert_typed_command_runs(&client, &x.display, "before-drop", "typing before the drop");
    std::thread::sleep(Duration::from_secs(1));

    // The network drops: the client's socket to sekisho is killed.
    let out = Command::new("ss")
        .args([
            "-K",
            "dst",
            FRONT,
            "dport",
            "=",
            &format!(":{}", d.rdp_port),
        ])
        .output()
        .expect("ss");
    assert!(
        out.status.success(),
        "ss -K: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let resumed = wait_until(Duration::from_secs(60), || {
        d.audit("signin_success", "kato")
            .iter()
            .any(|e| e["data"]["method"] == "auto-reconnect")
    });
    assert!(
        resumed,
        "no resumption:\nsign-in audit: {:?}\nclient:\n{}\nserve:\n{}",
        d.audit("signin_failure", "kato"),
        client.log(),
        d.serve_log()
    );
    let resumption = d
        .audit("signin_success", "kato")
        .into_iter()
        .find(|e| e["data"]["method"] == "auto-reconnect")
        .expect("resumption");
    assert_eq!(resumption["data"]["resumes"], first.as_str());
    // The session continues on the target: what is typed runs there.
    assert!(
        wait_until(Duration::from_secs(30), || d
            .audit("session_start", "kato")
            .len()
            >= 2),
        "no second session"
    );
    std::thread::sleep(Duration::from_secs(2));
    d.assert_typed_command_runs(
        &client,
        &x.display,
        "after-reconnect",
        "typing after the reconnection",
    );
    assert!(
        d.audit("signin_failure", "kato").is_empty(),
        "{:?}",
        d.audit("signin_failure", "kato")
    );
    let ends = d.audit("session_end", "kato");
    assert!(
        ends.iter().any(|e| e["detail"]
            .as_str()
            .is_some_and(|s| s.contains("client was lost"))),
        "{ends:?}"
    );
    drop(client);
    end_test_user_sessions();
}

/// Where the reconnecting clients' forwarder connects from (not a target's
/// address, which would make the connection a hop), and where the
/// reconnection of a client whose address changed comes from.
const CLIENT_IP: &str = "127.0.0.12";
const MOVED_IP: &str = "127.0.0.15";

/// `ss -K`: the network drops under every TCP connection to `port` on
/// loopback (each side of such a connection sees a reset).
fn drop_connections_to(port: u16) {
    let out = Command::new("ss")
        .args(["-K", "dst", FRONT, "dport", "=", &format!(":{port}")])
        .output()
        .expect("ss");
    assert!(
        out.status.success(),
        "ss -K: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// xfreerdp3 with automatic reconnection, through the forwarder on
/// `port`, signed in with password and code.
fn reconnecting_client(d: &Deployment, display: &str, person: &str, port: u16) -> Client {
    spawn_client(
        d,
        display,
        "xfreerdp3",
        &[
            format!("/v:{FRONT}:{port}"),
            format!("/u:{person}@xrdp1"),
            format!("/p:{PASSWORD}{}", d.code(person)),
            "/cert:ignore".into(),
            "/size:1024x768".into(),
            "+auto-reconnect".into(),
            "/auto-reconnect-max-retries:5".into(),
            "-grab-keyboard".into(),
        ],
        None,
    )
}

/// The client has the cookie (a command typed after it ran on the target),
/// then the network drops: first between the forwarder and node A (sekisho
/// sees the reset a lost client gives), then the client's own connection.
fn drop_after_the_cookie(d: &Deployment, client: &Client, display: &str, forwarder: u16) {
    assert!(
        serve_log_has(d, "auto-reconnect cookie sent", 1),
        "no cookie sent:\n{}",
        d.serve_log()
    );
    d.assert_typed_command_runs(client, display, "before-drop", "typing before the drop");
    std::thread::sleep(Duration::from_secs(1));
    drop_connections_to(d.rdp_port);
    drop_connections_to(forwarder);
}

/// Console pages as an auditor sees them (signed in through the API).
fn console_pages(d: &Deployment, paths: &[String]) -> Vec<String> {
    const AUDITOR: &str = "kansa";
    let out = d.install().admin(
        &[
            "user",
            "add",
            AUDITOR,
            "--role",
            "auditor",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    let key = crate::support::totp::key_from_user_add(&out);
    let base = format!("https://127.0.0.1:{}", d.web_port.expect("web port"));
    let pem = std::fs::read(d.dir.join("keys/rdp_tls_cert.pem")).expect("init's certificate");
    let c = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("certificate"))
        .tls_built_in_root_certs(false)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let r = c
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({
            "user": AUDITOR,
            "password": PASSWORD,
            "code": crate::support::totp::code_ahead(&key, 0),
        }))
        .send()
        .expect("login");
    assert_eq!(r.status().as_u16(), 200, "login of {AUDITOR}");
    paths
        .iter()
        .map(|path| {
            let r = c.get(format!("{base}{path}")).send().expect("page");
            assert_eq!(r.status().as_u16(), 200, "{path}");
            r.text().expect("page text")
        })
        .collect()
}

/// Two `serve` nodes on one database behind a forwarder that sends the
/// first connection to node A and the next to node B: after the drop the
/// client resumes on node B with the cookie node A issued, with no code and
/// no failure, and the new session names the one it resumes.
#[test]
fn a_dropped_connection_resumes_on_another_node_sharing_the_database() {
    let _lock = prepare();
    // No sign-in window: the replayed password + code cannot sign in again,
    // so only the cookie can resume.
    let d = Deployment::start_with(Options {
        web: true,
        ..Options::default()
    });
    let (port_b, _node_b) = d.start_second_node();
    let forwarder = forward_tcp_routes(
        FRONT,
        vec![
            ((FRONT, d.rdp_port), Some(CLIENT_IP)),
            ((FRONT, port_b), Some(CLIENT_IP)),
        ],
    );
    let x = Xvfb::start();
    let client = reconnecting_client(&d, &x.display, "kato", forwarder);
    d.assert_desktop_up(&client, "the first connection did not reach xrdp");
    let first_id = d
        .install()
        .live_session_id("kato", Duration::from_secs(20))
        .expect("live session on node A");
    let first = d
        .install()
        .live_sessions()
        .into_iter()
        .find(|s| s["id"] == first_id.as_str())
        .expect("listed");
    drop_after_the_cookie(&d, &client, &x.display, forwarder);

    let resumed = wait_until(Duration::from_secs(60), || {
        d.audit("signin_success", "kato")
            .iter()
            .any(|e| e["data"]["method"] == "auto-reconnect")
    });
    assert!(
        resumed,
        "no resumption:\nsign-in failures: {:?}\nclient:\n{}\nnode A:\n{}\nnode B:\n{}",
        d.audit("signin_failure", "kato"),
        client.log(),
        d.serve_log(),
        d.serve_b_log()
    );
    let resumption = d
        .audit("signin_success", "kato")
        .into_iter()
        .find(|e| e["data"]["method"] == "auto-reconnect")
        .expect("resumption");
    assert_eq!(resumption["data"]["resumes"], first_id.as_str());
    assert!(
        d.serve_b_log()
            .contains("RDP session resumed with an auto-reconnect cookie"),
        "not resumed on node B:\n{}",
        d.serve_b_log()
    );
    // The new session runs on node B and its start names the old one.
    let mut second = None;
    wait_until(Duration::from_secs(30), || {
        second = d
            .audit("session_start", "kato")
            .into_iter()
            .find(|e| e["data"]["resumes"] == first_id.as_str());
        second.is_some()
    });
    let second = second.expect("a session_start naming the resumed session");
    let second_id = second["session"].as_str().expect("session").to_owned();
    assert_ne!(second_id, first_id);
    let mut on_b = None;
    wait_until(Duration::from_secs(30), || {
        on_b = d
            .install()
            .live_sessions()
            .into_iter()
            .find(|s| s["id"] == second_id.as_str());
        on_b.is_some()
    });
    let on_b = on_b.expect("the resumed session is live");
    assert_ne!(on_b["node"], first["node"], "{on_b} vs {first}");
    std::thread::sleep(Duration::from_secs(2));
    d.assert_typed_command_runs(
        &client,
        &x.display,
        "after-reconnect",
        "typing after the reconnection on node B",
    );
    assert!(
        d.audit("signin_failure", "kato").is_empty(),
        "{:?}",
        d.audit("signin_failure", "kato")
    );
    drop(client);
    // An auditor follows the link in the console both ways: the resumed
    // session's page links to the one it resumes, and back.
    let pages = console_pages(
        &d,
        &[
            format!("/sessions/{second_id}"),
            format!("/sessions/{first_id}"),
        ],
    );
    assert!(
        pages[0].contains(&format!(
            r#"<a href="/sessions/{first_id}" id="resumes">{first_id}</a>"#
        )),
        "{}",
        pages[0]
    );
    assert!(
        pages[1].contains(&format!(
            r#"<a href="/sessions/{second_id}" id="resumed-by">{second_id}</a>"#
        )),
        "{}",
        pages[1]
    );
    // The recording shows the drop and the resumption: linked sessions, the
    // first ended by the lost connection, the second's archive opening
    // with a `resumed` mark naming the first.
    assert!(
        wait_until(Duration::from_secs(30), || d
            .audit("session_end", "kato")
            .len()
            >= 2),
        "{:?}",
        d.audit("session_end", "kato")
    );
    let ends = d.audit("session_end", "kato");
    let first_end = ends
        .iter()
        .find(|e| e["session"] == first_id.as_str())
        .expect("the first session's end");
    assert!(
        first_end["detail"]
            .as_str()
            .is_some_and(|s| s.contains("client was lost")),
        "{first_end}"
    );
    let archive = d
        .install()
        .archive(&second_id)
        .expect("the resumed session's archive");
    let mut reader = sekisho::recording::Reader::open(&archive).expect("open archive");
    let first_mark = reader
        .events()
        .find_map(|ev| match ev.expect("event").event {
            sekisho::recording::Event::Mark { label, detail } => Some((label, detail)),
            _ => None,
        });
    assert_eq!(
        first_mark,
        Some(("resumed".to_string(), first_id.clone())),
        "the resumed session's first mark"
    );
    end_test_user_sessions();
}

/// A cookie presented from another address than it was issued to (the
/// forwarder's first connection leaves from CLIENT_IP, the reconnection
/// from MOVED_IP) does not resume: the connection is refused and the
/// client stops, the refusal is audited with its reason, the cookie is
/// spent, no session resumes, and the replayed code is not counted.
#[test]
fn a_cookie_from_another_address_is_refused_audited_and_burnt() {
    let _lock = prepare();
    let d = Deployment::start();
    let forwarder = forward_tcp_routes(
        FRONT,
        vec![
            ((FRONT, d.rdp_port), Some(CLIENT_IP)),
            ((FRONT, d.rdp_port), Some(MOVED_IP)),
        ],
    );
    let x = Xvfb::start();
    let mut client = reconnecting_client(&d, &x.display, "kato", forwarder);
    d.assert_desktop_up(&client, "the first connection did not reach xrdp");
    let first = d
        .install()
        .live_session_id("kato", Duration::from_secs(20))
        .expect("live session");
    drop_after_the_cookie(&d, &client, &x.display, forwarder);

    let mut refusal = None;
    wait_until(Duration::from_secs(60), || {
        refusal = d
            .audit("signin_failure", "kato")
            .into_iter()
            .find(|e| e["data"]["method"] == "auto-reconnect");
        refusal.is_some()
    });
    let refusal = refusal.unwrap_or_else(|| {
        panic!(
            "no refusal:\nclient:\n{}\nserve:\n{}",
            client.log(),
            d.serve_log()
        )
    });
    assert_eq!(refusal["data"]["reason"], "other-address", "{refusal}");
    assert_eq!(refusal["data"]["cookie_of"], first.as_str(), "{refusal}");
    assert_eq!(refusal["source"], MOVED_IP, "{refusal}");
    // The client is told and stops (no retry loop toward a lockout).
    let status = client.exit_within(Duration::from_secs(60));
    assert!(status.is_some(), "the client kept going:\n{}", client.log());
    let log = client.log();
    // It reconnected once, was refused with a code, and gave up.
    assert!(log.contains("Attempting reconnect (1 of"), "{log}");
    assert!(log.contains("ERRINFO_SERVER_DENIED_CONNECTION"), "{log}");
    assert!(!log.contains("Attempting reconnect (2 of"), "{log}");
    // Nothing resumed, and the replayed code was never checked.
    assert_eq!(
        d.audit("session_start", "kato").len(),
        1,
        "{:?}",
        d.audit("session_start", "kato")
    );
    assert!(
        !d.audit("signin_success", "kato")
            .iter()
            .any(|e| e["data"]["method"] == "auto-reconnect")
    );
    let failures = d.audit("signin_failure", "kato");
    assert_eq!(failures.len(), 1, "{failures:?}\nclient:\n{log}");
    assert!(d.audit("lockout", "kato").is_empty());
    // The cookie is spent: not even its own address could use it now.
    let url = format!("sqlite://{}", d.dir.join("sekisho.db").display());
    let cookies = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let store = sekisho::store::Store::open(&url, None)
                .await
                .expect("store");
            let c = store
                .reconnect_cookies_of(first.parse().expect("uuid"))
                .await
                .expect("cookies");
            store.close().await;
            c
        });
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(cookies[0].used_at.is_some(), "{cookies:?}");
    end_test_user_sessions();
}
/// The client window on `display` as 8-bit RGB pixels (`import`), also
/// kept as `name.png` in the test's directory for a person to look at.
fn capture_window(d: &Deployment, display: &str, name: &str) -> Vec<u8> {
    let window = xdotool(display, &["search", "--name", "FreeRDP"])
        .lines()
        .next()
        .map(str::to_owned)
        .expect("FreeRDP window");
    let shot = d.tmp().join(format!("{name}.rgb"));
    let out = Command::new("import")
        .env("DISPLAY", display)
        .args(["-window", &window, "-depth", "8"])
        .arg(format!("rgb:{}", shot.display()))
        .output()
        .expect("import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = Command::new("import")
        .env("DISPLAY", display)
        .args(["-window", &window])
        .arg(d.tmp().join(format!("{name}.png")))
        .output();
    std::fs::read(&shot).expect("screenshot")
}

/// The target names of the serve log's "targets offered" line.
fn offered_targets(log: &str) -> Vec<String> {
    let line = log
        .lines()
        .find(|l| l.contains("targets offered"))
        .unwrap_or_else(|| panic!("no targets offered:\n{log}"));
    let list = line
        .split_once("targets=[")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .unwrap_or_else(|| panic!("no target list in {line}"));
    list.split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Signed in on the drawn screen with an ID that names no target, a person
/// who may reach several targets over RDP gets the choice drawn (title and
/// the first row highlighted, as `TargetChoice::draw` draws them), picks
/// one with the arrow keys and Enter, and the desktop of that target comes
/// up; a command typed there runs. Only RDP targets are offered (the
/// virtual `vm1` is not: RDP to it is a hop only).
#[test]
fn a_person_who_names_no_target_chooses_one_on_the_drawn_screen() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let client = spawn_client(
        &d,
        &x.display,
        "xfreerdp3",
        &[
            format!("/v:{FRONT}:{}", d.rdp_port),
            "/u:".into(),
            "/p:".into(),
            "/cert:ignore".into(),
            "/size:1024x768".into(),
            "-grab-keyboard".into(),
        ],
        None,
    );
    assert!(
        serve_log_has(&d, "drawn sign-in screen shown", 1),
        "no sign-in screen:\n{}\n{}",
        client.log(),
        d.serve_log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let code = d.code("tanaka");
    type_into(
        &x.display,
        "FreeRDP",
        &format!("tanaka\t{PASSWORD}\t{code}\n"),
    );
    assert!(
        serve_log_has(&d, "target choice shown", 1),
        "no choice:\n{}\n{}",
        client.log(),
        d.serve_log()
    );
    let offered = offered_targets(&d.serve_log());
    assert!(offered.len() >= 2, "{offered:?}");
    assert!(offered.iter().any(|t| t == "xrdp1"), "{offered:?}");
    assert!(!offered.iter().any(|t| t == "vm1"), "{offered:?}");

    // What the client shows is the choice: its title and instructions as
    // sekisho draws them, the first row highlighted.
    std::thread::sleep(Duration::from_millis(1500));
    let pixels = capture_window(&d, &x.display, "choice");
    assert_eq!(pixels.len(), 1024 * 768 * 3, "window is not 1024x768");
    let font =
        sekisho::rdp::screen::ScreenFont::load(Path::new(sekisho::config::DEFAULT_SCREEN_FONT))
            .expect("font");
    let expected = sekisho::rdp::screen::TargetChoice::new(
        offered
            .iter()
            .map(|t| (t.clone(), "lab".to_owned(), String::new()))
            .collect(),
    )
    .draw(&font, 1024, 768);
    let (px, py, pw, _) = sekisho::rdp::screen::SignInForm::panel(1024, 768);
    let at = |x: u16, y: u16| (usize::from(y) * 1024 + usize::from(x)) * 3;
    let (mut same, mut inked) = (0usize, 0usize);
    // The title and the instructions: above the list.
    for y in py..py + 100 {
        for x in px..px + pw {
            let sekisho::rdp::screen::Rgb(r, g, b) = expected.pixel(x, y);
            if expected.pixel(x, y) != sekisho::rdp::screen::PANEL {
                inked += 1;
                if pixels[at(x, y)..at(x, y) + 3] == [r, g, b] {
                    same += 1;
                }
            }
        }
    }
    assert!(
        inked > 500 && same * 100 >= inked * 95,
        "the client does not show the choice: {same} of {inked} pixels match (see {})",
        d.tmp().join("choice.png").display()
    );
    let band = |y: u16| pixels[at(px + 40, y)..at(px + 40, y) + 3] == [0x2f, 0x5d, 0xa8];
    assert!(band(py + 115), "the first row is not highlighted");
    assert!(!band(py + 147), "the second row is highlighted");

    // Down to xrdp1, Enter.
    let row = offered.iter().position(|t| t == "xrdp1").expect("xrdp1");
    let mut keys = "\u{2193}".repeat(row);
    keys.push('\n');
    type_keys(&x.display, &keys);
    assert!(
        serve_log_has(&d, "target chosen on the screen", 1),
        "no choice made:\n{}",
        d.serve_log()
    );
    d.assert_desktop_up(&client, "the chosen target's desktop did not come up");
    std::thread::sleep(Duration::from_secs(2));
    d.assert_typed_command_runs(&client, &x.display, "chosen", "typing on the chosen target");
    let allow = d.audit("allow", "tanaka");
    assert!(
        allow.iter().any(|e| e["target"] == "xrdp1"),
        "no allow for xrdp1: {allow:?}"
    );
    let log = d.serve_log();
    assert!(!log.contains(PASSWORD), "the password is in the serve log");
    assert!(!log.contains(&code), "the code is in the serve log");
    drop(client);
    end_test_user_sessions();
}

/// Keys into the FreeRDP window: `↓` is the Down arrow, `\n` Return.
fn type_keys(display: &str, keys: &str) {
    let id = xdotool(display, &["search", "--name", "FreeRDP"])
        .lines()
        .next()
        .map(str::to_owned)
        .expect("FreeRDP window");
    xdotool(display, &["windowfocus", "--sync", &id]);
    for c in keys.chars() {
        let key = match c {
            '\u{2193}' => "Down",
            '\n' => "Return",
            other => panic!("no key for {other:?}"),
        };
        xdotool(display, &["key", key]);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A client that sends `person@target` and the password without the code,
/// outside any sign-in window, is asked for the code on the drawn screen
/// (its password kept, masked, unchecked): the code typed there signs in,
/// the session reaches xrdp, and the attempt is one success and no
/// failure. Nothing typed (password, code) is in the serve log or the
/// session's keystroke log.
#[test]
fn a_password_without_its_code_is_asked_for_the_code_on_the_drawn_screen() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let client = spawn_client(
        &d,
        &x.display,
        "xfreerdp3",
        &[
            format!("/v:{FRONT}:{}", d.rdp_port),
            "/u:suzuki@xrdp1".into(),
            format!("/p:{PASSWORD}"),
            "/cert:ignore".into(),
            "/size:1024x768".into(),
            "-grab-keyboard".into(),
        ],
        None,
    );
    assert!(
        serve_log_has(&d, "asking for the code on the drawn screen", 1)
            && serve_log_has(&d, "drawn sign-in screen shown", 1),
        "no code asked for:\n{}\n{}",
        client.log(),
        d.serve_log()
    );
    // Nothing was checked or counted yet.
    assert!(d.audit("signin_failure", "suzuki").is_empty());
    assert!(d.audit("signin_success", "suzuki").is_empty());
    std::thread::sleep(Duration::from_secs(1));
    let code = d.code("suzuki");
    type_into(&x.display, "FreeRDP", &format!("{code}\n"));
    d.assert_desktop_up(&client, "the code typed on the screen did not reach xrdp");
    std::thread::sleep(Duration::from_secs(2));
    d.assert_typed_command_runs(&client, &x.display, "after-code", "typing after the code");
    drop(client);
    end_test_user_sessions();

    // One sign-in: each factor accepted once (the password and the code
    // each audit their success, as any TLS sign-in does), no failure.
    let success = d.audit("signin_success", "suzuki");
    let by = |method: &str| {
        success
            .iter()
            .filter(|e| e["data"]["method"] == method)
            .count()
    };
    assert_eq!(by("totp"), 1, "{success:?}");
    assert_eq!(by("password"), 1, "{success:?}");
    assert_eq!(success.len(), 2, "{success:?}");
    let failures = d.audit("signin_failure", "suzuki");
    assert!(failures.is_empty(), "{failures:?}");
    let log = d.serve_log();
    assert!(!log.contains(PASSWORD), "the password is in the serve log");
    assert!(!log.contains(&code), "the code is in the serve log");

    let start = d.audit("session_start", "suzuki");
    let session = start[0]["session"].as_str().expect("session id").to_owned();
    assert!(
        wait_until(Duration::from_secs(15), || d
            .audit_session(&session)
            .iter()
            .any(|e| e["kind"] == "session_end")),
        "no session_end"
    );
    let keys = ok(sekisho(
        &d.dir,
        &["export", &session, "--format", "keystrokes"],
        None,
    ));
    assert!(
        keys.contains("id -un"),
        "the typed command is missing:\n{keys}"
    );
    assert!(
        !keys.contains(PASSWORD),
        "the password is in the keystrokes"
    );
    assert!(
        !keys.contains(&code),
        "the code is in the keystrokes:\n{keys}"
    );
}

/// A client that sends a password and code with a user name that names no
/// target (`/u:tanaka`) is signed in as sent and gets the choice without
/// the sign-in form; the number key picks the row. With nothing to choose
/// from (an emergency stop for the vendor), the refusal screen says so
/// and the denial is audited.
#[test]
fn a_user_name_without_a_target_signs_in_and_chooses_by_number_or_is_told_there_is_none() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let client = spawn_client(
        &d,
        &x.display,
        "xfreerdp3",
        &[
            format!("/v:{FRONT}:{}", d.rdp_port),
            "/u:tanaka".into(),
            format!("/p:{PASSWORD}{}", d.code("tanaka")),
            "/cert:ignore".into(),
            "/size:1024x768".into(),
            "-grab-keyboard".into(),
        ],
        None,
    );
    assert!(
        serve_log_has(&d, "target choice shown", 1),
        "no choice:\n{}\n{}",
        client.log(),
        d.serve_log()
    );
    assert!(
        !d.serve_log().contains("drawn sign-in screen shown"),
        "the sign-in form was shown to a client that signed in"
    );
    let offered = offered_targets(&d.serve_log());
    let row = offered.iter().position(|t| t == "xrdp1").expect("xrdp1") + 1;
    std::thread::sleep(Duration::from_secs(1));
    type_into(&x.display, "FreeRDP", &format!("{row}\n"));
    d.assert_desktop_up(&client, "the target chosen by number did not come up");
    drop(client);
    end_test_user_sessions();

    d.install().admin(
        &[
            "stop",
            "vendor",
            "acme",
            "--reason",
            "test: nothing to offer",
        ],
        None,
    );
    let mut client = spawn_client(
        &d,
        &x.display,
        "xfreerdp3",
        &[
            format!("/v:{FRONT}:{}", d.rdp_port),
            "/u:suzuki".into(),
            format!("/p:{PASSWORD}{}", d.code("suzuki")),
            "/cert:ignore".into(),
            "/size:1024x768".into(),
        ],
        None,
    );
    let status = client.exit_within(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| !s.success()),
        "{status:?}:\n{}",
        client.log()
    );
    assert!(
        client
            .log()
            .contains("ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES"),
        "{}",
        client.log()
    );
    assert!(!session_user_running(), "the target was reached");
    let deny = d.audit("deny", "suzuki");
    assert!(
        deny.iter()
            .any(|e| e["data"]["rule"] == "no_reachable_target"),
        "{deny:?}"
    );
    assert!(d.audit("signin_failure", "suzuki").is_empty());
}
