//! The plugin developer's path of `plugins/README.md`, step
//! by step, through the real binary: `plugin new`, `cargo build`, `plugin
//! check`, `plugin test`, install with SIGHUP, `plugin list`, use with
//! `?format=`, a broken update refused while the old version serves, and
//! built-ins replaced only when the config says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use testkit::*;

/// Runs `agenthost <args>`, requiring success; returns stdout.
fn agenthost(args: &[&str], dir: &Path) -> String {
    let output = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "agenthost {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Shares the built-in plugins' target directory, so the SDK's
/// dependencies are compiled once.
fn target_dir() -> PathBuf {
    plugin_build_dir().ancestors().nth(2).unwrap().to_path_buf()
}

/// `plugin new NAME`, then `cargo build --release` in the new crate, as
/// the walk-through says; returns the component.
fn create_and_build(name: &str, dir: &Path) -> PathBuf {
    let created = agenthost(&["plugin", "new", name], dir);
    assert!(
        created.starts_with(&format!("created ./{name}")),
        "{created}"
    );
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet"])
        .current_dir(dir.join(name))
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .unwrap();
    assert!(status.success(), "the new plugin {name} builds");
    target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")))
}

async fn stream(host: &Agenthost, format: &str) -> (StatusCode, String, String) {
    let response = client()
        .post(host.url(&format!("/chat/stream{format}")))
        .body(r#"{"message": "what is 6*7?", "model": "mock/offline"}"#)
        .send()
        .await
        .unwrap();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status(), kind, body_text(response).await)
}

/// The server, with the mock LLM as its default provider (the offline
/// mock answers `mock/...` models).
fn start(plugins_dir: &Path, llm: &MockLlm, extra: &str) -> Agenthost {
    Agenthost::start_with_env(
        &format!(
            "plugins_dir = {:?}\n{extra}\n{}\n{}",
            plugins_dir.display().to_string(),
            llm.provider_toml(),
            demo_server_toml()
        ),
        &[("AGENTHOST_TEST_KEY", "sk-test-key-123")],
    )
}

async fn wait_for_plugin(host: &Agenthost, name: &str, dir: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = agenthost(&["plugin", "list", "--url", &host.base], dir);
        if listed.lines().any(|l| l.starts_with(name)) || Instant::now() > deadline {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_new_format_goes_from_plugin_new_to_served_without_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let plugins_dir = work.path().join("plugins.d");
    std::fs::create_dir(&plugins_dir).unwrap();

    // 1-3: create, build, check, test.
    let wasm = create_and_build("ndjson-events", work.path());
    let wasm_arg = wasm.display().to_string();
    let checked = agenthost(&["plugin", "check", &wasm_arg], work.path());
    assert!(
        checked.contains("name:        ndjson-events\nkind:        encoder\n"),
        "{checked}"
    );
    assert!(
        checked.contains("contract:    agenthost:plugin/encoder-api@0.2.0"),
        "{checked}"
    );
    assert!(
        checked.ends_with("result:      the host loads it\n"),
        "{checked}"
    );
    let tested = agenthost(&["plugin", "test", &wasm_arg], work.path());
    assert!(tested.ends_with("5 checks passed\n"), "{tested}");

    // 4: install into a running server with SIGHUP.
    let llm = MockLlm::start().await;
    let host = start(&plugins_dir, &llm, "");
    host.post_json("/connect/demo", "").await;
    let (status, _, body) = stream(&host, "?format=ndjson-events").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    std::fs::copy(&wasm, plugins_dir.join("ndjson_events.wasm")).unwrap();
    Command::new("kill")
        .args(["-HUP", &host.pid().to_string()])
        .status()
        .unwrap();
    let listed = wait_for_plugin(&host, "ndjson-events", work.path()).await;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("ndjson-events  encoder  0.1.0")),
        "{listed}"
    );
    assert!(
        listed.contains("simple "),
        "built-ins are listed too: {listed}"
    );

    // 5: use it.
    let (status, kind, body) = stream(&host, "?format=ndjson-events").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(kind, "application/x-ndjson");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "tool_call");
    assert_eq!(lines[0]["name"], "demo__calculate");
    assert_eq!(lines[1]["type"], "tool_result");
    assert_eq!(lines.last().unwrap()["type"], "done");

    // A stream in flight keeps its instance while a reload replaces the
    // plugin under it.
    let mut writes = vec![role_chunk()];
    writes.extend((0..300).map(|_| text_chunk("x")));
    writes.extend([finish_chunk("stop"), DONE.into()]);
    llm.respond(writes);
    let mut response = client()
        .post(host.url("/chat/stream?format=ndjson-events"))
        .body(r#"{"message": "long answer"}"#)
        .send()
        .await
        .unwrap();
    let mut received = response.chunk().await.unwrap().unwrap().to_vec();
    let (_, report) = host.post_json("/admin/plugins/reload", "").await;
    assert_eq!(report["loaded"][0]["name"], "ndjson-events", "{report}");
    while let Some(chunk) = response.chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
    }
    let received = String::from_utf8(received).unwrap();
    assert_eq!(
        received.matches(r#"{"type":"text","text":"x"}"#).count(),
        300
    );
    assert!(received.ends_with("{\"type\":\"done\"}\n"), "{received}");

    // A broken update is refused; the loaded version keeps serving.
    std::fs::write(plugins_dir.join("ndjson_events.wasm"), b"\0asm broken").unwrap();
    let (status, report) = host.post_json("/admin/plugins/reload", "").await;
    assert_eq!(status, StatusCode::OK);
    let refused = report["refused"][0]["error"].as_str().unwrap();
    assert!(
        refused.contains("not a valid WebAssembly component"),
        "{report}"
    );
    let (status, _, body) = stream(&host, "?format=ndjson-events").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.ends_with("{\"type\":\"done\"}\n"), "{body}");

    // A plugin named like a built-in replaces it only when the config says so.
    let imposter = create_and_build("simple", work.path());
    std::fs::remove_file(plugins_dir.join("ndjson_events.wasm")).unwrap();
    std::fs::copy(&imposter, plugins_dir.join("simple.wasm")).unwrap();
    let (_, report) = host.post_json("/admin/plugins/reload", "").await;
    assert_eq!(
        report["refused"][0]["error"],
        format!(
            "refused plugin {}: a built-in plugin is named `simple`; list it in `replace_builtin_plugins` to let a plugin replace it",
            plugins_dir.join("simple.wasm").display()
        )
    );
    let (_, kind, _) = stream(&host, "").await;
    assert_eq!(kind, "text/event-stream");
    drop(host);
    let host = start(&plugins_dir, &llm, "replace_builtin_plugins = [\"simple\"]");
    host.post_json("/connect/demo", "").await;
    let (status, kind, body) = stream(&host, "").await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::OK, "application/x-ndjson"),
        "{body}"
    );
}

