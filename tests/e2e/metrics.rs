//! `GET /metrics`: Prometheus's text format, read by the reference
//! client's parser; an admin key in keyed mode unless made public; and
//! counters that follow a streamed chat calling a tool.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use testkit::*;

const ADMIN_KEY: &str = "sk-metrics-admin";
const VIEWER_KEY: &str = "sk-metrics-viewer";

fn keyed_config(llm: &MockLlm, extra: &str) -> String {
    format!(
        "{}\n{}{extra}\n[[api_keys]]\nkey = \"{ADMIN_KEY}\"\norg = \"acme\"\nrole = \"admin\"\n\
         [[api_keys]]\nkey = \"{VIEWER_KEY}\"\norg = \"acme\"\nrole = \"viewer\"\n",
        llm.provider_toml(),
        demo_server_toml()
    )
}

async fn scrape(host: &Agenthost, key: Option<&str>) -> (StatusCode, String, String) {
    let mut request = client().get(host.url("/metrics"));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = request.send().await.unwrap();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        response.status(),
        content_type,
        response.text().await.unwrap(),
    )
}

/// The exposition as `prometheus_client`'s parser reads it.
async fn parse(text: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    run_json_client(
        "python3",
        &[
            fixture("prometheus_parse.py").display().to_string(),
            file.display().to_string(),
        ],
    )
    .await
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(parsed: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    parsed["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
}

async fn tool_chat(host: &Agenthost) {
    let (status, body) = host
        .post("/chat/stream", r#"{"message": "What is 6*7?"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("tool_start"),
        "the model called a tool: {body}"
    );
}

#[tokio::test]
async fn metrics_take_an_admin_key_and_follow_a_chat_that_calls_a_tool() {
    let llm = MockLlm::answering(calculate_then_answer, Duration::ZERO).await;
    let host = Agenthost::start_with_env(
        &keyed_config(&llm, ""),
        &[("AGENTHOST_TEST_KEY", "sk-test")],
    )
    .with_key(ADMIN_KEY);

    let (status, _, body) = scrape(&host, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, body) = scrape(&host, Some(VIEWER_KEY)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["detail"],
        "this API key is not an admin key"
    );

    let (status, body) = host.post_json("/connect/demo", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tool_chat(&host).await;

    let (status, content_type, text) = scrape(&host, Some(ADMIN_KEY)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let first = parse(&text).await;
    assert_eq!(first["types"]["agenthost_http_requests"], "counter");
    assert_eq!(
        first["types"]["agenthost_chat_duration_seconds"],
        "histogram"
    );
    assert_eq!(first["types"]["agenthost_open_streams"], "gauge");
    let chat_requests = [
        ("method", "POST"),
        ("route", "/chat/stream"),
        ("status", "200"),
    ];
    let calls = [("server", "demo"), ("tool", "calculate")];
    let expected = [
        ("agenthost_http_requests_total", &chat_requests[..], 1.0),
        (
            "agenthost_tool_calls_total",
            &[("server", "demo"), ("tool", "calculate"), ("outcome", "ok")][..],
            1.0,
        ),
        (
            "agenthost_tool_call_duration_seconds_count",
            &calls[..],
            1.0,
        ),
        (
            "agenthost_model_requests_total",
            &[("provider", "openai"), ("outcome", "ok")][..],
            2.0,
        ),
        (
            "agenthost_model_tokens_total",
            &[
                ("provider", "openai"),
                ("model", "gpt-4o-mini"),
                ("direction", "input"),
            ][..],
            f64::from(2 * LOAD_TURN_TOKENS.0),
        ),
        (
            "agenthost_model_tokens_total",
            &[
                ("provider", "openai"),
                ("model", "gpt-4o-mini"),
                ("direction", "output"),
            ][..],
            f64::from(2 * LOAD_TURN_TOKENS.1),
        ),
        (
            "agenthost_chat_duration_seconds_count",
            &[("surface", "simple")][..],
            1.0,
        ),
        (
            "agenthost_chat_first_byte_seconds_count",
            &[("surface", "simple")][..],
            1.0,
        ),
        ("agenthost_open_streams", &[][..], 0.0),
        (
            "agenthost_mcp_server_up",
            &[("org", ""), ("server", "demo")][..],
            1.0,
        ),
        (
            "agenthost_store_write_seconds_count",
            &[("operation", "log_tool_call")][..],
            1.0,
        ),
        (
            "agenthost_plugin_traps_total",
            &[("plugin", "openai")][..],
            0.0,
        ),
    ];
    for (name, labels, value) in expected {
        assert_eq!(
            sample(&first, name, labels),
            Some(value),
            "{name} {labels:?}\n{text}"
        );
    }
    let plugin_calls = |parsed: &Value| {
        sample(
            parsed,
            "agenthost_plugin_calls_total",
            &[("plugin", "openai")],
        )
        .unwrap()
    };
    assert!(plugin_calls(&first) > 0.0, "{text}");

    tool_chat(&host).await;
    for method in ["PROPFIND", "MADEUP1", "MADEUP2"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        client()
            .request(method, host.url("/no/such/route"))
            .send()
            .await
            .unwrap();
    }
    let (_, _, text) = scrape(&host, Some(ADMIN_KEY)).await;
    let second = parse(&text).await;
    assert_eq!(
        sample(&second, "agenthost_http_requests_total", &chat_requests),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &second,
            "agenthost_tool_call_duration_seconds_count",
            &calls
        ),
        Some(2.0)
    );
    assert!(plugin_calls(&second) > plugin_calls(&first));
    assert_eq!(
        sample(
            &second,
            "agenthost_http_requests_total",
            &[("route", "/metrics"), ("status", "403")]
        ),
        Some(1.0),
        "refused scrapes are counted too"
    );
    assert_eq!(
        sample(
            &second,
            "agenthost_http_requests_total",
            &[("method", "other"), ("route", "(no route)")]
        ),
        Some(3.0),
        "a client's made-up methods add no series: {text}"
    );
}

#[tokio::test]
async fn public_metrics_need_no_key() {
    let llm = MockLlm::start().await;
    let host = Agenthost::start_with_env(
        &keyed_config(&llm, "[telemetry]\nmetrics_public = true\n"),
        &[("AGENTHOST_TEST_KEY", "sk-test")],
    );
    let (status, _, text) = scrape(&host, None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        text.contains("# TYPE agenthost_mcp_server_up gauge"),
        "{text}"
    );
}
