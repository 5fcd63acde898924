//! Work requests (作業申請): one row per revision with its engineers and
//! approved steps. States move only by compare-and-set (`move_work_request`
//! names the state it expects), so two people acting at once cannot both
//! win; which moves are allowed is decided in `procedure::state`, not here.

use chrono::{DateTime, Datelike, Utc};
use sqlx::Row;

use super::{
    Bind, Conditions, Store, StoreError, from_micros, is_unique_violation, opt_from_micros,
    to_micros,
};
use crate::policy::Protocol;
use crate::procedure::state::{RequestState, StepApproval, Urgency};

/// What a requester writes; stored as a draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWorkRequest {
    pub system: String,
    pub vendor: String,
    pub requester: String,
    pub engineers: Vec<String>,
    pub targets: Vec<String>,
    pub protocols: Vec<Protocol>,
    /// 目的
    pub purpose: String,
    /// 作業内容
    pub work: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub urgency: Urgency,
}

/// One revision of a work request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkRequest {
    /// `R-2026-0001`: the same for every revision.
    pub number: String,
    /// 1 for the first filing, then 2, 3, … for each change.
    pub revision: u32,
    pub system: String,
    pub vendor: String,
    pub requester: String,
    pub engineers: Vec<String>,
    pub targets: Vec<String>,
    pub protocols: Vec<Protocol>,
    pub purpose: String,
    pub work: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub urgency: Urgency,
    pub state: RequestState,
    /// When the approved window opens: the window's start, or the approval
    /// time if it came late.
    pub approved_from: Option<DateTime<Utc>>,
    /// The last move: when, by whom, why.
    pub state_at: DateTime<Utc>,
    pub state_by: String,
    pub state_reason: String,
    pub created_at: DateTime<Utc>,
    /// Approved steps, in step order.
    pub approvals: Vec<StepApproval>,
}

impl WorkRequest {
    /// `R-2026-0001 rev 2`.
    pub fn label(&self) -> String {
        format!("{} rev {}", self.number, self.revision)
    }

    /// The stored new-request shape of this revision (to start the next).
    pub fn as_new(&self) -> NewWorkRequest {
        NewWorkRequest {
            system: self.system.clone(),
            vendor: self.vendor.clone(),
            requester: self.requester.clone(),
            engineers: self.engineers.clone(),
            targets: self.targets.clone(),
            protocols: self.protocols.clone(),
            purpose: self.purpose.clone(),
            work: self.work.clone(),
            window_start: self.window_start,
            window_end: self.window_end,
            urgency: self.urgency,
        }
    }
}

/// Which requests `work_requests` returns (latest revision of each number
/// unless `all_revisions`); empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct WorkRequestFilter {
    pub states: Vec<RequestState>,
    pub vendor: Option<String>,
    pub system: Option<String>,
    pub requester: Option<String>,
    /// Requests naming this engineer.
    pub engineer: Option<String>,
    /// Requests whose window ends after this.
    pub window_ends_after: Option<DateTime<Utc>>,
    /// Requests whose window ended at or before this.
    pub window_ended_by: Option<DateTime<Utc>>,
    pub all_revisions: bool,
}

const COLUMNS: &str = "r.number, r.revision, r.system, r.vendor, r.requester, r.targets, r.protocols,
    r.purpose, r.work, r.window_start, r.window_end, r.urgency, r.state, r.approved_from, r.state_at,
    r.state_by, r.state_reason, r.created_at";

/// How many times a new number is tried when another filing took it first.
const NUMBER_ATTEMPTS: usize = 8;

