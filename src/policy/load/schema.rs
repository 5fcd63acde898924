//! The policy file as written: TOML tables with the span of every value, so
//! that checks can point at a line. Unknown keys are refused here.

use serde::Deserialize;
use toml::Spanned;

pub(super) type S<T> = Spanned<T>;

/// A list of names, each with its span.
pub(super) type NameList = S<Vec<S<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) system: Option<S<RawSystem>>,
    #[serde(default, rename = "target")]
    pub(super) targets: Vec<S<RawTarget>>,
    #[serde(default, rename = "hop")]
    pub(super) hops: Vec<S<RawHop>>,
    #[serde(default, rename = "access")]
    pub(super) access: Vec<S<RawAccess>>,
    pub(super) approval: Option<S<RawApproval>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApproval {
    pub(super) required: Option<S<bool>>,
    pub(super) steps: Option<S<Vec<NameList>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSystem {
    pub(super) name: Option<S<String>>,
    pub(super) zone: Option<S<String>>,
    pub(super) title: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) name: Option<S<String>>,
    pub(super) address: Option<S<String>>,
    pub(super) kind: Option<S<String>>,
    pub(super) ssh: Option<S<RawEndpoint>>,
    pub(super) rdp: Option<S<RawEndpoint>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpoint {
    pub(super) port: Option<S<i64>>,
    pub(super) account: Option<S<String>>,
    pub(super) credential: Option<S<String>>,
    pub(super) host_key: Option<S<String>>,
    pub(super) cert_sha256: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHop {
    pub(super) from: Option<S<String>>,
    pub(super) to: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccess {
    pub(super) vendor: Option<S<String>>,
    pub(super) users: Option<S<Vec<S<String>>>>,
    pub(super) targets: Option<S<Vec<S<String>>>>,
    pub(super) contract: Option<S<RawContract>>,
    pub(super) hours: Option<S<String>>,
    pub(super) max_session: Option<S<String>>,
    pub(super) protocols: Option<S<Vec<S<String>>>>,
    pub(super) sources: Option<S<Vec<S<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContract {
    pub(super) from: Option<S<toml::Value>>,
    pub(super) until: Option<S<toml::Value>>,
}
