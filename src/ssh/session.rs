//! One SSH session, from decision to close: [`open`] runs the steps
//! (authorize → open the recording → register → connect the target), then
//! a [`Live`] session is shared by the connection handler, the relay pumps
//! and the [`supervise`]r, which enforces its limits (end of grant, idle,
//! kill) and closes it. `rdp::session` is the RDP twin.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use russh::ChannelId;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::back::{self, BackHandle};
use super::control::{
    AccessRequest, Decision, EndStatus, ExitStatus, KillSignal, LiveSession, SessionEnd,
    SessionEvent, SessionRecorder, SshControl,
};
use super::{GatewayOptions, Shared};

/// The session's steps from decision to relay, in order: authorize →
/// open the recording → register the live session → connect the target.
/// The relay then runs (`relay.rs`) under [`supervise`], which closes the
/// session. The RDP gateway's twin is `rdp::session`. An error is the
/// reason shown to the person.
pub(crate) async fn open<C: SshControl>(
    shared: &Shared<C>,
    request: AccessRequest,
    front: russh::server::Handle,
) -> Result<Arc<Live<C::Recorder>>, String> {
    let control = shared.control.clone();
    let (person, target, source) = (&request.person, &request.target, request.source);
    let grant = match control.authorize(&request).await {
        Decision::Denied { reason } => {
            tracing::info!(user = %person, %target, source = %source, %reason, "ssh access denied");
            return Err(format!("access denied: {reason}"));
        }
        Decision::Allowed(grant) => grant,
    };
    let recorder = match control.open_recording(&grant, &request).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(user = %person, %target, error = %e, "cannot open recording");
            return Err(format!(
                "the session cannot be recorded, so it is not opened ({e})"
            ));
        }
    };
    let live_info = LiveSession {
        session_id: grant.session_id,
        person: person.clone(),
        target: grant.target.clone(),
        source,
        started_at: Utc::now(),
        ends_at: grant.ends_at,
    };
    let mut kill = control.session_started(&live_info).await;
    if let Ok(reason) = kill.try_recv() {
        // Refused while being registered (its row could not be written):
        // the target is not reached; the archive and the end say why.
        tracing::warn!(session = %grant.session_id, user = %person, %target, %reason, "ssh session refused at registration");
        let _ = recorder.finish().await;
        control
            .session_ended(
                grant.session_id,
                &SessionEnd {
                    status: EndStatus::RecordingFailed,
                    reason: reason.clone(),
                    exit: None,
                    failure: None,
                },
            )
            .await;
        return Err(format!("cannot open the session: {reason}"));
    }
    let (back, target_lost) = match back::connect(&grant, shared.back_config.clone()).await {
        Ok(b) => b,
        Err(e) => {
            let reason = e.to_string();
            tracing::warn!(session = %grant.session_id, user = %person, %target, phase = e.phase().as_str(), kind = e.kind().as_str(), %reason, "target connection failed");
            let _ = recorder
                .record(SessionEvent::Mark {
                    text: reason.clone(),
                })
                .await;
            let _ = recorder.finish().await;
            control
                .session_ended(
                    grant.session_id,
                    &SessionEnd {
                        status: EndStatus::TargetFailed,
                        reason: reason.clone(),
                        exit: None,
                        failure: Some(e.failure()),
                    },
                )
                .await;
            return Err(format!("cannot open the session: {reason}"));
        }
    };
    tracing::info!(session = %grant.session_id, user = %person, target = %grant.target, source = %source, "SSH session started");
    let live = Live::new(
        grant.session_id,
        person.clone(),
        grant.target.clone(),
        grant.ends_at,
        recorder,
        back,
        front,
    );
    tokio::spawn(supervise(
        control,
        live.clone(),
        kill,
        target_lost,
        shared.options.clone(),
        shared.shutdown.clone(),
    ));
    Ok(live)
}

