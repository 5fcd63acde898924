//! The keystroke log format both media share: a header naming the session,
//! then one entry per line the person entered, so auditors read (and grep)
//! every log the same way whatever the protocol.

use std::io::Write;

use crate::recording::SessionMeta;

/// How a line of a keystroke log ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    Enter,
    Interrupt,
    /// ^D on an empty line.
    Eof,
    /// The session ended with this line unfinished.
    Unfinished,
    /// A command line given to the target directly (`ssh host 'cmd'`).
    Exec,
}

/// The first line of every keystroke log (SSH and RDP alike).
pub fn write_log_header<W: Write>(meta: &SessionMeta, out: &mut W) -> std::io::Result<()> {
    writeln!(
        out,
        "# session {} user {} vendor {} target {} ({}) from {} started {}",
        meta.session_id,
        meta.user,
        meta.vendor,
        meta.target,
        meta.protocol.as_str(),
        meta.client_addr,
        meta.started_at.to_rfc3339()
    )
}

/// One entry of a keystroke log: `wall-clock  +seconds  SOURCE  text`,
/// then `suffix`; `t_us` is when the line was entered. One format for both
/// protocols, so auditors read (and grep) every log the same way.
pub fn write_log_entry<W: Write>(
    meta: &SessionMeta,
    t_us: u64,
    source: &str,
    text: &str,
    suffix: &str,
    out: &mut W,
) -> std::io::Result<()> {
    // A damaged archive's time can be past any date: shown as such, no panic.
    let wall = i64::try_from(t_us)
        .ok()
        .and_then(|us| {
            meta.started_at
                .checked_add_signed(chrono::Duration::microseconds(us))
        })
        .map_or_else(
            || "(time out of range)".to_owned(),
            |w| w.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        );
    writeln!(
        out,
        "{wall}  +{}.{:03}s  {source}  {}{suffix}",
        t_us / 1_000_000,
        (t_us / 1000) % 1000,
        text.escape_debug()
    )
}
