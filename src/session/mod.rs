//! The protocol-independent services of a sekisho process: configuration,
//! store, sign-in, the policy set in force, the registry of live sessions and
//! the archive-signing key, held by [`Services`], and the session's life
//! (`lifecycle.rs`: decide, open the recording, register, seal). The SSH and
//! RDP gateways each adapt this to their protocol (`ssh::services::SshServices`
//! and `rdp::services::RdpServices`, implementing each gateway's control trait);
//! neither knows of the other.
//!
//! Named `Services` rather than "bastion" (the product) or "core" (the
//! standard library's crate): it is what every gateway is served by.

mod ends;
mod lifecycle;
mod registry;
pub mod stop;

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;

pub use ends::{MAX_UNWRITTEN, SessionEnds};
pub use lifecycle::{Authorized, Pending, PendingSessions, Refusal, SessionTag, TargetFailure};
pub use registry::{LiveEntry, LiveGuard, Registry, StopCause};

use crate::config::Config;
use crate::policy::PolicySet;
use crate::store::{AuditEvent, AuditKind, Store};

/// How long whoever asked for sessions to end (`sessions kill`, `stop`,
/// `request revoke`, the console's kill and stop) waits for the serving
/// processes to end them before answering that they have not ended (is
/// their `serve` running?). The processes act within a second (kills are
/// polled four times a second, stops swept each second), but ending a
/// session also seals its archive and writes its row: on a loaded machine
/// that can take longer than the two to five seconds waited before, and a
/// stop that happened was reported as failed.
pub const CONFIRM_END_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);

/// The one way to wait for sessions asked to end: look, then
/// `while wait.next_look().await { look again }` — a look every 100 ms
/// until [`CONFIRM_END_WITHIN`] has passed.
pub struct ConfirmEnd {
    deadline: tokio::time::Instant,
}

impl ConfirmEnd {
    pub fn start() -> ConfirmEnd {
        ConfirmEnd {
            deadline: tokio::time::Instant::now() + CONFIRM_END_WITHIN,
        }
    }

    /// Waits until the next look is due; `false` (at once) once the time
    /// to confirm is over.
    pub async fn next_look(&mut self) -> bool {
        if tokio::time::Instant::now() >= self.deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        true
    }
}

/// Everything a gateway needs from the rest of sekisho, shared by all sessions.
pub struct Services {
    pub config: Config,
    pub store: Store,
    pub auth: crate::auth::Authenticator,
    pub secrets: crate::auth::secrets::SecretStore,
    pub registry: Registry,
    /// Distinguishes this process's sessions in a shared database.
    pub node: String,
    pub signing_key: Arc<crate::recording::ArchiveKey>,
    /// Session ends on their way to the database (retried while it refuses).
    pub ends: SessionEnds,
    policies: RwLock<Arc<PolicySet>>,
}

impl Services {
    /// Opens the store, loads keys and the policy set. A broken policy set at
    /// start-up is an error: the bastion does not start without rules.
    pub async fn start(config: Config) -> anyhow::Result<Services> {
        let password = config.database_password()?;
        let password = password.as_deref().map(String::as_str);
        let store = Store::open(&config.database_url, password)
            .await
            .with_context(|| {
                format!(
                    "opening the database {}",
                    crate::store::redact_url(&config.database_url)
                )
            })?;
        let signing_key = crate::recording::load_signing_key(&config.paths.archive_signing_key())
            .with_context(|| {
            format!(
                "loading the archive signing key {}",
                config.paths.archive_signing_key().display()
            )
        })?;
        let credentials = credential_names(&store)
            .await
            .context("listing credential names")?;
        let policies = load_policies(&config, &credentials).map_err(|e| {
            anyhow::anyhow!(
                "policies in {} are invalid:\n{e}{}",
                config.paths.policies.display(),
                store_these(&config, &credentials)
            )
        })?;
        let master = crate::auth::secrets::load_master_key(&config.paths.master_key())
            .with_context(|| {
                format!(
                    "loading the secret-store master key {}",
                    config.paths.master_key().display()
                )
            })?;
        let auth =
            crate::auth::Authenticator::new(store.clone(), config.auth.clone(), master.clone());
        let secrets = crate::auth::secrets::SecretStore::new(store.clone(), master);
        // Deployments from before TOTP secrets were sealed: seal them now.
        let sealed = auth
            .seal_plain_totp_secrets()
            .await
            .context("sealing one-time-code secrets stored in plain text")?;
        if sealed > 0 {
            tracing::info!(count = sealed, "sealed plain-text one-time-code secrets");
        }
        let node = node_name(&config);
        let ends = SessionEnds::start(store.clone());
        Ok(Services {
            config,
            ends,
            store,
            auth,
            secrets,
            registry: Registry::default(),
            node,
            signing_key: Arc::new(signing_key),
            policies: RwLock::new(Arc::new(policies)),
        })
    }

