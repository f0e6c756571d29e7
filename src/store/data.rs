//! Job data: the items, log records, requests and stats samples every job
//! produced, in order, each once. A database of its own with a writer of
//! its own, so a crawl streaming items never delays a schedule's commit.
//!
//! Records are kept as JSON text with their index in the job's stream and
//! the time their batch was stored, in blocks: a row holds up to
//! [`BLOCK_RECORDS`] records of one batch (about [`BLOCK_BYTES`]), one a
//! line, numbered from the row's `n`. A row each cost the writer about a
//! microsecond and a half per record (a B-tree seek, an insert, a page
//! split every few dozen); a block costs that once. Per job and kind, a
//! running summary
//! (how many records, their bytes, how many have each field) answers
//! `…/stats` without reading the records. Capture offsets (how far a
//! crawl's files or stream were read) are committed with the records read
//! from them, so a restart neither loses nor repeats one.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use super::database::{Database, FileLayout, Schema};
use super::{StoreError, StoreResult, writer};
use crate::record;

/// The four streams of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Items,
    Logs,
    Requests,
    Samples,
}

impl DataKind {
    pub fn parse(name: &str) -> Option<DataKind> {
        match name {
            "items" => Some(DataKind::Items),
            "logs" => Some(DataKind::Logs),
            "requests" => Some(DataKind::Requests),
            "samples" => Some(DataKind::Samples),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Items => "items",
            DataKind::Logs => "logs",
            DataKind::Requests => "requests",
            DataKind::Samples => "samples",
        }
    }

    fn code(self) -> i64 {
        match self {
            DataKind::Items => 0,
            DataKind::Logs => 1,
            DataKind::Requests => 2,
            DataKind::Samples => 3,
        }
    }
}

/// One record to store: its compact JSON text, what it counts for in its
/// stream's stats (its fields; a log record, its level) and its bytes
/// there (`input_bytes`: a log record its message and a newline, anything
/// else its msgpack encoding, as Scrapy Cloud counts them).
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    pub json: String,
    /// Shared by the records of a batch that have the same fields.
    pub counts: Arc<[String]>,
    pub size: u64,
}

impl NewRecord {
    /// The record of a value.
    pub fn new(kind: DataKind, data: &Value) -> NewRecord {
        let (counts, size) = match (kind, data) {
            (DataKind::Logs, Value::Object(fields)) => {
                let level = fields.get("level").map(|level| match level {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                });
                let size = match fields.get("message") {
                    Some(Value::String(message)) => message.len() as u64 + 1,
                    _ => record::msgpack_size(data),
                };
                (level.into_iter().collect(), size)
            }
            (_, Value::Object(fields)) => {
                (fields.keys().cloned().collect(), record::msgpack_size(data))
            }
            _ => (Arc::from([]), record::msgpack_size(data)),
        };
        NewRecord {
            json: data.to_string(),
            counts,
            size,
        }
    }

    /// The record of a line of JSON (an item, a request, a sample: not a
    /// log record), checked and made compact without building a value.
    /// `previous` is the field list of the record before it, shared when
    /// this one has the same fields.
    pub fn from_line(
        text: &str,
        previous: &mut Option<Arc<[String]>>,
    ) -> Result<NewRecord, serde_json::Error> {
        let checked = record::check(text)?;
        let counts = match previous {
            Some(names) if names.iter().eq(checked.fields.iter()) => Arc::clone(names),
            _ => {
                let names: Arc<[String]> = checked.fields.iter().map(|n| n.to_string()).collect();
                *previous = Some(Arc::clone(&names));
                names
            }
        };
        Ok(NewRecord {
            json: checked.json,
            counts,
            size: checked.msgpack_size,
        })
    }
}

/// One record as the store takes it, borrowed from a [`NewRecord`] or a
/// [`RecordBatch`].
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub json: &'a str,
    pub counts: &'a Arc<[String]>,
    pub size: u64,
}

impl NewRecord {
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            json: &self.json,
            counts: &self.counts,
            size: self.size,
        }
    }
}

/// The records of one upload, held compactly: their JSON texts one after
/// another and 16 bytes each (an end, a size, a field list's number). A
/// client's batch may hold millions of tiny records within the body limit
/// (`{"a":1}` is 8 bytes); a [`NewRecord`] each (a string and a field list
/// of its own) would cost ten times the body, and a `Value` each far more.
#[derive(Debug, Default, Clone)]
pub struct RecordBatch {
    texts: super::PackedStrings,
    /// Each record's size (a record is at most 1 MiB) and its field
    /// list's place in `field_lists`.
    entries: Vec<(u32, u32)>,
    /// The distinct field lists of the batch, each once.
    field_lists: Vec<Arc<[String]>>,
    known_lists: HashMap<Arc<[String]>, u32>,
}

