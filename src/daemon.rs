//! The domain's front door: one method per API operation, each taking
//! plain values and answering plain values or a [`DaemonError`] whose
//! message is the one Scrapyd clients expect. Both HTTP APIs are thin
//! layers over this.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::signal::Signal;
use tracing::info;

use crate::clock;
use crate::config::Config;
use crate::eggs::{self, EggError};
use crate::names::{self, DirectoryTraversal};
use crate::runner;
use crate::store::{
    DataStore, Job, JobCursor, JobFilter, JobSection, JobSnapshot, JobState, NewJob, Project,
    SharedStore, Store, StoreError, Version,
};
use crate::supervisor::Supervisor;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("project '{0}' not found")]
    ProjectNotFound(String),
    #[error("spider '{0}' not found")]
    SpiderNotFound(String),
    #[error("version '{0}' not found")]
    VersionNotFound(String),
    #[error(transparent)]
    Name(#[from] DirectoryTraversal),
    #[error(transparent)]
    Egg(#[from] EggError),
    /// `scrapy list` failed; carries what it printed.
    #[error("RunnerError: {0}")]
    Runner(String),
    /// A `setting` without `=`; worded as the Python error Scrapyd gives.
    #[error("ValueError: dictionary update sequence element #{0} has length 1; 2 is required")]
    BadSetting(usize),
    #[error("signal '{0}' is not a signal name or number")]
    BadSignal(String),
    #[error("job '{0}' not found")]
    JobNotFound(String),
    /// A Cloud API request that cannot be carried out as asked.
    #[error("{0}")]
    BadRequest(String),
    /// Records written to a collection that cannot be read as records; the
    /// message is Scrapy Cloud's (`Error parsing data, …`).
    #[error("{0}")]
    Unparsable(String),
    /// A record or value over the Cloud API's size limit.
    #[error("{0}")]
    TooLarge(String),
    /// A spider argument or setting no process could be started with.
    #[error("{kind} '{name}' cannot be passed to a process: {reason}")]
    Unpassable {
        kind: &'static str,
        name: String,
        reason: String,
    },
    #[error(
        "spider arguments and settings cannot be passed to a process: {total} bytes in all, at most {limit}"
    )]
    ArgumentsTooLong { total: usize, limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A task of the daemon's own failed (a bug, not the request's fault).
    #[error("internal error: {0}")]
    Internal(String),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type DaemonResult<T> = Result<T, DaemonError>;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
    move |source| DaemonError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A request to schedule a crawl, already parsed.
#[derive(Debug, Clone)]
pub struct ScheduleRequest {
    pub project: String,
    pub spider: String,
    pub version: Option<String>,
    /// `None` makes a new 32-hex-digit id.
    pub job_id: Option<String>,
    pub priority: f64,
    pub units: u32,
    /// `NAME=VALUE` texts, as given.
    pub settings: Vec<String>,
    pub args: Vec<(String, String)>,
    pub tags: Vec<String>,
}

/// The three sections of `listjobs.json` and the jobs page (pending,
/// running, finished), each read a page at a time from one snapshot
/// ([`Daemon::read_listing`]).
#[derive(Debug)]
pub struct JobListing {
    pub sections: [JobCursor; 3],
}

pub struct Daemon {
    pub config: Arc<Config>,
    store: Arc<Store>,
    /// Every job's items, logs, requests and stats samples.
    data: Arc<DataStore>,
    /// Collections and frontiers: their own database, so their volume never
    /// delays the job store.
    shared: Arc<SharedStore>,
    supervisor: Arc<Supervisor>,
    /// One upload at a time: two uploads of the same version must not
    /// interleave their file moves.
    uploads: tokio::sync::Mutex<()>,
}

