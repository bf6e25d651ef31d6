//! Traces over OTLP/HTTP: a chat is an `invoke_agent` span, each model
//! request a `chat {model}` span with its model and token counts, each
//! tool call an `execute_tool {tool}` span, all in one trace; the tool
//! call hands its context to the MCP server as a `traceparent` header and
//! in `_meta`. A collector in the test receives what the binary sends.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use testkit::*;

const CRM_TOKEN: &str = "crm-token-traces";

/// What a collector received: each export's content type and body.
type Exports = Arc<Mutex<Vec<(String, Bytes)>>>;

/// An OTLP/HTTP collector on a free port, taking traces at `/v1/traces`.
async fn collector() -> (String, Exports) {
    let exports: Exports = Arc::default();
    let kept = exports.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let kept = kept.clone();
            async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                kept.lock().unwrap().push((content_type, body));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, exports)
}

/// Every span in OTLP/JSON exports, each with its resource's attributes
/// under `resource`.
fn json_spans(exports: &Exports) -> Vec<Value> {
    let mut spans = Vec::new();
    for (content_type, body) in exports.lock().unwrap().iter() {
        assert_eq!(content_type, "application/json");
        let export: Value = serde_json::from_slice(body).unwrap();
        for resource_spans in export["resourceSpans"].as_array().unwrap() {
            for scope_spans in resource_spans["scopeSpans"].as_array().unwrap() {
                for span in scope_spans["spans"].as_array().unwrap() {
                    let mut span = span.clone();
                    span["resource"] = resource_spans["resource"]["attributes"].clone();
                    spans.push(span);
                }
            }
        }
    }
    spans
}

