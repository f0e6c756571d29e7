//! Collections: Scrapy Cloud's per-project key-value stores, which jobs
//! and scripts share. A record is a JSON object with a `_key`; the store
//! keeps the object without it, under that key, with the time it was
//! written. Reads go in key order (bytes of UTF-8, so code point order).
//!
//! The four types, as far as the API lets anyone tell them apart:
//!
//! - `s` (store): a key holds its last value.
//! - `cs` (cached store): the same, but a record expires
//!   [`CACHE_LIFETIME_MS`] (30 days) after it was written: reads no longer
//!   see it and the next write to a cached collection removes it.
//! - `vs` (versioned store): Scrapy Cloud keeps a few older copies of each
//!   record, but its API only ever reads the latest, so here it behaves as
//!   `s`.
//! - `vcs` (versioned cached store): as `cs`.
//!
//! Each `(type, name)` is its own collection, created by its first write
//! and listed until it is truncated, even when emptied.

use std::ops::Bound;

use serde_json::{Map, Value};

use crate::clock::{self, now};
use crate::cloud::millis;
use crate::daemon::{Daemon, DaemonError, DaemonResult};
use crate::filter::{self, Filter};
use crate::store::{CollectionKind, CollectionRecords, CollectionRow, Project, RetryMark};

/// The largest value (the record without `_key`, as JSON) a collection
/// takes, as in Scrapy Cloud.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// How long a record of a cached type lives after it was written: a month,
/// as Scrapy Cloud says.
pub const CACHE_LIFETIME_MS: i64 = 30 * 24 * 3600 * 1000;

/// Scrapy Cloud's words for a record without a usable `_key`.
const MISSING_KEY: &str = "Error parsing data, missing value for _key field";

/// Rows read from the store at once during a scan.
const ROWS_PER_READ: usize = 256;

/// A collection of a project, by type and name.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    pub project_id: i64,
    pub kind: CollectionKind,
    pub name: String,
}

/// A record as read: its key, when it was written (milliseconds) and its
/// value (without `_key`).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: String,
    pub ts: i64,
    pub value: Map<String, Value>,
}

/// What a scan selects; every part is optional and they combine (AND).
#[derive(Debug, Clone, Default)]
pub struct ScanQuery {
    /// Only these keys.
    pub keys: Vec<String>,
    /// Only keys starting with one of these.
    pub prefixes: Vec<String>,
    /// At most this many records per prefix.
    pub prefix_count: Option<usize>,
    /// Keys from this one on.
    pub start: Option<String>,
    /// Keys after this one.
    pub start_after: Option<String>,
    /// Written at or after this time (milliseconds).
    pub since: Option<i64>,
    /// Written before this time (milliseconds).
    pub until: Option<i64>,
    /// At most this many records in all.
    pub count: Option<usize>,
    pub filters: Vec<Filter>,
}

/// Where a scan stands between two pages of its answer. It holds no
/// database resource: each page is read afresh after the last key seen, so
/// a slow reader costs nothing but this.
#[derive(Debug)]
pub struct ScanCursor {
    /// `None`: the collection does not exist, the scan is empty.
    collection_id: Option<i64>,
    query: ScanQuery,
    ranges: Vec<KeyRange>,
    /// The range being read, an index into `ranges`.
    range: usize,
    /// The last key read in the current range.
    after: Option<String>,
    /// Records answered in the current range (for `prefix_count`).
    taken_in_range: usize,
    /// Records still wanted in all (`count`).
    left: Option<usize>,
    /// Rows looked at, whether they passed or not.
    scanned: u64,
    /// Whether records' values are needed (not when only counting without
    /// filters), so a plain count parses nothing.
    needs_values: bool,
    /// The scan's moment: records expiring later are visible all through it.
    now: i64,
}

/// A stretch of keys a scan reads in order.
#[derive(Debug, Clone)]
enum KeyRange {
    /// One key.
    Key(String),
    /// Every key with this prefix.
    Prefix(String),
    /// Every key.
    All,
}

