//! The resources and prompts of several MCP servers, offered as one
//! server's: what `/mcp/` serves besides tools.
//!
//! Names are namespaced as tool names are, `server__name` (a server with
//! `tool_prefix = false` keeps its own names where they are free): a
//! prompt is asked for by its name, and a client shows a resource's name
//! as where it came from. A resource keeps its URI: URIs are global
//! already, and a client reads a URI it found in a tool result as well as
//! one it listed. A read goes to the first server, in naming order, that
//! lists the URI, else to the first with a template that matches it; a
//! URI two servers list is listed once, for the first.
//!
//! Lists are asked of the servers for each request rather than kept: a
//! server may change them at any time. A server that cannot list is left
//! out with a warning, as it is from a chat's tools.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::join_all;
use rmcp::model::{
    GetPromptRequestParams, GetPromptResponse, PaginatedRequestParams, Prompt,
    ReadResourceRequestParams, ReadResourceResponse, Resource, ResourceTemplate,
    ServerCapabilities,
};

use super::{McpError, ServerEntry};

/// The servers one caller sees, in the order their names are given.
pub struct Catalog {
    servers: Vec<Arc<ServerEntry>>,
}

impl Catalog {
    pub fn new(servers: Vec<Arc<ServerEntry>>) -> Catalog {
        Catalog { servers }
    }

    /// Every server's resources, named for this catalog.
    pub async fn resources(&self) -> Vec<Resource> {
        let mut names = Namespace::default();
        let mut uris = HashSet::new();
        let mut offered = Vec::new();
        for (server, resources) in self.listed(resources).await {
            for mut resource in resources {
                if uris.insert(resource.uri.clone()) {
                    resource.name = names.name(&server, &resource.name);
                    offered.push(resource);
                }
            }
        }
        offered
    }

    /// Every server's resource templates, named for this catalog.
    pub async fn templates(&self) -> Vec<ResourceTemplate> {
        let mut names = Namespace::default();
        let mut offered = Vec::new();
        for (server, templates) in self.listed(templates).await {
            for mut template in templates {
                template.name = names.name(&server, &template.name);
                offered.push(template);
            }
        }
        offered
    }

    /// Reads `request.uri` from the server that offers it; its answer,
    /// an error included, is handed on as it came.
    pub async fn read(
        &self,
        mut request: ReadResourceRequestParams,
    ) -> Result<ReadResourceResponse, McpError> {
        let server = self.resource_server(&request.uri).await?;
        request.meta = None;
        server
            .request("resources/read", |peer| async move {
                peer.read_resource_once(request).await
            })
            .await
    }

    /// Every server's prompts, named for this catalog.
    pub async fn prompts(&self) -> Vec<Prompt> {
        self.named_prompts()
            .await
            .into_iter()
            .map(|named| named.prompt)
            .collect()
    }

