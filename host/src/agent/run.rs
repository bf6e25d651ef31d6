//! A running chat, driven by whoever reads its events.
//!
//! The chat is not a task of its own: it makes progress inside the task
//! that reads it, usually the response body's. So a provider chunk is
//! decoded, encoded and written in one task, with no wake-up of another
//! per chunk, and a client that goes away cancels the chat, its provider
//! request and its tool calls at once, by dropping it.

use std::future::Future;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::plugins::{ChatEvent, Message};

/// Work to finish, with the messages the chat added, before its final
/// event is handed on.
type BeforeEnd = Box<dyn FnOnce(Vec<Message>) -> BoxFuture<'static, ()> + Send>;

pub struct ChatRun {
    /// The chat itself; `None` once it has finished. Its output is the
    /// messages it added.
    driver: Option<BoxFuture<'static, Vec<Message>>>,
    events: mpsc::Receiver<Vec<ChatEvent>>,
    transcript: Option<Vec<Message>>,
    before_end: Option<BeforeEnd>,
    /// A final batch `try_next` met but may not hand on before `before_end`.
    held: Option<Vec<ChatEvent>>,
}

impl ChatRun {
    pub(super) fn new(
        driver: BoxFuture<'static, Vec<Message>>,
        events: mpsc::Receiver<Vec<ChatEvent>>,
    ) -> ChatRun {
        ChatRun {
            driver: Some(driver),
            events,
            transcript: None,
            before_end: None,
            held: None,
        }
    }

    /// Runs `work` with the messages the chat added once it has ended, and
    /// holds the final `Done` or `Error` back until `work` is done: a
    /// client that reads the history after the stream ended sees all of
    /// it. Not run if the chat is dropped first.
    pub fn before_end<F, W>(mut self, work: F) -> ChatRun
    where
        F: FnOnce(Vec<Message>) -> W + Send + 'static,
        W: Future<Output = ()> + Send + 'static,
    {
        self.before_end = Some(Box::new(move |added| Box::pin(work(added))));
        self
    }

    /// The next batch of events, driving the chat until there is one;
    /// `None` after the last.
    pub async fn next(&mut self) -> Option<Vec<ChatEvent>> {
        let batch = match self.held.take() {
            Some(held) => Some(held),
            None => std::future::poll_fn(|cx| self.poll_batch(cx)).await,
        };
        if let Some(batch) = &batch
            && is_final(batch)
            && let Some(work) = self.before_end.take()
        {
            work(self.transcript.take().unwrap_or_default()).await;
        }
        batch
    }

    /// Takes a queued batch, else drives the chat until it queues one.
    ///
    /// The queue is only ever read with `try_recv`, never awaited: an
    /// awaiting reader would leave the task's waker with the channel, and
    /// every batch the chat sent from this same task would wake the task
    /// once more for nothing. The chat itself registers the wake-ups that
    /// matter (the provider's body, tool calls).
    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<ChatEvent>>> {
        loop {
            if let Ok(batch) = self.events.try_recv() {
                return Poll::Ready(Some(batch));
            }
            // With the chat finished, its sender is gone and the queue is
            // empty: every batch has been read.
            let Some(driver) = self.driver.as_mut() else {
                return Poll::Ready(None);
            };
            match driver.as_mut().poll(cx) {
                // The chat's final event is the last thing it sends, so
                // its transcript is here before that event is read.
                Poll::Ready(added) => {
                    self.transcript = Some(added);
                    self.driver = None;
                }
                Poll::Pending => {
                    return match self.events.try_recv() {
                        Ok(batch) => Poll::Ready(Some(batch)),
                        Err(_) => Poll::Pending,
                    };
                }
            }
        }
    }

    /// A batch already queued, if any, without driving the chat.
    pub fn try_next(&mut self) -> Option<Vec<ChatEvent>> {
        if self.held.is_some() {
            return None;
        }
        let batch = self.events.try_recv().ok()?;
        if is_final(&batch) && self.before_end.is_some() {
            self.held = Some(batch);
            return None;
        }
        Some(batch)
    }

    /// The messages the chat added, once its final event has been read
    /// (and unless `before_end` took them).
    pub fn transcript(&mut self) -> Option<Vec<Message>> {
        self.transcript.take()
    }
}

/// Whether a batch ends the chat.
pub fn is_final(batch: &[ChatEvent]) -> bool {
    matches!(batch.last(), Some(ChatEvent::Done | ChatEvent::Error(_)))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::plugins::Role;

    fn message(text: &str) -> Message {
        Message {
            role: Role::Assistant,
            content: text.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A run whose chat sends `batches` at once and adds one message.
    fn run_sending(batches: Vec<Vec<ChatEvent>>) -> ChatRun {
        let (tx, rx) = mpsc::channel(8);
        let driver = async move {
            for batch in batches {
                let _ = tx.send(batch).await;
            }
            vec![message("added")]
        };
        ChatRun::new(Box::pin(driver), rx)
    }

    #[tokio::test]
    async fn the_final_event_waits_for_before_end_and_it_gets_the_transcript() {
        let stored = Arc::new(Mutex::new(Vec::new()));
        let sink = stored.clone();
        let mut run = run_sending(vec![
            vec![ChatEvent::TextDelta("hi".into())],
            vec![ChatEvent::Done],
        ])
        .before_end(move |added| async move {
            tokio::task::yield_now().await;
            sink.lock().unwrap().extend(added);
        });

        let first = run.next().await.unwrap();
        assert!(matches!(first[..], [ChatEvent::TextDelta(_)]));
        // The chat has queued its end; `try_next` may not hand it over.
        assert!(run.try_next().is_none());
        assert!(stored.lock().unwrap().is_empty());
        let last = run.next().await.unwrap();
        assert!(matches!(last[..], [ChatEvent::Done]));
        assert_eq!(stored.lock().unwrap()[0].content, "added");
        assert!(run.next().await.is_none());
        assert!(run.transcript().is_none(), "before_end took it");
    }

    #[tokio::test]
    async fn without_before_end_the_transcript_is_kept_for_the_reader() {
        let mut run = run_sending(vec![vec![ChatEvent::Done]]);
        while run.next().await.is_some() {}
        assert_eq!(run.transcript().unwrap()[0].content, "added");
    }

    #[tokio::test]
    async fn dropping_the_run_stops_the_chat_at_once() {
        let (alive, gone) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = mpsc::channel(8);
        let driver = async move {
            let _alive = alive;
            let _ = tx.send(vec![ChatEvent::TextDelta("a".into())]).await;
            std::future::pending::<()>().await;
            Vec::new()
        };
        let mut run = ChatRun::new(Box::pin(driver), rx);
        assert!(run.next().await.is_some());
        drop(run);
        assert!(gone.await.is_err(), "the chat was dropped with its run");
    }
}
