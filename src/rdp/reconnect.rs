//! sekisho's own auto-reconnect cookies (MS-RDPBCGR 5.5), so that a client
//! whose connection dropped comes back to its target without a code and
//! without its replayed code counting as a failure.
//!
//! Once a session runs, the gateway sends the client a Save Session Info
//! PDU carrying a cookie (a logon id and 16 random bytes); the target's own
//! cookie never reaches the client. On reconnection the client puts a
//! verifier, HMAC-MD5 keyed by those random bytes, in its Client Info PDU.
//! Under TLS the HMAC is over 32 zero bytes, so the verifier is a constant
//! per cookie: it is the credential, and only its SHA-256 is kept here.
//!
//! Threat model: a cookie is bound to the person, the target, the session
//! it was issued in and the client's address; it works once; it is usable
//! while its session runs and for `reconnect_grace` after the client's
//! connection was lost, and never after the session ended any other way
//! (logout, kill, the grant's end, the target closing). A verifier presented
//! from another address is refused, audited, and burns the cookie.
//!
//! The cookies live in this process's memory: one sekisho node is enough
//! (a restart forgets them, and the client then signs in again, inside the
//! sign-in window with only its password).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ironrdp_pdu::rdp::client_info::ClientAutoReconnect;
use ironrdp_pdu::rdp::session_info::ServerAutoReconnect;
use sha2::{Digest as _, Sha256};

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
    /// No cookie with this logon id, or a wrong verifier: a stale cookie
    /// from before a restart, or a guess.
    Unknown,
    /// The right verifier from another address: a copied cookie.
    OtherAddress,
    /// The session ended normally, or the grace after a drop passed.
    Expired,
}

impl CookieRefusal {
    pub fn describe(self) -> &'static str {
        match self {
            CookieRefusal::Unknown => {
                "auto-reconnect cookie not known (sekisho restarted, or forged)"
            }
            CookieRefusal::OtherAddress => {
                "auto-reconnect cookie presented from another address than it was issued to"
            }
            CookieRefusal::Expired => "auto-reconnect cookie expired",
        }
    }
}

struct Issued {
    verifier_sha256: [u8; 32],
    user: String,
    target: String,
    source: IpAddr,
    session_id: uuid::Uuid,
    /// `None` while the session runs; set when the client's connection was
    /// lost.
    usable_until: Option<Instant>,
}

/// The cookies issued by this node, by logon id.
#[derive(Default)]
pub struct ReconnectCookies {
    issued: HashMap<u32, Issued>,
}

fn verifier_hash(verifier: &[u8]) -> [u8; 32] {
    Sha256::digest(verifier).into()
}

