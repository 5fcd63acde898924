//! Sign-in checks against a real SQLite store in a temporary directory.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::config::AuthLimits;
use crate::store::{AuditFilter, AuditKind, Store};

fn limits() -> AuthLimits {
    AuthLimits {
        signin_window: Duration::from_secs(600),
        max_failures: 3,
        lockout: Duration::from_secs(900),
        ticket_lifetime: Duration::from_secs(300),
        failure_delay: Duration::ZERO,
    }
}

/// A store, an authenticator on an adjustable clock, and engineer tanaka.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    auth: Authenticator,
    clock: Arc<AtomicI64>,
    secret: String,
}

const SRC: &str = "192.0.2.10";

fn src() -> IpAddr {
    SRC.parse().unwrap()
}

impl Fixture {
    async fn new(limits: AuthLimits) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.add_vendor("acme", None).await.unwrap();
        let nu = create_user(
            &store,
            &ticket_key(),
            "tanaka",
            Role::Engineer,
            Some("acme"),
            Some("pw-tanaka"),
        )
        .await
        .unwrap();
        assert!(nu.password.is_none());
        let clock = Arc::new(AtomicI64::new(Utc::now().timestamp()));
        let c = clock.clone();
        let auth = Authenticator::new(store.clone(), limits, ticket_key())
            .with_clock(move || DateTime::from_timestamp(c.load(Ordering::SeqCst), 0).unwrap());
        Fixture {
            _dir: dir,
            store,
            auth,
            clock,
            secret: nu.totp_secret_base32,
        }
    }

    fn advance(&self, secs: i64) {
        self.clock.fetch_add(secs, Ordering::SeqCst);
    }

    fn code(&self, offset_steps: i64) -> String {
        let key = totp::decode_secret(&self.secret).unwrap();
        let step = totp::step_at(self.clock.load(Ordering::SeqCst)) + offset_steps;
        totp::code_for_step(&key, step, 6).unwrap()
    }

    /// A code valid at no accepted step.
    fn wrong_code(&self) -> String {
        let valid = [self.code(-1), self.code(0), self.code(1)];
        (0..4u32)
            .map(|i| format!("{:06}", 123456 + i))
            .find(|c| !valid.contains(c))
            .unwrap()
    }

    async fn events(&self, kind: AuditKind) -> Vec<crate::store::AuditRecord> {
        self.store
            .audit_query(&AuditFilter {
                kinds: vec![kind],
                ..AuditFilter::default()
            })
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn password_right_wrong_unknown_all_audited_and_vague() {
    let f = Fixture::new(limits()).await;
    f.auth
        .check_password("tanaka", "pw-tanaka", src())
        .await
        .unwrap();
    let e = f
        .auth
        .check_password("tanaka", "nope", src())
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "sign-in failed");
    let e2 = f
        .auth
        .check_password("nobody", "x", src())
        .await
        .unwrap_err();
    assert_eq!(
        e2.to_string(),
        e.to_string(),
        "unknown user must look the same"
    );

    let ok = f.events(AuditKind::SigninSuccess).await;
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].event.data["method"], "password");
    let bad = f.events(AuditKind::SigninFailure).await;
    let reasons: Vec<_> = bad
        .iter()
        .map(|r| r.event.data["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons, ["wrong password", "unknown user"]);
    assert_eq!(bad[0].event.source, Some(src()));
}

#[tokio::test]
async fn totp_secrets_are_sealed_at_rest_and_bound_to_the_person() {
    let f = Fixture::new(limits()).await;
    let rows = f.store.totp_secrets().await.unwrap();
    let (_, stored) = rows.iter().find(|(n, _)| n == "tanaka").unwrap();
    assert!(totp::is_sealed(stored), "{stored}");
    assert!(!stored.contains(&f.secret));
    assert_eq!(
        totp::open_secret(&ticket_key(), "tanaka", stored)
            .unwrap()
            .as_str(),
        f.secret
    );
    // Another person's name, or a flipped byte, does not open it.
    assert!(totp::open_secret(&ticket_key(), "suzuki", stored).is_err());
    let mut flipped = stored.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    assert!(totp::open_secret(&ticket_key(), "tanaka", &flipped).is_err());
    f.auth
        .check_totp("tanaka", &f.code(0), src())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_plain_text_secret_from_before_sealing_works_and_is_sealed() {
    let f = Fixture::new(limits()).await;
    // What an earlier version stored: the base32 secret itself.
    f.store.set_totp_secret("tanaka", &f.secret).await.unwrap();
    f.auth
        .check_totp("tanaka", &f.code(0), src())
        .await
        .unwrap();
    assert_eq!(f.auth.seal_plain_totp_secrets().await.unwrap(), 1);
    assert_eq!(f.auth.seal_plain_totp_secrets().await.unwrap(), 0);
    let rows = f.store.totp_secrets().await.unwrap();
    assert!(rows.iter().all(|(_, s)| totp::is_sealed(s)));
    // Same secret, and the replay guard kept: the used code stays used.
    assert!(
        f.auth
            .check_totp("tanaka", &f.code(0), "192.0.2.20".parse().unwrap())
            .await
            .is_err()
    );
    f.auth
        .check_totp("tanaka", &f.code(1), src())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_secret_sealed_under_another_key_refuses_the_code_and_says_why() {
    let f = Fixture::new(limits()).await;
    let other = Authenticator::new(
        f.store.clone(),
        limits(),
        super::secrets::MasterKey::from_bytes([1; 32]),
    );
    assert!(other.check_totp("tanaka", &f.code(0), src()).await.is_err());
    let bad = f.events(AuditKind::SigninFailure).await;
    assert_eq!(
        bad[0].event.data["reason"],
        "code secret cannot be opened (wrong master key?)"
    );
    // Not counted against the person: it is the bastion's fault.
    assert_eq!(f.store.user("tanaka").await.unwrap().unwrap().failures, 0);
}

#[tokio::test]
async fn a_secret_read_two_ways_is_checked_once_and_audited_once() {
    let f = Fixture::new(limits()).await;
    // Password followed by a code: the second reading is the password.
    let i = f
        .auth
        .check_password_among("tanaka", &["pw-tanaka123456", "pw-tanaka"], src())
        .await
        .unwrap();
    assert_eq!(i, 1);
    assert_eq!(
        f.auth
            .check_password_among("tanaka", &["pw-tanaka"], src())
            .await
            .unwrap(),
        0
    );
    assert!(f.events(AuditKind::SigninFailure).await.is_empty());
    assert_eq!(f.events(AuditKind::SigninSuccess).await.len(), 2);
    // Neither reading: one failure, counted once.
    assert!(
        f.auth
            .check_password_among("tanaka", &["nope123456", "nope"], src())
            .await
            .is_err()
    );
    assert_eq!(f.events(AuditKind::SigninFailure).await.len(), 1);
    assert_eq!(f.store.user("tanaka").await.unwrap().unwrap().failures, 1);
}

#[tokio::test]
async fn totp_accepts_once_and_within_one_step() {
    let f = Fixture::new(limits()).await;
    let code = f.code(0);
    f.auth.check_totp("tanaka", &code, src()).await.unwrap();
    // The same code again, even from elsewhere: refused.
    assert!(
        f.auth
            .check_totp("tanaka", &code, "192.0.2.99".parse().unwrap())
            .await
            .is_err()
    );
    // The previous step's code is older than the one used: refused too.
    assert!(
        f.auth
            .check_totp("tanaka", &f.code(-1), src())
            .await
            .is_err()
    );
    // The next step's code (a fast clock on the phone) is accepted.
    f.auth
        .check_totp("tanaka", &f.code(1), src())
        .await
        .unwrap();
    // Two steps ahead is outside the ±1 tolerance.
    assert!(
        f.auth
            .check_totp("tanaka", &f.code(3), src())
            .await
            .is_err()
    );
    let reasons: Vec<_> = f
        .events(AuditKind::SigninFailure)
        .await
        .iter()
        .map(|r| r.event.data["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons,
        ["code already used", "code already used", "wrong code"]
    );
}

#[tokio::test]
async fn window_opens_per_person_and_address_and_expires() {
    let f = Fixture::new(limits()).await;
    assert!(
        !f.auth.window_open("tanaka", src()).await,
        "closed before any code"
    );
    f.auth
        .check_totp("tanaka", &f.code(0), src())
        .await
        .unwrap();
    assert!(f.auth.window_open("tanaka", src()).await);
    // IPv4-mapped IPv6 is the same address.
    assert!(
        f.auth
            .window_open("tanaka", format!("::ffff:{SRC}").parse().unwrap())
            .await
    );
    assert!(
        !f.auth
            .window_open("tanaka", "192.0.2.11".parse().unwrap())
            .await,
        "other address"
    );
    f.advance(599);
    assert!(f.auth.window_open("tanaka", src()).await);
    f.advance(2);
    assert!(
        !f.auth.window_open("tanaka", src()).await,
        "expired after 10 minutes"
    );

    // Disabling closes it.
    f.advance(60);
    f.auth
        .check_totp("tanaka", &f.code(0), src())
        .await
        .unwrap();
    assert!(f.auth.window_open("tanaka", src()).await);
    f.store.set_user_enabled("tanaka", false).await.unwrap();
    assert!(!f.auth.window_open("tanaka", src()).await);
    let used = f
        .events(AuditKind::SigninSuccess)
        .await
        .into_iter()
        .filter(|r| r.event.data["method"] == "window")
        .count();
    assert_eq!(used, 4);
}

#[tokio::test]
async fn zero_window_means_always_ask() {
    let f = Fixture::new(AuthLimits {
        signin_window: Duration::ZERO,
        ..limits()
    })
    .await;
    f.auth
        .check_totp("tanaka", &f.code(0), src())
        .await
        .unwrap();
    assert!(!f.auth.window_open("tanaka", src()).await);
}

#[tokio::test]
async fn lockout_after_failures_then_expiry_and_reset() {
    let f = Fixture::new(limits()).await;
    for _ in 0..2 {
        assert!(f.auth.check_password("tanaka", "bad", src()).await.is_err());
    }
    // A right password alone does not reset the count...
    f.auth
        .check_password("tanaka", "pw-tanaka", src())
        .await
        .unwrap();
    // ...and a wrong code is the third failure in a row.
    assert!(
        f.auth
            .check_totp("tanaka", &f.wrong_code(), src())
            .await
            .is_err()
    );
    let u = f.auth.user("tanaka").await.unwrap().unwrap();
    assert!(u.locked_at(f.auth.now()), "third failure locks: {u:?}");
    // Locked: even the right password fails, and says only "sign-in failed".
    let e = f
        .auth
        .check_password("tanaka", "pw-tanaka", src())
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "sign-in failed");
    assert_eq!(f.events(AuditKind::Lockout).await.len(), 1);
    // After the lockout runs out, the right password and code work again.
    f.advance(901);
    f.auth
        .check_password("tanaka", "pw-tanaka", src())
        .await
        .unwrap();
    f.auth
        .check_totp("tanaka", &f.code(0), src())
        .await
        .unwrap();
    let u = f.auth.user("tanaka").await.unwrap().unwrap();
    assert_eq!(u.failures, 0);
    assert!(u.last_signin_at.is_some());
}

#[tokio::test]
async fn zero_lockout_lasts_until_enabled() {
    let f = Fixture::new(AuthLimits {
        lockout: Duration::ZERO,
        ..limits()
    })
    .await;
    for _ in 0..3 {
        assert!(f.auth.check_password("tanaka", "bad", src()).await.is_err());
    }
    f.advance(86400 * 365);
    assert!(
        f.auth
            .check_password("tanaka", "pw-tanaka", src())
            .await
            .is_err()
    );
    f.store.set_user_enabled("tanaka", true).await.unwrap();
    f.auth
        .check_password("tanaka", "pw-tanaka", src())
        .await
        .unwrap();
}

#[tokio::test]
async fn tickets_single_use_bound_and_expiring() {
    // Enough failures allowed that the wrong tries below do not lock tanaka.
    let f = Fixture::new(AuthLimits {
        max_failures: 10,
        ..limits()
    })
    .await;
    let t = tickets::issue(
        &f.store,
        &ticket_key(),
        Duration::from_secs(300),
        "tanaka",
        "fa-db01",
        "rdp",
        "admin1",
    )
    .await
    .unwrap();
    assert!(tickets::looks_like_ticket(&t.text));
    // The text is not stored, only its hash.
    let dump = format!(
        "{:?}",
        f.store.ticket(&tickets::hash(&t.text)).await.unwrap()
    );
    assert!(!dump.contains(t.text.as_str()));

    let a = &f.auth;
    assert!(
        a.redeem_ticket(
            "tanaka",
            &t.text,
            "fa-db02",
            crate::policy::Protocol::Rdp,
            src()
        )
        .await
        .is_err(),
        "target"
    );
    assert!(
        a.redeem_ticket(
            "tanaka",
            &t.text,
            "fa-db01",
            crate::policy::Protocol::Ssh,
            src()
        )
        .await
        .is_err(),
        "protocol"
    );
    assert!(
        a.redeem_ticket(
            "tanaka",
            "skt_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "fa-db01",
            crate::policy::Protocol::Rdp,
            src()
        )
        .await
        .is_err()
    );
    a.redeem_ticket(
        "tanaka",
        &t.text,
        "fa-db01",
        crate::policy::Protocol::Rdp,
        src(),
    )
    .await
    .unwrap();
    assert!(
        a.redeem_ticket(
            "tanaka",
            &t.text,
            "fa-db01",
            crate::policy::Protocol::Rdp,
            src()
        )
        .await
        .is_err(),
        "single use"
    );

    // Bound to the person.
    create_user(
        &f.store,
        &ticket_key(),
        "suzuki",
        Role::Engineer,
        Some("acme"),
        Some("pw"),
    )
    .await
    .unwrap();
    let t2 = tickets::issue(
        &f.store,
        &ticket_key(),
        Duration::from_secs(300),
        "tanaka",
        "fa-db01",
        "rdp",
        "admin1",
    )
    .await
    .unwrap();
    assert!(
        a.redeem_ticket(
            "suzuki",
            &t2.text,
            "fa-db01",
            crate::policy::Protocol::Rdp,
            src()
        )
        .await
        .is_err()
    );
    // Expired after its lifetime. (Issued on the real clock, which runs on
    // while the test does: step well past the five minutes.)
    f.advance(3600);
    assert!(
        a.redeem_ticket(
            "tanaka",
            &t2.text,
            "fa-db01",
            crate::policy::Protocol::Rdp,
            src()
        )
        .await
        .is_err()
    );

    let reasons: Vec<_> = f
        .events(AuditKind::SigninFailure)
        .await
        .iter()
        .map(|r| r.event.data["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons,
        [
            "ticket issued for another target",
            "ticket issued for another protocol",
            "unknown ticket",
            "ticket already used",
            "ticket issued to someone else",
            "ticket expired"
        ]
    );
    assert!(
        tickets::issue(
            &f.store,
            &ticket_key(),
            Duration::from_secs(300),
            "nobody",
            "x",
            "ssh",
            "a"
        )
        .await
        .is_err()
    );
    assert!(
        tickets::issue(
            &f.store,
            &ticket_key(),
            Duration::from_secs(300),
            "tanaka",
            "x",
            "telnet",
            "a"
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn public_keys_registered_only() {
    let f = Fixture::new(limits()).await;
    let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICDFvN+9T1TvdjXp//H6lY7XqGEjCmiykhfP/MF4ElS3 tanaka@acme-pc01";
    let key = russh::keys::PublicKey::from_openssh(line).unwrap();
    assert!(
        f.auth
            .check_public_key("tanaka", &key, src())
            .await
            .is_err()
    );
    keys::add_key(&f.store, "tanaka", line).await.unwrap();
    f.auth
        .check_public_key("tanaka", &key, src())
        .await
        .unwrap();
    create_user(
        &f.store,
        &ticket_key(),
        "suzuki",
        Role::Engineer,
        Some("acme"),
        Some("pw"),
    )
    .await
    .unwrap();
    assert!(
        f.auth
            .check_public_key("suzuki", &key, src())
            .await
            .is_err(),
        "someone else's key"
    );
    // Key failures are not counted toward lockout.
    assert_eq!(f.auth.user("suzuki").await.unwrap().unwrap().failures, 0);
}

#[tokio::test]
async fn create_user_rules() {
    let f = Fixture::new(limits()).await;
    let e = create_user(&f.store, &ticket_key(), "sato", Role::Engineer, None, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("needs a vendor"), "{e}");
    let e = create_user(
        &f.store,
        &ticket_key(),
        "sato",
        Role::Engineer,
        Some("nope"),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.to_string(), "no vendor nope");
    let e = create_user(&f.store, &ticket_key(), "tanaka", Role::Auditor, None, None)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "user tanaka already exists");
    assert!(
        create_user(&f.store, &ticket_key(), "Bad Name", Role::Admin, None, None)
            .await
            .is_err()
    );
    let nu = create_user(
        &f.store,
        &ticket_key(),
        "root-admin",
        Role::Admin,
        None,
        None,
    )
    .await
    .unwrap();
    let pw = nu.password.unwrap();
    f.auth
        .check_password("root-admin", &pw, src())
        .await
        .unwrap();
    assert!(nu.otpauth_uri.contains(&nu.totp_secret_base32));
    let adds = f.events(AuditKind::AdminChange).await;
    assert_eq!(adds.len(), 2);
    assert!(adds.iter().all(|r| !r.event.detail.contains(pw.as_str())));
}

#[test]
fn names_are_checked() {
    assert!(check_name("user", "tanaka").is_ok());
    assert!(check_name("user", "t.tanaka-2").is_ok());
    assert!(check_name("user", "").is_err());
    assert!(check_name("user", "-x").is_err());
    assert!(check_name("user", "Tanaka").is_err());
    assert!(check_name("user", "a@b").is_err());
    assert!(check_name("user", &"a".repeat(65)).is_err());
}

/// The master key of the fixture's deployment (sealing TOTP secrets and RDP
/// tickets).
fn ticket_key() -> super::secrets::MasterKey {
    super::secrets::MasterKey::from_bytes([9; 32])
}

/// A password typed into the user-name field is not kept in the audit log:
/// the event names a marker with its length and a keyed fingerprint, the
/// same for the same text, never the text.
#[tokio::test]
async fn invalid_names_are_not_stored_verbatim() {
    let f = Fixture::new(limits()).await;
    let typed = "Correct-Horse!Battery#9";
    for _ in 0..2 {
        let _ = f.auth.check_password(typed, "x", src()).await;
    }
    let _ = f.auth.check_password("nobody", "x", src()).await;
    let bad = f.events(AuditKind::SigninFailure).await;
    assert_eq!(bad.len(), 3, "{bad:?}");
    let shown: Vec<String> = bad
        .iter()
        .map(|r| r.event.user.clone().unwrap_or_default())
        .collect();
    assert!(
        shown[0].starts_with("<invalid name, 23 bytes, #") && shown[0].ends_with('>'),
        "{shown:?}"
    );
    assert_eq!(shown[0], shown[1], "the same text, the same marker");
    assert_eq!(shown[2], "nobody", "a valid unknown name is kept");
    for r in &bad {
        let all = format!("{:?} {}", r.event, r.event.data);
        assert!(!all.contains("Horse"), "{all}");
    }
    assert_ne!(
        super::name_for_records("Correct-Horse!Battery#8"),
        shown[0].as_str()
    );
}

#[test]
fn logins_for_records() {
    use super::login_for_records;
    assert_eq!(login_for_records("tanaka"), "tanaka");
    assert_eq!(login_for_records("tanaka@fa-db01"), "tanaka@fa-db01");
    assert_eq!(login_for_records("FA-DB01\\tanaka"), "FA-DB01\\tanaka");
    for typed in [
        "P@ssw0rd",
        "tanaka@fa db01",
        "hunter2!",
        "tanaka@a@b",
        "\u{1b}[2J",
    ] {
        let shown = login_for_records(typed);
        assert!(shown.starts_with("<invalid name, "), "{typed:?} → {shown}");
        assert!(!shown.contains(typed), "{typed:?} → {shown}");
    }
}