impl RecordBatch {
    pub fn push(&mut self, record: NewRecord) {
        // Records of a batch mostly have the fields of the one before.
        let fields = match self.entries.last() {
            Some(&(_, last)) if *self.field_lists[last as usize] == *record.counts => last,
            _ => match self.known_lists.get(&record.counts) {
                Some(&known) => known,
                None => {
                    let index = self.field_lists.len() as u32;
                    self.field_lists.push(Arc::clone(&record.counts));
                    self.known_lists.insert(record.counts, index);
                    index
                }
            },
        };
        self.texts.push(&record.json);
        let size = u32::try_from(record.size).unwrap_or(u32::MAX);
        self.entries.push((size, fields));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = RecordRef<'_>> {
        self.texts
            .iter()
            .zip(&self.entries)
            .map(|(json, &(size, fields))| RecordRef {
                json,
                counts: &self.field_lists[fields as usize],
                size: u64::from(size),
            })
    }
}

impl FromIterator<NewRecord> for RecordBatch {
    fn from_iter<I: IntoIterator<Item = NewRecord>>(records: I) -> RecordBatch {
        let mut batch = RecordBatch::default();
        for record in records {
            batch.push(record);
        }
        batch
    }
}

/// An append on its way to the disk.
pub struct PendingAppend(writer::Pending<()>);

impl PendingAppend {
    /// Waits until the records are committed (or why they are not).
    pub fn wait(self) -> StoreResult<()> {
        self.0.wait()
    }
}

/// A stored record as read back: its index, batch time and JSON text.
#[derive(Debug)]
pub struct RecordView<'a> {
    pub index: u64,
    pub ts: i64,
    pub json: &'a str,
}

/// What `…/stats` answers for one job and kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataStats {
    /// How many records have each field (logs: each level).
    pub counts: Map<String, Value>,
    pub input_values: u64,
    pub input_bytes: u64,
}

/// Why records could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// `?start=N` leaves a hole: records before N were never stored.
    #[error("start {start} is past the {count} records stored")]
    Gap { start: u64, count: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE records (
    job   INTEGER NOT NULL,     -- the job's seq in the job store
    kind  INTEGER NOT NULL,     -- 0 items, 1 logs, 2 requests, 3 samples
    n     INTEGER NOT NULL,     -- index in the job's stream of that kind
    ts    INTEGER NOT NULL,     -- when its batch was stored, in ms
    data  TEXT NOT NULL,        -- the record, JSON
    PRIMARY KEY (job, kind, n)
) WITHOUT ROWID;
CREATE TABLE record_stats (
    job          INTEGER NOT NULL,
    kind         INTEGER NOT NULL,
    counts       TEXT NOT NULL,  -- JSON object: field (logs: level) -> records
    input_values INTEGER NOT NULL,
    input_bytes  INTEGER NOT NULL,
    PRIMARY KEY (job, kind)
) WITHOUT ROWID;
-- How far a crawl's output was read into the records above.
CREATE TABLE capture_offsets (
    job    INTEGER NOT NULL,
    source TEXT NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY (job, source)
) WITHOUT ROWID;
"#,
    r#"
-- Scrapy's word on how a crawl ended (start-crawl's FIN), kept with the
-- offset of the stream it was read from, so it survives a restart of the
-- daemon between the event and the end of the process.
CREATE TABLE crawl_outcomes (
    job     INTEGER PRIMARY KEY,
    outcome TEXT NOT NULL
);
"#,
    r#"
-- Records in blocks: a row holds `count` records, numbered from its `n`,
-- their JSON texts one a line in `data`. A table with rowids, found by an
-- index: a block is appended at the table's end, and the B-tree is
-- searched by integers. (In `records`, keyed by the whole row, every
-- search step that met a long row read all of it.)
CREATE TABLE record_blocks (
    id    INTEGER PRIMARY KEY,
    job   INTEGER NOT NULL,
    kind  INTEGER NOT NULL,
    n     INTEGER NOT NULL,
    count INTEGER NOT NULL,
    ts    INTEGER NOT NULL,
    data  TEXT NOT NULL
);
CREATE UNIQUE INDEX record_blocks_by_n ON record_blocks (job, kind, n);
-- Rows from before hold one record each, and are read whole.
INSERT INTO record_blocks (job, kind, n, count, ts, data)
    SELECT job, kind, n, 1, ts, data FROM records ORDER BY job, kind, n;
