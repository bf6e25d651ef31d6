//! The simple chat frontend contract (seed 003) through the
//! real binary, a mock OpenAI server, the demo MCP server and a
//! third-party (Python SDK) MCP server.

use reqwest::StatusCode;
use serde_json::json;
use testkit::*;

async fn with_openai_mock(extra: &str) -> (MockLlm, Agenthost) {
    let llm = MockLlm::start().await;
    let config = format!(
        "{}\n[agent]\niteration_limit = 3\n{}\n{extra}",
        llm.provider_toml(),
        demo_server_toml()
    );
    let host = Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test-key-123")]);
    (llm, host)
}

/// The model thinks aloud, calls the calculator with arguments split over
/// three chunks (and every frame split mid-line), then answers.
fn calculator_script(llm: &MockLlm) {
    llm.respond(split_writes(vec![
        role_chunk(),
        text_chunk("Let me calculate that."),
        tool_start_chunk(0, "call_abc", "demo__calculate"),
        tool_args_chunk(0, "{\"expr"),
        tool_args_chunk(0, "ession\": \"12*"),
        tool_args_chunk(0, "(3+4)\"}"),
        finish_chunk("tool_calls"),
        DONE.into(),
    ]));
    llm.respond(vec![
        role_chunk(),
        text_chunk("The answer "),
        text_chunk("is 84 °."),
        finish_chunk("stop"),
        DONE.into(),
    ]);
}

#[tokio::test]
async fn streams_tool_start_end_and_only_the_final_text() {
    let (llm, host) = with_openai_mock("").await;
    calculator_script(&llm);
    let (status, _) = host.post_json("/connect/demo", "").await;
    assert_eq!(status, StatusCode::OK);

    let response = client()
        .post(host.url("/chat/stream"))
        .body(r#"{"message": "What is 12*(3+4)?"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = body_text(response).await;
    assert_golden("simple/openai_tool_call.sse", &body);

    let requests = llm.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].headers["authorization"],
        "Bearer sk-test-key-123"
    );
    let first = &requests[0].body;
    assert_eq!(first["stream"], true);
    assert_eq!(first["model"], "gpt-4o-mini");
    assert_eq!(
        first["messages"],
        json!([{ "role": "user", "content": "What is 12*(3+4)?" }])
    );
    let tool_names: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(tool_names.contains(&"demo__calculate"), "{tool_names:?}");
    assert_eq!(first["tools"][0]["type"], "function");
    // The second turn carries the call and its result back to the model.
    let second = &requests[1].body["messages"];
    assert_eq!(second[1]["role"], "assistant");
    assert_eq!(second[1]["content"], "Let me calculate that.");
    assert_eq!(second[1]["tool_calls"][0]["id"], "call_abc");
    assert_eq!(
        second[1]["tool_calls"][0]["function"]["name"],
        "demo__calculate"
    );
    assert_eq!(
        second[1]["tool_calls"][0]["function"]["arguments"],
        "{\"expression\": \"12*(3+4)\"}"
    );
    assert_eq!(
        second[2],
        json!({ "role": "tool", "content": "84", "tool_call_id": "call_abc" })
    );
    assert!(
        !host.logs().contains("sk-test-key-123"),
        "the key must never be logged"
    );
}

#[tokio::test]
async fn non_streaming_chat_reports_tool_calls_and_keeps_history() {
    let (llm, host) = with_openai_mock("").await;
    calculator_script(&llm);
    host.post("/connect/demo", "").await;
    let (status, body) = host
        .post_json("/chat", r#"{"message": "What is 12*(3+4)?"}"#)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "response": "The answer is 84 °.",
            "tool_calls": [{ "name": "calculate", "args": { "expression": "12*(3+4)" }, "result": "84" }],
        })
    );

    // A follow-up sees the earlier exchange.
    llm.respond(vec![
        text_chunk("Still 84."),
        finish_chunk("stop"),
        DONE.into(),
    ]);
    let (status, body) = host
        .post_json("/chat", r#"{"message": "And again?"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let messages = llm.requests()[2].body["messages"].clone();
    assert_eq!(messages.as_array().unwrap().len(), 5, "{messages}");
    assert_eq!(messages[4]["content"], "And again?");
}

