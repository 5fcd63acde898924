//! sekisho's RDP auto-reconnect cookies (`rdp::reconnect` decides what a
//! presented cookie is worth; this keeps them). In the database so that
//! every node sharing it can resume a session another node issued the
//! cookie for, and a restart forgets nothing. Only the SHA-256 of the
//! verifier is kept; a cookie is spent by one atomic update, so of two
//! nodes presented the same cookie at once exactly one gets it.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{
    Store, StoreError, from_micros, is_unique_violation, opt_from_micros, parse_ip, parse_uuid,
    to_micros,
};

/// One issued cookie as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectCookieRow {
    /// The cookie's logon id, which the client sends back in clear.
    pub logon_id: u32,
    /// SHA-256 of the verifier the client will present, lowercase hex.
    pub verifier_sha256: String,
    pub user: String,
    pub target: String,
    /// The session the cookie was issued in.
    pub session_id: Uuid,
    /// The client address it was issued to.
    pub source: IpAddr,
    pub issued_at: DateTime<Utc>,
    /// Set when the client's connection was lost; `None` while the session
    /// runs.
    pub usable_until: Option<DateTime<Utc>>,
    pub used_at: Option<DateTime<Utc>>,
}

/// A cookie just spent by [`Store::spend_reconnect_cookie`], with what
/// the sessions table says of its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpentCookie {
    pub cookie: ReconnectCookieRow,
    /// The issuing session's row still says `live`.
    pub session_live: bool,
}

const COLUMNS: &str = "logon_id, verifier_sha256, user_name, target, session_id, source, issued_at, usable_until, used_at";

fn row_to_cookie(r: &sqlx::any::AnyRow) -> Result<ReconnectCookieRow, StoreError> {
    let logon_id: i64 = r.try_get("logon_id")?;
    Ok(ReconnectCookieRow {
        logon_id: u32::try_from(logon_id).map_err(|_| StoreError::Corrupt {
            what: "auto-reconnect logon id",
            value: logon_id.to_string(),
        })?,
        verifier_sha256: r.try_get("verifier_sha256")?,
        user: r.try_get("user_name")?,
        target: r.try_get("target")?,
        session_id: parse_uuid(&r.try_get::<String, _>("session_id")?)?,
        source: parse_ip(&r.try_get::<String, _>("source")?)?,
        issued_at: from_micros(r.try_get("issued_at")?)?,
        usable_until: opt_from_micros(r.try_get("usable_until")?)?,
        used_at: opt_from_micros(r.try_get("used_at")?)?,
    })
}

impl Store {
    /// Keeps a new cookie; any earlier cookie of its session is dropped.
    /// `Ok(false)` when its logon id is taken (the caller draws another).
    pub async fn add_reconnect_cookie(&self, c: &ReconnectCookieRow) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM rdp_reconnect_cookies WHERE session_id = $1")
            .bind(c.session_id.to_string())
            .execute(&self.pool)
            .await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO rdp_reconnect_cookies ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(i64::from(c.logon_id))
        .bind(c.verifier_sha256.as_str())
        .bind(c.user.as_str())
        .bind(c.target.as_str())
        .bind(c.session_id.to_string())
        .bind(c.source.to_string())
        .bind(to_micros(c.issued_at))
        .bind(c.usable_until.map(to_micros))
        .bind(c.used_at.map(to_micros))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Spends the unused cookie with this logon id and verifier hash: one
    /// update that only an unused row matches, so a cookie is spent once
    /// even when several nodes are presented it at the same moment. `None`
    /// when no unused cookie matches (unknown, forged, or already spent).
    pub async fn spend_reconnect_cookie(
        &self,
        logon_id: u32,
        verifier_sha256: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<SpentCookie>, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE rdp_reconnect_cookies SET used_at = $1
             WHERE logon_id = $2 AND verifier_sha256 = $3 AND used_at IS NULL
             RETURNING {COLUMNS}"
        ))
        .bind(to_micros(at))
        .bind(i64::from(logon_id))
        .bind(verifier_sha256)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let cookie = row_to_cookie(&row)?;
        let live = sqlx::query("SELECT status FROM sessions WHERE id = $1")
            .bind(cookie.session_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get::<String, _>("status"))
            .transpose()?;
        Ok(Some(SpentCookie {
            cookie,
            session_live: live.as_deref() == Some("live"),
        }))
    }

    /// The issuing session ended. After a lost client connection its cookie
    /// stays usable until `usable_until`; `None` (any other end) spends it.
    pub async fn reconnect_session_ended(
        &self,
        session_id: Uuid,
        usable_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let q = match usable_until {
            Some(until) => sqlx::query(
                "UPDATE rdp_reconnect_cookies SET usable_until = $1
                 WHERE session_id = $2 AND used_at IS NULL",
            )
            .bind(to_micros(until)),
            None => sqlx::query(
                "UPDATE rdp_reconnect_cookies SET used_at = $1
                 WHERE session_id = $2 AND used_at IS NULL",
            )
            .bind(to_micros(now)),
        };
        q.bind(session_id.to_string()).execute(&self.pool).await?;
        Ok(())
    }

    /// The cookies issued in a session, spent or not (checks and tests).
    pub async fn reconnect_cookies_of(
        &self,
        session_id: Uuid,
    ) -> Result<Vec<ReconnectCookieRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM rdp_reconnect_cookies WHERE session_id = $1 ORDER BY issued_at"
        ))
        .bind(session_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_cookie).collect()
    }

    /// Deletes the cookies no one can use any more: spent, past their
    /// grace, or issued in a session that is no longer live without its
    /// connection having been lost (its node stopped). Returns how many.
    pub async fn purge_reconnect_cookies(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM rdp_reconnect_cookies
             WHERE used_at IS NOT NULL
                OR usable_until <= $1
                OR (usable_until IS NULL
                    AND NOT EXISTS (SELECT 1 FROM sessions s
                                    WHERE s.id = rdp_reconnect_cookies.session_id AND s.status = 'live'))",
        )
        .bind(to_micros(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
