//! The Scrapy Cloud API: Dash (`/api/…`, form bodies, JSON answers with a
//! `status`) and the storage paths at the root (JSON lines). A thin layer:
//! each request is parsed here, handed to one [`Daemon`] operation, and
//! answered the way the official client reads it.
//!
//! - [`dash`]: `run.json`, `jobs/*.json`, spiders, projects, deploys.
//! - [`jobs`]: `ids`, `jobq`, job metadata, last job summaries.
//! - [`project`]: settings, activity, job summaries, the clock.
//! - [`data`]: job data (items, logs, requests, samples).
//! - [`collections`]: `collections/P/…`, the project's key-value stores.
//! - [`frontier`]: `hcf/P/…`, the crawl frontier.
//! - [`records`]: the result formats of record streams.

mod collections;
mod dash;
mod data;
mod frontier;
mod jobs;
mod project;
mod records;

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde_json::{Map, Value};

use super::HttpResponse;
use super::body;
use super::params::{ParamError, Params};
use crate::daemon::{Daemon, DaemonError};
use crate::filter::FilterError;
use crate::store::{JobState, Project, StoreError};

/// The first path segments of the storage API.
const STORAGE_ROOTS: &[&str] = &[
    "ids",
    "jobq",
    "jobs",
    "spiders",
    "projects",
    "activity",
    "system",
    "collections",
    "hcf",
];

/// The largest body a Cloud path reads: eggs as Scrapyd's uploads, batches
/// of records as `max_data_body_size`, anything else as small requests.
pub fn body_limit(config: &crate::config::Config, path: &str) -> usize {
    let root = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if path.ends_with("/addversion.json") {
        config.max_body_size
    } else if data::ROOTS.contains(&root) || ["collections", "hcf"].contains(&root) {
        config.max_data_body_size
    } else {
        config.max_request_body_size
    }
}

/// Which half of the Cloud API a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Api {
    Dash,
    Storage,
}

/// Whether `path` is a Cloud API path. `/jobs` alone is Scrapyd's page;
/// `/jobs/P/S/J` is job metadata.
pub fn api_of(path: &str) -> Option<Api> {
    if path.starts_with("/api/") {
        return Some(Api::Dash);
    }
    let mut segments = path.trim_start_matches('/').split('/');
    let root = segments.next()?;
    let more = segments.next().is_some_and(|next| !next.is_empty());
    if data::ROOTS.contains(&root) {
        // `/logs/…` and `/items/…` are also Scrapyd's file trees.
        return data::is_data_path(path).then_some(Api::Storage);
    }
    (more && STORAGE_ROOTS.contains(&root)).then_some(Api::Storage)
}

/// Why a Cloud request could not be answered as asked.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Authentication failed")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    /// Dash's `run.json`: the same spider and arguments are queued.
    #[error("{0}")]
    Duplicate(String),
    /// Data that cannot be read as records: a 400 whose body is the plain
    /// text of the message, as Scrapy Cloud answers it.
    #[error("{0}")]
    Unparsable(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    TooLarge(String),
}

impl From<DaemonError> for CloudError {
    fn from(error: DaemonError) -> CloudError {
        match error {
            DaemonError::ProjectNotFound(_)
            | DaemonError::SpiderNotFound(_)
            | DaemonError::VersionNotFound(_)
            | DaemonError::JobNotFound(_) => CloudError::NotFound(error.to_string()),
            DaemonError::Store(StoreError::DuplicateJob(_)) => {
                CloudError::Duplicate(error.to_string())
            }
            DaemonError::Store(_) | DaemonError::Internal(_) | DaemonError::Io { .. } => {
                CloudError::Internal(error.to_string())
            }
            DaemonError::Unparsable(message) => CloudError::Unparsable(message),
            DaemonError::TooLarge(message) => CloudError::TooLarge(message),
            _ => CloudError::BadRequest(error.to_string()),
        }
    }
}

impl From<ParamError> for CloudError {
    fn from(error: ParamError) -> CloudError {
        CloudError::BadRequest(error.to_string())
    }
}

impl From<FilterError> for CloudError {
    fn from(error: FilterError) -> CloudError {
        CloudError::BadRequest(error.to_string())
    }
}

pub type CloudResult<T> = Result<T, CloudError>;

/// One Cloud request, parsed as far as every endpoint needs.
pub struct CloudRequest {
    pub method: Method,
    pub headers: hyper::HeaderMap,
    /// The path's segments after the API's root (`/api/` for Dash).
    pub segments: Vec<String>,
    pub params: Params,
    pub body: Bytes,
    /// The Dash base URL the client used, which job metadata repeats.
    pub api_url: String,
    /// Who asks: the API key's name in the logs (never the key itself).
    pub who: String,
}

