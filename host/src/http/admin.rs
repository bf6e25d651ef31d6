//! Operator endpoints.
//!
//! `GET /admin/stats` reports live tasks and MCP sessions, so leaks show
//! up as numbers that do not return to their baseline. It reveals no
//! secrets; it moves behind admin API keys once keys exist.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/admin/stats", get(stats))
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<Value> {
    let mut connected = 0;
    for server in state.pool.servers() {
        if server.is_connected().await {
            connected += 1;
        }
    }
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    Json(json!({ "tasks": tasks, "mcp_sessions": connected }))
}
