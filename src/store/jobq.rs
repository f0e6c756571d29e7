//! The job queue as the Scrapy Cloud API sees it: jobs found by key and by
//! filters (spider, state, tags, time), metadata merged into a job, state
//! changes made by the API or by an outside worker. The same rows as
//! Scrapyd's listings: one job model.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use super::jobs::{job_event_in, set_tag_rows};
use super::{Job, JobState, Store, StoreError, StoreResult};

/// Which jobs a Cloud listing or count wants.
#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    pub project_id: i64,
    pub spider_id: Option<i64>,
    /// Any of these states; empty means every state but `deleted`.
    pub states: Vec<JobState>,
    /// At least one of these tags (when any are given).
    pub has_tags: Vec<String>,
    /// None of these tags.
    pub lacks_tags: Vec<String>,
    /// The time of the job's current state, in seconds: at or after
    /// `start_time`, before `end_time`.
    pub since: Option<f64>,
    pub until: Option<f64>,
}

/// The time of a job's current state, as SQL.
const STATE_TIME: &str = "CASE state WHEN 'pending' THEN pending_time
    WHEN 'running' THEN coalesce(start_time, pending_time)
    ELSE coalesce(end_time, start_time, pending_time) END";

/// A [`JobQuery`] as SQL: what follows `SELECT … FROM`, the order that
/// keeps the rows streaming, and the parameters.
struct QuerySql {
    /// `jobs WHERE …`, or a join driven from `job_tags`.
    from_where: String,
    /// `seq DESC`, in whichever name the driving table gives it.
    newest_first: &'static str,
    bound: Vec<SqlValue>,
}

impl JobQuery {
    /// Whether only states whose jobs are few (pending and running: the
    /// queue and the slots) are asked for. Finished and deleted jobs grow
    /// without bound; a tag filter over them must be driven from the tag.
    fn only_active(&self) -> bool {
        !self.states.is_empty()
            && self
                .states
                .iter()
                .all(|state| matches!(state, JobState::Pending | JobState::Running))
    }

    /// The SQL of the query. With `has_tags` over finished jobs, the rows
    /// come from `job_tags` (an index seek on project and tag) and each is
    /// looked up in `jobs` by its seq: a tag carried by 1% of a million
    /// jobs costs 10,000 lookups, not a scan of the million. With one tag
    /// they come newest first straight from the index, so a `LIMIT` stops
    /// early; several tags are merged first. Over pending and running jobs
    /// only, the few jobs of those states are read and each one's tags
    /// checked.
    fn sql(&self) -> QuerySql {
        let mut clauses = Vec::new();
        let mut bound = vec![SqlValue::Integer(self.project_id)];
        let add = |bound: &mut Vec<SqlValue>, value: SqlValue| {
            bound.push(value);
            format!("?{}", bound.len())
        };
        let tags: Vec<String> = self
            .has_tags
            .iter()
            .map(|tag| add(&mut bound, SqlValue::Text(tag.clone())))
            .collect();
        let by_tag = !tags.is_empty() && !self.only_active();
        // Driven from job_tags, the jobs' own indexes must not be chosen
        // for the outer loop: `+` keeps a column's term off its index.
        let column = |name: &str| {
            if by_tag && tags.len() > 1 {
                format!("+{name}")
            } else {
                name.to_string()
            }
        };
        clauses.push(format!("{} = ?1", column("project_id")));
        if self.states.is_empty() {
            clauses.push(format!("{} != 'deleted'", column("state")));
        } else {
            let states: Vec<String> = self
                .states
                .iter()
                .map(|state| add(&mut bound, SqlValue::Text(state.as_str().into())))
                .collect();
            clauses.push(format!("{} IN ({})", column("state"), states.join(", ")));
        }
        if let Some(spider_id) = self.spider_id {
            let spider = add(&mut bound, SqlValue::Integer(spider_id));
            clauses.push(format!("{} = {spider}", column("spider_id")));
        }
        if !tags.is_empty() && !by_tag {
            clauses.push(format!(
                "EXISTS (SELECT 1 FROM job_tags t WHERE t.project_id = ?1 AND t.tag IN ({}) AND t.seq = jobs.seq)",
                tags.join(", ")
            ));
        } else if tags.len() > 1 {
            clauses.push(format!(
                "seq IN (SELECT seq FROM job_tags WHERE project_id = ?1 AND tag IN ({}))",
                tags.join(", ")
            ));
        }
        for tag in &self.lacks_tags {
            let tag = add(&mut bound, SqlValue::Text(tag.clone()));
            clauses.push(format!(
                "NOT EXISTS (SELECT 1 FROM job_tags t WHERE t.project_id = ?1 AND t.tag = {tag} AND t.seq = jobs.seq)"
            ));
        }
        if let Some(since) = self.since {
            let since = add(&mut bound, SqlValue::Real(since));
            clauses.push(format!("{STATE_TIME} >= {since}"));
        }
        if let Some(until) = self.until {
            let until = add(&mut bound, SqlValue::Real(until));
            clauses.push(format!("{STATE_TIME} < {until}"));
        }
        let clause = clauses.join(" AND ");
        if by_tag && tags.len() == 1 {
            // CROSS JOIN keeps job_tags the outer loop; its one column has
            // a name of its own, so the jobs' columns need no qualifier.
            QuerySql {
                from_where: format!(
                    "(SELECT seq AS tagged FROM job_tags WHERE project_id = ?1 AND tag = {})
                     CROSS JOIN jobs ON jobs.seq = tagged WHERE {clause}",
                    tags[0]
                ),
                newest_first: "tagged DESC",
                bound,
            }
        } else {
            QuerySql {
                from_where: format!("jobs WHERE {clause}"),
                newest_first: "seq DESC",
                bound,
            }
        }
    }
}

