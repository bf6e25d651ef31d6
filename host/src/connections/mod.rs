//! Org connections: customer MCP servers (streamable HTTP) that an org
//! registers with credentials, and whose tools it can enable one by one.
//!
//! Credentials are sealed before they reach the database and opened only
//! to build the server's request headers; API views carry the header
//! names, never values. A connection's server is opened on first use and
//! kept, like the pool's, but it is offered only to its own org.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::McpServerConfig;
use crate::mcp::names::NameAllocator;
use crate::mcp::{self, McpError, McpPool, Selection, ServerEntry, ToolBinding};
use crate::sealing::{CryptoError, Sealer};
use crate::store::{ConnectionRow, ConnectionToolRow, Store, StoreError, storable};

const MAX_NAME_LEN: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("connection `{0}` not found")]
    NotFound(String),
    #[error("the org already has a connection named `{0}`")]
    Duplicate(String),
    #[error("tool `{slug}` is not available on connection `{connection}`: {why}")]
    ToolUnavailable {
        slug: String,
        connection: String,
        why: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "connection credentials are encrypted at rest: set {0} to 64 hex digits (32 bytes) to use connections"
    )]
    NoKey(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A URL the address policy refuses.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Mcp(McpError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<McpError> for ConnectionError {
    fn from(error: McpError) -> ConnectionError {
        match error {
            McpError::Refused(reason) => ConnectionError::Refused(reason),
            other => ConnectionError::Mcp(other),
        }
    }
}

/// What a client sends to create a connection.
pub struct NewConnection {
    pub name: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub bearer_token: Option<String>,
}

/// A connection as the API shows it: no credential values.
#[derive(Debug, Serialize)]
pub struct Connection {
    pub id: String,
    pub name: String,
    pub url: String,
    pub auth: Auth,
    pub created_at: String,
    pub tools: Vec<ConnectionTool>,
}

#[derive(Debug, Serialize)]
pub struct Auth {
    /// `none`, `bearer` or `headers`.
    #[serde(rename = "type")]
    pub kind: String,
    pub header_names: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ConnectionTool {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub read_only: bool,
    pub enabled: bool,
}

pub struct Connections {
    store: Store,
    pool: Arc<McpPool>,
    sealer: Option<Sealer>,
    key_env: String,
    /// Servers opened so far, by connection id.
    live: tokio::sync::Mutex<HashMap<String, Live>>,
    /// Each org's rows as last read, so a chat need not ask the database.
    catalogue: Mutex<Catalogue>,
}

/// An opened connection's server, and the org it belongs to.
struct Live {
    org: String,
    entry: Arc<ServerEntry>,
}

/// Orgs' connection rows. Every change to an org's connections drops its
/// entry and moves the generation on, so a read that raced the change is
/// not kept.
#[derive(Default)]
struct Catalogue {
    generation: u64,
    orgs: HashMap<String, Arc<Vec<ConnectionRow>>>,
}

impl Connections {
    /// `sealer` is `None` when the key variable is unset: connections then
    /// cannot be created or used, and say which variable to set.
    pub fn new(
        store: Store,
        pool: Arc<McpPool>,
        sealer: Option<Sealer>,
        key_env: String,
    ) -> Connections {
        Connections {
            store,
            pool,
            sealer,
            key_env,
            live: Default::default(),
            catalogue: Default::default(),
        }
    }

    fn sealer(&self) -> Result<&Sealer, ConnectionError> {
        self.sealer
            .as_ref()
            .ok_or_else(|| ConnectionError::NoKey(self.key_env.clone()))
    }

    /// Connects to the server, lists its tools and stores the connection
    /// with every tool enabled. Nothing is stored if the server cannot be
    /// reached with the given credentials.
    pub async fn create(
        &self,
        org: &str,
        new: NewConnection,
    ) -> Result<Connection, ConnectionError> {
        let sealer = self.sealer()?;
        let name = new.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
            return Err(ConnectionError::Invalid(format!(
                "`name` must be 1 to {MAX_NAME_LEN} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(ConnectionError::Invalid(
                "`name` must not contain control characters (line breaks, tabs, NUL)".into(),
            ));
        }
        let (auth, headers) = credentials(new.headers, new.bearer_token)?;
        let id = uuid::Uuid::new_v4().to_string();
        let server_id = server_id(&name);
        let config = McpServerConfig::streamable_http(server_id.clone(), new.url, headers);
        let entry = self.pool.connection_entry(config, id.clone()).await?;
        let tools = match entry.offered().await {
            Ok(tools) => tools,
            Err(e) => {
                entry.retire().await;
                return Err(e.into());
            }
        };
        let mut slugs = NameAllocator::default();
        let tools = tools
            .iter()
            .map(|tool| ConnectionToolRow {
                slug: slugs.allocate(&server_id, &tool.name),
                name: storable(&tool.name).into_owned(),
                description: storable(&tool.description).into_owned(),
                read_only: tool.read_only,
                enabled: true,
            })
            .collect();
        let secret = serde_json::to_vec(&entry.config.headers).unwrap_or_default();
        let row = ConnectionRow {
            id: id.clone(),
            org: org.to_owned(),
            name: name.clone(),
            server_id,
            url: entry.config.url.clone().unwrap_or_default(),
            auth_type: auth.kind.clone(),
            header_names: auth.header_names.clone(),
            credentials: sealer.seal(&secret, &id),
            created_at: crate::timestamp::now(),
            tools,
        };
        let view = view(&row);
        let inserted = self.store.insert_connection(row).await;
        self.forget(org);
        if !inserted? {
            entry.retire().await;
            return Err(ConnectionError::Duplicate(name));
        }
        tracing::info!(%org, connection = %id, tools = view.tools.len(), "connection created");
        let org = org.to_owned();
        self.live.lock().await.insert(id, Live { org, entry });
        Ok(view)
    }

    pub async fn list(&self, org: &str) -> Result<Vec<Connection>, ConnectionError> {
        Ok(self
            .store
            .connections(Some(org))
            .await?
            .iter()
            .map(view)
            .collect())
    }

    pub async fn get(&self, org: &str, id: &str) -> Result<Connection, ConnectionError> {
        Ok(view(&self.row(org, id).await?))
    }

    pub async fn delete(&self, org: &str, id: &str) -> Result<(), ConnectionError> {
        let deleted = self.store.delete_connection(org, id).await;
        self.forget(org);
        if !deleted? {
            return Err(ConnectionError::NotFound(id.to_owned()));
        }
        if let Some(Live { entry, .. }) = self.live.lock().await.remove(id) {
            entry.retire().await;
        }
        Ok(())
    }

    pub async fn set_tool_enabled(
        &self,
        org: &str,
        id: &str,
        slug: &str,
        enabled: bool,
    ) -> Result<Connection, ConnectionError> {
        let row = self.row(org, id).await?;
        let changed = self.store.set_tool_enabled(org, id, slug, enabled).await;
        self.forget(org);
        if !changed? {
            return Err(ConnectionError::ToolUnavailable {
                slug: slug.to_owned(),
                connection: row.id,
                why: "no tool has this slug",
            });
        }
        self.get(org, id).await
    }

    /// The tool a slug names, ready to call, if it exists and is enabled.
    pub async fn resolve_slug(
        &self,
        org: &str,
        id: &str,
        slug: &str,
    ) -> Result<ToolBinding, ConnectionError> {
        let row = self.row(org, id).await?;
        let unavailable = |why| ConnectionError::ToolUnavailable {
            slug: slug.to_owned(),
            connection: id.to_owned(),
            why,
        };
        let tool = row
            .tools
            .iter()
            .find(|t| t.slug == slug)
            .ok_or_else(|| unavailable("no tool has this slug"))?;
        if !tool.enabled {
            return Err(unavailable("the tool is disabled"));
        }
        let selection = Selection {
            server: self.entry(&row).await?,
            only: Some(vec![tool.name.clone()]),
        };
        let mut set = match mcp::tool_set(&[selection]).await {
            Err(McpError::UnknownTool { .. }) => {
                return Err(unavailable("the server no longer offers it"));
            }
            other => other?,
        };
        let mut binding = set.tools.pop().ok_or_else(|| unavailable("not found"))?;
        binding.name = tool.slug.clone();
        Ok(binding)
    }

    /// The enabled tools of an org's connections, for its chats. Servers
    /// that cannot be reached are left out with a warning, so one dead
    /// server does not stop every chat.
    pub async fn selections(&self, org: &str) -> Vec<Selection> {
        let mut selections = Vec::new();
        match self.org_rows(org).await {
            Ok(rows) => {
                for row in rows.iter() {
                    if let Some(selection) = self.selection(row).await {
                        selections.push(selection);
                    }
                }
            }
            Err(e) => tracing::error!(%org, "cannot read connections: {e}"),
        }
        selections
    }

    /// The org's connections, from the catalogue when it has them.
    async fn org_rows(&self, org: &str) -> Result<Arc<Vec<ConnectionRow>>, StoreError> {
        let generation = {
            let catalogue = self.catalogue();
            if let Some(rows) = catalogue.orgs.get(org) {
                return Ok(rows.clone());
            }
            catalogue.generation
        };
        let rows = Arc::new(self.store.connections(Some(org)).await?);
        let mut catalogue = self.catalogue();
        if catalogue.generation == generation {
            catalogue.orgs.insert(org.to_owned(), rows.clone());
        }
        Ok(rows)
    }

    /// Reads an org's connections again (every org's with `None`) after
    /// another replica changed them; a connection gone from the store is
    /// stopped here too.
    pub async fn refresh(&self, org: Option<&str>) {
        match org {
            Some(org) => self.forget(org),
            None => {
                let mut catalogue = self.catalogue();
                catalogue.generation += 1;
                catalogue.orgs.clear();
            }
        }
        let rows = match self.store.connections(org).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!("cannot read the connections other replicas changed: {e}");
                return;
            }
        };
        let gone: Vec<Live> = {
            let mut live = self.live.lock().await;
            let ids: Vec<String> = live
                .iter()
                .filter(|(id, opened)| {
                    org.is_none_or(|org| opened.org == org) && !rows.iter().any(|r| &r.id == *id)
                })
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| live.remove(id)).collect()
        };
        for opened in gone {
            opened.entry.retire().await;
        }
    }

    /// Called after every write to an org's connections, whether or not
    /// it succeeded.
    fn forget(&self, org: &str) {
        let mut catalogue = self.catalogue();
        catalogue.generation += 1;
        catalogue.orgs.remove(org);
    }

    fn catalogue(&self) -> std::sync::MutexGuard<'_, Catalogue> {
        self.catalogue.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn selection(&self, row: &ConnectionRow) -> Option<Selection> {
        let enabled: Vec<&str> = row
            .tools
            .iter()
            .filter(|t| t.enabled)
            .map(|t| t.name.as_str())
            .collect();
        if enabled.is_empty() {
            return None;
        }
        let entry = self
            .entry(row)
            .await
            .inspect_err(|e| tracing::warn!(connection = %row.id, "leaving out connection: {e}"))
            .ok()?;
        let offered = entry
            .tools()
            .await
            .inspect_err(|e| tracing::warn!(connection = %row.id, "leaving out connection: {e}"))
            .ok()?;
        let only = offered
            .iter()
            .filter(|t| enabled.contains(&t.name.as_ref()))
            .map(|t| t.name.to_string())
            .collect();
        Some(Selection {
            server: entry,
            only: Some(only),
        })
    }

    async fn row(&self, org: &str, id: &str) -> Result<ConnectionRow, ConnectionError> {
        self.store
            .connection(org, id)
            .await?
            .ok_or_else(|| ConnectionError::NotFound(id.to_owned()))
    }

    /// The connection's server, opening its credentials on first use.
    async fn entry(&self, row: &ConnectionRow) -> Result<Arc<ServerEntry>, ConnectionError> {
        let mut live = self.live.lock().await;
        if let Some(opened) = live.get(&row.id) {
            return Ok(opened.entry.clone());
        }
        let secret = self.sealer()?.open(&row.credentials, &row.id)?;
        let headers: BTreeMap<String, String> =
            serde_json::from_slice(&secret).map_err(|_| CryptoError::Unreadable)?;
        let config =
            McpServerConfig::streamable_http(row.server_id.clone(), row.url.clone(), headers);
        let entry = self.pool.connection_entry(config, row.id.clone()).await?;
        let org = row.org.clone();
        live.insert(
            row.id.clone(),
            Live {
                org,
                entry: entry.clone(),
            },
        );
        Ok(entry)
    }
}

