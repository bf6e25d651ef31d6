//! Hundreds of concurrent streaming chats, each with a tool
//! call to the demo MCP server, for a fixed time. Every chat must stream
//! exactly the expected bytes, and afterwards the server must hold no more
//! tasks, file descriptors or child processes than before.
//!
//! Bounded in count and time and on loopback only. It asserts no speed:
//! the figures it prints go to BENCHMARKS.md.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use testkit::*;

const CONCURRENCY: usize = 200;
const DURATION: Duration = Duration::from_secs(10);
/// How long the server may take to wind down once the load stops.
const SETTLE: Duration = Duration::from_secs(20);

/// What one chat streams on the simple surface (seed 003).
fn expected_body() -> String {
    let mut body = String::from(concat!(
        "data: {\"type\": \"tool_start\", \"id\": \"call_load\", \"name\": \"calculate\", \"args\": {\"expression\": \"6*7\"}}\n\n",
        "data: {\"type\": \"tool_end\", \"id\": \"call_load\", \"name\": \"calculate\"}\n\n",
    ));
    for i in 0..LOAD_TEXT_CHUNKS {
        body.push_str(&format!(
            "data: {{\"type\": \"text\", \"content\": \"word{i} \"}}\n\n"
        ));
    }
    body.push_str("data: [DONE]\n\n");
    body
}

/// What a leak would grow. Open connections are counted apart: each
/// holds a socket and a task, idle keep-alive ones to the model follow the
/// peak concurrency (bounded by it) and not the number of chats, and any
/// other open one is a client's to close, not the host's.
#[derive(Debug, PartialEq)]
struct Footprint {
    tasks: u64,
    fds: usize,
    children: Vec<u32>,
    /// The host's TCP sockets by role and state, which also names what a
    /// growth is made of.
    sockets: BTreeMap<String, usize>,
}

impl Footprint {
    fn open_connections(&self) -> usize {
        self.sockets
            .iter()
            .filter(|(role, _)| role.ends_with(" ESTAB"))
            .map(|(_, count)| count)
            .sum()
    }

    fn model_connections(&self) -> usize {
        self.sockets.get("to model ESTAB").copied().unwrap_or(0)
    }

    /// Connections the peer closed and the host did not: a leak.
    fn half_closed(&self) -> usize {
        self.sockets
            .iter()
            .filter(|(role, _)| role.ends_with(" CLOSE-WAIT"))
            .map(|(_, count)| count)
            .sum()
    }

    fn tasks_besides_connections(&self) -> u64 {
        self.tasks.saturating_sub(self.open_connections() as u64)
    }

    fn fds_besides_connections(&self) -> usize {
        self.fds.saturating_sub(self.open_connections())
    }

    fn within(&self, baseline: &Footprint) -> bool {
        self.tasks_besides_connections() <= baseline.tasks_besides_connections()
            && self.fds_besides_connections() <= baseline.fds_besides_connections()
            && self.half_closed() == 0
            && self.children == baseline.children
    }
}

async fn footprint(host: &Agenthost, llm_port: u16) -> Footprint {
    let (status, stats) = host.get("/admin/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    Footprint {
        tasks: stats["tasks"].as_u64().unwrap(),
        fds: open_fds(host.pid()),
        children: children_of(host.pid()),
        sockets: sockets_by_role(host, llm_port),
    }
}

