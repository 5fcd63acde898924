//! `sekisho.toml`: listeners, storage paths, database URL, named source
//! networks, time zone, and the limits that sign-in and sessions obey.
//!
//! Relative paths are resolved against the directory holding the config file,
//! so a deployment directory can be moved as a whole.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    pub log_format: LogFormat,
    pub networks: Vec<Network>,
}

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
}

#[derive(Debug, Clone)]
pub struct RdpListener {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// How often the target is asked to redraw the whole desktop, so a
    /// replayer can seek to it (a keyframe); zero turns keyframes off.
    pub keyframe_interval: Duration,
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
    log: RawLog,
    #[serde(default, rename = "network")]
    networks: Vec<RawNetwork>,
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
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRdp {
    enabled: Option<bool>,
    listen: Option<String>,
    keyframe_interval: Option<String>,
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

        Ok(Config {
            file: file.to_path_buf(),
            time_zone,
            paths,
            database_url,
            database_password_file,
            ssh: SshListener {
                enabled: raw.ssh.enabled.unwrap_or(true),
                listen: addr("ssh.listen", raw.ssh.listen, "127.0.0.1:2222")?,
            },
            rdp: RdpListener {
                enabled: raw.rdp.enabled.unwrap_or(true),
                listen: addr("rdp.listen", raw.rdp.listen, "127.0.0.1:3389")?,
                keyframe_interval: dur("rdp.keyframe_interval", raw.rdp.keyframe_interval, "30s")?,
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
            log_format,
            networks,
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

/// Formats a duration the way `parse_duration` reads it.
pub fn format_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0".into();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
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
}
