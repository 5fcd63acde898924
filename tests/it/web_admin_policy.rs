//! Administrators' policy pages in a real browser (Chromium over WebDriver,
//! as `web_browser`), against a real `sekisho serve` whose SSH sessions go
//! from the OpenSSH client through sekisho to a real sshd:
//! - a contract extended in the browser lets its engineer in over SSH at
//!   once, without a restart, and the edit is audited with its diff;
//! - an invalid edit is refused with its line, even when forced to save,
//!   and the old policy stays in force for SSH;
//! - of two admins editing the same file, the second save is refused;
//! - auditors and engineers are refused every policy page and action
//!   (a table of routes × roles over HTTPS, and the pages in the browser);
//! - the explain form gives `policy explain`'s decision and rule;
//! - Japanese and English. Screenshots go to docs/screenshots/policy*.png.
//!
//! The tests share one deployment and take turns (each changes or reads
//! the same policy file); each signs in as people of its own, since a code
//! is accepted once per person per 30-s step.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::{console, deployment, totp};
use crate::web_browser::{body_text, browser, follow, screenshot};
use console::ConsoleEnv;
use deployment::{PASSWORD, ok};
use fantoccini::{Client, Locator};
use reqwest::StatusCode;

/// Admins besides the fixture's (each test signs in as its own).
const MORE_ADMINS: [&str; 3] = ["kanri4", "kanri5", "kanri6"];

struct Env {
    c: ConsoleEnv,
    keys: HashMap<String, Vec<u8>>,
}

impl Env {
    fn code(&self, user: &str) -> String {
        self.code_ahead(user, 0)
    }

    fn code_ahead(&self, user: &str, ahead: i64) -> String {
        match self.keys.get(user) {
            Some(k) => totp::code_ahead(k, ahead),
            None => self.c.code_ahead(user, ahead),
        }
    }

    fn url(&self, path: &str) -> String {
        self.c.url(path)
    }

    fn policy_file(&self) -> String {
        std::fs::read_to_string(self.c.dir().join("policies/lab.toml")).expect("lab.toml")
    }

    /// `ssh PERSON@db01 echo MARKER` through sekisho: whether the marker
    /// came back, and what the client printed.
    fn ssh_echo(&self, person: &str, code: &str, marker: &str) -> (bool, String) {
        let out = self
            .c
            .d
            .ssh(
                &format!("{person}@db01"),
                "127.0.0.1",
                PASSWORD,
                code,
                &["echo", marker],
            )
            .output()
            .expect("run ssh");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(marker),
            text,
        )
    }
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let c = ConsoleEnv::start("sekisho-policyweb-");
        let mut keys = HashMap::new();
        for admin in MORE_ADMINS {
            let out = ok(c.d.sekisho(
                &["user", "add", admin, "--role", "admin", "--password-stdin"],
                Some(&format!("{PASSWORD}\n")),
            ));
            keys.insert(admin.to_string(), totp::key_from_user_add(&out));
        }
        Env { c, keys }
    })
}

/// The tests change one policy file: one at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn sign_in(c: &Client, user: &str) {
    let e = env();
    c.goto(&e.url("/signin")).await.expect("open sign-in");
    for (id, value) in [
        ("user", user.to_string()),
        ("password", PASSWORD.into()),
        ("code", e.code(user)),
    ] {
        c.find(Locator::Id(id))
            .await
            .expect("sign-in field")
            .send_keys(&value)
            .await
            .expect("type");
    }
    follow(c, c.find(Locator::Id("signin")).await.expect("button")).await;
    let url = c.current_url().await.expect("url");
    assert_eq!(url.path(), "/sessions", "signed in as {user}");
}

async fn click(c: &Client, id: &str) {
    follow(
        c,
        c.find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("#{id}: {e}")),
    )
    .await;
}

async fn fill(c: &Client, id: &str, value: &str) {
    let field = c
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(value).await.expect("type");
}

