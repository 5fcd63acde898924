//! `decide()` exhaustively: each rule, each boundary.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::NaiveDateTime;
use chrono_tz::Asia::Tokyo;

use super::*;
use crate::config::parse_cidr;
use crate::policy::StopScope;

const FA: &str = r#"
[system]
name = "fa"
zone = "lgwan"

[[target]]
name = "fa-db01"
address = "10.20.0.11"
kind = "physical"
ssh = { account = "maint", credential = "c", host_key = "SHA256:zwxFZkDJRdBjQcMdVAtmpgnwJu8v91OmlxCHrsDj4L8" }
rdp = { account = "Administrator", credential = "c", cert_sha256 = "74D219311D39C5E56C6ED2752053E3CBA63CDC17152BB9DF01F5E820328F4507" }

[[target]]
name = "fa-app01"
address = "10.20.0.12"
kind = "virtual"
ssh = { account = "maint", credential = "c", host_key = "SHA256:/DCXtfUNRs8vzgTkxrG1mRlTVayWLzRyxJvJZ4Y/Azc" }

[[target]]
name = "fa-app02"
address = "10.20.0.13"
kind = "virtual"
ssh = { account = "maint", credential = "c", host_key = "SHA256:Ti0lJ2NSR7doeTPUoFDPuYFOxcUK7fUo/yIbdwMlmn8" }
rdp = { account = "Administrator", credential = "c", cert_sha256 = "74D219311D39C5E56C6ED2752053E3CBA63CDC17152BB9DF01F5E820328F4507" }

[[target]]
name = "fa-win01"
address = "10.20.0.14"
kind = "physical"
rdp = { account = "Administrator", credential = "c", cert_sha256 = "74D219311D39C5E56C6ED2752053E3CBA63CDC17152BB9DF01F5E820328F4507" }

[[hop]]
from = "fa-app01"
to = "fa-db01"

[[hop]]
from = "fa-app01"
to = "fa-app02"

[[access]]
vendor = "acme"
users = ["tanaka", "suzuki", "sato"]
contract = { from = "2026-04-01", until = "2027-03-31" }
hours = "Mon-Fri 08:30-17:15"
max_session = "2h"
protocols = ["ssh", "rdp"]
sources = ["acme-office"]
"#;

const NIGHT: &str = r#"
[system]
name = "night"
zone = "lgwan"

[[target]]
name = "nt-01"
address = "10.40.0.1"
kind = "physical"
ssh = { account = "maint", credential = "c", host_key = "SHA256:zwxFZkDJRdBjQcMdVAtmpgnwJu8v91OmlxCHrsDj4L8" }

[[access]]
vendor = "acme"
users = ["tanaka"]
contract = { from = "2026-04-01", until = "2026-12-31" }
hours = "Sat 22:00-02:00; Thu 22:00-02:00"
max_session = "8h"
protocols = ["ssh"]
sources = ["acme-office"]
"#;

const OPS: &str = r#"
[system]
name = "ops"
zone = "internet"

[[target]]
name = "ops-01"
address = "10.50.0.1"
kind = "physical"
ssh = { account = "maint", credential = "c", host_key = "SHA256:zwxFZkDJRdBjQcMdVAtmpgnwJu8v91OmlxCHrsDj4L8" }
rdp = { account = "Administrator", credential = "c", cert_sha256 = "74D219311D39C5E56C6ED2752053E3CBA63CDC17152BB9DF01F5E820328F4507" }

[[access]]
vendor = "acme"
users = ["tanaka", "suzuki"]
contract = { from = "2026-01-01", until = "2027-12-31" }
hours = "always"
max_session = "1h"
protocols = ["rdp"]
sources = ["acme-office"]

[[access]]
vendor = "acme"
users = ["tanaka"]
contract = { from = "2026-10-01", until = "2026-11-30" }
hours = "always"
max_session = "4h"
protocols = ["ssh"]
sources = ["acme-office"]
"#;

const JUKI: &str = r#"
[system]
name = "juki"
zone = "mynumber"

[[target]]
name = "juki-db01"
address = "10.30.0.21"
kind = "physical"
ssh = { account = "maint", credential = "c", host_key = "SHA256:zwxFZkDJRdBjQcMdVAtmpgnwJu8v91OmlxCHrsDj4L8" }
rdp = { account = "Administrator", credential = "c", cert_sha256 = "74D219311D39C5E56C6ED2752053E3CBA63CDC17152BB9DF01F5E820328F4507" }

[[target]]
name = "juki-ap01"
address = "10.30.0.22"
kind = "virtual"
ssh = { account = "maint", credential = "c", host_key = "SHA256:zwxFZkDJRdBjQcMdVAtmpgnwJu8v91OmlxCHrsDj4L8" }

[[hop]]
from = "juki-ap01"
to = "juki-db01"

[[access]]
vendor = "kitaden"
users = ["yamada"]
contract = { from = "2026-04-01", until = "2027-03-31" }
hours = "always"
max_session = "1h"
protocols = ["ssh", "rdp"]
sources = ["lg-closed-vpn"]
"#;

/// A system whose sessions need an approved work request.
const KOKUHO: &str = r#"
[system]
name = "kokuho"
zone = "lgwan"

[approval]
required = true
steps = [["role:approver"], ["kimura"]]

