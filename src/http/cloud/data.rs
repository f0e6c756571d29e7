//! Job data: `items|logs|requests|samples/P/S/J` — GET streams the records
//! in the format asked for (`count`, `start`, `startafter`, `index`*,
//! `meta`*, `nodata`, `filter`*, `startts`, `endts`), POST appends JSON
//! lines (gzip bodies too, `?start=N` making a retried batch harmless);
//! `…/J/N` is one record, `…/J/stats` the stream's summary; `items/P/S`
//! and `items/P` read across a spider's or a project's jobs.

use std::io::Write;
use std::sync::Arc;

use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response};
use serde_json::{Value, json};

use super::records::{Encoder, Format, FormatParams, with_meta};
use super::{CloudError, CloudRequest, CloudResult, json_value, no_such_method, project, written};
use crate::daemon::Daemon;
use crate::filter::{self, Filter};
use crate::http::{HttpResponse, body};
use crate::store::{DataKind, Job, JobQuery, Project};

/// Records read from the store at once.
const PAGE_RECORDS: usize = 1000;

/// The roots of job data paths.
pub const ROOTS: [&str; 4] = ["items", "logs", "requests", "samples"];

/// Whether a path names job data rather than a Scrapyd file: `P`, `P/S`
/// or `P/S/J` below the root, numbers all, and no trailing slash
/// (Scrapyd's folder listings have one); or anything below a numeric
/// `P/S/J` (`…/N`, `…/stats`, a bad index): Scrapyd's files are never
/// deeper than `project/spider/job.jl`, so such a path is a Cloud one,
/// answered in its format even when wrong.
pub fn is_data_path(path: &str) -> bool {
    let below: Vec<&str> = path.trim_start_matches('/').split('/').skip(1).collect();
    let number = |text: &&str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if below.len() > 3 && below[..3].iter().all(number) {
        return true;
    }
    !path.ends_with('/') && (1..=3).contains(&below.len()) && below.iter().all(number)
}

pub fn answer(daemon: &Arc<Daemon>, mut request: CloudRequest) -> CloudResult<HttpResponse> {
    let kind = DataKind::parse(request.segment(0)?).ok_or_else(no_such_method)?;
    let project = project(daemon, request.segment(1)?)?;
    let numbers: Vec<Option<i64>> = request.segments[2..]
        .iter()
        .map(|s| s.parse().ok())
        .collect();
    let method = request.method.clone();
    match (
        method,
        numbers.as_slice(),
        request.segments.get(4).map(String::as_str),
    ) {
        (Method::GET, [], _) => {
            stream(daemon, &mut request, kind, jobs_of(daemon, &project, None)?)
        }
        (Method::GET, [Some(spider)], _) => {
            let jobs = jobs_of(daemon, &project, Some(*spider))?;
            stream(daemon, &mut request, kind, jobs)
        }
        (method, [Some(spider), Some(counter), rest @ ..], _) => {
            let job = daemon.cloud_job(&project, *spider, *counter)?;
            let below: Vec<&str> = request.segments[4..].iter().map(String::as_str).collect();
            match (method, below.as_slice()) {
                (Method::GET, []) => stream(daemon, &mut request, kind, vec![job]),
                (Method::POST, []) => add(daemon, &mut request, kind, &job),
                (Method::GET, ["stats"]) => stats(daemon, kind, &job),
                (Method::GET, [index]) => {
                    let index = index
                        .parse()
                        .map_err(|_| CloudError::BadRequest(format!("bad record index {index}")))?;
                    one(daemon, &mut request, kind, &job, index)
                }
                _ if rest.len() > 1 => Err(CloudError::NotFound(format!(
                    "no such resource: {}",
                    request.segments.join("/")
                ))),
                _ => Err(no_such_method()),
            }
        }
        _ => Err(no_such_method()),
    }
}

/// The jobs of a project or spider whose data a cross-job read covers,
/// oldest first.
fn jobs_of(daemon: &Daemon, project: &Project, spider: Option<i64>) -> CloudResult<Vec<Job>> {
    let query = JobQuery {
        project_id: project.id,
        spider_id: spider,
        ..JobQuery::default()
    };
    let mut jobs = daemon.query_jobs(&query, 0, usize::MAX >> 1)?;
    jobs.reverse();
    Ok(jobs)
}