fn sockets_by_role(host: &Agenthost, llm_port: u16) -> BTreeMap<String, usize> {
    let host_port = reqwest::Url::parse(&host.url("/"))
        .ok()
        .and_then(|url| url.port())
        .unwrap_or(0);
    let mut roles = BTreeMap::new();
    for (local, remote, state) in tcp_sockets_of(host.pid()) {
        let role = if local == host_port {
            "from client"
        } else if remote == llm_port {
            "to model"
        } else {
            "other"
        };
        *roles.entry(format!("{role} {state}")).or_insert(0) += 1;
    }
    roles
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Runs chats from `CONCURRENCY` clients until `until`; returns how many
/// finished and every failure seen.
async fn drive(host: &Agenthost, until: Instant) -> (usize, Vec<String>) {
    let client = client();
    let expected = Arc::new(expected_body());
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, url, expected, done, failed) = (
            client.clone(),
            host.url("/chat/stream"),
            expected.clone(),
            done.clone(),
            failed.clone(),
        );
        workers.spawn(async move {
            let mut failures = Vec::new();
            while Instant::now() < until && !failed.load(Ordering::Relaxed) {
                match chat(&client, &url).await {
                    Ok(body) if body == *expected => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(body) => failures.push(format!("unexpected body: {body}")),
                    Err(e) => failures.push(e),
                }
                if !failures.is_empty() {
                    failed.store(true, Ordering::Relaxed);
                }
            }
            failures
        });
    }
    let failures = workers.join_all().await.into_iter().flatten().collect();
    (done.load(Ordering::Relaxed), failures)
}

async fn chat(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = client
        .post(url)
        .body(r#"{"message": "What is 6*7?"}"#)
        .send()
        .await
        .map_err(|e| format!("request: {e:?}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| format!("body: {e:?}"))?;
    let body = unnumbered(&body);
    if status != StatusCode::OK {
        return Err(format!("{status}: {body}"));
    }
    Ok(body)
}

/// Polls until the footprint is back within `baseline`, or `SETTLE`
/// passes.
async fn settled(host: &Agenthost, llm_port: u16, baseline: &Footprint) -> Footprint {
    let deadline = Instant::now() + SETTLE;
    loop {
        let now = footprint(host, llm_port).await;
        if now.within(baseline) || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_concurrent_tool_chats_fail_none_and_leak_nothing() {
    let llm = MockLlm::answering(calculate_then_answer, Duration::from_millis(1)).await;
    let llm_port = reqwest::Url::parse(&llm.base_url).unwrap().port().unwrap();
    let config = format!("{}\n{}", llm.provider_toml(), demo_server_toml());
    let host = Agenthost::start_with_env(&config, &[("AGENTHOST_TEST_KEY", "sk-load")]);
    let (status, body) = host.post_json("/connect/demo", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A short warm-up at full concurrency opens every pooled connection
    // the load will use, so the baseline includes them.
    let (_, failures) = drive(&host, Instant::now() + Duration::from_secs(2)).await;
    assert_eq!(failures, Vec::<String>::new());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = footprint(&host, llm_port).await;

    let started = Instant::now();
    let (chats, failures) = drive(&host, started + DURATION).await;
    let elapsed = started.elapsed();
    assert_eq!(failures, Vec::<String>::new(), "no chat may fail");
    assert!(chats >= CONCURRENCY, "only {chats} chats finished");

    let after = settled(&host, llm_port, &baseline).await;
    let peak_rss_kib = proc_status_kib(host.pid(), "VmHWM:");
    println!(
        "load: {CONCURRENCY} concurrent tool chats for {:.1} s: {chats} chats ({:.0}/s), 0 failed; \
         baseline {baseline:?}, after {after:?}, peak RSS {} MiB",
        elapsed.as_secs_f64(),
        chats as f64 / elapsed.as_secs_f64(),
        peak_rss_kib / 1024,
    );
    assert!(
        after.tasks_besides_connections() <= baseline.tasks_besides_connections(),
        "tasks grew: {baseline:?} -> {after:?}"
    );
    assert!(
        after.fds_besides_connections() <= baseline.fds_besides_connections(),
        "fds grew: {baseline:?} -> {after:?}"
    );
    assert_eq!(
        after.half_closed(),
        0,
        "connections left half-closed: {after:?}"
    );
    // Connections follow concurrency, not chats (~5,000 here). hyper may
    // open a connection for a waiting request while another goes idle and
    // keep both, so a few beyond one per client are normal.
    assert!(after.model_connections() <= 2 * CONCURRENCY, "{after:?}");
    assert_eq!(after.children, baseline.children, "child processes changed");
    assert_eq!(zombies_of(host.pid()), Vec::<u32>::new());
    let log = host.logs();
    assert!(!log.contains("panicked"), "{log}");
}
