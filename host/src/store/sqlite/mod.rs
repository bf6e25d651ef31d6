//! Persistence in SQLite under `data_dir`: chat sessions with their
//! history, MCP servers registered at run time, org connections, the
//! tool-call log and token usage.
//!
//! WAL mode with `synchronous = FULL`: a write that returned is on disk,
//! so anything acknowledged to a client survives a crash. Each write is
//! atomic, so a crash never leaves half of an exchange; concurrent writes
//! share a commit (see `writer`). rusqlite is blocking: reads run on
//! tokio's blocking pool, writes on the writer thread.

use std::path::Path;
use std::sync::{Arc, Mutex};

mod connections;
mod servers;
mod tool_calls;
mod usage;
mod writer;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SessionSummary, StoreError, StoredMessage};
use crate::timestamp::now;

/// Every commit writes each page it touched to the WAL, so the schema
/// keeps writes to few pages: sessions are keyed by their id alone
/// (`WITHOUT ROWID`, no second index), and messages and tool-call log
/// rows, never deleted, take increasing `seq`s without `AUTOINCREMENT`'s
/// counter row. Databases made with the first schema keep it and work the
/// same.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    org TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    name TEXT,
    tool_call_id TEXT,
    tool_calls TEXT,
    timestamp TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages(session_id, seq);
