//! An in-memory `SshCore` for the gateway tests: fixed people, one real
//! sshd target with its pinned host key, tickets, denials, an in-memory
//! recorder and a kill switch. The real core replaces it when wired.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sekisho::ssh::core::{
    AccessRequest, Credential, Decision, FirstFactor, Grant, KillSignal, LiveSession, OfferedKey,
    ReachableTarget, RecordingFailed, RefusedKind, SessionEnd, SessionEvent, SessionRecorder,
    SignIn, SshCore,
};
use uuid::Uuid;
use zeroize::Zeroizing;

/// The TOTP secret (base32) of every test person.
pub const TOTP_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DP";

/// RFC 6238 code (SHA-1, 30 s, 6 digits) for a time step.
pub fn totp_at(secret_b32: &str, step: u64) -> String {
    let key = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, secret_b32)
        .unwrap_or_default();
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let bin = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", bin % 1_000_000)
}

pub fn current_step() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0) / 30
}

/// The code valid now.
pub fn totp_now() -> String {
    totp_at(TOTP_SECRET, current_step())
}

/// A code that is certainly wrong now (not valid in the ±1 window).
pub fn wrong_code() -> String {
    let valid: HashSet<String> = (current_step() - 1..=current_step() + 1)
        .map(|s| totp_at(TOTP_SECRET, s))
        .collect();
    (0..1000u32)
        .map(|n| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
        .find(|c| !valid.contains(c))
        .unwrap_or_else(|| "000000".into())
}

#[derive(Clone)]
pub struct Person {
    pub password: &'static str,
    pub locked: bool,
    /// Sign-in window: after a good code, the first factor alone is enough.
    pub window: bool,
    /// Policy denial for every target, if any.
    pub denied: Option<&'static str>,
}

#[derive(Clone)]
pub struct Target {
    pub address: String,
    pub port: u16,
    pub account: String,
    pub private_key_pem: String,
    /// When set, sekisho signs in to the target with this password instead.
    pub password: Option<String>,
    pub pin: String,
    pub lifetime: Duration,
    pub recording_fails: bool,
    /// The recorder fails once it holds this many events (disk full mid-session).
    pub recording_breaks_after: Option<usize>,
}

/// One recorded session.
#[derive(Default)]
pub struct Recording {
    pub events: Vec<SessionEvent>,
    pub finished: bool,
}

pub struct FakeRecorder {
    recording: Arc<Mutex<Recording>>,
    breaks_after: Option<usize>,
}

impl SessionRecorder for FakeRecorder {
    fn record(&self, event: SessionEvent) -> Result<(), RecordingFailed> {
        let mut r = self
            .recording
            .lock()
            .map_err(|_| RecordingFailed("poisoned".into()))?;
        if self.breaks_after.is_some_and(|n| r.events.len() >= n) {
            return Err(RecordingFailed("no space left on the archive disk".into()));
        }
        r.events.push(event);
        Ok(())
    }
    async fn failed(&self) -> RecordingFailed {
        std::future::pending().await
    }
    async fn finish(&self) -> Result<(), RecordingFailed> {
        if let Ok(mut r) = self.recording.lock() {
            r.finished = true;
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct State {
    /// Human-readable audit lines, in order.
    pub audit: Vec<String>,
    pub tickets: HashMap<String, (String, String)>,
    pub window: HashSet<(String, IpAddr)>,
    pub recordings: HashMap<Uuid, Arc<Mutex<Recording>>>,
    pub live: HashMap<Uuid, (LiveSession, Option<tokio::sync::oneshot::Sender<String>>)>,
    pub ended: HashMap<Uuid, SessionEnd>,
    pub failures: HashMap<String, u32>,
}

pub struct FakeCore {
    pub people: HashMap<&'static str, Person>,
    pub keys: HashMap<String, &'static str>,
    pub targets: HashMap<&'static str, Target>,
    pub state: Mutex<State>,
}

impl FakeCore {
    fn audit(&self, line: String) {
        if let Ok(mut s) = self.state.lock() {
            s.audit.push(line);
        }
    }

    pub fn audit_lines(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.audit.clone())
            .unwrap_or_default()
    }

    pub fn add_ticket(&self, ticket: &str, person: &str, target: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.tickets
                .insert(ticket.into(), (person.into(), target.into()));
        }
    }

    /// Live sessions of a person on a target.
    pub fn live_sessions(&self, person: &str, target: &str) -> Vec<Uuid> {
        self.state
            .lock()
            .map(|s| {
                s.live
                    .values()
                    .filter(|(l, _)| l.person == person && l.target == target)
                    .map(|(l, _)| l.session_id)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What `sekisho sessions kill ID` does through the real core.
    pub fn kill(&self, id: Uuid, reason: &str) -> bool {
        let sender = self
            .state
            .lock()
            .ok()
            .and_then(|mut s| s.live.get_mut(&id).and_then(|(_, k)| k.take()));
        sender.is_some_and(|k| k.send(reason.to_string()).is_ok())
    }

    pub fn ended(&self, id: Uuid) -> Option<SessionEnd> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.ended.get(&id).cloned())
    }

    pub fn events(&self, id: Uuid) -> Vec<SessionEvent> {
        let rec = self
            .state
            .lock()
            .ok()
            .and_then(|s| s.recordings.get(&id).cloned());
        rec.and_then(|r| r.lock().ok().map(|r| r.events.clone()))
            .unwrap_or_default()
    }

    pub fn finished(&self, id: Uuid) -> bool {
        let rec = self
            .state
            .lock()
            .ok()
            .and_then(|s| s.recordings.get(&id).cloned());
        rec.and_then(|r| r.lock().ok().map(|r| r.finished))
            .unwrap_or(false)
    }

    /// Session ids in the order they were started, for a person and target.
    pub fn sessions_of(&self, person: &str, target: &str) -> Vec<Uuid> {
        let lines = self.audit_lines();
        lines
            .iter()
            .filter_map(|l| {
                let rest = l.strip_prefix("session-started ")?;
                let mut parts = rest.split(' ');
                let id = parts.next()?;
                let p = parts.next()?;
                let t = parts.next()?;
                (p == person && t == target).then(|| id.parse().ok())?
            })
            .collect()
    }

    fn first_factor_ok(&self, attempt: &SignIn) -> FirstFactor {
        let needs_code = !self
            .state
            .lock()
            .map(|s| s.window.contains(&(attempt.person.clone(), attempt.source)))
            .unwrap_or(false);
        FirstFactor::Accepted { needs_code }
    }

    fn count_failure(&self, person: &str) {
        if let Ok(mut s) = self.state.lock() {
            *s.failures.entry(person.to_string()).or_default() += 1;
        }
    }
}

impl SshCore for FakeCore {
    type Recorder = FakeRecorder;

    async fn check_password(&self, attempt: &SignIn, secret: &str) -> FirstFactor {
        let ticket = self
            .state
            .lock()
            .ok()
            .and_then(|mut s| s.tickets.remove(secret));
        if let Some((person, target)) = ticket
            && person == attempt.person
            && attempt.target.as_ref().is_none_or(|t| *t == target)
        {
            self.audit(format!("signin {} ticket ok", attempt.person));
            return FirstFactor::Ticket { target };
        }
        let ok = self
            .people
            .get(attempt.person.as_str())
            .is_some_and(|p| !p.locked && p.password == secret);
        self.audit(format!(
            "signin {} password {}",
            attempt.person,
            if ok { "ok" } else { "fail" }
        ));
        if ok {
            self.first_factor_ok(attempt)
        } else {
            self.count_failure(&attempt.person);
            FirstFactor::Rejected
        }
    }

    async fn key_is_registered(&self, person: &str, key: &OfferedKey) -> bool {
        self.keys
            .get(&key.fingerprint)
            .is_some_and(|p| *p == person)
    }

    async fn check_public_key(&self, attempt: &SignIn, key: &OfferedKey) -> FirstFactor {
        let ok = self
            .keys
            .get(&key.fingerprint)
            .is_some_and(|p| *p == attempt.person)
            && self
                .people
                .get(attempt.person.as_str())
                .is_some_and(|p| !p.locked);
        self.audit(format!(
            "signin {} publickey {}",
            attempt.person,
            if ok { "ok" } else { "fail" }
        ));
        if ok {
            self.first_factor_ok(attempt)
        } else {
            FirstFactor::Rejected
        }
    }

    async fn check_code(&self, attempt: &SignIn, code: &str) -> bool {
        let step = current_step();
        let ok = (step - 1..=step + 1).any(|s| totp_at(TOTP_SECRET, s) == code);
        self.audit(format!(
            "signin {} code {}",
            attempt.person,
            if ok { "ok" } else { "fail" }
        ));
        if ok {
            let window = self
                .people
                .get(attempt.person.as_str())
                .is_some_and(|p| p.window);
            if window && let Ok(mut s) = self.state.lock() {
                s.window.insert((attempt.person.clone(), attempt.source));
            }
        } else {
            self.count_failure(&attempt.person);
        }
        ok
    }

    async fn reachable_targets(&self, person: &str, _source: IpAddr) -> Vec<ReachableTarget> {
        if !self.people.contains_key(person) {
            return Vec::new();
        }
        let mut names: Vec<&&str> = self.targets.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter(|n| **n == "db01" || **n == "app01")
            .map(|n| ReachableTarget {
                name: n.to_string(),
                system: "fa".into(),
                protocol: "ssh".into(),
                until: Utc::now() + chrono::Duration::hours(2),
            })
            .collect()
    }

    async fn authorize(&self, request: &AccessRequest) -> Decision {
        let denial = match self.people.get(request.person.as_str()) {
            None => Some("unknown person".to_string()),
            Some(p) => p.denied.map(str::to_string),
        };
        let target = self.targets.get(request.target.as_str());
        let denial = denial.or_else(|| {
            target
                .is_none()
                .then(|| format!("no target named {:?} in any policy", request.target))
        });
        if let Some(reason) = denial {
            self.audit(format!(
                "denied {} {} {}",
                request.person, request.target, reason
            ));
            return Decision::Denied { reason };
        }
        let Some(t) = target else {
            return Decision::Denied {
                reason: "no target".into(),
            };
        };
        let ends_at: DateTime<Utc> =
            Utc::now() + chrono::Duration::from_std(t.lifetime).unwrap_or_default();
        self.audit(format!("allowed {} {}", request.person, request.target));
        Decision::Allowed(Grant {
            session_id: Uuid::new_v4(),
            target: request.target.clone(),
            system: "fa".into(),
            address: t.address.clone(),
            port: t.port,
            account: t.account.clone(),
            credential: match &t.password {
                Some(p) => Credential::Password(Zeroizing::new(p.clone())),
                None => Credential::PrivateKey(Zeroizing::new(t.private_key_pem.clone())),
            },
            host_key_fingerprint: t.pin.clone(),
            ends_at,
        })
    }

    async fn open_recording(
        &self,
        grant: &Grant,
        _request: &AccessRequest,
    ) -> Result<FakeRecorder, RecordingFailed> {
        if self
            .targets
            .get(grant.target.as_str())
            .is_some_and(|t| t.recording_fails)
        {
            return Err(RecordingFailed("the archive disk is full".into()));
        }
        let recording = Arc::new(Mutex::new(Recording::default()));
        if let Ok(mut s) = self.state.lock() {
            s.recordings.insert(grant.session_id, recording.clone());
        }
        let breaks_after = self
            .targets
            .get(grant.target.as_str())
            .and_then(|t| t.recording_breaks_after);
        Ok(FakeRecorder {
            recording,
            breaks_after,
        })
    }

    async fn session_started(&self, live: &LiveSession) -> KillSignal {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.audit(format!(
            "session-started {} {} {}",
            live.session_id, live.person, live.target
        ));
        if let Ok(mut s) = self.state.lock() {
            s.live.insert(live.session_id, (live.clone(), Some(tx)));
        }
        rx
    }

    async fn channel_refused(
        &self,
        person: &str,
        _source: IpAddr,
        _session_id: Option<Uuid>,
        kind: RefusedKind,
        detail: &str,
    ) {
        self.audit(format!("refused {person} {} {detail}", kind.as_str()));
    }

    async fn session_ended(&self, session_id: Uuid, end: &SessionEnd) {
        self.audit(format!(
            "session-ended {session_id} {} {}",
            end.status.as_str(),
            end.reason
        ));
        if let Ok(mut s) = self.state.lock() {
            s.live.remove(&session_id);
            s.ended.insert(session_id, end.clone());
        }
    }
}
