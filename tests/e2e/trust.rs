//! The trust boundary: who may call what on every surface, tenants kept
//! apart, pages elsewhere and foreign hosts refused, and MCP servers that
//! never see the host's secrets.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::*;

const ADMIN: &str = "sk-acme-admin-0001";
const MEMBER: &str = "sk-acme-member-0001";
const VIEWER: &str = "sk-acme-viewer-0001";
const OTHER_ORG: &str = "sk-globex-admin-0001";
const UNKNOWN: &str = "sk-nobody-000001";
const CONNECTION_KEY: &str = "5f0e3c6a9b1d4e7f8a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";

/// Keys of two orgs, the demo server, the offline mock provider.
fn keyed(extra: &str) -> String {
    format!(
        "{}\
         [[api_keys]]\nkey = \"{ADMIN}\"\norg = \"acme\"\nrole = \"admin\"\n\
         [[api_keys]]\nkey = \"{MEMBER}\"\norg = \"acme\"\nrole = \"member\"\n\
         [[api_keys]]\nkey = \"{VIEWER}\"\norg = \"acme\"\nrole = \"viewer\"\n\
         [[api_keys]]\nkey = \"{OTHER_ORG}\"\norg = \"globex\"\nrole = \"admin\"\n\
         {extra}",
        demo_server_toml()
    )
}

