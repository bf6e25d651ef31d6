//! Pinning tool calls to an end user.
//!
//! The end user travels in the `tools/call` request's `_meta`, which every
//! transport carries. HTTP servers often read identity from headers
//! instead, so on HTTP transports the same value is also sent as the
//! `x-end-user-id` header of the POST that carries the call: the header on
//! our own `/mcp/` endpoint means the same thing, so the pin survives any
//! number of hops.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcRequest};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::Sse;

/// The key in a `tools/call` request's `_meta`.
pub const META_KEY: &str = "end_user_id";
/// The HTTP header, on our `/mcp/` endpoint and towards HTTP servers.
pub const HEADER: &str = "x-end-user-id";

/// The end user a client message pins, if it is a pinned `tools/call`.
pub fn of_message(message: &ClientJsonRpcMessage) -> Option<String> {
    let ClientJsonRpcMessage::Request(JsonRpcRequest {
        request: ClientRequest::CallToolRequest(call),
        ..
    }) = message
    else {
        return None;
    };
    // rmcp may move `_meta` between the typed params and the request's
    // extensions; the wire form is the one place it is certain to be.
    let wire = serde_json::to_value(call).ok()?;
    Some(
        wire.pointer("/params/_meta/end_user_id")?
            .as_str()?
            .to_owned(),
    )
}

/// Adds the pinned end user of a message as the `x-end-user-id` header.
pub fn add_header(message: &ClientJsonRpcMessage, headers: &mut HashMap<HeaderName, HeaderValue>) {
    if let Some(value) = of_message(message).and_then(|id| HeaderValue::try_from(id).ok()) {
        headers.insert(HeaderName::from_static(HEADER), value);
    }
}

/// A streamable-HTTP client that sends each call's end user as a header.
#[derive(Clone)]
pub struct PinningClient(pub reqwest::Client);

impl StreamableHttpClient for PinningClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        add_header(&message, &mut custom_headers);
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
        add_header(&message, &mut custom_headers);
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

    fn call(meta: Option<&str>) -> ClientJsonRpcMessage {
        let mut params = CallToolRequestParams::new("lookup");
        if let Some(id) = meta {
            let mut object = rmcp::model::RequestMetaObject::new();
            object.insert(META_KEY.into(), id.into());
            params.meta = Some(object);
        }
        ClientJsonRpcMessage::request(
            ClientRequest::CallToolRequest(CallToolRequest::new(params)),
            RequestId::Number(1),
        )
    }

    #[test]
    fn lifts_the_pinned_end_user_into_a_header() {
        let mut headers = HashMap::new();
        add_header(&call(Some("4d1c")), &mut headers);
        let header = headers.get(&HeaderName::from_static(HEADER));
        assert_eq!(header.and_then(|v| v.to_str().ok()), Some("4d1c"));
        let mut none = HashMap::new();
        add_header(&call(None), &mut none);
        assert!(none.is_empty());
    }
}
