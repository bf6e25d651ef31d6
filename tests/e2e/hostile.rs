//! Hostile MCP servers and providers: a `Retry-After` of `nan`, a redirect
//! that would carry the key away, a tool list that pages forever, an SSE
//! stream that drips, a server that never finishes starting. None of them
//! panics the host or holds up other chats for long.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::*;

fn failing_server_toml(id: &str, flag: &str, extra: &str) -> String {
    let script = fixture("failing_mcp_server.py");
    format!(
        "[[mcp_servers]]\nid = \"{id}\"\ntransport = \"stdio\"\ncommand = \"python3\"\nargs = [{:?}, \"{flag}\"]\n{extra}\n",
        script.display().to_string()
    )
}

fn answer(text: &str) -> Vec<String> {
    vec![
        role_chunk(),
        text_chunk(text),
        finish_chunk("stop"),
        DONE.into(),
    ]
}

/// A chat on a new MCP Chat session: its status and answer.
async fn session_chat(host: &Agenthost, message: &str) -> (StatusCode, Value) {
    let (status, session) = host.post_json("/sessions", "").await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let id = session["session_id"].as_str().unwrap();
    host.post_json(
        &format!("/chat/{id}"),
        &json!({ "message": message }).to_string(),
    )
    .await
}

#[tokio::test]
async fn a_retry_after_of_any_value_is_clamped_and_never_panics() {
    let llm = MockLlm::start().await;
    let host = Agenthost::start_with_env(
        &format!("mcp_servers = []\n{}", llm.provider_toml()),
        &[("AGENTHOST_TEST_KEY", "sk-test")],
    );
    // Nothing to wait, or nothing sensible: retried at once.
    for wait in ["nan", "-5", "0"] {
        llm.reply(Reply::status(503, "{}").header("retry-after", wait));
        llm.respond(answer("Back."));
        let (status, body) = session_chat(&host, "hi").await;
        assert_eq!(
            (status, &body["message"]),
            (StatusCode::OK, &json!("Back.")),
            "{wait}"
        );
    }
    // A wait beyond the retry budget: given up at once, not slept.
    for wait in ["inf", "1e308", "86400"] {
        llm.reply(Reply::status(503, "{}").header("retry-after", wait));
        let started = Instant::now();
        let (status, body) = session_chat(&host, "hi").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{wait}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("HTTP 503"),
            "{body}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{wait}");
    }
    assert!(!host.logs().contains("panicked"), "{}", host.logs());
}

#[tokio::test]
async fn a_provider_redirect_is_not_followed_with_the_key() {
    let llm = MockLlm::start().await;
    let elsewhere = MockLlm::start().await;
    let host = Agenthost::start_with_env(
        &format!("mcp_servers = []\n{}", llm.provider_toml()),
        &[("AGENTHOST_TEST_KEY", "sk-test-redirected")],
    );
    llm.reply(Reply::status(307, "").header(
        "location",
        &format!("{}/chat/completions", elsewhere.base_url),
    ));
    let (status, body) = session_chat(&host, "hi").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("HTTP 307"),
        "{body}"
    );
    assert!(elsewhere.requests().is_empty(), "the key went nowhere else");
}

#[tokio::test]
async fn a_server_whose_tool_list_never_ends_is_left_out_and_chats_go_on() {
    let config = format!(
        "{}{}",
        demo_server_toml(),
        failing_server_toml("endless", "--endless-pages", "")
    );
    let host = Agenthost::start(&config);
    let (status, body) = host.post_json("/connect/endless", "").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("it lists its tools in more than 100 pages"),
        "{body}"
    );
    let (status, body) = session_chat(&host, "What is 6*7?").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "calculate returned: 42.");
}

#[tokio::test]
async fn a_dripping_sse_stream_and_a_hanging_start_hold_no_chat_for_long() {
    let drip = FixtureServer::start_script("slow_sse_server.py", &["--megabytes", "8"]);
    let config = format!(
        "{}{}[[mcp_servers]]\nid = \"drip\"\ntransport = \"sse\"\nurl = \"http://127.0.0.1:{}/sse\"\nstartup_timeout = 60\n\
         [agent]\ntools_wait_secs = 1\n",
        demo_server_toml(),
        failing_server_toml("stuck", "--hang-start", "startup_timeout = 60"),
        drip.port
    );
    let host = Agenthost::start(&config);
    let session = {
        let (_, body) = host.post_json("/sessions", "").await;
        body["session_id"].as_str().unwrap().to_owned()
    };
    for _ in 0..4 {
        let started = Instant::now();
        let (status, body) = host
            .post_json(
                &format!("/chat/{session}"),
                r#"{"message": "What is 6*7?"}"#,
            )
            .await;
        let waited = started.elapsed();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["message"], "calculate returned: 42.");
        assert!(
            waited < Duration::from_secs(20),
            "a chat waited {waited:?} for servers still starting (their start-up timeout is 60 s)"
        );
    }
    let logs = host.logs();
    assert!(
        logs.contains("MCP server `stuck` is still starting"),
        "{logs}"
    );
    assert!(!logs.contains("panicked"), "{logs}");
}
