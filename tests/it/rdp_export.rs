//! Desktop recordings exported as MP4 (and PNG frames, seeked from
//! keyframes): a real session xfreerdp3 → `sekisho serve` → xrdp, the real
//! `sekisho export` CLI and the real ffmpeg/ffprobe. The CLI's refusals are
//! checked on archives written with the public archive writer.

use crate::support::rdp_deployment;
use crate::support::rdp_peers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rdp_deployment::*;
use rdp_peers::*;
use sekisho::protocol::rdp::pdu::demand_active_size;
use sekisho::recording::{
    ArchiveKey, ArchiveWriter, DesktopSize, Event, Protocol, RdpInfo, Reader, SessionMeta,
    TerminalSize, WriterOptions,
};
use sekisho::replay::desktop::render::Renderer;
use sekisho::replay::desktop::seek::{render_at, replay_start};

/// `sekisho export ARCHIVE ARGS…` with `path` as PATH when given.
fn export(archive: &Path, args: &[&str], path: Option<&Path>) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("export").arg(archive).args(args);
    cmd.env_remove("SEKISHO_CONFIG");
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    cmd.output().expect("run sekisho export")
}

/// width, height, length in frames at `fps` and codec of the video stream,
/// by ffprobe. The export sends the encoder only the instants where the
/// desktop changed (and the last), each shown until the next: the length
/// is the MP4's duration, not its count of coded frames.
fn probe(mp4: &Path, fps: u64) -> (u64, u64, u64, String) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=width,height,codec_name:format=duration",
            "-of",
            "json",
        ])
        .arg(mp4)
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "ffprobe: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let s = &v["streams"][0];
    let num = |k: &str| {
        s[k].as_u64()
            .or_else(|| s[k].as_str().and_then(|x| x.parse().ok()))
            .unwrap_or_else(|| panic!("{k} in {v}"))
    };
    let duration: f64 = v["format"]["duration"]
        .as_str()
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("duration in {v}"));
    (
        num("width"),
        num("height"),
        (duration * fps as f64).round() as u64,
        s["codec_name"].as_str().unwrap_or_default().to_string(),
    )
}

/// The picture shown at frame `n` of the video at `fps` (time n/fps) as
/// RGB, 3 bytes a pixel, decoded by ffmpeg (its `fps` filter turns the
/// variable frame timing into one frame per instant).
fn video_frame(mp4: &Path, fps: u64, n: u64) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(mp4)
        .args([
            "-vf",
            &format!("fps={fps},select=eq(n\\,{n})"),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg: {}", text(&out));
    out.stdout
}

/// RGB (3 bytes a pixel) as opaque RGBA.
fn rgba(rgb: &[u8]) -> Vec<u8> {
    assert_eq!(rgb.len(), 1024 * 768 * 3, "not a 1024x768 frame");
    rgb.chunks_exact(3)
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect()
}

/// Mean absolute difference of the colour channels of two RGBA images.
fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    let total: u64 = a
        .chunks_exact(4)
        .zip(b.chunks_exact(4))
        .flat_map(|(p, q)| p[..3].iter().zip(&q[..3]))
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / (a.len() / 4 * 3) as f64
}

/// RGBA pixels of a PNG file, and its size.
fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).expect("png file"));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png data");
    assert_eq!(info.color_type, png::ColorType::Rgba);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
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

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

