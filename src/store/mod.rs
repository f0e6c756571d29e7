//! The SQLite store: the single source of truth for projects, versions,
//! spiders and jobs. Everything else (the supervisor's view of running
//! crawls, the pages) is derived from it.
//!
//! Every state change is one transaction on a WAL database with
//! `synchronous = FULL`: when a function here returns `Ok`, the change is on
//! disk and survives a crash of the process or of the machine. The
//! interface is plain functions on [`Store`], so another backend can take
//! its place without the HTTP layer or the supervisor noticing.
//!
//! Pages are read without a bound `LIMIT`: this SQLite (built with STAT4)
//! plans a statement with the values of its parameters, so one whose
//! `LIMIT` is a parameter is prepared again at every run, which costs more
//! than a page's rows. A page's query follows an index's own order, and
//! the reading stops after the page's rows.

mod activity;
mod data;
mod database;
mod jobq;
mod jobs;
mod listing;
mod packed;
mod projects;
mod settings;
mod shared;
mod wal_writes;
mod writer;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

use database::{Database, Schema};

pub use activity::ActivityEvent;
pub use data::{
    AppendError, DataKind, DataStats, DataStore, NewRecord, PendingAppend, RecordBatch, RecordView,
};
pub use jobq::{JobQuery, MetaChange};
pub use jobs::{Job, JobFilter, JobState, NewJob};
pub use listing::{JobCursor, JobSection, JobSnapshot, JobView, write_pending_entry};
pub use packed::PackedStrings;
pub use projects::{Project, Version};
pub use shared::{
    Batch, CollectionKind, CollectionRecords, CollectionRow, NewRequests, RetryMark, SharedStore,
    SlotAddress,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt value in the database: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("database write failed: {0}")]
    Commit(String),
    #[error("the database writer has stopped")]
    WriterGone,
    /// The same spider with the same arguments is already pending or running.
    #[error("{0} already scheduled")]
    DuplicateJob(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Job counts as read at one generation, with the `keep` they were capped
/// at: `(generation, keep, (pending, running, finished))`.
type CachedCounts = (u64, usize, (u64, u64, u64));

/// The job store: its database and what is cached of it.
pub struct Store {
    database: Database,
    /// `daemonstatus.json` under load costs no query while nothing changes.
    counts: Mutex<Option<CachedCounts>>,
    /// Bumped after every committed change to projects or versions.
    catalog_generation: std::sync::atomic::AtomicU64,
    catalog: Mutex<Option<(u64, std::sync::Arc<projects::Catalog>)>>,
    /// The bot groups this node's supervisor runs jobs of, as a JSON array.
    served_botgroups: Mutex<String>,
}

/// How the job store's database is opened: no pragmas beyond the common
/// ones, and the writer every schedule waits on.
const SCHEMA: Schema = Schema {
    writer_name: "store-writer",
    bulk_writes: false,
    migrations: MIGRATIONS,
    write_pragmas: &[],
    read_pragmas: &[],
    layout: None,
    fill: Some(|index, connection| {
        if index == FILL_PENDING_ENTRIES {
            listing::fill_pending_entries(connection)?;
        }
        Ok(())
    }),
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many have run. Never edit a released step: add a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE projects (
    -- The Scrapy Cloud numeric id: AUTOINCREMENT never hands an id out twice,
    -- even after the project is deleted.
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    created_at  REAL NOT NULL
);
CREATE TABLE versions (
    project_id      INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    version         TEXT NOT NULL,       -- exactly as uploaded
    dir_name        TEXT NOT NULL,       -- names::version_dir_name(version)
    settings_module TEXT NOT NULL,       -- from EGG-INFO/entry_points.txt
    spiders         TEXT NOT NULL,       -- JSON array of spider names, sorted
    uploaded_at     REAL NOT NULL,
    PRIMARY KEY (project_id, version)
);
-- Numeric spider ids per project, and the per-spider job counter that makes
-- the Scrapy Cloud key project/spider/counter.
CREATE TABLE spiders (
    project_id   INTEGER NOT NULL,
    id           INTEGER NOT NULL,
    name         TEXT NOT NULL,
    last_counter INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, id),
    UNIQUE (project_id, name)
);
CREATE TABLE jobs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- order of arrival
    job_id          TEXT NOT NULL,                      -- the Scrapyd job id
    project_id      INTEGER NOT NULL,
    spider_id       INTEGER NOT NULL,
    counter         INTEGER NOT NULL,
    project         TEXT NOT NULL,
    spider          TEXT NOT NULL,
    version         TEXT,               -- as requested; NULL = the current one
    run_version     TEXT,               -- the version the crawl started with
    state           TEXT NOT NULL CHECK (state IN ('pending', 'running', 'finished', 'deleted')),
    priority        REAL NOT NULL,
    units           INTEGER NOT NULL,
    args            TEXT NOT NULL,      -- JSON [[name, value], ...], in order
    settings        TEXT NOT NULL,      -- JSON [[name, value], ...], in order
    tags            TEXT NOT NULL,      -- JSON array
    pending_time    REAL NOT NULL,
    start_time      REAL,
    end_time        REAL,
    pid             INTEGER,
    pid_start_ticks INTEGER,            -- /proc/<pid>/stat field 22: tells a reused pid apart
    exit_code       INTEGER,
    close_reason    TEXT,
    cancel_count    INTEGER NOT NULL DEFAULT 0,
    -- 0 hides the job from Scrapyd's listings (a pending job that was
    -- cancelled never ran, and Scrapyd clients expect it gone).
    listed          INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX jobs_queue ON jobs (priority DESC, seq) WHERE state = 'pending';
