//! The Feather MCP chat stream (seed 000): `POST /v1/mcp-chat/stream`.
//!
//! `x-api-key` names the caller, whose org decides the tools (the pool's
//! and the org's connections) and whose role the tools enforce when
//! called; the endpoint itself has no role check, as the seed says.
//! `end_user_id` pins every tool call to that end user.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::validation::{
    ErrorResponse, FeatherError, HttpValidationError, Validator, at, json_body, loc,
};
use super::{AppState, authenticate};
use crate::auth::{Caller, Identity};
use crate::chat::{
    ChatError, ChatInput, ChatLog, ChatOptions, ChatStream, Format, History, Message, Role,
    ToolChoice,
};

pub(in crate::http) const FORMAT: &str = "feather";
const DEFAULT_MODEL: &str = "gpt-5.4-mini";
const DEFAULT_MAX_TOKENS: i64 = 4096;
const MAX_TOKENS: i64 = 16384;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default().routes(routes!(chat_stream))
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

/// Chat with the org's tools, streamed as server-sent events.
#[utoipa::path(post, operation_id = "feather_chat_stream", path = "/v1/mcp-chat/stream", tag = "feather",
    request_body(content = Value, description = "Seed 000's `ChatStreamRequest`: `messages` (`role`, `content`), optional `end_user_id`, `model` and `max_tokens` (1 to 16384)"),
    responses(
        (status = 200, description = "Events `text`, `tool_call`, `tool_result`, `error`, `done`", content_type = "text/event-stream", body = String),
        (status = 401, description = "No API key, or an unknown one", body = ErrorResponse),
        (status = 422, description = "What is invalid, field by field", body = HttpValidationError),
    ))]
async fn chat_stream(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    body: Bytes,
) -> Result<ChatStream, FeatherError> {
    let principal = authenticate(identity)?;
    let request = ChatStreamRequest::parse(&body)?;
    let input = ChatInput {
        tools: ToolChoice::WithConnections,
        caller: Caller {
            principal: Some(principal),
            end_user: request.end_user_id,
            reason: "feather_chat",
        },
        history: History::Given(request.messages),
        model: Some(request.model),
        options: ChatOptions {
            max_tokens: Some(request.max_tokens),
            ..ChatOptions::default()
        },
        format: Format::own(FORMAT),
        log: ChatLog::default(),
    };
    Ok(state.chat.stream(input).await?)
}

impl From<ChatError> for FeatherError {
    fn from(error: ChatError) -> FeatherError {
        match error {
            ChatError::Route { model, error } => {
                let mut v = Validator::default();
                v.error(
                    loc(&["body", "model"]),
                    "value_error",
                    format!("Value error, {error}"),
                    &Value::from(model),
                    Some(json!({ "error": error.to_string() })),
                );
                v.into_error()
            }
            ChatError::Store(e) if e.is_unavailable() => FeatherError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableError",
                e.to_string(),
            ),
            other => FeatherError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                other.to_string(),
            ),
        }
    }
}
