//! `GET /metrics`: the Prometheus text exposition of [`crate::metrics`].
//!
//! An admin key is needed in keyed mode, as for the other operator
//! routes, unless `[telemetry] metrics_public` opens it to a scraper
//! that carries none.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin::require_admin;
use super::{AppState, DetailBody};
use crate::auth::Identity;

/// The exposition format's media type, version 0.0.4.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default().routes(routes!(metrics))
}

/// Counters, gauges and histograms in Prometheus's text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "The exposition, version 0.0.4", content_type = "text/plain", body = String),
        (status = 401, description = "No admin key (keyed mode, unless `metrics_public`)", body = DetailBody),
        (status = 403, description = "Not an admin key", body = DetailBody),
    ))]
async fn metrics(State(state): State<Arc<AppState>>, identity: Identity) -> Response {
    if !state.metrics_public
        && let Err(refusal) = require_admin(identity)
    {
        return refusal.into_response();
    }
    state.registry.record_up().await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, TEXT_FORMAT)],
        state.metrics.render(),
    )
        .into_response()
}
