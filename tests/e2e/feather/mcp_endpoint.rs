//! `/mcp/`: this host's and the org's tools served by role to a real MCP
//! client.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::*;

use super::*;

#[tokio::test]
async fn the_mcp_endpoint_serves_tools_by_role_to_a_real_mcp_client() {
    let crm = FixtureServer::start_script("crm_mcp_server.py", &["--token", CRM_TOKEN]);
    let llm = MockLlm::start().await;
    // The same customer server on stdio, in the pool: pinned by `_meta` alone.
    let stdio_crm = format!(
        "[[mcp_servers]]\nid = \"crmstdio\"\ntransport = \"stdio\"\ncommand = \"python3\"\nargs = [{:?}, \"--stdio\"]\ntimeout = 20\n",
        fixture("crm_mcp_server.py").display().to_string()
    );
    // The stdio server must be listed: a busy machine may take longer than
    // the default 2 s chats wait for a Python server to start.
    let host = start_with(&format!(
        "{}{stdio_crm}[agent]\ntools_wait_secs = 60\n",
        config(&llm, None)
    ));
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
        let (endpoint, key, end_user) = (endpoint.clone(), key.to_owned(), end_user.to_owned());
        async move {
            let end_user = Some(end_user.as_str()).filter(|u| *u != "-");
            run_mcp_client(&endpoint, &key, end_user, &calls).await
        }
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
    assert_eq!(
        admin["server_info"],
        json!({ "name": "agenthost", "version": env!("CARGO_PKG_VERSION") }),
        "/mcp/ names itself, not its MCP library"
    );
    assert_eq!(
        admin["warnings"],
        json!([]),
        "the session's DELETE is answered as the SDK expects"
    );

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
