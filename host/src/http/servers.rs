//! `GET /servers`, shared by the simple frontend (seed 003) and the MCP
//! Chat API (seed 004): one registry, one resource, each entry carrying
//! both contracts' fields.
//!
//! `id` is the server's identifier everywhere (`DELETE /servers/{id}`,
//! `server__tool` names). `name` is the display name for servers from the
//! config file (seed 003) and the identifier for servers registered at
//! run time, where seed 004 makes it so.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use rmcp::model::Tool;

use crate::mcp::{Origin, ServerEntry};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/servers", get(list))
}

async fn list(State(state): State<Arc<AppState>>) -> Json<Vec<Value>> {
    let mut servers = Vec::new();
    for server in state.pool.servers() {
        servers.push(describe(&server).await);
    }
    Json(servers)
}

/// One server as both contracts show it, tools from its live session.
pub async fn describe(server: &ServerEntry) -> Value {
    let (tools, connected_at) = match server.snapshot().await {
        Some((tools, at)) => (tools, Some(at)),
        None => (Default::default(), None),
    };
    let tools = tool_summaries(&tools);
    let config = &server.config;
    let name = match server.origin {
        Origin::Config => config.display_name(),
        Origin::Runtime | Origin::AdHoc | Origin::Connection => &config.id,
    };
    json!({
        "id": config.id,
        "name": name,
        "path": config.location(),
        "description": config.description.clone().unwrap_or_default(),
        "transport": config.transport,
        "tools_count": tools.len(),
        "tools": tools,
        "connected_at": connected_at,
    })
}

/// Tools as both frontends list them: `{name, description}`.
pub fn tool_summaries(tools: &[Tool]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| json!({ "name": t.name, "description": t.description.as_deref().unwrap_or_default() }))
        .collect()
}
