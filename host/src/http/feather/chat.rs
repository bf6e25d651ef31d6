//! The Feather MCP chat stream (seed 000): `POST /v1/mcp-chat/stream`.
//!
//! `x-api-key` names the caller, whose org decides the tools (the pool's
//! and the org's connections) and whose role the tools enforce when
//! called; the endpoint itself has no role check, as the seed says.
//! `end_user_id` pins every tool call to that end user.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};

use super::fastapi::{FeatherError, Validator, at, json_body, loc};
use super::{AppState, sse};
use crate::agent::{ChatRequest, Message, Role};
use crate::auth::Principal;
use crate::dispatch::Caller;
use crate::mcp::end_user;

const FORMAT: &str = "feather";
const DEFAULT_MODEL: &str = "gpt-5.4-mini";
const DEFAULT_MAX_TOKENS: i64 = 4096;
const MAX_TOKENS: i64 = 16384;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/mcp-chat/stream", post(chat_stream))
}

/// The caller named by `x-api-key` (or a Bearer token, for MCP clients
/// that only know that), as the seed's 401 `ErrorResponse` when unknown.
pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, FeatherError> {
    let presented = headers.contains_key("x-api-key") || headers.contains_key("authorization");
    if !presented {
        return Err(FeatherError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationError",
            "missing API key: send it in the x-api-key header",
        ));
    }
    super::caller(state, headers).ok_or_else(|| {
        FeatherError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationError",
            "invalid API key",
        )
    })
}

/// The `x-end-user-id` header, which must be a UUID when present.
pub fn end_user_header(headers: &HeaderMap) -> Result<Option<String>, FeatherError> {
    let Some(value) = headers.get(end_user::HEADER) else {
        return Ok(None);
    };
    let mut v = Validator::default();
    let text = Value::from(value.to_str().unwrap_or_default());
    let id = v.uuid(loc(&["header", end_user::HEADER]), &text);
    v.finish()?;
    Ok(id.map(|id| id.to_string()))
}

struct ChatStreamRequest {
    messages: Vec<Message>,
    end_user_id: Option<String>,
    model: String,
    max_tokens: u32,
}

impl ChatStreamRequest {
    /// Reads the body as the seed's `ChatStreamRequest`, reporting every
    /// problem at once. Unknown fields are ignored, as pydantic does.
    fn parse(body: &[u8]) -> Result<ChatStreamRequest, FeatherError> {
        let body = json_body(body)?;
        let mut v = Validator::default();
        let Some(object) = v.model(loc(&["body"]), &body) else {
            return Err(v.into_error());
        };
        let mut messages = Vec::new();
        if let Some(list) = v
            .required(object, loc(&["body"]), "messages")
            .and_then(|value| v.list(loc(&["body", "messages"]), value, 1))
        {
            for (i, item) in list.iter().enumerate() {
                let here = at(loc(&["body", "messages"]), i);
                let Some(message) = v.model(here.clone(), item) else {
                    continue;
                };
                let role = v
                    .required(message, here.clone(), "role")
                    .and_then(|r| v.literal(at(here.clone(), "role"), r, &["user", "assistant"]));
                let content = v
                    .required(message, here.clone(), "content")
                    .and_then(|c| v.string(at(here.clone(), "content"), c));
                if let (Some(role), Some(content)) = (role, content) {
                    messages.push(Message {
                        role: if role == "user" {
                            Role::User
                        } else {
                            Role::Assistant
                        },
                        content: content.to_owned(),
                        tool_calls: Vec::new(),
                        tool_call_id: None,
                    });
                }
            }
        }
        let end_user_id = match object.get("end_user_id") {
            None | Some(Value::Null) => None,
            Some(value) => v
                .uuid(loc(&["body", "end_user_id"]), value)
                .map(|id| id.to_string()),
        };
        let model = match object.get("model") {
            None => Some(DEFAULT_MODEL),
            Some(value) => v.string(loc(&["body", "model"]), value),
        };
        let max_tokens = match object.get("max_tokens") {
            None => Some(DEFAULT_MAX_TOKENS),
            Some(value) => v.int_in(loc(&["body", "max_tokens"]), value, 1, MAX_TOKENS),
        };
        v.finish()?;
        Ok(ChatStreamRequest {
            messages,
            end_user_id,
            model: model.unwrap_or(DEFAULT_MODEL).to_owned(),
            max_tokens: max_tokens.unwrap_or(DEFAULT_MAX_TOKENS) as u32,
        })
    }
}

async fn chat_stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FeatherError> {
    let principal = authenticate(&state, &headers)?;
    let request = ChatStreamRequest::parse(&body)?;
    let route = state.agent.route(Some(&request.model)).map_err(|e| {
        let mut v = Validator::default();
        v.error(
            loc(&["body", "model"]),
            "value_error",
            format!("Value error, {e}"),
            &Value::from(request.model.as_str()),
            Some(json!({ "error": e.to_string() })),
        );
        v.into_error()
    })?;
    let tools = state.connections.org_tool_set(&principal.org).await;
    tracing::debug!(
        org = %principal.org,
        key = %principal.key_label,
        model = %route.model,
        tools = tools.tools.len(),
        "feather chat"
    );
    let caller = Caller {
        principal: Some(principal),
        end_user: request.end_user_id,
        reason: "feather_chat",
    };
    let mut chat = ChatRequest::new(request.messages, tools, route, caller);
    chat.max_tokens = Some(request.max_tokens);
    let internal = |e: crate::plugins::PluginFailure| {
        FeatherError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            e.to_string(),
        )
    };
    let encoder = state.plugins.encoder(FORMAT).map_err(internal)?;
    let options = sse::response_options(&request.model);
    let run = state.agent.run(chat);
    sse::encoded_response(encoder.clone(), encoder, options, run)
        .await
        .map_err(internal)
}
