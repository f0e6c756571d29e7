//! `hcf/P/…`: the crawl frontier.
//!
//! - `GET hcf/P/list`, `GET hcf/P/F/list`: one line, a JSON array of the
//!   frontiers, of a frontier's slots.
//! - `POST hcf/P/F/s/S[?start=N]`: add requests (JSON lines `{fp, qdata?,
//!   fdata?, p?}`), answers `{"newcount": n}`.
//! - `DELETE hcf/P/F/s/S`: delete the slot (fine when absent).
//! - `GET hcf/P/F/s/S/q[?mincount=n]`: batches, lines `{"id", "requests"}`.
//! - `POST hcf/P/F/s/S/q/deleted`: delete batches by id (lines of ids or
//!   arrays of ids).
//! - `GET hcf/P/F/s/S/f`: fingerprints, lines `{"fp"[, "fdata"]}`.
//!
//! Streams are JSON lines whatever the client accepts: the official client
//! reads the frontier only so.

use std::fmt::Write;
use std::sync::Arc;

use hyper::{Method, Response, header};
use serde_json::{Value, json};

use super::{
    CloudError, CloudRequest, CloudResult, json_value, no_such_method, project, retry_mark, written,
};
use crate::daemon::Daemon;
use crate::frontier::{BatchCursor, FingerprintCursor, batch_id};
use crate::http::HttpResponse;
use crate::http::body::{self, PAGE_BYTES};

pub fn answer(daemon: &Arc<Daemon>, mut request: CloudRequest) -> CloudResult<HttpResponse> {
    let project = project(daemon, request.segment(1)?)?;
    let rest: Vec<String> = request.segments[2..].to_vec();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let method = request.method.clone();
    match (method, rest.as_slice()) {
        (Method::GET, ["list"]) => Ok(json_value(&Value::from(daemon.frontiers(&project)?))),
        (Method::GET, [frontier, "list"]) => Ok(json_value(&Value::from(
            daemon.frontier_slots(&project, frontier)?,
        ))),
        (Method::POST, [frontier, "s", slot]) => {
            let slot = daemon.frontier_slot(&project, frontier, slot)?;
            let requests = Daemon::parse_frontier_requests(&request.body)?;
            let mark = retry_mark(&mut request)?;
            let newcount = daemon.add_frontier_requests(&slot, requests, mark)?;
            Ok(json_value(&json!({ "newcount": newcount })))
        }
        (Method::DELETE, [frontier, "s", slot]) => {
            let slot = daemon.frontier_slot(&project, frontier, slot)?;
            daemon.delete_frontier_slot(&slot)?;
            Ok(written())
        }
        (Method::GET, [frontier, "s", slot, "q"]) => {
            let slot = daemon.frontier_slot(&project, frontier, slot)?;
            let mincount = match request.number("mincount")? {
                Some(count) if count < 0 => {
                    return Err(CloudError::BadRequest(
                        "mincount must not be negative".into(),
                    ));
                }
                other => other.map(|count| count as usize),
            };
            let cursor = daemon.start_batch_read(&slot, mincount)?;
            Ok(json_stream(daemon, cursor, write_batches))
        }
        (Method::POST, [frontier, "s", slot, "q", "deleted"]) => {
            let slot = daemon.frontier_slot(&project, frontier, slot)?;
            let ids = request.string_lines("batch ids")?;
            daemon.delete_batches(&slot, &ids)?;
            Ok(written())
        }
        (Method::GET, [frontier, "s", slot, "f"]) => {
            let slot = daemon.frontier_slot(&project, frontier, slot)?;
            let cursor = daemon.start_fingerprint_read(&slot)?;
            Ok(json_stream(daemon, cursor, write_fingerprints))
        }
        _ => Err(no_such_method()),
    }
}

/// A JSON lines answer written a page at a time by `write_page`.
fn json_stream<S, F>(daemon: &Arc<Daemon>, state: S, write_page: F) -> HttpResponse
where
    S: Send + 'static,
    F: FnMut(&Daemon, &mut S, &mut String) -> Result<bool, String> + Send + 'static,
{
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            "application/x-jsonlines; charset=utf-8",
        )
        .body(body::paged(Arc::clone(daemon), state, write_page))
        .unwrap_or_default()
}

/// A page of batches. A batch's requests are stored as the JSON the
/// answer carries, so they are copied, not parsed.
fn write_batches(
    daemon: &Daemon,
    cursor: &mut BatchCursor,
    out: &mut String,
) -> Result<bool, String> {
    daemon
        .read_batches(cursor, &mut |batch| {
            let _ = writeln!(
                out,
                "{{\"id\":\"{}\",\"requests\":{}}}",
                batch_id(batch),
                batch.requests
            );
            out.len() < PAGE_BYTES
        })
        .map_err(|error| error.to_string())
}

fn write_fingerprints(
    daemon: &Daemon,
    cursor: &mut FingerprintCursor,
    out: &mut String,
) -> Result<bool, String> {
    daemon
        .read_fingerprints(cursor, &mut |fp, fdata| {
            out.push_str("{\"fp\":");
            out.push_str(&Value::from(fp).to_string());
            if let Some(fdata) = fdata {
                out.push_str(",\"fdata\":");
                out.push_str(fdata);
            }
            out.push_str("}\n");
            out.len() < PAGE_BYTES
        })
        .map_err(|error| error.to_string())
}
