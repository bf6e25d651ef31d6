//! Configuration: a TOML file, then the environment, then built-in defaults.
//!
//! The names here (`listen`, `data_dir`, `[provider]`, `[[mcp_servers]]`,
//! `OPENAI_API_KEY`, ...) are shared with other tools; see design.md.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod database;
mod grants;
mod keys;
mod providers;

pub use database::{Database, PoolLimits};
pub use grants::{DirGrant, Grants};
pub use keys::{ApiKeyConfig, Role};

pub use providers::{
    Env, ProcessEnv, ProviderConfig, ResolvedProvider, ResolvedProviders, RoutingConfig, Secret,
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
/// The variable that names the database, over the config file.
pub const DATABASE_URL_ENV: &str = "AGENTHOST_DATABASE_URL";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The cause is in the message and not a `source`, so the error is
    // printed once, not again as its cause.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid config file {path}: {cause}")]
    Parse {
        path: PathBuf,
        cause: toml::de::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The SQLite database, and by default the compiled-plugin cache.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// A PostgreSQL URL, for several replicas sharing one store; absent:
    /// SQLite in `data_dir`. `AGENTHOST_DATABASE_URL` takes precedence.
    #[serde(default)]
    pub database_url: Option<String>,
    /// Compiled-plugin cache; `data_dir/plugin-cache` when absent.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Extra `.wasm` components loaded at start.
    #[serde(default = "default_plugins_dir")]
    pub plugins_dir: PathBuf,
    /// Built-in plugins that a plugin of the same name may replace.
    #[serde(default)]
    pub replace_builtin_plugins: Vec<String>,
    /// The single-provider shorthand; see [`Config::resolve_providers`].
    pub provider: Option<ProviderConfig>,
    /// Several providers, routed by model name.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    pub routing: RoutingConfig,
    /// When absent, the built-in demo server; an explicit empty list means none.
    pub mcp_servers: Option<Vec<McpServerConfig>>,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    #[serde(default)]
    pub security: SecurityConfig,
    #[serde(default)]
    pub cors: CorsConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub agent: AgentConfig,
    /// How log lines are written to stderr.
    #[serde(default)]
    pub log_format: LogFormat,
    /// On SIGTERM or SIGINT, how long open chats may go on before they are
    /// ended; 0 ends them at once.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: f64,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// What the server tells an operator's monitoring.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `GET /metrics` without a key in keyed mode, for a scraper on a
    /// trusted network. Off: it takes an admin key, since its labels name
    /// every org's servers and tools.
    #[serde(default)]
    pub metrics_public: bool,
    /// Where to send traces over OTLP/HTTP, as a collector's base URL
    /// (`http://collector:4318`) or its full `/v1/traces` URL. Unset, no
    /// span is made at all.
    pub otlp_endpoint: Option<String>,
    #[serde(default)]
    pub otlp_protocol: OtlpProtocol,
}

/// How spans are encoded on the wire; collectors take both.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
pub enum OtlpProtocol {
    /// The OpenTelemetry SDKs' default.
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

fn default_shutdown_grace_secs() -> f64 {
    30.0
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// For people: one line per event, fields as `name=value`.
    #[default]
    Text,
    /// For log collectors: one JSON object per line.
    Json,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Stdio,
    /// The legacy HTTP+SSE transport of protocol 2024-11-05.
    Sse,
    StreamableHttp,
    /// A `wasi:cli` command component run inside the host, speaking MCP
    /// over its stdin and stdout, with only what `grants` gives it.
    Wasm,
}

impl Transport {
    /// Its name in the config file and the APIs.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Sse => "sse",
            Transport::StreamableHttp => "streamable_http",
            Transport::Wasm => "wasm",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub transport: Transport,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables of this host's environment a stdio server is also given;
    /// it gets no other (see `mcp::connect`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_passthrough: Vec<String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The component file of a `wasm` server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<PathBuf>,
    /// What a `wasm` server may reach; nothing when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Grants>,
    /// Seconds a single tool call may take.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Seconds the server may take to start and list its tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_timeout: Option<f64>,
    /// The TrueFoundry integration FQN this server also answers to in
    /// `mcp_servers[].integration_fqn`, so clients written against the
    /// gateway run unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_fqn: Option<String>,
    /// Per-tool override of the server's `readOnlyHint`, which decides
    /// what a viewer may call: `{ add_note = "write" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tool_access: BTreeMap<String, ToolAccess>,
    /// `false`: offer the tools under the server's own names where no
    /// name offered before takes them, for clients that expect one
    /// server's exact names. Absent: `server__tool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_prefix: Option<bool>,
    /// Which of its tools' calls in a chat wait for a person's approval;
    /// `never` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_approval: Option<RequireApproval>,
    /// Per-tool override of `require_approval`: `{ delete_note = "always" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tool_approval: BTreeMap<String, RequireApproval>,
}

/// Which tool calls wait for a person's approval before they run.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RequireApproval {
    Never,
    Always,
    /// Tools that are not read-only (no `readOnlyHint`, or the config's
    /// `tool_access` says `write`), and tools with `destructiveHint`.
    Writes,
}

/// Whether calling a tool only reads, for role checks.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ToolAccess {
    Read,
    Write,
}

