//! A run's tool calls that wait for a person's approval: what
//! `GET /runs/{id}` lists, and what `POST /runs/{id}/approvals/{call_id}`
//! answers.

use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::oneshot;

use super::lock;
use crate::agent::Approval;
use crate::auth::{Principal, Role};
use crate::plugins::ToolCallReady;

/// A tool call a run waits to have approved, as `GET /runs/{id}` shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WaitingFor {
    /// `approval`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub call_id: String,
    pub server: String,
    pub tool: String,
    /// The call's arguments, as the model gave them.
    pub arguments: Value,
}

/// Why an approval is not taken.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalRefusal {
    #[error("a viewer key may not approve a call of a tool that writes")]
    Viewer,
    #[error("run `{run}` is not waiting for an approval of call `{call}`")]
    NotWaiting { run: String, call: String },
}

/// The requests a run's chat waits on.
#[derive(Default)]
pub(super) struct Approvals {
    pending: Mutex<Vec<Pending>>,
}

struct Pending {
    call: ToolCallReady,
    read_only: bool,
    answer: oneshot::Sender<Approval>,
}

impl Approvals {
    /// Registers a request; its answer comes on the receiver.
    pub(super) fn ask(&self, call: &ToolCallReady, read_only: bool) -> oneshot::Receiver<Approval> {
        let (answer, answered) = oneshot::channel();
        lock(&self.pending).push(Pending {
            call: call.clone(),
            read_only,
            answer,
        });
        answered
    }

    pub(super) fn waiting_for(&self) -> Vec<WaitingFor> {
        self.open()
            .iter()
            .map(|pending| WaitingFor {
                kind: "approval",
                call_id: pending.call.call.id.clone(),
                server: pending.call.call.server.clone(),
                tool: pending.call.call.tool.clone(),
                arguments: serde_json::from_str(&pending.call.arguments).unwrap_or(Value::Null),
            })
            .collect()
    }

    /// Answers run `run`'s request for tool call `call_id`.
    pub(super) fn answer(
        &self,
        run: &str,
        user: &Option<Principal>,
        call_id: &str,
        approval: Approval,
    ) -> Result<(), ApprovalRefusal> {
        let mut pending = self.open();
        let Some(at) = pending.iter().position(|p| p.call.call.id == call_id) else {
            return Err(ApprovalRefusal::NotWaiting {
                run: run.to_owned(),
                call: call_id.to_owned(),
            });
        };
        let viewer = user.as_ref().is_some_and(|p| p.role == Role::Viewer);
        if viewer && !pending[at].read_only && matches!(approval, Approval::Approved) {
            return Err(ApprovalRefusal::Viewer);
        }
        // The chat may stop waiting at this very moment; then the answer
        // is simply not read.
        let _ = pending.swap_remove(at).answer.send(approval);
        Ok(())
    }

    /// The requests the chat still waits on.
    fn open(&self) -> MutexGuard<'_, Vec<Pending>> {
        let mut pending = lock(&self.pending);
        pending.retain(|p| !p.answer.is_closed());
        pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::ToolCallInfo;

    fn principal(role: Role) -> Option<Principal> {
        Some(Principal {
            org: "acme".into(),
            role,
            key_label: "k".into(),
        })
    }

    fn add_note_call() -> ToolCallReady {
        ToolCallReady {
            call: ToolCallInfo {
                id: "call_1".into(),
                name: "demo__add_note".into(),
                server: "demo".into(),
                tool: "add_note".into(),
            },
            arguments: r#"{"title": "t"}"#.into(),
        }
    }

    #[tokio::test]
    async fn a_call_waits_until_someone_in_the_org_may_approve_it() {
        let approvals = Approvals::default();
        let answered = approvals.ask(&add_note_call(), false);
        let waiting = approvals.waiting_for();
        assert_eq!(waiting[0].call_id, "call_1");
        assert_eq!(waiting[0].arguments["title"], "t");

        let viewer = principal(Role::Viewer);
        assert!(matches!(
            approvals.answer("r", &viewer, "call_1", Approval::Approved),
            Err(ApprovalRefusal::Viewer)
        ));
        assert!(matches!(
            approvals.answer("r", &viewer, "call_9", Approval::Approved),
            Err(ApprovalRefusal::NotWaiting { .. })
        ));
        let member = principal(Role::Member);
        assert!(
            approvals
                .answer("r", &member, "call_1", Approval::Approved)
                .is_ok()
        );
        assert!(matches!(answered.await, Ok(Approval::Approved)));
        assert!(approvals.waiting_for().is_empty());
    }

    #[test]
    fn a_request_the_chat_stopped_waiting_on_is_no_longer_listed() {
        let approvals = Approvals::default();
        drop(approvals.ask(&add_note_call(), true));
        assert!(approvals.waiting_for().is_empty());
        assert!(
            approvals
                .answer("r", &None, "call_1", Approval::Approved)
                .is_err()
        );
    }
}
