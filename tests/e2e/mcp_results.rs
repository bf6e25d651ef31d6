//! Tool results without loss. What a third-party server (the Python SDK's
//! FastMCP, and the reference server on stdio and streamable HTTP) returns
//! reaches clients of `/mcp/` whole: an image block byte for byte,
//! `structuredContent`, resource links, annotations, and `outputSchema` in
//! the listing. The model reads the text, with a note for the image it is
//! not given. A
//! server configured with `tool_prefix = false` keeps its own tool names.
//! A server's word that its tools changed refreshes the offer, in either
//! protocol era.

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::*;

/// The 1x1 PNG the fixture's `tiny_image` returns, base64 as it sends it.
const TINY_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

const KEY: &str = "sk-results-admin";

fn host(llm: &MockLlm) -> Agenthost {
    // A Python server takes longer than the default 2 s chats wait.
    let config = format!(
        "{}{}[agent]\ntools_wait_secs = 60\n[[api_keys]]\nkey = \"{KEY}\"\norg = \"acme\"\nrole = \"admin\"\n",
        llm.provider_toml(),
        fastmcp_server_toml("py")
    );
    Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test")]).with_key(KEY)
}

#[tokio::test]
async fn images_structured_content_and_output_schemas_reach_mcp_clients_whole() {
    let llm = MockLlm::start().await;
    let host = host(&llm);
    let calls = json!([["py__tiny_image", {}], ["py__word_count", { "text": "one two" }]]);
    let out = run_mcp_client(&host.url("/mcp/"), KEY, None, &calls).await;

    let listed = |name: &str| -> Value {
        out["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not listed: {out}"))
    };
    let word_count = listed("py__word_count");
    assert_eq!(
        word_count["output_schema"]["properties"]["result"]["type"], "integer",
        "{word_count}"
    );
    assert!(listed("py__tiny_image").get("output_schema").is_none());

    assert_eq!(
        out["results"][0]["content"],
        json!([
            { "type": "text", "text": "A tiny image:" },
            { "type": "image", "data": TINY_PNG, "mimeType": "image/png" },
        ]),
        "{out}"
    );
    assert_eq!(
        out["results"][1]["structuredContent"],
        json!({ "result": 2 })
    );
    assert_eq!(
        out["results"][1]["content"],
        json!([{ "type": "text", "text": "2" }])
    );
}

/// A chat on the connected server whose model calls `tool` with no
/// arguments, then answers.
async fn chat_calling(host: &Agenthost, llm: &MockLlm, tool: &str) {
    llm.respond(vec![
        role_chunk(),
        tool_start_chunk(0, "call_img", tool),
        tool_args_chunk(0, "{}"),
        finish_chunk("tool_calls"),
        DONE.into(),
    ]);
    llm.respond(vec![text_chunk("Seen."), finish_chunk("stop"), DONE.into()]);
    let (status, body) = host
        .post("/chat/stream", r#"{"message": "Show me the image"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_model_reads_the_caption_and_a_note_for_the_image_not_its_bytes() {
    let llm = MockLlm::start().await;
    let host = host(&llm);
    let (status, connected) = host.post_json("/connect/py", "").await;
    assert_eq!(status, StatusCode::OK, "{connected}");
    chat_calling(&host, &llm, "py__tiny_image").await;
    assert_eq!(
        llm.tool_message_in(1),
        "A tiny image:\n[an image (image/png, 70 bytes) is in the result but not shown to the model]"
    );
}

/// server-everything, the reference server, on both of its transports:
/// `/mcp/` clients get its results, and a long call's progress, exactly as
/// it answers its own clients, and the model reads an image's caption
/// with a note in its place.
#[tokio::test]
async fn the_reference_servers_results_pass_through_whole_on_stdio_and_streamable_http() {
    let everything = FixtureServer::start_with("node", "node/everything_http.mjs", &[]);
    let url = format!("http://127.0.0.1:{}/mcp", everything.port);
    let llm = MockLlm::start().await;
    let config = format!(
        "{}[[mcp_servers]]\nid = \"stdio\"\ntransport = \"stdio\"\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n\
         [[mcp_servers]]\nid = \"http\"\ntransport = \"streamable_http\"\nurl = \"{url}\"\n\
         [agent]\ntools_wait_secs = 60\n[[api_keys]]\nkey = \"{KEY}\"\norg = \"acme\"\nrole = \"admin\"\n",
        llm.provider_toml(),
        server_everything(),
    );
    let host =
        Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test")]).with_key(KEY);
    let calls = [
        ("get-tiny-image", json!({})),
        ("get-structured-content", json!({ "location": "New York" })),
        ("get-resource-links", json!({ "count": 2 })),
        (
            "get-annotated-message",
            json!({ "messageType": "success", "includeImage": true }),
        ),
        (
            "trigger-long-running-operation",
            json!({ "duration": 0.3, "steps": 3 }),
        ),
    ];
    let named = |prefix: &str| -> Value {
        calls
            .iter()
            .map(|(tool, arguments)| json!([format!("{prefix}{tool}"), arguments]))
            .collect()
    };
    let direct = run_mcp_client(&url, KEY, None, &named("")).await;
    assert_eq!(
        direct["results"][1]["structuredContent"],
        json!({ "temperature": 33, "conditions": "Cloudy", "humidity": 82 })
    );
    assert_eq!(
        direct["progress"][4],
        json!([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]])
    );
    for (index, server) in ["stdio", "http"].into_iter().enumerate() {
        let through = run_mcp_client(
            &host.url("/mcp/"),
            KEY,
            None,
            &named(&format!("{server}__")),
        )
        .await;
        assert_eq!(through["results"], direct["results"], "{server}");
        assert_eq!(through["progress"], direct["progress"], "{server}");

        let (status, connected) = host.post_json(&format!("/connect/{server}"), "").await;
        assert_eq!(status, StatusCode::OK, "{connected}");
        chat_calling(&host, &llm, &format!("{server}__get-tiny-image")).await;
        assert_eq!(
            llm.tool_message_in(2 * index + 1),
            "Here's the image you requested:\n\
             [an image (image/png, 4033 bytes) is in the result but not shown to the model]\n\
             The image above is the MCP logo.",
            "{server}"
        );
    }
}

