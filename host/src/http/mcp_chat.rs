//! The MCP Chat API (seed 004): servers registered at run time, persistent
//! sessions with history, chat streamed by the `mcp-chat` encoder plugin.
//! Errors are `{"detail": "..."}` with the seed's status codes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{parse_json, parse_json_list};
use super::{AppState, Detail, servers};
use crate::auth::{Caller, Identity, Principal};
use crate::chat::{ChatInput, ChatLog, ChatOptions, ChatStream, Format, History, ToolChoice};
use crate::config::{McpServerConfig, Transport};
use crate::registry::RegistryError;

pub(super) const FORMAT: &str = "mcp-chat";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(health))
        .route("/servers", post(add_servers))
        .route("/servers/{name}", delete(remove_server))
        .route("/tools", get(tools))
        .route("/sessions", post(create_session).get(list_sessions))
        .route("/sessions/{id}/history", get(history))
        .route("/chat/{id}", post(chat))
        .route("/chat/{id}/stream", get(chat_stream))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "message": "MCP Chat API is running" }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSpec {
    name: String,
    transport: Transport,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
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
            transport: self.transport,
            command: self.command,
            args: self.args,
            env: self.env,
            env_passthrough: Vec::new(),
            cwd: self.cwd,
            url: self.url,
            headers: self.headers,
            timeout: self.call_timeout,
            startup_timeout: self.timeout,
            integration_fqn: None,
            tool_access: Default::default(),
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

async fn create_session(
    State(state): State<Arc<AppState>>,
    identity: Identity,
) -> Result<Json<Value>, Detail> {
    let session = state.chat.create_session(&identity.user()?).await?;
    Ok(Json(json!({ "session_id": session.id })))
}

async fn list_sessions(
    State(state): State<Arc<AppState>>,
    identity: Identity,
) -> Result<Json<Value>, Detail> {
    Ok(Json(json!(state.chat.sessions(&identity.user()?).await?)))
}

async fn history(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<Value>, Detail> {
    Ok(Json(json!(
        state.chat.history(&identity.user()?, &id).await?
    )))
}

#[derive(Deserialize)]
struct ChatBody {
    message: String,
}

#[derive(Deserialize)]
struct StreamQuery {
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
