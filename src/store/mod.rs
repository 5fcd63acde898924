//! Persistent state: people, vendors, keys, tickets, secrets, the audit log,
//! sessions and work requests.
//!
//! One `Store` serves both backends through sqlx's `Any` driver: SQLite (the
//! embedded default, one file next to `sekisho.toml`) and PostgreSQL (several
//! nodes sharing one database), chosen by the database URL alone. The `Any`
//! driver carries no chrono or uuid types, so times are stored as BIGINT unix
//! microseconds (UTC), ids as TEXT and flags as 0/1 BIGINTs, converted here at
//! the edge. Both migration sets keep the same table shapes so every query is
//! written once, with `$N` placeholders (which SQLite accepts too).

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Once;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};
use uuid::Uuid;

pub mod audit;
pub mod documents;
pub mod keys;
pub mod reconnect_cookies;
pub mod requests;
pub mod secrets;
pub mod sessions;
pub mod signin_windows;
pub mod stops;
pub mod tickets;
pub mod users;
pub mod vendors;
pub mod work_reports;

pub use audit::{AuditEvent, AuditFilter, AuditKind, AuditRecord};
pub use documents::{DocumentFilter, DocumentKind, DocumentRecord, NewDocument};
pub use keys::KeyRecord;
pub use reconnect_cookies::{ReconnectCookieRow, SpentCookie};
pub use requests::{NewWorkRequest, WorkRequest, WorkRequestFilter};
pub use secrets::{SecretName, SecretRow};
pub use sessions::{
    EndKind, KillRequest, NewSession, SessionEnd, SessionFilter, SessionRecord, SessionStatus,
};
pub use stops::StopRecord;
pub use tickets::TicketRow;
pub use users::{NewUserRow, Role, UserRecord, UserSummary};
pub use vendors::VendorRecord;
pub use work_reports::{WorkReportRecord, WorkResult};

/// The database refused a row because a unique key already exists.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Errors of the store, worded for the person at the command line.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?} (use sqlite://FILE or postgres://…)")]
    UnsupportedUrl(String),
    // The underlying errors are part of the message, not chained as a
    // `source`, so `anyhow`'s "a: b" rendering does not print them twice.
    #[error("cannot create the database file {path}: {error}")]
    CreateFile { path: String, error: std::io::Error },
    #[error("cannot open the database: {0}")]
    Connect(sqlx::Error),
    #[error("a database password is given, but the database is not PostgreSQL")]
    PasswordNotUsed,
    #[error("no database at {path}: run `sekisho init`")]
    Missing { path: String },
    /// SQLite says the file is not a database or is damaged.
    #[error(
        "the database {path} is damaged or not a sekisho database ({error}); restore it from a backup"
    )]
    Damaged { path: String, error: String },
    #[error("cannot update the database schema: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("no user {0}")]
    NoUser(String),
    #[error("vendor {0} already exists")]
    VendorExists(String),
    #[error("no vendor {0}")]
    NoVendor(String),
    #[error("vendor {vendor} cannot be a subcontractor of {parent}: that would make a cycle")]
    VendorCycle { vendor: String, parent: String },
    #[error("user {user} already has key {fingerprint}")]
    KeyExists { user: String, fingerprint: String },
    #[error("user {user} has no key {fingerprint}")]
    NoKey { user: String, fingerprint: String },
    #[error("no secret {0}")]
    NoSecret(String),
    #[error("session {0} already exists")]
    SessionExists(Uuid),
    #[error("no session {0}")]
    NoSession(Uuid),
    #[error("session {0} is not live")]
    SessionNotLive(Uuid),
    #[error("no work request {0}")]
    NoRequest(String),
    /// Someone else moved the request first; read it again.
    #[error(
        "work request {number} rev {revision} was changed by someone else meanwhile; look at it again"
    )]
    RequestChanged { number: String, revision: u32 },
    /// A signed-off work report is final.
    #[error("the work report of {0} is signed off (検収済) and can no longer change")]
    ReportSignedOff(String),
    #[error("no document {0}")]
    NoDocument(String),
    /// A row holds something this version cannot read (edited by hand, or newer).
    #[error("unreadable {what} in the database: {value:?}")]
    Corrupt { what: &'static str, value: String },
    #[error("no emergency stop {0}")]
    NoStop(i64),
    #[error("emergency stop {0} was already lifted")]
    StopLifted(i64),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}

