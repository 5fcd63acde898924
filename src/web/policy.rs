//! The policy pages, for administrators only (deny by default: auditors,
//! approvers and engineers are refused; auditors read what the policy
//! allowed in each session's decision instead): every system in force with
//! its targets, hops and access entries, who can reach each target (as
//! `sekisho policy who-can`), the warnings `sekisho policy check` prints,
//! and the explain form (as `sekisho policy explain`). Editing is in
//! `policy_edit.rs`.
//!
//! Everything shown is the policy set in force (what the gateways decide
//! with now); credential names are shown, never their values.

use std::net::IpAddr;

use axum::extract::{Path as UrlPath, Query, State};
use axum::response::Html;
use chrono::{NaiveDate, Utc};
use serde::Deserialize;

use super::Shared;
use super::i18n::Lang;
use super::page::{Refused, esc, layout, url_enc, when};
use super::signin::Viewer;
use crate::config::format_duration;
use crate::policy::reach::ProtocolReach;
use crate::policy::{
    Access, PolicySet, Protocol, Reach, System, Target, Warning, model::file_name,
};

/// Policy pages and edits are for admins only.
/// Today in the configured zone (contract days are calendar days there).
pub(super) fn today(console: &super::Console) -> NaiveDate {
    Utc::now()
        .with_timezone(&console.services.config.time_zone)
        .date_naive()
}

fn days_left_text(lang: Lang, days: i64) -> String {
    if days < 0 {
        lang.t("policy.contract_ended").to_string()
    } else {
        lang.t("policy.days_left").replace("{n}", &days.to_string())
    }
}

/// One warning in the person's language.
fn warning_text(lang: Lang, w: &Warning) -> String {
    match w {
        Warning::ContractEnding { access, days_left } => lang
            .t("policy.warn_contract")
            .replace("{system}", &access.system)
            .replace("{index}", &access.index.to_string())
            .replace("{vendor}", &access.vendor)
            .replace("{until}", &access.contract.until.to_string())
            .replace("{left}", &days_left_text(lang, *days_left)),
        Warning::CredentialMissing {
            target,
            protocol,
            credential,
        } => lang
            .t("policy.warn_credential")
            .replace("{target}", &target.name)
            .replace("{protocol}", protocol.label())
            .replace("{credential}", credential),
        Warning::TargetUncovered { target } => lang
            .t("policy.warn_uncovered")
            .replace("{target}", &target.name),
    }
}

fn warning_class(w: &Warning) -> &'static str {
    match w {
        Warning::ContractEnding { .. } => "contract",
        Warning::CredentialMissing { .. } => "credential",
        Warning::TargetUncovered { .. } => "uncovered",
    }
}

/// The warnings list (empty: a line saying there are none).
async fn warnings_html(
    console: &super::Console,
    lang: Lang,
    set: &PolicySet,
    only_system: Option<&str>,
) -> Result<String, Refused> {
    let credentials = crate::session::credential_names(&console.services.store).await?;
    let all = crate::policy::warnings(set, Some(&credentials), today(console));
    let shown: Vec<&Warning> =
        all.iter()
            .filter(|w| {
                only_system.is_none_or(|s| match w {
                    Warning::ContractEnding { access, .. } => access.system == s,
                    Warning::CredentialMissing { target, .. }
                    | Warning::TargetUncovered { target } => target.system == s,
                })
            })
            .collect();
    if shown.is_empty() {
        return Ok(format!(
            r#"<p class="empty" id="policy-warnings">{}</p>"#,
            esc(lang.t("policy.no_warnings"))
        ));
    }
    let mut out = String::from(r#"<ul class="warnings" id="policy-warnings">"#);
    for w in shown {
        out.push_str(&format!(
            r#"<li class="warn-{}">{}</li>"#,
            warning_class(w),
            esc(&warning_text(lang, w))
        ));
    }
    out.push_str("</ul>");
    Ok(out)
}

/// The navigation between the policy pages.
fn policy_nav(lang: Lang) -> String {
    format!(
        r#"<p class="policy-nav"><a href="/policy">{}</a> · <a href="/policy/explain" id="explain-link">{}</a></p>"#,
        esc(lang.t("policy.systems")),
        esc(lang.t("policy.explain_title")),
    )
}

fn zone_text(lang: Lang, s: &System) -> String {
    format!("{} ({})", lang.t(zone_key(s)), s.zone)
}

fn zone_key(s: &System) -> &'static str {
    match s.zone {
        crate::policy::Zone::Internet => "policy.zone_internet",
        crate::policy::Zone::Lgwan => "policy.zone_lgwan",
        crate::policy::Zone::MyNumber => "policy.zone_mynumber",
    }
}