/// The request headers a connection sends, and how the API describes them.
fn credentials(
    mut headers: BTreeMap<String, String>,
    bearer_token: Option<String>,
) -> Result<(Auth, BTreeMap<String, String>), ConnectionError> {
    for (name, value) in &headers {
        let valid = reqwest::header::HeaderName::try_from(name.as_str()).is_ok()
            && reqwest::header::HeaderValue::try_from(value.as_str()).is_ok();
        if !valid {
            return Err(ConnectionError::Invalid(format!(
                "header `{name}` is not a valid HTTP header name and value"
            )));
        }
    }
    let kind = match bearer_token {
        Some(token) => {
            if headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("authorization"))
            {
                return Err(ConnectionError::Invalid(
                    "give `bearer_token` or an `Authorization` header, not both".into(),
                ));
            }
            let value = format!("Bearer {}", token.trim());
            if token.trim().is_empty() || reqwest::header::HeaderValue::try_from(&value).is_err() {
                return Err(ConnectionError::Invalid(
                    "`bearer_token` must be a non-empty token of visible ASCII".into(),
                ));
            }
            headers.insert("Authorization".into(), value);
            "bearer"
        }
        None if headers.is_empty() => "none",
        None => "headers",
    };
    let auth = Auth {
        kind: kind.into(),
        header_names: headers.keys().cloned().collect(),
    };
    Ok((auth, headers))
}

