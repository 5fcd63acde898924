//! The admin's people pages and emergency stop in a real browser (Debian's
//! Chromium over WebDriver, as `web_browser`), against a real `sekisho
//! serve` with real OpenSSH sessions: a person added in the browser signs
//! in over SSH with a code computed from the secret the page showed once;
//! auditors, approvers and engineers are refused every admin page and action; an
//! emergency stop from the console ends a vendor's live session with the
//! reason shown and refuses new ones. Japanese and English. Screenshots
//! docs/screenshots/people*.png and stop.png.

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::support::console::{self, ConsoleEnv};
use crate::support::deployment::{self, PASSWORD};
use crate::support::process::wait_until;
use crate::web_browser::{body_text, browser, follow, screenshot};

/// Held by the tests that put stops in force (the console's stop of acme,
/// the API's stop) and by those that need acme's engineers working: they
/// run one at a time.
static ACME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn env() -> &'static ConsoleEnv {
    static ENV: OnceLock<ConsoleEnv> = OnceLock::new();
    ENV.get_or_init(|| ConsoleEnv::start("sekisho-people-"))
}

async fn sign_in(c: &Client, user: &str) {
    sign_in_with(c, user, &env().code(user)).await;
}

async fn sign_in_with(c: &Client, user: &str, code: &str) {
    let e = env();
    c.goto(&e.url("/signin")).await.expect("open sign-in");
    for (id, value) in [
        ("user", user.to_string()),
        ("password", PASSWORD.into()),
        ("code", code.to_string()),
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

async fn type_into(c: &Client, id: &str, text: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .send_keys(text)
        .await
        .expect("type");
}

async fn select(c: &Client, id: &str, value: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("#{id} = {value}: {e}"));
}

/// POSTs `path` from the signed-in page with its CSRF token (as a form of
/// the page would): the answer's status.
async fn post_status(c: &Client, path: &str) -> u64 {
    let status = c
        .execute_async(
            r#"const [path, done] = arguments;
               const token = document.querySelector('input[name=csrf]').value;
               fetch(path, {method: 'POST', redirect: 'manual',
                            headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                            body: 'csrf=' + encodeURIComponent(token) + '&code=000000&reason=x&name=x&scope=all&key=x&value=x&user=x&target=x&protocol=ssh&role=engineer&fingerprint=x'})
                 .then(r => done(r.status), e => done(String(e)));"#,
            vec![serde_json::json!(path)],
        )
        .await
        .expect("fetch");
    status
        .as_u64()
        .unwrap_or_else(|| panic!("POST {path}: {status}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn auditors_and_engineers_are_refused_every_admin_page_and_action() {
    let e = env();
    let gets = ["/people", "/people/tanaka", "/stops"];
    let posts = [
        "/people",
        "/people/tanaka/disable",
        "/people/tanaka/enable",
        "/people/tanaka/totp",
        "/people/tanaka/keys",
        "/people/tanaka/keys/remove",
        "/vendors",
        "/secrets",
        "/tickets",
        "/stops",
        "/stops/1/lift",
    ];
    // An approver of this test's own: approvers are not admins either.
    let out = deployment::ok(e.d.sekisho(
        &[
            "user",
            "add",
            "shonin",
            "--role",
            "approver",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    ));
    let approver = crate::support::totp::key_from_user_add(&out);
    for who in [console::AUDITORS[0], "ito", "shonin"] {
        let (c, _driver) = browser("en").await;
        let code = if who == "shonin" {
            crate::support::totp::code_ahead(&approver, 0)
        } else {
            e.code(who)
        };
        sign_in_with(&c, who, &code).await;
        let text = body_text(&c).await;
        assert!(
            !text.contains("Emergency stop"),
            "no admin link for {who}: {text}"
        );
        for path in gets {
            c.goto(&e.url(path)).await.expect("open");
            let text = body_text(&c).await;
            assert!(
                text.contains("You are not allowed to do this"),
                "{who} GET {path}: {text}"
            );
        }
        c.goto(&e.url("/sessions"))
            .await
            .expect("back to a page of theirs");
        for path in posts {
            assert_eq!(post_status(&c, path).await, 403, "{who} POST {path}");
        }
        c.close().await.expect("close");
    }
    // Nothing was changed by them (other tests change things meanwhile).
    let users = deployment::ok(e.d.sekisho(&["user", "list"], None));
    assert!(
        users
            .lines()
            .any(|l| l.starts_with("tanaka") && l.contains("yes")),
        "{users}"
    );
    for kind in ["admin_change", "emergency_stop", "emergency_stop_lifted"] {
        let events = deployment::ok(e.d.sekisho(&["audit", "--json", "--kind", kind], None));
        for who in [console::AUDITORS[0], "ito", "shonin"] {
            assert!(
                !events.contains(&format!("\"by\":\"{who}\"")),
                "{who} changed something: {events}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_added_in_the_browser_signs_in_over_ssh_with_the_shown_secret() {
    let e = env();
    let admin = console::ADMINS[0];
    let (c, _driver) = browser("ja").await;
    sign_in(&c, admin).await;
    follow(
        &c,
        c.find(Locator::Id("nav-people"))
            .await
            .expect("people link"),
    )
    .await;
    let text = body_text(&c).await;
    assert!(text.contains("利用者を追加"), "{text}");
    assert!(text.contains("tanaka"), "{text}");
    screenshot(&c, "people").await;

    // A vendor of their own (not under acme: the emergency stop test's stop
    // of acme, run alongside, must not cover yoshida).
    type_into(&c, "vendor-name", "kita").await;
    follow(
        &c,
        c.find(Locator::Id("add-vendor")).await.expect("add vendor"),
    )
    .await;
    let vendors = c
        .find(Locator::Id("vendors"))
        .await
        .expect("vendors")
        .text()
        .await
        .expect("text");
    assert!(vendors.contains("kita"), "{vendors}");

    type_into(&c, "new-name", "yoshida").await;
    select(&c, "new-role", "engineer").await;
    select(&c, "new-vendor", "kita").await;
    type_into(&c, "new-password", PASSWORD).await;
    type_into(&c, "add-user-code", &e.code_ahead(admin, 1)).await;
    follow(
        &c,
        c.find(Locator::Id("add-user-submit")).await.expect("add"),
    )
    .await;
    let secret = match c.find(Locator::Id("totp-secret")).await {
        Ok(el) => el.text().await.expect("text"),
        Err(err) => panic!("no secret shown ({err}): {}", body_text(&c).await),
    };
    let uri = c
        .find(Locator::Id("otpauth-uri"))
        .await
        .expect("the otpauth URI")
        .text()
        .await
        .expect("text");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    // The QR code is an image drawn on the server.
    let qr = c
        .find(Locator::Id("totp-qr"))
        .await
        .expect("the QR code")
        .attr("src")
        .await
        .expect("src")
        .unwrap_or_default();
    assert!(qr.starts_with("data:image/svg+xml;base64,"), "{qr}");
    let loaded = c
        .execute(
            "return document.getElementById('totp-qr').naturalWidth;",
            vec![],
        )
        .await
        .expect("image width");
    assert!(
        loaded.as_u64().unwrap_or(0) >= 200,
        "QR image drawn: {loaded}"
    );
    screenshot(&c, "people-added").await;

    // Shown once: the list page does not show it again.
    c.goto(&e.url("/people")).await.expect("people");
    let text = body_text(&c).await;
    assert!(text.contains("yoshida"), "{text}");
    assert!(!text.contains(&secret), "the secret is shown again: {text}");

    // The same audit event as `user add`, naming the admin.
    let added = deployment::ok(e.d.sekisho(
        &[
            "audit",
            "--json",
            "--kind",
            "admin_change",
            "--user",
            "yoshida",
        ],
        None,
    ));
    assert!(added.contains("\"action\":\"user_add\""), "{added}");
    assert!(added.contains(&format!("\"by\":\"{admin}\"")), "{added}");

    // yoshida may reach db01 once the policy names kita's engineer
    // (reloaded on change, no restart).
    let policy = e.d.dir.join("policies/lab.toml");
    let mut text = std::fs::read_to_string(&policy).expect("policy");
    text.push_str(
        r#"
[[access]]
vendor = "kita"
users = ["yoshida"]
contract = { from = "2026-01-01", until = "2099-12-31" }
hours = "always"
max_session = "2h"
protocols = ["ssh"]
sources = ["lab"]
"#,
    );
    std::fs::write(&policy, text).expect("write policy");
    let key = sekisho::auth::totp::decode_secret(&secret).expect("a base32 secret");
    let mut out = None;
    let reached = wait_until(Duration::from_secs(15), || {
        let o =
            e.d.ssh(
                "yoshida@db01",
                "127.0.0.1",
                PASSWORD,
                &crate::support::totp::code_ahead(&key, 0),
                &["echo yoshida-in"],
            )
            .output()
            .expect("ssh");
        let ok = String::from_utf8_lossy(&o.stdout).contains("yoshida-in");
        out = Some(o);
        ok
    });
    let o = out.expect("ran ssh");
    assert!(
        reached,
        "yoshida did not get through: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let signed = deployment::ok(e.d.sekisho(
        &[
            "audit",
            "--json",
            "--kind",
            "signin_success",
            "--user",
            "yoshida",
        ],
        None,
    ));
    assert!(!signed.trim().is_empty(), "no sign-in of yoshida audited");

    // Disable from the list; the same state as `user disable`.
    follow(
        &c,
        c.find(Locator::Id("disable-yoshida"))
            .await
            .expect("disable"),
    )
    .await;
    let users = deployment::ok(e.d.sekisho(&["user", "list"], None));
    assert!(
        users
            .lines()
            .any(|l| l.starts_with("yoshida") && l.contains(" no ")),
        "{users}"
    );
    follow(
        &c,
        c.find(Locator::Id("enable-yoshida")).await.expect("enable"),
    )
    .await;

    // English.
    follow(
        &c,
        c.find(Locator::Id("switch-lang")).await.expect("language"),
    )
    .await;
    let text = body_text(&c).await;
    assert!(text.contains("Add a person"), "{text}");
    assert!(text.contains("Target secrets"), "{text}");
    screenshot(&c, "people-en").await;
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emergency_stop_from_the_console_ends_a_vendors_session_and_refuses_new_ones() {
    let e = env();
    let _acme = ACME.lock().await;
    let admin = console::ADMINS[1];
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
    assert!(
        e.d.install()
            .live_session_id("sato", Duration::from_secs(15))
            .is_some(),
        "sato's session is live"
    );
    let (c, _driver) = browser("ja").await;
    sign_in(&c, admin).await;
    follow(
        &c,
        c.find(Locator::Id("nav-stops")).await.expect("stop link"),
    )
    .await;
    let text = body_text(&c).await;
    assert!(text.contains("発動中の緊急停止はありません"), "{text}");
    select(&c, "stop-scope", "vendor:acme").await;
    let reason = "緊急停止: 不正アクセスの疑い";
    type_into(&c, "stop-reason", reason).await;
    type_into(&c, "stop-code", &e.code_ahead(admin, 1)).await;
    follow(&c, c.find(Locator::Id("stop")).await.expect("stop button")).await;
    assert!(
        wait_until(Duration::from_secs(30), || matches!(
            child.try_wait(),
            Ok(Some(_))
        )),
        "sato's session outlived the stop"
    );
    let out = child.wait_with_output().expect("ssh output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(reason), "{err}");
    // The page shows the stop in force and nothing left live in its scope.
    let row = c
        .find(Locator::Css("tr.stop-in-force"))
        .await
        .expect("the stop in force")
        .text()
        .await
        .expect("text");
    assert!(row.contains(reason) && row.contains(admin), "{row}");
    assert!(row.contains("なし（すべて終了）"), "{row}");
    screenshot(&c, "stop").await;

    // A new session of the vendor is refused, naming the stop.
    let refused =
        e.d.ssh(
            "tanaka@db01",
            "127.0.0.1",
            PASSWORD,
            &e.code("tanaka"),
            &["echo no"],
        )
        .output()
        .expect("ssh");
    let t = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !String::from_utf8_lossy(&refused.stdout).contains("no"),
        "{t}"
    );
    assert!(t.contains("emergency stop") && t.contains(reason), "{t}");
    let stopped =
        deployment::ok(e.d.sekisho(&["audit", "--json", "--kind", "emergency_stop"], None));
    assert!(stopped.contains("\"via\":\"web\""), "{stopped}");
    c.close().await.expect("close");

    // Another admin lifts it, in English.
    let lifter = console::ADMINS[2];
    let (c, _driver) = browser("en").await;
    sign_in(&c, lifter).await;
    c.goto(&e.url("/stops")).await.expect("stops");
    let id = c
        .find(Locator::Css("tr.stop-in-force"))
        .await
        .expect("the stop")
        .attr("id")
        .await
        .expect("id")
        .unwrap_or_default()
        .trim_start_matches("stop-")
        .to_string();
    type_into(&c, &format!("lift-reason-{id}"), "all clear").await;
    type_into(&c, &format!("lift-code-{id}"), &e.code_ahead(lifter, 1)).await;
    follow(
        &c,
        c.find(Locator::Id(&format!("lift-{id}")))
            .await
            .expect("lift"),
    )
    .await;
    let text = body_text(&c).await;
    assert!(text.contains("No emergency stop is in force."), "{text}");
    assert!(text.contains("Recent stops"), "{text}");
    let back =
        e.d.ssh(
            "tanaka@db01",
            "127.0.0.1",
            PASSWORD,
            &e.code_ahead("tanaka", 1),
            &["echo back-in"],
        )
        .output()
        .expect("ssh");
    assert!(
        String::from_utf8_lossy(&back.stdout).contains("back-in"),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    c.close().await.expect("close");
}

/// An admin of this test's own (codes are accepted once per person and
/// step, so each fresh code needs a person): their TOTP key.
fn new_admin(name: &str) -> Vec<u8> {
    let out = deployment::ok(env().d.sekisho(
        &["user", "add", name, "--role", "admin", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    ));
    crate::support::totp::key_from_user_add(&out)
}

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICDFvN+9T1TvdjXp//H6lY7XqGEjCmiykhfP/MF4ElS3 tanaka@acme-pc01";

#[tokio::test(flavor = "multi_thread")]
async fn keys_secrets_tickets_and_a_new_code_from_the_console() {
    use crate::support::totp::code_ahead;
    let e = env();
    let (keys_admin, ticket_admin, reset_admin) = ("kanri5", "kanri6", "kanri7");
    let k5 = new_admin(keys_admin);
    let k6 = new_admin(ticket_admin);
    let k7 = new_admin(reset_admin);

    // Keys and a target secret.
    let (c, _driver) = browser("en").await;
    sign_in_with(&c, keys_admin, &code_ahead(&k5, 0)).await;
    c.goto(&e.url("/people/kato")).await.expect("kato");
    type_into(&c, "key-text", KEY).await;
    follow(&c, c.find(Locator::Id("add-key")).await.expect("register")).await;
    let keys = c
        .find(Locator::Id("keys"))
        .await
        .expect("keys")
        .text()
        .await
        .expect("text");
    assert!(keys.contains("tanaka@acme-pc01"), "{keys}");
    let listed = deployment::ok(e.d.sekisho(&["user", "key", "list", "kato"], None));
    assert!(listed.contains("SHA256:"), "{listed}");
    follow(
        &c,
        c.find(Locator::Css("#keys button")).await.expect("remove"),
    )
    .await;
    let listed = deployment::ok(e.d.sekisho(&["user", "key", "list", "kato"], None));
    assert!(!listed.contains("SHA256:"), "{listed}");

    c.goto(&e.url("/people")).await.expect("people");
    type_into(&c, "secret-name", "web-set-secret").await;
    type_into(&c, "secret-value", "s3cret-from-the-browser").await;
    type_into(&c, "secret-code", &code_ahead(&k5, 1)).await;
    follow(&c, c.find(Locator::Id("set-secret")).await.expect("set")).await;
    let text = body_text(&c).await;
    assert!(text.contains("web-set-secret"), "{text}");
    assert!(
        !text.contains("s3cret-from-the-browser"),
        "a secret shown: {text}"
    );
    let audit = deployment::ok(e.d.sekisho(&["audit", "--json", "--kind", "admin_change"], None));
    for action in ["key_add", "key_rm", "secret_set"] {
        assert!(
            audit
                .lines()
                .any(|l| l.contains(&format!("\"action\":\"{action}\""))
                    && l.contains(&format!("\"by\":\"{keys_admin}\""))),
            "{action} by {keys_admin}: {audit}"
        );
    }
    assert!(!audit.contains("s3cret-from-the-browser"));
    c.close().await.expect("close");

    // A one-time SSH ticket, used once.
    let acme = ACME.lock().await;
    let (c, _driver) = browser("ja").await;
    sign_in_with(&c, ticket_admin, &code_ahead(&k6, 0)).await;
    c.goto(&e.url("/people")).await.expect("people");
    type_into(&c, "ticket-user", "ito").await;
    select(&c, "ticket-target", "db01").await;
    select(&c, "ticket-protocol", "ssh").await;
    type_into(&c, "ticket-code", &code_ahead(&k6, 1)).await;
    follow(
        &c,
        c.find(Locator::Id("issue-ticket")).await.expect("issue"),
    )
    .await;
    let ticket = match c.find(Locator::Id("ticket")).await {
        Ok(t) => t.text().await.expect("text"),
        Err(err) => panic!("no ticket ({err}): {}", body_text(&c).await),
    };
    let out =
        e.d.ssh(
            "ito@db01",
            "127.0.0.9",
            &ticket,
            "not-asked",
            &["echo ticket-works"],
        )
        .output()
        .expect("ssh");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ticket-works\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(acme);
    c.close().await.expect("close");

    // A new code for kato (a lost phone): the old secret stops working.
    let (c, _driver) = browser("en").await;
    sign_in_with(&c, reset_admin, &code_ahead(&k7, 0)).await;
    c.goto(&e.url("/people/kato")).await.expect("kato");
    type_into(&c, "reset-code", &code_ahead(&k7, 1)).await;
    follow(&c, c.find(Locator::Id("reset-totp")).await.expect("reset")).await;
    let secret = match c.find(Locator::Id("totp-secret")).await {
        Ok(t) => t.text().await.expect("text"),
        Err(err) => panic!("no new secret ({err}): {}", body_text(&c).await),
    };
    let key = sekisho::auth::totp::decode_secret(&secret).expect("base32");
    // kato signs in with the new secret (and is then refused by policy:
    // their contract has ended).
    let _ =
        e.d.ssh(
            "kato@db01",
            "127.0.0.9",
            PASSWORD,
            &code_ahead(&key, 0),
            &["true"],
        )
        .output()
        .expect("ssh");
    let signed = deployment::ok(e.d.sekisho(
        &[
            "audit",
            "--json",
            "--kind",
            "signin_success",
            "--user",
            "kato",
        ],
        None,
    ));
    assert!(
        !signed.trim().is_empty(),
        "kato did not sign in with the new secret"
    );
    let reset = deployment::ok(e.d.sekisho(
        &[
            "audit",
            "--json",
            "--kind",
            "admin_change",
            "--user",
            "kato",
        ],
        None,
    ));
    assert!(reset.contains("\"action\":\"user_totp_reset\""), "{reset}");
    c.close().await.expect("close");
}

/// An HTTPS client of the console's API signed in as `user` with `code`
/// (the certificate `init` made trusted, cookies kept): it and the CSRF token.
fn api_login(user: &str, code: &str) -> (reqwest::blocking::Client, String) {
    let e = env();
    let c = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&e.cert_pem()).expect("certificate"))
        .tls_built_in_root_certs(false)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let r = c
        .post(e.url("/api/v1/login"))
        .json(&serde_json::json!({"user": user, "password": PASSWORD, "code": code}))
        .send()
        .expect("login");
    assert_eq!(r.status().as_u16(), 200, "login of {user}");
    let body: serde_json::Value = r.json().expect("json");
    (c, body["csrf"].as_str().expect("csrf").to_string())
}

/// The API's emergency stop, for scripts: the same checks as the page
/// (admins, a reason, a fresh code, a scope that exists).
#[test]
fn an_emergency_stop_through_the_api() {
    let e = env();
    let _stops = ACME.blocking_lock();
    // A vendor of its own with nobody working: the other tests go on.
    deployment::ok(e.d.sekisho(&["vendor", "add", "api-vendor"], None));
    let k = new_admin("kanri8");
    let (c, csrf) = api_login("kanri8", &crate::support::totp::code_ahead(&k, 0));
    let post = |path: &str, body: serde_json::Value| {
        c.post(e.url(path))
            .header("x-csrf-token", csrf.as_str())
            .json(&body)
            .send()
            .expect("request")
    };
    let r = post(
        "/api/v1/stops",
        serde_json::json!({"scope": "vendor:no-such-vendor", "reason": "x", "code": "000000"}),
    );
    assert_eq!(r.status().as_u16(), 400);
    let r = post(
        "/api/v1/stops",
        serde_json::json!({"scope": "vendor:api-vendor", "reason": "", "code": "000000"}),
    );
    assert_eq!(r.status().as_u16(), 400, "a reason is required");
    let r = post(
        "/api/v1/stops",
        serde_json::json!({
            "scope": "vendor:api-vendor",
            "reason": "script drill",
            "code": crate::support::totp::code_ahead(&k, 1),
        }),
    );
    assert_eq!(r.status().as_u16(), 200);
    let stop: serde_json::Value = r.json().expect("json");
    let id = stop["stop"]["id"].as_i64().expect("the stop's id");
    assert_eq!(stop["stop"]["subject"], "api-vendor");
    let list: serde_json::Value = c
        .get(e.url("/api/v1/stops"))
        .send()
        .expect("list")
        .json()
        .expect("json");
    assert!(
        list["in_force"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["id"] == id)),
        "{list}"
    );
    // Lifting needs another fresh code: another admin.
    let k9 = new_admin("kanri9");
    let (c9, csrf9) = api_login("kanri9", &crate::support::totp::code_ahead(&k9, 0));
    let r = c9
        .post(e.url(&format!("/api/v1/stops/{id}/lift")))
        .header("x-csrf-token", csrf9.as_str())
        .json(&serde_json::json!({"reason": "done", "code": crate::support::totp::code_ahead(&k9, 1)}))
        .send()
        .expect("lift");
    assert_eq!(r.status().as_u16(), 200);
    let lifted = deployment::ok(e.d.sekisho(
        &["audit", "--json", "--kind", "emergency_stop_lifted"],
        None,
    ));
    assert!(
        lifted.contains("\"by\":\"kanri9\"") && lifted.contains("\"via\":\"web\""),
        "{lifted}"
    );
    // An auditor may not read or put stops.
    let (a, acsrf) = api_login(console::AUDITORS[1], &e.code(console::AUDITORS[1]));
    assert_eq!(
        a.get(e.url("/api/v1/stops"))
            .send()
            .expect("get")
            .status()
            .as_u16(),
        403
    );
    let r = a
        .post(e.url("/api/v1/stops"))
        .header("x-csrf-token", acsrf.as_str())
        .json(&serde_json::json!({"scope": "all", "reason": "x", "code": "000000"}))
        .send()
        .expect("post");
    assert_eq!(r.status().as_u16(), 403);
}
