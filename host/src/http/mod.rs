//! The HTTP surfaces. Each module is one API contract: it parses and
//! validates, calls the agent, and encodes; nothing else lives there.

mod admin;
mod body;
mod fastapi;
mod feather;
mod integrations;
mod mcp_chat;
mod mcp_server;
mod servers;
mod simple;
mod sse;
mod truefoundry;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use crate::agent::Agent;
use crate::auth::{ApiKeys, Principal, bearer_token};
use crate::config::SecurityConfig;
use crate::connections::Connections;
use crate::dispatch::Dispatcher;
use crate::mcp::McpPool;
use crate::plugins::PluginRuntime;
use crate::store::Store;

/// What every surface shares.
pub struct AppState {
    pub agent: Arc<Agent>,
    pub pool: Arc<McpPool>,
    pub plugins: Arc<PluginRuntime>,
    pub keys: ApiKeys,
    pub store: Store,
    pub security: SecurityConfig,
    pub connections: Connections,
    pub dispatcher: Dispatcher,
    pub simple: simple::SimpleState,
    pub mcp_chat: mcp_chat::SessionLocks,
}

/// The caller named by `Authorization: Bearer <key>` or `x-api-key`.
pub fn caller(state: &AppState, headers: &HeaderMap) -> Option<Principal> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let key = bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))?;
    state.keys.authenticate(key)
}

impl AppState {
    pub fn new(
        agent: Arc<Agent>,
        pool: Arc<McpPool>,
        plugins: Arc<PluginRuntime>,
        keys: ApiKeys,
        store: Store,
        security: SecurityConfig,
        connections: Connections,
    ) -> AppState {
        AppState {
            agent,
            pool,
            plugins,
            keys,
            dispatcher: Dispatcher::new(store.clone()),
            store,
            security,
            connections,
            simple: Default::default(),
            mcp_chat: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid CORS origin `{0}` in the config")]
pub struct InvalidOrigin(String);

pub fn router(
    state: Arc<AppState>,
    cors_origins: &[String],
    max_body_bytes: usize,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> Result<Router, InvalidOrigin> {
    let origins = cors_origins
        .iter()
        .map(|o| HeaderValue::try_from(o.as_str()).map_err(|_| InvalidOrigin(o.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    // The seed asks for credentials, which rules out `*`: mirror instead.
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request());
    Ok(Router::new()
        .merge(simple::routes())
        .merge(admin::routes())
        .merge(truefoundry::routes())
        .merge(mcp_chat::routes())
        .merge(servers::routes())
        .merge(feather::routes())
        .merge(integrations::routes())
        .merge(mcp_server::routes(
            state.clone(),
            listen,
            max_body_bytes,
            shutdown,
        ))
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(move |request, next| {
            shape_body_limit(max_body_bytes, request, next)
        }))
        .layer(cors))
}

/// Answers an over-limit body in the error shape of the surface it was
/// sent to, naming the limit; axum and rmcp answer in plain text.
async fn shape_body_limit(limit: usize, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    let message =
        format!("request body is too large: the limit is {limit} bytes (limits.max_body_bytes)");
    let status = StatusCode::PAYLOAD_TOO_LARGE;
    if path.starts_with("/v1/") {
        fastapi::FeatherError::Api {
            status,
            error: "PayloadTooLargeError",
            message,
        }
        .into_response()
    } else if path.starts_with("/api/") {
        truefoundry::ApiError::new(status, "invalid_request_error", message).into_response()
    } else if path.starts_with("/mcp") {
        (status, Json(mcp_server::rpc_error(-32600, &message))).into_response()
    } else {
        Detail(status, message).into_response()
    }
}

/// `{"detail": "..."}`, the error of the simple frontend and MCP Chat
/// API contracts (seeds 003 and 004).
struct Detail(StatusCode, String);

impl IntoResponse for Detail {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "detail": self.1 }))).into_response()
    }
}
