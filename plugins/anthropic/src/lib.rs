//! Anthropic Messages API, streaming, with tools.
//!
//! System messages become the `system` field, tool calls `tool_use`
//! blocks, and tool results `tool_result` blocks in the user turn that
//! follows. The stream's `input_json_delta` fragments are passed on as
//! tool-call fragments; `message_delta` carries the stop reason.

use agenthost_plugin::json::{write_separated, write_str};
use agenthost_plugin::lines::{LineDecoder, sse_data};
use agenthost_plugin::{FinishingLines, MustFinish};
use serde::Deserialize;

use agenthost_plugin::types::{
    AuthScheme, ChatRequest, FinishReason, HttpRequest, Message, Outbound, PluginError,
    ProviderConfig, ProviderEvent, ResponseInfo, Role, TokenUsage, ToolCallBegin, ToolCallFragment,
};
use agenthost_plugin::{Provider, export_provider};

/// The API version this adapter speaks.
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; used when the client sets none.
const DEFAULT_MAX_TOKENS: u32 = 4096;

pub struct Anthropic;

impl Provider for Anthropic {
    const NAME: &'static str = "anthropic";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Anthropic Messages API with streaming tool use";

    type Decoder = LineDecoder<MustFinish<AnthropicLines>>;

    fn build_request(
        config: ProviderConfig,
        request: ChatRequest,
    ) -> Result<Outbound, PluginError> {
        Ok(Outbound::Http(HttpRequest {
            method: "POST".into(),
            url: format!("{}/v1/messages", config.base_url),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("accept".into(), "text/event-stream".into()),
                ("anthropic-version".into(), ANTHROPIC_VERSION.into()),
            ],
            body: request_body(&request).into_bytes(),
            auth: AuthScheme::Header("x-api-key".into()),
        }))
    }
}

