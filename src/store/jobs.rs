//! Jobs: one row per job in every state, the one job model both APIs read.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};

use super::projects::spider_id_in;
use super::{Store, StoreError, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    Finished,
    Deleted,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Finished => "finished",
            JobState::Deleted => "deleted",
        }
    }

    pub(super) fn parse(text: &str) -> JobState {
        match text {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "finished" => JobState::Finished,
            // The schema's CHECK constraint admits nothing else.
            _ => JobState::Deleted,
        }
    }
}

/// A job as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Order of arrival; also the row's identity inside the daemon.
    pub seq: i64,
    /// The Scrapyd job id.
    pub job_id: String,
    /// The Scrapy Cloud key `project_id/spider_id/counter`.
    pub project_id: i64,
    pub spider_id: i64,
    pub counter: i64,
    pub project: String,
    pub spider: String,
    /// The version asked for; `None` runs the current version.
    pub version: Option<String>,
    /// The version the crawl started with.
    pub run_version: Option<String>,
    pub state: JobState,
    pub priority: f64,
    pub units: u32,
    /// Spider arguments, in the order given, without `_job`/`_version`.
    pub args: Vec<(String, String)>,
    /// `-s NAME=VALUE` settings, in the order given.
    pub settings: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub pending_time: f64,
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    pub pid: Option<i32>,
    pub pid_start_ticks: Option<i64>,
    pub exit_code: Option<i32>,
    pub close_reason: Option<String>,
    pub cancel_count: u32,
    /// Whether Scrapyd's listings show it.
    pub listed: bool,
    /// Metadata set through the Cloud API beyond the columns above.
    pub meta: Map<String, Value>,
    /// Who runs it when it is not this daemon's supervisor: an outside
    /// worker that claimed it through the Cloud API (`None`: the daemon).
    pub runner: Option<String>,
}

impl Job {
    /// The Scrapy Cloud key, `P/S/J`.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.project_id, self.spider_id, self.counter)
    }

    /// The version it ran with, else the one it asked for.
    pub fn shown_version(&self) -> Option<&str> {
        self.run_version.as_deref().or(self.version.as_deref())
    }
}

/// What a new job is made of.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job_id: String,
    pub project_id: i64,
    pub project: String,
    pub spider: String,
    pub version: Option<String>,
    pub priority: f64,
    pub units: u32,
    pub args: Vec<(String, String)>,
    pub settings: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub pending_time: f64,
    /// Cloud metadata given at schedule time (`run.json`'s `meta`, a push).
    pub meta: Map<String, Value>,
    /// Refuse the job if one of the same spider with the same arguments is
    /// pending or running (Scrapy Cloud's `run.json`).
    pub refuse_duplicate: bool,
}

const JOB_COLUMNS: &str = "seq, job_id, project_id, spider_id, counter, project, spider, version,
    run_version, state, priority, units, args, settings, tags, pending_time, start_time, end_time,
    pid, pid_start_ticks, exit_code, close_reason, cancel_count, listed, meta, runner";

/// Reads a row selected with [`JOB_COLUMNS`]. JSON columns are decoded by
/// the caller so a corrupt value is reported, not hidden.
fn job_from_row(row: &Row) -> rusqlite::Result<(Job, [String; 4])> {
    let job = Job {
        seq: row.get(0)?,
        job_id: row.get(1)?,
        project_id: row.get(2)?,
        spider_id: row.get(3)?,
        counter: row.get(4)?,
        project: row.get(5)?,
        spider: row.get(6)?,
        version: row.get(7)?,
        run_version: row.get(8)?,
        state: JobState::parse(&row.get::<_, String>(9)?),
        priority: row.get(10)?,
        units: row.get(11)?,
        args: Vec::new(),
        settings: Vec::new(),
        tags: Vec::new(),
        pending_time: row.get(15)?,
        start_time: row.get(16)?,
        end_time: row.get(17)?,
        pid: row.get(18)?,
        pid_start_ticks: row.get(19)?,
        exit_code: row.get(20)?,
        close_reason: row.get(21)?,
        cancel_count: row.get(22)?,
        listed: row.get(23)?,
        meta: Map::new(),
        runner: row.get(25)?,
    };
    Ok((
        job,
        [row.get(12)?, row.get(13)?, row.get(14)?, row.get(24)?],
    ))
}

