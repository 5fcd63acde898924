//! Self-service one-time tickets under an approved request: an engineer
//! named in an approved (or active) request obtains their own ticket for a
//! target of it, so that Windows' Remote Desktop Connection, whose
//! credential prompt (NLA) cannot ask for a one-time code, works without an
//! administrator issuing one each time. The ticket never outlives the
//! approved window, and is issued only while the window is open.

use chrono::{DateTime, Utc};

use super::{Acting, ProcedureError, Refused};
use crate::auth::secrets::MasterKey;
use crate::auth::tickets::{self, IssuedTicket};
use crate::policy::{PolicySet, Protocol};
use crate::store::{AuditEvent, AuditKind, Role, Store};

/// Issues `by`'s own ticket for `target` over `protocol` under `number`.
#[allow(clippy::too_many_arguments)]
pub async fn issue_own(
    store: &Store,
    policies: &PolicySet,
    key: &MasterKey,
    lifetime: std::time::Duration,
    by: &Acting,
    number: &str,
    target: &str,
    protocol: Protocol,
    now: DateTime<Utc>,
) -> Result<IssuedTicket, ProcedureError> {
    let name = &by.user.name;
    if by.user.role != Role::Engineer {
        return Err(Refused(format!(
            "{name} is not an engineer: tickets under a request are for its engineers"
        ))
        .into());
    }
    let r = store
        .open_work_requests_for(name, now)
        .await?
        .into_iter()
        .filter(|r| r.number == number)
        .max_by_key(|r| r.revision);
    let Some(r) = r else {
        store.require_work_request(number, None).await?;
        return Err(Refused(format!(
            "{number} is not an approved request naming {name} whose window is still open"
        ))
        .into());
    };
    if !r.targets.iter().any(|t| t == target) {
        return Err(Refused(format!(
            "{} does not name target {target} (its targets: {})",
            r.label(),
            r.targets.join(", ")
        ))
        .into());
    }
    if !r.protocols.contains(&protocol) {
        return Err(Refused(format!("{} does not allow {protocol}", r.label())).into());
    }
    if policies
        .target(target)
        .and_then(|t| t.endpoint(protocol))
        .is_none()
    {
        return Err(ProcedureError::Invalid(format!(
            "target {target} offers no {protocol} endpoint in the policies"
        )));
    }
    let opens = r.approved_from.unwrap_or(r.window_start);
    if now < opens {
        return Err(Refused(format!(
            "the window of {} opens at {}; ask for the ticket then",
            r.label(),
            opens.to_rfc3339()
        ))
        .into());
    }
    let left = (r.window_end - now).to_std().unwrap_or_default();
    let lifetime = lifetime.min(left);
    if lifetime.is_zero() {
        return Err(Refused(format!("the window of {} has ended", r.label())).into());
    }
    let t = tickets::issue(
        store,
        key,
        lifetime,
        name,
        target,
        protocol.as_str(),
        &format!("{name} (self, under {})", r.number),
    )
    .await
    .map_err(|e| ProcedureError::Invalid(e.to_string()))?;
    store
        .audit(
            &AuditEvent::new(
                AuditKind::RequestTicketIssued,
                format!(
                    "{name} obtained a one-time {protocol} ticket to {target} under {}, until {}",
                    r.label(),
                    t.expires_at.to_rfc3339()
                ),
            )
            .user(name)
            .target(target)
            .protocol(protocol.as_str())
            .with("via", by.via.as_str())
            .with("request", r.number.as_str())
            .with("revision", r.revision),
        )
        .await?;
    Ok(t)
}

/// A Remote Desktop Connection (.rdp) file for the ticket: the bastion's
/// address and port, the user name `person@target`, NLA (CredSSP) on so
/// mstsc prompts for the ticket as the password, and every redirection off
/// (the bastion refuses them anyway; asking for none avoids warnings).
pub fn rdp_file(bastion_host: &str, port: u16, user: &str, target: &str) -> String {
    let lines = [
        format!("full address:s:{bastion_host}:{port}"),
        format!("username:s:{user}@{target}"),
        "enablecredsspsupport:i:1".into(),
        "authentication level:i:2".into(),
        "prompt for credentials:i:1".into(),
        "promptcredentialonce:i:0".into(),
        "negotiate security layer:i:1".into(),
        "redirectclipboard:i:0".into(),
        "redirectprinters:i:0".into(),
        "redirectdrives:i:0".into(),
        "drivestoredirect:s:".into(),
        "redirectcomports:i:0".into(),
        "redirectsmartcards:i:0".into(),
        "redirectposdevices:i:0".into(),
        "devicestoredirect:s:".into(),
        "usbdevicestoredirect:s:".into(),
        "audiomode:i:2".into(),
        "audiocapturemode:i:0".into(),
        "camerastoredirect:s:".into(),
        "autoreconnection enabled:i:0".into(),
        "screen mode id:i:1".into(),
        "session bpp:i:32".into(),
    ];
    // mstsc reads CRLF text.
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s
}
