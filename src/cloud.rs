//! The domain operations the Scrapy Cloud API needs beyond Scrapyd's: the
//! same projects, spiders and jobs, named by numbers (`P/S/J`), with tags,
//! metadata, outside workers, settings and an activity log. Nothing here
//! knows HTTP; `http::cloud` is a thin layer over these methods.
//!
//! Priorities: Scrapy Cloud's 0 (lowest) to 4 (highest), default 2, and
//! Scrapyd's float priority, default 0, share one queue: a Cloud priority
//! `p` is stored as `p - 2`, so both defaults rank alike (first come, first
//! served between the two APIs), Cloud 4 is Scrapyd 2.0 and Cloud 0 is
//! Scrapyd -2.0. A Scrapyd priority shows in the Cloud API as the nearest
//! Cloud priority (`round(p + 2)`, held to 0–4).

use serde_json::{Map, Value};

use crate::clock;
use crate::daemon::{Daemon, DaemonError, DaemonResult, check_passable};
use crate::filter::{self, Filter};
use crate::names;
use crate::store::{
    AppendError, DataKind, DataStats, Job, JobQuery, JobState, MetaChange, NewJob, NewRecord,
    Project, RecordBatch, RecordView,
};

/// Scrapy Cloud's default priority.
pub const DEFAULT_PRIORITY: i64 = 2;

/// The stored (Scrapyd) priority of a Cloud priority.
pub fn stored_priority(cloud: i64) -> f64 {
    (cloud - DEFAULT_PRIORITY) as f64
}

/// The Cloud priority of a stored one.
pub fn cloud_priority(stored: f64) -> i64 {
    let shifted = stored + DEFAULT_PRIORITY as f64;
    if shifted.is_nan() {
        return DEFAULT_PRIORITY;
    }
    shifted.round().clamp(0.0, 4.0) as i64
}

/// Milliseconds since the epoch, as the Cloud API counts time.
pub fn millis(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

/// The most bytes one record may take, encoded (the client's own limit).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// What a metadata value the daemon keeps itself must be.
#[derive(Debug, Clone, Copy)]
enum Kept {
    /// A JSON array of strings, kept cleaned ([`clean_tags`]).
    Tags,
    Text,
    TextOrNull,
    /// Milliseconds since the epoch, a whole number.
    Millis,
    /// A whole number in a range, as `run.json` takes it.
    Range(i64, i64),
    Object,
}

/// The metadata keys the daemon keeps itself, in the job's columns or made
/// when it shows the metadata, and what each value must be. Clients may
/// write them (HubstorageClient saves back the whole object it read, workers
/// set `close_reason`), but a value of another type would be shown instead
/// of the real one (`pending_time: "garbage"` while listings show the
/// number), or lost (`tags` not an array cleared the tags).
const KEPT_KEYS: &[(&str, Kept)] = &[
    ("tags", Kept::Tags),
    ("close_reason", Kept::TextOrNull),
    ("version", Kept::TextOrNull),
    ("pending_time", Kept::Millis),
    ("running_time", Kept::Millis),
    ("finished_time", Kept::Millis),
    ("priority", Kept::Range(0, 4)),
    ("units", Kept::Range(1, 6)),
    ("spider_args", Kept::Object),
    ("job_settings", Kept::Object),
    ("environment", Kept::Object),
    ("spider_type", Kept::Text),
    ("scheduled_by", Kept::Text),
    ("started_by", Kept::Text),
    ("api_url", Kept::Text),
    ("portia_url", Kept::Text),
];

/// Tags as a job or a spider keeps them: each once, where it first came,
/// and none empty (a tag is a label to filter on; `add_tag=a&add_tag=a`
/// or a stray `add_tag=` means no second or empty label).
pub fn clean_tags(tags: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    tags.into_iter()
        .filter(|tag| !tag.is_empty() && seen.insert(tag.clone()))
        .collect()
}

/// The tags a JSON value gives, cleaned: it must be an array of strings.
pub fn tags_of(value: &Value) -> DaemonResult<Vec<String>> {
    let not_tags = || DaemonError::BadRequest("tags must be a JSON array of strings".into());
    let Value::Array(items) = value else {
        return Err(not_tags());
    };
    let tags = items
        .iter()
        .map(|item| item.as_str().map(str::to_string).ok_or_else(not_tags))
        .collect::<DaemonResult<Vec<String>>>()?;
    Ok(clean_tags(tags))
}

/// Metadata to set, checked: every key the daemon keeps must have a value
/// of its type, or the whole change is refused before anything is written.
pub fn checked_meta(mut set: Map<String, Value>) -> DaemonResult<Map<String, Value>> {
    for (key, kept) in KEPT_KEYS {
        let Some(value) = set.get_mut(*key) else {
            continue;
        };
        let fits = match kept {
            Kept::Tags => {
                *value = Value::from(tags_of(value)?);
                true
            }
            Kept::Text => value.is_string(),
            Kept::TextOrNull => value.is_string() || value.is_null(),
            Kept::Millis => value.is_i64() || value.is_u64(),
            Kept::Range(low, high) => value
                .as_i64()
                .is_some_and(|number| (*low..=*high).contains(&number)),
            Kept::Object => value.is_object(),
        };
        if !fits {
            let wanted = match kept {
                Kept::Tags => "a JSON array of strings".to_string(),
                Kept::Text => "a string".to_string(),
                Kept::TextOrNull => "a string or null".to_string(),
                Kept::Millis => "a whole number of milliseconds".to_string(),
                Kept::Range(low, high) => format!("a whole number from {low} to {high}"),
                Kept::Object => "a JSON object".to_string(),
            };
            // What was given, short: the value could be any size.
            let given = match value {
                Value::Null => "null".to_string(),
                Value::Bool(_) => "a boolean".to_string(),
                Value::Number(number) => number.to_string(),
                Value::String(_) => "a string".to_string(),
                Value::Array(_) => "an array".to_string(),
                Value::Object(_) => "an object".to_string(),
            };
            return Err(DaemonError::BadRequest(format!(
                "{key} must be {wanted}, not {given}"
            )));
        }
    }
    Ok(set)
}

/// A metadata change, checked as [`checked_meta`] checks what it sets.
pub fn checked_change(change: MetaChange) -> DaemonResult<MetaChange> {
    Ok(MetaChange {
        set: checked_meta(change.set)?,
        remove: change.remove,
    })
}

/// A spider as the Cloud API lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudSpider {
    pub id: i64,
    pub name: String,
    pub tags: Vec<String>,
    /// The current version that has it, `None` for a spider that only has
    /// an id (made with `ids/P/spider/NAME?create=1`).
    pub version: Option<String>,
}