DROP TABLE records;
"#,
];

/// A block of records is closed once its texts reach this many bytes...
const BLOCK_BYTES: usize = 32 * 1024;
/// ...or it holds this many records (tiny ones): a read of one record
/// splits at most this many lines.
const BLOCK_RECORDS: usize = 512;

/// How the job data database is opened.
const SCHEMA: Schema = Schema {
    writer_name: "data-writer",
    // Records by the thousand from every running crawl: on a busy machine
    // they wait a moment for the CPU, a schedule's commit does not.
    bulk_writes: true,
    migrations: MIGRATIONS,
    write_pragmas: &[],
    read_pragmas: &[],
    layout: Some(FileLayout {
        // Records come in blocks of about 32 KiB: on 16 KiB pages a block
        // is a cell and two overflow pages (eight on 4 KiB ones), each a
        // WAL frame written and checkpointed.
        page_size: 16384,
        // Pages freed by a deleted job go back to the disk.
        incremental_vacuum: true,
    }),
    fill: None,
};

/// The job data database.
pub struct DataStore {
    database: Database,
    /// The last batch time handed out: every batch of a job gets its own.
    last_ts: Mutex<i64>,
    /// Jobs deleted while this process runs: a crawl still winding down
    /// (or a batch queued before the delete) adds nothing to them. Checked
    /// on the writer thread, after the delete's own change.
    deleted: Arc<Mutex<HashSet<i64>>>,
}

fn was_deleted(deleted: &Mutex<HashSet<i64>>, job: i64) -> bool {
    deleted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&job)
}

impl DataStore {
    /// Opens (creating if needed) the job data database at `path`.
    pub fn open(path: &Path) -> StoreResult<DataStore> {
        Ok(DataStore {
            database: Database::open(path, &SCHEMA)?,
            last_ts: Mutex::new(0),
            deleted: Arc::default(),
        })
    }

