//! Front-side NLA: the gateway is the CredSSP server, so that mstsc's
//! ordinary credential prompt works. The password the client proves is a
//! one-time ticket the core looks up by user name.
//!
//! NTLM needs the secret before it can verify the client's answer, but the
//! user name arrives only in the NTLM AUTHENTICATE message. So each
//! TsRequest is inspected before sspi sees it: when it carries an
//! AUTHENTICATE message, its user name is read, the core is asked for that
//! person's live ticket, and the ticket is put where sspi's credentials
//! proxy finds it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ironrdp_async::{Framed, FramedWrite as _};
use ironrdp_connector::sspi::credssp::{
    CredSspServer, CredentialsProxy, NStatusCode, ServerMode, ServerState, TsRequest,
};
use ironrdp_connector::sspi::generator::GeneratorState;
use ironrdp_connector::sspi::{self, AuthIdentity, Username};
use ironrdp_core::{DecodeResult, other_err};
use ironrdp_pdu::PduHint;
use ironrdp_tokio::TokioStream;
use tracing::{debug, info};

use super::RdpError;
use super::control::RdpControl;
use super::front::{ClientStream, split_target};
use crate::admission::Gate;

/// Who proved what over CredSSP.
#[derive(Clone)]
pub(crate) struct NlaIdentity {
    pub username: String,
    pub domain: Option<String>,
    pub secret: String,
}

#[derive(Clone, Copy, Debug)]
struct TsRequestHint;

impl PduHint for TsRequestHint {
    fn find_size(&self, bytes: &[u8]) -> DecodeResult<Option<(bool, usize)>> {
        match TsRequest::read_length(bytes) {
            Ok(length) => Ok(Some((true, length))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(other_err!("TsRequest", source: e)),
        }
    }
}

/// Hands sspi the identity found for the user of the AUTHENTICATE message.
#[derive(Debug)]
struct TicketProxy {
    slot: Arc<Mutex<Option<AuthIdentity>>>,
}

impl CredentialsProxy for TicketProxy {
    type AuthenticationData = AuthIdentity;

    fn auth_data_by_user(&mut self, username: &Username) -> std::io::Result<AuthIdentity> {
        let found = self.slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(mut identity) = found else {
            return Err(std::io::Error::other("no sign-in secret for this user"));
        };
        if !identity
            .username
            .account_name()
            .eq_ignore_ascii_case(username.account_name())
        {
            return Err(std::io::Error::other("user name changed during CredSSP"));
        }
        identity.username = username.clone();
        Ok(identity)
    }

