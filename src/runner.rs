//! How a crawl and a spider listing are started: the argv, the environment
//! and the working directory, exactly as the spec lays them out. Nothing
//! here waits for a process; the supervisor and the daemon do that.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::config::{Config, CrawlRunner, ItemsDir};
use crate::store::{Job, Version};

/// The folder a version is unpacked in.
pub fn version_dir(config: &Config, project: &str, version: &Version) -> PathBuf {
    config.eggs_dir.join(project).join(&version.dir_name)
}

/// The original egg, kept beside its unpacked folder.
pub fn egg_file(config: &Config, project: &str, dir_name: &str) -> PathBuf {
    config
        .eggs_dir
        .join(project)
        .join(format!("{dir_name}.egg"))
}

/// `<dir>/<project>/<spider>/<job>.<extension>`, the Scrapyd file layout.
pub fn job_file(dir: &Path, job: &Job, extension: &str) -> PathBuf {
    job_path(dir, &job.project, &job.spider, &job.job_id, extension)
}

/// [`job_file`] from the three names.
pub fn job_path(dir: &Path, project: &str, spider: &str, job_id: &str, extension: &str) -> PathBuf {
    dir.join(project)
        .join(spider)
        .join(format!("{job_id}.{extension}"))
}

/// Everything needed to start one crawl.
#[derive(Debug)]
pub struct CrawlLaunch {
    pub command: std::process::Command,
    /// The log file Scrapy writes, if logs are kept.
    pub log_file: Option<PathBuf>,
}

/// Builds the crawl of `job` with `version`, with the runner the
/// configuration picks for its project (see [`CrawlRunner`]).
pub fn crawl(config: &Config, job: &Job, version: &Version) -> std::io::Result<CrawlLaunch> {
    let shub = match config.crawl_runner {
        CrawlRunner::Scrapy => false,
        CrawlRunner::Shub => true,
        CrawlRunner::Auto => has_shub_runner(config.python_for(&job.project)),
    };
    if shub {
        shub_crawl(config, job, version)
    } else {
        scrapy_crawl(config, job, version)
    }
}

/// Scrapyd's way: `<python> -m scrapy crawl <spider> -s …user settings,
/// LOG_FILE, FEEDS, JOBDIR… -a _job=<id> -a …user args… [-a _version=<v>]`,
/// run in its own process group from the unpacked egg's folder. Creates
/// the log and items folders and prunes old files to `jobs_to_keep`.
fn scrapy_crawl(config: &Config, job: &Job, version: &Version) -> std::io::Result<CrawlLaunch> {
    let mut settings = job.settings.clone();
    let log_file = match &config.logs_dir {
        Some(dir) => {
            let path = prepare_job_file(dir, job, "log", config.jobs_to_keep)?;
            upsert(&mut settings, "LOG_FILE", path.display().to_string());
            Some(path)
        }
        None => None,
    };
    if let Some(items_dir) = &config.items_dir {
        let uri = match items_dir {
            ItemsDir::Local(dir) => {
                let path = prepare_job_file(dir, job, "jl", config.jobs_to_keep)?;
                file_uri(&path)
            }
            ItemsDir::Remote(url) => format!(
                "{}/{}/{}/{}.jl",
                url.trim_end_matches('/'),
                job.project,
                job.spider,
                job.job_id
            ),
        };
        let feeds = serde_json::json!({ uri: { "format": "jsonlines" } });
        upsert(&mut settings, "FEEDS", python_json(&feeds));
    }
    if let Some(path) = job_dir(config, job) {
        upsert(&mut settings, "JOBDIR", path.display().to_string());
    }

    let mut argv: Vec<String> = vec![
        "-m".into(),
        "scrapy".into(),
        "crawl".into(),
        job.spider.clone(),
    ];
    for (name, value) in &settings {
        argv.extend(["-s".into(), format!("{name}={value}")]);
    }
    argv.extend(["-a".into(), format!("_job={}", job.job_id)]);
    for (name, value) in &job.args {
        argv.extend(["-a".into(), format!("{name}={value}")]);
    }
    if let Some(asked) = &job.version {
        argv.extend(["-a".into(), format!("_version={asked}")]);
    }

    let egg_dir = version_dir(config, &job.project, version);
    let mut command = scrapy_command(config, &job.project, version, &egg_dir);
    command.args(&argv);
    if let Some(asked) = &job.version {
        command.env("SCRAPYD_EGG_VERSION", asked);
    }
    cloud_environment(config, job, &mut command);
    finish_crawl_command(command, log_file)
}

