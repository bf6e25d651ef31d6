//! The simple chat frontend contract (seed 003).
//!
//! One MCP server is connected at a time, and the chat service keeps the
//! conversation with it until the client disconnects or connects
//! elsewhere: one conversation per API key, one in local mode. Errors are
//! `{"detail": "..."}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::{BodyError, parse_json};
use super::servers::tool_summaries;
use super::{AppState, Detail, DetailBody};
use crate::auth::{Caller, Identity, Principal};
use crate::chat::{ChatInput, ChatLog, ChatOptions, ChatStream, Format, History, ToolChoice};

/// The built-in format of this surface, also used for its error events.
pub(super) const FORMAT: &str = "simple";

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default()
        .routes(routes!(connect))
        .routes(routes!(status))
        .routes(routes!(disconnect))
        .routes(routes!(chat_stream))
        .routes(routes!(chat))
}

/// Connect to an MCP server: the chat's tools are its tools from now on.
#[utoipa::path(post, path = "/connect/{server_id}", tag = "simple",
    params(("server_id" = String, Path, description = "The server's id, as `GET /servers` lists it")),
    responses(
        (status = 200, description = "Connected: the server's name and tools", body = Value),
        (status = 404, description = "No such server", body = DetailBody),
        (status = 502, description = "The server cannot be reached", body = DetailBody),
    ))]
async fn connect(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    Path(server_id): Path<String>,
) -> Result<Json<Value>, Detail> {
    let user = identity.user()?;
    let (name, tools) = state.chat.connect(&user, &server_id).await?;
    Ok(Json(json!({
        "success": true,
        "server_id": server_id,
        "server_name": name,
        "tools": tool_summaries(&tools),
    })))
}

/// Which server the chat is connected to, and its tools.
#[utoipa::path(get, path = "/status", tag = "simple",
    responses((status = 200, description = "`connected`, `server_id` and `tools`", body = Value)))]
async fn status(
    State(state): State<Arc<AppState>>,
    identity: Identity,
) -> Result<Json<Value>, Detail> {
    let (server, tools) = state.chat.connected(&identity.user()?).await;
    Ok(Json(
        json!({ "connected": server.is_some(), "server_id": server, "tools": tool_summaries(&tools) }),
    ))
}

/// Disconnect, ending the conversation.
#[utoipa::path(post, path = "/disconnect", tag = "simple",
    responses((status = 200, description = "`{\"success\": true}`", body = Value)))]
async fn disconnect(
    State(state): State<Arc<AppState>>,
    identity: Identity,
) -> Result<Json<Value>, Detail> {
    state.chat.disconnect(&identity.user()?).await;
    Ok(Json(json!({ "success": true })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = SimpleChatRequest)]
struct ChatBody {
    message: String,
    /// Not in the seed: picks a provider/model (see the README's routing).
    model: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// Any loaded encoder; the seed's format by default.
    format: Option<String>,
}

/// The chat against the connected server, continuing its conversation.
fn input(
    user: Option<Principal>,
    body: &[u8],
    format: Option<String>,
) -> Result<ChatInput, Detail> {
    let body: ChatBody = parse_json(body).map_err(|e| {
        let status = match e {
            BodyError::Syntax(_) => StatusCode::BAD_REQUEST,
            BodyError::Shape { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Detail(status, e.message())
    })?;
    if body.message.trim().is_empty() {
        return Err(Detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid field `message`: must not be empty".into(),
        ));
    }
    Ok(ChatInput {
        caller: Caller {
            principal: user,
            end_user: None,
            reason: "simple_chat",
        },
        history: History::Connected {
            message: body.message,
        },
        model: body.model,
        tools: ToolChoice::Connected,
        options: ChatOptions::default(),
        format: Format {
            requested: format,
            own: FORMAT,
        },
        log: ChatLog::default(),
    })
}

/// Send a message and stream the answer as server-sent events.
#[utoipa::path(post, operation_id = "simple_chat_stream", path = "/chat/stream", tag = "simple", request_body = ChatBody, params(StreamQuery),
    responses(
        (status = 200, description = "Events: `tool_start`, `tool_end`, `text`, `error`, then `[DONE]`", content_type = "text/event-stream", body = String),
        (status = 409, description = "No server is connected", body = DetailBody),
        (status = 422, description = "The body is not a chat request", body = DetailBody),
    ))]
async fn chat_stream(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    Query(query): Query<StreamQuery>,
    body: Bytes,
) -> Result<ChatStream, Detail> {
    let input = input(identity.user()?, &body, query.format)?;
    Ok(state.chat.stream(input).await?)
}

/// Send a message and get the whole answer.
#[utoipa::path(post, operation_id = "simple_chat", path = "/chat", tag = "simple", request_body = ChatBody,
    responses(
        (status = 200, description = "The answer and the tool calls it made", body = Value),
        (status = 409, description = "No server is connected", body = DetailBody),
        (status = 422, description = "The body is not a chat request", body = DetailBody),
        (status = 502, description = "The model or a tool failed", body = DetailBody),
    ))]
async fn chat(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    body: Bytes,
) -> Result<Json<Value>, Detail> {
    let input = input(identity.user()?, &body, None)?;
    let outcome = state.chat.complete(input).await?;
    if let Some(error) = outcome.error {
        return Err(Detail(StatusCode::BAD_GATEWAY, error));
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
