//! {{name}}: an LLM provider for agenthost.
//!
//! `build_request` turns a chat into the provider's HTTP request (the host
//! adds the API key the `auth` scheme names); the decoder turns the
//! streamed response, fed in arbitrary pieces, into events. This starting
//! point answers offline, echoing the last message, so it runs as is;
//! replace `Outbound::Offline` with `Outbound::Http` for a real API.

use agenthost_plugin::lines::{LineDecoder, LineProtocol};
use agenthost_plugin::types::{
    ChatRequest, FinishReason, Outbound, PluginError, ProviderConfig, ProviderEvent,
};
use agenthost_plugin::{Provider, export_provider};

pub struct Echo;

impl Provider for Echo {
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Echoes the last message";

    type Decoder = LineDecoder<Lines>;

    fn build_request(
        _config: ProviderConfig,
        request: ChatRequest,
    ) -> Result<Outbound, PluginError> {
        let last = request.messages.last().map(|m| m.content.as_str());
        let text = last.unwrap_or_default().replace(['\r', '\n'], " ");
        Ok(Outbound::Offline(format!("t You said: {text}\nend\n").into_bytes()))
    }
}

/// `t <text>` lines, then `end`.
#[derive(Default)]
pub struct Lines;

impl LineProtocol for Lines {
    type Event = ProviderEvent;
    type Error = PluginError;

    fn line(&mut self, line: &str, events: &mut Vec<ProviderEvent>) -> Result<(), PluginError> {
        match line {
            "" => {}
            "end" => events.push(ProviderEvent::Finish(FinishReason::Stop)),
            _ => match line.strip_prefix("t ") {
                Some(text) => events.push(ProviderEvent::TextDelta(text.to_owned())),
                None => {
                    return Err(PluginError {
                        code: "decode".into(),
                        message: format!("unexpected line: {line}"),
                    });
                }
            },
        }
        Ok(())
    }
}

export_provider!(Echo);
