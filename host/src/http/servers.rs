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

use super::{AppState, Detail};
use crate::auth::Identity;
use crate::chat::ToolSummary;
use crate::registry::ServerView;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/servers", get(list))
}

async fn list(
    State(state): State<Arc<AppState>>,
    identity: Identity,
) -> Result<Json<Vec<Value>>, Detail> {
    let servers = state.registry.list(&identity.user()?).await;
    Ok(Json(servers.iter().map(describe).collect()))
}

/// One server as both contracts show it.
pub fn describe(server: &ServerView) -> Value {
    let tools = tool_summaries(&server.tools);
    json!({
        "id": server.id,
        "name": server.name,
        "path": server.path,
        "description": server.description,
        "transport": server.transport,
        "tools_count": tools.len(),
        "tools": tools,
        "connected_at": server.connected_at,
    })
}

/// Tools as both frontends list them: `{name, description}`.
pub fn tool_summaries(tools: &[ToolSummary]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| json!({ "name": t.name, "description": t.description }))
        .collect()
}