fn decode(parts: (Job, [String; 4])) -> StoreResult<Job> {
    let (mut job, [args, settings, tags, meta]) = parts;
    job.args = serde_json::from_str(&args)?;
    job.settings = serde_json::from_str(&settings)?;
    job.tags = serde_json::from_str(&tags)?;
    job.meta = serde_json::from_str(&meta)?;
    Ok(job)
}

/// Takes the next counter of a spider, giving the spider its id at its
/// first job: `(spider id, counter)`. Read, then written by primary key:
/// only the writer thread changes the store, so nothing comes between.
/// (`UPDATE … RETURNING` would do it in one statement, but SQLite gathers
/// a RETURNING's rows in a temporary table of their own, made and dropped
/// on every run: a fifth of the writer's instructions per schedule.)
fn next_counter(connection: &Connection, project_id: i64, spider: &str) -> StoreResult<(i64, i64)> {
    let found: Option<(i64, i64)> = connection
        .prepare_cached("SELECT id, last_counter FROM spiders WHERE project_id = ?1 AND name = ?2")?
        .query_row(params![project_id, spider], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let (spider_id, last) = match found {
        Some(found) => found,
        None => (spider_id_in(connection, project_id, spider)?, 0),
    };
    connection
        .prepare_cached("UPDATE spiders SET last_counter = ?3 WHERE project_id = ?1 AND id = ?2")?
        .execute(params![project_id, spider_id, last + 1])?;
    Ok((spider_id, last + 1))
}

/// Which jobs a listing wants.
#[derive(Debug, Clone, Copy)]
pub enum JobFilter<'a> {
    All,
    Project(&'a str),
}

/// Jobs selected by `sql_tail` (a WHERE / ORDER BY clause).
pub(super) fn query_jobs_on(
    connection: &Connection,
    sql_tail: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<Job>> {
    query_jobs_from(connection, &format!("jobs {sql_tail}"), params)
}

/// Jobs selected by `from` (what follows `FROM`: `jobs`, maybe joined
/// with tables whose columns have other names, and the clauses).
pub(super) fn query_jobs_from(
    connection: &Connection,
    from: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<Job>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM {from}");
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(params, job_from_row)?;
    rows.map(|row| decode(row?)).collect()
}

/// The JSON columns of a new job, encoded before its write.
#[derive(Debug, Clone)]
pub(super) struct EncodedJob {
    args: String,
    settings: String,
    tags: String,
    meta: String,
    pending_entry: String,
}

impl EncodedJob {
    pub(super) fn of(new: &NewJob) -> StoreResult<EncodedJob> {
        let args = serde_json::to_string(&new.args)?;
        let settings = serde_json::to_string(&new.settings)?;
        let mut pending_entry = String::with_capacity(128 + args.len() + settings.len());
        super::listing::write_pending_entry_of(
            &mut pending_entry,
            &new.job_id,
            &new.project,
            &new.spider,
            new.version.as_deref(),
            &settings,
            &args,
        );
        Ok(EncodedJob {
            args,
            settings,
            tags: serde_json::to_string(&new.tags)?,
            meta: Value::Object(new.meta.clone()).to_string(),
            pending_entry,
        })
    }
}

/// The insert of [`Store::insert_job`], inside a write under way.
pub(super) fn insert_job_in(
    connection: &Connection,
    new: NewJob,
    encoded: EncodedJob,
) -> StoreResult<Job> {
    // Cached statements: this runs once per schedule, in the writer's
    // critical path.
    if new.refuse_duplicate {
        let spider_id = spider_id_in(connection, new.project_id, &new.spider)?;
        let active: Option<i64> = connection
            .prepare_cached(
                "SELECT seq FROM jobs WHERE project_id = ?1 AND state IN ('pending', 'running')
                   AND spider_id = ?2 AND args = ?3 LIMIT 1",
            )?
            .query_row(params![new.project_id, spider_id, encoded.args], |row| {
                row.get(0)
            })
            .optional()?;
        if active.is_some() {
            return Err(StoreError::DuplicateJob(new.spider));
        }
    }
    let (spider_id, counter) = next_counter(connection, new.project_id, &new.spider)?;
    // Not `RETURNING seq`: see next_counter.
    connection
        .prepare_cached(
            "INSERT INTO jobs (job_id, project_id, spider_id, counter, project, spider, version,
                               state, priority, units, args, settings, tags, pending_time, meta,
                               pending_entry)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?
        .execute(params![
            new.job_id,
            new.project_id,
            spider_id,
            counter,
            new.project,
            new.spider,
            new.version,
            new.priority,
            new.units,
            encoded.args,
            encoded.settings,
            encoded.tags,
            new.pending_time,
            encoded.meta,
            encoded.pending_entry,
        ])?;
    let seq = connection.last_insert_rowid();
    if !new.tags.is_empty() {
        set_tag_rows(connection, new.project_id, seq, &[], &new.tags)?;
    }
    let job = Job {
        seq,
        job_id: new.job_id,
        project_id: new.project_id,
        spider_id,
        counter,
        project: new.project,
        spider: new.spider,
        version: new.version,
        run_version: None,
        state: JobState::Pending,
        priority: new.priority,
        units: new.units,
        args: new.args,
        settings: new.settings,
        tags: new.tags,
        pending_time: new.pending_time,
        start_time: None,
        end_time: None,
        pid: None,
        pid_start_ticks: None,
        exit_code: None,
        close_reason: None,
        cancel_count: 0,
        listed: true,
        meta: new.meta,
        runner: None,
    };
    let user = job
        .meta
        .get("scheduled_by")
        .cloned()
        .unwrap_or_else(|| Value::from("scrapyd"));
    job_event_in(connection, &job, "job:scheduled", user, job.pending_time)?;
    Ok(job)
}

/// Who the daemon's own events name as their `user`.
pub(super) const DAEMON_USER: &str = "scrapyd-rs";

/// Records `event` (`job:started`, …) of a job in its project's activity.
pub(super) fn job_event_in(
    connection: &Connection,
    job: &Job,
    event: &str,
    user: Value,
    at: f64,
) -> StoreResult<()> {
    let mut entry = Map::new();
    entry.insert("event".into(), Value::from(event));
    entry.insert("job".into(), Value::from(job.key()));
    entry.insert("user".into(), user);
    super::activity::add_activity_in(connection, job.project_id, (at * 1000.0) as i64, &[entry])
}

/// Brings a job's tag rows from `old` to `new`.
pub(super) fn set_tag_rows(
    connection: &Connection,
    project_id: i64,
    seq: i64,
    old: &[String],
    new: &[String],
) -> StoreResult<()> {
    for tag in old.iter().filter(|tag| !new.contains(tag)) {
        connection
            .prepare_cached("DELETE FROM job_tags WHERE project_id = ?1 AND tag = ?2 AND seq = ?3")?
            .execute(params![project_id, tag, seq])?;
    }
    for tag in new.iter().filter(|tag| !old.contains(tag)) {
        connection
            .prepare_cached(
                "INSERT OR IGNORE INTO job_tags (project_id, tag, seq) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![project_id, tag, seq])?;
    }
    Ok(())
}

fn job_on(connection: &Connection, seq: i64) -> StoreResult<Job> {
    query_jobs_on(connection, "WHERE seq = ?1", [seq])?
        .pop()
        .ok_or(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
}

impl Store {
    fn query_jobs(&self, sql_tail: &str, params: impl rusqlite::Params) -> StoreResult<Vec<Job>> {
        query_jobs_on(&self.read(), sql_tail, params)
    }

    /// Adds a pending job, giving it the next counter of its spider, with
    /// its `job:scheduled` event.
    pub async fn insert_job(&self, new: &NewJob) -> StoreResult<Job> {
        // The JSON columns are made here, not in the writer's critical path.
        let encoded = EncodedJob::of(new)?;
        let new = new.clone();
        self.write_async(move |connection| insert_job_in(connection, new, encoded))
            .await
    }

    pub fn job(&self, seq: i64) -> StoreResult<Option<Job>> {
        Ok(self.query_jobs("WHERE seq = ?1", [seq])?.pop())
    }

    /// Takes the best pending job (highest priority, then oldest) and marks
    /// it running, if it fits in `free_units` slots. A job wider than every
    /// slot is clamped to `max_units` so it can still run alone.
    pub fn claim_next_pending(
        &self,
        free_units: u32,
        max_units: u32,
        now: f64,
    ) -> StoreResult<Option<Job>> {
        let served = self.served_botgroups();
        self.write(move |connection| {
            let best = best_pending_in(connection, &served)?;
            let Some((seq, units)) = best else {
                return Ok(None);
            };
            // Strict order: the best job waits for room rather than being
            // overtaken by narrower ones, so it cannot starve.
            if units.clamp(1, max_units.max(1)) > free_units {
                return Ok(None);
            }
            // The crawl's own credentials for the Cloud API while it runs.
            let token = uuid::Uuid::new_v4().simple().to_string();
            connection.execute(
                "UPDATE jobs SET state = 'running', start_time = ?2, meta = json_set(meta, '$.auth', ?3)
                 WHERE seq = ?1",
                params![seq, now, token],
            )?;
            job_on(connection, seq).map(Some)
        })
    }

    /// Puts back in the queue a claimed job whose process never started,
    /// as if it had not been claimed: it keeps its place (priority, then
    /// arrival) and its start time is cleared. Answers whether it is
    /// pending again; a job that is no longer a claim (it has a process,
    /// or has ended) is left alone.
    pub fn return_to_pending(&self, seq: i64) -> StoreResult<bool> {
        self.write(move |connection| {
            let changed = connection.execute(
                "UPDATE jobs SET state = 'pending', start_time = NULL, meta = json_remove(meta, '$.auth')
                 WHERE seq = ?1 AND state = 'running' AND pid IS NULL AND runner IS NULL",
                [seq],
            )?;
            Ok(changed == 1)
        })
    }

    /// Records the process of a job that was just launched, with its
    /// `job:started` event.
    pub fn record_started(
        &self,
        seq: i64,
        pid: i32,
        pid_start_ticks: Option<i64>,
        run_version: &str,
    ) -> StoreResult<()> {
        let run_version = run_version.to_string();
        self.write(move |connection| {
            connection.execute(
                "UPDATE jobs SET pid = ?2, pid_start_ticks = ?3, run_version = ?4 WHERE seq = ?1",
                params![seq, pid, pid_start_ticks, run_version],
            )?;
            let job = job_on(connection, seq)?;
            let started = job.start_time.unwrap_or(job.pending_time);
            job_event_in(
                connection,
                &job,
                "job:started",
                Value::from(DAEMON_USER),
                started,
            )
        })
    }

    /// Records the end of a job, with its `job:completed` (or
    /// `job:cancelled`) event. A job deleted through the Cloud API while it
    /// ran stays deleted.
    pub fn finish_job(
        &self,
        seq: i64,
        end_time: f64,
        exit_code: Option<i32>,
        close_reason: &str,
    ) -> StoreResult<()> {
        let close_reason = close_reason.to_string();
        self.write(move |connection| {
            connection.execute(
                "UPDATE jobs SET state = CASE state WHEN 'deleted' THEN 'deleted' ELSE 'finished' END,
                     end_time = ?2, exit_code = ?3, close_reason = ?4, meta = json_remove(meta, '$.auth'),
                     pending_entry = NULL
                 WHERE seq = ?1",
                params![seq, end_time, exit_code, close_reason],
            )?;
            let job = job_on(connection, seq)?;
            let event = if close_reason == "cancelled" {
                "job:cancelled"
            } else {
                "job:completed"
            };
            job_event_in(connection, &job, event, Value::from(DAEMON_USER), end_time)
        })
    }

    /// Cancels the pending jobs of a project with this job id. They stay in
    /// the store as finished (`cancelled`) but leave Scrapyd's listings.
    pub fn cancel_pending(&self, project_id: i64, job_id: &str, now: f64) -> StoreResult<usize> {
        let job_id = job_id.to_string();
        self.write(move |connection| {
            let seqs: Vec<i64> = connection
                .prepare_cached(
                    "UPDATE jobs SET state = 'finished', end_time = ?3, close_reason = 'cancelled', listed = 0,
                         pending_entry = NULL
                     WHERE project_id = ?1 AND job_id = ?2 AND state = 'pending' RETURNING seq",
                )?
                .query_map(params![project_id, job_id, now], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            for seq in &seqs {
                let job = job_on(connection, *seq)?;
                job_event_in(connection, &job, "job:cancelled", Value::from(DAEMON_USER), now)?;
            }
            Ok(seqs.len())
        })
    }

    /// Counts a cancel request for a running job; returns the new count.
    pub fn count_cancel(&self, seq: i64) -> StoreResult<u32> {
        self.write(move |connection| {
            Ok(connection.query_row(
                "UPDATE jobs SET cancel_count = cancel_count + 1 WHERE seq = ?1 RETURNING cancel_count",
                [seq],
                |row| row.get(0),
            )?)
        })
    }

    /// Every job of a project with this Scrapyd job id, newest first.
    pub fn jobs_with_id(&self, project_id: i64, job_id: &str) -> StoreResult<Vec<Job>> {
        self.query_jobs(
            "WHERE project_id = ?1 AND job_id = ?2 ORDER BY seq DESC",
            params![project_id, job_id],
        )
    }

    /// The running jobs of a project with this job id.
    pub fn running_with_id(&self, project_id: i64, job_id: &str) -> StoreResult<Vec<Job>> {
        self.query_jobs(
            "WHERE state = 'running' AND project_id = ?1 AND job_id = ?2",
            params![project_id, job_id],
        )
    }

    /// The Scrapyd state of a job id: finished (if still listed) wins over
    /// running, which wins over pending, as in Scrapyd's `status.json`. A
    /// job claimed but whose process has no pid yet is still pending to
    /// Scrapyd's eyes: Scrapyd lists a crawl as running once it exists.
    pub fn scrapyd_state(&self, job_id: &str, project: JobFilter) -> StoreResult<Option<JobState>> {
        let jobs = match project {
            JobFilter::All => self.query_jobs("WHERE job_id = ?1 AND listed = 1", [job_id])?,
            JobFilter::Project(name) => self.query_jobs(
                "WHERE job_id = ?1 AND listed = 1 AND project = ?2",
                params![job_id, name],
            )?,
        };
        let shown = |job: &Job| match (job.state, job.pid, &job.runner) {
            (JobState::Running, None, None) => JobState::Pending,
            (state, _, _) => state,
        };
        Ok([JobState::Finished, JobState::Running, JobState::Pending]
            .into_iter()
            .find(|state| jobs.iter().any(|job| shown(job) == *state)))
    }

    /// Every job this daemon's supervisor claimed and that has not ended,
    /// launched or not: what a starting daemon must account for. Jobs run
    /// by outside workers are theirs to report; a crawl deleted through the
    /// Cloud API while it ran is still followed to its end.
    pub fn claimed_jobs(&self) -> StoreResult<Vec<Job>> {
        self.query_jobs(
            "WHERE (state = 'running' OR (state = 'deleted' AND pid IS NOT NULL AND end_time IS NULL))
               AND runner IS NULL ORDER BY seq",
            [],
        )
    }

    /// `(pending, running, listed finished)` counts, the last capped at
    /// `keep` (when not 0) like Scrapyd's finished list. Counting stops at
    /// `keep`, so the cost does not grow with the job history.
    pub fn job_counts(&self, keep: usize) -> StoreResult<(u64, u64, u64)> {
        use std::sync::atomic::Ordering;
        // Read the generation before the counts: a change committed in
        // between makes the cached entry look old, never the counts new.
        let generation = self.database.generation.load(Ordering::SeqCst);
        let mut cache = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached_generation, cached_keep, counts)) = *cache
            && cached_generation == generation
            && cached_keep == keep
        {
            return Ok(counts);
        }
        // The cap is written into the statement, not bound (see the
        // module note of `store` on `LIMIT`).
        let limit = if keep == 0 { -1 } else { keep as i64 };
        let connection = self.read();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT
               (SELECT count(*) FROM jobs WHERE state = 'pending')
                 + (SELECT count(*) FROM jobs WHERE state = 'running' AND pid IS NULL AND runner IS NULL),
               (SELECT count(*) FROM jobs WHERE state = 'running' AND (pid IS NOT NULL OR runner IS NOT NULL)),
               (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'finished' AND listed = 1 LIMIT {limit}))"
        ))?;
        let (pending, running, finished): (i64, i64, i64) =
            statement.query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        let count = |n: i64| n.max(0) as u64;
        let counts = (count(pending), count(running), count(finished));
        *cache = Some((generation, keep, counts));
        Ok(counts)
    }
}

