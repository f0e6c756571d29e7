//! Group commit. One thread owns the write connection; every change is
//! sent to it as a closure. It runs the changes in one transaction, each
//! but the first inside its own savepoint (a change that fails is undone
//! alone), commits once (one fsync for the lot), and only then answers each
//! caller. So every answer is durable, and many concurrent
//! schedules cost one disk flush, not one each: durability without a
//! weaker `synchronous` mode.
//!
//! What keeps a caller's wait close to one commit:
//!
//! - **Gathering.** The callers answered at the end of a commit usually
//!   come straight back with their next change, a moment after the writer
//!   has found the queue empty or nearly so. Committing without them would
//!   make each of them wait for that whole commit, then for its own: two
//!   flushes per answer. So the writer counts the changes in play (those
//!   it just answered and those that queued meanwhile) and keeps the
//!   transaction open until as many have arrived, or until twice the time
//!   its callers usually take to come back (at least a commit's time, at
//!   most [`MAX_GATHER`]): a caller that stopped, or an open stream of
//!   requests, costs a bounded wait, not a stall.
//! - **Work on arrival.** Each change runs as soon as it is received, while
//!   the writer waits for the others, so the commit starts the moment the
//!   last one is in.
//! - **Answering on another thread.** Waking the callers of a batch costs
//!   a system call or two each; the `store-answers` thread does that while
//!   the writer starts on the next batch.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError, sync_channel};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::{StoreError, StoreResult};

/// The most changes committed together.
const MAX_BATCH: usize = 512;

/// The longest the writer waits for the callers of its last batch.
const MAX_GATHER: Duration = Duration::from_millis(1);

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

/// A change submitted with [`Writer::write_deferred`].
pub(super) struct Pending<T>(Receiver<StoreResult<T>>);

impl<T> Pending<T> {
    /// Blocks until the change's batch is committed; answers its result.
    pub fn wait(self) -> StoreResult<T> {
        self.0.recv().map_err(|_| StoreError::WriterGone)?
    }
}

/// Counts committed batches, so readers can tell whether anything changed
/// since they last looked.
pub(super) type Generation = std::sync::Arc<std::sync::atomic::AtomicU64>;

impl Writer {
    /// Starts the writer thread `name` on `connection`; with `bulk`, it
    /// and its answering thread run at bulk work's priority.
    pub fn start(
        name: &str,
        connection: Connection,
        generation: Generation,
        bulk: bool,
    ) -> std::io::Result<Writer> {
        let (changes, receiver) = std::sync::mpsc::channel();
        let (answers, answer_receiver) = std::sync::mpsc::channel::<Answers>();
        let priority = move || {
            if bulk {
                crate::priority::lower_this_thread();
            }
        };
        std::thread::Builder::new()
            .name(format!("{name}-answers"))
            .spawn(move || {
                priority();
                while let Ok((completions, commit)) = answer_receiver.recv() {
                    for completion in completions {
                        completion(commit.clone());
                    }
                }
            })?;
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                priority();
                write_loop(&connection, &receiver, &generation, &answers)
            })?;
        Ok(Writer { changes })
    }

    /// Runs `change` in the next batch and returns its result once the
    /// batch is committed. Blocks the calling thread until then.
    pub fn write<T, F>(&self, change: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.write_deferred(change)?.wait()
    }

    /// Runs `change` in the next batch without waiting: the answer
    /// waits for its commit.
    pub fn write_deferred<T, F>(&self, change: F) -> StoreResult<Pending<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, reply) = sync_channel::<StoreResult<T>>(1);
        self.submit(change, move |outcome| {
            // The caller may have given up waiting; nothing to do then.
            let _ = answer.send(outcome);
        })?;
        Ok(Pending(reply))
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

/// The completions of one committed batch, with the commit's outcome.
type Answers = (Vec<Completion>, Result<(), String>);

