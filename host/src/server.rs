//! Assembling the server from its configuration and running it until a
//! shutdown signal, then stopping every MCP child process.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, AgentError};
use crate::auth::ApiKeys;
use crate::chat::{ChatService, ChatSettings};
use crate::config::{Config, ConfigError, Env, ProcessEnv, seconds};
use crate::connections::Connections;
use crate::dispatch::Dispatcher;
use crate::http::{self, AppState, HttpConfig, InvalidOrigin};
use crate::mcp::{McpPool, UrlPolicy};
use crate::plugins::{PluginFailure, PluginRuntime, SandboxLimits};
use crate::registry::Registry;
use crate::sealing::Sealer;
use crate::store::{Change, Database, Store, StoreError, describe};
use crate::usage::UsageLog;
use tokio::sync::broadcast;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plugins(#[from] PluginFailure),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Cors(#[from] InvalidOrigin),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Traces(#[from] crate::traces::TracesError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
}

pub async fn serve(config: Config, own_exe: &Path) -> Result<(), ServeError> {
    // Before anything that keeps a metric's handle is made.
    let metrics = crate::metrics::install();
    let (traces, trace_export) = crate::traces::start(&config.telemetry).await?;
    let cache_dir = config
        .cache_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("plugin-cache"));
    let mut plugins = PluginRuntime::new(
        SandboxLimits::from_config(&config.limits),
        Some(cache_dir.clone()),
    )
    .await?;
    plugins.allow_replacing(config.replace_builtin_plugins.clone());
    plugins.watch_dir(config.plugins_dir.clone());
    let plugins = Arc::new(plugins);
    plugins.reload().await;
    reload_on_hangup(plugins.clone());

    let providers = config.resolve_providers(&ProcessEnv)?;
    for provider in &providers.all {
        tracing::info!(
            provider = %provider.name,
            plugin = %provider.plugin,
            model = %provider.model,
            base_url = %provider.base_url,
            "provider available ({})",
            provider.origin
        );
        if provider.api_key.is_none() && !provider.api_key_env.is_empty() {
            tracing::warn!(
                provider = %provider.name,
                "{} is not set: requests to this provider are sent without a key",
                provider.api_key_env
            );
        }
    }
    tracing::info!(provider = %providers.default, "default provider");
    if providers.default == "mock" {
        tracing::info!(
            "the default is the offline mock; set OPENAI_API_KEY / OPENAI_BASE_URL or ANTHROPIC_API_KEY for a real model"
        );
    }

    let url_policy =
        UrlPolicy::new(&config.security.allow_mcp_networks).map_err(ConfigError::Invalid)?;
    let pool = Arc::new(McpPool::new(
        config.mcp_servers(own_exe),
        url_policy,
        config.limits.tool_result_max_bytes,
        Some(cache_dir),
    ));
    let keys = ApiKeys::from_config(&config.api_keys, &ProcessEnv)?;
    announce_mode(&config, &keys)?;
    let key_env = config.security.connection_key_env.clone();
    let sealer = connection_sealer(&key_env)?;
    let store = open_store(&config).await?;
    let changes = store.changes();
    let registry = Registry::new(
        pool.clone(),
        store.clone(),
        sealer.clone(),
        key_env.clone(),
        config.security.allow_stdio_registration,
    );
    registry.restore().await?;
    // Cancelled on shutdown, so open MCP event streams end and the
    // graceful shutdown does not wait on them forever.
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::new(store.clone(), traces.clone());
    let usage = UsageLog::start(store.clone());
    let agent = Arc::new(Agent::new(
        plugins.clone(),
        providers,
        dispatcher.clone(),
        usage.clone(),
        traces,
        config.agent.clone(),
    )?);
    let chats = agent.clone();
    let connections = Arc::new(Connections::new(
        store.clone(),
        pool.clone(),
        sealer,
        key_env,
    ));
    let chat = ChatService::new(
        agent,
        plugins.clone(),
        pool.clone(),
        connections.clone(),
        store,
        dispatcher,
        ChatSettings {
            tools_wait: seconds(config.agent.tools_wait_secs),
            run_retention: seconds(config.agent.run_retention_secs),
            on_disconnect: config.agent.on_disconnect,
        },
    );
    let state = Arc::new(AppState {
        chat,
        registry,
        connections,
        plugins,
        usage: usage.clone(),
        keys,
        metrics,
        metrics_public: config.telemetry.metrics_public,
    });
    if let Some(changes) = changes {
        tokio::spawn(follow_changes(changes, state.clone()));
    }
    let http_config = HttpConfig {
        listen: config.listen,
        cors_origins: &config.cors.allowed_origins,
        allowed_hosts: &config.security.allowed_hosts,
        max_body_bytes: config.limits.max_body_bytes,
    };
    let app = http::router(state, http_config, shutdown.clone())?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    // Without TCP_NODELAY, a stream's first event waits behind the
    // unacknowledged headers for the client's delayed ACK (40 ms on Linux).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY on an accepted connection: {e}");
        }
    });
    let (stop_accepting, stopped_accepting) = tokio::sync::oneshot::channel();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stopped_accepting.await;
    });
    let grace = Duration::from_secs_f64(config.shutdown_grace_secs.clamp(0.0, 86_400.0));
    let served = tokio::select! {
        served = server.into_future() => served,
        () = on_signals(&chats, grace, shutdown, stop_accepting) => {
            tracing::warn!("stopping without waiting for open connections");
            Ok(())
        }
    };
    pool.shutdown().await;
    usage.flush().await;
    if let Some(export) = trace_export {
        export.shutdown().await;
    }
    served?;
    Ok(())
}

