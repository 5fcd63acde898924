//! Session ends that must reach the database.
//!
//! A session's end is its row's final status and its `session_end` audit
//! event. The database may be busy (another process holds SQLite's write
//! lock) or briefly unavailable (PostgreSQL restarting) just then. The end is
//! not dropped: a write that fails is queued here and retried in order, with
//! a growing pause (0.5 s doubling up to 30 s), until the database takes it.
//! The gateway does not wait for that, so the session leaves the live
//! registry at once.
//!
//! Memory stays bounded: an entry is a few hundred bytes, sessions cannot
//! start while their start row cannot be written, and the queue holds at
//! most [`MAX_UNWRITTEN`] entries; beyond that an end is written to the log
//! in full (the record of last resort) instead of being queued. Each queued
//! end is logged in full too, so if `serve` stops before the database takes
//! it, the log has it; the next start marks rows still `live` as `abnormal`.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::store::{AuditEvent, SessionEnd, Store, StoreError};

/// The most ends kept in memory while the database refuses them.
pub const MAX_UNWRITTEN: usize = 10_000;

const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

/// One session's end, as far as it is not written yet.
#[derive(Debug)]
pub(super) struct UnwrittenEnd {
    pub(super) id: Uuid,
    /// The row's final state; `None` once written, or when the session's
    /// start was never written (there is no row to close).
    pub(super) row: Option<SessionEnd>,
    pub(super) event: AuditEvent,
    /// When the session ended: the audit event carries this time, however
    /// late it is written.
    pub(super) at: DateTime<Utc>,
}

/// The ends of this process's sessions on their way to the database, and
/// which sessions have a row at all. Cheap to clone.
#[derive(Clone)]
pub struct SessionEnds {
    store: Store,
    queue: mpsc::UnboundedSender<UnwrittenEnd>,
    /// Ends handed over and not yet written (or given up on).
    unwritten: Arc<AtomicUsize>,
    /// Sessions whose start row was written and whose end is not yet
    /// handed over.
    with_row: Arc<Mutex<HashSet<Uuid>>>,
}

impl SessionEnds {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store) -> SessionEnds {
        let (queue, rx) = mpsc::unbounded_channel();
        let unwritten = Arc::new(AtomicUsize::new(0));
        tokio::spawn(retry_until_written(store.clone(), rx, unwritten.clone()));
        SessionEnds {
            store,
            queue,
            unwritten,
            with_row: Arc::default(),
        }
    }

    fn rows(&self) -> MutexGuard<'_, HashSet<Uuid>> {
        // A poisoned set of ids is still a set of ids.
        self.with_row.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session's start row is written: its end must close it.
    pub(super) fn row_written(&self, id: Uuid) {
        self.rows().insert(id);
    }

    /// Whether the session has a row to close (and forgets it: one end per
    /// session).
    pub(super) fn take_row(&self, id: Uuid) -> bool {
        self.rows().remove(&id)
    }

    /// Ends not written yet.
    pub fn unwritten(&self) -> usize {
        self.unwritten.load(Ordering::SeqCst)
    }

    /// Writes the end now if the database takes it; otherwise queues it for
    /// the writer task. Never waits for a database that refuses.
    pub(super) async fn write(&self, mut end: UnwrittenEnd) {
        // Behind a backlog, an end waits its turn: the database is failing,
        // and rows and events are then written in the order sessions ended.
        let error = if self.unwritten() == 0 {
            match write_once(&self.store, &mut end).await {
                Ok(()) => return,
                Err(e) => e.to_string(),
            }
        } else {
            "earlier ends are still waiting for the database".to_string()
        };
        // In full, so the log holds the end even if it never gets written.
        let row = end.row.as_ref();
        tracing::warn!(
            session = %end.id,
            at = %end.at.to_rfc3339(),
            status = row.map(|r| r.status.as_str()),
            reason = row.map(|r| r.reason.as_str()),
            recording_digest = row.and_then(|r| r.recording_digest.as_deref()),
            recording_status = row.and_then(|r| r.recording_status.as_deref()),
            event = %end.event.detail,
            error,
            "the session's end cannot be written now; retrying until the database takes it"
        );
        self.unwritten.fetch_add(1, Ordering::SeqCst);
        if let Err(mpsc::error::SendError(end)) = self.queue.send(end) {
            // The writer task is gone (the runtime is stopping).
            self.unwritten.fetch_sub(1, Ordering::SeqCst);
            log_lost(&end, "the writer has stopped");
        }
    }

    /// Waits until every end is written, at most `limit`; returns how many
    /// are still unwritten (each was logged in full when it was queued).
    pub async fn drain(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        while self.unwritten() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.unwritten()
    }
}