fn request_body(request: &ChatRequest) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str(r#"{"model":"#);
    write_str(&mut out, &request.model);
    let max_tokens = request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    out.push_str(&format!(r#","max_tokens":{max_tokens},"stream":true"#));
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    if !system.is_empty() {
        out.push_str(r#","system":"#);
        write_str(&mut out, &system.join("\n\n"));
    }
    out.push_str(r#","messages":["#);
    write_messages(&mut out, &request.messages, request.tools.is_empty());
    out.push(']');
    if !request.tools.is_empty() {
        out.push_str(r#","tools":["#);
        write_separated(&mut out, &request.tools, |out, tool| {
            out.push_str(r#"{"name":"#);
            write_str(out, &tool.name);
            out.push_str(r#","description":"#);
            write_str(out, &tool.description);
            out.push_str(r#","input_schema":"#);
            out.push_str(&tool.input_schema);
            out.push('}');
        });
        out.push(']');
    }
    if let Some(t) = request.temperature {
        out.push_str(&format!(r#","temperature":{t}"#));
    }
    if let Some(p) = request.top_p {
        out.push_str(&format!(r#","top_p":{p}"#));
    }
    out.push('}');
    out
}

/// Writes the conversation; consecutive tool results share one user turn,
/// as the API requires.
///
/// The API refuses `tool_use` and `tool_result` blocks in a request that
/// defines no tools, so when none are offered (a chat's last turn after
/// its tool rounds) earlier tool calls and results are written as text.
fn write_messages(out: &mut String, messages: &[Message], tools_as_text: bool) {
    let mut first = true;
    let mut in_tool_results = false;
    for message in messages.iter().filter(|m| m.role != Role::System) {
        if tools_as_text && (message.role == Role::Tool || !message.tool_calls.is_empty()) {
            if !first {
                out.push(',');
            }
            first = false;
            write_tool_use_as_text(out, message);
            continue;
        }
        if message.role == Role::Tool && in_tool_results {
            out.push(',');
            write_tool_result(out, message);
            continue;
        }
        if in_tool_results {
            out.push_str("]}");
            in_tool_results = false;
        }
        if !first {
            out.push(',');
        }
        first = false;
        match message.role {
            Role::Tool => {
                out.push_str(r#"{"role":"user","content":["#);
                write_tool_result(out, message);
                in_tool_results = true;
            }
            Role::Assistant if !message.tool_calls.is_empty() => {
                out.push_str(r#"{"role":"assistant","content":["#);
                if !message.content.is_empty() {
                    out.push_str(r#"{"type":"text","text":"#);
                    write_str(out, &message.content);
                    out.push_str("},");
                }
                write_separated(out, &message.tool_calls, |out, call| {
                    out.push_str(r#"{"type":"tool_use","id":"#);
                    write_str(out, &call.id);
                    out.push_str(r#","name":"#);
                    write_str(out, &call.name);
                    out.push_str(r#","input":"#);
                    out.push_str(json_object_or_empty(&call.arguments));
                    out.push('}');
                });
                out.push_str("]}");
            }
            role => {
                let role = if role == Role::Assistant {
                    "assistant"
                } else {
                    "user"
                };
                out.push_str(&format!(r#"{{"role":"{role}","content":"#));
                write_str(out, &message.content);
                out.push('}');
            }
        }
    }
    if in_tool_results {
        out.push_str("]}");
    }
}

fn write_tool_use_as_text(out: &mut String, message: &Message) {
    let (role, text) = if message.role == Role::Tool {
        let id = message.tool_call_id.as_deref().unwrap_or_default();
        (
            "user",
            format!("[result of tool call {id}]\n{}", message.content),
        )
    } else {
        let mut text = message.content.clone();
        for call in &message.tool_calls {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!(
                "[tool call {}: {} {}]",
                call.id, call.name, call.arguments
            ));
        }
        ("assistant", text)
    };
    out.push_str(&format!(r#"{{"role":"{role}","content":"#));
    write_str(out, &text);
    out.push('}');
}

fn write_tool_result(out: &mut String, message: &Message) {
    out.push_str(r#"{"type":"tool_result","tool_use_id":"#);
    write_str(out, message.tool_call_id.as_deref().unwrap_or_default());
    out.push_str(r#","content":"#);
    write_str(out, &message.content);
    out.push('}');
}

/// Tool inputs must be JSON objects; anything else is sent as `{}`.
fn json_object_or_empty(arguments: &str) -> &str {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(arguments) {
        Ok(_) => arguments,
        Err(_) => "{}",
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartedMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop,
    MessageDelta {
        delta: MessageDelta,
        usage: Option<Usage>,
    },
    MessageStop,
    Ping,
    Error {
        error: ApiError,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct StartedMessage {
    model: Option<String>,
    usage: Option<Usage>,
}

/// Counts as Anthropic reports them: at the start, the input and the
/// first output tokens; in `message_delta`, the output so far (and, from
/// some versions on, the input again). Cached input is counted apart from
/// `input_tokens`, yet is input the request carried.
#[derive(Deserialize, Default)]
struct Usage {
    input_tokens: Option<u32>,
    cache_creation_input_tokens: Option<u32>,
    cache_read_input_tokens: Option<u32>,
    output_tokens: Option<u32>,
}

impl Usage {
    fn input(&self) -> Option<u32> {
        let parts = [
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ];
        parts.iter().any(Option::is_some).then(|| {
            parts
                .iter()
                .flatten()
                .fold(0u32, |sum, n| sum.saturating_add(*n))
        })
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessageDelta {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct ApiError {
    message: String,
}

/// Anthropic's SSE: typed events ending with `message_stop` (or an
/// error event), which finishes the turn. `message_start` names the model
/// and the input tokens; `message_delta` the output tokens, when the
/// usage is reported.
#[derive(Default)]
pub struct AnthropicLines {
    input_tokens: u32,
}

impl FinishingLines for AnthropicLines {
    fn line(
        &mut self,
        line: &str,
        events: &mut Vec<ProviderEvent>,
        stopped: &mut bool,
    ) -> Result<(), PluginError> {
        let Some(data) = sse_data(line) else {
            return Ok(());
        };
        if data.is_empty() {
            return Ok(());
        }
        let event: StreamEvent = serde_json::from_str(data).map_err(|e| PluginError {
            code: "decode".into(),
            message: format!("malformed event from the provider: {e}"),
        })?;
        match event {
            StreamEvent::MessageStart { message } => {
                if let Some(input) = message.usage.as_ref().and_then(Usage::input) {
                    self.input_tokens = input;
                }
                if let Some(model) = message.model {
                    events.push(ProviderEvent::ResponseInfo(ResponseInfo {
                        model,
                        system_fingerprint: None,
                    }));
                }
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block: ContentBlock::ToolUse { id, name },
            } => {
                events.push(ProviderEvent::ToolCallBegin(ToolCallBegin {
                    index,
                    id,
                    name,
                }));
            }
            StreamEvent::ContentBlockDelta {
                delta: BlockDelta::TextDelta { text },
                ..
            } if !text.is_empty() => {
                events.push(ProviderEvent::TextDelta(text));
            }
            StreamEvent::ContentBlockDelta {
                index,
                delta: BlockDelta::InputJsonDelta { partial_json },
            } if !partial_json.is_empty() => {
                events.push(ProviderEvent::ToolCallFragment(ToolCallFragment {
                    index,
                    fragment: partial_json,
                }));
            }
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(usage) = usage {
                    events.push(ProviderEvent::Usage(TokenUsage {
                        input_tokens: usage.input().unwrap_or(self.input_tokens),
                        output_tokens: usage.output_tokens.unwrap_or_default(),
                    }));
                }
                if let Some(reason) = delta.stop_reason {
                    events.push(ProviderEvent::Finish(match reason.as_str() {
                        "tool_use" => FinishReason::ToolCalls,
                        "max_tokens" => FinishReason::Length,
                        "refusal" => FinishReason::ContentFilter,
                        _ => FinishReason::Stop,
                    }));
                }
            }
            StreamEvent::MessageStop => *stopped = true,
            StreamEvent::Error { error } => {
                *stopped = true;
                events.push(ProviderEvent::Error(error.message));
            }
            _ => {}
        }
        Ok(())
    }
}

export_provider!(Anthropic);
