//! The MCP Chat API (seed 004): servers registered at run time, persistent
//! sessions with history, chat streamed by the `mcp-chat` encoder plugin.
//!
//! Chats on one session are serialized so history never interleaves. The
//! user's message is on disk before the response starts; the exchange's
//! assistant and tool messages are appended in one transaction when it
//! ends. Errors are `{"detail": "..."}` with the seed's status codes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OwnedMutexGuard;

use super::body::{parse_json, parse_json_list};
use super::{AppState, Detail, servers, sse};
use crate::agent::{ChatRequest, ChatRun, Message, collect};
use crate::auth::Role as KeyRole;
use crate::config::{McpServerConfig, Transport};
use crate::dispatch::Caller;
use crate::mcp::McpError;
use crate::store::StoredMessage;

const FORMAT: &str = "mcp-chat";

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

/// One lock per session, held for the whole of a chat. A session's entry
/// lives only while a chat holds or awaits it, so the map stays as small
/// as the number of chats in progress.
#[derive(Default)]
pub struct SessionLocks {
    sessions: Arc<Mutex<HashMap<String, SessionLock>>>,
}

struct SessionLock {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Chats holding or awaiting the lock.
    users: usize,
}

impl SessionLocks {
    async fn lock(&self, session: &str) -> SessionGuard {
        let lock = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let entry = sessions
                .entry(session.to_owned())
                .or_insert_with(|| SessionLock {
                    lock: Default::default(),
                    users: 0,
                });
            entry.users += 1;
            entry.lock.clone()
        };
        // Made before waiting, so a chat cancelled while it waits still
        // counts itself out.
        let mut guard = SessionGuard {
            held: None,
            session: session.to_owned(),
            sessions: self.sessions.clone(),
        };
        guard.held = Some(lock.lock_owned().await);
        guard
    }
}

/// A session's lock, held; dropping it lets the next chat in.
struct SessionGuard {
    held: Option<OwnedMutexGuard<()>>,
    session: String,
    sessions: Arc<Mutex<HashMap<String, SessionLock>>>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.held = None;
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = sessions.get_mut(&self.session) {
            entry.users -= 1;
            if entry.users == 0 {
                sessions.remove(&self.session);
            }
        }
    }
}

fn internal(error: impl std::fmt::Display) -> Detail {
    Detail(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
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
    env: std::collections::BTreeMap<String, String>,
    cwd: Option<std::path::PathBuf>,
    url: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    timeout: Option<f64>,
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
            cwd: self.cwd,
            url: self.url,
            headers: self.headers,
            timeout: self.timeout,
            startup_timeout: None,
            tool_access: Default::default(),
        }
    }
}

/// Whether the caller may run commands on this host.
fn may_run_commands(state: &AppState, headers: &HeaderMap) -> bool {
    state.security.allow_stdio_registration
        || super::caller(state, headers).is_some_and(|p| p.role == KeyRole::Admin)
}