async fn choose(c: &Client, id: &str, value: &str) {
    c.find(Locator::Css(&format!("#{id} option[value='{value}']")))
        .await
        .unwrap_or_else(|e| panic!("#{id} {value}: {e}"))
        .click()
        .await
        .expect("choose");
}

async fn text_of(c: &Client, id: &str) -> String {
    c.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .text()
        .await
        .expect("text")
}

/// Prepares one common change to `access[index]` of `lab` from its edit page.
async fn prepare_change(c: &Client, index: usize, kind: &str, value: &str) {
    let e = env();
    c.goto(&e.url("/policy/systems/lab/edit"))
        .await
        .expect("edit page");
    choose(c, "change-entry", &index.to_string()).await;
    choose(c, "change-kind", kind).await;
    fill(c, "change-value", value).await;
    click(c, "change-submit").await;
}

/// The contract of `kato` (access[1]) ended: an admin extends it in the
/// browser; kato's SSH session goes through at once, and the edit is an
/// audit event naming the admin and holding the diff.
#[tokio::test(flavor = "multi_thread")]
async fn a_contract_extended_in_the_browser_lets_the_engineer_in_over_ssh() {
    let _turn = TURN.lock().await;
    let e = env();
    let admin = console::ADMINS[0];
    let (allowed, out) = e.ssh_echo("kato", &e.code("kato"), "before-edit-marker");
    assert!(!allowed, "kato's contract has ended: {out}");
    let denied = ok(e.c.d.sekisho(
        &["audit", "--json", "--kind", "deny", "--user", "kato"],
        None,
    ));
    assert!(
        denied.contains("\"rule\":\"contract\""),
        "denied by the contract rule: {denied}"
    );

    let (c, _driver) = browser("ja").await;
    sign_in(&c, admin).await;
    click(&c, "nav-policy").await;
    let text = body_text(&c).await;
    assert!(text.contains("システム一覧"), "{text}");
    assert!(text.contains("LGWAN接続系"), "{text}");

    follow(
        &c,
        c.find(Locator::Css("#systems a[href='/policy/systems/lab']"))
            .await
            .expect("lab"),
    )
    .await;
    let targets = text_of(&c, "targets").await;
    assert!(
        targets.contains("db01") && targets.contains("127.0.0.1"),
        "{targets}"
    );
    assert!(
        targets.contains("db01-root"),
        "the credential's name: {targets}"
    );
    assert!(targets.contains("SHA256:"), "the pin: {targets}");
    let access = text_of(&c, "access").await;
    assert!(access.contains("tanaka, suzuki, ito, sato"), "{access}");
    assert!(
        access.contains("終了済み"),
        "kato's ended contract: {access}"
    );
    assert!(access.contains("2h"), "{access}");
    let reach = text_of(&c, "reach-db01").await;
    assert!(reach.contains("acme") && reach.contains("kato"), "{reach}");
    assert!(reach.contains("lab (127.0.0.0/8)"), "{reach}");
    // The credential's value (the target's private key) is never shown.
    let page = c.source().await.expect("source");
    assert!(!page.contains("PRIVATE KEY"), "a secret on the page");
    screenshot(&c, "policy-system").await;

    // Ten days from today in the deployment's zone: kato may work again,
    // and the contract is listed as ending soon.
    let until = (chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .date_naive()
        + chrono::Days::new(10))
    .to_string();
    let before = e.policy_file();
    prepare_change(&c, 1, "until", &until).await;
    assert!(text_of(&c, "policy-valid").await.contains("正常"));
    let diff = text_of(&c, "policy-diff").await;
    assert!(
        diff.contains("- contract = { from = \"2025-04-01\", until = \"2026-03-31\" }"),
        "{diff}"
    );
    assert!(
        diff.contains(&format!(
            "+ contract = {{ from = \"2025-04-01\", until = \"{until}\" }}"
        )),
        "{diff}"
    );
    assert_eq!(e.policy_file(), before, "nothing is written before saving");
    fill(&c, "policy-code", &e.code_ahead(admin, 1)).await;
    screenshot(&c, "policy-diff").await;
    click(&c, "policy-save").await;
    let url = c.current_url().await.expect("url");
    assert_eq!(url.path(), "/policy/systems/lab", "{url}");
    assert!(text_of(&c, "policy-saved").await.contains("保存しました"));
    assert!(e.policy_file().contains(&format!("until = \"{until}\"")));
    let warnings = text_of(&c, "policy-warnings").await;
    assert!(
        warnings.contains("acme") && warnings.contains(&until) && warnings.contains("残り"),
        "the contract ending soon is listed: {warnings}"
    );
    c.goto(&e.url("/policy")).await.expect("policy");
    let warnings = text_of(&c, "policy-warnings").await;
    assert!(warnings.contains(&until), "{warnings}");
    screenshot(&c, "policy").await;

    // In force at once: kato's session goes through the same serve.
    let (allowed, out) = e.ssh_echo("kato", &e.code_ahead("kato", 1), "after-edit-marker");
    assert!(allowed, "kato after the extension: {out}");

    let events = ok(e.c.d.sekisho(
        &["audit", "--json", "--kind", "admin_change", "--user", admin],
        None,
    ));
    let edit = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["action"] == "policy_edit" || v["data"]["action"] == "policy_edit")
        .unwrap_or_else(|| panic!("no policy_edit event: {events}"));
    let text = edit.to_string();
    assert!(text.contains(admin), "{text}");
    assert!(
        text.contains(&format!(
            "+ contract = {{ from = \\\"2025-04-01\\\", until = \\\"{until}\\\" }}"
        )),
        "{text}"
    );
    c.close().await.expect("close");
}

