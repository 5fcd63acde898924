//! End to end: keys typed in xfreerdp3, through a real `sekisho serve` to
//! xrdp, come out of `sekisho export ID --format keystrokes` as the lines
//! typed, read with the keyboard layout the client announced (US 101/102,
//! Japanese 106/109).

use crate::support::rdp_deployment;
use crate::support::rdp_peers;

use std::process::Command;
use std::time::Duration;

use rdp_deployment::*;
use rdp_peers::*;

/// Keys pressed on the client display (xdotool key names or X keycodes),
/// in order.
fn press_keys(display: &str, keys: &[&str]) {
    let out = Command::new("xdotool")
        .env("DISPLAY", display)
        .arg("key")
        .args(["--delay", "60"])
        .args(keys)
        .output()
        .expect("run xdotool");
    assert!(out.status.success(), "xdotool key {keys:?} failed");
}

/// Waits until `path` holds `content` (the target ran the typed command).
fn wait_for_file(path: &std::path::Path, content: &str, client: &Client) {
    let ran = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(path).is_ok_and(|s| s.trim() == content)
    });
    assert!(
        ran,
        "typed command did not run on the target ({}).\nclient log:\n{}",
        path.display(),
        client.log()
    );
}

/// A session of `user` with `kbd` (xfreerdp3's /kbd option): `typing` gets
/// the client display and the test's temporary directory and types; the
/// session then ends and its keystroke log is returned.
fn keystroke_log_of(
    d: &Deployment,
    user: &str,
    kbd: &str,
    typing: impl FnOnce(&str, &std::path::Path, &Client),
) -> String {
    let x = Xvfb::start();
    let password = format!("{PASSWORD}{}", d.code(user));
    let client = d.client(
        &x.display,
        &format!("{user}@xrdp1"),
        &password,
        &["/sec:tls", kbd],
    );
    d.assert_desktop_up(&client, &format!("no session of {TEST_USER} on the target"));
    // Give xterm a moment to map and take focus.
    std::thread::sleep(Duration::from_secs(3));
    typing(&x.display, d.tmp(), &client);
    drop(client);
    end_test_user_sessions();

    let start = d.audit("session_start", user);
    assert_eq!(start.len(), 1, "{start:?}");
    let session = start[0]["session"].as_str().expect("session id").to_owned();
    let ended = wait_until(Duration::from_secs(15), || {
        d.audit_session(&session)
            .iter()
            .any(|e| e["kind"] == "session_end")
    });
    assert!(ended, "no session_end.\nserve log:\n{}", d.serve_log());
    let out = sekisho(
        &d.dir,
        &["export", &session, "--format", "keystrokes"],
        None,
    );
    assert!(out.status.success(), "export failed: {}", text(&out));
    assert!(
        out.stderr.is_empty(),
        "export noted something: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("a UTF-8 log")
}

/// The text of the log's entries (after `  kbd  `), in order.
fn typed_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_once("  kbd  ").map_or("", |(_, text)| text))
        .collect()
}

#[test]
fn a_line_typed_through_sekisho_is_in_the_keystroke_log_us_layout() {
    let _lock = prepare();
    let d = Deployment::start();
    let log = keystroke_log_of(&d, "tanaka", "/kbd:layout:0x409", |display, tmp, client| {
        let marker = tmp.join("typed-us.txt");
        type_into_client(
            display,
            &format!("echo Sekisho-Keys: 42 > {}", marker.display()),
        );
        wait_for_file(&marker, "Sekisho-Keys: 42", client);
    });
    assert!(
        log.starts_with("# session ") && log.contains(" (rdp) from "),
        "{log}"
    );
    assert!(log.contains("\n# keyboard: US 101/102 (0x409)\n"), "{log}");
    let marker = d.tmp().join("typed-us.txt");
    let lines = typed_lines(&log);
    let typed = format!("echo Sekisho-Keys: 42 > {}", marker.display());
    assert!(
        lines.contains(&typed.as_str()),
        "{typed:?} not a line of the log:\n{log}"
    );
    // Each entry: wall-clock time, seconds since the start, `kbd`.
    let entry = log
        .lines()
        .find(|l| l.ends_with(&typed))
        .expect("the typed entry");
    let fields: Vec<&str> = entry.splitn(4, "  ").collect();
    assert!(
        fields[0].len() == 24 && fields[0].ends_with('Z') && fields[1].starts_with('+'),
        "{entry}"
    );
    assert_eq!(fields[2], "kbd", "{entry}");
}

#[test]
fn japanese_106_keyboard_is_read_with_jis_positions() {
    let _lock = prepare();
    let d = Deployment::start();
    let log = keystroke_log_of(&d, "suzuki", "/kbd:layout:0x411", |display, tmp, client| {
        let marker = tmp.join("typed-jp.txt");
        // Letters, digits, space, '-', '.', '/' and Shift+'.' sit where
        // they do on US keyboards.
        type_into_client(display, &format!("echo kbd 0411 > {}", marker.display()));
        wait_for_file(&marker, "kbd 0411", client);
        // Positions that type other characters on a JIS keyboard, then its
        // own keys; 英数 twice, so the lock state is as before.
        press_keys(
            display,
            &[
                "shift+2",
                "shift+7",
                "shift+apostrophe",
                "bracketleft",
                "shift+equal",
                // ろ (AB11) and ¥ (AE13): keys Xvfb's US keymap leaves
                // without a symbol, pressed by X keycode.
                "97",
                "shift+97",
                "132",
                "Henkan_Mode",
                "Muhenkan",
                "Hiragana_Katakana",
                "grave",
                "Caps_Lock",
                "Caps_Lock",
                "Return",
                // The shell waits for the quotes to close; start afresh.
                "ctrl+c",
            ],
        );
        let done = tmp.join("typed-jp-done.txt");
        type_into_client(display, &format!("echo done > {}", done.display()));
        wait_for_file(&done, "done", client);
    });
    assert!(
        log.contains("\n# keyboard: Japanese 106/109 (0x411)\n"),
        "{log}"
    );
    assert!(
        log.contains("\n# keys as pressed: kana/kanji conversion"),
        "{log}"
    );
    let marker = d.tmp().join("typed-jp.txt");
    let done = d.tmp().join("typed-jp-done.txt");
    let jis = "\"'*@~\\_¥<変換><無変換><かな><半角/全角><英数><英数>";
    let expected = [
        format!("echo kbd 0411 > {}", marker.display()),
        jis.escape_debug().to_string(),
        format!("<Ctrl+C>echo done > {}", done.display()),
    ];
    let lines = typed_lines(&log);
    assert!(
        lines.ends_with(&expected.iter().map(String::as_str).collect::<Vec<_>>()),
        "expected the lines {expected:#?}\nin the log:\n{log}"
    );
}