/// A connection name as an MCP server id: the prefix of its tools' slugs.
fn server_id(name: &str) -> String {
    let id: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let id = id.trim_matches('_');
    if id.is_empty() {
        "connection".into()
    } else {
        id.chars().take(40).collect()
    }
}

fn view(row: &ConnectionRow) -> Connection {
    Connection {
        id: row.id.clone(),
        name: row.name.clone(),
        url: row.url.clone(),
        auth: Auth {
            kind: row.auth_type.clone(),
            header_names: row.header_names.clone(),
        },
        created_at: row.created_at.clone(),
        tools: row
            .tools
            .iter()
            .map(|t| ConnectionTool {
                slug: t.slug.clone(),
                name: t.name.clone(),
                description: t.description.clone(),
                read_only: t.read_only,
                enabled: t.enabled,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_credentials() {
        assert_eq!(server_id("Acme CRM (prod)"), "acme_crm__prod");
        assert_eq!(server_id("!!!"), "connection");
        let (auth, headers) = credentials(BTreeMap::new(), Some("tok".into())).unwrap();
        assert_eq!(
            (auth.kind.as_str(), auth.header_names),
            ("bearer", vec!["Authorization".to_owned()])
        );
        assert_eq!(headers["Authorization"], "Bearer tok");
        let both = BTreeMap::from([("authorization".to_owned(), "x".to_owned())]);
        assert!(credentials(both, Some("tok".into())).is_err());
        let bad = BTreeMap::from([("bad header".to_owned(), "x".to_owned())]);
        assert!(credentials(bad, None).is_err());
        assert!(credentials(BTreeMap::new(), Some("a\nb".into())).is_err());
    }
}
