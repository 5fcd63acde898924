//! `sekisho.toml`: listeners, storage paths, database URL, named source
//! networks, time zone, and the limits that sign-in and sessions obey.
//!
//! Relative paths are resolved against the directory holding the config file,
//! so a deployment directory can be moved as a whole.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use ipnet::IpNet;
use serde::Deserialize;

/// Errors reading or validating `sekisho.toml`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// The file name `init` writes and `serve` looks for by default.
pub const DEFAULT_FILE: &str = "sekisho.toml";

/// Parsed and validated configuration, with every path made absolute.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub file: PathBuf,
    pub time_zone: Tz,
    pub paths: Paths,
    pub database_url: String,
    /// `[database] password_file`: the PostgreSQL password, kept out of
    /// sekisho.toml (see [`Config::database_password`]).
    pub database_password_file: Option<PathBuf>,
    pub ssh: SshListener,
    pub rdp: RdpListener,
    pub auth: AuthLimits,
    pub sessions: SessionLimits,
    /// Pre-authentication limits of both listeners (`[limits]`).
    pub admission: crate::admission::AdmissionLimits,
    pub log_format: LogFormat,
    pub networks: Vec<Network>,
    pub web: WebListener,
    /// `[reports]`: what the work and monthly reports need.
    pub reports: Reports,
}

/// `[reports]` in sekisho.toml.
#[derive(Debug, Clone)]
pub struct Reports {
    /// The Japanese TrueType/OpenType font PDFs are set in (taken from a
    /// Debian font package; never shipped with sekisho).
    pub font: PathBuf,
    /// The normal working hours: sessions starting outside them are counted
    /// in the monthly report.
    pub normal_hours: crate::policy::hours::Hours,
}

/// The font `fonts-ipaexfont-gothic` installs.
pub const DEFAULT_REPORT_FONT: &str = "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf";

#[derive(Debug, Clone)]
pub struct Paths {
    pub policies: PathBuf,
    pub recordings: PathBuf,
    pub keys: PathBuf,
}

impl Paths {
    pub fn ssh_host_key(&self) -> PathBuf {
        self.keys.join("ssh_host_ed25519_key")
    }
    pub fn tls_cert(&self) -> PathBuf {
        self.keys.join("rdp_tls_cert.pem")
    }
    pub fn tls_key(&self) -> PathBuf {
        self.keys.join("rdp_tls_key.pem")
    }
    pub fn archive_signing_key(&self) -> PathBuf {
        self.keys.join("archive_signing_ed25519.pem")
    }
    pub fn master_key(&self) -> PathBuf {
        self.keys.join("secret_master.key")
    }
}

#[derive(Debug, Clone)]
pub struct SshListener {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// How long a client may take from connecting to signing in
    /// (OpenSSH's `LoginGraceTime`).
    pub login_grace: Duration,
    /// The ciphers offered to clients (`[ssh] ciphers`, OpenSSH's
    /// `Ciphers`; default: russh's list).
    pub ciphers: Vec<russh::cipher::Name>,
}

#[derive(Debug, Clone)]
pub struct RdpListener {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// How often the target is asked to redraw the whole desktop, so a
    /// replayer can seek to it (a keyframe); zero turns keyframes off.
    pub keyframe_interval: Duration,
    /// How long a client may take from connecting to its sign-in (the
    /// Client Info PDU, or CredSSP with NLA).
    pub login_grace: Duration,
    /// The name clients connect to: subject (CN) and DNS name of the
    /// certificate `init` and `cert renew` make (`[rdp] host_name`; default:
    /// this machine's host name).
    pub host_name: String,
    /// PEM certificate chain of the front (`[rdp] cert`; default
    /// `keys/rdp_tls_cert.pem`, made by `init`). Point it and `key` at a
    /// certificate from the municipality's own CA to use that instead.
    pub cert: PathBuf,
    /// PEM private key of `cert` (`[rdp] key`).
    pub key: PathBuf,
    /// The key type `init` and `cert renew` generate (`[rdp] cert_key`).
    pub cert_key: CertKeyType,
    /// When the front offers NLA (`[rdp] nla`).
    pub nla: NlaOffer,
    /// How long after a dropped connection the client may come back with
    /// sekisho's auto-reconnect cookie (`[rdp] reconnect_grace`; 0 = no
    /// cookies are issued).
    pub reconnect_grace: Duration,
    /// The font sekisho draws its own RDP screens with (`[rdp] screen_font`).
    pub screen_font: PathBuf,
    /// How long a refusal screen shows before the disconnect (`[rdp]
    /// refusal_screen`; 0 = no screen, the error code only).
    pub refusal_screen: Duration,
}

