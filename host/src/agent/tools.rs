//! Executing a turn's tool calls through the MCP pool.

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::turn::PendingCall;
use super::{Agent, Approver, ChatEvent, Message, Role, approvals, send};
use crate::auth::Caller;
use crate::config::seconds;
use crate::mcp::{self, ToolSet};
use crate::plugins::{ToolCallReady, ToolResult};

/// A call the model made, with its arguments parsed (or why they are not
/// usable), announced to the client before it runs.
pub(super) struct ReadyCall {
    call: PendingCall,
    arguments: Result<Map<String, Value>, String>,
    /// The arguments as the client was shown them.
    shown: String,
}

/// Parses a turn's calls, with the events that announce them: they go
/// out when the model has decided, before its turn ends.
pub(super) fn ready_calls(calls: Vec<PendingCall>) -> (Vec<ReadyCall>, Vec<ChatEvent>) {
    let mut ready = Vec::with_capacity(calls.len());
    let mut announced = Vec::with_capacity(calls.len() + 1);
    for call in calls {
        let arguments = parse_arguments(&call.arguments);
        // Valid arguments pass through exactly as the model wrote them.
        let shown = match &arguments {
            Ok(args) if args.is_empty() => "{}".to_owned(),
            Ok(_) => call.arguments.trim().to_owned(),
            Err(_) => "{}".to_owned(),
        };
        announced.push(ChatEvent::ToolCall(ToolCallReady {
            call: call.info.clone(),
            arguments: shown.clone(),
        }));
        ready.push(ReadyCall {
            call,
            arguments,
            shown,
        });
    }
    (ready, announced)
}

impl Agent {
    /// Executes a turn's tool calls concurrently, reporting results in the
    /// order the model made the calls.
    pub(super) async fn execute_calls(
        &self,
        calls: Vec<ReadyCall>,
        tools: &ToolSet,
        caller: &Caller,
        approver: Option<&dyn Approver>,
        events: &mpsc::Sender<Vec<ChatEvent>>,
    ) -> Vec<Message> {
        let mut running: FuturesOrdered<_> = calls
            .into_iter()
            .map(|ready| self.execute(ready, tools, caller, approver, events))
            .collect();
        let mut messages = Vec::new();
        while let Some((result, model_text)) = running.next().await {
            messages.push(Message {
                role: Role::Tool,
                content: model_text,
                tool_calls: Vec::new(),
                tool_call_id: Some(result.call.id.clone()),
            });
            send(events, vec![ChatEvent::ToolResult(result)]).await;
        }
        messages
    }

    /// One tool call, once approved where it must be; failures become
    /// error results the model can read.
    async fn execute(
        &self,
        ready: ReadyCall,
        tools: &ToolSet,
        caller: &Caller,
        approver: Option<&dyn Approver>,
        events: &mpsc::Sender<Vec<ChatEvent>>,
    ) -> (ToolResult, String) {
        let ReadyCall {
            call,
            arguments,
            shown,
        } = ready;
        let outcome = match (arguments, tools.find(&call.info.name)) {
            (Err(e), _) => Err(e),
            (_, None) => Err(format!(
                "unknown tool `{}`: it is not among the tools offered",
                call.info.name
            )),
            (Ok(args), Some(binding)) => {
                async {
                    if binding.needs_approval {
                        let asked = ToolCallReady {
                            call: call.info.clone(),
                            arguments: shown,
                        };
                        let limit = seconds(self.config.approval_timeout_secs);
                        approvals::gate(approver, events, asked, binding.read_only, limit).await?;
                    }
                    self.dispatcher
                        .call(binding, args, caller, None)
                        .await
                        .map_err(|e| e.to_string())
                }
                .await
            }
        };
        match outcome {
            Ok(result) => {
                let text = mcp::result_text(&result);
                let result_json = serde_json::to_string(&result).unwrap_or_default();
                let is_error = result.is_error == Some(true);
                (
                    ToolResult {
                        call: call.info,
                        content: result_json,
                        is_error,
                    },
                    text,
                )
            }
            Err(message) => {
                let content = Value::String(message.clone()).to_string();
                (
                    ToolResult {
                        call: call.info,
                        content,
                        is_error: true,
                    },
                    format!("Error: {message}"),
                )
            }
        }
    }
}

/// Arguments must be a JSON object; empty means none.
fn parse_arguments(text: &str) -> Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the model's tool arguments are not a JSON object".into()),
        Err(e) => Err(format!(
            "the model's tool arguments are not valid JSON: {e}"
        )),
    }
}
