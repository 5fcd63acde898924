//! One-time tickets: issued for one user, target and protocol, used at most
//! once (an atomic update), purged after expiry.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, from_micros, opt_from_micros, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRow {
    pub user: String,
    pub target: String,
    pub protocol: String,
    pub issued_by: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Stores a ticket by the SHA-256 of its text. The text itself is
    /// stored only sealed (`sealed`, RDP tickets, for NLA), never in clear.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_ticket(
        &self,
        hash_hex: &str,
        user: &str,
        target: &str,
        protocol: &str,
        issued_by: &str,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        sealed: Option<&super::SecretRow>,
    ) -> Result<(), StoreError> {
        if self.user(user).await?.is_none() {
            return Err(StoreError::NoUser(user.into()));
        }
        let query = match sealed {
            None => sqlx::query(
                "INSERT INTO tickets (hash, user_name, target, protocol, issued_by, issued_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            ),
            Some(_) => sqlx::query(
                "INSERT INTO tickets (hash, user_name, target, protocol, issued_by, issued_at, expires_at,
                                      sealed_nonce, sealed_text)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            ),
        };
        let mut query = query
            .bind(hash_hex)
            .bind(user)
            .bind(target)
            .bind(protocol)
            .bind(issued_by)
            .bind(to_micros(issued_at))
            .bind(to_micros(expires_at));
        if let Some(row) = sealed {
            query = query
                .bind(row.nonce.as_slice())
                .bind(row.ciphertext.as_slice());
        }
        query.execute(&self.pool).await?;
        Ok(())
    }

    /// The newest unused, unexpired ticket of `user` for `target` over
    /// `protocol` that is kept sealed: its hash and sealed text.
    pub async fn live_sealed_ticket(
        &self,
        user: &str,
        target: &str,
        protocol: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, super::SecretRow)>, StoreError> {
        let row = sqlx::query(
            "SELECT hash, sealed_nonce, sealed_text FROM tickets
             WHERE user_name = $1 AND target = $2 AND protocol = $3
               AND used_at IS NULL AND expires_at > $4
               AND sealed_nonce IS NOT NULL AND sealed_text IS NOT NULL
             ORDER BY issued_at DESC
             LIMIT 1",
        )
        .bind(user)
        .bind(target)
        .bind(protocol)
        .bind(to_micros(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                r.try_get("hash")?,
                super::SecretRow {
                    nonce: r.try_get("sealed_nonce")?,
                    ciphertext: r.try_get("sealed_text")?,
                },
            ))
        })
        .transpose()
    }

    /// How many tickets still hold a sealed text (for tests and checks).
    pub async fn sealed_ticket_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM tickets WHERE sealed_nonce IS NOT NULL OR sealed_text IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    pub async fn ticket(&self, hash_hex: &str) -> Result<Option<TicketRow>, StoreError> {
        let row = sqlx::query(
            "SELECT user_name, target, protocol, issued_by, issued_at, expires_at, used_at
             FROM tickets WHERE hash = $1",
        )
        .bind(hash_hex)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(TicketRow {
                user: r.try_get("user_name")?,
                target: r.try_get("target")?,
                protocol: r.try_get("protocol")?,
                issued_by: r.try_get("issued_by")?,
                issued_at: from_micros(r.try_get("issued_at")?)?,
                expires_at: from_micros(r.try_get("expires_at")?)?,
                used_at: opt_from_micros(r.try_get("used_at")?)?,
            })
        })
        .transpose()
    }

    /// Marks a ticket used and drops its sealed text; false if it was
    /// already used (or does not exist). Atomic, so a ticket redeemed twice
    /// at once is accepted once.
    pub async fn use_ticket(&self, hash_hex: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE tickets SET used_at = $1, sealed_nonce = NULL, sealed_text = NULL WHERE hash = $2 AND used_at IS NULL")
                .bind(to_micros(at))
                .bind(hash_hex)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes tickets that expired before `before` and drops the sealed
    /// text of spent ones; returns how many tickets were deleted.
    pub async fn purge_tickets(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM tickets WHERE expires_at < $1")
            .bind(to_micros(before))
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "UPDATE tickets SET sealed_nonce = NULL, sealed_text = NULL
             WHERE used_at IS NOT NULL AND (sealed_nonce IS NOT NULL OR sealed_text IS NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
