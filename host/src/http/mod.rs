//! The HTTP surfaces. Each module is one API contract: it parses and
//! validates, calls the agent, and encodes; nothing else lives there.

mod admin;
mod body;
mod simple;
mod sse;
mod truefoundry;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use crate::agent::Agent;
use crate::auth::ApiKeys;
use crate::mcp::McpPool;
use crate::plugins::PluginRuntime;

/// What every surface shares.
pub struct AppState {
    pub agent: Arc<Agent>,
    pub pool: Arc<McpPool>,
    pub plugins: Arc<PluginRuntime>,
    pub keys: ApiKeys,
    pub simple: simple::SimpleState,
}

impl AppState {
    pub fn new(
        agent: Arc<Agent>,
        pool: Arc<McpPool>,
        plugins: Arc<PluginRuntime>,
        keys: ApiKeys,
    ) -> AppState {
        AppState {
            agent,
            pool,
            plugins,
            keys,
            simple: simple::SimpleState::default(),
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
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(cors))
}
