//! The audit log page, with the filters of `sekisho audit`, and its CSV
//! download (UTF-8 with a byte-order mark, so Excel opens Japanese text
//! correctly). Auditors and admins only.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::Shared;
use super::page::{Refused, esc, layout, url_enc, when};
use super::signin::Viewer;
use crate::store::{AuditFilter, AuditKind, AuditRecord};

/// Events a page shows when no limit is given.
const DEFAULT_LIMIT: u32 = 200;
/// The most a page or the API returns at once; the CSV has no limit.
const MAX_LIMIT: u32 = 10_000;

/// The CLI's filters (`sekisho audit --since --until --user --target
/// --kind --session --limit`) as query parameters.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub target: String,
    /// Comma-separated kinds, e.g. `signin_failure,deny`.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub session: String,
    #[serde(default)]
    pub limit: Option<u32>,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl AuditQuery {
    /// The store filter; `limit` None means everything (the CSV).
    pub fn filter(
        &self,
        console: &super::Console,
        limit: Option<u32>,
    ) -> Result<AuditFilter, Refused> {
        let tz = console.services.config.time_zone;
        let now = Utc::now();
        let when = |v: &str, name: &str| {
            some(v)
                .map(|s| crate::config::parse_when(&s, tz, now))
                .transpose()
                .map_err(|e| Refused::BadRequest(format!("{name}: {e}")))
        };
        let kinds = self
            .kind
            .split(',')
            .filter(|k| !k.trim().is_empty())
            .map(|k| k.parse::<AuditKind>().map_err(Refused::BadRequest))
            .collect::<Result<Vec<_>, _>>()?;
        let session = some(&self.session)
            .map(|s| uuid::Uuid::parse_str(&s))
            .transpose()
            .map_err(|_| {
                Refused::BadRequest(format!("session: {:?} is not a session id", self.session))
            })?;
        Ok(AuditFilter {
            since: when(&self.since, "since")?,
            until: when(&self.until, "until")?,
            user: some(&self.user),
            target: some(&self.target),
            kinds,
            session,
            limit,
        })
    }

    fn page_limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }

    fn query_string(&self) -> String {
        let mut q = Vec::new();
        for (k, v) in [
            ("since", &self.since),
            ("until", &self.until),
            ("user", &self.user),
            ("target", &self.target),
            ("kind", &self.kind),
            ("session", &self.session),
        ] {
            if !v.trim().is_empty() {
                q.push(format!("{k}={}", url_enc(v.trim())));
            }
        }
        q.join("&")
    }
}

/// The events `viewer` asked for, newest first, at most `limit`.
pub(crate) async fn events(
    console: &super::Console,
    viewer: &Viewer,
    q: &AuditQuery,
    limit: Option<u32>,
) -> Result<Vec<AuditRecord>, Refused> {
    if !viewer.may_read_audit() {
        return Err(Refused::Forbidden);
    }
    let filter = q.filter(console, limit)?;
    let mut records = console.services.store.audit_query(&filter).await?;
    records.reverse();
    Ok(records)
}