impl CloudRequest {
    /// Segment `index`, or an error naming what is missing.
    pub fn segment(&self, index: usize) -> CloudResult<&str> {
        self.segments
            .get(index)
            .map(String::as_str)
            .ok_or_else(|| CloudError::NotFound("no such resource".into()))
    }

    /// The body as JSON lines: every non-empty line one JSON value.
    pub fn json_lines(&self) -> CloudResult<Vec<Value>> {
        let text = std::str::from_utf8(&self.body)
            .map_err(|_| CloudError::BadRequest("the body is not UTF-8".into()))?;
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| {
                crate::record::parse_value(line)
                    .map_err(|error| CloudError::BadRequest(format!("invalid JSON line: {error}")))
            })
            .collect()
    }

    /// The strings of a JSON lines body whose every line is a string or an
    /// array of strings (the keys or ids a `…/deleted` request names), in
    /// order; anything else is refused as "`{what}` are JSON strings, or
    /// arrays of them".
    pub fn string_lines(&self, what: &str) -> CloudResult<Vec<String>> {
        let not_a_string =
            || CloudError::BadRequest(format!("{what} are JSON strings, or arrays of them"));
        let mut strings = Vec::new();
        for line in self.json_lines()? {
            match line {
                Value::String(text) => strings.push(text),
                Value::Array(items) => {
                    for item in items {
                        match item {
                            Value::String(text) => strings.push(text),
                            _ => return Err(not_a_string()),
                        }
                    }
                }
                _ => return Err(not_a_string()),
            }
        }
        Ok(strings)
    }

    /// Inflates a gzip-encoded body (`Content-Encoding: gzip`, as the
    /// client's batch writers send items, logs and requests, and
    /// HubstorageClient's collection writers) up to `limit` bytes,
    /// counted while inflating; an identity body stays as it is, another
    /// encoding is refused. Once inflated, the body is identity.
    pub fn inflate(&mut self, limit: usize) -> CloudResult<()> {
        use std::io::Read;
        let Some(encoding) = self.headers.get(header::CONTENT_ENCODING) else {
            return Ok(());
        };
        let encoding = encoding.to_str().unwrap_or_default().trim();
        if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
            return Ok(());
        }
        if !encoding.eq_ignore_ascii_case("gzip") {
            // Read as it is, such a body would be stored as garbage.
            return Err(CloudError::BadRequest(format!(
                "unsupported Content-Encoding {encoding:?}: gzip or identity"
            )));
        }
        let limit = limit as u64;
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&self.body[..])
            .take(limit + 1)
            .read_to_end(&mut text)
            .map_err(|error| CloudError::BadRequest(format!("bad gzip body: {error}")))?;
        if text.len() as u64 > limit {
            return Err(CloudError::TooLarge(format!(
                "the body inflates past {limit} bytes"
            )));
        }
        self.body = text.into();
        self.headers.remove(header::CONTENT_ENCODING);
        Ok(())
    }

    /// The body as one JSON value (`POST …/KEY`).
    pub fn json_value(&self) -> CloudResult<Value> {
        self.json_lines()?
            .into_iter()
            .next()
            .ok_or_else(|| CloudError::BadRequest("no value given".into()))
    }

    /// `{key: the body's JSON value}`: what `POST …/KEY` sets.
    pub fn keyed_value(&self, key: &str) -> CloudResult<Map<String, Value>> {
        let mut change = Map::new();
        change.insert(key.to_string(), self.json_value()?);
        Ok(change)
    }

    /// The body as one JSON object (an empty body is an empty object).
    pub fn json_object(&self) -> CloudResult<Map<String, Value>> {
        match self.json_lines()?.into_iter().next() {
            None => Ok(Map::new()),
            Some(Value::Object(map)) => Ok(map),
            Some(_) => Err(CloudError::BadRequest("expected a JSON object".into())),
        }
    }

    /// Every value of a repeated query parameter.
    pub fn all(&mut self, name: &str) -> CloudResult<Vec<String>> {
        Ok(self.params.all(name)?)
    }

    pub fn optional(&mut self, name: &str) -> CloudResult<Option<String>> {
        Ok(self.params.optional(name)?)
    }

    /// An optional whole-number parameter.
    pub fn number(&mut self, name: &str) -> CloudResult<Option<i64>> {
        match self.params.optional(name)? {
            None => Ok(None),
            Some(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| CloudError::BadRequest(format!("{name} must be a whole number"))),
        }
    }
}

