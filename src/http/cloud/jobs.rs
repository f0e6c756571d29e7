//! Storage paths about jobs: `ids/P/spider/NAME`, `jobq/P/…` (list, count,
//! summaries, push, startjob, update, cancel, jobsummary), `jobs/P/S/J[/KEY]`
//! (metadata) and `spiders/P[/S]/lastjobsummary`. JSON lines out.

use hyper::Method;
use serde_json::{Map, Value, json};

use super::{
    CloudError, CloudRequest, CloudResult, json_lines, json_value, no_such_method, parse_state,
    project, written,
};
use crate::clock;
use crate::cloud::{self, RunRequest, cloud_priority, millis};
use crate::daemon::Daemon;
use crate::http::HttpResponse;
use crate::store::{Job, JobQuery, JobState, MetaChange, Project};

/// The most jobs one `jobq` listing answers.
const MAX_LISTED: usize = 1000;

/// Entries in a queue summary unless `count` says otherwise.
const SUMMARY_COUNT: usize = 5;

const STATES: [JobState; 3] = [JobState::Pending, JobState::Running, JobState::Finished];

pub fn answer(daemon: &Daemon, mut request: CloudRequest) -> CloudResult<HttpResponse> {
    let root = request.segment(0)?.to_string();
    let project = project(daemon, request.segment(1)?)?;
    let rest: Vec<String> = request.segments[2..].to_vec();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let method = request.method.clone();
    match (root.as_str(), method, rest.as_slice()) {
        ("ids", Method::GET, ["spider", name]) => spider_id(daemon, &mut request, &project, name),
        ("jobq", Method::GET, ["list"]) => list(daemon, &mut request, &project),
        ("jobq", Method::GET, ["count"]) => count(daemon, &mut request, &project),
        ("jobq", Method::GET, ["jobsummary"]) => job_summaries(daemon, &mut request, &project),
        ("jobq", Method::GET, summary_path) if summary_path.contains(&"summary") => {
            queue_summaries(daemon, &mut request, &project, summary_path)
        }
        ("jobq", Method::POST, ["push"]) => push(daemon, &request, &project),
        ("jobq", Method::POST, ["startjob"]) => start_job(daemon, &request, &project),
        ("jobq", Method::POST, ["update"]) => update(daemon, &request, &project),
        ("jobq", Method::POST, ["cancel"]) => cancel(daemon, &request, &project),
        ("jobq", Method::POST, [spider, counter, "cancel"]) => {
            let job = job_at(daemon, &project, spider, counter)?;
            daemon.cancel_jobs(std::slice::from_ref(&job), &request.who)?;
            Ok(written())
        }
        ("jobs", method, [spider, counter, key @ ..]) => {
            let job = job_at(daemon, &project, spider, counter)?;
            metadata(daemon, &request, &job, method, key.first().copied())
        }
        ("spiders", Method::GET, rest) if rest.last() == Some(&"lastjobsummary") => {
            last_job_summaries(daemon, &mut request, &project, rest)
        }
        _ => Err(no_such_method()),
    }
}

/// The job `P/S/J` of a path.
fn job_at(daemon: &Daemon, project: &Project, spider: &str, counter: &str) -> CloudResult<Job> {
    let number = |text: &str| {
        text.parse::<i64>()
            .map_err(|_| CloudError::NotFound(format!("no job {}/{spider}/{counter}", project.id)))
    };
    Ok(daemon.cloud_job(project, number(spider)?, number(counter)?)?)
}

