//! The web console over real HTTPS against a real `sekisho serve` (with a
//! real sshd target and a session made by the OpenSSH client): sign-in
//! through the shared authenticator, cookies and CSRF, roles on every route
//! (a table: each route with each role), the sessions list and page, the
//! downloads, the audit CSV, the API, the emergency stop, idle timeout.

use std::sync::OnceLock;
use std::time::Duration;

use crate::support::process::wait_until as wait_for;
use crate::support::{console, deployment};
use console::ConsoleEnv;
use deployment::PASSWORD;
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

fn env() -> &'static ConsoleEnv {
    static ENV: OnceLock<ConsoleEnv> = OnceLock::new();
    ENV.get_or_init(|| ConsoleEnv::start("sekisho-web-"))
}

/// An HTTPS client trusting init's certificate, keeping cookies, not
/// following redirects (the tests look at them).
fn client() -> Client {
    let cert = reqwest::Certificate::from_pem(&env().cert_pem()).expect("certificate");
    Client::builder()
        .add_root_certificate(cert)
        .tls_built_in_root_certs(false)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A client signed in through the API as `user`; returns it and the CSRF token.
fn api_login(user: &str) -> (Client, String) {
    api_login_with(user, &env().code(user))
}

/// [`api_login`] with this code.
fn api_login_with(user: &str, code: &str) -> (Client, String) {
    let c = client();
    let r = c
        .post(env().url("/api/v1/login"))
        .json(&json!({"user": user, "password": PASSWORD, "code": code}))
        .send()
        .expect("login");
    assert_eq!(r.status(), StatusCode::OK, "login of {user}");
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("__Host-sekisho="))
        .expect("session cookie")
        .to_string();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let body: Value = r.json().expect("json");
    (c, body["csrf"].as_str().expect("csrf").to_string())
}

/// GET `path` expecting 200 and JSON.
fn get_json(c: &Client, path: &str) -> Value {
    let r = c.get(env().url(path)).send().expect("request");
    let status = r.status();
    let body = text(r);
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn text(r: Response) -> String {
    r.text().unwrap_or_default()
}

fn audit(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    deployment::ok(env().d.sekisho(&all, None))
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn served_over_tls_with_http2_and_strict_headers() {
    let r = client()
        .get(env().url("/signin"))
        .send()
        .expect("GET /signin");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN h2");
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    let pre = h
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with("__Host-sekisho-pre=") && v.contains("Secure"));
    assert!(pre, "pre-sign-in cookie");
    let page = text(r);
    assert!(page.contains("<html lang=\"ja\""), "Japanese by default");
    assert!(page.contains("サインイン"), "{page}");
    assert!(!page.contains("<script"), "no script on the sign-in page");
    assert!(!page.contains("style="), "no inline style");

    // HTTP/1.1 too.
    let c = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&env().cert_pem()).expect("cert"))
        .http1_only()
        .build()
        .expect("client");
    let r = c.get(env().url("/assets/sekisho.css")).send().expect("css");
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/css")
    );

    // English by Accept-Language.
    let r = client()
        .get(env().url("/signin"))
        .header("accept-language", "en-US,en;q=0.9")
        .send()
        .expect("GET /signin");
    let page = text(r);
    assert!(page.contains("<html lang=\"en\""), "{page}");
    assert!(page.contains("One-time code"), "{page}");
}

