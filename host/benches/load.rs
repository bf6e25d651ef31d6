//! End-to-end load, open streams, MCP round trips and start-up, against
//! the release binary on loopback. Bounded in count and time; prints
//! Markdown tables for BENCHMARKS.md.
//!
//! `cargo bench --bench load` runs everything; name sections to run fewer:
//! `cargo bench --bench load -- chats cpu streams mcp startup replicas`. To profile
//! some chat targets alone, name them (case-insensitive substrings, comma
//! separated) in `BENCH_TARGETS`, e.g. `BENCH_TARGETS=passthrough,feather`.
//!
//! Every end-to-end figure of one section comes from the same run, so the
//! ratios between targets hold even on a noisy machine. To compare a
//! change with the build before it, name that build's binary in
//! `BENCH_BASELINE`: each agenthost chat target is then measured against
//! it too, right after its own run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenthost::config::McpServerConfig;
use agenthost::mcp::{McpPool, UrlPolicy};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use testkit::postgres::Cluster;
use testkit::*;

/// Clients sending chats at once in the throughput runs.
const CONCURRENCY: usize = 32;
/// Chats per second in the fixed-rate run: well under what any target
/// sustains here, so its latency is the path's and not a queue's.
const FIXED_RATE: u32 = 1000;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);
const ADMIN_KEY: &str = "sk-bench-admin";

fn main() {
    let sections: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| sections.is_empty() || sections.iter().any(|s| s == name);
    agenthost::server::raise_open_file_limit();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    if wanted("chats") {
        rt.block_on(chats());
    }
    if wanted("cpu") {
        rt.block_on(cpu_against_baseline());
    }
    if wanted("streams") {
        rt.block_on(open_streams());
    }
    if wanted("mcp") {
        rt.block_on(mcp_round_trips());
    }
    if wanted("startup") {
        startup();
    }
    if wanted("replicas") {
        rt.block_on(replica_propagation());
    }
}

/// The config for agenthost against `llm`, with the demo server and an
/// admin key.
fn config(llm: &MockLlm) -> String {
    format!(
        "{}\n[[api_keys]]\nkey = \"{ADMIN_KEY}\"\norg = \"bench\"\nrole = \"admin\"\n{}",
        llm.provider_toml(),
        demo_server_toml()
    )
}

async fn start_agenthost(llm: &MockLlm, binary: &Path) -> Agenthost {
    start_agenthost_on(llm, binary, "").await
}

/// [`start_agenthost`], with top-level config before the rest (a
/// `database_url`).
async fn start_agenthost_on(llm: &MockLlm, binary: &Path, first: &str) -> Agenthost {
    let host = Agenthost::start_binary(
        binary,
        &format!("{first}{}", config(llm)),
        &[("AGENTHOST_TEST_KEY", "sk-bench")],
    );
    let response = client()
        .post(host.url("/connect/demo"))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    host
}

/// One way of sending a chat.
#[derive(Clone)]
struct Target {
    name: String,
    url: String,
    /// Sent as a POST body; `None` sends a GET.
    body: Option<String>,
    headers: Vec<(&'static str, String)>,
    /// MCP Chat: where to create sessions, and how many chats each
    /// client makes in one before starting the next. The id replaces
    /// `{session}` in `url`; each client has its own, since a session's
    /// chats run one at a time.
    sessions: Option<(String, usize)>,
    /// The agenthost processes serving the target, whose CPU time is read.
    servers: Vec<u32>,
    /// Other replicas' base URLs, for the first's: each chat goes to the
    /// next replica in turn.
    replicas: Vec<(String, String)>,
    /// The PostgreSQL postmaster behind the target, whose processes' CPU
    /// time is read: on these shared cores it is part of a chat's cost.
    database: Option<u32>,
}

impl Target {
    fn new(name: &str, url: String, body: Value) -> Target {
        Target {
            name: name.into(),
            url,
            body: Some(body.to_string()),
            headers: Vec::new(),
            sessions: None,
            servers: Vec::new(),
            replicas: Vec::new(),
            database: None,
        }
    }

    fn served_by(mut self, host: &Agenthost) -> Target {
        self.servers = vec![host.pid()];
        self
    }

    /// The same target, its chats spread over `hosts` in turn.
    fn spread_over(mut self, name: &str, hosts: &[&Agenthost]) -> Target {
        self.name = name.into();
        let first = hosts[0].base.clone();
        self.replicas = hosts[1..]
            .iter()
            .map(|h| (first.clone(), h.base.clone()))
            .collect();
        self.servers = hosts.iter().map(|h| h.pid()).collect();
        self
    }