[[target]]
name = "kk-db01"
address = "10.60.0.1"
kind = "physical"
ssh = { account = "maint", credential = "c", host_key = "SHA256:zwxFZkDJRdBjQcMdVAtmpgnwJu8v91OmlxCHrsDj4L8" }
rdp = { account = "Administrator", credential = "c", cert_sha256 = "74D219311D39C5E56C6ED2752053E3CBA63CDC17152BB9DF01F5E820328F4507" }

[[target]]
name = "kk-db02"
address = "10.60.0.2"
kind = "physical"
ssh = { account = "maint", credential = "c", host_key = "SHA256:zwxFZkDJRdBjQcMdVAtmpgnwJu8v91OmlxCHrsDj4L8" }

[[access]]
vendor = "acme"
users = ["tanaka", "suzuki", "sato"]
contract = { from = "2026-04-01", until = "2027-03-31" }
hours = "Mon-Fri 08:30-17:15"
max_session = "2h"
protocols = ["ssh", "rdp"]
sources = ["acme-office"]
"#;

const OFFICE: &str = "203.0.113.5";
const CLOSED: &str = "10.99.0.5";

fn networks() -> Vec<Network> {
    vec![
        Network {
            name: "acme-office".into(),
            cidrs: vec![parse_cidr("203.0.113.0/24").unwrap()],
            closed: false,
        },
        Network {
            name: "lg-closed-vpn".into(),
            cidrs: vec![parse_cidr("10.99.0.0/16").unwrap()],
            closed: true,
        },
    ]
}

fn set() -> PolicySet {
    let files: Vec<(PathBuf, String)> = [
        ("fa", FA),
        ("night", NIGHT),
        ("ops", OPS),
        ("juki", JUKI),
        ("kokuho", KOKUHO),
    ]
    .iter()
    .map(|(n, t)| (PathBuf::from(format!("/p/{n}.toml")), t.to_string()))
    .collect();
    let nets = networks();
    PolicySet::parse_files(&files, Some(&nets), None).unwrap()
}

fn person(name: &str, chain: &[&str]) -> Person {
    Person {
        name: name.into(),
        vendor_chain: chain.iter().map(|s| s.to_string()).collect(),
        enabled: true,
        locked: false,
    }
}

fn tanaka() -> Person {
    person("tanaka", &["acme"])
}

/// A wall-clock time in Tokyo.
fn jst(s: &str) -> DateTime<Utc> {
    local_to_utc(
        Tokyo,
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap(),
    )
}

// 2026-11-23 is a Monday; 2026-11-28 a Saturday.
const MON_10: &str = "2026-11-23 10:00:00";

struct Ask<'a> {
    person: Person,
    target: &'a str,
    protocol: Protocol,
    source: &'a str,
    live: Vec<LiveSession>,
    approved: Vec<ApprovedWindow>,
    stops: Vec<EmergencyStop>,
    at: DateTime<Utc>,
    tz: Tz,
    networks: Vec<Network>,
}

fn ask<'a>(target: &'a str, protocol: Protocol, at: &str) -> Ask<'a> {
    Ask {
        person: tanaka(),
        target,
        protocol,
        source: OFFICE,
        live: Vec::new(),
        approved: Vec::new(),
        stops: Vec::new(),
        at: jst(at),
        tz: Tokyo,
        networks: networks(),
    }
}

impl Ask<'_> {
    fn decide(&self) -> Decision {
        let req = Request {
            person: &self.person,
            target: self.target,
            protocol: self.protocol,
            source: self.source.parse().unwrap(),
            live_sessions: &self.live,
            approved: &self.approved,
            stops: &self.stops,
        };
        decide(&req, &set(), &self.networks, self.tz, self.at)
    }

    fn grant(&self) -> Grant {
        match self.decide() {
            Decision::Allow(g) => g,
            Decision::Deny(d) => panic!("expected a grant, got: {d}"),
        }
    }

    fn denial(&self, rule: Rule) -> Denial {
        match self.decide() {
            Decision::Allow(g) => panic!("expected a {rule} denial, got a grant: {g:?}"),
            Decision::Deny(d) => {
                assert_eq!(d.rule, rule, "{d}");
                d
            }
        }
    }

    fn stopped(mut self, scope: StopScope) -> Self {
        self.stops.push(EmergencyStop {
            id: 7 + self.stops.len() as i64,
            scope,
            reason: "不正アクセスの疑い / suspected intrusion".into(),
            by: "admin1".into(),
            since: jst("2026-11-23 09:00:00"),
        });
        self
    }

    fn by(mut self, p: Person) -> Self {
        self.person = p;
        self
    }

    fn from(mut self, source: &'static str) -> Self {
        self.source = source;
        self
    }

    fn live_on(mut self, target: &str) -> (Self, Uuid) {
        let id = Uuid::new_v4();
        self.live.push(LiveSession {
            id,
            target: target.into(),
            protocol: Protocol::Ssh,
        });
        (self, id)
    }
}

#[test]
fn unknown_target() {
    let d = ask("fa-db99", Protocol::Ssh, MON_10).denial(Rule::UnknownTarget);
    assert!(d.reason.contains("no target named \"fa-db99\""), "{d}");
}