    fn read(&self) -> MutexGuard<'_, Connection> {
        self.database.read()
    }

    /// A batch time in ms, later than every one handed out before.
    fn batch_ts(&self, now_ms: i64) -> i64 {
        let mut last = self.last_ts.lock().unwrap_or_else(|p| p.into_inner());
        *last = now_ms.max(*last + 1);
        *last
    }

    /// Appends records to a job's stream, with the capture offset they
    /// were read up to, in one commit. With `start` (a client's batch
    /// retried), records below the count already stored are skipped.
    /// Answers the count after.
    pub fn append(
        &self,
        job: i64,
        kind: DataKind,
        start: Option<u64>,
        records: RecordBatch,
        offset: Option<(String, u64)>,
        now_ms: i64,
    ) -> Result<u64, AppendError> {
        let ts = self.batch_ts(now_ms);
        let deleted = Arc::clone(&self.deleted);
        self.database.writer.write(move |connection| {
            if was_deleted(&deleted, job) {
                return Ok(Ok(0));
            }
            let (length, records) = (records.len(), records.iter());
            let count = match append_in(connection, job, kind, start, length, records, ts)? {
                Ok(count) => count,
                Err(gap) => return Ok(Err(gap)),
            };
            if let Some((source, offset)) = &offset {
                set_offset_in(connection, job, source, *offset)?;
            }
            Ok(Ok(count))
        })?
    }

    /// [`DataStore::append`] of records read up to `offset` (no `start`),
    /// without waiting for the commit: the caller goes on reading and
    /// waits before its next append.
    pub fn append_deferred(
        &self,
        job: i64,
        kind: DataKind,
        records: Vec<NewRecord>,
        offset: (String, u64),
        now_ms: i64,
    ) -> StoreResult<PendingAppend> {
        let ts = self.batch_ts(now_ms);
        let deleted = Arc::clone(&self.deleted);
        let pending = self.database.writer.write_deferred(move |connection| {
            if was_deleted(&deleted, job) {
                return Ok(());
            }
            // No `start`: there is no gap to find.
            let (length, records) = (records.len(), records.iter().map(NewRecord::as_ref));
            let _ = append_in(connection, job, kind, None, length, records, ts)?;
            set_offset_in(connection, job, &offset.0, offset.1)
        })?;
        Ok(PendingAppend(pending))
    }

    /// Appends records of several streams of a job (what one read of a
    /// crawl's event stream held) with the offset read up to and the
    /// crawl's outcome if the read held it, in one commit.
    pub fn append_streams(
        &self,
        job: i64,
        batches: Vec<(DataKind, Vec<NewRecord>)>,
        outcome: Option<String>,
        offset: (String, u64),
        now_ms: i64,
    ) -> StoreResult<()> {
        let ts = self.batch_ts(now_ms);
        let deleted = Arc::clone(&self.deleted);
        self.database.writer.write(move |connection| {
            if was_deleted(&deleted, job) {
                return Ok(());
            }
            for (kind, records) in batches {
                // No `start`: there is no gap to find.
                let (length, records) = (records.len(), records.iter().map(NewRecord::as_ref));
                let _ = append_in(connection, job, kind, None, length, records, ts)?;
            }
            if let Some(outcome) = &outcome {
                connection
                    .prepare_cached(
                        "INSERT INTO crawl_outcomes (job, outcome) VALUES (?1, ?2)
                         ON CONFLICT (job) DO UPDATE SET outcome = excluded.outcome",
                    )?
                    .execute(params![job, outcome])?;
            }
            set_offset_in(connection, job, &offset.0, offset.1)
        })
    }

    /// How the crawl said it ended, if it said so (start-crawl's `FIN`).
    pub fn crawl_outcome(&self, job: i64) -> StoreResult<Option<String>> {
        Ok(self
            .read()
            .prepare_cached("SELECT outcome FROM crawl_outcomes WHERE job = ?1")?
            .query_row([job], |row| row.get(0))
            .optional()?)
    }

    /// A job's stats for one kind (all zero when it has no records).
    pub fn stats(&self, job: i64, kind: DataKind) -> StoreResult<DataStats> {
        stats_in(&self.read(), job, kind)
    }

    /// How many items and log records each of `jobs` has (those with
    /// neither are left out): the counts of their stats alone, in one
    /// query, for a listing that shows them for each job.
    pub fn item_and_log_counts(&self, jobs: &[i64]) -> StoreResult<HashMap<i64, (u64, u64)>> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT job, kind, input_values FROM record_stats
             WHERE job IN (SELECT value FROM json_each(?1)) AND kind IN (0, 1)",
        )?;
        let ids = serde_json::to_string(jobs)?;
        let mut counts: HashMap<i64, (u64, u64)> = HashMap::new();
        let mut rows = statement.query([ids])?;
        while let Some(row) = rows.next()? {
            let entry = counts.entry(row.get(0)?).or_default();
            let count = row.get::<_, i64>(2)?.max(0) as u64;
            match row.get::<_, i64>(1)? {
                0 => entry.0 = count,
                _ => entry.1 = count,
            }
        }
        Ok(counts)
    }

    /// Gives `visit` up to `max` records of a job from index `from`, in
    /// order; answers whether records may follow. The blocks come in the
    /// order of `n` (their index), from the one holding `from`: stepping stops
    /// once `max` records are given (no bound `LIMIT`, see
    /// [`crate::store`]).
    pub fn read_records(
        &self,
        job: i64,
        kind: DataKind,
        from: u64,
        max: usize,
        visit: &mut dyn FnMut(RecordView) -> bool,
    ) -> StoreResult<bool> {
        // Past every index SQLite can hold: no record (as an i64 it would
        // turn negative and select the whole stream).
        let Ok(from_n) = i64::try_from(from) else {
            return Ok(false);
        };
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT n, count, ts, data FROM record_blocks
             WHERE job = ?1 AND kind = ?2 AND n >= (
                 SELECT IFNULL(MAX(n), 0) FROM record_blocks
                 WHERE job = ?1 AND kind = ?2 AND n <= ?3)
             ORDER BY n",
        )?;
        let mut rows = statement.query(params![job, kind.code(), from_n])?;
        let mut seen = 0;
        while seen < max {
            let Some(row) = rows.next()? else { break };
            let first = row.get::<_, i64>(0)? as u64;
            let count = row.get::<_, i64>(1)?;
            let ts = row.get(2)?;
            let data = row.get_ref(3)?.as_str().map_err(rusqlite::Error::from)?;
            // At most `count` texts: a row of one record is read whole
            // (rows from before blocks hold one each, whatever their text).
            let texts = data.splitn(count.max(1) as usize, '\n');
            for (index, json) in (first..).zip(texts) {
                if index < from {
                    continue;
                }
                if seen == max {
                    return Ok(true);
                }
                seen += 1;
                if !visit(RecordView { index, ts, json }) {
                    return Ok(false);
                }
            }
        }
        Ok(seen == max)
    }

    /// The job was deleted while this process runs: nothing more is
    /// stored for it.
    pub fn is_deleted(&self, job: i64) -> bool {
        was_deleted(&self.deleted, job)
    }

    /// Where capture of `source` stopped for a job (0 if it never began).
    pub fn capture_offset(&self, job: i64, source: &str) -> StoreResult<u64> {
        let offset: Option<i64> = self
            .read()
            .prepare_cached("SELECT offset FROM capture_offsets WHERE job = ?1 AND source = ?2")?
            .query_row(params![job, source], |row| row.get(0))
            .optional()?;
        Ok(offset.unwrap_or(0).max(0) as u64)
    }

    /// Deletes every record of a job, and its stats and offsets, and gives
    /// the space they took back to the disk.
    pub fn delete_job(&self, job: i64) -> StoreResult<()> {
        self.delete_jobs(vec![job])
    }

    /// [`DataStore::delete_job`] for several jobs, in one commit.
    pub fn delete_jobs(&self, jobs: Vec<i64>) -> StoreResult<()> {
        self.deleted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(jobs.iter().copied());
        self.database.writer.write(move |connection| {
            for table in [
                "record_blocks",
                "record_stats",
                "capture_offsets",
                "crawl_outcomes",
            ] {
                let mut delete =
                    connection.prepare_cached(&format!("DELETE FROM {table} WHERE job = ?1"))?;
                for job in &jobs {
                    delete.execute([job])?;
                }
            }
            // The freed pages leave the file with this commit. It frees one
            // page per step (a row each): stepped to the end.
            let mut vacuum = connection.prepare("PRAGMA incremental_vacuum")?;
            let mut freed = vacuum.query([])?;
            while freed.next()?.is_some() {}
            Ok(())
        })
    }
}