/// IPAexGothic from Debian's `fonts-ipaexfont-gothic`.
pub const DEFAULT_SCREEN_FONT: &str = "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf";

/// Key type of the RDP front certificate sekisho generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKeyType {
    /// RSA 3072 (the default: every RDP client, old Windows ones too).
    Rsa3072,
    /// ECDSA P-256 (smaller; some older or independent clients fail on it).
    EcdsaP256,
}

impl CertKeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            CertKeyType::Rsa3072 => "rsa-3072",
            CertKeyType::EcdsaP256 => "ecdsa-p256",
        }
    }
}

/// When the RDP front offers NLA (CredSSP with a one-time ticket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NlaOffer {
    /// Only to a client whose connection request names (in its routing
    /// cookie) a person@target that has a live one-time RDP ticket; every
    /// other client is offered TLS and signs in with password + code.
    Tickets,
    /// Always (clients without a ticket fail at CredSSP).
    Always,
    /// Never: TLS only.
    Never,
}

/// This machine's host name, for the certificate subject when
/// `[rdp] host_name` is not set.
fn machine_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sekisho".to_owned())
}

/// The web console (`[web]`): HTTPS for auditors and admins.
#[derive(Debug, Clone)]
pub struct WebListener {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// PEM certificate chain; default: the one `init` made for RDP.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// A console sign-in with no request for this long is ended.
    pub idle_timeout: Duration,
    /// A console connection with no bytes either way for this long is
    /// closed (a browser opens a new one): an open connection holds a
    /// descriptor whether or not anyone is signed in.
    pub connection_idle: Duration,
}

#[derive(Debug, Clone)]
pub struct AuthLimits {
    /// After a second factor is accepted, further connections of the same
    /// person from the same address need only the first factor for this long.
    /// Zero turns the window off.
    pub signin_window: Duration,
    /// Consecutive failures that lock an account.
    pub max_failures: u32,
    /// How long a lockout lasts; zero means until an admin enables the user.
    pub lockout: Duration,
    /// Lifetime of a one-time ticket.
    pub ticket_lifetime: Duration,
    /// Delay added to every failed sign-in, to slow guessing.
    pub failure_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// A session with no input for this long is ended; zero disables.
    pub idle_timeout: Duration,
    /// Warn the person this long before the grant's hard end.
    pub warn_before_end: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// A named source network. Policies refer to networks by name; a My Number
/// system is reachable only from networks marked `closed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub cidrs: Vec<IpNet>,
    /// A closed network (IP-VPN / closed-area terminals), not internet-facing.
    pub closed: bool,
}