/// A position `P/S/J/N` (or a bare index `N`) in a stream.
fn position(text: &str) -> CloudResult<(Option<(i64, i64)>, u64)> {
    let parts: Vec<&str> = text.split('/').collect();
    let bad = || CloudError::BadRequest(format!("bad position {text}"));
    match parts.as_slice() {
        [index] => Ok((None, index.parse().map_err(|_| bad())?)),
        [_, spider, counter, index] => Ok((
            Some((
                spider.parse().map_err(|_| bad())?,
                counter.parse().map_err(|_| bad())?,
            )),
            index.parse().map_err(|_| bad())?,
        )),
        _ => Err(bad()),
    }
}

/// Where a streamed read stands, between pages.
struct Reading {
    kind: DataKind,
    jobs: Vec<(i64, String)>,
    job: usize,
    next: u64,
    /// Records still to give (`count`).
    left: Option<u64>,
    /// Only these indices (`index`*), in the order asked.
    indices: Option<Vec<u64>>,
    filters: Vec<Filter>,
    with_key: bool,
    with_ts: bool,
    nodata: bool,
    /// JSON lines with no filter and no `nodata`: records are written as
    /// stored.
    verbatim: bool,
    encoder: Encoder,
    gzip: Option<GzEncoder<Vec<u8>>>,
    started: bool,
    /// Only records stored from `since` and before `until` (`startts`,
    /// `endts`, in ms), as a collection's scan takes them.
    since: Option<i64>,
    until: Option<i64>,
}

impl Reading {
    fn in_window(&self, ts: i64) -> bool {
        self.since.is_none_or(|since| ts >= since) && self.until.is_none_or(|until| ts < until)
    }
}