CREATE TABLE IF NOT EXISTS registered_servers (
    org TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    secrets BLOB,
    reach_any INTEGER NOT NULL,
    registered_at TEXT NOT NULL,
    PRIMARY KEY (org, name)
);
CREATE TABLE IF NOT EXISTS connections (
    id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    name TEXT NOT NULL,
    server_id TEXT NOT NULL,
    url TEXT NOT NULL,
    auth_type TEXT NOT NULL,
    header_names TEXT NOT NULL,
    credentials BLOB NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (org, server_id)
);
CREATE TABLE IF NOT EXISTS connection_tools (
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    read_only INTEGER NOT NULL,
    enabled INTEGER NOT NULL,
    PRIMARY KEY (connection_id, slug)
);
CREATE TABLE IF NOT EXISTS tool_calls (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    org TEXT,
    api_key TEXT,
    end_user_id TEXT,
    connection_id TEXT,
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    mode TEXT NOT NULL,
    reason TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    success INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS tool_calls_by_org ON tool_calls(org, seq);
CREATE TABLE IF NOT EXISTS usage (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    org TEXT NOT NULL,
    api_key TEXT,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_by_org ON usage(org, at);
";

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    writer: writer::Writer,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let failed = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
        }
        let conn = Connection::open(path).map_err(|e| failed(e.to_string()))?;
        restrict_permissions(path);
        Self::init(conn).map_err(|e| failed(e.to_string()))
    }

    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Without it, SQLite re-plans a cached statement whenever a newly
        // bound value might change the plan: every history read did.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        let conn = Arc::new(Mutex::new(conn));
        let writer = writer::Writer::start(conn.clone()).map_err(|e| StoreError::Open {
            path: "the database".into(),
            reason: format!("cannot start its writer thread: {e}"),
        })?;
        Ok(SqliteStore { conn, writer })
    }

    /// Runs a write in the writer's next group: atomic, and on disk when
    /// it returns.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer.write(work).await
    }

    /// Runs a read on the blocking pool; it waits while a group commits.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&conn)
        })
        .await
        .map_err(|_| StoreError::Task)?
        .map_err(StoreError::from)
    }

    /// A new session of `tenant` (an org, or `""` for the local user).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.execute_batch("SELECT 1")).await
    }

    pub async fn create_session(&self, tenant: &str) -> Result<SessionSummary, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let created_at = now();
        let summary = SessionSummary {
            id: id.clone(),
            created_at: created_at.clone(),
            message_count: 0,
        };
        let tenant = tenant.to_owned();
        self.write(move |c| {
            c.prepare_cached("INSERT INTO sessions (id, created_at, org) VALUES (?1, ?2, ?3)")?
                .execute(params![id, created_at, tenant])
        })
        .await?;
        Ok(summary)
    }

    /// `tenant`'s sessions.
    pub async fn sessions(&self, tenant: &str) -> Result<Vec<SessionSummary>, StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |c| {
            let mut query = c.prepare(
                "SELECT s.id, s.created_at, COUNT(m.seq) FROM sessions s
                 LEFT JOIN messages m ON m.session_id = s.id
                 WHERE s.org = ?1
                 GROUP BY s.id ORDER BY s.created_at, s.id",
            )?;
            let rows = query.query_map([tenant], |row| {
                Ok(SessionSummary {
                    id: row.get(0)?,
                    created_at: row.get(1)?,
                    message_count: row.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// The session's messages in order, or `None` for a session that is
    /// not `tenant`'s.
    pub async fn history(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.read(move |c| {
            if session_row(c, &tenant, &id)?.is_none() {
                return Ok(None);
            }
            read_messages(c, &id).map(Some)
        })
        .await
    }

    /// Starts an exchange: appends the user's message and returns the
    /// history before it, in one transaction; `None` for a session that is
    /// not `tenant`'s.
    pub async fn open_exchange(
        &self,
        tenant: &str,
        id: &str,
        user: StoredMessage,
    ) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |c| {
            if session_row(c, &tenant, &id)?.is_none() {
                return Ok(None);
            }
            let history = read_messages(c, &id)?;
            insert_messages(c, &id, &[user])?;
            Ok(Some(history))
        })
        .await
    }

    /// Appends messages to a session in one transaction.
    pub async fn append(
        &self,
        session: &str,
        messages: Vec<StoredMessage>,
    ) -> Result<(), StoreError> {
        let session = session.to_owned();
        self.write(move |c| insert_messages(c, &session, &messages))
            .await
    }
}

fn read_messages(c: &Connection, session: &str) -> rusqlite::Result<Vec<StoredMessage>> {
    let mut query = c.prepare_cached(
        "SELECT role, content, name, tool_call_id, tool_calls, timestamp
         FROM messages WHERE session_id = ?1 ORDER BY seq",
    )?;
    let rows = query.query_map([session], |row| {
        let tool_calls: Option<String> = row.get(4)?;
        Ok(StoredMessage {
            role: row.get(0)?,
            content: row.get(1)?,
            name: row.get(2)?,
            tool_call_id: row.get(3)?,
            tool_calls: tool_calls.and_then(|t| serde_json::from_str(&t).ok()),
            timestamp: row.get(5)?,
        })
    })?;
    rows.collect()
}

fn insert_messages(
    c: &Connection,
    session: &str,
    messages: &[StoredMessage],
) -> rusqlite::Result<()> {
    let mut insert = c.prepare_cached(
        "INSERT INTO messages (session_id, role, content, name, tool_call_id, tool_calls, timestamp)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for m in messages {
        let tool_calls = m.tool_calls.as_ref().map(|t| t.to_string());
        insert.execute(params![
            session,
            m.role,
            m.content,
            m.name,
            m.tool_call_id,
            tool_calls,
            m.timestamp
        ])?;
    }
    Ok(())
}

fn session_row(c: &Connection, tenant: &str, id: &str) -> rusqlite::Result<Option<()>> {
    c.prepare_cached("SELECT 1 FROM sessions WHERE id = ?1 AND org = ?2")?
        .query_row([id, tenant], |_| Ok(()))
        .optional()
}

/// Brings a database made by an earlier version up to the schema: sessions
/// gain their tenant, and run-time servers move to the table that keys
/// them by tenant (those of the local user, `""`, as before keys).
fn migrate(c: &Connection) -> rusqlite::Result<()> {
    let has_org = c
        .prepare("SELECT 1 FROM pragma_table_info('sessions') WHERE name = 'org'")?
        .exists([])?;
    if !has_org {
        c.execute_batch("ALTER TABLE sessions ADD COLUMN org TEXT NOT NULL DEFAULT ''")?;
    }
    let old_servers = c
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'mcp_servers'")?
        .exists([])?;
    if old_servers {
        c.execute_batch(
            "BEGIN;
             INSERT OR IGNORE INTO registered_servers (org, name, config, secrets, reach_any, registered_at)
                 SELECT '', name, config, NULL, 1, registered_at FROM mcp_servers;
             DROP TABLE mcp_servers;
             COMMIT;",
        )?;
    }
    Ok(())
}

/// The database holds conversations and server configurations (which may
/// carry credentials): readable by the owner only.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!("cannot restrict permissions of {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredServer;

    fn message(role: &str, content: &str) -> StoredMessage {
        StoredMessage::text(role, content.into())
    }

    fn server() -> StoredServer {
        StoredServer {
            tenant: "acme".into(),
            name: "py".into(),
            config: "{\"transport\":\"sse\"}".into(),
            secrets: Some(vec![1, 2, 3]),
            reach_any: false,
        }
    }

    #[tokio::test]
    async fn sessions_history_and_servers_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db/agenthost.db");
        let id = {
            let store = SqliteStore::open(&path).unwrap();
            let session = store.create_session("acme").await.unwrap();
            let mut tool = message("tool", "{}");
            tool.name = Some("demo__calculate".into());
            tool.tool_call_id = Some("call_1".into());
            store
                .append(&session.id, vec![message("user", "hi"), tool])
                .await
                .unwrap();
            store.save_server(server()).await.unwrap();
            session.id
        };
        let store = SqliteStore::open(&path).unwrap();
        let sessions = store.sessions("acme").await.unwrap();
        assert_eq!(
            (sessions[0].id.as_str(), sessions[0].message_count),
            (id.as_str(), 2)
        );
        assert!(store.sessions("globex").await.unwrap().is_empty());
        let history = store.history("acme", &id).await.unwrap().unwrap();
        assert_eq!(history[1].tool_call_id.as_deref(), Some("call_1"));
        assert!(store.history("globex", &id).await.unwrap().is_none());
        assert!(store.history("acme", "nope").await.unwrap().is_none());
        assert_eq!(store.servers().await.unwrap(), [server()]);
        store.remove_server("globex", "py").await.unwrap();
        assert_eq!(
            store.servers().await.unwrap().len(),
            1,
            "another org's name"
        );
        store.remove_server("acme", "py").await.unwrap();
        assert!(store.servers().await.unwrap().is_empty());
        assert!(
            store
                .append("nope", vec![message("user", "x")])
                .await
                .is_err(),
            "foreign key enforced"
        );
    }

    #[tokio::test]
    async fn a_database_made_with_the_first_schema_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agenthost.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE sessions (id TEXT PRIMARY KEY, created_at TEXT NOT NULL);
                 CREATE TABLE messages (
                     seq INTEGER PRIMARY KEY AUTOINCREMENT,
                     session_id TEXT NOT NULL REFERENCES sessions(id),
                     role TEXT NOT NULL, content TEXT NOT NULL, name TEXT,
                     tool_call_id TEXT, tool_calls TEXT, timestamp TEXT NOT NULL);
                 INSERT INTO sessions VALUES ('old', '2026-01-01T00:00:00Z');
                 INSERT INTO messages (session_id, role, content, timestamp)
                     VALUES ('old', 'user', 'first', '2026-01-01T00:00:00Z');
                 CREATE TABLE mcp_servers (name TEXT PRIMARY KEY, config TEXT NOT NULL,
                     registered_at TEXT NOT NULL);
                 INSERT INTO mcp_servers VALUES ('py', '{}', '2026-01-01T00:00:00Z');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        store
            .append("old", vec![message("assistant", "second")])
            .await
            .unwrap();
        let history = store.history("", "old").await.unwrap().unwrap();
        let contents: Vec<&str> = history.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["first", "second"]);
        let fresh = store.create_session("").await.unwrap();
        assert_eq!(
            store.sessions("").await.unwrap().len(),
            2,
            "the local user's"
        );
        assert!(
            store
                .history("", &fresh.id)
                .await
                .unwrap()
                .unwrap()
                .is_empty()
        );
        let servers = store.servers().await.unwrap();
        assert_eq!(
            (servers[0].tenant.as_str(), servers[0].name.as_str()),
            ("", "py"),
            "the local user's server, moved to the new table"
        );
        drop(store);
        SqliteStore::open(&path).unwrap();
    }
}
