//! PostgreSQL: the store several replicas share.
//!
//! A pool of connections (deadpool) with timeouts on waiting, connecting
//! and every statement, so a database that is away gives errors, not a
//! hang, and the pool heals itself when it is back. The schema is brought
//! up to date at open under an advisory lock, so replicas starting at once
//! take turns. Writes to servers and connections notify every replica
//! (`listen`); a session's chats hold it by a lease (`SessionLease`).

mod connections;
mod listen;
mod servers;
mod tool_calls;

use std::time::Duration;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod,
};
use tokio::sync::broadcast;
use tokio_postgres::NoTls;

use super::{Change, PoolLimits, SessionSummary, StoreError, StoredMessage};
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
];
/// The advisory lock replicas take turns on while migrating.
const MIGRATION_LOCK: i64 = 0x6167_656e_7468_6f73;
/// How often a chat asks again for a session another chat holds.
const LEASE_RETRY: Duration = Duration::from_millis(25);
/// How long a session lease lasts unless renewed: how long a session stays
/// held after its replica died.
const LEASE_SECS: f64 = 15.0;
/// How often a running chat renews its lease.
const LEASE_RENEWAL: Duration = Duration::from_secs(5);
/// The channel replicas tell each other of changes on.
const CHANNEL: &str = "agenthost_changes";

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    changes: broadcast::Sender<Change>,
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
        let (changes, _) = broadcast::channel(256);
        tokio::spawn(listen::follow(config, changes.clone()));
        Ok(PgStore { pool, changes })
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

    /// Waits until no other chat, on any replica, holds the session, and
    /// holds it. The lease is a row, renewed while the chat runs, so no
    /// connection is held for the chat's length.
    pub async fn lock_session(&self, session: &str) -> Result<SessionLease, StoreError> {
        let holder = uuid::Uuid::new_v4().to_string();
        loop {
            let client = self.client().await?;
            let taken = client
                .query_opt(
                    "INSERT INTO session_leases (session_id, holder, expires_at)
                     VALUES ($1, $2, now() + make_interval(secs => $3))
                     ON CONFLICT (session_id) DO UPDATE
                         SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                         WHERE session_leases.expires_at < now()
                     RETURNING holder",
                    &[&session, &holder, &LEASE_SECS],
                )
                .await
                .map_err(pg_error)?
                .is_some();
            drop(client);
            if taken {
                let lease = Lease {
                    pool: self.pool.clone(),
                    session: session.to_owned(),
                    holder,
                };
                return Ok(SessionLease::hold(lease));
            }
            tokio::time::sleep(LEASE_RETRY).await;
        }
    }

    pub async fn create_session(&self, tenant: &str) -> Result<SessionSummary, StoreError> {
        let summary = SessionSummary {
            id: uuid::Uuid::new_v4().to_string(),
            created_at: now(),
            message_count: 0,
        };
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO sessions (id, created_at, org) VALUES ($1, $2, $3)",
                &[&summary.id, &summary.created_at, &tenant],
            )
            .await
            .map_err(pg_error)?;
        Ok(summary)
    }

    pub async fn sessions(&self, tenant: &str) -> Result<Vec<SessionSummary>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT s.id, s.created_at, COUNT(m.seq) FROM sessions s
                 LEFT JOIN messages m ON m.session_id = s.id
                 WHERE s.org = $1
                 GROUP BY s.id ORDER BY s.created_at, s.id",
                &[&tenant],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|row| SessionSummary {
                id: row.get(0),
                created_at: row.get(1),
                message_count: row.get(2),
            })
            .collect())
    }

    pub async fn history(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        let client = self.client().await?;
        if !session_exists(&client, tenant, id).await? {
            return Ok(None);
        }
        read_messages(&client, id).await.map(Some)
    }

    pub async fn open_exchange(
        &self,
        tenant: &str,
        id: &str,
        user: StoredMessage,
    ) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        if !session_exists(&tx, tenant, id).await? {
            return Ok(None);
        }
        let history = read_messages(&tx, id).await?;
        insert_messages(&tx, id, std::slice::from_ref(&user)).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(Some(history))
    }

    pub async fn append(
        &self,
        session: &str,
        messages: Vec<StoredMessage>,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        insert_messages(&tx, session, &messages).await?;
        tx.commit().await.map_err(pg_error)
    }
}

