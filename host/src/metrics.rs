//! Prometheus metrics: what an operator graphs and alerts on, rendered in
//! the text exposition format at `GET /metrics`.
//!
//! Each metric is recorded where its event happens, through the functions
//! here, so its name, labels and help text live in one place. The
//! recorder is process-wide and installed before the server loads
//! anything: counters that are taken once and kept (a plugin's) would be
//! no-ops if taken before it.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{Counter, Unit, counter, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Duration buckets in seconds, from a plugin call to a slow tool.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// How often histograms are folded into their buckets between scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (once per process) and returns its handle.
pub fn install() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            // Only an empty bucket list is refused, and this one is not.
            let builder = builder
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            describe();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                })
                .map_err(|e| tracing::warn!("cannot start the metrics upkeep thread: {e}"))
                .ok();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        "agenthost_http_requests_total",
        "HTTP requests answered, by method, route pattern and status"
    );
    describe_histogram!(
        "agenthost_chat_duration_seconds",
        Unit::Seconds,
        "Streamed chats from the request to the end of the answer, by surface (encoder)"
    );
    describe_histogram!(
        "agenthost_chat_first_byte_seconds",
        Unit::Seconds,
        "Streamed chats from the request to the first bytes of the answer, by surface"
    );
    describe_gauge!("agenthost_open_streams", "Chat answers being streamed now");
    describe_counter!(
        "agenthost_model_requests_total",
        "Requests to a model provider, by provider and outcome (ok, error)"
    );
    describe_counter!(
        "agenthost_model_retries_total",
        "Provider requests sent again after a transient failure, by provider"
    );
    describe_counter!(
        "agenthost_model_tokens_total",
        "Tokens the providers reported, by provider, model and direction (input or output)"
    );
    describe_counter!(
        "agenthost_tool_calls_total",
        "Tool calls, by server, tool and outcome (ok, tool_error, failed, denied)"
    );
    describe_histogram!(
        "agenthost_tool_call_duration_seconds",
        Unit::Seconds,
        "Tool calls from dispatch to result, by server and tool"
    );
    describe_gauge!(
        "agenthost_mcp_server_up",
        "Whether this replica has a live session with the MCP server (1) or not (0), by org (empty for the config file's) and server id"
    );
    describe_counter!(
        "agenthost_plugin_calls_total",
        "Calls into a plugin's component, by plugin"
    );
    describe_counter!(
        "agenthost_plugin_traps_total",
        "Plugin calls that trapped, by plugin"
    );
    describe_counter!(
        "agenthost_plugin_timeouts_total",
        "Plugin calls stopped at their deadline, by plugin"
    );
    describe_histogram!(
        "agenthost_store_write_seconds",
        Unit::Seconds,
        "Writes to the store until committed, by operation"
    );
}

pub fn request_answered(method: &str, route: &str, status: u16) {
    counter!("agenthost_http_requests_total",
        "method" => method_label(method), "route" => route.to_owned(), "status" => status.to_string())
    .increment(1);
}

/// A client may send any method name; each distinct label would be a new
/// series kept for the process's life, so the unusual ones count as one.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("other")
}

/// One streamed chat, from its request: first bytes and end are recorded
/// as they happen, and the stream counts as open until dropped.
pub struct ChatTimer {
    surface: String,
    started: Instant,
    first_byte: bool,
}

impl ChatTimer {
    pub fn start(surface: &str) -> ChatTimer {
        metrics::gauge!("agenthost_open_streams").increment(1.0);
        ChatTimer {
            surface: surface.to_owned(),
            started: Instant::now(),
            first_byte: false,
        }
    }

    pub fn bytes_sent(&mut self) {
        if !self.first_byte {
            self.first_byte = true;
            metrics::histogram!("agenthost_chat_first_byte_seconds", "surface" => self.surface.clone())
                .record(self.started.elapsed());
        }
    }
}

impl Drop for ChatTimer {
    fn drop(&mut self) {
        metrics::gauge!("agenthost_open_streams").decrement(1.0);
        metrics::histogram!("agenthost_chat_duration_seconds", "surface" => std::mem::take(&mut self.surface))
            .record(self.started.elapsed());
    }
}

pub fn model_request(provider: &str, ok: bool) {
    counter!("agenthost_model_requests_total",
        "provider" => provider.to_owned(), "outcome" => if ok { "ok" } else { "error" })
    .increment(1);
}

pub fn model_retry(provider: &str) {
    counter!("agenthost_model_retries_total", "provider" => provider.to_owned()).increment(1);
}

/// Tokens of one model response. `model` is a configured name or `other`,
/// so clients choosing model names cannot grow the series without bound.
pub fn model_tokens(provider: &str, model: &str, input: u32, output: u32) {
    for (direction, tokens) in [("input", input), ("output", output)] {
        counter!("agenthost_model_tokens_total",
            "provider" => provider.to_owned(), "model" => model.to_owned(), "direction" => direction)
        .increment(u64::from(tokens));
    }
}

pub fn tool_call(server: &str, tool: &str, outcome: &'static str, took: Duration) {
    counter!("agenthost_tool_calls_total",
        "server" => server.to_owned(), "tool" => tool.to_owned(), "outcome" => outcome)
    .increment(1);
    metrics::histogram!("agenthost_tool_call_duration_seconds",
        "server" => server.to_owned(), "tool" => tool.to_owned())
    .record(took);
}

/// `org` is empty for the servers of the config file.
pub fn mcp_server_up(org: &str, server: &str, up: bool) {
    metrics::gauge!("agenthost_mcp_server_up", "org" => org.to_owned(), "server" => server.to_owned())
        .set(if up { 1.0 } else { 0.0 });
}

/// A plugin's counters, taken once when it is loaded: its calls are on
/// every chat's path, where a lookup by label per call would cost.
pub struct PluginCounters {
    pub calls: Counter,
    pub traps: Counter,
    pub timeouts: Counter,
}

impl PluginCounters {
    pub fn of(plugin: &str) -> PluginCounters {
        let plugin = plugin.to_owned();
        PluginCounters {
            calls: counter!("agenthost_plugin_calls_total", "plugin" => plugin.clone()),
            traps: counter!("agenthost_plugin_traps_total", "plugin" => plugin.clone()),
            timeouts: counter!("agenthost_plugin_timeouts_total", "plugin" => plugin),
        }
    }

    /// Counters that count nothing.
    pub fn none() -> PluginCounters {
        PluginCounters {
            calls: Counter::noop(),
            traps: Counter::noop(),
            timeouts: Counter::noop(),
        }
    }
}

pub fn store_write(operation: &'static str, took: Duration) {
    metrics::histogram!("agenthost_store_write_seconds", "operation" => operation).record(took);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusual_methods_share_one_label() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("DELETE"), "DELETE");
        assert_eq!(method_label("PROPFIND"), "other");
        assert_eq!(method_label("get"), "other");
    }
}
