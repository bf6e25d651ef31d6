//! The MCP servers clients can list and change: the configured ones, which
//! every tenant sees, and those a tenant registers at run time (seed 004's
//! `POST /servers`), which only it sees and which come back after a
//! restart.
//!
//! Who may register what: viewers nothing; members HTTP and SSE servers on
//! public addresses; admins (and the local user) also stdio servers, which
//! run a command on this host, and servers on internal addresses.
//! `security.allow_stdio_registration` lets members register stdio servers
//! too. A server's `env` and `headers` are sealed before they are stored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{Principal, Role, tenant};
use crate::config::{McpServerConfig, Transport};
use crate::mcp::{McpError, McpPool, Origin, Reach, RuntimeServer, ServerEntry, ToolSummary};
use crate::sealing::Sealer;
use crate::store::{Store, StoreError, StoredServer};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The server's definition is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The caller's role does not allow it.
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
    /// Secrets cannot be stored without the sealing key.
    #[error(
        "the server's env and headers are encrypted at rest: set {0} to 64 hex digits (32 bytes) to register servers that have them"
    )]
    NoKey(String),
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
    /// The MCP revision its live session speaks.
    pub protocol_version: Option<String>,
}

/// What a stored server keeps sealed.
#[derive(Default, Serialize, Deserialize)]
struct Secrets {
    env: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
}

pub struct Registry {
    pool: Arc<McpPool>,
    store: Store,
    sealer: Option<Sealer>,
    /// The variable that holds the sealing key, for the message when unset.
    key_env: String,
    allow_stdio_registration: bool,
    /// Servers this replica is registering or removing: in the pool and
    /// not yet in the store, or the other way round. Following other
    /// replicas leaves them alone until the change is whole.
    changing: Arc<Mutex<HashSet<ServerKey>>>,
}

/// A run-time server: its tenant (empty for the local user) and id.
type ServerKey = (String, String);

/// Servers marked as changing on this replica until dropped.
struct Changing {
    keys: Vec<ServerKey>,
    changing: Arc<Mutex<HashSet<ServerKey>>>,
}

impl Changing {
    fn mark(registry: &Registry, keys: Vec<ServerKey>) -> Changing {
        let mut changing = registry.changing.lock().unwrap_or_else(|p| p.into_inner());
        changing.extend(keys.iter().cloned());
        Changing {
            keys,
            changing: registry.changing.clone(),
        }
    }
}

impl Drop for Changing {
    fn drop(&mut self) {
        let mut changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            changing.remove(key);
        }
    }
}

impl Registry {
    pub fn new(
        pool: Arc<McpPool>,
        store: Store,
        sealer: Option<Sealer>,
        key_env: String,
        allow_stdio_registration: bool,
    ) -> Registry {
        Registry {
            pool,
            store,
            sealer,
            key_env,
            allow_stdio_registration,
            changing: Arc::default(),
        }
    }

    fn is_changing(&self, tenant: &str, name: &str) -> bool {
        let changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        changing.contains(&(tenant.to_owned(), name.to_owned()))
    }

    /// Adds the servers registered before the last stop, and reconnects
    /// them in the background so start-up does not wait on them.
    pub async fn restore(&self) -> Result<(), StoreError> {
        let mut servers = Vec::new();
        let mut plaintext = Vec::new();
        for stored in self.store.servers().await? {
            match self.unseal(&stored) {
                Ok(server) => {
                    let config = &server.config;
                    if stored.secrets.is_none()
                        && (!config.env.is_empty() || !config.headers.is_empty())
                    {
                        plaintext.push((stored.tenant.clone(), stored.name.clone()));
                    }
                    servers.push(server);
                }
                Err(e) => {
                    tracing::error!(server = %stored.name, "ignoring a stored MCP server: {e}")
                }
            }
        }
        for entry in self.pool.restore(servers).await {
            // Stored by an earlier version, before secrets were sealed.
            let key = (
                entry.owner().unwrap_or_default().to_owned(),
                entry.config.id.clone(),
            );
            if plaintext.contains(&key) && self.sealer.is_some() {
                match self.seal(&entry) {
                    Ok(sealed) => self.store.save_server(sealed).await?,
                    Err(e) => {
                        tracing::error!(server = %key.1, "cannot seal a stored MCP server: {e}")
                    }
                }
            }
            tokio::spawn(async move {
                if let Err(e) = entry.tools().await {
                    tracing::warn!("restored MCP server not reachable yet: {e}");
                }
            });
        }
        Ok(())
    }