    /// Which replica a client's `chats`-th chat goes to: its URL.
    fn at(&self, url: &str, chats: usize) -> String {
        match chats % (self.replicas.len() + 1) {
            0 => url.to_owned(),
            n => {
                let (first, other) = &self.replicas[n - 1];
                url.replacen(first.as_str(), other, 1)
            }
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Target {
        self.headers.push((name, value.into()));
        self
    }
}

/// The model request of a chat, as agenthost sends it: the demo
/// server's tools included, so that the mock parses the same request from
/// every target.
fn openai_body(tools: &Value) -> Value {
    json!({ "model": "gpt-4o-mini", "stream": true, "max_tokens": 4096, "tools": tools,
            "messages": [{ "role": "user", "content": "Say twenty words." }] })
}

/// The demo server's tools in the form agenthost offers them to the
/// model.
async fn demo_tools() -> Value {
    let servers: Vec<McpServerConfig> = serde_json::from_value(json!([
        { "id": "demo", "transport": "stdio", "command": bin(), "args": ["demo-mcp"] },
    ]))
    .unwrap();
    let pool = McpPool::new(servers, UrlPolicy::default(), 1 << 20, None);
    let reachable = pool.reachable(None, Duration::from_secs(30)).await;
    let tools = agenthost::mcp::tool_set(&reachable.shared)
        .await
        .unwrap()
        .tools
        .iter()
        .map(|t| {
            let schema: Value = serde_json::from_str(&t.input_schema).unwrap();
            json!({ "type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": schema } })
        })
        .collect();
    pool.shutdown().await;
    tools
}

/// Every target: the mock itself, a passthrough proxy, each surface, and
/// a chat with one MCP tool call.
async fn targets(
    direct: &MockLlm,
    proxy: &str,
    host: &Agenthost,
    tools_host: &Agenthost,
) -> Vec<Target> {
    let ask = "Say twenty words.";
    let tools = demo_tools().await;
    assert!(tools.as_array().is_some_and(|t| !t.is_empty()), "{tools}");
    let mcp_chat = |name: &str, chats_per_session| mcp_chat_target(host, name, chats_per_session);
    vec![
        Target::new(
            "mock LLM, direct",
            format!("{}/chat/completions", direct.base_url),
            openai_body(&tools),
        ),
        Target::new(
            "passthrough proxy",
            format!("{proxy}/v1/chat/completions"),
            openai_body(&tools),
        ),
        Target::new(
            "agenthost: Feather",
            host.url("/v1/mcp-chat/stream"),
            json!({ "messages": [{ "role": "user", "content": ask }] }),
        )
        .header("x-api-key", ADMIN_KEY)
        .served_by(host),
        Target::new(
            "agenthost: TrueFoundry",
            host.url("/api/llm/agent/responses"),
            json!({ "model": "gpt-4o-mini", "stream": true, "mcp_servers": [],
                    "messages": [{ "role": "user", "content": ask }] }),
        )
        .header("authorization", &format!("Bearer {ADMIN_KEY}"))
        .served_by(host),
        Target::new(
            "agenthost: simple frontend",
            host.url("/chat/stream"),
            json!({ "message": ask }),
        )
        .header("x-api-key", ADMIN_KEY)
        .served_by(host),
        mcp_chat("agenthost: MCP Chat API, new session per chat", 1),
        mcp_chat("agenthost: MCP Chat API, 4 chats per session", 4),
        Target::new(
            "agenthost: simple + 1 MCP tool call",
            tools_host.url("/chat/stream"),
            json!({ "message": "What is 6*7?" }),
        )
        .header("x-api-key", ADMIN_KEY)
        .served_by(tools_host),
    ]
}

/// MCP Chat streams on `host`, a new session every `chats_per_session`
/// chats.
fn mcp_chat_target(host: &Agenthost, name: &str, chats_per_session: usize) -> Target {
    Target {
        name: name.into(),
        url: host.url("/chat/{session}/stream?message=Say%20twenty%20words."),
        body: None,
        headers: vec![("x-api-key", ADMIN_KEY.to_owned())],
        sessions: Some((host.url("/sessions"), chats_per_session)),
        servers: vec![host.pid()],
        replicas: Vec::new(),
        database: None,
    }
}

/// The MCP Chat targets on PostgreSQL (a cluster of the bench's own, with
/// durable commits): one replica, and two sharing the database.
struct OnPostgres {
    _cluster: Cluster,
    _hosts: (Agenthost, Agenthost),
    targets: Vec<Target>,
}

async fn postgres_targets(llm: &MockLlm) -> Option<OnPostgres> {
    if !testkit::postgres::installed() {
        println!("\n(PostgreSQL is not installed: its rows are left out)");
        return None;
    }
    let cluster = Cluster::start(true);
    let first = format!("database_url = {:?}\n", cluster.database("bench"));
    let a = start_agenthost_on(llm, bin(), &first).await;
    let b = start_agenthost_on(llm, bin(), &first).await;
    let on_database = |mut target: Target| {
        target.database = Some(cluster.server_pid());
        target
    };
    let targets = vec![
        on_database(mcp_chat_target(
            &a,
            "agenthost on PostgreSQL: MCP Chat API, new session per chat",
            1,
        )),
        on_database(mcp_chat_target(
            &a,
            "agenthost on PostgreSQL: MCP Chat API, 4 chats per session",
            4,
        )),
        on_database(mcp_chat_target(&a, "", 4).spread_over(
            "two replicas on PostgreSQL: MCP Chat API, 4 chats per session",
            &[&a, &b],
        )),
    ];
    Some(OnPostgres {
        _cluster: cluster,
        _hosts: (a, b),
        targets,
    })
}

/// One chat's timings, or why it failed.
struct Sample {
    first_byte: Duration,
    total: Duration,
}

/// A client's MCP Chat session, and how many chats it has had.
#[derive(Default)]
struct Conversation {
    session: Option<String>,
    chats: usize,
}

async fn send(
    client: &reqwest::Client,
    target: &Target,
    conversation: &mut Conversation,
) -> Result<Sample, String> {
    let url = match &target.sessions {
        Some((sessions, chats_per_session)) => {
            if conversation.chats.is_multiple_of(*chats_per_session) {
                let mut create = client.post(target.at(sessions, conversation.chats));
                for (name, value) in &target.headers {
                    create = create.header(*name, value);
                }
                let response = create.send().await.map_err(|e| e.to_string())?;
                let session: Value = response.json().await.map_err(|e| e.to_string())?;
                let id = session["session_id"].as_str().ok_or("no session id")?;
                conversation.session = Some(id.to_owned());
            }
            let id = conversation.session.as_deref().unwrap_or_default();
            let url = target.url.replace("{session}", id);
            // The chat goes to the next replica: the session was made on
            // another, as behind a load balancer.
            conversation.chats += 1;
            target.at(&url, conversation.chats)
        }
        None => target.url.clone(),
    };
    let mut request = match &target.body {
        Some(body) => client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone()),
        None => client.get(url),
    };
    for (name, value) in &target.headers {
        request = request.header(*name, value);
    }
    let start = Instant::now();
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let mut body = response.bytes_stream();
    let mut first_byte = None;
    let mut seen = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        first_byte.get_or_insert_with(|| start.elapsed());
        seen.extend_from_slice(&chunk);
    }
    let total = start.elapsed();
    let text = String::from_utf8_lossy(&seen);
    if !status.is_success() || !text.contains("word19") {
        return Err(format!("{status}: {text}"));
    }
    Ok(Sample {
        first_byte: first_byte.unwrap_or(total),
        total,
    })
}

