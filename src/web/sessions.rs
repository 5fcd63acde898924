//! The sessions list (filters, paging, live sessions marked), one session
//! (who, where from, the decision, the recording's verify verdict, the
//! keystroke log, downloads) and the emergency stop.
//!
//! Engineers see only their own sessions: the list is filtered to them and
//! any other session answers 403, its recording included.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Shared;
use super::i18n::Lang;
use super::page::{Refused, esc, layout, url_enc, when};
use super::signin::{Viewer, fresh_code};
use crate::recording::{Protocol, Reader, Verdict};
use crate::store::{
    AuditEvent, AuditFilter, AuditKind, AuditRecord, SessionFilter, SessionRecord, SessionStatus,
};

/// Sessions per page.
pub const PAGE_SIZE: u32 = 50;

/// The filters of the list, as query parameters (pages and API alike).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct SessionQuery {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub vendor: String,
    #[serde(default)]
    pub system: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub protocol: String,
    /// live, ended, killed, expired, failed, abnormal
    #[serde(default)]
    pub state: String,
    /// Started at or after (a date, a time, RFC 3339, or a duration ago).
    #[serde(default)]
    pub from: String,
    /// Started before (same forms).
    #[serde(default)]
    pub to: String,
    /// 1-based.
    #[serde(default)]
    pub page: Option<u32>,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl SessionQuery {
    pub fn page(&self) -> u32 {
        self.page.unwrap_or(1).max(1)
    }

    /// The store filter for this query as `viewer` may see it.
    pub fn filter(
        &self,
        console: &super::Console,
        viewer: &Viewer,
    ) -> Result<SessionFilter, Refused> {
        let cfg = &console.services.config;
        let now = Utc::now();
        let when = |v: &str, name: &str| {
            some(v)
                .map(|s| crate::config::parse_when(&s, cfg.time_zone, now))
                .transpose()
                .map_err(|e| Refused::BadRequest(format!("{name}: {e}")))
        };
        let status = some(&self.state)
            .map(|s| s.parse::<SessionStatus>())
            .transpose()
            .map_err(Refused::BadRequest)?;
        let protocol = some(&self.protocol).map(|p| p.to_ascii_lowercase());
        if let Some(p) = &protocol
            && p != "ssh"
            && p != "rdp"
        {
            return Err(Refused::BadRequest(format!(
                "unknown protocol {p:?} (ssh, rdp)"
            )));
        }
        let targets = some(&self.system).map(|system| {
            console
                .services
                .policies()
                .targets()
                .filter(|t| t.system == system)
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
        });
        let user = if !viewer.reads_all() {
            // Engineers (anyone but auditors and admins) see their own
            // sessions whatever they ask for.
            Some(viewer.user.clone())
        } else {
            some(&self.user)
        };
        Ok(SessionFilter {
            since: when(&self.from, "from")?,
            until: when(&self.to, "to")?,
            user,
            vendor: some(&self.vendor),
            target: some(&self.target),
            status,
            node: None,
            parent: None,
            protocol,
            targets,
            newest_first: true,
            limit: Some(PAGE_SIZE),
            offset: (self.page() - 1).saturating_mul(PAGE_SIZE),
        })
    }

    /// This query as a query string, on another page.
    fn with_page(&self, page: u32) -> String {
        let mut q = String::new();
        for (k, v) in [
            ("user", &self.user),
            ("vendor", &self.vendor),
            ("system", &self.system),
            ("target", &self.target),
            ("protocol", &self.protocol),
            ("state", &self.state),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.trim().is_empty() {
                q.push_str(&format!("{k}={}&", url_enc(v.trim())));
            }
        }
        format!("?{q}page={page}")
    }
}

/// The system a target belongs to, by the policies in force.
fn system_of(console: &super::Console, target: &str) -> Option<String> {
    console
        .services
        .policies()
        .targets()
        .find(|t| t.name == target)
        .map(|t| t.system.clone())
}

