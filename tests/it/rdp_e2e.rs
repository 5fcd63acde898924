//! RDP through sekisho as an operator runs it: `sekisho init`, the admin
//! commands, a real `sekisho serve` process, xfreerdp3 as the client and
//! xrdp as a physical target. The store, policy, secret store, sign-in and
//! recording archive are the real ones; nothing is faked.

use crate::support::rdp_deployment;
use crate::support::rdp_peers;

use std::process::Command;
use std::time::Duration;

use rdp_deployment::*;
use rdp_peers::*;

#[test]
fn password_and_code_reach_xrdp_and_the_session_is_audited_and_recorded() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let share = d.tmp().join("share");
    std::fs::create_dir(&share).expect("share dir");
    let drive = format!("/drive:share,{}", share.display());

    let code = d.code("tanaka");
    let mut client = d.client(
        &x.display,
        "tanaka@xrdp1",
        &format!("{PASSWORD}{code}"),
        &["/sec:tls", "+clipboard", &drive],
    );
    d.assert_desktop_up(&client, &format!("no session of {TEST_USER} on the target"));
    std::thread::sleep(Duration::from_secs(3));
    d.assert_typed_command_runs(
        &client,
        &x.display,
        "typed.txt",
        "typed command did not run on the target",
    );
    // Long enough for a few keyframes (one a second).
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        client.exit_within(Duration::ZERO).is_none(),
        "client gone early"
    );
    drop(client);
    end_test_user_sessions();

    // The audit trail of the session.
    let start = d.audit("session_start", "tanaka");
    assert_eq!(start.len(), 1, "{start:?}");
    let session = start[0]["session"]
        .as_str()
        .expect("session id")
        .to_string();
    assert_eq!(start[0]["protocol"], "rdp");
    let ended = wait_until(Duration::from_secs(30), || {
        !d.audit("session_end", "tanaka").is_empty()
    });
    assert!(ended, "no session_end.\nserve log:\n{}", d.serve_log());
    let events = d.audit_session(&session);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["allow", "session_start", "session_end"] {
        assert!(
            kinds.contains(&kind),
            "no {kind} for the session: {kinds:?}"
        );
    }
    // Every event of the session names its target and protocol, so
    // `audit --target` finds the refusals too.
    for e in &events {
        assert_eq!(e["target"], start[0]["target"], "{e}");
        assert_eq!(e["protocol"], "rdp", "{e}");
    }
    let blocked: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == "channel_blocked")
        .map(|e| e["detail"].as_str().unwrap_or_default().to_string())
        .collect();
    for channel in ["cliprdr", "rdpdr", "rdpsnd"] {
        assert!(
            blocked.iter().any(|b| b.contains(channel)),
            "{channel} not audited as blocked: {blocked:?}"
        );
    }
    let signins = d.audit("signin_success", "tanaka");
    let methods: Vec<&str> = signins
        .iter()
        .filter_map(|e| e["data"]["method"].as_str())
        .collect();
    assert!(
        methods.contains(&"password") && methods.contains(&"totp"),
        "sign-in methods: {methods:?}"
    );
    let end = events
        .iter()
        .find(|e| e["kind"] == "session_end")
        .expect("session_end");
    assert_eq!(end["data"]["status"], "ended", "{end}");

    // The archive: intact, with what a replayer needs.
    let verify = sekisho(&d.dir, &["verify", &session], None);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let archive = find_archive(&d.dir.join("recordings"), &session).expect("archive file");
    let mut reader = sekisho::recording::Reader::open(&archive).expect("open archive");
    let meta = reader.meta().clone();
    assert_eq!(meta.user, "tanaka");
    assert_eq!(meta.target, "xrdp1");
    let desktop = meta.desktop.expect("desktop size in the header");
    assert_eq!((desktop.width, desktop.height), (1024, 768));
    let info = &serde_json::to_value(&meta.rdp).expect("the RDP part as JSON");
    assert!(info["io_channel"].as_u64().is_some(), "{info}");
    assert!(info["user_channel"].as_u64().is_some(), "{info}");
    let channels: Vec<&str> = info["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(channels, vec!["drdynvc"], "{info}");
    let (mut input, mut output, mut keyframes, mut refused, mut share) = (0, 0, 0, 0, 0);
    for ev in reader.events() {
        match ev.expect("event").event {
            sekisho::recording::Event::Input { .. } => input += 1,
            sekisho::recording::Event::Output { .. } => output += 1,
            sekisho::recording::Event::Keyframe => keyframes += 1,
            sekisho::recording::Event::ChannelRefused { .. } => refused += 1,
            sekisho::recording::Event::Mark { label, .. } if label == "share_activated" => {
                share += 1
            }
            _ => {}
        }
    }
    assert!(input > 20, "only {input} input events");
    assert!(output > 0, "no output events");
    assert!(keyframes >= 1, "no keyframe");
    assert!(refused >= 3, "{refused} channel refusals recorded");
    assert!(share >= 1, "no share activation recorded");
    assert!(
        !reader.keyframes().expect("index").is_empty(),
        "no keyframe in the index"
    );
}

