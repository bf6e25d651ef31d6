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

/// The tokens one chat's model responses used with one provider and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub at: String,
    /// The tenant: the key's org, or `""` for the local user.
    pub org: String,
    /// The caller's key label (a hash prefix), never the key.
    pub api_key: Option<String>,
    pub provider: String,
    pub model: String,
    /// Model responses that reported usage.
    pub requests: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What usage can be summed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageColumn {
    Org,
    Key,
    Provider,
    Model,
    /// The UTC date, `YYYY-MM-DD`.
    Day,
}

impl UsageColumn {
    /// The SQL expression, the same in both backends; never from input.
    pub(super) fn sql(self) -> &'static str {
        match self {
            UsageColumn::Org => "org",
            UsageColumn::Key => "COALESCE(api_key, '')",
            UsageColumn::Provider => "provider",
            UsageColumn::Model => "model",
            UsageColumn::Day => "substr(at, 1, 10)",
        }
    }
}

/// Which usage to sum: one org's, in `[from, to)`, by `group_by`.
#[derive(Debug, Clone)]
pub struct UsageFilter {
    pub org: String,
    /// Timestamps in the stored form (`2026-01-31T09:00:00Z`).
    pub from: Option<String>,
    pub to: Option<String>,
    pub group_by: Vec<UsageColumn>,
}

impl UsageFilter {
    /// The summing query: `$1` the org, `$2` and `$3` the bounds, as
    /// PostgreSQL writes them; SQLite reads `$n` the same way. Sums are
    /// cast because PostgreSQL's sum of BIGINTs is a NUMERIC.
    pub(super) fn sql(&self) -> String {
        let columns: Vec<&str> = self.group_by.iter().map(|c| c.sql()).collect();
        let mut sql = String::from("SELECT ");
        for column in &columns {
            sql.push_str(column);
            sql.push_str(", ");
        }
        sql.push_str(
            "CAST(COALESCE(SUM(requests), 0) AS BIGINT), CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT),
             CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT)
             FROM usage WHERE org = $1 AND (CAST($2 AS TEXT) IS NULL OR at >= $2)
               AND (CAST($3 AS TEXT) IS NULL OR at < $3)",
        );
        if !columns.is_empty() {
            let positions: Vec<String> = (1..=columns.len()).map(|i| i.to_string()).collect();
            sql.push_str(&format!(
                " GROUP BY {} ORDER BY {}",
                columns.join(", "),
                positions.join(", ")
            ));
        }
        sql
    }
}

/// Summed usage: the values of the filter's `group_by`, in its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub group: Vec<String>,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}
