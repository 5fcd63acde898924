//! Work requests in the console: an engineer's approved requests, with
//! their own one-time RDP ticket for a target and the `.rdp` file to open
//! it with; and, for approvers, what waits for their step, to approve.
//!
//! The ticket is shown once, in the answer to the POST that issued it, and
//! never stored readable except sealed for NLA (as `request ticket` does);
//! the `.rdp` file holds no secret. Everything goes through
//! `procedure::*`, which checks who may do what.

use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;

use super::Shared;
use super::page::{Refused, esc, layout, url_enc, when};
use super::signin::Viewer;
use crate::policy::Protocol;
use crate::procedure::state::{RequestState, may_approve_step};
use crate::procedure::{self, Acting, ProcedureError, Urgency};
use crate::store::{
    Role, UserRecord, WorkReportRecord, WorkRequest, WorkRequestFilter, WorkResult,
};

/// The signed-in person as the procedure sees them.
async fn acting(console: &Shared, viewer: &Viewer) -> Result<Acting, Refused> {
    let user = procedure::acting_user(&console.services.store, &viewer.user)
        .await
        .map_err(|_| Refused::Forbidden)?;
    Ok(Acting {
        user,
        via: "web console".into(),
    })
}

/// A refusal of the procedure, shown to the person as it is worded.
fn refused(e: ProcedureError) -> Refused {
    match e {
        ProcedureError::Store(s) => Refused::from(s),
        other => Refused::BadRequest(other.to_string()),
    }
}

/// What waits for `viewer`'s approval step.
async fn waiting_for(console: &Shared, viewer: &Viewer) -> Result<Vec<WorkRequest>, Refused> {
    let acting = acting(console, viewer).await?;
    let actor = procedure::actor_of(&acting.user);
    let policies = console.services.policies();
    let list = console
        .services
        .store
        .work_requests(&WorkRequestFilter {
            states: vec![RequestState::Submitted],
            ..WorkRequestFilter::default()
        })
        .await?;
    Ok(list
        .into_iter()
        .filter(|r| {
            policies.system(&r.system).is_some_and(|s| {
                let route = s.route();
                let next = r.approvals.len();
                may_approve_step(&route, next, &actor)
                    || (r.urgency == Urgency::Emergency
                        && (0..route.steps.len()).any(|st| may_approve_step(&route, st, &actor)))
            }) && r.requester != viewer.user
                && !r.engineers.contains(&viewer.user)
                && !r.approvals.iter().any(|a| a.by == viewer.user)
        })
        .collect())
}

fn summary(r: &WorkRequest, tz: chrono_tz::Tz, lang: super::i18n::Lang) -> String {
    format!(
        r#"<td class="number">{number}</td><td>{rev}</td><td>{system}</td><td>{vendor}</td><td>{targets}</td><td>{from}</td><td>{until}</td><td>{urgency}</td><td>{purpose}</td>"#,
        number = esc(&r.number),
        rev = r.revision,
        system = esc(&r.system),
        vendor = esc(&r.vendor),
        targets = esc(&r.targets.join(", ")),
        from = esc(&when(r.approved_from.unwrap_or(r.window_start), tz)),
        until = esc(&when(r.window_end, tz)),
        urgency = if r.urgency == Urgency::Emergency {
            esc(lang.t("procedure.emergency"))
        } else {
            String::new()
        },
        purpose = esc(&r.purpose),
    )
}

fn header(lang: super::i18n::Lang, extra: &str) -> String {
    let cols = [
        "procedure.number",
        "procedure.revision",
        "procedure.system",
        "procedure.vendor",
        "procedure.targets",
        "procedure.from",
        "procedure.until",
        "procedure.urgency",
        "procedure.purpose",
    ];
    let mut h: String = cols
        .iter()
        .map(|c| format!("<th>{}</th>", esc(lang.t(c))))
        .collect();
    h.push_str(extra);
    format!("<thead><tr>{h}</tr></thead>")
}

