//! Sessions and their messages, and the lease that gives one chat at a
//! time, on any replica, a session.
//!
//! A chat costs two statements: opening takes the lease, reads the
//! history and stores the user's message (a function,
//! `agenthost_open_exchanges`); closing stores the rest and gives the
//! lease back. Both, and the creation of sessions, are committed in
//! groups (`group`): one statement and one commit for every chat that
//! opened, or closed, at about the same time. The lease is two columns of the session's row. Statements are
//! prepared once per connection.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::types::ToSql;

use super::group::{Commit, Group};
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

/// For each chat of a group, takes the lease and, if taken, reads the
/// history and stores the user's message (migration 0005).
const OPEN_EXCHANGES: &str =
    "SELECT * FROM agenthost_open_exchanges($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const RENEW_LEASE: &str = "UPDATE sessions SET lease_expires_at = now() + make_interval(secs => $3)
     WHERE id = $1 AND lease_holder = $2";
const RELEASE_LEASE: &str = "UPDATE sessions SET lease_holder = NULL, lease_expires_at = NULL
     WHERE id = $1 AND lease_holder = $2";
const SESSION_EXISTS: &str = "SELECT 1 FROM sessions WHERE id = $1 AND org = $2";
const READ_MESSAGES: &str = "SELECT role, content, name, tool_call_id, tool_calls, timestamp
     FROM messages WHERE session_id = $1 ORDER BY seq";
/// A group's messages in their given order (`seq` is assigned as rows are
/// inserted, after the sort), giving back the leases of sessions `$1`
/// held by `$2` in the same statement.
const APPEND_MESSAGES: &str = "WITH given_back AS (
         UPDATE sessions s SET lease_holder = NULL, lease_expires_at = NULL
         FROM unnest($1::text[], $2::text[]) AS g(id, holder)
         WHERE s.id = g.id AND s.lease_holder = g.holder
     )
     INSERT INTO messages (session_id, role, content, name, tool_call_id, tool_calls, timestamp)
     SELECT m.session_id, m.role, m.content, m.name, m.tool_call_id, m.tool_calls, m.timestamp
     FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
          WITH ORDINALITY AS m(session_id, role, content, name, tool_call_id, tool_calls, timestamp, n)
     ORDER BY m.n";

/// New sessions, inserted in one statement.
const CREATE_SESSIONS: &str = "INSERT INTO sessions (id, created_at, org)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[])";

/// A session to create.
struct Creating {
    id: String,
    created_at: String,
    tenant: String,
}

/// A chat to open: whose session, for which lease holder, and the user's
/// message.
struct Opening {
    tenant: String,
    session: String,
    holder: String,
    user: StoredMessage,
}

/// A chat to close: the messages it added and the lease it gives back.
struct Closing {
    session: String,
    holder: Option<String>,
    messages: Vec<StoredMessage>,
}

/// The history of a session whose lease was taken, with the lease; `None`
/// when another chat holds it.
type Opened = Option<(Vec<StoredMessage>, SessionLease)>;

/// The groups sessions are created, and chats opened and closed, in.
#[derive(Clone)]
pub(super) struct Groups {
    creating: Group<Creating, ()>,
    opening: Group<Opening, Opened>,
    closing: Group<Closing, ()>,
}

impl Groups {
    /// Starts the groups, committed on `pool`.
    pub(super) fn start(pool: &Pool) -> Groups {
        Groups {
            creating: Group::start(committed_on(pool, create_group)),
            opening: Group::start(committed_on(pool, open_group)),
            closing: Group::start(committed_on(pool, close_group)),
        }
    }
}

/// `commit`, on a connection of `pool`.
fn committed_on<I: 'static, O, F>(pool: &Pool, commit: fn(Pool, Arc<Vec<I>>) -> F) -> Commit<I, O>
where
    F: Future<Output = Result<Vec<O>, StoreError>> + Send + 'static,
{
    let pool = pool.clone();
    Arc::new(move |group| Box::pin(commit(pool.clone(), group)))
}

