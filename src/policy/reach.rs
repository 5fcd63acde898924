//! Who can reach a target, and how: the answer of `sekisho policy who-can`
//! and of the console's policy pages, computed once here (pure) and only
//! formatted by each.

use super::model::{Access, PolicySet, Protocol, Target, TargetKind};
use crate::config::Network;

/// Everything that admits people to one target.
#[derive(Debug, Clone)]
pub struct Reach<'a> {
    pub target: &'a Target,
    /// The system's human name, if it has one.
    pub title: Option<&'a str>,
    /// The protocols the target offers, with their ports.
    pub offers: Vec<(Protocol, u16)>,
    /// The access entries covering the target, in file order.
    pub entries: Vec<ReachEntry<'a>>,
    /// Targets an RDP hop into this one may come from.
    pub hops_in: Vec<&'a str>,
}

/// One access entry as it applies to the target.
#[derive(Debug, Clone)]
pub struct ReachEntry<'a> {
    pub access: &'a Access,
    /// The entry's protocols the target offers.
    pub protocols: Vec<ProtocolReach>,
    /// The entry's source networks as `sekisho.toml` defines them.
    pub sources: Vec<SourceReach<'a>>,
}

/// How a protocol of an access entry reaches the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolReach {
    Direct(Protocol),
    /// RDP to a virtual server: only as a hop from a live session on one of
    /// `Reach::hops_in`.
    RdpHopOnly,
}

/// A source network name and what it stands for.
#[derive(Debug, Clone)]
pub struct SourceReach<'a> {
    pub name: &'a str,
    /// `None`: the name is not in `sekisho.toml`, so it never matches.
    pub network: Option<&'a Network>,
}

impl<'a> Reach<'a> {
    /// `None` when there is no target of that name.
    pub fn of(set: &'a PolicySet, networks: &'a [Network], name: &str) -> Option<Reach<'a>> {
        let target = set.target(name)?;
        let offers = Protocol::ALL
            .into_iter()
            .filter_map(|p| target.endpoint(p).map(|e| (p, e.port)))
            .collect();
        let hops_in: Vec<&str> = set
            .hops()
            .filter(|h| h.to == target.name)
            .map(|h| h.from.as_str())
            .collect();
        let entries = set
            .access_for(target)
            .map(|a| ReachEntry {
                access: a,
                protocols: a
                    .protocols
                    .iter()
                    .filter(|p| target.endpoint(**p).is_some())
                    .filter_map(|p| match (p, target.kind) {
                        (Protocol::Rdp, TargetKind::Virtual) if hops_in.is_empty() => None,
                        (Protocol::Rdp, TargetKind::Virtual) => Some(ProtocolReach::RdpHopOnly),
                        _ => Some(ProtocolReach::Direct(*p)),
                    })
                    .collect(),
                sources: a
                    .sources
                    .iter()
                    .map(|s| SourceReach {
                        name: s,
                        network: networks.iter().find(|n| n.name == *s),
                    })
                    .collect(),
            })
            .collect();
        Some(Reach {
            target,
            title: set.system(&target.system).and_then(|s| s.title.as_deref()),
            offers,
            entries,
            hops_in,
        })
    }
}

impl SourceReach<'_> {
    /// `lab (127.0.0.0/8)`, `lgwan (10.0.0.0/8, closed)`, or a note that the
    /// name matches nothing.
    pub fn describe(&self) -> String {
        match self.network {
            Some(n) => {
                let cidrs: Vec<String> = n.cidrs.iter().map(|c| c.to_string()).collect();
                let closed = if n.closed { ", closed" } else { "" };
                format!("{} ({}{closed})", self.name, cidrs.join(" "))
            }
            None => format!("{} (not in sekisho.toml: never matches)", self.name),
        }
    }
}