#[test]
fn disabled_and_locked_users() {
    let mut p = tanaka();
    p.enabled = false;
    let d = ask("fa-db01", Protocol::Ssh, MON_10)
        .by(p)
        .denial(Rule::UserDisabled);
    assert!(d.reason.contains("disabled"), "{d}");
    let mut p = tanaka();
    p.locked = true;
    let d = ask("fa-db01", Protocol::Ssh, MON_10)
        .by(p)
        .denial(Rule::UserLocked);
    assert!(d.reason.contains("locked"), "{d}");
}

#[test]
fn allowed_grant_carries_endpoint_and_access() {
    let g = ask("fa-db01", Protocol::Ssh, MON_10).grant();
    assert_eq!(g.target.name, "fa-db01");
    assert_eq!(g.protocol, Protocol::Ssh);
    assert_eq!(g.endpoint.account, "maint");
    assert_eq!(g.endpoint.port, 22);
    assert_eq!(g.access.index, 0);
    assert_eq!(g.access.vendor, "acme");
    assert_eq!(g.access.to_string(), "fa.toml access[0] vendor acme");
    assert_eq!(g.hop_parent, None);
}

#[test]
fn no_endpoint() {
    let d = ask("fa-win01", Protocol::Ssh, MON_10).denial(Rule::NoEndpoint);
    assert!(d.reason.contains("no ssh connection"), "{d}");
}

#[test]
fn no_access_entry_names_the_person() {
    let d = ask("fa-db01", Protocol::Ssh, MON_10)
        .by(person("kimura", &["acme"]))
        .denial(Rule::NoAccess);
    assert!(d.reason.contains("kimura"), "{d}");
    // Named, but for another vendor.
    let d = ask("fa-db01", Protocol::Ssh, MON_10)
        .by(person("tanaka", &["other"]))
        .denial(Rule::NoAccess);
    assert!(d.reason.contains("only as an engineer of acme"), "{d}");
    // No vendor at all.
    ask("fa-db01", Protocol::Ssh, MON_10)
        .by(person("tanaka", &[]))
        .denial(Rule::NoAccess);
}

#[test]
fn subcontractors() {
    // sato of acme-sub, which works for acme, is named: covered.
    let g = ask("fa-db01", Protocol::Ssh, MON_10)
        .by(person("sato", &["acme-sub", "acme"]))
        .grant();
    assert_eq!(g.access.vendor, "acme");
    // ito of acme-sub is not named: not covered by acme's approval.
    ask("fa-db01", Protocol::Ssh, MON_10)
        .by(person("ito", &["acme-sub", "acme"]))
        .denial(Rule::NoAccess);
    // sato's vendor chain without acme: not covered.
    ask("fa-db01", Protocol::Ssh, MON_10)
        .by(person("sato", &["acme-sub"]))
        .denial(Rule::NoAccess);
}

#[test]
fn protocol_not_allowed() {
    let d = ask("ops-01", Protocol::Ssh, MON_10)
        .by(person("suzuki", &["acme"]))
        .denial(Rule::Protocol);
    assert!(d.reason.contains("SSH is not allowed to ops-01"), "{d}");
    assert!(d.reason.contains("ops.toml access[0]"), "{d}");
}

#[test]
fn source_outside_named_networks() {
    let d = ask("fa-db01", Protocol::Ssh, MON_10)
        .from("192.0.2.1")
        .denial(Rule::Source);
    assert!(d.reason.contains("192.0.2.1"), "{d}");
    assert!(d.reason.contains("acme-office"), "{d}");
    // A closed network not named by the entry does not help either.
    ask("fa-db01", Protocol::Ssh, MON_10)
        .from(CLOSED)
        .denial(Rule::Source);
    // IPv4-mapped IPv6 is the IPv4 address.
    ask("fa-db01", Protocol::Ssh, MON_10)
        .from("::ffff:203.0.113.5")
        .grant();
}

#[test]
fn contract_first_and_last_day() {
    // ops access[1]: 2026-10-01 to 2026-11-30, always, 4h.
    let first = ask("ops-01", Protocol::Ssh, "2026-10-01 00:00:00").grant();
    assert_eq!(first.access.index, 1);
    assert_eq!(first.ends_because, EndReason::MaxSession);
    let d = ask("ops-01", Protocol::Ssh, "2026-09-30 23:59:59").denial(Rule::Contract);
    assert!(d.reason.contains("starts on 2026-10-01"), "{d}");
    let last = ask("ops-01", Protocol::Ssh, "2026-11-30 23:59:59").grant();
    assert_eq!(last.ends_at, jst("2026-12-01 00:00:00"));
    assert_eq!(last.ends_because, EndReason::ContractEnd);
    let d = ask("ops-01", Protocol::Ssh, "2026-12-01 00:00:00").denial(Rule::Contract);
    assert!(d.reason.contains("ended on 2026-11-30"), "{d}");
}

#[test]
fn hours_start_and_end_minute() {
    ask("fa-db01", Protocol::Ssh, "2026-11-23 08:30:00").grant();
    let d = ask("fa-db01", Protocol::Ssh, "2026-11-23 08:29:59").denial(Rule::Hours);
    assert!(
        d.reason
            .contains("outside allowed hours (Mon-Fri 08:30-17:15 Asia/Tokyo)"),
        "{d}"
    );
    let g = ask("fa-db01", Protocol::Ssh, "2026-11-23 17:14:00").grant();
    assert_eq!(g.ends_at, jst("2026-11-23 17:15:00"));
    let d = ask("fa-db01", Protocol::Ssh, "2026-11-23 17:15:00").denial(Rule::Hours);
    assert!(
        d.reason.contains("next allowed from Tue 2026-11-24 08:30"),
        "{d}"
    );
    // Saturday is outside Mon-Fri.
    ask("fa-db01", Protocol::Ssh, "2026-11-28 10:00:00").denial(Rule::Hours);
}