/// Writes what is left of one end: the row first, then the audit event.
/// What succeeds is taken out of `end`, so a retry does not repeat it.
async fn write_once(store: &Store, end: &mut UnwrittenEnd) -> Result<(), StoreError> {
    if let Some(row) = &end.row {
        match store.end_session(end.id, row).await {
            Ok(()) => {}
            // Closed already: an earlier attempt whose answer was lost, or
            // marked abnormal by a restart. Nothing more to write.
            Err(StoreError::SessionNotLive(_)) => {
                tracing::warn!(session = %end.id, "the session's row was already closed");
            }
            Err(StoreError::NoSession(_)) => {
                tracing::error!(session = %end.id, "the session's row is missing; only its end event is written");
            }
            Err(e) => return Err(e),
        }
        end.row = None;
    }
    store.audit_at(&end.event, end.at).await
}

/// The writer task: writes queued ends in order, pausing longer after each
/// failure, until the process stops.
async fn retry_until_written(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<UnwrittenEnd>,
    unwritten: Arc<AtomicUsize>,
) {
    let mut queue: VecDeque<UnwrittenEnd> = VecDeque::new();
    let mut pause = FIRST_RETRY;
    let mut failures: u64 = 0;
    let admit = |queue: &mut VecDeque<UnwrittenEnd>, end: UnwrittenEnd| {
        if queue.len() < MAX_UNWRITTEN {
            queue.push_back(end);
        } else {
            unwritten.fetch_sub(1, Ordering::SeqCst);
            log_lost(&end, "too many session ends are waiting for the database");
        }
    };
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(end) => admit(&mut queue, end),
                None => return,
            }
        }
        while let Ok(end) = rx.try_recv() {
            admit(&mut queue, end);
        }
        let waiting = queue.len();
        while let Some(front) = queue.front_mut() {
            match write_once(&store, front).await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(session = %front.id, after = failures, "the session's end is written");
                    }
                    queue.pop_front();
                    unwritten.fetch_sub(1, Ordering::SeqCst);
                    pause = FIRST_RETRY;
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(session = %front.id, waiting, retry_in = ?pause, error = %e, "session ends still cannot be written");
                    break;
                }
            }
        }
        if queue.is_empty() {
            continue;
        }
        let wait = tokio::time::sleep(pause);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                next = rx.recv() => match next {
                    Some(end) => admit(&mut queue, end),
                    None => return,
                },
            }
        }
        pause = (pause * 2).min(LONGEST_RETRY);
    }
}

/// An end that will not reach the database, in full in the log.
fn log_lost(end: &UnwrittenEnd, why: &str) {
    let row = end.row.as_ref();
    tracing::error!(
        session = %end.id,
        at = %end.at.to_rfc3339(),
        status = row.map(|r| r.status.as_str()),
        reason = row.map(|r| r.reason.as_str()),
        recording_digest = row.and_then(|r| r.recording_digest.as_deref()),
        recording_status = row.and_then(|r| r.recording_status.as_deref()),
        event = %end.event.detail,
        why,
        "a session's end was not written to the database"
    );
}
