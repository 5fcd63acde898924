//! SSH replay in the browser: the vendored asciinema-player plays the
//! session's asciicast (the same export as `sekisho export --format
//! asciicast`), with speed, pause, seek, idle skipping and the player's
//! keystroke overlay (input shown apart from output); each line of the
//! keystroke log is a marker and a link to that moment.
//!
//! Readable by whoever may read the session (engineers: their own).

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::HeaderValue;
use axum::http::header::HeaderName;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Shared;
use super::page::{Refused, esc, layout};
use super::sessions::{archive_of, readable};
use super::signin::Viewer;
use crate::recording::Reader;
use crate::replay::terminal::keystrokes::{TypedLine, typed_lines};

/// The replay page's policy: that of every page, plus WebAssembly
/// compilation, which the player's terminal emulator needs. Still no inline
/// script and no `eval`.
pub const REPLAY_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; font-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Deserialize)]
pub struct ReplayQuery {
    /// Start here, seconds from the session start.
    #[serde(default)]
    t: Option<f64>,
}

/// The lines typed in an SSH archive.
pub(crate) async fn lines_of(path: std::path::PathBuf) -> Result<Vec<TypedLine>, Refused> {
    tokio::task::spawn_blocking(move || -> Result<Vec<TypedLine>, String> {
        let mut reader = Reader::open(&path).map_err(|e| e.to_string())?;
        typed_lines(reader.events()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| Refused::Internal(e.to_string()))?
    .map_err(Refused::Internal)
}

/// The typed lines as a list (element id `list_id`), each line's time a
/// link to that moment in the player (the session page and the replay
/// page; on the replay page the player seeks without leaving it).
pub(crate) fn typed_list(session: uuid::Uuid, lines: &[TypedLine], list_id: &str) -> String {
    let mut log = format!(r#"<ol class="typed" id="{list_id}">"#);
    for (i, l) in lines.iter().enumerate() {
        // Whole milliseconds, rounded down: the player opens just before
        // the line's first key, never after its echo.
        let t = (l.t_start_us / 1000) as f64 / 1e3;
        log.push_str(&format!(
            r#"<li><a href="/sessions/{session}/replay?t={t:.3}" data-seek="{t:.3}" data-marker="{i}" class="seek">{clock}</a> <code>{text}</code></li>"#,
            clock = clock(l.t_start_us),
            text = esc(&l.text),
        ));
    }
    log.push_str("</ol>");
    log
}

fn clock(us: u64) -> String {
    let s = us / 1_000_000;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// GET /sessions/{id}/replay
pub async fn page(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<ReplayQuery>,
) -> Result<Response, Refused> {
    let lang = viewer.lang;
    let s = readable(&console, &viewer, &id).await?;
    if s.protocol != "ssh" {
        return Err(Refused::NotFound);
    }
    let path = archive_of(&console, &s).ok_or(Refused::NotFound)?;
    let lines = lines_of(path).await?;
    let start = q.t.filter(|t| t.is_finite() && *t >= 0.0).unwrap_or(0.0);

    let markers: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::json!([l.t_start_us as f64 / 1e6, l.text]))
        .collect();
    let markers = serde_json::Value::Array(markers).to_string();
    let log = typed_list(s.id, &lines, "typed");
    let mut speeds = String::new();
    for sp in ["0.5", "1", "2", "4", "8"] {
        speeds.push_str(&format!(
            r#"<option value="{sp}"{}>{sp}×</option>"#,
            if sp == "1" { " selected" } else { "" }
        ));
    }
    let body = format!(
        r#"<link rel="stylesheet" href="/assets/asciinema-player.css"><h1>{title}</h1><p><a href="/sessions/{id}">{back}</a></p><div class="replay-controls"><label>{speed}<select id="speed">{speeds}</select></label><label class="check"><input type="checkbox" id="idle-skip" checked> {idle}</label></div><div id="player" class="player" data-cast="/sessions/{id}/asciicast" data-start="{start}" data-markers="{markers}"></div><p class="hint">{hint}</p><h2>{typed}</h2>{log}<script src="/assets/asciinema-player.min.js"></script><script src="/assets/sekisho-replay.js"></script>"#,
        title = esc(lang.t("replay.title")),
        id = s.id,
        back = esc(lang.t("replay.back")),
        speed = esc(lang.t("replay.speed")),
        idle = esc(lang.t("replay.idle_skip")),
        markers = esc(&markers),
        hint = esc(lang.t("replay.hint")),
        typed = esc(lang.t("session.keystrokes")),
    );
    let mut resp = layout(lang, &viewer, lang.t("replay.title"), &body).into_response();
    resp.headers_mut().insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(REPLAY_CSP),
    );
    Ok(resp)
}
