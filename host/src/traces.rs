//! Traces: OpenTelemetry spans sent over OTLP/HTTP, off unless
//! `[telemetry] otlp_endpoint` is set.
//!
//! Spans follow the GenAI semantic conventions: a chat is an
//! `invoke_agent` span; each request to a model a `chat {model}` client
//! span with the model and the tokens it counted; each tool call an
//! `execute_tool {tool}` span. A chat's context travels with the chat's
//! future (see [`Traces::chat`]), so the spans below it find their parent
//! without being handed it, and a tool call hands its own context on to
//! the MCP server as W3C `traceparent` (see [`crate::mcp::call_meta`]).
//!
//! Off, there is no tracer: each method returns at its first line and a
//! chat's future is not wrapped, so chats pay one branch for traces.

use std::collections::HashMap;
use std::fmt::Display;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue, StringValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanData, SpanExporter};

use crate::config::{OtlpProtocol, TelemetryConfig};
use crate::plugins::{ChatRequest, FinishReason, TokenUsage};

/// How long one export may take before the exporter gives it up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The path an OTLP/HTTP collector takes traces on.
const TRACES_PATH: &str = "/v1/traces";

#[derive(Debug, thiserror::Error)]
#[error("[telemetry] otlp_endpoint `{endpoint}`: {cause}")]
pub struct TracesError {
    endpoint: String,
    cause: String,
}

/// Makes spans, or nothing when traces are off. Cheap to clone.
#[derive(Clone, Default)]
pub struct Traces {
    tracer: Option<SdkTracer>,
}

/// Sends the spans still queued when the server stops.
pub struct TraceExport(SdkTracerProvider);

impl TraceExport {
    /// Flushes and stops the exporter; it blocks, so off the runtime.
    pub async fn shutdown(self) {
        let provider = self.0;
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = stopped {
            tracing::warn!("cannot send the last traces: {e}");
        }
    }
}

/// Starts the exporter when an endpoint is configured.
pub async fn start(config: &TelemetryConfig) -> Result<(Traces, Option<TraceExport>), TracesError> {
    let Some(endpoint) = config.otlp_endpoint.clone() else {
        return Ok((Traces::default(), None));
    };
    let url = traces_url(&endpoint).map_err(|cause| TracesError {
        endpoint: endpoint.clone(),
        cause,
    })?;
    let protocol = match config.otlp_protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    // The exporter's blocking HTTP client runs its own runtime, which may
    // not be made or dropped on this one.
    let built = tokio::task::spawn_blocking(move || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .with_protocol(protocol)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map(|inner| {
                SdkTracerProvider::builder()
                    .with_batch_exporter(SayingExporter { inner, url })
                    .with_resource(
                        Resource::builder()
                            .with_service_name("agenthost")
                            .with_attribute(KeyValue::new(
                                "service.version",
                                env!("CARGO_PKG_VERSION"),
                            ))
                            .build(),
                    )
                    .build()
            })
    })
    .await;
    let provider = match built {
        Ok(Ok(provider)) => provider,
        Ok(Err(e)) => {
            return Err(TracesError {
                endpoint,
                cause: e.to_string(),
            });
        }
        Err(e) => {
            return Err(TracesError {
                endpoint,
                cause: format!("the exporter could not be started: {e}"),
            });
        }
    };
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "agenthost");
    tracing::info!("sending traces to {endpoint}");
    Ok((
        Traces {
            tracer: Some(tracer),
        },
        Some(TraceExport(provider)),
    ))
}

/// The OTLP exporter, saying in our log when a batch could not be sent:
/// the SDK's own word on it goes nowhere.
#[derive(Debug)]
struct SayingExporter {
    inner: opentelemetry_otlp::SpanExporter,
    url: String,
}

impl SpanExporter for SayingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let sent = self.inner.export(batch).await;
        if let Err(e) = &sent {
            tracing::warn!("cannot send {spans} spans to {}: {e}", self.url);
        }
        sent
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A collector's base URL gets the traces path; a full one is kept.
fn traces_url(endpoint: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("write an http:// or https:// URL".into());
    }
    let trimmed = endpoint.trim_end_matches('/');
    if url.path().trim_end_matches('/').ends_with(TRACES_PATH) {
        Ok(trimmed.to_owned())
    } else {
        Ok(format!("{trimmed}{TRACES_PATH}"))
    }
}

