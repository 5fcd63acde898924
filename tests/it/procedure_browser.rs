//! Work requests in Chromium (WebDriver, through `web_browser`'s driver):
//! an approver follows the console's 作業申請 link, finds the request that
//! waits for their step and approves it with the button; the engineer then
//! obtains a one-time RDP ticket with the button and sees it once.

use std::time::Duration;

use chrono::Utc;
use fantoccini::{Client, Locator};

use crate::procedure_e2e::{file_documents, rfc3339};
use crate::support::console::ConsoleEnv;
use crate::support::deployment::{PASSWORD, ok, read, wait_until};
use crate::support::totp;
use crate::web_browser::{browser, follow};

async fn sign_in(e: &ConsoleEnv, c: &Client, user: &str, code: &str) {
    c.goto(&e.url("/signin")).await.expect("open sign-in");
    for (id, value) in [("user", user), ("password", PASSWORD), ("code", code)] {
        c.find(Locator::Id(id))
            .await
            .expect("field")
            .send_keys(value)
            .await
            .expect("type");
    }
    follow(c, c.find(Locator::Id("signin")).await.expect("button")).await;
    assert_eq!(c.current_url().await.expect("url").path(), "/sessions");
}

async fn body(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .expect("body")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approver_approves_and_the_engineer_gets_a_ticket_in_the_browser() {
    let e = ConsoleEnv::start("sekisho-procbrowser-");
    let d = &e.d;
    file_documents(d, &["sato"]);
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
    ok(d.sekisho(&["secret", "set", "win02-admin"], Some("pw\n")));
    let reloads = crate::procedure_e2e::audit(d, "policy_reload")
        .lines()
        .count();
    let policy = d.dir.join("policies/lab.toml");
    let text = format!(
        "{}\n[[target]]\nname = \"win02\"\naddress = \"127.0.0.10\"\nkind = \"physical\"\nrdp = {{ port = 3389, account = \"Administrator\", credential = \"win02-admin\", cert_sha256 = \"74D219311D39C5E56C6ED2752053E3CBA63CDC17152BB9DF01F5E820328F4507\" }}\n",
        read(&policy)
    );
    std::fs::write(&policy, text).expect("write the policy");
    assert!(wait_until(Duration::from_secs(15), || {
        crate::procedure_e2e::audit(d, "policy_reload")
            .lines()
            .count()
            > reloads
    }));
    let now = Utc::now();
    let out = ok(d.sekisho(
        &[
            "request",
            "new",
            "--as",
            "sato",
            "--target",
            "win02",
            "--protocol",
            "rdp",
            "--engineer",
            "sato",
            "--from",
            &rfc3339(now - chrono::Duration::minutes(1)),
            "--until",
            &rfc3339(now + chrono::Duration::hours(1)),
            "--purpose",
            "ブラウザ試験",
            "--work",
            "確認",
            "--submit",
        ],
        None,
    ));
    let number = out.lines().next().unwrap_or_default().trim().to_string();

    let (c, _driver) = browser("ja,en").await;
    sign_in(&e, &c, "shonin", &totp::code_ahead(&shonin, 0)).await;
    follow(
        &c,
        c.find(Locator::Css("nav a[href='/requests']"))
            .await
            .expect("the 作業申請 link"),
    )
    .await;
    let text = body(&c).await;
    assert!(
        text.contains("承認待ち") && text.contains(&number),
        "{text}"
    );
    follow(
        &c,
        c.find(Locator::Css("#waiting button.approve"))
            .await
            .expect("approve button"),
    )
    .await;
    c.find(Locator::Id("nothing-waiting"))
        .await
        .expect("nothing waits any more");
    assert!(ok(d.sekisho(&["request", "show", &number], None)).contains("state:      approved"));
    c.close().await.expect("close");

    let (c, _driver) = browser("ja,en").await;
    sign_in(&e, &c, "sato", &d.code("sato")).await;
    c.goto(&e.url("/requests")).await.expect("requests");
    follow(
        &c,
        c.find(Locator::Css("#my-requests button.ticket"))
            .await
            .expect("ticket button"),
    )
    .await;
    let ticket = c
        .find(Locator::Id("ticket"))
        .await
        .expect("the ticket")
        .text()
        .await
        .expect("text");
    assert!(ticket.len() >= 16, "{ticket}");
    assert!(body(&c).await.contains("sato@win02"));
    c.close().await.expect("close");
}