#[test]
fn hours_across_midnight() {
    // nt-01: Sat 22:00-02:00 (and Thu).
    let g = ask("nt-01", Protocol::Ssh, "2026-11-28 22:00:00").grant();
    assert_eq!(g.ends_at, jst("2026-11-29 02:00:00"));
    assert_eq!(g.ends_because, EndReason::HoursEnd);
    let g = ask("nt-01", Protocol::Ssh, "2026-11-29 01:59:59").grant();
    assert_eq!(g.ends_at, jst("2026-11-29 02:00:00"));
    ask("nt-01", Protocol::Ssh, "2026-11-29 02:00:00").denial(Rule::Hours);
    ask("nt-01", Protocol::Ssh, "2026-11-28 21:59:59").denial(Rule::Hours);
    // Sunday night is not the window; Friday night past midnight neither.
    ask("nt-01", Protocol::Ssh, "2026-11-29 23:00:00").denial(Rule::Hours);
    ask("nt-01", Protocol::Ssh, "2026-11-28 01:00:00").denial(Rule::Hours);
}

#[test]
fn contract_end_inside_a_night_window() {
    // nt-01's contract ends Thursday 2026-12-31; that night's window runs
    // to 02:00 on Friday, but the grant ends with the contract at midnight.
    let g = ask("nt-01", Protocol::Ssh, "2026-12-31 23:00:00").grant();
    assert_eq!(g.ends_at, jst("2027-01-01 00:00:00"));
    assert_eq!(g.ends_because, EndReason::ContractEnd);
    // A Thursday window inside the contract runs to its own end.
    let g = ask("nt-01", Protocol::Ssh, "2026-12-24 23:00:00").grant();
    assert_eq!(
        (g.ends_at, g.ends_because),
        (jst("2026-12-25 02:00:00"), EndReason::HoursEnd)
    );
    ask("nt-01", Protocol::Ssh, "2027-01-02 23:00:00").denial(Rule::Contract);
}

