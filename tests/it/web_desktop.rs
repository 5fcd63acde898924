//! RDP sessions in the web console, in a real browser: a real session
//! xfreerdp3 → `sekisho serve` → xrdp, watched live by an auditor in
//! Chromium (the desktop and the pointer appear on the canvas as the
//! engineer changes them), then replayed: the player's canvas at a time
//! matches `sekisho export --format png` at that time, the pointer is
//! drawn, seeking and playing work, and the MP4 download asks for a fresh
//! code. Saves docs/screenshots/desktop-live.png and desktop-replay.png.
//!
//! Needs the RDP peers (`.ci/install-peers`) and Chromium with
//! chromedriver; takes the RDP peer lock.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::{Client, Locator};

use crate::support::rdp_deployment::*;
use crate::support::rdp_peers::*;
use crate::support::totp;
use crate::web_browser::{browser, follow, screenshot};

const AUDITOR: &str = "kansa";
const ENGINEER: &str = "ito";

/// Decodes a PNG (RGBA or RGB) into RGBA pixels and its size.
fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png data");
    buf.truncate(info.buffer_size());
    let rgba = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    (info.width, info.height, rgba)
}

/// Pixels (RGBA, same size) whose colour differs by more than `tolerance`.
fn differing(a: &[u8], b: &[u8], tolerance: u8) -> usize {
    a.chunks_exact(4)
        .zip(b.chunks_exact(4))
        .filter(|(p, q)| {
            p[..3]
                .iter()
                .zip(&q[..3])
                .any(|(x, y)| x.abs_diff(*y) > tolerance)
        })
        .count()
}

/// The player's desktop canvas, as the browser has drawn it.
async fn canvas(c: &Client) -> (u32, u32, Vec<u8>) {
    let url = c
        .execute(
            "return document.getElementById('desktop').toDataURL('image/png');",
            vec![],
        )
        .await
        .expect("toDataURL");
    let url = url.as_str().expect("a data URL");
    let b64 = url
        .strip_prefix("data:image/png;base64,")
        .expect("a PNG data URL");
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    decode_png(&png)
}

