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

use crate::config::{AgentConfig, Secret, seconds};
use crate::plugins::{AuthScheme, HttpRequest};

/// Error bodies are shown to clients; long ones are cut.
const MAX_ERROR_BODY: usize = 2048;
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
}

impl UpstreamError {
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
        let client = reqwest::Client::builder()
            .connect_timeout(seconds(config.connect_timeout_secs))
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
    /// response once its status is 2xx.
    pub async fn send(
        &self,
        request: &HttpRequest,
        key: Option<&Secret>,
    ) -> Result<reqwest::Response, UpstreamError> {
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
                "provider request failed, retrying in {delay:?}: {error}"
            );
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
            .map_err(|e| UpstreamError::Connect(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|secs| Duration::from_secs_f64(secs.clamp(0.0, 3600.0)));
        let body = response.text().await.unwrap_or_default();
        Err(UpstreamError::Status {
            status: status.as_u16(),
            body: scrub(body, key),
            retry_after,
        })
    }

    /// The next chunk of the body, `None` at its end.
    pub async fn next_chunk(
        &self,
        response: &mut reqwest::Response,
    ) -> Result<Option<Bytes>, UpstreamError> {
        tokio::time::timeout(self.idle_timeout, response.chunk())
            .await
            .map_err(|_| UpstreamError::Idle(self.idle_timeout.as_secs_f64()))?
            .map_err(|e| UpstreamError::Body(e.without_url().to_string()))
    }
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
