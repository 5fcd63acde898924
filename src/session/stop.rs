//! Emergency stop (緊急停止): one action that ends every live session of a
//! system, of a vendor (with its subcontractors), or of everything, and
//! refuses new sessions in that scope until an administrator lifts it.
//!
//! The stop lives in the database (`emergency_stops`), so every node
//! sharing it enforces the same stops, two ways:
//! - new sessions: `authorize` reads the stops in force and hands them to
//!   `policy::decide`, which refuses with the rule `emergency_stop` and
//!   words naming the stop and its reason;
//! - live sessions: each `serve` process sweeps its own registry every
//!   [`SWEEP_EVERY`] and ends the sessions a stop covers, as a kill does
//!   (status `killed`, the person told the stop and its reason). The sweep
//!   also catches a session decided just before the stop and registered
//!   just after it.
//!
//! Putting a stop in force and lifting it are shared by the CLI (`sekisho
//! stop`) and the console (`/stops`): the same checks, the same audit
//! events (`emergency_stop`, `emergency_stop_lifted`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use super::{LiveEntry, Registry, Services, StopCause};
use crate::policy::{EmergencyStop, PolicySet, StopScope};
use crate::store::{AuditEvent, AuditKind, SessionRecord, StopRecord, Store, StoreError};

/// How often each node looks for new stops: a stop reaches every live
/// session within about this long.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The longest reason kept (it is shown to every person in scope).
const MAX_REASON: usize = 200;

/// Why a stop or a lift was refused.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("a reason is required: it is shown to every person whose session is ended or refused")]
    NoReason,
    #[error("there is no system {0:?} in the policies")]
    UnknownSystem(String),
    #[error("there is no vendor {0:?}")]
    UnknownVendor(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who acts, and through what (`cli`, `web`), for the audit log.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub via: &'a str,
}

/// The reason as kept and shown: one line, no control characters, at most
/// [`MAX_REASON`] characters. Empty is refused.
fn clean_reason(reason: &str) -> Result<String, StopError> {
    let reason: String = reason
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON)
        .collect();
    let reason = reason.trim().to_string();
    if reason.is_empty() {
        return Err(StopError::NoReason);
    }
    Ok(reason)
}

/// Puts a stop in force for `scope` and audits it. The system must be in
/// the policies and the vendor in the store, so a typo does not stop
/// nothing while looking like a stop.
pub async fn put_in_force(
    store: &Store,
    policies: &PolicySet,
    scope: StopScope,
    reason: &str,
    actor: Actor<'_>,
) -> Result<StopRecord, StopError> {
    let reason = clean_reason(reason)?;
    match &scope {
        StopScope::All => {}
        StopScope::System(s) => {
            if policies.system(s).is_none() {
                return Err(StopError::UnknownSystem(s.clone()));
            }
        }
        StopScope::Vendor(v) => {
            if store.vendor(v).await?.is_none() {
                return Err(StopError::UnknownVendor(v.clone()));
            }
        }
    }
    let stop = store
        .add_stop(&scope, &reason, actor.name, Utc::now())
        .await?;
    store
        .audit(
            &AuditEvent::new(
                AuditKind::EmergencyStop,
                format!(
                    "{} put emergency stop {} in force for {scope}: {reason}",
                    actor.name, stop.id
                ),
            )
            .with("stop", stop.id)
            .with("scope", scope.kind())
            .with("subject", scope.subject())
            .with("by", actor.name)
            .with("via", actor.via),
        )
        .await?;
    tracing::warn!(stop = stop.id, %scope, by = actor.name, %reason, "emergency stop in force");
    Ok(stop)
}

/// Lifts a stop in force and audits it; new sessions in its scope are
/// decided as before (other stops in force still apply).
pub async fn lift(
    store: &Store,
    id: i64,
    reason: &str,
    actor: Actor<'_>,
) -> Result<StopRecord, StopError> {
    // A lift may be self-explanatory ("resolved"); it is kept if given.
    let reason: String = reason
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON)
        .collect();
    let stop = store.lift_stop(id, actor.name, &reason, Utc::now()).await?;
    let scope = stop.scope()?;
    let why = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    store
        .audit(
            &AuditEvent::new(
                AuditKind::EmergencyStopLifted,
                format!(
                    "{} lifted emergency stop {} of {scope}{why}",
                    actor.name, stop.id
                ),
            )
            .with("stop", stop.id)
            .with("scope", scope.kind())
            .with("subject", scope.subject())
            .with("by", actor.name)
            .with("via", actor.via),
        )
        .await?;
    tracing::warn!(stop = stop.id, %scope, by = actor.name, "emergency stop lifted");
    Ok(stop)
}

/// The live sessions (on every node) that `scope` covers, as the store
/// knows them: for the CLI and the console to show what a stop ends.
pub async fn live_in_scope(
    store: &Store,
    policies: &PolicySet,
    scope: &StopScope,
) -> Result<Vec<SessionRecord>, StoreError> {
    let mut out = Vec::new();
    for s in store.live_sessions().await? {
        let system = policies
            .target(&s.target)
            .map(|t| t.system.clone())
            .unwrap_or_default();
        let chain = match &s.vendor {
            Some(v) => store.vendor_chain(v).await?,
            None => Vec::new(),
        };
        if scope.covers(&system, &chain) {
            out.push(s);
        }
    }
    Ok(out)
}