impl McpServerConfig {
    /// A remote server over streamable HTTP, with nothing else set.
    pub fn streamable_http(
        id: String,
        url: String,
        headers: BTreeMap<String, String>,
    ) -> McpServerConfig {
        McpServerConfig {
            id,
            name: None,
            description: None,
            transport: Transport::StreamableHttp,
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            env_passthrough: Vec::new(),
            cwd: None,
            url: Some(url),
            headers,
            component: None,
            grants: None,
            timeout: None,
            startup_timeout: None,
            integration_fqn: None,
            tool_access: BTreeMap::new(),
            tool_prefix: None,
            require_approval: None,
            tool_approval: BTreeMap::new(),
        }
    }

    /// Whether a chat's call of `tool` waits for a person's approval.
    pub fn needs_approval(&self, tool: &str, read_only: bool, destructive: bool) -> bool {
        let rule = self
            .tool_approval
            .get(tool)
            .or(self.require_approval.as_ref());
        match rule {
            None | Some(RequireApproval::Never) => false,
            Some(RequireApproval::Always) => true,
            Some(RequireApproval::Writes) => !read_only || destructive,
        }
    }

    /// Whether `tool` only reads: the config's word, else the server's hint.
    pub fn is_read_only(&self, tool: &str, hint: Option<bool>) -> bool {
        match self.tool_access.get(tool) {
            Some(access) => *access == ToolAccess::Read,
            None => hint.unwrap_or(false),
        }
    }

