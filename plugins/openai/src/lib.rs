//! OpenAI chat completions, streaming, with tools.
//!
//! Works against any server that speaks the same wire format (OpenAI,
//! vLLM, Ollama, OpenRouter) through the configured base URL.

use agenthost_plugin::json::{write_separated, write_str};
use agenthost_plugin::lines::{LineDecoder, sse_data};
use agenthost_plugin::{FinishingLines, MustFinish};
use std::borrow::Cow;

use serde::Deserialize;

use agenthost_plugin::types::{
    AuthScheme, ChatRequest, FinishReason, HttpRequest, Message, Outbound, PluginError,
    ProviderConfig, ProviderEvent, ResponseInfo, Role, TokenUsage, ToolCallBegin, ToolCallFragment,
};
use agenthost_plugin::{Provider, export_provider};

pub struct OpenAi;

impl Provider for OpenAi {
    const NAME: &'static str = "openai";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, OpenRouter)";

    type Decoder = LineDecoder<MustFinish<OpenAiLines>>;

    fn build_request(
        config: ProviderConfig,
        request: ChatRequest,
    ) -> Result<Outbound, PluginError> {
        let body = request_body(&config.base_url, &request);
        Ok(Outbound::Http(HttpRequest {
            method: "POST".into(),
            url: format!("{}/chat/completions", config.base_url),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("accept".into(), "text/event-stream".into()),
            ],
            body: body.into_bytes(),
            auth: AuthScheme::Bearer,
        }))
    }
}

fn request_body(base_url: &str, request: &ChatRequest) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str(r#"{"model":"#);
    write_str(&mut out, &request.model);
    // Without `include_usage` the stream carries no token counts.
    out.push_str(r#","stream":true,"stream_options":{"include_usage":true},"messages":["#);
    write_separated(&mut out, &request.messages, write_message);
    out.push(']');
    if !request.tools.is_empty() {
        out.push_str(r#","tools":["#);
        write_separated(&mut out, &request.tools, |out, tool| {
            out.push_str(r#"{"type":"function","function":{"name":"#);
            write_str(out, &tool.name);
            out.push_str(r#","description":"#);
            write_str(out, &tool.description);
            out.push_str(r#","parameters":"#);
            out.push_str(&tool.input_schema);
            out.push_str("}}");
        });
        out.push(']');
    }
    if let Some(max) = request.max_tokens {
        // OpenAI's newer models refuse `max_tokens`; most compatible
        // servers only know `max_tokens`.
        let field = if base_url.contains("api.openai.com") {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        out.push_str(&format!(r#","{field}":{max}"#));
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

fn write_message(out: &mut String, message: &Message) {
    let role = match message.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    out.push_str(&format!(r#"{{"role":"{role}","content":"#));
    if message.content.is_empty() && !message.tool_calls.is_empty() {
        out.push_str("null");
    } else {
        write_str(out, &message.content);
    }
    if let Some(id) = &message.tool_call_id {
        out.push_str(r#","tool_call_id":"#);
        write_str(out, id);
    }
    if !message.tool_calls.is_empty() {
        out.push_str(r#","tool_calls":["#);
        write_separated(out, &message.tool_calls, |out, call| {
            out.push_str(r#"{"id":"#);
            write_str(out, &call.id);
            out.push_str(r#","type":"function","function":{"name":"#);
            write_str(out, &call.name);
            out.push_str(r#","arguments":"#);
            write_str(out, &call.arguments);
            out.push_str("}}");
        });
        out.push(']');
    }
    out.push('}');
}

/// `model` and `system_fingerprint` are borrowed: every chunk repeats
/// them and only the first is reported.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default)]
    choices: Vec<Choice>,
    error: Option<ApiError>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    system_fingerprint: Option<Cow<'a, str>>,
    /// Only in the last chunk, whose `choices` is empty, when the request
    /// asked for it.
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

#[derive(Deserialize)]
struct ApiError {
    message: String,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    index: u32,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

/// OpenAI's SSE: `data: {chunk}` lines, then `data: [DONE]`. A
/// `finish_reason` (or an error) finishes the turn. Every chunk names the
/// model; the first one that does is reported. Token usage comes in a
/// chunk of its own after the finish.
#[derive(Default)]
pub struct OpenAiLines {
    reported: bool,
}

impl FinishingLines for OpenAiLines {
    fn line(
        &mut self,
        line: &str,
        events: &mut Vec<ProviderEvent>,
        finished: &mut bool,
    ) -> Result<(), PluginError> {
        let Some(data) = sse_data(line) else {
            return Ok(());
        };
        if data == "[DONE]" || data.is_empty() {
            return Ok(());
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| PluginError {
            code: "decode".into(),
            message: format!("malformed chunk from the provider: {e}"),
        })?;
        if let Some(error) = chunk.error {
            *finished = true;
            events.push(ProviderEvent::Error(error.message));
            return Ok(());
        }
        if !self.reported
            && let Some(model) = chunk.model
        {
            self.reported = true;
            events.push(ProviderEvent::ResponseInfo(ResponseInfo {
                model: model.into_owned(),
                system_fingerprint: chunk.system_fingerprint.map(Cow::into_owned),
            }));
        }
        if let Some(usage) = chunk.usage {
            events.push(ProviderEvent::Usage(TokenUsage {
                input_tokens: usage.prompt_tokens,
                output_tokens: usage.completion_tokens,
            }));
        }
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content
                && !text.is_empty()
            {
                events.push(ProviderEvent::TextDelta(text));
            }
            for call in choice.delta.tool_calls {
                let (name, arguments) = match call.function {
                    Some(f) => (f.name, f.arguments),
                    None => (None, None),
                };
                if call.id.is_some() || name.is_some() {
                    events.push(ProviderEvent::ToolCallBegin(ToolCallBegin {
                        index: call.index,
                        id: call.id.unwrap_or_default(),
                        name: name.unwrap_or_default(),
                    }));
                }
                if let Some(fragment) = arguments
                    && !fragment.is_empty()
                {
                    events.push(ProviderEvent::ToolCallFragment(ToolCallFragment {
                        index: call.index,
                        fragment,
                    }));
                }
            }
            if let Some(reason) = choice.finish_reason {
                *finished = true;
                events.push(ProviderEvent::Finish(match reason.as_str() {
                    "tool_calls" | "function_call" => FinishReason::ToolCalls,
                    "length" => FinishReason::Length,
                    "content_filter" => FinishReason::ContentFilter,
                    _ => FinishReason::Stop,
                }));
            }
        }
        Ok(())
    }
}

export_provider!(OpenAi);