impl Network {
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical_ip(addr);
        self.cidrs.iter().any(|c| c.contains(&addr))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are the IPv4 address they
/// carry; comparing them as IPv6 would let a client dodge an IPv4 rule.
pub fn canonical_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

// ---- file format -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    time_zone: Option<String>,
    #[serde(default)]
    paths: RawPaths,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    ssh: RawListener,
    #[serde(default)]
    rdp: RawRdp,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    sessions: RawSessions,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    log: RawLog,
    #[serde(default, rename = "network")]
    networks: Vec<RawNetwork>,
    #[serde(default)]
    web: RawWeb,
    #[serde(default)]
    reports: RawReports,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReports {
    font: Option<PathBuf>,
    normal_hours: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    enabled: Option<bool>,
    listen: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    idle_timeout: Option<String>,
    connection_idle: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    policies: Option<PathBuf>,
    recordings: Option<PathBuf>,
    keys: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
    password_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawListener {
    enabled: Option<bool>,
    listen: Option<String>,
    login_grace: Option<String>,
    ciphers: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRdp {
    enabled: Option<bool>,
    listen: Option<String>,
    keyframe_interval: Option<String>,
    login_grace: Option<String>,
    host_name: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    cert_key: Option<String>,
    nla: Option<String>,
    reconnect_grace: Option<String>,
    screen_font: Option<PathBuf>,
    refusal_screen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_startups: Option<String>,
    max_startups_per_source: Option<u32>,
    signin_attempts_per_minute: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    signin_window: Option<String>,
    max_failures: Option<u32>,
    lockout: Option<String>,
    ticket_lifetime: Option<String>,
    failure_delay: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSessions {
    idle_timeout: Option<String>,
    warn_before_end: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    name: String,
    cidrs: Vec<String>,
    #[serde(default)]
    closed: bool,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            path: file.to_path_buf(),
            source,
        })?;
        let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        Config::parse(&text, &file)
    }

    /// Parses config text as if it were read from `file` (used for relative paths).
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: file.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            path: file.to_path_buf(),
            field: field.to_string(),
            message,
        };
        let dur = |field: &str, v: Option<String>, default: &str| {
            parse_duration(v.as_deref().unwrap_or(default)).map_err(|m| invalid(field, m))
        };
        let addr = |field: &str, v: Option<String>, default: &str| {
            let s = v.unwrap_or_else(|| default.to_string());
            s.parse::<SocketAddr>()
                .map_err(|e| invalid(field, format!("{s:?} is not an address:port ({e})")))
        };

        let tz_name = raw.time_zone.unwrap_or_else(|| "Asia/Tokyo".into());
        let time_zone: Tz = tz_name
            .parse()
            .map_err(|_| invalid("time_zone", format!("unknown time zone {tz_name:?}")))?;

        let resolve = |p: Option<PathBuf>, default: &str| {
            let p = p.unwrap_or_else(|| PathBuf::from(default));
            if p.is_absolute() { p } else { base.join(p) }
        };
        let paths = Paths {
            policies: resolve(raw.paths.policies, "policies"),
            recordings: resolve(raw.paths.recordings, "recordings"),
            keys: resolve(raw.paths.keys, "keys"),
        };

        let web_idle = dur("web.idle_timeout", raw.web.idle_timeout, "15m")?;
        if web_idle.is_zero() {
            return Err(invalid(
                "web.idle_timeout",
                "a console sign-in must time out: give a duration such as 15m".into(),
            ));
        }
        let connection_idle = dur("web.connection_idle", raw.web.connection_idle, "2m")?;
        if connection_idle.is_zero() {
            return Err(invalid(
                "web.connection_idle",
                "an idle console connection must be closed: give a duration such as 2m".into(),
            ));
        }
        if raw.web.cert.is_some() != raw.web.key.is_some() {
            return Err(invalid(
                "web",
                "give both `cert` and `key`, or neither (then init's certificate is used)".into(),
            ));
        }
        if raw.rdp.cert.is_some() != raw.rdp.key.is_some() {
            return Err(invalid(
                "rdp",
                "give both `cert` and `key`, or neither (then init's certificate is used)".into(),
            ));
        }
        let rdp_cert = match raw.rdp.cert {
            Some(p) => resolve(Some(p), ""),
            None => paths.tls_cert(),
        };
        let rdp_key = match raw.rdp.key {
            Some(p) => resolve(Some(p), ""),
            None => paths.tls_key(),
        };
        let cert_key = match raw.rdp.cert_key.as_deref().unwrap_or("rsa-3072") {
            "rsa-3072" => CertKeyType::Rsa3072,
            "ecdsa-p256" => CertKeyType::EcdsaP256,
            other => {
                return Err(invalid(
                    "rdp.cert_key",
                    format!("{other:?}: use \"rsa-3072\" or \"ecdsa-p256\""),
                ));
            }
        };
        let nla = match raw.rdp.nla.as_deref().unwrap_or("tickets") {
            "tickets" => NlaOffer::Tickets,
            "always" => NlaOffer::Always,
            "never" => NlaOffer::Never,
            other => {
                return Err(invalid(
                    "rdp.nla",
                    format!("{other:?}: use \"tickets\", \"always\" or \"never\""),
                ));
            }
        };
        let host_name = match raw.rdp.host_name {
            Some(h) => {
                let h = h.trim().to_owned();
                if h.is_empty()
                    || !h
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                {
                    return Err(invalid(
                        "rdp.host_name",
                        format!("{h:?} is not a host name (letters, digits, '-' and '.')"),
                    ));
                }
                h
            }
            None => machine_host_name(),
        };
        let web = WebListener {
            // Off unless asked for: a deployment from before the console
            // does not open a new port on upgrade (`init` writes it on).
            enabled: raw.web.enabled.unwrap_or(false),
            listen: addr("web.listen", raw.web.listen, "127.0.0.1:8443")?,
            cert: match raw.web.cert {
                Some(p) => resolve(Some(p), ""),
                None => rdp_cert.clone(),
            },
            key: match raw.web.key {
                Some(p) => resolve(Some(p), ""),
                None => rdp_key.clone(),
            },
            idle_timeout: web_idle,
            connection_idle,
        };

