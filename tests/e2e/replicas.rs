//! Several replicas on one PostgreSQL database act as one server: any
//! replica serves any request, a session's chats take turns across them,
//! what one registers the others use, a replica killed mid-chat loses
//! nothing acknowledged, and a database restart gives clean errors, then
//! service again.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::postgres::{Cluster, fresh_database};
use testkit::*;

const ADMIN: &str = "sk-acme-admin-0001";
const CONNECTION_KEY: &str = "5f0e3c6a9b1d4e7f8a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";

/// Two replicas of one config on `database`.
fn replicas(database: &str, extra: &str) -> (Agenthost, Agenthost) {
    let config = format!("database_url = {database:?}\n{}{extra}", demo_server_toml());
    let env = [("AGENTHOST_CONNECTION_KEY", CONNECTION_KEY)];
    (
        Agenthost::start_with_env(&config, &env),
        Agenthost::start_with_env(&config, &env),
    )
}

async fn new_session(host: &Agenthost) -> String {
    let (status, body) = host.post_json("/sessions", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["session_id"].as_str().unwrap().to_owned()
}

async fn chat(host: &Agenthost, session: &str, message: &str) -> (StatusCode, Value) {
    host.post_json(
        &format!("/chat/{session}"),
        &json!({ "message": message }).to_string(),
    )
    .await
}

async fn history(host: &Agenthost, session: &str) -> Vec<(String, String)> {
    let (status, history) = host.get(&format!("/sessions/{session}/history")).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits up to `limit` for `done`, then says how long it took.
async fn within<F, Fut>(limit: Duration, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn a_session_started_on_one_replica_goes_on_and_reads_the_same_on_another() {
    let (a, b) = replicas(&fresh_database(), "");
    let session = new_session(&a).await;
    let (status, answer) = chat(&b, &session, "What is 6*7?").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["message"], "calculate returned: 42.");
    let (status, _) = chat(&a, &session, "And hello.").await;
    assert_eq!(status, StatusCode::OK);
    let seen = history(&a, &session).await;
    assert_eq!(seen, history(&b, &session).await);
    let roles: Vec<&str> = seen.iter().map(|(role, _)| role.as_str()).collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "tool",
            "assistant",
            "user",
            "assistant"
        ]
    );
    let (_, listed_a) = a.get("/sessions").await;
    let (_, listed_b) = b.get("/sessions").await;
    assert_eq!(listed_a, listed_b);
    assert_eq!(listed_a[0]["message_count"], 6);

    // Usage is shared: each replica counts its own chats and writes them
    // within a second, so both come to the same sum.
    let (_, on_a) = a.get("/admin/usage").await;
    let counted = on_a["total"]["requests"].as_u64().unwrap();
    assert!(
        counted == 1 || counted == 3,
        "a's own chat at once, b's two model turns maybe already: {on_a}"
    );
    within(Duration::from_secs(5), || async {
        let (_, on_a) = a.get("/admin/usage").await;
        let (_, on_b) = b.get("/admin/usage").await;
        on_a["total"]["requests"] == 3 && on_a["total"] == on_b["total"]
    })
    .await;
}

#[tokio::test]
async fn chats_on_one_session_sent_to_two_replicas_at_once_take_turns() {
    let llm = MockLlm::answering(text_answer, Duration::from_millis(15)).await;
    let database = fresh_database();
    let config = format!(
        "database_url = {database:?}\nmcp_servers = []\n{}",
        llm.provider_toml()
    );
    let env = [("AGENTHOST_TEST_KEY", "sk-test")];
    let (a, b) = (
        Agenthost::start_with_env(&config, &env),
        Agenthost::start_with_env(&config, &env),
    );
    let session = new_session(&a).await;
    for _ in 0..3 {
        let (first, second) =
            tokio::join!(chat(&a, &session, "from a"), chat(&b, &session, "from b"));
        assert_eq!((first.0, second.0), (StatusCode::OK, StatusCode::OK));
    }
    let seen = history(&b, &session).await;
    assert_eq!(seen.len(), 12);
    for exchange in seen.chunks(2) {
        assert_eq!(exchange[0].0, "user", "{seen:?}");
        assert_eq!(
            exchange[1].0, "assistant",
            "each exchange is whole: {seen:?}"
        );
        assert!(exchange[1].1.starts_with("word0 "), "{seen:?}");
    }
}

