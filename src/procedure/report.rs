//! Completing the work report (作業報告): once the work is over (the window
//! ended, the request was closed or revoked), the requester or a named
//! engineer writes the result (完了 / 未完了 / 中止), a summary and the
//! follow-ups; an approver of the request's system signs it off (検収),
//! after which nothing in it changes. Both are audit events. The rest of the
//! report is drafted from the records (`report::work`).

use chrono::{DateTime, Utc};

use super::state::{Actor, RequestState, may_approve_step};
use super::{Acting, ProcedureError, Refused, actor_of, route_of};
use crate::policy::PolicySet;
use crate::store::{
    AuditEvent, AuditKind, Store, StoreError, WorkReportRecord, WorkRequest, WorkRequestFilter,
    WorkResult,
};

/// What the engineer adds.
#[derive(Debug, Clone)]
pub struct Completion {
    pub result: WorkResult,
    pub summary: String,
    pub follow_ups: String,
}

/// The revision the work ran under: the newest one that was approved
/// (whatever happened to it since). Drafts, rejected and withdrawn
/// revisions never opened a window.
pub async fn worked_revision(store: &Store, number: &str) -> Result<WorkRequest, ProcedureError> {
    let worked = store
        .work_requests(&WorkRequestFilter {
            all_revisions: true,
            states: vec![
                RequestState::Approved,
                RequestState::Active,
                RequestState::Closed,
                RequestState::Expired,
                RequestState::Revoked,
            ],
            ..WorkRequestFilter::default()
        })
        .await?
        .into_iter()
        .filter(|r| r.number == number && r.approved_from.is_some())
        .max_by_key(|r| r.revision);
    match worked {
        Some(r) => Ok(r),
        None => {
            // Say "no such request" rather than "not approved" when it is so.
            store.require_work_request(number, None).await?;
            Err(Refused(format!(
                "{number} was never approved: there is no work to report"
            ))
            .into())
        }
    }
}

/// Whether the work under `r` is over at `now`.
fn work_is_over(r: &WorkRequest, now: DateTime<Utc>) -> bool {
    matches!(
        r.state,
        RequestState::Closed | RequestState::Expired | RequestState::Revoked
    ) || now >= r.window_end
}

/// Writes (or, before sign-off, rewrites) the result, summary and follow-ups.
pub async fn complete(
    store: &Store,
    by: &Acting,
    number: &str,
    c: Completion,
    now: DateTime<Utc>,
) -> Result<WorkReportRecord, ProcedureError> {
    let r = worked_revision(store, number).await?;
    let name = &by.user.name;
    if *name != r.requester && !r.engineers.contains(name) {
        return Err(Refused(format!(
            "only the requester ({}) or an engineer named in {} may write its report",
            r.requester, r.number
        ))
        .into());
    }
    if !work_is_over(&r, now) {
        return Err(Refused(format!(
            "{} is {} and its window ends at {}: close it (`sekisho request close`) before reporting",
            r.label(),
            r.state,
            r.window_end.to_rfc3339()
        ))
        .into());
    }
    if c.summary.trim().is_empty() {
        return Err(ProcedureError::Invalid(
            "the summary (作業概要) is empty".into(),
        ));
    }
    let record = WorkReportRecord {
        number: r.number.clone(),
        revision: r.revision,
        result: c.result,
        summary: c.summary.trim().to_string(),
        follow_ups: c.follow_ups.trim().to_string(),
        written_by: name.clone(),
        written_at: now,
        signed_off_by: None,
        signed_off_at: None,
        sign_off_comment: String::new(),
    };
    match store.write_work_report(&record).await {
        Ok(()) => {}
        Err(StoreError::ReportSignedOff(n)) => {
            return Err(Refused(format!(
                "the work report of {n} is signed off (検収済); it can no longer change"
            ))
            .into());
        }
        Err(e) => return Err(e.into()),
    }
    store
        .audit(
            &AuditEvent::new(
                AuditKind::ReportWritten,
                format!(
                    "{name} reported the work under {} as {} ({})",
                    r.label(),
                    c.result.label(),
                    c.result
                ),
            )
            .user(name)
            .with("via", by.via.as_str())
            .with("request", r.number.as_str())
            .with("revision", r.revision)
            .with("result", c.result.as_str()),
        )
        .await?;
    Ok(record)
}

/// Signs the report off (検収): an approver of the system who is neither
/// the requester nor an engineer of it, after the engineer wrote it; once.
pub async fn sign_off(
    store: &Store,
    policies: &PolicySet,
    by: &Acting,
    number: &str,
    comment: &str,
    now: DateTime<Utc>,
) -> Result<WorkReportRecord, ProcedureError> {
    let r = worked_revision(store, number).await?;
    let route = route_of(policies, &r);
    let actor = actor_of(&by.user);
    let name = &by.user.name;
    let approver = matches!(actor, Actor::Person { .. })
        && (0..route.steps.len()).any(|s| may_approve_step(&route, s, &actor));
    if !approver {
        return Err(Refused(format!(
            "only an approver of system {} may sign off the work report of {}",
            r.system, r.number
        ))
        .into());
    }
    if *name == r.requester || r.engineers.contains(name) {
        return Err(
            Refused("you cannot sign off the report of work you requested or did".into()).into(),
        );
    }
    let Some(report) = store.work_report(number).await? else {
        return Err(Refused(format!(
            "the engineer has not written the result of {number} yet (`sekisho report complete`)"
        ))
        .into());
    };
    if let (Some(who), Some(at)) = (&report.signed_off_by, report.signed_off_at) {
        return Err(Refused(format!(
            "the work report of {number} was already signed off by {who} at {}",
            at.to_rfc3339()
        ))
        .into());
    }
    match store.sign_off_work_report(number, name, comment, now).await {
        Ok(()) => {}
        Err(StoreError::ReportSignedOff(n)) => {
            return Err(Refused(format!(
                "the work report of {n} was signed off by someone else meanwhile"
            ))
            .into());
        }
        Err(e) => return Err(e.into()),
    }
    store
        .audit(
            &AuditEvent::new(
                AuditKind::ReportSignedOff,
                format!(
                    "{name} signed off the work report of {} (result {})",
                    r.label(),
                    report.result.label()
                ),
            )
            .user(name)
            .with("via", by.via.as_str())
            .with("request", r.number.as_str())
            .with("revision", r.revision)
            .with("reason", comment),
        )
        .await?;
    Ok(store
        .work_report(number)
        .await?
        .ok_or_else(|| StoreError::NoRequest(number.into()))?)
}
