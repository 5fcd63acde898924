//! Live watch of an SSH session, read-only, for auditors and admins: the
//! page plays a Server-Sent Events stream in the vendored asciinema-player
//! (its `eventsource` driver). The stream follows the session's archive as
//! the recorder writes it (a chunk at least every second), through the same
//! asciicast conversion as downloads and replay, so what a watcher sees is
//! what was recorded. Each poll reads only the chunks written since the
//! last one ([`Tail`]), so a long session costs the same per poll as a
//! short one. Each watch is audited (`session_watched`: who, which session,
//! when).

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
use crate::recording::Tail;
use crate::replay::terminal::asciicast::{CastLines, cast_header};
use crate::store::{AuditEvent, AuditKind, SessionRecord, SessionStatus};

/// How often the archive is read again for new output.
const POLL: Duration = Duration::from_millis(200);

/// A session of `protocol` (`ssh`, `rdp`) `viewer` may watch (auditors and
/// admins), with its archive.
pub(super) async fn watchable(
    console: &super::Console,
    viewer: &Viewer,
    id: &str,
    protocol: &str,
) -> Result<(SessionRecord, PathBuf), Refused> {
    if !viewer.may_read_audit() {
        return Err(Refused::Forbidden);
    }
    let s = readable(console, viewer, id).await?;
    if s.protocol != protocol {
        return Err(Refused::NotFound);
    }
    let path = archive_of(console, &s).ok_or(Refused::NotFound)?;
    Ok((s, path))
}

/// The `session_watched` audit event of a watch starting (SSH or RDP).
pub(super) async fn audit_watch(
    console: &super::Console,
    viewer: &Viewer,
    s: &SessionRecord,
) -> Result<(), Refused> {
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
    Ok(())
}

/// GET /sessions/{id}/live
pub async fn page(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, Refused> {
    let lang = viewer.lang;
    let (s, _) = watchable(&console, &viewer, &id, "ssh").await?;
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

/// The archive being followed and its conversion to asciicast lines.
struct Follower {
    tail: Tail,
    lines: CastLines,
}

impl Follower {
    fn open(path: &std::path::Path) -> Option<Follower> {
        Some(Follower {
            tail: Tail::open(path).ok()?,
            lines: CastLines::new(None),
        })
    }

    /// The asciicast lines of what was written since the last call (and,
    /// the first time, the header line first).
    fn read_new(&mut self, first: bool) -> Result<Vec<Value>, String> {
        let events = self.tail.poll().map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(events.len() + 1);
        if first {
            out.push(cast_header(self.tail.meta(), events.first()));
        }
        out.extend(events.into_iter().filter_map(|e| self.lines.line(e)));
        Ok(out)
    }
}

/// The first message: the terminal's size and everything shown so far.
fn reset_message(header: &Value, events: &[Value]) -> String {
    let mut init = String::new();
    let mut time = 0.0;
    let mut cols = header["width"].as_u64().unwrap_or(80);
    let mut rows = header["height"].as_u64().unwrap_or(24);
    for line in events {
        let Value::Array(e) = line else {
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
    let (s, path) = watchable(&console, &viewer, &id, "ssh").await?;
    if s.status != SessionStatus::Live {
        return Err(Refused::BadRequest(viewer.lang.t("live.not_live").into()));
    }
    audit_watch(&console, &viewer, &s).await?;
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
    let mut follower: Option<Follower> = None;
    let mut started = false;
    loop {
        let p = path.clone();
        let mut f = follower.take();
        let read = tokio::task::spawn_blocking(move || {
            if f.is_none() {
                f = Follower::open(&p);
            }
            let lines = f.as_mut().map(|f| f.read_new(!started));
            (f, lines)
        })
        .await;
        match read {
            Ok((f, Some(Ok(lines)))) => {
                follower = f;
                if !started {
                    let (header, events) = lines.split_first().unzip();
                    let header = header.cloned().unwrap_or(Value::Null);
                    let events = events.unwrap_or(&[]);
                    if tx
                        .send(Event::default().data(reset_message(&header, events)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    started = true;
                } else {
                    for line in &lines {
                        if tx
                            .send(Event::default().data(line.to_string()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            Ok((f, Some(Err(e)))) => {
                // A damaged chunk: say so once and stop following.
                tracing::warn!(session = %id, error = %e, "live watch: the archive cannot be read on");
                drop(f);
                let _ = tx
                    .send(Event::default().event("done").data("unreadable"))
                    .await;
                return;
            }
            // Not readable yet (the header is being written): try again.
            Ok((_, None)) | Err(_) => {}
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
