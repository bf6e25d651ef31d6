//! Probes for a process supervisor or load balancer: `GET /healthz`
//! (the process answers) and `GET /readyz` (it can serve chats: its
//! plugins are loaded and its store answers).
//!
//! Both are open to anyone, with no key and outside the guard: a probe
//! carries no key and may name the host by any address, and neither says
//! more than whether this process works and, if not, which part fails.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{AppState, feather, mcp_chat, simple, truefoundry};

/// The encoders the surfaces stream with.
const ENCODERS: [&str; 4] = [
    feather::FORMAT,
    truefoundry::FORMAT,
    simple::FORMAT,
    mcp_chat::FORMAT,
];

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(alive))
        .route("/readyz", get(ready))
}

async fn alive() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

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
