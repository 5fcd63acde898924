//! Floods from one address against both fronts of a real `sekisho serve`
//! with the default `[limits]`: 10 000 silent connections and 1 000
//! stalled handshakes per front, while a real user (OpenSSH, a one-time
//! ticket) signs in from another address and runs a command, and during
//! the RDP floods the RDP front completes X.224 + TLS for a third address.
//! Prints the table (`cargo test --test it flood:: -- --nocapture`);
//! `cargo bench --bench flood` runs the same with larger floods.

use std::time::Duration;

use crate::support::flood::{FloodPlan, Serve, flood_table, measure_floods};

#[test]
fn a_real_user_gets_in_during_floods_and_serve_comes_back_to_its_size() {
    // The defaults: max_startups 10:30:100, 5 per address, 30 attempts a minute.
    let mut serve = Serve::start("flood", "", "", None);
    let plan = FloodPlan {
        silent: 10_000,
        stalled: 1_000,
        at_once: 200,
    };
    let report = measure_floods(&mut serve, plan, "ogawa");
    println!("{}", flood_table(&report));
    for row in &report.rows {
        let took = row.real_user.as_ref().unwrap_or_else(|e| {
            panic!(
                "{} {}: the real user failed: {e}\n{}",
                row.front,
                row.what,
                flood_table(&report)
            )
        });
        // Generous: on an idle machine it is well under a second.
        assert!(
            *took < Duration::from_secs(20),
            "{}: {took:?}",
            flood_table(&report)
        );
        // The limits held: from one address nearly everything was refused.
        assert!(
            row.outcome.taken_in <= row.outcome.attempted / 10,
            "{}",
            flood_table(&report)
        );
    }
    assert!(report.serve_alive, "{}", serve.log_text());
    // Memory comes back near where it was (generous bound).
    assert!(
        report.rss_after_kib <= report.rss_before_kib + 64 * 1024,
        "{}",
        flood_table(&report)
    );
    // Refusals are logged once a minute per address and reason, not per
    // connection.
    assert!(
        report.refusal_log_lines <= 8,
        "{}\n{}",
        flood_table(&report),
        serve.log_text()
    );
}
