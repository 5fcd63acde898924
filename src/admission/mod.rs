//! Admission: who may start signing in, and how often. The one gate both
//! listeners (SSH and RDP) ask before they spend anything on a client.
//!
//! # Threat model
//!
//! Anyone who can reach a listener can open connections and guess. Nothing
//! before sign-in may let one client exhaust what everyone shares:
//! descriptors, memory, the argon2 budget, the audit log. So, as OpenSSH
//! does with `MaxStartups`, `PerSourceMaxStartups` and `PerSourcePenalties`:
//!
//! - **Unauthenticated connections in total** are capped with random early
//!   drop: below `soft` every connection is let in; from `soft` on a new one
//!   is refused with a probability rising linearly from `drop_percent` to
//!   100 % at `hard` ([`Startups`]). A flood then cannot lock out everyone
//!   else deterministically: some legitimate connections still get through.
//! - **Unauthenticated connections per source address** are capped, so one
//!   address cannot take the whole total.
//! - **Sign-in attempts per source address** (every secret checked: a
//!   password, a key signature, a one-time code or ticket, whatever the user
//!   name) are limited per minute with a token bucket, so guessing across many
//!   names is as slow as guessing one.
//!
//! A connection stops counting as unauthenticated when its sign-in completes
//! or it closes. Addresses are canonical ([`canonical_ip`]): an IPv4-mapped
//! IPv6 address is the IPv4 address.
//!
//! Every refusal has a named [`Refusal`]. Refusals are reported (logged and
//! audited by the caller) at most once per [`REPORT_INTERVAL`] per address
//! and reason, with the number left unreported since, so a flood cannot
//! flood the log or the audit table. A handshake that fails because the
//! client shares no algorithm with sekisho is reported the same way; it
//! counts against no limit.
//!
//! [`Admission`] is the pure state machine: the clock and the random numbers
//! are passed in. [`Gate`] wraps it for the listeners, with a guard per
//! connection that gives the slot back when dropped.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::canonical_ip;

pub mod accept;

pub use accept::Acceptor;

/// How often a refusal is reported per address and reason.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// OpenSSH's `MaxStartups start:rate:full`: random early drop of new
/// unauthenticated connections between `soft` and `hard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Startups {
    /// From this many unauthenticated connections on, new ones may be dropped.
    pub soft: u32,
    /// The chance of a drop at `soft`, in percent.
    pub drop_percent: u32,
    /// At this many, every new one is dropped.
    pub hard: u32,
}

impl Startups {
    /// Reads `10:30:100` (or a bare `100`, meaning no early drop).
    pub fn parse(s: &str) -> Result<Startups, String> {
        let bad = || format!("{s:?} is not soft:percent:hard (like \"10:30:100\") or a number");
        let nums: Vec<u32> = s
            .trim()
            .split(':')
            .map(|p| p.trim().parse::<u32>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let startups = match nums[..] {
            [hard] => Startups {
                soft: hard,
                drop_percent: 100,
                hard,
            },
            [soft, drop_percent, hard] => Startups {
                soft,
                drop_percent,
                hard,
            },
            _ => return Err(bad()),
        };
        if startups.hard == 0 {
            return Err(format!("{s:?}: the hard limit must be at least 1"));
        }
        if startups.soft > startups.hard {
            return Err(format!("{s:?}: the soft limit is above the hard limit"));
        }
        if startups.drop_percent > 100 {
            return Err(format!("{s:?}: the drop chance is above 100 percent"));
        }
        Ok(startups)
    }

    /// The chance in percent that a new connection is dropped when
    /// `unauthenticated` are open already.
    pub fn drop_chance(&self, unauthenticated: u32) -> u32 {
        if unauthenticated >= self.hard {
            100
        } else if unauthenticated < self.soft {
            0
        } else {
            // Linear from drop_percent at soft to 100 at hard (as OpenSSH).
            let span = u64::from(self.hard - self.soft);
            let above = u64::from(unauthenticated - self.soft);
            let rise = u64::from(100 - self.drop_percent) * above / span;
            self.drop_percent + u32::try_from(rise).unwrap_or(100)
        }
    }
}

impl fmt::Display for Startups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.soft, self.drop_percent, self.hard)
    }
}

