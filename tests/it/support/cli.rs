//! The one way the tests run the admin CLI: `sekisho --config CONFIG ARGS`
//! with optional stdin, output captured, and the checks made on it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `sekisho` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sekisho"))
}

/// Runs `BIN --config CONFIG ARGS` with `stdin` piped in (and
/// `SEKISHO_CONFIG` unset, so only `config` counts).
pub fn run(bin: &Path, config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("SEKISHO_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    if let Some(mut i) = child.stdin.take()
        && let Some(s) = stdin
    {
        let _ = i.write_all(s.as_bytes());
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait {}: {e}", bin.display()))
}

/// Stdout and stderr together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Stdout and stderr of a command that must succeed.
pub fn ok(o: Output) -> String {
    let t = text(&o);
    assert!(o.status.success(), "command failed: {t}");
    t
}

/// The JSON values of `--json` output, one a line.
pub fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