#[test]
fn mp4_export_of_a_recorded_desktop_matches_its_png_frames() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let code = d.code("sato");
    let mut client = d.client(
        &x.display,
        "sato@xrdp1",
        &format!("{PASSWORD}{code}"),
        &["/sec:tls"],
    );
    d.assert_desktop_up(&client, "no session on the target");
    std::thread::sleep(Duration::from_secs(3));
    for (n, line) in ["echo SEKISHO MP4 EXPORT", "ls -la /usr/bin | head -30"]
        .iter()
        .enumerate()
    {
        let marker = d.tmp().join(format!("mp4-{n}.txt"));
        type_into_client(&x.display, &format!("{line}; touch {}", marker.display()));
        let typed = wait_until(Duration::from_secs(20), || marker.exists());
        assert!(typed, "typed command did not run:\n{}", client.log());
        std::thread::sleep(Duration::from_secs(3));
    }
    assert!(
        client.exit_within(Duration::ZERO).is_none(),
        "client gone early"
    );
    drop(client);
    end_test_user_sessions();
    let start = d.audit("session_start", "sato");
    let session = start[0]["session"]
        .as_str()
        .expect("session id")
        .to_string();
    let ended = wait_until(Duration::from_secs(30), || {
        !d.audit("session_end", "sato").is_empty()
    });
    assert!(ended, "no session_end.\nserve log:\n{}", d.serve_log());
    let archive = find_archive(&d.dir.join("recordings"), &session).expect("archive");
    let mut reader = Reader::open(&archive).expect("open archive");
    let duration_us = reader
        .index()
        .expect("index")
        .last()
        .expect("chunks")
        .t_last_us;
    let keyframes = reader.keyframes().expect("keyframes");
    assert!(keyframes.len() >= 5, "{} keyframes", keyframes.len());

    // A seeked render equals the render from the session start.
    for at in [duration_us / 2, duration_us - 1_500_000, u64::MAX] {
        assert!(replay_start(&keyframes, at) > 0, "no seek for {at}");
        let seeked = render_at(&mut reader, at).expect("seeked render");
        let mut full = Renderer::new(reader.meta()).expect("renderer");
        full.replay_until(reader.events(), at).expect("full render");
        assert_eq!((seeked.width(), seeked.height()), (1024, 768));
        let (a, b) = (seeked.rgba(), full.rgba());
        let colours: std::collections::HashSet<&[u8]> = a.chunks_exact(4).collect();
        assert!(colours.len() >= 2, "a blank desktop at {at}");
        let differ = differing(&a, &b, 8);
        assert!(
            differ < 1024 * 768 / 200,
            "{differ} pixels differ between the seeked and the full render at {at} µs"
        );
    }

    // MP4 needs a file; ffmpeg missing says what to install.
    let no_file = export(&archive, &["--format", "mp4"], None);
    assert!(!no_file.status.success());
    assert!(text(&no_file).contains("-o FILE.mp4"), "{}", text(&no_file));

    let out_dir = d.tmp().join("videos");
    std::fs::create_dir(&out_dir).expect("out dir");
    let mp4 = out_dir.join("session.mp4");
    let mp4_arg = mp4.to_str().expect("utf8");
    let empty = d.tmp().join("empty-bin");
    std::fs::create_dir(&empty).expect("empty dir");
    let missing = export(&archive, &["--format", "mp4", "-o", mp4_arg], Some(&empty));
    let said = text(&missing);
    assert!(!missing.status.success(), "{said}");
    assert!(
        said.contains("ffmpeg") && said.contains("apt-get install ffmpeg"),
        "{said}"
    );
    assert!(said.contains("--format png"), "{said}");
    assert!(files_in(&out_dir).is_empty(), "{:?}", files_in(&out_dir));

    // The whole session at 10 fps.
    let started = Instant::now();
    let made = export(&archive, &["--format", "mp4", "-o", mp4_arg], None);
    let wall = started.elapsed();
    assert!(made.status.success(), "export failed: {}", text(&made));
    assert_eq!(files_in(&out_dir), vec![mp4.clone()]);
    let seconds = duration_us as f64 / 1e6;
    eprintln!(
        "mp4 export: {seconds:.1} s of session in {:.2} s = {:.1}x real time ({} bytes)",
        wall.as_secs_f64(),
        seconds / wall.as_secs_f64(),
        std::fs::metadata(&mp4).expect("mp4").len()
    );
    let (w, h, frames, codec) = probe(&mp4, 10);
    assert_eq!(codec, "h264");
    assert_eq!((w, h), (1024, 768));
    let want = (duration_us / 100_000 + 1) as i64;
    assert!(
        (frames as i64 - want).abs() <= 2,
        "{frames} frames for {seconds} s at 10 fps"
    );

    // A frame of the video looks like the PNG of the same moment.
    for k in [want * 3 / 4, want - 5] {
        let at = format!("{}.{}", k / 10, k % 10);
        let png_path = d.tmp().join(format!("at-{k}.png"));
        let png = export(
            &archive,
            &[
                "--format",
                "png",
                "--at",
                &at,
                "-o",
                png_path.to_str().expect("utf8"),
            ],
            None,
        );
        assert!(png.status.success(), "{}", text(&png));
        let (pw, ph, px) = read_png(&png_path);
        assert_eq!((pw, ph), (1024, 768));
        // Not a blank screen: two colours (text, background) cover a real part.
        let mut counts: std::collections::HashMap<&[u8], usize> = Default::default();
        for p in px.chunks_exact(4) {
            *counts.entry(p).or_default() += 1;
        }
        let big = counts.values().filter(|&&n| n > 1024 * 768 / 50).count();
        assert!(big >= 2, "frame {k}: one colour covers the desktop");
        let video = rgba(&video_frame(&mp4, 10, k as u64));
        let mad = mean_abs_diff(&px, &video);
        let differ = differing(&px, &video, 64);
        eprintln!("frame {k} ({at} s): mean absolute difference {mad:.2}, {differ} pixels off");
        assert!(mad < 3.0, "frame {k} differs from the PNG: MAD {mad}");
        assert!(differ < 1024 * 768 / 100, "frame {k}: {differ} pixels off");
        // The measure does tell frames apart: the first frame, before the
        // desktop was drawn, is far off.
        let first = rgba(&video_frame(&mp4, 10, 0));
        let off = mean_abs_diff(&px, &first);
        assert!(off > 10.0, "frame 0 resembles frame {k}: MAD {off}");
    }

    // Part of the session, seeked to --from.
    let part = out_dir.join("part.mp4");
    let from = format!("{:.1}", seconds / 2.0);
    let to = format!("{:.1}", seconds / 2.0 + 3.0);
    let started = Instant::now();
    let cut = export(
        &archive,
        &[
            "--format",
            "mp4",
            "--from",
            &from,
            "--to",
            &to,
            "--fps",
            "5",
            "-o",
            part.to_str().expect("utf8"),
        ],
        None,
    );
    assert!(cut.status.success(), "{}", text(&cut));
    eprintln!(
        "mp4 export of 3 s from {from} s: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let (w, h, frames, _) = probe(&part, 5);
    assert_eq!((w, h), (1024, 768));
    assert!(
        (15..=17).contains(&frames),
        "{frames} frames for 3 s at 5 fps"
    );
}

