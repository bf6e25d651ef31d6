//! End-to-end: hostile plugins are stopped by the sandbox's limits and
//! fail only their own stream; bad components are refused at load.

mod support;

use reqwest::StatusCode;
use support::*;

/// An empty but valid component: it implements no world.
const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

fn hostile_plugins_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for fixture in ["fixture_runaway.wasm", "fixture_memory_hog.wasm"] {
        std::fs::copy(plugin_build_dir().join(fixture), dir.path().join(fixture)).unwrap();
    }
    std::fs::write(dir.path().join("empty.wasm"), EMPTY_COMPONENT).unwrap();
    std::fs::write(dir.path().join("garbage.wasm"), b"not wasm at all").unwrap();
    dir
}

async fn stream(host: &Agenthost, format: &str) -> (StatusCode, String) {
    let path = match format {
        "" => "/chat/stream".to_owned(),
        format => format!("/chat/stream?format={format}"),
    };
    host.post(&path, r#"{"message": "What is 6*7?"}"#).await
}

const GOOD_STREAM: &str = concat!(
    "data: {\"type\": \"tool_start\", \"id\": \"call_1\", \"name\": \"calculate\", \"args\": {\"expression\": \"6*7\"}}\n\n",
    "data: {\"type\": \"tool_end\", \"id\": \"call_1\", \"name\": \"calculate\"}\n\n",
    "data: {\"type\": \"text\", \"content\": \"calculate \"}\n\n",
    "data: {\"type\": \"text\", \"content\": \"returned: \"}\n\n",
    "data: {\"type\": \"text\", \"content\": \"42.\"}\n\n",
    "data: [DONE]\n\n",
);

#[tokio::test]
async fn hostile_plugins_fail_only_their_own_stream() {
    let plugins = hostile_plugins_dir();
    let config = format!(
        "plugins_dir = {:?}\n[limits]\nplugin_call_timeout_ms = 250\nplugin_memory_mb = 32\n{}",
        plugins.path().display().to_string(),
        demo_server_toml()
    );
    let host = Agenthost::start(&config);
    let logs = host.logs();
    let empty = plugins.path().join("empty.wasm");
    assert!(
        logs.contains(&format!(
            "refused plugin {}: it exports neither agenthost:plugin/provider-api@0.1.0 (a provider) nor agenthost:plugin/encoder-api@0.1.0 (an encoder); it exports: nothing",
            empty.display()
        )),
        "{logs}"
    );
    let garbage = plugins.path().join("garbage.wasm");
    assert!(
        logs.contains(&format!(
            "refused plugin {}: not a valid WebAssembly component",
            garbage.display()
        )),
        "{logs}"
    );
    host.post("/connect/demo", "").await;

    // Each hostile stream runs beside a normal one on the same server.
    let (runaway, normal) = tokio::join!(stream(&host, "test-runaway"), stream(&host, ""));
    assert_eq!(runaway.0, StatusCode::OK);
    assert_eq!(
        runaway.1,
        "data: [ERROR] plugin `test-runaway` exceeded its 250 ms deadline and was stopped\n\n"
    );
    assert_eq!(normal.1, GOOD_STREAM);

    let (hog, normal) = tokio::join!(stream(&host, "test-memory-hog"), stream(&host, ""));
    assert!(
        hog.1
            .starts_with("data: [ERROR] plugin `test-memory-hog` crashed: "),
        "{}",
        hog.1
    );
    assert!(
        hog.1.contains("memory limit of 32 MiB exceeded"),
        "{}",
        hog.1
    );
    assert_eq!(normal.1, GOOD_STREAM);

    // And the server keeps serving afterwards.
    assert_eq!(stream(&host, "").await.1, GOOD_STREAM);
}
