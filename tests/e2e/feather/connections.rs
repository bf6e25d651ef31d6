//! Org connections (seed 001 and the CRUD around it): credentials checked
//! and sealed, the test-call surface, tool enablement, end-user pinning
//! and the tool-call log.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::*;

use super::*;

/// The Python CRM server, a host that may reach it, and the connection
/// to it, created by the admin with a bearer token.
struct Connected {
    _crm: FixtureServer,
    llm: MockLlm,
    data: tempfile::TempDir,
    host: Agenthost,
    id: String,
    created: Value,
}

impl Connected {
    async fn start() -> Connected {
        let crm = FixtureServer::start_script("crm_mcp_server.py", &["--token", CRM_TOKEN]);
        let llm = MockLlm::start().await;
        let data = tempfile::tempdir().unwrap();
        let host = start(&llm, Some(data.path()));
        let (status, created) = create_connection(
            &host,
            ADMIN,
            json!({ "name": "Acme CRM", "url": crm_url(&crm), "bearer_token": CRM_TOKEN }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        Connected {
            _crm: crm,
            llm,
            data,
            host,
            id,
            created,
        }
    }

    fn base(&self) -> String {
        format!("/v1/integrations/connections/{}", self.id)
    }

    fn test_call(&self) -> String {
        format!("{}/test-mcp-call", self.base())
    }
}

fn crm_url(crm: &FixtureServer) -> String {
    format!("http://127.0.0.1:{}/mcp", crm.port)
}

fn lookup() -> String {
    json!({ "slug": "acme_crm__lookup_contact", "input": { "email": "ada@example.com" } })
        .to_string()
}

fn update() -> String {
    json!({ "slug": "acme_crm__update_contact", "input": { "email": "ada@example.com", "name": "Ada" } })
        .to_string()
}

#[tokio::test]
async fn a_connection_is_stored_only_with_working_credentials_a_writers_key_and_a_new_name() {
    let crm = FixtureServer::start_script("crm_mcp_server.py", &["--token", CRM_TOKEN]);
    let llm = MockLlm::start().await;
    let host = start(&llm, None);
    let crm_url = crm_url(&crm);

    // Wrong credentials: the server refuses, nothing is stored.
    let (status, answer) = create_connection(
        &host,
        ADMIN,
        json!({ "name": "Acme CRM", "url": crm_url, "bearer_token": "wrong-token" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_eq!(answer["error"], "McpServerError");
    assert_eq!(
        answer["message"],
        "failed to connect to MCP server `acme_crm`: send discover request: unexpected server response: HTTP 401 Unauthorized: {\"error\": \"unauthorized\"}"
    );
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
    let (status, answer) = create_connection(
        &host,
        ADMIN,
        json!({ "name": "Acme\u{0}CRM", "url": crm_url, "bearer_token": CRM_TOKEN }),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str(), answer["message"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("BadRequestError"),
            Some("`name` must not contain control characters (line breaks, tabs, NUL)")
        )
    );

    let (status, created) = create_connection(
        &host,
        ADMIN,
        json!({ "name": "Acme CRM", "url": crm_url, "bearer_token": CRM_TOKEN }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
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
}

#[tokio::test]
async fn a_test_call_returns_the_raw_result_pinned_and_refuses_other_orgs_slugs_and_shapes() {
    let c = Connected::start().await;
    let (host, test_call, lookup) = (&c.host, c.test_call(), lookup());
    let (status, text) = send(
        host,
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
        send_json(host, Method::POST, &test_call, Some(OTHER_ORG), &lookup).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("NotFoundError"))
    );
    let (status, answer) = send_json(host, Method::GET, &c.base(), Some(OTHER_ORG), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let unknown = json!({ "slug": "acme_crm__drop_tables" }).to_string();
    let (status, answer) = send_json(host, Method::POST, &test_call, Some(ADMIN), &unknown).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ToolUnavailableError"))
    );
    let extra = json!({ "slug": "acme_crm__lookup_contact", "input": {}, "mode": "x" }).to_string();
    let (status, answer) = send_json(host, Method::POST, &test_call, Some(ADMIN), &extra).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer["detail"],
        json!([{ "type": "extra_forbidden", "loc": ["body", "mode"], "msg": "Extra inputs are not permitted", "input": "x" }])
    );
    let (status, answer) = send_json(
        host,
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
        host,
        Method::POST,
        "/v1/integrations/connections/not-a-uuid/test-mcp-call",
        Some(ADMIN),
        &lookup,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["detail"][0]["loc"], json!(["path", "connection_id"]));
    let (status, answer) = send_json(host, Method::POST, &test_call, None, &lookup).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("AuthenticationError"))
    );

    // The customer's server gone: a 502 in the seed's ErrorResponse shape.
    let Connected { _crm, host, .. } = c;
    drop(_crm);
    let (status, answer) = send_json(&host, Method::POST, &test_call, Some(ADMIN), &lookup).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_eq!(answer["error"], "McpServerError");
    assert!(
        answer["message"].as_str().unwrap().contains("crm"),
        "{answer}"
    );
    assert_eq!(answer.as_object().unwrap().len(), 2, "{answer}");
}

#[tokio::test]
async fn a_disabled_tool_is_neither_offered_nor_callable_and_the_tool_checks_roles() {
    let c = Connected::start().await;
    let (host, llm, test_call) = (&c.host, &c.llm, c.test_call());
    let toggle = format!("{}/tools/acme_crm__update_contact", c.base());
    let (status, answer) = send_json(
        host,
        Method::PATCH,
        &toggle,
        Some(ADMIN),
        r#"{"enabled": false}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["tools"][1]["enabled"], false);
    let offered = offered_tools(host, llm).await;
    assert!(
        offered.contains(&"acme_crm__lookup_contact".to_owned())
            && !offered.contains(&"acme_crm__update_contact".to_owned()),
        "the next chat no longer offers a disabled tool: {offered:?}"
    );
    let (status, answer) = send_json(host, Method::POST, &test_call, Some(ADMIN), &update()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer,
        json!({ "error": "ToolUnavailableError", "message": format!("tool `acme_crm__update_contact` is not available on connection `{}`: the tool is disabled", c.id) })
    );
    send_json(
        host,
        Method::PATCH,
        &toggle,
        Some(ADMIN),
        r#"{"enabled": true}"#,
    )
    .await;
    let (status, answer) = send_json(host, Method::POST, &test_call, Some(VIEWER), &update()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("PermissionDeniedError"))
    );
    let (status, _) = send_json(host, Method::POST, &test_call, Some(VIEWER), &lookup()).await;
    assert_eq!(status, StatusCode::OK, "viewers may test read-only tools");
    let offered = offered_tools(host, llm).await;
    assert!(
        offered.contains(&"acme_crm__update_contact".to_owned()),
        "an enabled tool is offered again: {offered:?}"
    );
}

#[tokio::test]
async fn a_chat_reaches_the_connection_pinned_and_the_log_records_who_how_and_why() {
    let c = Connected::start().await;
    let (host, llm, test_call) = (&c.host, &c.llm, c.test_call());
    let (status, _) = send_json(host, Method::POST, &test_call, Some(ADMIN), &lookup()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send_json(host, Method::POST, &test_call, Some(VIEWER), &update()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send_json(host, Method::POST, &test_call, Some(VIEWER), &lookup()).await;
    assert_eq!(status, StatusCode::OK);

    // A chat pinned to an end user reaches the connection with the pin.
    llm.respond(tool_call_turn(&[(
        "call_c",
        "acme_crm__lookup_contact",
        &["{\"email\": \"ada@example.com\"}"],
    )]));
    llm.respond(text_turn("Found Ada."));
    let body = chat(
        host,
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
    assert!(
        !mcp.to_string().contains("traced"),
        "with traces off, no trace context reaches the server: {mcp}"
    );

    // The log: who, which connection, how, why.
    let (_, log) = send_json(
        host,
        Method::GET,
        &format!("/v1/integrations/tool-calls?connection_id={}", c.id),
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
        (Some(c.id.as_str()), Some("lookup_contact"), Some(true))
    );
    assert_eq!(rows[2]["success"], false, "the viewer's denied update");
    assert!(
        rows.iter()
            .all(|r| r["duration_ms"].as_f64().unwrap() >= 0.0)
    );
}

#[tokio::test]
async fn credentials_stay_sealed_survive_a_restart_with_the_key_and_go_with_the_connection() {
    let Connected {
        _crm,
        llm,
        data,
        mut host,
        id,
        created,
    } = Connected::start().await;
    let base = format!("/v1/integrations/connections/{id}");
    let test_call = format!("{base}/test-mcp-call");
    let (status, _) = send_json(&host, Method::POST, &test_call, Some(ADMIN), &lookup()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        offered_tools(&host, &llm)
            .await
            .contains(&"acme_crm__lookup_contact".to_owned())
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
    let at_rest = host.data_at_rest();
    assert!(!at_rest.is_empty());
    assert!(
        !at_rest
            .windows(CRM_TOKEN.len())
            .any(|w| w == CRM_TOKEN.as_bytes())
    );

    // A restart opens the stored credentials with the same key...
    host.terminate();
    let host = start(&llm, Some(data.path()));
    let (status, text) = send(&host, Method::POST, &test_call, Some(ADMIN), &lookup(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    drop(host);
    // ...and without the key, says which variable to set.
    let host = Agenthost::start(&config(&llm, Some(data.path())));
    let (status, answer) = send_json(&host, Method::POST, &test_call, Some(ADMIN), &lookup()).await;
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
