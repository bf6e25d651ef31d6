//! Runs, for every streaming surface: `GET /runs/{id}` (how it stands),
//! `GET /runs/{id}/events` (what it sent after the event a client saw
//! last, then the rest as it comes), `POST /runs/{id}/cancel` and
//! `POST /runs/{id}/approvals/{call_id}`.
//!
//! A run is visible to its org only (every key of it; the local user in
//! local mode); another org's run is not found. Errors are
//! `{"detail": "..."}`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::parse_json;
use super::{AppState, Detail, DetailBody, RUN_ID_HEADER};
use crate::auth::{Identity, Principal};
use crate::chat::{Approval, ApprovalRefusal, CancelRefusal, Run, RunView};

/// Longest `POST /runs/{id}/cancel` waits for the run to stop before it
/// answers with the run as it stands.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::default()
        .routes(routes!(show))
        .routes(routes!(events))
        .routes(routes!(cancel))
        .routes(routes!(approve))
}

/// A person's answer to a tool call's approval request.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ApprovalBody {
    /// `true` runs the call; `false` gives the model an error result.
    approve: bool,
    /// Why, for the model when the call is refused.
    reason: Option<String>,
}

/// Answers a tool call's approval request (`approval_request` in the
/// stream): approved, the call runs; refused, the model gets an error
/// result saying so, with the reason, and the chat goes on.
#[utoipa::path(post, path = "/runs/{id}/approvals/{call_id}", tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
        ("call_id" = String, Path, description = "The tool call's id, from the approval request"),
    ),
    request_body = ApprovalBody,
    responses(
        (status = 200, description = "The run, after the answer", body = RunView),
        (status = 400, description = "The body is not `{\"approve\": true|false, \"reason\"?: \"...\"}`", body = DetailBody),
        (status = 403, description = "A viewer key approving a tool that writes", body = DetailBody),
        (status = 404, description = "No such run in the caller's org", body = DetailBody),
        (status = 409, description = "The run is not waiting for this call's approval", body = DetailBody),
    ))]
async fn approve(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    Path((id, call_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<RunView>, Detail> {
    let user = identity.user()?;
    let run = find(&state, &user, &id)?;
    let body: ApprovalBody =
        parse_json(&body).map_err(|e| Detail(StatusCode::BAD_REQUEST, e.message()))?;
    let approval = match body.approve {
        true => Approval::Approved,
        false => Approval::Refused {
            reason: body.reason.filter(|r| !r.trim().is_empty()),
        },
    };
    run.approve(&user, &call_id, approval).map_err(|refusal| {
        let status = match refusal {
            ApprovalRefusal::Viewer => StatusCode::FORBIDDEN,
            ApprovalRefusal::NotWaiting { .. } => StatusCode::CONFLICT,
        };
        Detail(status, refusal.to_string())
    })?;
    Ok(Json(run.view()))
}

/// How a run stands.
#[utoipa::path(get, path = "/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "The run's id, from `x-agenthost-run-id`")),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 404, description = "No such run in the caller's org, or no longer kept", body = DetailBody),
    ))]
async fn show(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<RunView>, Detail> {
    Ok(Json(find(&state, &identity.user()?, &id)?.view()))
}

/// The run's events after the one `Last-Event-ID` (or `?after=N`) names,
/// in the format the run started with, then each as it comes until the
/// run ends. Without either, all of them.
#[utoipa::path(get, path = "/runs/{id}/events", tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
        ("after" = Option<usize>, Query, description = "The number of the last event received; `Last-Event-ID` says the same"),
    ),
    responses(
        (status = 200, description = "The events, as the run's stream sent them", content_type = "text/event-stream"),
        (status = 400, description = "`Last-Event-ID` or `after` is not an event number", body = DetailBody),
        (status = 404, description = "No such run in the caller's org, or no longer kept", body = DetailBody),
    ))]
async fn events(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Detail> {
    let run = find(&state, &identity.user()?, &id)?;
    let after = last_seen(&headers, query.as_deref())?;
    let content_type = HeaderValue::try_from(run.content_type.as_str())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let run_id = HeaderValue::try_from(run.id.as_str()).ok();
    let body = run.events_after(after).map(Ok::<_, std::io::Error>);
    let mut response = Response::new(Body::from_stream(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(run_id) = run_id {
        response
            .headers_mut()
            .insert(HeaderName::from_static(RUN_ID_HEADER), run_id);
    }
    Ok(response)
}

/// Stops a running run: its chat, provider request and tool calls. The
/// stream, if a client still reads it, ends with an error event saying
/// so. Answers once the run has stopped (or after 5 s, running).
#[utoipa::path(post, path = "/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run, cancelled", body = RunView),
        (status = 403, description = "A viewer key, and another key's run", body = DetailBody),
        (status = 404, description = "No such run in the caller's org, or no longer kept", body = DetailBody),
        (status = 409, description = "The run has already ended", body = DetailBody),
    ))]
async fn cancel(
    State(state): State<Arc<AppState>>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<RunView>, Detail> {
    let user = identity.user()?;
    let run = find(&state, &user, &id)?;
    run.cancel(&user).map_err(|refusal| {
        let status = match refusal {
            CancelRefusal::Viewer => StatusCode::FORBIDDEN,
            CancelRefusal::Ended(_) => StatusCode::CONFLICT,
        };
        Detail(status, refusal.to_string())
    })?;
    run.ended(CANCEL_WAIT).await;
    Ok(Json(run.view()))
}

fn find(state: &AppState, user: &Option<Principal>, id: &str) -> Result<Arc<Run>, Detail> {
    state.chat.runs.get(user, id).ok_or_else(|| {
        Detail(
            StatusCode::NOT_FOUND,
            format!("run `{id}` not found: it belongs to another org, or ended (a run is kept after its end only if its client left before it, for `agent.run_retention_secs`), or runs on another replica"),
        )
    })
}

/// The number of the last event the client has, from `Last-Event-ID` or
/// `?after=`; 0 when neither is given.
fn last_seen(headers: &HeaderMap, query: Option<&str>) -> Result<usize, Detail> {
    let from_query = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("after="));
    let (name, value) = match headers.get("last-event-id") {
        Some(value) => ("Last-Event-ID", value.to_str().unwrap_or("").trim()),
        None => match from_query {
            Some(value) => ("after", value),
            None => return Ok(0),
        },
    };
    value.parse().map_err(|_| {
        Detail(
            StatusCode::BAD_REQUEST,
            format!(
                "{name} must be the number of an event the run sent (0 or more), not `{value}`"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_wins_over_after_and_either_must_be_a_number() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_seen(&headers, None).ok(), Some(0));
        assert_eq!(last_seen(&headers, Some("x=1&after=7")).ok(), Some(7));
        headers.insert("last-event-id", HeaderValue::from_static(" 3 "));
        assert_eq!(last_seen(&headers, Some("after=7")).ok(), Some(3));
        headers.insert("last-event-id", HeaderValue::from_static("abc"));
        let Err(Detail(status, message)) = last_seen(&headers, None) else {
            panic!("a word is not an event number");
        };
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.starts_with("Last-Event-ID must be"), "{message}");
    }
}
