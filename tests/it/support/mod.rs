//! What the integration tests share: real peers, real deployments, and
//! one way each to run the CLI, make codes and stop processes.
//!
//! - `sshd`, `rdp_peers`, `postgres`, `pty`: the peers (OpenSSH, xrdp +
//!   FreeRDP + Xvfb, PostgreSQL) and a terminal for clients.
//! - `deployment` (SSH), `rdp_deployment` (RDP, optionally SSH too),
//!   `gateway` (the SSH gateway suite's one shared deployment): `sekisho
//!   init`, the admin CLI and `sekisho serve` in front of the peers.
//! - `flood`: a serve process of the gateway deployment with chosen
//!   `[limits]`, and floods of raw connections from a chosen address.
//!
//! The benchmarks include this module too (`#[path]`), so everything
//! here refers to its siblings through `super::`, and each user leaves
//! some of it unused.
#![allow(dead_code, unused_imports)]

pub mod cli;
pub mod console;
pub mod deployment;
pub mod flood;
pub mod gateway;
pub mod install;
pub mod postgres;
pub mod process;
pub mod pty;
pub mod rdp_deployment;
pub mod rdp_peers;
pub mod sshd;
pub mod totp;

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}
