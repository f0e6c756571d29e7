//! Job listings written from the store's rows: `listjobs.json` here, the
//! `/jobs` page in `pages`.
//!
//! A listing is read from one snapshot of the store, so that a job that is
//! launched or finishes meanwhile shows once, in the section it was in, as
//! in Scrapyd. A snapshot must not last as long as a slow client takes to
//! read (it would hold the WAL back), so the listing is written whole to
//! a spool first: in memory up to [`SPOOL_MEMORY`], beyond that in a
//! deleted file beside the database. However long the queue, the daemon
//! holds one page of rows and at most that much of the answer, and the
//! answer carries its length, as Scrapyd's does. A spool is sent a chunk
//! at a time and lives until its last chunk is taken or its client is cut
//! off; all of them together are kept near [`SPOOL_BUDGET`], so that
//! clients that ask and never read fill neither memory nor the disk.

use std::io::{Seek, Write};
use std::sync::{Arc, Mutex};

use tempfile::{SpooledData, SpooledTempFile};

use http_body_util::BodyExt;
use hyper::Method;

use super::body::{self, Body, PAGE_BYTES};
use crate::clock;
use crate::daemon::{Daemon, DaemonError, DaemonResult, JobListing};
use crate::pyjson;
use crate::store::{self, JobSnapshot, JobView};

/// Rows read from the store at once.
const PAGE_ROWS: usize = 512;

/// How much of a listing is kept in memory before it moves to a file: a
/// queue of some 6,000 jobs, more than most nodes ever list.
const SPOOL_MEMORY: usize = 1 << 20;

/// How many bytes the spools of all listings not yet sent may hold in
/// all, about: a new listing waits while they hold more, so they go past
/// it by one listing at most. Some fifty listings of a 30,000-job queue.
const SPOOL_BUDGET: u64 = 256 << 20;

/// One listing is written at a time: they share one long-read connection.
static LISTING_TURN: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// The bytes held by spools, and their release.
struct SpoolBudget {
    held: Mutex<u64>,
    released: tokio::sync::Notify,
}

/// One for the process: every daemon's listings share one disk and memory.
static SPOOLS: SpoolBudget = SpoolBudget {
    held: Mutex::new(0),
    released: tokio::sync::Notify::const_new(),
};

impl SpoolBudget {
    fn held(&self) -> std::sync::MutexGuard<'_, u64> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until the spools hold less than the budget.
    async fn room(&'static self) {
        loop {
            let released = self.released.notified();
            if *self.held() < SPOOL_BUDGET {
                return;
            }
            released.await;
        }
    }

    fn take(&'static self, bytes: u64) -> SpoolShare {
        *self.held() += bytes;
        SpoolShare(bytes)
    }
}

/// A spool's bytes against the budget, given back when dropped.
struct SpoolShare(u64);

impl Drop for SpoolShare {
    fn drop(&mut self) {
        *SPOOLS.held() -= self.0;
        SPOOLS.released.notify_waiters();
    }
}

/// How one kind of listing writes its parts. Sections come in the order
/// pending, running, finished.
pub trait ListingFormat: Send + 'static {
    /// Whether [`row`](Self::row) writes a pending job from its stored
    /// entry and priority alone (see [`crate::store::write_pending_entry`]).
    const PENDING_ENTRIES: bool = false;
    fn head(&mut self, out: &mut String);
    fn section_start(&mut self, section: usize, out: &mut String);
    /// One job; `first` when it is the first of its section.
    fn row(
        &mut self,
        daemon: &Daemon,
        section: usize,
        job: &JobView,
        first: bool,
        out: &mut String,
    );
    fn section_end(&mut self, section: usize, out: &mut String);
    fn tail(&mut self, out: &mut String);
}

/// Where the writing of a listing stands.
struct Progress<F> {
    format: F,
    listing: JobListing,
    section: usize,
    /// Rows written in the current section so far.
    rows: usize,
    /// Whether the current section's start is written.
    opened: bool,
    started: bool,
}

impl<F: ListingFormat> Progress<F> {
    fn new(mut listing: JobListing, format: F) -> Progress<F> {
        if F::PENDING_ENTRIES {
            listing.sections[0].entries_only();
        }
        Progress {
            format,
            listing,
            section: 0,
            rows: 0,
            opened: false,
            started: false,
        }
    }
}

/// A listing written whole, ready to be sent.
pub struct Spooled {
    spool: SpooledTempFile,
    length: u64,
    share: SpoolShare,
}

