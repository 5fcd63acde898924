//! `decide`: may this person reach this target now, over this protocol,
//! from this address? A pure function of the request, the policy, the
//! networks, the time zone and the given instant: no I/O, no clock.

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Days, NaiveTime, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use super::hours::{HoursCheck, local_to_utc};
use super::model::{
    Access, AccessRef, ApprovedWindow, Endpoint, LiveSession, Person, PolicySet, Protocol, Target,
    TargetKind, Zone, file_name,
};
use super::stop::EmergencyStop;
use crate::config::{Network, canonical_ip};

/// What is asked.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub person: &'a Person,
    pub target: &'a str,
    pub protocol: Protocol,
    /// The client's address as sekisho sees it.
    pub source: IpAddr,
    /// This person's live sessions (for the RDP hop rule).
    pub live_sessions: &'a [LiveSession],
    /// The approved work requests naming this person (for systems whose
    /// `[approval]` is required).
    pub approved: &'a [ApprovedWindow],
    /// The emergency stops in force (on every node sharing the store).
    pub stops: &'a [EmergencyStop],
}

// One decision per connection: boxing the grant would only make matching
// clumsier for the protocol front ends.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow(Grant),
    Deny(Denial),
}

/// Permission for one session.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub target: Target,
    pub protocol: Protocol,
    pub endpoint: Endpoint,
    /// The session's hard end.
    pub ends_at: DateTime<Utc>,
    pub ends_because: EndReason,
    pub access: AccessRef,
    /// For an RDP hop: the live session it hops from.
    pub hop_parent: Option<Uuid>,
    /// The approved work request the session runs under, where the
    /// system requires one.
    pub request: Option<RequestRef>,
}

/// Which approved work request allowed a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRef {
    pub number: String,
    pub revision: u32,
    pub emergency: bool,
}

impl fmt::Display for RequestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "work request {} rev {}", self.number, self.revision)?;
        if self.emergency {
            f.write_str(" (EMERGENCY)")?;
        }
        Ok(())
    }
}

/// Which limit sets a grant's end. On a tie the contract wins, then the
/// hours, then the approved request's window, then `max_session`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    MaxSession,
    HoursEnd,
    ContractEnd,
    RequestWindowEnd,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::MaxSession => "max_session",
            EndReason::HoursEnd => "hours_end",
            EndReason::ContractEnd => "contract_end",
            EndReason::RequestWindowEnd => "request_window_end",
        }
    }

    /// Words for people.
    pub fn describe(self) -> &'static str {
        match self {
            EndReason::MaxSession => "longest session allowed",
            EndReason::HoursEnd => "end of allowed hours",
            EndReason::ContractEnd => "end of the maintenance contract",
            EndReason::RequestWindowEnd => "end of the approved work request's window",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the rule that refused and words for the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub rule: Rule,
    pub reason: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [rule: {}]", self.reason, self.rule)
    }
}

/// Each rule `decide` enforces; `as_str` is stable for audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    UnknownTarget,
    UserDisabled,
    UserLocked,
    NoEndpoint,
    NoAccess,
    Protocol,
    Contract,
    Hours,
    Source,
    MyNumberClosed,
    RdpVirtual,
    HopNoParent,
    HopNotAllowed,
    /// The system requires an approved work request and none covers this.
    NoApprovedRequest,
    /// An administrator's emergency stop covers the system or the vendor.
    EmergencyStop,
}

