//! Org connections to customer MCP servers (seed 001 and the CRUD around
//! it), and the tool-call log, under `/v1/integrations`.
//!
//! Every route needs an `x-api-key`; everything is scoped to the key's
//! org, so another org's connection is simply not found (404). Viewers
//! may read; changing connections takes a member or admin; the log is for
//! admins. The test surface is open to every role because the tool itself
//! enforces the role when it is called.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::validation::{
    ErrorResponse, FeatherError, HttpValidationError, Validator, at, json_body, loc,
};
use super::{AppState, authenticate, end_user_id};
use crate::auth::{Caller, Identity, Principal, Role};
use crate::chat::DispatchError;
use crate::connections::{ConnectionError, NewConnection};

const MAX_LOG_ROWS: u32 = 1000;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default()
        .routes(routes!(create, list))
        .routes(routes!(show, remove))
        .routes(routes!(set_enabled))
        .routes(routes!(test_mcp_call))
        .routes(routes!(tool_calls))
}

fn require(principal: &Principal, allowed: &[Role], what: &str) -> Result<(), FeatherError> {
    if allowed.contains(&principal.role) {
        return Ok(());
    }
    Err(FeatherError::new(
        StatusCode::FORBIDDEN,
        "PermissionDeniedError",
        format!(
            "{what} needs an {} API key; this one is a {} key",
            allowed
                .iter()
                .map(|r| r.name())
                .collect::<Vec<_>>()
                .join(" or "),
            principal.role.name()
        ),
    ))
}

/// The `connection_id` path segment, which must be a UUID.
fn connection_id(raw: &str, v: &mut Validator) -> String {
    v.uuid(loc(&["path", "connection_id"]), &Value::from(raw))
        .map(|id| id.to_string())
        .unwrap_or_default()
}

fn failure(error: ConnectionError) -> FeatherError {
    let (status, kind) = match &error {
        ConnectionError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFoundError"),
        ConnectionError::Duplicate(_) => (StatusCode::CONFLICT, "ConflictError"),
        ConnectionError::ToolUnavailable { .. } => {
            (StatusCode::BAD_REQUEST, "ToolUnavailableError")
        }
        ConnectionError::Invalid(_) | ConnectionError::Refused(_) => {
            (StatusCode::BAD_REQUEST, "BadRequestError")
        }
        ConnectionError::NoKey(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableError"),
        ConnectionError::Mcp(_) => (StatusCode::BAD_GATEWAY, "McpServerError"),
        ConnectionError::Store(e) if e.is_unavailable() => {
            (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableError")
        }
        ConnectionError::Crypto(_) | ConnectionError::Store(_) => {
            tracing::error!("connections: {error}");
            (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError")
        }
    };
    FeatherError::new(status, kind, error.to_string())
}

/// Connect the org to a customer's MCP server; its credentials are
/// sealed at rest and never shown again.
#[utoipa::path(post, operation_id = "create_connection", path = "/v1/integrations/connections", tag = "feather",
    request_body(content = Value, description = "Seed 001's `CreateConnectionRequest`: `name`, `server_id`, `url`, `auth` (`type` none, bearer or headers, with its credentials)"),
    responses(
        (status = 201, description = "The connection, without credentials, with its tools", body = Value),
        (status = 409, description = "The org already has a connection with this server_id", body = ErrorResponse),
        (status = 502, description = "The server cannot be reached", body = ErrorResponse),
        (status = 401, description = "No API key, or an unknown one", body = ErrorResponse),
        (status = 403, description = "The key's role may not do this", body = ErrorResponse),
        (status = 422, description = "What is invalid, field by field", body = HttpValidationError),
    ))]
async fn create(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    body: Bytes,
) -> Result<Response, FeatherError> {
    let principal = authenticate(identity)?;
    require(
        &principal,
        &[Role::Admin, Role::Member],
        "creating a connection",
    )?;
    let body = json_body(&body)?;
    let mut v = Validator::default();
    let Some(object) = v.model(loc(&["body"]), &body) else {
        return Err(v.into_error());
    };
    let name = v
        .required(object, loc(&["body"]), "name")
        .and_then(|n| v.string(loc(&["body", "name"]), n));
    let url = v
        .required(object, loc(&["body"]), "url")
        .and_then(|u| v.string(loc(&["body", "url"]), u));
    let mut header_values = BTreeMap::new();
    if let Some(headers) = object
        .get("headers")
        .and_then(|h| v.dict(loc(&["body", "headers"]), h))
    {
        for (header, value) in headers {
            if let Some(value) = v.string(at(loc(&["body", "headers"]), header.as_str()), value) {
                header_values.insert(header.clone(), value.to_owned());
            }
        }
    }
    let bearer_token = match object.get("bearer_token") {
        None | Some(Value::Null) => None,
        Some(token) => v
            .string(loc(&["body", "bearer_token"]), token)
            .map(str::to_owned),
    };
    v.no_extra(
        loc(&["body"]),
        object,
        &["name", "url", "headers", "bearer_token"],
    );
    let (name, url) = (name.map(str::to_owned), url.map(str::to_owned));
    v.finish()?;
    let new = NewConnection {
        name: name.unwrap_or_default(),
        url: url.unwrap_or_default(),
        headers: header_values,
        bearer_token,
    };
    let connection = state
        .connections
        .create(&principal.org, new)
        .await
        .map_err(failure)?;
    Ok((StatusCode::CREATED, Json(connection)).into_response())
}

/// The org's connections.
#[utoipa::path(get, operation_id = "list_connections", path = "/v1/integrations/connections", tag = "feather",
    responses(
        (status = 200, description = "`{\"connections\": [...]}`", body = Value),
        (status = 401, description = "No API key, or an unknown one", body = ErrorResponse),
        (status = 403, description = "The key's role may not do this", body = ErrorResponse),
        (status = 422, description = "What is invalid, field by field", body = HttpValidationError),
    ))]
