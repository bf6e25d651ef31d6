//! The simple chat frontend stream format (seed 003).
//!
//! `data: {json}` frames with `tool_start`, `tool_end` and `text`, then
//! `data: [DONE]`, or `data: [ERROR] message` on failure. The contract asks
//! for the final answer only, so text of a model turn is held until the
//! turn ends and dropped when that turn called tools (it was reasoning such
//! as "let me look that up", not the answer).

use std::cell::RefCell;

use agenthost_plugin::json::{write_python_spaced, write_str};

wit_bindgen::generate!({ path: "../../wit", world: "encoder" });

use agenthost::plugin::types::{ChatEvent, EncoderInfo, PluginKind, PluginMetadata, StreamOptions};
use exports::agenthost::plugin::encoder_api::{Guest, GuestResponseStream};

struct Plugin;

impl Guest for Plugin {
    type ResponseStream = SimpleStream;

    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "simple".into(),
            kind: PluginKind::Encoder,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Simple chat frontend SSE: tool_start, tool_end, text, [DONE]".into(),
        }
    }

    fn info() -> EncoderInfo {
        EncoderInfo {
            content_type: "text/event-stream".into(),
            headers: vec![("cache-control".into(), "no-cache".into())],
        }
    }
}

#[derive(Default)]
struct TurnText {
    chunks: Vec<String>,
    called_tools: bool,
}

pub struct SimpleStream {
    turn: RefCell<TurnText>,
}

impl GuestResponseStream for SimpleStream {
    fn new(_options: StreamOptions) -> Self {
        SimpleStream {
            turn: RefCell::default(),
        }
    }

    fn encode(&self, events: Vec<ChatEvent>) -> Vec<u8> {
        let mut turn = self.turn.borrow_mut();
        let mut out = String::new();
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
                    write_str(&mut out, &ready.call.id);
                    out.push_str(r#", "name": "#);
                    write_str(&mut out, &ready.call.tool);
                    out.push_str(r#", "args": "#);
                    write_python_spaced(&mut out, &ready.arguments);
                    out.push_str("}\n\n");
                }
                ChatEvent::ToolResult(result) => {
                    out.push_str(r#"data: {"type": "tool_end", "id": "#);
                    write_str(&mut out, &result.call.id);
                    out.push_str(r#", "name": "#);
                    write_str(&mut out, &result.call.tool);
                    out.push_str("}\n\n");
                }
                ChatEvent::TurnEnd(_) => flush_turn(&mut turn, &mut out),
                ChatEvent::Done => {
                    flush_turn(&mut turn, &mut out);
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
        out.into_bytes()
    }

    fn finish(&self) -> Vec<u8> {
        Vec::new()
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

export!(Plugin);
