//! The threads SSH connections run on: one single-threaded runtime per
//! core, and each connection — its russh server session, the back
//! connection to the target, the relay pumps and the supervisor — lives
//! wholly on one of them.
//!
//! Why: every 32 KiB packet of a bulk transfer is handed from the back
//! connection's task to the output pump and on to the front connection's
//! task (and the other way for input). On the process's work-stealing
//! runtime each hand-over may wake another worker thread that finds
//! nothing to do, or move the task to the other core; a profile of a
//! download showed context switches as the largest single part of the
//! bastion's CPU. On one thread a hand-over is a queue push, and the
//! packet stays in that core's cache. Connections are spread over the
//! threads by count (the thread with the fewest live connections gets the
//! next one), so many sessions still use every core; what is lost is only
//! that two connections placed on the same thread cannot move apart.
//!
//! The threads live as long as the process (like the runtime's workers),
//! so connections end exactly as they did on the shared runtime.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Runs `connection` on the connection thread with the fewest connections.
/// The threads start on first use; if none can be started, the connection
/// runs on the caller's runtime as before.
pub(crate) fn spawn_connection<F>(connection: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    static THREADS: OnceLock<Option<ConnectionThreads>> = OnceLock::new();
    match THREADS.get_or_init(ConnectionThreads::start) {
        Some(threads) => threads.spawn(connection),
        None => {
            tokio::spawn(connection);
        }
    }
}

struct ConnectionThreads {
    threads: Vec<ConnectionThread>,
}

struct ConnectionThread {
    runtime: tokio::runtime::Handle,
    /// Connections running on this thread.
    connections: Arc<AtomicUsize>,
}

/// Counts a connection off its thread when its future ends or is dropped.
struct Leaving(Arc<AtomicUsize>);

impl Drop for Leaving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionThreads {
    fn start() -> Option<Self> {
        let count = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut threads = Vec::with_capacity(count);
        for i in 0..count {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("ssh-conn-{i}-blocking"))
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::warn!(%error, "cannot start an SSH connection thread");
                    break;
                }
            };
            let handle = runtime.handle().clone();
            let started = std::thread::Builder::new()
                .name(format!("ssh-conn-{i}"))
                .spawn(move || runtime.block_on(std::future::pending::<()>()));
            if let Err(error) = started {
                tracing::warn!(%error, "cannot start an SSH connection thread");
                break;
            }
            threads.push(ConnectionThread {
                runtime: handle,
                connections: Arc::new(AtomicUsize::new(0)),
            });
        }
        (!threads.is_empty()).then_some(Self { threads })
    }

    fn spawn<F>(&self, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(thread) = self
            .threads
            .iter()
            .min_by_key(|t| t.connections.load(Ordering::Relaxed))
        else {
            tokio::spawn(connection);
            return;
        };
        thread.connections.fetch_add(1, Ordering::Relaxed);
        let leaving = Leaving(thread.connections.clone());
        thread.runtime.spawn(async move {
            let _leaving = leaving;
            connection.await;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    /// Spawns a connection that reports its thread's name and then waits
    /// until `end` is sent or dropped.
    fn connection_on(threads: &ConnectionThreads) -> (String, oneshot::Sender<()>) {
        let (name_tx, name_rx) = std::sync::mpsc::channel();
        let (end_tx, end_rx) = oneshot::channel::<()>();
        threads.spawn(async move {
            let _ = name_tx.send(std::thread::current().name().map(str::to_owned));
            let _ = end_rx.await;
        });
        let name = name_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the connection ran")
            .expect("a named thread");
        (name, end_tx)
    }

    #[test]
    fn connections_go_to_the_thread_with_the_fewest_and_leave_it_when_they_end() {
        let threads = ConnectionThreads::start().expect("threads start");
        let n = threads.threads.len();
        assert!(n >= 1);
        // One connection per thread: every thread gets one.
        let mut open: Vec<_> = (0..n).map(|_| connection_on(&threads)).collect();
        let mut names: Vec<_> = open.iter().map(|(name, _)| name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "connections shared a thread: {names:?}");
        assert!(names.iter().all(|name| name.starts_with("ssh-conn-")));
        // The first one ends: its thread is counted down once the future is
        // gone, and is the one the next connection goes to.
        let (freed, end) = open.remove(0);
        let _ = end.send(());
        let counted_down = |t: &ConnectionThread| t.connections.load(Ordering::Relaxed) == 0;
        for _ in 0..6000 {
            if threads.threads.iter().any(counted_down) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            threads.threads.iter().any(counted_down),
            "never counted down"
        );
        let (next, _end) = connection_on(&threads);
        assert_eq!(next, freed);
    }
}
