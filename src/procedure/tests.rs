//! The procedure operations against a real SQLite store: what is checked
//! when a request is filed, revisions superseding each other, late
//! approval, revocation and expiry, and the audit events they leave.

use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::store::{AuditFilter, NewUserRow};

const FA: &str = r#"
[system]
name = "fa"
zone = "lgwan"

[[target]]
name = "fa-db01"
address = "10.20.0.11"
kind = "physical"
ssh = { account = "maint", credential = "c", host_key = "SHA256:zwxFZkDJRdBjQcMdVAtmpgnwJu8v91OmlxCHrsDj4L8" }

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

async fn fixture() -> Fixture {
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
    let r = approve(&f.store, &f.policies, &yoshida, &r.number, "", now)
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
    approve(&f.store, &f.policies, &yoshida, &r.number, "ok", late)
        .await
        .unwrap();
    let r = approve(&f.store, &f.policies, &kimura, &r.number, "", late)
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
    approve(&f.store, &f.policies, &yoshida, &r.number, "", at(20, 9))
        .await
        .unwrap();
    approve(&f.store, &f.policies, &kimura, &r.number, "", at(20, 9))
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
        approve(&f.store, &f.policies, &yoshida, &r.number, "", at(23, 12)).await,
        Err(ProcedureError::Refused(_))
    ));
}
