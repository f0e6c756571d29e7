//! Capture: what a crawl writes, followed into the job data store as it
//! comes, whichever API scheduled it. With the `scrapy` runner a crawl
//! writes Scrapyd's files, its log (Scrapy's format) and its items feed
//! (JSON lines); they are followed like `tail -f`, complete lines only,
//! from offsets committed with the records read, so a restart of the
//! daemon neither loses nor repeats a record. Scrapy's closing stats dump
//! becomes the job's `scrapystats`.
//!
//! What cannot be kept is said in the job's own log: a line of the feed
//! that is not JSON, a record over the size limit, a last line cut short
//! by a crawl that died.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tracing::warn;

use crate::cloud::{MAX_RECORD_BYTES, millis};
use crate::config::Config;
use crate::store::{DataKind, DataStore, Job, MetaChange, NewRecord, PendingAppend, Store};
use crate::{clock, priority, pyliteral, runner};

/// How often a running crawl's files are looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The most bytes read from one file at a time.
const READ_CHUNK: usize = 4 * 1024 * 1024;

/// Lines parsed between two yields of the CPU ([`priority::let_others_run`]):
/// about a tenth of a millisecond of work.
const PARSED_BETWEEN_YIELDS: usize = 128;

/// A followed crawl: tells its follower the crawl has ended, and hears
/// when everything is read.
type Following = (std::sync::mpsc::Sender<()>, watch::Receiver<bool>);

/// Follows running crawls.
pub struct Capture {
    config: Arc<Config>,
    store: Arc<Store>,
    data: Arc<DataStore>,
    /// Per followed job.
    following: Mutex<HashMap<i64, Following>>,
}

/// A file of a crawl and what its lines become.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Log,
    Items,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Log => "log",
            Source::Items => "items",
        }
    }
}

impl Capture {
    pub fn new(config: Arc<Config>, store: Arc<Store>, data: Arc<DataStore>) -> Arc<Capture> {
        Arc::new(Capture {
            config,
            store,
            data,
            following: Mutex::new(HashMap::new()),
        })
    }