impl Daemon {
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        data: Arc<DataStore>,
        shared: Arc<SharedStore>,
        supervisor: Arc<Supervisor>,
    ) -> Daemon {
        Daemon {
            config,
            store,
            data,
            shared,
            supervisor,
            uploads: tokio::sync::Mutex::new(()),
        }
    }

    /// The store, for the Cloud operations (`crate::cloud`).
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The job data store, for the Cloud operations (`crate::cloud`).
    pub(crate) fn data(&self) -> &DataStore {
        &self.data
    }

    /// The collections and frontiers (`crate::collections`, `crate::frontier`).
    pub(crate) fn shared(&self) -> &SharedStore {
        &self.shared
    }

    /// Tells the launcher a job may be ready to start.
    pub(crate) fn wake_launcher(&self) {
        self.supervisor.job_queued();
    }

    /// Asks one of this daemon's running crawls to stop, as `cancel.json`
    /// does with its default signal.
    pub(crate) fn stop_own_crawl(&self, job: &Job) -> DaemonResult<()> {
        Ok(self.supervisor.cancel(job, Signal::SIGINT)?)
    }

    // A project name is checked before anything else is done with it, in
    // one of Scrapyd 1.6's two ways, so that each operation answers a bad
    // name as Scrapyd does. Schedule, cancel, status, listspiders and
    // listjobs look it up among the known projects (`existing_project`:
    // `project '../p' not found`); listversions, delversion and delproject
    // build its folder name in the eggs folder (`project_in_eggs_dir`:
    // `DirectoryTraversalError: ../p`), and so does addversion, with the
    // same check, right after it has checked that the egg is a ZIP.

    /// A project among the known ones. A name that cannot be a folder name
    /// was never uploaded, so it is not found, without being looked up.
    fn existing_project(&self, name: &str) -> DaemonResult<Project> {
        let not_found = || DaemonError::ProjectNotFound(name.to_string());
        if !names::is_safe_component(name) {
            return Err(not_found());
        }
        self.store.project(name)?.ok_or_else(not_found)
    }

    /// A project in the eggs folder: its name must be a safe folder name
    /// (else `DirectoryTraversalError`), then it is looked up; `None` if it
    /// was never uploaded.
    fn project_in_eggs_dir(&self, name: &str) -> DaemonResult<Option<Project>> {
        names::check_project(name)?;
        Ok(self.store.project(name)?)
    }

    /// `(pending, running, finished)` as `daemonstatus.json` counts them.
    pub fn status_counts(&self) -> DaemonResult<(u64, u64, u64)> {
        Ok(self.store.job_counts(self.config.finished_to_keep)?)
    }

    /// Stores a new version of a project from an egg: checked, unpacked,
    /// its spiders listed once by Scrapy; only then recorded. Answers the
    /// number of spiders. On any error nothing is left behind and an
    /// earlier upload of the same version stays as it was.
    pub async fn add_version(
        &self,
        project: &str,
        version: &str,
        egg: bytes::Bytes,
    ) -> DaemonResult<usize> {
        let limits = self.config.egg_limits.clone();
        let egg_for_check = egg.clone();
        let (project_name, version_name) = (project.to_string(), version.to_string());
        // Scrapyd's order: is it a ZIP at all, then may the names become
        // folder names, then (here) is it a usable egg.
        let info = tokio::task::spawn_blocking(move || {
            eggs::check_zip(&egg_for_check)?;
            names::check_project(&project_name)?;
            names::check_version(&version_name)?;
            Ok::<_, DaemonError>(eggs::inspect_egg(&egg_for_check, &limits)?)
        })
        .await
        .map_err(|e| DaemonError::Internal(e.to_string()))??;
        let _upload = self.uploads.lock().await;

        let project_dir = self.config.eggs_dir.join(project);
        let new_project_dir = !project_dir.exists();
        let staging = project_dir.join(format!(".upload-{}", uuid::Uuid::new_v4().simple()));
        let result = self
            .install_version(project, version, egg, &staging, info.settings_module)
            .await;
        // Whatever is left of the staging files is garbage, success or not.
        let _ = std::fs::remove_dir_all(&staging);
        let _ = std::fs::remove_file(staging.with_extension("egg"));
        let _ = std::fs::remove_dir_all(staging.with_extension("old"));
        if result.is_err() && new_project_dir {
            let _ = std::fs::remove_dir_all(&project_dir);
        }
        result
    }

    /// The steps of [`Daemon::add_version`] that write, in the staging
    /// paths first and into place last.
    async fn install_version(
        &self,
        project: &str,
        version: &str,
        egg: bytes::Bytes,
        staging: &Path,
        settings_module: String,
    ) -> DaemonResult<usize> {
        let project_dir = self.config.eggs_dir.join(project);
        std::fs::create_dir_all(&project_dir).map_err(io_error(&project_dir))?;
        let limits = self.config.egg_limits.clone();
        let (egg_bytes, staging_dir) = (egg.clone(), staging.to_path_buf());
        tokio::task::spawn_blocking(move || eggs::unpack_egg(&egg_bytes, &staging_dir, &limits))
            .await
            .map_err(|e| DaemonError::Internal(e.to_string()))??;

        let mut record = Version {
            version: version.to_string(),
            dir_name: self.version_dir_name(project, version)?,
            settings_module,
            spiders: Vec::new(),
            uploaded_at: clock::now(),
        };
        record.spiders = self.list_spiders_of(project, &record, staging).await?;

        let final_dir = runner::version_dir(&self.config, project, &record);
        let egg_path = runner::egg_file(&self.config, project, &record.dir_name);
        let staged_egg = staging.with_extension("egg");
        std::fs::write(&staged_egg, &egg).map_err(io_error(&staged_egg))?;
        // Replace an earlier upload of the same version: move it aside and
        // the new one in; if that fails, put the old one back.
        let trash = staging.with_extension("old");
        let replacing = final_dir.exists();
        if replacing {
            std::fs::rename(&final_dir, &trash).map_err(io_error(&final_dir))?;
        }
        if let Err(error) = std::fs::rename(staging, &final_dir)
            .and_then(|()| std::fs::rename(&staged_egg, &egg_path))
        {
            if replacing {
                let _ = std::fs::remove_dir_all(&final_dir);
                let _ = std::fs::rename(&trash, &final_dir);
            }
            return Err(io_error(&final_dir)(error));
        }
        write_guard_cfg(&project_dir, &record.settings_module)?;
        self.store
            .put_version(project, &record, record.uploaded_at)?;
        info!(
            project,
            version,
            spiders = record.spiders.len(),
            "version added"
        );
        Ok(record.spiders.len())
    }

    /// The folder name of a version: the one it already has, else its
    /// escaped name, else (escaping can triple a name past what a file
    /// system takes) a unique name; the store remembers which.
    fn version_dir_name(&self, project: &str, version: &str) -> DaemonResult<String> {
        if let Some(project) = self.store.project(project)?
            && let Some(existing) = self.store.version(project.id, Some(version))?
        {
            return Ok(existing.dir_name);
        }
        let escaped = names::version_dir_name(version);
        Ok(if escaped.len() <= names::MAX_NAME_BYTES {
            escaped
        } else {
            format!("%{}", uuid::Uuid::new_v4().simple())
        })
    }

    /// Runs `scrapy list` on an unpacked egg.
    async fn list_spiders_of(
        &self,
        project: &str,
        version: &Version,
        egg_dir: &Path,
    ) -> DaemonResult<Vec<String>> {
        let mut command = runner::list_spiders(&self.config, project, version, egg_dir);
        let child = command.spawn().map_err(|e| {
            DaemonError::Runner(format!(
                "cannot start {}: {e}",
                self.config.python_for(project)
            ))
        })?;
        let output =
            tokio::time::timeout(self.config.list_spiders_timeout, child.wait_with_output())
                .await
                .map_err(|_| DaemonError::Runner("listing the spiders took too long".into()))?
                .map_err(|e| DaemonError::Runner(e.to_string()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stdout = String::from_utf8_lossy(&output.stdout);
            return Err(DaemonError::Runner(
                if stderr.is_empty() { stdout } else { stderr }.into_owned(),
            ));
        }
        let mut spiders: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(String::from)
            .collect();
        if let Some(bad) = spiders.iter().find(|name| !names::is_safe_component(name)) {
            return Err(DirectoryTraversal(bad.clone()).into());
        }
        spiders.sort();
        Ok(spiders)
    }

    /// Queues a crawl; answers its job id. The job is on disk when this
    /// returns, and the supervisor has been woken. A version named by its
    /// Scrapyd name (`1_0`) is recorded, and run, as the stored one (`1.0`).
    pub async fn schedule(&self, request: ScheduleRequest) -> DaemonResult<Job> {
        let project = self.existing_project(&request.project)?;
        // Scrapyd takes an empty `_version` for none (and still lists and
        // passes it as asked).
        let version = match &request.version {
            Some(wanted) if !wanted.is_empty() => self.named_version(&project, wanted)?,
            _ => self
                .store
                .version(project.id, None)?
                .ok_or_else(|| DaemonError::ProjectNotFound(project.name.clone()))?,
        };
        if !version.spiders.contains(&request.spider) {
            return Err(DaemonError::SpiderNotFound(request.spider));
        }
        let settings = parse_settings(&request.settings)?;
        check_passable(&settings, &request.args)?;
        let job_id = request.job_id.unwrap_or_else(new_job_id);
        names::check_job_path(&project.name, &request.spider, &job_id)?;
        let job = self
            .store
            .insert_job(&NewJob {
                job_id,
                project_id: project.id,
                project: project.name,
                spider: request.spider,
                version: request.version.map(|asked| {
                    if asked.is_empty() {
                        asked
                    } else {
                        version.version
                    }
                }),
                // NaN has no place in an order (and SQLite stores it as NULL):
                // Python's float() accepts it, so it is taken as the default.
                priority: if request.priority.is_nan() {
                    0.0
                } else {
                    request.priority
                },
                units: request.units,
                args: request.args,
                settings,
                tags: request.tags,
                pending_time: clock::now(),
                meta: serde_json::Map::new(),
                refuse_duplicate: false,
            })
            .await?;
        self.supervisor.job_queued();
        Ok(job)
    }

    /// Cancels a job: removed from the queue if pending, signalled if
    /// running. Answers the state it was in, or `None` if neither.
    pub fn cancel(
        &self,
        project: &str,
        job_id: &str,
        signal: &str,
    ) -> DaemonResult<Option<JobState>> {
        let project = self.existing_project(project)?;
        let signal =
            parse_signal(signal).ok_or_else(|| DaemonError::BadSignal(signal.to_string()))?;
        let mut previous = None;
        if self
            .store
            .cancel_pending(project.id, job_id, clock::now())?
            > 0
        {
            info!(job = job_id, project = %project.name, "pending job cancelled");
            previous = Some(JobState::Pending);
        }
        for job in self.store.running_with_id(project.id, job_id)? {
            self.supervisor.cancel(&job, signal)?;
            previous = Some(JobState::Running);
        }
        Ok(previous)
    }

    /// The version a request names, exactly or by its Scrapyd name
    /// (see [`Store::find_version`]).
    fn named_version(&self, project: &Project, name: &str) -> DaemonResult<Version> {
        self.store
            .find_version(project.id, name)?
            .ok_or_else(|| DaemonError::VersionNotFound(name.to_string()))
    }

    /// The Scrapyd state of a job id.
    pub fn job_state(&self, job_id: &str, project: Option<&str>) -> DaemonResult<Option<JobState>> {
        let name = self.checked_filter(project)?;
        let filter = name.as_deref().map_or(JobFilter::All, JobFilter::Project);
        Ok(self.store.scrapyd_state(job_id, filter)?)
    }

    /// The project name a listing is narrowed to, once checked to exist.
    fn checked_filter(&self, project: Option<&str>) -> DaemonResult<Option<String>> {
        project
            .map(|wanted| self.existing_project(wanted).map(|found| found.name))
            .transpose()
    }

    pub fn project_names(&self) -> DaemonResult<Vec<String>> {
        Ok(self.store.projects()?.into_iter().map(|p| p.name).collect())
    }

    /// Versions oldest first; an unknown project has none.
    pub fn version_names(&self, project: &str) -> DaemonResult<Vec<String>> {
        Ok(match self.project_in_eggs_dir(project)? {
            Some(project) => self
                .store
                .versions(project.id)?
                .into_iter()
                .map(|v| v.version)
                .collect(),
            None => Vec::new(),
        })
    }

    /// The spiders of a version (the current one by default), as listed at
    /// upload: no Python runs here.
    pub fn spider_names(&self, project: &str, version: Option<&str>) -> DaemonResult<Vec<String>> {
        let project = self.existing_project(project)?;
        // Scrapyd takes an empty `_version` for none, as schedule does.
        match version.filter(|wanted| !wanted.is_empty()) {
            Some(wanted) => Ok(self.named_version(&project, wanted)?.spiders),
            None => Ok(self
                .store
                .version(project.id, None)?
                .map(|current| current.spiders)
                .unwrap_or_default()),
        }
    }

    /// The jobs Scrapyd would list, optionally for one project: the
    /// project is checked now, the jobs are read as the listing is written.
    pub fn list_jobs(&self, project: Option<&str>) -> DaemonResult<JobListing> {
        let name = self.checked_filter(project)?;
        let cursor = |section| JobCursor::new(section, name.as_deref());
        Ok(JobListing {
            sections: [
                cursor(JobSection::Pending),
                cursor(JobSection::Running),
                cursor(JobSection::Finished {
                    keep: self.config.finished_to_keep,
                }),
            ],
        })
    }

    /// Runs `read` on one snapshot of the job store: the pages of a
    /// listing read through it agree with each other. Keep it short (see
    /// [`JobSnapshot`]).
    pub fn read_listing<T>(
        &self,
        read: impl FnOnce(&JobSnapshot) -> DaemonResult<T>,
    ) -> DaemonResult<T> {
        self.store.snapshot(read)
    }

    /// Deletes one version (named exactly or by its Scrapyd name), and the
    /// project with its last version.
    pub fn delete_version(&self, project: &str, version: &str) -> DaemonResult<()> {
        // Scrapyd answers an unknown project as an unknown version here.
        let project = self
            .project_in_eggs_dir(project)?
            .ok_or_else(|| DaemonError::VersionNotFound(version.to_string()))?;
        let record = self.named_version(&project, version)?;
        let version = record.version.as_str();
        let project_gone = self.store.delete_version(&project, version, clock::now())?;
        let _ = std::fs::remove_dir_all(runner::version_dir(&self.config, &project.name, &record));
        let _ = std::fs::remove_file(runner::egg_file(
            &self.config,
            &project.name,
            &record.dir_name,
        ));
        if project_gone {
            let _ = std::fs::remove_dir_all(self.config.eggs_dir.join(&project.name));
        }
        info!(project = %project.name, version, project_gone, "version deleted");
        Ok(())
    }

    /// Deletes a project with all its versions, its jobs' data, its
    /// collections and frontiers. Its pending jobs are cancelled; running
    /// crawls finish on their own (what they write is not kept).
    pub fn delete_project(&self, project: &str) -> DaemonResult<()> {
        let project = self
            .project_in_eggs_dir(project)?
            .ok_or_else(|| DaemonError::ProjectNotFound(project.to_string()))?;
        // Its data and stores go first: should the rest fail, the project
        // is still there to delete again, while stores left behind would
        // reappear in a new project given the same id.
        let mut after = (String::new(), 0);
        loop {
            let page = self.store.project_jobs_page(project.id, &after, 10_000)?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            self.data
                .delete_jobs(page.into_iter().map(|(_, seq)| seq).collect())?;
            after = last;
        }
        self.shared.purge_project(project.id)?;
        let cancelled = self.store.delete_project(&project, clock::now())?;
        let _ = std::fs::remove_dir_all(self.config.eggs_dir.join(&project.name));
        info!(project = %project.name, cancelled, "project deleted");
        Ok(())
    }

    /// The log and items files of a job, where they exist.
    pub fn job_files(
        &self,
        project: &str,
        spider: &str,
        job_id: &str,
    ) -> (Option<PathBuf>, Option<PathBuf>) {
        let existing = |dir: Option<&Path>, extension| {
            dir.map(|dir| runner::job_path(dir, project, spider, job_id, extension))
                .filter(|path| path.is_file())
        };
        (
            existing(self.config.logs_dir.as_deref(), "log"),
            existing(self.config.local_items_dir(), "jl"),
        )
    }
}