impl Spooled {
    /// The answer to `method` and the length it says: for `HEAD` no body
    /// (the spool goes at once), for `GET` the spool's.
    pub fn into_answer(self, method: &Method) -> (Body, u64) {
        let length = self.length;
        if method == Method::HEAD {
            (body::empty(), length)
        } else {
            (self.into_body(), length)
        }
    }

    /// The answer, read from the spool a chunk at a time. The spool's
    /// share of the budget goes with the body.
    fn into_body(self) -> Body {
        let body = match self.spool.into_inner() {
            SpooledData::InMemory(cursor) => body::in_chunks(cursor.into_inner().into()),
            SpooledData::OnDisk(file) => {
                body::file_range(tokio::fs::File::from_std(file), 0, self.length)
            }
        };
        let share = self.share;
        body.map_frame(move |frame| {
            let _held_until_sent = &share;
            frame
        })
        .boxed_unsync()
    }
}

/// Writes the whole listing to a spool, from one snapshot of the store.
pub async fn spool<F: ListingFormat>(
    daemon: Arc<Daemon>,
    listing: JobListing,
    format: F,
) -> Result<Spooled, String> {
    let mut progress = Progress::new(listing, format);
    // Listings take turns here rather than on the long-read connection's
    // lock: a crowd of them waits without holding the blocking threads
    // that schedules wait for their commits on. The turn goes with the
    // writing, which goes on if this request is dropped meanwhile.
    let turn = LISTING_TURN
        .acquire()
        .await
        .map_err(|error| error.to_string())?;
    SPOOLS.room().await;
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let folder = &daemon.config.dbs_dir;
        let spool_error = |source| DaemonError::Io {
            path: folder.clone(),
            source,
        };
        let mut spool = SpooledTempFile::new_in(SPOOL_MEMORY, folder);
        let length = daemon.read_listing(|snapshot| {
            let mut page = String::with_capacity(PAGE_BYTES + PAGE_BYTES / 4);
            let mut length = 0;
            loop {
                let more = write_page(&daemon, snapshot, &mut progress, &mut page)?;
                spool.write_all(page.as_bytes()).map_err(spool_error)?;
                length += page.len() as u64;
                page.clear();
                if !more {
                    return Ok(length);
                }
            }
        });
        let length = length.map_err(|error| error.to_string())?;
        spool
            .rewind()
            .map_err(|source| spool_error(source).to_string())?;
        let share = SPOOLS.take(length);
        Ok(Spooled {
            spool,
            length,
            share,
        })
    })
    .await
    .map_err(|error| error.to_string())?
}

/// Writes about [`PAGE_BYTES`] of the listing; answers whether more follow.
fn write_page<F: ListingFormat>(
    daemon: &Daemon,
    snapshot: &JobSnapshot,
    progress: &mut Progress<F>,
    out: &mut String,
) -> DaemonResult<bool> {
    if !progress.started {
        progress.started = true;
        progress.format.head(out);
    }
    while out.len() < PAGE_BYTES {
        let section = progress.section;
        let Some(cursor) = progress.listing.sections.get_mut(section) else {
            progress.format.tail(out);
            return Ok(false);
        };
        if !progress.opened {
            progress.opened = true;
            progress.format.section_start(section, out);
        }
        let (format, rows) = (&mut progress.format, &mut progress.rows);
        snapshot.read_jobs(cursor, PAGE_ROWS, &mut |job| {
            format.row(daemon, section, job, *rows == 0, out);
            *rows += 1;
        })?;
        if cursor.is_done() {
            progress.format.section_end(section, out);
            progress.section += 1;
            progress.rows = 0;
            progress.opened = false;
        }
    }
    Ok(true)
}

/// `listjobs.json`: `{"pending": […], "running": […], "finished": […],
/// "status": "ok", "node_name": …}` in Python's `json.dumps` bytes.
pub struct ListJobsJson {
    pub node_name: String,
}

const SECTION_NAMES: [&str; 3] = ["pending", "running", "finished"];

impl ListingFormat for ListJobsJson {
    const PENDING_ENTRIES: bool = true;

    fn head(&mut self, out: &mut String) {
        out.push('{');
    }

    fn section_start(&mut self, section: usize, out: &mut String) {
        if section > 0 {
            out.push_str(", ");
        }
        pyjson::write_string(out, SECTION_NAMES[section]);
        out.push_str(": [");
    }

