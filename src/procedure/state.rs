//! The life of a work request (作業申請) as a pure state machine: which
//! action moves it from which state, and who may take it. No I/O, no clock
//! (the instant is passed in), so every cell of the table is unit-tested.
//!
//! ```text
//! draft ─submit→ submitted ─approve (last step)→ approved ─first session→ active ─close→ closed
//!   │               │  │                            │                        │
//!   │               │  └─reject→ rejected           └──────window end────────┴─expire→ expired
//!   └───withdraw────┴──────────────withdraw──────────┘
//! submitted | approved | active ─revoke (an approver, at any time)→ revoked
//! ```
//!
//! Threat model: the requester and the engineers named in a request must
//! not approve it; two steps need two different people; nobody approves a
//! window that has already ended; an approval that comes after the window
//! started opens only the rest of it. The route (who may approve each step)
//! comes from the system's policy, see `policy::model::ApprovalRoute`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::policy::ApprovalRoute;

/// Where a request stands. The snake_case names are stored and printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// Being written by the requester; the only state in which it may change.
    Draft,
    /// Filed and waiting for its approval steps; immutable from here on.
    Submitted,
    /// Every step approved: the window is open to the named engineers.
    Approved,
    Rejected,
    Withdrawn,
    /// Work has started: a session ran under it.
    Active,
    /// The work is over (closed by a person).
    Closed,
    /// The window ended.
    Expired,
    /// An approver withdrew the approval; live sessions end at once.
    Revoked,
}

impl RequestState {
    pub const ALL: [RequestState; 9] = [
        RequestState::Draft,
        RequestState::Submitted,
        RequestState::Approved,
        RequestState::Rejected,
        RequestState::Withdrawn,
        RequestState::Active,
        RequestState::Closed,
        RequestState::Expired,
        RequestState::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Draft => "draft",
            RequestState::Submitted => "submitted",
            RequestState::Approved => "approved",
            RequestState::Rejected => "rejected",
            RequestState::Withdrawn => "withdrawn",
            RequestState::Active => "active",
            RequestState::Closed => "closed",
            RequestState::Expired => "expired",
            RequestState::Revoked => "revoked",
        }
    }

    /// Whether sessions may run under a request in this state.
    pub fn opens_window(self) -> bool {
        matches!(self, RequestState::Approved | RequestState::Active)
    }

    /// Nothing moves a request out of these.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RequestState::Rejected
                | RequestState::Withdrawn
                | RequestState::Closed
                | RequestState::Expired
                | RequestState::Revoked
        )
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestState {
    type Err = String;
    fn from_str(s: &str) -> Result<RequestState, String> {
        RequestState::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = RequestState::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown request state {s:?} (one of: {})", names.join(", "))
            })
    }
}

/// Normal work, or an emergency (緊急) that one approval step may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Urgency {
    Normal,
    Emergency,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Normal => "normal",
            Urgency::Emergency => "emergency",
        }
    }
}

impl fmt::Display for Urgency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Urgency {
    type Err = String;
    fn from_str(s: &str) -> Result<Urgency, String> {
        match s.trim() {
            "normal" => Ok(Urgency::Normal),
            "emergency" => Ok(Urgency::Emergency),
            other => Err(format!("unknown urgency {other:?} (normal or emergency)")),
        }
    }
}

/// What someone (or sekisho itself) does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Submit,
    Approve,
    Reject,
    Withdraw,
    /// sekisho: the first session under the request started.
    Activate,
    Close,
    /// sekisho: the window ended.
    Expire,
    Revoke,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::Submit,
        Action::Approve,
        Action::Reject,
        Action::Withdraw,
        Action::Activate,
        Action::Close,
        Action::Expire,
        Action::Revoke,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Withdraw => "withdraw",
            Action::Activate => "activate",
            Action::Close => "close",
            Action::Expire => "expire",
            Action::Revoke => "revoke",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// sekisho itself: a session started, a window ended.
    Sekisho,
    /// A person known to the user store.
    Person {
        name: String,
        /// Holds the `approver` role.
        approver_role: bool,
    },
}

impl Actor {
    pub fn name(&self) -> &str {
        match self {
            Actor::Sekisho => "sekisho",
            Actor::Person { name, .. } => name,
        }
    }
}

/// One approved step of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepApproval {
    /// 0-based position in the route.
    pub step: usize,
    pub by: String,
    pub at: DateTime<Utc>,
    pub comment: String,
}

/// What the state machine needs to know of a request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub state: RequestState,
    pub urgency: Urgency,
    pub requester: &'a str,
    pub engineers: &'a [String],
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// Steps approved so far (of this revision).
    pub approvals: &'a [StepApproval],
    /// The approval route of the request's system.
    pub route: &'a ApprovalRoute,
}

/// The result of an allowed action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub to: RequestState,
    /// For an approval: the step this person approved.
    pub step: Option<usize>,
    /// For the approval that opens the window: when it opens (the window's
    /// start, or now if the window already started).
    pub opens_at: Option<DateTime<Utc>>,
}

/// Why an action is refused, worded for the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refuse<T>(msg: String) -> Result<T, Refused> {
    Err(Refused(msg))
}

