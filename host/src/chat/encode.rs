//! Turning a chat's event stream into a streamed body through an encoder
//! plugin, for every streaming surface.
//!
//! Batches that arrive while the encoder is busy are merged into one call,
//! so a fast provider costs fewer plugin calls, not more latency. If the
//! encoder plugin fails, the response ends with an error encoded by the
//! surface's built-in format, and the chat is cancelled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::agent::{ChatEvent, ChatRun, is_final};
use crate::metrics::ChatTimer;
use crate::plugins::{EncoderInstance, EncoderPlugin, PluginFailure, StreamOptions};

/// Most events handed to an encoder in one call.
const MAX_BATCH: usize = 256;

/// A chat's encoded answer: what to send, and how to label it.
pub struct ChatStream {
    encoder: Arc<EncoderPlugin>,
    /// The encoded bytes; reading them drives the chat.
    pub body: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

impl ChatStream {
    /// The encoder's content type.
    pub fn content_type(&self) -> &str {
        &self.encoder.info.content_type
    }

    /// The encoder's own response headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.encoder.info.headers
    }
}

/// A response id unique within this process and unlikely to repeat
/// across restarts.
pub(super) fn response_options(model: &str) -> StreamOptions {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    StreamOptions {
        response_id: format!("{:x}{:06x}", now.as_millis(), n & 0xff_ffff),
        model: model.to_owned(),
        created: now.as_secs(),
    }
}

/// The chat's events through `encoder`; if that fails mid-stream, the
/// response ends with an error event in the `fallback` format.
pub(super) async fn encode(
    encoder: Arc<EncoderPlugin>,
    fallback: Arc<EncoderPlugin>,
    options: StreamOptions,
    run: ChatRun,
) -> Result<ChatStream, PluginFailure> {
    let timer = ChatTimer::start(&encoder.metadata.name);
    let instance = encoder.instantiate(&options).await?;
    let state = Encoding {
        timer,
        run,
        instance: Some(instance),
        fallback,
        options,
    };
    Ok(ChatStream {
        encoder,
        body: Box::pin(futures::stream::unfold(state, Encoding::next)),
    })
}

struct Encoding {
    timer: ChatTimer,
    /// The chat, driven as the body is read.
    run: ChatRun,
    /// `None` once the response has ended.
    instance: Option<EncoderInstance>,
    fallback: Arc<EncoderPlugin>,
    options: StreamOptions,
}

impl Encoding {
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        loop {
            let instance = self.instance.as_mut()?;
            let Some(mut batch) = self.run.next().await else {
                // No final event came (a chat always sends one); end cleanly anyway.
                let tail = instance.finish().await.unwrap_or_default();
                self.instance = None;
                return Some((Ok(Bytes::from(tail)), self));
            };
            while batch.len() < MAX_BATCH {
                match self.run.try_next() {
                    Some(more) => batch.extend(more),
                    None => break,
                }
            }
            let last = is_final(&batch);
            let encoded = match instance.encode(&batch).await {
                Ok(mut bytes) if last => instance.finish().await.map(|tail| {
                    bytes.extend(tail);
                    bytes
                }),
                other => other,
            };
            let bytes = match encoded {
                Ok(bytes) => {
                    if last {
                        self.instance = None;
                    }
                    bytes
                }
                Err(failure) => {
                    tracing::warn!("encoder failed, ending the response: {failure}");
                    // The response ends here, and the chat with it.
                    self.instance = None;
                    fallback_error(&self.fallback, &self.options, &failure).await
                }
            };
            if !bytes.is_empty() {
                self.timer.bytes_sent();
                return Some((Ok(Bytes::from(bytes)), self));
            }
        }
    }
}

/// The failure as the fallback format's error event.
async fn fallback_error(
    fallback: &EncoderPlugin,
    options: &StreamOptions,
    failure: &PluginFailure,
) -> Vec<u8> {
    let event = [ChatEvent::Error(failure.to_string())];
    match fallback.instantiate(options).await {
        Ok(mut encoder) => encoder.encode(&event).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}
