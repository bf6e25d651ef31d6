//! Sessions and their messages, and the lease that gives one chat at a
//! time, on any replica, a session.
//!
//! A chat costs two statements, each its own commit: opening takes the
//! lease, reads the history and stores the user's message (a function,
//! `agenthost_open_exchange`); closing stores the rest and gives the lease
//! back. The lease is two columns of the session's row. Statements are
//! prepared once per connection.

use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::types::ToSql;

use super::{PgStore, pg_error, pool_error};
use crate::store::{OpenedExchange, SessionSummary, StoreError, StoredMessage};
use crate::timestamp::now;

/// How often a chat asks again for a session another replica's chat holds.
const LEASE_RETRY: Duration = Duration::from_millis(25);
/// How long a session lease lasts unless renewed: how long a session stays
/// held after its replica died.
const LEASE_SECS: f64 = 15.0;
/// How often a running chat renews its lease.
const LEASE_RENEWAL: Duration = Duration::from_secs(5);

/// Takes the lease and, if taken, reads the history and stores the
/// user's message: one statement, one commit (migration 0003).
const OPEN_EXCHANGE: &str =
    "SELECT * FROM agenthost_open_exchange($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const RENEW_LEASE: &str = "UPDATE sessions SET lease_expires_at = now() + make_interval(secs => $3)
     WHERE id = $1 AND lease_holder = $2";
const RELEASE_LEASE: &str = "UPDATE sessions SET lease_holder = NULL, lease_expires_at = NULL
     WHERE id = $1 AND lease_holder = $2";
const SESSION_EXISTS: &str = "SELECT 1 FROM sessions WHERE id = $1 AND org = $2";
const READ_MESSAGES: &str = "SELECT role, content, name, tool_call_id, tool_calls, timestamp
     FROM messages WHERE session_id = $1 ORDER BY seq";
/// Messages in their given order (`seq` is assigned as rows are
/// inserted, after the sort), giving back the lease of holder `$8` in the
/// same statement.
const APPEND_MESSAGES: &str = "WITH given_back AS (
         UPDATE sessions SET lease_holder = NULL, lease_expires_at = NULL
         WHERE id = $1 AND lease_holder = $8
     )
     INSERT INTO messages (session_id, role, content, name, tool_call_id, tool_calls, timestamp)
     SELECT $1, m.role, m.content, m.name, m.tool_call_id, m.tool_calls, m.timestamp
     FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
          WITH ORDINALITY AS m(role, content, name, tool_call_id, tool_calls, timestamp, n)
     ORDER BY m.n";

impl PgStore {
    pub async fn create_session(&self, tenant: &str) -> Result<SessionSummary, StoreError> {
        let summary = SessionSummary {
            id: uuid::Uuid::new_v4().to_string(),
            created_at: now(),
            message_count: 0,
        };
        let client = self.client().await?;
        let insert = client
            .prepare_cached("INSERT INTO sessions (id, created_at, org) VALUES ($1, $2, $3)")
            .await
            .map_err(pg_error)?;
        client
            .execute(&insert, &[&summary.id, &summary.created_at, &tenant])
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
        let (exists, read) = futures::try_join!(
            client.prepare_cached(SESSION_EXISTS),
            client.prepare_cached(READ_MESSAGES)
        )
        .map_err(pg_error)?;
        let (exists_params, read_params): ([&(dyn ToSql + Sync); 2], [&(dyn ToSql + Sync); 1]) =
            ([&id, &tenant], [&id]);
        let (found, rows) = futures::try_join!(
            client.query_opt(&exists, &exists_params),
            client.query(&read, &read_params)
        )
        .map_err(pg_error)?;
        Ok(found.map(|_| rows.iter().map(stored_message).collect()))
    }

