//! The MCP servers clients can list and change: the configured ones and
//! those registered at run time (seed 004's `POST /servers`), which are
//! stored and come back after a restart.
//!
//! Registering a stdio server runs a command on this host, so it takes an
//! admin key unless `security.allow_stdio_registration` says anyone may.

use std::sync::Arc;

use crate::auth::Identity;
use crate::config::{McpServerConfig, Transport};
use crate::mcp::{McpError, McpPool, Origin, ServerEntry, ToolSummary};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The server's definition is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The caller may not run commands on this host.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Duplicate(String),
    /// A URL the address policy refuses.
    #[error("{0}")]
    Refused(String),
    #[error("Failed to connect to server: {0}")]
    Connect(String),
    #[error("Server not found")]
    NotFound,
    /// Configured servers are changed in the config file.
    #[error("{0}")]
    Configured(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One server as clients list it, its tools from its live session.
pub struct ServerView {
    pub id: String,
    /// The display name for configured servers; the id (which seed 004
    /// calls the name) for the others.
    pub name: String,
    /// Its command line or URL.
    pub path: String,
    pub description: String,
    pub transport: Transport,
    pub tools: Vec<ToolSummary>,
    pub connected_at: Option<String>,
}

pub struct Registry {
    pool: Arc<McpPool>,
    store: Store,
    allow_stdio_registration: bool,
}

impl Registry {
    pub fn new(pool: Arc<McpPool>, store: Store, allow_stdio_registration: bool) -> Registry {
        Registry {
            pool,
            store,
            allow_stdio_registration,
        }
    }

    /// Adds the servers registered before the last stop, and reconnects
    /// them in the background so start-up does not wait on them.
    pub async fn restore(&self) -> Result<(), StoreError> {
        let mut configs = Vec::new();
        for (name, json) in self.store.servers().await? {
            match serde_json::from_str::<McpServerConfig>(&json) {
                Ok(config) => configs.push(config),
                Err(e) => tracing::error!(server = %name, "ignoring a stored MCP server: {e}"),
            }
        }
        for entry in self.pool.restore(configs).await {
            tokio::spawn(async move {
                if let Err(e) = entry.tools().await {
                    tracing::warn!("restored MCP server not reachable yet: {e}");
                }
            });
        }
        Ok(())
    }

    /// Connects every server, then registers and stores them all, or
    /// none: one that fails leaves nothing registered.
    pub async fn register(
        &self,
        configs: Vec<McpServerConfig>,
        caller: &Identity,
    ) -> Result<Vec<ServerView>, RegistryError> {
        for config in &configs {
            config
                .validate()
                .map_err(|e| RegistryError::Invalid(e.to_string()))?;
            if config.transport == Transport::Stdio && !self.may_run_commands(caller) {
                return Err(RegistryError::Forbidden(format!(
                    "registering stdio server `{}` runs a command on this host: it needs an admin API key",
                    config.id
                )));
            }
        }
        let entries = self.pool.register(configs).await.map_err(|e| match e {
            McpError::Duplicate(_) => RegistryError::Duplicate(e.to_string()),
            McpError::Refused(_) => RegistryError::Refused(e.to_string()),
            McpError::Connect { reason, .. } => RegistryError::Connect(reason),
            other => RegistryError::Connect(other.to_string()),
        })?;
        let mut added = Vec::with_capacity(entries.len());
        for entry in entries {
            let config = serde_json::to_string(&entry.config)
                .map_err(|e| RegistryError::Invalid(e.to_string()))?;
            self.store.save_server(&entry.config.id, config).await?;
            added.push(view(&entry).await);
        }
        Ok(added)
    }

    /// Removes a run-time server and stops it.
    pub async fn remove(&self, id: &str, caller: &Identity) -> Result<(), RegistryError> {
        let server = self.pool.server(id).map_err(|_| RegistryError::NotFound)?;
        if server.config.transport == Transport::Stdio && !self.may_run_commands(caller) {
            return Err(RegistryError::Forbidden(
                "removing a stdio server needs an admin API key".into(),
            ));
        }
        self.pool.remove(id).await.map_err(|e| match e {
            McpError::Configured(_) => RegistryError::Configured(e.to_string()),
            _ => RegistryError::NotFound,
        })?;
        self.store.remove_server(id).await?;
        Ok(())
    }

    pub async fn list(&self) -> Vec<ServerView> {
        let mut views = Vec::new();
        for server in self.pool.servers() {
            views.push(view(&server).await);
        }
        views
    }

    /// Servers with a live session.
    pub async fn connected(&self) -> usize {
        let mut connected = 0;
        for server in self.pool.servers() {
            if server.is_connected().await {
                connected += 1;
            }
        }
        connected
    }

    fn may_run_commands(&self, caller: &Identity) -> bool {
        self.allow_stdio_registration || caller.is_admin()
    }
}

async fn view(server: &ServerEntry) -> ServerView {
    let (tools, connected_at) = match server.snapshot().await {
        Some((tools, at)) => (ToolSummary::of(&tools), Some(at)),
        None => (Vec::new(), None),
    };
    let config = &server.config;
    let name = match server.origin {
        Origin::Config => config.display_name(),
        Origin::Runtime | Origin::AdHoc | Origin::Connection => &config.id,
    };
    ServerView {
        id: config.id.clone(),
        name: name.to_owned(),
        path: config.location(),
        description: config.description.clone().unwrap_or_default(),
        transport: config.transport,
        tools,
        connected_at,
    }
}
