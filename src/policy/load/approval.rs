//! Checking a system's `[approval]`: whether sessions need an approved work
//! request, and the one or two steps of people who approve one.
//!
//! ```toml
//! [approval]
//! required = true                                   # default when [approval] is written
//! steps = [["role:approver"], ["sato", "kimura"]]   # step 1: any approver; step 2: sato or kimura
//! ```

use std::collections::BTreeSet;

use super::file::{required, valid_name};
use super::location::Sink;
use super::schema::{RawApproval, S};
use crate::policy::model::{APPROVER_ROLE_ENTRY, ApprovalRoute, ApprovalStep};

/// The most steps a route may have (the owning section, then the
/// information-policy section).
pub(super) const MAX_STEPS: usize = 2;

pub(super) fn parse_approval(sink: &mut Sink, a: &S<RawApproval>) -> Option<ApprovalRoute> {
    let span = a.span();
    let a = a.get_ref();
    let required_flag = a.required.as_ref().map(|r| *r.get_ref()).unwrap_or(true);
    let steps = required(
        sink,
        &a.steps,
        &span,
        "approval.steps",
        "one or two steps of approvers, e.g. steps = [[\"role:approver\"], [\"sato\"]]",
    )?;
    let list = steps.get_ref();
    if list.is_empty() || list.len() > MAX_STEPS {
        sink.err(
            Some(steps.span()),
            "approval.steps",
            format!("has {} steps; a route has one or two steps", list.len()),
        );
        return None;
    }
    let mut out = Vec::new();
    let mut good = true;
    for (i, step) in list.iter().enumerate() {
        let field = format!("approval.steps[{i}]");
        if step.get_ref().is_empty() {
            sink.err(
                Some(step.span()),
                &field,
                format!(
                    "is empty; name the approvers (user names, or {APPROVER_ROLE_ENTRY:?} for anyone with the approver role)"
                ),
            );
            good = false;
            continue;
        }
        let mut seen = BTreeSet::new();
        let mut people = Vec::new();
        let mut approver_role = false;
        for (j, entry) in step.get_ref().iter().enumerate() {
            let name = entry.get_ref().trim();
            let efield = format!("{field}[{j}]");
            if !seen.insert(name.to_string()) {
                sink.err(
                    Some(entry.span()),
                    &efield,
                    format!("{name:?} is listed twice"),
                );
                good = false;
            } else if name == APPROVER_ROLE_ENTRY {
                approver_role = true;
            } else if name.contains(':') || !valid_name(name) {
                sink.err(
                    Some(entry.span()),
                    &efield,
                    format!("{name:?} is neither a user name nor {APPROVER_ROLE_ENTRY:?}"),
                );
                good = false;
            } else {
                people.push(name.to_string());
            }
        }
        out.push(ApprovalStep {
            people,
            approver_role,
        });
    }
    good.then_some(ApprovalRoute {
        required: required_flag,
        steps: out,
    })
}
