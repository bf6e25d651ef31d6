//! The Anthropic adapter, model routing, and provider faults
//! (retries, fallback, cut and malformed streams, timeouts, abandoned
//! streams), through the real binary against mock provider servers.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use testkit::*;

fn start(config: &str) -> Agenthost {
    let config = format!("{config}\n{}", demo_server_toml());
    Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test-key-123")])
}

fn openai_provider(name: &str, llm: &MockLlm, extra: &str) -> String {
    format!(
        "[[providers]]\nname = \"{name}\"\nplugin = \"openai\"\nbase_url = {:?}\napi_key_env = \"AGENTHOST_TEST_KEY\"\nmodel = \"gpt-4o-mini\"\n{extra}\n",
        llm.base_url
    )
}

fn text_reply(text: &str) -> Vec<String> {
    vec![text_chunk(text), finish_chunk("stop"), DONE.into()]
}

async fn connected(host: &Agenthost) {
    let (status, body) = host.post_json("/connect/demo", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn anthropic_streams_tool_use_with_input_json_fragments() {
    let llm = MockLlm::start().await;
    let config = format!(
        "[provider]\nplugin = \"anthropic\"\nbase_url = {:?}\napi_key_env = \"AGENTHOST_TEST_KEY\"\nmodel = \"claude-test\"\n",
        llm.root_url
    );
    let host = start(&config);
    connected(&host).await;
    let mut first = vec![anthropic_message_start()];
    first.extend(anthropic_text_block(0, "Let me check."));
    first.extend(anthropic_tool_block(
        1,
        "toolu_1",
        "demo__calculate",
        &["{\"expression\":", " \"6*", "7\"}"],
    ));
    first.extend(anthropic_stop("tool_use"));
    llm.respond(split_writes(first));
    let mut second = vec![anthropic_message_start()];
    second.extend(anthropic_text_block(0, "It is 42."));
    second.extend(anthropic_stop("end_turn"));
    llm.respond(second);

    let (status, body) = host
        .post("/chat/stream", r#"{"message": "What is 6*7?"}"#)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_golden("simple/anthropic_tool_call.sse", &body);

    let requests = llm.requests();
    assert_eq!(requests[0].path, "/v1/messages");
    assert_eq!(requests[0].headers["x-api-key"], "sk-test-key-123");
    assert_eq!(requests[0].headers["anthropic-version"], "2023-06-01");
    assert!(requests[0].headers.get("authorization").is_none());
    let first = &requests[0].body;
    assert_eq!(first["model"], "claude-test");
    assert_eq!(first["max_tokens"], 4096);
    assert_eq!(first["stream"], true);
    assert_eq!(
        first["messages"],
        json!([{ "role": "user", "content": "What is 6*7?" }])
    );
    let calculate = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "demo__calculate")
        .unwrap();
    assert_eq!(calculate["input_schema"]["type"], "object");
    assert_eq!(
        requests[1].body["messages"],
        json!([
            { "role": "user", "content": "What is 6*7?" },
            { "role": "assistant", "content": [
                { "type": "text", "text": "Let me check." },
                { "type": "tool_use", "id": "toolu_1", "name": "demo__calculate", "input": { "expression": "6*7" } },
            ]},
            { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "toolu_1", "content": "42" }] },
        ])
    );
}

/// Anthropic refuses tool blocks in a request that defines no tools, so the
/// last turn after the tool rounds sends the earlier calls as text.
#[tokio::test]
async fn anthropic_last_turn_without_tools_carries_the_calls_as_text() {
    let llm = MockLlm::start().await;
    let config = format!(
        "[provider]\nplugin = \"anthropic\"\nbase_url = {:?}\napi_key_env = \"AGENTHOST_TEST_KEY\"\nmodel = \"claude-test\"\n[agent]\niteration_limit = 1\n",
        llm.root_url
    );
    let host = start(&config);
    connected(&host).await;
    let mut first = vec![anthropic_message_start()];
    first.extend(anthropic_tool_block(
        0,
        "toolu_1",
        "demo__calculate",
        &["{\"expression\": \"6*7\"}"],
    ));
    first.extend(anthropic_stop("tool_use"));
    llm.respond(first);
    let mut second = vec![anthropic_message_start()];
    second.extend(anthropic_text_block(0, "It is 42."));
    second.extend(anthropic_stop("end_turn"));
    llm.respond(second);

    let (status, body) = host
        .post("/chat/stream", r#"{"message": "What is 6*7?"}"#)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.ends_with(
            "data: {\"type\": \"text\", \"content\": \"It is 42.\"}\n\ndata: [DONE]\n\n"
        ),
        "{body}"
    );
    let last = &llm.requests()[1].body;
    assert!(last.get("tools").is_none(), "{last}");
    assert_eq!(
        last["messages"],
        json!([
            { "role": "user", "content": "What is 6*7?" },
            { "role": "assistant", "content": "[tool call toolu_1: demo__calculate {\"expression\": \"6*7\"}]" },
            { "role": "user", "content": "[result of tool call toolu_1]\n42" },
        ])
    );
}

