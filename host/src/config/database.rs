//! Where the data lives, and how a replica may use the database.

use std::path::PathBuf;
use std::time::Duration;

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum Database {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL, `postgres://user:pass@host:port/db` or with
    /// `?host=/socket/dir`.
    Postgres(String),
}

/// How long a database operation may take, and how many connections a
/// replica keeps.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    pub timeout: Duration,
    pub connections: usize,
}
