//! The monthly usage report (月次利用報告) per vendor and per system,
//! computed from the store, never typed: the work requests of the month
//! (submitted, approved, rejected, emergency), the sessions (how many, total
//! and longest time, how many started outside the normal hours, how many
//! were stopped), the refused connections and why, and the sessions that
//! ran without an approved request where the system requires one (expected
//! to be 0: anything else is a finding). It lists the requests and sessions
//! it counted and the documents on file of the vendors in it.
//!
//! The month is a calendar month in the site's time zone. A request belongs
//! to the month its window starts in; a session, an audit event to the month
//! it started / happened in.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

use super::ReportError;
use super::csv::Csv;
use super::pdf::{Document, ReportFont};
use super::work::{DOCUMENT_HEADER, document_rows};
use crate::policy::PolicySet;
use crate::policy::hours::{Hours, HoursCheck, local_to_utc};
use crate::procedure::Urgency;
use crate::procedure::state::RequestState;
use crate::store::{
    AuditFilter, AuditKind, DocumentFilter, DocumentRecord, SessionFilter, SessionRecord,
    SessionStatus, Store, WorkRequest, WorkRequestFilter,
};

/// A calendar month, `2026-11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl std::str::FromStr for Month {
    type Err = String;
    fn from_str(s: &str) -> Result<Month, String> {
        let bad = || format!("{s:?} is not a month: write YYYY-MM, e.g. 2026-11");
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        if y.len() != 4 || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Month {
    /// The first instant of the month and of the next, in `tz`.
    pub fn bounds(self, tz: Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let first = NaiveDate::from_ymd_opt(self.year, self.month, 1)?;
        let next = if self.month == 12 {
            NaiveDate::from_ymd_opt(self.year + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(self.year, self.month + 1, 1)?
        };
        Some((
            local_to_utc(tz, first.and_hms_opt(0, 0, 0)?),
            local_to_utc(tz, next.and_hms_opt(0, 0, 0)?),
        ))
    }
}

/// What the report is asked for.
#[derive(Debug, Clone)]
pub struct Query {
    pub month: Month,
    pub vendor: Option<String>,
    pub system: Option<String>,
}

/// The counts of one vendor on one system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub vendor: String,
    pub system: String,
    pub requests_submitted: u32,
    pub requests_approved: u32,
    pub requests_rejected: u32,
    pub requests_emergency: u32,
    pub sessions: u32,
    pub total: TimeDelta,
    pub longest: TimeDelta,
    pub outside_hours: u32,
    pub killed: u32,
    /// Sessions on a system that requires approval, run under no request.
    pub without_request: u32,
    pub refused: u32,
}

/// Refused connections of one vendor on one system for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusals {
    pub vendor: String,
    pub system: String,
    /// The rule (`no_approved_request`, `outside_hours`, …) or
    /// `signin_failure`.
    pub rule: String,
    pub count: u32,
}

/// One counted session.
#[derive(Debug, Clone)]
pub struct CountedSession {
    pub record: SessionRecord,
    pub system: String,
    pub outside_hours: bool,
    pub without_request: bool,
}

/// The computed report.
#[derive(Debug, Clone)]
pub struct MonthlyReport {
    pub query: Query,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub normal_hours: String,
    pub usage: Vec<Usage>,
    pub refusals: Vec<Refusals>,
    pub requests: Vec<WorkRequest>,
    pub sessions: Vec<CountedSession>,
    pub documents: Vec<DocumentRecord>,
}

impl MonthlyReport {
    /// The sum over all rows.
    pub fn total(&self) -> Usage {
        let mut t = Usage {
            vendor: "合計".into(),
            ..Usage::default()
        };
        for u in &self.usage {
            t.requests_submitted += u.requests_submitted;
            t.requests_approved += u.requests_approved;
            t.requests_rejected += u.requests_rejected;
            t.requests_emergency += u.requests_emergency;
            t.sessions += u.sessions;
            t.total += u.total;
            t.longest = t.longest.max(u.longest);
            t.outside_hours += u.outside_hours;
            t.killed += u.killed;
            t.without_request += u.without_request;
            t.refused += u.refused;
        }
        t
    }
}

const UNKNOWN: &str = "(不明)";

