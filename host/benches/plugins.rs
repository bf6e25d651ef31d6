//! What the built-in plugins cost per event through the real runtime, next
//! to the very same plugin code compiled natively (its twin): each encoder
//! on a canonical chat, each provider decoder on a recorded stream, and
//! what setting up one response's stream costs.
//!
//! `cargo bench --bench plugins`. Results and goals are in BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use agenthost::config::Limits;
use agenthost::plugins::{self, PluginRuntime, SandboxLimits};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use testkit::*;

/// The canonical chat: text, a tool call with argument fragments, its
/// result, the answer, done. A macro because host and guest each have
/// their own (identical) types generated from the WIT.
macro_rules! canonical_chat {
    ($($types:ident)::+) => {{
        use $($types)::+ as t;
        let call = || t::ToolCallInfo {
            id: "call_1".into(),
            name: "demo__calculate".into(),
            server: "demo".into(),
            tool: "calculate".into(),
        };
        let fragment = |fragment: &str| {
            t::ChatEvent::ToolCallArgsDelta(t::ToolCallArgsDelta {
                id: "call_1".into(),
                fragment: fragment.into(),
            })
        };
        let mut events = vec![
            t::ChatEvent::TextDelta("Let me ".into()),
            t::ChatEvent::TextDelta("work that ".into()),
            t::ChatEvent::TextDelta("out.".into()),
            t::ChatEvent::ToolCallStart(call()),
            fragment("{\"expr"),
            fragment("ession\": \"6*"),
            fragment("7\"}"),
            t::ChatEvent::ToolCall(t::ToolCallReady {
                call: call(),
                arguments: "{\"expression\": \"6*7\"}".into(),
            }),
            t::ChatEvent::TurnEnd(t::TurnEnd { iteration: 1, reason: t::FinishReason::ToolCalls }),
            t::ChatEvent::ToolResult(t::ToolResult {
                call: call(),
                content: r#"{"content":[{"type":"text","text":"42"}],"isError":false}"#.into(),
                is_error: false,
            }),
        ];
        events.extend((0..10).map(|i| t::ChatEvent::TextDelta(format!("word{i} "))));
        events.push(t::ChatEvent::TurnEnd(t::TurnEnd { iteration: 2, reason: t::FinishReason::Stop }));
        events.push(t::ChatEvent::Done);
        (
            events,
            t::StreamOptions {
                response_id: "chatcmpl-bench".into(),
                model: "gpt-4o-mini".into(),
                created: 1_700_000_000,
            },
        )
    }};
}

/// An OpenAI stream as the wire delivers it: 20 text chunks, then a tool
/// call whose arguments come in three fragments.
fn openai_stream() -> Vec<String> {
    let mut frames = vec![role_chunk()];
    frames.extend((0..20).map(|i| text_chunk(&format!("word{i} "))));
    frames.extend([
        tool_start_chunk(0, "call_1", "demo__calculate"),
        tool_args_chunk(0, "{\"expr"),
        tool_args_chunk(0, "ession\": \"6*"),
        tool_args_chunk(0, "7\"}"),
        finish_chunk("tool_calls"),
        DONE.into(),
    ]);
    frames
}

/// The same answer as an Anthropic stream.
fn anthropic_stream() -> Vec<String> {
    let mut frames = vec![
        anthropic_message_start(),
        anthropic_event(
            json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
        ),
    ];
    frames.extend((0..20).map(|i| {
        anthropic_event(
            json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": format!("word{i} ") } }),
        )
    }));
    frames.push(anthropic_event(
        json!({ "type": "content_block_stop", "index": 0 }),
    ));
    frames.extend(anthropic_tool_block(
        1,
        "toolu_1",
        "demo__calculate",
        &["{\"expr", "ession\": \"6*", "7\"}"],
    ));
    frames.extend(anthropic_stop("tool_use"));
    frames
}

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn plugin_runtime(rt: &tokio::runtime::Runtime) -> PluginRuntime {
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-plugin-cache");
    rt.block_on(PluginRuntime::new(
        SandboxLimits::from_config(&Limits::default()),
        Some(cache),
    ))
    .unwrap()
}

/// Encodes the canonical chat `iters` times through the component, one
/// call per event or one call per chat, each time on a new response
/// stream as a server would; returns the time spent encoding, leaving out
/// the stream's set-up (measured on its own below).
fn wasm_encode(
    rt: &tokio::runtime::Runtime,
    plugin: &plugins::EncoderPlugin,
    iters: u64,
    batched: bool,
) -> Duration {
    let (events, options) = canonical_chat!(agenthost::plugins);
    rt.block_on(async {
        let mut spent = Duration::ZERO;
        for _ in 0..iters {
            let mut instance = plugin.instantiate(&options).await.unwrap();
            let start = Instant::now();
            if batched {
                black_box(instance.encode(&events).await.unwrap());
            } else {
                for event in &events {
                    black_box(instance.encode(std::slice::from_ref(event)).await.unwrap());
                }
            }
            spent += start.elapsed();
        }
        spent
    })
}