async fn list(
    State(state): State<Arc<AppState>>,
    identity: Identity,
) -> Result<Json<Value>, FeatherError> {
    let principal = authenticate(identity)?;
    let connections = state
        .connections
        .list(&principal.org)
        .await
        .map_err(failure)?;
    Ok(Json(json!({ "connections": connections })))
}

/// One of the org's connections.
#[utoipa::path(get, operation_id = "get_connection", path = "/v1/integrations/connections/{connection_id}", tag = "feather",
    params(("connection_id" = String, Path, description = "The connection's UUID")),
    responses(
        (status = 200, description = "The connection and its tools", body = Value),
        (status = 404, description = "No such connection in the org", body = ErrorResponse),
        (status = 401, description = "No API key, or an unknown one", body = ErrorResponse),
        (status = 403, description = "The key's role may not do this", body = ErrorResponse),
        (status = 422, description = "What is invalid, field by field", body = HttpValidationError),
    ))]
async fn show(
    State(state): State<Arc<AppState>>,
    Path(raw_id): Path<String>,
    identity: Identity,
) -> Result<Json<Value>, FeatherError> {
    let principal = authenticate(identity)?;
    let mut v = Validator::default();
    let id = connection_id(&raw_id, &mut v);
    v.finish()?;
    let connection = state
        .connections
        .get(&principal.org, &id)
        .await
        .map_err(failure)?;
    Ok(Json(json!(connection)))
}

/// Delete one of the org's connections.
#[utoipa::path(delete, operation_id = "delete_connection", path = "/v1/integrations/connections/{connection_id}", tag = "feather",
    params(("connection_id" = String, Path, description = "The connection's UUID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such connection in the org", body = ErrorResponse),
        (status = 401, description = "No API key, or an unknown one", body = ErrorResponse),
        (status = 403, description = "The key's role may not do this", body = ErrorResponse),
        (status = 422, description = "What is invalid, field by field", body = HttpValidationError),
    ))]
async fn remove(
    State(state): State<Arc<AppState>>,
    Path(raw_id): Path<String>,
    identity: Identity,
) -> Result<StatusCode, FeatherError> {
    let principal = authenticate(identity)?;
    require(
        &principal,
        &[Role::Admin, Role::Member],
        "deleting a connection",
    )?;
    let mut v = Validator::default();
    let id = connection_id(&raw_id, &mut v);
    v.finish()?;
    state
        .connections
        .delete(&principal.org, &id)
        .await
        .map_err(failure)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enable or disable one of a connection's tools.
#[utoipa::path(patch, operation_id = "set_tool_enabled", path = "/v1/integrations/connections/{connection_id}/tools/{slug}", tag = "feather",
    params(("connection_id" = String, Path, description = "The connection's UUID"), ("slug" = String, Path, description = "The tool's slug")),
    request_body(content = Value, description = "`{\"enabled\": true | false}`"),
    responses(
        (status = 200, description = "The tool", body = Value),
        (status = 404, description = "No such connection or tool", body = ErrorResponse),
        (status = 401, description = "No API key, or an unknown one", body = ErrorResponse),
        (status = 403, description = "The key's role may not do this", body = ErrorResponse),
        (status = 422, description = "What is invalid, field by field", body = HttpValidationError),
    ))]