/// Each route with each role (and without a sign-in): the status the server
/// answers. Engineers reach only their own sessions, never the audit log;
/// only admins pass the kill gate (and then fail on the wrong code).
#[test]
fn roles_are_enforced_on_every_route() {
    let e = env();
    let other = &e.session; // suzuki's session
    let routes: Vec<(&str, String)> = vec![
        ("GET", "/sessions".into()),
        ("GET", format!("/sessions/{other}")),
        ("POST", format!("/sessions/{other}/archive")),
        ("GET", format!("/sessions/{other}/asciicast")),
        ("GET", format!("/sessions/{other}/keystrokes")),
        ("GET", format!("/sessions/{other}/replay")),
        ("GET", format!("/sessions/{other}/live")),
        ("POST", format!("/sessions/{other}/kill")),
        ("GET", "/audit".into()),
        ("GET", "/audit.csv".into()),
        ("GET", "/api/v1/sessions".into()),
        ("GET", format!("/api/v1/sessions/{other}")),
        ("GET", "/api/v1/audit".into()),
        ("POST", format!("/api/v1/sessions/{other}/kill")),
    ];
    // Expected statuses: [anonymous, engineer (tanaka), auditor, admin].
    let expected: [[u16; 4]; 14] = [
        [303, 200, 200, 200],
        [303, 403, 200, 200],
        [403, 403, 400, 400],
        [303, 403, 200, 200],
        [303, 403, 200, 200],
        [303, 403, 200, 200],
        [303, 403, 200, 200],
        [403, 403, 403, 400],
        [303, 403, 200, 200],
        [303, 403, 200, 200],
        [401, 200, 200, 200],
        [401, 403, 200, 200],
        [401, 403, 200, 200],
        [403, 403, 403, 400],
    ];
    let anonymous = (client(), String::new());
    let callers = [
        anonymous,
        api_login("tanaka"),
        api_login(console::AUDITORS[0]),
        api_login(console::ADMINS[0]),
    ];
    let mut table = Vec::new();
    for ((method, path), want) in routes.iter().zip(expected) {
        let mut row = Vec::new();
        for (c, csrf) in &callers {
            let r = match *method {
                "GET" => c.get(e.url(path)).send(),
                _ if path.starts_with("/api/") => c
                    .post(e.url(path))
                    .header("x-csrf-token", csrf.as_str())
                    .json(&json!({"reason": "role table", "code": "000000"}))
                    .send(),
                _ => c
                    .post(e.url(path))
                    .form(&[
                        ("csrf", csrf.as_str()),
                        ("reason", "role table"),
                        ("code", "000000"),
                    ])
                    .send(),
            }
            .expect("request");
            row.push(r.status().as_u16());
        }
        table.push(format!("{method} {path}: {row:?} (want {want:?})"));
        assert_eq!(row, want, "{method} {path}\n{}", table.join("\n"));
    }
    eprintln!("{}", table.join("\n"));

    // An engineer's list holds only their own sessions, whatever they ask.
    let (eng, _) = &callers[1];
    let v: Value = eng
        .get(e.url("/api/v1/sessions?user=suzuki"))
        .send()
        .expect("list")
        .json()
        .expect("json");
    assert_eq!(v["total"], 0, "{v}");
    let page = text(eng.get(e.url("/sessions")).send().expect("page"));
    assert!(
        !page.contains(other.as_str()),
        "engineer sees suzuki's session"
    );
    assert!(
        !page.contains("href=\"/audit\""),
        "engineer offered the audit log"
    );
}

#[test]
fn html_sign_in_with_code_csrf_and_sign_out() {
    let e = env();
    let c = client();
    // Without a pre-sign-in token the form is refused.
    let r = c
        .post(e.url("/signin"))
        .form(&[("user", "ito"), ("password", PASSWORD), ("code", "123456")])
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let page = text(c.get(e.url("/signin")).send().expect("form"));
    let pre = hidden(&page, "csrf");
    // A wrong password: 401, the same vague message, audited as web.
    let r = c
        .post(e.url("/signin"))
        .form(&[
            ("user", "kato"),
            ("password", "wrong"),
            ("code", "123456"),
            ("csrf", &pre),
        ])
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let page = text(r);
    assert!(page.contains("signin-error"), "{page}");
    let failures = audit(&["--kind", "signin_failure", "--user", "kato"]);
    assert!(
        failures
            .iter()
            .any(|v| v["protocol"] == "web" && v["data"]["reason"] == "wrong password"),
        "{failures:?}"
    );

    let pre = hidden(&page, "csrf");
    let r = c
        .post(e.url("/signin"))
        .form(&[
            ("user", "ito"),
            ("password", PASSWORD),
            ("code", &e.code("ito")),
            ("csrf", &pre),
        ])
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/sessions");
    let ok = audit(&["--kind", "signin_success", "--user", "ito"]);
    assert!(
        ok.iter()
            .any(|v| v["protocol"] == "web" && v["data"]["method"] == "totp"),
        "{ok:?}"
    );

    let page = text(c.get(e.url("/sessions")).send().expect("sessions"));
    assert!(page.contains("ito"), "{page}");
    let csrf = hidden(&page, "csrf");

    // State-changing requests without the token are refused and change nothing.
    let r = c
        .post(e.url("/lang"))
        .form(&[("lang", "en")])
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(e.url("/lang"))
        .form(&[("lang", "en"), ("csrf", "forged")])
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c.post(e.url("/signout")).send().expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let page = text(c.get(e.url("/sessions")).send().expect("sessions"));
    assert!(
        page.contains("<html lang=\"ja\""),
        "still Japanese and signed in"
    );

    // The language choice sticks to the sign-in.
    let r = c
        .post(e.url("/lang"))
        .form(&[("lang", "en"), ("csrf", &csrf)])
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = text(c.get(e.url("/sessions")).send().expect("sessions"));
    assert!(page.contains("<html lang=\"en\""), "{page}");

    let r = c
        .post(e.url("/signout"))
        .form(&[("csrf", &csrf)])
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = c.get(e.url("/sessions")).send().expect("after sign-out");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/signin");
}

