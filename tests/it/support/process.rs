//! The one guard for processes the tests start: a [`Daemon`] runs in its own
//! process group and is stopped with that group (TERM, then KILL) and
//! waited for when dropped, or when the test binary exits if it is never
//! dropped (kept in a static, or [`Daemon::keep_until_exit`]).

use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A process group we started; stopped and reaped on drop.
pub struct Daemon {
    pub name: String,
    pub child: Child,
}

/// Process groups still running, stopped by [`stop_all_at_exit`].
static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Daemons kept until the binary exits.
static KEPT: Mutex<Vec<Daemon>> = Mutex::new(Vec::new());

extern "C" fn stop_all_at_exit() {
    let groups = RUNNING.lock().map(|g| g.clone()).unwrap_or_default();
    for pgid in groups {
        // SAFETY: signalling a process group a Daemon created; waitpid on
        // its leader, our child.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
            libc::waitpid(pgid, std::ptr::null_mut(), 0);
        }
    }
}

impl Daemon {
    pub fn spawn(name: &str, cmd: &mut Command) -> Daemon {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: setsid in the child before exec; async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        if let Ok(mut running) = RUNNING.lock() {
            if running.is_empty() {
                static REGISTERED: std::sync::Once = std::sync::Once::new();
                // SAFETY: registering a plain extern "C" fn with atexit(3).
                REGISTERED.call_once(|| unsafe {
                    libc::atexit(stop_all_at_exit);
                });
            }
            running.push(child.id() as i32);
        }
        Daemon {
            name: name.to_owned(),
            child,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Keep running until the test binary exits (a peer shared by the
    /// tests that follow).
    pub fn keep_until_exit(self) {
        if let Ok(mut kept) = KEPT.lock() {
            kept.push(self);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pgid = self.pid();
        // SAFETY: signalling the process group this Daemon created.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if !self.running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; what is left of the group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        if let Ok(mut running) = RUNNING.lock() {
            running.retain(|p| *p != pgid);
        }
    }
}

/// Wait until `f` holds, polling every 50 ms; whether it held.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
