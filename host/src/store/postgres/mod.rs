//! PostgreSQL: the store several replicas share.
//!
//! A pool of connections (deadpool) with timeouts on waiting, connecting
//! and every statement, so a database that is away gives errors, not a
//! hang, and the pool heals itself when it is back. The schema is brought
//! up to date at open under an advisory lock, so replicas starting at once
//! take turns. Writes to servers and connections notify every replica
//! (`listen`); a session's chats hold it by a lease (`SessionLease`).

mod connections;
mod group;
mod listen;
mod servers;
mod sessions;
mod tool_calls;
mod usage;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod,
};
use tokio::sync::broadcast;
use tokio_postgres::NoTls;

pub use sessions::SessionLease;

use super::{Change, PoolLimits, StoreError};
use crate::timestamp::now;

/// The migrations, in order; each runs once, in a transaction.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_session_leases.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_lease_in_session.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/postgres/0004_usage.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/postgres/0005_grouped_exchanges.sql"),
    ),
];
/// The advisory lock replicas take turns on while migrating.
const MIGRATION_LOCK: i64 = 0x6167_656e_7468_6f73;
/// The channel replicas tell each other of changes on.
const CHANNEL: &str = "agenthost_changes";

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    changes: broadcast::Sender<Change>,
    groups: sessions::Groups,
}

impl PgStore {
    /// Connects, migrates, and starts following other replicas' changes.
    pub async fn open(url: &str, limits: PoolLimits) -> Result<PgStore, StoreError> {
        let failed = |reason: String| StoreError::Open {
            path: describe(url),
            reason,
        };
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| failed(format!("{e}")))?;
        config
            .connect_timeout(limits.timeout)
            .application_name("agenthost")
            .options(format!(
                "-c statement_timeout={}",
                limits.timeout.as_millis()
            ));
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(limits.connections)
            .wait_timeout(Some(limits.timeout))
            .create_timeout(Some(limits.timeout))
            .recycle_timeout(Some(limits.timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| failed(e.to_string()))?;
        migrate(&pool).await.map_err(|e| failed(e.to_string()))?;
        let (changes, mut listening) = broadcast::channel(256);
        tokio::spawn(listen::follow(config, changes.clone()));
        // A replica hears the others from the moment it serves: the first
        // message says the LISTEN is in place. Bounded, so a listener that
        // cannot connect yet (it keeps trying) does not hold up the start.
        if tokio::time::timeout(limits.timeout, listening.recv())
            .await
            .is_err()
        {
            tracing::warn!("not yet listening for the other replicas' changes; still trying");
        }
        let groups = sessions::Groups::start(&pool);
        Ok(PgStore {
            pool,
            changes,
            groups,
        })
    }

    pub fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(pg_error)?;
        Ok(())
    }
}

/// Applies the migrations this database lacks, one replica at a time.
async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    let applied = apply_migrations(&mut client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    if unlocked.is_err() {
        drop(Object::take(client));
    }
    applied
}

async fn apply_migrations(client: &mut Object) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at TEXT NOT NULL
             )",
        )
        .await
        .map_err(pg_error)?;
    let applied: Vec<i32> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let known = MIGRATIONS.last().map_or(0, |(version, _)| *version);
    if let Some(newer) = applied.iter().find(|v| **v > known) {
        return Err(StoreError::Migrate(format!(
            "the database has schema version {newer}, newer than this agenthost's {known}: upgrade agenthost"
        )));
    }
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Migrate(format!("version {version}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[version, &now()],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        tracing::info!(version, "database schema migrated");
    }
    Ok(())
}

/// The database a URL names, without its password: for messages.
pub fn describe(url: &str) -> String {
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return "a PostgreSQL database (the URL could not be read)".into();
    };
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(dir)) => dir.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or_default(),
        config.get_dbname().unwrap_or_default()
    )
}

fn pool_error(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(e) => pg_error(e),
        PoolError::Timeout(_) => {
            StoreError::Unavailable("no connection to PostgreSQL within the timeout".into())
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// A failed statement. A lost or refused connection, a server shutting
/// down or a statement over the timeout is the database being away, not
/// the request being wrong.
fn pg_error(error: tokio_postgres::Error) -> StoreError {
    let Some(db) = error.as_db_error() else {
        return StoreError::Unavailable(error.to_string());
    };
    let class = &db.code().code()[..2];
    match class {
        "08" | "53" | "57" => StoreError::Unavailable(db.message().to_owned()),
        _ => StoreError::Postgres(db.message().to_owned()),
    }
}
