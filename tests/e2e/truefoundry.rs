//! The TrueFoundry agent endpoint (seed 002) through the real
//! binary, including the official OpenAI SDK as its client.

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::*;

const KEY: &str = "sk-tfy-member-0001";

async fn start(llm: &MockLlm, extra: &str) -> Agenthost {
    let config = format!(
        "{}\n[[api_keys]]\nkey = \"{KEY}\"\norg = \"acme\"\nrole = \"member\"\n[security]\nallow_mcp_networks = [\"127.0.0.0/8\"]\n{extra}\n{}\n{}",
        llm.provider_toml(),
        demo_server_toml(),
        fastmcp_server_toml("pytools")
    );
    Agenthost::start(&config)
}

async fn post(host: &Agenthost, body: &Value, key: Option<&str>) -> (StatusCode, String) {
    let mut request = client()
        .post(host.url("/api/llm/agent/responses"))
        .header("content-type", "application/json")
        .header("x-tfy-metadata", r#"{"tfy_log_request":"true"}"#)
        .body(body.to_string());
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = request.send().await.unwrap();
    (response.status(), body_text(response).await)
}

fn request(message: &str, mcp_servers: Value) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [{ "role": "system", "content": "Be brief." }, { "role": "user", "content": message }],
        "mcp_servers": mcp_servers,
        "temperature": 0.7,
        "max_tokens": 500,
        "stream": true,
    })
}

