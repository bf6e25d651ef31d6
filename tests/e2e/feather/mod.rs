//! End-to-end: the Feather surface (seeds 000 and 001) through the real
//! binary: the MCP chat stream, roles enforced by the tools, connections
//! with encrypted credentials, the test-call surface, the tool-call log,
//! and the aggregated `/mcp/` endpoint driven by the Python MCP client.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

const ADMIN: &str = "sk-acme-admin-0001";
const VIEWER: &str = "sk-acme-viewer-0001";
const OTHER_ORG: &str = "sk-globex-admin-0001";
const CONNECTION_KEY: &str = "5f0e3c6a9b1d4e7f8a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";
const END_USER: &str = "6f1c2f7e-1111-4c1b-9f3e-0a4b5c6d7e8f";
const CRM_TOKEN: &str = "crm-secret-token-7d41";
const MISSING_KEY: &str = r#"{"error":"AuthenticationError","message":"missing API key: send it in the x-api-key header"}"#;

/// Keys for two orgs, loopback MCP servers allowed, and the demo server
/// with `list_notes` overridden to count as a write.
fn config(llm: &MockLlm, data_dir: Option<&std::path::Path>) -> String {
    let data = data_dir
        .map(|d| format!("data_dir = {:?}\n", d.display().to_string()))
        .unwrap_or_default();
    format!(
        "{data}{}\n\
         [[api_keys]]\nkey = \"{ADMIN}\"\norg = \"acme\"\nrole = \"admin\"\n\
         [[api_keys]]\nkey = \"{VIEWER}\"\norg = \"acme\"\nrole = \"viewer\"\n\
         [[api_keys]]\nkey = \"{OTHER_ORG}\"\norg = \"globex\"\nrole = \"admin\"\n\
         [security]\nallow_mcp_networks = [\"127.0.0.0/8\"]\n\
         {}tool_access = {{ list_notes = \"write\" }}\n",
        llm.provider_toml(),
        demo_server_toml(),
    )
}

fn start(llm: &MockLlm, data_dir: Option<&std::path::Path>) -> Agenthost {
    start_with(&config(llm, data_dir))
}

fn start_with(config: &str) -> Agenthost {
    Agenthost::start_with_env(config, &[("AGENTHOST_CONNECTION_KEY", CONNECTION_KEY)])
}

