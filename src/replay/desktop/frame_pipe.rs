//! Frames handed to ffmpeg's pipe without copying them into it.
//!
//! A 1920x1080 frame is 3.1 MB. Written into a pipe, the kernel copies it
//! into pipe pages that it allocates, charges to the process and frees
//! again as ffmpeg reads: in the 1920x1080 office-like export that was
//! about a tenth of all the CPU, both sides together. `vmsplice(2)` puts
//! references to our own pages into the pipe instead, and ffmpeg's read
//! copies straight out of them.
//!
//! The price is a rule: pixels handed over must stay as they are until
//! ffmpeg has read them. A pipe holds at most its size in bytes, so a byte
//! put into it has been read once that many more bytes have been put in
//! after it. [`FramePipe`] makes the pipe no larger than one frame, and
//! [`HeldFrames`] hands out two buffers in turn, so a buffer is written
//! again only after the whole frame after it went into the pipe; the
//! buffers are dropped only once ffmpeg has exited (freed memory reused
//! while the pipe still refers to it would change what ffmpeg reads). Where the
//! pipe cannot be made that small, or the kernel refuses `vmsplice`, the
//! frames are written (copied) as before.

use std::io::Write;
use std::os::fd::AsRawFd as _;
use std::process::ChildStdin;

use super::video::{Blocks, Changed};

/// The largest pipe asked for: the most Linux gives an unprivileged
/// process by default (`/proc/sys/fs/pipe-max-size`). Through the default
/// 64 KiB pipe a frame meant some fifty wake-ups of each side.
const PIPE_BYTES: usize = 1 << 20;

/// Writes at least this long are lent to the pipe (frames); shorter ones
/// (the container's few bytes around each frame) are copied.
const LEND_FROM: usize = 4096;

/// The pipe to ffmpeg. Writes of [`LEND_FROM`] bytes or more may be lent
/// to the pipe rather than copied: the caller must leave such bytes
/// unchanged until at least `frame_len` more bytes have been written after
/// them, as [`HeldFrames`] does.
pub(super) struct FramePipe {
    input: ChildStdin,
    lend: bool,
}

impl FramePipe {
    /// `input` with a pipe of at most `frame_len` bytes (and at most
    /// [`PIPE_BYTES`]), lending only where the kernel made it that small.
    #[allow(unsafe_code)] // FFI to libc; see SAFETY below.
    pub(super) fn new(input: ChildStdin, frame_len: usize) -> FramePipe {
        let fd = input.as_raw_fd();
        // A power of two: the kernel rounds a pipe's size up to one.
        let want = frame_len.min(PIPE_BYTES);
        let want = if want.is_power_of_two() {
            want
        } else {
            want.next_power_of_two() / 2
        };
        let want = libc::c_int::try_from(want).unwrap_or(libc::c_int::MAX);
        // SAFETY: fcntl on a descriptor `input` owns and keeps open for the
        // calls; F_SETPIPE_SZ takes an int and F_GETPIPE_SZ nothing, and
        // neither touches memory of ours.
        let size = unsafe {
            libc::fcntl(fd, libc::F_SETPIPE_SZ, want);
            libc::fcntl(fd, libc::F_GETPIPE_SZ)
        };
        let lend = usize::try_from(size).is_ok_and(|size| size > 0 && size <= frame_len);
        FramePipe { input, lend }
    }

    /// Whether frames are lent to the pipe (for the tests).
    #[cfg(test)]
    fn lends(&self) -> bool {
        self.lend
    }

    #[allow(unsafe_code)] // FFI to libc; see SAFETY below.
    fn lend(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: `iov` describes `buf`, valid for the call; vmsplice
        // without SPLICE_F_GIFT only reads the memory. The pages it puts in
        // the pipe are pinned by the kernel, so they stay valid for ffmpeg's
        // read even if `buf` is freed; what they hold then is the rule in
        // the module doc.
        let n = unsafe { libc::vmsplice(self.input.as_raw_fd(), &iov, 1, 0) };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    }
}

impl Write for FramePipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.lend && buf.len() >= LEND_FROM {
            match self.lend(buf) {
                Ok(n) => return Ok(n),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return Err(e);
                }
                // Not spliceable here after all: copy from now on.
                Err(_) => self.lend = false,
            }
        }
        self.input.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.input.flush()
    }
}

/// Two frame buffers handed out in turn, each brought up to date from the
/// canvas where it is behind, so that a frame lent to the pipe stays
/// unchanged while the next one is written.
pub(super) struct HeldFrames {
    buffers: [Vec<u8>; 2],
    /// Where each buffer is behind the canvas.
    behind: [Changed; 2],
    next: usize,
    width: usize,
    height: usize,
}

impl HeldFrames {
    /// Buffers for `width` x `height` (even) YUV 4:2:0 frames.
    pub(super) fn new(width: u32, height: u32) -> HeldFrames {
        let len = width as usize * height as usize * 3 / 2;
        HeldFrames {
            buffers: [vec![0; len], vec![0; len]],
            behind: [Changed::All, Changed::All],
            next: 0,
            width: width as usize,
            height: height as usize,
        }
    }