    fn auth_data(&mut self) -> std::io::Result<Vec<AuthIdentity>> {
        Ok(self
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect())
    }
}

/// User and domain of an NTLM AUTHENTICATE message (MS-NLMP 2.2.1.3), if
/// `token` is one. Only the Unicode form is accepted (every CredSSP client
/// negotiates it).
pub(crate) fn ntlm_authenticate_user(token: &[u8]) -> Option<(String, Option<String>)> {
    const SIGNATURE: &[u8] = b"NTLMSSP\0";
    if token.get(..8)? != SIGNATURE || token.get(8..12)? != [3, 0, 0, 0] {
        return None;
    }
    let field = |at: usize| -> Option<String> {
        let len = usize::from(u16::from_le_bytes([*token.get(at)?, *token.get(at + 1)?]));
        let offset = u32::from_le_bytes(token.get(at + 4..at + 8)?.try_into().ok()?);
        let offset = usize::try_from(offset).ok()?;
        let bytes = token.get(offset..offset.checked_add(len)?)?;
        if bytes.len() % 2 != 0 {
            return None;
        }
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .filter_map(|c| super::le_u16(c, 0))
            .collect();
        String::from_utf16(&units).ok()
    };
    let domain = field(28)?;
    let user = field(36)?;
    if user.is_empty() {
        return None;
    }
    Some((user, Some(domain).filter(|d| !d.is_empty())))
}

async fn write_ts_request<S: ClientStream>(
    framed: &mut Framed<TokioStream<S>>,
    ts: &TsRequest,
) -> Result<(), RdpError> {
    let len = ts
        .buffer_len()
        .map_err(|e| RdpError::protocol("CredSSP reply", e))?;
    let mut out = Vec::with_capacity(usize::from(len));
    ts.encode_ts_request(&mut out)
        .map_err(|e| RdpError::protocol("CredSSP reply", e))?;
    framed
        .write_all(&out)
        .await
        .map_err(|e| RdpError::io("writing CredSSP reply", e))
}

/// Run CredSSP as the server on the client's TLS stream.
pub(crate) async fn accept<S: ClientStream, C: RdpControl>(
    framed: &mut Framed<TokioStream<S>>,
    control: &C,
    source: IpAddr,
    admission: &Gate,
    public_key: Vec<u8>,
) -> Result<NlaIdentity, RdpError> {
    let slot = Arc::new(Mutex::new(None));
    let proxy = TicketProxy { slot: slot.clone() };
    let mut server = CredSspServer::new(
        public_key,
        proxy,
        ServerMode::Ntlm(sspi::ntlm::NtlmConfig::new("sekisho".to_owned())),
    )
    .map_err(|e| RdpError::protocol("CredSSP setup", e))?;
    let mut named: Option<(String, Option<String>)> = None;

    loop {
        let pdu = framed
            .read_by_hint(&TsRequestHint)
            .await
            .map_err(|e| RdpError::io("reading CredSSP request", e))?;
        let ts =
            TsRequest::from_buffer(&pdu).map_err(|e| RdpError::protocol("CredSSP request", e))?;

        if let Some((user, domain)) = ts.nego_tokens.as_deref().and_then(ntlm_authenticate_user) {
            // One secret checked: within `[limits] signin_attempts_per_minute`
            // (the gate logs and audits a refusal, at most once a minute).
            if let Err(refusal) = admission.attempt(source, "rdp") {
                return Err(RdpError::Refused(refusal.describe().into()));
            }
            let identity = match split_target(&user, domain.as_deref()) {
                Some((person, target)) => {
                    match control.nla_secret(&person, &target, source).await {
                        Some(secret) => {
                            Username::new(&user, domain.as_deref())
                                .ok()
                                .map(|username| AuthIdentity {
                                    username,
                                    password: secret.into(),
                                })
                        }
                        None => None,
                    }
                }
                None => None,
            };
            debug!(user = %crate::auth::login_for_records(&user), known = identity.is_some(), "CredSSP user");
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = identity;
            named = Some((user, domain));
        }

        // sspi may ask for network access (Kerberos); NTLM never does, and
        // the gateway has no KDC to offer.
        let result = {
            let mut generator = server.process(ts);
            let mut state = generator.start();
            loop {
                match state {
                    GeneratorState::Suspended(_) => {
                        state = generator.resume(Err(sspi::Error::new(
                            sspi::ErrorKind::InternalError,
                            "no network access during sign-in",
                        )));
                    }
                    GeneratorState::Completed(result) => break result,
                }
            }
        };

        match result {
            Ok(ServerState::ReplyNeeded(reply)) => write_ts_request(framed, &reply).await?,
            Ok(ServerState::Finished(identity)) => {
                let (username, domain) =
                    named.unwrap_or_else(|| (identity.username.account_name().to_owned(), None));
                info!(user = %username, "CredSSP sign-in proved");
                return Ok(NlaIdentity {
                    username,
                    domain,
                    secret: identity.password.as_ref().clone(),
                });
            }
            Err(err) => {
                if let Some(mut reply) = err.ts_request.map(|b| *b) {
                    if err.error.error_type == sspi::ErrorKind::LogonDenied {
                        reply.error_code = Some(NStatusCode::LOGON_FAILURE);
                    }
                    let _ = write_ts_request(framed, &reply).await;
                }
                let who = named.map(|(u, _)| u).unwrap_or_default();
                let reason = format!("NLA sign-in failed: {}", err.error);
                control.nla_refused(&who, source, &reason).await;
                return Err(RdpError::Refused(format!("{reason} (user {who:?})")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ntlm_authenticate_user;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    fn authenticate(user: &str, domain: &str) -> Vec<u8> {
        let mut msg = b"NTLMSSP\0".to_vec();
        msg.extend_from_slice(&[3, 0, 0, 0]);
        let payload_at = 64u32;
        let d = utf16(domain);
        let u = utf16(user);
        let mut fields = vec![0u8; 52]; // Lm, Nt, Domain, User, Workstation, SessionKey, flags
        let put = |f: &mut Vec<u8>, at: usize, len: usize, off: u32| {
            f[at..at + 2].copy_from_slice(&(len as u16).to_le_bytes());
            f[at + 2..at + 4].copy_from_slice(&(len as u16).to_le_bytes());
            f[at + 4..at + 8].copy_from_slice(&off.to_le_bytes());
        };
        put(&mut fields, 16, d.len(), payload_at);
        put(&mut fields, 24, u.len(), payload_at + d.len() as u32);
        msg.extend_from_slice(&fields);
        msg.extend_from_slice(&d);
        msg.extend_from_slice(&u);
        msg
    }

    #[test]
    fn user_and_domain_are_read_from_authenticate() {
        assert_eq!(
            ntlm_authenticate_user(&authenticate("tester@xrdp1", "")),
            Some(("tester@xrdp1".into(), None))
        );
        assert_eq!(
            ntlm_authenticate_user(&authenticate("tanaka", "fa-db01")),
            Some(("tanaka".into(), Some("fa-db01".into())))
        );
    }

    #[test]
    fn other_or_broken_messages_yield_nothing() {
        let mut negotiate = b"NTLMSSP\0".to_vec();
        negotiate.extend_from_slice(&[1, 0, 0, 0]);
        assert_eq!(ntlm_authenticate_user(&negotiate), None);
        let full = authenticate("tester", "x");
        for cut in [0, 8, 12, 40, full.len() - 1] {
            assert_eq!(ntlm_authenticate_user(&full[..cut]), None, "cut {cut}");
        }
        assert_eq!(ntlm_authenticate_user(&authenticate("", "x")), None);
        assert_eq!(ntlm_authenticate_user(b"garbage"), None);
    }
}