/// GET /requests: my approved requests (engineers), what waits for me
/// (approvers).
pub async fn page(State(console): State<Shared>, viewer: Viewer) -> Result<Html<String>, Refused> {
    let lang = viewer.lang;
    let tz = console.services.config.time_zone;
    let now = Utc::now();
    let mut body = String::new();
    if viewer.role == Role::Engineer {
        let mine = console
            .services
            .store
            .open_work_requests_for(&viewer.user, now)
            .await?;
        body.push_str(&new_request_form(&viewer));
        body.push_str(&format!(
            r#"<h2>{}</h2><p class="hint">{}</p>"#,
            esc(lang.t("procedure.mine")),
            esc(lang.t("procedure.ticket_hint"))
        ));
        if mine.is_empty() {
            body.push_str(&format!(
                r#"<p id="no-requests">{}</p>"#,
                esc(lang.t("procedure.none"))
            ));
        } else {
            let mut rows = String::new();
            for r in &mine {
                let mut actions = String::new();
                if r.protocols.contains(&Protocol::Rdp) {
                    for t in &r.targets {
                        actions.push_str(&format!(
                            r#"<form method="post" action="/requests/{n}/ticket" class="inline"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="target" value="{t}"><button type="submit" class="ticket" data-target="{t}">{label} {t}</button></form> <a class="rdp-file" href="/requests/{n}/rdp?target={tq}">{rdp}</a> "#,
                            n = url_enc(&r.number),
                            csrf = esc(&viewer.csrf),
                            t = esc(t),
                            tq = url_enc(t),
                            label = esc(lang.t("procedure.ticket")),
                            rdp = esc(lang.t("procedure.rdp_file")),
                        ));
                    }
                }
                rows.push_str(&format!(
                    "<tr>{}<td>{actions}</td></tr>",
                    summary(r, tz, lang)
                ));
            }
            body.push_str(&format!(
                r#"<table id="my-requests">{}<tbody>{rows}</tbody></table>"#,
                header(lang, "<th></th>")
            ));
        }
    }
    if matches!(viewer.role, Role::Approver | Role::Admin) {
        let waiting = waiting_for(&console, &viewer).await?;
        body.push_str(&format!("<h2>{}</h2>", esc(lang.t("procedure.waiting"))));
        if waiting.is_empty() {
            body.push_str(&format!(
                r#"<p id="nothing-waiting">{}</p>"#,
                esc(lang.t("procedure.none"))
            ));
        } else {
            let mut rows = String::new();
            for r in &waiting {
                rows.push_str(&format!(
                    r#"<tr>{}<td>{step}</td><td><form method="post" action="/requests/{n}/approve" class="inline"><input type="hidden" name="csrf" value="{csrf}"><input name="comment" placeholder="{comment}"><button type="submit" class="approve">{approve}</button></form></td></tr>"#,
                    summary(r, tz, lang),
                    step = r.approvals.len() + 1,
                    n = url_enc(&r.number),
                    csrf = esc(&viewer.csrf),
                    comment = esc(lang.t("procedure.comment")),
                    approve = esc(lang.t("procedure.approve")),
                ));
            }
            body.push_str(&format!(
                r#"<table id="waiting">{}<tbody>{rows}</tbody></table>"#,
                header(
                    lang,
                    &format!("<th>{}</th><th></th>", esc(lang.t("procedure.step")))
                )
            ));
        }
    }
    let over = reports_in_question(&console, &viewer).await?;
    if viewer.role == Role::Engineer {
        body.push_str(&format!(
            "<h2>{}</h2>",
            esc(lang.t("procedure.reports_to_write"))
        ));
        let mut rows = String::new();
        for (r, report) in over.iter().filter(|(r, rep)| {
            (r.requester == viewer.user || r.engineers.contains(&viewer.user))
                && !rep.as_ref().is_some_and(|x| x.is_signed_off())
        }) {
            let mut options = String::new();
            for res in WorkResult::ALL {
                options.push_str(&format!(
                    r#"<option value="{v}"{sel}>{l}</option>"#,
                    v = res.as_str(),
                    sel = if report.as_ref().is_some_and(|x| x.result == res) {
                        " selected"
                    } else {
                        ""
                    },
                    l = esc(res.label())
                ));
            }
            rows.push_str(&format!(
                r#"<tr>{sum}<td><form method="post" action="/requests/{n}/report" class="report"><input type="hidden" name="csrf" value="{csrf}"><select name="result">{options}</select><textarea name="summary" placeholder="{summary}">{sv}</textarea><textarea name="follow_ups" placeholder="{follow}">{fv}</textarea><button type="submit" class="write-report">{save}</button></form> <a href="/requests/{n}/report.pdf">PDF</a> <a href="/requests/{n}/report.csv">CSV</a></td></tr>"#,
                sum = summary(r, tz, lang),
                n = url_enc(&r.number),
                csrf = esc(&viewer.csrf),
                summary = esc(lang.t("procedure.summary")),
                follow = esc(lang.t("procedure.follow_ups")),
                sv = esc(report.as_ref().map(|x| x.summary.as_str()).unwrap_or_default()),
                fv = esc(report.as_ref().map(|x| x.follow_ups.as_str()).unwrap_or_default()),
                save = esc(lang.t("procedure.write_report")),
            ));
        }
        body.push_str(&table_or_none(lang, "reports-to-write", &rows));
    }
    if matches!(viewer.role, Role::Approver | Role::Admin) {
        body.push_str(&format!(
            "<h2>{}</h2>",
            esc(lang.t("procedure.to_sign_off"))
        ));
        let acting = acting(&console, &viewer).await?;
        let actor = procedure::actor_of(&acting.user);
        let policies = console.services.policies();
        let mut rows = String::new();
        for (r, report) in &over {
            let Some(report) = report else { continue };
            let approver = policies.system(&r.system).is_some_and(|s| {
                let route = s.route();
                (0..route.steps.len()).any(|st| may_approve_step(&route, st, &actor))
            });
            if report.is_signed_off()
                || !approver
                || r.requester == viewer.user
                || r.engineers.contains(&viewer.user)
            {
                continue;
            }
            rows.push_str(&format!(
                r#"<tr>{sum}<td>{result}: {text}</td><td><a href="/requests/{n}/report.pdf">PDF</a> <a href="/requests/{n}/report.csv">CSV</a> <form method="post" action="/requests/{n}/sign-off" class="inline"><input type="hidden" name="csrf" value="{csrf}"><input name="comment" placeholder="{comment}"><button type="submit" class="sign-off">{label}</button></form></td></tr>"#,
                sum = summary(r, tz, lang),
                result = esc(report.result.label()),
                text = esc(&report.summary),
                n = url_enc(&r.number),
                csrf = esc(&viewer.csrf),
                comment = esc(lang.t("procedure.comment")),
                label = esc(lang.t("procedure.sign_off")),
            ));
        }
        body.push_str(&table_or_none(lang, "to-sign-off", &rows));
    }
    if body.is_empty() {
        return Err(Refused::Forbidden);
    }
    Ok(layout(lang, &viewer, lang.t("procedure.title"), &body))
}

