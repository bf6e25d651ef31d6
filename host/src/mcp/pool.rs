//! The pool: every MCP server this host knows. Configured servers live
//! here for good and every tenant sees them; servers registered at run
//! time until removed, seen by their owner only; ad-hoc servers named by a
//! request (a URL) as long as the request's tool set holds them; org
//! connections' servers outside it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::component::ComponentHost;
use super::connect::Link;
use super::server::{Origin, ServerEntry};
use super::tool_set::Selection;
use super::{McpError, UrlPolicy, url_policy};
use crate::config::{McpServerConfig, Transport};

/// Where a run-time server's URL may point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Public addresses only, as for ad-hoc URLs (the URL policy).
    Public,
    /// Any address, internal ones included: for admins.
    Any,
}

/// A run-time server to add: its owner (an org, or `None` for the local
/// user), how far its URL may reach, and its definition.
pub struct RuntimeServer {
    pub owner: Option<String>,
    pub reach: Reach,
    pub config: McpServerConfig,
}

/// The servers a chat can use now, in the order their tools are named:
/// shared (configured) ones first, then the tenant's own, so a name a
/// tenant registers never takes a configured server's tool names.
#[derive(Default)]
pub struct Reachable {
    pub shared: Vec<Selection>,
    pub owned: Vec<Selection>,
}

pub struct McpPool {
    servers: RwLock<Vec<Arc<ServerEntry>>>,
    url_policy: UrlPolicy,
    result_limit: usize,
}

impl McpPool {
    /// `result_limit` caps a tool result's serialized size, in bytes;
    /// `cache_dir` keeps component servers' compiled code.
    pub fn new(
        configs: Vec<McpServerConfig>,
        url_policy: UrlPolicy,
        result_limit: usize,
        cache_dir: Option<std::path::PathBuf>,
    ) -> McpPool {
        let components = Arc::new(ComponentHost::new(url_policy.clone(), cache_dir));
        let servers = configs
            .into_iter()
            .map(|config| {
                let link = match config.transport {
                    Transport::Wasm => Link::Component(components.clone()),
                    _ => Link::Direct,
                };
                ServerEntry::new(config, Origin::Config, link, None, result_limit)
            })
            .collect();
        McpPool {
            servers: RwLock::new(servers),
            url_policy,
            result_limit,
        }
    }

