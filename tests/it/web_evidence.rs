//! The session page as evidence, against a real `sekisho serve` with
//! sessions made by the OpenSSH client through sekisho to a real sshd:
//! the decision and end reason worded in the reader's language (and old
//! rows with only a sentence still shown), the archive's verdict kept
//! between views yet a tampered archive shown as tampered, and (in
//! Chromium) a keystroke-log entry opening the player at its moment.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::Utc;
use fantoccini::Locator;
use reqwest::blocking::Client;
use sekisho::store::{
    AuditEvent, AuditKind, EndKind, NewSession, SessionEnd, SessionStatus, Store,
};
use uuid::Uuid;

use crate::support::console::{self, ConsoleEnv};
use crate::support::deployment::{self, PASSWORD};
use crate::support::process::wait_until;
use crate::web_browser::{body_text, browser, follow, screenshot, sign_in_at};

fn env() -> &'static ConsoleEnv {
    static ENV: OnceLock<ConsoleEnv> = OnceLock::new();
    ENV.get_or_init(|| ConsoleEnv::start("sekisho-evidence-"))
}

/// A client signed in through the API as `user` (the cookie kept).
fn signed_in(user: &str) -> Client {
    let e = env();
    let c = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&e.cert_pem()).expect("cert"))
        .tls_built_in_root_certs(false)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let r = c
        .post(e.url("/api/v1/login"))
        .json(&serde_json::json!({"user": user, "password": PASSWORD, "code": e.code(user)}))
        .send()
        .expect("login");
    assert!(r.status().is_success(), "login as {user}: {}", r.status());
    c
}

