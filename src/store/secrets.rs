//! Encrypted secret rows. Encryption and decryption happen in
//! `auth::secrets`; the store only ever sees nonce and ciphertext.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, from_micros, to_micros};

/// A secret's name and when it was last set: what `secret list` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretName {
    pub name: String,
    pub updated_at: DateTime<Utc>,
}

/// The stored, encrypted form of one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl Store {
    /// Inserts or replaces the encrypted value of `name`.
    pub async fn put_secret(&self, name: &str, row: &SecretRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO secrets (name, nonce, ciphertext, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET nonce = $2, ciphertext = $3, updated_at = $4",
        )
        .bind(name)
        .bind(row.nonce.as_slice())
        .bind(row.ciphertext.as_slice())
        .bind(to_micros(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn secret_row(&self, name: &str) -> Result<Option<SecretRow>, StoreError> {
        let row = sqlx::query("SELECT nonce, ciphertext FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(SecretRow {
                nonce: r.try_get("nonce")?,
                ciphertext: r.try_get("ciphertext")?,
            })
        })
        .transpose()
    }

    pub async fn secret_names(&self) -> Result<Vec<SecretName>, StoreError> {
        let rows = sqlx::query("SELECT name, updated_at FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SecretName {
                    name: r.try_get("name")?,
                    updated_at: from_micros(r.try_get("updated_at")?)?,
                })
            })
            .collect()
    }

    pub async fn remove_secret(&self, name: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSecret(name.into()));
        }
        Ok(())
    }
}
