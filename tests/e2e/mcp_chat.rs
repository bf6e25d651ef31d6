//! The MCP Chat API (seed 004) through the real binary, with
//! the Python SDK's FastMCP on all three transports, persistence across a
//! restart, and a browser-style EventSource client.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::*;

const ADMIN: &str = "sk-admin-00000001";
const MEMBER: &str = "sk-member-0000001";

/// Local mode, as the seed's examples run: no keys, loopback.
fn config(extra: &str) -> String {
    format!("{extra}\nmcp_servers = []\n")
}

/// Keyed mode, for what keys decide.
fn keyed_config(extra: &str) -> String {
    format!(
        "{}[security]\nallow_mcp_networks = [\"127.0.0.0/8\"]\n\
         [[api_keys]]\nkey = \"{ADMIN}\"\norg = \"acme\"\nrole = \"admin\"\n\
         [[api_keys]]\nkey = \"{MEMBER}\"\norg = \"acme\"\nrole = \"member\"\n",
        config(extra)
    )
}

fn python_stdio(name: &str) -> Value {
    json!({ "name": name, "transport": "stdio", "command": "python3", "args": [fixture("fastmcp_server.py")] })
}

async fn add_servers(host: &Agenthost, servers: Value, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = client().post(host.url("/servers")).json(&servers);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn new_session(host: &Agenthost) -> String {
    let (status, body) = host.post_json("/sessions", "").await;
    assert_eq!(status, StatusCode::OK);
    body["session_id"].as_str().unwrap().to_owned()
}

async fn stream(
    host: &Agenthost,
    session: &str,
    message: &str,
) -> (reqwest::header::HeaderMap, String) {
    let url = reqwest::Url::parse_with_params(
        &host.url(&format!("/chat/{session}/stream")),
        [("message", message)],
    )
    .unwrap();
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    (response.headers().clone(), body_text(response).await)
}

#[tokio::test]
async fn servers_on_all_three_transports_serve_tools_and_chats() {
    let host = Agenthost::start(&config(""));
    let (status, body) = host.get("/").await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({ "status": "ok", "message": "MCP Chat API is running" })
        )
    );

    let sse = FixtureServer::start("sse");
    let http = FixtureServer::start("streamable-http");
    let servers = json!([
        python_stdio("pystdio"),
        { "name": "pysse", "transport": "sse", "url": format!("http://127.0.0.1:{}/sse", sse.port) },
        { "name": "pyhttp", "transport": "streamable_http", "url": format!("http://127.0.0.1:{}/mcp", http.port), "timeout": 30 },
    ]);
    let (status, added) = add_servers(&host, servers, Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{added}");
    for (server, transport) in
        added
            .as_array()
            .unwrap()
            .iter()
            .zip(["stdio", "sse", "streamable_http"])
    {
        assert_eq!(server["transport"], transport);
        assert_eq!(
            server["protocol_version"], "2025-11-25",
            "the Python SDK 1.x knows the older era only; the pool falls back to it"
        );
        assert_eq!(server["tools_count"], 5);
        assert_eq!(
            server["tools"][0],
            json!({ "name": "reverse_text", "description": "Reverse a piece of text." })
        );
        assert!(server["connected_at"].as_str().unwrap().ends_with('Z'));
    }
    let (_, listed) = host.get("/servers").await;
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(listed[1]["name"], "pysse");

    let (_, tools) = host.get("/tools").await;
    assert_eq!(tools.as_array().unwrap().len(), 15);
    assert_eq!(
        tools[5],
        json!({ "server_name": "pysse", "tool_name": "reverse_text", "full_name": "pysse__reverse_text", "description": "Reverse a piece of text." })
    );

    let session = new_session(&host).await;
    for (server, text) in [("pystdio", "abc"), ("pysse", "sse"), ("pyhttp", "http")] {
        let message = format!("{server}__reverse_text {{\"text\": \"{text}\"}}");
        let (headers, body) = stream(&host, &session, &message).await;
        assert_eq!(headers["content-type"], "text/event-stream; charset=utf-8");
        assert_eq!(
            headers["cache-control"],
            "no-cache, no-store, must-revalidate"
        );
        assert_eq!(headers["x-accel-buffering"], "no");
        assert_golden(&format!("mcp_chat/reverse_text_{server}.sse"), &body);
    }

    let (status, body) = host
        .post_json(
            &format!("/chat/{session}"),
            r#"{"message": "pyhttp__word_count {\"text\": \"one two\"}"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "message": "word_count returned: 2.", "tool_calls_count": 1, "iterations": 2 })
    );

    let (status, body) = host.delete("/servers/pysse", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "message": "Server 'pysse' removed" }));
    let (_, listed) = host.get("/servers").await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn history_keeps_tool_messages_and_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let extra = format!("data_dir = {:?}", data.path().display().to_string());
    let http = FixtureServer::start("streamable-http");
    let session;
    {
        let host = Agenthost::start(&config(&extra));
        let server = json!([{ "name": "pyhttp", "transport": "streamable_http", "url": format!("http://127.0.0.1:{}/mcp", http.port) }]);
        assert_eq!(add_servers(&host, server, None).await.0, StatusCode::OK);
        session = new_session(&host).await;
        let (status, _) = host
            .post_json(
                &format!("/chat/{session}"),
                r#"{"message": "reverse_text {\"text\": \"ab\"}"}"#,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    let host = Agenthost::start(&config(&extra));
    let (_, sessions) = host.get("/sessions").await;
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    assert_eq!(sessions[0]["id"], session.as_str());
    assert_eq!(sessions[0]["message_count"], 4);
    let (status, history) = host.get(&format!("/sessions/{session}/history")).await;
    assert_eq!(status, StatusCode::OK);
    let roles: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    assert_eq!(history[0]["content"], "reverse_text {\"text\": \"ab\"}");
    assert_eq!(history[1]["tool_calls"][0]["name"], "pyhttp__reverse_text");
    let call_id = history[1]["tool_calls"][0]["id"].as_str().unwrap();
    assert_eq!(history[2]["name"], "pyhttp__reverse_text");
    assert_eq!(history[2]["tool_call_id"], call_id);
    assert_eq!(history[2]["content"], "ba");
    assert_eq!(history[3]["content"], "reverse_text returned: ba.");
    assert!(history[3]["timestamp"].as_str().unwrap().ends_with('Z'));

    // The registered server came back, and the model sees the whole history.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, servers) = host.get("/servers").await;
        if servers[0]["connected_at"].is_string() {
            assert_eq!(servers[0]["name"], "pyhttp");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pyhttp was not reconnected: {servers}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = stream(&host, &session, "word_count {\"text\": \"x y z\"}").await;
    assert!(body.contains("\"result\": \"3\""), "{body}");
    // Any loaded format can be asked for.
    let url = reqwest::Url::parse_with_params(
        &host.url(&format!("/chat/{session}/stream")),
        [
            ("message", "word_count {\"text\": \"a b\"}"),
            ("format", "feather"),
        ],
    )
    .unwrap();
    let feather = body_text(client().get(url).send().await.unwrap()).await;
    assert!(feather.starts_with("event: tool_call\n"), "{feather}");
    assert!(
        feather.ends_with("event: done\ndata: {\"turns\":2}\n\n"),
        "{feather}"
    );
    let (_, history) = host.get(&format!("/sessions/{session}/history")).await;
    assert_eq!(history.as_array().unwrap().len(), 12);
}

/// PostgreSQL's text cannot hold U+0000, and a session reads the same on
/// both backends: a user's NUL is refused, a tool's is kept as U+FFFD.
#[tokio::test]
async fn a_nul_from_the_user_is_refused_and_one_from_a_tool_is_stored_replaced() {
    let host = Agenthost::start(&config(""));
    let (status, _) = add_servers(&host, json!([python_stdio("py")]), None).await;
    assert_eq!(status, StatusCode::OK);
    let session = new_session(&host).await;
    let chat = format!("/chat/{session}");

    let (status, body) = host
        .post_json(&chat, r#"{"message": "hi\u0000there"}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "detail": "`message` contains a NUL character (U+0000), which a session cannot store: remove it" })
    );

    let (status, body) = host
        .post_json(
            &chat,
            r#"{"message": "reverse_text {\"text\": \"a\\u0000b\"}"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "reverse_text returned: b\u{0}a.");
    let (_, history) = host.get(&format!("/sessions/{session}/history")).await;
    let contents: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "reverse_text {\"text\": \"a\\u0000b\"}",
            "",
            "b\u{FFFD}a",
            "reverse_text returned: b\u{FFFD}a."
        ]
    );
}

#[tokio::test]
async fn a_browser_style_eventsource_client_reads_the_stream() {
    let host = Agenthost::start(&config(""));
    let session = new_session(&host).await;
    let url = format!(
        "{}?message={}",
        host.url(&format!("/chat/{session}/stream")),
        "hello%20there"
    );
    let script = fixture("node/eventsource_client.mjs").display().to_string();
    let events = run_json_client("node", &[script, url]).await;
    assert_eq!(
        events,
        json!([
            { "type": "token", "content": "You " },
            { "type": "token", "content": "said: " },
            { "type": "token", "content": "hello " },
            { "type": "token", "content": "there" },
            { "type": "done", "content": "You said: hello there" },
        ])
    );
}

#[tokio::test]
async fn chats_on_one_session_are_serialized() {
    let host = Agenthost::start(&config(""));
    let (status, _) = add_servers(&host, json!([python_stdio("py")]), Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK);
    let session = new_session(&host).await;
    let path = format!("/chat/{session}");
    let slow = r#"{"message": "slow {\"seconds\": 0.3}"}"#;
    let (a, b) = tokio::join!(host.post_json(&path, slow), host.post_json(&path, slow));
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    let (_, history) = host.get(&format!("/sessions/{session}/history")).await;
    let roles: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "tool",
            "assistant",
            "user",
            "assistant",
            "tool",
            "assistant"
        ]
    );
}

