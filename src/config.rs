//! Configuration: Scrapyd's `scrapyd.conf` files, environment overrides and
//! this project's own options, turned into one typed [`Config`].
//!
//! Files are INI, section `[scrapyd]`, read in Scrapyd's order (later files
//! win): `/etc/scrapyd/scrapyd.conf`, `/etc/scrapyd/conf.d/*` (sorted),
//! `./scrapyd.conf`, `~/.scrapyd.conf`. `--config FILE` reads only that file.
//! Every option is documented in `config/scrapyd.conf`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::eggs::EggLimits;

/// The options that name Python classes in Scrapyd. They have no meaning
/// here: a file that sets them is still accepted, with a warning.
const PYTHON_CLASS_OPTIONS: &[&str] = &[
    "application",
    "launcher",
    "spiderqueue",
    "jobstorage",
    "eggstorage",
    "webroot",
    "runner",
    "poller",
];

/// The Scrapyd endpoints, as named in the `[services]` section.
pub const SERVICES: &[&str] = &[
    "schedule.json",
    "cancel.json",
    "status.json",
    "addversion.json",
    "listprojects.json",
    "listversions.json",
    "listspiders.json",
    "delproject.json",
    "delversion.json",
    "listjobs.json",
    "daemonstatus.json",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("option {option} = {value:?}: {expected}")]
    Invalid {
        option: String,
        value: String,
        expected: &'static str,
    },
    #[error("username must not contain ':' (HTTP basic authentication could not carry it)")]
    ColonInUsername,
}

/// The typed configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the TCP listener; empty disables TCP.
    pub bind_address: String,
    pub http_port: u16,
    /// A unix socket to listen on as well as TCP.
    pub unix_socket_path: Option<PathBuf>,
    /// Basic authentication, enabled when both are set.
    pub username: String,
    pub password: String,
    /// Process slots: `max_proc`, or cpus × `max_proc_per_cpu` when 0.
    pub max_proc: usize,
    pub eggs_dir: PathBuf,
    /// `None` when `logs_dir` is empty: crawls then write no log file.
    pub logs_dir: Option<PathBuf>,
    /// Where item feeds go; `None` when unset.
    pub items_dir: Option<ItemsDir>,
    pub jobs_dir: Option<PathBuf>,
    pub dbs_dir: PathBuf,
    /// Log and item files kept per spider (0 keeps all).
    pub jobs_to_keep: usize,
    /// Finished jobs shown by listjobs and the jobs page (0 shows all).
    pub finished_to_keep: usize,
    /// The request header that carries the URL prefix of a reverse proxy.
    pub prefix_header: String,
    pub node_name: String,
    /// Error answers carry the error's full chain instead of the message.
    pub debug: bool,
    /// The interpreter that runs Scrapy, and per-project overrides.
    pub python: String,
    pub project_python: HashMap<String, String>,
    /// Endpoints switched off with an empty value in `[services]`.
    pub disabled_services: HashSet<String>,
    /// After a second cancel of a running crawl, KILL it if it is still
    /// alive this long after.
    pub cancel_kill_grace: Duration,
    /// After the first cancel, KILL the crawl if it is still alive this long
    /// after; `None` waits for the crawl to stop by itself.
    pub cancel_timeout: Option<Duration>,
    /// What SIGTERM does to running crawls.
    pub crawls_on_shutdown: CrawlsOnShutdown,
    /// How crawls are started: Scrapyd's way or Scrapy Cloud's.
    pub crawl_runner: CrawlRunner,
    /// Limits applied to uploaded eggs.
    pub egg_limits: EggLimits,
    /// The largest egg upload (`addversion.json`) accepted, in bytes.
    pub max_body_size: usize,
    /// The largest body of every other request, in bytes.
    pub max_request_body_size: usize,
    /// The largest batch of records (job data, collections, frontier)
    /// one Cloud API write may carry, in bytes.
    pub max_data_body_size: usize,
    /// The keys the Scrapy Cloud API accepts (HTTP Basic user); none
    /// configured leaves it open.
    pub cloud_api_keys: Vec<String>,
    /// The bot groups whose projects this node's supervisor runs; a
    /// project whose `botgroups` setting names only others is left to
    /// outside workers.
    pub bot_groups: Vec<String>,
    /// How long a client may take to send its headers, and its body.
    pub http_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long `scrapy list` may take before an upload is refused.
    pub list_spiders_timeout: Duration,
    /// Warnings found while reading the files, logged once at start.
    pub warnings: Vec<String>,
}

