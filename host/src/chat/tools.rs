//! Which tools a chat offers, decided here for every surface: the servers
//! the caller's tenant sees (and its org's connections), the servers a
//! request names, or the server the caller connected.
//!
//! Configured servers are named first, then connections, then the
//! tenant's registered servers, so a name a tenant registers never takes
//! a configured server's or a connection's tool names.

use std::collections::BTreeMap;

use super::{ChatError, ChatService};
use crate::auth::Caller;
use crate::mcp::{self, Catalog, McpError, Selection, ToolSet};

/// The tools a chat offers the model.
pub enum ToolChoice {
    /// Every server the caller's tenant sees that can be reached; one that
    /// cannot, or is still starting, is left out with a warning.
    Reachable,
    /// Those, and the enabled tools of the caller's org's connections.
    WithConnections,
    /// The servers a request names, each connected before the chat starts
    /// so an unknown server or tool is refused up front.
    Servers(Vec<ServerChoice>),
    /// The server the caller connected (see `ChatService::connect`).
    Connected,
}

/// One server a request names, and which of its tools to offer.
pub struct ServerChoice {
    pub server: ServerRef,
    /// `None`: all of them.
    pub only: Option<Vec<String>>,
}

pub enum ServerRef {
    /// A server of the pool the caller's tenant sees, by id or by the
    /// `integration_fqn` its config gives it.
    Configured(String),
    /// A streamable-HTTP server named by URL, for this request only; it
    /// must pass the URL policy.
    Url {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

impl ChatService {
    /// The tool set for `choice`; `connected` is the caller's connected
    /// server, for [`ToolChoice::Connected`].
    pub(super) async fn tool_set(
        &self,
        choice: ToolChoice,
        caller: &Caller,
        connected: Option<&str>,
    ) -> Result<ToolSet, ChatError> {
        let tenant = caller.tenant();
        match choice {
            ToolChoice::Reachable | ToolChoice::WithConnections => {
                let with_connections = matches!(choice, ToolChoice::WithConnections);
                let selections = self.reachable(tenant, with_connections).await;
                Ok(mcp::tool_set(&selections).await.unwrap_or_default())
            }
            ToolChoice::Connected => {
                let id = connected.ok_or(ChatError::NotConnected)?;
                let server = self.pool.server(tenant, id).map_err(ChatError::tools)?;
                mcp::tool_set(&[Selection::all(server)])
                    .await
                    .map_err(ChatError::tools)
            }
            ToolChoice::Servers(choices) => {
                let mut selections = Vec::with_capacity(choices.len());
                for choice in choices {
                    let server = match choice.server {
                        ServerRef::Configured(name) => self.pool.integration(tenant, &name),
                        ServerRef::Url { url, headers } => self.pool.ad_hoc(&url, headers).await,
                    }
                    .map_err(ChatError::tools)?;
                    selections.push(Selection {
                        server,
                        only: choice.only,
                    });
                }
                mcp::tool_set(&selections).await.map_err(ChatError::tools)
            }
        }
    }
}

impl ChatService {
    /// The resources and prompts of the servers the caller's tenant sees
    /// (its org's connections included), named in the order tools are.
    pub async fn catalog(&self, caller: &Caller) -> Catalog {
        let selections = self.reachable(caller.tenant(), true).await;
        Catalog::new(selections.into_iter().map(|s| s.server).collect())
    }

    /// The servers `tenant` sees that can be reached now, in naming order:
    /// configured ones, then (`with_connections`) the org's connections,
    /// then the tenant's own.
    async fn reachable(&self, tenant: Option<&str>, with_connections: bool) -> Vec<Selection> {
        let reachable = self.pool.reachable(tenant, self.tools_wait).await;
        let mut selections = reachable.shared;
        if let (true, Some(org)) = (with_connections, tenant) {
            selections.extend(self.connections.selections(org).await);
        }
        selections.extend(reachable.owned);
        selections
    }
}

impl ChatError {
    /// A server that cannot be reached now is the server's failure; an
    /// unknown server or tool, or a refused URL, is the request's.
    pub(super) fn tools(error: McpError) -> ChatError {
        match error {
            McpError::Connect { .. }
            | McpError::Starting { .. }
            | McpError::Timeout { .. }
            | McpError::Call { .. }
            | McpError::Removed(_)
            | McpError::TooLarge { .. }
            | McpError::Answered { .. }
            | McpError::Request { .. } => ChatError::ToolsUnreachable(error),
            McpError::UnknownServer { .. }
            | McpError::UnknownResource(_)
            | McpError::UnknownPrompt { .. }
            | McpError::UnknownTool { .. }
            | McpError::Refused(_)
            | McpError::Duplicate(_)
            | McpError::Configured(_) => ChatError::ToolsInvalid(error),
        }
    }
}