struct Measured {
    chats: usize,
    errors: usize,
    first_error: Option<String>,
    per_second: f64,
    latency: Vec<Duration>,
    first_byte: Vec<Duration>,
    /// CPU time of this process (load generator, mock model and
    /// passthrough) and of the agenthost serving the target, if any.
    bench_cpu: Duration,
    server_cpu: Option<Duration>,
    /// CPU time of the PostgreSQL server behind the target, if any.
    database_cpu: Option<Duration>,
}

/// How a run offers load.
#[derive(Clone, Copy)]
enum Load {
    /// This many clients, each sending its next chat when the last ends.
    Clients(usize),
    /// Chats started at this fixed rate per second, however long each
    /// takes (open loop, so a slow answer cannot hold back the load).
    Rate(u32),
}

/// Runs `load` against `target` for `duration`.
async fn measure(target: &Target, load: Load, duration: Duration) -> Measured {
    let client = client();
    let target = Arc::new(target.clone());
    let servers_cpu = |servers: &[u32]| servers.iter().map(|pid| cpu_time(*pid)).sum::<Duration>();
    let cpu_before = (
        cpu_time(std::process::id()),
        (!target.servers.is_empty()).then(|| servers_cpu(&target.servers)),
        target.database.map(process_tree_cpu_time),
    );
    let start = Instant::now();
    let until = start + duration;
    let results = match load {
        Load::Clients(clients) => {
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..clients {
                let (client, target) = (client.clone(), target.clone());
                workers.spawn(async move {
                    let mut results = Vec::new();
                    let mut conversation = Conversation::default();
                    while Instant::now() < until {
                        results.push(send(&client, &target, &mut conversation).await);
                    }
                    results
                });
            }
            workers.join_all().await.into_iter().flatten().collect()
        }
        Load::Rate(rate) => {
            // Conversations are taken by one chat at a time and put back.
            let idle = Arc::new(std::sync::Mutex::new(Vec::<Conversation>::new()));
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut chats = tokio::task::JoinSet::new();
            while Instant::now() < until {
                ticks.tick().await;
                let (client, target, idle) = (client.clone(), target.clone(), idle.clone());
                chats.spawn(async move {
                    let mut conversation = idle.lock().unwrap().pop().unwrap_or_default();
                    let result = send(&client, &target, &mut conversation).await;
                    idle.lock().unwrap().push(conversation);
                    result
                });
            }
            chats.join_all().await
        }
    };
    let elapsed = start.elapsed();
    let mut measured = Measured {
        chats: 0,
        errors: 0,
        first_error: None,
        per_second: 0.0,
        latency: Vec::new(),
        first_byte: Vec::new(),
        bench_cpu: cpu_time(std::process::id()) - cpu_before.0,
        server_cpu: cpu_before
            .1
            .map(|before| servers_cpu(&target.servers) - before),
        database_cpu: target
            .database
            .zip(cpu_before.2)
            .map(|(pid, before)| process_tree_cpu_time(pid) - before),
    };
    for result in results {
        match result {
            Ok(sample) => {
                measured.chats += 1;
                measured.latency.push(sample.total);
                measured.first_byte.push(sample.first_byte);
            }
            Err(e) => {
                measured.errors += 1;
                measured.first_error.get_or_insert(e);
            }
        }
    }
    measured.per_second = measured.chats as f64 / elapsed.as_secs_f64();
    measured.latency.sort();
    measured.first_byte.sort();
    measured
}

