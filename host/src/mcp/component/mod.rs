//! Component MCP servers (`transport = "wasm"`): a `wasi:cli` command
//! component that speaks MCP on stdin and stdout, exactly as a stdio
//! server would, run inside this process by wasmtime instead of as a
//! child process.
//!
//! It gets what its grants name and nothing else: preopened directories,
//! `host:port` pairs for `wasi:http` (see [`http`]), its environment, a
//! memory cap, and CPU time per tool call (see [`cpu`]). Sockets are
//! linked but deny everything. Its stdio is wired to the MCP client in
//! memory. The guest yields to the executor every epoch tick, so a loop
//! in it never holds a worker thread; a trap or an overrun ends the
//! instance, fails the calls it was serving with the reason, and the
//! server starts afresh on its next use, as a stdio server would.

mod check;
mod cpu;
mod http;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::SystemTime;

use tokio::io::{AsyncRead, DuplexStream, ReadBuf};
use tokio_util::task::AbortOnDropHandle;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::cli::{AsyncStdinStream, AsyncStdoutStream};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::UrlPolicy;
use super::connect::{self, Client};
use super::pool_client::lifecycle;
use super::stderr::{STDERR_GRACE, StderrTail, log_stderr};
use crate::config::{Grants, McpServerConfig};
use crate::wasm::{CompileCache, MemoryCap};
pub use check::ServerCheck;
pub use cpu::CallInFlight;
use cpu::{CallClock, CpuMeter};

/// Bytes in flight on each of the guest's stdio pipes.
const PIPE_BYTES: usize = 256 << 10;

/// Runs component servers: one engine for all of them, made on first use,
/// and each component compiled once.
pub struct ComponentHost {
    policy: UrlPolicy,
    cache: Arc<CompileCache>,
    runtime: OnceLock<Runtime>,
    compiled: Mutex<HashMap<PathBuf, Compiled>>,
}

struct Runtime {
    engine: Engine,
    linker: Linker<ServerState>,
}

/// A compiled component, and the file it came from as it was then, so a
/// replaced file is compiled again on the next start.
#[derive(Clone)]
struct Compiled {
    modified: Option<SystemTime>,
    len: u64,
    command: CommandPre<ServerState>,
}

/// A running instance, as the session sees it.
pub struct Guest {
    stopped: Arc<OnceLock<String>>,
    clock: Arc<CallClock>,
}

impl Guest {
    /// Charges the guest's CPU time to a tool call until the guard drops.
    pub fn call_started(&self) -> CallInFlight {
        self.clock.call_started()
    }

    /// Why the instance ended, once it has.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.get().map(String::as_str)
    }
}

struct ServerState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: http::OutboundHttp,
    table: ResourceTable,
    limiter: MemoryCap,
    cpu: CpuMeter,
}

impl WasiView for ServerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ServerState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl Runtime {
    fn new() -> wasmtime::Result<Runtime> {
        let engine = crate::wasm::engine()?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        Ok(Runtime { engine, linker })
    }
}

impl ComponentHost {
    /// `policy` bounds where granted hosts may resolve to; `cache_dir`
    /// keeps compiled code across restarts.
    pub fn new(policy: UrlPolicy, cache_dir: Option<PathBuf>) -> ComponentHost {
        ComponentHost {
            policy,
            cache: Arc::new(CompileCache::new(cache_dir)),
            runtime: OnceLock::new(),
            compiled: Mutex::default(),
        }
    }