        let database_url = raw
            .database
            .url
            .unwrap_or_else(|| "sqlite://sekisho.db".into());
        let database_url = resolve_sqlite_url(&database_url, &base);
        let database_password_file = raw
            .database
            .password_file
            .map(|p| if p.is_absolute() { p } else { base.join(p) });

        let mut networks: Vec<Network> = Vec::new();
        for (i, n) in raw.networks.into_iter().enumerate() {
            let field = format!("network[{i}]");
            if n.name.trim().is_empty() {
                return Err(invalid(&field, "a network needs a name".into()));
            }
            if networks.iter().any(|o| o.name == n.name) {
                return Err(invalid(
                    &field,
                    format!("network {:?} is defined twice", n.name),
                ));
            }
            if n.cidrs.is_empty() {
                return Err(invalid(
                    &field,
                    format!("network {:?} lists no cidrs", n.name),
                ));
            }
            let mut cidrs = Vec::new();
            for c in &n.cidrs {
                cidrs.push(parse_cidr(c).map_err(|m| invalid(&field, m))?);
            }
            networks.push(Network {
                name: n.name,
                cidrs,
                closed: n.closed,
            });
        }

        let log_format = match raw.log.format.as_deref().unwrap_or("human") {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("{other:?} is neither \"human\" nor \"json\""),
                ));
            }
        };

        let defaults = crate::admission::AdmissionLimits::default();
        let admission = crate::admission::AdmissionLimits {
            max_startups: match raw.limits.max_startups {
                Some(s) => crate::admission::Startups::parse(&s)
                    .map_err(|m| invalid("limits.max_startups", m))?,
                None => defaults.max_startups,
            },
            max_startups_per_source: raw
                .limits
                .max_startups_per_source
                .unwrap_or(defaults.max_startups_per_source),
            signin_attempts_per_minute: raw
                .limits
                .signin_attempts_per_minute
                .unwrap_or(defaults.signin_attempts_per_minute),
        };
        let grace = |field: &str, v: Option<String>, default: &str| {
            let d = dur(field, v, default)?;
            if d.is_zero() {
                return Err(invalid(
                    field,
                    "the sign-in grace time cannot be zero".into(),
                ));
            }
            Ok(d)
        };

        let reports = Reports {
            font: resolve(raw.reports.font, DEFAULT_REPORT_FONT),
            normal_hours: crate::policy::hours::Hours::parse(
                raw.reports
                    .normal_hours
                    .as_deref()
                    .unwrap_or("Mon-Fri 08:30-17:15"),
            )
            .map_err(|m| invalid("reports.normal_hours", m))?,
        };

        Ok(Config {
            reports,
            file: file.to_path_buf(),
            time_zone,
            paths,
            database_url,
            database_password_file,
            ssh: SshListener {
                enabled: raw.ssh.enabled.unwrap_or(true),
                listen: addr("ssh.listen", raw.ssh.listen, "127.0.0.1:2222")?,
                login_grace: grace("ssh.login_grace", raw.ssh.login_grace, "2m")?,
                ciphers: crate::ssh::ciphers::front(raw.ssh.ciphers.as_deref())
                    .map_err(|m| invalid("ssh.ciphers", m))?,
            },
            rdp: RdpListener {
                enabled: raw.rdp.enabled.unwrap_or(true),
                listen: addr("rdp.listen", raw.rdp.listen, "127.0.0.1:3389")?,
                keyframe_interval: dur("rdp.keyframe_interval", raw.rdp.keyframe_interval, "30s")?,
                login_grace: grace("rdp.login_grace", raw.rdp.login_grace, "30s")?,
                host_name,
                cert: rdp_cert,
                key: rdp_key,
                cert_key,
                nla,
                reconnect_grace: dur("rdp.reconnect_grace", raw.rdp.reconnect_grace, "2m")?,
                screen_font: resolve(raw.rdp.screen_font, DEFAULT_SCREEN_FONT),
                refusal_screen: dur("rdp.refusal_screen", raw.rdp.refusal_screen, "5s")?,
            },
            auth: AuthLimits {
                signin_window: dur("auth.signin_window", raw.auth.signin_window, "10m")?,
                max_failures: raw.auth.max_failures.unwrap_or(5),
                lockout: dur("auth.lockout", raw.auth.lockout, "15m")?,
                ticket_lifetime: dur("auth.ticket_lifetime", raw.auth.ticket_lifetime, "5m")?,
                failure_delay: dur("auth.failure_delay", raw.auth.failure_delay, "1s")?,
            },
            sessions: SessionLimits {
                idle_timeout: dur("sessions.idle_timeout", raw.sessions.idle_timeout, "30m")?,
                warn_before_end: dur(
                    "sessions.warn_before_end",
                    raw.sessions.warn_before_end,
                    "5m",
                )?,
            },
            admission,
            log_format,
            networks,
            web,
        })
    }

    /// The named networks containing `addr`, in file order.
    pub fn networks_of(&self, addr: IpAddr) -> impl Iterator<Item = &Network> {
        self.networks.iter().filter(move |n| n.contains(addr))
    }
}

