//! The MCP client pool: one rmcp client session per server.
//!
//! Sessions open on first use and are kept. A session whose server died
//! (child exited, connection dropped) is noticed on the next use and
//! reopened, so a crash costs one failed call, not the server for good.
//! Dropping a session kills its child process; children are also bound to
//! this process's life (see [`connect`]).
//!
//! Configured servers live in the pool; ad-hoc servers named by a request
//! (a URL) live as long as the request's [`ToolSet`] holds them.

mod backoff;
mod connect;
pub mod end_user;
pub mod names;
mod sse_client;
mod url_policy;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, RequestMetaObject, Tool,
};
use serde_json::{Map, Value};

use crate::config::{McpServerConfig, Transport};
use names::NameAllocator;
pub use url_policy::UrlPolicy;

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("unknown MCP server `{id}` (configured: {known})")]
    UnknownServer { id: String, known: String },
    #[error("MCP server `{server}` has no tool `{tool}` (it has: {available})")]
    UnknownTool {
        server: String,
        tool: String,
        available: String,
    },
    #[error("{0}")]
    Refused(String),
    #[error("a server named `{0}` already exists")]
    Duplicate(String),
    #[error("MCP server `{0}` is defined in the config file; remove it there")]
    Configured(String),
    #[error("MCP server `{0}` was removed")]
    Removed(String),
    #[error("failed to connect to MCP server `{id}`: {reason}")]
    Connect { id: String, reason: String },
    #[error("tool `{tool}` of MCP server `{server}` did not answer within {secs} s")]
    Timeout {
        server: String,
        tool: String,
        secs: f64,
    },
    #[error("tool `{tool}` of MCP server `{server}` failed: {reason}")]
    Call {
        server: String,
        tool: String,
        reason: String,
    },
    #[error(
        "tool `{tool}` of MCP server `{server}` returned {bytes} bytes, over the limit of {limit} bytes for a tool result; the result was dropped"
    )]
    TooLarge {
        server: String,
        tool: String,
        bytes: usize,
        limit: usize,
    },
}

/// A tool as the model sees it, and the server that runs it.
#[derive(Debug, Clone)]
pub struct ToolBinding {
    /// Model-facing, unique in its [`ToolSet`].
    pub name: String,
    /// The server's id, as clients see it.
    pub server: String,
    pub tool: String,
    pub description: String,
    /// JSON Schema text.
    pub input_schema: String,
    /// The server's `readOnlyHint`.
    pub read_only: bool,
    pub entry: Arc<ServerEntry>,
}

/// The tools offered to the model in one request.
#[derive(Debug, Clone, Default)]
pub struct ToolSet {
    pub tools: Vec<ToolBinding>,
}

impl ToolSet {
    pub fn find(&self, model_name: &str) -> Option<&ToolBinding> {
        self.tools.iter().find(|t| t.name == model_name)
    }
}

/// Tools of one server to offer: all of them, or the named ones.
pub struct Selection {
    pub server: Arc<ServerEntry>,
    pub only: Option<Vec<String>>,
}

impl Selection {
    pub fn all(server: Arc<ServerEntry>) -> Selection {
        Selection { server, only: None }
    }
}

/// Where a server came from; only run-time ones can be removed by API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Config,
    Runtime,
    /// Named by one request's URL.
    AdHoc,
    /// An org's connection, outside the pool (see `crate::connections`).
    Connection,
}

pub struct ServerEntry {
    pub config: McpServerConfig,
    pub origin: Origin,
    /// The org connection this server is, if it is one.
    pub connection: Option<String>,
    /// Set once removed from the pool: holders fail instead of reconnecting.
    removed: AtomicBool,
    /// For ad-hoc servers: a client pinned to the addresses that passed
    /// the URL policy.
    http_client: Option<reqwest::Client>,
    /// Largest tool result, serialized, handed on to the caller.
    result_limit: usize,
    slot: tokio::sync::Mutex<Slot>,
}

/// The live session, if any, and when a failed start may be retried.
#[derive(Default)]
struct Slot {
    session: Option<Session>,
    backoff: backoff::Backoff,
}

impl std::fmt::Debug for ServerEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerEntry")
            .field("id", &self.config.id)
            .finish_non_exhaustive()
    }
}

struct Session {
    client: connect::Client,
    tools: Arc<Vec<Tool>>,
    offered: Arc<Vec<OfferedTool>>,
    connected_at: String,
}

