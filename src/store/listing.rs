//! Job listings read page by page, straight from the rows.
//!
//! A listing of 100,000 pending jobs must not cost 100,000 owned jobs in
//! memory. So a [`JobCursor`] remembers only where it stands (a section and
//! the sort key of the last row it gave), and each call of
//! [`JobSnapshot::read_jobs`] reads one bounded page, hands every row to
//! the caller as a borrowed [`JobView`], and moves the cursor on. Every
//! page resumes with an index seek after the last key, so a whole listing
//! costs one pass over the index, however many pages it takes.
//!
//! The pages of one listing are read in one read transaction (a
//! [`JobSnapshot`]): a job that is launched or finishes while the listing
//! is read shows in the one section it was in when the listing began, as
//! in Scrapyd, which lists from its only thread. Whoever reads a snapshot
//! keeps it short (the HTTP layer writes the listing to a spool, then
//! sends that): an open read transaction holds the WAL from being
//! checkpointed past it.

use rusqlite::types::Value;
use rusqlite::{Connection, Row, TransactionBehavior};

use super::{JobState, Store, StoreError, StoreResult};
use crate::pyjson;

/// One job row as a listing sees it, borrowed from the database row.
#[derive(Debug)]
pub struct JobView<'a> {
    pub job_id: &'a str,
    pub project: &'a str,
    pub spider: &'a str,
    pub version: Option<&'a str>,
    pub state: JobState,
    pub priority: f64,
    /// Spider arguments as stored: a JSON array of `[name, value]` pairs.
    pub args_json: &'a str,
    /// Settings as stored: a JSON array of `[name, value]` pairs.
    pub settings_json: &'a str,
    pub pending_time: f64,
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    pub close_reason: Option<&'a str>,
    /// The job's entry in Scrapyd's pending listing, all but its priority
    /// and closing brace, as [`write_pending_entry`] rendered it when the
    /// job was scheduled; `None` for jobs stored before that column.
    pub pending_entry: Option<&'a str>,
}

const VIEW_COLUMNS: &str = "seq, job_id, project, spider, version, state, priority, args, settings,
    pending_time, start_time, end_time, pid, exit_code, close_reason, pending_entry";

/// The sections of Scrapyd's job listing, in the order it shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobSection {
    /// Jobs waiting for a slot, in the order they will run; a job being
    /// launched (claimed, no process yet) comes first.
    Pending,
    /// Jobs whose process exists, oldest first.
    Running,
    /// The most recently finished listed jobs, newest first. Scrapyd's
    /// finished list is one list for the whole node, `keep` long (0: all),
    /// narrowed to a project afterwards.
    Finished { keep: usize },
}

/// Where a listing of one section stands.
#[derive(Debug, Clone)]
pub struct JobCursor {
    section: JobSection,
    project: Option<String>,
    /// Pending only: the jobs being launched are read before the queue.
    launching_done: bool,
    /// Pending only: the last row's priority is through; the lower
    /// priorities come next.
    below: bool,
    /// The sort key of the last row given: `(priority or end_time, seq)`.
    last: Option<(f64, i64)>,
    /// Finished only: rows passed over so far, listed or not, against `keep`.
    passed: usize,
    /// Pending only: rows give only their priority and pending entry.
    entries_only: bool,
    done: bool,
}

impl JobCursor {
    /// A cursor at the start of `section`, narrowed to `project` if given.
    pub fn new(section: JobSection, project: Option<&str>) -> JobCursor {
        JobCursor {
            section,
            project: project.map(str::to_string),
            launching_done: false,
            below: false,
            last: None,
            passed: 0,
            entries_only: false,
            done: false,
        }
    }

    /// Makes a pending cursor give rows that hold only `priority` and
    /// `pending_entry` (always `Some`), the other fields being empty: a
    /// long queue is listed without decoding what the stored entry says
    /// already.
    pub fn entries_only(&mut self) {
        self.entries_only = self.section == JobSection::Pending;
    }