#[test]
fn time_zone_is_honoured() {
    // 08:00 UTC on Monday is 17:00 in Tokyo.
    let mut a = ask("fa-db01", Protocol::Ssh, MON_10);
    a.at = "2026-11-23T08:00:00Z".parse().unwrap();
    let g = a.grant();
    assert_eq!(
        g.ends_at,
        "2026-11-23T08:15:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(g.ends_because, EndReason::HoursEnd);
    // Read in UTC, 08:00 is before the window opens at 08:30.
    a.tz = chrono_tz::UTC;
    a.denial(Rule::Hours);
    // 16:00 UTC Monday: inside in UTC, past midnight (Tue 01:00) in Tokyo.
    let mut b = ask("fa-db01", Protocol::Ssh, MON_10);
    b.at = "2026-11-23T16:00:00Z".parse().unwrap();
    b.denial(Rule::Hours);
    b.tz = chrono_tz::UTC;
    let g = b.grant();
    assert_eq!(
        g.ends_at,
        "2026-11-23T17:15:00Z".parse::<DateTime<Utc>>().unwrap()
    );
}

#[test]
fn ends_at_is_the_earliest_limit() {
    // max_session (2h) before the hours end.
    let g = ask("fa-db01", Protocol::Ssh, MON_10).grant();
    assert_eq!(
        (g.ends_at, g.ends_because),
        (jst("2026-11-23 12:00:00"), EndReason::MaxSession)
    );
    // Hours end (17:15) before max_session (18:00).
    let g = ask("fa-db01", Protocol::Ssh, "2026-11-23 16:00:00").grant();
    assert_eq!(
        (g.ends_at, g.ends_because),
        (jst("2026-11-23 17:15:00"), EndReason::HoursEnd)
    );
    // Contract end (midnight) before max_session (4h).
    let g = ask("ops-01", Protocol::Ssh, "2026-11-30 22:00:00").grant();
    assert_eq!(
        (g.ends_at, g.ends_because),
        (jst("2026-12-01 00:00:00"), EndReason::ContractEnd)
    );
    // A tie between the hours end and max_session: the hours end is named.
    let g = ask("fa-db01", Protocol::Ssh, "2026-11-23 15:15:00").grant();
    assert_eq!(
        (g.ends_at, g.ends_because),
        (jst("2026-11-23 17:15:00"), EndReason::HoursEnd)
    );
}

#[test]
fn first_allowing_entry_wins_else_most_specific_denial() {
    // ops access[0] allows only rdp; access[1] allows ssh.
    let g = ask("ops-01", Protocol::Ssh, MON_10).grant();
    assert_eq!(g.access.index, 1);
    let g = ask("ops-01", Protocol::Rdp, MON_10).grant();
    assert_eq!(g.access.index, 0);
    // In December access[0] refuses the protocol and access[1] the
    // contract: the contract refusal is the more telling one.
    ask("ops-01", Protocol::Ssh, "2026-12-02 10:00:00").denial(Rule::Contract);
}

#[test]
fn mynumber_only_from_closed_networks() {
    let yamada = || person("yamada", &["kitaden"]);
    let d = ask("juki-db01", Protocol::Ssh, MON_10)
        .by(yamada())
        .denial(Rule::MyNumberClosed);
    assert!(d.reason.contains("My Number"), "{d}");
    assert!(d.reason.contains(OFFICE), "{d}");
    let g = ask("juki-db01", Protocol::Ssh, MON_10)
        .by(yamada())
        .from(CLOSED)
        .grant();
    assert_eq!(g.ends_because, EndReason::MaxSession);
    // If sekisho.toml changes so that the named network is no longer closed,
    // decide refuses even though the policy was loaded when it was.
    let mut a = ask("juki-db01", Protocol::Ssh, MON_10)
        .by(yamada())
        .from("10.99.1.5");
    a.networks = vec![
        Network {
            name: "lg-closed-vpn".into(),
            cidrs: vec![parse_cidr("10.99.0.0/16").unwrap()],
            closed: false,
        },
        Network {
            name: "other-closed".into(),
            cidrs: vec![parse_cidr("10.99.1.0/24").unwrap()],
            closed: true,
        },
    ];
    let d = a.denial(Rule::MyNumberClosed);
    assert!(d.reason.contains("lg-closed-vpn is not closed"), "{d}");
}

#[test]
fn rdp_to_physical_is_allowed() {
    let g = ask("fa-db01", Protocol::Rdp, MON_10).grant();
    assert_eq!(g.endpoint.port, 3389);
    assert_eq!(g.endpoint.account, "Administrator");
    assert_eq!(g.hop_parent, None);
}

#[test]
fn rdp_to_virtual_is_refused() {
    let d = ask("fa-app02", Protocol::Rdp, MON_10).denial(Rule::RdpVirtual);
    assert!(
        d.reason.contains(
            "RDP to virtual server fa-app02 is not allowed: use the terminal (SSH) connection"
        ),
        "{d}"
    );
    assert!(d.reason.contains("hop from a session on fa-app01"), "{d}");
    // Also when the virtual server has no RDP endpoint at all.
    let d = ask("fa-app01", Protocol::Rdp, MON_10).denial(Rule::RdpVirtual);
    assert!(
        d.reason.contains("use the terminal (SSH) connection"),
        "{d}"
    );
}

#[test]
fn hop_without_a_live_parent() {
    let d = ask("fa-db01", Protocol::Rdp, MON_10)
        .from("10.20.0.12")
        .denial(Rule::HopNoParent);
    assert!(
        d.reason
            .contains("no live session of yours on fa-app01 to hop from"),
        "{d}"
    );
    // A live session elsewhere does not count.
    let (a, _) = ask("fa-db01", Protocol::Rdp, MON_10)
        .from("10.20.0.12")
        .live_on("fa-app02");
    a.denial(Rule::HopNoParent);
}

#[test]
fn hop_with_parent_but_no_hop_entry() {
    let (a, _) = ask("fa-app02", Protocol::Rdp, MON_10)
        .from("10.20.0.11")
        .live_on("fa-db01");
    let d = a.denial(Rule::HopNotAllowed);
    assert!(
        d.reason
            .contains("RDP from fa-db01 to fa-app02 is not an allowed server-to-server hop"),
        "{d}"
    );
    assert!(d.reason.contains("only from fa-app01"), "{d}");
}

#[test]
fn hop_with_parent_and_entry_is_granted() {
    let (a, parent) = ask("fa-db01", Protocol::Rdp, MON_10)
        .from("10.20.0.12")
        .live_on("fa-app01");
    let g = a.grant();
    assert_eq!(g.hop_parent, Some(parent));
    assert_eq!(g.target.name, "fa-db01");
    // Into a virtual server, too, and from the IPv4-mapped address.
    let (a, parent) = ask("fa-app02", Protocol::Rdp, MON_10)
        .from("::ffff:10.20.0.12")
        .live_on("fa-app01");
    assert_eq!(a.grant().hop_parent, Some(parent));
    // The hop still needs allowed hours.
    let (a, _) = ask("fa-db01", Protocol::Rdp, "2026-11-23 18:00:00")
        .from("10.20.0.12")
        .live_on("fa-app01");
    a.denial(Rule::Hours);
    // And an access entry naming the person.
    let (a, _) = ask("fa-db01", Protocol::Rdp, MON_10)
        .by(person("kimura", &["acme"]))
        .from("10.20.0.12")
        .live_on("fa-app01");
    a.denial(Rule::NoAccess);
}

#[test]
fn hop_within_the_mynumber_zone() {
    let (a, parent) = ask("juki-db01", Protocol::Rdp, MON_10)
        .by(person("yamada", &["kitaden"]))
        .from("10.30.0.22")
        .live_on("juki-ap01");
    assert_eq!(a.grant().hop_parent, Some(parent));
    // From an LGWAN server there is no hop into My Number.
    let (a, _) = ask("juki-db01", Protocol::Rdp, MON_10)
        .by(person("yamada", &["kitaden"]))
        .from("10.20.0.12")
        .live_on("fa-app01");
    a.denial(Rule::HopNotAllowed);
}

#[test]
fn every_rule_has_a_case_and_a_stable_name() {
    let yamada = person("yamada", &["kitaden"]);
    let mut disabled = tanaka();
    disabled.enabled = false;
    let mut locked = tanaka();
    locked.locked = true;
    let mut seen = BTreeSet::new();
    let cases = vec![
        ask("nope", Protocol::Ssh, MON_10),
        ask("fa-db01", Protocol::Ssh, MON_10).by(disabled),
        ask("fa-db01", Protocol::Ssh, MON_10).by(locked),
        ask("fa-win01", Protocol::Ssh, MON_10),
        ask("fa-db01", Protocol::Ssh, MON_10).by(person("kimura", &["acme"])),
        ask("ops-01", Protocol::Ssh, MON_10).by(person("suzuki", &["acme"])),
        ask("ops-01", Protocol::Ssh, "2027-01-04 10:00:00"),
        ask("fa-db01", Protocol::Ssh, "2026-11-23 20:00:00"),
        ask("fa-db01", Protocol::Ssh, MON_10).from("192.0.2.1"),
        ask("juki-db01", Protocol::Ssh, MON_10).by(yamada),
        ask("fa-app02", Protocol::Rdp, MON_10),
        ask("fa-db01", Protocol::Rdp, MON_10).from("10.20.0.12"),
        ask("fa-app02", Protocol::Rdp, MON_10).from("10.20.0.11"),
        ask("kk-db01", Protocol::Ssh, MON_10),
        ask("fa-db01", Protocol::Ssh, MON_10).stopped(StopScope::All),
    ];
    for a in cases {
        match a.decide() {
            Decision::Deny(d) => {
                seen.insert(d.rule.as_str());
            }
            Decision::Allow(g) => panic!("unexpected grant {g:?}"),
        }
    }
    let all: BTreeSet<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(seen, all);
    assert_eq!(all.len(), Rule::ALL.len(), "rule names must be distinct");
    for name in all {
        assert!(
            name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{name}"
        );
    }
}

#[test]
fn reachable_lists_what_decide_allows() {
    let nets = networks();
    let list = reachable(
        &tanaka(),
        &set(),
        &nets,
        Tokyo,
        OFFICE.parse().unwrap(),
        &[],
        &[],
        &[],
        jst(MON_10),
    );
    let names: Vec<(String, Protocol)> =
        list.iter().map(|(t, p, _)| (t.name.clone(), *p)).collect();
    assert!(names.contains(&("fa-db01".into(), Protocol::Ssh)));
    assert!(names.contains(&("fa-db01".into(), Protocol::Rdp)));
    assert!(names.contains(&("fa-app01".into(), Protocol::Ssh)));
    assert!(names.contains(&("ops-01".into(), Protocol::Ssh)));
    assert!(
        !names.contains(&("fa-app02".into(), Protocol::Rdp)),
        "virtual RDP"
    );
    assert!(
        !names.iter().any(|(n, _)| n == "nt-01"),
        "outside night hours"
    );
    assert!(
        !names.iter().any(|(n, _)| n.starts_with("juki")),
        "My Number from the office"
    );
    let (_, _, ends) = list
        .iter()
        .find(|(t, p, _)| t.name == "fa-db01" && *p == Protocol::Ssh)
        .unwrap();
    assert_eq!(*ends, jst("2026-11-23 12:00:00"));
    // Nothing for a locked person.
    let mut p = tanaka();
    p.locked = true;
    assert!(
        reachable(
            &p,
            &set(),
            &nets,
            Tokyo,
            OFFICE.parse().unwrap(),
            &[],
            &[],
            &[],
            jst(MON_10)
        )
        .is_empty()
    );
}

#[test]
fn denial_display_names_the_rule() {
    let d = ask("fa-db01", Protocol::Ssh, "2026-11-23 20:00:00").denial(Rule::Hours);
    assert!(d.to_string().ends_with("[rule: hours]"), "{d}");
}

// ---- approved work requests (system kokuho requires one) -----------------

/// An approved request for tanaka and suzuki on kk-db01 over SSH, open
/// 10:00 to 11:00 on Monday 2026-11-23.
fn window() -> ApprovedWindow {
    ApprovedWindow {
        number: "R-2026-0007".into(),
        revision: 1,
        engineers: vec!["suzuki".into(), "tanaka".into()],
        targets: vec!["kk-db01".into()],
        protocols: vec![Protocol::Ssh],
        from: jst("2026-11-23 10:00:00"),
        until: jst("2026-11-23 11:00:00"),
        emergency: false,
    }
}

impl Ask<'_> {
    fn under(mut self, w: ApprovedWindow) -> Self {
        self.approved.push(w);
        self
    }

    fn at_utc(mut self, t: DateTime<Utc>) -> Self {
        self.at = t;
        self
    }
}

