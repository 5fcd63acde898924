//! Rows for the SSH public keys people register.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, from_micros, is_unique_violation, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub user: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The OpenSSH public key line.
    pub openssh: String,
    pub comment: String,
    pub added_at: DateTime<Utc>,
}

impl Store {
    pub async fn add_key(
        &self,
        user: &str,
        fingerprint: &str,
        openssh: &str,
        comment: &str,
    ) -> Result<(), StoreError> {
        if self.user(user).await?.is_none() {
            return Err(StoreError::NoUser(user.into()));
        }
        sqlx::query(
            "INSERT INTO user_keys (user_name, fingerprint, openssh, comment, added_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user)
        .bind(fingerprint)
        .bind(openssh)
        .bind(comment)
        .bind(to_micros(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::KeyExists {
                    user: user.into(),
                    fingerprint: fingerprint.into(),
                }
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    pub async fn remove_key(&self, user: &str, fingerprint: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM user_keys WHERE user_name = $1 AND fingerprint = $2")
            .bind(user)
            .bind(fingerprint)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            if self.user(user).await?.is_none() {
                return Err(StoreError::NoUser(user.into()));
            }
            return Err(StoreError::NoKey {
                user: user.into(),
                fingerprint: fingerprint.into(),
            });
        }
        Ok(())
    }

    pub async fn keys(&self, user: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_name, fingerprint, openssh, comment, added_at FROM user_keys
             WHERE user_name = $1 ORDER BY added_at, fingerprint",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyRecord {
                    user: r.try_get("user_name")?,
                    fingerprint: r.try_get("fingerprint")?,
                    openssh: r.try_get("openssh")?,
                    comment: r.try_get("comment")?,
                    added_at: from_micros(r.try_get("added_at")?)?,
                })
            })
            .collect()
    }

    /// Whether `user` registered the key with this fingerprint.
    pub async fn has_key(&self, user: &str, fingerprint: &str) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT 1 AS one FROM user_keys WHERE user_name = $1 AND fingerprint = $2")
                .bind(user)
                .bind(fingerprint)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }
}