/// A change of a job's metadata through the Cloud API.
#[derive(Debug, Clone, Default)]
pub struct MetaChange {
    /// Keys to set; `tags` and `close_reason` go to their columns, the
    /// rest into the metadata object. `state` and the job's identity
    /// (`key`, `project`, `spider`, …) cannot be set this way.
    pub set: Map<String, Value>,
    /// Keys to remove from the metadata object.
    pub remove: Vec<String>,
}

impl MetaChange {
    /// Sets the keys of `set`, removing none.
    pub fn setting(set: Map<String, Value>) -> MetaChange {
        MetaChange {
            set,
            remove: Vec::new(),
        }
    }
}

/// Keys that name a job rather than describe it: never stored as metadata.
const IDENTITY_KEYS: &[&str] = &["key", "project", "spider", "state", "auth", "_key"];

/// Applies a metadata change inside a write under way.
fn apply_meta_in(connection: &Connection, job: &mut Job, change: &MetaChange) -> StoreResult<()> {
    for (key, value) in &change.set {
        match key.as_str() {
            key if IDENTITY_KEYS.contains(&key) => {}
            "tags" => {
                // The domain refuses tags that are not strings
                // (`cloud::checked_meta`); this only keeps the column sound.
                let tags: Vec<String> = match value {
                    Value::Array(items) => items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_string))
                        .collect(),
                    _ => Vec::new(),
                };
                set_tag_rows(connection, job.project_id, job.seq, &job.tags, &tags)?;
                job.tags = tags;
            }
            "close_reason" => job.close_reason = value.as_str().map(str::to_string),
            _ => {
                job.meta.insert(key.clone(), value.clone());
            }
        }
    }
    for key in &change.remove {
        match key.as_str() {
            "tags" => {
                set_tag_rows(connection, job.project_id, job.seq, &job.tags, &[])?;
                job.tags.clear();
            }
            "close_reason" => job.close_reason = None,
            _ => {
                job.meta.remove(key);
            }
        }
    }
    connection
        .prepare_cached("UPDATE jobs SET tags = ?2, close_reason = ?3, meta = ?4 WHERE seq = ?1")?
        .execute(params![
            job.seq,
            serde_json::to_string(&job.tags)?,
            job.close_reason,
            Value::Object(job.meta.clone()).to_string(),
        ])?;
    Ok(())
}

