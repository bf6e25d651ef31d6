//! The one chat service under every surface.
//!
//! A surface parses its request into a [`ChatInput`], calls
//! [`ChatService::stream`] or [`ChatService::complete`], and answers in its
//! contract's shape. Everything in between lives here, once: the encoder,
//! the route to a provider, the tools offered, the conversation a chat
//! continues (what the client sent, a stored session, or the caller's
//! connected server) and saving what the chat added. Surfaces turn a
//! [`ChatError`] into their own error shape.

mod conversations;
mod encode;
mod frames;
mod runs;
mod sessions;
mod tools;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, Approver, ChatRequest, ChatRun};
pub use crate::agent::{Approval, ChatOutcome, Message, Role, RoutingError, ToolCall, collect};
use crate::auth::{Caller, Principal, tenant};
use crate::config::OnDisconnect;
use crate::connections::Connections;
pub use crate::dispatch::DispatchError;
use crate::dispatch::Dispatcher;
use crate::mcp::McpPool;
/// The header naming the end user a request's tool calls are pinned to.
pub use crate::mcp::call_meta::END_USER_HEADER;
pub use crate::mcp::progress::{Progress, ProgressSink, channel as progress_channel};
pub use crate::mcp::{Catalog, McpError, ToolBinding, ToolSet, ToolSummary};
use crate::plugins::{EncoderPlugin, PluginFailure, PluginRuntime};
pub use crate::store::{SessionSummary, StoredMessage, ToolCallRecord};
use crate::store::{Store, StoreError};
use conversations::Conversations;
pub use encode::ChatStream;
pub use runs::{ApprovalRefusal, CancelRefusal, Run, RunState, RunView, Runs, WaitingFor};
use sessions::{SessionGuard, SessionLocks};
pub use tools::{ServerChoice, ServerRef, ToolChoice};

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The format a request asked for is not a loaded encoder.
    #[error("{0}")]
    UnknownFormat(PluginFailure),
    /// The model names no configured provider or model.
    #[error("{error}")]
    Route { model: String, error: RoutingError },
    #[error(
        "no MCP server is connected: POST /connect/{{server_id}} first (GET /servers lists them)"
    )]
    NotConnected,
    #[error("Session not found")]
    SessionNotFound,
    /// PostgreSQL cannot hold U+0000, and a session must read the same on
    /// every backend.
    #[error("`message` contains a NUL character (U+0000), which a session cannot store: remove it")]
    NulInMessage,
    /// An unknown server or tool, or a URL the policy refuses.
    #[error(transparent)]
    ToolsInvalid(McpError),
    /// A chosen server cannot be reached now.
    #[error(transparent)]
    ToolsUnreachable(McpError),
    #[error(transparent)]
    Store(StoreError),
    /// The encoder could not start the response.
    #[error(transparent)]
    Plugin(PluginFailure),
}

/// One chat, as a surface parsed it.
pub struct ChatInput {
    /// Whose chat it is: its tool calls are checked and logged as theirs.
    pub caller: Caller,
    pub history: History,
    /// The model asked for; the default provider's when `None`.
    pub model: Option<String>,
    pub tools: ToolChoice,
    pub options: ChatOptions,
    pub format: Format,
    pub log: ChatLog,
}

/// The conversation a chat continues.
pub enum History {
    /// The whole conversation, as the client sent it.
    Given(Vec<Message>),
    /// A stored session's history and a new user message; the exchange is
    /// stored, and the session's other chats wait, until the chat ends.
    Session { id: String, message: String },
    /// The caller's conversation with its connected server and a new user
    /// message, remembered when the chat ends.
    Connected { message: String },
}

/// Generation settings; `None` leaves each to the provider or config.
#[derive(Debug, Default)]
pub struct ChatOptions {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Rounds of tool calls; the config's `agent.iteration_limit` when
    /// `None`. A last turn, offered no tools, follows the last round.
    pub iteration_limit: Option<u32>,
}

