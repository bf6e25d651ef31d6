//! An offline, deterministic model for first runs and tests.
//!
//! It needs no network and no key, yet uses tools the way a model would:
//! - a message naming a tool (`server__tool`, or just its MCP name) calls it, with the JSON
//!   object in the message as arguments, if there is one;
//! - a message with an arithmetic expression calls a `calc…` tool;
//! - a message asking for the time calls a `…time…` tool, passing any
//!   `Area/City` zone it mentions;
//! - after tool results it reports what each tool returned;
//! - otherwise it echoes the message.
//!
//! It reports token usage as a real provider would, counting words as
//! tokens: every word of the request as input, every word it writes as
//! output.
//!
//! The response is synthesized as JSON lines and handed back as an
//! `offline` body, so it goes through the same decode path as real ones.

use agenthost_plugin::json::write_str;
use agenthost_plugin::lines::{LineDecoder, LineProtocol};
use serde::Deserialize;

use agenthost_plugin::types::{
    ChatRequest, FinishReason, Message, Outbound, PluginError, ProviderConfig, ProviderEvent, Role,
    TokenUsage, ToolCallBegin, ToolCallFragment, ToolSpec,
};
use agenthost_plugin::{Provider, export_provider};

pub struct Mock;

impl Provider for Mock {
    const NAME: &'static str = "mock";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Offline deterministic model that calls tools named in the message";

    type Decoder = LineDecoder<MockLines>;

