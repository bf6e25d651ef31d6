//! `/mcp/` as one server in front of many: the reference server
//! (server-everything, Node) and the Python SDK's FastMCP, both over
//! stdio, reached by the official Python SDK as a client in each protocol
//! era: 1.x speaks 2025-11-25, 2.x negotiates 2026-07-28. Each lists and
//! calls tools (one long call reporting its progress to the client), lists
//! resources, templates and prompts, reads a listed
//! resource and one a template names, and gets a prompt; what is unknown
//! is refused with the spec's error. The key is a viewer's: reading is
//! what a viewer may do.

use serde_json::{Value, json};
use testkit::*;

const KEY: &str = "sk-catalog-viewer";

fn host() -> Agenthost {
    // The FastMCP server keeps its own names (`tool_prefix = false`);
    // server-everything's are prefixed.
    let config = format!(
        r#"{python}tool_prefix = false
[[mcp_servers]]
id = "everything"
transport = "stdio"
command = "node"
args = [{everything:?}, "stdio"]
timeout = 20
[agent]
tools_wait_secs = 60
[[api_keys]]
key = "{KEY}"
org = "acme"
role = "viewer"
"#,
        python = fastmcp_server_toml("py"),
        everything = server_everything(),
    );
    Agenthost::start(&config).with_key(KEY)
}

async fn exercise(host: &Agenthost, python: &str) -> Value {
    let requests = json!({
        "call": ["everything__echo", { "message": "hi" }],
        "progress_call": ["everything__trigger-long-running-operation", { "duration": 0.3, "steps": 3 }],
        "read": [
            "demo://resource/static/document/features.md",
            "demo://resource/dynamic/text/3",
            "text://greeting",
        ],
        "prompt": ["everything__args-prompt", { "city": "Paris" }],
        "bad_read": "nowhere://at/all",
        "bad_prompt": "args-prompt",
    });
    let args = [
        fixture("mcp_catalog_client.py").display().to_string(),
        host.url("/mcp/"),
        KEY.to_owned(),
        requests.to_string(),
    ];
    run_json_client(python, &args).await
}

fn names(listed: &Value) -> Vec<&str> {
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect()
}

/// What both eras' clients must see alike.
fn assert_catalog(out: &Value) {
    assert_eq!(out["server_info"]["name"], "agenthost", "{out}");
    assert_eq!(
        out["progress"],
        json!([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]]),
        "a long call's progress reaches the client that asked"
    );
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(tools.contains(&"everything__echo"), "{tools:?}");
    assert!(
        !tools.contains(&"word_count"),
        "a viewer is offered read-only tools only: {tools:?}"
    );
    assert_eq!(
        out["call"]["content"],
        json!([{ "type": "text", "text": "Echo: hi" }])
    );

    let resources = &out["resources"];
    let features = resources
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["uri"] == "demo://resource/static/document/features.md")
        .unwrap_or_else(|| panic!("not listed: {resources}"));
    assert_eq!(features["name"], "everything__features.md");
    assert_eq!(features["mimeType"], "text/markdown");
    assert!(names(resources).contains(&"greeting"), "{resources}");
    assert_eq!(
        names(&out["templates"]),
        [
            "everything__Dynamic Text Resource",
            "everything__Dynamic Blob Resource"
        ]
    );
    assert_eq!(
        out["templates"][0]["uriTemplate"],
        "demo://resource/dynamic/text/{resourceId}"
    );
    assert_eq!(
        names(&out["prompts"]),
        [
            "summarize",
            "everything__simple-prompt",
            "everything__args-prompt",
            "everything__completable-prompt",
            "everything__resource-prompt",
        ]
    );

    let reads = &out["reads"];
    let text = |i: usize| reads[i]["contents"][0]["text"].as_str().unwrap_or_default();
    assert!(
        text(0).starts_with("# Everything Server - Features"),
        "{reads}"
    );
    assert_eq!(
        reads[0]["contents"][0]["uri"],
        "demo://resource/static/document/features.md"
    );
    assert_eq!(
        reads[1]["contents"][0]["uri"],
        "demo://resource/dynamic/text/3"
    );
    assert!(text(1).contains('3'), "{reads}");
    assert_eq!(text(2), "hello from python");
    assert_eq!(
        out["prompt"]["messages"],
        json!([{ "role": "user", "content": { "type": "text", "text": "What's weather in Paris?" } }])
    );

    assert_eq!(
        out["bad_prompt"]["message"],
        "unknown prompt `args-prompt` (offered: summarize, everything__simple-prompt, everything__args-prompt, everything__completable-prompt, everything__resource-prompt)"
    );
    assert_eq!(out["bad_prompt"]["code"], -32602);
    assert_eq!(
        out["bad_read"]["message"],
        "no MCP server offers resource `nowhere://at/all`"
    );
}

#[tokio::test]
async fn resources_and_prompts_of_every_server_reach_a_client_of_the_2025_11_25_era() {
    let host = host();
    let out = exercise(&host, "python3").await;
    assert_eq!(out["protocol_version"], "2025-11-25", "{out}");
    assert_catalog(&out);
    // The older era's "resource not found".
    assert_eq!(out["bad_read"]["code"], -32002);
}

#[tokio::test]
async fn resources_and_prompts_of_every_server_reach_a_client_of_the_2026_07_28_era() {
    let host = host();
    let out = exercise(&host, &python_mcp2()).await;
    assert_eq!(out["sdk"].as_str().unwrap().split('.').next(), Some("2"));
    assert_eq!(out["protocol_version"], "2026-07-28", "{out}");
    assert_catalog(&out);
    // 2026-07-28 reports an unknown resource as invalid parameters.
    assert_eq!(out["bad_read"]["code"], -32602);
    assert_eq!(out["call"]["resultType"], "complete");
}