/// Scrapyd's `items_dir` is a local folder or any feed URL Scrapy can write.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemsDir {
    /// Items are written and served from this folder.
    Local(PathBuf),
    /// Items go to a remote feed storage (s3://…); not served here.
    Remote(String),
}

impl Config {
    /// The daemon's own base URL for processes on this machine, when it
    /// listens on TCP: `http://127.0.0.1:6800/` for a wildcard address.
    pub fn local_url(&self) -> Option<String> {
        if self.bind_address.is_empty() || self.http_port == 0 {
            return None;
        }
        let host = match self.bind_address.as_str() {
            "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
            address => address,
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Some(format!("http://{host}:{}/", self.http_port))
    }
}

/// A list option: words separated by commas or white space.
fn word_list(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|word| !word.is_empty())
        .map(str::to_string)
        .collect()
}

/// How a crawl is run (`crawl_runner`; Scrapyd's own `runner` names a
/// Python module and is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrawlRunner {
    /// `python -m scrapy crawl`, as Scrapyd does; its log and items feed
    /// files are followed.
    Scrapy,
    /// `start-crawl` of scrapinghub-entrypoint-scrapy, as Scrapy Cloud
    /// does; its event stream is followed (requests and periodic stats
    /// too), and the Scrapyd files are written from it.
    Shub,
    /// `Shub` where the project's interpreter has scrapinghub-entrypoint-
    /// scrapy, `Scrapy` elsewhere.
    Auto,
}

/// What a stopping daemon does to the crawls it runs (`crawls_on_shutdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrawlsOnShutdown {
    /// Leave them running; the next start adopts them. An upgrade or a
    /// restart of the daemon does not interrupt a crawl.
    Leave,
    /// TERM each crawl's process group, KILL it after `cancel_kill_grace`,
    /// and record its end (close reason `shutdown`) before exiting.
    Stop,
}

/// Raw `section -> option -> value` pairs, later files overriding earlier.
type RawIni = BTreeMap<String, BTreeMap<String, String>>;