    fn build_request(
        _config: ProviderConfig,
        request: ChatRequest,
    ) -> Result<Outbound, PluginError> {
        let mut body = String::new();
        let output = match request.messages.last() {
            Some(last) if last.role == Role::Tool => report_results(&request.messages, &mut body),
            Some(last) => match choose_tool(&last.content, &request.tools) {
                Some((name, args)) => {
                    body.push_str(r#"{"call":{"id":"call_1","name":"#);
                    write_str(&mut body, &name);
                    body.push_str(r#","args":"#);
                    write_str(&mut body, &args);
                    body.push_str("}}\n{\"finish\":\"tool_calls\"}\n");
                    1 + words(&args)
                }
                None => write_text(&mut body, &format!("You said: {}", last.content)),
            },
            None => write_text(&mut body, "Hello! Send me a message."),
        };
        let input: u32 = request
            .messages
            .iter()
            .map(|m| {
                words(&m.content)
                    + m.tool_calls
                        .iter()
                        .map(|c| words(&c.arguments))
                        .sum::<u32>()
            })
            .sum();
        body.push_str(&format!("{{\"usage\":[{input},{output}]}}\n"));
        Ok(Outbound::Offline(body.into_bytes()))
    }
}

/// Picks a tool and its JSON arguments for a user message.
fn choose_tool(message: &str, tools: &[ToolSpec]) -> Option<(String, String)> {
    let lower = message.to_lowercase();
    let explicit_args = json_object_in(message);
    let named = |t: &&ToolSpec| mentions(&lower, &t.name.to_lowercase());
    let named_by_mcp_name = |t: &&ToolSpec| mentions(&lower, &mcp_name(&t.name).to_lowercase());
    if let Some(tool) = tools
        .iter()
        .find(named)
        .or_else(|| tools.iter().find(named_by_mcp_name))
    {
        return Some((
            tool.name.clone(),
            explicit_args.unwrap_or_else(|| "{}".into()),
        ));
    }
    let find = |part: &str| tools.iter().find(|t| mcp_name(&t.name).contains(part));
    if let (Some(expr), Some(tool)) = (arithmetic_in(message), find("calc")) {
        let mut args = String::from(r#"{"expression":"#);
        write_str(&mut args, &expr);
        args.push('}');
        return Some((tool.name.clone(), args));
    }
    if lower.contains("time")
        && let Some(tool) = find("time")
    {
        let zone = message
            .split(|c: char| c.is_whitespace() || c == '?' || c == ',')
            .find(|w| w.contains('/') && w.chars().any(|c| c.is_alphabetic()))
            .unwrap_or("UTC");
        let mut args = String::from(r#"{"timezone":"#);
        write_str(&mut args, zone);
        args.push('}');
        return Some((tool.name.clone(), args));
    }
    None
}

/// The tool's own MCP name: model-facing names are `server__tool`.
fn mcp_name(model_facing: &str) -> &str {
    model_facing
        .rsplit_once("__")
        .map_or(model_facing, |(_, tool)| tool)
}

/// Whether `word` occurs in `text` with no identifier character beside it.
fn mentions(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

fn json_object_in(message: &str) -> Option<String> {
    let start = message.find('{')?;
    let end = message.rfind('}')?;
    let candidate = message.get(start..=end)?;
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(candidate)
        .ok()
        .map(|_| candidate.to_owned())
}

/// The longest run of arithmetic characters holding a digit and an operator.
fn arithmetic_in(message: &str) -> Option<String> {
    let is_arith = |c: char| c.is_ascii_digit() || "+-*/^().% ".contains(c);
    message
        .split(|c: char| !is_arith(c))
        .map(str::trim)
        .filter(|run| {
            run.chars().any(|c| c.is_ascii_digit()) && run.chars().any(|c| "+-*/^%".contains(c))
        })
        .max_by_key(|run| run.len())
        .map(str::to_owned)
}

/// The mock's token count.
fn words(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// Says what each tool of the last turn returned; the words written.
fn report_results(messages: &[Message], body: &mut String) -> u32 {
    let results: Vec<&Message> = messages
        .iter()
        .rev()
        .take_while(|m| m.role == Role::Tool)
        .collect();
    let mut text = String::new();
    for result in results.into_iter().rev() {
        let name = result
            .tool_call_id
            .as_deref()
            .and_then(|id| {
                // Ids are unique per request only: the latest call wins.
                messages
                    .iter()
                    .rev()
                    .flat_map(|m| &m.tool_calls)
                    .find(|call| call.id == id)
            })
            .map_or("the tool", |call| mcp_name(&call.name));
        if !text.is_empty() {
            text.push(' ');
        }
        let result = result_text(&result.content);
        text.push_str(&format!(
            "{name} returned: {}.",
            result.trim_end_matches('.')
        ));
    }
    write_text(body, &text)
}

/// The text blocks of an MCP `tools/call` result, or the raw content.
fn result_text(content: &str) -> String {
    #[derive(Deserialize)]
    struct Block {
        text: Option<String>,
    }
    #[derive(Deserialize)]
    struct McpResult {
        content: Vec<Block>,
    }
    match serde_json::from_str::<McpResult>(content) {
        Ok(result) => result
            .content
            .into_iter()
            .filter_map(|b| b.text)
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => content.trim_matches('"').to_owned(),
    }
}

/// Streams `text` word by word, then finishes the turn; the words written.
fn write_text(body: &mut String, text: &str) -> u32 {
    for word in text.split_inclusive(' ') {
        body.push_str(r#"{"text":"#);
        write_str(body, word);
        body.push_str("}\n");
    }
    body.push_str("{\"finish\":\"stop\"}\n");
    words(text)
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Line {
    Text(String),
    Call {
        id: String,
        name: String,
        args: String,
    },
    Finish(String),
    /// Input and output tokens.
    Usage([u32; 2]),
}

/// The mock's own JSON lines.
#[derive(Default)]
pub struct MockLines {
    next_index: u32,
}

impl LineProtocol for MockLines {
    type Event = ProviderEvent;
    type Error = PluginError;

    fn line(&mut self, line: &str, events: &mut Vec<ProviderEvent>) -> Result<(), PluginError> {
        decode_line(line, events, &mut self.next_index)
    }
}

fn decode_line(
    line: &str,
    events: &mut Vec<ProviderEvent>,
    next_index: &mut u32,
) -> Result<(), PluginError> {
    if line.is_empty() {
        return Ok(());
    }
    let line = serde_json::from_str::<Line>(line).map_err(|e| PluginError {
        code: "decode".into(),
        message: format!("malformed mock line: {e}"),
    })?;
    match line {
        Line::Text(text) => events.push(ProviderEvent::TextDelta(text)),
        Line::Call { id, name, args } => {
            let index = *next_index;
            *next_index += 1;
            events.push(ProviderEvent::ToolCallBegin(ToolCallBegin {
                index,
                id,
                name,
            }));
            events.push(ProviderEvent::ToolCallFragment(ToolCallFragment {
                index,
                fragment: args,
            }));
        }
        Line::Usage([input_tokens, output_tokens]) => {
            events.push(ProviderEvent::Usage(TokenUsage {
                input_tokens,
                output_tokens,
            }))
        }
        Line::Finish(reason) => events.push(ProviderEvent::Finish(if reason == "tool_calls" {
            FinishReason::ToolCalls
        } else {
            FinishReason::Stop
        })),
    }
    Ok(())
}

export_provider!(Mock);