    /// Whether every row of the section has been given.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

const ENTRY_COLUMNS: &str = "seq, priority, pending_entry";

/// A row of [`ENTRY_COLUMNS`]: only the priority and the entry are filled.
fn entry_view_from_row<'a>(row: &'a Row) -> rusqlite::Result<(i64, JobView<'a>)> {
    let seq = row.get(0)?;
    Ok((
        seq,
        JobView {
            job_id: "",
            project: "",
            spider: "",
            version: None,
            state: JobState::Pending,
            priority: row.get(1)?,
            args_json: "[]",
            settings_json: "[]",
            pending_time: 0.0,
            start_time: None,
            end_time: None,
            pid: None,
            exit_code: None,
            close_reason: None,
            pending_entry: row.get_ref(2)?.as_str_or_null()?,
        },
    ))
}

fn view_from_row<'a>(row: &'a Row) -> rusqlite::Result<(i64, JobView<'a>)> {
    let text = |index: usize| -> rusqlite::Result<&'a str> {
        row.get_ref(index)?.as_str().map_err(Into::into)
    };
    let optional_text = |index: usize| -> rusqlite::Result<Option<&'a str>> {
        row.get_ref(index)?.as_str_or_null().map_err(Into::into)
    };
    let seq = row.get(0)?;
    Ok((
        seq,
        JobView {
            job_id: text(1)?,
            project: text(2)?,
            spider: text(3)?,
            version: optional_text(4)?,
            state: JobState::parse(text(5)?),
            priority: row.get(6)?,
            args_json: text(7)?,
            settings_json: text(8)?,
            pending_time: row.get(9)?,
            start_time: row.get(10)?,
            end_time: row.get(11)?,
            pid: row.get(12)?,
            exit_code: row.get(13)?,
            close_reason: optional_text(14)?,
            pending_entry: optional_text(15)?,
        },
    ))
}

/// Appends the members of a job's entry in Scrapyd's pending listing
/// that never change once it is scheduled: `{"id": …, "project": …,
/// "spider": …, "version": …, "settings": {…}, "args": {…}` in Python's
/// `json.dumps` bytes, without the closing brace (the priority follows).
/// Stored with each job, so that listing a long queue copies text instead
/// of decoding and escaping every job's arguments again.
pub fn write_pending_entry(out: &mut String, job: &JobView) {
    write_pending_entry_of(
        out,
        job.job_id,
        job.project,
        job.spider,
        job.version,
        job.settings_json,
        job.args_json,
    );
}

/// [`write_pending_entry`] from the job's columns, `settings_json` and
/// `args_json` as stored.
pub(super) fn write_pending_entry_of(
    out: &mut String,
    job_id: &str,
    project: &str,
    spider: &str,
    version: Option<&str>,
    settings_json: &str,
    args_json: &str,
) {
    out.push_str("{\"id\": ");
    pyjson::write_string(out, job_id);
    out.push_str(", \"project\": ");
    pyjson::write_string(out, project);
    out.push_str(", \"spider\": ");
    pyjson::write_string(out, spider);
    out.push_str(", \"version\": ");
    match version {
        Some(version) => pyjson::write_string(out, version),
        None => out.push_str("null"),
    }
    out.push_str(", \"settings\": ");
    pyjson::write_pairs_object(out, settings_json);
    out.push_str(", \"args\": ");
    pyjson::write_pairs_object(out, args_json);
}

/// Renders the pending entry of every job stored before jobs had one and
/// that is, or may come back, in the queue (pending, or being launched);
/// the others are rendered as they are listed, should they ever be.
pub(super) fn fill_pending_entries(connection: &rusqlite::Connection) -> StoreResult<()> {
    let mut select = connection.prepare(
        "SELECT seq, job_id, project, spider, version, settings, args FROM jobs
         WHERE state IN ('pending', 'running') AND pending_entry IS NULL",
    )?;
    let mut update = connection.prepare("UPDATE jobs SET pending_entry = ?2 WHERE seq = ?1")?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let text = |index| -> rusqlite::Result<&str> { Ok(row.get_ref(index)?.as_str()?) };
        let version: Option<&str> = row
            .get_ref(4)?
            .as_str_or_null()
            .map_err(rusqlite::Error::from)?;
        let mut entry = String::new();
        write_pending_entry_of(
            &mut entry,
            text(1)?,
            text(2)?,
            text(3)?,
            version,
            text(5)?,
            text(6)?,
        );
        update.execute(rusqlite::params![row.get::<_, i64>(0)?, entry])?;
    }
    Ok(())
}