/// `ids/P/spider/NAME[?create=1]`: the spider's id, or `null`.
fn spider_id(
    daemon: &Daemon,
    request: &mut CloudRequest,
    project: &Project,
    name: &str,
) -> CloudResult<HttpResponse> {
    let create = request.optional("create")?.is_some_and(|value| {
        matches!(
            value.to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    });
    let id = daemon.spider_id(project, name, create)?;
    Ok(json_value(&id.map_or(Value::Null, Value::from)))
}

/// The filters of `jobq/P/list` and `count`: `spider` (a name), `state`*
/// (finished by default), `has_tag`*, `lacks_tag`*, `startts`, `endts`.
fn job_query(
    daemon: &Daemon,
    request: &mut CloudRequest,
    project: &Project,
) -> CloudResult<JobQuery> {
    let mut query = JobQuery {
        project_id: project.id,
        ..JobQuery::default()
    };
    if let Some(spider) = request.optional("spider")? {
        query.spider_id = match daemon.spider_id(project, &spider, false)? {
            Some(id) => Some(id),
            // An unknown spider has no jobs.
            None => Some(-1),
        };
    }
    for state in request.all("state")? {
        query.states.push(parse_state(&state)?);
    }
    if query.states.is_empty() {
        query.states.push(JobState::Finished);
    }
    query.has_tags = request.all("has_tag")?;
    query.lacks_tags = request.all("lacks_tag")?;
    query.since = request.number("startts")?.map(|ms| ms as f64 / 1000.0);
    query.until = request.number("endts")?.map(|ms| ms as f64 / 1000.0);
    Ok(query)
}

/// The time of a job's current state.
fn state_time(job: &Job) -> f64 {
    match job.state {
        JobState::Pending => job.pending_time,
        JobState::Running => job.start_time.unwrap_or(job.pending_time),
        _ => job.end_time.or(job.start_time).unwrap_or(job.pending_time),
    }
}

/// A job as the queue lists it: key, spider, state, `ts` (its state's
/// time), `elapsed` since then, the state times, and the `jobmeta` asked for.
fn queue_entry(daemon: &Daemon, request: &CloudRequest, job: &Job, jobmeta: &[String]) -> Value {
    let ts = millis(state_time(job));
    let mut entry = Map::new();
    entry.insert("key".into(), Value::from(job.key()));
    entry.insert("spider".into(), Value::from(job.spider.as_str()));
    entry.insert("state".into(), Value::from(job.state.as_str()));
    entry.insert("ts".into(), Value::from(ts));
    // Milliseconds since, counted up: a job of this very millisecond has
    // been in its state for (less than) one.
    entry.insert(
        "elapsed".into(),
        Value::from((millis(clock::now()) - ts).max(1)),
    );
    entry.insert("pending_time".into(), Value::from(millis(job.pending_time)));
    if let Some(start) = job.start_time.filter(|_| job.state != JobState::Pending) {
        entry.insert("running_time".into(), Value::from(millis(start)));
    }
    if let Some(end) = job.end_time {
        entry.insert("finished_time".into(), Value::from(millis(end)));
    }
    if !jobmeta.is_empty() {
        let meta = daemon.job_metadata(job, &request.api_url);
        for name in jobmeta {
            if let Some(value) = meta.get(name) {
                entry.insert(name.clone(), value.clone());
            }
        }
    }
    Value::Object(entry)
}

fn list(
    daemon: &Daemon,
    request: &mut CloudRequest,
    project: &Project,
) -> CloudResult<HttpResponse> {
    let query = job_query(daemon, request, project)?;
    let start = request.number("start")?.unwrap_or(0).max(0) as usize;
    let count = request
        .number("count")?
        .map_or(MAX_LISTED, |count| (count.max(0) as usize).min(MAX_LISTED));
    let stop = request.optional("stop")?;
    let jobmeta = request.all("jobmeta")?;
    let mut entries = Vec::new();
    for job in daemon.query_jobs(&query, start, count)? {
        if stop.as_deref() == Some(job.key().as_str()) {
            break;
        }
        entries.push(queue_entry(daemon, request, &job, &jobmeta));
    }
    Ok(json_lines(entries.iter()))
}

fn count(
    daemon: &Daemon,
    request: &mut CloudRequest,
    project: &Project,
) -> CloudResult<HttpResponse> {
    let query = job_query(daemon, request, project)?;
    Ok(json_value(&Value::from(daemon.count_jobs(&query)?)))
}

/// `jobq/P[/S]/summary[/STATE]`: per state, the count and the newest jobs.
fn queue_summaries(
    daemon: &Daemon,
    request: &mut CloudRequest,
    project: &Project,
    path: &[&str],
) -> CloudResult<HttpResponse> {
    let (spider, state) = match path {
        ["summary"] => (None, None),
        ["summary", state] => (None, Some(*state)),
        [spider, "summary"] => (Some(*spider), None),
        [spider, "summary", state] => (Some(*spider), Some(*state)),
        _ => return Err(no_such_method()),
    };
    let spider_id = spider
        .map(|spider| {
            spider
                .parse::<i64>()
                .map_err(|_| CloudError::NotFound(format!("no spider {spider}")))
        })
        .transpose()?;
    let states = match state {
        Some(state) => vec![parse_state(state)?],
        None => STATES.to_vec(),
    };
    let start = request.number("start")?.unwrap_or(0).max(0) as usize;
    let count = request.number("count")?.map_or(SUMMARY_COUNT, |count| {
        (count.max(0) as usize).min(MAX_LISTED)
    });
    let jobmeta = request.all("jobmeta")?;
    let mut lines = Vec::new();
    for state in states {
        let query = JobQuery {
            project_id: project.id,
            spider_id,
            states: vec![state],
            ..JobQuery::default()
        };
        let summary: Vec<Value> = daemon
            .query_jobs(&query, start, count)?
            .iter()
            .map(|job| queue_entry(daemon, request, job, &jobmeta))
            .collect();
        lines.push(json!({
            "name": state.as_str(),
            "count": daemon.count_jobs(&query)?,
            "summary": summary,
        }));
    }
    Ok(json_lines(lines.iter()))
}

/// `jobq/P/jobsummary?key=*&jobmeta=*`: chosen metadata of chosen jobs.
fn job_summaries(
    daemon: &Daemon,
    request: &mut CloudRequest,
    project: &Project,
) -> CloudResult<HttpResponse> {
    let keys = request.all("key")?;
    let jobmeta = request.all("jobmeta")?;
    let mut lines = Vec::new();
    for key in keys {
        let Ok(job) = daemon.find_cloud_job(project, &key) else {
            continue;
        };
        let meta = daemon.job_metadata(&job, &request.api_url);
        let entry: Map<String, Value> = if jobmeta.is_empty() {
            meta
        } else {
            jobmeta
                .iter()
                .filter_map(|name| meta.get(name).map(|value| (name.clone(), value.clone())))
                .collect()
        };
        lines.push(Value::Object(entry));
    }
    Ok(json_lines(lines.iter()))
}

/// The metadata keys a push, a start or an update carries beside the ones
/// it names.
fn extra_meta(object: &Map<String, Value>, named: &[&str]) -> MetaChange {
    MetaChange::setting(
        object
            .iter()
            .filter(|(key, _)| !named.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
    )
}

/// `jobq/P/push`: a job queued by a client (not a deploy): `{spider,
/// state?, priority?, tags?, unique?, …meta}`.
fn push(daemon: &Daemon, request: &CloudRequest, project: &Project) -> CloudResult<HttpResponse> {
    let mut answers = Vec::new();
    for line in request.json_lines()? {
        let Value::Object(mut fields) = line else {
            return Err(CloudError::BadRequest("a push is a JSON object".into()));
        };
        let spider = match fields.remove("spider") {
            Some(Value::String(spider)) => spider,
            _ => return Err(CloudError::BadRequest("'spider' is required".into())),
        };
        daemon.spider_id(project, &spider, true)?;
        if let Some(unique) = fields.get("unique").and_then(Value::as_str)
            && let Some(active) = active_with_unique(daemon, project, unique)?
        {
            answers.push(json!({
                "error": format!("Active job exists with key {unique}"),
                "key": active.key(),
            }));
            continue;
        }
        let tags = match fields.remove("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(tags) => cloud::tags_of(&tags)?,
        };
        let priority = fields.remove("priority").and_then(|p| p.as_i64());
        let units = fields
            .remove("units")
            .and_then(|u| u.as_u64())
            .map(|u| u32::try_from(u).unwrap_or(0));
        let job = futures_block_on(daemon.run(
            project,
            RunRequest {
                spider,
                tags,
                priority,
                units,
                meta: fields,
                who: request.who.clone(),
                ..RunRequest::default()
            },
        ))?;
        let auth = job.meta.get("auth").cloned().unwrap_or(Value::Null);
        answers.push(json!({"key": job.key(), "auth": auth}));
    }
    Ok(json_lines(answers.iter()))
}

/// A pending or running job of the project pushed with this `unique`.
fn active_with_unique(
    daemon: &Daemon,
    project: &Project,
    unique: &str,
) -> CloudResult<Option<Job>> {
    let query = JobQuery {
        project_id: project.id,
        states: vec![JobState::Pending, JobState::Running],
        ..JobQuery::default()
    };
    Ok(daemon
        .query_jobs(&query, 0, usize::MAX >> 1)?
        .into_iter()
        .find(|job| job.meta.get("unique").and_then(Value::as_str) == Some(unique)))
}

/// Runs an async domain call from the blocking pool the storage calls run on.
fn futures_block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Handle::current().block_on(future)
}

/// `jobq/P/startjob`: the next pending job, now running for the caller,
/// with its metadata (and `auth`); nothing when the queue is empty.
fn start_job(
    daemon: &Daemon,
    request: &CloudRequest,
    project: &Project,
) -> CloudResult<HttpResponse> {
    let params = request.json_object()?;
    let change = extra_meta(&params, &[]);
    match daemon.start_next_job(project, &request.who, change)? {
        Some(job) => {
            let mut meta = daemon.job_metadata(&job, &request.api_url);
            meta.insert("auth".into(), Value::from(job_token(&job)));
            Ok(json_lines([&Value::Object(meta)]))
        }
        None => Ok(json_lines([])),
    }
}

/// The credentials of a running job, as `P/S/J:token` would carry them.
fn job_token(job: &Job) -> String {
    job.meta
        .get("auth")
        .and_then(Value::as_str)
        .map_or_else(|| format!("{:x}", job.seq), str::to_string)
}

/// `jobq/P/update`: lines `{"key": "P/S/J" or "P/S", "state"?, …meta}`;
/// answers `{"key", "prevstate"}` per job moved. Every line is read and
/// checked before any is applied: a bad one changes nothing.
fn update(daemon: &Daemon, request: &CloudRequest, project: &Project) -> CloudResult<HttpResponse> {
    let mut updates = Vec::new();
    for line in request.json_lines()? {
        let Value::Object(fields) = line else {
            return Err(CloudError::BadRequest("an update is a JSON object".into()));
        };
        let key = fields
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let to = fields
            .get("state")
            .and_then(Value::as_str)
            .map(parse_state)
            .transpose()?;
        let change = cloud::checked_change(extra_meta(&fields, &["key", "state"]))?;
        updates.push((update_key(project, key)?, to, change));
    }
    let mut answers = Vec::new();
    // Each line's jobs are read when it is applied, as the lines before
    // left them.
    for (key, to, change) in updates {
        for job in jobs_of_key(daemon, project, &key)? {
            let previous = match to {
                Some(to) => daemon.move_job(&job, to, &request.who, change.clone())?,
                None => {
                    daemon.change_job_meta(&job, change.clone())?;
                    job.state
                }
            };
            answers.push(json!({"key": job.key(), "prevstate": previous.as_str()}));
        }
    }
    Ok(json_lines(answers.iter()))
}

/// What a `jobq/P/update` key names.
enum UpdateKey {
    /// Every job of a spider that is not deleted (`P/S`): the spider's id.
    Spider(i64),
    /// One job (`P/S/J`, or its Scrapyd id).
    Job(String),
}

fn update_key(project: &Project, key: &str) -> CloudResult<UpdateKey> {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        [p, s] if p.parse::<i64>().ok() == Some(project.id) => s
            .parse::<i64>()
            .map(UpdateKey::Spider)
            .map_err(|_| CloudError::BadRequest(format!("bad key {key}"))),
        _ => Ok(UpdateKey::Job(key.to_string())),
    }
}

