//! Sending a provider plugin's request: the only place API keys are used,
//! and where transient failures are retried.
//!
//! The plugin names the auth scheme; the key is added here, after the
//! plugin has finished, so it never enters plugin memory. It is also
//! scrubbed from any error body that echoes it.
//!
//! Connection errors, first-byte timeouts, 429 and 5xx are retried with
//! exponential backoff and jitter, honouring `Retry-After`, within an
//! attempt count and a time budget. Once the response has started nothing
//! is retried: the caller has already streamed part of it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;

use crate::config::{AgentConfig, ResolvedProvider, Secret, clamped_secs, seconds};
use crate::plugins::{AuthScheme, HttpRequest};

/// Error bodies are shown to clients; long ones are cut.
const MAX_ERROR_BODY: usize = 2048;
/// Most bytes of the provider's body joined into one decoder call.
const MAX_JOINED: usize = 64 * 1024;
/// How often a read yields for the next piece before handing on what it
/// has. The HTTP client's connection task hands the body over one piece
/// at a time, and a piece it already holds reaches this task two
/// scheduler turns after the last was taken; a third covers a busy turn.
const JOIN_YIELDS: u32 = 3;
/// Longest the first piece waits for others to join it: a provider that
/// streams fast but steadily must not be held back until `MAX_JOINED`.
const MAX_JOIN_WAIT: Duration = Duration::from_millis(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the provider plugin built an invalid request: {0}")]
    Invalid(String),
    #[error("cannot reach the provider: {0}")]
    Connect(String),
    #[error("the provider did not answer within {0} s")]
    FirstByte(f64),
    #[error("the provider answered HTTP {status}: {body}")]
    Status {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("the provider's stream broke off: {0}")]
    Body(String),
    #[error("the provider sent nothing for {0} s")]
    Idle(f64),
    #[error("{last} (gave up after {attempts} attempts)")]
    GaveUp {
        attempts: u32,
        last: Box<UpstreamError>,
    },
    /// A request that failed, with where it went, so the message says
    /// which provider and URL to look at.
    #[error("provider `{provider}` ({url}): {error}{hint}")]
    Request {
        provider: String,
        url: String,
        error: Box<UpstreamError>,
        hint: &'static str,
    },
}

/// What a 404 usually means when the request's path has no API version.
const NO_VERSION_HINT: &str = "; the URL has no /v1: should the provider's base_url end in /v1?";

/// Refuses a request for another origin than the provider's `base_url`.
fn on_origin(url: &str, base_url: &str) -> Result<(), UpstreamError> {
    let parse = |text: &str| {
        reqwest::Url::parse(text)
            .map_err(|e| UpstreamError::Invalid(format!("bad url `{text}`: {e}")))
    };
    let (target, base) = (parse(url)?, parse(base_url)?);
    if target.origin() == base.origin() {
        return Ok(());
    }
    Err(UpstreamError::Invalid(format!(
        "it is for {}, which is not the origin of the provider's base_url {}; it was not sent",
        target.origin().ascii_serialization(),
        base.origin().ascii_serialization()
    )))
}

/// An error and its causes, as `error: cause: cause`; reqwest's own
/// message alone says only "error sending request".
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl UpstreamError {
    /// The failure of the last attempt, under any retry report.
    fn last_attempt(&self) -> &UpstreamError {
        match self {
            UpstreamError::GaveUp { last, .. } => last,
            other => other,
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            UpstreamError::Connect(_) | UpstreamError::FirstByte(_) => true,
            UpstreamError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            _ => false,
        }
    }
}

pub struct Upstream {
    client: reqwest::Client,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    attempts: u32,
    budget: Duration,
}