/// Which database the URL selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database handle; cheap to clone (a pool inside).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens the database named by `url`, creating a SQLite file if missing,
    /// and brings its schema up to date. Only `sekisho init` (and tests)
    /// create a database; everything else uses [`Store::open`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, None, true).await
    }

    /// As [`Store::connect`], with the PostgreSQL password given apart from
    /// the URL (`sekisho init`).
    pub async fn create(url: &str, password: Option<&str>) -> Result<Store, StoreError> {
        Store::connect_with(url, password, true).await
    }

    /// An existing database: a SQLite file that does not exist is an error
    /// ("run `sekisho init`") instead of a new, empty database. `password`
    /// is the PostgreSQL password when it is not in the URL.
    pub async fn open(url: &str, password: Option<&str>) -> Result<Store, StoreError> {
        Store::connect_with(url, password, false).await
    }

    async fn connect_with(
        url: &str,
        password: Option<&str>,
        create: bool,
    ) -> Result<Store, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let (backend, url) = if url.starts_with("sqlite:") {
            match sqlite_file(url) {
                Some(path) if create => create_private_sqlite_file(path)?,
                Some(path) if !path.exists() => {
                    return Err(StoreError::Missing {
                        path: path.display().to_string(),
                    });
                }
                _ => {}
            }
            (Backend::Sqlite, sqlite_url_with_mode(url, create))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        let mut options = AnyConnectOptions::from_str(&url).map_err(StoreError::Connect)?;
        if let Some(password) = password {
            if backend != Backend::Postgres {
                return Err(StoreError::PasswordNotUsed);
            }
            // Set on the parsed URL, which encodes it; never in a string
            // that could end up in a message.
            options
                .database_url
                .set_password(Some(password))
                .map_err(|()| StoreError::PasswordNotUsed)?;
        }
        if backend == Backend::Sqlite {
            probe_sqlite(&options, &url).await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        set_sqlite_pragmas(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for modules that need a query this store does not offer.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection (tests and orderly shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// WAL lets `serve` keep writing while CLI processes read and write the same
/// file; sqlx already sets a 5 s busy timeout and turns foreign keys on.
async fn set_sqlite_pragmas(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    conn.execute("PRAGMA journal_mode = WAL").await?;
    conn.execute("PRAGMA synchronous = NORMAL").await?;
    Ok(())
}

/// Opens one connection before the pool does. The pool retries a failing
/// new connection until its 30 s acquire timeout and then reports only the
/// timeout; a damaged file or one that is not a database is reported here at
/// once, with SQLite's own words.
async fn probe_sqlite(options: &AnyConnectOptions, url: &str) -> Result<(), StoreError> {
    use sqlx::ConnectOptions as _;
    use sqlx::Connection as _;
    let path = || sqlite_file(url).map_or_else(|| url.to_string(), |p| p.display().to_string());
    let mut conn = options
        .connect()
        .await
        .map_err(|e| damaged_or(e, path(), StoreError::Connect))?;
    let checked = async {
        set_sqlite_pragmas(&mut conn).await?;
        // Reading the schema touches the first pages of the file.
        conn.execute("SELECT count(*) FROM sqlite_master").await?;
        Ok::<(), sqlx::Error>(())
    }
    .await;
    let _ = conn.close().await;
    checked.map_err(|e| damaged_or(e, path(), StoreError::Database))
}

/// SQLITE_CORRUPT (11) and SQLITE_NOTADB (26) as [`StoreError::Damaged`].
fn damaged_or(e: sqlx::Error, path: String, other: fn(sqlx::Error) -> StoreError) -> StoreError {
    // Extended result codes keep the primary code in their low byte.
    let damaged = matches!(&e, sqlx::Error::Database(d)
        if d.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 11 | 26)));
    if damaged {
        let error = match &e {
            sqlx::Error::Database(d) => d.message().to_string(),
            _ => e.to_string(),
        };
        StoreError::Damaged { path, error }
    } else {
        other(e)
    }
}

/// The file of a `sqlite:` URL; `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<&std::path::Path> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return None;
    }
    Some(std::path::Path::new(path))
}

