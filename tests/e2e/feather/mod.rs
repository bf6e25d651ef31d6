//! The Feather surface (seeds 000 and 001) through the real binary: the
//! MCP chat stream, roles enforced by the tools, connections with
//! encrypted credentials, the test-call surface, the tool-call log, and
//! the aggregated `/mcp/` endpoint driven by the Python MCP client.

mod chat;
mod connections;
mod mcp_endpoint;
mod validation;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::*;

const ADMIN: &str = "sk-acme-admin-0001";
const VIEWER: &str = "sk-acme-viewer-0001";
const OTHER_ORG: &str = "sk-globex-admin-0001";
const CONNECTION_KEY: &str = "5f0e3c6a9b1d4e7f8a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";
const END_USER: &str = "6f1c2f7e-1111-4c1b-9f3e-0a4b5c6d7e8f";
const CRM_TOKEN: &str = "crm-secret-token-7d41";
const MISSING_KEY: &str = r#"{"error":"AuthenticationError","message":"missing API key: send it in the x-api-key header"}"#;

/// Keys for two orgs, loopback MCP servers allowed, and the demo server
/// with `list_notes` overridden to count as a write.
fn config(llm: &MockLlm, data_dir: Option<&std::path::Path>) -> String {
    let data = data_dir
        .map(|d| format!("data_dir = {:?}\n", d.display().to_string()))
        .unwrap_or_default();
    format!(
        "{data}{}\n\
         [[api_keys]]\nkey = \"{ADMIN}\"\norg = \"acme\"\nrole = \"admin\"\n\
         [[api_keys]]\nkey = \"{VIEWER}\"\norg = \"acme\"\nrole = \"viewer\"\n\
         [[api_keys]]\nkey = \"{OTHER_ORG}\"\norg = \"globex\"\nrole = \"admin\"\n\
         [security]\nallow_mcp_networks = [\"127.0.0.0/8\"]\n\
         {}tool_access = {{ list_notes = \"write\" }}\n",
        llm.provider_toml(),
        demo_server_toml(),
    )
}

fn start(llm: &MockLlm, data_dir: Option<&std::path::Path>) -> Agenthost {
    start_with(&config(llm, data_dir))
}

fn start_with(config: &str) -> Agenthost {
    Agenthost::start_with_env(config, &[("AGENTHOST_CONNECTION_KEY", CONNECTION_KEY)])
}

async fn send(
    host: &Agenthost,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut request = client()
        .request(method, host.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status(), body_text(response).await)
}

async fn send_json(
    host: &Agenthost,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let (status, text) = send(host, method, path, key, body, &[]).await;
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, value)
}

async fn chat(host: &Agenthost, key: &str, body: Value) -> String {
    let (status, text) = send(
        host,
        Method::POST,
        "/v1/mcp-chat/stream",
        Some(key),
        &body.to_string(),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    text
}

/// The stream's `(event, data)` pairs.
fn events(body: &str) -> Vec<(String, Value)> {
    assert!(body.ends_with("\n\n"), "{body}");
    body.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|frame| {
            let (event, data) = frame.split_once('\n').unwrap();
            let event = event.strip_prefix("event: ").unwrap().to_owned();
            let data = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            (event, data)
        })
        .collect()
}

fn tool_call_turn(calls: &[(&str, &str, &[&str])]) -> Vec<String> {
    let mut writes = vec![role_chunk()];
    for (i, (id, name, fragments)) in calls.iter().enumerate() {
        writes.push(tool_start_chunk(i as u32, id, name));
        for fragment in *fragments {
            writes.push(tool_args_chunk(i as u32, fragment));
        }
    }
    writes.push(finish_chunk("tool_calls"));
    writes.push(DONE.into());
    split_writes(writes)
}

fn text_turn(text: &str) -> Vec<String> {
    vec![text_chunk(text), finish_chunk("stop"), DONE.into()]
}

async fn create_connection(host: &Agenthost, key: &str, body: Value) -> (StatusCode, Value) {
    send_json(
        host,
        Method::POST,
        "/v1/integrations/connections",
        Some(key),
        &body.to_string(),
    )
    .await
}

/// The tools a new chat offers the model.
async fn offered_tools(host: &Agenthost, llm: &MockLlm) -> Vec<String> {
    llm.respond(text_turn("Hi."));
    chat(
        host,
        ADMIN,
        json!({ "messages": [{ "role": "user", "content": "Hi" }] }),
    )
    .await;
    let requests = llm.requests();
    let last = requests.last().expect("the chat reached the model");
    last.body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
        .collect()
}
