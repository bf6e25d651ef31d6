//! The official MCP conformance suite (`@modelcontextprotocol/conformance`
//! 0.1.13): its server scenarios against `/mcp/`, fronting a reference
//! server that implements the suite's test tools, resources and prompts
//! (`fixtures/conformance_server.py`) with `tool_prefix = false`; and its
//! client scenarios with agenthost's pool as the client, driven by
//! `fixtures/conformance_client.py`. The suite fails a run on a scenario
//! that fails outside `tests/conformance-baseline.yml`, and on one in it
//! that passes.

use std::path::{Path, PathBuf};
use std::process::Output;

use testkit::*;

const KEY: &str = "sk-conformance-admin";

fn baseline() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance-baseline.yml")
}

/// Runs the suite with `args` and the baseline, saving its results in a
/// directory of its own; requires it to pass and returns its summary.
async fn run_suite(args: &[&str]) -> String {
    let results = tempfile::tempdir().unwrap();
    let suite = fixture("node/node_modules/.bin/conformance");
    let Output {
        status,
        stdout,
        stderr,
    } = tokio::process::Command::new(&suite)
        .args(args)
        .arg("--expected-failures")
        .arg(baseline())
        .arg("--output-dir")
        .arg(results.path())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{} does not run: {e}", suite.display()));
    let stdout = String::from_utf8_lossy(&stdout);
    let summary = stdout.rsplit("SUMMARY ===").next().unwrap_or_default();
    assert!(
        status.success(),
        "the suite failed a scenario outside the baseline, or passed one in it:\n{summary}\n{}",
        String::from_utf8_lossy(&stderr)
    );
    summary.to_owned()
}

#[tokio::test]
async fn the_conformance_suites_server_scenarios_pass_against_mcp() {
    let config = format!(
        "[[mcp_servers]]\nid = \"reference\"\ntransport = \"stdio\"\ncommand = \"python3\"\nargs = [{:?}]\ntool_prefix = false\ntimeout = 20\n[agent]\ntools_wait_secs = 60\n[[api_keys]]\nkey = \"{KEY}\"\norg = \"acme\"\nrole = \"admin\"\n",
        fixture("conformance_server.py").display().to_string()
    );
    let host = Agenthost::start(&config);
    // The suite sends no key of its own; the proxy adds it.
    let proxy = FixtureServer::start_with("node", "node/key_proxy.mjs", &[&host.base, KEY]);
    let url = format!("http://localhost:{}/mcp/", proxy.port);
    let summary = run_suite(&["server", "--url", &url]).await;
    // The counts the README records.
    assert!(summary.contains("Total: 24 passed, 8 failed"), "{summary}");
}

#[tokio::test]
async fn the_conformance_suites_client_scenarios_pass_with_the_pool_as_the_client() {
    // Local mode: the driver registers each scenario's server, as the
    // MCP Chat API's own flow does, and chats to call its tools.
    let host = Agenthost::start("mcp_servers = []\n");
    let driver = format!(
        "python3 {} {}",
        fixture("conformance_client.py").display(),
        host.base
    );
    let summary = run_suite(&["client", "--suite", "all", "--command", &driver]).await;
    for passing in [
        "initialize",
        "tools_call",
        "sse-retry",
        "auth/resource-mismatch",
    ] {
        assert!(
            summary.contains(&format!("\u{2713} {passing}: ")),
            "{summary}"
        );
    }
    // The counts the README records.
    assert!(summary.contains("Total: 6 passed, 50 failed"), "{summary}");
}