/// The `data:` payloads of a stream, parsed (or raw for `[DONE]`).
fn frames(body: &str) -> Vec<Value> {
    assert!(body.ends_with("\n\n"), "{body}");
    body.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|frame| {
            let data = frame
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data frame: {frame}"));
            serde_json::from_str(data).unwrap_or(Value::String(data.to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn two_tools_on_two_servers_stream_as_openai_chunks() {
    let llm = MockLlm::start().await;
    let host = start(&llm, "").await;
    llm.respond(split_writes(vec![
        role_chunk(),
        tool_start_chunk(0, "call_a", "demo__calculate"),
        tool_args_chunk(0, "{\"expression\":"),
        tool_args_chunk(0, " \"6*7\"}"),
        tool_start_chunk(1, "call_b", "pytools__reverse_text"),
        tool_args_chunk(1, "{\"text\": \"abc\"}"),
        finish_chunk("tool_calls"),
        DONE.into(),
    ]));
    llm.respond(vec![
        text_chunk("Both "),
        text_chunk("done."),
        finish_chunk("stop"),
        DONE.into(),
    ]);
    let servers = json!([
        { "integration_fqn": "demo" },
        { "integration_fqn": "pytools", "enable_all_tools": false, "tools": [{ "name": "reverse_text" }] },
    ]);
    let (status, body) = post(&host, &request("Do both.", servers), Some(KEY)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let frames = frames(&body);
    let id = frames[0]["id"].as_str().unwrap().to_owned();
    let created = frames[0]["created"].clone();
    assert!(id.starts_with("chatcmpl-"));
    let chunk = |delta: Value, finish: Value| {
        json!({ "id": id, "object": "chat.completion.chunk", "created": created, "model": "gpt-4o-mini-2024-07-18",
                "service_tier": "default", "system_fingerprint": "fp_44709d6fcb",
                "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }] })
    };
    let result = |call: &str, server: &str, tool: &str, text: &str, frame: &Value| {
        let delta = &frame["choices"][0]["delta"];
        assert_eq!(frame["id"], format!("tool-call-result-{call}"));
        assert_eq!(frame["object"], "chat.completion.chunk");
        assert_eq!(delta["tool_call_id"], call);
        assert_eq!(delta["role"], "tool");
        assert_eq!(delta["mcp_server_integration_id"], server);
        assert_eq!(delta["tool_name"], tool);
        let content: Value = serde_json::from_str(delta["content"].as_str().unwrap()).unwrap();
        assert_eq!(content["content"][0]["text"], text, "{content}");
    };
    assert_eq!(frames.len(), 13, "{body}");
    // The turn opens with its first tool call, role and all, as the seed's.
    assert_eq!(
        frames[0],
        chunk(
            json!({ "role": "assistant", "content": null, "tool_calls": [{ "index": 0, "id": "call_a", "type": "function",
                "function": { "name": "demo__calculate", "arguments": "" },
                "mcp_server_integration_id": "demo", "tool_name": "calculate" }], "refusal": null }),
            Value::Null
        )
    );
    assert_eq!(
        frames[1],
        chunk(
            json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "{\"expression\":" } }] }),
            Value::Null
        )
    );
    assert_eq!(
        frames[2],
        chunk(
            json!({ "tool_calls": [{ "index": 0, "function": { "arguments": " \"6*7\"}" } }] }),
            Value::Null
        )
    );
    assert_eq!(
        frames[3],
        chunk(
            json!({ "tool_calls": [{ "index": 1, "id": "call_b", "type": "function",
                "function": { "name": "pytools__reverse_text", "arguments": "" },
                "mcp_server_integration_id": "pytools", "tool_name": "reverse_text" }] }),
            Value::Null
        )
    );
    assert_eq!(
        frames[4],
        chunk(
            json!({ "tool_calls": [{ "index": 1, "function": { "arguments": "{\"text\": \"abc\"}" } }] }),
            Value::Null
        )
    );
    assert_eq!(frames[5], chunk(json!({}), json!("tool_calls")));
    result("call_a", "demo", "calculate", "42", &frames[6]);
    result("call_b", "pytools", "reverse_text", "cba", &frames[7]);
    assert_eq!(
        frames[8],
        chunk(
            json!({ "role": "assistant", "content": "", "refusal": null }),
            Value::Null
        )
    );
    assert_eq!(frames[9], chunk(json!({ "content": "Both " }), Value::Null));
    assert_eq!(
        frames[10],
        chunk(json!({ "content": "done." }), Value::Null)
    );
    assert_eq!(frames[11], chunk(json!({}), json!("stop")));
    assert_eq!(frames[12], "[DONE]");
    // Keys in the seed's order, byte for byte.
    let raw: Vec<String> = body
        .split("\n\n")
        .map(|frame| {
            frame
                .replace(&id, "chatcmpl-xxxxxxxxxxxxxxxxxxxxx")
                .replace(&format!("\"created\":{created}"), "\"created\":1750221957")
        })
        .collect();
    assert_eq!(
        raw[0],
        r#"data: {"id":"chatcmpl-xxxxxxxxxxxxxxxxxxxxx","object":"chat.completion.chunk","created":1750221957,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"demo__calculate","arguments":""},"mcp_server_integration_id":"demo","tool_name":"calculate"}],"refusal":null},"logprobs":null,"finish_reason":null}]}"#
    );
    assert_eq!(
        raw[9],
        r#"data: {"id":"chatcmpl-xxxxxxxxxxxxxxxxxxxxx","object":"chat.completion.chunk","created":1750221957,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Both "},"logprobs":null,"finish_reason":null}]}"#
    );
    assert_eq!(
        raw[5],
        r#"data: {"id":"chatcmpl-xxxxxxxxxxxxxxxxxxxxx","object":"chat.completion.chunk","created":1750221957,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}"#
    );

    // Only the selected tools reached the model, and the request's
    // parameters were passed on.
    let sent = &llm.requests()[0].body;
    let mut names: Vec<&str> = sent["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "demo__add_note",
            "demo__calculate",
            "demo__current_time",
            "demo__list_notes",
            "demo__read_note",
            "pytools__reverse_text"
        ]
    );
    assert_eq!(
        sent["messages"][0],
        json!({ "role": "system", "content": "Be brief." })
    );
    assert_eq!(sent["max_tokens"], 500);
    assert!((sent["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
    assert!(
        host.logs().contains("chat request")
            && host
                .logs()
                .contains(r#"metadata={"tfy_log_request":"true"}"#),
        "{}",
        host.logs()
    );
}

#[tokio::test]
async fn the_official_openai_sdk_accumulates_the_stream() {
    let llm = MockLlm::start().await;
    let host = start(&llm, "").await;
    llm.respond(vec![
        role_chunk(),
        text_chunk("Checking. "),
        tool_start_chunk(0, "call_sdk", "demo__calculate"),
        tool_args_chunk(0, "{\"expression\""),
        tool_args_chunk(0, ": \"2^10\"}"),
        finish_chunk("tool_calls"),
        DONE.into(),
    ]);
    llm.respond(vec![
        text_chunk("It is "),
        text_chunk("1024."),
        finish_chunk("stop"),
        DONE.into(),
    ]);
    let servers = json!([{ "integration_fqn": "demo", "enable_all_tools": false, "tools": [{ "name": "calculate" }] }]);
    let args = [
        fixture("truefoundry_client.py").display().to_string(),
        host.url("/api/llm"),
        KEY.to_owned(),
        "What is 2^10?".to_owned(),
        servers.to_string(),
    ];
    let seen = run_json_client("python3", &args).await;
    assert_eq!(
        seen,
        json!({
            "text": "Checking. It is 1024.",
            "tool_calls": [{ "id": "call_sdk", "name": "demo__calculate", "arguments": "{\"expression\": \"2^10\"}",
                             "integration_id": "demo", "tool_name": "calculate" }],
            "tool_results": [{ "tool_call_id": "call_sdk", "tool_name": "calculate", "integration_id": "demo", "text": "1024" }],
        })
    );
    assert!(
        !host.logs().contains("chat request"),
        "a request is logged at info only when its metadata asks: {}",
        host.logs()
    );
}

#[tokio::test]
async fn an_ad_hoc_url_server_works_when_its_network_is_allowed() {
    let llm = MockLlm::start().await;
    let host = start(&llm, "").await;
    let python = FixtureServer::start("streamable-http");
    let url = format!("http://127.0.0.1:{}/mcp", python.port);
    let server_id = format!("127.0.0.1:{}", python.port);
    let model_name = format!("127_0_0_1_{}__word_count", python.port);
    llm.respond(vec![
        tool_start_chunk(0, "call_w", &model_name),
        tool_args_chunk(0, "{\"text\": \"a b c d\"}"),
        finish_chunk("tool_calls"),
        DONE.into(),
    ]);
    llm.respond(vec![text_chunk("Four."), finish_chunk("stop"), DONE.into()]);
    let servers = json!([{ "url": url, "headers": { "x-test": "1" }, "enable_all_tools": false, "tools": [{ "name": "word_count" }] }]);
    let (status, body) = post(&host, &request("Count.", servers), Some(KEY)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let frames = frames(&body);
    let result = frames
        .iter()
        .find(|f| f["id"] == "tool-call-result-call_w")
        .unwrap();
    assert_eq!(
        result["choices"][0]["delta"]["mcp_server_integration_id"],
        server_id
    );
    let content: Value =
        serde_json::from_str(result["choices"][0]["delta"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content["content"][0]["text"], "4");
    assert_eq!(frames.last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn failures_stream_as_error_or_tool_results_and_end_with_done() {
    let llm = MockLlm::start().await;
    let host = start(&llm, "").await;
    let servers = json!([{ "integration_fqn": "pytools" }]);

    // A server dying mid-call is a tool result with the error; the answer still streams.
    llm.respond(vec![
        tool_start_chunk(0, "call_c", "pytools__crash"),
        finish_chunk("tool_calls"),
        DONE.into(),
    ]);
    llm.respond(vec![
        text_chunk("It crashed."),
        finish_chunk("stop"),
        DONE.into(),
    ]);
    let (_, body) = post(&host, &request("crash", servers.clone()), Some(KEY)).await;
    let frames = frames(&body);
    let result = frames
        .iter()
        .find(|f| f["id"] == "tool-call-result-call_c")
        .unwrap();
    let content = result["choices"][0]["delta"]["content"].as_str().unwrap();
    let message: String = serde_json::from_str(content).unwrap();
    assert!(
        message.starts_with("tool `crash` of MCP server `pytools` failed"),
        "{message}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f["choices"][0]["delta"]["content"] == "It crashed.")
    );
    assert_eq!(frames.last().unwrap(), "[DONE]");

    // `iteration_limit` bounds the rounds of tool calls; then the model
    // answers, offered no tools.
    llm.respond(vec![
        tool_start_chunk(0, "call_l", "pytools__word_count"),
        tool_args_chunk(0, "{\"text\":\"x\"}"),
        finish_chunk("tool_calls"),
        DONE.into(),
    ]);
    llm.respond(vec![
        text_chunk("One word."),
        finish_chunk("stop"),
        DONE.into(),
    ]);
    let mut limited = request("count", servers);
    limited["iteration_limit"] = json!(1);
    let (_, body) = post(&host, &limited, Some(KEY)).await;
    let limited = self::frames(&body);
    assert!(limited.iter().any(|f| f["id"] == "tool-call-result-call_l"));
    assert_eq!(
        limited[limited.len() - 3]["choices"][0]["delta"]["content"],
        "One word."
    );
    assert_eq!(
        limited[limited.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );
    assert_eq!(limited.last().unwrap(), "[DONE]");
    let last_request = llm.requests().pop().unwrap().body;
    assert!(last_request.get("tools").is_none(), "{last_request}");
}

#[tokio::test]
async fn bad_requests_are_refused_in_openai_error_shape() {
    let llm = MockLlm::start().await;
    let host = start(&llm, "").await;
    let ok = request("hi", json!([{ "integration_fqn": "demo" }]));

    let (status, body) = post(&host, &ok, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(
        body["error"]["message"],
        "missing `Authorization: Bearer <api key>` header"
    );
    let (status, _) = post(&host, &ok, Some("sk-wrong-key-0000")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let with = |field: &str, value: Value| {
        let mut body = ok.clone();
        body[field] = value;
        body
    };
    let cases = [
        (
            with("stream", json!(false)),
            "stream",
            "`stream: false` is not supported: this endpoint only streams",
        ),
        (
            with("temperature", json!(2.5)),
            "temperature",
            "`temperature` must be between 0 and 2, got 2.5",
        ),
        (
            with("top_p", json!(1.5)),
            "top_p",
            "`top_p` must be between 0 and 1, got 1.5",
        ),
        (
            with("top_k", json!(0)),
            "top_k",
            "`top_k` must be at least 1",
        ),
        (
            with("iteration_limit", json!(21)),
            "iteration_limit",
            "`iteration_limit` must be between 1 and 20, got 21",
        ),
        (
            with("iteration_limit", json!(0)),
            "iteration_limit",
            "`iteration_limit` must be between 1 and 20, got 0",
        ),
        (
            with("max_tokens", json!(500.5)),
            "max_tokens",
            "invalid field `max_tokens`: invalid value: floating point `500.5`, expected a whole number from 0 to 4294967295",
        ),
        (
            with("iteration_limit", json!(2.5)),
            "iteration_limit",
            "invalid field `iteration_limit`: invalid value: floating point `2.5`, expected a whole number from 0 to 4294967295",
        ),
        (
            with("messages", json!([])),
            "messages",
            "`messages` must hold at least one message",
        ),
        (
            with("messages", json!([{ "role": "robot", "content": "x" }])),
            "messages",
            "messages[0].role `robot` is not one of system, user, assistant, tool",
        ),
        (
            with("mcp_servers", json!([{ "integration_fqn": "nope" }])),
            "mcp_servers",
            "unknown MCP server `nope` (configured: demo, pytools)",
        ),
        (
            with(
                "mcp_servers",
                json!([{ "integration_fqn": "demo", "url": "http://x" }]),
            ),
            "mcp_servers",
            "mcp_servers[0] needs exactly one of `integration_fqn` and `url`",
        ),
        (
            with(
                "mcp_servers",
                json!([{ "integration_fqn": "demo", "enable_all_tools": false, "tools": [{ "name": "nope" }] }]),
            ),
            "mcp_servers",
            "MCP server `demo` has no tool `nope` (it has: add_note, calculate, current_time, list_notes, read_note)",
        ),
        (
            with(
                "mcp_servers",
                json!([{ "url": "http://169.254.169.254/latest" }]),
            ),
            "mcp_servers",
            "refusing `http://169.254.169.254/latest`: `169.254.169.254` resolves to 169.254.169.254, a loopback, private, link-local or otherwise internal address (an operator can allow it with security.allow_mcp_networks)",
        ),
        (
            with("mcp_servers", json!([{ "url": "http://10.0.0.1/mcp" }])),
            "mcp_servers",
            "",
        ),
    ];
    for (body, param, message) in cases {
        let (status, answer) = post(&host, &body, Some(KEY)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{answer}");
        assert_eq!(answer["error"]["param"], param, "{answer}");
        if !message.is_empty() {
            assert_eq!(answer["error"]["message"], message);
        }
    }

    let (status, answer) = post(&host, &json!({ "messages": [] }), Some(KEY)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer.contains("missing field `model`"), "{answer}");
    let response = client()
        .post(host.url("/api/llm/agent/responses"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("x-tfy-metadata", "not json")
        .body(ok.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        llm.requests().is_empty(),
        "no refused request may reach the model"
    );

    // The seed types counts as `number`: whole floats are counts.
    llm.respond(vec![text_chunk("ok"), finish_chunk("stop"), DONE.into()]);
    let mut floats = with("max_tokens", json!(500.0));
    floats["iteration_limit"] = json!(3.0);
    floats["top_k"] = json!(40.0);
    let (status, body) = post(&host, &floats, Some(KEY)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(llm.requests()[0].body["max_tokens"], 500);
}
