//! End to end: xfreerdp3 → a real `sekisho serve` → xrdp on loopback.
//! The deployment (init, admin CLI, policy, secret store, serve) is the one
//! of rdp_e2e.rs; what the bastion did is read back from the audit log, the
//! session list and the recording archive.

use crate::support::rdp_deployment;
use crate::support::rdp_peers;

use std::process::{Command, Stdio};
use std::time::Duration;

use rdp_deployment::*;
use rdp_peers::*;
use sekisho::recording::Event;

/// A printer for the client to redirect, and what xrdp's channel server
/// logs when a client announces one (under its DOS name, e.g. PRN1; xrdp
/// then declines it, but the announcement is what must never cross).
const PRINTER: &str = "/printer:SekishoTestPrinter";
const PRINTER_ANNOUNCED: &str = "Detected remote printer";

fn login(d: &Deployment, user: &str) -> String {
    format!("{PASSWORD}{}", d.code(user))
}

/// The one session_start of `user`: its id.
fn session_of(d: &Deployment, user: &str) -> String {
    let start = d.audit("session_start", user);
    assert_eq!(start.len(), 1, "{start:?}\nserve log:\n{}", d.serve_log());
    start[0]["session"]
        .as_str()
        .expect("session id")
        .to_string()
}

/// The session_end of `session`, once written.
fn session_end(d: &Deployment, session: &str) -> serde_json::Value {
    let mut end = None;
    let ended = wait_until(Duration::from_secs(15), || {
        end = d
            .audit_session(session)
            .into_iter()
            .find(|e| e["kind"] == "session_end");
        end.is_some()
    });
    assert!(ended, "no session_end.\nserve log:\n{}", d.serve_log());
    end.expect("session_end")
}

fn events(d: &Deployment, session: &str) -> (serde_json::Value, Vec<Event>) {
    let archive = find_archive(&d.dir.join("recordings"), session).expect("archive file");
    let mut reader = sekisho::recording::Reader::open(&archive).expect("open archive");
    let info = serde_json::to_value(&reader.meta().rdp).expect("the RDP part as JSON");
    let events = reader
        .events()
        .map_while(|e| e.ok())
        .map(|e| e.event)
        .collect();
    (info, events)
}