#[test]
fn approval_required_without_any_request_is_denied() {
    let d = ask("kk-db01", Protocol::Ssh, "2026-11-23 10:30:00").denial(Rule::NoApprovedRequest);
    assert!(
        d.reason.contains("requires an approved work request"),
        "{d}"
    );
    assert!(d.reason.contains("none does"), "{d}");
    assert!(d.to_string().ends_with("[rule: no_approved_request]"));
}

#[test]
fn inside_an_approved_window_is_allowed_until_its_end() {
    let g = ask("kk-db01", Protocol::Ssh, "2026-11-23 10:30:00")
        .under(window())
        .grant();
    assert_eq!(g.ends_at, jst("2026-11-23 11:00:00"));
    assert_eq!(g.ends_because, EndReason::RequestWindowEnd);
    let r = g.request.unwrap();
    assert_eq!(r.number, "R-2026-0007");
    assert!(!r.emergency);
    assert_eq!(r.to_string(), "work request R-2026-0007 rev 1");
}

#[test]
fn window_boundaries_open_at_from_and_close_at_until() {
    let w = window();
    // Exactly at the start: open.
    let g = ask("kk-db01", Protocol::Ssh, "2026-11-23 10:00:00")
        .under(w.clone())
        .grant();
    assert_eq!(g.ends_at, w.until);
    // One microsecond before: not yet.
    let d = ask("kk-db01", Protocol::Ssh, MON_10)
        .under(w.clone())
        .at_utc(w.from - chrono::Duration::microseconds(1))
        .denial(Rule::NoApprovedRequest);
    assert!(d.reason.contains("opens at 2026-11-23 10:00 JST"), "{d}");
    // The last microsecond: still open, ending at the window's end.
    let g = ask("kk-db01", Protocol::Ssh, MON_10)
        .under(w.clone())
        .at_utc(w.until - chrono::Duration::microseconds(1))
        .grant();
    assert_eq!(g.ends_at, w.until);
    // Exactly at the end: closed (expired).
    let d = ask("kk-db01", Protocol::Ssh, "2026-11-23 11:00:00")
        .under(w)
        .denial(Rule::NoApprovedRequest);
    assert!(d.reason.contains("ended at 2026-11-23 11:00 JST"), "{d}");
}

