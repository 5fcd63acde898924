//! A headless measuring RDP client for the benchmark: ironrdp-connector's
//! client connection sequence over TLS (no NLA), then a read loop that
//! counts what the server sends without decoding pixels — graphics update
//! PDUs, the bitmap rectangles and the area they cover, and bytes — and
//! sends keyboard and mouse input when asked.
//!
//! It advertises what sekisho steers every target to (plain bitmap updates:
//! no drawing orders, no codecs, no surface commands, no bulk compression),
//! so a direct connection and one through sekisho negotiate the same
//! graphics and differ only by the relay — except the colour depth: asking
//! for 32 bpp (the default), the client gets 24 through sekisho, which
//! steers it so ([`color_depth`]). Nothing needs acknowledging:
//! without surface commands there are no frame markers to answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironrdp_async::{FramedWrite as _, connect_begin, connect_finalize, mark_as_upgraded};
use ironrdp_connector::{
    BitmapConfig, ClientConnector, ConnectionOutcome, Credentials, DesktopSize,
};
use ironrdp_core::{ReadCursor, decode, decode_cursor, encode_vec};
use ironrdp_pdu::bitmap::BitmapUpdateData;
use ironrdp_pdu::fast_path::{FastPathHeader, FastPathUpdatePdu, Fragmentation, UpdateCode};
use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent, KeyboardFlags};
use ironrdp_pdu::input::mouse::{MousePdu, PointerFlags};
use ironrdp_pdu::rdp::capability_sets::BitmapCodecs;
use ironrdp_pdu::{Action, gcc, mcs, x224::X224};
use ironrdp_tokio::TokioStream;
use tokio::net::TcpStream;

pub const WIDTH: u16 = 1024;
pub const HEIGHT: u16 = 768;

/// The colour depth the client asks for: `SEKISHO_BENCH_BPP` (24 or 32;
/// 32, what FreeRDP and mstsc ask for, by default).
pub fn color_depth() -> u32 {
    match std::env::var("SEKISHO_BENCH_BPP").as_deref() {
        Ok("24") => 24,
        Ok("32") | Err(_) => 32,
        Ok(other) => panic!("SEKISHO_BENCH_BPP={other}: 24 or 32"),
    }
}

/// What the client has seen so far; read by the bench while it runs.
#[derive(Default)]
pub struct Stats {
    /// Server → client RDP bytes (TLS payload) after the connection sequence.
    pub bytes: AtomicU64,
    /// Graphics update PDUs: reassembled fast-path bitmap/orders/surface
    /// updates and slow-path graphics updates.
    pub updates: AtomicU64,
    /// Bitmap rectangles in those updates, and the pixels they cover.
    pub rects: AtomicU64,
    pub area: AtomicU64,
    /// Of that area, what came in compressed bitmaps (interleaved RLE at
    /// up to 24 bpp, planar at 32), and the bits per pixel seen last.
    pub compressed_area: AtomicU64,
    pub bpp: AtomicU64,
    /// Bitmap data bytes, and what those pixels would take uncompressed.
    pub bitmap_bytes: AtomicU64,
    pub bitmap_raw_bytes: AtomicU64,
    /// Other server PDUs (pointer updates, slow-path control).
    pub other: AtomicU64,
    /// µs from the start of the TCP connect; 0 until it happened.
    pub connected_us: AtomicU64,
    pub first_graphics_us: AtomicU64,
    /// Server Deactivate All PDUs (a reactivation this client does not do).
    pub deactivations: AtomicU64,
    pub error: Mutex<Option<String>>,
    pub ended: AtomicBool,
}

impl Stats {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            bytes: self.bytes.load(Ordering::Relaxed),
            updates: self.updates.load(Ordering::Relaxed),
            area: self.area.load(Ordering::Relaxed),
            compressed_area: self.compressed_area.load(Ordering::Relaxed),
            bitmap_bytes: self.bitmap_bytes.load(Ordering::Relaxed),
            bitmap_raw_bytes: self.bitmap_raw_bytes.load(Ordering::Relaxed),
            bpp: self.bpp.load(Ordering::Relaxed),
        }
    }

    pub fn error(&self) -> Option<String> {
        self.error.lock().expect("stats lock").clone()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub at: Instant,
    pub bytes: u64,
    pub updates: u64,
    pub area: u64,
    pub compressed_area: u64,
    pub bitmap_bytes: u64,
    pub bitmap_raw_bytes: u64,
    pub bpp: u64,
}

/// One input action the bench asks the client to send.
#[derive(Debug, Clone)]
pub enum Input {
    /// Type this text (US layout; unknown characters are skipped).
    Text(String),
    MouseMove(u16, u16),
}