/// User and system CPU time a process has used, from /proc.
fn cpu_time(pid: u32) -> Duration {
    ticks_to_time(proc_stat(pid).map_or(0, |stat| stat.own_ticks))
}

/// CPU time of a process, its children that ended and its children
/// alive: a PostgreSQL server's, whose connections are child processes.
fn process_tree_cpu_time(pid: u32) -> Duration {
    let mut ticks = proc_stat(pid).map_or(0, |stat| stat.own_ticks + stat.ended_children_ticks);
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(stat) = proc_stat(child).filter(|stat| stat.parent == pid) {
            ticks += stat.own_ticks + stat.ended_children_ticks;
        }
    }
    ticks_to_time(ticks)
}

/// What `/proc/{pid}/stat` says of a process's CPU time, in clock ticks;
/// `None` once it has ended.
struct ProcStat {
    parent: u32,
    own_ticks: u64,
    ended_children_ticks: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command, which is in parentheses and may hold
    // spaces: the parent is the 4th of the line; utime, stime, cutime and
    // cstime the 14th to 17th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |i: usize| fields[i].parse::<u64>().unwrap();
    Some(ProcStat {
        parent: field(1) as u32,
        own_ticks: field(11) + field(12),
        ended_children_ticks: field(13) + field(14),
    })
}