    /// Whether its tools are offered as `server__tool`.
    pub fn prefixes_tools(&self) -> bool {
        self.tool_prefix != Some(false)
    }

    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// Where the server lives: its command line or its URL.
    pub fn location(&self) -> String {
        match self.transport {
            Transport::Stdio => std::iter::once(self.command.as_deref().unwrap_or(""))
                .chain(self.args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            Transport::Sse | Transport::StreamableHttp => self.url.clone().unwrap_or_default(),
            Transport::Wasm => self
                .component
                .as_deref()
                .map(|path| path.display().to_string())
                .unwrap_or_default(),
        }
    }

    /// Whether it runs on this host (a command or a component), which
    /// only an admin may register.
    pub fn runs_on_host(&self) -> bool {
        matches!(self.transport, Transport::Stdio | Transport::Wasm)
    }

    pub fn call_timeout(&self) -> Duration {
        clamped_secs(self.timeout.unwrap_or(60.0), 0.1, 3600.0)
    }

    pub fn startup_timeout(&self) -> Duration {
        clamped_secs(self.startup_timeout.unwrap_or(30.0), 0.1, 600.0)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let ok_id = !self.id.is_empty()
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok_id {
            return Err(ConfigError::Invalid(format!(
                "mcp server id `{}` must be non-empty ASCII letters, digits, `_` or `-`",
                self.id
            )));
        }
        for (key, value) in [
            ("timeout", self.timeout),
            ("startup_timeout", self.startup_timeout),
        ] {
            if let Some(value) = value {
                positive_secs(&format!("mcp server `{}`: `{key}`", self.id), value)?;
            }
        }
        match self.transport {
            Transport::Stdio if self.command.is_none() => Err(ConfigError::Invalid(format!(
                "mcp server `{}` uses stdio but has no `command`",
                self.id
            ))),
            Transport::Sse | Transport::StreamableHttp if self.url.is_none() => {
                Err(ConfigError::Invalid(format!(
                    "mcp server `{}` uses transport \"{}\" but has no `url`",
                    self.id,
                    self.transport.name()
                )))
            }
            Transport::Wasm => self.validate_component(),
            _ if self.grants.is_some() => Err(ConfigError::Invalid(format!(
                "mcp server `{}`: `grants` apply to transport = \"wasm\" only",
                self.id
            ))),
            _ => Ok(()),
        }
    }

    /// A component server takes its file and its grants, and nothing a
    /// process or a remote server would.
    fn validate_component(&self) -> Result<(), ConfigError> {
        let invalid =
            |what: &str| ConfigError::Invalid(format!("mcp server `{}` uses wasm {what}", self.id));
        if self.component.is_none() {
            return Err(invalid("but has no `component` (the .wasm file)"));
        }
        if self.command.is_some() || !self.args.is_empty() || self.cwd.is_some() {
            return Err(invalid(
                "and runs no command: drop `command`, `args` and `cwd`",
            ));
        }
        if !self.env.is_empty() || !self.env_passthrough.is_empty() {
            return Err(invalid(
                "and gets variables from `grants.env` only: move `env` there",
            ));
        }
        if self.url.is_some() || !self.headers.is_empty() {
            return Err(invalid("and has no `url` or `headers`"));
        }
        self.grants
            .as_ref()
            .map_or(Ok(()), |grants| grants.validate(&self.id))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Addresses (`127.0.0.1`) or networks (`10.0.0.0/8`) that ad-hoc MCP
    /// server URLs may reach although they are loopback, private or
    /// link-local. Empty: only public addresses.
    #[serde(default)]
    pub allow_mcp_networks: Vec<String>,
    /// Lets any caller register stdio MCP servers (run commands on this
    /// host); otherwise that takes an admin API key.
    #[serde(default)]
    pub allow_stdio_registration: bool,
    /// Environment variable holding the key that encrypts credentials at
    /// rest (connections', and run-time servers' env and headers): 32
    /// bytes as 64 hex digits.
    #[serde(default = "default_connection_key_env")]
    pub connection_key_env: String,
    /// Names requests may carry in `Host`, besides the loopback names and
    /// the listen address: the names remote clients use for this server.
    /// `"*"` accepts any, which gives up DNS-rebinding protection.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Accepts listening on a non-loopback address with no `[[api_keys]]`:
    /// anyone who can reach the port is then the local user.
    #[serde(default)]
    pub anonymous: bool,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            allow_mcp_networks: Vec::new(),
            allow_stdio_registration: false,
            connection_key_env: default_connection_key_env(),
            allowed_hosts: Vec::new(),
            anonymous: false,
        }
    }
}