#[test]
fn approved_late_opens_only_the_rest_of_the_window() {
    // Asked for 09:00-12:00, approved at 10:40: open from 10:40 only.
    let mut w = window();
    w.from = jst("2026-11-23 10:40:00");
    w.until = jst("2026-11-23 12:00:00");
    let d = ask("kk-db01", Protocol::Ssh, "2026-11-23 10:30:00")
        .under(w.clone())
        .denial(Rule::NoApprovedRequest);
    assert!(d.reason.contains("opens at 2026-11-23 10:40"), "{d}");
    let g = ask("kk-db01", Protocol::Ssh, "2026-11-23 10:40:00")
        .under(w)
        .grant();
    // max_session (2h) ends later than the window: the window ends it.
    assert_eq!(g.ends_at, jst("2026-11-23 12:00:00"));
    assert_eq!(g.ends_because, EndReason::RequestWindowEnd);
}

#[test]
fn an_emergency_is_marked_on_the_grant() {
    let mut w = window();
    w.emergency = true;
    let g = ask("kk-db01", Protocol::Ssh, "2026-11-23 10:30:00")
        .under(w)
        .grant();
    let r = g.request.unwrap();
    assert!(r.emergency);
    assert!(r.to_string().contains("EMERGENCY"));
}

#[test]
fn an_emergency_opens_only_its_own_window() {
    // Approved by one step, but not yet open, and closed at its end.
    let mut w = window();
    w.emergency = true;
    let d = ask("kk-db01", Protocol::Ssh, "2026-11-23 09:59:00")
        .under(w.clone())
        .denial(Rule::NoApprovedRequest);
    assert!(d.reason.contains("opens at 2026-11-23 10:00 JST"), "{d}");
    ask("kk-db01", Protocol::Ssh, "2026-11-23 11:00:00")
        .under(w)
        .denial(Rule::NoApprovedRequest);
}

#[test]
fn an_emergency_still_keeps_the_other_rules() {
    // An emergency window at night does not open the system outside its
    // hours: the hours rule refuses first.
    let mut w = window();
    w.emergency = true;
    w.from = jst("2026-11-23 20:00:00");
    w.until = jst("2026-11-23 23:00:00");
    ask("kk-db01", Protocol::Ssh, "2026-11-23 21:00:00")
        .under(w)
        .denial(Rule::Hours);
}

#[test]
fn two_engineers_named_both_may_work_and_others_not() {
    for name in ["tanaka", "suzuki"] {
        let g = ask("kk-db01", Protocol::Ssh, "2026-11-23 10:30:00")
            .by(person(name, &["acme"]))
            .under(window())
            .grant();
        assert_eq!(g.request.unwrap().number, "R-2026-0007");
    }
    // sato is in the access entry but not in the request.
    let d = ask("kk-db01", Protocol::Ssh, "2026-11-23 10:30:00")
        .by(person("sato", &["acme"]))
        .under(window())
        .denial(Rule::NoApprovedRequest);
    assert!(d.reason.contains("none does"), "{d}");
}

#[test]
fn the_request_must_name_the_target_and_the_protocol() {
    ask("kk-db02", Protocol::Ssh, "2026-11-23 10:30:00")
        .under(window())
        .denial(Rule::NoApprovedRequest);
    ask("kk-db01", Protocol::Rdp, "2026-11-23 10:30:00")
        .under(window())
        .denial(Rule::NoApprovedRequest);
}

#[test]
fn expired_or_revoked_requests_open_nothing() {
    // Expired: the window is over (the store would no longer hand it in).
    let mut w = window();
    w.from = jst("2026-11-20 10:00:00");
    w.until = jst("2026-11-20 11:00:00");
    ask("kk-db01", Protocol::Ssh, "2026-11-23 10:30:00")
        .under(w)
        .denial(Rule::NoApprovedRequest);
    // Revoked: the store hands in only approved and active requests, so a
    // revoked one is simply absent, and the next decision refuses.
    ask("kk-db01", Protocol::Ssh, "2026-11-23 10:30:00").denial(Rule::NoApprovedRequest);
}