impl Config {
    /// Reads the configuration: `explicit` alone when given, otherwise the
    /// Scrapyd search path; then applies the `SCRAPYD_*` environment.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let mut raw = RawIni::new();
        match explicit {
            Some(path) => merge_file(&mut raw, path, true)?,
            None => {
                for path in search_path() {
                    merge_file(&mut raw, &path, false)?;
                }
            }
        }
        let env: HashMap<String, String> = std::env::vars().collect();
        Config::from_raw(&raw, &env)
    }

    /// Builds a configuration from INI text alone (no search path, no
    /// environment); used by tests and tools.
    pub fn from_ini_text(text: &str) -> Result<Config, ConfigError> {
        let mut raw = RawIni::new();
        merge_text(&mut raw, text, Path::new("<text>"))?;
        Config::from_raw(&raw, &HashMap::new())
    }

    fn from_raw(raw: &RawIni, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let empty = BTreeMap::new();
        let section = raw.get("scrapyd").unwrap_or(&empty);
        let options = Options { section, env };
        let mut warnings = Vec::new();
        for option in PYTHON_CLASS_OPTIONS {
            if let Some(value) = section.get(*option) {
                warnings.push(format!(
                    "option {option} = {value} names a Python class; scrapyd-rs ignores it"
                ));
            }
        }
        // Scrapyd also serves projects named here, run from their settings
        // module on its own Python path, without an egg; not done here.
        if let Some(projects) = raw.get("settings").filter(|projects| !projects.is_empty()) {
            let names: Vec<&str> = projects.keys().map(String::as_str).collect();
            warnings.push(format!(
                "the [settings] section's projects ({}) are not served: scrapyd-rs runs \
                 projects from uploaded eggs only (deploy them with scrapyd-deploy)",
                names.join(", ")
            ));
        }

        let max_proc = match options.number::<usize>("max_proc", 0)? {
            0 => {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                cpus * options.number::<usize>("max_proc_per_cpu", 4)?
            }
            n => n,
        };
        let username = options.text("username", "SCRAPYD_USERNAME", "");
        if username.contains(':') {
            return Err(ConfigError::ColonInUsername);
        }
        let node_name = match options.text("node_name", "", "") {
            name if name.is_empty() => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".to_string()),
            name => name,
        };
        let items_dir = match options.text("items_dir", "", "") {
            dir if dir.is_empty() => None,
            dir => Some(parse_items_dir(&dir)),
        };
        let cancel_timeout = options.number::<f64>("cancel_timeout", 0.0)?;
        let disabled_services = raw
            .get("services")
            .map(|services| {
                services
                    .iter()
                    .filter(|(_, value)| value.trim().is_empty())
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default();

        Ok(Config {
            bind_address: options.text("bind_address", "SCRAPYD_BIND_ADDRESS", "127.0.0.1"),
            http_port: options.number_env("http_port", "SCRAPYD_HTTP_PORT", 6800)?,
            unix_socket_path: non_empty_path(options.text(
                "unix_socket_path",
                "SCRAPYD_UNIX_SOCKET_PATH",
                "",
            )),
            username,
            password: options.text("password", "SCRAPYD_PASSWORD", ""),
            max_proc,
            eggs_dir: PathBuf::from(options.text("eggs_dir", "", "eggs")),
            logs_dir: non_empty_path(options.text("logs_dir", "", "logs")),
            items_dir,
            jobs_dir: non_empty_path(options.text("jobs_dir", "", "")),
            dbs_dir: PathBuf::from(options.text("dbs_dir", "", "dbs")),
            jobs_to_keep: options.number("jobs_to_keep", 5)?,
            finished_to_keep: options.number("finished_to_keep", 100)?,
            prefix_header: options
                .text("prefix_header", "", "x-forwarded-prefix")
                .to_ascii_lowercase(),
            node_name,
            debug: options.boolean("debug", false)?,
            python: options.text("python", "SCRAPYD_PYTHON", "python3"),
            project_python: raw
                .get("python")
                .map(|s| s.clone().into_iter().collect())
                .unwrap_or_default(),
            disabled_services,
            cancel_kill_grace: Duration::from_secs_f64(
                options.number::<f64>("cancel_kill_grace", 5.0)?.max(0.0),
            ),
            cancel_timeout: (cancel_timeout > 0.0).then(|| Duration::from_secs_f64(cancel_timeout)),
            crawls_on_shutdown: options.crawls_on_shutdown()?,
            crawl_runner: options.crawl_runner()?,
            egg_limits: EggLimits {
                max_unpacked_bytes: options.number("egg_max_unpacked_size", 512 * 1024 * 1024)?,
                max_entries: options.number("egg_max_entries", 20_000)?,
            },
            max_body_size: options.number("max_body_size", 256 * 1024 * 1024)?,
            max_request_body_size: options.number("max_request_body_size", 1024 * 1024)?,
            max_data_body_size: options.number("max_data_body_size", 32 * 1024 * 1024)?,
            cloud_api_keys: word_list(&options.text("cloud_api_keys", "", "")),
            bot_groups: word_list(&options.text("bot_groups", "", "")),
            http_timeout: Duration::from_secs_f64(
                options.number::<f64>("http_timeout", 30.0)?.max(0.1),
            ),
            max_connections: options.number::<usize>("max_connections", 1000)?.max(1),
            list_spiders_timeout: Duration::from_secs_f64(
                options
                    .number::<f64>("list_spiders_timeout", 120.0)?
                    .max(1.0),
            ),
            warnings,
        })
        .map(|mut config| {
            // `poll_interval` is read only to check it: launching is
            // event-driven here, so its value has no effect.
            if let Err(error) = options.number::<f64>("poll_interval", 5.0) {
                config.warnings.push(error.to_string());
            }
            config
        })
    }

    /// Makes every folder absolute against the current directory, once at
    /// start: crawls run elsewhere and their settings need absolute paths.
    pub fn make_paths_absolute(&mut self) -> std::io::Result<()> {
        self.eggs_dir = std::path::absolute(&self.eggs_dir)?;
        self.dbs_dir = std::path::absolute(&self.dbs_dir)?;
        for folder in [&mut self.logs_dir, &mut self.jobs_dir]
            .into_iter()
            .flatten()
        {
            *folder = std::path::absolute(&*folder)?;
        }
        if let Some(ItemsDir::Local(folder)) = &mut self.items_dir {
            *folder = std::path::absolute(&*folder)?;
        }
        Ok(())
    }

    /// The interpreter for one project: its `[python]` entry or `python`.
    pub fn python_for(&self, project: &str) -> &str {
        self.project_python
            .get(project)
            .map_or(self.python.as_str(), String::as_str)
    }

    /// Whether basic authentication is on.
    pub fn auth_enabled(&self) -> bool {
        !self.username.is_empty() && !self.password.is_empty()
    }

    /// The local items folder, when items are written locally.
    pub fn local_items_dir(&self) -> Option<&Path> {
        match &self.items_dir {
            Some(ItemsDir::Local(path)) => Some(path),
            _ => None,
        }
    }

    /// Where the SQLite database lives.
    pub fn database_path(&self) -> PathBuf {
        self.dbs_dir.join("scrapyd-rs.sqlite")
    }

    /// The folder of a job's event stream (the `shub` runner): the stream
    /// file and the crawl's temporary folder, removed once captured.
    pub fn stream_dir(&self, seq: i64) -> PathBuf {
        self.dbs_dir.join("streams").join(seq.to_string())
    }

    /// Where the job data database (items, logs, requests, samples) lives.
    pub fn data_database_path(&self) -> PathBuf {
        self.dbs_dir.join("scrapyd-rs-data.sqlite")
    }

    /// Where the collections and frontiers live: a database of their own.
    pub fn shared_database_path(&self) -> PathBuf {
        self.dbs_dir.join("scrapyd-rs-stores.sqlite")
    }
}

/// Typed reads of the `[scrapyd]` section with environment overrides.
struct Options<'a> {
    section: &'a BTreeMap<String, String>,
    env: &'a HashMap<String, String>,
}

