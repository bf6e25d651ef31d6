//! The MCP Chat API (seed 004): servers registered at run time, persistent
//! sessions with history, chat streamed by the `mcp-chat` encoder plugin.
//! Errors are `{"detail": "..."}` with the seed's status codes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::{parse_json, parse_json_list};
use super::{AppState, Detail, DetailBody, servers};
use crate::auth::{Caller, Identity, Principal};
use crate::chat::{ChatInput, ChatLog, ChatOptions, ChatStream, Format, History, ToolChoice};
use crate::config::{McpServerConfig, Transport};
use crate::registry::RegistryError;

pub(super) const FORMAT: &str = "mcp-chat";

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default()
        .routes(routes!(health))
        .routes(routes!(add_servers))
        .routes(routes!(remove_server))
        .routes(routes!(tools))
        .routes(routes!(create_session, list_sessions))
        .routes(routes!(history))
        .routes(routes!(chat))
        .routes(routes!(chat_stream))
}

/// Seed 004's health check.
#[utoipa::path(get, operation_id = "mcp_chat_health", path = "/", tag = "mcp-chat", security(()),
    responses((status = 200, description = "`status` and `message`", body = Value)))]
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "message": "MCP Chat API is running" }))
}

/// The transports seed 004 names. Component servers (`wasm`) are the
/// operator's to grant, in the config file, so this surface has none.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum SpecTransport {
    Stdio,
    Sse,
    StreamableHttp,
}

impl From<SpecTransport> for Transport {
    fn from(transport: SpecTransport) -> Transport {
        match transport {
            SpecTransport::Stdio => Transport::Stdio,
            SpecTransport::Sse => Transport::Sse,
            SpecTransport::StreamableHttp => Transport::StreamableHttp,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ServerSpec {
    name: String,
    /// `stdio`, `sse` or `streamable_http`.
    #[schema(value_type = String)]
    transport: SpecTransport,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[schema(value_type = Option<String>)]
    cwd: Option<PathBuf>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Seed 004: the connection timeout, seconds to connect and list tools.
    timeout: Option<f64>,
    /// Ours: seconds one tool call may take (the config file's `timeout`).
    call_timeout: Option<f64>,
}

impl ServerSpec {
    fn into_config(self) -> McpServerConfig {
        McpServerConfig {
            id: self.name,
            name: None,
            description: None,
            transport: self.transport.into(),
            command: self.command,
            args: self.args,
            env: self.env,
            env_passthrough: Vec::new(),
            cwd: self.cwd,
            url: self.url,
            headers: self.headers,
            component: None,
            grants: None,
            timeout: self.call_timeout,
            startup_timeout: self.timeout,
            integration_fqn: None,
            tool_access: Default::default(),
            tool_prefix: None,
            require_approval: None,
            tool_approval: Default::default(),
        }
    }
}

impl From<RegistryError> for Detail {
    fn from(error: RegistryError) -> Detail {
        let status = match &error {
            RegistryError::Invalid(_) | RegistryError::Refused(_) => StatusCode::BAD_REQUEST,
            RegistryError::Forbidden(_) => StatusCode::FORBIDDEN,
            RegistryError::NoKey(_) => StatusCode::SERVICE_UNAVAILABLE,
            RegistryError::NotFound => StatusCode::NOT_FOUND,
            RegistryError::Duplicate(_) | RegistryError::Configured(_) => StatusCode::CONFLICT,
            RegistryError::Store(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            RegistryError::Connect(_) | RegistryError::Store(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Detail(status, error.to_string())
    }
}

/// Register MCP servers; each is connected and its tools listed.
#[utoipa::path(post, operation_id = "add_servers", path = "/servers", tag = "mcp-chat", request_body = Vec<ServerSpec>,
    responses(
        (status = 200, description = "The servers as `GET /servers` shows them", body = Vec<Value>),
        (status = 400, description = "A server is invalid, or may not be registered", body = DetailBody),
        (status = 409, description = "The name is taken", body = DetailBody),
    ))]
async fn add_servers(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    body: Bytes,
) -> Result<Json<Vec<Value>>, Detail> {
    let user = identity.user()?;
    let specs: Vec<ServerSpec> =
        parse_json_list(&body).map_err(|e| Detail(StatusCode::BAD_REQUEST, e.message()))?;
    let configs = specs.into_iter().map(ServerSpec::into_config).collect();
    let added = state.registry.register(configs, &user).await?;
    Ok(Json(added.iter().map(servers::describe).collect()))
}

/// Remove a server registered at run time.
#[utoipa::path(delete, path = "/servers/{name}", tag = "mcp-chat",
    params(("name" = String, Path, description = "The server's name")),
    responses(
        (status = 200, description = "`{\"message\": ...}`", body = Value),
        (status = 404, description = "No such server", body = DetailBody),
        (status = 409, description = "It comes from the config file", body = DetailBody),
    ))]
async fn remove_server(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    Path(name): Path<String>,
) -> Result<Json<Value>, Detail> {
    state.registry.remove(&name, &identity.user()?).await?;
    Ok(Json(
        json!({ "message": format!("Server '{name}' removed") }),
    ))
}

/// Every tool the caller's chats may use, named `server__tool`.
#[utoipa::path(get, path = "/tools", tag = "mcp-chat",
    responses((status = 200, description = "`server_name`, `tool_name`, `full_name`, `description`", body = Vec<Value>)))]