#[test]
fn typed_text_reaches_xrdp_through_sekisho_and_clipboard_drive_and_printer_do_not() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let share = d.tmp().join("share");
    std::fs::create_dir(&share).expect("share dir");
    std::fs::write(share.join("secret.txt"), "must not cross").expect("write share file");
    let drive = format!("/drive:share,{}", share.display());
    clear_chansrv_logs();
    let client = d.client(
        &x.display,
        "tanaka@xrdp1",
        &login(&d, "tanaka"),
        &["/sec:tls", "+clipboard", &drive, PRINTER],
    );
    d.assert_desktop_up(&client, &format!("no session of {TEST_USER} on the target"));
    // Give xterm a moment to map and take focus.
    std::thread::sleep(Duration::from_secs(3));
    d.assert_typed_command_runs(
        &client,
        &x.display,
        "typed.txt",
        "typed command did not run on the target",
    );
    // A few keyframes (one a second).
    std::thread::sleep(Duration::from_secs(2));

    // What the target got: only drdynvc; no clipboard, drive or sound.
    let xrdp_log = d.xrdp.log_text();
    assert!(
        xrdp_log.contains("Adding channel: name drdynvc"),
        "xrdp log:\n{xrdp_log}"
    );
    for refused in ["cliprdr", "rdpdr", "rdpsnd"] {
        assert!(
            !xrdp_log.contains(&format!("Adding channel: name {refused}")),
            "{refused} reached the target"
        );
    }
    // No device announcement reached the target's channel server (the
    // direct control test sees the printer and the drive there).
    let chansrv = chansrv_log_text();
    assert!(
        !chansrv.is_empty(),
        "the session's channel server logged nothing"
    );
    for device in [PRINTER_ANNOUNCED, "Detected remote drive"] {
        assert!(
            !chansrv.contains(device),
            "{device:?} on the target:\n{chansrv}"
        );
    }
    drop(client);
    end_test_user_sessions();

    // One sign-in, with password and code.
    let signins = d.audit("signin_success", "tanaka");
    assert!(!signins.is_empty(), "no signin_success");
    assert!(d.audit("signin_failure", "tanaka").is_empty());
    let session = session_of(&d, "tanaka");
    session_end(&d, &session);
    let blocked: Vec<String> = d
        .audit_session(&session)
        .iter()
        .filter(|e| e["kind"] == "channel_blocked")
        .map(|e| e["detail"].as_str().unwrap_or_default().to_string())
        .collect();
    for channel in ["cliprdr", "rdpdr"] {
        assert!(
            blocked.iter().any(|b| b.contains(channel)),
            "{channel} not refused: {blocked:?}"
        );
    }

    let (info, events) = events(&d, &session);
    let channels: Vec<&str> = info["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(channels, vec!["drdynvc"], "{info}");
    let fastpath = info["fastpath_channel"].as_u64().expect("fastpath channel") as u32;
    let io = info["io_channel"].as_u64().expect("io channel") as u32;
    let input = events
        .iter()
        .filter(|e| matches!(e, Event::Input { .. }))
        .count();
    assert!(input > 20, "only {input} client input PDUs recorded");
    let output = events
        .iter()
        .filter(|e| matches!(e, Event::Output { .. }))
        .count();
    assert!(output > 0, "no server graphics recorded");

    // Steering: the target drew with bitmaps only (no orders, no surface
    // commands) and nothing was bulk-compressed.
    let mut updates = 0;
    for event in &events {
        if let Event::Output { channel, data, .. } = event {
            if *channel == fastpath {
                for (code, compressed) in fast_path_updates(data) {
                    updates += 1;
                    assert_ne!(code, 0x0, "drawing orders reached the recording");
                    assert_ne!(code, 0x4, "surface commands reached the recording");
                    assert!(!compressed, "bulk-compressed update");
                }
            } else if *channel == io
                && let Some((update, compressed)) = slow_path_update(data)
            {
                updates += 1;
                assert_ne!(update, 0x0000, "drawing orders reached the recording");
                assert!(!compressed, "bulk-compressed update");
            }
        }
    }
    assert!(updates > 0, "no updates parsed");

    // The share id a replayer needs is recorded.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Mark { label, .. } if label == "share_activated")),
        "no share activation recorded"
    );

    // Keyframes: requested every second, each followed by bitmap updates.
    let keyframes: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Keyframe))
        .map(|(i, _)| i)
        .collect();
    assert!(keyframes.len() >= 2, "keyframes: {keyframes:?}");
    let redrawn = events[keyframes[0]..].iter().any(|e| match e {
        Event::Output { channel, data, .. } if *channel == fastpath => {
            fast_path_updates(data).iter().any(|(code, _)| *code == 0x1)
        }
        Event::Output { channel, data, .. } if *channel == io => {
            slow_path_update(data).is_some_and(|(update, _)| update == 0x0001)
        }
        _ => false,
    });
    assert!(redrawn, "no bitmap update after a keyframe request");
}

/// (updateType, bulk-compressed) of a slow-path Update PDU (share data
/// pduType2 = PDUTYPE2_UPDATE), MS-RDPBCGR 2.2.9.1.1.3.
fn slow_path_update(pdu: &[u8]) -> Option<(u16, bool)> {
    let pdu_type = u16::from_le_bytes([*pdu.get(2)?, *pdu.get(3)?]) & 0x0f;
    if pdu_type != 0x7 || *pdu.get(14)? != 0x02 {
        return None;
    }
    let compressed = pdu.get(15)? & 0x20 != 0;
    Some((
        u16::from_le_bytes([*pdu.get(18)?, *pdu.get(19)?]),
        compressed,
    ))
}

