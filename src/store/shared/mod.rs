//! The stores a project's jobs share: Scrapy Cloud's collections
//! (key-value stores) and its crawl frontier (HCF). They live in their own
//! SQLite file with their own writer thread, so a crawl pushing a million
//! requests never delays a `schedule.json` commit of the job store.
//!
//! Same guarantees as the job store: WAL with `synchronous = FULL` and
//! group commit (the writer module is shared), so when a function here
//! returns `Ok` the change is on disk.

mod collections;
mod frontier;

use std::path::Path;
use std::sync::MutexGuard;

use rusqlite::{Connection, params};

use super::StoreResult;
use super::database::{Database, Pragma, Schema};

pub use collections::{CollectionKind, CollectionRecords, CollectionRow};
pub use frontier::{Batch, NewRequests, SlotAddress};

/// SQLite's page cache per connection, in KiB (a negative `cache_size`).
/// Big enough that inserting into a store of millions of random keys does
/// not re-read the B-tree's inner pages on every insert; a fixed size, so
/// memory does not grow with the stores.
const CACHE_KIB: i64 = 32 * 1024;

/// How big the write-ahead log grows before the writer copies it into the
/// database, in pages (of 4 KiB: 64 MiB). Keys and fingerprints arrive in
/// random order, so an upload of thousands dirties thousands of pages;
/// checkpointing after every few uploads (SQLite's default, 1000 pages)
/// writes each page again and again, and costs two thirds of the insert
/// rate. A big log gets each page copied once for many uploads. Memory is
/// not affected (the log is a file); the file is cut back to this size
/// after each checkpoint.
const CHECKPOINT_PAGES: i64 = 16 * 1024;

/// How many batch uploads per collection or slot are remembered: a retry
/// arrives while its writer waits, long before that many others.
const REMEMBERED_UPLOADS: i64 = 1000;

/// How long an upload is remembered, in milliseconds: the client's first
/// retries come seconds to minutes apart. Past this, the same upload is a
/// new one (a script run again, adding the same seeds).
const REMEMBERED_MS: i64 = 3600 * 1000;

const MIGRATIONS: &[&str] = &[r#"
-- A collection is created by its first write and stays (listed, maybe
-- empty) until it is truncated. The four types of one name are four
-- collections.
CREATE TABLE collections (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('s', 'cs', 'vs', 'vcs')),
    UNIQUE (project_id, name, kind)
);
-- Keys arrive in random order. In a table ordered by key, each insert
-- would rewrite a page of whole records; here a new record is appended (its
-- id grows) and only the small key index takes the random insert, which
-- halves the pages an upload writes.
CREATE TABLE collection_records (
    id            INTEGER PRIMARY KEY,
    collection_id INTEGER NOT NULL,
    key           TEXT NOT NULL,       -- in byte (code point) order
    ts            INTEGER NOT NULL,    -- milliseconds, of the last write
    expires       INTEGER,             -- milliseconds; NULL: never (not a cached type)
    value         TEXT NOT NULL        -- a JSON object, without _key
);
CREATE UNIQUE INDEX collection_records_by_key ON collection_records (collection_id, key);
-- Only cached records are in it: purging the expired ones costs nothing to
-- the other types' writes.
CREATE INDEX collection_records_expiry ON collection_records (expires) WHERE expires IS NOT NULL;

-- A slot of a frontier exists from its first request until it is deleted.
CREATE TABLE hcf_slots (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL,
    frontier   TEXT NOT NULL,
    slot       TEXT NOT NULL,
    UNIQUE (project_id, frontier, slot)
);
-- Every fingerprint the slot has seen, with its fdata: the dedup set.
CREATE TABLE hcf_fingerprints (
    slot_id INTEGER NOT NULL,
    fp      TEXT NOT NULL,
    fdata   TEXT,                      -- JSON; NULL when none was given
    PRIMARY KEY (slot_id, fp)
) WITHOUT ROWID;
-- The queue: batches are made when requests are added and never change,
-- so an id names the same requests until the batch is deleted. Ids come
-- from AUTOINCREMENT: never handed out twice, even after a delete.
CREATE TABLE hcf_batches (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    slot_id  INTEGER NOT NULL,
    priority REAL NOT NULL,            -- lower first
    size     INTEGER NOT NULL,         -- how many requests
    requests TEXT NOT NULL             -- JSON [[fp, qdata], ...]
);
CREATE INDEX hcf_queue ON hcf_batches (slot_id, priority, id);

-- Batch uploads already applied, by their `start` and a digest of who
-- sent them and their body, so that a retried upload (its answer was lost)
-- is applied once and answered as the first time. The newest
-- REMEMBERED_UPLOADS per target, for REMEMBERED_MS.
CREATE TABLE applied_uploads (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind      TEXT NOT NULL CHECK (kind IN ('collection', 'slot')),
    target_id INTEGER NOT NULL,
    start     INTEGER NOT NULL,
    digest    INTEGER NOT NULL,
    at        INTEGER NOT NULL,        -- milliseconds
    answer    INTEGER NOT NULL         -- what the upload answered (a newcount)
);
CREATE INDEX applied_uploads_lookup ON applied_uploads (kind, target_id, start, digest);
CREATE INDEX applied_uploads_age ON applied_uploads (kind, target_id, seq);
"#];