/// A `run.json` or `jobq/P/push`, parsed.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub spider: String,
    pub tags: Vec<String>,
    /// 0–4; `None` is the default, 2.
    pub priority: Option<i64>,
    /// 1–6.
    pub units: Option<u32>,
    /// Scrapy settings, any JSON values.
    pub job_settings: Map<String, Value>,
    /// Metadata to store with the job; `state` there starts it in that
    /// state (`running`, `finished`).
    pub meta: Map<String, Value>,
    pub args: Vec<(String, String)>,
    /// Who asks: recorded as `scheduled_by`.
    pub who: String,
    /// Refuse the job when the same spider with the same arguments is
    /// pending or running (`run.json`); a push does not.
    pub refuse_duplicate: bool,
}

impl Daemon {
    /// A project as the Cloud API names it: its numeric id, or its name.
    pub fn cloud_project(&self, text: &str) -> DaemonResult<Project> {
        let store = self.store();
        let found = match text.parse::<i64>() {
            Ok(id) => store.project_by_id(id)?,
            Err(_) => None,
        };
        match found {
            Some(project) => Ok(project),
            None => store
                .project(text)?
                .ok_or_else(|| DaemonError::ProjectNotFound(text.to_string())),
        }
    }

    /// Every project, by id.
    pub fn cloud_projects(&self) -> DaemonResult<Vec<Project>> {
        let mut projects = self.store().projects()?;
        projects.sort_by_key(|project| project.id);
        Ok(projects)
    }

    /// The spiders of a project: those of its current version and those
    /// that only have an id, each with its id (given now if it had none).
    pub fn cloud_spiders(&self, project: &Project) -> DaemonResult<Vec<CloudSpider>> {
        let store = self.store();
        let current = store.version(project.id, None)?;
        let mut spiders = store.spiders_with_ids(project.id)?;
        // Spiders get their ids at upload; a store from before that gives
        // them now.
        let missing = current.as_ref().is_some_and(|version| {
            version
                .spiders
                .iter()
                .any(|name| !spiders.iter().any(|(_, known, _)| known == name))
        });
        if let (true, Some(version)) = (missing, &current) {
            for name in &version.spiders {
                store.spider_id(project.id, name, true)?;
            }
            spiders = store.spiders_with_ids(project.id)?;
        }
        Ok(spiders
            .into_iter()
            .map(|(id, name, tags)| CloudSpider {
                version: current
                    .as_ref()
                    .filter(|version| version.spiders.contains(&name))
                    .map(|version| version.version.clone()),
                id,
                name,
                tags,
            })
            .collect())
    }

