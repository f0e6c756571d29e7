//! The crawl frontier (Scrapy Cloud's HCF): per project, named frontiers
//! of named slots, each slot a set of fingerprints it has seen and a queue
//! of requests to make.
//!
//! - Adding requests `{fp, qdata?, fdata?, p?}` keeps only those whose
//!   fingerprint the slot has never seen (the answer's `newcount`); the
//!   fingerprint stays, with its `fdata`, until the slot is deleted.
//! - The new requests of one upload are queued in batches of at most
//!   [`BATCH_REQUESTS`], one priority each. A batch never changes: its id
//!   names the same requests until it is deleted, whatever is added
//!   meanwhile, and every reader sees the same batches.
//! - Reading the queue does not consume it: batches come lowest `p` first,
//!   then oldest, until the consumer deletes them by id. As in Scrapy Cloud,
//!   a slot is meant to have one consumer at a time.

use serde_json::Value;

use crate::daemon::{Daemon, DaemonError, DaemonResult};
use crate::store::{Batch, NewRequests, Project, RetryMark, SlotAddress};

/// The most requests in one batch, as in Scrapy Cloud.
pub const BATCH_REQUESTS: usize = 100;

/// The largest request line a slot takes (as a collection value).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The longest frontier or slot name.
const MAX_NAME_BYTES: usize = 1024;

/// Batches read from the store at once: a batch is up to 100 requests, a
/// page of the answer (64 KiB) holds a handful.
const BATCHES_PER_READ: usize = 16;

/// Fingerprints read from the store at once.
const FINGERPRINTS_PER_READ: usize = 256;

/// Where a read of a slot's queue stands between two pages of its answer.
#[derive(Debug)]
pub struct BatchCursor {
    /// `None`: the slot does not exist, the queue is empty.
    slot_id: Option<i64>,
    /// The last batch given: its priority and id.
    after: Option<(f64, i64)>,
    /// Requests still wanted (`mincount`); `None`: every batch.
    wanted: Option<usize>,
}

/// Where a listing of a slot's fingerprints stands.
#[derive(Debug)]
pub struct FingerprintCursor {
    slot_id: Option<i64>,
    after: Option<String>,
}

impl Daemon {
    /// Parses requests to add (JSON lines `{"fp", "qdata"?, "fdata"?,
    /// "p"?}`), one line at a time into [`NewRequests`]: a line's `Value`
    /// is gone before the next one is read, so a body of a million tiny
    /// requests costs their texts and a few numbers each. Nothing is added
    /// when one of them is wrong.
    pub fn parse_frontier_requests(body: &[u8]) -> DaemonResult<NewRequests> {
        let mut requests = NewRequests::default();
        for line in body.split(|byte| *byte == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if line.len() > MAX_REQUEST_BYTES {
                return Err(DaemonError::TooLarge(format!(
                    "a request of {} bytes, more than the {MAX_REQUEST_BYTES} a slot takes",
                    line.len()
                )));
            }
            let bad = |what: &str| DaemonError::BadRequest(format!("invalid request: {what}"));
            let Value::Object(mut fields) = crate::record::parse_value_bytes(line)
                .map_err(|error| bad(&format!("not JSON ({error})")))?
            else {
                return Err(bad("a request is a JSON object with a fingerprint fp"));
            };
            let fp = match fields.remove("fp") {
                Some(Value::String(fp)) if !fp.is_empty() => fp,
                _ => return Err(bad("fp must be a non-empty string")),
            };
            let priority = match fields.remove("p") {
                None | Some(Value::Null) => 0.0,
                Some(Value::Number(number)) => number.as_f64().unwrap_or(0.0),
                Some(_) => return Err(bad("p must be a number")),
            };
            let qdata = fields.remove("qdata").unwrap_or(Value::Null);
            let fdata = fields
                .remove("fdata")
                .filter(|fdata| !fdata.is_null())
                .map(|fdata| fdata.to_string());
            // Rendered here, off the writer thread, as batches list it.
            let entry = format!("[{},{qdata}]", Value::from(fp.as_str()));
            requests.push(&fp, fdata.as_deref(), priority, &entry);
        }
        Ok(requests)
    }

    /// A slot of a frontier of `project`, names checked.
    pub fn frontier_slot(
        &self,
        project: &Project,
        frontier: &str,
        slot: &str,
    ) -> DaemonResult<SlotAddress> {
        check_name("frontier", frontier)?;
        check_name("slot", slot)?;
        Ok(SlotAddress {
            project_id: project.id,
            frontier: frontier.to_string(),
            slot: slot.to_string(),
        })
    }