/// The best pending job (highest priority, then oldest) this node may run,
/// with its units. Jobs of a project whose bot groups this node does not
/// serve wait for an outside worker: while there are such projects, the
/// queue is looked at project by project, one index seek each, so a long
/// held queue is never walked job by job.
fn best_pending_in(connection: &Connection, served: &str) -> StoreResult<Option<(i64, u32)>> {
    let held: String = connection
        .prepare_cached(
            "SELECT json_group_array(s.project_id) FROM project_settings s
             WHERE s.name = 'botgroups' AND json_type(s.value) = 'array'
               AND json_array_length(s.value) > 0
               AND NOT EXISTS (SELECT 1 FROM json_each(s.value) g
                               WHERE g.value IN (SELECT value FROM json_each(?1)))",
        )?
        .query_row([served], |row| row.get(0))?;
    let row = |row: &rusqlite::Row| Ok((row.get(0)?, row.get(1)?));
    if held == "[]" {
        return Ok(connection
            .prepare_cached(
                "SELECT seq, units FROM jobs WHERE state = 'pending'
                 ORDER BY priority DESC, seq LIMIT 1",
            )?
            .query_row([], row)
            .optional()?);
    }
    Ok(connection
        .prepare_cached(
            "SELECT j.seq, j.units FROM projects p JOIN jobs j
               ON j.seq = (SELECT q.seq FROM jobs q
                           WHERE q.state = 'pending' AND q.project_id = p.id
                           ORDER BY q.priority DESC, q.seq LIMIT 1)
             WHERE p.id NOT IN (SELECT value FROM json_each(?1))
             ORDER BY j.priority DESC, j.seq LIMIT 1",
        )?
        .query_row([held], row)
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Version;

    impl Store {
        fn insert_job_now(&self, new: &NewJob) -> StoreResult<Job> {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(self.insert_job(new))
        }
    }

    fn store_with_project(name: &str) -> (Store, i64) {
        let store = Store::open_temporary().unwrap();
        let version = Version {
            version: "1".into(),
            dir_name: "1".into(),
            settings_module: "p.settings".into(),
            spiders: vec!["s".into()],
            uploaded_at: 0.0,
        };
        let project = store.put_version(name, &version, 0.0).unwrap();
        (store, project.id)
    }

    fn new_job(project_id: i64, project: &str, job_id: &str, priority: f64) -> NewJob {
        NewJob {
            job_id: job_id.into(),
            project_id,
            project: project.into(),
            spider: "s".into(),
            version: None,
            priority,
            units: 1,
            args: vec![("a".into(), "1".into())],
            settings: vec![],
            tags: vec![],
            pending_time: 1.0,
            meta: Default::default(),
            refuse_duplicate: false,
        }
    }

    #[test]
    fn counters_make_keys_per_spider() {
        let (store, project_id) = store_with_project("p");
        let first = store
            .insert_job_now(&new_job(project_id, "p", "a", 0.0))
            .unwrap();
        let second = store
            .insert_job_now(&new_job(project_id, "p", "b", 0.0))
            .unwrap();
        assert_eq!(first.key(), format!("{project_id}/1/1"));
        assert_eq!(second.key(), format!("{project_id}/1/2"));
        assert_eq!(second.args, vec![("a".to_string(), "1".to_string())]);
    }

    #[test]
    fn claims_highest_priority_then_oldest() {
        let (store, p) = store_with_project("p");
        store.insert_job_now(&new_job(p, "p", "low", 0.0)).unwrap();
        store.insert_job_now(&new_job(p, "p", "high", 5.0)).unwrap();
        store
            .insert_job_now(&new_job(p, "p", "high2", 5.0))
            .unwrap();
        let order: Vec<String> =
            std::iter::from_fn(|| store.claim_next_pending(1, 4, 2.0).unwrap())
                .map(|job| job.job_id)
                .collect();
        assert_eq!(order, ["high", "high2", "low"]);
        assert!(store.claim_next_pending(0, 4, 2.0).unwrap().is_none());
    }

    #[test]
    fn held_projects_wait_and_the_rest_of_the_queue_runs_in_order() {
        let (store, held) = store_with_project("held");
        let free = store
            .put_version(
                "free",
                &Version {
                    version: "1".into(),
                    dir_name: "1".into(),
                    settings_module: "p.settings".into(),
                    spiders: vec!["s".into()],
                    uploaded_at: 0.0,
                },
                0.0,
            )
            .unwrap()
            .id;
        let mut groups = serde_json::Map::new();
        groups.insert("botgroups".into(), serde_json::json!(["elsewhere"]));
        store.merge_project_settings(held, groups).unwrap();
        for n in 0..50 {
            let job = new_job(held, "held", &format!("h{n}"), 5.0);
            store.insert_job_now(&job).unwrap();
        }
        for (id, priority) in [("low", 0.0), ("high", 1.0)] {
            store
                .insert_job_now(&new_job(free, "free", id, priority))
                .unwrap();
        }
        let claim = || {
            store
                .claim_next_pending(1, 4, 2.0)
                .unwrap()
                .map(|j| j.job_id)
        };
        assert_eq!(claim().as_deref(), Some("high"));
        assert_eq!(claim().as_deref(), Some("low"));
        assert_eq!(claim(), None);
        // Served here now: the held queue runs, best first.
        store.serve_botgroups(&["elsewhere".to_string()]);
        assert_eq!(claim().as_deref(), Some("h0"));
    }

    #[test]
    fn a_projects_jobs_are_paged_once_each_across_states() {
        let (store, p) = store_with_project("p");
        let mut seqs: Vec<i64> = (0..5)
            .map(|n| {
                let job = new_job(p, "p", &format!("j{n}"), 0.0);
                store.insert_job_now(&job).unwrap().seq
            })
            .collect();
        store.claim_next_pending(1, 4, 2.0).unwrap().unwrap();
        let mut after = (String::new(), 0);
        let mut seen = Vec::new();
        loop {
            let page = store.project_jobs_page(p, &after, 2).unwrap();
            let Some(last) = page.last().cloned() else {
                break;
            };
            assert!(page.len() <= 2);
            seen.extend(page.into_iter().map(|(_, seq)| seq));
            after = last;
        }
        seen.sort();
        seqs.sort();
        assert_eq!(seen, seqs);
        assert!(
            store
                .project_jobs_page(p + 1, &(String::new(), 0), 2)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_returned_claim_is_pending_again_in_its_place() {
        let (store, p) = store_with_project("p");
        store
            .insert_job_now(&new_job(p, "p", "first", 0.0))
            .unwrap();
        store
            .insert_job_now(&new_job(p, "p", "second", 0.0))
            .unwrap();
        let claimed = store.claim_next_pending(1, 4, 2.0).unwrap().unwrap();
        assert_eq!(claimed.job_id, "first");
        assert_eq!(store.job_counts(100).unwrap(), (2, 0, 0));

        assert!(store.return_to_pending(claimed.seq).unwrap());
        let returned = store.job(claimed.seq).unwrap().unwrap();
        assert_eq!(returned.state, JobState::Pending);
        assert_eq!(returned.start_time, None);
        assert_eq!(
            store.scrapyd_state("first", JobFilter::All).unwrap(),
            Some(JobState::Pending)
        );
        // It keeps its place: the next claim takes it again.
        let again = store.claim_next_pending(1, 4, 3.0).unwrap().unwrap();
        assert_eq!(again.job_id, "first");

        // A claim whose process started, or a finished job, stays as it is.
        store.record_started(again.seq, 42, Some(7), "1").unwrap();
        assert!(!store.return_to_pending(again.seq).unwrap());
        store
            .finish_job(again.seq, 4.0, Some(0), "finished")
            .unwrap();
        assert!(!store.return_to_pending(again.seq).unwrap());
        assert_eq!(
            store.job(again.seq).unwrap().unwrap().state,
            JobState::Finished
        );
    }

    #[test]
    fn cancelled_pending_leaves_listings_but_stays_stored() {
        let (store, p) = store_with_project("p");
        let job = store.insert_job_now(&new_job(p, "p", "x", 0.0)).unwrap();
        assert_eq!(store.cancel_pending(p, "x", 3.0).unwrap(), 1);
        assert_eq!(store.scrapyd_state("x", JobFilter::All).unwrap(), None);
        let stored = store.job(job.seq).unwrap().unwrap();
        assert_eq!(stored.close_reason.as_deref(), Some("cancelled"));
        assert_eq!(store.job_counts(100).unwrap(), (0, 0, 0));
    }

    #[test]
    fn deleting_a_project_cancels_its_pending_jobs() {
        let (store, p) = store_with_project("p");
        store.insert_job_now(&new_job(p, "p", "x", 0.0)).unwrap();
        let project = store.project("p").unwrap().unwrap();
        assert_eq!(store.delete_project(&project, 5.0).unwrap(), 1);
        assert!(store.project("p").unwrap().is_none());
        assert_eq!(store.job_counts(100).unwrap(), (0, 0, 0));
    }
}
