//! sekisho's own auto-reconnect cookies (MS-RDPBCGR 5.5), so that a client
//! whose connection dropped comes back to its target without a code and
//! without its replayed code counting as a failure.
//!
//! Once a session runs, the gateway sends the client a Save Session Info
//! PDU carrying a cookie (a logon id and 16 random bytes); the target's own
//! cookie never reaches the client. On reconnection the client puts a
//! verifier, HMAC-MD5 keyed by those random bytes, in its Client Info PDU.
//! Under TLS the HMAC is over 32 zero bytes, so the verifier is a constant
//! per cookie: it is the credential, and only its SHA-256 is kept.
//!
//! Threat model: a cookie is bound to the person, the target, the session
//! it was issued in and the client's address; it works once; it is usable
//! while its session runs and for `reconnect_grace` after the client's
//! connection was lost, and never after the session ended any other way
//! (logout, kill, the grant's end, the target closing, its node stopping).
//! A verifier presented from another address is refused, audited, and
//! burns the cookie.
//!
//! The cookies are kept in the database (`store::reconnect_cookies`), so
//! a client resumes on whichever node sharing it it reaches after the drop,
//! and a restart forgets nothing. This module is the pure part: what is
//! issued and kept, and what a presented cookie is worth once the store
//! has spent it (found by logon id and verifier hash, in one atomic update).

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ironrdp_pdu::rdp::client_info::ClientAutoReconnect;
use ironrdp_pdu::rdp::session_info::ServerAutoReconnect;
use sha2::{Digest as _, Sha256};

use crate::store::{ReconnectCookieRow, SpentCookie};

/// What a valid cookie resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumption {
    pub user: String,
    pub target: String,
    /// The session the cookie was issued in.
    pub session_id: uuid::Uuid,
}

/// Why a presented cookie did not resume anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieRefusal {
    /// No unused cookie with this logon id and verifier: spent already, a
    /// cookie purged after its grace, or a guess.
    Unknown,
    /// The right verifier from another address: a copied cookie.
    OtherAddress,
    /// The session ended other than by a lost connection, or the grace
    /// after the drop passed.
    Expired,
}

impl CookieRefusal {
    pub fn describe(self) -> &'static str {
        match self {
            CookieRefusal::Unknown => "auto-reconnect cookie not known (spent, purged, or forged)",
            CookieRefusal::OtherAddress => {
                "auto-reconnect cookie presented from another address than it was issued to"
            }
            CookieRefusal::Expired => "auto-reconnect cookie expired",
        }
    }

    /// The reason as the audit log's `reason` field.
    pub fn as_str(self) -> &'static str {
        match self {
            CookieRefusal::Unknown => "unknown",
            CookieRefusal::OtherAddress => "other-address",
            CookieRefusal::Expired => "expired",
        }
    }
}

/// The SHA-256 of a verifier, as kept (lowercase hex).
pub fn verifier_sha256(verifier: &[u8]) -> String {
    hex::encode(Sha256::digest(verifier))
}

/// A new cookie for a running session: what the client is sent, and what
/// is kept (without the random bytes). `logon_id` is drawn by the caller,
/// which draws again if the store has it already.
pub fn issue(
    logon_id: u32,
    session_id: uuid::Uuid,
    user: &str,
    target: &str,
    source: IpAddr,
    now: DateTime<Utc>,
) -> (ServerAutoReconnect, ReconnectCookieRow) {
    let mut random_bits = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random_bits);
    let cookie = ServerAutoReconnect {
        logon_id,
        random_bits,
    };
    let verifier = ClientAutoReconnect::from_server_cookie(&cookie).security_verifier;
    let kept = ReconnectCookieRow {
        logon_id,
        verifier_sha256: verifier_sha256(&verifier),
        user: user.to_owned(),
        target: target.to_owned(),
        session_id,
        source,
        issued_at: now,
        usable_until: None,
        used_at: None,
    };
    (cookie, kept)
}

/// A random logon id; 0 is not used (it reads as "no cookie").
pub fn draw_logon_id() -> u32 {
    loop {
        let id = rand::Rng::r#gen::<u32>(&mut rand::rngs::OsRng);
        if id != 0 {
            return id;
        }
    }
}

/// How long a cookie stays usable once its session ended: `grace` after a
/// lost client connection, not at all after any other end (`None`).
pub fn usable_until_after_end(
    client_lost: bool,
    grace: Duration,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if !client_lost || grace.is_zero() {
        return None;
    }
    chrono::Duration::from_std(grace).ok().map(|g| now + g)
}

