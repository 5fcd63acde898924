//! Floods from one address against both fronts of a real `sekisho serve`
//! (release build) with the default `[limits]`, while a real user signs in
//! from another address: per front, silent connections, then stalled
//! handshakes (SSH: version sent, key exchange stalled; RDP: X.224 sent,
//! TLS stalled). The real user is OpenSSH with a one-time ticket, running a
//! command through the gateway; during the RDP floods the RDP front must
//! also complete X.224 + TLS for a third address.
//!
//! `cargo bench --bench flood` prints a markdown table: what was refused at
//! once, the real user's sign-in time during each flood, and the bastion's
//! memory and descriptors before, at the peak and after. Environment
//! (defaults in brackets): `SEKISHO_BENCH_FLOOD_SILENT` [10000],
//! `SEKISHO_BENCH_FLOOD_STALLED` [1000], `SEKISHO_BENCH_FLOOD_AT_ONCE`
//! [200]. `tests/it/flood.rs` runs the same and asserts the outcome.

// A panic in a test or bench is a failed run; libc calls set up test conditions.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/support/mod.rs"]
mod fixture;

#[path = "support/measure.rs"]
mod measure;

use fixture::flood::{FloodPlan, Serve, flood_table, measure_floods};
use measure::{env_num, loadavg};

fn main() {
    let plan = FloodPlan {
        silent: env_num("SEKISHO_BENCH_FLOOD_SILENT", 10_000) as u64,
        stalled: env_num("SEKISHO_BENCH_FLOOD_STALLED", 1_000) as u64,
        at_once: env_num("SEKISHO_BENCH_FLOOD_AT_ONCE", 200).max(1),
    };
    let load_start = loadavg();
    let mut serve = Serve::start("flood-bench", "", "", None);
    eprintln!(
        "sekisho serve pid {} on 127.0.0.1:{} (ssh) and :{} (rdp), default [limits]",
        serve.daemon.pid(),
        serve.ssh,
        serve.rdp
    );
    let report = measure_floods(&mut serve, plan, "ogawa");
    println!("## Floods from one address (127.0.0.50/.53), real user from 127.0.0.51\n");
    println!("{}", flood_table(&report));
    println!("load average: {load_start} at start, {} at end", loadavg());
}
