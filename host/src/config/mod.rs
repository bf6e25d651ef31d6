//! Configuration: a TOML file, then the environment, then built-in defaults.
//!
//! The names here (`listen`, `data_dir`, `[provider]`, `[[mcp_servers]]`,
//! `OPENAI_API_KEY`, ...) are shared with other tools; see design.md.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-4o-mini";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Compiled-plugin cache (and, later, the database).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Extra `.wasm` components loaded at start.
    #[serde(default = "default_plugins_dir")]
    pub plugins_dir: PathBuf,
    /// Chosen from the environment when absent; see [`Config::resolve_provider`].
    pub provider: Option<ProviderConfig>,
    /// When absent, the built-in demo server; an explicit empty list means none.
    pub mcp_servers: Option<Vec<McpServerConfig>>,
    #[serde(default)]
    pub cors: CorsConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub agent: AgentConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Name of a loaded provider plugin: `openai`, `mock`, ...
    pub plugin: String,
    #[serde(default)]
    pub base_url: Option<String>,
    /// Environment variable holding the API key; the key itself never
    /// appears in the config file.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Stdio,
    StreamableHttp,
}

#[derive(Debug, Clone, Deserialize)]
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
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Seconds a single tool call may take.
    #[serde(default)]
    pub timeout: Option<f64>,
}

impl McpServerConfig {
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
            Transport::StreamableHttp => self.url.clone().unwrap_or_default(),
        }
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout.unwrap_or(60.0).clamp(0.1, 3600.0))
    }

    fn validate(&self) -> Result<(), ConfigError> {
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
        match self.transport {
            Transport::Stdio if self.command.is_none() => Err(ConfigError::Invalid(format!(
                "mcp server `{}` uses stdio but has no `command`",
                self.id
            ))),
            Transport::StreamableHttp if self.url.is_none() => Err(ConfigError::Invalid(format!(
                "mcp server `{}` uses streamable_http but has no `url`",
                self.id
            ))),
            _ => Ok(()),
        }
    }
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
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            plugin_call_timeout_ms: 250,
            plugin_memory_mb: 64,
            max_body_bytes: 1 << 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Model turns per request before the loop gives up.
    pub iteration_limit: u32,
    /// Seconds without a byte from the provider before the turn fails.
    pub provider_idle_timeout_secs: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            iteration_limit: 10,
            provider_idle_timeout_secs: 120,
        }
    }
}

/// The provider as the running server uses it, secrets resolved.
#[derive(Clone)]
pub struct ResolvedProvider {
    pub plugin: String,
    pub base_url: String,
    pub model: String,
    pub api_key: Option<Secret>,
    /// Why this provider was chosen, for the start-up log.
    pub origin: &'static str,
}

/// A credential that prints as `[redacted]` so it cannot leak into logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Read access to the environment, so tests need not mutate the process's.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Config {
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let config: Config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.into(),
                    source,
                })?
            }
            None => toml::from_str("").map_err(|source| ConfigError::Parse {
                path: PathBuf::from("<defaults>"),
                source,
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
        if self.agent.iteration_limit == 0 {
            return Err(ConfigError::Invalid(
                "agent.iteration_limit must be at least 1".into(),
            ));
        }
        Ok(())
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
                cwd: None,
                url: None,
                headers: BTreeMap::new(),
                timeout: None,
            }]
        })
    }

    /// The configured provider, else OpenAI when `OPENAI_API_KEY` or
    /// `OPENAI_BASE_URL` is set, else the offline mock.
    pub fn resolve_provider(&self, env: &dyn Env) -> ResolvedProvider {
        if let Some(p) = &self.provider {
            let key_env = p.api_key_env.clone().or_else(|| default_key_env(&p.plugin));
            return ResolvedProvider {
                plugin: p.plugin.clone(),
                base_url: p
                    .base_url
                    .clone()
                    .or_else(|| default_base_url(&p.plugin, env))
                    .unwrap_or_default(),
                model: p
                    .model
                    .clone()
                    .unwrap_or_else(|| DEFAULT_OPENAI_MODEL.into()),
                api_key: key_env.and_then(|name| env.var(&name)).map(Secret),
                origin: "config file",
            };
        }
        let key = env.var("OPENAI_API_KEY");
        let base_url = env.var("OPENAI_BASE_URL");
        if key.is_some() || base_url.is_some() {
            return ResolvedProvider {
                plugin: "openai".into(),
                base_url: trim_slash(base_url.unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.into())),
                model: env
                    .var("OPENAI_MODEL")
                    .unwrap_or_else(|| DEFAULT_OPENAI_MODEL.into()),
                api_key: key.map(Secret),
                origin: "OPENAI_API_KEY / OPENAI_BASE_URL",
            };
        }
        ResolvedProvider {
            plugin: "mock".into(),
            base_url: String::new(),
            model: "mock".into(),
            api_key: None,
            origin: "no provider configured and no OPENAI_API_KEY or OPENAI_BASE_URL set",
        }
    }
}

fn default_key_env(plugin: &str) -> Option<String> {
    match plugin {
        "openai" => Some("OPENAI_API_KEY".into()),
        _ => None,
    }
}

fn default_base_url(plugin: &str, env: &dyn Env) -> Option<String> {
    match plugin {
        "openai" => Some(trim_slash(
            env.var("OPENAI_BASE_URL")
                .unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.into()),
        )),
        _ => None,
    }
}

fn trim_slash(url: String) -> String {
    url.trim_end_matches('/').to_owned()
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
    use std::collections::HashMap;

    struct FakeEnv(HashMap<&'static str, &'static str>);

    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    #[test]
    fn defaults_to_mock_and_demo_server_without_anything_configured() {
        let config = Config::load(None).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        let provider = config.resolve_provider(&FakeEnv(HashMap::new()));
        assert_eq!(provider.plugin, "mock");
        let servers = config.mcp_servers(Path::new("/bin/agenthost"));
        assert_eq!(servers[0].id, "demo");
        assert_eq!(servers[0].location(), "/bin/agenthost demo-mcp");
    }

    #[test]
    fn openai_environment_selects_openai() {
        let config = Config::load(None).unwrap();
        let env = FakeEnv(HashMap::from([(
            "OPENAI_BASE_URL",
            "http://127.0.0.1:9/v1/",
        )]));
        let provider = config.resolve_provider(&env);
        assert_eq!(provider.plugin, "openai");
        assert_eq!(provider.base_url, "http://127.0.0.1:9/v1");
        assert!(provider.api_key.is_none());
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
        let env = FakeEnv(HashMap::from([("MY_KEY", "sk-test")]));
        let provider = config.resolve_provider(&env);
        assert_eq!(provider.api_key.unwrap().expose(), "sk-test");

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
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret("sk-live".into())), "[redacted]");
    }
}