impl ScanCursor {
    /// How many rows the scan looked at so far.
    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// The lower bound of every range: `start` or `start_after`, whichever
    /// is further on.
    fn lower_bound(&self) -> Bound<&str> {
        match (&self.query.start, &self.query.start_after) {
            (Some(start), Some(after)) if after >= start => Bound::Excluded(after),
            (Some(start), _) => Bound::Included(start),
            (None, Some(after)) => Bound::Excluded(after),
            (None, None) => Bound::Unbounded,
        }
    }

    fn below_lower_bound(&self, key: &str) -> bool {
        match self.lower_bound() {
            Bound::Included(start) => key < start,
            Bound::Excluded(after) => key <= after,
            Bound::Unbounded => false,
        }
    }

    /// Where reading the current range goes on from.
    fn read_from(&self, range_start: Option<&str>) -> Bound<String> {
        if let Some(after) = &self.after {
            return Bound::Excluded(after.clone());
        }
        let lower = self.lower_bound();
        match (range_start, lower) {
            (None, lower) => lower.map(str::to_string),
            (Some(prefix), Bound::Unbounded) => Bound::Included(prefix.to_string()),
            (Some(prefix), Bound::Included(start)) => Bound::Included(prefix.max(start).into()),
            (Some(prefix), Bound::Excluded(after)) if after >= prefix => {
                Bound::Excluded(after.to_string())
            }
            (Some(prefix), Bound::Excluded(_)) => Bound::Included(prefix.to_string()),
        }
    }

    fn next_range(&mut self) {
        self.range += 1;
        self.after = None;
        self.taken_in_range = 0;
    }

    /// Whether a row passes the time bounds.
    fn in_time(&self, ts: i64) -> bool {
        self.query.since.is_none_or(|since| ts >= since)
            && self.query.until.is_none_or(|until| ts < until)
    }
}

/// What a scan step did with one row.
enum Offer {
    /// Not answered (filtered out); read on.
    Skipped,
    /// Answered; `true` if the visitor wants more in this page.
    Taken(bool),
}

impl Daemon {
    /// Parses records to write (JSON lines, each an object with a string
    /// `_key`) into `(key, value as JSON)`, one line at a time into
    /// [`CollectionRecords`]: a line's `Value` is gone before the next one
    /// is read, so a body of a million tiny records costs their texts and
    /// two offsets each. Nothing is written when one of them is wrong.
    pub fn parse_collection_records(body: &[u8]) -> DaemonResult<CollectionRecords> {
        let mut records = CollectionRecords::default();
        for line in body.split(|byte| *byte == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let record = crate::record::parse_value_bytes(line)
                .map_err(|error| DaemonError::Unparsable(format!("Error parsing data, {error}")))?;
            let Value::Object(mut fields) = record else {
                return Err(DaemonError::Unparsable(
                    "Error parsing data, a record must be a JSON object".into(),
                ));
            };
            let key = match fields.remove("_key") {
                Some(Value::String(key)) if !key.is_empty() => key,
                _ => return Err(DaemonError::Unparsable(MISSING_KEY.into())),
            };
            let value = Value::Object(fields).to_string();
            if value.len() > MAX_VALUE_BYTES {
                return Err(DaemonError::TooLarge(format!(
                    "the value of {key} is {} bytes, more than the {MAX_VALUE_BYTES} a collection takes",
                    value.len()
                )));
            }
            records.push(&key, &value);
        }
        Ok(records)
    }

    /// A collection of `project` by type code (`s`, `cs`, `vs`, `vcs`) and
    /// name (letters, digits and `_`, as the client allows).
    pub fn collection(
        &self,
        project: &Project,
        kind: &str,
        name: &str,
    ) -> DaemonResult<Collection> {
        let kind = CollectionKind::from_code(kind).ok_or_else(|| {
            DaemonError::BadRequest(format!("unknown collection type {kind}: s, cs, vs or vcs"))
        })?;
        check_collection_name(name)?;
        Ok(Collection {
            project_id: project.id,
            kind,
            name: name.to_string(),
        })
    }