/// Answers a Cloud request.
pub async fn answer(
    daemon: &Arc<Daemon>,
    api: Api,
    parts: &Parts,
    body: Bytes,
    path: &str,
) -> HttpResponse {
    let result = answer_checked(daemon, api, parts, body, path).await;
    match (api, result) {
        (_, Ok(response)) => response,
        (Api::Dash, Err(error)) => dash::error(&error),
        (Api::Storage, Err(error)) => storage_error(&error),
    }
}

async fn answer_checked(
    daemon: &Arc<Daemon>,
    api: Api,
    parts: &Parts,
    body: Bytes,
    path: &str,
) -> CloudResult<HttpResponse> {
    // The clock is public: the client reads it without credentials.
    let who = if path == "/system/ts" {
        "anonymous".to_string()
    } else {
        authorized_key(daemon, parts, api, path)?
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    // Storage bodies are JSON lines, never parameters.
    let form_body = match api {
        Api::Dash => body.clone(),
        Api::Storage => Bytes::new(),
    };
    let mut params = Params::parse(parts.uri.query(), content_type, form_body).await?;
    // Credentials, not a parameter of the call (run.json would take it for
    // a spider argument).
    let _ = params.optional("apikey");
    let root = match api {
        Api::Dash => "/api/",
        Api::Storage => "/",
    };
    let segments = path
        .strip_prefix(root)
        .unwrap_or(path)
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let request = CloudRequest {
        // HEAD is answered as GET; hyper sends the headers only.
        method: match parts.method {
            Method::HEAD => Method::GET,
            ref method => method.clone(),
        },
        headers: parts.headers.clone(),
        segments,
        params,
        body,
        api_url: dash_url(daemon, parts),
        who,
    };
    // run.json, like schedule.json, makes short reads and then waits for
    // its one group commit without holding a thread: answered here. (On
    // the blocking pool, each would hold a thread through its commit and
    // cost two hand-offs between threads.)
    if matches!(api, Api::Dash)
        && request.method == Method::POST
        && request.segments.len() == 1
        && request.segments[0] == "run.json"
    {
        return dash::answer(daemon, request).await;
    }
    // Other Cloud calls wait for commits, often several: on the blocking
    // pool, so the async workers keep serving meanwhile.
    let daemon = Arc::clone(daemon);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || match api {
        Api::Dash => runtime.block_on(dash::answer(&daemon, request)),
        Api::Storage => storage(&daemon, request),
    })
    .await
    .map_err(|error| CloudError::Internal(error.to_string()))?
}

fn storage(daemon: &Arc<Daemon>, mut request: CloudRequest) -> CloudResult<HttpResponse> {
    // Every Storage API write may come gzip-encoded (the client's batch
    // writers send items, logs and requests so; any other writer may), up
    // to the path's own body limit once inflated: a small gzip body must
    // not become 32 MiB for a path that takes 1 MiB.
    let limit = body_limit(&daemon.config, &format!("/{}", request.segments.join("/")));
    request.inflate(limit)?;
    match request.segments.first().map(String::as_str) {
        Some("ids" | "jobq" | "jobs" | "spiders") => jobs::answer(daemon, request),
        Some(root) if data::ROOTS.contains(&root) => data::answer(daemon, request),
        Some("collections") => collections::answer(daemon, request),
        Some("hcf") => frontier::answer(daemon, request),
        _ => project::answer(daemon, request),
    }
}

/// The `start` of a batch upload (the index of its first record, which
/// the client's writers send) with a digest of who sent it and its body: a
/// retry of the same upload has the same mark and is applied once.
pub fn retry_mark(request: &mut CloudRequest) -> CloudResult<Option<crate::store::RetryMark>> {
    let now = crate::cloud::millis(crate::clock::now());
    Ok(request
        .number("start")?
        .map(|start| crate::store::RetryMark::of(start, &request.who, &request.body, now)))
}

/// The Dash base URL as the client reached it: `http://HOST[PREFIX]/api/`.
fn dash_url(daemon: &Daemon, parts: &Parts) -> String {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost");
    let prefix = parts
        .headers
        .get(daemon.config.prefix_header.as_str())
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .trim_end_matches('/');
    format!("http://{host}{prefix}/api/")
}