/// The jobs a key names (an unknown job: none).
fn jobs_of_key(daemon: &Daemon, project: &Project, key: &UpdateKey) -> CloudResult<Vec<Job>> {
    match key {
        UpdateKey::Spider(spider_id) => {
            let query = JobQuery {
                project_id: project.id,
                spider_id: Some(*spider_id),
                ..JobQuery::default()
            };
            let mut jobs = daemon.query_jobs(&query, 0, usize::MAX >> 1)?;
            jobs.reverse();
            Ok(jobs)
        }
        UpdateKey::Job(key) => match daemon.find_cloud_job(project, key) {
            Ok(job) => Ok(vec![job]),
            Err(_) => Ok(Vec::new()),
        },
    }
}

/// `jobq/P/cancel`: body a JSON array of `{"key": …}`; answers `{"count"}`
/// of pending jobs cancelled.
fn cancel(daemon: &Daemon, request: &CloudRequest, project: &Project) -> CloudResult<HttpResponse> {
    let mut jobs = Vec::new();
    for line in request.json_lines()? {
        let entries = match line {
            Value::Array(entries) => entries,
            single => vec![single],
        };
        for entry in entries {
            let key = entry
                .get("key")
                .and_then(Value::as_str)
                .or_else(|| entry.as_str())
                .unwrap_or_default()
                .to_string();
            if let Ok(job) = daemon.find_cloud_job(project, &key) {
                jobs.push(job);
            }
        }
    }
    let count = daemon.cancel_jobs(&jobs, &request.who)?;
    Ok(json_lines([&json!({ "count": count })]))
}

