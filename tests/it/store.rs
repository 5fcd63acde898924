//! The store against both backends: the same checks run on SQLite (a file
//! in a temporary directory) and on a real PostgreSQL server this test
//! starts itself (Debian package `postgresql`).

use crate::support::postgres;

use std::net::IpAddr;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use sekisho::auth::secrets::{MasterKey, SecretStore};
use sekisho::auth::{self, Authenticator, Role, keys, tickets, totp};
use sekisho::config::AuthLimits;
use sekisho::policy::Protocol;
use sekisho::procedure::state::{RequestState, StepApproval, Urgency};
use sekisho::store::{
    AuditEvent, AuditFilter, AuditKind, Backend, EndKind, NewSession, NewWorkRequest, SessionEnd,
    SessionFilter, SessionStatus, Store, StoreError, WorkRequestFilter,
};
use uuid::Uuid;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICDFvN+9T1TvdjXp//H6lY7XqGEjCmiykhfP/MF4ElS3 tanaka@acme-pc01";
const SECRET_VALUE: &str = "Tr0ub4dor&3-plaintext-marker";

fn limits() -> AuthLimits {
    AuthLimits {
        signin_window: Duration::from_secs(600),
        max_failures: 3,
        lockout: Duration::from_secs(900),
        ticket_lifetime: Duration::from_secs(300),
        failure_delay: Duration::ZERO,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn check_store(url: &str, expected: Backend) -> Store {
    let store = Store::connect(url).await.expect("connect and migrate");
    assert_eq!(store.backend(), expected);
    // Connecting again (a second process, or a restart) finds the schema current.
    let again = Store::connect(url).await.expect("second connect");
    again.close().await;

    vendors_and_users(&store).await;
    keys_and_signin(&store).await;
    tickets_once(&store).await;
    secrets(&store).await;
    audit_append_only(&store).await;
    sessions(&store).await;
    work_requests(&store).await;
    reports_and_documents(&store).await;
    reconnect_cookies(&store, url).await;
    store
}

fn ended(kind: EndKind) -> SessionEnd {
    SessionEnd {
        status: SessionStatus::Ended,
        kind: Some(kind),
        reason: "test".into(),
        ended_at: Utc::now(),
        recording_size: None,
        recording_digest: None,
        recording_status: None,
    }
}

/// RDP auto-reconnect cookies as several nodes share them: only the
/// verifier's hash is kept; a cookie is spent once even when two nodes
/// spend it at the same moment; a lost connection keeps it usable for the
/// grace, any other end spends it; expired and spent rows are purged.
async fn reconnect_cookies(store: &Store, url: &str) {
    use sekisho::rdp::reconnect::{self, CookieRefusal};
    let node_b = Store::connect(url).await.expect("node B's handle");
    let home = ip("127.0.0.2");
    let grace = Duration::from_secs(120);
    let mut rdp = new_session("node-a", "tanaka");
    rdp.protocol = "rdp".into();
    rdp.client = home;
    store.start_session(&rdp).await.unwrap();
    let now = Utc::now();
    let (cookie, kept) = reconnect::issue(
        reconnect::draw_logon_id(),
        rdp.id,
        "tanaka",
        "fa-app01",
        home,
        now,
    );
    assert!(store.add_reconnect_cookie(&kept).await.unwrap());
    // A logon id already taken, even by another session, is not reused.
    let other = new_session("node-a", "tanaka");
    store.start_session(&other).await.unwrap();
    let (_, clash) = reconnect::issue(kept.logon_id, other.id, "tanaka", "fa-app01", home, now);
    assert!(!store.add_reconnect_cookie(&clash).await.unwrap());
    let rows = node_b.reconnect_cookies_of(rdp.id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].source, home);
    assert_eq!(rows[0].verifier_sha256, kept.verifier_sha256);
    assert_ne!(rows[0].verifier_sha256, hex::encode(cookie.random_bits));

    // The client's connection to node A was lost: usable for the grace.
    let until = reconnect::usable_until_after_end(true, grace, Utc::now());
    store
        .reconnect_session_ended(rdp.id, until, Utc::now())
        .await
        .unwrap();
    store
        .end_session(rdp.id, &ended(EndKind::Closed))
        .await
        .unwrap();
    let answer = ironrdp_pdu::rdp::client_info::ClientAutoReconnect::from_server_cookie(&cookie);
    let presented = reconnect::verifier_sha256(&answer.security_verifier);
    // A wrong verifier spends nothing.
    let mut forged = answer.security_verifier;
    forged[0] ^= 1;
    assert!(
        node_b
            .spend_reconnect_cookie(
                answer.logon_id,
                &reconnect::verifier_sha256(&forged),
                Utc::now()
            )
            .await
            .unwrap()
            .is_none()
    );
    // Nodes A and B are presented the cookie at the same moment: one wins.
    let at = Utc::now();
    let (a, b) = tokio::join!(
        store.spend_reconnect_cookie(answer.logon_id, &presented, at),
        node_b.spend_reconnect_cookie(answer.logon_id, &presented, at),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        a.is_some() != b.is_some(),
        "exactly one node spends it: {a:?} {b:?}"
    );
    let spent = a.or(b).unwrap();
    assert!(!spent.session_live);
    assert_eq!(
        spent.cookie.usable_until.map(|t| t.timestamp_micros()),
        until.map(|t| t.timestamp_micros())
    );
    let resumed = reconnect::decide(&spent, home, Utc::now()).expect("resumes");
    assert_eq!(resumed.session_id, rdp.id);
    assert_eq!(resumed.user, "tanaka");
    assert!(
        node_b
            .spend_reconnect_cookie(answer.logon_id, &presented, Utc::now())
            .await
            .unwrap()
            .is_none(),
        "single use"
    );

    // A cookie presented from another address is spent and refused.
    let mut copied = new_session("node-a", "tanaka");
    copied.protocol = "rdp".into();
    copied.client = home;
    store.start_session(&copied).await.unwrap();
    let (c2, k2) = reconnect::issue(
        reconnect::draw_logon_id(),
        copied.id,
        "tanaka",
        "fa-app01",
        home,
        Utc::now(),
    );
    assert!(store.add_reconnect_cookie(&k2).await.unwrap());
    let v2 = reconnect::verifier_sha256(
        &ironrdp_pdu::rdp::client_info::ClientAutoReconnect::from_server_cookie(&c2)
            .security_verifier,
    );
    let thief = node_b
        .spend_reconnect_cookie(c2.logon_id, &v2, Utc::now())
        .await
        .unwrap()
        .expect("found and spent");
    assert!(thief.session_live, "its session still runs on node A");
    assert_eq!(
        reconnect::decide(&thief, ip("127.0.0.5"), Utc::now()),
        Err(CookieRefusal::OtherAddress)
    );
    assert!(
        store
            .spend_reconnect_cookie(c2.logon_id, &v2, Utc::now())
            .await
            .unwrap()
            .is_none(),
        "burnt: not even its own address gets it now"
    );

    // A session that ends other than by a lost connection spends its cookie.
    let mut closed = new_session("node-a", "tanaka");
    closed.protocol = "rdp".into();
    store.start_session(&closed).await.unwrap();
    let (c3, k3) = reconnect::issue(
        reconnect::draw_logon_id(),
        closed.id,
        "tanaka",
        "fa-app01",
        home,
        Utc::now(),
    );
    assert!(store.add_reconnect_cookie(&k3).await.unwrap());
    store
        .reconnect_session_ended(
            closed.id,
            reconnect::usable_until_after_end(false, grace, Utc::now()),
            Utc::now(),
        )
        .await
        .unwrap();
    let v3 = reconnect::verifier_sha256(
        &ironrdp_pdu::rdp::client_info::ClientAutoReconnect::from_server_cookie(&c3)
            .security_verifier,
    );
    assert!(
        node_b
            .spend_reconnect_cookie(c3.logon_id, &v3, Utc::now())
            .await
            .unwrap()
            .is_none()
    );

    // Purged: spent rows, rows past their grace, and the cookies of
    // sessions that ended without a recorded drop (their node stopped).
    let mut dropped = new_session("node-a", "suzuki");
    dropped.protocol = "rdp".into();
    store.start_session(&dropped).await.unwrap();
    let (_, k4) = reconnect::issue(
        reconnect::draw_logon_id(),
        dropped.id,
        "suzuki",
        "fa-app01",
        home,
        Utc::now(),
    );
    assert!(store.add_reconnect_cookie(&k4).await.unwrap());
    store
        .reconnect_session_ended(
            dropped.id,
            reconnect::usable_until_after_end(true, grace, Utc::now()),
            Utc::now(),
        )
        .await
        .unwrap();
    let mut abandoned = new_session("node-a", "suzuki");
    abandoned.protocol = "rdp".into();
    store.start_session(&abandoned).await.unwrap();
    let (_, k5) = reconnect::issue(
        reconnect::draw_logon_id(),
        abandoned.id,
        "suzuki",
        "fa-app01",
        home,
        Utc::now(),
    );
    assert!(store.add_reconnect_cookie(&k5).await.unwrap());
    store
        .end_session(abandoned.id, &ended(EndKind::Abnormal))
        .await
        .unwrap();
    // rdp, copied and closed are spent; abandoned's session is over.
    assert_eq!(store.purge_reconnect_cookies(Utc::now()).await.unwrap(), 4);
    assert_eq!(
        store.reconnect_cookies_of(dropped.id).await.unwrap().len(),
        1
    );
    let later = Utc::now() + chrono::Duration::seconds(121);
    assert_eq!(store.purge_reconnect_cookies(later).await.unwrap(), 1);
    assert!(
        store
            .reconnect_cookies_of(dropped.id)
            .await
            .unwrap()
            .is_empty()
    );
    node_b.close().await;
}

/// Documents on file (bytes kept exactly) and a work report's result and
/// its one sign-off, on both backends (procedure).
async fn reports_and_documents(store: &Store) {
    use sekisho::store::{DocumentFilter, DocumentKind, NewDocument, WorkReportRecord, WorkResult};
    let content: Vec<u8> = b"%PDF-1.4\n\x00\xff\x80 binary"
        .iter()
        .copied()
        .chain((0..=255u8).cycle().take(70_000))
        .collect();
    let at = Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap();
    let d = store
        .add_document(
            &NewDocument {
                kind: DocumentKind::Pledge,
                vendor: Some("acme".into()),
                user: Some("tanaka".into()),
                valid_from: "2026-04-01".parse().unwrap(),
                valid_until: "2027-03-31".parse().unwrap(),
                file_name: "誓約書.pdf".into(),
                media_type: "application/pdf".into(),
                sha256: "ab".repeat(32),
                content: content.clone(),
                added_by: "root".into(),
            },
            at,
        )
        .await
        .unwrap();
    assert_eq!((d.size, d.added_at), (content.len() as u64, at));
    let (back, bytes) = store.document(d.id).await.unwrap().unwrap();
    assert_eq!(back, d);
    assert_eq!(bytes, content, "the document's bytes come back exactly");
    let listed = store
        .documents(&DocumentFilter {
            kind: Some(DocumentKind::Pledge),
            user: Some("tanaka".into()),
            ..DocumentFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed, vec![d.clone()]);
    assert!(
        store
            .documents(&DocumentFilter {
                kind: Some(DocumentKind::Contract),
                ..DocumentFilter::default()
            })
            .await
            .unwrap()
            .is_empty()
    );

    let mut r = WorkReportRecord {
        number: "R-2026-0900".into(),
        revision: 2,
        result: WorkResult::Completed,
        summary: "完了".into(),
        follow_ups: String::new(),
        written_by: "tanaka".into(),
        written_at: at,
        signed_off_by: None,
        signed_off_at: None,
        sign_off_comment: String::new(),
    };
    store.write_work_report(&r).await.unwrap();
    r.result = WorkResult::Aborted;
    store.write_work_report(&r).await.unwrap();
    assert_eq!(
        store.work_report(&r.number).await.unwrap().unwrap().result,
        WorkResult::Aborted
    );
    store
        .sign_off_work_report(&r.number, "yoshida", "ok", at)
        .await
        .unwrap();
    assert!(matches!(
        store
            .sign_off_work_report(&r.number, "kimura", "", at)
            .await,
        Err(StoreError::ReportSignedOff(_))
    ));
    assert!(matches!(
        store.write_work_report(&r).await,
        Err(StoreError::ReportSignedOff(_))
    ));
    let kept = store.work_report(&r.number).await.unwrap().unwrap();
    assert_eq!(
        (kept.signed_off_by.as_deref(), kept.signed_off_at),
        (Some("yoshida"), Some(at))
    );
}

async fn vendors_and_users(store: &Store) {
    store.add_vendor("acme", None).await.unwrap();
    store.add_vendor("subco", Some("acme")).await.unwrap();
    store.add_vendor("subsub", Some("subco")).await.unwrap();
    let e = store.add_vendor("acme", None).await.unwrap_err();
    assert_eq!(e.to_string(), "vendor acme already exists");
    let e = store.add_vendor("x", Some("ghost")).await.unwrap_err();
    assert_eq!(e.to_string(), "no vendor ghost");
    assert!(matches!(
        store.add_vendor("self", Some("self")).await,
        Err(StoreError::VendorCycle { .. })
    ));
    assert_eq!(
        store.vendor_chain("subsub").await.unwrap(),
        ["subsub", "subco", "acme"]
    );
    assert_eq!(store.vendor_chain("acme").await.unwrap(), ["acme"]);
    // acme under subsub would close a loop: refused.
    let e = store
        .set_vendor_parent("acme", Some("subsub"))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::VendorCycle { .. }), "{e}");
    assert_eq!(store.vendors().await.unwrap().len(), 3);

    auth::create_user(
        store,
        &master(),
        "tanaka",
        Role::Engineer,
        Some("subco"),
        Some("pw-tanaka"),
    )
    .await
    .unwrap();
    auth::create_user(store, &master(), "audit1", Role::Auditor, None, None)
        .await
        .unwrap();
    let e = auth::create_user(
        store,
        &master(),
        "tanaka",
        Role::Engineer,
        Some("acme"),
        Some("x"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.to_string(), "user tanaka already exists");

    let u = store.user("tanaka").await.unwrap().unwrap();
    assert_eq!(u.role, Role::Engineer);
    assert_eq!(u.vendor.as_deref(), Some("subco"));
    assert_eq!(u.vendor_chain, ["subco", "acme"]);
    assert!(u.enabled);
    assert!(u.locked_until.is_none());
    assert!(store.user("ghost").await.unwrap().is_none());

    store.set_user_enabled("tanaka", false).await.unwrap();
    assert!(!store.user("tanaka").await.unwrap().unwrap().enabled);
    store.set_user_enabled("tanaka", true).await.unwrap();
    assert!(matches!(
        store.set_user_enabled("ghost", true).await,
        Err(StoreError::NoUser(_))
    ));

    let list = store.users().await.unwrap();
    let names: Vec<_> = list.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["audit1", "tanaka"]);
}

