//! Measuring helpers shared by the benches (included with `#[path]`):
//! environment knobs, medians, and the CPU and memory of processes and
//! threads from /proc.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The machine's 1-minute load average (other work shares the cores).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "no samples");
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// (pid, ppid, comm, utime+stime ticks) from /proc/PID/stat.
pub fn stat_of(path: &Path) -> Option<(u32, u32, String, u64)> {
    let s = std::fs::read_to_string(path).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let pid = s[..open].trim().parse().ok()?;
    let comm = s[open + 1..close].to_string();
    let rest: Vec<&str> = s[close + 2..].split_whitespace().collect();
    // rest[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
    let ppid = rest.get(1)?.parse().ok()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((pid, ppid, comm, utime + stime))
}

/// Context switches (voluntary + involuntary) of every thread of `root`
/// and its descendants so far, by thread id.
pub fn context_switches(root: u32) -> BTreeMap<u32, u64> {
    tree_threads(root)
        .into_iter()
        .map(|(tid, dir)| {
            let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
            let switches = kib_field(&status, "voluntary_ctxt_switches:")
                + kib_field(&status, "nonvoluntary_ctxt_switches:");
            (tid, switches)
        })
        .collect()
}

/// Every thread of `root` and its descendants: (thread id, its
/// /proc/PID/task/TID directory).
fn tree_threads(root: u32) -> Vec<(u32, PathBuf)> {
    let mut threads = Vec::new();
    for pid in process_tree(root) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) {
                threads.push((tid, t.path()));
            }
        }
    }
    threads
}

/// Context switches between two `context_switches` samples, counted over
/// the threads in both (threads that came or went in between are left out).
pub fn switches_between(before: &BTreeMap<u32, u64>, after: &BTreeMap<u32, u64>) -> u64 {
    after
        .iter()
        .filter_map(|(tid, n)| before.get(tid).map(|b| n.saturating_sub(*b)))
        .sum()
}

/// `root` and all its live descendants.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parent = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for p in rd.flatten() {
            if let Some((pid, ppid, _, _)) = stat_of(&p.path().join("stat")) {
                parent.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let me = tree[i];
        tree.extend(parent.iter().filter(|(_, pp)| *pp == me).map(|(p, _)| *p));
        i += 1;
    }
    tree
}

pub fn kib_field(text: &str, field: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub processes: usize,
    pub threads: u64,
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub cpu_ticks: u64,
}

/// Memory and CPU of `root` and its descendants, now.
pub fn usage(root: u32) -> Usage {
    let mut u = Usage::default();
    for pid in process_tree(root) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        u.processes += 1;
        u.threads += kib_field(&status, "Threads:");
        u.rss_kib += kib_field(&status, "VmRSS:");
        u.pss_kib += kib_field(&rollup, "Pss:");
        if let Some((_, _, _, t)) = stat_of(&PathBuf::from(format!("/proc/{pid}/stat"))) {
            u.cpu_ticks += t;
        }
    }
    u
}

/// Samples the CPU ticks of every thread of `pid` and its descendants
/// every 100 ms while it runs, so short-lived threads (a session's recording
/// writer) and processes (sshd's per-connection children) are counted too; `stop` sums the ticks used since `start` by thread name
/// (`rec-writer-0`, … → one `rec-*` row).
pub struct ThreadSampler {
    stop: Arc<AtomicBool>,
    /// tid -> (name, ticks at first sight, latest ticks).
    handle: std::thread::JoinHandle<BTreeMap<u32, (String, u64, u64)>>,
}

/// CPU ticks (utime + stime) of every thread of `root` and its
/// descendants now, by thread id: a mark for [`ThreadSampler::stop_since`].
pub fn thread_ticks(root: u32) -> BTreeMap<u32, u64> {
    tree_threads(root)
        .into_iter()
        .filter_map(|(tid, dir)| stat_of(&dir.join("stat")).map(|(_, _, _, ticks)| (tid, ticks)))
        .collect()
}