/// Shared by the connection handler, the pumps and the supervisor.
pub(crate) struct Live<R> {
    pub session_id: Uuid,
    pub person: String,
    pub target: String,
    pub ends_at: DateTime<Utc>,
    pub recorder: R,
    pub back: BackHandle,
    pub front: russh::server::Handle,
    started: Instant,
    /// Milliseconds since `started` at the last input from the person.
    last_input_ms: AtomicU64,
    end: watch::Sender<Option<(EndStatus, String)>>,
    exit: Mutex<Option<ExitStatus>>,
    /// Front channels open on this session, to tell the person things.
    channels: Mutex<Vec<ChannelId>>,
}

impl<R: SessionRecorder> Live<R> {
    pub(crate) fn new(
        session_id: Uuid,
        person: String,
        target: String,
        ends_at: DateTime<Utc>,
        recorder: R,
        back: BackHandle,
        front: russh::server::Handle,
    ) -> Arc<Self> {
        let (end, _) = watch::channel(None);
        Arc::new(Live {
            session_id,
            person,
            target,
            ends_at,
            recorder,
            back,
            front,
            started: Instant::now(),
            last_input_ms: AtomicU64::new(0),
            end,
            exit: Mutex::new(None),
            channels: Mutex::new(Vec::new()),
        })
    }

    /// Records an event (waiting for room in the writer's queue without
    /// holding the thread); on failure asks for the session to end and
    /// returns false so the caller stops relaying (fail closed).
    pub(crate) async fn record(&self, event: SessionEvent) -> bool {
        match self.recorder.record(event).await {
            Ok(()) => true,
            Err(e) => {
                self.end(EndStatus::RecordingFailed, e.to_string());
                false
            }
        }
    }

