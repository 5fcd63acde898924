//! What stands in front of every handler: the CSRF check of state-changing
//! requests and the security headers of every answer.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::page::Refused;
use super::signin::{COOKIE_NAME, PRE_COOKIE_NAME, cookie, find, same_token};

/// The largest form or JSON body the console reads.
const MAX_BODY: usize = 64 * 1024;
/// ... except for a policy file edited in the browser, which comes as a
/// form, percent-encoded (up to 3× its size).
const MAX_POLICY_BODY: usize = 512 * 1024;

/// The header scripts send the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Refuses (403) a state-changing request that does not carry the CSRF
/// token of its sign-in, as the form field `csrf` or the `X-CSRF-Token`
/// header. The sign-in form is matched against its pre-sign-in cookie; the
/// API's login, which has no cookie yet, must be JSON (a browser cannot
/// send that cross-site without CORS, which the console never allows).
pub async fn csrf(State(console): State<Shared>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    // API calls with a token carry no ambient credential a forged request
    // could ride on (the API reads only the token then): nothing to check.
    if path.starts_with("/api/v1/") && req.headers().contains_key(AUTHORIZATION) {
        return next.run(req).await;
    }
    if path == "/api/v1/login" {
        let json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        return if json {
            next.run(req).await
        } else {
            refuse(&path)
        };
    }
    let (parts, body) = req.into_parts();
    let limit = if path.starts_with("/policy/") {
        MAX_POLICY_BODY
    } else {
        MAX_BODY
    };
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return Refused::BadRequest("request body too large".into()).into_response(),
    };
    let sent = parts
        .headers
        .get(HeaderName::from_static(CSRF_HEADER))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| form_field(&bytes, "csrf"));
    let expected = if path == "/signin" {
        cookie(&parts.headers, PRE_COOKIE_NAME).map(str::to_string)
    } else {
        match cookie(&parts.headers, COOKIE_NAME) {
            Some(token) => match find(&console.services.store, token, console.idle_timeout).await {
                Ok(s) => s.map(|s| s.csrf),
                Err(e) => return Refused::from(e).into_response(),
            },
            None => None,
        }
    };
    match (sent, expected) {
        (Some(s), Some(e)) if !e.is_empty() && same_token(&s, &e) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        _ => {
            tracing::info!(
                path,
                "console: state-changing request without a valid CSRF token refused"
            );
            refuse(&path)
        }
    }
}

fn refuse(path: &str) -> Response {
    if path.starts_with("/api/") {
        super::api::refusal(Refused::Csrf)
    } else {
        Refused::Csrf.into_response()
    }
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// Security headers on every answer.
pub async fn headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/assets/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    };
    // A page may bring a policy of its own (the replay page); never a looser
    // one than this for anything else.
    if !h.contains_key("content-security-policy") {
        set(
            h,
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; \
         connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        );
    }
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    set(h, "strict-transport-security", "max-age=31536000");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    );
    if !is_asset {
        set(h, "cache-control", "no-store");
    }
    resp
}
