//! The process slots: launch, follow, cancel, adopt.
//!
//! The supervisor sleeps until something can change what runs: a job was
//! scheduled or a crawl ended. Then it claims the best pending jobs from
//! the store while slots are free and starts them. There is no poll loop
//! between a schedule and its launch.
//!
//! A claim is committed (job `running`, no pid yet) before the process is
//! started, and the pid right after: a crash in between leaves a running
//! job without a pid, which the next start finishes as `lost` rather than
//! run twice.
//!
//! Shutdown is explicit: [`Supervisor::begin_shutdown`] stops launching at
//! once, and [`Supervisor::shutdown`] waits for the launch in progress
//! before the runtime winds down. Crawls are left running for the next
//! start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::sync::{Notify, watch};
use tracing::{debug, error, info, warn};

use crate::clock;
use crate::config::Config;
use crate::runner;
use crate::store::{Job, Store, StoreError};

/// How often a crawl adopted from a previous daemon (not our child, so no
/// exit notification) is checked for its end.
const ADOPTED_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// How much of a log's end is read for Scrapy's close reason.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// A crawl this daemon is following.
struct Crawl {
    pid: i32,
    units: u32,
    /// A pending KILL after a cancel; aborted when the crawl ends.
    kill_timer: Option<tokio::task::JoinHandle<()>>,
}

pub struct Supervisor {
    config: Arc<Config>,
    store: Arc<Store>,
    wake: Notify,
    /// Crawls by job `seq`. Held while a job is claimed and started, so a
    /// cancel never sees a claimed job without its process.
    crawls: Mutex<HashMap<i64, Crawl>>,
    /// Set once the daemon is stopping: nothing new is launched.
    stopping: watch::Sender<bool>,
}

impl Supervisor {
    pub fn new(config: Arc<Config>, store: Arc<Store>) -> Arc<Supervisor> {
        Arc::new(Supervisor {
            config,
            store,
            wake: Notify::new(),
            crawls: Mutex::new(HashMap::new()),
            stopping: watch::Sender::new(false),
        })
    }

    /// Asks the supervisor to look at the queue: call after every schedule.
    /// A wake-up while it is busy is remembered, never lost.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// [`Supervisor::wake`], only if a slot is free: when all are taken,
    /// the next crawl to end wakes the launcher anyway, and a busy node is
    /// spared a wake-up per schedule.
    pub fn job_queued(&self) {
        if self.free_slots() > 0 {
            self.wake();
        }
    }

