//! The process slots: launch, follow, cancel, adopt, stop.
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
//! A job that cannot start is finished as `failed` only when the reason is
//! its own (its version is gone, its interpreter does not exist). When the
//! reason is the daemon's (a full disk, no memory, no file descriptors, or
//! the daemon is stopping) it goes back to pending, and the launcher tries
//! again after a pause that doubles up to a few seconds; so does a claim
//! that fails. A crawl's end that cannot be written is retried the same
//! way, its slot held until it is on disk.
//!
//! Shutdown is explicit: [`Supervisor::begin_shutdown`] stops launching at
//! once, and [`Supervisor::shutdown`] waits for the launch in progress,
//! then leaves the crawls running or stops them (`crawls_on_shutdown`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::sync::{Notify, watch};
use tracing::{debug, error, info, warn};

use crate::capture::Capture;
use crate::clock;
use crate::config::{Config, CrawlsOnShutdown};
use crate::runner;
use crate::store::{Job, JobState, Store, StoreError};

/// How often a crawl adopted from a previous daemon (not our child, so no
/// exit notification) is checked for its end.
const ADOPTED_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// How much of a log's end is read for Scrapy's close reason.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// The first pause after a failure that is the daemon's, and the longest.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_LONGEST: Duration = Duration::from_secs(5);

/// How long a stopping daemon waits, after KILLing the crawls that outlived
/// `cancel_kill_grace`, for their ends to be recorded.
const KILLED_RECORD_WAIT: Duration = Duration::from_secs(3);

/// A crawl this daemon is following.
struct Crawl {
    pid: i32,
    units: u32,
    /// A pending KILL after a cancel; aborted when the crawl ends.
    kill_timer: Option<tokio::task::JoinHandle<()>>,
    /// The process has ended (its end may not be on disk yet): its pid may
    /// belong to another process now and must not be signalled.
    exited: bool,
    /// Stopped by a stopping daemon (`crawls_on_shutdown = stop`).
    stopped_at_shutdown: bool,
}

/// How a crawl's end was seen.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    /// Our child exited with this code (negative: killed by that signal;
    /// `None`: its status could not be read).
    Exited(Option<i32>),
    /// Adopted from a previous daemon and followed until its process
    /// vanished: its exit code is not ours to read.
    Vanished,
    /// Already gone when this daemon started.
    GoneBeforeStart,
}

impl Ending {
    fn exit_code(self) -> Option<i32> {
        match self {
            Ending::Exited(code) => code,
            Ending::Vanished | Ending::GoneBeforeStart => None,
        }
    }
}

/// What became of a claimed job whose process did not start, when the
/// store could not be told at once.
#[derive(Debug, Clone, Copy)]
enum Unstarted {
    /// The daemon's failure: the job waits for another try.
    BackToPending,
    /// The job's own failure.
    Failed,
}

/// Why a claimed job did not start.
#[derive(Debug)]
enum LaunchError {
    /// The job cannot run as asked: every try would fail the same way.
    Job(String),
    /// The daemon is short of something (disk, memory, descriptors) or
    /// cannot read its store: the job is not to blame.
    Daemon(String),
}

impl LaunchError {
    fn from_io(what: String, error: &std::io::Error) -> LaunchError {
        let message = format!("{what}: {error}");
        if is_daemon_side(error) {
            LaunchError::Daemon(message)
        } else {
            LaunchError::Job(message)
        }
    }
}

/// What the launcher does after a pass over the queue.
#[derive(Debug, PartialEq)]
enum Pass {
    /// Nothing more can start now: sleep until woken.
    Idle,
    /// Something failed for the daemon's own reasons: try again later.
    RetryLater,
}

pub struct Supervisor {
    config: Arc<Config>,
    store: Arc<Store>,
    /// Follows each crawl's output into the job data store.
    capture: Arc<Capture>,
    wake: Notify,
    /// Crawls by job `seq`. Held while a job is claimed and started, so a
    /// cancel never sees a claimed job without its process.
    crawls: Mutex<HashMap<i64, Crawl>>,
    /// Claimed jobs that did not start and whose new state could not be
    /// written yet. The launcher writes them before it claims anything.
    unsettled: Mutex<Vec<(i64, Unstarted)>>,
    /// Signalled whenever a crawl's end is recorded.
    crawl_recorded: Notify,
    /// Set once the daemon is stopping: nothing new is launched.
    stopping: watch::Sender<bool>,
}

