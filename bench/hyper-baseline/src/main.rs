//! A bare hyper HTTP/1.1 server answering every request with one fixed JSON
//! body: the ceiling the benchmark compares scrapyd-rs's
//! `daemonstatus.json` with. Same runtime (tokio multi-thread, one worker
//! per core), same connection setup (TCP_NODELAY, hyper http1 with a
//! header-read timer) as scrapyd-rs; no routing, no parsing, no database.
//!
//! Usage: hyper-baseline [ADDRESS]   (default 127.0.0.1:6899)

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

/// What scrapyd-rs answers to `daemonstatus.json` on an idle node, give or
/// take the node name: the same size of work on the wire.
const BODY: &[u8] =
    b"{\"pending\": 0, \"running\": 0, \"finished\": 0, \"status\": \"ok\", \"node_name\": \"bench\"}\n";

async fn answer(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("Content-Type", "application/json")
        .header("Access-Control-Allow-Origin", "*")
        .body(Full::new(Bytes::from_static(BODY)))
        .expect("a fixed response is valid"))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6899".to_string());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    eprintln!("hyper-baseline listening on http://{address}/");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("accept: {error}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
