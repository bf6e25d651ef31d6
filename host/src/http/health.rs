//! Probes for a process supervisor or load balancer: `GET /healthz`
//! (the process answers) and `GET /readyz` (it can serve chats: its
//! plugins are loaded and its store answers).
//!
//! Both are open to anyone, with no key and outside the guard: a probe
//! carries no key and may name the host by any address, and neither says
//! more than whether this process works and, if not, which part fails.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, feather, mcp_chat, simple, truefoundry};

/// The encoders the surfaces stream with.
const ENCODERS: [&str; 4] = [
    feather::FORMAT,
    truefoundry::FORMAT,
    simple::FORMAT,
    mcp_chat::FORMAT,
];

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default()
        .routes(routes!(alive))
        .routes(routes!(ready))
}

/// Whether the process serves.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Value)))]
async fn alive() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Whether it can serve chats: plugins loaded, store reachable.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`", body = Value),
        (status = 503, description = "`{\"status\": \"unready\", \"reasons\": [...]}`", body = Value),
    ))]
async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let reasons = state.chat.unready(&ENCODERS).await;
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unready", "reasons": reasons })),
        )
    }
}