/// The environment variable that may hold the database password.
pub const DATABASE_PASSWORD_ENV: &str = "SEKISHO_DATABASE_PASSWORD";

impl Config {
    /// The database password when it is kept out of the URL: read from
    /// `[database] password_file` (its first line) or taken from
    /// `SEKISHO_DATABASE_PASSWORD`. `None` when neither is given (a URL may
    /// still carry one). Both at once, or either with a password in the URL,
    /// is an error: which one counts would be a guess.
    pub fn database_password(&self) -> Result<Option<zeroize::Zeroizing<String>>, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: self.file.clone(),
            field: "database".into(),
            message,
        };
        let from_env = std::env::var(DATABASE_PASSWORD_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .map(zeroize::Zeroizing::new);
        let password = match (&self.database_password_file, from_env) {
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "both password_file and {DATABASE_PASSWORD_ENV} are set; use one"
                )));
            }
            (None, env) => env,
            (Some(file), None) => {
                let text =
                    zeroize::Zeroizing::new(std::fs::read_to_string(file).map_err(|source| {
                        ConfigError::Read {
                            path: file.clone(),
                            source,
                        }
                    })?);
                let line = text.lines().next().unwrap_or_default();
                if line.is_empty() {
                    return Err(invalid(format!(
                        "the password file {} is empty",
                        file.display()
                    )));
                }
                Some(zeroize::Zeroizing::new(line.to_string()))
            }
        };
        if password.is_some() && url_has_password(&self.database_url) {
            return Err(invalid(
                "the url already holds a password; keep it in password_file or the environment only"
                    .into(),
            ));
        }
        Ok(password)
    }
}

