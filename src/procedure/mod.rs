//! The remote-maintenance procedure (作業申請 → 承認 → 作業): work requests
//! filed by vendors, approved along each system's route, and enforced by
//! `policy::decide` through the approved windows they open.
//!
//! `state` is the pure state machine. This module is the one API every
//! front end (CLI, web console) calls: each operation checks the input
//! against the store and the policy set, asks `state::next` whether the
//! actor may do it, moves the request by compare-and-set and writes the
//! audit event naming who and why. Revoking also asks every node to stop the
//! request's live sessions (through the kill requests `serve` polls).

pub mod documents;
pub mod report;
pub mod state;
pub mod ticket;

use chrono::{DateTime, Utc};

use crate::policy::{ApprovedWindow, PolicySet, Protocol};
use crate::store::{
    AuditEvent, AuditKind, NewWorkRequest, Role, Store, StoreError, UserRecord, WorkRequest,
};
use state::{Action, Actor, Facts, RequestState, StepApproval};

pub use state::{Refused, Urgency};

/// The longest window one request may ask for: work is planned in days,
/// not months (a longer job is several requests).
pub const MAX_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(31);

/// Why an operation did not happen, worded for the person.
#[derive(Debug, thiserror::Error)]
pub enum ProcedureError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request as written cannot be filed (unknown target, …).
    #[error("{0}")]
    Invalid(String),
    /// The state machine refused this actor or this move.
    #[error("{0}")]
    Refused(#[from] Refused),
    /// The acting person is not a usable user.
    #[error("{0}")]
    Actor(String),
    /// The documents on file do not allow approving: a contract copy or
    /// a pledge is missing or not in force for the window.
    #[error("{number} cannot be approved: {}", reasons.join("; "))]
    MissingDocuments {
        number: String,
        reasons: Vec<String>,
    },
}

/// A request as its requester writes it, before checks.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Defaults to the requester's own vendor.
    pub vendor: Option<String>,
    pub engineers: Vec<String>,
    pub targets: Vec<String>,
    pub protocols: Vec<Protocol>,
    pub purpose: String,
    pub work: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub urgency: Urgency,
}

/// Who acts on a request, and through what (for the audit log): the
/// CLI names the OS account that ran it, the web console the session.
#[derive(Debug, Clone)]
pub struct Acting {
    pub user: UserRecord,
    /// e.g. "cli (os user root)".
    pub via: String,
}

/// The acting person, as the state machine sees them.
pub fn actor_of(user: &UserRecord) -> Actor {
    Actor::Person {
        name: user.name.clone(),
        approver_role: user.role == Role::Approver,
    }
}

/// Looks up the acting person: they must exist and be enabled.
pub async fn acting_user(store: &Store, name: &str) -> Result<UserRecord, ProcedureError> {
    match store.user(name).await? {
        None => Err(ProcedureError::Actor(format!(
            "{name:?} is not a sekisho user; act as a registered person (--as NAME)"
        ))),
        Some(u) if !u.enabled => Err(ProcedureError::Actor(format!(
            "user {name} is disabled and cannot act on requests"
        ))),
        Some(u) => Ok(u),
    }
}

/// Files a new request as a draft (revision 1). The requester is an
/// engineer of the vendor (or an admin filing for it); the engineers are
/// engineers of the vendor or its subcontractors; the targets all belong to
/// one system of the policy set and offer the protocols.
pub async fn file(
    store: &Store,
    policies: &PolicySet,
    requester: &Acting,
    draft: Draft,
    now: DateTime<Utc>,
) -> Result<WorkRequest, ProcedureError> {
    let new = check_draft(store, policies, &requester.user, draft).await?;
    let r = store.create_work_request(&new, now).await?;
    audit(
        store,
        AuditKind::RequestFiled,
        &r,
        &requester.user.name,
        &requester.via,
        "",
        format!(
            "{} filed work request {} for {} ({} to {})",
            requester.user.name,
            r.label(),
            r.targets.join(", "),
            r.window_start.to_rfc3339(),
            r.window_end.to_rfc3339()
        ),
    )
    .await?;
    Ok(r)
}

