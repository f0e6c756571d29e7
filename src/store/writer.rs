//! Group commit. One thread owns the write connection; every change is
//! sent to it as a closure. It takes whatever changes are waiting, runs
//! each inside its own savepoint of one transaction, commits once (one
//! fsync for the lot), and only then answers each caller. So every answer
//! is durable, and many concurrent schedules cost one disk flush, not one
//! each: durability without a weaker `synchronous` mode.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, sync_channel};

use rusqlite::Connection;

use super::{StoreError, StoreResult};

/// The most changes committed together.
const MAX_BATCH: usize = 512;

/// Tells a waiting caller how its change ended, once the batch's commit is
/// known (`Err` carries the commit's error text).
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A change: runs on the write connection inside the batch's transaction
/// (or is told why there is none) and says whether it succeeded (else its
/// savepoint is rolled back).
type Change = Box<dyn FnOnce(Result<&Connection, String>) -> (bool, Completion) + Send>;

pub(super) struct Writer {
    changes: Sender<Change>,
}

/// Counts committed batches, so readers can tell whether anything changed
/// since they last looked.
pub(super) type Generation = std::sync::Arc<std::sync::atomic::AtomicU64>;

impl Writer {
    /// Starts the writer thread `name` on `connection`.
    pub fn start(
        name: &str,
        connection: Connection,
        generation: Generation,
    ) -> std::io::Result<Writer> {
        let (changes, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || write_loop(&connection, &receiver, &generation))?;
        Ok(Writer { changes })
    }

    /// Runs `change` in the next batch and returns its result once the
    /// batch is committed. Blocks the calling thread until then.
    pub fn write<T, F>(&self, change: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, reply) = sync_channel::<StoreResult<T>>(1);
        self.submit(change, move |outcome| {
            // The caller may have given up waiting; nothing to do then.
            let _ = answer.send(outcome);
        })?;
        reply.recv().map_err(|_| StoreError::WriterGone)?
    }

    /// [`Writer::write`] for async callers: waits without holding a thread.
    pub async fn write_async<T, F>(&self, change: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, reply) = tokio::sync::oneshot::channel::<StoreResult<T>>();
        self.submit(change, move |outcome| {
            let _ = answer.send(outcome);
        })?;
        reply.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Queues `change`; `reply` hears its outcome once the batch's commit
    /// is known.
    fn submit<T, F, R>(&self, change: F, reply: R) -> StoreResult<()>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        R: FnOnce(StoreResult<T>) + Send + 'static,
    {
        let boxed: Change = Box::new(move |connection: Result<&Connection, String>| {
            let result = match connection {
                Ok(connection) => catch_unwind(AssertUnwindSafe(|| change(connection)))
                    .unwrap_or_else(|_| Err(StoreError::Commit("a store change panicked".into()))),
                Err(message) => Err(StoreError::Commit(message)),
            };
            let succeeded = result.is_ok();
            let completion: Completion = Box::new(move |commit| {
                reply(match commit {
                    Ok(()) => result,
                    Err(message) => Err(StoreError::Commit(message)),
                })
            });
            (succeeded, completion)
        });
        self.changes.send(boxed).map_err(|_| StoreError::WriterGone)
    }
}

fn write_loop(connection: &Connection, receiver: &Receiver<Change>, generation: &Generation) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(change) => batch.push(change),
                Err(_) => break,
            }
        }
        if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
            let message = error.to_string();
            // Nothing runs outside a transaction: every caller hears why.
            for change in batch {
                let (_, completion) = change(Err(message.clone()));
                completion(Err(message.clone()));
            }
            continue;
        }
        let mut completions = Vec::with_capacity(batch.len());
        for change in batch {
            let savepoint = run_cached(connection, "SAVEPOINT change");
            let (succeeded, completion) = change(Ok(connection));
            if savepoint.is_ok() {
                if !succeeded {
                    let _ = run_cached(connection, "ROLLBACK TO change");
                }
                let _ = run_cached(connection, "RELEASE change");
            }
            completions.push(completion);
        }
        let commit = connection
            .execute_batch("COMMIT")
            .map_err(|error| error.to_string());
        if commit.is_err() {
            let _ = connection.execute_batch("ROLLBACK");
        }
        // Before anyone is answered: a reader that saw the old generation
        // re-reads once the change is visible.
        generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for completion in completions {
            completion(commit.clone());
        }
    }
}

/// Runs a statement without parameters, parsed once per connection.
fn run_cached(connection: &Connection, sql: &str) -> rusqlite::Result<usize> {
    connection.prepare_cached(sql)?.execute([])
}
