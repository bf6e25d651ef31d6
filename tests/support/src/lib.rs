//! Shared end-to-end test support: the real `agenthost` binary, a mock
//! LLM speaking OpenAI's exact streaming wire format, and helpers.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_agenthost");

/// Where the build put the plugin components, test fixtures included.
pub fn plugin_build_dir() -> PathBuf {
    PathBuf::from(env!("AGENTHOST_PLUGIN_BUILD_DIR"))
}

/// A compile cache shared by every test, so only the first start compiles.
pub fn shared_cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("agenthost-plugin-cache")
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// The `[[mcp_servers]]` entry for the built-in demo server.
pub fn demo_server_toml() -> String {
    format!(
        "[[mcp_servers]]\nid = \"demo\"\nname = \"Demo tools\"\ndescription = \"Clock, arithmetic and notes\"\ntransport = \"stdio\"\ncommand = {BIN:?}\nargs = [\"demo-mcp\"]\n"
    )
}

/// The `[[mcp_servers]]` entry for the third-party Python FastMCP server.
pub fn fastmcp_server_toml(id: &str) -> String {
    let script = fixture("fastmcp_server.py");
    format!(
        "[[mcp_servers]]\nid = \"{id}\"\nname = \"Python text tools\"\ntransport = \"stdio\"\ncommand = \"python3\"\nargs = [{:?}]\ntimeout = 20\n",
        script.display().to_string()
    )
}

/// The real binary, started on a free port with a config of our making.
pub struct Agenthost {
    child: Child,
    pub base: String,
    logs: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Agenthost {
    /// Starts with `config` (TOML) written to a file; `data_dir` defaults
    /// to the shared test cache.
    pub fn start(config: &str) -> Agenthost {
        Self::start_with_env(config, &[])
    }

    /// [`start`](Self::start), with extra environment variables.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Agenthost {
        let dir = tempfile::tempdir().unwrap();
        // Tests share compiled plugins, unless one brings its own cache,
        // but never a database.
        let cache = if config.contains("cache_dir") {
            String::new()
        } else {
            format!(
                "cache_dir = {:?}\n",
                shared_cache_dir().display().to_string()
            )
        };
        let config = if config.contains("data_dir") {
            format!("{cache}{config}")
        } else {
            let data = dir.path().join("data").display().to_string();
            format!("{cache}data_dir = {data:?}\n{config}")
        };
        let path = dir.path().join("agenthost.toml");
        std::fs::write(&path, config).unwrap();
        let mut command = Command::new(BIN);
        command.arg("serve").arg("--config").arg(&path);
        Self::spawn(command, dir, env)
    }

    /// Starts with no config file at all, as a newcomer would.
    pub fn start_with_defaults() -> Agenthost {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(BIN);
        command.arg("serve");
        Self::spawn(command, dir, &[])
    }

    /// Runs with the provider variables of the developer's shell removed,
    /// then `env` added.
    fn spawn(mut command: Command, dir: tempfile::TempDir, env: &[(&str, &str)]) -> Agenthost {
        command
            .args(["--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("ANTHROPIC_BASE_URL")
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Self::spawn_command(command, dir)
    }

    pub fn spawn_command(mut command: Command, dir: tempfile::TempDir) -> Agenthost {
        let mut child = command.spawn().expect("agenthost starts");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = port_tx.send(rest.trim().to_owned());
                }
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let addr = match port_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("agenthost did not start; logs:\n{}", logs.lock().unwrap());
            }
        };
        Agenthost {
            child,
            base: format!("http://{addr}"),
            logs,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) {
        unsafe_kill(self.child.id(), "TERM");
        let _ = self.child.wait();
    }

    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn post(&self, path: &str, body: &str) -> (StatusCode, String) {
        let response = client()
            .post(self.url(path))
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = client().get(self.url(path)).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// `DELETE path`, with an `x-api-key` when given; the body as JSON.
    pub async fn delete(&self, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        let mut request = client().delete(self.url(path));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = request.send().await.unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    pub async fn post_json(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let (status, text) = self.post(path, body).await;
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    }
}

impl Drop for Agenthost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

pub fn client() -> reqwest::Client {
    // reqwest is built without a default TLS crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A `/proc/PID/status` field in KiB, such as `VmRSS:`.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

/// Direct children of `pid` that are alive, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    children_in_state(pid, |state| state != "Z")
}

/// Direct children of `pid` that exited but were not reaped.
pub fn zombies_of(pid: u32) -> Vec<u32> {
    children_in_state(pid, |state| state == "Z")
}

fn children_in_state(pid: u32, wanted: impl Fn(&str) -> bool) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state, ppid, ...
        let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest.to_owned()) else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) && wanted(fields[0]) {
            found.push(child);
        }
    }
    found
}

