//! The simple chat frontend contract (seed 003).
//!
//! One MCP server is connected at a time, and the conversation with it is
//! kept in memory until the client disconnects or connects elsewhere, so
//! follow-up questions have context. Errors are `{"detail": "..."}`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::parse_json;
use super::servers::tool_summaries;
use super::{AppState, Detail, sse};
use crate::agent::{ChatRequest, Message, Role, collect};
use crate::dispatch::Caller;
use crate::mcp::{self, Selection};

/// The built-in format of this surface, also used for its error events.
const FORMAT: &str = "simple";
/// Messages of history kept per conversation; older turns are dropped.
const MAX_HISTORY: usize = 40;

#[derive(Default)]
pub struct SimpleState {
    conversation: tokio::sync::Mutex<Conversation>,
}

#[derive(Default)]
struct Conversation {
    server: Option<String>,
    history: Vec<Message>,
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/connect/{server_id}", post(connect))
        .route("/status", get(status))
        .route("/disconnect", post(disconnect))
        .route("/chat/stream", post(chat_stream))
        .route("/chat", post(chat))
}

/// `{"detail": "..."}` with a status.
async fn connect(
    State(state): State<Arc<AppState>>,
    Path(server_id): Path<String>,
) -> Result<Json<Value>, Detail> {
    let server = state
        .pool
        .server(&server_id)
        .map_err(|e| Detail(StatusCode::NOT_FOUND, e.to_string()))?;
    let tools = state
        .pool
        .connect(&server_id)
        .await
        .map_err(|e| Detail(StatusCode::BAD_GATEWAY, e.to_string()))?;
    let mut conversation = state.simple.conversation.lock().await;
    if conversation.server.as_deref() != Some(&server_id) {
        conversation.history.clear();
    }
    conversation.server = Some(server_id.clone());
    Ok(Json(json!({
        "success": true,
        "server_id": server_id,
        "server_name": server.config.display_name(),
        "tools": tool_summaries(&tools),
    })))
}

/// Tools come from the pool, which restarts a server that died.
async fn status(State(state): State<Arc<AppState>>) -> Json<Value> {
    let server = state.simple.conversation.lock().await.server.clone();
    let tools = match &server {
        Some(id) => match state.pool.connect(id).await {
            Ok(tools) => tool_summaries(&tools),
            Err(e) => {
                tracing::warn!("status of the connected server: {e}");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    Json(json!({ "connected": server.is_some(), "server_id": server, "tools": tools }))
}

async fn disconnect(State(state): State<Arc<AppState>>) -> Json<Value> {
    let mut conversation = state.simple.conversation.lock().await;
    if let Some(server) = conversation.server.take() {
        // The id came from the pool, so it cannot be unknown.
        let _ = state.pool.disconnect(&server).await;
    }
    *conversation = Conversation::default();
    Json(json!({ "success": true }))
}

#[derive(Deserialize)]
struct ChatBody {
    message: String,
    /// Not in the seed: picks a provider/model (see the README's routing).
    model: Option<String>,
}

#[derive(Deserialize)]
struct StreamQuery {
    /// Any loaded encoder; the seed's format by default.
    format: Option<String>,
}

/// Validates the body and prepares the chat against the connected server.
async fn prepare(state: &AppState, body: &[u8]) -> Result<(ChatRequest, Message, String), Detail> {
    let body: ChatBody = parse_json(body).map_err(|e| Detail(status_for(&e), e.message()))?;
    if body.message.trim().is_empty() {
        return Err(Detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid field `message`: must not be empty".into(),
        ));
    }
    let route = state
        .agent
        .route(body.model.as_deref())
        .map_err(|e| Detail(StatusCode::BAD_REQUEST, e.to_string()))?;
    let (server, history) = {
        let conversation = state.simple.conversation.lock().await;
        let Some(server) = conversation.server.clone() else {
            return Err(Detail(
                StatusCode::CONFLICT,
                "no MCP server is connected: POST /connect/{server_id} first (GET /servers lists them)".into(),
            ));
        };
        (server, conversation.history.clone())
    };
    let entry = state
        .pool
        .server(&server)
        .map_err(|e| Detail(StatusCode::NOT_FOUND, e.to_string()))?;
    let tools = mcp::tool_set(&[Selection::all(entry)])
        .await
        .map_err(|e| Detail(StatusCode::BAD_GATEWAY, e.to_string()))?;
    let user = Message {
        role: Role::User,
        content: body.message,
        tool_calls: Vec::new(),
        tool_call_id: None,
    };
    let mut messages = history;
    messages.push(user.clone());
    Ok((
        ChatRequest::new(messages, tools, route, Caller::anonymous("simple_chat")),
        user,
        server,
    ))
}

fn status_for(error: &super::body::BodyError) -> StatusCode {
    match error {
        super::body::BodyError::Syntax(_) => StatusCode::BAD_REQUEST,
        super::body::BodyError::Shape { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// Appends a finished exchange to the conversation, unless the client has
/// since switched servers.
async fn remember(state: &AppState, server: String, user: Message, added: Vec<Message>) {
    let mut conversation = state.simple.conversation.lock().await;
    if conversation.server.as_deref() != Some(&server) {
        return;
    }
    conversation.history.push(user);
    conversation.history.extend(added);
    let excess = conversation.history.len().saturating_sub(MAX_HISTORY);
    if excess > 0 {
        // Cut at a user message so no tool result loses its call.
        let cut = conversation.history[excess..]
            .iter()
            .position(|m| m.role == Role::User)
            .map_or(conversation.history.len(), |i| excess + i);
        conversation.history.drain(..cut);
    }
}

async fn chat_stream(
    State(state): State<Arc<AppState>>,
    Query(query): Query<StreamQuery>,
    body: Bytes,
) -> Result<Response, Detail> {
    let (encoder, fallback) = sse::choose_format(&state.plugins, query.format.as_deref(), FORMAT)
        .map_err(|e| Detail(StatusCode::BAD_REQUEST, e.to_string()))?;
    let (request, user, server) = prepare(&state, &body).await?;
    let options = sse::response_options(&request.route.model);
    let run = state
        .agent
        .run(request)
        .before_end(move |added| async move {
            remember(&state, server, user, added).await;
        });
    sse::encoded_response(encoder, fallback, options, run)
        .await
        .map_err(|e| Detail(StatusCode::BAD_GATEWAY, e.to_string()))
}

async fn chat(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Json<Value>, Detail> {
    let (request, user, server) = prepare(&state, &body).await?;
    let mut run = state.agent.run(request);
    let outcome = collect(&mut run).await;
    if let Some(error) = outcome.error {
        return Err(Detail(StatusCode::BAD_GATEWAY, error));
    }
    if let Some(added) = run.transcript() {
        remember(&state, server, user, added).await;
    }
    let tool_calls: Vec<Value> = outcome
        .tool_calls
        .iter()
        .map(|c| json!({ "name": c.tool, "args": c.arguments, "result": c.result }))
        .collect();
    Ok(Json(
        json!({ "response": outcome.text, "tool_calls": tool_calls }),
    ))
}
