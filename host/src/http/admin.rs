//! Operator endpoints.
//!
//! `GET /admin/plugins` lists the loaded plugins; `POST
//! /admin/plugins/reload` loads the plugins directory again (as SIGHUP
//! does) and reports what was loaded and what was refused.
//!
//! `GET /admin/stats` reports live tasks and MCP sessions, so leaks show
//! up as numbers that do not return to their baseline.
//!
//! `GET /admin/usage?from=&to=&group_by=` sums the tokens the providers
//! reported for the caller's org (an admin sees its own org's usage, as
//! every other route keeps tenants apart; the local user's is the one
//! tenant's).
//!
//! Each takes an admin key in keyed mode; in local mode the local user may.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, DetailBody};
use crate::auth::{Identity, Principal, Role};
use crate::plugins;
use crate::usage::{UsageQuery, column_name};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default()
        .routes(routes!(stats))
        .routes(routes!(usage))
        .routes(routes!(plugins))
        .routes(routes!(reload))
}

type Refusal = (StatusCode, Json<Value>);

/// Admins, and the local user.
pub(super) fn require_admin(identity: Identity) -> Result<(), Refusal> {
    admin(identity).map(drop)
}

/// The admin's principal, or `None` for the local user.
fn admin(identity: Identity) -> Result<Option<Principal>, Refusal> {
    let refuse = |status, detail: &str| Err((status, Json(json!({ "detail": detail }))));
    match identity.user() {
        Err(_) => refuse(StatusCode::UNAUTHORIZED, "an admin API key is required"),
        Ok(Some(caller)) if caller.role != Role::Admin => {
            refuse(StatusCode::FORBIDDEN, "this API key is not an admin key")
        }
        Ok(caller) => Ok(caller),
    }
}

/// What the server has loaded: name, kind, version, description, origin.
#[utoipa::path(get, path = "/admin/plugins", tag = "operations",
    responses(
        (status = 200, description = "`{\"plugins\": [...]}`", body = Value),
        (status = 401, description = "No admin key (keyed mode)", body = DetailBody),
        (status = 403, description = "Not an admin key", body = DetailBody),
    ))]
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
#[utoipa::path(post, path = "/admin/plugins/reload", tag = "operations",
    responses(
        (status = 200, description = "`loaded` and `refused` files", body = Value),
        (status = 401, description = "No admin key (keyed mode)", body = DetailBody),
        (status = 403, description = "Not an admin key", body = DetailBody),
    ))]
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

/// Live tasks and MCP sessions, to see leaks.
#[utoipa::path(get, path = "/admin/stats", tag = "operations",
    responses(
        (status = 200, description = "`tasks` and `mcp_sessions`", body = Value),
        (status = 401, description = "No admin key (keyed mode)", body = DetailBody),
        (status = 403, description = "Not an admin key", body = DetailBody),
    ))]
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

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UsageParams {
    /// Inclusive: a date (`2026-01-31`) or an RFC 3339 timestamp.
    from: Option<String>,
    /// Exclusive, but a date includes its whole day (UTC).
    to: Option<String>,
    /// Comma-separated: `org`, `key`, `provider`, `model`, `day`.
    group_by: Option<String>,
}

/// Tokens the providers reported for the caller's org, summed.
#[utoipa::path(get, path = "/admin/usage", tag = "operations", params(UsageParams),
    responses(
        (status = 200, description = "`rows` by `group_by`, and the `total`", body = Value),
        (status = 400, description = "A parameter cannot be read", body = DetailBody),
        (status = 401, description = "No admin key (keyed mode)", body = DetailBody),
        (status = 403, description = "Not an admin key", body = DetailBody),
    ))]
async fn usage(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    Query(params): Query<UsageParams>,
) -> Result<Json<Value>, Refusal> {
    let caller = admin(identity)?;
    let refuse = |status, detail: String| (status, Json(json!({ "detail": detail })));
    let query = UsageQuery::parse(
        params.from.as_deref(),
        params.to.as_deref(),
        params.group_by.as_deref(),
    )
    .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    let org = caller.map(|c| c.org).unwrap_or_default();
    let group_by: Vec<&str> = query.group_by.iter().map(|c| column_name(*c)).collect();
    let (from, to) = (query.from.clone(), query.to.clone());
    let report = state.usage.report(&org, query).await.map_err(|e| {
        let status = if e.is_unavailable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        refuse(status, format!("cannot read usage: {e}"))
    })?;
    let counts = |row: &crate::usage::UsageRow| {
        json!({ "requests": row.requests, "input_tokens": row.input_tokens,
                "output_tokens": row.output_tokens, "total_tokens": row.input_tokens + row.output_tokens })
    };
    let rows: Vec<Value> = report
        .rows
        .iter()
        .map(|row| {
            let mut entry = counts(row);
            for (name, value) in group_by.iter().zip(&row.group) {
                entry[*name] = json!(value);
            }
            entry
        })
        .collect();
    Ok(Json(json!({
        "org": org, "from": from, "to": to, "group_by": group_by,
        "rows": rows, "total": counts(&report.total),
    })))
}
