//! What in a valid policy set needs an administrator's attention soon:
//! contracts about to end, credentials the secret store no longer holds,
//! targets nobody may reach. Printed by `sekisho policy check` and listed
//! on the console's policy page, computed once here (pure: the date and
//! the credential names are passed in).

use std::collections::BTreeSet;
use std::fmt;

use chrono::NaiveDate;

use super::model::{Access, PolicySet, Protocol, Target, file_name};

/// A contract ending within this many days is listed.
pub const CONTRACT_WARNING_DAYS: i64 = 30;

#[derive(Debug, Clone, PartialEq)]
pub enum Warning<'a> {
    /// The entry's contract ends within [`CONTRACT_WARNING_DAYS`] (0: today
    /// is its last day).
    ContractEnding { access: &'a Access, days_left: i64 },
    /// A target's endpoint names a credential the secret store does not
    /// hold (it was removed after the policies were loaded): connections
    /// over it fail.
    CredentialMissing {
        target: &'a Target,
        protocol: Protocol,
        credential: &'a str,
    },
    /// No access entry covers the target: nobody may reach it.
    TargetUncovered { target: &'a Target },
}

/// The warnings for `set` on `today` (in the configured zone), contracts
/// first (soonest first), then credentials, then targets. `credentials`
/// `None` skips the credential check.
pub fn warnings<'a>(
    set: &'a PolicySet,
    credentials: Option<&BTreeSet<String>>,
    today: NaiveDate,
) -> Vec<Warning<'a>> {
    let mut ending: Vec<Warning> = set
        .access()
        .filter_map(|a| {
            let days_left = a.contract.days_left(today);
            (0..=CONTRACT_WARNING_DAYS)
                .contains(&days_left)
                .then_some(Warning::ContractEnding {
                    access: a,
                    days_left,
                })
        })
        .collect();
    ending.sort_by_key(|w| match w {
        Warning::ContractEnding { days_left, .. } => *days_left,
        _ => 0,
    });
    let mut out = ending;
    if let Some(known) = credentials {
        for t in set.targets() {
            for p in Protocol::ALL {
                if let Some(e) = t.endpoint(p)
                    && !known.contains(&e.credential)
                {
                    out.push(Warning::CredentialMissing {
                        target: t,
                        protocol: p,
                        credential: &e.credential,
                    });
                }
            }
        }
    }
    for t in set.targets() {
        if set.access_for(t).next().is_none() {
            out.push(Warning::TargetUncovered { target: t });
        }
    }
    out
}

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::ContractEnding { access, days_left } => write!(
                f,
                "{} access[{}]: the contract of vendor {} ends {} ({})",
                file_name(&access.file),
                access.index,
                access.vendor,
                access.contract.until,
                match days_left {
                    0 => "today is its last day".to_string(),
                    1 => "1 day left".to_string(),
                    n => format!("{n} days left"),
                }
            ),
            Warning::CredentialMissing {
                target,
                protocol,
                credential,
            } => write!(
                f,
                "target {} ({protocol}): credential {credential:?} is not in the secret store: store it with `sekisho secret set {credential}`",
                target.name
            ),
            Warning::TargetUncovered { target } => write!(
                f,
                "target {}: no access entry covers it: nobody may reach it",
                target.name
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const POLICY: &str = r#"
[system]
name = "fa"
zone = "lgwan"

[[target]]
name = "fa-db01"
address = "192.0.2.10"
kind = "virtual"
ssh = { port = 22, account = "root", credential = "fa-db01-root", host_key = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }

[[target]]
name = "fa-ap01"
address = "192.0.2.11"
kind = "virtual"
ssh = { port = 22, account = "root", credential = "fa-ap01-root", host_key = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }

[[access]]
vendor = "acme"
users = ["tanaka"]
targets = ["fa-db01"]
contract = { from = "2026-04-01", until = "2026-12-31" }
hours = "always"
max_session = "2h"
protocols = ["ssh"]
sources = ["lab"]

[[access]]
vendor = "beta"
users = ["sato"]
targets = ["fa-db01"]
contract = { from = "2026-04-01", until = "2026-12-06" }
hours = "always"
max_session = "2h"
protocols = ["ssh"]
sources = ["lab"]
"#;

    fn set() -> PolicySet {
        PolicySet::parse_files(&[(PathBuf::from("fa.toml"), POLICY.into())], None, None)
            .expect("a valid policy")
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("a date")
    }

    #[test]
    fn contracts_ending_within_30_days_soonest_first() {
        let set = set();
        let w = warnings(&set, None, day("2026-12-05"));
        let ending: Vec<(&str, i64)> = w
            .iter()
            .filter_map(|w| match w {
                Warning::ContractEnding { access, days_left } => {
                    Some((access.vendor.as_str(), *days_left))
                }
                _ => None,
            })
            .collect();
        assert_eq!(ending, [("beta", 1), ("acme", 26)]);
        assert_eq!(
            w[0].to_string(),
            "fa.toml access[1]: the contract of vendor beta ends 2026-12-06 (1 day left)"
        );
        // 31 days before the end: not yet; after the end: no longer.
        let w = warnings(&set, None, day("2026-11-30"));
        assert!(!w.iter().any(
            |w| matches!(w, Warning::ContractEnding { access, .. } if access.vendor == "acme")
        ));
        let w = warnings(&set, None, day("2026-12-07"));
        assert!(!w.iter().any(
            |w| matches!(w, Warning::ContractEnding { access, .. } if access.vendor == "beta")
        ));
        let w = warnings(&set, None, day("2026-12-06"));
        assert!(
            w.iter()
                .any(|w| w.to_string().contains("today is its last day"))
        );
    }

    #[test]
    fn missing_credentials_and_uncovered_targets() {
        let set = set();
        let known: BTreeSet<String> = ["fa-db01-root".to_string()].into();
        let w = warnings(&set, Some(&known), day("2026-06-01"));
        let text: Vec<String> = w.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            text,
            [
                "target fa-ap01 (ssh): credential \"fa-ap01-root\" is not in the secret store: store it with `sekisho secret set fa-ap01-root`",
                "target fa-ap01: no access entry covers it: nobody may reach it",
            ]
        );
        // Without the store's names, credentials are not checked.
        assert_eq!(warnings(&set, None, day("2026-06-01")).len(), 1);
    }
}