/// `NAME=VALUE` settings as a Python dict built from them: a repeated name
/// keeps its first place and its last value.
fn parse_settings(texts: &[String]) -> DaemonResult<Vec<(String, String)>> {
    let mut settings: Vec<(String, String)> = Vec::new();
    for (index, text) in texts.iter().enumerate() {
        let (name, value) = text.split_once('=').ok_or(DaemonError::BadSetting(index))?;
        match settings.iter_mut().find(|(existing, _)| existing == name) {
            Some(entry) => entry.1 = value.to_string(),
            None => settings.push((name.to_string(), value.to_string())),
        }
    }
    Ok(settings)
}

/// The longest single argument Linux passes to a process
/// (`MAX_ARG_STRLEN`), its terminating NUL included.
const MAX_ARGUMENT_BYTES: usize = 128 * 1024;

/// Room kept on the command line for what the daemon adds to a crawl's
/// (interpreter, `LOG_FILE`, `FEEDS`, `JOBDIR`, `_job`, `_version`).
const DAEMON_ARGUMENT_BYTES: usize = 16 * 1024;

/// Refuses settings and spider arguments that no process could be started
/// with (`E2BIG`, or a NUL that would cut them short), so that such a job
/// is never stored only to fail at launch.
pub(crate) fn check_passable(
    settings: &[(String, String)],
    args: &[(String, String)],
) -> DaemonResult<()> {
    let mut total = 0;
    let all = settings
        .iter()
        .map(|pair| ("setting", pair))
        .chain(args.iter().map(|pair| ("spider argument", pair)));
    for (kind, (name, value)) in all {
        let unpassable = |reason: String| DaemonError::Unpassable {
            kind,
            name: name.clone(),
            reason,
        };
        if name.contains('\0') || value.contains('\0') {
            return Err(unpassable("it contains a NUL byte".into()));
        }
        // `NAME=VALUE` and its NUL, after a `-s`/`-a` of its own; each
        // with its pointer in argv.
        let length = name.len() + 1 + value.len() + 1;
        if length > MAX_ARGUMENT_BYTES {
            return Err(unpassable(format!(
                "{} bytes, at most {} in one argument",
                length - 1,
                MAX_ARGUMENT_BYTES - 1
            )));
        }
        total += length + 3 + 2 * std::mem::size_of::<usize>();
    }
    let limit = argument_room();
    if total > limit {
        return Err(DaemonError::ArgumentsTooLong { total, limit });
    }
    Ok(())
}

