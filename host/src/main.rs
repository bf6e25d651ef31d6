//! The `agenthost` command line.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use agenthost::config::{Config, LogFormat};
use agenthost::devtools::{self, Kind};

#[derive(Parser)]
#[command(
    version,
    about = "LLM chat over HTTP with MCP tools and sandboxed WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// TOML configuration file; built-in defaults without one.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on; overrides the config (default 127.0.0.1:8000).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Bring the database's schema up to date (`serve` does too, at start).
    Migrate {
        /// TOML configuration file; built-in defaults without one.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Serve the demo tools (time, arithmetic, notes) as an MCP server on stdio.
    DemoMcp,
    /// Write, check and test plugins.
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
}

#[derive(Subcommand)]
enum PluginAction {
    /// Create a plugin crate that builds on its own.
    New {
        /// Plugin name: lowercase letters, digits and `-`.
        name: String,
        #[arg(long, value_enum, default_value = "encoder")]
        kind: Kind,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Load a component as the server would and describe it, or say why
    /// it would be refused.
    Check { file: PathBuf },
    /// Run the conformance suite against a component.
    Test {
        file: PathBuf,
        /// For providers: a recorded response body to decode.
        #[arg(long)]
        recorded: Option<PathBuf>,
    },
    /// List the plugins a running server has loaded.
    List {
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
        /// An admin API key, if the server has keys configured.
        #[arg(long, env = "AGENTHOST_API_KEY")]
        key: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    return_large_buffers_to_the_system();
    agenthost::server::raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve { config, listen } => {
            let mut config = Config::load(config.as_deref())?;
            let _logs = init_logging(config.log_format);
            // Both ring and aws-lc could serve rustls; choose explicitly.
            let _ = rustls::crypto::ring::default_provider().install_default();
            if let Some(listen) = listen {
                config.listen = listen;
            }
            let own_exe = std::env::current_exe().context("cannot locate the agenthost binary")?;
            runtime.block_on(agenthost::server::serve(config, &own_exe))?;
        }
        Command::Migrate { config } => {
            let config = Config::load(config.as_deref())?;
            let _logs = init_logging(config.log_format);
            runtime.block_on(agenthost::server::open_store(&config))?;
            println!("the database schema is up to date");
        }
        Command::DemoMcp => runtime.block_on(agenthost::demo_mcp::serve())?,
        Command::Plugin { action } => print!("{}", plugin(action, &runtime)?),
    }
    Ok(())
}

fn plugin(action: PluginAction, runtime: &tokio::runtime::Runtime) -> anyhow::Result<String> {
    Ok(match action {
        PluginAction::New { name, kind, dir } => devtools::new(&name, kind, &dir)?,
        PluginAction::Check { file } => runtime.block_on(devtools::check(&file))?,
        PluginAction::Test { file, recorded } => {
            runtime.block_on(devtools::test(&file, recorded.as_deref()))?
        }
        PluginAction::List { url, key } => runtime.block_on(list_plugins(&url, key))?,
    })
}

/// Gives buffers of 1 MiB and more their own mappings, unmapped on free.
/// glibc otherwise raises that threshold after each large free, and a
/// plugin's megabytes of output then stay in the heap for good.
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// `GET /admin/plugins` of a running server, one plugin per line.
async fn list_plugins(url: &str, key: Option<String>) -> anyhow::Result<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request =
        reqwest::Client::new().get(format!("{}/admin/plugins", url.trim_end_matches('/')));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {url}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .context("the server did not answer JSON")?;
    if !status.is_success() {
        anyhow::bail!("the server answered {status}: {body}");
    }
    let mut out = String::new();
    for plugin in body["plugins"].as_array().into_iter().flatten() {
        let field = |name: &str| plugin[name].as_str().unwrap_or_default().to_owned();
        out.push_str(&format!(
            "{:<14} {:<8} {:<8} {}  ({})\n",
            field("name"),
            field("kind"),
            field("version"),
            field("description"),
            field("origin")
        ));
    }
    Ok(out)
}

/// What is logged without `RUST_LOG`: agenthost at `info`, its
/// dependencies (the compiler, the MCP and HTTP libraries) only when they
/// warn.
const DEFAULT_FILTER: &str = "warn,agenthost=info";

/// Logs go to stderr, as text or JSON lines; `RUST_LOG` replaces the
/// default filter. Lines are written by a thread of their own, buffered
/// while more are queued: a write per line cost a busy server a tenth of
/// a chat's CPU. The returned guard writes what is left when dropped.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("agenthost-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    guard
}