/// GET /audit
pub async fn page(
    State(console): State<Shared>,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
) -> Result<Html<String>, Refused> {
    let lang = viewer.lang;
    let tz = console.services.config.time_zone;
    let limit = q.page_limit();
    let records = events(&console, &viewer, &q, Some(limit)).await?;
    let input = |name: &str, label: &'static str, value: &str| {
        format!(
            r#"<label>{}<input name="{name}" id="a-{name}" value="{}"></label>"#,
            esc(lang.t(label)),
            esc(value)
        )
    };
    let form = format!(
        r#"<form method="get" action="/audit" class="filters">{}{}{}{}{}{}{}<button type="submit" id="a-submit">{}</button></form><p class="hint">{}</p>"#,
        input("since", "filter.from", &q.since),
        input("until", "filter.to", &q.until),
        input("user", "session.person", &q.user),
        input("target", "session.target", &q.target),
        input("kind", "audit.kind", &q.kind),
        input("session", "audit.session", &q.session),
        input("limit", "audit.limit", &limit.to_string()),
        esc(lang.t("filter.search")),
        esc(lang.t("audit.hint")),
    );
    let mut table = format!(
        r#"<table class="audit" id="audit"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>"#,
        esc(lang.t("audit.at")),
        esc(lang.t("audit.kind")),
        esc(lang.t("session.person")),
        esc(lang.t("session.target")),
        esc(lang.t("session.source")),
        esc(lang.t("audit.session")),
        esc(lang.t("audit.detail")),
    );
    for r in &records {
        let e = &r.event;
        let session = e
            .session
            .map(|s| format!(r#"<a href="/sessions/{s}">{}</a>"#, &s.to_string()[..8]))
            .unwrap_or_default();
        table.push_str(&format!(
            r#"<tr class="kind-{kind}"><td>{at}</td><td>{kind}</td><td>{user}</td><td>{target}</td><td>{source}</td><td>{session}</td><td>{detail}</td></tr>"#,
            at = esc(&when(r.at, tz)),
            kind = e.kind.as_str(),
            user = esc(e.user.as_deref().unwrap_or("")),
            target = esc(e.target.as_deref().unwrap_or("")),
            source = e.source.map(|s| s.to_string()).unwrap_or_default(),
            detail = esc(&e.detail),
        ));
    }
    table.push_str("</tbody></table>");
    let body = format!(
        r#"<h1>{}</h1>{form}<p><a href="/audit.csv?{}" id="csv">{}</a></p>{table}"#,
        esc(lang.t("audit.title")),
        esc(&q.query_string()),
        esc(lang.t("audit.csv")),
    );
    Ok(layout(lang, &viewer, lang.t("audit.title"), &body))
}

/// One CSV field: quoted when needed, and a leading `= + - @` neutralised
/// so a spreadsheet does not run it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
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

/// The events as CSV: a BOM, a header line, one line per event (oldest
/// first, as the CLI prints them), CRLF line ends.
pub fn to_csv(records: &[AuditRecord], tz: chrono_tz::Tz) -> Vec<u8> {
    let mut out = String::from("\u{feff}");
    out.push_str("id,time,kind,user,target,session,source,protocol,detail,data\r\n");
    for r in records {
        let e = &r.event;
        let fields = [
            r.id.to_string(),
            when(r.at, tz),
            e.kind.as_str().to_string(),
            e.user.clone().unwrap_or_default(),
            e.target.clone().unwrap_or_default(),
            e.session.map(|s| s.to_string()).unwrap_or_default(),
            e.source.map(|s| s.to_string()).unwrap_or_default(),
            e.protocol.clone().unwrap_or_default(),
            e.detail.clone(),
            e.data.to_string(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// GET /audit.csv: every matching event (the page's limit does not apply
/// unless one is given).
pub async fn csv(
    State(console): State<Shared>,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
) -> Result<Response, Refused> {
    let mut records = events(&console, &viewer, &q, q.limit).await?;
    records.reverse();
    let tz = console.services.config.time_zone;
    let mut resp = Body::from(to_csv(&records, tz)).into_response();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    let name = format!(
        "sekisho-audit-{}.csv",
        Utc::now().with_timezone(&tz).format("%Y%m%d-%H%M%S")
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        resp.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AuditEvent;
    use chrono::TimeZone as _;

    #[test]
    fn csv_has_bom_quotes_and_no_formulas() {
        let at = Utc
            .with_ymd_and_hms(2026, 4, 1, 0, 0, 0)
            .single()
            .expect("time");
        let r = AuditRecord {
            id: 7,
            at,
            event: AuditEvent::new(AuditKind::Deny, "田中, \"outside\" hours\n次")
                .user("tanaka")
                .target("=cmd"),
        };
        let csv = to_csv(&[r], chrono_tz::Asia::Tokyo);
        assert!(csv.starts_with(&[0xef, 0xbb, 0xbf]), "BOM");
        let text = String::from_utf8(csv).expect("utf-8");
        let mut lines = text.trim_start_matches('\u{feff}').split("\r\n");
        assert_eq!(
            lines.next(),
            Some("id,time,kind,user,target,session,source,protocol,detail,data")
        );
        let rest: Vec<&str> = lines.collect();
        let row = rest.join("\r\n");
        assert!(
            row.starts_with("7,2026-04-01 09:00:00 JST,deny,tanaka,'=cmd,,,,\"田中, \"\"outside\"\" hours\n次\",{}"),
            "{row}"
        );
    }
}
