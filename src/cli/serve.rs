//! `sekisho serve`: the bastion process. Loads config, keys and policies,
//! starts the listeners, reloads policies on SIGHUP or when a file changes,
//! and stops cleanly on SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use super::Global;
use crate::config::{Config, LogFormat};
use crate::session::Services;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Log format, overriding `[log] format` of the config file.
    #[arg(long, value_parser = ["human", "json"])]
    pub log_format: Option<String>,
}

pub async fn run(g: &Global, a: ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(g)?;
    let format = match a.log_format.as_deref() {
        Some("json") => LogFormat::Json,
        Some(_) => LogFormat::Human,
        None => cfg.log_format,
    };
    init_logging(format);
    install_crypto_provider();
    return_large_buffers_to_the_system();
    raise_open_file_limit();

    let services = Arc::new(Services::start(cfg.clone()).await?);
    tracing::info!(node = %services.node, "sekisho starting");

    let abandoned = services
        .store
        .mark_abandoned_live_sessions(&services.node)
        .await
        .context("marking sessions left live by an earlier crash")?;
    for id in &abandoned {
        tracing::warn!(session = %id, "session left live by an earlier run marked abnormal");
        services
            .audit(
                crate::store::AuditEvent::new(
                    crate::store::AuditKind::SessionAbnormal,
                    format!(
                        "session {id} was still live when sekisho last stopped abnormally; its recording ends at the last flush"
                    ),
                )
                .session(*id),
            )
            .await;
    }

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();

    tasks.spawn(watch_policies(services.clone(), shutdown_rx.clone()));
    tasks.spawn(poll_kill_requests(services.clone(), shutdown_rx.clone()));
    tasks.spawn(crate::session::stop::enforce(
        services.clone(),
        shutdown_rx.clone(),
    ));
    tasks.spawn(give_back_memory_of_ended_sessions(
        services.registry.clone(),
        shutdown_rx.clone(),
    ));
    spawn_listeners(&services, &cfg, &mut tasks, shutdown_rx.clone()).await?;

    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        _ = sigint.recv() => tracing::info!("SIGINT: stopping"),
        _ = sigterm.recv() => tracing::info!("SIGTERM: stopping"),
        Some(res) = tasks.join_next() => {
            // A listener ending on its own is a failure: report it and stop.
            match res {
                Ok(Ok(())) => tracing::error!("a listener stopped unexpectedly"),
                Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "a listener failed"),
                Err(e) => tracing::error!(error = %e, "a listener panicked"),
            }
            let _ = shutdown_tx.send(true);
            services.shutdown().await;
            services.write_pending_ends(Duration::from_secs(10)).await;
            return Ok(ExitCode::FAILURE);
        }
    }
    let _ = shutdown_tx.send(true);
    services.shutdown().await;
    // Give relays a moment to seal their archives.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    services.write_pending_ends(Duration::from_secs(10)).await;
    tracing::info!("sekisho stopped");
    Ok(ExitCode::SUCCESS)
}

async fn spawn_listeners(
    services: &Arc<Services>,
    cfg: &Config,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // One gate for every listener (SSH, RDP, the console): the limits are
    // the process's.
    let admission = admission_gate(services, cfg);
    if cfg.ssh.enabled {
        let host_key = crate::ssh::load_host_key(&cfg.paths.ssh_host_key())?;
        let listener = tokio::net::TcpListener::bind(cfg.ssh.listen)
            .await
            .with_context(|| format!("listening for SSH on {}", cfg.ssh.listen))?;
        tracing::info!(listen = %cfg.ssh.listen, "SSH listener ready");
        let control = Arc::new(crate::ssh::services::SshServices::new(services.clone()));
        let options = crate::ssh::GatewayOptions {
            admission: admission.clone(),
            ..crate::ssh::GatewayOptions::from_config(cfg)
        };
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            crate::ssh::serve(listener, host_key, control, options, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
            .context("the SSH listener")
        });
    }
    if cfg.rdp.enabled {
        let tls = crate::rdp::tls_server_config(&cfg.rdp.cert, &cfg.rdp.key)?;
        let listener = tokio::net::TcpListener::bind(cfg.rdp.listen)
            .await
            .with_context(|| format!("listening for RDP on {}", cfg.rdp.listen))?;
        tracing::info!(listen = %cfg.rdp.listen, "RDP listener ready");
        let control = Arc::new(crate::rdp::services::RdpServices::new(services.clone()));
        let options = crate::rdp::GatewayOptions {
            admission: admission.clone(),
            ..crate::rdp::GatewayOptions::from_config(cfg)
        };
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                r = crate::rdp::serve(listener, tls, control, options) => r.context("the RDP listener"),
                _ = stop.wait_for(|s| *s) => Ok(()),
            }
        });
    }
    if cfg.web.enabled {
        let tls = crate::web::tls_config(&cfg.web.cert, &cfg.web.key)?;
        let listener = tokio::net::TcpListener::bind(cfg.web.listen)
            .await
            .with_context(|| format!("listening for the web console on {}", cfg.web.listen))?;
        tracing::info!(listen = %cfg.web.listen, "web console ready (https)");
        let console = Arc::new(crate::web::Console::new(
            services.clone(),
            admission.clone(),
        ));
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            crate::web::serve(listener, tls, console, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
            .context("the web console")
        });
    }
    Ok(())
}

