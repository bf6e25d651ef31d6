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
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::wasm::{MemoryCap, ticks_for};

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

pub struct Sandbox {
    engine: Engine,
    linker: Linker<PluginState>,
    limits: SandboxLimits,
}

impl Sandbox {
    pub fn new(limits: SandboxLimits) -> wasmtime::Result<Sandbox> {
        // Instances are few, since streams share them (see `shared`), so
        // the engine's large default reservations are affordable.
        let engine = crate::wasm::engine()?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
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
            limiter: MemoryCap::new(self.limits.memory_bytes),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks_for(self.limits.call_timeout.as_millis()));
        store
    }
}
