//! `agenthost plugin test`: a conformance suite run through the real
//! plugin runtime.
//!
//! Encoders get a canonical event sequence (text with unicode, quotes and
//! newlines, a tool call streamed in fragments, results that succeeded and
//! failed, several turns, done) and a stream that ends in an error. The
//! host batches events however they arrive, so the bytes must not depend
//! on the batching; text must survive intact; nothing may trap.
//!
//! Providers get a chat request with tools, tool calls and unicode to
//! build, and, when given a recorded response body, must decode it to the
//! same events whether it arrives whole or one byte at a time, ending the
//! turn.

use std::path::Path;

use super::{DevError, read, runtime};
use crate::plugins::{
    ChatEvent, ChatRequest, EncoderPlugin, FinishReason, Message, Outbound, ProviderConfig,
    ProviderEvent, ProviderPlugin, Role, StreamOptions, ToolCall, ToolCallArgsDelta, ToolCallInfo,
    ToolCallReady, ToolResult, ToolSpec, TurnEnd,
};

/// One check's outcome, printed as a line of the report.
struct Check {
    name: &'static str,
    outcome: Result<(), String>,
}

/// Runs the suite for the component at `path`; `recorded` is a provider
/// response body to decode.
pub async fn test(path: &Path, recorded: Option<&Path>) -> Result<String, DevError> {
    let checked = runtime()?
        .check(&path.display().to_string(), &read(path)?)
        .await?;
    let recorded = recorded.map(read).transpose()?;
    let checks = match (checked.encoder(), checked.provider()) {
        (Some(encoder), _) => encoder_checks(encoder).await,
        (None, Some(provider)) => provider_checks(provider, recorded.as_deref()).await,
        (None, None) => Vec::new(),
    };
    let mut report = String::new();
    let failed = checks.iter().filter(|c| c.outcome.is_err()).count();
    for check in &checks {
        match &check.outcome {
            Ok(()) => report.push_str(&format!("ok    {}\n", check.name)),
            Err(why) => report.push_str(&format!("FAIL  {}: {why}\n", check.name)),
        }
    }
    if failed > 0 {
        eprint!("{report}");
        return Err(DevError::Failed {
            failed,
            total: checks.len(),
        });
    }
    report.push_str(&format!("{} checks passed\n", checks.len()));
    Ok(report)
}

const TEXTS: [&str; 3] = ["Grüße, 世界 👋 ", "\"quoted\" and\nnew line\t", "done."];

fn call(id: &str) -> ToolCallInfo {
    ToolCallInfo {
        id: id.into(),
        name: "demo__calculate".into(),
        server: "demo".into(),
        tool: "calculate".into(),
    }
}

/// A chat with text, two tool calls (one failing) and a second turn.
fn canonical_events() -> Vec<ChatEvent> {
    vec![
        ChatEvent::TextDelta(TEXTS[0].into()),
        ChatEvent::ToolCallStart(call("call_1")),
        ChatEvent::ToolCallArgsDelta(ToolCallArgsDelta {
            id: "call_1".into(),
            fragment: "{\"expression\":".into(),
        }),
        ChatEvent::ToolCallArgsDelta(ToolCallArgsDelta {
            id: "call_1".into(),
            fragment: " \"6*7\"}".into(),
        }),
        ChatEvent::ToolCallStart(call("call_2")),
        ChatEvent::TurnEnd(TurnEnd {
            iteration: 1,
            reason: FinishReason::ToolCalls,
        }),
        ChatEvent::ToolCall(ToolCallReady {
            call: call("call_1"),
            arguments: "{\"expression\": \"6*7\"}".into(),
        }),
        ChatEvent::ToolCall(ToolCallReady {
            call: call("call_2"),
            arguments: "{}".into(),
        }),
        ChatEvent::ToolResult(ToolResult {
            call: call("call_1"),
            content: r#"{"content":[{"type":"text","text":"42 ✓"}],"isError":false}"#.into(),
            is_error: false,
        }),
        ChatEvent::ToolResult(ToolResult {
            call: call("call_2"),
            content: "\"the tool is unavailable\"".into(),
            is_error: true,
        }),
        ChatEvent::TextDelta(TEXTS[1].into()),
        ChatEvent::TextDelta(TEXTS[2].into()),
        ChatEvent::TurnEnd(TurnEnd {
            iteration: 2,
            reason: FinishReason::Stop,
        }),
        ChatEvent::Done,
    ]
}