/// A request with an optional `x-api-key`; the answer as JSON (or
/// `Null` when it is not JSON).
async fn call(
    host: &Agenthost,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = client().request(method, host.url(path));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn new_session(host: &Agenthost, key: &str) -> String {
    let (status, body) = call(host, Method::POST, "/sessions", Some(key), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["session_id"].as_str().unwrap().to_owned()
}

/// The simple frontend's `POST /chat`, as `key`, against the demo server.
async fn simple_chat(host: &Agenthost, key: &str, message: &str) -> Value {
    let (status, _) = call(host, Method::POST, "/connect/demo", Some(key), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(
        host,
        Method::POST,
        "/chat",
        Some(key),
        Some(json!({ "message": message })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

const ADD_NOTE: &str = r#"add_note {"title": "t", "text": "written"}"#;

fn denial(tool: &str) -> String {
    format!(
        "permission denied: tool `{tool}` changes data and this API key has the viewer role, which may only call read-only tools"
    )
}

#[tokio::test]
async fn every_route_but_health_needs_a_key_and_refuses_in_its_own_shape() {
    let host = Agenthost::start(&keyed(""));
    let detail = json!({ "detail": "an API key is required: send it in the x-api-key header or as `Authorization: Bearer <key>`" });
    let unknown_detail = json!({ "detail": "invalid API key" });
    let feather = json!({ "error": "AuthenticationError", "message": "missing API key: send it in the x-api-key header" });
    let message = json!({ "message": "hi" });
    let routes: Vec<(Method, &str, Option<Value>, Value)> = vec![
        (Method::GET, "/servers", None, detail.clone()),
        (Method::POST, "/connect/demo", None, detail.clone()),
        (Method::GET, "/status", None, detail.clone()),
        (Method::POST, "/disconnect", None, detail.clone()),
        (
            Method::POST,
            "/chat/stream",
            Some(message.clone()),
            detail.clone(),
        ),
        (Method::POST, "/chat", Some(message.clone()), detail.clone()),
        (Method::POST, "/servers", Some(json!([])), detail.clone()),
        (Method::DELETE, "/servers/demo", None, detail.clone()),
        (Method::GET, "/tools", None, detail.clone()),
        (Method::POST, "/sessions", None, detail.clone()),
        (Method::GET, "/sessions", None, detail.clone()),
        (Method::GET, "/sessions/s/history", None, detail.clone()),
        (
            Method::POST,
            "/chat/s",
            Some(message.clone()),
            detail.clone(),
        ),
        (
            Method::GET,
            "/chat/s/stream?message=hi",
            None,
            detail.clone(),
        ),
        (
            Method::GET,
            "/admin/stats",
            None,
            json!({ "detail": "an admin API key is required" }),
        ),
        (
            Method::POST,
            "/v1/mcp-chat/stream",
            Some(message.clone()),
            feather.clone(),
        ),
        (
            Method::GET,
            "/v1/integrations/connections",
            None,
            feather.clone(),
        ),
        (Method::POST, "/mcp/", Some(json!({})), feather.clone()),
        (
            Method::POST,
            "/api/llm/agent/responses",
            Some(json!({ "model": "m", "messages": [] })),
            json!({ "error": { "type": "authentication_error", "message": "missing `Authorization: Bearer <api key>` header", "param": null, "code": null } }),
        ),
    ];
    for (method, path, body, refusal) in routes {
        let (status, answer) = call(&host, method.clone(), path, None, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {answer}"
        );
        assert_eq!(answer, refusal, "{method} {path}");
        let (status, answer) = call(&host, method.clone(), path, Some(UNKNOWN), body).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with an unknown key"
        );
        if refusal == detail {
            assert_eq!(answer, unknown_detail, "{method} {path}");
        }
    }
    let (status, health) = call(&host, Method::GET, "/", None, None).await;
    assert_eq!((status, &health["status"]), (StatusCode::OK, &json!("ok")));
    assert!(host.logs().contains("keyed mode"), "{}", host.logs());
}

#[tokio::test]
async fn viewers_are_denied_write_tools_on_every_surface_and_nothing_is_written() {
    let host = Agenthost::start(&keyed(""));

    let simple = simple_chat(&host, VIEWER, ADD_NOTE).await;
    assert_eq!(simple["tool_calls"][0]["result"], denial("demo__add_note"));

    let session = new_session(&host, VIEWER).await;
    let (status, _) = call(
        &host,
        Method::POST,
        &format!("/chat/{session}"),
        Some(VIEWER),
        Some(json!({ "message": ADD_NOTE })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, history) = call(
        &host,
        Method::GET,
        &format!("/sessions/{session}/history"),
        Some(VIEWER),
        None,
    )
    .await;
    assert_eq!(history[2]["role"], "tool");
    assert_eq!(
        history[2]["content"],
        format!("Error: {}", denial("demo__add_note"))
    );

    let (status, feather) = call(
        &host,
        Method::POST,
        "/v1/mcp-chat/stream",
        Some(VIEWER),
        Some(json!({ "messages": [{ "role": "user", "content": ADD_NOTE }] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(feather, Value::Null, "an event stream");
    let stream = client()
        .post(host.url("/v1/mcp-chat/stream"))
        .header("x-api-key", VIEWER)
        .body(json!({ "messages": [{ "role": "user", "content": ADD_NOTE }] }).to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        stream.contains(&format!("\"error\":\"{}\"", denial("demo__add_note"))),
        "{stream}"
    );

    let truefoundry = client()
        .post(host.url("/api/llm/agent/responses"))
        .bearer_auth(VIEWER)
        .body(
            json!({ "model": "gpt-4o-mini", "stream": true,
                    "messages": [{ "role": "user", "content": ADD_NOTE }],
                    "mcp_servers": [{ "integration_fqn": "demo" }] })
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        truefoundry.contains("permission denied: tool `demo__add_note`"),
        "{truefoundry}"
    );

    let calls = json!([["demo__add_note", { "title": "t", "text": "x" }]]);
    let mcp = run_mcp_client(&host.url("/mcp/"), VIEWER, None, &calls).await;
    assert_eq!(mcp["results"][0]["isError"], true, "{mcp}");
    assert!(
        mcp["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["name"] != "demo__add_note"),
        "viewers are not listed write tools"
    );

    // None of it was written, and every denial is in the org's log.
    let admin = simple_chat(&host, ADMIN, "list_notes {}").await;
    assert!(
        admin["tool_calls"][0]["result"]
            .as_str()
            .unwrap()
            .contains("No notes yet."),
        "{admin}"
    );
    let (_, log) = call(
        &host,
        Method::GET,
        "/v1/integrations/tool-calls",
        Some(ADMIN),
        None,
    )
    .await;
    let rows = log["tool_calls"].as_array().unwrap();
    let mut denied: Vec<&str> = rows
        .iter()
        .filter(|r| r["success"] == false)
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    denied.sort();
    assert_eq!(
        denied,
        [
            "feather_chat",
            "feather_chat",
            "mcp_chat_api",
            "mcp_endpoint",
            "simple_chat",
            "truefoundry_chat"
        ],
        "{log}"
    );
    assert!(
        rows.iter()
            .all(|r| r["org"] == "acme" && r["api_key"].as_str().is_some_and(|k| k.len() == 8)),
        "{log}"
    );
}

#[tokio::test]
async fn tenants_see_only_their_own_sessions_servers_and_conversations() {
    let python = FixtureServer::start("streamable-http");
    let http_server = |name: &str| {
        json!([{ "name": name, "transport": "streamable_http",
                 "url": format!("http://127.0.0.1:{}/mcp", python.port) }])
    };
    let host =
        Agenthost::start_with_env(&keyed(""), &[("AGENTHOST_CONNECTION_KEY", CONNECTION_KEY)]);

    // Sessions: another org's is not found, however it is asked for.
    let session = new_session(&host, ADMIN).await;
    let (status, _) = call(
        &host,
        Method::POST,
        &format!("/chat/{session}"),
        Some(MEMBER),
        Some(json!({ "message": "hello" })),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "members of the org share its sessions"
    );
    let not_found = json!({ "detail": "Session not found" });
    for (method, path, body) in [
        (Method::GET, format!("/sessions/{session}/history"), None),
        (
            Method::POST,
            format!("/chat/{session}"),
            Some(json!({ "message": "hi" })),
        ),
        (
            Method::GET,
            format!("/chat/{session}/stream?message=hi"),
            None,
        ),
    ] {
        let (status, answer) = call(&host, method, &path, Some(OTHER_ORG), body).await;
        assert_eq!(
            (status, answer),
            (StatusCode::NOT_FOUND, not_found.clone()),
            "{path}"
        );
    }
    let (_, theirs) = call(&host, Method::GET, "/sessions", Some(OTHER_ORG), None).await;
    assert_eq!(theirs, json!([]));
    let (_, ours) = call(&host, Method::GET, "/sessions", Some(VIEWER), None).await;
    assert_eq!(
        ours[0]["id"],
        session.as_str(),
        "a viewer of the org sees it"
    );

    // Servers: who may register what, and who sees it.
    let stdio =
        json!([{ "name": "demo2", "transport": "stdio", "command": bin(), "args": ["demo-mcp"] }]);
    let registrations = [
        (
            VIEWER,
            http_server("py"),
            StatusCode::FORBIDDEN,
            "viewers register nothing",
        ),
        (
            MEMBER,
            http_server("py"),
            StatusCode::BAD_REQUEST,
            "a member's URL must be public",
        ),
        (
            MEMBER,
            stdio.clone(),
            StatusCode::FORBIDDEN,
            "running a command is an admin's",
        ),
        (
            ADMIN,
            http_server("py"),
            StatusCode::OK,
            "an admin may reach a loopback server",
        ),
        (ADMIN, stdio, StatusCode::OK, "and run a command"),
        (
            ADMIN,
            http_server("demo"),
            StatusCode::CONFLICT,
            "a configured server's name is taken",
        ),
    ];
    for (key, servers, expected, why) in registrations {
        let (status, answer) =
            call(&host, Method::POST, "/servers", Some(key), Some(servers)).await;
        assert_eq!(status, expected, "{why}: {answer}");
    }

    let names = |servers: &Value| -> Vec<String> {
        let mut names: Vec<String> = servers
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let (_, listed) = call(&host, Method::GET, "/servers", Some(VIEWER), None).await;
    assert_eq!(names(&listed), ["demo", "demo2", "py"]);
    let (_, listed) = call(&host, Method::GET, "/servers", Some(OTHER_ORG), None).await;
    assert_eq!(
        names(&listed),
        ["demo"],
        "another org sees the configured server only"
    );
    let (_, tools) = call(&host, Method::GET, "/tools", Some(OTHER_ORG), None).await;
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["server_name"] == "Demo tools"),
        "{tools}"
    );
    let (status, _) = call(
        &host,
        Method::POST,
        "/servers",
        Some(OTHER_ORG),
        Some(http_server("py")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "another org may use the same name");
    let (status, _) = call(&host, Method::DELETE, "/servers/py", Some(OTHER_ORG), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = call(&host, Method::GET, "/servers", Some(ADMIN), None).await;
    assert_eq!(
        names(&listed),
        ["demo", "demo2", "py"],
        "acme's `py` is still there"
    );
    let (status, _) = call(&host, Method::DELETE, "/servers/py", Some(VIEWER), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&host, Method::DELETE, "/servers/demo2", Some(MEMBER), None).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "removing a stdio server is an admin's"
    );

    // The simple frontend's conversation is per key.
    simple_chat(&host, ADMIN, "hello").await;
    let (_, status) = call(&host, Method::GET, "/status", Some(MEMBER), None).await;
    assert_eq!(status["connected"], false, "{status}");
    let (_, status) = call(&host, Method::GET, "/status", Some(ADMIN), None).await;
    assert_eq!(status["server_id"], "demo");
}

#[tokio::test]
async fn local_mode_runs_the_seed_004_readme_flow_with_no_key() {
    let host = Agenthost::start(&demo_server_toml());
    assert!(host.logs().contains("local mode"), "{}", host.logs());
    // The README's flow, its `npx` server swapped for the demo server.
    let (status, added) = call(
        &host,
        Method::POST,
        "/servers",
        None,
        Some(json!([{ "name": "notes", "transport": "stdio", "command": bin(), "args": ["demo-mcp"] }])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{added}");
    let (_, servers) = call(&host, Method::GET, "/servers", None, None).await;
    assert_eq!(servers.as_array().unwrap().len(), 2);
    let (_, tools) = call(&host, Method::GET, "/tools", None, None).await;
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["full_name"] == "notes__add_note"),
        "{tools}"
    );
    let session = {
        let (status, body) = call(&host, Method::POST, "/sessions", None, None).await;
        assert_eq!(status, StatusCode::OK);
        body["session_id"].as_str().unwrap().to_owned()
    };
    let (status, answer) = call(
        &host,
        Method::POST,
        &format!("/chat/{session}"),
        None,
        Some(json!({ "message": "Hello!" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let stream = client()
        .get(host.url(&format!("/chat/{session}/stream?message=Hello")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stream.contains("\"type\": \"done\""), "{stream}");

    // The surfaces that always take a key say that none are configured.
    let no_keys = "this endpoint needs an API key, and none are configured: add an [[api_keys]] entry to the config";
    let (status, answer) = call(
        &host,
        Method::POST,
        "/v1/mcp-chat/stream",
        Some("sk-anything-0000"),
        Some(json!({ "messages": [{ "role": "user", "content": "hi" }] })),
    )
    .await;
    assert_eq!(
        (status, &answer["message"]),
        (StatusCode::UNAUTHORIZED, &json!(no_keys))
    );
    let (status, answer) = call(
        &host,
        Method::POST,
        "/api/llm/agent/responses",
        None,
        Some(json!({ "model": "m", "messages": [] })),
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["message"]),
        (StatusCode::UNAUTHORIZED, &json!(no_keys))
    );
}

#[tokio::test]
async fn a_stdio_server_sees_none_of_the_hosts_variables_beyond_the_allowed() {
    let script = fixture("failing_mcp_server.py").display().to_string();
    // The interpreter itself: a launcher script (pyenv's) would set
    // variables of its own.
    let python = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let python = String::from_utf8(python.stdout).unwrap().trim().to_owned();
    let config = format!(
        "[provider]\nplugin = \"mock\"\n\
         [[api_keys]]\nkey_env = \"AGENTHOST_ADMIN_KEY\"\norg = \"acme\"\nrole = \"admin\"\n\
         [[mcp_servers]]\nid = \"envy\"\ntransport = \"stdio\"\ncommand = {python:?}\nargs = [{script:?}]\n\
         env = {{ OWN_SETTING = \"own\" }}\nenv_passthrough = [\"PASSED_ON\"]\n"
    );
    let secrets = [
        ("AGENTHOST_ADMIN_KEY", "sk-admin-secret-1"),
        ("AGENTHOST_CONNECTION_KEY", CONNECTION_KEY),
        ("ANTHROPIC_API_KEY", "sk-ant-secret-2"),
        ("SOME_TOKEN", "secret-3"),
        ("PASSED_ON", "granted"),
    ];
    let host = Agenthost::start_with_env(&config, &secrets);
    let (status, _) = call(
        &host,
        Method::POST,
        "/connect/envy",
        Some("sk-admin-secret-1"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(
        &host,
        Method::POST,
        "/chat",
        Some("sk-admin-secret-1"),
        Some(json!({ "message": "environment {}" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen: Value =
        serde_json::from_str(body["tool_calls"][0]["result"].as_str().unwrap()).unwrap();
    let allowed = [
        "PATH",
        "HOME",
        "LANG",
        "TZ",
        "TMPDIR",
        "OWN_SETTING",
        "PASSED_ON",
    ];
    for name in seen.as_object().unwrap().keys() {
        assert!(
            allowed.contains(&name.as_str()) || name.starts_with("LC_"),
            "the server saw `{name}`: {seen}"
        );
    }
    assert_eq!(
        (&seen["OWN_SETTING"], &seen["PASSED_ON"]),
        (&json!("own"), &json!("granted"))
    );
    for (_, secret) in secrets.iter().take(4) {
        assert!(!seen.to_string().contains(secret), "{seen}");
    }
}

#[tokio::test]
async fn pages_elsewhere_and_foreign_hosts_are_refused_and_listed_names_reach_mcp() {
    let host = Agenthost::start(&keyed(
        "[security]\nallowed_hosts = [\"agents.example.test\"]\n",
    ));
    // A form post from a page elsewhere: no JSON, no preflight, refused.
    let page = client()
        .post(host.url("/sessions"))
        .header("x-api-key", ADMIN)
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    let text = client()
        .post(host.url("/chat/stream"))
        .header("x-api-key", ADMIN)
        .header("content-type", "text/plain")
        .body(r#"{"message": "hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A DNS-rebinding page names its own host.
    let rebound = client()
        .get(host.url("/sessions"))
        .header("x-api-key", ADMIN)
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    let answer: Value = rebound.json().await.unwrap();
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("security.allowed_hosts"),
        "{answer}"
    );
    let feather = client()
        .get(host.url("/v1/integrations/connections"))
        .header("x-api-key", ADMIN)
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(feather.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        feather.json::<Value>().await.unwrap()["error"],
        "PermissionDeniedError"
    );
    // The page this server allows, and its own origin, are served.
    for origin in ["http://localhost:3000".to_owned(), host.base.clone()] {
        let allowed = client()
            .get(host.url("/sessions"))
            .header("x-api-key", ADMIN)
            .header("origin", origin.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(allowed.status(), StatusCode::OK, "{origin}");
    }

    // A remote MCP client using a listed name, with the official SDK.
    let port = host.base.rsplit(':').next().unwrap();
    let args = [
        fixture("mcp_client.py").display().to_string(),
        host.url("/mcp/"),
        ADMIN.to_owned(),
        "-".to_owned(),
        json!([["demo__calculate", { "expression": "2+3" }]]).to_string(),
        json!({ "Host": format!("agents.example.test:{port}") }).to_string(),
    ];
    let remote = run_json_client("python3", &args).await;
    assert_eq!(remote["results"][0]["content"][0]["text"], "5", "{remote}");
}

#[tokio::test]
async fn a_server_for_everyone_with_no_keys_or_bad_numbers_does_not_start() {
    let run = |config: &str, listen: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agenthost.toml");
        std::fs::write(
            &path,
            format!(
                "data_dir = {:?}\n{config}",
                dir.path().display().to_string()
            ),
        )
        .unwrap();
        let output = std::process::Command::new(bin())
            .args(["serve", "--listen", listen, "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run("", "0.0.0.0:0");
    assert!(!ok);
    assert!(
        stderr.contains("add an [[api_keys]] entry") && stderr.contains("security.anonymous"),
        "{stderr}"
    );
    for (config, named) in [
        (
            "[cors]\nallowed_origins = [\"*\"]\n",
            "cors.allowed_origins",
        ),
        (
            "[[mcp_servers]]\nid = \"x\"\ntransport = \"stdio\"\ncommand = \"x\"\ntimeout = nan\n",
            "`timeout` must be a positive number",
        ),
        (
            "[agent]\nprovider_idle_timeout_secs = -1\n",
            "agent.provider_idle_timeout_secs",
        ),
    ] {
        let (ok, stderr) = run(config, "127.0.0.1:0");
        assert!(!ok && stderr.contains(named), "{config}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let anonymous = Agenthost::start("[security]\nanonymous = true\n");
    let (status, _) = call(&anonymous, Method::GET, "/servers", None, None).await;
    assert_eq!(status, StatusCode::OK, "accepted when asked for");
}

#[tokio::test]
async fn secrets_in_bodies_are_never_repeated_and_stored_ones_are_sealed() {
    let data = tempfile::tempdir().unwrap();
    let config = format!(
        "data_dir = {:?}\n{}",
        data.path().display().to_string(),
        keyed("")
    );
    let secret = "sk-leak-7731";
    let host = Agenthost::start_with_env(&config, &[("AGENTHOST_CONNECTION_KEY", CONNECTION_KEY)]);
    for (method, path, key, body) in [
        (
            Method::POST,
            "/v1/integrations/connections",
            Some(ADMIN),
            json!({ "name": 5, "url": "http://x", "bearer_token": [secret] }),
        ),
        (
            Method::POST,
            "/v1/integrations/connections",
            Some(ADMIN),
            json!({ "url": "http://x", "headers": { "authorization": secret } }),
        ),
        (
            Method::POST,
            "/servers",
            Some(ADMIN),
            json!([{ "name": "x", "transport": "sse", "url": "http://x", "headers": secret }]),
        ),
        (
            Method::POST,
            "/servers",
            Some(ADMIN),
            json!([{ "name": "x", "transport": "stdio", "command": "x", "env": { "K": [secret] } }]),
        ),
    ] {
        let (status, answer) = call(&host, method, path, key, Some(body)).await;
        assert!(status.is_client_error(), "{path}: {status} {answer}");
        assert!(!answer.to_string().contains(secret), "{path}: {answer}");
    }
    let (status, answer) = call(
        &host,
        Method::POST,
        "/api/llm/agent/responses",
        None,
        Some(json!({ "model": "m", "messages": [], "mcp_servers": [{ "url": "http://x", "headers": secret }] })),
    )
    .await;
    assert!(
        status.is_client_error() && !answer.to_string().contains(secret),
        "{answer}"
    );

    // A registered server's env is sealed on disk and back after a restart.
    let script = fixture("failing_mcp_server.py").display().to_string();
    let envy = json!([{ "name": "envy", "transport": "stdio", "command": "python3",
                        "args": [script], "env": { "SEALED_SETTING": secret } }]);
    let (status, answer) = call(
        &host,
        Method::POST,
        "/servers",
        Some(ADMIN),
        Some(envy.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let at_rest = host.data_at_rest();
    assert!(!at_rest.is_empty());
    assert!(
        !at_rest
            .windows(secret.len())
            .any(|w| w == secret.as_bytes()),
        "the store holds the env value"
    );
    drop(host);
    let host = Agenthost::start_with_env(&config, &[("AGENTHOST_CONNECTION_KEY", CONNECTION_KEY)]);
    let (status, _) = call(&host, Method::POST, "/connect/envy", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = call(
        &host,
        Method::POST,
        "/chat",
        Some(ADMIN),
        Some(json!({ "message": "environment {}" })),
    )
    .await;
    assert!(
        body["tool_calls"][0]["result"]
            .as_str()
            .unwrap()
            .contains(secret),
        "the server got its env back: {body}"
    );
    drop(host);
    // Without the sealing key, a server with env cannot be registered.
    let host = Agenthost::start(&config);
    let (status, answer) = call(&host, Method::POST, "/servers", Some(ADMIN), Some(envy)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("AGENTHOST_CONNECTION_KEY")
    );
}