impl Traces {
    /// A chat's span as a context, for the chat's future to run in
    /// (`opentelemetry::context::FutureExt::with_context`).
    pub fn chat(&self, model: &str, org: Option<&str>) -> Option<Context> {
        let tracer = self.tracer.as_ref()?;
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", "agenthost"),
            KeyValue::new("gen_ai.request.model", model.to_owned()),
        ];
        if let Some(org) = org {
            attributes.push(KeyValue::new("agenthost.org", org.to_owned()));
        }
        let span = tracer
            .span_builder("invoke_agent agenthost")
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .start(tracer);
        Some(Context::current_with_span(span))
    }

    /// Ends the current chat's span, with the kind and text of the error
    /// that ended the chat; the text is only made when traces are on.
    pub fn end_chat(&self, error: Option<(&'static str, &dyn Display)>) {
        if self.tracer.is_none() {
            return;
        }
        let cx = Context::current();
        let span = cx.span();
        if let Some((kind, message)) = error {
            span.set_attribute(KeyValue::new("error.type", kind));
            span.set_status(Status::error(message.to_string()));
        }
        span.end();
    }

    /// A span for one request to a model, under the current chat.
    pub fn model_request(
        &self,
        provider: &str,
        plugin: &str,
        base_url: &str,
        request: &ChatRequest,
    ) -> ModelSpan {
        let Some(tracer) = self.tracer.as_ref() else {
            return ModelSpan(None);
        };
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", plugin.to_owned()),
            KeyValue::new("gen_ai.request.model", request.model.clone()),
            KeyValue::new("agenthost.provider", provider.to_owned()),
        ];
        if let Some(max_tokens) = request.max_tokens {
            attributes.push(KeyValue::new(
                "gen_ai.request.max_tokens",
                i64::from(max_tokens),
            ));
        }
        if let Some(temperature) = request.temperature {
            attributes.push(KeyValue::new(
                "gen_ai.request.temperature",
                f64::from(temperature),
            ));
        }
        if let Some(top_p) = request.top_p {
            attributes.push(KeyValue::new("gen_ai.request.top_p", f64::from(top_p)));
        }
        if let Ok(url) = reqwest::Url::parse(base_url)
            && let Some(host) = url.host_str()
        {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
            if let Some(port) = url.port_or_known_default() {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        let span = tracer
            .span_builder(format!("chat {}", request.model))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, &Context::current());
        ModelSpan(Some(span))
    }

    /// A span for one tool call, under the current chat if there is one.
    pub fn tool_call(&self, server: &str, tool: &str) -> ToolSpan {
        let Some(tracer) = self.tracer.as_ref() else {
            return ToolSpan(None);
        };
        let span = tracer
            .span_builder(format!("execute_tool {tool}"))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "execute_tool"),
                KeyValue::new("gen_ai.tool.name", tool.to_owned()),
                KeyValue::new("gen_ai.tool.type", "extension"),
                KeyValue::new("mcp.method.name", "tools/call"),
                KeyValue::new("agenthost.mcp.server", server.to_owned()),
            ])
            .start_with_context(tracer, &Context::current());
        ToolSpan(Some(Context::current_with_span(span)))
    }
}

/// One model request's span; records what the response said when it ends.
pub struct ModelSpan(Option<opentelemetry_sdk::trace::Span>);

impl ModelSpan {
    pub fn end(
        self,
        response_model: Option<&str>,
        usage: Option<&TokenUsage>,
        finish: Option<FinishReason>,
        error: Option<(&'static str, &dyn Display)>,
    ) {
        let Some(mut span) = self.0 else {
            return;
        };
        if let Some(model) = response_model {
            span.set_attribute(KeyValue::new("gen_ai.response.model", model.to_owned()));
        }
        if let Some(usage) = usage {
            span.set_attribute(KeyValue::new(
                "gen_ai.usage.input_tokens",
                i64::from(usage.input_tokens),
            ));
            span.set_attribute(KeyValue::new(
                "gen_ai.usage.output_tokens",
                i64::from(usage.output_tokens),
            ));
        }
        if let Some(reason) = finish {
            let reasons = vec![StringValue::from(finish_reason(reason))];
            span.set_attribute(KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(reasons.into()),
            ));
        }
        if let Some((kind, message)) = error {
            span.set_attribute(KeyValue::new("error.type", kind));
            span.set_status(Status::error(message.to_string()));
        }
        span.end();
    }
}

/// One tool call's span, and the trace context to hand the server.
pub struct ToolSpan(Option<Context>);

impl ToolSpan {
    /// `traceparent` (and `tracestate`) for the call's `_meta`; empty when
    /// traces are off.
    pub fn trace_context(&self) -> HashMap<String, String> {
        let mut carrier = HashMap::new();
        if let Some(cx) = &self.0 {
            TraceContextPropagator::new().inject_context(cx, &mut carrier);
        }
        carrier
    }

    /// `outcome` is the tool-call metric's: `ok`, `tool_error`, `denied`,
    /// `failed`.
    pub fn end(self, outcome: &'static str, error: Option<&str>) {
        let Some(cx) = self.0 else {
            return;
        };
        let span = cx.span();
        if let Some(error) = error {
            span.set_attribute(KeyValue::new("error.type", outcome));
            span.set_status(Status::error(error.to_owned()));
        }
        span.end();
    }
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collector_base_url_gets_the_traces_path_and_a_full_one_is_kept() {
        assert_eq!(
            traces_url("http://collector:4318").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example/v1/traces").unwrap(),
            "https://otel.example/v1/traces"
        );
        assert!(traces_url("collector:4318").is_err());
        assert!(traces_url("not a url").is_err());
    }

    #[test]
    fn off_makes_no_span_and_no_trace_context() {
        let traces = Traces::default();
        assert!(traces.chat("m", None).is_none());
        let tool = traces.tool_call("demo", "calculate");
        assert!(tool.trace_context().is_empty());
    }
}
