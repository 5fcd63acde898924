//! The integration tests, in one test binary with a module per suite:
//! linking a binary per suite (sekisho and all its dependencies each time)
//! cost more of a test build on two cores than compiling the tests.
//! `cargo test --test it rdp_hop::` runs one suite.
//!
//! Suites that share a machine-wide peer (xrdp-sesman's port, the RDP test
//! account, X displays) take `support::rdp_peers::lock_peers()`, a flock,
//! so they run one at a time across threads and processes alike.

// A panic in a test or bench is a failed run; libc calls set up test conditions.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

mod support;

mod cli_e2e;
mod crash;
mod emergency_stop;
mod faults;
mod first_hour;
mod flood;
mod fuzz_seams;
mod limits;
mod policy_cli;
mod procedure_browser;
mod procedure_e2e;
mod procedure_loop;
mod procedure_web;
mod rdp_e2e;
mod rdp_export;
mod rdp_front;
mod rdp_hop;
mod rdp_keystrokes;
mod rdp_shadow;
mod rdp_signin;
mod rdp_xrdp;
mod recording;
mod recording_cli;
mod recording_export;
mod serve;
mod ssh_e2e;
mod ssh_flow;
mod ssh_gateway;
mod ssh_listener;
mod ssh_repeat_service;
mod store;
mod web_admin_people;
mod web_admin_policy;
mod web_browser;
mod web_console;
mod web_desktop;
mod web_evidence;