/// The deployment's master key (seals TOTP secrets and RDP tickets).
fn master() -> MasterKey {
    MasterKey::from_bytes([11; 32])
}

async fn keys_and_signin(store: &Store) {
    let k = keys::add_key(store, "tanaka", KEY).await.unwrap();
    assert_eq!(
        k.fingerprint,
        "SHA256:5plwq2PLBTa5sQbssueIvpF9otIHPAhavXbaJVwRm5Q"
    );
    assert!(matches!(
        keys::add_key(store, "tanaka", KEY).await,
        Err(auth::AuthError::Store(StoreError::KeyExists { .. }))
    ));
    assert_eq!(store.users().await.unwrap()[1].keys, 1);

    let a = Authenticator::new(store.clone(), limits(), master());
    let pk = russh::keys::PublicKey::from_openssh(KEY).unwrap();
    let src = ip("127.0.0.5");
    a.check_public_key("tanaka", &pk, src).await.unwrap();
    a.check_password("tanaka", "pw-tanaka", src).await.unwrap();

    // TOTP: accepted once; the same code is refused afterwards.
    // The stored secret is not readable from outside: learn it the way a
    // person does, from a reset.
    let (b32, uri) = auth::reset_totp(store, &master(), "tanaka", "admin-op")
        .await
        .unwrap();
    assert!(uri.contains(&b32));
    let key = totp::decode_secret(&b32).unwrap();
    let code = totp::code_for_step(&key, totp::step_at(Utc::now().timestamp()), 6).unwrap();
    assert!(!a.window_open("tanaka", src).await);
    a.check_totp("tanaka", &code, src).await.unwrap();
    assert!(
        a.check_totp("tanaka", &code, src).await.is_err(),
        "replayed code"
    );
    assert!(
        a.window_open("tanaka", src).await,
        "window opened by the code"
    );
    assert!(
        !a.window_open("tanaka", ip("127.0.0.6")).await,
        "only for that address"
    );

    // Lockout after three failures; enable clears it.
    for _ in 0..3 {
        assert!(a.check_password("tanaka", "wrong", src).await.is_err());
    }
    let u = store.user("tanaka").await.unwrap().unwrap();
    assert!(u.locked_at(Utc::now()));
    assert!(a.check_password("tanaka", "pw-tanaka", src).await.is_err());
    assert!(
        !a.window_open("tanaka", src).await,
        "a lockout closes windows"
    );
    store.set_user_enabled("tanaka", true).await.unwrap();
    a.check_password("tanaka", "pw-tanaka", src).await.unwrap();
    auth::set_password(store, "tanaka", "new-pw", "admin-op")
        .await
        .unwrap();
    assert!(a.check_password("tanaka", "pw-tanaka", src).await.is_err());
    a.check_password("tanaka", "new-pw", src).await.unwrap();

    store.remove_key("tanaka", &k.fingerprint).await.unwrap();
    assert!(a.check_public_key("tanaka", &pk, src).await.is_err());
    assert!(matches!(
        store.remove_key("tanaka", &k.fingerprint).await,
        Err(StoreError::NoKey { .. })
    ));
}