/// The limits of `sekisho.toml`'s `[limits]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Unauthenticated connections in total (both listeners).
    pub max_startups: Startups,
    /// Unauthenticated connections from one address; zero means no limit.
    pub max_startups_per_source: u32,
    /// Secrets checked per minute for one address; zero means no limit.
    pub signin_attempts_per_minute: u32,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            max_startups: Startups {
                soft: 10,
                drop_percent: 30,
                hard: 100,
            },
            // Below the soft limit: one address alone never makes others
            // face an early drop.
            max_startups_per_source: 5,
            signin_attempts_per_minute: 30,
        }
    }
}

/// Why a connection or a sign-in attempt was refused. The names are stable:
/// they appear in logs and in the audit log's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `max_startups` hard limit reached.
    TooManyUnauthenticated,
    /// Randomly dropped between the soft and the hard limit.
    EarlyDrop,
    /// `max_startups_per_source` reached for this address.
    TooManyFromSource,
    /// `signin_attempts_per_minute` used up for this address.
    TooManyAttempts,
    /// The client and sekisho share no algorithm of some kind (SSH: cipher,
    /// key exchange, host key, MAC, e.g. under `[ssh] ciphers`; RDP: a
    /// security protocol, TLS or NLA): the handshake cannot start. Reported
    /// like the limits, so a scanner trying every offer cannot flood the
    /// log or the audit table.
    NoCommonAlgorithm,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooManyUnauthenticated => "too_many_unauthenticated",
            Refusal::EarlyDrop => "early_drop",
            Refusal::TooManyFromSource => "too_many_from_source",
            Refusal::TooManyAttempts => "too_many_attempts",
            Refusal::NoCommonAlgorithm => "no_common_algorithm",
        }
    }

    /// Words for the log and the audit detail.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::TooManyUnauthenticated => {
                "too many connections are signing in (max_startups hard limit)"
            }
            Refusal::EarlyDrop => {
                "dropped at random: many connections are signing in (max_startups)"
            }
            Refusal::TooManyFromSource => {
                "too many connections from this address are signing in (max_startups_per_source)"
            }
            Refusal::TooManyAttempts => {
                "too many sign-in attempts from this address (signin_attempts_per_minute)"
            }
            Refusal::NoCommonAlgorithm => {
                "the client offers no algorithm or security protocol sekisho accepts (SSH: [ssh] ciphers; RDP: TLS or NLA)"
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal to log and audit now: `unreported` more of the same happened
/// since the last report for this address and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub source: IpAddr,
    pub refusal: Refusal,
    /// Refusals of this kind from this address not reported before this one.
    pub unreported: u64,
}

/// A refusal, and the report to make of it if one is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub refusal: Refusal,
    pub report: Option<Report>,
}

/// Per-address attempt budget: a token bucket of `per_minute` tokens that
/// refills continuously.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct ReportState {
    /// When this address and reason were last reported.
    last: Option<Instant>,
    unreported: u64,
}

/// The pure admission state: counts and budgets, no clock, no randomness.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    unauthenticated: u32,
    per_source: HashMap<IpAddr, u32>,
    attempts: HashMap<IpAddr, Bucket>,
    reports: HashMap<(IpAddr, Refusal), ReportState>,
}