/// Writes a new revision of a request as a draft: the earlier revision stays
/// as it was (a submitted revision is immutable) until the new one is
/// submitted, which withdraws it.
pub async fn revise(
    store: &Store,
    policies: &PolicySet,
    requester: &Acting,
    number: &str,
    draft: Draft,
    now: DateTime<Utc>,
) -> Result<WorkRequest, ProcedureError> {
    let latest = store.require_work_request(number, None).await?;
    if latest.requester != requester.user.name {
        return Err(Refused(format!(
            "only the requester ({}) may revise {number}",
            latest.requester
        ))
        .into());
    }
    match latest.state {
        RequestState::Draft => {
            return Err(Refused(format!(
                "{} is still a draft; withdraw it and file again, or submit it",
                latest.label()
            ))
            .into());
        }
        RequestState::Active => {
            return Err(Refused(format!(
                "{} is active (work is under way); close it before revising",
                latest.label()
            ))
            .into());
        }
        _ => {}
    }
    let new = check_draft(store, policies, &requester.user, draft).await?;
    let r = store
        .create_work_request_revision(number, &new, now)
        .await?;
    audit(
        store,
        AuditKind::RequestFiled,
        &r,
        &requester.user.name,
        &requester.via,
        "",
        format!(
            "{} wrote revision {} of {number}",
            requester.user.name, r.revision
        ),
    )
    .await?;
    Ok(r)
}

async fn check_draft(
    store: &Store,
    policies: &PolicySet,
    requester: &UserRecord,
    d: Draft,
) -> Result<NewWorkRequest, ProcedureError> {
    let invalid = |m: String| Err(ProcedureError::Invalid(m));
    let vendor = match (d.vendor, &requester.vendor) {
        (Some(v), _) => v,
        (None, Some(v)) => v.clone(),
        (None, None) => return invalid("name the vendor (--vendor ORG)".into()),
    };
    if store.vendor(&vendor).await?.is_none() {
        return invalid(format!("no vendor {vendor}"));
    }
    match requester.role {
        Role::Engineer if requester.vendor_chain.contains(&vendor) => {}
        Role::Admin => {}
        _ => {
            return invalid(format!(
                "{} cannot file a request for vendor {vendor}: only its engineers (or an admin) may",
                requester.name
            ));
        }
    }
    if d.purpose.trim().is_empty() {
        return invalid("the purpose (目的) is empty".into());
    }
    if d.work.trim().is_empty() {
        return invalid("the work content (作業内容) is empty".into());
    }
    if d.window_end <= d.window_start {
        return invalid("the window ends before it starts".into());
    }
    if d.window_end - d.window_start > MAX_WINDOW {
        return invalid(format!(
            "the window is longer than {} days; file one request per job",
            MAX_WINDOW.num_days()
        ));
    }
    if d.engineers.is_empty() {
        return invalid("name at least one engineer".into());
    }
    let mut engineers = d.engineers.clone();
    engineers.sort();
    engineers.dedup();
    for e in &engineers {
        let Some(u) = store.user(e).await? else {
            return invalid(format!("no user {e}"));
        };
        if u.role != Role::Engineer || !u.vendor_chain.contains(&vendor) {
            return invalid(format!(
                "{e} is not an engineer of vendor {vendor} (or of its subcontractors)"
            ));
        }
    }
    if d.targets.is_empty() {
        return invalid("name at least one target".into());
    }
    if d.protocols.is_empty() {
        return invalid("name at least one protocol".into());
    }
    let mut targets = d.targets.clone();
    targets.dedup();
    let mut system: Option<String> = None;
    for name in &targets {
        let Some(t) = policies.target(name) else {
            return invalid(format!("no target {name:?} in the policies"));
        };
        match &system {
            Some(s) if *s != t.system => {
                return invalid(format!(
                    "{name} belongs to system {}, the other targets to {s}: one request covers one system",
                    t.system
                ));
            }
            _ => system = Some(t.system.clone()),
        }
        for p in &d.protocols {
            if t.endpoint(*p).is_none() {
                return invalid(format!("{name} offers no {p} endpoint"));
            }
        }
    }
    let Some(system) = system else {
        return invalid("name at least one target".into());
    };
    let mut protocols = d.protocols.clone();
    protocols.sort();
    protocols.dedup();
    Ok(NewWorkRequest {
        system,
        vendor,
        requester: requester.name.clone(),
        engineers,
        targets,
        protocols,
        purpose: d.purpose.trim().to_string(),
        work: d.work.trim().to_string(),
        window_start: d.window_start,
        window_end: d.window_end,
        urgency: d.urgency,
    })
}

