//! The request state machine, cell by cell: every state × action × actor.

use chrono::TimeZone;

use super::*;
use crate::policy::ApprovalStep;

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0)
        .single()
        .unwrap()
}

/// Two steps: any approver, then kimura.
fn two_steps() -> ApprovalRoute {
    ApprovalRoute {
        required: true,
        steps: vec![
            ApprovalStep {
                people: vec![],
                approver_role: true,
            },
            ApprovalStep {
                people: vec!["kimura".into()],
                approver_role: false,
            },
        ],
    }
}

fn person(name: &str, approver_role: bool) -> Actor {
    Actor::Person {
        name: name.into(),
        approver_role,
    }
}

fn requester() -> Actor {
    person("tanaka", false)
}
fn engineer() -> Actor {
    person("suzuki", false)
}
fn approver() -> Actor {
    person("yoshida", true)
}
fn named_approver() -> Actor {
    person("kimura", false)
}
fn stranger() -> Actor {
    person("sato", false)
}

struct Case {
    state: RequestState,
    urgency: Urgency,
    approvals: Vec<StepApproval>,
    engineers: Vec<String>,
    route: ApprovalRoute,
}

fn case(state: RequestState) -> Case {
    Case {
        state,
        urgency: Urgency::Normal,
        approvals: Vec::new(),
        engineers: vec!["tanaka".into(), "suzuki".into()],
        route: two_steps(),
    }
}

impl Case {
    /// Window 10:00-12:00.
    fn facts(&self) -> Facts<'_> {
        Facts {
            state: self.state,
            urgency: self.urgency,
            requester: "tanaka",
            engineers: &self.engineers,
            window_start: at(10, 0),
            window_end: at(12, 0),
            approvals: &self.approvals,
            route: &self.route,
        }
    }

    fn next(&self, actor: &Actor, action: Action, now: DateTime<Utc>) -> Result<Move, Refused> {
        next(&self.facts(), actor, action, now)
    }
}

fn step_by(step: usize, by: &str) -> StepApproval {
    StepApproval {
        step,
        by: by.into(),
        at: at(9, 0),
        comment: String::new(),
    }
}

