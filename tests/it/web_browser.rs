//! The web console in a real browser: Debian's Chromium driven over
//! WebDriver (fantoccini) through a chromedriver this test starts on
//! 127.0.0.1, against a real `sekisho serve` with a session made by the
//! OpenSSH client through sekisho to a real sshd. Saves screenshots of the
//! main pages to docs/screenshots/ (shown in the README).
//!
//! Needs `chromium`, `chromium-driver` and `fonts-ipaexfont-gothic`
//! (`.ci/install-peers`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::process::wait_until as wait_for;
use crate::support::{console, deployment, sshd};
use console::ConsoleEnv;
use deployment::PASSWORD;
use fantoccini::{Client, ClientBuilder, Locator};

fn env() -> &'static ConsoleEnv {
    static ENV: OnceLock<ConsoleEnv> = OnceLock::new();
    ENV.get_or_init(|| ConsoleEnv::start("sekisho-browser-"))
}

/// chromedriver on a free loopback port, stopped when dropped.
pub(crate) struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser (Japanese preferred, like the console's people) and its driver.
pub(crate) async fn browser(accept_language: &str) -> (Client, Driver) {
    let chromedriver = sshd::require("chromedriver", "chromium-driver");
    let chromium = sshd::require("chromium", "chromium");
    // `free_port` only finds a port that was free a moment ago; another
    // test's listener may take it first, and chromedriver then exits at
    // once. That (and only that) starts it again on another port.
    let mut attempt = 0;
    let (child, port) = loop {
        attempt += 1;
        let port = crate::support::free_port();
        let mut child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut exited = false;
        let listening = wait_for(Duration::from_secs(30), || {
            exited = matches!(child.try_wait(), Ok(Some(_)));
            exited || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if listening && !exited {
            break (child, port);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            exited && attempt < 3,
            "chromedriver did not listen on 127.0.0.1:{port} (attempt {attempt})"
        );
    };
    let profile = tempfile::tempdir().expect("profile dir");
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    let args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        "--ignore-certificate-errors".into(),
        "--window-size=1280,900".into(),
        format!("--user-data-dir={}", driver._profile.path().display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": args,
            "prefs": { "intl.accept_languages": accept_language },
        }),
    );
    caps.insert("acceptInsecureCerts".into(), serde_json::json!(true));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("WebDriver session");
    (client, driver)
}

async fn sign_in(c: &Client, user: &str) {
    sign_in_at(env(), c, user).await;
}

/// Signs `user` in on the sign-in page of the console of `e`.
pub(crate) async fn sign_in_at(e: &ConsoleEnv, c: &Client, user: &str) {
    c.goto(&e.url("/signin")).await.expect("open sign-in");
    c.find(Locator::Id("user"))
        .await
        .expect("user field")
        .send_keys(user)
        .await
        .expect("type");
    c.find(Locator::Id("password"))
        .await
        .expect("password field")
        .send_keys(PASSWORD)
        .await
        .expect("type");
    c.find(Locator::Id("code"))
        .await
        .expect("code field")
        .send_keys(&e.code(user))
        .await
        .expect("type");
    follow(c, c.find(Locator::Id("signin")).await.expect("button")).await;
    let url = c.current_url().await.expect("url");
    assert_eq!(url.path(), "/sessions", "signed in as {user}");
}

/// Clicks something that leaves the page (a link, a form's button) and
/// waits until the browser has left it: WebDriver's click may return before
/// a form submission navigates, and reading the old page then races with
/// the new one replacing it.
pub(crate) async fn follow(c: &Client, what: fantoccini::elements::Element) {
    let page = c.find(Locator::Css("html")).await.expect("the page");
    what.click().await.expect("click");
    // Generous: the next page may be a sign-in or an export that a loaded
    // machine answers slowly.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match page.tag_name().await {
            // Chromium says the page is gone either way.
            Err(e)
                if e.is_stale_element_reference()
                    || e.to_string().contains("does not belong to the document") =>
            {
                return;
            }
            Err(e) => panic!("while waiting for the next page: {e}"),
            Ok(_) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the click did not leave the page within 30 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

pub(crate) async fn body_text(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .expect("body")
        .text()
        .await
        .expect("text")
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

pub(crate) async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("save screenshot");
}

#[tokio::test(flavor = "multi_thread")]
async fn auditor_signs_in_finds_a_session_by_filter_and_reads_it_in_japanese_and_english() {
    let e = env();
    let (c, _driver) = browser("ja,en").await;
    c.goto(&e.url("/signin")).await.expect("open");
    let text = body_text(&c).await;
    assert!(text.contains("ワンタイムコード"), "{text}");
    screenshot(&c, "signin").await;

    sign_in(&c, console::AUDITORS[0]).await;
    // Find suzuki's session by filter.
    c.find(Locator::Id("f-user"))
        .await
        .expect("filter")
        .send_keys("suzuki")
        .await
        .expect("type");
    follow(&c, c.find(Locator::Id("f-submit")).await.expect("search")).await;
    let url = c.current_url().await.expect("url");
    assert!(
        url.query().unwrap_or_default().contains("user=suzuki"),
        "{url}"
    );
    let text = body_text(&c).await;
    assert!(text.contains("1 件"), "{text}");
    assert!(text.contains("終了"), "Japanese state: {text}");
    screenshot(&c, "sessions").await;

    follow(
        &c,
        c.find(Locator::Css(&format!("a[href='/sessions/{}']", e.session)))
            .await
            .expect("the session's link"),
    )
    .await;
    let verdict = c
        .find(Locator::Id("verdict"))
        .await
        .expect("verdict")
        .text()
        .await
        .expect("text");
    assert!(verdict.contains("記録は完全です"), "{verdict}");
    let log = c
        .find(Locator::Id("keystrokes"))
        .await
        .expect("keystroke log")
        .text()
        .await
        .expect("text");
    assert!(log.contains("日本語テスト-sekisho"), "{log}");
    // The Japanese text is drawn with a real Japanese font, not boxes.
    let font = c
        .execute(
            "return document.fonts.check('16px IPAexGothic', '日本語テスト');",
            vec![],
        )
        .await
        .expect("font check");
    assert_eq!(
        font,
        serde_json::Value::Bool(true),
        "IPAexGothic is available"
    );
    screenshot(&c, "session").await;

    // English by the person's choice.
    follow(
        &c,
        c.find(Locator::Id("switch-lang"))
            .await
            .expect("language switch"),
    )
    .await;
    let text = body_text(&c).await;
    assert!(text.contains("Recording intact"), "{text}");
    assert!(text.contains("Keystroke log"), "{text}");
    assert!(text.contains("日本語テスト-sekisho"), "{text}");
    screenshot(&c, "session-en").await;

    // Replay in the browser: the vendored player (WebAssembly under the
    // replay page's CSP) plays the asciicast; the Japanese output appears.
    follow(
        &c,
        c.find(Locator::Id("replay")).await.expect("replay link"),
    )
    .await;
    c.wait()
        .for_element(Locator::Css(".ap-player"))
        .await
        .expect("the player starts");
    c.execute("window.sekishoPlayer.play();", vec![])
        .await
        .expect("play");
    let mut shown = String::new();
    for _ in 0..40 {
        if let Ok(term) = c.find(Locator::Css(".ap-term")).await {
            // Wide (Japanese) cells are separate elements: join the text.
            shown = term
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            if shown.contains("日本語テスト-sekisho") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        shown.contains("日本語テスト-sekisho"),
        "player shows: {shown:?}"
    );
    screenshot(&c, "replay").await;

    c.goto(&e.url("/audit?user=suzuki")).await.expect("audit");
    let text = body_text(&c).await;
    assert!(text.contains("Audit log"), "{text}");
    assert!(text.contains("session_end"), "{text}");
    screenshot(&c, "audit").await;
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn engineer_is_refused_auditor_pages() {
    let e = env();
    let (c, _driver) = browser("en").await;
    sign_in(&c, "tanaka").await;
    let text = body_text(&c).await;
    assert!(!text.contains("Audit log"), "no audit link: {text}");
    c.goto(&e.url("/audit")).await.expect("audit");
    let text = body_text(&c).await;
    assert!(text.contains("You are not allowed to do this"), "{text}");
    c.goto(&e.url(&format!("/sessions/{}", e.session)))
        .await
        .expect("someone else's session");
    let text = body_text(&c).await;
    assert!(text.contains("You are not allowed to do this"), "{text}");
    assert!(!text.contains("日本語テスト"), "{text}");
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_without_the_csrf_token_is_refused() {
    let e = env();
    let (c, _driver) = browser("en").await;
    sign_in(&c, console::AUDITORS[1]).await;
    // Take the token out of the sign-out form and send it.
    c.execute(
        "document.querySelectorAll('input[name=csrf]').forEach(i => i.remove());",
        vec![],
    )
    .await
    .expect("remove the token");
    follow(
        &c,
        c.find(Locator::Id("signout"))
            .await
            .expect("sign-out button"),
    )
    .await;
    let text = body_text(&c).await;
    assert!(text.contains("missing CSRF token"), "{text}");
    // Still signed in.
    c.goto(&e.url("/sessions")).await.expect("sessions");
    assert_eq!(c.current_url().await.expect("url").path(), "/sessions");
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_stops_a_live_session_with_a_reason_and_the_engineer_sees_it() {
    let e = env();
    let admin = console::ADMINS[2];
    let mut child =
        e.d.ssh(
            "sato@db01",
            "127.0.0.1",
            PASSWORD,
            &e.code("sato"),
            &["echo started; sleep 60"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    let (c, _driver) = browser("ja").await;
    sign_in(&c, admin).await;
    let mut found = false;
    for _ in 0..30 {
        c.goto(&e.url("/sessions?user=sato&state=live"))
            .await
            .expect("list");
        if let Ok(link) = c.find(Locator::Css("#sessions tbody a")).await {
            follow(&c, link).await;
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(found, "the live session is listed");
    let reason = "緊急停止: ブラウザから";
    c.find(Locator::Id("kill-reason"))
        .await
        .expect("reason")
        .send_keys(reason)
        .await
        .expect("type");
    c.find(Locator::Id("kill-code"))
        .await
        .expect("code")
        .send_keys(&e.code_ahead(admin, 1))
        .await
        .expect("type");
    screenshot(&c, "kill").await;
    follow(&c, c.find(Locator::Id("kill")).await.expect("kill button")).await;
    assert!(wait_for(Duration::from_secs(30), || matches!(
        child.try_wait(),
        Ok(Some(_))
    )));
    let out = child.wait_with_output().expect("ssh output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(reason), "{err}");
    // The console shows the session ended as killed.
    let mut killed = false;
    for _ in 0..20 {
        c.refresh().await.expect("reload");
        if c.find(Locator::Css("h1 .state-killed")).await.is_ok() {
            killed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let text = body_text(&c).await;
    assert!(killed, "shown as killed: {text}");
    assert!(text.contains(reason), "{text}");
    assert!(
        c.find(Locator::Id("kill")).await.is_err(),
        "no kill button on an ended session"
    );
    c.close().await.expect("close");
}

/// An auditor watches a live SSH session: text printed after the page
/// opened appears in the player; the watch is audited; an engineer may not
/// watch.
#[tokio::test(flavor = "multi_thread")]
async fn auditor_watches_a_live_session() {
    let e = env();
    let auditor = console::AUDITORS[2];
    let mut child =
        e.d.ssh(
            "ito@db01",
            "127.0.0.1",
            PASSWORD,
            &e.code("ito"),
            &["echo live-start; sleep 6; echo 見ています-marker; sleep 60"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    let (c, _driver) = browser("ja").await;
    sign_in(&c, auditor).await;
    let mut found = false;
    for _ in 0..30 {
        c.goto(&e.url("/sessions?user=ito&state=live"))
            .await
            .expect("list");
        if let Ok(link) = c.find(Locator::Css("#sessions tbody a")).await {
            follow(&c, link).await;
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(found, "the live session is listed");
    follow(
        &c,
        c.find(Locator::Id("watch")).await.expect("watch button"),
    )
    .await;
    let id = c
        .current_url()
        .await
        .expect("url")
        .path()
        .trim_start_matches("/sessions/")
        .trim_end_matches("/live")
        .to_string();
    let mut shown = String::new();
    for _ in 0..60 {
        if let Ok(term) = c.find(Locator::Css(".ap-term")).await {
            shown = term
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            if shown.contains("見ています-marker") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(shown.contains("live-start"), "{shown:?}");
    assert!(shown.contains("見ています-marker"), "{shown:?}");
    screenshot(&c, "live").await;
    let watched = deployment::ok(e.d.sekisho(
        &[
            "audit",
            "--json",
            "--kind",
            "session_watched",
            "--session",
            &id,
        ],
        None,
    ));
    assert!(
        watched.contains(&format!("\"watcher\":\"{auditor}\"")),
        "{watched}"
    );
    let _ = child.kill();
    let _ = child.wait();
    c.close().await.expect("close");
}
