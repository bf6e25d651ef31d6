//! Runs: every streamed chat is one, named by an id the response gives
//! in `x-agenthost-run-id`.
//!
//! A run keeps its encoded events, numbered as the client received them,
//! while it lives and for `agent.run_retention_secs` after, so a client
//! whose connection dropped can take up where it left off, and anyone in
//! its org can see how it stands or cancel it. The events are the bytes
//! already sent (slices of them, not copies), so replay costs the live
//! stream nothing but their keeping, and replays in the run's format.
//!
//! Runs live in the replica that runs them. A run whose stream reached
//! its client whole is forgotten when it ends: its client has all of it,
//! and keeping every run after its end cost a busy server a fifth more
//! CPU per chat (memory held past a chat makes every allocation dearer).
//! An interrupted run (its client left) is kept, events and all, up to
//! [`ENDED_RUNS`] runs and [`ENDED_BYTES`] of events in all; past that
//! the oldest are forgotten before their time, so memory stays bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use super::frames::Framed;
use crate::agent::{Approval, Approver};
use crate::auth::{Caller, Principal, Role};
use crate::plugins::ToolCallReady;
use approvals::Approvals;
pub use approvals::{ApprovalRefusal, WaitingFor};

mod approvals;

/// Most bytes of events kept for runs that have ended.
const ENDED_BYTES: usize = 64 << 20;

/// Most ended runs kept.
const ENDED_RUNS: usize = 10_000;

/// How a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    /// Running, and a tool call waits for a person's approval.
    Waiting,
    Done,
    Failed,
    Cancelled,
}

/// A run as `GET /runs/{id}` shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: String,
    pub state: RunState,
    /// Events sent so far; the last one's number.
    pub events: usize,
    /// The content type its events are in.
    pub content_type: String,
    pub created_at: String,
    pub ended_at: Option<String>,
    /// What it waits for while `waiting`: tool calls to approve.
    pub waiting_for: Vec<WaitingFor>,
}

/// The runs of this replica, live and recently ended.
#[derive(Clone)]
pub struct Runs {
    inner: Arc<Registry>,
}

struct Registry {
    runs: Mutex<HashMap<String, Arc<Run>>>,
    /// Ended runs, oldest first, with the bytes each keeps.
    ended: Mutex<Ended>,
    retention: Duration,
}

#[derive(Default)]
struct Ended {
    runs: VecDeque<(Instant, String, usize)>,
    bytes: usize,
}

pub struct Run {
    pub id: String,
    /// The org it belongs to; `None` for the local user's.
    tenant: Option<String>,
    /// The key that started it, which may cancel it whatever its role.
    key: Option<String>,
    pub content_type: String,
    created: jiff::Timestamp,
    cancel: CancellationToken,
    log: Mutex<Log>,
    /// Woken when events are added or the run ends.
    changed: Notify,
    /// Tool calls waiting for a person's approval.
    approvals: Approvals,
}

struct Log {
    events: Vec<Bytes>,
    bytes: usize,
    state: RunState,
    /// When it ended, for its retention and for people.
    ended: Option<(Instant, jiff::Timestamp)>,
    /// `GET /runs/{id}/events` readers following it now.
    followers: usize,
}

/// Why a caller may not cancel a run.
#[derive(Debug, thiserror::Error)]
pub enum CancelRefusal {
    #[error("a viewer key may cancel only the runs it started")]
    Viewer,
    #[error("the run has already ended ({0})")]
    Ended(&'static str),
}

impl Runs {
    pub fn new(retention: Duration) -> Runs {
        Runs {
            inner: Arc::new(Registry {
                runs: Mutex::default(),
                ended: Mutex::default(),
                retention,
            }),
        }
    }

    /// Registers a new run for `caller`.
    pub(super) fn start(&self, caller: &Caller, content_type: &str) -> RunHandle {
        let run = Arc::new(Run {
            id: format!("{:032x}", fastrand::u128(..)),
            tenant: caller.tenant().map(str::to_owned),
            key: caller.principal.as_ref().map(|p| p.key_label.clone()),
            content_type: content_type.to_owned(),
            created: jiff::Timestamp::now(),
            cancel: CancellationToken::new(),
            log: Mutex::new(Log {
                events: Vec::new(),
                bytes: 0,
                state: RunState::Running,
                ended: None,
                followers: 0,
            }),
            changed: Notify::new(),
            approvals: Approvals::default(),
        });
        lock(&self.inner.runs).insert(run.id.clone(), run.clone());
        RunHandle {
            run,
            runs: self.clone(),
        }
    }

    /// The run `id`, if `user`'s org owns it and it is still kept.
    pub fn get(&self, user: &Option<Principal>, id: &str) -> Option<Arc<Run>> {
        let run = lock(&self.inner.runs).get(id).cloned()?;
        let expired = lock(&run.log)
            .ended
            .is_some_and(|(at, _)| at.elapsed() > self.inner.retention);
        let owner = user.as_ref().map(|p| p.org.as_str());
        (!expired && run.tenant.as_deref() == owner).then_some(run)
    }