fn write_loop(
    connection: &Connection,
    receiver: &Receiver<Change>,
    generation: &Generation,
    answers: &Sender<Answers>,
) {
    let mut pace = Pace {
        in_play: 0,
        answered: Instant::now(),
        commit: Duration::from_micros(500),
        comeback: Duration::from_micros(200),
    };
    // Changes that arrived while the last batch was being committed.
    let mut waiting = Vec::new();
    loop {
        if waiting.is_empty() {
            match receiver.recv() {
                Ok(change) => waiting.push(change),
                Err(_) => return,
            }
        }
        if let Err(error) = run_cached(connection, "BEGIN IMMEDIATE") {
            take_waiting(receiver, &mut waiting);
            let message = error.to_string();
            // Nothing runs outside a transaction: every caller hears why.
            let completions = waiting
                .drain(..)
                .map(|change| change(Err(message.clone())).1)
                .collect();
            answer(answers, completions, Err(message));
            pace.in_play = 0;
            pace.answered = Instant::now();
            continue;
        }
        // Each change runs as soon as it arrives, so that the batch's work
        // is done by the time its last caller is in.
        let deadline = pace.deadline();
        let on_time = Instant::now() < deadline;
        let mut completions = Vec::with_capacity(pace.in_play.max(waiting.len()));
        let mut transaction = Transaction {
            open: true,
            held: 0,
        };
        loop {
            for change in waiting.drain(..) {
                completions.push(apply(connection, change, &mut transaction));
            }
            if completions.len() >= MAX_BATCH {
                break;
            }
            match receiver.try_recv() {
                Ok(change) => {
                    waiting.push(change);
                    continue;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => break,
            }
            if completions.len() >= pace.in_play {
                if on_time {
                    pace.came_back(pace.answered.elapsed());
                }
                break;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                if on_time {
                    pace.came_back(deadline - pace.answered);
                }
                break;
            };
            match receiver.recv_timeout(left) {
                Ok(change) => waiting.push(change),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
        }
        let committing = Instant::now();
        let commit = if transaction.open {
            run_cached(connection, "COMMIT")
                .map(|_| ())
                .map_err(|error| error.to_string())
        } else {
            // Its only change failed and was rolled back with it.
            Ok(())
        };
        if commit.is_err() {
            let _ = connection.execute_batch("ROLLBACK");
        }
        pace.commit = (pace.commit * 7 + committing.elapsed()) / 8;
        // Before anyone is answered: a reader that saw the old generation
        // re-reads once the change is visible.
        generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // What queued during the commit starts the next batch.
        take_waiting(receiver, &mut waiting);
        pace.in_play = completions.len() + waiting.len();
        answer(answers, completions, commit);
        pace.answered = Instant::now();
    }
}

/// The rhythm of the writer's callers, from which it decides how long to
/// keep a batch open.
struct Pace {
    /// Changes in play: those of the last batch, whose callers were just
    /// answered, and those that queued behind it.
    in_play: usize,
    /// When the last batch was answered.
    answered: Instant,
    /// About how long a commit takes.
    commit: Duration,
    /// About how long after its answers the last caller of a batch is back.
    comeback: Duration,
}

impl Pace {
    /// Until when the batch waits for the callers still out: twice their
    /// usual time to come back, at least a commit's time (a later caller
    /// would have waited that long anyway), at most [`MAX_GATHER`].
    fn deadline(&self) -> Instant {
        self.answered + (self.comeback * 2).max(self.commit).min(MAX_GATHER)
    }

    /// The last caller expected came back `after` the answers (or the
    /// batch stopped waiting then).
    fn came_back(&mut self, after: Duration) {
        if self.in_play > 1 {
            self.comeback = (self.comeback * 7 + after.min(MAX_GATHER)) / 8;
        }
    }
}

/// Tells the callers of a batch how it ended: through the answering thread
/// when there are several, directly when there is one (one wake-up either
/// way, and one thread less to go through).
fn answer(answers: &Sender<Answers>, completions: Vec<Completion>, commit: Result<(), String>) {
    let unsent = if completions.len() > 1 {
        match answers.send((completions, commit)) {
            Ok(()) => return,
            // Only if the answering thread is gone.
            Err(unsent) => unsent.0,
        }
    } else {
        (completions, commit)
    };
    let (completions, commit) = unsent;
    for completion in completions {
        completion(commit.clone());
    }
}

/// The transaction of a batch: whether it is open (a failed first change
/// rolls it back), and how many changes it holds.
struct Transaction {
    open: bool,
    held: usize,
}

/// Runs one change; rolled back alone if it fails.
fn apply(connection: &Connection, change: Change, transaction: &mut Transaction) -> Completion {
    if !transaction.open {
        if let Err(error) = run_cached(connection, "BEGIN IMMEDIATE") {
            // Nothing runs outside a transaction: the caller hears why.
            let message = error.to_string();
            let (_, completion) = change(Err(message.clone()));
            return Box::new(move |_| completion(Err(message)));
        }
        transaction.open = true;
    }
    if transaction.held == 0 {
        // The first change of a transaction needs no savepoint: should it
        // fail, rolling the transaction back undoes it alone. A savepoint
        // makes SQLite copy every page the change touches into a
        // sub-journal first: a quarter of the cost of a big upload of keys
        // in random order.
        let (succeeded, completion) = change(Ok(connection));
        if succeeded {
            transaction.held += 1;
        } else {
            let _ = connection.execute_batch("ROLLBACK");
            transaction.open = false;
        }
        return completion;
    }
    let savepoint = run_cached(connection, "SAVEPOINT change");
    let (succeeded, completion) = change(Ok(connection));
    if savepoint.is_ok() {
        if !succeeded {
            let _ = run_cached(connection, "ROLLBACK TO change");
        }
        let _ = run_cached(connection, "RELEASE change");
    }
    if succeeded {
        transaction.held += 1;
    }
    completion
}

/// Adds the changes already queued to `batch`, up to [`MAX_BATCH`].
fn take_waiting(receiver: &Receiver<Change>, batch: &mut Vec<Change>) {
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(change) => batch.push(change),
            Err(_) => break,
        }
    }
}

