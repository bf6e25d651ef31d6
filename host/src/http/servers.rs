//! `GET /servers`, shared by the simple frontend (seed 003) and the MCP
//! Chat API (seed 004): one registry, one resource, each entry carrying
//! both contracts' fields.
//!
//! `id` is the server's identifier everywhere (`DELETE /servers/{id}`,
//! `server__tool` names). `name` is the display name for servers from the
//! config file (seed 003) and the identifier for servers registered at
//! run time, where seed 004 makes it so.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Detail};
use crate::auth::Identity;
use crate::chat::ToolSummary;
use crate::registry::ServerView;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default().routes(routes!(list))
}

/// The MCP servers the caller may use, with their tools.
#[utoipa::path(get, operation_id = "list_servers", path = "/servers", tags = ["simple", "mcp-chat"],
    responses((status = 200, description = "Each server's id, name, status and tools", body = Vec<Value>)))]
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
        "protocol_version": server.protocol_version,
    })
}

/// Tools as both frontends list them: `{name, description}`.
pub fn tool_summaries(tools: &[ToolSummary]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| json!({ "name": t.name, "description": t.description }))
        .collect()
}
