//! `collections/P/…`: a project's key-value stores.
//!
//! - `GET collections/P/list`: lines `{"name", "type"}`.
//! - `POST collections/P/delete?name=NAME`: truncate (every type).
//! - `POST collections/P/T/NAME[?start=N]`: write records (JSON lines with
//!   `_key`); `start` comes from batch writers and makes a retry harmless.
//! - `GET collections/P/T/NAME`: scan in key order (`key`*, `prefix`*,
//!   `prefixcount`, `startts`, `endts`, `count`, `start`, `startafter`,
//!   `filter`*, `meta`*), streamed a page at a time.
//! - `GET collections/P/T/NAME/count`: `{"count", "scanned"}`.
//! - `POST collections/P/T/NAME/deleted`: delete keys (lines of strings or
//!   arrays of strings).
//! - `GET collections/P/T/NAME/KEY`: one value, 404 when absent.
//!
//! Reads answer in the format the client asks for (`records`: msgpack for
//! the official client, JSON lines by default, JSON, XML, CSV, text).

use std::sync::Arc;

use hyper::{Method, Response, StatusCode, header};
use serde_json::{Value, json};

use super::records::{Encoder, Format, FormatParams, with_meta};
use super::{
    CloudError, CloudRequest, CloudResult, json_lines, json_value, no_such_method, project,
    retry_mark, written,
};
use crate::collections::{Collection, Record, ScanCursor, ScanQuery};
use crate::daemon::Daemon;
use crate::filter;
use crate::http::HttpResponse;
use crate::http::body::{self, PAGE_BYTES};

/// Rows a page of a scan looks at, at most: a scan whose filter passes
/// almost nothing still answers page by page rather than holding a thread
/// for the whole collection.
const ROWS_PER_PAGE: usize = 4096;

pub fn answer(daemon: &Arc<Daemon>, mut request: CloudRequest) -> CloudResult<HttpResponse> {
    let project = project(daemon, request.segment(1)?)?;
    let rest: Vec<String> = request.segments[2..].to_vec();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let method = request.method.clone();
    match (method, rest.as_slice()) {
        (Method::GET, ["list"]) => {
            let lines: Vec<Value> = daemon
                .collections(&project)?
                .into_iter()
                .map(|(name, kind)| json!({"name": name, "type": kind.code()}))
                .collect();
            Ok(json_lines(lines.iter()))
        }
        (Method::POST, ["delete"]) => {
            let name = request
                .optional("name")?
                .ok_or_else(|| CloudError::BadRequest("'name' parameter is required".into()))?;
            daemon.truncate_collection(&project, &name)?;
            // What Scrapy Cloud answers (recorded); the client ignores it.
            let answer = json!({"status": "success", "deleted": name});
            Ok(Response::builder()
                .status(StatusCode::ACCEPTED)
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .body(body::full(format!("{answer}\n")))
                .unwrap_or_default())
        }
        (Method::POST, [kind, name]) => {
            let collection = daemon.collection(&project, kind, name)?;
            let records = Daemon::parse_collection_records(&request.body)?;
            let mark = retry_mark(&mut request)?;
            daemon.set_collection_records(&collection, records, mark)?;
            Ok(written())
        }
        (Method::GET, [kind, name]) => {
            let collection = daemon.collection(&project, kind, name)?;
            scan(daemon, &mut request, &collection)
        }
        (Method::GET, [kind, name, "count"]) => {
            let collection = daemon.collection(&project, kind, name)?;
            count(daemon, &mut request, &collection)
        }
        (Method::POST, [kind, name, "deleted"]) => {
            let collection = daemon.collection(&project, kind, name)?;
            let keys = request.string_lines("keys to delete")?;
            daemon.delete_collection_records(&collection, keys)?;
            Ok(written())
        }
        (Method::GET, [kind, name, key @ ..]) if !key.is_empty() => {
            let collection = daemon.collection(&project, kind, name)?;
            // A key may hold slashes the client did not escape.
            let key = key.join("/");
            let meta = Meta::of(&mut request)?;
            let format = format_of(&mut request)?;
            let record = daemon
                .collection_record(&collection, &key)?
                .ok_or_else(|| {
                    CloudError::NotFound(format!("no key {key} in {}", collection.name))
                })?;
            let mut encoder = Encoder::new(format);
            let mut out = Vec::new();
            encoder.head(&mut out);
            encoder.record(&meta.apply(record), &mut out);
            encoder.tail(&mut out);
            Ok(Response::builder()
                .header(header::CONTENT_TYPE, encoder.format().content_type())
                .body(body::full(out))
                .unwrap_or_default())
        }
        _ => Err(no_such_method()),
    }
}