async fn tickets_once(store: &Store) {
    let a = Authenticator::new(store.clone(), limits(), master());
    let key = MasterKey::from_bytes([11; 32]);
    let issue = |target: &'static str, protocol: &'static str| {
        let key = &key;
        async move {
            tickets::issue(
                store,
                key,
                Duration::from_secs(300),
                "tanaka",
                target,
                protocol,
                "admin-op",
            )
            .await
            .unwrap()
        }
    };
    let t = issue("fa-db01", "rdp").await;
    // An SSH ticket is never kept readable.
    let ssh = issue("fa-db01", "ssh").await;
    assert_eq!(store.sealed_ticket_count().await.unwrap(), 1);
    // NLA reads back the RDP ticket, for its person and target only.
    let read = |target: &'static str| {
        let key = &key;
        async move {
            tickets::readable_rdp_ticket(store, key, "tanaka", target)
                .await
                .unwrap()
        }
    };
    assert_eq!(read("fa-db01").await.as_deref(), Some(&*t.text));
    assert!(read("fa-app01").await.is_none());
    assert!(
        tickets::readable_rdp_ticket(store, &key, "suzuki", "fa-db01")
            .await
            .unwrap()
            .is_none()
    );
    // The newest of two live tickets.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let newer = issue("fa-db01", "rdp").await;
    assert_eq!(read("fa-db01").await.as_deref(), Some(&*newer.text));

    let src = ip("127.0.0.7");
    assert!(
        a.redeem_ticket(
            "tanaka",
            &t.text,
            "fa-app01",
            sekisho::policy::Protocol::Rdp,
            src
        )
        .await
        .is_err()
    );
    a.redeem_ticket(
        "tanaka",
        &t.text,
        "fa-db01",
        sekisho::policy::Protocol::Rdp,
        src,
    )
    .await
    .unwrap();
    assert!(
        a.redeem_ticket(
            "tanaka",
            &t.text,
            "fa-db01",
            sekisho::policy::Protocol::Rdp,
            src
        )
        .await
        .is_err()
    );
    // Using a ticket drops its sealed text at once.
    a.redeem_ticket(
        "tanaka",
        &newer.text,
        "fa-db01",
        sekisho::policy::Protocol::Rdp,
        src,
    )
    .await
    .unwrap();
    assert!(read("fa-db01").await.is_none());
    assert_eq!(store.sealed_ticket_count().await.unwrap(), 0);
    assert!(!ssh.text.is_empty());
    assert_eq!(
        store
            .purge_tickets(Utc::now() + chrono::Duration::hours(1))
            .await
            .unwrap(),
        3
    );
}

