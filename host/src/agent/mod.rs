//! The agent loop: model turn, tool calls, results fed back, repeat.
//!
//! Every surface calls [`Agent::run`] and gets the same canonical
//! [`ChatEvent`] stream; formats differ only in the encoder plugin that
//! turns those events into bytes.

mod outcome;
mod turn;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

pub use crate::plugins::{ChatEvent, Message, Role, ToolCall};
pub use outcome::{ChatOutcome, ToolCallOutcome, collect};

use crate::config::{AgentConfig, ResolvedProvider};
use crate::mcp::{self, McpPool, ToolSet};
use crate::plugins::{
    self, Outbound, PluginFailure, PluginRuntime, ProviderConfig, ProviderInstance, ToolCallReady,
    ToolResult, ToolSpec, TurnEnd,
};
use turn::{CallIds, PendingCall, Turn};
use upstream::{Upstream, UpstreamError};

/// Batches of events in flight between the loop and a response body.
const EVENT_BUFFER: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Plugin(#[from] PluginFailure),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("the provider reported an error: {0}")]
    Provider(String),
    #[error("iteration limit reached: the model still wanted tools after {0} turns")]
    IterationLimit(u32),
    #[error("the client went away")]
    Cancelled,
}

/// One chat to run.
pub struct ChatRequest {
    /// The conversation so far, ending with the new user message.
    pub messages: Vec<Message>,
    pub tools: ToolSet,
    /// The model as the client named it; the provider's default if `None`.
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub iteration_limit: Option<u32>,
}

impl ChatRequest {
    pub fn new(messages: Vec<Message>, tools: ToolSet) -> ChatRequest {
        ChatRequest {
            messages,
            tools,
            model: None,
            max_tokens: None,
            temperature: None,
            top_p: None,
            iteration_limit: None,
        }
    }
}

/// A running chat: its events, and at the end the messages it added.
pub struct ChatRun {
    pub events: mpsc::Receiver<Vec<ChatEvent>>,
    pub transcript: oneshot::Receiver<Vec<Message>>,
}

pub struct Agent {
    plugins: Arc<PluginRuntime>,
    pool: Arc<McpPool>,
    upstream: Upstream,
    provider: ResolvedProvider,
    config: AgentConfig,
}

impl Agent {
    pub fn new(
        plugins: Arc<PluginRuntime>,
        pool: Arc<McpPool>,
        provider: ResolvedProvider,
        config: AgentConfig,
    ) -> Result<Agent, AgentError> {
        let upstream = Upstream::new(Duration::from_secs(config.provider_idle_timeout_secs))?;
        Ok(Agent {
            plugins,
            pool,
            upstream,
            provider,
            config,
        })
    }

    pub fn provider(&self) -> &ResolvedProvider {
        &self.provider
    }

    /// Starts the chat on its own task. Dropping the returned receiver
    /// cancels it at the next event.
    pub fn run(self: &Arc<Self>, request: ChatRequest) -> ChatRun {
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
        let (transcript_tx, transcript) = oneshot::channel();
        let agent = self.clone();
        tokio::spawn(async move {
            let mut added = Vec::new();
            let ending = match agent.drive(request, &events_tx, &mut added).await {
                Ok(()) => ChatEvent::Done,
                Err(AgentError::Cancelled) => return,
                Err(e) => {
                    tracing::warn!("chat failed: {e}");
                    ChatEvent::Error(e.to_string())
                }
            };
            let _ = events_tx.send(vec![ending]).await;
            let _ = transcript_tx.send(added);
        });
        ChatRun { events, transcript }
    }

    async fn drive(
        &self,
        request: ChatRequest,
        events: &mpsc::Sender<Vec<ChatEvent>>,
        added: &mut Vec<Message>,
    ) -> Result<(), AgentError> {
        let mut instance = self
            .plugins
            .provider(&self.provider.plugin)?
            .instantiate()?;
        let limit = request
            .iteration_limit
            .unwrap_or(self.config.iteration_limit)
            .max(1);
        let mut wire = plugins::ChatRequest {
            model: request
                .model
                .clone()
                .unwrap_or_else(|| self.provider.model.clone()),
            messages: request.messages,
            tools: request
                .tools
                .tools
                .iter()
                .map(|t| ToolSpec {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    input_schema: t.input_schema.clone(),
                })
                .collect(),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            top_p: request.top_p,
        };
        let mut ids = CallIds::default();
        for iteration in 1..=limit {
            let mut turn = Turn::new(&request.tools, &mut ids);
            self.model_turn(&mut instance, &wire, &mut turn, events)
                .await?;
            if let Some(message) = turn.provider_error.take() {
                return Err(AgentError::Provider(message));
            }
            let (text, calls, reason) = turn.finish();
            send(
                events,
                vec![ChatEvent::TurnEnd(TurnEnd { iteration, reason })],
            )
            .await?;
            let assistant = Message {
                role: Role::Assistant,
                content: text,
                tool_calls: calls
                    .iter()
                    .map(|c| ToolCall {
                        id: c.info.id.clone(),
                        name: c.info.name.clone(),
                        arguments: c.arguments.clone(),
                    })
                    .collect(),
                tool_call_id: None,
            };
            wire.messages.push(assistant.clone());
            added.push(assistant);
            if calls.is_empty() {
                return Ok(());
            }
            for message in self.execute_calls(calls, &request.tools, events).await? {
                wire.messages.push(message.clone());
                added.push(message);
            }
        }
        Err(AgentError::IterationLimit(limit))
    }