/// Above this many remembered addresses, buckets that are full again and
/// report states older than the interval are forgotten.
const PRUNE_ABOVE: usize = 4096;

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Admission {
        Admission {
            limits,
            unauthenticated: 0,
            per_source: HashMap::new(),
            attempts: HashMap::new(),
            reports: HashMap::new(),
        }
    }

    pub fn limits(&self) -> &AdmissionLimits {
        &self.limits
    }

    /// Unauthenticated connections now.
    pub fn unauthenticated(&self) -> u32 {
        self.unauthenticated
    }

    /// Unauthenticated connections from `source` now.
    pub fn unauthenticated_from(&self, source: IpAddr) -> u32 {
        self.per_source
            .get(&canonical_ip(source))
            .copied()
            .unwrap_or(0)
    }

    /// A new connection from `source`. `roll` is a uniformly random number
    /// in 0..100 (the early-drop dice). On success the connection counts as
    /// unauthenticated until [`Admission::release`].
    pub fn connect(&mut self, source: IpAddr, now: Instant, roll: u32) -> Result<(), Refused> {
        let source = canonical_ip(source);
        let from_source = self.per_source.get(&source).copied().unwrap_or(0);
        let refusal = if self.unauthenticated >= self.limits.max_startups.hard {
            Some(Refusal::TooManyUnauthenticated)
        } else if self.limits.max_startups_per_source > 0
            && from_source >= self.limits.max_startups_per_source
        {
            Some(Refusal::TooManyFromSource)
        } else if roll < self.limits.max_startups.drop_chance(self.unauthenticated) {
            Some(Refusal::EarlyDrop)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Err(self.refused(source, refusal, now));
        }
        self.unauthenticated += 1;
        self.per_source.insert(source, from_source + 1);
        Ok(())
    }

    /// A connection admitted by [`Admission::connect`] signed in or closed.
    pub fn release(&mut self, source: IpAddr) {
        let source = canonical_ip(source);
        self.unauthenticated = self.unauthenticated.saturating_sub(1);
        if let Some(n) = self.per_source.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    /// A secret from `source` is about to be checked: allowed if the
    /// address has budget left this minute (and then it is spent).
    pub fn attempt(&mut self, source: IpAddr, now: Instant) -> Result<(), Refused> {
        let per_minute = self.limits.signin_attempts_per_minute;
        if per_minute == 0 {
            return Ok(());
        }
        let source = canonical_ip(source);
        let capacity = f64::from(per_minute);
        if self.attempts.len() > PRUNE_ABOVE {
            self.prune(now);
        }
        let bucket = self.attempts.entry(source).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * capacity / 60.0).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.refused(source, Refusal::TooManyAttempts, now))
        }
    }

    /// A client from `source` shared no algorithm of a kind with sekisho:
    /// nothing to count, only a report to make when one is due.
    pub fn no_common_algorithm(&mut self, source: IpAddr, now: Instant) -> Refused {
        self.refused(canonical_ip(source), Refusal::NoCommonAlgorithm, now)
    }

    fn refused(&mut self, source: IpAddr, refusal: Refusal, now: Instant) -> Refused {
        if self.reports.len() > PRUNE_ABOVE {
            self.prune(now);
        }
        let state = self
            .reports
            .entry((source, refusal))
            .or_insert(ReportState {
                last: None,
                unreported: 0,
            });
        let due = state
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= REPORT_INTERVAL);
        let report = if due {
            let unreported = state.unreported;
            *state = ReportState {
                last: Some(now),
                unreported: 0,
            };
            Some(Report {
                source,
                refusal,
                unreported,
            })
        } else {
            state.unreported += 1;
            None
        };
        Refused { refusal, report }
    }

    /// Forgets what no longer matters: full buckets and quiet reports.
    /// (A report state with unreported refusals is kept so the count is not
    /// lost; it is bounded by the number of addresses refused this minute.)
    fn prune(&mut self, now: Instant) {
        let capacity = f64::from(self.limits.signin_attempts_per_minute);
        self.attempts.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * capacity / 60.0 < capacity
        });
        self.reports.retain(|_, r| {
            r.unreported > 0
                || r.last
                    .is_some_and(|last| now.saturating_duration_since(last) < REPORT_INTERVAL)
        });
    }
}

