//! The TrueFoundry AI Gateway agent endpoint (seed 002):
//! `POST /api/llm/agent/responses`, Bearer auth, MCP servers chosen per
//! request, streamed by the `truefoundry` encoder plugin.
//!
//! Errors before the stream starts use OpenAI's shape
//! (`{"error": {"type", "message", "param", "code"}}`) so the official SDK
//! raises them as the matching exception.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::body::{BodyError, Count, parse_json};
use crate::auth::{Caller, Identity, KeyRefusal, Principal};
use crate::chat::{
    ChatError, ChatInput, ChatLog, ChatOptions, ChatStream, Format, History, Message, Role,
    ServerChoice, ServerRef, ToolCall, ToolChoice,
};

pub(super) const FORMAT: &str = "truefoundry";
const DEFAULT_ITERATION_LIMIT: u32 = 5;
const MAX_ITERATION_LIMIT: u32 = 20;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default().routes(routes!(responses))
}

/// An OpenAI-shaped error.
pub(super) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    param: Option<String>,
}

impl ApiError {
    fn invalid(param: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param: Some(param.to_owned()),
        }
    }

    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            param: None,
        }
    }
}

/// A request refused before its route, OpenAI-shaped.
pub fn refusal(status: StatusCode, message: String) -> ApiError {
    let kind = match status {
        StatusCode::FORBIDDEN => "permission_error",
        _ => "invalid_request_error",
    };
    ApiError::new(status, kind, message)
}

/// OpenAI's error body.
#[derive(serde::Serialize, ToSchema)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Serialize, ToSchema)]
struct ErrorDetail {
    /// `invalid_request_error`, `authentication_error`, ...
    #[serde(rename = "type")]
    kind: &'static str,
    message: String,
    /// The request field at fault, if one is.
    param: Option<String>,
    /// Always null.
    code: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind,
                message: self.message,
                param: self.param,
                code: None,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

#[derive(Deserialize, ToSchema)]
struct AgentRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    mcp_servers: Vec<McpServerSpec>,
    #[schema(value_type = Option<u32>)]
    max_tokens: Option<Count>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    /// Accepted and range-checked; no built-in provider takes it yet.
    #[schema(value_type = Option<u32>)]
    top_k: Option<Count>,
    /// Only `true` (or absent): this endpoint streams.
    stream: Option<bool>,
    /// Rounds of tool calls, 1 to 20; 5 by default.
    #[schema(value_type = Option<u32>)]
    iteration_limit: Option<Count>,
}

#[derive(Deserialize, ToSchema)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Vec<InToolCall>,
    tool_call_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize, ToSchema)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize, ToSchema)]
struct InToolCall {
    id: String,
    function: InFunction,
}

#[derive(Deserialize, ToSchema)]
struct InFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct McpServerSpec {
    integration_fqn: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "enabled")]
    enable_all_tools: bool,
    #[serde(default)]
    tools: Vec<ToolName>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ToolName {
    name: String,
}

fn enabled() -> bool {
    true
}

fn authenticate(identity: Identity) -> Result<Principal, ApiError> {
    identity.key().map_err(|why| {
        let message = match why {
            KeyRefusal::Missing => "missing `Authorization: Bearer <api key>` header",
            other => other.message(),
        };
        ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
    })
}

/// Run an agent turn with the request's MCP servers, streamed as OpenAI
/// chat completion chunks (the official SDK reads them).
#[utoipa::path(post, path = "/api/llm/agent/responses", tag = "truefoundry", request_body = AgentRequest,
    responses(
        (status = 200, description = "`chat.completion.chunk` events, tool calls and results, then `[DONE]`", content_type = "text/event-stream", body = String),
        (status = 400, description = "The request is invalid", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
    ))]