    /// Runs one model turn, forwarding events as the provider streams.
    async fn model_turn(
        &self,
        instance: &mut ProviderInstance,
        request: &plugins::ChatRequest,
        turn: &mut Turn<'_>,
        events: &mpsc::Sender<Vec<ChatEvent>>,
    ) -> Result<(), AgentError> {
        let config = ProviderConfig {
            base_url: self.provider.base_url.clone(),
        };
        let outbound = instance.build_request(&config, request)?;
        let decoder = instance.new_decoder()?;
        match outbound {
            Outbound::Offline(body) => {
                let decoded = instance.feed(decoder, &body)?;
                send(events, turn.apply(decoded)).await?;
            }
            Outbound::Http(http) => {
                let mut response = cancellable(
                    events,
                    self.upstream.send(http, self.provider.api_key.as_ref()),
                )
                .await??;
                while let Some(chunk) =
                    cancellable(events, self.upstream.next_chunk(&mut response)).await??
                {
                    let decoded = instance.feed(decoder, &chunk)?;
                    send(events, turn.apply(decoded)).await?;
                }
            }
        }
        let decoded = instance.finish(decoder)?;
        send(events, turn.apply(decoded)).await
    }

    /// Executes a turn's tool calls concurrently, reporting results in the
    /// order the model made the calls.
    async fn execute_calls(
        &self,
        calls: Vec<PendingCall>,
        tools: &ToolSet,
        events: &mpsc::Sender<Vec<ChatEvent>>,
    ) -> Result<Vec<Message>, AgentError> {
        let mut ready = Vec::with_capacity(calls.len());
        let mut running = FuturesOrdered::new();
        for call in calls {
            let arguments = parse_arguments(&call.arguments);
            // Valid arguments pass through exactly as the model wrote them.
            let shown = match &arguments {
                Ok(args) if args.is_empty() => "{}".to_owned(),
                Ok(_) => call.arguments.trim().to_owned(),
                Err(_) => "{}".to_owned(),
            };
            ready.push(ChatEvent::ToolCall(ToolCallReady {
                call: call.info.clone(),
                arguments: shown,
            }));
            running.push_back(self.execute(call, arguments, tools));
        }
        send(events, ready).await?;
        let mut messages = Vec::new();
        while let Some((result, model_text)) = cancellable(events, running.next()).await? {
            messages.push(Message {
                role: Role::Tool,
                content: model_text,
                tool_calls: Vec::new(),
                tool_call_id: Some(result.call.id.clone()),
            });
            send(events, vec![ChatEvent::ToolResult(result)]).await?;
        }
        Ok(messages)
    }

    /// One tool call; failures become error results the model can read.
    async fn execute(
        &self,
        call: PendingCall,
        arguments: Result<Map<String, Value>, String>,
        tools: &ToolSet,
    ) -> (ToolResult, String) {
        let outcome = match (arguments, tools.find(&call.info.name)) {
            (Err(e), _) => Err(e),
            (_, None) => Err(format!(
                "unknown tool `{}`: it is not among the tools offered",
                call.info.name
            )),
            (Ok(args), Some(binding)) => self
                .pool
                .call(&binding.server, &binding.tool, args)
                .await
                .map_err(|e| e.to_string()),
        };
        match outcome {
            Ok(result) => {
                let text = mcp::result_text(&result);
                let result_json = serde_json::to_string(&result).unwrap_or_default();
                let is_error = result.is_error == Some(true);
                (
                    ToolResult {
                        call: call.info,
                        content: result_json,
                        is_error,
                    },
                    text,
                )
            }
            Err(message) => {
                let content = Value::String(message.clone()).to_string();
                (
                    ToolResult {
                        call: call.info,
                        content,
                        is_error: true,
                    },
                    format!("Error: {message}"),
                )
            }
        }
    }
}

/// Arguments must be a JSON object; empty means none.
fn parse_arguments(text: &str) -> Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the model's tool arguments are not a JSON object".into()),
        Err(e) => Err(format!(
            "the model's tool arguments are not valid JSON: {e}"
        )),
    }
}

async fn send(
    events: &mpsc::Sender<Vec<ChatEvent>>,
    batch: Vec<ChatEvent>,
) -> Result<(), AgentError> {
    if batch.is_empty() {
        return Ok(());
    }
    events.send(batch).await.map_err(|_| AgentError::Cancelled)
}

/// Awaits `work` unless the client goes away first.
async fn cancellable<T>(
    events: &mpsc::Sender<Vec<ChatEvent>>,
    work: impl Future<Output = T>,
) -> Result<T, AgentError> {
    tokio::select! {
        result = work => Ok(result),
        _ = events.closed() => Err(AgentError::Cancelled),
    }
}
