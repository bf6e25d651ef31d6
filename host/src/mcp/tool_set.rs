//! The tools offered to a model in one request: chosen from servers,
//! named uniquely for the model, and mapped back to (server, tool).

use std::sync::Arc;

use rmcp::model::CallToolResult;

use super::names::NameAllocator;
use super::{McpError, ServerEntry};

/// A tool as the model sees it, and the server that runs it.
#[derive(Debug, Clone)]
pub struct ToolBinding {
    /// Model-facing, unique in its [`ToolSet`].
    pub name: String,
    /// The server's id, as clients see it.
    pub server: String,
    pub tool: String,
    pub description: String,
    /// JSON Schema text.
    pub input_schema: String,
    /// The server's `readOnlyHint`.
    pub read_only: bool,
    pub entry: Arc<ServerEntry>,
}

/// The tools offered to the model in one request.
#[derive(Debug, Clone, Default)]
pub struct ToolSet {
    pub tools: Vec<ToolBinding>,
}

impl ToolSet {
    pub fn find(&self, model_name: &str) -> Option<&ToolBinding> {
        self.tools.iter().find(|t| t.name == model_name)
    }
}

/// Tools of one server to offer: all of them, or the named ones.
pub struct Selection {
    pub server: Arc<ServerEntry>,
    pub only: Option<Vec<String>>,
}

impl Selection {
    pub fn all(server: Arc<ServerEntry>) -> Selection {
        Selection { server, only: None }
    }
}

/// The selected tools, named for the model.
pub async fn tool_set(selections: &[Selection]) -> Result<ToolSet, McpError> {
    let mut names = NameAllocator::default();
    let mut tools = Vec::new();
    for selection in selections {
        let entry = &selection.server;
        let id = &entry.config.id;
        let available = entry.offered().await?;
        if let Some(only) = &selection.only
            && let Some(missing) = only
                .iter()
                .find(|name| !available.iter().any(|t| &t.name == *name))
        {
            return Err(McpError::UnknownTool {
                server: id.clone(),
                tool: missing.clone(),
                available: available
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let chosen = available.iter().filter(|t| {
            selection
                .only
                .as_ref()
                .is_none_or(|only| only.contains(&t.name))
        });
        for tool in chosen {
            tools.push(ToolBinding {
                name: names.allocate(id, &tool.name),
                server: id.clone(),
                tool: tool.name.clone(),
                description: tool.description.clone(),
                input_schema: tool.input_schema.clone(),
                read_only: tool.read_only,
                entry: entry.clone(),
            });
        }
    }
    Ok(ToolSet { tools })
}

/// The text a model should read for a tool result: the text blocks, else
/// the structured content, else the whole result as JSON.
pub fn result_text(result: &CallToolResult) -> String {
    let texts: Vec<&str> = result
        .content
        .iter()
        .filter_map(|b| b.as_text())
        .map(|t| t.text.as_str())
        .collect();
    if !texts.is_empty() {
        return texts.join("\n");
    }
    let value = match &result.structured_content {
        Some(structured) => serde_json::to_string(structured),
        None => serde_json::to_string(result),
    };
    value.unwrap_or_default()
}
