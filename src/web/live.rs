//! Live watch of an SSH session, read-only, for auditors and admins: the
//! page plays a Server-Sent Events stream in the vendored asciinema-player
//! (its `eventsource` driver). The stream follows the session's archive as
//! the recorder writes it (a chunk at least every second), through the same
//! asciicast export as downloads and replay, so what a watcher sees is what
//! was recorded. Each watch is audited (`session_watched`: who, which
//! session, when).

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderValue;
use axum::http::header::HeaderName;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Shared;
use super::page::{Refused, esc, layout};
use super::replay::REPLAY_CSP;
use super::sessions::{archive_of, readable};
use super::signin::Viewer;
use crate::recording::Reader;
use crate::store::{AuditEvent, AuditKind, SessionRecord, SessionStatus};

/// How often the archive is read again for new output.
const POLL: Duration = Duration::from_millis(200);

/// A live SSH session `viewer` may watch (auditors and admins).
async fn watchable(
    console: &super::Console,
    viewer: &Viewer,
    id: &str,
) -> Result<(SessionRecord, PathBuf), Refused> {
    if !viewer.may_read_audit() {
        return Err(Refused::Forbidden);
    }
    let s = readable(console, viewer, id).await?;
    if s.protocol != "ssh" {
        return Err(Refused::NotFound);
    }
    let path = archive_of(console, &s).ok_or(Refused::NotFound)?;
    Ok((s, path))
}

/// GET /sessions/{id}/live
pub async fn page(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, Refused> {
    let lang = viewer.lang;
    let (s, _) = watchable(&console, &viewer, &id).await?;
    let body = format!(
        r#"<link rel="stylesheet" href="/assets/asciinema-player.css"><h1>{title}</h1><p><a href="/sessions/{id}">{back}</a> — {who} → {target}</p><p class="hint">{hint}</p><div id="player" class="player" data-live="/sessions/{id}/live.sse"></div><script src="/assets/asciinema-player.min.js"></script><script src="/assets/sekisho-replay.js"></script>"#,
        title = esc(lang.t("live.title")),
        id = s.id,
        back = esc(lang.t("replay.back")),
        who = esc(&s.user),
        target = esc(&s.target),
        hint = esc(lang.t("live.hint")),
    );
    let mut resp = layout(lang, &viewer, lang.t("live.title"), &body).into_response();
    resp.headers_mut().insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(REPLAY_CSP),
    );
    Ok(resp)
}

/// The archive as asciicast lines so far: the header and the event lines.
fn cast_so_far(path: PathBuf) -> Option<(Value, Vec<String>)> {
    let mut reader = Reader::open(&path).ok()?;
    let meta = reader.meta().clone();
    let mut out = Vec::new();
    // A chunk being written is not read yet; the export ends before it.
    crate::replay::terminal::asciicast::write_asciicast(&meta, reader.events(), None, &mut out)
        .ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next()?).ok()?;
    Some((header, lines.map(str::to_string).collect()))
}

/// The first message: the terminal's size and everything shown so far.
fn reset_message(header: &Value, events: &[String]) -> String {
    let mut init = String::new();
    let mut time = 0.0;
    let mut cols = header["width"].as_u64().unwrap_or(80);
    let mut rows = header["height"].as_u64().unwrap_or(24);
    for line in events {
        let Ok(Value::Array(e)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        time = e.first().and_then(Value::as_f64).unwrap_or(time);
        match (
            e.get(1).and_then(Value::as_str),
            e.get(2).and_then(Value::as_str),
        ) {
            (Some("o"), Some(data)) => init.push_str(data),
            (Some("r"), Some(size)) => {
                if let Some((c, r)) = size.split_once('x')
                    && let (Ok(c), Ok(r)) = (c.parse(), r.parse())
                {
                    cols = c;
                    rows = r;
                }
            }
            _ => {}
        }
    }
    json!({ "cols": cols, "rows": rows, "time": time, "init": init }).to_string()
}

/// GET /sessions/{id}/live.sse
pub async fn stream(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Refused> {
    let (s, path) = watchable(&console, &viewer, &id).await?;
    if s.status != SessionStatus::Live {
        return Err(Refused::BadRequest(viewer.lang.t("live.not_live").into()));
    }
    console
        .services
        .store
        .audit(
            &AuditEvent::new(
                AuditKind::SessionWatched,
                format!(
                    "{} watched the live session {} of {} on {}",
                    viewer.user, s.id, s.user, s.target
                ),
            )
            .user(&viewer.user)
            .target(&s.target)
            .session(s.id)
            .source(viewer.source)
            .protocol("web")
            .with("watcher", viewer.user.as_str())
            .with("engineer", s.user.as_str()),
        )
        .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let store = console.services.store.clone();
    tokio::spawn(follow(store, s.id, path, tx));
    Ok(Sse::new(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok(e), rx))
    }))
    .keep_alive(KeepAlive::default()))
}

/// Sends what the archive gains until the session ends or the watcher goes.
async fn follow(
    store: crate::store::Store,
    id: Uuid,
    path: PathBuf,
    tx: tokio::sync::mpsc::Sender<Event>,
) {
    let mut sent: Option<usize> = None;
    loop {
        let p = path.clone();
        if let Ok(Some((header, events))) =
            tokio::task::spawn_blocking(move || cast_so_far(p)).await
        {
            match sent {
                None => {
                    if tx
                        .send(Event::default().data(reset_message(&header, &events)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Some(n) => {
                    for line in events.iter().skip(n) {
                        if tx.send(Event::default().data(line.as_str())).await.is_err() {
                            return;
                        }
                    }
                }
            }
            sent = Some(events.len());
        }
        let live =
            matches!(store.session(id).await, Ok(Some(s)) if s.status == SessionStatus::Live);
        if !live {
            let _ = tx.send(Event::default().event("done").data("ended")).await;
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => return,
        }
    }
}