#[tokio::test]
async fn deleting_a_server_in_use_fails_its_call_instead_of_hanging() {
    let host = Agenthost::start(&config(""));
    add_servers(&host, json!([python_stdio("py")]), Some(ADMIN)).await;
    let session = new_session(&host).await;
    let marker = tempfile::NamedTempFile::new().unwrap();
    let message = format!(
        "slow {{\"seconds\": 30, \"marker\": {:?}}}",
        marker.path().display().to_string()
    );
    let started = Instant::now();
    let streaming = stream(&host, &session, &message);
    let deleting = async {
        while std::fs::read_to_string(marker.path()).unwrap_or_default() != "started" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            host.delete("/servers/py", Some(ADMIN)).await.0,
            StatusCode::OK
        );
    };
    let ((_, body), ()) = tokio::join!(streaming, deleting);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the call waited for the tool instead of failing"
    );
    assert!(
        body.contains("\"tool\": \"slow\", \"success\": false"),
        "{body}"
    );
    assert!(body.contains("\"type\": \"done\""), "{body}");
    let (_, tools) = host.get("/tools").await;
    assert_eq!(tools, json!([]));
}

#[tokio::test]
async fn errors_follow_the_seed() {
    let host = Agenthost::start(
        &format!("{}\n{}", keyed_config(""), demo_server_toml()).replace("mcp_servers = []\n", ""),
    )
    .with_key(ADMIN);
    let detail = |body: &Value| body["detail"].as_str().unwrap().to_owned();

    // Running commands takes an admin key.
    let (status, _) = add_servers(&host, json!([python_stdio("py")]), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = add_servers(&host, json!([python_stdio("py")]), Some(MEMBER)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        detail(&body),
        "registering stdio server `py` runs a command on this host: it needs an admin API key"
    );
    let (status, _) = add_servers(&host, json!([python_stdio("py")]), Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = add_servers(&host, json!([python_stdio("py")]), Some(ADMIN)).await;
    assert_eq!(
        (status, detail(&body)),
        (
            StatusCode::CONFLICT,
            "a server named `py` already exists".into()
        )
    );

    // A server that cannot connect leaves nothing registered, not even its
    // healthy companions.
    let broken = json!([
        python_stdio("fine"),
        { "name": "broken", "transport": "stdio", "command": "/nonexistent/mcp-server" },
    ]);
    let (status, body) = add_servers(&host, broken, Some(ADMIN)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        detail(&body)
            .starts_with("Failed to connect to server: cannot start `/nonexistent/mcp-server`"),
        "{body}"
    );
    let (_, servers) = host.get("/servers").await;
    let names: Vec<&str> = servers
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["demo", "py"]);

    // A member's URL must pass the address policy; an admin's need not.
    let cases = [
        (
            json!([{ "name": "x", "transport": "carrier-pigeon" }]),
            "invalid field `[0].transport`: unknown variant `carrier-pigeon`, expected one of `stdio`, `sse`, `streamable_http`",
        ),
        (
            json!([{ "name": "x", "transport": "sse" }]),
            "invalid config: mcp server `x` uses transport \"sse\" but has no `url`",
        ),
        (
            json!([{ "name": "x", "transport": "sse", "url": "http://10.1.1.1/sse" }]),
            "",
        ),
        (
            json!({ "name": "x" }),
            "invalid request body: the body must be a JSON array",
        ),
    ];
    for (body, message) in cases {
        let (status, answer) = add_servers(&host, body.clone(), Some(MEMBER)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        if !message.is_empty() {
            assert_eq!(detail(&answer), message);
        }
    }

    let (status, body) = host.delete("/servers/nope", None).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({ "detail": "Server not found" })
        )
    );
    assert_eq!(
        host.delete("/servers/demo", Some(ADMIN)).await.0,
        StatusCode::CONFLICT
    );
    // A configured server is known by the name `GET /servers` shows:
    // `GET /tools` reports it and `DELETE` takes it.
    let (_, servers) = host.get("/servers").await;
    let demo = servers
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "demo")
        .unwrap();
    assert_eq!(demo["name"], "Demo tools");
    let (_, tools) = host.get("/tools").await;
    let demo_tools: Vec<&Value> = tools
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["full_name"].as_str().unwrap().starts_with("demo__"))
        .collect();
    assert_eq!(demo_tools.len(), 5, "{tools}");
    assert!(demo_tools.iter().all(|t| t["server_name"] == "Demo tools"));
    let py_tool = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["full_name"] == "py__word_count")
        .unwrap();
    assert_eq!(
        py_tool["server_name"], "py",
        "a registered server's name is its id"
    );
    assert_eq!(
        host.delete("/servers/Demo%20tools", Some(ADMIN)).await,
        (
            StatusCode::CONFLICT,
            json!({ "detail": "MCP server `demo` is defined in the config file; remove it there" })
        )
    );

    let not_found = json!({ "detail": "Session not found" });
    let (status, body) = host.get("/sessions/nope/history").await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, not_found.clone()));
    let (status, body) = host.post_json("/chat/nope", r#"{"message": "hi"}"#).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, not_found.clone()));
    let response = host
        .request(reqwest::Method::GET, "/chat/nope/stream?message=hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let session = new_session(&host).await;
    let response = host
        .request(reqwest::Method::GET, &format!("/chat/{session}/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (status, body) = host
        .post_json(&format!("/chat/{session}"), r#"{"text": "hi"}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        detail(&body),
        "invalid request body: missing field `message`"
    );
}

/// Seed 004's `timeout` is the connection timeout; tool calls have their
/// own, `call_timeout`.
#[tokio::test]
async fn timeout_bounds_connecting_and_call_timeout_bounds_each_call() {
    let host = Agenthost::start(&config(""));
    let server = fixture("fastmcp_server.py").display().to_string();
    let late = json!([{ "name": "late", "transport": "stdio", "command": "sh",
        "args": ["-c", format!("sleep 30; exec python3 {server}")], "timeout": 1 }]);
    let (status, body) = add_servers(&host, late, None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("Failed to connect to server: ")
            && detail.contains("it did not start and list its tools within 1 s"),
        "{detail}"
    );

    // A connection timeout of 1 s does not cut a 1.5 s tool call short.
    let patient = json!([{ "name": "patient", "transport": "stdio", "command": "python3",
        "args": [server.clone()], "timeout": 30 }]);
    assert_eq!(add_servers(&host, patient, None).await.0, StatusCode::OK);
    let quick = json!([{ "name": "quick", "transport": "stdio", "command": "python3",
        "args": [server], "timeout": 30, "call_timeout": 0.5 }]);
    assert_eq!(add_servers(&host, quick, None).await.0, StatusCode::OK);
    let session = new_session(&host).await;
    let (_, body) = stream(&host, &session, "patient__slow {\"seconds\": 1.5}").await;
    assert!(
        body.contains(r#""tool": "slow", "success": true, "result": "done""#),
        "{body}"
    );
    let (_, body) = stream(&host, &session, "quick__slow {\"seconds\": 1.5}").await;
    assert!(
        body.contains(r#""tool": "slow", "success": false, "result": "tool `slow` of MCP server `quick` did not answer within 0.5 s""#),
        "{body}"
    );
}