/// (updateCode, bulk-compressed) of each update in a fast-path output PDU
/// (MS-RDPBCGR 2.2.9.1.2), as a test-side cross-check.
fn fast_path_updates(pdu: &[u8]) -> Vec<(u8, bool)> {
    let mut out = Vec::new();
    let Some(&len1) = pdu.get(1) else { return out };
    let mut pos = if len1 & 0x80 != 0 { 3 } else { 2 };
    while let Some(&header) = pdu.get(pos) {
        let code = header & 0x0f;
        let compressed = (header >> 6) & 0x03 == 0x02;
        pos += 1;
        if compressed {
            pos += 1;
        }
        let Some(size) = pdu
            .get(pos..pos + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        else {
            break;
        };
        out.push((code, compressed));
        pos += 2 + size;
    }
    out
}

#[test]
fn direct_connection_gets_clipboard_drive_and_printer_and_refusals_never_reach_the_target() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let share = d.tmp().join("share");
    std::fs::create_dir(&share).expect("share dir");
    let drive = format!("/drive:share,{}", share.display());

    // Control: without sekisho the target does get clipboard, drive and
    // printer (FreeRDP announces a named printer without a CUPS server).
    clear_chansrv_logs();
    let log = d.tmp().join("direct.log");
    let log_file = std::fs::File::create(&log).expect("client log");
    let direct = Daemon::spawn(
        "xfreerdp3 direct",
        Command::new("xfreerdp3")
            .env("DISPLAY", &x.display)
            .env("WLOG_LEVEL", "INFO")
            .arg(format!("/v:{TARGET_IP}:{}", d.xrdp.port))
            .arg(format!("/u:{TEST_USER}"))
            .arg(format!("/p:{TEST_PASSWORD}"))
            .args(["/cert:ignore", "/size:1024x768", "-grab-keyboard"])
            .args(["/sec:tls", "+clipboard", &drive, PRINTER])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log"))
            .stderr(log_file),
    );
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "direct session did not start:\n{}",
        client_log(&log)
    );
    let direct_log = d.xrdp.log_text();
    assert!(
        direct_log.contains("Adding channel: name cliprdr"),
        "xrdp log:\n{direct_log}"
    );
    assert!(
        direct_log.contains("Adding channel: name rdpdr"),
        "xrdp log:\n{direct_log}"
    );
    let announced = wait_until(Duration::from_secs(15), || {
        chansrv_log_text().contains(PRINTER_ANNOUNCED)
    });
    assert!(
        announced,
        "the printer did not reach xrdp directly.\nchansrv log:\n{}\nclient log:\n{}",
        chansrv_log_text(),
        client_log(&log)
    );
    drop(direct);
    end_test_user_sessions();
    let seen_before = d
        .xrdp
        .log_text()
        .matches("Client supplied username")
        .count();

    // Wrong password, a virtual target, a target whose certificate does not
    // match the pin: each refused once (the client does not come back by
    // itself), none signs in on the target.
    // TOTP codes work once: each attempt that signs in has a user of its own.
    let vm = login(&d, "sato");
    let pin = login(&d, "ito");
    for (person, user, password, what, signs_in) in [
        (
            "tanaka",
            "tanaka@xrdp1",
            "wrong-pw123456",
            "wrong password",
            false,
        ),
        ("sato", "sato@vm1", vm.as_str(), "virtual target", true),
        (
            "ito",
            "ito@xrdp-wrong-pin",
            pin.as_str(),
            "certificate pin",
            true,
        ),
        (
            "kato",
            "xrdp1\\kato",
            "wrong-pw123456",
            "wrong password (domain form)",
            false,
        ),
    ] {
        let failures = d.audit("signin_failure", person).len();
        let decisions = d.audit("allow", person).len() + d.audit("deny", person).len();
        let mut client = d.client(&x.display, user, password, &["/sec:tls"]);
        let status = client.exit_within(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| !s.success()),
            "{what}: client not refused ({status:?}):\n{}",
            client.log()
        );
        assert!(
            client.log().contains("ERRINFO_SERVER_"),
            "{what}: the client did not show an RDP error:\n{}",
            client.log()
        );
        // Let a client that would come back by itself do so.
        std::thread::sleep(Duration::from_secs(1));
        let failures = d.audit("signin_failure", person).len() - failures;
        let decisions = d.audit("allow", person).len() + d.audit("deny", person).len() - decisions;
        if signs_in {
            assert_eq!((failures, decisions), (0, 1), "{what}");
        } else {
            assert_eq!((failures, decisions), (1, 0), "{what}");
        }
    }
    assert!(!session_user_running(), "a refused client got a session");
    assert_eq!(
        d.xrdp
            .log_text()
            .matches("Client supplied username")
            .count(),
        seen_before,
        "a refused client signed in on the target"
    );
    let deny = d.audit("deny", "sato");
    assert!(
        deny.iter()
            .any(|e| e["target"] == "vm1" && e["data"]["rule"] == "rdp_virtual"),
        "no rdp_virtual deny: {deny:?}"
    );
    let ends = d.audit("session_end", "ito");
    assert!(
        ends.iter().any(|e| e["data"]["status"] == "failed"
            && e.to_string().contains("does not match the pinned")),
        "pin mismatch not reported: {ends:?}"
    );
    assert!(
        ends.iter().any(|e| e["data"]["failure"]["phase"] == "tls"
            && e["data"]["failure"]["kind"] == "certificate_pin"),
        "the pin mismatch's phase and kind are not in the audit log: {ends:?}"
    );
}