/// An invalid text is refused with the line and field of the problem,
/// before saving and when forced to save; the file and the policy in force
/// stay as they were (tanaka, whom the invalid text drops, still gets in).
#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_edit_is_refused_with_its_line_and_the_old_policy_stays() {
    let _turn = TURN.lock().await;
    let e = env();
    let admin = console::ADMINS[1];
    let before = e.policy_file();
    let (c, _driver) = browser("en").await;
    sign_in(&c, admin).await;
    c.goto(&e.url("/policy/systems/lab/edit"))
        .await
        .expect("edit page");
    let bad = before
        .replacen("hours = \"always\"", "hours = \"whenever\"", 1)
        .replacen("\"tanaka\", ", "", 1);
    assert_ne!(bad, before);
    let line = bad
        .lines()
        .position(|l| l.contains("whenever"))
        .expect("the bad line")
        + 1;
    c.execute(
        "document.getElementById('policy-text').value = arguments[0];",
        vec![serde_json::Value::String(bad.clone())],
    )
    .await
    .expect("type the text");
    click(&c, "policy-check").await;
    let invalid = text_of(&c, "policy-invalid").await;
    assert!(invalid.contains("cannot be saved"), "{invalid}");
    let errors = text_of(&c, "policy-errors").await;
    assert!(
        c.find(Locator::Css(&format!(
            "#policy-errors tr[data-line='{line}'][data-field='access[0].hours']"
        )))
        .await
        .is_ok(),
        "line {line} and field access[0].hours: {errors}"
    );
    assert!(
        errors.contains("hours = \"whenever\""),
        "the line as written: {errors}"
    );
    assert!(
        c.find(Locator::Id("policy-save")).await.is_err(),
        "no save button"
    );
    screenshot(&c, "policy-invalid").await;

    // Forced: the check form turned into a save with a code.
    let page = c.find(Locator::Css("html")).await.expect("the page");
    c.execute(
        "const f = document.getElementById('policy-text').form; \
         f.querySelector('input[name=action]').value = 'save'; \
         const code = document.createElement('input'); code.name = 'code'; code.value = arguments[0]; \
         f.appendChild(code); f.submit();",
        vec![serde_json::Value::String(e.code_ahead(admin, 1))],
    )
    .await
    .expect("force a save");
    // Wait until the browser has left the page, as `follow` does.
    let mut left = false;
    for _ in 0..100 {
        match page.tag_name().await {
            Err(e) if e.is_stale_element_reference() => {
                left = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(left, "the forced save was not sent");
    let invalid = text_of(&c, "policy-invalid").await;
    assert!(
        invalid.contains("cannot be saved"),
        "the forced save is refused: {invalid}"
    );
    assert_eq!(e.policy_file(), before, "the file is unchanged");
    let (allowed, out) = e.ssh_echo("tanaka", &e.code("tanaka"), "old-policy-marker");
    assert!(allowed, "the old policy still admits tanaka: {out}");
    c.close().await.expect("close");
}

/// Two admins change the same file: the second save, made from the older
/// version, is refused with a message; the first one's change stays.
#[tokio::test(flavor = "multi_thread")]
async fn of_two_concurrent_edits_the_second_save_is_refused() {
    let _turn = TURN.lock().await;
    let e = env();
    let (first, second) = (console::ADMINS[2], MORE_ADMINS[0]);
    let (a, _da) = browser("en").await;
    let (b, _db) = browser("ja").await;
    sign_in(&a, first).await;
    sign_in(&b, second).await;
    // Both start from the same version.
    prepare_change(&b, 0, "engineer", "kimura").await;
    prepare_change(&a, 0, "engineer", "yamada").await;
    fill(&a, "policy-code", &e.code_ahead(first, 1)).await;
    click(&a, "policy-save").await;
    assert!(text_of(&a, "policy-saved").await.contains("Saved"));
    fill(&b, "policy-code", &e.code_ahead(second, 1)).await;
    click(&b, "policy-save").await;
    let msg = text_of(&b, "policy-conflict").await;
    assert!(msg.contains("別の人がこのファイルを保存しました"), "{msg}");
    let yours = b
        .find(Locator::Id("policy-yours"))
        .await
        .expect("their text")
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default();
    assert!(
        yours.contains("kimura"),
        "the refused text stays to copy: {yours}"
    );
    screenshot(&b, "policy-conflict").await;
    let file = e.policy_file();
    assert!(file.contains("\"yamada\""), "{file}");
    assert!(!file.contains("kimura"), "{file}");
    a.close().await.expect("close");
    b.close().await.expect("close");
}

/// The explain form: `policy explain`'s decision and rule, in English.
#[tokio::test(flavor = "multi_thread")]
async fn the_explain_form_gives_the_decision_and_the_rule() {
    let _turn = TURN.lock().await;
    let e = env();
    let admin = MORE_ADMINS[1];
    let (c, _driver) = browser("en").await;
    sign_in(&c, admin).await;
    c.goto(&e.url("/policy/explain")).await.expect("explain");
    fill(&c, "x-user", "suzuki").await;
    choose(&c, "x-protocol", "ssh").await;
    click(&c, "x-submit").await;
    assert_eq!(text_of(&c, "x-decision").await, "ALLOW");
    let lines = text_of(&c, "x-lines").await;
    assert!(lines.contains("ALLOW ssh suzuki → db01"), "{lines}");
    assert!(lines.contains("lab.toml access[0] vendor acme"), "{lines}");
    // From outside the lab network: the source rule refuses.
    fill(&c, "x-from", "192.0.2.7").await;
    click(&c, "x-submit").await;
    assert_eq!(text_of(&c, "x-decision").await, "DENY");
    assert_eq!(text_of(&c, "x-rule").await, "source");
    screenshot(&c, "policy-explain").await;
    // The same words as the CLI.
    let cli = e.c.d.sekisho(
        &[
            "policy",
            "explain",
            "--user",
            "suzuki",
            "--target",
            "db01",
            "--protocol",
            "ssh",
            "--from",
            "192.0.2.7",
        ],
        None,
    );
    let cli = String::from_utf8_lossy(&cli.stdout).trim().to_string();
    assert_eq!(text_of(&c, "x-lines").await.trim(), cli);
    fill(&c, "x-user", "nobody-such").await;
    click(&c, "x-submit").await;
    assert!(
        text_of(&c, "x-problem")
            .await
            .contains("no user nobody-such")
    );
    c.close().await.expect("close");
}

fn https() -> reqwest::blocking::Client {
    let cert = reqwest::Certificate::from_pem(&env().c.cert_pem()).expect("certificate");
    reqwest::blocking::Client::builder()
        .add_root_certificate(cert)
        .tls_built_in_root_certs(false)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A client signed in through the API as `user`, and its CSRF token.
fn api_login(user: &str) -> (reqwest::blocking::Client, String) {
    let c = https();
    let r = c
        .post(env().url("/api/v1/login"))
        .json(&serde_json::json!({"user": user, "password": PASSWORD, "code": env().code(user)}))
        .send()
        .expect("login");
    assert_eq!(r.status(), StatusCode::OK, "login of {user}");
    let v: serde_json::Value = r.json().expect("json");
    (c, v["csrf"].as_str().expect("csrf").to_string())
}

/// Every policy route with each role: only admins pass; the actions are
/// refused to everyone else before anything is read or written.
#[tokio::test(flavor = "multi_thread")]
async fn auditors_and_engineers_are_refused_every_policy_page_and_action() {
    let _turn = TURN.lock().await;
    let e = env();
    let before = e.policy_file();
    let routes: [(&str, &str); 6] = [
        ("GET", "/policy"),
        (
            "GET",
            "/policy/explain?user=tanaka&target=db01&protocol=ssh",
        ),
        ("GET", "/policy/systems/lab"),
        ("GET", "/policy/systems/lab/edit"),
        ("POST", "/policy/systems/lab/edit"),
        ("POST", "/policy/systems/lab/change"),
    ];
    // [anonymous, engineer, auditor, admin]; an admin's POST with a stale
    // base is refused as a conflict.
    let expected: [[u16; 4]; 6] = [
        [303, 403, 403, 200],
        [303, 403, 403, 200],
        [303, 403, 403, 200],
        [303, 403, 403, 200],
        [403, 403, 403, 409],
        [403, 403, 403, 409],
    ];
    let table = tokio::task::spawn_blocking(move || {
        let callers = [
            (https(), String::new()),
            api_login("sato"),
            api_login(console::AUDITORS[1]),
            api_login(MORE_ADMINS[2]),
        ];
        let mut table = Vec::new();
        for ((method, path), want) in routes.iter().zip(expected) {
            let mut row = Vec::new();
            for (c, csrf) in &callers {
                let r = match *method {
                    "GET" => c.get(env().url(path)).send(),
                    _ => c
                        .post(env().url(path))
                        .form(&[
                            ("csrf", csrf.as_str()),
                            ("base", "0000"),
                            ("action", "save"),
                            ("text", "[system]\nname = \"lab\"\nzone = \"lgwan\"\n"),
                            ("code", "000000"),
                            ("index", "0"),
                            ("change", "engineer"),
                            ("value", "intruder"),
                        ])
                        .send(),
                }
                .expect("request");
                row.push(r.status().as_u16());
            }
            let line = format!("{method} {path}: {row:?} (want {want:?})");
            table.push((line, row == want));
        }
        table
    })
    .await
    .expect("the table");
    let report: Vec<&str> = table.iter().map(|(l, _)| l.as_str()).collect();
    assert!(table.iter().all(|(_, ok)| *ok), "{}", report.join("\n"));
    assert_eq!(e.policy_file(), before, "nothing was written");

    // In the browser: no policy link, and every page refused.
    for (who, lang) in [(console::AUDITORS[2], "ja"), ("ito", "en")] {
        let (c, _driver) = browser(lang).await;
        sign_in(&c, who).await;
        assert!(
            c.find(Locator::Id("nav-policy")).await.is_err(),
            "{who} offered the policy link"
        );
        for path in [
            "/policy",
            "/policy/explain",
            "/policy/systems/lab",
            "/policy/systems/lab/edit",
        ] {
            c.goto(&e.url(path)).await.expect("open");
            let text = body_text(&c).await;
            assert!(
                text.contains("You are not allowed to do this"),
                "{who} {path}: {text}"
            );
            assert!(!text.contains("db01-root"), "{who} {path}: {text}");
        }
        c.close().await.expect("close");
    }
}
