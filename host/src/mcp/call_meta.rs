//! What a `tools/call` carries in `_meta` besides its arguments: the end
//! user the call is pinned to, and the W3C trace context of the call.
//!
//! `_meta` travels on every transport. HTTP servers often read identity
//! and trace context from headers instead, so on HTTP transports each of
//! these entries is also sent as a header of the POST that carries the
//! call. `x-end-user-id` means the same on our own `/mcp/` endpoint, so a
//! pin survives any number of hops.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcRequest, RequestMetaObject};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::Sse;

/// The end user's key in a `tools/call` request's `_meta`.
pub const END_USER_KEY: &str = "end_user_id";
/// The end user's HTTP header, on our `/mcp/` endpoint and towards HTTP
/// servers.
pub const END_USER_HEADER: &str = "x-end-user-id";

/// `_meta` entries also sent as headers: key, header.
const AS_HEADERS: [(&str, &str); 3] = [
    (END_USER_KEY, END_USER_HEADER),
    ("traceparent", "traceparent"),
    ("tracestate", "tracestate"),
];

/// The `_meta` of a call pinned to `end_user` and carrying `trace_context`
/// (`traceparent` and `tracestate`); `None` when there is neither.
pub fn meta(
    end_user: Option<&str>,
    trace_context: HashMap<String, String>,
) -> Option<RequestMetaObject> {
    if end_user.is_none() && trace_context.is_empty() {
        return None;
    }
    let mut meta = RequestMetaObject::new();
    if let Some(end_user) = end_user {
        meta.insert(END_USER_KEY.into(), end_user.into());
    }
    for (key, value) in trace_context {
        meta.insert(key, value.into());
    }
    Some(meta)
}

/// The headers a client message's `_meta` asks for, if it is a
/// `tools/call`.
pub fn headers_of(message: &ClientJsonRpcMessage) -> Vec<(HeaderName, HeaderValue)> {
    let ClientJsonRpcMessage::Request(JsonRpcRequest {
        request: ClientRequest::CallToolRequest(call),
        ..
    }) = message
    else {
        return Vec::new();
    };
    // rmcp may move `_meta` between the typed params and the request's
    // extensions; the wire form is the one place it is certain to be.
    let Ok(wire) = serde_json::to_value(call) else {
        return Vec::new();
    };
    let Some(meta) = wire.pointer("/params/_meta") else {
        return Vec::new();
    };
    AS_HEADERS
        .iter()
        .filter_map(|(key, header)| {
            let value = HeaderValue::try_from(meta.get(*key)?.as_str()?).ok()?;
            Some((HeaderName::from_static(header), value))
        })
        .collect()
}

fn add_headers(message: &ClientJsonRpcMessage, headers: &mut HashMap<HeaderName, HeaderValue>) {
    headers.extend(headers_of(message));
}

/// A streamable-HTTP client that sends each call's `_meta` entries as
/// headers too.
#[derive(Clone)]
pub struct MetaHeadersClient(pub reqwest::Client);

impl StreamableHttpClient for MetaHeadersClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        add_headers(&message, &mut custom_headers);
        self.0
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        add_headers(&message, &mut custom_headers);
        self.0
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.0
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.0
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.0
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{CallToolRequest, CallToolRequestParams, RequestId};

    fn call(meta: Option<RequestMetaObject>) -> ClientJsonRpcMessage {
        let mut params = CallToolRequestParams::new("lookup");
        params.meta = meta;
        ClientJsonRpcMessage::request(
            ClientRequest::CallToolRequest(CallToolRequest::new(params)),
            RequestId::Number(1),
        )
    }

    fn header(headers: &[(HeaderName, HeaderValue)], name: &str) -> Option<String> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.to_str().ok())
            .map(str::to_owned)
    }

    #[test]
    fn lifts_the_pinned_end_user_and_the_trace_context_into_headers() {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let trace = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        let headers = headers_of(&call(meta(Some("4d1c"), trace)));
        assert_eq!(header(&headers, END_USER_HEADER).as_deref(), Some("4d1c"));
        assert_eq!(
            header(&headers, "traceparent").as_deref(),
            Some(traceparent)
        );
        assert_eq!(headers.len(), 2);
        assert!(meta(None, HashMap::new()).is_none());
        assert!(headers_of(&call(None)).is_empty());
    }
}