#[test]
fn killing_the_session_disconnects_the_client() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    // A Japanese 106/109 keyboard: the recording must know the layout.
    let mut client = d.client(
        &x.display,
        "ito@xrdp1",
        &login(&d, "ito"),
        &["/sec:tls", "/kbd:layout:0x411,type:7"],
    );
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "session did not start:\n{}\nserve log:\n{}",
        client.log(),
        d.serve_log()
    );
    let id = d
        .install()
        .live_session_id("ito", Duration::from_secs(10))
        .unwrap_or_default();
    let live = !id.is_empty();
    assert!(live, "session not listed.\nserve log:\n{}", d.serve_log());
    assert!(
        client.exit_within(Duration::from_secs(1)).is_none(),
        "client left early"
    );
    let kill = sekisho(
        &d.dir,
        &["sessions", "kill", &id, "--reason", "stopped by admin"],
        None,
    );
    assert!(kill.status.success(), "{}", text(&kill));
    let status = client.exit_within(Duration::from_secs(15));
    assert!(status.is_some(), "client still connected after kill");
    end_test_user_sessions();
    let end = session_end(&d, &id);
    assert_eq!(end["data"]["status"], "killed", "{end}");
    assert!(end.to_string().contains("stopped by admin"), "{end}");
    // The recording is sealed and knows the keyboard.
    let verify = sekisho(&d.dir, &["verify", &id], None);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let (info, _) = events(&d, &id);
    assert_eq!(
        info["keyboard_layout"], 0x411,
        "keyboard layout not recorded: {info}"
    );
    assert_eq!(
        info["keyboard_type"], 7,
        "keyboard type not recorded: {info}"
    );
}

/// A tmpfs of 1 MiB mounted on `dir`, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path) -> SmallDisk {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_failing_recording_ends_the_session() {
    let _lock = prepare();
    let rec = tempfile::Builder::new()
        .prefix("sekisho-rdp-rec")
        .tempdir()
        .expect("tempdir");
    let _disk = SmallDisk::mount(rec.path());
    let d = Deployment::start_with(Options {
        recordings: Some(rec.path().to_path_buf()),
        ..Options::default()
    });
    let x = Xvfb::start();
    let mut client = d.client(&x.display, "sato@xrdp1", &login(&d, "sato"), &["/sec:tls"]);
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "session did not start:\n{}\nserve log:\n{}",
        client.log(),
        d.serve_log()
    );
    // The disk fills up under the live session.
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(rec.path().join("filler")).expect("filler");
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
    }
    let status = client.exit_within(Duration::from_secs(30));
    end_test_user_sessions();
    assert!(
        status.is_some(),
        "client still connected with a broken recording.\nclient log:\n{}\nserve log:\n{}",
        client.log(),
        d.serve_log()
    );
    let session = session_of(&d, "sato");
    let end = session_end(&d, &session);
    // (The row says "ended"; the reason names the failed recording.)
    assert!(
        end.to_string().contains("recording failed"),
        "the end does not name the recording: {end}"
    );
    // Cut short, never tampered.
    let verify = sekisho(&d.dir, &["verify", &session], None);
    assert!(
        !text(&verify).to_lowercase().contains("tampered"),
        "{}",
        text(&verify)
    );
    drop(d);
}