#[tokio::test]
async fn anthropic_error_events_end_the_stream() {
    let llm = MockLlm::start().await;
    let config = format!(
        "[provider]\nplugin = \"anthropic\"\nbase_url = {:?}\n",
        llm.root_url
    );
    let host = start(&config);
    connected(&host).await;
    let mut writes = vec![anthropic_message_start()];
    writes.push(anthropic_event(json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } })));
    llm.respond(writes);
    let (_, body) = host.post("/chat/stream", r#"{"message": "hi"}"#).await;
    assert_eq!(
        body,
        "data: [ERROR] the provider reported an error: Overloaded\n\n"
    );
}

#[tokio::test]
async fn retries_429_and_5xx_before_the_stream_starts() {
    let llm = MockLlm::start().await;
    let host = start(&openai_provider("openai", &llm, ""));
    connected(&host).await;
    llm.reply(
        Reply::status(429, r#"{"error": {"message": "slow down"}}"#).header("retry-after", "0"),
    );
    llm.reply(Reply::status(503, "busy"));
    llm.respond(text_reply("Third time lucky."));
    let (status, body) = host.post_json("/chat", r#"{"message": "hi"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"], "Third time lucky.");
    assert_eq!(llm.requests().len(), 3);
}

#[tokio::test]
async fn gives_up_within_the_budget_then_falls_back() {
    let primary = MockLlm::start().await;
    let backup = MockLlm::start().await;
    let config = format!(
        "[agent]\nretry_attempts = 2\n{}{}",
        openai_provider("primary", &primary, "fallback = \"backup\""),
        openai_provider("backup", &backup, ""),
    );
    let host = start(&config);
    connected(&host).await;
    for _ in 0..2 {
        primary.reply(Reply::status(503, "busy"));
    }
    backup.respond(text_reply("From the backup."));
    let (status, body) = host.post_json("/chat", r#"{"message": "hi"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"], "From the backup.");
    assert_eq!(primary.requests().len(), 2);
    assert!(host.logs().contains("falling back"), "{}", host.logs());

    // Without a fallback, the client is told what happened.
    for _ in 0..2 {
        backup.reply(Reply::status(502, "bad gateway"));
    }
    let (status, body) = host
        .post_json(
            "/chat",
            r#"{"message": "hi", "model": "backup/gpt-4o-mini"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        body["detail"],
        format!(
            "provider `backup` ({}/chat/completions): the provider answered HTTP 502: bad gateway (gave up after 2 attempts)",
            backup.base_url
        )
    );
}

#[tokio::test]
async fn unauthorised_provider_errors_are_not_retried_and_never_echo_the_key() {
    let llm = MockLlm::start().await;
    let host = start(&openai_provider("openai", &llm, ""));
    connected(&host).await;
    llm.reply(Reply::status(
        401,
        "Incorrect API key provided: sk-test-key-123",
    ));
    let (_, body) = host.post("/chat/stream", r#"{"message": "hi"}"#).await;
    assert_eq!(
        body,
        format!(
            "data: [ERROR] provider `openai` ({}/chat/completions): the provider answered HTTP 401: Incorrect API key provided: [redacted]\n\n",
            llm.base_url
        )
    );
    assert_eq!(llm.requests().len(), 1);
    assert!(!host.logs().contains("sk-test-key-123"));
}

#[tokio::test]
async fn cut_malformed_and_silent_streams_become_error_events() {
    let llm = MockLlm::start().await;
    let config = format!(
        "[agent]\nretry_attempts = 1\nfirst_byte_timeout_secs = 0.5\nprovider_idle_timeout_secs = 0.5\n{}",
        openai_provider("openai", &llm, "")
    );
    let host = start(&config);
    connected(&host).await;
    let cases = [
        (
            Reply::stream(vec![text_chunk("half an ans")]),
            "plugin `openai` failed: the provider's stream ended before the model finished its turn",
        ),
        (
            Reply::stream(vec![text_chunk("a"), "data: {not json\n\n".into()]),
            "plugin `openai` failed: malformed chunk from the provider: key must be a string at line 1 column 2",
        ),
        (
            Reply::never(),
            &*format!(
                "provider `openai` ({}/chat/completions): the provider did not answer within 0.5 s",
                llm.base_url
            ),
        ),
        (
            Reply::stream(vec![text_chunk("and then")]).then_hang(),
            "the provider sent nothing for 0.5 s",
        ),
    ];
    for (reply, error) in cases {
        llm.reply(reply);
        let (status, body) = host.post("/chat/stream", r#"{"message": "hi"}"#).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!("data: [ERROR] {error}\n\n"));
    }
    // No silent retry once a response started: one request per case.
    assert_eq!(llm.requests().len(), 4);
}

#[tokio::test]
async fn routes_by_model_name_and_refuses_unknown_models() {
    let llm = MockLlm::start().await;
    let host = start(&openai_provider(
        "gpt",
        &llm,
        "models = [\"gpt-4o-mini\", \"gpt-5.4-mini\"]",
    ));
    connected(&host).await;

    llm.respond(text_reply("From OpenAI."));
    let (_, body) = host
        .post_json("/chat", r#"{"message": "hi", "model": "gpt-5.4-mini"}"#)
        .await;
    assert_eq!(body["response"], "From OpenAI.");
    assert_eq!(llm.requests()[0].body["model"], "gpt-5.4-mini");

    let (_, body) = host
        .post_json("/chat", r#"{"message": "hi", "model": "mock/any"}"#)
        .await;
    assert_eq!(body["response"], "You said: hi");

    let (status, body) = host
        .post_json("/chat", r#"{"message": "hi", "model": "llama-3"}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["detail"],
        "unknown model `llama-3`; configured: gpt (gpt-4o-mini, gpt-5.4-mini, gpt/<model>); mock (mock/<model>)"
    );
    let (status, _) = host
        .post_json("/chat/stream", r#"{"message": "hi", "model": "llama-3"}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn abandoned_streams_leave_no_tasks_or_connections_behind() {
    let llm = MockLlm::start().await;
    let host = start(&openai_provider("openai", &llm, ""));
    connected(&host).await;
    let baseline = stats_tasks(&host).await;

    const STREAMS: usize = 20;
    let mut responses = Vec::new();
    for i in 0..STREAMS {
        llm.reply(if i % 2 == 0 {
            Reply::never()
        } else {
            Reply::stream(vec![text_chunk("x")]).then_hang()
        });
        let response = client()
            .post(host.url("/chat/stream"))
            .body(r#"{"message": "hi"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        responses.push(response);
    }
    wait_for("every stream to reach the provider", || {
        llm.requests().len() == STREAMS
    })
    .await;
    assert_eq!(llm.open_requests(), STREAMS);
    drop(responses);

    wait_for("upstream requests to be cancelled", || {
        llm.open_requests() == 0
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tasks = stats_tasks(&host).await;
        if tasks <= baseline {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tasks stayed at {tasks}, baseline {baseline}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stats_tasks(host: &Agenthost) -> u64 {
    let (_, stats) = host.get("/admin/stats").await;
    stats["tasks"].as_u64().unwrap()
}

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_tool_call_in_flight() {
    let host = Agenthost::start(&fastmcp_server_toml("pytools"));
    let (status, body) = host.post_json("/connect/pytools", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let marker = tempfile::NamedTempFile::new().unwrap();
    let path = marker.path().display().to_string();
    let message = json!({ "message": format!("slow {{\"seconds\": 30, \"marker\": {path:?}}}") });
    let response = client()
        .post(host.url("/chat/stream"))
        .body(message.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let read = || std::fs::read_to_string(marker.path()).unwrap_or_default();
    wait_for("the tool to start", || read() == "started").await;
    drop(response);
    wait_for("the MCP server to see the call cancelled", || {
        read() == "cancelled"
    })
    .await;
}

#[tokio::test]
async fn provider_errors_name_the_provider_the_url_and_the_cause() {
    let llm = MockLlm::start().await;
    // A port nothing listens on: bound, then let go.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let config = format!(
        "[agent]\nretry_attempts = 1\n\
         [[providers]]\nname = \"gone\"\nplugin = \"openai\"\nbase_url = \"http://{refused}/v1\"\n\
         api_key_env = \"AGENTHOST_TEST_KEY\"\nmodel = \"m1\"\n\
         [[providers]]\nname = \"unversioned\"\nplugin = \"openai\"\nbase_url = {:?}\n\
         api_key_env = \"AGENTHOST_TEST_KEY\"\nmodel = \"m2\"\n\
         [[providers]]\nname = \"keyless\"\nplugin = \"openai\"\nbase_url = {:?}\n\
         api_key_env = \"AGENTHOST_UNSET_KEY_VARIABLE\"\nmodel = \"m3\"\n",
        llm.root_url, llm.base_url
    );
    let host = start(&config);
    connected(&host).await;
    assert!(
        host.logs()
            .contains("AGENTHOST_UNSET_KEY_VARIABLE is not set: requests to this provider are sent without a key"),
        "{}",
        host.logs()
    );

    let (status, body) = host
        .post_json("/chat", r#"{"message": "hi", "model": "gone/m1"}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "provider `gone` (http://{refused}/v1/chat/completions): cannot reach the provider: error sending request"
        )),
        "{detail}"
    );
    assert!(detail.contains("Connection refused"), "the cause: {detail}");

    let (status, body) = host
        .post_json("/chat", r#"{"message": "hi", "model": "unversioned/m2"}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let detail = body["detail"].as_str().unwrap();
    let root = llm.root_url.trim_end_matches('/');
    assert!(
        detail.starts_with(&format!(
            "provider `unversioned` ({root}/chat/completions): the provider answered HTTP 404"
        )),
        "{detail}"
    );
    assert!(
        detail.ends_with("; the URL has no /v1: should the provider's base_url end in /v1?"),
        "{detail}"
    );
}