/// Proves the change reaches the other replica by notification; how soon
/// (milliseconds) is measured by the load bench's `replicas` section, so
/// the bound here only has to hold on a busy machine.
#[tokio::test]
async fn what_one_replica_registers_or_removes_the_other_uses_without_a_restart() {
    let python = FixtureServer::start("streamable-http");
    let (a, b) = replicas(&fresh_database(), "");
    let server = json!([{ "name": "py", "transport": "streamable_http",
                          "url": format!("http://127.0.0.1:{}/mcp", python.port) }]);
    let (status, body) = a.post_json("/servers", &server.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let has_py = || async {
        let (_, servers) = b.get("/servers").await;
        servers
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == "py" && s["connected_at"].is_string())
    };
    within(Duration::from_secs(5), has_py).await;
    let session = new_session(&b).await;
    let (status, answer) = chat(&b, &session, r#"py__reverse_text {"text": "abc"}"#).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["message"], "reverse_text returned: cba.");

    let (status, _) = a.delete("/servers/py", None).await;
    assert_eq!(status, StatusCode::OK);
    let gone = || async {
        let (_, tools) = b.get("/tools").await;
        tools
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["server_name"] != "py")
    };
    within(Duration::from_secs(5), gone).await;
}

#[tokio::test]
async fn connections_and_their_tools_follow_across_replicas() {
    let crm = FixtureServer::start_script("crm_mcp_server.py", &["--token", "crm-token-41"]);
    let keys = format!(
        "[[api_keys]]\nkey = \"{ADMIN}\"\norg = \"acme\"\nrole = \"admin\"\n\
         [security]\nallow_mcp_networks = [\"127.0.0.0/8\"]\n"
    );
    let (a, b) = replicas(&fresh_database(), &keys);
    let send = |host: &Agenthost, method: Method, path: String, body: Value| {
        let request = client()
            .request(method, host.url(&path))
            .header("x-api-key", ADMIN)
            .body(body.to_string());
        async move {
            let response = request.send().await.unwrap();
            (
                response.status(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, created) = send(
        &a,
        Method::POST,
        "/v1/integrations/connections".into(),
        json!({ "name": "CRM", "url": format!("http://127.0.0.1:{}/mcp", crm.port), "bearer_token": "crm-token-41" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, shown) = send(
        &b,
        Method::GET,
        format!("/v1/integrations/connections/{id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["tools"][1]["enabled"], true);
    let (status, _) = send(
        &a,
        Method::PATCH,
        format!("/v1/integrations/connections/{id}/tools/crm__update_contact"),
        json!({ "enabled": false }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let disabled = || async {
        let (_, answer) = send(
            &b,
            Method::POST,
            format!("/v1/integrations/connections/{id}/test-mcp-call"),
            json!({ "slug": "crm__update_contact", "input": { "email": "a@b.c", "name": "x" } }),
        )
        .await;
        answer["error"] == "ToolUnavailableError"
    };
    within(Duration::from_secs(5), disabled).await;
    let (status, _) = send(
        &a,
        Method::DELETE,
        format!("/v1/integrations/connections/{id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(
        &b,
        Method::GET,
        format!("/v1/integrations/connections/{id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, log_a) = send(
        &a,
        Method::GET,
        "/v1/integrations/tool-calls".into(),
        Value::Null,
    )
    .await;
    let (_, log_b) = send(
        &b,
        Method::GET,
        "/v1/integrations/tool-calls".into(),
        Value::Null,
    )
    .await;
    assert_eq!(log_a, log_b, "the tool-call log is shared");
}

#[tokio::test]
async fn a_replica_killed_mid_chat_loses_nothing_acknowledged() {
    let llm = MockLlm::answering(text_answer, Duration::from_millis(100)).await;
    let database = fresh_database();
    let config = format!(
        "database_url = {database:?}\nmcp_servers = []\n{}",
        llm.provider_toml()
    );
    let env = [("AGENTHOST_TEST_KEY", "sk-test")];
    let mut a = Agenthost::start_with_env(&config, &env);
    let b = Agenthost::start_with_env(&config, &env);
    let session = new_session(&a).await;
    let (status, _) = chat(&a, &session, "first").await;
    assert_eq!(status, StatusCode::OK);

    // A stream that has started has acknowledged its user message.
    let url = a.url(&format!("/chat/{session}/stream?message=second"));
    let mut stream = client().get(url).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let first_bytes = stream.chunk().await.unwrap();
    assert!(first_bytes.is_some());
    a.kill_hard();

    let (status, answer) = chat(&b, &session, "third").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the session is free again: {answer}"
    );
    let contents: Vec<String> = history(&b, &session)
        .await
        .into_iter()
        .map(|(role, content)| format!("{role}: {}", content.split(' ').next().unwrap_or("")))
        .collect();
    assert_eq!(
        contents,
        [
            "user: first",
            "assistant: word0",
            "user: second",
            "user: third",
            "assistant: word0"
        ]
    );
}

#[tokio::test]
async fn a_database_restart_gives_clean_errors_then_service_again() {
    let cluster = Cluster::start(false);
    // The cluster trusts loopback; the password is there to be kept out
    // of every log line.
    let database = cluster
        .database("agenthost")
        .replacen("postgres@", "postgres:pg-secret-pw@", 1);
    let config = format!(
        "database_url = {database:?}\n{}[limits]\ndatabase_timeout_secs = 2\n",
        demo_server_toml()
    );
    let host = Agenthost::start(&config);
    let session = new_session(&host).await;
    assert_eq!(chat(&host, &session, "hello").await.0, StatusCode::OK);

    cluster.stop();
    let started = Instant::now();
    let (status, body) = chat(&host, &session, "anyone there?").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("the database is unavailable"),
        "{body}"
    );
    let (status, body) = host.post_json("/sessions", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "errors come within the timeout"
    );

    cluster.start_again();
    let back = || async { chat(&host, &session, "back?").await.0 == StatusCode::OK };
    within(Duration::from_secs(30), back).await;
    let seen = history(&host, &session).await;
    assert_eq!(seen.first().map(|(_, c)| c.as_str()), Some("hello"));
    let logs = host.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    assert!(
        logs.contains("store: PostgreSQL at postgres://postgres@127.0.0.1:"),
        "{logs}"
    );
    assert!(!logs.contains("pg-secret-pw"), "{logs}");
}

#[tokio::test]
async fn migrate_brings_the_schema_up_once_and_refuses_a_newer_one() {
    let database = fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agenthost.toml");
    std::fs::write(&config, "").unwrap();
    let migrate = || {
        std::process::Command::new(bin())
            .args(["migrate", "--config"])
            .arg(&config)
            .env("AGENTHOST_DATABASE_URL", &database)
            .output()
            .unwrap()
    };
    let (first, second) = (migrate(), migrate());
    for run in [&first, &second] {
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_eq!(run.stdout, b"the database schema is up to date\n");
    }
    assert!(String::from_utf8_lossy(&first.stderr).contains("database schema migrated"));
    assert!(!String::from_utf8_lossy(&second.stderr).contains("database schema migrated"));
    let newer = std::process::Command::new("psql")
        .args([
            database.as_str(),
            "-qc",
            "INSERT INTO schema_migrations VALUES (999, 'later')",
        ])
        .status()
        .unwrap();
    assert!(newer.success());
    let refused = migrate();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("schema version 999") && stderr.contains("upgrade agenthost"),
        "{stderr}"
    );
}