/// The value of the first hidden input `name` in a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).expect("hidden input") + marker.len();
    page[start..start + page[start..].find('"').expect("end")].to_string()
}

#[test]
fn sessions_are_found_by_filter_and_shown_with_evidence() {
    let e = env();
    let (c, csrf) = api_login(console::AUDITORS[1]);
    // The API list with filters.
    let v = get_json(
        &c,
        "/api/v1/sessions?user=suzuki&protocol=ssh&state=ended&system=lab&target=db01&vendor=acme&from=1h",
    );
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["sessions"][0]["id"], e.session.as_str());
    for q in [
        "user=tanaka",
        "user=suzuki&state=live",
        "user=suzuki&protocol=rdp",
        "user=suzuki&system=nosuch",
        "user=suzuki&to=2000-01-01",
    ] {
        let v = get_json(&c, &format!("/api/v1/sessions?{q}"));
        assert_eq!(v["total"], 0, "{q}: {v}");
    }
    let r = c
        .get(e.url("/api/v1/sessions?state=sleeping"))
        .send()
        .expect("list");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // The page: found by filter, with the verdict, decision and keystrokes.
    let list = text(
        c.get(e.url("/sessions?user=suzuki&system=lab"))
            .send()
            .expect("list"),
    );
    assert!(list.contains(&format!("/sessions/{}", e.session)), "{list}");
    let page = text(
        c.get(e.url(&format!("/sessions/{}", e.session)))
            .send()
            .expect("page"),
    );
    assert!(page.contains("data-verdict=\"intact\""), "{page}");
    assert!(page.contains("記録は完全です"), "{page}");
    assert!(
        page.contains("日本語テスト-sekisho"),
        "the keystroke log: {page}"
    );
    assert!(page.contains("acme"), "vendor");
    assert!(page.contains("lab"), "system");
    assert!(page.contains("127.0.0.1"), "source");

    let v: Value = c
        .get(e.url(&format!("/api/v1/sessions/{}", e.session)))
        .send()
        .expect("one")
        .json()
        .expect("json");
    assert_eq!(v["verify"]["verdict"], "intact", "{v}");
    assert_eq!(v["session"]["user"], "suzuki");

    // Downloads: the archive byte for byte, asciicast, keystroke log.
    // The signed archive is an export: a wrong code is refused, a fresh
    // one lets it out, and the export is audited.
    let archive_url = e.url(&format!("/sessions/{}/archive", e.session));
    let refused = c
        .post(&archive_url)
        .form(&[("csrf", csrf.as_str()), ("code", "000000")])
        .send()
        .expect("archive");
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let archive = c
        .post(&archive_url)
        .form(&[
            ("csrf", csrf.as_str()),
            ("code", e.code_ahead(console::AUDITORS[1], 1).as_str()),
        ])
        .send()
        .expect("archive");
    assert_eq!(archive.status(), StatusCode::OK);
    let bytes = archive.bytes().expect("bytes");
    assert_eq!(
        bytes.as_ref(),
        std::fs::read(e.archive()).expect("file").as_slice()
    );
    let cast = text(
        c.get(e.url(&format!("/sessions/{}/asciicast", e.session)))
            .send()
            .expect("cast"),
    );
    let header: Value = serde_json::from_str(cast.lines().next().unwrap_or("")).expect("header");
    assert_eq!(header["version"], 2);
    assert!(cast.contains("日本語テスト-sekisho"), "{cast}");
    let log = text(
        c.get(e.url(&format!("/sessions/{}/keystrokes", e.session)))
            .send()
            .expect("log"),
    );
    assert!(log.contains(console::TYPED), "{log}");
    let exported = get_json(
        &c,
        &format!(
            "/api/v1/audit?kind=recording_exported&user={}",
            console::AUDITORS[1]
        ),
    );
    let text = exported.to_string();
    assert!(text.contains(&e.session.to_string()), "{text}");
    assert!(text.contains("\"format\":\"archive\""), "{text}");
}