    /// The daemon is stopping: launch nothing more. Jobs still pending stay
    /// pending for the next start. Call as soon as the stop is decided.
    pub fn begin_shutdown(&self) {
        if !self.stopping.send_replace(true) {
            info!("launching no more crawls");
        }
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Stops the supervisor before the runtime winds down: launches no
    /// more, and waits for `launcher` (the task running
    /// [`Supervisor::run`]) to finish the launch in progress. Crawls are
    /// left running: the next start adopts them.
    pub async fn shutdown(self: &Arc<Self>, launcher: tokio::task::JoinHandle<()>) {
        self.begin_shutdown();
        if let Err(error) = launcher.await {
            error!(%error, "the launcher failed");
        }
        let running = self.crawls().len();
        if running > 0 {
            info!(
                crawls = running,
                "leaving crawls running for the next start"
            );
        }
    }

    /// Adopts crawls left by a previous daemon, then launches jobs as slots
    /// free up, until the daemon stops.
    pub async fn run(self: Arc<Self>) {
        self.adopt_survivors();
        let mut stopping = self.stopping.subscribe();
        while !self.is_stopping() {
            // Claims wait for a commit: off the async workers, and only
            // when a slot is free (a busy node gets many wake-ups).
            if self.free_slots() > 0 {
                let supervisor = Arc::clone(&self);
                let launched = tokio::task::spawn_blocking(move || supervisor.launch_ready());
                if let Err(error) = launched.await {
                    error!(%error, "the launcher failed");
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = stopping.wait_for(|stopping| *stopping) => {}
            }
        }
    }

    fn crawls(&self) -> MutexGuard<'_, HashMap<i64, Crawl>> {
        self.crawls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slots(&self) -> u32 {
        u32::try_from(self.config.max_proc)
            .unwrap_or(u32::MAX)
            .max(1)
    }

    fn free_slots(&self) -> u32 {
        self.free_slots_among(&self.crawls())
    }

    /// The slots not taken by `crawls` (for a caller already holding them).
    fn free_slots_among(&self, crawls: &HashMap<i64, Crawl>) -> u32 {
        let used: u32 = crawls.values().map(|c| c.units).sum();
        self.slots().saturating_sub(used)
    }

    /// Starts pending jobs while they fit in the free slots and the daemon
    /// is not stopping.
    fn launch_ready(self: &Arc<Self>) {
        let mut crawls = self.crawls();
        loop {
            if self.is_stopping() {
                return;
            }
            let free = self.free_slots_among(&crawls);
            if free == 0 {
                return;
            }
            match self
                .store
                .claim_next_pending(free, self.slots(), clock::now())
            {
                Ok(Some(job)) if self.is_stopping() => {
                    // Claimed as the stop began: it waits for the next start.
                    info!(job = %job.job_id, "back to pending: the daemon is stopping");
                    if let Err(error) = self.store.return_to_pending(job.seq) {
                        error!(%error, job = %job.job_id, "cannot put the job back in the queue");
                    }
                    return;
                }
                Ok(Some(job)) => self.launch(&mut crawls, job),
                Ok(None) => return,
                Err(error) => {
                    error!(%error, "cannot read the job queue");
                    return;
                }
            }
        }
    }

    /// Starts one claimed job; a job that cannot start is finished as
    /// `failed` with the reason in the daemon's log.
    fn launch(self: &Arc<Self>, crawls: &mut HashMap<i64, Crawl>, job: Job) {
        match self.spawn(&job) {
            Ok((child, log_file)) => {
                let pid = i32::try_from(child.id()).unwrap_or(0);
                info!(job = %job.job_id, project = %job.project, spider = %job.spider, pid, "crawl started");
                let units = job.units.clamp(1, self.slots());
                crawls.insert(
                    job.seq,
                    Crawl {
                        pid,
                        units,
                        kill_timer: None,
                    },
                );
                let supervisor = Arc::clone(self);
                tokio::spawn(
                    async move { supervisor.follow_child(child, job.seq, log_file).await },
                );
            }
            Err(reason) => {
                warn!(job = %job.job_id, project = %job.project, %reason, "crawl could not start");
                self.record_end(job.seq, None, "failed");
            }
        }
    }

    fn spawn(&self, job: &Job) -> Result<(std::process::Child, Option<PathBuf>), String> {
        let version = self
            .store
            .version(job.project_id, job.version.as_deref())
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "version {:?} of project {} not found",
                    job.version, job.project
                )
            })?;
        let launch = runner::crawl(&self.config, job, &version)
            .map_err(|e| format!("cannot prepare files: {e}"))?;
        let mut command = launch.command;
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.config.python_for(&job.project)))?;
        let pid = child.id();
        let ticks = process_start_ticks(pid as i32);
        if let Err(error) = self
            .store
            .record_started(job.seq, pid as i32, ticks, &version.version)
        {
            error!(%error, job = %job.job_id, "cannot record the crawl's pid");
        }
        Ok((child, launch.log_file))
    }

    async fn follow_child(
        self: Arc<Self>,
        child: std::process::Child,
        seq: i64,
        log_file: Option<PathBuf>,
    ) {
        let exit_code = match wait_for_exit(child).await {
            Ok(status) => status.code().or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                status.signal().map(|signal| -signal)
            }),
            Err(error) => {
                error!(%error, "lost track of a crawl");
                None
            }
        };
        self.record_crawl_end(seq, exit_code, log_file).await;
    }

    /// [`Supervisor::crawl_ended`] from async code: it waits for a commit,
    /// so it runs on the blocking pool.
    async fn record_crawl_end(
        self: Arc<Self>,
        seq: i64,
        exit_code: Option<i32>,
        log_file: Option<PathBuf>,
    ) {
        let ended = move || self.crawl_ended(seq, exit_code, log_file.as_deref());
        if let Err(error) = tokio::task::spawn_blocking(ended).await {
            error!(%error, seq, "cannot record the end of a crawl");
        }
    }

    /// Records a crawl's end and frees its slot. The store hears first, so
    /// the store never shows more running jobs than there are slots.
    fn crawl_ended(&self, seq: i64, exit_code: Option<i32>, log_file: Option<&Path>) {
        let cancelled = match self.store.job(seq) {
            Ok(Some(job)) => job.cancel_count > 0,
            _ => false,
        };
        let log_reason = log_file.and_then(close_reason_from_log);
        let reason = close_reason(cancelled, log_reason, exit_code);
        self.record_end(seq, exit_code, &reason);
        if let Some(crawl) = self.crawls().remove(&seq)
            && let Some(timer) = crawl.kill_timer
        {
            timer.abort();
        }
        self.wake();
    }

    fn record_end(&self, seq: i64, exit_code: Option<i32>, reason: &str) {
        match self.store.finish_job(seq, clock::now(), exit_code, reason) {
            Ok(()) => info!(seq, ?exit_code, close_reason = reason, "crawl finished"),
            Err(error) => error!(%error, seq, "cannot record the end of a crawl"),
        }
    }

    /// Sends `signal` to a running job. The second cancel of the same job
    /// (ScrapydWeb's force stop) arms a KILL of its process group after
    /// `cancel_kill_grace`; the first arms one after `cancel_timeout`, if
    /// set.
    pub fn cancel(self: &Arc<Self>, job: &Job, signal: Signal) -> Result<(), StoreError> {
        let count = self.store.count_cancel(job.seq)?;
        let mut crawls = self.crawls();
        let Some(crawl) = crawls.get_mut(&job.seq) else {
            // It ended between the store read and now: nothing to signal.
            return Ok(());
        };
        info!(job = %job.job_id, pid = crawl.pid, %signal, count, "cancelling crawl");
        if let Err(error) = kill(Pid::from_raw(crawl.pid), signal) {
            warn!(%error, pid = crawl.pid, "cannot signal crawl");
        }
        let grace = if count >= 2 {
            Some(self.config.cancel_kill_grace)
        } else {
            self.config.cancel_timeout
        };
        if let Some(grace) = grace {
            if let Some(previous) = crawl.kill_timer.take() {
                previous.abort();
            }
            let pid = crawl.pid;
            crawl.kill_timer = Some(tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                warn!(
                    pid,
                    "crawl still alive after cancel; killing its process group"
                );
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }));
        }
        Ok(())
    }

    /// Accounts for jobs a previous daemon left running: a crawl still
    /// alive (same pid and same process start time) is followed to its
    /// end; one that is gone is finished now with the reason its log gives,
    /// or `lost`.
    fn adopt_survivors(self: &Arc<Self>) {
        let survivors = match self.store.claimed_jobs() {
            Ok(jobs) => jobs,
            Err(error) => {
                error!(%error, "cannot read running jobs");
                return;
            }
        };
        for job in survivors {
            let log_file = self
                .config
                .logs_dir
                .as_ref()
                .map(|dir| runner::job_file(dir, &job, "log"));
            // A zombie died while the daemon was down: it only waits to be
            // reaped by its new parent.
            let alive = match (job.pid, job.pid_start_ticks) {
                (Some(pid), Some(ticks)) => {
                    process_start_ticks(pid) == Some(ticks) && !is_zombie(pid)
                }
                _ => false,
            };
            if !alive {
                let reason = log_file
                    .as_deref()
                    .and_then(close_reason_from_log)
                    .unwrap_or_else(|| "lost".to_string());
                info!(job = %job.job_id, %reason, "crawl ended while the daemon was down");
                self.record_end(job.seq, None, &reason);
                continue;
            }
            let pid = job.pid.unwrap_or(0);
            info!(job = %job.job_id, pid, "adopting running crawl");
            self.crawls().insert(
                job.seq,
                Crawl {
                    pid,
                    units: job.units.clamp(1, self.slots()),
                    kill_timer: None,
                },
            );
            let supervisor = Arc::clone(self);
            let ticks = job.pid_start_ticks;
            tokio::spawn(async move {
                while process_start_ticks(pid) == ticks && !is_zombie(pid) {
                    tokio::time::sleep(ADOPTED_CHECK_INTERVAL).await;
                }
                supervisor.record_crawl_end(job.seq, None, log_file).await;
            });
        }
    }
}

