//! The whole procedure (作業申請 → 承認 → 作業 → 作業報告 → 検収 → 月次利用報告)
//! once, against the real binary, a real OpenSSH client and the test sshd:
//! a request approved in two steps opens the door for a real session inside
//! its window and shuts it when the window ends; the drafted work report
//! lists the session and the command typed; the engineer writes the result
//! and an approver signs it off; the monthly report holds it, read back as
//! UTF-8 with BOM, as CP932 and (through `pdftotext`) as PDF. An engineer
//! without a pledge on file is not approved, and a character CP932 cannot
//! hold stops the CP932 export with its name, writing nothing.
//!
//! Its own deployment: the window really ends during the test, and the
//! engineers' one-time codes are not shared with other suites.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use chrono::Utc;

use crate::procedure_e2e::{audit, file_documents, rfc3339, start_with_approval};
use crate::support::cli::text;
use crate::support::deployment::{Deployment, PASSWORD, ok};

fn ssh(d: &Deployment, user: &str, from: &str, cmd: &str) -> Output {
    d.ssh(
        &format!("{user}@db01"),
        from,
        PASSWORD,
        &d.code(user),
        &[cmd],
    )
    .output()
    .expect("run ssh")
}

/// The calendar month (in the site's zone, Asia/Tokyo) that the request's
/// window start, its session and the refusal after it all fall in, as
/// `YYYY-MM`. The monthly report counts each in the month it happened: a run
/// across a month's end (15:00 UTC on its last day) would split them, so
/// close to one this waits until the new month is a few minutes old.
fn one_month_for_the_whole_loop() -> String {
    use chrono::{Datelike as _, TimeZone as _};
    let tokyo = chrono_tz::Asia::Tokyo;
    let now = Utc::now().with_timezone(&tokyo);
    let month_start = |year: i32, month: u32| {
        tokyo
            .with_ymd_and_hms(year, month, 1, 0, 0, 0)
            .single()
            .expect("midnight exists in Tokyo")
    };
    let this = month_start(now.year(), now.month());
    let next = if now.month() == 12 {
        month_start(now.year() + 1, 1)
    } else {
        month_start(now.year(), now.month() + 1)
    };
    // The window starts a minute before now; the test takes minutes.
    let settled = if now < this + chrono::Duration::minutes(2) {
        Some(this + chrono::Duration::minutes(2))
    } else if next - now < chrono::Duration::minutes(10) {
        Some(next + chrono::Duration::minutes(2))
    } else {
        None
    };
    if let Some(at) = settled {
        let wait = (at - now).to_std().unwrap_or_default();
        eprintln!("waiting {wait:?} for a month's end to pass");
        std::thread::sleep(wait);
    }
    Utc::now().with_timezone(&tokyo).format("%Y-%m").to_string()
}