/// Moves a job to `to` inside a write under way, with its activity event;
/// answers the state it was in.
fn transition_in(
    connection: &Connection,
    job: &mut Job,
    to: JobState,
    who: &str,
    now: f64,
) -> StoreResult<JobState> {
    let previous = job.state;
    if previous == to {
        return Ok(previous);
    }
    let event = match to {
        JobState::Pending => {
            job.start_time = None;
            job.end_time = None;
            job.runner = None;
            None
        }
        JobState::Running => {
            job.start_time = Some(now);
            job.runner = Some(who.to_string());
            job.meta.insert("started_by".into(), Value::from(who));
            // The job's own credentials while it runs (`P/S/J:token`).
            let token = uuid::Uuid::new_v4().simple().to_string();
            job.meta.insert("auth".into(), Value::from(token));
            Some("job:started")
        }
        JobState::Finished => {
            job.end_time = Some(now);
            job.meta.remove("auth");
            if job.close_reason.is_none() {
                job.close_reason = Some("finished".into());
            }
            Some(if job.close_reason.as_deref() == Some("cancelled") {
                "job:cancelled"
            } else {
                "job:completed"
            })
        }
        JobState::Deleted => {
            job.listed = false;
            job.meta.remove("auth");
            None
        }
    };
    job.state = to;
    connection
        .prepare_cached(
            "UPDATE jobs SET state = ?2, start_time = ?3, end_time = ?4, runner = ?5,
                 close_reason = ?6, listed = ?7, meta = ?8,
                 pending_entry = CASE WHEN ?9 THEN pending_entry END
             WHERE seq = ?1",
        )?
        .execute(params![
            job.seq,
            to.as_str(),
            job.start_time,
            job.end_time,
            job.runner,
            job.close_reason,
            job.listed,
            Value::Object(job.meta.clone()).to_string(),
            // A job that is through drops its pending entry (a job sent
            // back to the queue later has it rendered as listed).
            matches!(to, JobState::Pending | JobState::Running),
        ])?;
    if let Some(event) = event {
        job_event_in(connection, job, event, Value::from(who), now)?;
    }
    Ok(previous)
}