/// What a crawl's settings and arguments may take of the command line:
/// `ARG_MAX` less the environment it inherits and the daemon's own part.
fn argument_room() -> usize {
    static ROOM: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *ROOM.get_or_init(|| {
        use nix::unistd::{SysconfVar, sysconf};
        let arg_max = sysconf(SysconfVar::ARG_MAX)
            .ok()
            .flatten()
            .and_then(|value| usize::try_from(value).ok())
            .unwrap_or(128 * 1024);
        let environment: usize = std::env::vars_os()
            .map(|(name, value)| name.len() + value.len() + 2 + std::mem::size_of::<usize>())
            .sum();
        arg_max.saturating_sub(environment + DAEMON_ARGUMENT_BYTES)
    })
}

/// A signal given by name (`INT`, `SIGTERM`, case-insensitive) or number.
pub fn parse_signal(text: &str) -> Option<Signal> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).ok();
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().ok()
}

/// A `scrapy.cfg` in the project's egg folder, so that Scrapy, looking for
/// one upwards from a crawl's working directory, stops here instead of
/// picking up a stray one above the eggs folder (and keeps its `.scrapy`
/// data folder per project).
fn write_guard_cfg(project_dir: &Path, settings_module: &str) -> DaemonResult<()> {
    let path = project_dir.join("scrapy.cfg");
    let text = format!("[settings]\ndefault = {settings_module}\n");
    std::fs::write(&path, text).map_err(io_error(&path))
}