    /// Brings this replica's run-time servers in line with the store,
    /// where other replicas register and remove them: a new (or changed)
    /// one is added and connected here too, a removed one stopped.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let stored = self.store.servers().await?;
        let mut fresh = Vec::new();
        for row in &stored {
            if self.is_changing(&row.tenant, &row.name) {
                continue;
            }
            let owner = (!row.tenant.is_empty()).then_some(row.tenant.as_str());
            let current = self
                .pool
                .server(owner, &row.name)
                .ok()
                .filter(|s| matches!(s.origin, Origin::Runtime { .. }));
            if current
                .as_ref()
                .is_some_and(|entry| definition(&entry.config).0 == row.config)
            {
                continue;
            }
            if current.is_some() {
                let _ = self.pool.remove(owner, &row.name).await;
            }
            match self.unseal(row) {
                Ok(server) => fresh.push(server),
                Err(e) => tracing::error!(server = %row.name, "ignoring a stored MCP server: {e}"),
            }
        }
        let runtime = self
            .pool
            .all()
            .into_iter()
            .filter(|s| matches!(s.origin, Origin::Runtime { .. }));
        for entry in runtime {
            let tenant = entry.owner().unwrap_or_default();
            if !self.is_changing(tenant, &entry.config.id)
                && !stored
                    .iter()
                    .any(|r| r.tenant == tenant && r.name == entry.config.id)
            {
                tracing::info!(server = %entry.config.id, "MCP server removed on another replica");
                let _ = self.pool.remove(entry.owner(), &entry.config.id).await;
            }
        }
        for entry in self.pool.restore(fresh).await {
            tracing::info!(server = %entry.config.id, "MCP server registered on another replica");
            tokio::spawn(async move {
                if let Err(e) = entry.tools().await {
                    tracing::warn!("MCP server registered elsewhere not reachable yet: {e}");
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
        user: &Option<Principal>,
    ) -> Result<Vec<ServerView>, RegistryError> {
        let role = role(user);
        if role == Role::Viewer {
            return Err(RegistryError::Forbidden(
                "registering servers needs a member or admin API key; this one is a viewer key"
                    .into(),
            ));
        }
        let mut servers = Vec::with_capacity(configs.len());
        for config in configs {
            config
                .validate()
                .map_err(|e| RegistryError::Invalid(e.to_string()))?;
            if config.transport == Transport::Stdio && !self.may_run_commands(role) {
                return Err(RegistryError::Forbidden(format!(
                    "registering stdio server `{}` runs a command on this host: it needs an admin API key",
                    config.id
                )));
            }
            let has_secrets = !config.env.is_empty() || !config.headers.is_empty();
            if has_secrets && self.sealer.is_none() {
                return Err(RegistryError::NoKey(self.key_env.clone()));
            }
            servers.push(RuntimeServer {
                owner: tenant(user).map(str::to_owned),
                reach: if role == Role::Admin {
                    Reach::Any
                } else {
                    Reach::Public
                },
                config,
            });
        }
        let keys = servers
            .iter()
            .map(|s| (s.owner.clone().unwrap_or_default(), s.config.id.clone()))
            .collect();
        let _changing = Changing::mark(self, keys);
        let entries = self.pool.register(servers).await.map_err(|e| match e {
            McpError::Duplicate(_) => RegistryError::Duplicate(e.to_string()),
            McpError::Refused(_) => RegistryError::Refused(e.to_string()),
            McpError::Connect { reason, .. } => RegistryError::Connect(reason),
            other => RegistryError::Connect(other.to_string()),
        })?;
        let mut added = Vec::with_capacity(entries.len());
        for entry in entries {
            self.store.save_server(self.seal(&entry)?).await?;
            added.push(view(&entry).await);
        }
        Ok(added)
    }

    /// Removes one of the caller's run-time servers and stops it.
    pub async fn remove(&self, id: &str, user: &Option<Principal>) -> Result<(), RegistryError> {
        let role = role(user);
        if role == Role::Viewer {
            return Err(RegistryError::Forbidden(
                "removing servers needs a member or admin API key; this one is a viewer key".into(),
            ));
        }
        let tenant = tenant(user);
        let server = self
            .pool
            .server(tenant, id)
            .ok()
            .or_else(|| {
                self.pool
                    .servers(tenant)
                    .into_iter()
                    .find(|s| shown_name(s) == id)
            })
            .ok_or(RegistryError::NotFound)?;
        let id = server.config.id.as_str();
        let _changing = Changing::mark(
            self,
            vec![(tenant.unwrap_or_default().to_owned(), id.to_owned())],
        );
        if server.config.runs_on_host() && !self.may_run_commands(role) {
            return Err(RegistryError::Forbidden(
                "removing a server that runs on this host needs an admin API key".into(),
            ));
        }
        self.pool.remove(tenant, id).await.map_err(|e| match e {
            McpError::Configured(_) => RegistryError::Configured(e.to_string()),
            _ => RegistryError::NotFound,
        })?;
        self.store
            .remove_server(tenant.unwrap_or_default(), id)
            .await?;
        Ok(())
    }

    /// The name `GET /servers` shows for each server the caller sees, by id.
    pub fn shown_names(&self, user: &Option<Principal>) -> HashMap<String, String> {
        self.pool
            .servers(tenant(user))
            .iter()
            .map(|s| (s.config.id.clone(), shown_name(s).to_owned()))
            .collect()
    }

    /// The servers the caller sees.
    pub async fn list(&self, user: &Option<Principal>) -> Vec<ServerView> {
        let mut views = Vec::new();
        for server in self.pool.servers(tenant(user)) {
            views.push(view(&server).await);
        }
        views
    }

    /// Sets each server's `agenthost_mcp_server_up`, for a scrape. A
    /// server being connected is busy for up to its start-up timeout; the
    /// scrape does not wait for it, and its gauge keeps its last value.
    pub async fn record_up(&self) {
        const BUSY: Duration = Duration::from_millis(100);
        for server in self.pool.all() {
            if let Ok(up) = tokio::time::timeout(BUSY, server.is_connected()).await {
                crate::metrics::mcp_server_up(
                    server.owner().unwrap_or_default(),
                    &server.config.id,
                    up,
                );
            }
        }
    }

    /// Servers with a live session, whoever sees them.
    pub async fn connected(&self) -> usize {
        let mut connected = 0;
        for server in self.pool.all() {
            if server.is_connected().await {
                connected += 1;
            }
        }
        connected
    }

    fn may_run_commands(&self, role: Role) -> bool {
        role == Role::Admin || self.allow_stdio_registration
    }

    /// The row to store: the definition without its secrets, and those
    /// sealed to this tenant and name.
    fn seal(&self, entry: &ServerEntry) -> Result<StoredServer, RegistryError> {
        let (config, secrets) = definition(&entry.config);
        let tenant = entry.owner().unwrap_or_default().to_owned();
        let sealed = match (
            &self.sealer,
            secrets.env.is_empty() && secrets.headers.is_empty(),
        ) {
            (_, true) => None,
            (Some(sealer), false) => {
                let plain = serde_json::to_vec(&secrets)
                    .map_err(|e| RegistryError::Invalid(e.to_string()))?;
                Some(sealer.seal(&plain, &bound_to(&tenant, &entry.config.id)))
            }
            (None, false) => return Err(RegistryError::NoKey(self.key_env.clone())),
        };
        Ok(StoredServer {
            name: entry.config.id.clone(),
            config,
            secrets: sealed,
            reach_any: matches!(
                entry.origin,
                Origin::Runtime {
                    reach: Reach::Any,
                    ..
                }
            ),
            tenant,
        })
    }

    /// A stored server as the pool takes it, its secrets opened.
    fn unseal(&self, stored: &StoredServer) -> Result<RuntimeServer, String> {
        let mut config: McpServerConfig =
            serde_json::from_str(&stored.config).map_err(|e| e.to_string())?;
        if let Some(sealed) = &stored.secrets {
            let sealer = self.sealer.as_ref().ok_or_else(|| {
                format!(
                    "its env and headers are sealed and {} is not set",
                    self.key_env
                )
            })?;
            let plain = sealer
                .open(sealed, &bound_to(&stored.tenant, &stored.name))
                .map_err(|e| e.to_string())?;
            let secrets: Secrets = serde_json::from_slice(&plain).map_err(|e| e.to_string())?;
            config.env = secrets.env;
            config.headers = secrets.headers;
        }
        Ok(RuntimeServer {
            owner: (!stored.tenant.is_empty()).then(|| stored.tenant.clone()),
            reach: if stored.reach_any {
                Reach::Any
            } else {
                Reach::Public
            },
            config,
        })
    }
}

/// A server's definition as stored, its secrets left out, and the secrets.
fn definition(config: &McpServerConfig) -> (String, Secrets) {
    let mut public = config.clone();
    let secrets = Secrets {
        env: std::mem::take(&mut public.env),
        headers: std::mem::take(&mut public.headers),
    };
    // Configs of plain strings and maps always serialize.
    let text = serde_json::to_string(&public).unwrap_or_default();
    (text, secrets)
}

/// The local user may do what an admin may.
fn role(user: &Option<Principal>) -> Role {
    user.as_ref().map_or(Role::Admin, |p| p.role)
}

/// What a server's sealed secrets are bound to.
fn bound_to(tenant: &str, name: &str) -> String {
    format!("mcp-server:{tenant}/{name}")
}

/// A server's `name`: the display name of one from the config file (seed
/// 003's frontends show it), the identifier of any other (seed 004 makes
/// the name the identifier). The MCP Chat API accepts it wherever it takes
/// a server's name.
fn shown_name(server: &ServerEntry) -> &str {
    match server.origin {
        Origin::Config => server.config.display_name(),
        Origin::Runtime { .. } | Origin::AdHoc | Origin::Connection => &server.config.id,
    }
}

async fn view(server: &ServerEntry) -> ServerView {
    let (tools, connected_at, protocol_version) = match server.snapshot().await {
        Some(live) => (
            ToolSummary::of(&live.tools),
            Some(live.connected_at),
            live.protocol_version,
        ),
        None => (Vec::new(), None, None),
    };
    let config = &server.config;
    ServerView {
        id: config.id.clone(),
        name: shown_name(server).to_owned(),
        path: config.location(),
        description: config.description.clone().unwrap_or_default(),
        transport: config.transport,
        tools,
        connected_at,
        protocol_version,
    }
}