    /// Writes records (from [`Daemon::parse_collection_records`]); a key
    /// written before takes the new value. With a `mark` (a batch upload's
    /// `start` and body), an upload already applied is not applied again.
    pub fn set_collection_records(
        &self,
        collection: &Collection,
        records: CollectionRecords,
        mark: Option<RetryMark>,
    ) -> DaemonResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let ts = millis(clock::now());
        let expires = expires(collection.kind).then_some(ts + CACHE_LIFETIME_MS);
        Ok(self.shared().set_records(
            collection.project_id,
            collection.kind,
            collection.name.clone(),
            records,
            ts,
            expires,
            mark,
        )?)
    }

    /// The record of `key`, if the collection has it.
    pub fn collection_record(
        &self,
        collection: &Collection,
        key: &str,
    ) -> DaemonResult<Option<Record>> {
        let found = self.shared().find_record(
            collection.project_id,
            collection.kind,
            &collection.name,
            key,
        )?;
        found
            .filter(|row| visible(row, millis(now())))
            .map(record_of)
            .transpose()
    }

    pub fn delete_collection_records(
        &self,
        collection: &Collection,
        keys: Vec<String>,
    ) -> DaemonResult<()> {
        Ok(self.shared().delete_records(
            collection.project_id,
            collection.kind,
            collection.name.clone(),
            keys,
        )?)
    }

    /// Removes the collections called `name` (every type) with their
    /// records; answers whether there was one.
    pub fn truncate_collection(&self, project: &Project, name: &str) -> DaemonResult<bool> {
        check_collection_name(name)?;
        Ok(self
            .shared()
            .truncate_collections(project.id, name.to_string())?
            > 0)
    }

    /// Every collection of a project: `(name, type)`, by name then type.
    pub fn collections(&self, project: &Project) -> DaemonResult<Vec<(String, CollectionKind)>> {
        Ok(self.shared().collections(project.id)?)
    }

    /// Starts a scan; its records come a page at a time from
    /// [`Daemon::scan_collection`]. `needs_values` false: only counting.
    pub fn start_collection_scan(
        &self,
        collection: &Collection,
        mut query: ScanQuery,
        needs_values: bool,
    ) -> DaemonResult<ScanCursor> {
        let collection_id = self.shared().collection_id(
            collection.project_id,
            collection.kind,
            &collection.name,
        )?;
        query.keys.sort();
        query.keys.dedup();
        query.prefixes.sort();
        query.prefixes.dedup();
        let ranges = if !query.keys.is_empty() {
            let prefixes = &query.prefixes;
            query
                .keys
                .iter()
                .filter(|key| prefixes.is_empty() || prefixes.iter().any(|p| key.starts_with(p)))
                .map(|key| KeyRange::Key(key.clone()))
                .collect()
        } else if !query.prefixes.is_empty() {
            // A prefix that extends another adds nothing but duplicates.
            let mut kept: Vec<String> = Vec::new();
            for prefix in &query.prefixes {
                if !kept
                    .iter()
                    .any(|shorter| prefix.starts_with(shorter.as_str()))
                {
                    kept.push(prefix.clone());
                }
            }
            kept.into_iter().map(KeyRange::Prefix).collect()
        } else {
            vec![KeyRange::All]
        };
        // Filters read the values, even when only counting.
        let needs_values = needs_values || !query.filters.is_empty();
        Ok(ScanCursor {
            collection_id,
            left: query.count,
            query,
            ranges,
            range: 0,
            after: None,
            taken_in_range: 0,
            scanned: 0,
            needs_values,
            now: millis(now()),
        })
    }

    /// Reads on from where `cursor` stands, giving each selected record to
    /// `visit` until it answers `false` (its page is full) or about `rows`
    /// rows were looked at; answers whether the scan has more.
    pub fn scan_collection(
        &self,
        cursor: &mut ScanCursor,
        rows: usize,
        visit: &mut dyn FnMut(Record) -> bool,
    ) -> DaemonResult<bool> {
        let Some(collection_id) = cursor.collection_id else {
            return Ok(false);
        };
        let shared = self.shared();
        let mut looked_at = 0usize;
        while looked_at < rows {
            if cursor.left == Some(0) {
                return Ok(false);
            }
            let Some(range) = cursor.ranges.get(cursor.range).cloned() else {
                return Ok(false);
            };
            let prefix = match &range {
                KeyRange::Key(key) => {
                    cursor.next_range();
                    if cursor.below_lower_bound(key) {
                        continue;
                    }
                    looked_at += 1;
                    let found = shared.collection_record(collection_id, key)?;
                    if let Some(row) = found.filter(|row| visible(row, cursor.now)) {
                        cursor.scanned += 1;
                        if let Offer::Taken(false) = offer(cursor, row, visit)? {
                            return Ok(true);
                        }
                    }
                    continue;
                }
                KeyRange::Prefix(prefix) => Some(prefix.as_str()),
                KeyRange::All => None,
            };
            let from = cursor.read_from(prefix);
            let page = shared.collection_rows(
                collection_id,
                from.as_ref().map(String::as_str),
                ROWS_PER_READ,
            )?;
            let full_page = page.len() == ROWS_PER_READ;
            let mut range_done = !full_page;
            for row in page {
                if prefix.is_some_and(|prefix| !row.key.starts_with(prefix)) {
                    range_done = true;
                    break;
                }
                looked_at += 1;
                cursor.scanned += 1;
                cursor.after = Some(row.key.clone());
                let offered = offer(cursor, row, visit)?;
                if cursor.left == Some(0) {
                    return Ok(false);
                }
                if cursor
                    .query
                    .prefix_count
                    .is_some_and(|most| prefix.is_some() && cursor.taken_in_range >= most)
                {
                    range_done = true;
                    break;
                }
                if let Offer::Taken(false) = offered {
                    return Ok(true);
                }
            }
            if range_done {
                cursor.next_range();
            }
        }
        Ok(true)
    }
}