impl Options<'_> {
    /// The option's text: the environment variable when set and non-empty,
    /// else the file, else the default.
    fn text(&self, option: &str, env_var: &str, default: &str) -> String {
        if !env_var.is_empty()
            && let Some(value) = self.env.get(env_var).filter(|v| !v.is_empty())
        {
            return value.clone();
        }
        self.section
            .get(option)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    fn number<T: std::str::FromStr>(&self, option: &str, default: T) -> Result<T, ConfigError> {
        self.number_env(option, "", default)
    }

    fn number_env<T: std::str::FromStr>(
        &self,
        option: &str,
        env_var: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        let value = self.text(option, env_var, "");
        if value.is_empty() {
            return Ok(default);
        }
        value.trim().parse().map_err(|_| ConfigError::Invalid {
            option: option.to_string(),
            value,
            expected: "expected a number",
        })
    }

    fn crawls_on_shutdown(&self) -> Result<CrawlsOnShutdown, ConfigError> {
        let value = self.text("crawls_on_shutdown", "", "");
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "leave" => Ok(CrawlsOnShutdown::Leave),
            "stop" => Ok(CrawlsOnShutdown::Stop),
            _ => Err(ConfigError::Invalid {
                option: "crawls_on_shutdown".into(),
                value,
                expected: "expected leave (crawls keep running for the next start) or stop",
            }),
        }
    }

    fn crawl_runner(&self) -> Result<CrawlRunner, ConfigError> {
        let value = self.text("crawl_runner", "", "");
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "scrapy" => Ok(CrawlRunner::Scrapy),
            "shub" => Ok(CrawlRunner::Shub),
            "auto" => Ok(CrawlRunner::Auto),
            _ => Err(ConfigError::Invalid {
                option: "crawl_runner".into(),
                value,
                expected: "expected scrapy (python -m scrapy crawl), shub (start-crawl) or auto",
            }),
        }
    }

    /// Booleans as Python's ConfigParser reads them.
    fn boolean(&self, option: &str, default: bool) -> Result<bool, ConfigError> {
        let value = self.text(option, "", "");
        match value.trim().to_ascii_lowercase().as_str() {
            "" => Ok(default),
            "1" | "yes" | "true" | "on" => Ok(true),
            "0" | "no" | "false" | "off" => Ok(false),
            _ => Err(ConfigError::Invalid {
                option: option.to_string(),
                value,
                expected: "expected on/off, yes/no, true/false or 1/0",
            }),
        }
    }
}