    /// Keeps an ended run for its retention; forgets the runs past theirs,
    /// and the oldest while too many are kept.
    fn ended(&self, run: &Run, bytes: usize) {
        let mut ended = lock(&self.inner.ended);
        ended
            .runs
            .push_back((Instant::now(), run.id.clone(), bytes));
        ended.bytes += bytes;
        let mut runs = None;
        while let Some(&(at, _, size)) = ended.runs.front() {
            let within = ended.bytes <= ENDED_BYTES && ended.runs.len() <= ENDED_RUNS;
            if within && at.elapsed() <= self.inner.retention {
                break;
            }
            ended.bytes -= size;
            if let Some((_, id, _)) = ended.runs.pop_front() {
                runs.get_or_insert_with(|| lock(&self.inner.runs))
                    .remove(&id);
            }
        }
    }
}

impl Run {
    pub fn view(&self) -> RunView {
        let waiting_for = self.approvals.waiting_for();
        let log = lock(&self.log);
        let state = match log.state {
            RunState::Running if !waiting_for.is_empty() => RunState::Waiting,
            state => state,
        };
        RunView {
            id: self.id.clone(),
            state,
            waiting_for,
            events: log.events.len(),
            content_type: self.content_type.clone(),
            created_at: rfc3339(self.created),
            ended_at: log.ended.map(|(_, at)| rfc3339(at)),
        }
    }

    /// Answers the approval request of tool call `call_id`.
    pub fn approve(
        &self,
        user: &Option<Principal>,
        call_id: &str,
        approval: Approval,
    ) -> Result<(), ApprovalRefusal> {
        self.approvals.answer(&self.id, user, call_id, approval)
    }

    /// Stops the run; it ends as soon as its chat notices, with an error
    /// event saying so.
    pub fn cancel(&self, user: &Option<Principal>) -> Result<(), CancelRefusal> {
        if let Some(p) = user
            && p.role == Role::Viewer
            && self.key.as_deref() != Some(p.key_label.as_str())
        {
            return Err(CancelRefusal::Viewer);
        }
        let state = lock(&self.log).state;
        if state != RunState::Running {
            return Err(CancelRefusal::Ended(state.name()));
        }
        self.cancel.cancel();
        Ok(())
    }

    /// Waits until the run has ended, or `limit` has passed.
    pub async fn ended(&self, limit: Duration) {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if lock(&self.log).state != RunState::Running {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }

    /// The events after the `after`th, then each as it comes, until the
    /// run ends.
    pub fn events_after(self: Arc<Self>, after: usize) -> BoxStream<'static, Bytes> {
        lock(&self.log).followers += 1;
        let follower = Follower(self);
        Box::pin(futures::stream::unfold(
            (follower, after),
            |(follower, sent)| async move {
                let (next, count) = follower.0.next_events(sent).await?;
                Some((next, (follower, count)))
            },
        ))
    }

    /// The events after the `sent`th, as one chunk, and how many there are
    /// now; waits for some while the run lives, `None` once it has ended.
    async fn next_events(&self, sent: usize) -> Option<(Bytes, usize)> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let log = lock(&self.log);
                if sent < log.events.len() {
                    let mut next = Vec::new();
                    for event in &log.events[sent..] {
                        next.extend_from_slice(event);
                    }
                    return Some((Bytes::from(next), log.events.len()));
                }
                if log.state != RunState::Running {
                    return None;
                }
            }
            changed.await;
        }
    }

    /// Whether the run was cancelled (by `POST /runs/{id}/cancel`).
    pub(super) fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

impl Approver for Run {
    fn ask(&self, call: &ToolCallReady, read_only: bool) -> oneshot::Receiver<Approval> {
        self.approvals.ask(call, read_only)
    }
}

/// A `GET /runs/{id}/events` reader, counted while it follows the run so
/// the run keeps its events for it.
struct Follower(Arc<Run>);

impl Drop for Follower {
    fn drop(&mut self) {
        lock(&self.0.log).followers -= 1;
    }
}

/// A run, held by the response that writes it.
#[derive(Clone)]
pub(super) struct RunHandle {
    pub run: Arc<Run>,
    runs: Runs,
}

impl RunHandle {
    /// Keeps the events just sent.
    pub(super) fn record(&self, framed: &Framed) {
        if framed.events.is_empty() {
            return;
        }
        let mut log = lock(&self.run.log);
        for range in &framed.events {
            log.bytes += range.len();
            log.events.push(framed.bytes.slice(range.clone()));
        }
        drop(log);
        self.run.changed.notify_waiters();
    }

    /// What stops the run's chat (`POST /runs/{id}/cancel`).
    pub(super) fn cancel_token(&self) -> CancellationToken {
        self.run.cancel.clone()
    }