fn table_or_none(lang: super::i18n::Lang, id: &str, rows: &str) -> String {
    if rows.is_empty() {
        format!(r#"<p id="{id}-none">{}</p>"#, esc(lang.t("procedure.none")))
    } else {
        format!(
            r#"<table id="{id}">{}<tbody>{rows}</tbody></table>"#,
            header(lang, "<th></th>")
        )
    }
}

/// Requests whose work is over (closed, expired or revoked after approval),
/// with their report if written: the latest revision of each.
async fn reports_in_question(
    console: &Shared,
    viewer: &Viewer,
) -> Result<Vec<(WorkRequest, Option<WorkReportRecord>)>, Refused> {
    let store = &console.services.store;
    let list = store
        .work_requests(&WorkRequestFilter {
            states: vec![
                RequestState::Closed,
                RequestState::Expired,
                RequestState::Revoked,
            ],
            engineer: (viewer.role == Role::Engineer).then(|| viewer.user.clone()),
            ..WorkRequestFilter::default()
        })
        .await?;
    let mut out = Vec::new();
    for r in list.into_iter().filter(|r| r.approved_from.is_some()) {
        let report = store.work_report(&r.number).await?;
        out.push((r, report));
    }
    Ok(out)
}

/// Whether `viewer` may read the report of `r`: auditors and admins, the
/// requester and engineers, and the approvers of its system.
fn may_read_report(console: &Shared, viewer: &Viewer, r: &WorkRequest, user: &UserRecord) -> bool {
    if viewer.reads_all() || r.requester == viewer.user || r.engineers.contains(&viewer.user) {
        return true;
    }
    let actor = procedure::actor_of(user);
    console
        .services
        .policies()
        .system(&r.system)
        .is_some_and(|s| {
            let route = s.route();
            (0..route.steps.len()).any(|st| may_approve_step(&route, st, &actor))
        })
}

#[derive(Debug, Deserialize)]
pub struct ReportForm {
    result: String,
    summary: String,
    #[serde(default)]
    follow_ups: String,
}

/// POST /requests/{number}/report: the engineer writes the result.
pub async fn write_report(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(number): UrlPath<String>,
    Form(f): Form<ReportForm>,
) -> Result<Response, Refused> {
    let acting = acting(&console, &viewer).await?;
    let result: WorkResult = f.result.parse().map_err(Refused::BadRequest)?;
    procedure::report::complete(
        &console.services.store,
        &acting,
        &number,
        procedure::report::Completion {
            result,
            summary: f.summary,
            follow_ups: f.follow_ups,
        },
        Utc::now(),
    )
    .await
    .map_err(refused)?;
    Ok(Redirect::to("/requests").into_response())
}

/// POST /requests/{number}/sign-off: an approver signs the report off.
pub async fn sign_off(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(number): UrlPath<String>,
    Form(f): Form<ApproveForm>,
) -> Result<Response, Refused> {
    let acting = acting(&console, &viewer).await?;
    let policies = console.services.policies();
    procedure::report::sign_off(
        &console.services.store,
        &policies,
        &acting,
        &number,
        &f.comment,
        Utc::now(),
    )
    .await
    .map_err(refused)?;
    Ok(Redirect::to("/requests").into_response())
}

/// GET /requests/{number}/report.pdf and .csv: the work report.
pub async fn report_file(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath((number, ext)): UrlPath<(String, String)>,
) -> Result<Response, Refused> {
    let store = &console.services.store;
    let user = procedure::acting_user(store, &viewer.user)
        .await
        .map_err(|_| Refused::Forbidden)?;
    let r = match procedure::report::worked_revision(store, &number).await {
        Ok(r) => r,
        Err(ProcedureError::Store(e)) => return Err(e.into()),
        Err(_) => store
            .work_request(&number, None)
            .await?
            .ok_or(Refused::NotFound)?,
    };
    if !may_read_report(&console, &viewer, &r, &user) {
        return Err(Refused::Forbidden);
    }
    let tz = console.services.config.time_zone;
    let report = crate::report::work::draft(store, &r)
        .await
        .map_err(|e| Refused::Internal(e.to_string()))?;
    let (bytes, mime) = match ext.as_str() {
        "report.pdf" => {
            let font = crate::report::ReportFont::load(&console.services.config.reports.font)
                .map_err(|e| Refused::Internal(e.to_string()))?;
            (
                crate::report::work::pdf(&report, tz, &font)
                    .map_err(|e| Refused::Internal(e.to_string()))?,
                "application/pdf",
            )
        }
        "report.csv" => (
            crate::report::work::csv(&report, tz)
                .encode(crate::report::CsvEncoding::Utf8Bom)
                .map_err(|e| Refused::Internal(e.to_string()))?,
            "text/csv; charset=utf-8",
        ),
        _ => return Err(Refused::NotFound),
    };
    let mut resp = bytes.into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(mime));
    let name: String = number
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let ext = ext.trim_start_matches("report.");
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.{ext}\"")) {
        resp.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
pub struct TicketForm {
    target: String,
}

/// POST /requests/{number}/ticket: the engineer's own one-time RDP ticket,
/// shown once.
pub async fn ticket(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(number): UrlPath<String>,
    Form(f): Form<TicketForm>,
) -> Result<Html<String>, Refused> {
    let lang = viewer.lang;
    let tz = console.services.config.time_zone;
    let acting = acting(&console, &viewer).await?;
    let policies = console.services.policies();
    let t = procedure::ticket::issue_own(
        &console.services.store,
        &policies,
        console.services.secrets.master_key(),
        console.services.config.auth.ticket_lifetime,
        &acting,
        &number,
        &f.target,
        Protocol::Rdp,
        Utc::now(),
    )
    .await
    .map_err(refused)?;
    let body = format!(
        r#"<h2>{title}</h2><p>{shown_once}</p><p><code id="ticket">{ticket}</code></p><dl><dt>{user}</dt><dd id="ticket-user">{login}</dd><dt>{until}</dt><dd>{expires}</dd></dl><p><a id="rdp-file" href="/requests/{n}/rdp?target={tq}">{rdp}</a></p><p><a href="/requests">{back}</a></p>"#,
        title = esc(lang.t("procedure.ticket_title")),
        shown_once = esc(lang.t("procedure.ticket_once")),
        ticket = esc(t.text.as_str()),
        user = esc(lang.t("procedure.ticket_user")),
        login = esc(&format!("{}@{}", t.user, t.target)),
        until = esc(lang.t("procedure.ticket_until")),
        expires = esc(&when(t.expires_at, tz)),
        n = url_enc(&number),
        tq = url_enc(&f.target),
        rdp = esc(lang.t("procedure.rdp_file")),
        back = esc(lang.t("procedure.back")),
    );
    Ok(layout(
        lang,
        &viewer,
        lang.t("procedure.ticket_title"),
        &body,
    ))
}

#[derive(Debug, Deserialize)]
pub struct RdpQuery {
    target: String,
}

/// GET /requests/{number}/rdp?target=T: the Remote Desktop Connection file
/// for the engineer's approved request (no secret in it).
pub async fn rdp_file(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(number): UrlPath<String>,
    Query(q): Query<RdpQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Response, Refused> {
    let open = console
        .services
        .store
        .open_work_requests_for(&viewer.user, Utc::now())
        .await?;
    let Some(r) = open.iter().find(|r| r.number == number) else {
        return Err(Refused::NotFound);
    };
    if !r.targets.contains(&q.target) || !r.protocols.contains(&Protocol::Rdp) {
        return Err(Refused::NotFound);
    }
    // A listener on every address has no one name: the engineer reached
    // the console by this host, so the bastion is there.
    let listen = console.services.config.rdp.listen;
    let host = if listen.ip().is_unspecified() {
        headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| match h.rsplit_once(':') {
                Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
                _ => h,
            })
            .filter(|h| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
            })
            .unwrap_or("bastion")
            .to_string()
    } else {
        listen.ip().to_string()
    };
    let text = procedure::ticket::rdp_file(&host, listen.port(), &viewer.user, &q.target);
    let name: String = q
        .target
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-rdp; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.rdp\"")) {
        resp.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
pub struct ApproveForm {
    #[serde(default)]
    comment: String,
}

/// POST /requests/{number}/approve: approve the step that waits for me.
pub async fn approve(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(number): UrlPath<String>,
    Form(f): Form<ApproveForm>,
) -> Result<Response, Refused> {
    let acting = acting(&console, &viewer).await?;
    let policies = console.services.policies();
    procedure::approve(
        &console.services.store,
        &policies,
        &acting,
        &number,
        &f.comment,
        console.services.config.time_zone,
        Utc::now(),
    )
    .await
    .map_err(refused)?;
    Ok(Redirect::to("/requests").into_response())
}

/// The filing form of an engineer (submitted at once).
fn new_request_form(viewer: &Viewer) -> String {
    let lang = viewer.lang;
    let field = |name: &str, label: &'static str, kind: &str| {
        format!(
            r#"<label>{}<input name="{name}" id="new-{name}" type="{kind}" required></label>"#,
            esc(lang.t(label))
        )
    };
    format!(
        r#"<h2>{title}</h2><form method="post" action="/requests/new" id="new-request"><input type="hidden" name="csrf" value="{csrf}">{targets}<label>{protocols}<select name="protocol" id="new-protocol"><option value="ssh">SSH</option><option value="rdp">RDP</option></select></label>{engineers}{from}{until}{purpose}<label>{work}<textarea name="work" id="new-work" required></textarea></label><label><input type="checkbox" name="emergency" value="1" id="new-emergency">{emergency}</label><button type="submit" id="file-request">{submit}</button></form>"#,
        title = esc(lang.t("procedure.new")),
        csrf = esc(&viewer.csrf),
        targets = field("targets", "procedure.targets", "text"),
        protocols = esc(lang.t("procedure.protocol")),
        engineers = field("engineers", "procedure.engineers", "text"),
        from = field("from", "procedure.from", "datetime-local"),
        until = field("until", "procedure.until", "datetime-local"),
        purpose = field("purpose", "procedure.purpose", "text"),
        work = esc(lang.t("procedure.work")),
        emergency = esc(lang.t("procedure.emergency")),
        submit = esc(lang.t("procedure.submit")),
    )
}