    fn following(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Following>> {
        self.following.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts following a crawl's files (just launched, or adopted), on a
    /// thread of its own at bulk work's priority ([`crate::priority`]).
    pub fn begin(self: &Arc<Self>, job: &Job) {
        let (ended_tx, ended_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = watch::channel(false);
        self.following().insert(job.seq, (ended_tx, done_rx));
        let follow = {
            let (capture, job) = (Arc::clone(self), job.clone());
            move || {
                capture.follow(&job, &ended_rx);
                let _ = done_tx.send(true);
            }
        };
        // Without a thread of its own (the system has none to give), the
        // crawl is followed all the same, at the daemon's own priority.
        let work = Arc::new(Mutex::new(Some(follow)));
        let take = |work: &Mutex<Option<_>>| work.lock().unwrap_or_else(|p| p.into_inner()).take();
        let on_thread = Arc::clone(&work);
        let spawned = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                priority::lower_this_thread();
                if let Some(follow) = take(&on_thread) {
                    follow();
                }
            });
        if let Err(error) = spawned {
            warn!(%error, seq = job.seq, "no thread of its own to capture a crawl");
            if let Some(follow) = take(&work) {
                tokio::task::spawn_blocking(follow);
            }
        }
    }

    /// The crawl has ended: reads what is left of its files and waits for
    /// that, so its data is complete when its end is recorded.
    pub async fn finish(&self, seq: i64) {
        let Some((ended, mut done)) = self.following().remove(&seq) else {
            return;
        };
        let _ = ended.send(());
        let _ = done.wait_for(|done| *done).await;
    }

    /// Reads the crawl's files every [`POLL_INTERVAL`] until it has ended,
    /// then to their ends.
    fn follow(&self, job: &Job, ended: &std::sync::mpsc::Receiver<()>) {
        let mut pending_log = PendingLog::default();
        let mut opened = OpenedFiles::default();
        let mut last = false;
        loop {
            let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.poll(job, &mut pending_log, &mut opened, last)
            }));
            if polled.is_err() {
                // A bug, not the crawl's doing: the next poll starts afresh
                // from the committed offsets.
                warn!(seq = job.seq, "capture failed");
                pending_log = PendingLog::default();
            }
            if last {
                return;
            }
            match ended.recv_timeout(POLL_INTERVAL) {
                Ok(()) => last = true,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                // Another follower took the crawl over.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Reads what is new in each file of a crawl; at the end (`last`), to
    /// the end of each file.
    fn poll(&self, job: &Job, pending_log: &mut PendingLog, opened: &mut OpenedFiles, last: bool) {
        // Deleted while its crawl winds down: what it writes now is not kept.
        if self.data.is_deleted(job.seq) {
            if last {
                let _ = std::fs::remove_dir_all(self.config.stream_dir(job.seq));
            }
            return;
        }
        // A crawl run by `start-crawl` writes one event stream.
        let stream = runner::stream_file(&self.config, job.seq);
        if stream.exists() {
            if let Err(error) = self.read_stream(job, &stream, last) {
                warn!(%error, seq = job.seq, "cannot capture the crawl's events");
            }
            if last {
                let _ = std::fs::remove_dir_all(self.config.stream_dir(job.seq));
            }
            return;
        }
        let log = self
            .config
            .logs_dir
            .as_deref()
            .map(|dir| runner::job_file(dir, job, "log"));
        if let Some(path) = log
            && let Err(error) =
                self.read_source(job, Source::Log, opened.log.open(&path), pending_log, last)
        {
            warn!(%error, seq = job.seq, "cannot capture the crawl's log");
        }
        if let Some(path) = self
            .config
            .local_items_dir()
            .map(|dir| runner::job_file(dir, job, "jl"))
        {
            let mut unused = PendingLog::default();
            let file = opened.items.open(&path);
            if let Err(error) = self.read_source(job, Source::Items, file, &mut unused, last) {
                warn!(%error, seq = job.seq, "cannot capture the crawl's items");
            }
        }
    }

    /// Reads one file from its committed offset, chunk by chunk, and
    /// stores what its complete lines make with the new offset. A chunk is
    /// read and parsed while the one before it is being committed.
    fn read_source(
        &self,
        job: &Job,
        source: Source,
        file: Option<&mut std::fs::File>,
        pending_log: &mut PendingLog,
        last: bool,
    ) -> Result<(), String> {
        // Not there yet: the crawl has not written it.
        let Some(file) = file else {
            return Ok(());
        };
        let mut offset = self
            .data
            .capture_offset(job.seq, source.name())
            .map_err(|e| e.to_string())?;
        // The chunk being committed, and the problems to note once it is.
        let mut in_flight: Option<(PendingAppend, Vec<String>)> = None;
        let settle = |in_flight: &mut Option<(PendingAppend, Vec<String>)>| {
            if let Some((pending, problems)) = in_flight.take() {
                pending.wait().map_err(|e| e.to_string())?;
                for problem in problems {
                    self.note(job, &problem);
                }
            }
            Ok::<(), String>(())
        };
        loop {
            let Some(Chunk {
                bytes: chunk,
                at_end,
                mut complete,
            }) = next_chunk(file, offset)?
            else {
                return settle(&mut in_flight);
            };
            // A crawl that died mid-line: its log's last words still count.
            if source == Source::Log && last && at_end {
                complete = chunk.len();
            }
            let (mut records, problems, mut consumed) = match source {
                Source::Items => items_from(
                    &chunk[..complete],
                    last && at_end && complete < chunk.len(),
                    chunk.len() - complete,
                ),
                Source::Log => {
                    let consumed =
                        logs_from(&chunk[..complete], offset, pending_log, last && at_end);
                    (Vec::new(), Vec::new(), consumed)
                }
            };
            // A line (or a log record) longer than a chunk would never be
            // complete: the line is skipped, the record closed where it is.
            if complete == 0 && chunk.len() >= READ_CHUNK {
                consumed = chunk.len() as u64;
                self.note(
                    job,
                    &format!(
                        "a line of the crawl's {} longer than {READ_CHUNK} bytes was skipped",
                        source.name()
                    ),
                );
            } else if source == Source::Log
                && pending_log.committed_offset == offset
                && chunk.len() >= READ_CHUNK
            {
                pending_log.close_open();
                pending_log.committed_offset = offset + consumed;
            }
            let kind = match source {
                Source::Items => DataKind::Items,
                Source::Log => DataKind::Logs,
            };
            if source == Source::Log {
                for record in pending_log.take_ready() {
                    self.keep_stats(job, &record);
                    records.push(NewRecord::new(DataKind::Logs, &record));
                }
            }
            let new_offset = match source {
                Source::Log => pending_log.committed_offset.max(offset),
                Source::Items => offset + consumed,
            };
            settle(&mut in_flight)?;
            let pending = self
                .data
                .append_deferred(
                    job.seq,
                    kind,
                    records,
                    (source.name().to_string(), new_offset),
                    millis(clock::now()),
                )
                .map_err(|e| e.to_string())?;
            in_flight = Some((pending, problems));
            // No progress, or the end of what is there: done for now.
            if new_offset == offset || at_end {
                return settle(&mut in_flight);
            }
            offset = new_offset;
        }
    }

    /// Reads `start-crawl`'s event stream from its committed offset:
    /// `LOG`, `ITM`, `REQ` become records (and the Scrapyd log and items
    /// files get their lines), `STA` a sample and the job's `scrapystats`,
    /// `FIN` the outcome its end is recorded with.
    fn read_stream(&self, job: &Job, path: &Path, last: bool) -> Result<(), String> {
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(_) => return Ok(()),
        };
        loop {
            let offset = self
                .data
                .capture_offset(job.seq, "stream")
                .map_err(|e| e.to_string())?;
            let Some(Chunk {
                bytes: chunk,
                at_end,
                complete,
            }) = next_chunk(&mut file, offset)?
            else {
                return Ok(());
            };
            let mut events = Events::default();
            for line in priority::yielding(split_lines(&chunk[..complete]), PARSED_BETWEEN_YIELDS) {
                events.take(line);
            }
            let mut consumed = complete as u64;
            if last && at_end && complete < chunk.len() {
                events.problems.push(format!(
                    "the crawl's event stream ends with a line cut short ({} bytes): not kept",
                    chunk.len() - complete
                ));
                consumed = chunk.len() as u64;
            } else if complete == 0 && chunk.len() >= READ_CHUNK {
                events.problems.push(format!(
                    "an event longer than {READ_CHUNK} bytes was skipped"
                ));
                consumed = chunk.len() as u64;
            }
            if consumed == 0 {
                return Ok(());
            }
            self.write_scrapyd_files(job, &events);
            if let Some(stats) = events.stats.take() {
                self.store_stats(job, stats);
            }
            let problems = std::mem::take(&mut events.problems);
            let records = |kind: DataKind, values: &[Value]| -> Vec<NewRecord> {
                values
                    .iter()
                    .map(|value| NewRecord::new(kind, value))
                    .collect()
            };
            let batches = vec![
                (DataKind::Logs, records(DataKind::Logs, &events.logs)),
                (DataKind::Items, records(DataKind::Items, &events.items)),
                (
                    DataKind::Requests,
                    records(DataKind::Requests, &events.requests),
                ),
                (
                    DataKind::Samples,
                    records(DataKind::Samples, &events.samples),
                ),
            ];
            self.data
                .append_streams(
                    job.seq,
                    batches,
                    events.outcome.take(),
                    ("stream".into(), offset + consumed),
                    millis(clock::now()),
                )
                .map_err(|e| e.to_string())?;
            for problem in problems {
                self.note(job, &problem);
            }
            if at_end {
                return Ok(());
            }
        }
    }