/// Appends records inside a write under way: answers the count after, or
/// the gap a `start` past the count would leave.
/// Appends `length` records to a job's stream (`start`: where the first
/// of them belongs; those already stored are skipped).
fn append_in<'a>(
    connection: &Connection,
    job: i64,
    kind: DataKind,
    start: Option<u64>,
    length: usize,
    records: impl Iterator<Item = RecordRef<'a>>,
    ts: i64,
) -> StoreResult<Result<u64, AppendError>> {
    let mut stats = stats_in(connection, job, kind)?;
    let count = stats.input_values;
    let skip = match start {
        Some(start) if start > count => return Ok(Err(AppendError::Gap { start, count })),
        Some(start) => (count - start) as usize,
        None => 0,
    };
    if length <= skip {
        return Ok(Ok(count));
    }
    let mut blocks = BlockWriter::new(connection, job, kind, stats.input_values, ts)?;
    // Records of a stream mostly have the same fields: each run of
    // records with the same ones is counted at once.
    let mut run: Option<(&Arc<[String]>, u64)> = None;
    for record in records.skip(skip) {
        blocks.push(record.json)?;
        match &mut run {
            Some((names, count))
                if Arc::ptr_eq(names, record.counts) || ***names == **record.counts =>
            {
                *count += 1
            }
            _ => {
                if let Some((names, count)) = run.replace((record.counts, 1)) {
                    count_names(&mut stats, names, count);
                }
            }
        }
        stats.input_values += 1;
        stats.input_bytes += record.size;
    }
    if let Some((names, count)) = run {
        count_names(&mut stats, names, count);
    }
    blocks.close()?;
    connection
        .prepare_cached(
            "INSERT INTO record_stats (job, kind, counts, input_values, input_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (job, kind) DO UPDATE SET counts = excluded.counts,
                 input_values = excluded.input_values, input_bytes = excluded.input_bytes",
        )?
        .execute(params![
            job,
            kind.code(),
            Value::Object(stats.counts.clone()).to_string(),
            stats.input_values as i64,
            stats.input_bytes as i64
        ])?;
    Ok(Ok(stats.input_values))
}

/// Gathers the records of one append into blocks, and inserts each once
/// it is full.
struct BlockWriter<'c> {
    insert: rusqlite::CachedStatement<'c>,
    job: i64,
    kind: i64,
    ts: i64,
    /// The index of the block's first record.
    first: u64,
    count: usize,
    texts: String,
}

