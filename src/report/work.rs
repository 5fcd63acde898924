//! The work report draft (作業報告, 下書き) of one work request, filled from
//! what sekisho recorded, never from memory: every session of the request's
//! engineers on its targets over its protocols inside its window (or run
//! under it), what was run and typed in each (replayed from the archive by
//! the keystroke-log code), what the bastion refused (audit
//! `channel_blocked`), kills, and each archive's final digest as evidence.
//!
//! Offline code: it reads archives through `replay/`, and is never used by
//! the gateways.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::recording::Reader;
use crate::replay::desktop::keystrokes as desktop_keystrokes;
use crate::replay::keylog::LineEnd;
use crate::replay::terminal::keystrokes as terminal_keystrokes;
use crate::store::{
    AuditFilter, AuditKind, AuditRecord, SessionFilter, SessionRecord, Store, StoreError,
    WorkRequest,
};

/// Errors while drafting or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the report: {0}")]
    Write(#[from] std::io::Error),
}

/// What a line of the operations list is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// A command given to `ssh host COMMAND` (exec).
    Command,
    /// A line typed in a terminal or desktop session.
    Typed,
}

impl OperationKind {
    /// The column text (Japanese: the report is for officials).
    pub fn label(self) -> &'static str {
        match self {
            OperationKind::Command => "コマンド",
            OperationKind::Typed => "入力",
        }
    }
}

/// One command or typed line, at the wall-clock time it was entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub at: DateTime<Utc>,
    pub kind: OperationKind,
    pub text: String,
}

/// One session in the report.
#[derive(Debug, Clone)]
pub struct ReportSession {
    pub record: SessionRecord,
    pub operations: Vec<Operation>,
    /// Refusals the bastion audited for this session.
    pub blocked: Vec<AuditRecord>,
    /// Why the operations could not be read, if they could not.
    pub archive_note: Option<String>,
}

/// The drafted report.
#[derive(Debug, Clone)]
pub struct WorkReport {
    pub request: WorkRequest,
    pub sessions: Vec<ReportSession>,
}

/// Drafts the report of `request` from the store and the archives.
pub async fn draft(store: &Store, request: &WorkRequest) -> Result<WorkReport, ReportError> {
    let all = store
        .sessions(&SessionFilter {
            since: Some(request.window_start),
            until: Some(request.window_end),
            ..SessionFilter::default()
        })
        .await?;
    let mut sessions = Vec::new();
    for record in all.into_iter().filter(|s| belongs(request, s)) {
        let blocked = store
            .audit_query(&AuditFilter {
                session: Some(record.id),
                kinds: vec![AuditKind::ChannelBlocked],
                ..AuditFilter::default()
            })
            .await?;
        let (operations, archive_note) = match &record.recording_path {
            None => (Vec::new(), Some("no recording".to_string())),
            Some(path) => {
                let path = Path::new(path).to_path_buf();
                match tokio::task::spawn_blocking(move || operations(&path)).await {
                    Ok(Ok(ops)) => (ops, None),
                    Ok(Err(e)) => (Vec::new(), Some(e)),
                    Err(e) => (Vec::new(), Some(format!("reading the archive failed: {e}"))),
                }
            }
        };
        sessions.push(ReportSession {
            record,
            operations,
            blocked,
            archive_note,
        });
    }
    Ok(WorkReport {
        request: request.clone(),
        sessions,
    })
}

/// A session is part of the request's work if it ran under it, or if one of
/// its engineers reached one of its targets over one of its protocols
/// inside the window (systems that do not require approval).
fn belongs(r: &WorkRequest, s: &SessionRecord) -> bool {
    if s.work_request.as_deref() == Some(r.number.as_str()) {
        return true;
    }
    s.work_request.is_none()
        && r.engineers.contains(&s.user)
        && r.targets.contains(&s.target)
        && r.protocols.iter().any(|p| p.as_str() == s.protocol)
        && s.started_at >= r.window_start
        && s.started_at < r.window_end
}

/// The commands and typed lines of one archive, by the keystroke-log code.
fn operations(path: &Path) -> Result<Vec<Operation>, String> {
    let mut reader =
        Reader::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let started = reader.meta().started_at;
    let at = |t_us: u64| {
        started + chrono::Duration::microseconds(i64::try_from(t_us).unwrap_or(i64::MAX / 2))
    };
    let mut ops = Vec::new();
    match reader.meta().protocol {
        crate::recording::Protocol::Ssh => {
            let lines = terminal_keystrokes::typed_lines(reader.events())
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            for l in lines {
                ops.push(Operation {
                    at: at(l.t_end_us),
                    kind: if l.ended_by == LineEnd::Exec {
                        OperationKind::Command
                    } else {
                        OperationKind::Typed
                    },
                    text: l.text,
                });
            }
        }
        crate::recording::Protocol::Rdp => {
            let info = reader.meta().rdp.clone().unwrap_or_default();
            let log = desktop_keystrokes::keystroke_log(&info, reader.events())
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            for l in log.lines {
                ops.push(Operation {
                    at: at(l.t_end_us),
                    kind: OperationKind::Typed,
                    text: l.text,
                });
            }
        }
    }
    Ok(ops)
}

