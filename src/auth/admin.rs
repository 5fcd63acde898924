//! Administering people: who runs an admin command, the audit event it
//! leaves, and creating a person, setting a password, resetting the TOTP
//! secret.

use super::password_checks::hash_blocking;
use super::secrets::MasterKey;
use super::{AuthError, Role, check_name, password, totp};
use crate::store::{AuditEvent, AuditKind, NewUserRow, Store, StoreError};

/// Who is running this admin command: the OS account (`$SUDO_USER` first,
/// so `sudo sekisho …` names the person, not root).
#[allow(unsafe_code)] // FFI to libc; see SAFETY below.
pub fn admin_actor() -> String {
    for var in ["SUDO_USER", "USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            return v.trim().to_string();
        }
    }
    account_name().unwrap_or_else(|| {
        // SAFETY: getuid has no preconditions and cannot fail.
        format!("uid {}", unsafe { libc::getuid() })
    })
}

/// The name of the account running this process, from the password database.
#[allow(unsafe_code)] // FFI to libc; see SAFETY below.
fn account_name() -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain data; getpwuid_r writes only into `pwd` and
    // `buf` (whose length we pass) and sets `result` to null or to `pwd`.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(pwd.pw_name)
            .to_string_lossy()
            .into_owned();
        (!name.is_empty()).then_some(name)
    }
}

/// An `AdminChange` event: `by` did `action` to `subject`; `detail` is the
/// sentence shown by `sekisho audit`. Never put a secret in it.
pub fn admin_event(by: &str, action: &str, detail: impl Into<String>) -> AuditEvent {
    AuditEvent::new(AuditKind::AdminChange, detail)
        .with("by", by)
        .with("action", action)
}

/// What `create_user` hands back to print once.
#[derive(Debug)]
pub struct NewUser {
    pub name: String,
    /// Set when the password was generated (no password given).
    pub password: Option<zeroize::Zeroizing<String>>,
    pub totp_secret_base32: String,
    pub otpauth_uri: String,
}

/// Creates a person with an argon2id password (generated if `password` is
/// None) and a fresh TOTP secret, and audits it as done by `admin_actor()`.
/// Engineers need a vendor, which must exist.
pub async fn create_user(
    store: &Store,
    key: &MasterKey,
    name: &str,
    role: Role,
    vendor: Option<&str>,
    password: Option<&str>,
) -> Result<NewUser, AuthError> {
    create_user_by(store, key, name, role, vendor, password, &admin_actor()).await
}

/// [`create_user`], audited as done by `by` (the console's signed-in admin).
pub async fn create_user_by(
    store: &Store,
    key: &MasterKey,
    name: &str,
    role: Role,
    vendor: Option<&str>,
    password: Option<&str>,
    by: &str,
) -> Result<NewUser, AuthError> {
    check_name("user", name)?;
    if role == Role::Engineer && vendor.is_none() {
        return Err(AuthError::Invalid(
            "an engineer needs a vendor: add --vendor ORG (create it with `sekisho vendor add ORG`)".into(),
        ));
    }
    if let Some(v) = vendor
        && store.vendor(v).await?.is_none()
    {
        return Err(StoreError::NoVendor(v.into()).into());
    }
    let generated = match password {
        Some(_) => None,
        None => Some(zeroize::Zeroizing::new(password::generate_password())),
    };
    let plain: &str = match (password, &generated) {
        (Some(p), _) => p,
        (None, Some(g)) => g.as_str(),
        (None, None) => return Err(password::PasswordError::Empty.into()),
    };
    let hash = hash_blocking(plain).await?;
    let secret = totp::generate_secret();
    let sealed = totp::seal_secret(key, name, &secret)?;
    store
        .add_user(&NewUserRow {
            name,
            role,
            vendor,
            password_hash: &hash,
            totp_secret_sealed: &sealed,
        })
        .await?;
    let vendor_text = vendor.map(|v| format!(", vendor {v}")).unwrap_or_default();
    store
        .audit(
            &admin_event(
                by,
                "user_add",
                format!("{by} added user {name} ({role}{vendor_text})"),
            )
            .user(name)
            .with("role", role.as_str())
            .with("vendor", vendor),
        )
        .await?;
    Ok(NewUser {
        name: name.into(),
        password: generated,
        otpauth_uri: totp::otpauth_uri(name, &secret),
        totp_secret_base32: secret,
    })
}

/// Sets a new password (audited as `by`).
pub async fn set_password(
    store: &Store,
    name: &str,
    new_password: &str,
    by: &str,
) -> Result<(), AuthError> {
    let hash = hash_blocking(new_password).await?;
    store.set_password_hash(name, &hash).await?;
    store
        .audit(
            &admin_event(
                by,
                "user_passwd",
                format!("{by} set a new password for {name}"),
            )
            .user(name),
        )
        .await?;
    Ok(())
}

/// Replaces the TOTP secret; returns (base32 secret, otpauth URI) to print once.
pub async fn reset_totp(
    store: &Store,
    key: &MasterKey,
    name: &str,
    by: &str,
) -> Result<(String, String), AuthError> {
    let secret = totp::generate_secret();
    store
        .set_totp_secret(name, &totp::seal_secret(key, name, &secret)?)
        .await?;
    store
        .audit(
            &admin_event(
                by,
                "user_totp_reset",
                format!("{by} reset the one-time-code secret of {name}"),
            )
            .user(name),
        )
        .await?;
    let uri = totp::otpauth_uri(name, &secret);
    Ok((secret, uri))
}
