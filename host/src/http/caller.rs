//! Who is calling, for every route: the one place a request's key is read.
//!
//! The key comes from `Authorization: Bearer <key>` or `x-api-key`. The
//! extractor never refuses; each surface decides what a route needs and
//! words the refusal in its own contract's shape.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::AppState;
use crate::auth::Identity;

impl FromRequestParts<Arc<AppState>> for Identity {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Identity, Infallible> {
        // The access log identified the caller already.
        if let Some(identity) = parts.extensions.get::<Identity>() {
            return Ok(identity.clone());
        }
        Ok(identify(state, &parts.headers))
    }
}

/// The caller named by a request's headers.
pub fn identify(state: &AppState, headers: &HeaderMap) -> Identity {
    // A header that is not text can name no key; it still counts as sent.
    let header = |name| headers.get(name).map(|v| v.to_str().unwrap_or_default());
    state
        .keys
        .identify(header("authorization"), header("x-api-key"))
}