/// Who may take each action in each state (at a time that suits the
/// action: before the window for most, after it for `Expire`), as the
/// transition table says. Anything not listed is refused.
#[test]
fn the_whole_table_of_states_actions_and_actors() {
    use Action as A;
    use RequestState as S;
    let actors = [
        ("sekisho", Actor::Sekisho),
        ("requester", requester()),
        ("engineer", engineer()),
        ("approver", approver()),
        ("named", named_approver()),
        ("stranger", stranger()),
    ];
    // (state, action, actor) → resulting state.
    let allowed: Vec<(S, A, &str, S)> = vec![
        (S::Draft, A::Submit, "requester", S::Submitted),
        (S::Draft, A::Withdraw, "requester", S::Withdrawn),
        (S::Submitted, A::Withdraw, "requester", S::Withdrawn),
        (S::Approved, A::Withdraw, "requester", S::Withdrawn),
        // Step 1 admits the approver role; a first step leaves it submitted.
        (S::Submitted, A::Approve, "approver", S::Submitted),
        (S::Submitted, A::Reject, "approver", S::Rejected),
        (S::Submitted, A::Reject, "named", S::Rejected),
        (S::Approved, A::Activate, "sekisho", S::Active),
        (S::Active, A::Close, "requester", S::Closed),
        (S::Active, A::Close, "engineer", S::Closed),
        (S::Active, A::Close, "approver", S::Closed),
        (S::Active, A::Close, "named", S::Closed),
        (S::Approved, A::Expire, "sekisho", S::Expired),
        (S::Active, A::Expire, "sekisho", S::Expired),
        (S::Submitted, A::Revoke, "approver", S::Revoked),
        (S::Submitted, A::Revoke, "named", S::Revoked),
        (S::Approved, A::Revoke, "approver", S::Revoked),
        (S::Approved, A::Revoke, "named", S::Revoked),
        (S::Active, A::Revoke, "approver", S::Revoked),
        (S::Active, A::Revoke, "named", S::Revoked),
    ];
    let mut checked = 0;
    for state in S::ALL {
        for action in A::ALL {
            for (who, actor) in &actors {
                let now = if action == A::Expire {
                    at(12, 0)
                } else {
                    at(9, 0)
                };
                let got = case(state).next(actor, action, now).map(|m| m.to);
                let want = allowed
                    .iter()
                    .find(|(s, a, w, _)| *s == state && *a == action && w == who)
                    .map(|(_, _, _, to)| *to);
                match (want, &got) {
                    (Some(to), Ok(got)) => assert_eq!(*got, to, "{state} {action} by {who}"),
                    (None, Err(_)) => {}
                    _ => panic!("{state} {action} by {who}: expected {want:?}, got {got:?}"),
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 9 * 8 * 6);
    // Final states have no way out at all.
    for state in S::ALL.into_iter().filter(|s| s.is_final()) {
        for action in A::ALL {
            assert!(target_state(state, action).is_none(), "{state} {action}");
        }
    }
}

#[test]
fn two_steps_need_two_different_people_in_order() {
    let mut c = case(RequestState::Submitted);
    // kimura is step 2 only: cannot approve step 1.
    let e = c
        .next(&named_approver(), Action::Approve, at(9, 0))
        .unwrap_err();
    assert!(e.0.contains("step 1"), "{e}");
    // Step 1 by an approver.
    let m = c.next(&approver(), Action::Approve, at(9, 0)).unwrap();
    assert_eq!(m.step, Some(0));
    assert_eq!(m.to, RequestState::Submitted);
    assert_eq!(m.opens_at, None);
    c.approvals.push(step_by(0, "yoshida"));
    // The same person cannot approve step 2 too.
    let e = c.next(&approver(), Action::Approve, at(9, 0)).unwrap_err();
    assert!(e.0.contains("already approved"), "{e}");
    // Another approver-role user is not named for step 2.
    let e = c
        .next(&person("ito", true), Action::Approve, at(9, 0))
        .unwrap_err();
    assert!(e.0.contains("step 2") && e.0.contains("kimura"), "{e}");
    // kimura approves step 2: the window opens at its start.
    let m = c
        .next(&named_approver(), Action::Approve, at(9, 0))
        .unwrap();
    assert_eq!(m.step, Some(1));
    assert_eq!(m.to, RequestState::Approved);
    assert_eq!(m.opens_at, Some(at(10, 0)));
}

#[test]
fn one_step_routes_approve_at_once() {
    let mut c = case(RequestState::Submitted);
    c.route = ApprovalRoute::default_route();
    let m = c.next(&approver(), Action::Approve, at(9, 0)).unwrap();
    assert_eq!(m.to, RequestState::Approved);
    // The default route admits only the approver role.
    assert!(
        c.next(&named_approver(), Action::Approve, at(9, 0))
            .is_err()
    );
}

#[test]
fn approving_late_opens_only_the_rest_and_after_the_end_is_refused() {
    let mut c = case(RequestState::Submitted);
    c.approvals.push(step_by(0, "yoshida"));
    let m = c
        .next(&named_approver(), Action::Approve, at(10, 40))
        .unwrap();
    assert_eq!(m.opens_at, Some(at(10, 40)));
    let e = c
        .next(&named_approver(), Action::Approve, at(12, 0))
        .unwrap_err();
    assert!(e.0.contains("can no longer be approved"), "{e}");
    // The first step is refused after the end too.
    let c = case(RequestState::Submitted);
    assert!(c.next(&approver(), Action::Approve, at(12, 1)).is_err());
}

#[test]
fn an_emergency_is_approved_by_one_step_of_either_kind() {
    let mut c = case(RequestState::Submitted);
    c.urgency = Urgency::Emergency;
    for who in [approver(), named_approver()] {
        let m = c.next(&who, Action::Approve, at(10, 30)).unwrap();
        assert_eq!(m.to, RequestState::Approved, "{who:?}");
        assert_eq!(m.opens_at, Some(at(10, 30)));
    }
    assert!(c.next(&stranger(), Action::Approve, at(10, 30)).is_err());
}

#[test]
fn requesters_and_engineers_never_approve_their_own_work() {
    let mut c = case(RequestState::Submitted);
    // Even holding the approver role.
    let e = c
        .next(&person("tanaka", true), Action::Approve, at(9, 0))
        .unwrap_err();
    assert!(e.0.contains("your own request"), "{e}");
    let e = c
        .next(&person("suzuki", true), Action::Approve, at(9, 0))
        .unwrap_err();
    assert!(e.0.contains("names you as an engineer"), "{e}");
    // A requester who is an approver may not reject either (withdraw instead).
    c.route.steps[1].people.push("tanaka".into());
    let e = c
        .next(&person("tanaka", false), Action::Reject, at(9, 0))
        .unwrap_err();
    assert!(e.0.contains("withdraw"), "{e}");
}

#[test]
fn times_that_matter_for_sekisho_moves() {
    // Submitting a window that has ended is refused.
    let c = case(RequestState::Draft);
    assert!(c.next(&requester(), Action::Submit, at(12, 0)).is_err());
    assert!(c.next(&requester(), Action::Submit, at(11, 59)).is_ok());
    // Expire only once the window is over; activate only before.
    let c = case(RequestState::Approved);
    assert!(c.next(&Actor::Sekisho, Action::Expire, at(11, 59)).is_err());
    assert!(c.next(&Actor::Sekisho, Action::Expire, at(12, 0)).is_ok());
    assert!(
        c.next(&Actor::Sekisho, Action::Activate, at(11, 59))
            .is_ok()
    );
    assert!(
        c.next(&Actor::Sekisho, Action::Activate, at(12, 0))
            .is_err()
    );
    // People cannot expire or activate.
    assert!(c.next(&approver(), Action::Expire, at(12, 0)).is_err());
}

#[test]
fn names_round_trip() {
    for s in RequestState::ALL {
        assert_eq!(s.as_str().parse::<RequestState>().unwrap(), s);
    }
    assert!("pending".parse::<RequestState>().is_err());
    for u in [Urgency::Normal, Urgency::Emergency] {
        assert_eq!(u.as_str().parse::<Urgency>().unwrap(), u);
    }
    assert!("urgent".parse::<Urgency>().is_err());
    assert!(RequestState::Active.opens_window());
    assert!(RequestState::Approved.opens_window());
    assert!(!RequestState::Submitted.opens_window());
    assert!(!RequestState::Revoked.opens_window());
}
