//! RDP sessions in the browser: replay on a canvas, live watch, and the
//! MP4 download.
//!
//! The server decodes the archive ([`crate::replay::desktop::frames`]) and
//! the browser only draws: `assets/sekisho-desktop.js` (written for
//! sekisho, no build step) paints the regions it is sent onto a `<canvas>`
//! and the pointer onto a second canvas over it.
//!
//! ## Frame transport
//!
//! `GET /sessions/{id}/desktop/frames?from=MS&to=MS` answers one binary
//! body (`application/octet-stream`) for that stretch of session time (at
//! most [`MAX_RANGE_MS`]): a full frame showing the desktop at `from`,
//! replayed from the archive's keyframe before it, then what changed, sampled
//! [`REPLAY_FPS`] times a second (only when something changed), and where
//! the pointer went. A seek asks for the frame at the new time alone
//! (`from` = `to`: the keyframe looked up in the archive's [`SeekIndex`],
//! the replay from it, one full PNG), then playing goes on with 5-s
//! stretches, the next fetched while the current one plays
//! (`cargo bench --bench desktop_seek`). The seek index (keyframe times and
//! desktop sizes) takes one pass over the archive; it is built when the
//! replay page opens and kept for sealed archives.
//!
//! The body is `SKF1` then records, little-endian, times in ms of session
//! time:
//!
//! | kind (u8) | then |
//! |---|---|
//! | 1 frame | t u32, width u16, height u16, full u8, n u16, n × (x u16, y u16, w u16, h u16, len u32, PNG\[len\]) |
//! | 2 pointer | t u32, x u16, y u16 |
//! | 3 end | t u32 (nothing follows: the stretch or the live session ended) |
//!
//! Each changed rectangle is a PNG (RGB, fast deflate): lossless, so the
//! canvas shows the pixels `sekisho export --format png` gives, small for
//! office desktops (flat colours, text), and decoded by the browser itself
//! (`createImageBitmap`), with no decoder of ours in JavaScript. A full frame
//! (after a resize, or when more than half the desktop changed) is one
//! rectangle covering the desktop.
//!
//! ## Live watch
//!
//! `GET /sessions/{id}/desktop/live.bin` is the same records as one
//! streamed body that lasts as long as the session: a full frame of the
//! desktop as recorded so far, then what changed. The server follows the
//! archive incrementally ([`crate::recording::Tail`]): each poll reads
//! only the chunks the recorder completed since the last one (at least one
//! a second) and applies them to the watcher's own framebuffer, so a watch
//! costs the decoding of the session once, not a re-read per poll. It does
//! not tap the gateway's recorder: what a watcher sees is exactly what was
//! recorded (the evidence), the gateway stays unaware of the console, and a
//! watcher can never slow the session down. Latency: the recorder's flush
//! interval (1 s) plus [`LIVE_POLL`]. Auditors and admins only; each watch
//! is audited (`session_watched`), as for SSH.
//!
//! ## Who may do what
//!
//! Replay: whoever may read the session (engineers their own), as the SSH
//! replay. MP4: the same, plus a fresh code (exporting a recording is a
//! dangerous action), as a POST with the CSRF token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_TYPE, HeaderName};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use uuid::Uuid;

use super::Shared;
use super::page::{Refused, esc, layout};
use super::sessions::{archive_of, attachment, readable};
use super::signin::Viewer;
use crate::recording::{Reader, Tail};
use crate::replay::desktop::frames::{
    FrameStream, FrameUpdate, Pace, PointerMove, StreamOptions, frame_of, pointer_of,
};
use crate::replay::desktop::render::{RenderError, Renderer};
use crate::replay::desktop::seek::{SeekIndex, seek};
use crate::store::SessionStatus;

/// Frames a second the replay samples (a frame only when something changed).
pub const REPLAY_FPS: u32 = 10;
/// The longest stretch one request may ask for.
pub const MAX_RANGE_MS: u64 = 60_000;
/// How often a live watch looks for new chunks in the archive.
pub const LIVE_POLL: Duration = Duration::from_millis(200);

