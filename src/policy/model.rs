//! The policy model: systems, targets, hops and access entries, as loaded
//! from `policies/*.toml`. Plain data; loading is in `load/`, deciding in
//! `decide.rs`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use chrono::NaiveDate;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::hours::Hours;
use crate::config::canonical_ip;

/// The two protocols sekisho relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Ssh,
    Rdp,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Ssh, Protocol::Rdp];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Ssh => "ssh",
            Protocol::Rdp => "rdp",
        }
    }

    /// The name as written in prose: "SSH", "RDP".
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Ssh => "SSH",
            Protocol::Rdp => "RDP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ssh" => Ok(Protocol::Ssh),
            "rdp" => Ok(Protocol::Rdp),
            _ => Err(format!("{s:?} is not a protocol (ssh or rdp)")),
        }
    }
}

/// The three network zones of local-government systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Zone {
    Internet,
    Lgwan,
    /// Individual-number systems: reachable only from closed networks.
    MyNumber,
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Zone::Internet => "internet",
            Zone::Lgwan => "lgwan",
            Zone::MyNumber => "mynumber",
        })
    }
}

impl FromStr for Zone {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "internet" => Ok(Zone::Internet),
            "lgwan" => Ok(Zone::Lgwan),
            "mynumber" => Ok(Zone::MyNumber),
            _ => Err(format!("{s:?} is not a zone (internet, lgwan or mynumber)")),
        }
    }
}

/// Physical servers may be reached over RDP; virtual ones only through a
/// terminal session (or an RDP hop, see `[[hop]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Physical,
    Virtual,
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetKind::Physical => "physical",
            TargetKind::Virtual => "virtual",
        })
    }
}

impl FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "physical" => Ok(TargetKind::Physical),
            "virtual" => Ok(TargetKind::Virtual),
            _ => Err(format!("{s:?} is not a kind (physical or virtual)")),
        }
    }
}

/// One system (one policy file).
#[derive(Debug, Clone, PartialEq)]
pub struct System {
    pub name: String,
    /// A human name, e.g. "財務会計".
    pub title: Option<String>,
    pub zone: Zone,
    pub file: PathBuf,
    /// Who approves work requests for this system (`[approval]`); `None`
    /// is the default route (one step, any approver) with approval not
    /// required.
    pub approval: Option<ApprovalRoute>,
}

impl System {
    /// Whether sessions to this system's targets need an approved request.
    pub fn requires_approval(&self) -> bool {
        self.approval.as_ref().is_some_and(|a| a.required)
    }

    /// The route a request for this system follows.
    pub fn route(&self) -> ApprovalRoute {
        self.approval
            .clone()
            .unwrap_or_else(ApprovalRoute::default_route)
    }
}

/// In an approval step, the entry that admits every user with the
/// `approver` role.
pub const APPROVER_ROLE_ENTRY: &str = "role:approver";

/// A system's `[approval]`: whether sessions need an approved work request,
/// and the steps (one or two) a request goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRoute {
    pub required: bool,
    pub steps: Vec<ApprovalStep>,
}

impl ApprovalRoute {
    /// For a system without `[approval]`: not required; one step, any
    /// approver.
    pub fn default_route() -> ApprovalRoute {
        ApprovalRoute {
            required: false,
            steps: vec![ApprovalStep {
                people: Vec::new(),
                approver_role: true,
            }],
        }
    }
}

/// One approval step: any one of these people approves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalStep {
    /// Named approvers (user names).
    pub people: Vec<String>,
    /// Every user with the `approver` role may approve this step too.
    pub approver_role: bool,
}

impl ApprovalStep {
    pub fn admits(&self, name: &str, has_approver_role: bool) -> bool {
        (self.approver_role && has_approver_role) || self.people.iter().any(|p| p == name)
    }
}

impl fmt::Display for ApprovalStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<&str> = self.people.iter().map(|p| p.as_str()).collect();
        if self.approver_role {
            parts.push("any user with the approver role");
        }
        f.write_str(&parts.join(", "))
    }
}

/// A maintenance target: one server, reachable by name (`tanaka@fa-db01`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub system: String,
    pub zone: Zone,
    pub address: IpAddr,
    pub kind: TargetKind,
    pub ssh: Option<Endpoint>,
    pub rdp: Option<Endpoint>,
}

impl Target {
    /// The endpoint for a protocol, if the target offers it.
    pub fn endpoint(&self, protocol: Protocol) -> Option<&Endpoint> {
        match protocol {
            Protocol::Ssh => self.ssh.as_ref(),
            Protocol::Rdp => self.rdp.as_ref(),
        }
    }
}

/// How sekisho connects to a target over one protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub port: u16,
    /// The account sekisho signs in as on the target.
    pub account: String,
    /// The name of the credential in the secret store (never the secret).
    pub credential: String,
    /// The target's identity; a connection that does not match is refused.
    pub pin: Pin,
}

