//! The MCP client pool: one rmcp client session per configured server.
//!
//! Sessions open on first use and are kept. A session whose server died
//! (child exited, connection dropped) is noticed on the next use and
//! reopened, so a crash costs one failed call, not the server for good.
//! Dropping a session kills its child process; children are also bound to
//! this process's life (see [`connect`]).

mod connect;
pub mod names;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, Tool};
use rmcp::service::Peer;
use serde_json::{Map, Value};

use crate::config::McpServerConfig;
use names::NameAllocator;

/// How long connecting and listing tools may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("unknown MCP server `{id}` (configured: {known})")]
    UnknownServer { id: String, known: String },
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
}

/// A tool as the model sees it, and where calls to it go.
#[derive(Debug, Clone)]
pub struct ToolBinding {
    /// Model-facing, unique in its [`ToolSet`].
    pub name: String,
    pub server: String,
    pub tool: String,
    pub description: String,
    /// JSON Schema text.
    pub input_schema: String,
    /// The server's `readOnlyHint`.
    pub read_only: bool,
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

pub struct ServerEntry {
    pub config: McpServerConfig,
    session: tokio::sync::Mutex<Option<Session>>,
}

struct Session {
    client: connect::Client,
    tools: Arc<Vec<Tool>>,
}

impl Session {
    fn is_alive(&self) -> bool {
        !self.client.is_closed() && !self.client.peer().is_transport_closed()
    }
}

impl ServerEntry {
    /// The live session's peer and tools, opening a session if needed.
    async fn session(&self) -> Result<(Peer<RoleClient>, Arc<Vec<Tool>>), McpError> {
        let mut slot = self.session.lock().await;
        if let Some(session) = slot.as_ref().filter(|s| s.is_alive()) {
            return Ok((session.client.peer().clone(), session.tools.clone()));
        }
        *slot = None;
        let session = tokio::time::timeout(CONNECT_TIMEOUT, self.open())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))
            .map_err(|reason| McpError::Connect {
                id: self.config.id.clone(),
                reason,
            })?;
        let found = (session.client.peer().clone(), session.tools.clone());
        *slot = Some(session);
        Ok(found)
    }

    async fn open(&self) -> Result<Session, String> {
        let client = connect::connect(&self.config).await?;
        let tools = client
            .peer()
            .list_all_tools()
            .await
            .map_err(|e| format!("tools/list failed: {e}"))?;
        tracing::info!(server = %self.config.id, tools = tools.len(), "MCP server connected");
        Ok(Session {
            client,
            tools: Arc::new(tools),
        })
    }

    pub async fn is_connected(&self) -> bool {
        self.session
            .lock()
            .await
            .as_ref()
            .is_some_and(Session::is_alive)
    }

    async fn close(&self) {
        if let Some(session) = self.session.lock().await.take()
            && let Err(e) = session.client.cancel().await
        {
            tracing::warn!(server = %self.config.id, "closing MCP session: {e}");
        }
    }
}

pub struct McpPool {
    servers: RwLock<Vec<Arc<ServerEntry>>>,
}

impl McpPool {
    pub fn new(configs: Vec<McpServerConfig>) -> McpPool {
        let servers = configs
            .into_iter()
            .map(|config| {
                Arc::new(ServerEntry {
                    config,
                    session: Default::default(),
                })
            })
            .collect();
        McpPool {
            servers: RwLock::new(servers),
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

    /// Opens (or reuses) the server's session and returns its tools.
    pub async fn connect(&self, id: &str) -> Result<Arc<Vec<Tool>>, McpError> {
        Ok(self.server(id)?.session().await?.1)
    }

    /// Closes the server's session, stopping its child process.
    pub async fn disconnect(&self, id: &str) -> Result<(), McpError> {
        self.server(id)?.close().await;
        Ok(())
    }

    /// The tools of `server_ids`, named for the model.
    pub async fn tool_set(&self, server_ids: &[&str]) -> Result<ToolSet, McpError> {
        let mut names = NameAllocator::default();
        let mut tools = Vec::new();
        for id in server_ids {
            for tool in self.connect(id).await?.iter() {
                tools.push(ToolBinding {
                    name: names.allocate(id, &tool.name),
                    server: (*id).to_owned(),
                    tool: tool.name.to_string(),
                    description: tool.description.as_deref().unwrap_or_default().to_owned(),
                    input_schema: serde_json::to_string(&*tool.input_schema)
                        .unwrap_or_else(|_| "{}".into()),
                    read_only: tool
                        .annotations
                        .as_ref()
                        .and_then(|a| a.read_only_hint)
                        .unwrap_or(false),
                });
            }
        }
        Ok(ToolSet { tools })
    }

    /// Calls one tool under the server's timeout.
    pub async fn call(
        &self,
        server: &str,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> Result<CallToolResult, McpError> {
        let entry = self.server(server)?;
        let (peer, _) = entry.session().await?;
        let timeout = entry.config.call_timeout();
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = Some(arguments);
        let call_failed = |reason: String| McpError::Call {
            server: server.to_owned(),
            tool: tool.to_owned(),
            reason,
        };
        match tokio::time::timeout(timeout, peer.call_tool_once(params)).await {
            Err(_) => Err(McpError::Timeout {
                server: server.to_owned(),
                tool: tool.to_owned(),
                secs: timeout.as_secs_f64(),
            }),
            Ok(Err(e)) => Err(call_failed(e.to_string())),
            Ok(Ok(CallToolResponse::Complete(result))) => Ok(result),
            Ok(Ok(_)) => Err(call_failed(
                "the tool asked for user input, which is not supported".into(),
            )),
        }
    }

    /// Closes every session, stopping all child processes.
    pub async fn shutdown(&self) {
        for server in self.servers() {
            server.close().await;
        }
    }
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