fn issue_ticket(d: &Deployment, user: &str) -> String {
    let issued = ok(sekisho(
        &d.dir,
        &[
            "ticket",
            "issue",
            "--user",
            user,
            "--target",
            "xrdp1",
            "--protocol",
            "rdp",
        ],
        None,
    ));
    issued
        .lines()
        .next()
        .expect("the ticket on the first line")
        .trim()
        .to_string()
}

#[test]
fn nla_with_a_ticket_reaches_xrdp_and_a_wrong_ticket_does_not() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let ticket = issue_ticket(&d, "kato");
    // The same shape, another last character.
    let mut wrong = ticket.clone();
    let last = wrong.pop().expect("ticket");
    wrong.push(if last == '2' { '3' } else { '2' });

    // Wrong ticket: CredSSP fails, nothing reaches the target.
    let mut client = d.client(&x.display, "kato@xrdp1", &wrong, &["/sec:nla"]);
    let status = client.exit_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "wrong ticket accepted:\n{}",
        client.log()
    );
    assert!(
        !d.xrdp.log_text().contains("Client supplied username"),
        "target reached"
    );
    assert!(d.audit("signin_success", "kato").is_empty());
    let refusals = d.audit("signin_failure", "kato");
    assert!(
        refusals
            .iter()
            .any(|e| e["data"]["method"] == "nla" && e["target"] == "xrdp1"),
        "NLA refusal not audited: {refusals:?}"
    );

    // The right ticket: mstsc-style NLA sign-in, session on the target.
    let client = d.client(&x.display, "kato@xrdp1", &ticket, &["/sec:nla"]);
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "NLA session did not start:\n{}\nserve log:\n{}",
        client.log(),
        d.serve_log()
    );
    drop(client);
    end_test_user_sessions();
    let signins = d.audit("signin_success", "kato");
    assert!(
        signins.iter().any(|e| e["data"]["method"] == "ticket"),
        "{signins:?}"
    );
    let session = session_of(&d, "kato");
    let allow = d.audit("allow", "kato");
    assert!(allow.iter().any(|e| e["target"] == "xrdp1"), "{allow:?}");
    session_end(&d, &session);
}

#[test]
fn an_idle_session_is_ended() {
    let _lock = prepare();
    let d = Deployment::start_with(Options {
        idle_timeout: "3s",
        ..Options::default()
    });
    let x = Xvfb::start();
    let mut client = d.client(
        &x.display,
        "suzuki@xrdp1",
        &login(&d, "suzuki"),
        &["/sec:tls"],
    );
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "session did not start:\n{}\nserve log:\n{}",
        client.log(),
        d.serve_log()
    );
    let status = client.exit_within(Duration::from_secs(20));
    end_test_user_sessions();
    assert!(status.is_some(), "idle client still connected");
    assert!(
        client.log().contains("ERRINFO_IDLE_TIMEOUT"),
        "{}",
        client.log()
    );
    let session = session_of(&d, "suzuki");
    let end = session_end(&d, &session);
    assert!(end.to_string().contains("idle"), "{end}");
}

/// Whether `text` shows up on the CLIPBOARD of `display` within `limit`.
fn clipboard_shows(display: &str, as_test_user: bool, text: &str, limit: Duration) -> bool {
    wait_until(limit, || {
        clipboard_get(display, as_test_user).trim() == text
    })
}

/// Copies text on each side of a connected FreeRDP 2 client (`+clipboard`)
/// and reports whether each crossed: (client to target, target to client).
fn clipboard_crossings(client_display: &str, tag: &str, limit: Duration) -> (bool, bool) {
    let session = session_display().expect("the xrdp session's display");
    // Let the channel server and the client's clipboard start.
    std::thread::sleep(Duration::from_secs(3));
    let upward = format!("client-to-target-{tag}");
    clipboard_set(client_display, false, &upward);
    let up = clipboard_shows(&session, true, &upward, limit);
    let downward = format!("target-to-client-{tag}");
    clipboard_set(&session, true, &downward);
    let down = clipboard_shows(client_display, false, &downward, limit);
    (up, down)
}

