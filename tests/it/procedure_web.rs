//! Work requests in the web console, over real HTTPS against `sekisho
//! serve`: an approver finds the request waiting for their step and
//! approves it with the form; the engineer then finds it among their
//! approved requests, obtains a one-time RDP ticket for its target (shown
//! once) and downloads the `.rdp` file; the ticket is refused for a target
//! the request does not name; auditors have no such page.

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::json;

use crate::procedure_e2e::{audit, file_documents, rfc3339};
use crate::support::console::{AUDITORS, ConsoleEnv};
use crate::support::deployment::{PASSWORD, ok, read, wait_until};
use crate::support::totp;

fn client(e: &ConsoleEnv) -> Client {
    let cert = reqwest::Certificate::from_pem(&e.cert_pem()).expect("certificate");
    Client::builder()
        .add_root_certificate(cert)
        .tls_built_in_root_certs(false)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Signed in through the API (the cookie serves the pages too); the CSRF token.
fn login(e: &ConsoleEnv, user: &str, code: &str) -> (Client, String) {
    let c = client(e);
    let r = c
        .post(e.url("/api/v1/login"))
        .json(&json!({"user": user, "password": PASSWORD, "code": code}))
        .send()
        .expect("login");
    assert_eq!(r.status(), StatusCode::OK, "login of {user}");
    let v: serde_json::Value = r.json().expect("json");
    (c, v["csrf"].as_str().expect("csrf").to_string())
}

#[test]
fn approvers_approve_and_engineers_get_their_own_rdp_ticket_and_file() {
    let e = ConsoleEnv::start("sekisho-procweb-");
    let d = &e.d;
    file_documents(d, &["tanaka"]);
    // An approver, and a physical target that offers RDP.
    let out = ok(d.sekisho(
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
    let shonin = totp::key_from_user_add(&out);
    ok(d.sekisho(&["secret", "set", "win01-admin"], Some("pw\n")));
    let reloads = audit(d, "policy_reload").lines().count();
    let policy = d.dir.join("policies/lab.toml");
    let text = format!(
        "{}\n[[target]]\nname = \"win01\"\naddress = \"127.0.0.9\"\nkind = \"physical\"\nrdp = {{ port = 3389, account = \"Administrator\", credential = \"win01-admin\", cert_sha256 = \"74D219311D39C5E56C6ED2752053E3CBA63CDC17152BB9DF01F5E820328F4507\" }}\n",
        read(&policy)
    );
    std::fs::write(&policy, text).expect("write the policy");
    assert!(
        wait_until(Duration::from_secs(15), || audit(d, "policy_reload")
            .lines()
            .count()
            > reloads),
        "policy not reloaded: {}",
        read(&d.dir.join("serve.log"))
    );

    let now = Utc::now();
    let out = ok(d.sekisho(
        &[
            "request",
            "new",
            "--as",
            "tanaka",
            "--target",
            "win01",
            "--protocol",
            "rdp",
            "--engineer",
            "tanaka",
            "--from",
            &rfc3339(now - chrono::Duration::minutes(1)),
            "--until",
            &rfc3339(now + chrono::Duration::hours(1)),
            "--purpose",
            "画面からの設定確認",
            "--work",
            "管理ツールの確認",
            "--submit",
        ],
        None,
    ));
    let number = out.lines().next().unwrap_or_default().trim().to_string();

    // The approver's queue, and the approval through the form.
    let (a, csrf) = login(&e, "shonin", &totp::code_ahead(&shonin, 0));
    let page = a
        .get(e.url("/requests"))
        .send()
        .expect("page")
        .text()
        .expect("body");
    assert!(
        page.contains("id=\"waiting\"") && page.contains(&number),
        "{page}"
    );
    let r = a
        .post(e.url(&format!("/requests/{number}/approve")))
        .form(&[("csrf", csrf.as_str()), ("comment", "画面で承認")])
        .send()
        .expect("approve");
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text());
    assert!(ok(d.sekisho(&["request", "show", &number], None)).contains("state:      approved"));
    let approved = audit(d, "request_approved");
    assert!(
        approved
            .lines()
            .any(|l| l.contains(&number) && l.contains("web console")),
        "{approved}"
    );
    let page = a
        .get(e.url("/requests"))
        .send()
        .expect("page")
        .text()
        .expect("body");
    assert!(page.contains("id=\"nothing-waiting\""), "{page}");
    // Without the CSRF token, nothing is approved.
    let r = a
        .post(e.url(&format!("/requests/{number}/approve")))
        .form(&[("comment", "x")])
        .send()
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The engineer: the approved request, the ticket (once), the .rdp file.
    let (t, csrf) = login(&e, "tanaka", &d.code("tanaka"));
    let page = t
        .get(e.url("/requests"))
        .send()
        .expect("page")
        .text()
        .expect("body");
    assert!(
        page.contains("id=\"my-requests\"") && page.contains(&number),
        "{page}"
    );
    let r = t
        .post(e.url(&format!("/requests/{number}/ticket")))
        .form(&[("csrf", csrf.as_str()), ("target", "win01")])
        .send()
        .expect("ticket");
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().expect("body");
    let ticket = page
        .split("<code id=\"ticket\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or_default()
        .to_string();
    assert!(ticket.len() >= 16, "no ticket shown: {page}");
    assert!(page.contains("tanaka@win01"), "{page}");
    let issued = audit(d, "request_ticket_issued");
    assert!(
        issued.contains(&number) && !issued.contains(&ticket),
        "{issued}"
    );
    let r = t
        .get(e.url(&format!("/requests/{number}/rdp?target=win01")))
        .send()
        .expect("rdp file");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"win01.rdp\""
    );
    let file = r.text().expect("body");
    for line in [
        "username:s:tanaka@win01\r\n",
        "enablecredsspsupport:i:1\r\n",
        "redirectclipboard:i:0\r\n",
    ] {
        assert!(file.contains(line), "{line:?}: {file}");
    }
    assert!(!file.contains(&ticket), "the file holds no secret");
    // A target the request does not name: refused with the reason.
    let r = t
        .post(e.url(&format!("/requests/{number}/ticket")))
        .form(&[("csrf", csrf.as_str()), ("target", "db01")])
        .send()
        .expect("ticket");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.text()
            .expect("body")
            .contains("does not name target db01")
    );
    let r = t
        .get(e.url(&format!("/requests/{number}/rdp?target=db01")))
        .send()
        .expect("rdp file");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The same from the CLI on the bastion, with the .rdp file.
    let rdp = d.dir.join("win01.rdp");
    let out = ok(d.sekisho(
        &[
            "request",
            "ticket",
            &number,
            "--as",
            "tanaka",
            "--target",
            "win01",
            "--rdp-file",
            rdp.to_str().expect("utf-8 path"),
            "--bastion",
            "bastion.example.lg.jp",
        ],
        None,
    ));
    let cli_ticket = out.lines().next().unwrap_or_default().trim();
    assert!(cli_ticket.len() >= 16 && cli_ticket != ticket, "{out}");
    let file = read(&rdp);
    assert!(
        file.starts_with("full address:s:bastion.example.lg.jp:")
            && file.contains("username:s:tanaka@win01\r\n"),
        "{file}"
    );
    // ito is not named in the request: no ticket.
    let refused = d.sekisho(
        &[
            "request", "ticket", &number, "--as", "ito", "--target", "win01",
        ],
        None,
    );
    assert!(!refused.status.success());
    assert!(
        crate::support::cli::text(&refused).contains("not an approved request naming ito"),
        "{}",
        crate::support::cli::text(&refused)
    );

    // The work is stopped; the engineer writes the report, the approver
    // signs it off, both in the console.
    ok(d.sekisho(
        &[
            "request",
            "revoke",
            &number,
            "--as",
            "shonin",
            "--reason",
            "作業終了",
        ],
        None,
    ));
    let page = t
        .get(e.url("/requests"))
        .send()
        .expect("page")
        .text()
        .expect("body");
    assert!(
        page.contains("id=\"reports-to-write\"") && page.contains(&number),
        "{page}"
    );
    let r = t
        .post(e.url(&format!("/requests/{number}/report")))
        .form(&[
            ("csrf", csrf.as_str()),
            ("result", "incomplete"),
            ("summary", "設定の確認は途中まで"),
            ("follow_ups", "次回に続き"),
        ])
        .send()
        .expect("report");
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text());
    // A second sign-in of the approver (a code one step ahead is accepted).
    let (a, csrf) = login(&e, "shonin", &totp::code_ahead(&shonin, 1));
    let page = a
        .get(e.url("/requests"))
        .send()
        .expect("page")
        .text()
        .expect("body");
    assert!(
        page.contains("id=\"to-sign-off\"") && page.contains("未完了"),
        "{page}"
    );
    let r = a
        .post(e.url(&format!("/requests/{number}/sign-off")))
        .form(&[("csrf", csrf.as_str()), ("comment", "確認しました")])
        .send()
        .expect("sign off");
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text());
    let csv = a
        .get(e.url(&format!("/requests/{number}/report.csv")))
        .send()
        .expect("csv")
        .bytes()
        .expect("body");
    let csv = String::from_utf8(csv[3..].to_vec()).expect("UTF-8 after the BOM");
    assert!(
        csv.contains("作業報告（検収済）")
            && csv.contains("作業結果,未完了")
            && csv.contains("検収,shonin "),
        "{csv}"
    );
    let r = a
        .get(e.url(&format!("/requests/{number}/report.pdf")))
        .send()
        .expect("pdf");
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert!(r.bytes().expect("body").starts_with(b"%PDF-"));
    // Someone the request does not name, and who approves nothing, cannot read it.
    let (ito, _) = login(&e, "ito", &d.code("ito"));
    let r = ito
        .get(e.url(&format!("/requests/{number}/report.csv")))
        .send()
        .expect("csv");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The engineer files a request in the console; a bad one says why.
    let (t, csrf) = login(&e, "tanaka", &d.code_ahead("tanaka", 1));
    let local = |m: i64| {
        (Utc::now() + chrono::Duration::minutes(m))
            .with_timezone(&chrono_tz::Asia::Tokyo)
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    };
    let (from, until) = (local(60), local(120));
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("targets", "db01"),
        ("protocol", "ssh"),
        ("engineers", "tanaka"),
        ("from", from.as_str()),
        ("until", until.as_str()),
        ("purpose", "コンソールからの申請"),
        ("work", "ログ確認"),
    ];
    let r = t
        .post(e.url("/requests/new"))
        .form(&form)
        .send()
        .expect("file");
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text());
    let listed = ok(d.sekisho(&["request", "list", "--engineer", "tanaka"], None));
    assert!(
        listed
            .lines()
            .any(|l| l.contains("submitted") && l.contains("コンソールからの申請")),
        "{listed}"
    );
    form[6] = ("purpose", " ");
    let r = t
        .post(e.url("/requests/new"))
        .form(&form)
        .send()
        .expect("file");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().expect("body").contains("目的"));

    // Auditors have no requests page, but read every report.
    let (au, _) = login(&e, AUDITORS[0], &e.code(AUDITORS[0]));
    let r = au.get(e.url("/requests")).send().expect("page");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = au
        .get(e.url(&format!("/requests/{number}/report.csv")))
        .send()
        .expect("csv");
    assert_eq!(r.status(), StatusCode::OK);
}
