//! Dash, under `/api/`: form parameters in, `{"status": "ok", …}` out.
//! Errors are `{"status": "error", "message": …}`: 404 for an unknown
//! project or job, 400 otherwise (the client maps `already scheduled` to
//! its `DuplicateJobError` and `Authentication failed` to `Unauthorized`).

use std::sync::Arc;

use hyper::header;
use hyper::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::{CloudError, CloudRequest, CloudResult, no_such_method, project};
use crate::clock;
use crate::cloud::{RunRequest, cloud_priority, millis};
use crate::daemon::Daemon;
use crate::http::{HttpResponse, body};
use crate::store::{Job, JobQuery, JobState, MetaChange};

/// The most jobs one `jobs/list` answer holds.
const MAX_LISTED: usize = 1000;

pub async fn answer(daemon: &Arc<Daemon>, mut request: CloudRequest) -> CloudResult<HttpResponse> {
    let path = request.segments.join("/");
    let method = request.method.clone();
    let fields = match (method, path.as_str()) {
        (Method::POST, "run.json") => run(daemon, &mut request).await?,
        (Method::GET, "jobs/list.json") => return list(daemon, &mut request, false),
        (Method::GET, "jobs/list.jl") => return list(daemon, &mut request, true),
        (Method::POST, "jobs/update.json") => update(daemon, &mut request)?,
        (Method::POST, "jobs/stop.json") => stop(daemon, &mut request)?,
        (Method::POST, "jobs/delete.json") => delete(daemon, &mut request)?,
        (Method::GET, "scrapyd/listprojects.json") => {
            let ids: Vec<i64> = daemon.cloud_projects()?.iter().map(|p| p.id).collect();
            fields(json!({ "projects": ids }))
        }
        (Method::GET, "spiders/list.json") => spiders(daemon, &mut request)?,
        (Method::POST, "scrapyd/addversion.json") => add_version(daemon, &mut request).await?,
        (method, _) if path.starts_with("v2/projects/") => {
            return spider_v2(daemon, &mut request, method);
        }
        _ => return Err(no_such_method()),
    };
    Ok(ok(fields))
}

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `{"status": "ok", …fields}`.
fn ok(fields: Map<String, Value>) -> HttpResponse {
    let mut answer = Map::new();
    answer.insert("status".into(), Value::from("ok"));
    answer.extend(fields);
    json_response(StatusCode::OK, &Value::Object(answer))
}

fn json_response(status: StatusCode, value: &Value) -> HttpResponse {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::full(format!("{value}\n")))
        .unwrap_or_default()
}

/// A Dash error answer.
pub fn error(error: &CloudError) -> HttpResponse {
    let status = match error {
        CloudError::NotFound(_) => StatusCode::NOT_FOUND,
        CloudError::Unauthorized => StatusCode::UNAUTHORIZED,
        CloudError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        CloudError::BadRequest(_) | CloudError::Duplicate(_) | CloudError::Unparsable(_) => {
            StatusCode::BAD_REQUEST
        }
        CloudError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
    };
    json_response(
        status,
        &json!({"status": "error", "message": error.to_string()}),
    )
}

/// A required form parameter.
fn required(request: &mut CloudRequest, name: &str) -> CloudResult<String> {
    request
        .optional(name)?
        .ok_or_else(|| CloudError::BadRequest(format!("'{name}' parameter is required")))
}

/// A parameter holding a JSON object.
fn json_object(request: &mut CloudRequest, name: &str) -> CloudResult<Map<String, Value>> {
    match request.optional(name)? {
        None => Ok(Map::new()),
        Some(text) => match crate::record::parse_value(&text) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(CloudError::BadRequest(format!(
                "{name} must be a JSON object"
            ))),
        },
    }
}