/// The database holds password hashes and TOTP secrets: a new SQLite file is
/// created readable by its owner only (SQLite gives its -wal and -shm files
/// the same mode).
fn create_private_sqlite_file(path: &std::path::Path) -> Result<(), StoreError> {
    if path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        // Another process created it in between: fine.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(StoreError::CreateFile {
            path: path.display().to_string(),
            error,
        }),
    }
}

/// Adds `mode=rwc` (create a missing file) or `mode=rw` (never create one),
/// unless the URL names a mode itself.
fn sqlite_url_with_mode(url: &str, create: bool) -> String {
    let mode = if create { "rwc" } else { "rw" };
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode={mode}")
    } else {
        format!("{url}?mode={mode}")
    }
}

/// A URL with any password removed, for error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    }
}

// ---- conversions at the edge -------------------------------------------

/// Unix microseconds, the stored form of every time.
pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(us: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_micros(us)
        .single()
        .ok_or(StoreError::Corrupt {
            what: "time",
            value: us.to_string(),
        })
}

pub(crate) fn opt_from_micros(us: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    us.map(from_micros).transpose()
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|_| StoreError::Corrupt {
        what: "id",
        value: s.to_string(),
    })
}

pub(crate) fn parse_ip(s: &str) -> Result<IpAddr, StoreError> {
    s.parse().map_err(|_| StoreError::Corrupt {
        what: "address",
        value: s.to_string(),
    })
}

/// A bind value for queries assembled from optional filters.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// Builds `WHERE a = $1 AND b >= $2 …` from optional conditions, numbering
/// placeholders so the same text runs on SQLite and PostgreSQL.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    clauses: Vec<String>,
    binds: Vec<Bind>,
}

impl Conditions {
    /// `column_op` is like `"user_name ="`; the placeholder is appended.
    pub(crate) fn push(&mut self, column_op: &str, value: Bind) {
        self.binds.push(value);
        self.clauses
            .push(format!("{column_op} ${}", self.binds.len()));
    }

    /// Adds a bind value and returns its placeholder (`$N`), for clauses
    /// such as `IN (…)` built with `push_raw`.
    pub(crate) fn placeholder(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    /// A clause around its placeholder: `expr` gets `$N` and returns the clause.
    pub(crate) fn push_expr(&mut self, expr: impl FnOnce(&str) -> String, value: Bind) {
        self.binds.push(value);
        let placeholder = format!("${}", self.binds.len());
        self.clauses.push(expr(&placeholder));
    }

    pub(crate) fn push_raw(&mut self, clause: &str) {
        self.clauses.push(clause.to_string());
    }

    pub(crate) fn where_clause(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    pub(crate) fn bind_all<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for b in &self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s.as_str()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_create_mode() {
        assert_eq!(
            sqlite_url_with_mode("sqlite:///a/b.db", true),
            "sqlite:///a/b.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url_with_mode("sqlite:///a/b.db", false),
            "sqlite:///a/b.db?mode=rw"
        );
        assert_eq!(
            sqlite_url_with_mode("sqlite:///a/b.db?cache=shared", true),
            "sqlite:///a/b.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url_with_mode("sqlite:///a.db?mode=ro", true),
            "sqlite:///a.db?mode=ro"
        );
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("mysql://u:pw@h/db"), "mysql://…@h/db");
        assert!(!redact_url("x://u:secret@h").contains("secret"));
    }

    #[test]
    fn micros_round_trip() {
        let t = Utc.with_ymd_and_hms(2026, 4, 1, 8, 30, 0).single().unwrap();
        assert_eq!(from_micros(to_micros(t)).unwrap(), t);
    }
}
