//! The live sessions of this process: who is connected where, and the switch
//! that ends each one (admin kill, grant expiry, shutdown).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use crate::policy::{LiveSession, Protocol};

/// Why a session is being ended from outside its relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopCause {
    /// An administrator stopped it (`sekisho sessions kill`).
    Killed { by: String, reason: String },
    /// The bastion is shutting down.
    Shutdown,
    /// The session this hop was allowed from has ended: a hop is allowed
    /// only while the person works on its parent, so it ends with it.
    ParentEnded { parent: Uuid },
}

impl std::fmt::Display for StopCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The gateways already say "stopped by an administrator".
            StopCause::Killed { by, reason } if reason.is_empty() => write!(f, "(by {by})"),
            StopCause::Killed { by, reason } => write!(f, "{reason} (by {by})"),
            StopCause::Shutdown => write!(f, "the bastion is shutting down"),
            StopCause::ParentEnded { parent } => {
                write!(f, "the session this hop comes from ({parent}) has ended")
            }
        }
    }
}

/// What the registry knows of one live session.
#[derive(Debug, Clone)]
pub struct LiveEntry {
    pub id: Uuid,
    pub user: String,
    pub target: String,
    /// The target's system and the person's vendor chain (own vendor
    /// first): what an emergency stop's scope is matched against.
    pub system: String,
    pub vendor_chain: Vec<String>,
    pub protocol: Protocol,
    pub source: IpAddr,
    pub started_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// For a hop: the session it was allowed from.
    pub parent: Option<Uuid>,
}

struct Slot {
    entry: LiveEntry,
    stop: watch::Sender<Option<StopCause>>,
}

/// Shared, cheap to clone.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<Uuid, Slot>>>,
    /// Sessions ended since the process started.
    ended: Arc<AtomicU64>,
}

/// Held by the relay for the session's lifetime; removes the entry on drop so
/// a panicking or erroring relay never leaves a ghost "live" session behind.
pub struct LiveGuard {
    registry: Registry,
    id: Uuid,
    pub stop: watch::Receiver<Option<StopCause>>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut live = self.registry.lock();
        live.remove(&self.id);
        self.registry.ended.fetch_add(1, Ordering::Relaxed);
        // Hops from this session lose what allowed them.
        for slot in live.values() {
            if slot.entry.parent == Some(self.id) {
                slot.stop
                    .send_replace(Some(StopCause::ParentEnded { parent: self.id }));
            }
        }
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Slot>> {
        // A poisoned lock only means another thread panicked mid-update of a
        // plain map; the map itself is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a live session. A hop whose parent is no longer live (it ended
    /// between the decision and now) is told to stop at once.
    pub fn register(&self, entry: LiveEntry) -> LiveGuard {
        let (tx, rx) = watch::channel(None);
        let id = entry.id;
        let mut live = self.lock();
        if let Some(parent) = entry.parent
            && !live.contains_key(&parent)
        {
            tx.send_replace(Some(StopCause::ParentEnded { parent }));
        }
        live.insert(id, Slot { entry, stop: tx });
        drop(live);
        LiveGuard {
            registry: self.clone(),
            id,
            stop: rx,
        }
    }

    /// Signals a session to stop. Returns false if it is not live here.
    pub fn stop(&self, id: Uuid, cause: StopCause) -> bool {
        match self.lock().get(&id) {
            Some(slot) => {
                slot.stop.send_replace(Some(cause));
                true
            }
            None => false,
        }
    }

    pub fn stop_all(&self, cause: StopCause) {
        for slot in self.lock().values() {
            slot.stop.send_replace(Some(cause.clone()));
        }
    }

    pub fn list(&self) -> Vec<LiveEntry> {
        let mut v: Vec<LiveEntry> = self.lock().values().map(|s| s.entry.clone()).collect();
        v.sort_by_key(|e| e.started_at);
        v
    }

    /// This person's live sessions, as the policy's hop rule needs them.
    pub fn live_sessions_of(&self, user: &str) -> Vec<LiveSession> {
        self.lock()
            .values()
            .filter(|s| s.entry.user == user)
            .map(|s| LiveSession {
                id: s.entry.id,
                target: s.entry.target.clone(),
                protocol: s.entry.protocol,
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// How many sessions have ended since the process started.
    pub fn ended(&self) -> u64 {
        self.ended.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(parent: Option<Uuid>) -> LiveEntry {
        LiveEntry {
            id: Uuid::now_v7(),
            user: "tanaka".into(),
            target: "t".into(),
            system: "s".into(),
            vendor_chain: vec!["acme".into()],
            protocol: Protocol::Rdp,
            source: IpAddr::from([127, 0, 0, 3]),
            started_at: Utc::now(),
            ends_at: Utc::now(),
            parent,
        }
    }

    #[test]
    fn a_hop_is_stopped_when_its_parent_leaves_and_others_are_not() {
        let r = Registry::default();
        let parent = r.register(entry(None));
        let parent_id = parent.id;
        let hop = r.register(entry(Some(parent_id)));
        let bystander = r.register(entry(None));
        assert!(hop.stop.borrow().is_none());
        drop(parent);
        assert_eq!(
            *hop.stop.borrow(),
            Some(StopCause::ParentEnded { parent: parent_id })
        );
        assert!(bystander.stop.borrow().is_none());
        assert_eq!(r.list().len(), 2);
    }

    #[test]
    fn a_hop_whose_parent_is_already_gone_is_stopped_at_once() {
        let r = Registry::default();
        let gone = Uuid::now_v7();
        let hop = r.register(entry(Some(gone)));
        assert_eq!(
            *hop.stop.borrow(),
            Some(StopCause::ParentEnded { parent: gone })
        );
        assert!(
            StopCause::ParentEnded { parent: gone }
                .to_string()
                .contains("has ended")
        );
    }

    #[test]
    fn a_dropped_guard_leaves_the_registry() {
        let r = Registry::default();
        let g = r.register(entry(None));
        assert_eq!(r.live_sessions_of("tanaka").len(), 1);
        drop(g);
        assert!(r.is_empty());
    }
}
