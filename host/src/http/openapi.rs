//! `GET /openapi.json`: the OpenAPI 3.1 document of the HTTP routes.
//!
//! Each route is described by the `#[utoipa::path]` annotation its
//! handler is routed with (`utoipa_axum`), and request bodies, query
//! strings and error bodies by the types that parse or write them, so the
//! document cannot drift from what the server serves. `/mcp/` is an MCP
//! endpoint whose messages MCP itself specifies; it is listed with its
//! methods only. The document is rendered once, at start.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, SecurityRequirement};

use super::AppState;

/// The surfaces, as tags: name and what it is.
const TAGS: &[(&str, &str)] = &[
    (
        "simple",
        "The simple chat frontend (seed 003): one connected server, errors as {\"detail\"}",
    ),
    (
        "mcp-chat",
        "The MCP Chat API (seed 004): servers added at run time, sessions with history",
    ),
    (
        "truefoundry",
        "The TrueFoundry agent API (seed 002): OpenAI-shaped chunks",
    ),
    (
        "feather",
        "The Feather API (seeds 000 and 001): chat and org connections",
    ),
    (
        "runs",
        "Every streamed chat is a run: its state, its events replayed from Last-Event-ID, cancel",
    ),
    (
        "operations",
        "Health, readiness, metrics, usage and plugins, for operators",
    ),
    ("ui", "The chat page"),
    (
        "mcp",
        "This host's tools, resources and prompts, re-exposed as one MCP server",
    ),
];

pub fn routes(api: OpenApi) -> Router<Arc<AppState>> {
    let document: Arc<str> = match describe(api).to_json() {
        Ok(json) => json.into(),
        Err(e) => {
            tracing::warn!("cannot render the OpenAPI document: {e}");
            Arc::from("{}")
        }
    };
    Router::new().route(
        "/openapi.json",
        get(move || {
            let document = document.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    document.to_string(),
                )
            }
        }),
    )
}

/// The routes' paths, with what the whole API shares: its name and
/// version, how keys are sent, the surfaces, and `/mcp/`.
fn describe(mut api: OpenApi) -> OpenApi {
    api.info = InfoBuilder::new()
        .title("agenthost")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "LLM chat over HTTP with MCP servers as the model's tools. Five API contracts \
             share one chat service; in keyed mode every route but the probes, the chat \
             page and this document takes an API key.",
        ))
        .build();
    let key = SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key")));
    let bearer = SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
    let components = api
        .components
        .take()
        .unwrap_or_else(|| ComponentsBuilder::new().build());
    let mut components = components;
    components.add_security_scheme("api_key", key);
    components.add_security_scheme("bearer", bearer);
    api.components = Some(components);
    // Optional: in local mode no key is needed.
    api.security = Some(vec![
        SecurityRequirement::default(),
        SecurityRequirement::new("api_key", Vec::<String>::new()),
        SecurityRequirement::new("bearer", Vec::<String>::new()),
    ]);
    api.tags = Some(
        TAGS.iter()
            .map(|(name, description)| {
                TagBuilder::new()
                    .name(*name)
                    .description(Some(*description))
                    .build()
            })
            .collect(),
    );
    for path in ["/mcp", "/mcp/"] {
        api.paths.paths.insert(path.to_owned(), mcp_path());
    }
    api
}

/// `/mcp/`: MCP's streamable HTTP transport.
fn mcp_path() -> PathItem {
    let operation = |summary: &str| {
        OperationBuilder::new()
            .tag("mcp")
            .summary(Some(summary))
            .description(Some(
                "MCP's streamable HTTP transport (2025-11-25): JSON-RPC messages as the MCP \
                 specification defines them. The tools are this host's, named `server__tool`.",
            ))
            .response("200", ResponseBuilder::new().description("An MCP answer"))
            .response(
                "401",
                ResponseBuilder::new().description("No API key, or an unknown one"),
            )
            .build()
    };
    let mut item = PathItem::new(
        HttpMethod::Post,
        operation("Send an MCP request or notification"),
    );
    item.get = Some(operation("Open the session's event stream"));
    item.delete = Some(operation("End the MCP session"));
    item
}
