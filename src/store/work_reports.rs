//! Work reports (作業報告) as the engineer completes them and the approver
//! signs them off (検収). The sessions, commands and evidence of a report
//! are never stored here: they are drafted from the records each time
//! (`report::work`). Only what people add is kept: the result, summary,
//! follow-ups and the sign-off. After sign-off the row is never changed:
//! every write names `signed_off_at IS NULL` in its condition.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, from_micros, is_unique_violation, opt_from_micros, to_micros};

/// How the work ended, as the engineer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkResult {
    /// 完了
    Completed,
    /// 未完了
    Incomplete,
    /// 中止
    Aborted,
}

impl WorkResult {
    pub const ALL: [WorkResult; 3] = [
        WorkResult::Completed,
        WorkResult::Incomplete,
        WorkResult::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkResult::Completed => "completed",
            WorkResult::Incomplete => "incomplete",
            WorkResult::Aborted => "aborted",
        }
    }

    /// The word on the officials' form.
    pub fn label(self) -> &'static str {
        match self {
            WorkResult::Completed => "完了",
            WorkResult::Incomplete => "未完了",
            WorkResult::Aborted => "中止",
        }
    }
}

impl fmt::Display for WorkResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkResult {
    type Err = String;
    fn from_str(s: &str) -> Result<WorkResult, String> {
        let s = s.trim();
        WorkResult::ALL
            .into_iter()
            .find(|r| r.as_str() == s || r.label() == s)
            .ok_or_else(|| {
                format!("unknown result {s:?} (completed/完了, incomplete/未完了 or aborted/中止)")
            })
    }
}

/// What people added to the drafted report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkReportRecord {
    pub number: String,
    /// The revision of the request the work ran under.
    pub revision: u32,
    pub result: WorkResult,
    pub summary: String,
    pub follow_ups: String,
    pub written_by: String,
    pub written_at: DateTime<Utc>,
    pub signed_off_by: Option<String>,
    pub signed_off_at: Option<DateTime<Utc>>,
    pub sign_off_comment: String,
}

impl WorkReportRecord {
    pub fn is_signed_off(&self) -> bool {
        self.signed_off_at.is_some()
    }
}

impl Store {
    /// The completed report of a request, if the engineer wrote one.
    pub async fn work_report(&self, number: &str) -> Result<Option<WorkReportRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT number, revision, result, summary, follow_ups, written_by, written_at,
                    signed_off_by, signed_off_at, sign_off_comment
             FROM work_reports WHERE number = $1",
        )
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| report_from_row(&r)).transpose()
    }

    /// Writes (or rewrites) the engineer's part while it is not signed off.
    /// Errors with `ReportSignedOff` once it is.
    pub async fn write_work_report(&self, r: &WorkReportRecord) -> Result<(), StoreError> {
        let insert = sqlx::query(
            "INSERT INTO work_reports (number, revision, result, summary, follow_ups, written_by,
                 written_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(r.number.as_str())
        .bind(i64::from(r.revision))
        .bind(r.result.as_str())
        .bind(r.summary.as_str())
        .bind(r.follow_ups.as_str())
        .bind(r.written_by.as_str())
        .bind(to_micros(r.written_at))
        .execute(&self.pool)
        .await;
        match insert {
            Ok(_) => return Ok(()),
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let done = sqlx::query(
            "UPDATE work_reports SET revision = $1, result = $2, summary = $3, follow_ups = $4,
                    written_by = $5, written_at = $6
             WHERE number = $7 AND signed_off_at IS NULL",
        )
        .bind(i64::from(r.revision))
        .bind(r.result.as_str())
        .bind(r.summary.as_str())
        .bind(r.follow_ups.as_str())
        .bind(r.written_by.as_str())
        .bind(to_micros(r.written_at))
        .bind(r.number.as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::ReportSignedOff(r.number.clone()));
        }
        Ok(())
    }

    /// Signs the report off, once: errors with `ReportSignedOff` if it
    /// already is (someone else was first).
    pub async fn sign_off_work_report(
        &self,
        number: &str,
        by: &str,
        comment: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE work_reports SET signed_off_by = $1, signed_off_at = $2, sign_off_comment = $3
             WHERE number = $4 AND signed_off_at IS NULL",
        )
        .bind(by)
        .bind(to_micros(at))
        .bind(comment)
        .bind(number)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::ReportSignedOff(number.into()));
        }
        Ok(())
    }
}

fn report_from_row(r: &sqlx::any::AnyRow) -> Result<WorkReportRecord, StoreError> {
    let revision: i64 = r.try_get("revision")?;
    let result: String = r.try_get("result")?;
    Ok(WorkReportRecord {
        number: r.try_get("number")?,
        revision: u32::try_from(revision).map_err(|_| StoreError::Corrupt {
            what: "report revision",
            value: revision.to_string(),
        })?,
        result: result.parse().map_err(|_| StoreError::Corrupt {
            what: "report result",
            value: result.clone(),
        })?,
        summary: r.try_get("summary")?,
        follow_ups: r.try_get("follow_ups")?,
        written_by: r.try_get("written_by")?,
        written_at: from_micros(r.try_get("written_at")?)?,
        signed_off_by: r.try_get("signed_off_by")?,
        signed_off_at: opt_from_micros(r.try_get("signed_off_at")?)?,
        sign_off_comment: r.try_get("sign_off_comment")?,
    })
}