/// What a cookie the store just spent for a client at `source` resumes.
/// It is spent whatever this says: a copied cookie cannot be tried again
/// from its rightful address, and a refused one is gone.
pub fn decide(
    spent: &SpentCookie,
    source: IpAddr,
    now: DateTime<Utc>,
) -> Result<Resumption, CookieRefusal> {
    let c = &spent.cookie;
    if c.source != source {
        return Err(CookieRefusal::OtherAddress);
    }
    let usable = match c.usable_until {
        // The connection was lost: usable for the grace.
        Some(until) => now < until,
        // No drop recorded: only while the session still runs (the client
        // may notice the drop before its node does). A session that ended
        // without a recorded drop ended some other way, or its node died.
        None => spent.session_live,
    };
    if !usable {
        return Err(CookieRefusal::Expired);
    }
    Ok(Resumption {
        user: c.user.clone(),
        target: c.target.clone(),
        session_id: c.session_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const ELSEWHERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 9));
    const GRACE: Duration = Duration::from_secs(120);

    fn spent(
        usable_until: Option<DateTime<Utc>>,
        session_live: bool,
    ) -> (ServerAutoReconnect, SpentCookie) {
        let now = Utc::now();
        let (cookie, mut row) = issue(7, uuid::Uuid::new_v4(), "tanaka", "fa-db01", HOME, now);
        row.usable_until = usable_until;
        row.used_at = Some(now);
        (
            cookie,
            SpentCookie {
                cookie: row,
                session_live,
            },
        )
    }

    #[test]
    fn a_cookie_resumes_from_its_address_within_the_grace_after_a_drop() {
        let now = Utc::now();
        let (_, s) = spent(usable_until_after_end(true, GRACE, now), false);
        assert_eq!(
            decide(&s, HOME, now + chrono::Duration::seconds(5)),
            Ok(Resumption {
                user: "tanaka".into(),
                target: "fa-db01".into(),
                session_id: s.cookie.session_id,
            })
        );
    }

    #[test]
    fn while_the_session_runs_the_cookie_resumes_it() {
        // The client saw the drop before the gateway did.
        let (_, s) = spent(None, true);
        assert!(decide(&s, HOME, Utc::now()).is_ok());
    }

    #[test]
    fn another_address_is_refused_even_inside_the_grace() {
        let now = Utc::now();
        let (_, s) = spent(usable_until_after_end(true, GRACE, now), false);
        assert_eq!(decide(&s, ELSEWHERE, now), Err(CookieRefusal::OtherAddress));
        let (_, live) = spent(None, true);
        assert_eq!(
            decide(&live, ELSEWHERE, now),
            Err(CookieRefusal::OtherAddress)
        );
    }

    #[test]
    fn the_end_of_the_grace_or_another_end_of_the_session_expires_the_cookie() {
        let now = Utc::now();
        let (_, dropped) = spent(usable_until_after_end(true, GRACE, now), false);
        let after = now + chrono::Duration::from_std(GRACE).unwrap();
        assert_eq!(decide(&dropped, HOME, after), Err(CookieRefusal::Expired));
        // Ended otherwise (logout, kill, its node stopped): no drop recorded
        // and the session no longer live.
        let (_, ended) = spent(None, false);
        assert_eq!(decide(&ended, HOME, now), Err(CookieRefusal::Expired));
    }

    #[test]
    fn only_a_lost_connection_with_a_grace_keeps_a_cookie_usable() {
        let now = Utc::now();
        assert_eq!(
            usable_until_after_end(true, GRACE, now),
            Some(now + chrono::Duration::seconds(120))
        );
        assert_eq!(usable_until_after_end(false, GRACE, now), None);
        assert_eq!(usable_until_after_end(true, Duration::ZERO, now), None);
    }

    #[test]
    fn only_a_hash_of_the_verifier_is_kept() {
        let (cookie, row) = issue(
            9,
            uuid::Uuid::new_v4(),
            "tanaka",
            "fa-db01",
            HOME,
            Utc::now(),
        );
        let verifier = ClientAutoReconnect::from_server_cookie(&cookie).security_verifier;
        assert_eq!(row.verifier_sha256, verifier_sha256(&verifier));
        assert_eq!(row.verifier_sha256.len(), 64);
        assert!(!row.verifier_sha256.contains(&hex::encode(verifier)));
        assert!(
            !row.verifier_sha256
                .contains(&hex::encode(cookie.random_bits))
        );
        assert_eq!(row.logon_id, cookie.logon_id);
        assert!(row.usable_until.is_none() && row.used_at.is_none());
    }

    #[test]
    fn a_logon_id_is_never_zero() {
        assert!((0..1000).all(|_| draw_logon_id() != 0));
    }
}