/// Writes the report as CSV for Excel: UTF-8 with a byte-order mark, CRLF
/// line ends, RFC 4180 quoting; blocks (the request, its sessions, the
/// operations, the refusals) separated by an empty line, each with its
/// heading row. Times in `tz`.
pub fn write_csv<W: Write>(report: &WorkReport, tz: Tz, mut out: W) -> Result<(), ReportError> {
    let t = |x: DateTime<Utc>| x.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string();
    let r = &report.request;
    out.write_all("\u{feff}".as_bytes())?;
    let mut row = |cells: &[&str]| -> std::io::Result<()> {
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.write_all(line.join(",").as_bytes())?;
        out.write_all(b"\r\n")
    };
    row(&["作業報告（下書き）", "sekisho が記録から作成"])?;
    row(&["作業申請番号", &r.number])?;
    row(&["版", &r.revision.to_string()])?;
    row(&["状態", r.state.as_str()])?;
    row(&[
        "緊急",
        if r.urgency == crate::procedure::Urgency::Emergency {
            "緊急"
        } else {
            "通常"
        },
    ])?;
    row(&["システム", &r.system])?;
    row(&["業者", &r.vendor])?;
    row(&["申請者", &r.requester])?;
    row(&["作業者", &r.engineers.join(" ")])?;
    row(&["対象", &r.targets.join(" ")])?;
    let protocols: Vec<&str> = r.protocols.iter().map(|p| p.as_str()).collect();
    row(&["プロトコル", &protocols.join(" ")])?;
    row(&["目的", &r.purpose])?;
    row(&["作業内容", &r.work])?;
    row(&["作業予定開始", &t(r.window_start)])?;
    row(&["作業予定終了", &t(r.window_end)])?;
    for a in &r.approvals {
        row(&[&format!("承認 {}", a.step + 1), &a.by, &t(a.at), &a.comment])?;
    }
    row(&[])?;
    row(&[
        "セッションID",
        "作業者",
        "対象",
        "プロトコル",
        "開始",
        "終了",
        "時間（分）",
        "状態",
        "終了理由",
        "強制終了者",
        "記録の状態",
        "記録ダイジェスト（SHA-256）",
    ])?;
    for s in &report.sessions {
        let rec = &s.record;
        let minutes = rec
            .ended_at
            .map(|e| format!("{:.1}", (e - rec.started_at).num_seconds() as f64 / 60.0))
            .unwrap_or_default();
        row(&[
            &rec.id.to_string(),
            &rec.user,
            &rec.target,
            &rec.protocol,
            &t(rec.started_at),
            &rec.ended_at.map(t).unwrap_or_default(),
            &minutes,
            rec.status.as_str(),
            rec.end_reason.as_deref().unwrap_or_default(),
            rec.killed_by.as_deref().unwrap_or_default(),
            rec.recording_status.as_deref().unwrap_or_default(),
            rec.recording_digest.as_deref().unwrap_or_default(),
        ])?;
    }
    row(&[])?;
    row(&["セッションID", "時刻", "種別", "内容"])?;
    for s in &report.sessions {
        let id = s.record.id.to_string();
        if let Some(note) = &s.archive_note {
            row(&[&id, "", "記録を読めません", note])?;
        }
        for op in &s.operations {
            row(&[&id, &t(op.at), op.kind.label(), &op.text])?;
        }
    }
    row(&[])?;
    row(&["セッションID", "時刻", "拒否した操作", "内容"])?;
    for s in &report.sessions {
        let id = s.record.id.to_string();
        for b in &s.blocked {
            let what = b.event.data["channel"].as_str().unwrap_or_default();
            row(&[&id, &t(b.at), what, &b.event.detail])?;
        }
    }
    Ok(())
}

/// One CSV field: quoted when it holds a comma, quote or line break, and
/// when it starts with a character a spreadsheet would take as a formula.
fn csv_cell(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@']);
    let s = if formula {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_for_excel() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        // A typed line must not become a formula in Excel.
        assert_eq!(csv_cell("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(csv_cell("-rf"), "'-rf");
        assert_eq!(csv_cell("日本語"), "日本語");
    }
}
