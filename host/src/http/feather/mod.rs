//! The Feather API (seeds 000 and 001): the MCP chat stream, org
//! connections to customer MCP servers with their test surface, and the
//! tool-call log. Every route takes an API key (`x-api-key`, or a Bearer
//! token for MCP clients that only know that); errors are
//! `{"error", "message"}`, validation errors FastAPI's.

mod chat;
mod integrations;
mod validation;

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;

use super::AppState;
use crate::auth::{Identity, KeyRefusal, Principal};
use crate::chat::END_USER_HEADER;
pub(super) use chat::FORMAT;
pub use validation::FeatherError;
use validation::{Validator, loc};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    chat::routes().merge(integrations::routes())
}

/// A request refused before its route, as an `ErrorResponse`.
pub fn refusal(status: StatusCode, message: String) -> FeatherError {
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "PayloadTooLargeError",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaTypeError",
        _ => "PermissionDeniedError",
    };
    FeatherError::new(status, error, message)
}

/// The caller, or the seed's 401 `ErrorResponse`.
pub fn authenticate(identity: Identity) -> Result<Principal, FeatherError> {
    identity.key().map_err(|why| {
        let message = match why {
            KeyRefusal::Missing => "missing API key: send it in the x-api-key header",
            KeyRefusal::NotBearer | KeyRefusal::Unknown => "invalid API key",
            KeyRefusal::NoKeys => why.message(),
        };
        FeatherError::new(StatusCode::UNAUTHORIZED, "AuthenticationError", message)
    })
}

/// The `x-end-user-id` header, which must be a UUID when present.
pub fn end_user_header(headers: &HeaderMap) -> Result<Option<String>, FeatherError> {
    let mut v = Validator::default();
    let id = end_user_id(headers, &mut v);
    v.finish()?;
    Ok(id)
}

/// The `x-end-user-id` header, checked as part of a request whose other
/// parts `v` also checks (FastAPI reports path, then header, then body).
pub fn end_user_id(headers: &HeaderMap, v: &mut Validator) -> Option<String> {
    let value = headers.get(END_USER_HEADER)?;
    let text = Value::from(value.to_str().unwrap_or_default());
    v.uuid(loc(&["header", END_USER_HEADER]), &text)
        .map(|id| id.to_string())
}
