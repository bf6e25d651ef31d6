//! What this host is to each MCP server it connects: a client named
//! `agenthost` that declares no capability it has not wired (no sampling,
//! roots or elicitation), that notes a server's word that its tools
//! changed, so the next use lists them again, and that hands a call's
//! progress to its caller.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ProgressNotificationParam, ProtocolVersion,
    ServerNotification, SubscriptionFilter,
};
use rmcp::service::{ClientLifecycleMode, NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient};
use tokio_util::task::AbortOnDropHandle;

use super::progress::ProgressRoutes;

/// How long a server has to acknowledge a subscription.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Default)]
pub struct PoolClient {
    tools_changed: Arc<AtomicBool>,
    /// The session's calls in flight that asked for progress.
    pub progress: ProgressRoutes,
}

impl PoolClient {
    /// Whether the server said its tools changed since the last ask; asking
    /// clears it.
    pub fn take_tools_changed(&self) -> bool {
        self.tools_changed.swap(false, Ordering::AcqRel)
    }

    /// Notes a change learnt some other way (a subscription's event).
    pub fn note_tools_changed(&self) {
        self.tools_changed.store(true, Ordering::Release);
    }
}

/// Both protocol eras: `server/discover` at 2026-07-28 first, and the
/// `initialize` handshake, at the version `get_info` offers, with a server
/// that does not know it.
pub fn lifecycle() -> ClientLifecycleMode {
    ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: None,
    }
}

impl ClientHandler for PoolClient {
    fn get_info(&self) -> ClientConfig {
        // The version offered in an `initialize` handshake, which exists
        // in the 2025-11-25 era only.
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("agenthost", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.note_tools_changed();
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.deliver(params);
    }
}

/// In the 2026-07-28 era a server tells of changed tools only on a
/// `subscriptions/listen` stream the client opened. Where the server
/// offers that, this opens one and notes each change; the task ends with
/// the returned handle, which the session holds.
pub async fn listen_for_changes(
    server: &str,
    client: &RunningService<RoleClient, PoolClient>,
) -> Option<AbortOnDropHandle<()>> {
    let info = client.peer_info()?;
    let offered = info
        .capabilities
        .tools
        .as_ref()
        .and_then(|tools| tools.list_changed)
        .unwrap_or(false);
    if info.protocol_version < ProtocolVersion::V_2026_07_28 || !offered {
        return None;
    }
    let filter = SubscriptionFilter::builder().tools_list_changed().build();
    let mut subscription =
        match tokio::time::timeout(LISTEN_TIMEOUT, client.peer().listen(filter)).await {
            Ok(Ok(subscription)) => subscription,
            Ok(Err(e)) => {
                tracing::warn!(server, "subscribing to tool changes failed: {e}");
                return None;
            }
            Err(_) => {
                tracing::warn!(
                    server,
                    "the server did not acknowledge a subscription to tool changes"
                );
                return None;
            }
        };
    let handler = client.service().clone();
    Some(AbortOnDropHandle::new(tokio::spawn(async move {
        while let Ok(Some(notification)) = subscription.next().await {
            if let ServerNotification::ToolListChangedNotification(_) = notification {
                handler.note_tools_changed();
            }
        }
    })))
}