/// `jobs/P/S/J[/KEY]`: GET the metadata (or one key: `null` when unset),
/// POST merges an object (or sets one key), DELETE removes a key or, on
/// the job itself, purges the job.
fn metadata(
    daemon: &Daemon,
    request: &CloudRequest,
    job: &Job,
    method: Method,
    key: Option<&str>,
) -> CloudResult<HttpResponse> {
    match (method, key) {
        (Method::GET, None) => Ok(json_lines([&Value::Object(
            daemon.job_metadata(job, &request.api_url),
        )])),
        (Method::GET, Some(key)) => {
            let meta = daemon.job_metadata(job, &request.api_url);
            Ok(json_value(meta.get(key).unwrap_or(&Value::Null)))
        }
        (Method::POST, None) => {
            let object = request.json_object()?;
            daemon.change_job_meta(job, extra_meta(&object, &[]))?;
            Ok(written())
        }
        (Method::POST, Some(key)) => {
            let set = request.keyed_value(key)?;
            daemon.change_job_meta(job, MetaChange::setting(set))?;
            Ok(written())
        }
        (Method::DELETE, Some(key)) => {
            daemon.change_job_meta(
                job,
                MetaChange {
                    set: Map::new(),
                    remove: vec![key.to_string()],
                },
            )?;
            Ok(written())
        }
        (Method::DELETE, None) => {
            daemon.purge_job(job)?;
            Ok(written())
        }
        _ => Err(no_such_method()),
    }
}