    /// A spider's id; with `create`, a new one for an unknown name.
    pub fn spider_id(
        &self,
        project: &Project,
        name: &str,
        create: bool,
    ) -> DaemonResult<Option<i64>> {
        if create && !names::is_safe_component(name) {
            return Err(names::DirectoryTraversal(name.to_string()).into());
        }
        Ok(self.store().spider_id(project.id, name, create)?)
    }

    /// A spider by id or name.
    pub fn cloud_spider(&self, project: &Project, spider: &str) -> DaemonResult<CloudSpider> {
        let spiders = self.cloud_spiders(project)?;
        let by_id = spider.parse::<i64>().ok();
        spiders
            .into_iter()
            .find(|found| Some(found.id) == by_id || found.name == spider)
            .ok_or_else(|| DaemonError::SpiderNotFound(spider.to_string()))
    }

    pub fn change_spider_tags(
        &self,
        project: &Project,
        spider: &CloudSpider,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> DaemonResult<()> {
        Ok(self
            .store()
            .change_spider_tags(project.id, spider.id, clean_tags(add), remove)?)
    }

    /// Queues a job through the Cloud API: into the one queue, crawled by
    /// the supervisor like a Scrapyd job unless its project is held for
    /// outside workers.
    pub async fn run(&self, project: &Project, request: RunRequest) -> DaemonResult<Job> {
        let known = self
            .store()
            .version(project.id, None)?
            .is_some_and(|version| version.spiders.contains(&request.spider))
            || self
                .store()
                .spider_id(project.id, &request.spider, false)?
                .is_some();
        if !known {
            return Err(DaemonError::SpiderNotFound(request.spider));
        }
        let priority = request.priority.unwrap_or(DEFAULT_PRIORITY);
        if !(0..=4).contains(&priority) {
            return Err(DaemonError::BadRequest(format!(
                "priority must be 0 to 4, not {priority}"
            )));
        }
        let units = request.units.unwrap_or(1);
        if !(1..=6).contains(&units) {
            return Err(DaemonError::BadRequest(format!(
                "units must be 1 to 6, not {units}"
            )));
        }
        let settings: Vec<(String, String)> = request
            .job_settings
            .iter()
            .map(|(name, value)| {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (name.clone(), text)
            })
            .collect();
        check_passable(&settings, &request.args)?;
        // Ordered by time, as schedule.json's (see daemon::new_job_id).
        let job_id = crate::daemon::new_job_id();
        names::check_job_path(&project.name, &request.spider, &job_id)?;
        let mut meta = checked_meta(request.meta)?;
        let state = match meta.remove("state") {
            None => JobState::Pending,
            Some(Value::String(state)) => match state.as_str() {
                "pending" => JobState::Pending,
                "running" => JobState::Running,
                "finished" => JobState::Finished,
                "deleted" => JobState::Deleted,
                _ => return Err(DaemonError::BadRequest(format!("unknown state {state}"))),
            },
            Some(other) => return Err(DaemonError::BadRequest(format!("unknown state {other}"))),
        };
        meta.insert("scheduled_by".into(), Value::from(request.who.as_str()));
        if !request.job_settings.is_empty() {
            meta.insert("job_settings".into(), Value::Object(request.job_settings));
        }
        let now = clock::now();
        let new = NewJob {
            job_id,
            project_id: project.id,
            project: project.name.clone(),
            spider: request.spider,
            version: None,
            priority: stored_priority(priority),
            units,
            args: request.args,
            settings,
            tags: clean_tags(request.tags),
            pending_time: now,
            meta,
            refuse_duplicate: request.refuse_duplicate,
        };
        let job = self
            .store()
            .insert_cloud_job(new, state, &request.who, now)
            .await?;
        if job.state == JobState::Pending {
            self.wake_launcher();
        }
        Ok(job)
    }

    /// The job `P/S/J` of a project (`P` already resolved).
    pub fn cloud_job(&self, project: &Project, spider_id: i64, counter: i64) -> DaemonResult<Job> {
        self.store()
            .job_by_key(project.id, spider_id, counter)?
            .ok_or_else(|| {
                DaemonError::JobNotFound(format!("{}/{spider_id}/{counter}", project.id))
            })
    }

    /// A job by its key `P/S/J` or its Scrapyd id, in a project.
    pub fn find_cloud_job(&self, project: &Project, key: &str) -> DaemonResult<Job> {
        let parts: Vec<&str> = key.split('/').collect();
        let numbers: Vec<i64> = parts.iter().filter_map(|part| part.parse().ok()).collect();
        match (parts.len(), numbers.as_slice()) {
            (3, [p, s, j]) if *p == project.id => self.cloud_job(project, *s, *j),
            (2, [s, j]) => self.cloud_job(project, *s, *j),
            _ => {
                let found = self.store().jobs_with_id(project.id, key)?;
                found
                    .into_iter()
                    .next()
                    .ok_or_else(|| DaemonError::JobNotFound(key.to_string()))
            }
        }
    }

    pub fn query_jobs(
        &self,
        query: &JobQuery,
        offset: usize,
        count: usize,
    ) -> DaemonResult<Vec<Job>> {
        Ok(self.store().query_cloud_jobs(query, offset, count)?)
    }

    pub fn count_jobs(&self, query: &JobQuery) -> DaemonResult<u64> {
        Ok(self.store().count_cloud_jobs(query)?)
    }

    /// A job's metadata as the Cloud API shows it; `api_url` is the Dash
    /// base the client used.
    pub fn job_metadata(&self, job: &Job, api_url: &str) -> Map<String, Value> {
        let mut meta = Map::new();
        let pairs = |pairs: &[(String, String)]| {
            Value::Object(
                pairs
                    .iter()
                    .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
                    .collect(),
            )
        };
        meta.insert("key".into(), Value::from(job.key()));
        meta.insert("project".into(), Value::from(job.project_id));
        meta.insert("spider".into(), Value::from(job.spider.as_str()));
        meta.insert("spider_type".into(), Value::from("manual"));
        meta.insert("state".into(), Value::from(job.state.as_str()));
        meta.insert("priority".into(), Value::from(cloud_priority(job.priority)));
        meta.insert("units".into(), Value::from(job.units));
        meta.insert("tags".into(), Value::from(job.tags.clone()));
        meta.insert("spider_args".into(), pairs(&job.args));
        meta.insert("job_settings".into(), pairs(&job.settings));
        meta.insert("environment".into(), Value::Object(Map::new()));
        meta.insert(
            "version".into(),
            job.shown_version().map_or(Value::Null, Value::from),
        );
        meta.insert("pending_time".into(), Value::from(millis(job.pending_time)));
        if let Some(start) = job.start_time.filter(|_| job.state != JobState::Pending) {
            meta.insert("running_time".into(), Value::from(millis(start)));
        }
        if let Some(end) = job.end_time {
            meta.insert("finished_time".into(), Value::from(millis(end)));
        }
        if let Some(reason) = &job.close_reason {
            meta.insert("close_reason".into(), Value::from(reason.as_str()));
        }
        meta.insert("scheduled_by".into(), Value::from("scrapyd"));
        if job.state != JobState::Pending {
            meta.insert("started_by".into(), Value::from("scrapyd-rs"));
        }
        meta.insert("api_url".into(), Value::from(api_url));
        meta.insert(
            "portia_url".into(),
            Value::from(format!("{api_url}portia/")),
        );
        // What the API stored wins over what the columns say.
        for (key, value) in &job.meta {
            meta.insert(key.clone(), value.clone());
        }
        meta
    }

    /// Sets and removes metadata keys of a job; a value of the wrong type
    /// for a key the daemon keeps changes nothing (see [`checked_meta`]).
    pub fn change_job_meta(&self, job: &Job, change: MetaChange) -> DaemonResult<Job> {
        let change = checked_change(change)?;
        Ok(self.store().change_job_meta(job.seq, change)?)
    }

    /// Moves a job to a state as an outside runner or the API asks;
    /// answers its previous state. A crawl of this daemon's own supervisor
    /// is stopped, by signal, as `cancel.json` would, and its end recorded
    /// when it comes (marked deleted at once when that is what was asked).
    pub fn move_job(
        &self,
        job: &Job,
        to: JobState,
        who: &str,
        change: MetaChange,
    ) -> DaemonResult<JobState> {
        // Checked before a crawl is stopped for it.
        let change = checked_change(change)?;
        if job.state == JobState::Running && job.runner.is_none() && to != JobState::Running {
            // The supervisor records the crawl's end; a deleted one stays
            // deleted then.
            self.stop_own_crawl(job)?;
            if to == JobState::Deleted {
                self.store()
                    .move_job(job.seq, to, who, change, clock::now())?;
                self.data().delete_job(job.seq)?;
            } else {
                self.change_job_meta(job, change)?;
            }
            return Ok(job.state);
        }
        let previous = self
            .store()
            .move_job(job.seq, to, who, change, clock::now())?;
        match to {
            JobState::Pending => self.wake_launcher(),
            // A deleted job's data goes with it.
            JobState::Deleted => self.data().delete_job(job.seq)?,
            _ => {}
        }
        Ok(previous)
    }

    /// Hands the next pending job of a project to an outside worker.
    pub fn start_next_job(
        &self,
        project: &Project,
        who: &str,
        change: MetaChange,
    ) -> DaemonResult<Option<Job>> {
        let change = checked_change(change)?;
        Ok(self
            .store()
            .claim_for_worker(project.id, who, change, clock::now())?)
    }

    /// Cancels jobs: pending ones leave the queue (finished, `cancelled`),
    /// this daemon's running crawls are signalled; answers how many were
    /// pending.
    pub fn cancel_jobs(&self, jobs: &[Job], who: &str) -> DaemonResult<usize> {
        let pending: Vec<i64> = jobs
            .iter()
            .filter(|job| job.state == JobState::Pending)
            .map(|job| job.seq)
            .collect();
        for job in jobs.iter().filter(|job| job.state == JobState::Running) {
            if job.runner.is_none() {
                self.stop_own_crawl(job)?;
            }
        }
        Ok(self
            .store()
            .cancel_pending_jobs(pending, who, clock::now())?)
    }

    /// Removes a job and what it stored, for good.
    pub fn purge_job(&self, job: &Job) -> DaemonResult<()> {
        if job.state == JobState::Running && job.runner.is_none() {
            self.stop_own_crawl(job)?;
        }
        self.data().delete_job(job.seq)?;
        Ok(self.store().purge_job(job.seq)?)
    }

    /// Appends the records a client wrote to a job's stream, JSON lines
    /// (`?start=N`: a retried batch is stored once); answers the count
    /// after. A line that is not a record of its kind, or a record over
    /// [`MAX_RECORD_BYTES`], refuses the whole batch before anything is
    /// stored. Each line is checked and made compact on its own, so the
    /// batch costs its own text and a few numbers a record in memory,
    /// however many records it holds.
    pub fn add_records(
        &self,
        job: &Job,
        kind: DataKind,
        start: Option<u64>,
        lines: &[u8],
    ) -> DaemonResult<u64> {
        let text = std::str::from_utf8(lines)
            .map_err(|_| DaemonError::BadRequest("the body is not UTF-8".into()))?;
        let mut batch = RecordBatch::default();
        let mut fields = None;
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
            let record =
                uploaded_record(kind, line, &mut fields).map_err(DaemonError::BadRequest)?;
            if record.json.len() > MAX_RECORD_BYTES {
                return Err(DaemonError::TooLarge(format!(
                    "a record of {} is over {MAX_RECORD_BYTES} bytes",
                    kind.as_str()
                )));
            }
            batch.push(record);
        }
        self.data()
            .append(job.seq, kind, start, batch, None, millis(clock::now()))
            .map_err(|error| match error {
                AppendError::Gap { .. } => DaemonError::BadRequest(error.to_string()),
                AppendError::Store(error) => DaemonError::Store(error),
            })
    }