/// A new job id: 32 hex digits like Scrapyd's `uuid1().hex`, and like it
/// ordered by time. It is a UUIDv7 (milliseconds since the epoch, then
/// random bits), so the jobs of one group commit sit side by side in the
/// job-id index: the commit writes one page of it, not one per job.
pub(crate) fn new_job_id() -> String {
    let random = uuid::Uuid::new_v4();
    let mut bits = [0; 10];
    bits.copy_from_slice(&random.as_bytes()[..10]);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    uuid::Builder::from_unix_timestamp_millis(millis, &bits)
        .into_uuid()
        .simple()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_job_ids_are_hex_and_start_with_the_time() {
        let millis = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        let before = millis();
        let id = new_job_id();
        let after = millis();
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        let stamp = u64::from_str_radix(&id[..12], 16).unwrap();
        assert!((before..=after).contains(&stamp), "{id}");
        assert_ne!(new_job_id(), new_job_id());
    }

    #[test]
    fn settings_as_a_python_dict() {
        let texts = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_settings(&texts(&["A=1", "B=x=y", "A=2"])).unwrap(),
            vec![
                ("A".to_string(), "2".to_string()),
                ("B".to_string(), "x=y".to_string())
            ]
        );
        assert_eq!(
            parse_settings(&texts(&["A=1", "B=2", ""]))
                .unwrap_err()
                .to_string(),
            "ValueError: dictionary update sequence element #2 has length 1; 2 is required"
        );
    }

    #[test]
    fn arguments_a_process_cannot_take_are_refused() {
        let pair = |name: &str, value: String| vec![(name.to_string(), value)];
        assert!(check_passable(&pair("A", "1".into()), &pair("a", "x".repeat(1000))).is_ok());
        let long = "x".repeat(MAX_ARGUMENT_BYTES);
        assert_eq!(
            check_passable(&[], &pair("a", long))
                .unwrap_err()
                .to_string(),
            "spider argument 'a' cannot be passed to a process: 131074 bytes, at most 131071 in one argument"
        );
        assert_eq!(
            check_passable(&pair("S", "a\0b".into()), &[])
                .unwrap_err()
                .to_string(),
            "setting 'S' cannot be passed to a process: it contains a NUL byte"
        );
        let many: Vec<(String, String)> = (0..100)
            .map(|index| (format!("a{index}"), "x".repeat(100_000)))
            .collect();
        assert!(matches!(
            check_passable(&[], &many),
            Err(DaemonError::ArgumentsTooLong { .. })
        ));
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("INT"), Some(Signal::SIGINT));
        assert_eq!(parse_signal("term"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGKILL"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("BOGUS"), None);
        assert_eq!(parse_signal("999"), None);
    }
}