/// Who a request comes from, checked: an API key of the configuration
/// (HTTP Basic, the key as the user; with no key configured the API is
/// open), or a running job's own credentials (user `P/S/J`, password its
/// token), which reach only that job's data and its project's stores.
fn authorized_key(daemon: &Daemon, parts: &Parts, api: Api, path: &str) -> CloudResult<String> {
    use base64::Engine;
    let credentials = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, encoded)| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .map(|pair| match pair.split_once(':') {
            Some((user, password)) => (user.to_string(), password.to_string()),
            None => (pair, String::new()),
        })
        // The other way the Jobs API documents: `?apikey=KEY`.
        .or_else(|| query_api_key(parts).map(|key| (key, String::new())));
    let keys = &daemon.config.cloud_api_keys;
    if let Some((user, password)) = &credentials {
        if keys
            .iter()
            .any(|key| constant_time_eq::constant_time_eq(key.as_bytes(), user.as_bytes()))
        {
            return Ok("apikey".into());
        }
        if api == Api::Storage && job_may_reach(daemon, user, password, path) {
            return Ok(user.clone());
        }
    }
    if keys.is_empty() {
        return Ok("apikey".into());
    }
    Err(CloudError::Unauthorized)
}

/// The `apikey` parameter of the query, if any: read as the call's
/// parameters are, so the key checked is the one taken out of them.
fn query_api_key(parts: &Parts) -> Option<String> {
    let pairs = super::params::parse_urlencoded(
        parts.uri.query()?.as_bytes(),
        super::params::MAX_PARAMS,
        &mut Vec::new(),
    )
    .ok()?;
    pairs
        .into_iter()
        .find(|(name, _)| name == "apikey")
        .map(|(_, key)| String::from_utf8_lossy(&key).into_owned())
}

/// Whether the credentials of the running job `P/S/J` are right and reach
/// `path`: the job's own metadata and data, its project's collections and
/// frontiers.
fn job_may_reach(daemon: &Daemon, user: &str, token: &str, path: &str) -> bool {
    let numbers: Vec<i64> = user
        .split('/')
        .filter_map(|part| part.parse().ok())
        .collect();
    let [project_id, spider_id, counter] = numbers[..] else {
        return false;
    };
    let Ok(project) = daemon.cloud_project(&project_id.to_string()) else {
        return false;
    };
    let Ok(job) = daemon.cloud_job(&project, spider_id, counter) else {
        return false;
    };
    let valid = job.state == JobState::Running
        && job
            .meta
            .get("auth")
            .and_then(Value::as_str)
            .is_some_and(|expected| {
                constant_time_eq::constant_time_eq(expected.as_bytes(), token.as_bytes())
            });
    if !valid {
        return false;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        [root, rest @ ..] if ["jobs", "items", "logs", "requests", "samples"].contains(root) => {
            rest.len() >= 3 && rest[..3].join("/") == user
        }
        [root, project, ..] if ["collections", "hcf"].contains(root) => {
            *project == project_id.to_string()
        }
        _ => false,
    }
}

/// A project named in a path or parameter, by id (or name).
pub fn project(daemon: &Daemon, text: &str) -> CloudResult<Project> {
    Ok(daemon.cloud_project(text)?)
}

/// A state name of the API.
pub fn parse_state(text: &str) -> CloudResult<JobState> {
    match text {
        "pending" => Ok(JobState::Pending),
        "running" => Ok(JobState::Running),
        "finished" => Ok(JobState::Finished),
        "deleted" => Ok(JobState::Deleted),
        other => Err(CloudError::BadRequest(format!("unknown state {other}"))),
    }
}

/// Storage answers: JSON lines, one compact value per line.
pub fn json_lines<'a>(values: impl IntoIterator<Item = &'a Value>) -> HttpResponse {
    let mut text = String::new();
    for value in values {
        text.push_str(&value.to_string());
        text.push('\n');
    }
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            "application/x-jsonlines; charset=utf-8",
        )
        .body(body::full(text))
        .unwrap_or_default()
}

/// A single storage value, on one line.
pub fn json_value(value: &Value) -> HttpResponse {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(body::full(format!("{value}\n")))
        .unwrap_or_default()
}

/// A write whose answer carries nothing.
pub fn written() -> HttpResponse {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body::empty())
        .unwrap_or_default()
}

/// A storage error: its status and `{"message": …}`.
fn storage_error(error: &CloudError) -> HttpResponse {
    let status = match error {
        CloudError::BadRequest(_) | CloudError::Duplicate(_) => StatusCode::BAD_REQUEST,
        CloudError::Unauthorized => StatusCode::UNAUTHORIZED,
        CloudError::NotFound(_) => StatusCode::NOT_FOUND,
        CloudError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        CloudError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        CloudError::Unparsable(message) => {
            return Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(body::full(message.clone()))
                .unwrap_or_default();
        }
    };
    let message = serde_json::json!({ "message": error.to_string() });
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(body::full(format!("{message}\n")))
        .unwrap_or_default();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Scrapy Cloud\""),
        );
    }
    response
}

/// The method is not one this path takes.
pub fn no_such_method() -> CloudError {
    CloudError::NotFound("no such resource for this method".into())
}