fn ticks_to_time(ticks: u64) -> Duration {
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Duration::from_secs_f64(ticks as f64 / per_second)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// A proxy that forwards each request to `upstream` and streams the
/// answer back: the least any server in the middle can cost.
async fn start_passthrough(upstream: String) -> String {
    let client = reqwest::Client::new();
    let app = Router::new()
        .route("/v1/chat/completions", post(forward))
        .with_state((client, upstream));
    let (addr, listener) = nodelay_listener().await;
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn forward(
    State((client, upstream)): State<(reqwest::Client, String)>,
    body: Bytes,
) -> Response {
    let answer = client
        .post(format!("{upstream}/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match answer {
        Ok(answer) => Response::builder()
            .status(answer.status())
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(answer.bytes_stream()))
            .unwrap(),
        Err(e) => Response::builder()
            .status(502)
            .body(Body::from(e.to_string()))
            .unwrap(),
    }
}

/// Benchmark 3: throughput and latency of every target in one run, at
/// full load (`CONCURRENCY` clients) and unloaded (one client), where
/// latency is the path's own rather than queueing for the cores.
async fn chats() {
    let llm = MockLlm::answering(text_answer, Duration::ZERO).await;
    let tools_llm = MockLlm::answering(calculate_then_answer, Duration::ZERO).await;
    let proxy = start_passthrough(llm.base_url.clone()).await;
    let host = start_agenthost(&llm, bin()).await;
    let tools_host = start_agenthost(&tools_llm, bin()).await;
    let mut chosen: Vec<Target> = targets(&llm, &proxy, &host, &tools_host).await;
    let on_postgres = postgres_targets(&llm).await;
    // Beside the SQLite MCP Chat rows, in the same run.
    if let Some(postgres) = &on_postgres {
        let after = chosen
            .iter()
            .rposition(|t| t.name.contains("MCP Chat"))
            .map_or(chosen.len(), |i| i + 1);
        chosen.splice(after..after, postgres.targets.iter().cloned());
    }
    // Each agenthost target again against the baseline build, measured
    // right after it: before and after a change, in one run.
    let baseline = std::env::var_os("BENCH_BASELINE").map(PathBuf::from);
    let _baseline_hosts = match &baseline {
        Some(binary) => {
            let base_host = start_agenthost(&llm, binary).await;
            let base_tools_host = start_agenthost(&tools_llm, binary).await;
            let twins = targets(&llm, &proxy, &base_host, &base_tools_host).await;
            chosen = chosen
                .into_iter()
                .zip(twins)
                .flat_map(|(ours, mut twin)| {
                    let baseline = (!twin.servers.is_empty()).then(|| {
                        twin.name.push_str(" [baseline]");
                        twin
                    });
                    std::iter::once(ours).chain(baseline)
                })
                .collect();
            Some((base_host, base_tools_host))
        }
        None => None,
    };
    chosen.retain(named_in_env);
    for load in [
        Load::Clients(CONCURRENCY),
        Load::Rate(FIXED_RATE),
        Load::Clients(1),
    ] {
        chats_table(&chosen, load).await;
    }
}

/// Whether `BENCH_TARGETS` (comma-separated, case-insensitive substrings)
/// names the target; with none set, every target is.
fn named_in_env(target: &Target) -> bool {
    let only = std::env::var("BENCH_TARGETS")
        .unwrap_or_default()
        .to_lowercase();
    only.is_empty()
        || only
            .split(',')
            .any(|o| target.name.to_lowercase().contains(o.trim()))
}

/// Rounds of the CPU comparison, and how long each measures a target.
const CPU_ROUNDS: usize = 7;
const CPU_SLICE: Duration = Duration::from_secs(2);

/// Benchmark 3b: agenthost's CPU per chat against `BENCH_BASELINE`'s, each
/// surface in alternating rounds, the median of each side reported. On a
/// shared machine, whose speed drifts by tens of percent between minutes,
/// this is how a change to the hot path is judged.
async fn cpu_against_baseline() {
    let Some(baseline) = std::env::var_os("BENCH_BASELINE").map(PathBuf::from) else {
        println!("\n(cpu: set BENCH_BASELINE to another build's agenthost binary)");
        return;
    };
    let llm = MockLlm::answering(text_answer, Duration::ZERO).await;
    let tools_llm = MockLlm::answering(calculate_then_answer, Duration::ZERO).await;
    let proxy = start_passthrough(llm.base_url.clone()).await;
    let (host, tools_host) = (
        start_agenthost(&llm, bin()).await,
        start_agenthost(&tools_llm, bin()).await,
    );
    let (base_host, base_tools_host) = (
        start_agenthost(&llm, &baseline).await,
        start_agenthost(&tools_llm, &baseline).await,
    );
    let ours = targets(&llm, &proxy, &host, &tools_host).await;
    let theirs = targets(&llm, &proxy, &base_host, &base_tools_host).await;
    for clients in [CONCURRENCY, 1] {
        let load = Load::Clients(clients);
        println!(
            "\n### Server CPU per chat against the baseline build: {clients} clients, {CPU_ROUNDS} alternating rounds of {} s\n",
            CPU_SLICE.as_secs()
        );
        println!(
            "| target | this build µs/chat | baseline µs/chat | ratio | this build's spread | errors |"
        );
        println!("|---|---|---|---|---|---|");
        let pairs = ours.iter().zip(&theirs);
        for (a, b) in pairs.filter(|(a, _)| !a.servers.is_empty() && named_in_env(a)) {
            measure(a, load, WARM_UP).await;
            measure(b, load, WARM_UP).await;
            let (mut mine, mut base, mut errors) = (Vec::new(), Vec::new(), 0);
            for _ in 0..CPU_ROUNDS {
                for (target, samples) in [(a, &mut mine), (b, &mut base)] {
                    let m = measure(target, load, CPU_SLICE).await;
                    errors += m.errors;
                    let cpu = m.server_cpu.unwrap_or_default().as_secs_f64();
                    samples.push(cpu * 1e6 / m.chats.max(1) as f64);
                }
            }
            mine.sort_by(f64::total_cmp);
            base.sort_by(f64::total_cmp);
            let median = |v: &[f64]| v[v.len() / 2];
            println!(
                "| {} | {:.0} | {:.0} | {:.3} | {:.0}–{:.0} | {errors} |",
                a.name,
                median(&mine),
                median(&base),
                median(&mine) / median(&base),
                mine[0],
                mine[mine.len() - 1]
            );
        }
    }
}

async fn chats_table(targets: &[Target], load: Load) {
    let offered = match load {
        Load::Clients(clients) => format!("{clients} concurrent clients"),
        Load::Rate(rate) => format!("a fixed {rate} chats/s"),
    };
    println!(
        "\n### End-to-end chats: {offered}, {} s each, {LOAD_TEXT_CHUNKS} text chunks per answer\n",
        MEASURE.as_secs()
    );
    println!(
        "| target | chats/s | p50 ms | p99 ms | TTFB p50 ms | errors | server CPU µs/chat | database CPU µs/chat | vs passthrough |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    // The bench process's own CPU per chat against the mock alone, so
    // the passthrough's share of it can be told apart.
    let mut direct_cpu = None;
    let mut passthrough = None;
    for target in targets {
        measure(target, load, WARM_UP).await;
        let m = measure(target, load, MEASURE).await;
        let p50 = percentile(&m.latency, 0.5);
        let per_chat = |cpu: Duration| cpu.as_secs_f64() * 1e6 / m.chats.max(1) as f64;
        let server_cpu = match (&m.server_cpu, target.name.as_str(), direct_cpu) {
            (Some(cpu), _, _) => Some(per_chat(*cpu)),
            (None, "passthrough proxy", Some(direct)) => Some(per_chat(m.bench_cpu) - direct),
            _ => None,
        };
        if target.name == "mock LLM, direct" {
            direct_cpu = Some(per_chat(m.bench_cpu));
        }
        let ratio = match passthrough {
            Some((rate, latency, cpu)) => format!(
                "{:.2}x rate, {:+.2} ms p50{}",
                m.per_second / rate,
                (p50.as_secs_f64() - Duration::as_secs_f64(&latency)) * 1e3,
                match (server_cpu, cpu) {
                    (Some(ours), Some(theirs)) => format!(", {:.1}x CPU", ours / theirs),
                    _ => String::new(),
                }
            ),
            None => String::new(),
        };
        if target.name == "passthrough proxy" {
            passthrough = Some((m.per_second, p50, server_cpu));
        }
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {ratio} |",
            target.name,
            m.per_second,
            ms(p50),
            ms(percentile(&m.latency, 0.99)),
            ms(percentile(&m.first_byte, 0.5)),
            m.errors,
            server_cpu.map_or(String::new(), |cpu| format!("{cpu:.0}")),
            m.database_cpu
                .map_or(String::new(), |cpu| format!("{:.0}", per_chat(cpu))),
        );
        if let Some(e) = m.first_error {
            eprintln!("{}: first error: {e}", target.name);
        }
    }
}

/// Clients in the open-streams run, each with one HTTP/2 connection
/// carrying its share of the streams: with a socket per stream, the bench
/// process (clients and mock) would need more descriptors than the
/// machine's hard limit of 20,000 allows.
const STREAM_CLIENTS: usize = 100;

/// Benchmark 4: N streams held open against a model that sends one chunk
/// a second: agenthost's RSS and memory mappings a few seconds after every
/// stream has started, then whether every stream ran to its end.
async fn open_streams() {
    println!("\n### Open streams: simple frontend, model sends one chunk per second\n");
    println!(
        "| streams | completed | errors | RSS idle MiB | RSS open MiB | KiB per stream | memory mappings |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in [1_000, 10_000] {
        let llm = MockLlm::answering(text_answer, Duration::from_secs(1)).await;
        let host = start_agenthost(&llm, bin()).await;
        let idle = proc_status_kib(host.pid(), "VmRSS:");
        let clients: Vec<reqwest::Client> = (0..STREAM_CLIENTS)
            .map(|_| {
                reqwest::Client::builder()
                    .http2_prior_knowledge()
                    .build()
                    .unwrap()
            })
            .collect();
        let mut streams = tokio::task::JoinSet::new();
        let (started_tx, mut started_rx) = tokio::sync::mpsc::channel(n);
        for i in 0..n {
            let (client, url, started) = (
                clients[i % STREAM_CLIENTS].clone(),
                host.url("/chat/stream"),
                started_tx.clone(),
            );
            streams.spawn(async move {
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("x-api-key", ADMIN_KEY)
                    .body(r#"{"message": "Take your time."}"#)
                    .send()
                    .await;
                let _ = started.send(()).await;
                let response = response.map_err(|e| e.to_string())?;
                if !response.status().is_success() {
                    return Err(response.status().to_string());
                }
                let body = response.text().await.map_err(|e| e.to_string())?;
                match body.ends_with("data: [DONE]\n\n") {
                    true => Ok(()),
                    false => Err(format!("incomplete: {body}")),
                }
            });
        }
        for _ in 0..n {
            started_rx.recv().await;
        }
        // Mid-answer: every stream is open, none has finished.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let open = proc_status_kib(host.pid(), "VmRSS:");
        let mappings = std::fs::read_to_string(format!("/proc/{}/maps", host.pid()))
            .map_or(0, |maps| maps.lines().count());
        let mut errors = 0;
        let mut first_error = None;
        let deadline = Instant::now() + Duration::from_secs(120);
        while let Ok(Some(ended)) =
            tokio::time::timeout_at(deadline.into(), streams.join_next()).await
        {
            if let Err(e) = ended.map_err(|e| e.to_string()).and_then(|r| r) {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
        errors += streams.len();
        println!(
            "| {n} | {} | {errors} | {} | {} | {:.0} | {mappings} |",
            n - errors,
            idle / 1024,
            open / 1024,
            (open - idle) as f64 / n as f64
        );
        if let Some(e) = first_error {
            eprintln!("{n} streams: first error: {e}");
        }
        streams.abort_all();
        drop(host);
    }
}

/// Benchmark 5: tool calls through agenthost's MCP pool to the demo
/// server over stdio and over streamable HTTP, and to the component
/// server fixture run in the host (`transport = "wasm"`); then how long
/// each kind takes to start a session.
async fn mcp_round_trips() {
    let http = serve_demo_over_http().await;
    let component = plugin_build_dir().join("wasm_mcp_server.wasm");
    let servers: Vec<McpServerConfig> = serde_json::from_value(json!([
        { "id": "stdio", "transport": "stdio", "command": bin(), "args": ["demo-mcp"] },
        { "id": "http", "transport": "streamable_http", "url": http },
        { "id": "wasm", "transport": "wasm", "component": component },
    ]))
    .unwrap();
    let pool = McpPool::new(servers, UrlPolicy::default(), 1 << 20, None);
    println!(
        "\n### MCP round trip: `calculate` on the demo server, `echo` on the component, through agenthost's pool\n"
    );
    println!("| transport | callers | calls | calls/s | p50 µs | p99 µs |");
    println!("|---|---|---|---|---|---|");
    for id in ["stdio", "http", "wasm"] {
        let (tool, argument, value) = match id {
            "wasm" => ("echo", "text", "42"),
            _ => ("calculate", "expression", "6*7"),
        };
        let server = pool.server(None, id).unwrap();
        server.tools().await.unwrap();
        for (callers, calls_each) in [(1, 4_000), (64, 100)] {
            let start = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..callers {
                let server = server.clone();
                tasks.spawn(async move {
                    let mut latencies = Vec::with_capacity(calls_each);
                    for _ in 0..calls_each {
                        let mut arguments = Map::new();
                        arguments.insert(argument.into(), value.into());
                        let call = Instant::now();
                        let result = server.call(tool, arguments, None, None).await.unwrap();
                        latencies.push(call.elapsed());
                        assert_ne!(result.is_error, Some(true));
                    }
                    latencies
                });
            }
            let mut latencies: Vec<Duration> =
                tasks.join_all().await.into_iter().flatten().collect();
            let elapsed = start.elapsed();
            latencies.sort();
            println!(
                "| {id} | {callers} | {} | {:.0} | {:.0} | {:.0} |",
                latencies.len(),
                latencies.len() as f64 / elapsed.as_secs_f64(),
                percentile(&latencies, 0.5).as_secs_f64() * 1e6,
                percentile(&latencies, 0.99).as_secs_f64() * 1e6,
            );
        }
    }
    println!("\n### MCP session start: connect, initialize and list tools, median of ten\n");
    println!("| server | ms |\n|---|---|");
    for id in ["stdio", "wasm"] {
        let server = pool.server(None, id).unwrap();
        let mut starts = Vec::new();
        for _ in 0..10 {
            pool.disconnect(None, id).await.unwrap();
            let start = Instant::now();
            server.tools().await.unwrap();
            starts.push(start.elapsed());
        }
        starts.sort();
        println!("| {id} | {} |", ms(starts[5]));
    }
    pool.shutdown().await;
    let fresh = McpPool::new(
        serde_json::from_value(
            json!([{ "id": "wasm", "transport": "wasm", "component": component }]),
        )
        .unwrap(),
        UrlPolicy::default(),
        1 << 20,
        None,
    );
    let start = Instant::now();
    fresh.server(None, "wasm").unwrap().tools().await.unwrap();
    println!(
        "| wasm, first start (compiles the component, no cache) | {} |",
        ms(start.elapsed())
    );
    fresh.shutdown().await;
}

/// The demo tools on rmcp's streamable-HTTP server, in this process.
async fn serve_demo_over_http() -> String {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
    let service = StreamableHttpService::new(
        || Ok(agenthost::demo_mcp::DemoTools::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = Router::new().route_service("/mcp", service);
    let (addr, listener) = nodelay_listener().await;
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/mcp")
}

/// Benchmark 2: process start until it listens, with an empty compile
/// cache and with a warm one. Median of five.
fn startup() {
    let cache = tempfile::tempdir().unwrap();
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..5 {
        std::fs::remove_dir_all(cache.path()).unwrap();
        cold.push(time_to_ready(cache.path()));
        warm.push(time_to_ready(cache.path()));
    }
    cold.sort();
    warm.sort();
    println!("\n### Start to ready (listening), median of five\n");
    println!("| compile cache | ms |\n|---|---|");
    println!("| cold (empty) | {} |", ms(cold[2]));
    println!("| warm | {} |", ms(warm[2]));
}

fn time_to_ready(cache: &std::path::Path) -> Duration {
    let config = format!("cache_dir = {:?}\n", cache.display().to_string());
    let start = Instant::now();
    let host = Agenthost::start(&config);
    let ready = start.elapsed();
    drop(host);
    ready
}

/// How soon a server registered on one replica is connected on another,
/// and how soon one deleted there is gone: what LISTEN/NOTIFY buys over a
/// restart. Twenty rounds on two replicas of one PostgreSQL.
async fn replica_propagation() {
    if !testkit::postgres::installed() {
        println!("\n(PostgreSQL is not installed: no replica propagation)");
        return;
    }
    const ROUNDS: usize = 20;
    let llm = MockLlm::answering(text_answer, Duration::ZERO).await;
    let cluster = Cluster::start(true);
    let first = format!("database_url = {:?}\n", cluster.database("propagation"));
    let a = start_agenthost_on(&llm, bin(), &first).await;
    let b = start_agenthost_on(&llm, bin(), &first).await;
    let demo = serve_demo_over_http().await;
    let http = client();
    let listed_on_b = |id: String| {
        let request = http.get(b.url("/servers")).header("x-api-key", ADMIN_KEY);
        async move {
            let servers: Value = request.send().await.unwrap().json().await.unwrap();
            let server = servers
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == id.as_str())
                .cloned();
            server.map(|s| s["connected_at"].is_string())
        }
    };
    let mut registered = Vec::new();
    let mut deleted = Vec::new();
    for round in 0..ROUNDS {
        let id = format!("demo{round}");
        let body = json!([{ "name": id, "transport": "streamable_http", "url": demo }]);
        let started = Instant::now();
        let response = http
            .post(a.url("/servers"))
            .header("x-api-key", ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
        while listed_on_b(id.clone()).await != Some(true) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        registered.push(started.elapsed());

        let started = Instant::now();
        let response = http
            .delete(a.url(&format!("/servers/{id}")))
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        while listed_on_b(id.clone()).await.is_some() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        deleted.push(started.elapsed());
    }
    println!("\n### Replica propagation ({ROUNDS} rounds, two replicas on one PostgreSQL)\n");
    println!("| change on replica A | seen on replica B: p50 ms | p90 ms | max ms |");
    println!("|---|---:|---:|---:|");
    for (what, mut times) in [
        ("server registered (B connected to it)", registered),
        ("server deleted (gone from B)", deleted),
    ] {
        times.sort();
        println!(
            "| {what} | {} | {} | {} |",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.9)),
            ms(times[times.len() - 1]),
        );
    }
}