/// How much of what a protocol said about a refusal is logged and audited.
pub const DETAIL_MAX: usize = 512;

/// What the gate does with a [`Report`] besides logging it (`sekisho serve`
/// writes an audit event), with the listener's protocol (`ssh`, `rdp`) and
/// what the protocol said, if anything (both algorithm offers; else empty).
pub type Reporter = Arc<dyn Fn(Report, &'static str, &str) + Send + Sync>;

/// The shared [`Admission`] of a process, with the real clock and dice, for
/// the listeners. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    state: Arc<Mutex<Admission>>,
    reporter: Reporter,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate that logs refusals (at most once a minute per address and
    /// reason) and hands them to `reporter`.
    pub fn new(limits: AdmissionLimits, reporter: Reporter) -> Gate {
        Gate {
            state: Arc::new(Mutex::new(Admission::new(limits))),
            reporter,
        }
    }

    /// A gate that only logs (for gateways run without a store).
    pub fn logging_only(limits: AdmissionLimits) -> Gate {
        Gate::new(limits, Arc::new(|_, _, _| {}))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Admission) -> T) -> T {
        // The state stays consistent whatever a panicking holder did: every
        // update is a single assignment.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    fn report(&self, refused: Refused, protocol: &'static str, detail: &str) -> Refusal {
        if let Some(report) = refused.report {
            tracing::warn!(
                source = %report.source,
                protocol,
                reason = report.refusal.as_str(),
                unreported = report.unreported,
                detail,
                "{}", report.refusal.describe()
            );
            (self.reporter)(report, protocol, detail);
        }
        refused.refusal
    }

    /// A new connection from `source` on the `protocol` listener: a guard
    /// holding its unauthenticated slot, or the refusal (already reported).
    pub fn connect(&self, source: IpAddr, protocol: &'static str) -> Result<Pending, Refusal> {
        let roll = rand::Rng::gen_range(&mut rand::thread_rng(), 0..100);
        match self.with(|a| a.connect(source, Instant::now(), roll)) {
            Ok(()) => Ok(Pending {
                gate: Some(self.clone()),
                source,
            }),
            Err(refused) => Err(self.report(refused, protocol, "")),
        }
    }

    /// A secret from `source` is about to be checked (see
    /// [`Admission::attempt`]); the refusal is already reported.
    pub fn attempt(&self, source: IpAddr, protocol: &'static str) -> Result<(), Refusal> {
        self.with(|a| a.attempt(source, Instant::now()))
            .map_err(|refused| self.report(refused, protocol, ""))
    }

    /// A handshake from `source` failed for want of a common algorithm;
    /// `detail` says which (both offers). Reported (logged and audited) at
    /// most once per [`REPORT_INTERVAL`] per address, like the refusals;
    /// the client's offer is its own words, so at most [`DETAIL_MAX`]
    /// characters of `detail` are kept.
    pub fn no_common_algorithm(&self, source: IpAddr, protocol: &'static str, detail: &str) {
        let refused = self.with(|a| a.no_common_algorithm(source, Instant::now()));
        if refused.report.is_some() {
            let mut kept: String = detail.chars().take(DETAIL_MAX).collect();
            if kept.len() < detail.len() {
                kept.push('…');
            }
            self.report(refused, protocol, &kept);
        }
    }

    /// Unauthenticated connections now.
    pub fn unauthenticated(&self) -> u32 {
        self.with(|a| a.unauthenticated())
    }
}

/// An admitted connection's unauthenticated slot; given back when the
/// connection signs in ([`Pending::signed_in`]) or is dropped.
#[derive(Debug)]
pub struct Pending {
    gate: Option<Gate>,
    source: IpAddr,
}