async fn run(daemon: &Daemon, request: &mut CloudRequest) -> CloudResult<Map<String, Value>> {
    let project = project(daemon, &required(request, "project")?)?;
    let spider = match (request.optional("spider")?, request.optional("jobq_id")?) {
        (Some(name), _) => name,
        (None, Some(id)) => daemon.cloud_spider(&project, &id)?.name,
        (None, None) => {
            return Err(CloudError::BadRequest(
                "'spider' parameter is required".into(),
            ));
        }
    };
    let tags = request.all("add_tag")?;
    let priority = request.number("priority")?;
    let units = request
        .number("units")?
        .map(|units| u32::try_from(units).unwrap_or(0));
    let job_settings = json_object(request, "job_settings")?;
    let mut meta = json_object(request, "meta")?;
    let environment = json_object(request, "environment")?;
    meta.insert("environment".into(), Value::Object(environment));
    if let Some(cmd_args) = request.optional("cmd_args")? {
        meta.insert("cmd_args".into(), Value::from(cmd_args));
    }
    let args = std::mem::take(&mut request.params).remaining()?;
    let job = daemon
        .run(
            &project,
            RunRequest {
                spider,
                tags,
                priority,
                units,
                job_settings,
                meta,
                args,
                who: request.who.clone(),
                refuse_duplicate: true,
            },
        )
        .await?;
    Ok(fields(json!({ "jobid": job.key() })))
}

/// How the jobs of a request may be picked.
#[derive(Clone, Copy, PartialEq)]
enum Picking {
    /// By any filter, or none: a listing.
    ByFilters,
    /// By `job`* or `spider`: a change. Seed 002 requires `job`; `spider`
    /// is the documented extension the client's `jobs.update_tags(spider=…)`
    /// sends (it refuses to tag "all project jobs" itself). A request naming
    /// neither would change every job of the project, or every one a tag or
    /// state filter lets through, which no client means.
    ByName,
}

/// The filters every jobs endpoint shares: `project`, `job`*, `spider`,
/// `state`*, `has_tag`*, `lacks_tag`*.
fn selected_jobs(
    daemon: &Daemon,
    request: &mut CloudRequest,
    limit: usize,
    picking: Picking,
) -> CloudResult<(Vec<Job>, u64)> {
    let project = project(daemon, &required(request, "project")?)?;
    let keys = request.all("job")?;
    let mut query = JobQuery {
        project_id: project.id,
        ..JobQuery::default()
    };
    if let Some(spider) = request.optional("spider")? {
        query.spider_id = Some(daemon.cloud_spider(&project, &spider)?.id);
    }
    for state in request.all("state")? {
        query.states.push(super::parse_state(&state)?);
    }
    query.has_tags = request.all("has_tag")?;
    query.lacks_tags = request.all("lacks_tag")?;
    if picking == Picking::ByName && keys.is_empty() && query.spider_id.is_none() {
        return Err(CloudError::BadRequest(
            "'job' or 'spider' parameter is required".into(),
        ));
    }
    if !keys.is_empty() {
        let mut jobs = Vec::new();
        for key in keys {
            let job = daemon.find_cloud_job(&project, &key)?;
            if job.state != JobState::Deleted || query.states.contains(&JobState::Deleted) {
                jobs.push(job);
            }
        }
        let total = jobs.len() as u64;
        return Ok((jobs, total));
    }
    let offset = request.number("offset")?.unwrap_or(0).max(0) as usize;
    let count = request
        .number("count")?
        .map_or(limit, |count| (count.max(0) as usize).min(limit));
    let total = daemon.count_jobs(&query)?;
    Ok((daemon.query_jobs(&query, offset, count)?, total))
}

/// `jobs/list.json` and `jobs/list.jl`.
fn list(daemon: &Daemon, request: &mut CloudRequest, lines: bool) -> CloudResult<HttpResponse> {
    let (jobs, total) = selected_jobs(daemon, request, MAX_LISTED, Picking::ByFilters)?;
    let counts = daemon.record_counts(&jobs)?;
    let summaries: Vec<Value> = jobs
        .iter()
        .map(|job| summary(job, counts.get(&job.seq).copied().unwrap_or_default()))
        .collect();
    if lines {
        return Ok(super::json_lines(summaries.iter()));
    }
    Ok(ok(fields(json!({
        "count": summaries.len(),
        "total": total,
        "jobs": summaries,
    }))))
}