#[test]
fn wrong_code_virtual_target_and_unreachable_target_are_refused_and_audited() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();

    // A wrong code: refused before anything reaches the target.
    let good = d.code("suzuki");
    let wrong: String = good
        .chars()
        .map(|c| {
            let n = c.to_digit(10).expect("digit");
            char::from_digit((n + 5) % 10, 10).expect("digit")
        })
        .collect();
    let mut client = d.client(
        &x.display,
        "suzuki@xrdp1",
        &format!("{PASSWORD}{wrong}"),
        &["/sec:tls"],
    );
    let status = client.exit_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "client not refused ({status:?}):\n{}",
        client.log()
    );
    assert!(!session_user_running(), "a session reached the target");
    let failures = d.audit("signin_failure", "suzuki");
    assert!(!failures.is_empty(), "no signin_failure for suzuki");
    assert!(
        d.audit("allow", "suzuki").is_empty(),
        "a refused sign-in was allowed"
    );
    drop(client);

    // The RDP rule: a virtual server is maintained over SSH, never RDP.
    let code = d.code("sato");
    let mut client = d.client(
        &x.display,
        "sato@vm1",
        &format!("{PASSWORD}{code}"),
        &["/sec:tls"],
    );
    let status = client.exit_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "client not refused ({status:?}):\n{}",
        client.log()
    );
    assert!(!session_user_running(), "a session reached the target");
    let deny = d.audit("deny", "sato");
    assert!(
        deny.iter().any(|e| e["data"]["rule"] == "rdp_virtual"),
        "no rdp_virtual deny: {deny:?}"
    );
    assert!(d.audit("session_start", "sato").is_empty());

    // A physical target that does not answer: refused, and the session's
    // row and archive say it failed.
    let code = d.code("tanaka");
    let mut client = d.client(
        &x.display,
        "tanaka@down1",
        &format!("{PASSWORD}{code}"),
        &["/sec:tls"],
    );
    let status = client.exit_within(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| !s.success()),
        "client not refused ({status:?}):\n{}",
        client.log()
    );
    let mut end = Vec::new();
    let ended = wait_until(Duration::from_secs(30), || {
        end = d.audit("session_end", "tanaka");
        !end.is_empty()
    });
    assert!(ended, "no session_end.\nserve log:\n{}", d.serve_log());
    assert_eq!(end[0]["data"]["status"], "failed", "{end:?}");
    // The audit log names where and how connecting failed.
    assert_eq!(
        end[0]["data"]["failure"],
        serde_json::json!({ "phase": "tcp", "kind": "unreachable" }),
        "{end:?}"
    );
    let id = end[0]["session"].as_str().expect("session id");
    let verify = sekisho(&d.dir, &["verify", id], None);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

#[test]
fn admin_kill_disconnects_the_client_and_the_session_ends_killed() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let code = d.code("ito");
    let mut client = d.client(
        &x.display,
        "ito@xrdp1",
        &format!("{PASSWORD}{code}"),
        &["/sec:tls"],
    );
    let id = d
        .install()
        .live_session_id("ito", Duration::from_secs(30))
        .unwrap_or_default();
    let live = !id.is_empty();
    assert!(
        live,
        "session never became live.\nclient log:\n{}\nserve log:\n{}",
        client.log(),
        d.serve_log()
    );
    assert!(
        wait_until(Duration::from_secs(30), session_user_running),
        "no session on the target:\n{}",
        client.log()
    );
    let kill = sekisho(
        &d.dir,
        &["sessions", "kill", &id, "--reason", "emergency stop test"],
        None,
    );
    let kill_text = text(&kill);
    assert!(kill.status.success(), "{kill_text}");
    assert!(kill_text.contains("killed"), "{kill_text}");
    let exited = client.exit_within(Duration::from_secs(10));
    assert!(
        exited.is_some(),
        "client still connected after kill:\n{}",
        client.log()
    );
    let end = d.audit("session_end", "ito");
    assert!(
        end.iter()
            .any(|e| e["session"] == id.as_str() && e["data"]["status"] == "killed"),
        "session_end: {end:?}"
    );
    let verify = sekisho(&d.dir, &["verify", &id], None);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    drop(client);
    end_test_user_sessions();
}

