//! One MCP server: its configuration and the life of its client session.
//!
//! A session opens on first use and is kept. A session whose server died
//! (child exited, connection dropped) is noticed on the next use and
//! reopened, so a crash costs one failed call, not the server for good.
//! Dropping a session kills its child process; children are also bound to
//! this process's life (see `connect`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Cursor, PaginatedRequestParams,
    RequestMetaObject, ServerCapabilities, Tool,
};
use rmcp::{Peer, RoleClient};
use serde_json::{Map, Value};
use tokio_util::task::AbortOnDropHandle;

use super::component::Guest;
use super::connect::{self, Link};
use super::pool::Reach;
use super::progress::{self, ProgressSink};
use super::{McpError, backoff, listing, pool_client};
use crate::config::McpServerConfig;

/// Where a server came from; only run-time ones can be removed by API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// From the config file: every tenant sees it.
    Config,
    /// Registered through the API by `owner` (an org; `None`: the local
    /// user), who alone sees it.
    Runtime { owner: Option<String>, reach: Reach },
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
    /// What it is reached through: for ad-hoc servers, a client pinned to
    /// the addresses that passed the URL policy.
    link: Link,
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
    /// Unique in this process: which session a late decision is about
    /// (its tools may be listed again, so they cannot tell).
    number: u64,
    client: connect::Client,
    /// Reads the server's word of changed tools, in the 2026-07-28 era.
    _changes: Option<AbortOnDropHandle<()>>,
    /// The instance serving it, for a component server.
    guest: Option<Arc<Guest>>,
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
    /// Whether a chat's call waits for a person (`require_approval`).
    pub needs_approval: bool,
    /// The tool exactly as the server listed it, for `/mcp/` to list on
    /// with its title, output schema, annotations and icons.
    pub listed: Arc<Tool>,
}

/// A live session as operators see it.
pub struct Snapshot {
    pub tools: Arc<Vec<Tool>>,
    pub connected_at: String,
    /// The protocol revision the server and this host agreed on.
    pub protocol_version: Option<String>,
}

/// A server's tool as the frontends list it.
#[derive(Debug, Clone)]
pub struct ToolSummary {
    pub name: String,
    pub description: String,
}

impl ToolSummary {
    pub fn of(tools: &[Tool]) -> Vec<ToolSummary> {
        tools
            .iter()
            .map(|t| ToolSummary {
                name: t.name.to_string(),
                description: t.description.as_deref().unwrap_or_default().to_owned(),
            })
            .collect()
    }
}

