//! The administrator's changes to people, keys, vendors, target secrets and
//! tickets that the CLI (`sekisho user|vendor|secret|ticket …`) and the web
//! console's people pages both make: one function each, with its checks and
//! its `admin_change` audit event naming who did it (`by`). Creating a
//! person, a new password and a new code are in `admin.rs`.

use crate::auth::secrets::{SecretStore, check_secret_name};
use crate::auth::{AuthError, admin_event, keys, tickets};
use crate::policy::{PolicySet, Protocol};
use crate::store::{KeyRecord, Store};

/// Refuses every sign-in of `name` and closes their sign-in windows.
pub async fn disable_user(store: &Store, name: &str, by: &str) -> Result<(), AuthError> {
    store.set_user_enabled(name, false).await?;
    store
        .audit(&admin_event(by, "user_disable", format!("{by} disabled user {name}")).user(name))
        .await?;
    Ok(())
}

/// Allows `name` to sign in again; clears a lockout too.
pub async fn enable_user(store: &Store, name: &str, by: &str) -> Result<(), AuthError> {
    store.set_user_enabled(name, true).await?;
    store
        .audit(
            &admin_event(
                by,
                "user_enable",
                format!("{by} enabled user {name} (lockout cleared)"),
            )
            .user(name),
        )
        .await?;
    Ok(())
}

/// Registers an OpenSSH public key (`text`, one line) for `name`.
pub async fn register_key(
    store: &Store,
    name: &str,
    text: &str,
    by: &str,
) -> Result<KeyRecord, AuthError> {
    if store.user(name).await?.is_none() {
        return Err(crate::store::StoreError::NoUser(name.into()).into());
    }
    let k = keys::add_key(store, name, text).await?;
    store
        .audit(
            &admin_event(
                by,
                "key_add",
                format!(
                    "{by} registered key {} ({}) for {name}",
                    k.fingerprint, k.comment
                ),
            )
            .user(name)
            .with("fingerprint", k.fingerprint.as_str()),
        )
        .await?;
    Ok(k)
}

/// Removes the key with `fingerprint` (`SHA256:…`) of `name`.
pub async fn remove_key(
    store: &Store,
    name: &str,
    fingerprint: &str,
    by: &str,
) -> Result<(), AuthError> {
    store.remove_key(name, fingerprint).await?;
    store
        .audit(
            &admin_event(
                by,
                "key_rm",
                format!("{by} removed key {fingerprint} of {name}"),
            )
            .user(name)
            .with("fingerprint", fingerprint),
        )
        .await?;
    Ok(())
}

/// Adds a vendor, as a subcontractor of `parent` when given.
pub async fn add_vendor(
    store: &Store,
    org: &str,
    parent: Option<&str>,
    by: &str,
) -> Result<(), AuthError> {
    crate::auth::check_name("vendor", org)?;
    store.add_vendor(org, parent).await?;
    let under = parent
        .map(|p| format!(" as a subcontractor of {p}"))
        .unwrap_or_default();
    store
        .audit(
            &admin_event(by, "vendor_add", format!("{by} added vendor {org}{under}"))
                .with("vendor", org)
                .with("subcontractor_of", parent),
        )
        .await?;
    Ok(())
}

/// Sets or replaces the target secret `name`. Returns whether one was
/// replaced. The value is never logged, audited or shown.
pub async fn set_secret(
    store: &Store,
    secrets: &SecretStore,
    name: &str,
    value: &[u8],
    by: &str,
) -> Result<bool, AuthError> {
    check_secret_name(name)?;
    let existed = store.secret_row(name).await?.is_some();
    secrets.set(name, value).await?;
    let verb = if existed { "replaced" } else { "set" };
    store
        .audit(
            &admin_event(by, "secret_set", format!("{by} {verb} secret {name}"))
                .with("secret", name),
        )
        .await?;
    Ok(existed)
}

/// Issues a one-time ticket after checking that the policies offer
/// `target` over `protocol` (a ticket that could never be used is refused
/// now rather than at sign-in).
#[allow(clippy::too_many_arguments)]
pub async fn issue_ticket(
    store: &Store,
    key: &crate::auth::secrets::MasterKey,
    policies: &PolicySet,
    lifetime: std::time::Duration,
    user: &str,
    target: &str,
    protocol: &str,
    by: &str,
) -> Result<tickets::IssuedTicket, AuthError> {
    let proto: Protocol = protocol
        .parse()
        .map_err(|e| AuthError::Invalid(format!("protocol: {e}")))?;
    match policies.target(target) {
        None => {
            return Err(AuthError::Invalid(format!(
                "no target {target:?} in the policies"
            )));
        }
        Some(t) if t.endpoint(proto).is_none() => {
            return Err(AuthError::Invalid(format!(
                "target {target} offers no {protocol} endpoint"
            )));
        }
        Some(_) => {}
    }
    tickets::issue(store, key, lifetime, user, target, protocol, by).await
}