/// Scrapy Cloud's way: `<python> -m sh_scrapy.crawl` (`start-crawl`) with
/// the job in `SHUB_JOB_DATA` and its events written to a regular file in
/// the job's stream folder, which capture follows (and from which it
/// writes the Scrapyd log and items files). Spider arguments, settings and
/// tags go through the job data; `_job` and `_version` stay arguments.
fn shub_crawl(config: &Config, job: &Job, version: &Version) -> std::io::Result<CrawlLaunch> {
    let log_file = match &config.logs_dir {
        Some(dir) => Some(prepare_job_file(dir, job, "log", config.jobs_to_keep)?),
        None => None,
    };
    if let Some(dir) = config.local_items_dir() {
        prepare_job_file(dir, job, "jl", config.jobs_to_keep)?;
    }
    let stream_dir = config.stream_dir(job.seq);
    let temporary = stream_dir.join("tmp");
    std::fs::create_dir_all(&temporary)?;
    let mut settings: serde_json::Map<String, serde_json::Value> = job
        .settings
        .iter()
        .map(|(name, value)| (name.clone(), serde_json::Value::from(value.as_str())))
        .collect();
    if let Some(path) = job_dir(config, job) {
        settings.insert("JOBDIR".into(), path.display().to_string().into());
    }
    let mut spider_args: serde_json::Map<String, serde_json::Value> = job
        .args
        .iter()
        .map(|(name, value)| (name.clone(), serde_json::Value::from(value.as_str())))
        .collect();
    spider_args.insert("_job".into(), job.job_id.clone().into());
    if let Some(asked) = &job.version {
        spider_args.insert("_version".into(), asked.clone().into());
    }
    let job_data = serde_json::json!({
        "key": job.key(),
        "auth": job.meta.get("auth").cloned().unwrap_or_else(|| job.seq.to_string().into()),
        "spider": job.spider,
        "spider_args": spider_args,
        "settings": settings,
        "tags": job.tags,
        "spider_type": "manual",
        "api_url": config.local_url().map(|url| format!("{url}api/")),
    });
    let egg_dir = version_dir(config, &job.project, version);
    let mut command = scrapy_command(config, &job.project, version, &egg_dir);
    command
        .args(["-m", "sh_scrapy.crawl"])
        .env("SHUB_JOB_DATA", job_data.to_string())
        .env("SHUB_SETTINGS", "{}")
        .env("SHUB_FIFO_PATH", stream_file(config, job.seq))
        .env("TMPDIR", &temporary);
    if let Some(asked) = &job.version {
        command.env("SCRAPYD_EGG_VERSION", asked);
    }
    cloud_environment(config, job, &mut command);
    finish_crawl_command(command, log_file)
}

/// The event stream file of a job run with the `shub` runner.
pub fn stream_file(config: &Config, seq: i64) -> PathBuf {
    config.stream_dir(seq).join("stream")
}

/// `JOBDIR` of a job, when `jobs_dir` is set.
fn job_dir(config: &Config, job: &Job) -> Option<PathBuf> {
    config
        .jobs_dir
        .as_ref()
        .map(|dir| dir.join(&job.project).join(&job.spider).join(&job.job_id))
}

/// Output, standard input and process group, the same for both runners.
fn finish_crawl_command(
    mut command: tokio::process::Command,
    log_file: Option<PathBuf>,
) -> std::io::Result<CrawlLaunch> {
    // The crawl's own output (a traceback before logging is set up, say)
    // goes to the end of the job's log. Not a pipe: a pipe would kill the
    // crawl with SIGPIPE once this daemon exits, and crawls must outlive it.
    let (stdout, stderr) = match &log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            (Stdio::from(file.try_clone()?), Stdio::from(file))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    command.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    // Its own process group: a signal to the daemon's group (Ctrl-C, a
    // service manager) does not reach the crawl, and a KILL can reach all
    // of the crawl's children at once.
    command.process_group(0);
    Ok(CrawlLaunch {
        command: command.into_std(),
        log_file,
    })
}

