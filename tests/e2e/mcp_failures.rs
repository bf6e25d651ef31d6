//! MCP servers that crash, hang, speak malformed JSON-RPC,
//! return megabytes, flood notifications or start slowly. Every failure
//! is a bounded wait and an error result the model reads; the chat goes
//! on, the server starts afresh on next use, and no child is left behind.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::*;

fn failing_server_toml(id: &str, extra_args: &str, extra: &str) -> String {
    let script = fixture("failing_mcp_server.py");
    format!(
        "[[mcp_servers]]\nid = \"{id}\"\ntransport = \"stdio\"\ncommand = \"python3\"\nargs = [{:?}{extra_args}]\n{extra}\n",
        script.display().to_string()
    )
}

async fn host_with(servers: &str) -> (MockLlm, Agenthost) {
    let llm = MockLlm::start().await;
    let config = format!("{}\n{servers}", llm.provider_toml());
    let host = Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test")]);
    (llm, host)
}

/// One chat in which the model calls `tool` once, then answers; returns
/// the result the model was given and the chat's final text.
async fn call_tool(llm: &MockLlm, host: &Agenthost, tool: &str, args: Value) -> (String, String) {
    llm.respond(vec![
        tool_start_chunk(0, "call_1", &format!("flaky__{tool}")),
        tool_args_chunk(0, &args.to_string()),
        finish_chunk("tool_calls"),
        DONE.into(),
    ]);
    llm.respond(vec![text_chunk("Done."), finish_chunk("stop"), DONE.into()]);
    let (status, body) = host
        .post_json(
            "/chat",
            &json!({ "message": format!("use {tool}") }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let result = body["tool_calls"][0]["result"].as_str().unwrap().to_owned();
    (result, body["response"].as_str().unwrap().to_owned())
}

fn pid_in(echo: &str) -> u32 {
    let pid = echo.rsplit_once("(pid ").unwrap().1.trim_end_matches(')');
    pid.parse().unwrap()
}

/// Waits for the kernel to finish reaping; children go asynchronously.
fn settle_children(host: &Agenthost, live: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && (children_of(host.pid()).len() != live || !zombies_of(host.pid()).is_empty())
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(children_of(host.pid()).len(), live, "live children");
    assert_eq!(zombies_of(host.pid()), Vec::<u32>::new(), "zombies");
}

#[tokio::test]
async fn failing_server_calls_become_error_results_and_the_server_restarts() {
    let servers = failing_server_toml("flaky", "", "timeout = 2\n");
    let (llm, host) = host_with(&servers).await;
    let (status, body) = host.post_json("/connect/flaky", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (echo, _) = call_tool(&llm, &host, "echo", json!({"text": "hi"})).await;
    let first = pid_in(&echo);
    assert_eq!(echo, format!("echo: hi (pid {first})"));

    // Exits mid-call: the model reads why (not the timeout's message, so
    // it did not wait the timeout out), the chat ends normally, and the
    // next use starts a new process.
    let (crash, text) = call_tool(&llm, &host, "crash", json!({})).await;
    assert_eq!(
        crash,
        "tool `crash` of MCP server `flaky` failed: the server went away mid-call (its process exited or its connection closed)"
    );
    assert_eq!(text, "Done.");
    let (echo, _) = call_tool(&llm, &host, "echo", json!({"text": "again"})).await;
    let second = pid_in(&echo);
    assert_ne!(second, first);
    assert!(wait_until_gone(first));

    // Hangs: waits out the 2 s timeout, and the stuck process is replaced.
    let (hang, text) = call_tool(&llm, &host, "hang", json!({})).await;
    assert_eq!(
        hang,
        "tool `hang` of MCP server `flaky` did not answer within 2 s"
    );
    assert_eq!(text, "Done.");
    let third = pid_in(&call_tool(&llm, &host, "echo", json!({})).await.0);
    assert_ne!(third, second, "the stuck server was replaced");
    assert!(wait_until_gone(second), "the stuck server was stopped");

    // Malformed JSON-RPC (a line that is not JSON, then a response of the
    // wrong shape): an error naming that, not the timeout, and the server
    // serves on.
    let (malformed, text) = call_tool(&llm, &host, "malformed", json!({})).await;
    assert_eq!(
        malformed,
        "tool `malformed` of MCP server `flaky` failed: the server answered with something that is not a tool result (malformed JSON-RPC)"
    );
    assert_eq!(text, "Done.");
    let (echo, _) = call_tool(&llm, &host, "echo", json!({"text": "still here"})).await;
    assert_eq!(echo, format!("echo: still here (pid {third})"));

    // Megabytes: capped with a message that says so, and the model's
    // context stays small.
    let (huge, _) = call_tool(&llm, &host, "huge", json!({"mb": 5})).await;
    assert!(
        huge.starts_with("tool `huge` of MCP server `flaky` returned 5242"),
        "{}",
        &huge[..huge.len().min(300)]
    );
    assert!(
        huge.ends_with(
            "bytes, over the limit of 1048576 bytes for a tool result; the result was dropped"
        ),
        "{huge}"
    );
    let sent = llm.requests().last().unwrap().body.to_string();
    assert!(
        sent.len() < 100_000,
        "the model was sent {} bytes",
        sent.len()
    );

    settle_children(&host, 1);
}

/// The answer comes after 20,000 notifications. The timeout is generous
/// because what is proven is that the answer is not lost among them, not
/// how fast a busy machine reads them.
#[tokio::test]
async fn an_answer_behind_a_flood_of_notifications_gets_through() {
    let servers = failing_server_toml("flaky", "", "timeout = 120\n");
    let (llm, host) = host_with(&servers).await;
    let (status, body) = host.post_json("/connect/flaky", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (flood, text) = call_tool(&llm, &host, "flood", json!({"count": 20000})).await;
    assert_eq!(flood, "flooded after 20000 notifications");
    assert_eq!(text, "Done.");
}

#[tokio::test]
async fn slow_starting_servers_get_a_bounded_wait_then_backoff() {
    let servers = [
        failing_server_toml(
            "sleepy",
            ", \"--slow-start\", \"1.5\"",
            "startup_timeout = 10\n",
        ),
        failing_server_toml(
            "glacial",
            ", \"--slow-start\", \"60\"",
            "startup_timeout = 1\n",
        ),
    ]
    .concat();
    let (_llm, host) = host_with(&servers).await;

    let (status, body) = host.post_json("/connect/sleepy", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let started = Instant::now();
    let (status, body) = host.post_json("/connect/glacial", "").await;
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        waited < Duration::from_secs(30),
        "waited {waited:?}, not the 1 s startup timeout"
    );
    assert_eq!(
        body["detail"],
        "failed to connect to MCP server `glacial`: it did not start and list its tools within 1 s"
    );

    // Asked again at once: no new attempt (still one failure in a row),
    // the last error and when the next attempt may be made.
    let (status, body) = host.post_json("/connect/glacial", "").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("failed to connect to MCP server `glacial`: it did not start and list its tools within 1 s (failed to start 1 time in a row; next attempt in "),
        "{detail}"
    );

    // Only the sleepy server lives on; the glacial one was killed and reaped.
    settle_children(&host, 1);
}

#[tokio::test]
async fn a_server_that_fails_to_start_is_named_with_the_end_of_its_stderr() {
    let (_llm, host) = host_with(
        "[[mcp_servers]]\nid = \"timeless\"\ntransport = \"stdio\"\ncommand = \"python3\"\n\
         args = [\"-m\", \"mcp_server_time_not_installed\"]\n",
    )
    .await;
    let (status, body) = host.post_json("/connect/timeless", "").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(
            "failed to connect to MCP server `timeless`: the server closed the connection before its discover response; the last lines of its stderr: "
        )
            && detail.ends_with(": No module named mcp_server_time_not_installed"),
        "{detail}"
    );
    // Log lines are written by a background writer.
    let warned = |logged: &str| {
        logged.lines().any(|line| {
            line.contains("WARN")
                && line.contains("the MCP server did not start")
                && line.contains("server=timeless")
                && line.contains("No module named mcp_server_time_not_installed")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !warned(&host.logs()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logged = host.logs();
    assert!(
        warned(&logged),
        "the log names the server beside the end of its stderr: {logged}"
    );
}

#[tokio::test]
async fn a_server_that_answers_discover_with_anything_is_reached_by_the_older_handshake() {
    // It answers `server/discover` with `{}`, as if it were a ping.
    let servers = failing_server_toml("flaky", ", \"--answer-anything\"", "");
    let (llm, host) = host_with(&servers).await;
    let (status, body) = host.post_json("/connect/flaky", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (echo, _) = call_tool(&llm, &host, "echo", json!({"text": "hi"})).await;
    assert!(echo.starts_with("echo: hi (pid "), "{echo}");
    let (_, servers) = host.get("/servers").await;
    assert_eq!(servers[0]["protocol_version"], "2025-11-25");
    assert!(
        host.logs()
            .contains("connecting again with the 2025-11-25 handshake"),
        "{}",
        host.logs()
    );
    // The first connection's process is gone: one child is left.
    settle_children(&host, 1);
}