fn stream(
    daemon: &Arc<Daemon>,
    request: &mut CloudRequest,
    kind: DataKind,
    jobs: Vec<Job>,
) -> CloudResult<HttpResponse> {
    let params = FormatParams::take(request)?;
    let format = Format::of_request(&request.headers, &params)?;
    let count = request.number("count")?.map(|count| count.max(0) as u64);
    let start = request
        .optional("start")?
        .map(|text| position(&text))
        .transpose()?;
    let start_after = request
        .optional("startafter")?
        .map(|text| position(&text))
        .transpose()?;
    let indices: Vec<u64> = request
        .all("index")?
        .iter()
        .map(|text| {
            text.parse()
                .map_err(|_| CloudError::BadRequest(format!("bad index {text}")))
        })
        .collect::<CloudResult<_>>()?;
    let meta = request.all("meta")?;
    let nodata = request
        .optional("nodata")?
        .is_some_and(|value| matches!(value.as_str(), "1" | "true" | "True"));
    let filters = filter::parse_all(&request.all("filter")?)?;
    let (since, until) = (request.number("startts")?, request.number("endts")?);
    let saveas = request.optional("saveas")?;
    // Where to begin: the job and index of `start` (or just after
    // `startafter`).
    let (mut first_job, mut first_index) = (0, 0);
    let begin = start.or(start_after.map(|(job, index)| (job, index + 1)));
    if let Some((at_job, index)) = begin {
        if let Some((spider, counter)) = at_job {
            first_job = jobs
                .iter()
                .position(|job| job.spider_id == spider && job.counter == counter)
                .unwrap_or(jobs.len());
        }
        first_index = index;
    }
    let gzip = request
        .headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| {
            value
                .split(',')
                .any(|item| item.split(';').next().unwrap_or("").trim() == "gzip")
        });
    let content_type = format.content_type();
    let filters_empty = filters.is_empty();
    let reading = Reading {
        kind,
        jobs: jobs.iter().map(|job| (job.seq, job.key())).collect(),
        job: first_job,
        next: first_index,
        left: count,
        indices: (!indices.is_empty()).then_some(indices),
        filters,
        with_key: meta.iter().any(|name| name == "_key"),
        with_ts: meta.iter().any(|name| name == "_ts"),
        nodata,
        verbatim: format == Format::JsonLines && filters_empty && !nodata,
        encoder: Encoder::new(format),
        gzip: gzip.then(|| GzEncoder::new(Vec::new(), Compression::fast())),
        started: false,
        since,
        until,
    };
    let body = body::paged_bytes(Arc::clone(daemon), reading, write_page);
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .unwrap_or_default();
    if gzip {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Some(name) = saveas
        && let Ok(value) = HeaderValue::from_str(&format!("Attachment; filename={name}"))
    {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// Writes about a page of records; answers whether more follow.
fn write_page(daemon: &Daemon, reading: &mut Reading, out: &mut Vec<u8>) -> Result<bool, String> {
    let mut plain = Vec::with_capacity(body::PAGE_BYTES);
    if !reading.started {
        reading.started = true;
        reading.encoder.head(&mut plain);
    }
    let mut more = true;
    while plain.len() < body::PAGE_BYTES {
        if reading.left == Some(0) || reading.job >= reading.jobs.len() {
            more = false;
            break;
        }
        let (seq, key) = reading.jobs[reading.job].clone();
        if let Some(indices) = &mut reading.indices {
            // Only the indices asked for, of the one job.
            let Some(index) = (!indices.is_empty()).then(|| indices.remove(0)) else {
                more = false;
                break;
            };
            give(daemon, reading, seq, &key, index, 1, &mut plain)?;
            continue;
        }
        let (given, exhausted) = give(
            daemon,
            reading,
            seq,
            &key,
            reading.next,
            PAGE_RECORDS,
            &mut plain,
        )?;
        reading.next += given;
        if exhausted {
            reading.job += 1;
            reading.next = 0;
        }
    }
    if !more {
        reading.encoder.tail(&mut plain);
    }
    match &mut reading.gzip {
        None => *out = plain,
        Some(encoder) => {
            encoder.write_all(&plain).map_err(|e| e.to_string())?;
            if more {
                encoder.flush().map_err(|e| e.to_string())?;
                *out = std::mem::take(encoder.get_mut());
            } else {
                let finished =
                    std::mem::replace(encoder, GzEncoder::new(Vec::new(), Compression::fast()));
                *out = finished.finish().map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(more)
}

/// Reads up to `max` records of one job from `from` into the page:
/// answers how many were read and whether the job has no more.
fn give(
    daemon: &Daemon,
    reading: &mut Reading,
    seq: i64,
    key: &str,
    from: u64,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(u64, bool), String> {
    let mut read = 0;
    let mut failure = None;
    let kind = reading.kind;
    let more = daemon
        .read_records(seq, kind, from, max, &mut |record| {
            read += 1;
            if reading.left == Some(0) {
                return false;
            }
            if !reading.in_window(record.ts) {
                return true;
            }
            // JSON lines as stored, `_key` and `_ts` spliced in: the common
            // read costs no parsing.
            if reading.verbatim && record.json.starts_with('{') {
                out.push(b'{');
                let mut first = true;
                if reading.with_key {
                    out.extend_from_slice(
                        format!("\"_key\":\"{key}/{}\"", record.index).as_bytes(),
                    );
                    first = false;
                }
                if reading.with_ts {
                    if !first {
                        out.push(b',');
                    }
                    out.extend_from_slice(format!("\"_ts\":{}", record.ts).as_bytes());
                    first = false;
                }
                let rest = &record.json[1..];
                if !first && rest != "}" {
                    out.push(b',');
                }
                out.extend_from_slice(rest.as_bytes());
                out.push(b'\n');
                if let Some(left) = &mut reading.left {
                    *left -= 1;
                }
                return true;
            }
            let record_key = reading.with_key.then(|| format!("{key}/{}", record.index));
            let ts = reading.with_ts.then_some(record.ts);
            if reading.filters.is_empty() {
                match reading.encoder.record_text(
                    record.json,
                    record_key.as_deref(),
                    ts,
                    reading.nodata,
                    out,
                ) {
                    Ok(true) => {
                        if let Some(left) = &mut reading.left {
                            *left -= 1;
                        }
                        return true;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        failure = Some(error.to_string());
                        return false;
                    }
                }
            }
            let value: Value = match serde_json::from_str(record.json) {
                Ok(value) => value,
                Err(error) => {
                    failure = Some(error.to_string());
                    return false;
                }
            };
            if !reading.filters.is_empty()
                && !value
                    .as_object()
                    .is_some_and(|fields| filter::all_match(&reading.filters, fields))
            {
                return true;
            }
            let value = with_meta(value, record_key, ts, reading.nodata);
            reading.encoder.record(&value, out);
            if let Some(left) = &mut reading.left {
                *left -= 1;
            }
            true
        })
        .map_err(|error| error.to_string())?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    Ok((read, !more || reading.indices.is_some()))
}

/// `POST …/P/S/J[?start=N]`: JSON lines, maybe gzip-encoded.
fn add(
    daemon: &Daemon,
    request: &mut CloudRequest,
    kind: DataKind,
    job: &Job,
) -> CloudResult<HttpResponse> {
    let start = match request.number("start")? {
        Some(start) if start < 0 => {
            return Err(CloudError::BadRequest(format!("bad start {start}")));
        }
        start => start.map(|start| start as u64),
    };
    daemon.add_records(job, kind, start, &request.body)?;
    Ok(written())
}

/// `GET …/J/stats`.
fn stats(daemon: &Daemon, kind: DataKind, job: &Job) -> CloudResult<HttpResponse> {
    let stats = daemon.record_stats(job, kind)?;
    Ok(json_value(&json!({
        "counts": stats.counts,
        "totals": {"input_values": stats.input_values, "input_bytes": stats.input_bytes},
    })))
}

/// `GET …/J/N`: the record at index N.
fn one(
    daemon: &Arc<Daemon>,
    request: &mut CloudRequest,
    kind: DataKind,
    job: &Job,
    index: u64,
) -> CloudResult<HttpResponse> {
    let meta = request.all("meta")?;
    let mut found = None;
    daemon.read_records(job.seq, kind, index, 1, &mut |record| {
        if record.index == index {
            found = serde_json::from_str::<Value>(record.json).ok();
            // `meta` as a listing gives it, for the objects it can go in.
            if let Some(Value::Object(fields)) = &mut found {
                if meta.iter().any(|name| name == "_key") {
                    fields.insert("_key".into(), format!("{}/{index}", job.key()).into());
                }
                if meta.iter().any(|name| name == "_ts") {
                    fields.insert("_ts".into(), record.ts.into());
                }
            }
        }
        false
    })?;
    let Some(record) = found else {
        return Err(CloudError::NotFound(format!(
            "no record {}/{index}",
            job.key()
        )));
    };
    let params = FormatParams::take(request)?;
    let mut encoder = Encoder::new(Format::of_request(&request.headers, &params)?);
    let content_type = encoder.format().content_type();
    let mut out = Vec::new();
    encoder.head(&mut out);
    encoder.record(&record, &mut out);
    encoder.tail(&mut out);
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(body::full(out))
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_data_paths_are_told_from_scrapyd_files() {
        assert!(is_data_path("/items/2222222/1/3"));
        assert!(is_data_path("/items/7"));
        assert!(is_data_path("/logs/7/1"));
        assert!(is_data_path("/logs/7/1/3/12"));
        assert!(is_data_path("/items/7/1/3/stats"));
        assert!(!is_data_path("/logs/7/"));
        assert!(!is_data_path("/logs/myproject"));
        assert!(!is_data_path("/logs/7/myspider/abc.log"));
        assert!(!is_data_path("/items/p/s/j.jl"));
        // Below a numeric P/S/J: Cloud's, even when not a record's place.
        assert!(is_data_path("/items/7/1/3/-1"));
        assert!(is_data_path("/items/7/1/3/abc"));
        assert!(is_data_path("/items/7/1/3/2/3"));
        assert!(is_data_path("/items/7/1/3/"));
        assert!(!is_data_path("/items/7/1/"));
        assert!(!is_data_path("/items/7/s/3/2"));
    }
}
