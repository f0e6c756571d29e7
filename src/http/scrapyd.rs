//! The eleven Scrapyd endpoints. Each reads its parameters in Scrapyd's
//! declared order, calls one [`Daemon`] method and shapes the answer's
//! fields; the envelope (`status`, `node_name`, CORS) is added once, in
//! [`answer`].

use std::sync::Arc;

use bytes::Bytes;
use hyper::Method;
use hyper::http::request::Parts;
use serde_json::{Map, Value, json};

use super::HttpResponse;
use super::listing::{self, ListJobsJson};
use super::params::{ParamError, Params};
use super::response::{self, Methods};
use crate::daemon::{Daemon, DaemonError, JobListing, ScheduleRequest};

/// Why an endpoint could not answer with its fields.
#[derive(Debug, thiserror::Error)]
enum EndpointError {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("internal error: {0}")]
    Internal(String),
}

type Fields = Result<Map<String, Value>, EndpointError>;

fn methods_of(endpoint: &str) -> Methods {
    match endpoint {
        "daemonstatus.json" | "status.json" | "listprojects.json" | "listversions.json"
        | "listspiders.json" | "listjobs.json" => Methods::Get,
        _ => Methods::Post,
    }
}

/// Scrapyd's answer to `HEAD` on a POST endpoint: Twisted's `render_HEAD`
/// calls `render_GET`, which the endpoint's class lacks. (A HEAD answer has
/// no body; only its `Content-Length` shows this.)
fn head_of_post_endpoint(endpoint: &str) -> String {
    let class = match endpoint {
        "addversion.json" => "AddVersion",
        "schedule.json" => "Schedule",
        "cancel.json" => "Cancel",
        "delversion.json" => "DeleteVersion",
        "delproject.json" => "DeleteProject",
        other => other,
    };
    format!("AttributeError: '{class}' object has no attribute 'render_GET'")
}

/// Answers one request to `endpoint`.
pub async fn answer(
    daemon: &Arc<Daemon>,
    endpoint: &'static str,
    parts: &Parts,
    body: Bytes,
) -> HttpResponse {
    let node_name = daemon.config.node_name.as_str();
    let methods = methods_of(endpoint);
    let accepted = match methods {
        Methods::Get => parts.method == Method::GET || parts.method == Method::HEAD,
        Methods::Post => parts.method == Method::POST,
    };
    if parts.method == Method::OPTIONS {
        return response::options(methods);
    }
    if methods == Methods::Post && parts.method == Method::HEAD {
        return response::json_error(&head_of_post_endpoint(endpoint), node_name, methods);
    }
    if !accepted {
        return response::json_error(methods.unsupported_message(), node_name, methods);
    }
    let content_type = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let fields = match Params::parse(parts.uri.query(), content_type, body).await {
        Ok(params) if endpoint == "listjobs.json" => match list_jobs(daemon, params) {
            Ok(jobs) => {
                let format = ListJobsJson {
                    node_name: node_name.to_string(),
                };
                return match listing::spool(Arc::clone(daemon), jobs, format).await {
                    Ok(spooled) => {
                        let (body, length) = spooled.into_answer(&parts.method);
                        response::json_sized(body, length, methods)
                    }
                    Err(error) => response::json_error(&error, node_name, methods),
                };
            }
            Err(error) => Err(error),
        },
        Ok(params) => run(daemon, endpoint, params).await,
        // Twisted refuses a body it cannot split before Scrapyd sees it.
        Err(ParamError::BadMultipart(_)) => {
            return response::plain(hyper::StatusCode::BAD_REQUEST, "");
        }
        Err(error) => Err(error.into()),
    };
    match fields {
        Ok(fields) => response::json_ok(fields, node_name, methods),
        Err(error) if daemon.config.debug => response::debug_error(format!("{error:?}\n"), methods),
        Err(error) => response::json_error(&error.to_string(), node_name, methods),
    }
}

async fn run(daemon: &Arc<Daemon>, endpoint: &'static str, params: Params) -> Fields {
    match endpoint {
        "addversion.json" => return add_version(daemon, params).await,
        // Waits for its group commit without holding a thread.
        "schedule.json" => return schedule(daemon, params).await,
        "cancel.json" | "delversion.json" | "delproject.json" => {}
        // Reads are short and never wait for a disk flush: answered here.
        _ => return run_blocking(daemon, endpoint, params),
    }
    // Writes wait for their group commit: on the blocking pool, so many can
    // wait at once and share one commit without holding up the workers.
    let daemon = Arc::clone(daemon);
    tokio::task::spawn_blocking(move || run_blocking(&daemon, endpoint, params))
        .await
        .unwrap_or_else(|error| Err(EndpointError::Internal(error.to_string())))
}

