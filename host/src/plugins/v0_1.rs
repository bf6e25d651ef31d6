//! Components built against the frozen contract `agenthost:plugin@0.1.0`
//! (`wit/0.1.0`): their bindings, and the conversions between its types
//! and the current contract's, at the boundary.
//!
//! The host works in the current contract's types only. A 0.1.0 provider
//! gets its requests converted down and its events converted up; a 0.1.0
//! encoder never receives the events 0.1.0 does not have (`response-info`).
//! Conversions cost a copy per call, paid only by 0.1.0 components.

use super::bindings as current;

pub mod provider {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "provider",
        exports: { default: async },
    });
}

pub mod encoder {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "encoder",
        exports: { default: async },
        with: { "agenthost:plugin/types": super::provider::agenthost::plugin::types },
    });
}

use provider::agenthost::plugin::types as old;

/// The export names that identify each world at this version.
pub const PROVIDER_EXPORT: &str = "agenthost:plugin/provider-api@0.1.0";
pub const ENCODER_EXPORT: &str = "agenthost:plugin/encoder-api@0.1.0";

impl From<old::PluginKind> for current::PluginKind {
    fn from(kind: old::PluginKind) -> Self {
        match kind {
            old::PluginKind::Provider => current::PluginKind::Provider,
            old::PluginKind::Encoder => current::PluginKind::Encoder,
        }
    }
}

impl From<old::PluginMetadata> for current::PluginMetadata {
    fn from(m: old::PluginMetadata) -> Self {
        current::PluginMetadata {
            name: m.name,
            kind: m.kind.into(),
            version: m.version,
            description: m.description,
        }
    }
}

impl From<old::PluginError> for current::PluginError {
    fn from(e: old::PluginError) -> Self {
        current::PluginError {
            code: e.code,
            message: e.message,
        }
    }
}

impl From<old::EncoderInfo> for current::EncoderInfo {
    fn from(info: old::EncoderInfo) -> Self {
        current::EncoderInfo {
            content_type: info.content_type,
            headers: info.headers,
        }
    }
}

impl From<old::Outbound> for current::Outbound {
    fn from(outbound: old::Outbound) -> Self {
        match outbound {
            old::Outbound::Http(http) => current::Outbound::Http(current::HttpRequest {
                method: http.method,
                url: http.url,
                headers: http.headers,
                body: http.body,
                auth: match http.auth {
                    old::AuthScheme::None => current::AuthScheme::None,
                    old::AuthScheme::Bearer => current::AuthScheme::Bearer,
                    old::AuthScheme::Header(name) => current::AuthScheme::Header(name),
                },
            }),
            old::Outbound::Offline(body) => current::Outbound::Offline(body),
        }
    }
}

impl From<old::FinishReason> for current::FinishReason {
    fn from(reason: old::FinishReason) -> Self {
        match reason {
            old::FinishReason::Stop => current::FinishReason::Stop,
            old::FinishReason::ToolCalls => current::FinishReason::ToolCalls,
            old::FinishReason::Length => current::FinishReason::Length,
            old::FinishReason::ContentFilter => current::FinishReason::ContentFilter,
        }
    }
}

impl From<current::FinishReason> for old::FinishReason {
    fn from(reason: current::FinishReason) -> Self {
        match reason {
            current::FinishReason::Stop => old::FinishReason::Stop,
            current::FinishReason::ToolCalls => old::FinishReason::ToolCalls,
            current::FinishReason::Length => old::FinishReason::Length,
            current::FinishReason::ContentFilter => old::FinishReason::ContentFilter,
        }
    }
}

impl From<old::ProviderEvent> for current::ProviderEvent {
    fn from(event: old::ProviderEvent) -> Self {
        match event {
            old::ProviderEvent::TextDelta(text) => current::ProviderEvent::TextDelta(text),
            old::ProviderEvent::ToolCallBegin(begin) => {
                current::ProviderEvent::ToolCallBegin(current::ToolCallBegin {
                    index: begin.index,
                    id: begin.id,
                    name: begin.name,
                })
            }
            old::ProviderEvent::ToolCallFragment(fragment) => {
                current::ProviderEvent::ToolCallFragment(current::ToolCallFragment {
                    index: fragment.index,
                    fragment: fragment.fragment,
                })
            }
            old::ProviderEvent::Finish(reason) => current::ProviderEvent::Finish(reason.into()),
            old::ProviderEvent::Error(message) => current::ProviderEvent::Error(message),
        }
    }
}