    /// The canvas changed at `changed`.
    pub(super) fn changed(&mut self, changed: &Changed) {
        for behind in &mut self.behind {
            match (&mut *behind, changed) {
                (Changed::All, _) => {}
                (b, Changed::All) => *b = Changed::All,
                (Changed::Blocks(have), Changed::Blocks(more)) => have.extend_from_slice(more),
            }
        }
    }

    /// The next buffer, made equal to `canvas` (the canvas's YUV frame).
    /// It is not written again until after the following call.
    pub(super) fn take(&mut self, canvas: &[u8]) -> &[u8] {
        let k = self.next;
        self.next ^= 1;
        let buf = &mut self.buffers[k];
        match std::mem::replace(&mut self.behind[k], Changed::Blocks(Vec::new())) {
            Changed::All => buf.copy_from_slice(canvas),
            Changed::Blocks(blocks) => {
                for b in blocks {
                    copy_blocks(canvas, buf, self.width, self.height, b);
                }
            }
        }
        buf
    }
}

/// Copy the 2x2 blocks `b` of a `width` x `height` YUV 4:2:0 frame.
fn copy_blocks(src: &[u8], dst: &mut [u8], width: usize, height: usize, b: Blocks) {
    let (x0, y0, x1, y1) = (b.x0 as usize, b.y0 as usize, b.x1 as usize, b.y1 as usize);
    let (cw, ch) = (width / 2, height / 2);
    let planes = [
        (0, width, x0, x1, y0, y1),
        (width * height, cw, x0 / 2, x1 / 2, y0 / 2, y1 / 2),
        (width * height + cw * ch, cw, x0 / 2, x1 / 2, y0 / 2, y1 / 2),
    ];
    for (base, stride, left, right, top, bottom) in planes {
        for y in top..bottom {
            let at = base + y * stride;
            if let (Some(s), Some(d)) = (
                src.get(at + left..at + right),
                dst.get_mut(at + left..at + right),
            ) {
                d.copy_from_slice(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::desktop::frames::{FrameUpdate, Region};
    use crate::replay::desktop::region::Rect;
    use crate::replay::desktop::timed_frames::TimedFrames;
    use crate::replay::desktop::video::VideoCanvas;
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

    /// A frame of random regions (now and then the whole desktop) on a
    /// `w` x `h` desktop.
    fn update(rng: &mut StdRng, t_us: u64, w: u32, h: u32) -> FrameUpdate {
        let full = rng.gen_ratio(1, 10);
        let regions = if full {
            vec![Region {
                rect: Rect {
                    x: 0,
                    y: 0,
                    width: w,
                    height: h,
                },
                rgba: (0..w * h * 4).map(|_| rng.r#gen()).collect(),
            }]
        } else {
            (0..rng.gen_range(1..4))
                .map(|_| {
                    let (x, y) = (rng.gen_range(0..w), rng.gen_range(0..h));
                    let (rw, rh) = (rng.gen_range(1..=w - x), rng.gen_range(1..=h - y));
                    Region {
                        rect: Rect {
                            x,
                            y,
                            width: rw,
                            height: rh,
                        },
                        rgba: (0..rw * rh * 4).map(|_| rng.r#gen()).collect(),
                    }
                })
                .collect()
        };
        FrameUpdate {
            t_us,
            width: w,
            height: h,
            full,
            regions,
        }
    }

    #[test]
    fn each_buffer_handed_out_equals_the_canvas() {
        let mut rng = StdRng::seed_from_u64(7);
        let (w, h) = (37, 22);
        let mut canvas = VideoCanvas::new(w, h);
        let mut held = HeldFrames::new(canvas.width(), canvas.height());
        for t in 0..300 {
            // Some instants change nothing and are handed out again.
            if rng.gen_ratio(4, 5) {
                held.changed(&canvas.apply(&update(&mut rng, t, w, h)));
            }
            assert!(held.take(canvas.yuv()) == canvas.yuv(), "frame {t}");
        }
    }

    /// The stream ffmpeg would read, through a real pipe to a reader that
    /// starts late (so the pipe fills and lent frames wait in it while the
    /// next ones are drawn), equals the same frames written to memory.
    #[test]
    fn frames_lent_to_a_slow_reader_arrive_as_drawn() {
        let dir = tempfile::tempdir().expect("dir");
        let got = dir.path().join("stream");
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("sleep 0.3; cat > '{}'", got.display()))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let (w, h) = (320, 240);
        let frame_len = (w * h * 3 / 2) as usize;
        let pipe = FramePipe::new(child.stdin.take().expect("stdin"), frame_len);
        assert!(pipe.lends(), "this kernel lends frames to a pipe");
        let mut lent = TimedFrames::start(pipe, w, h, 10).expect("start");
        let mut copied = TimedFrames::start(Vec::new(), w, h, 10).expect("start");
        let mut rng = StdRng::seed_from_u64(8);
        let mut canvas = VideoCanvas::new(w, h);
        let mut held = HeldFrames::new(w, h);
        for t in 0..60 {
            held.changed(&canvas.apply(&update(&mut rng, t, w, h)));
            copied.frame(t, canvas.yuv()).expect("to memory");
            lent.frame(t, held.take(canvas.yuv())).expect("to the pipe");
        }
        drop(lent);
        assert!(child.wait().expect("wait").success());
        let got = std::fs::read(got).expect("read");
        let want = copied.into_inner();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the stream read differs from the frames drawn");
    }
}
