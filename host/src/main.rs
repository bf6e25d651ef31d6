//! The `agenthost` command line.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use agenthost::config::Config;

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
    /// Serve the demo tools (time, arithmetic, notes) as an MCP server on stdio.
    DemoMcp,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve { config, listen } => {
            init_logging();
            // Both ring and aws-lc could serve rustls; choose explicitly.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut config = Config::load(config.as_deref())?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            let own_exe = std::env::current_exe().context("cannot locate the agenthost binary")?;
            runtime.block_on(agenthost::server::serve(config, &own_exe))?;
        }
        Command::DemoMcp => runtime.block_on(agenthost::demo_mcp::serve())?,
    }
    Ok(())
}

/// Logs go to stderr; `RUST_LOG` overrides the default `info` level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
