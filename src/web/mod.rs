//! The web console: what auditors and administrators do in a browser —
//! find a session, read what happened in it, check its recording, stop a
//! live one, read the audit log — served by `sekisho serve` over HTTPS.
//!
//! Server-rendered HTML (no JavaScript), one module per page group, and a
//! JSON API under `/api/v1` for scripts with the same authorization.
//!
//! Threat model, briefly:
//! - Sign-in goes through the gateways' [`Authenticator`](crate::auth) (ID +
//!   password + 6-digit code, the same lockout and failure delay, audited as
//!   protocol `web`).
//! - The session cookie `__Host-sekisho` is Secure, HttpOnly, SameSite=Strict
//!   and carries a random token whose hash is kept server-side
//!   (`web_sessions`), so a sign-in survives a restart, can be revoked, and
//!   ends after `[web] idle_timeout` without requests.
//! - Every state-changing request carries the sign-in's CSRF token (form
//!   field `csrf` or header `X-CSRF-Token`); [`guard::csrf`] refuses the rest
//!   with 403 before any handler runs.
//! - Roles are checked on the server for every route ([`signin::Viewer`]).
//! - Strict headers on every answer: CSP without inline script or style,
//!   no framing, no sniffing, no referrer ([`guard::headers`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use tokio::net::TcpListener;

use crate::admission::{Acceptor, Gate};
use crate::session::Services;

pub mod api;
mod assets;
mod audit;
pub mod desktop;
mod diff;
mod guard;
pub mod i18n;
mod live;
mod page;
mod people;
mod policy;
mod policy_edit;
mod replay;
mod requests;
mod sessions;
pub mod signin;
mod stop;
mod verdicts;
mod wording;

/// Errors starting the console.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("the console's TLS certificate or key: {0}")]
    Tls(String),
}

/// What every handler shares: the bastion's services (store, sign-in, policies) and
/// the console's own settings.
pub struct Console {
    pub services: Arc<Services>,
    pub idle_timeout: Duration,
    /// The process's one admission gate: the console's connections and its
    /// sign-in attempts count against the same `[limits]` as the gateways'.
    admission: Gate,
    /// Archive verify verdicts, kept while the files stay the same.
    verdicts: verdicts::Verdicts,
}

pub(crate) type Shared = Arc<Console>;

impl Console {
    pub fn new(services: Arc<Services>, admission: Gate) -> Console {
        let idle_timeout = services.config.web.idle_timeout;
        Console {
            services,
            idle_timeout,
            admission,
            verdicts: verdicts::Verdicts::default(),
        }
    }
}

/// Reads the certificate chain and key (PEM) into a TLS configuration that
/// offers HTTP/2 and HTTP/1.1 (ALPN), with ring as the crypto provider.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, WebError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| WebError::Tls(format!("{}: {e}", cert.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| WebError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(WebError::Tls(format!(
            "{}: no certificate in the file",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| WebError::Tls(format!("{}: {e}", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| WebError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| WebError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Every route of the console and the API, behind the CSRF check and the
/// security headers.
pub fn router(console: Arc<Console>) -> Router {
    let pages = Router::new()
        .route("/", get(sessions::home))
        .route("/signin", get(signin::form).post(signin::submit))
        .route("/signout", post(signin::sign_out))
        .route("/lang", post(signin::choose_language))
        .route("/sessions", get(sessions::list))
        .route("/sessions/{id}", get(sessions::show))
        .route("/sessions/{id}/archive", post(sessions::archive))
        .route("/sessions/{id}/asciicast", get(sessions::asciicast))
        .route("/sessions/{id}/keystrokes", get(sessions::keystrokes))
        .route("/sessions/{id}/replay", get(replay::page))
        .route("/sessions/{id}/live", get(live::page))
        .route("/sessions/{id}/live.sse", get(live::stream))
        .route("/sessions/{id}/kill", post(sessions::kill))
        // desktop: RDP replay, live watch and MP4 download (web::desktop)
        .route("/sessions/{id}/desktop", get(desktop::replay_page))
        .route("/sessions/{id}/desktop/frames", get(desktop::frames))
        .route("/sessions/{id}/desktop/live", get(desktop::live_page))
        .route("/sessions/{id}/desktop/live.bin", get(desktop::live_stream))
        .route("/sessions/{id}/mp4", post(desktop::mp4))
        .route("/audit", get(audit::page))
        .route("/audit.csv", get(audit::csv))
        .route("/assets/{name}", get(assets::serve))
        // policyweb: policy pages, explain and editing (admins only).
        .route("/policy", get(policy::index))
        .route("/policy/explain", get(policy::explain))
        .route("/policy/systems/{system}", get(policy::system))
        .route(
            "/policy/systems/{system}/edit",
            get(policy_edit::form).post(policy_edit::submit),
        )
        .route("/policy/systems/{system}/change", post(policy_edit::change))
        // --- people: people, vendors, secrets, tickets; emergency stop (admins) ---
        .route("/people", get(people::page).post(people::add))
        .route("/people/{name}", get(people::person))
        .route("/people/{name}/disable", post(people::disable))
        .route("/people/{name}/enable", post(people::enable))
        .route("/people/{name}/totp", post(people::reset_totp))
        .route("/people/{name}/keys", post(people::add_key))
        .route("/people/{name}/keys/remove", post(people::remove_key))
        .route("/vendors", post(people::add_vendor))
        .route("/secrets", post(people::set_secret))
        .route("/tickets", post(people::issue_ticket))
        .route("/stops", get(stop::page).post(stop::put))
        .route("/stops/{id}/lift", post(stop::lift))
        // procedure: engineers' approved requests and tickets, approvers' queue
        .route("/requests", get(requests::page))
        .route("/requests/new", post(requests::file))
        .route("/requests/{number}/ticket", post(requests::ticket))
        .route("/requests/{number}/rdp", get(requests::rdp_file))
        .route("/requests/{number}/approve", post(requests::approve))
        .route("/requests/{number}/report", post(requests::write_report))
        .route("/requests/{number}/sign-off", post(requests::sign_off))
        .route("/requests/{number}/{file}", get(requests::report_file));
    pages
        .nest("/api/v1", api::routes())
        .fallback(page::not_found)
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            guard::csrf,
        ))
        .layer(axum::middleware::from_fn(guard::headers))
        .with_state(console)
}