    /// Adds requests to a slot; answers how many had a fingerprint the slot
    /// had never seen (those are queued). With a `mark` (a batch upload's
    /// `start` and body), an upload already applied answers what it
    /// answered then, and changes nothing.
    pub fn add_frontier_requests(
        &self,
        slot: &SlotAddress,
        requests: NewRequests,
        mark: Option<RetryMark>,
    ) -> DaemonResult<u64> {
        if requests.is_empty() {
            return Ok(0);
        }
        Ok(self
            .shared()
            .add_requests(slot.clone(), requests, BATCH_REQUESTS, mark)?)
    }

    /// Starts reading a slot's queue: every batch, or (`mincount`) batches
    /// until they hold at least that many requests.
    pub fn start_batch_read(
        &self,
        slot: &SlotAddress,
        mincount: Option<usize>,
    ) -> DaemonResult<BatchCursor> {
        Ok(BatchCursor {
            slot_id: self.shared().slot_id(slot)?,
            after: None,
            // At least nothing: no minimum, every batch.
            wanted: mincount.filter(|count| *count > 0),
        })
    }

    /// Gives the next batches of a read to `visit` until it answers `false`
    /// (its page is full); answers whether the read has more.
    pub fn read_batches(
        &self,
        cursor: &mut BatchCursor,
        visit: &mut dyn FnMut(&Batch) -> bool,
    ) -> DaemonResult<bool> {
        let Some(slot_id) = cursor.slot_id else {
            return Ok(false);
        };
        loop {
            let batches = self
                .shared()
                .batches(slot_id, cursor.after, BATCHES_PER_READ)?;
            let last_read = batches.len() < BATCHES_PER_READ;
            for batch in &batches {
                if cursor.wanted == Some(0) {
                    return Ok(false);
                }
                cursor.after = Some((batch.priority, batch.id));
                if let Some(wanted) = &mut cursor.wanted {
                    *wanted = wanted.saturating_sub(batch.size);
                }
                if !visit(batch) {
                    return Ok(cursor.wanted != Some(0));
                }
            }
            if last_read {
                return Ok(false);
            }
        }
    }

    /// Deletes batches of a slot by id (as [`batch_id`] writes them);
    /// unknown ids are fine.
    pub fn delete_batches(&self, slot: &SlotAddress, ids: &[String]) -> DaemonResult<()> {
        // An id this daemon never wrote names no batch.
        let ids: Vec<i64> = ids
            .iter()
            .filter_map(|id| i64::from_str_radix(id, 16).ok())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        Ok(self.shared().delete_batches(slot.clone(), ids)?)
    }

    pub fn start_fingerprint_read(&self, slot: &SlotAddress) -> DaemonResult<FingerprintCursor> {
        Ok(FingerprintCursor {
            slot_id: self.shared().slot_id(slot)?,
            after: None,
        })
    }

    /// Gives the next fingerprints of a slot, in lexicographic order, with
    /// their fdata (JSON), to `visit` until it answers `false`; answers
    /// whether there are more.
    pub fn read_fingerprints(
        &self,
        cursor: &mut FingerprintCursor,
        visit: &mut dyn FnMut(&str, Option<&str>) -> bool,
    ) -> DaemonResult<bool> {
        let Some(slot_id) = cursor.slot_id else {
            return Ok(false);
        };
        loop {
            let rows = self.shared().fingerprints(
                slot_id,
                cursor.after.as_deref(),
                FINGERPRINTS_PER_READ,
            )?;
            let last_read = rows.len() < FINGERPRINTS_PER_READ;
            for (fp, fdata) in rows {
                let more = visit(&fp, fdata.as_deref());
                cursor.after = Some(fp);
                if !more {
                    return Ok(true);
                }
            }
            if last_read {
                return Ok(false);
            }
        }
    }

    /// The project's frontiers (those with a slot), sorted.
    pub fn frontiers(&self, project: &Project) -> DaemonResult<Vec<String>> {
        Ok(self.shared().frontiers(project.id)?)
    }

    /// A frontier's slots, sorted.
    pub fn frontier_slots(&self, project: &Project, frontier: &str) -> DaemonResult<Vec<String>> {
        check_name("frontier", frontier)?;
        Ok(self.shared().slots(project.id, frontier)?)
    }

    /// Deletes a slot with its fingerprints and queue; an unknown slot is
    /// fine.
    pub fn delete_frontier_slot(&self, slot: &SlotAddress) -> DaemonResult<()> {
        Ok(self.shared().delete_slot(slot.clone())?)
    }
}

/// A batch's id as the API shows it: 18 hex digits, like Scrapy Cloud's.
pub fn batch_id(batch: &Batch) -> String {
    format!("{:018x}", batch.id)
}

fn check_name(what: &str, name: &str) -> DaemonResult<()> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(DaemonError::BadRequest(format!(
            "a {what} name is 1 to {MAX_NAME_BYTES} bytes long"
        )));
    }
    Ok(())
}
