//! The HTTP surfaces. Each module is one API contract: it parses and
//! validates, learns who is calling (`caller`), calls the chat service or
//! the registry, and answers in its contract's shape; nothing else lives
//! there.

mod access_log;
mod admin;
mod body;
mod caller;
mod feather;
mod guard;
mod health;
mod mcp_chat;
mod mcp_server;
mod metrics;
mod openapi;
mod runs;
mod servers;
mod simple;
mod truefoundry;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{ApiKeys, KeyRefusal};
use crate::chat::{ChatError, ChatService, ChatStream};
use crate::connections::Connections;
use crate::plugins::PluginRuntime;
use crate::registry::Registry;
use crate::usage::UsageLog;
use guard::{Guard, guarded};

/// What every surface shares: the services below them, and who may call.
pub struct AppState {
    pub chat: ChatService,
    pub registry: Registry,
    pub connections: Arc<Connections>,
    /// For the operator's plugin routes.
    pub plugins: Arc<PluginRuntime>,
    /// For `GET /admin/usage`.
    pub usage: UsageLog,
    pub keys: ApiKeys,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// `GET /metrics` takes no key.
    pub metrics_public: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid CORS origin `{0}` in the config")]
pub struct InvalidOrigin(String);

/// What the router needs from the configuration.
pub struct HttpConfig<'a> {
    pub listen: SocketAddr,
    pub cors_origins: &'a [String],
    pub allowed_hosts: &'a [String],
    pub max_body_bytes: usize,
}

pub fn router(
    state: Arc<AppState>,
    config: HttpConfig<'_>,
    shutdown: CancellationToken,
) -> Result<Router, InvalidOrigin> {
    let origins = config
        .cors_origins
        .iter()
        .map(|o| HeaderValue::try_from(o.as_str()).map_err(|_| InvalidOrigin(o.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    // The seed asks for credentials, which rules out `*`: mirror instead.
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request());
    let guard = Arc::new(Guard::new(
        config.listen,
        config.allowed_hosts,
        config.cors_origins,
        config.max_body_bytes,
    ));
    let mcp = mcp_server::routes(state.clone(), config.max_body_bytes, shutdown);
    // Every route but `/mcp/` (an MCP service, not an HTTP API) is
    // described by the annotation that also routes it.
    let (routes, api) = OpenApiRouter::default()
        .merge(health::routes())
        .merge(guarded(simple::routes(), &guard, Detail))
        .merge(guarded(admin::routes(), &guard, Detail))
        .merge(guarded(metrics::routes(), &guard, Detail))
        .merge(guarded(ui::routes(), &guard, Detail))
        .merge(guarded(mcp_chat::routes(), &guard, Detail))
        .merge(guarded(servers::routes(), &guard, Detail))
        .merge(guarded(runs::routes(), &guard, Detail))
        .merge(guarded(truefoundry::routes(), &guard, truefoundry::refusal))
        .merge(guarded(feather::routes(), &guard, feather::refusal))
        .split_for_parts();
    let mcp = guarded(OpenApiRouter::from(mcp), &guard, mcp_server::refusal);
    Ok(routes
        .merge(Router::from(mcp))
        .merge(openapi::routes(api))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access_log::log_request,
        ))
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(cors))
}

/// Names the run a streamed answer is, for `/runs/{id}`.
const RUN_ID_HEADER: &str = "x-agenthost-run-id";

impl IntoResponse for ChatStream {
    fn into_response(self) -> Response {
        let content_type = HeaderValue::try_from(self.content_type())
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        let mut headers = vec![(header::CONTENT_TYPE, content_type)];
        if let Ok(run_id) = HeaderValue::try_from(self.run_id()) {
            headers.push((HeaderName::from_static(RUN_ID_HEADER), run_id));
        }
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

impl From<KeyRefusal> for Detail {
    fn from(refusal: KeyRefusal) -> Detail {
        Detail(StatusCode::UNAUTHORIZED, refusal.message().into())
    }
}

/// Seeds 003 and 004 name the same statuses for the same failures.
impl From<ChatError> for Detail {
    fn from(error: ChatError) -> Detail {
        let status = match &error {
            ChatError::UnknownFormat(_) | ChatError::Route { .. } | ChatError::NulInMessage => {
                StatusCode::BAD_REQUEST
            }
            ChatError::NotConnected => StatusCode::CONFLICT,
            ChatError::ToolsInvalid(_) | ChatError::SessionNotFound => StatusCode::NOT_FOUND,
            ChatError::ToolsUnreachable(_) | ChatError::Plugin(_) => StatusCode::BAD_GATEWAY,
            ChatError::Store(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            ChatError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Detail(status, error.to_string())
    }
}

/// The body of a [`Detail`] error.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct DetailBody {
    /// What went wrong and what to fix.
    detail: String,
}

impl IntoResponse for Detail {
    fn into_response(self) -> Response {
        (self.0, Json(DetailBody { detail: self.1 })).into_response()
    }
}
