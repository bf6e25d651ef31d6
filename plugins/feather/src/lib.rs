//! The Feather MCP chat stream (seed 000): named SSE events `text_delta`,
//! `tool_call`, `tool_result`, `turn_end`, `done` and `error`, each with a
//! JSON object as its data:
//!
//! ```text
//! event: text_delta   data: {"text": "..."}
//! event: tool_call    data: {"id": "...", "name": "...", "input": {...}}
//! event: tool_result  data: {"id": "...", "name": "...", "result": "<JSON text>"}
//!                  or data: {"id": "...", "name": "...", "error": "..."}
//! event: turn_end     data: {"turn": 1, "stop_reason": "tool_use"}
//! event: done         data: {"turns": 2}
//! event: error        data: {"message": "..."}
//! ```
//!
//! Tool input and results pass through as the host hands them over, never
//! parsed here: `input` is the model's JSON object and `result` the MCP
//! `tools/call` result as a JSON string.

use std::cell::Cell;

use agenthost_plugin::json::write_str;

wit_bindgen::generate!({ path: "../../wit", world: "encoder" });

use agenthost::plugin::types::{
    ChatEvent, EncoderInfo, FinishReason, PluginKind, PluginMetadata, StreamOptions,
};
use exports::agenthost::plugin::encoder_api::{Guest, GuestResponseStream};

struct Plugin;

impl Guest for Plugin {
    type ResponseStream = Stream;

    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "feather".into(),
            kind: PluginKind::Encoder,
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Feather MCP chat SSE: text_delta, tool_call, tool_result, turn_end, done, error"
                    .into(),
        }
    }

    fn info() -> EncoderInfo {
        EncoderInfo {
            content_type: "text/event-stream; charset=utf-8".into(),
            headers: vec![
                ("cache-control".into(), "no-cache".into()),
                ("x-accel-buffering".into(), "no".into()),
            ],
        }
    }
}

pub struct Stream {
    turns: Cell<u32>,
}

impl GuestResponseStream for Stream {
    fn new(_options: StreamOptions) -> Self {
        Stream {
            turns: Cell::new(0),
        }
    }

    fn encode(&self, events: Vec<ChatEvent>) -> Vec<u8> {
        let mut out = String::new();
        for event in events {
            match event {
                ChatEvent::TextDelta(text) => {
                    out.push_str("event: text_delta\ndata: {\"text\":");
                    write_str(&mut out, &text);
                }
                ChatEvent::ToolCall(ready) => {
                    out.push_str("event: tool_call\ndata: {\"id\":");
                    write_str(&mut out, &ready.call.id);
                    out.push_str(",\"name\":");
                    write_str(&mut out, &ready.call.name);
                    out.push_str(",\"input\":");
                    out.push_str(&ready.arguments);
                }
                ChatEvent::ToolResult(result) => {
                    out.push_str("event: tool_result\ndata: {\"id\":");
                    write_str(&mut out, &result.call.id);
                    out.push_str(",\"name\":");
                    write_str(&mut out, &result.call.name);
                    out.push_str(if result.is_error {
                        ",\"error\":"
                    } else {
                        ",\"result\":"
                    });
                    if result.content.starts_with('"') {
                        // The host's own failure message, already a JSON string.
                        out.push_str(&result.content);
                    } else {
                        write_str(&mut out, &result.content);
                    }
                }
                ChatEvent::TurnEnd(end) => {
                    self.turns.set(end.iteration);
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
                    out.push_str(&self.turns.get().to_string());
                }
                ChatEvent::Error(message) => {
                    out.push_str("event: error\ndata: {\"message\":");
                    write_str(&mut out, &message);
                }
                ChatEvent::ToolCallStart(_) | ChatEvent::ToolCallArgsDelta(_) => continue,
            }
            out.push_str("}\n\n");
        }
        out.into_bytes()
    }

    fn finish(&self) -> Vec<u8> {
        Vec::new()
    }
}

export!(Plugin);