/// A pinned target identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// OpenSSH-style fingerprint of the host key: `SHA256:` + unpadded base64.
    SshHostKey(String),
    /// SHA-256 of the RDP server's TLS certificate (DER).
    CertSha256([u8; 32]),
}

impl Pin {
    /// Reads `SHA256:<base64>` (as `ssh-keygen -lf` prints it).
    pub fn parse_ssh_host_key(s: &str) -> Result<Pin, String> {
        let s = s.trim();
        let Some(b64) = s.strip_prefix("SHA256:") else {
            return Err(format!(
                "{s:?} is not an SSH host key fingerprint (expected \"SHA256:...\" as printed by ssh-keygen -lf)"
            ));
        };
        let b64 = b64.trim_end_matches('=');
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64)
            .map_err(|_| format!("{s:?}: the part after SHA256: is not base64"))?;
        if bytes.len() != 32 {
            return Err(format!(
                "{s:?}: a SHA-256 fingerprint has 32 bytes, this has {}",
                bytes.len()
            ));
        }
        Ok(Pin::SshHostKey(format!("SHA256:{b64}")))
    }

    /// Reads 64 hex digits, optionally separated by colons (`AA:BB:...`).
    pub fn parse_cert_sha256(s: &str) -> Result<Pin, String> {
        let digits: String = s.trim().chars().filter(|c| *c != ':').collect();
        let bytes =
            hex::decode(&digits).map_err(|_| format!("{s:?} is not a hex SHA-256 fingerprint"))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "{s:?}: a SHA-256 fingerprint has 32 bytes, this has {}",
                b.len()
            )
        })?;
        Ok(Pin::CertSha256(arr))
    }

    /// Whether an SSH host key, given as its wire-format public key blob,
    /// is the pinned one.
    pub fn matches_ssh_key_blob(&self, blob: &[u8]) -> bool {
        match self {
            Pin::SshHostKey(fp) => {
                let got = ssh_fingerprint(blob);
                got.as_bytes().ct_eq(fp.as_bytes()).into()
            }
            Pin::CertSha256(_) => false,
        }
    }

    /// Whether a fingerprint already in `SHA256:...` form is the pinned one.
    pub fn matches_ssh_fingerprint(&self, fingerprint: &str) -> bool {
        match (self, Pin::parse_ssh_host_key(fingerprint)) {
            (Pin::SshHostKey(fp), Ok(Pin::SshHostKey(got))) => {
                got.as_bytes().ct_eq(fp.as_bytes()).into()
            }
            _ => false,
        }
    }

    /// Whether a TLS certificate (DER) is the pinned one.
    pub fn matches_cert_der(&self, der: &[u8]) -> bool {
        match self {
            Pin::CertSha256(want) => {
                let got: [u8; 32] = Sha256::digest(der).into();
                got.ct_eq(want).into()
            }
            Pin::SshHostKey(_) => false,
        }
    }
}

/// OpenSSH's fingerprint of a public key blob.
pub fn ssh_fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::SshHostKey(fp) => f.write_str(fp),
            Pin::CertSha256(d) => {
                let parts: Vec<String> = d.iter().map(|b| format!("{b:02X}")).collect();
                f.write_str(&parts.join(":"))
            }
        }
    }
}

/// An allowed server-to-server RDP hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub from: String,
    pub to: String,
    pub file: PathBuf,
}

/// A maintenance contract's period: inclusive calendar days in the
/// configured time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contract {
    pub from: NaiveDate,
    pub until: NaiveDate,
}

impl Contract {
    /// Whole days from `today` to the contract's last day: 0 on the last
    /// day, negative once it has ended.
    pub fn days_left(&self, today: NaiveDate) -> i64 {
        self.until.signed_duration_since(today).num_days()
    }
}

/// One `[[access]]` entry: who of which vendor may reach this system's
/// targets, how, from where and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    pub system: String,
    pub file: PathBuf,
    /// Position among the file's `[[access]]` entries (0-based).
    pub index: usize,
    pub vendor: String,
    pub users: Vec<String>,
    /// The targets covered; `None` means every target of the system.
    pub targets: Option<Vec<String>>,
    pub contract: Contract,
    pub hours: Hours,
    pub max_session: Duration,
    pub protocols: Vec<Protocol>,
    /// Names of networks from `sekisho.toml`.
    pub sources: Vec<String>,
}

impl Access {
    pub fn covers_target(&self, target: &Target) -> bool {
        target.system == self.system
            && self
                .targets
                .as_ref()
                .is_none_or(|t| t.contains(&target.name))
    }

    /// The person is named, and this entry's vendor is the person's vendor
    /// or one the person's vendor subcontracts for.
    pub fn covers_person(&self, person: &Person) -> bool {
        self.users.contains(&person.name) && person.vendor_chain.contains(&self.vendor)
    }