const MAGIC: &[u8; 4] = b"SKF1";
const KIND_FRAME: u8 = 1;
const KIND_POINTER: u8 = 2;
const KIND_END: u8 = 3;

fn ms(t_us: u64) -> u32 {
    u32::try_from(t_us / 1000).unwrap_or(u32::MAX)
}

fn side(v: u32) -> [u8; 2] {
    u16::try_from(v).unwrap_or(u16::MAX).to_le_bytes()
}

/// Builds the records of the frame transport (see the module doc).
#[derive(Default)]
pub struct FrameWriter {
    buf: Vec<u8>,
}

impl FrameWriter {
    /// A body: the magic, then records.
    pub fn body() -> FrameWriter {
        FrameWriter {
            buf: MAGIC.to_vec(),
        }
    }

    pub fn frame(&mut self, f: &FrameUpdate) -> Result<(), RenderError> {
        self.buf.push(KIND_FRAME);
        self.buf.extend_from_slice(&ms(f.t_us).to_le_bytes());
        self.buf.extend_from_slice(&side(f.width));
        self.buf.extend_from_slice(&side(f.height));
        self.buf.push(u8::from(f.full));
        let n = u16::try_from(f.regions.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&n.to_le_bytes());
        for r in f.regions.iter().take(usize::from(n)) {
            for v in [r.rect.x, r.rect.y, r.rect.width, r.rect.height] {
                self.buf.extend_from_slice(&side(v));
            }
            let png = region_png(r.rect.width, r.rect.height, &r.rgba)?;
            let len = u32::try_from(png.len()).unwrap_or(u32::MAX);
            self.buf.extend_from_slice(&len.to_le_bytes());
            self.buf.extend_from_slice(&png);
        }
        Ok(())
    }

    pub fn pointer(&mut self, m: &PointerMove) {
        self.buf.push(KIND_POINTER);
        self.buf.extend_from_slice(&ms(m.t_us).to_le_bytes());
        self.buf.extend_from_slice(&m.x.to_le_bytes());
        self.buf.extend_from_slice(&m.y.to_le_bytes());
    }

