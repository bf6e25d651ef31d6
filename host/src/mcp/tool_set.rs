//! The tools offered to a model in one request: chosen from servers,
//! named uniquely for the model, and mapped back to (server, tool).

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, ResourceContents, Tool};

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
    /// Whether a chat's call waits for a person (`require_approval`).
    pub needs_approval: bool,
    /// The tool as the server listed it.
    pub listed: Arc<Tool>,
    pub entry: Arc<ServerEntry>,
}

impl ToolBinding {
    /// The tool as its server listed it (title, output schema,
    /// annotations, icons and `_meta` included), under this binding's name
    /// and with the read-only hint the config may override: what `/mcp/`
    /// lists.
    pub fn as_listed(&self) -> Tool {
        let mut tool = (*self.listed).clone();
        tool.name = self.name.clone().into();
        let annotations = tool.annotations.take().unwrap_or_default();
        tool.annotations = Some(annotations.read_only(self.read_only));
        tool
    }
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
        let prefixed = entry.config.prefixes_tools();
        for tool in chosen {
            let name = match prefixed {
                true => names.allocate(id, &tool.name),
                false => names.allocate_unprefixed(id, &tool.name),
            };
            tools.push(ToolBinding {
                name,
                server: id.clone(),
                tool: tool.name.clone(),
                description: tool.description.clone(),
                input_schema: tool.input_schema.clone(),
                read_only: tool.read_only,
                needs_approval: tool.needs_approval,
                listed: tool.listed.clone(),
                entry: entry.clone(),
            });
        }
    }
    Ok(ToolSet { tools })
}

/// The text a model reads for a tool result. Text blocks as they are,
/// an embedded text resource as its text, a resource link as its URI;
/// what a model cannot read as text (images, audio, binary resources) as
/// a note naming it, so nothing vanishes unsaid. Without text, the
/// structured content follows; with no content at all, the whole result
/// as JSON.
pub fn result_text(result: &CallToolResult) -> String {
    let mut text = String::new();
    let mut has_text = false;
    for (i, block) in result.content.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        match block {
            ContentBlock::Text(block) => {
                has_text = true;
                text.push_str(&block.text);
            }
            ContentBlock::Image(image) => {
                text.push_str(&not_shown("an image", &image.mime_type, &image.data));
            }
            ContentBlock::Audio(audio) => {
                text.push_str(&not_shown("audio", &audio.mime_type, &audio.data));
            }
            ContentBlock::Resource(embedded) => match &embedded.resource {
                ResourceContents::TextResourceContents {
                    uri, text: body, ..
                } => {
                    has_text = true;
                    text.push_str(&format!("[resource {uri}]\n{body}"));
                }
                ResourceContents::BlobResourceContents {
                    uri,
                    mime_type,
                    blob,
                    ..
                } => {
                    let kind = format!("resource {uri}");
                    let mime = mime_type.as_deref().unwrap_or("binary");
                    text.push_str(&not_shown(&kind, mime, blob));
                }
                _ => text.push_str(UNKNOWN_BLOCK),
            },
            ContentBlock::ResourceLink(link) => {
                text.push_str(&format!("[resource link: {} ({})]", link.uri, link.name));
            }
            _ => text.push_str(UNKNOWN_BLOCK),
        }
    }
    if has_text {
        return text;
    }
    let rest = match &result.structured_content {
        Some(structured) => serde_json::to_string(structured),
        None if result.content.is_empty() => serde_json::to_string(result),
        None => return text,
    };
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(&rest.unwrap_or_default());
    text
}

/// The note for a content block of a kind newer than this build.
const UNKNOWN_BLOCK: &str = "[content of a kind agenthost cannot show the model]";

/// A note for content the model is not given, with its type and size.
fn not_shown(what: &str, mime_type: &str, base64: &str) -> String {
    let padding = base64.bytes().rev().take_while(|b| *b == b'=').count();
    let bytes = (base64.len() / 4 * 3).saturating_sub(padding);
    format!("[{what} ({mime_type}, {bytes} bytes) is in the result but not shown to the model]")
}

#[cfg(test)]
mod tests {
    use rmcp::model::{EmbeddedResource, ImageContent};
    use serde_json::json;

    use super::*;

    #[test]
    fn a_model_reads_text_and_a_note_for_each_image_never_the_bytes() {
        let result = CallToolResult::success(vec![
            ContentBlock::text("This is a tiny image:"),
            ContentBlock::Image(ImageContent::new("iVBORw0KGgoAAAANSUhEUg==", "image/png")),
            ContentBlock::text("The image above is tiny."),
        ]);
        assert_eq!(
            result_text(&result),
            "This is a tiny image:\n\
             [an image (image/png, 16 bytes) is in the result but not shown to the model]\n\
             The image above is tiny."
        );
    }

    #[test]
    fn embedded_text_is_read_and_structured_content_fills_in_for_missing_text() {
        let embedded = ContentBlock::Resource(EmbeddedResource::new(
            ResourceContents::TextResourceContents {
                uri: "file:///notes.txt".into(),
                mime_type: Some("text/plain".into()),
                text: "remember the milk".into(),
                meta: None,
            },
        ));
        let result = CallToolResult::success(vec![embedded]);
        assert_eq!(
            result_text(&result),
            "[resource file:///notes.txt]\nremember the milk"
        );

        let mut structured = CallToolResult::structured(json!({ "temperature": 21 }));
        structured.content.clear();
        assert_eq!(result_text(&structured), r#"{"temperature":21}"#);

        let mut image_only = CallToolResult::success(vec![ContentBlock::Image(ImageContent::new(
            "AAAA",
            "image/gif",
        ))]);
        image_only.structured_content = Some(json!({ "frames": 1 }));
        assert_eq!(
            result_text(&image_only),
            "[an image (image/gif, 3 bytes) is in the result but not shown to the model]\n\
             {\"frames\":1}"
        );
    }
}
