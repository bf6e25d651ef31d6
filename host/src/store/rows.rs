//! What the store keeps, the same for every backend.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    pub id: String,
    pub created_at: String,
    pub message_count: i64,
}

/// One message of a session's history.
#[derive(Debug, Clone, Serialize)]
pub struct StoredMessage {
    pub role: String,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// JSON array of `{id, name, arguments}` for assistant tool calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    pub timestamp: String,
}

impl StoredMessage {
    /// A plain message (no tool call or result), stamped now.
    pub fn text(role: &str, content: String) -> StoredMessage {
        StoredMessage {
            role: role.into(),
            content,
            name: None,
            tool_call_id: None,
            tool_calls: None,
            timestamp: crate::timestamp::now(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConnectionRow {
    pub id: String,
    pub org: String,
    pub name: String,
    /// The name as an MCP server id, unique in the org.
    pub server_id: String,
    pub url: String,
    pub auth_type: String,
    pub header_names: Vec<String>,
    pub credentials: Vec<u8>,
    pub created_at: String,
    pub tools: Vec<ConnectionToolRow>,
}

#[derive(Debug, Clone)]
pub struct ConnectionToolRow {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub read_only: bool,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredServer {
    /// The org that registered it; `""` for the local user.
    pub tenant: String,
    pub name: String,
    /// The server's definition as JSON, its secrets left out.
    pub config: String,
    /// Its `env` and `headers`, sealed, if it has any.
    pub secrets: Option<Vec<u8>>,
    /// Whether its URL may point at internal addresses (an admin's).
    pub reach_any: bool,
}

/// One tool call as the log keeps it. Holds no arguments or results,
/// which may carry personal data; it says who, what, how and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCallRecord {
    pub at: String,
    pub org: Option<String>,
    /// The caller's key label (a hash prefix), never the key.
    pub api_key: Option<String>,
    pub end_user_id: Option<String>,
    pub connection_id: Option<String>,
    pub server: String,
    pub tool: String,
    /// How the tool was reached, such as `feather_mcp_client`.
    pub mode: String,
    /// Why it was called, such as `ui_mcp_test_call`.
    pub reason: String,
    pub duration_ms: f64,
    pub success: bool,
    pub error: Option<String>,
}