#[test]
fn a_desktop_resized_by_the_client_replays_at_its_new_size() {
    let _lock = prepare();
    let d = Deployment::start();
    let x = Xvfb::start();
    let code = d.code("ito");
    let mut client = d.client(
        &x.display,
        "ito@xrdp1",
        &format!("{PASSWORD}{code}"),
        &["/sec:tls", "/dynamic-resolution"],
    );
    let up = wait_until(Duration::from_secs(30), session_user_running);
    assert!(up, "no session on the target:\n{}", client.log());
    std::thread::sleep(Duration::from_secs(3));
    type_into_client(&x.display, "echo before resize");
    std::thread::sleep(Duration::from_secs(2));
    // The client window shrinks; FreeRDP asks for the new size over the
    // display control channel and xrdp reactivates the share at that size.
    let search = Command::new("xdotool")
        .env("DISPLAY", &x.display)
        .args(["search", "--name", "FreeRDP"])
        .output()
        .expect("xdotool search");
    let window = String::from_utf8_lossy(&search.stdout)
        .lines()
        .next()
        .expect("FreeRDP window")
        .to_string();
    let resized = Command::new("xdotool")
        .env("DISPLAY", &x.display)
        .args(["windowsize", &window, "900", "600"])
        .output()
        .expect("xdotool windowsize");
    assert!(resized.status.success(), "{}", text(&resized));
    std::thread::sleep(Duration::from_secs(4));
    let marker = d.tmp().join("resized.txt");
    type_into_client(
        &x.display,
        &format!("echo after resize > {}", marker.display()),
    );
    let typed = wait_until(Duration::from_secs(20), || marker.exists());
    assert!(typed, "typed command did not run:\n{}", client.log());
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        client.exit_within(Duration::ZERO).is_none(),
        "client gone early"
    );
    drop(client);
    end_test_user_sessions();
    let start = d.audit("session_start", "ito");
    let session = start[0]["session"]
        .as_str()
        .expect("session id")
        .to_string();
    let ended = wait_until(Duration::from_secs(30), || {
        !d.audit("session_end", "ito").is_empty()
    });
    assert!(ended, "no session_end.\nserve log:\n{}", d.serve_log());
    let archive = find_archive(&d.dir.join("recordings"), &session).expect("archive");

    // The recording holds the target's Demand Active for the new size.
    let mut reader = Reader::open(&archive).expect("open archive");
    let mut resized_at = None;
    for ev in reader.events() {
        let ev = ev.expect("event");
        if let Event::Output { channel, data, .. } = &ev.event
            && *channel != 0
            && demand_active_size(data) == Some((900, 600))
        {
            resized_at.get_or_insert(ev.t_us);
        }
    }
    let resized_at = resized_at.expect("no Demand Active for 900x600 recorded");

    // PNG: the size of the moment.
    let png = |at: &str, name: &str| {
        let path = d.tmp().join(name);
        let o = export(
            &archive,
            &[
                "--format",
                "png",
                "--at",
                at,
                "-o",
                path.to_str().expect("utf8"),
            ],
            None,
        );
        assert!(o.status.success(), "{}", text(&o));
        read_png(&path)
    };
    let before = format!("{:.1}", (resized_at as f64 / 1e6 - 0.5).max(0.0));
    let (w, h, _) = png(&before, "before.png");
    assert_eq!((w, h), (1024, 768));
    let (w, h, px) = png("100000", "after.png");
    assert_eq!((w, h), (900, 600));
    assert!(
        px.chunks_exact(4).any(|p| p[..3] == [255, 255, 255]),
        "nothing drawn after the resize"
    );

    // MP4: the first size throughout; the 900x600 desktop is scaled to
    // 1024x682 and centred, black bars of 43 rows above and below.
    let mp4 = d.tmp().join("resized.mp4");
    let o = export(
        &archive,
        &["--format", "mp4", "-o", mp4.to_str().expect("utf8")],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let (w, h, frames, _) = probe(&mp4, 10);
    assert_eq!((w, h), (1024, 768));
    let last = video_frame(&mp4, 10, frames - 1);
    let row_max = |y: usize| *last[y * 1024 * 3..][..1024 * 3].iter().max().expect("row");
    for y in (0..40).chain(728..768) {
        assert!(row_max(y) < 40, "row {y} is not a black bar");
    }
    assert!(
        (45..300).any(|y| row_max(y) > 200),
        "no desktop between the bars"
    );
}