    fn row(
        &mut self,
        daemon: &Daemon,
        section: usize,
        job: &JobView,
        first: bool,
        out: &mut String,
    ) {
        if !first {
            out.push_str(", ");
        }
        if section == 0 {
            // A queue can be long: its entries are stored text, rendered
            // when each job was scheduled.
            match job.pending_entry {
                Some(entry) => out.push_str(entry),
                None => store::write_pending_entry(out, job),
            }
            out.push_str(", \"priority\": ");
            pyjson::write_float(out, job.priority);
            out.push('}');
            return;
        }
        let mut object = JsonObject::new(out);
        object.string("id", job.job_id);
        object.string("project", job.project);
        object.string("spider", job.spider);
        match section {
            1 => {
                object.optional_int("pid", job.pid.map(i64::from));
                object.optional_string(
                    "start_time",
                    job.start_time.map(clock::format_with_micros).as_deref(),
                );
                write_file_urls(&mut object, daemon, job);
                object.float("priority", job.priority);
            }
            _ => {
                // A job that never started (its version vanished) ran for
                // no time: start and end are the same instant.
                let end = job.end_time.unwrap_or(job.pending_time);
                let start = job.start_time.unwrap_or(end);
                object.string("start_time", &clock::format_with_micros(start));
                object.string("end_time", &clock::format_with_micros(end));
                write_file_urls(&mut object, daemon, job);
                object.float("priority", job.priority);
                object.optional_string("close_reason", job.close_reason);
                object.optional_int("exit_code", job.exit_code.map(i64::from));
            }
        }
        object.end();
    }

    fn section_end(&mut self, _section: usize, out: &mut String) {
        out.push(']');
    }

    fn tail(&mut self, out: &mut String) {
        out.push_str(", \"status\": \"ok\", ");
        pyjson::write_string(out, "node_name");
        out.push_str(": ");
        pyjson::write_string(out, &self.node_name);
        out.push_str("}\n");
    }
}

/// `log_url` and `items_url`, each `null` when the file does not exist.
fn write_file_urls(object: &mut JsonObject, daemon: &Daemon, job: &JobView) {
    let (log, items) = daemon.job_files(job.project, job.spider, job.job_id);
    let url = |exists: bool, root: &str, extension: &str| {
        exists.then(|| {
            format!(
                "/{root}/{}/{}/{}.{extension}",
                job.project, job.spider, job.job_id
            )
        })
    };
    object.optional_string("log_url", url(log.is_some(), "logs", "log").as_deref());
    object.optional_string("items_url", url(items.is_some(), "items", "jl").as_deref());
}

/// A JSON object written member by member, Python-style.
struct JsonObject<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> JsonObject<'a> {
    fn new(out: &'a mut String) -> JsonObject<'a> {
        out.push('{');
        JsonObject { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push_str(", ");
        }
        self.empty = false;
        pyjson::write_string(self.out, key);
        self.out.push_str(": ");
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        pyjson::write_string(self.out, value);
    }

    fn optional_string(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(value) => self.string(key, value),
            None => {
                self.key(key);
                self.out.push_str("null");
            }
        }
    }

    fn optional_int(&mut self, key: &str, value: Option<i64>) {
        self.key(key);
        match value {
            Some(value) => {
                use std::fmt::Write;
                let _ = write!(self.out, "{value}");
            }
            None => self.out.push_str("null"),
        }
    }

    fn float(&mut self, key: &str, value: f64) {
        self.key(key);
        pyjson::write_float(self.out, value);
    }

    fn end(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spool_in_memory_is_sent_in_chunks_and_counted_until_then() {
        let length = 200_000;
        let mut spool = SpooledTempFile::new(SPOOL_MEMORY);
        spool.write_all(&vec![b'x'; length]).unwrap();
        spool.rewind().unwrap();
        let spooled = Spooled {
            spool,
            length: length as u64,
            share: SPOOLS.take(length as u64),
        };
        let mut body = spooled.into_body();
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            // Still counted while a chunk is left to take.
            assert!(*SPOOLS.held() >= length as u64);
            sizes.push(frame.unwrap().into_data().unwrap().len());
        }
        assert_eq!(sizes.iter().sum::<usize>(), length);
        assert!(sizes.len() > 1 && sizes.iter().all(|size| *size <= 64 * 1024));
    }

    #[tokio::test]
    async fn a_listing_waits_while_unsent_spools_hold_the_budget() {
        let held = SPOOLS.take(SPOOL_BUDGET);
        let waiting = tokio::spawn(SPOOLS.room());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("room once the spool is sent")
            .unwrap();
    }
}