    /// The Scrapyd files of a `start-crawl` crawl, written from its events:
    /// the log in Scrapy's format, the items feed in JSON lines. Written
    /// before the records are committed, so a crash in between can repeat
    /// lines in the files, never lose them; the records stay exact.
    fn write_scrapyd_files(&self, job: &Job, events: &Events) {
        use std::io::Write;
        let append = |path: PathBuf, text: &str| {
            if text.is_empty() {
                return;
            }
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut file| file.write_all(text.as_bytes()));
            if let Err(error) = written {
                warn!(%error, path = %path.display(), "cannot write a crawl's file");
            }
        };
        if let Some(dir) = self.config.logs_dir.as_deref() {
            let lines: String = events.logs.iter().map(scrapy_log_line).collect();
            append(runner::job_file(dir, job, "log"), &lines);
        }
        if let Some(dir) = self.config.local_items_dir() {
            let mut lines = String::new();
            for item in &events.items {
                let mut item = item.clone();
                if let Value::Object(fields) = &mut item {
                    fields.remove("_type");
                }
                lines.push_str(&item.to_string());
                lines.push('\n');
            }
            append(runner::job_file(dir, job, "jl"), &lines);
        }
    }

    /// Adds a line of the daemon's own to the job's log records.
    fn note(&self, job: &Job, message: &str) {
        let record = json!({"time": millis(clock::now()), "level": 30, "message": format!("[scrapyd-rs] {message}")});
        if let Err(error) = self.data.append(
            job.seq,
            DataKind::Logs,
            None,
            [NewRecord::new(DataKind::Logs, &record)]
                .into_iter()
                .collect(),
            None,
            millis(clock::now()),
        ) {
            warn!(%error, seq = job.seq, "cannot note a capture problem");
        }
    }

    /// How a `start-crawl` crawl said it ended (its `FIN`), once read.
    pub fn crawl_outcome(&self, seq: i64) -> Option<String> {
        self.data.crawl_outcome(seq).unwrap_or_else(|error| {
            warn!(%error, seq, "cannot read the crawl's outcome");
            None
        })
    }

    /// Scrapy's stats dump, seen in the log, becomes `scrapystats`.
    fn keep_stats(&self, job: &Job, record: &Value) {
        let Some(message) = record.get("message").and_then(Value::as_str) else {
            return;
        };
        let Some(dump) = message.strip_prefix("[scrapy.statscollectors] Dumping Scrapy stats:")
        else {
            return;
        };
        if let Some(stats @ Value::Object(_)) = pyliteral::parse(dump.trim()) {
            self.store_stats(job, stats);
        }
    }

    /// The crawl's latest stats become the job's `scrapystats`.
    fn store_stats(&self, job: &Job, stats: Value) {
        let mut set = Map::new();
        set.insert("scrapystats".into(), stats);
        let change = MetaChange::setting(set);
        if let Err(error) = self.store.change_job_meta(job.seq, change) {
            warn!(%error, seq = job.seq, "cannot store the crawl's stats");
        }
    }
}

