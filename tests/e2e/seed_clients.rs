//! The seeds' own example clients, run unmodified against the binary:
//! seed 002's Python OpenAI-SDK client on the TrueFoundry surface, and
//! seed 004's JavaScript `fetch` and `EventSource` examples on the MCP
//! Chat API. Their code is kept verbatim in `tests/fixtures/seed_clients`;
//! only the placeholders the seeds ask a reader to fill in (base URL, API
//! token, session id) are filled in.

use std::path::{Path, PathBuf};

use serde_json::json;
use testkit::*;

const TFY_KEY: &str = "sk-tfy-member-0001";
/// The integration the seed's client names.
const SLACK_FQN: &str = "truefoundry:hosted-mcp-server:hosted-devtest-mcp-servers:mcp-server:slack";

fn seed_client(name: &str) -> String {
    std::fs::read_to_string(fixture("seed_clients").join(name)).unwrap()
}

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/seeds")
}

/// The copies are the seeds' code, byte for byte (checked where the seeds
/// are beside the repository, as in CI).
#[test]
fn the_seed_clients_are_the_seeds_code_verbatim() {
    let dir = seeds_dir();
    if !dir.is_dir() {
        eprintln!("no seeds at {}: nothing to compare", dir.display());
        return;
    }
    for (seed, copy) in [
        ("002_495b74c8b2d1a9b0.txt", "truefoundry_openai_client.py"),
        ("004_18d13515e0b9e50a.txt", "mcp_chat_fetch.js"),
        ("004_18d13515e0b9e50a.txt", "mcp_chat_eventsource.js"),
    ] {
        let seed = std::fs::read_to_string(dir.join(seed)).unwrap();
        assert!(
            seed.contains(&seed_client(copy)),
            "{copy} differs from {seed}"
        );
    }
}

#[tokio::test]
async fn the_seed_openai_client_runs_unmodified_on_the_truefoundry_surface() {
    let llm = MockLlm::start().await;
    let config = format!(
        "{}\n[[api_keys]]\nkey = \"{TFY_KEY}\"\norg = \"acme\"\nrole = \"member\"\n\
         [[mcp_servers]]\nid = \"slack\"\nintegration_fqn = \"{SLACK_FQN}\"\ntransport = \"stdio\"\ncommand = \"python3\"\nargs = [{:?}]\n",
        llm.provider_toml(),
        fixture("slack_mcp_server.py").display().to_string()
    );
    let host = Agenthost::start(&config);
    llm.respond(vec![
        tool_start_chunk(0, "call_slack", "slack__getSlackUsers"),
        tool_args_chunk(0, "{}"),
        finish_chunk("tool_calls"),
        DONE.into(),
    ]);
    llm.respond(vec![
        role_chunk(),
        text_chunk("User Name"),
        text_chunk(" is a Slack user with the email user@example.com."),
        finish_chunk("stop"),
        DONE.into(),
    ]);
    let code = seed_client("truefoundry_openai_client.py")
        .replace("https://your-gateway-url", &host.url("/api/llm"))
        .replace("your-tfy-api-token", TFY_KEY);
    let printed = run_client("python3", &["-c", &code], Path::new(".")).await;
    assert_golden("seed_clients/truefoundry_openai_client.txt", &printed);

    // What the seed's client asked for reached the model.
    let sent = &llm.requests()[0].body;
    assert_eq!(sent["model"], "gpt-4o");
    assert_eq!(
        sent["messages"],
        json!([{ "role": "user", "content": "Your message" }])
    );
    let mut tools: Vec<&str> = sent["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    tools.sort();
    assert_eq!(tools, ["slack__findUserByEmail", "slack__getSlackUsers"]);
}

#[tokio::test]
async fn the_seed_fetch_and_eventsource_examples_run_unmodified_on_the_mcp_chat_api() {
    let host = Agenthost::start("mcp_servers = []\n");
    let (_, session) = host.post_json("/sessions", "").await;
    let session = session["session_id"].as_str().unwrap();
    // Node has `fetch`; `EventSource` is the browser's, from a package.
    let prelude = format!(
        "import {{ EventSource }} from \"eventsource\";\nglobalThis.EventSource = EventSource;\nconst sessionId = {session:?};\n"
    );
    let node_dir = fixture("node");
    let mut printed = String::new();
    for example in ["mcp_chat_fetch.js", "mcp_chat_eventsource.js"] {
        let code =
            prelude.clone() + &seed_client(example).replace("http://localhost:8000", &host.url(""));
        printed += &run_client("node", &["--input-type=module", "-e", &code], &node_dir).await;
    }
    assert_eq!(printed, "You said: Hello!\nYou said: Hello!\nDone!\n");
    let (_, history) = host.get(&format!("/sessions/{session}/history")).await;
    assert_eq!(history.as_array().unwrap().len(), 4, "{history}");
}