/// Waits up to 10 s for `pid` to be gone; children go asynchronously.
pub fn wait_until_gone(pid: u32) -> bool {
    let start = std::time::Instant::now();
    while is_running(pid) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    !is_running(pid)
}

pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// One request the mock LLM received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// How the mock answers one request.
pub struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    writes: Vec<String>,
    /// Keep the body open after the writes, sending nothing more.
    hang_after_writes: bool,
    /// Never send even the headers.
    never_answer: bool,
}

impl Reply {
    pub fn stream(writes: Vec<String>) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            writes,
            hang_after_writes: false,
            never_answer: false,
        }
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            ..Reply::stream(vec![body.to_owned()])
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn then_hang(mut self) -> Reply {
        self.hang_after_writes = true;
        self
    }

    pub fn never() -> Reply {
        Reply {
            never_answer: true,
            ..Reply::stream(Vec::new())
        }
    }
}

/// A loopback listener whose connections send each write at once, as a
/// real model API's do; without it every stream would stall on delayed
/// ACKs.
pub async fn nodelay_listener() -> (
    std::net::SocketAddr,
    impl axum::serve::Listener<Addr = std::net::SocketAddr>,
) {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| tcp.set_nodelay(true).unwrap());
    (addr, listener)
}

/// Decides a reply from the request body alone.
pub type Answer = fn(&Value) -> Reply;

struct MockState {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    open: std::sync::atomic::AtomicUsize,
    /// Set for load: replies come from here and nothing is recorded, so
    /// the mock's memory stays flat however many requests it serves.
    answer: Option<Answer>,
    /// The pause before each write.
    pace: Duration,
}

impl MockState {
    fn new(answer: Option<Answer>, pace: Duration) -> MockState {
        MockState {
            script: Mutex::default(),
            requests: Mutex::default(),
            open: Default::default(),
            answer,
            pace,
        }
    }
}

/// Counts a request as open until its response is finished or dropped.
struct OpenGuard(Arc<MockState>);