async fn send(
    host: &Agenthost,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut request = client()
        .request(method, host.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn send_json(
    host: &Agenthost,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let (status, text) = send(host, method, path, key, body, &[]).await;
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, value)
}

async fn chat(host: &Agenthost, key: &str, body: Value) -> String {
    let (status, text) = send(
        host,
        Method::POST,
        "/v1/mcp-chat/stream",
        Some(key),
        &body.to_string(),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    text
}

/// The stream's `(event, data)` pairs.
fn events(body: &str) -> Vec<(String, Value)> {
    assert!(body.ends_with("\n\n"), "{body}");
    body.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|frame| {
            let (event, data) = frame.split_once('\n').unwrap();
            let event = event.strip_prefix("event: ").unwrap().to_owned();
            let data = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            (event, data)
        })
        .collect()
}

fn tool_call_turn(calls: &[(&str, &str, &[&str])]) -> Vec<String> {
    let mut writes = vec![role_chunk()];
    for (i, (id, name, fragments)) in calls.iter().enumerate() {
        writes.push(tool_start_chunk(i as u32, id, name));
        for fragment in *fragments {
            writes.push(tool_args_chunk(i as u32, fragment));
        }
    }
    writes.push(finish_chunk("tool_calls"));
    writes.push(DONE.into());
    split_writes(writes)
}

fn text_turn(text: &str) -> Vec<String> {
    vec![text_chunk(text), finish_chunk("stop"), DONE.into()]
}

#[tokio::test]
async fn a_chat_with_two_tool_calls_streams_the_seed_events() {
    let llm = MockLlm::start().await;
    let host = start(&llm, None);
    let mut first = vec![role_chunk(), text_chunk("Checking.")];
    first.extend(tool_call_turn(&[
        (
            "call_a",
            "demo__calculate",
            &["{\"expression\":", " \"6*7\"}"],
        ),
        ("call_b", "demo__calculate", &["{\"expression\": \"2^10\"}"]),
    ]));
    llm.respond(first);
    llm.respond(vec![
        text_chunk("42 and "),
        text_chunk("1024."),
        finish_chunk("stop"),
        DONE.into(),
    ]);
    let body = chat(
        &host,
        ADMIN,
        json!({ "messages": [{ "role": "user", "content": "Work out 6*7 and 2^10." }] }),
    )
    .await;
    assert_eq!(
        body,
        concat!(
            "event: text_delta\ndata: {\"text\":\"Checking.\"}\n\n",
            "event: turn_end\ndata: {\"turn\":1,\"stop_reason\":\"tool_use\"}\n\n",
            "event: tool_call\ndata: {\"id\":\"call_a\",\"name\":\"demo__calculate\",\"input\":{\"expression\": \"6*7\"}}\n\n",
            "event: tool_call\ndata: {\"id\":\"call_b\",\"name\":\"demo__calculate\",\"input\":{\"expression\": \"2^10\"}}\n\n",
            "event: tool_result\ndata: {\"id\":\"call_a\",\"name\":\"demo__calculate\",\"result\":\"{\\\"content\\\":[{\\\"type\\\":\\\"text\\\",\\\"text\\\":\\\"42\\\"}],\\\"isError\\\":false}\"}\n\n",
            "event: tool_result\ndata: {\"id\":\"call_b\",\"name\":\"demo__calculate\",\"result\":\"{\\\"content\\\":[{\\\"type\\\":\\\"text\\\",\\\"text\\\":\\\"1024\\\"}],\\\"isError\\\":false}\"}\n\n",
            "event: text_delta\ndata: {\"text\":\"42 and \"}\n\n",
            "event: text_delta\ndata: {\"text\":\"1024.\"}\n\n",
            "event: turn_end\ndata: {\"turn\":2,\"stop_reason\":\"end_turn\"}\n\n",
            "event: done\ndata: {\"turns\":2}\n\n",
        )
    );
    let requests = llm.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body["model"], "gpt-5.4-mini",
        "the seed's default"
    );
    assert_eq!(requests[0].body["max_tokens"], 4096, "the seed's default");
    let tools: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(tools.contains(&"demo__add_note"), "{tools:?}");
    let replayed = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(replayed[2]["role"], "tool");
    assert_eq!(replayed[2]["content"], "42");

    // The model and token limit a client asks for reach the provider.
    llm.respond(text_turn("Hi."));
    let body = chat(
        &host,
        ADMIN,
        json!({ "messages": [{ "role": "user", "content": "Hi" }, { "role": "assistant", "content": "Hello" }, { "role": "user", "content": "Again" }],
                "model": "gpt-4o", "max_tokens": 77, "end_user_id": null }),
    )
    .await;
    assert!(
        body.ends_with("event: done\ndata: {\"turns\":1}\n\n"),
        "{body}"
    );
    let sent = &llm.requests()[2].body;
    assert_eq!(
        (sent["model"].as_str(), sent["max_tokens"].as_u64()),
        (Some("gpt-4o"), Some(77))
    );
    assert_eq!(
        sent["messages"][1],
        json!({ "role": "assistant", "content": "Hello" })
    );

    // A provider failure is the stream's fatal `error` event.
    llm.reply(Reply::status(400, r#"{"error":{"message":"bad model"}}"#));
    let body = chat(
        &host,
        ADMIN,
        json!({ "messages": [{ "role": "user", "content": "Hi" }] }),
    )
    .await;
    let last = events(&body).pop().unwrap();
    assert_eq!(last.0, "error");
    assert!(
        last.1["message"].as_str().unwrap().contains("400"),
        "{body}"
    );
}

#[tokio::test]
async fn a_viewer_is_denied_write_tools_while_the_stream_goes_on() {
    let llm = MockLlm::start().await;
    let host = start(&llm, None);
    llm.respond(tool_call_turn(&[
        (
            "call_w",
            "demo__add_note",
            &["{\"title\": \"x\", \"text\": \"y\"}"],
        ),
        ("call_o", "demo__list_notes", &["{}"]),
        ("call_r", "demo__calculate", &["{\"expression\": \"1+1\"}"]),
    ]));
    llm.respond(text_turn("Some of that worked."));
    let body = chat(
        &host,
        VIEWER,
        json!({ "messages": [{ "role": "user", "content": "Note, list, add." }] }),
    )
    .await;
    let events = events(&body);
    let results: Vec<&Value> = events
        .iter()
        .filter(|(event, _)| event == "tool_result")
        .map(|(_, data)| data)
        .collect();
    let denial = |tool: &str| {
        format!(
            "permission denied: tool `{tool}` changes data and this API key has the viewer role, which may only call read-only tools"
        )
    };
    assert_eq!(
        results[0],
        &json!({ "id": "call_w", "name": "demo__add_note", "error": denial("demo__add_note") })
    );
    assert_eq!(
        results[1],
        &json!({ "id": "call_o", "name": "demo__list_notes", "error": denial("demo__list_notes") }),
        "the config overrides the server's readOnlyHint"
    );
    assert!(results[2]["result"].as_str().unwrap().contains("\"2\""));
    assert_eq!(events.last().unwrap().0, "done");
    let fed_back = &llm.requests()[1].body["messages"];
    assert_eq!(
        fed_back[2]["content"],
        format!("Error: {}", denial("demo__add_note"))
    );

    // The denied write never ran: the admin finds no note.
    llm.respond(tool_call_turn(&[("call_l", "demo__list_notes", &["{}"])]));
    llm.respond(text_turn("Listed."));
    let body = chat(
        &host,
        ADMIN,
        json!({ "messages": [{ "role": "user", "content": "List notes." }] }),
    )
    .await;
    assert!(body.contains("No notes yet."), "{body}");

    // Every call is in the log, denied ones as failures; admins only.
    let (status, log) = send_json(
        &host,
        Method::GET,
        "/v1/integrations/tool-calls",
        Some(VIEWER),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(log["error"], "PermissionDeniedError");
    let (status, log) = send_json(
        &host,
        Method::GET,
        "/v1/integrations/tool-calls",
        Some(ADMIN),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let rows = log["tool_calls"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{log}");
    assert_eq!(rows[0]["tool"], "list_notes", "newest first");
    assert_eq!(rows[0]["success"], true);
    for row in &rows[1..] {
        assert_eq!(
            (
                row["org"].as_str(),
                row["reason"].as_str(),
                row["mode"].as_str()
            ),
            (Some("acme"), Some("feather_chat"), Some("mcp_pool"))
        );
        let denied = row["tool"] != "calculate";
        assert_eq!(row["success"], !denied, "{row}");
        assert_eq!(row["error"].is_string(), denied, "{row}");
    }
    let (_, other) = send_json(
        &host,
        Method::GET,
        "/v1/integrations/tool-calls",
        Some(OTHER_ORG),
        "",
    )
    .await;
    assert_eq!(
        other["tool_calls"],
        json!([]),
        "another org sees none of it"
    );
}

#[tokio::test]
async fn invalid_requests_get_fastapi_validation_errors() {
    let llm = MockLlm::start().await;
    let host = start(&llm, None);
    let ok_messages = json!([{ "role": "user", "content": "hi" }]);
    let cases: Vec<(String, Value)> = vec![
        (
            "{}".into(),
            json!([{ "type": "missing", "loc": ["body", "messages"], "msg": "Field required", "input": {} }]),
        ),
        (
            r#"{"messages": []}"#.into(),
            json!([{ "type": "too_short", "loc": ["body", "messages"], "msg": "List should have at least 1 item after validation, not 0", "input": [], "ctx": { "field_type": "List", "min_length": 1, "actual_length": 0 } }]),
        ),
        (
            r#"{"messages": "hi"}"#.into(),
            json!([{ "type": "list_type", "loc": ["body", "messages"], "msg": "Input should be a valid list", "input": "hi" }]),
        ),
        (
            r#"{"messages": [{"role": "system", "content": "x"}]}"#.into(),
            json!([{ "type": "literal_error", "loc": ["body", "messages", 0, "role"], "msg": "Input should be 'user' or 'assistant'", "input": "system", "ctx": { "expected": "'user' or 'assistant'" } }]),
        ),
        (
            r#"{"messages": [{"role": "user"}, 7]}"#.into(),
            json!([
                { "type": "missing", "loc": ["body", "messages", 0, "content"], "msg": "Field required", "input": { "role": "user" } },
                { "type": "model_attributes_type", "loc": ["body", "messages", 1], "msg": "Input should be a valid dictionary or object to extract fields from", "input": 7 },
            ]),
        ),
        (
            r#"{"messages": [{"role": "user", "content": 1}]}"#.into(),
            json!([{ "type": "string_type", "loc": ["body", "messages", 0, "content"], "msg": "Input should be a valid string", "input": 1 }]),
        ),
        (
            json!({ "messages": ok_messages, "end_user_id": "contact-42" }).to_string(),
            json!([{ "type": "uuid_parsing", "loc": ["body", "end_user_id"], "msg": "Input should be a valid UUID, invalid character: found `o` at 1", "input": "contact-42", "ctx": { "error": "invalid character: found `o` at 1" } }]),
        ),
        (
            json!({ "messages": ok_messages, "end_user_id": 42 }).to_string(),
            json!([{ "type": "uuid_type", "loc": ["body", "end_user_id"], "msg": "UUID input should be a string, bytes or UUID object", "input": 42 }]),
        ),
        (
            json!({ "messages": ok_messages, "model": 5 }).to_string(),
            json!([{ "type": "string_type", "loc": ["body", "model"], "msg": "Input should be a valid string", "input": 5 }]),
        ),
        (
            json!({ "messages": ok_messages, "max_tokens": 0 }).to_string(),
            json!([{ "type": "greater_than_equal", "loc": ["body", "max_tokens"], "msg": "Input should be greater than or equal to 1", "input": 0, "ctx": { "ge": 1 } }]),
        ),
        (
            json!({ "messages": ok_messages, "max_tokens": 16385 }).to_string(),
            json!([{ "type": "less_than_equal", "loc": ["body", "max_tokens"], "msg": "Input should be less than or equal to 16384", "input": 16385, "ctx": { "le": 16384 } }]),
        ),
        (
            json!({ "messages": ok_messages, "max_tokens": "lots" }).to_string(),
            json!([{ "type": "int_parsing", "loc": ["body", "max_tokens"], "msg": "Input should be a valid integer, unable to parse string as an integer", "input": "lots" }]),
        ),
        (
            json!({ "messages": ok_messages, "max_tokens": 2.5 }).to_string(),
            json!([{ "type": "int_from_float", "loc": ["body", "max_tokens"], "msg": "Input should be a valid integer, got a number with a fractional part", "input": 2.5 }]),
        ),
        (
            "[1]".into(),
            json!([{ "type": "model_attributes_type", "loc": ["body"], "msg": "Input should be a valid dictionary or object to extract fields from", "input": [1] }]),
        ),
        (
            "{\"messages\": [".into(),
            json!([{ "type": "json_invalid", "loc": ["body", 14], "msg": "JSON decode error", "input": {}, "ctx": { "error": "EOF while parsing a list at line 1 column 14" } }]),
        ),
        (
            String::new(),
            json!([{ "type": "missing", "loc": ["body"], "msg": "Field required", "input": null }]),
        ),
    ];
    for (body, detail) in cases {
        let (status, answer) = send_json(
            &host,
            Method::POST,
            "/v1/mcp-chat/stream",
            Some(ADMIN),
            &body,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(answer, json!({ "detail": detail }), "{body}");
    }

    let body = json!({ "messages": ok_messages }).to_string();
    let (status, text) = send(&host, Method::POST, "/v1/mcp-chat/stream", None, &body, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(text, MISSING_KEY);
    let (status, text) = send(
        &host,
        Method::POST,
        "/v1/mcp-chat/stream",
        Some("sk-wrong-000000"),
        &body,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        text,
        r#"{"error":"AuthenticationError","message":"invalid API key"}"#
    );
    assert!(
        llm.requests().is_empty(),
        "nothing invalid reached the model"
    );
}

async fn create_connection(host: &Agenthost, key: &str, body: Value) -> (StatusCode, Value) {
    send_json(
        host,
        Method::POST,
        "/v1/integrations/connections",
        Some(key),
        &body.to_string(),
    )
    .await
}

#[tokio::test]
async fn connections_keep_credentials_sealed_and_test_calls_go_through_them() {
    let crm = PythonMcpServer::start_script("crm_mcp_server.py", &["--token", CRM_TOKEN]);
    let crm_url = format!("http://127.0.0.1:{}/mcp", crm.port);
    let llm = MockLlm::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut host = start(&llm, Some(data.path()));

    // Wrong credentials: the server refuses, nothing is stored.
    let (status, answer) = create_connection(
        &host,
        ADMIN,
        json!({ "name": "Acme CRM", "url": crm_url, "bearer_token": "wrong-token" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_eq!(answer["error"], "McpServerError");
    let (status, answer) = create_connection(
        &host,
        VIEWER,
        json!({ "name": "Acme CRM", "url": crm_url, "bearer_token": CRM_TOKEN }),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("PermissionDeniedError"))
    );
    let (status, answer) = create_connection(
        &host,
        ADMIN,
        json!({ "name": "Acme CRM", "url": crm_url, "password": "x" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer["detail"],
        json!([{ "type": "extra_forbidden", "loc": ["body", "password"], "msg": "Extra inputs are not permitted", "input": "x" }])
    );

    let (status, created) = create_connection(
        &host,
        ADMIN,
        json!({ "name": "Acme CRM", "url": crm_url, "bearer_token": CRM_TOKEN }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["auth"],
        json!({ "type": "bearer", "header_names": ["Authorization"] })
    );
    assert_eq!(
        created["tools"],
        json!([
            { "slug": "acme_crm__lookup_contact", "name": "lookup_contact", "description": "Look up a contact by email.", "read_only": true, "enabled": true },
            { "slug": "acme_crm__update_contact", "name": "update_contact", "description": "Change a contact's name.", "read_only": false, "enabled": true },
        ])
    );
    let (status, _) = create_connection(
        &host,
        ADMIN,
        json!({ "name": "acme crm", "url": crm_url, "bearer_token": CRM_TOKEN }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "names are unique per org");

    let base = format!("/v1/integrations/connections/{id}");
    let test_call = format!("{base}/test-mcp-call");
    let lookup =
        json!({ "slug": "acme_crm__lookup_contact", "input": { "email": "ada@example.com" } })
            .to_string();
    let (status, text) = send(
        &host,
        Method::POST,
        &test_call,
        Some(ADMIN),
        &lookup,
        &[("x-end-user-id", END_USER)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    let result = &answer["result"];
    assert_eq!(result["isError"], false, "the raw MCP result: {answer}");
    let contact: Value =
        serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        contact,
        json!({ "email": "ada@example.com", "name": "Ada Lovelace", "pinned": { "header": END_USER, "meta": END_USER } })
    );

    // Ownership, slugs, body shape, keys.
    let (status, answer) =
        send_json(&host, Method::POST, &test_call, Some(OTHER_ORG), &lookup).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("NotFoundError"))
    );
    let (status, answer) = send_json(&host, Method::GET, &base, Some(OTHER_ORG), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let unknown = json!({ "slug": "acme_crm__drop_tables" }).to_string();
    let (status, answer) = send_json(&host, Method::POST, &test_call, Some(ADMIN), &unknown).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ToolUnavailableError"))
    );
    let extra = json!({ "slug": "acme_crm__lookup_contact", "input": {}, "mode": "x" }).to_string();
    let (status, answer) = send_json(&host, Method::POST, &test_call, Some(ADMIN), &extra).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer["detail"],
        json!([{ "type": "extra_forbidden", "loc": ["body", "mode"], "msg": "Extra inputs are not permitted", "input": "x" }])
    );
    let (status, answer) = send_json(
        &host,
        Method::POST,
        &test_call,
        Some(ADMIN),
        r#"{"input": []}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer["detail"],
        json!([
            { "type": "missing", "loc": ["body", "slug"], "msg": "Field required", "input": { "input": [] } },
            { "type": "dict_type", "loc": ["body", "input"], "msg": "Input should be a valid dictionary", "input": [] },
        ])
    );
    let (status, answer) = send_json(
        &host,
        Method::POST,
        "/v1/integrations/connections/not-a-uuid/test-mcp-call",
        Some(ADMIN),
        &lookup,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["detail"][0]["loc"], json!(["path", "connection_id"]));
    let (status, answer) = send_json(&host, Method::POST, &test_call, None, &lookup).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("AuthenticationError"))
    );

    // A disabled tool is unavailable; the tool, not the endpoint, checks roles.
    let update = json!({ "slug": "acme_crm__update_contact", "input": { "email": "ada@example.com", "name": "Ada" } }).to_string();
    let toggle = format!("{base}/tools/acme_crm__update_contact");
    let (status, answer) = send_json(
        &host,
        Method::PATCH,
        &toggle,
        Some(ADMIN),
        r#"{"enabled": false}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["tools"][1]["enabled"], false);
    let offered = offered_tools(&host, &llm).await;
    assert!(
        offered.contains(&"acme_crm__lookup_contact".to_owned())
            && !offered.contains(&"acme_crm__update_contact".to_owned()),
        "the next chat no longer offers a disabled tool: {offered:?}"
    );
    let (status, answer) = send_json(&host, Method::POST, &test_call, Some(ADMIN), &update).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer,
        json!({ "error": "ToolUnavailableError", "message": format!("tool `acme_crm__update_contact` is not available on connection `{id}`: the tool is disabled") })
    );
    send_json(
        &host,
        Method::PATCH,
        &toggle,
        Some(ADMIN),
        r#"{"enabled": true}"#,
    )
    .await;
    let (status, answer) = send_json(&host, Method::POST, &test_call, Some(VIEWER), &update).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("PermissionDeniedError"))
    );
    let (status, _) = send_json(&host, Method::POST, &test_call, Some(VIEWER), &lookup).await;
    assert_eq!(status, StatusCode::OK, "viewers may test read-only tools");
    let offered = offered_tools(&host, &llm).await;
    assert!(
        offered.contains(&"acme_crm__update_contact".to_owned()),
        "an enabled tool is offered again: {offered:?}"
    );

    // A chat pinned to an end user reaches the connection with the pin.
    llm.respond(tool_call_turn(&[(
        "call_c",
        "acme_crm__lookup_contact",
        &["{\"email\": \"ada@example.com\"}"],
    )]));
    llm.respond(text_turn("Found Ada."));
    let body = chat(
        &host,
        ADMIN,
        json!({ "messages": [{ "role": "user", "content": "Who is ada@example.com?" }], "end_user_id": END_USER }),
    )
    .await;
    let result = events(&body)
        .into_iter()
        .find(|(event, _)| event == "tool_result")
        .unwrap()
        .1;
    let mcp: Value = serde_json::from_str(result["result"].as_str().unwrap()).unwrap();
    assert!(
        mcp["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "\"pinned\": {{\"header\": \"{END_USER}\", \"meta\": \"{END_USER}\"}}"
            )),
        "{mcp}"
    );

    // The log: who, which connection, how, why.
    let (_, log) = send_json(
        &host,
        Method::GET,
        &format!("/v1/integrations/tool-calls?connection_id={id}"),
        Some(ADMIN),
        "",
    )
    .await;
    let rows = log["tool_calls"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{log}");
    assert_eq!(
        (rows[0]["reason"].as_str(), rows[0]["mode"].as_str()),
        (Some("feather_chat"), Some("feather_mcp_client"))
    );
    assert_eq!(rows[0]["end_user_id"], END_USER);
    let first = &rows[3];
    assert_eq!(
        (first["reason"].as_str(), first["mode"].as_str()),
        (Some("ui_mcp_test_call"), Some("feather_mcp_client"))
    );
    assert_eq!(
        (
            first["connection_id"].as_str(),
            first["tool"].as_str(),
            first["success"].as_bool()
        ),
        (Some(id.as_str()), Some("lookup_contact"), Some(true))
    );
    assert_eq!(rows[2]["success"], false, "the viewer's denied update");
    assert!(
        rows.iter()
            .all(|r| r["duration_ms"].as_f64().unwrap() >= 0.0)
    );

    // The secret is in no response, no log line and not in the database.
    let (_, listed) = send_json(
        &host,
        Method::GET,
        "/v1/integrations/connections",
        Some(VIEWER),
        "",
    )
    .await;
    assert_eq!(listed["connections"][0]["id"], id);
    assert!(!listed.to_string().contains(CRM_TOKEN));
    assert!(!created.to_string().contains(CRM_TOKEN));
    assert!(!host.logs().contains(CRM_TOKEN), "{}", host.logs());
    let database = std::fs::read(data.path().join("agenthost.db")).unwrap();
    let wal = std::fs::read(data.path().join("agenthost.db-wal")).unwrap_or_default();
    for bytes in [&database, &wal] {
        assert!(
            !bytes
                .windows(CRM_TOKEN.len())
                .any(|w| w == CRM_TOKEN.as_bytes())
        );
    }

    // A restart opens the stored credentials with the same key...
    host.terminate();
    let host = start(&llm, Some(data.path()));
    let (status, text) = send(&host, Method::POST, &test_call, Some(ADMIN), &lookup, &[]).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    drop(host);
    // ...and without the key, says which variable to set.
    let host = Agenthost::start(&config(&llm, Some(data.path())));
    let (status, answer) = send_json(&host, Method::POST, &test_call, Some(ADMIN), &lookup).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("AGENTHOST_CONNECTION_KEY"),
        "{answer}"
    );
    drop(host);

    let host = start(&llm, Some(data.path()));
    let (status, _) = send_json(&host, Method::DELETE, &base, Some(VIEWER), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        offered_tools(&host, &llm)
            .await
            .contains(&"acme_crm__lookup_contact".to_owned())
    );
    let (status, _) = send_json(&host, Method::DELETE, &base, Some(ADMIN), "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send_json(&host, Method::GET, &base, Some(ADMIN), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let offered = offered_tools(&host, &llm).await;
    assert!(
        offered.iter().all(|name| !name.starts_with("acme_crm__")),
        "a deleted connection's tools are gone from the next chat: {offered:?}"
    );
}

/// The tools a new chat offers the model.
async fn offered_tools(host: &Agenthost, llm: &MockLlm) -> Vec<String> {
    llm.respond(text_turn("Hi."));
    chat(
        host,
        ADMIN,
        json!({ "messages": [{ "role": "user", "content": "Hi" }] }),
    )
    .await;
    let requests = llm.requests();
    let last = requests.last().expect("the chat reached the model");
    last.body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_mcp_endpoint_serves_tools_by_role_to_a_real_mcp_client() {
    let crm = PythonMcpServer::start_script("crm_mcp_server.py", &["--token", CRM_TOKEN]);
    let llm = MockLlm::start().await;
    // The same customer server on stdio, in the pool: pinned by `_meta` alone.
    let stdio_crm = format!(
        "[[mcp_servers]]\nid = \"crmstdio\"\ntransport = \"stdio\"\ncommand = \"python3\"\nargs = [{:?}, \"--stdio\"]\ntimeout = 20\n",
        fixture("crm_mcp_server.py").display().to_string()
    );
    let host = start_with(&format!("{}{stdio_crm}", config(&llm, None)));
    let (status, created) = create_connection(
        &host,
        ADMIN,
        json!({ "name": "Acme CRM", "url": format!("http://127.0.0.1:{}/mcp", crm.port), "headers": { "Authorization": format!("Bearer {CRM_TOKEN}") } }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["auth"]["type"], "headers");

    let endpoint = host.url("/mcp/");
    let client = |key: &str, end_user: &str, calls: Value| {
        let args = vec![
            fixture("mcp_client.py").display().to_string(),
            endpoint.clone(),
            key.to_owned(),
            end_user.to_owned(),
            calls.to_string(),
        ];
        async move { run_json_client("python3", &args).await }
    };
    let names = |out: &Value| -> Vec<String> {
        out["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };

    let admin = client(
        ADMIN,
        "-",
        json!([["demo__calculate", { "expression": "3*3" }]]),
    )
    .await;
    let mut all = names(&admin);
    all.sort();
    assert_eq!(
        all,
        [
            "acme_crm__lookup_contact",
            "acme_crm__update_contact",
            "crmstdio__lookup_contact",
            "crmstdio__update_contact",
            "demo__add_note",
            "demo__calculate",
            "demo__current_time",
            "demo__list_notes",
            "demo__read_note",
        ]
    );
    assert_eq!(admin["results"][0]["content"][0]["text"], "9");

    let viewer = client(
        VIEWER,
        END_USER,
        json!([
            ["acme_crm__lookup_contact", { "email": "ada@example.com" }],
            ["acme_crm__update_contact", { "email": "ada@example.com", "name": "Eve" }],
            ["crmstdio__lookup_contact", { "email": "ada@example.com" }],
        ]),
    )
    .await;
    let mut seen = names(&viewer);
    seen.sort();
    assert_eq!(
        seen,
        [
            "acme_crm__lookup_contact",
            "crmstdio__lookup_contact",
            "demo__calculate",
            "demo__current_time",
            "demo__read_note"
        ],
        "viewers are listed read-only tools only"
    );
    assert!(
        viewer["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["read_only"] == true)
    );
    let found: Value =
        serde_json::from_str(viewer["results"][0]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        found["pinned"],
        json!({ "header": END_USER, "meta": END_USER }),
        "x-end-user-id travels on"
    );
    let found: Value =
        serde_json::from_str(viewer["results"][2]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        found["pinned"],
        json!({ "header": null, "meta": END_USER }),
        "stdio carries _meta"
    );
    assert_eq!(viewer["results"][1]["isError"], true);
    assert!(
        viewer["results"][1]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("permission denied")
    );

    let other = client(OTHER_ORG, "-", json!([])).await;
    assert!(
        !names(&other).iter().any(|n| n.starts_with("acme_crm")),
        "{other}"
    );

    let (status, text) = send(&host, Method::POST, "/mcp/", None, "{}", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(text, MISSING_KEY);
    let (status, text) = send(
        &host,
        Method::POST,
        "/mcp/",
        Some(ADMIN),
        "{}",
        &[("x-end-user-id", "bob")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");

    let (_, log) = send_json(
        &host,
        Method::GET,
        "/v1/integrations/tool-calls",
        Some(ADMIN),
        "",
    )
    .await;
    let reasons: Vec<&str> = log["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["mcp_endpoint"; 4]);
}