/// Whether an interpreter has scrapinghub-entrypoint-scrapy, asked once
/// per interpreter.
fn has_shub_runner(python: &str) -> bool {
    static KNOWN: std::sync::Mutex<Option<std::collections::HashMap<String, bool>>> =
        std::sync::Mutex::new(None);
    let mut known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    let known = known.get_or_insert_with(Default::default);
    if let Some(answer) = known.get(python) {
        return *answer;
    }
    let answer = std::process::Command::new(python)
        .args(["-c", "import sh_scrapy.crawl"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    known.insert(python.to_string(), answer);
    answer
}

/// What a crawl needs to reach the Scrapy Cloud API of this daemon with
/// its own credentials, as Scrapy Cloud gives them to its jobs: the job's
/// key, `SHUB_JOBAUTH` (hex of `P/S/J:token`, valid while it runs) and the
/// daemon's storage and Dash URLs (when it listens on TCP).
fn cloud_environment(config: &Config, job: &Job, command: &mut tokio::process::Command) {
    let key = job.key();
    command.env("SHUB_JOBKEY", &key);
    if let Some(token) = job.meta.get("auth").and_then(|token| token.as_str()) {
        let credentials = format!("{key}:{token}");
        let hex: String = credentials
            .bytes()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        command.env("SHUB_JOBAUTH", hex);
    }
    if let Some(url) = config.local_url() {
        command.env("SHUB_STORAGE", &url);
        command.env("SHUB_APIURL", format!("{url}api/"));
    }
}

/// `<python> -m scrapy list`, run like a crawl of that version.
pub fn list_spiders(
    config: &Config,
    project: &str,
    version: &Version,
    egg_dir: &Path,
) -> tokio::process::Command {
    let mut command = scrapy_command(config, project, version, egg_dir);
    command
        .args(["-m", "scrapy", "list", "-s", "LOG_STDOUT=0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The part shared by crawls and listings: interpreter, environment and
/// working directory.
fn scrapy_command(
    config: &Config,
    project: &str,
    version: &Version,
    egg_dir: &Path,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(config.python_for(project));
    command
        .current_dir(egg_dir)
        .env("PYTHONPATH", python_path(egg_dir))
        .env("SCRAPY_SETTINGS_MODULE", &version.settings_module)
        .env("SCRAPY_PROJECT", project)
        .env("PYTHONIOENCODING", "UTF-8");
    command
}

/// The egg folder first, then whatever PYTHONPATH the daemon had.
fn python_path(egg_dir: &Path) -> std::ffi::OsString {
    let mut path = egg_dir.as_os_str().to_owned();
    if let Some(existing) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
        path.push(":");
        path.push(existing);
    }
    path
}

/// Sets a setting, keeping the position of one the user already gave
/// (a Python dict update, as in Scrapyd).
fn upsert(settings: &mut Vec<(String, String)>, name: &str, value: String) {
    match settings.iter_mut().find(|(existing, _)| existing == name) {
        Some(entry) => entry.1 = value,
        None => settings.push((name.to_string(), value)),
    }
}

/// Creates the folder of a job's file and prunes it to `keep` entries (see
/// [`prune_oldest`]) before the job's file is created there.
fn prepare_job_file(
    dir: &Path,
    job: &Job,
    extension: &str,
    keep: usize,
) -> std::io::Result<PathBuf> {
    let path = job_file(dir, job, extension);
    let folder = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(folder)?;
    prune_oldest(folder, keep)?;
    Ok(path)
}

/// Deletes all but the `keep` newest entries of `folder` (0 keeps all), as
/// Scrapyd does before a job's file is created: so `keep` finished jobs keep
/// their files beside the new one. As in Scrapyd, every entry counts, by its
/// modification time, though only files are deleted.
fn prune_oldest(folder: &Path, keep: usize) -> std::io::Result<()> {
    if keep == 0 {
        return Ok(());
    }
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(folder)?
        .filter_map(Result::ok)
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .collect();
    entries.sort();
    let excess = entries.len().saturating_sub(keep);
    for (_, old) in entries.into_iter().take(excess) {
        // A folder stays, and a file that is already gone is fine.
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}

/// `file:///abs/path` with the path percent-encoded where a URI needs it.
fn file_uri(path: &Path) -> String {
    const PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}');
    let text = path.to_string_lossy();
    format!(
        "file://{}",
        percent_encoding::utf8_percent_encode(&text, PATH)
    )
}

/// JSON as Python's `json.dumps` writes it, which is what Scrapyd puts in
/// the FEEDS setting.
fn python_json(value: &serde_json::Value) -> String {
    String::from_utf8_lossy(&crate::pyjson::to_vec(value)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_keeps_user_position() {
        let mut settings = vec![
            ("A".to_string(), "1".to_string()),
            ("LOG_FILE".into(), "x".into()),
        ];
        upsert(&mut settings, "LOG_FILE", "/logs/j.log".into());
        upsert(&mut settings, "FEEDS", "{}".into());
        assert_eq!(
            settings,
            vec![
                ("A".to_string(), "1".to_string()),
                ("LOG_FILE".into(), "/logs/j.log".into()),
                ("FEEDS".into(), "{}".into())
            ]
        );
    }

    #[test]
    fn pruning_keeps_the_newest_entries() {
        let folder = tempfile::tempdir().unwrap();
        let start = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let names = ["a.log", "b.log", "sub", "c.log", "d.log"];
        for (age, name) in names.iter().enumerate() {
            let path = folder.path().join(name);
            if *name == "sub" {
                std::fs::create_dir(&path).unwrap();
            } else {
                std::fs::write(&path, name).unwrap();
            }
            let time = start + std::time::Duration::from_secs(age as u64);
            std::fs::File::open(&path)
                .unwrap()
                .set_modified(time)
                .unwrap();
        }
        let left = || {
            let mut names: Vec<String> = std::fs::read_dir(folder.path())
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        prune_oldest(folder.path(), 0).unwrap();
        assert_eq!(left(), ["a.log", "b.log", "c.log", "d.log", "sub"]);
        prune_oldest(folder.path(), 3).unwrap();
        assert_eq!(left(), ["c.log", "d.log", "sub"]);
        // The folder counts, but stays.
        prune_oldest(folder.path(), 1).unwrap();
        assert_eq!(left(), ["d.log", "sub"]);
    }

    #[test]
    fn file_uris_are_absolute_and_encoded() {
        assert_eq!(file_uri(Path::new("/a b/c.jl")), "file:///a%20b/c.jl");
    }
}