/// The encoder for a streamed answer.
pub struct Format {
    /// Any loaded encoder a request asked for by name.
    pub requested: Option<String>,
    /// The surface's own; also encodes the error ending a response whose
    /// encoder failed.
    pub own: &'static str,
}

impl Format {
    pub fn own(name: &'static str) -> Format {
        Format {
            requested: None,
            own: name,
        }
    }
}

/// The chat's log line: at `info` when the client asked for it, else at
/// `debug` (a line per chat costs a busy server ~2% of its CPU).
#[derive(Debug, Default)]
pub struct ChatLog {
    pub at_info: bool,
    /// Client metadata written with it.
    pub metadata: Option<Value>,
}

/// How a chat ends, besides handing on its final event.
enum Ending {
    Session { id: String, guard: SessionGuard },
    Conversation { server: String, user: Message },
}

pub struct ChatService {
    agent: Arc<Agent>,
    plugins: Arc<PluginRuntime>,
    pool: Arc<McpPool>,
    connections: Arc<Connections>,
    store: Store,
    dispatcher: Dispatcher,
    sessions: SessionLocks,
    conversations: Arc<Conversations>,
    /// Longest a chat waits for MCP servers that are still starting.
    tools_wait: Duration,
    pub runs: Runs,
    on_disconnect: OnDisconnect,
}

/// How the service runs chats, from the config's `[agent]`.
pub struct ChatSettings {
    /// Longest a chat waits for MCP servers that are still starting.
    pub tools_wait: Duration,
    /// How long an ended run's events are kept.
    pub run_retention: Duration,
    /// What a streamed chat does when its client goes away.
    pub on_disconnect: OnDisconnect,
}

impl ChatService {
    pub fn new(
        agent: Arc<Agent>,
        plugins: Arc<PluginRuntime>,
        pool: Arc<McpPool>,
        connections: Arc<Connections>,
        store: Store,
        dispatcher: Dispatcher,
        settings: ChatSettings,
    ) -> ChatService {
        ChatService {
            agent,
            plugins,
            pool,
            connections,
            store,
            dispatcher,
            sessions: SessionLocks::default(),
            conversations: Arc::default(),
            tools_wait: settings.tools_wait,
            runs: Runs::new(settings.run_retention),
            on_disconnect: settings.on_disconnect,
        }
    }

    /// Why this process cannot serve chats now: a provider plugin or one of
    /// `encoders` not loaded, or the store unreachable. Empty when ready.
    pub async fn unready(&self, encoders: &[&str]) -> Vec<String> {
        let mut reasons: Vec<String> = self
            .agent
            .missing_plugins()
            .into_iter()
            .map(|name| format!("provider plugin `{name}` is not loaded"))
            .collect();
        reasons.extend(
            encoders
                .iter()
                .filter(|name| self.plugins.encoder(name).is_err())
                .map(|name| format!("encoder plugin `{name}` is not loaded")),
        );
        if let Err(e) = self.store.ping().await {
            reasons.push(format!("the store cannot be reached: {e}"));
        }
        reasons
    }

    /// Starts the chat as a new run and returns its answer as an encoded
    /// stream; the chat runs as the stream is read, and if the stream is
    /// dropped, stops or goes on as `agent.on_disconnect` says.
    pub async fn stream(&self, input: ChatInput) -> Result<ChatStream, ChatError> {
        let (encoder, fallback) = self.encoders(&input.format)?;
        let run = self.runs.start(&input.caller, &encoder.info.content_type);
        let approver: Arc<dyn Approver> = run.run.clone();
        let started = self.start(input, run.cancel_token(), Some(approver));
        let (chat, label) = match started.await {
            Ok(started) => started,
            Err(e) => {
                run.discard();
                return Err(e);
            }
        };
        let options = encode::response_options(&run.run.id, &label);
        encode::encode(encoder, fallback, options, chat, run, self.on_disconnect)
            .await
            .map_err(ChatError::Plugin)
    }