impl Rule {
    pub const ALL: [Rule; 15] = [
        Rule::UnknownTarget,
        Rule::UserDisabled,
        Rule::UserLocked,
        Rule::NoEndpoint,
        Rule::NoAccess,
        Rule::Protocol,
        Rule::Contract,
        Rule::Hours,
        Rule::Source,
        Rule::MyNumberClosed,
        Rule::RdpVirtual,
        Rule::HopNoParent,
        Rule::HopNotAllowed,
        Rule::NoApprovedRequest,
        Rule::EmergencyStop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::UnknownTarget => "unknown_target",
            Rule::UserDisabled => "user_disabled",
            Rule::UserLocked => "user_locked",
            Rule::NoEndpoint => "no_endpoint",
            Rule::NoAccess => "no_access",
            Rule::Protocol => "protocol",
            Rule::Contract => "contract",
            Rule::Hours => "hours",
            Rule::Source => "source",
            Rule::MyNumberClosed => "mynumber_closed",
            Rule::RdpVirtual => "rdp_virtual",
            Rule::HopNoParent => "hop_no_parent",
            Rule::HopNotAllowed => "hop_not_allowed",
            Rule::NoApprovedRequest => "no_approved_request",
            Rule::EmergencyStop => "emergency_stop",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn denial(rule: Rule, reason: String) -> Denial {
    Denial { rule, reason }
}

fn deny(rule: Rule, reason: String) -> Decision {
    Decision::Deny(denial(rule, reason))
}

/// How the request reaches the target: from the person's own terminal, or
/// as an RDP hop from a registered target they are working on.
enum Route {
    Direct,
    Hop { parent: Uuid },
}

/// Decides one request. Checks, in order: the target exists; no emergency
/// stop covers its system or the person's vendor chain; the person is
/// enabled and not locked; the RDP rule (physical target, or an allowed hop
/// from a live session); the target offers the protocol; the My Number
/// zone's closed-network rule; then the access entries naming the person,
/// in file order: protocol, source network, contract, hours, and, where the
/// system's `[approval]` is required, an approved work request naming the
/// person, target and protocol whose window is open now. The first entry
/// that allows wins; if none does, the denial of the entry that got
/// furthest is given.
///
/// A hop's source is the registered parent target, not the person's
/// network: the parent session already passed the person's source check, so
/// the access entry's `sources` are not applied to a hop.
pub fn decide(
    req: &Request,
    set: &PolicySet,
    networks: &[Network],
    tz: Tz,
    now: DateTime<Utc>,
) -> Decision {
    let person = req.person;
    let Some(target) = set.target(req.target) else {
        return deny(
            Rule::UnknownTarget,
            format!("there is no target named {:?}", req.target),
        );
    };
    // Before anything about the person: a stop refuses everyone in scope.
    if let Some(stop) = req
        .stops
        .iter()
        .find(|s| s.covers(&target.system, &person.vendor_chain))
    {
        return deny(
            Rule::EmergencyStop,
            format!(
                "{}; no new sessions until an administrator lifts it (by {})",
                stop.shown(),
                stop.by
            ),
        );
    }
    if !person.enabled {
        return deny(
            Rule::UserDisabled,
            format!(
                "your account {:?} is disabled; ask an administrator",
                person.name
            ),
        );
    }
    if person.locked {
        return deny(
            Rule::UserLocked,
            format!(
                "your account {:?} is locked; ask an administrator to unlock it",
                person.name
            ),
        );
    }
    let source = canonical_ip(req.source);

    let route = match route(req, set, target, source) {
        Ok(r) => r,
        Err(d) => return Decision::Deny(d),
    };

    let Some(endpoint) = target.endpoint(req.protocol) else {
        return deny(
            Rule::NoEndpoint,
            format!(
                "{} cannot be reached over {}: no {} connection is registered for it",
                target.name,
                req.protocol.as_str().to_uppercase(),
                req.protocol
            ),
        );
    };

    if matches!(route, Route::Direct)
        && target.zone == Zone::MyNumber
        && !networks.iter().any(|n| n.closed && n.contains(source))
    {
        return deny(
            Rule::MyNumberClosed,
            format!(
                "{} is a My Number system, reachable only from a closed network; your address {source} is not in one",
                target.name
            ),
        );
    }

    let entries: Vec<&Access> = set.access_for(target).collect();
    let covering: Vec<&Access> = entries
        .iter()
        .copied()
        .filter(|a| a.covers_person(person))
        .collect();
    if covering.is_empty() {
        return deny(Rule::NoAccess, no_access_reason(person, target, &entries));
    }

    let approval_required = set
        .system(&target.system)
        .is_some_and(|s| s.requires_approval());
    let mut best: Option<(u8, Denial)> = None;
    for access in covering {
        match check_entry(
            req,
            access,
            target,
            endpoint,
            &route,
            source,
            networks,
            tz,
            now,
            approval_required,
        ) {
            Ok(grant) => return Decision::Allow(grant),
            Err((stage, denial)) => {
                if best.as_ref().is_none_or(|(s, _)| stage > *s) {
                    best = Some((stage, denial));
                }
            }
        }
    }
    match best {
        Some((_, d)) => Decision::Deny(d),
        // Unreachable: `covering` was not empty. Deny anyway.
        None => deny(Rule::NoAccess, no_access_reason(person, target, &entries)),
    }
}

/// The RDP rule. RDP from a registered target's address is a hop and needs a
/// `[[hop]]` entry and a live session of the person on that target; other
/// RDP is allowed only to physical servers.
fn route(req: &Request, set: &PolicySet, target: &Target, source: IpAddr) -> Result<Route, Denial> {
    if req.protocol != Protocol::Rdp {
        return Ok(Route::Direct);
    }
    if let Some(parent) = set.target_by_address(source) {
        if !set.hop_allowed(&parent.name, &target.name) {
            let allowed: Vec<&str> = set
                .hops()
                .filter(|h| h.to == target.name)
                .map(|h| h.from.as_str())
                .collect();
            let hint = if allowed.is_empty() {
                format!("no hop into {} is allowed", target.name)
            } else {
                format!(
                    "hops into {} are allowed only from {}",
                    target.name,
                    allowed.join(", ")
                )
            };
            return Err(denial(
                Rule::HopNotAllowed,
                format!(
                    "RDP from {} to {} is not an allowed server-to-server hop ({hint})",
                    parent.name, target.name
                ),
            ));
        }
        if target.zone == Zone::MyNumber && parent.zone != Zone::MyNumber {
            return Err(denial(
                Rule::MyNumberClosed,
                format!(
                    "{} is a My Number system, reachable only from a closed network, not by a hop from {} ({} zone)",
                    target.name, parent.name, parent.zone
                ),
            ));
        }
        let Some(live) = req.live_sessions.iter().find(|s| s.target == parent.name) else {
            return Err(denial(
                Rule::HopNoParent,
                format!(
                    "no live session of yours on {} to hop from: open a terminal session on {} through sekisho first",
                    parent.name, parent.name
                ),
            ));
        };
        return Ok(Route::Hop { parent: live.id });
    }
    if target.kind == TargetKind::Virtual {
        let hops: Vec<&str> = set
            .hops()
            .filter(|h| h.to == target.name)
            .map(|h| h.from.as_str())
            .collect();
        let also = if hops.is_empty() {
            String::new()
        } else {
            format!(", or hop from a session on {}", hops.join(", "))
        };
        return Err(denial(
            Rule::RdpVirtual,
            format!(
                "RDP to virtual server {} is not allowed: use the terminal (SSH) connection{also}",
                target.name
            ),
        ));
    }
    Ok(Route::Direct)
}

fn no_access_reason(person: &Person, target: &Target, entries: &[&Access]) -> String {
    let vendors = if person.vendor_chain.is_empty() {
        "no vendor".to_string()
    } else {
        format!("vendor {}", person.vendor_chain.join(" for "))
    };
    let named_elsewhere: Vec<&str> = entries
        .iter()
        .filter(|a| a.users.contains(&person.name))
        .map(|a| a.vendor.as_str())
        .collect();
    if named_elsewhere.is_empty() {
        format!(
            "no access entry of system {} names you ({}, {vendors}) for {}",
            target.system, person.name, target.name
        )
    } else {
        format!(
            "access to {} names you only as an engineer of {}, but you are registered with {vendors}",
            target.name,
            named_elsewhere.join(", ")
        )
    }
}

/// Checks one access entry. On refusal also returns how far the request got
/// (higher = more specific), to pick the most telling denial.
#[allow(clippy::too_many_arguments)]
fn check_entry(
    req: &Request,
    access: &Access,
    target: &Target,
    endpoint: &Endpoint,
    route: &Route,
    source: IpAddr,
    networks: &[Network],
    tz: Tz,
    now: DateTime<Utc>,
    approval_required: bool,
) -> Result<Grant, (u8, Denial)> {
    let refuse = |stage: u8, rule: Rule, reason: String| Err((stage, Denial { rule, reason }));
    let file = file_name(&access.file);

    if !access.protocols.contains(&req.protocol) {
        let allowed: Vec<&str> = access.protocols.iter().map(|p| p.as_str()).collect();
        return refuse(
            0,
            Rule::Protocol,
            format!(
                "{} is not allowed to {} for vendor {} (allowed: {}; {file} access[{}])",
                req.protocol.as_str().to_uppercase(),
                target.name,
                access.vendor,
                allowed.join(", "),
                access.index
            ),
        );
    }

    if matches!(route, Route::Direct) {
        let named: Vec<&Network> = networks
            .iter()
            .filter(|n| access.sources.contains(&n.name))
            .filter(|n| n.contains(source))
            .collect();
        if named.is_empty() {
            return refuse(
                1,
                Rule::Source,
                format!(
                    "your address {source} is not in a network allowed for vendor {} on {} (allowed: {}; {file} access[{}])",
                    access.vendor,
                    target.name,
                    access.sources.join(", "),
                    access.index
                ),
            );
        }
        if target.zone == Zone::MyNumber && !named.iter().any(|n| n.closed) {
            return refuse(
                1,
                Rule::MyNumberClosed,
                format!(
                    "{} is a My Number system, reachable only from a closed network; {} is not closed",
                    target.name,
                    named
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }

    let day_start = |d: chrono::NaiveDate| local_to_utc(tz, d.and_time(NaiveTime::MIN));
    let contract_start = day_start(access.contract.from);
    let contract_end = access
        .contract
        .until
        .checked_add_days(Days::new(1))
        .map(day_start)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if now < contract_start {
        return refuse(
            2,
            Rule::Contract,
            format!(
                "the maintenance contract of vendor {} for {} starts on {} (it runs {} to {})",
                access.vendor,
                target.system,
                access.contract.from,
                access.contract.from,
                access.contract.until
            ),
        );
    }
    if now >= contract_end {
        return refuse(
            2,
            Rule::Contract,
            format!(
                "the maintenance contract of vendor {} for {} ended on {} (it ran {} to {})",
                access.vendor,
                target.system,
                access.contract.until,
                access.contract.from,
                access.contract.until
            ),
        );
    }

    let hours_end = match access.hours.check(tz, now) {
        HoursCheck::Inside(end) => end,
        HoursCheck::Outside(next) => {
            let next = next
                .map(|t| {
                    format!(
                        "; next allowed from {}",
                        t.with_timezone(&tz).format("%a %Y-%m-%d %H:%M")
                    )
                })
                .unwrap_or_default();
            return refuse(
                3,
                Rule::Hours,
                format!("outside allowed hours ({} {tz}){next}", access.hours),
            );
        }
    };

    let by_max = chrono::Duration::from_std(access.max_session)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    // Tie order: contract, hours, max_session (first minimum wins).
    let mut ends = (contract_end, EndReason::ContractEnd);
    if let Some(h) = hours_end
        && h < ends.0
    {
        ends = (h, EndReason::HoursEnd);
    }
    let mut request = None;
    if approval_required {
        let window = match approved_window(req, target, tz, now) {
            Ok(w) => w,
            Err(reason) => return refuse(4, Rule::NoApprovedRequest, reason),
        };
        if window.until < ends.0 {
            ends = (window.until, EndReason::RequestWindowEnd);
        }
        request = Some(RequestRef {
            number: window.number.clone(),
            revision: window.revision,
            emergency: window.emergency,
        });
    }
    if by_max < ends.0 {
        ends = (by_max, EndReason::MaxSession);
    }

    Ok(Grant {
        target: target.clone(),
        protocol: req.protocol,
        endpoint: endpoint.clone(),
        ends_at: ends.0,
        ends_because: ends.1,
        access: access.reference(),
        hop_parent: match route {
            Route::Hop { parent } => Some(*parent),
            Route::Direct => None,
        },
        request,
    })
}

/// The approved request under which this session may run now: it names the
/// person, target and protocol and its window is open (`from <= now <
/// until`). Of several, the one open longest. Otherwise the words saying
/// why none does.
fn approved_window<'a>(
    req: &Request<'a>,
    target: &Target,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<&'a ApprovedWindow, String> {
    let naming: Vec<&ApprovedWindow> = req
        .approved
        .iter()
        .filter(|w| w.names(&req.person.name, &target.name, req.protocol))
        .collect();
    if let Some(w) = naming
        .iter()
        .filter(|w| w.from <= now && now < w.until)
        .max_by_key(|w| w.until)
    {
        return Ok(w);
    }
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string();
    let system = &target.system;
    if let Some(w) = naming
        .iter()
        .filter(|w| now < w.from)
        .min_by_key(|w| w.from)
    {
        return Err(format!(
            "system {system} requires an approved work request; yours ({}) opens at {}",
            w.number,
            local(w.from)
        ));
    }
    if let Some(w) = naming.iter().max_by_key(|w| w.until) {
        return Err(format!(
            "system {system} requires an approved work request; yours ({}) ended at {}",
            w.number,
            local(w.until)
        ));
    }
    Err(format!(
        "system {system} requires an approved work request naming you, {} and {}; none does (file one with `sekisho request new` and have it approved)",
        target.name,
        req.protocol.as_str().to_uppercase()
    ))
}

/// Every target and protocol this person may use now from `source`, with
/// each grant's end: for menus and `who-can`.
// The inputs of `Request` plus the policy and clock, as `decide` takes them.
#[allow(clippy::too_many_arguments)]
pub fn reachable(
    person: &Person,
    set: &PolicySet,
    networks: &[Network],
    tz: Tz,
    source: IpAddr,
    live_sessions: &[LiveSession],
    approved: &[ApprovedWindow],
    stops: &[EmergencyStop],
    now: DateTime<Utc>,
) -> Vec<(Target, Protocol, DateTime<Utc>)> {
    let mut out = Vec::new();
    for target in set.targets() {
        for protocol in Protocol::ALL {
            if target.endpoint(protocol).is_none() {
                continue;
            }
            let req = Request {
                person,
                target: &target.name,
                protocol,
                source,
                live_sessions,
                approved,
                stops,
            };
            if let Decision::Allow(g) = decide(&req, set, networks, tz, now) {
                out.push((g.target, protocol, g.ends_at));
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