fn options() -> StreamOptions {
    StreamOptions {
        response_id: "conformance1".into(),
        model: "test-model".into(),
        created: 1_700_000_000,
    }
}

/// Encodes `events` in the given batches, then finishes.
async fn encode(encoder: &EncoderPlugin, batches: &[&[ChatEvent]]) -> Result<Vec<u8>, String> {
    let mut instance = encoder
        .instantiate(&options())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for batch in batches {
        out.extend(instance.encode(batch).await.map_err(|e| e.to_string())?);
    }
    out.extend(instance.finish().await.map_err(|e| e.to_string())?);
    Ok(out)
}

async fn encoder_checks(encoder: &EncoderPlugin) -> Vec<Check> {
    let events = canonical_events();
    let whole = encode(encoder, &[&events]).await;
    let one_by_one: Vec<&[ChatEvent]> = events.chunks(1).collect();
    let split = encode(encoder, &one_by_one).await;
    let again = encode(encoder, &[&events]).await;
    let error_stream = [
        ChatEvent::TextDelta("partial".into()),
        ChatEvent::Error("the provider failed: überlastet".into()),
    ];
    let error_bytes = encode(encoder, &[&error_stream]).await;
    let is_text = encoder.info.content_type.starts_with("text/")
        || encoder.info.content_type.contains("json");
    vec![
        Check {
            name: "encodes a chat with tool calls, results and two turns",
            outcome: whole.as_ref().map(drop).map_err(Clone::clone),
        },
        Check {
            name: "bytes do not depend on how events are batched",
            outcome: match (&whole, &split) {
                (Ok(a), Ok(b)) if a == b => Ok(()),
                (Ok(_), Ok(_)) => {
                    Err("one batch and one event per call gave different bytes".into())
                }
                (_, Err(e)) | (Err(e), _) => Err(e.clone()),
            },
        },
        Check {
            name: "text output is valid UTF-8 with the answer's text intact",
            outcome: whole.as_ref().map_err(Clone::clone).and_then(|bytes| {
                if !is_text {
                    return Ok(());
                }
                let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
                // Formats may drop the text of a turn that called tools
                // (it was not the answer), never the final turn's.
                TEXTS[1..]
                    .iter()
                    .find(|t| !text.contains(**t) && !text.contains(json_inner(t).as_str()))
                    .map_or(Ok(()), |t| Err(format!("{t:?} is missing or mangled")))
            }),
        },
        Check {
            name: "same input, same bytes (no hidden state between streams)",
            outcome: match (&whole, &again) {
                (Ok(a), Ok(b)) if a == b => Ok(()),
                (Ok(_), Ok(_)) => Err("two fresh streams gave different bytes".into()),
                (_, Err(e)) | (Err(e), _) => Err(e.clone()),
            },
        },
        Check {
            name: "an error event produces output",
            outcome: error_bytes.and_then(|bytes| {
                if bytes.is_empty() {
                    Err("nothing was written for the error".into())
                } else {
                    Ok(())
                }
            }),
        },
    ]
}