    /// Runs the chat to its end and folds its events into one answer.
    pub async fn complete(&self, input: ChatInput) -> Result<ChatOutcome, ChatError> {
        let (mut chat, _) = self.start(input, CancellationToken::new(), None).await?;
        Ok(collect(&mut chat).await)
    }

    /// The encoder a request asked for, else the surface's own; and the
    /// surface's own, for encoder failures.
    fn encoders(
        &self,
        format: &Format,
    ) -> Result<(Arc<EncoderPlugin>, Arc<EncoderPlugin>), ChatError> {
        let own = self
            .plugins
            .encoder(format.own)
            .map_err(ChatError::Plugin)?;
        let chosen = match &format.requested {
            Some(name) => self
                .plugins
                .encoder(name)
                .map_err(ChatError::UnknownFormat)?,
            None => own.clone(),
        };
        Ok((chosen, own))
    }

    /// Routes the model, assembles the conversation and the tools, and
    /// starts the chat, which `cancel` stops and whose calls that need
    /// approval ask `approver`; also the model name the stream is labelled
    /// with.
    async fn start(
        &self,
        input: ChatInput,
        cancel: CancellationToken,
        approver: Option<Arc<dyn Approver>>,
    ) -> Result<(ChatRun, String), ChatError> {
        let ChatInput {
            caller,
            history,
            model,
            tools,
            options,
            log,
            format: _,
        } = input;
        let route = self
            .agent
            .route(model.as_deref())
            .map_err(|error| ChatError::Route {
                model: model.clone().unwrap_or_default(),
                error,
            })?;
        let label = model
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| route.model.clone());
        let wants_connected =
            matches!(history, History::Connected { .. }) || matches!(tools, ToolChoice::Connected);
        let owner = conversations::owner(&caller.principal);
        let connected = match wants_connected {
            true => Some(
                self.conversations
                    .snapshot(&owner)
                    .await
                    .ok_or(ChatError::NotConnected)?,
            ),
            false => None,
        };
        let tenant = caller.tenant().unwrap_or_default().to_owned();
        let (messages, ending) = match history {
            History::Given(messages) => (messages, None),
            History::Session { id, message } => {
                let exchange =
                    sessions::open(&self.store, &self.sessions, &tenant, &id, message).await?;
                let guard = exchange.guard;
                (exchange.messages, Some(Ending::Session { id, guard }))
            }
            History::Connected { message } => {
                let (server, mut messages) = connected.clone().ok_or(ChatError::NotConnected)?;
                let user = Message {
                    role: Role::User,
                    content: message,
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                };
                messages.push(user.clone());
                (messages, Some(Ending::Conversation { server, user }))
            }
        };
        let server = connected.as_ref().map(|(server, _)| server.as_str());
        let tools = self.tool_set(tools, &caller, server).await?;
        log_chat(&log, &caller, &route.model, tools.tools.len());

