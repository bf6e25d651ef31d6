//! Operator endpoints.
//!
//! `GET /admin/plugins` lists the loaded plugins; `POST
//! /admin/plugins/reload` loads the plugins directory again (as SIGHUP
//! does) and reports what was loaded and what was refused.
//!
//! `GET /admin/stats` reports live tasks and MCP sessions, so leaks show
//! up as numbers that do not return to their baseline. Each takes an admin
//! key in keyed mode; in local mode the local user may.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use crate::auth::{Identity, Role};
use crate::plugins;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/stats", get(stats))
        .route("/admin/plugins", get(plugins))
        .route("/admin/plugins/reload", post(reload))
}

type Refusal = (StatusCode, Json<Value>);

/// Admins, and the local user.
pub(super) fn require_admin(identity: Identity) -> Result<(), Refusal> {
    let refuse = |status, detail: &str| Err((status, Json(json!({ "detail": detail }))));
    match identity.user() {
        Err(_) => refuse(StatusCode::UNAUTHORIZED, "an admin API key is required"),
        Ok(Some(caller)) if caller.role != Role::Admin => {
            refuse(StatusCode::FORBIDDEN, "this API key is not an admin key")
        }
        Ok(_) => Ok(()),
    }
}

/// What the server has loaded: name, kind, version, description, origin.
async fn plugins(
    State(state): State<Arc<AppState>>,
    identity: Identity,
) -> Result<Json<Value>, Refusal> {
    require_admin(identity)?;
    let plugins: Vec<Value> = state
        .plugins
        .list()
        .into_iter()
        .map(|(meta, origin)| {
            json!({ "name": meta.name, "kind": plugins::kind_name(meta.kind), "version": meta.version,
                    "description": meta.description, "origin": origin })
        })
        .collect();
    Ok(Json(json!({ "plugins": plugins })))
}

/// Loads the plugins directory again, as SIGHUP does.
async fn reload(
    State(state): State<Arc<AppState>>,
    identity: Identity,
) -> Result<Json<Value>, Refusal> {
    require_admin(identity)?;
    let plugins = state.plugins.clone();
    let report = plugins.reload_off_workers().await;
    let (loaded, refused): (Vec<_>, Vec<_>) = report.into_iter().partition(|(_, r)| r.is_ok());
    Ok(Json(json!({
        "loaded": loaded.iter().filter_map(|(path, r)| r.as_ref().ok().map(|m| json!({ "file": path.display().to_string(), "name": m.name }))).collect::<Vec<_>>(),
        "refused": refused.iter().filter_map(|(path, r)| r.as_ref().err().map(|e| json!({ "file": path.display().to_string(), "error": e.to_string() }))).collect::<Vec<_>>(),
    })))
}

async fn stats(
    State(state): State<Arc<AppState>>,
    identity: Identity,
) -> Result<Json<Value>, Refusal> {
    require_admin(identity)?;
    let connected = state.registry.connected().await;
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    Ok(Json(json!({ "tasks": tasks, "mcp_sessions": connected })))
}
