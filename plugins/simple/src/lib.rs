//! The simple chat frontend stream format (seed 003).
//!
//! `data: {json}` frames with `tool_start`, `tool_end` and `text`, then
//! `data: [DONE]`, or `data: [ERROR] message` on failure. The contract asks
//! for the final answer only, so text of a model turn is held until the
//! turn ends and dropped when that turn called tools (it was reasoning such
//! as "let me look that up", not the answer).

use agenthost_plugin::json::{write_python_spaced, write_str};
use agenthost_plugin::types::{ChatEvent, StreamOptions};
use agenthost_plugin::{Encoder, export_encoder};

#[derive(Default)]
struct TurnText {
    chunks: Vec<String>,
    called_tools: bool,
}

pub struct SimpleStream {
    turn: TurnText,
}

impl Encoder for SimpleStream {
    const NAME: &'static str = "simple";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Simple chat frontend SSE: tool_start, tool_end, text, [DONE]";
    const CONTENT_TYPE: &'static str = "text/event-stream";

    fn new(_options: StreamOptions) -> Self {
        SimpleStream {
            turn: TurnText::default(),
        }
    }

    fn encode(&mut self, events: Vec<ChatEvent>, out: &mut String) {
        let turn = &mut self.turn;
        for event in events {
            match event {
                ChatEvent::TextDelta(text) if !turn.called_tools => turn.chunks.push(text),
                ChatEvent::TextDelta(_) => {}
                ChatEvent::ToolCallStart(_) => {
                    turn.called_tools = true;
                    turn.chunks.clear();
                }
                ChatEvent::ToolCallArgsDelta(_) => {}
                ChatEvent::ToolCall(ready) => {
                    out.push_str(r#"data: {"type": "tool_start", "id": "#);
                    write_str(out, &ready.call.id);
                    out.push_str(r#", "name": "#);
                    write_str(out, &ready.call.tool);
                    out.push_str(r#", "args": "#);
                    write_python_spaced(out, &ready.arguments);
                    out.push_str("}\n\n");
                }
                ChatEvent::ToolResult(result) => {
                    out.push_str(r#"data: {"type": "tool_end", "id": "#);
                    write_str(out, &result.call.id);
                    out.push_str(r#", "name": "#);
                    write_str(out, &result.call.tool);
                    out.push_str("}\n\n");
                }
                ChatEvent::TurnEnd(_) => flush_turn(turn, out),
                ChatEvent::Done => {
                    flush_turn(turn, out);
                    out.push_str("data: [DONE]\n\n");
                }
                ChatEvent::Error(message) => {
                    // An SSE data line cannot hold a newline.
                    out.push_str("data: [ERROR] ");
                    out.push_str(&message.replace(['\r', '\n'], " "));
                    out.push_str("\n\n");
                }
            }
        }
    }
}

fn flush_turn(turn: &mut TurnText, out: &mut String) {
    for chunk in turn.chunks.drain(..) {
        out.push_str(r#"data: {"type": "text", "content": "#);
        write_str(out, &chunk);
        out.push_str("}\n\n");
    }
    turn.called_tools = false;
}

export_encoder!(SimpleStream);