/// Waits for a child to end without holding a thread: its pidfd turns
/// readable when it exits, so the slot frees at once. Where pidfds are
/// missing (Linux before 5.3) or cannot be registered, it polls.
async fn wait_for_exit(
    mut child: std::process::Child,
) -> std::io::Result<std::process::ExitStatus> {
    use tokio::io::{Interest, unix::AsyncFd};
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_child(&child),
        rustix::process::PidfdFlags::empty(),
    )
    .map_err(std::io::Error::from)
    .and_then(|fd| {
        // SAFETY: the OwnedFd is open, owned by the AsyncFd from here on,
        // and its descriptor never changes.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(std::io::Error::from)
    });
    match pidfd {
        Ok(pidfd) => {
            let _ = pidfd.readable().await;
        }
        Err(error) => {
            debug!(%error, pid = child.id(), "no pidfd for the crawl; polling for its end")
        }
    }
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        tokio::time::sleep(ADOPTED_CHECK_INTERVAL).await;
    }
}

/// The close reason recorded for a crawl.
fn close_reason(cancelled: bool, log_reason: Option<String>, exit_code: Option<i32>) -> String {
    if cancelled {
        return "cancelled".into();
    }
    match (log_reason, exit_code) {
        (Some(reason), _) => reason,
        (None, Some(0)) => "finished".into(),
        _ => "failed".into(),
    }
}

