//! Group commit: writes from many requests share one transaction and one
//! fsync.
//!
//! With `synchronous = FULL` each commit waits for the disk, and every
//! write queued behind the one connection while it did. The writer thread
//! takes all the writes queued while the last group was committing, runs
//! each in a savepoint of its own (a write that fails is rolled back
//! alone), commits once, and only then answers the callers: a write that
//! returned is on disk, as before.

use std::sync::{Arc, Mutex, mpsc};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::StoreError;

/// Most writes committed together.
const MAX_GROUP: usize = 256;

/// Answers a write's caller once its group's commit is known.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

trait Job: Send {
    /// Runs the write; whether it succeeded, and how to answer its caller.
    fn run(self: Box<Self>, c: &Connection) -> (bool, Reply);
    /// Answers the caller without running the write.
    fn fail(self: Box<Self>, error: String);
}

struct Write<F, T> {
    work: F,
    done: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Job for Write<F, T>
where
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send,
    T: Send + 'static,
{
    fn run(self: Box<Self>, c: &Connection) -> (bool, Reply) {
        let result = (self.work)(c);
        let done = self.done;
        let succeeded = result.is_ok();
        let reply = Box::new(move |committed: Result<(), String>| {
            let _ = done.send(match (result, committed) {
                (Ok(value), Ok(())) => Ok(value),
                (Err(e), _) => Err(StoreError::Sqlite(e)),
                (Ok(_), Err(e)) => Err(StoreError::Commit(e)),
            });
        });
        (succeeded, reply)
    }

    fn fail(self: Box<Self>, error: String) {
        let _ = self.done.send(Err(StoreError::Commit(error)));
    }
}

#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer thread; it ends when the last `Writer` is dropped.
    pub(super) fn start(conn: Arc<Mutex<Connection>>) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("agenthost-store".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP
                        && let Ok(job) = queue.try_recv()
                    {
                        group.push(job);
                    }
                    let c = conn.lock().unwrap_or_else(|p| p.into_inner());
                    commit_group(&c, group);
                }
            })?;
        Ok(Writer { jobs })
    }

    /// Runs `work` in the next group; returns once the group is committed.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (done, outcome) = oneshot::channel();
        self.jobs
            .send(Box::new(Write { work, done }))
            .map_err(|_| StoreError::Task)?;
        outcome.await.map_err(|_| StoreError::Task)?
    }
}

fn commit_group(c: &Connection, group: Vec<Box<dyn Job>>) {
    if let Err(e) = exec(c, "BEGIN IMMEDIATE") {
        for job in group {
            job.fail(e.to_string());
        }
        return;
    }
    let mut replies = Vec::with_capacity(group.len());
    let mut broken: Option<rusqlite::Error> = None;
    for job in group {
        if let Some(error) = &broken {
            job.fail(error.to_string());
            continue;
        }
        if let Err(e) = exec(c, "SAVEPOINT write") {
            job.fail(e.to_string());
            broken = Some(e);
            continue;
        }
        let (succeeded, reply) = job.run(c);
        replies.push(reply);
        let ended = match succeeded {
            true => exec(c, "RELEASE write"),
            false => exec(c, "ROLLBACK TO write").and_then(|()| exec(c, "RELEASE write")),
        };
        broken = ended.err();
    }
    let committed = match broken {
        None => exec(c, "COMMIT"),
        Some(e) => Err(e),
    };
    let committed = committed.map_err(|e| {
        let _ = exec(c, "ROLLBACK");
        e.to_string()
    });
    for reply in replies {
        reply(committed.clone());
    }
}

fn exec(c: &Connection, sql: &str) -> rusqlite::Result<()> {
    c.prepare_cached(sql)?.execute([]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore as Store;

    #[tokio::test]
    async fn concurrent_writes_share_commits_and_fail_alone() {
        let store = Store::in_memory().unwrap();
        let session = store.create_session("").await.unwrap();
        let writes = (0..50).map(|i| {
            let store = store.clone();
            let target = if i % 10 == 0 {
                "nope".to_owned()
            } else {
                session.id.clone()
            };
            tokio::spawn(async move {
                let message = super::super::StoredMessage {
                    role: "user".into(),
                    content: format!("m{i}"),
                    name: None,
                    tool_call_id: None,
                    tool_calls: None,
                    timestamp: "2025-01-01T00:00:00Z".into(),
                };
                store.append(&target, vec![message]).await.is_ok()
            })
        });
        let results = futures::future::join_all(writes).await;
        let stored = results.iter().filter(|r| *r.as_ref().unwrap()).count();
        assert_eq!(stored, 45, "writes to an unknown session fail alone");
        let history = store.history("", &session.id).await.unwrap().unwrap();
        assert_eq!(history.len(), 45);
    }
}