impl ReconnectCookies {
    /// A new cookie for the session; any earlier cookie of it is dropped.
    pub fn issue(
        &mut self,
        session_id: uuid::Uuid,
        user: &str,
        target: &str,
        source: IpAddr,
    ) -> ServerAutoReconnect {
        self.issued.retain(|_, c| c.session_id != session_id);
        let mut random_bits = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random_bits);
        let mut logon_id = rand::Rng::r#gen::<u32>(&mut rand::rngs::OsRng);
        while logon_id == 0 || self.issued.contains_key(&logon_id) {
            logon_id = rand::Rng::r#gen::<u32>(&mut rand::rngs::OsRng);
        }
        let cookie = ServerAutoReconnect {
            logon_id,
            random_bits,
        };
        let verifier = ClientAutoReconnect::from_server_cookie(&cookie).security_verifier;
        self.issued.insert(
            logon_id,
            Issued {
                verifier_sha256: verifier_hash(&verifier),
                user: user.to_owned(),
                target: target.to_owned(),
                source,
                session_id,
                usable_until: None,
            },
        );
        cookie
    }

    /// The session ended. After a lost client connection its cookie stays
    /// usable for `grace`; after any other end it is forgotten.
    pub fn session_ended(
        &mut self,
        session_id: uuid::Uuid,
        client_lost: bool,
        grace: Duration,
        now: Instant,
    ) {
        if client_lost && !grace.is_zero() {
            for c in self.issued.values_mut() {
                if c.session_id == session_id {
                    c.usable_until = Some(now + grace);
                }
            }
        } else {
            self.issued.retain(|_, c| c.session_id != session_id);
        }
        self.issued
            .retain(|_, c| c.usable_until.is_none_or(|until| until > now));
    }

    /// Redeem the client's answer. A right verifier uses the cookie up,
    /// whether it resumes or not.
    pub fn redeem(
        &mut self,
        answer: &ClientAutoReconnect,
        source: IpAddr,
        now: Instant,
    ) -> Result<Resumption, CookieRefusal> {
        let Some(issued) = self.issued.get(&answer.logon_id) else {
            return Err(CookieRefusal::Unknown);
        };
        let presented = verifier_hash(&answer.security_verifier);
        // Both sides are hashes, so comparing them leaks nothing useful.
        if presented != issued.verifier_sha256 {
            return Err(CookieRefusal::Unknown);
        }
        let Some(issued) = self.issued.remove(&answer.logon_id) else {
            return Err(CookieRefusal::Unknown);
        };
        if issued.source != source {
            return Err(CookieRefusal::OtherAddress);
        }
        if issued.usable_until.is_some_and(|until| until <= now) {
            return Err(CookieRefusal::Expired);
        }
        Ok(Resumption {
            user: issued.user,
            target: issued.target,
            session_id: issued.session_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const ELSEWHERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 9));
    const GRACE: Duration = Duration::from_secs(120);

    fn answer(cookie: &ServerAutoReconnect) -> ClientAutoReconnect {
        ClientAutoReconnect::from_server_cookie(cookie)
    }

    #[test]
    fn a_cookie_resumes_once_from_its_address_after_a_drop() {
        let mut cookies = ReconnectCookies::default();
        let session = uuid::Uuid::new_v4();
        let cookie = cookies.issue(session, "tanaka", "fa-db01", HOME);
        let now = Instant::now();
        cookies.session_ended(session, true, GRACE, now);
        assert_eq!(
            cookies.redeem(&answer(&cookie), HOME, now + Duration::from_secs(5)),
            Ok(Resumption {
                user: "tanaka".into(),
                target: "fa-db01".into(),
                session_id: session,
            })
        );
        assert_eq!(
            cookies.redeem(&answer(&cookie), HOME, now + Duration::from_secs(6)),
            Err(CookieRefusal::Unknown),
            "single use"
        );
    }

    #[test]
    fn another_address_is_refused_and_burns_the_cookie() {
        let mut cookies = ReconnectCookies::default();
        let session = uuid::Uuid::new_v4();
        let cookie = cookies.issue(session, "tanaka", "fa-db01", HOME);
        let now = Instant::now();
        cookies.session_ended(session, true, GRACE, now);
        assert_eq!(
            cookies.redeem(&answer(&cookie), ELSEWHERE, now),
            Err(CookieRefusal::OtherAddress)
        );
        assert_eq!(
            cookies.redeem(&answer(&cookie), HOME, now),
            Err(CookieRefusal::Unknown)
        );
    }

    #[test]
    fn a_wrong_verifier_or_id_resumes_nothing_and_keeps_the_cookie() {
        let mut cookies = ReconnectCookies::default();
        let session = uuid::Uuid::new_v4();
        let cookie = cookies.issue(session, "tanaka", "fa-db01", HOME);
        let mut forged = answer(&cookie);
        forged.security_verifier[0] ^= 1;
        let now = Instant::now();
        assert_eq!(
            cookies.redeem(&forged, HOME, now),
            Err(CookieRefusal::Unknown)
        );
        let mut other_id = answer(&cookie);
        other_id.logon_id = other_id.logon_id.wrapping_add(1);
        assert_eq!(
            cookies.redeem(&other_id, HOME, now),
            Err(CookieRefusal::Unknown)
        );
        assert!(cookies.redeem(&answer(&cookie), HOME, now).is_ok());
    }

    #[test]
    fn a_normal_end_or_the_end_of_the_grace_forgets_the_cookie() {
        let mut cookies = ReconnectCookies::default();
        let now = Instant::now();
        let ended = uuid::Uuid::new_v4();
        let c1 = cookies.issue(ended, "tanaka", "fa-db01", HOME);
        cookies.session_ended(ended, false, GRACE, now);
        assert_eq!(
            cookies.redeem(&answer(&c1), HOME, now),
            Err(CookieRefusal::Unknown)
        );

        let dropped = uuid::Uuid::new_v4();
        let c2 = cookies.issue(dropped, "tanaka", "fa-db01", HOME);
        cookies.session_ended(dropped, true, GRACE, now);
        assert_eq!(
            cookies.redeem(&answer(&c2), HOME, now + GRACE),
            Err(CookieRefusal::Expired)
        );

        // No grace configured: a drop forgets the cookie at once.
        let c3_session = uuid::Uuid::new_v4();
        let c3 = cookies.issue(c3_session, "tanaka", "fa-db01", HOME);
        cookies.session_ended(c3_session, true, Duration::ZERO, now);
        assert_eq!(
            cookies.redeem(&answer(&c3), HOME, now),
            Err(CookieRefusal::Unknown)
        );
    }

    #[test]
    fn only_a_hash_of_the_verifier_is_kept() {
        let mut cookies = ReconnectCookies::default();
        let cookie = cookies.issue(uuid::Uuid::new_v4(), "tanaka", "fa-db01", HOME);
        let verifier = answer(&cookie).security_verifier;
        let kept = &cookies.issued[&cookie.logon_id];
        assert_ne!(&kept.verifier_sha256[..16], &verifier[..]);
        assert_ne!(&kept.verifier_sha256[..16], &cookie.random_bits[..]);
    }
}
