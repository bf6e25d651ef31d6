//! Persistence: chat sessions with their history, MCP servers registered
//! at run time, org connections, the tool-call log and token usage.
//!
//! Two backends with the same behaviour: SQLite in `data_dir`, the
//! embedded default for one process, and PostgreSQL, shared by several
//! replicas (see `postgres`). An acknowledged write is committed in both.
//! Only PostgreSQL has neighbours to tell: its changes to servers and
//! connections come back to every replica as [`Change`]s, and a session's
//! chats are serialized across replicas by a lock in the database.

mod postgres;
mod rows;
mod sqlite;

pub use crate::config::{Database, PoolLimits};
pub use postgres::{PgStore, SessionLease, describe};
pub use rows::{
    ConnectionRow, ConnectionToolRow, SessionSummary, StoredMessage, StoredServer, ToolCallRecord,
    UsageColumn, UsageFilter, UsageRecord, UsageRow,
};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database error: {0}")]
    Postgres(String),
    /// The database cannot be reached now; it may be back later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("the database task stopped unexpectedly")]
    Task,
    #[error("cannot commit to the database: {0}")]
    Commit(String),
    #[error("cannot bring the database schema up to date: {0}")]
    Migrate(String),
}

/// `text` as both backends can hold it: PostgreSQL's text types cannot
/// hold the NUL character, so every store writes U+0000 as U+FFFD, the
/// replacement character. For text a peer produced (a model's answer, a
/// tool's result or error); a user's own NUL is refused instead, so what
/// they sent is never changed silently.
pub fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    match text.contains('\0') {
        true => text.replace('\0', "\u{FFFD}").into(),
        false => text.into(),
    }
}

impl StoreError {
    /// Whether the database itself is away, rather than the request wrong.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A change another replica (or this one) made, for caches to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Run-time servers were registered or removed.
    Servers,
    /// An org's connections or their tools changed.
    Connections { org: String },
    /// Notifications may have been missed: reload everything.
    Everything,
}

/// A session's history at the start of a chat, and the hold on the
/// session that keeps other replicas' chats on it waiting.
pub struct OpenedExchange {
    pub history: Vec<StoredMessage>,
    /// Dropped, the session is given back; [`Store::append`] gives it back
    /// with the chat's messages.
    pub lease: Option<SessionLease>,
}