        let mut request = ChatRequest::new(messages, tools, route, caller);
        request.max_tokens = options.max_tokens;
        request.temperature = options.temperature;
        request.top_p = options.top_p;
        request.iteration_limit = options.iteration_limit;
        request.cancel = cancel;
        request.approver = approver;
        let run = self.agent.run(request);
        let run = match ending {
            None => run,
            Some(Ending::Session { id, guard }) => {
                let store = self.store.clone();
                run.before_end(move |added| sessions::close(store, id, added, guard))
            }
            Some(Ending::Conversation { server, user }) => {
                let conversations = self.conversations.clone();
                run.before_end(move |added| async move {
                    conversations.remember(&owner, &server, user, added).await;
                })
            }
        };
        Ok((run, label))
    }

    /// The tools `choice` offers the caller, as a chat would see them.
    pub async fn tools(&self, caller: &Caller, choice: ToolChoice) -> Result<ToolSet, ChatError> {
        self.tool_set(choice, caller, None).await
    }

    /// Calls one tool for `caller` through the dispatcher, the path every
    /// tool call takes; its progress goes to `progress` when given.
    pub async fn call_tool(
        &self,
        binding: &ToolBinding,
        arguments: serde_json::Map<String, Value>,
        caller: &Caller,
        progress: Option<ProgressSink>,
    ) -> Result<rmcp::model::CallToolResult, DispatchError> {
        self.dispatcher
            .call(binding, arguments, caller, progress)
            .await
    }

    /// The org's tool-call log, newest first.
    pub async fn tool_calls(
        &self,
        org: &str,
        connection: Option<String>,
        limit: u32,
    ) -> Result<Vec<ToolCallRecord>, ChatError> {
        self.dispatcher
            .log(org, connection, limit)
            .await
            .map_err(ChatError::Store)
    }

    /// Connects the user's conversation to a server their tenant sees,
    /// and returns its display name and tools.
    pub async fn connect(
        &self,
        user: &Option<Principal>,
        server_id: &str,
    ) -> Result<(String, Vec<ToolSummary>), ChatError> {
        let server = self
            .pool
            .server(tenant(user), server_id)
            .map_err(ChatError::tools)?;
        let tools = server.summaries().await.map_err(ChatError::tools)?;
        self.conversations
            .connect(conversations::owner(user), server_id)
            .await;
        Ok((server.config.display_name().to_owned(), tools))
    }

    /// The user's connected server, if any, and its tools (the server is
    /// started again if it died).
    pub async fn connected(&self, user: &Option<Principal>) -> (Option<String>, Vec<ToolSummary>) {
        let owner = conversations::owner(user);
        let Some(id) = self.conversations.server(&owner).await else {
            return (None, Vec::new());
        };
        let tools = match self.pool.server(tenant(user), &id) {
            Ok(server) => server.summaries().await,
            Err(e) => Err(e),
        };
        let tools = tools.unwrap_or_else(|e| {
            tracing::warn!("status of the connected server: {e}");
            Vec::new()
        });
        (Some(id), tools)
    }

    /// Ends the user's conversation, and stops its server's session unless
    /// another conversation is connected to it.
    pub async fn disconnect(&self, user: &Option<Principal>) {
        let owner = conversations::owner(user);
        if let Some(server) = self.conversations.disconnect(&owner).await {
            // The id came from the pool; a server removed since is closed.
            let _ = self.pool.disconnect(tenant(user), &server).await;
        }
    }

    pub async fn create_session(
        &self,
        user: &Option<Principal>,
    ) -> Result<SessionSummary, ChatError> {
        let tenant = tenant(user).unwrap_or_default();
        self.store
            .create_session(tenant)
            .await
            .map_err(ChatError::Store)
    }

    /// The user's tenant's sessions.
    pub async fn sessions(
        &self,
        user: &Option<Principal>,
    ) -> Result<Vec<SessionSummary>, ChatError> {
        let tenant = tenant(user).unwrap_or_default();
        self.store.sessions(tenant).await.map_err(ChatError::Store)
    }

    /// A session's history; another tenant's session is not found.
    pub async fn history(
        &self,
        user: &Option<Principal>,
        id: &str,
    ) -> Result<Vec<StoredMessage>, ChatError> {
        let tenant = tenant(user).unwrap_or_default();
        self.store
            .history(tenant, id)
            .await
            .map_err(ChatError::Store)?
            .ok_or(ChatError::SessionNotFound)
    }
}

fn log_chat(log: &ChatLog, caller: &Caller, model: &str, tools: usize) {
    let (org, key) = match &caller.principal {
        Some(p) => (p.org.as_str(), p.key_label.as_str()),
        None => ("", ""),
    };
    let metadata = log.metadata.as_ref().unwrap_or(&Value::Null);
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                $level,
                surface = caller.reason,
                org,
                key,
                model,
                tools,
                metadata = %metadata,
                "chat request"
            )
        };
    }
    if log.at_info {
        line!(tracing::Level::INFO);
    } else {
        line!(tracing::Level::DEBUG);
    }
}