async fn secrets(store: &Store) {
    let s = SecretStore::new(store.clone(), MasterKey::from_bytes([42; 32]));
    s.set("fa-db01-maint", SECRET_VALUE.as_bytes())
        .await
        .unwrap();
    s.set("fa-db01-admin", b"other").await.unwrap();
    assert_eq!(
        s.get("fa-db01-maint").await.unwrap().unwrap().as_slice(),
        SECRET_VALUE.as_bytes()
    );
    s.set("fa-db01-maint", b"rotated").await.unwrap();
    assert_eq!(
        s.get("fa-db01-maint").await.unwrap().unwrap().as_slice(),
        b"rotated"
    );
    s.set("fa-db01-old", SECRET_VALUE.as_bytes()).await.unwrap();
    assert!(s.get("nope").await.unwrap().is_none());
    let names: Vec<_> = s
        .names()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["fa-db01-admin", "fa-db01-maint", "fa-db01-old"]);

    // Another master key cannot read them.
    let wrong = SecretStore::new(store.clone(), MasterKey::from_bytes([7; 32]));
    assert!(wrong.get("fa-db01-admin").await.is_err());

    // Swapping two stored values between names is detected (AAD = name).
    let a_row = store.secret_row("fa-db01-admin").await.unwrap().unwrap();
    store.put_secret("fa-db01-maint", &a_row).await.unwrap();
    assert!(s.get("fa-db01-maint").await.is_err());

    // The ciphertext holds no plaintext.
    let row = store.secret_row("fa-db01-old").await.unwrap().unwrap();
    assert!(
        !row.ciphertext
            .windows(SECRET_VALUE.len())
            .any(|w| w == SECRET_VALUE.as_bytes())
    );

    s.remove("fa-db01-admin").await.unwrap();
    assert!(matches!(
        s.remove("fa-db01-admin").await,
        Err(sekisho::auth::secrets::SecretError::Store(
            StoreError::NoSecret(_)
        ))
    ));
}

