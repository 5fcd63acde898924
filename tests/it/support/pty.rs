//! Runs a command on a real pseudo-terminal (as a person's terminal would
//! be), so OpenSSH sends the true window size and window changes.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub struct PtyChild {
    pub child: Child,
    master: File,
    pub output: Arc<Mutex<Vec<u8>>>,
}

fn winsize(cols: u16, rows: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Spawns `cmd` with stdin, stdout and stderr on a new pty of this size.
pub fn spawn(mut cmd: Command, cols: u16, rows: u16) -> PtyChild {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    let ws = winsize(cols, rows);
    // SAFETY: openpty(3) writes two descriptors; the pointers are valid.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    // SAFETY: both descriptors were just returned by openpty and are owned here.
    let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let dup = |fd: &OwnedFd| fd.try_clone().unwrap_or_else(|e| panic!("dup: {e}"));
    cmd.stdin(Stdio::from(dup(&slave)))
        .stdout(Stdio::from(dup(&slave)))
        .stderr(Stdio::from(slave));
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn on pty: {e}"));
    let output = Arc::new(Mutex::new(Vec::new()));
    let mut reader = master.try_clone().unwrap_or_else(|e| panic!("{e}"));
    let sink = output.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Ends with EIO when the last slave descriptor closes.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let (Ok(mut o), Some(chunk)) = (sink.lock(), buf.get(..n)) {
                o.extend_from_slice(chunk);
            }
        }
    });
    PtyChild {
        child,
        master,
        output,
    }
}

impl PtyChild {
    pub fn write(&mut self, bytes: &[u8]) {
        let _ = self.master.write_all(bytes);
    }

    /// Resizes the terminal and tells the program, as a terminal emulator does.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        let ws = winsize(cols, rows);
        let fd = self
            .master
            .try_clone()
            .unwrap_or_else(|e| panic!("{e}"))
            .into_raw_fd();
        // SAFETY: TIOCSWINSZ on our own pty master with a valid winsize.
        unsafe {
            libc::ioctl(fd, libc::TIOCSWINSZ, &ws);
            libc::close(fd);
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signalling the child this test started.
            unsafe {
                libc::kill(pid, libc::SIGWINCH);
            }
        }
    }

    pub fn text(&self) -> String {
        self.output
            .lock()
            .map(|o| String::from_utf8_lossy(&o).into_owned())
            .unwrap_or_default()
    }
}