async fn set_enabled(
    State(state): State<Arc<AppState>>,
    Path((raw_id, slug)): Path<(String, String)>,
    identity: Identity,
    body: Bytes,
) -> Result<Json<Value>, FeatherError> {
    let principal = authenticate(identity)?;
    require(
        &principal,
        &[Role::Admin, Role::Member],
        "enabling or disabling tools",
    )?;
    let mut v = Validator::default();
    let id = connection_id(&raw_id, &mut v);
    let body = json_body(&body)?;
    let Some(object) = v.model(loc(&["body"]), &body) else {
        return Err(v.into_error());
    };
    let enabled = v.required(object, loc(&["body"]), "enabled").and_then(|e| {
        let flag = e.as_bool();
        if flag.is_none() {
            v.error(
                loc(&["body", "enabled"]),
                "bool_type",
                "Input should be a valid boolean",
                e,
                None,
            );
        }
        flag
    });
    v.no_extra(loc(&["body"]), object, &["enabled"]);
    v.finish()?;
    let connection = state
        .connections
        .set_tool_enabled(&principal.org, &id, &slug, enabled.unwrap_or(true))
        .await
        .map_err(failure)?;
    Ok(Json(json!(connection)))
}

/// Seed 001: resolve the slug, open the connection's MCP session with its
/// decrypted credentials, call the tool, return the raw result.
#[utoipa::path(post, path = "/v1/integrations/connections/{connection_id}/test-mcp-call", tag = "feather",
    params(("connection_id" = String, Path, description = "The connection's UUID")),
    request_body(content = Value, description = "Seed 001's test call: the tool's `slug` and its `arguments`"),
    responses(
        (status = 200, description = "The MCP `tools/call` result", body = Value),
        (status = 404, description = "No such connection", body = ErrorResponse),
        (status = 502, description = "The server failed", body = ErrorResponse),
        (status = 401, description = "No API key, or an unknown one", body = ErrorResponse),
        (status = 403, description = "The key's role may not do this", body = ErrorResponse),
        (status = 422, description = "What is invalid, field by field", body = HttpValidationError),
    ))]
async fn test_mcp_call(
    State(state): State<Arc<AppState>>,
    Path(raw_id): Path<String>,
    identity: Identity,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, FeatherError> {
    let principal = authenticate(identity)?;
    let mut v = Validator::default();
    let id = connection_id(&raw_id, &mut v);
    let end_user = end_user_id(&headers, &mut v);
    let body = json_body(&body)?;
    let Some(object) = v.model(loc(&["body"]), &body) else {
        return Err(v.into_error());
    };
    let slug = v
        .required(object, loc(&["body"]), "slug")
        .and_then(|s| v.string(loc(&["body", "slug"]), s))
        .map(str::to_owned);
    let input: Option<Map<String, Value>> = match object.get("input") {
        None => Some(Map::new()),
        Some(input) => v.dict(loc(&["body", "input"]), input).cloned(),
    };
    v.no_extra(loc(&["body"]), object, &["slug", "input"]);
    v.finish()?;
    let (slug, input) = (slug.unwrap_or_default(), input.unwrap_or_default());
    let binding = state
        .connections
        .resolve_slug(&principal.org, &id, &slug)
        .await
        .map_err(failure)?;
    let caller = Caller {
        principal: Some(principal),
        end_user,
        reason: "ui_mcp_test_call",
    };
    match state.chat.call_tool(&binding, input, &caller, None).await {
        Ok(result) => Ok(Json(json!({ "result": result }))),
        Err(denied @ DispatchError::Denied(_)) => Err(FeatherError::new(
            StatusCode::FORBIDDEN,
            "PermissionDeniedError",
            denied.to_string(),
        )),
        Err(DispatchError::Mcp(e)) => Err(failure(e.into())),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogQuery {
    /// Only this connection's calls (a UUID).
    connection_id: Option<String>,
    /// At most this many rows, 1 to 1000; 100 by default.
    limit: Option<String>,
}

/// The org's tool-call log, newest first (admins only).
#[utoipa::path(get, path = "/v1/integrations/tool-calls", tag = "feather", params(LogQuery),
    responses(
        (status = 200, description = "The calls", body = Value),
        (status = 401, description = "No API key, or an unknown one", body = ErrorResponse),
        (status = 403, description = "The key's role may not do this", body = ErrorResponse),
        (status = 422, description = "What is invalid, field by field", body = HttpValidationError),
    ))]
async fn tool_calls(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    Query(query): Query<LogQuery>,
) -> Result<Json<Value>, FeatherError> {
    let principal = authenticate(identity)?;
    require(&principal, &[Role::Admin], "reading the tool-call log")?;
    let mut v = Validator::default();
    let connection = query
        .connection_id
        .map(|raw| v.uuid(loc(&["query", "connection_id"]), &Value::from(raw)))
        .map(|id| id.map(|id| id.to_string()).unwrap_or_default());
    let limit = match query.limit {
        None => Some(100),
        Some(raw) => v.int_in(
            loc(&["query", "limit"]),
            &Value::from(raw),
            1,
            MAX_LOG_ROWS.into(),
        ),
    };
    v.finish()?;
    let rows = state
        .chat
        .tool_calls(&principal.org, connection, limit.unwrap_or(100) as u32)
        .await?;
    Ok(Json(json!({ "tool_calls": rows })))
}