/// Whether a record is still there at `now` (a cached one expires).
fn visible(row: &CollectionRow, now: i64) -> bool {
    row.expires.is_none_or(|expires| expires > now)
}

/// Gives a row to the visitor if it is visible and passes the time bounds
/// and filters.
fn offer(
    cursor: &mut ScanCursor,
    row: CollectionRow,
    visit: &mut dyn FnMut(Record) -> bool,
) -> DaemonResult<Offer> {
    if !visible(&row, cursor.now) || !cursor.in_time(row.ts) {
        return Ok(Offer::Skipped);
    }
    let record = if cursor.needs_values {
        record_of(row)?
    } else {
        Record {
            key: row.key,
            ts: row.ts,
            value: Map::new(),
        }
    };
    if !filter::all_match(&cursor.query.filters, &record.value) {
        return Ok(Offer::Skipped);
    }
    cursor.taken_in_range += 1;
    if let Some(left) = &mut cursor.left {
        *left -= 1;
    }
    Ok(Offer::Taken(visit(record)))
}

fn record_of(row: CollectionRow) -> DaemonResult<Record> {
    let value = match serde_json::from_str(&row.value).map_err(crate::store::StoreError::from)? {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    Ok(Record {
        key: row.key,
        ts: row.ts,
        value,
    })
}

/// Whether records of this type expire.
fn expires(kind: CollectionKind) -> bool {
    matches!(
        kind,
        CollectionKind::CachedStore | CollectionKind::VersionedCachedStore
    )
}

/// Collection names are letters, digits and `_` (the client's `^\w+$`).
fn check_collection_name(name: &str) -> DaemonResult<()> {
    let good = !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if good {
        Ok(())
    } else {
        Err(DaemonError::BadRequest(format!(
            "invalid collection name {name:?}: letters, digits and _ only"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_records_vanish_when_they_expire() {
        let row = |expires| CollectionRow {
            key: "k".into(),
            ts: 0,
            expires,
            value: "{}".into(),
        };
        assert!(visible(&row(None), i64::MAX));
        assert!(visible(
            &row(Some(CACHE_LIFETIME_MS)),
            CACHE_LIFETIME_MS - 1
        ));
        assert!(!visible(&row(Some(CACHE_LIFETIME_MS)), CACHE_LIFETIME_MS));
    }
}