/// A `data-` attribute of the player (or the pointer canvas).
async fn data(c: &Client, element: &str, name: &str) -> String {
    c.execute(
        &format!("return document.getElementById('{element}').dataset.{name} || '';"),
        vec![],
    )
    .await
    .expect("dataset")
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// Pixels of the canvas that are the magenta the test paints.
async fn magenta_pixels(c: &Client) -> u64 {
    c.execute(
        "var cv = document.getElementById('desktop');\
         if (!cv.width || !cv.height) { return 0; }\
         var d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;\
         var n = 0;\
         for (var i = 0; i < d.length; i += 4) {\
           if (d[i] > 200 && d[i + 1] < 60 && d[i + 2] > 200) { n++; }\
         }\
         return n;",
        vec![],
    )
    .await
    .expect("count pixels")
    .as_u64()
    .unwrap_or(0)
}

async fn pointer(c: &Client) -> Option<(i64, i64)> {
    let x = data(c, "pointer", "x").await.parse().ok()?;
    let y = data(c, "pointer", "y").await.parse().ok()?;
    Some((x, y))
}

async fn wait_for<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_in(c: &Client, base: &str, user: &str, code: &str) {
    c.goto(&format!("{base}/signin"))
        .await
        .expect("open sign-in");
    for (field, value) in [("user", user), ("password", PASSWORD), ("code", code)] {
        c.find(Locator::Id(field))
            .await
            .expect("sign-in field")
            .send_keys(value)
            .await
            .expect("type");
    }
    follow(c, c.find(Locator::Id("signin")).await.expect("button")).await;
    let url = c.current_url().await.expect("url");
    assert_eq!(url.path(), "/sessions", "signed in as {user}");
}

fn xdotool(display: &str, args: &[&str]) {
    let out = std::process::Command::new("xdotool")
        .env("DISPLAY", display)
        .args(args)
        .output()
        .expect("xdotool");
    assert!(out.status.success(), "xdotool {args:?}");
}

/// `sekisho export --format png --at SECONDS` of `archive`, decoded.
fn exported(d: &Deployment, archive: &Path, at_ms: u64) -> (u32, u32, Vec<u8>) {
    let png = d.tmp().join(format!("at-{at_ms}.png"));
    let out = std::process::Command::new(bin())
        .arg("export")
        .arg(archive)
        .args(["--format", "png", "--at"])
        .arg(format!("{}.{:03}", at_ms / 1000, at_ms % 1000))
        .arg("-o")
        .arg(&png)
        .env_remove("SEKISHO_CONFIG")
        .output()
        .expect("sekisho export");
    assert!(out.status.success(), "export: {}", text(&out));
    decode_png(&std::fs::read(&png).expect("exported PNG"))
}

/// Seeks the player to `at_ms` with its slider and waits until it is drawn.
async fn seek_with_slider(c: &Client, at_ms: u64) {
    c.execute(
        "var s = document.getElementById('seek'); s.value = String(arguments[0]);\
         s.dispatchEvent(new Event('change'));",
        vec![serde_json::json!(at_ms)],
    )
    .await
    .expect("move the slider");
    let drawn = wait_for(Duration::from_secs(30), || async {
        data(c, "desktop-player", "ready").await == "1"
            && data(c, "desktop-player", "time").await == at_ms.to_string()
    })
    .await;
    assert!(drawn, "the player did not show {at_ms} ms");
}

/// The canvas shows what `export --format png` gives at `at_ms`.
async fn assert_canvas_matches(c: &Client, d: &Deployment, archive: &Path, at_ms: u64) {
    let (w, h, shown) = canvas(c).await;
    let (ew, eh, expected) = exported(d, archive, at_ms);
    assert_eq!((w, h), (ew, eh), "canvas size at {at_ms} ms");
    let differ = differing(&shown, &expected, 4);
    assert!(
        differ < (w * h / 500) as usize,
        "{differ} of {} pixels differ from the PNG export at {at_ms} ms",
        w * h
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_rdp_session_is_watched_live_and_replayed_in_the_browser() {
    let _lock = prepare();
    let d = Deployment::start_with(Options {
        web: true,
        ..Options::default()
    });
    let base = format!("https://127.0.0.1:{}", d.web_port.expect("web port"));
    let out = ok(sekisho(
        &d.dir,
        &[
            "user",
            "add",
            AUDITOR,
            "--role",
            "auditor",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    ));
    let keys: HashMap<&str, Vec<u8>> = [(AUDITOR, totp::key_from_user_add(&out))].into();
    let code = |ahead: i64| totp::code_ahead(&keys[AUDITOR], ahead);

    // The engineer's session, live.
    let x = Xvfb::start();
    let client = d.client(
        &x.display,
        &format!("{ENGINEER}@xrdp1"),
        &format!("{PASSWORD}{}", d.code(ENGINEER)),
        &["/sec:tls"],
    );
    d.assert_desktop_up(&client, "no session on the target");
    let session = d
        .install()
        .live_session_id(ENGINEER, Duration::from_secs(20))
        .expect("the live session");

    // An auditor watches it.
    let (c, _driver) = browser("ja").await;
    sign_in(&c, &base, AUDITOR, &code(0)).await;
    c.goto(&format!("{base}/sessions/{session}"))
        .await
        .expect("session page");
    follow(
        &c,
        c.find(Locator::Id("watch")).await.expect("watch button"),
    )
    .await;
    let shown = wait_for(Duration::from_secs(30), || async {
        data(&c, "desktop-player", "frames")
            .await
            .parse::<u64>()
            .unwrap_or(0)
            > 0
    })
    .await;
    assert!(shown, "the live desktop was not drawn");
    let (w, h, _) = canvas(&c).await;
    assert_eq!((w, h), (1024, 768), "the engineer's desktop size");
    // The target draws the desktop (the test account's xterm) shortly
    // after the session starts.
    let drawn = wait_for(Duration::from_secs(15), || async {
        let (_, _, px) = canvas(&c).await;
        px.chunks_exact(4)
            .collect::<std::collections::HashSet<&[u8]>>()
            .len()
            >= 2
    })
    .await;
    assert!(
        drawn,
        "the live desktop stayed blank ({} frames drawn)",
        data(&c, "desktop-player", "frames").await
    );

    // The engineer turns the terminal magenta; the watcher sees it soon.
    let marker = d.tmp().join("magenta");
    type_into_client(
        &x.display,
        &format!(
            "printf '\\033]11;#ff00ff\\007'; clear; touch {}",
            marker.display()
        ),
    );
    assert!(
        wait_until(Duration::from_secs(20), || marker.exists()),
        "the typed command did not run:\n{}",
        client.log()
    );
    let ran = Instant::now();
    let magenta = wait_for(Duration::from_secs(30), || async {
        magenta_pixels(&c).await > 10_000
    })
    .await;
    let latency = ran.elapsed();
    assert!(magenta, "the live watch never showed the magenta terminal");
    // Live, not at the session's end; the bound leaves room for a loaded
    // machine (the target, the archive flush, Chromium drawing); the
    // latency is printed below.
    assert!(
        latency < Duration::from_secs(10),
        "the live watch showed the change after {latency:?}"
    );
    eprintln!("live watch: the change shown {latency:?} after the command ran");

    // The pointer the engineer moves moves on the watcher's screen (typing
    // above left it at (300, 300) of the client's display).
    let at_first = wait_for(Duration::from_secs(20), || async {
        pointer(&c).await.is_some()
    })
    .await;
    assert!(at_first, "no pointer drawn in the live watch");
    let origin = pointer(&c).await.expect("pointer");
    for (px, py) in [(200i64, 150i64), (500, 400)] {
        xdotool(
            &x.display,
            &["mousemove", "--sync", &px.to_string(), &py.to_string()],
        );
        let want = (origin.0 + px - 300, origin.1 + py - 300);
        let moved = wait_for(Duration::from_secs(20), || async {
            pointer(&c).await == Some(want)
        })
        .await;
        assert!(
            moved,
            "the pointer did not follow to {want:?}: {:?}",
            pointer(&c).await
        );
    }
    screenshot(&c, "desktop-live").await;
    let watched = d.audit_kind("session_watched");
    assert!(
        watched
            .iter()
            .any(|e| e["session"].as_str() == Some(session.as_str())
                && e["data"]["watcher"].as_str() == Some(AUDITOR)),
        "the watch is audited: {watched:?}"
    );

    // The session ends; the watch says so.
    drop(client);
    end_test_user_sessions();
    assert!(
        wait_until(Duration::from_secs(15), || !d
            .audit("session_end", ENGINEER)
            .is_empty()),
        "no session_end:\n{}",
        d.serve_log()
    );
    let ended = wait_for(Duration::from_secs(15), || async {
        data(&c, "desktop-player", "ended").await == "1"
    })
    .await;
    assert!(ended, "the live watch did not end with the session");

    // Replay: the canvas at T is the PNG export at T, pointer drawn.
    let archive = d
        .install()
        .archive(&session)
        .expect("the session's archive");
    let sealed = wait_until(Duration::from_secs(30), || {
        sekisho::recording::Reader::open(&archive)
            .and_then(|mut r| r.is_sealed())
            .unwrap_or(false)
    });
    assert!(sealed, "the archive was not sealed");
    let duration_ms = sekisho::recording::Reader::open(&archive)
        .expect("archive")
        .index()
        .expect("index")
        .last()
        .expect("chunks")
        .t_last_us
        / 1000;
    let late = duration_ms.saturating_sub(1500);
    c.goto(&format!(
        "{base}/sessions/{session}/desktop?t={}.{:03}",
        late / 1000,
        late % 1000
    ))
    .await
    .expect("replay page");
    let drawn = wait_for(Duration::from_secs(15), || async {
        data(&c, "desktop-player", "ready").await == "1"
    })
    .await;
    assert!(drawn, "the replay did not draw");
    assert_eq!(data(&c, "desktop-player", "time").await, late.to_string());
    assert_canvas_matches(&c, &d, &archive, late).await;
    assert!(
        magenta_pixels(&c).await > 10_000,
        "the replay at the end shows the magenta terminal"
    );
    assert!(pointer(&c).await.is_some(), "the replay draws the pointer");
    screenshot(&c, "desktop-replay").await;

    // Seek back to before the terminal turned magenta: another picture,
    // still the export's.
    let early = 1000.min(duration_ms / 4);
    seek_with_slider(&c, early).await;
    assert_canvas_matches(&c, &d, &archive, early).await;
    assert_eq!(magenta_pixels(&c).await, 0, "magenta before it was typed");
    seek_with_slider(&c, late).await;
    assert_canvas_matches(&c, &d, &archive, late).await;

    // Play at 4x from the start: time moves on and frames are drawn.
    seek_with_slider(&c, 0).await;
    c.execute(
        "var s = document.getElementById('speed'); s.value = '4';\
         s.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await
    .expect("speed");
    let frames_before: u64 = data(&c, "desktop-player", "frames")
        .await
        .parse()
        .unwrap_or(0);
    c.find(Locator::Id("play"))
        .await
        .expect("play")
        .click()
        .await
        .expect("click");
    let played = wait_for(Duration::from_secs(30), || async {
        data(&c, "desktop-player", "time")
            .await
            .parse::<u64>()
            .unwrap_or(0)
            > 4000
    })
    .await;
    assert!(played, "playing did not move the time on");
    let frames_after: u64 = data(&c, "desktop-player", "frames")
        .await
        .parse()
        .unwrap_or(0);
    assert!(frames_after > frames_before, "no frame drawn while playing");

    // The MP4 download asks for a fresh code.
    c.goto(&format!("{base}/sessions/{session}"))
        .await
        .expect("session page");
    c.find(Locator::Id("dl-mp4")).await.expect("MP4 button");
    let post = "var f = document.querySelector('form.mp4'); var body = new FormData(f);\
                body.set('code', arguments[0]);\
                var done = arguments[arguments.length - 1];\
                fetch(f.action, { method: 'POST', body: new URLSearchParams(body) })\
                  .then(function (r) { return r.arrayBuffer().then(function (b) {\
                    var head = Array.from(new Uint8Array(b.slice(4, 8)))\
                      .map(function (x) { return String.fromCharCode(x); }).join('');\
                    done([r.status, r.headers.get('content-type') || '', b.byteLength, head]); }); })\
                  .catch(function (e) { done([0, String(e), 0, '']); });";
    let refused = c
        .execute_async(post, vec![serde_json::json!("000000")])
        .await
        .expect("POST a wrong code");
    assert_eq!(refused[0], 400, "a wrong code is refused: {refused}");
    let mp4 = c
        .execute_async(post, vec![serde_json::json!(code(1))])
        .await
        .expect("POST with a fresh code");
    assert_eq!(mp4[0], 200, "{mp4}");
    assert_eq!(mp4[1], "video/mp4", "{mp4}");
    assert_eq!(mp4[3], "ftyp", "an MP4 file: {mp4}");
    assert!(mp4[2].as_u64().unwrap_or(0) > 1000, "{mp4}");
    c.close().await.expect("close");

    // Roles: the engineer replays their own session but may not watch;
    // another engineer reaches none of it.
    let own = api_login(&d, &base, ENGINEER, &d.code_ahead(ENGINEER, 1)).await;
    let other = api_login(&d, &base, "tanaka", &d.code("tanaka")).await;
    let routes = [
        ("GET", format!("/sessions/{session}/desktop")),
        (
            "GET",
            format!("/sessions/{session}/desktop/frames?from=0&to=1000"),
        ),
        ("GET", format!("/sessions/{session}/desktop/live")),
        ("GET", format!("/sessions/{session}/desktop/live.bin")),
        ("POST", format!("/sessions/{session}/mp4")),
    ];
    // [the session's engineer, another engineer]; the MP4 form fails on
    // the wrong code for the owner (400).
    let expected = [[200, 403], [200, 403], [403, 403], [403, 403], [400, 403]];
    for ((method, path), want) in routes.iter().zip(expected) {
        let mut got = Vec::new();
        for (client, csrf) in [&own, &other] {
            let url = format!("{base}{path}");
            let r = if *method == "GET" {
                client.get(url).send().await
            } else {
                client
                    .post(url)
                    .form(&[("csrf", csrf.as_str()), ("code", "000000")])
                    .send()
                    .await
            }
            .expect("request");
            got.push(r.status().as_u16());
        }
        assert_eq!(got, want, "{method} {path}");
    }
}

/// An HTTP client signed in through the API; and its CSRF token.
async fn api_login(
    d: &Deployment,
    base: &str,
    user: &str,
    code: &str,
) -> (reqwest::Client, String) {
    let pem = std::fs::read(d.dir.join("keys/rdp_tls_cert.pem")).expect("init's certificate");
    let c = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("certificate"))
        .tls_built_in_root_certs(false)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let r = c
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({"user": user, "password": PASSWORD, "code": code}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status().as_u16(), 200, "login of {user}");
    let body: serde_json::Value = r.json().await.expect("json");
    (c, body["csrf"].as_str().expect("csrf").to_string())
}