#[test]
fn nla_sign_in_with_a_one_time_ticket_reaches_xrdp_once() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let ticket = d.install().ticket("kato", "xrdp1", "rdp");

    // mstsc-style: NLA (CredSSP/NTLM) with the ticket as the password.
    let client = d.client(&x.display, "kato@xrdp1", &ticket, &["/sec:nla"]);
    d.assert_desktop_up(&client, "NLA session did not reach the target");
    drop(client);
    end_test_user_sessions();
    let signins = d.audit("signin_success", "kato");
    assert!(
        signins.iter().any(|e| e["data"]["method"] == "ticket"),
        "{signins:?}"
    );
    assert_eq!(d.audit("session_start", "kato").len(), 1);

    // The same ticket again: refused, nothing reaches the target.
    let mut again = d.client(&x.display, "kato@xrdp1", &ticket, &["/sec:nla"]);
    let status = again.exit_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "a spent ticket was accepted ({status:?}):\n{}",
        again.log()
    );
    assert!(!session_user_running(), "a session reached the target");
    assert_eq!(d.audit("session_start", "kato").len(), 1);
    assert!(
        !d.audit("signin_failure", "kato").is_empty(),
        "the refused NLA sign-in is not audited"
    );

    // A password with a code is no NLA secret: refused and audited.
    let code = d.code("kato");
    let mut pw = d.client(
        &x.display,
        "kato@xrdp1",
        &format!("{PASSWORD}{code}"),
        &["/sec:nla"],
    );
    let status = pw.exit_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "NLA with a password was accepted ({status:?}):\n{}",
        pw.log()
    );
    assert!(!session_user_running(), "a session reached the target");
}

#[test]
fn export_png_renders_the_recorded_desktop() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let code = d.code("suzuki");
    let mut client = d.client(
        &x.display,
        "suzuki@xrdp1",
        &format!("{PASSWORD}{code}"),
        &["/sec:tls"],
    );
    d.assert_desktop_up(&client, "no session on the target");
    std::thread::sleep(Duration::from_secs(3));
    let marker = d.tmp().join("png.txt");
    type_into_client(
        &x.display,
        &format!("echo SEKISHO PNG EXPORT 0123456789 > {}", marker.display()),
    );
    let typed = wait_until(Duration::from_secs(20), || marker.exists());
    assert!(
        typed,
        "typed command did not run.\nclient log:\n{}",
        client.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    // What the person saw: the client's own screen, just before leaving.
    let shot = d.tmp().join("client.png");
    let import = Command::new("import")
        .env("DISPLAY", &x.display)
        .args(["-window", "root"])
        .arg(format!("png32:{}", shot.display()))
        .output()
        .expect("import (ImageMagick)");
    assert!(import.status.success(), "import: {}", text(&import));
    assert!(
        client.exit_within(Duration::ZERO).is_none(),
        "client gone early"
    );
    drop(client);
    end_test_user_sessions();
    let start = d.audit("session_start", "suzuki");
    let session = start[0]["session"]
        .as_str()
        .expect("session id")
        .to_string();
    let ended = wait_until(Duration::from_secs(30), || {
        !d.audit("session_end", "suzuki").is_empty()
    });
    assert!(ended, "no session_end.\nserve log:\n{}", d.serve_log());

    let png_path = d.tmp().join("frame.png");
    let out = sekisho(
        &d.dir,
        &[
            "export",
            &session,
            "--format",
            "png",
            "--at",
            "100000",
            "-o",
            png_path.to_str().expect("utf8"),
        ],
        None,
    );
    assert!(out.status.success(), "export failed: {}", text(&out));
    let decoder = png::Decoder::new(std::fs::File::open(&png_path).expect("png file"));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png data");
    assert_eq!((info.width, info.height), (1024, 768));
    let px = &buf[..info.buffer_size()];
    let colours: std::collections::HashSet<&[u8]> = px.chunks_exact(4).collect();
    assert!(
        colours.len() >= 2,
        "the rendered desktop has only {} colours: {}",
        colours.len(),
        text(&out)
    );
    // Both colours of the terminal (text on its background, the root
    // window around it) cover a real part of the screen.
    let mut counts: std::collections::HashMap<&[u8], usize> = Default::default();
    for p in px.chunks_exact(4) {
        *counts.entry(p).or_default() += 1;
    }
    let big = counts.values().filter(|&&n| n > 1024 * 768 / 50).count();
    assert!(big >= 2, "one colour covers the desktop: {counts:?}");

    // The rendered frame matches the client's screenshot pixel for pixel
    // (within a small tolerance for a cursor or a late update).
    let decoder = png::Decoder::new(std::fs::File::open(&shot).expect("screenshot"));
    let mut sreader = decoder.read_info().expect("screenshot header");
    let mut sbuf = vec![0; sreader.output_buffer_size()];
    let sinfo = sreader.next_frame(&mut sbuf).expect("screenshot data");
    // The client's window sits at the top left of its (larger) X screen.
    assert!(sinfo.width >= 1024 && sinfo.height >= 768, "{sinfo:?}");
    assert_eq!(sinfo.color_type, png::ColorType::Rgba, "{sinfo:?}");
    let sstride = sinfo.line_size;
    let differ = (0..768usize)
        .flat_map(|y| (0..1024usize).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let a = &px[(y * 1024 + x) * 4..][..3];
            let b = &sbuf[y * sstride + x * 4..][..3];
            a.iter().zip(b).any(|(p, q)| p.abs_diff(*q) > 8)
        })
        .count();
    assert!(
        differ < 1024 * 768 / 200,
        "{differ} pixels differ between the export and the client's screen"
    );

    // MP4 cannot go to standard output: refused with a message.
    let mp4 = sekisho(&d.dir, &["export", &session, "--format", "mp4"], None);
    assert!(!mp4.status.success());
    assert!(text(&mp4).contains("-o FILE.mp4"), "{}", text(&mp4));
}

