//! Rows of emergency stops (`emergency_stops`): in force until lifted,
//! never deleted. What a stop does is in `session::stop`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, from_micros, opt_from_micros, to_micros};
use crate::policy::{EmergencyStop, StopScope};

/// One stop, in force or lifted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopRecord {
    pub id: i64,
    /// `all`, `system`, `vendor`.
    pub scope: String,
    /// The system or vendor; empty for `all`.
    pub subject: String,
    pub reason: String,
    pub stopped_by: String,
    pub stopped_at: DateTime<Utc>,
    pub lifted_by: Option<String>,
    pub lifted_at: Option<DateTime<Utc>>,
    pub lift_reason: Option<String>,
}

impl StopRecord {
    pub fn in_force(&self) -> bool {
        self.lifted_at.is_none()
    }

    /// The scope as `decide` and the sweep match it.
    pub fn scope(&self) -> Result<StopScope, StoreError> {
        StopScope::from_parts(&self.scope, &self.subject).map_err(|value| StoreError::Corrupt {
            what: "emergency stop scope",
            value,
        })
    }

    pub fn as_stop(&self) -> Result<EmergencyStop, StoreError> {
        Ok(EmergencyStop {
            id: self.id,
            scope: self.scope()?,
            reason: self.reason.clone(),
            by: self.stopped_by.clone(),
            since: self.stopped_at,
        })
    }
}

const COLUMNS: &str =
    "id, scope, subject, reason, stopped_by, stopped_at, lifted_by, lifted_at, lift_reason";

impl Store {
    /// Writes a new stop, in force from `at`.
    pub async fn add_stop(
        &self,
        scope: &StopScope,
        reason: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<StopRecord, StoreError> {
        let row = sqlx::query(&format!(
            "INSERT INTO emergency_stops (scope, subject, reason, stopped_by, stopped_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
        ))
        .bind(scope.kind())
        .bind(scope.subject())
        .bind(reason)
        .bind(by)
        .bind(to_micros(at))
        .fetch_one(&self.pool)
        .await?;
        stop_from_row(&row)
    }

    /// Lifts a stop in force. A stop already lifted is not lifted again
    /// (its first lift is kept): `StopLifted`.
    pub async fn lift_stop(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<StopRecord, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE emergency_stops SET lifted_by = $1, lifted_at = $2, lift_reason = $3
             WHERE id = $4 AND lifted_at IS NULL RETURNING {COLUMNS}"
        ))
        .bind(by)
        .bind(to_micros(at))
        .bind(reason)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => stop_from_row(&r),
            None => match self.stop(id).await? {
                Some(_) => Err(StoreError::StopLifted(id)),
                None => Err(StoreError::NoStop(id)),
            },
        }
    }

    pub async fn stop(&self, id: i64) -> Result<Option<StopRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM emergency_stops WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(stop_from_row).transpose()
    }

    /// The stops in force, oldest first.
    pub async fn stops_in_force(&self) -> Result<Vec<StopRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM emergency_stops WHERE lifted_at IS NULL ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stop_from_row).collect()
    }

    /// The stops in force as `decide` takes them.
    pub async fn active_stops(&self) -> Result<Vec<EmergencyStop>, StoreError> {
        self.stops_in_force()
            .await?
            .iter()
            .map(StopRecord::as_stop)
            .collect()
    }

    /// The newest `limit` stops, in force or lifted, newest first.
    pub async fn recent_stops(&self, limit: u32) -> Result<Vec<StopRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM emergency_stops ORDER BY id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stop_from_row).collect()
    }
}

fn stop_from_row(r: &sqlx::any::AnyRow) -> Result<StopRecord, StoreError> {
    Ok(StopRecord {
        id: r.try_get("id")?,
        scope: r.try_get("scope")?,
        subject: r.try_get("subject")?,
        reason: r.try_get("reason")?,
        stopped_by: r.try_get("stopped_by")?,
        stopped_at: from_micros(r.try_get("stopped_at")?)?,
        lifted_by: r.try_get("lifted_by")?,
        lifted_at: opt_from_micros(r.try_get("lifted_at")?)?,
        lift_reason: r.try_get("lift_reason")?,
    })
}
