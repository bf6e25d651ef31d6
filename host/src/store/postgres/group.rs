//! Group commit: the chats that open (or close) while earlier groups are
//! being committed go together in the next group, one statement and one
//! commit for all of them.
//!
//! A commit costs PostgreSQL CPU, a round trip and a WAL flush whatever
//! it holds, and under load those costs, not the rows, set how many chats
//! a replica serves. A lone chat waits for nobody: its group is itself.
//! Each caller is answered only once its group has committed, so a write
//! that returned is on disk, as with a commit of its own. A group the
//! database refuses is tried again one item at a time, so that one item
//! it cannot take (text with a NUL character, say) fails alone and not
//! the chats of others that happened to share its group.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::store::StoreError;

/// Groups of one kind committing at once: one commits while the next
/// gathers, and a second may start before the first is done.
const IN_FLIGHT: usize = 2;
/// Most items committed together.
const MAX_GROUP: usize = 64;

/// Commits a group's items in one statement; one outcome per item, in
/// the items' order. The items are shared so that they can be tried again
/// alone.
pub(super) type Commit<I, O> =
    Arc<dyn Fn(Arc<Vec<I>>) -> BoxFuture<'static, Result<Vec<O>, StoreError>> + Send + Sync>;

type Pending<I, O> = (I, oneshot::Sender<Result<O, StoreError>>);

/// Where items wait for the next group of their kind.
pub(super) struct Group<I, O> {
    queue: mpsc::UnboundedSender<Pending<I, O>>,
}

impl<I, O> Clone for Group<I, O> {
    fn clone(&self) -> Self {
        Group {
            queue: self.queue.clone(),
        }
    }
}

impl<I: Send + Sync + 'static, O: Send + 'static> Group<I, O> {
    /// Starts gathering groups for `commit`; it stops when the last
    /// `Group` is dropped.
    pub(super) fn start(commit: Commit<I, O>) -> Group<I, O> {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(gather(waiting, commit));
        Group { queue }
    }

    /// Commits `item` with whatever else is waiting. An outcome whose
    /// caller is gone is dropped, so one that holds something (a
    /// session's lease) lets it go.
    pub(super) async fn commit(&self, item: I) -> Result<O, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send((item, reply))
            .map_err(|_| StoreError::Task)?;
        outcome.await.map_err(|_| StoreError::Task)?
    }
}

async fn gather<I: Send + Sync + 'static, O: Send + 'static>(
    mut waiting: mpsc::UnboundedReceiver<Pending<I, O>>,
    commit: Commit<I, O>,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP
            && let Ok(next) = waiting.try_recv()
        {
            group.push(next);
        }
        let commit = commit.clone();
        tokio::spawn(async move {
            let (items, replies): (Vec<I>, Vec<_>) = group.into_iter().unzip();
            settle(&commit, items, replies).await;
            drop(slot);
        });
    }
}

/// Commits `items` and answers their callers.
async fn settle<I: Send + Sync + 'static, O: Send + 'static>(
    commit: &Commit<I, O>,
    items: Vec<I>,
    replies: Vec<oneshot::Sender<Result<O, StoreError>>>,
) {
    let alone = items.len() == 1;
    let items = Arc::new(items);
    match commit(items.clone()).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) if !alone && !e.is_unavailable() => {
            let Ok(items) = Arc::try_unwrap(items) else {
                return fail(replies, &e);
            };
            for (item, reply) in items.into_iter().zip(replies) {
                let outcome = commit(Arc::new(vec![item]))
                    .await
                    .and_then(|outcomes| outcomes.into_iter().next().ok_or(StoreError::Task));
                let _ = reply.send(outcome);
            }
        }
        Err(e) => fail(replies, &e),
    }
}

fn fail<O>(replies: Vec<oneshot::Sender<Result<O, StoreError>>>, error: &StoreError) {
    for reply in replies {
        let _ = reply.send(Err(each(error)));
    }
}

/// A group's error, for each of its callers.
fn each(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Postgres(m) => StoreError::Postgres(m.clone()),
        other => StoreError::Postgres(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_waiting_together_are_committed_as_one_group_in_order() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let commit: Commit<u32, u32> = Arc::new(move |items: Arc<Vec<u32>>| {
            seen.lock().unwrap().push(items.len());
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(items.iter().map(|i| i * 10).collect())
            })
        });
        let group = Group::start(commit);
        let outcomes = futures::future::join_all((0..40).map(|i| group.commit(i))).await;
        let outcomes: Vec<u32> = outcomes.into_iter().map(Result::unwrap).collect();
        assert_eq!(outcomes, (0..40).map(|i| i * 10).collect::<Vec<_>>());
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 40);
        assert!(
            sizes.len() < 40,
            "no group gathered more than one: {sizes:?}"
        );
    }

    #[tokio::test]
    async fn an_item_the_database_refuses_fails_alone_and_not_its_group() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let commit: Commit<&'static str, usize> = Arc::new(move |items: Arc<Vec<&'static str>>| {
            seen.lock().unwrap().push(items.len());
            Box::pin(async move {
                if items.iter().any(|i| i.contains('\0')) {
                    return Err(StoreError::Postgres("invalid byte sequence: 0x00".into()));
                }
                Ok(items.iter().map(|i| i.len()).collect())
            })
        });
        let group = Group::start(commit);
        let (good, bad, also_good) = tokio::join!(
            group.commit("one"),
            group.commit("t\0o"),
            group.commit("three")
        );
        assert_eq!(good.unwrap(), 3);
        assert_eq!(
            bad.unwrap_err().to_string(),
            "database error: invalid byte sequence: 0x00"
        );
        assert_eq!(also_good.unwrap(), 5);
        assert_eq!(*sizes.lock().unwrap(), [3, 1, 1, 1], "together, then alone");
    }

    #[tokio::test]
    async fn a_group_the_database_is_away_for_fails_each_of_its_items_with_the_cause() {
        let commit: Commit<u32, u32> = Arc::new(|_| {
            Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) })
        });
        let group = Group::start(commit);
        let (a, b) = tokio::join!(group.commit(1), group.commit(2));
        for outcome in [a, b] {
            assert_eq!(
                outcome.unwrap_err().to_string(),
                "the database is unavailable: connection refused"
            );
        }
    }
}
