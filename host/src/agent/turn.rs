//! Assembling one model turn from provider events.
//!
//! Providers stream a tool call as a start (index, id, name) followed by
//! argument fragments. The assembler forwards each piece to the client as
//! it arrives and keeps the whole calls for execution.

use std::collections::HashSet;

use crate::mcp::ToolSet;
use crate::plugins::{
    ChatEvent, FinishReason, ProviderEvent, TokenUsage, ToolCallArgsDelta, ToolCallInfo,
};

/// Keeps tool-call ids unique within one chat request, whatever the
/// provider sends (some send none, mocks may repeat them).
#[derive(Default)]
pub struct CallIds {
    seen: HashSet<String>,
    next: u32,
}

impl CallIds {
    pub fn assign(&mut self, provided: &str) -> String {
        if !provided.is_empty() && self.seen.insert(provided.to_owned()) {
            return provided.to_owned();
        }
        loop {
            self.next += 1;
            let id = format!("call_{}", self.next);
            if self.seen.insert(id.clone()) {
                return id;
            }
        }
    }
}

pub struct PendingCall {
    pub info: ToolCallInfo,
    /// The arguments exactly as the model wrote them.
    pub arguments: String,
}

pub struct Turn<'a> {
    tools: &'a ToolSet,
    ids: &'a mut CallIds,
    pub text: String,
    /// Calls in the order they started, with the provider's index for each.
    calls: Vec<(u32, PendingCall)>,
    reason: Option<FinishReason>,
    provider_error: Option<String>,
    /// What the response cost, when the provider said.
    pub usage: Option<TokenUsage>,
    /// The model that answered, when the provider said.
    pub response_model: Option<String>,
}

impl<'a> Turn<'a> {
    pub fn new(tools: &'a ToolSet, ids: &'a mut CallIds) -> Turn<'a> {
        Turn {
            tools,
            ids,
            text: String::new(),
            calls: Vec::new(),
            reason: None,
            provider_error: None,
            usage: None,
            response_model: None,
        }
    }

    /// Applies decoded events and returns what the client should see.
    pub fn apply(&mut self, events: Vec<ProviderEvent>) -> Vec<ChatEvent> {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            match event {
                ProviderEvent::TextDelta(text) => {
                    self.text.push_str(&text);
                    out.push(ChatEvent::TextDelta(text));
                }
                ProviderEvent::ToolCallBegin(begin) => {
                    if self.calls.iter().any(|(index, _)| *index == begin.index) {
                        continue;
                    }
                    let info = self.resolve(&begin.id, begin.name);
                    out.push(ChatEvent::ToolCallStart(info.clone()));
                    self.calls.push((
                        begin.index,
                        PendingCall {
                            info,
                            arguments: String::new(),
                        },
                    ));
                }
                ProviderEvent::ToolCallFragment(fragment) => {
                    let position = match self.calls.iter().position(|(i, _)| *i == fragment.index) {
                        Some(position) => position,
                        None => {
                            // A fragment without a start: keep it, so the
                            // call fails visibly instead of vanishing.
                            let info = self.resolve("", String::new());
                            out.push(ChatEvent::ToolCallStart(info.clone()));
                            self.calls.push((
                                fragment.index,
                                PendingCall {
                                    info,
                                    arguments: String::new(),
                                },
                            ));
                            self.calls.len() - 1
                        }
                    };
                    let call = &mut self.calls[position].1;
                    call.arguments.push_str(&fragment.fragment);
                    out.push(ChatEvent::ToolCallArgsDelta(ToolCallArgsDelta {
                        id: call.info.id.clone(),
                        fragment: fragment.fragment,
                    }));
                }
                ProviderEvent::ResponseInfo(info) => {
                    self.response_model = Some(info.model.clone());
                    out.push(ChatEvent::ResponseInfo(info));
                }
                ProviderEvent::Finish(reason) => self.reason = Some(reason),
                ProviderEvent::Usage(usage) => self.usage = Some(usage),
                ProviderEvent::Error(message) => self.provider_error = Some(message),
            }
        }
        out
    }

    fn resolve(&mut self, provided_id: &str, name: String) -> ToolCallInfo {
        let (server, tool) = match self.tools.find(&name) {
            Some(binding) => (binding.server.clone(), binding.tool.clone()),
            None => (String::new(), name.clone()),
        };
        ToolCallInfo {
            id: self.ids.assign(provided_id),
            name,
            server,
            tool,
        }
    }

    /// Why the provider said the turn ended, if it has.
    pub fn reason(&self) -> Option<FinishReason> {
        self.reason
    }

    /// The calls to execute and why the turn ended, or the error the
    /// provider reported in its stream. Calls are executed even when a
    /// provider says `stop` alongside them (some do).
    pub fn finish(self) -> Result<(String, Vec<PendingCall>, FinishReason), String> {
        if let Some(error) = self.provider_error {
            return Err(error);
        }
        let calls: Vec<PendingCall> = self.calls.into_iter().map(|(_, call)| call).collect();
        let reason = match self.reason {
            _ if !calls.is_empty() => FinishReason::ToolCalls,
            Some(reason) => reason,
            None => FinishReason::Stop,
        };
        Ok((self.text, calls, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::ToolBinding;
    use crate::plugins::{ToolCallBegin, ToolCallFragment};

    fn tools() -> ToolSet {
        let config: crate::config::McpServerConfig =
            toml::from_str("id = \"demo\"\ntransport = \"stdio\"\ncommand = \"true\"").unwrap();
        let pool = crate::mcp::McpPool::new(vec![config], Default::default(), 1 << 20, None);
        ToolSet {
            tools: vec![ToolBinding {
                name: "demo__calculate".into(),
                server: "demo".into(),
                tool: "calculate".into(),
                description: String::new(),
                input_schema: "{}".into(),
                read_only: true,
                needs_approval: false,
                listed: std::sync::Arc::new(rmcp::model::Tool::new(
                    "calculate",
                    "",
                    serde_json::Map::new(),
                )),
                entry: pool.server(None, "demo").unwrap(),
            }],
        }
    }

    #[test]
    fn assembles_fragmented_calls_and_keeps_ids_unique() {
        let tools = tools();
        let mut ids = CallIds::default();
        ids.assign("call_a");
        let mut turn = Turn::new(&tools, &mut ids);
        let out = turn.apply(vec![
            ProviderEvent::TextDelta("hm".into()),
            ProviderEvent::ToolCallBegin(ToolCallBegin {
                index: 0,
                id: "call_a".into(),
                name: "demo__calculate".into(),
            }),
            ProviderEvent::ToolCallFragment(ToolCallFragment {
                index: 0,
                fragment: "{\"expr".into(),
            }),
            ProviderEvent::ToolCallFragment(ToolCallFragment {
                index: 0,
                fragment: "ession\":\"1+1\"}".into(),
            }),
            ProviderEvent::Finish(FinishReason::Stop),
        ]);
        assert_eq!(out.len(), 4);
        let (text, calls, reason) = turn.finish().unwrap();
        assert_eq!(text, "hm");
        assert_eq!(reason, FinishReason::ToolCalls);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].arguments, r#"{"expression":"1+1"}"#);
        assert_eq!(calls[0].info.server, "demo");
        assert_eq!(calls[0].info.tool, "calculate");
        assert_ne!(
            calls[0].info.id, "call_a",
            "a repeated provider id is replaced"
        );
    }
}