    /// Waits until no other chat, on any replica, holds the session; then,
    /// in one statement, takes its lease, reads its history and stores
    /// the user's message. The lease is renewed while the chat runs, so
    /// no connection is held for the chat's length.
    pub async fn open_exchange(
        &self,
        tenant: &str,
        id: &str,
        user: StoredMessage,
    ) -> Result<Option<OpenedExchange>, StoreError> {
        let holder = uuid::Uuid::new_v4().to_string();
        let tool_calls = user.tool_calls.as_ref().map(|t| t.to_string());
        let params: [&(dyn ToSql + Sync); 10] = [
            &id,
            &holder,
            &LEASE_SECS,
            &tenant,
            &user.role,
            &user.content,
            &user.name,
            &user.tool_call_id,
            &tool_calls,
            &user.timestamp,
        ];
        loop {
            let client = self.client().await?;
            let open = client
                .prepare_cached(OPEN_EXCHANGE)
                .await
                .map_err(pg_error)?;
            let rows = client.query(&open, &params).await.map_err(pg_error)?;
            drop(client);
            let taken = rows.first().is_some_and(|row| row.get::<_, bool>(0));
            if taken {
                let lease = Lease {
                    pool: self.pool.clone(),
                    session: id.to_owned(),
                    holder,
                };
                return Ok(Some(OpenedExchange {
                    history: rows[1..].iter().map(stored_message).collect(),
                    lease: Some(SessionLease::hold(lease)),
                }));
            }
            if !self.session_exists(tenant, id).await? {
                return Ok(None);
            }
            tokio::time::sleep(LEASE_RETRY).await;
        }
    }

    async fn session_exists(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let exists = client
            .prepare_cached(SESSION_EXISTS)
            .await
            .map_err(pg_error)?;
        let found = client
            .query_opt(&exists, &[&id, &tenant])
            .await
            .map_err(pg_error)?;
        Ok(found.is_some())
    }

    /// Appends messages to a session and gives back its lease, in one
    /// statement.
    pub async fn append(
        &self,
        session: &str,
        messages: Vec<StoredMessage>,
        lease: Option<SessionLease>,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let append = client
            .prepare_cached(APPEND_MESSAGES)
            .await
            .map_err(pg_error)?;
        let holder = lease
            .as_ref()
            .and_then(|l| l.lease.as_ref())
            .map(|l| l.holder.as_str());
        let columns = Columns::of(&messages);
        let params: [&(dyn ToSql + Sync); 8] = [
            &session,
            &columns.role,
            &columns.content,
            &columns.name,
            &columns.tool_call_id,
            &columns.tool_calls,
            &columns.timestamp,
            &holder,
        ];
        client.execute(&append, &params).await.map_err(pg_error)?;
        if let Some(lease) = lease {
            lease.given_back();
        }
        Ok(())
    }
}

/// Messages as one array per column, for [`APPEND_MESSAGES`].
struct Columns {
    role: Vec<String>,
    content: Vec<String>,
    name: Vec<Option<String>>,
    tool_call_id: Vec<Option<String>>,
    tool_calls: Vec<Option<String>>,
    timestamp: Vec<String>,
}

impl Columns {
    fn of(messages: &[StoredMessage]) -> Columns {
        Columns {
            role: messages.iter().map(|m| m.role.clone()).collect(),
            content: messages.iter().map(|m| m.content.clone()).collect(),
            name: messages.iter().map(|m| m.name.clone()).collect(),
            tool_call_id: messages.iter().map(|m| m.tool_call_id.clone()).collect(),
            tool_calls: messages
                .iter()
                .map(|m| m.tool_calls.as_ref().map(|t| t.to_string()))
                .collect(),
            timestamp: messages.iter().map(|m| m.timestamp.clone()).collect(),
        }
    }
}

/// A message from the rows of [`READ_MESSAGES`], or from those of
/// [`OPEN_EXCHANGE`], which lead with the `taken` column.
fn stored_message(row: &tokio_postgres::Row) -> StoredMessage {
    let at = row.len() - 6;
    let tool_calls: Option<String> = row.get(at + 4);
    StoredMessage {
        role: row.get(at),
        content: row.get(at + 1),
        name: row.get(at + 2),
        tool_call_id: row.get(at + 3),
        tool_calls: tool_calls.and_then(|t| serde_json::from_str(&t).ok()),
        timestamp: row.get(at + 5),
    }
}

/// A session held for one chat, renewed while it runs. Given back with
/// the chat's messages ([`PgStore::append`]), or, when the chat ends
/// otherwise, when dropped.
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

    /// The lease was deleted in a transaction that committed.
    fn given_back(mut self) {
        self.renewing.abort();
        self.lease = None;
    }
}

impl Lease {
    async fn renew(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let renew = client.prepare_cached(RENEW_LEASE).await.map_err(pg_error)?;
        client
            .execute(&renew, &[&self.session, &self.holder, &LEASE_SECS])
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn release(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let release = client
            .prepare_cached(RELEASE_LEASE)
            .await
            .map_err(pg_error)?;
        client
            .execute(&release, &[&self.session, &self.holder])
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