impl Upstream {
    pub fn new(config: &AgentConfig) -> Result<Upstream, UpstreamError> {
        // A redirect would take the request, and the key a plugin named a
        // header for, to a URL nobody configured.
        let client = reqwest::Client::builder()
            .connect_timeout(seconds(config.connect_timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| UpstreamError::Connect(e.to_string()))?;
        Ok(Upstream {
            client,
            first_byte_timeout: seconds(config.first_byte_timeout_secs),
            idle_timeout: seconds(config.provider_idle_timeout_secs),
            attempts: config.retry_attempts.max(1),
            budget: seconds(config.retry_budget_secs),
        })
    }

    /// Sends the request, retrying transient failures, and returns the
    /// response once its status is 2xx. The plugin built the request; it
    /// must stay on the origin of the provider's `base_url`, where the key
    /// belongs.
    pub async fn send(
        &self,
        request: &HttpRequest,
        provider: &ResolvedProvider,
        key: Option<&Secret>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let sent = self.send_retrying(request, provider, key).await;
        crate::metrics::model_request(&provider.name, sent.is_ok());
        sent.map_err(|error| {
            let url = request.url.split('?').next().unwrap_or_default().to_owned();
            let not_found = matches!(
                error.last_attempt(),
                UpstreamError::Status { status: 404, .. }
            );
            let hint = if not_found && !url.contains("/v1/") {
                NO_VERSION_HINT
            } else {
                ""
            };
            UpstreamError::Request {
                provider: provider.name.clone(),
                url,
                error: Box::new(error),
                hint,
            }
        })
    }

    async fn send_retrying(
        &self,
        request: &HttpRequest,
        provider: &ResolvedProvider,
        key: Option<&Secret>,
    ) -> Result<reqwest::Response, UpstreamError> {
        on_origin(&request.url, &provider.base_url)?;
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let error = match self.send_once(request, key).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            if !error.is_transient() {
                return Err(error);
            }
            let delay = match &error {
                UpstreamError::Status {
                    retry_after: Some(wait),
                    ..
                } => *wait,
                _ => backoff(attempt),
            };
            if attempt >= self.attempts || started.elapsed() + delay > self.budget {
                return Err(match attempt {
                    1 => error,
                    attempts => UpstreamError::GaveUp {
                        attempts,
                        last: Box::new(error),
                    },
                });
            }
            tracing::warn!(
                attempt,
                provider = %provider.name,
                "provider request failed, retrying in {delay:?}: {error}"
            );
            crate::metrics::model_retry(&provider.name);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn send_once(
        &self,
        request: &HttpRequest,
        key: Option<&Secret>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| UpstreamError::Invalid(format!("bad method `{}`", request.method)))?;
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| UpstreamError::Invalid(format!("bad url `{}`: {e}", request.url)))?;
        let mut builder = self.client.request(method, url).body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        builder = match (&request.auth, key) {
            (AuthScheme::Bearer, Some(key)) => builder.bearer_auth(key.expose()),
            (AuthScheme::Header(name), Some(key)) => builder.header(name, key.expose()),
            _ => builder,
        };
        let response = tokio::time::timeout(self.first_byte_timeout, builder.send())
            .await
            .map_err(|_| UpstreamError::FirstByte(self.first_byte_timeout.as_secs_f64()))?
            .map_err(|e| UpstreamError::Connect(with_causes(&e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|secs| clamped_secs(secs, 0.0, 3600.0));
        let body = response.text().await.unwrap_or_default();
        Err(UpstreamError::Status {
            status: status.as_u16(),
            body: scrub(body, key),
            retry_after,
        })
    }

    /// The next piece of the body, `None` at its end.
    pub async fn next_chunk(
        &self,
        body: &mut ProviderBody,
    ) -> Result<Option<Bytes>, UpstreamError> {
        if let Some(error) = body.failed.take() {
            return Err(error);
        }
        let first = tokio::time::timeout(self.idle_timeout, body.response.chunk())
            .await
            .map_err(|_| UpstreamError::Idle(self.idle_timeout.as_secs_f64()))?
            .map_err(body_error)?;
        let Some(first) = first else {
            return Ok(None);
        };
        Ok(Some(body.take_ready(first).await))
    }
}

/// A provider's streamed answer, read in pieces.
pub struct ProviderBody {
    response: reqwest::Response,
    /// An error met while taking what was ready, reported on the next read
    /// so the bytes before it are decoded first.
    failed: Option<UpstreamError>,
}

impl ProviderBody {
    pub fn new(response: reqwest::Response) -> ProviderBody {
        ProviderBody {
            response,
            failed: None,
        }
    }

    /// `first` joined by whatever else has already arrived. Providers send
    /// each SSE event as an HTTP chunk of its own; when several are in
    /// hand, one decoder call and one event batch serve them all, and the
    /// client gets them in one write. A piece that has arrived but not yet
    /// been handed over is waited for by yielding, a few scheduler turns
    /// at most: a provider that trickles costs a few polls per piece, one
    /// that bursts costs one write per burst instead of one per piece.
    async fn take_ready(&mut self, first: Bytes) -> Bytes {
        let started = Instant::now();
        let mut joined: Option<Vec<u8>> = None;
        let mut yields = 0;
        while joined.as_ref().map_or(first.len(), Vec::len) < MAX_JOINED {
            let more = match self.response.chunk().now_or_never() {
                Some(Ok(Some(more))) => more,
                Some(Err(e)) => {
                    self.failed = Some(body_error(e));
                    break;
                }
                None if yields < JOIN_YIELDS && started.elapsed() < MAX_JOIN_WAIT => {
                    yields += 1;
                    yield_to_scheduler().await;
                    continue;
                }
                Some(Ok(None)) | None => break,
            };
            yields = 0;
            joined
                .get_or_insert_with(|| first.to_vec())
                .extend_from_slice(&more);
        }
        joined.map_or(first, Bytes::from)
    }
}

/// Lets every task already queued run once before this one goes on.
/// Unlike `tokio::task::yield_now`, which defers the wake-up until the
/// worker runs out of work or polls its driver, this comes back after
/// one pass of the queue: long enough for the client's connection task
/// to hand over the next piece, short enough to keep the piece's latency.
async fn yield_to_scheduler() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

fn body_error(e: reqwest::Error) -> UpstreamError {
    UpstreamError::Body(e.without_url().to_string())
}

/// Exponential backoff with full jitter in its upper half.
fn backoff(attempt: u32) -> Duration {
    let ceiling = FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
}

fn scrub(mut body: String, key: Option<&Secret>) -> String {
    if let Some(key) = key
        && !key.expose().is_empty()
    {
        body = body.replace(key.expose(), "[redacted]");
    }
    if body.len() > MAX_ERROR_BODY {
        let mut cut = MAX_ERROR_BODY;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
        body.push('…');
    }
    body.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let ceiling = FIRST_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(MAX_BACKOFF);
            let delay = backoff(attempt);
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{attempt}: {delay:?}"
            );
        }
    }

    fn body_of(pieces: Vec<Result<&'static str, std::io::Error>>) -> ProviderBody {
        let stream = futures::stream::iter(pieces.into_iter().map(|p| p.map(Bytes::from)));
        let response = axum::http::Response::new(reqwest::Body::wrap_stream(stream));
        ProviderBody::new(reqwest::Response::from(response))
    }

    #[tokio::test]
    async fn joins_what_has_arrived_and_reports_errors_after_it() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let upstream = Upstream::new(&AgentConfig::default()).unwrap();
        let mut body = body_of(vec![
            Ok("data: 1\n\n"),
            Ok("data: 2\n\n"),
            Ok("data: 3\n\n"),
        ]);
        let piece = upstream.next_chunk(&mut body).await.unwrap();
        assert_eq!(
            piece.as_deref(),
            Some(&b"data: 1\n\ndata: 2\n\ndata: 3\n\n"[..])
        );
        assert!(upstream.next_chunk(&mut body).await.unwrap().is_none());

        let broken = std::io::Error::other("reset");
        let mut body = body_of(vec![Ok("data: 1\n\n"), Err(broken), Ok("never")]);
        let piece = upstream.next_chunk(&mut body).await.unwrap();
        assert_eq!(piece.as_deref(), Some(&b"data: 1\n\n"[..]));
        let error = upstream.next_chunk(&mut body).await.unwrap_err();
        assert!(matches!(error, UpstreamError::Body(_)), "{error}");
    }

    /// A provider that sends its pieces over a real connection, all at
    /// once, then a last one after a pause.
    async fn provider(pieces: usize, pause: Duration) -> String {
        let body = move || async move {
            let burst = futures::stream::iter(
                (0..pieces).map(|i| Ok::<_, std::io::Error>(Bytes::from(format!("data: {i}\n\n")))),
            );
            let late = futures::stream::once(async move {
                tokio::time::sleep(pause).await;
                Ok(Bytes::from_static(b"data: late\n\n"))
            });
            axum::body::Body::from_stream(futures::StreamExt::chain(burst, late))
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/", axum::routing::get(body));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}/")
    }

    #[tokio::test]
    async fn joins_a_burst_from_the_connection_but_not_a_piece_that_comes_later() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let upstream = Upstream::new(&AgentConfig::default()).unwrap();
        let url = provider(20, Duration::from_millis(50)).await;
        let response = upstream.client.get(url).send().await.unwrap();
        let mut body = ProviderBody::new(response);
        let mut reads = Vec::new();
        while let Some(piece) = upstream.next_chunk(&mut body).await.unwrap() {
            reads.push(String::from_utf8(piece.to_vec()).unwrap());
        }
        let all: String = (0..20).map(|i| format!("data: {i}\n\n")).collect();
        let (late, burst) = reads.split_last().unwrap();
        assert_eq!(late, "data: late\n\n", "the late piece is not waited for");
        assert_eq!(burst.concat(), all);
        // Joining stops after a millisecond, so a thread preempted often
        // may read the burst in a few pieces; one per piece means none
        // were joined.
        assert!(
            burst.len() < 10,
            "the burst was read in {} pieces",
            burst.len()
        );
    }

    #[test]
    fn requests_stay_on_the_base_urls_origin() {
        let base = "http://127.0.0.1:9000/v1";
        assert!(on_origin("http://127.0.0.1:9000/v1/chat/completions", base).is_ok());
        for elsewhere in [
            "http://127.0.0.1:9001/v1/chat/completions",
            "https://127.0.0.1:9000/v1",
            "http://evil.example/v1",
        ] {
            let refused = on_origin(elsewhere, base).unwrap_err().to_string();
            assert!(refused.contains("was not sent"), "{refused}");
        }
    }

    #[test]
    fn scrubs_the_key_and_cuts_long_bodies() {
        let key = Secret::new("sk-secret".into());
        assert_eq!(
            scrub("bad key sk-secret".into(), Some(&key)),
            "bad key [redacted]"
        );
        assert!(scrub("é".repeat(5000), None).len() <= MAX_ERROR_BODY + '…'.len_utf8());
    }
}
