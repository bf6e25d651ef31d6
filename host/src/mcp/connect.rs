//! Opening an MCP client session over each transport.

use std::process::Stdio;
use std::sync::Arc;

use rmcp::service::{ClientInitializeError, ClientLifecycleMode, RunningService};
use rmcp::transport::IntoTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientServiceExt, RoleClient};

use super::component::{ComponentHost, Guest};
use super::pool_client::{PoolClient, lifecycle};
use super::stderr::{STDERR_GRACE, StderrTail, log_stderr};
use super::{call_meta, sse_client};
use crate::config::{McpServerConfig, Transport};

pub type Client = RunningService<RoleClient, PoolClient>;

/// Opens an MCP session over `transport` with `lifecycle`.
pub async fn open<T, E, A>(
    transport: T,
    lifecycle: ClientLifecycleMode,
) -> Result<Client, ClientInitializeError>
where
    T: IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    PoolClient::default()
        .serve_with_lifecycle(transport, lifecycle)
        .await
}

/// Why a session did not open, and whether the server answered
/// `server/discover` with something that is no answer to it: some
/// 2025-11-25 servers answer every request they do not know with `{}`
/// (the conformance suite's own test server does), and reach the older
/// handshake on a new connection.
struct Unopened {
    reason: String,
    discover_misread: bool,
}

impl From<String> for Unopened {
    fn from(reason: String) -> Unopened {
        Unopened {
            reason,
            discover_misread: false,
        }
    }
}

impl From<&str> for Unopened {
    fn from(reason: &str) -> Unopened {
        Unopened::from(reason.to_owned())
    }
}

impl From<ClientInitializeError> for Unopened {
    fn from(error: ClientInitializeError) -> Unopened {
        let discover_misread = matches!(
            error,
            ClientInitializeError::ExpectedInitResult(Some(_))
                | ClientInitializeError::ExpectedInitResponse(Some(_))
        );
        Unopened {
            reason: describe(&error),
            discover_misread,
        }
    }
}

/// A failed handshake in words a user can act on. rmcp's own text names
/// Rust types (the transport's, a message's debug form).
fn describe(error: &ClientInitializeError) -> String {
    if error.is_authorization_required() {
        return "the server asks for authorization its credentials do not give: set a valid bearer token or headers (agenthost runs no OAuth flow)".into();
    }
    match error {
        ClientInitializeError::ExpectedInitResponse(_)
        | ClientInitializeError::ExpectedInitResult(_) => {
            "the server answered the handshake with something other than its result".into()
        }
        ClientInitializeError::ConnectionClosed(during) => {
            format!("the server closed the connection before its {during}")
        }
        ClientInitializeError::TransportError { error, context } => {
            format!("{context}: {}", error.error)
        }
        ClientInitializeError::NoCompatibleProtocolVersion {
            server_supported, ..
        } => {
            let offered: Vec<String> = server_supported.iter().map(|v| v.to_string()).collect();
            format!(
                "the server speaks no MCP revision this host does (it offers: {})",
                offered.join(", ")
            )
        }
        ClientInitializeError::LegacyFallbackFailed { discover, fallback } => format!(
            "server/discover failed ({}), and so did initialize ({})",
            describe(discover),
            describe(fallback)
        ),
        other => other.to_string(),
    }
}

/// What a server is reached through, besides its config.
#[derive(Clone)]
pub enum Link {
    /// Its own command, or a plain HTTP client.
    Direct,
    /// An HTTP client made for it (ad-hoc servers pin their addresses).
    Http(reqwest::Client),
    /// The host that runs component servers.
    Component(Arc<ComponentHost>),
}

/// An open session, and the instance serving it when that is a component.
pub struct Connection {
    pub client: Client,
    pub guest: Option<Guest>,
}

impl From<Client> for Connection {
    fn from(client: Client) -> Connection {
        Connection {
            client,
            guest: None,
        }
    }
}

/// Connects over the configured transport, in the newest era the server
/// speaks.
pub async fn connect(config: &McpServerConfig, link: &Link) -> Result<Connection, String> {
    match connect_with(config, link, lifecycle()).await {
        Err(unopened) if unopened.discover_misread => {
            tracing::info!(
                server = %config.id,
                "the server answered server/discover with something other than its result; connecting again with the 2025-11-25 handshake"
            );
            connect_with(config, link, ClientLifecycleMode::Initialize)
                .await
                .map_err(|unopened| unopened.reason)
        }
        opened => opened.map_err(|unopened| unopened.reason),
    }
}

async fn connect_with(
    config: &McpServerConfig,
    link: &Link,
    lifecycle: ClientLifecycleMode,
) -> Result<Connection, Unopened> {
    let http_client = match link {
        Link::Http(client) => Some(client.clone()),
        Link::Direct | Link::Component(_) => None,
    };
    match (config.transport, link) {
        (Transport::Stdio, _) => connect_stdio(config, lifecycle).await.map(Connection::from),
        (Transport::Sse, _) => connect_sse(config, http_client, lifecycle)
            .await
            .map(Connection::from),
        (Transport::StreamableHttp, _) => connect_http(config, http_client, lifecycle)
            .await
            .map(Connection::from),
        (Transport::Wasm, Link::Component(host)) => {
            let (client, guest) = host.start(config).await?;
            Ok(Connection {
                client,
                guest: Some(guest),
            })
        }
        (Transport::Wasm, _) => Err("no component runtime was given for it".into()),
    }
}