/// Computes the report.
pub async fn compute(
    store: &Store,
    policies: &PolicySet,
    tz: Tz,
    normal_hours: &Hours,
    q: Query,
) -> Result<MonthlyReport, ReportError> {
    let Some((from, until)) = q.month.bounds(tz) else {
        return Err(ReportError::Invalid(format!("no month {}", q.month)));
    };
    let system_of = |target: &str| {
        policies
            .target(target)
            .map(|t| t.system.clone())
            .unwrap_or_else(|| UNKNOWN.to_string())
    };
    let wanted = |vendor: &str, system: &str| {
        q.vendor.as_deref().is_none_or(|v| v == vendor)
            && q.system.as_deref().is_none_or(|s| s == system)
    };
    let mut usage: BTreeMap<(String, String), Usage> = BTreeMap::new();

    // Requests: the revision in force of each number (the latest that is
    // not a draft) whose window starts in the month.
    let all = store
        .work_requests(&WorkRequestFilter {
            all_revisions: true,
            window_ends_after: Some(from),
            ..WorkRequestFilter::default()
        })
        .await?;
    let mut latest: BTreeMap<String, WorkRequest> = BTreeMap::new();
    for r in all {
        if r.state == RequestState::Draft
            || r.window_start < from
            || r.window_start >= until
            || !wanted(&r.vendor, &r.system)
        {
            continue;
        }
        match latest.get(&r.number) {
            Some(o) if o.revision > r.revision => {}
            _ => {
                latest.insert(r.number.clone(), r);
            }
        }
    }
    let requests: Vec<WorkRequest> = latest.into_values().collect();
    for r in &requests {
        let u = row(&mut usage, &r.vendor, &r.system);
        u.requests_submitted += 1;
        if r.approved_from.is_some() {
            u.requests_approved += 1;
        }
        if r.state == RequestState::Rejected {
            u.requests_rejected += 1;
        }
        if r.urgency == Urgency::Emergency {
            u.requests_emergency += 1;
        }
    }

    // Sessions started in the month.
    let mut sessions = Vec::new();
    for s in store
        .sessions(&SessionFilter {
            since: Some(from),
            until: Some(until),
            ..SessionFilter::default()
        })
        .await?
    {
        let system = system_of(&s.target);
        let vendor = s.vendor.clone().unwrap_or_else(|| UNKNOWN.to_string());
        if !wanted(&vendor, &system) {
            continue;
        }
        let outside = matches!(normal_hours.check(tz, s.started_at), HoursCheck::Outside(_));
        let required = policies
            .system(&system)
            .is_some_and(|sys| sys.requires_approval());
        let without_request = required && s.work_request.is_none();
        let u = row(&mut usage, &vendor, &system);
        u.sessions += 1;
        if let Some(end) = s.ended_at {
            let d = end - s.started_at;
            u.total += d;
            u.longest = u.longest.max(d);
        }
        if outside {
            u.outside_hours += 1;
        }
        if s.status == SessionStatus::Killed {
            u.killed += 1;
        }
        if without_request {
            u.without_request += 1;
        }
        sessions.push(CountedSession {
            record: s,
            system,
            outside_hours: outside,
            without_request,
        });
    }

    // Refused connections: policy denials and failed sign-ins.
    let mut vendors: HashMap<String, String> = HashMap::new();
    let mut refusals: BTreeMap<(String, String, String), u32> = BTreeMap::new();
    for e in store
        .audit_query(&AuditFilter {
            since: Some(from),
            until: Some(until),
            kinds: vec![AuditKind::Deny, AuditKind::SigninFailure],
            ..AuditFilter::default()
        })
        .await?
    {
        let ev = &e.event;
        let vendor = match &ev.user {
            None => UNKNOWN.to_string(),
            Some(name) => match vendors.get(name) {
                Some(v) => v.clone(),
                None => {
                    let v = store
                        .user(name)
                        .await?
                        .and_then(|u| u.vendor)
                        .unwrap_or_else(|| UNKNOWN.to_string());
                    vendors.insert(name.clone(), v.clone());
                    v
                }
            },
        };
        let system = ev
            .target
            .as_deref()
            .map(system_of)
            .unwrap_or_else(|| UNKNOWN.to_string());
        if !wanted(&vendor, &system) {
            continue;
        }
        let rule = match ev.kind {
            AuditKind::SigninFailure => "signin_failure".to_string(),
            _ => ev.data["rule"].as_str().unwrap_or("deny").to_string(),
        };
        row(&mut usage, &vendor, &system).refused += 1;
        *refusals.entry((vendor, system, rule)).or_insert(0) += 1;
    }

    // The documents on file of the vendors in the report and their engineers.
    let mut documents = Vec::new();
    let mut seen: Vec<String> = usage.keys().map(|(v, _)| v.clone()).collect();
    if let Some(v) = &q.vendor
        && !seen.contains(v)
    {
        seen.push(v.clone());
    }
    seen.sort();
    seen.dedup();
    for v in seen.iter().filter(|v| v.as_str() != UNKNOWN) {
        documents.extend(
            store
                .documents(&DocumentFilter {
                    vendor: Some(v.clone()),
                    ..DocumentFilter::default()
                })
                .await?,
        );
    }

    Ok(MonthlyReport {
        query: q,
        from,
        until,
        normal_hours: normal_hours.to_string(),
        usage: usage.into_values().collect(),
        refusals: refusals
            .into_iter()
            .map(|((vendor, system, rule), count)| Refusals {
                vendor,
                system,
                rule,
                count,
            })
            .collect(),
        requests,
        sessions,
        documents,
    })
}

