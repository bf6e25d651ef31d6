//! MCP servers as sandboxed components (`transport = "wasm"`). The
//! fixture (`plugins/fixtures/wasm-mcp-server`, rmcp built for
//! wasm32-wasip2) has one tool per thing a grant controls: each reaches
//! exactly what its grants name, and a runaway loop or a memory bomb
//! fails its own call while the next chat goes on.

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "sk-components-admin";
const GRANTED_BODY: &str = "hello from a granted host";

fn component() -> String {
    plugin_build_dir()
        .join("wasm_mcp_server.wasm")
        .display()
        .to_string()
}

/// A loopback HTTP server answering every request with `GRANTED_BODY`.
async fn granted_host() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{GRANTED_BODY}",
                GRANTED_BODY.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    port
}

/// A port nothing listens on and nothing grants.
fn ungranted_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn server_toml(granted_dir: &std::path::Path, port: u16) -> String {
    format!(
        r#"[[mcp_servers]]
id = "w"
transport = "wasm"
component = {component:?}
[mcp_servers.grants]
dirs = [{{ host = {dir:?}, guest = "/data" }}]
hosts = ["127.0.0.1:{port}", "169.254.169.254:80"]
env = {{ GREETING = "hi" }}
memory_mb = 32
cpu_ms = 300
"#,
        component = component(),
        dir = granted_dir.display().to_string(),
    )
}

fn host(llm: &MockLlm, granted_dir: &std::path::Path, port: u16) -> Agenthost {
    let config = format!(
        "{}{}[security]\nallow_mcp_networks = [\"127.0.0.1\"]\n[agent]\ntools_wait_secs = 30\n[[api_keys]]\nkey = \"{KEY}\"\norg = \"acme\"\nrole = \"admin\"\n",
        llm.provider_toml(),
        server_toml(granted_dir, port),
    );
    Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test")]).with_key(KEY)
}

/// The text of each result, `ERROR: ` before a failed call's.
fn texts(out: &Value) -> Vec<String> {
    out["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {out}"))
        .iter()
        .map(|result| {
            let text = result["content"][0]["text"].as_str().unwrap_or_default();
            match result["isError"].as_bool() {
                Some(true) => format!("ERROR: {text}"),
                _ => text.to_owned(),
            }
        })
        .collect()
}