#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens the database and brings its schema up to date.
    pub async fn open(database: &Database, limits: PoolLimits) -> Result<Store, StoreError> {
        match database {
            Database::Sqlite(path) => SqliteStore::open(path).map(Store::Sqlite),
            Database::Postgres(url) => PgStore::open(url, limits).await.map(Store::Postgres),
        }
    }

    /// Changes made to shared state, when other replicas may make them.
    pub fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(pg) => Some(pg.changes()),
        }
    }

    /// Whether the database answers, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(db) => db.ping().await,
            Store::Postgres(pg) => pg.ping().await,
        }
    }

    pub async fn create_session(&self, tenant: &str) -> Result<SessionSummary, StoreError> {
        timed("create_session", async {
            match self {
                Store::Sqlite(db) => db.create_session(tenant).await,
                Store::Postgres(pg) => pg.create_session(tenant).await,
            }
        })
        .await
    }

    /// `tenant`'s sessions.
    pub async fn sessions(&self, tenant: &str) -> Result<Vec<SessionSummary>, StoreError> {
        match self {
            Store::Sqlite(db) => db.sessions(tenant).await,
            Store::Postgres(pg) => pg.sessions(tenant).await,
        }
    }

    /// The session's messages in order, or `None` for a session that is
    /// not `tenant`'s.
    pub async fn history(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        match self {
            Store::Sqlite(db) => db.history(tenant, id).await,
            Store::Postgres(pg) => pg.history(tenant, id).await,
        }
    }

    /// Starts an exchange: appends the user's message and returns the
    /// history before it, in one transaction; `None` for a session that is
    /// not `tenant`'s. On PostgreSQL it first waits until no chat on any
    /// replica holds the session, and holds it; SQLite has one process,
    /// whose own lock suffices.
    pub async fn open_exchange(
        &self,
        tenant: &str,
        id: &str,
        user: StoredMessage,
    ) -> Result<Option<OpenedExchange>, StoreError> {
        timed("open_exchange", async {
            match self {
                Store::Sqlite(db) => {
                    Ok(db
                        .open_exchange(tenant, id, user)
                        .await?
                        .map(|history| OpenedExchange {
                            history,
                            lease: None,
                        }))
                }
                Store::Postgres(pg) => pg.open_exchange(tenant, id, user).await,
            }
        })
        .await
    }

    /// Appends messages to a session in one transaction, which also gives
    /// back the session's `lease` if there is one.
    pub async fn append(
        &self,
        session: &str,
        messages: Vec<StoredMessage>,
        lease: Option<SessionLease>,
    ) -> Result<(), StoreError> {
        timed("append", async {
            match self {
                Store::Sqlite(db) => db.append(session, messages).await,
                Store::Postgres(pg) => pg.append(session, messages, lease).await,
            }
        })
        .await
    }

    pub async fn servers(&self) -> Result<Vec<StoredServer>, StoreError> {
        match self {
            Store::Sqlite(db) => db.servers().await,
            Store::Postgres(pg) => pg.servers().await,
        }
    }

    pub async fn save_server(&self, server: StoredServer) -> Result<(), StoreError> {
        timed("save_server", async {
            match self {
                Store::Sqlite(db) => db.save_server(server).await,
                Store::Postgres(pg) => pg.save_server(server).await,
            }
        })
        .await
    }

    pub async fn remove_server(&self, tenant: &str, name: &str) -> Result<(), StoreError> {
        timed("remove_server", async {
            match self {
                Store::Sqlite(db) => db.remove_server(tenant, name).await,
                Store::Postgres(pg) => pg.remove_server(tenant, name).await,
            }
        })
        .await
    }

    /// Inserts a connection with its tools; false if the org already has
    /// one with the same server id.
    pub async fn insert_connection(&self, row: ConnectionRow) -> Result<bool, StoreError> {
        timed("insert_connection", async {
            match self {
                Store::Sqlite(db) => db.insert_connection(row).await,
                Store::Postgres(pg) => pg.insert_connection(row).await,
            }
        })
        .await
    }

    /// The org's connections (every org's with `None`), oldest first.
    pub async fn connections(&self, org: Option<&str>) -> Result<Vec<ConnectionRow>, StoreError> {
        match self {
            Store::Sqlite(db) => db.connections(org).await,
            Store::Postgres(pg) => pg.connections(org).await,
        }
    }

    pub async fn connection(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Option<ConnectionRow>, StoreError> {
        match self {
            Store::Sqlite(db) => db.connection(org, id).await,
            Store::Postgres(pg) => pg.connection(org, id).await,
        }
    }

    /// Whether the org had the connection.
    pub async fn delete_connection(&self, org: &str, id: &str) -> Result<bool, StoreError> {
        timed("delete_connection", async {
            match self {
                Store::Sqlite(db) => db.delete_connection(org, id).await,
                Store::Postgres(pg) => pg.delete_connection(org, id).await,
            }
        })
        .await
    }

    /// Whether the connection has a tool with that slug.
    pub async fn set_tool_enabled(
        &self,
        org: &str,
        id: &str,
        slug: &str,
        enabled: bool,
    ) -> Result<bool, StoreError> {
        timed("set_tool_enabled", async {
            match self {
                Store::Sqlite(db) => db.set_tool_enabled(org, id, slug, enabled).await,
                Store::Postgres(pg) => pg.set_tool_enabled(org, id, slug, enabled).await,
            }
        })
        .await
    }

    pub async fn log_tool_call(&self, record: ToolCallRecord) -> Result<(), StoreError> {
        timed("log_tool_call", async {
            match self {
                Store::Sqlite(db) => db.log_tool_call(record).await,
                Store::Postgres(pg) => pg.log_tool_call(record).await,
            }
        })
        .await
    }

    /// An org's most recent calls, newest first, optionally of one
    /// connection.
    pub async fn tool_calls(
        &self,
        org: &str,
        connection: Option<String>,
        limit: u32,
    ) -> Result<Vec<ToolCallRecord>, StoreError> {
        match self {
            Store::Sqlite(db) => db.tool_calls(org, connection, limit).await,
            Store::Postgres(pg) => pg.tool_calls(org, connection, limit).await,
        }
    }

    pub async fn record_usage(&self, records: Vec<UsageRecord>) -> Result<(), StoreError> {
        timed("record_usage", async {
            match self {
                Store::Sqlite(db) => db.record_usage(records).await,
                Store::Postgres(pg) => pg.record_usage(records).await,
            }
        })
        .await
    }

    /// An org's usage in a time range, summed by the filter's columns.
    pub async fn usage(&self, filter: UsageFilter) -> Result<Vec<UsageRow>, StoreError> {
        match self {
            Store::Sqlite(db) => db.usage(filter).await,
            Store::Postgres(pg) => pg.usage(filter).await,
        }
    }
}

