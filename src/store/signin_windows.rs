//! Sign-in windows: after a person's TOTP code is accepted from an address,
//! further sign-ins from that address may skip the code for a short while.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, from_micros, to_micros};

impl Store {
    pub async fn open_signin_window(
        &self,
        name: &str,
        source: IpAddr,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO signin_windows (user_name, source, opened_at, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_name, source) DO UPDATE SET opened_at = $3, expires_at = $4",
        )
        .bind(name)
        .bind(source.to_string())
        .bind(to_micros(now))
        .bind(to_micros(until))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When the window for this person and address closes, if it is open at `now`.
    pub async fn signin_window(
        &self,
        name: &str,
        source: IpAddr,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query(
            "SELECT expires_at FROM signin_windows WHERE user_name = $1 AND source = $2 AND expires_at > $3",
        )
        .bind(name)
        .bind(source.to_string())
        .bind(to_micros(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| from_micros(r.try_get("expires_at")?))
            .transpose()
    }

    pub async fn close_signin_windows(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM signin_windows WHERE user_name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
