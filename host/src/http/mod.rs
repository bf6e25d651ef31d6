//! The HTTP surfaces. Each module is one API contract: it parses and
//! validates, learns who is calling (`caller`), calls the chat service or
//! the registry, and answers in its contract's shape; nothing else lives
//! there.

mod admin;
mod body;
mod caller;
mod feather;
mod mcp_chat;
mod mcp_server;
mod servers;
mod simple;
mod truefoundry;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use crate::auth::ApiKeys;
use crate::chat::{ChatError, ChatService, ChatStream};
use crate::connections::Connections;
use crate::plugins::PluginRuntime;
use crate::registry::Registry;

/// What every surface shares: the services below them, and who may call.
pub struct AppState {
    pub chat: ChatService,
    pub registry: Registry,
    pub connections: Arc<Connections>,
    /// For the operator's plugin routes.
    pub plugins: Arc<PluginRuntime>,
    pub keys: ApiKeys,
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
    let limit = max_body_bytes;
    let mcp = mcp_server::routes(state.clone(), listen, max_body_bytes, shutdown);
    Ok(Router::new()
        .merge(too_large_as(simple::routes(), limit, Detail::too_large))
        .merge(too_large_as(admin::routes(), limit, Detail::too_large))
        .merge(too_large_as(mcp_chat::routes(), limit, Detail::too_large))
        .merge(too_large_as(servers::routes(), limit, Detail::too_large))
        .merge(too_large_as(
            truefoundry::routes(),
            limit,
            truefoundry::too_large,
        ))
        .merge(too_large_as(feather::routes(), limit, feather::too_large))
        .merge(too_large_as(mcp, limit, mcp_server::too_large))
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(cors))
}

/// Answers an over-limit body in the error shape of the surface's
/// contract, naming the limit; axum and rmcp answer in plain text.
fn too_large_as<R: IntoResponse + 'static>(
    routes: Router<Arc<AppState>>,
    limit: usize,
    shape: fn(String) -> R,
) -> Router<Arc<AppState>> {
    routes.route_layer(middleware::from_fn(
        move |request: Request, next: Next| async move {
            let response = next.run(request).await;
            if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
                return response;
            }
            shape(format!(
                "request body is too large: the limit is {limit} bytes (limits.max_body_bytes)"
            ))
            .into_response()
        },
    ))
}

impl IntoResponse for ChatStream {
    fn into_response(self) -> Response {
        let content_type = HeaderValue::try_from(self.content_type())
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        let mut headers = vec![(header::CONTENT_TYPE, content_type)];
        for (name, value) in self.headers() {
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name), HeaderValue::try_from(value))
            {
                headers.push((name, value));
            }
        }
        let mut response = Response::new(Body::from_stream(self.body));
        for (name, value) in headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// `{"detail": "..."}`, the error of the simple frontend and MCP Chat
/// API contracts (seeds 003 and 004).
struct Detail(StatusCode, String);

impl Detail {
    fn too_large(message: String) -> Detail {
        Detail(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
}

/// Seeds 003 and 004 name the same statuses for the same failures.
impl From<ChatError> for Detail {
    fn from(error: ChatError) -> Detail {
        let status = match &error {
            ChatError::UnknownFormat(_) | ChatError::Route { .. } => StatusCode::BAD_REQUEST,
            ChatError::NotConnected => StatusCode::CONFLICT,
            ChatError::ToolsInvalid(_) | ChatError::SessionNotFound => StatusCode::NOT_FOUND,
            ChatError::ToolsUnreachable(_) | ChatError::Plugin(_) => StatusCode::BAD_GATEWAY,
            ChatError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Detail(status, error.to_string())
    }
}

impl IntoResponse for Detail {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "detail": self.1 }))).into_response()
    }
}
