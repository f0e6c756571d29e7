//! scrapyd-rs: a drop-in replacement for the Scrapyd daemon.
//!
//! One process that speaks Scrapyd's HTTP API, keeps every project, version
//! and job in SQLite, and runs each crawl as a real `python -m scrapy crawl`
//! child in its own process group. A map of the crate, from the wire inwards:
//!
//! - [`http`]: the HTTP server. Parses requests, checks authentication,
//!   calls exactly one [`daemon::Daemon`] function per request and renders
//!   its answer: Scrapyd's byte-exact JSON or HTML, or the Scrapy Cloud
//!   API's JSON and JSON lines (`http::cloud`). Knows nothing of SQLite or
//!   processes.
//! - [`daemon`]: the domain's front door. Each API operation (add a version,
//!   schedule, cancel, list…) is one method here, with one error type whose
//!   messages are the ones Scrapyd clients expect.
//! - [`store`]: SQLite, the single source of truth. Every state change is one
//!   transaction; an "ok" answer means the change is on disk.
//! - [`supervisor`]: the process slots. Woken by every schedule and every
//!   exit (no polling), it launches the best pending job, follows it to its
//!   end, cancels with signals, and adopts crawls that outlived a previous
//!   daemon.
//! - [`capture`]: follows what each crawl writes (its log and items
//!   feed) into the job data store, from committed offsets.
//! - [`runner`]: how a crawl or a spider listing is started: argv,
//!   environment, working directory, output files.
//! - [`priority`]: bulk work (capture, the job data writes) runs at a
//!   lower CPU priority than the answers to requests.
//! - [`cloud`]: the domain operations only the Scrapy Cloud API needs
//!   (jobs by key, metadata, outside workers, settings, activity), on the
//!   same store and supervisor.
//! - [`collections`] and [`frontier`]: the stores a project's jobs share
//!   (Scrapy Cloud's collections and crawl frontier), in a database of
//!   their own (`store::SharedStore`).
//! - [`eggs`]: checking and unpacking uploaded eggs.
//! - [`record`]: one record of job data as JSON text: checked and made
//!   compact on the way in, transcoded to msgpack on the way out, without
//!   building a `Value`.
//! - [`filter`]: the record filters of the Scrapy Cloud storage API.
//! - [`version`]: the loose-version order of version strings.
//! - [`names`]: which project names are allowed and how versions map to
//!   folder names, so no path is built from unchecked input.
//! - [`config`]: `scrapyd.conf` files, environment overrides, typed options.
//! - [`clock`]: timestamps and Scrapyd's local-time formats.
//! - [`pyjson`]: JSON written byte for byte as Python's `json.dumps`.
//! - [`pyliteral`]: Python literals (Scrapy's stats dump) read as JSON.

pub mod capture;
pub mod clock;
pub mod cloud;
pub mod collections;
pub mod config;
pub mod daemon;
pub mod eggs;
pub mod filter;
pub mod frontier;
pub mod http;
pub mod names;
pub mod priority;
pub mod pyjson;
pub mod pyliteral;
pub mod record;
pub mod runner;
pub mod store;
pub mod supervisor;
pub mod version;
