//! Mapping between stored history rows and the agent's messages.

use serde_json::{Value, json};

use super::{StoredMessage, now};
use crate::plugins::{Message, Role, ToolCall};

impl StoredMessage {
    /// A user's message, stamped now.
    pub fn user(content: String) -> StoredMessage {
        StoredMessage {
            role: "user".into(),
            content,
            name: None,
            tool_call_id: None,
            tool_calls: None,
            timestamp: now(),
        }
    }

    /// The message as the agent loop takes it.
    pub fn to_message(&self) -> Message {
        let role = match self.role.as_str() {
            "system" => Role::System,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            _ => Role::User,
        };
        let tool_calls = self
            .tool_calls
            .as_ref()
            .and_then(Value::as_array)
            .map(|calls| {
                calls
                    .iter()
                    .map(|c| ToolCall {
                        id: c["id"].as_str().unwrap_or_default().to_owned(),
                        name: c["name"].as_str().unwrap_or_default().to_owned(),
                        arguments: c["arguments"].as_str().unwrap_or("{}").to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Message {
            role,
            content: self.content.clone(),
            tool_calls,
            tool_call_id: self.tool_call_id.clone(),
        }
    }

    /// The messages one chat added, ready to store. Tool messages are
    /// named by the full tool name of the call they answer.
    pub fn from_exchange(added: &[Message]) -> Vec<StoredMessage> {
        let timestamp = now();
        added
            .iter()
            .map(|m| {
                let (role, name, tool_calls) =
                    match m.role {
                        Role::Assistant => {
                            let calls: Vec<Value> = m
                        .tool_calls
                        .iter()
                        .map(|c| json!({ "id": c.id, "name": c.name, "arguments": c.arguments }))
                        .collect();
                            (
                                "assistant",
                                None,
                                (!calls.is_empty()).then_some(Value::Array(calls)),
                            )
                        }
                        Role::Tool => {
                            let name = added
                                .iter()
                                .flat_map(|a| &a.tool_calls)
                                .find(|c| Some(&c.id) == m.tool_call_id.as_ref())
                                .map(|c| c.name.clone());
                            ("tool", name, None)
                        }
                        Role::System => ("system", None, None),
                        Role::User => ("user", None, None),
                    };
                StoredMessage {
                    role: role.into(),
                    content: m.content.clone(),
                    name,
                    tool_call_id: m.tool_call_id.clone(),
                    tool_calls,
                    timestamp: timestamp.clone(),
                }
            })
            .collect()
    }
}
