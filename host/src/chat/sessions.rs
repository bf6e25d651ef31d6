//! Stored sessions (the MCP Chat API's): a chat continues a session's
//! history and adds to it.
//!
//! Chats on one session are serialized so history never interleaves. The
//! user's message is on disk before the response starts; the exchange's
//! assistant and tool messages are appended in one transaction when it
//! ends, before its final event is handed on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::OwnedMutexGuard;

use super::ChatError;
use crate::plugins::{Message, Role, ToolCall};
use crate::store::{SessionLease, Store, StoredMessage, storable};
use crate::timestamp::now;

/// A session's history for a new chat, and the lock that keeps the
/// session's other chats waiting until this one's exchange is stored.
pub(super) struct Exchange {
    pub messages: Vec<Message>,
    pub guard: SessionGuard,
}

/// Locks the session and stores the user's message; the history before
/// it and the message itself, as the model will read them.
pub(super) async fn open(
    store: &Store,
    locks: &SessionLocks,
    tenant: &str,
    session: &str,
    message: String,
) -> Result<Exchange, ChatError> {
    if message.contains('\0') {
        return Err(ChatError::NulInMessage);
    }
    let mut guard = locks.lock(session).await;
    let user = StoredMessage::text("user", message);
    let opened = store
        .open_exchange(tenant, session, user.clone())
        .await
        .map_err(ChatError::Store)?
        .ok_or(ChatError::SessionNotFound)?;
    // Chats on other replicas wait on the database's hold as well.
    guard.lease = opened.lease;
    let mut messages: Vec<Message> = opened.history.iter().map(to_message).collect();
    messages.push(to_message(&user));
    Ok(Exchange { messages, guard })
}

/// Stores what the chat added, then releases the session.
pub(super) async fn close(
    store: Store,
    session: String,
    added: Vec<Message>,
    mut guard: SessionGuard,
) {
    let lease = guard.lease.take();
    if let Err(e) = store.append(&session, from_exchange(&added), lease).await {
        tracing::error!(session = %session, "cannot store the chat's messages: {e}");
    }
    drop(guard);
}

/// One lock per session, held for the whole of a chat. A session's entry
/// lives only while a chat holds or awaits it, so the map stays as small
/// as the number of chats in progress.
#[derive(Default)]
pub(super) struct SessionLocks {
    sessions: Arc<Mutex<HashMap<String, SessionLock>>>,
}

struct SessionLock {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Chats holding or awaiting the lock.
    users: usize,
}

impl SessionLocks {
    async fn lock(&self, session: &str) -> SessionGuard {
        let lock = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let entry = sessions
                .entry(session.to_owned())
                .or_insert_with(|| SessionLock {
                    lock: Default::default(),
                    users: 0,
                });
            entry.users += 1;
            entry.lock.clone()
        };
        // Made before waiting, so a chat cancelled while it waits still
        // counts itself out.
        let mut guard = SessionGuard {
            held: None,
            lease: None,
            session: session.to_owned(),
            sessions: self.sessions.clone(),
        };
        guard.held = Some(lock.lock_owned().await);
        guard
    }
}

/// A session's lock, held; dropping it lets the next chat in.
pub(super) struct SessionGuard {
    held: Option<OwnedMutexGuard<()>>,
    /// The database's lock, where replicas share the store.
    lease: Option<SessionLease>,
    session: String,
    sessions: Arc<Mutex<HashMap<String, SessionLock>>>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.lease = None;
        self.held = None;
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = sessions.get_mut(&self.session) {
            entry.users -= 1;
            if entry.users == 0 {
                sessions.remove(&self.session);
            }
        }
    }
}

/// The message as the agent loop takes it.
fn to_message(stored: &StoredMessage) -> Message {
    let role = match stored.role.as_str() {
        "system" => Role::System,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        _ => Role::User,
    };
    let tool_calls = stored
        .tool_calls
        .as_ref()
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| ToolCall {
                    id: c["id"].as_str().unwrap_or_default().to_owned(),
                    name: c["name"].as_str().unwrap_or_default().to_owned(),
                    arguments: c["arguments"].as_str().unwrap_or("{}").to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    Message {
        role,
        content: stored.content.clone(),
        tool_calls,
        tool_call_id: stored.tool_call_id.clone(),
    }
}

/// The messages one chat added, ready to store. Tool messages are
/// named by the full tool name of the call they answer. What the model
/// and tools wrote is [`storable`]: a NUL in it must not lose the answer.
fn from_exchange(added: &[Message]) -> Vec<StoredMessage> {
    let timestamp = now();
    added
        .iter()
        .map(|m| {
            let (role, name, tool_calls) = match m.role {
                Role::Assistant => {
                    let calls: Vec<Value> = m
                        .tool_calls
                        .iter()
                        .map(|c| json!({ "id": c.id, "name": c.name, "arguments": c.arguments }))
                        .collect();
                    (
                        "assistant",
                        None,
                        (!calls.is_empty()).then_some(Value::Array(calls)),
                    )
                }
                Role::Tool => {
                    let name = added
                        .iter()
                        .flat_map(|a| &a.tool_calls)
                        .find(|c| Some(&c.id) == m.tool_call_id.as_ref())
                        .map(|c| storable(&c.name).into_owned());
                    ("tool", name, None)
                }
                Role::System => ("system", None, None),
                Role::User => ("user", None, None),
            };
            StoredMessage {
                role: role.into(),
                content: storable(&m.content).into_owned(),
                name,
                tool_call_id: m
                    .tool_call_id
                    .as_deref()
                    .map(|id| storable(id).into_owned()),
                tool_calls,
                timestamp: timestamp.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn session_locks_serialize_chats_and_leave_no_entries() {
        let locks = Arc::new(SessionLocks::default());
        let entries = |locks: &SessionLocks| locks.sessions.lock().unwrap().len();
        let first = locks.lock("s").await;
        let mut waiting = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock("s").await }
        });
        let wait = std::time::Duration::from_millis(20);
        assert!(
            tokio::time::timeout(wait, &mut waiting).await.is_err(),
            "a second chat waits for the first"
        );
        let cancelled = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock("s").await }
        });
        tokio::time::sleep(wait).await;
        cancelled.abort();
        let other = locks.lock("t").await;
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(entries(&locks), 2);
        drop((second, other));
        assert_eq!(
            entries(&locks),
            0,
            "a chat cancelled while waiting leaves nothing"
        );
    }
}