async fn responses(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    headers: HeaderMap,
    body: Bytes,
) -> Result<ChatStream, ApiError> {
    let principal = authenticate(identity)?;
    let metadata = match headers.get("x-tfy-metadata") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                .filter(Value::is_object)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "x-tfy-metadata",
                        "the x-tfy-metadata header must be a JSON object",
                    )
                })?,
        ),
    };
    let request: AgentRequest = parse_json(&body).map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        kind: "invalid_request_error",
        message: e.message(),
        param: match e {
            BodyError::Shape { path, .. } if !path.is_empty() && path != "." => Some(path),
            _ => None,
        },
    })?;
    validate(&request)?;
    let messages = convert_messages(request.messages)?;
    let servers = request
        .mcp_servers
        .into_iter()
        .enumerate()
        .map(|(i, spec)| spec.into_choice(i))
        .collect::<Result<_, _>>()?;
    // Logged at `info` when the client asks (`tfy_log_request`, as the
    // gateway's header does); otherwise at `debug`.
    let asked = metadata.as_ref().is_some_and(|m| {
        matches!(&m["tfy_log_request"], Value::Bool(true)) || m["tfy_log_request"] == "true"
    });
    let input = ChatInput {
        caller: Caller::with_key(principal, "truefoundry_chat"),
        history: History::Given(messages),
        model: Some(request.model),
        tools: ToolChoice::Servers(servers),
        options: ChatOptions {
            max_tokens: request.max_tokens.map(|c| c.0),
            temperature: request.temperature,
            top_p: request.top_p,
            iteration_limit: Some(
                request
                    .iteration_limit
                    .map_or(DEFAULT_ITERATION_LIMIT, |c| c.0),
            ),
        },
        format: Format::own(FORMAT),
        log: ChatLog {
            at_info: asked,
            metadata,
        },
    };
    Ok(state.chat.stream(input).await?)
}

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> ApiError {
        match error {
            ChatError::Route { error, .. } => ApiError::invalid("model", error.to_string()),
            ChatError::ToolsInvalid(_) => ApiError::invalid("mcp_servers", error.to_string()),
            ChatError::ToolsUnreachable(_) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "mcp_server_error",
                error.to_string(),
            ),
            ChatError::Store(e) if e.is_unavailable() => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "api_error", e.to_string())
            }
            other => internal(other),
        }
    }
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "api_error",
        error.to_string(),
    )
}

fn validate(request: &AgentRequest) -> Result<(), ApiError> {
    if request.stream == Some(false) {
        return Err(ApiError::invalid(
            "stream",
            "`stream: false` is not supported: this endpoint only streams",
        ));
    }
    if request.model.trim().is_empty() {
        return Err(ApiError::invalid("model", "`model` must not be empty"));
    }
    if request.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must hold at least one message",
        ));
    }
    if let Some(t) = request.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(ApiError::invalid(
            "temperature",
            format!("`temperature` must be between 0 and 2, got {t}"),
        ));
    }
    if let Some(p) = request.top_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(ApiError::invalid(
            "top_p",
            format!("`top_p` must be between 0 and 1, got {p}"),
        ));
    }
    if request.top_k == Some(Count(0)) {
        return Err(ApiError::invalid("top_k", "`top_k` must be at least 1"));
    }
    if request.max_tokens == Some(Count(0)) {
        return Err(ApiError::invalid(
            "max_tokens",
            "`max_tokens` must be at least 1",
        ));
    }
    if let Some(Count(limit)) = request.iteration_limit
        && !(1..=MAX_ITERATION_LIMIT).contains(&limit)
    {
        return Err(ApiError::invalid(
            "iteration_limit",
            format!("`iteration_limit` must be between 1 and {MAX_ITERATION_LIMIT}, got {limit}"),
        ));
    }
    Ok(())
}

fn convert_messages(messages: Vec<InMessage>) -> Result<Vec<Message>, ApiError> {
    messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "tool" => Role::Tool,
                other => {
                    return Err(ApiError::invalid(
                        "messages",
                        format!("messages[{i}].role `{other}` is not one of system, user, assistant, tool"),
                    ));
                }
            };
            let content = match m.content {
                None => String::new(),
                Some(Content::Text(text)) => text,
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        match (part.kind.as_str(), part.text) {
                            ("text", Some(t)) => text.push_str(&t),
                            (kind, _) => {
                                return Err(ApiError::invalid(
                                    "messages",
                                    format!("messages[{i}]: content part `{kind}` is not supported; send text"),
                                ));
                            }
                        }
                    }
                    text
                }
            };
            if role == Role::Tool && m.tool_call_id.is_none() {
                return Err(ApiError::invalid("messages", format!("messages[{i}]: a tool message needs `tool_call_id`")));
            }
            let tool_calls = m
                .tool_calls
                .into_iter()
                .map(|c| ToolCall { id: c.id, name: c.function.name, arguments: c.function.arguments })
                .collect();
            Ok(Message { role, content, tool_calls, tool_call_id: m.tool_call_id })
        })
        .collect()
}

impl McpServerSpec {
    /// The server and tools this entry names.
    fn into_choice(self, i: usize) -> Result<ServerChoice, ApiError> {
        let server = match (self.integration_fqn, self.url) {
            (Some(fqn), None) => ServerRef::Configured(fqn),
            (None, Some(url)) => ServerRef::Url {
                url,
                headers: self.headers,
            },
            _ => {
                return Err(ApiError::invalid(
                    "mcp_servers",
                    format!("mcp_servers[{i}] needs exactly one of `integration_fqn` and `url`"),
                ));
            }
        };
        let only =
            (!self.enable_all_tools).then(|| self.tools.into_iter().map(|t| t.name).collect());
        Ok(ServerChoice { server, only })
    }
}
