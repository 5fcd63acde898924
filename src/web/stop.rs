//! The emergency stop page (緊急停止), for admins: the stops in force with
//! the live sessions each still covers, a form to put a stop in force (all,
//! one system, one vendor) and to lift one, both with a fresh code, and the
//! recent stops. The same operations as `sekisho stop` (`session::stop`),
//! and the API's `/api/v1/stops` through the same checks.

use axum::extract::{Form, Json, Path as UrlPath, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::Shared;
use super::api::{ApiRefused, Caller};
use super::page::{Refused, esc, layout, when};
use super::signin::{Viewer, fresh_code};
use crate::policy::StopScope;
use crate::session::stop::{self, Actor, StopError};
use crate::store::StopRecord;

fn refused(viewer: &Viewer, e: StopError) -> Refused {
    let lang = viewer.lang;
    match e {
        StopError::NoReason => Refused::BadRequest(lang.t("stop.reason_needed").into()),
        StopError::UnknownSystem(s) | StopError::UnknownVendor(s) => {
            Refused::BadRequest(format!("{}: {s}", lang.t("stop.unknown_scope")))
        }
        StopError::Store(crate::store::StoreError::StopLifted(_)) => {
            Refused::BadRequest(lang.t("stop.already_lifted").into())
        }
        StopError::Store(crate::store::StoreError::NoStop(_)) => Refused::NotFound,
        StopError::Store(e) => e.into(),
    }
}

/// GET /stops
pub async fn page(State(console): State<Shared>, viewer: Viewer) -> Result<Html<String>, Refused> {
    viewer.require_admin()?;
    let lang = viewer.lang;
    let tz = console.services.config.time_zone;
    let store = &console.services.store;
    let policies = console.services.policies();
    let csrf = esc(&viewer.csrf);
    let code_input = |id: &str| {
        format!(
            r#"<label>{code}<input name="code" id="{id}" inputmode="numeric" pattern="[0-9]{{6}}" maxlength="6" autocomplete="one-time-code" required></label>"#,
            code = esc(lang.t("kill.code")),
        )
    };

    let mut in_force = String::new();
    for s in store.stops_in_force().await? {
        let scope = s.scope()?;
        let live = stop::live_in_scope(store, &policies, &scope).await?;
        let live_text = if live.is_empty() {
            esc(lang.t("stop.none_live"))
        } else {
            live.iter()
                .map(|l| {
                    format!(
                        r#"<a href="/sessions/{id}">{user}@{target}</a>"#,
                        id = l.id,
                        user = esc(&l.user),
                        target = esc(&l.target)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        in_force.push_str(&format!(
            r#"<tr class="stop-in-force" id="stop-{id}"><td>{id}</td><td>{scope}</td><td>{reason}</td><td>{by}</td><td>{since}</td><td>{live_text}</td><td class="kill"><form method="post" action="/stops/{id}/lift" class="lift"><input type="hidden" name="csrf" value="{csrf}"><label>{lift_reason}<input name="reason" id="lift-reason-{id}" maxlength="200"></label>{code}<button type="submit" id="lift-{id}">{lift}</button></form></td></tr>"#,
            id = s.id,
            scope = esc(&scope_text(lang, &scope)),
            reason = esc(&s.reason),
            by = esc(&s.stopped_by),
            since = esc(&when(s.stopped_at, tz)),
            lift_reason = esc(lang.t("stop.lift_reason")),
            code = code_input(&format!("lift-code-{}", s.id)),
            lift = esc(lang.t("stop.lift")),
        ));
    }
    let in_force = if in_force.is_empty() {
        format!(
            r#"<p class="empty" id="no-stop">{}</p>"#,
            esc(lang.t("stop.none_in_force"))
        )
    } else {
        format!(
            r#"<table id="stops-in-force"><thead><tr><th>#</th><th>{scope}</th><th>{reason}</th><th>{by}</th><th>{since}</th><th>{live}</th><th></th></tr></thead><tbody>{in_force}</tbody></table>"#,
            scope = esc(lang.t("stop.scope")),
            reason = esc(lang.t("stop.reason_col")),
            by = esc(lang.t("stop.by")),
            since = esc(lang.t("stop.since")),
            live = esc(lang.t("stop.live")),
        )
    };

    let mut options = format!(
        r#"<option value="all">{}</option>"#,
        esc(&scope_text(lang, &StopScope::All))
    );
    for s in policies.systems() {
        let scope = StopScope::System(s.name.clone());
        options.push_str(&format!(
            r#"<option value="system:{v}">{t}</option>"#,
            v = esc(&s.name),
            t = esc(&scope_text(lang, &scope))
        ));
    }
    for v in store.vendors().await? {
        let scope = StopScope::Vendor(v.name.clone());
        options.push_str(&format!(
            r#"<option value="vendor:{v}">{t}</option>"#,
            v = esc(&v.name),
            t = esc(&scope_text(lang, &scope))
        ));
    }
    let form = format!(
        r#"<section class="kill"><h2>{title}</h2><p class="hint">{hint}</p><form method="post" action="/stops"><input type="hidden" name="csrf" value="{csrf}"><label>{scope}<select name="scope" id="stop-scope">{options}</select></label><label>{reason}<input name="reason" id="stop-reason" required maxlength="200"></label>{code}<button type="submit" class="danger" id="stop">{button}</button></form></section>"#,
        title = esc(lang.t("stop.new")),
        hint = esc(lang.t("stop.hint")),
        scope = esc(lang.t("stop.scope")),
        reason = esc(lang.t("kill.reason")),
        code = code_input("stop-code"),
        button = esc(lang.t("stop.button")),
    );

    let mut history = String::new();
    for s in store.recent_stops(20).await? {
        let scope = s.scope()?;
        let lifted = match (s.lifted_at, &s.lifted_by) {
            (Some(t), by) => format!("{} ({})", when(t, tz), by.as_deref().unwrap_or_default()),
            (None, _) => lang.t("stop.in_force").to_string(),
        };
        history.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.id,
            esc(&scope_text(lang, &scope)),
            esc(&s.reason),
            esc(&s.stopped_by),
            esc(&when(s.stopped_at, tz)),
            esc(&lifted)
        ));
    }
    let history = if history.is_empty() {
        String::new()
    } else {
        format!(
            r#"<h2>{title}</h2><table id="stops-history"><thead><tr><th>#</th><th>{scope}</th><th>{reason}</th><th>{by}</th><th>{since}</th><th>{lifted}</th></tr></thead><tbody>{history}</tbody></table>"#,
            title = esc(lang.t("stop.history")),
            scope = esc(lang.t("stop.scope")),
            reason = esc(lang.t("stop.reason_col")),
            by = esc(lang.t("stop.by")),
            since = esc(lang.t("stop.since")),
            lifted = esc(lang.t("stop.lifted")),
        )
    };
    let body = format!(
        r#"<h1>{title}</h1><h2>{now}</h2>{in_force}{form}{history}"#,
        title = esc(lang.t("stop.title")),
        now = esc(lang.t("stop.in_force_title")),
    );
    Ok(layout(lang, &viewer, lang.t("stop.title"), &body))
}

/// The scope in the page's language.
fn scope_text(lang: super::i18n::Lang, scope: &StopScope) -> String {
    match scope {
        StopScope::All => lang.t("stop.scope_all").to_string(),
        StopScope::System(s) => format!("{} {s}", lang.t("stop.scope_system")),
        StopScope::Vendor(v) => format!("{} {v}", lang.t("stop.scope_vendor")),
    }
}

/// Puts a stop in force for an admin who gave a reason and a fresh code;
/// waits (3 s at most) until no live session in its scope is left. Shared
/// by the page and the API.
pub(crate) async fn put_checked(
    console: &super::Console,
    viewer: &Viewer,
    scope: &str,
    reason: &str,
    code: &str,
) -> Result<StopRecord, Refused> {
    viewer.require_admin()?;
    let scope: StopScope = scope
        .parse()
        .map_err(|_| Refused::BadRequest(viewer.lang.t("stop.unknown_scope").into()))?;
    if reason.trim().is_empty() {
        return Err(Refused::BadRequest(
            viewer.lang.t("stop.reason_needed").into(),
        ));
    }
    fresh_code(console, viewer, code.trim()).await?;
    let policies = console.services.policies();
    let store = &console.services.store;
    let stop = stop::put_in_force(
        store,
        &policies,
        scope.clone(),
        reason,
        Actor {
            name: &viewer.user,
            via: "web",
        },
    )
    .await
    .map_err(|e| refused(viewer, e))?;
    // Every node sweeps each second: wait a little so the answer shows the
    // sessions ended rather than about to end.
    let mut wait = crate::session::ConfirmEnd::start();
    loop {
        let live = stop::live_in_scope(store, &policies, &scope).await?;
        if live.is_empty() || !wait.next_look().await {
            break;
        }
    }
    Ok(stop)
}

/// Lifts a stop for an admin who gave a fresh code. Shared by the page and
/// the API.
pub(crate) async fn lift_checked(
    console: &super::Console,
    viewer: &Viewer,
    id: &str,
    reason: &str,
    code: &str,
) -> Result<StopRecord, Refused> {
    viewer.require_admin()?;
    let id: i64 = id.parse().map_err(|_| Refused::NotFound)?;
    fresh_code(console, viewer, code.trim()).await?;
    stop::lift(
        &console.services.store,
        id,
        reason,
        Actor {
            name: &viewer.user,
            via: "web",
        },
    )
    .await
    .map_err(|e| refused(viewer, e))
}

#[derive(Deserialize)]
pub struct StopForm {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    code: String,
}

/// POST /stops: put a stop in force (admin, reason, fresh code).
pub async fn put(
    State(console): State<Shared>,
    viewer: Viewer,
    Form(f): Form<StopForm>,
) -> Result<Response, Refused> {
    put_checked(&console, &viewer, &f.scope, &f.reason, &f.code).await?;
    Ok(Redirect::to("/stops").into_response())
}

#[derive(Deserialize)]
pub struct LiftForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    code: String,
}

/// POST /stops/{id}/lift (admin, fresh code).
pub async fn lift(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
    Form(f): Form<LiftForm>,
) -> Result<Response, Refused> {
    lift_checked(&console, &viewer, &id, &f.reason, &f.code).await?;
    Ok(Redirect::to("/stops").into_response())
}

/// GET /api/v1/stops: the stops in force and the newest 100 (admins).
pub(crate) async fn api_list(
    State(console): State<Shared>,
    Caller(v): Caller,
) -> Result<Response, ApiRefused> {
    v.require_admin()?;
    let store = &console.services.store;
    Ok(Json(json!({
        "in_force": store.stops_in_force().await?,
        "recent": store.recent_stops(100).await?,
    }))
    .into_response())
}

/// POST /api/v1/stops `{"scope": "all" | "system:NAME" | "vendor:NAME", "reason", "code"}`
pub(crate) async fn api_put(
    State(console): State<Shared>,
    Caller(v): Caller,
    Json(f): Json<StopForm>,
) -> Result<Response, ApiRefused> {
    let stop = put_checked(&console, &v, &f.scope, &f.reason, &f.code).await?;
    Ok(Json(json!({ "stop": stop })).into_response())
}

/// POST /api/v1/stops/{id}/lift `{"reason", "code"}`
pub(crate) async fn api_lift(
    State(console): State<Shared>,
    Caller(v): Caller,
    UrlPath(id): UrlPath<String>,
    Json(f): Json<LiftForm>,
) -> Result<Response, ApiRefused> {
    let stop = lift_checked(&console, &v, &id, &f.reason, &f.code).await?;
    Ok(Json(json!({ "stop": stop })).into_response())
}
