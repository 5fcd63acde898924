//! Rows for people: role, vendor, password hash, sealed TOTP secret and the
//! sign-in state, with the atomic updates that must not race (failure
//! counts, TOTP time-steps). Policy (who may do what) lives in `auth`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, from_micros, is_unique_violation, opt_from_micros, to_micros};

/// What a person does at sekisho.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A vendor engineer who maintains targets through sekisho.
    Engineer,
    /// Reads recordings and the audit log.
    Auditor,
    /// Manages people, policy and live sessions.
    Admin,
    /// An official who approves, rejects and revokes work requests (where
    /// a system's approval route admits the role).
    Approver,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Engineer => "engineer",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Approver => "approver",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "engineer" => Ok(Role::Engineer),
            "auditor" => Ok(Role::Auditor),
            "admin" => Ok(Role::Admin),
            "approver" => Ok(Role::Approver),
            other => Err(format!(
                "unknown role {other:?} (use engineer, auditor, admin or approver)"
            )),
        }
    }
}

/// What `auth::create_user` hands the store; secrets are already hashed.
#[derive(Debug, Clone)]
pub struct NewUserRow<'a> {
    pub name: &'a str,
    pub role: Role,
    pub vendor: Option<&'a str>,
    pub password_hash: &'a str,
    /// Sealed under the master key (`auth::totp::seal_secret`).
    pub totp_secret_sealed: &'a str,
}

/// One person, as the gateways need them. Holds the TOTP secret and the
/// password hash, so it has no `Display`; never print it whole.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    pub vendor: Option<String>,
    /// Own vendor first, then the vendors it subcontracts for.
    pub vendor_chain: Vec<String>,
    pub enabled: bool,
    pub locked_until: Option<DateTime<Utc>>,
    pub failures: u32,
    pub last_signin_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub(crate) password_hash: String,
    pub(crate) totp_secret: String,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("vendor_chain", &self.vendor_chain)
            .field("enabled", &self.enabled)
            .field("locked_until", &self.locked_until)
            .finish_non_exhaustive()
    }
}

impl UserRecord {
    /// Locked now (a lockout that has not yet run out).
    pub fn locked_at(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|t| t > now)
    }
}

/// A line of `user list`: nothing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub name: String,
    pub role: Role,
    pub vendor: Option<String>,
    pub enabled: bool,
    pub locked_until: Option<DateTime<Utc>>,
    pub keys: u32,
    pub last_signin_at: Option<DateTime<Utc>>,
}

/// Locked "until an admin enables": far in the future but inside chrono's range.
pub const LOCKED_INDEFINITELY_MICROS: i64 = 253_402_300_799_000_000; // 9999-12-31T23:59:59Z