fn meta(protocol: Protocol, desktop: Option<(u32, u32)>) -> SessionMeta {
    SessionMeta {
        session_id: "mp4".into(),
        user: "suzuki".into(),
        vendor: "acme".into(),
        system: "fa".into(),
        target: "pc1".into(),
        protocol,
        client_addr: "127.0.0.1:40000".into(),
        decision: "allow".into(),
        hop_parent: None,
        started_at: chrono::Utc::now(),
        terminal: (protocol == Protocol::Ssh).then_some(TerminalSize {
            cols: 80,
            rows: 24,
            term: None,
        }),
        desktop: desktop.map(|(width, height)| DesktopSize { width, height }),
        rdp: Some(RdpInfo {
            io_channel: 1003,
            user_channel: 1007,
            ..RdpInfo::default()
        }),
    }
}

/// An archive of `meta` with a mark every 100 ms for `seconds`, one chunk
/// a second; sealed or not.
fn archive(dir: &Path, meta: &SessionMeta, seconds: u64, seal: bool) -> PathBuf {
    let path = dir.join(format!("{}.skrec", meta.session_id));
    let mut w = ArchiveWriter::create(&path, meta, WriterOptions::default()).expect("create");
    for tick in 0..=seconds * 10 {
        let ev = if tick % 10 == 0 {
            Event::Keyframe
        } else {
            Event::Mark {
                label: "tick".into(),
                detail: tick.to_string(),
            }
        };
        w.append(tick * 100_000, &ev).expect("append");
        if tick % 10 == 9 {
            w.flush_chunk().expect("flush");
        }
    }
    if seal {
        w.seal(&ArchiveKey::generate()).expect("seal");
    } else {
        w.flush_chunk().expect("flush");
    }
    path
}