#[tokio::test]
async fn a_server_without_tool_prefix_keeps_its_own_names_where_no_other_took_them() {
    let python = |id: &str| {
        format!(
            "[[mcp_servers]]\nid = \"{id}\"\ntransport = \"stdio\"\ncommand = \"python3\"\nargs = [{:?}]\ntool_prefix = false\n",
            fixture("fastmcp_server.py").display().to_string()
        )
    };
    let llm = MockLlm::start().await;
    let config = format!(
        "{}{}{}{}[agent]\ntools_wait_secs = 60\n[[api_keys]]\nkey = \"{KEY}\"\norg = \"acme\"\nrole = \"admin\"\n",
        llm.provider_toml(),
        demo_server_toml(),
        python("first"),
        python("second"),
    );
    let host = Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test")]);
    let calls = json!([["word_count", { "text": "a b c" }]]);
    let out = run_mcp_client(&host.url("/mcp/"), KEY, None, &calls).await;
    let mut names: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .filter(|name| name.contains("word_count") || name.contains("calculate"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["demo__calculate", "second__word_count", "word_count"],
        "the first server keeps the name, the second is prefixed: {out}"
    );
    assert_eq!(
        out["results"][0]["structuredContent"],
        json!({ "result": 3 })
    );
}

/// A host in front of one server, `growing`, started by `command`.
fn growing_host(command: &str, script: &str, args: &str) -> Agenthost {
    let config = format!(
        "[[mcp_servers]]\nid = \"growing\"\ntransport = \"stdio\"\ncommand = {command:?}\nargs = [{:?}{args}]\n[agent]\ntools_wait_secs = 60\n[[api_keys]]\nkey = \"{KEY}\"\norg = \"acme\"\nrole = \"admin\"\n",
        fixture(script).display().to_string()
    );
    Agenthost::start(&config).with_key(KEY)
}

/// Calls `growing__grow`, which adds a tool and tells of it, then, from a
/// second client, calls the new tool: what the two clients saw.
async fn grow_and_call_the_new_tool(host: &Agenthost) -> (Value, Value) {
    let url = host.url("/mcp/");
    let client = |calls: Value| {
        let url = url.clone();
        async move { run_mcp_client(&url, KEY, None, &calls).await }
    };
    let offers_grown = |out: &Value| {
        out["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "growing__grown")
    };
    let before = client(json!([["growing__grow", {}]])).await;
    assert!(!offers_grown(&before), "{before}");
    assert_eq!(before["results"][0]["content"][0]["text"], "grown");
    let after = client(json!([["growing__grown", {}]])).await;
    assert!(offers_grown(&after), "{after}");
    assert_eq!(after["results"][0]["content"][0]["text"], "I am new");
    (before, after)
}

#[tokio::test]
async fn a_servers_word_that_its_tools_changed_refreshes_what_clients_are_offered() {
    // The Python SDK 1.x sends `notifications/tools/list_changed`.
    let host = growing_host("python3", "fastmcp_server.py", ", \"--growing\"");
    grow_and_call_the_new_tool(&host).await;
    let (_, servers) = host.get("/servers").await;
    assert_eq!(servers[0]["protocol_version"], "2025-11-25");
}

#[tokio::test]
async fn a_2026_07_28_server_tells_of_changed_tools_on_the_subscription_the_pool_opens() {
    let host = growing_host(&python_mcp2(), "mcp2_server.py", "");
    let (before, _) = grow_and_call_the_new_tool(&host).await;
    let (_, servers) = host.get("/servers").await;
    assert_eq!(servers[0]["protocol_version"], "2026-07-28");
    // The era's envelope stays with the server: its identity stamp in the
    // result's `_meta` is not handed on as if it were this host's.
    assert_eq!(before["results"][0].get("meta"), None, "{before}");
    assert_eq!(
        before["results"][0]["structuredContent"],
        json!({ "result": "grown" })
    );
}
