//! The agent loop: model turn, tool calls, results fed back, repeat.
//!
//! Every surface calls [`Agent::run`] and gets the same canonical
//! [`ChatEvent`] stream; formats differ only in the encoder plugin that
//! turns those events into bytes.

mod approvals;
mod outcome;
mod routing;
mod run;
mod tools;
mod turn;
mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use opentelemetry::context::FutureExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::plugins::{ChatEvent, Message, Role, ToolCall};
pub use approvals::{Approval, Approver};
pub use outcome::{ChatOutcome, ToolCallOutcome, collect};
pub use routing::{Route, Router, RoutingError};
pub use run::{ChatRun, is_final};

use crate::auth::Caller;
use crate::config::{AgentConfig, ResolvedProviders};
use crate::dispatch::Dispatcher;
use crate::mcp::ToolSet;
use crate::plugins::{
    self, Outbound, PluginFailure, PluginRuntime, ProviderConfig, ProviderInstance, TokenUsage,
    ToolSpec, TurnEnd,
};
use crate::traces::Traces;
use crate::usage::{UsageLog, UsageMeter};
use turn::{CallIds, Turn};
use upstream::{ProviderBody, Upstream, UpstreamError};

/// Batches of events in flight between the loop and a response body.
const EVENT_BUFFER: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Plugin(#[from] PluginFailure),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The provider failed before its response started; another may serve.
    #[error(transparent)]
    Unavailable(UpstreamError),
    #[error("the provider reported an error: {0}")]
    Provider(String),
    #[error(
        "iteration limit reached: the model still called tools after {0} rounds of tool calls, in its last turn, which was offered none"
    )]
    IterationLimit(u32),
    #[error("the server is shutting down: the chat was ended before its answer was complete")]
    ShuttingDown,
    #[error("the run was cancelled: the chat was stopped before its answer was complete")]
    Cancelled,
}

impl AgentError {
    /// A stable name for the kind of failure, for traces' `error.type`.
    fn kind(&self) -> &'static str {
        match self {
            AgentError::Plugin(_) => "plugin",
            AgentError::Upstream(_) => "upstream",
            AgentError::Unavailable(_) => "unavailable",
            AgentError::Provider(_) => "provider_error",
            AgentError::IterationLimit(_) => "iteration_limit",
            AgentError::ShuttingDown => "shutting_down",
            AgentError::Cancelled => "cancelled",
        }
    }
}

/// One chat to run.
pub struct ChatRequest {
    /// The conversation so far, ending with the new user message.
    pub messages: Vec<Message>,
    pub tools: ToolSet,
    /// Provider and model, from [`Agent::route`].
    pub route: Route,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub iteration_limit: Option<u32>,
    /// Whose tool calls these are; checked and logged by the dispatcher.
    pub caller: Caller,
    /// Stops the chat (`POST /runs/{id}/cancel`).
    pub cancel: CancellationToken,
    /// Who answers its calls that need approval; without one, they are
    /// refused.
    pub approver: Option<Arc<dyn Approver>>,
}

impl ChatRequest {
    pub fn new(
        messages: Vec<Message>,
        tools: ToolSet,
        route: Route,
        caller: Caller,
    ) -> ChatRequest {
        ChatRequest {
            messages,
            tools,
            route,
            caller,
            max_tokens: None,
            temperature: None,
            top_p: None,
            iteration_limit: None,
            cancel: CancellationToken::new(),
            approver: None,
        }
    }
}

