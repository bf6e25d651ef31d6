//! Turning a chat's event stream into a streamed body through an encoder
//! plugin, for every streaming surface.
//!
//! Batches that arrive while the encoder is busy are merged into one call,
//! so a fast provider costs fewer plugin calls, not more latency. If the
//! encoder plugin fails, the response ends with an error encoded by the
//! surface's built-in format, and the chat is cancelled.
//!
//! What is sent is numbered and kept in the chat's run (see `runs`). The
//! chat is driven by the task writing the body while the client reads;
//! if the client goes away, `agent.on_disconnect` says whether the chat
//! stops with it or goes on in a task of its own.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};

use super::frames::Framer;
use super::runs::{RunHandle, RunState};
use crate::agent::{ChatEvent, ChatRun, is_final};
use crate::config::OnDisconnect;
use crate::metrics::ChatTimer;
use crate::plugins::{EncoderInstance, EncoderPlugin, PluginFailure, StreamOptions};

/// Most events handed to an encoder in one call.
const MAX_BATCH: usize = 256;

/// A chat's encoded answer: what to send, and how to label it.
pub struct ChatStream {
    encoder: Arc<EncoderPlugin>,
    run_id: String,
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

    /// The run this answer is, for `x-agenthost-run-id`.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }
}

/// The run's id is the response's: formats that show one (TrueFoundry's
/// chunk `id`) name the run with it.
pub(super) fn response_options(run_id: &str, model: &str) -> StreamOptions {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    StreamOptions {
        response_id: run_id.to_owned(),
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
    chat: ChatRun,
    run: RunHandle,
    on_disconnect: OnDisconnect,
) -> Result<ChatStream, PluginFailure> {
    let timer = ChatTimer::start(&encoder.metadata.name);
    let instance = encoder.instantiate(&options).await?;
    let state = Encoding {
        timer,
        chat,
        instance: Some(instance),
        fallback,
        options,
        framer: Framer::new(&encoder.info.content_type),
        run: run.clone(),
    };
    Ok(ChatStream {
        encoder,
        run_id: run.run.id.clone(),
        body: Box::pin(RunBody {
            chunks: Some(Box::pin(futures::stream::unfold(state, Encoding::next))),
            run,
            on_disconnect,
        }),
    })
}

struct Encoding {
    timer: ChatTimer,
    /// The chat, driven as the body is read.
    chat: ChatRun,
    /// `None` once the response has ended.
    instance: Option<EncoderInstance>,
    fallback: Arc<EncoderPlugin>,
    options: StreamOptions,
    framer: Framer,
    run: RunHandle,
}

impl Encoding {
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        loop {
            let instance = self.instance.as_mut()?;
            let Some(mut batch) = self.chat.next().await else {
                // No final event came (a chat always sends one); end cleanly anyway.
                let tail = instance.finish().await.unwrap_or_default();
                self.instance = None;
                let bytes = self.send(tail, Some(RunState::Failed));
                return Some((Ok(bytes), self));
            };
            while batch.len() < MAX_BATCH {
                match self.chat.try_next() {
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
            let (bytes, ended) = match encoded {
                Ok(bytes) => {
                    if last {
                        self.instance = None;
                    }
                    (bytes, last.then(|| self.final_state(&batch)))
                }
                Err(failure) => {
                    tracing::warn!("encoder failed, ending the response: {failure}");
                    // The response ends here, and the chat with it.
                    self.instance = None;
                    let bytes = fallback_error(&self.fallback, &self.options, &failure).await;
                    (bytes, Some(RunState::Failed))
                }
            };
            let bytes = self.send(bytes, ended);
            if !bytes.is_empty() {
                self.timer.bytes_sent();
                return Some((Ok(bytes), self));
            }
        }
    }

    /// Numbers and keeps what is about to be sent, and ends the run with
    /// the response.
    fn send(&mut self, output: Vec<u8>, ended: Option<RunState>) -> Bytes {
        let framed = self.framer.frame(output, ended.is_some());
        self.run.record(&framed);
        if let Some(state) = ended {
            self.run.end(state);
        }
        framed.bytes
    }

    /// How the run ended, from the chat's final batch.
    fn final_state(&self, batch: &[ChatEvent]) -> RunState {
        match batch.last() {
            Some(ChatEvent::Done) => RunState::Done,
            _ if self.run.run.is_cancelled() => RunState::Cancelled,
            _ => RunState::Failed,
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

/// The encoded chunks, as [`Encoding::next`] makes them one after another.
type Chunks = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// A response body that drives its chat as it is read.
///
/// If the client goes away first, the chunks still to come are what
/// `on_disconnect = "continue"` hands to a task of its own: they hold
/// the step in flight, and dropping it instead could lose a batch of
/// events, or the session's history, mid-way.
struct RunBody {
    /// `None` once read to the end.
    chunks: Option<Chunks>,
    run: RunHandle,
    on_disconnect: OnDisconnect,
}

impl Stream for RunBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(chunks) = self.chunks.as_mut() else {
            return Poll::Ready(None);
        };
        let next = std::task::ready!(chunks.as_mut().poll_next(cx));
        if next.is_none() {
            self.chunks = None;
            self.run.close(true);
        }
        Poll::Ready(next)
    }
}

impl Drop for RunBody {
    fn drop(&mut self) {
        let Some(mut chunks) = self.chunks.take() else {
            return;
        };
        let runtime = tokio::runtime::Handle::try_current();
        match (self.on_disconnect, runtime) {
            (OnDisconnect::Continue, Ok(runtime)) => {
                let run = self.run.clone();
                // Its chunks are kept in the run as if they were sent.
                runtime.spawn(async move {
                    while chunks.next().await.is_some() {}
                    run.close(false);
                });
            }
            // Dropping the chat stops it, its provider request and its
            // tool calls.
            _ => {
                self.run.end(RunState::Cancelled);
                self.run.close(false);
            }
        }
    }
}