/// Events a 0.1.0 decoder returned, in the current contract's types.
pub fn provider_events(events: Vec<old::ProviderEvent>) -> Vec<current::ProviderEvent> {
    events.into_iter().map(Into::into).collect()
}

pub fn provider_config(config: &current::ProviderConfig) -> old::ProviderConfig {
    old::ProviderConfig {
        base_url: config.base_url.clone(),
    }
}

pub fn chat_request(request: &current::ChatRequest) -> old::ChatRequest {
    old::ChatRequest {
        model: request.model.clone(),
        messages: request.messages.iter().map(message).collect(),
        tools: request
            .tools
            .iter()
            .map(|tool| old::ToolSpec {
                name: tool.name.clone(),
                description: tool.description.clone(),
                input_schema: tool.input_schema.clone(),
            })
            .collect(),
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
    }
}

fn message(message: &current::Message) -> old::Message {
    old::Message {
        role: match message.role {
            current::Role::System => old::Role::System,
            current::Role::User => old::Role::User,
            current::Role::Assistant => old::Role::Assistant,
            current::Role::Tool => old::Role::Tool,
        },
        content: message.content.clone(),
        tool_calls: message
            .tool_calls
            .iter()
            .map(|call| old::ToolCall {
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            })
            .collect(),
        tool_call_id: message.tool_call_id.clone(),
    }
}

pub fn stream_options(options: &current::StreamOptions) -> old::StreamOptions {
    old::StreamOptions {
        response_id: options.response_id.clone(),
        model: options.model.clone(),
        created: options.created,
    }
}

/// The events a 0.1.0 encoder knows, in order; the others are left out.
pub fn chat_events(events: &[current::ChatEvent]) -> Vec<old::ChatEvent> {
    events.iter().filter_map(chat_event).collect()
}

fn chat_event(event: &current::ChatEvent) -> Option<old::ChatEvent> {
    Some(match event {
        current::ChatEvent::ResponseInfo(_) | current::ChatEvent::ApprovalRequest(_) => {
            return None;
        }
        current::ChatEvent::TextDelta(text) => old::ChatEvent::TextDelta(text.clone()),
        current::ChatEvent::ToolCallStart(info) => old::ChatEvent::ToolCallStart(call_info(info)),
        current::ChatEvent::ToolCallArgsDelta(delta) => {
            old::ChatEvent::ToolCallArgsDelta(old::ToolCallArgsDelta {
                id: delta.id.clone(),
                fragment: delta.fragment.clone(),
            })
        }
        current::ChatEvent::ToolCall(ready) => old::ChatEvent::ToolCall(old::ToolCallReady {
            call: call_info(&ready.call),
            arguments: ready.arguments.clone(),
        }),
        current::ChatEvent::ToolResult(result) => old::ChatEvent::ToolResult(old::ToolResult {
            call: call_info(&result.call),
            content: result.content.clone(),
            is_error: result.is_error,
        }),
        current::ChatEvent::TurnEnd(end) => old::ChatEvent::TurnEnd(old::TurnEnd {
            iteration: end.iteration,
            reason: end.reason.into(),
        }),
        current::ChatEvent::Done => old::ChatEvent::Done,
        current::ChatEvent::Error(message) => old::ChatEvent::Error(message.clone()),
    })
}

fn call_info(info: &current::ToolCallInfo) -> old::ToolCallInfo {
    old::ToolCallInfo {
        id: info.id.clone(),
        name: info.name.clone(),
        server: info.server.clone(),
        tool: info.tool.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_0_1_encoder_gets_every_event_it_knows_and_nothing_else() {
        let events = [
            current::ChatEvent::ResponseInfo(current::ResponseInfo {
                model: "gpt-4o-2024-08-06".into(),
                system_fingerprint: None,
            }),
            current::ChatEvent::TextDelta("hi".into()),
            current::ChatEvent::Done,
        ];
        let old = chat_events(&events);
        assert_eq!(old.len(), 2);
        assert!(matches!(&old[0], old::ChatEvent::TextDelta(text) if text == "hi"));
        assert!(matches!(old[1], old::ChatEvent::Done));
    }
}
