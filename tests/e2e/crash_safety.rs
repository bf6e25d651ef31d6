//! `kill -9` in the middle of a tool-using chat, then a
//! restart on the same data: every acknowledged message is there once,
//! nothing is half-written, and registered servers come back.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::*;

fn config(data: &std::path::Path) -> String {
    format!(
        "data_dir = {:?}\n[security]\nallow_stdio_registration = true\n",
        data.display().to_string()
    )
}

async fn history(host: &Agenthost, session: &str) -> Vec<Value> {
    let (status, history) = host.get(&format!("/sessions/{session}/history")).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    history.as_array().unwrap().clone()
}

#[tokio::test]
async fn a_kill_mid_tool_call_loses_nothing_acknowledged_and_half_writes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut host = Agenthost::start(&config(data.path()));
    let server = json!([{
        "name": "flaky", "transport": "stdio", "command": "python3",
        "args": [fixture("failing_mcp_server.py")], "timeout": 60
    }]);
    let (status, body) = host.post_json("/servers", &server.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, session) = host.post_json("/sessions", "").await;
    let session = session["session_id"].as_str().unwrap().to_owned();

    let (status, body) = host
        .post_json(
            &format!("/chat/{session}"),
            r#"{"message": "echo {\"text\": \"one\"}"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let before = history(&host, &session).await;
    assert_eq!(before.len(), 4, "{before:?}");

    // A chat whose tool never answers: kill the server once the call is
    // under way.
    let url = reqwest::Url::parse_with_params(
        &host.url(&format!("/chat/{session}/stream")),
        [("message", "hang {}")],
    )
    .unwrap();
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("tool_call") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .expect("the tool call starts")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    host.kill_hard();

    let host = Agenthost::start(&config(data.path()));
    let after = history(&host, &session).await;
    assert_eq!(after[..4], before[..], "acknowledged messages are intact");
    // Whatever of the killed chat was kept is whole: no tool call without
    // its result, which would make every later request to the model fail.
    let calls: Vec<&str> = after
        .iter()
        .flat_map(|m| m["tool_calls"].as_array().into_iter().flatten())
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let results: Vec<&str> = after
        .iter()
        .filter_map(|m| m["tool_call_id"].as_str())
        .collect();
    assert_eq!(calls, results, "{after:?}");
    let mut unique = results.clone();
    unique.dedup();
    assert_eq!(unique, results, "no duplicates: {after:?}");

    // The registered server is back, and the session goes on.
    let (_, servers) = host.get("/servers").await;
    let names: Vec<&str> = servers
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"flaky"), "{servers}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = host
            .post_json(
                &format!("/chat/{session}"),
                r#"{"message": "echo {\"text\": \"two\"}"}"#,
            )
            .await;
        if status == StatusCode::OK {
            assert!(body.to_string().contains("echo: two"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(history(&host, &session).await.len(), after.len() + 4);
}