    fn runtime(&self) -> Result<&Runtime, String> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime);
        }
        let runtime =
            Runtime::new().map_err(|e| format!("cannot start the component runtime: {e}"))?;
        Ok(self.runtime.get_or_init(|| runtime))
    }

    /// The component at `path`, compiled (off the async threads) unless
    /// the same file was compiled before.
    async fn command(&self, path: &Path) -> Result<CommandPre<ServerState>, String> {
        let unreadable =
            |e: std::io::Error| format!("cannot read component {}: {e}", path.display());
        let meta = tokio::fs::metadata(path).await.map_err(unreadable)?;
        let (modified, len) = (meta.modified().ok(), meta.len());
        let known = self
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .filter(|c| c.modified == modified && c.len == len)
            .map(|c| c.command.clone());
        if let Some(command) = known {
            return Ok(command);
        }
        let runtime = self.runtime()?;
        let bytes = tokio::fs::read(path).await.map_err(unreadable)?;
        let (engine, cache) = (runtime.engine.clone(), self.cache.clone());
        let component = tokio::task::spawn_blocking(move || cache.load(&engine, &bytes))
            .await
            .map_err(|e| format!("compiling {} failed: {e}", path.display()))?
            .map_err(|e| format!("{} is not a valid component: {e}", path.display()))?;
        let command = runtime
            .linker
            .instantiate_pre(&component)
            .and_then(CommandPre::new)
            .map_err(|e| {
                format!(
                    "{} cannot run as an MCP server (a wasi:cli command with WASI 0.2 imports): {e}",
                    path.display()
                )
            })?;
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                path.to_owned(),
                Compiled {
                    modified,
                    len,
                    command: command.clone(),
                },
            );
        Ok(command)
    }

    /// Starts an instance of the server's component and opens an MCP
    /// session with it.
    pub async fn start(&self, config: &McpServerConfig) -> Result<(Client, Guest), String> {
        let path = config
            .component
            .as_deref()
            .ok_or("no component configured")?;
        let command = self.command(path).await?;
        let grants = Arc::new(config.grants.clone().unwrap_or_default());
        let (host_in, guest_in) = tokio::io::duplex(PIPE_BYTES);
        let (guest_out, host_out) = tokio::io::duplex(PIPE_BYTES);
        let (guest_err, host_err) = tokio::io::duplex(PIPE_BYTES);
        let clock = Arc::new(CallClock::default());
        let wasi = wasi_ctx(&grants, guest_in, guest_out, guest_err)?;
        let state = ServerState {
            wasi,
            http: WasiHttpCtx::new(),
            hooks: http::OutboundHttp::new(&config.id, grants.clone(), self.policy.clone()),
            table: ResourceTable::new(),
            limiter: MemoryCap::new(grants.memory_bytes()),
            cpu: CpuMeter::new(clock.clone(), grants.cpu_time()),
        };
        let mut store = Store::new(command.engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.call_hook(|mut store, hook| {
            store.data_mut().cpu.crossed(hook);
            Ok(())
        });
        store.epoch_deadline_callback(|store| match store.data().cpu.overrun() {
            Some(reason) => Err(wasmtime::Error::msg(reason)),
            None => Ok(UpdateDeadline::Yield(1)),
        });
        store.set_epoch_deadline(1);

        let stopped = Arc::new(OnceLock::new());
        let run = tokio::spawn(run(config.id.clone(), command, store, stopped.clone()));
        let tail = StderrTail::default();
        let reader = tokio::spawn(log_stderr(config.id.clone(), host_err, tail.clone()));
        let stdout = GuestStdout {
            pipe: host_out,
            _instance: AbortOnDropHandle::new(run),
        };
        let failure = match connect::open((stdout, host_in), lifecycle()).await {
            Ok(client) => return Ok((client, Guest { stopped, clock })),
            Err(e) => e.to_string(),
        };
        let _ = tokio::time::timeout(STDERR_GRACE, reader).await;
        let why = stopped.get().map(|s| format!("; {s}")).unwrap_or_default();
        Err(match tail.lines() {
            Some(lines) => format!("{failure}{why}; the last lines of its stderr: {lines}"),
            None => format!("{failure}{why}"),
        })
    }
}

/// WASI with the grants and nothing more: no socket, no name lookup.
fn wasi_ctx(
    grants: &Grants,
    stdin: DuplexStream,
    stdout: DuplexStream,
    stderr: DuplexStream,
) -> Result<WasiCtx, String> {
    let mut wasi = WasiCtx::builder();
    wasi.stdin(AsyncStdinStream::new(stdin))
        .stdout(AsyncStdoutStream::new(PIPE_BYTES, stdout))
        .stderr(AsyncStdoutStream::new(PIPE_BYTES, stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    for (name, value) in &grants.env {
        wasi.env(name, value);
    }
    for dir in &grants.dirs {
        let perms = if dir.write {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        wasi.preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|e| format!("cannot grant directory {}: {e}", dir.host.display()))?;
    }
    Ok(wasi.build())
}

/// Runs the command to its end and records why it ended. Its stdio
/// closes when the store drops, after the reason is recorded, so a
/// session that sees its transport close can read it.
async fn run(
    server: String,
    command: CommandPre<ServerState>,
    mut store: Store<ServerState>,
    stopped: Arc<OnceLock<String>>,
) {
    let result = match command.instantiate_async(&mut store).await {
        Ok(command) => command.wasi_cli_run().call_run(&mut store).await,
        Err(e) => Err(e),
    };
    let reason = match result {
        // Its stdin closed: the session ended it, as it ends a process.
        Ok(Ok(())) => {
            tracing::debug!(server, "the component exited");
            "the component exited".to_owned()
        }
        failed => {
            let reason = match failed {
                Err(e) => match e.downcast_ref::<Trap>() {
                    Some(trap) => format!("the component crashed: {trap}"),
                    None => format!("the component was stopped: {}", e.root_cause()),
                },
                Ok(_) => "the component exited with a failure status".to_owned(),
            };
            tracing::warn!(server, "{reason}");
            reason
        }
    };
    let _ = stopped.set(reason);
    drop(store);
}

/// The guest's stdout as the session reads it. It owns the instance's
/// task: when the session drops its transport, the instance is stopped
/// even if it is in a loop that never reads its stdin again.
struct GuestStdout {
    pipe: DuplexStream,
    _instance: AbortOnDropHandle<()>,
}

impl AsyncRead for GuestStdout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.pipe).poll_read(cx, buf)
    }
}