/// Scrapy's close reason from the last `Spider closed (reason)` line of
/// the log.
pub fn close_reason_from_log(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let length = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES)))
        .ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    let marker = "Spider closed (";
    let start = text.rfind(marker)? + marker.len();
    let end = text[start..].find(')')? + start;
    Some(text[start..end].to_string())
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock
/// ticks since boot. With the pid it identifies a process uniquely, so a
/// pid reused by another program is not taken for the crawl.
pub fn process_start_ticks(pid: i32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; the
    // fields after its last ')' are plain.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// A zombie has exited; it only waits for its parent to read its status.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rfind(')')
                .map(|end| stat[end + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons() {
        assert_eq!(
            close_reason(true, Some("finished".into()), Some(0)),
            "cancelled"
        );
        assert_eq!(
            close_reason(false, Some("closespider_timeout".into()), Some(0)),
            "closespider_timeout"
        );
        assert_eq!(close_reason(false, None, Some(0)), "finished");
        assert_eq!(close_reason(false, None, Some(1)), "failed");
        assert_eq!(close_reason(false, None, None), "failed");
    }

    #[test]
    fn reads_close_reason_from_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("j.log");
        std::fs::write(
            &log,
            "2024 [scrapy.core.engine] INFO: Closing spider (finished)\n\
             2024 [scrapy.core.engine] INFO: Spider closed (finished)\n",
        )
        .unwrap();
        assert_eq!(close_reason_from_log(&log).as_deref(), Some("finished"));
        assert_eq!(close_reason_from_log(&dir.path().join("none.log")), None);
    }

    #[test]
    fn own_process_start_ticks_are_stable() {
        let pid = std::process::id() as i32;
        let first = process_start_ticks(pid);
        assert!(first.is_some());
        assert_eq!(first, process_start_ticks(pid));
        assert!(!is_zombie(pid));
    }
}
