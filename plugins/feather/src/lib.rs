//! The Feather MCP chat stream (seed 000): named SSE events `text_delta`,
//! `tool_call`, `tool_result`, `turn_end`, `done` and `error`, each with a
//! JSON object as its data:
//!
//! ```text
//! event: text_delta   data: {"text": "..."}
//! event: tool_call    data: {"id": "...", "name": "...", "input": {...}}
//! event: approval_request data: {"run_id": "...", "id": "...", "name": "...", "input": {...}}
//! event: tool_result  data: {"id": "...", "name": "...", "result": "<JSON text>"}
//!                  or data: {"id": "...", "name": "...", "error": "<message>"}
//! event: turn_end     data: {"turn": 1, "stop_reason": "tool_use"}
//! event: done         data: {"turns": 2}
//! event: error        data: {"message": "..."}
//! ```
//!
//! Tool input and results pass through as the host hands them over:
//! `input` is the model's JSON object and `result` the MCP `tools/call`
//! result as a JSON string. `error` is always a message, whether the server
//! answered with an error result (its text) or the host failed the call.

use agenthost_plugin::json::write_str;
use agenthost_plugin::tool_result;
use agenthost_plugin::types::{ChatEvent, FinishReason, StreamOptions};
use agenthost_plugin::{Encoder, export_encoder};

pub struct Feather {
    turns: u32,
    /// The run's id, which an approval names.
    run_id: String,
}

impl Encoder for Feather {
    const NAME: &'static str = "feather";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Feather MCP chat SSE: text_delta, tool_call, tool_result, turn_end, done, error";
    const HEADERS: &'static [(&'static str, &'static str)] =
        &[("cache-control", "no-cache"), ("x-accel-buffering", "no")];

    fn new(options: StreamOptions) -> Self {
        Feather {
            turns: 0,
            run_id: options.response_id,
        }
    }

    fn encode(&mut self, events: Vec<ChatEvent>, out: &mut String) {
        for event in events {
            match event {
                ChatEvent::TextDelta(text) => {
                    out.push_str("event: text_delta\ndata: {\"text\":");
                    write_str(out, &text);
                }
                ChatEvent::ToolCall(ready) => {
                    out.push_str("event: tool_call\ndata: {\"id\":");
                    write_str(out, &ready.call.id);
                    out.push_str(",\"name\":");
                    write_str(out, &ready.call.name);
                    out.push_str(",\"input\":");
                    out.push_str(&ready.arguments);
                }
                ChatEvent::ApprovalRequest(ready) => {
                    out.push_str("event: approval_request\ndata: {\"run_id\":");
                    write_str(out, &self.run_id);
                    out.push_str(",\"id\":");
                    write_str(out, &ready.call.id);
                    out.push_str(",\"name\":");
                    write_str(out, &ready.call.name);
                    out.push_str(",\"input\":");
                    out.push_str(&ready.arguments);
                }
                ChatEvent::ToolResult(result) => {
                    out.push_str("event: tool_result\ndata: {\"id\":");
                    write_str(out, &result.call.id);
                    out.push_str(",\"name\":");
                    write_str(out, &result.call.name);
                    if result.is_error {
                        out.push_str(",\"error\":");
                        write_str(out, &tool_result::text(&result.content));
                    } else {
                        out.push_str(",\"result\":");
                        write_str(out, &result.content);
                    }
                }
                ChatEvent::TurnEnd(end) => {
                    self.turns = end.iteration;
                    out.push_str("event: turn_end\ndata: {\"turn\":");
                    out.push_str(&end.iteration.to_string());
                    out.push_str(",\"stop_reason\":\"");
                    out.push_str(match end.reason {
                        FinishReason::Stop => "end_turn",
                        FinishReason::ToolCalls => "tool_use",
                        FinishReason::Length => "max_tokens",
                        FinishReason::ContentFilter => "refusal",
                    });
                    out.push('"');
                }
                ChatEvent::Done => {
                    out.push_str("event: done\ndata: {\"turns\":");
                    out.push_str(&self.turns.to_string());
                }
                ChatEvent::Error(message) => {
                    out.push_str("event: error\ndata: {\"message\":");
                    write_str(out, &message);
                }
                ChatEvent::ResponseInfo(_)
                | ChatEvent::ToolCallStart(_)
                | ChatEvent::ToolCallArgsDelta(_) => continue,
            }
            out.push_str("}\n\n");
        }
    }
}

export_encoder!(Feather);
