//! Folding an event stream into one response, for non-streaming endpoints.

use serde_json::Value;

use super::ChatRun;
use crate::plugins::ChatEvent;

#[derive(Debug, Clone)]
pub struct ToolCallOutcome {
    pub id: String,
    /// The tool's name on its MCP server.
    pub tool: String,
    pub arguments: Value,
    /// What the tool returned, or why it failed, as text.
    pub result: String,
}

#[derive(Debug, Clone, Default)]
pub struct ChatOutcome {
    /// The final turn's text: the answer, without intermediate reasoning.
    pub text: String,
    pub tool_calls: Vec<ToolCallOutcome>,
    pub iterations: u32,
    /// Set when the chat failed.
    pub error: Option<String>,
}

/// Runs the chat to its end.
pub async fn collect(run: &mut ChatRun) -> ChatOutcome {
    let mut outcome = ChatOutcome::default();
    let mut turn_text = String::new();
    while let Some(batch) = run.next().await {
        for event in batch {
            match event {
                ChatEvent::TextDelta(text) => turn_text.push_str(&text),
                ChatEvent::ToolCall(ready) => outcome.tool_calls.push(ToolCallOutcome {
                    id: ready.call.id,
                    tool: ready.call.tool,
                    arguments: serde_json::from_str(&ready.arguments).unwrap_or(Value::Null),
                    result: String::new(),
                }),
                ChatEvent::ToolResult(result) => {
                    if let Some(call) = outcome
                        .tool_calls
                        .iter_mut()
                        .find(|c| c.id == result.call.id)
                    {
                        call.result = result_text(&result.content);
                    }
                }
                ChatEvent::TurnEnd(end) => {
                    outcome.iterations = end.iteration;
                    outcome.text = std::mem::take(&mut turn_text);
                }
                ChatEvent::Error(message) => outcome.error = Some(message),
                ChatEvent::ResponseInfo(_)
                | ChatEvent::ToolCallStart(_)
                | ChatEvent::ToolCallArgsDelta(_)
                | ChatEvent::ApprovalRequest(_)
                | ChatEvent::Done => {}
            }
        }
    }
    outcome
}

/// The text of an MCP result, or the error message it carries.
fn result_text(content: &str) -> String {
    match serde_json::from_str::<rmcp::model::CallToolResult>(content) {
        Ok(result) => crate::mcp::result_text(&result),
        Err(_) => match serde_json::from_str::<Value>(content) {
            Ok(Value::String(message)) => message,
            _ => content.to_owned(),
        },
    }
}