impl OpenGuard {
    fn new(state: &Arc<MockState>) -> OpenGuard {
        state.open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        OpenGuard(state.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A mock LLM server speaking OpenAI's and Anthropic's streaming wire
/// formats, replaying scripted replies in order.
pub struct MockLlm {
    /// Base URL including `/v1`, as OPENAI_BASE_URL would be.
    pub base_url: String,
    /// Base URL without `/v1`, as ANTHROPIC_BASE_URL would be.
    pub root_url: String,
    state: Arc<MockState>,
}

impl MockLlm {
    pub async fn start() -> MockLlm {
        Self::serve(MockState::new(None, Duration::from_millis(2))).await
    }

    /// A mock that answers every request with `answer`, pausing `pace`
    /// before each write, and records nothing.
    pub async fn answering(answer: Answer, pace: Duration) -> MockLlm {
        Self::serve(MockState::new(Some(answer), pace)).await
    }

    async fn serve(state: MockState) -> MockLlm {
        let state = Arc::new(state);
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .route("/v1/messages", post(completions))
            .with_state(state.clone());
        let (addr, listener) = nodelay_listener().await;
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        MockLlm {
            base_url: format!("http://{addr}/v1"),
            root_url: format!("http://{addr}"),
            state,
        }
    }

    /// Queues a 200 streaming reply, one string per write.
    pub fn respond(&self, writes: Vec<String>) {
        self.reply(Reply::stream(writes));
    }

    pub fn reply(&self, reply: Reply) {
        self.state.script.lock().unwrap().push_back(reply);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests whose response is still open.
    pub fn open_requests(&self) -> usize {
        self.state.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The `[provider]` section pointing agenthost at this mock.
    pub fn provider_toml(&self) -> String {
        format!(
            "[provider]\nplugin = \"openai\"\nbase_url = {:?}\napi_key_env = \"AGENTHOST_TEST_KEY\"\nmodel = \"gpt-4o-mini\"\n",
            self.base_url
        )
    }
}

async fn completions(
    State(state): State<Arc<MockState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let guard = OpenGuard::new(&state);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reply = match state.answer {
        Some(answer) => answer(&body),
        None => {
            state.requests.lock().unwrap().push(Recorded {
                path: uri.path().to_owned(),
                headers,
                body,
            });
            let Some(reply) = state.script.lock().unwrap().pop_front() else {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "mock LLM: no scripted response left",
                )
                    .into_response();
            };
            reply
        }
    };
    if reply.never_answer {
        std::future::pending::<()>().await;
    }
    let hang = reply.hang_after_writes;
    let pace = state.pace;
    let writes = futures::stream::iter(reply.writes).then(move |write| async move {
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        Ok::<_, std::io::Error>(Bytes::from(write))
    });
    let tail = futures::stream::once(async move {
        if hang {
            std::future::pending::<()>().await;
        }
        drop(guard);
        Ok(Bytes::new())
    });
    let mut response = Response::builder().status(reply.status).header(
        "content-type",
        if reply.status == 200 {
            "text/event-stream"
        } else {
            "application/json"
        },
    );
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    response
        .body(Body::from_stream(writes.chain(tail)))
        .unwrap()
}

use futures::StreamExt;

/// One Anthropic SSE event.
pub fn anthropic_event(data: Value) -> String {
    format!(
        "event: {}\ndata: {data}\n\n",
        data["type"].as_str().unwrap()
    )
}

pub fn anthropic_message_start() -> String {
    anthropic_event(json!({ "type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [],
        "model": "claude-test", "stop_reason": null, "usage": { "input_tokens": 10, "output_tokens": 1 } } }))
}

pub fn anthropic_text_block(index: u32, text: &str) -> Vec<String> {
    vec![
        anthropic_event(
            json!({ "type": "content_block_start", "index": index, "content_block": { "type": "text", "text": "" } }),
        ),
        anthropic_event(
            json!({ "type": "content_block_delta", "index": index, "delta": { "type": "text_delta", "text": text } }),
        ),
        anthropic_event(json!({ "type": "content_block_stop", "index": index })),
    ]
}

pub fn anthropic_tool_block(index: u32, id: &str, name: &str, fragments: &[&str]) -> Vec<String> {
    let mut events = vec![anthropic_event(
        json!({ "type": "content_block_start", "index": index,
        "content_block": { "type": "tool_use", "id": id, "name": name, "input": {} } }),
    )];
    for fragment in fragments {
        events.push(anthropic_event(
            json!({ "type": "content_block_delta", "index": index,
            "delta": { "type": "input_json_delta", "partial_json": fragment } }),
        ));
    }
    events.push(anthropic_event(
        json!({ "type": "content_block_stop", "index": index }),
    ));
    events
}

pub fn anthropic_stop(reason: &str) -> Vec<String> {
    vec![
        anthropic_event(
            json!({ "type": "message_delta", "delta": { "stop_reason": reason, "stop_sequence": null },
            "usage": { "output_tokens": 15 } }),
        ),
        anthropic_event(json!({ "type": "message_stop" })),
    ]
}

/// One `chat.completion.chunk` SSE frame.
pub fn chunk(delta: Value, finish_reason: Option<&str>) -> String {
    let chunk = json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
    });
    format!("data: {chunk}\n\n")
}

pub fn role_chunk() -> String {
    chunk(json!({ "role": "assistant", "content": "" }), None)
}

pub fn text_chunk(text: &str) -> String {
    chunk(json!({ "content": text }), None)
}

pub fn tool_start_chunk(index: u32, id: &str, name: &str) -> String {
    chunk(
        json!({ "tool_calls": [{ "index": index, "id": id, "type": "function",
                "function": { "name": name, "arguments": "" } }] }),
        None,
    )
}

pub fn tool_args_chunk(index: u32, fragment: &str) -> String {
    chunk(
        json!({ "tool_calls": [{ "index": index, "function": { "arguments": fragment } }] }),
        None,
    )
}

pub fn finish_chunk(reason: &str) -> String {
    chunk(json!({}), Some(reason))
}

/// Text chunks in a reply to a chat under load.
pub const LOAD_TEXT_CHUNKS: usize = 20;

/// A model for load: a chat with no tool result yet calls
/// `demo__calculate`, arguments split over three chunks; once the result
/// is in, it answers in [`LOAD_TEXT_CHUNKS`] text chunks.
pub fn calculate_then_answer(body: &Value) -> Reply {
    let has_result = body["messages"]
        .as_array()
        .and_then(|messages| messages.last())
        .is_some_and(|last| last["role"] == "tool");
    if has_result {
        text_answer(body)
    } else {
        Reply::stream(vec![
            role_chunk(),
            tool_start_chunk(0, "call_load", "demo__calculate"),
            tool_args_chunk(0, "{\"expr"),
            tool_args_chunk(0, "ession\": \"6*"),
            tool_args_chunk(0, "7\"}"),
            finish_chunk("tool_calls"),
            DONE.into(),
        ])
    }
}

/// A model for load that answers in [`LOAD_TEXT_CHUNKS`] text chunks.
pub fn text_answer(_body: &Value) -> Reply {
    let mut writes = vec![role_chunk()];
    writes.extend((0..LOAD_TEXT_CHUNKS).map(|i| text_chunk(&format!("word{i} "))));
    writes.extend([finish_chunk("stop"), DONE.into()]);
    Reply::stream(writes)
}

pub const DONE: &str = "data: [DONE]\n\n";

/// Splits every frame in two mid-way, so decoders must reassemble lines.
pub fn split_writes(frames: Vec<String>) -> Vec<String> {
    frames
        .into_iter()
        .flat_map(|frame| {
            let mut cut = frame.len() / 2;
            while !frame.is_char_boundary(cut) {
                cut -= 1;
            }
            let (a, b) = frame.split_at(cut);
            [a.to_owned(), b.to_owned()]
        })
        .collect()
}

/// The Python SDK test server on an HTTP transport (`sse` or
/// `streamable-http`), stopped on drop.
pub struct PythonMcpServer {
    child: Child,
    pub port: u16,
    /// Held open so a late print in the fixture never meets a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl PythonMcpServer {
    pub fn start(transport: &str) -> PythonMcpServer {
        Self::start_script("fastmcp_server.py", &["--transport", transport])
    }

    /// A fixture server script, given `args`. The fixture binds a port of
    /// the kernel's choosing and prints it once it listens
    /// (`fixtures/listen.py`).
    pub fn start_script(script: &str, args: &[&str]) -> PythonMcpServer {
        let mut child = Command::new("python3")
            .arg(fixture(script))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{script} printed no port, only {line:?}"));
        PythonMcpServer {
            child,
            port,
            _stdout: stdout,
        }
    }
}

impl Drop for PythonMcpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client program (asynchronously, so mock servers on the test's
/// runtime keep serving), requires success, and parses its JSON output.
pub async fn run_json_client(program: &str, args: &[String]) -> Value {
    let output = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