/// A server's tool as chats offer it. Prepared once per session, not per
/// chat: serializing the schemas for every chat cost ~2% of its CPU.
#[derive(Debug)]
pub struct OfferedTool {
    /// The server's own name for it.
    pub name: String,
    pub description: String,
    /// JSON Schema text.
    pub input_schema: String,
    /// The server's `readOnlyHint`, or the config's override.
    pub read_only: bool,
}

impl OfferedTool {
    fn prepare(config: &McpServerConfig, tool: &Tool) -> OfferedTool {
        OfferedTool {
            name: tool.name.to_string(),
            description: tool.description.as_deref().unwrap_or_default().to_owned(),
            input_schema: serde_json::to_string(&*tool.input_schema)
                .unwrap_or_else(|_| "{}".into()),
            read_only: config.is_read_only(
                &tool.name,
                tool.annotations.as_ref().and_then(|a| a.read_only_hint),
            ),
        }
    }
}

impl Session {
    fn is_alive(&self) -> bool {
        !self.client.is_closed() && !self.client.peer().is_transport_closed()
    }

    /// Ends the session, stopping its child process.
    async fn stop(self, server: &str) {
        if let Err(e) = self.client.cancel().await {
            tracing::warn!(server, "closing MCP session: {e}");
        }
    }
}

