//! Signing in to the console and who is signed in.
//!
//! A sign-in is a row of `web_sessions`: the SHA-256 of a random token (the
//! token itself lives only in the `__Host-sekisho` cookie), the person, the
//! CSRF token of that sign-in, the chosen language and when it was last
//! used. A row unused for `[web] idle_timeout` is removed at the next
//! request that presents it; sign-out removes it at once; so does disabling
//! the person (their role and state are read again on every request).
//!
//! The sign-in form itself is protected against login CSRF by a
//! double-submit token: a short-lived `__Host-sekisho-pre` cookie whose
//! value must come back in the form.

use std::net::IpAddr;

use axum::extract::{Form, FromRequestParts, State};
use axum::http::header::{ACCEPT_LANGUAGE, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::Digest as _;
use sqlx::Row as _;

use super::Shared;
use super::i18n::Lang;
use super::page::{Refused, document, esc};
use crate::store::{Role, Store, StoreError, from_micros, to_micros};

/// The session cookie. `__Host-` makes the browser insist on Secure, no
/// Domain and Path=/.
pub const COOKIE_NAME: &str = "__Host-sekisho";
/// The pre-sign-in cookie of the sign-in form (double-submit CSRF token).
pub const PRE_COOKIE_NAME: &str = "__Host-sekisho-pre";

/// The signed-in person making this request, with what the pages need.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: String,
    pub role: Role,
    pub vendor: Option<String>,
    /// The CSRF token of this sign-in, for the forms a page shows.
    pub csrf: String,
    pub lang: Lang,
    pub source: IpAddr,
    token_hash: String,
    /// The id of the API token the caller presented, for token calls (no
    /// sign-in, no cookie, no CSRF token).
    pub api_token: Option<String>,
}

impl Viewer {
    /// The caller of an API request authenticated by an API token.
    pub(crate) fn by_api_token(
        token: crate::auth::api_tokens::ApiToken,
        user: crate::store::UserRecord,
        source: IpAddr,
    ) -> Viewer {
        Viewer {
            user: user.name,
            role: user.role,
            vendor: user.vendor,
            csrf: String::new(),
            lang: Lang::En,
            source,
            token_hash: String::new(),
            api_token: Some(token.id),
        }
    }
}

impl Viewer {
    /// Whether this person reads every session and recording: auditors and
    /// admins only. Everyone else (engineers, approvers, any role added
    /// later) sees their own sessions only: deny by default.
    pub fn reads_all(&self) -> bool {
        matches!(self.role, Role::Auditor | Role::Admin)
    }

    /// Auditors and admins read every session; everyone else their own only.
    pub fn may_read_session(&self, owner: &str) -> bool {
        self.reads_all() || self.user == owner
    }

    /// The audit log is for auditors and admins.
    pub fn may_read_audit(&self) -> bool {
        self.reads_all()
    }

    /// Stopping a live session is for admins.
    pub fn may_kill(&self) -> bool {
        self.role == Role::Admin
    }

    /// The admin pages (policy, people, emergency stops): admins only,
    /// asked first by every handler there.
    pub fn require_admin(&self) -> Result<(), super::page::Refused> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(super::page::Refused::Forbidden)
        }
    }
}

/// One `web_sessions` row.
#[derive(Debug, Clone)]
pub(crate) struct WebSignin {
    pub user: String,
    pub csrf: String,
    pub lang: Option<String>,
    pub last_seen_at: DateTime<Utc>,
}