    /// Every server, whoever sees it.
    pub fn all(&self) -> Vec<Arc<ServerEntry>> {
        self.servers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The servers `tenant` sees: the configured ones and its own.
    pub fn servers(&self, tenant: Option<&str>) -> Vec<Arc<ServerEntry>> {
        let mut servers = self.all();
        servers.retain(|s| s.visible_to(tenant));
        servers
    }

    /// One of the servers `tenant` sees, named by a TrueFoundry
    /// `integration_fqn`: its id, or the `integration_fqn` its config gives.
    pub fn integration(
        &self,
        tenant: Option<&str>,
        fqn: &str,
    ) -> Result<Arc<ServerEntry>, McpError> {
        self.server(tenant, fqn).or_else(|unknown| {
            self.servers(tenant)
                .into_iter()
                .find(|s| s.config.integration_fqn.as_deref() == Some(fqn))
                .ok_or(unknown)
        })
    }

    /// One of the servers `tenant` sees.
    pub fn server(&self, tenant: Option<&str>, id: &str) -> Result<Arc<ServerEntry>, McpError> {
        let servers = self.servers(tenant);
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
            Link::Http(client),
            None,
            self.result_limit,
        ))
    }

    /// Connects every server and adds them all, or none: a server that
    /// fails to connect leaves nothing registered. An id its owner already
    /// sees (a configured server's included) is a duplicate.
    pub async fn register(
        &self,
        servers: Vec<RuntimeServer>,
    ) -> Result<Vec<Arc<ServerEntry>>, McpError> {
        let mut entries: Vec<Arc<ServerEntry>> = Vec::with_capacity(servers.len());
        for server in servers {
            let id = &server.config.id;
            if self.server(server.owner.as_deref(), id).is_ok()
                || entries.iter().any(|e| &e.config.id == id)
            {
                return Err(McpError::Duplicate(server.config.id));
            }
            entries.push(self.runtime_entry(server).await?);
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
        if let Some(taken) = entries.iter().find(|e| {
            servers
                .iter()
                .any(|s| s.config.id == e.config.id && s.visible_to(e.owner()))
        }) {
            return Err(McpError::Duplicate(taken.config.id.clone()));
        }
        servers.extend(entries.iter().cloned());
        Ok(entries)
    }

    /// Adds run-time servers saved before a restart, without connecting.
    pub async fn restore(&self, servers: Vec<RuntimeServer>) -> Vec<Arc<ServerEntry>> {
        let mut restored = Vec::new();
        for server in servers {
            let id = server.config.id.clone();
            match self.runtime_entry(server).await {
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
            Link::Http(client),
            Some(connection_id),
            self.result_limit,
        ))
    }

    /// A run-time server; a `Public` one's URL must pass the same policy as
    /// ad-hoc ones.
    async fn runtime_entry(&self, server: RuntimeServer) -> Result<Arc<ServerEntry>, McpError> {
        let RuntimeServer {
            owner,
            reach,
            config,
        } = server;
        let link = match (&config.url, config.transport, reach) {
            (Some(url), Transport::Sse | Transport::StreamableHttp, Reach::Public) => {
                Link::Http(self.pinned_client(url).await?.1)
            }
            (Some(_), Transport::Sse | Transport::StreamableHttp, Reach::Any) => {
                Link::Http(no_redirects(reqwest::Client::builder(), &config.id)?)
            }
            _ => Link::Direct,
        };
        Ok(ServerEntry::new(
            config,
            Origin::Runtime { owner, reach },
            link,
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
        let builder = reqwest::Client::builder().resolve_to_addrs(&checked.host, &checked.addrs);
        let client = no_redirects(builder, &checked.host)?;
        Ok((checked, client))
    }

    /// Removes a run-time server of `tenant`'s and stops it; requests still
    /// holding it get an error instead of a silent reconnect.
    pub async fn remove(&self, tenant: Option<&str>, id: &str) -> Result<(), McpError> {
        let entry = self.server(tenant, id)?;
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

    /// Closes the session of a server `tenant` sees, stopping its child.
    pub async fn disconnect(&self, tenant: Option<&str>, id: &str) -> Result<(), McpError> {
        self.server(tenant, id)?.close().await;
        Ok(())
    }

    /// Every server `tenant` sees that can be reached within `wait`, all
    /// tools selected. Servers start in parallel; one that cannot be
    /// reached, or is still starting when the wait is over, is left out
    /// with a warning, so one dead or slow server does not hold up every
    /// chat.
    pub async fn reachable(&self, tenant: Option<&str>, wait: Duration) -> Reachable {
        let servers = self.servers(tenant);
        let ready = futures::future::join_all(servers.iter().map(|s| s.tools_within(wait))).await;
        let mut reachable = Reachable::default();
        for (server, ready) in servers.into_iter().zip(ready) {
            if let Err(e) = ready {
                tracing::warn!("leaving out MCP server: {e}");
                continue;
            }
            let list = match server.origin {
                Origin::Config => &mut reachable.shared,
                _ => &mut reachable.owned,
            };
            list.push(Selection::all(server));
        }
        reachable
    }

    /// Closes every session, stopping all child processes.
    pub async fn shutdown(&self) {
        for server in self.all() {
            server.close().await;
        }
    }
}

/// An HTTP client that follows no redirects: a server must not be able to
/// send the host, with the server's credentials, somewhere else.
fn no_redirects(builder: reqwest::ClientBuilder, id: &str) -> Result<reqwest::Client, McpError> {
    builder
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| McpError::Connect {
            id: id.to_owned(),
            reason: e.to_string(),
        })
}