/// GET /policy: every system in force and the warnings.
pub async fn index(State(console): State<Shared>, viewer: Viewer) -> Result<Html<String>, Refused> {
    viewer.require_admin()?;
    let lang = viewer.lang;
    let set = console.services.policies();
    let mut table = format!(
        r#"<table id="systems"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>"#,
        esc(lang.t("policy.system")),
        esc(lang.t("policy.title_col")),
        esc(lang.t("policy.zone")),
        esc(lang.t("policy.file")),
        esc(lang.t("policy.targets")),
        esc(lang.t("policy.access")),
    );
    for s in set.systems() {
        let targets = set.targets().filter(|t| t.system == s.name).count();
        let access = set.access().filter(|a| a.system == s.name).count();
        table.push_str(&format!(
            r#"<tr><td><a href="/policy/systems/{href}">{name}</a></td><td>{title}</td><td>{zone}</td><td><code>{file}</code></td><td>{targets}</td><td>{access}</td></tr>"#,
            href = url_enc(&s.name),
            name = esc(&s.name),
            title = esc(s.title.as_deref().unwrap_or("")),
            zone = esc(&zone_text(lang, s)),
            file = esc(&file_name(&s.file)),
        ));
    }
    table.push_str("</tbody></table>");
    if set.systems().next().is_none() {
        table = format!(
            r#"<p class="empty">{}</p>"#,
            esc(lang.t("policy.no_systems"))
        );
    }
    let body = format!(
        r#"<h1>{title}</h1>{nav}<p class="hint">{in_force}</p><h2>{warn_title}</h2>{warnings}<h2>{systems}</h2>{table}"#,
        title = esc(lang.t("policy.title")),
        nav = policy_nav(lang),
        in_force = esc(&lang.t("policy.in_force").replace(
            "{dir}",
            &console.services.config.paths.policies.display().to_string()
        )),
        warn_title = esc(lang.t("policy.warnings")),
        warnings = warnings_html(&console, lang, &set, None).await?,
        systems = esc(lang.t("policy.systems")),
    );
    Ok(layout(lang, &viewer, lang.t("policy.title"), &body))
}

#[derive(Debug, Default, Deserialize)]
pub struct SystemQuery {
    /// Set after a save (the redirect from the edit form).
    #[serde(default)]
    pub saved: Option<String>,
}

fn protocols_text(ps: &[Protocol]) -> String {
    ps.iter().map(|p| p.label()).collect::<Vec<_>>().join(", ")
}

fn targets_html(lang: Lang, targets: &[&Target]) -> String {
    let mut out = format!(
        r#"<table id="targets"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>"#,
        esc(lang.t("session.target")),
        esc(lang.t("policy.address")),
        esc(lang.t("policy.kind")),
        esc(lang.t("session.protocol")),
        esc(lang.t("policy.port")),
        esc(lang.t("policy.account")),
        esc(lang.t("policy.credential")),
        esc(lang.t("policy.pin")),
    );
    for t in targets {
        let kind = match t.kind {
            crate::policy::TargetKind::Physical => lang.t("policy.physical"),
            crate::policy::TargetKind::Virtual => lang.t("policy.virtual"),
        };
        let endpoints: Vec<(Protocol, &crate::policy::Endpoint)> = Protocol::ALL
            .into_iter()
            .filter_map(|p| t.endpoint(p).map(|e| (p, e)))
            .collect();
        let rows = endpoints.len().max(1);
        out.push_str(&format!(
            r##"<tr id="target-{id}"><td rowspan="{rows}"><a href="#reach-{id}">{name}</a></td><td rowspan="{rows}"><code>{addr}</code></td><td rowspan="{rows}">{kind}</td>"##,
            id = esc(&t.name),
            name = esc(&t.name),
            addr = t.address,
            kind = esc(kind),
        ));
        if endpoints.is_empty() {
            out.push_str("<td></td><td></td><td></td><td></td><td></td></tr>");
        }
        for (i, (p, e)) in endpoints.iter().enumerate() {
            if i > 0 {
                out.push_str("<tr>");
            }
            // The credential's name only: its value never leaves the secret store.
            out.push_str(&format!(
                r#"<td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><code class="pin">{}</code></td></tr>"#,
                p.label(),
                e.port,
                esc(&e.account),
                esc(&e.credential),
                esc(&e.pin.to_string()),
            ));
        }
    }
    out.push_str("</tbody></table>");
    out
}

