//! The HTTP server: listeners, graceful shutdown, authentication and the
//! router. Each request is parsed here, handed to one endpoint or page, and
//! answered in Scrapyd's format.

mod body;
mod cloud;
mod connections;
mod listing;
mod pages;
pub mod params;
mod response;
mod scrapyd;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, warn};

use self::connections::{Connections, StallGuard};
use crate::daemon::Daemon;

pub type HttpResponse = Response<body::Body>;

/// How long in-flight requests may take to finish after a stop signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the `503` to a connection the table has no room for may take.
const REFUSE_DEADLINE: Duration = Duration::from_secs(1);

/// A listener of either kind.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// Serves every listener until `stop` resolves, then stops accepting and
/// lets in-flight requests finish.
pub async fn serve(
    daemon: Arc<Daemon>,
    listeners: Vec<Listener>,
    stop: impl std::future::Future<Output = ()>,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let connections = Connections::new(daemon.config.max_connections);
    let mut accept_loops = tokio::task::JoinSet::new();
    for listener in listeners {
        let (daemon, graceful) = (Arc::clone(&daemon), Arc::clone(&graceful));
        let connections = Arc::clone(&connections);
        accept_loops.spawn(async move {
            loop {
                let accepted = match &listener {
                    Listener::Tcp(tcp) => tcp.accept().await.map(|(stream, _)| {
                        let _ = stream.set_nodelay(true);
                        serve_connection(&daemon, &graceful, &connections, stream)
                    }),
                    Listener::Unix(unix) => unix.accept().await.map(|(stream, _)| {
                        serve_connection(&daemon, &graceful, &connections, stream)
                    }),
                };
                if let Err(error) = accepted {
                    // Out of file descriptors, say: wait instead of spinning.
                    warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    stop.await;
    accept_loops.shutdown().await;
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("requests still in flight at shutdown were dropped");
    }
}

/// Serves one accepted connection until it closes, a newcomer evicts it
/// while it is idle, or it stops reading its answers.
fn serve_connection<S>(
    daemon: &Arc<Daemon>,
    graceful: &GracefulShutdown,
    connections: &Arc<Connections>,
    stream: S,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = daemon.config.http_timeout;
    let Some(admitted) = connections.admit() else {
        tokio::spawn(connections::refuse(stream, REFUSE_DEADLINE));
        return;
    };
    let tracker = admitted.tracker();
    let daemon = Arc::clone(daemon);
    let service = service_fn(move |request| {
        let daemon = Arc::clone(&daemon);
        let request_in_progress = tracker.begin();
        async move {
            let response = handle(&daemon, request).await;
            Ok::<_, Infallible>(request_in_progress.until_sent(response))
        }
    });
    let stream = StallGuard::new(stream, timeout);
    let connection = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(TokioIo::new(stream), service);
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        tokio::select! {
            ended = connection => {
                if let Err(error) = ended {
                    debug!(%error, "connection ended with an error");
                }
            }
            () = admitted.evicted() => debug!("idle connection closed to make room"),
        }
        drop(admitted);
    });
}

/// What a request is, once its path is read.
enum Route {
    Endpoint(&'static str),
    Home,
    Jobs,
    Files { root: &'static str, rest: String },
    NotFound,
}

fn route(daemon: &Daemon, path: &str) -> Route {
    match path {
        "/" | "" => Route::Home,
        "/jobs" => Route::Jobs,
        _ => {
            let below = |root: &str| {
                path.strip_prefix(root)
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                    .map(str::to_string)
            };
            if let Some(rest) = below("/logs").filter(|_| daemon.config.logs_dir.is_some()) {
                return Route::Files { root: "logs", rest };
            }
            if let Some(rest) =
                below("/items").filter(|_| daemon.config.local_items_dir().is_some())
            {
                return Route::Files {
                    root: "items",
                    rest,
                };
            }
            // Twisted finds a resource by its decoded name:
            // `/daemonstatus%2Ejson` is `/daemonstatus.json`.
            let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
            if decoded == "/jobs" {
                return Route::Jobs;
            }
            let name = decoded.trim_start_matches('/');
            match crate::config::SERVICES
                .iter()
                .find(|service| **service == name)
            {
                Some(service) if !daemon.config.disabled_services.contains(*service) => {
                    Route::Endpoint(service)
                }
                _ => Route::NotFound,
            }
        }
    }
}

/// `//listprojects.json` is `/listprojects.json`: scrapyd-client 2.0.3
/// sends the former.
fn collapse_slashes(path: &str) -> String {
    let mut collapsed = String::with_capacity(path.len());
    for character in path.chars() {
        if character == '/' && collapsed.ends_with('/') {
            continue;
        }
        collapsed.push(character);
    }
    collapsed
}

async fn handle(daemon: &Arc<Daemon>, request: Request<Incoming>) -> HttpResponse {
    let raw_path = request.uri().path();
    let path = if raw_path.contains("//") {
        std::borrow::Cow::Owned(collapse_slashes(raw_path))
    } else {
        std::borrow::Cow::Borrowed(raw_path)
    };
    // The Cloud API has its own keys; Scrapyd's password guards the rest.
    if let Some(api) = cloud::api_of(&path) {
        let path = path.into_owned();
        let (parts, body) = request.into_parts();
        let limit = cloud::body_limit(&daemon.config, &path);
        let body = match read_body(daemon, &parts, body, limit).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        return cloud::answer(daemon, api, &parts, body, &path).await;
    }
    if daemon.config.auth_enabled() && !authorized(daemon, &request) {
        return response::unauthorized();
    }
    match route(daemon, &path) {
        Route::Endpoint(name) => {
            let (parts, body) = request.into_parts();
            let limit = body_limit(&daemon.config, name);
            let body = match read_body(daemon, &parts, body, limit).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            scrapyd::answer(daemon, name, &parts, body).await
        }
        Route::Home => pages::home(daemon, &request),
        Route::Jobs => pages::jobs(daemon, &request).await,
        Route::Files { root, rest } => pages::files(daemon, &request, root, &rest).await,
        Route::NotFound => response::not_found(),
    }
}

/// The largest body an endpoint reads: eggs are large, every other
/// request is a handful of parameters.
fn body_limit(config: &crate::config::Config, endpoint: &str) -> usize {
    match endpoint {
        "addversion.json" => config.max_body_size,
        _ => config.max_request_body_size,
    }
}

/// Reads a request body up to `limit` bytes and within the configured
/// time. A body announced larger than the limit is refused before a byte
/// of it is read.
async fn read_body(
    daemon: &Daemon,
    parts: &hyper::http::request::Parts,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, HttpResponse> {
    if !matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
        return Ok(Bytes::new());
    }
    let too_large = || response::plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
    let announced = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let reading = Limited::new(body, limit).collect();
    let Ok(read) = tokio::time::timeout(daemon.config.http_timeout, reading).await else {
        return Err(response::plain(
            StatusCode::REQUEST_TIMEOUT,
            "request body too slow\n",
        ));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(response::plain(
            StatusCode::BAD_REQUEST,
            "incomplete request body\n",
        )),
    }
}

/// Checks HTTP basic credentials, comparing in constant time so the
/// answer's timing says nothing about how much of a guess was right.
fn authorized<B>(daemon: &Daemon, request: &Request<B>) -> bool {
    use base64::Engine;
    let Some(header) = request.headers().get(hyper::header::AUTHORIZATION) else {
        return false;
    };
    // The scheme name is case-insensitive (RFC 7235).
    let Some((scheme, encoded)) = header.to_str().ok().and_then(|h| h.trim().split_once(' '))
    else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let expected = format!("{}:{}", daemon.config.username, daemon.config.password);
    constant_time_eq::constant_time_eq(&decoded, expected.as_bytes())
}

/// The URL prefix a reverse proxy announced, if any.
fn base_path<B>(daemon: &Daemon, request: &Request<B>) -> String {
    request
        .headers()
        .get(daemon.config.prefix_header.as_str())
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slashes_collapse() {
        assert_eq!(
            collapse_slashes("//listprojects.json"),
            "/listprojects.json"
        );
        assert_eq!(collapse_slashes("/logs//p///s/"), "/logs/p/s/");
        assert_eq!(collapse_slashes("/"), "/");
    }
}
