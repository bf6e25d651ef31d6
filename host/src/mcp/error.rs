//! What can go wrong with an MCP server, worded for the client that asked.

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("unknown MCP server `{id}` (configured: {known})")]
    UnknownServer { id: String, known: String },
    #[error("MCP server `{server}` has no tool `{tool}` (it has: {available})")]
    UnknownTool {
        server: String,
        tool: String,
        available: String,
    },
    #[error("{0}")]
    Refused(String),
    #[error("a server named `{0}` already exists")]
    Duplicate(String),
    #[error("MCP server `{0}` is defined in the config file; remove it there")]
    Configured(String),
    #[error("MCP server `{0}` was removed")]
    Removed(String),
    #[error("failed to connect to MCP server `{id}`: {reason}")]
    Connect { id: String, reason: String },
    #[error("MCP server `{id}` is still starting after {secs} s; going on without it")]
    Starting { id: String, secs: f64 },
    #[error("tool `{tool}` of MCP server `{server}` did not answer within {secs} s")]
    Timeout {
        server: String,
        tool: String,
        secs: f64,
    },
    #[error("tool `{tool}` of MCP server `{server}` failed: {reason}")]
    Call {
        server: String,
        tool: String,
        reason: String,
    },
    #[error("no MCP server offers resource `{0}`")]
    UnknownResource(String),
    #[error("unknown prompt `{name}` (offered: {available})")]
    UnknownPrompt { name: String, available: String },
    /// The server answered a request other than a tool call with an error,
    /// which is handed on as it came.
    #[error("MCP server `{server}` refused {method}: {}", .error.message)]
    Answered {
        server: String,
        method: &'static str,
        error: Box<rmcp::model::ErrorData>,
    },
    #[error("{method} of MCP server `{server}` failed: {reason}")]
    Request {
        server: String,
        method: &'static str,
        reason: String,
    },
    #[error(
        "tool `{tool}` of MCP server `{server}` returned {bytes} bytes, over the limit of {limit} bytes for a tool result; the result was dropped"
    )]
    TooLarge {
        server: String,
        tool: String,
        bytes: usize,
        limit: usize,
    },
}