/// The route of the request's system (the default route if the system no
/// longer exists in the policies: nobody named can then approve).
fn route_of(policies: &PolicySet, r: &WorkRequest) -> crate::policy::ApprovalRoute {
    policies
        .system(&r.system)
        .map(|s| s.route())
        .unwrap_or_else(crate::policy::ApprovalRoute::default_route)
}

fn facts<'a>(r: &'a WorkRequest, route: &'a crate::policy::ApprovalRoute) -> Facts<'a> {
    Facts {
        state: r.state,
        urgency: r.urgency,
        requester: &r.requester,
        engineers: &r.engineers,
        window_start: r.window_start,
        window_end: r.window_end,
        approvals: &r.approvals,
        route,
    }
}

/// A request named by number: the latest revision.
async fn latest(store: &Store, number: &str) -> Result<WorkRequest, ProcedureError> {
    Ok(store.require_work_request(number, None).await?)
}

/// Submits the latest (draft) revision. An earlier revision still waiting
/// or approved is withdrawn: the new one replaces it.
pub async fn submit(
    store: &Store,
    policies: &PolicySet,
    actor: &Acting,
    number: &str,
    now: DateTime<Utc>,
) -> Result<WorkRequest, ProcedureError> {
    let r = latest(store, number).await?;
    let route = route_of(policies, &r);
    let m = state::next(
        &facts(&r, &route),
        &actor_of(&actor.user),
        Action::Submit,
        now,
    )?;
    store
        .move_work_request(
            &r.number,
            r.revision,
            r.state,
            m.to,
            &actor.user.name,
            "",
            now,
            None,
        )
        .await?;
    if r.revision > 1 {
        for old in store
            .work_requests(&crate::store::WorkRequestFilter {
                all_revisions: true,
                states: vec![RequestState::Submitted, RequestState::Approved],
                ..Default::default()
            })
            .await?
            .into_iter()
            .filter(|o| o.number == r.number && o.revision < r.revision)
        {
            let why = format!("superseded by revision {}", r.revision);
            store
                .move_work_request(
                    &old.number,
                    old.revision,
                    old.state,
                    RequestState::Withdrawn,
                    &actor.user.name,
                    &why,
                    now,
                    None,
                )
                .await?;
            audit(
                store,
                AuditKind::RequestWithdrawn,
                &old,
                &actor.user.name,
                &actor.via,
                &why,
                format!("{} withdrawn: {why}", old.label()),
            )
            .await?;
        }
    }
    let r = store.require_work_request(number, Some(r.revision)).await?;
    audit(
        store,
        AuditKind::RequestSubmitted,
        &r,
        &actor.user.name,
        &actor.via,
        "",
        format!("{} submitted {}", actor.user.name, r.label()),
    )
    .await?;
    Ok(r)
}

