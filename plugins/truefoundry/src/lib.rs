//! The TrueFoundry AI Gateway agent stream (seed 002): OpenAI
//! `chat.completion.chunk` frames, tool calls streamed as they are made
//! with `mcp_server_integration_id` and `tool_name`, tool results as
//! `tool-call-result-<id>` chunks, errors as `{"type": "error", ...}`, and
//! `data: [DONE]` at the end. Parseable by the official OpenAI SDK.

use std::cell::RefCell;

use agenthost_plugin::json::write_str;
use agenthost_plugin::types::{ChatEvent, FinishReason, StreamOptions};
use agenthost_plugin::{Encoder, export_encoder};

/// Per model turn: whether the role chunk went out, and the ids of the
/// turn's tool calls, whose positions are their OpenAI `index`.
#[derive(Default)]
struct Turn {
    started: bool,
    call_ids: Vec<String>,
}

pub struct Stream {
    /// `data: {"id":...,"choices":[{"index":0,"delta":` for this response.
    chunk_head: String,
    options: StreamOptions,
    turn: RefCell<Turn>,
}

impl Encoder for Stream {
    const NAME: &'static str = "truefoundry";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "TrueFoundry agent responses: OpenAI chunks with MCP tool calls and results";
    const CONTENT_TYPE: &'static str = "text/event-stream";

    fn new(options: StreamOptions) -> Self {
        Stream {
            chunk_head: chunk_head(&options, &options.model, None),
            options,
            turn: RefCell::default(),
        }
    }

    fn encode(&mut self, events: Vec<ChatEvent>, out: &mut String) {
        let mut turn = self.turn.borrow_mut();
        for event in events {
            match event {
                // Chunks name the model that answered, as the provider
                // reports it, from the turn it reports it for.
                ChatEvent::ResponseInfo(info) => {
                    self.chunk_head = chunk_head(
                        &self.options,
                        &info.model,
                        info.system_fingerprint.as_deref(),
                    );
                }
                ChatEvent::TextDelta(text) => {
                    self.start_turn(&mut turn, out);
                    let mut delta = String::from(r#"{"content":"#);
                    write_str(&mut delta, &text);
                    delta.push('}');
                    self.chunk(out, &delta, None);
                }
                ChatEvent::ToolCallStart(call) => {
                    // A turn that opens with a tool call carries the role
                    // in the same delta, as OpenAI's do.
                    let opens_turn = !turn.started;
                    turn.started = true;
                    let index = turn.call_ids.len();
                    turn.call_ids.push(call.id.clone());
                    let mut delta = String::from(if opens_turn {
                        r#"{"role":"assistant","content":null,"tool_calls":["#
                    } else {
                        r#"{"tool_calls":["#
                    });
                    delta.push_str(&format!(r#"{{"index":{index},"id":"#));
                    write_str(&mut delta, &call.id);
                    delta.push_str(r#","type":"function","function":{"name":"#);
                    write_str(&mut delta, &call.name);
                    delta.push_str(r#","arguments":""},"mcp_server_integration_id":"#);
                    write_str(&mut delta, &call.server);
                    delta.push_str(r#","tool_name":"#);
                    write_str(&mut delta, &call.tool);
                    delta.push_str(if opens_turn {
                        r#"}],"refusal":null}"#
                    } else {
                        "}]}"
                    });
                    self.chunk(out, &delta, None);
                }
                ChatEvent::ToolCallArgsDelta(args) => {
                    let index = turn
                        .call_ids
                        .iter()
                        .position(|id| *id == args.id)
                        .unwrap_or(0);
                    let mut delta =
                        format!(r#"{{"tool_calls":[{{"index":{index},"function":{{"arguments":"#);
                    write_str(&mut delta, &args.fragment);
                    delta.push_str("}}]}");
                    self.chunk(out, &delta, None);
                }
                ChatEvent::ToolCall(_) => {}
                ChatEvent::TurnEnd(end) => {
                    self.start_turn(&mut turn, out);
                    self.chunk(out, "{}", Some(finish_reason(end.reason)));
                    *turn = Turn::default();
                }
                ChatEvent::ToolResult(result) => {
                    out.push_str(r#"data: {"id":"#);
                    write_str(out, &format!("tool-call-result-{}", result.call.id));
                    out.push_str(r#","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_call_id":"#);
                    write_str(out, &result.call.id);
                    out.push_str(r#","role":"tool","content":"#);
                    write_str(out, &result.content);
                    out.push_str(r#","mcp_server_integration_id":"#);
                    write_str(out, &result.call.server);
                    out.push_str(r#","tool_name":"#);
                    write_str(out, &result.call.tool);
                    out.push_str("}}]}\n\n");
                }
                // No choices, so an OpenAI SDK client reads past it; the
                // call waits until someone answers it (see the README).
                ChatEvent::ApprovalRequest(ready) => {
                    out.push_str(r#"data: {"id":"#);
                    write_str(out, &format!("tool-call-approval-{}", ready.call.id));
                    out.push_str(r#","object":"chat.completion.chunk","choices":[],"approval_request":{"run_id":"#);
                    write_str(out, &self.options.response_id);
                    out.push_str(r#","tool_call_id":"#);
                    write_str(out, &ready.call.id);
                    out.push_str(r#","mcp_server_integration_id":"#);
                    write_str(out, &ready.call.server);
                    out.push_str(r#","tool_name":"#);
                    write_str(out, &ready.call.tool);
                    out.push_str(r#","arguments":"#);
                    write_str(out, &ready.arguments);
                    out.push_str("}}\n\n");
                }
                ChatEvent::Done => out.push_str("data: [DONE]\n\n"),
                ChatEvent::Error(message) => {
                    out.push_str(r#"data: {"type":"error","error":{"type":"api_error","message":"#);
                    write_str(out, &message);
                    out.push_str("}}\n\ndata: [DONE]\n\n");
                }
            }
        }
    }
}

impl Stream {
    fn chunk(&self, out: &mut String, delta: &str, finish_reason: Option<&str>) {
        out.push_str(&self.chunk_head);
        out.push_str(delta);
        match finish_reason {
            Some(reason) => {
                out.push_str(r#","logprobs":null,"finish_reason":""#);
                out.push_str(reason);
                out.push_str("\"}]}\n\n");
            }
            None => out.push_str(",\"logprobs\":null,\"finish_reason\":null}]}\n\n"),
        }
    }

    /// Each model turn opens with the assistant role, as OpenAI's do.
    fn start_turn(&self, turn: &mut Turn, out: &mut String) {
        if !turn.started {
            turn.started = true;
            self.chunk(
                out,
                r#"{"role":"assistant","content":"","refusal":null}"#,
                None,
            );
        }
    }
}

/// `data: {"id":...,"choices":[{"index":0,"delta":`, keys in the seed's
/// order. Without a fingerprint from the provider, `null`, as OpenAI sends
/// when it has none.
fn chunk_head(options: &StreamOptions, model: &str, fingerprint: Option<&str>) -> String {
    let mut head = String::from(r#"data: {"id":"chatcmpl-"#);
    head.push_str(&options.response_id);
    head.push_str(&format!(
        r#"","object":"chat.completion.chunk","created":{},"model":"#,
        options.created
    ));
    write_str(&mut head, model);
    head.push_str(r#","service_tier":"default","system_fingerprint":"#);
    match fingerprint {
        Some(fingerprint) => write_str(&mut head, fingerprint),
        None => head.push_str("null"),
    }
    head.push_str(r#","choices":[{"index":0,"delta":"#);
    head
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::Length => "length",
        FinishReason::ContentFilter => "content_filter",
    }
}

export_encoder!(Stream);