fn non_empty_path(value: String) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
}

/// `items_dir` may be a path, a `file://` URL or a remote feed URL.
fn parse_items_dir(value: &str) -> ItemsDir {
    if let Some(path) = value.strip_prefix("file://") {
        return ItemsDir::Local(PathBuf::from(path));
    }
    match value.split_once("://") {
        Some((scheme, _)) if scheme.len() > 1 => ItemsDir::Remote(value.to_string()),
        _ => ItemsDir::Local(PathBuf::from(value)),
    }
}

/// Scrapyd's search path, in the order the files are read.
fn search_path() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("/etc/scrapyd/scrapyd.conf")];
    if let Ok(entries) = std::fs::read_dir("/etc/scrapyd/conf.d") {
        let mut extra: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        extra.sort();
        paths.extend(extra);
    }
    paths.push(PathBuf::from("scrapyd.conf"));
    if let Some(home) = std::env::var_os("HOME") {
        paths.push(Path::new(&home).join(".scrapyd.conf"));
    }
    paths
}

/// Merges one file into `raw`. A missing file of the search path is
/// skipped, as Python's ConfigParser does; a missing `--config` is an error.
fn merge_file(raw: &mut RawIni, path: &Path, must_exist: bool) -> Result<(), ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if !must_exist && error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                message: error.to_string(),
            });
        }
    };
    merge_text(raw, &text, path)
}