    pub fn end(&mut self, t_us: u64) {
        self.buf.push(KIND_END);
        self.buf.extend_from_slice(&ms(t_us).to_le_bytes());
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// One rectangle as PNG: RGB (the desktop is opaque), fast deflate.
fn region_png(w: u32, h: u32, rgba: &[u8]) -> Result<Vec<u8>, RenderError> {
    let rgb: Vec<u8> = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    let mut out = Vec::with_capacity(rgb.len() / 8 + 64);
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut wr = enc.write_header()?;
    wr.write_image_data(&rgb)?;
    wr.finish()?;
    Ok(out)
}

/// The body answering a request for `from_us..=to_us` of a recording
/// (`index`: its [`SeekIndex`]): a full frame at `from_us`, then changes
/// and pointer moves, then the end.
pub fn frames_between(
    reader: &mut Reader,
    index: &SeekIndex,
    from_us: u64,
    to_us: u64,
) -> Result<Vec<u8>, RenderError> {
    let mut stream = FrameStream::with_index(
        reader,
        StreamOptions {
            pace: Pace::Sampled { fps: REPLAY_FPS },
            keyframe_interval_us: 0,
            from_us,
            to_us,
        },
        index,
    )?;
    let mut w = FrameWriter::body();
    while let Some(frame) = stream.next_frame()? {
        // Moves up to the frame's time come before it.
        for m in stream.take_pointer_moves() {
            w.pointer(&m);
        }
        w.frame(&frame)?;
    }
    for m in stream.take_pointer_moves() {
        w.pointer(&m);
    }
    w.end(to_us);
    Ok(w.into_bytes())
}

/// Seek indexes of sealed archives the player asked for, by path; an
/// archive being written gets a fresh one each time (it still grows).
/// Bounded: past [`CACHED_INDEXES`] the cache starts over.
static SEEK_INDEXES: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<PathBuf, std::sync::Arc<SeekIndex>>>,
> = std::sync::LazyLock::new(Default::default);
const CACHED_INDEXES: usize = 64;

/// The seek index of the archive `reader` has open at `path`.
fn seek_index(path: &Path, reader: &mut Reader) -> Result<std::sync::Arc<SeekIndex>, RenderError> {
    let cached = SEEK_INDEXES.lock().ok().and_then(|m| m.get(path).cloned());
    if let Some(index) = cached {
        return Ok(index);
    }
    // Sealed before the pass: the pass saw the whole recording.
    let sealed = reader.is_sealed()?;
    let index = std::sync::Arc::new(SeekIndex::build(reader)?);
    if sealed && let Ok(mut m) = SEEK_INDEXES.lock() {
        if m.len() >= CACHED_INDEXES {
            m.clear();
        }
        m.insert(path.to_path_buf(), index.clone());
    }
    Ok(index)
}

/// An RDP session `viewer` may read, and its archive.
async fn desktop_session(
    console: &super::Console,
    viewer: &Viewer,
    id: &str,
) -> Result<(crate::store::SessionRecord, PathBuf), Refused> {
    let s = readable(console, viewer, id).await?;
    if s.protocol != "rdp" {
        return Err(Refused::NotFound);
    }
    let path = archive_of(console, &s).ok_or(Refused::NotFound)?;
    Ok((s, path))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Refused> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Refused::Internal(e.to_string()))?
        .map_err(Refused::Internal)
}

/// What the replay page needs from the archive.
struct Overview {
    duration_ms: u64,
    width: u32,
    height: u32,
    /// (ms, text) of each line typed.
    lines: Vec<(u64, String)>,
}

fn overview(path: &Path) -> Result<Overview, String> {
    let mut reader = Reader::open(path).map_err(|e| e.to_string())?;
    let meta = reader.meta().clone();
    let (width, height) = meta
        .desktop
        .as_ref()
        .map_or((0, 0), |d| (d.width, d.height));
    let duration_us = reader
        .index()
        .map_err(|e| e.to_string())?
        .last()
        .map_or(0, |e| e.t_last_us);
    let info = meta.rdp.clone().unwrap_or_default();
    let lines = crate::replay::desktop::keystrokes::keystroke_log(&info, reader.events())
        .map(|log| {
            log.lines
                .into_iter()
                .map(|l| (l.t_start_us / 1000, l.text))
                .collect()
        })
        .unwrap_or_default();
    Ok(Overview {
        duration_ms: duration_us / 1000,
        width,
        height,
        lines,
    })
}

fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

#[derive(Deserialize)]
pub struct ReplayQuery {
    /// Start here, seconds from the session start.
    #[serde(default)]
    t: Option<f64>,
}

/// The player's markup: the desktop canvas with the pointer canvas over it.
fn player(attrs: &str, width: u32, height: u32) -> String {
    format!(
        r#"<link rel="stylesheet" href="/assets/sekisho-desktop.css"><div class="desktop-player" id="desktop-player" {attrs}><canvas id="desktop" width="{width}" height="{height}"></canvas><canvas id="pointer" width="{width}" height="{height}"></canvas></div><p class="desktop-status" id="desktop-status"></p>"#
    )
}

/// GET /sessions/{id}/desktop
pub async fn replay_page(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<ReplayQuery>,
) -> Result<Response, Refused> {
    let lang = viewer.lang;
    let (s, path) = desktop_session(&console, &viewer, &id).await?;
    // The seek index, ready before the first seek asks for it.
    let p = path.clone();
    tokio::task::spawn_blocking(move || {
        if let Ok(mut reader) = Reader::open(&p) {
            let _ = seek_index(&p, &mut reader);
        }
    });
    let o = blocking(move || overview(&path)).await?;
    let start_ms =
        q.t.filter(|t| t.is_finite() && *t >= 0.0)
            .map_or(0, |t| (t * 1000.0) as u64)
            .min(o.duration_ms);
    let mut speeds = String::new();
    for sp in ["0.5", "1", "2", "4", "8", "16"] {
        speeds.push_str(&format!(
            r#"<option value="{sp}"{}>{sp}×</option>"#,
            if sp == "1" { " selected" } else { "" }
        ));
    }
    let mut log = String::new();
    for (ms, text) in &o.lines {
        log.push_str(&format!(
            r#"<li><a href="/sessions/{id}/desktop?t={t:.3}" data-seek="{ms}" class="seek">{clock}</a> <code>{text}</code></li>"#,
            id = s.id,
            t = *ms as f64 / 1000.0,
            clock = clock(*ms),
            text = esc(text),
        ));
    }
    let attrs = format!(
        r#"data-frames="/sessions/{id}/desktop/frames" data-duration="{dur}" data-start="{start_ms}" data-play="{play}" data-pause="{pause}" data-error="{error}""#,
        id = s.id,
        dur = o.duration_ms,
        play = esc(lang.t("desktop.play")),
        pause = esc(lang.t("desktop.pause")),
        error = esc(lang.t("desktop.error")),
    );
    let body = format!(
        r#"<h1>{title}</h1><p><a href="/sessions/{id}">{back}</a> — {who} → {target}</p><div class="replay-controls"><button type="button" id="play">{play}</button><label>{speed}<select id="speed">{speeds}</select></label><label class="desktop-seek">{position} <span><span id="clock">{now}</span> / {total}</span><input type="range" id="seek" min="0" max="{dur}" step="any" value="{start_ms}"></label></div>{player}<p class="hint">{hint}</p><h2>{typed}</h2><ol class="typed" id="typed">{log}</ol><script src="/assets/sekisho-desktop.js"></script>"#,
        title = esc(lang.t("desktop.title")),
        id = s.id,
        back = esc(lang.t("replay.back")),
        who = esc(&s.user),
        target = esc(&s.target),
        play = esc(lang.t("desktop.play")),
        speed = esc(lang.t("replay.speed")),
        position = esc(lang.t("desktop.position")),
        now = clock(start_ms),
        total = clock(o.duration_ms),
        dur = o.duration_ms,
        player = player(&attrs, o.width, o.height),
        hint = esc(lang.t("desktop.hint")),
        typed = esc(lang.t("session.keystrokes")),
    );
    Ok(layout(lang, &viewer, lang.t("desktop.title"), &body).into_response())
}

#[derive(Deserialize)]
pub struct FramesQuery {
    /// ms from the session start.
    from: u64,
    /// ms; at most `from` + [`MAX_RANGE_MS`].
    to: u64,
}

fn octets(body: Body) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// GET /sessions/{id}/desktop/frames?from=MS&to=MS
pub async fn frames(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<FramesQuery>,
) -> Result<Response, Refused> {
    let (_, path) = desktop_session(&console, &viewer, &id).await?;
    if q.to < q.from || q.to - q.from > MAX_RANGE_MS {
        return Err(Refused::BadRequest(format!(
            "from {} to {}: give a stretch of at most {MAX_RANGE_MS} ms",
            q.from, q.to
        )));
    }
    let (from_us, to_us) = (q.from.saturating_mul(1000), q.to.saturating_mul(1000));
    let body = blocking(move || {
        let mut reader = Reader::open(&path).map_err(|e| e.to_string())?;
        let index = seek_index(&path, &mut reader).map_err(|e| e.to_string())?;
        frames_between(&mut reader, &index, from_us, to_us).map_err(|e| e.to_string())
    })
    .await?;
    Ok(octets(Body::from(body)))
}

/// A live watch's own replay of the archive, following it as it grows.
struct LiveDesktop {
    tail: Tail,
    renderer: Renderer,
    fastpath_channel: u32,
    pointer: Option<(u16, u16)>,
    started: bool,
    size: (u32, u32),
    last_t: u64,
}

impl LiveDesktop {
    /// Replays from the keyframe before the archive's end.
    fn open(path: &Path) -> Result<LiveDesktop, RenderError> {
        let mut reader = Reader::open(path)?;
        let (renderer, start) = seek(&mut reader, u64::MAX)?;
        let fastpath_channel = reader.meta().rdp.as_ref().map_or(0, |i| i.fastpath_channel);
        let size = (renderer.width(), renderer.height());
        Ok(LiveDesktop {
            tail: reader.tail_from(start)?,
            renderer,
            fastpath_channel,
            pointer: None,
            started: false,
            size,
            last_t: start,
        })
    }