/// How long a new console connection may take for its TLS handshake and
/// its first request together; until that request it counts as an
/// unauthenticated connection in the admission gate.
pub const FIRST_REQUEST_WITHIN: Duration = Duration::from_secs(10);

/// Serves the console on `listener` until `shutdown` resolves. Each
/// connection gets a TLS handshake, then HTTP/2 or HTTP/1.1 as the client
/// chose by ALPN.
///
/// The console's listener is a front door before sign-in like the
/// gateways': a new connection asks the console's admission gate (the
/// process's one gate, protocol `web`) and is closed at once over
/// `[limits]`; it holds its unauthenticated slot until its first request
/// arrives, which must be within [`FIRST_REQUEST_WITHIN`] of the accept.
/// After that, a connection with no request being worked on and no bytes
/// either way for `[web] connection_idle` is closed. Accept failures (out
/// of descriptors) are waited out ([`Acceptor`]).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    console: Arc<Console>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), WebError> {
    use tower::ServiceExt as _;
    let admission = console.admission.clone();
    let connection_idle = console.services.config.web.connection_idle;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut listener = Acceptor::new(listener, "web");
    let app = router(console);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => return Ok(()),
        };
        let Ok(pending) = admission.connect(crate::config::canonical_ip(peer.ip()), "web") else {
            // Refused (the gate logs and reports it): closed unanswered.
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + FIRST_REQUEST_WITHIN;
            let stream = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "console: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "console: TLS handshake timed out");
                    return;
                }
            };
            // The first request gives the slot back and says so.
            let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
            let first = Arc::new(std::sync::Mutex::new(Some((pending, first_tx))));
            let (stream, activity) = Watched::new(stream);
            let (started, answered) = (activity.clone(), activity.clone());
            let svc = app.map_request(move |mut req: axum::extract::Request<_>| {
                started.request_started();
                let taken = first
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                if let Some((pending, first_tx)) = taken {
                    drop(pending);
                    let _ = first_tx.send(());
                }
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
            let svc = svc.map_response(move |response| {
                answered.request_answered();
                response
            });
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = &mut connection => Some(ended),
                first = tokio::time::timeout_at(deadline, first_rx) => match first {
                    Ok(Ok(())) => None,
                    _ => {
                        tracing::debug!(%peer, "console: no request in time");
                        return;
                    }
                },
            };
            let ended = match ended {
                Some(ended) => ended,
                None => tokio::select! {
                    ended = &mut connection => ended,
                    () = activity.idle_for(connection_idle) => {
                        tracing::debug!(%peer, "console: idle connection closed");
                        return;
                    }
                },
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "console: connection ended with an error");
            }
        });
    }
}

/// A console connection's stream that notes when bytes last moved either
/// way, so that [`serve`] can close a connection idle for
/// `[web] connection_idle` (hyper has no idle limit for HTTP/2, and none
/// for a kept-alive HTTP/1.1 connection without a timer).
struct Watched<S> {
    inner: S,
    activity: Activity,
}

/// When a [`Watched`] stream last moved bytes, in milliseconds since it
/// was opened, and how many requests on it are being worked on (an export
/// may compute for minutes before its first byte: not idle).
#[derive(Clone)]
struct Activity {
    opened: tokio::time::Instant,
    last_ms: Arc<std::sync::atomic::AtomicU64>,
    working: Arc<std::sync::atomic::AtomicUsize>,
}

impl Activity {
    fn request_started(&self) {
        self.working
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.touch();
    }

    fn request_answered(&self) {
        // Never below zero, whatever order hyper polls in.
        let _ = self.working.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |n| n.checked_sub(1),
        );
        self.touch();
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            if self.working.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                self.touch();
            }
            let last =
                Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
            let due = self.opened + last + limit;
            if tokio::time::Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

impl<S> Watched<S> {
    fn new(inner: S) -> (Watched<S>, Activity) {
        let activity = Activity {
            opened: tokio::time::Instant::now(),
            last_ms: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            working: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        };
        (
            Watched {
                inner,
                activity: activity.clone(),
            },
            activity,
        )
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The client's address, as the connection loop recorded it.
pub(crate) fn client_addr(parts: &axum::http::request::Parts) -> std::net::IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| crate::config::canonical_ip(c.0.ip()))
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}
