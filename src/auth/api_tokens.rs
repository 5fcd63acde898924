//! API tokens: secrets an administrator issues to one person for scripts,
//! sent as `Authorization: Bearer TOKEN` to the console's `/api/v1`.
//!
//! - Only the token's SHA-256 is stored (`api_tokens`); the token is shown
//!   once, when issued. A copy of the database does not let anyone call the
//!   API.
//! - A token acts as its person with their role *now*: a disabled person's
//!   tokens stop working, a changed role applies at once. It ends at its
//!   expiry or when revoked; revoked rows stay, so `list` shows the history.
//! - Issuing and revoking are audited (`admin_change`, actions
//!   `api_token_issue` / `api_token_revoke`); each use is not (the calls a
//!   token makes are audited where they change something, e.g. a kill).
//! - A token is not a second factor: the actions that ask for a fresh code
//!   in the console (kill) still ask for one with a token.

use chrono::{DateTime, Utc};
use sha2::Digest as _;
use sqlx::Row;

use super::admin_event;
use crate::store::{Store, StoreError, UserRecord};

/// What every token starts with (so secret scanners and people recognise one).
pub const PREFIX: &str = "sekisho_";

#[derive(Debug, thiserror::Error)]
pub enum ApiTokenError {
    #[error("no user {0}")]
    NoUser(String),
    #[error("user {0} is disabled")]
    UserDisabled(String),
    #[error("no API token {0}")]
    NoToken(String),
    #[error("API token {0} is already revoked")]
    AlreadyRevoked(String),
    #[error("the label is too long (at most 100 characters)")]
    LabelTooLong,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ApiTokenError {
    fn from(e: sqlx::Error) -> Self {
        ApiTokenError::Store(e.into())
    }
}

/// One token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiToken {
    /// Public id (the token's first characters after the prefix).
    pub id: String,
    pub user: String,
    pub label: String,
    pub issued_by: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A token just issued: shown once.
#[derive(Debug)]
pub struct Issued {
    pub token: zeroize::Zeroizing<String>,
    pub record: ApiToken,
}

fn hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn time(us: Option<i64>) -> Option<DateTime<Utc>> {
    us.and_then(DateTime::from_timestamp_micros)
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<ApiToken, sqlx::Error> {
    Ok(ApiToken {
        id: r.try_get("id")?,
        user: r.try_get("user_name")?,
        label: r.try_get("label")?,
        issued_by: r.try_get("issued_by")?,
        issued_at: time(Some(r.try_get("issued_at")?)).unwrap_or_default(),
        expires_at: time(r.try_get("expires_at")?),
        revoked_at: time(r.try_get("revoked_at")?),
        last_used_at: time(r.try_get("last_used_at")?),
    })
}

const COLUMNS: &str =
    "id, user_name, label, issued_by, issued_at, expires_at, revoked_at, last_used_at";

/// Issues a token for `user` (who must exist and be enabled), valid until
/// `expires_at` (None: until revoked); audited as done by `by`.
pub async fn issue(
    store: &Store,
    user: &str,
    label: &str,
    by: &str,
    expires_at: Option<DateTime<Utc>>,
) -> Result<Issued, ApiTokenError> {
    use base64::Engine as _;
    use rand::RngCore as _;
    let label = label.trim();
    if label.chars().count() > 100 {
        return Err(ApiTokenError::LabelTooLong);
    }
    let person = store
        .user(user)
        .await?
        .ok_or_else(|| ApiTokenError::NoUser(user.into()))?;
    if !person.enabled {
        return Err(ApiTokenError::UserDisabled(user.into()));
    }
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let token = zeroize::Zeroizing::new(format!(
        "{PREFIX}{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    ));
    let now = Utc::now();
    sqlx::query(
        "INSERT INTO api_tokens (id, token_hash, user_name, label, issued_by, issued_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.as_str())
    .bind(hash(&token))
    .bind(person.name.as_str())
    .bind(label)
    .bind(by)
    .bind(now.timestamp_micros())
    .bind(expires_at.map(|t| t.timestamp_micros()))
    .execute(store.pool())
    .await?;
    let until = expires_at.map_or_else(
        || "until revoked".to_string(),
        |t| format!("until {}", t.to_rfc3339()),
    );
    store
        .audit(
            &admin_event(
                by,
                "api_token_issue",
                format!("{by} issued API token {id} for {} ({until})", person.name),
            )
            .user(&person.name)
            .with("token", id.as_str())
            .with("label", label),
        )
        .await?;
    Ok(Issued {
        token,
        record: ApiToken {
            id,
            user: person.name,
            label: label.to_string(),
            issued_by: by.to_string(),
            issued_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        },
    })
}

/// Revokes token `id`; audited as done by `by`.
pub async fn revoke(store: &Store, id: &str, by: &str) -> Result<ApiToken, ApiTokenError> {
    let id = id.trim().trim_start_matches(PREFIX);
    // The id alone, or a whole token pasted by mistake.
    let id = id.split('_').next().unwrap_or_default();
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?
        .ok_or_else(|| ApiTokenError::NoToken(id.into()))?;
    let token = from_row(&row)?;
    if token.revoked_at.is_some() {
        return Err(ApiTokenError::AlreadyRevoked(id.into()));
    }
    let now = Utc::now();
    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now.timestamp_micros())
        .bind(id)
        .execute(store.pool())
        .await?;
    store
        .audit(
            &admin_event(
                by,
                "api_token_revoke",
                format!("{by} revoked API token {id} of {}", token.user),
            )
            .user(&token.user)
            .with("token", id),
        )
        .await?;
    Ok(ApiToken {
        revoked_at: Some(now),
        ..token
    })
}

/// Tokens, newest first; of one person if `user` is given.
pub async fn list(store: &Store, user: Option<&str>) -> Result<Vec<ApiToken>, ApiTokenError> {
    let rows = match user {
        Some(u) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM api_tokens WHERE user_name = $1 ORDER BY issued_at DESC"
            ))
            .bind(u)
            .fetch_all(store.pool())
            .await?
        }
        None => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM api_tokens ORDER BY issued_at DESC"
            ))
            .fetch_all(store.pool())
            .await?
        }
    };
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// The person a presented token acts for: the token must be known, not
/// revoked, not expired, and its person enabled. Marks it used.
pub async fn authenticate(
    store: &Store,
    token: &str,
) -> Result<Option<(ApiToken, UserRecord)>, StoreError> {
    if !token.starts_with(PREFIX) || token.len() > 200 {
        return Ok(None);
    }
    let now = Utc::now();
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL
           AND (expires_at IS NULL OR expires_at > $2)"
    ))
    .bind(hash(token))
    .bind(now.timestamp_micros())
    .fetch_optional(store.pool())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let t = from_row(&row)?;
    let Some(user) = store.user(&t.user).await? else {
        return Ok(None);
    };
    if !user.enabled {
        return Ok(None);
    }
    sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
        .bind(now.timestamp_micros())
        .bind(t.id.as_str())
        .execute(store.pool())
        .await?;
    Ok(Some((t, user)))
}