impl Pending {
    /// The connection signed in: it no longer counts as unauthenticated.
    pub fn signed_in(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.with(|a| a.release(self.source));
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.signed_in();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits(startups: &str, per_source: u32, per_minute: u32) -> AdmissionLimits {
        AdmissionLimits {
            max_startups: Startups::parse(startups).unwrap(),
            max_startups_per_source: per_source,
            signin_attempts_per_minute: per_minute,
        }
    }

    #[test]
    fn startups_parse_like_openssh() {
        assert_eq!(
            Startups::parse("10:30:100").unwrap(),
            Startups {
                soft: 10,
                drop_percent: 30,
                hard: 100
            }
        );
        assert_eq!(Startups::parse(" 50 ").unwrap().to_string(), "50:100:50");
        for bad in [
            "",
            "10:30",
            "a:b:c",
            "0",
            "20:30:10",
            "10:101:100",
            "1:2:3:4",
            "-1",
        ] {
            assert!(Startups::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn drop_chance_rises_linearly_from_soft_to_hard() {
        let s = Startups::parse("10:30:100").unwrap();
        assert_eq!(s.drop_chance(0), 0);
        assert_eq!(s.drop_chance(9), 0);
        assert_eq!(s.drop_chance(10), 30);
        assert_eq!(s.drop_chance(55), 65);
        assert_eq!(s.drop_chance(99), 99);
        assert_eq!(s.drop_chance(100), 100);
        assert_eq!(s.drop_chance(1000), 100);
        // No early drop: a plain cap.
        let plain = Startups::parse("5").unwrap();
        assert_eq!(plain.drop_chance(4), 0);
        assert_eq!(plain.drop_chance(5), 100);
    }

    #[test]
    fn early_drop_follows_the_dice() {
        let now = Instant::now();
        let mut a = Admission::new(limits("2:50:4", 0, 0));
        a.connect(ip("10.0.0.1"), now, 0).unwrap();
        a.connect(ip("10.0.0.2"), now, 0).unwrap();
        // At 2 open the chance is 50 %: a roll of 49 drops, 50 passes.
        let e = a.connect(ip("10.0.0.3"), now, 49).unwrap_err();
        assert_eq!(e.refusal, Refusal::EarlyDrop);
        a.connect(ip("10.0.0.3"), now, 50).unwrap();
        // At 3 open: 75 %.
        assert_eq!(
            a.connect(ip("10.0.0.4"), now, 74).unwrap_err().refusal,
            Refusal::EarlyDrop
        );
        a.connect(ip("10.0.0.4"), now, 75).unwrap();
        // At the hard limit nothing passes, whatever the roll.
        assert_eq!(
            a.connect(ip("10.0.0.5"), now, 99).unwrap_err().refusal,
            Refusal::TooManyUnauthenticated
        );
        assert_eq!(a.unauthenticated(), 4);
        a.release(ip("10.0.0.1"));
        assert_eq!(a.unauthenticated(), 3);
        a.connect(ip("10.0.0.5"), now, 99).unwrap();
    }

    #[test]
    fn one_address_cannot_take_the_total() {
        let now = Instant::now();
        let mut a = Admission::new(limits("100", 3, 0));
        for _ in 0..3 {
            a.connect(ip("192.0.2.9"), now, 0).unwrap();
        }
        assert_eq!(
            a.connect(ip("192.0.2.9"), now, 99).unwrap_err().refusal,
            Refusal::TooManyFromSource
        );
        // The mapped IPv6 form is the same address.
        assert_eq!(
            a.connect(ip("::ffff:192.0.2.9"), now, 99)
                .unwrap_err()
                .refusal,
            Refusal::TooManyFromSource
        );
        // Another address is not affected.
        a.connect(ip("192.0.2.10"), now, 99).unwrap();
        assert_eq!(a.unauthenticated_from(ip("192.0.2.9")), 3);
        a.release(ip("::ffff:192.0.2.9"));
        assert_eq!(a.unauthenticated_from(ip("192.0.2.9")), 2);
        a.connect(ip("192.0.2.9"), now, 0).unwrap();
        // Releasing more than was admitted never underflows.
        let mut b = Admission::new(limits("100", 3, 0));
        b.release(ip("192.0.2.9"));
        assert_eq!(b.unauthenticated(), 0);
        assert_eq!(b.unauthenticated_from(ip("192.0.2.9")), 0);
    }

    #[test]
    fn zero_per_source_means_no_per_source_limit() {
        let now = Instant::now();
        let mut a = Admission::new(limits("1000", 0, 0));
        for _ in 0..500 {
            a.connect(ip("192.0.2.9"), now, 0).unwrap();
        }
    }

    #[test]
    fn attempts_per_minute_across_all_names() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits("100", 10, 6));
        for _ in 0..6 {
            a.attempt(ip("198.51.100.7"), t0).unwrap();
        }
        let e = a.attempt(ip("198.51.100.7"), t0).unwrap_err();
        assert_eq!(e.refusal, Refusal::TooManyAttempts);
        // Another address has its own budget.
        a.attempt(ip("198.51.100.8"), t0).unwrap();
        // The budget refills at per_minute / 60 s: one token per 10 s here.
        assert!(
            a.attempt(ip("198.51.100.7"), t0 + Duration::from_secs(9))
                .is_err()
        );
        // By 20 s two tokens have come back (a refusal costs nothing).
        for _ in 0..2 {
            a.attempt(ip("198.51.100.7"), t0 + Duration::from_secs(20))
                .unwrap();
        }
        assert!(
            a.attempt(ip("198.51.100.7"), t0 + Duration::from_secs(20))
                .is_err()
        );
        // A quiet minute restores the whole budget, never more.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..6 {
            a.attempt(ip("198.51.100.7"), later).unwrap();
        }
        assert!(a.attempt(ip("198.51.100.7"), later).is_err());
        // 33 guesses a second (what one address managed before) get 6 through.
        let mut b = Admission::new(limits("100", 10, 6));
        let passed = (0..33)
            .filter(|i| {
                b.attempt(ip("203.0.113.1"), t0 + Duration::from_millis(i * 30))
                    .is_ok()
            })
            .count();
        assert_eq!(passed, 6);
        // Zero turns the limit off.
        let mut c = Admission::new(limits("100", 10, 0));
        for _ in 0..1000 {
            c.attempt(ip("203.0.113.1"), t0).unwrap();
        }
    }

    #[test]
    fn refusals_are_reported_once_a_minute_with_the_count() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits("100", 1, 0));
        a.connect(ip("192.0.2.1"), t0, 0).unwrap();
        let first = a.connect(ip("192.0.2.1"), t0, 0).unwrap_err();
        assert_eq!(
            first.report,
            Some(Report {
                source: ip("192.0.2.1"),
                refusal: Refusal::TooManyFromSource,
                unreported: 0
            })
        );
        for i in 0..999 {
            let r = a
                .connect(ip("192.0.2.1"), t0 + Duration::from_millis(i), 0)
                .unwrap_err();
            assert_eq!(r.report, None);
        }
        // Another address is reported on its own.
        a.connect(ip("192.0.2.2"), t0, 0).unwrap();
        assert!(
            a.connect(ip("192.0.2.2"), t0, 0)
                .unwrap_err()
                .report
                .is_some()
        );
        let next = a
            .connect(ip("192.0.2.1"), t0 + REPORT_INTERVAL, 0)
            .unwrap_err();
        assert_eq!(next.report.map(|r| r.unreported), Some(999));
    }

    #[test]
    fn a_handshake_with_no_common_algorithm_is_reported_once_a_minute_and_counts_nothing() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits("100", 1, 1));
        let first = a.no_common_algorithm(ip("::ffff:192.0.2.1"), t0);
        assert_eq!(first.refusal, Refusal::NoCommonAlgorithm);
        assert_eq!(
            first.report,
            Some(Report {
                source: ip("192.0.2.1"),
                refusal: Refusal::NoCommonAlgorithm,
                unreported: 0
            })
        );
        for i in 1..=3 {
            let r = a.no_common_algorithm(ip("192.0.2.1"), t0 + Duration::from_secs(i));
            assert_eq!(r.report, None);
        }
        // It takes no slot and no attempt: the address may still connect
        // and sign in; a limit refusal is reported on its own.
        a.connect(ip("192.0.2.1"), t0, 0).unwrap();
        a.attempt(ip("192.0.2.1"), t0).unwrap();
        assert_eq!(a.unauthenticated(), 1);
        assert!(
            a.connect(ip("192.0.2.1"), t0, 0)
                .unwrap_err()
                .report
                .is_some()
        );
        let next = a.no_common_algorithm(ip("192.0.2.1"), t0 + REPORT_INTERVAL);
        assert_eq!(next.report.map(|r| r.unreported), Some(3));
    }

    #[test]
    fn the_gate_reports_what_the_protocol_said() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let gate = Gate::new(
            limits("100", 10, 10),
            Arc::new(move |r, protocol, detail: &str| {
                sink.lock()
                    .unwrap()
                    .push((r.refusal, protocol, detail.to_owned()))
            }),
        );
        gate.no_common_algorithm(ip("192.0.2.1"), "ssh", "ours: [a], theirs: [b]");
        gate.no_common_algorithm(ip("192.0.2.1"), "ssh", "ours: [a], theirs: [c]");
        // A client's offer as long as a packet is cut.
        let long = format!("ours: [a], theirs: [{}]", "é".repeat(40_000));
        gate.no_common_algorithm(ip("192.0.2.2"), "ssh", &long);
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[0],
            (
                Refusal::NoCommonAlgorithm,
                "ssh",
                "ours: [a], theirs: [b]".to_owned()
            )
        );
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].2.chars().count(), DETAIL_MAX + 1);
        assert!(seen[1].2.ends_with("éé…"), "{}", seen[1].2);
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits("100", 1, 5));
        for i in 0..20_000u32 {
            let source = IpAddr::from(i.to_be_bytes());
            let at = t0 + Duration::from_secs(u64::from(i) * 2);
            a.attempt(source, at).unwrap();
        }
        // Buckets refill in 12 s here; old ones are forgotten.
        assert!(a.attempts.len() <= PRUNE_ABOVE + 1, "{}", a.attempts.len());
    }

    #[test]
    fn the_guard_gives_the_slot_back_once() {
        let gate = Gate::logging_only(limits("100", 2, 0));
        let mut one = gate.connect(ip("192.0.2.1"), "ssh").unwrap();
        let two = gate.connect(ip("192.0.2.1"), "ssh").unwrap();
        assert_eq!(
            gate.connect(ip("192.0.2.1"), "ssh").unwrap_err(),
            Refusal::TooManyFromSource
        );
        one.signed_in();
        one.signed_in();
        assert_eq!(gate.unauthenticated(), 1);
        drop(one);
        assert_eq!(gate.unauthenticated(), 1);
        drop(two);
        assert_eq!(gate.unauthenticated(), 0);
    }

    #[test]
    fn the_gate_hands_due_reports_to_the_reporter() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let gate = Gate::new(
            limits("100", 10, 1),
            Arc::new(move |r, protocol, detail| {
                assert_eq!(protocol, "rdp");
                assert_eq!(detail, "");
                sink.lock().unwrap().push(r)
            }),
        );
        gate.attempt(ip("192.0.2.1"), "rdp").unwrap();
        for _ in 0..5 {
            assert_eq!(
                gate.attempt(ip("192.0.2.1"), "rdp").unwrap_err(),
                Refusal::TooManyAttempts
            );
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].refusal, Refusal::TooManyAttempts);
    }
}
