//! Operator endpoints.
//!
//! `GET /admin/stats` reports live tasks and MCP sessions, so leaks show
//! up as numbers that do not return to their baseline. Once API keys are
//! configured it takes an admin key; without keys the server is in open
//! development mode, like its other surfaces.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use crate::auth::Role;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/admin/stats", get(stats))
}

async fn stats(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    if !state.keys.is_empty() {
        let refuse = |status, detail: &str| Err((status, Json(json!({ "detail": detail }))));
        match super::caller(&state, &headers) {
            None => return refuse(StatusCode::UNAUTHORIZED, "an admin API key is required"),
            Some(caller) if caller.role != Role::Admin => {
                return refuse(StatusCode::FORBIDDEN, "this API key is not an admin key");
            }
            Some(_) => {}
        }
    }
    let mut connected = 0;
    for server in state.pool.servers() {
        if server.is_connected().await {
            connected += 1;
        }
    }
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    Ok(Json(json!({ "tasks": tasks, "mcp_sessions": connected })))
}