    /// Up to `max` records of a job's stream (the job's `seq`) from index
    /// `from`; answers whether more may follow.
    pub fn read_records(
        &self,
        job: i64,
        kind: DataKind,
        from: u64,
        max: usize,
        visit: &mut dyn FnMut(RecordView) -> bool,
    ) -> DaemonResult<bool> {
        Ok(self.data().read_records(job, kind, from, max, visit)?)
    }

    pub fn record_stats(&self, job: &Job, kind: DataKind) -> DaemonResult<DataStats> {
        Ok(self.data().stats(job.seq, kind)?)
    }

    /// How many items and log records each job has, in one read: a
    /// listing shows them for every job it lists.
    pub fn record_counts(
        &self,
        jobs: &[Job],
    ) -> DaemonResult<std::collections::HashMap<i64, (u64, u64)>> {
        let seqs: Vec<i64> = jobs.iter().map(|job| job.seq).collect();
        Ok(self.data().item_and_log_counts(&seqs)?)
    }

    /// Events newest first: at most `count` that pass every filter.
    pub fn activity(
        &self,
        project: &Project,
        filters: &[Filter],
        count: usize,
        visit: &mut dyn FnMut(i64, Map<String, Value>),
    ) -> DaemonResult<()> {
        let mut left = count;
        self.store().read_activity(project.id, &mut |entry| {
            if left == 0 {
                return false;
            }
            if filter::all_match(filters, &entry.event) {
                left -= 1;
                visit(entry.ts, entry.event);
            }
            left > 0
        })?;
        Ok(())
    }