impl ThreadSampler {
    pub fn start(pid: u32) -> ThreadSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            // tid -> (name, ticks at first sight, latest ticks)
            let mut seen: BTreeMap<u32, (String, u64, u64)> = BTreeMap::new();
            let mut first = true;
            let limit = Instant::now() + Duration::from_secs(3600);
            loop {
                let done = flag.load(Ordering::Relaxed) || Instant::now() > limit;
                for (_, dir) in tree_threads(pid) {
                    if let Some((tid, _, comm, ticks)) = stat_of(&dir.join("stat")) {
                        let e =
                            seen.entry(tid)
                                .or_insert((comm, if first { ticks } else { 0 }, ticks));
                        e.2 = ticks;
                    }
                }
                first = false;
                if done {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        });
        ThreadSampler { stop, handle }
    }

    /// CPU ticks used since the start, by thread name (the recording
    /// writers together).
    pub fn stop(self) -> BTreeMap<String, u64> {
        by_name(self.stop_threads())
    }

    /// As [`ThreadSampler::stop`], and the ticks used since `mark` (a
    /// [`thread_ticks`] taken meanwhile): threads there count from their
    /// ticks then, threads born later from their first sight.
    pub fn stop_since(self, mark: &BTreeMap<u32, u64>) -> (BTreeMap<String, u64>, u64) {
        let threads = self.stop_threads();
        let since = threads
            .iter()
            .map(|(tid, (_, t0, t1))| t1.saturating_sub(*mark.get(tid).unwrap_or(t0)))
            .sum();
        (by_name(threads), since)
    }

    fn stop_threads(self) -> BTreeMap<u32, (String, u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("sampler thread")
    }
}

/// Ticks used per thread name, from a sampler's tid -> (name, first, latest).
fn by_name(threads: BTreeMap<u32, (String, u64, u64)>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for (comm, t0, t1) in threads.into_values() {
        let key = if comm.starts_with("rec-") {
            "rec-* (recording writers)".to_string()
        } else {
            comm
        };
        *m.entry(key).or_insert(0) += t1.saturating_sub(t0);
    }
    m
}

pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime+stime of `pid`, plus cutime+cstime of the children it has reaped
/// when `with_children` (a shell loop's short-lived commands).
pub fn cpu_ticks_of(pid: u32, with_children: bool) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(close) = s.rfind(')') else {
        return 0;
    };
    // After the comm: field 3 (state) is index 0; utime 14 is index 11.
    let fields: Vec<u64> = s[close + 2..]
        .split_whitespace()
        .skip(11)
        .take(if with_children { 4 } else { 2 })
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum()
}

/// Busy ticks of the whole machine, all CPUs (from /proc/stat: everything
/// but idle and iowait).
pub fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    cpu.split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse::<u64>().ok())
        .enumerate()
        // user nice system idle iowait irq softirq steal (guest is in user)
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, t)| t)
        .sum()
}

/// Resets the peak resident set size (`VmHWM`) of `pid` to its current RSS
/// (`echo 5 > /proc/PID/clear_refs`, Linux ≥ 4.0; needs the same user).
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The peak resident set size of `pid` since it started or since the last
/// [`reset_peak_rss`], in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    kib_field(&status, "VmHWM:")
}

/// CPU ticks (utime+stime) of `roots` and all their descendants, from one
/// scan of /proc (cheap for a thousand roots).
pub fn trees_ticks(roots: &[u32]) -> u64 {
    let mut procs: Vec<(u32, u32, u64)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for p in rd.flatten() {
            if let Some((pid, ppid, _, t)) = stat_of(&p.path().join("stat")) {
                procs.push((pid, ppid, t));
            }
        }
    }
    let mut inside: std::collections::BTreeSet<u32> = roots.iter().copied().collect();
    // Parents come before children in pid order only mostly: repeat until
    // nothing is added.
    loop {
        let before = inside.len();
        for (pid, ppid, _) in &procs {
            if inside.contains(ppid) {
                inside.insert(*pid);
            }
        }
        if inside.len() == before {
            break;
        }
    }
    procs
        .iter()
        .filter(|(pid, _, _)| inside.contains(pid))
        .map(|(_, _, t)| t)
        .sum()
}

/// Per thread of `root` and its descendants: (comm, ns on a CPU, ns
/// runnable but waiting for one) from /proc/PID/task/TID/schedstat.
pub fn sched_times(root: u32) -> BTreeMap<u32, (String, u64, u64)> {
    tree_threads(root)
        .into_iter()
        .map(|(tid, dir)| {
            let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
            let mut f = stat
                .split_whitespace()
                .map(|x| x.parse::<u64>().unwrap_or(0));
            let (run, wait) = (f.next().unwrap_or(0), f.next().unwrap_or(0));
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            (tid, (comm.trim().to_string(), run, wait))
        })
        .collect()
}

/// (run ns, runqueue wait ns) between two `sched_times` samples, summed
/// over the threads in both whose name `pick` accepts.
pub fn sched_between(
    before: &BTreeMap<u32, (String, u64, u64)>,
    after: &BTreeMap<u32, (String, u64, u64)>,
    pick: impl Fn(&str) -> bool,
) -> (u64, u64) {
    after
        .iter()
        .filter(|(_, (comm, _, _))| pick(comm))
        .filter_map(|(tid, (_, run, wait))| {
            before
                .get(tid)
                .map(|(_, r0, w0)| (run.saturating_sub(*r0), wait.saturating_sub(*w0)))
        })
        .fold((0, 0), |(r, w), (a, b)| (r + a, w + b))
}
