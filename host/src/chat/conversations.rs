//! The simple frontend's conversation: one MCP server connected at a time,
//! and the exchange with it kept in memory until the client disconnects or
//! connects elsewhere, so follow-up questions have context.

use crate::plugins::{Message, Role};

/// Messages of history kept per conversation; older turns are dropped.
const MAX_HISTORY: usize = 40;

#[derive(Default)]
pub(super) struct Conversations {
    conversation: tokio::sync::Mutex<Conversation>,
}

#[derive(Default)]
struct Conversation {
    server: Option<String>,
    history: Vec<Message>,
}

impl Conversations {
    /// Makes `server` the connected one; a switch of server starts afresh.
    pub(super) async fn connect(&self, server: &str) {
        let mut conversation = self.conversation.lock().await;
        if conversation.server.as_deref() != Some(server) {
            conversation.history.clear();
        }
        conversation.server = Some(server.to_owned());
    }

    pub(super) async fn server(&self) -> Option<String> {
        self.conversation.lock().await.server.clone()
    }

    /// Forgets the conversation; the server it had, if any.
    pub(super) async fn disconnect(&self) -> Option<String> {
        std::mem::take(&mut *self.conversation.lock().await).server
    }

    /// The connected server and the history so far.
    pub(super) async fn snapshot(&self) -> Option<(String, Vec<Message>)> {
        let conversation = self.conversation.lock().await;
        let server = conversation.server.clone()?;
        Some((server, conversation.history.clone()))
    }

    /// Appends a finished exchange, unless the client has since switched
    /// servers.
    pub(super) async fn remember(&self, server: &str, user: Message, added: Vec<Message>) {
        let mut conversation = self.conversation.lock().await;
        if conversation.server.as_deref() != Some(server) {
            return;
        }
        let history = &mut conversation.history;
        history.push(user);
        history.extend(added);
        let excess = history.len().saturating_sub(MAX_HISTORY);
        if excess > 0 {
            // Cut at a user message so no tool result loses its call.
            let cut = history[excess..]
                .iter()
                .position(|m| m.role == Role::User)
                .map_or(history.len(), |i| excess + i);
            history.drain(..cut);
        }
    }
}