fn default_connection_key_env() -> String {
    "AGENTHOST_CONNECTION_KEY".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    #[serde(default = "default_cors_origins")]
    pub allowed_origins: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: default_cors_origins(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest a single call into a plugin may run.
    pub plugin_call_timeout_ms: u64,
    /// Linear memory one plugin instance may use.
    pub plugin_memory_mb: u64,
    /// Output a plugin may produce for one response.
    pub plugin_output_mb: u64,
    /// Streams that share one plugin instance at most; 1 gives each
    /// running stream an instance to itself.
    pub plugin_streams_per_instance: usize,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Largest tool result, serialized, passed on to the model and client.
    pub tool_result_max_bytes: usize,
    /// Longest a database operation may wait or run (PostgreSQL).
    pub database_timeout_secs: f64,
    /// Connections to PostgreSQL one replica keeps at most.
    pub database_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            plugin_call_timeout_ms: 250,
            plugin_memory_mb: 64,
            plugin_output_mb: 64,
            plugin_streams_per_instance: 32,
            max_body_bytes: 1 << 20,
            tool_result_max_bytes: 1 << 20,
            database_timeout_secs: 10.0,
            database_connections: 32,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Rounds of tool calls per request; a last turn, offered no tools,
    /// then answers.
    pub iteration_limit: u32,
    /// Seconds to establish a connection to the provider.
    pub connect_timeout_secs: f64,
    /// Seconds from sending a request to the response's headers.
    pub first_byte_timeout_secs: f64,
    /// Seconds without a byte from the provider before the turn fails.
    pub provider_idle_timeout_secs: f64,
    /// Attempts per provider request (the first included) on connection
    /// errors, timeouts, 429 and 5xx, before the response starts.
    pub retry_attempts: u32,
    /// Seconds all attempts of one provider request may take together.
    pub retry_budget_secs: f64,
    /// Seconds a chat waits for MCP servers that are still starting before
    /// it goes on without them; they keep starting for the next chat.
    pub tools_wait_secs: f64,
    /// What a streamed chat does when its client goes away.
    pub on_disconnect: OnDisconnect,
    /// Seconds an ended run's events are kept for `GET /runs/{id}/events`.
    pub run_retention_secs: f64,
    /// Seconds a tool call waits for a person's approval before it is
    /// refused.
    pub approval_timeout_secs: f64,
}

/// What a streamed chat does when its client's connection drops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDisconnect {
    /// Stop the chat, its provider request and its tool calls.
    #[default]
    Cancel,
    /// Run the chat to its end and keep what it adds, for a reconnect
    /// (`GET /runs/{id}/events`) or the session's history.
    Continue,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            iteration_limit: 10,
            connect_timeout_secs: 10.0,
            first_byte_timeout_secs: 60.0,
            provider_idle_timeout_secs: 120.0,
            retry_attempts: 3,
            retry_budget_secs: 30.0,
            tools_wait_secs: 2.0,
            on_disconnect: OnDisconnect::Cancel,
            run_retention_secs: 300.0,
            approval_timeout_secs: 300.0,
        }
    }
}

/// Seconds from the config as a duration, clamped to something sane.
pub fn seconds(value: f64) -> Duration {
    clamped_secs(value, 0.001, 86_400.0)
}

/// `value` seconds within `min..=max`; `min` for what is not a number.
pub fn clamped_secs(value: f64, min: f64, max: f64) -> Duration {
    let value = if value.is_nan() { min } else { value };
    Duration::from_secs_f64(value.clamp(min, max))
}

/// Refuses a number of seconds that is not a positive, finite number.
fn positive_secs(key: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        return Ok(());
    }
    Err(ConfigError::Invalid(format!(
        "{key} must be a positive number of seconds, not {value}"
    )))
}

