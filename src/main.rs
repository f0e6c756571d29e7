//! The `scrapyd-rs` command: read the configuration, open the store, start
//! the supervisor and serve HTTP until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tracing::{error, info, warn};

use scrapyd_rs::capture::Capture;
use scrapyd_rs::config::Config;
use scrapyd_rs::daemon::Daemon;
use scrapyd_rs::http::{self, Listener};
use scrapyd_rs::store::{DataStore, SharedStore, Store};
use scrapyd_rs::supervisor::Supervisor;

/// A drop-in replacement for Scrapyd: the same HTTP API, every job kept in
/// SQLite, crawls launched the moment they are scheduled.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Read only this configuration file instead of Scrapyd's search path
    /// (/etc/scrapyd/scrapyd.conf, /etc/scrapyd/conf.d/*, ./scrapyd.conf,
    /// ~/.scrapyd.conf).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCRAPYD_RS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // One core is left to the store's writer thread, busy through every
    // group commit: on 2 cores, two async workers waking each other and
    // the writer cost context switches (8 concurrent `schedule.json`
    // clients: 8–18 % more requests a second with one worker, alternating
    // trials; `daemonstatus.json` and 32 clients the same). tokio's own
    // TOKIO_WORKER_THREADS still decides where it is set.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let mut config = Config::load(cli.config.as_deref()).map_err(|e| e.to_string())?;
    config
        .make_paths_absolute()
        .map_err(|e| format!("cannot resolve folders: {e}"))?;
    for warning in &config.warnings {
        warn!("{warning}");
    }
    let config = Arc::new(config);
    // The folders the pages serve exist from the start, so `/logs/` lists
    // an empty folder rather than answering 404 before the first crawl.
    let folders = [
        Some(config.eggs_dir.as_path()),
        config.logs_dir.as_deref(),
        config.local_items_dir(),
    ];
    for folder in folders.into_iter().flatten() {
        std::fs::create_dir_all(folder)
            .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    }
    let store = Arc::new(Store::open(&config.database_path()).map_err(|e| e.to_string())?);
    store.serve_botgroups(&config.bot_groups);
    let data = Arc::new(DataStore::open(&config.data_database_path()).map_err(|e| e.to_string())?);
    let shared =
        Arc::new(SharedStore::open(&config.shared_database_path()).map_err(|e| e.to_string())?);
    let capture = Capture::new(Arc::clone(&config), Arc::clone(&store), Arc::clone(&data));
    let supervisor = Supervisor::new(Arc::clone(&config), Arc::clone(&store), capture);
    let daemon = Arc::new(Daemon::new(
        Arc::clone(&config),
        store,
        data,
        shared,
        Arc::clone(&supervisor),
    ));
    let listeners = bind(&config).await?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        max_proc = config.max_proc,
        auth = config.auth_enabled(),
        "scrapyd-rs started"
    );
    let launcher = tokio::spawn(Arc::clone(&supervisor).run());
    let stopping = Arc::clone(&supervisor);
    let stop = async move {
        stop_signal().await;
        // Launch nothing more from the signal on, while requests in flight
        // finish: a job scheduled now waits, pending, for the next start.
        stopping.begin_shutdown();
    };
    http::serve(daemon, listeners, stop).await;
    // Before the runtime winds down: the launch in progress finishes (or
    // its job goes back to pending), then crawls are left running for the
    // next start or stopped and recorded, as `crawls_on_shutdown` says.
    supervisor.shutdown(launcher).await;
    info!("scrapyd-rs stopped");
    Ok(())
}

/// TCP when `bind_address` and `http_port` are set, and the unix socket
/// when `unix_socket_path` is: both at once if both are configured.
async fn bind(config: &Config) -> Result<Vec<Listener>, String> {
    let mut listeners = Vec::new();
    if !config.bind_address.is_empty() && config.http_port != 0 {
        let address = format!("{}:{}", config.bind_address, config.http_port);
        let tcp = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        info!("web console at http://{address}/");
        listeners.push(Listener::Tcp(tcp));
    }
    if let Some(path) = &config.unix_socket_path {
        let path = std::path::absolute(path).map_err(|e| e.to_string())?;
        // A socket file left by a previous run would make bind fail.
        let _ = std::fs::remove_file(&path);
        let unix = tokio::net::UnixListener::bind(&path)
            .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660));
        info!("web console at http+unix://{}", path.display());
        listeners.push(Listener::Unix(unix));
    }
    if listeners.is_empty() {
        return Err(
            "nothing to listen on: set bind_address and http_port, or unix_socket_path".into(),
        );
    }
    Ok(listeners)
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon can only be killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM: stopping"),
        _ = interrupt.recv() => info!("SIGINT: stopping"),
    }
}