    /// Forgets a run whose chat could not start.
    pub(super) fn discard(self) {
        lock(&self.runs.inner.runs).remove(&self.run.id);
    }

    /// Ends the run as `state`, once; later calls change nothing.
    pub(super) fn end(&self, state: RunState) {
        let mut log = lock(&self.run.log);
        if log.state != RunState::Running {
            return;
        }
        log.state = state;
        log.ended = Some((Instant::now(), jiff::Timestamp::now()));
        drop(log);
        self.run.changed.notify_waiters();
    }

    /// Its response is over. A run `delivered` whole to its client, and
    /// followed by no one, is forgotten: its client has all of it. Any
    /// other is kept, events and all, for its retention.
    pub(super) fn close(&self, delivered: bool) {
        let log = lock(&self.run.log);
        if delivered && log.followers == 0 {
            drop(log);
            lock(&self.runs.inner.runs).remove(&self.run.id);
            return;
        }
        let bytes = log.bytes;
        drop(log);
        self.runs.ended(&self.run, bytes);
    }
}

impl RunState {
    fn name(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Waiting => "waiting",
            RunState::Done => "done",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn rfc3339(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(org: &str, role: Role, key: &str) -> Option<Principal> {
        Some(Principal {
            org: org.into(),
            role,
            key_label: key.into(),
        })
    }

    fn start(runs: &Runs) -> RunHandle {
        let caller = Caller::with_key(
            principal("acme", Role::Member, "k1").unwrap_or_else(|| unreachable!()),
            "test",
        );
        runs.start(&caller, "text/event-stream")
    }

    fn framed(events: &[&str]) -> Framed {
        let mut bytes = Vec::new();
        let mut ranges = Vec::new();
        for event in events {
            let at = bytes.len();
            bytes.extend_from_slice(event.as_bytes());
            ranges.push(at..bytes.len());
        }
        Framed {
            bytes: Bytes::from(bytes),
            events: ranges,
        }
    }

    #[test]
    fn a_run_is_seen_by_its_org_only() {
        let runs = Runs::new(Duration::from_secs(60));
        let handle = start(&runs);
        let id = handle.run.id.clone();
        assert!(
            runs.get(&principal("acme", Role::Viewer, "k2"), &id)
                .is_some()
        );
        assert!(
            runs.get(&principal("globex", Role::Admin, "k3"), &id)
                .is_none()
        );
        assert!(runs.get(&None, &id).is_none(), "nor by the local user");
    }

    #[test]
    fn a_run_whose_chat_waits_on_an_approval_shows_it() {
        let runs = Runs::new(Duration::from_secs(60));
        let run = start(&runs).run;
        let call = ToolCallReady {
            call: crate::plugins::ToolCallInfo {
                id: "call_1".into(),
                name: "demo__add_note".into(),
                server: "demo".into(),
                tool: "add_note".into(),
            },
            arguments: "{}".into(),
        };
        let answered = run.ask(&call, false);
        let view = run.view();
        assert_eq!(view.state, RunState::Waiting);
        assert_eq!(view.waiting_for[0].tool, "add_note");
        drop(answered);
        assert_eq!(run.view().state, RunState::Running);
    }

    #[tokio::test]
    async fn a_run_read_whole_is_forgotten_and_an_interrupted_one_is_kept() {
        let runs = Runs::new(Duration::from_secs(60));
        let member = principal("acme", Role::Member, "k1");
        let whole = start(&runs);
        whole.record(&framed(&["id: 1\n\n", "id: 2\n\n"]));
        whole.end(RunState::Done);
        whole.close(true);
        assert!(runs.get(&member, &whole.run.id).is_none());

        let cut = start(&runs);
        cut.record(&framed(&["id: 1\n\n", "id: 2\n\n"]));
        cut.end(RunState::Cancelled);
        cut.close(false);
        let run = runs
            .get(&member, &cut.run.id)
            .unwrap_or_else(|| unreachable!());
        assert_eq!(run.view().events, 2);
        let mut events = run.events_after(1);
        use futures::StreamExt;
        assert_eq!(events.next().await.as_deref(), Some(&b"id: 2\n\n"[..]));
        assert!(events.next().await.is_none());
    }

    #[test]
    fn the_oldest_ended_runs_are_forgotten_past_the_limit() {
        let runs = Runs::new(Duration::from_secs(60));
        let member = principal("acme", Role::Member, "k1");
        let first = start(&runs);
        first.end(RunState::Cancelled);
        first.close(false);
        for _ in 0..ENDED_RUNS {
            let next = start(&runs);
            next.end(RunState::Cancelled);
            next.close(false);
        }
        assert!(runs.get(&member, &first.run.id).is_none());
        assert_eq!(lock(&runs.inner.runs).len(), ENDED_RUNS);
    }
}