/// A job as the Jobs API lists it, with how many items and log records
/// were captured of it.
fn summary(job: &Job, (items, logs): (u64, u64)) -> Value {
    let iso = |seconds: f64| {
        chrono::DateTime::from_timestamp_millis(millis(seconds))
            .map(|time| time.format("%Y-%m-%dT%H:%M:%S").to_string())
    };
    let updated = job.end_time.or(job.start_time).unwrap_or(job.pending_time);
    let since = job.start_time.unwrap_or(job.pending_time);
    let elapsed = millis(job.end_time.unwrap_or_else(clock::now) - since).max(0);
    let mut entry = Map::new();
    entry.insert("id".into(), Value::from(job.key()));
    entry.insert("spider".into(), Value::from(job.spider.as_str()));
    entry.insert("state".into(), Value::from(job.state.as_str()));
    entry.insert("priority".into(), Value::from(cloud_priority(job.priority)));
    entry.insert("tags".into(), Value::from(job.tags.clone()));
    entry.insert(
        "version".into(),
        job.shown_version().map_or(Value::Null, Value::from),
    );
    entry.insert("spider_type".into(), Value::from("manual"));
    if let Some(started) = job.start_time.and_then(iso) {
        entry.insert("started_time".into(), Value::from(started));
    }
    if let Some(updated) = iso(updated) {
        entry.insert("updated_time".into(), Value::from(updated));
    }
    if let Some(reason) = &job.close_reason {
        entry.insert("close_reason".into(), Value::from(reason.as_str()));
    }
    entry.insert("elapsed".into(), Value::from(elapsed));
    entry.insert("units".into(), Value::from(job.units));
    // What the crawl produced: its records as captured, and its Scrapy
    // stats (kept as `scrapystats`) for what records do not say.
    let stats = job.meta.get("scrapystats");
    let stat = |name: &str| {
        stats
            .and_then(|stats| stats.get(name))
            .and_then(Value::as_u64)
    };
    entry.insert("items_scraped".into(), Value::from(items));
    entry.insert("logs".into(), Value::from(logs));
    entry.insert(
        "responses_received".into(),
        Value::from(stat("response_received_count").unwrap_or(0)),
    );
    entry.insert(
        "errors_count".into(),
        Value::from(stat("log_count/ERROR").unwrap_or(0)),
    );
    Value::Object(entry)
}

