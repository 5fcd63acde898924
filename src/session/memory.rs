//! Giving the memory of ended sessions back to the system.
//!
//! A session's buffers (russh's, the relay's, its recording's) are freed
//! when it ends, but glibc's malloc returns only the top of each heap to the
//! kernel by itself: free pages between live allocations stay resident, so
//! after many sessions the process kept ~1.5× its RSS from before them.
//! `malloc_trim(0)` gives those pages back (`madvise`) in every arena. It
//! walks each arena under that arena's lock, so it runs at most once a
//! second, about a second after a session ends (later ends in that second
//! share the run), on tokio's blocking pool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A trim is scheduled and has not started yet.
static PENDING: AtomicBool = AtomicBool::new(false);

/// Called when a session has ended (its recording sealed): schedules a trim.
pub fn session_ended() {
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        // Let the gateway drop the connection's own buffers first.
        tokio::time::sleep(Duration::from_secs(1)).await;
        PENDING.store(false, Ordering::Release);
        let _ = tokio::task::spawn_blocking(trim).await;
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // FFI to libc; see SAFETY below.
fn trim() {
    // SAFETY: malloc_trim takes no pointers and only releases free memory
    // of glibc's own heaps; it is thread-safe (locks each arena).
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
