//! `GET /metrics`: the Prometheus text exposition of [`crate::metrics`].
//!
//! An admin key is needed in keyed mode, as for the other operator
//! routes, unless `[telemetry] metrics_public` opens it to a scraper
//! that carries none.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::admin::require_admin;
use crate::auth::Identity;

/// The exposition format's media type, version 0.0.4.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(metrics))
}

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
