//! Hostile plugins are stopped by the sandbox's limits and
//! fail only their own stream; bad components are refused at load; a
//! plugin that tries files and sockets reaches nothing.

use reqwest::StatusCode;
use testkit::*;
use wasm_encoder::{
    Component, ComponentExportKind, ComponentExportSection, ComponentImportSection,
    ComponentTypeRef, ComponentTypeSection, InstanceType,
};

/// An empty but valid component: it implements no world.
const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

const HOSTILE_FIXTURES: [&str; 5] = [
    "fixture_runaway.wasm",
    "fixture_memory_hog.wasm",
    "fixture_trap.wasm",
    "fixture_output_flood.wasm",
    "fixture_future_version.wasm",
];

/// A component that claims the encoder export but imports an interface
/// no host grants: it must be refused by that import's name.
fn undeclared_import_component() -> Vec<u8> {
    let mut types = ComponentTypeSection::new();
    types.instance(&InstanceType::new());
    let mut imports = ComponentImportSection::new();
    imports.import("acme:shell/exec@1.0.0", ComponentTypeRef::Instance(0));
    let mut exports = ComponentExportSection::new();
    exports.export(
        "agenthost:plugin/encoder-api@0.1.0",
        ComponentExportKind::Instance,
        0,
        None,
    );
    let mut component = Component::new();
    component
        .section(&types)
        .section(&imports)
        .section(&exports);
    component.finish()
}

fn hostile_plugins_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for fixture in HOSTILE_FIXTURES {
        std::fs::copy(plugin_build_dir().join(fixture), dir.path().join(fixture)).unwrap();
    }
    std::fs::write(dir.path().join("empty.wasm"), EMPTY_COMPONENT).unwrap();
    std::fs::write(dir.path().join("garbage.wasm"), b"not wasm at all").unwrap();
    std::fs::write(
        dir.path().join("undeclared_import.wasm"),
        undeclared_import_component(),
    )
    .unwrap();
    dir
}

/// The server's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn stream(host: &Agenthost, format: &str) -> (StatusCode, String) {
    let path = match format {
        "" => "/chat/stream".to_owned(),
        format => format!("/chat/stream?format={format}"),
    };
    host.post(&path, r#"{"message": "What is 6*7?"}"#).await
}

/// The stream of the simple format when nothing goes wrong.
const GOOD_STREAM: &str = "simple/mock_calculate.sse";

#[tokio::test]
async fn bad_components_are_refused_at_load_by_what_is_wrong() {
    let plugins = hostile_plugins_dir();
    let config = format!(
        "plugins_dir = {:?}\n{}",
        plugins.path().display().to_string(),
        demo_server_toml()
    );
    let host = Agenthost::start(&config);
    let logs = host.logs();
    let refused = |file: &str, reason: &str| {
        let line = format!(
            "refused plugin {}: {reason}",
            plugins.path().join(file).display()
        );
        assert!(logs.contains(&line), "missing: {line}\n{logs}");
    };
    refused(
        "empty.wasm",
        "it exports neither agenthost:plugin/provider-api@0.2.0 (a provider) nor agenthost:plugin/encoder-api@0.2.0 (an encoder), nor either at 0.1.0; it exports: nothing",
    );
    refused("garbage.wasm", "not a valid WebAssembly component");
    refused(
        "fixture_future_version.wasm",
        "it was built against a WIT version this host does not support (it exports agenthost:plugin/encoder-api@0.3.0); this host supports agenthost:plugin 0.2.0 and 0.1.0",
    );
    refused(
        "undeclared_import.wasm",
        "it imports acme:shell/exec@1.0.0 (an interface this host does not provide), which the host does not grant: plugins get no network and no files",
    );
    // The server serves with what did load.
    host.post("/connect/demo", "").await;
    assert_golden(GOOD_STREAM, &stream(&host, "").await.1);
}

#[tokio::test]
async fn hostile_plugins_fail_only_their_own_stream_and_leave_no_memory_behind() {
    let plugins = hostile_plugins_dir();
    let config = format!(
        "plugins_dir = {:?}\n[limits]\nplugin_call_timeout_ms = 1000\nplugin_memory_mb = 32\nplugin_output_mb = 4\n{}",
        plugins.path().display().to_string(),
        demo_server_toml()
    );
    let host = Agenthost::start(&config);
    host.post("/connect/demo", "").await;
    // Warm up every path once before taking the baseline.
    assert_golden(GOOD_STREAM, &stream(&host, "").await.1);
    let baseline = rss_kib(host.pid());

    // Each hostile stream runs beside a normal one on the same server,
    // five times over: a leak of one instance's memory would show. (The
    // deadline leaves room for a debug build copying megabytes.)
    for _ in 0..5 {
        let (runaway, normal) = tokio::join!(stream(&host, "test-runaway"), stream(&host, ""));
        assert_eq!(runaway.0, StatusCode::OK);
        assert_eq!(
            runaway.1,
            "data: [ERROR] plugin `test-runaway` exceeded its 1000 ms deadline and was stopped\n\n"
        );
        assert_golden(GOOD_STREAM, &normal.1);

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
        assert_golden(GOOD_STREAM, &normal.1);

        let (trap, normal) = tokio::join!(stream(&host, "test-trap"), stream(&host, ""));
        assert!(
            trap.1
                .starts_with("data: [ERROR] plugin `test-trap` crashed: "),
            "{}",
            trap.1
        );
        assert!(
            trap.1.ends_with("\n\n") && trap.1.lines().count() == 2,
            "{}",
            trap.1
        );
        assert_golden(GOOD_STREAM, &normal.1);

        let (flood, normal) = tokio::join!(stream(&host, "test-output-flood"), stream(&host, ""));
        assert_eq!(
            flood.1,
            "data: [ERROR] plugin `test-output-flood` produced more than its 4 MiB of output and was stopped\n\n"
        );
        assert_golden(GOOD_STREAM, &normal.1);
    }

    // And the server keeps serving, its memory back near the baseline:
    // five runs of any hostile plugin's 8 to 32 MiB, had they leaked,
    // would be far over this margin.
    assert_golden(GOOD_STREAM, &stream(&host, "").await.1);
    let after = rss_kib(host.pid());
    assert!(
        after < baseline + 24 * 1024,
        "RSS grew from {baseline} KiB to {after} KiB"
    );
}

#[tokio::test]
async fn a_plugin_that_tries_files_and_sockets_reaches_nothing() {
    let llm = MockLlm::start().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    llm.respond(vec![
        text_chunk(&address),
        finish_chunk("stop"),
        DONE.into(),
    ]);
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        plugin_build_dir().join("fixture_prober.wasm"),
        plugins.path().join("prober.wasm"),
    )
    .unwrap();
    let config = format!(
        "plugins_dir = {:?}\n{}\n{}",
        plugins.path().display().to_string(),
        llm.provider_toml(),
        demo_server_toml()
    );
    let host = Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-probe-secret")]);
    host.post("/connect/demo", "").await;

    let (status, body) = stream(&host, "test-prober").await;
    assert_eq!(status, StatusCode::OK);
    let report: Vec<&str> = body.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(report.len(), 9, "{body}");
    for line in &report[..8] {
        assert!(line.contains(": denied ("), "{line}");
    }
    assert_eq!(report[8], "data: env: 0 vars, args: 0");
    assert!(listener.accept().is_err(), "the plugin connected out");
    assert!(!std::path::Path::new("/tmp/escaped").exists());
}
