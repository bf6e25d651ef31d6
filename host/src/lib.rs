//! agenthost: an LLM chat server whose tools are MCP servers and whose
//! provider adapters and stream formats are sandboxed WebAssembly plugins.
//!
//! Dependencies point one way, from the surfaces down:
//!
//! ```text
//! server (assembly)
//!   http                  surfaces: parse, learn who calls, answer
//!     chat                the chat service: conversations, tools, encoding
//!     registry            servers clients can list and change
//!       agent             the loop: model turns and tool calls
//!       connections       org connections to customer MCP servers
//!         dispatch        every tool call: role check and audit log
//!         usage           token usage: each chat's, recorded and summed
//!           mcp  store  plugins  traces
//!             auth  config  sealing  timestamp  metrics  wasm
//! ```
//!
//! `http` reaches `plugins` only for the operator's plugin routes. The
//! test in `layering` fails when a module imports against this.

pub mod agent;
pub mod auth;
pub mod chat;
pub mod config;
pub mod connections;
pub mod demo_mcp;
pub mod devtools;
pub mod dispatch;
pub mod http;
#[cfg(test)]
mod layering;
pub mod mcp;
pub mod metrics;
pub mod plugins;
pub mod registry;
pub mod sealing;
pub mod server;
pub mod store;
pub mod timestamp;
pub mod traces;
pub mod usage;
pub mod wasm;