    /// Gets the prompt this catalog names `request.name` from its server.
    pub async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
    ) -> Result<GetPromptResponse, McpError> {
        let prompts = self.named_prompts().await;
        let Some(named) = prompts.iter().find(|p| p.prompt.name == request.name) else {
            return Err(McpError::UnknownPrompt {
                name: request.name,
                available: prompts
                    .iter()
                    .map(|p| p.prompt.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        request.name = named.own_name.clone();
        request.meta = None;
        named
            .server
            .request("prompts/get", |peer| async move {
                peer.get_prompt_once(request).await
            })
            .await
    }

    async fn named_prompts(&self) -> Vec<NamedPrompt> {
        let mut names = Namespace::default();
        let mut named = Vec::new();
        for (server, prompts) in self.listed(prompts).await {
            for mut prompt in prompts {
                let own_name = std::mem::take(&mut prompt.name);
                prompt.name = names.name(&server, &own_name);
                named.push(NamedPrompt {
                    server: server.clone(),
                    own_name,
                    prompt,
                });
            }
        }
        named
    }

    /// The server a read of `uri` goes to.
    async fn resource_server(&self, uri: &str) -> Result<Arc<ServerEntry>, McpError> {
        let listing = self.listed(resources).await;
        if let Some((server, _)) = listing
            .iter()
            .find(|(_, resources)| resources.iter().any(|r| r.uri == uri))
        {
            return Ok(server.clone());
        }
        self.listed(templates)
            .await
            .into_iter()
            .find(|(_, templates)| {
                templates
                    .iter()
                    .any(|t| template_matches(&t.uri_template, uri))
            })
            .map(|(server, _)| server)
            .ok_or_else(|| McpError::UnknownResource(uri.to_owned()))
    }

    /// What `list` gives for each server, in order, from the servers that
    /// offer it.
    async fn listed<T, F>(&self, list: F) -> Vec<(Arc<ServerEntry>, Vec<T>)>
    where
        F: AsyncFn(&ServerEntry, &ServerCapabilities) -> Option<Result<Vec<T>, McpError>>,
    {
        let list = &list;
        let answers = join_all(self.servers.iter().map(|server| async move {
            let capabilities = server.capabilities().await?;
            list(server, &capabilities).await.transpose()
        }))
        .await;
        let mut listed = Vec::new();
        for (server, answer) in self.servers.iter().zip(answers) {
            match answer {
                Ok(Some(items)) => listed.push((server.clone(), items)),
                Ok(None) => {}
                Err(e) => tracing::warn!("leaving out MCP server: {e}"),
            }
        }
        listed
    }
}

/// A prompt as the catalog offers it, and where it comes from.
struct NamedPrompt {
    server: Arc<ServerEntry>,
    own_name: String,
    prompt: Prompt,
}

async fn resources(
    server: &ServerEntry,
    capabilities: &ServerCapabilities,
) -> Option<Result<Vec<Resource>, McpError>> {
    capabilities.resources.as_ref()?;
    Some(
        server
            .list("resources/list", "resources", |peer, cursor| async move {
                let page = PaginatedRequestParams::default().with_cursor(cursor);
                let listed = peer.list_resources(Some(page)).await?;
                Ok((listed.resources, listed.next_cursor))
            })
            .await,
    )
}

async fn templates(
    server: &ServerEntry,
    capabilities: &ServerCapabilities,
) -> Option<Result<Vec<ResourceTemplate>, McpError>> {
    capabilities.resources.as_ref()?;
    Some(
        server
            .list(
                "resources/templates/list",
                "resource templates",
                |peer, cursor| async move {
                    let page = PaginatedRequestParams::default().with_cursor(cursor);
                    let listed = peer.list_resource_templates(Some(page)).await?;
                    Ok((listed.resource_templates, listed.next_cursor))
                },
            )
            .await,
    )
}

async fn prompts(
    server: &ServerEntry,
    capabilities: &ServerCapabilities,
) -> Option<Result<Vec<Prompt>, McpError>> {
    capabilities.prompts.as_ref()?;
    Some(
        server
            .list("prompts/list", "prompts", |peer, cursor| async move {
                let page = PaginatedRequestParams::default().with_cursor(cursor);
                let listed = peer.list_prompts(Some(page)).await?;
                Ok((listed.prompts, listed.next_cursor))
            })
            .await,
    )
}

/// Names unique in one list: `server__name`, or the server's own name for
/// a server with `tool_prefix = false` where no earlier one took it.
#[derive(Default)]
struct Namespace {
    taken: HashSet<String>,
}

impl Namespace {
    fn name(&mut self, server: &ServerEntry, own: &str) -> String {
        if !server.config.prefixes_tools() && self.taken.insert(own.to_owned()) {
            return own.to_owned();
        }
        let base = format!("{}__{own}", server.config.id);
        let mut name = base.clone();
        let mut n = 2;
        while !self.taken.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        name
    }
}

/// Whether `uri` is one of the URIs an RFC 6570 template expands to.
/// Expressions match what their operator can expand to: a simple `{x}`
/// no `/`, `?` or `#` (those are percent-encoded in a value), `{+x}` and
/// `{#x}` anything, `{/x}`, `{?x}` and `{&x}` anything but a fragment.
pub fn template_matches(template: &str, uri: &str) -> bool {
    let uri = uri.as_bytes();
    // `reach[i]`: the template so far can expand to `uri[..i]`.
    let mut reach = vec![false; uri.len() + 1];
    reach[0] = true;
    let mut rest = template;
    while !rest.is_empty() {
        let mut next = vec![false; uri.len() + 1];
        let part = match rest.find('{') {
            Some(0) => {
                let Some(end) = rest.find('}') else {
                    return false;
                };
                let operator = rest.as_bytes().get(1).copied().unwrap_or(b'}');
                rest = &rest[end + 1..];
                Part::Expression(operator)
            }
            Some(start) => {
                let (literal, after) = rest.split_at(start);
                rest = after;
                Part::Literal(literal.as_bytes())
            }
            None => {
                let literal = rest.as_bytes();
                rest = "";
                Part::Literal(literal)
            }
        };
        for start in (0..=uri.len()).filter(|&i| reach[i]) {
            match part {
                Part::Literal(literal) => {
                    if uri[start..].starts_with(literal) {
                        next[start + literal.len()] = true;
                    }
                }
                Part::Expression(operator) => {
                    next[start] = true;
                    for end in start + 1..=uri.len() {
                        if !expands_to(operator, uri[end - 1]) {
                            break;
                        }
                        next[end] = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach[uri.len()]
}

enum Part<'a> {
    Literal(&'a [u8]),
    Expression(u8),
}

fn expands_to(operator: u8, byte: u8) -> bool {
    match operator {
        b'+' | b'#' => true,
        b'/' | b'?' | b'&' => byte != b'#',
        _ => !matches!(byte, b'/' | b'?' | b'#'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_matches_the_uris_it_expands_to() {
        let dynamic = "demo://resource/dynamic/text/{resourceId}";
        assert!(template_matches(dynamic, "demo://resource/dynamic/text/7"));
        assert!(!template_matches(
            dynamic,
            "demo://resource/dynamic/text/7/x"
        ));
        assert!(!template_matches(dynamic, "demo://resource/dynamic/blob/7"));
        assert!(template_matches("file:///{+path}", "file:///etc/hosts"));
        assert!(template_matches("test://{a}/and/{b}", "test://1/and/2"));
        assert!(template_matches(
            "api://items{?page,size}",
            "api://items?page=2&size=3"
        ));
        assert!(template_matches("api://items{?page}", "api://items"));
        assert!(!template_matches("test://{a", "test://x"));
        assert!(template_matches("x://é/{v}", "x://é/ü"), "bytes, not chars");
    }
}
