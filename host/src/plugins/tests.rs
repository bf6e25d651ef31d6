//! The built-in plugins loaded through the real runtime, checked against
//! golden bytes.

use std::time::Duration;

use super::*;

/// The built-ins under generous limits; shared with the fuzz tests.
pub(super) async fn runtime() -> PluginRuntime {
    sharing_runtime(32).await
}

/// [`runtime`], with `streams` streams per instance at most.
pub(super) async fn sharing_runtime(streams: usize) -> PluginRuntime {
    let limits = SandboxLimits {
        call_timeout: Duration::from_secs(5),
        memory_bytes: 64 << 20,
        output_bytes: 64 << 20,
        streams_per_instance: streams,
    };
    PluginRuntime::new(limits, None).await.unwrap()
}

pub(super) async fn simple_stream(runtime: &PluginRuntime) -> EncoderInstance {
    let options = StreamOptions {
        response_id: "r".into(),
        model: "m".into(),
        created: 0,
    };
    runtime
        .encoder("simple")
        .unwrap()
        .instantiate(&options)
        .await
        .unwrap()
}

async fn provider_instance(runtime: &PluginRuntime, name: &str) -> ProviderInstance {
    runtime.provider(name).unwrap().instantiate().await.unwrap()
}

fn call(id: &str, tool: &str) -> ToolCallInfo {
    ToolCallInfo {
        id: id.into(),
        name: format!("demo__{tool}"),
        server: "demo".into(),
        tool: tool.into(),
    }
}

#[tokio::test]
async fn simple_encoder_matches_the_seed_format() {
    let runtime = runtime().await;
    let mut stream = simple_stream(&runtime).await;
    let mut out = stream
        .encode(&[
            ChatEvent::TextDelta("Let me check. ".into()),
            ChatEvent::ToolCallStart(call("tc-1", "get_weather")),
            ChatEvent::ToolCallArgsDelta(ToolCallArgsDelta {
                id: "tc-1".into(),
                fragment: "{}".into(),
            }),
            ChatEvent::ToolCall(ToolCallReady {
                call: call("tc-1", "get_weather"),
                arguments: r#"{"city":"San Francisco"}"#.into(),
            }),
            ChatEvent::TurnEnd(TurnEnd {
                iteration: 1,
                reason: FinishReason::ToolCalls,
            }),
            ChatEvent::ToolResult(ToolResult {
                call: call("tc-1", "get_weather"),
                content: "{}".into(),
                is_error: false,
            }),
        ])
        .await
        .unwrap();
    out.extend(
        stream
            .encode(&[
                ChatEvent::TextDelta("It is 65°F\n".into()),
                ChatEvent::TextDelta("and \"sunny\".".into()),
                ChatEvent::TurnEnd(TurnEnd {
                    iteration: 2,
                    reason: FinishReason::Stop,
                }),
                ChatEvent::Done,
            ])
            .await
            .unwrap(),
    );
    out.extend(stream.finish().await.unwrap());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        concat!(
            "data: {\"type\": \"tool_start\", \"id\": \"tc-1\", \"name\": \"get_weather\", \"args\": {\"city\": \"San Francisco\"}}\n\n",
            "data: {\"type\": \"tool_end\", \"id\": \"tc-1\", \"name\": \"get_weather\"}\n\n",
            "data: {\"type\": \"text\", \"content\": \"It is 65°F\\n\"}\n\n",
            "data: {\"type\": \"text\", \"content\": \"and \\\"sunny\\\".\"}\n\n",
            "data: [DONE]\n\n",
        )
    );
}

#[tokio::test]
async fn simple_encoder_reports_errors_on_one_line() {
    let runtime = runtime().await;
    let mut stream = simple_stream(&runtime).await;
    let out = stream
        .encode(&[ChatEvent::Error("bad\nthing".into())])
        .await
        .unwrap();
    assert_eq!(out, b"data: [ERROR] bad thing\n\n");
}