/// The WIT, not our Rust, is the contract: an encoder written in Python
/// with componentize-py passes the same conformance suite.
#[test]
fn a_python_encoder_passes_the_conformance_suite() {
    let work = tempfile::tempdir().unwrap();
    let wasm = work.path().join("python_jsonl.wasm");
    let example =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/python-jsonl");
    let status = Command::new(example.join("build.sh"))
        .arg(&wasm)
        .status()
        .expect("componentize-py is installed (tests/requirements.txt)");
    assert!(status.success(), "the Python plugin builds");
    let wasm_arg = wasm.display().to_string();
    let tested = agenthost(&["plugin", "test", &wasm_arg], work.path());
    assert!(tested.ends_with("5 checks passed\n"), "{tested}");
}

/// A plugin built against the frozen contract 0.1.0 still loads, says so
/// in `plugin check`, and serves beside the current built-ins, which get
/// the events 0.1.0 does not have while it does not.
#[tokio::test]
async fn a_plugin_built_against_contract_0_1_still_loads_and_serves() {
    let plugins = tempfile::tempdir().unwrap();
    let fixture = plugins.path().join("fixture_contract_0_1.wasm");
    std::fs::copy(
        plugin_build_dir().join("fixture_contract_0_1.wasm"),
        &fixture,
    )
    .unwrap();
    let checked = agenthost(
        &["plugin", "check", &fixture.display().to_string()],
        plugins.path(),
    );
    assert!(
        checked.contains("contract:    agenthost:plugin/encoder-api@0.1.0")
            && checked.contains("imports:     agenthost:plugin/types@0.1.0"),
        "{checked}"
    );

    let llm = MockLlm::start().await;
    let config = format!(
        "plugins_dir = {:?}\n{}\n{}",
        plugins.path().display().to_string(),
        llm.provider_toml(),
        demo_server_toml()
    );
    let host = Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-test-key-123")]);
    host.post("/connect/demo", "").await;
    for _ in 0..2 {
        llm.respond(vec![
            role_chunk(),
            tool_start_chunk(0, "call_a", "demo__calculate"),
            tool_args_chunk(0, "{\"expression\": \"6*7\"}"),
            finish_chunk("tool_calls"),
            DONE.into(),
        ]);
        llm.respond(vec![
            text_chunk("It is 42."),
            finish_chunk("stop"),
            DONE.into(),
        ]);
    }
    let (status, old) = host
        .post(
            "/chat/stream?format=contract-0-1",
            r#"{"message": "What is 6*7?"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{old}");
    assert_eq!(
        old,
        "call demo__calculate {\"expression\": \"6*7\"}\nresult demo__calculate error=false\ntext It is 42.\ndone 2 turns, asked for gpt-4o-mini\n"
    );
    // The same chat in a current format names the model the provider
    // reported, which the 0.1.0 encoder never saw.
    let (status, current) = host
        .post(
            "/chat/stream?format=truefoundry",
            r#"{"message": "What is 6*7?"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{current}");
    assert!(
        current.contains(r#""model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_44709d6fcb""#),
        "{current}"
    );
}

/// A provider built against contract 0.1.0 gets its requests in 0.1.0's
/// types and its events are read back into the current ones.
#[tokio::test]
async fn a_provider_built_against_contract_0_1_still_answers() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        plugin_build_dir().join("fixture_contract_0_1_provider.wasm"),
        plugins.path().join("legacy.wasm"),
    )
    .unwrap();
    let config = format!(
        "plugins_dir = {:?}\n[provider]\nplugin = \"legacy-echo\"\nmodel = \"old-model\"\n{}",
        plugins.path().display().to_string(),
        demo_server_toml()
    );
    let host = Agenthost::start(&config);
    host.post("/connect/demo", "").await;
    let (status, body) = host.post("/chat/stream", r#"{"message": "hello"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        "data: {\"type\": \"text\", \"content\": \"legacy old-model heard: hello (5 tools)\"}\n\ndata: [DONE]\n\n"
    );
}