#[tokio::test]
async fn a_component_server_reaches_what_it_is_granted_and_nothing_else() {
    let granted = tempfile::tempdir().unwrap();
    std::fs::write(granted.path().join("note.txt"), "granted text").unwrap();
    let secret = tempfile::tempdir().unwrap();
    let secret_file = secret.path().join("secret.txt");
    std::fs::write(&secret_file, "host secret").unwrap();
    let port = granted_host().await;
    let llm = MockLlm::start().await;
    let host = host(&llm, granted.path(), port);

    let calls = json!([
        ["w__read_file", { "path": "/data/note.txt" }],
        ["w__write_file", { "path": "/data/new.txt", "text": "x" }],
        ["w__read_file", { "path": secret_file.display().to_string() }],
        ["w__read_file", { "path": "/data/../../../../etc/hostname" }],
        ["w__fetch", { "url": format!("http://127.0.0.1:{port}/hello") }],
        ["w__fetch", { "url": format!("http://127.0.0.1:{}/", ungranted_port()) }],
        ["w__fetch", { "url": "http://169.254.169.254/latest/meta-data/" }],
        ["w__env", { "name": "GREETING" }],
        ["w__env", { "name": "AGENTHOST_TEST_KEY" }],
        ["w__env", { "name": "PATH" }],
    ]);
    let out = run_mcp_client(&host.url("/mcp/"), KEY, None, &calls).await;
    let texts = texts(&out);

    assert_eq!(texts[0], "granted text", "{out}");
    assert!(
        texts[1].starts_with("ERROR: cannot write /data/new.txt"),
        "a read-only grant: {}",
        texts[1]
    );
    assert!(!granted.path().join("new.txt").exists());
    assert!(texts[2].starts_with("ERROR: cannot read"), "{}", texts[2]);
    assert!(texts[3].starts_with("ERROR: cannot read"), "{}", texts[3]);
    assert_eq!(texts[4], format!("200: {GRANTED_BODY}"));
    assert!(texts[5].contains("HttpRequestDenied"), "{}", texts[5]);
    assert!(texts[6].contains("DestinationIpProhibited"), "{}", texts[6]);
    assert_eq!(texts[7], "GREETING=hi");
    assert_eq!(texts[8], "ERROR: AGENTHOST_TEST_KEY is not set");
    assert_eq!(texts[9], "ERROR: PATH is not set");

    let logs = host.logs();
    assert!(
        logs.contains("is not in its grants.hosts") && logs.contains("169.254.169.254"),
        "the host says why it refused, under the server's id: {logs}"
    );

    // Grants are the operator's: not even an admin key registers a
    // component server at run time; the seed's three transports are all.
    let spec = json!([{ "name": "w2", "transport": "wasm", "component": component() }]);
    let (status, body) = host.post_json("/servers", &spec.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// The last tool message the model was given in request `index`: the
/// conversation keeps the earlier chats' ones before it.
fn last_tool_message(llm: &MockLlm, index: usize) -> String {
    let requests = llm.requests();
    let messages = requests[index].body["messages"].as_array().unwrap();
    let tool = messages.iter().rev().find(|m| m["role"] == "tool");
    tool.map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("no tool message in request {index}"))
}

/// One chat whose model calls `tool` of the component once.
async fn chat_calling(host: &Agenthost, llm: &MockLlm, tool: &str, arguments: &str) {
    llm.respond(vec![
        role_chunk(),
        tool_start_chunk(0, "call_1", tool),
        tool_args_chunk(0, arguments),
        finish_chunk("tool_calls"),
        DONE.into(),
    ]);
    llm.respond(vec![text_chunk("Done."), finish_chunk("stop"), DONE.into()]);
    let (status, body) = host.post("/chat/stream", r#"{"message": "Go"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("Done."),
        "the chat reached its answer: {body}"
    );
}

#[tokio::test]
async fn a_runaway_loop_and_a_memory_bomb_fail_their_own_call_and_the_next_chat_works() {
    let granted = tempfile::tempdir().unwrap();
    let llm = MockLlm::start().await;
    let host = host(&llm, granted.path(), granted_host().await);
    let (status, connected) = host.post_json("/connect/w", "").await;
    assert_eq!(status, StatusCode::OK, "{connected}");

    chat_calling(&host, &llm, "w__spin", "{}").await;
    let spun = last_tool_message(&llm, 1);
    assert!(
        spun.contains(
            "the component was stopped: it used more than its 300 ms of CPU time on a tool call"
        ),
        "{spun}"
    );

    chat_calling(&host, &llm, "w__hog", "{}").await;
    let hogged = last_tool_message(&llm, 3);
    assert!(
        hogged.contains("the component was stopped: memory limit of 32 MiB exceeded"),
        "{hogged}"
    );

    chat_calling(&host, &llm, "w__echo", r#"{"text": "still here"}"#).await;
    assert_eq!(last_tool_message(&llm, 5), "still here");
}

#[test]
fn plugin_check_lists_a_component_servers_imports_and_the_grants_they_use() {
    let output = std::process::Command::new(bin())
        .args(["plugin", "check", &component()])
        .output()
        .unwrap();
    let checked = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{checked}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        checked.starts_with(
            "kind:        MCP server (a wasi:cli command, for transport = \"wasm\")\n"
        ),
        "{checked}"
    );
    assert!(
        checked.contains("wasi:http/outgoing-handler@0.2."),
        "{checked}"
    );
    for grant in [
        "grants.dirs (files)",
        "grants.hosts (outgoing HTTP)",
        "grants.env (variables)",
    ] {
        assert!(checked.contains(grant), "{grant}: {checked}");
    }
    assert!(
        checked.ends_with("result:      the host can run it\n"),
        "{checked}"
    );
}
