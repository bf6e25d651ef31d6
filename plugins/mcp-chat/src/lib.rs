//! The MCP Chat API stream (seed 004): `token`, `tool_call`,
//! `tool_result`, then `done` with the full text, or `error`; and
//! agenthost's `approval_request` for a call that waits for a person.
//!
//! Frames are spaced the way the seed's Python server prints them. The
//! full text joins the model turns with a space where neither side has
//! one, as the seed's example shows.

use agenthost_plugin::json::{write_approval_spaced, write_python_spaced, write_str};
use agenthost_plugin::tool_result;
use agenthost_plugin::types::{ChatEvent, StreamOptions};
use agenthost_plugin::{Encoder, export_encoder};

pub struct McpChat {
    full: String,
    /// A model turn ended since the last token.
    at_turn_boundary: bool,
    /// The run's id, which an approval names.
    run_id: String,
}

impl Encoder for McpChat {
    const NAME: &'static str = "mcp-chat";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "MCP Chat API SSE: token, tool_call, tool_result, done, error";
    const HEADERS: &'static [(&'static str, &'static str)] = &[
        ("cache-control", "no-cache, no-store, must-revalidate"),
        ("connection", "keep-alive"),
        ("x-accel-buffering", "no"),
    ];

    fn new(options: StreamOptions) -> Self {
        McpChat {
            full: String::new(),
            at_turn_boundary: false,
            run_id: options.response_id,
        }
    }

    fn encode(&mut self, events: Vec<ChatEvent>, out: &mut String) {
        let text = self;
        for event in events {
            match event {
                ChatEvent::TextDelta(token) => {
                    let joins_words = !text.full.is_empty()
                        && !text.full.ends_with(char::is_whitespace)
                        && !token.starts_with(char::is_whitespace);
                    if text.at_turn_boundary && joins_words {
                        text.full.push(' ');
                    }
                    text.at_turn_boundary = false;
                    text.full.push_str(&token);
                    out.push_str(r#"data: {"type": "token", "content": "#);
                    write_str(out, &token);
                    out.push_str("}\n\n");
                }
                ChatEvent::TurnEnd(_) => text.at_turn_boundary = true,
                ChatEvent::ToolCall(ready) => {
                    out.push_str(r#"data: {"type": "tool_call", "content": {"server": "#);
                    write_str(out, &ready.call.server);
                    out.push_str(r#", "tool": "#);
                    write_str(out, &ready.call.tool);
                    out.push_str(r#", "arguments": "#);
                    write_python_spaced(out, &ready.arguments);
                    out.push_str("}}\n\n");
                }
                ChatEvent::ApprovalRequest(ready) => {
                    out.push_str(r#"data: {"type": "approval_request", "content": {"#);
                    write_approval_spaced(out, &text.run_id, &ready);
                    out.push_str("}}\n\n");
                }
                ChatEvent::ToolResult(result) => {
                    out.push_str(r#"data: {"type": "tool_result", "content": {"server": "#);
                    write_str(out, &result.call.server);
                    out.push_str(r#", "tool": "#);
                    write_str(out, &result.call.tool);
                    out.push_str(if result.is_error {
                        r#", "success": false"#
                    } else {
                        r#", "success": true"#
                    });
                    out.push_str(r#", "result": "#);
                    write_str(out, &tool_result::text(&result.content));
                    out.push_str("}}\n\n");
                }
                ChatEvent::Done => {
                    out.push_str(r#"data: {"type": "done", "content": "#);
                    write_str(out, &text.full);
                    out.push_str("}\n\n");
                }
                ChatEvent::Error(message) => {
                    out.push_str(r#"data: {"type": "error", "content": "#);
                    write_str(out, &message);
                    out.push_str("}\n\n");
                }
                ChatEvent::ResponseInfo(_)
                | ChatEvent::ToolCallStart(_)
                | ChatEvent::ToolCallArgsDelta(_) => {}
            }
        }
    }
}

export_encoder!(McpChat);
