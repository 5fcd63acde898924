//! The JSON API under `/api/v1`, for scripts: the same sign-in (a cookie),
//! the same roles and the same queries as the pages.
//!
//! - `POST /api/v1/login` `{"user","password","code"}` → the cookie and
//!   `{"user","role","csrf"}`; state-changing calls send `X-CSRF-Token: csrf`.
//! - Or, instead of a sign-in, `Authorization: Bearer TOKEN` with an API
//!   token an administrator issued ([`crate::auth::api_tokens`]): the
//!   token's person and role, no cookie and no CSRF token (a browser never
//!   sends this header cross-site without CORS, which the console does not
//!   allow).
//! - `POST /api/v1/logout`
//! - `GET /api/v1/sessions?user=&vendor=&system=&target=&protocol=&state=&from=&to=&page=`
//! - `GET /api/v1/sessions/{id}` (with the archive's verify verdict)
//! - `GET /api/v1/audit?since=&until=&user=&target=&kind=&session=&limit=`
//! - `POST /api/v1/sessions/{id}/kill` `{"reason","code"}` (admin, fresh code)
//! - `GET /api/v1/stops`, `POST /api/v1/stops` `{"scope","reason","code"}`,
//!   `POST /api/v1/stops/{id}/lift` `{"reason","code"}`: emergency stops
//!   (admin, fresh code; `web/stop.rs`)
//!
//! Errors are `{"error": "..."}` with 400, 401, 403, 404 or 500.

use axum::Router;
use axum::extract::{FromRequestParts, Json, Path as UrlPath, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::Shared;
use super::audit::AuditQuery;
use super::i18n::Lang;
use super::page::Refused;
use super::sessions::{PAGE_SIZE, SessionQuery, archive_of, readable, verdict};
use super::signin::{Viewer, authenticate, open, session_cookie, viewer_of};

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/sessions", get(sessions))
        .route("/sessions/{id}", get(session))
        .route("/sessions/{id}/kill", post(kill))
        .route("/audit", get(audit))
        // --- people: emergency stops ---
        .route(
            "/stops",
            get(super::stop::api_list).post(super::stop::api_put),
        )
        .route("/stops/{id}/lift", post(super::stop::api_lift))
        .fallback(|| async { refusal(Refused::NotFound) })
}

/// A refusal as the API answers it: JSON, English, no redirect.
pub(crate) fn refusal(r: Refused) -> Response {
    if let Refused::Internal(detail) = &r {
        tracing::error!(%detail, "console API: request failed");
    }
    let status = r.status();
    (status, Json(json!({ "error": r.message(Lang::En) }))).into_response()
}

/// A refusal from an API handler.
pub struct ApiRefused(Refused);

impl From<Refused> for ApiRefused {
    fn from(r: Refused) -> Self {
        ApiRefused(r)
    }
}

impl From<crate::store::StoreError> for ApiRefused {
    fn from(e: crate::store::StoreError) -> Self {
        ApiRefused(e.into())
    }
}

impl IntoResponse for ApiRefused {
    fn into_response(self) -> Response {
        refusal(self.0)
    }
}

/// The signed-in caller of an API route (401 JSON when nobody).
pub struct Caller(pub(crate) Viewer);

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiRefused;

    async fn from_request_parts(parts: &mut Parts, console: &Shared) -> Result<Self, ApiRefused> {
        // A presented token is the only credential looked at: a bad one (or
        // another scheme) is refused even if a sign-in cookie came along,
        // since the CSRF check let the request through for its header.
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            let token = bearer(parts).ok_or(Refused::SignIn)?;
            let found =
                crate::auth::api_tokens::authenticate(&console.services.store, token).await?;
            let (token, user) = found.ok_or(Refused::SignIn)?;
            return Ok(Caller(Viewer::by_api_token(
                token,
                user,
                super::client_addr(parts),
            )));
        }
        let mut v = viewer_of(console, parts).await?.ok_or(Refused::SignIn)?;
        // Messages in the API are English.
        v.lang = Lang::En;
        Ok(Caller(v))
    }
}

/// The token of an `Authorization: Bearer …` header.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
    code: String,
}

/// POST /api/v1/login
async fn login(
    State(console): State<Shared>,
    parts: Parts,
    Json(l): Json<Login>,
) -> Result<Response, ApiRefused> {
    let source = super::client_addr(&parts);
    let user = authenticate(&console, l.user.trim(), &l.password, l.code.trim(), source).await?;
    let (token, csrf) = open(&console.services.store, &user.name, source, None).await?;
    let mut resp = Json(json!({
        "user": user.name,
        "role": user.role.as_str(),
        "csrf": csrf,
        "idle_timeout_seconds": console.idle_timeout.as_secs(),
    }))
    .into_response();
    if let Some(c) = session_cookie(&token) {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    Ok(resp)
}

/// POST /api/v1/logout
async fn logout(State(console): State<Shared>, Caller(v): Caller) -> Result<Response, ApiRefused> {
    if v.api_token.is_some() {
        return Err(Refused::BadRequest(
            "an API token has no sign-in to end; an administrator revokes it (sekisho user token revoke)"
                .into(),
        )
        .into());
    }
    super::signin::end(&console, &v).await?;
    Ok(Json(json!({ "signed_out": v.user })).into_response())
}

/// GET /api/v1/sessions
async fn sessions(
    State(console): State<Shared>,
    Caller(v): Caller,
    Query(q): Query<SessionQuery>,
) -> Result<Response, ApiRefused> {
    let filter = q.filter(&console, &v)?;
    let total = console.services.store.count_sessions(&filter).await?;
    let rows = console.services.store.sessions(&filter).await?;
    Ok(Json(json!({
        "total": total,
        "page": q.page(),
        "page_size": PAGE_SIZE,
        "sessions": rows,
    }))
    .into_response())
}

/// GET /api/v1/sessions/{id}
async fn session(
    State(console): State<Shared>,
    Caller(v): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiRefused> {
    let s = readable(&console, &v, &id).await?;
    let verdict = match archive_of(&console, &s) {
        Some(p) => Some(verdict(&console, &p).await?),
        None => None,
    };
    Ok(Json(json!({ "session": s, "verify": verdict })).into_response())
}

/// GET /api/v1/audit
async fn audit(
    State(console): State<Shared>,
    Caller(v): Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiRefused> {
    let limit = q.limit.unwrap_or(200).clamp(1, 10_000);
    let records = super::audit::events(&console, &v, &q, Some(limit)).await?;
    Ok(Json(json!({ "events": records })).into_response())
}

#[derive(Deserialize)]
struct Kill {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    code: String,
}

/// POST /api/v1/sessions/{id}/kill
async fn kill(
    State(console): State<Shared>,
    Caller(v): Caller,
    UrlPath(id): UrlPath<String>,
    Json(k): Json<Kill>,
) -> Result<Response, ApiRefused> {
    let s = super::sessions::stop(&console, &v, &id, &k.reason, &k.code).await?;
    Ok(Json(json!({ "kill_requested": s.id })).into_response())
}
