//! `sekisho target pins ADDRESS[:PORT]`: connect once to a target and print
//! the identities a policy pins (`host_key` for SSH, `cert_sha256` for
//! RDP), in the form the policy file takes, for the operator to check
//! against the target and paste.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use super::Global;

#[derive(Debug, clap::Subcommand)]
pub enum TargetCmd {
    /// Connect once to a target and print its SSH host-key fingerprint and
    /// RDP certificate SHA-256, as the policy pins them.
    Pins(PinsArgs),
}

#[derive(Debug, clap::Args)]
pub struct PinsArgs {
    /// The target's IP address, with its SSH port if not 22
    /// (`10.20.0.11`, `10.20.0.11:2200`, `[fd00::11]:22`).
    pub address: String,
    /// The target's RDP port.
    #[arg(long, default_value_t = 3389)]
    pub rdp_port: u16,
    /// Read only this protocol's pin (default: both).
    #[arg(long, value_parser = ["ssh", "rdp"])]
    pub only: Option<String>,
}

pub async fn run(_g: &Global, cmd: TargetCmd) -> anyhow::Result<ExitCode> {
    let TargetCmd::Pins(a) = cmd;
    let (ip, ssh_port) = parse_address(&a.address)?;
    let want = |p: &str| a.only.as_deref().is_none_or(|o| o == p);
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    let mut hints = Vec::new();
    if want("ssh") {
        let at = SocketAddr::new(ip, ssh_port);
        match crate::ssh::back::read_host_key(&ip.to_string(), ssh_port).await {
            Ok((fingerprint, algorithm)) => {
                writeln!(out, "# SSH {at}: {algorithm} host key")?;
                writeln!(out, "host_key = \"{fingerprint}\"")?;
                hints.push(format!(
                    "SSH, on the target: ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub",
                    key_file_kind(&algorithm)
                ));
            }
            Err(e) => {
                failed += 1;
                writeln!(out, "# SSH {at}: no host key read: {e}")?;
            }
        }
    }
    if want("rdp") {
        let at = SocketAddr::new(ip, a.rdp_port);
        match crate::rdp::back::read_certificate(at).await {
            Ok(der) => {
                writeln!(out, "# RDP {at}: TLS certificate")?;
                writeln!(
                    out,
                    "cert_sha256 = \"{}\"",
                    crate::policy::Pin::CertSha256(crate::rdp::back::cert_sha256(&der))
                )?;
                hints.push(
                    "RDP, on a Windows target: the SHA-256 thumbprint of the certificate in \
                     certlm.msc > Remote Desktop > Certificates"
                        .to_string(),
                );
            }
            Err(e) => {
                failed += 1;
                writeln!(out, "# RDP {at}: no certificate read: {e}")?;
            }
        }
    }
    if !hints.is_empty() {
        writeln!(
            out,
            "# Read over the network: compare with the target itself before pinning."
        )?;
        for h in hints {
            writeln!(out, "#   {h}")?;
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The part of OpenSSH's host key file name for a key algorithm.
fn key_file_kind(algorithm: &str) -> &'static str {
    if algorithm.contains("ed25519") {
        "ed25519"
    } else if algorithm.starts_with("ecdsa") {
        "ecdsa"
    } else {
        "rsa"
    }
}

/// `10.0.0.1`, `10.0.0.1:2200`, `::1`, `[::1]:2200` → address and SSH port.
fn parse_address(s: &str) -> anyhow::Result<(IpAddr, u16)> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok((sa.ip(), sa.port()));
    }
    if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse() {
        return Ok((ip, 22));
    }
    anyhow::bail!(
        "{s:?} is not an IP address (policies name targets by address): e.g. 10.20.0.11 or 10.20.0.11:2200"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ports() {
        assert_eq!(
            parse_address("10.0.0.1").unwrap(),
            ("10.0.0.1".parse().unwrap(), 22)
        );
        assert_eq!(
            parse_address("10.0.0.1:2200").unwrap(),
            ("10.0.0.1".parse().unwrap(), 2200)
        );
        assert_eq!(
            parse_address("[::1]:2200").unwrap(),
            ("::1".parse().unwrap(), 2200)
        );
        assert_eq!(parse_address("::1").unwrap(), ("::1".parse().unwrap(), 22));
        assert!(parse_address("db01.example").is_err());
    }

    #[test]
    fn fingerprint_form_is_what_policies_read() {
        let hex = crate::policy::Pin::CertSha256([0xab; 32]).to_string();
        assert!(crate::policy::Pin::parse_cert_sha256(&hex).is_ok());
        assert!(hex.starts_with("AB:AB:"));
    }
}