#[tokio::test]
async fn newcomer_path_works_offline_with_the_mock_provider() {
    let host = Agenthost::start_with_defaults();
    assert!(host.logs().contains("provider=mock"), "{}", host.logs());

    let (status, servers) = host.get("/servers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(servers[0]["id"], "demo");
    assert_eq!(servers[0]["name"], "Demo tools");
    assert!(
        servers[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("agenthost demo-mcp")
    );

    let (status, connected) = host.post_json("/connect/demo", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(connected["success"], true);
    assert_eq!(connected["server_id"], "demo");
    assert_eq!(connected["server_name"], "Demo tools");
    let names: Vec<&str> = connected["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "add_note",
            "calculate",
            "current_time",
            "list_notes",
            "read_note"
        ]
    );
    // The demo server is rmcp's, which speaks the stateless era; the pool
    // asks for it first.
    let (_, servers) = host.get("/servers").await;
    assert_eq!(servers[0]["protocol_version"], "2026-07-28", "{servers}");

    // `curl -d` without `-H 'content-type: application/json'` sends a form
    // content type, as a page elsewhere can without a CORS preflight: it is
    // refused, saying what to send.
    let response = client()
        .post(host.url("/chat/stream"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"message":"What is 12*(3+4)?"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({ "detail": "send the request body as JSON, with `Content-Type: application/json`" })
    );
}

#[tokio::test]
async fn third_party_python_mcp_server_works_and_restarts_after_dying() {
    let host = Agenthost::start(&fastmcp_server_toml("pytools"));
    let (status, connected) = host.post_json("/connect/pytools", "").await;
    assert_eq!(status, StatusCode::OK, "{connected}");
    let names: Vec<&str> = connected["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["reverse_text", "word_count", "tiny_image", "crash", "slow"]
    );

    let (status, body) = host
        .post_json(
            "/chat",
            r#"{"message": "reverse_text {\"text\": \"agenthost\"}"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tool_calls"][0]["result"], "tsohtnega");
    assert_eq!(body["response"], "reverse_text returned: tsohtnega.");

    // The server dies mid-call: the model gets an error result, the chat
    // still answers, and the next use starts the server again.
    let (status, body) = host
        .post_json("/chat", r#"{"message": "please crash"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let result = body["tool_calls"][0]["result"].as_str().unwrap();
    assert!(
        result.contains("tool `crash` of MCP server `pytools` failed"),
        "{result}"
    );

    let (status, body) = host
        .post_json(
            "/chat",
            r#"{"message": "word_count {\"text\": \"one two three\"}"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tool_calls"][0]["result"], "3");
}

#[tokio::test]
async fn status_connect_and_disconnect() {
    let host = Agenthost::start(&demo_server_toml());
    let (_, status) = host.get("/status").await;
    assert_eq!(
        status,
        json!({ "connected": false, "server_id": null, "tools": [] })
    );

    host.post("/connect/demo", "").await;
    let (_, status) = host.get("/status").await;
    assert_eq!(status["connected"], true);
    assert_eq!(status["server_id"], "demo");
    assert_eq!(status["tools"].as_array().unwrap().len(), 5);
    assert!(
        status["tools"][1]["description"]
            .as_str()
            .unwrap()
            .contains("arithmetic")
    );

    let (status, body) = host.post_json("/disconnect", "").await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "success": true })));
    let (_, status) = host.get("/status").await;
    assert_eq!(
        status,
        json!({ "connected": false, "server_id": null, "tools": [] })
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx() {
    let host = Agenthost::start(&demo_server_toml());
    let detail = |body: &serde_json::Value| body["detail"].as_str().unwrap().to_owned();

    let (status, body) = host.post_json("/connect/nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        detail(&body),
        "unknown MCP server `nope` (configured: demo)"
    );

    let (status, body) = host.post_json("/chat/stream", r#"{"message": "hi"}"#).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        detail(&body).starts_with("no MCP server is connected: POST /connect/{server_id} first")
    );

    host.post("/connect/demo", "").await;
    let cases = [
        (
            "{\"message\": ",
            StatusCode::BAD_REQUEST,
            "request body is not valid JSON",
        ),
        (
            "",
            StatusCode::BAD_REQUEST,
            "request body is not valid JSON: the body is empty; send JSON",
        ),
        (
            "{}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid request body: missing field `message`",
        ),
        (
            "{\"message\": 5}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid field `message`: invalid type: integer `5`, expected a string",
        ),
        (
            "{\"message\": \"  \"}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid field `message`: must not be empty",
        ),
        (
            "[1, 2]",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid request body: the body must be a JSON object",
        ),
    ];
    for path in ["/chat/stream", "/chat"] {
        for (body, want_status, want_detail) in cases {
            let (status, answer) = host.post_json(path, body).await;
            assert_eq!(status, want_status, "{path} {body}: {answer}");
            assert!(
                detail(&answer).starts_with(want_detail),
                "{path} {body}: {answer}"
            );
        }
    }

    let (status, body) = host
        .post_json("/chat/stream?format=nope", r#"{"message": "hi"}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        detail(&body)
            == "no encoder plugin named `nope` is loaded (loaded: feather, mcp-chat, simple, truefoundry)",
        "{body}"
    );

    let huge = format!("{{\"message\": \"{}\"}}", "a".repeat(2 << 20));
    let response = client()
        .post(host.url("/chat"))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn cors_allows_the_configured_frontend_only() {
    let host = Agenthost::start(&demo_server_toml());
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, host.url("/chat/stream"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("http://localhost:3000").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    assert_eq!(allowed.headers()["access-control-allow-methods"], "POST");
    assert_eq!(
        allowed.headers()["access-control-allow-headers"],
        "content-type"
    );
    let refused = preflight("http://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// The seed's flow is start, end per tool, even when one model turn asks
/// for several tools at once (the host runs them concurrently).
#[tokio::test]
async fn several_tools_in_one_turn_stream_start_end_pairs() {
    let (llm, host) = with_openai_mock("").await;
    llm.respond(vec![
        tool_start_chunk(0, "call_a", "demo__calculate"),
        tool_args_chunk(0, "{\"expression\": \"6*7\"}"),
        tool_start_chunk(1, "call_b", "demo__list_notes"),
        tool_args_chunk(1, "{}"),
        tool_start_chunk(2, "call_c", "demo__calculate"),
        tool_args_chunk(2, "{\"expression\": \"1/0\"}"),
        finish_chunk("tool_calls"),
        DONE.into(),
    ]);
    llm.respond(vec![text_chunk("Done."), finish_chunk("stop"), DONE.into()]);
    host.post("/connect/demo", "").await;
    let (status, body) = host.post("/chat/stream", r#"{"message": "three"}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        concat!(
            "data: {\"type\": \"tool_start\", \"id\": \"call_a\", \"name\": \"calculate\", \"args\": {\"expression\": \"6*7\"}}\n\n",
            "data: {\"type\": \"tool_end\", \"id\": \"call_a\", \"name\": \"calculate\"}\n\n",
            "data: {\"type\": \"tool_start\", \"id\": \"call_b\", \"name\": \"list_notes\", \"args\": {}}\n\n",
            "data: {\"type\": \"tool_end\", \"id\": \"call_b\", \"name\": \"list_notes\"}\n\n",
            "data: {\"type\": \"tool_start\", \"id\": \"call_c\", \"name\": \"calculate\", \"args\": {\"expression\": \"1/0\"}}\n\n",
            "data: {\"type\": \"tool_end\", \"id\": \"call_c\", \"name\": \"calculate\"}\n\n",
            "data: {\"type\": \"text\", \"content\": \"Done.\"}\n\n",
            "data: [DONE]\n\n",
        )
    );
}

/// `iteration_limit` bounds rounds of tool calls: after the last round
/// the model is offered no tools and answers with what it has.
#[tokio::test]
async fn after_the_last_tool_round_the_model_answers_without_tools() {
    let (llm, host) = with_openai_mock("").await;
    for i in 0..3 {
        llm.respond(vec![
            tool_start_chunk(0, &format!("call_{i}"), "demo__list_notes"),
            tool_args_chunk(0, "{}"),
            finish_chunk("tool_calls"),
            DONE.into(),
        ]);
    }
    llm.respond(vec![
        text_chunk("No notes yet."),
        finish_chunk("stop"),
        DONE.into(),
    ]);
    host.post("/connect/demo", "").await;
    let (status, body) = host.post("/chat/stream", r#"{"message": "loop"}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.matches("tool_start").count(), 3, "{body}");
    assert!(
        body.ends_with(
            "data: {\"type\": \"text\", \"content\": \"No notes yet.\"}\n\ndata: [DONE]\n\n"
        ),
        "{body}"
    );
    let requests = llm.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests[2].body["tools"].is_array());
    assert!(
        requests[3].body.get("tools").is_none(),
        "{}",
        requests[3].body
    );
    // The last turn still sees every call and result.
    assert_eq!(requests[3].body["messages"].as_array().unwrap().len(), 7);

    // A model that calls a tool although none was offered ends the chat.
    for i in 0..4 {
        llm.respond(vec![
            tool_start_chunk(0, &format!("again_{i}"), "demo__list_notes"),
            tool_args_chunk(0, "{}"),
            finish_chunk("tool_calls"),
            DONE.into(),
        ]);
    }
    let (_, body) = host.post("/chat/stream", r#"{"message": "loop"}"#).await;
    assert_eq!(body.matches("tool_start").count(), 3, "{body}");
    assert!(
        body.ends_with(
            "data: [ERROR] iteration limit reached: the model still called tools after 3 rounds of tool calls, in its last turn, which was offered none\n\n"
        ),
        "{body}"
    );
}

#[tokio::test]
async fn provider_failure_is_an_error_event_not_a_hang() {
    let (llm, host) = with_openai_mock("").await;
    host.post("/connect/demo", "").await;
    // Nothing scripted: the mock answers 500.
    let (status, body) = host.post("/chat/stream", r#"{"message": "hi"}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        format!(
            "data: [ERROR] provider `openai` ({}/chat/completions): the provider answered HTTP 500: mock LLM: no scripted response left (gave up after 3 attempts)\n\n",
            llm.base_url
        )
    );
    // A stream cut before the model finished is an error too.
    llm.respond(vec![text_chunk("partial")]);
    let (_, body) = host.post("/chat/stream", r#"{"message": "hi"}"#).await;
    assert!(
        body.ends_with("the provider's stream ended before the model finished its turn\n\n"),
        "{body}"
    );
    assert!(
        body.starts_with("data: [ERROR] plugin `openai` failed:"),
        "{body}"
    );
}

#[tokio::test]
async fn openai_environment_variables_select_any_compatible_server() {
    let llm = MockLlm::start().await;
    let host = Agenthost::start_with_env(
        &demo_server_toml(),
        &[
            ("OPENAI_BASE_URL", llm.base_url.as_str()),
            ("OPENAI_API_KEY", "sk-from-env-456"),
        ],
    );
    assert!(host.logs().contains("provider=openai"), "{}", host.logs());
    calculator_script(&llm);
    host.post("/connect/demo", "").await;
    let (status, body) = host
        .post_json("/chat", r#"{"message": "What is 12*(3+4)?"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"], "The answer is 84 °.");
    assert_eq!(
        llm.requests()[0].headers["authorization"],
        "Bearer sk-from-env-456"
    );
    assert!(!host.logs().contains("sk-from-env-456"));
}