/// The pre-authentication gate of `[limits]`; its refusals, and handshakes
/// with no algorithm in common, are audited as `connection_refused` (at
/// most once a minute per address and reason).
fn admission_gate(services: &Arc<Services>, cfg: &Config) -> crate::admission::Gate {
    let services = services.clone();
    let limits = cfg.admission.clone();
    tracing::info!(
        max_startups = %limits.max_startups,
        max_startups_per_source = limits.max_startups_per_source,
        signin_attempts_per_minute = limits.signin_attempts_per_minute,
        "pre-authentication limits"
    );
    crate::admission::Gate::new(
        limits,
        Arc::new(move |report, protocol, detail| {
            let more = if report.unreported > 0 {
                format!(
                    " ({} more refused for this reason in the last minute)",
                    report.unreported
                )
            } else {
                String::new()
            };
            let said = if detail.is_empty() {
                String::new()
            } else {
                format!(" ({detail})")
            };
            let mut event = crate::store::AuditEvent::new(
                crate::store::AuditKind::ConnectionRefused,
                format!(
                    "{protocol} connection from {} refused: {}{said}{more}",
                    report.source,
                    report.refusal.describe()
                ),
            )
            .source(report.source)
            .protocol(protocol)
            .with("reason", report.refusal.as_str())
            .with("unreported", report.unreported);
            if !detail.is_empty() {
                event = event.with("detail", detail);
            }
            let services = services.clone();
            tokio::spawn(async move { services.audit(event).await });
        }),
    )
}

/// Descriptors one session holds: the client's socket (and, for SSH, a
/// second handle to cut it), the target's socket, the archive.
const DESCRIPTORS_PER_SESSION: u64 = 5;
/// Descriptors kept for the database, logs, policy watcher and listeners.
const DESCRIPTORS_RESERVED: u64 = 64;

/// Raises the open-file soft limit to the hard limit (often 1024 → 524288
/// under systemd) and says how many sessions that allows. Running out of
/// descriptors is survived (the listeners back off), but should be rare.
#[allow(unsafe_code)] // FFI to libc; see SAFETY below.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, owned struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one valid rlimit; raising the soft limit
        // up to the hard limit needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open-file limit");
        }
    }
    let open_files = limit.rlim_cur;
    let sessions = open_files.saturating_sub(DESCRIPTORS_RESERVED) / DESCRIPTORS_PER_SESSION;
    tracing::info!(
        open_files,
        sessions,
        "open-file limit allows about {sessions} simultaneous sessions"
    );
}

/// glibc raises its mmap threshold after the first large block is freed;
/// argon2's 19 MiB buffers then come from the heap, get fragmented by
/// session allocations and are never returned (measured: 9.6 MiB per idle
/// session instead of 0.2). A fixed threshold keeps large blocks in mmap,
/// which free() gives back at once.
#[allow(unsafe_code)] // FFI to libc; see SAFETY below.
fn return_large_buffers_to_the_system() {
    // SAFETY: mallopt only changes allocator tuning; called before the
    // listeners start, with a valid parameter and value.
    let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
    if ok != 1 {
        tracing::warn!("could not set the allocator's mmap threshold");
    }
    // With a recording writer thread per session glibc spreads the heap
    // over up to 8 arenas per core; `malloc_trim` cannot give back the top
    // of the others' heaps, so what the last sessions left at their tops
    // stays resident after they end. Four arenas keep that within a quarter
    // of the memory before them; two cost bulk transfers ~5 % more CPU in
    // allocator contention (measured, README "Benchmarks").
    // SAFETY: as above.
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
    if ok != 1 {
        tracing::warn!("could not limit the allocator's arenas");
    }
}