impl PgStore {
    pub async fn create_session(&self, tenant: &str) -> Result<SessionSummary, StoreError> {
        let summary = SessionSummary {
            id: uuid::Uuid::new_v4().to_string(),
            created_at: now(),
            message_count: 0,
        };
        let creating = Creating {
            id: summary.id.clone(),
            created_at: summary.created_at.clone(),
            tenant: tenant.to_owned(),
        };
        self.groups.creating.commit(creating).await?;
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
        loop {
            let opening = Opening {
                tenant: tenant.to_owned(),
                session: id.to_owned(),
                holder: holder.clone(),
                user: user.clone(),
            };
            if let Some((history, lease)) = self.groups.opening.commit(opening).await? {
                return Ok(Some(OpenedExchange {
                    history,
                    lease: Some(lease),
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
        let holder = lease
            .as_ref()
            .and_then(|l| l.lease.as_ref())
            .map(|l| l.holder.clone());
        let closing = Closing {
            session: session.to_owned(),
            holder,
            messages,
        };
        self.groups.closing.commit(closing).await?;
        if let Some(lease) = lease {
            lease.given_back();
        }
        Ok(())
    }
}

/// Inserts a group's sessions, in one statement.
async fn create_group(pool: Pool, group: Arc<Vec<Creating>>) -> Result<Vec<()>, StoreError> {
    let ids: Vec<&str> = group.iter().map(|c| c.id.as_str()).collect();
    let created_at: Vec<&str> = group.iter().map(|c| c.created_at.as_str()).collect();
    let tenants: Vec<&str> = group.iter().map(|c| c.tenant.as_str()).collect();
    query(&pool, CREATE_SESSIONS, &[&ids, &created_at, &tenants]).await?;
    Ok(vec![(); group.len()])
}

/// Runs a group's statement on a connection of `pool`, taken for it alone.
async fn query(
    pool: &Pool,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let prepared = client.prepare_cached(statement).await.map_err(pg_error)?;
    client.query(&prepared, params).await.map_err(pg_error)
}

/// Opens a group's chats, in the order of their sessions (see migration
/// 0005); each outcome in its chat's place.
async fn open_group(pool: Pool, group: Arc<Vec<Opening>>) -> Result<Vec<Opened>, StoreError> {
    let mut order: Vec<usize> = (0..group.len()).collect();
    order.sort_by(|a, b| group[*a].session.cmp(&group[*b].session));
    let sorted = || order.iter().map(|i| &group[*i]);
    let sessions: Vec<&str> = sorted().map(|o| o.session.as_str()).collect();
    let holders: Vec<&str> = sorted().map(|o| o.holder.as_str()).collect();
    let tenants: Vec<&str> = sorted().map(|o| o.tenant.as_str()).collect();
    let columns = Columns::of(sorted().map(|o| &o.user));
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&sessions, &holders, &LEASE_SECS, &tenants];
    params.extend(columns.params());
    let rows = query(&pool, OPEN_EXCHANGES, &params).await?;
    let mut histories: Vec<Option<Vec<StoredMessage>>> = vec![None; group.len()];
    for row in &rows {
        let Some(&at) = usize::try_from(row.get::<_, i32>(0) - 1)
            .ok()
            .and_then(|position| order.get(position))
        else {
            return Err(StoreError::Postgres(
                "opening chats: the database named a chat that was not asked for".into(),
            ));
        };
        // A chat's first row says whether its lease was taken; the rows
        // after it, only for a taken one, are its history.
        match &mut histories[at] {
            Some(history) => history.push(stored_message(row)),
            untaken if row.get::<_, bool>(1) => *untaken = Some(Vec::new()),
            _ => {}
        }
    }
    Ok(group
        .iter()
        .zip(histories)
        .map(|(opening, history)| {
            history.map(|history| {
                let lease = Lease {
                    pool: pool.clone(),
                    session: opening.session.clone(),
                    holder: opening.holder.clone(),
                };
                (history, SessionLease::hold(lease))
            })
        })
        .collect())
}

/// Stores a group's messages and gives back its leases, in one statement.
async fn close_group(pool: Pool, group: Arc<Vec<Closing>>) -> Result<Vec<()>, StoreError> {
    let sessions: Vec<&str> = group.iter().map(|c| c.session.as_str()).collect();
    let holders: Vec<Option<&str>> = group.iter().map(|c| c.holder.as_deref()).collect();
    let owners: Vec<&str> = group
        .iter()
        .flat_map(|c| c.messages.iter().map(|_| c.session.as_str()))
        .collect();
    let columns = Columns::of(group.iter().flat_map(|c| &c.messages));
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&sessions, &holders, &owners];
    params.extend(columns.params());
    query(&pool, APPEND_MESSAGES, &params).await?;
    Ok(vec![(); group.len()])
}

/// Messages as one array per column, for [`OPEN_EXCHANGES`] and
/// [`APPEND_MESSAGES`].
#[derive(Default)]
struct Columns<'a> {
    role: Vec<&'a str>,
    content: Vec<&'a str>,
    name: Vec<Option<&'a str>>,
    tool_call_id: Vec<Option<&'a str>>,
    tool_calls: Vec<Option<String>>,
    timestamp: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn of(messages: impl IntoIterator<Item = &'a StoredMessage>) -> Columns<'a> {
        let mut columns = Columns::default();
        for m in messages {
            columns.role.push(&m.role);
            columns.content.push(&m.content);
            columns.name.push(m.name.as_deref());
            columns.tool_call_id.push(m.tool_call_id.as_deref());
            columns
                .tool_calls
                .push(m.tool_calls.as_ref().map(|t| t.to_string()));
            columns.timestamp.push(&m.timestamp);
        }
        columns
    }

    /// The columns as statement parameters, in the order above.
    fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.role,
            &self.content,
            &self.name,
            &self.tool_call_id,
            &self.tool_calls,
            &self.timestamp,
        ]
    }
}

/// A message from the rows of [`READ_MESSAGES`], or from those of
/// [`OPEN_EXCHANGES`], which lead with the chat's place and `taken`.
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