/// The pending entry of job `seq`, rendered from its columns.
fn pending_entry_of_job(connection: &rusqlite::Connection, seq: i64) -> StoreResult<String> {
    let mut statement =
        connection.prepare_cached(&format!("SELECT {VIEW_COLUMNS} FROM jobs WHERE seq = ?1"))?;
    let mut rows = statement.query([seq])?;
    let mut entry = String::new();
    if let Some(row) = rows.next()? {
        write_pending_entry(&mut entry, &view_from_row(row)?.1);
    }
    Ok(entry)
}

/// The job store as it was when the first query of a read began: every
/// page read through it sees that state, whatever commits meanwhile.
pub struct JobSnapshot<'a> {
    connection: &'a Connection,
}

impl Store {
    /// Runs `read` on a snapshot of the store, on the long-read connection
    /// (short reads never wait for it). The transaction ends with `read`.
    pub fn snapshot<T, E: From<StoreError>>(
        &self,
        read: impl FnOnce(&JobSnapshot) -> Result<T, E>,
    ) -> Result<T, E> {
        let connection = self.database.read_long()?;
        // Deferred: the snapshot is taken by the first query. Dropped, the
        // transaction rolls back (a read has nothing to keep), also when
        // `read` fails or panics.
        let transaction =
            rusqlite::Transaction::new_unchecked(&connection, TransactionBehavior::Deferred)
                .map_err(StoreError::from)?;
        read(&JobSnapshot {
            connection: &transaction,
        })
    }
}

impl JobSnapshot<'_> {
    /// Gives up to `max_rows` rows of the cursor's section to `visit`, in
    /// listing order, and moves the cursor past them.
    pub fn read_jobs(
        &self,
        cursor: &mut JobCursor,
        max_rows: usize,
        visit: &mut dyn FnMut(&JobView),
    ) -> StoreResult<()> {
        let max_rows = max_rows.max(1);
        let mut given = 0;
        while !cursor.done && given < max_rows {
            given += read_some(self.connection, cursor, max_rows - given, visit)?;
        }
        Ok(())
    }
}

