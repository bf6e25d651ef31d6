//! The agenthost plugin SDK.
//!
//! A stream format is a type implementing [`Encoder`], exported with
//! [`export_encoder!`]; an LLM provider implements [`Provider`] and its
//! [`Decoder`], exported with [`export_provider!`]. The WIT types
//! (`ChatEvent`, `PluginError`, ...) are in [`types`]. [`json`] writes JSON
//! straight into output buffers and [`lines`] frames line protocols such
//! as SSE, because plugins run under tight per-call deadlines and are
//! called once per batch of events. [`tool_result`] reads a tool result's
//! text the same way for every format that shows one.

pub mod bindings;
pub mod encoder;
pub mod json;
pub mod lines;
pub mod provider;
pub mod tool_result;

pub use bindings::encoder_world::agenthost::plugin::types;
pub use encoder::Encoder;
pub use provider::{Decoder, FinishingLines, MustFinish, Provider};
