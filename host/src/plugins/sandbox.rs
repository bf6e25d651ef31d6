//! The wasmtime engine and the limits every plugin call runs under.
//!
//! Plugins are untrusted: each instance gets its own store with a memory
//! cap, and every call is armed with an epoch deadline so a runaway guest
//! traps instead of holding a worker thread. WASI is linked inert (see
//! [`super::capabilities`]). Calls are async: WASI's host functions are
//! tokio code, and run synchronously they would block inside the runtime
//! (a guest that merely printed its panic message took its stream down).

use std::time::Duration;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How often the engine's epoch advances; deadlines are whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy)]
pub struct SandboxLimits {
    pub call_timeout: Duration,
    pub memory_bytes: usize,
    /// What one instance may hand back over its life (encoded bytes, or
    /// decoded text): a memory cap bounds one call, not a stream of them.
    pub output_bytes: usize,
    /// Streams one instance holds at once (see [`super::shared`]).
    pub streams_per_instance: usize,
}

impl SandboxLimits {
    pub fn from_config(limits: &crate::config::Limits) -> SandboxLimits {
        SandboxLimits {
            call_timeout: Duration::from_millis(limits.plugin_call_timeout_ms),
            memory_bytes: (limits.plugin_memory_mb as usize) << 20,
            output_bytes: (limits.plugin_output_mb as usize) << 20,
            streams_per_instance: limits.plugin_streams_per_instance,
        }
    }
}

/// Per-store state: WASI with nothing granted, and the memory limiter.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryCap,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Refuses growth past the cap with a trap whose message says so, rather
/// than letting the guest see a failed allocation it might misreport.
struct MemoryCap {
    max_bytes: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} MiB exceeded",
                self.max_bytes >> 20
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

pub struct Sandbox {
    engine: Engine,
    linker: Linker<PluginState>,
    limits: SandboxLimits,
}

impl Sandbox {
    pub fn new(limits: SandboxLimits) -> wasmtime::Result<Sandbox> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // Memory reservation and guards stay at their defaults (4 GiB plus
        // a guard region on 64-bit), so compiled code needs no bounds
        // checks: instances are few, since streams share them (see
        // `shared`). The memory cap is the limiter's job.
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;

        spawn_epoch_ticker(&engine);
        Ok(Sandbox {
            engine,
            linker,
            limits,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn linker(&self) -> &Linker<PluginState> {
        &self.linker
    }

    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    /// A fresh store for one plugin instance.
    pub fn new_store(&self) -> Store<PluginState> {
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let state = PluginState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryCap {
                max_bytes: self.limits.memory_bytes,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks_for(self.limits.call_timeout.as_millis()));
        store
    }
}

/// Epoch ticks that make up a deadline of `timeout_ms`.
pub fn ticks_for(timeout_ms: u128) -> u64 {
    (timeout_ms / EPOCH_TICK.as_millis()).max(1) as u64
}

/// Advances the epoch until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!("cannot start the plugin deadline thread: {e}"));
}
