//! `GET /openapi.json`: an OpenAPI 3.1 document that the reference
//! validator accepts, listing every route the server answers, with the
//! request bodies and error shapes of each contract.

use reqwest::StatusCode;
use serde_json::Value;
use testkit::*;

const KEY: &str = "sk-openapi-admin";

/// Every operation the server routes, `/mcp/` included.
const OPERATIONS: &[&str] = &[
    "DELETE /mcp",
    "DELETE /mcp/",
    "DELETE /servers/{name}",
    "DELETE /v1/integrations/connections/{connection_id}",
    "GET /",
    "GET /admin/plugins",
    "GET /admin/stats",
    "GET /admin/usage",
    "GET /chat/{id}/stream",
    "GET /healthz",
    "GET /mcp",
    "GET /mcp/",
    "GET /metrics",
    "GET /readyz",
    "GET /runs/{id}",
    "GET /runs/{id}/events",
    "GET /servers",
    "GET /sessions",
    "GET /sessions/{id}/history",
    "GET /status",
    "GET /tools",
    "GET /ui",
    "GET /ui/app.js",
    "GET /v1/integrations/connections",
    "GET /v1/integrations/connections/{connection_id}",
    "GET /v1/integrations/tool-calls",
    "PATCH /v1/integrations/connections/{connection_id}/tools/{slug}",
    "POST /admin/plugins/reload",
    "POST /api/llm/agent/responses",
    "POST /chat",
    "POST /chat/stream",
    "POST /chat/{id}",
    "POST /connect/{server_id}",
    "POST /disconnect",
    "POST /mcp",
    "POST /mcp/",
    "POST /runs/{id}/approvals/{call_id}",
    "POST /runs/{id}/cancel",
    "POST /servers",
    "POST /sessions",
    "POST /v1/integrations/connections",
    "POST /v1/integrations/connections/{connection_id}/test-mcp-call",
    "POST /v1/mcp-chat/stream",
];

#[tokio::test]
async fn openapi_json_is_valid_3_1_and_lists_every_route() {
    let host = Agenthost::start(&format!(
        "[[api_keys]]\nkey = \"{KEY}\"\norg = \"acme\"\nrole = \"admin\"\n"
    ));
    // The document is public, as the probes are: clients need it to be
    // generated, and it holds nothing of any org's.
    let response = client()
        .get(host.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.unwrap();
    let document: Value = serde_json::from_str(&text).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(document["info"]["title"], "agenthost");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let checked = run_json_client(
        "python3",
        &[
            fixture("openapi_validate.py").display().to_string(),
            file.display().to_string(),
        ],
    )
    .await;
    assert_eq!(checked["valid"], true, "{checked}");
    let operations: Vec<&str> = checked["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(operations, OPERATIONS);

    // Bodies and errors come from the types that read and write them.
    let schemas = &document["components"]["schemas"];
    let paths = &document["paths"];
    assert_eq!(
        paths["/chat/stream"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SimpleChatRequest"
    );
    assert_eq!(
        schemas["SimpleChatRequest"]["required"],
        serde_json::json!(["message"])
    );
    assert!(schemas["SimpleChatRequest"]["properties"]["model"].is_object());
    assert_eq!(
        paths["/chat/{id}"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SessionChatRequest"
    );
    assert_eq!(
        paths["/api/llm/agent/responses"]["post"]["responses"]["400"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    assert!(schemas["AgentRequest"]["properties"]["mcp_servers"].is_object());
    assert_eq!(
        paths["/v1/mcp-chat/stream"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/HttpValidationError"
    );
    assert!(
        paths["/chat/stream"]["post"]["responses"]["200"]["content"]["text/event-stream"]
            .is_object()
    );
    let usage_params: Vec<&str> = paths["/admin/usage"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(usage_params, ["from", "to", "group_by"]);
}