/// How often a shutdown says what it still waits for.
const SHUTDOWN_REPORT: Duration = Duration::from_secs(5);

/// The first signal stops accepting connections and lets open chats go
/// on for `grace`, then ends them (each stream closes with an error event
/// in its format); a second signal ends them at once. Returns when the
/// server should stop waiting for open connections: on a signal after the
/// chats were ended.
async fn on_signals(
    chats: &Agent,
    grace: Duration,
    shutdown: CancellationToken,
    stop_accepting: tokio::sync::oneshot::Sender<()>,
) {
    shutdown_signal().await;
    tracing::info!(
        chats = chats.running_chats(),
        "shutting down: no new connections; open chats may go on for {} s",
        grace.as_secs_f64()
    );
    shutdown.cancel();
    let _ = stop_accepting.send(());
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    let mut report = tokio::time::interval_at(
        tokio::time::Instant::now() + SHUTDOWN_REPORT,
        SHUTDOWN_REPORT,
    );
    let signalled_again = loop {
        tokio::select! {
            () = &mut deadline => break false,
            () = shutdown_signal() => break true,
            _ = report.tick() => tracing::info!(chats = chats.running_chats(), "shutting down: waiting for open chats"),
        }
    };
    let running = chats.running_chats();
    if signalled_again {
        tracing::warn!(chats = running, "second signal: ending open chats now");
    } else if running > 0 {
        tracing::warn!(chats = running, "grace period over: ending open chats");
    }
    chats.end_chats();
    if !signalled_again {
        shutdown_signal().await;
    }
}

/// Opens the store the config names, its schema brought up to date, and
/// says which it is (never with a password).
pub async fn open_store(config: &Config) -> Result<Store, ServeError> {
    let database = config.database(&ProcessEnv)?;
    let store = Store::open(&database, config.pool_limits()).await?;
    match &database {
        Database::Sqlite(path) => tracing::info!("store: SQLite at {}", path.display()),
        Database::Postgres(url) => tracing::info!("store: PostgreSQL at {}", describe(url)),
    }
    Ok(store)
}

/// Follows what other replicas change in the shared store: registered
/// servers are connected (or stopped) here too, and an org's cached
/// connections are read again.
async fn follow_changes(mut changes: broadcast::Receiver<Change>, state: Arc<AppState>) {
    loop {
        let change = match changes.recv().await {
            Ok(change) => change,
            // Fell behind: some changes were missed, so reload it all.
            Err(broadcast::error::RecvError::Lagged(_)) => Change::Everything,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if matches!(change, Change::Servers | Change::Everything)
            && let Err(e) = state.registry.sync().await
        {
            tracing::warn!("cannot follow the servers other replicas registered: {e}");
        }
        match change {
            Change::Connections { org } => state.connections.refresh(Some(&org)).await,
            Change::Everything => state.connections.refresh(None).await,
            Change::Servers => {}
        }
    }
}

/// Says at start who may call, and refuses to serve every address with no
/// keys unless told to.
fn announce_mode(config: &Config, keys: &ApiKeys) -> Result<(), ConfigError> {
    if !keys.is_empty() {
        tracing::info!(
            "keyed mode: every route but GET /, /healthz and /readyz needs one of the [[api_keys]]; each key's org is its tenant"
        );
        return Ok(());
    }
    if !config.listen.ip().is_loopback() && !config.security.anonymous {
        return Err(ConfigError::Invalid(format!(
            "listening on {} with no [[api_keys]] would let anyone who reaches it run tools and read every chat: add an [[api_keys]] entry (key_env = \"...\", org, role = \"admin\"), listen on 127.0.0.1, or set security.anonymous = true to accept that",
            config.listen
        )));
    }
    tracing::info!(
        "local mode: no [[api_keys]], so every caller is the local user; Feather, TrueFoundry and /mcp/ need a key and answer 401"
    );
    Ok(())
}

/// The key that seals credentials at rest, if its variable is set.
fn connection_sealer(var: &str) -> Result<Option<Sealer>, ConfigError> {
    let Some(hex) = ProcessEnv.var(var) else {
        tracing::info!("{var} is not set: org connections are unavailable until it is");
        return Ok(None);
    };
    Sealer::from_hex(&hex)
        .map(Some)
        .map_err(|e| ConfigError::Invalid(format!("{var}: {e}")))
}

/// SIGHUP loads the plugins directory again.
fn reload_on_hangup(plugins: Arc<PluginRuntime>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; use POST /admin/plugins/reload");
            return;
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading plugins");
                plugins.reload_off_workers().await;
            }
        });
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return interrupt.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or_default();
}

/// Raises the soft open-file limit to the hard one: each open stream holds
/// two sockets, and the usual soft default of 1,024 would cap a server at
/// a few hundred streams.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