#[test]
fn audit_page_filters_and_csv_with_bom() {
    let e = env();
    let (c, _) = api_login(console::AUDITORS[2]);
    let page = text(
        c.get(e.url("/audit?kind=session_start,session_end&user=suzuki"))
            .send()
            .expect("audit"),
    );
    assert!(page.contains("class=\"kind-session_end\""), "{page}");
    assert!(!page.contains("class=\"kind-signin_"), "filtered by kind");
    let r = c
        .get(e.url("/audit.csv?user=suzuki&kind=session_end"))
        .send()
        .expect("csv");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/csv")
    );
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap_or_default()
            .contains("attachment")
    );
    let bytes = r.bytes().expect("bytes");
    assert!(bytes.starts_with(&[0xef, 0xbb, 0xbf]), "UTF-8 BOM");
    let csv = String::from_utf8(bytes[3..].to_vec()).expect("utf-8");
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("id,time,kind,user"), "{csv}");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].contains(&e.session), "{csv}");

    let v: Value = c
        .get(e.url("/api/v1/audit?kind=session_end&user=suzuki"))
        .send()
        .expect("api")
        .json()
        .expect("json");
    assert_eq!(v["events"].as_array().map(Vec::len), Some(1), "{v}");
    let r = c
        .get(e.url("/api/v1/audit?kind=nonsense"))
        .send()
        .expect("api");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// The admin stops a live SSH session from the API with a reason and a
/// fresh code; the engineer's OpenSSH client prints the reason.
#[test]
fn kill_with_fresh_code_ends_the_session_and_the_engineer_sees_why() {
    let e = env();
    let admin = console::ADMINS[1];
    // Kept: recomputed later, in the next 30-s step, it would be a fresh
    // code (accepted) rather than the one used to sign in.
    let signin_code = e.code(admin);
    let (c, csrf) = api_login_with(admin, &signin_code);
    let mut child =
        e.d.ssh(
            "sato@db01",
            "127.0.0.1",
            PASSWORD,
            &e.code("sato"),
            &["echo started; sleep 60"],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut id = String::new();
    assert!(wait_for(Duration::from_secs(15), || {
        let v: Value = c
            .get(e.url("/api/v1/sessions?user=sato&state=live"))
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null);
        id = v["sessions"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        !id.is_empty()
    }));
    let path = format!("/api/v1/sessions/{id}/kill");
    // No CSRF token: refused, the session lives on.
    let r = c
        .post(e.url(&path))
        .json(&json!({"reason": "x", "code": e.code_ahead(admin, 1)}))
        .send()
        .expect("kill");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The code used to sign in is not fresh.
    let r = c
        .post(e.url(&path))
        .header("x-csrf-token", &csrf)
        .json(&json!({"reason": "x", "code": signin_code}))
        .send()
        .expect("kill");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(matches!(child.try_wait(), Ok(None)), "still running");

    let reason = "緊急停止: 作業範囲外の操作";
    let r = c
        .post(e.url(&path))
        .header("x-csrf-token", &csrf)
        .json(&json!({"reason": reason, "code": e.code_ahead(admin, 1)}))
        .send()
        .expect("kill");
    assert_eq!(r.status(), StatusCode::OK, "{}", text(r));
    assert!(wait_for(Duration::from_secs(30), || matches!(
        child.try_wait(),
        Ok(Some(_))
    )));
    let out = child.wait_with_output().expect("ssh output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(reason), "{err}");
    // The row is closed just after the client has gone.
    let mut v = Value::Null;
    assert!(
        wait_for(Duration::from_secs(30), || {
            v = get_json(&c, &format!("/api/v1/sessions/{id}"));
            v["session"]["status"] == "killed"
        }),
        "{v}"
    );
    assert_eq!(v["session"]["killed_by"], admin);
    let asked = audit(&["--kind", "kill_requested", "--session", &id]);
    assert_eq!(asked.len(), 1, "{asked:?}");
}

#[test]
fn an_idle_sign_in_ends() {
    let e = env();
    let (c, _) = api_login(console::AUDITORS[3]);
    let r = c.get(e.url("/api/v1/sessions")).send().expect("list");
    assert_eq!(r.status(), StatusCode::OK);
    std::thread::sleep(console::IDLE + Duration::from_secs(2));
    let r = c.get(e.url("/api/v1/sessions")).send().expect("list");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c.get(e.url("/sessions")).send().expect("page");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}
