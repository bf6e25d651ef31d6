//! What an operator reads: one access line per request, as JSON lines
//! when asked; dependencies quiet by default; MCP servers' stderr under
//! their id; a config error said once.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use testkit::*;

const ADMIN_KEY: &str = "sk-ops-admin";

/// A keyed host with the demo server; `top` is top-level config.
async fn keyed_host(top: &str) -> (MockLlm, Agenthost) {
    let llm = MockLlm::start().await;
    let config = format!(
        "{top}\n{}\n{}[[api_keys]]\nkey = \"{ADMIN_KEY}\"\norg = \"acme\"\nrole = \"admin\"\n",
        llm.provider_toml(),
        demo_server_toml()
    );
    let host = Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test")])
        .with_key(ADMIN_KEY);
    (llm, host)
}

/// The access lines so far, once there are `count` of them.
async fn access_lines(host: &Agenthost, count: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let lines: Vec<Value> = host
            .logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["target"] == "agenthost::access")
            .collect();
        if lines.len() >= count || started.elapsed() > Duration::from_secs(10) {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn each_request_writes_one_json_access_line_with_no_key_or_body() {
    let (llm, host) = keyed_host("log_format = \"json\"").await;
    let (status, body) = host.post_json("/connect/demo", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    llm.respond(vec![
        text_chunk("Hello there."),
        finish_chunk("stop"),
        DONE.into(),
    ]);
    let (status, body) = host
        .post_json("/chat", r#"{"message": "my private words"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = host.post_json("/chat", r#"{"mesage": "typo"}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let missing = client()
        .get(host.url("/no/such/route?token=sk-in-a-query"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let probe = client().get(host.url("/healthz")).send().await.unwrap();
    assert_eq!(probe.status(), StatusCode::OK);

    let lines = access_lines(&host, 4).await;
    let fields: Vec<&Value> = lines.iter().map(|line| &line["fields"]).collect();
    let summary: Vec<(String, String, u64, String)> = fields
        .iter()
        .map(|f| {
            (
                f["method"].as_str().unwrap().to_owned(),
                f["route"].as_str().unwrap().to_owned(),
                f["status"].as_u64().unwrap(),
                f["org"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "POST".into(),
                "/connect/{server_id}".into(),
                200,
                "acme".into()
            ),
            ("POST".into(), "/chat".into(), 200, "acme".into()),
            ("POST".into(), "/chat".into(), 422, "acme".into()),
            ("GET".into(), "(no route)".into(), 404, "-".into()),
        ],
        "one line per request, probes left to debug: {lines:?}"
    );
    for f in &fields {
        assert_eq!(f["message"], "request");
        assert!(f["duration_ms"].as_f64().unwrap() >= 0.0, "{f}");
    }

    let logs = host.logs();
    for secret in [ADMIN_KEY, "my private words", "sk-in-a-query"] {
        assert!(!logs.contains(secret), "`{secret}` in the logs:\n{logs}");
    }
    for line in logs.lines() {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "not a JSON line: {line}");
    }
}

#[tokio::test]
async fn dependencies_are_quiet_by_default_and_mcp_stderr_names_its_server() {
    let llm = MockLlm::start().await;
    let broken = "[[mcp_servers]]\nid = \"broken\"\ntransport = \"stdio\"\ncommand = \"python3\"\n\
                  args = [\"-c\", \"import sys; sys.stderr.write('No module named nowhere\\\\n' + 'x' * 100000); sys.exit(1)\"]\n";
    let config = format!("{}\n{}{broken}", llm.provider_toml(), demo_server_toml());
    let host = Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test")]);
    let (status, body) = host.post_json("/connect/demo", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = host.post_json("/connect/broken", "").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");

    let started = Instant::now();
    let stderr_lines = || {
        host.logs()
            .lines()
            .filter(|l| l.contains("agenthost::mcp::stderr"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    while stderr_lines().len() < 2 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = stderr_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("No module named nowhere") && lines[0].contains("broken"),
        "{lines:?}"
    );
    assert!(
        lines[1].len() < 4096 + 200,
        "a long line is cut: {} bytes",
        lines[1].len()
    );

    let logs = host.logs();
    assert!(!logs.contains("ServerPeerInfo"), "{logs}");
    for line in logs.lines() {
        let Some((_, after_level)) = line.split_once(" INFO ").or(line.split_once(" DEBUG "))
        else {
            continue;
        };
        assert!(
            after_level.trim_start().starts_with("agenthost"),
            "a dependency logs at info by default: {line}"
        );
    }
}

#[test]
fn a_config_error_is_said_once() {
    let stderr = serve_refused("listen = 5\n");
    assert_eq!(
        stderr.matches("listen = 5").count(),
        1,
        "the snippet once:\n{stderr}"
    );
    assert!(stderr.contains("invalid config file"), "{stderr}");
}