#[derive(Debug, Deserialize)]
pub struct NewRequestForm {
    targets: String,
    protocol: String,
    engineers: String,
    from: String,
    until: String,
    purpose: String,
    work: String,
    #[serde(default)]
    emergency: String,
}

/// A time from the form: `datetime-local` (in the site's zone) or RFC 3339.
fn form_time(s: &str, tz: chrono_tz::Tz) -> Result<chrono::DateTime<Utc>, Refused> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(s.trim(), fmt) {
            return Ok(crate::policy::hours::local_to_utc(tz, n));
        }
    }
    Err(Refused::BadRequest(format!(
        "{s:?} is not a time (YYYY-MM-DD HH:MM)"
    )))
}

fn list(s: &str) -> Vec<String> {
    s.split([',', ' ', '、'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// POST /requests/new: an engineer files a request and submits it.
pub async fn file(
    State(console): State<Shared>,
    viewer: Viewer,
    Form(f): Form<NewRequestForm>,
) -> Result<Response, Refused> {
    let acting = acting(&console, &viewer).await?;
    let tz = console.services.config.time_zone;
    let protocol: Protocol = f.protocol.parse().map_err(Refused::BadRequest)?;
    let draft = procedure::Draft {
        vendor: None,
        engineers: list(&f.engineers),
        targets: list(&f.targets),
        protocols: vec![protocol],
        purpose: f.purpose,
        work: f.work,
        window_start: form_time(&f.from, tz)?,
        window_end: form_time(&f.until, tz)?,
        urgency: if f.emergency.is_empty() {
            Urgency::Normal
        } else {
            Urgency::Emergency
        },
    };
    let policies = console.services.policies();
    let now = Utc::now();
    let r = procedure::file(&console.services.store, &policies, &acting, draft, now)
        .await
        .map_err(refused)?;
    procedure::submit(&console.services.store, &policies, &acting, &r.number, now)
        .await
        .map_err(refused)?;
    Ok(Redirect::to("/requests").into_response())
}