/// A new random token, URL-safe base64 of 32 bytes.
fn random_token() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Compares two tokens in constant time.
pub(crate) fn same_token(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Starts a sign-in; returns the cookie token and the CSRF token.
pub(crate) async fn open(
    store: &Store,
    user: &str,
    source: IpAddr,
    lang: Option<Lang>,
) -> Result<(String, String), StoreError> {
    let token = random_token();
    let csrf = random_token();
    let now = to_micros(Utc::now());
    sqlx::query(
        "INSERT INTO web_sessions (token_hash, user_name, csrf, source, lang, created_at, last_seen_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(token_hash(&token))
    .bind(user)
    .bind(csrf.as_str())
    .bind(source.to_string())
    .bind(lang.map(Lang::code))
    .bind(now)
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok((token, csrf))
}

/// The sign-in of a cookie token if it is still in use, marking it used
/// now; an idle one is removed and not returned.
pub(crate) async fn find(
    store: &Store,
    token: &str,
    idle: std::time::Duration,
) -> Result<Option<WebSignin>, StoreError> {
    let hash = token_hash(token);
    let row = sqlx::query(
        "SELECT user_name, csrf, lang, last_seen_at FROM web_sessions WHERE token_hash = $1",
    )
    .bind(hash.as_str())
    .fetch_optional(store.pool())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let signin = WebSignin {
        user: row.try_get("user_name")?,
        csrf: row.try_get("csrf")?,
        lang: row.try_get("lang")?,
        last_seen_at: from_micros(row.try_get("last_seen_at")?)?,
    };
    let now = Utc::now();
    let idle = chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::MAX);
    if now.signed_duration_since(signin.last_seen_at) > idle {
        close(store, &hash).await?;
        return Ok(None);
    }
    sqlx::query("UPDATE web_sessions SET last_seen_at = $1 WHERE token_hash = $2")
        .bind(to_micros(now))
        .bind(hash.as_str())
        .execute(store.pool())
        .await?;
    Ok(Some(signin))
}

/// Ends a sign-in (by the hash of its token).
async fn close(store: &Store, hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
        .bind(hash)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

fn set_cookie(name: &str, value: &str, max_age: Option<i64>) -> Option<HeaderValue> {
    let mut c = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&c).ok()
}

/// The `Set-Cookie` that hands a new sign-in to the browser (no Max-Age:
/// it also ends when the browser closes).
pub(crate) fn session_cookie(token: &str) -> Option<HeaderValue> {
    set_cookie(COOKIE_NAME, token, None)
}

/// The language of a request without a sign-in.
pub(crate) fn request_lang(headers: &HeaderMap) -> Lang {
    Lang::from_accept_language(headers.get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
}

/// Who is signed in, from the cookie; `None` when nobody (or the sign-in
/// ended, or the person was disabled meanwhile).
pub(crate) async fn viewer_of(
    console: &super::Console,
    parts: &Parts,
) -> Result<Option<Viewer>, Refused> {
    let Some(token) = cookie(&parts.headers, COOKIE_NAME) else {
        return Ok(None);
    };
    let store = &console.services.store;
    let Some(signin) = find(store, token, console.idle_timeout).await? else {
        return Ok(None);
    };
    let Some(user) = store.user(&signin.user).await? else {
        return Ok(None);
    };
    if !user.enabled {
        close(store, &token_hash(token)).await?;
        return Ok(None);
    }
    let lang = signin
        .lang
        .as_deref()
        .and_then(Lang::from_code)
        .unwrap_or_else(|| request_lang(&parts.headers));
    Ok(Some(Viewer {
        user: user.name,
        role: user.role,
        vendor: user.vendor,
        csrf: signin.csrf,
        lang,
        source: super::client_addr(parts),
        token_hash: token_hash(token),
        api_token: None,
    }))
}

impl FromRequestParts<Shared> for Viewer {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, console: &Shared) -> Result<Self, Refused> {
        viewer_of(console, parts).await?.ok_or(Refused::SignIn)
    }
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    // `csrf` is checked by the guard before this handler runs.
}

/// Checks ID, password and code with the gateways' authenticator (audited
/// as `web`); on failure waits `[auth] failure_delay` like the gateways.
/// Each attempt spends the address's `[limits] signin_attempts_per_minute`
/// budget, shared with SSH and RDP: over it, the answer is the same
/// failure, after the same delay (the gate logs and audits the refusal).
pub(crate) async fn authenticate(
    console: &super::Console,
    user: &str,
    password: &str,
    code: &str,
    source: IpAddr,
) -> Result<crate::store::UserRecord, Refused> {
    if console.admission.attempt(source, "web").is_err() {
        tokio::time::sleep(console.services.config.auth.failure_delay).await;
        return Err(Refused::SignIn);
    }
    let auth = console.services.auth.via("web");
    let ok = auth.check_password(user, password, source).await.is_ok()
        && auth.check_totp(user, code, source).await.is_ok();
    let record = if ok {
        auth.user(user).await.ok().flatten()
    } else {
        None
    };
    match record {
        Some(r) => Ok(r),
        None => {
            tokio::time::sleep(console.services.config.auth.failure_delay).await;
            Err(Refused::SignIn)
        }
    }
}

/// A fresh code for a dangerous action (kill): the person's next code,
/// checked like a sign-in's (a code is accepted once).
pub(crate) async fn fresh_code(
    console: &super::Console,
    viewer: &Viewer,
    code: &str,
) -> Result<(), Refused> {
    if console.admission.attempt(viewer.source, "web").is_err() {
        tokio::time::sleep(console.services.config.auth.failure_delay).await;
        return Err(Refused::BadRequest(viewer.lang.t("error.code").into()));
    }
    let auth = console.services.auth.via("web");
    if auth
        .check_totp(&viewer.user, code, viewer.source)
        .await
        .is_ok()
    {
        Ok(())
    } else {
        tokio::time::sleep(console.services.config.auth.failure_delay).await;
        Err(Refused::BadRequest(viewer.lang.t("error.code").into()))
    }
}

fn signin_page(lang: Lang, pre: &str, failed: bool) -> String {
    let error = if failed {
        format!(
            r#"<p class="error" id="signin-error">{}</p>"#,
            esc(lang.t("signin.failed"))
        )
    } else {
        String::new()
    };
    let body = format!(
        r#"<main class="signin"><h1>{brand}</h1><h2>{title}</h2>{error}<form method="post" action="/signin"><input type="hidden" name="csrf" value="{pre}"><label>{user}<input name="user" id="user" autocomplete="username" required></label><label>{password}<input type="password" name="password" id="password" autocomplete="current-password" required></label><label>{code}<input name="code" id="code" inputmode="numeric" pattern="[0-9]{{6}}" maxlength="6" autocomplete="one-time-code" required></label><button type="submit" id="signin">{submit}</button></form><p class="note">{note}</p></main>"#,
        brand = esc(lang.t("brand")),
        title = esc(lang.t("signin.title")),
        pre = esc(pre),
        user = esc(lang.t("signin.user")),
        password = esc(lang.t("signin.password")),
        code = esc(lang.t("signin.code")),
        submit = esc(lang.t("signin.submit")),
        note = esc(lang.t("signin.note")),
    );
    document(lang, lang.t("signin.title"), &body)
}

/// GET /signin: the form, with a new pre-sign-in token.
pub async fn form(headers: HeaderMap) -> Response {
    let lang = request_lang(&headers);
    let pre = random_token();
    let mut resp = Html(signin_page(lang, &pre, false)).into_response();
    if let Some(c) = set_cookie(PRE_COOKIE_NAME, &pre, Some(600)) {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

/// POST /signin. The CSRF guard has already matched the form's token with
/// the pre-sign-in cookie.
pub async fn submit(
    State(console): State<Shared>,
    parts: Parts,
    Form(f): Form<SignInForm>,
) -> Result<Response, Refused> {
    let lang = request_lang(&parts.headers);
    let source = super::client_addr(&parts);
    match authenticate(&console, f.user.trim(), &f.password, f.code.trim(), source).await {
        Ok(user) => {
            let (token, _csrf) = open(&console.services.store, &user.name, source, None).await?;
            let mut resp = Redirect::to("/sessions").into_response();
            if let Some(c) = session_cookie(&token) {
                resp.headers_mut().append(SET_COOKIE, c);
            }
            if let Some(c) = set_cookie(PRE_COOKIE_NAME, "", Some(0)) {
                resp.headers_mut().append(SET_COOKIE, c);
            }
            Ok(resp)
        }
        Err(Refused::SignIn) => {
            let pre = random_token();
            let mut resp = (
                StatusCode::UNAUTHORIZED,
                Html(signin_page(lang, &pre, true)),
            )
                .into_response();
            if let Some(c) = set_cookie(PRE_COOKIE_NAME, &pre, Some(600)) {
                resp.headers_mut().append(SET_COOKIE, c);
            }
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

/// POST /signout (and the API's logout): ends the sign-in.
pub async fn sign_out(State(console): State<Shared>, viewer: Viewer) -> Result<Response, Refused> {
    close(&console.services.store, &viewer.token_hash).await?;
    let mut resp = Redirect::to("/signin").into_response();
    if let Some(c) = set_cookie(COOKIE_NAME, "", Some(0)) {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    Ok(resp)
}

pub(crate) async fn end(console: &super::Console, viewer: &Viewer) -> Result<(), Refused> {
    close(&console.services.store, &viewer.token_hash).await?;
    Ok(())
}

#[derive(Deserialize)]
pub struct LangForm {
    lang: String,
}

/// POST /lang: the person's choice of language, kept with the sign-in.
pub async fn choose_language(
    State(console): State<Shared>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(f): Form<LangForm>,
) -> Result<Response, Refused> {
    let lang = Lang::from_code(&f.lang)
        .ok_or_else(|| Refused::BadRequest(format!("unknown language {:?}", f.lang)))?;
    sqlx::query("UPDATE web_sessions SET lang = $1 WHERE token_hash = $2")
        .bind(lang.code())
        .bind(viewer.token_hash.as_str())
        .execute(console.services.store.pool())
        .await
        .map_err(|e| Refused::Internal(e.to_string()))?;
    // Back to the page the form was on, if it was ours.
    let back = headers
        .get(axum::http::header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("://").map(|i| &r[i + 3..]))
        .and_then(|r| r.find('/').map(|i| r[i..].to_string()))
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or_else(|| "/sessions".into());
    Ok(Redirect::to(&back).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; __Host-sekisho=tok; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE_NAME), Some("tok"));
        assert_eq!(cookie(&h, PRE_COOKIE_NAME), None);
        h.append(COOKIE, HeaderValue::from_static("__Host-sekisho-pre=p"));
        assert_eq!(cookie(&h, PRE_COOKIE_NAME), Some("p"));
    }

    #[test]
    fn session_cookie_is_strict() {
        let c = session_cookie("abc").expect("a header");
        let c = c.to_str().expect("ascii");
        assert!(c.starts_with("__Host-sekisho=abc; Path=/"), "{c}");
        for attr in ["Secure", "HttpOnly", "SameSite=Strict"] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(!c.contains("Domain"), "{c}");
    }

    #[test]
    fn tokens_are_random_and_compared_exactly() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(same_token(&a, &a.clone()));
        assert!(!same_token(&a, &b));
        assert!(!same_token(&a, ""));
        assert_ne!(token_hash(&a), a);
    }
}