async fn tools(
    State(state): State<Arc<AppState>>,
    identity: Identity,
) -> Result<Json<Vec<Value>>, Detail> {
    let caller = Caller {
        principal: identity.user()?,
        end_user: None,
        reason: "mcp_chat_api",
    };
    let tools = state.chat.tools(&caller, ToolChoice::Reachable).await?;
    // `server_name` is the `name` `GET /servers` shows; `full_name` keeps
    // the id, as model-facing names cannot hold a display name's spaces.
    let names = state.registry.shown_names(&caller.principal);
    Ok(Json(
        tools
            .tools
            .iter()
            .map(|t| {
                let server_name = names.get(&t.server).unwrap_or(&t.server);
                json!({ "server_name": server_name, "tool_name": t.tool, "full_name": t.name, "description": t.description })
            })
            .collect(),
    ))
}

/// Start a session.
#[utoipa::path(post, path = "/sessions", tag = "mcp-chat",
    responses((status = 200, description = "`{\"session_id\": ...}`", body = Value)))]
async fn create_session(
    State(state): State<Arc<AppState>>,
    identity: Identity,
) -> Result<Json<Value>, Detail> {
    let session = state.chat.create_session(&identity.user()?).await?;
    Ok(Json(json!({ "session_id": session.id })))
}

/// The caller's sessions.
#[utoipa::path(get, path = "/sessions", tag = "mcp-chat",
    responses((status = 200, description = "Each session's id, creation time and message count", body = Value)))]
async fn list_sessions(
    State(state): State<Arc<AppState>>,
    identity: Identity,
) -> Result<Json<Value>, Detail> {
    Ok(Json(json!(state.chat.sessions(&identity.user()?).await?)))
}

/// A session's messages, in order.
#[utoipa::path(get, path = "/sessions/{id}/history", tag = "mcp-chat",
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The messages", body = Value),
        (status = 404, description = "No such session", body = DetailBody),
    ))]
async fn history(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<Value>, Detail> {
    Ok(Json(json!(
        state.chat.history(&identity.user()?, &id).await?
    )))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = SessionChatRequest)]
struct ChatBody {
    message: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// The user's message (required).
    message: Option<String>,
    /// Any loaded encoder; the seed's format by default.
    format: Option<String>,
}

/// A chat on the session with every reachable server's tools.
fn input(
    user: Option<Principal>,
    session: String,
    message: String,
    format: Option<String>,
) -> Result<ChatInput, Detail> {
    if message.trim().is_empty() {
        return Err(Detail(
            StatusCode::BAD_REQUEST,
            "`message` must not be empty".into(),
        ));
    }
    Ok(ChatInput {
        caller: Caller {
            principal: user,
            end_user: None,
            reason: "mcp_chat_api",
        },
        history: History::Session {
            id: session,
            message,
        },
        model: None,
        tools: ToolChoice::Reachable,
        options: ChatOptions::default(),
        format: Format {
            requested: format,
            own: FORMAT,
        },
        log: ChatLog::default(),
    })
}

/// Send a message on a session and get the whole answer.
#[utoipa::path(post, operation_id = "session_chat", path = "/chat/{id}", tag = "mcp-chat", request_body = ChatBody,
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 200, description = "`message`, `tool_calls_count`, `iterations`", body = Value),
        (status = 400, description = "The body is not a chat request", body = DetailBody),
        (status = 404, description = "No such session", body = DetailBody),
        (status = 500, description = "The chat failed", body = DetailBody),
    ))]
async fn chat(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Detail> {
    let user = identity.user()?;
    let body: ChatBody =
        parse_json(&body).map_err(|e| Detail(StatusCode::BAD_REQUEST, e.message()))?;
    let input = input(user, id, body.message, None)?;
    let outcome = state.chat.complete(input).await?;
    if let Some(error) = outcome.error {
        return Err(Detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Chat error: {error}"),
        ));
    }
    Ok(Json(json!({
        "message": outcome.text,
        "tool_calls_count": outcome.tool_calls.len(),
        "iterations": outcome.iterations,
    })))
}

/// Send a message on a session and stream the answer as server-sent events.
#[utoipa::path(get, operation_id = "session_chat_stream", path = "/chat/{id}/stream", tag = "mcp-chat",
    params(("id" = String, Path, description = "The session's id"), StreamQuery),
    responses(
        (status = 200, description = "Events `token`, `tool_call`, `tool_result`, `done`, `error`", content_type = "text/event-stream", body = String),
        (status = 400, description = "No `message`", body = DetailBody),
        (status = 404, description = "No such session", body = DetailBody),
    ))]
async fn chat_stream(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    Path(id): Path<String>,
    Query(query): Query<StreamQuery>,
) -> Result<ChatStream, Detail> {
    let user = identity.user()?;
    let message = query.message.ok_or_else(|| {
        Detail(
            StatusCode::BAD_REQUEST,
            "the `message` query parameter is required".into(),
        )
    })?;
    Ok(state
        .chat
        .stream(input(user, id, message, query.format)?)
        .await?)
}