/// Measures serialized JSON without keeping it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ServerEntry {
    fn new(
        config: McpServerConfig,
        origin: Origin,
        http_client: Option<reqwest::Client>,
        connection: Option<String>,
        result_limit: usize,
    ) -> Arc<ServerEntry> {
        Arc::new(ServerEntry {
            config,
            origin,
            connection,
            removed: AtomicBool::new(false),
            http_client,
            result_limit,
            slot: Default::default(),
        })
    }

    /// What `pick` takes from the live session, opening one if needed.
    async fn session<T>(&self, pick: impl FnOnce(&Session) -> T) -> Result<T, McpError> {
        let mut slot = self.slot.lock().await;
        if self.removed.load(Ordering::SeqCst) {
            return Err(McpError::Removed(self.config.id.clone()));
        }
        if let Some(session) = slot.session.as_ref().filter(|s| s.is_alive()) {
            return Ok(pick(session));
        }
        // Dropping a dead session reaps its child before a new one starts.
        slot.session = None;
        let failed = |reason| McpError::Connect {
            id: self.config.id.clone(),
            reason,
        };
        slot.backoff.check(Instant::now()).map_err(failed)?;
        let timeout = self.config.startup_timeout();
        let opened = tokio::time::timeout(timeout, self.open())
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "it did not start and list its tools within {} s",
                    timeout.as_secs_f64()
                ))
            });
        let session = match opened {
            Ok(session) => session,
            Err(reason) => {
                slot.backoff.failed(Instant::now(), &reason);
                return Err(failed(reason));
            }
        };
        slot.backoff.succeeded();
        Ok(pick(slot.session.insert(session)))
    }

    async fn open(&self) -> Result<Session, String> {
        let client = connect::connect(&self.config, self.http_client.clone()).await?;
        let tools = client
            .peer()
            .list_all_tools()
            .await
            .map_err(|e| format!("tools/list failed: {e}"))?;
        tracing::info!(server = %self.config.id, tools = tools.len(), "MCP server connected");
        let offered = tools
            .iter()
            .map(|tool| OfferedTool::prepare(&self.config, tool))
            .collect();
        Ok(Session {
            client,
            tools: Arc::new(tools),
            offered: Arc::new(offered),
            connected_at: crate::store::now(),
        })
    }

    /// Opens (or reuses) the session and returns the server's tools.
    pub async fn tools(&self) -> Result<Arc<Vec<Tool>>, McpError> {
        self.session(|s| s.tools.clone()).await
    }

    /// Opens (or reuses) the session and returns its tools as offered.
    pub async fn offered(&self) -> Result<Arc<Vec<OfferedTool>>, McpError> {
        self.session(|s| s.offered.clone()).await
    }

    pub async fn is_connected(&self) -> bool {
        self.snapshot().await.is_some()
    }

    /// The tools and connection time of a live session, without opening one.
    pub async fn snapshot(&self) -> Option<(Arc<Vec<Tool>>, String)> {
        let slot = self.slot.lock().await;
        slot.session
            .as_ref()
            .filter(|s| s.is_alive())
            .map(|s| (s.tools.clone(), s.connected_at.clone()))
    }

    /// Stops the server for good: holders get an error, not a reconnect.
    pub async fn retire(&self) {
        self.removed.store(true, Ordering::SeqCst);
        self.close().await;
    }

    async fn close(&self) {
        let session = self.slot.lock().await.session.take();
        if let Some(session) = session {
            session.stop(&self.config.id).await;
        }
    }

    /// Calls one tool under the server's timeout, pinned to `end_user`
    /// when given (see [`end_user`]).
    pub async fn call(
        &self,
        tool: &str,
        arguments: Map<String, Value>,
        end_user: Option<&str>,
    ) -> Result<CallToolResult, McpError> {
        let server = &self.config.id;
        let (peer, tools) = self
            .session(|s| (s.client.peer().clone(), s.tools.clone()))
            .await?;
        let timeout = self.config.call_timeout();
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = Some(arguments);
        if let Some(end_user) = end_user {
            let mut meta = RequestMetaObject::new();
            meta.insert(end_user::META_KEY.into(), end_user.into());
            params.meta = Some(meta);
        }
        let failed = |reason: String| McpError::Call {
            server: server.clone(),
            tool: tool.to_owned(),
            reason,
        };
        match tokio::time::timeout(timeout, peer.call_tool_once(params)).await {
            Err(_) => {
                self.stop_if_stuck(&tools).await;
                Err(McpError::Timeout {
                    server: server.clone(),
                    tool: tool.to_owned(),
                    secs: timeout.as_secs_f64(),
                })
            }
            Ok(Err(rmcp::ServiceError::TransportClosed)) => Err(failed(
                "the server went away mid-call (its process exited or its connection closed)"
                    .into(),
            )),
            Ok(Err(rmcp::ServiceError::UnexpectedResponse)) => Err(failed(
                "the server answered with something that is not a tool result (malformed JSON-RPC)"
                    .into(),
            )),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Ok(Ok(CallToolResponse::Complete(result))) => self.within_limit(tool, result),
            Ok(Ok(_)) => Err(failed(
                "the tool asked for user input, which is not supported".into(),
            )),
        }
    }

    /// A stdio server that let a call time out is presumed stuck (a hung
    /// tool often hangs the whole process, and restarting is the only
    /// remedy a client has): it is stopped, to start afresh on next use.
    /// `tools` names the session that timed out, so a session started
    /// since is left alone.
    async fn stop_if_stuck(&self, tools: &Arc<Vec<Tool>>) {
        if self.config.transport != Transport::Stdio {
            return;
        }
        let mut slot = self.slot.lock().await;
        if slot
            .session
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(&s.tools, tools))
            && let Some(session) = slot.session.take()
        {
            tracing::warn!(server = %self.config.id, "a tool call timed out; stopping the server");
            // The graceful stop waits seconds for the child; the caller
            // has waited long enough.
            let id = self.config.id.clone();
            tokio::spawn(async move { session.stop(&id).await });
        }
    }

    /// A result too big to hand on becomes an error the model can read,
    /// rather than megabytes in its context and the client's stream.
    fn within_limit(&self, tool: &str, result: CallToolResult) -> Result<CallToolResult, McpError> {
        let mut counted = ByteCount(0);
        let bytes = serde_json::to_writer(&mut counted, &result).map_or(0, |()| counted.0);
        if bytes <= self.result_limit {
            return Ok(result);
        }
        Err(McpError::TooLarge {
            server: self.config.id.clone(),
            tool: tool.to_owned(),
            bytes,
            limit: self.result_limit,
        })
    }
}

pub struct McpPool {
    servers: RwLock<Vec<Arc<ServerEntry>>>,
    url_policy: UrlPolicy,
    result_limit: usize,
}

impl McpPool {
    /// `result_limit` caps a tool result's serialized size, in bytes.
    pub fn new(
        configs: Vec<McpServerConfig>,
        url_policy: UrlPolicy,
        result_limit: usize,
    ) -> McpPool {
        let servers = configs
            .into_iter()
            .map(|config| ServerEntry::new(config, Origin::Config, None, None, result_limit))
            .collect();
        McpPool {
            servers: RwLock::new(servers),
            url_policy,
            result_limit,
        }
    }

