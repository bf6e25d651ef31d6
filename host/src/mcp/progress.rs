//! A tool call's progress, passed on from the server doing the work to
//! whoever asked for it.
//!
//! rmcp gives every request a progress token of its own, unique on its
//! session, so a server's reports are routed by that token: the caller's
//! own token (an `/mcp/` client's) never reaches the server, and one
//! caller never sees another's progress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CancelledNotificationParam,
    ClientRequest, ProgressNotificationParam, ProgressToken, RequestId, ServerResult,
};
use rmcp::service::PeerRequestOptions;
use rmcp::{Peer, RoleClient, ServiceError};
use tokio::sync::mpsc;

/// Reports one call may queue for its caller. More are dropped until the
/// caller catches up: progress is advisory, and a slow caller must not
/// make this host hold a server's flood.
const QUEUED_REPORTS: usize = 64;

/// How long a route stays open after its call's answer, for the reports
/// the server sent before it. Only calls that asked for progress wait.
const REPORTS_IN_FLIGHT: Duration = Duration::from_millis(10);

/// One report: how far a call is, of how much, and what it is doing.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub progress: f64,
    pub total: Option<f64>,
    pub message: Option<String>,
}

/// Where a call's reports go.
pub type ProgressSink = mpsc::Sender<Progress>;

/// A sink for one call's reports, and where its caller reads them.
pub fn channel() -> (ProgressSink, mpsc::Receiver<Progress>) {
    mpsc::channel(QUEUED_REPORTS)
}

/// The calls on one server session that asked for progress, by the
/// token their request carries.
#[derive(Clone, Default)]
pub struct ProgressRoutes {
    routes: Arc<Mutex<HashMap<ProgressToken, ProgressSink>>>,
}

impl ProgressRoutes {
    /// Sends the reports for `token` to `sink` until the route drops.
    fn open(&self, token: ProgressToken, sink: ProgressSink) -> Route {
        self.lock().insert(token.clone(), sink);
        Route {
            token,
            routes: self.clone(),
        }
    }

    /// Hands a server's report to its call's caller. A report for no call
    /// in flight (a late one, or one no caller asked for) is dropped.
    pub fn deliver(&self, report: ProgressNotificationParam) {
        let Some(sink) = self.lock().get(&report.progress_token).cloned() else {
            return;
        };
        let _ = sink.try_send(Progress {
            progress: report.progress,
            total: report.total,
            message: report.message,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProgressToken, ProgressSink>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A call's route for its reports; dropping it closes the route.
struct Route {
    token: ProgressToken,
    routes: ProgressRoutes,
}

impl Drop for Route {
    fn drop(&mut self) {
        self.routes.lock().remove(&self.token);
    }
}

/// Calls a tool as rmcp's `call_tool_once` does, its reports routed to
/// `sink`. The request's token is known only once it is sent, so this
/// sends it itself, and tells the server the call is abandoned if the
/// caller drops it.
pub async fn call_reporting(
    peer: &Peer<RoleClient>,
    routes: &ProgressRoutes,
    params: CallToolRequestParams,
    sink: ProgressSink,
) -> Result<CallToolResponse, ServiceError> {
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let handle = peer
        .send_request_with_option(request, PeerRequestOptions::no_options())
        .await?;
    let _route = routes.open(handle.progress_token.clone(), sink);
    let mut abandoned = Abandoned {
        peer: peer.clone(),
        id: Some(handle.id.clone()),
    };
    let answer = handle.await_response().await;
    abandoned.id = None;
    // rmcp hands each notification to a task of its own, so reports sent
    // just before the answer may still be on their way to the route.
    tokio::time::sleep(REPORTS_IN_FLIGHT).await;
    match answer? {
        ServerResult::CallToolResult(result) => Ok(CallToolResponse::Complete(result)),
        ServerResult::InputRequiredResult(result) => Ok(CallToolResponse::InputRequired(result)),
        ServerResult::CreateTaskResult(result) => Ok(CallToolResponse::Task(result)),
        _ => Err(ServiceError::UnexpectedResponse),
    }
}

/// A request whose answer nobody will read unless disarmed (its `id`
/// taken): dropping it sends the server `notifications/cancelled`.
struct Abandoned {
    peer: Peer<RoleClient>,
    id: Option<RequestId>,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        // Without a runtime (this process is stopping) the session goes too.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let peer = self.peer.clone();
        let reason = Some("request abandoned by the caller".to_owned());
        runtime.spawn(async move {
            let _ = peer
                .notify_cancelled(CancelledNotificationParam::new(Some(id), reason))
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(token: &ProgressToken, progress: f64) -> ProgressNotificationParam {
        ProgressNotificationParam::new(token.clone(), progress).with_total(100.0)
    }

    #[test]
    fn reports_reach_their_own_call_only_while_it_is_in_flight() {
        let routes = ProgressRoutes::default();
        let (first_sink, mut first) = channel();
        let (second_sink, mut second) = channel();
        let token = |n| ProgressToken(rmcp::model::NumberOrString::Number(n));
        let one = routes.open(token(1), first_sink);
        let two = routes.open(token(2), second_sink);

        routes.deliver(report(&one.token, 50.0));
        assert_eq!(first.try_recv().unwrap().progress, 50.0);
        assert!(second.try_recv().is_err());

        let token = one.token.clone();
        drop(one);
        routes.deliver(report(&token, 100.0));
        assert!(first.try_recv().is_err(), "a closed route takes nothing");
        drop(two);
        assert!(routes.lock().is_empty());
    }

    #[test]
    fn a_flood_of_reports_is_bounded() {
        let routes = ProgressRoutes::default();
        let (sink, mut reports) = channel();
        let route = routes.open(ProgressToken(rmcp::model::NumberOrString::Number(7)), sink);
        for n in 0..1000 {
            routes.deliver(report(&route.token, f64::from(n)));
        }
        let mut queued = 0;
        while reports.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, QUEUED_REPORTS);
    }
}