/// The usage row of `vendor` on `system`, made on first use.
fn row<'a>(
    usage: &'a mut BTreeMap<(String, String), Usage>,
    vendor: &str,
    system: &str,
) -> &'a mut Usage {
    usage
        .entry((vendor.to_string(), system.to_string()))
        .or_insert_with(|| Usage {
            vendor: vendor.to_string(),
            system: system.to_string(),
            ..Usage::default()
        })
}

/// `h:mm` (hours may exceed 24).
pub fn hours_minutes(d: TimeDelta) -> String {
    let m = d.num_minutes().max(0);
    format!("{}:{:02}", m / 60, m % 60)
}

const USAGE_HEADER: [&str; 13] = [
    "業者",
    "システム",
    "申請",
    "承認",
    "却下",
    "緊急",
    "セッション",
    "合計時間（時:分）",
    "最長時間（時:分）",
    "時間外",
    "強制終了",
    "拒否された接続",
    "承認なしのセッション",
];

fn usage_row(u: &Usage) -> Vec<String> {
    vec![
        u.vendor.clone(),
        u.system.clone(),
        u.requests_submitted.to_string(),
        u.requests_approved.to_string(),
        u.requests_rejected.to_string(),
        u.requests_emergency.to_string(),
        u.sessions.to_string(),
        hours_minutes(u.total),
        hours_minutes(u.longest),
        u.outside_hours.to_string(),
        u.killed.to_string(),
        u.refused.to_string(),
        u.without_request.to_string(),
    ]
}

fn title(r: &MonthlyReport) -> String {
    format!(
        "月次利用報告 {}年{}月",
        r.query.month.year, r.query.month.month
    )
}

fn scope(r: &MonthlyReport) -> Vec<(&'static str, String)> {
    vec![
        ("対象月", r.query.month.to_string()),
        (
            "業者",
            r.query.vendor.clone().unwrap_or_else(|| "すべて".into()),
        ),
        (
            "システム",
            r.query.system.clone().unwrap_or_else(|| "すべて".into()),
        ),
        ("通常の作業時間", r.normal_hours.clone()),
    ]
}

fn request_row(r: &WorkRequest, tz: Tz) -> Vec<String> {
    let t = |x: DateTime<Utc>| x.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
    vec![
        r.number.clone(),
        r.revision.to_string(),
        r.vendor.clone(),
        r.system.clone(),
        r.state.as_str().to_string(),
        if r.urgency == Urgency::Emergency {
            "緊急".into()
        } else {
            "通常".into()
        },
        t(r.window_start),
        t(r.window_end),
        r.engineers.join(" "),
        r.purpose.clone(),
    ]
}

const REQUEST_HEADER: [&str; 10] = [
    "申請番号",
    "版",
    "業者",
    "システム",
    "状態",
    "緊急",
    "開始",
    "終了",
    "作業者",
    "目的",
];

fn session_row(s: &CountedSession, tz: Tz) -> Vec<String> {
    let t = |x: DateTime<Utc>| x.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
    let r = &s.record;
    vec![
        r.id.to_string(),
        r.vendor.clone().unwrap_or_default(),
        s.system.clone(),
        r.user.clone(),
        r.target.clone(),
        r.protocol.clone(),
        t(r.started_at),
        r.ended_at
            .map(|e| hours_minutes(e - r.started_at))
            .unwrap_or_default(),
        r.status.as_str().to_string(),
        r.work_request.clone().unwrap_or_default(),
        if s.outside_hours { "時間外" } else { "" }.to_string(),
        if s.without_request {
            "承認なし"
        } else {
            ""
        }
        .to_string(),
    ]
}

const SESSION_HEADER: [&str; 12] = [
    "セッションID",
    "業者",
    "システム",
    "作業者",
    "対象",
    "方式",
    "開始",
    "時間（時:分）",
    "状態",
    "申請番号",
    "時間外",
    "承認なし",
];