/// Runs a write, recording how long it took to commit.
async fn timed<T>(operation: &'static str, write: impl Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let written = write.await;
    crate::metrics::store_write(operation, started.elapsed());
    written
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn message(role: &str, content: &str) -> StoredMessage {
        StoredMessage::text(role, content.into())
    }

    #[test]
    fn storable_text_replaces_only_nul_and_copies_nothing_without_one() {
        assert_eq!(storable("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
        assert!(matches!(
            storable("plain é"),
            std::borrow::Cow::Borrowed("plain é")
        ));
    }

    fn connection(id: &str, org: &str, server_id: &str) -> ConnectionRow {
        let tool = |slug: &str| ConnectionToolRow {
            slug: slug.into(),
            name: slug.into(),
            description: "d".into(),
            read_only: true,
            enabled: true,
        };
        ConnectionRow {
            id: id.into(),
            org: org.into(),
            name: server_id.into(),
            server_id: server_id.into(),
            url: "http://x".into(),
            auth_type: "none".into(),
            header_names: vec!["X-A".into()],
            credentials: vec![1, 2],
            created_at: format!("2026-01-01T00:00:0{}Z", id.len() % 10),
            tools: vec![tool("b"), tool("a")],
        }
    }

    fn call(org: &str, tool: &str) -> ToolCallRecord {
        ToolCallRecord {
            at: "2026-01-01T00:00:00Z".into(),
            org: Some(org.into()),
            api_key: None,
            end_user_id: None,
            connection_id: Some("c1".into()),
            server: "s".into(),
            tool: tool.into(),
            mode: "mcp_pool".into(),
            reason: "simple_chat".into(),
            duration_ms: 1.5,
            success: true,
            error: None,
        }
    }

    /// What every backend must do alike.
    async fn behaves(store: Store) {
        let session = store.create_session("acme").await.unwrap();
        assert!(
            store
                .history("globex", &session.id)
                .await
                .unwrap()
                .is_none()
        );
        let before = store
            .open_exchange("acme", &session.id, message("user", "hi"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(before.history.len(), 0);
        assert!(
            store
                .open_exchange("globex", &session.id, message("user", "x"))
                .await
                .unwrap()
                .is_none(),
            "another tenant's session is not found"
        );
        store
            .append(
                &session.id,
                vec![message("assistant", "hello")],
                before.lease,
            )
            .await
            .unwrap();
        let history = store.history("acme", &session.id).await.unwrap().unwrap();
        let contents: Vec<&str> = history.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["hi", "hello"]);
        assert_eq!(store.sessions("acme").await.unwrap()[0].message_count, 2);
        assert!(store.sessions("").await.unwrap().is_empty());
        assert!(
            store
                .append("nope", vec![message("user", "x")], None)
                .await
                .is_err()
        );

        let server = StoredServer {
            tenant: "acme".into(),
            name: "py".into(),
            config: "{}".into(),
            secrets: Some(vec![9]),
            reach_any: true,
        };
        store.save_server(server.clone()).await.unwrap();
        assert_eq!(store.servers().await.unwrap(), [server]);
        store.remove_server("acme", "py").await.unwrap();
        assert!(store.servers().await.unwrap().is_empty());

        assert!(
            store
                .insert_connection(connection("c1", "acme", "crm"))
                .await
                .unwrap()
        );
        assert!(
            !store
                .insert_connection(connection("c2", "acme", "crm"))
                .await
                .unwrap(),
            "the server id is taken in the org"
        );
        assert!(
            store
                .insert_connection(connection("c3", "globex", "crm"))
                .await
                .unwrap()
        );
        let row = store.connection("acme", "c1").await.unwrap().unwrap();
        let slugs: Vec<&str> = row.tools.iter().map(|t| t.slug.as_str()).collect();
        assert_eq!(slugs, ["b", "a"], "tools keep their order");
        assert_eq!(row.header_names, ["X-A"]);
        assert!(store.connection("globex", "c1").await.unwrap().is_none());
        assert!(
            store
                .set_tool_enabled("acme", "c1", "a", false)
                .await
                .unwrap()
        );
        assert!(
            !store
                .set_tool_enabled("globex", "c1", "a", false)
                .await
                .unwrap()
        );
        assert!(!store.connection("acme", "c1").await.unwrap().unwrap().tools[1].enabled);
        assert_eq!(store.connections(None).await.unwrap().len(), 2);
        assert!(!store.delete_connection("globex", "c1").await.unwrap());
        assert!(store.delete_connection("acme", "c1").await.unwrap());
        assert_eq!(store.connections(Some("acme")).await.unwrap().len(), 0);

        store.log_tool_call(call("acme", "first")).await.unwrap();
        store.log_tool_call(call("acme", "second")).await.unwrap();
        store.log_tool_call(call("globex", "theirs")).await.unwrap();
        let calls = store
            .tool_calls("acme", Some("c1".into()), 10)
            .await
            .unwrap();
        let tools: Vec<&str> = calls.iter().map(|c| c.tool.as_str()).collect();
        assert_eq!(tools, ["second", "first"], "newest first, one org's");
        assert_eq!(store.tool_calls("acme", None, 1).await.unwrap().len(), 1);

        usage_sums_by_any_column(&store).await;
        store.ping().await.unwrap();
    }

    async fn usage_sums_by_any_column(store: &Store) {
        let used =
            |at: &str, org: &str, key: Option<&str>, model: &str, input, output| UsageRecord {
                at: at.into(),
                org: org.into(),
                api_key: key.map(Into::into),
                provider: "openai".into(),
                model: model.into(),
                requests: 2,
                input_tokens: input,
                output_tokens: output,
            };
        store
            .record_usage(vec![
                used("2026-01-01T10:00:00Z", "acme", Some("k1"), "a", 10, 1),
                used("2026-01-01T11:00:00Z", "acme", None, "b", 20, 2),
            ])
            .await
            .unwrap();
        store
            .record_usage(vec![
                used(
                    "2026-01-02T09:00:00Z",
                    "acme",
                    Some("k1"),
                    "a",
                    5_000_000_000,
                    3,
                ),
                used(
                    "2026-01-01T12:00:00Z",
                    "globex",
                    Some("k2"),
                    "a",
                    1000,
                    1000,
                ),
            ])
            .await
            .unwrap();
        let sum = |from: Option<&str>, to: Option<&str>, group_by: Vec<UsageColumn>| {
            store.usage(UsageFilter {
                org: "acme".into(),
                from: from.map(Into::into),
                to: to.map(Into::into),
                group_by,
            })
        };
        let total = sum(None, None, vec![]).await.unwrap();
        assert_eq!(
            total,
            [UsageRow {
                group: vec![],
                requests: 6,
                input_tokens: 5_000_000_030,
                output_tokens: 6
            }],
            "one org's, and counts past 32 bits"
        );
        let by_day = sum(None, None, vec![UsageColumn::Day, UsageColumn::Model])
            .await
            .unwrap();
        let groups: Vec<(Vec<String>, u64)> = by_day
            .into_iter()
            .map(|r| (r.group, r.input_tokens))
            .collect();
        assert_eq!(
            groups,
            [
                (vec!["2026-01-01".into(), "a".into()], 10),
                (vec!["2026-01-01".into(), "b".into()], 20),
                (vec!["2026-01-02".into(), "a".into()], 5_000_000_000),
            ]
        );
        let by_key = sum(
            Some("2026-01-01T11:00:00Z"),
            Some("2026-01-02T00:00:00Z"),
            vec![UsageColumn::Key, UsageColumn::Org, UsageColumn::Provider],
        )
        .await
        .unwrap();
        assert_eq!(by_key.len(), 1, "from is inclusive, to exclusive");
        assert_eq!(by_key[0].group, ["", "acme", "openai"]);
        let none = sum(Some("2027-01-01T00:00:00Z"), None, vec![UsageColumn::Model])
            .await
            .unwrap();
        assert!(none.is_empty());
    }

    fn limits() -> PoolLimits {
        PoolLimits {
            timeout: Duration::from_secs(10),
            connections: 4,
        }
    }

    #[tokio::test]
    async fn sqlite_keeps_what_every_backend_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let database = Database::Sqlite(dir.path().join("agenthost.db"));
        behaves(Store::open(&database, limits()).await.unwrap()).await;
    }

    #[tokio::test]
    async fn postgres_keeps_what_every_backend_keeps_and_tells_the_replicas() {
        let database = Database::Postgres(testkit::postgres::fresh_database());
        // Replicas starting together take turns to migrate.
        let (store, again) = tokio::join!(
            Store::open(&database, limits()),
            Store::open(&database, limits())
        );
        let (store, again) = (store.unwrap(), again.unwrap());
        // Opening waited until it listens: what follows is heard.
        let mut changes = store.changes().unwrap();
        behaves(store).await;
        let mut seen = Vec::new();
        while let Ok(Ok(change)) =
            tokio::time::timeout(Duration::from_millis(500), changes.recv()).await
        {
            seen.push(change);
        }
        assert!(seen.contains(&Change::Servers), "{seen:?}");
        assert!(
            seen.contains(&Change::Connections {
                org: "globex".into()
            }),
            "{seen:?}"
        );
        assert!(
            again.ping().await.is_ok(),
            "a second replica migrated nothing twice"
        );
    }

    /// Two replicas' stores on one fresh PostgreSQL database.
    async fn two_replicas() -> (Store, Store) {
        let database = Database::Postgres(testkit::postgres::fresh_database());
        (
            Store::open(&database, limits()).await.unwrap(),
            Store::open(&database, limits()).await.unwrap(),
        )
    }

    #[tokio::test]
    async fn a_session_is_held_by_one_chat_at_a_time_across_replicas() {
        let (a, b) = two_replicas().await;
        let (s, t) = (
            a.create_session("acme").await.unwrap().id,
            a.create_session("acme").await.unwrap().id,
        );
        let held = a
            .open_exchange("acme", &s, message("user", "first"))
            .await
            .unwrap()
            .unwrap();
        let waiting = tokio::spawn({
            let s = s.clone();
            async move {
                let opened = b.open_exchange("acme", &s, message("user", "second"));
                opened.await.unwrap().unwrap().history
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "the other replica waits");
        let other = a
            .open_exchange("acme", &t, message("user", "elsewhere"))
            .await
            .unwrap()
            .unwrap();
        a.append(&s, vec![message("assistant", "one")], held.lease)
            .await
            .unwrap();
        let history = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        let contents: Vec<&str> = history.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["first", "one"], "the whole first exchange");
        drop(other);
    }

    #[tokio::test]
    async fn chats_committed_in_groups_keep_each_sessions_exchanges_whole() {
        let (a, b) = two_replicas().await;
        let mut sessions = Vec::new();
        for _ in 0..8 {
            sessions.push(a.create_session("acme").await.unwrap().id);
        }
        let chat = |store: Store, session: String, label: String| async move {
            let opened = store
                .open_exchange("acme", &session, message("user", &label))
                .await
                .unwrap()
                .unwrap();
            tokio::task::yield_now().await;
            store
                .append(&session, vec![message("assistant", &label)], opened.lease)
                .await
                .unwrap();
        };
        let mut chats = Vec::new();
        for (n, session) in sessions.iter().enumerate() {
            for round in 0..3 {
                for (replica, store) in [("a", &a), ("b", &b)] {
                    let label = format!("{n}-{replica}{round}");
                    chats.push(tokio::spawn(chat(store.clone(), session.clone(), label)));
                }
            }
        }
        let strangers = b.open_exchange("globex", &sessions[0], message("user", "mine?"));
        assert!(strangers.await.unwrap().is_none(), "another org's session");
        for chat in chats {
            chat.await.unwrap();
        }
        for session in &sessions {
            let history = a.history("acme", session).await.unwrap().unwrap();
            assert_eq!(history.len(), 12, "six exchanges of two messages");
            for exchange in history.chunks(2) {
                assert_eq!(
                    (exchange[0].role.as_str(), exchange[1].role.as_str()),
                    ("user", "assistant")
                );
                assert_eq!(exchange[0].content, exchange[1].content, "{history:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_message_postgres_refuses_fails_its_own_chat_and_not_the_others_beside_it() {
        let database = Database::Postgres(testkit::postgres::fresh_database());
        let store = Store::open(&database, limits()).await.unwrap();
        let mut sessions = Vec::new();
        for _ in 0..3 {
            sessions.push(store.create_session("acme").await.unwrap().id);
        }
        let (first, refused, third) = tokio::join!(
            store.open_exchange("acme", &sessions[0], message("user", "one")),
            store.open_exchange("acme", &sessions[1], message("user", "t\0o")),
            store.open_exchange("acme", &sessions[2], message("user", "three")),
        );
        assert!(first.unwrap().is_some() && third.unwrap().is_some());
        let error = refused.err().expect("PostgreSQL text cannot hold NUL");
        assert!(error.to_string().contains("0x00"), "{error}");
        let again = store
            .open_exchange("acme", &sessions[1], message("user", "two"))
            .await
            .unwrap()
            .expect("the refused chat took no lease");
        assert!(again.history.is_empty(), "nothing of it was stored");
    }
}