/// `scheme://user:password@host…`
fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// `sqlite://relative.db` is relative to the config directory; other URLs
/// (absolute SQLite paths, `postgres://…`) are kept as written.
fn resolve_sqlite_url(url: &str, base: &Path) -> String {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if !path.is_empty() && !path.starts_with('/') && path != ":memory:" {
            let abs = base.join(path);
            return match query {
                Some(q) => format!("sqlite://{}?{q}", abs.display()),
                None => format!("sqlite://{}", abs.display()),
            };
        }
    }
    url.to_string()
}

/// Parses `10.0.0.0/8`, or a bare address as a single-host network.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not a network (like 10.20.0.0/16) or an address"))
}

/// Parses durations written as `250ms`, `90s`, `15m`, `2h`, `1h30m`, `1d`,
/// or `0`. The one duration syntax of sekisho's files and command line.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let bad = || format!("{s:?} is not a duration (use e.g. 250ms, 90s, 15m, 2h, 1h30m, 1d)");
    let mut total_ms: u64 = 0;
    let mut num = String::new();
    let mut saw_unit = false;
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit_ms: u64 = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return Err(bad()),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?}: a number must come before each unit"))?;
        total_ms = n
            .checked_mul(unit_ms)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| format!("{s:?} is too long"))?;
        num.clear();
        saw_unit = true;
    }
    if !num.is_empty() || !saw_unit {
        return Err(format!(
            "{s:?} needs a unit after each number (ms, s, m, h or d)"
        ));
    }
    Ok(Duration::from_millis(total_ms))
}

/// Reads a point in time the way people type one; local forms are in the
/// configured time zone.
pub fn parse_when(s: &str, tz: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    let local = |n: NaiveDateTime| {
        tz.from_local_datetime(&n)
            .earliest()
            .map(|d| d.with_timezone(&Utc))
            .ok_or_else(|| format!("{t:?} does not exist in time zone {tz}"))
    };
    for fmt in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return local(n);
        }
    }
    if let Ok(d) = t.parse::<NaiveDate>() {
        return local(d.and_time(chrono::NaiveTime::MIN));
    }
    if let Ok(ago) = parse_duration(t) {
        let ago = chrono::Duration::from_std(ago).map_err(|_| format!("{t:?} is too long ago"))?;
        return now
            .checked_sub_signed(ago)
            .ok_or_else(|| format!("{t:?} is too long ago"));
    }
    Err(format!(
        "{t:?} is not a time: use a date (2026-04-01), a time (2026-04-01 08:30, or RFC 3339), or a duration (2h)"
    ))
}

