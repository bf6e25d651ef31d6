//! The legacy HTTP+SSE MCP transport (protocol 2024-11-05), client side.
//!
//! rmcp no longer ships a client for it. The client opens a GET event
//! stream; the server's first event, `endpoint`, names the URL to POST
//! JSON-RPC messages to, and its answers arrive as `message` events on the
//! stream. Here that becomes a (Sink, Stream) pair, which rmcp accepts as
//! a transport: a writer task POSTs what the sink receives, a reader task
//! parses the event stream. Both end when rmcp drops its side or the
//! server closes the stream.

use std::pin::Pin;
use std::time::Duration;

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use tokio::sync::{mpsc, oneshot};

use super::call_meta;

const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(30);
/// Larger events are refused rather than buffered without bound.
const MAX_EVENT_BYTES: usize = 16 << 20;

pub type Incoming = Pin<Box<dyn Stream<Item = ServerJsonRpcMessage> + Send>>;

/// Opens the event stream and waits for the server's `endpoint` event.
pub async fn connect(
    client: reqwest::Client,
    url: &str,
    headers: HeaderMap,
) -> Result<(UnboundedSender<ClientJsonRpcMessage>, Incoming), String> {
    let sse_url = reqwest::Url::parse(url).map_err(|e| format!("invalid URL `{url}`: {e}"))?;
    let response = client
        .get(sse_url.clone())
        .headers(headers.clone())
        .header("accept", "text/event-stream")
        .send()
        .await
        .map_err(|e| format!("cannot open the event stream: {}", e.without_url()))?;
    if !response.status().is_success() {
        return Err(format!(
            "the event stream answered HTTP {}",
            response.status().as_u16()
        ));
    }
    let (endpoint_tx, endpoint_rx) = oneshot::channel();
    let (incoming_tx, mut incoming_rx) = mpsc::channel(64);
    tokio::spawn(read_events(
        response,
        sse_url.clone(),
        endpoint_tx,
        incoming_tx,
    ));
    let endpoint = tokio::time::timeout(ENDPOINT_TIMEOUT, endpoint_rx)
        .await
        .map_err(|_| "the server sent no `endpoint` event".to_owned())?
        .map_err(|_| "the event stream closed before its `endpoint` event".to_owned())??;

    let (outgoing_tx, mut outgoing_rx) = unbounded::<ClientJsonRpcMessage>();
    tokio::spawn(async move {
        while let Some(message) = outgoing_rx.next().await {
            let mut post = client.post(endpoint.clone()).headers(headers.clone());
            for (name, value) in call_meta::headers_of(&message) {
                post = post.header(name, value);
            }
            let posted = post.json(&message).send().await;
            match posted {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => {
                    tracing::warn!(
                        "MCP SSE endpoint answered HTTP {}",
                        response.status().as_u16()
                    );
                    break;
                }
                Err(e) => {
                    tracing::warn!("cannot post to the MCP SSE endpoint: {}", e.without_url());
                    break;
                }
            }
        }
    });
    let incoming = futures::stream::poll_fn(move |cx| incoming_rx.poll_recv(cx));
    Ok((outgoing_tx, Box::pin(incoming)))
}

type EndpointResult = Result<reqwest::Url, String>;

async fn read_events(
    mut response: reqwest::Response,
    base: reqwest::Url,
    endpoint_tx: oneshot::Sender<EndpointResult>,
    incoming: mpsc::Sender<ServerJsonRpcMessage>,
) {
    let mut endpoint_tx = Some(endpoint_tx);
    let mut parser = EventParser::default();
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk,
            _ = incoming.closed() => return,
        };
        let Ok(Some(chunk)) = chunk else { return };
        for (event, data) in parser.feed(&chunk) {
            match event.as_str() {
                "endpoint" => {
                    if let Some(tx) = endpoint_tx.take() {
                        let _ = tx.send(resolve_endpoint(&base, &data));
                    }
                }
                "message" | "" => match serde_json::from_str::<ServerJsonRpcMessage>(&data) {
                    Ok(message) => {
                        if incoming.send(message).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!("ignoring a malformed MCP SSE message: {e}"),
                },
                _ => {}
            }
        }
        if parser.overflowed() {
            tracing::warn!("MCP SSE event larger than {MAX_EVENT_BYTES} bytes; closing the stream");
            return;
        }
    }
}