#[test]
fn inside_the_sign_in_window_the_bare_password_and_password_with_a_fresh_code_both_work() {
    let _lock = prepare();
    let d = Deployment::start_with(Options {
        signin_window: "10m",
        ..Options::default()
    });
    let x = Xvfb::start();
    let attempts = [
        // Opens the window for tanaka at this address.
        (
            "password and code",
            format!("{PASSWORD}{}", d.code("tanaka")),
        ),
        ("bare password in the window", PASSWORD.to_string()),
        (
            "password and a fresh code in the window",
            format!("{PASSWORD}{}", d.code_ahead("tanaka", 1)),
        ),
    ];
    for (n, (what, secret)) in attempts.iter().enumerate() {
        let client = d.client(&x.display, "tanaka@xrdp1", secret, &["/sec:tls"]);
        d.assert_desktop_up(&client, &format!("{what}: no session on the target"));
        drop(client);
        end_test_user_sessions();
        let ended = wait_until(Duration::from_secs(15), || {
            d.audit("session_end", "tanaka").len() > n
        });
        assert!(ended, "{what}: no session_end");
    }
    // No reading of a right secret was counted as a failure.
    assert!(
        d.audit("signin_failure", "tanaka").is_empty(),
        "{:?}",
        d.audit("signin_failure", "tanaka")
    );
    let methods: Vec<String> = d
        .audit("signin_success", "tanaka")
        .iter()
        .filter_map(|e| e["data"]["method"].as_str().map(str::to_owned))
        .collect();
    // Inside the window the code is not checked at all (a reconnecting
    // client replays a used one): both later sign-ins are by window.
    assert_eq!(
        methods.iter().filter(|m| *m == "window").count(),
        2,
        "{methods:?}"
    );
    assert_eq!(
        methods.iter().filter(|m| *m == "totp").count(),
        1,
        "{methods:?}"
    );

    // A wrong password stays wrong inside the window: refused, one failure.
    let mut client = d.client(
        &x.display,
        "tanaka@xrdp1",
        "not-the-password",
        &["/sec:tls"],
    );
    assert!(
        client.exit_within(Duration::from_secs(30)).is_some(),
        "a wrong password was let in"
    );
    assert!(!session_user_running());
    let failures = d.audit("signin_failure", "tanaka");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["data"]["reason"], "wrong password");
}
