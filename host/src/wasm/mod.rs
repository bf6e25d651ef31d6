//! What every sandboxed component shares, plugins and component MCP
//! servers alike: the engine settings, the memory cap, the epoch clock
//! that deadlines are counted in, and the compiled-code cache.

mod cache;

use std::time::Duration;

use wasmtime::{Config, Engine, ResourceLimiter};

pub use cache::CompileCache;

/// How often an engine's epoch advances; deadlines are whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// An engine for untrusted components: epochs on, so a runaway guest can
/// be interrupted, and its clock started.
pub fn engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    // Memory reservation and guards stay at their defaults (4 GiB plus a
    // guard region on 64-bit), so compiled code needs no bounds checks.
    // The memory cap is the limiter's job.
    let engine = Engine::new(&config)?;
    spawn_epoch_ticker(&engine);
    Ok(engine)
}

/// Epoch ticks that make up a deadline of `timeout_ms`.
pub fn ticks_for(timeout_ms: u128) -> u64 {
    (timeout_ms / EPOCH_TICK.as_millis()).max(1) as u64
}

/// Advances the epoch until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!("cannot start the wasm deadline thread: {e}"));
}

/// Refuses growth past the cap with a trap whose message says so, rather
/// than letting the guest see a failed allocation it might misreport.
pub struct MemoryCap {
    max_bytes: usize,
}

impl MemoryCap {
    pub fn new(max_bytes: usize) -> MemoryCap {
        MemoryCap { max_bytes }
    }
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
