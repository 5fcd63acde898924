//! The work report draft (作業報告, 下書き) of one work request, filled from
//! what sekisho recorded, never from memory: every session of the request's
//! engineers on its targets over its protocols inside its window (or run
//! under it), what was run and typed in each (replayed from the archive by
//! the keystroke-log code), what the bastion refused (audit
//! `channel_blocked`), kills, and each archive's final digest as evidence.
//!
//! Offline code: it reads archives through `replay/`, and is never used by
//! the gateways.

use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::recording::Reader;
use crate::replay::desktop::keystrokes as desktop_keystrokes;
use crate::replay::keylog::LineEnd;
use crate::replay::terminal::keystrokes as terminal_keystrokes;
use crate::store::{
    AuditFilter, AuditKind, AuditRecord, DocumentFilter, DocumentKind, DocumentRecord,
    SessionFilter, SessionRecord, Store, WorkReportRecord, WorkRequest,
};

use super::ReportError;
use super::csv::Csv;
use super::pdf::{Document, ReportFont};

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
    /// What the engineer wrote and the sign-off, once written.
    pub completion: Option<WorkReportRecord>,
    /// The vendor's contract copies and the engineers' pledges on file.
    pub documents: Vec<DocumentRecord>,
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
    let completion = store
        .work_report(&request.number)
        .await?
        .filter(|c| c.revision == request.revision);
    let documents = documents_of(store, &request.vendor, &request.engineers).await?;
    Ok(WorkReport {
        request: request.clone(),
        sessions,
        completion,
        documents,
    })
}

/// The contract copies of `vendor` and the pledges of `engineers`.
pub async fn documents_of(
    store: &Store,
    vendor: &str,
    engineers: &[String],
) -> Result<Vec<DocumentRecord>, ReportError> {
    let mut docs = store
        .documents(&DocumentFilter {
            kind: Some(DocumentKind::Contract),
            vendor: Some(vendor.into()),
            ..DocumentFilter::default()
        })
        .await?;
    for e in engineers {
        docs.extend(
            store
                .documents(&DocumentFilter {
                    kind: Some(DocumentKind::Pledge),
                    user: Some(e.clone()),
                    ..DocumentFilter::default()
                })
                .await?,
        );
    }
    Ok(docs)
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

/// The title of the report as it stands: a draft until the engineer wrote
/// the result, then awaiting sign-off, then signed off (検収済).
pub fn title(report: &WorkReport) -> &'static str {
    match &report.completion {
        None => "作業報告（下書き）",
        Some(c) if c.is_signed_off() => "作業報告（検収済）",
        Some(_) => "作業報告（検収待ち）",
    }
}

/// The request's fields, the engineer's part and the sign-off, as label /
/// value pairs (both formats print them).
fn fields(report: &WorkReport, tz: Tz) -> Vec<(&'static str, String)> {
    let t = |x: DateTime<Utc>| x.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string();
    let r = &report.request;
    let protocols: Vec<&str> = r.protocols.iter().map(|p| p.as_str()).collect();
    let mut f = vec![
        ("作業申請番号", r.number.clone()),
        ("版", r.revision.to_string()),
        ("状態", r.state.as_str().to_string()),
        (
            "緊急",
            if r.urgency == crate::procedure::Urgency::Emergency {
                "緊急".to_string()
            } else {
                "通常".to_string()
            },
        ),
        ("システム", r.system.clone()),
        ("業者", r.vendor.clone()),
        ("申請者", r.requester.clone()),
        ("作業者", r.engineers.join(" ")),
        ("対象", r.targets.join(" ")),
        ("プロトコル", protocols.join(" ")),
        ("目的", r.purpose.clone()),
        ("作業内容", r.work.clone()),
        ("作業予定開始", t(r.window_start)),
        ("作業予定終了", t(r.window_end)),
    ];
    match &report.completion {
        None => f.push(("作業結果", "（未記入）".into())),
        Some(c) => {
            f.push(("作業結果", c.result.label().into()));
            f.push(("作業概要", c.summary.clone()));
            f.push(("今後の対応", c.follow_ups.clone()));
            f.push(("報告者", format!("{} {}", c.written_by, t(c.written_at))));
            match (&c.signed_off_by, c.signed_off_at) {
                (Some(by), Some(at)) => {
                    f.push(("検収", format!("{by} {}", t(at))));
                    if !c.sign_off_comment.is_empty() {
                        f.push(("検収コメント", c.sign_off_comment.clone()));
                    }
                }
                _ => f.push(("検収", "（未検収）".into())),
            }
        }
    }
    f
}

const SESSION_HEADER: [&str; 12] = [
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
];

fn session_row(s: &ReportSession, tz: Tz) -> Vec<String> {
    let t = |x: DateTime<Utc>| x.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string();
    let rec = &s.record;
    let minutes = rec
        .ended_at
        .map(|e| format!("{:.1}", (e - rec.started_at).num_seconds() as f64 / 60.0))
        .unwrap_or_default();
    vec![
        rec.id.to_string(),
        rec.user.clone(),
        rec.target.clone(),
        rec.protocol.clone(),
        t(rec.started_at),
        rec.ended_at.map(t).unwrap_or_default(),
        minutes,
        rec.status.as_str().to_string(),
        rec.end_reason.clone().unwrap_or_default(),
        rec.killed_by.clone().unwrap_or_default(),
        rec.recording_status.clone().unwrap_or_default(),
        rec.recording_digest.clone().unwrap_or_default(),
    ]
}