/// An attribute's value, whatever its OTLP/JSON type (integers may be
/// strings, per the protobuf JSON mapping).
fn attribute(attributes: &Value, key: &str) -> Value {
    let Some(found) = attributes
        .as_array()
        .and_then(|all| all.iter().find(|a| a["key"] == key))
    else {
        return Value::Null;
    };
    let value = &found["value"];
    if let Some(int) = value.get("intValue") {
        return match int {
            Value::String(text) => Value::from(text.parse::<i64>().unwrap()),
            other => other.clone(),
        };
    }
    for kind in ["stringValue", "doubleValue", "boolValue", "arrayValue"] {
        if let Some(inner) = value.get(kind) {
            return inner.clone();
        }
    }
    Value::Null
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

/// Waits until `ready` holds for what the collector has, for up to 20 s.
async fn received<T>(exports: &Exports, ready: impl Fn(&Exports) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = ready(exports) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "the collector did not get the spans; it has {} exports",
            exports.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn config(llm: &MockLlm, collector: &str, protocol: &str, crm_port: u16) -> String {
    format!(
        "{}\n[telemetry]\notlp_endpoint = \"{collector}\"\n{protocol}\n\
         [[mcp_servers]]\nid = \"crm\"\ntransport = \"streamable_http\"\nurl = \"http://127.0.0.1:{crm_port}/mcp\"\n\
         headers = {{ Authorization = \"Bearer {CRM_TOKEN}\" }}\n",
        llm.provider_toml()
    )
}

fn lookup_turn() -> Vec<String> {
    vec![
        role_chunk(),
        tool_start_chunk(0, "call_trace", "crm__lookup_contact"),
        tool_args_chunk(0, "{\"email\": \"ada@example.com\"}"),
        finish_chunk("tool_calls"),
        usage_chunk(31, 9),
        DONE.into(),
    ]
}

fn answer_turn() -> Vec<String> {
    vec![
        role_chunk(),
        text_chunk("Ada Lovelace."),
        finish_chunk("stop"),
        usage_chunk(57, 4),
        DONE.into(),
    ]
}

/// Starts a host exporting to a fresh collector with `protocol` (a config
/// line), runs one chat that calls the CRM's lookup tool, and returns the
/// host, the collector's exports and what the tool answered.
async fn traced_chat(protocol: &str) -> (Agenthost, Exports, Value, FixtureServer) {
    let crm = FixtureServer::start_script("crm_mcp_server.py", &["--token", CRM_TOKEN]);
    let llm = MockLlm::start().await;
    let (url, exports) = collector().await;
    let host = Agenthost::start_with_env(
        &config(&llm, &url, protocol, crm.port),
        &[
            ("AGENTHOST_TEST_KEY", "sk-test"),
            // Export within a tenth of a second instead of five.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let (status, connected) = host.post_json("/connect/crm", "").await;
    assert_eq!(status, StatusCode::OK, "{connected}");
    llm.respond(lookup_turn());
    llm.respond(answer_turn());
    let (status, body) = host
        .post("/chat/stream", r#"{"message": "Who is ada@example.com?"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The tool's answer, as the model got it in the next request.
    let answer = serde_json::from_str(llm.tool_message_in(1).as_str().unwrap()).unwrap();
    (host, exports, answer, crm)
}

#[tokio::test]
async fn a_chat_exports_chat_model_and_tool_spans_in_one_trace_over_otlp_json() {
    let (host, exports, answer, _crm) = traced_chat("otlp_protocol = \"http/json\"").await;
    let spans = received(&exports, |exports| {
        let spans = json_spans(exports);
        let complete = named(&spans, "invoke_agent agenthost").len() == 1
            && named(&spans, "chat gpt-4o-mini").len() == 2
            && named(&spans, "execute_tool lookup_contact").len() == 1;
        complete.then_some(spans)
    })
    .await;

    let chat = named(&spans, "invoke_agent agenthost")[0];
    let trace_id = chat["traceId"].as_str().unwrap();
    assert_eq!(trace_id.len(), 32, "{chat}");
    assert_eq!(attribute(&chat["resource"], "service.name"), "agenthost");
    assert_eq!(
        attribute(&chat["attributes"], "gen_ai.operation.name"),
        "invoke_agent"
    );
    assert_eq!(
        attribute(&chat["attributes"], "gen_ai.request.model"),
        "gpt-4o-mini"
    );

    // Both model requests, under the chat, with what each response said.
    let models = named(&spans, "chat gpt-4o-mini");
    for model in &models {
        assert_eq!(model["traceId"], trace_id);
        assert_eq!(model["parentSpanId"], chat["spanId"]);
        assert_eq!(model["kind"], 3, "a client span: {model}");
        let attributes = &model["attributes"];
        assert_eq!(attribute(attributes, "gen_ai.operation.name"), "chat");
        assert_eq!(attribute(attributes, "gen_ai.provider.name"), "openai");
        assert_eq!(attribute(attributes, "gen_ai.request.model"), "gpt-4o-mini");
        assert_eq!(
            attribute(attributes, "gen_ai.response.model"),
            "gpt-4o-mini-2024-07-18"
        );
        assert_eq!(attribute(attributes, "server.address"), "127.0.0.1");
    }
    let counts: Vec<(Value, Value, Value)> = models
        .iter()
        .map(|m| {
            let attributes = &m["attributes"];
            (
                attribute(attributes, "gen_ai.usage.input_tokens"),
                attribute(attributes, "gen_ai.usage.output_tokens"),
                attribute(attributes, "gen_ai.response.finish_reasons")["values"][0]["stringValue"]
                    .clone(),
            )
        })
        .collect();
    assert!(
        counts.contains(&(31.into(), 9.into(), "tool_calls".into())),
        "{counts:?}"
    );
    assert!(
        counts.contains(&(57.into(), 4.into(), "stop".into())),
        "{counts:?}"
    );

    // The tool call, under the chat, and its context at the server.
    let tool = named(&spans, "execute_tool lookup_contact")[0];
    assert_eq!(tool["traceId"], trace_id);
    assert_eq!(tool["parentSpanId"], chat["spanId"]);
    assert_eq!(
        attribute(&tool["attributes"], "gen_ai.operation.name"),
        "execute_tool"
    );
    assert_eq!(
        attribute(&tool["attributes"], "gen_ai.tool.name"),
        "lookup_contact"
    );
    assert_eq!(
        attribute(&tool["attributes"], "agenthost.mcp.server"),
        "crm"
    );
    let traceparent = format!("00-{trace_id}-{}-01", tool["spanId"].as_str().unwrap());
    assert_eq!(
        answer["traced"],
        serde_json::json!({ "header": traceparent, "meta": traceparent }),
        "{answer}"
    );
    assert!(!host.logs().contains("panicked"));
}

#[tokio::test]
async fn protobuf_is_the_default_wire_format() {
    let (_host, exports, _body, _crm) = traced_chat("").await;
    let bodies = received(&exports, |exports| {
        let all: Vec<(String, Bytes)> = exports.lock().unwrap().clone();
        let joined: Vec<u8> = all.iter().flat_map(|(_, body)| body.to_vec()).collect();
        let text = String::from_utf8_lossy(&joined).into_owned();
        // The chat's span ends last.
        text.contains("invoke_agent agenthost").then_some(all)
    })
    .await;
    for (content_type, _) in &bodies {
        assert_eq!(content_type, "application/x-protobuf");
    }
    let joined: Vec<u8> = bodies.iter().flat_map(|(_, body)| body.to_vec()).collect();
    let text = String::from_utf8_lossy(&joined);
    for name in [
        "execute_tool lookup_contact",
        "chat gpt-4o-mini",
        "gen_ai.usage.input_tokens",
    ] {
        assert!(text.contains(name), "{name} not in the protobuf export");
    }
}

#[test]
fn an_endpoint_that_is_not_an_http_url_is_refused_at_start() {
    let stderr = serve_refused(
        "listen = \"127.0.0.1:0\"\n[telemetry]\notlp_endpoint = \"collector:4318\"\n",
    );
    assert!(
        stderr.contains(
            "[telemetry] otlp_endpoint `collector:4318`: write an http:// or https:// URL"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_collector_that_cannot_be_reached_is_said_in_the_log() {
    let llm = MockLlm::start().await;
    // A port that was free a moment ago: nothing listens on it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "{}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:{closed}\"\n",
        llm.provider_toml()
    );
    let host = Agenthost::start_with_env(
        &config,
        &[
            ("AGENTHOST_TEST_KEY", "sk-test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let (status, connected) = host.post_json("/connect/demo", "").await;
    assert_eq!(status, StatusCode::OK, "{connected}");
    llm.respond(answer_turn());
    let (status, body) = host.post("/chat/stream", r#"{"message": "hi"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !host.logs().contains("cannot send") {
        assert!(Instant::now() < deadline, "{}", host.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = host.logs();
    let line = logs
        .lines()
        .find(|line| line.contains("cannot send"))
        .unwrap();
    assert!(
        line.contains(&format!("spans to http://127.0.0.1:{closed}/v1/traces: ")),
        "{line}"
    );
}