/// Approves the next step (an emergency: any one step opens it). Approving
/// after the window started opens only the rest; after it ended is refused.
/// Every step is refused while the documents on file (the vendor's contract
/// copy, each engineer's pledge) do not cover the window, as days in `tz`.
pub async fn approve(
    store: &Store,
    policies: &PolicySet,
    actor: &Acting,
    number: &str,
    comment: &str,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Result<WorkRequest, ProcedureError> {
    let r = latest(store, number).await?;
    let route = route_of(policies, &r);
    let m = state::next(
        &facts(&r, &route),
        &actor_of(&actor.user),
        Action::Approve,
        now,
    )?;
    let reasons = documents::missing_documents(store, &r, tz).await?;
    if !reasons.is_empty() {
        return Err(ProcedureError::MissingDocuments {
            number: r.label(),
            reasons,
        });
    }
    let step = m.step.unwrap_or(r.approvals.len());
    store
        .approve_work_request_step(
            &r.number,
            r.revision,
            &StepApproval {
                step,
                by: actor.user.name.clone(),
                at: now,
                comment: comment.to_string(),
            },
            m.to,
            m.opens_at,
        )
        .await?;
    let r = store.require_work_request(number, Some(r.revision)).await?;
    let steps = route.steps.len();
    let (kind, detail) = if m.to == RequestState::Approved {
        let late = match m.opens_at {
            Some(t) if t > r.window_start => {
                format!(" (approved late: open from {} only)", t.to_rfc3339())
            }
            _ => String::new(),
        };
        let emergency = if r.urgency == Urgency::Emergency {
            " as an EMERGENCY by one step"
        } else {
            ""
        };
        (
            AuditKind::RequestApproved,
            format!(
                "{} approved {} (step {} of {steps}){emergency}{late}",
                actor.user.name,
                r.label(),
                step + 1
            ),
        )
    } else {
        (
            AuditKind::RequestStepApproved,
            format!(
                "{} approved step {} of {steps} of {}; waiting for step {}",
                actor.user.name,
                step + 1,
                r.label(),
                step + 2
            ),
        )
    };
    store
        .audit(
            &event(kind, &r, &actor.user.name, &actor.via, comment, detail)
                .with("step", step + 1)
                .with("steps", steps)
                .with("emergency", r.urgency == Urgency::Emergency),
        )
        .await?;
    Ok(r)
}

/// Rejects, withdraws or closes the latest revision (a plain move with a
/// reason); revoke has its own function because it stops sessions.
pub async fn act(
    store: &Store,
    policies: &PolicySet,
    actor: &Acting,
    number: &str,
    action: Action,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<WorkRequest, ProcedureError> {
    let kind = match action {
        Action::Reject => AuditKind::RequestRejected,
        Action::Withdraw => AuditKind::RequestWithdrawn,
        Action::Close => AuditKind::RequestClosed,
        other => {
            return Err(ProcedureError::Invalid(format!(
                "`{other}` is not a plain move; use its own operation"
            )));
        }
    };
    let r = latest(store, number).await?;
    let route = route_of(policies, &r);
    let m = state::next(&facts(&r, &route), &actor_of(&actor.user), action, now)?;
    store
        .move_work_request(
            &r.number,
            r.revision,
            r.state,
            m.to,
            &actor.user.name,
            reason,
            now,
            None,
        )
        .await?;
    let r = store.require_work_request(number, Some(r.revision)).await?;
    audit(
        store,
        kind,
        &r,
        &actor.user.name,
        &actor.via,
        reason,
        format!("{} {} {}: {reason}", actor.user.name, r.state, r.label()),
    )
    .await?;
    Ok(r)
}

/// Revokes the request in force (submitted, approved or active) and asks
/// every node to stop its live sessions at once, with the reason shown to
/// the engineers. Returns the request and the sessions asked to stop.
pub async fn revoke(
    store: &Store,
    policies: &PolicySet,
    actor: &Acting,
    number: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(WorkRequest, Vec<uuid::Uuid>), ProcedureError> {
    if reason.trim().is_empty() {
        return Err(ProcedureError::Invalid(
            "give the reason for revoking (--reason); the engineers are shown it".into(),
        ));
    }
    // The revision in force is the newest one that is not a draft.
    let in_force = store
        .work_requests(&crate::store::WorkRequestFilter {
            all_revisions: true,
            states: vec![
                RequestState::Submitted,
                RequestState::Approved,
                RequestState::Active,
            ],
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter(|r| r.number == number)
        .max_by_key(|r| r.revision);
    let r = match in_force {
        Some(r) => r,
        None => latest(store, number).await?,
    };
    let route = route_of(policies, &r);
    let m = state::next(
        &facts(&r, &route),
        &actor_of(&actor.user),
        Action::Revoke,
        now,
    )?;
    store
        .move_work_request(
            &r.number,
            r.revision,
            r.state,
            m.to,
            &actor.user.name,
            reason,
            now,
            None,
        )
        .await?;
    let r = store.require_work_request(number, Some(r.revision)).await?;
    audit(
        store,
        AuditKind::RequestRevoked,
        &r,
        &actor.user.name,
        &actor.via,
        reason,
        format!("{} revoked {}: {reason}", actor.user.name, r.label()),
    )
    .await?;
    let shown = format!("work request {} was revoked: {reason}", r.number);
    let mut stopped = Vec::new();
    for s in store.live_sessions_of_request(&r.number).await? {
        match store.request_kill(s.id, &actor.user.name, &shown).await {
            Ok(()) => {}
            // It ended meanwhile: nothing to stop.
            Err(StoreError::SessionNotLive(_)) => continue,
            Err(e) => return Err(e.into()),
        }
        store
            .audit(
                &AuditEvent::new(
                    AuditKind::KillRequested,
                    format!(
                        "{} asked to stop session {}: {shown}",
                        actor.user.name, s.id
                    ),
                )
                .session(s.id)
                .user(&s.user)
                .target(&s.target)
                .with("request", r.number.as_str()),
            )
            .await?;
        stopped.push(s.id);
    }
    Ok((r, stopped))
}

/// sekisho marks an approved request active when the first session under
/// it starts. Losing a race (another session did it first) is fine.
pub async fn activate(
    store: &Store,
    number: &str,
    revision: u32,
    now: DateTime<Utc>,
) -> Result<(), ProcedureError> {
    let r = store.require_work_request(number, Some(revision)).await?;
    if r.state != RequestState::Approved {
        return Ok(());
    }
    let route = crate::policy::ApprovalRoute::default_route();
    let m = state::next(&facts(&r, &route), &Actor::Sekisho, Action::Activate, now)?;
    match store
        .move_work_request(
            &r.number,
            r.revision,
            r.state,
            m.to,
            "sekisho",
            "first session",
            now,
            None,
        )
        .await
    {
        Ok(()) => {}
        Err(StoreError::RequestChanged { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    audit(
        store,
        AuditKind::RequestActivated,
        &r,
        "sekisho",
        "sekisho",
        "first session",
        format!("work under {} has started", r.label()),
    )
    .await?;
    Ok(())
}

/// Marks approved and active requests whose window has ended as expired;
/// returns how many. Called by `serve` now and then and before listings.
pub async fn expire_due(store: &Store, now: DateTime<Utc>) -> Result<usize, ProcedureError> {
    let due = store
        .work_requests(&crate::store::WorkRequestFilter {
            all_revisions: true,
            states: vec![RequestState::Approved, RequestState::Active],
            window_ended_by: Some(now),
            ..Default::default()
        })
        .await?;
    let route = crate::policy::ApprovalRoute::default_route();
    let mut n = 0;
    for r in due {
        let m = state::next(&facts(&r, &route), &Actor::Sekisho, Action::Expire, now)?;
        match store
            .move_work_request(
                &r.number,
                r.revision,
                r.state,
                m.to,
                "sekisho",
                "window ended",
                now,
                None,
            )
            .await
        {
            Ok(()) => {}
            Err(StoreError::RequestChanged { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
        audit(
            store,
            AuditKind::RequestExpired,
            &r,
            "sekisho",
            "sekisho",
            "window ended",
            format!("the window of {} ended", r.label()),
        )
        .await?;
        n += 1;
    }
    Ok(n)
}

/// What `policy::decide` needs of a person's open requests.
pub fn approved_windows(requests: &[WorkRequest]) -> Vec<ApprovedWindow> {
    requests
        .iter()
        .filter(|r| r.state.opens_window())
        .map(|r| ApprovedWindow {
            number: r.number.clone(),
            revision: r.revision,
            engineers: r.engineers.clone(),
            targets: r.targets.clone(),
            protocols: r.protocols.clone(),
            from: r.approved_from.unwrap_or(r.window_start),
            until: r.window_end,
            emergency: r.urgency == Urgency::Emergency,
        })
        .collect()
}

fn event(
    kind: AuditKind,
    r: &WorkRequest,
    by: &str,
    via: &str,
    reason: &str,
    detail: String,
) -> AuditEvent {
    AuditEvent::new(kind, detail)
        .user(by)
        .with("via", via)
        .with("request", r.number.as_str())
        .with("revision", r.revision)
        .with("by", by)
        .with("reason", reason)
        .with("state", r.state.as_str())
        .with("system", r.system.as_str())
        .with("vendor", r.vendor.as_str())
}

async fn audit(
    store: &Store,
    kind: AuditKind,
    r: &WorkRequest,
    by: &str,
    via: &str,
    reason: &str,
    detail: String,
) -> Result<(), StoreError> {
    store.audit(&event(kind, r, by, via, reason, detail)).await
}

#[cfg(test)]
mod tests;