/// What one read of a followed file brought.
struct Chunk {
    /// Up to [`READ_CHUNK`] bytes from the offset asked for.
    bytes: Vec<u8>,
    /// They reach the file's end (as it was when read).
    at_end: bool,
    /// The length of the complete lines at their start.
    complete: usize,
}

/// Reads the next chunk of a file from `offset`; `None` when there is
/// nothing past it yet.
fn next_chunk(file: &mut std::fs::File, offset: u64) -> Result<Option<Chunk>, String> {
    let length = file.metadata().map_err(|e| e.to_string())?.len();
    if offset >= length {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::with_capacity(READ_CHUNK.min((length - offset) as usize));
    file.take(READ_CHUNK as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    let complete = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |end| end + 1);
    Ok(Some(Chunk {
        at_end: offset + bytes.len() as u64 >= length,
        bytes,
        complete,
    }))
}

/// What one read of an event stream held.
#[derive(Default)]
struct Events {
    logs: Vec<Value>,
    items: Vec<Value>,
    requests: Vec<Value>,
    /// One per `STA`: the time and the stats Scrapy Cloud samples.
    samples: Vec<Value>,
    /// The last `STA`'s stats: the job's `scrapystats`.
    stats: Option<Value>,
    /// `FIN`'s outcome: the job's `close_reason`.
    outcome: Option<String>,
    problems: Vec<String>,
}

/// The stats a job's samples carry, in their order after the time: what
/// Scrapy Cloud's stats collector samples every 30 seconds.
const SAMPLED_STATS: [&str; 5] = [
    "item_scraped_count",
    "response_received_count",
    "scheduler/enqueued",
    "scheduler/dequeued",
    "log_count/ERROR",
];

/// A sample record `[time, value, ...]` from a `STA` event: missing stats
/// count 0.
fn sample(time: Option<&Value>, stats: &Value) -> Value {
    let time = time
        .and_then(Value::as_f64)
        .map_or_else(|| millis(clock::now()), |ms| ms as i64);
    let mut row = vec![Value::from(time)];
    row.extend(
        SAMPLED_STATS
            .iter()
            .map(|name| stats.get(*name).cloned().unwrap_or(Value::from(0))),
    );
    Value::Array(row)
}

impl Events {
    /// One line `CMD {json}`.
    fn take(&mut self, line: &[u8]) {
        let text = line_text(line);
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let (command, payload) = text.split_once(' ').unwrap_or((text, ""));
        if payload.len() > MAX_RECORD_BYTES {
            self.problems.push(format!(
                "a {command} event of {} bytes is over the {MAX_RECORD_BYTES}-byte limit: not kept",
                payload.len()
            ));
            return;
        }
        let data = match crate::record::parse_value(payload) {
            Ok(data) => data,
            Err(error) => {
                self.problems
                    .push(format!("a {command} event is not JSON ({error}): not kept"));
                return;
            }
        };
        match command {
            "LOG" => self.logs.push(data),
            "ITM" => self.items.push(data),
            "REQ" => {
                let mut data = data;
                if let Value::Object(fields) = &mut data {
                    fields.retain(|_, value| !value.is_null());
                }
                self.requests.push(data);
            }
            "STA" => {
                let stats = data.get("stats").cloned().unwrap_or(Value::Null);
                self.samples.push(sample(data.get("time"), &stats));
                self.stats = Some(stats);
            }
            "FIN" => match data.get("outcome").and_then(Value::as_str) {
                Some(outcome) => self.outcome = Some(outcome.to_string()),
                None => self
                    .problems
                    .push("a FIN event without an outcome: not kept".into()),
            },
            other => self
                .problems
                .push(format!("an unknown event {other}: not kept")),
        }
    }
}

/// A log record as a line of Scrapy's own log format.
fn scrapy_log_line(record: &Value) -> String {
    let time = record
        .get("time")
        .and_then(Value::as_f64)
        .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64))
        .map(|time| {
            time.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    let level = match record.get("level").and_then(Value::as_i64).unwrap_or(20) {
        ..=10 => "DEBUG",
        11..=20 => "INFO",
        21..=30 => "WARNING",
        31..=40 => "ERROR",
        _ => "CRITICAL",
    };
    let message = record.get("message").and_then(Value::as_str).unwrap_or("");
    let (logger, text) = message
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
        .unwrap_or(("root", message));
    format!("{time} [{logger}] {level}: {text}\n")
}

/// The lines of `bytes`, split at each newline as `split` would (the last
/// one what follows the last newline), found with `memchr`: lines of
/// items are hundreds of bytes, and a closure a byte showed in profiles.
fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let text = rest?;
        match memchr::memchr(b'\n', text) {
            Some(at) => {
                rest = Some(&text[at + 1..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// A line as text; bytes that are not UTF-8 become U+FFFD. Checked as a
/// whole first: that check is several times faster than the lossy one.
fn line_text(line: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(line) {
        Ok(text) => text.into(),
        Err(_) => String::from_utf8_lossy(line),
    }
}

/// Items from complete feed lines: each a JSON value. Answers the records,
/// the problems to note and the bytes consumed.
fn items_from(
    lines: &[u8],
    cut_at_end: bool,
    cut_length: usize,
) -> (Vec<NewRecord>, Vec<String>, u64) {
    let mut records = Vec::new();
    let mut problems = Vec::new();
    let mut fields = None;
    for line in priority::yielding(split_lines(lines), PARSED_BETWEEN_YIELDS) {
        let text = line_text(line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if text.len() > MAX_RECORD_BYTES {
            problems.push(format!(
                "an item of {} bytes is over the {MAX_RECORD_BYTES}-byte limit: not kept",
                text.len()
            ));
            continue;
        }
        match NewRecord::from_line(text, &mut fields) {
            Ok(record) => records.push(record),
            Err(error) => problems.push(format!(
                "a line of the items feed is not JSON ({error}): not kept"
            )),
        }
    }
    let mut consumed = lines.len() as u64;
    if cut_at_end {
        problems.push(format!(
            "the items feed ends with a line cut short ({cut_length} bytes): not kept"
        ));
        consumed += cut_length as u64;
    }
    (records, problems, consumed)
}

/// The crawl's log and items feed, kept open from the first poll that
/// finds them to the end of the capture: a launch of the same spider may
/// delete them (`jobs_to_keep` keeps the newest files of a spider's
/// folder), and what the crawl wrote is then still read to its end.
#[derive(Default)]
struct OpenedFiles {
    log: OpenedFile,
    items: OpenedFile,
}

#[derive(Default)]
struct OpenedFile(Option<std::fs::File>);

impl OpenedFile {
    /// The file, opened now if it was not yet; `None` while it is not
    /// there.
    fn open(&mut self, path: &Path) -> Option<&mut std::fs::File> {
        if self.0.is_none() {
            self.0 = std::fs::File::open(path).ok();
        }
        self.0.as_mut()
    }
}

/// Log records being assembled: a record is complete when the next one
/// begins (or the crawl ended), since messages (tracebacks, the stats
/// dump) run over several lines.
#[derive(Debug, Default)]
struct PendingLog {
    /// The record still open, and where its first line begins in the file.
    record: Option<(Map<String, Value>, u64)>,
    ready: Vec<Value>,
    /// Where reading must resume for nothing to be lost: the start of the
    /// open record, or the end of what was read.
    committed_offset: u64,
}

impl PendingLog {
    fn take_ready(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.ready)
    }

    fn close_open(&mut self) {
        if let Some((record, _)) = self.record.take() {
            self.ready.push(Value::Object(record));
        }
    }
}

/// Turns complete log lines read from `offset` into records; the last one
/// stays open unless `last`. Answers the bytes consumed.
fn logs_from(lines: &[u8], offset: u64, pending: &mut PendingLog, last: bool) -> u64 {
    // Lines of an open record that was carried over were read again: the
    // record is rebuilt from its first line.
    if let Some((_, start)) = &pending.record
        && *start >= offset
    {
        pending.record = None;
    }
    let mut at = offset;
    for line in priority::yielding(
        lines.split_inclusive(|&b| b == b'\n'),
        PARSED_BETWEEN_YIELDS,
    ) {
        let text = line_text(line);
        let text = text.trim_end_matches(['\n', '\r']);
        match parse_log_header(text) {
            Some((time, level, message)) => {
                pending.close_open();
                let mut record = Map::new();
                record.insert("time".into(), Value::from(time));
                record.insert("level".into(), Value::from(level));
                record.insert("message".into(), Value::from(message));
                pending.record = Some((record, at));
            }
            // A traceback after an INFO or DEBUG record (or none) is what
            // the crawl wrote to its stderr (Scrapy failing before or
            // outside its logging: an unknown spider, a broken settings
            // module): an error of its own, not more of the record before
            // (often the "Versions" line). A warning's or an error's own
            // traceback (`exc_info`) stays in it.
            None if text.starts_with(TRACEBACK)
                && pending
                    .record
                    .as_ref()
                    .is_none_or(|(record, _)| record["level"].as_i64().unwrap_or(0) < 30) =>
            {
                let time = match &pending.record {
                    Some((record, _)) => record["time"].clone(),
                    None => Value::from(millis(clock::now())),
                };
                pending.close_open();
                let mut record = Map::new();
                record.insert("time".into(), time);
                record.insert("level".into(), Value::from(40));
                record.insert("message".into(), Value::from(text));
                pending.record = Some((record, at));
            }
            None => match &mut pending.record {
                Some((record, _)) => {
                    if let Some(Value::String(message)) = record.get_mut("message") {
                        message.push('\n');
                        message.push_str(text);
                    }
                }
                None if !text.is_empty() => {
                    // Output before Scrapy's logging began.
                    let mut record = Map::new();
                    record.insert("time".into(), Value::from(millis(clock::now())));
                    record.insert("level".into(), Value::from(20));
                    record.insert("message".into(), Value::from(text));
                    pending.record = Some((record, at));
                }
                None => {}
            },
        }
        at += line.len() as u64;
    }
    if last {
        pending.close_open();
    }
    pending.committed_offset = match &pending.record {
        Some((_, start)) => *start,
        None => at,
    };
    at - offset
}

/// How Python begins the traceback of an exception it prints.
const TRACEBACK: &str = "Traceback (most recent call last):";

/// `2026-01-02 03:04:05 [logger] LEVEL: message` (Scrapy's default log
/// format): the time in ms, the level's number and `[logger] message`.
fn parse_log_header(line: &str) -> Option<(i64, i64, String)> {
    let stamp = line.get(..19)?;
    let time = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").ok()?;
    let rest = line.get(19..)?.strip_prefix(" [")?;
    let (logger, rest) = rest.split_once("] ")?;
    let (level_name, message) = rest
        .split_once(": ")
        .unwrap_or((rest.trim_end_matches(':'), ""));
    let level = match level_name {
        "DEBUG" => 10,
        "INFO" => 20,
        "WARNING" => 30,
        "ERROR" => 40,
        "CRITICAL" => 50,
        _ => return None,
    };
    let local = time.and_local_timezone(chrono::Local).earliest()?;
    Some((
        local.timestamp_millis(),
        level,
        format!("[{logger}] {message}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_events_become_records_and_scrapy_log_lines() {
        let mut events = Events::default();
        events.take(br#"LOG {"time":1700000000000,"level":40,"message":"[scrapy.core.scraper] Boom\nTraceback"}"#);
        events.take(br#"ITM {"title":"x","_type":"dict"}"#);
        events.take(br#"REQ {"url":"u","status":200,"method":"GET","rs":1,"duration":2,"parent":null,"time":3,"fp":"f"}"#);
        events.take(br#"STA {"time":1,"stats":{"item_scraped_count":1}}"#);
        events.take(br#"FIN {"outcome":"finished"}"#);
        events.take(b"ITM not json");
        assert_eq!(
            (events.logs.len(), events.items.len(), events.requests.len()),
            (1, 1, 1)
        );
        assert!(events.requests[0].get("parent").is_none());
        assert_eq!(events.stats, Some(json!({"item_scraped_count": 1})));
        assert_eq!(events.samples, vec![json!([1, 1, 0, 0, 0, 0])]);
        assert_eq!(events.outcome.as_deref(), Some("finished"));
        assert_eq!(events.problems.len(), 1);
        let line = scrapy_log_line(&events.logs[0]);
        assert!(
            line.ends_with(" [scrapy.core.scraper] ERROR: Boom\nTraceback\n"),
            "{line}"
        );
        let (_, level, message) = parse_log_header(line.lines().next().unwrap()).unwrap();
        assert_eq!(
            (level, message.as_str()),
            (40, "[scrapy.core.scraper] Boom")
        );
    }

    #[test]
    fn log_headers() {
        let (_, level, message) =
            parse_log_header("2026-01-02 03:04:05 [scrapy.core.engine] INFO: Spider opened")
                .unwrap();
        assert_eq!(
            (level, message.as_str()),
            (20, "[scrapy.core.engine] Spider opened")
        );
        assert!(parse_log_header("Traceback (most recent call last):").is_none());
        assert!(parse_log_header("2026-01-02 03:04:05 [x] NOTICE: y").is_none());
    }

    #[test]
    fn multi_line_records_close_when_the_next_begins() {
        let text = "2026-01-02 03:04:05 [a] INFO: one\n2026-01-02 03:04:06 [b] ERROR: two\n  line two\n2026-01-02 03:04:07 [c] DEBUG: three\n";
        let mut pending = PendingLog::default();
        let consumed = logs_from(text.as_bytes(), 100, &mut pending, false);
        assert_eq!(consumed, text.len() as u64);
        let ready = pending.take_ready();
        assert_eq!(ready.len(), 2);
        assert_eq!(ready[1]["message"], "[b] two\n  line two");
        assert_eq!(ready[1]["level"], 40);
        // The open record's first line is where reading resumes.
        let third = text.find("2026-01-02 03:04:07").unwrap() as u64;
        assert_eq!(pending.committed_offset, 100 + third);
        logs_from(b"", 100 + text.len() as u64, &mut pending, true);
        assert_eq!(pending.take_ready()[0]["message"], "[c] three");
    }

    #[test]
    fn a_traceback_no_error_leads_in_is_an_error_of_its_own() {
        let text = "2026-01-02 03:04:05 [scrapy.utils.log] INFO: Versions: lxml 5\n\
                    Traceback (most recent call last):\n  File \"x.py\", line 1\n\
                    KeyError: 'Spider not found: brandnew'\n\
                    2026-01-02 03:04:06 [scrapy.core.scraper] ERROR: Boom\n\
                    Traceback (most recent call last):\nValueError: x\n\
                    2026-01-02 03:04:07 [scrapy.pipelines.files] WARNING: failed\n\
                    Traceback (most recent call last):\nOSError: y\n";
        let mut pending = PendingLog::default();
        logs_from(text.as_bytes(), 0, &mut pending, true);
        let ready = pending.take_ready();
        let levels: Vec<i64> = ready.iter().map(|r| r["level"].as_i64().unwrap()).collect();
        assert_eq!(levels, [20, 40, 40, 30]);
        assert_eq!(ready[0]["message"], "[scrapy.utils.log] Versions: lxml 5");
        assert!(
            ready[1]["message"]
                .as_str()
                .unwrap()
                .starts_with("Traceback")
        );
        assert!(
            ready[1]["message"]
                .as_str()
                .unwrap()
                .ends_with("'Spider not found: brandnew'")
        );
        assert_eq!(ready[1]["time"], ready[0]["time"]);
        // An error or a warning keeps its own traceback.
        assert_eq!(
            ready[2]["message"],
            "[scrapy.core.scraper] Boom\nTraceback (most recent call last):\nValueError: x"
        );
        assert!(
            ready[3]["message"]
                .as_str()
                .unwrap()
                .ends_with("OSError: y")
        );
    }

    #[test]
    fn lines_split_as_a_slice_splits() {
        for text in ["", "\n", "a", "a\n", "a\nb", "\n\na\n\nbc\n", "ab\r\ncd"] {
            let bytes = text.as_bytes();
            let expected: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
            assert_eq!(split_lines(bytes).collect::<Vec<_>>(), expected, "{text:?}");
        }
    }

    #[test]
    fn an_items_lone_surrogate_becomes_a_replacement_character() {
        let (records, problems, _) = items_from(b"{\"a\": \"x\\ud800\"}\n", false, 0);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(records[0].json, r#"{"a":"x\ufffd"}"#);
    }

    #[test]
    fn items_keep_what_is_json_and_say_what_is_not() {
        let (records, problems, consumed) =
            items_from(b"{\"a\": 1}\nnot json\n\n{\"b\": 2}\n", true, 5);
        assert_eq!(records.len(), 2);
        assert_eq!(problems.len(), 2);
        assert_eq!(consumed, 28 + 5);
    }
}
