//! The MCP client side: a pool of rmcp client sessions, one per server,
//! and the tool sets offered to models from them.
//!
//! `error` says what went wrong; `server` is one server's session
//! lifecycle; `pool` holds the servers by id; `tool_set` names a
//! request's tools for the model and maps them back.

mod backoff;
pub mod call_meta;
mod catalog;
mod component;
mod connect;
mod error;
mod listing;
pub mod names;
mod pool;
mod pool_client;
pub mod progress;
mod server;
mod sse_client;
mod stderr;
mod tool_set;
mod url_policy;

pub use catalog::Catalog;
pub use component::{ComponentHost, ServerCheck};
pub use error::McpError;
pub use pool::{McpPool, Reach, Reachable, RuntimeServer};
pub use server::{OfferedTool, Origin, ServerEntry, Snapshot, ToolSummary};
pub use tool_set::{Selection, ToolBinding, ToolSet, result_text, tool_set};
pub use url_policy::UrlPolicy;