/// The POST URL, which must stay on the event stream's origin: a server
/// must not be able to make the host post elsewhere.
fn resolve_endpoint(base: &reqwest::Url, data: &str) -> EndpointResult {
    let endpoint = base
        .join(data.trim())
        .map_err(|e| format!("invalid endpoint `{data}`: {e}"))?;
    if endpoint.origin() != base.origin() {
        return Err(format!(
            "the endpoint `{endpoint}` is not on the event stream's origin"
        ));
    }
    Ok(endpoint)
}

/// Server-sent events: `event:` and `data:` lines, a blank line ends one.
///
/// Linear in its input however the server splits it: each byte is looked
/// at once when searching for line ends, and consumed lines are dropped
/// once per read, not once per line.
#[derive(Default)]
struct EventParser {
    pending: Vec<u8>,
    /// Bytes of `pending` already searched for a line end.
    searched: usize,
    event: String,
    data: Vec<String>,
    data_bytes: usize,
    overflow: bool,
    /// Bytes looked at while searching, to check the parser stays linear.
    #[cfg(test)]
    examined: usize,
}

impl EventParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(offset) = line_end(&self.pending[self.searched..]) {
            #[cfg(test)]
            {
                self.examined += offset + 1;
            }
            let end = self.searched + offset;
            let line = String::from_utf8_lossy(&self.pending[start..end]).into_owned();
            start = end + 1;
            self.searched = start;
            self.line(line.trim_end_matches('\r'), &mut events);
        }
        #[cfg(test)]
        {
            self.examined += self.pending.len() - self.searched;
        }
        self.pending.drain(..start);
        self.searched = self.pending.len();
        if self.pending.len() + self.data_bytes > MAX_EVENT_BYTES {
            self.overflow = true;
        }
        events
    }

    fn line(&mut self, line: &str, events: &mut Vec<(String, String)>) {
        if line.is_empty() {
            if !self.data.is_empty() {
                events.push((std::mem::take(&mut self.event), self.data.join("\n")));
            }
            self.event.clear();
            self.data.clear();
            self.data_bytes = 0;
        } else if let Some(value) = line.strip_prefix("event:") {
            self.event = value.trim().to_owned();
        } else if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            self.data_bytes += value.len();
            self.data.push(value.to_owned());
        }
    }

    fn overflowed(&self) -> bool {
        self.overflow
    }
}

fn line_end(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_anywhere() {
        let mut parser = EventParser::default();
        let mut events = parser.feed(b"event: endpoint\r\ndata: /messages?s=1\r\n\r\nevent: mess");
        events.extend(parser.feed(b"age\ndata: {\"a\":\ndata: 1}\n\n: comment\n\n"));
        assert_eq!(
            events,
            [
                ("endpoint".to_owned(), "/messages?s=1".to_owned()),
                ("message".to_owned(), "{\"a\":\n1}".to_owned())
            ]
        );
    }

    #[test]
    fn a_stream_dripped_a_byte_at_a_time_is_read_in_linear_time() {
        let mut parser = EventParser::default();
        let mut stream = b"event: endpoint\ndata: ".to_vec();
        stream.extend(std::iter::repeat_n(b'x', 100_000));
        stream.extend(b"\n\nevent: message\n".repeat(1000));
        let mut events = Vec::new();
        for byte in &stream {
            events.extend(parser.feed(std::slice::from_ref(byte)));
        }
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].1.len(), 100_000);
        assert!(
            parser.examined <= stream.len(),
            "looked at {} bytes of {}",
            parser.examined,
            stream.len()
        );
        let mut lines = EventParser::default();
        lines.feed(&b"data: x\n".repeat(50_000));
        assert_eq!(lines.data_bytes, 50_000);
        assert!(lines.examined <= 8 * 50_000);
    }

    #[test]
    fn endpoints_stay_on_the_stream_origin() {
        let base = reqwest::Url::parse("http://127.0.0.1:9/sse").unwrap();
        assert_eq!(
            resolve_endpoint(&base, "/messages/?session_id=x")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/messages/?session_id=x"
        );
        assert!(resolve_endpoint(&base, "http://169.254.169.254/").is_err());
    }
}
