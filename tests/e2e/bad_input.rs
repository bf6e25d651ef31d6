//! Bad input on every endpoint that reads a body, table
//! driven. Each answer must be a 4xx in that surface's own error shape,
//! with a message naming the problem: never a 500, never a dropped
//! connection, and the server serves normally afterwards.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::*;

const KEY: &str = "sk-acme-admin-0001";
const CONNECTION_KEY: &str = "5f0e3c6a9b1d4e7f8a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";
const MAX_BODY: usize = 64 * 1024;

/// How a surface shapes its errors.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `{"detail": "..."}` (seeds 003 and 004).
    Detail,
    /// FastAPI: `{"detail": "..."}` or `{"detail": [{type, loc, msg, input}]}`,
    /// or the seed's `{"error": ..., "message": ...}` (seeds 000 and 001).
    Feather,
    /// OpenAI: `{"error": {"type", "message", "param", "code"}}` (seed 002).
    OpenAi,
    /// JSON-RPC 2.0 error object (MCP).
    JsonRpc,
}

/// The error's text, after checking the body has the surface's shape.
fn message(shape: Shape, body: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON ({e})"))?;
    let text = match shape {
        Shape::Detail => value["detail"].as_str().map(str::to_owned),
        Shape::Feather => match &value["detail"] {
            Value::String(text) => Some(text.clone()),
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|i| {
                    let ok = i["type"].is_string() && i["loc"].is_array() && i["msg"].is_string();
                    ok.then(|| format!("{} at {}", i["msg"].as_str().unwrap_or(""), i["loc"]))
                })
                .collect::<Option<Vec<_>>>()
                .map(|all| all.join("; ")),
            _ => value["message"].as_str().map(str::to_owned),
        },
        Shape::OpenAi => {
            let error = &value["error"];
            let ok = error["type"].is_string() && error.get("param").is_some();
            error["message"].as_str().filter(|_| ok).map(str::to_owned)
        }
        Shape::JsonRpc => {
            let ok = value["jsonrpc"] == "2.0" && value["error"]["code"].is_i64();
            value["error"]["message"]
                .as_str()
                .filter(|_| ok)
                .map(str::to_owned)
        }
    };
    text.filter(|t| !t.is_empty())
        .ok_or_else(|| "not the surface's error shape".into())
}

struct Endpoint {
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    shape: Shape,
    /// A body of the right shape with a field of the wrong type.
    wrong_type: Value,
    /// A body of the right shape without its required fields.
    missing: Value,
    /// A field the surface reads, to nest 10,000 arrays deep in (an
    /// ignored field may be skipped without parsing its depth).
    deep_field: &'static str,
    /// A body the contract refuses for an unknown field, if it does.
    unknown_field: Option<Value>,
    /// A body asking for an absurd `max_tokens`, if the contract has it.
    huge_max_tokens: Option<Value>,
}