/// One chat counted in [`Agent::running_chats`] while it lives.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn enter(count: &Arc<AtomicUsize>) -> Running {
        count.fetch_add(1, Ordering::Relaxed);
        Running(count.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Agent {
    plugins: Arc<PluginRuntime>,
    upstream: Upstream,
    router: Router,
    dispatcher: Dispatcher,
    usage: UsageLog,
    traces: Traces,
    config: AgentConfig,
    /// Cancelled when a shutdown's grace period is over.
    ending: CancellationToken,
    /// Chats whose driver has not finished.
    running: Arc<AtomicUsize>,
}

impl Agent {
    /// Fails if a configured provider names a plugin that is not loaded.
    pub fn new(
        plugins: Arc<PluginRuntime>,
        providers: ResolvedProviders,
        dispatcher: Dispatcher,
        usage: UsageLog,
        traces: Traces,
        config: AgentConfig,
    ) -> Result<Agent, AgentError> {
        for provider in &providers.all {
            plugins.provider(&provider.plugin)?;
        }
        let upstream = Upstream::new(&config)?;
        Ok(Agent {
            plugins,
            upstream,
            router: Router::new(providers),
            dispatcher,
            usage,
            traces,
            config,
            ending: CancellationToken::new(),
            running: Arc::default(),
        })
    }

    /// Chats started and not yet ended.
    pub fn running_chats(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Ends every chat, now and from now on, with an error event saying the
    /// server is shutting down; what each added so far is kept.
    pub fn end_chats(&self) {
        self.ending.cancel();
    }

    /// The configured providers' plugins that are not loaded now (a reload
    /// may have dropped one).
    pub fn missing_plugins(&self) -> Vec<String> {
        self.router
            .all()
            .filter(|p| self.plugins.provider(&p.plugin).is_err())
            .map(|p| p.plugin.clone())
            .collect()
    }

    /// The provider and model for a requested model name.
    pub fn route(&self, model: Option<&str>) -> Result<Route, RoutingError> {
        self.router.route(model)
    }

    /// The chat, ready to run as its events are read (see [`ChatRun`]).
    pub fn run(self: &Arc<Self>, request: ChatRequest) -> ChatRun {
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
        let agent = self.clone();
        let running = Running::enter(&self.running);
        let mut meter = self.usage.meter(&request.caller);
        let trace = self.traces.chat(
            &request.route.model,
            request.caller.principal.as_ref().map(|p| p.org.as_str()),
        );
        let cancel = request.cancel.clone();
        let driver = async move {
            let _running = running;
            let mut added = Vec::new();
            let driven = tokio::select! {
                biased;
                driven = agent.drive(request, &events_tx, &mut added, &mut meter) => driven,
                () = agent.ending.cancelled() => Err(AgentError::ShuttingDown),
                () = cancel.cancelled() => Err(AgentError::Cancelled),
            };
            // Before the final event: a client that has seen a chat end
            // finds its usage counted.
            drop(meter);
            let ending = match driven {
                Ok(()) => {
                    agent.traces.end_chat(None);
                    ChatEvent::Done
                }
                Err(AgentError::Cancelled) => {
                    tracing::info!("chat cancelled");
                    agent
                        .traces
                        .end_chat(Some(("cancelled", &AgentError::Cancelled)));
                    ChatEvent::Error(AgentError::Cancelled.to_string())
                }
                Err(e) => {
                    tracing::warn!("chat failed: {e}");
                    agent.traces.end_chat(Some((e.kind(), &e)));
                    ChatEvent::Error(e.to_string())
                }
            };
            let _ = events_tx.send(vec![ending]).await;
            added
        };
        match trace {
            Some(cx) => ChatRun::new(Box::pin(driver.with_context(cx)), events),
            None => ChatRun::new(Box::pin(driver), events),
        }
    }

    async fn drive(
        &self,
        request: ChatRequest,
        events: &mpsc::Sender<Vec<ChatEvent>>,
        added: &mut Vec<Message>,
        meter: &mut UsageMeter,
    ) -> Result<(), AgentError> {
        let mut route = request.route;
        let mut instance = self
            .plugins
            .provider(&route.provider.plugin)?
            .instantiate()
            .await?;
        let mut fell_back = false;
        let limit = request
            .iteration_limit
            .unwrap_or(self.config.iteration_limit)
            .max(1);
        let mut wire = plugins::ChatRequest {
            model: route.model.clone(),
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
        // `limit` bounds the rounds of tool calls. After the last round the
        // model gets one more turn, offered no tools, so that it answers
        // with what the tools returned instead of the chat failing.
        let mut iteration = 0;
        loop {
            iteration += 1;
            let last = iteration > limit;
            if last {
                wire.tools.clear();
            }
            let (text, calls, reason) = loop {
                let mut turn = Turn::new(&request.tools, &mut ids);
                let span = self.traces.model_request(
                    &route.provider.name,
                    &route.provider.plugin,
                    &route.provider.base_url,
                    &wire,
                );
                let answered = self
                    .model_turn(&mut instance, &route, &wire, &mut turn, events)
                    .await;
                span.end(
                    turn.response_model.as_deref(),
                    turn.usage.as_ref(),
                    turn.reason(),
                    answered
                        .as_ref()
                        .err()
                        .map(|e| (e.kind(), e as &dyn std::fmt::Display)),
                );
                if let Some(used) = turn.usage.take() {
                    count_usage(meter, &route, used);
                }
                match answered {
                    Ok(()) => break turn.finish().map_err(AgentError::Provider)?,
                    Err(AgentError::Unavailable(error)) => {
                        // Nothing of this turn reached the client yet, so
                        // another provider may still answer it.
                        let Some(next) = self.router.fallback_for(&route).filter(|_| !fell_back)
                        else {
                            return Err(AgentError::Unavailable(error));
                        };
                        tracing::warn!(from = %route.provider.name, to = %next.provider.name, "falling back: {error}");
                        instance = self
                            .plugins
                            .provider(&next.provider.plugin)?
                            .instantiate()
                            .await?;
                        wire.model = next.model.clone();
                        route = next;
                        fell_back = true;
                    }
                    Err(error) => return Err(error),
                }
            };
            let turn_end = ChatEvent::TurnEnd(TurnEnd { iteration, reason });
            if last && !calls.is_empty() {
                send(events, vec![turn_end]).await;
                return Err(AgentError::IterationLimit(limit));
            }
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
            let (calls, mut announced) = tools::ready_calls(calls);
            announced.push(turn_end);
            send(events, announced).await;
            if calls.is_empty() {
                return Ok(());
            }
            for message in self
                .execute_calls(
                    calls,
                    &request.tools,
                    &request.caller,
                    request.approver.as_deref(),
                    events,
                )
                .await
            {
                wire.messages.push(message.clone());
                added.push(message);
            }
        }
    }

    /// Runs one model turn, forwarding events as the provider streams.
    async fn model_turn(
        &self,
        instance: &mut ProviderInstance,
        route: &Route,
        request: &plugins::ChatRequest,
        turn: &mut Turn<'_>,
        events: &mpsc::Sender<Vec<ChatEvent>>,
    ) -> Result<(), AgentError> {
        let config = ProviderConfig {
            base_url: route.provider.base_url.clone(),
        };
        let outbound = instance.build_request(&config, request).await?;
        let decoder = instance.new_decoder().await?;
        match outbound {
            Outbound::Offline(body) => {
                let decoded = instance.feed(decoder, &body).await?;
                send(events, turn.apply(decoded)).await;
            }
            Outbound::Http(http) => {
                let key = route.provider.api_key.as_ref();
                let response = self
                    .upstream
                    .send(&http, &route.provider, key)
                    .await
                    .map_err(AgentError::Unavailable)?;
                let mut body = ProviderBody::new(response);
                while let Some(chunk) = self.upstream.next_chunk(&mut body).await? {
                    let decoded = instance.feed(decoder, &chunk).await?;
                    send(events, turn.apply(decoded)).await;
                }
            }
        }
        let decoded = instance.finish(decoder).await?;
        send(events, turn.apply(decoded)).await;
        Ok(())
    }
}

fn count_usage(meter: &mut UsageMeter, route: &Route, used: TokenUsage) {
    let provider = &route.provider.name;
    meter.add(
        provider,
        &route.model,
        used.input_tokens,
        used.output_tokens,
    );
    crate::metrics::model_tokens(
        provider,
        route.model_label(),
        used.input_tokens,
        used.output_tokens,
    );
}

/// Queues a batch for the chat's reader. The reader is dropped only
/// together with the chat (see [`ChatRun`]), so it is always there.
async fn send(events: &mpsc::Sender<Vec<ChatEvent>>, batch: Vec<ChatEvent>) {
    if !batch.is_empty() {
        let _ = events.send(batch).await;
    }
}
