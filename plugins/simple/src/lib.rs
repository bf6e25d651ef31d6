//! The simple chat frontend stream format (seed 003).
//!
//! `data: {json}` frames with `tool_start`, `tool_end` and `text`, then
//! `data: [DONE]`, or `data: [ERROR] message` on failure. The contract asks
//! for the final answer only, so text of a model turn is held until the
//! turn ends and dropped when that turn called tools (it was reasoning such
//! as "let me look that up", not the answer).
//!
//! The seed's flow is start, end, start, end for each tool, while the host
//! runs a turn's calls at once: a call's start waits until the call before
//! it has ended, and an end that arrives early waits for its start.
//!
//! A call that waits for a person is announced at once as agenthost's
//! `{"type": "approval_request", ...}`.

use std::collections::VecDeque;

use agenthost_plugin::json::{write_approval_spaced, write_python_spaced, write_str};
use agenthost_plugin::types::{ChatEvent, StreamOptions};
use agenthost_plugin::{Encoder, export_encoder};

#[derive(Default)]
struct TurnText {
    chunks: Vec<String>,
    called_tools: bool,
}

/// A tool call whose `tool_end` has not been written yet. Only the first
/// of them has had its `tool_start` written.
struct OpenCall {
    id: String,
    start: String,
    end: Option<String>,
}

pub struct SimpleStream {
    turn: TurnText,
    /// In the order the calls were made; the first is the one shown open.
    calls: VecDeque<OpenCall>,
    /// The run's id, which an approval names.
    run_id: String,
}

impl Encoder for SimpleStream {
    const NAME: &'static str = "simple";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Simple chat frontend SSE: tool_start, tool_end, text, [DONE]";
    const CONTENT_TYPE: &'static str = "text/event-stream";

    fn new(options: StreamOptions) -> Self {
        SimpleStream {
            turn: TurnText::default(),
            calls: VecDeque::new(),
            run_id: options.response_id,
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
                ChatEvent::ResponseInfo(_) | ChatEvent::ToolCallArgsDelta(_) => {}
                ChatEvent::ToolCall(ready) => {
                    let mut start = String::from(r#"data: {"type": "tool_start", "id": "#);
                    write_str(&mut start, &ready.call.id);
                    start.push_str(r#", "name": "#);
                    write_str(&mut start, &ready.call.tool);
                    start.push_str(r#", "args": "#);
                    write_python_spaced(&mut start, &ready.arguments);
                    start.push_str("}\n\n");
                    if self.calls.is_empty() {
                        out.push_str(&start);
                    }
                    self.calls.push_back(OpenCall {
                        id: ready.call.id,
                        start,
                        end: None,
                    });
                }
                // Someone must act on it, so it goes out at once, whichever
                // call is shown open.
                ChatEvent::ApprovalRequest(ready) => {
                    out.push_str(r#"data: {"type": "approval_request", "#);
                    write_approval_spaced(out, &self.run_id, &ready);
                    out.push_str("}\n\n");
                }
                ChatEvent::ToolResult(result) => {
                    let mut end = String::from(r#"data: {"type": "tool_end", "id": "#);
                    write_str(&mut end, &result.call.id);
                    end.push_str(r#", "name": "#);
                    write_str(&mut end, &result.call.tool);
                    end.push_str("}\n\n");
                    match self.calls.iter_mut().find(|c| c.id == result.call.id) {
                        Some(call) => call.end = Some(end),
                        None => out.push_str(&end),
                    }
                    write_calls(&mut self.calls, out);
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

/// Writes the first call's end once known, then the next call's start,
/// and its end if it came early, and so on.
fn write_calls(calls: &mut VecDeque<OpenCall>, out: &mut String) {
    while let Some(end) = calls.front_mut().and_then(|call| call.end.take()) {
        out.push_str(&end);
        calls.pop_front();
        if let Some(next) = calls.front() {
            out.push_str(&next.start);
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