    /// Records for what the archive gained since the last step (the first:
    /// the whole desktop and the pointer as recorded so far).
    fn step(&mut self) -> Result<Vec<u8>, RenderError> {
        let mut moves = Vec::new();
        for ev in self.tail.poll()? {
            self.last_t = ev.t_us;
            if let Some(p) = pointer_of(&ev.event, self.fastpath_channel) {
                if self.pointer != Some(p) {
                    moves.push(PointerMove {
                        t_us: ev.t_us,
                        x: p.0,
                        y: p.1,
                    });
                }
                self.pointer = Some(p);
            }
            self.renderer.apply(&ev.event);
        }
        let mut w = if self.started {
            FrameWriter::default()
        } else {
            FrameWriter::body()
        };
        let size = (self.renderer.width(), self.renderer.height());
        let damage = self.renderer.take_damage();
        let full = !self.started || size != self.size;
        if let Some(frame) = frame_of(&self.renderer, damage, full, self.last_t) {
            w.frame(&frame)?;
        }
        self.size = size;
        if !self.started {
            if let Some((x, y)) = self.pointer {
                w.pointer(&PointerMove {
                    t_us: self.last_t,
                    x,
                    y,
                });
            }
            self.started = true;
        } else {
            for m in &moves {
                w.pointer(m);
            }
        }
        Ok(w.into_bytes())
    }
}

/// GET /sessions/{id}/desktop/live
pub async fn live_page(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, Refused> {
    let lang = viewer.lang;
    let (s, path) = super::live::watchable(&console, &viewer, &id, "rdp").await?;
    let (width, height) = blocking(move || {
        let reader = Reader::open(&path).map_err(|e| e.to_string())?;
        Ok(reader
            .meta()
            .desktop
            .as_ref()
            .map_or((0, 0), |d| (d.width, d.height)))
    })
    .await?;
    let attrs = format!(
        r#"data-live="/sessions/{id}/desktop/live.bin" data-ended-text="{ended}" data-error="{error}""#,
        id = s.id,
        ended = esc(lang.t("desktop.ended")),
        error = esc(lang.t("desktop.error")),
    );
    let body = format!(
        r#"<h1>{title}</h1><p><a href="/sessions/{id}">{back}</a> — {who} → {target}</p><p class="hint">{hint}</p>{player}<script src="/assets/sekisho-desktop.js"></script>"#,
        title = esc(lang.t("live.title")),
        id = s.id,
        back = esc(lang.t("replay.back")),
        who = esc(&s.user),
        target = esc(&s.target),
        hint = esc(lang.t("live.hint")),
        player = player(&attrs, width, height),
    );
    let mut resp = layout(lang, &viewer, lang.t("live.title"), &body).into_response();
    // Nothing on this page may be cached: the desktop is live.
    resp.headers_mut().insert(
        HeaderName::from_static("cache-control"),
        HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// GET /sessions/{id}/desktop/live.bin
pub async fn live_stream(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, Refused> {
    let (s, path) = super::live::watchable(&console, &viewer, &id, "rdp").await?;
    if s.status != SessionStatus::Live {
        return Err(Refused::BadRequest(viewer.lang.t("live.not_live").into()));
    }
    let live = blocking(move || LiveDesktop::open(&path).map_err(|e| e.to_string())).await?;
    super::live::audit_watch(&console, &viewer, &s).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(follow(console.services.store.clone(), s.id, live, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    Ok(octets(Body::from_stream(stream)))
}

/// Sends what the archive gains until the recording is complete (or the
/// session has been over for a few seconds) or the watcher goes.
async fn follow(
    store: crate::store::Store,
    id: Uuid,
    mut live: LiveDesktop,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut over_since: Option<std::time::Instant> = None;
    loop {
        let stepped = tokio::task::spawn_blocking(move || {
            let out = live.step();
            (live, out)
        })
        .await;
        let (back, out) = match stepped {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "console: live desktop watch failed");
                return;
            }
        };
        live = back;
        match out {
            Ok(bytes) if !bytes.is_empty() => {
                if tx.send(Bytes::from(bytes)).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "console: reading a live desktop archive");
                break;
            }
        }
        if live.tail.sealed() {
            break;
        }
        let is_live =
            matches!(store.session(id).await, Ok(Some(s)) if s.status == SessionStatus::Live);
        // The recorder seals the archive shortly after the session ends.
        if !is_live
            && over_since
                .get_or_insert_with(std::time::Instant::now)
                .elapsed()
                > Duration::from_secs(3)
        {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(LIVE_POLL) => {}
            _ = tx.closed() => return,
        }
    }
    let mut w = FrameWriter::default();
    w.end(live.last_t);
    let _ = tx.send(Bytes::from(w.into_bytes())).await;
}

#[derive(Deserialize)]
pub struct Mp4Form {
    #[serde(default)]
    code: String,
}

/// Frames a second of the MP4 download (as `export --format mp4`'s default).
const MP4_FPS: u32 = 10;

/// POST /sessions/{id}/mp4 (a fresh code): the recording as MP4.
pub async fn mp4(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(id): UrlPath<String>,
    Form(f): Form<Mp4Form>,
) -> Result<Response, Refused> {
    let (s, path) = desktop_session(&console, &viewer, &id).await?;
    super::sessions::export_allowed(&console, &viewer, &s, &f.code, "mp4").await?;
    let ffmpeg = crate::replay::desktop::mp4::find_ffmpeg()
        .map_err(|e| Refused::BadRequest(e.to_string()))?;
    let dir = tempfile::tempdir().map_err(|e| Refused::Internal(e.to_string()))?;
    let dest = dir.path().join(format!("{}.mp4", s.id));
    let d = dest.clone();
    blocking(move || {
        let mut reader = Reader::open(&path).map_err(|e| e.to_string())?;
        let range = crate::replay::desktop::video::VideoRange {
            fps: MP4_FPS,
            from_us: 0,
            to_us: u64::MAX,
        };
        crate::replay::desktop::mp4::export_mp4(&mut reader, range, &ffmpeg, &d)
            .map_err(|e| e.to_string())?;
        Ok(())
    })
    .await?;
    let file = tokio::fs::File::open(&dest)
        .await
        .map_err(|e| Refused::Internal(format!("{}: {e}", dest.display())))?;
    // The temporary directory goes when the download is over.
    let stream = futures::StreamExt::map(tokio_util::io::ReaderStream::new(file), move |chunk| {
        let _keep = &dir;
        chunk
    });
    Ok(attachment(
        &format!("{}.mp4", s.id),
        "video/mp4",
        Body::from_stream(stream),
    ))
}

/// The session page's buttons for an RDP session with a recording: watch
/// (live, auditors and admins), replay, and the MP4 download form.
pub(crate) fn session_actions(
    lang: super::i18n::Lang,
    viewer: &Viewer,
    s: &crate::store::SessionRecord,
) -> String {
    let mut out = String::new();
    if s.status == SessionStatus::Live && viewer.may_read_audit() {
        out.push_str(&format!(
            r#"<p><a href="/sessions/{}/desktop/live" class="button" id="watch">{}</a></p>"#,
            s.id,
            esc(lang.t("session.watch"))
        ));
    }
    out.push_str(&format!(
        r#"<p><a href="/sessions/{id}/desktop" class="button" id="replay">{replay}</a></p><form method="post" action="/sessions/{id}/mp4" class="mp4"><input type="hidden" name="csrf" value="{csrf}"><label>{code}<input name="code" id="mp4-code" inputmode="numeric" pattern="[0-9]{{6}}" maxlength="6" autocomplete="one-time-code" required></label><button type="submit" id="dl-mp4">{mp4}</button></form>"#,
        id = s.id,
        replay = esc(lang.t("session.replay")),
        csrf = esc(&viewer.csrf),
        code = esc(lang.t("kill.code")),
        mp4 = esc(lang.t("download.mp4")),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::Event;
    use crate::replay::desktop::render::tests::{archive, demand_active, fast_path_bitmap, output};
    use crate::replay::desktop::seek::render_at;
    use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent};
    use ironrdp_pdu::input::mouse::{MousePdu, PointerFlags};

    const S: u64 = 1_000_000;

    fn dot(t: u64, x: u16, y: u16, rgb: [u8; 3]) -> (u64, Event) {
        (
            t,
            output(0, fast_path_bitmap(x, y, &[rgb[2], rgb[1], rgb[0], 0])),
        )
    }

    fn mouse(t: u64, x: u16, y: u16) -> (u64, Event) {
        let pdu = FastPathInput::new(vec![FastPathInputEvent::MouseEvent(MousePdu {
            flags: PointerFlags::MOVE,
            number_of_wheel_rotation_units: 0,
            x_position: x,
            y_position: y,
        })])
        .expect("events");
        (
            t,
            Event::Input {
                channel: 0,
                data: bytes::Bytes::from(ironrdp_core::encode_vec(&pdu).expect("encode")),
            },
        )
    }

    enum Rec {
        Frame {
            t: u32,
            w: u16,
            h: u16,
            full: bool,
            regions: Vec<(u16, u16, u16, u16, Vec<u8>)>,
        },
        Pointer(u32, u16, u16),
        End(u32),
    }

    /// The records of a body, PNGs decoded to RGBA.
    fn parse(body: &[u8]) -> Vec<Rec> {
        assert_eq!(&body[..4], MAGIC);
        let u16_at = |at: usize| u16::from_le_bytes([body[at], body[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4"));
        let mut at = 4;
        let mut out = Vec::new();
        while at < body.len() {
            let (kind, t) = (body[at], u32_at(at + 1));
            at += 5;
            match kind {
                KIND_FRAME => {
                    let (w, h, full, n) = (
                        u16_at(at),
                        u16_at(at + 2),
                        body[at + 4] == 1,
                        u16_at(at + 5),
                    );
                    at += 7;
                    let mut regions = Vec::new();
                    for _ in 0..n {
                        let (x, y, rw, rh) =
                            (u16_at(at), u16_at(at + 2), u16_at(at + 4), u16_at(at + 6));
                        let len = u32_at(at + 8) as usize;
                        let png = &body[at + 12..at + 12 + len];
                        let mut r = png::Decoder::new(png).read_info().expect("png");
                        let mut buf = vec![0; r.output_buffer_size()];
                        r.next_frame(&mut buf).expect("png data");
                        assert_eq!(
                            (r.info().width, r.info().height),
                            (u32::from(rw), u32::from(rh))
                        );
                        let rgba = buf
                            .chunks_exact(3)
                            .flat_map(|p| [p[0], p[1], p[2], 255])
                            .collect();
                        regions.push((x, y, rw, rh, rgba));
                        at += 12 + len;
                    }
                    out.push(Rec::Frame {
                        t,
                        w,
                        h,
                        full,
                        regions,
                    });
                }
                KIND_POINTER => {
                    out.push(Rec::Pointer(t, u16_at(at), u16_at(at + 2)));
                    at += 4;
                }
                KIND_END => out.push(Rec::End(t)),
                k => panic!("unknown record {k}"),
            }
        }
        out
    }

    #[test]
    fn a_seek_long_after_the_last_pointer_move_still_shows_the_pointer() {
        // The pointer moved once, then stood still across several
        // keyframes: the replay from the keyframe before the seek has read
        // no move, and the index says where it was.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut events = vec![(0, output(1003, demand_active(8, 4)))];
        events.push((1, output(0, fast_path_bitmap(0, 0, &[50, 60, 70, 0]))));
        events.push(mouse(S / 2, 3, 2));
        for k in 1..=4 {
            events.push((k * S, Event::Keyframe));
            events.push(dot(k * S + 100, 1, 1, [k as u8, 0, 0]));
        }
        let path = archive(dir.path(), &events);
        let mut reader = Reader::open(&path).expect("open");
        let index = SeekIndex::build(&mut reader).expect("index");
        let body =
            frames_between(&mut reader, &index, 3 * S + S / 2, 3 * S + S / 2).expect("frames");
        let records = parse(&body);
        let Some(Rec::Pointer(3500, 3, 2)) = records.first() else {
            panic!("no pointer first at the seek");
        };
        // Before the pointer ever moved there is none.
        let body = frames_between(&mut reader, &index, S / 4, S / 4).expect("frames");
        assert!(
            !parse(&body).iter().any(|r| matches!(r, Rec::Pointer(..))),
            "a pointer before any move"
        );
    }

    #[test]
    fn a_stretch_is_a_full_frame_then_changes_and_the_pointer_as_render_at_shows_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut events = vec![(0, output(1003, demand_active(8, 4)))];
        for y in 0..4u16 {
            events.push((
                1 + u64::from(y),
                output(0, fast_path_bitmap(0, y, &[50, 60, 70, 0].repeat(8))),
            ));
        }
        events.push(mouse(S / 2, 3, 2));
        events.push((S, Event::Keyframe));
        events.push(dot(S + S / 2, 5, 1, [200, 0, 0]));
        events.push(mouse(S + S / 2 + 10, 6, 3));
        events.push(dot(2 * S + S / 4, 1, 3, [0, 0, 200]));
        let path = archive(dir.path(), &events);

        let mut reader = Reader::open(&path).expect("open");
        let index = SeekIndex::build(&mut reader).expect("index");
        let body = frames_between(&mut reader, &index, S + S / 4, 3 * S).expect("frames");
        let records = parse(&body);
        // The desktop at 1.25 s whole, the pointer where it was then.
        let Some(Rec::Pointer(1250, 3, 2)) = records.first() else {
            panic!("the pointer first");
        };
        let (mut canvas, mut width) = (Vec::new(), 0usize);
        let mut frames = 0;
        let mut pointer_moved = false;
        for rec in &records {
            match rec {
                Rec::Frame {
                    t,
                    w,
                    h,
                    full,
                    regions,
                } => {
                    if frames == 0 {
                        assert!(*full && regions.len() == 1, "a full first frame");
                        assert_eq!((*t, *w, *h), (1250, 8, 4));
                        canvas = vec![0; 8 * 4 * 4];
                        width = usize::from(*w);
                    } else {
                        assert!(!full, "a change is not a full frame");
                    }
                    frames += 1;
                    for (x, y, rw, _, rgba) in regions {
                        for (dy, row) in rgba.chunks_exact(usize::from(*rw) * 4).enumerate() {
                            let at = ((usize::from(*y) + dy) * width + usize::from(*x)) * 4;
                            canvas[at..at + row.len()].copy_from_slice(row);
                        }
                    }
                    let mut check = Reader::open(&path).expect("open");
                    let r = render_at(&mut check, u64::from(*t) * 1000).expect("render");
                    assert!(canvas == r.rgba(), "pixels differ at {t} ms");
                }
                Rec::Pointer(t, x, y) if *t > 1250 => {
                    assert_eq!((*t, *x, *y), (1500, 6, 3));
                    pointer_moved = true;
                }
                Rec::Pointer(..) => {}
                Rec::End(t) => assert_eq!(*t, 3000),
            }
        }
        // 1.25 s whole, the red dot at 1.5 s, the blue one at 2.25 s.
        assert_eq!(frames, 3);
        assert!(pointer_moved, "the pointer's move at 1.5 s");
        assert!(matches!(records.last(), Some(Rec::End(3000))));
    }
}
