//! The pool: every MCP server this host knows, by id. Configured servers
//! live here for good; servers registered at run time until removed;
//! ad-hoc servers named by a request (a URL) as long as the request's
//! tool set holds them; org connections' servers outside it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use rmcp::model::Tool;

use super::server::{Origin, ServerEntry};
use super::tool_set::{Selection, ToolSet, tool_set};
use super::{McpError, UrlPolicy, url_policy};
use crate::config::{McpServerConfig, Transport};

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