fn job_by_seq_in(connection: &Connection, seq: i64) -> StoreResult<Job> {
    super::jobs::query_jobs_on(connection, "WHERE seq = ?1", [seq])?
        .pop()
        .ok_or(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
}

impl Store {
    /// The job with key `project/spider/counter`, deleted ones included.
    pub fn job_by_key(
        &self,
        project_id: i64,
        spider_id: i64,
        counter: i64,
    ) -> StoreResult<Option<Job>> {
        Ok(super::jobs::query_jobs_on(
            &self.read(),
            "WHERE project_id = ?1 AND spider_id = ?2 AND counter = ?3",
            params![project_id, spider_id, counter],
        )?
        .pop())
    }

    /// Jobs of a query, newest first, skipping `offset`, at most `count`.
    pub fn query_cloud_jobs(
        &self,
        query: &JobQuery,
        offset: usize,
        count: usize,
    ) -> StoreResult<Vec<Job>> {
        let QuerySql {
            from_where,
            newest_first,
            mut bound,
        } = query.sql();
        bound.push(SqlValue::Integer(count as i64));
        let limit = bound.len();
        bound.push(SqlValue::Integer(offset as i64));
        let from = format!(
            "{from_where} ORDER BY {newest_first} LIMIT ?{limit} OFFSET ?{}",
            limit + 1
        );
        super::jobs::query_jobs_from(&self.read(), &from, rusqlite::params_from_iter(bound))
    }

    /// How many jobs a query finds.
    pub fn count_cloud_jobs(&self, query: &JobQuery) -> StoreResult<u64> {
        let QuerySql {
            from_where, bound, ..
        } = query.sql();
        let count: i64 = self
            .read()
            .prepare_cached(&format!("SELECT count(*) FROM {from_where}"))?
            .query_row(rusqlite::params_from_iter(bound), |row| row.get(0))?;
        Ok(count.max(0) as u64)
    }

    /// Applies a metadata change to a job; answers the job as changed.
    pub fn change_job_meta(&self, seq: i64, change: MetaChange) -> StoreResult<Job> {
        self.write(move |connection| {
            let mut job = job_by_seq_in(connection, seq)?;
            apply_meta_in(connection, &mut job, &change)?;
            Ok(job)
        })
    }

    /// Moves a job to `to` (and applies `change`), as an outside runner or
    /// the API asks; answers the state it was in. A job that is running
    /// under this daemon's own supervisor can only be moved by it.
    pub fn move_job(
        &self,
        seq: i64,
        to: JobState,
        who: &str,
        change: MetaChange,
        now: f64,
    ) -> StoreResult<JobState> {
        let who = who.to_string();
        self.write(move |connection| {
            let mut job = job_by_seq_in(connection, seq)?;
            apply_meta_in(connection, &mut job, &change)?;
            transition_in(connection, &mut job, to, &who, now)
        })
    }

    /// Claims the best pending job of a project for an outside worker
    /// (priority, then first come), marking it running with `change`
    /// applied; `None` when nothing is pending. Only jobs of `projects`
    /// when given (the projects of the worker's bot group).
    pub fn claim_for_worker(
        &self,
        project_id: i64,
        who: &str,
        change: MetaChange,
        now: f64,
    ) -> StoreResult<Option<Job>> {
        let who = who.to_string();
        self.write(move |connection| {
            let best: Option<i64> = connection
                .prepare_cached(
                    "SELECT seq FROM jobs WHERE state = 'pending' AND project_id = ?1
                     ORDER BY priority DESC, seq LIMIT 1",
                )?
                .query_row([project_id], |row| row.get(0))
                .optional()?;
            let Some(seq) = best else {
                return Ok(None);
            };
            let mut job = job_by_seq_in(connection, seq)?;
            apply_meta_in(connection, &mut job, &change)?;
            transition_in(connection, &mut job, JobState::Running, &who, now)?;
            Ok(Some(job))
        })
    }

    /// Cancels pending jobs by seq (finished as `cancelled`, out of
    /// Scrapyd's listings); answers how many were pending.
    pub fn cancel_pending_jobs(&self, seqs: Vec<i64>, who: &str, now: f64) -> StoreResult<usize> {
        let who = who.to_string();
        self.write(move |connection| {
            let mut cancelled = 0;
            for seq in seqs {
                let mut job = job_by_seq_in(connection, seq)?;
                if job.state != JobState::Pending {
                    continue;
                }
                job.close_reason = Some("cancelled".into());
                job.listed = false;
                transition_in(connection, &mut job, JobState::Finished, &who, now)?;
                cancelled += 1;
            }
            Ok(cancelled)
        })
    }

    /// Adds a job through the Cloud API, in `state` right away when the
    /// caller says it is already running or finished (`run.json`'s `meta`,
    /// a push with a state), in one commit.
    pub async fn insert_cloud_job(
        &self,
        new: super::NewJob,
        state: JobState,
        who: &str,
        now: f64,
    ) -> StoreResult<Job> {
        let who = who.to_string();
        let encoded = super::jobs::EncodedJob::of(&new)?;
        self.write_async(move |connection| {
            let mut job = super::jobs::insert_job_in(connection, new, encoded)?;
            if state != JobState::Pending {
                transition_in(connection, &mut job, state, &who, now)?;
            }
            Ok(job)
        })
        .await
    }

    /// Removes a job for good, with its tags (`DELETE jobs/P/S/J`).
    pub fn purge_job(&self, seq: i64) -> StoreResult<()> {
        self.write(move |connection| {
            connection.execute(
                "DELETE FROM job_tags WHERE seq = ?1 AND project_id = (SELECT project_id FROM jobs WHERE seq = ?1)",
                [seq],
            )?;
            connection.execute("DELETE FROM jobs WHERE seq = ?1", [seq])?;
            Ok(())
        })
    }

    /// The numeric id of a spider, created when `create` and unknown.
    pub fn spider_id(&self, project_id: i64, name: &str, create: bool) -> StoreResult<Option<i64>> {
        if !create {
            return Ok(self
                .read()
                .prepare_cached("SELECT id FROM spiders WHERE project_id = ?1 AND name = ?2")?
                .query_row(params![project_id, name], |row| row.get(0))
                .optional()?);
        }
        let name = name.to_string();
        self.write(move |connection| {
            super::projects::spider_id_in(connection, project_id, &name).map(Some)
        })
    }

    /// Every spider with an id in a project: `(id, name, tags)`.
    pub fn spiders_with_ids(
        &self,
        project_id: i64,
    ) -> StoreResult<Vec<(i64, String, Vec<String>)>> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT id, name, tags FROM spiders WHERE project_id = ?1 ORDER BY name",
        )?;
        let rows = statement.query_map([project_id], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        let mut spiders = Vec::new();
        for row in rows {
            let (id, name, tags) = row?;
            spiders.push((id, name, serde_json::from_str(&tags)?));
        }
        Ok(spiders)
    }

    /// Adds and removes tags of a spider.
    pub fn change_spider_tags(
        &self,
        project_id: i64,
        spider_id: i64,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> StoreResult<()> {
        self.write(move |connection| {
            let tags: String = connection.query_row(
                "SELECT tags FROM spiders WHERE project_id = ?1 AND id = ?2",
                params![project_id, spider_id],
                |row| row.get(0),
            )?;
            let mut tags: Vec<String> = serde_json::from_str(&tags)?;
            tags.retain(|tag| !remove.contains(tag));
            for tag in add {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            connection.execute(
                "UPDATE spiders SET tags = ?3 WHERE project_id = ?1 AND id = ?2",
                params![project_id, spider_id, serde_json::to_string(&tags)?],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewJob, Version};

    fn store_with_jobs() -> (Store, i64, Vec<Job>) {
        let store = Store::open_temporary().unwrap();
        let version = Version {
            version: "1".into(),
            dir_name: "1".into(),
            settings_module: "p.settings".into(),
            spiders: vec!["a".into(), "b".into()],
            uploaded_at: 0.0,
        };
        let project = store.put_version("p", &version, 0.0).unwrap().id;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let states = [
            JobState::Pending,
            JobState::Running,
            JobState::Finished,
            JobState::Finished,
            JobState::Deleted,
        ];
        let tag_sets: [&[&str]; 5] = [&[], &["x"], &["y"], &["x", "y"], &["z", "x"]];
        let mut jobs = Vec::new();
        for index in 0..60 {
            let new = NewJob {
                job_id: format!("j{index}"),
                project_id: project,
                project: "p".into(),
                spider: if index % 3 == 0 { "a" } else { "b" }.into(),
                version: None,
                priority: 0.0,
                units: 1,
                args: vec![],
                settings: vec![],
                tags: tag_sets[index % 5]
                    .iter()
                    .map(|tag| tag.to_string())
                    .collect(),
                pending_time: index as f64,
                meta: Map::new(),
                refuse_duplicate: false,
            };
            let state = states[(index / 5 + index) % 5];
            jobs.push(
                runtime
                    .block_on(store.insert_cloud_job(new, state, "test", 100.0 + index as f64))
                    .unwrap(),
            );
        }
        (store, project, jobs)
    }

    /// What a query should find, by reading every job.
    fn naive(jobs: &[Job], query: &JobQuery) -> Vec<i64> {
        let mut found: Vec<i64> = jobs
            .iter()
            .filter(|job| {
                (if query.states.is_empty() {
                    job.state != JobState::Deleted
                } else {
                    query.states.contains(&job.state)
                }) && query.spider_id.is_none_or(|id| job.spider_id == id)
                    && (query.has_tags.is_empty()
                        || query.has_tags.iter().any(|tag| job.tags.contains(tag)))
                    && !query.lacks_tags.iter().any(|tag| job.tags.contains(tag))
            })
            .map(|job| job.seq)
            .collect();
        found.reverse();
        found
    }

    #[test]
    fn every_way_of_filtering_by_tag_finds_the_same_jobs() {
        let (store, project_id, jobs) = store_with_jobs();
        let tag_choices: [&[&str]; 4] = [&[], &["x"], &["x", "y"], &["nothing"]];
        let state_choices: [&[JobState]; 5] = [
            &[],
            &[JobState::Finished],
            &[JobState::Pending, JobState::Running],
            &[JobState::Running],
            &[JobState::Finished, JobState::Deleted, JobState::Pending],
        ];
        for has in tag_choices {
            for states in state_choices {
                for lacks in [&[][..], &["y"][..]] {
                    for spider_id in [None, Some(jobs[0].spider_id)] {
                        let query = JobQuery {
                            project_id,
                            spider_id,
                            states: states.to_vec(),
                            has_tags: has.iter().map(|t| t.to_string()).collect(),
                            lacks_tags: lacks.iter().map(|t| t.to_string()).collect(),
                            since: None,
                            until: None,
                        };
                        let expected = naive(&jobs, &query);
                        let listed: Vec<i64> = store
                            .query_cloud_jobs(&query, 0, 1000)
                            .unwrap()
                            .iter()
                            .map(|job| job.seq)
                            .collect();
                        assert_eq!(listed, expected, "{query:?}");
                        let paged: Vec<i64> = store
                            .query_cloud_jobs(&query, 2, 3)
                            .unwrap()
                            .iter()
                            .map(|job| job.seq)
                            .collect();
                        let window: Vec<i64> = expected.iter().skip(2).take(3).copied().collect();
                        assert_eq!(paged, window, "{query:?}");
                        assert_eq!(
                            store.count_cloud_jobs(&query).unwrap(),
                            expected.len() as u64,
                            "{query:?}"
                        );
                    }
                }
            }
        }
    }
}
