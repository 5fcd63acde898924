//! Accepting connections without ever giving up: when `accept` fails (out
//! of descriptors, EMFILE/ENFILE, or out of kernel memory), the listener
//! waits — 100 ms, doubling up to 1 s — and tries again, so live sessions
//! go on and new ones are taken as soon as descriptors free up. The failure
//! is logged once per [`LOG_INTERVAL`] with the count since, not once per
//! try — also when accepting flickers between working and failing, as it
//! does at the limit (each closed connection frees one descriptor for one
//! accept): a recovery does not restart the interval, and it is reported
//! only after a failure that was.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

/// First wait after a failed accept.
pub const FIRST_WAIT: Duration = Duration::from_millis(100);
/// Longest wait between tries.
pub const LONGEST_WAIT: Duration = Duration::from_secs(1);
/// At most one log line per this interval while accepting fails.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The pure part: how long to wait and when to log.
#[derive(Debug, Default)]
pub struct Backoff {
    wait: Option<Duration>,
    /// Failures since the last success.
    failures: u64,
    /// Failures not yet logged (kept across successes).
    unlogged: u64,
    /// When the last failure line was logged (kept across successes).
    last_log: Option<Instant>,
    /// A failure line was logged since the last success.
    reported: bool,
}

/// What to do after a failed accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterFailure {
    pub wait: Duration,
    /// Log now, saying this many failures happened since the last line.
    pub log: Option<u64>,
}

impl Backoff {
    pub fn failed(&mut self, now: Instant) -> AfterFailure {
        let wait = self.wait.map_or(FIRST_WAIT, |w| (w * 2).min(LONGEST_WAIT));
        self.wait = Some(wait);
        self.failures += 1;
        self.unlogged += 1;
        let due = self
            .last_log
            .is_none_or(|last| now.saturating_duration_since(last) >= LOG_INTERVAL);
        let log = due.then(|| {
            self.last_log = Some(now);
            self.reported = true;
            std::mem::take(&mut self.unlogged)
        });
        AfterFailure { wait, log }
    }

    /// Accepting works again: how many tries failed before, when the
    /// failure was reported (a recovery nobody was told of the failure
    /// before is not worth a line).
    pub fn succeeded(&mut self) -> Option<u64> {
        let failures = std::mem::take(&mut self.failures);
        self.wait = None;
        let reported = std::mem::take(&mut self.reported);
        (reported && failures > 0).then_some(failures)
    }
}

/// A listener whose [`Acceptor::accept`] only ever returns a connection.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    protocol: &'static str,
    backoff: Backoff,
}

impl Acceptor {
    pub fn new(listener: TcpListener, protocol: &'static str) -> Acceptor {
        Acceptor {
            listener,
            protocol,
            backoff: Backoff::default(),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection; failures are waited out (cancel-safe).
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => {
                    if let Some(failures) = self.backoff.succeeded() {
                        tracing::info!(
                            protocol = self.protocol,
                            failures,
                            "accepting connections again"
                        );
                    }
                    return accepted;
                }
                Err(error) => {
                    let after = self.backoff.failed(Instant::now());
                    if let Some(failures) = after.log {
                        tracing::warn!(
                            protocol = self.protocol,
                            %error,
                            failures,
                            "cannot accept connections (out of descriptors?); live sessions go on, retrying"
                        );
                    }
                    tokio::time::sleep(after.wait).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_a_second_and_logs_once_per_interval() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        let first = b.failed(t0);
        assert_eq!(first.wait, FIRST_WAIT);
        assert_eq!(first.log, Some(1));
        let waits: Vec<_> = (1..=6)
            .map(|i| b.failed(t0 + Duration::from_millis(i * 100)).wait)
            .collect();
        assert_eq!(waits[0], Duration::from_millis(200));
        assert_eq!(waits[1], Duration::from_millis(400));
        assert_eq!(waits[2], Duration::from_millis(800));
        assert!(waits[3..].iter().all(|w| *w == LONGEST_WAIT));
        // Then one failure a second: a line every ten seconds, with the count.
        let logs: Vec<_> = (1..=20)
            .filter_map(|i| b.failed(t0 + Duration::from_secs(i)).log)
            .collect();
        assert_eq!(logs, vec![16, 10]);
        assert_eq!(b.succeeded(), Some(27));
        assert_eq!(b.succeeded(), None);
        // After a success the waits start over; the log interval does not.
        let again = b.failed(t0 + Duration::from_secs(21));
        assert_eq!(
            again,
            AfterFailure {
                wait: FIRST_WAIT,
                log: None
            }
        );
        assert_eq!(b.succeeded(), None, "a failure nobody was told of");
        let later = b.failed(t0 + Duration::from_secs(30));
        assert_eq!(later.log, Some(2), "the unreported failure is counted");
        assert_eq!(b.succeeded(), Some(1));
    }

    #[test]
    fn flickering_between_working_and_failing_logs_once_per_interval() {
        // At the limit every closed connection lets one accept through:
        // fail, succeed, fail, … every 50 ms for a minute.
        let t0 = Instant::now();
        let mut b = Backoff::default();
        let (mut failure_lines, mut recovery_lines) = (0, 0);
        let mut logged = 0;
        for i in 0..1200u64 {
            if let Some(n) = b.failed(t0 + Duration::from_millis(i * 50)).log {
                failure_lines += 1;
                logged += n;
            }
            if b.succeeded().is_some() {
                recovery_lines += 1;
            }
        }
        assert_eq!(failure_lines, 6, "one line per 10 s");
        assert_eq!(recovery_lines, 6, "recoveries only after a logged failure");
        assert_eq!(logged, 1200 - 199, "every failure counted but the last 199");
    }
}