impl Config {
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let config: Config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
                    path: path.into(),
                    cause,
                })?;
                toml::from_str(&text).map_err(|cause| ConfigError::Parse {
                    path: path.into(),
                    cause,
                })?
            }
            None => toml::from_str("").map_err(|cause| ConfigError::Parse {
                path: PathBuf::from("<defaults>"),
                cause,
            })?,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let servers = self.mcp_servers.as_deref().unwrap_or_default();
        for (i, server) in servers.iter().enumerate() {
            server.validate()?;
            if servers[..i].iter().any(|s| s.id == server.id) {
                return Err(ConfigError::Invalid(format!(
                    "mcp server id `{}` is used twice",
                    server.id
                )));
            }
        }
        if self.limits.database_connections == 0 {
            return Err(ConfigError::Invalid(
                "limits.database_connections must be at least 1".into(),
            ));
        }
        if self.limits.plugin_streams_per_instance == 0 {
            return Err(ConfigError::Invalid(
                "limits.plugin_streams_per_instance must be at least 1".into(),
            ));
        }
        if self.agent.iteration_limit == 0 {
            return Err(ConfigError::Invalid(
                "agent.iteration_limit must be at least 1".into(),
            ));
        }
        if !(self.shutdown_grace_secs.is_finite() && self.shutdown_grace_secs >= 0.0) {
            return Err(ConfigError::Invalid(format!(
                "shutdown_grace_secs must be 0 or a positive number of seconds, not {}",
                self.shutdown_grace_secs
            )));
        }
        let agent = &self.agent;
        for (key, value) in [
            ("agent.connect_timeout_secs", agent.connect_timeout_secs),
            (
                "agent.first_byte_timeout_secs",
                agent.first_byte_timeout_secs,
            ),
            (
                "agent.provider_idle_timeout_secs",
                agent.provider_idle_timeout_secs,
            ),
            ("agent.retry_budget_secs", agent.retry_budget_secs),
            ("agent.tools_wait_secs", agent.tools_wait_secs),
            ("agent.run_retention_secs", agent.run_retention_secs),
            ("agent.approval_timeout_secs", agent.approval_timeout_secs),
            (
                "limits.database_timeout_secs",
                self.limits.database_timeout_secs,
            ),
        ] {
            positive_secs(key, value)?;
        }
        for origin in &self.cors.allowed_origins {
            let valid = reqwest::Url::parse(origin).is_ok_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.host().is_some()
                    && url.path() == "/"
                    && !origin.ends_with('/')
            });
            if !valid {
                return Err(ConfigError::Invalid(format!(
                    "cors.allowed_origins: `{origin}` is not an origin: give a scheme and host (and port), such as `https://app.example.com`; `*` cannot be used because the API allows credentials"
                )));
            }
        }
        Ok(())
    }

    /// Where the data lives: `AGENTHOST_DATABASE_URL`, else `database_url`,
    /// else SQLite in `data_dir`.
    pub fn database(&self, env: &dyn Env) -> Result<Database, ConfigError> {
        let url = env
            .var(DATABASE_URL_ENV)
            .filter(|url| !url.trim().is_empty())
            .or_else(|| self.database_url.clone());
        match url {
            None => Ok(Database::Sqlite(self.data_dir.join("agenthost.db"))),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Database::Postgres(url))
            }
            Some(_) => Err(ConfigError::Invalid(format!(
                "database_url (or {DATABASE_URL_ENV}) must be a postgres:// URL; leave it out for SQLite in data_dir"
            ))),
        }
    }

    /// The limits of the database's connection pool.
    pub fn pool_limits(&self) -> PoolLimits {
        PoolLimits {
            timeout: seconds(self.limits.database_timeout_secs),
            connections: self.limits.database_connections,
        }
    }

    /// The MCP servers to offer: the configured ones, or the built-in demo
    /// server (this very binary, `demo-mcp`) when none are configured.
    pub fn mcp_servers(&self, own_exe: &Path) -> Vec<McpServerConfig> {
        self.mcp_servers.clone().unwrap_or_else(|| {
            vec![McpServerConfig {
                id: "demo".into(),
                name: Some("Demo tools".into()),
                description: Some("Clock, arithmetic and notes".into()),
                transport: Transport::Stdio,
                command: Some(own_exe.display().to_string()),
                args: vec!["demo-mcp".into()],
                env: BTreeMap::new(),
                env_passthrough: Vec::new(),
                cwd: None,
                url: None,
                headers: BTreeMap::new(),
                component: None,
                grants: None,
                timeout: None,
                startup_timeout: None,
                integration_fqn: None,
                tool_access: BTreeMap::new(),
                tool_prefix: None,
                require_approval: None,
                tool_approval: BTreeMap::new(),
            }]
        })
    }
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8000)))
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

fn default_plugins_dir() -> PathBuf {
    PathBuf::from("plugins.d")
}

