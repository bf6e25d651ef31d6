//! With every kind of credential configured (the provider's
//! API key, our API keys, the connection sealing key, an MCP server's
//! bearer token), a run through every surface, including their failures,
//! leaves none of them in any response or log line. The provider even
//! echoes its key back in an error, as real providers do.

use reqwest::{Method, StatusCode};
use serde_json::json;
use testkit::*;

const UPSTREAM_KEY: &str = "sk-upstream-secret-5c1e9a";
const ADMIN: &str = "sk-acme-admin-secret-0001";
const CONNECTION_KEY: &str = "5f0e3c6a9b1d4e7f8a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";
const CRM_TOKEN: &str = "crm-secret-token-8e52";

struct Transcript<'a> {
    host: &'a Agenthost,
    seen: String,
}

impl Transcript<'_> {
    async fn send(&mut self, method: Method, path: &str, body: &str) -> (StatusCode, String) {
        let response = client()
            .request(method.clone(), self.host.url(path))
            .header("x-api-key", ADMIN)
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = format!("{:?}", response.headers());
        let text = response.text().await.unwrap();
        self.seen
            .push_str(&format!("{method} {path} -> {status}\n{headers}\n{text}\n"));
        (status, text)
    }
}

#[tokio::test]
async fn no_credential_reaches_a_response_or_a_log_line() {
    let crm = FixtureServer::start_script("crm_mcp_server.py", &["--token", CRM_TOKEN]);
    let crm_url = format!("http://127.0.0.1:{}/mcp", crm.port);
    let llm = MockLlm::start().await;
    let config = format!(
        "{}\n[[api_keys]]\nkey_env = \"AGENTHOST_ADMIN_KEY\"\norg = \"acme\"\nrole = \"admin\"\n\
         [security]\nallow_mcp_networks = [\"127.0.0.0/8\"]\n{}",
        llm.provider_toml(),
        demo_server_toml()
    );
    let host = Agenthost::start_with_env(
        &config,
        &[
            ("AGENTHOST_TEST_KEY", UPSTREAM_KEY),
            ("AGENTHOST_ADMIN_KEY", ADMIN),
            ("AGENTHOST_CONNECTION_KEY", CONNECTION_KEY),
        ],
    );
    let mut run = Transcript {
        host: &host,
        seen: String::new(),
    };
    let answer = || vec![text_chunk("Fine."), finish_chunk("stop"), DONE.into()];
    let echoing_401 = format!(
        "{{\"error\": {{\"message\": \"Incorrect API key provided: {UPSTREAM_KEY}\", \"type\": \"invalid_request_error\"}}}}"
    );

    // Connections: create (with the bearer token), list, show, test call.
    let (status, created) = run
        .send(
            Method::POST,
            "/v1/integrations/connections",
            &json!({ "name": "Acme CRM", "url": crm_url, "bearer_token": CRM_TOKEN }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    run.send(Method::GET, "/v1/integrations/connections", "")
        .await;
    run.send(
        Method::GET,
        &format!("/v1/integrations/connections/{id}"),
        "",
    )
    .await;
    let call =
        json!({ "slug": "acme_crm__lookup_contact", "input": { "email": "ada@example.com" } });
    let (status, _) = run
        .send(
            Method::POST,
            &format!("/v1/integrations/connections/{id}/test-mcp-call"),
            &call.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Chats on every surface, each once answered and once refused by a
    // provider that echoes the key.
    let feather = json!({ "messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o-mini", "max_tokens": 50 });
    let truefoundry = json!({ "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": true });
    run.send(Method::POST, "/connect/demo", "").await;
    let (_, session) = run.send(Method::POST, "/sessions", "").await;
    let session: serde_json::Value = serde_json::from_str(&session).unwrap();
    let chats = [
        ("/chat/stream", json!({"message": "hi"})),
        ("/chat", json!({"message": "hi"})),
        (
            &*format!("/chat/{}", session["session_id"].as_str().unwrap()),
            json!({"message": "hi"}),
        ),
        ("/v1/mcp-chat/stream", feather),
        ("/api/llm/agent/responses", truefoundry),
    ]
    .map(|(path, body)| (path.to_owned(), body));
    for (path, body) in &chats {
        llm.respond(answer());
        run.send(Method::POST, path, &body.to_string()).await;
        llm.reply(Reply::status(401, &echoing_401));
        run.send(Method::POST, path, &body.to_string()).await;
    }

    // What an operator reads.
    for path in [
        "/admin/stats",
        "/admin/plugins",
        "/servers",
        "/status",
        "/tools",
        "/v1/integrations/tool-calls",
    ] {
        run.send(Method::GET, path, "").await;
    }
    // A wrong key is refused without being repeated back.
    let wrong = client()
        .get(host.url("/admin/stats"))
        .header("x-api-key", "sk-guessed-secret-9999")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!wrong.contains("sk-guessed-secret-9999"), "{wrong}");

    // The provider did receive its key, so the test would see a leak.
    assert!(llm.requests().iter().any(|r| {
        r.headers["authorization"].to_str().unwrap() == format!("Bearer {UPSTREAM_KEY}")
    }));
    // Each surface passed the provider's error on, with the key redacted.
    assert_eq!(
        run.seen
            .matches("Incorrect API key provided: [redacted]")
            .count(),
        5,
        "{}",
        run.seen
    );
    let logs = host.logs();
    for secret in [UPSTREAM_KEY, ADMIN, CONNECTION_KEY, CRM_TOKEN] {
        assert!(
            !run.seen.contains(secret),
            "{secret} in a response:\n{}",
            run.seen
        );
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}