impl Endpoint {
    fn new(
        method: Method,
        path: &str,
        shape: Shape,
        deep_field: &'static str,
        wrong_type: Value,
    ) -> Endpoint {
        Endpoint {
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            shape,
            wrong_type,
            missing: json!({}),
            deep_field,
            unknown_field: None,
            huge_max_tokens: None,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Endpoint {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// Each case: its name, the body, and words one of which the message
/// must contain (lowercase).
fn cases(endpoint: &Endpoint) -> Vec<(&'static str, Vec<u8>, &'static [&'static str])> {
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep = match endpoint.deep_field {
        "" => nested,
        field => format!("{{\"{field}\": {nested}}}"),
    };
    let oversized = format!("{{\"message\": \"{}\"}}", "x".repeat(MAX_BODY * 2));
    let mut cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "malformed JSON",
            b"{\"message\": \"hi\"".to_vec(),
            &["json", "eof", "parse"],
        ),
        (
            "empty body",
            Vec::new(),
            &["empty", "json", "parse", "eof", "required"],
        ),
        (
            "invalid UTF-8",
            b"{\"message\": \"\xff\xfe\"}".to_vec(),
            &["utf-8", "unicode", "json", "parse"],
        ),
        (
            "not an object",
            b"\"just a string\"".to_vec(),
            &["object", "array", "dict", "json", "type", "invalid"],
        ),
        (
            "missing fields",
            endpoint.missing.to_string().into_bytes(),
            &["missing", "required", "field", "expected"],
        ),
        (
            "wrong types",
            endpoint.wrong_type.to_string().into_bytes(),
            &["invalid", "type", "expected", "valid"],
        ),
        (
            "deep nesting",
            deep.into_bytes(),
            &["recursion", "nest", "deep", "json", "parse", "invalid"],
        ),
        (
            "oversized body",
            oversized.into_bytes(),
            &["large", "limit", "size"],
        ),
    ];
    if let Some(body) = &endpoint.unknown_field {
        cases.push((
            "unknown field",
            body.to_string().into_bytes(),
            &["unknown", "extra", "not permitted"],
        ));
    }
    if let Some(body) = &endpoint.huge_max_tokens {
        cases.push((
            "huge max_tokens",
            body.to_string().into_bytes(),
            &["max_tokens"],
        ));
    }
    cases
}

async fn send(host: &Agenthost, endpoint: &Endpoint, body: Vec<u8>) -> (StatusCode, String) {
    let mut request = client()
        .request(endpoint.method.clone(), host.url(&endpoint.path))
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    for (name, value) in &endpoint.headers {
        request = request.header(*name, value);
    }
    let response = request
        .send()
        .await
        .expect("an answer, not a dropped connection");
    (response.status(), response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn every_endpoint_answers_bad_input_with_its_own_4xx() {
    let llm = MockLlm::start().await;
    let config = format!(
        "{}\n[[api_keys]]\nkey = \"{KEY}\"\norg = \"acme\"\nrole = \"admin\"\n[limits]\nmax_body_bytes = {MAX_BODY}\n{}",
        llm.provider_toml(),
        demo_server_toml()
    );
    let host = Agenthost::start_with_env(
        &config,
        &[
            ("AGENTHOST_TEST_KEY", "sk-test"),
            ("AGENTHOST_CONNECTION_KEY", CONNECTION_KEY),
        ],
    )
    .with_key(KEY);
    host.post("/connect/demo", "").await;
    let (_, session) = host.post_json("/sessions", "").await;
    let session = session["session_id"].as_str().unwrap().to_owned();
    let connection = "00000000-0000-4000-8000-000000000000";
    let bearer = format!("Bearer {KEY}");

    let feather_chat = json!({
        "messages": [{"role": "user", "content": "hi"}],
        "model": "gpt-4o-mini", "max_tokens": 100
    });
    let mut feather_huge = feather_chat.clone();
    feather_huge["max_tokens"] = json!(1u64 << 40);
    let openai_chat =
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let mut openai_unknown = openai_chat.clone();
    openai_unknown["mcp_servers"] = json!([{"url": "http://127.0.0.1:1/mcp", "surprise": 1}]);
    let mut openai_huge = openai_chat.clone();
    openai_huge["max_tokens"] = json!(99_999_999_999_999_999_999.0);

    let endpoints = vec![
        Endpoint::new(Method::POST, "/chat/stream", Shape::Detail, "message", json!({"message": 42})),
        Endpoint::new(Method::POST, "/chat", Shape::Detail, "message", json!({"message": ["hi"]})),
        Endpoint {
            unknown_field: Some(json!([{"name": "x", "transport": "stdio", "command": "true", "surprise": 1}])),
            missing: json!([{}]),
            ..Endpoint::new(Method::POST, "/servers", Shape::Detail, "", json!([{"name": 7, "transport": "stdio"}]))
                .header("x-api-key", KEY)
        },
        Endpoint::new(
            Method::POST,
            &format!("/chat/{session}"),
            Shape::Detail, "message",
            json!({"message": {"text": "hi"}}),
        ),
        Endpoint {
            unknown_field: Some(openai_unknown),
            huge_max_tokens: Some(openai_huge),
            ..Endpoint::new(
                Method::POST,
                "/api/llm/agent/responses",
                Shape::OpenAi, "messages",
                json!({"model": "gpt-4o-mini", "messages": "hi"}),
            )
            .header("authorization", &bearer)
        },
        Endpoint {
            huge_max_tokens: Some(feather_huge),
            ..Endpoint::new(
                Method::POST,
                "/v1/mcp-chat/stream",
                Shape::Feather, "messages",
                json!({"messages": [{"role": "user", "content": 5}], "model": "m", "max_tokens": "many"}),
            )
            .header("x-api-key", KEY)
        },
        Endpoint::new(
            Method::POST,
            "/v1/integrations/connections",
            Shape::Feather, "name",
            json!({"name": ["crm"], "url": 5}),
        )
        .header("x-api-key", KEY),
        Endpoint::new(
            Method::PATCH,
            &format!("/v1/integrations/connections/{connection}/tools/crm__x"),
            Shape::Feather, "enabled",
            json!({"enabled": "yes"}),
        )
        .header("x-api-key", KEY),
        Endpoint::new(
            Method::POST,
            &format!("/v1/integrations/connections/{connection}/test-mcp-call"),
            Shape::Feather, "input",
            json!({"slug": 1, "input": []}),
        )
        .header("x-api-key", KEY),
        Endpoint::new(
            Method::POST,
            "/mcp/",
            Shape::JsonRpc, "params",
            json!({"jsonrpc": "2.0", "id": 1, "method": 5}),
        )
        .header("x-api-key", KEY),
    ];

    let mut failures = Vec::new();
    for endpoint in &endpoints {
        for (case, body, words) in cases(endpoint) {
            let (status, answer) = send(&host, endpoint, body).await;
            let verdict = if !status.is_client_error() {
                Err(format!("status {status}"))
            } else {
                message(endpoint.shape, &answer).and_then(|text| {
                    let lower = text.to_lowercase();
                    if words.iter().any(|w| lower.contains(w)) {
                        Ok(())
                    } else {
                        Err(format!("message does not name the problem: {text}"))
                    }
                })
            };
            if let Err(why) = verdict {
                let shown: String = answer.chars().take(300).collect();
                failures.push(format!(
                    "{} {} / {case}: {why} ({status} {shown})",
                    endpoint.method, endpoint.path
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Invalid ids in paths are 4xx too.
    for (path, shape) in [
        ("/v1/integrations/connections/not-a-uuid", Shape::Feather),
        ("/sessions/not-a-uuid/history", Shape::Detail),
    ] {
        let endpoint =
            Endpoint::new(Method::GET, path, shape, "", json!({})).header("x-api-key", KEY);
        let (status, answer) = send(&host, &endpoint, Vec::new()).await;
        assert!(status.is_client_error(), "{path}: {status} {answer}");
        message(shape, &answer).unwrap_or_else(|e| panic!("{path}: {e}: {answer}"));
    }

    // And the server is none the worse.
    llm.respond(vec![
        text_chunk("Still here."),
        finish_chunk("stop"),
        DONE.into(),
    ]);
    let (status, body) = host.post_json("/chat", r#"{"message": "hi"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"], "Still here.");
    assert!(!host.logs().contains("panicked"), "{}", host.logs());
}
