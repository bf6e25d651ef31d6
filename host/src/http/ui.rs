//! `GET /ui`: a chat page for a person, embedded in the binary (no CDN,
//! no build step). It uses the public HTTP API only, like any client,
//! and asks for the key itself in keyed mode, so the page and its script
//! are served without one. The policy header lets the page talk to this
//! server and nowhere else.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default()
        .routes(routes!(page))
        .routes(routes!(script))
}

/// The chat page.
#[utoipa::path(get, path = "/ui", tag = "ui", security(()),
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
}

/// The chat page's script.
#[utoipa::path(get, path = "/ui/app.js", tag = "ui", security(()),
    responses((status = 200, description = "The script", content_type = "text/javascript", body = String)))]
async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        SCRIPT,
    )
}
