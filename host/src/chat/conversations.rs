//! The simple frontend's conversations, one per API key (one in local
//! mode): one MCP server connected at a time, and the exchange with it
//! kept in memory until the client disconnects or connects elsewhere, so
//! follow-up questions have context.

use std::collections::HashMap;

use crate::auth::Principal;
use crate::plugins::{Message, Role};

/// Messages of history kept per conversation; older turns are dropped.
const MAX_HISTORY: usize = 40;

/// Keyed by the API key's label; `""` is the local user's. Keys are
/// configured, so the map is as small as the config's key list.
#[derive(Default)]
pub(super) struct Conversations {
    conversations: tokio::sync::Mutex<HashMap<String, Conversation>>,
}

/// Whose conversation: the key's, or the local user's.
pub(super) fn owner(user: &Option<Principal>) -> String {
    user.as_ref()
        .map(|p| p.key_label.clone())
        .unwrap_or_default()
}

#[derive(Default)]
struct Conversation {
    server: Option<String>,
    history: Vec<Message>,
}

impl Conversations {
    /// Makes `server` the connected one; a switch of server starts afresh.
    pub(super) async fn connect(&self, owner: String, server: &str) {
        let mut conversations = self.conversations.lock().await;
        let conversation = conversations.entry(owner).or_default();
        if conversation.server.as_deref() != Some(server) {
            conversation.history.clear();
        }
        conversation.server = Some(server.to_owned());
    }

    pub(super) async fn server(&self, owner: &str) -> Option<String> {
        let conversations = self.conversations.lock().await;
        conversations.get(owner)?.server.clone()
    }

    /// Forgets the conversation; the server it had, unless another
    /// conversation is still connected to it.
    pub(super) async fn disconnect(&self, owner: &str) -> Option<String> {
        let mut conversations = self.conversations.lock().await;
        let server = conversations.remove(owner)?.server?;
        let shared = conversations
            .values()
            .any(|c| c.server.as_ref() == Some(&server));
        (!shared).then_some(server)
    }

    /// The connected server and the history so far.
    pub(super) async fn snapshot(&self, owner: &str) -> Option<(String, Vec<Message>)> {
        let conversations = self.conversations.lock().await;
        let conversation = conversations.get(owner)?;
        let server = conversation.server.clone()?;
        Some((server, conversation.history.clone()))
    }

    /// Appends a finished exchange, unless the client has since switched
    /// servers.
    pub(super) async fn remember(
        &self,
        owner: &str,
        server: &str,
        user: Message,
        added: Vec<Message>,
    ) {
        let mut conversations = self.conversations.lock().await;
        let Some(conversation) = conversations.get_mut(owner) else {
            return;
        };
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