/// `jobs/update.json`: tags of jobs picked by `job`* or `spider`.
fn update(daemon: &Daemon, request: &mut CloudRequest) -> CloudResult<Map<String, Value>> {
    let add = request.all("add_tag")?;
    let remove = request.all("remove_tag")?;
    let (jobs, _) = selected_jobs(daemon, request, usize::MAX, Picking::ByName)?;
    for job in &jobs {
        let mut tags: Vec<String> = job
            .tags
            .iter()
            .filter(|tag| !remove.contains(tag))
            .cloned()
            .collect();
        for tag in &add {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        let mut set = Map::new();
        set.insert("tags".into(), Value::from(tags));
        daemon.change_job_meta(job, MetaChange::setting(set))?;
    }
    Ok(fields(json!({ "count": jobs.len() })))
}

/// `jobs/stop.json`: a running job is asked to stop, a pending one leaves
/// the queue.
fn stop(daemon: &Daemon, request: &mut CloudRequest) -> CloudResult<Map<String, Value>> {
    let project = project(daemon, &required(request, "project")?)?;
    let job = daemon.find_cloud_job(&project, &required(request, "job")?)?;
    match (job.state, &job.runner) {
        (JobState::Running, Some(_)) => {
            // An outside worker stops it; it is told through the metadata.
            let mut set = Map::new();
            set.insert("stop_requested".into(), Value::from(true));
            daemon.change_job_meta(&job, MetaChange::setting(set))?;
        }
        (JobState::Pending | JobState::Running, _) => {
            daemon.cancel_jobs(std::slice::from_ref(&job), &request.who)?;
        }
        _ => {}
    }
    Ok(Map::new())
}

/// `jobs/delete.json`: jobs marked deleted, their data deleted with them.
fn delete(daemon: &Daemon, request: &mut CloudRequest) -> CloudResult<Map<String, Value>> {
    let project = project(daemon, &required(request, "project")?)?;
    let keys = request.all("job")?;
    if keys.is_empty() {
        // Seed 002: `job` is required (an "ok" deleting nothing would hide
        // the caller's mistake).
        return Err(CloudError::BadRequest("'job' parameter is required".into()));
    }
    // Every job is found before any is deleted: one unknown key refuses the
    // whole request and deletes nothing, as update.json changes nothing.
    let mut jobs: Vec<Job> = Vec::with_capacity(keys.len());
    for key in keys {
        let job = daemon.find_cloud_job(&project, &key)?;
        let named_before = jobs.iter().any(|found| found.seq == job.seq);
        if job.state != JobState::Deleted && !named_before {
            jobs.push(job);
        }
    }
    for job in &jobs {
        daemon.move_job(job, JobState::Deleted, &request.who, MetaChange::default())?;
    }
    Ok(fields(json!({ "count": jobs.len() })))
}

fn spiders(daemon: &Daemon, request: &mut CloudRequest) -> CloudResult<Map<String, Value>> {
    let project = project(daemon, &required(request, "project")?)?;
    let spiders: Vec<Value> = daemon
        .cloud_spiders(&project)?
        .into_iter()
        .map(|spider| {
            json!({"id": spider.name, "tags": spider.tags, "type": "manual", "version": spider.version})
        })
        .collect();
    Ok(fields(json!({ "spiders": spiders })))
}

/// `scrapyd/addversion.json`, what `shub deploy` sends: the project by id
/// (a new id makes a project named by its digits, which gets that id).
async fn add_version(
    daemon: &Daemon,
    request: &mut CloudRequest,
) -> CloudResult<Map<String, Value>> {
    let project_text = required(request, "project")?;
    let name = match daemon.cloud_project(&project_text) {
        Ok(project) => project.name,
        Err(_) => project_text,
    };
    let version = required(request, "version")?;
    let egg = request
        .params
        .required_bytes("egg")
        .map_err(|error| CloudError::BadRequest(error.to_string()))?;
    let spiders = daemon.add_version(&name, &version, egg).await?;
    let project = daemon.cloud_project(&name)?;
    Ok(fields(
        json!({"project": project.id, "version": version, "spiders": spiders}),
    ))
}

/// `v2/projects/P/spiders/S` (GET) and `…/S/tags` (PATCH).
fn spider_v2(
    daemon: &Daemon,
    request: &mut CloudRequest,
    method: Method,
) -> CloudResult<HttpResponse> {
    let project = project(daemon, request.segment(2)?)?;
    let spider = daemon.cloud_spider(&project, request.segment(4)?)?;
    match (
        method,
        request.segments.get(5).map(String::as_str),
        request.segments.len(),
    ) {
        (Method::GET, None, 5) => Ok(json_response(
            StatusCode::OK,
            &json!({
                "id": spider.id,
                "name": spider.name,
                "project": project.id,
                "tags": spider.tags,
                "type": "manual",
                "version": spider.version,
            }),
        )),
        (Method::PATCH, Some("tags"), 6) => {
            let change = request.json_object()?;
            let list = |name: &str| -> Vec<String> {
                change
                    .get(name)
                    .and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|item| item.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (add, remove) = (list("add"), list("remove"));
            if add.is_empty() && remove.is_empty() {
                return Err(CloudError::BadRequest("nothing to add or remove".into()));
            }
            daemon.change_spider_tags(&project, &spider, add, remove)?;
            Ok(json_response(StatusCode::OK, &json!({})))
        }
        _ => Err(no_such_method()),
    }
}
