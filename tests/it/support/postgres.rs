//! A real PostgreSQL server for tests: initdb into a temporary directory,
//! start it on a free loopback port, stop it when the guard drops.
//!
//! Needs the Debian package `postgresql` (server binaries under
//! /usr/lib/postgresql/VERSION/bin). initdb refuses to run as root, so as
//! root the server runs as the `postgres` account that package creates.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::free_port;

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    pub port: u16,
}

/// The newest installed server's bin directory.
fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Postgres {
    /// Starts a fresh server. Panics (failing the test) with the package to
    /// install when PostgreSQL is missing.
    pub fn start() -> Postgres {
        let bin = find_bin().unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: \
                 install the Debian package `postgresql` (apt-get install -y postgresql)"
            )
        });
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("sekisho-pg-")
            .tempdir()
            .expect("temporary directory");
        if as_postgres {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(
                st.success(),
                "chown of the PostgreSQL test directory failed (is there a `postgres` account? it comes with the Debian package `postgresql`)"
            );
        }
        let data = dir.path().join("data");
        let pg = Postgres {
            port: free_port(),
            bin,
            as_postgres,
            dir,
        };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            pg.port,
            pg.dir.path().display()
        );
        let out = pg
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(pg.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(pg.dir.path().join("server.log")).unwrap_or_default()
        );
        pg
    }

    fn command(&self, tool: &str) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A URL for database `db` (created by `create_database`, or `postgres`).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database, so each test gets its own.
    pub fn create_database(&self, name: &str) -> String {
        let out = self
            .command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(name)
    }

    /// Adds a login role `role` that must give `password`: its connections
    /// over TCP use scram-sha-256 (every other role stays trusted). The
    /// role may create what the store needs.
    pub fn add_password_role(&self, role: &str, password: &str) {
        let sql = format!("CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'");
        let out = self
            .command("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "creating role {role} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The first matching line counts: this one goes before `trust`.
        let hba = self.data().join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        std::fs::write(
            &hba,
            format!("host all {role} 127.0.0.1/32 scram-sha-256\n{old}"),
        )
        .expect("write pg_hba.conf");
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("reload")
            .output()
            .expect("run pg_ctl reload");
        assert!(
            out.status.success(),
            "pg_ctl reload failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