fn merge_text(raw: &mut RawIni, text: &str, path: &Path) -> Result<(), ConfigError> {
    // Case-sensitive parsing keeps `[python]` project names intact; option
    // names of `[scrapyd]` and `[services]` are folded to lower case as
    // Python's ConfigParser does.
    let mut ini = configparser::ini::Ini::new_cs();
    let parsed = ini
        .read(text.to_string())
        .map_err(|message| ConfigError::Read {
            path: path.to_path_buf(),
            message,
        })?;
    for (section, options) in parsed {
        let fold_case = section != "python";
        let target = raw.entry(section).or_default();
        for (option, value) in options {
            let option = if fold_case {
                option.to_ascii_lowercase()
            } else {
                option
            };
            target.insert(option, value.unwrap_or_default());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_scrapyds() {
        let config = Config::from_ini_text("").unwrap();
        assert_eq!(config.bind_address, "127.0.0.1");
        assert_eq!(config.http_port, 6800);
        assert_eq!(config.eggs_dir, PathBuf::from("eggs"));
        assert_eq!(config.logs_dir, Some(PathBuf::from("logs")));
        assert_eq!(config.items_dir, None);
        assert_eq!(config.jobs_to_keep, 5);
        assert_eq!(config.finished_to_keep, 100);
        assert_eq!(config.prefix_header, "x-forwarded-prefix");
        assert_eq!(config.python, "python3");
        assert!(!config.auth_enabled());
        assert!(config.max_proc >= 4);
    }

    #[test]
    fn projects_of_the_settings_section_are_said_to_be_absent() {
        let config =
            Config::from_ini_text("[scrapyd]\n[settings]\nlocal = local.settings\n").unwrap();
        assert_eq!(config.warnings.len(), 1);
        assert!(
            config.warnings[0].contains("(local) are not served"),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn reads_options_python_section_and_services() {
        let config = Config::from_ini_text(
            "[scrapyd]\nHTTP_PORT = 7000\nmax_proc: 3\nlogs_dir =\nitems_dir = s3://bucket/items\n\
             launcher = my.Launcher\ndebug = on\n\n[python]\nMyProject = /venv/bin/python\n\n\
             [services]\nschedule.json =\nlistjobs.json = scrapyd.webservice.ListJobs\n",
        )
        .unwrap();
        assert_eq!(config.http_port, 7000);
        assert_eq!(config.max_proc, 3);
        assert_eq!(config.logs_dir, None);
        assert_eq!(
            config.items_dir,
            Some(ItemsDir::Remote("s3://bucket/items".into()))
        );
        assert!(config.debug);
        assert_eq!(config.python_for("MyProject"), "/venv/bin/python");
        assert_eq!(config.python_for("other"), "python3");
        assert!(config.disabled_services.contains("schedule.json"));
        assert!(!config.disabled_services.contains("listjobs.json"));
        assert_eq!(config.warnings.len(), 1);
    }

    #[test]
    fn environment_overrides_unless_empty() {
        let mut raw = RawIni::new();
        merge_text(
            &mut raw,
            "[scrapyd]\nhttp_port = 7000\nbind_address = 0.0.0.0\n",
            Path::new("t"),
        )
        .unwrap();
        let env = HashMap::from([
            ("SCRAPYD_HTTP_PORT".to_string(), "7001".to_string()),
            ("SCRAPYD_BIND_ADDRESS".to_string(), String::new()),
        ]);
        let config = Config::from_raw(&raw, &env).unwrap();
        assert_eq!(config.http_port, 7001);
        assert_eq!(config.bind_address, "0.0.0.0");
    }

    #[test]
    fn rejects_bad_numbers_and_colon_in_username() {
        assert!(Config::from_ini_text("[scrapyd]\nmax_proc = many\n").is_err());
        assert!(Config::from_ini_text("[scrapyd]\nusername = a:b\npassword = x\n").is_err());
    }

    #[test]
    fn crawls_on_shutdown_is_leave_or_stop() {
        let read = |text: &str| Config::from_ini_text(text).map(|c| c.crawls_on_shutdown);
        assert_eq!(read("").unwrap(), CrawlsOnShutdown::Leave);
        assert_eq!(
            read("[scrapyd]\ncrawls_on_shutdown = Stop\n").unwrap(),
            CrawlsOnShutdown::Stop
        );
        let error = read("[scrapyd]\ncrawls_on_shutdown = kill\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "option crawls_on_shutdown = \"kill\": expected leave (crawls keep running for the next start) or stop"
        );
    }

    #[test]
    fn items_dir_forms() {
        assert_eq!(
            parse_items_dir("file:///var/items"),
            ItemsDir::Local("/var/items".into())
        );
        assert_eq!(parse_items_dir("items"), ItemsDir::Local("items".into()));
    }
}