    pub fn add_activity(
        &self,
        project: &Project,
        events: Vec<Map<String, Value>>,
    ) -> DaemonResult<()> {
        Ok(self
            .store()
            .add_activity(project.id, millis(clock::now()), events)?)
    }

    pub fn project_settings(&self, project: &Project) -> DaemonResult<Map<String, Value>> {
        Ok(self.store().project_settings(project.id)?)
    }

    pub fn project_setting(&self, project: &Project, name: &str) -> DaemonResult<Option<Value>> {
        Ok(self.store().project_setting(project.id, name)?)
    }

    pub fn merge_project_settings(
        &self,
        project: &Project,
        changes: Map<String, Value>,
    ) -> DaemonResult<()> {
        Ok(self.store().merge_project_settings(project.id, changes)?)
    }

    pub fn delete_project_setting(&self, project: &Project, name: &str) -> DaemonResult<()> {
        Ok(self.store().delete_project_setting(project.id, name)?)
    }
}

/// One uploaded line as a record of `kind`, or why it is not one. Items
/// are JSON objects, samples arrays that start with their time, log
/// records `{time, level, message}` and requests objects with their `url`
/// (as the client writes them; other fields are kept as given). Items and
/// samples are checked without building a `Value`; `fields` is the field
/// list of the line before, shared when this one has the same.
fn uploaded_record(
    kind: DataKind,
    line: &str,
    fields: &mut Option<std::sync::Arc<[String]>>,
) -> Result<NewRecord, String> {
    let not_json = |error: serde_json::Error| format!("invalid JSON line: {error}");
    match kind {
        DataKind::Items | DataKind::Samples => {
            let record = NewRecord::from_line(line, fields).map_err(not_json)?;
            let shaped = match kind {
                DataKind::Items => record.json.starts_with('{'),
                _ => {
                    record.json.starts_with('[')
                        && record.json[1..].starts_with(|c: char| c == '-' || c.is_ascii_digit())
                }
            };
            if !shaped {
                return Err(match kind {
                    DataKind::Items => "an item is a JSON object".into(),
                    _ => {
                        "a stats sample is a JSON array that starts with its time: [ts, value, ...]"
                            .into()
                    }
                });
            }
            Ok(record)
        }
        DataKind::Logs | DataKind::Requests => {
            let mut value = crate::record::parse_value(line).map_err(not_json)?;
            let Value::Object(object) = &mut value else {
                return Err(format!("a {} record is a JSON object", kind.as_str()));
            };
            if kind == DataKind::Logs {
                let shaped = object.get("time").is_some_and(Value::is_number)
                    && object
                        .get("level")
                        .is_some_and(|level| level.is_i64() || level.is_u64())
                    && object.get("message").is_some_and(Value::is_string);
                if !shaped {
                    return Err(
                        "a log record is {\"time\": ms, \"level\": an integer, \"message\": a string}".into(),
                    );
                }
            } else {
                if !object.get("url").is_some_and(Value::is_string) {
                    return Err("a request record has its \"url\", a string".into());
                }
                // A request's absent fields (`parent`, `fp`) come as null
                // and are stored absent, as Scrapy Cloud does.
                object.retain(|_, value| !value.is_null());
            }
            Ok(NewRecord::new(kind, &value))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_both_ways() {
        assert_eq!(stored_priority(2), 0.0);
        assert_eq!(cloud_priority(stored_priority(4)), 4);
        assert_eq!(cloud_priority(stored_priority(0)), 0);
        assert_eq!(cloud_priority(0.0), 2);
        assert_eq!(cloud_priority(10.0), 4);
        assert_eq!(cloud_priority(f64::NEG_INFINITY), 0);
    }
}
