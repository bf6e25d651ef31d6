//! SIGTERM and SIGINT: no new connections, open chats get the grace
//! period, then end with an error event in their format; a second signal
//! ends them at once; the process exits 0 and leaves no MCP child.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use testkit::*;

/// A host whose model answers a little, then never finishes; the demo
/// server running as its child.
async fn host_with_hanging_model(grace_secs: f64) -> (MockLlm, Agenthost, u32) {
    let llm = MockLlm::start().await;
    let config = format!(
        "shutdown_grace_secs = {grace_secs}\n{}\n{}",
        llm.provider_toml(),
        demo_server_toml()
    );
    let host = Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test")]);
    let (status, body) = host.post_json("/connect/demo", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let children = children_of(host.pid());
    assert_eq!(children.len(), 1, "{children:?}");
    llm.reply(Reply::stream(vec![role_chunk(), text_chunk("Partial ")]).then_hang());
    (llm, host, children[0])
}

/// An MCP Chat stream, read until the model's first words are through.
async fn open_stream(host: &Agenthost) -> reqwest::Response {
    let (status, session) = host.post_json("/sessions", "").await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let id = session["session_id"].as_str().unwrap();
    let response = client()
        .get(host.url(&format!("/chat/{id}/stream?message=hi")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response
}

#[tokio::test]
async fn sigterm_gives_open_chats_the_grace_period_then_ends_them_and_exits_zero() {
    let (_llm, mut host, child) = host_with_hanging_model(2.0).await;
    let url = host.url("/sessions");
    let mut body = Box::pin(open_stream(&host).await.bytes_stream());
    let mut text = String::new();
    read_until(&mut body, &mut text, Some("Partial")).await;

    host.signal("TERM");
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        client().post(&url).send().await.is_err(),
        "no new connection is taken"
    );
    read_until(&mut body, &mut text, None).await;
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "the chat had its grace period: ended after {waited:?}"
    );
    assert_eq!(
        unnumbered(&text),
        "data: {\"type\": \"token\", \"content\": \"Partial \"}\n\n\
         data: {\"type\": \"error\", \"content\": \"the server is shutting down: the chat was ended before its answer was complete\"}\n\n",
        "the stream ends with an error event in its format"
    );

    let status = host.exit_within(Duration::from_secs(20));
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "{}", host.logs());
    assert!(wait_until_gone(child), "the MCP child {child} was left");
    let logs = host.logs();
    assert!(
        logs.contains("grace period over: ending open chats"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_second_signal_ends_open_chats_at_once() {
    let (_llm, mut host, child) = host_with_hanging_model(600.0).await;
    let mut body = Box::pin(open_stream(&host).await.bytes_stream());
    let mut text = String::new();
    read_until(&mut body, &mut text, Some("Partial")).await;

    host.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    host.signal("INT");
    let ending = tokio::time::timeout(
        Duration::from_secs(30),
        read_until(&mut body, &mut text, None),
    )
    .await;
    assert!(
        ending.is_ok(),
        "the stream ended long before the 600 s grace"
    );
    let status = host.exit_within(Duration::from_secs(30));
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "{}", host.logs());
    assert!(wait_until_gone(child), "the MCP child {child} was left");
    assert!(host.logs().contains("second signal"), "{}", host.logs());
}
