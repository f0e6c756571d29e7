//! The open connections, and the rules that keep a crowd of bad clients
//! from starving the good ones.
//!
//! - At most `max_connections` are open. A new one that finds the table
//!   full takes the place of the connection that has been idle longest
//!   (one waiting for its request's headers, a slowloris, or an idle
//!   keep-alive): a client with a request to make is served, and the
//!   crowd cycles through the table instead of holding it. Only when
//!   every connection is in the middle of a request is the newcomer
//!   answered `503` at once, never left hanging.
//! - A write that makes no progress for `http_timeout` closes the
//!   connection ([`StallGuard`]): a client that stops reading its answer
//!   holds nothing for long.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;

use super::body::{Body, BodyError};

/// The table of open connections.
pub struct Connections {
    max: usize,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Entry>,
}

struct Entry {
    /// Requests in progress (0 or 1 on HTTP/1).
    busy: u32,
    /// Since when nothing has been in progress: its accept, or the end of
    /// its last answer.
    idle_since: Instant,
    evict: Arc<Notify>,
}

impl Connections {
    pub fn new(max: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max: max.max(1),
            table: Mutex::new(Table::default()),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes room for a new connection, evicting the longest idle one if
    /// the table is full. `None`: every open connection is busy.
    pub fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut table = self.table();
        if table.open.len() >= self.max {
            let victim = table
                .open
                .iter()
                .filter(|(_, entry)| entry.busy == 0)
                .min_by_key(|(_, entry)| entry.idle_since)
                .map(|(id, _)| *id)?;
            if let Some(entry) = table.open.remove(&victim) {
                entry.evict.notify_one();
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let evict = Arc::new(Notify::new());
        table.open.insert(
            id,
            Entry {
                busy: 0,
                idle_since: Instant::now(),
                evict: Arc::clone(&evict),
            },
        );
        Some(Admitted {
            connections: Arc::clone(self),
            id,
            evict,
        })
    }

    fn set_busy(&self, id: u64, busy: bool) {
        if let Some(entry) = self.table().open.get_mut(&id) {
            if busy {
                entry.busy += 1;
            } else {
                entry.busy = entry.busy.saturating_sub(1);
                entry.idle_since = Instant::now();
            }
        }
    }
}

/// A connection's place in the table, given up when dropped.
pub struct Admitted {
    connections: Arc<Connections>,
    id: u64,
    evict: Arc<Notify>,
}

impl Admitted {
    /// Resolves when a newcomer took this connection's place.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }

    /// A handle the service keeps to track its requests.
    pub fn tracker(&self) -> Tracker {
        Tracker {
            connections: Arc::clone(&self.connections),
            id: self.id,
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.table().open.remove(&self.id);
    }
}

/// What a connection's service needs to mark its requests busy.
#[derive(Clone)]
pub struct Tracker {
    connections: Arc<Connections>,
    id: u64,
}

impl Tracker {
    /// Marks the connection busy until the returned value is dropped.
    pub fn begin(&self) -> RequestInProgress {
        self.connections.set_busy(self.id, true);
        RequestInProgress {
            connections: Arc::clone(&self.connections),
            id: self.id,
        }
    }
}

/// A request in progress; the connection is idle again once it drops.
pub struct RequestInProgress {
    connections: Arc<Connections>,
    id: u64,
}

impl RequestInProgress {
    /// Ties the end of the request to the end of `response`'s body.
    pub fn until_sent(self, response: hyper::Response<Body>) -> hyper::Response<Body> {
        response.map(|inner| {
            http_body_util::BodyExt::boxed_unsync(Tracked {
                inner,
                _request: self,
            })
        })
    }
}

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        self.connections.set_busy(self.id, false);
    }
}

/// A body that keeps its request marked in progress while it lives.
struct Tracked {
    inner: Body,
    _request: RequestInProgress,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.inner).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Answers a connection the table has no room for: `503` with
/// `Retry-After`, then closes it, within `deadline`.
pub async fn refuse<S>(mut stream: S, deadline: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    const ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
        Content-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\n\
        Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections\n";
    let _ = tokio::time::timeout(deadline, async {
        stream.write_all(ANSWER).await?;
        stream.shutdown().await
    })
    .await;
}

/// A stream whose writes fail once they have made no progress for
/// `timeout`: the client stopped reading.
pub struct StallGuard<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallGuard<S> {
    pub fn new(inner: S, timeout: Duration) -> StallGuard<S> {
        StallGuard {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// Called when a write could not proceed: fails once the stall has
    /// lasted `timeout`, else arranges to be woken then.
    fn check_stall(&mut self, context: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(timer.as_mut().poll(context));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading its answer",
        ))
    }

    fn poll_write_op<T>(
        &mut self,
        context: &mut Context<'_>,
        operation: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        S: Unpin,
    {
        match operation(Pin::new(&mut self.inner), context) {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.check_stall(context).map(Err),
        }
    }
}

use std::future::Future;

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(context, buffer)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_op(context, |inner, context| inner.poll_write(context, data))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_op(context, |inner, context| {
            inner.poll_write_vectored(context, buffers)
        })
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_op(context, |inner, context| inner.poll_flush(context))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_op(context, |inner, context| inner.poll_shutdown(context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_evicts_the_longest_idle() {
        let connections = Connections::new(2);
        let first = connections.admit().unwrap();
        let second = connections.admit().unwrap();
        let _busy = second.tracker().begin();
        let third = connections.admit().unwrap();
        assert_eq!(connections.table().open.len(), 2);
        // `first` was idle: it made room.
        assert!(!connections.table().open.contains_key(&first.id));
        let _also_busy = third.tracker().begin();
        assert!(connections.admit().is_none());
    }
}