fn page(c: &Client, path: &str, lang: &str) -> String {
    let r = c
        .get(env().url(path))
        .header("accept-language", lang)
        .send()
        .expect("get");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.text().expect("body")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The deployment's database, opened beside its `serve` (SQLite in WAL
/// mode takes writers from several processes).
async fn store() -> Store {
    let url = format!("sqlite://{}", env().dir().join("sekisho.db").display());
    Store::open(&url, None)
        .await
        .expect("the deployment's store")
}

/// An ended session row of `user` on db01 with its `allow` event, written
/// the way `serve` writes them; `kind: None` and an event without kinds as
/// rows from before migration 0005.
async fn add_session(
    store: &Store,
    user: &str,
    recording: Option<String>,
    kind: Option<EndKind>,
    allow: AuditEvent,
) -> Uuid {
    let id = Uuid::now_v7();
    let now = Utc::now();
    store
        .start_session(&NewSession {
            id,
            user: user.into(),
            vendor: Some("acme".into()),
            target: "db01".into(),
            protocol: "ssh".into(),
            client: "127.0.0.1".parse().expect("ip"),
            parent: None,
            node: "elsewhere".into(),
            started_at: now,
            ends_at: Some(now + chrono::Duration::hours(2)),
            recording_path: recording,
            work_request: None,
        })
        .await
        .expect("session row");
    store
        .audit(&allow.session(id).user(user).target("db01").protocol("ssh"))
        .await
        .expect("allow event");
    store
        .end_session(
            id,
            &SessionEnd {
                status: SessionStatus::Ended,
                kind,
                reason: "connection closed (old words)".into(),
                ended_at: now,
                recording_size: None,
                recording_digest: None,
                recording_status: None,
            },
        )
        .await
        .expect("end");
    id
}

#[test]
fn the_japanese_session_page_words_the_decision_and_the_end_reason() {
    let e = env();
    let c = signed_in(console::AUDITORS[0]);
    let path = format!("/sessions/{}", e.session);

    let ja = page(&c, &path, "ja");
    assert!(ja.contains("suzuki は "), "{ja}");
    assert!(ja.contains(" まで db01 に SSH で接続できます("), "{ja}");
    assert!(
        ja.contains("1 回の接続の上限時間"),
        "why the grant ends: {ja}"
    );
    assert!(
        ja.contains(r#"data-end-kind="closed">接続が閉じられました<"#),
        "{ja}"
    );
    assert!(!ja.contains("may use"), "no English decision: {ja}");

    let en = page(&c, &path, "en");
    assert!(en.contains("suzuki may use SSH on db01 until "), "{en}");
    assert!(en.contains("(longest session allowed)"), "{en}");
    assert!(en.contains("The connection was closed"), "{en}");

    // A session from before the kinds were stored keeps its sentences.
    let old = rt().block_on(async {
        let store = store().await;
        let id = add_session(
            &store,
            "sato",
            None,
            None,
            AuditEvent::new(
                AuditKind::Allow,
                "sato may use ssh on db01 until 2026-01-01 09:00 JST (old words)",
            )
            .with("access", "lab.toml#1"),
        )
        .await;
        store.close().await;
        id
    });
    let ja = page(&c, &format!("/sessions/{old}"), "ja");
    assert!(
        ja.contains("sato may use ssh on db01 until 2026-01-01 09:00 JST (old words)"),
        "{ja}"
    );
    assert!(ja.contains("connection closed (old words)"), "{ja}");
}

/// Flips one byte inside the first chunk's compressed events, leaving the
/// size and the modification time as they were.
fn tamper(path: &std::path::Path) {
    let data_start = sekisho::recording::Tail::open(path)
        .expect("archive")
        .offset();
    let modified = std::fs::metadata(path)
        .expect("metadata")
        .modified()
        .expect("mtime");
    let mut f = std::fs::File::options()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let at = data_start + sekisho::recording::format::CHUNK_HEADER_LEN as u64 + 4;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.read_exact(&mut b).expect("read");
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(&[b[0] ^ 0x5a]).expect("write");
    f.set_modified(modified).expect("set the time back");
}

#[test]
fn a_sealed_archive_tampered_after_a_first_view_shows_as_tampered() {
    let e = env();
    let c = signed_in(console::AUDITORS[1]);
    // A session of its own whose archive is a copy of the fixture's (the
    // others go on reading the original).
    let original = e.archive();
    let copy = original.with_file_name(format!("tamper-{}.skrec", Uuid::new_v4()));
    std::fs::copy(&original, &copy).expect("copy the archive");
    let id = rt().block_on(async {
        let store = store().await;
        let id = add_session(
            &store,
            "suzuki",
            Some(copy.display().to_string()),
            Some(EndKind::Closed),
            AuditEvent::new(AuditKind::Allow, "suzuki may use ssh on db01"),
        )
        .await;
        store.close().await;
        id
    });
    let path = format!("/sessions/{id}");
    for view in 0..2 {
        let html = page(&c, &path, "ja");
        assert!(
            html.contains(r#"data-verdict="intact""#),
            "view {view}: {html}"
        );
    }
    tamper(&copy);
    let html = page(&c, &path, "ja");
    assert!(
        html.contains(r#"data-verdict="tampered""#),
        "after tampering: {html}"
    );
    assert!(html.contains("記録が改ざんされています"), "{html}");
    let api: serde_json::Value = c
        .get(e.url(&format!("/api/v1/sessions/{id}")))
        .send()
        .expect("api")
        .json()
        .expect("json");
    assert_eq!(api["verify"]["verdict"], "tampered", "{api}");
}

/// An interactive session of `tanaka` typing two lines three seconds
/// apart; returns its id once it has ended.
fn typed_session() -> String {
    let e = env();
    let mut child =
        e.d.ssh_with(
            &["-tt"],
            "tanaka@db01",
            "127.0.0.1",
            PASSWORD,
            &e.code("tanaka"),
            &[],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh");
    let shown = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let sink = shown.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    });
    let shows = |what: &str| {
        wait_until(Duration::from_secs(20), || {
            String::from_utf8_lossy(&shown.lock().expect("lock")).contains(what)
        })
    };
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"echo $((6*7))-one\n").expect("type");
    assert!(shows("42-one"), "the first line ran");
    // The pause is part of what is recorded: the second line starts
    // seconds after the first, at a moment of its own.
    std::thread::sleep(Duration::from_secs(3));
    stdin.write_all(b"echo $((6*8))-two\n").expect("type");
    assert!(shows("48-two"), "the second line ran");
    stdin.write_all(b"exit\n").expect("type");
    assert!(wait_until(Duration::from_secs(20), || matches!(
        child.try_wait(),
        Ok(Some(_))
    )));
    let _ = reader.join();
    let mut id = String::new();
    assert!(wait_until(Duration::from_secs(30), || {
        let events = deployment::ok(e.d.sekisho(
            &[
                "audit",
                "--json",
                "--kind",
                "session_end",
                "--user",
                "tanaka",
            ],
            None,
        ));
        id = events
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v["session"].as_str().map(str::to_string))
            .unwrap_or_default();
        !id.is_empty()
    }));
    id
}

/// The text the player's terminal shows (wide cells are separate
/// elements: joined, whitespace dropped).
async fn terminal_text(c: &fantoccini::Client) -> String {
    match c.find(Locator::Css(".ap-term")).await {
        Ok(term) => term
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect(),
        Err(_) => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keystroke_log_entry_opens_the_player_at_its_moment() {
    let e = env();
    let id = tokio::task::spawn_blocking(typed_session)
        .await
        .expect("session");
    let (c, _driver) = browser("ja").await;
    sign_in_at(e, &c, console::AUDITORS[2]).await;
    c.goto(&e.url(&format!("/sessions/{id}")))
        .await
        .expect("session page");
    let entries = c
        .find_all(Locator::Css("#keystrokes li"))
        .await
        .expect("keystroke log");
    let mut link = None;
    for li in entries {
        let text = li.text().await.expect("text");
        if text.contains("echo $((6*8))-two") {
            link = Some(li.find(Locator::Css("a")).await.expect("its time link"));
        }
    }
    let link = link.expect("the second line is in the keystroke log");
    let href = link.attr("href").await.expect("href").expect("a link");
    let t: f64 = href
        .split("?t=")
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("a time in {href}"));
    assert!(t >= 3.0, "the second line starts after the pause: {href}");
    c.execute(
        "document.getElementById('keystrokes').scrollIntoView(); return 0;",
        vec![],
    )
    .await
    .expect("scroll to the log");
    screenshot(&c, "session-keystrokes").await;

    follow(&c, link).await;
    let url = c.current_url().await.expect("url");
    assert_eq!(url.path(), format!("/sessions/{id}/replay"));
    c.wait()
        .for_element(Locator::Css(".ap-player"))
        .await
        .expect("the player starts");
    // It plays from that moment: when the first line's output is on the
    // screen the player is already at the second line's start, at least
    // 2 s in even with idle periods shortened to 2 s (from the beginning
    // it would show that output at about 0.2 s).
    let mut shown = String::new();
    let mut at = 0.0;
    for _ in 0..80 {
        shown = terminal_text(&c).await;
        if shown.contains("42-one") {
            at = c
                .execute("return window.sekishoPlayer.getCurrentTime();", vec![])
                .await
                .expect("player time")
                .as_f64()
                .expect("a number");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shown.contains("42-one"), "player shows: {shown:?}");
    assert!(
        at >= 2.0,
        "the player shows the first line's output at {at} s: not opened at {t} s"
    );
    // And on to the second line's output.
    for _ in 0..40 {
        shown = terminal_text(&c).await;
        if shown.contains("48-two") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(shown.contains("48-two"), "player shows: {shown:?}");
    screenshot(&c, "replay-at").await;
    let text = body_text(&c).await;
    assert!(text.contains("echo $((6*8))-two"), "{text}");
    c.close().await.expect("close");
}

/// Issues an API token with the CLI; returns it (printed once).
fn issue_token(user: &str) -> String {
    let out = deployment::ok(env().d.sekisho(
        &["user", "token", "issue", user, "--label", "nightly report"],
        None,
    ));
    out.lines()
        .find(|l| l.starts_with("sekisho_"))
        .unwrap_or_else(|| panic!("a token in: {out}"))
        .trim()
        .to_string()
}

/// API tokens: each role's token gets what that role gets (the same table
/// as signed-in callers), without a cookie or CSRF token; a kill still
/// needs a fresh code; revoked, unknown and disabled-person tokens are
/// refused; issuing and revoking are audited.
#[test]
fn api_tokens_act_with_their_persons_role_until_revoked() {
    let e = env();
    let other = &e.session; // suzuki's session
    let tokens = [
        issue_token("ito"),
        issue_token(console::AUDITORS[3]),
        issue_token(console::ADMINS[0]),
    ];
    let c = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&e.cert_pem()).expect("cert"))
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let call = |method: &str, path: &str, token: &str| -> (u16, String) {
        let r = match method {
            "GET" => c.get(e.url(path)),
            _ => c
                .post(e.url(path))
                .json(&serde_json::json!({"reason": "token table", "code": "000000"})),
        }
        .bearer_auth(token)
        .send()
        .expect("request");
        (r.status().as_u16(), r.text().unwrap_or_default())
    };
    // [engineer, auditor, admin]
    let table: [(&str, String, [u16; 3]); 4] = [
        ("GET", "/api/v1/sessions".into(), [200, 200, 200]),
        ("GET", format!("/api/v1/sessions/{other}"), [403, 200, 200]),
        ("GET", "/api/v1/audit".into(), [403, 200, 200]),
        // The admin passes the role check and fails on the code.
        (
            "POST",
            format!("/api/v1/sessions/{other}/kill"),
            [403, 403, 400],
        ),
    ];
    for (method, path, want) in &table {
        for (token, want) in tokens.iter().zip(want) {
            let (status, body) = call(method, path, token);
            assert_eq!(status, *want, "{method} {path}: {body}");
        }
    }
    // The engineer's token lists only their own sessions.
    let (_, body) = call("GET", "/api/v1/sessions", &tokens[0]);
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    let sessions = list["sessions"].as_array().expect("sessions");
    assert!(sessions.iter().all(|s| s["user"] == "ito"), "{list}");
    // The admin's kill is refused for the code, not for a CSRF token.
    let (_, body) = call(
        "POST",
        &format!("/api/v1/sessions/{other}/kill"),
        &tokens[2],
    );
    assert!(!body.contains("CSRF"), "{body}");
    // Pages are not for tokens.
    let r = c
        .get(e.url("/sessions"))
        .bearer_auth(&tokens[1])
        .send()
        .expect("page");
    assert_eq!(
        r.status().as_u16(),
        303,
        "a page with a token: sent to sign in"
    );

    // Unknown and malformed tokens.
    assert_eq!(
        call("GET", "/api/v1/sessions", "sekisho_000000000000_nope").0,
        401
    );
    let r = c
        .get(e.url("/api/v1/sessions"))
        .header("authorization", "Basic a2Fuc2E6eA==")
        .send()
        .expect("basic");
    assert_eq!(r.status().as_u16(), 401);

    // Revoked: refused at once.
    let id = tokens[1]
        .trim_start_matches("sekisho_")
        .split('_')
        .next()
        .expect("id")
        .to_string();
    let out = deployment::ok(e.d.sekisho(&["user", "token", "revoke", &id], None));
    assert!(out.contains(&format!("revoked API token {id}")), "{out}");
    assert_eq!(call("GET", "/api/v1/sessions", &tokens[1]).0, 401);
    let list = deployment::ok(e.d.sekisho(&["user", "token", "list"], None));
    assert!(list.contains("nightly report"), "{list}");
    assert!(list.contains("revoked"), "{list}");
    assert!(
        !list.contains(tokens[0].as_str()),
        "the list never shows a token: {list}"
    );

    // A disabled person's token stops working.
    deployment::ok(e.d.sekisho(&["user", "disable", "ito"], None));
    let refused = call("GET", "/api/v1/sessions", &tokens[0]).0;
    deployment::ok(e.d.sekisho(&["user", "enable", "ito"], None));
    assert_eq!(refused, 401);

    let audit = deployment::ok(e.d.sekisho(&["audit", "--json", "--kind", "admin_change"], None));
    assert!(audit.contains("\"action\":\"api_token_issue\""), "{audit}");
    assert!(audit.contains("\"action\":\"api_token_revoke\""), "{audit}");
    assert!(
        !audit.contains(tokens[2].as_str()),
        "no token in the audit log"
    );
}