impl<'c> BlockWriter<'c> {
    fn new(
        connection: &'c Connection,
        job: i64,
        kind: DataKind,
        first: u64,
        ts: i64,
    ) -> StoreResult<BlockWriter<'c>> {
        Ok(BlockWriter {
            insert: connection.prepare_cached(
                "INSERT INTO record_blocks (job, kind, n, count, ts, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?,
            job,
            kind: kind.code(),
            ts,
            first,
            count: 0,
            texts: String::with_capacity(BLOCK_BYTES + BLOCK_BYTES / 4),
        })
    }

    fn push(&mut self, json: &str) -> StoreResult<()> {
        if json.contains('\n') {
            // Compact JSON has no line break; a text with one (only
            // whitespace between its tokens can be) gets a row of its own,
            // which is read whole.
            self.close()?;
            self.texts.push_str(json);
            self.count = 1;
            return self.close();
        }
        if self.count > 0 {
            self.texts.push('\n');
        }
        self.texts.push_str(json);
        self.count += 1;
        if self.texts.len() >= BLOCK_BYTES || self.count == BLOCK_RECORDS {
            self.close()?;
        }
        Ok(())
    }

    /// Inserts the block gathered so far, if any.
    fn close(&mut self) -> StoreResult<()> {
        if self.count == 0 {
            return Ok(());
        }
        self.insert.execute(params![
            self.job,
            self.kind,
            self.first as i64,
            self.count as i64,
            self.ts,
            self.texts
        ])?;
        self.first += self.count as u64;
        self.count = 0;
        self.texts.clear();
        // On the data writer, a bulk thread: a block is its piece of work.
        crate::priority::let_others_run();
        Ok(())
    }
}

/// Adds `count` records having each of `names` to the stats' counts.
fn count_names(stats: &mut DataStats, names: &[String], count: u64) {
    for name in names {
        match stats.counts.get_mut(name.as_str()) {
            Some(known) => *known = Value::from(known.as_u64().unwrap_or(0) + count),
            None => {
                stats.counts.insert(name.clone(), Value::from(count));
            }
        }
    }
}

fn set_offset_in(connection: &Connection, job: i64, source: &str, offset: u64) -> StoreResult<()> {
    connection
        .prepare_cached(
            "INSERT INTO capture_offsets (job, source, offset) VALUES (?1, ?2, ?3)
             ON CONFLICT (job, source) DO UPDATE SET offset = excluded.offset",
        )?
        .execute(params![job, source, offset as i64])?;
    Ok(())
}