/// One query's worth of [`JobSnapshot::read_jobs`]: answers how many rows
/// were given, and marks the cursor done when the section is over.
fn read_some(
    connection: &Connection,
    cursor: &mut JobCursor,
    limit: usize,
    visit: &mut dyn FnMut(&JobView),
) -> StoreResult<usize> {
    let project = cursor.project.clone();
    let (last_key, last_seq) = cursor.last.unwrap_or((0.0, 0));
    let mut given = 0;
    let mut rows_seen = 0;
    let mut last = cursor.last;
    // Those that resume after a row read `?1` = its key (`?1` = its seq
    // where the seq alone is the key, then `?2` = seq). No query has a
    // bound LIMIT (see [`crate::store`]): the walk stops after `limit`
    // rows, every order being an index's own.
    let (sql, resume): (&str, Vec<Value>) = match cursor.section {
        JobSection::Pending if !cursor.launching_done => (
            "WHERE state = 'running' AND pid IS NULL AND runner IS NULL AND seq > ?1
                   {project} ORDER BY seq",
            vec![Value::Integer(last_seq)],
        ),
        JobSection::Pending if last.is_none() => (
            "WHERE state = 'pending' {project} ORDER BY priority DESC, seq",
            Vec::new(),
        ),
        // The queue's order is (priority DESC, seq): the rest of the
        // last row's priority first, then (once that is through) the
        // lower priorities. Each is one plain walk of the queue index.
        JobSection::Pending if !cursor.below => (
            "WHERE state = 'pending' AND priority = ?1 AND seq > ?2
                   {project} ORDER BY priority DESC, seq",
            vec![Value::Real(last_key), Value::Integer(last_seq)],
        ),
        JobSection::Pending => (
            "WHERE state = 'pending' AND priority < ?1
                   {project} ORDER BY priority DESC, seq",
            vec![Value::Real(last_key)],
        ),
        JobSection::Running => (
            "WHERE state = 'running' AND (pid IS NOT NULL OR runner IS NOT NULL) AND seq > ?1
                   {project} ORDER BY seq",
            vec![Value::Integer(last_seq)],
        ),
        // Rows of every project count against `keep`: no project in
        // the query, it is checked below.
        JobSection::Finished { .. } if last.is_none() => (
            "WHERE state = 'finished' AND listed = 1 ORDER BY end_time DESC, seq DESC",
            Vec::new(),
        ),
        JobSection::Finished { .. } => (
            "WHERE state = 'finished' AND listed = 1 AND (end_time, seq) < (?1, ?2)
                   ORDER BY end_time DESC, seq DESC",
            vec![Value::Real(last_key), Value::Integer(last_seq)],
        ),
    };
    let finished_keep = match cursor.section {
        JobSection::Finished { keep } if keep > 0 => Some(keep),
        _ => None,
    };
    let query_limit = match finished_keep {
        Some(keep) => keep.saturating_sub(cursor.passed).min(limit),
        None => limit,
    };
    let filter = match cursor.section {
        JobSection::Finished { .. } => None,
        _ => project.as_deref(),
    };
    // The project, when there is one, is the parameter after the key.
    let project_clause = match filter {
        Some(_) => format!("AND project = ?{}", resume.len() + 1),
        None => String::new(),
    };
    let sql = sql.replace("{project}", &project_clause);
    let entries_only = cursor.entries_only;
    let columns = if entries_only {
        ENTRY_COLUMNS
    } else {
        VIEW_COLUMNS
    };
    let mut statement = connection.prepare_cached(&format!("SELECT {columns} FROM jobs {sql}"))?;
    let mut bound = resume;
    bound.extend(filter.map(|name| Value::Text(name.to_string())));
    let mut rows = statement.query(rusqlite::params_from_iter(bound))?;
    while rows_seen < query_limit
        && let Some(row) = rows.next()?
    {
        let (seq, mut view) = if entries_only {
            entry_view_from_row(row)?
        } else {
            view_from_row(row)?
        };
        // Rows written before jobs had an entry, or by hand.
        let rendered;
        if entries_only && view.pending_entry.is_none() {
            rendered = pending_entry_of_job(connection, seq)?;
            view.pending_entry = Some(&rendered);
        }
        rows_seen += 1;
        last = Some(match cursor.section {
            JobSection::Pending => (view.priority, seq),
            JobSection::Running => (0.0, seq),
            JobSection::Finished { .. } => (view.end_time.unwrap_or(0.0), seq),
        });
        // Only the finished section's query is not narrowed already.
        let wanted = match cursor.section {
            JobSection::Finished { .. } => project
                .as_deref()
                .is_none_or(|wanted| wanted == view.project),
            _ => true,
        };
        if wanted {
            visit(&view);
            given += 1;
        }
    }
    cursor.passed += rows_seen;
    let exhausted =
        rows_seen < query_limit || finished_keep.is_some_and(|keep| cursor.passed >= keep);
    match cursor.section {
        JobSection::Pending if !cursor.launching_done => {
            if exhausted {
                // The queue starts from its own beginning.
                cursor.launching_done = true;
                cursor.last = None;
            } else {
                cursor.last = last;
            }
        }
        JobSection::Pending if cursor.last.is_some() && !cursor.below => {
            // The rest of one priority is through: the lower ones next.
            cursor.below = exhausted;
            cursor.last = last;
        }
        JobSection::Pending if cursor.below && !exhausted => {
            cursor.below = false;
            cursor.last = last;
        }
        _ => {
            cursor.last = last;
            cursor.done = exhausted;
        }
    }
    Ok(given)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewJob, Version};

    fn store_with_projects(names: &[&str]) -> (Store, Vec<i64>) {
        let store = Store::open_temporary().unwrap();
        let version = Version {
            version: "1".into(),
            dir_name: "1".into(),
            settings_module: "p.settings".into(),
            spiders: vec!["s".into()],
            uploaded_at: 0.0,
        };
        let ids = names
            .iter()
            .map(|name| store.put_version(name, &version, 0.0).unwrap().id)
            .collect();
        (store, ids)
    }

    fn add(store: &Store, project_id: i64, project: &str, job_id: &str, priority: f64) {
        let new = NewJob {
            job_id: job_id.into(),
            project_id,
            project: project.into(),
            spider: "s".into(),
            version: None,
            priority,
            units: 1,
            args: vec![],
            settings: vec![],
            tags: vec![],
            pending_time: 1.0,
            meta: Default::default(),
            refuse_duplicate: false,
        };
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(store.insert_job(&new))
            .unwrap();
    }

    /// Every id of a section, read `page` rows at a time.
    fn ids(store: &Store, section: JobSection, project: Option<&str>, page: usize) -> Vec<String> {
        try_ids(store, section, project, page).unwrap()
    }

    fn try_ids(
        store: &Store,
        section: JobSection,
        project: Option<&str>,
        page: usize,
    ) -> StoreResult<Vec<String>> {
        let mut cursor = JobCursor::new(section, project);
        store.snapshot(|snapshot| read_all(snapshot, &mut cursor, page))
    }

    /// The ids of the rest of the cursor's section, `page` rows at a time.
    fn read_all(
        snapshot: &JobSnapshot,
        cursor: &mut JobCursor,
        page: usize,
    ) -> StoreResult<Vec<String>> {
        let mut ids = Vec::new();
        while !cursor.is_done() {
            snapshot.read_jobs(cursor, page, &mut |view| ids.push(view.job_id.to_string()))?;
        }
        Ok(ids)
    }

    #[test]
    fn pending_pages_follow_the_queue_order() {
        let (store, p) = store_with_projects(&["p", "q"]);
        let priorities = [
            0.0,
            5.0,
            0.0,
            f64::INFINITY,
            5.0,
            -1.0,
            0.0,
            f64::NEG_INFINITY,
        ];
        for (index, priority) in priorities.iter().enumerate() {
            let (id, name) = if index % 3 == 0 {
                (p[1], "q")
            } else {
                (p[0], "p")
            };
            add(&store, id, name, &format!("j{index}"), *priority);
        }
        let whole = ids(&store, JobSection::Pending, None, 1000);
        assert_eq!(whole, ["j3", "j1", "j4", "j0", "j2", "j6", "j5", "j7"]);
        for page in 1..=4 {
            assert_eq!(ids(&store, JobSection::Pending, None, page), whole);
        }
        assert_eq!(
            ids(&store, JobSection::Pending, Some("q"), 1),
            ["j3", "j0", "j6"]
        );
        // A job being launched is listed first.
        let claimed = store.claim_next_pending(1, 1, 2.0).unwrap().unwrap();
        assert_eq!(claimed.job_id, "j3");
        assert_eq!(ids(&store, JobSection::Pending, None, 2), whole);
    }

    /// Pending entries read as stored, or rendered when a row has none.
    fn entries(store: &Store) -> Vec<String> {
        let mut cursor = JobCursor::new(JobSection::Pending, Some("p"));
        cursor.entries_only();
        let mut entries = Vec::new();
        store
            .snapshot(|snapshot| {
                while !cursor.is_done() {
                    snapshot.read_jobs(&mut cursor, 2, &mut |view| {
                        entries.push(format!("{}|{}", view.pending_entry.unwrap(), view.priority))
                    })?;
                }
                StoreResult::Ok(())
            })
            .unwrap();
        entries
    }

    #[test]
    fn pending_entries_are_stored_or_rendered() {
        let (store, p) = store_with_projects(&["p"]);
        add(&store, p[0], "p", "j1", 1.0);
        add(&store, p[0], "p", "j\u{e9}2", 0.0);
        let stored = entries(&store);
        assert_eq!(
            stored,
            [
                r#"{"id": "j1", "project": "p", "spider": "s", "version": null, "settings": {}, "args": {}|1"#,
                r#"{"id": "j\u00e92", "project": "p", "spider": "s", "version": null, "settings": {}, "args": {}|0"#,
            ]
        );
        store
            .read()
            .execute("UPDATE jobs SET pending_entry = NULL", [])
            .unwrap();
        assert_eq!(entries(&store), stored);
        super::fill_pending_entries(&store.read()).unwrap();
        assert_eq!(entries(&store), stored);
    }

    #[test]
    fn finished_pages_keep_the_node_wide_limit() {
        let (store, p) = store_with_projects(&["p", "q"]);
        for index in 0..6 {
            // Two jobs end at each instant: the seq breaks the tie.
            let (id, name) = if index % 2 == 0 {
                (p[0], "p")
            } else {
                (p[1], "q")
            };
            add(&store, id, name, &format!("j{index}"), 0.0);
            let job = store.claim_next_pending(1, 1, 2.0).unwrap().unwrap();
            store
                .finish_job(job.seq, 10.0 + (index / 2) as f64, Some(0), "finished")
                .unwrap();
        }
        let keep = JobSection::Finished { keep: 4 };
        for page in [1, 2, 3, 100] {
            assert_eq!(ids(&store, keep, None, page), ["j5", "j4", "j3", "j2"]);
            assert_eq!(ids(&store, keep, Some("p"), page), ["j4", "j2"]);
        }
        assert_eq!(
            ids(&store, JobSection::Finished { keep: 0 }, None, 4).len(),
            6
        );
        assert_eq!(store.job_counts(4).unwrap(), (0, 0, 4));
        assert_eq!(store.job_counts(0).unwrap(), (0, 0, 6));
        assert!(ids(&store, JobSection::Running, None, 4).is_empty());
        // Jobs that are through keep no pending entry.
        let entries: i64 = store
            .read()
            .query_row(
                "SELECT count(*) FROM jobs WHERE pending_entry IS NOT NULL",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(entries, 0);
    }

    #[test]
    fn a_listing_sees_the_jobs_as_they_were_when_it_began() {
        let (store, p) = store_with_projects(&["p"]);
        for index in 0..4 {
            add(&store, p[0], "p", &format!("j{index}"), 0.0);
        }
        let (pending, running, finished) = store
            .snapshot(|snapshot| {
                let mut pending = JobCursor::new(JobSection::Pending, None);
                let mut first = Vec::new();
                snapshot.read_jobs(&mut pending, 1, &mut |view| {
                    first.push(view.job_id.to_string())
                })?;
                // Meanwhile j0 (listed) runs, j1 (not yet listed) runs and
                // ends, and a new job comes.
                for _ in 0..2 {
                    let job = store.claim_next_pending(1, 1, 2.0)?.unwrap();
                    store.record_started(job.seq, 99, None, "1")?;
                }
                store.finish_job(2, 3.0, Some(0), "finished")?;
                add(&store, p[0], "p", "j4", 0.0);
                first.extend(read_all(snapshot, &mut pending, 1)?);
                let mut running = JobCursor::new(JobSection::Running, None);
                let mut finished = JobCursor::new(JobSection::Finished { keep: 0 }, None);
                StoreResult::Ok((
                    first,
                    read_all(snapshot, &mut running, 1)?,
                    read_all(snapshot, &mut finished, 1)?,
                ))
            })
            .unwrap();
        assert_eq!(pending, ["j0", "j1", "j2", "j3"]);
        assert!(running.is_empty() && finished.is_empty());
        // The next listing sees where they are now.
        assert_eq!(
            ids(&store, JobSection::Pending, None, 1),
            ["j2", "j3", "j4"]
        );
        assert_eq!(ids(&store, JobSection::Running, None, 1), ["j0"]);
        assert_eq!(
            ids(&store, JobSection::Finished { keep: 0 }, None, 1),
            ["j1"]
        );
    }
}