impl OfferedTool {
    fn prepare(config: &McpServerConfig, tool: &Tool) -> OfferedTool {
        let hints = tool.annotations.as_ref();
        let read_only = config.is_read_only(&tool.name, hints.and_then(|a| a.read_only_hint));
        let destructive = hints.and_then(|a| a.destructive_hint) == Some(true);
        OfferedTool {
            name: tool.name.to_string(),
            description: tool.description.as_deref().unwrap_or_default().to_owned(),
            input_schema: serde_json::to_string(&*tool.input_schema)
                .unwrap_or_else(|_| "{}".into()),
            read_only,
            needs_approval: config.needs_approval(&tool.name, read_only, destructive),
            listed: Arc::new(tool.clone()),
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

/// Every page of the server's tools, within the caps.
async fn list_tools(peer: &Peer<RoleClient>) -> Result<Vec<Tool>, String> {
    listing::all_pages("tools", |cursor| async move {
        let page = PaginatedRequestParams::default().with_cursor(cursor);
        let listed = peer.list_tools(Some(page)).await?;
        Ok((listed.tools, listed.next_cursor))
    })
    .await
}

impl ServerEntry {
    pub(super) fn new(
        config: McpServerConfig,
        origin: Origin,
        link: Link,
        connection: Option<String>,
        result_limit: usize,
    ) -> Arc<ServerEntry> {
        Arc::new(ServerEntry {
            config,
            origin,
            connection,
            removed: AtomicBool::new(false),
            link,
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
        if let Some(session) = slot.session.as_mut().filter(|s| s.is_alive()) {
            if session.client.service().take_tools_changed() {
                self.relist(session).await;
            }
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
                tracing::warn!(server = %self.config.id, "the MCP server did not start: {reason}");
                slot.backoff.failed(Instant::now(), &reason);
                return Err(failed(reason));
            }
        };
        slot.backoff.succeeded();
        Ok(pick(slot.session.insert(session)))
    }

    async fn open(&self) -> Result<Session, String> {
        static SESSIONS: AtomicU64 = AtomicU64::new(0);
        let connect::Connection { client, guest } =
            connect::connect(&self.config, &self.link).await?;
        let tools = list_tools(client.peer()).await?;
        let version = client
            .peer_info()
            .map(|info| info.protocol_version.to_string());
        tracing::info!(
            server = %self.config.id,
            tools = tools.len(),
            protocol = version.as_deref().unwrap_or("unknown"),
            "MCP server connected"
        );
        let changes = pool_client::listen_for_changes(&self.config.id, &client).await;
        let mut session = Session {
            number: SESSIONS.fetch_add(1, Ordering::Relaxed),
            _changes: changes,
            client,
            guest: guest.map(Arc::new),
            tools: Default::default(),
            offered: Default::default(),
            connected_at: crate::timestamp::now(),
        };
        self.offer(&mut session, tools);
        Ok(session)
    }

    fn offer(&self, session: &mut Session, tools: Vec<Tool>) {
        let offered = tools
            .iter()
            .map(|tool| OfferedTool::prepare(&self.config, tool))
            .collect();
        session.tools = Arc::new(tools);
        session.offered = Arc::new(offered);
    }

    /// Lists a live session's tools again, after the server said they
    /// changed. A listing that fails keeps the old tools and is tried
    /// again on the next use.
    async fn relist(&self, session: &mut Session) {
        match list_tools(session.client.peer()).await {
            Ok(tools) => {
                tracing::info!(server = %self.config.id, tools = tools.len(), "MCP server's tools changed");
                self.offer(session, tools);
            }
            Err(reason) => {
                tracing::warn!(server = %self.config.id, "listing the changed tools failed: {reason}");
                session.client.service().note_tools_changed();
            }
        }
    }

    /// Opens (or reuses) the session and returns the server's tools.
    pub async fn tools(&self) -> Result<Arc<Vec<Tool>>, McpError> {
        self.session(|s| s.tools.clone()).await
    }

    /// Whether the server is ready, waiting at most `wait` for a session
    /// that is not open yet. A start goes on in a task of its own after
    /// the wait, so a slow server is ready for a later chat; chats that
    /// find a start under way wait for it rather than start another.
    pub async fn tools_within(self: &Arc<Self>, wait: Duration) -> Result<(), McpError> {
        let deadline = tokio::time::Instant::now() + wait;
        let starting = || McpError::Starting {
            id: self.config.id.clone(),
            secs: wait.as_secs_f64(),
        };
        let live = match tokio::time::timeout_at(deadline, self.slot.lock()).await {
            Ok(slot) => slot.session.as_ref().is_some_and(Session::is_alive),
            Err(_) => return Err(starting()),
        };
        if live {
            return Ok(());
        }
        let server = self.clone();
        let start = tokio::spawn(async move { server.tools().await.map(drop) });
        match tokio::time::timeout_at(deadline, start).await {
            Ok(Ok(started)) => started,
            Ok(Err(_)) => Err(McpError::Connect {
                id: self.config.id.clone(),
                reason: "its start-up task failed".into(),
            }),
            Err(_) => Err(starting()),
        }
    }

    /// Whether `tenant` (an org, or `None` for the local user) sees it.
    pub fn visible_to(&self, tenant: Option<&str>) -> bool {
        match &self.origin {
            Origin::Config => true,
            Origin::Runtime { owner, .. } => owner.as_deref() == tenant,
            Origin::AdHoc | Origin::Connection => false,
        }
    }

    /// The org that registered it, for a run-time server.
    pub fn owner(&self) -> Option<&str> {
        match &self.origin {
            Origin::Runtime { owner, .. } => owner.as_deref(),
            _ => None,
        }
    }

    /// Opens (or reuses) the session and lists its tools.
    pub async fn summaries(&self) -> Result<Vec<ToolSummary>, McpError> {
        Ok(ToolSummary::of(&self.tools().await?))
    }

    /// Opens (or reuses) the session and returns its tools as offered.
    pub async fn offered(&self) -> Result<Arc<Vec<OfferedTool>>, McpError> {
        self.session(|s| s.offered.clone()).await
    }

    pub async fn is_connected(&self) -> bool {
        self.snapshot().await.is_some()
    }

    /// What a live session holds, without opening one.
    pub async fn snapshot(&self) -> Option<Snapshot> {
        let slot = self.slot.lock().await;
        slot.session
            .as_ref()
            .filter(|s| s.is_alive())
            .map(|s| Snapshot {
                tools: s.tools.clone(),
                connected_at: s.connected_at.clone(),
                protocol_version: s
                    .client
                    .peer_info()
                    .map(|info| info.protocol_version.to_string()),
            })
    }

    /// Stops the server for good: holders get an error, not a reconnect.
    pub async fn retire(&self) {
        self.removed.store(true, Ordering::SeqCst);
        self.close().await;
    }

    pub(super) async fn close(&self) {
        let session = self.slot.lock().await.session.take();
        if let Some(session) = session {
            session.stop(&self.config.id).await;
        }
    }

    /// Calls one tool under the server's timeout, with `meta` (see
    /// [`super::call_meta`]) when given, its progress reported to
    /// `progress` when given.
    pub async fn call(
        &self,
        tool: &str,
        arguments: Map<String, Value>,
        meta: Option<RequestMetaObject>,
        progress: Option<ProgressSink>,
    ) -> Result<CallToolResult, McpError> {
        let server = &self.config.id;
        let (peer, session, guest, routes) = self
            .session(|s| {
                let routes = progress
                    .as_ref()
                    .map(|_| s.client.service().progress.clone());
                (s.client.peer().clone(), s.number, s.guest.clone(), routes)
            })
            .await?;
        let _in_flight = guest.as_deref().map(Guest::call_started);
        let timeout = self.config.call_timeout();
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = Some(arguments);
        params.meta = meta;
        let failed = |reason: String| McpError::Call {
            server: server.clone(),
            tool: tool.to_owned(),
            reason,
        };
        let answer = async {
            match progress.zip(routes) {
                Some((sink, routes)) => {
                    progress::call_reporting(&peer, &routes, params, sink).await
                }
                None => peer.call_tool_once(params).await,
            }
        };
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => {
                self.stop_if_stuck(session).await;
                Err(McpError::Timeout {
                    server: server.clone(),
                    tool: tool.to_owned(),
                    secs: timeout.as_secs_f64(),
                })
            }
            Ok(Err(rmcp::ServiceError::TransportClosed)) => Err(failed(
                match guest.as_deref().and_then(Guest::stopped) {
                    Some(reason) => format!("{reason}; it starts afresh on the next call"),
                    None => "the server went away mid-call (its process exited or its connection closed)"
                        .into(),
                },
            )),
            Ok(Err(rmcp::ServiceError::UnexpectedResponse)) => Err(failed(
                "the server answered with something that is not a tool result (malformed JSON-RPC)"
                    .into(),
            )),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Ok(Ok(CallToolResponse::Complete(mut result))) => {
                // The 2026-07-28 era's envelope (the result's type, the
                // server's identity stamped in `_meta`), not the tool's
                // answer: a result reads the same whichever era its server
                // speaks, and is never taken for this host's own stamp.
                result.result_type.take_if(|kind| kind.is_complete());
                if let Some(meta) = result.meta.as_mut() {
                    meta.retain(|key, _| !key.starts_with("io.modelcontextprotocol/"));
                }
                result.meta.take_if(|meta| meta.is_empty());
                self.within_limit(tool, result)
            }
            Ok(Ok(_)) => Err(failed(
                "the tool asked for user input, which is not supported".into(),
            )),
        }
    }

    /// What the server said it offers when its session opened.
    pub(super) async fn capabilities(&self) -> Result<ServerCapabilities, McpError> {
        self.session(|s| {
            s.client
                .peer_info()
                .map(|info| info.capabilities.clone())
                .unwrap_or_default()
        })
        .await
    }

    /// The session's peer, opening the session if needed.
    pub(super) async fn peer(&self) -> Result<Peer<RoleClient>, McpError> {
        self.session(|s| s.client.peer().clone()).await
    }

    /// Sends a request other than a tool call (`method` names it in
    /// errors) under the server's call timeout; `send` is given the peer.
    /// An error the server answers with is kept whole, to be handed on.
    pub(super) async fn request<T, F, Fut>(
        &self,
        method: &'static str,
        send: F,
    ) -> Result<T, McpError>
    where
        F: FnOnce(Peer<RoleClient>) -> Fut,
        Fut: Future<Output = Result<T, rmcp::ServiceError>>,
    {
        let peer = self.peer().await?;
        match tokio::time::timeout(self.config.call_timeout(), send(peer)).await {
            Err(_) => Err(self.no_answer(method)),
            Ok(Err(rmcp::ServiceError::McpError(error))) => Err(McpError::Answered {
                server: self.config.id.clone(),
                method,
                error: Box::new(error),
            }),
            Ok(Err(e)) => Err(self.request_failed(method, e.to_string())),
            Ok(Ok(answer)) => Ok(answer),
        }
    }

    /// Every page of a list (`method`, of `what`), each fetched by `page`,
    /// within the caps of [`listing`] and the server's call timeout.
    pub(super) async fn list<T, F, Fut>(
        &self,
        method: &'static str,
        what: &str,
        page: F,
    ) -> Result<Vec<T>, McpError>
    where
        T: serde::Serialize,
        F: Fn(Peer<RoleClient>, Option<Cursor>) -> Fut,
        Fut: Future<Output = Result<listing::Page<T>, rmcp::ServiceError>>,
    {
        let peer = self.peer().await?;
        let pages = listing::all_pages(what, |cursor| page(peer.clone(), cursor));
        match tokio::time::timeout(self.config.call_timeout(), pages).await {
            Err(_) => Err(self.no_answer(method)),
            Ok(Err(reason)) => Err(self.request_failed(method, reason)),
            Ok(Ok(items)) => Ok(items),
        }
    }

    fn no_answer(&self, method: &'static str) -> McpError {
        let secs = self.config.call_timeout().as_secs_f64();
        self.request_failed(method, format!("no answer within {secs} s"))
    }

    fn request_failed(&self, method: &'static str, reason: String) -> McpError {
        McpError::Request {
            server: self.config.id.clone(),
            method,
            reason,
        }
    }

    /// A server running here (a process or a component) that let a call
    /// time out is presumed stuck (a hung tool often hangs the whole
    /// server, and restarting is the only remedy a client has): it is
    /// stopped, to start afresh on next use. `number` names the session
    /// that timed out, so a session started since is left alone.
    async fn stop_if_stuck(&self, number: u64) {
        if !self.config.runs_on_host() {
            return;
        }
        let mut slot = self.slot.lock().await;
        if slot.session.as_ref().is_some_and(|s| s.number == number)
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
        let mut counted = listing::ByteCount(0);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
