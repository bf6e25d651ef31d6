//! `agenthost demo-mcp`: a small MCP server over stdio, so a first run has
//! genuinely useful tools with nothing else installed.
//!
//! Tools: the current time in any IANA time zone, arithmetic, and a notes
//! store that lives as long as the server process (each host connection
//! starts its own process, so notes are per session).

mod calc;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("MCP handshake on stdio failed: {0}")]
    Handshake(String),
    #[error("the MCP server stopped abnormally: {0}")]
    Stopped(String),
}

/// Serves the demo tools on stdin/stdout until the client disconnects.
pub async fn serve() -> Result<(), DemoError> {
    let running = DemoTools::new()
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| DemoError::Handshake(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| DemoError::Stopped(e.to_string()))?;
    Ok(())
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TimeRequest {
    #[schemars(description = "IANA time zone such as Europe/Paris; UTC when omitted")]
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CalculateRequest {
    #[schemars(
        description = "Arithmetic expression, e.g. 12*(3+4)^2 - 1.5; supports + - * / % ^ and parentheses"
    )]
    pub expression: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddNoteRequest {
    #[schemars(description = "Short title; an existing note with this title is replaced")]
    pub title: String,
    pub text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ReadNoteRequest {
    pub title: String,
}

#[derive(Clone)]
pub struct DemoTools {
    notes: Arc<Mutex<BTreeMap<String, String>>>,
    tool_router: ToolRouter<Self>,
}

/// Notes are small by design; this bounds the server's memory.
const MAX_NOTES: usize = 1000;
const MAX_NOTE_BYTES: usize = 64 * 1024;

#[tool_router]
impl DemoTools {
    pub fn new() -> Self {
        DemoTools {
            notes: Arc::default(),
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Current date and time in an IANA time zone (default UTC)",
        annotations(read_only_hint = true)
    )]
    fn current_time(&self, Parameters(req): Parameters<TimeRequest>) -> Result<String, String> {
        let zone = req.timezone.unwrap_or_else(|| "UTC".into());
        let tz = jiff::tz::TimeZone::get(&zone).map_err(|_| {
            format!("unknown time zone `{zone}`; use an IANA name like Europe/Paris")
        })?;
        let now = jiff::Timestamp::now().to_zoned(tz);
        Ok(format!(
            "{} ({zone})",
            now.strftime("%Y-%m-%d %H:%M:%S %:z, %A")
        ))
    }

    #[tool(
        description = "Evaluate an arithmetic expression exactly as written",
        annotations(read_only_hint = true)
    )]
    fn calculate(&self, Parameters(req): Parameters<CalculateRequest>) -> Result<String, String> {
        calc::evaluate(&req.expression).map(calc::format_number)
    }

    #[tool(
        description = "Save a note under a title",
        annotations(read_only_hint = false)
    )]
    fn add_note(&self, Parameters(req): Parameters<AddNoteRequest>) -> Result<String, String> {
        if req.text.len() + req.title.len() > MAX_NOTE_BYTES {
            return Err(format!("a note may hold at most {MAX_NOTE_BYTES} bytes"));
        }
        let mut notes = self
            .notes
            .lock()
            .map_err(|_| "the notes store is unavailable")?;
        if notes.len() >= MAX_NOTES && !notes.contains_key(&req.title) {
            return Err(format!("the notes store is full ({MAX_NOTES} notes)"));
        }
        notes.insert(req.title.clone(), req.text);
        Ok(format!("Saved note `{}`.", req.title))
    }

    #[tool(
        description = "List the titles of all saved notes",
        annotations(read_only_hint = true)
    )]
    fn list_notes(&self) -> Result<String, String> {
        let notes = self
            .notes
            .lock()
            .map_err(|_| "the notes store is unavailable")?;
        if notes.is_empty() {
            return Ok("No notes yet.".into());
        }
        Ok(notes.keys().cloned().collect::<Vec<_>>().join("\n"))
    }

    #[tool(
        description = "Read one note by its title",
        annotations(read_only_hint = true)
    )]
    fn read_note(&self, Parameters(req): Parameters<ReadNoteRequest>) -> Result<String, String> {
        let notes = self
            .notes
            .lock()
            .map_err(|_| "the notes store is unavailable")?;
        notes
            .get(&req.title)
            .cloned()
            .ok_or_else(|| format!("no note titled `{}`", req.title))
    }
}

impl Default for DemoTools {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "Demo tools: current_time, calculate, add_note, list_notes, read_note",
        )
    }
}