/// The documents on file, as rows (kind, holder, validity, file, SHA-256).
pub fn document_rows(docs: &[DocumentRecord]) -> Vec<Vec<String>> {
    docs.iter()
        .map(|d| {
            vec![
                d.kind.label().to_string(),
                d.holder().to_string(),
                d.valid_from.to_string(),
                d.valid_until.to_string(),
                d.file_name.clone(),
                d.sha256.clone(),
            ]
        })
        .collect()
}

pub const DOCUMENT_HEADER: [&str; 6] = [
    "書類",
    "業者・作業者",
    "有効開始",
    "有効終了",
    "ファイル",
    "SHA-256",
];

/// Writes the report as CSV for Excel (see `report::csv`): blocks (the
/// request and its result, its sessions, the operations, the refusals, the
/// documents on file) separated by an empty line, each with its heading
/// row. Times in `tz`.
pub fn csv(report: &WorkReport, tz: Tz) -> Csv {
    let t = |x: DateTime<Utc>| x.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string();
    let r = &report.request;
    let mut c = Csv::new();
    c.row(&[title(report), "sekisho が記録から作成"]);
    for (k, v) in fields(report, tz) {
        c.row(&[k, v.as_str()]);
    }
    for a in &r.approvals {
        c.row(&[&format!("承認 {}", a.step + 1), &a.by, &t(a.at), &a.comment]);
    }
    c.row::<&str>(&[]);
    c.row(&SESSION_HEADER);
    for s in &report.sessions {
        c.row(&session_row(s, tz));
    }
    c.row::<&str>(&[]);
    c.row(&["セッションID", "時刻", "種別", "内容"]);
    for s in &report.sessions {
        let id = s.record.id.to_string();
        if let Some(note) = &s.archive_note {
            c.row(&[id.as_str(), "", "記録を読めません", note.as_str()]);
        }
        for op in &s.operations {
            c.row(&[
                id.as_str(),
                t(op.at).as_str(),
                op.kind.label(),
                op.text.as_str(),
            ]);
        }
    }
    c.row::<&str>(&[]);
    c.row(&["セッションID", "時刻", "拒否した操作", "内容"]);
    for s in &report.sessions {
        let id = s.record.id.to_string();
        for b in &s.blocked {
            let what = b.event.data["channel"].as_str().unwrap_or_default();
            c.row(&[id.as_str(), t(b.at).as_str(), what, b.event.detail.as_str()]);
        }
    }
    c.row::<&str>(&[]);
    c.row(&DOCUMENT_HEADER);
    for row in document_rows(&report.documents) {
        c.row(&row);
    }
    c
}

/// The report as a PDF set in `font`.
pub fn pdf(report: &WorkReport, tz: Tz, font: &ReportFont) -> Result<Vec<u8>, ReportError> {
    let t = |x: DateTime<Utc>| x.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string();
    let r = &report.request;
    let mut d = Document::new(font, &format!("作業報告 {}", r.number))?;
    d.heading(title(report), 16.0);
    d.text("sekisho が記録から作成");
    let fields = fields(report, tz);
    let pairs: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, v.clone())).collect();
    d.fields(&pairs);
    if !r.approvals.is_empty() {
        d.heading("承認", 11.0);
        d.table(
            &["段階", "承認者", "日時", "コメント"],
            r.approvals.iter().map(|a| {
                vec![
                    (a.step + 1).to_string(),
                    a.by.clone(),
                    t(a.at),
                    a.comment.clone(),
                ]
            }),
        );
    }
    d.heading("セッション", 11.0);
    d.table(
        &[
            "セッションID",
            "作業者",
            "対象",
            "方式",
            "開始",
            "終了",
            "分",
            "状態・終了理由",
        ],
        report.sessions.iter().map(|s| {
            let row = session_row(s, tz);
            let status = if row[8].is_empty() {
                row[7].clone()
            } else {
                format!("{} {}", row[7], row[8])
            };
            vec![
                row[0].clone(),
                row[1].clone(),
                row[2].clone(),
                row[3].clone(),
                row[4].clone(),
                row[5].clone(),
                row[6].clone(),
                status,
            ]
        }),
    );
    d.heading("記録（証跡）", 11.0);
    d.table(
        &["セッションID", "記録ダイジェスト（SHA-256）・状態"],
        report.sessions.iter().map(|s| {
            vec![
                s.record.id.to_string(),
                format!(
                    "{} {}",
                    s.record.recording_digest.clone().unwrap_or_default(),
                    s.record.recording_status.clone().unwrap_or_default()
                ),
            ]
        }),
    );
    d.heading("操作（コマンドと入力）", 11.0);
    let mut ops = Vec::new();
    for s in &report.sessions {
        let id: String = s.record.id.to_string().chars().take(8).collect();
        if let Some(note) = &s.archive_note {
            ops.push(vec![
                id.clone(),
                String::new(),
                "記録を読めません".into(),
                note.clone(),
            ]);
        }
        for op in &s.operations {
            ops.push(vec![
                id.clone(),
                t(op.at),
                op.kind.label().into(),
                op.text.clone(),
            ]);
        }
    }
    d.table(&["セッション", "時刻", "種別", "内容"], ops);
    d.heading("拒否した操作", 11.0);
    let mut blocked = Vec::new();
    for s in &report.sessions {
        let id: String = s.record.id.to_string().chars().take(8).collect();
        for b in &s.blocked {
            let what = b.event.data["channel"].as_str().unwrap_or_default();
            blocked.push(vec![
                id.clone(),
                t(b.at),
                what.to_string(),
                b.event.detail.clone(),
            ]);
        }
    }
    d.table(&["セッション", "時刻", "操作", "内容"], blocked);
    d.heading("書類（保守契約書・誓約書）", 11.0);
    d.table(&DOCUMENT_HEADER, document_rows(&report.documents));
    Ok(d.finish()?)
}