impl Supervisor {
    pub fn new(config: Arc<Config>, store: Arc<Store>, capture: Arc<Capture>) -> Arc<Supervisor> {
        Arc::new(Supervisor {
            config,
            store,
            capture,
            wake: Notify::new(),
            crawls: Mutex::new(HashMap::new()),
            unsettled: Mutex::new(Vec::new()),
            crawl_recorded: Notify::new(),
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
    /// more, waits for `launcher` (the task running [`Supervisor::run`]) to
    /// finish the launch in progress, then leaves the crawls running for
    /// the next start or stops them and records their ends, as
    /// `crawls_on_shutdown` says.
    pub async fn shutdown(self: &Arc<Self>, launcher: tokio::task::JoinHandle<()>) {
        self.begin_shutdown();
        if let Err(error) = launcher.await {
            error!(%error, "the launcher failed");
        }
        // One last try for claims whose return to the queue failed; left
        // as they are, the next start would finish them as `lost`.
        let supervisor = Arc::clone(self);
        if let Ok(false) = tokio::task::spawn_blocking(move || supervisor.settle_unstarted()).await
        {
            warn!("some claimed jobs could not be put back in the queue");
        }
        match self.config.crawls_on_shutdown {
            CrawlsOnShutdown::Leave => {
                let running = self.crawls().values().filter(|c| !c.exited).count();
                if running > 0 {
                    info!(
                        crawls = running,
                        "leaving crawls running for the next start"
                    );
                }
            }
            CrawlsOnShutdown::Stop => self.stop_crawls().await,
        }
    }

    /// Adopts crawls left by a previous daemon, then launches jobs as slots
    /// free up, until the daemon stops.
    pub async fn run(self: Arc<Self>) {
        self.adopt_survivors();
        let mut stopping = self.stopping.subscribe();
        let mut retry = Backoff::new(RETRY_FIRST, RETRY_LONGEST);
        while !self.is_stopping() {
            // Claims wait for a commit: off the async workers, and only
            // when a slot is free (a busy node gets many wake-ups).
            let pass = if self.free_slots() > 0 || !self.unsettled().is_empty() {
                let supervisor = Arc::clone(&self);
                match tokio::task::spawn_blocking(move || supervisor.launch_ready()).await {
                    Ok(pass) => pass,
                    Err(error) => {
                        error!(%error, "the launcher failed");
                        Pass::RetryLater
                    }
                }
            } else {
                Pass::Idle
            };
            match pass {
                Pass::Idle => {
                    retry.reset();
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = stopping.wait_for(|stopping| *stopping) => {}
                    }
                }
                // Wake-ups wait for the pause (they are remembered): a
                // node short of disk or memory is not retried on every
                // schedule, and the pause cannot become a busy loop.
                Pass::RetryLater => tokio::select! {
                    _ = tokio::time::sleep(retry.next_delay()) => {}
                    _ = stopping.wait_for(|stopping| *stopping) => {}
                },
            }
        }
    }

    fn crawls(&self) -> MutexGuard<'_, HashMap<i64, Crawl>> {
        self.crawls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unsettled(&self) -> MutexGuard<'_, Vec<(i64, Unstarted)>> {
        self.unsettled.lock().unwrap_or_else(|p| p.into_inner())
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
    fn launch_ready(self: &Arc<Self>) -> Pass {
        let mut crawls = self.crawls();
        // The queue's order holds only once every earlier claim is settled.
        if !self.settle_unstarted() {
            return Pass::RetryLater;
        }
        loop {
            if self.is_stopping() {
                return Pass::Idle;
            }
            let free = self.free_slots_among(&crawls);
            if free == 0 {
                return Pass::Idle;
            }
            let job = match self
                .store
                .claim_next_pending(free, self.slots(), clock::now())
            {
                Ok(Some(job)) => job,
                Ok(None) => return Pass::Idle,
                Err(error) => {
                    warn!(%error, "cannot claim the next job; trying again shortly");
                    return Pass::RetryLater;
                }
            };
            if self.is_stopping() {
                // Claimed as the stop began: it waits for the next start.
                info!(job = %job.job_id, "back to pending: the daemon is stopping");
                self.unstart(&job, Unstarted::BackToPending);
                return Pass::Idle;
            }
            match self.launch(&mut crawls, &job) {
                Ok(()) => {}
                Err(LaunchError::Job(reason)) => {
                    warn!(job = %job.job_id, project = %job.project, %reason, "crawl could not start");
                    if !self.unstart(&job, Unstarted::Failed) {
                        return Pass::RetryLater;
                    }
                }
                Err(LaunchError::Daemon(reason)) => {
                    warn!(job = %job.job_id, project = %job.project, %reason,
                        "crawl could not start; back to pending, trying again shortly");
                    self.unstart(&job, Unstarted::BackToPending);
                    return Pass::RetryLater;
                }
            }
        }
    }

    /// Writes what became of a claimed job that did not start; if the
    /// store cannot be told now, the launcher tries again before its next
    /// claim. Answers whether it was written.
    fn unstart(&self, job: &Job, outcome: Unstarted) -> bool {
        match self.write_unstarted(job.seq, outcome) {
            Ok(()) => true,
            Err(error) => {
                warn!(%error, job = %job.job_id, ?outcome, "cannot record that the crawl did not start; trying again shortly");
                self.unsettled().push((job.seq, outcome));
                false
            }
        }
    }

    fn write_unstarted(&self, seq: i64, outcome: Unstarted) -> Result<(), StoreError> {
        match outcome {
            Unstarted::BackToPending => self.store.return_to_pending(seq).map(|_| ()),
            Unstarted::Failed => self.store.finish_job(seq, clock::now(), None, "failed"),
        }
    }

    /// Writes the unstarted claims still waiting; answers whether none is
    /// left.
    fn settle_unstarted(&self) -> bool {
        let mut unsettled = self.unsettled();
        unsettled.retain(|&(seq, outcome)| self.write_unstarted(seq, outcome).is_err());
        unsettled.is_empty()
    }

    /// Starts one claimed job and follows it.
    fn launch(
        self: &Arc<Self>,
        crawls: &mut HashMap<i64, Crawl>,
        job: &Job,
    ) -> Result<(), LaunchError> {
        let version = match self.store.version(job.project_id, job.version.as_deref()) {
            Ok(Some(version)) => version,
            Ok(None) => {
                return Err(LaunchError::Job(format!(
                    "version {:?} of project {} not found",
                    job.version, job.project
                )));
            }
            Err(error) => return Err(LaunchError::Daemon(error.to_string())),
        };
        let launch = runner::crawl(&self.config, job, &version)
            .map_err(|e| LaunchError::from_io("cannot prepare files".into(), &e))?;
        let mut command = launch.command;
        let child = command.spawn().map_err(|e| {
            let python = self.config.python_for(&job.project);
            LaunchError::from_io(format!("cannot start {python}"), &e)
        })?;
        // From here on the crawl runs: whatever fails now, the job is
        // started and followed.
        let pid = i32::try_from(child.id()).unwrap_or(0);
        info!(job = %job.job_id, project = %job.project, spider = %job.spider, pid, "crawl started");
        let ticks = process_start_ticks(pid);
        if let Err(error) = self
            .store
            .record_started(job.seq, pid, ticks, &version.version)
        {
            warn!(%error, job = %job.job_id, "cannot record the crawl's pid yet; trying again shortly");
            let (store, seq) = (Arc::clone(&self.store), job.seq);
            let run_version = version.version.clone();
            tokio::spawn(async move {
                let mut retry = Backoff::new(RETRY_FIRST, RETRY_LONGEST);
                loop {
                    tokio::time::sleep(retry.next_delay()).await;
                    let store = Arc::clone(&store);
                    let run_version = run_version.clone();
                    let write = move || store.record_started(seq, pid, ticks, &run_version);
                    if let Ok(Ok(())) = tokio::task::spawn_blocking(write).await {
                        return;
                    }
                }
            });
        }
        crawls.insert(
            job.seq,
            Crawl {
                pid,
                units: job.units.clamp(1, self.slots()),
                kill_timer: None,
                exited: false,
                stopped_at_shutdown: false,
            },
        );
        self.capture.begin(job);
        let supervisor = Arc::clone(self);
        let (seq, log_file) = (job.seq, launch.log_file);
        tokio::spawn(async move { supervisor.follow_child(child, seq, log_file).await });
        Ok(())
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
        let log_reason = last_words(log_file).await;
        self.record_crawl_end(seq, Ending::Exited(exit_code), log_reason)
            .await;
    }

    /// Records a crawl's end from async code, trying again (its slot still
    /// taken) while the store cannot be written. `log_reason` is the close
    /// reason its log gave when the end became known.
    async fn record_crawl_end(
        self: Arc<Self>,
        seq: i64,
        ending: Ending,
        log_reason: Option<String>,
    ) {
        if let Some(crawl) = self.crawls().get_mut(&seq) {
            crawl.exited = true;
            if let Some(timer) = crawl.kill_timer.take() {
                timer.abort();
            }
        }
        // What the crawl wrote last is in the store before its end is.
        self.capture.finish(seq).await;
        let mut retry = Backoff::new(RETRY_FIRST, RETRY_LONGEST);
        loop {
            let supervisor = Arc::clone(&self);
            let log_reason = log_reason.clone();
            // It waits for a commit: on the blocking pool.
            let ended = move || supervisor.crawl_ended(seq, ending, log_reason);
            match tokio::task::spawn_blocking(ended).await {
                Ok(true) => return,
                Ok(false) => tokio::time::sleep(retry.next_delay()).await,
                Err(error) => {
                    error!(%error, seq, "cannot record the end of a crawl");
                    return;
                }
            }
        }
    }

    /// Records a crawl's end and frees its slot; answers whether the end is
    /// on disk. The store hears first, so the store never shows more
    /// running jobs than there are slots.
    fn crawl_ended(&self, seq: i64, ending: Ending, log_reason: Option<String>) -> bool {
        let cancelled = match self.store.job(seq) {
            Ok(Some(job)) => job.cancel_count > 0,
            _ => false,
        };
        let stopped = self
            .crawls()
            .get(&seq)
            .is_some_and(|crawl| crawl.stopped_at_shutdown);
        // start-crawl's FIN, else Scrapy's last words in its log.
        let scrapy_reason = self.capture.crawl_outcome(seq).or(log_reason);
        let reason = close_reason(cancelled, stopped, scrapy_reason, ending);
        let exit_code = ending.exit_code();
        if let Err(error) = self.store.finish_job(seq, clock::now(), exit_code, &reason) {
            warn!(%error, seq, "cannot record the end of a crawl yet; trying again shortly");
            return false;
        }
        info!(seq, ?exit_code, close_reason = %reason, "crawl finished");
        if let Some(crawl) = self.crawls().remove(&seq)
            && let Some(timer) = crawl.kill_timer
        {
            timer.abort();
        }
        self.crawl_recorded.notify_waiters();
        self.wake();
        true
    }

    /// Sends `signal` to a running job. The second cancel of the same job
    /// (ScrapydWeb's force stop) arms a KILL of its process group after
    /// `cancel_kill_grace`; the first arms one after `cancel_timeout`, if
    /// set.
    pub fn cancel(self: &Arc<Self>, job: &Job, signal: Signal) -> Result<(), StoreError> {
        // Taken first: a claim being launched is settled (started, back in
        // the queue, or failed) before this looks at it.
        let mut crawls = self.crawls();
        let Some(crawl) = crawls.get_mut(&job.seq).filter(|crawl| !crawl.exited) else {
            // It never started and is queued again: cancel it as pending.
            if let Some(now) = self.store.job(job.seq)?
                && now.state == JobState::Pending
            {
                self.store
                    .cancel_pending(now.project_id, &now.job_id, clock::now())?;
            }
            // Otherwise it ended between the store read and now.
            return Ok(());
        };
        let count = self.store.count_cancel(job.seq)?;
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
                signal_group(pid, Signal::SIGKILL);
            }));
        }
        Ok(())
    }

    /// `crawls_on_shutdown = stop`: TERM to every crawl's process group,
    /// KILL to those still alive after `cancel_kill_grace`, and each end
    /// recorded (close reason `shutdown`) before the daemon exits.
    async fn stop_crawls(self: &Arc<Self>) {
        let pids: Vec<i32> = self
            .crawls()
            .values_mut()
            .filter(|crawl| !crawl.exited)
            .map(|crawl| {
                crawl.stopped_at_shutdown = true;
                crawl.pid
            })
            .collect();
        if pids.is_empty() {
            return;
        }
        let grace = self.config.cancel_kill_grace;
        info!(crawls = pids.len(), ?grace, "stopping crawls");
        for pid in pids {
            signal_group(pid, Signal::SIGTERM);
        }
        if self.wait_for_recorded_ends(grace).await {
            return;
        }
        for crawl in self.crawls().values().filter(|crawl| !crawl.exited) {
            warn!(
                pid = crawl.pid,
                "crawl still alive after the grace; killing its process group"
            );
            signal_group(crawl.pid, Signal::SIGKILL);
        }
        if !self.wait_for_recorded_ends(KILLED_RECORD_WAIT).await {
            warn!(
                crawls = self.crawls().len(),
                "crawl ends not recorded; the next start will record them"
            );
        }
    }

    /// Waits up to `limit` for every followed crawl to be recorded as
    /// ended; answers whether they all were.
    async fn wait_for_recorded_ends(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let recorded = self.crawl_recorded.notified();
            tokio::pin!(recorded);
            // Registered before looking, so an end recorded in between is
            // not missed.
            recorded.as_mut().enable();
            if self.crawls().is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, recorded).await.is_err() {
                return self.crawls().is_empty();
            }
        }
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
            let pid = job.pid.unwrap_or(0);
            // Its slot is taken until its end is on disk.
            self.crawls().insert(
                job.seq,
                Crawl {
                    pid,
                    units: job.units.clamp(1, self.slots()),
                    kill_timer: None,
                    exited: !alive,
                    stopped_at_shutdown: false,
                },
            );
            // Capture goes on from where it stopped.
            self.capture.begin(&job);
            if !alive {
                info!(job = %job.job_id, "crawl ended while the daemon was down");
                // Read now, before the launcher runs: a launch of the same
                // spider prunes its older logs (`jobs_to_keep`), and this
                // one may be among them by the time the end is written.
                let log_reason = log_file.as_deref().and_then(close_reason_from_log);
                let supervisor = Arc::clone(self);
                tokio::spawn(supervisor.record_crawl_end(
                    job.seq,
                    Ending::GoneBeforeStart,
                    log_reason,
                ));
                continue;
            }
            info!(job = %job.job_id, pid, "adopting running crawl");
            let supervisor = Arc::clone(self);
            let ticks = job.pid_start_ticks;
            tokio::spawn(async move {
                while process_start_ticks(pid) == ticks && !is_zombie(pid) {
                    tokio::time::sleep(ADOPTED_CHECK_INTERVAL).await;
                }
                let log_reason = last_words(log_file).await;
                supervisor
                    .record_crawl_end(job.seq, Ending::Vanished, log_reason)
                    .await;
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

/// Signals a crawl's process group (its pid: crawls lead their own group).
fn signal_group(pid: i32, signal: Signal) {
    // Never 0 or less: that would reach the daemon's own group, or all.
    if pid > 0
        && let Err(error) = killpg(Pid::from_raw(pid), signal)
        && error != Errno::ESRCH
    {
        warn!(%error, pid, %signal, "cannot signal a crawl's process group");
    }
}

/// Whether an error starting a crawl is the daemon's rather than the
/// job's: the machine is short of disk, memory, descriptors or processes,
/// or its disk failed. These pass, or are the operator's to fix, and every
/// job would fail the same way meanwhile: the job goes back to pending.
/// Anything else (no interpreter, not executable, a file in the way of the
/// job's log folder, arguments too long) is about this job and would fail
/// every try: the job is finished as `failed`.
fn is_daemon_side(error: &std::io::Error) -> bool {
    let Some(code) = error.raw_os_error() else {
        // std's own checks (a NUL byte in an argument) are about the job.
        return false;
    };
    matches!(
        Errno::from_raw(code),
        Errno::ENOSPC
            | Errno::EDQUOT
            | Errno::ENOMEM
            | Errno::EMFILE
            | Errno::ENFILE
            | Errno::EAGAIN
            | Errno::EINTR
            | Errno::EIO
            | Errno::EROFS
            | Errno::ETXTBSY
            | Errno::ENOBUFS
    )
}

/// Pauses between tries after a failure that is the daemon's: from
/// `first`, doubling up to `longest`.
#[derive(Debug)]
struct Backoff {
    first: Duration,
    longest: Duration,
    next: Duration,
}

impl Backoff {
    fn new(first: Duration, longest: Duration) -> Backoff {
        Backoff {
            first,
            longest,
            next: first,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(self.longest);
        delay
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

/// The close reason recorded for a crawl: a cancel, else Scrapy's own
/// word (start-crawl's `FIN`, or the log), else what the daemon knows.
fn close_reason(
    cancelled: bool,
    stopped_at_shutdown: bool,
    scrapy_reason: Option<String>,
    ending: Ending,
) -> String {
    if cancelled {
        return "cancelled".into();
    }
    if let Some(reason) = scrapy_reason {
        return reason;
    }
    match ending {
        // Killed before Scrapy could say why: the daemon knows.
        _ if stopped_at_shutdown => "shutdown".into(),
        Ending::Exited(Some(0)) => "finished".into(),
        Ending::GoneBeforeStart => "lost".into(),
        Ending::Exited(_) | Ending::Vanished => "failed".into(),
    }
}

/// The close reason a crawl's log gives, read as soon as the crawl is
/// known to have ended: later, launches of the same spider may have pruned
/// the log (`jobs_to_keep`), while the end waits for its capture to finish
/// or for the store.
async fn last_words(log_file: Option<PathBuf>) -> Option<String> {
    let log_file = log_file?;
    tokio::task::spawn_blocking(move || close_reason_from_log(&log_file))
        .await
        .ok()
        .flatten()
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
        let exited = |code| Ending::Exited(Some(code));
        assert_eq!(
            close_reason(true, false, Some("finished".into()), exited(0)),
            "cancelled"
        );
        assert_eq!(
            close_reason(false, false, Some("closespider_timeout".into()), exited(0)),
            "closespider_timeout"
        );
        assert_eq!(close_reason(false, false, None, exited(0)), "finished");
        assert_eq!(close_reason(false, false, None, exited(1)), "failed");
        assert_eq!(
            close_reason(false, false, None, Ending::Exited(None)),
            "failed"
        );
        assert_eq!(close_reason(false, false, None, Ending::Vanished), "failed");
        assert_eq!(
            close_reason(false, false, None, Ending::GoneBeforeStart),
            "lost"
        );
        assert_eq!(
            close_reason(
                false,
                false,
                Some("shutdown".into()),
                Ending::GoneBeforeStart
            ),
            "shutdown"
        );
    }

    #[test]
    fn crawls_stopped_at_shutdown_say_so_unless_their_log_does() {
        let exited = |code| Ending::Exited(Some(code));
        // KILLed after the grace, or no log: the daemon knows why it ended.
        assert_eq!(close_reason(false, true, None, exited(-9)), "shutdown");
        assert_eq!(close_reason(false, true, None, exited(0)), "shutdown");
        assert_eq!(
            close_reason(false, true, None, Ending::Vanished),
            "shutdown"
        );
        // Scrapy's own word wins: it says `shutdown` on TERM, or it had
        // finished by itself just before.
        assert_eq!(
            close_reason(false, true, Some("finished".into()), exited(0)),
            "finished"
        );
        assert_eq!(close_reason(true, true, None, exited(-9)), "cancelled");
    }

    #[test]
    fn the_daemons_failures_are_told_from_the_jobs() {
        let os = |errno: Errno| std::io::Error::from_raw_os_error(errno as i32);
        for daemons in [
            Errno::ENOSPC,
            Errno::EDQUOT,
            Errno::ENOMEM,
            Errno::EMFILE,
            Errno::ENFILE,
            Errno::EAGAIN,
            Errno::EROFS,
            Errno::EIO,
        ] {
            assert!(is_daemon_side(&os(daemons)), "{daemons}");
        }
        for jobs in [
            Errno::ENOENT,
            Errno::EACCES,
            Errno::ENOEXEC,
            Errno::E2BIG,
            Errno::ENOTDIR,
            Errno::EEXIST,
        ] {
            assert!(!is_daemon_side(&os(jobs)), "{jobs}");
        }
        let nul = std::process::Command::new("a\0b").spawn().unwrap_err();
        assert!(!is_daemon_side(&nul));
    }

    #[test]
    fn a_missing_interpreter_is_the_jobs_failure_a_full_table_the_daemons() {
        let missing = std::process::Command::new("/nonexistent/python")
            .spawn()
            .unwrap_err();
        assert!(matches!(
            LaunchError::from_io("cannot start".into(), &missing),
            LaunchError::Job(_)
        ));
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("python");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let not_executable = std::process::Command::new(&script).spawn().unwrap_err();
        assert!(matches!(
            LaunchError::from_io("cannot start".into(), &not_executable),
            LaunchError::Job(_)
        ));
    }

    #[test]
    fn retries_back_off_to_a_cap_and_start_over_after_success() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u128> = (0..6).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
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