#[test]
fn mp4_export_refuses_what_it_cannot_do_and_pads_odd_desktops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out dir");
    let dest = out.join("v.mp4");
    let dest_arg = dest.to_str().expect("utf8");

    // A terminal session is no desktop.
    let ssh = archive(dir.path(), &meta(Protocol::Ssh, None), 2, true);
    let o = export(&ssh, &["--format", "mp4", "-o", dest_arg], None);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("desktop (RDP) recordings"),
        "{}",
        text(&o)
    );
    assert!(files_in(&out).is_empty());

    // An odd desktop size is padded to even (yuv420p), ffmpeg is real.
    let mut m = meta(Protocol::Rdp, Some((333, 201)));
    m.session_id = "odd".into();
    let odd = archive(dir.path(), &m, 3, true);
    let o = export(
        &odd,
        &["--format", "mp4", "--fps", "4", "-o", dest_arg],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let (w, h, frames, codec) = probe(&dest, 4);
    assert_eq!((w, h, codec.as_str()), (334, 202, "h264"));
    assert_eq!(frames, 13, "3 s at 4 fps, both ends included");
    assert_eq!(files_in(&out), vec![dest.clone()]);

    // Bad arguments and no ffmpeg: clear errors, nothing written.
    std::fs::remove_file(&dest).expect("rm");
    for (args, says) in [
        (vec!["--fps", "0"], "--fps 0"),
        (vec!["--from=-1"], "--from -1"),
        (vec!["--from", "5", "--to", "4"], "--to is before --from"),
        (vec!["--from", "60"], "no frame to export"),
    ] {
        let mut all = vec!["--format", "mp4", "-o", dest_arg];
        all.extend(args);
        let o = export(&odd, &all, None);
        assert!(!o.status.success(), "{all:?}");
        assert!(text(&o).contains(says), "{all:?}: {}", text(&o));
        assert!(files_in(&out).is_empty(), "{all:?}: {:?}", files_in(&out));
    }
    let empty = dir.path().join("bin");
    std::fs::create_dir(&empty).expect("bin dir");
    let o = export(&odd, &["--format", "mp4", "-o", dest_arg], Some(&empty));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("apt-get install ffmpeg") && text(&o).contains("--format png"),
        "{}",
        text(&o)
    );
    assert!(files_in(&out).is_empty());

    // A recording cut short by a crash: exported up to its sound part.
    let mut m = meta(Protocol::Rdp, Some((64, 48)));
    m.session_id = "cut".into();
    let cut = archive(dir.path(), &m, 5, false);
    let len = std::fs::metadata(&cut).expect("len").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .expect("open");
    f.set_len(len - 20).expect("truncate");
    let o = export(
        &cut,
        &["--format", "mp4", "--fps", "10", "-o", dest_arg],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("cut short"), "{}", text(&o));
    let (w, h, frames, _) = probe(&dest, 10);
    assert_eq!((w, h), (64, 48));
    // Chunks of whole seconds; the last (5.0 s) is cut: 0–4.9 s remain.
    assert_eq!(frames, 50);
}

/// Bitmap rectangles of one recorded server PDU (fast-path on the
/// fast-path channel, slow-path otherwise): (pixels, compressed, data bytes).
/// One bitmap rectangle of a recorded update.
struct RecordedBitmap {
    pixels: u64,
    compressed: bool,
    bytes: u64,
    bpp: u16,
}

