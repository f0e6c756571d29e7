//! Storage paths about a project as a whole: `projects/P/settings[/KEY]`,
//! `projects/jobsummaries`, `projects/P/jobsummary`, `activity/P` and the
//! clock `system/ts`.

use hyper::Method;
use serde_json::{Map, Value};

use super::{
    CloudError, CloudRequest, CloudResult, json_lines, json_value, no_such_method, project, written,
};
use crate::clock;
use crate::cloud::millis;
use crate::daemon::Daemon;
use crate::filter;
use crate::http::HttpResponse;
use crate::store::{JobQuery, JobState, Project};

/// Activity entries answered when `count` is not given.
const ACTIVITY_COUNT: usize = 100;

pub fn answer(daemon: &Daemon, mut request: CloudRequest) -> CloudResult<HttpResponse> {
    let segments = request.segments.clone();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method.clone();
    match (method, segments.as_slice()) {
        (Method::GET, ["system", "ts"]) => Ok(json_value(&Value::from(millis(clock::now())))),
        (Method::GET, ["projects", "jobsummaries"]) => {
            let mut summaries = Vec::new();
            for project in daemon.cloud_projects()? {
                summaries.push(job_counts(daemon, &project)?);
            }
            Ok(json_value(&Value::from(summaries)))
        }
        (Method::GET, ["projects", id, "jobsummary"]) => {
            let project = project(daemon, id)?;
            Ok(json_value(&job_counts(daemon, &project)?))
        }
        (method, ["projects", id, "settings", key @ ..]) => {
            let project = project(daemon, id)?;
            settings(daemon, &request, &project, method, key.first().copied())
        }
        (method, ["activity", id]) => {
            let project = project(daemon, id)?;
            activity(daemon, &mut request, &project, method)
        }
        _ => Err(no_such_method()),
    }
}

/// `{"project", "pending", "running", "finished", "has_capacity"}`.
fn job_counts(daemon: &Daemon, project: &Project) -> CloudResult<Value> {
    let mut counts = Map::new();
    counts.insert("project".into(), Value::from(project.id));
    for state in [JobState::Pending, JobState::Running, JobState::Finished] {
        let query = JobQuery {
            project_id: project.id,
            states: vec![state],
            ..JobQuery::default()
        };
        counts.insert(
            state.as_str().into(),
            Value::from(daemon.count_jobs(&query)?),
        );
    }
    counts.insert("has_capacity".into(), Value::from(true));
    Ok(Value::Object(counts))
}

/// `projects/P/settings[/KEY]`: GET all (one object) or one (`null` when
/// unset); POST merges an object; DELETE one key.
fn settings(
    daemon: &Daemon,
    request: &CloudRequest,
    project: &Project,
    method: Method,
    key: Option<&str>,
) -> CloudResult<HttpResponse> {
    match (method, key) {
        (Method::GET, None) => Ok(json_value(&Value::Object(
            daemon.project_settings(project)?,
        ))),
        (Method::GET, Some(key)) => Ok(json_value(
            &daemon.project_setting(project, key)?.unwrap_or(Value::Null),
        )),
        (Method::POST, None) => {
            daemon.merge_project_settings(project, request.json_object()?)?;
            Ok(written())
        }
        (Method::POST, Some(key)) => {
            daemon.merge_project_settings(project, request.keyed_value(key)?)?;
            Ok(written())
        }
        (Method::DELETE, Some(key)) => {
            daemon.delete_project_setting(project, key)?;
            Ok(written())
        }
        _ => Err(no_such_method()),
    }
}

/// `activity/P`: GET newest first (`count`, `filter`*, `meta=_ts`); POST
/// appends JSON lines of events, in order.
fn activity(
    daemon: &Daemon,
    request: &mut CloudRequest,
    project: &Project,
    method: Method,
) -> CloudResult<HttpResponse> {
    match method {
        Method::GET => {
            let count = request
                .number("count")?
                .map_or(ACTIVITY_COUNT, |count| count.max(0) as usize);
            let filters = filter::parse_all(&request.all("filter")?)?;
            let with_ts = request.all("meta")?.iter().any(|meta| meta == "_ts");
            let mut lines = Vec::new();
            daemon.activity(project, &filters, count, &mut |ts, mut event| {
                if with_ts {
                    event.insert("_ts".into(), Value::from(ts));
                }
                lines.push(Value::Object(event));
            })?;
            Ok(json_lines(lines.iter()))
        }
        Method::POST => {
            let mut events = Vec::new();
            for line in request.json_lines()? {
                match line {
                    Value::Object(event) => events.push(event),
                    _ => return Err(CloudError::BadRequest("an event is a JSON object".into())),
                }
            }
            daemon.add_activity(project, events)?;
            Ok(written())
        }
        _ => Err(no_such_method()),
    }
}