async fn audit_append_only(store: &Store) {
    let sid = Uuid::new_v4();
    let t0 = Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).single().unwrap();
    store
        .audit_at(
            &AuditEvent::new(AuditKind::Deny, "outside contract hours")
                .user("tanaka")
                .target("fa-db01")
                .protocol("ssh")
                .session(sid)
                .source(ip("127.0.0.9"))
                .with("reason", "hours"),
            t0,
        )
        .await
        .unwrap();
    let got = store
        .audit_query(&AuditFilter {
            kinds: vec![AuditKind::Deny],
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.at, t0);
    assert_eq!(r.event.session, Some(sid));
    assert_eq!(r.event.source, Some(ip("127.0.0.9")));
    assert_eq!(r.event.data["reason"], "hours");

    // Filters: user, target, since, session, several kinds, limit.
    let by_target = store
        .audit_query(&AuditFilter {
            target: Some("fa-db01".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(
        by_target
            .iter()
            .all(|r| r.event.target.as_deref() == Some("fa-db01"))
    );
    assert!(by_target.len() >= 2, "the deny and the ticket events");
    let since = store
        .audit_query(&AuditFilter {
            since: Some(t0 + chrono::Duration::seconds(1)),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(since.iter().all(|r| r.event.kind != AuditKind::Deny));
    let by_session = store
        .audit_query(&AuditFilter {
            session: Some(sid),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(by_session.len(), 1);
    let both = store
        .audit_query(&AuditFilter {
            user: Some("tanaka".into()),
            kinds: vec![AuditKind::SigninSuccess, AuditKind::SigninFailure],
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let methods: std::collections::BTreeSet<_> = both
        .iter()
        .filter_map(|r| r.event.data["method"].as_str())
        .collect();
    for m in ["password", "publickey", "totp", "window", "ticket"] {
        assert!(methods.contains(m), "method {m} audited: {methods:?}");
    }
    assert!(
        both.iter()
            .any(|r| r.event.kind == AuditKind::SigninFailure)
    );
    let all = store.audit_query(&AuditFilter::default()).await.unwrap();
    let last2 = store
        .audit_query(&AuditFilter {
            limit: Some(2),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(last2.len(), 2);
    assert_eq!(last2[1].id, all[all.len() - 1].id, "newest last");
    assert!(last2[0].id < last2[1].id);
    assert!(all.iter().any(|r| r.event.kind == AuditKind::Lockout));
    assert!(
        all.iter()
            .filter(|r| r.event.kind == AuditKind::AdminChange)
            .count()
            >= 4
    );
    // Nothing written to the audit log holds a password, ticket or secret.
    let dump = serde_json::to_string(&all).unwrap();
    for secret in ["pw-tanaka", "new-pw", SECRET_VALUE] {
        assert!(!dump.contains(secret), "{secret} leaked into the audit log");
    }

    // Append-only: the database itself refuses changes.
    let before = all.len();
    let upd = sqlx::query("UPDATE audit SET detail = 'rewritten'")
        .execute(store.pool())
        .await;
    assert!(upd.is_err(), "UPDATE on audit must be refused");
    assert!(upd.unwrap_err().to_string().contains("append-only"));
    let del = sqlx::query("DELETE FROM audit").execute(store.pool()).await;
    assert!(del.is_err(), "DELETE on audit must be refused");
    if store.backend() == Backend::Postgres {
        let tr = sqlx::query("TRUNCATE audit").execute(store.pool()).await;
        assert!(tr.is_err(), "TRUNCATE on audit must be refused");
    }
    assert_eq!(
        store
            .audit_query(&AuditFilter::default())
            .await
            .unwrap()
            .len(),
        before
    );
}

fn new_session(node: &str, user: &str) -> NewSession {
    NewSession {
        id: Uuid::new_v4(),
        user: user.into(),
        vendor: Some("subco".into()),
        target: "fa-app01".into(),
        protocol: "ssh".into(),
        client: ip("::ffff:127.0.0.3"),
        parent: None,
        node: node.into(),
        started_at: Utc::now(),
        ends_at: Some(Utc::now() + chrono::Duration::hours(2)),
        recording_path: Some("recordings/2026/04/01/x.skr".into()),
        work_request: None,
    }
}

async fn sessions(store: &Store) {
    let a = new_session("node-a", "tanaka");
    let mut hop = new_session("node-a", "tanaka");
    hop.parent = Some(a.id);
    hop.protocol = "rdp".into();
    let b = new_session("node-b", "tanaka");
    for s in [&a, &hop, &b] {
        store.start_session(s).await.unwrap();
    }
    assert!(matches!(
        store.start_session(&a).await,
        Err(StoreError::SessionExists(_))
    ));

    let got = store.session(hop.id).await.unwrap().unwrap();
    assert_eq!(got.parent, Some(a.id));
    assert_eq!(got.status, SessionStatus::Live);
    assert_eq!(got.client, ip("127.0.0.3"), "canonical address");
    assert_eq!(store.live_sessions().await.unwrap().len(), 3);

    // Kill requests: asked by another process, seen by the serving node only.
    store
        .request_kill(a.id, "admin-op", "suspicious commands")
        .await
        .unwrap();
    store.request_kill(a.id, "admin-2", "again").await.unwrap();
    let pending = store.pending_kills("node-a").await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, a.id);
    assert_eq!(pending[0].by, "admin-op");
    assert_eq!(pending[0].reason, "suspicious commands");
    assert!(store.pending_kills("node-b").await.unwrap().is_empty());
    assert!(matches!(
        store.request_kill(Uuid::new_v4(), "x", "y").await,
        Err(StoreError::NoSession(_))
    ));

    store
        .end_session(
            a.id,
            &SessionEnd {
                status: SessionStatus::Killed,
                kind: Some(EndKind::Killed),
                reason: "killed by admin-op: suspicious commands".into(),
                ended_at: Utc::now(),
                recording_size: Some(12345),
                recording_digest: Some("ab".repeat(32)),
                recording_status: Some("sealed".into()),
            },
        )
        .await
        .unwrap();
    let ended = store.session(a.id).await.unwrap().unwrap();
    assert_eq!(ended.status, SessionStatus::Killed);
    assert_eq!(ended.end_kind, Some(EndKind::Killed));
    assert_eq!(ended.recording_size, Some(12345));
    assert_eq!(
        ended.recording_digest.as_deref(),
        Some("ab".repeat(32).as_str())
    );
    assert!(ended.ended_at.is_some());
    assert!(store.pending_kills("node-a").await.unwrap().is_empty());
    let again = SessionEnd {
        status: SessionStatus::Ended,
        kind: None,
        reason: "x".into(),
        ended_at: Utc::now(),
        recording_size: None,
        recording_digest: None,
        recording_status: None,
    };
    assert!(matches!(
        store.end_session(a.id, &again).await,
        Err(StoreError::SessionNotLive(_))
    ));
    assert!(matches!(
        store.request_kill(a.id, "x", "y").await,
        Err(StoreError::SessionNotLive(_))
    ));

    // A crash of node-a leaves `hop` live; node-a's restart marks it, not node-b's.
    let marked = store.mark_abandoned_live_sessions("node-a").await.unwrap();
    assert_eq!(marked, [hop.id]);
    assert_eq!(
        store.session(hop.id).await.unwrap().unwrap().status,
        SessionStatus::Abnormal
    );
    assert_eq!(
        store.session(b.id).await.unwrap().unwrap().status,
        SessionStatus::Live
    );
    let live = store.live_sessions().await.unwrap();
    assert_eq!(live.iter().map(|s| s.id).collect::<Vec<_>>(), [b.id]);

    let filtered = store
        .sessions(&SessionFilter {
            status: Some(SessionStatus::Abnormal),
            ..SessionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(
        store
            .sessions(&SessionFilter::default())
            .await
            .unwrap()
            .len(),
        3
    );

    // History filters: by protocol, and the newest N (still oldest first).
    let rdp = store
        .sessions(&SessionFilter {
            protocol: Some("rdp".into()),
            ..SessionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(rdp.iter().map(|s| s.id).collect::<Vec<_>>(), [hop.id]);
    let all: Vec<Uuid> = store
        .sessions(&SessionFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    let newest: Vec<Uuid> = store
        .sessions(&SessionFilter {
            limit: Some(2),
            ..SessionFilter::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(newest, all[1..]);

    // An event that names a stored session gets its target and protocol,
    // so `audit --target` finds it.
    store
        .audit(&AuditEvent::new(AuditKind::SessionAbnormal, "left live").session(hop.id))
        .await
        .unwrap();
    let found = store
        .audit_query(&AuditFilter {
            target: Some("fa-app01".into()),
            kinds: vec![AuditKind::SessionAbnormal],
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].event.session, Some(hop.id));
    assert_eq!(found[0].event.protocol.as_deref(), Some("rdp"));

    // The console's filters: protocol, the targets of a system, hops of a
    // session, and pages newest first with a count.
    let count = |f: SessionFilter| async move { store.count_sessions(&f).await.unwrap() };
    let ssh = SessionFilter {
        protocol: Some("ssh".into()),
        ..SessionFilter::default()
    };
    assert_eq!(count(ssh).await, 2);
    let of_system = |targets: &[&str]| SessionFilter {
        targets: Some(targets.iter().map(|t| t.to_string()).collect()),
        ..SessionFilter::default()
    };
    assert_eq!(count(of_system(&["nope", "fa-app01"])).await, 3);
    assert_eq!(count(of_system(&["nope"])).await, 0);
    assert_eq!(count(of_system(&[])).await, 0, "a system without targets");
    let hops = store
        .sessions(&SessionFilter {
            parent: Some(a.id),
            ..SessionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(hops.iter().map(|s| s.id).collect::<Vec<_>>(), [hop.id]);
    let page = |n: u32| SessionFilter {
        newest_first: true,
        limit: Some(2),
        offset: n * 2,
        ..SessionFilter::default()
    };
    let first = store.sessions(&page(0)).await.unwrap();
    let second = store.sessions(&page(1)).await.unwrap();
    assert_eq!((first.len(), second.len()), (2, 1));
    assert!(first[0].started_at >= first[1].started_at, "newest first");
    assert!(first[1].started_at >= second[0].started_at, "newest first");
    let mut seen: Vec<Uuid> = first.iter().chain(&second).map(|s| s.id).collect();
    seen.sort();
    let mut all = vec![a.id, hop.id, b.id];
    all.sort();
    assert_eq!(seen, all);
    assert_eq!(count(page(1)).await, 3, "the count ignores paging");

    // The console's sign-in table exists in both schemas.
    sqlx::query(
        "INSERT INTO web_sessions (token_hash, user_name, csrf, source, lang, created_at, last_seen_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind("h".repeat(64))
    .bind("tanaka")
    .bind("csrf")
    .bind("127.0.0.1")
    .bind(Option::<String>::None)
    .bind(1_i64)
    .bind(2_i64)
    .execute(store.pool())
    .await
    .unwrap();
}

/// Work requests: numbering, revisions, compare-and-set moves, approval
/// steps, the open windows of an engineer and the sessions under a request.
async fn work_requests(store: &Store) {
    // The approver role is accepted by the schema.
    auth::create_user(store, &master(), "yoshida", Role::Approver, None, None)
        .await
        .unwrap();
    assert_eq!(
        store.user("yoshida").await.unwrap().unwrap().role,
        Role::Approver
    );
    let now = Utc
        .with_ymd_and_hms(2026, 11, 20, 9, 0, 0)
        .single()
        .unwrap();
    let start = Utc
        .with_ymd_and_hms(2026, 11, 23, 1, 0, 0)
        .single()
        .unwrap();
    let end = Utc
        .with_ymd_and_hms(2026, 11, 23, 3, 0, 0)
        .single()
        .unwrap();
    let new = NewWorkRequest {
        system: "fa".into(),
        vendor: "subco".into(),
        requester: "tanaka".into(),
        engineers: vec!["tanaka".into()],
        targets: vec!["fa-db01".into(), "fa-app01".into()],
        protocols: vec![Protocol::Ssh, Protocol::Rdp],
        purpose: "月次パッチ適用".into(),
        work: "OS の更新と再起動".into(),
        window_start: start,
        window_end: end,
        urgency: Urgency::Normal,
    };
    let r = store.create_work_request(&new, now).await.unwrap();
    assert_eq!(r.number, "R-2026-0001");
    assert_eq!(r.revision, 1);
    assert_eq!(r.state, RequestState::Draft);
    assert_eq!(r.targets, ["fa-db01", "fa-app01"]);
    assert_eq!(r.protocols, [Protocol::Ssh, Protocol::Rdp]);
    assert_eq!(r.purpose, "月次パッチ適用");
    assert_eq!(r.engineers, ["tanaka"]);
    assert_eq!((r.window_start, r.window_end), (start, end));
    assert_eq!(r.state_by, "tanaka");
    let second = store.create_work_request(&new, now).await.unwrap();
    assert_eq!(second.number, "R-2026-0002");

    // Compare-and-set: the second identical move loses.
    let mv = |from, to| store.move_work_request(&r.number, 1, from, to, "tanaka", "", now, None);
    mv(RequestState::Draft, RequestState::Submitted)
        .await
        .unwrap();
    assert!(matches!(
        mv(RequestState::Draft, RequestState::Submitted).await,
        Err(StoreError::RequestChanged { .. })
    ));
    assert!(matches!(
        store
            .move_work_request(
                "R-1999-0001",
                1,
                RequestState::Draft,
                RequestState::Submitted,
                "x",
                "",
                now,
                None
            )
            .await,
        Err(StoreError::NoRequest(_))
    ));

    // Step 1 keeps it submitted; the same step twice is refused; step 2 opens it.
    let step = |n: usize, by: &str| StepApproval {
        step: n,
        by: by.into(),
        at: now,
        comment: format!("ok {n}"),
    };
    store
        .approve_work_request_step(
            &r.number,
            1,
            &step(0, "yoshida"),
            RequestState::Submitted,
            None,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .approve_work_request_step(
                &r.number,
                1,
                &step(0, "audit1"),
                RequestState::Submitted,
                None
            )
            .await,
        Err(StoreError::RequestChanged { .. })
    ));
    assert!(
        store
            .open_work_requests_for("tanaka", now)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .approve_work_request_step(
            &r.number,
            1,
            &step(1, "audit1"),
            RequestState::Approved,
            Some(start),
        )
        .await
        .unwrap();
    let r = store.require_work_request(&r.number, None).await.unwrap();
    assert_eq!(r.state, RequestState::Approved);
    assert_eq!(r.approved_from, Some(start));
    assert_eq!(
        r.approvals
            .iter()
            .map(|a| (a.step, a.by.as_str()))
            .collect::<Vec<_>>(),
        [(0, "yoshida"), (1, "audit1")]
    );
    assert_eq!(r.approvals[1].comment, "ok 1");

    // Open for its engineer until the window ends, for nobody else.
    let open = store.open_work_requests_for("tanaka", now).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].number, "R-2026-0001");
    assert!(
        store
            .open_work_requests_for("audit1", now)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .open_work_requests_for("tanaka", end)
            .await
            .unwrap()
            .is_empty()
    );

    // A new revision is a new draft; listings show the latest by default.
    let mut changed = new.clone();
    changed.work = "OS の更新のみ".into();
    let r2 = store
        .create_work_request_revision(&r.number, &changed, now)
        .await
        .unwrap();
    assert_eq!((r2.revision, r2.state), (2, RequestState::Draft));
    assert_eq!(
        store
            .require_work_request(&r.number, None)
            .await
            .unwrap()
            .revision,
        2
    );
    assert_eq!(
        store
            .require_work_request(&r.number, Some(1))
            .await
            .unwrap()
            .work,
        "OS の更新と再起動"
    );
    let latest = store
        .work_requests(&WorkRequestFilter::default())
        .await
        .unwrap();
    assert_eq!(
        latest
            .iter()
            .map(|r| (r.number.as_str(), r.revision))
            .collect::<Vec<_>>(),
        [("R-2026-0001", 2), ("R-2026-0002", 1)]
    );
    let all = store
        .work_requests(&WorkRequestFilter {
            all_revisions: true,
            states: vec![RequestState::Approved],
            engineer: Some("tanaka".into()),
            ..WorkRequestFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].revision, 1);
    let due = store
        .work_requests(&WorkRequestFilter {
            all_revisions: true,
            states: vec![RequestState::Approved, RequestState::Active],
            window_ended_by: Some(end),
            ..WorkRequestFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(due.len(), 1);

    // Sessions remember the request they run under.
    let mut s = new_session("node-a", "tanaka");
    s.work_request = Some(r.number.clone());
    store.start_session(&s).await.unwrap();
    let under = store.live_sessions_of_request(&r.number).await.unwrap();
    assert_eq!(under.len(), 1);
    assert_eq!(under[0].id, s.id);
    assert_eq!(under[0].work_request.as_deref(), Some("R-2026-0001"));
    assert!(
        store
            .live_sessions_of_request("R-2026-0002")
            .await
            .unwrap()
            .is_empty()
    );
}

/// A database made before work requests (schema 0002) keeps its people,
/// keys and sign-in state when the users table is rebuilt for the
/// approver role.
#[tokio::test]
async fn sqlite_upgrade_keeps_people_and_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    for f in ["0001_foundation.sql", "0002_ticket_sealed.sql"] {
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations/sqlite")
                .join(f),
            old.join(f),
        )
        .unwrap();
    }
    let file = dir.path().join("old.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::migrate::Migrator::new(old.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    // Fill it as the old version would have.
    let store_v2 = {
        // The current code only reads and writes columns the old schema has
        // for these tables, through a pool that does not migrate.
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        for sql in [
            "INSERT INTO vendors (name, parent, created_at) VALUES ('acme', NULL, 1)",
            "INSERT INTO users (name, role, vendor, password_hash, totp_secret, enabled, failures, created_at)
             VALUES ('tanaka', 'engineer', 'acme', 'h', 's', 1, 2, 5)",
            "INSERT INTO user_keys (user_name, fingerprint, openssh, comment, added_at)
             VALUES ('tanaka', 'SHA256:x', 'ssh-ed25519 AAAA', 'pc', 6)",
            "INSERT INTO signin_windows (user_name, source, opened_at, expires_at) VALUES ('tanaka', '127.0.0.1', 1, 99999999999999)",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool
    };
    store_v2.close().await;
    let store = Store::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("upgrade");
    let u = store.user("tanaka").await.unwrap().unwrap();
    assert_eq!(u.role, Role::Engineer);
    assert_eq!(u.failures, 2);
    assert_eq!(store.keys("tanaka").await.unwrap().len(), 1);
    // Foreign keys still point at the rebuilt table: deleting nothing,
    // and a key for a missing user is still refused.
    let orphan = sqlx::query(
        "INSERT INTO user_keys (user_name, fingerprint, openssh, comment, added_at)
         VALUES ('ghost', 'SHA256:y', 'k', '', 1)",
    )
    .execute(store.pool())
    .await;
    assert!(orphan.is_err(), "foreign key to users still enforced");
    let check: Vec<String> =
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'user_keys'")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert!(
        check[0].replace('"', "").contains("REFERENCES users(name)"),
        "{check:?}"
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sub-dir-free.db");
    let url = format!("sqlite://{}", file.display());
    let store = check_store(&url, Backend::Sqlite).await;
    store.close().await;
    // The database file (and its WAL) never holds a secret in plaintext.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes
                .windows(SECRET_VALUE.len())
                .any(|w| w == SECRET_VALUE.as_bytes())
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "the database holds password hashes: owner only"
        );
    }
}

#[tokio::test]
async fn postgres_store() {
    let pg = postgres::Postgres::start();
    let url = pg.create_database("sekisho_store");
    let store = check_store(&url, Backend::Postgres).await;
    store.close().await;
    drop(pg);
}

#[tokio::test]
async fn unsupported_url_is_refused_without_password() {
    let e = Store::connect("mysql://u:hunter2@127.0.0.1/db")
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("unsupported database URL"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

/// The PostgreSQL password kept out of sekisho.toml: from
/// `[database] password_file` or `SEKISHO_DATABASE_PASSWORD`, against a real
/// server that checks it (scram-sha-256). A wrong password fails without
/// showing it; both sources at once are refused.
#[test]
fn postgres_password_from_a_file_or_the_environment() {
    let pg = postgres::Postgres::start();
    let password = "S3kisho-pg-secret";
    pg.add_password_role("sekisho", password);
    let url = pg
        .create_database("sekisho_pw")
        .replace("postgres@", "sekisho@");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sekisho.toml");
    let secret = dir.path().join("db-password");
    std::fs::write(&secret, format!("{password}\n")).unwrap();
    let sekisho = |args: &[&str], env_password: Option<&str>| {
        let mut cmd = assert_cmd::Command::cargo_bin("sekisho").unwrap();
        cmd.env_remove("SEKISHO_CONFIG")
            .env_remove("SEKISHO_DATABASE_PASSWORD")
            .arg("--config")
            .arg(&config)
            .args(args);
        if let Some(p) = env_password {
            cmd.env("SEKISHO_DATABASE_PASSWORD", p);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let write_config = |extra: &str| {
        std::fs::write(
            &config,
            format!("[database]\nurl = \"{url}\"\n{extra}\n[ssh]\nenabled = false\n[rdp]\nenabled = false\n"),
        )
        .unwrap();
    };

    // From a file, relative to sekisho.toml: init creates the schema and
    // the first admin, and later commands find them.
    write_config("password_file = \"db-password\"");
    let init = dir.path().display().to_string();
    let (ok, text) = sekisho(&["init", "--dir", &init], None);
    assert!(ok, "{text}");
    let (ok, text) = sekisho(&["user", "list"], None);
    assert!(ok && text.contains("admin"), "{text}");

    // Without it the server refuses.
    write_config("");
    let (ok, text) = sekisho(&["user", "list"], None);
    assert!(
        !ok && text.contains("password authentication failed"),
        "{text}"
    );

    // From the environment.
    let (ok, text) = sekisho(&["user", "list"], Some(password));
    assert!(ok && text.contains("admin"), "{text}");
    let (ok, text) = sekisho(&["user", "list"], Some("not-the-password"));
    assert!(
        !ok && text.contains("password authentication failed"),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");

    // Both at once: which one counts would be a guess.
    write_config("password_file = \"db-password\"");
    let (ok, text) = sekisho(&["user", "list"], Some(password));
    assert!(
        !ok && text.contains("both password_file and SEKISHO_DATABASE_PASSWORD are set"),
        "{text}"
    );
    assert!(!text.contains(password), "{text}");

    // A password file that is not there names its path.
    std::fs::remove_file(&secret).unwrap();
    let (ok, text) = sekisho(&["user", "list"], None);
    assert!(
        !ok && text.contains(&secret.display().to_string()),
        "{text}"
    );
    drop(pg);
}