impl Store {
    pub async fn add_user(&self, u: &NewUserRow<'_>) -> Result<(), StoreError> {
        if let Some(v) = u.vendor
            && self.vendor(v).await?.is_none()
        {
            return Err(StoreError::NoVendor(v.into()));
        }
        sqlx::query(
            "INSERT INTO users (name, role, vendor, password_hash, totp_secret, enabled, failures, created_at)
             VALUES ($1, $2, $3, $4, $5, 1, 0, $6)",
        )
        .bind(u.name)
        .bind(u.role.as_str())
        .bind(u.vendor)
        .bind(u.password_hash)
        .bind(u.totp_secret_sealed)
        .bind(to_micros(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::UserExists(u.name.into())
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    /// One person with their vendor chain, or `None` if there is no such user.
    pub async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT name, role, vendor, password_hash, totp_secret, enabled, failures,
                    locked_until, last_signin_at, created_at
             FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let vendor: Option<String> = r.try_get("vendor")?;
        let vendor_chain = match &vendor {
            Some(v) => self.vendor_chain(v).await?,
            None => Vec::new(),
        };
        let role: String = r.try_get("role")?;
        let failures: i64 = r.try_get("failures")?;
        Ok(Some(UserRecord {
            name: r.try_get("name")?,
            role: role.parse().map_err(|_| StoreError::Corrupt {
                what: "role",
                value: role.clone(),
            })?,
            vendor,
            vendor_chain,
            enabled: r.try_get::<i64, _>("enabled")? != 0,
            locked_until: opt_from_micros(r.try_get("locked_until")?)?,
            failures: u32::try_from(failures).unwrap_or(u32::MAX),
            last_signin_at: opt_from_micros(r.try_get("last_signin_at")?)?,
            created_at: from_micros(r.try_get("created_at")?)?,
            password_hash: r.try_get("password_hash")?,
            totp_secret: r.try_get("totp_secret")?,
        }))
    }

    /// Everyone, by name, for `user list`.
    pub async fn users(&self) -> Result<Vec<UserSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.name, u.role, u.vendor, u.enabled, u.locked_until, u.last_signin_at,
                    (SELECT COUNT(*) FROM user_keys k WHERE k.user_name = u.name) AS keys
             FROM users u ORDER BY u.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get("role")?;
                let keys: i64 = r.try_get("keys")?;
                Ok(UserSummary {
                    name: r.try_get("name")?,
                    role: role.parse().map_err(|_| StoreError::Corrupt {
                        what: "role",
                        value: role.clone(),
                    })?,
                    vendor: r.try_get("vendor")?,
                    enabled: r.try_get::<i64, _>("enabled")? != 0,
                    locked_until: opt_from_micros(r.try_get("locked_until")?)?,
                    keys: u32::try_from(keys).unwrap_or(u32::MAX),
                    last_signin_at: opt_from_micros(r.try_get("last_signin_at")?)?,
                })
            })
            .collect()
    }

    async fn update_user<'q>(
        &self,
        name: &str,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<(), StoreError> {
        let done = q.execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoUser(name.into()));
        }
        Ok(())
    }

    /// Disables or enables a person. Enabling also clears a lockout; disabling
    /// also closes their sign-in windows.
    pub async fn set_user_enabled(&self, name: &str, enabled: bool) -> Result<(), StoreError> {
        let q = if enabled {
            sqlx::query(
                "UPDATE users SET enabled = 1, failures = 0, locked_until = NULL WHERE name = $1",
            )
        } else {
            sqlx::query("UPDATE users SET enabled = 0 WHERE name = $1")
        };
        self.update_user(name, q.bind(name)).await?;
        if !enabled {
            self.close_signin_windows(name).await?;
        }
        Ok(())
    }

    pub async fn set_password_hash(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        let q = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(hash)
            .bind(name);
        self.update_user(name, q).await?;
        self.close_signin_windows(name).await
    }

    /// Replaces the TOTP secret (sealed); the replay guard starts over and
    /// open sign-in windows close (they were opened with the old secret).
    pub async fn set_totp_secret(&self, name: &str, sealed: &str) -> Result<(), StoreError> {
        let q =
            sqlx::query("UPDATE users SET totp_secret = $1, totp_last_step = NULL WHERE name = $2")
                .bind(sealed)
                .bind(name);
        self.update_user(name, q).await?;
        self.close_signin_windows(name).await
    }

    /// Every person's stored TOTP secret (for sealing old plain-text rows).
    pub async fn totp_secrets(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT name, totp_secret FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("totp_secret")?)))
            .collect()
    }

    /// Replaces a stored TOTP secret by its sealed form, only if the row still
    /// holds `old` (the replay guard and sign-in windows stay: the secret is
    /// the same). Returns whether the row was replaced.
    pub async fn replace_totp_secret(
        &self,
        name: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE users SET totp_secret = $1 WHERE name = $2 AND totp_secret = $3")
                .bind(new)
                .bind(name)
                .bind(old)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the TOTP time-step just accepted, unless this or a later step
    /// was already used: returns false for a replayed code. Atomic, so two
    /// connections presenting the same code cannot both win.
    pub async fn accept_totp_step(&self, name: &str, step: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET totp_last_step = $1
             WHERE name = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Counts a failed sign-in; after `max_failures` in a row (0 = never) the
    /// person is locked until `lock_until` (None = until an admin enables).
    /// Returns the lockout end if this failure caused one.
    pub async fn record_signin_failure(
        &self,
        name: &str,
        max_failures: u32,
        lock_until: Option<DateTime<Utc>>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query(
            "UPDATE users SET failures = failures + 1 WHERE name = $1 RETURNING failures",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let failures: i64 = row.try_get("failures")?;
        if max_failures == 0 || failures < i64::from(max_failures) {
            return Ok(None);
        }
        let until = lock_until
            .map(to_micros)
            .unwrap_or(LOCKED_INDEFINITELY_MICROS);
        sqlx::query("UPDATE users SET locked_until = $1, failures = 0 WHERE name = $2")
            .bind(until)
            .bind(name)
            .execute(&self.pool)
            .await?;
        self.close_signin_windows(name).await?;
        Ok(Some(from_micros(until)?))
    }

    /// A successful sign-in resets the failure count.
    pub async fn record_signin_success(
        &self,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET failures = 0, last_signin_at = $1 WHERE name = $2")
            .bind(to_micros(at))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
