//! Outgoing HTTP for component servers: `wasi:http` requests go out only
//! to granted hosts, and only to addresses the MCP URL policy allows
//! (the host's loopback, private networks and cloud metadata stay out of
//! reach unless the operator allowed them). The connection is pinned to
//! the addresses that were checked and follows no redirects.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::Grants;
use crate::mcp::UrlPolicy;

/// Largest request body a component may send.
const MAX_REQUEST_BODY: usize = 16 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

#[derive(Clone)]
pub struct OutboundHttp {
    server: String,
    grants: Arc<Grants>,
    policy: UrlPolicy,
}

impl OutboundHttp {
    pub fn new(server: &str, grants: Arc<Grants>, policy: UrlPolicy) -> OutboundHttp {
        OutboundHttp {
            server: server.to_owned(),
            grants,
            policy,
        }
    }

    /// `host:port` of a request, the port made explicit.
    fn authority(uri: &http::Uri) -> Option<String> {
        let host = uri.host()?;
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("http") => 80,
            _ => 443,
        });
        Some(format!("{host}:{port}"))
    }

    async fn send(self, request: http::Request<WasiBody>, options: Option<RequestOptions>) -> Sent {
        let refused = |reason: String, code: Error| {
            tracing::warn!(server = %self.server, "refused a component's HTTP request: {reason}");
            Err(code)
        };
        let uri = request.uri().clone();
        let Some(authority) = Self::authority(&uri) else {
            return refused(
                format!("`{uri}` names no host"),
                Error::HttpRequestUriInvalid,
            );
        };
        if !self.grants.allows_host(&authority) {
            return refused(
                format!("{authority} is not in its grants.hosts"),
                Error::HttpRequestDenied,
            );
        }
        let checked = match self.policy.check(&uri.to_string()).await {
            Ok(checked) => checked,
            Err(reason) => return refused(reason, Error::DestinationIpProhibited),
        };
        let client = reqwest::Client::builder()
            .resolve_to_addrs(&checked.host, &checked.addrs)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(
                options
                    .and_then(|o| o.connect_timeout)
                    .unwrap_or(CONNECT_TIMEOUT),
            )
            .build()
            .map_err(|e| Error::InternalError(Some(e.to_string())))?;
        let (mut parts, body) = request.into_parts();
        parts.headers.remove(http::header::HOST);
        let body = Limited::new(body, MAX_REQUEST_BODY)
            .collect()
            .await
            .map_err(|_| Error::HttpRequestBodySize(None))?
            .to_bytes();
        let response = client
            .request(parts.method, checked.url)
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(server = %self.server, "a component's HTTP request to {authority} failed: {e}");
                if e.is_timeout() {
                    Error::ConnectionTimeout
                } else {
                    Error::ConnectionRefused
                }
            })?;
        let response: http::Response<reqwest::Body> = response.into();
        let response = response.map(|body| {
            body.map_frame(|frame| frame.map_data(Bytes::from))
                .map_err(|_| Error::HttpResponseIncomplete)
                .boxed_unsync()
        });
        let done: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async { Ok(()) });
        Ok((response, done))
    }
}

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        Box::new(self.clone().send(request, options))
    }
}