    /// A reference for audit records.
    pub fn reference(&self) -> AccessRef {
        AccessRef {
            file: self.file.clone(),
            system: self.system.clone(),
            index: self.index,
            vendor: self.vendor.clone(),
        }
    }
}

/// Which access entry allowed a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRef {
    pub file: PathBuf,
    pub system: String,
    pub index: usize,
    pub vendor: String,
}

impl fmt::Display for AccessRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} access[{}] vendor {}",
            file_name(&self.file),
            self.index,
            self.vendor
        )
    }
}

pub(crate) fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// The person asking, as the user store knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    /// Own vendor first, then the vendor it subcontracts for, and so on.
    pub vendor_chain: Vec<String>,
    pub enabled: bool,
    pub locked: bool,
}

/// A live session of the person asking (for the RDP hop rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub id: uuid::Uuid,
    pub target: String,
    pub protocol: Protocol,
}

/// An approved work request as `decide` needs it: who may work where,
/// over what, and when (a pure input; the store supplies it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedWindow {
    /// `R-2026-0001`.
    pub number: String,
    pub revision: u32,
    pub engineers: Vec<String>,
    pub targets: Vec<String>,
    pub protocols: Vec<Protocol>,
    /// When the window opens (later than asked if approved late).
    pub from: chrono::DateTime<chrono::Utc>,
    pub until: chrono::DateTime<chrono::Utc>,
    /// Opened by one step as an emergency.
    pub emergency: bool,
}

impl ApprovedWindow {
    /// Names this person, target and protocol (whatever the time).
    pub fn names(&self, person: &str, target: &str, protocol: Protocol) -> bool {
        self.engineers.iter().any(|e| e == person)
            && self.targets.iter().any(|t| t == target)
            && self.protocols.contains(&protocol)
    }
}

/// All loaded systems.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub(crate) systems: Vec<System>,
    pub(crate) targets: Vec<Target>,
    pub(crate) hops: Vec<Hop>,
    pub(crate) access: Vec<Access>,
}

impl PolicySet {
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The registered target at an address (IPv4-mapped IPv6 counts as IPv4).
    pub fn target_by_address(&self, addr: IpAddr) -> Option<&Target> {
        let addr = canonical_ip(addr);
        self.targets
            .iter()
            .find(|t| canonical_ip(t.address) == addr)
    }

    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter()
    }

    pub fn systems(&self) -> impl Iterator<Item = &System> {
        self.systems.iter()
    }

    pub fn system(&self, name: &str) -> Option<&System> {
        self.systems.iter().find(|s| s.name == name)
    }

    pub fn hops(&self) -> impl Iterator<Item = &Hop> {
        self.hops.iter()
    }

    pub fn access(&self) -> impl Iterator<Item = &Access> {
        self.access.iter()
    }

    /// The access entries covering a target, in file order.
    pub fn access_for<'a>(&'a self, target: &'a Target) -> impl Iterator<Item = &'a Access> {
        self.access.iter().filter(move |a| a.covers_target(target))
    }

    pub fn hop_allowed(&self, from: &str, to: &str) -> bool {
        self.hops.iter().any(|h| h.from == from && h.to == to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_and_match() {
        let blob = b"ssh-ed25519 example blob";
        let fp = ssh_fingerprint(blob);
        let pin = Pin::parse_ssh_host_key(&fp).unwrap();
        assert!(pin.matches_ssh_key_blob(blob));
        assert!(!pin.matches_ssh_key_blob(b"other"));
        assert!(pin.matches_ssh_fingerprint(&format!("{fp}=")));
        assert!(Pin::parse_ssh_host_key("MD5:aa").is_err());
        assert!(Pin::parse_ssh_host_key("SHA256:abcd").is_err());

        let der = b"certificate bytes";
        let hexfp = hex::encode(Sha256::digest(der));
        let pin = Pin::parse_cert_sha256(&hexfp).unwrap();
        assert!(pin.matches_cert_der(der));
        assert!(!pin.matches_cert_der(b"x"));
        let colons = pin.to_string();
        assert_eq!(colons.len(), 32 * 3 - 1);
        assert_eq!(Pin::parse_cert_sha256(&colons).unwrap(), pin);
        assert!(Pin::parse_cert_sha256("AA:BB").is_err());
        assert!(Pin::parse_cert_sha256("zz").is_err());
    }

    #[test]
    fn names_round_trip() {
        for p in Protocol::ALL {
            assert_eq!(p.to_string().parse::<Protocol>().unwrap(), p);
        }
        assert_eq!("RDP".parse::<Protocol>().unwrap(), Protocol::Rdp);
        assert!("telnet".parse::<Protocol>().is_err());
        assert_eq!("mynumber".parse::<Zone>().unwrap(), Zone::MyNumber);
        assert!("dmz".parse::<Zone>().is_err());
        assert!("vm".parse::<TargetKind>().is_err());
    }
}
