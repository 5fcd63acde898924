//! Per-system policy: the model (systems, targets, hops, access entries),
//! loading and checking `policies/*.toml`, and `decide()`, the pure function
//! that grants or denies one request.

pub mod decide;
pub mod edit;
pub mod explain;
pub mod hours;
pub mod load;
pub mod model;
pub mod reach;
pub mod stop;
pub mod warnings;

pub use decide::{
    Decision, Denial, EndReason, Grant, Request, RequestRef, Rule, decide, reachable,
};
pub use explain::{Explanation, explain};
pub use hours::{Hours, HoursCheck};
pub use load::{MAX_SESSION_LIMIT, PolicyError, PolicyErrors};
pub use model::{
    APPROVER_ROLE_ENTRY, Access, AccessRef, ApprovalRoute, ApprovalStep, ApprovedWindow, Contract,
    Endpoint, Hop, LiveSession, Person, Pin, PolicySet, Protocol, System, Target, TargetKind, Zone,
    ssh_fingerprint,
};
pub use reach::Reach;
pub use stop::{EmergencyStop, StopScope};
pub use warnings::{Warning, warnings};