    /// Asks the supervisor to end the session; the first reason wins.
    pub(crate) fn end(&self, status: EndStatus, reason: String) {
        self.end.send_if_modified(|v| {
            if v.is_none() {
                *v = Some((status, reason));
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn touch_input(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_input_ms.store(ms, Ordering::Relaxed);
    }

    fn last_input(&self) -> Instant {
        self.started + Duration::from_millis(self.last_input_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn set_exit(&self, status: ExitStatus) {
        if let Ok(mut e) = self.exit.lock() {
            *e = Some(status);
        }
    }

    pub(crate) fn add_channel(&self, id: ChannelId) {
        if let Ok(mut c) = self.channels.lock() {
            c.push(id);
        }
    }

    pub(crate) fn remove_channel(&self, id: ChannelId) {
        if let Ok(mut c) = self.channels.lock() {
            c.retain(|x| *x != id);
        }
    }

    fn channel_ids(&self) -> Vec<ChannelId> {
        self.channels.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Writes a line to the person's terminal (stderr of every channel) and
    /// into the recording.
    pub(crate) async fn tell(&self, text: &str) {
        let _ = self
            .recorder
            .record(SessionEvent::Mark {
                text: text.to_string(),
            })
            .await;
        let line = format!("\r\nsekisho: {text}\r\n");
        for id in self.channel_ids() {
            let _ = self
                .front
                .extended_data(id, 1, line.clone().into_bytes())
                .await;
        }
    }
}

/// The exit status a client gets when the target's connection is lost: the
/// one OpenSSH's client uses for its own connection errors.
const TARGET_LOST_EXIT: u32 = 255;

/// Far enough to mean "never" without overflowing `Instant` arithmetic.
const FAR: Duration = Duration::from_secs(100 * 365 * 86400);

fn instant_of(at: DateTime<Utc>) -> Instant {
    let left = (at - Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO)
        .min(FAR);
    Instant::now() + left
}

/// Watches one session until it ends, then tells the person why, closes
/// both sides, seals the recording and reports the end to the core.
pub(crate) async fn supervise<C: SshControl>(
    control: Arc<C>,
    live: Arc<Live<C::Recorder>>,
    mut kill: KillSignal,
    mut target_lost: back::TargetLost,
    limits: Arc<GatewayOptions>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut end_rx = live.end.subscribe();
    let ends_at = instant_of(live.ends_at);
    let warn_at = ends_at.checked_sub(limits.warn_before_end);
    let mut warned = warn_at.is_none() || limits.warn_before_end.is_zero();
    let mut kill_live = true;
    let lost = |why: &str| {
        (
            EndStatus::TargetLost,
            format!("the connection to {} was lost ({why})", live.target),
        )
    };
    let local_end = live
        .ends_at
        .with_timezone(&limits.time_zone)
        .format("%H:%M");

    let (status, reason) = loop {
        let idle_deadline = if limits.idle_timeout.is_zero() {
            None
        } else {
            live.last_input().checked_add(limits.idle_timeout.min(FAR))
        };
        tokio::select! {
            changed = end_rx.changed() => {
                let value = end_rx.borrow().clone();
                match (changed, value) {
                    (_, Some(v)) => break v,
                    (Err(_), None) => break (EndStatus::Completed, "connection closed".into()),
                    (Ok(()), None) => {}
                }
            }
            r = &mut kill, if kill_live => match r {
                Ok(reason) => break (EndStatus::Killed, format!("stopped by an administrator: {reason}")),
                Err(_) => kill_live = false,
            },
            _ = tokio::time::sleep_until(warn_at.unwrap_or(ends_at)), if !warned => {
                warned = true;
                let left = ends_at.saturating_duration_since(Instant::now());
                live.tell(&format!(
                    "this session ends at {local_end} (in {} min); save your work",
                    left.as_secs().div_ceil(60)
                )).await;
            }
            _ = tokio::time::sleep_until(ends_at) => {
                break (EndStatus::TimeLimit, format!("the granted time ended at {local_end}"));
            }
            _ = async {
                match idle_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                if idle_deadline.is_some_and(|d| d <= Instant::now())
                    && live.last_input().checked_add(limits.idle_timeout.min(FAR)).is_some_and(|d| d <= Instant::now())
                {
                    break (EndStatus::IdleTimeout, format!(
                        "no input for {}", crate::config::format_duration(limits.idle_timeout)));
                }
            }
            // sekisho closes the target connection only after this loop:
            // one that ends before is lost. A person who stays connected is
            // not left in a session without its target.
            changed = target_lost.changed() => {
                let why = target_lost.borrow().clone();
                match (changed, why) {
                    (_, Some(why)) => break lost(&why),
                    (Err(_), None) => break lost("the connection ended"),
                    (Ok(()), None) => {}
                }
            }
            failed = live.recorder.failed() => {
                break (EndStatus::RecordingFailed, failed.to_string());
            }
            _ = shutdown.changed() => {
                break (EndStatus::Shutdown, "sekisho is shutting down".into());
            }
        }
    };

    tracing::info!(
        session = %live.session_id, user = %live.person, target = %live.target,
        status = status.as_str(), %reason, "SSH session ending"
    );
    if status != EndStatus::Completed {
        live.tell(&format!("session ended: {reason}")).await;
        for id in live.channel_ids() {
            if status == EndStatus::TargetLost {
                // No exit status will come from the target: the client's
                // command fails rather than looking like it succeeded.
                let _ = live.front.exit_status_request(id, TARGET_LOST_EXIT).await;
            }
            let _ = live.front.eof(id).await;
            let _ = live.front.close(id).await;
        }
        // Give the client a moment to print the reason before the cut.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = live
            .front
            .disconnect(
                russh::Disconnect::ByApplication,
                reason.clone(),
                "en".into(),
            )
            .await;
    }
    let _ = live
        .back
        .disconnect(russh::Disconnect::ByApplication, "session ended", "en")
        .await;
    if let Err(e) = live.recorder.finish().await {
        tracing::error!(session = %live.session_id, error = %e, "sealing the recording failed");
    }
    let exit = live.exit.lock().ok().and_then(|e| e.clone());
    control
        .session_ended(
            live.session_id,
            &SessionEnd {
                status,
                reason,
                exit,
                failure: None,
            },
        )
        .await;
}