/// `spiders/P[/S]/lastjobsummary`: the last finished job of each spider.
fn last_job_summaries(
    daemon: &Daemon,
    request: &mut CloudRequest,
    project: &Project,
    path: &[&str],
) -> CloudResult<HttpResponse> {
    let only = match path {
        ["lastjobsummary"] => None,
        [spider, "lastjobsummary"] => Some(daemon.cloud_spider(project, spider)?.id),
        _ => return Err(no_such_method()),
    };
    let start_after = request.optional("startafter")?;
    let count = request.number("count")?.map(|count| count.max(0) as usize);
    let mut lines = Vec::new();
    let mut passed_start = start_after.is_none();
    for spider in daemon.cloud_spiders(project)? {
        if only.is_some_and(|id| id != spider.id) {
            continue;
        }
        let query = JobQuery {
            project_id: project.id,
            spider_id: Some(spider.id),
            states: vec![JobState::Finished],
            ..JobQuery::default()
        };
        let Some(job) = daemon.query_jobs(&query, 0, 1)?.pop() else {
            continue;
        };
        if !passed_start {
            passed_start = start_after.as_deref() == Some(job.key().as_str());
            continue;
        }
        if count.is_some_and(|count| lines.len() >= count) {
            break;
        }
        let mut entry = queue_entry(daemon, request, &job, &[]);
        if let Value::Object(entry) = &mut entry {
            entry.insert("priority".into(), Value::from(cloud_priority(job.priority)));
            entry.insert(
                "close_reason".into(),
                job.close_reason.clone().map_or(Value::Null, Value::from),
            );
        }
        lines.push(entry);
    }
    Ok(json_lines(lines.iter()))
}
