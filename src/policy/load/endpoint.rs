//! Checking a target's `ssh = {...}` or `rdp = {...}` endpoint: port,
//! account, the credential's name (known to the secret store) and the pinned
//! host key or certificate.

use std::collections::BTreeSet;

use super::file::required;
use super::location::Sink;
use super::schema::{RawEndpoint, S};
use crate::policy::model::{Endpoint, Pin, Protocol};

pub(super) fn parse_endpoint(
    sink: &mut Sink,
    e: &S<RawEndpoint>,
    protocol: Protocol,
    prefix: &str,
    known_credentials: Option<&BTreeSet<String>>,
) -> Option<Endpoint> {
    let span = e.span();
    let e = e.get_ref();
    let f = |x: &str| format!("{prefix}.{x}");
    let mut ok = true;
    let port = match &e.port {
        None => match protocol {
            Protocol::Ssh => 22,
            Protocol::Rdp => 3389,
        },
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(port) if port > 0 => port,
            _ => {
                sink.err(
                    Some(p.span()),
                    f("port"),
                    format!("{} is not a port (1 to 65535)", p.get_ref()),
                );
                ok = false;
                0
            }
        },
    };
    let account = required(
        sink,
        &e.account,
        &span,
        &f("account"),
        "the account sekisho signs in as on the target",
    )
    .and_then(|a| {
        if a.get_ref().trim().is_empty() {
            sink.err(Some(a.span()), f("account"), "is empty".into());
            None
        } else {
            Some(a.get_ref().clone())
        }
    });
    let credential = required(
        sink,
        &e.credential,
        &span,
        &f("credential"),
        "the name of the credential in the secret store",
    )
    .and_then(|c| {
        let name = c.get_ref();
        if name.trim().is_empty() {
            sink.err(Some(c.span()), f("credential"), "is empty".into());
            return None;
        }
        if let Some(known) = known_credentials
            && !known.contains(name)
        {
            sink.err(
                Some(c.span()),
                f("credential"),
                format!(
                    "unknown credential {name:?}: store it first with `sekisho secret set {name}`"
                ),
            );
            return None;
        }
        Some(name.clone())
    });
    let (pin_field, wrong_field, pin_value, wrong_value) = match protocol {
        Protocol::Ssh => ("host_key", "cert_sha256", &e.host_key, &e.cert_sha256),
        Protocol::Rdp => ("cert_sha256", "host_key", &e.cert_sha256, &e.host_key),
    };
    if let Some(w) = wrong_value {
        sink.err(
            Some(w.span()),
            f(wrong_field),
            format!("{protocol} targets are pinned with {pin_field}, not {wrong_field}"),
        );
        ok = false;
    }
    let pin = match pin_value {
        None => {
            let hint = match protocol {
                Protocol::Ssh => {
                    "pin the target's host key, e.g. host_key = \"SHA256:...\" (ssh-keygen -lf); a target without a pinned key cannot be reached"
                }
                Protocol::Rdp => {
                    "pin the target's TLS certificate, e.g. cert_sha256 = \"AA:BB:...\" (SHA-256 of the certificate); a target without a pinned certificate cannot be reached"
                }
            };
            sink.err(Some(span.clone()), f(pin_field), format!("missing; {hint}"));
            None
        }
        Some(v) => {
            let parsed = match protocol {
                Protocol::Ssh => Pin::parse_ssh_host_key(v.get_ref()),
                Protocol::Rdp => Pin::parse_cert_sha256(v.get_ref()),
            };
            match parsed {
                Ok(pin) => Some(pin),
                Err(m) => {
                    sink.err(Some(v.span()), f(pin_field), m);
                    None
                }
            }
        }
    };
    match (ok, account, credential, pin) {
        (true, Some(account), Some(credential), Some(pin)) => Some(Endpoint {
            port,
            account,
            credential,
            pin,
        }),
        _ => None,
    }
}