/// The state an action leads to from `from`, if the table has such an arrow.
pub fn target_state(from: RequestState, action: Action) -> Option<RequestState> {
    use Action as A;
    use RequestState as S;
    match (from, action) {
        (S::Draft, A::Submit) => Some(S::Submitted),
        // Approve may also stay in Submitted (a first of two steps).
        (S::Submitted, A::Approve) => Some(S::Approved),
        (S::Submitted, A::Reject) => Some(S::Rejected),
        (S::Draft | S::Submitted | S::Approved, A::Withdraw) => Some(S::Withdrawn),
        (S::Approved, A::Activate) => Some(S::Active),
        (S::Active, A::Close) => Some(S::Closed),
        (S::Approved | S::Active, A::Expire) => Some(S::Expired),
        (S::Submitted | S::Approved | S::Active, A::Revoke) => Some(S::Revoked),
        _ => None,
    }
}

/// Whether this person may approve this step of the route: named in it, or
/// holding the approver role where the step admits it.
pub fn may_approve_step(route: &ApprovalRoute, step: usize, actor: &Actor) -> bool {
    let Actor::Person {
        name,
        approver_role,
    } = actor
    else {
        return false;
    };
    route
        .steps
        .get(step)
        .is_some_and(|s| s.admits(name, *approver_role))
}

/// Decides one action. `now` is when it happens.
pub fn next(
    facts: &Facts,
    actor: &Actor,
    action: Action,
    now: DateTime<Utc>,
) -> Result<Move, Refused> {
    let Some(to) = target_state(facts.state, action) else {
        return refuse(format!(
            "a {} request cannot be {}",
            facts.state,
            past_tense(action)
        ));
    };
    let person = match actor {
        Actor::Sekisho => None,
        Actor::Person { name, .. } => Some(name.as_str()),
    };
    let simple = Move {
        to,
        step: None,
        opens_at: None,
    };
    match action {
        Action::Activate | Action::Expire => {
            if person.is_some() {
                return refuse(format!("only sekisho itself may {action} a request"));
            }
            if action == Action::Expire && now < facts.window_end {
                return refuse("the window has not ended yet".into());
            }
            if action == Action::Activate && now >= facts.window_end {
                return refuse("the window has ended".into());
            }
            Ok(simple)
        }
        Action::Submit | Action::Withdraw => match person {
            Some(p) if p == facts.requester => {
                if action == Action::Submit && now >= facts.window_end {
                    return refuse("the requested window has already ended".into());
                }
                Ok(simple)
            }
            _ => refuse(format!(
                "only the requester ({}) may {action} this request",
                facts.requester
            )),
        },
        Action::Close => match person {
            Some(p) if p == facts.requester || facts.engineers.iter().any(|e| e == p) => Ok(simple),
            Some(_) if is_approver(facts, actor) => Ok(simple),
            _ => refuse(
                "only the requester, a named engineer or an approver may close this request".into(),
            ),
        },
        Action::Revoke => {
            if is_approver(facts, actor) {
                Ok(simple)
            } else {
                refuse("only an approver of this system may revoke a request".into())
            }
        }
        Action::Reject => {
            if !is_approver(facts, actor) {
                return refuse("only an approver of this system may reject a request".into());
            }
            if let Some(p) = person
                && facts.requester == p
            {
                return refuse("you cannot reject your own request; withdraw it".into());
            }
            Ok(simple)
        }
        Action::Approve => approve(facts, actor, now),
    }
}

/// An approver of any step of the route (revoke, reject, close).
fn is_approver(facts: &Facts, actor: &Actor) -> bool {
    (0..facts.route.steps.len()).any(|s| may_approve_step(facts.route, s, actor))
}

fn approve(facts: &Facts, actor: &Actor, now: DateTime<Utc>) -> Result<Move, Refused> {
    let Actor::Person { name, .. } = actor else {
        return refuse("only a person may approve a request".into());
    };
    if now >= facts.window_end {
        return refuse(format!(
            "the requested window ended at {}; it can no longer be approved (file a new request)",
            facts.window_end.to_rfc3339()
        ));
    }
    if name == facts.requester {
        return refuse("you cannot approve your own request".into());
    }
    if facts.engineers.iter().any(|e| e == name) {
        return refuse("you cannot approve a request that names you as an engineer".into());
    }
    if facts.approvals.iter().any(|a| &a.by == name) {
        return refuse(
            "you already approved a step of this request; another person must approve the next"
                .into(),
        );
    }
    let steps = facts.route.steps.len();
    let emergency = facts.urgency == Urgency::Emergency;
    // Steps are approved in order; an emergency may be opened by an
    // approver of any one step.
    let step = if emergency {
        (0..steps).find(|s| may_approve_step(facts.route, *s, actor))
    } else {
        let next = facts.approvals.len();
        may_approve_step(facts.route, next, actor).then_some(next)
    };
    let Some(step) = step else {
        let next = facts.approvals.len();
        let who = facts
            .route
            .steps
            .get(next)
            .map(|s| s.to_string())
            .unwrap_or_default();
        return refuse(format!(
            "you may not approve step {} of this request (its approvers: {who})",
            next + 1
        ));
    };
    let last = emergency || step + 1 >= steps;
    Ok(Move {
        to: if last {
            RequestState::Approved
        } else {
            RequestState::Submitted
        },
        step: Some(step),
        opens_at: last.then(|| facts.window_start.max(now)),
    })
}

fn past_tense(action: Action) -> &'static str {
    match action {
        Action::Submit => "submitted",
        Action::Approve => "approved",
        Action::Reject => "rejected",
        Action::Withdraw => "withdrawn",
        Action::Activate => "activated",
        Action::Close => "closed",
        Action::Expire => "expired",
        Action::Revoke => "revoked",
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