#[tokio::test]
async fn openai_decoder_reassembles_a_recorded_stream_split_anywhere() {
    let recorded = concat!(
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hé\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"demo__calculate\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"expression\\\":\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"1+1\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":31,\"completion_tokens\":9,\"total_tokens\":40}}\n\n",
        "data: [DONE]\n\n",
    )
    .as_bytes();
    let runtime = runtime().await;
    let plugin = runtime.provider("openai").unwrap();
    for chunk_size in [1, 7, 64, recorded.len()] {
        let mut instance = plugin.instantiate().await.unwrap();
        let decoder = instance.new_decoder().await.unwrap();
        let mut events = Vec::new();
        for chunk in recorded.chunks(chunk_size) {
            events.extend(instance.feed(decoder, chunk).await.unwrap());
        }
        events.extend(instance.finish(decoder).await.unwrap());
        let described: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
        assert_eq!(events.len(), 6, "chunk size {chunk_size}: {described:?}");
        assert!(matches!(&events[0], ProviderEvent::TextDelta(t) if t == "Hé"));
        assert!(
            matches!(&events[1], ProviderEvent::ToolCallBegin(b) if b.id == "call_1" && b.name == "demo__calculate")
        );
        assert!(
            matches!(&events[2], ProviderEvent::ToolCallFragment(f) if f.fragment == "{\"expression\":")
        );
        assert!(
            matches!(&events[3], ProviderEvent::ToolCallFragment(f) if f.fragment == "\"1+1\"}")
        );
        assert!(matches!(
            &events[4],
            ProviderEvent::Finish(FinishReason::ToolCalls)
        ));
        assert!(matches!(
            &events[5],
            ProviderEvent::Usage(TokenUsage {
                input_tokens: 31,
                output_tokens: 9
            })
        ));
    }
}

#[tokio::test]
async fn anthropic_decoder_reports_usage_with_cached_input_counted() {
    let recorded = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":20,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":12}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let runtime = runtime().await;
    let mut instance = provider_instance(&runtime, "anthropic").await;
    let decoder = instance.new_decoder().await.unwrap();
    let mut events = instance.feed(decoder, recorded.as_bytes()).await.unwrap();
    events.extend(instance.finish(decoder).await.unwrap());
    let usage: Vec<&TokenUsage> = events
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::Usage(usage) => Some(usage),
            _ => None,
        })
        .collect();
    assert_eq!(
        usage,
        [&TokenUsage {
            input_tokens: 120,
            output_tokens: 12
        }]
    );
    assert!(matches!(
        events.last(),
        Some(ProviderEvent::Finish(FinishReason::Stop))
    ));
}

#[tokio::test]
async fn openai_request_passes_schemas_through_and_names_the_auth_scheme() {
    let runtime = runtime().await;
    let mut instance = provider_instance(&runtime, "openai").await;
    let request = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![Message {
            role: Role::User,
            content: "hi".into(),
            tool_calls: vec![],
            tool_call_id: None,
        }],
        tools: vec![ToolSpec {
            name: "demo__calculate".into(),
            description: "Evaluate".into(),
            input_schema: r#"{"type":"object","properties":{"expression":{"type":"string"}}}"#
                .into(),
        }],
        max_tokens: Some(100),
        temperature: None,
        top_p: None,
    };
    let config = ProviderConfig {
        base_url: "http://127.0.0.1:9/v1".into(),
    };
    let Outbound::Http(http) = instance.build_request(&config, &request).await.unwrap() else {
        panic!("openai must build an HTTP request");
    };
    assert_eq!(http.url, "http://127.0.0.1:9/v1/chat/completions");
    assert!(matches!(http.auth, AuthScheme::Bearer));
    assert_eq!(
        String::from_utf8(http.body).unwrap(),
        r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"demo__calculate","description":"Evaluate","parameters":{"type":"object","properties":{"expression":{"type":"string"}}}}}],"max_tokens":100}"#
    );
}