/// The report as CSV blocks: scope, usage per vendor and system with a
/// total row, refusals, requests, sessions, documents.
pub fn csv(r: &MonthlyReport, tz: Tz) -> Csv {
    let mut c = Csv::new();
    c.row(&[title(r).as_str(), "sekisho が記録から作成"]);
    for (k, v) in scope(r) {
        c.row(&[k, v.as_str()]);
    }
    c.row::<&str>(&[]);
    c.row(&USAGE_HEADER);
    for u in &r.usage {
        c.row(&usage_row(u));
    }
    c.row(&usage_row(&r.total()));
    c.row::<&str>(&[]);
    c.row(&["業者", "システム", "拒否の理由", "件数"]);
    for f in &r.refusals {
        c.row(&[&f.vendor, &f.system, &f.rule, &f.count.to_string()]);
    }
    c.row::<&str>(&[]);
    c.row(&REQUEST_HEADER);
    for q in &r.requests {
        c.row(&request_row(q, tz));
    }
    c.row::<&str>(&[]);
    c.row(&SESSION_HEADER);
    for s in &r.sessions {
        c.row(&session_row(s, tz));
    }
    c.row::<&str>(&[]);
    c.row(&DOCUMENT_HEADER);
    for d in document_rows(&r.documents) {
        c.row(&d);
    }
    c
}

/// The report as a PDF set in `font`.
pub fn pdf(r: &MonthlyReport, tz: Tz, font: &ReportFont) -> Result<Vec<u8>, ReportError> {
    let mut d = Document::new(font, &title(r))?;
    d.heading(&title(r), 16.0);
    d.text("sekisho が記録から作成");
    d.fields(&scope(r));
    d.heading("利用状況（業者・システム別）", 11.0);
    let mut rows: Vec<Vec<String>> = r.usage.iter().map(usage_row).collect();
    rows.push(usage_row(&r.total()));
    d.table(&USAGE_HEADER, rows);
    d.heading("拒否された接続とその理由", 11.0);
    d.table(
        &["業者", "システム", "拒否の理由", "件数"],
        r.refusals.iter().map(|f| {
            vec![
                f.vendor.clone(),
                f.system.clone(),
                f.rule.clone(),
                f.count.to_string(),
            ]
        }),
    );
    d.heading("作業申請", 11.0);
    d.table(
        &REQUEST_HEADER,
        r.requests.iter().map(|q| request_row(q, tz)),
    );
    d.heading("セッション", 11.0);
    d.table(
        &SESSION_HEADER,
        r.sessions.iter().map(|s| session_row(s, tz)),
    );
    d.heading("書類（保守契約書・誓約書）", 11.0);
    d.table(&DOCUMENT_HEADER, document_rows(&r.documents));
    Ok(d.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_and_bound_in_the_site_zone() {
        let m: Month = "2026-11".parse().unwrap();
        assert_eq!(m.to_string(), "2026-11");
        let (from, until) = m.bounds(chrono_tz::Asia::Tokyo).unwrap();
        assert_eq!(from.to_rfc3339(), "2026-10-31T15:00:00+00:00");
        assert_eq!(until.to_rfc3339(), "2026-11-30T15:00:00+00:00");
        let (_, until) = "2026-12"
            .parse::<Month>()
            .unwrap()
            .bounds(chrono_tz::Asia::Tokyo)
            .unwrap();
        assert_eq!(until.to_rfc3339(), "2026-12-31T15:00:00+00:00");
        for bad in ["2026-13", "2026", "26-11", "2026-00", "abcd-ef"] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_print_as_hours_and_minutes() {
        assert_eq!(hours_minutes(TimeDelta::minutes(0)), "0:00");
        assert_eq!(hours_minutes(TimeDelta::minutes(75)), "1:15");
        assert_eq!(hours_minutes(TimeDelta::hours(30)), "30:00");
    }

    #[test]
    fn usage_columns_hold_numbers_excel_reads_and_durations_name_their_unit() {
        // Excel reads a cell as a number when it is digits, and as a time
        // (summable) when it is h:mm; the header says which unit it is.
        let u = Usage {
            vendor: "acme".into(),
            system: "lab".into(),
            requests_submitted: 3,
            sessions: 2,
            total: TimeDelta::minutes(135),
            longest: TimeDelta::minutes(90),
            ..Usage::default()
        };
        let row = usage_row(&u);
        assert_eq!(row.len(), USAGE_HEADER.len());
        for (h, cell) in USAGE_HEADER.iter().zip(&row).skip(2) {
            if h.contains("時間") && !h.contains("時間外") {
                assert!(h.ends_with("（時:分）"), "{h}");
                let (hours, minutes) = cell.split_once(':').expect("h:mm");
                assert!(
                    hours.parse::<u32>().is_ok() && minutes.len() == 2,
                    "{h}: {cell}"
                );
            } else {
                assert!(cell.parse::<u32>().is_ok(), "{h}: {cell}");
            }
        }
        assert_eq!(row[7], "2:15");
        let i = SESSION_HEADER
            .iter()
            .position(|h| h.starts_with("時間"))
            .expect("a duration column");
        assert_eq!(SESSION_HEADER[i], "時間（時:分）");
    }
}
