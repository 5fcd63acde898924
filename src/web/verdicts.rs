//! The verify verdicts of archives, kept while nothing could have changed
//! them, so a session's page does not read the whole archive on each view.
//!
//! A verdict is kept with the archive's file identity and times (device,
//! inode, size, modification and status-change times) and the ids of the
//! trusted keys it was checked against. Any write to the file, by any means,
//! moves its status-change time (which, unlike the modification time, no
//! ordinary program can set back), and replacing the file changes its inode:
//! then the archive is verified again. A verdict is kept only if the file
//! was the same before and after the check (a live session's archive grows
//! meanwhile: it is checked on every view, as before).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::recording::Verdict;

/// Archives remembered at most; beyond, the oldest half is forgotten.
const CAPACITY: usize = 4096;

/// What identifies one state of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileState {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileState {
    fn of(path: &Path) -> Option<FileState> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path).ok()?;
        Some(FileState {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }
}

#[derive(Debug)]
struct Kept {
    state: FileState,
    keys: Vec<String>,
    verdict: Verdict,
    /// Insertion order, for forgetting the oldest.
    seq: u64,
}

/// Verdicts by archive path.
#[derive(Debug, Default)]
pub struct Verdicts {
    kept: Mutex<(u64, HashMap<PathBuf, Kept>)>,
}

impl Verdicts {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<PathBuf, Kept>)> {
        // A poisoned map of independent entries is still usable.
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The verdict of `path` against the keys `keys` (their ids), from
    /// `verify` unless one is kept for the file as it is now.
    pub fn get_or_verify(
        &self,
        path: &Path,
        keys: &[String],
        verify: impl FnOnce() -> Result<Verdict, String>,
    ) -> Result<Verdict, String> {
        let before = FileState::of(path);
        if let Some(state) = &before
            && let Some(k) = self.lock().1.get(path)
            && &k.state == state
            && k.keys == keys
        {
            return Ok(k.verdict.clone());
        }
        let verdict = verify()?;
        let after = FileState::of(path);
        if let (Some(before), Some(after)) = (before, after)
            && before == after
        {
            let mut g = self.lock();
            let (seq, map) = &mut *g;
            if map.len() >= CAPACITY {
                let mut seqs: Vec<u64> = map.values().map(|k| k.seq).collect();
                seqs.sort_unstable();
                let cut = seqs[seqs.len() / 2];
                map.retain(|_, k| k.seq >= cut);
            }
            *seq += 1;
            map.insert(
                path.to_path_buf(),
                Kept {
                    state: after,
                    keys: keys.to_vec(),
                    verdict: verdict.clone(),
                    seq: *seq,
                },
            );
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn a_verdict() -> Verdict {
        Verdict::BadSignature { key_id: "k".into() }
    }

    #[test]
    fn kept_until_the_file_or_the_keys_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.skr");
        std::fs::write(&p, b"archive").unwrap();
        let v = Verdicts::default();
        let calls = Cell::new(0);
        let verify = || {
            calls.set(calls.get() + 1);
            Ok(a_verdict())
        };
        let keys = vec!["k1".to_string()];
        v.get_or_verify(&p, &keys, verify).unwrap();
        v.get_or_verify(&p, &keys, verify).unwrap();
        assert_eq!(calls.get(), 1, "the second view uses the kept verdict");

        // Same size, modification time set back: the status-change time
        // still moves.
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, b"ARCHIVE").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        v.get_or_verify(&p, &keys, verify).unwrap();
        assert_eq!(calls.get(), 2, "a rewritten file is verified again");

        v.get_or_verify(&p, &["k2".to_string()], verify).unwrap();
        assert_eq!(calls.get(), 3, "other trusted keys: verified again");
    }

    #[test]
    fn a_failed_check_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.skr");
        std::fs::write(&p, b"x").unwrap();
        let v = Verdicts::default();
        assert!(v.get_or_verify(&p, &[], || Err("io".into())).is_err());
        let calls = Cell::new(0);
        v.get_or_verify(&p, &[], || {
            calls.set(calls.get() + 1);
            Ok(a_verdict())
        })
        .unwrap();
        assert_eq!(calls.get(), 1);
    }
}