    /// The policy set in force now. Sessions keep the grant they were given.
    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads the policy directory again; on error keeps the old set, logs and
    /// audits why.
    pub async fn reload_policies(&self, why: &str) {
        let credentials = match credential_names(&self.store).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "policy reload: cannot list credentials; old policies stay");
                return;
            }
        };
        // Reading and checking thousands of targets is CPU work: on the
        // blocking pool it never stalls the relays sharing the runtime's
        // threads. The new set is swapped in only once it is complete.
        let dir = self.config.paths.policies.clone();
        let networks = self.config.networks.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            PolicySet::load_dir(&dir, &networks, Some(&credentials))
        })
        .await;
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(error = %e, "policy reload: the loading task failed; old policies stay");
                return;
            }
        };
        let (event, log_ok) = match loaded {
            Ok(set) => {
                let summary = format!(
                    "policies reloaded ({why}): {} targets",
                    set.targets().count()
                );
                *self.policies.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
                (AuditEvent::new(AuditKind::PolicyReload, summary), true)
            }
            Err(errors) => {
                let detail = format!(
                    "policy reload ({why}) refused; the previous policies stay in force:\n{errors}"
                );
                (
                    AuditEvent::new(AuditKind::PolicyReloadRefused, detail),
                    false,
                )
            }
        };
        if log_ok {
            tracing::info!(detail = %event.detail, "policy reload");
        } else {
            tracing::error!(detail = %event.detail, "policy reload refused");
        }
        if let Err(e) = self.store.audit(&event).await {
            tracing::error!(error = %e, "writing the policy reload audit event failed");
        }
    }

    /// Ends every live session (their relays seal the archives).
    pub async fn shutdown(&self) {
        self.registry.stop_all(StopCause::Shutdown);
        for _ in 0..50 {
            if self.registry.is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tracing::warn!(
            left = self.registry.list().len(),
            "sessions still open at shutdown"
        );
    }

    /// Gives session ends the database refused a last chance to be written
    /// before the process stops.
    pub async fn write_pending_ends(&self, limit: std::time::Duration) {
        let left = self.ends.drain(limit).await;
        if left > 0 {
            tracing::error!(
                left,
                "session ends not written to the database (each is in the log above); their rows stay live until the next start marks them abnormal"
            );
        }
    }
}

/// The names of the credentials in the secret store (never their values).
pub async fn credential_names(store: &Store) -> Result<BTreeSet<String>, crate::store::StoreError> {
    Ok(store
        .secret_names()
        .await?
        .into_iter()
        .map(|n| n.name)
        .collect())
}

/// The person as `policy::decide` sees them.
pub fn person_of(
    user: &crate::store::UserRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::policy::Person {
    crate::policy::Person {
        name: user.name.clone(),
        vendor_chain: user.vendor_chain.clone(),
        enabled: user.enabled,
        locked: user.locked_at(now),
    }
}

/// A person's live sessions on every node sharing the store, for the hop rule.
pub async fn live_sessions_of(
    store: &Store,
    user: &str,
) -> Result<Vec<crate::policy::LiveSession>, crate::store::StoreError> {
    Ok(store
        .live_sessions()
        .await?
        .into_iter()
        .filter(|s| s.user == user)
        .filter_map(|s| {
            Some(crate::policy::LiveSession {
                id: s.id,
                target: s.target,
                protocol: s.protocol.parse().ok()?,
            })
        })
        .collect())
}

/// When the only thing wrong with the policy set is credentials missing
/// from the secret store, the exact commands that store them.
fn store_these(config: &Config, credentials: &BTreeSet<String>) -> String {
    let Ok(set) = PolicySet::load_dir(&config.paths.policies, &config.networks, None) else {
        return String::new();
    };
    let missing: BTreeSet<&str> = set
        .targets()
        .flat_map(|t| [t.ssh.as_ref(), t.rdp.as_ref()])
        .flatten()
        .map(|e| e.credential.as_str())
        .filter(|name| !credentials.contains(*name))
        .collect();
    if missing.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\n\nStore the {} credential{} the policies name (each command reads the password or \
         private key from standard input), then start `sekisho serve` again:",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" }
    );
    for name in missing {
        out.push_str(&format!(
            "\n  sekisho -c {} secret set {name}",
            config.file.display()
        ));
    }
    out
}

/// The approved work requests naming a person whose window has not ended,
/// as `policy::decide` takes them.
pub async fn approved_windows_of(
    store: &Store,
    user: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<crate::policy::ApprovedWindow>, crate::store::StoreError> {
    let open = store.open_work_requests_for(user, now).await?;
    Ok(crate::procedure::approved_windows(&open))
}

/// A person as `policy explain` (CLI and console) asks about them.
#[derive(Debug, Clone)]
pub struct Requester {
    pub person: crate::policy::Person,
    /// Their live sessions on every node (for the hop rule).
    pub live: Vec<crate::policy::LiveSession>,
    /// Their approved work requests whose window has not ended.
    pub approved: Vec<crate::policy::ApprovedWindow>,
}

/// The person `name` as the user store knows them at `now`; `None` when
/// there is no such user.
pub async fn requester(
    store: &Store,
    name: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Requester>, crate::store::StoreError> {
    let Some(record) = store.user(name).await? else {
        return Ok(None);
    };
    Ok(Some(Requester {
        person: person_of(&record, now),
        live: live_sessions_of(store, name).await?,
        approved: approved_windows_of(store, name, now).await?,
    }))
}

fn load_policies(
    config: &Config,
    credentials: &BTreeSet<String>,
) -> Result<PolicySet, crate::policy::PolicyErrors> {
    PolicySet::load_dir(&config.paths.policies, &config.networks, Some(credentials))
}

/// Host name plus the listening SSH port: stable across restarts of the same
/// node (so a restarted node finds its own abandoned sessions), distinct
/// between nodes.
fn node_name(config: &Config) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", config.ssh.listen.port())
}