async fn add_servers(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Vec<Value>>, Detail> {
    let specs: Vec<ServerSpec> =
        parse_json_list(&body).map_err(|e| Detail(StatusCode::BAD_REQUEST, e.message()))?;
    let mut configs = Vec::with_capacity(specs.len());
    for spec in specs {
        let config = spec.into_config();
        config
            .validate()
            .map_err(|e| Detail(StatusCode::BAD_REQUEST, e.to_string()))?;
        if config.transport == Transport::Stdio && !may_run_commands(&state, &headers) {
            return Err(Detail(
                StatusCode::FORBIDDEN,
                format!(
                    "registering stdio server `{}` runs a command on this host: it needs an admin API key",
                    config.id
                ),
            ));
        }
        configs.push(config);
    }
    let entries = state.pool.register(configs).await.map_err(|e| match e {
        McpError::Duplicate(_) => Detail(StatusCode::CONFLICT, e.to_string()),
        McpError::Refused(_) => Detail(StatusCode::BAD_REQUEST, e.to_string()),
        McpError::Connect { reason, .. } => {
            internal(format!("Failed to connect to server: {reason}"))
        }
        other => internal(format!("Failed to connect to server: {other}")),
    })?;
    let mut added = Vec::with_capacity(entries.len());
    for entry in entries {
        let config = serde_json::to_string(&entry.config).map_err(internal)?;
        state
            .store
            .save_server(&entry.config.id, config)
            .await
            .map_err(internal)?;
        added.push(servers::describe(&entry).await);
    }
    Ok(Json(added))
}

async fn remove_server(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, Detail> {
    let server = state
        .pool
        .server(&name)
        .map_err(|_| Detail(StatusCode::NOT_FOUND, "Server not found".into()))?;
    if server.config.transport == Transport::Stdio && !may_run_commands(&state, &headers) {
        return Err(Detail(
            StatusCode::FORBIDDEN,
            "removing a stdio server needs an admin API key".into(),
        ));
    }
    state.pool.remove(&name).await.map_err(|e| match e {
        McpError::Configured(_) => Detail(StatusCode::CONFLICT, e.to_string()),
        _ => Detail(StatusCode::NOT_FOUND, "Server not found".into()),
    })?;
    state.store.remove_server(&name).await.map_err(internal)?;
    Ok(Json(
        json!({ "message": format!("Server '{name}' removed") }),
    ))
}

async fn tools(State(state): State<Arc<AppState>>) -> Json<Vec<Value>> {
    let tools = state.pool.reachable_tool_set().await;
    Json(
        tools
            .tools
            .iter()
            .map(|t| json!({ "server_name": t.server, "tool_name": t.tool, "full_name": t.name, "description": t.description }))
            .collect(),
    )
}

async fn create_session(State(state): State<Arc<AppState>>) -> Result<Json<Value>, Detail> {
    let session = state.store.create_session().await.map_err(internal)?;
    Ok(Json(json!({ "session_id": session.id })))
}

async fn list_sessions(State(state): State<Arc<AppState>>) -> Result<Json<Value>, Detail> {
    let sessions = state.store.sessions().await.map_err(internal)?;
    Ok(Json(json!(sessions)))
}

async fn history(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Detail> {
    match state.store.history(&id).await.map_err(internal)? {
        Some(messages) => Ok(Json(json!(messages))),
        None => Err(session_not_found()),
    }
}

fn session_not_found() -> Detail {
    Detail(StatusCode::NOT_FOUND, "Session not found".into())
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

/// A chat in progress on a session, holding the session's lock.
struct SessionChat {
    request: ChatRequest,
    guard: SessionGuard,
}

/// Locks the session, stores the user's message and prepares the chat
/// with the session's whole history and every server's tools.
async fn begin(state: &AppState, session: &str, message: String) -> Result<SessionChat, Detail> {
    if message.trim().is_empty() {
        return Err(Detail(
            StatusCode::BAD_REQUEST,
            "`message` must not be empty".into(),
        ));
    }
    let route = state
        .agent
        .route(None)
        .map_err(|e| Detail(StatusCode::BAD_REQUEST, e.to_string()))?;
    let guard = state.mcp_chat.lock(session).await;
    let user = StoredMessage::user(message);
    let history = state
        .store
        .open_exchange(session, user.clone())
        .await
        .map_err(internal)?
        .ok_or_else(session_not_found)?;
    let mut messages: Vec<Message> = history.iter().map(StoredMessage::to_message).collect();
    messages.push(user.to_message());
    let tools = state.pool.reachable_tool_set().await;
    Ok(SessionChat {
        request: ChatRequest::new(messages, tools, route, Caller::anonymous("mcp_chat_api")),
        guard,
    })
}

/// Stores what the chat added, then releases the session. Runs before
/// the chat's final event is handed on, so a client that reads the
/// history after the answer ended sees all of it.
async fn remember(state: Arc<AppState>, session: String, added: Vec<Message>, guard: SessionGuard) {
    if let Err(e) = state
        .store
        .append(&session, StoredMessage::from_exchange(&added))
        .await
    {
        tracing::error!(session = %session, "cannot store the chat's messages: {e}");
    }
    drop(guard);
}

/// The chat, storing its exchange before it ends.
fn session_run(state: &Arc<AppState>, session: String, chat: SessionChat) -> ChatRun {
    let SessionChat { request, guard } = chat;
    let state_for_end = state.clone();
    state
        .agent
        .run(request)
        .before_end(move |added| remember(state_for_end, session, added, guard))
}

async fn chat(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Detail> {
    let body: ChatBody =
        parse_json(&body).map_err(|e| Detail(StatusCode::BAD_REQUEST, e.message()))?;
    let chat = begin(&state, &id, body.message).await?;
    let outcome = collect(&mut session_run(&state, id, chat)).await;
    if let Some(error) = outcome.error {
        return Err(internal(format!("Chat error: {error}")));
    }
    Ok(Json(json!({
        "message": outcome.text,
        "tool_calls_count": outcome.tool_calls.len(),
        "iterations": outcome.iterations,
    })))
}

async fn chat_stream(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<StreamQuery>,
) -> Result<Response, Detail> {
    let message = query.message.ok_or_else(|| {
        Detail(
            StatusCode::BAD_REQUEST,
            "the `message` query parameter is required".into(),
        )
    })?;
    let (encoder, fallback) = sse::choose_format(&state.plugins, query.format.as_deref(), FORMAT)
        .map_err(|e| Detail(StatusCode::BAD_REQUEST, e.to_string()))?;
    let chat = begin(&state, &id, message).await?;
    let options = sse::response_options(&chat.request.route.model);
    let run = session_run(&state, id, chat);
    sse::encoded_response(encoder, fallback, options, run)
        .await
        .map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn session_locks_serialize_chats_and_leave_no_entries() {
        let locks = Arc::new(SessionLocks::default());
        let entries = |locks: &SessionLocks| locks.sessions.lock().unwrap().len();
        let first = locks.lock("s").await;
        let mut waiting = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock("s").await }
        });
        let wait = std::time::Duration::from_millis(20);
        assert!(
            tokio::time::timeout(wait, &mut waiting).await.is_err(),
            "a second chat waits for the first"
        );
        let cancelled = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock("s").await }
        });
        tokio::time::sleep(wait).await;
        cancelled.abort();
        let other = locks.lock("t").await;
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(entries(&locks), 2);
        drop((second, other));
        assert_eq!(
            entries(&locks),
            0,
            "a chat cancelled while waiting leaves nothing"
        );
    }
}
