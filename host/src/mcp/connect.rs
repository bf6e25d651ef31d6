//! Opening an MCP client session over each transport.

use std::process::Stdio;

use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};

use super::{end_user, sse_client};
use crate::config::{McpServerConfig, Transport};

pub type Client = RunningService<RoleClient, ()>;

/// Connects over the configured transport; `http_client`, when given,
/// carries the HTTP connections (ad-hoc servers pin their addresses).
pub async fn connect(
    config: &McpServerConfig,
    http_client: Option<reqwest::Client>,
) -> Result<Client, String> {
    match config.transport {
        Transport::Stdio => connect_stdio(config).await,
        Transport::Sse => connect_sse(config, http_client).await,
        Transport::StreamableHttp => connect_http(config, http_client).await,
    }
}

async fn connect_stdio(config: &McpServerConfig) -> Result<Client, String> {
    let program = config.command.as_deref().ok_or("no command configured")?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(&config.args)
        .envs(&config.env)
        .kill_on_drop(true);
    if let Some(cwd) = &config.cwd {
        command.current_dir(cwd);
    }
    die_with_parent(&mut command);
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    ().serve(transport).await.map_err(|e| e.to_string())
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
) -> Result<Client, String> {
    let url = config.url.as_deref().ok_or("no url configured")?;
    let headers = header_map(config)?
        .into_iter()
        .filter_map(|(name, value)| Some((name?, value)))
        .collect();
    let mut transport_config = StreamableHttpClientTransportConfig::with_uri(url);
    transport_config.custom_headers = headers;
    let client = end_user::PinningClient(http_client.unwrap_or_default());
    let transport = StreamableHttpClientTransport::with_client(client, transport_config);
    ().serve(transport).await.map_err(|e| e.to_string())
}

async fn connect_sse(
    config: &McpServerConfig,
    http_client: Option<reqwest::Client>,
) -> Result<Client, String> {
    let url = config.url.as_deref().ok_or("no url configured")?;
    let client = match http_client {
        Some(client) => client,
        None => reqwest::Client::builder()
            .build()
            .map_err(|e| e.to_string())?,
    };
    let (outgoing, incoming) = sse_client::connect(client, url, header_map(config)?).await?;
    ().serve((outgoing, incoming))
        .await
        .map_err(|e| e.to_string())
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