#[test]
fn of_several_open_windows_the_longest_wins() {
    let mut later = window();
    later.number = "R-2026-0008".into();
    later.until = jst("2026-11-23 11:30:00");
    let g = ask("kk-db01", Protocol::Ssh, "2026-11-23 10:30:00")
        .under(window())
        .under(later)
        .grant();
    assert_eq!(g.request.unwrap().number, "R-2026-0008");
    assert_eq!(g.ends_at, jst("2026-11-23 11:30:00"));
}

#[test]
fn the_earliest_limit_ends_the_grant_with_ties_to_hours_then_window() {
    // Window ends at 17:15 like the hours: the hours win the tie.
    let mut w = window();
    w.from = jst("2026-11-23 16:00:00");
    w.until = jst("2026-11-23 17:15:00");
    let g = ask("kk-db01", Protocol::Ssh, "2026-11-23 16:00:00")
        .under(w.clone())
        .grant();
    assert_eq!(g.ends_at, jst("2026-11-23 17:15:00"));
    assert_eq!(g.ends_because, EndReason::HoursEnd);
    // Window ends exactly when max_session does: the window wins the tie.
    w.from = jst("2026-11-23 10:00:00");
    w.until = jst("2026-11-23 12:00:00");
    let g = ask("kk-db01", Protocol::Ssh, "2026-11-23 10:00:00")
        .under(w.clone())
        .grant();
    assert_eq!(g.ends_because, EndReason::RequestWindowEnd);
    // A longer window: max_session ends it.
    w.until = jst("2026-11-23 15:00:00");
    let g = ask("kk-db01", Protocol::Ssh, "2026-11-23 10:00:00")
        .under(w)
        .grant();
    assert_eq!(g.ends_at, jst("2026-11-23 12:00:00"));
    assert_eq!(g.ends_because, EndReason::MaxSession);
}

#[test]
fn systems_without_required_approval_ignore_requests() {
    let g = ask("fa-db01", Protocol::Ssh, "2026-11-23 10:30:00").grant();
    assert!(g.request.is_none());
    assert_ne!(g.ends_because, EndReason::RequestWindowEnd);
}

#[test]
fn a_denial_for_other_reasons_is_not_blamed_on_the_request() {
    // Outside the source networks: the source rule, not the request.
    ask("kk-db01", Protocol::Ssh, "2026-11-23 10:30:00")
        .from("198.51.100.7")
        .under(window())
        .denial(Rule::Source);
}

// ---- emergency stops -------------------------------------------------------

#[test]
fn a_vendor_stop_refuses_that_vendor_and_its_subcontractors_only() {
    let d = ask("fa-db01", Protocol::Ssh, MON_10)
        .stopped(StopScope::Vendor("acme".into()))
        .denial(Rule::EmergencyStop);
    // The person is told which stop, why, and who can lift it.
    assert!(d.reason.contains("emergency stop 7 of vendor acme"), "{d}");
    assert!(d.reason.contains("suspected intrusion"), "{d}");
    assert!(d.reason.contains("admin1"), "{d}");
    // A subcontractor working under acme is stopped with it.
    ask("fa-db01", Protocol::Ssh, MON_10)
        .by(person("tanaka", &["sub", "acme"]))
        .stopped(StopScope::Vendor("acme".into()))
        .denial(Rule::EmergencyStop);
    // Another vendor's stop leaves acme working.
    ask("fa-db01", Protocol::Ssh, MON_10)
        .stopped(StopScope::Vendor("kitaden".into()))
        .grant();
}

#[test]
fn a_system_stop_refuses_its_targets_only() {
    let d = ask("fa-db01", Protocol::Ssh, MON_10)
        .stopped(StopScope::System("fa".into()))
        .denial(Rule::EmergencyStop);
    assert!(d.reason.contains("system fa"), "{d}");
    ask("ops-01", Protocol::Ssh, MON_10)
        .stopped(StopScope::System("fa".into()))
        .grant();
}

#[test]
fn a_stop_of_everything_comes_before_every_other_rule() {
    // Even a disabled person on a target they could not reach hears of the
    // stop first: it is the one thing in force for everyone.
    let mut p = tanaka();
    p.enabled = false;
    ask("fa-db01", Protocol::Ssh, MON_10)
        .by(p)
        .stopped(StopScope::All)
        .denial(Rule::EmergencyStop);
    ask("fa-db01", Protocol::Ssh, "2026-11-23 20:00:00")
        .stopped(StopScope::All)
        .denial(Rule::EmergencyStop);
    // An unknown target is still unknown.
    ask("nope", Protocol::Ssh, MON_10)
        .stopped(StopScope::All)
        .denial(Rule::UnknownTarget);
}

#[test]
fn reachable_lists_nothing_a_stop_covers() {
    let nets = networks();
    let stop = EmergencyStop {
        id: 1,
        scope: StopScope::System("fa".into()),
        reason: "r".into(),
        by: "admin1".into(),
        since: jst(MON_10),
    };
    let list = reachable(
        &tanaka(),
        &set(),
        &nets,
        Tokyo,
        OFFICE.parse().unwrap(),
        &[],
        &[],
        std::slice::from_ref(&stop),
        jst(MON_10),
    );
    assert!(!list.is_empty());
    assert!(list.iter().all(|(t, _, _)| t.system != "fa"), "{list:?}");
}