/// The twin of [`wasm_encode`]: the plugin's own `Encoder`, natively, with
/// the same copies the component boundary makes (events in, bytes out).
fn native_encode<E: agenthost_plugin::Encoder>(iters: u64, batched: bool) -> Duration {
    let (events, options) = canonical_chat!(agenthost_plugin::types);
    let mut spent = Duration::ZERO;
    for _ in 0..iters {
        let mut encoder = E::new(options.clone());
        let start = Instant::now();
        if batched {
            let mut out = String::new();
            encoder.encode(events.clone(), &mut out);
            black_box(out.into_bytes());
        } else {
            for event in &events {
                let mut out = String::new();
                encoder.encode(vec![event.clone()], &mut out);
                black_box(out.into_bytes());
            }
        }
        spent += start.elapsed();
    }
    spent
}

fn encoders(c: &mut Criterion) {
    let rt = tokio();
    let runtime = plugin_runtime(&rt);
    let events = canonical_chat!(agenthost::plugins).0.len() as u64;
    type Native = fn(u64, bool) -> Duration;
    let formats: [(&str, Native); 4] = [
        ("feather", native_encode::<feather_plugin::Feather>),
        ("truefoundry", native_encode::<truefoundry_plugin::Stream>),
        ("simple", native_encode::<simple_plugin::SimpleStream>),
        ("mcp-chat", native_encode::<mcp_chat_plugin::McpChat>),
    ];
    for (name, native) in formats {
        let plugin = runtime.encoder(name).unwrap();
        let mut group = c.benchmark_group(format!("encode/{name}"));
        group.throughput(Throughput::Elements(events));
        for (mode, batched) in [("per-event", false), ("batched", true)] {
            group.bench_function(format!("wasm/{mode}"), |b| {
                b.iter_custom(|iters| wasm_encode(&rt, &plugin, iters, batched))
            });
            group.bench_function(format!("native/{mode}"), |b| {
                b.iter_custom(|iters| native(iters, batched))
            });
        }
        group.finish();
    }
}

/// Decodes `frames`, fed one frame per call as the network delivers them,
/// `iters` times through the component, each with a new place in the
/// plugin's instances as a server would; taking the place is left out.
fn wasm_decode(
    rt: &tokio::runtime::Runtime,
    plugin: &plugins::ProviderPlugin,
    frames: &[String],
    iters: u64,
) -> Duration {
    rt.block_on(async {
        let mut spent = Duration::ZERO;
        for _ in 0..iters {
            let mut instance = plugin.instantiate().await.unwrap();
            let start = Instant::now();
            let decoder = instance.new_decoder().await.unwrap();
            for frame in frames {
                black_box(instance.feed(decoder, frame.as_bytes()).await.unwrap());
            }
            black_box(instance.finish(decoder).await.unwrap());
            spent += start.elapsed();
        }
        spent
    })
}

fn native_decode<P: agenthost_plugin::Provider>(frames: &[String], iters: u64) -> Duration {
    use agenthost_plugin::Decoder;
    let start = Instant::now();
    for _ in 0..iters {
        let mut decoder = P::Decoder::default();
        for frame in frames {
            black_box(decoder.feed(frame.as_bytes()).unwrap());
        }
        black_box(decoder.finish().unwrap());
    }
    start.elapsed()
}

fn decoders(c: &mut Criterion) {
    let rt = tokio();
    let runtime = plugin_runtime(&rt);
    type Native = fn(&[String], u64) -> Duration;
    let providers: [(&str, Vec<String>, Native); 2] = [
        (
            "openai",
            openai_stream(),
            native_decode::<openai_plugin::OpenAi>,
        ),
        (
            "anthropic",
            anthropic_stream(),
            native_decode::<anthropic_plugin::Anthropic>,
        ),
    ];
    for (name, frames, native) in providers {
        let plugin = runtime.provider(name).unwrap();
        let mut group = c.benchmark_group(format!("decode/{name}"));
        group.throughput(Throughput::Elements(frames.len() as u64));
        group.bench_function("wasm", |b| {
            b.iter_custom(|iters| wasm_decode(&rt, &plugin, &frames, iters))
        });
        group.bench_function("native", |b| b.iter_custom(|iters| native(&frames, iters)));
        group.finish();
    }
}

/// Setting up one response: a stream's place in one of the plugin's live
/// instances and its resource (an encoder stream, a decoder).
fn stream_setup(c: &mut Criterion) {
    let rt = tokio();
    let runtime = plugin_runtime(&rt);
    let (_, options) = canonical_chat!(agenthost::plugins);
    let encoder = runtime.encoder("feather").unwrap();
    let provider = runtime.provider("openai").unwrap();
    let mut group = c.benchmark_group("stream-setup");
    group.bench_function("encoder-stream", |b| {
        b.iter(|| rt.block_on(async { black_box(encoder.instantiate(&options).await.unwrap()) }))
    });
    group.bench_function("provider-decoder", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut instance = provider.instantiate().await.unwrap();
                black_box(instance.new_decoder().await.unwrap());
                instance
            })
        })
    });
    group.finish();
}

/// The fixed cost of one encoder call, apart from any encoding: a call
/// with no events on a live stream. One event per call can come no closer
/// to native than this allows.
fn call_floor(c: &mut Criterion) {
    let rt = tokio();
    let runtime = plugin_runtime(&rt);
    let (_, options) = canonical_chat!(agenthost::plugins);
    let mut group = c.benchmark_group("encoder-call-floor");
    for name in ["feather", "truefoundry", "simple", "mcp-chat"] {
        let plugin = runtime.encoder(name).unwrap();
        let mut stream = rt.block_on(plugin.instantiate(&options)).unwrap();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(stream.encode(&[]).await.unwrap());
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = encoders, decoders, stream_setup, call_floor
}
criterion_main!(benches);