fn access_html(console: &super::Console, lang: Lang, entries: &[&Access]) -> String {
    let tz = console.services.config.time_zone;
    let today = today(console);
    let mut out = format!(
        r#"<table id="access"><thead><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>"#,
        esc(lang.t("session.vendor")),
        esc(lang.t("policy.engineers")),
        esc(lang.t("policy.contract")),
        esc(lang.t("policy.hours")),
        esc(lang.t("policy.max_session")),
        esc(lang.t("session.protocol")),
        esc(lang.t("policy.sources")),
        esc(lang.t("policy.targets")),
    );
    for a in entries {
        let left = a.contract.days_left(today);
        let class = if left < 0 {
            "ended"
        } else if left <= crate::policy::warnings::CONTRACT_WARNING_DAYS {
            "ending"
        } else {
            "ok"
        };
        out.push_str(&format!(
            r#"<tr id="access-{i}"><td>access[{i}]</td><td>{vendor}</td><td>{users}</td><td>{from} – {until}<br><span class="contract-{class}">{left}</span></td><td>{hours} <span class="hint">({tz})</span></td><td>{max}</td><td>{protocols}</td><td>{sources}</td><td>{targets}</td></tr>"#,
            i = a.index,
            vendor = esc(&a.vendor),
            users = esc(&a.users.join(", ")),
            from = a.contract.from,
            until = a.contract.until,
            left = esc(&days_left_text(lang, left)),
            hours = esc(&a.hours.to_string()),
            max = esc(&format_duration(a.max_session)),
            protocols = protocols_text(&a.protocols),
            sources = esc(&a.sources.join(", ")),
            targets = esc(
                &a.targets
                    .as_ref()
                    .map(|t| t.join(", "))
                    .unwrap_or_else(|| lang.t("policy.all_targets").to_string())
            ),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

/// Who can reach one target, as `sekisho policy who-can` lists it.
fn reach_html(lang: Lang, tz: chrono_tz::Tz, reach: &Reach) -> String {
    let t = reach.target;
    let mut out = format!(
        r#"<section class="reach" id="reach-{id}"><h3>{name}</h3>"#,
        id = esc(&t.name),
        name = esc(&lang.t("policy.who_can").replace("{target}", &t.name)),
    );
    if reach.entries.is_empty() {
        out.push_str(&format!(
            r#"<p class="error">{}</p>"#,
            esc(lang.t("policy.nobody"))
        ));
    } else {
        out.push_str(&format!(
            r#"<table class="who-can"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>"#,
            esc(lang.t("policy.entry")),
            esc(lang.t("session.vendor")),
            esc(lang.t("policy.engineers")),
            esc(lang.t("session.protocol")),
            esc(lang.t("policy.hours")),
            esc(lang.t("policy.contract")),
            esc(lang.t("policy.sources")),
        ));
        for e in &reach.entries {
            let a = e.access;
            let protocols: Vec<String> = e
                .protocols
                .iter()
                .map(|p| match p {
                    ProtocolReach::Direct(p) => p.label().to_string(),
                    ProtocolReach::RdpHopOnly => lang
                        .t("policy.rdp_hop_only")
                        .replace("{from}", &reach.hops_in.join(", ")),
                })
                .collect();
            let protocols = if protocols.is_empty() {
                lang.t("policy.no_protocol").to_string()
            } else {
                protocols.join(", ")
            };
            let sources: Vec<String> = e.sources.iter().map(|s| s.describe()).collect();
            out.push_str(&format!(
                r#"<tr><td>{file} access[{i}]</td><td>{vendor}</td><td>{users}</td><td>{protocols}</td><td>{hours} ({tz})</td><td>{from} – {until}</td><td>{sources}</td></tr>"#,
                file = esc(&file_name(&a.file)),
                i = a.index,
                vendor = esc(&a.vendor),
                users = esc(&a.users.join(", ")),
                protocols = esc(&protocols),
                hours = esc(&a.hours.to_string()),
                from = a.contract.from,
                until = a.contract.until,
                sources = esc(&sources.join(", ")),
            ));
        }
        out.push_str("</tbody></table>");
    }
    if !reach.hops_in.is_empty() {
        out.push_str(&format!(
            r#"<p class="hint">{}</p>"#,
            esc(&lang
                .t("policy.hops_into")
                .replace("{from}", &reach.hops_in.join(", ")))
        ));
    }
    out.push_str("</section>");
    out
}

/// GET /policy/systems/{system}: one system's targets, hops, access
/// entries and who can reach each target.
pub async fn system(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<SystemQuery>,
) -> Result<Html<String>, Refused> {
    viewer.require_admin()?;
    let lang = viewer.lang;
    let set = console.services.policies();
    let s = set.system(&name).ok_or(Refused::NotFound)?;
    let networks = &console.services.config.networks;
    let tz = console.services.config.time_zone;
    let targets: Vec<&Target> = set.targets().filter(|t| t.system == s.name).collect();
    let entries: Vec<&Access> = set.access().filter(|a| a.system == s.name).collect();
    let hops: Vec<String> = set
        .hops()
        .filter(|h| h.file == s.file)
        .map(|h| format!("{} → {}", h.from, h.to))
        .collect();
    let saved = match q.saved.as_deref() {
        Some("in_force") => format!(
            r#"<p class="saved" id="policy-saved">{}</p>"#,
            esc(lang.t("policy.saved"))
        ),
        Some(_) => format!(
            r#"<p class="error" id="policy-saved">{}</p>"#,
            esc(lang.t("policy.saved_reload_refused"))
        ),
        None => String::new(),
    };
    let approval = if s.requires_approval() {
        lang.t("policy.approval_required")
    } else {
        lang.t("policy.approval_not_required")
    };
    let facts = format!(
        r#"<table class="facts" id="system-facts"><tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td><code>{}</code></td></tr><tr><th>{}</th><td>{}</td></tr></table>"#,
        esc(lang.t("policy.system")),
        esc(&s.name),
        esc(lang.t("policy.title_col")),
        esc(s.title.as_deref().unwrap_or("")),
        esc(lang.t("policy.zone")),
        esc(&zone_text(lang, s)),
        esc(lang.t("policy.file")),
        esc(&s.file.display().to_string()),
        esc(lang.t("policy.approval")),
        esc(approval),
    );
    let hops_html = if hops.is_empty() {
        format!(r#"<p class="empty">{}</p>"#, esc(lang.t("policy.no_hops")))
    } else {
        let items: String = hops
            .iter()
            .map(|h| format!("<li>{}</li>", esc(h)))
            .collect();
        format!(r#"<ul id="hops">{items}</ul>"#)
    };
    let reach: String = targets
        .iter()
        .filter_map(|t| Reach::of(&set, networks, &t.name))
        .map(|r| reach_html(lang, tz, &r))
        .collect();
    let body = format!(
        r#"<h1>{title}</h1>{nav}{saved}<p><a class="button" href="/policy/systems/{href}/edit" id="edit-policy">{edit}</a></p>{facts}<h2>{warn}</h2>{warnings}<h2>{targets_title}</h2>{targets}<h2>{hops_title}</h2>{hops_html}<h2>{access_title}</h2>{access}<h2>{reach_title}</h2>{reach}"#,
        title = esc(&lang.t("policy.system_title").replace("{system}", &s.name)),
        nav = policy_nav(lang),
        href = url_enc(&s.name),
        edit = esc(lang.t("policy.edit")),
        warn = esc(lang.t("policy.warnings")),
        warnings = warnings_html(&console, lang, &set, Some(&s.name)).await?,
        targets_title = esc(lang.t("policy.targets")),
        targets = targets_html(lang, &targets),
        hops_title = esc(lang.t("policy.hops")),
        access_title = esc(lang.t("policy.access")),
        access = access_html(&console, lang, &entries),
        reach_title = esc(lang.t("policy.reach")),
    );
    Ok(layout(
        lang,
        &viewer,
        &lang.t("policy.system_title").replace("{system}", &s.name),
        &body,
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct ExplainQuery {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub at: String,
}

/// GET /policy/explain: what the gateways would decide for one request,
/// and why — `policy::explain`, as `sekisho policy explain` prints it,
/// against the policy set in force.
pub async fn explain(
    State(console): State<Shared>,
    viewer: Viewer,
    Query(q): Query<ExplainQuery>,
) -> Result<Html<String>, Refused> {
    viewer.require_admin()?;
    let lang = viewer.lang;
    let set = console.services.policies();
    let tz = console.services.config.time_zone;
    let targets: String = set
        .targets()
        .map(|t| {
            format!(
                r#"<option value="{v}"{sel}>{v}</option>"#,
                v = esc(&t.name),
                sel = if t.name == q.target { " selected" } else { "" }
            )
        })
        .collect();
    let protocols: String = Protocol::ALL
        .iter()
        .map(|p| {
            format!(
                r#"<option value="{}"{}>{}</option>"#,
                p.as_str(),
                if q.protocol == p.as_str() {
                    " selected"
                } else {
                    ""
                },
                p.label()
            )
        })
        .collect();
    let from = if q.from.trim().is_empty() {
        "127.0.0.1".to_string()
    } else {
        q.from.clone()
    };
    let form = format!(
        r#"<form method="get" action="/policy/explain" class="filters"><label>{user_l}<input name="user" id="x-user" value="{user}" required></label><label>{target_l}<select name="target" id="x-target">{targets}</select></label><label>{protocol_l}<select name="protocol" id="x-protocol">{protocols}</select></label><label>{from_l}<input name="from" id="x-from" value="{from}"></label><label>{at_l}<input name="at" id="x-at" value="{at}" placeholder="2026-04-01 10:00"></label><button type="submit" id="x-submit">{submit}</button></form><p class="hint">{hint}</p>"#,
        user_l = esc(lang.t("session.person")),
        user = esc(&q.user),
        target_l = esc(lang.t("session.target")),
        protocol_l = esc(lang.t("session.protocol")),
        from_l = esc(lang.t("session.source")),
        from = esc(&from),
        at_l = esc(lang.t("policy.at")),
        at = esc(&q.at),
        submit = esc(lang.t("policy.explain_submit")),
        hint = esc(&lang.t("policy.explain_hint").replace("{tz}", tz.name())),
    );
    let result = if q.user.trim().is_empty() {
        String::new()
    } else {
        explain_result(&console, lang, &set, &q, &from).await?
    };
    let body = format!(
        r#"<h1>{}</h1>{}{form}{result}"#,
        esc(lang.t("policy.explain_title")),
        policy_nav(lang),
    );
    Ok(layout(lang, &viewer, lang.t("policy.explain_title"), &body))
}

async fn explain_result(
    console: &super::Console,
    lang: Lang,
    set: &PolicySet,
    q: &ExplainQuery,
    from: &str,
) -> Result<String, Refused> {
    let tz = console.services.config.time_zone;
    let problem = |m: String| {
        Ok(format!(
            r#"<p class="error" id="x-problem">{}</p>"#,
            esc(&m)
        ))
    };
    let Ok(protocol) = q.protocol.parse::<Protocol>() else {
        return problem(lang.t("policy.explain_bad_protocol").into());
    };
    let Ok(source) = from.trim().parse::<IpAddr>() else {
        return problem(lang.t("policy.explain_bad_address").replace("{v}", from));
    };
    let now = Utc::now();
    let at = if q.at.trim().is_empty() {
        now
    } else {
        match crate::config::parse_when(&q.at, tz, now) {
            Ok(t) => t,
            Err(e) => return problem(e),
        }
    };
    let user = q.user.trim();
    let Some(who) = crate::session::requester(&console.services.store, user, at).await? else {
        return problem(lang.t("policy.explain_no_user").replace("{user}", user));
    };
    // The stops in force refuse as they would for a real session.
    let stops = console.services.store.active_stops().await?;
    let req = crate::policy::Request {
        person: &who.person,
        target: q.target.trim(),
        protocol,
        source,
        live_sessions: &who.live,
        approved: &who.approved,
        stops: &stops,
    };
    let explained = crate::policy::explain(&req, set, &console.services.config.networks, tz, at);
    let (class, verdict) = if explained.allowed() {
        ("allow", lang.t("policy.allow"))
    } else {
        ("deny", lang.t("policy.deny"))
    };
    let rule = match explained.rule() {
        Some(r) => r.as_str().to_string(),
        None => match &explained.decision {
            crate::policy::Decision::Allow(g) => g.access.to_string(),
            crate::policy::Decision::Deny(_) => String::new(),
        },
    };
    let lines: String = explained
        .lines
        .iter()
        .map(|l| format!("{}\n", esc(l)))
        .collect();
    Ok(format!(
        r#"<section class="explained" id="x-result"><p class="decision decision-{class}" id="x-decision">{verdict}</p><table class="facts"><tr><th>{at_l}</th><td>{at}</td></tr><tr><th>{rule_l}</th><td><code id="x-rule">{rule}</code></td></tr></table><pre class="explain-lines" id="x-lines">{lines}</pre></section>"#,
        verdict = esc(verdict),
        at_l = esc(lang.t("policy.at")),
        at = esc(&when(at, tz)),
        rule_l = esc(lang.t("policy.rule")),
        rule = esc(&rule),
    ))
}
