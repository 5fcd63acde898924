//! The frame every page shares (header, navigation, language and sign-out
//! forms), HTML escaping, times in the configured zone, and error pages.
//! Pages are built as strings: every value from the store or the request
//! goes through [`esc`].

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::i18n::Lang;
use super::signin::Viewer;
use crate::store::Role;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query-string value.
pub fn url_enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A time as people here read it: in the configured zone, with its name.
pub fn when(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// The frame of a signed-in page. `body` is already HTML.
pub fn layout(lang: Lang, viewer: &Viewer, title: &str, body: &str) -> Html<String> {
    let mut nav = format!(r#"<a href="/sessions">{}</a>"#, esc(lang.t("nav.sessions")));
    if viewer.role != Role::Auditor {
        nav.push_str(&format!(
            r#"<a href="/requests">{}</a>"#,
            esc(lang.t("nav.requests"))
        ));
    }
    if viewer.reads_all() {
        nav.push_str(&format!(
            r#"<a href="/audit">{}</a>"#,
            esc(lang.t("nav.audit"))
        ));
    }
    // The admin pages.
    if viewer.role == Role::Admin {
        nav.push_str(&format!(
            r#"<a href="/policy" id="nav-policy">{}</a><a href="/people" id="nav-people">{}</a><a href="/stops" id="nav-stops">{}</a>"#,
            esc(lang.t("nav.policy")),
            esc(lang.t("nav.people")),
            esc(lang.t("nav.stops"))
        ));
    }
    let other = match lang {
        Lang::Ja => Lang::En,
        Lang::En => Lang::Ja,
    };
    let role = match viewer.role {
        Role::Engineer => lang.t("role.engineer"),
        Role::Auditor => lang.t("role.auditor"),
        Role::Admin => lang.t("role.admin"),
        Role::Approver => lang.t("role.approver"),
    };
    let header = format!(
        r#"<header><span class="brand">{brand}</span><nav>{nav}</nav><span class="who">{user} ({role})</span><form method="post" action="/lang" class="inline"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="lang" value="{other}"><button type="submit" id="switch-lang">{switch}</button></form><form method="post" action="/signout" class="inline"><input type="hidden" name="csrf" value="{csrf}"><button type="submit" id="signout">{signout}</button></form></header>"#,
        brand = esc(lang.t("brand")),
        user = esc(&viewer.user),
        role = esc(role),
        csrf = esc(&viewer.csrf),
        other = other.code(),
        switch = esc(lang.t("nav.switch_language")),
        signout = esc(lang.t("nav.signout")),
    );
    Html(document(
        lang,
        title,
        &format!("{header}<main>{body}</main>"),
    ))
}

/// A whole HTML document with the stylesheet and nothing inline.
pub fn document(lang: Lang, title: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html><html lang="{code}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{title} — {brand}</title><link rel="stylesheet" href="/assets/sekisho.css"></head><body>{body}</body></html>"#,
        code = lang.code(),
        title = esc(title),
        brand = esc(lang.t("brand")),
    )
}

/// Why a page or API call was refused.
#[derive(Debug)]
pub enum Refused {
    /// Not signed in, or the sign-in has ended: pages go to the sign-in form.
    SignIn,
    /// Signed in, but the role does not allow this.
    Forbidden,
    NotFound,
    /// A state-changing request without the right CSRF token.
    Csrf,
    BadRequest(String),
    /// Something failed on our side; the detail goes to the log only.
    Internal(String),
}

impl Refused {
    pub fn status(&self) -> StatusCode {
        match self {
            Refused::SignIn => StatusCode::UNAUTHORIZED,
            Refused::Forbidden | Refused::Csrf => StatusCode::FORBIDDEN,
            Refused::NotFound => StatusCode::NOT_FOUND,
            Refused::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refused::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message for the person (no internal detail).
    pub fn message(&self, lang: Lang) -> String {
        match self {
            Refused::SignIn => lang.t("error.signin").into(),
            Refused::Forbidden => lang.t("error.forbidden").into(),
            Refused::NotFound => lang.t("error.not_found").into(),
            Refused::Csrf => lang.t("error.csrf").into(),
            Refused::BadRequest(m) => format!("{}: {m}", lang.t("error.bad_request")),
            Refused::Internal(_) => lang.t("error.internal").into(),
        }
    }

    fn log(&self) {
        if let Refused::Internal(detail) = self {
            tracing::error!(%detail, "console: request failed");
        }
    }
}

impl From<crate::store::StoreError> for Refused {
    fn from(e: crate::store::StoreError) -> Self {
        Refused::Internal(e.to_string())
    }
}

/// Error pages carry no sign-in, so they are in both languages.
impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        self.log();
        if matches!(self, Refused::SignIn) {
            return axum::response::Redirect::to("/signin").into_response();
        }
        let title = format!("{} / {}", self.message(Lang::Ja), self.message(Lang::En));
        let body = format!(
            r#"<main><h1 class="error">{}</h1><p>{}</p><p><a href="/sessions">{} / {}</a></p></main>"#,
            esc(&self.message(Lang::Ja)),
            esc(&self.message(Lang::En)),
            esc(Lang::Ja.t("nav.back")),
            esc(Lang::En.t("nav.back")),
        );
        (self.status(), Html(document(Lang::Ja, &title, &body))).into_response()
    }
}

pub async fn not_found() -> Refused {
    Refused::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(esc("田中"), "田中");
        assert_eq!(url_enc("a b&c=田"), "a%20b%26c%3D%E7%94%B0");
    }

    #[test]
    fn times_in_the_zone() {
        use chrono::TimeZone as _;
        let t = Utc
            .with_ymd_and_hms(2026, 4, 1, 0, 30, 0)
            .single()
            .expect("a time");
        assert_eq!(when(t, chrono_tz::Asia::Tokyo), "2026-04-01 09:30:00 JST");
        assert_eq!(when(t, chrono_tz::UTC), "2026-04-01 00:30:00 UTC");
    }
}
