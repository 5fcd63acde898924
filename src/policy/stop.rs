//! Emergency stops (緊急停止) as `decide` sees them: which stops are in
//! force and what each covers. Pure: the store reads them, `decide` and the
//! serving nodes' sweep only ask [`EmergencyStop::covers`].
//!
//! A vendor stop covers the vendor's own engineers and those of every
//! subcontractor working under it (the vendor appears anywhere in the
//! person's chain): stopping a prime contractor must not leave its
//! subcontractors working.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// What a stop covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopScope {
    /// Every session through sekisho.
    All,
    /// Every session to a target of this system.
    System(String),
    /// Every session of this vendor's people and of its subcontractors'.
    Vendor(String),
}

impl StopScope {
    /// `all`, `system`, `vendor`: as stored and audited.
    pub fn kind(&self) -> &'static str {
        match self {
            StopScope::All => "all",
            StopScope::System(_) => "system",
            StopScope::Vendor(_) => "vendor",
        }
    }

    /// The system or vendor named; empty for `all`.
    pub fn subject(&self) -> &str {
        match self {
            StopScope::All => "",
            StopScope::System(s) | StopScope::Vendor(s) => s,
        }
    }

    /// From the stored kind and subject.
    pub fn from_parts(kind: &str, subject: &str) -> Result<StopScope, String> {
        match (kind, subject) {
            ("all", _) => Ok(StopScope::All),
            ("system", s) if !s.is_empty() => Ok(StopScope::System(s.into())),
            ("vendor", s) if !s.is_empty() => Ok(StopScope::Vendor(s.into())),
            _ => Err(format!("{kind} {subject}")),
        }
    }

    /// Whether a session to a target of `system` by a person with
    /// `vendor_chain` (own vendor first) falls under this scope.
    pub fn covers(&self, system: &str, vendor_chain: &[String]) -> bool {
        match self {
            StopScope::All => true,
            StopScope::System(s) => s == system,
            StopScope::Vendor(v) => vendor_chain.iter().any(|c| c == v),
        }
    }
}

impl fmt::Display for StopScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopScope::All => f.write_str("all sessions"),
            StopScope::System(s) => write!(f, "system {s}"),
            StopScope::Vendor(v) => write!(f, "vendor {v}"),
        }
    }
}

impl FromStr for StopScope {
    type Err = String;

    /// `all`, `system:NAME`, `vendor:NAME`.
    fn from_str(s: &str) -> Result<StopScope, String> {
        let (kind, subject) = s.split_once(':').unwrap_or((s, ""));
        StopScope::from_parts(kind.trim(), subject.trim())
            .map_err(|_| format!("{s:?}: expected all, system:NAME or vendor:NAME"))
    }
}

/// A stop in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyStop {
    pub id: i64,
    pub scope: StopScope,
    pub reason: String,
    pub by: String,
    pub since: DateTime<Utc>,
}

impl EmergencyStop {
    pub fn covers(&self, system: &str, vendor_chain: &[String]) -> bool {
        self.scope.covers(system, vendor_chain)
    }

    /// What the person is told, when refused or when their session is ended.
    pub fn shown(&self) -> String {
        format!(
            "emergency stop {} of {} is in force: {}",
            self.id, self.scope, self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_vendor_stop_covers_its_subcontractors_but_not_its_prime() {
        let stop = StopScope::Vendor("acme".into());
        assert!(stop.covers("lab", &chain(&["acme"])));
        assert!(stop.covers("lab", &chain(&["sub", "acme"])));
        let sub = StopScope::Vendor("sub".into());
        assert!(!sub.covers("lab", &chain(&["acme"])));
        assert!(!stop.covers("lab", &chain(&["beta"])));
        assert!(!stop.covers("lab", &[]));
    }

    #[test]
    fn a_system_stop_covers_that_system_only_and_all_covers_everything() {
        let s = StopScope::System("juki".into());
        assert!(s.covers("juki", &chain(&["acme"])));
        assert!(!s.covers("zeimu", &chain(&["acme"])));
        assert!(StopScope::All.covers("zeimu", &[]));
    }

    #[test]
    fn scopes_parse_and_round_trip() {
        for s in [
            StopScope::All,
            StopScope::System("juki".into()),
            StopScope::Vendor("acme".into()),
        ] {
            assert_eq!(StopScope::from_parts(s.kind(), s.subject()), Ok(s.clone()));
        }
        assert_eq!("vendor:acme".parse(), Ok(StopScope::Vendor("acme".into())));
        assert_eq!("all".parse(), Ok(StopScope::All));
        assert!("vendor:".parse::<StopScope>().is_err());
        assert!("team:x".parse::<StopScope>().is_err());
    }
}
