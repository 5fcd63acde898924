//! The procedure operations against a real SQLite store: what is checked
//! when a request is filed, revisions superseding each other, late
//! approval, revocation and expiry, and the audit events they leave.

use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::store::{AuditFilter, DocumentKind, NewUserRow, WorkResult};

const FA: &str = r#"
[system]
name = "fa"
zone = "lgwan"

[[target]]
name = "fa-db01"
address = "10.20.0.11"
kind = "physical"
ssh = { account = "maint", credential = "c", host_key = "SHA256:zwxFZkDJRdBjQcMdVAtmpgnwJu8v91OmlxCHrsDj4L8" }

[[target]]
name = "fa-win01"
address = "10.20.0.21"
kind = "physical"
rdp = { account = "Administrator", credential = "c", cert_sha256 = "74D219311D39C5E56C6ED2752053E3CBA63CDC17152BB9DF01F5E820328F4507" }

[[access]]
vendor = "acme"
users = ["tanaka"]
contract = { from = "2026-04-01", until = "2027-03-31" }
hours = "always"
max_session = "2h"
protocols = ["ssh"]
sources = ["office"]
"#;

const KK: &str = r#"
[system]
name = "kk"
zone = "lgwan"

[approval]
steps = [["role:approver"], ["kimura"]]

[[target]]
name = "kk-db01"
address = "10.60.0.1"
kind = "virtual"
ssh = { account = "maint", credential = "c", host_key = "SHA256:zwxFZkDJRdBjQcMdVAtmpgnwJu8v91OmlxCHrsDj4L8" }
"#;

fn at(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).single().unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    policies: PolicySet,
}

const TZ: chrono_tz::Tz = chrono_tz::Asia::Tokyo;

/// A fixture with the documents on file that approval needs: acme's
/// contract copy and the pledges of tanaka and suzuki, for the year.
async fn fixture() -> Fixture {
    let f = bare_fixture().await;
    f.file(
        DocumentKind::Contract,
        "acme",
        "2026-04-01",
        "2027-03-31",
        b"%PDF-1.4 contract",
    )
    .await
    .unwrap();
    for e in ["tanaka", "suzuki"] {
        f.file(
            DocumentKind::Pledge,
            e,
            "2026-04-01",
            "2027-03-31",
            b"%PDF-1.4 pledge",
        )
        .await
        .unwrap();
    }
    f
}

async fn bare_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    store.add_vendor("acme", None).await.unwrap();
    store.add_vendor("other", None).await.unwrap();
    for (name, role, vendor) in [
        ("tanaka", Role::Engineer, Some("acme")),
        ("suzuki", Role::Engineer, Some("acme")),
        ("ito", Role::Engineer, Some("other")),
        ("yoshida", Role::Approver, None),
        ("kimura", Role::Admin, None),
        ("audit1", Role::Auditor, None),
    ] {
        store
            .add_user(&NewUserRow {
                name,
                role,
                vendor,
                password_hash: "x",
                totp_secret_sealed: "x",
            })
            .await
            .unwrap();
    }
    let files = [("fa", FA), ("kk", KK)]
        .iter()
        .map(|(n, t)| (PathBuf::from(format!("/p/{n}.toml")), t.to_string()))
        .collect::<Vec<_>>();
    let policies = PolicySet::parse_files(&files, None, None).unwrap();
    Fixture {
        _dir: dir,
        store,
        policies,
    }
}

impl Fixture {
    async fn file(
        &self,
        kind: DocumentKind,
        holder: &str,
        from: &str,
        until: &str,
        content: &[u8],
    ) -> Result<crate::store::DocumentRecord, ProcedureError> {
        documents::add(
            &self.store,
            &documents::Clerk {
                name: "root".into(),
                via: "test".into(),
            },
            documents::Filing {
                kind,
                holder: holder.into(),
                valid_from: from.parse().unwrap(),
                valid_until: until.parse().unwrap(),
                file_name: "scan.pdf".into(),
                content: content.to_vec(),
            },
            at(1, 0),
        )
        .await
    }

    async fn acting(&self, name: &str) -> Acting {
        Acting {
            user: acting_user(&self.store, name).await.unwrap(),
            via: "test".into(),
        }
    }