/// A batch upload's identity: the `start` its writer gave (the index of its
/// first record) and a digest of who sent it and its body; and when it
/// arrived (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryMark {
    pub start: i64,
    pub digest: i64,
    pub at: i64,
}

impl RetryMark {
    /// The mark of an upload at `start` by `who` with `body`, arrived `at`
    /// (FNV-1a, 64 bits: stable across builds, unlike the standard
    /// library's hasher). Who sent it is part of it, so two jobs (each has
    /// its own credentials) adding the same seeds are two uploads.
    pub fn of(start: i64, who: &str, body: &[u8], at: i64) -> RetryMark {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in who.as_bytes().iter().chain(&[0]).chain(body) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        RetryMark {
            start,
            digest: hash as i64,
            at,
        }
    }
}

/// How the collections and frontiers database is opened: a big page
/// cache on both connections, a big write-ahead log on the writer's.
const SCHEMA: Schema = Schema {
    // Nobody else waits for this writer's commits: its own thread.
    writer_name: "shared-writer",
    bulk_writes: false,
    migrations: MIGRATIONS,
    write_pragmas: &[
        CACHE_PRAGMA,
        ("wal_autocheckpoint", &CHECKPOINT_PAGES),
        ("journal_size_limit", &(CHECKPOINT_PAGES * 4096)),
    ],
    read_pragmas: &[CACHE_PRAGMA],
    layout: None,
    fill: None,
};

const CACHE_PRAGMA: Pragma = ("cache_size", &-CACHE_KIB);

/// The collections and frontiers database.
pub struct SharedStore {
    database: Database,
}

impl SharedStore {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> StoreResult<SharedStore> {
        Ok(SharedStore {
            database: Database::open(path, &SCHEMA)?,
        })
    }

    /// A private database in a temporary folder, deleted with the store;
    /// for tests.
    pub fn open_temporary() -> StoreResult<SharedStore> {
        Ok(SharedStore {
            database: Database::open_temporary("shared.sqlite", &SCHEMA)?,
        })
    }

    /// The read connection. Callers hold it for one query (a page of a
    /// scan), never while an answer is sent.
    fn read(&self) -> MutexGuard<'_, Connection> {
        self.database.read()
    }

    /// Runs `change` in the writer's next batch; returns once committed.
    fn write<T, F>(&self, change: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.database.writer.write(change)
    }

    /// Removes every collection and frontier of a project (the project is
    /// being deleted; its id may be given to a new one).
    pub fn purge_project(&self, project_id: i64) -> StoreResult<()> {
        self.write(move |connection| {
            connection.execute(
                "DELETE FROM collection_records WHERE collection_id IN
                    (SELECT id FROM collections WHERE project_id = ?1)",
                [project_id],
            )?;
            connection.execute(
                "DELETE FROM applied_uploads WHERE kind = 'collection' AND target_id IN
                    (SELECT id FROM collections WHERE project_id = ?1)",
                [project_id],
            )?;
            connection.execute(
                "DELETE FROM collections WHERE project_id = ?1",
                [project_id],
            )?;
            let slots: Vec<i64> = connection
                .prepare("SELECT id FROM hcf_slots WHERE project_id = ?1")?
                .query_map([project_id], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            for slot_id in slots {
                frontier::delete_slot_in(connection, slot_id)?;
            }
            Ok(())
        })
    }
}

/// What an earlier application of the same upload answered, if there was one.
fn applied_answer(
    connection: &Connection,
    kind: &str,
    target_id: i64,
    mark: RetryMark,
) -> StoreResult<Option<i64>> {
    use rusqlite::OptionalExtension;
    Ok(connection
        .prepare_cached(
            "SELECT answer FROM applied_uploads
             WHERE kind = ?1 AND target_id = ?2 AND start = ?3 AND digest = ?4 AND at > ?5",
        )?
        .query_row(
            params![
                kind,
                target_id,
                mark.start,
                mark.digest,
                mark.at - REMEMBERED_MS
            ],
            |row| row.get(0),
        )
        .optional()?)
}

/// Records that an upload was applied and what it answered, forgetting the
/// target's oldest beyond [`REMEMBERED_UPLOADS`].
fn remember_upload(
    connection: &Connection,
    kind: &str,
    target_id: i64,
    mark: RetryMark,
    answer: i64,
) -> StoreResult<()> {
    connection
        .prepare_cached(
            "INSERT INTO applied_uploads (kind, target_id, start, digest, at, answer)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            kind,
            target_id,
            mark.start,
            mark.digest,
            mark.at,
            answer
        ])?;
    connection
        .prepare_cached(
            "DELETE FROM applied_uploads WHERE kind = ?1 AND target_id = ?2 AND seq <=
                (SELECT seq FROM applied_uploads WHERE kind = ?1 AND target_id = ?2
                 ORDER BY seq DESC LIMIT 1 OFFSET ?3)",
        )?
        .execute(params![kind, target_id, REMEMBERED_UPLOADS])?;
    Ok(())
}

/// Forgets the uploads applied to a target that is going away, or whose
/// records were deleted: the same upload again is then a change, not a
/// retry.
fn forget_uploads(connection: &Connection, kind: &str, target_id: i64) -> StoreResult<()> {
    connection
        .prepare_cached("DELETE FROM applied_uploads WHERE kind = ?1 AND target_id = ?2")?
        .execute(params![kind, target_id])?;
    Ok(())
}