CREATE INDEX jobs_running ON jobs (seq) WHERE state = 'running';
CREATE INDEX jobs_finished ON jobs (end_time DESC, seq DESC) WHERE state = 'finished' AND listed = 1;
CREATE INDEX jobs_by_job_id ON jobs (job_id);
CREATE INDEX jobs_by_key ON jobs (project_id, spider_id, counter);
"#,
    r#"
-- The Scrapy Cloud side of the same job model.
-- Metadata set through the Cloud API (jobs/P/S/J, run.json's meta, a
-- worker's start and finish parameters): a JSON object whose keys are not
-- kept in columns of their own.
ALTER TABLE jobs ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
-- Who runs a running job when it is not this daemon's supervisor: an
-- outside worker that claimed it through the Cloud API.
ALTER TABLE jobs ADD COLUMN runner TEXT;
-- Tags of the spider, set with the Dash v2 spider endpoint.
ALTER TABLE spiders ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
-- One row per tag of a job: tag filters over a big project are index seeks.
CREATE TABLE job_tags (
    project_id INTEGER NOT NULL,
    tag        TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (project_id, tag, seq)
) WITHOUT ROWID;
CREATE INDEX jobs_by_project_state ON jobs (project_id, state, seq);
CREATE TABLE project_settings (
    project_id INTEGER NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,       -- JSON
    PRIMARY KEY (project_id, name)
) WITHOUT ROWID;
-- A project's activity log, newest last; events are JSON objects.
CREATE TABLE activity (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL,
    ts         INTEGER NOT NULL,    -- milliseconds
    event      TEXT NOT NULL
);
CREATE INDEX activity_by_project ON activity (project_id, seq);
"#,
    r#"
-- run.json refuses the same spider with the same arguments while one is
-- pending or running: one index seek, however long the queue (without it,
-- every run.json read each pending job of the project).
CREATE INDEX jobs_active_by_args ON jobs (project_id, spider_id, args)
    WHERE state IN ('pending', 'running');
"#,
    r#"
-- The job's entry in listjobs.json's pending list, but for its priority,
-- rendered once when it is scheduled (listing::write_pending_entry): a
-- listing of a long queue copies it. NULL: rendered as listed. Dropped
-- when the job is through (finished, cancelled, deleted).
-- The jobs already queued get theirs in the same transaction (FILL_PENDING_ENTRIES).
ALTER TABLE jobs ADD COLUMN pending_entry TEXT;
"#,
    r#"
-- Each project's queue, for the launcher while some projects' jobs wait
-- for outside workers (their bot groups not served here).
CREATE INDEX jobs_queue_by_project ON jobs (project_id, priority DESC, seq)
    WHERE state = 'pending';
"#,
    r#"
-- The jobs table again, with its state check written as comparisons: SQLite
-- checks `state IN (four names)` by building a temporary table of the
-- names on every insert or update of a job: making and dropping it took
-- 15 % of the instructions a schedule costs the writer, and the page
-- faults of its fresh memory came on top. A table's check cannot be
-- changed in place: the rows move to a new table, which takes the name.
CREATE TABLE jobs_rebuilt (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id          TEXT NOT NULL,
    project_id      INTEGER NOT NULL,
    spider_id       INTEGER NOT NULL,
    counter         INTEGER NOT NULL,
    project         TEXT NOT NULL,
    spider          TEXT NOT NULL,
    version         TEXT,
    run_version     TEXT,
    state           TEXT NOT NULL CHECK (state = 'pending' OR state = 'running'
                                         OR state = 'finished' OR state = 'deleted'),
    priority        REAL NOT NULL,
    units           INTEGER NOT NULL,
    args            TEXT NOT NULL,
    settings        TEXT NOT NULL,
    tags            TEXT NOT NULL,
    pending_time    REAL NOT NULL,
    start_time      REAL,
    end_time        REAL,
    pid             INTEGER,
    pid_start_ticks INTEGER,
    exit_code       INTEGER,
    close_reason    TEXT,
    cancel_count    INTEGER NOT NULL DEFAULT 0,
    listed          INTEGER NOT NULL DEFAULT 1,
    meta            TEXT NOT NULL DEFAULT '{}',
    runner          TEXT,
    pending_entry   TEXT
);
INSERT INTO jobs_rebuilt SELECT * FROM jobs;
-- AUTOINCREMENT's high-water mark, which may be above every kept row.
DELETE FROM sqlite_sequence WHERE name = 'jobs_rebuilt';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'jobs_rebuilt', seq FROM sqlite_sequence WHERE name = 'jobs';
DROP TABLE jobs;
ALTER TABLE jobs_rebuilt RENAME TO jobs;
CREATE INDEX jobs_queue ON jobs (priority DESC, seq) WHERE state = 'pending';
CREATE INDEX jobs_running ON jobs (seq) WHERE state = 'running';
CREATE INDEX jobs_finished ON jobs (end_time DESC, seq DESC) WHERE state = 'finished' AND listed = 1;
CREATE INDEX jobs_by_job_id ON jobs (job_id);
CREATE INDEX jobs_by_key ON jobs (project_id, spider_id, counter);
CREATE INDEX jobs_by_project_state ON jobs (project_id, state, seq);
CREATE INDEX jobs_active_by_args ON jobs (project_id, spider_id, args)
    WHERE state IN ('pending', 'running');
CREATE INDEX jobs_queue_by_project ON jobs (project_id, priority DESC, seq)
    WHERE state = 'pending';
"#,
];