/// Formats a duration the way `parse_duration` reads it, to the
/// millisecond (its resolution): what it prints reads back as the same
/// duration. A part below a millisecond is dropped.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0".into();
    }
    let mut out = String::new();
    for (unit, len) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= len {
            out.push_str(&format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5ms3").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    // Found by the `config` fuzz target (fuzz/crashes/config-duration-subsecond):
    // "30h301ms" was printed as "1d6h", losing the 301 ms.
    #[test]
    fn a_formatted_duration_reads_back_with_its_milliseconds() {
        let crash = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/crashes/config-duration-subsecond"
        ))
        .unwrap();
        let d = parse_duration(&crash).unwrap();
        assert_eq!(d, Duration::from_millis(30 * 3_600_000 + 301));
        assert_eq!(format_duration(d), "1d6h301ms");
        for text in ["1s500ms", "1d1ms", "59m59s999ms", "0", "1ms"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        // Below the resolution: dropped, never rounded up.
        assert_eq!(format_duration(Duration::from_micros(1_999)), "1ms");
        assert_eq!(format_duration(Duration::from_micros(999)), "0");
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = Config::parse("", Path::new("/srv/sekisho/sekisho.toml")).unwrap();
        assert_eq!(c.time_zone, chrono_tz::Asia::Tokyo);
        assert_eq!(c.paths.policies, PathBuf::from("/srv/sekisho/policies"));
        assert_eq!(c.database_url, "sqlite:///srv/sekisho/sekisho.db");
        assert_eq!(c.ssh.listen, "127.0.0.1:2222".parse().unwrap());
        assert_eq!(c.auth.signin_window, Duration::from_secs(600));
        assert_eq!(c.rdp.keyframe_interval, Duration::from_secs(30));
    }

    #[test]
    fn pre_authentication_limits() {
        let c = Config::parse("", Path::new("/x/s.toml")).unwrap();
        assert_eq!(c.admission, crate::admission::AdmissionLimits::default());
        assert_eq!(c.admission.max_startups.to_string(), "10:30:100");
        assert_eq!(c.ssh.login_grace, Duration::from_secs(120));
        assert_eq!(c.rdp.login_grace, Duration::from_secs(30));
        let text = "[limits]\nmax_startups = \"5:50:20\"\nmax_startups_per_source = 3\n\
                    signin_attempts_per_minute = 12\n[ssh]\nlogin_grace = \"45s\"\n\
                    [rdp]\nlogin_grace = \"1m\"";
        let c = Config::parse(text, Path::new("/x/s.toml")).unwrap();
        assert_eq!(c.admission.max_startups.to_string(), "5:50:20");
        assert_eq!(c.admission.max_startups_per_source, 3);
        assert_eq!(c.admission.signin_attempts_per_minute, 12);
        assert_eq!(c.ssh.login_grace, Duration::from_secs(45));
        assert_eq!(c.rdp.login_grace, Duration::from_secs(60));
        for (bad, field) in [
            ("[limits]\nmax_startups = \"30:10\"", "limits.max_startups"),
            (
                "[limits]\nmax_startups = \"50:30:10\"",
                "limits.max_startups",
            ),
            ("[ssh]\nlogin_grace = \"0\"", "ssh.login_grace"),
            ("[rdp]\nlogin_grace = \"soon\"", "rdp.login_grace"),
        ] {
            let err = Config::parse(bad, Path::new("/x/s.toml")).unwrap_err();
            assert!(err.to_string().contains(field), "{bad}: {err}");
        }
        assert!(Config::parse("[limits]\nmax_startup = \"1\"", Path::new("/x/s.toml")).is_err());
    }

    #[test]
    fn ssh_ciphers_are_the_configured_ones_and_weak_ones_are_refused() {
        let path = Path::new("/x/s.toml");
        let default = Config::parse("", path).unwrap();
        assert_eq!(
            default.ssh.ciphers,
            crate::ssh::ciphers::front(None).unwrap()
        );
        let c = Config::parse("[ssh]\nciphers = [\"aes256-gcm@openssh.com\"]", path).unwrap();
        assert_eq!(c.ssh.ciphers, vec![russh::cipher::AES_256_GCM]);
        for bad in ["[\"aes128-cbc\"]", "[]", "[\"none\"]"] {
            let err = Config::parse(&format!("[ssh]\nciphers = {bad}"), path).unwrap_err();
            assert!(err.to_string().contains("ssh.ciphers"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_file_init_writes_states_the_defaults() {
        let path = Path::new("/srv/sekisho/sekisho.toml");
        let written = Config::parse(include_str!("cli/sekisho.toml.in"), path).unwrap();
        let defaults = Config::parse("", path).unwrap();
        assert_eq!(written.admission, defaults.admission);
        assert_eq!(written.ssh.login_grace, defaults.ssh.login_grace);
        assert_eq!(written.ssh.ciphers, defaults.ssh.ciphers);
        assert_eq!(written.rdp.login_grace, defaults.rdp.login_grace);
        assert_eq!(written.web.connection_idle, defaults.web.connection_idle);
    }

    #[test]
    fn web_section() {
        let c = Config::parse("", Path::new("/srv/s/sekisho.toml")).unwrap();
        assert!(!c.web.enabled);
        assert_eq!(c.web.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(c.web.cert, PathBuf::from("/srv/s/keys/rdp_tls_cert.pem"));
        assert_eq!(c.web.key, PathBuf::from("/srv/s/keys/rdp_tls_key.pem"));
        assert_eq!(c.web.idle_timeout, Duration::from_secs(900));
        assert_eq!(c.web.connection_idle, Duration::from_secs(120));
        let c = Config::parse(
            "[web]\nenabled = true\nlisten = \"0.0.0.0:443\"\ncert = \"tls/c.pem\"\nkey = \"/k.pem\"\nidle_timeout = \"5m\"",
            Path::new("/srv/s/sekisho.toml"),
        )
        .unwrap();
        assert!(c.web.enabled);
        assert_eq!(c.web.cert, PathBuf::from("/srv/s/tls/c.pem"));
        assert_eq!(c.web.key, PathBuf::from("/k.pem"));
        assert_eq!(c.web.idle_timeout, Duration::from_secs(300));
        let err = Config::parse("[web]\ncert = \"c.pem\"", Path::new("/x/s.toml")).unwrap_err();
        assert!(err.to_string().contains("key"), "{err}");
        let err = Config::parse("[web]\nidle_timeout = \"0\"", Path::new("/x/s.toml")).unwrap_err();
        assert!(err.to_string().contains("web.idle_timeout"), "{err}");
    }

    #[test]
    fn rdp_keyframe_interval() {
        let c = Config::parse("[rdp]\nkeyframe_interval = \"2s\"", Path::new("/x/s.toml")).unwrap();
        assert_eq!(c.rdp.keyframe_interval, Duration::from_secs(2));
        let c = Config::parse("[rdp]\nkeyframe_interval = \"0\"", Path::new("/x/s.toml")).unwrap();
        assert!(c.rdp.keyframe_interval.is_zero());
        let err = Config::parse(
            "[rdp]\nkeyframe_interval = \"often\"",
            Path::new("/x/s.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("rdp.keyframe_interval"), "{err}");
        // [ssh] has no keyframes.
        assert!(
            Config::parse("[ssh]\nkeyframe_interval = \"1s\"", Path::new("/x/s.toml")).is_err()
        );
    }

    #[test]
    fn networks_and_errors() {
        let text = r#"
            [[network]]
            name = "vpn"
            cidrs = ["10.1.0.0/16", "192.0.2.7"]
            closed = true
        "#;
        let c = Config::parse(text, Path::new("/x/sekisho.toml")).unwrap();
        assert!(c.networks[0].contains("10.1.2.3".parse().unwrap()));
        assert!(c.networks[0].contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.networks[0].contains("10.2.0.1".parse().unwrap()));
        assert!(c.networks[0].contains("192.0.2.7".parse().unwrap()));

        let err = Config::parse("bogus = 1", Path::new("/x/s.toml")).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = Config::parse("[ssh]\nlisten = \"nope\"", Path::new("/x/s.toml")).unwrap_err();
        assert!(err.to_string().contains("ssh.listen"), "{err}");
        let dup = "[[network]]\nname='a'\ncidrs=['10.0.0.0/8']\n[[network]]\nname='a'\ncidrs=['10.0.0.0/8']";
        assert!(Config::parse(dup, Path::new("/x/s.toml")).is_err());
    }

    #[test]
    fn since_forms() {
        let tz: Tz = chrono_tz::Asia::Tokyo;
        let now = Utc.with_ymd_and_hms(2026, 4, 2, 0, 0, 0).single().unwrap();
        let day = parse_when("2026-04-01", tz, now).unwrap();
        assert_eq!(
            day,
            Utc.with_ymd_and_hms(2026, 3, 31, 15, 0, 0)
                .single()
                .unwrap()
        );
        let t = parse_when("2026-04-01 08:30", tz, now).unwrap();
        assert_eq!(
            t,
            Utc.with_ymd_and_hms(2026, 3, 31, 23, 30, 0)
                .single()
                .unwrap()
        );
        let r = parse_when("2026-04-01T08:30:00+09:00", tz, now).unwrap();
        assert_eq!(r, t);
        assert_eq!(
            parse_when("2h", tz, now).unwrap(),
            now - chrono::Duration::hours(2)
        );
        assert!(parse_when("yesterday", tz, now).is_err());
    }
}
