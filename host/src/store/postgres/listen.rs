//! Following other replicas' changes: a connection of its own LISTENs on
//! the changes channel and hands each notification on as a [`Change`].
//! When that connection is lost it is opened again, and since
//! notifications sent meanwhile are gone, the first message after is
//! `Change::Everything`.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::{AsyncMessage, NoTls};

use super::CHANNEL;
use crate::store::Change;

const FIRST_RETRY: Duration = Duration::from_millis(200);
const LAST_RETRY: Duration = Duration::from_secs(5);

pub(super) async fn follow(config: tokio_postgres::Config, changes: broadcast::Sender<Change>) {
    let mut retry = FIRST_RETRY;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let mut messages =
                    futures::stream::poll_fn(move |cx| connection.poll_message(cx)).boxed();
                let listen = format!("LISTEN {CHANNEL}");
                // The connection's messages must be read for the LISTEN to
                // complete, so both are driven together until it has.
                let listened = {
                    let mut listening = std::pin::pin!(client.batch_execute(&listen));
                    loop {
                        tokio::select! {
                            done = &mut listening => break done.is_ok(),
                            message = messages.next() => if message.is_none() { break false },
                        }
                    }
                };
                if listened {
                    retry = FIRST_RETRY;
                    let _ = changes.send(Change::Everything);
                    while let Some(Ok(message)) = messages.next().await {
                        if let AsyncMessage::Notification(note) = message
                            && let Some(change) = parse(note.payload())
                        {
                            let _ = changes.send(change);
                        }
                    }
                }
                drop(client);
                tracing::warn!("lost the database's change notifications; reconnecting");
            }
            Err(e) => tracing::warn!("cannot listen for the database's change notifications: {e}"),
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(LAST_RETRY);
    }
}

/// `servers`, or `connections:<org>`.
fn parse(payload: &str) -> Option<Change> {
    match payload.split_once(':') {
        None if payload == "servers" => Some(Change::Servers),
        Some(("connections", org)) => Some(Change::Connections {
            org: org.to_owned(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_what_changed() {
        assert_eq!(parse("servers"), Some(Change::Servers));
        assert_eq!(
            parse("connections:acme:eu"),
            Some(Change::Connections {
                org: "acme:eu".into()
            })
        );
        assert_eq!(parse("nonsense"), None);
    }
}
