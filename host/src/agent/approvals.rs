//! Tool calls that wait for a person (`require_approval`).
//!
//! The agent announces the call with an approval request event, asks the
//! chat's [`Approver`] (its run, which `POST /runs/{id}/approvals/{call}`
//! answers), and waits up to `agent.approval_timeout_secs`. Refused or
//! unanswered, the call does not run and the model reads why.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{ChatEvent, send};
use crate::plugins::ToolCallReady;

/// A person's answer to an approval request.
#[derive(Debug)]
pub enum Approval {
    Approved,
    Refused { reason: Option<String> },
}

/// Where a chat's calls that need approval wait for one.
pub trait Approver: Send + Sync {
    /// Registers the request; the answer comes on the receiver, which the
    /// agent drops when it stops waiting. `read_only` says whether the
    /// tool only reads, which decides who may approve it.
    fn ask(&self, call: &ToolCallReady, read_only: bool) -> oneshot::Receiver<Approval>;
}

/// Announces the call as waiting for approval and waits for the answer:
/// `Ok` when it may run, otherwise why not, for its error result.
pub(super) async fn gate(
    approver: Option<&dyn Approver>,
    events: &mpsc::Sender<Vec<ChatEvent>>,
    call: ToolCallReady,
    read_only: bool,
    limit: Duration,
) -> Result<(), String> {
    send(events, vec![ChatEvent::ApprovalRequest(call.clone())]).await;
    let Some(approver) = approver else {
        return Err(
            "this tool call needs a person's approval, which only a streamed chat can ask for"
                .into(),
        );
    };
    match tokio::time::timeout(limit, approver.ask(&call, read_only)).await {
        Ok(Ok(Approval::Approved)) => Ok(()),
        Ok(Ok(Approval::Refused {
            reason: Some(reason),
        })) => Err(format!("the user refused this tool call: {reason}")),
        Ok(Ok(Approval::Refused { reason: None })) => Err("the user refused this tool call".into()),
        Ok(Err(_)) => Err("the tool call's approval request was withdrawn".into()),
        Err(_) => Err(format!(
            "no one approved this tool call within {} s",
            limit.as_secs_f64()
        )),
    }
}
