//! The aggregated MCP server at `/mcp/` (streamable HTTP): remote MCP
//! clients see the tools of this host's pool and of their org's
//! connections, as the models in our chats do, and those servers'
//! resources and prompts (see `crate::mcp::Catalog`).
//!
//! A middleware authenticates every HTTP request (`x-api-key` or Bearer)
//! before rmcp sees it and hands the caller on in the request's
//! extensions, so the identity is per request, never per MCP session.
//! Viewers are listed only read-only tools; calls go through the same
//! dispatcher as chat tool calls, with `x-end-user-id` pinning them.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ProgressToken, ReadResourceRequestParams, ReadResourceResponse,
    ResultType, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::caller::identify;
use super::feather::{authenticate, end_user_header};
use crate::auth::Caller;
use crate::chat::{
    Catalog, McpError, ProgressSink, ToolBinding, ToolChoice, ToolSet, progress_channel,
};

/// The `/mcp` and `/mcp/` routes.
pub fn routes(
    state: Arc<AppState>,
    max_body_bytes: usize,
    shutdown: CancellationToken,
) -> Router<Arc<AppState>> {
    // The guard in front of every surface checks `Host` already.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_max_request_body_bytes(max_body_bytes)
        .with_cancellation_token(shutdown);
    let handler_state = state.clone();
    let service = StreamableHttpService::new(
        move || {
            Ok(Aggregate {
                state: handler_state.clone(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .route_service("/mcp", service.clone())
        .route_service("/mcp/", service)
        .route_layer(middleware::from_fn(session_ended))
        .route_layer(middleware::from_fn_with_state(
            (state, max_body_bytes),
            authorize,
        ))
}

/// rmcp answers a client's `DELETE` of its session with 202; the official
/// SDK clients take 200 or 204 as the session ended and log anything else
/// as a failed termination.
async fn session_ended(request: Request, next: Next) -> Response {
    let deleting = request.method() == Method::DELETE;
    let mut response = next.run(request).await;
    if deleting && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::OK;
    }
    response
}

/// Who is calling, read once per HTTP request.
#[derive(Clone)]
struct McpCaller(Caller);

async fn authorize(
    State((state, max_body_bytes)): State<(Arc<AppState>, usize)>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let caller = authenticate(identify(&state, headers)).and_then(|principal| {
        let mut caller = Caller::with_key(principal, "mcp_endpoint");
        caller.end_user = end_user_header(headers)?;
        Ok(caller)
    });
    let caller = match caller {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    request.extensions_mut().insert(McpCaller(caller));
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    if let Err(refusal) = check_json_rpc(&bytes) {
        return (StatusCode::BAD_REQUEST, Json(refusal)).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A request refused before its route, as JSON-RPC's invalid request.
pub fn refusal(status: StatusCode, message: String) -> (StatusCode, Json<Value>) {
    (status, Json(rpc_error(-32600, &message)))
}

/// A JSON-RPC error object with no id, for requests that never got one.
fn rpc_error(code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } })
}

/// Refuses what is not JSON-RPC with JSON-RPC's own errors (rmcp answers
/// a parse failure with a plain-text 415).
fn check_json_rpc(bytes: &[u8]) -> Result<(), Value> {
    let batch = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let parsed = if batch {
        serde_json::from_slice::<Vec<Envelope>>(bytes)
    } else {
        serde_json::from_slice::<Envelope>(bytes).map(|one| vec![one])
    };
    let invalid = || {
        rpc_error(
            -32600,
            "Invalid Request: expected a JSON-RPC 2.0 message: an object with \"jsonrpc\": \"2.0\" and a string \"method\" (or a result or error)",
        )
    };
    match parsed {
        Ok(messages) if messages.iter().all(Envelope::is_valid) => Ok(()),
        Ok(_) => Err(invalid()),
        Err(e) if e.is_data() => Err(invalid()),
        Err(e) => Err(rpc_error(
            -32700,
            &format!("Parse error: the body is not JSON: {e}"),
        )),
    }
}

/// The fields of a JSON-RPC message the check reads; `params` and the
/// rest are skipped without being built, rmcp parses them next.
#[derive(serde::Deserialize)]
struct Envelope {
    jsonrpc: Option<Value>,
    method: Option<Value>,
    result: Option<serde::de::IgnoredAny>,
    error: Option<serde::de::IgnoredAny>,
}

impl Envelope {
    fn is_valid(&self) -> bool {
        self.jsonrpc.as_ref().and_then(Value::as_str) == Some("2.0")
            && (self.method.as_ref().is_some_and(Value::is_string)
                || self.result.is_some()
                || self.error.is_some())
    }
}

#[derive(Clone)]
struct Aggregate {
    state: Arc<AppState>,
}

impl Aggregate {
    fn caller(context: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
        context
            .extensions
            .get::<Parts>()
            .and_then(|parts| parts.extensions.get::<McpCaller>())
            .map(|c| c.0.clone())
            .ok_or_else(|| {
                ErrorData::internal_error("request without an authenticated caller", None)
            })
    }

    async fn catalog(&self, context: &RequestContext<RoleServer>) -> Result<Catalog, ErrorData> {
        let caller = Self::caller(context)?;
        Ok(self.state.chat.catalog(&caller).await)
    }

    async fn tools_for(&self, caller: &Caller) -> Result<ToolSet, ErrorData> {
        self.state
            .chat
            .tools(caller, ToolChoice::WithConnections)
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }
}

/// Results handed on from a server of the 2025-11-25 era carry no
/// `resultType`, which the 2026-07-28 era requires; each handler below
/// marks them complete, and rmcp takes the mark off again for a client of
/// the older era.
impl ServerHandler for Aggregate {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_prompts()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("agenthost", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "agenthost: the tools, resources and prompts of this host's MCP servers and of your org's connections",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = Self::caller(&context)?;
        let tools = self.tools_for(&caller).await?;
        Ok(ListToolsResult::with_all_items(
            tools
                .tools
                .iter()
                .filter(|binding| caller.may_call(binding.read_only))
                .map(ToolBinding::as_listed)
                .collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = Self::caller(&context)?;
        let tools = self.tools_for(&caller).await?;
        let binding = tools.find(&request.name).ok_or_else(|| {
            ErrorData::invalid_params(format!("unknown tool `{}`", request.name), None)
        })?;
        let arguments = request.arguments.unwrap_or_default();
        let (progress, forwarding) = match context.meta.get_progress_token() {
            Some(token) => {
                let (sink, forwarding) = forward_progress(context.peer.clone(), token);
                (Some(sink), Some(forwarding))
            }
            None => (None, None),
        };
        let called = self
            .state
            .chat
            .call_tool(binding, arguments, &caller, progress)
            .await;
        // The call's reports go out before its result.
        if let Some(forwarding) = forwarding {
            let _ = forwarding.await;
        }
        let mut result = match called {
            Ok(result) => result,
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        };
        result.result_type.get_or_insert(ResultType::COMPLETE);
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let catalog = self.catalog(&context).await?;
        Ok(ListResourcesResult::with_all_items(
            catalog.resources().await,
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let catalog = self.catalog(&context).await?;
        Ok(ListResourceTemplatesResult::with_all_items(
            catalog.templates().await,
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let catalog = self.catalog(&context).await?;
        match catalog.read(request).await.map_err(handed_on)? {
            ReadResourceResponse::Complete(mut result) => {
                result.result_type.get_or_insert(ResultType::COMPLETE);
                Ok(result.into())
            }
            other => Ok(other),
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let catalog = self.catalog(&context).await?;
        Ok(ListPromptsResult::with_all_items(catalog.prompts().await))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let catalog = self.catalog(&context).await?;
        match catalog.get_prompt(request).await.map_err(handed_on)? {
            GetPromptResponse::Complete(mut result) => {
                result.result_type.get_or_insert(ResultType::COMPLETE);
                Ok(result.into())
            }
            other => Ok(other),
        }
    }
}

/// Sends a call's progress reports to the client as `notifications/progress`
/// with the client's own `token`, in order; the task ends once the call
/// is over and its last report is sent.
fn forward_progress(
    peer: rmcp::Peer<RoleServer>,
    token: ProgressToken,
) -> (ProgressSink, tokio::task::JoinHandle<()>) {
    let (sink, mut reports) = progress_channel();
    let forwarding = tokio::spawn(async move {
        while let Some(report) = reports.recv().await {
            let mut notification = ProgressNotificationParam::new(token.clone(), report.progress);
            notification.total = report.total;
            notification.message = report.message;
            // A client that left misses its reports; its call goes on.
            let _ = peer.notify_progress(notification).await;
        }
    });
    (sink, forwarding)
}

/// A server's own error is handed on as it came; a resource no server
/// offers is the spec's "resource not found"; an unknown prompt is the
/// client's mistake; the rest is this host's failure to reach a server.
fn handed_on(error: McpError) -> ErrorData {
    let message = error.to_string();
    match error {
        McpError::Answered { error, .. } => *error,
        McpError::UnknownResource(uri) => {
            ErrorData::resource_not_found(message, Some(json!({ "uri": uri })))
        }
        McpError::UnknownPrompt { .. } => ErrorData::invalid_params(message, None),
        _ => ErrorData::internal_error(message, None),
    }
}
