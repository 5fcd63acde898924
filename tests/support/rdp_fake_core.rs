//! An in-memory `RdpCore` for the gateway's integration tests: fixed users
//! and targets, and everything the gateway reports kept for assertions.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use sekisho::rdp::core::{
    ChannelKind, FrontSecurity, KillSignal, Person, RdpCore, RdpEvent, RdpRecorder, Refusal,
    SessionStart, SignIn, TargetGrant,
};

#[derive(Default)]
pub struct Journal {
    pub sign_ins: Vec<(String, bool)>,
    pub sign_in_security: Vec<FrontSecurity>,
    pub nla_lookups: Vec<(String, String)>,
    pub nla_refusals: Vec<String>,
    pub authorizations: Vec<(String, String, Result<(), String>)>,
    pub started: Vec<SessionStart>,
    pub events: Vec<RdpEvent>,
    pub refused_channels: Vec<(ChannelKind, String, String)>,
    pub closed: Vec<(uuid::Uuid, String)>,
    pub finished: usize,
}

pub struct FakeCore {
    /// user → secret that is accepted.
    pub users: HashMap<String, String>,
    /// user → one-time ticket for NLA.
    pub tickets: HashMap<String, String>,
    /// target name → grant, or the refusal reason.
    pub targets: HashMap<String, Result<TargetGrant, String>>,
    pub journal: Arc<Mutex<Journal>>,
    /// Make `record` fail after this many events (fail-closed tests).
    pub fail_recording_after: Option<usize>,
    pub kill: tokio::sync::watch::Sender<Option<String>>,
}

impl FakeCore {
    pub fn new() -> Self {
        Self {
            users: HashMap::new(),
            tickets: HashMap::new(),
            targets: HashMap::new(),
            journal: Arc::default(),
            fail_recording_after: None,
            kill: tokio::sync::watch::channel(None).0,
        }
    }

    pub fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct FakeRecorder {
    journal: Arc<Mutex<Journal>>,
    fail_after: Option<usize>,
    count: usize,
}

impl RdpRecorder for FakeRecorder {
    async fn record(&mut self, event: RdpEvent) -> Result<(), Refusal> {
        self.count += 1;
        if self.fail_after.is_some_and(|n| self.count > n) {
            return Err(Refusal::new("disk full (fake)"));
        }
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .push(event);
        Ok(())
    }

    async fn finish(self) -> Result<(), Refusal> {
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finished += 1;
        Ok(())
    }
}

impl RdpCore for FakeCore {
    type Recorder = FakeRecorder;

    async fn authenticate(&self, sign_in: &SignIn) -> Result<Person, Refusal> {
        let ok = match sign_in.security {
            FrontSecurity::Tls => self.users.get(&sign_in.user) == Some(&sign_in.secret),
            FrontSecurity::Nla => self.tickets.get(&sign_in.user) == Some(&sign_in.secret),
        };
        let mut journal = self.journal();
        journal.sign_ins.push((sign_in.user.clone(), ok));
        journal.sign_in_security.push(sign_in.security);
        drop(journal);
        if ok {
            Ok(Person {
                user: sign_in.user.clone(),
            })
        } else {
            Err(Refusal::new("wrong password or code"))
        }
    }

    async fn nla_secret(&self, user: &str, target: &str, _source: IpAddr) -> Option<String> {
        self.journal()
            .nla_lookups
            .push((user.to_owned(), target.to_owned()));
        self.tickets.get(user).cloned()
    }

    async fn nla_refused(&self, user: &str, _source: IpAddr, reason: &str) {
        self.journal()
            .nla_refusals
            .push(format!("{user}: {reason}"));
    }

    async fn authorize(
        &self,
        person: &Person,
        target: &str,
        _source: IpAddr,
    ) -> Result<TargetGrant, Refusal> {
        let result = match self.targets.get(target) {
            // Each grant is a new session.
            Some(Ok(grant)) => Ok(TargetGrant {
                session_id: uuid::Uuid::now_v7(),
                ..grant.clone()
            }),
            Some(Err(reason)) => Err(Refusal::new(reason.clone())),
            None => Err(Refusal::new(format!("unknown target {target}"))),
        };
        self.journal().authorizations.push((
            person.user.clone(),
            target.to_owned(),
            result.as_ref().map(|_| ()).map_err(|r| r.reason.clone()),
        ));
        result
    }

    async fn open_recording(&self, start: &SessionStart) -> Result<FakeRecorder, Refusal> {
        self.journal().started.push(start.clone());
        Ok(FakeRecorder {
            journal: self.journal.clone(),
            fail_after: self.fail_recording_after,
            count: 0,
        })
    }

    async fn channel_refused(
        &self,
        _session_id: uuid::Uuid,
        kind: ChannelKind,
        name: &str,
        reason: &str,
    ) {
        self.journal()
            .refused_channels
            .push((kind, name.to_owned(), reason.to_owned()));
    }

    async fn register_live(&self, _start: &SessionStart) -> KillSignal {
        KillSignal(self.kill.subscribe())
    }

    async fn session_closed(&self, session_id: uuid::Uuid, reason: &str) {
        self.journal().closed.push((session_id, reason.to_owned()));
    }
}
