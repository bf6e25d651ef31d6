//! agenthost: an LLM chat server whose tools are MCP servers and whose
//! provider adapters and stream formats are sandboxed WebAssembly plugins.
//!
//! Dependencies point one way: `http` -> {`agent`, `connections`} ->
//! `dispatch` -> {`mcp`, `store`}; `agent` also uses `plugins`.

pub mod agent;
pub mod auth;
pub mod config;
pub mod connections;
pub mod demo_mcp;
pub mod devtools;
pub mod dispatch;
pub mod http;
pub mod mcp;
pub mod plugins;
pub mod server;
pub mod store;
