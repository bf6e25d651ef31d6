//! {{name}}: a stream format for agenthost.
//!
//! One JSON object per line. Change `encode` to shape the bytes; the host
//! calls it with batches of events and sends what it appends as it is.

use agenthost_plugin::json::write_str;
use agenthost_plugin::types::{ChatEvent, StreamOptions};
use agenthost_plugin::{Encoder, export_encoder};

pub struct Format;

impl Encoder for Format {
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Newline-delimited JSON chat events";
    const CONTENT_TYPE: &'static str = "application/x-ndjson";

    fn new(_options: StreamOptions) -> Self {
        Format
    }

    fn encode(&mut self, events: Vec<ChatEvent>, out: &mut String) {
        for event in events {
            match event {
                ChatEvent::TextDelta(text) => {
                    out.push_str(r#"{"type":"text","text":"#);
                    write_str(out, &text);
                }
                ChatEvent::ToolCall(ready) => {
                    out.push_str(r#"{"type":"tool_call","name":"#);
                    write_str(out, &ready.call.name);
                    out.push_str(r#","arguments":"#);
                    out.push_str(&ready.arguments);
                }
                ChatEvent::ToolResult(result) => {
                    out.push_str(r#"{"type":"tool_result","name":"#);
                    write_str(out, &result.call.name);
                    out.push_str(r#","is_error":"#);
                    out.push_str(if result.is_error { "true" } else { "false" });
                    out.push_str(r#","content":"#);
                    write_str(out, &result.content);
                }
                ChatEvent::Done => out.push_str(r#"{"type":"done""#),
                ChatEvent::Error(message) => {
                    out.push_str(r#"{"type":"error","message":"#);
                    write_str(out, &message);
                }
                _ => continue,
            }
            out.push_str("}\n");
        }
    }
}

export_encoder!(Format);