    pub fn servers(&self) -> Vec<Arc<ServerEntry>> {
        self.servers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn server(&self, id: &str) -> Result<Arc<ServerEntry>, McpError> {
        let servers = self.servers();
        servers
            .iter()
            .find(|s| s.config.id == id)
            .cloned()
            .ok_or_else(|| McpError::UnknownServer {
                id: id.to_owned(),
                known: servers
                    .iter()
                    .map(|s| s.config.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// An unregistered streamable-HTTP server named by a request, after
    /// the URL policy approved every address it resolves to.
    pub async fn ad_hoc(
        &self,
        url: &str,
        headers: BTreeMap<String, String>,
    ) -> Result<Arc<ServerEntry>, McpError> {
        let (checked, client) = self.pinned_client(url).await?;
        let id = match checked.url.port() {
            Some(port) => format!("{}:{port}", checked.host),
            None => checked.host.clone(),
        };
        let config = McpServerConfig::streamable_http(id, checked.url.to_string(), headers);
        Ok(ServerEntry::new(
            config,
            Origin::AdHoc,
            Some(client),
            None,
            self.result_limit,
        ))
    }

    /// Connects every server and adds them all, or none: a server that
    /// fails to connect leaves nothing registered.
    pub async fn register(
        &self,
        configs: Vec<McpServerConfig>,
    ) -> Result<Vec<Arc<ServerEntry>>, McpError> {
        let mut entries: Vec<Arc<ServerEntry>> = Vec::with_capacity(configs.len());
        for config in configs {
            if self.server(&config.id).is_ok() || entries.iter().any(|e| e.config.id == config.id) {
                return Err(McpError::Duplicate(config.id));
            }
            entries.push(self.runtime_entry(config).await?);
        }
        for entry in &entries {
            if let Err(e) = entry.tools().await {
                for opened in &entries {
                    opened.close().await;
                }
                return Err(e);
            }
        }
        let mut servers = self.servers.write().unwrap_or_else(|p| p.into_inner());
        if let Some(taken) = entries
            .iter()
            .find(|e| servers.iter().any(|s| s.config.id == e.config.id))
        {
            return Err(McpError::Duplicate(taken.config.id.clone()));
        }
        servers.extend(entries.iter().cloned());
        Ok(entries)
    }

    /// Adds run-time servers saved before a restart, without connecting.
    pub async fn restore(&self, configs: Vec<McpServerConfig>) -> Vec<Arc<ServerEntry>> {
        let mut restored = Vec::new();
        for config in configs {
            let id = config.id.clone();
            match self.runtime_entry(config).await {
                Ok(entry) => restored.push(entry),
                Err(e) => tracing::error!(server = %id, "cannot restore MCP server: {e}"),
            }
        }
        self.servers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(restored.iter().cloned());
        restored
    }

    /// An org connection's server, kept outside the pool: it passes the
    /// same URL policy as ad-hoc servers and is only offered to its org.
    pub async fn connection_entry(
        &self,
        config: McpServerConfig,
        connection_id: String,
    ) -> Result<Arc<ServerEntry>, McpError> {
        let url = config.url.clone().unwrap_or_default();
        let (_, client) = self.pinned_client(&url).await?;
        Ok(ServerEntry::new(
            config,
            Origin::Connection,
            Some(client),
            Some(connection_id),
            self.result_limit,
        ))
    }

    /// A run-time server; URLs must pass the same policy as ad-hoc ones.
    async fn runtime_entry(&self, config: McpServerConfig) -> Result<Arc<ServerEntry>, McpError> {
        let client = match (&config.url, config.transport) {
            (Some(url), Transport::Sse | Transport::StreamableHttp) => {
                Some(self.pinned_client(url).await?.1)
            }
            _ => None,
        };
        Ok(ServerEntry::new(
            config,
            Origin::Runtime,
            client,
            None,
            self.result_limit,
        ))
    }

    /// Checks `url` against the policy and returns an HTTP client pinned to
    /// the addresses that passed, following no redirects.
    async fn pinned_client(
        &self,
        url: &str,
    ) -> Result<(url_policy::CheckedUrl, reqwest::Client), McpError> {
        let checked = self
            .url_policy
            .check(url)
            .await
            .map_err(McpError::Refused)?;
        let client = reqwest::Client::builder()
            .resolve_to_addrs(&checked.host, &checked.addrs)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| McpError::Connect {
                id: checked.host.clone(),
                reason: e.to_string(),
            })?;
        Ok((checked, client))
    }

    /// Removes a run-time server and stops it; requests still holding it
    /// get an error instead of a silent reconnect.
    pub async fn remove(&self, id: &str) -> Result<(), McpError> {
        let entry = self.server(id)?;
        if entry.origin == Origin::Config {
            return Err(McpError::Configured(id.to_owned()));
        }
        self.servers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| !Arc::ptr_eq(s, &entry));
        entry.retire().await;
        Ok(())
    }

    /// Opens (or reuses) the server's session and returns its tools.
    pub async fn connect(&self, id: &str) -> Result<Arc<Vec<Tool>>, McpError> {
        self.server(id)?.tools().await
    }

    /// Closes the server's session, stopping its child process.
    pub async fn disconnect(&self, id: &str) -> Result<(), McpError> {
        self.server(id)?.close().await;
        Ok(())
    }

    /// Every server that can be reached, all tools selected. A server that
    /// cannot be reached is left out, with a warning, so one dead server
    /// does not take every chat down with it.
    pub async fn reachable_selections(&self) -> Vec<Selection> {
        let mut selections = Vec::new();
        for server in self.servers() {
            match server.tools().await {
                Ok(_) => selections.push(Selection::all(server)),
                Err(e) => tracing::warn!("leaving out MCP server: {e}"),
            }
        }
        selections
    }

    /// The tools of every server that can be reached, named for the model.
    pub async fn reachable_tool_set(&self) -> ToolSet {
        tool_set(&self.reachable_selections().await)
            .await
            .unwrap_or_default()
    }

    /// Closes every session, stopping all child processes.
    pub async fn shutdown(&self) {
        for server in self.servers() {
            server.close().await;
        }
    }
}

/// The selected tools, named for the model.
pub async fn tool_set(selections: &[Selection]) -> Result<ToolSet, McpError> {
    let mut names = NameAllocator::default();
    let mut tools = Vec::new();
    for selection in selections {
        let entry = &selection.server;
        let id = &entry.config.id;
        let available = entry.offered().await?;
        if let Some(only) = &selection.only
            && let Some(missing) = only
                .iter()
                .find(|name| !available.iter().any(|t| &t.name == *name))
        {
            return Err(McpError::UnknownTool {
                server: id.clone(),
                tool: missing.clone(),
                available: available
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let chosen = available.iter().filter(|t| {
            selection
                .only
                .as_ref()
                .is_none_or(|only| only.contains(&t.name))
        });
        for tool in chosen {
            tools.push(ToolBinding {
                name: names.allocate(id, &tool.name),
                server: id.clone(),
                tool: tool.name.clone(),
                description: tool.description.clone(),
                input_schema: tool.input_schema.clone(),
                read_only: tool.read_only,
                entry: entry.clone(),
            });
        }
    }
    Ok(ToolSet { tools })
}

/// The text a model should read for a tool result: the text blocks, else
/// the structured content, else the whole result as JSON.
pub fn result_text(result: &CallToolResult) -> String {
    let texts: Vec<&str> = result
        .content
        .iter()
        .filter_map(|b| b.as_text())
        .map(|t| t.text.as_str())
        .collect();
    if !texts.is_empty() {
        return texts.join("\n");
    }
    let value = match &result.structured_content {
        Some(structured) => serde_json::to_string(structured),
        None => serde_json::to_string(result),
    };
    value.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ToolAccess;
    use rmcp::model::ToolAnnotations;

    #[test]
    fn an_offered_tool_carries_its_schema_as_text_and_the_configs_access() {
        let text = r#"{"properties":{"q":{"type":"string"}},"type":"object"}"#;
        let schema: Map<String, Value> = serde_json::from_str(text).unwrap();
        let tool = |name: &'static str| {
            Tool::new(name, "finds", Arc::new(schema.clone()))
                .annotate(ToolAnnotations::new().read_only(true))
        };
        let mut config =
            McpServerConfig::streamable_http("s".into(), "http://x".into(), BTreeMap::new());
        config.tool_access.insert("write".into(), ToolAccess::Write);

        let hinted = OfferedTool::prepare(&config, &tool("find"));
        assert_eq!(hinted.name, "find");
        assert_eq!(hinted.description, "finds");
        assert_eq!(hinted.input_schema, text);
        assert!(hinted.read_only, "the server's hint stands");
        let overridden = OfferedTool::prepare(&config, &tool("write"));
        assert!(!overridden.read_only, "the config overrides the hint");
    }
}