fn default_cors_origins() -> Vec<String> {
    vec!["http://localhost:3000".into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_approval_covers_tools_that_write_or_destroy_and_a_tool_entry_wins() {
        let server: McpServerConfig = toml::from_str(
            "id = \"demo\"\ntransport = \"stdio\"\ncommand = \"true\"\n\
             require_approval = \"writes\"\ntool_approval = { calculate = \"always\", drop_all = \"never\" }",
        )
        .unwrap();
        assert!(!server.needs_approval("list_notes", true, false));
        assert!(server.needs_approval("add_note", false, false));
        assert!(server.needs_approval("purge", true, true), "destructive");
        assert!(server.needs_approval("calculate", true, false));
        assert!(!server.needs_approval("drop_all", false, true));
        let unset =
            McpServerConfig::streamable_http("x".into(), "http://x".into(), BTreeMap::new());
        assert!(!unset.needs_approval("add_note", false, true));
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load(None).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        let servers = config.mcp_servers(Path::new("/bin/agenthost"));
        assert_eq!(servers[0].id, "demo");
        assert_eq!(servers[0].location(), "/bin/agenthost demo-mcp");
    }

    #[test]
    fn parses_the_documented_example_and_rejects_mistakes() {
        let text = r#"
            listen = "127.0.0.1:9100"
            [provider]
            plugin = "openai"
            base_url = "http://127.0.0.1:9000/v1"
            api_key_env = "MY_KEY"
            model = "gpt-4o-mini"
            [[mcp_servers]]
            id = "demo"
            transport = "stdio"
            command = "agenthost"
            args = ["demo-mcp"]
        "#;
        let config: Config = toml::from_str(text).unwrap();
        config.validate().unwrap();

        let missing_command = "[[mcp_servers]]\nid = \"x\"\ntransport = \"stdio\"\n";
        let config: Config = toml::from_str(missing_command).unwrap();
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("no `command`")
        );
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }

    #[test]
    fn a_component_server_takes_a_file_and_grants_and_nothing_a_process_would() {
        let refused = |extra: &str| {
            let text = format!("[[mcp_servers]]\nid = \"w\"\ntransport = \"wasm\"\n{extra}");
            let config: Config = toml::from_str(&text).unwrap();
            config.validate().err().map(|e| e.to_string())
        };
        assert_eq!(refused("component = \"s.wasm\"\n"), None);
        let granted = "component = \"s.wasm\"\ngrants = { hosts = [\"a.example:443\"], env = { A = \"1\" } }\n";
        assert_eq!(refused(granted), None);
        for (extra, says) in [
            ("", "no `component`"),
            (
                "component = \"s.wasm\"\ncommand = \"x\"\n",
                "runs no command",
            ),
            (
                "component = \"s.wasm\"\nenv = { A = \"1\" }\n",
                "`grants.env` only",
            ),
            ("component = \"s.wasm\"\nurl = \"http://x\"\n", "no `url`"),
            (
                "component = \"s.wasm\"\ngrants = { hosts = [\"a.example\"] }\n",
                "`host:port`",
            ),
        ] {
            let error = refused(extra).unwrap_or_else(|| panic!("{extra} was accepted"));
            assert!(error.contains(says), "{extra}: {error}");
        }
        let stdio_with_grants =
            "[[mcp_servers]]\nid = \"s\"\ntransport = \"stdio\"\ncommand = \"x\"\ngrants = {}\n";
        let config: Config = toml::from_str(stdio_with_grants).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("transport = \"wasm\" only"), "{error}");
    }

    #[test]
    fn numbers_and_origins_that_would_panic_are_refused_by_name() {
        let refused = |text: &str| {
            let config: Config = toml::from_str(text).unwrap();
            config.validate().unwrap_err().to_string()
        };
        let nan = refused(
            "[[mcp_servers]]\nid = \"x\"\ntransport = \"stdio\"\ncommand = \"x\"\ntimeout = nan\n",
        );
        assert!(nan.contains("`timeout` must be a positive number"), "{nan}");
        let inf = refused("[agent]\nretry_budget_secs = inf\n");
        assert!(inf.contains("agent.retry_budget_secs"), "{inf}");
        let star = refused("[cors]\nallowed_origins = [\"*\"]\n");
        assert!(star.contains("cors.allowed_origins: `*`"), "{star}");
        let ok: Config =
            toml::from_str("[cors]\nallowed_origins = [\"http://localhost:3000\"]\n").unwrap();
        ok.validate().unwrap();
        assert_eq!(clamped_secs(f64::NAN, 0.1, 5.0), Duration::from_millis(100));
    }
}