/// The live sessions of `live` that a stop covers, with the stop that
/// covers each (the oldest, when several do).
pub fn covered<'a>(
    live: &'a [LiveEntry],
    stops: &'a [EmergencyStop],
) -> Vec<(&'a LiveEntry, &'a EmergencyStop)> {
    live.iter()
        .filter_map(|e| {
            stops
                .iter()
                .find(|s| s.covers(&e.system, &e.vendor_chain))
                .map(|s| (e, s))
        })
        .collect()
}

/// Ends the sessions in `registry` that `stops` cover, skipping those in
/// `already` (told before). Returns the ids told now.
pub fn sweep(registry: &Registry, stops: &[EmergencyStop], already: &HashSet<Uuid>) -> Vec<Uuid> {
    let live = registry.list();
    let mut told = Vec::new();
    for (entry, stop) in covered(&live, stops) {
        if already.contains(&entry.id) {
            continue;
        }
        let cause = StopCause::Killed {
            by: stop.by.clone(),
            reason: stop.shown(),
        };
        if registry.stop(entry.id, cause) {
            tracing::warn!(session = %entry.id, user = %entry.user, target = %entry.target, stop = stop.id, "emergency stop: ending the session");
            told.push(entry.id);
        }
    }
    told
}

/// A serving node's part: every [`SWEEP_EVERY`], read the stops in force
/// and end the live sessions here that they cover.
pub async fn enforce(
    services: Arc<Services>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut told: HashSet<Uuid> = HashSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return Ok(()),
        }
        let stops = match services.store.active_stops().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "reading emergency stops failed");
                continue;
            }
        };
        // Forget sessions that have gone; remember the ones told now.
        let live: HashSet<Uuid> = services.registry.list().iter().map(|e| e.id).collect();
        told.retain(|id| live.contains(id));
        if stops.is_empty() {
            continue;
        }
        told.extend(sweep(&services.registry, &stops, &told));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Protocol;

    fn entry(user: &str, system: &str, chain: &[&str]) -> LiveEntry {
        LiveEntry {
            id: Uuid::now_v7(),
            user: user.into(),
            target: format!("{system}-01"),
            system: system.into(),
            vendor_chain: chain.iter().map(|s| s.to_string()).collect(),
            protocol: Protocol::Ssh,
            source: std::net::IpAddr::from([127, 0, 0, 1]),
            started_at: Utc::now(),
            ends_at: Utc::now(),
            parent: None,
        }
    }

    fn stop(id: i64, scope: StopScope) -> EmergencyStop {
        EmergencyStop {
            id,
            scope,
            reason: "incident".into(),
            by: "admin1".into(),
            since: Utc::now(),
        }
    }

    #[test]
    fn the_sweep_ends_covered_sessions_once_and_leaves_the_others() {
        let r = Registry::default();
        let acme = r.register(entry("tanaka", "lab", &["acme"]));
        let sub = r.register(entry("mori", "lab", &["sub", "acme"]));
        let beta = r.register(entry("yamada", "lab", &["beta"]));
        let stops = [stop(3, StopScope::Vendor("acme".into()))];
        let told = sweep(&r, &stops, &HashSet::new());
        assert_eq!(told.len(), 2);
        let cause = acme.stop.borrow().clone().expect("acme's session is told");
        let StopCause::Killed { by, reason } = &cause else {
            panic!("{cause:?}")
        };
        assert_eq!(by, "admin1");
        assert!(
            reason.contains("emergency stop 3 of vendor acme"),
            "{reason}"
        );
        assert!(reason.contains("incident"), "{reason}");
        assert!(sub.stop.borrow().is_some(), "the subcontractor is stopped");
        assert!(beta.stop.borrow().is_none(), "another vendor keeps working");
        // Told once: the next sweep leaves them be.
        let already: HashSet<Uuid> = told.into_iter().collect();
        assert!(sweep(&r, &stops, &already).is_empty());
    }

    #[test]
    fn a_system_stop_ends_that_systems_sessions_only() {
        let r = Registry::default();
        let lab = r.register(entry("tanaka", "lab", &["acme"]));
        let other = r.register(entry("tanaka", "juki", &["acme"]));
        sweep(
            &r,
            &[stop(1, StopScope::System("juki".into()))],
            &HashSet::new(),
        );
        assert!(lab.stop.borrow().is_none());
        assert!(other.stop.borrow().is_some());
    }

    #[test]
    fn a_reason_is_required_and_kept_to_one_line() {
        assert!(matches!(clean_reason("  \n "), Err(StopError::NoReason)));
        assert_eq!(
            clean_reason(" 不正アクセス\nの疑い ").ok().as_deref(),
            Some("不正アクセス の疑い")
        );
        assert_eq!(
            clean_reason(&"x".repeat(500)).map(|r| r.len()).ok(),
            Some(MAX_REASON)
        );
    }
}
