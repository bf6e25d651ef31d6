//! Sending a provider plugin's request: the only place API keys are used.
//!
//! The plugin names the auth scheme; the key is added here, after the
//! plugin has finished, so it never enters plugin memory. It is also
//! scrubbed from any error body that echoes it.

use std::time::Duration;

use bytes::Bytes;

use crate::config::Secret;
use crate::plugins::{AuthScheme, HttpRequest};

/// Error bodies are shown to clients; long ones are cut.
const MAX_ERROR_BODY: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the provider plugin built an invalid request: {0}")]
    Invalid(String),
    #[error("cannot reach the provider: {0}")]
    Connect(String),
    #[error("the provider answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the provider's stream broke off: {0}")]
    Body(String),
    #[error("the provider sent nothing for {0} s")]
    Idle(u64),
}

pub struct Upstream {
    client: reqwest::Client,
    idle_timeout: Duration,
}

impl Upstream {
    pub fn new(idle_timeout: Duration) -> Result<Upstream, UpstreamError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| UpstreamError::Connect(e.to_string()))?;
        Ok(Upstream {
            client,
            idle_timeout,
        })
    }

    /// Sends the request and returns the response once its status is 2xx.
    pub async fn send(
        &self,
        request: HttpRequest,
        key: Option<&Secret>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| UpstreamError::Invalid(format!("bad method `{}`", request.method)))?;
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| UpstreamError::Invalid(format!("bad url `{}`: {e}", request.url)))?;
        let mut builder = self.client.request(method, url).body(request.body);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        builder = match (&request.auth, key) {
            (AuthScheme::Bearer, Some(key)) => builder.bearer_auth(key.expose()),
            (AuthScheme::Header(name), Some(key)) => builder.header(name, key.expose()),
            _ => builder,
        };
        let response = tokio::time::timeout(self.idle_timeout, builder.send())
            .await
            .map_err(|_| UpstreamError::Idle(self.idle_timeout.as_secs()))?
            .map_err(|e| UpstreamError::Connect(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(UpstreamError::Status {
            status: status.as_u16(),
            body: scrub(body, key),
        })
    }

    /// The next chunk of the body, `None` at its end.
    pub async fn next_chunk(
        &self,
        response: &mut reqwest::Response,
    ) -> Result<Option<Bytes>, UpstreamError> {
        tokio::time::timeout(self.idle_timeout, response.chunk())
            .await
            .map_err(|_| UpstreamError::Idle(self.idle_timeout.as_secs()))?
            .map_err(|e| UpstreamError::Body(e.without_url().to_string()))
    }
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
