//! PostgreSQL for tests and benches: the shared throwaway cluster
//! `tests/run.sh` starts (its admin URL in `AGENTHOST_TEST_POSTGRES`), a
//! fresh database on it per host, and clusters of a test's own for what
//! would disturb the others (a restart).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The variable naming the shared cluster's admin URL.
pub const SHARED: &str = "AGENTHOST_TEST_POSTGRES";
/// Set to `postgres` to run every host of a suite on the shared cluster.
pub const BACKEND: &str = "AGENTHOST_TEST_BACKEND";

/// Whether this run's hosts keep their data in PostgreSQL.
pub fn postgres_backend() -> bool {
    std::env::var(BACKEND).is_ok_and(|b| b == "postgres")
}

/// The shared cluster's admin URL.
pub fn shared_admin_url() -> String {
    std::env::var(SHARED).unwrap_or_else(|_| {
        panic!(
            "{SHARED} is not set: ./tests/run.sh starts a throwaway PostgreSQL cluster and sets it"
        )
    })
}

/// A database on the shared cluster for `key`, created on first use: the
/// same key (a host's data directory) finds the same database again.
pub fn database(key: &str) -> String {
    let admin = shared_admin_url();
    let name = format!("t_{:016x}", fnv1a(key.as_bytes()));
    psql(&admin, &format!("CREATE DATABASE {name}"), true);
    with_database(&admin, &name)
}

/// A database no one has used.
pub fn fresh_database() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let next = NEXT.fetch_add(1, Ordering::Relaxed);
    database(&format!("{}-{now}-{next}", std::process::id()))
}

/// The data of a database as text (`pg_dump`), to look for what must not
/// be there in the clear.
pub fn dump(url: &str) -> Vec<u8> {
    let output = Command::new(bin_dir().join("pg_dump"))
        .args(["--data-only", url])
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A cluster of one test's own, stopped when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Cluster {
    /// `durable`: whether commits are flushed to disk (off makes tests
    /// faster; a killed agenthost loses nothing either way).
    pub fn start(durable: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        // The server runs as `postgres` when this runs as root.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        run_as_postgres(
            Command::new(bin_dir().join("initdb"))
                .args(["-U", "postgres", "-A", "trust", "--no-sync", "-D"])
                .arg(&data),
        );
        let port = free_port();
        let cluster = Cluster { dir, port };
        cluster.pg_ctl("start", durable);
        cluster
    }

    /// The cluster's admin URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A new database on this cluster.
    pub fn database(&self, name: &str) -> String {
        psql(&self.url(), &format!("CREATE DATABASE {name}"), false);
        with_database(&self.url(), name)
    }

    /// Stops the server (fast: sessions are ended) and starts it again.
    pub fn restart(&self) {
        self.pg_ctl("restart", true);
    }

    /// The pid of the cluster's postmaster, whose children are the
    /// server's processes.
    pub fn server_pid(&self) -> u32 {
        let pid_file =
            std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).unwrap();
        pid_file.lines().next().unwrap().trim().parse().unwrap()
    }

    pub fn stop(&self) {
        self.pg_ctl("stop", true);
    }

    pub fn start_again(&self) {
        self.pg_ctl("start", true);
    }

    fn pg_ctl(&self, action: &str, durable: bool) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={}",
            self.port,
            self.dir.path().display(),
            if durable { "on" } else { "off" }
        );
        let mut command = Command::new(bin_dir().join("pg_ctl"));
        command
            .args(["-w", "-m", "fast", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(&log);
        if action != "stop" {
            command.args(["-o", &options]);
        }
        command.arg(action);
        run_as_postgres(&mut command);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let mut command = Command::new(bin_dir().join("pg_ctl"));
        command
            .args(["-m", "immediate", "-D"])
            .arg(&data)
            .arg("stop");
        as_owner(&mut command, true);
    }
}

/// Whether PostgreSQL's programs are installed.
pub fn installed() -> bool {
    installed_bin_dirs().next().is_some()
}

fn installed_bin_dirs() -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
}

/// The newest installed PostgreSQL's programs.
fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = installed_bin_dirs().collect();
    dirs.sort_by_key(|dir| {
        let version = dir
            .parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str());
        version.and_then(|v| v.parse::<u32>().ok()).unwrap_or(0)
    });
    dirs.pop()
        .expect("PostgreSQL is installed (./tests/run.sh installs the distribution's)")
}

/// PostgreSQL will not run as root: as root, run as the `postgres` user.
fn run_as_postgres(command: &mut Command) {
    as_owner(command, false);
}

fn as_owner(command: &mut Command, quiet: bool) {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let mut actual = if root {
        let mut runuser = Command::new("runuser");
        runuser
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args);
        runuser
    } else {
        let mut direct = Command::new(program);
        direct.args(args);
        direct
    };
    let output = actual.output().expect("the PostgreSQL programs run");
    if !quiet {
        assert!(
            output.status.success(),
            "{:?} failed: {}{}",
            command,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn psql(url: &str, sql: &str, tolerate_existing: bool) {
    let output = Command::new(bin_dir().join("psql"))
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("psql runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let existing = tolerate_existing && stderr.contains("already exists");
    assert!(output.status.success() || existing, "psql {sql}: {stderr}");
}

/// The admin URL with another database.
fn with_database(admin: &str, name: &str) -> String {
    match admin.rsplit_once('/') {
        Some((base, rest)) => match rest.split_once('?') {
            Some((_, query)) => format!("{base}/{name}?{query}"),
            None => format!("{base}/{name}"),
        },
        None => admin.to_owned(),
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