    fn draft(&self, target: &str) -> Draft {
        Draft {
            vendor: None,
            engineers: vec!["tanaka".into(), "suzuki".into()],
            targets: vec![target.into()],
            protocols: vec![Protocol::Ssh],
            purpose: "月次パッチ".into(),
            work: "更新と再起動".into(),
            window_start: at(23, 10),
            window_end: at(23, 12),
            urgency: Urgency::Normal,
        }
    }

    async fn filed(&self, target: &str, now: DateTime<Utc>) -> WorkRequest {
        let tanaka = self.acting("tanaka").await;
        let r = file(
            &self.store,
            &self.policies,
            &tanaka,
            self.draft(target),
            now,
        )
        .await
        .unwrap();
        submit(&self.store, &self.policies, &tanaka, &r.number, now)
            .await
            .unwrap()
    }
}

fn invalid(r: Result<WorkRequest, ProcedureError>) -> String {
    match r {
        Err(ProcedureError::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn filing_checks_people_targets_and_window() {
    let f = fixture().await;
    let tanaka = f.acting("tanaka").await;
    let now = at(20, 9);
    let go = |d: Draft, who: Acting| {
        let (store, policies) = (f.store.clone(), f.policies.clone());
        async move { file(&store, &policies, &who, d, now).await }
    };
    let mut d = f.draft("fa-db01");
    d.engineers.push("ito".into());
    assert!(invalid(go(d, tanaka.clone()).await).contains("ito is not an engineer of vendor acme"));
    let mut d = f.draft("fa-db01");
    d.targets.push("kk-db01".into());
    assert!(invalid(go(d, tanaka.clone()).await).contains("one request covers one system"));
    let mut d = f.draft("nope");
    d.targets = vec!["nope".into()];
    assert!(invalid(go(d, tanaka.clone()).await).contains("no target"));
    let mut d = f.draft("fa-db01");
    d.protocols = vec![Protocol::Rdp];
    assert!(invalid(go(d, tanaka.clone()).await).contains("offers no rdp"));
    let mut d = f.draft("fa-db01");
    d.window_end = d.window_start + chrono::TimeDelta::days(32);
    assert!(invalid(go(d, tanaka.clone()).await).contains("longer than 31 days"));
    let mut d = f.draft("fa-db01");
    d.window_end = d.window_start;
    assert!(invalid(go(d, tanaka.clone()).await).contains("ends before it starts"));
    let mut d = f.draft("fa-db01");
    d.purpose = " ".into();
    assert!(invalid(go(d, tanaka.clone()).await).contains("目的"));
    // An auditor files for nobody; an engineer of another vendor neither.
    let audit1 = f.acting("audit1").await;
    let mut d = f.draft("fa-db01");
    d.vendor = Some("acme".into());
    assert!(invalid(go(d, audit1).await).contains("only its engineers"));
    // Nothing was stored by the refusals.
    assert!(
        f.store
            .work_requests(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    // A good one: the requester's vendor, engineers sorted, audited.
    let r = go(f.draft("fa-db01"), tanaka).await.unwrap();
    assert_eq!((r.vendor.as_str(), r.system.as_str()), ("acme", "fa"));
    assert_eq!(r.engineers, ["suzuki", "tanaka"]);
    let events = f
        .store
        .audit_query(&AuditFilter {
            kinds: vec![crate::store::AuditKind::RequestFiled],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.data["request"], r.number.as_str());
    assert_eq!(events[0].event.data["via"], "test");
    // A person who is not a user cannot act.
    assert!(matches!(
        acting_user(&f.store, "ghost").await,
        Err(ProcedureError::Actor(_))
    ));
}

#[tokio::test]
async fn a_new_revision_supersedes_the_one_in_force_only_when_submitted() {
    let f = fixture().await;
    let now = at(20, 9);
    let r = f.filed("fa-db01", now).await;
    let yoshida = f.acting("yoshida").await;
    let r = approve(&f.store, &f.policies, &yoshida, &r.number, "", TZ, now)
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Approved, "default route: one step");
    let tanaka = f.acting("tanaka").await;
    let mut d = f.draft("fa-db01");
    d.window_end = at(23, 13);
    let r2 = revise(&f.store, &f.policies, &tanaka, &r.number, d, now)
        .await
        .unwrap();
    assert_eq!((r2.revision, r2.state), (2, RequestState::Draft));
    // The approved revision 1 still opens its window.
    let open = f.store.open_work_requests_for("tanaka", now).await.unwrap();
    assert_eq!(approved_windows(&open).len(), 1);
    // Only the requester revises.
    let suzuki = f.acting("suzuki").await;
    assert!(
        revise(
            &f.store,
            &f.policies,
            &suzuki,
            &r.number,
            f.draft("fa-db01"),
            now
        )
        .await
        .is_err()
    );
    submit(&f.store, &f.policies, &tanaka, &r.number, now)
        .await
        .unwrap();
    let r1 = f
        .store
        .require_work_request(&r.number, Some(1))
        .await
        .unwrap();
    assert_eq!(r1.state, RequestState::Withdrawn);
    assert_eq!(r1.state_reason, "superseded by revision 2");
    assert!(
        f.store
            .open_work_requests_for("tanaka", now)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn late_approval_opens_the_rest_and_revocation_and_expiry_close() {
    let f = fixture().await;
    let r = f.filed("kk-db01", at(20, 9)).await;
    let yoshida = f.acting("yoshida").await;
    let kimura = f.acting("kimura").await;
    let late = at(23, 11);
    approve(&f.store, &f.policies, &yoshida, &r.number, "ok", TZ, late)
        .await
        .unwrap();
    let r = approve(&f.store, &f.policies, &kimura, &r.number, "", TZ, late)
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Approved);
    assert_eq!(r.approved_from, Some(late));
    let windows = approved_windows(
        &f.store
            .open_work_requests_for("suzuki", late)
            .await
            .unwrap(),
    );
    assert_eq!(windows.len(), 1);
    assert_eq!((windows[0].from, windows[0].until), (late, at(23, 12)));
    // Revoking needs a reason, and an approver.
    assert!(matches!(
        revoke(&f.store, &f.policies, &kimura, &r.number, " ", late).await,
        Err(ProcedureError::Invalid(_))
    ));
    let tanaka = f.acting("tanaka").await;
    assert!(matches!(
        revoke(&f.store, &f.policies, &tanaka, &r.number, "no", late).await,
        Err(ProcedureError::Refused(_))
    ));
    let (r, stopped) = revoke(&f.store, &f.policies, &kimura, &r.number, "中止", late)
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Revoked);
    assert!(stopped.is_empty());
    assert!(
        f.store
            .open_work_requests_for("suzuki", late)
            .await
            .unwrap()
            .is_empty()
    );

    // Another, approved, expires once its window is over.
    let r = f.filed("kk-db01", at(20, 9)).await;
    approve(
        &f.store,
        &f.policies,
        &yoshida,
        &r.number,
        "",
        TZ,
        at(20, 9),
    )
    .await
    .unwrap();
    approve(&f.store, &f.policies, &kimura, &r.number, "", TZ, at(20, 9))
        .await
        .unwrap();
    assert_eq!(expire_due(&f.store, at(23, 11)).await.unwrap(), 0);
    assert_eq!(expire_due(&f.store, at(23, 12)).await.unwrap(), 1);
    let r = f.store.require_work_request(&r.number, None).await.unwrap();
    assert_eq!(
        (r.state, r.state_by.as_str()),
        (RequestState::Expired, "sekisho")
    );
    // Approving after the end is refused.
    let r = f.filed("kk-db01", at(20, 9)).await;
    assert!(matches!(
        approve(
            &f.store,
            &f.policies,
            &yoshida,
            &r.number,
            "",
            TZ,
            at(23, 12)
        )
        .await,
        Err(ProcedureError::Refused(_))
    ));
}

#[tokio::test]
async fn approval_needs_the_contract_copy_and_every_pledge_on_file() {
    let f = bare_fixture().await;
    let now = at(20, 9);
    let r = f.filed("fa-db01", now).await;
    let yoshida = f.acting("yoshida").await;
    let refused = |res: Result<WorkRequest, ProcedureError>| match res {
        Err(ProcedureError::MissingDocuments { reasons, .. }) => reasons,
        other => panic!("expected MissingDocuments, got {other:?}"),
    };
    let reasons = refused(approve(&f.store, &f.policies, &yoshida, &r.number, "", TZ, now).await);
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].contains("no maintenance contract copy"),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|m| m.contains("suzuki has no signed pledge"))
    );
    assert!(
        reasons
            .iter()
            .any(|m| m.contains("tanaka has no signed pledge"))
    );

    // A contract that ends the day before the window (2026-11-23 JST).
    f.file(
        DocumentKind::Contract,
        "acme",
        "2026-04-01",
        "2026-11-22",
        b"%PDF-1.7 old",
    )
    .await
    .unwrap();
    f.file(
        DocumentKind::Pledge,
        "tanaka",
        "2026-04-01",
        "2027-03-31",
        b"\x89PNG\r\n\x1a\n",
    )
    .await
    .unwrap();
    let reasons = refused(approve(&f.store, &f.policies, &yoshida, &r.number, "", TZ, now).await);
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("ends on 2026-11-22"), "{reasons:?}");
    assert!(reasons[1].contains("suzuki"), "{reasons:?}");
    // Nothing moved, nothing approved.
    let still = f.store.require_work_request(&r.number, None).await.unwrap();
    assert_eq!(
        (still.state, still.approvals.len()),
        (RequestState::Submitted, 0)
    );

    // A pledge valid from the window's day on is enough; the renewed contract too.
    f.file(
        DocumentKind::Pledge,
        "suzuki",
        "2026-11-23",
        "2026-11-23",
        b"\xFF\xD8\xFFjpeg",
    )
    .await
    .unwrap();
    f.file(
        DocumentKind::Contract,
        "acme",
        "2026-11-01",
        "2027-10-31",
        b"%PDF-1.7 new",
    )
    .await
    .unwrap();
    let r = approve(&f.store, &f.policies, &yoshida, &r.number, "", TZ, now)
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Approved);
}