fn state_text(lang: Lang, s: SessionStatus) -> &'static str {
    match s {
        SessionStatus::Live => lang.t("state.live"),
        SessionStatus::Ended => lang.t("state.ended"),
        SessionStatus::Killed => lang.t("state.killed"),
        SessionStatus::Expired => lang.t("state.expired"),
        SessionStatus::Failed => lang.t("state.failed"),
        SessionStatus::Abnormal => lang.t("state.abnormal"),
        SessionStatus::TargetLost => lang.t("state.target_lost"),
    }
}

fn state_badge(lang: Lang, s: SessionStatus) -> String {
    format!(
        r#"<span class="state state-{}">{}</span>"#,
        s.as_str(),
        esc(state_text(lang, s))
    )
}

pub async fn home() -> Redirect {
    Redirect::to("/sessions")
}

/// GET /sessions
pub async fn list(
    State(console): State<Shared>,
    viewer: Viewer,
    Query(q): Query<SessionQuery>,
) -> Result<Html<String>, Refused> {
    let lang = viewer.lang;
    let tz = console.services.config.time_zone;
    let filter = q.filter(&console, &viewer)?;
    let store = &console.services.store;
    let total = store.count_sessions(&filter).await?;
    let rows = store.sessions(&filter).await?;

    let input = |name: &str, label: &'static str, value: &str, disabled: bool| {
        format!(
            r#"<label>{}<input name="{name}" id="f-{name}" value="{}"{}></label>"#,
            esc(lang.t(label)),
            esc(value),
            if disabled { " disabled" } else { "" }
        )
    };
    let mut states = format!(r#"<option value="">{}</option>"#, esc(lang.t("filter.any")));
    for s in SessionStatus::ALL {
        states.push_str(&format!(
            r#"<option value="{v}"{sel}>{t}</option>"#,
            v = s.as_str(),
            sel = if q.state == s.as_str() {
                " selected"
            } else {
                ""
            },
            t = esc(state_text(lang, s))
        ));
    }
    let mut protocols = format!(r#"<option value="">{}</option>"#, esc(lang.t("filter.any")));
    for p in ["ssh", "rdp"] {
        protocols.push_str(&format!(
            r#"<option value="{p}"{}>{}</option>"#,
            if q.protocol == p { " selected" } else { "" },
            p.to_uppercase()
        ));
    }
    let engineer = !viewer.reads_all();
    let form = format!(
        r#"<form method="get" action="/sessions" class="filters">{user}{vendor}{system}{target}<label>{protocol_l}<select name="protocol" id="f-protocol">{protocols}</select></label><label>{state_l}<select name="state" id="f-state">{states}</select></label>{from}{to}<button type="submit" id="f-submit">{search}</button></form><p class="hint">{hint}</p>"#,
        user = input(
            "user",
            "session.person",
            if engineer { &viewer.user } else { &q.user },
            engineer
        ),
        vendor = input("vendor", "session.vendor", &q.vendor, false),
        system = input("system", "session.system", &q.system, false),
        target = input("target", "session.target", &q.target, false),
        protocol_l = esc(lang.t("session.protocol")),
        state_l = esc(lang.t("session.state")),
        from = input("from", "filter.from", &q.from, false),
        to = input("to", "filter.to", &q.to, false),
        search = esc(lang.t("filter.search")),
        hint = esc(lang.t("filter.time_hint")),
    );

    let mut table = format!(
        r#"<table class="sessions" id="sessions"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>"#,
        esc(lang.t("session.started")),
        esc(lang.t("session.person")),
        esc(lang.t("session.vendor")),
        esc(lang.t("session.system")),
        esc(lang.t("session.target")),
        esc(lang.t("session.protocol")),
        esc(lang.t("session.source")),
        esc(lang.t("session.state")),
        esc(lang.t("session.ended")),
    );
    for s in &rows {
        table.push_str(&format!(
            r#"<tr class="{live}"><td><a href="/sessions/{id}">{started}</a></td><td>{user}</td><td>{vendor}</td><td>{system}</td><td>{target}</td><td>{proto}</td><td>{client}</td><td>{state}</td><td>{ended}</td></tr>"#,
            live = if s.status == SessionStatus::Live { "live" } else { "" },
            id = s.id,
            started = esc(&when(s.started_at, tz)),
            user = esc(&s.user),
            vendor = esc(s.vendor.as_deref().unwrap_or("")),
            system = esc(&system_of(&console, &s.target).unwrap_or_default()),
            target = esc(&s.target),
            proto = esc(&s.protocol.to_uppercase()),
            client = s.client,
            state = state_badge(lang, s.status),
            ended = esc(&s.ended_at.map(|t| when(t, tz)).unwrap_or_default()),
        ));
    }
    table.push_str("</tbody></table>");
    if rows.is_empty() {
        table = format!(
            r#"<p class="empty" id="no-sessions">{}</p>"#,
            esc(lang.t("sessions.none"))
        );
    }
    let page = q.page();
    let pages = total.div_ceil(u64::from(PAGE_SIZE)).max(1);
    let mut pager = format!(
        r#"<p class="pager"><span id="count">{}</span> "#,
        esc(&lang.t("sessions.count").replace("{n}", &total.to_string()))
    );
    if page > 1 {
        pager.push_str(&format!(
            r#"<a href="/sessions{}" id="prev">{}</a> "#,
            esc(&q.with_page(page - 1)),
            esc(lang.t("pager.prev"))
        ));
    }
    pager.push_str(&format!("{page} / {pages} "));
    if u64::from(page) < pages {
        pager.push_str(&format!(
            r#"<a href="/sessions{}" id="next">{}</a>"#,
            esc(&q.with_page(page + 1)),
            esc(lang.t("pager.next"))
        ));
    }
    pager.push_str("</p>");
    let body = format!(
        "<h1>{}</h1>{form}{pager}{table}",
        esc(lang.t("sessions.title"))
    );
    Ok(layout(lang, &viewer, lang.t("sessions.title"), &body))
}

/// The session `id` if `viewer` may read it: 404 if there is none, 403 if
/// it is someone else's and the viewer is an engineer.
pub(crate) async fn readable(
    console: &super::Console,
    viewer: &Viewer,
    id: &str,
) -> Result<SessionRecord, Refused> {
    let id = Uuid::parse_str(id).map_err(|_| Refused::NotFound)?;
    let s = console
        .services
        .store
        .session(id)
        .await?
        .ok_or(Refused::NotFound)?;
    if !viewer.may_read_session(&s.user) {
        return Err(Refused::Forbidden);
    }
    Ok(s)
}

/// The archive of a session, if it was recorded and lies under the
/// configured recordings directory.
pub(crate) fn archive_of(console: &super::Console, s: &SessionRecord) -> Option<PathBuf> {
    let path = PathBuf::from(s.recording_path.as_deref()?);
    let root = &console.services.config.paths.recordings;
    (path.starts_with(root) && path.is_file()).then_some(path)
}

/// The verify verdict of an archive, with the configured keys: checked
/// again only when the file (or the trusted keys) could have changed since
/// the last check ([`super::verdicts`]).
pub(crate) async fn verdict(
    console: &std::sync::Arc<super::Console>,
    path: &Path,
) -> Result<Verdict, Refused> {
    let keys = crate::recording::trusted_keys(&console.services.config.paths.archive_signing_key())
        .map_err(|e| Refused::Internal(e.to_string()))?;
    let ids: Vec<String> = keys.iter().map(|k| k.id().to_string()).collect();
    let path = path.to_path_buf();
    let console = console.clone();
    tokio::task::spawn_blocking(move || {
        console.verdicts.get_or_verify(&path, &ids, || {
            crate::recording::verify_file(&path, &keys)
                .map(|r| r.verdict)
                .map_err(|e| e.to_string())
        })
    })
    .await
    .map_err(|e| Refused::Internal(e.to_string()))?
    .map_err(Refused::Internal)
}

/// The keystroke log of an archive as text (SSH: lines typed; RDP: keys).
async fn keystroke_log(path: &Path) -> Result<String, Refused> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<String, String> {
        let mut reader = Reader::open(&path).map_err(|e| e.to_string())?;
        let meta = reader.meta().clone();
        let mut out = Vec::new();
        match meta.protocol {
            Protocol::Ssh => crate::replay::terminal::keystrokes::write_keystroke_log(
                &meta,
                reader.events(),
                &mut out,
            )
            .map_err(|e| e.to_string())?,
            Protocol::Rdp => {
                let info = meta.rdp.clone().unwrap_or_default();
                crate::replay::desktop::keystrokes::write_keystroke_log(
                    &meta,
                    &info,
                    reader.events(),
                    &mut out,
                )
                .map_err(|e| e.to_string())?;
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .map_err(|e| Refused::Internal(e.to_string()))?
    .map_err(Refused::Internal)
}

/// What the archive's header says about the decision (system, decision).
async fn archive_meta(path: &Path) -> Option<crate::recording::SessionMeta> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || Reader::open(&path).ok().map(|r| r.meta().clone()))
        .await
        .ok()
        .flatten()
}

fn verdict_html(lang: Lang, v: Option<&Verdict>) -> String {
    let (class, text, detail) = match v {
        None => ("none", lang.t("verdict.none"), String::new()),
        Some(Verdict::Intact { key_id, .. }) => (
            "intact",
            lang.t("verdict.intact"),
            format!("{} {key_id}", lang.t("verdict.signed_by")),
        ),
        Some(Verdict::Incomplete { reason, .. }) => {
            ("incomplete", lang.t("verdict.incomplete"), reason.clone())
        }
        Some(Verdict::Tampered { region, detail, .. }) => (
            "tampered",
            lang.t("verdict.tampered"),
            format!("{}: {detail}", region.as_str()),
        ),
        Some(Verdict::BadSignature { key_id }) => (
            "bad_signature",
            lang.t("verdict.bad_signature"),
            key_id.clone(),
        ),
        Some(Verdict::UnknownSignature { key_id }) => (
            "unknown_signature",
            lang.t("verdict.unknown_signature"),
            key_id.clone(),
        ),
    };
    format!(
        r#"<div class="verdict verdict-{class}" id="verdict" data-verdict="{class}"><strong>{}</strong> <span>{}</span></div>"#,
        esc(text),
        esc(&detail)
    )
}

/// GET /sessions/{id}
pub async fn show(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
) -> Result<Html<String>, Refused> {
    let lang = viewer.lang;
    let tz = console.services.config.time_zone;
    let s = readable(&console, &viewer, &id).await?;
    let archive = archive_of(&console, &s);
    let (verdict, meta) = match &archive {
        Some(p) => (Some(verdict(&console, p).await?), archive_meta(p).await),
        None => (None, None),
    };
    // SSH: the lines typed, each a link to its moment in the player;
    // RDP: the keys as text.
    let log = match &archive {
        Some(p) if s.protocol == "ssh" => {
            super::replay::lines_of(p.clone()).await.ok().map(|lines| {
                format!(
                    r#"<p class="hint">{}</p>{}"#,
                    esc(lang.t("keystrokes.jump")),
                    super::replay::typed_list(s.id, &lines, "keystrokes")
                )
            })
        }
        Some(p) => keystroke_log(p).await.ok().map(|text| {
            format!(
                r#"<pre class="keystrokes" id="keystrokes">{}</pre>"#,
                esc(&text)
            )
        }),
        None => None,
    };
    let events = console
        .services
        .store
        .audit_query(&AuditFilter {
            session: Some(s.id),
            ..AuditFilter::default()
        })
        .await?;
    let decision = events.iter().find(|e| e.event.kind == AuditKind::Allow);
    let blocked: Vec<&AuditRecord> = events
        .iter()
        .filter(|e| e.event.kind == AuditKind::ChannelBlocked)
        .collect();

    let row = |label: &'static str, value: String| {
        format!("<tr><th>{}</th><td>{value}</td></tr>", esc(lang.t(label)))
    };
    let mut facts = String::new();
    facts.push_str(&row("session.id", format!("<code>{}</code>", s.id)));
    facts.push_str(&row("session.person", esc(&s.user)));
    facts.push_str(&row(
        "session.vendor",
        esc(s.vendor.as_deref().unwrap_or("")),
    ));
    let system = meta
        .as_ref()
        .map(|m| m.system.clone())
        .filter(|x| !x.is_empty())
        .or_else(|| system_of(&console, &s.target))
        .unwrap_or_default();
    facts.push_str(&row("session.system", esc(&system)));
    facts.push_str(&row("session.target", esc(&s.target)));
    facts.push_str(&row("session.protocol", esc(&s.protocol.to_uppercase())));
    facts.push_str(&row("session.source", s.client.to_string()));
    let decision_text = decision
        .map(|d| super::wording::decision(lang, tz, d))
        .or_else(|| meta.as_ref().map(|m| m.decision.clone()))
        .unwrap_or_default();
    let rule = decision
        .and_then(|d| d.event.data.get("access"))
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    facts.push_str(&row(
        "session.decision",
        format!(r#"<span id="decision">{}</span>"#, esc(&decision_text)),
    ));
    facts.push_str(&row("session.rule", format!("<code>{}</code>", esc(rule))));
    facts.push_str(&row(
        "session.hop_parent",
        s.parent
            .map(|p| format!(r#"<a href="/sessions/{p}">{p}</a>"#))
            .unwrap_or_else(|| "—".into()),
    ));
    // An RDP session resumed after a dropped connection names the one it
    // continues (its `session_start` event, rdp::reconnect).
    let resumes = events
        .iter()
        .filter(|e| e.event.kind == AuditKind::SessionStart)
        .find_map(|e| e.event.resumes());
    if let Some(r) = resumes {
        facts.push_str(&row(
            "session.resumes",
            format!(r#"<a href="/sessions/{r}" id="resumes">{r}</a>"#),
        ));
    }
    // And the other way: the session that resumed this one, started while
    // it ran or within the reconnection grace after its end.
    if s.protocol == "rdp" {
        let grace = chrono::Duration::from_std(console.services.config.rdp.reconnect_grace)
            .unwrap_or_default();
        let starts = console
            .services
            .store
            .audit_query(&AuditFilter {
                since: Some(s.started_at),
                until: s.ended_at.map(|t| t + grace + chrono::Duration::minutes(1)),
                user: Some(s.user.clone()),
                kinds: vec![AuditKind::SessionStart],
                ..AuditFilter::default()
            })
            .await?;
        if let Some(next) = starts
            .iter()
            .find(|e| e.event.resumes() == Some(s.id))
            .and_then(|e| e.event.session)
        {
            facts.push_str(&row(
                "session.resumed_by",
                format!(r#"<a href="/sessions/{next}" id="resumed-by">{next}</a>"#),
            ));
        }
    }
    let hops = console
        .services
        .store
        .sessions(&SessionFilter {
            parent: Some(s.id),
            ..SessionFilter::default()
        })
        .await?;
    if !hops.is_empty() {
        let links: Vec<String> = hops
            .iter()
            .map(|h| {
                format!(
                    r#"<a href="/sessions/{id}">{target}</a> ({state})"#,
                    id = h.id,
                    target = esc(&h.target),
                    state = esc(state_text(lang, h.status))
                )
            })
            .collect();
        facts.push_str(&row("session.hops", links.join(", ")));
    }
    facts.push_str(&row("session.started", esc(&when(s.started_at, tz))));
    facts.push_str(&row(
        "session.ended",
        esc(&s.ended_at.map(|t| when(t, tz)).unwrap_or_default()),
    ));
    facts.push_str(&row("session.state", state_badge(lang, s.status)));
    facts.push_str(&row(
        "session.end_reason",
        super::wording::end_reason_html(lang, tz, &s),
    ));
    if let Some(by) = &s.killed_by {
        facts.push_str(&row(
            "session.killed_by",
            format!(
                "{} — {}",
                esc(by),
                esc(s.kill_reason.as_deref().unwrap_or(""))
            ),
        ));
    }

    let mut blocked_html = format!("<h2>{}</h2>", esc(lang.t("session.blocked")));
    if blocked.is_empty() {
        blocked_html.push_str(&format!("<p>{}</p>", esc(lang.t("session.blocked_none"))));
    } else {
        blocked_html.push_str(r#"<ul class="blocked" id="blocked">"#);
        for b in &blocked {
            blocked_html.push_str(&format!(
                "<li>{} — {}</li>",
                esc(&when(b.at, tz)),
                esc(&b.event.detail)
            ));
        }
        blocked_html.push_str("</ul>");
    }

    let mut downloads = String::new();
    if archive.is_some()
        && s.protocol == "ssh"
        && s.status == SessionStatus::Live
        && viewer.may_read_audit()
    {
        downloads.push_str(&format!(
            r#"<p><a href="/sessions/{}/live" class="button" id="watch">{}</a></p>"#,
            s.id,
            esc(lang.t("session.watch"))
        ));
    }
    if archive.is_some() && s.protocol == "ssh" {
        downloads.push_str(&format!(
            r#"<p><a href="/sessions/{}/replay" class="button" id="replay">{}</a></p>"#,
            s.id,
            esc(lang.t("session.replay"))
        ));
    }
    if archive.is_some() && s.protocol == "rdp" {
        downloads.push_str(&super::desktop::session_actions(lang, &viewer, &s));
    }
    if archive.is_some() {
        downloads.push_str(&format!(
            r#"<h2>{}</h2><ul class="downloads"><li><form method="post" action="/sessions/{id}/archive" class="export"><input type="hidden" name="csrf" value="{csrf}"><label>{code}<input name="code" id="archive-code" inputmode="numeric" pattern="[0-9]{{6}}" maxlength="6" autocomplete="one-time-code" required></label><button type="submit" id="dl-archive">{}</button></form></li>"#,
            esc(lang.t("session.downloads")),
            esc(lang.t("download.archive")),
            id = s.id,
            csrf = esc(&viewer.csrf),
            code = esc(lang.t("kill.code")),
        ));
        if s.protocol == "ssh" {
            downloads.push_str(&format!(
                r#"<li><a href="/sessions/{}/asciicast" id="dl-asciicast">{}</a></li>"#,
                s.id,
                esc(lang.t("download.asciicast"))
            ));
        }
        downloads.push_str(&format!(
            r#"<li><a href="/sessions/{}/keystrokes" id="dl-keystrokes">{}</a></li></ul>"#,
            s.id,
            esc(lang.t("download.keystrokes"))
        ));
    }

    let log_html = match &log {
        Some(html) => format!("<h2>{}</h2>{html}", esc(lang.t("session.keystrokes"))),
        None => String::new(),
    };

    let kill = if viewer.may_kill() && s.status == SessionStatus::Live {
        format!(
            r#"<section class="kill"><h2>{title}</h2><form method="post" action="/sessions/{id}/kill"><input type="hidden" name="csrf" value="{csrf}"><label>{reason}<input name="reason" id="kill-reason" required maxlength="200"></label><label>{code}<input name="code" id="kill-code" inputmode="numeric" pattern="[0-9]{{6}}" maxlength="6" autocomplete="one-time-code" required></label><button type="submit" class="danger" id="kill">{button}</button></form></section>"#,
            title = esc(lang.t("kill.title")),
            id = s.id,
            csrf = esc(&viewer.csrf),
            reason = esc(lang.t("kill.reason")),
            code = esc(lang.t("kill.code")),
            button = esc(lang.t("kill.button")),
        )
    } else {
        String::new()
    };

    let body = format!(
        r#"<h1>{title} {badge}</h1>{verdict}<table class="facts" id="facts">{facts}</table>{kill}{blocked_html}{downloads}{log_html}"#,
        title = esc(lang.t("session.title")),
        badge = state_badge(lang, s.status),
        verdict = verdict_html(lang, verdict.as_ref()),
    );
    Ok(layout(lang, &viewer, lang.t("session.title"), &body))
}

pub(crate) fn attachment(name: &str, content_type: &'static str, body: Body) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        resp.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    resp
}

/// The form of an export: the person's next one-time code.
#[derive(Debug, Deserialize)]
pub struct ExportForm {
    #[serde(default)]
    code: String,
}

/// A recording leaves the bastion: asked with a fresh code, then audited
/// (who, which session, in which form) before a byte is sent.
pub(crate) async fn export_allowed(
    console: &Shared,
    viewer: &Viewer,
    s: &crate::store::SessionRecord,
    code: &str,
    form: &str,
) -> Result<(), Refused> {
    fresh_code(console, viewer, code.trim()).await?;
    console
        .services
        .store
        .audit(
            &AuditEvent::new(
                AuditKind::RecordingExported,
                format!(
                    "{} exported the recording of session {} ({} on {}) as {form}",
                    viewer.user, s.id, s.user, s.target
                ),
            )
            .user(&viewer.user)
            .target(&s.target)
            .session(s.id)
            .source(viewer.source)
            .protocol("web")
            .with("format", form)
            .with("engineer", s.user.as_str()),
        )
        .await?;
    Ok(())
}

/// POST /sessions/{id}/archive: the signed archive as stored (a fresh code).
pub async fn archive(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
    Form(f): Form<ExportForm>,
) -> Result<Response, Refused> {
    let s = readable(&console, &viewer, &id).await?;
    let path = archive_of(&console, &s).ok_or(Refused::NotFound)?;
    export_allowed(&console, &viewer, &s, &f.code, "archive").await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Refused::Internal(format!("{}: {e}", path.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("{}.{}", s.id, crate::recording::EXTENSION));
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok(attachment(&name, "application/octet-stream", body))
}

/// GET /sessions/{id}/asciicast: an SSH recording as asciicast v2.
pub async fn asciicast(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, Refused> {
    let s = readable(&console, &viewer, &id).await?;
    if s.protocol != "ssh" {
        return Err(Refused::NotFound);
    }
    let path = archive_of(&console, &s).ok_or(Refused::NotFound)?;
    let cast = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let mut reader = Reader::open(&path).map_err(|e| e.to_string())?;
        let meta = reader.meta().clone();
        let mut out = Vec::new();
        crate::replay::terminal::asciicast::write_asciicast(&meta, reader.events(), None, &mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    })
    .await
    .map_err(|e| Refused::Internal(e.to_string()))?
    .map_err(Refused::Internal)?;
    Ok(attachment(
        &format!("{}.cast", s.id),
        "application/x-asciicast",
        Body::from(cast),
    ))
}

/// GET /sessions/{id}/keystrokes: the keystroke log as text.
pub async fn keystrokes(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, Refused> {
    let s = readable(&console, &viewer, &id).await?;
    let path = archive_of(&console, &s).ok_or(Refused::NotFound)?;
    let text = keystroke_log(&path).await?;
    Ok(attachment(
        &format!("{}-keystrokes.txt", s.id),
        "text/plain; charset=utf-8",
        Body::from(text),
    ))
}

#[derive(Deserialize)]
pub struct KillForm {
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub code: String,
}

/// Stops a live session for an admin who gave a fresh code. Shared by the
/// page and the API.
pub(crate) async fn stop(
    console: &super::Console,
    viewer: &Viewer,
    id: &str,
    reason: &str,
    code: &str,
) -> Result<SessionRecord, Refused> {
    if !viewer.may_kill() {
        return Err(Refused::Forbidden);
    }
    let s = readable(console, viewer, id).await?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Refused::BadRequest(
            viewer.lang.t("kill.reason_needed").into(),
        ));
    }
    fresh_code(console, viewer, code.trim()).await?;
    let reason: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    match console
        .services
        .store
        .ask_to_stop(s.id, &viewer.user, &reason)
        .await
    {
        Ok(s) => Ok(s),
        Err(crate::store::StoreError::SessionNotLive(_)) => {
            Err(Refused::BadRequest(viewer.lang.t("kill.not_live").into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// POST /sessions/{id}/kill (admin, reason and a fresh code).
pub async fn kill(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
    Form(f): Form<KillForm>,
) -> Result<Response, Refused> {
    let s = stop(&console, &viewer, &id, &f.reason, &f.code).await?;
    // The serving process polls kill requests several times a second.
    let mut wait = crate::session::ConfirmEnd::start();
    while wait.next_look().await {
        if let Some(now) = console.services.store.session(s.id).await?
            && now.status != SessionStatus::Live
        {
            break;
        }
    }
    Ok(Redirect::to(&format!("/sessions/{}", s.id)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_keeps_the_filters() {
        let q = SessionQuery {
            user: "田中".into(),
            state: "live".into(),
            page: Some(3),
            ..SessionQuery::default()
        };
        assert_eq!(q.with_page(4), "?user=%E7%94%B0%E4%B8%AD&state=live&page=4");
        assert_eq!(SessionQuery::default().page(), 1);
        assert_eq!(
            SessionQuery {
                page: Some(0),
                ..SessionQuery::default()
            }
            .page(),
            1
        );
    }
}