impl Store {
    /// Stores a new request as a draft with the next number of the year of
    /// `now` (`R-YYYY-NNNN`, revision 1).
    pub async fn create_work_request(
        &self,
        r: &NewWorkRequest,
        now: DateTime<Utc>,
    ) -> Result<WorkRequest, StoreError> {
        let prefix = format!("R-{:04}-", now.year());
        for _ in 0..NUMBER_ATTEMPTS {
            let row =
                sqlx::query("SELECT MAX(number) AS last FROM work_requests WHERE number LIKE $1")
                    .bind(format!("{prefix}%"))
                    .fetch_one(&self.pool)
                    .await?;
            let last: Option<String> = row.try_get("last")?;
            let next = last
                .as_deref()
                .and_then(|l| l.strip_prefix(&prefix))
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
                + 1;
            let number = format!("{prefix}{next:04}");
            match self.insert_revision(&number, 1, r, now).await {
                Ok(()) => return self.require_work_request(&number, Some(1)).await,
                Err(StoreError::Database(e)) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Corrupt {
            what: "work request number",
            value: format!("{prefix}… (no free number after {NUMBER_ATTEMPTS} attempts)"),
        })
    }

    /// Stores the next revision of `number` as a draft (a submitted
    /// revision is never edited: a change is a new revision).
    pub async fn create_work_request_revision(
        &self,
        number: &str,
        r: &NewWorkRequest,
        now: DateTime<Utc>,
    ) -> Result<WorkRequest, StoreError> {
        let latest = self.require_work_request(number, None).await?;
        let revision = latest.revision + 1;
        self.insert_revision(number, revision, r, now)
            .await
            .map_err(|e| match e {
                StoreError::Database(d) if is_unique_violation(&d) => StoreError::RequestChanged {
                    number: number.into(),
                    revision,
                },
                e => e,
            })?;
        self.require_work_request(number, Some(revision)).await
    }

    async fn insert_revision(
        &self,
        number: &str,
        revision: u32,
        r: &NewWorkRequest,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO work_requests (number, revision, system, vendor, requester, targets, protocols,
                 purpose, work, window_start, window_end, urgency, state, state_at, state_by,
                 state_reason, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'draft', $13, $14, '', $13)",
        )
        .bind(number)
        .bind(i64::from(revision))
        .bind(r.system.as_str())
        .bind(r.vendor.as_str())
        .bind(r.requester.as_str())
        .bind(join_list(r.targets.iter().map(String::as_str)))
        .bind(join_list(r.protocols.iter().map(|p| p.as_str())))
        .bind(r.purpose.as_str())
        .bind(r.work.as_str())
        .bind(to_micros(r.window_start))
        .bind(to_micros(r.window_end))
        .bind(r.urgency.as_str())
        .bind(to_micros(now))
        .bind(r.requester.as_str())
        .execute(&mut *tx)
        .await?;
        for e in &r.engineers {
            sqlx::query(
                "INSERT INTO work_request_engineers (number, revision, user_name) VALUES ($1, $2, $3)",
            )
            .bind(number)
            .bind(i64::from(revision))
            .bind(e.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One revision (`None`: the latest), with engineers and approvals.
    pub async fn work_request(
        &self,
        number: &str,
        revision: Option<u32>,
    ) -> Result<Option<WorkRequest>, StoreError> {
        let row =
            match revision {
                Some(rev) => sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM work_requests r WHERE r.number = $1 AND r.revision = $2"
                ))
                .bind(number)
                .bind(i64::from(rev))
                .fetch_optional(&self.pool)
                .await?,
                None => {
                    sqlx::query(&format!(
                        "SELECT {COLUMNS} FROM work_requests r WHERE r.number = $1
                     ORDER BY r.revision DESC LIMIT 1"
                    ))
                    .bind(number)
                    .fetch_optional(&self.pool)
                    .await?
                }
            };
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(self.complete(request_from_row(&r)?).await?)),
        }
    }

    /// As `work_request`, with a clear error when there is none.
    pub async fn require_work_request(
        &self,
        number: &str,
        revision: Option<u32>,
    ) -> Result<WorkRequest, StoreError> {
        self.work_request(number, revision).await?.ok_or_else(|| {
            StoreError::NoRequest(match revision {
                Some(r) => format!("{number} rev {r}"),
                None => number.to_string(),
            })
        })
    }

    /// Requests matching the filter, by number then revision.
    pub async fn work_requests(
        &self,
        f: &WorkRequestFilter,
    ) -> Result<Vec<WorkRequest>, StoreError> {
        let mut c = Conditions::default();
        if !f.states.is_empty() {
            // State names are our own constants, never user text.
            let list: Vec<String> = f
                .states
                .iter()
                .map(|s| format!("'{}'", s.as_str()))
                .collect();
            c.push_raw(&format!("r.state IN ({})", list.join(", ")));
        }
        if let Some(v) = &f.vendor {
            c.push("r.vendor =", Bind::Text(v.clone()));
        }
        if let Some(v) = &f.system {
            c.push("r.system =", Bind::Text(v.clone()));
        }
        if let Some(v) = &f.requester {
            c.push("r.requester =", Bind::Text(v.clone()));
        }
        if let Some(t) = f.window_ends_after {
            c.push("r.window_end >", Bind::Int(to_micros(t)));
        }
        if let Some(t) = f.window_ended_by {
            c.push("r.window_end <=", Bind::Int(to_micros(t)));
        }
        if let Some(e) = &f.engineer {
            c.push_expr(
                |p| {
                    format!(
                        "EXISTS (SELECT 1 FROM work_request_engineers e
                         WHERE e.number = r.number AND e.revision = r.revision AND e.user_name = {p})"
                    )
                },
                Bind::Text(e.clone()),
            );
        }
        if !f.all_revisions {
            c.push_raw(
                "r.revision = (SELECT MAX(l.revision) FROM work_requests l WHERE l.number = r.number)",
            );
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM work_requests r{} ORDER BY r.number, r.revision",
            c.where_clause()
        );
        let rows = c.bind_all(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.complete(request_from_row(r)?).await?);
        }
        Ok(out)
    }

    /// The requests that open a window to `engineer` now or later: approved
    /// or active, window not yet ended.
    pub async fn open_work_requests_for(
        &self,
        engineer: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkRequest>, StoreError> {
        self.work_requests(&WorkRequestFilter {
            states: vec![RequestState::Approved, RequestState::Active],
            engineer: Some(engineer.into()),
            window_ends_after: Some(now),
            all_revisions: true,
            ..WorkRequestFilter::default()
        })
        .await
    }

    /// Moves a revision from `from` to `to` if it is still in `from`
    /// (compare-and-set); `approved_from` is set when given. Errors with
    /// `RequestChanged` if someone moved it first.
    #[allow(clippy::too_many_arguments)]
    pub async fn move_work_request(
        &self,
        number: &str,
        revision: u32,
        from: RequestState,
        to: RequestState,
        by: &str,
        reason: &str,
        at: DateTime<Utc>,
        approved_from: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE work_requests SET state = $1, state_at = $2, state_by = $3, state_reason = $4,
                    approved_from = COALESCE($5, approved_from)
             WHERE number = $6 AND revision = $7 AND state = $8",
        )
        .bind(to.as_str())
        .bind(to_micros(at))
        .bind(by)
        .bind(reason)
        .bind(approved_from.map(to_micros))
        .bind(number)
        .bind(i64::from(revision))
        .bind(from.as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            self.require_work_request(number, Some(revision)).await?;
            return Err(StoreError::RequestChanged {
                number: number.into(),
                revision,
            });
        }
        Ok(())
    }

    /// Records one approved step and, in the same transaction, the state
    /// it leads to (still `submitted` after a first of two steps). Fails
    /// with `RequestChanged` if the step was approved or the request moved
    /// meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub async fn approve_work_request_step(
        &self,
        number: &str,
        revision: u32,
        approval: &StepApproval,
        to: RequestState,
        approved_from: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let changed = || StoreError::RequestChanged {
            number: number.into(),
            revision,
        };
        let mut tx = self.pool.begin().await?;
        let step = i64::try_from(approval.step).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO work_request_approvals (number, revision, step, approver, decided_at, comment)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(number)
        .bind(i64::from(revision))
        .bind(step)
        .bind(approval.by.as_str())
        .bind(to_micros(approval.at))
        .bind(approval.comment.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { changed() } else { e.into() })?;
        let done = sqlx::query(
            "UPDATE work_requests SET state = $1, state_at = $2, state_by = $3, state_reason = $4,
                    approved_from = COALESCE($5, approved_from)
             WHERE number = $6 AND revision = $7 AND state = 'submitted'",
        )
        .bind(to.as_str())
        .bind(to_micros(approval.at))
        .bind(approval.by.as_str())
        .bind(approval.comment.as_str())
        .bind(approved_from.map(to_micros))
        .bind(number)
        .bind(i64::from(revision))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(changed());
        }
        tx.commit().await?;
        Ok(())
    }

    /// Live sessions (any node) that were allowed under this request.
    pub async fn live_sessions_of_request(
        &self,
        number: &str,
    ) -> Result<Vec<super::SessionRecord>, StoreError> {
        Ok(self
            .live_sessions()
            .await?
            .into_iter()
            .filter(|s| s.work_request.as_deref() == Some(number))
            .collect())
    }

    /// Adds engineers and approvals to a row just read.
    async fn complete(&self, mut r: WorkRequest) -> Result<WorkRequest, StoreError> {
        let rows = sqlx::query(
            "SELECT user_name FROM work_request_engineers WHERE number = $1 AND revision = $2
             ORDER BY user_name",
        )
        .bind(r.number.as_str())
        .bind(i64::from(r.revision))
        .fetch_all(&self.pool)
        .await?;
        r.engineers = rows
            .iter()
            .map(|row| row.try_get("user_name"))
            .collect::<Result<_, _>>()?;
        let rows = sqlx::query(
            "SELECT step, approver, decided_at, comment FROM work_request_approvals
             WHERE number = $1 AND revision = $2 ORDER BY step",
        )
        .bind(r.number.as_str())
        .bind(i64::from(r.revision))
        .fetch_all(&self.pool)
        .await?;
        r.approvals = rows
            .iter()
            .map(|row| {
                let step: i64 = row.try_get("step")?;
                Ok(StepApproval {
                    step: usize::try_from(step).map_err(|_| StoreError::Corrupt {
                        what: "approval step",
                        value: step.to_string(),
                    })?,
                    by: row.try_get("approver")?,
                    at: from_micros(row.try_get("decided_at")?)?,
                    comment: row.try_get("comment")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(r)
    }
}

/// Lists of names are stored comma-separated (names never hold a comma).
fn join_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(",")
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

fn request_from_row(r: &sqlx::any::AnyRow) -> Result<WorkRequest, StoreError> {
    let corrupt = |what: &'static str, value: &str| StoreError::Corrupt {
        what,
        value: value.to_string(),
    };
    let revision: i64 = r.try_get("revision")?;
    let targets: String = r.try_get("targets")?;
    let protocols: String = r.try_get("protocols")?;
    let urgency: String = r.try_get("urgency")?;
    let state: String = r.try_get("state")?;
    Ok(WorkRequest {
        number: r.try_get("number")?,
        revision: u32::try_from(revision)
            .map_err(|_| corrupt("revision", &revision.to_string()))?,
        system: r.try_get("system")?,
        vendor: r.try_get("vendor")?,
        requester: r.try_get("requester")?,
        engineers: Vec::new(),
        targets: split_list(&targets).map(String::from).collect(),
        protocols: split_list(&protocols)
            .map(|p| p.parse().map_err(|_| corrupt("protocol", p)))
            .collect::<Result<_, _>>()?,
        purpose: r.try_get("purpose")?,
        work: r.try_get("work")?,
        window_start: from_micros(r.try_get("window_start")?)?,
        window_end: from_micros(r.try_get("window_end")?)?,
        urgency: urgency.parse().map_err(|_| corrupt("urgency", &urgency))?,
        state: state
            .parse()
            .map_err(|_| corrupt("request state", &state))?,
        approved_from: opt_from_micros(r.try_get("approved_from")?)?,
        state_at: from_micros(r.try_get("state_at")?)?,
        state_by: r.try_get("state_by")?,
        state_reason: r.try_get("state_reason")?,
        created_at: from_micros(r.try_get("created_at")?)?,
        approvals: Vec::new(),
    })
}
