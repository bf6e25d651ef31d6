//! Typed bindings for the two plugin worlds of the current contract,
//! generated from `wit/` (0.1.0's are in [`super::v0_1`]).
//!
//! Both worlds share the `types` interface; the encoder bindings reuse the
//! provider bindings' types so a `ChatEvent` is one Rust type everywhere.

pub mod provider {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "provider",
        // Guest calls are async so WASI's host functions run on the
        // server's tokio runtime instead of blocking inside it.
        exports: { default: async },
        // Lets the conformance suite compare decoded streams.
        additional_derives: [PartialEq],
    });
}

pub mod encoder {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "encoder",
        exports: { default: async },
        with: { "agenthost:plugin/types": super::provider::agenthost::plugin::types },
    });
}

pub use provider::agenthost::plugin::types::*;

/// The export names that identify each world, with the contract version.
pub const PROVIDER_EXPORT: &str = "agenthost:plugin/provider-api@0.2.0";
pub const ENCODER_EXPORT: &str = "agenthost:plugin/encoder-api@0.2.0";