/// Runs a statement without parameters, parsed once per connection.
fn run_cached(connection: &Connection, sql: &str) -> rusqlite::Result<usize> {
    connection.prepare_cached(sql)?.execute([])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer on a fresh database with a table of unique values, and the
    /// database's path, to read what it committed.
    fn writer_on_table() -> (Writer, std::path::PathBuf, tempfile::TempDir) {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("writer.sqlite");
        let connection = Connection::open(&path).unwrap();
        connection
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER UNIQUE);")
            .unwrap();
        let writer =
            Writer::start("test-writer", connection, Generation::default(), false).unwrap();
        (writer, path, folder)
    }

    fn stored(reader: &Connection, value: i64) -> bool {
        reader
            .query_row("SELECT count(*) FROM t WHERE v = ?1", [value], |row| {
                row.get::<_, i64>(0)
            })
            .unwrap()
            == 1
    }

    #[test]
    fn concurrent_changes_are_committed_before_they_are_answered() {
        let (writer, path, _folder) = writer_on_table();
        let writer = std::sync::Arc::new(writer);
        let threads: Vec<_> = (0..12)
            .map(|thread| {
                let (writer, path) = (std::sync::Arc::clone(&writer), path.clone());
                std::thread::spawn(move || {
                    let reader = Connection::open(&path).unwrap();
                    for n in 0..40 {
                        let value = thread * 1000 + n;
                        writer
                            .write(move |c| Ok(c.execute("INSERT INTO t VALUES (?1)", [value])?))
                            .unwrap();
                        assert!(stored(&reader, value), "{value} answered before its commit");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let reader = Connection::open(&path).unwrap();
        let count: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 12 * 40);
    }

    #[test]
    fn a_failing_first_change_is_rolled_back_alone() {
        let (writer, path, _folder) = writer_on_table();
        let insert = |value: i64, fail: bool| {
            move |c: &Connection| {
                c.execute("INSERT INTO t VALUES (?1)", [value])?;
                if fail {
                    return Err(StoreError::Commit("refused".into()));
                }
                Ok(())
            }
        };
        // One at a time: each is the first (and only) change of its batch.
        assert!(writer.write(insert(1, true)).is_err());
        writer.write(insert(2, false)).unwrap();
        assert!(writer.write(insert(3, true)).is_err());
        let reader = Connection::open(&path).unwrap();
        assert!(!stored(&reader, 1) && stored(&reader, 2) && !stored(&reader, 3));
    }

    #[test]
    fn a_failing_change_is_rolled_back_alone() {
        let (writer, path, _folder) = writer_on_table();
        let writer = std::sync::Arc::new(writer);
        let threads: Vec<_> = (0..8)
            .map(|value| {
                let writer = std::sync::Arc::clone(&writer);
                std::thread::spawn(move || {
                    writer.write(move |c| {
                        c.execute("INSERT INTO t VALUES (?1)", [value])?;
                        if value % 2 == 1 {
                            return Err(StoreError::Commit("refused".into()));
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        let reader = Connection::open(&path).unwrap();
        for (value, thread) in threads.into_iter().enumerate() {
            let outcome = thread.join().unwrap();
            assert_eq!(outcome.is_ok(), value % 2 == 0);
            assert_eq!(stored(&reader, value as i64), value % 2 == 0);
        }
    }
}
