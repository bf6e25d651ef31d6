//! The one path every tool call takes, whoever asked for it: the agent
//! loop on any chat surface, remote clients of our `/mcp/` endpoint, and
//! the connections test surface.
//!
//! Tools enforce their own permissions here rather than each endpoint
//! guarding itself: a viewer may call only read-only tools (the server's
//! `readOnlyHint`, or the config's override), wherever the call came
//! from. A denied call is never sent to the server. Every call, denied or
//! not, is written to the durable tool-call log before its result is
//! handed back.

use std::time::Instant;

use rmcp::model::CallToolResult;
use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::mcp::progress::ProgressSink;
use crate::mcp::{McpError, ToolBinding, call_meta};
use crate::store::{Store, StoreError, ToolCallRecord, storable};
use crate::traces::Traces;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(
        "permission denied: tool `{0}` changes data and this API key has the viewer role, which may only call read-only tools"
    )]
    Denied(String),
    #[error(transparent)]
    Mcp(#[from] McpError),
}

#[derive(Clone)]
pub struct Dispatcher {
    log: Store,
    traces: Traces,
}

impl Dispatcher {
    pub fn new(log: Store, traces: Traces) -> Dispatcher {
        Dispatcher { log, traces }
    }

    /// The org's logged calls, newest first, optionally of one connection.
    pub async fn log(
        &self,
        org: &str,
        connection: Option<String>,
        limit: u32,
    ) -> Result<Vec<ToolCallRecord>, StoreError> {
        self.log.tool_calls(org, connection, limit).await
    }

    pub async fn call(
        &self,
        binding: &ToolBinding,
        arguments: Map<String, Value>,
        caller: &Caller,
        progress: Option<ProgressSink>,
    ) -> Result<CallToolResult, DispatchError> {
        let started = Instant::now();
        let span = self.traces.tool_call(&binding.server, &binding.tool);
        let outcome = if caller.may_call(binding.read_only) {
            let meta = call_meta::meta(caller.end_user.as_deref(), span.trace_context());
            binding
                .entry
                .call(&binding.tool, arguments, meta, progress)
                .await
                .map_err(DispatchError::from)
        } else {
            Err(DispatchError::Denied(binding.name.clone()))
        };
        let took = started.elapsed();
        let (outcome_label, error) = match &outcome {
            Ok(result) if result.is_error == Some(true) => {
                ("tool_error", Some("the tool reported an error".into()))
            }
            Ok(_) => ("ok", None),
            Err(e @ DispatchError::Denied(_)) => ("denied", Some(e.to_string())),
            Err(e @ DispatchError::Mcp(_)) => ("failed", Some(e.to_string())),
        };
        crate::metrics::tool_call(&binding.server, &binding.tool, outcome_label, took);
        span.end(outcome_label, error.as_deref());
        let record = ToolCallRecord {
            at: crate::timestamp::now(),
            org: caller.principal.as_ref().map(|p| p.org.clone()),
            api_key: caller.principal.as_ref().map(|p| p.key_label.clone()),
            end_user_id: caller.end_user.clone(),
            connection_id: binding.entry.connection.clone(),
            server: binding.server.clone(),
            tool: binding.tool.clone(),
            mode: mode(binding).into(),
            reason: caller.reason.into(),
            duration_ms: took.as_secs_f64() * 1000.0,
            success: error.is_none(),
            error: error.map(|e| storable(&e).into_owned()),
        };
        if let Err(e) = self.log.log_tool_call(record).await {
            tracing::error!(tool = %binding.name, "cannot write the tool-call log: {e}");
        }
        outcome
    }
}

/// How a tool is reached: our MCP client to an org's own server (the
/// Feather term), or to a server of this host's pool.
fn mode(binding: &ToolBinding) -> &'static str {
    match binding.entry.connection {
        Some(_) => "feather_mcp_client",
        None => "mcp_pool",
    }
}