fn run_blocking(daemon: &Daemon, endpoint: &str, params: Params) -> Fields {
    match endpoint {
        "daemonstatus.json" => daemon_status(daemon),
        "cancel.json" => cancel(daemon, params),
        "status.json" => status(daemon, params),
        "listprojects.json" => list_projects(daemon),
        "listversions.json" => list_versions(daemon, params),
        "listspiders.json" => list_spiders(daemon, params),
        "delversion.json" => delete_version(daemon, params),
        "delproject.json" => delete_project(daemon, params),
        _ => Ok(Map::new()),
    }
}

/// Turns `json!({...})` into the field map of an answer.
fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn daemon_status(daemon: &Daemon) -> Fields {
    let (pending, running, finished) = daemon.status_counts()?;
    Ok(fields(
        json!({"pending": pending, "running": running, "finished": finished}),
    ))
}

async fn add_version(daemon: &Daemon, mut params: Params) -> Fields {
    let project = params.required("project")?;
    let version = params.required("version")?;
    let egg = params.required_bytes("egg")?;
    let spiders = daemon.add_version(&project, &version, egg).await?;
    Ok(fields(
        json!({"project": project, "version": version, "spiders": spiders}),
    ))
}

async fn schedule(daemon: &Daemon, mut params: Params) -> Fields {
    let project = params.required("project")?;
    let spider = params.required("spider")?;
    let version = params.optional("_version")?;
    let job_id = params.optional("jobid")?;
    let priority = params.optional_float("priority", 0.0)?;
    let settings = params.all("setting")?;
    let args = match params.remaining() {
        Ok(args) => args,
        Err(error) => {
            // Scrapyd decodes the arguments once it knows the project,
            // version and spider: an unknown one is said first.
            if !daemon
                .spider_names(&project, version.as_deref())?
                .contains(&spider)
            {
                return Err(DaemonError::SpiderNotFound(spider).into());
            }
            return Err(error.into());
        }
    };
    let job = daemon
        .schedule(ScheduleRequest {
            project,
            spider,
            version,
            job_id,
            priority,
            units: 1,
            settings,
            args,
            tags: Vec::new(),
        })
        .await?;
    Ok(fields(json!({"jobid": job.job_id})))
}

fn cancel(daemon: &Daemon, mut params: Params) -> Fields {
    let project = params.required("project")?;
    let job = params.required("job")?;
    let signal = params
        .optional("signal")?
        .unwrap_or_else(|| "INT".to_string());
    let previous = daemon.cancel(&project, &job, &signal)?;
    Ok(fields(
        json!({"prevstate": previous.map(|state| state.as_str())}),
    ))
}

fn status(daemon: &Daemon, mut params: Params) -> Fields {
    let job = params.required("job")?;
    let project = params.optional("project")?;
    let state = daemon.job_state(&job, project.as_deref())?;
    Ok(fields(
        json!({"currstate": state.map(|state| state.as_str())}),
    ))
}

fn list_projects(daemon: &Daemon) -> Fields {
    Ok(fields(json!({"projects": daemon.project_names()?})))
}

fn list_versions(daemon: &Daemon, mut params: Params) -> Fields {
    let project = params.required("project")?;
    Ok(fields(json!({"versions": daemon.version_names(&project)?})))
}

fn list_spiders(daemon: &Daemon, mut params: Params) -> Fields {
    let project = params.required("project")?;
    let version = params.optional("_version")?;
    Ok(fields(
        json!({"spiders": daemon.spider_names(&project, version.as_deref())?}),
    ))
}

/// `listjobs.json`: the project filter is checked here; the jobs are
/// written as the answer is sent.
fn list_jobs(daemon: &Daemon, mut params: Params) -> Result<JobListing, EndpointError> {
    let project = params.optional("project")?;
    Ok(daemon.list_jobs(project.as_deref())?)
}

fn delete_version(daemon: &Daemon, mut params: Params) -> Fields {
    let project = params.required("project")?;
    let version = params.required("version")?;
    daemon.delete_version(&project, &version)?;
    Ok(Map::new())
}

fn delete_project(daemon: &Daemon, mut params: Params) -> Fields {
    let project = params.required("project")?;
    daemon.delete_project(&project)?;
    Ok(Map::new())
}