/// Which metadata a read adds to each record: `meta=_key`, `meta=_ts`.
#[derive(Debug, Clone, Copy, Default)]
struct Meta {
    key: bool,
    ts: bool,
}

impl Meta {
    fn of(request: &mut CloudRequest) -> CloudResult<Meta> {
        let asked = request.all("meta")?;
        Ok(Meta {
            key: asked.iter().any(|name| name == "_key"),
            ts: asked.iter().any(|name| name == "_ts"),
        })
    }

    /// The record as answered: the metadata asked for, then its fields.
    fn apply(self, record: Record) -> Value {
        let value = Value::Object(record.value);
        if !self.key && !self.ts {
            return value;
        }
        let key = self.key.then_some(record.key);
        with_meta(value, key, self.ts.then_some(record.ts), false)
    }
}

/// The format a read asks for (`format`, CSV's parameters, `Accept`).
fn format_of(request: &mut CloudRequest) -> CloudResult<Format> {
    let params = FormatParams::take(request)?;
    Format::of_request(&request.headers, &params)
}

/// The parameters of a scan (and of `count`).
fn scan_query(request: &mut CloudRequest) -> CloudResult<ScanQuery> {
    let whole = |name: &str, value: Option<i64>| match value {
        Some(number) if number < 0 => Err(CloudError::BadRequest(format!(
            "{name} must not be negative"
        ))),
        other => Ok(other.map(|number| number as usize)),
    };
    let prefix_count = request.number("prefixcount")?;
    let count = request.number("count")?;
    Ok(ScanQuery {
        keys: request.all("key")?,
        prefixes: request.all("prefix")?,
        prefix_count: whole("prefixcount", prefix_count)?,
        start: request.optional("start")?,
        start_after: request.optional("startafter")?,
        since: request.number("startts")?,
        until: request.number("endts")?,
        count: whole("count", count)?,
        filters: filter::parse_all(&request.all("filter")?)?,
    })
}

/// A scan, streamed: each page is read from the database after the last
/// key of the previous one, so memory does not grow with the collection.
fn scan(
    daemon: &Arc<Daemon>,
    request: &mut CloudRequest,
    collection: &Collection,
) -> CloudResult<HttpResponse> {
    let meta = Meta::of(request)?;
    let format = format_of(request)?;
    let query = scan_query(request)?;
    let cursor = daemon.start_collection_scan(collection, query, true)?;
    let content_type = format.content_type();
    let mut encoder = Encoder::new(format);
    let mut started = false;
    let pages = body::paged_bytes(
        Arc::clone(daemon),
        cursor,
        move |daemon, cursor: &mut ScanCursor, out| {
            if !started {
                started = true;
                encoder.head(out);
            }
            let more = daemon
                .scan_collection(cursor, ROWS_PER_PAGE, &mut |record| {
                    encoder.record(&meta.apply(record), out);
                    out.len() < PAGE_BYTES
                })
                .map_err(|error| error.to_string())?;
            if !more {
                encoder.tail(out);
            }
            Ok(more)
        },
    );
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(pages)
        .unwrap_or_default())
}

/// `{"count": n, "scanned": m}`: the records the same scan would answer,
/// and the rows it looked at.
fn count(
    daemon: &Daemon,
    request: &mut CloudRequest,
    collection: &Collection,
) -> CloudResult<HttpResponse> {
    let query = scan_query(request)?;
    let mut cursor = daemon.start_collection_scan(collection, query, false)?;
    let mut counted = 0u64;
    while daemon.scan_collection(&mut cursor, ROWS_PER_PAGE, &mut |_| {
        counted += 1;
        true
    })? {}
    Ok(json_value(
        &json!({"count": counted, "scanned": cursor.scanned()}),
    ))
}