/// What a stdio server inherits of this host's environment, besides its
/// own `env` and `env_passthrough`: enough to find programs and run in
/// the host's locale, and none of its secrets.
const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "TZ", "TMPDIR"];

/// A stdio server's environment: the inherited basics and `LC_*`, the
/// variables it is granted by name, then its own.
fn child_env(config: &McpServerConfig) -> Vec<(String, String)> {
    let granted = |name: &str| {
        INHERITED.contains(&name)
            || name.starts_with("LC_")
            || config.env_passthrough.iter().any(|n| n == name)
    };
    let mut env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, _)| granted(name))
        .collect();
    env.extend(config.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

async fn connect_stdio(
    config: &McpServerConfig,
    lifecycle: ClientLifecycleMode,
) -> Result<Client, Unopened> {
    let program = config.command.as_deref().ok_or("no command configured")?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(&config.args)
        .env_clear()
        .envs(child_env(config))
        .kill_on_drop(true);
    if let Some(cwd) = &config.cwd {
        command.current_dir(cwd);
    }
    die_with_parent(&mut command);
    let (transport, stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let tail = StderrTail::default();
    let reader =
        stderr.map(|stderr| tokio::spawn(log_stderr(config.id.clone(), stderr, tail.clone())));
    let mut failure = match open(transport, lifecycle).await {
        Ok(client) => return Ok(client),
        Err(e) => Unopened::from(e),
    };
    // A server that fails to start usually says why on stderr and exits;
    // its last lines are the most useful part of the error.
    if let Some(reader) = reader {
        let _ = tokio::time::timeout(STDERR_GRACE, reader).await;
    }
    if let Some(lines) = tail.lines() {
        failure.reason = format!("{}; the last lines of its stderr: {lines}", failure.reason);
    }
    Err(failure)
}

/// Asks the kernel to kill the child when this process dies, so even a
/// `kill -9` of the host leaves no MCP server behind.
fn die_with_parent(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs between fork and exec and only makes the
    // async-signal-safe `prctl` system call.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

async fn connect_http(
    config: &McpServerConfig,
    http_client: Option<reqwest::Client>,
    lifecycle: ClientLifecycleMode,
) -> Result<Client, Unopened> {
    let url = config.url.as_deref().ok_or("no url configured")?;
    let headers = header_map(config)?
        .into_iter()
        .filter_map(|(name, value)| Some((name?, value)))
        .collect();
    let mut transport_config = StreamableHttpClientTransportConfig::with_uri(url);
    transport_config.custom_headers = headers;
    let client = call_meta::MetaHeadersClient(http_client.unwrap_or_default());
    let transport = StreamableHttpClientTransport::with_client(client, transport_config);
    Ok(open(transport, lifecycle).await?)
}

async fn connect_sse(
    config: &McpServerConfig,
    http_client: Option<reqwest::Client>,
    lifecycle: ClientLifecycleMode,
) -> Result<Client, Unopened> {
    let url = config.url.as_deref().ok_or("no url configured")?;
    let client = match http_client {
        Some(client) => client,
        None => reqwest::Client::builder()
            .build()
            .map_err(|e| e.to_string())?,
    };
    let (outgoing, incoming) = sse_client::connect(client, url, header_map(config)?).await?;
    Ok(open((outgoing, incoming), lifecycle).await?)
}

fn header_map(config: &McpServerConfig) -> Result<reqwest::header::HeaderMap, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &config.headers {
        let name = reqwest::header::HeaderName::try_from(name.as_str())
            .map_err(|e| format!("invalid header name `{name}`: {e}"))?;
        let value = reqwest::header::HeaderValue::try_from(value.as_str())
            .map_err(|e| format!("invalid value for header `{name}`: {e}"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stdio_server_gets_the_basics_its_grants_and_its_own_env_only() {
        let mut config: McpServerConfig = serde_json::from_value(serde_json::json!({
            "id": "s", "transport": "stdio", "command": "x",
            "env": { "OWN": "1" }, "env_passthrough": ["CARGO"]
        }))
        .unwrap();
        let names = |config: &McpServerConfig| -> Vec<String> {
            child_env(config)
                .into_iter()
                .map(|(name, _)| name)
                .collect()
        };
        let given = names(&config);
        assert!(given.contains(&"PATH".to_owned()), "{given:?}");
        assert!(given.contains(&"OWN".to_owned()));
        assert!(given.contains(&"CARGO".to_owned()), "cargo runs the tests");
        assert!(!given.contains(&"CARGO_PKG_NAME".to_owned()), "{given:?}");
        config.env_passthrough.clear();
        assert!(!names(&config).contains(&"CARGO".to_owned()));
    }

    #[test]
    fn a_failed_handshake_is_told_without_rust_type_names() {
        let misread =
            ClientInitializeError::ExpectedInitResult(Some(rmcp::model::ServerResult::empty(())));
        let refused = ClientInitializeError::TransportError {
            error: rmcp::transport::DynamicTransportError::from_parts(
                "rmcp::transport::worker::WorkerTransport<Client>",
                std::any::TypeId::of::<()>(),
                "connection refused".into(),
            ),
            context: "send initialize request".into(),
        };
        let both = ClientInitializeError::LegacyFallbackFailed {
            discover: Box::new(misread),
            fallback: Box::new(refused),
        };
        assert_eq!(
            describe(&both),
            "server/discover failed (the server answered the handshake with something other \
             than its result), and so did initialize (send initialize request: connection refused)"
        );
    }
}
