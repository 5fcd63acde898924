//! The console's sessions list with 100 000 sessions in the store (issue 12,
//! point 4): the queries the console issues for the list (count + one page,
//! unfiltered and with each filter), a session's page and the audit page,
//! timed against SQLite and PostgreSQL, with and without the indexes of
//! migration 0005; then the same pages over HTTPS from a real `sekisho
//! serve` whose database holds the 100 000 sessions.
//!
//! `cargo bench --bench console` prints markdown tables (milliseconds,
//! median of the runs). Environment (defaults in brackets):
//! `SEKISHO_BENCH_SESSIONS` [100000], `SEKISHO_BENCH_RUNS` [21], and
//! which parts run: `SEKISHO_BENCH_SQLITE` [1], `SEKISHO_BENCH_POSTGRES`
//! [1], `SEKISHO_BENCH_HTTP` [1] (0 leaves one out).

// A panic in a bench is a failed run.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/support/mod.rs"]
mod fixture;

#[path = "support/measure.rs"]
mod measure;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use measure::{env_num, loadavg, median};
use sekisho::store::{AuditFilter, AuditKind, SessionFilter, SessionStatus, Store};
use uuid::Uuid;

/// The console's page size (`src/web/sessions.rs`).
const PAGE: u32 = 50;
const ENGINEERS: usize = 300;
const VENDORS: usize = 30;
const SYSTEMS: usize = 40;
const TARGETS_PER_SYSTEM: usize = 10;
/// Rows per INSERT statement while filling.
const BATCH: usize = 200;

/// A small deterministic generator (no two runs differ).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn engineer(i: usize) -> String {
    format!("eng{i:03}")
}
fn vendor_of(engineer: usize) -> String {
    format!("vendor{:02}", engineer % VENDORS)
}
fn target(system: usize, host: usize) -> String {
    format!("sys{system:02}-host{host}")
}

/// One generated session row.
struct Row {
    id: Uuid,
    user: String,
    vendor: String,
    target: String,
    protocol: &'static str,
    started: i64,
    ended: Option<i64>,
    status: SessionStatus,
}

/// `n` sessions over the two years before `now`, newest at `now`; the
/// newest 20 live. Seven in ten SSH; most ended normally.
fn generate(n: usize, now: DateTime<Utc>) -> Vec<Row> {
    let mut g = Lcg(12);
    let span_us: i64 = 2 * 365 * 24 * 3600 * 1_000_000;
    let now_us = now.timestamp_micros();
    (0..n)
        .map(|i| {
            let e = g.below(ENGINEERS);
            let sys = g.below(SYSTEMS);
            let started = now_us - span_us + (span_us / n as i64) * i as i64;
            let status = if i + 20 >= n {
                SessionStatus::Live
            } else {
                match g.below(100) {
                    0..=84 => SessionStatus::Ended,
                    85..=92 => SessionStatus::Expired,
                    93..=94 => SessionStatus::Killed,
                    95..=97 => SessionStatus::Failed,
                    98 => SessionStatus::TargetLost,
                    _ => SessionStatus::Abnormal,
                }
            };
            Row {
                id: Uuid::from_u128(0x5e55_0000_0000_0000_0000_0000_0000_0000 | i as u128),
                user: engineer(e),
                vendor: vendor_of(e),
                target: target(sys, g.below(TARGETS_PER_SYSTEM)),
                protocol: if g.below(10) < 7 { "ssh" } else { "rdp" },
                started,
                ended: (status != SessionStatus::Live)
                    .then(|| started + 60_000_000 * (1 + g.below(120) as i64)),
                status,
            }
        })
        .collect()
}

fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fills the store with `rows` and four audit events each (sign-in, allow,
/// start, end; one in ten also a blocked channel), in one transaction per
/// table, many rows per statement. Returns the seconds taken.
async fn fill(store: &Store, rows: &[Row]) -> f64 {
    let t0 = Instant::now();
    let mut tx = store.pool().begin().await.expect("begin");
    for chunk in rows.chunks(BATCH) {
        let sql = format!(
            "INSERT INTO sessions (id, user_name, vendor, target, protocol, client_addr, node,
                 started_at, ends_at, ended_at, status, end_reason, recording_path) VALUES {}",
            placeholders(chunk.len(), 13)
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(r.id.to_string())
                .bind(r.user.as_str())
                .bind(r.vendor.as_str())
                .bind(r.target.as_str())
                .bind(r.protocol)
                .bind("192.0.2.10")
                .bind("bench")
                .bind(r.started)
                .bind(r.started + 2 * 3600 * 1_000_000)
                .bind(r.ended)
                .bind(r.status.as_str())
                .bind(r.ended.map(|_| "connection closed"))
                .bind(format!("/srv/sekisho/recordings/{}.skr", r.id));
        }
        q.execute(&mut *tx).await.expect("insert sessions");
    }
    tx.commit().await.expect("commit sessions");

    let mut events: Vec<(i64, &'static str, &Row, String)> = Vec::with_capacity(rows.len() * 5);
    for (i, r) in rows.iter().enumerate() {
        events.push((
            r.started - 2_000_000,
            "signin_success",
            r,
            format!("{} signed in", r.user),
        ));
        events.push((
            r.started - 1_000_000,
            "allow",
            r,
            format!("{} may use {} on {}", r.user, r.protocol, r.target),
        ));
        events.push((r.started, "session_start", r, "started".into()));
        if i % 10 == 0 {
            events.push((
                r.started + 1_000_000,
                "channel_blocked",
                r,
                "blocked port_forward".into(),
            ));
        }
        if let Some(end) = r.ended {
            events.push((end, "session_end", r, "ended".into()));
        }
    }
    events.sort_by_key(|e| e.0);
    let mut tx = store.pool().begin().await.expect("begin");
    for chunk in events.chunks(BATCH) {
        let sql = format!(
            "INSERT INTO audit (at, kind, user_name, target, session, source, protocol, detail, data)
             VALUES {}",
            placeholders(chunk.len(), 9)
        );
        let mut q = sqlx::query(&sql);
        for (at, kind, r, detail) in chunk {
            q = q
                .bind(*at)
                .bind(*kind)
                .bind(r.user.as_str())
                .bind(r.target.as_str())
                .bind(r.id.to_string())
                .bind("192.0.2.10")
                .bind(r.protocol)
                .bind(detail.as_str())
                .bind("{}");
        }
        q.execute(&mut *tx).await.expect("insert audit");
    }
    tx.commit().await.expect("commit audit");
    // Fresh statistics, as autovacuum (PostgreSQL) or `sekisho` itself
    // would not have them yet right after a bulk load.
    sqlx::query("ANALYZE")
        .execute(store.pool())
        .await
        .expect("analyze");
    t0.elapsed().as_secs_f64()
}

/// The list filters the console builds (`SessionQuery::filter`): newest
/// first, one page.
fn list(page: u32) -> SessionFilter {
    SessionFilter {
        newest_first: true,
        limit: Some(PAGE),
        offset: (page - 1) * PAGE,
        ..SessionFilter::default()
    }
}

struct Case {
    name: &'static str,
    filter: SessionFilter,
}

fn cases(now: DateTime<Utc>) -> Vec<Case> {
    let system: Vec<String> = (0..TARGETS_PER_SYSTEM).map(|h| target(13, h)).collect();
    vec![
        Case {
            name: "first page, no filter",
            filter: list(1),
        },
        Case {
            name: "person",
            filter: SessionFilter {
                user: Some(engineer(42)),
                ..list(1)
            },
        },
        Case {
            name: "vendor",
            filter: SessionFilter {
                vendor: Some(vendor_of(7)),
                ..list(1)
            },
        },
        Case {
            name: "system (its 10 targets)",
            filter: SessionFilter {
                targets: Some(system),
                ..list(1)
            },
        },
        Case {
            name: "target",
            filter: SessionFilter {
                target: Some(target(5, 3)),
                ..list(1)
            },
        },
        Case {
            name: "state = live",
            filter: SessionFilter {
                status: Some(SessionStatus::Live),
                ..list(1)
            },
        },
        Case {
            name: "state = killed",
            filter: SessionFilter {
                status: Some(SessionStatus::Killed),
                ..list(1)
            },
        },
        Case {
            name: "protocol = rdp",
            filter: SessionFilter {
                protocol: Some("rdp".into()),
                ..list(1)
            },
        },
        Case {
            name: "last 7 days",
            filter: SessionFilter {
                since: Some(now - chrono::Duration::days(7)),
                ..list(1)
            },
        },
        Case {
            name: "person, last 30 days",
            filter: SessionFilter {
                user: Some(engineer(42)),
                since: Some(now - chrono::Duration::days(30)),
                ..list(1)
            },
        },
        Case {
            name: "vendor + state = ended, page 5",
            filter: SessionFilter {
                vendor: Some(vendor_of(7)),
                status: Some(SessionStatus::Ended),
                ..list(5)
            },
        },
        Case {
            name: "no filter, page 1000 (deep)",
            filter: list(1000),
        },
    ]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median milliseconds of `runs` calls of `f` (after one warm-up call).
async fn time<F, Fut>(runs: usize, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    f().await;
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f().await;
        v.push(ms(t.elapsed()));
    }
    median(v)
}

/// (count ms, page ms, matching) of each case, then the session page and
/// the audit page.
async fn measure(store: &Store, now: DateTime<Utc>, runs: usize, rows: &[Row]) -> Vec<Measured> {
    let mut out = Vec::new();
    for c in cases(now) {
        let f = &c.filter;
        let total = store.count_sessions(f).await.expect("count");
        let count = time(runs, || async move {
            store.count_sessions(f).await.expect("count");
        })
        .await;
        let page = time(runs, || async move {
            store.sessions(f).await.expect("page");
        })
        .await;
        out.push(Measured {
            name: c.name.to_string(),
            count,
            page,
            matching: Some(total),
        });
    }
    // A session's page: its row, its audit events, its hops.
    let one = rows[rows.len() / 3].id;
    let page = time(runs, || async move {
        store.session(one).await.expect("session");
        store
            .audit_query(&AuditFilter {
                session: Some(one),
                ..AuditFilter::default()
            })
            .await
            .expect("events");
        store
            .sessions(&SessionFilter {
                parent: Some(one),
                ..SessionFilter::default()
            })
            .await
            .expect("hops");
    })
    .await;
    out.push(Measured {
        name: "a session's page (row, its events, its hops)".into(),
        count: 0.0,
        page,
        matching: None,
    });
    for (name, filter) in [
        (
            "audit page: newest 200",
            AuditFilter {
                limit: Some(200),
                ..AuditFilter::default()
            },
        ),
        (
            "audit page: one person, newest 200",
            AuditFilter {
                user: Some(engineer(42)),
                limit: Some(200),
                ..AuditFilter::default()
            },
        ),
        (
            "audit page: kind = channel_blocked, newest 200",
            AuditFilter {
                kinds: vec![AuditKind::ChannelBlocked],
                limit: Some(200),
                ..AuditFilter::default()
            },
        ),
    ] {
        let f = &filter;
        let page = time(runs, || async move {
            store.audit_query(f).await.expect("audit");
        })
        .await;
        out.push(Measured {
            name: name.into(),
            count: 0.0,
            page,
            matching: None,
        });
    }
    out
}

struct Measured {
    name: String,
    count: f64,
    page: f64,
    matching: Option<u64>,
}

/// The indexes migration 0005 adds for the console (dropped to show what
/// they are for).
const CONSOLE_INDEXES: [&str; 8] = [
    "sessions_newest",
    "sessions_user",
    "sessions_vendor",
    "sessions_target",
    "sessions_state",
    "sessions_protocol",
    "sessions_parent",
    "audit_session",
];

async fn drop_console_indexes(store: &Store) {
    for ix in CONSOLE_INDEXES {
        sqlx::query(&format!("DROP INDEX IF EXISTS {ix}"))
            .execute(store.pool())
            .await
            .expect("drop index");
    }
    // What the schema had before 0005 for the start time.
    sqlx::query("CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started_at)")
        .execute(store.pool())
        .await
        .expect("index");
}

fn cell(v: f64) -> String {
    if v == 0.0 {
        "—".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

fn print_table(backend: &str, fill_s: f64, with: &[Measured], without: &[Measured]) {
    println!("### {backend} (filled in {fill_s:.1} s)\n");
    println!(
        "| query | matching | count (ms) | page (ms) | count + page (ms) | without 0005's indexes: count + page (ms) |"
    );
    println!("|---|---|---|---|---|---|");
    for (a, b) in with.iter().zip(without) {
        println!(
            "| {} | {} | {} | {} | **{}** | {} |",
            a.name,
            a.matching.map_or("".into(), |m| m.to_string()),
            cell(a.count),
            cell(a.page),
            cell(a.count + a.page),
            cell(b.count + b.page),
        );
    }
    println!();
}

async fn store_bench(store: &Store, backend: &str, rows: &[Row], now: DateTime<Utc>, runs: usize) {
    let fill_s = fill(store, rows).await;
    let with = measure(store, now, runs, rows).await;
    drop_console_indexes(store).await;
    let without = measure(store, now, runs, rows).await;
    print_table(backend, fill_s, &with, &without);
}

/// The pages over HTTPS from a real `serve` whose database holds the
/// sessions: the HTML pages and the API, signed in as an auditor.
fn http_bench(n: usize, runs: usize) {
    use fixture::console::ConsoleEnv;
    let env = ConsoleEnv::start("sekisho-console-bench-");
    let url = format!("sqlite://{}", env.dir().join("sekisho.db").display());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let now = Utc::now();
    let rows = generate(n, now - chrono::Duration::minutes(1));
    let fill_s = rt.block_on(async {
        let store = Store::open(&url, None)
            .await
            .expect("open the deployment's store");
        let s = fill(&store, &rows).await;
        store.close().await;
        s
    });
    let cert = reqwest::Certificate::from_pem(&env.cert_pem()).expect("certificate");
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(cert)
        .tls_built_in_root_certs(false)
        .cookie_store(true)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let user = fixture::console::AUDITORS[0];
    let r = client
        .post(env.url("/api/v1/login"))
        .json(&serde_json::json!({
            "user": user,
            "password": fixture::deployment::PASSWORD,
            "code": env.code(user),
        }))
        .send()
        .expect("login");
    assert!(r.status().is_success(), "login: {}", r.status());
    let one = &rows[rows.len() / 3];
    let pages: Vec<(String, String)> = vec![
        ("sessions list, first page".into(), "/sessions".into()),
        (
            "sessions list, person".into(),
            format!("/sessions?user={}", engineer(42)),
        ),
        (
            "sessions list, vendor + state".into(),
            format!("/sessions?vendor={}&state=ended", vendor_of(7)),
        ),
        (
            "sessions list, last 7 days".into(),
            "/sessions?from=7d".into(),
        ),
        (
            "sessions list, state = live".into(),
            "/sessions?state=live".into(),
        ),
        (
            "API: sessions, first page".into(),
            "/api/v1/sessions".into(),
        ),
        (
            "API: sessions, person".into(),
            format!("/api/v1/sessions?user={}", engineer(42)),
        ),
        (
            "a session's page (no archive)".into(),
            format!("/sessions/{}", one.id),
        ),
        ("audit page".into(), "/audit".into()),
    ];
    println!(
        "### Over HTTPS from `sekisho serve` (SQLite, {n} sessions + the fixture's one, filled in {fill_s:.1} s; HTTP/2, one signed-in auditor)\n"
    );
    println!("| page | median (ms) | max (ms) | bytes |");
    println!("|---|---|---|---|");
    for (name, path) in pages {
        let get = || {
            let r = client.get(env.url(&path)).send().expect("get");
            assert!(r.status().is_success(), "{path}: {}", r.status());
            r.bytes().expect("body").len()
        };
        let bytes = get();
        let mut v = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            get();
            v.push(ms(t.elapsed()));
        }
        let max = v.iter().copied().fold(0.0, f64::max);
        println!("| {name} | {} | {} | {bytes} |", cell(median(v)), cell(max));
    }
    println!();
}

fn main() {
    let n = env_num("SEKISHO_BENCH_SESSIONS", 100_000);
    let runs = env_num("SEKISHO_BENCH_RUNS", 21).max(1);
    let load_start = loadavg();
    let now = Utc::now();
    let rows = generate(n, now);
    println!(
        "## Console queries with {n} sessions (about {} audit events), median of {runs} runs\n",
        n * 4 + n / 10
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if env_num("SEKISHO_BENCH_SQLITE", 1) == 1 {
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            let store = Store::connect(&url).await.expect("sqlite store");
            store_bench(&store, "SQLite", &rows, now, runs).await;
            store.close().await;
        });
    }
    if env_num("SEKISHO_BENCH_POSTGRES", 1) == 1 {
        if std::path::Path::new("/usr/lib/postgresql").exists() {
            let pg = fixture::postgres::Postgres::start();
            let url = pg.create_database("console_bench");
            rt.block_on(async {
                let store = Store::connect(&url).await.expect("postgres store");
                store_bench(&store, "PostgreSQL", &rows, now, runs).await;
                store.close().await;
            });
        } else {
            println!("(PostgreSQL not installed: skipped)\n");
        }
    }
    if env_num("SEKISHO_BENCH_HTTP", 1) == 1 {
        http_bench(n, runs);
    }
    println!("load average: {load_start} at start, {} at end", loadavg());
}
