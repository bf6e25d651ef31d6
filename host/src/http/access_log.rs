//! One line per request, written when its answer has been sent (for a
//! stream, when it ends or the client leaves): method, route, status,
//! duration and the caller's org. Never a key, a query string or a body:
//! the route is the pattern that matched (`/sessions/{session_id}`), not
//! the path.
//!
//! The caller is identified here, once, and handed to the handlers in the
//! request's extensions.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

use super::AppState;
use super::caller::identify;
use crate::auth::Identity;

/// Probes come every few seconds; their lines are for debugging.
const PROBES: [&str; 2] = ["/healthz", "/readyz"];

pub async fn log_request(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let identity = identify(&state, request.headers());
    let org = match &identity {
        Identity::Key(principal) => Some(principal.org.clone()),
        Identity::Local | Identity::Refused(_) => None,
    };
    request.extensions_mut().insert(identity);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let response = next.run(request).await;
    let line = AccessLine {
        method,
        route,
        status: response.status(),
        org,
        started,
    };
    response.map(|body| {
        Body::new(Logged {
            body,
            line: Some(line),
        })
    })
}

struct AccessLine {
    method: Method,
    route: Option<String>,
    status: StatusCode,
    org: Option<String>,
    started: Instant,
}

impl AccessLine {
    fn write(self) {
        let route = self.route.as_deref().unwrap_or("(no route)");
        let duration_ms = (self.started.elapsed().as_secs_f64() * 1e4).round() / 10.0;
        let org = self.org.as_deref().unwrap_or("-");
        let status = self.status.as_u16();
        crate::metrics::request_answered(self.method.as_str(), route, status);
        if PROBES.contains(&route) {
            tracing::debug!(target: "agenthost::access", method = %self.method, route, status, duration_ms, org, "request");
        } else {
            tracing::info!(target: "agenthost::access", method = %self.method, route, status, duration_ms, org, "request");
        }
    }
}

/// A response body that writes its request's line when dropped: after
/// its last frame was sent, or when the client went away.
struct Logged {
    body: Body,
    line: Option<AccessLine>,
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            line.write();
        }
    }
}