/// glibc arenas for the whole process (see above).
const ARENAS: libc::c_int = 4;

/// How often the process looks for ended sessions whose memory to return.
const TRIM_LOOK_EVERY: Duration = Duration::from_millis(500);

/// While sessions keep ending, the memory is returned at least this often.
const TRIM_AT_LEAST_EVERY: Duration = Duration::from_secs(5);

/// Returns the heap memory freed by ended sessions to the system. glibc
/// keeps freed small blocks in its per-thread arenas, where the next
/// sessions would reuse them; but after a busy hour the bastion would stay
/// at its high-water mark (measured: 23 MiB before 200 sessions, 63 MiB
/// after they all closed). `malloc_trim` gives every wholly free page back.
/// It walks the allocator's free lists under their locks, so it runs off
/// the async threads, once a wave of ending sessions has settled (no more
/// ended within one look): trimming in the middle of a wave would leave
/// the memory of the rest until the next wave.
async fn give_back_memory_of_ended_sessions(
    registry: crate::session::Registry,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut trimmed = registry.ended();
    let mut last = trimmed;
    let mut waiting_since = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            () = tokio::time::sleep(TRIM_LOOK_EVERY) => {}
        }
        let ended = registry.ended();
        if ended == trimmed {
            continue;
        }
        let since = *waiting_since.get_or_insert_with(tokio::time::Instant::now);
        let settled = ended == last;
        last = ended;
        if settled || since.elapsed() >= TRIM_AT_LEAST_EVERY {
            trimmed = ended;
            waiting_since = None;
            let _ = tokio::task::spawn_blocking(trim_heap).await;
        }
    }
}

/// Gives the allocator's wholly free pages back to the system.
#[allow(unsafe_code)] // FFI to libc; see SAFETY below.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory inside glibc's own
    // arenas; it takes their locks and touches no memory the program owns.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// rustls with ring is our one crypto provider; install it before any TLS use.
pub fn install_crypto_provider() {
    // Err only means a provider was installed already (tests, a second call).
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SEKISHO_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,russh=warn,sqlx=warn"));
    // Colour only for a person watching a terminal: a log file or journal
    // would keep the escape codes as noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// Reloads policies on SIGHUP and when a file under the policy directory
/// changes. A broken new set is refused and the old one stays in force.
async fn watch_policies(
    services: Arc<Services>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use notify::Watcher as _;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let dir = services.config.paths.policies.clone();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            let relevant = ev
                .paths
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "toml"));
            if relevant && !ev.kind.is_access() {
                let _ = tx.try_send(());
            }
        }
    })
    .context("starting the policy file watcher")?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))?;

    loop {
        let why = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            Some(()) = rx.recv() => {
                // Editors write in several steps; let them finish.
                tokio::time::sleep(Duration::from_millis(300)).await;
                while rx.try_recv().is_ok() {}
                "file change"
            }
            _ = shutdown.changed() => return Ok(()),
        };
        services.reload_policies(why).await;
    }
}

/// Other processes (`sekisho sessions kill`) ask for a session to stop
/// through the store; this relays their requests to the live sessions here.
async fn poll_kill_requests(
    services: Arc<Services>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut housekeeping = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = housekeeping.tick() => {
                // Spent and expired tickets are of no use; keep the table small.
                if let Err(e) = services.store.purge_tickets(chrono::Utc::now()).await {
                    tracing::warn!(error = %e, "purging expired tickets failed");
                }
                // So are spent and expired RDP auto-reconnect cookies.
                if let Err(e) = services.store.purge_reconnect_cookies(chrono::Utc::now()).await {
                    tracing::warn!(error = %e, "purging auto-reconnect cookies failed");
                }
                // Work requests whose window ended move to `expired`.
                if let Err(e) = crate::procedure::expire_due(&services.store, chrono::Utc::now()).await {
                    tracing::warn!(error = %e, "expiring work requests failed");
                }
                continue;
            }
            _ = shutdown.changed() => return Ok(()),
        }
        match services.store.pending_kills(&services.node).await {
            Ok(kills) => {
                for k in kills {
                    services.registry.stop(
                        k.id,
                        crate::session::StopCause::Killed {
                            by: k.by,
                            reason: k.reason,
                        },
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading kill requests failed"),
        }
    }
}