/// The migration after which the queued jobs' pending entries are rendered
/// (SQL cannot write Python's JSON).
const FILL_PENDING_ENTRIES: usize = 3;

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> StoreResult<Store> {
        Ok(Store::with(Database::open(path, &SCHEMA)?))
    }

    /// A private database in a temporary folder, deleted with the store;
    /// for tests.
    pub fn open_temporary() -> StoreResult<Store> {
        Ok(Store::with(Database::open_temporary(
            "test.sqlite",
            &SCHEMA,
        )?))
    }

    fn with(database: Database) -> Store {
        Store {
            database,
            counts: Mutex::new(None),
            catalog_generation: std::sync::atomic::AtomicU64::new(0),
            catalog: Mutex::new(None),
            served_botgroups: Mutex::new("[]".into()),
        }
    }

    /// Sets the bot groups this node serves: jobs of a project whose
    /// `botgroups` setting names others stay pending for outside workers.
    pub fn serve_botgroups(&self, groups: &[String]) {
        let text = serde_json::Value::from(groups.to_vec()).to_string();
        *self
            .served_botgroups
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = text;
    }

    fn served_botgroups(&self) -> String {
        self.served_botgroups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The read connection.
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

    /// [`Store::write`] for async callers.
    async fn write_async<T, F>(&self, change: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.database.writer.write_async(change).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The step that rebuilt the jobs table, and those before it.
    const REBUILD: usize = 5;

    fn insert_job_sql(state: &str) -> String {
        format!(
            "INSERT INTO jobs (job_id, project_id, spider_id, counter, project, spider, state,
                               priority, units, args, settings, tags, pending_time)
             VALUES ('j', 1, 1, 1, 'p', 's', '{state}', 0, 1, '[]', '[]', '[]', 0)"
        )
    }

    #[test]
    fn rebuilding_the_jobs_table_keeps_its_rows_and_its_high_water_mark() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("old.sqlite");
        {
            let old = Connection::open(&path).unwrap();
            for step in &MIGRATIONS[..REBUILD] {
                old.execute_batch(step).unwrap();
            }
            old.pragma_update(None, "user_version", REBUILD as i64)
                .unwrap();
            for _ in 0..3 {
                old.execute_batch(&insert_job_sql("pending")).unwrap();
            }
            old.execute_batch(
                "UPDATE jobs SET state = 'finished' WHERE seq = 1; DELETE FROM jobs WHERE seq = 3",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let reader = store.read();
        let rows: Vec<(i64, String)> = reader
            .prepare("SELECT seq, state FROM jobs ORDER BY seq")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [(1, "finished".into()), (2, "pending".into())]);
        let number = |sql: &str| -> i64 { reader.query_row(sql, [], |row| row.get(0)).unwrap() };
        // Seq 3 was handed out once: the next job gets 4, not 3 again.
        let high = number("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'");
        assert_eq!(high, 3);
        let tables = number("SELECT count(*) FROM sqlite_schema WHERE name LIKE 'jobs_rebuilt%'");
        assert_eq!(tables, 0);
    }

    #[test]
    fn a_job_is_written_without_a_temporary_table_and_its_state_still_checked() {
        let store = Store::open_temporary().unwrap();
        let reader = store.read();
        // OpenEphemeral: a temporary b-tree made and dropped on each run.
        for sql in [
            insert_job_sql("pending"),
            "UPDATE jobs SET state = 'running' WHERE seq = 1".to_string(),
        ] {
            let opcodes: Vec<String> = reader
                .prepare(&format!("EXPLAIN {sql}"))
                .unwrap()
                .query_map([], |row| row.get(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(!opcodes.iter().any(|op| op == "OpenEphemeral"), "{sql}");
        }
        drop(reader);
        let bad = insert_job_sql("paused");
        let refused = store.write(move |connection| Ok(connection.execute_batch(&bad)?));
        assert!(refused.is_err());
    }
}
