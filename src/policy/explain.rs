//! One decision explained in words: what `sekisho policy explain` prints and
//! the console's explain form shows. `decide` decides; this only says it.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::decide::{Decision, Request, Rule, decide};
use super::model::PolicySet;
use crate::config::Network;

/// A decision with its explanation: the first line is the verdict
/// (`ALLOW …` or `DENY: … [rule: …]`), the others are details.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub decision: Decision,
    pub lines: Vec<String>,
}

impl Explanation {
    pub fn allowed(&self) -> bool {
        matches!(self.decision, Decision::Allow(_))
    }

    /// The rule that refused, or `None` for a grant.
    pub fn rule(&self) -> Option<Rule> {
        match &self.decision {
            Decision::Allow(_) => None,
            Decision::Deny(d) => Some(d.rule),
        }
    }
}

/// Decides `req` (with [`decide`]) and says why.
pub fn explain(
    req: &Request,
    set: &PolicySet,
    networks: &[Network],
    tz: Tz,
    now: DateTime<Utc>,
) -> Explanation {
    let decision = decide(req, set, networks, tz, now);
    let mut lines = Vec::new();
    match &decision {
        Decision::Allow(g) => {
            let hop = g
                .hop_parent
                .and_then(|id| req.live_sessions.iter().find(|s| s.id == id))
                .map(|s| format!("; hop from your live session on {}", s.target))
                .unwrap_or_default();
            let under = g
                .request
                .as_ref()
                .map(|r| format!("; under {r}"))
                .unwrap_or_default();
            lines.push(format!(
                "ALLOW {} {} → {} ({}:{} as {}) until {} ({}); access: {}{hop}{under}",
                g.protocol,
                req.person.name,
                g.target.name,
                g.target.address,
                g.endpoint.port,
                g.endpoint.account,
                g.ends_at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
                g.ends_because.describe(),
                g.access,
            ));
        }
        Decision::Deny(d) => {
            lines.push(format!("DENY: {d}"));
            if d.rule == Rule::NoApprovedRequest {
                let local =
                    |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
                if req.approved.is_empty() {
                    lines.push(format!(
                        "no approved work request names {}",
                        req.person.name
                    ));
                }
                for w in req.approved {
                    lines.push(format!(
                        "{} rev {}: targets {}; protocols {}; open {} to {}{}",
                        w.number,
                        w.revision,
                        w.targets.join(", "),
                        w.protocols
                            .iter()
                            .map(|p| p.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        local(w.from),
                        local(w.until),
                        if w.emergency { " (emergency)" } else { "" }
                    ));
                }
            }
        }
    }
    Explanation { decision, lines }
}