#[test]
fn freerdp2_clipboard_crosses_directly_and_never_through_sekisho() {
    require_tool(FREERDP2.program, "freerdp2-x11");
    require_tool("xclip", "xclip");
    let _lock = prepare();
    let d = Deployment::start();

    // Control: FreeRDP 2 straight to xrdp copies both ways.
    let x = Xvfb::start();
    let log = d.tmp().join("direct2.log");
    let log_file = std::fs::File::create(&log).expect("client log");
    let direct = Daemon::spawn(
        "xfreerdp direct",
        Command::new(FREERDP2.program)
            .env("DISPLAY", &x.display)
            .arg(format!("/v:{TARGET_IP}:{}", d.xrdp.port))
            .arg(format!("/u:{TEST_USER}"))
            .arg(format!("/p:{TEST_PASSWORD}"))
            .args([FREERDP2.ignore_cert, "/size:1024x768", "-grab-keyboard"])
            .args(["/sec:tls", "+clipboard"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log"))
            .stderr(log_file),
    );
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "direct FreeRDP 2 session did not start:\n{}",
        client_log(&log)
    );
    let crossed = clipboard_crossings(&x.display, "direct", Duration::from_secs(15));
    assert_eq!(
        crossed,
        (true, true),
        "the clipboard did not work directly (client to target, target to client).\nclient log:\n{}",
        client_log(&log)
    );
    drop(direct);
    drop(x);
    end_test_user_sessions();

    // Through sekisho: nothing crosses either way.
    let x = Xvfb::start();
    let mut client = d.client_with(
        FREERDP2,
        d.rdp_port,
        &x.display,
        "tanaka@xrdp1",
        &login(&d, "tanaka"),
        &["/sec:tls", "+clipboard"],
    );
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "FreeRDP 2 session through sekisho did not start:\n{}\nserve log:\n{}",
        client.log(),
        d.serve_log()
    );
    let crossed = clipboard_crossings(&x.display, "sekisho", Duration::from_secs(8));
    assert_eq!(crossed, (false, false), "the clipboard crossed sekisho");
    assert!(
        client.exit_within(Duration::ZERO).is_none(),
        "the client left early:\n{}",
        client.log()
    );
    drop(client);
    end_test_user_sessions();
    let session = session_of(&d, "tanaka");
    session_end(&d, &session);
    let blocked = d.audit_session(&session);
    assert!(
        blocked
            .iter()
            .any(|e| e["kind"] == "channel_blocked" && e.to_string().contains("cliprdr")),
        "cliprdr refusal not audited: {blocked:?}"
    );
}

/// The xrdp processes serving one connection each: `xrdp` children of the
/// `xrdp` listener.
fn xrdp_connection_processes() -> Vec<i32> {
    let comm = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let parent = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok())
            .unwrap_or(0)
    };
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| comm(*pid).trim() == "xrdp" && comm(parent(*pid)).trim() == "xrdp")
                .collect()
        })
        .unwrap_or_default()
}

/// The xrdp process serving the session is killed: the session ends as
/// `target_lost` (not as a normal logout), with the reason in its end
/// event, and the client is disconnected rather than left connected, told
/// why (Set Error Info ERRINFO_CB_LOADING_DESTINATION, see
/// `rdp::session::TARGET_LOST`).
#[test]
fn a_lost_target_ends_the_session() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let mut client = d.client(&x.display, "kato@xrdp1", &login(&d, "kato"), &["/sec:tls"]);
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "session did not start:\n{}\nserve log:\n{}",
        client.log(),
        d.serve_log()
    );
    let id = d
        .install()
        .live_session_id("kato", Duration::from_secs(10))
        .unwrap_or_default();
    assert!(
        !id.is_empty(),
        "session not listed.\nserve log:\n{}",
        d.serve_log()
    );
    let serving = xrdp_connection_processes();
    assert!(!serving.is_empty(), "no xrdp connection process");
    for pid in serving {
        // SAFETY: SIGKILL to the test's own xrdp connection process.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let status = client.exit_within(Duration::from_secs(15));
    end_test_user_sessions();
    assert!(
        status.is_some(),
        "client still connected without its target"
    );
    assert!(
        client.log().contains("ERRINFO_CB_LOADING_DESTINATION"),
        "the client was not told why:\n{}",
        client.log()
    );
    let end = session_end(&d, &id);
    assert_eq!(end["data"]["status"], "target_lost", "{end}");
    assert!(
        end["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("the connection to xrdp1 was lost"),
        "{end}"
    );
}