/// A session held for one chat, renewed while it runs and given back
/// when dropped.
pub struct SessionLease {
    lease: Option<Lease>,
    renewing: tokio::task::JoinHandle<()>,
}

/// Which lease, and where to renew or delete it.
#[derive(Clone)]
struct Lease {
    pool: Pool,
    session: String,
    holder: String,
}

impl SessionLease {
    /// Gives the session back now, so the next chat need not wait for it.
    pub async fn release(mut self) {
        self.renewing.abort();
        if let Some(lease) = self.lease.take()
            && let Err(e) = lease.release().await
        {
            tracing::warn!(session = %lease.session, "cannot give the session back: {e}");
        }
    }

    fn hold(lease: Lease) -> SessionLease {
        let renewed = lease.clone();
        let renewing = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_RENEWAL).await;
                if let Err(e) = renewed.renew().await {
                    tracing::warn!(session = %renewed.session, "cannot renew the session's lease: {e}");
                }
            }
        });
        SessionLease {
            lease: Some(lease),
            renewing,
        }
    }
}

impl Lease {
    async fn renew(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "UPDATE session_leases SET expires_at = now() + make_interval(secs => $3)
                 WHERE session_id = $1 AND holder = $2",
                &[&self.session, &self.holder, &LEASE_SECS],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn release(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "DELETE FROM session_leases WHERE session_id = $1 AND holder = $2",
                &[&self.session, &self.holder],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        self.renewing.abort();
        let Some(lease) = self.lease.take() else {
            return;
        };
        // Not given back, the lease expires by itself.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = lease.release().await {
                    tracing::warn!(session = %lease.session, "cannot give the session back: {e}");
                }
            });
        }
    }
}

async fn session_exists(
    client: &impl GenericClient,
    tenant: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let row = client
        .query_opt(
            "SELECT 1 FROM sessions WHERE id = $1 AND org = $2",
            &[&id, &tenant],
        )
        .await
        .map_err(pg_error)?;
    Ok(row.is_some())
}

async fn read_messages(
    client: &impl GenericClient,
    session: &str,
) -> Result<Vec<StoredMessage>, StoreError> {
    let rows = client
        .query(
            "SELECT role, content, name, tool_call_id, tool_calls, timestamp
             FROM messages WHERE session_id = $1 ORDER BY seq",
            &[&session],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|row| {
            let tool_calls: Option<String> = row.get(4);
            StoredMessage {
                role: row.get(0),
                content: row.get(1),
                name: row.get(2),
                tool_call_id: row.get(3),
                tool_calls: tool_calls.and_then(|t| serde_json::from_str(&t).ok()),
                timestamp: row.get(5),
            }
        })
        .collect())
}

async fn insert_messages(
    client: &impl GenericClient,
    session: &str,
    messages: &[StoredMessage],
) -> Result<(), StoreError> {
    let insert = client
        .prepare(
            "INSERT INTO messages (session_id, role, content, name, tool_call_id, tool_calls, timestamp)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await
        .map_err(pg_error)?;
    for m in messages {
        let tool_calls = m.tool_calls.as_ref().map(|t| t.to_string());
        client
            .execute(
                &insert,
                &[
                    &session,
                    &m.role,
                    &m.content,
                    &m.name,
                    &m.tool_call_id,
                    &tool_calls,
                    &m.timestamp,
                ],
            )
            .await
            .map_err(pg_error)?;
    }
    Ok(())
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