fn pdftotext(pdf: &Path) -> String {
    let out = std::process::Command::new("pdftotext")
        .args(["-layout", pdf.to_str().expect("utf-8 path"), "-"])
        .output()
        .expect("pdftotext (poppler-utils, .ci/install-peers)");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).expect("UTF-8 text")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn request_approval_session_report_sign_off_and_monthly_report() {
    let d = start_with_approval("sekisho-loop");
    file_documents(&d, &["tanaka"]);
    let sekisho = |args: &[&str]| d.sekisho(args, None);

    // tanaka's request: the window began a minute ago and ends in 45 s.
    let month = one_month_for_the_whole_loop();
    let now = Utc::now();
    let window_end = now + chrono::Duration::seconds(45);
    let out = ok(sekisho(&[
        "request",
        "new",
        "--as",
        "tanaka",
        "--target",
        "db01",
        "--protocol",
        "ssh",
        "--engineer",
        "tanaka",
        "--from",
        &rfc3339(now - chrono::Duration::minutes(1)),
        "--until",
        &rfc3339(window_end),
        "--purpose",
        "月次点検",
        "--work",
        "ログの確認",
        "--submit",
    ]));
    let number = out.lines().next().unwrap_or_default().trim().to_string();
    assert!(number.starts_with("R-"), "{out}");
    ok(sekisho(&["request", "approve", &number, "--as", "yoshida"]));
    ok(sekisho(&["request", "approve", &number, "--as", "kimura"]));

    // Inside the window: a real session, with the command recorded.
    let out = ssh(&d, "tanaka", "127.0.0.81", "echo loop-marker-42");
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("loop-marker-42"));

    // The result cannot be written while the window is open.
    let early = sekisho(&[
        "report",
        "complete",
        &number,
        "--as",
        "tanaka",
        "--result",
        "完了",
        "--summary",
        "早すぎ",
    ]);
    assert!(!early.status.success(), "{}", text(&early));
    assert!(text(&early).contains("close it"), "{}", text(&early));

    // The window ends; the door shuts.
    let left = (window_end - Utc::now()).to_std().unwrap_or_default();
    std::thread::sleep(left + Duration::from_secs(1));
    let out = ssh(&d, "tanaka", "127.0.0.81", "echo after-the-window");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("requires an approved work request"),
        "{}",
        text(&out)
    );
    assert!(
        audit(&d, "deny")
            .lines()
            .any(|l| l.contains("no_approved_request") && l.contains("\"user\":\"tanaka\"")),
        "no audited denial"
    );

    // The drafted report lists the session and the command.
    let draft = ok(sekisho(&["report", "work", &number]));
    assert!(draft.contains("作業報告（下書き）"), "{draft}");
    assert!(draft.contains("状態,expired"), "{draft}");
    assert!(
        draft.contains(",コマンド,echo loop-marker-42\r\n"),
        "{draft}"
    );
    assert!(draft.contains(",tanaka,db01,ssh,"), "{draft}");
    assert!(
        draft.contains("誓約書,tanaka,"),
        "the pledge is listed: {draft}"
    );

    // The engineer writes the result; only an approver signs it off, once.
    ok(sekisho(&[
        "report",
        "complete",
        &number,
        "--as",
        "tanaka",
        "--result",
        "完了",
        "--summary",
        "ログに異常なし",
        "--follow-ups",
        "来月も点検",
    ]));
    let own = sekisho(&["report", "sign-off", &number, "--as", "tanaka"]);
    assert!(!own.status.success(), "{}", text(&own));
    let signed = ok(sekisho(&[
        "report",
        "sign-off",
        &number,
        "--as",
        "kimura",
        "--comment",
        "検収しました",
    ]));
    assert!(signed.contains("signed off"), "{signed}");
    let again = sekisho(&[
        "report",
        "complete",
        &number,
        "--as",
        "tanaka",
        "--result",
        "中止",
        "--summary",
        "x",
    ]);
    assert!(!again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("検収済"), "{}", text(&again));
    for kind in ["report_written", "report_signed_off"] {
        let events = audit(&d, kind);
        assert!(events.contains(&number), "{kind}: {events}");
    }
    let done = ok(sekisho(&["report", "work", &number]));
    assert!(done.contains("作業報告（検収済）"), "{done}");
    assert!(done.contains("作業結果,完了"), "{done}");
    assert!(done.contains("作業概要,ログに異常なし"), "{done}");
    assert!(done.contains("検収,kimura "), "{done}");

    // The work report as PDF.
    let work_pdf = d.dir.join("work.pdf");
    ok(sekisho(&[
        "report",
        "work",
        &number,
        "--format",
        "pdf",
        "-o",
        path(&work_pdf),
    ]));
    let t = pdftotext(&work_pdf);
    for want in [
        "作業報告（検収済）",
        number.as_str(),
        "作業結果",
        "完了",
        "月次点検",
        "echo loop-marker-42",
        "kimura",
    ] {
        assert!(t.contains(want), "{want:?} missing from the PDF: {t}");
    }

    // The monthly report of this month (in the site's zone, Asia/Tokyo).
    let csv = d.dir.join("monthly.csv");
    ok(sekisho(&[
        "report",
        "monthly",
        "--month",
        &month,
        "--vendor",
        "acme",
        "-o",
        path(&csv),
    ]));
    let bytes = std::fs::read(&csv).expect("the CSV");
    assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "no BOM");
    let utf8 = String::from_utf8(bytes[3..].to_vec()).expect("UTF-8");
    assert!(utf8.starts_with("月次利用報告 "), "{utf8}");
    // acme on lab: 1 request (1 approved, none rejected or emergency), 1
    // session, and no session without an approved request.
    let usage = utf8
        .lines()
        .find(|l| l.starts_with("acme,lab,"))
        .unwrap_or_else(|| panic!("no usage row: {utf8}"));
    let cells: Vec<&str> = usage.split(',').collect();
    assert_eq!(&cells[2..7], ["1", "1", "0", "0", "1"], "{usage}");
    assert_eq!(cells[12], "0", "sessions without approval: {usage}");
    assert!(
        cells[11].parse::<u32>().unwrap_or(0) >= 1,
        "refusals: {usage}"
    );
    assert!(
        utf8.lines()
            .any(|l| l.starts_with("acme,lab,no_approved_request,")),
        "{utf8}"
    );
    assert!(
        utf8.lines()
            .any(|l| l.starts_with(&format!("{number},1,acme,lab,expired,通常,"))),
        "{utf8}"
    );
    assert!(
        utf8.lines()
            .any(|l| l.contains(",acme,lab,tanaka,db01,ssh,") && l.contains(&number)),
        "{utf8}"
    );

    // As PDF: Japanese headings and the numbers.
    let pdf = d.dir.join("monthly.pdf");
    ok(sekisho(&[
        "report",
        "monthly",
        "--month",
        &month,
        "--format",
        "pdf",
        "-o",
        path(&pdf),
    ]));
    let t = pdftotext(&pdf);
    for want in [
        "月次利用報告",
        "利用状況（業者・システム別）",
        "拒否された接続とその理由",
        // Narrow header cells wrap between Japanese characters only.
        "承認なし",
        "no_approved_request",
        number.as_str(),
        "誓約書",
    ] {
        assert!(t.contains(want), "{want:?} missing from the PDF: {t}");
    }
    let row = t
        .lines()
        .find(|l| l.trim_start().starts_with("acme") && l.contains("lab"))
        .unwrap_or_else(|| panic!("no usage row in the PDF: {t}"));
    let numbers: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&numbers[2..7], ["1", "1", "0", "0", "1"], "{row}");

    // The same month in CP932 (Shift_JIS), read back.
    let sjis = d.dir.join("monthly-sjis.csv");
    ok(sekisho(&[
        "report",
        "monthly",
        "--month",
        &month,
        "--vendor",
        "acme",
        "--encoding",
        "cp932",
        "-o",
        path(&sjis),
    ]));
    let sjis_bytes = std::fs::read(&sjis).expect("the CP932 CSV");
    assert!(
        !sjis_bytes.starts_with(&[0xEF, 0xBB, 0xBF]),
        "no BOM in CP932"
    );
    let (decoded, _, errors) = encoding_rs::SHIFT_JIS.decode(&sjis_bytes);
    assert!(!errors, "not CP932");
    assert_eq!(decoded.replace("\r\n", "\n"), utf8.replace("\r\n", "\n"));

    // ito has no pledge on file: his request cannot be approved, and says why.
    let now = Utc::now();
    let out = ok(sekisho(&[
        "request",
        "new",
        "--as",
        "ito",
        "--target",
        "db01",
        "--protocol",
        "ssh",
        "--engineer",
        "ito",
        "--from",
        &rfc3339(now + chrono::Duration::minutes(1)),
        "--until",
        &rfc3339(now + chrono::Duration::minutes(10)),
        // 𠮷 (U+20BB7) is outside CP932: it stops the CP932 export below.
        "--purpose",
        "𠮷田支所の端末更新",
        "--work",
        "端末交換",
        "--submit",
    ]));
    let unpledged = out.lines().next().unwrap_or_default().trim().to_string();
    let refused = sekisho(&["request", "approve", &unpledged, "--as", "yoshida"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("engineer ito has no signed pledge (誓約書) on file"),
        "{}",
        text(&refused)
    );
    assert!(ok(sekisho(&["request", "show", &unpledged])).contains("state:      submitted"));

    // 𠮷 cannot be written in CP932: the command names it and leaves the
    // file it would have replaced as it was.
    let bad = sekisho(&[
        "report",
        "monthly",
        "--month",
        &month,
        "--vendor",
        "acme",
        "--encoding",
        "cp932",
        "-o",
        path(&sjis),
    ]);
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(
        text(&bad).contains("'𠮷'") && text(&bad).contains("CP932"),
        "{}",
        text(&bad)
    );
    assert_eq!(std::fs::read(&sjis).expect("still there"), sjis_bytes);
    // In UTF-8 it is written, with the second request counted.
    ok(sekisho(&[
        "report",
        "monthly",
        "--month",
        &month,
        "-o",
        path(&csv),
    ]));
    let utf8 = String::from_utf8(std::fs::read(&csv).expect("csv")[3..].to_vec()).expect("UTF-8");
    assert!(utf8.contains("𠮷田支所の端末更新"), "{utf8}");
    assert!(
        utf8.lines().any(|l| l.starts_with("acme,lab,2,1,0,0,1,")),
        "{utf8}"
    );
}