#[tokio::test]
async fn refuses_components_that_implement_no_world() {
    let runtime = runtime().await;
    let error = runtime
        .load("empty.wasm", b"\0asm\x0d\x00\x01\x00")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "refused plugin empty.wasm: it exports neither agenthost:plugin/provider-api@0.2.0 (a provider) nor agenthost:plugin/encoder-api@0.2.0 (an encoder), nor either at 0.1.0; it exports: nothing"
    );
    let error = runtime
        .load("x.wasm", b"junk")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("refused plugin x.wasm: not a valid WebAssembly component"),
        "{error}"
    );
    let names: Vec<String> = runtime.list().into_iter().map(|(m, _)| m.name).collect();
    assert_eq!(
        names,
        [
            "anthropic",
            "mock",
            "openai",
            "feather",
            "mcp-chat",
            "simple",
            "truefoundry"
        ]
    );
}

#[tokio::test]
async fn anthropic_request_has_system_tool_use_and_merged_tool_results() {
    let runtime = runtime().await;
    let mut instance = provider_instance(&runtime, "anthropic").await;
    let message = |role, content: &str, id: Option<&str>| Message {
        role,
        content: content.into(),
        tool_calls: vec![],
        tool_call_id: id.map(str::to_owned),
    };
    let mut assistant = message(Role::Assistant, "", None);
    assistant.tool_calls = vec![
        ToolCall {
            id: "t1".into(),
            name: "a".into(),
            arguments: r#"{"x":1}"#.into(),
        },
        ToolCall {
            id: "t2".into(),
            name: "b".into(),
            arguments: "not json".into(),
        },
    ];
    let request = ChatRequest {
        model: "claude-test".into(),
        messages: vec![
            message(Role::System, "Be brief.", None),
            message(Role::User, "hi", None),
            assistant,
            message(Role::Tool, "one", Some("t1")),
            message(Role::Tool, "two", Some("t2")),
        ],
        tools: vec![ToolSpec {
            name: "a".into(),
            description: "A".into(),
            input_schema: r#"{"type":"object"}"#.into(),
        }],
        max_tokens: None,
        temperature: Some(0.5),
        top_p: None,
    };
    let config = ProviderConfig {
        base_url: "http://127.0.0.1:9".into(),
    };
    let Outbound::Http(http) = instance.build_request(&config, &request).await.unwrap() else {
        panic!("anthropic must build an HTTP request");
    };
    assert_eq!(http.url, "http://127.0.0.1:9/v1/messages");
    assert!(matches!(&http.auth, AuthScheme::Header(h) if h == "x-api-key"));
    assert!(
        http.headers
            .contains(&("anthropic-version".into(), "2023-06-01".into()))
    );
    assert_eq!(
        String::from_utf8(http.body).unwrap(),
        concat!(
            r#"{"model":"claude-test","max_tokens":4096,"stream":true,"system":"Be brief.","messages":["#,
            r#"{"role":"user","content":"hi"},"#,
            r#"{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"a","input":{"x":1}},{"type":"tool_use","id":"t2","name":"b","input":{}}]},"#,
            r#"{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"one"},{"type":"tool_result","tool_use_id":"t2","content":"two"}]}"#,
            r#"],"tools":[{"name":"a","description":"A","input_schema":{"type":"object"}}],"temperature":0.5}"#
        )
    );

    // Offered no tools, the API refuses tool blocks: they become text.
    let mut request = request;
    request.tools.clear();
    let Outbound::Http(http) = instance.build_request(&config, &request).await.unwrap() else {
        panic!("anthropic must build an HTTP request");
    };
    assert_eq!(
        String::from_utf8(http.body).unwrap(),
        concat!(
            r#"{"model":"claude-test","max_tokens":4096,"stream":true,"system":"Be brief.","messages":["#,
            r#"{"role":"user","content":"hi"},"#,
            r#"{"role":"assistant","content":"[tool call t1: a {\"x\":1}]\n[tool call t2: b not json]"},"#,
            r#"{"role":"user","content":"[result of tool call t1]\none"},"#,
            r#"{"role":"user","content":"[result of tool call t2]\ntwo"}"#,
            r#"],"temperature":0.5}"#
        )
    );
}