/// A running client on its own thread and tokio runtime; disconnects on drop.
pub struct Client {
    pub stats: Arc<Stats>,
    input: tokio::sync::mpsc::UnboundedSender<Input>,
    stop: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub struct Target {
    pub addr: SocketAddr,
    /// SHA-256 of the server certificate's DER.
    pub pin: [u8; 32],
    pub user: String,
    pub password: String,
}

impl Client {
    pub fn start(target: Target) -> Client {
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(tokio::sync::Notify::new());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (s, n) = (stats.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("rdp-bench-client".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("client runtime");
                let result = rt.block_on(run(target, s.clone(), rx, n));
                if let Err(e) = result {
                    *s.error.lock().expect("stats lock") = Some(e);
                }
                s.ended.store(true, Ordering::Relaxed);
            })
            .expect("client thread");
        Client {
            stats,
            input: tx,
            stop,
            thread: Some(thread),
        }
    }

    pub fn send(&self, input: Input) {
        let _ = self.input.send(input);
    }

    /// Waits until the first graphics update arrived; false on timeout or
    /// when the connection ended first.
    pub fn wait_first_graphics(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stats.first_graphics_us.load(Ordering::Relaxed) > 0 {
                return true;
            }
            if self.stats.ended.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    pub fn first_graphics(&self) -> Option<Duration> {
        let us = self.stats.first_graphics_us.load(Ordering::Relaxed);
        (us > 0).then(|| Duration::from_micros(us))
    }

    pub fn connected(&self) -> Option<Duration> {
        let us = self.stats.connected_us.load(Ordering::Relaxed);
        (us > 0).then(|| Duration::from_micros(us))
    }

    pub fn alive(&self) -> bool {
        !self.stats.ended.load(Ordering::Relaxed)
    }
}

impl Client {
    /// Disconnects and waits for the client thread.
    pub fn stop(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(user: &str, password: &str) -> ironrdp_connector::Config {
    ironrdp_connector::Config {
        desktop_size: DesktopSize {
            width: WIDTH,
            height: HEIGHT,
        },
        monitor_layout: None,
        desktop_scale_factor: 0,
        desktop_physical_size: None,
        desktop_orientation: None,
        device_scale_factor: None,
        monitor_extended_layout: None,
        relative_mouse_input: false,
        enable_tls: true,
        enable_credssp: false,
        enable_standard_rdp_security: false,
        credentials: Credentials::UsernamePassword {
            username: user.to_string(),
            password: password.to_string(),
        },
        domain: None,
        client_build: 0,
        client_name: "sekisho-bench".into(),
        keyboard_type: gcc::KeyboardType::IBM_ENHANCED,
        keyboard_subtype: 0,
        keyboard_layout: 0x0409,
        keyboard_functional_keys_count: 12,
        connection_type: gcc::ConnectionType::Lan,
        ime_file_name: String::new(),
        // Empty codec list: plain bitmap updates only, as sekisho steers.
        bitmap: Some(BitmapConfig {
            lossy_compression: false,
            color_depth: color_depth(),
            codecs: BitmapCodecs(Vec::new()),
        }),
        dig_product_id: String::new(),
        client_dir: String::new(),
        alternate_shell: String::new(),
        work_dir: String::new(),
        remote_application_mode: false,
        rail_support_level: ironrdp_pdu::rdp::capability_sets::RailSupportLevel::empty(),
        platform: ironrdp_pdu::rdp::capability_sets::MajorPlatformType::UNIX,
        hardware_id: None,
        request_data: None,
        autologon: true,
        enable_audio_playback: false,
        enable_audio_capture: false,
        performance_flags: Default::default(),
        license_cache: None,
        timezone_info: Default::default(),
        compression_type: None,
        enable_server_pointer: false,
        pointer_software_rendering: false,
        multitransport_flags: None,
        support_dyn_vc_gfx_protocol: false,
    }
}

/// Connects, then counts until stopped or disconnected.
async fn run(
    target: Target,
    stats: Arc<Stats>,
    mut input: tokio::sync::mpsc::UnboundedReceiver<Input>,
    stop: Arc<tokio::sync::Notify>,
) -> Result<(), String> {
    let start = Instant::now();
    let since = |t: Instant| t.duration_since(start).as_micros().max(1) as u64;
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", target.addr))?;
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().map_err(|e| e.to_string())?;
    let mut framed = ironrdp_async::Framed::<TokioStream<TcpStream>>::new(tcp);
    let mut connector = ClientConnector::new(config(&target.user, &target.password), local);
    let should_upgrade = connect_begin(&mut framed, &mut connector)
        .await
        .map_err(|e| format!("X.224 negotiation: {e}"))?;
    let tcp = framed.into_inner_no_leftover();
    let tls_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(sekisho::rdp::back::PinnedCertVerifier::new(
        target.pin,
    )))
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(target.addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let upgraded = mark_as_upgraded(should_upgrade, &mut connector);
    let mut framed = ironrdp_async::Framed::<TokioStream<_>>::new(tls);
    let outcome = connect_finalize(
        upgraded,
        connector,
        &mut framed,
        &mut NoNetwork,
        ironrdp_connector::ServerName::new(target.addr.ip().to_string()),
        Vec::new(),
        None,
    )
    .await
    .map_err(|e| format!("connection sequence: {e}"))?;
    if let ConnectionOutcome::Redirected(_) = outcome {
        return Err("server redirected the client".into());
    }
    stats
        .connected_us
        .store(since(Instant::now()), Ordering::Relaxed);

    let mut counter = Counter::default();
    loop {
        tokio::select! {
            pdu = framed.read_pdu() => {
                let (action, pdu) = match pdu {
                    Ok(p) => p,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(format!("reading: {e}")),
                };
                stats.bytes.fetch_add(pdu.len() as u64, Ordering::Relaxed);
                let graphics = match action {
                    Action::FastPath => counter.fast_path(&pdu, &stats),
                    Action::X224 => counter.slow_path(&pdu, &stats),
                };
                if graphics && stats.first_graphics_us.load(Ordering::Relaxed) == 0 {
                    stats.first_graphics_us.store(since(Instant::now()), Ordering::Relaxed);
                }
            }
            Some(what) = input.recv() => {
                for pdu in input_pdus(&what) {
                    framed
                        .write_all(&pdu)
                        .await
                        .map_err(|e| format!("writing input: {e}"))?;
                }
            }
            () = stop.notified() => {
                // Polite end: MCS Disconnect Provider Ultimatum.
                let bye = mcs::DisconnectProviderUltimatum::from_reason(
                    mcs::DisconnectReason::UserRequested,
                );
                if let Ok(pdu) = encode_vec(&X224(bye)) {
                    let _ = framed.write_all(&pdu).await;
                }
                return Ok(());
            }
        }
    }
}

/// Fast-path fragments being reassembled.
#[derive(Default)]
struct Counter {
    fragments: Vec<u8>,
}

impl Counter {
    /// Counts one fast-path output PDU; true if it carried graphics.
    fn fast_path(&mut self, pdu: &[u8], stats: &Stats) -> bool {
        let mut cursor = ReadCursor::new(pdu);
        if decode_cursor::<FastPathHeader>(&mut cursor).is_err() {
            stats.other.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let mut graphics = false;
        while !cursor.is_empty() {
            let Ok(update) = decode_cursor::<FastPathUpdatePdu<'_>>(&mut cursor) else {
                stats.other.fetch_add(1, Ordering::Relaxed);
                break;
            };
            let whole = match update.fragmentation {
                Fragmentation::Single => Some(update.data),
                Fragmentation::First => {
                    self.fragments.clear();
                    self.fragments.extend_from_slice(update.data);
                    None
                }
                Fragmentation::Next => {
                    self.fragments.extend_from_slice(update.data);
                    None
                }
                Fragmentation::Last => {
                    self.fragments.extend_from_slice(update.data);
                    Some(&self.fragments[..])
                }
            };
            let Some(data) = whole else { continue };
            match update.update_code {
                UpdateCode::Bitmap => {
                    graphics = true;
                    stats.updates.fetch_add(1, Ordering::Relaxed);
                    count_bitmaps(data, stats);
                }
                UpdateCode::Orders | UpdateCode::SurfaceCommands | UpdateCode::Palette => {
                    graphics = true;
                    stats.updates.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    stats.other.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        graphics
    }

    /// Counts one slow-path PDU; true if it was a graphics update.
    fn slow_path(&mut self, pdu: &[u8], stats: &Stats) -> bool {
        let Ok(X224(indication)) = decode::<X224<mcs::SendDataIndication<'_>>>(pdu) else {
            stats.other.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let data = indication.user_data.as_ref();
        let le16 = |at: usize| {
            data.get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
        };
        // Share control header: pduType at 2; data PDUs carry pduType2 at 14.
        let pdu_type = le16(2).map(|t| t & 0x000F);
        const PDUTYPE_DEACTIVATE_ALL: u16 = 0x6;
        const PDUTYPE_DATA: u16 = 0x7;
        const PDUTYPE2_UPDATE: u8 = 0x02;
        if pdu_type == Some(PDUTYPE_DEACTIVATE_ALL) {
            stats.deactivations.fetch_add(1, Ordering::Relaxed);
        }
        if pdu_type == Some(PDUTYPE_DATA) && data.get(14) == Some(&PDUTYPE2_UPDATE) {
            stats.updates.fetch_add(1, Ordering::Relaxed);
            // updateType 1 = bitmap; TS_UPDATE_BITMAP_DATA starts with it.
            if le16(18) == Some(1) {
                count_bitmaps(&data[18..], stats);
            }
            return true;
        }
        stats.other.fetch_add(1, Ordering::Relaxed);
        false
    }
}

fn count_bitmaps(data: &[u8], stats: &Stats) {
    if let Ok(update) = decode::<BitmapUpdateData<'_>>(data) {
        let mut area = 0u64;
        let (mut compressed, mut bytes, mut raw) = (0u64, 0u64, 0u64);
        for r in &update.rectangles {
            let a = u64::from(r.width) * u64::from(r.height);
            area += a;
            if r.compression_flags
                .contains(ironrdp_pdu::bitmap::Compression::BITMAP_COMPRESSION)
            {
                compressed += a;
            }
            bytes += r.bitmap_data.len() as u64;
            raw += a * u64::from(r.bits_per_pixel).div_ceil(8);
            stats
                .bpp
                .store(u64::from(r.bits_per_pixel), Ordering::Relaxed);
        }
        stats
            .compressed_area
            .fetch_add(compressed, Ordering::Relaxed);
        stats.bitmap_bytes.fetch_add(bytes, Ordering::Relaxed);
        stats.bitmap_raw_bytes.fetch_add(raw, Ordering::Relaxed);
        stats
            .rects
            .fetch_add(update.rectangles.len() as u64, Ordering::Relaxed);
        stats.area.fetch_add(area, Ordering::Relaxed);
    }
}

/// Set-1 scancode and whether Shift is needed, for a US layout.
fn scancode(c: char) -> Option<(u8, bool)> {
    const ROW_Q: &str = "qwertyuiop";
    const ROW_A: &str = "asdfghjkl";
    const ROW_Z: &str = "zxcvbnm";
    let lower = c.to_ascii_lowercase();
    let shift = c.is_ascii_uppercase();
    if let Some(i) = ROW_Q.find(lower) {
        return Some((0x10 + i as u8, shift));
    }
    if let Some(i) = ROW_A.find(lower) {
        return Some((0x1E + i as u8, shift));
    }
    if let Some(i) = ROW_Z.find(lower) {
        return Some((0x2C + i as u8, shift));
    }
    Some(match c {
        '1'..='9' => (0x02 + (c as u8 - b'1'), false),
        '0' => (0x0B, false),
        '-' => (0x0C, false),
        '_' => (0x0C, true),
        '=' => (0x0D, false),
        ' ' => (0x39, false),
        '\n' => (0x1C, false),
        '.' => (0x34, false),
        '>' => (0x34, true),
        ',' => (0x33, false),
        '/' => (0x35, false),
        ';' => (0x27, false),
        '\'' => (0x28, false),
        '|' => (0x2B, true),
        '*' => (0x09, true),
        _ => return None,
    })
}

const SHIFT: u8 = 0x2A;

/// Fast-path input PDUs for one action: a press and a release per key.
fn input_pdus(what: &Input) -> Vec<Vec<u8>> {
    let mut events = Vec::new();
    match what {
        Input::Text(text) => {
            for c in text.chars() {
                let Some((code, shift)) = scancode(c) else {
                    continue;
                };
                if shift {
                    events.push(FastPathInputEvent::KeyboardEvent(
                        KeyboardFlags::empty(),
                        SHIFT,
                    ));
                }
                events.push(FastPathInputEvent::KeyboardEvent(
                    KeyboardFlags::empty(),
                    code,
                ));
                events.push(FastPathInputEvent::KeyboardEvent(
                    KeyboardFlags::RELEASE,
                    code,
                ));
                if shift {
                    events.push(FastPathInputEvent::KeyboardEvent(
                        KeyboardFlags::RELEASE,
                        SHIFT,
                    ));
                }
            }
        }
        Input::MouseMove(x, y) => events.push(FastPathInputEvent::MouseEvent(MousePdu {
            flags: PointerFlags::MOVE,
            number_of_wheel_rotation_units: 0,
            x_position: *x,
            y_position: *y,
        })),
    }
    // One PDU per event, as a client sends them when keys are typed.
    events
        .into_iter()
        .filter_map(|e| FastPathInput::new(vec![e]).ok())
        .filter_map(|p| encode_vec(&p).ok())
        .collect()
}

/// No KDC: TLS sign-in only.
struct NoNetwork;

impl ironrdp_async::NetworkClient for NoNetwork {
    async fn send(
        &mut self,
        _request: &ironrdp_connector::sspi::generator::NetworkRequest,
    ) -> ironrdp_connector::ConnectorResult<Vec<u8>> {
        Err(ironrdp_connector::general_err!("no KDC in the benchmark"))
    }
}
