//! sekisho — a session-recording bastion for the remote maintenance of
//! local-government systems. See DESIGN.md for the data path this crate mirrors.
pub mod admission;
pub mod auth;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod policy;
pub mod procedure;
pub mod protocol;
pub mod rdp;
pub mod recording;
pub mod replay;
pub mod report;
pub mod session;
pub mod ssh;
pub mod store;
pub mod web;