#[tokio::test]
async fn documents_are_checked_by_content_size_and_dates() {
    let f = bare_fixture().await;
    let bad = |r: Result<crate::store::DocumentRecord, ProcedureError>| match r {
        Err(ProcedureError::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let m = bad(f
        .file(
            DocumentKind::Pledge,
            "tanaka",
            "2026-04-01",
            "2027-03-31",
            b"MZ\x90 exe",
        )
        .await);
    assert!(m.contains("neither a PDF nor an image"), "{m}");
    let big = [
        b"%PDF-".as_slice(),
        &vec![b' '; documents::MAX_DOCUMENT_SIZE],
    ]
    .concat();
    let m = bad(f
        .file(
            DocumentKind::Pledge,
            "tanaka",
            "2026-04-01",
            "2027-03-31",
            &big,
        )
        .await);
    assert!(m.contains("limited to 10 MiB"), "{m}");
    let m = bad(f
        .file(
            DocumentKind::Pledge,
            "tanaka",
            "2027-04-01",
            "2027-03-31",
            b"%PDF-",
        )
        .await);
    assert!(m.contains("wrong way round"), "{m}");
    let m = bad(f
        .file(
            DocumentKind::Pledge,
            "yoshida",
            "2026-04-01",
            "2027-03-31",
            b"%PDF-",
        )
        .await);
    assert!(m.contains("not an engineer"), "{m}");
    let m = bad(f
        .file(
            DocumentKind::Contract,
            "nobody",
            "2026-04-01",
            "2027-03-31",
            b"%PDF-",
        )
        .await);
    assert!(m.contains("no vendor nobody"), "{m}");
    // A good one is stored whole, with its SHA-256, and audited.
    let d = f
        .file(
            DocumentKind::Pledge,
            "tanaka",
            "2026-04-01",
            "2027-03-31",
            b"%PDF-1.4 x",
        )
        .await
        .unwrap();
    assert_eq!(
        d.sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"%PDF-1.4 x"))
    );
    assert_eq!(
        (d.media_type.as_str(), d.size, d.vendor.as_deref()),
        ("application/pdf", 10, Some("acme"))
    );
    let clerk = documents::Clerk {
        name: "root".into(),
        via: "test".into(),
    };
    let (_, content) = documents::read(&f.store, &clerk, d.id).await.unwrap();
    assert_eq!(content, b"%PDF-1.4 x");
    for kind in [
        crate::store::AuditKind::DocumentAdded,
        crate::store::AuditKind::DocumentRead,
    ] {
        let events = f
            .store
            .audit_query(&AuditFilter {
                kinds: vec![kind],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(events.len(), 1, "{kind}");
        assert_eq!(events[0].event.data["document"], d.id.to_string());
    }
}

#[tokio::test]
async fn the_work_report_is_written_after_the_work_and_signed_off_once() {
    let f = fixture().await;
    let r = f.filed("fa-db01", at(20, 9)).await;
    let (tanaka, suzuki, ito, yoshida) = (
        f.acting("tanaka").await,
        f.acting("suzuki").await,
        f.acting("ito").await,
        f.acting("yoshida").await,
    );
    let done = || report::Completion {
        result: WorkResult::Completed,
        summary: "パッチ適用完了".into(),
        follow_ups: "翌月に再確認".into(),
    };
    let refused = |res: Result<crate::store::WorkReportRecord, ProcedureError>| match res {
        Err(ProcedureError::Refused(m)) => m.0,
        other => panic!("expected Refused, got {other:?}"),
    };
    // Not approved: nothing to report.
    let m = refused(report::complete(&f.store, &tanaka, &r.number, done(), at(23, 13)).await);
    assert!(m.contains("never approved"), "{m}");
    approve(
        &f.store,
        &f.policies,
        &yoshida,
        &r.number,
        "",
        TZ,
        at(20, 9),
    )
    .await
    .unwrap();
    // During the window: refused, until it is closed or over.
    let m = refused(report::complete(&f.store, &tanaka, &r.number, done(), at(23, 11)).await);
    assert!(m.contains("close it"), "{m}");
    // Someone the request does not name: refused.
    let m = refused(report::complete(&f.store, &ito, &r.number, done(), at(23, 12)).await);
    assert!(m.contains("only the requester"), "{m}");
    // No sign-off before the engineer wrote it.
    let m =
        refused(report::sign_off(&f.store, &f.policies, &yoshida, &r.number, "", at(23, 12)).await);
    assert!(m.contains("not written"), "{m}");
    // At the window's end: written, then rewritten by the other engineer.
    report::complete(&f.store, &tanaka, &r.number, done(), at(23, 12))
        .await
        .unwrap();
    let mut c = done();
    c.result = WorkResult::Incomplete;
    let w = report::complete(&f.store, &suzuki, &r.number, c, at(23, 13))
        .await
        .unwrap();
    assert_eq!(
        (w.result, w.written_by.as_str()),
        (WorkResult::Incomplete, "suzuki")
    );
    // Only an approver of the system who did not request or do the work signs off.
    let m =
        refused(report::sign_off(&f.store, &f.policies, &tanaka, &r.number, "", at(23, 14)).await);
    assert!(m.contains("only an approver"), "{m}");
    let s = report::sign_off(
        &f.store,
        &f.policies,
        &yoshida,
        &r.number,
        "確認済",
        at(23, 14),
    )
    .await
    .unwrap();
    assert_eq!(
        (s.signed_off_by.as_deref(), s.signed_off_at),
        (Some("yoshida"), Some(at(23, 14)))
    );
    // Final: no rewrite, no second sign-off.
    let m = refused(report::complete(&f.store, &tanaka, &r.number, done(), at(23, 15)).await);
    assert!(m.contains("signed off"), "{m}");
    let m =
        refused(report::sign_off(&f.store, &f.policies, &yoshida, &r.number, "", at(23, 15)).await);
    assert!(m.contains("already signed off by yoshida"), "{m}");
    let kept = f.store.work_report(&r.number).await.unwrap().unwrap();
    assert_eq!(
        (kept.result, kept.summary.as_str()),
        (WorkResult::Incomplete, "パッチ適用完了")
    );
    for (kind, n) in [
        (crate::store::AuditKind::ReportWritten, 2),
        (crate::store::AuditKind::ReportSignedOff, 1),
    ] {
        let events = f
            .store
            .audit_query(&AuditFilter {
                kinds: vec![kind],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(events.len(), n, "{kind}");
        assert_eq!(events[0].event.data["request"], r.number.as_str());
    }
}

#[tokio::test]
async fn an_engineer_gets_their_own_ticket_only_inside_the_approved_window() {
    let f = fixture().await;
    let tanaka = f.acting("tanaka").await;
    let mut d = f.draft("fa-win01");
    d.protocols = vec![Protocol::Rdp];
    let r = file(&f.store, &f.policies, &tanaka, d, at(20, 9))
        .await
        .unwrap();
    submit(&f.store, &f.policies, &tanaka, &r.number, at(20, 9))
        .await
        .unwrap();
    let yoshida = f.acting("yoshida").await;
    approve(
        &f.store,
        &f.policies,
        &yoshida,
        &r.number,
        "",
        TZ,
        at(20, 9),
    )
    .await
    .unwrap();
    let key = crate::auth::secrets::MasterKey::from_bytes([7; 32]);
    let lifetime = std::time::Duration::from_secs(300);
    let get = |who: Acting, target: &'static str, p: Protocol, now: DateTime<Utc>| {
        let (store, policies, key, number) =
            (f.store.clone(), f.policies.clone(), &key, r.number.clone());
        async move {
            ticket::issue_own(
                &store, &policies, key, lifetime, &who, &number, target, p, now,
            )
            .await
        }
    };
    let refused = |res: Result<crate::auth::tickets::IssuedTicket, ProcedureError>| match res {
        Err(ProcedureError::Refused(m)) => m.0,
        other => panic!("expected Refused, got {:?}", other.map(|t| t.target)),
    };
    let m = refused(get(tanaka.clone(), "fa-win01", Protocol::Rdp, at(23, 9)).await);
    assert!(m.contains("opens at"), "{m}");
    let m = refused(get(f.acting("ito").await, "fa-win01", Protocol::Rdp, at(23, 11)).await);
    assert!(m.contains("not an approved request naming ito"), "{m}");
    let m = refused(get(tanaka.clone(), "fa-db01", Protocol::Rdp, at(23, 11)).await);
    assert!(m.contains("does not name target fa-db01"), "{m}");
    let m = refused(get(tanaka.clone(), "fa-win01", Protocol::Ssh, at(23, 11)).await);
    assert!(m.contains("does not allow ssh"), "{m}");
    let m = refused(get(yoshida.clone(), "fa-win01", Protocol::Rdp, at(23, 11)).await);
    assert!(m.contains("not an engineer"), "{m}");
    // Two minutes before the window ends: the ticket lives two minutes, not five.
    let before = Utc::now();
    let t = get(
        tanaka.clone(),
        "fa-win01",
        Protocol::Rdp,
        at(23, 12) - chrono::TimeDelta::minutes(2),
    )
    .await
    .unwrap();
    assert!(!t.text.is_empty());
    assert_eq!((t.user.as_str(), t.target.as_str()), ("tanaka", "fa-win01"));
    let life = t.expires_at - before;
    assert!(
        life <= chrono::TimeDelta::seconds(121) && life > chrono::TimeDelta::seconds(100),
        "{life}"
    );
    let events = f
        .store
        .audit_query(&AuditFilter {
            kinds: vec![crate::store::AuditKind::RequestTicketIssued],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.data["request"], r.number.as_str());
    // After the window: nothing.
    assert!(
        get(tanaka, "fa-win01", Protocol::Rdp, at(23, 12))
            .await
            .is_err()
    );
}

#[test]
fn the_rdp_file_names_the_bastion_the_person_and_nla() {
    let f = ticket::rdp_file("bastion.example.lg.jp", 3389, "tanaka", "fa-win01");
    for line in [
        "full address:s:bastion.example.lg.jp:3389\r\n",
        "username:s:tanaka@fa-win01\r\n",
        "enablecredsspsupport:i:1\r\n",
        "redirectclipboard:i:0\r\n",
        "redirectdrives:i:0\r\n",
    ] {
        assert!(f.contains(line), "{line:?} missing: {f}");
    }
    assert!(!f.contains("password"), "no secret in the file");
}