fn recorded_bitmaps(fast_path: bool, data: &[u8]) -> Vec<RecordedBitmap> {
    use ironrdp_core::{ReadCursor, decode, decode_cursor};
    use ironrdp_pdu::bitmap::{BitmapUpdateData, Compression};
    use ironrdp_pdu::fast_path::{FastPathHeader, FastPathUpdatePdu, Fragmentation, UpdateCode};
    use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};
    let rects = |update: &[u8]| -> Vec<RecordedBitmap> {
        decode::<BitmapUpdateData<'_>>(update)
            .map(|u| {
                u.rectangles
                    .iter()
                    .map(|r| RecordedBitmap {
                        pixels: u64::from(r.width) * u64::from(r.height),
                        compressed: r
                            .compression_flags
                            .contains(Compression::BITMAP_COMPRESSION),
                        bytes: r.bitmap_data.len() as u64,
                        bpp: r.bits_per_pixel,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if fast_path {
        let mut cursor = ReadCursor::new(data);
        if decode_cursor::<FastPathHeader>(&mut cursor).is_err() {
            return Vec::new();
        }
        let mut out = Vec::new();
        while !cursor.is_empty() {
            let Ok(u) = decode_cursor::<FastPathUpdatePdu<'_>>(&mut cursor) else {
                break;
            };
            // xrdp sends bitmaps unfragmented; a fragment is not counted.
            if u.update_code == UpdateCode::Bitmap && u.fragmentation == Fragmentation::Single {
                out.extend(rects(u.data));
            }
        }
        return out;
    }
    let Ok(header) = decode::<ShareControlHeader>(data) else {
        return Vec::new();
    };
    let ShareControlPdu::Data(sd) = header.share_control_pdu else {
        return Vec::new();
    };
    let ShareDataPdu::Update(update) = sd.share_data_pdu else {
        return Vec::new();
    };
    // TS_UPDATE_BITMAP: updateType 1, then TS_UPDATE_BITMAP_DATA from it.
    if update.get(..2) != Some(&[1, 0]) {
        return Vec::new();
    }
    rects(&update)
}

/// Two noise pictures shown in turn on the target: xrdp sends them as
/// compressed bitmaps (interleaved RLE at 24 bpp, which sekisho asks for
/// where the client asked for 32), the archive keeps them in one
/// compression stream that finds each picture shown before, every PDU
/// decodes, and the export equals what the client showed.
#[test]
fn redrawn_pictures_are_recorded_compressed_in_one_stream_and_export_as_the_client_saw_them() {
    let _lock = prepare();
    let d = Deployment::start_with(Options {
        // The product's default: streams run from keyframe to keyframe.
        keyframe_interval: "30s",
        ..Options::default()
    });
    let images = d.tmp().join("images");
    std::fs::create_dir(&images).expect("images dir");
    let a = images.join("a.png");
    let made = Command::new("convert")
        .args([
            "-size", "1024x768", "-depth", "8", "xc:", "+noise", "Random",
        ])
        .args(["-blur", "0x1"])
        .arg(&a)
        .status()
        .expect("convert (ImageMagick)");
    assert!(made.success());
    let made = Command::new("convert")
        .arg(&a)
        .arg("-flop")
        .arg(images.join("b.png"))
        .status()
        .expect("convert");
    assert!(made.success());
    std::fs::set_permissions(&images, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let marker = d.tmp().join("pictures-done");
    let script = d.tmp().join("pictures.sh");
    std::fs::write(
        &script,
        format!(
            "for i in 1 2 3 4 5 6 7; do display -window root {a}; display -window root {b}; done; \
             display -window root {a}; touch {m}\n",
            a = a.display(),
            b = images.join("b.png").display(),
            m = marker.display()
        ),
    )
    .expect("script");

    let x = Xvfb::start();
    let code = d.code("ito");
    let mut client = d.client(
        &x.display,
        "ito@xrdp1",
        &format!("{PASSWORD}{code}"),
        &["/sec:tls"],
    );
    d.assert_desktop_up(&client, "no session on the target");
    std::thread::sleep(Duration::from_secs(3));
    type_into_client(&x.display, &format!("sh {}", script.display()));
    let done = wait_until(Duration::from_secs(90), || marker.exists());
    assert!(done, "the pictures were not shown:\n{}", client.log());
    std::thread::sleep(Duration::from_secs(3));
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
    let ended = wait_until(Duration::from_secs(30), || {
        !d.audit("session_end", "ito").is_empty()
    });
    assert!(ended, "no session_end.\nserve log:\n{}", d.serve_log());
    let session = d.audit("session_start", "ito")[0]["session"]
        .as_str()
        .expect("session id")
        .to_string();
    let archive = find_archive(&d.dir.join("recordings"), &session).expect("archive");
    let archive_bytes = std::fs::metadata(&archive).expect("archive").len();

    let mut reader = Reader::open(&archive).expect("open archive");
    let fast_path_channel = reader
        .meta()
        .rdp
        .as_ref()
        .expect("rdp info")
        .fastpath_channel;
    let (mut area, mut compressed, mut wire, mut at_24) = (0u64, 0u64, 0u64, 0u64);
    for ev in reader.events() {
        if let Event::Output { channel, data, .. } = ev.expect("event").event {
            for b in recorded_bitmaps(channel == fast_path_channel, &data) {
                area += b.pixels;
                wire += b.bytes;
                if b.compressed {
                    compressed += b.pixels;
                }
                if b.bpp == 24 {
                    at_24 += b.pixels;
                }
            }
        }
    }
    let screens = area as f64 / (1024.0 * 768.0);
    eprintln!(
        "{screens:.1} screens of bitmaps, {:.0} % compressed, {:.1} MB of bitmap data \
         ({:.2} of raw 32 bpp), archive {:.2} MB",
        compressed as f64 / area.max(1) as f64 * 100.0,
        wire as f64 / 1e6,
        wire as f64 / (area.max(1) * 4) as f64,
        archive_bytes as f64 / 1e6
    );
    assert!(screens >= 8.0, "only {screens:.1} screens drawn");
    // FreeRDP asked for 32 bpp; sekisho asked xrdp for 24 (the same
    // colours), which xrdp compresses as interleaved RLE.
    assert_eq!(at_24, area, "{at_24} of {area} pixels came at 24 bpp");
    // Every bitmap came compressed (the steered capabilities allow it).
    assert!(
        compressed * 100 >= area * 99,
        "{compressed} of {area} pixels came compressed"
    );
    // The pictures repeat: the archive holds each about once.
    let index = reader.index().expect("index").to_vec();
    assert!(
        index.iter().any(|e| e.continues),
        "no chunk continues a stream: {index:?}"
    );
    assert!(
        archive_bytes * 3 < wire,
        "archive {archive_bytes} bytes for {wire} bytes of bitmaps"
    );

    // Every recorded PDU decodes, and the end looks as the client saw it.
    let mut renderer = Renderer::new(reader.meta()).expect("renderer");
    renderer
        .replay_until(reader.events(), u64::MAX)
        .expect("replay");
    assert_eq!(renderer.stats.skipped, 0, "{:?}", renderer.stats);
    let png_path = d.tmp().join("end.png");
    let out = export(
        &archive,
        &["--format", "png", "-o", png_path.to_str().expect("utf8")],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let (w, h, px) = read_png(&png_path);
    assert_eq!((w, h), (1024, 768));
    let decoder = png::Decoder::new(std::fs::File::open(&shot).expect("screenshot"));
    let mut sreader = decoder.read_info().expect("screenshot header");
    let mut sbuf = vec![0; sreader.output_buffer_size()];
    let sinfo = sreader.next_frame(&mut sbuf).expect("screenshot data");
    assert_eq!(sinfo.color_type, png::ColorType::Rgba, "{sinfo:?}");
    let stride = sinfo.line_size;
    let differ = (0..768usize)
        .flat_map(|y| (0..1024usize).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let p = &px[(y * 1024 + x) * 4..][..3];
            let q = &sbuf[y * stride + x * 4..][..3];
            p.iter().zip(q).any(|(m, n)| m.abs_diff(*n) > 8)
        })
        .count();
    assert!(
        differ < 1024 * 768 / 200,
        "{differ} pixels differ between the export and the client's screen"
    );
}