/// A string as it appears inside a JSON string literal.
fn json_inner(text: &str) -> String {
    let quoted = serde_json::Value::from(text).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

fn canonical_request() -> ChatRequest {
    ChatRequest {
        model: "test-model".into(),
        messages: vec![
            Message {
                role: Role::System,
                content: "Be brief.".into(),
                tool_calls: Vec::new(),
                tool_call_id: None,
            },
            Message {
                role: Role::User,
                content: "Wie viel ist 6*7? 🙂".into(),
                tool_calls: Vec::new(),
                tool_call_id: None,
            },
            Message {
                role: Role::Assistant,
                content: String::new(),
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "demo__calculate".into(),
                    arguments: "{\"expression\":\"6*7\"}".into(),
                }],
                tool_call_id: None,
            },
            Message {
                role: Role::Tool,
                content: "42".into(),
                tool_calls: Vec::new(),
                tool_call_id: Some("call_1".into()),
            },
        ],
        tools: vec![ToolSpec {
            name: "demo__calculate".into(),
            description: "Evaluate arithmetic".into(),
            input_schema: r#"{"type":"object","properties":{"expression":{"type":"string"}}}"#
                .into(),
        }],
        max_tokens: Some(256),
        temperature: Some(0.5),
        top_p: None,
    }
}

async fn decode(provider: &ProviderPlugin, pieces: &[&[u8]]) -> Result<Vec<ProviderEvent>, String> {
    let mut instance = provider.instantiate().await.map_err(|e| e.to_string())?;
    let decoder = instance.new_decoder().await.map_err(|e| e.to_string())?;
    let mut events = Vec::new();
    for piece in pieces {
        let decoded = instance.feed(decoder, piece).await;
        events.extend(decoded.map_err(|e| e.to_string())?);
    }
    let decoded = instance.finish(decoder).await;
    events.extend(decoded.map_err(|e| e.to_string())?);
    Ok(events)
}

async fn provider_checks(provider: &ProviderPlugin, recorded: Option<&[u8]>) -> Vec<Check> {
    let config = ProviderConfig {
        base_url: "http://127.0.0.1:9/v1".into(),
    };
    let built = match provider.instantiate().await {
        Ok(mut instance) => instance
            .build_request(&config, &canonical_request())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let body = match &built {
        Ok(Outbound::Offline(body)) => Some(body.clone()),
        _ => recorded.map(<[u8]>::to_vec),
    };
    let mut checks = vec![Check {
        name: "builds a request for a chat with tools, tool results and unicode",
        outcome: match &built {
            Ok(Outbound::Http(http)) if !http.url.starts_with(&config.base_url) => Err(format!(
                "the URL {} ignores the configured base URL",
                http.url
            )),
            Ok(Outbound::Http(http)) if std::str::from_utf8(&http.body).is_err() => {
                Err("the request body is not UTF-8".into())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e.clone()),
        },
    }];
    let Some(body) = body else {
        checks.push(Check {
            name: "decodes a recorded response (pass --recorded FILE to run)",
            outcome: Ok(()),
        });
        return checks;
    };
    let whole = decode(provider, &[&body]).await;
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    let byte_by_byte = decode(provider, &bytes).await;
    let cut = decode(provider, &[&body[..body.len() / 2]]).await;
    checks.push(Check {
        name: "decodes the response and finishes the turn",
        outcome: whole.as_ref().map_err(Clone::clone).and_then(|events| {
            if events.iter().any(|e| matches!(e, ProviderEvent::Finish(_))) {
                Ok(())
            } else {
                Err("no finish event".into())
            }
        }),
    });
    checks.push(Check {
        name: "the same events whether bytes arrive whole or one at a time",
        outcome: match (&whole, &byte_by_byte) {
            (Ok(a), Ok(b)) if a == b => Ok(()),
            (Ok(_), Ok(_)) => Err("decoding byte by byte gave different events".into()),
            (_, Err(e)) | (Err(e), _) => Err(e.clone()),
        },
    });
    checks.push(Check {
        name: "a response cut in half is not taken for a finished turn",
        outcome: match cut {
            Err(_) => Ok(()),
            Ok(events) if !events.iter().any(|e| matches!(e, ProviderEvent::Finish(_))) => Ok(()),
            Ok(_) => Err("half a response decoded to a finished turn".into()),
        },
    });
    checks
}