fn stats_in(connection: &Connection, job: i64, kind: DataKind) -> StoreResult<DataStats> {
    let row: Option<(String, i64, i64)> = connection
        .prepare_cached(
            "SELECT counts, input_values, input_bytes FROM record_stats WHERE job = ?1 AND kind = ?2",
        )?
        .query_row(params![job, kind.code()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    Ok(match row {
        None => DataStats::default(),
        Some((counts, values, bytes)) => DataStats {
            counts: match serde_json::from_str(&counts)? {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            input_values: values.max(0) as u64,
            input_bytes: bytes.max(0) as u64,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, DataStore) {
        let folder = tempfile::tempdir().unwrap();
        let store = DataStore::open(&folder.path().join("data.sqlite")).unwrap();
        (folder, store)
    }

    fn records(values: &[Value]) -> RecordBatch {
        values
            .iter()
            .map(|data| NewRecord::new(DataKind::Items, data))
            .collect()
    }

    fn logs(values: &[Value]) -> RecordBatch {
        values
            .iter()
            .map(|data| NewRecord::new(DataKind::Logs, data))
            .collect()
    }

    #[test]
    fn a_crawls_outcome_commits_with_its_stream_and_goes_with_the_job() {
        let (_folder, store) = store();
        assert_eq!(store.crawl_outcome(7).unwrap(), None);
        let batches = vec![(
            DataKind::Items,
            vec![NewRecord::new(DataKind::Items, &json!({"a": 1}))],
        )];
        store
            .append_streams(
                7,
                batches,
                Some("shutdown".into()),
                ("stream".into(), 40),
                1,
            )
            .unwrap();
        assert_eq!(store.crawl_outcome(7).unwrap().as_deref(), Some("shutdown"));
        assert_eq!(store.capture_offset(7, "stream").unwrap(), 40);
        // A later read without a FIN keeps the outcome.
        store
            .append_streams(7, Vec::new(), None, ("stream".into(), 60), 2)
            .unwrap();
        assert_eq!(store.crawl_outcome(7).unwrap().as_deref(), Some("shutdown"));
        store.delete_job(7).unwrap();
        assert_eq!(store.crawl_outcome(7).unwrap(), None);
    }

    #[test]
    fn deleting_a_job_gives_its_pages_back() {
        let (folder, store) = store();
        let big: Vec<Value> = (0..2000)
            .map(|n| json!({"n": n, "pad": "x".repeat(1000)}))
            .collect();
        store
            .append(7, DataKind::Items, None, records(&big), None, 1)
            .unwrap();
        let pages = || -> i64 {
            store
                .read()
                .pragma_query_value(None, "page_count", |row| row.get(0))
                .unwrap()
        };
        let full = pages();
        store.delete_job(7).unwrap();
        assert!(pages() * 10 < full, "{} pages of {full} left", pages());
        drop(folder);
    }

    fn all(store: &DataStore, job: i64) -> Vec<(u64, String)> {
        read_from(store, job, 0, 100).0
    }

    /// Records `from..` as read, `max` at most.
    fn read_from(store: &DataStore, job: i64, from: u64, max: usize) -> (Vec<(u64, String)>, bool) {
        let mut found = Vec::new();
        let more = store
            .read_records(job, DataKind::Items, from, max, &mut |view| {
                found.push((view.index, view.json.to_string()));
                true
            })
            .unwrap();
        (found, more)
    }

    #[test]
    fn records_are_read_from_anywhere_in_their_blocks() {
        let (_folder, store) = store();
        // Tiny records fill blocks by count, long ones by bytes; two
        // appends, so that blocks of both meet.
        let tiny: Vec<Value> = (0..1300).map(|n| json!({ "n": n })).collect();
        let long: Vec<Value> = (1300..1500)
            .map(|n| json!({ "n": n, "pad": "x".repeat(900) }))
            .collect();
        store
            .append(3, DataKind::Items, None, records(&tiny), None, 1)
            .unwrap();
        store
            .append(3, DataKind::Items, None, records(&long), None, 2)
            .unwrap();
        let blocks: i64 = store
            .read()
            .query_row(
                "SELECT COUNT(*) FROM record_blocks WHERE job = 3",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!((5..20).contains(&blocks), "{blocks} blocks");
        let expected = |n: u64| -> String {
            let value = if n < 1300 {
                &tiny[n as usize]
            } else {
                &long[n as usize - 1300]
            };
            value.to_string()
        };
        for from in [0, 1, 511, 512, 513, 1023, 1299, 1300, 1301, 1499] {
            for max in [1, 2, 100, 700] {
                let (found, more) = read_from(&store, 3, from, max);
                let want: Vec<(u64, String)> = (from..1500.min(from + max as u64))
                    .map(|n| (n, expected(n)))
                    .collect();
                assert_eq!(found, want, "from {from}, max {max}");
                assert_eq!(more, found.len() == max, "from {from}, max {max}");
            }
        }
        assert_eq!(read_from(&store, 3, 1500, 10), (Vec::new(), false));
        let (found, _) = read_from(&store, 3, 0, 2000);
        assert_eq!(found.len(), 1500);
        assert_eq!(read_from(&store, 3, u64::MAX, 10), (Vec::new(), false));
        assert_eq!(read_from(&store, 3, 1 << 63, 10), (Vec::new(), false));
        let times: Vec<i64> = [1299, 1300]
            .iter()
            .map(|&n| {
                let mut ts = 0;
                store
                    .read_records(3, DataKind::Items, n, 1, &mut |view| {
                        ts = view.ts;
                        true
                    })
                    .unwrap();
                ts
            })
            .collect();
        assert_eq!(times, [1, 2]);
    }

    #[test]
    fn rows_of_one_record_are_read_whole() {
        // A store from before blocks: a row a record, in `records`.
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("data.sqlite");
        {
            let old = Connection::open(&path).unwrap();
            for migration in &MIGRATIONS[..2] {
                old.execute_batch(migration).unwrap();
            }
            old.execute_batch(
                "PRAGMA user_version = 2;
                 INSERT INTO records (job, kind, n, ts, data) VALUES (4, 0, 0, 1, '{\"a\":1}');
                 INSERT INTO records (job, kind, n, ts, data) VALUES (4, 0, 1, 1, '{\"a\":\n2}');
                 INSERT INTO record_stats (job, kind, counts, input_values, input_bytes)
                     VALUES (4, 0, '{}', 2, 2);",
            )
            .unwrap();
        }
        let store = DataStore::open(&path).unwrap();
        // A text with a line break (not compact) gets a row of its own.
        let mut batch = RecordBatch::default();
        for json in ["{\"b\":3}", "{\"b\":\n4}", "{\"b\":5}"] {
            batch.push(NewRecord {
                json: json.to_string(),
                counts: Arc::from([]),
                size: 1,
            });
        }
        assert_eq!(
            store
                .append(4, DataKind::Items, Some(2), batch, None, 2)
                .unwrap(),
            5
        );
        let (found, _) = read_from(&store, 4, 0, 10);
        let texts: Vec<&str> = found.iter().map(|(_, json)| json.as_str()).collect();
        assert_eq!(
            texts,
            [
                "{\"a\":1}",
                "{\"a\":\n2}",
                "{\"b\":3}",
                "{\"b\":\n4}",
                "{\"b\":5}"
            ]
        );
        assert_eq!(
            read_from(&store, 4, 3, 1).0,
            [(3, "{\"b\":\n4}".to_string())]
        );
    }

    #[test]
    fn a_batch_counts_each_records_fields_however_they_alternate() {
        let (_folder, store) = store();
        let first = records(&[json!({"a": 1}), json!({"b": 2}), json!({"a": 3})]);
        store
            .append(1, DataKind::Items, Some(0), first, None, 5)
            .unwrap();
        // A retry overlapping the first batch: its last two are new.
        let retry = records(&[
            json!({"b": 2}),
            json!({"a": 3}),
            json!({"b": 4}),
            json!({"a": 5, "b": 6}),
        ]);
        assert_eq!(
            store
                .append(1, DataKind::Items, Some(1), retry, None, 5)
                .unwrap(),
            5
        );
        let texts: Vec<String> = all(&store, 1).into_iter().map(|(_, json)| json).collect();
        assert_eq!(
            texts,
            [
                r#"{"a":1}"#,
                r#"{"b":2}"#,
                r#"{"a":3}"#,
                r#"{"b":4}"#,
                r#"{"a":5,"b":6}"#
            ]
        );
        let stats = store.stats(1, DataKind::Items).unwrap();
        assert_eq!(Value::Object(stats.counts), json!({"a": 3, "b": 3}));
    }

    #[test]
    fn retried_batches_are_stored_once_and_gaps_refused() {
        let (_folder, store) = store();
        let batch = records(&[json!({"a": 1}), json!({"a": 2})]);
        assert_eq!(
            store
                .append(1, DataKind::Items, Some(0), batch.clone(), None, 5)
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .append(1, DataKind::Items, Some(0), batch, None, 5)
                .unwrap(),
            2
        );
        let more = records(&[json!({"a": 2}), json!({"b": 3})]);
        assert_eq!(
            store
                .append(1, DataKind::Items, Some(1), more, None, 5)
                .unwrap(),
            3
        );
        assert!(matches!(
            store.append(1, DataKind::Items, Some(9), records(&[json!({})]), None, 5),
            Err(AppendError::Gap { start: 9, count: 3 })
        ));
        let found = all(&store, 1);
        assert_eq!(found.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(found[2].1, r#"{"b":3}"#);
        let stats = store.stats(1, DataKind::Items).unwrap();
        assert_eq!(stats.input_values, 3);
        assert_eq!(
            stats.counts,
            json!({"a": 2, "b": 1}).as_object().cloned().unwrap()
        );
        store.delete_job(1).unwrap();
        assert!(all(&store, 1).is_empty());
        let pages: i64 = store
            .read()
            .query_row("PRAGMA freelist_count", [], |row| row.get(0))
            .unwrap();
        assert_eq!(pages, 0);
    }

    #[test]
    fn batches_get_distinct_times_and_offsets_commit_with_records() {
        let (_folder, store) = store();
        let offset = Some(("log".to_string(), 120));
        store
            .append(
                2,
                DataKind::Logs,
                None,
                logs(&[json!({"level": 20})]),
                offset,
                7,
            )
            .unwrap();
        store
            .append(
                2,
                DataKind::Logs,
                None,
                logs(&[json!({"level": 40})]),
                None,
                7,
            )
            .unwrap();
        let mut times = Vec::new();
        store
            .read_records(2, DataKind::Logs, 0, 10, &mut |view| {
                times.push(view.ts);
                true
            })
            .unwrap();
        assert_eq!(times, [7, 8]);
        assert_eq!(store.capture_offset(2, "log").unwrap(), 120);
        assert_eq!(store.capture_offset(2, "items").unwrap(), 0);
        let stats = store.stats(2, DataKind::Logs).unwrap();
        assert_eq!(
            stats.counts,
            json!({"20": 1, "40": 1}).as_object().cloned().unwrap()
        );
    }
}
